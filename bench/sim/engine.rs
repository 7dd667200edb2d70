//! One simulated engine: the Engine API calls drover makes, answered from memory, with a
//! per-call latency, a capacity (calls served at once), faults, and the event stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use crate::http::{Reply, Request};
use crate::model::{Container, Event, HISTORY, Image, Network, State, Status, Volume, make_id};
use crate::stats::{Kind, Shared};

/// How long each kind of call takes, and how a list's cost grows with the containers.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub by_kind: HashMap<Kind, Duration>,
    pub default: Duration,
    /// Added to a container list per container it returns.
    pub per_listed: Duration,
}

impl Latency {
    fn of(&self, kind: Kind) -> Duration {
        self.by_kind.get(&kind).copied().unwrap_or(self.default)
    }
}

/// Faults injected at run time (see the control socket).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of calls (not pings, not event streams) answered with a 500.
    pub error_rate: f64,
    /// Every call, pings included, waits this long first.
    pub stall: Duration,
    /// Event streams stay open but deliver nothing (a half-open connection).
    pub silent: bool,
}

pub struct Engine {
    pub index: usize,
    pub name: String,
    id: String,
    labels: Vec<String>,
    pub state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
    capacity: Option<Semaphore>,
    latency: Latency,
    pub faults: Mutex<Faults>,
    /// Bumped to close every open event stream.
    drop_streams: watch::Sender<u64>,
    shared: Arc<Shared>,
    rng: AtomicU64,
    pids: AtomicU64,
}

impl Engine {
    pub fn new(
        index: usize,
        capacity: usize,
        latency: Latency,
        images: &[String],
        labels: Vec<String>,
        shared: Arc<Shared>,
    ) -> Engine {
        let now = SystemTime::now();
        let mut state = State::default();
        for (i, tag) in images.iter().enumerate() {
            state.images.push(Image {
                id: format!("sha256:{}", make_id(usize::MAX >> 24, i as u64)),
                tags: vec![tag.clone()],
                created: now,
            });
        }
        for (i, (name, driver)) in [("bridge", "bridge"), ("host", "host"), ("none", "null")]
            .into_iter()
            .enumerate()
        {
            let id = make_id(index, 1_000_000_000 + i as u64);
            state.networks.insert(
                id.clone(),
                Network {
                    id,
                    name: name.into(),
                    driver: driver.into(),
                    labels: BTreeMap::new(),
                    created: now,
                    builtin: true,
                },
            );
        }
        let (events, _) = broadcast::channel(65_536);
        Engine {
            index,
            name: format!("sim-{index}"),
            id: format!("SIM{index:04}:{}", &make_id(index, u64::MAX)[..40]),
            labels,
            state: Mutex::new(state),
            events,
            capacity: (capacity > 0).then(|| Semaphore::new(capacity)),
            latency,
            faults: Mutex::new(Faults::default()),
            drop_streams: watch::channel(0).0,
            shared,
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D ^ index as u64),
            pids: AtomicU64::new(1000),
        }
    }

    /// A pseudo-random number in [0, 1).
    pub fn random(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Close every open event stream (they end cleanly, as when the engine restarts).
    pub fn drop_streams(&self) {
        self.drop_streams.send_modify(|n| *n += 1);
    }

    /// Serve one request: count it, apply faults, wait for capacity and latency, answer.
    pub async fn handle(self: Arc<Self>, req: Request) -> Reply {
        let kind = Kind::of(&req.method, &req.path);
        self.shared.count(kind);
        self.reaction(kind, &req);
        let faults = self.faults.lock().unwrap().clone();
        if !faults.stall.is_zero() {
            tokio::time::sleep(faults.stall).await;
        }
        if !matches!(kind, Kind::Ping | Kind::Events)
            && faults.error_rate > 0.0
            && self.random() < faults.error_rate
        {
            return Reply::error(500, "simulated engine failure");
        }
        let _permit = match (&self.capacity, kind) {
            (_, Kind::Ping | Kind::Version | Kind::Events) => None,
            (Some(sem), _) => sem.acquire().await.ok(),
            (None, _) => None,
        };
        let mut delay = self.latency.of(kind);
        if kind == Kind::List {
            let n = self.state.lock().unwrap().containers.len() as u32;
            delay += self.latency.per_listed * n;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.route(kind, req)
    }

    fn route(self: &Arc<Self>, kind: Kind, req: Request) -> Reply {
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let m = req.method.as_str();
        match (m, parts.as_slice()) {
            ("GET" | "HEAD", ["_ping"]) => Reply::Full {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                headers: vec![
                    ("Docker-Experimental", "false".into()),
                    ("Ostype", "linux".into()),
                    (
                        "Cache-Control",
                        "no-cache, no-store, must-revalidate".into(),
                    ),
                ],
                body: b"OK".to_vec(),
            },
            ("GET", ["version"]) => Reply::json(200, &self.version()),
            ("GET", ["info"]) => Reply::json(200, &self.info()),
            ("GET", ["containers", "json"]) => self.list(&req),
            ("POST", ["containers", "create"]) => self.create(&req),
            ("GET", ["containers", id, "json"]) => self.inspect(id),
            ("POST", ["containers", id, "start"]) => self.start(id),
            ("POST", ["containers", id, "stop"]) => self.stop(id, false),
            ("POST", ["containers", id, "restart"]) => self.stop(id, true),
            ("POST", ["containers", id, "kill"]) => self.kill(id, req.param("signal")),
            ("POST", ["containers", id, "rename"]) => self.rename(id, req.param("name")),
            ("POST", ["containers", id, "update"]) => self.update(id, &req.body),
            ("DELETE", ["containers", id]) => self.remove(id, req.flag("force"), req.flag("v")),
            ("GET", ["events"]) => self.events(&req),
            ("GET", ["networks"]) => self.networks(&req),
            ("POST", ["networks", "create"]) => self.create_network(&req.body),
            ("GET", ["networks", id]) => self.network(id),
            ("DELETE", ["networks", id]) => self.remove_network(id),
            ("POST", ["networks", id, "connect"]) => self.connect(id, &req.body),
            ("GET", ["volumes"]) => self.volumes(&req),
            ("POST", ["volumes", "create"]) => self.create_volume(&req.body),
            ("GET", ["volumes", name]) => self.volume(name),
            ("DELETE", ["volumes", name]) => self.remove_volume(name),
            ("GET", ["images", "json"]) => self.images(),
            ("POST", ["images", "create"]) => self.pull(&req),
            ("GET", ["images", ..]) if kind == Kind::Images && req.path.ends_with("/json") => {
                let name = &req.path["/images/".len()..req.path.len() - "/json".len()];
                self.image(name)
            }
            _ => Reply::error(404, "page not found"),
        }
    }

    /// A create or start that replaces a crashed container: its reaction is timed when
    /// the request arrives, before it waits for the engine's capacity.
    fn reaction(&self, kind: Kind, req: &Request) {
        let name = match kind {
            Kind::Create => req
                .param("name")
                .map(|n| n.trim_start_matches('/').to_string()),
            Kind::Start => {
                let id = req.path.split('/').nth(2).unwrap_or_default();
                let st = self.state.lock().unwrap();
                st.find(id).map(|id| st.containers[&id].name.clone())
            }
            _ => None,
        };
        if let Some(name) = name {
            self.shared.replaced(&name);
        }
    }

    fn version(&self) -> Value {
        json!({
            "Platform": {"Name": "drover-sim"},
            "Components": [{"Name": "Engine", "Version": "20.10.24", "Details": {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}}],
            "Version": "20.10.24",
            "ApiVersion": "1.41",
            "MinAPIVersion": "1.12",
            "GitCommit": "drover-sim",
            "GoVersion": "go1.19.8",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "simulated",
            "BuildTime": "2026-12-01T00:00:00.000000000+00:00",
        })
    }

    fn info(&self) -> Value {
        let st = self.state.lock().unwrap();
        let count = |s: Status| st.containers.values().filter(|c| c.status == s).count();
        json!({
            "ID": self.id,
            "Containers": st.containers.len(),
            "ContainersRunning": count(Status::Running),
            "ContainersPaused": 0,
            "ContainersStopped": count(Status::Exited),
            "Images": st.images.len(),
            "Driver": "overlay2",
            "DockerRootDir": "/var/lib/docker",
            "Name": self.name,
            "Labels": self.labels,
            "ServerVersion": "20.10.24",
            "OperatingSystem": "drover-sim",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": 2,
            "MemTotal": 25_000_000_000u64,
            "KernelVersion": "simulated",
            "ExperimentalBuild": false,
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": false,
                "Error": "",
                "RemoteManagers": null,
            },
        })
    }

    fn list(&self, req: &Request) -> Reply {
        let filters = match parse_filters(req.param("filters")) {
            Ok(f) => f,
            Err(e) => return Reply::error(400, &e),
        };
        let all = req.flag("all");
        let now = SystemTime::now();
        let mut st = self.state.lock().unwrap();
        let mut out: Vec<&mut Container> = st
            .containers
            .values_mut()
            .filter(|c| all || c.status == Status::Running)
            .filter(|c| container_matches(c, &filters))
            .collect();
        // Newest first, as the engine lists them.
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let mut body = String::with_capacity(out.len() * 1200 + 2);
        body.push('[');
        for (i, c) in out.into_iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            c.write_summary(now, &mut body);
        }
        body.push_str("]\n");
        Reply::Full {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    fn inspect(&self, key: &str) -> Reply {
        let st = self.state.lock().unwrap();
        match st.find(key) {
            Some(id) => Reply::json(200, &st.containers[&id].inspect()),
            None => no_such_container(key),
        }
    }

    fn emit(
        &self,
        st: &mut State,
        typ: &'static str,
        action: &str,
        actor: &str,
        attributes: BTreeMap<String, String>,
        from: Option<&str>,
    ) {
        st.seq += 1;
        let ev = Arc::new(Event::new(st.seq, typ, action, actor, attributes, from));
        st.history.push_back(ev.clone());
        if st.history.len() > HISTORY {
            st.history.pop_front();
        }
        let _ = self.events.send(ev);
    }

    /// A container event, with its labels, image and name as attributes.
    fn emit_container(&self, st: &mut State, id: &str, action: &str, extra: &[(&str, String)]) {
        let Some(c) = st.containers.get(id) else {
            return;
        };
        let mut attrs = c.labels.clone();
        attrs.insert("image".into(), c.image.clone());
        attrs.insert("name".into(), c.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        let image = c.image.clone();
        self.emit(st, "container", action, id, attrs, Some(&image));
    }

    fn emit_network(&self, st: &mut State, net_id: &str, action: &str, container: Option<&str>) {
        let Some(n) = st.networks.get(net_id) else {
            return;
        };
        let mut attrs = BTreeMap::from([
            ("name".to_string(), n.name.clone()),
            ("type".to_string(), n.driver.clone()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_string());
        }
        self.emit(st, "network", action, net_id, attrs, None);
    }

    fn create(&self, req: &Request) -> Reply {
        let mut body: Value = match serde_json::from_slice(&req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Reply::error(400, "invalid JSON body"),
        };
        let obj = body.as_object_mut().expect("an object");
        let host_config = obj.remove("HostConfig").unwrap_or_else(|| json!({}));
        let networking = obj.remove("NetworkingConfig").unwrap_or(Value::Null);
        let config = body;
        let Some(image) = config
            .get("Image")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Reply::error(400, "Config cannot be empty in order to create a container");
        };
        let name = req
            .param("name")
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let mut st = self.state.lock().unwrap();
        let Some(image_id) = st.image(&image).map(|i| i.id.clone()) else {
            let shown = if image.contains(':') {
                image.clone()
            } else {
                format!("{image}:latest")
            };
            return Reply::error(404, &format!("No such image: {shown}"));
        };
        st.seq += 1;
        let id = make_id(self.index, st.seq);
        let name = if name.is_empty() {
            format!("sim_{}", &id[..8])
        } else {
            name
        };
        if let Some(other) = st.names.get(&name) {
            return Reply::error(
                409,
                &format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                ),
            );
        }
        let mut c = Container {
            id: id.clone(),
            name: name.clone(),
            image,
            image_id,
            config,
            host_config,
            networks: BTreeMap::new(),
            mounts: Vec::new(),
            created: SystemTime::now(),
            status: Status::Created,
            exit_code: 0,
            started_at: None,
            finished_at: None,
            pid: 0,
            labels: BTreeMap::new(),
            cache: None,
        };
        c.labels = Container::labels_of(&c.config);
        if let Err(reply) = self.attach_networks(&st, &mut c, &networking) {
            return reply;
        }
        c.mounts = self.mounts(&mut st, &c);
        st.names.insert(name.clone(), id.clone());
        st.containers.insert(id.clone(), c);
        self.emit_container(&mut st, &id, "create", &[]);
        drop(st);
        Reply::json(201, &json!({"Id": id, "Warnings": []}))
    }

    /// The networks a new container joins: its network mode's, and `EndpointsConfig`'s.
    fn attach_networks(
        &self,
        st: &State,
        c: &mut Container,
        networking: &Value,
    ) -> Result<(), Reply> {
        let mode = c.network_mode();
        let mut wanted: Vec<String> = Vec::new();
        match mode.as_str() {
            "default" | "bridge" => wanted.push("bridge".into()),
            "host" | "none" => wanted.push(mode.clone()),
            m if m.starts_with("container:") => {}
            m => wanted.push(m.to_string()),
        }
        if let Some(eps) = networking.get("EndpointsConfig").and_then(Value::as_object) {
            for k in eps.keys() {
                if !wanted.contains(k) {
                    wanted.push(k.clone());
                }
            }
        }
        for w in wanted {
            match st.network(&w) {
                Some(id) => {
                    let name = st.networks[&id].name.clone();
                    c.networks.insert(name, id);
                }
                None => return Err(Reply::error(404, &format!("network {w} not found"))),
            }
        }
        Ok(())
    }

    /// The mounts of a new container: binds, named volumes (made when missing) and
    /// anonymous volumes (from `Config.Volumes` not otherwise mounted).
    fn mounts(&self, st: &mut State, c: &Container) -> Vec<Value> {
        let mut out = Vec::new();
        let mut targets = Vec::new();
        let volume = |st: &mut State, name: Option<String>, target: &str, rw: bool| {
            let name = name.unwrap_or_else(|| {
                st.seq += 1;
                make_id(self.index, st.seq)
            });
            st.volumes.entry(name.clone()).or_insert_with(|| Volume {
                name: name.clone(),
                driver: "local".into(),
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                created: SystemTime::now(),
            });
            json!({"Type": "volume", "Name": name, "Source": format!("/var/lib/docker/volumes/{name}/_data"), "Destination": target, "Driver": "local", "Mode": "z", "RW": rw, "Propagation": ""})
        };
        let hc = &c.host_config;
        for b in hc
            .get("Binds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(b) = b.as_str() else { continue };
            let mut f = b.split(':');
            let (src, dst) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
            let rw = !f.next().unwrap_or_default().split(',').any(|o| o == "ro");
            targets.push(dst.to_string());
            if src.starts_with('/') {
                out.push(json!({"Type": "bind", "Source": src, "Destination": dst, "Mode": "", "RW": rw, "Propagation": "rprivate"}));
            } else {
                out.push(volume(st, Some(src.to_string()), dst, rw));
            }
        }
        for m in hc
            .get("Mounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let target = m.get("Target").and_then(Value::as_str).unwrap_or_default();
            let source = m
                .get("Source")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let rw = !m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
            targets.push(target.to_string());
            match m.get("Type").and_then(Value::as_str) {
                Some("bind") => out.push(json!({"Type": "bind", "Source": source.unwrap_or_default(), "Destination": target, "Mode": "", "RW": rw, "Propagation": "rprivate"})),
                Some("volume") => out.push(volume(st, source.map(str::to_string), target, rw)),
                _ => out.push(json!({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": rw, "Propagation": ""})),
            }
        }
        for (dst, _) in c
            .config
            .get("Volumes")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if !targets.contains(dst) {
                out.push(volume(st, None, dst, true));
            }
        }
        out
    }

    fn start(&self, key: &str) -> Reply {
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        let pid = self.pids.fetch_add(1, Ordering::Relaxed) as u32;
        let c = st.containers.get_mut(&id).expect("found");
        if c.status == Status::Running {
            return Reply::empty(304);
        }
        c.status = Status::Running;
        c.cache = None;
        c.started_at = Some(SystemTime::now());
        c.exit_code = 0;
        c.pid = pid;
        let nets: Vec<String> = c.networks.values().cloned().collect();
        st.running += 1;
        for n in nets {
            self.emit_network(&mut st, &n, "connect", Some(&id));
        }
        self.emit_container(&mut st, &id, "start", &[]);
        drop(st);
        self.shared.started();
        Reply::empty(204)
    }

    /// The container exits: `die` with its exit code (after `kill` when through the API).
    fn exit(&self, st: &mut State, id: &str, code: i64, signal: Option<i64>) {
        if let Some(sig) = signal {
            self.emit_container(st, id, "kill", &[("signal", sig.to_string())]);
        }
        let Some(c) = st.containers.get_mut(id) else {
            return;
        };
        if c.status == Status::Running {
            st.running -= 1;
        }
        c.status = Status::Exited;
        c.cache = None;
        c.exit_code = code;
        c.finished_at = Some(SystemTime::now());
        let nets: Vec<String> = c.networks.values().cloned().collect();
        self.emit_container(st, id, "die", &[("exitCode", code.to_string())]);
        for n in nets {
            self.emit_network(st, &n, "disconnect", Some(id));
        }
        self.shared.stopped();
    }

    /// A running container crashes (the process exits by itself): `die` only.
    pub fn crash(&self, id: &str, code: i64) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.containers.get(id) else {
            return false;
        };
        if c.status != Status::Running {
            return false;
        }
        let name = c.name.clone();
        self.shared.crashed(&name);
        self.exit(&mut st, id, code, None);
        true
    }

    /// How many containers run here.
    pub fn running_count(&self) -> usize {
        self.state.lock().unwrap().running
    }

    /// One running container picked at `u` (in [0, 1)) among those whose name did not
    /// crash within `rest`, but not one of `taken`.
    pub fn pick_running(&self, rest: Duration, u: f64, taken: &[String]) -> Option<String> {
        let st = self.state.lock().unwrap();
        let mut ids: Vec<&String> = st
            .containers
            .values()
            .filter(|c| c.status == Status::Running && !taken.contains(&c.id))
            .filter(|c| rest.is_zero() || self.shared.rested(&c.name, rest))
            .map(|c| &c.id)
            .collect();
        ids.sort();
        let i = ((u * ids.len() as f64) as usize).min(ids.len().checked_sub(1)?);
        Some(ids[i].clone())
    }

    /// The running containers' ids, but those whose name crashed within `rest`.
    pub fn running(&self, rest: Duration) -> Vec<String> {
        let st = self.state.lock().unwrap();
        let mut ids: Vec<String> = st
            .containers
            .values()
            .filter(|c| c.status == Status::Running)
            .filter(|c| rest.is_zero() || self.shared.rested(&c.name, rest))
            .map(|c| c.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// `stop` (the stop signal, then `stop`) or `restart` (the same, then `start`, `restart`).
    fn stop(&self, key: &str, restart: bool) -> Reply {
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        let c = &st.containers[&id];
        let running = c.status == Status::Running;
        if !running && !restart {
            return Reply::empty(304);
        }
        let signal = signal_number(
            c.config
                .get("StopSignal")
                .and_then(Value::as_str)
                .unwrap_or("SIGTERM"),
        )
        .unwrap_or(15);
        if running {
            self.exit(&mut st, &id, 128 + signal, Some(signal));
            self.emit_container(&mut st, &id, "stop", &[]);
        }
        if restart {
            let pid = self.pids.fetch_add(1, Ordering::Relaxed) as u32;
            let c = st.containers.get_mut(&id).expect("found");
            let was_running = c.status == Status::Running;
            c.status = Status::Running;
            c.cache = None;
            c.started_at = Some(SystemTime::now());
            c.exit_code = 0;
            c.pid = pid;
            if !was_running {
                st.running += 1;
            }
            self.emit_container(&mut st, &id, "start", &[]);
            self.emit_container(&mut st, &id, "restart", &[]);
            drop(st);
            self.shared.started();
        }
        Reply::empty(204)
    }

    fn kill(&self, key: &str, signal: Option<&str>) -> Reply {
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        if st.containers[&id].status != Status::Running {
            return Reply::error(
                409,
                &format!("Cannot kill container: {key}: Container {id} is not running"),
            );
        }
        let Some(sig) = signal_number(signal.unwrap_or("SIGKILL")) else {
            return Reply::error(
                400,
                &format!("Invalid signal: {}", signal.unwrap_or_default()),
            );
        };
        if matches!(sig, 2 | 3 | 9 | 15) {
            self.exit(&mut st, &id, 128 + sig, Some(sig));
        } else {
            self.emit_container(&mut st, &id, "kill", &[("signal", sig.to_string())]);
        }
        Reply::empty(204)
    }

    fn rename(&self, key: &str, to: Option<&str>) -> Reply {
        let to = to.unwrap_or_default().trim_start_matches('/').to_string();
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        if to.is_empty() {
            return Reply::error(400, "Neither old nor new names may be empty");
        }
        if let Some(other) = st.names.get(&to) {
            return Reply::error(
                409,
                &format!(
                    "Conflict. The container name \"/{to}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                ),
            );
        }
        let c = st.containers.get_mut(&id).expect("found");
        let old = std::mem::replace(&mut c.name, to.clone());
        c.cache = None;
        st.names.remove(&old);
        st.names.insert(to, id.clone());
        self.emit_container(&mut st, &id, "rename", &[("oldName", format!("/{old}"))]);
        Reply::empty(204)
    }

    fn update(&self, key: &str, body: &[u8]) -> Reply {
        let update: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Reply::error(400, "invalid JSON body"),
        };
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        let c = st.containers.get_mut(&id).expect("found");
        if let (Some(hc), Some(up)) = (c.host_config.as_object_mut(), update.as_object()) {
            for (k, v) in up {
                if !v.is_null() {
                    hc.insert(k.clone(), v.clone());
                }
            }
        }
        self.emit_container(&mut st, &id, "update", &[]);
        Reply::json(200, &json!({"Warnings": null}))
    }

    fn remove(&self, key: &str, force: bool, volumes: bool) -> Reply {
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.find(key) else {
            return no_such_container(key);
        };
        if st.containers[&id].status == Status::Running {
            if !force {
                return Reply::error(
                    409,
                    &format!(
                        "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
                    ),
                );
            }
            self.exit(&mut st, &id, 137, Some(9));
        }
        self.emit_container(&mut st, &id, "destroy", &[]);
        let c = st.containers.remove(&id).expect("found");
        st.names.remove(&c.name);
        if volumes {
            for m in &c.mounts {
                let name = m.get("Name").and_then(Value::as_str).unwrap_or_default();
                if name.len() == 64 && st.volumes.remove(name).is_some() {
                    let attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
                    self.emit(&mut st, "volume", "destroy", name, attrs, None);
                }
            }
        }
        Reply::empty(204)
    }

    fn events(self: &Arc<Self>, req: &Request) -> Reply {
        let filters = match parse_filters(req.param("filters")) {
            Ok(f) => f,
            Err(e) => return Reply::error(400, &e),
        };
        let since = req.param("since").and_then(parse_time);
        let until = req.param("until").and_then(parse_time);
        let mut rx = self.events.subscribe();
        let mut drops = self.drop_streams.subscribe();
        let backlog: Vec<Arc<Event>> = match since {
            None => Vec::new(),
            Some(s) => {
                let st = self.state.lock().unwrap();
                st.history
                    .iter()
                    .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
                    .cloned()
                    .collect()
            }
        };
        let (tx, chunks) = mpsc::channel(1024);
        let engine = self.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for e in backlog {
                last = e.seq;
                if e.matches(&filters) && tx.send(e.line.clone()).await.is_err() {
                    return;
                }
            }
            let now = now_nanos();
            if until.is_some_and(|u| u <= now) {
                return;
            }
            let deadline = until.map(|u| Instant::now() + Duration::from_nanos((u - now) as u64));
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = drops.changed() => return,
                    _ = sleep_until(deadline) => return,
                };
                let e = match next {
                    Ok(e) => e,
                    // Too slow a reader: the engine drops it too.
                    Err(_) => return,
                };
                if e.seq <= last {
                    continue;
                }
                last = e.seq;
                if engine.faults.lock().unwrap().silent || !e.matches(&filters) {
                    continue;
                }
                if tx.send(e.line.clone()).await.is_err() {
                    return;
                }
            }
        });
        Reply::Stream {
            status: 200,
            chunks,
        }
    }

    fn networks(&self, req: &Request) -> Reply {
        let filters = match parse_filters(req.param("filters")) {
            Ok(f) => f,
            Err(e) => return Reply::error(400, &e),
        };
        let st = self.state.lock().unwrap();
        let out: Vec<Value> = st
            .networks
            .values()
            .filter(|n| label_match(&n.labels, filters.get("label")))
            .filter(|n| {
                filters
                    .get("name")
                    .is_none_or(|v| v.iter().any(|w| n.name.contains(w.as_str())))
            })
            .map(|n| n.json(&[]))
            .collect();
        Reply::json(200, &Value::Array(out))
    }

    fn network(&self, key: &str) -> Reply {
        let st = self.state.lock().unwrap();
        let Some(id) = st.network(key) else {
            return Reply::error(404, &format!("network {key} not found"));
        };
        let attached: Vec<(&str, &str)> = st
            .containers
            .values()
            .filter(|c| c.status == Status::Running && c.networks.values().any(|n| *n == id))
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        Reply::json(200, &st.networks[&id].json(&attached))
    }

    fn create_network(&self, body: &[u8]) -> Reply {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let Some(name) = req.get("Name").and_then(Value::as_str).map(str::to_string) else {
            return Reply::error(400, "network name is required");
        };
        let mut st = self.state.lock().unwrap();
        let exists = st.networks.values().any(|n| n.name == name);
        let builtin = st.networks.values().any(|n| n.name == name && n.builtin);
        if builtin || (exists && req.get("CheckDuplicate").and_then(Value::as_bool) == Some(true)) {
            return Reply::error(409, &format!("network with name {name} already exists"));
        }
        st.seq += 1;
        let id = make_id(self.index, st.seq);
        st.networks.insert(
            id.clone(),
            Network {
                id: id.clone(),
                name,
                driver: req
                    .get("Driver")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .unwrap_or("bridge")
                    .to_string(),
                labels: string_map(req.get("Labels")),
                created: SystemTime::now(),
                builtin: false,
            },
        );
        self.emit_network(&mut st, &id, "create", None);
        Reply::json(201, &json!({"Id": id, "Warning": ""}))
    }

    fn remove_network(&self, key: &str) -> Reply {
        let mut st = self.state.lock().unwrap();
        let Some(id) = st.network(key) else {
            return Reply::error(404, &format!("network {key} not found"));
        };
        if st.networks[&id].builtin {
            return Reply::error(
                403,
                &format!("{key} is a pre-defined network and cannot be removed"),
            );
        }
        let in_use = st
            .containers
            .values()
            .any(|c| c.status == Status::Running && c.networks.values().any(|n| *n == id));
        if in_use {
            let name = st.networks[&id].name.clone();
            return Reply::error(
                403,
                &format!(
                    "error while removing network: network {name} id {id} has active endpoints"
                ),
            );
        }
        self.emit_network(&mut st, &id, "destroy", None);
        st.networks.remove(&id);
        Reply::empty(204)
    }

    fn connect(&self, key: &str, body: &[u8]) -> Reply {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let container = req
            .get("Container")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut st = self.state.lock().unwrap();
        let Some(net) = st.network(key) else {
            return Reply::error(404, &format!("network {key} not found"));
        };
        let Some(id) = st.find(&container) else {
            return no_such_container(&container);
        };
        let name = st.networks[&net].name.clone();
        let c = st.containers.get_mut(&id).expect("found");
        if c.networks.contains_key(&name) {
            return Reply::error(
                403,
                &format!(
                    "endpoint with name {} already exists in network {name}",
                    c.name
                ),
            );
        }
        c.networks.insert(name, net.clone());
        c.cache = None;
        if c.status == Status::Running {
            self.emit_network(&mut st, &net, "connect", Some(&id));
        }
        Reply::empty(200)
    }

    fn volumes(&self, req: &Request) -> Reply {
        let filters = match parse_filters(req.param("filters")) {
            Ok(f) => f,
            Err(e) => return Reply::error(400, &e),
        };
        let st = self.state.lock().unwrap();
        let out: Vec<Value> = st
            .volumes
            .values()
            .filter(|v| label_match(&v.labels, filters.get("label")))
            .map(Volume::json)
            .collect();
        Reply::json(200, &json!({"Volumes": out, "Warnings": null}))
    }

    fn volume(&self, name: &str) -> Reply {
        let st = self.state.lock().unwrap();
        match st.volumes.get(name) {
            Some(v) => Reply::json(200, &v.json()),
            None => Reply::error(404, &format!("get {name}: no such volume")),
        }
    }

    fn create_volume(&self, body: &[u8]) -> Reply {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut st = self.state.lock().unwrap();
        let name = match req
            .get("Name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => {
                st.seq += 1;
                make_id(self.index, st.seq)
            }
        };
        let v = st.volumes.entry(name.clone()).or_insert_with(|| Volume {
            name: name.clone(),
            driver: req
                .get("Driver")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .unwrap_or("local")
                .to_string(),
            labels: string_map(req.get("Labels")),
            options: string_map(req.get("DriverOpts")),
            created: SystemTime::now(),
        });
        let json = v.json();
        let attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
        self.emit(&mut st, "volume", "create", &name, attrs, None);
        Reply::json(201, &json)
    }

    fn remove_volume(&self, name: &str) -> Reply {
        let mut st = self.state.lock().unwrap();
        if !st.volumes.contains_key(name) {
            return Reply::error(404, &format!("get {name}: no such volume"));
        }
        let used = st.containers.values().any(|c| {
            c.mounts
                .iter()
                .any(|m| m.get("Name").and_then(Value::as_str) == Some(name))
        });
        if used {
            return Reply::error(409, &format!("remove {name}: volume is in use"));
        }
        st.volumes.remove(name);
        let attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
        self.emit(&mut st, "volume", "destroy", name, attrs, None);
        Reply::empty(204)
    }

    fn images(&self) -> Reply {
        let st = self.state.lock().unwrap();
        Reply::json(
            200,
            &Value::Array(st.images.iter().map(Image::summary).collect()),
        )
    }

    fn image(&self, name: &str) -> Reply {
        let st = self.state.lock().unwrap();
        match st.image(name) {
            Some(i) => Reply::json(200, &i.inspect()),
            None => Reply::error(404, &format!("No such image: {name}")),
        }
    }

    /// A pull: the images the simulator was given are there; nothing else can be pulled.
    fn pull(&self, req: &Request) -> Reply {
        let from = req.param("fromImage").unwrap_or_default();
        let tag = req
            .param("tag")
            .filter(|t| !t.is_empty())
            .unwrap_or("latest");
        let reference = if from.contains(':') || from.contains('@') {
            from.to_string()
        } else {
            format!("{from}:{tag}")
        };
        let st = self.state.lock().unwrap();
        if st.image(&reference).is_none() {
            return Reply::error(
                404,
                &format!(
                    "pull access denied for {from}, repository does not exist or may require 'docker login'"
                ),
            );
        }
        let lines = format!(
            "{}\n{}\n",
            json!({"status": format!("Pulling from {from}"), "id": tag}),
            json!({"status": format!("Status: Image is up to date for {reference}")})
        );
        Reply::Full {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: lines.into_bytes(),
        }
    }

    /// How many containers this engine holds, and how many run.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        debug_assert_eq!(
            st.running,
            st.containers
                .values()
                .filter(|c| c.status == Status::Running)
                .count()
        );
        (st.containers.len(), st.running)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

/// The engine's `since`/`until`: `secs`, `secs.nanos`, or an RFC 3339 time.
fn parse_time(s: &str) -> Option<i64> {
    if let Some((secs, frac)) = s.split_once('.') {
        let secs: i64 = secs.parse().ok()?;
        let digits: String = frac.chars().take(9).collect();
        let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
        return Some(secs * 1_000_000_000 + nanos);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs * 1_000_000_000);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
}

/// `filters` as the engine takes it: `{"k": ["v"]}` or the older `{"k": {"v": true}}`.
pub fn parse_filters(raw: Option<&str>) -> Result<HashMap<String, Vec<String>>, String> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("invalid filter: not an object".into());
    };
    let mut out = HashMap::new();
    for (k, vals) in obj {
        let list = match vals {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => return Err(format!("invalid filter for {k}")),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

fn label_match(labels: &BTreeMap<String, String>, wanted: Option<&Vec<String>>) -> bool {
    wanted.is_none_or(|w| {
        w.iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
            None => labels.contains_key(f.as_str()),
        })
    })
}

fn container_matches(c: &Container, filters: &HashMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| match k.as_str() {
        "label" => label_match(&c.labels, Some(vals)),
        "name" => vals
            .iter()
            .any(|n| c.name.contains(n.trim_start_matches('/'))),
        "id" => vals.iter().any(|i| c.id.starts_with(i.as_str())),
        "status" => vals.iter().any(|s| s == c.status.as_str()),
        _ => true,
    })
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn no_such_container(key: &str) -> Reply {
    Reply::error(404, &format!("No such container: {key}"))
}

/// `SIGKILL`, `KILL`, `9` -> 9.
fn signal_number(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG");
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        _ => return None,
    })
}
