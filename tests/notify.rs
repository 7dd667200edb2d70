//! Webhook notifications against a real engine: a receiver in the test records what
//! drover posts for a scale change through the scale file, a replica given up on
//! (`max_attempts`) and an update whose new replica crashes within `monitor` and is rolled
//! back; over two nodes, a node that crashes and comes back; in Swarm mode (a one-node
//! swarm), a scale change and an update. The receiver refuses its
//! first request (503), so every event after it also shows that a retried event is taken
//! once and the ones behind it are not repeated.
//!
//! Node indices 121..129 belong to this file.

mod support;

use std::time::Duration;

use support::Node;
use support::drover::{Project, eventually_with};
use support::webhook::Receiver;

const UP: Duration = Duration::from_secs(90);

fn compose(app_version: &str, app_command: &str) -> String {
    format!(
        r#"
x-drover:
  notify:
    - url_file: hook.url
      name: ops
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
  job:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
  app:
    image: drover-test/busybox:latest
    command: {app_command}
    stop_signal: SIGKILL
    environment:
      VERSION: "{app_version}"
    deploy:
      update_config:
        monitor: 5s
        failure_action: rollback
"#
    )
}

#[test]
fn a_scale_change_a_replica_given_up_on_and_a_rolled_back_update_are_each_posted_once() {
    let sleep = r#"["sleep", "86400"]"#;
    let r = Receiver::start();
    let p = Project::new("it-notify", &compose("1", sleep));
    p.write(
        "hook.url",
        &format!("http://127.0.0.1:{}/hooks/it-notify\n", r.port),
    );
    p.write("scale.yml", "web: 1\n");
    let mut d = p.run(&[
        "--scale-file",
        "scale.yml",
        "--backoff-initial",
        "200ms",
        "--backoff-max",
        "1s",
    ]);

    // The job fails three times (two restarts): given up on.
    eventually_with(
        &mut d,
        UP,
        "web and app running, the job given up on",
        |_| p.running("web") == 1 && p.running("app") == 1 && r.said("job").len() == 1,
    );
    assert_eq!(r.said("job"), ["gave-up max-attempts"]);

    // A scale change through the scale file.
    p.write("scale.yml", "web: 3\n");
    eventually_with(&mut d, UP, "3 web and the scale posted", |_| {
        p.running("web") == 3 && !r.said("web").is_empty()
    });

    // An update whose new replica crashes within `monitor`: rolled back, and the rollback
    // settles on the old definition.
    p.write("compose.yml", &compose("2", r#"["sh", "-c", "exit 1"]"#));
    eventually_with(&mut d, UP, "the rolled-back update finished", |_| {
        r.said("app").len() == 3
    });
    let ids = p.containers(Some("app"), Some("running"));
    assert_eq!(ids.len(), 1);
    assert!(
        p.inspect(&ids[0], "{{json .Config.Env}}")
            .contains("VERSION=1"),
        "back on the old definition"
    );

    assert_eq!(r.said("web"), ["scale -"]);
    assert_eq!(
        r.said("app"),
        [
            "update-started config-changed",
            "rollback update-failed",
            "update-finished rolled-back",
        ]
    );
    assert_eq!(r.said("job"), ["gave-up max-attempts"]);
    let taken = r.taken();
    assert_eq!(taken.len(), 5, "nothing else (no node event): {taken:#?}");

    // The payload's stable fields.
    let gave_up = taken.iter().find(|b| b["event"] == "gave-up").unwrap();
    assert_eq!(gave_up["project"], "it-notify");
    assert_eq!(gave_up["slot"], 1);
    assert_eq!(gave_up["node"], "default");
    assert!(gave_up["time"].as_str().unwrap().ends_with('Z'));
    assert!(gave_up["message"].as_str().unwrap().contains("exit code 3"));
    let scale = taken.iter().find(|b| b["event"] == "scale").unwrap();
    assert_eq!(scale["desired"], 3);
    assert_eq!(scale["message"], "web scaled from 1 to 3");
    let rollback = taken.iter().find(|b| b["event"] == "rollback").unwrap();
    assert_eq!(rollback["actual"], 1, "one new replica failed");

    // The refused first request was retried: the same event, taken once; no event was
    // posted twice, and the header carries the body's id.
    let all = r.requests.lock().unwrap().clone();
    assert_eq!(all[0].2, all[1].2, "the refused event, sent again");
    let mut ids: Vec<&str> = all[1..]
        .iter()
        .map(|(_, _, b)| b["id"].as_str().unwrap())
        .collect();
    assert!(
        all.iter()
            .all(|(path, id, b)| path == "/hooks/it-notify" && b["id"] == id.as_str())
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each event taken once");
    let logs = d.logs().join("\n");
    assert!(
        !logs.contains("/hooks/it-notify"),
        "the URL is never logged"
    );
}

#[test]
fn a_node_that_crashes_and_comes_back_is_posted_down_then_up() {
    let (a, b) = (Node::start("nt-a", 121), Node::start("nt-b", 122));
    let r = Receiver::start();
    let mut compose = String::from(
        "x-drover:\n  notify:\n    - url_file: hook.url\n      events: [node-down, node-up]\n  nodes:\n",
    );
    for n in [&a, &b] {
        compose.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display()
        ));
    }
    compose.push_str(
        "services:\n  web:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    deploy:\n      replicas: 2\n",
    );
    let p = Project::on("it-notify-nodes", &compose, a.env());
    p.write("hook.url", &format!("http://127.0.0.1:{}/n\n", r.port));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running", |d| {
        d.actions("create").len() >= 2 && d.actions("node-up").len() >= 2
    });
    b.kill();
    eventually_with(&mut d, UP, "node-down posted", |_| !r.nodes().is_empty());
    b.restart();
    eventually_with(&mut d, UP, "node-up posted", |_| r.nodes().len() == 2);
    assert_eq!(r.nodes(), ["node-down nt-b unreachable", "node-up nt-b -"]);
    let down = &r.taken()[0];
    assert!(
        down["message"]
            .as_str()
            .unwrap()
            .starts_with("node nt-b is down: "),
        "{down}"
    );
    assert_eq!(r.taken().len(), 2, "{:#?}", r.taken());
}

#[test]
fn in_swarm_mode_a_scale_change_and_an_update_are_each_posted_once() {
    let m = Node::start("nt-sw", 123);
    m.docker_ok(&["swarm", "init", "--advertise-addr", "10.231.123.2"]);
    let r = Receiver::start();
    let compose = |version: &str| {
        format!(
            r#"
x-drover:
  mode: swarm
  notify:
    - url_file: hook.url
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment: {{ VERSION: "{version}" }}
    deploy:
      update_config: {{ parallelism: 0, monitor: 1s }}
"#
        )
    };
    let p = Project::on("it-notify-swarm", &compose("1"), m.env());
    p.write(
        "hook.url",
        &format!("http://127.0.0.1:{}/hooks/swarm\n", r.port),
    );
    p.write("scale.yml", "web: 1\n");
    let mut d = p.run(&["--scale-file", "scale.yml"]);
    let web = "it-notify-swarm_web";
    let replicas = || {
        let out = m.docker(&[
            "service",
            "inspect",
            "-f",
            "{{.Spec.Mode.Replicated.Replicas}}",
            web,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    eventually_with(&mut d, UP, "the service exists", |_| replicas() == "1");

    p.write("scale.yml", "web: 2\n");
    eventually_with(&mut d, UP, "scaled to 2 and posted", |_| {
        replicas() == "2" && !r.said("web").is_empty()
    });
    assert_eq!(r.said("web"), ["scale -"]);

    p.write("compose.yml", &compose("2"));
    eventually_with(&mut d, UP, "the update posted as finished", |_| {
        r.said("web").len() == 3
    });
    assert_eq!(
        r.said("web"),
        [
            "scale -",
            "update-started config-changed",
            "update-finished completed"
        ]
    );
    let env = m.docker_ok(&[
        "service",
        "inspect",
        "-f",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        web,
    ]);
    assert!(env.contains("VERSION=2"), "{env}");
    assert_eq!(r.taken().len(), 3, "nothing else: {:#?}", r.taken());
    assert!(
        !d.logs().join("\n").contains("/hooks/swarm"),
        "the URL is never logged"
    );
}
