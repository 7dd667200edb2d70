//! What an operator sees: each service's state and its replicas' in `/status` (as `drover
//! status --json` prints it), with restart counts, for every state a service can be in on
//! a real engine. Projects `it-state-*`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use drover::telemetry::http;
use drover::telemetry::status::{ServiceStatus, Status};
use support::drover::{Drover, Project, address, eventually_with};

const UP: Duration = Duration::from_secs(90);

fn status(addr: SocketAddr) -> Option<Status> {
    let (code, body) = http::get(addr, "/status", Duration::from_secs(5)).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn service(s: &Status, name: &str) -> Option<ServiceStatus> {
    s.services.iter().find(|x| x.name == name).cloned()
}

/// Wait until `name`'s state is `state`; the service as then reported.
fn until_state(d: &mut Drover, addr: SocketAddr, name: &str, state: &str) -> ServiceStatus {
    let mut last = None;
    eventually_with(d, UP, &format!("{name} is {state}"), |_| {
        last = status(addr).and_then(|s| service(&s, name));
        last.as_ref().and_then(|s| s.state.as_deref()) == Some(state)
    });
    last.unwrap()
}

const MANY: &str = r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    scale: 2
  crash:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
  sick:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD", "false"], interval: 1s, timeout: 1s, retries: 1 }
    x-drover: { unhealthy: ignore }
  slow:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD", "false"], interval: 1s, retries: 1, start_period: 10m }
  after:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    depends_on: { sick: { condition: service_healthy } }
  nowhere:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    deploy: { placement: { constraints: ["node.labels.zone == nowhere"] } }
  once:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 4"]
    deploy: { restart_policy: { condition: on-failure, max_attempts: 1 } }
"#;

#[test]
fn each_state_is_reported_with_its_reason_and_restarts() {
    let p = Project::new("it-state-many", MANY);
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--backoff-initial", "3s"]);
    let addr = address(&mut d);

    let web = until_state(&mut d, addr, "web", "running");
    assert_eq!((web.desired, web.actual, web.restarts), (2, 2, 0));
    assert!(
        web.replicas
            .iter()
            .all(|r| r.state == "running" && r.container.is_some())
    );

    let crash = until_state(&mut d, addr, "crash", "crash-loop");
    let r = &crash.replicas[0];
    assert_eq!(r.state, "crash-loop");
    assert!(r.attempts >= 1 && r.retry_in_seconds.is_some(), "{r:?}");
    assert!(
        crash.restarts >= 1 && r.restarts == crash.restarts,
        "{crash:?}"
    );

    let sick = until_state(&mut d, addr, "sick", "unhealthy");
    assert_eq!(sick.replicas[0].state, "unhealthy");
    assert!(sick.reason.unwrap().contains("healthcheck"));

    let slow = until_state(&mut d, addr, "slow", "starting");
    assert!(slow.reason.unwrap().contains("healthcheck"));

    let after = until_state(&mut d, addr, "after", "waiting");
    assert_eq!(after.reason.as_deref(), Some("on sick: service_healthy"));
    assert_eq!(after.replicas[0].container, None);

    let nowhere = until_state(&mut d, addr, "nowhere", "unplaceable");
    assert!(nowhere.reason.is_some());

    let once = until_state(&mut d, addr, "once", "exited");
    assert_eq!(once.replicas[0].state, "gave-up", "{once:?}");
    assert!(once.reason.unwrap().contains("max_attempts"));

    // The same, as `drover status` prints it for people.
    let out = p.drover(&["status", "--listen", &addr.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "crash-loop",
        "unhealthy",
        "waiting",
        "unplaceable",
        "gave-up",
        "RESTARTS",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    // Each change of state was one log event.
    let crash: Vec<String> = d
        .actions("state")
        .into_iter()
        .filter(|e| e["service"] == "crash")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(crash, ["service is starting", "service is crash-loop"]);
}

fn updating(failure_action: &str, image_cmd: &str) -> String {
    format!(
        r#"
services:
  api:
    image: drover-test/busybox:latest
    command: {image_cmd}
    stop_signal: SIGKILL
    scale: 2
    deploy:
      update_config: {{ parallelism: 1, monitor: 5s, failure_action: {failure_action}, delay: 2s }}
"#
    )
}

#[test]
fn a_failing_update_is_updating_then_rolled_back_or_paused() {
    for (action, state) in [("rollback", "rolled-back"), ("pause", "paused")] {
        let p = Project::new(
            &format!("it-state-{action}"),
            &updating(action, r#"["sleep", "86400"]"#),
        );
        let mut d = p.run(&["--listen", "127.0.0.1:0"]);
        let addr = address(&mut d);
        until_state(&mut d, addr, "api", "running");
        p.write(
            "compose.yml",
            &updating(action, r#"["sh", "-c", "sleep 1; exit 5"]"#),
        );
        let during = until_state(&mut d, addr, "api", "updating");
        let updated = during.updated.clone().unwrap();
        assert_eq!(updated.of, 2);
        assert!(updated.new < 2, "{during:?}");
        let after = until_state(&mut d, addr, "api", state);
        assert!(after.reason.unwrap().contains("update failed"));
        d.assert_alive();
    }
}
