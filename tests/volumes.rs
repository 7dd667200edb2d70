//! The data a replica keeps in its volumes, against a real engine: what an image declares
//! with `VOLUME` (as database images do) and a service's anonymous volumes survive every
//! way drover replaces a container (definition change, rolling update in either order,
//! rollback, unhealthy replacement), as they do with compose; a slot removed for good takes
//! its anonymous volumes with it; named volumes are never removed. Each test has its own
//! project name (`it-vol-...`).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::drover::{Project, eventually_with};
use support::{local_engine, text};

const UP: Duration = Duration::from_secs(90);

/// An offline image that declares `VOLUME /data`, like postgres or redis do.
const VOLUME_IMAGE: &str = "drover-test/volume:latest";

fn volume_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let host = local_engine();
        let mut child = Command::new("docker")
            .env("DOCKER_HOST", host)
            .args(["build", "-q", "-t", VOLUME_IMAGE, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker build runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"FROM drover-test/busybox:latest\nVOLUME /data\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "docker build failed: {}", text(&out));
    });
    VOLUME_IMAGE
}

/// A service `db` on the volume image writing nothing itself: tests write into it.
fn db(version: &str, replicas: u32, extra: &str) -> String {
    format!(
        r#"
services:
  db:
    image: {image}
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{version}"
    volumes: ["/cache", "named:/named"]
    deploy:
      replicas: {replicas}
      update_config:
        parallelism: 2
        monitor: 0s
{extra}
volumes:
  named: {{}}
"#,
        image = volume_image()
    )
}

/// The running container of slot `n` of `db`, once it runs `version`.
fn slot_on(p: &Project, n: u32, version: &str) -> Option<String> {
    p.containers(Some("db"), Some("running"))
        .into_iter()
        .find(|id| {
            p.inspect(id, "{{index .Config.Labels \"drover.slot\"}}") == n.to_string()
                && p.inspect(id, "{{json .Config.Env}}")
                    .contains(&format!("VERSION={version}\""))
        })
}

/// What the app reads at `path` inside the container (empty when missing).
fn read(p: &Project, id: &str, path: &str) -> String {
    let out = p.docker(&["exec", id, "cat", path]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(p: &Project, id: &str, path: &str, text: &str) {
    p.docker_ok(&["exec", id, "sh", "-c", &format!("echo {text} > {path}")]);
}

/// The volumes mounted in a container, `destination=name`.
fn volumes(p: &Project, id: &str) -> BTreeSet<String> {
    p.inspect(
        id,
        "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Destination}}={{.Name}} {{end}}{{end}}",
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

fn volume_exists(p: &Project, name: &str) -> bool {
    p.docker(&["volume", "inspect", name]).status.success()
}

/// The slot's data in each kind of volume, written from inside.
fn fill(p: &Project, id: &str, tag: &str) {
    for dir in ["/data", "/cache", "/named"] {
        write(p, id, &format!("{dir}/{tag}"), &format!("{tag}{dir}"));
    }
}

fn assert_filled(p: &Project, id: &str, tag: &str, when: &str) {
    for dir in ["/data", "/cache", "/named"] {
        assert_eq!(
            read(p, id, &format!("{dir}/{tag}")),
            format!("{tag}{dir}"),
            "{dir} after {when}"
        );
    }
}

#[test]
fn data_in_anonymous_volumes_survives_twenty_recreations_and_goes_with_its_slot() {
    let p = Project::new("it-vol-recreate", &db("0", 2, ""));
    let mut d = p.run(&[]);
    let mut ids = [String::new(), String::new()];
    eventually_with(&mut d, UP, "two replicas", |_| {
        match (slot_on(&p, 1, "0"), slot_on(&p, 2, "0")) {
            (Some(a), Some(b)) => {
                ids = [a, b];
                true
            }
            _ => false,
        }
    });
    fill(&p, &ids[0], "one");
    fill(&p, &ids[1], "two");
    let first = [volumes(&p, &ids[0]), volumes(&p, &ids[1])];
    assert_eq!(first[0].len(), 3, "{first:?}");

    for v in 1..=20 {
        let version = v.to_string();
        p.write("compose.yml", &db(&version, 2, ""));
        eventually_with(
            &mut d,
            UP,
            &format!("both slots on version {v}"),
            |_| match (slot_on(&p, 1, &version), slot_on(&p, 2, &version)) {
                (Some(a), Some(b)) => {
                    ids = [a, b];
                    true
                }
                _ => false,
            },
        );
        assert_filled(&p, &ids[0], "one", &format!("recreation {v}"));
        assert_filled(&p, &ids[1], "two", &format!("recreation {v}"));
        // The very same volumes every time: nothing new made, nothing left dangling.
        assert_eq!(
            volumes(&p, &ids[0]),
            first[0],
            "slot 1 volumes, recreation {v}"
        );
        assert_eq!(
            volumes(&p, &ids[1]),
            first[1],
            "slot 2 volumes, recreation {v}"
        );
    }
    assert_eq!(p.containers(Some("db"), None).len(), 2, "no old copy left");
    let taken: Vec<_> = d
        .events()
        .into_iter()
        .filter(|e| e["action"] == "volumes")
        .collect();
    assert!(
        taken.len() >= 40,
        "one volumes event per recreation: {taken:?}"
    );

    // Scale down: slot 2 goes, and with it its anonymous volumes (taken over twenty
    // times); the named volume stays.
    let anonymous = |set: &BTreeSet<String>| -> Vec<String> {
        set.iter()
            .filter(|m| !m.starts_with("/named="))
            .map(|m| m.split_once('=').unwrap().1.to_string())
            .collect()
    };
    p.write("compose.yml", &db("20", 1, ""));
    eventually_with(&mut d, UP, "slot 2 removed", |_| {
        p.containers(Some("db"), None).len() == 1
    });
    for name in anonymous(&first[1]) {
        // With drover's log when it times out (a CI run once found one left behind).
        eventually_with(
            &mut d,
            UP,
            &format!("slot 2's anonymous volume {name} removed"),
            |_| !volume_exists(&p, &name),
        );
    }
    for name in anonymous(&first[0]) {
        assert!(volume_exists(&p, &name), "slot 1 keeps {name}");
    }

    // The service removed from the file: its last slot's anonymous volumes go too; the
    // named volume and its data stay.
    p.write(
        "compose.yml",
        &format!(
            "services:\n  other:\n    image: {}\n    command: [\"sleep\", \"86400\"]\nvolumes:\n  named: {{}}\n",
            support::TEST_IMAGE
        ),
    );
    eventually_with(&mut d, UP, "db removed", |_| {
        p.containers(Some("db"), None).is_empty()
    });
    for name in anonymous(&first[0]) {
        support::wait_until(UP, "slot 1's anonymous volume removed", || {
            !volume_exists(&p, &name)
        });
    }
    let named = format!("{}_named", p.name);
    let out = p.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{named}:/named"),
        support::TEST_IMAGE,
        "cat",
        "/named/two",
    ]);
    assert_eq!(out, "two/named", "the named volume keeps its data");
}

#[test]
fn data_survives_rolling_updates_in_either_order_a_rollback_and_an_unhealthy_replacement() {
    let health = "    tmpfs: [/tmp]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"test ! -f /tmp/sick\"]\n      interval: 1s\n      retries: 1\n    x-drover: { unhealthy: recreate }\n";
    let compose = |version: &str, order: &str, command: &str| {
        db(
            version,
            2,
            &format!("        order: {order}\n        failure_action: rollback\n"),
        )
        .replace(r#"["sleep", "86400"]"#, command)
        .replace("    environment:", &format!("{health}    environment:"))
        // One at a time, so a failing version is caught while old replicas remain.
        .replace("parallelism: 2", "parallelism: 1")
    };
    let sleep = r#"["sleep", "86400"]"#;
    let p = Project::new("it-vol-update", &compose("1", "stop-first", sleep));
    let mut d = p.run(&[]);
    let on = |d: &mut support::drover::Drover, version: &str, what: &str| {
        let mut found = [String::new(), String::new()];
        eventually_with(d, UP, what, |_| {
            match (slot_on(&p, 1, version), slot_on(&p, 2, version)) {
                (Some(a), Some(b)) => {
                    found = [a, b];
                    true
                }
                _ => false,
            }
        });
        found
    };
    let mut ids = on(&mut d, "1", "two replicas");
    fill(&p, &ids[0], "one");
    fill(&p, &ids[1], "two");

    p.write("compose.yml", &compose("2", "stop-first", sleep));
    ids = on(&mut d, "2", "a stop-first update");
    assert_filled(&p, &ids[0], "one", "a stop-first update");
    assert_filled(&p, &ids[1], "two", "a stop-first update");

    // start-first asked: a replica holding anonymous volumes is still replaced stop-first,
    // so no two containers ever share them.
    p.write("compose.yml", &compose("3", "start-first", sleep));
    ids = on(&mut d, "3", "a start-first update");
    assert_filled(&p, &ids[0], "one", "a start-first update");
    assert_filled(&p, &ids[1], "two", "a start-first update");
    assert!(
        d.actions("start-first").is_empty(),
        "{:?}",
        d.actions("start-first")
    );

    // A broken version fails and is rolled back: the data is where it was.
    p.write(
        "compose.yml",
        &compose("4", "stop-first", r#"["sh", "-c", "exit 1"]"#),
    );
    eventually_with(&mut d, UP, "the rollback logged", |d| {
        !d.actions("rollback").is_empty()
    });
    ids = on(&mut d, "3", "the rollback to version 3");
    assert_filled(&p, &ids[0], "one", "a rollback");
    assert_filled(&p, &ids[1], "two", "a rollback");

    // An unhealthy replica is recreated (x-drover.unhealthy: recreate) with its data.
    let sick = ids[0].clone();
    write(&p, &sick, "/tmp/sick", "x");
    eventually_with(&mut d, UP, "the unhealthy replica recreated", |_| {
        slot_on(&p, 1, "3").is_some_and(|id| id != sick)
    });
    let fresh = slot_on(&p, 1, "3").unwrap();
    assert_filled(&p, &fresh, "one", "an unhealthy replacement");
    let recreated: Vec<_> = d
        .actions("recreate")
        .into_iter()
        .filter(|e| e["reason"] == "unhealthy")
        .collect();
    assert!(!recreated.is_empty());
}
