//! Differential tests against docker-compose 1.29 (Debian's `docker-compose`): on the
//! fixtures written in the forms that version understands (`tests/fixtures/compose/peer/`),
//! `drover check --format json` and `docker-compose config` must agree field by field on
//! what reaches the containers. `scripts/compose-peer.sh` installs the peer when missing;
//! nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/peer")
}

/// docker-compose, installed once per test process.
fn compose_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/compose-peer.sh");
        let out = Command::new(script).output().expect("compose-peer.sh runs");
        assert!(
            out.status.success(),
            "scripts/compose-peer.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

fn run(cmd: &mut Command, dir: &Path, env: &[(&str, &str)]) -> Vec<u8> {
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/home/tester");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn shell_words(s: &str) -> Vec<String> {
    // The fixtures only use plain words and single quotes.
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
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

fn millis(v: &Value) -> Option<u64> {
    let s = text(v)?;
    let d = humantime::parse_duration(&s.replace("m", "m ").replace("m s", "ms"))
        .unwrap_or_else(|e| panic!("duration {s}: {e}"));
    Some(d.as_millis() as u64)
}

fn bytes(v: &Value) -> Option<i64> {
    let s = text(v)?.to_ascii_lowercase();
    let (n, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
    let mult = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        u => panic!("size unit {u}"),
    };
    Some(n.parse::<i64>().unwrap() * mult)
}

/// (host_ip, published, target, protocol) from compose's short or long form.
fn peer_ports(v: &Value) -> BTreeSet<(String, u16, u16, String)> {
    let mut out = BTreeSet::new();
    for p in v.as_array().into_iter().flatten() {
        match p {
            Value::Object(m) => {
                out.insert((
                    m.get("host_ip").and_then(text).unwrap_or_default(),
                    m.get("published")
                        .and_then(text)
                        .map_or(0, |s| s.parse().unwrap()),
                    m["target"].as_u64().unwrap() as u16,
                    m.get("protocol")
                        .and_then(text)
                        .unwrap_or_else(|| "tcp".into()),
                ));
            }
            other => {
                let s = text(other).unwrap();
                let (body, proto) = s.split_once('/').unwrap_or((&s, "tcp"));
                let parts: Vec<&str> = body.split(':').collect();
                let (ip, published, target) = match parts.as_slice() {
                    [t] => ("", "", *t),
                    [p, t] => ("", *p, *t),
                    [ip, p, t] => (*ip, *p, *t),
                    _ => panic!("port {s}"),
                };
                out.insert((
                    ip.to_string(),
                    published.parse().unwrap_or(0),
                    target.parse().unwrap(),
                    proto.to_string(),
                ));
            }
        }
    }
    out
}

fn drover_ports(v: &Value) -> BTreeSet<(String, u16, u16, String)> {
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

fn peer_volumes(project: &str, svc: &Value) -> BTreeSet<Vol> {
    let mut out = BTreeSet::new();
    for v in svc["volumes"].as_array().into_iter().flatten() {
        match v {
            Value::Object(m) => {
                let kind = text(&m["type"]).unwrap();
                let src = m.get("source").and_then(text).map(|s| {
                    if kind == "volume" {
                        format!("{project}_{s}")
                    } else {
                        s
                    }
                });
                let ro = m.get("read_only").and_then(Value::as_bool).unwrap_or(false);
                out.insert((kind, src, text(&m["target"]).unwrap(), ro));
            }
            other => {
                let s = text(other).unwrap();
                let parts: Vec<&str> = s.split(':').collect();
                let entry = match parts.as_slice() {
                    [t] => ("volume".to_string(), None, t.to_string(), false),
                    [src, t, rest @ ..] => {
                        let ro = rest
                            .first()
                            .is_some_and(|m| m.split(',').any(|o| o == "ro"));
                        if src.starts_with('/') {
                            ("bind".into(), Some(src.to_string()), t.to_string(), ro)
                        } else {
                            (
                                "volume".into(),
                                Some(format!("{project}_{src}")),
                                t.to_string(),
                                ro,
                            )
                        }
                    }
                    _ => panic!("volume {s}"),
                };
                out.insert(entry);
            }
        }
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

/// The fields both tools print, normalized to the same shapes.
fn peer_service(project: &str, s: &Value) -> BTreeMap<&'static str, Value> {
    let env: BTreeMap<String, Option<String>> = s["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), text(v).map(|v| v.replace("$$", "$"))))
        .collect();
    let command = match &s["command"] {
        Value::String(c) => json!(shell_words(c)),
        other => other.clone(),
    };
    let networks: BTreeSet<String> = match &s["networks"] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a.iter().filter_map(text).collect(),
        _ if s.get("network_mode").is_some() => BTreeSet::new(),
        _ => BTreeSet::from(["default".to_string()]),
    };
    let hc = &s["healthcheck"];
    BTreeMap::from([
        ("image", s["image"].clone()),
        ("command", command),
        ("entrypoint", s["entrypoint"].clone()),
        ("environment", json!(env)),
        ("ports", json!(peer_ports(&s["ports"]))),
        ("volumes", json!(peer_volumes(project, s))),
        ("networks", json!(networks)),
        (
            "replicas",
            json!(
                s["deploy"]["replicas"]
                    .as_u64()
                    .or(s["scale"].as_u64())
                    .unwrap_or(1)
            ),
        ),
        ("labels", s.get("labels").cloned().unwrap_or(json!({}))),
        ("user", s["user"].clone()),
        ("working_dir", s["working_dir"].clone()),
        ("stop_signal", s["stop_signal"].clone()),
        ("network_mode", s["network_mode"].clone()),
        ("cap_add", json!(strings(&s["cap_add"]))),
        ("cap_drop", json!(strings(&s["cap_drop"]))),
        ("dns", json!(strings(&s["dns"]))),
        ("dns_search", json!(strings(&s["dns_search"]))),
        ("extra_hosts", json!(strings(&s["extra_hosts"]))),
        ("security_opt", json!(strings(&s["security_opt"]))),
        ("group_add", json!(strings(&s["group_add"]))),
        (
            "privileged",
            json!(s["privileged"].as_bool().unwrap_or(false)),
        ),
        (
            "read_only",
            json!(s["read_only"].as_bool().unwrap_or(false)),
        ),
        ("tty", json!(s["tty"].as_bool().unwrap_or(false))),
        (
            "stdin_open",
            json!(s["stdin_open"].as_bool().unwrap_or(false)),
        ),
        ("init", s["init"].clone()),
        ("ipc", s["ipc"].clone()),
        ("runtime", s["runtime"].clone()),
        ("domainname", s["domainname"].clone()),
        ("pids_limit", s["pids_limit"].clone()),
        ("shm_size", json!(bytes(&s["shm_size"]))),
        (
            "mem_limit",
            json!(bytes(&s["deploy"]["resources"]["limits"]["memory"]).or(bytes(&s["mem_limit"]))),
        ),
        ("cpus", s["cpus"].clone()),
        ("logging_driver", s["logging"]["driver"].clone()),
        (
            "sysctls",
            json!(s["sysctls"].as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), text(v)))
                    .collect::<BTreeMap<_, _>>()
            })),
        ),
        ("ulimits", s.get("ulimits").cloned().unwrap_or(Value::Null)),
        ("health_test", hc["test"].clone()),
        ("health_interval", json!(millis(&hc["interval"]))),
        (
            "stop_grace_period",
            json!(millis(&s["stop_grace_period"]).or(Some(10_000))),
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
    let health_test = match hc["test"].as_array().map(|t| t.as_slice()) {
        Some([kind, cmd]) if kind == "CMD-SHELL" => cmd.clone(),
        Some([]) | None => Value::Null,
        Some(_) => hc["test"].clone(),
    };
    let ulimits = s.get("ulimits").map(|u| {
        json!(
            u.as_object()
                .unwrap()
                .iter()
                .map(|(k, l)| {
                    let v = if l["soft"] == l["hard"] {
                        l["soft"].clone()
                    } else {
                        json!({"soft": l["soft"], "hard": l["hard"]})
                    };
                    (k.clone(), v)
                })
                .collect::<BTreeMap<_, _>>()
        )
    });
    let or_null = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
    let flag = |k: &str| json!(s.get(k).and_then(Value::as_bool).unwrap_or(false));
    BTreeMap::from([
        ("image", s["image"].clone()),
        ("command", s["command"].clone()),
        ("entrypoint", s["entrypoint"].clone()),
        ("environment", s["environment"].clone()),
        ("ports", json!(drover_ports(&s["ports"]))),
        ("volumes", json!(drover_volumes(s))),
        ("networks", json!(networks)),
        ("replicas", s["replicas"].clone()),
        ("labels", s["labels"].clone()),
        ("user", s["user"].clone()),
        ("working_dir", s["working_dir"].clone()),
        ("stop_signal", s["stop_signal"].clone()),
        ("network_mode", or_null("network_mode")),
        ("cap_add", json!(strings(&or_null("cap_add")))),
        ("cap_drop", json!(strings(&or_null("cap_drop")))),
        ("dns", json!(strings(&or_null("dns")))),
        ("dns_search", json!(strings(&or_null("dns_search")))),
        ("extra_hosts", json!(strings(&or_null("extra_hosts")))),
        ("security_opt", json!(strings(&or_null("security_opt")))),
        ("group_add", json!(strings(&or_null("group_add")))),
        ("privileged", flag("privileged")),
        ("read_only", flag("read_only")),
        ("tty", flag("tty")),
        ("stdin_open", flag("stdin_open")),
        ("init", or_null("init")),
        ("ipc", or_null("ipc")),
        ("runtime", or_null("runtime")),
        ("domainname", or_null("domainname")),
        ("pids_limit", or_null("pids_limit")),
        ("shm_size", or_null("shm_size")),
        ("mem_limit", or_null("mem_limit")),
        ("cpus", or_null("cpus")),
        ("logging_driver", s["logging"]["driver"].clone()),
        (
            "sysctls",
            json!(s.get("sysctls").and_then(Value::as_object).map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), text(v)))
                    .collect::<BTreeMap<_, _>>()
            })),
        ),
        ("ulimits", ulimits.unwrap_or(Value::Null)),
        ("health_test", health_test),
        (
            "health_interval",
            json!(
                hc["interval"]
                    .as_str()
                    .map(|d| { humantime::parse_duration(d).unwrap().as_millis() as u64 })
            ),
        ),
        (
            "stop_grace_period",
            json!(
                humantime::parse_duration(s["stop_grace_period"].as_str().unwrap())
                    .unwrap()
                    .as_millis() as u64
            ),
        ),
    ])
}

fn compare(case: &str, env: &[(&str, &str)]) {
    let dir = peer_dir().join(case);
    let yaml = run(Command::new(compose_bin()).arg("config"), &dir, env);
    let peer: Value = serde_saphyr::from_slice(&yaml)
        .unwrap_or_else(|e| panic!("{case}: docker-compose config output: {e}"));
    let ours = run(
        Command::new(env!("CARGO_BIN_EXE_drover")).args(["check", "--format", "json"]),
        &dir,
        env,
    );
    let ours: Value = serde_json::from_slice(&ours).unwrap();
    let project = ours["name"].as_str().unwrap().to_string();
    assert_eq!(project, case, "both name the project after the directory");

    let peer_services: BTreeSet<&String> = peer["services"].as_object().unwrap().keys().collect();
    let our_services: BTreeSet<&String> = ours["services"].as_object().unwrap().keys().collect();
    assert_eq!(peer_services, our_services, "{case}: services");
    let mut diffs = Vec::new();
    for name in our_services {
        let a = peer_service(&project, &peer["services"][name]);
        let b = drover_service(&ours["services"][name]);
        for (field, pv) in &a {
            let dv = &b[field];
            if pv != dv {
                diffs.push(format!(
                    "{case}: services.{name}.{field}:\n  docker-compose: {pv}\n  drover:         {dv}"
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn keys_agree_with_docker_compose() {
    compare("keys", &[]);
}

#[test]
fn extends_agree_with_docker_compose() {
    compare("extends", &[]);
}

#[test]
fn override_files_and_profiles_agree_with_docker_compose() {
    // docker-compose 1.29's `config` prints every service, enabled or not.
    compare("multi", &[("COMPOSE_PROFILES", "debug")]);
}

#[test]
fn interpolation_agrees_with_docker_compose() {
    compare("interp", &[]);
}

#[test]
fn depends_on_agrees_with_docker_compose() {
    compare("depends", &[]);
}
