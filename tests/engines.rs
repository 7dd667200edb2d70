//! drover against its own engines ("nodes" over TCP+TLS): reached with the Docker CLI's
//! environment variables, refused with a clear line when the CA is wrong, and riding out
//! an engine restart and an engine crash under a running drover.
//!
//! Node indices 51..59 belong to this file.

mod support;

use std::time::Duration;

use support::Node;
use support::drover::{Project, eventually_with};

const UP: Duration = Duration::from_secs(60);

fn compose(replicas: u32) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {replicas}
"#
    )
}

#[test]
fn tls_engine_reached_with_docker_env_and_restarted_engine_restores_the_count() {
    let node = Node::start("eng-restart", 51);
    let p = Project::on("it-eng-restart", &compose(3), node.env());
    // Short watchdog and resync so a restart is noticed quickly in the test.
    let mut d = p.run(&["--resync-interval", "5s", "--watchdog", "5s"]);
    eventually_with(&mut d, UP, "3 web on the TLS node", |_| {
        p.running("web") == 3
    });

    // A clean engine restart: dockerd stops its containers; drover waits for the engine
    // and starts them again.
    node.stop();
    node.restart();
    eventually_with(&mut d, UP, "3 web again after the engine restart", |_| {
        p.running("web") == 3
    });
    let outage = d
        .events()
        .into_iter()
        .any(|e| e["level"] == "WARN" && (e["action"] == "observe" || e["action"] == "events"));
    assert!(outage, "the outage is logged:\n{}", d.logs().join("\n"));
}

#[test]
fn crashed_engine_comes_back_and_the_count_is_restored() {
    let node = Node::start("eng-crash", 52);
    let p = Project::on("it-eng-crash", &compose(2), node.env());
    let mut d = p.run(&["--resync-interval", "5s", "--watchdog", "5s"]);
    eventually_with(&mut d, UP, "2 web on the node", |_| p.running("web") == 2);
    node.kill();
    node.restart();
    eventually_with(&mut d, UP, "2 web again after the crash", |_| {
        p.running("web") == 2
    });
    assert_eq!(
        p.containers(Some("web"), None).len(),
        2,
        "no extra containers"
    );
}

#[test]
fn wrong_ca_is_refused_with_the_file_named() {
    let node = Node::start("eng-badca", 53);
    let other = std::env::temp_dir().join("drover-it-other-ca");
    support::node_sh(&["certs-other", other.to_str().unwrap()]);
    let mut env: Vec<(String, String)> = node
        .env()
        .into_iter()
        .filter(|(k, _)| k != "DOCKER_CERT_PATH")
        .collect();
    env.push(("DOCKER_CERT_PATH".into(), other.display().to_string()));
    let p = Project::on("it-eng-badca", &compose(1), env);
    let out = p.drover(&["plan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plan with a wrong CA must fail");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("ca.pem"), "names the CA file: {err}");
    assert!(
        err.contains(&node.host.replace("tcp://", "")),
        "names the engine: {err}"
    );
}

#[test]
fn tls_configured_never_falls_back_to_plaintext() {
    let node = Node::start("eng-plain", 54);
    // DOCKER_TLS_VERIFY set, but the certs are missing: an error, not a plaintext try.
    let env = vec![
        ("DOCKER_HOST".to_string(), node.host.clone()),
        ("DOCKER_TLS_VERIFY".to_string(), "1".to_string()),
        (
            "DOCKER_CERT_PATH".to_string(),
            "/nonexistent/certs".to_string(),
        ),
    ];
    let p = Project::on("it-eng-plain", &compose(1), env);
    let out = p.drover(&["plan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/certs/ca.pem"), "{err}");
}
