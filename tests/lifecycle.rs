//! Health, crash loops, rolling updates, rollbacks and live reload against a real engine.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::drover::{Project, eventually_with};

const UP: Duration = Duration::from_secs(90);

#[test]
fn an_unhealthy_replica_is_replaced_and_a_healthy_one_left_alone() {
    let p = Project::new(
        "it-health",
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    tmpfs: [/tmp]
    healthcheck:
      test: ["CMD-SHELL", "test ! -f /tmp/sick"]
      interval: 1s
      timeout: 10s
      retries: 2
    deploy:
      replicas: 2
"#,
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 healthy replicas", |_| {
        let ids = p.containers(Some("web"), Some("running"));
        ids.len() == 2
            && ids
                .iter()
                .all(|id| p.inspect(id, "{{.State.Health.Status}}") == "healthy")
    });
    let ids = p.containers(Some("web"), Some("running"));
    let (sick, fine) = (&ids[0], &ids[1]);
    let fine_started = p.inspect(fine, "{{.State.StartedAt}}");
    let sick_started = p.inspect(sick, "{{.State.StartedAt}}");
    p.docker_ok(&["exec", sick, "sh", "-c", "echo x > /tmp/sick"]);
    eventually_with(
        &mut d,
        UP,
        "the sick replica restarted and healthy again",
        |_| {
            p.inspect(sick, "{{.State.StartedAt}}") != sick_started
                && p.inspect(sick, "{{.State.Health.Status}}") == "healthy"
        },
    );
    assert_eq!(p.inspect(fine, "{{.State.StartedAt}}"), fine_started);
    let restarts: Vec<_> = d
        .actions("restart")
        .into_iter()
        .filter(|e| e["reason"] == "unhealthy")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
}

#[test]
fn a_crash_loop_backs_off_with_growing_delays_and_stops_after_max_attempts() {
    let p = Project::new(
        "it-crashloop",
        r#"
services:
  crasher:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 4
"#,
    );
    // The engine's own record, followed live: its replay buffer holds only the last 256
    // events of every project, which parallel tests can push this one's out of.
    let mut watch = std::process::Command::new("docker");
    for (k, v) in &p.env {
        watch.env(k, v);
    }
    let mut watch = watch
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            &format!("label=drover.project={}", p.name),
            "--format",
            "{{.Status}} {{.TimeNano}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker events runs");
    let mut d = p.run(&["--backoff-initial", "400ms", "--backoff-max", "5s"]);
    eventually_with(&mut d, UP, "drover giving up after 4 attempts", |d| {
        !d.actions("give-up").is_empty()
    });
    assert_eq!(d.actions("start").len(), 4, "four restarts, then none");
    let _ = watch.kill();
    let events = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).to_string();
    // From each exit to the next start, the backoff delay (0 s, 0.4 s, 0.8 s, 1.6 s) plus
    // drover's reaction and the engine's start.
    let id = &p.containers(Some("crasher"), None)[0];
    let mut last_die = None;
    let mut gaps = Vec::new();
    for line in events.lines() {
        let (what, nanos) = line.split_once(' ').unwrap();
        let t = nanos.parse::<f64>().unwrap() / 1e9;
        match what {
            "die" => last_die = Some(t),
            "start" => {
                if let Some(d) = last_die.take() {
                    gaps.push(t - d);
                }
            }
            _ => {}
        }
    }
    // The engine's record may miss the very last events; what it has must respect the
    // delays (never earlier than the backoff allows).
    assert!(gaps.len() >= 3, "{events}");
    for (g, want) in gaps.iter().zip([0.0, 0.4, 0.8, 1.6]) {
        assert!(*g >= want - 0.05, "restarted too early: gaps {gaps:?}");
    }
    // drover's own account: each step logged once, with at most the planned delay left
    // (less when the pass ran late; a step whose delay had already passed is not logged).
    let steps: Vec<(i64, i64)> = d
        .actions("backoff")
        .iter()
        .map(|e| {
            (
                e["attempts"].as_i64().unwrap(),
                e["delay_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(steps.windows(2).all(|w| w[0].0 < w[1].0), "{steps:?}");
    for (attempts, delay) in &steps {
        let planned = 400 << (attempts - 1);
        assert!(*delay <= planned, "{steps:?}");
    }
    assert_eq!(p.inspect(id, "{{.State.Status}}"), "exited");
}

fn rolling(version: &str, command: &str, extra: &str) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: {command}
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    deploy:
      replicas: 6
      update_config:
        parallelism: 2
        order: start-first
        monitor: 1s
{extra}
"#
    )
}

#[test]
fn a_start_first_rolling_update_never_drops_below_the_target() {
    let sleep = r#"["sleep", "86400"]"#;
    let p = Project::new("it-rolling", &rolling("1", sleep, ""));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "6 replicas", |_| p.running("web") == 6);
    let old = p.containers(Some("web"), None);

    // Sample the running count throughout the update.
    let stop = Arc::new(AtomicBool::new(false));
    let min = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (stop, min) = (stop.clone(), min.clone());
        let name = p.name.clone();
        std::thread::spawn(move || {
            let filter = format!("label=drover.project={name}");
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("docker")
                    .args(["ps", "-q", "--filter", &filter])
                    .output()
                    .unwrap();
                let n = String::from_utf8_lossy(&out.stdout).lines().count();
                min.fetch_min(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    p.write("compose.yml", &rolling("2", sleep, ""));
    eventually_with(&mut d, UP, "6 replicas on the new definition", |_| {
        let now = p.containers(Some("web"), None);
        now.len() == 6
            && now.iter().all(|id| !old.contains(id))
            && now
                .iter()
                .all(|id| p.inspect(id, "{{json .Config.Env}}").contains("VERSION=2"))
    });
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let min = min.load(Ordering::Relaxed);
    assert!(min >= 6, "the running count dropped to {min}");
    assert_eq!(d.actions("start-first").len(), 6);
    let names = p.running_names("web");
    assert_eq!(names.len(), 6);
    assert!(names.iter().all(|n| !n.contains("-old-")), "{names:?}");
}

#[test]
fn a_failing_update_rolls_back_when_asked_to() {
    let sleep = r#"["sleep", "86400"]"#;
    let rollback = "        failure_action: rollback\n";
    let p = Project::new("it-rollback", &rolling("1", sleep, rollback));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "6 replicas", |_| p.running("web") == 6);
    p.write(
        "compose.yml",
        &rolling("2", r#"["sh", "-c", "exit 1"]"#, rollback),
    );
    eventually_with(&mut d, UP, "the rollback logged", |d| {
        !d.actions("rollback").is_empty()
    });
    eventually_with(&mut d, UP, "6 replicas back on the old definition", |_| {
        let ids = p.containers(Some("web"), None);
        ids.len() == 6
            && p.running("web") == 6
            && ids
                .iter()
                .all(|id| p.inspect(id, "{{json .Config.Env}}").contains("VERSION=1"))
    });
}

/// With one replica (or `parallelism` covering them all) no old replica is left to show the
/// update is under way: the new one failing within `monitor` still fails the update.
#[test]
fn a_single_replica_whose_update_fails_is_rolled_back() {
    let sleep = r#"["sleep", "86400"]"#;
    let rollback = "        failure_action: rollback\n";
    let one = |version: &str, command: &str| {
        rolling(version, command, rollback).replace("replicas: 6", "replicas: 1")
    };
    let p = Project::new("it-rollback-one", &one("1", sleep));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "1 replica", |_| p.running("web") == 1);
    p.write("compose.yml", &one("2", r#"["sh", "-c", "exit 1"]"#));
    eventually_with(&mut d, UP, "the rollback logged", |d| {
        !d.actions("rollback").is_empty()
    });
    eventually_with(&mut d, UP, "1 replica back on the old definition", |_| {
        let ids = p.containers(Some("web"), None);
        ids.len() == 1
            && p.running("web") == 1
            && p.inspect(&ids[0], "{{json .Config.Env}}")
                .contains("VERSION=1")
    });
}

#[test]
fn a_broken_config_changes_nothing_and_a_renamed_good_one_is_picked_up() {
    let good = |n: u32| {
        format!(
            "services:\n  web:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    scale: {n}\n"
        )
    };
    let p = Project::new("it-reload", &good(2));
    // Polling effectively off: the directory watch must notice the edits.
    let mut d = p.run(&["--watch-interval", "1h"]);
    eventually_with(&mut d, UP, "2 replicas", |_| p.running("web") == 2);
    let before = p.containers(Some("web"), None);
    p.write("compose.yml", "services:\n  web:\n    image: [unclosed\n");
    eventually_with(&mut d, UP, "the located error logged", |d| {
        d.actions("reload").iter().any(|e| {
            e["error"]
                .as_str()
                .is_some_and(|m| m.starts_with("compose.yml:") || m.contains("compose.yml:3:"))
        })
    });
    assert_eq!(p.containers(Some("web"), None), before, "nothing changed");
    // An editor-style replace (write a temp file, rename over) is picked up.
    p.write("compose.yml", &good(3));
    eventually_with(&mut d, UP, "3 replicas", |_| p.running("web") == 3);
}

/// Edits to files the Compose file only reaches through `include`, `extends` or a service's
/// `env_file` are noticed like edits to the file itself, without SIGHUP.
#[test]
fn edits_to_included_extended_and_env_files_are_applied() {
    let p = Project::new(
        "it-reach",
        r#"
include: [inc.yml]
services:
  api:
    extends: { file: base.yml, service: base }
    env_file: [api.env]
"#,
    );
    let inc = |v: &str| {
        format!(
            "services:\n  web:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    environment: {{ FROM_INCLUDE: \"{v}\" }}\n"
        )
    };
    let base = |v: &str| {
        format!(
            "services:\n  base:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    environment: {{ FROM_BASE: \"{v}\" }}\n"
        )
    };
    p.write("inc.yml", &inc("1"));
    p.write("base.yml", &base("1"));
    p.write("api.env", "FROM_ENV_FILE=1\n");
    let mut d = p.run(&[]);
    let env_of = |service: &str| {
        p.containers(Some(service), Some("running"))
            .first()
            .map(|id| p.inspect(id, "{{json .Config.Env}}"))
            .unwrap_or_default()
    };
    eventually_with(&mut d, UP, "web and api running", |_| {
        env_of("web").contains("FROM_INCLUDE=1") && env_of("api").contains("FROM_BASE=1")
    });
    p.write("inc.yml", &inc("2"));
    eventually_with(&mut d, UP, "the included file's edit applied", |_| {
        env_of("web").contains("FROM_INCLUDE=2")
    });
    p.write("base.yml", &base("2"));
    eventually_with(&mut d, UP, "the extended file's edit applied", |_| {
        env_of("api").contains("FROM_BASE=2")
    });
    p.write("api.env", "FROM_ENV_FILE=2\n");
    eventually_with(&mut d, UP, "the env_file's edit applied", |_| {
        env_of("api").contains("FROM_ENV_FILE=2")
    });
    assert!(d.actions("reload").iter().all(|e| e["reason"] != "SIGHUP"));
}
