//! Autoscaling against real components: the local engine, a real `redis-server` and a
//! real Prometheus (Debian's packages, started by the tests on loopback ports of their
//! own). Workers pop jobs from a Redis list with busybox `nc` (`network_mode: host`).
//!
//! - a backlog scales the workers from `min` to `ceil(backlog / target)`, capped at
//!   `max`; drained by the workers themselves, they come back down after the window;
//!   a Redis that stops answering holds the count; `min: 0` scales from and to zero;
//! - a Prometheus query and an HTTP JSON value on a target the test controls;
//! - a CPU trigger on a busy-looping service with a CPU limit;
//! - a Redis stream's pending entries, with a password from a file;
//! - plain mode over two nodes: the new replicas are spread like any;
//! - the Redis scenario in Swarm mode, on a swarm of its own.
//!
//! Projects are named `as-*`; node indices 151..159 belong to this file.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use drover::telemetry::http;
use support::Node;
use support::drover::{Drover, Project, address, eventually_with};

const UP: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script(name: &str) {
    let out = Command::new(support::repo_root().join("scripts").join(name))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A redis-server on a loopback port, killed when dropped (or by [`Redis::stop`]).
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start(port: u16) -> Redis {
        script("redis.sh");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        let r = Redis {
            port,
            child: Some(child),
        };
        support::wait_until(Duration::from_secs(10), "redis answers", || {
            r.try_cmd(&["PING"]).is_ok()
        });
        r
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command in RESP; the first line of the answer.
    fn try_cmd(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).expect("redis answers")
    }

    fn len(&self, list: &str) -> u64 {
        self.cmd(&["LLEN", list])
            .trim_start_matches(':')
            .parse()
            .unwrap()
    }

    fn push(&self, list: &str, n: usize) {
        let mut args = vec!["RPUSH", list];
        args.extend(std::iter::repeat_n("job", n));
        self.cmd(&args);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn metrics(addr: SocketAddr) -> String {
    match http::get(addr, "/metrics", Duration::from_secs(5)) {
        Ok((200, body)) => body,
        _ => String::new(),
    }
}

/// The value of the sample `name{labels}` (labels as rendered, in order).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, body) = http::get(addr, "/status", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

fn autoscaled<'a>(s: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    s["autoscale"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["service"] == service))
        .unwrap_or(&serde_json::Value::Null)
}

/// The `autoscale` log lines that changed `service`'s target.
fn decisions(d: &Drover, service: &str) -> Vec<serde_json::Value> {
    d.actions("autoscale")
        .into_iter()
        .filter(|e| e["service"] == service && e["desired"].is_u64() && e["from"].is_u64())
        .collect()
}

/// A worker that pops one job per turn while the key `drain` exists, one connection per
/// command (QUIT makes Redis close it, so `nc` returns at once).
fn worker(port: u16) -> String {
    format!(
        r#"["sh", "-c", "while true; do r=$$(printf 'EXISTS drain\r\nQUIT\r\n' | nc 127.0.0.1 {port}); case \"$$r\" in *:1*) printf 'LPOP jobs\r\nQUIT\r\n' | nc 127.0.0.1 {port} >/dev/null;; esac; sleep 0.2; done"]"#
    )
}

fn redis_compose(port: u16) -> String {
    format!(
        r#"
x-drover:
  autoscale:
    worker:
      min: 1
      max: 5
      polling_interval: 1s
      scale_down_window: 4s
      triggers:
        - {{ type: redis, address: "redis://127.0.0.1:{port}", list: jobs, target: 5, timeout: 1s }}
    sleeper:
      min: 0
      max: 2
      polling_interval: 1s
      scale_down_window: 1s
      cooldown: 3s
      triggers:
        - {{ type: redis, address: "redis://127.0.0.1:{port}", list: wake, target: 10, name: wake }}
services:
  worker:
    image: drover-test/busybox:latest
    network_mode: host
    command: {worker}
    stop_signal: SIGKILL
  sleeper:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#,
        worker = worker(port)
    )
}

#[test]
fn a_redis_backlog_scales_workers_up_they_drain_it_and_scale_down_and_an_outage_holds() {
    let port = free_port();
    let mut redis = Redis::start(port);
    let p = Project::new("as-redis", &redis_compose(port));
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "one worker, no sleeper", |_| {
        p.running("worker") == 1 && autoscaled(&status(addr), "sleeper")["limited_by"] == "idle"
    });
    assert_eq!(p.running("sleeper"), 0, "min 0 with nothing to do: none");

    // 17 jobs of 5 per replica: ceil(17 / 5) = 4 workers.
    redis.push("jobs", 17);
    let pushed = Instant::now();
    eventually_with(&mut d, UP, "a second worker", |_| p.running("worker") >= 2);
    let first_up = pushed.elapsed();
    eventually_with(&mut d, UP, "4 workers", |_| p.running("worker") == 4);
    let up = pushed.elapsed();
    let first = &decisions(&d, "worker")[0];
    assert_eq!(first["desired"], 4, "{first}");
    assert_eq!(first["from"], 1, "{first}");
    assert!(
        first["triggers"]
            .as_str()
            .unwrap()
            .contains("redis-0=17 (target 5, wants 4)"),
        "the decision says its inputs: {first}"
    );
    // 40 jobs want 8: capped at max.
    redis.push("jobs", 23);
    eventually_with(&mut d, UP, "5 workers (max)", |_| {
        p.running("worker") == 5 && autoscaled(&status(addr), "worker")["limited_by"] == "max"
    });
    let m = metrics(addr);
    assert_eq!(
        sample(
            &m,
            "drover_autoscale_desired_replicas{project=\"as-redis\",service=\"worker\"}"
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "drover_autoscale_trigger_value{project=\"as-redis\",service=\"worker\",trigger=\"redis-0\"}"
        ),
        Some(40.0),
        "{m}"
    );

    // The workers drain the list; after the window (4 s) they come back down to min.
    redis.cmd(&["SET", "drain", "1"]);
    // From the moment the backlog fits one replica (5 jobs or fewer), the last poll that
    // wanted more is at most one polling interval old: the window keeps its count 4 s.
    eventually_with(&mut d, UP, "5 jobs left at most", |_| {
        redis.len("jobs") <= 5
    });
    let fits = Instant::now();
    eventually_with(&mut d, UP, "the list drained", |_| redis.len("jobs") == 0);
    let empty = Instant::now();
    eventually_with(&mut d, UP, "back to one worker", |_| {
        p.running("worker") == 1
    });
    let (down, down_from_fit) = (empty.elapsed(), fits.elapsed());
    assert!(
        down_from_fit >= Duration::from_millis(2800) && down_from_fit <= Duration::from_secs(9),
        "scale-down waits for its 4 s window, and not much more (took {down_from_fit:?})"
    );
    redis.cmd(&["DEL", "drain"]);

    // min: 0 wakes on a backlog, and sleeps again once the cooldown passed.
    redis.push("wake", 1);
    eventually_with(&mut d, UP, "a sleeper woken", |_| p.running("sleeper") == 1);
    redis.cmd(&["DEL", "wake"]);
    eventually_with(&mut d, UP, "the sleeper back at zero", |_| {
        p.running("sleeper") == 0
    });

    // Redis stops answering: the count holds, the error is said once and counted.
    redis.push("jobs", 12);
    eventually_with(&mut d, UP, "3 workers", |_| p.running("worker") == 3);
    redis.stop();
    let errors = "drover_autoscale_trigger_errors_total{project=\"as-redis\",service=\"worker\",trigger=\"redis-0\"}";
    // Longer than the 4 s window: a count that were to follow the error down would have.
    eventually_with(&mut d, UP, "six polls without an answer", |_| {
        sample(&metrics(addr), errors).unwrap_or(0.0) >= 6.0
    });
    assert_eq!(
        p.running("worker"),
        3,
        "an unanswered trigger holds the count"
    );
    let s = status(addr);
    let w = autoscaled(&s, "worker");
    assert_eq!(
        (w["desired"].as_u64(), w["limited_by"].as_str()),
        (Some(3), Some("error")),
        "{w}"
    );
    assert!(w["triggers"][0]["error"].is_string(), "{w}");
    let said: Vec<_> = d
        .actions("autoscale")
        .into_iter()
        .filter(|e| e["trigger"] == "redis-0" && e["level"] == "WARN")
        .collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");

    // Back (empty, as it does not save): said once, then down to min after the window.
    let redis = Redis::start(port);
    eventually_with(&mut d, UP, "the trigger answers again, back to one", |d| {
        d.actions("autoscale")
            .iter()
            .any(|e| e["message"] == "trigger answers again" && e["trigger"] == "redis-0")
            && p.running("worker") == 1
    });
    drop(redis);
    // INFO lines only for changes, one per decision: up to 4, 5; down (maybe in steps as
    // the list drained) to 1; up to 3; down to 1.
    let targets: Vec<u64> = decisions(&d, "worker")
        .iter()
        .map(|e| e["desired"].as_u64().unwrap())
        .collect();
    assert!(
        targets.starts_with(&[4, 5]) && targets.ends_with(&[1, 3, 1]),
        "{targets:?}"
    );
    assert!(targets.windows(2).all(|w| w[0] != w[1]), "{targets:?}");
    eprintln!(
        "measured: backlog to a first new worker running {first_up:?}, to 4 running {up:?}; \
         backlog fitting one replica to scale-down {down_from_fit:?}, list empty to \
         scale-down {down:?} (window 4s, polling 1s)"
    );
}

/// `redis-cli` on `port` with `password`; its output.
fn cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a", password])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_stream_backlog_is_its_consumer_groups_pending_entries_with_a_password_from_a_file() {
    script("redis.sh");
    let port = free_port();
    let password = "pw-s3cr3t-redis";
    let _server = Redis {
        port,
        child: Some(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--requirepass",
                    password,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start redis-server"),
        ),
    };
    support::wait_until(Duration::from_secs(10), "redis answers", || {
        Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "--no-auth-warning",
                "-a",
                password,
                "PING",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    });
    cli(
        port,
        password,
        &["XGROUP", "CREATE", "events", "workers", "$", "MKSTREAM"],
    );
    let compose = format!(
        r#"
x-drover:
  autoscale:
    consumer:
      max: 3
      polling_interval: 1s
      scale_down_window: 2s
      triggers:
        - {{ type: redis, address: "redis://127.0.0.1:{port}", stream: events, group: workers, target: 2, password_file: redis.pw }}
services:
  consumer:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#
    );
    let p = Project::new("as-stream", &compose);
    p.write(
        "redis.pw",
        &format!(
            "{password}
"
        ),
    );
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "one consumer, the trigger answering", |_| {
        p.running("consumer") == 1
            && autoscaled(&status(addr), "consumer")["triggers"][0]["value"] == 0.0
    });
    // Entries added but not read are no one's pending work yet; read, they are.
    for _ in 0..5 {
        cli(port, password, &["XADD", "events", "*", "k", "v"]);
    }
    cli(
        port,
        password,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "c1",
            "COUNT",
            "100",
            "STREAMS",
            "events",
            ">",
        ],
    );
    // 5 pending of 2 per replica: 3.
    eventually_with(&mut d, UP, "3 consumers", |_| p.running("consumer") == 3);
    assert_eq!(
        autoscaled(&status(addr), "consumer")["triggers"][0]["value"],
        5.0
    );
    // Acknowledged (the group recreated): nothing pending, back to one after the window.
    cli(port, password, &["XGROUP", "DESTROY", "events", "workers"]);
    cli(
        port,
        password,
        &["XGROUP", "CREATE", "events", "workers", "$"],
    );
    eventually_with(&mut d, UP, "one consumer", |_| p.running("consumer") == 1);
    assert!(
        !d.logs().join("\n").contains(password),
        "the password is never logged"
    );
}

/// A tiny HTTP server on loopback: `/metrics` says `queue_depth N` (for Prometheus to
/// scrape), `/stats` says `{"queue":{"depth":N}}`.
fn serve(value: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let value = value.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let v = value.load(Ordering::SeqCst);
                let (kind, body) = if req.starts_with("GET /stats") {
                    (
                        "application/json",
                        format!("{{\"queue\":{{\"depth\":{v}}}}}"),
                    )
                } else {
                    (
                        "text/plain; version=0.0.4",
                        format!("# TYPE queue_depth gauge\nqueue_depth {v}\n"),
                    )
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// A Prometheus scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        script("prometheus.sh");
        let dir = std::env::temp_dir().join(format!("drover-as-prom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: queue\n    static_configs: [{{ targets: ['{target}'] }}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus");
        Prometheus { child, addr, dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_prometheus_query_and_an_http_json_value_scale_their_services() {
    let value = Arc::new(AtomicU64::new(0));
    let target = serve(value.clone());
    let prom = Prometheus::start(target);
    let token = std::env::temp_dir().join(format!("drover-as-token-{}", std::process::id()));
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let compose = format!(
        r#"
x-drover:
  autoscale:
    queue:
      min: 1
      max: 4
      polling_interval: 1s
      scale_down_window: 2s
      triggers:
        - {{ type: prometheus, url: "http://{prom}", query: "sum(queue_depth)", target: 10, name: depth }}
    api:
      min: 1
      max: 3
      polling_interval: 1s
      scale_down_window: 2s
      triggers:
        - {{ type: http, url: "http://{target}/stats", pointer: /queue/depth, target: 20, token_file: {token} }}
services:
  queue:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
  api:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#,
        prom = prom.addr,
        token = token.display()
    );
    let p = Project::new("as-prom", &compose);
    // `drover plan` reads the triggers once and plans with the autoscaler's targets.
    value.store(25, Ordering::SeqCst);
    support::drover::eventually(UP, "Prometheus has scraped 25", || {
        let out = p.drover(&["plan", "-p", &p.name]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("autoscale queue (1..4): depth=25 (target 10, wants 3); 1 -> 3")
            && text.contains("autoscale api (1..3): http-0=25 (target 20, wants 2); 1 -> 2")
    });
    // Prometheus answers with its last scrape: wait for the 0 before drover starts.
    value.store(0, Ordering::SeqCst);
    support::drover::eventually(UP, "Prometheus has scraped 0", || {
        let q = "/api/v1/query?query=sum%28queue_depth%29";
        http::get(prom.addr, q, Duration::from_secs(5))
            .is_ok_and(|(code, body)| code == 200 && body.contains("\"0\"]"))
    });
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "one of each, the query answering 0", |_| {
        p.running("queue") == 1
            && p.running("api") == 1
            && autoscaled(&status(addr), "queue")["triggers"][0]["value"] == 0.0
    });
    assert!(
        decisions(&d, "queue").is_empty(),
        "nothing to decide at 0: {:?}",
        decisions(&d, "queue")
    );
    // 25 per Prometheus: ceil(25 / 10) = 3; per the JSON answer: ceil(25 / 20) = 2.
    value.store(25, Ordering::SeqCst);
    eventually_with(&mut d, UP, "3 queue workers and 2 api workers", |_| {
        p.running("queue") == 3 && p.running("api") == 2
    });
    // A restarted drover starts from the replicas running, not from the files' 1: it
    // removes none of them.
    let ids = |p: &Project| {
        let mut ids = p.containers(None, Some("running"));
        ids.sort();
        ids
    };
    let before = ids(&p);
    drop(d);
    // No lease to wait for: the first pass comes at once.
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--lease-ttl", "0s"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "the new drover polled both", |_| {
        let s = status(addr);
        ["queue", "api"]
            .iter()
            .all(|svc| autoscaled(&s, svc)["triggers"][0]["value"] == 25.0)
    });
    assert_eq!(
        (p.running("queue"), p.running("api")),
        (3, 2),
        "after the restart: {}",
        d.logs().join("\n")
    );
    // Its passes saw every service at its target (a pass with the files' count would
    // have removed replicas and created them again).
    eventually_with(&mut d, UP, "the new drover's pass at the targets", |d| {
        let seen = |svc: &str, n: u64| {
            d.actions("observe")
                .iter()
                .any(|e| e["service"] == svc && e["desired"] == n && e["actual"] == n)
        };
        seen("queue", 3) && seen("api", 2)
    });
    assert!(decisions(&d, "queue").is_empty() && decisions(&d, "api").is_empty());
    assert_eq!(
        ids(&p),
        before,
        "the same containers: {}",
        d.logs().join("\n")
    );
    value.store(0, Ordering::SeqCst);
    eventually_with(&mut d, UP, "both back to one", |_| {
        p.running("queue") == 1 && p.running("api") == 1
    });
    let logs = d.logs().join("\n");
    assert!(!logs.contains("s3cr3t-token"), "the token is never logged");
    let _ = std::fs::remove_file(&token);
}

#[test]
fn a_cpu_trigger_scales_a_busy_service() {
    let compose = r#"
x-drover:
  autoscale:
    busy:
      min: 1
      max: 2
      polling_interval: 2s
      triggers:
        - { type: cpu, target: 10 }
services:
  busy:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "while :; do :; done"]
    cpus: 0.2
    stop_signal: SIGKILL
"#;
    let p = Project::new("as-cpu", compose);
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    // One replica at ~20% of a core, target 10% per replica: 1 × 20 / 10 = 2.
    eventually_with(&mut d, UP, "two busy replicas", |_| p.running("busy") == 2);
    let s = status(addr);
    let v = autoscaled(&s, "busy")["triggers"][0]["value"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        v > 11.0 && v < 40.0,
        "CPU of a replica limited to 0.2 cores: {v}"
    );
}

#[test]
fn swarm_mode_scales_the_service_on_the_backlog() {
    let m = Node::start("as-sw", 151);
    m.docker_ok(&["swarm", "init", "--advertise-addr", "10.231.151.2"]);
    let port = free_port();
    let redis = Redis::start(port);
    let compose = format!(
        r#"
x-drover:
  mode: swarm
  autoscale:
    worker:
      min: 1
      max: 4
      polling_interval: 1s
      scale_down_window: 3s
      triggers:
        - {{ type: redis, address: "redis://127.0.0.1:{port}", list: jobs, target: 5 }}
services:
  worker:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#
    );
    let p = Project::on("as-swarm", &compose, m.env());
    let mut d = p.run(&[]);
    let replicas = || {
        let out = m.docker(&[
            "service",
            "inspect",
            "-f",
            "{{.Spec.Mode.Replicated.Replicas}}",
            "as-swarm_worker",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let running = || {
        let out = m.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=as-swarm_worker",
        ]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    eventually_with(&mut d, UP, "the service with one task", |_| {
        replicas() == "1" && running() == 1
    });
    redis.push("jobs", 14);
    eventually_with(&mut d, UP, "3 replicas running", |_| {
        replicas() == "3" && running() == 3
    });
    // The backlog gone at once: the service's count comes down one 3 s window after the
    // last poll that saw it (at most a polling interval before it went), then Swarm
    // stops the tasks.
    redis.cmd(&["DEL", "jobs"]);
    let gone = Instant::now();
    eventually_with(&mut d, UP, "one replica in the spec", |_| replicas() == "1");
    let spec = gone.elapsed();
    eventually_with(&mut d, UP, "back to one task", |_| running() == 1);
    let tasks = gone.elapsed();
    assert!(
        spec >= Duration::from_secs(2) && spec <= Duration::from_secs(8),
        "the spec follows after the window (took {spec:?})"
    );
    eprintln!(
        "measured (swarm): backlog gone to the service scaled down {spec:?}, to its tasks \
         stopped {tasks:?} (window 3s, polling 1s)"
    );
    let targets: Vec<u64> = decisions(&d, "worker")
        .iter()
        .map(|e| e["desired"].as_u64().unwrap())
        .collect();
    assert_eq!(targets, [3, 1]);
}

/// Running containers of `service` of `project` on `node` (over its unix socket).
fn running_on(node: &Node, project: &str, service: &str) -> usize {
    let out = node.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=drover.project={project}"),
        "--filter",
        &format!("label=drover.service={service}"),
    ]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn plain_mode_spreads_the_new_replicas_over_its_nodes() {
    let (a, b) = (Node::start("as-n1", 152), Node::start("as-n2", 153));
    let value = Arc::new(AtomicU64::new(0));
    let target = serve(value.clone());
    let node = |n: &Node| {
        format!(
            "    - {{ name: {}, host: \"{}\", tls: {{ cert_path: \"{}\" }} }}\n",
            n.name,
            n.host,
            n.cert_dir.display()
        )
    };
    let compose = format!(
        r#"
x-drover:
  nodes:
{a}{b}  autoscale:
    worker:
      max: 6
      polling_interval: 1s
      scale_down_window: 2s
      triggers:
        - {{ type: http, url: "http://{target}/stats", pointer: /queue/depth, target: 10 }}
services:
  worker:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#,
        a = node(&a),
        b = node(&b),
    );
    let p = Project::on("as-nodes", &compose, a.env());
    let mut d = p.run(&[]);
    let on = |n: &Node| running_on(n, "as-nodes", "worker");
    eventually_with(&mut d, UP, "one worker", |_| on(&a) + on(&b) == 1);
    // 40 / 10: four workers, spread two and two.
    value.store(40, Ordering::SeqCst);
    eventually_with(&mut d, UP, "two workers on each node", |_| {
        on(&a) == 2 && on(&b) == 2
    });
    value.store(0, Ordering::SeqCst);
    eventually_with(&mut d, UP, "back to one worker", |_| on(&a) + on(&b) == 1);
}
