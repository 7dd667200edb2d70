//! The alert rules and the dashboard users drop in (deploy/prometheus/alerts.yml,
//! deploy/grafana/drover.json): `promtool` accepts the rules, every metric they name is one
//! drover exports, and a real Prometheus scraping a running drover fires the crash-loop
//! alert for a service that keeps crashing, and only for it. Project `it-alerts`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drover::telemetry::http;
use support::drover::{Project, address, eventually, eventually_with};

const UP: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Prometheus and promtool, installed when missing.
fn prometheus_installed() {
    let out = Command::new(repo("scripts/prometheus.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The drover metric names a file refers to.
fn referenced(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: Vec<String> = text
        .match_indices("drover_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    match http::get(addr, path, Duration::from_secs(5)) {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus scraping `target` every second with the project's rules, each rule's `for:`
/// shortened to 1 s (the expressions are what is tested; the durations are the user's
/// trade-off between noise and delay).
fn prometheus(target: SocketAddr) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("drover-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let quick: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("alerts.yml"), quick).unwrap();
    let config = format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [alerts.yml]\n\
         scrape_configs:\n  - job_name: drover\n    static_configs: [{{ targets: ['{target}'] }}]\n"
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

/// The alerts Prometheus reports as firing: (alert name, service label).
fn firing(p: &Prometheus) -> Vec<(String, String)> {
    let Some(body) = get(p.addr, "/api/v1/alerts") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["service"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

const COMPOSE: &str = r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
  crash:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
"#;

#[test]
fn the_rules_check_name_exported_metrics_and_fire_for_a_crash_loop_only() {
    prometheus_installed();
    let rules = repo("deploy/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let p = Project::new("it-alerts", COMPOSE);
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--backoff-initial", "2s"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "web running", |_| p.running("web") == 1);

    // Every metric the rules and the dashboard name is one drover exports (Swarm mode's
    // own are rendered only in Swarm mode, the webhooks' once one is configured: those are
    // looked up in the exporter's source).
    let metrics = get(addr, "/metrics").expect("/metrics");
    let exporter = std::fs::read_to_string(repo("src/telemetry/metrics.rs")).unwrap();
    for file in [rules.clone(), repo("deploy/grafana/drover.json")] {
        for name in referenced(&file) {
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            let exported = metrics.contains(&format!("# TYPE {base} "))
                || ((base.starts_with("drover_swarm_")
                    || base.starts_with("drover_notifications_"))
                    && exporter.contains(&format!("\"{base}\"")));
            assert!(
                exported,
                "{} names {name}, which drover does not export",
                file.display()
            );
        }
    }

    let prom = prometheus(addr);
    eventually(
        Duration::from_secs(120),
        "the crash-loop alert fires",
        || firing(&prom).contains(&("DroverCrashLoop".to_string(), "crash".to_string())),
    );
    let now = firing(&prom);
    assert!(
        !now.iter().any(|(_, service)| service == "web"),
        "nothing fires for the healthy service: {now:?}"
    );
    assert!(
        !now.iter()
            .any(|(name, _)| name == "DroverDown" || name == "DroverNodeDown"),
        "{now:?}"
    );
    d.assert_alive();
}
