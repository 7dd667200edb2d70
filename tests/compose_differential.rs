//! Differential tests against Docker Compose v2 (compose-go, the loader users run):
//! on every fixture of `tests/fixtures/compose/`, `docker compose config --format json`
//! and `drover check --format json` must agree field by field on what reaches the
//! containers, with the same files and environment. Values compose refuses at load time,
//! drover refuses at `check` time with a located error. `scripts/compose-v2.sh` installs
//! the pinned compose when missing; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

/// The compose v2 binary, installed once per test process.
fn compose_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/compose-v2.sh");
        let out = Command::new(script).output().expect("compose-v2.sh runs");
        assert!(
            out.status.success(),
            "scripts/compose-v2.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// Run with only PATH, a fixed HOME and `env`.
fn output(cmd: &mut Command, dir: &Path, env: &[(&str, &str)]) -> Output {
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/home/tester");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn run(cmd: &mut Command, dir: &Path, env: &[(&str, &str)]) -> Vec<u8> {
    let out = output(cmd, dir, env);
    assert!(
        out.status.success(),
        "{cmd:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn file_args(files: &[&str]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["-f".to_string(), f.to_string()])
        .collect()
}

fn compose_config(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Value {
    let out = run(
        Command::new(compose_bin())
            .args(file_args(files))
            .args(["config", "--format", "json"]),
        dir,
        env,
    );
    serde_json::from_slice(&out).unwrap()
}

fn drover_check(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Value {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(file_args(files))
            .args(["check", "--format", "json"]),
        dir,
        env,
    );
    serde_json::from_slice(&out).unwrap()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(text).collect(),
        Value::Null => Vec::new(),
        other => text(other).into_iter().collect(),
    }
}

fn string_set(v: &Value) -> BTreeSet<String> {
    strings(v).into_iter().collect()
}

/// compose prints Go durations (`1m30s`, `24h0m0s`, `1µs`).
fn peer_millis(v: &Value) -> Option<u64> {
    let s = text(v)?;
    let d = drover::config::parse_duration(&s).unwrap_or_else(|e| panic!("duration {s}: {e}"));
    Some(d.as_millis() as u64)
}

/// drover prints humantime's form (`1m 30s`).
fn drover_millis(v: &Value) -> Option<u64> {
    let s = text(v)?;
    let d: Duration = humantime::parse_duration(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    Some(d.as_millis() as u64)
}

/// compose prints byte sizes as decimal text.
fn peer_bytes(v: &Value) -> Value {
    match text(v) {
        None => Value::Null,
        Some(s) => json!(s.parse::<i64>().unwrap_or_else(|_| panic!("size {s}"))),
    }
}

fn peer_number(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(s.parse::<f64>().unwrap()),
        Value::Number(n) => json!(n.as_f64().unwrap()),
        _ => Value::Null,
    }
}

/// (host_ip, published, target, protocol).
type PortKey = (String, u16, u16, String);

fn peer_ports(v: &Value) -> BTreeSet<PortKey> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m.get("host_ip").and_then(text).unwrap_or_default(),
                m.get("published")
                    .and_then(text)
                    .map_or(0, |s| s.parse().unwrap()),
                m["target"].as_u64().unwrap() as u16,
                m.get("protocol")
                    .and_then(text)
                    .unwrap_or_else(|| "tcp".into()),
            )
        })
        .collect()
}

fn drover_ports(v: &Value) -> BTreeSet<PortKey> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                text(&p["host_ip"]).unwrap_or_default(),
                p["published"].as_u64().unwrap_or(0) as u16,
                p["target"].as_u64().unwrap() as u16,
                text(&p["protocol"]).unwrap(),
            )
        })
        .collect()
}

/// (kind, source, target, read_only).
type Vol = (String, Option<String>, String, bool);

fn peer_volumes(project: &Value, svc: &Value) -> BTreeSet<Vol> {
    let mut out = BTreeSet::new();
    for m in svc["volumes"].as_array().into_iter().flatten() {
        let kind = text(&m["type"]).unwrap();
        let src = m.get("source").and_then(text).map(|s| {
            if kind == "volume" {
                // The engine's name of a named volume.
                text(&project["volumes"][&s]["name"]).unwrap_or(s)
            } else {
                s
            }
        });
        let ro = m.get("read_only").and_then(Value::as_bool).unwrap_or(false);
        out.insert((kind, src, text(&m["target"]).unwrap(), ro));
    }
    for t in strings(&svc["tmpfs"]) {
        out.insert(("tmpfs".into(), None, t, false));
    }
    out
}

fn drover_volumes(svc: &Value) -> BTreeSet<Vol> {
    svc["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                text(&m["kind"]).unwrap(),
                text(&m["source"]),
                text(&m["target"]).unwrap(),
                m["read_only"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `host=ip` (compose) or `host:ip` (drover) as (host, ip).
fn hosts(v: &Value, sep: char) -> BTreeSet<(String, String)> {
    strings(v)
        .into_iter()
        .map(|h| {
            let (name, ip) = h.split_once(sep).unwrap_or((&h, ""));
            (name.to_string(), ip.to_string())
        })
        .collect()
}

fn with_protocol(v: &Value) -> BTreeSet<String> {
    strings(v)
        .into_iter()
        .map(|e| {
            if e.contains('/') {
                e
            } else {
                format!("{e}/tcp")
            }
        })
        .collect()
}

/// Ulimits as `{name: n}` when soft and hard agree, else `{name: {soft, hard}}`.
fn ulimits(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return Value::Null;
    };
    json!(
        m.iter()
            .map(|(k, l)| {
                let v = match l {
                    Value::Object(_) if l["soft"] == l["hard"] => l["soft"].clone(),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect::<BTreeMap<_, _>>()
    )
}

fn text_map(v: &Value) -> Value {
    match v.as_object() {
        Some(m) if !m.is_empty() => json!(
            m.iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect::<BTreeMap<_, _>>()
        ),
        _ => Value::Null,
    }
}

fn targets(v: &Value) -> BTreeSet<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|m| (text(&m["source"]).unwrap(), text(&m["target"]).unwrap()))
        .collect()
}

fn devices(v: &Value) -> BTreeSet<(String, String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                text(&m["source"]).unwrap_or_default(),
                text(&m["target"]).unwrap_or_default(),
                text(&m["permissions"]).unwrap_or_else(|| "rwm".into()),
            )
        })
        .collect()
}

fn conditions(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, d)| (k.clone(), text(&d["condition"]).unwrap_or_default()))
        .collect()
}

fn flag(s: &Value, k: &str) -> Value {
    json!(s.get(k).and_then(Value::as_bool).unwrap_or(false))
}

fn or_null(s: &Value, k: &str) -> Value {
    s.get(k).cloned().unwrap_or(Value::Null)
}

fn non_empty(v: Value) -> Value {
    match &v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        _ => v,
    }
}

/// The fields both tools print, normalized to the same shapes.
fn peer_service(project: &Value, s: &Value) -> BTreeMap<&'static str, Value> {
    let env: BTreeMap<String, Option<String>> = s["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), text(v).map(|v| v.replace("$$", "$"))))
        .collect();
    let networks: BTreeSet<String> = s["networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let limits = &s["deploy"]["resources"]["limits"];
    let reservations = &s["deploy"]["resources"]["reservations"];
    let hc = &s["healthcheck"];
    let logging = &s["logging"];
    BTreeMap::from([
        ("image", s["image"].clone()),
        ("command", s["command"].clone()),
        ("entrypoint", s["entrypoint"].clone()),
        ("environment", json!(env)),
        ("ports", json!(peer_ports(&s["ports"]))),
        ("expose", json!(with_protocol(&s["expose"]))),
        ("volumes", json!(peer_volumes(project, s))),
        ("networks", json!(networks)),
        (
            "replicas",
            json!(s["deploy"]["replicas"].as_u64().unwrap_or(1)),
        ),
        ("labels", non_empty(or_null(s, "labels"))),
        ("user", or_null(s, "user")),
        ("working_dir", or_null(s, "working_dir")),
        ("hostname", or_null(s, "hostname")),
        ("domainname", or_null(s, "domainname")),
        ("container_name", or_null(s, "container_name")),
        ("stop_signal", or_null(s, "stop_signal")),
        ("network_mode", or_null(s, "network_mode")),
        ("ipc", or_null(s, "ipc")),
        ("runtime", or_null(s, "runtime")),
        ("init", or_null(s, "init")),
        ("cap_add", json!(string_set(&s["cap_add"]))),
        ("cap_drop", json!(string_set(&s["cap_drop"]))),
        ("dns", json!(strings(&s["dns"]))),
        ("dns_search", json!(strings(&s["dns_search"]))),
        ("extra_hosts", json!(hosts(&s["extra_hosts"], '='))),
        ("security_opt", json!(string_set(&s["security_opt"]))),
        ("group_add", json!(string_set(&s["group_add"]))),
        ("privileged", flag(s, "privileged")),
        ("read_only", flag(s, "read_only")),
        ("tty", flag(s, "tty")),
        ("stdin_open", flag(s, "stdin_open")),
        (
            "pids_limit",
            match or_null(limits, "pids") {
                Value::Null => or_null(s, "pids_limit"),
                v => v,
            },
        ),
        ("shm_size", peer_bytes(&s["shm_size"])),
        (
            "mem_limit",
            match peer_bytes(&limits["memory"]) {
                Value::Null => peer_bytes(&s["mem_limit"]),
                v => v,
            },
        ),
        (
            "mem_reservation",
            match peer_bytes(&reservations["memory"]) {
                Value::Null => peer_bytes(&s["mem_reservation"]),
                v => v,
            },
        ),
        (
            "cpus",
            match peer_number(&limits["cpus"]) {
                Value::Null => peer_number(&s["cpus"]),
                v => v,
            },
        ),
        ("logging_driver", logging["driver"].clone()),
        ("logging_options", text_map(&logging["options"])),
        ("sysctls", text_map(&s["sysctls"])),
        ("ulimits", ulimits(&s["ulimits"])),
        ("devices", json!(devices(&s["devices"]))),
        ("secrets", json!(targets(&s["secrets"]))),
        ("configs", json!(targets(&s["configs"]))),
        (
            "depends_on",
            // compose keeps an optional dependency on a disabled service in its output,
            // where it has no effect; drover leaves it out (with a warning).
            json!(
                conditions(&s["depends_on"])
                    .into_iter()
                    .filter(|(k, _)| project["services"].get(k).is_some())
                    .collect::<BTreeMap<_, _>>()
            ),
        ),
        ("health_test", non_empty(hc["test"].clone())),
        ("health_interval", json!(peer_millis(&hc["interval"]))),
        ("health_timeout", json!(peer_millis(&hc["timeout"]))),
        (
            "health_start_period",
            json!(peer_millis(&hc["start_period"])),
        ),
        ("health_retries", hc["retries"].clone()),
        (
            "stop_grace_period",
            json!(peer_millis(&s["stop_grace_period"]).unwrap_or(10_000)),
        ),
    ])
}

fn drover_service(s: &Value) -> BTreeMap<&'static str, Value> {
    let networks: BTreeSet<String> = s["networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let hc = &s["healthcheck"];
    let logging = &s["logging"];
    let number = |k: &str| match s.get(k) {
        Some(Value::Number(n)) => json!(n.as_f64().unwrap()),
        _ => Value::Null,
    };
    BTreeMap::from([
        ("image", s["image"].clone()),
        ("command", s["command"].clone()),
        ("entrypoint", s["entrypoint"].clone()),
        ("environment", s["environment"].clone()),
        ("ports", json!(drover_ports(&s["ports"]))),
        ("expose", json!(with_protocol(&or_null(s, "expose")))),
        ("volumes", json!(drover_volumes(s))),
        ("networks", json!(networks)),
        ("replicas", s["replicas"].clone()),
        ("labels", non_empty(or_null(s, "labels"))),
        ("user", or_null(s, "user")),
        ("working_dir", or_null(s, "working_dir")),
        ("hostname", or_null(s, "hostname")),
        ("domainname", or_null(s, "domainname")),
        ("container_name", or_null(s, "container_name")),
        ("stop_signal", or_null(s, "stop_signal")),
        ("network_mode", or_null(s, "network_mode")),
        ("ipc", or_null(s, "ipc")),
        ("runtime", or_null(s, "runtime")),
        ("init", or_null(s, "init")),
        ("cap_add", json!(string_set(&or_null(s, "cap_add")))),
        ("cap_drop", json!(string_set(&or_null(s, "cap_drop")))),
        ("dns", json!(strings(&or_null(s, "dns")))),
        ("dns_search", json!(strings(&or_null(s, "dns_search")))),
        ("extra_hosts", json!(hosts(&or_null(s, "extra_hosts"), ':'))),
        (
            "security_opt",
            json!(string_set(&or_null(s, "security_opt"))),
        ),
        ("group_add", json!(string_set(&or_null(s, "group_add")))),
        ("privileged", flag(s, "privileged")),
        ("read_only", flag(s, "read_only")),
        ("tty", flag(s, "tty")),
        ("stdin_open", flag(s, "stdin_open")),
        ("pids_limit", or_null(s, "pids_limit")),
        ("shm_size", or_null(s, "shm_size")),
        ("mem_limit", or_null(s, "mem_limit")),
        ("mem_reservation", or_null(s, "mem_reservation")),
        ("cpus", number("cpus")),
        ("logging_driver", logging["driver"].clone()),
        ("logging_options", text_map(&logging["options"])),
        ("sysctls", text_map(&or_null(s, "sysctls"))),
        ("ulimits", ulimits(&or_null(s, "ulimits"))),
        ("devices", json!(devices(&or_null(s, "devices")))),
        ("secrets", json!(targets(&or_null(s, "secrets")))),
        ("configs", json!(targets(&or_null(s, "configs")))),
        ("depends_on", json!(conditions(&s["depends_on"]))),
        ("health_test", non_empty(hc["test"].clone())),
        ("health_interval", json!(drover_millis(&hc["interval"]))),
        ("health_timeout", json!(drover_millis(&hc["timeout"]))),
        (
            "health_start_period",
            json!(drover_millis(&hc["start_period"])),
        ),
        ("health_retries", hc["retries"].clone()),
        (
            "stop_grace_period",
            json!(drover_millis(&s["stop_grace_period"]).unwrap()),
        ),
    ])
}

/// Compare one fixture directory, loaded with `files` (none: the default lookup) and
/// `env`, service by service and field by field.
fn compare(case: &str, files: &[&str], env: &[(&str, &str)]) {
    let dir = fixtures().join(case);
    let peer = compose_config(&dir, files, env);
    let ours = drover_check(&dir, files, env);
    assert_eq!(peer["name"], ours["name"], "{case}: project name");

    let peer_services: BTreeSet<&String> = peer["services"].as_object().unwrap().keys().collect();
    let our_services: BTreeSet<&String> = ours["services"].as_object().unwrap().keys().collect();
    assert_eq!(peer_services, our_services, "{case}: enabled services");
    let mut diffs = Vec::new();
    for name in our_services {
        let a = peer_service(&peer, &peer["services"][name]);
        let b = drover_service(&ours["services"][name]);
        for (field, pv) in &a {
            let dv = &b[field];
            if pv != dv {
                diffs.push(format!(
                    "{case}: services.{name}.{field}:\n  compose: {pv}\n  drover:  {dv}"
                ));
            }
        }
    }
    // Top-level networks and volumes: the same engine names and external flags.
    for kind in ["networks", "volumes"] {
        for (key, p) in peer[kind].as_object().into_iter().flatten() {
            let o = &ours[kind][key];
            let pair = |v: &Value| (text(&v["name"]), flag(v, "external"));
            if pair(p) != pair(o) {
                diffs.push(format!(
                    "{case}: {kind}.{key}:\n  compose: {:?}\n  drover:  {:?}",
                    pair(p),
                    pair(o)
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn keys_agree_with_compose() {
    compare("keys", &[], &[]);
}

#[test]
fn extends_agree_with_compose() {
    compare("extends", &[], &[]);
}

#[test]
fn include_agrees_with_compose() {
    compare("include", &[], &[]);
}

#[test]
fn override_files_and_profiles_agree_with_compose() {
    compare("multi", &[], &[]);
    compare("multi", &[], &[("COMPOSE_PROFILES", "debug")]);
}

#[test]
fn merge_rules_agree_with_compose() {
    // After compose-go's override tests: networks list -> map, depends_on, volumes by
    // target, environment and labels per entry, ports, extra_hosts, ulimits, logging.
    compare("merge", &["compose.yml", "override.yml"], &[]);
}

#[test]
fn interpolation_agrees_with_compose() {
    compare("interp", &[], &[]);
    compare(
        "interp",
        &[],
        &[("TAG", "2"), ("REPLICAS", "5"), ("EMPTY", "")],
    );
}

#[test]
fn loader_interpolation_and_casts_agree_with_compose() {
    // After compose-go's loader tests (a max_failure_ratio of 0.5, not their 3.14, which
    // drover refuses as more than 1).
    compare(
        "loader",
        &[],
        &[
            ("HOME", "/home/foo"),
            ("MEU", "Shadoks"),
            ("theint", "555"),
            ("thefloat", "0.5"),
            ("thebool", "true"),
            ("theduration", "60s"),
            ("thesize", "2gb"),
        ],
    );
}

#[test]
fn dotenv_and_env_file_agree_with_compose() {
    // Every operator, nesting, quotes and escapes, and the process environment winning
    // over keys the file defined earlier (OVERRIDDEN).
    compare("dotenv", &[], &[("OVERRIDDEN", "from-env")]);
    compare(
        "dotenv",
        &[],
        &[("BASE", "/opt"), ("PROC", "proc"), ("MISSING", "m")],
    );
}

#[test]
fn port_host_addresses_agree_with_compose() {
    compare("ports", &[], &[]);
    compare("ports", &[], &[("HOSTIP", "::1")]);
    compare("ports", &[], &[("HOSTIP", "10.0.0.7")]);
}

#[test]
fn depends_on_agrees_with_compose() {
    compare("depends", &[], &[]);
    compare("depends", &[], &[("COMPOSE_PROFILES", "cache")]);
}

/// A Compose file (and optionally a `.env`) compose refuses at load time: drover refuses
/// it at `check` time with a located error.
fn refused(name: &str, compose: &str, dotenv: Option<&str>, env: &[(&str, &str)]) {
    let dir = std::env::temp_dir().join(format!("drover-differential-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    if let Some(text) = dotenv {
        std::fs::write(dir.join(".env"), text).unwrap();
    }
    let peer = output(
        Command::new(compose_bin()).args(["config", "--format", "json"]),
        &dir,
        env,
    );
    assert!(
        !peer.status.success(),
        "{name}: compose accepts it; the case is wrong"
    );
    let ours = output(
        Command::new(env!("CARGO_BIN_EXE_drover")).args(["check", "--format", "json"]),
        &dir,
        env,
    );
    let err = String::from_utf8_lossy(&ours.stderr);
    assert_eq!(
        ours.status.code(),
        Some(1),
        "{name}: drover accepts it: {err}"
    );
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or("");
    let located = if dotenv.is_some() && line.contains(".env:") {
        line.starts_with("error: ") && line.contains("/.env:")
    } else {
        line.starts_with("error: compose.yml:")
    };
    assert!(located, "{name}: not a located error: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn service(body: &str) -> String {
    format!("services:\n  web:\n    image: busybox\n{body}")
}

#[test]
fn what_compose_refuses_drover_refuses_at_check_time() {
    let hostip = service("    ports: [\"${HOSTIP:-127.0.0.1}:8080:80\"]\n");
    refused("hostip", &hostip, None, &[("HOSTIP", "x")]);
    refused(
        "hostip-long",
        &service("    ports: [{target: 80, host_ip: nope}]\n"),
        None,
        &[],
    );
    refused(
        "hostip-v4",
        &service("    ports: [\"1.2.3:80:80\"]\n"),
        None,
        &[],
    );
    for (name, value) in [
        ("duration-day", "\"1day\""),
        ("duration-bare", "\"10\""),
        ("duration-int", "10"),
        ("duration-space", "\"1h 30m\""),
    ] {
        refused(
            name,
            &service(&format!("    stop_grace_period: {value}\n")),
            None,
            &[],
        );
    }
    refused(
        "distinct-cpus",
        &service("    cpus: 1.5\n    deploy: {resources: {limits: {memory: 1g}}}\n"),
        None,
        &[],
    );
    refused(
        "distinct-memory",
        &service("    mem_limit: 512m\n    deploy: {resources: {limits: {memory: 256m}}}\n"),
        None,
        &[],
    );
    refused(
        "optional-missing",
        &service("    depends_on: {cache: {condition: service_started, required: false}}\n"),
        None,
        &[],
    );
    refused(
        "ulimit-half",
        &service("    ulimits: {nofile: {soft: 10}}\n"),
        None,
        &[],
    );
    for (name, body) in [
        ("empty-env-key", "    environment: {\"\": x}\n"),
        ("empty-label-key", "    labels: {\"\": x}\n"),
        ("empty-sysctl-key", "    sysctls: {\"\": x}\n"),
        ("empty-host", "    extra_hosts: {\"\": 1.2.3.4}\n"),
        ("oom-score-adj", "    oom_score_adj: 5000\n"),
        (
            "security-opt-string",
            "    security_opt: \"no-new-privileges:true\"\n",
        ),
        ("network-twice", "    networks: [default, default]\n"),
        ("user-number", "    user: 1000\n"),
        ("working-dir-number", "    working_dir: 5\n"),
        ("cap-add-number", "    cap_add: [5]\n"),
        ("dns-search-number", "    dns_search: [5]\n"),
        ("unknown-service-key", "    imagee: busybox\n"),
    ] {
        refused(name, &service(body), None, &[]);
    }
    refused(
        "unknown-top-level-key",
        &format!("servicess: {{}}\n{}", service("")),
        None,
        &[],
    );
    refused(
        "required-variable",
        &service("    environment: [\"A=${NEEDED:?set NEEDED}\"]\n"),
        None,
        &[],
    );
    refused(
        "invalid-template",
        &service("    environment: [\"A=${ bad}\"]\n"),
        None,
        &[],
    );
    refused(
        "dotenv-required",
        &service("    environment: [\"A=${A}\"]\n"),
        Some("A=${MISSING:?set MISSING}\n"),
        &[],
    );
    refused(
        "dotenv-invalid",
        &service("    environment: [\"A=${A}\"]\n"),
        Some("A=${ bad}\n"),
        &[],
    );
}
