//! The HTTP endpoints of a running drover (/livez, /readyz, /metrics, /status) and the
//! `status` and `healthcheck` subcommands, checked against the engine's own container
//! list. Each test has its own project name (`it-obs-...`); TLS nodes use indices 61..69
//! (this file: 62, 63).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use drover::telemetry::http;
use drover::telemetry::status::Status;
use support::Node;
use support::drover::{Project, address, eventually_with};

const UP: Duration = Duration::from_secs(60);

fn compose(web: u32, worker: u32) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {web}
  worker:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    stop_grace_period: 2s
    scale: {worker}
"#
    )
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http::get(addr, path, Duration::from_secs(5)).unwrap()
}

fn status(addr: SocketAddr) -> Status {
    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Samples of one metric: label set (as `k=v,...` sorted) -> value.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            continue;
        }
        let mut pairs: Vec<String> = labels
            .trim_end_matches('}')
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| p.trim_end_matches('"').replacen("=\"", "=", 1))
            .collect();
        pairs.sort();
        out.insert(pairs.join(","), value.parse().unwrap());
    }
    out
}

/// The value of the one sample of `name` whose labels include every `k=v` in `want`.
fn value(text: &str, name: &str, want: &[&str]) -> Option<f64> {
    let matching: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            let have: Vec<&str> = labels.split(',').collect();
            want.iter().all(|w| have.contains(w))
        })
        .map(|(_, v)| v)
        .collect();
    assert!(matching.len() <= 1, "{name} {want:?}: {matching:?}");
    matching.first().copied()
}

#[test]
fn metrics_and_status_match_the_engine_and_count_restarts_and_recreations() {
    let p = Project::new("it-obs-metrics", &compose(3, 2));
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    assert_eq!(get(addr, "/livez"), (200, "ok\n".into()));
    eventually_with(&mut d, UP, "3 web, 2 worker and ready", |_| {
        p.running("web") == 3 && p.running("worker") == 2 && get(addr, "/readyz").0 == 200
    });
    // One engine from the environment: the node `default`.
    let node = "default";
    let project = format!("project={}", p.name);
    let node_l = format!("node={node}");

    // Figures against `docker ps`, once drover has seen the last start.
    eventually_with(&mut d, UP, "metrics show 3 and 2 running", |_| {
        let m = get(addr, "/metrics").1;
        value(&m, "drover_service_actual_replicas", &["service=web"]) == Some(3.0)
            && value(&m, "drover_service_actual_replicas", &["service=worker"]) == Some(2.0)
    });
    let m = get(addr, "/metrics").1;
    for (service, desired) in [("web", 3.0), ("worker", 2.0)] {
        let svc = format!("service={service}");
        let labels = [project.as_str(), svc.as_str(), node_l.as_str()];
        assert_eq!(
            value(&m, "drover_service_desired_replicas", &labels),
            Some(desired)
        );
        assert_eq!(
            value(&m, "drover_service_actual_replicas", &labels),
            Some(p.running(service) as f64)
        );
        assert_eq!(
            value(&m, "drover_service_containers", &labels),
            Some(p.containers(Some(service), None).len() as f64)
        );
    }
    assert_eq!(value(&m, "drover_nodes_up", &[&project]), Some(1.0));
    assert_eq!(value(&m, "drover_node_up", &[&node_l]), Some(1.0));
    assert_eq!(value(&m, "drover_ready", &[]), Some(1.0));
    assert_eq!(value(&m, "drover_event_stream_up", &[&node_l]), Some(1.0));
    assert_eq!(
        value(
            &m,
            "drover_actions_total",
            &["action=create", "service=web", "result=ok"]
        ),
        Some(3.0)
    );
    // Initial creates are not recreations.
    assert!(samples(&m, "drover_recreations_total").is_empty(), "{m}");
    assert!(value(&m, "drover_reconcile_duration_seconds_count", &[&node_l]).unwrap() >= 1.0);
    assert!(value(&m, "drover_events_total", &[&node_l]).unwrap() >= 5.0);

    let s = status(addr);
    assert!(s.ready, "{:?}", s.not_ready);
    assert_eq!(s.project, p.name);
    assert_eq!(s.nodes.len(), 1);
    assert_eq!(s.nodes[0].name, node);
    assert_eq!(s.nodes[0].up, Some(true));
    let web = s.services.iter().find(|x| x.name == "web").unwrap();
    assert_eq!((web.desired, web.actual), (3, 3));
    assert_eq!(web.nodes[0].node, node);
    assert_eq!(
        s.last_actions
            .iter()
            .filter(|a| a.action == "create")
            .count(),
        5
    );

    // docker kill: one restart (reason exited); docker rm -f: one recreation (removed).
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["kill", &victim]);
    let gone = p.containers(Some("worker"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &gone]);
    eventually_with(&mut d, UP, "a restart and a recreation counted", |_| {
        let m = get(addr, "/metrics").1;
        value(
            &m,
            "drover_restarts_total",
            &["service=web", "reason=exited"],
        ) == Some(1.0)
            && value(
                &m,
                "drover_recreations_total",
                &["service=worker", "reason=removed"],
            ) == Some(1.0)
            && value(&m, "drover_service_actual_replicas", &["service=worker"]) == Some(2.0)
            && value(&m, "drover_service_actual_replicas", &["service=web"]) == Some(3.0)
    });
    assert_eq!((p.running("web"), p.running("worker")), (3, 2));
    let s = status(addr);
    let last = s.last_actions.last().unwrap();
    assert!(
        s.last_actions
            .iter()
            .any(|a| a.action == "start" && a.reason.as_deref() == Some("exited")),
        "{:?}",
        s.last_actions
    );
    assert!(last.error.is_none(), "{last:?}");

    // `drover status` prints the same as a table; `drover healthcheck` says healthy.
    let listen = addr.to_string();
    let out = p.drover(&["status", "--listen", &listen]);
    assert!(out.status.success(), "{}", support::text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with(&format!("project {}: ready", p.name)),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["web", node, "3", "3", "3"]),
        "{table}"
    );
    let out = p.drover(&["healthcheck", "--listen", &listen]);
    assert!(out.status.success(), "{}", support::text(&out));
    let out = p.drover(&["status", "--json", "--listen", &listen]);
    let again: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again.project, p.name);
}

#[test]
fn an_invalid_edit_counts_as_a_reload_failure_and_shows_in_status() {
    let p = Project::new("it-obs-reload", &compose(1, 0));
    p.write("scale.yml", "web: 1\n");
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--scale-file", "scale.yml"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "1 web", |_| p.running("web") == 1);
    p.write("scale.yml", "web: many\n");
    eventually_with(&mut d, UP, "a reload failure counted", |_| {
        let m = get(addr, "/metrics").1;
        value(&m, "drover_config_reload_failures_total", &[]) == Some(1.0)
            && value(&m, "drover_config_valid", &[]) == Some(0.0)
    });
    let s = status(addr);
    assert!(
        s.config.error.as_deref().unwrap().contains("scale.yml"),
        "{:?}",
        s.config
    );
    p.write("scale.yml", "web: 2\n");
    eventually_with(&mut d, UP, "valid again and 2 web", |_| {
        let m = get(addr, "/metrics").1;
        value(&m, "drover_config_valid", &[]) == Some(1.0)
            && value(&m, "drover_service_desired_replicas", &["service=web"]) == Some(2.0)
            && p.running("web") == 2
    });
}

#[test]
fn readyz_fails_while_the_engine_is_away_and_recovers() {
    let node = Node::start("obs-ready", 62);
    let p = Project::on("it-obs-ready", &compose(1, 0), node.env());
    let mut d = p.run(&[
        "--listen",
        "127.0.0.1:0",
        "--watchdog",
        "2s",
        "--resync-interval",
        "2s",
    ]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "1 web and ready", |_| {
        p.running("web") == 1 && get(addr, "/readyz").0 == 200
    });
    let name = format!("node={}", status(addr).nodes[0].name);
    assert_eq!(name, "node=default");
    node.stop();
    eventually_with(&mut d, UP, "not ready, node down", |_| {
        let (code, body) = get(addr, "/readyz");
        let m = get(addr, "/metrics").1;
        code == 503
            && body.contains("10.231.62.2")
            && value(&m, "drover_node_up", &[&name]) == Some(0.0)
            && value(&m, "drover_nodes_up", &[]) == Some(0.0)
    });
    // Liveness is about drover, not the engine.
    assert_eq!(get(addr, "/livez").0, 200);
    let s = status(addr);
    assert_eq!(s.nodes[0].up, Some(false));
    assert!(!s.ready && !s.not_ready.is_empty());
    node.restart();
    eventually_with(&mut d, UP, "ready again with a reconnect counted", |_| {
        let m = get(addr, "/metrics").1;
        get(addr, "/readyz").0 == 200
            && value(&m, "drover_event_stream_reconnects_total", &[&name]).unwrap_or(0.0) >= 1.0
            && value(&m, "drover_event_stream_errors_total", &[&name]).unwrap_or(0.0) >= 1.0
    });
}

#[test]
fn listen_off_serves_nothing_and_a_taken_address_is_an_error() {
    let p = Project::new("it-obs-off", &compose(1, 0));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = p.drover(&["run", "--listen", &addr]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--listen {addr}")), "{err}");
    let out = p.drover(&["run", "--listen", "nowhere"]);
    assert!(!out.status.success());

    let mut d = p.run(&["--listen", "off"]);
    eventually_with(&mut d, UP, "1 web", |_| p.running("web") == 1);
    assert!(d.actions("listen").is_empty());
    let out = p.drover(&["healthcheck", "--listen", "off"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP is off"));
    drop(taken);
    let out = p.drover(&["healthcheck", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
}
