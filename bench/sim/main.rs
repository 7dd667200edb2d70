//! drover-sim: Docker Engines simulated in memory, for scale and chaos benchmarks (in
//! the spirit of KWOK for Kubernetes). One process serves N engines, each on its own Unix
//! socket (and optionally a loopback TCP port), answering the part of the Engine API
//! drover uses: ping, version, info, containers (list with filters, inspect, create, start,
//! stop, restart, kill, rename, update, remove), events (with `since`, `until` and
//! filters), networks, volumes and images. Containers run forever unless told otherwise;
//! each call can take a set latency, an engine serves a set number of calls at once, and
//! faults are injected at run time through a control socket.
//!
//!   drover-sim --engines 50 --dir /tmp/sim --capacity 8 --latency create=10ms,start=20ms
//!
//! Control socket (`DIR/control.sock`), plain HTTP:
//!   GET  /stats[?reset=1]        requests by kind, running containers, reactions (ms)
//!   POST /crash?count=N|fraction=F[&engine=I][&exit_code=C][&rest_ms=N]   running
//!        containers exit (with rest_ms, none that crashed within the last N ms)
//!   POST /faults?engine=I|all&error_rate=F&stall_ms=N&silent=0|1
//!   POST /drop-events?engine=I|all   close the open event streams
//!   POST /reset                  forget reactions; the most running at once restarts
//!
//! Never used by the tests that prove drover's behaviour: those run on real engines.

mod engine;
mod http;
mod model;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};

use engine::{Engine, Latency};
use http::{Reply, Request};
use stats::{Kind, Shared};

/// Up to this many crashes at once are picked at random (see [`Sim::pick_few`]).
const FEW_CRASHES: usize = 16;

#[derive(Parser, Debug)]
#[command(
    name = "drover-sim",
    about = "Docker Engines simulated in memory, for benchmarks"
)]
struct Args {
    /// How many engines.
    #[arg(long, default_value_t = 1)]
    engines: usize,
    /// Where the sockets go: DIR/engine-I.sock and DIR/control.sock.
    #[arg(long)]
    dir: PathBuf,
    /// Also listen on 127.0.0.1:PORT+I for engine I.
    #[arg(long)]
    tcp_base_port: Option<u16>,
    /// Calls one engine serves at once (0: no limit). Pings, version and event streams
    /// are not counted.
    #[arg(long, default_value_t = 8)]
    capacity: usize,
    /// Per-call latency: `KIND=DURATION,...` (kinds: list, inspect, create, start, stop,
    /// restart, kill, remove, rename, update, networks, volumes, images, info, ping,
    /// version, other; `*` for every other kind).
    #[arg(long, default_value = "")]
    latency: String,
    /// Added to a container list for each container the engine holds.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    list_cost: Duration,
    /// Images every engine has (repeatable).
    #[arg(long = "image", default_values_t = vec!["drover-test/busybox:latest".to_string()])]
    images: Vec<String>,
    /// Engine labels (`key=value`, repeatable), as `dockerd --label`.
    #[arg(long = "label")]
    labels: Vec<String>,
}

fn latency(spec: &str, per_listed: Duration) -> Result<Latency, String> {
    let mut l = Latency {
        per_listed,
        ..Default::default()
    };
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item}: expected KIND=DURATION"))?;
        let d = humantime::parse_duration(v.trim()).map_err(|e| format!("{item}: {e}"))?;
        match k.trim() {
            "*" => l.default = d,
            k => {
                let kind = Kind::parse(k).ok_or_else(|| format!("{k}: not a kind of call"))?;
                l.by_kind.insert(kind, d);
            }
        }
    }
    Ok(l)
}

struct Sim {
    engines: Vec<Arc<Engine>>,
    shared: Arc<Shared>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let latency = match latency(&args.latency, args.list_cost) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("drover-sim: --latency: {e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&args.dir).expect("cannot create --dir");
    let shared = Arc::new(Shared::default());
    let engines: Vec<Arc<Engine>> = (0..args.engines)
        .map(|i| {
            Arc::new(Engine::new(
                i,
                args.capacity,
                latency.clone(),
                &args.images,
                args.labels.clone(),
                shared.clone(),
            ))
        })
        .collect();
    let mut sockets = Vec::new();
    for e in &engines {
        let path = args.dir.join(format!("engine-{}.sock", e.index));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("cannot bind an engine socket");
        sockets.push(path.display().to_string());
        let engine = e.clone();
        tokio::spawn(accept_unix(listener, move |req| engine.clone().handle(req)));
        if let Some(base) = args.tcp_base_port {
            let port = base + e.index as u16;
            let tcp = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("cannot bind an engine port");
            let engine = e.clone();
            tokio::spawn(accept_tcp(tcp, move |req| engine.clone().handle(req)));
        }
    }
    let sim = Arc::new(Sim { engines, shared });
    let control = args.dir.join("control.sock");
    let _ = std::fs::remove_file(&control);
    let listener = UnixListener::bind(&control).expect("cannot bind the control socket");
    let s = sim.clone();
    tokio::spawn(accept_unix(listener, move |req| {
        let s = s.clone();
        async move { s.control(req) }
    }));
    println!(
        "{}",
        json!({"ready": true, "engines": sockets, "control": control.display().to_string()})
    );
    let _ = tokio::signal::ctrl_c().await;
}

async fn accept_unix<H, F>(listener: UnixListener, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(http::serve(stream, handler.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn accept_tcp<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(http::serve(stream, handler.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Sim {
    /// The engines a control request names (`engine=I`, or all of them).
    fn chosen(&self, req: &Request) -> Vec<&Arc<Engine>> {
        match req.param("engine").and_then(|e| e.parse::<usize>().ok()) {
            Some(i) => self.engines.get(i).into_iter().collect(),
            None => self.engines.iter().collect(),
        }
    }

    fn control(&self, req: Request) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/stats") => {
                let mut v = self.shared.json();
                let (mut containers, mut running) = (0, 0);
                for e in &self.engines {
                    let (c, r) = e.counts();
                    containers += c;
                    running += r;
                }
                v["containers"] = json!(containers);
                v["running_now"] = json!(running);
                v["engines"] = json!(self.engines.len());
                if req.flag("reset") {
                    self.shared.reset();
                }
                Reply::json(200, &v)
            }
            ("POST", "/reset") => {
                self.shared.reset();
                Reply::json(200, &json!({}))
            }
            ("POST", "/crash") => self.crash(&req),
            ("POST", "/faults") => {
                for e in self.chosen(&req) {
                    let mut f = e.faults.lock().unwrap();
                    if let Some(r) = req.param("error_rate").and_then(|v| v.parse().ok()) {
                        f.error_rate = r;
                    }
                    if let Some(ms) = req.param("stall_ms").and_then(|v| v.parse().ok()) {
                        f.stall = Duration::from_millis(ms);
                    }
                    if req.param("silent").is_some() {
                        f.silent = req.flag("silent");
                    }
                }
                Reply::json(200, &json!({}))
            }
            ("POST", "/drop-events") => {
                for e in self.chosen(&req) {
                    e.drop_streams();
                }
                Reply::json(200, &json!({}))
            }
            _ => Reply::error(404, "page not found"),
        }
    }

    /// `want` running containers picked at random, none crashed within `rest`: an engine
    /// by its count of running containers, then one of its. Listing every running
    /// container of every engine to pick one (10,000 ids, each checked for its last
    /// crash) was the harness's own cost growing with the size it measured, run just
    /// before the reaction it timed.
    fn pick_few(
        &self,
        engines: &[&Arc<Engine>],
        want: usize,
        rest: Duration,
    ) -> Vec<(usize, String)> {
        let counts: Vec<usize> = engines.iter().map(|e| e.running_count()).collect();
        let total: usize = counts.iter().sum();
        let mut chosen: Vec<(usize, String)> = Vec::new();
        let random = || self.engines[0].random();
        // A few tries each: an engine picked may hold only containers crashed just now.
        for _ in 0..want.min(total) * 16 {
            if chosen.len() == want.min(total) {
                break;
            }
            let mut at = (random() * total as f64) as usize;
            let Some(i) = counts.iter().position(|n| {
                let here = at < *n;
                at = at.saturating_sub(*n);
                here
            }) else {
                continue;
            };
            let taken: Vec<String> = chosen.iter().map(|(_, id)| id.clone()).collect();
            if let Some(id) = engines[i].pick_running(rest, random(), &taken) {
                chosen.push((i, id));
            }
        }
        chosen
    }

    /// Running containers exit by themselves (`die` only, as a crash): `count` of them or
    /// a `fraction`, spread evenly over the chosen engines.
    fn crash(&self, req: &Request) -> Reply {
        let code = req
            .param("exit_code")
            .and_then(|c| c.parse().ok())
            .unwrap_or(137);
        let engines = self.chosen(req);
        let rest = req
            .param("rest_ms")
            .and_then(|r| r.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        if let Some(n) = req.param("count").and_then(|c| c.parse::<usize>().ok())
            && n <= FEW_CRASHES
        {
            let chosen = self.pick_few(&engines, n, rest);
            let crashed = chosen.iter().filter(|(i, id)| engines[*i].crash(id, code));
            return Reply::json(200, &json!({"crashed": crashed.count()}));
        }
        let running: Vec<(usize, Vec<String>)> = engines
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.running(rest)))
            .collect();
        let total: usize = running.iter().map(|(_, r)| r.len()).sum();
        let want = match (
            req.param("count").and_then(|c| c.parse::<usize>().ok()),
            req.param("fraction").and_then(|f| f.parse::<f64>().ok()),
        ) {
            (Some(n), _) => n.min(total),
            (None, Some(f)) => ((total as f64) * f).round() as usize,
            (None, None) => 1.min(total),
        };
        // Every k-th running container over all the engines from a random start, so a
        // burst hits them all and single crashes hit different containers.
        let mut chosen: Vec<(usize, String)> = Vec::with_capacity(want);
        if want > 0 {
            let step = total as f64 / want as f64;
            let offset = (self.engines[0].random() * total as f64) as usize;
            let all: Vec<(usize, &String)> = running
                .iter()
                .flat_map(|(i, ids)| ids.iter().map(move |id| (*i, id)))
                .collect();
            for k in 0..want {
                let (i, id) = all[(offset + ((k as f64) * step) as usize) % total];
                chosen.push((i, id.clone()));
            }
        }
        // Every id listed is freed before the first crash: work that grows with the
        // engines' size is not left to run beside drover's reaction.
        drop(running);
        let mut crashed = 0;
        for (i, id) in &chosen {
            if engines[*i].crash(id, code) {
                crashed += 1;
            }
        }
        Reply::json(200, &json!({"crashed": crashed}))
    }
}
