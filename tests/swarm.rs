//! Swarm mode against real swarms of engines in network namespaces (never the machine's
//! own engine, which other tests need as a plain engine): deploy, scale through the scale
//! file, a rolling update on an image change, an unchanged service left alone, a service
//! removed from the file, another stack untouched; on three nodes, a drained and a killed
//! worker whose tasks Swarm moves, as drover reports.
//!
//! Node indices 81..89 belong to this file.

mod support;

use std::process::Command;
use std::time::Duration;

use support::Node;
use support::drover::{Project, eventually_with};

const UP: Duration = Duration::from_secs(60);

/// Make `nodes` one swarm, the first one the manager. Routes between the namespaces go
/// through the host (forwarding between the project's own addresses is allowed).
fn swarm(nodes: &[&Node]) {
    let ok = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        out.status.success()
    };
    if nodes.len() > 1 {
        let rule = [
            "DOCKER-USER",
            "-s",
            "10.231.0.0/16",
            "-d",
            "10.231.0.0/16",
            "-j",
            "ACCEPT",
        ];
        let mut check = vec!["iptables", "-C"];
        check.extend(rule);
        if !ok(&check) {
            let mut insert = vec!["iptables", "-I"];
            insert.extend(rule);
            assert!(ok(&insert), "cannot allow forwarding between the nodes");
        }
        for n in nodes {
            let ns = format!("--net=/var/run/netns/drover-{}", n.name);
            let via = format!("10.231.{}.1", n.index);
            assert!(ok(&[
                "nsenter",
                &ns,
                "ip",
                "route",
                "replace",
                "10.231.0.0/16",
                "via",
                &via
            ]));
        }
    }
    let manager = nodes[0];
    let addr = format!("10.231.{}.2", manager.index);
    manager.docker_ok(&["swarm", "init", "--advertise-addr", &addr]);
    let token = manager.docker_ok(&["swarm", "join-token", "-q", "worker"]);
    for n in &nodes[1..] {
        let own = format!("10.231.{}.2", n.index);
        n.docker_ok(&[
            "swarm",
            "join",
            "--advertise-addr",
            &own,
            "--token",
            &token,
            &format!("{addr}:2377"),
        ]);
    }
}

fn node_id(n: &Node) -> String {
    n.docker_ok(&["info", "-f", "{{.Swarm.NodeID}}"])
}

/// Running tasks of Swarm service `name`, as (node id, image) pairs.
fn running_tasks(manager: &Node, name: &str) -> Vec<(String, String)> {
    let out = manager.docker(&[
        "service",
        "ps",
        name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|id| {
            let out = manager.docker(&[
                "inspect",
                "-f",
                "{{.Status.State}} {{.NodeID}} {{.Spec.ContainerSpec.Image}}",
                id,
            ]);
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let mut f = line.split(' ');
            if f.next() != Some("running") {
                return None;
            }
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

fn inspect(manager: &Node, name: &str, format: &str) -> String {
    let out = manager.docker(&["service", "inspect", "-f", format, name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn compose(web_image: &str, extra: &str) -> String {
    format!(
        r#"
x-drover:
  mode: swarm
services:
  web:
    image: {web_image}
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    labels: {{ tier: front }}
    deploy:
      replicas: 2
      update_config: {{ parallelism: 1, delay: 2s, monitor: 1s, order: start-first }}
{extra}
"#
    )
}

#[test]
fn deploy_scale_rolling_update_and_unchanged_left_alone() {
    let m = Node::start("sw-one", 81);
    swarm(&[&m]);
    m.docker_ok(&[
        "tag",
        "drover-test/busybox:latest",
        "drover-test/busybox:v2",
    ]);
    let agent = r#"  agent:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      mode: global
      resources: { limits: { memory: 64M } }
"#;
    let p = Project::on(
        "it-swarm-one",
        &compose("drover-test/busybox:latest", agent),
        m.env(),
    );
    p.write("scale.yml", "web: 3\n");
    let plan = p.drover(&["plan", "-p", &p.name, "--scale-file", "scale.yml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("create service it-swarm-one_web with 3 replicas")
            && text.contains("create global service it-swarm-one_agent")
            && text.contains("create network it-swarm-one_default"),
        "{text}{}",
        String::from_utf8_lossy(&plan.stderr)
    );

    let mut d = p.run(&["--scale-file", "scale.yml"]);
    let web = "it-swarm-one_web";
    eventually_with(
        &mut d,
        UP,
        "3 web tasks and the global agent running",
        |_| running_tasks(&m, web).len() == 3 && running_tasks(&m, "it-swarm-one_agent").len() == 1,
    );
    // Named and labelled as docker stack deploy does, plus drover's ownership label.
    assert_eq!(
        inspect(
            &m,
            web,
            "{{index .Spec.Labels \"com.docker.stack.namespace\"}} {{index .Spec.Labels \"drover.project\"}} {{.Spec.Mode.Replicated.Replicas}}"
        ),
        "it-swarm-one it-swarm-one 3"
    );
    assert_eq!(
        inspect(
            &m,
            "it-swarm-one_agent",
            "{{json .Spec.Mode.Global}} {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}}"
        ),
        "{} 67108864"
    );
    assert_eq!(
        p.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Driver}} {{.Attachable}}",
            "it-swarm-one_default"
        ]),
        "overlay true"
    );
    eventually_with(&mut d, UP, "drover reports 3 of 3 web tasks", |d| {
        d.actions("tasks")
            .iter()
            .any(|e| e["service"] == "web" && e["desired"] == 3 && e["actual"] == 3)
    });

    // Scale through the scale file: only the replica count changes, tasks are not replaced.
    let before: Vec<String> = running_task_ids(&m, web);
    p.write("scale.yml", "web: 4\n");
    eventually_with(&mut d, UP, "4 web tasks", |_| {
        running_tasks(&m, web).len() == 4
    });
    let after = running_task_ids(&m, web);
    assert!(
        before.iter().all(|t| after.contains(t)),
        "scaling replaced tasks: {before:?} -> {after:?}"
    );
    assert!(d.actions("scale").iter().any(|e| e["service"] == web));

    // Nothing changed: no update, the service's version stays put over several passes.
    let version = inspect(&m, web, "{{.Version.Index}}");
    let updates = d.actions("update").len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(inspect(&m, web, "{{.Version.Index}}"), version);
    assert_eq!(
        d.actions("update").len(),
        updates,
        "{}",
        d.logs().join("\n")
    );

    // A new image tag: Swarm rolls it out one task at a time (old and new side by side).
    p.write("compose.yml", &compose("drover-test/busybox:v2", agent));
    let mut mixed = false;
    eventually_with(&mut d, UP, "all 4 web tasks on v2", |_| {
        let tasks = running_tasks(&m, web);
        let new = tasks.iter().filter(|(_, i)| i.ends_with(":v2")).count();
        mixed |= new > 0 && new < tasks.len();
        tasks.len() == 4 && new == 4
    });
    assert!(mixed, "the update was not rolling");
    assert!(
        d.actions("update")
            .iter()
            .any(|e| e["service"] == web && e["reason"].as_str().unwrap_or("").contains("Image")),
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(
        running_tasks(&m, "it-swarm-one_agent").len(),
        1,
        "the agent was not touched"
    );
}

fn running_task_ids(manager: &Node, name: &str) -> Vec<String> {
    let out = manager.docker(&[
        "service",
        "ps",
        name,
        "--filter",
        "desired-state=running",
        "-q",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn removed_service_goes_and_other_stacks_stay() {
    let m = Node::start("sw-two", 85);
    swarm(&[&m]);
    // Another stack, and a service that merely has a name in our namespace.
    m.docker_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "other_web",
        "--label",
        "com.docker.stack.namespace=other",
        "drover-test/busybox:latest",
        "sleep",
        "86400",
    ]);
    m.docker_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "it-swarm-two_manual",
        "drover-test/busybox:latest",
        "sleep",
        "86400",
    ]);
    let worker = r#"  worker:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
"#;
    let p = Project::on(
        "it-swarm-two",
        &compose("drover-test/busybox:latest", worker),
        m.env(),
    );
    let other_version = inspect(&m, "other_web", "{{.Version.Index}}");
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "web and worker running", |_| {
        running_tasks(&m, "it-swarm-two_web").len() == 2
            && running_tasks(&m, "it-swarm-two_worker").len() == 1
    });
    p.write("compose.yml", &compose("drover-test/busybox:latest", ""));
    eventually_with(&mut d, UP, "worker removed", |d| {
        !m.docker(&["service", "inspect", "it-swarm-two_worker"])
            .status
            .success()
            && d.actions("remove")
                .iter()
                .any(|e| e["service"] == "it-swarm-two_worker")
    });
    std::thread::sleep(Duration::from_secs(3));
    for name in ["other_web", "it-swarm-two_manual", "it-swarm-two_web"] {
        assert!(
            m.docker(&["service", "inspect", name]).status.success(),
            "{name} is gone:\n{}",
            d.logs().join("\n")
        );
    }
    assert_eq!(
        inspect(&m, "other_web", "{{.Version.Index}}"),
        other_version
    );
    assert_eq!(
        inspect(&m, "it-swarm-two_manual", "{{.Spec.Labels}}"),
        "map[]",
        "the look-alike service was changed"
    );
    assert!(d.actions("update").is_empty(), "{}", d.logs().join("\n"));
}

#[test]
fn three_nodes_drained_and_killed_workers_tasks_move_and_are_reported() {
    let (a, b, c) = (
        Node::start("sw-a", 82),
        Node::start("sw-b", 83),
        Node::start("sw-c", 84),
    );
    swarm(&[&a, &b, &c]);
    let (ida, idb, idc) = (node_id(&a), node_id(&b), node_id(&c));
    let compose = r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: 6
"#;
    let p = Project::on("it-swarm-three", compose, a.env());
    // auto: the manager is detected and said so.
    let mut d = p.run(&[]);
    let web = "it-swarm-three_web";
    let on = |id: &str| {
        running_tasks(&a, web)
            .iter()
            .filter(|(n, _)| n == id)
            .count()
    };
    eventually_with(&mut d, UP, "6 tasks spread over the 3 nodes", |_| {
        running_tasks(&a, web).len() == 6 && on(&ida) > 0 && on(&idb) > 0 && on(&idc) > 0
    });
    assert!(
        d.actions("mode").iter().any(|e| e["mode"] == "swarm"),
        "{}",
        d.logs().join("\n")
    );

    // Drain b: Swarm moves its tasks; drover reports the node drained and empty.
    a.docker_ok(&["node", "update", "--availability", "drain", &idb]);
    eventually_with(&mut d, UP, "b's tasks moved to a and c", |_| {
        on(&idb) == 0 && running_tasks(&a, web).len() == 6
    });
    eventually_with(&mut d, UP, "drover reports b drained with no tasks", |d| {
        d.actions("node")
            .iter()
            .any(|e| e["node"] == idb.as_str() && e["availability"] == "drain" && e["actual"] == 0)
    });

    // Kill c: Swarm notices it down and starts its tasks on a (b is drained).
    c.kill();
    eventually_with(&mut d, Duration::from_secs(90), "all 6 tasks on a", |_| {
        on(&ida) == 6
    });
    eventually_with(
        &mut d,
        UP,
        "drover reports c down and 6 of 6 running",
        |d| {
            let nodes = d.actions("node");
            let down = nodes
                .iter()
                .any(|e| e["node"] == idc.as_str() && e["state"] == "down");
            let last = d
                .actions("tasks")
                .into_iter()
                .rfind(|e| e["service"] == "web");
            down && last.is_some_and(|e| e["desired"] == 6 && e["actual"] == 6)
        },
    );
    // The per-node report puts them all on a.
    assert!(
        d.actions("node")
            .iter()
            .any(|e| e["node"] == ida.as_str() && e["actual"] == 6),
        "{}",
        d.logs().join("\n")
    );
}
