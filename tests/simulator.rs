//! The engine simulator of the scale benchmarks (`drover-sim`, bench/sim) answers like a
//! real engine for the calls drover makes: the same requests are sent to the local real
//! engine and to a simulated one, and the answers compared by shape (status codes, the
//! types of the fields drover reads, the event sequences of kill, stop, restart and
//! remove). Then drover itself runs on three simulated engines with a few hundred
//! containers and converges, and after a burst of crashes converges again without ever
//! running more than its target.
//!
//! Project names start with `sim-`. No test node is used.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{TEST_IMAGE, drover_bin, local_engine, unique_name, wait_until};

/// A running simulator, stopped when dropped.
struct Sim {
    child: Child,
    dir: PathBuf,
}

impl Sim {
    fn start(engines: usize, extra: &[&str]) -> Sim {
        let dir = std::env::temp_dir().join(unique_name("sim-engines"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover-sim"))
            .args(["--engines", &engines.to_string(), "--dir"])
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start drover-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("\"ready\":true"), "drover-sim said {line:?}");
        Sim { child, dir }
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("engine-{i}.sock"))
    }

    fn control(&self, method: &str, path: &str) -> Value {
        let (code, body) = request(&self.dir.join("control.sock"), method, path, "");
        assert_eq!(code, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request over a Unix socket; the status and the body (de-chunked).
fn request(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("engine socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    (
        code,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    )
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// Percent-encoding for a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The JSON type at `path` (`a.b.0.c`): what a client's deserializer depends on.
fn kind_at(v: &Value, path: &str) -> &'static str {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let next = match part.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(part),
        };
        match next {
            Some(n) => cur = n,
            None => return "missing",
        }
    }
    match cur {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One call's answer from each engine: the same status, and the same types at `paths`.
struct Pair {
    real: PathBuf,
    sim: PathBuf,
}

impl Pair {
    /// Send the same request to both; assert the statuses agree and equal `want`.
    fn call(&self, method: &str, path: &str, body: &str, want: u16) -> (Value, Value) {
        let (rc, rb) = request(&self.real, method, path, body);
        let (sc, sb) = request(&self.sim, method, path, body);
        assert_eq!(
            (rc, sc),
            (want, want),
            "{method} {path}: real {rc} {rb}, simulated {sc} {sb}"
        );
        let parse = |b: &str| serde_json::from_str(b.trim()).unwrap_or(Value::Null);
        (parse(&rb), parse(&sb))
    }

    /// As [`Pair::call`], and the fields at `paths` have the same types in both answers
    /// (and exist in the real one).
    fn same(
        &self,
        method: &str,
        path: &str,
        body: &str,
        want: u16,
        paths: &[&str],
    ) -> (Value, Value) {
        let (real, sim) = self.call(method, path, body, want);
        for p in paths {
            let (r, s) = (kind_at(&real, p), kind_at(&sim, p));
            assert_ne!(
                r, "missing",
                "{method} {path}: the real engine has no {p}: {real}"
            );
            assert_eq!(
                r, s,
                "{method} {path}: {p} is {r} on the real engine, {s} simulated:\nreal {real}\nsimulated {sim}"
            );
        }
        (real, sim)
    }
}

/// The actions of a project's container events between two times, from one engine.
fn actions(socket: &Path, project: &str, since: f64, until: f64) -> Vec<String> {
    let filters = json!({"type": ["container"], "label": [format!("drover.project={project}")]});
    let path = format!(
        "/v1.41/events?since={since:.9}&until={until:.9}&filters={}",
        enc(&filters.to_string())
    );
    let (code, body) = request(socket, "GET", &path, "");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            for p in [
                "Type",
                "Action",
                "Actor.ID",
                "Actor.Attributes.name",
                "time",
                "timeNano",
            ] {
                assert_ne!(kind_at(&v, p), "missing", "event without {p}: {v}");
            }
            let mut a = v["Action"].as_str().unwrap().to_string();
            if let Some(code) = v["Actor"]["Attributes"]["exitCode"].as_str() {
                a.push_str(&format!("({code})"));
            }
            a
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Engine metadata, images, networks and volumes: what drover asks at start and before
/// it creates containers.
#[test]
fn the_simulator_answers_engine_calls_like_the_real_engine() {
    let host = local_engine();
    let sim = Sim::start(1, &[]);
    let pair = Pair {
        real: PathBuf::from(host.trim_start_matches("unix://")),
        sim: sim.socket(0),
    };
    let project = unique_name("sim-meta");
    let (real, sim_ping) = {
        let (rc, rb) = request(&pair.real, "GET", "/_ping", "");
        let (sc, sb) = request(&pair.sim, "GET", "/_ping", "");
        ((rc, rb), (sc, sb))
    };
    assert_eq!(real, sim_ping);
    pair.same(
        "GET",
        "/version",
        "",
        200,
        &["ApiVersion", "MinAPIVersion", "Version", "Os", "Arch"],
    );
    pair.same(
        "GET",
        "/v1.41/info",
        "",
        200,
        &[
            "ID",
            "Name",
            "Labels",
            "Containers",
            "ServerVersion",
            "Swarm.LocalNodeState",
            "NCPU",
        ],
    );
    pair.same(
        "GET",
        "/v1.41/images/json",
        "",
        200,
        &["0.Id", "0.RepoTags", "0.Created", "0.Size"],
    );
    pair.same(
        "GET",
        &format!("/v1.41/images/{TEST_IMAGE}/json"),
        "",
        200,
        &["Id", "RepoTags", "RepoDigests", "Created"],
    );
    pair.same(
        "GET",
        "/v1.41/images/sim-no-such-image:1/json",
        "",
        404,
        &["message"],
    );

    let net = format!("{project}_default");
    let labels = json!({"drover.project": project});
    let body = json!({"Name": net, "Labels": labels, "CheckDuplicate": true}).to_string();
    let (r, s) = pair.same("POST", "/v1.41/networks/create", &body, 201, &["Id"]);
    pair.same("POST", "/v1.41/networks/create", &body, 409, &["message"]);
    let by_project = enc(&json!({"label": [format!("drover.project={project}")]}).to_string());
    let (rl, sl) = pair.same(
        "GET",
        &format!("/v1.41/networks?filters={by_project}"),
        "",
        200,
        &["0.Id", "0.Name", "0.Labels", "0.Created", "0.Driver"],
    );
    assert_eq!(
        (rl.as_array().unwrap().len(), sl.as_array().unwrap().len()),
        (1, 1)
    );
    pair.same(
        "GET",
        &format!("/v1.41/networks/{net}"),
        "",
        200,
        &["Id", "Name", "Containers"],
    );

    let vol = format!("{project}_data");
    let body = json!({"Name": vol, "Labels": labels}).to_string();
    pair.same(
        "POST",
        "/v1.41/volumes/create",
        &body,
        201,
        &["Name", "Driver", "Labels"],
    );
    let (rv, sv) = pair.same(
        "GET",
        &format!("/v1.41/volumes?filters={by_project}"),
        "",
        200,
        &["Volumes.0.Name", "Volumes.0.Labels", "Volumes.0.Driver"],
    );
    assert_eq!(rv["Volumes"].as_array().unwrap().len(), 1);
    assert_eq!(sv["Volumes"].as_array().unwrap().len(), 1);

    // Removing: by id on each engine, then the not-found answers.
    let rid = r["Id"].as_str().unwrap();
    let sid = s["Id"].as_str().unwrap();
    assert_eq!(
        request(&pair.real, "DELETE", &format!("/v1.41/networks/{rid}"), "").0,
        204
    );
    assert_eq!(
        request(&pair.sim, "DELETE", &format!("/v1.41/networks/{sid}"), "").0,
        204
    );
    pair.same(
        "DELETE",
        &format!("/v1.41/networks/{net}"),
        "",
        404,
        &["message"],
    );
    pair.call("DELETE", &format!("/v1.41/volumes/{vol}"), "", 204);
    pair.same(
        "DELETE",
        &format!("/v1.41/volumes/{vol}"),
        "",
        404,
        &["message"],
    );
}

/// A container's life as drover drives it: create (and its conflicts), list, inspect,
/// start, update, rename, kill, stop, restart, remove, with the events each one sends.
#[test]
fn the_simulator_runs_containers_and_sends_events_like_the_real_engine() {
    let host = local_engine();
    let sim = Sim::start(1, &[]);
    let pair = Pair {
        real: PathBuf::from(host.trim_start_matches("unix://")),
        sim: sim.socket(0),
    };
    let project = unique_name("sim-life");
    let name = format!("{project}-web-1");
    let labels = json!({"drover.project": project, "drover.service": "web", "drover.slot": "1"});
    let body = json!({
        "Image": TEST_IMAGE,
        "Labels": labels,
        "StopSignal": "SIGKILL",
        "Volumes": {"/scratch": {}},
        "HostConfig": {"RestartPolicy": {"Name": "no"}},
    })
    .to_string();
    let since = now() - 0.001;
    let create = format!("/v1.41/containers/create?name={name}");
    pair.same("POST", &create, &body, 201, &["Id", "Warnings"]);
    pair.same("POST", &create, &body, 409, &["message"]);
    let missing = json!({"Image": "sim-no-such-image:1", "Labels": labels}).to_string();
    pair.same(
        "POST",
        &format!("/v1.41/containers/create?name={project}-other-1"),
        &missing,
        404,
        &["message"],
    );
    let filters = enc(&json!({"label": [format!("drover.project={project}")]}).to_string());
    let list = format!("/v1.41/containers/json?all=1&filters={filters}");
    let summary = [
        "0.Id",
        "0.Names",
        "0.Names.0",
        "0.Image",
        "0.ImageID",
        "0.Command",
        "0.Created",
        "0.Labels",
        "0.State",
        "0.Status",
        "0.HostConfig.NetworkMode",
        "0.NetworkSettings.Networks",
        "0.Mounts",
        "0.Mounts.0.Type",
        "0.Mounts.0.Name",
        "0.Mounts.0.Destination",
    ];
    let (r, s) = pair.same("GET", &list, "", 200, &summary);
    assert_eq!(
        (r[0]["State"].as_str(), s[0]["State"].as_str()),
        (Some("created"), Some("created"))
    );
    let running_only = format!("/v1.41/containers/json?filters={filters}");
    let (r, s) = pair.call("GET", &running_only, "", 200);
    assert_eq!((r, s), (json!([]), json!([])));

    let c = format!("/v1.41/containers/{name}");
    pair.same("POST", &format!("{c}/start"), "", 204, &[]);
    pair.call("POST", &format!("{c}/start"), "", 304);
    let inspect = [
        "Id",
        "Name",
        "Created",
        "Image",
        "State.Status",
        "State.Running",
        "State.ExitCode",
        "State.StartedAt",
        "State.FinishedAt",
        "State.Pid",
        "Config.Labels",
        "Config.Image",
        "HostConfig.RestartPolicy.Name",
        "Mounts.0.Name",
        "NetworkSettings.Networks",
        "RestartCount",
    ];
    let (r, s) = pair.same("GET", &format!("{c}/json"), "", 200, &inspect);
    for v in [&r, &s] {
        assert_eq!(v["State"]["Status"], "running");
        assert_eq!(v["Config"]["Labels"]["drover.slot"], "1");
    }
    let update = json!({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}});
    pair.same(
        "POST",
        &format!("{c}/update"),
        &update.to_string(),
        200,
        &[],
    );
    let (r, s) = pair.same(
        "GET",
        &format!("{c}/json"),
        "",
        200,
        &["HostConfig.RestartPolicy.MaximumRetryCount"],
    );
    assert_eq!(
        r["HostConfig"]["RestartPolicy"],
        s["HostConfig"]["RestartPolicy"]
    );
    pair.call("POST", &format!("{c}/rename?name={name}-old"), "", 204);
    pair.call(
        "POST",
        &format!("/v1.41/containers/{name}-old/rename?name={name}"),
        "",
        204,
    );

    pair.call("POST", &format!("{c}/kill"), "", 204);
    pair.same("POST", &format!("{c}/kill"), "", 409, &["message"]);
    let (r, s) = pair.same("GET", &format!("{c}/json"), "", 200, &inspect);
    for v in [&r, &s] {
        assert_eq!(
            (
                v["State"]["Status"].as_str(),
                v["State"]["ExitCode"].as_i64()
            ),
            (Some("exited"), Some(137))
        );
        assert_ne!(v["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    }
    let (r, s) = pair.same("GET", &list, "", 200, &summary);
    for v in [&r, &s] {
        let status = v[0]["Status"].as_str().unwrap();
        assert!(status.starts_with("Exited (137)"), "{status}");
    }
    pair.call("POST", &format!("{c}/start"), "", 204);
    pair.call("POST", &format!("{c}/stop?t=1"), "", 204);
    pair.call("POST", &format!("{c}/stop?t=1"), "", 304);
    pair.call("POST", &format!("{c}/start"), "", 204);
    pair.call("POST", &format!("{c}/restart?t=1"), "", 204);
    pair.same("DELETE", &c, "", 409, &["message"]);
    pair.call("DELETE", &format!("{c}?force=1&v=1"), "", 204);
    pair.same("GET", &format!("{c}/json"), "", 404, &["message"]);
    pair.same("DELETE", &format!("{c}?force=1"), "", 404, &["message"]);
    pair.same("POST", &format!("{c}/start"), "", 404, &["message"]);
    let until = now() + 0.5;
    std::thread::sleep(Duration::from_millis(600));

    let real = actions(&pair.real, &project, since, until);
    let simulated = actions(&pair.sim, &project, since, until);
    let want = [
        "create", "start", "update", "rename", "rename", "kill", "die(137)", "start", "kill",
        "die(137)", "stop", "start", "kill", "die(137)", "stop", "start", "restart", "kill",
        "die(137)", "destroy",
    ];
    assert_eq!(real, want, "the real engine's events");
    assert_eq!(simulated, want, "the simulated engine's events");
}

/// Faults are injected through the control socket: 500s, and event streams dropped.
#[test]
fn the_simulator_injects_faults() {
    let sim = Sim::start(2, &[]);
    sim.control("POST", "/faults?engine=1&error_rate=1");
    let (code, body) = request(&sim.socket(1), "GET", "/v1.41/containers/json", "");
    assert_eq!(code, 500, "{body}");
    assert_eq!(request(&sim.socket(1), "GET", "/_ping", "").0, 200);
    assert_eq!(
        request(&sim.socket(0), "GET", "/v1.41/containers/json", "").0,
        200
    );
    sim.control("POST", "/faults?engine=1&error_rate=0");
    assert_eq!(
        request(&sim.socket(1), "GET", "/v1.41/containers/json", "").0,
        200
    );

    // An open event stream ends when the control socket drops it.
    let socket = sim.socket(0);
    let reader = std::thread::spawn(move || request(&socket, "GET", "/v1.41/events", ""));
    std::thread::sleep(Duration::from_millis(300));
    sim.control("POST", "/drop-events?engine=0");
    let (code, _) = reader.join().unwrap();
    assert_eq!(code, 200);
    let stats = sim.control("GET", "/stats");
    assert_eq!(stats["requests"]["events"], 1);
    assert!(stats["requests"]["list"].as_u64().unwrap() >= 3);
}

/// drover itself, on three simulated engines: 300 replicas come up, spread over the
/// engines; 60 crash at once and are all restarted, never more than 300 running.
#[test]
fn drover_converges_on_simulated_engines() {
    let sim = Sim::start(3, &["--capacity", "8", "--latency", "create=2ms,start=3ms"]);
    let project = unique_name("sim-converge");
    let dir = sim.dir.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let nodes: String = (0..3)
        .map(|i| {
            format!(
                "    - name: n{i}\n      host: unix://{}\n",
                sim.socket(i).display()
            )
        })
        .collect();
    let compose = format!(
        "name: {project}\nservices:\n  web:\n    image: {TEST_IMAGE}\n    deploy:\n      replicas: 300\nx-drover:\n  nodes:\n{nodes}"
    );
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    let log = std::fs::File::create(sim.dir.join("drover.log")).unwrap();
    let mut drover = Command::new(drover_bin())
        .args(["run", "--listen", "off", "--log-format", "json"])
        .current_dir(&dir)
        .env_remove("DOCKER_HOST")
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stats = || sim.control("GET", "/stats");
    let running = |s: &Value| s["running_now"].as_u64().unwrap();
    wait_until(Duration::from_secs(60), "300 replicas running", || {
        running(&stats()) == 300
    });
    let mut per_engine = BTreeMap::new();
    for i in 0..3 {
        let (code, body) = request(&sim.socket(i), "GET", "/v1.41/containers/json", "");
        assert_eq!(code, 200);
        let n = serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        per_engine.insert(i, n);
    }
    assert_eq!(per_engine.values().sum::<usize>(), 300);
    assert!(
        per_engine.values().all(|n| *n == 100),
        "spread: {per_engine:?}"
    );

    sim.control("POST", "/reset");
    let crashed = sim.control("POST", "/crash?count=60");
    assert_eq!(crashed["crashed"], 60);
    wait_until(
        Duration::from_secs(60),
        "the 60 crashed replicas restarted",
        || {
            let s = stats();
            running(&s) == 300 && s["reactions_ms"].as_array().unwrap().len() == 60
        },
    );
    let s = stats();
    assert_eq!(s["max_running"], 300, "never above the target: {s}");
    // A few crashes are picked at random, each a different running container, none of
    // those that crashed within `rest_ms`.
    let crashed = sim.control("POST", "/crash?count=5&rest_ms=600000");
    assert_eq!(crashed["crashed"], 5);
    wait_until(
        Duration::from_secs(60),
        "the 5 crashed replicas restarted",
        || {
            let s = stats();
            running(&s) == 300 && s["reactions_ms"].as_array().unwrap().len() == 65
        },
    );
    let s = stats();
    // Besides the replicas, each engine holds the majority lease's container (created,
    // never started): one per node.
    let mut leases = 0;
    for i in 0..3 {
        let (code, body) = request(&sim.socket(i), "GET", "/v1.41/containers/json?all=1", "");
        assert_eq!(code, 200);
        leases += serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["Labels"].get("drover.lease").is_some())
            .count();
    }
    assert_eq!(leases, 3, "one lease container per node");
    assert_eq!(
        s["containers"],
        300 + leases,
        "restarted in place, none added: {s}"
    );
    let _ = drover.kill();
    let _ = drover.wait();
}
