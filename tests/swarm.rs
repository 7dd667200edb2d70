//! Swarm mode against real swarms of engines in network namespaces (never the machine's
//! own engine, which other tests need as a plain engine): deploy, scale through the scale
//! file, a rolling update on an image change, an unchanged service left alone, a service
//! removed from the file, another stack untouched; secrets and configs (created, mounted,
//! rolled on a content change, the old one removed, never logged); /metrics, /status and
//! `drover status` against `docker service ls`/`ps`; project networks removed with the
//! services that used them, foreign ones kept; on three nodes, a drained and a killed
//! worker whose tasks Swarm moves, as drover reports; a named volume's data kept across an
//! update, an anonymous volume's warned about; an edit to an included file applied.
//!
//! Node indices 81..89 and 111..119 belong to this file.

mod support;

use std::process::Command;
use std::time::Duration;

use drover::telemetry::http;
use support::Node;
use support::drover::{Project, address, eventually_with};

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

/// The id of a running task container of Swarm service `name` on `node`.
fn task_container(node: &Node, name: &str) -> Option<String> {
    let filter = format!("label=com.docker.swarm.service.name={name}");
    node.docker_ok(&["ps", "-q", "--filter", &filter])
        .lines()
        .next()
        .map(str::to_string)
}

/// `cat` inside a running task of `service`, or `None` while there is none.
fn cat_in_task(node: &Node, service: &str, path: &str) -> Option<String> {
    let id = task_container(node, service)?;
    let out = node.docker(&["exec", &id, "cat", path]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Names of the swarm's secrets (or configs) that start with `prefix`.
fn objects(node: &Node, kind: &str, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = node
        .docker_ok(&[kind, "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn secrets_and_configs_are_mounted_and_a_new_content_rolls_the_service() {
    let m = Node::start("sw-sec", 86);
    swarm(&[&m]);
    let ext = std::env::temp_dir().join(format!("it-shared-ext-{}", std::process::id()));
    std::fs::write(&ext, "external-value").unwrap();
    m.docker_ok(&["secret", "create", "it-shared-ext", ext.to_str().unwrap()]);
    let _ = std::fs::remove_file(ext);
    let compose = r#"
x-drover:
  mode: swarm
services:
  app:
    image: drover-test/busybox:latest
    # Runs only when the secret and the config are there.
    command: ["sh", "-c", "cat /run/secrets/token /etc/app.conf >/dev/null && sleep 86400"]
    stop_signal: SIGKILL
    secrets:
      - token
      - {source: ext, target: /etc/ext, uid: "1000", mode: 0400}
    configs:
      - {source: conf, target: /etc/app.conf}
    deploy:
      update_config: {order: start-first, monitor: 1s}
secrets:
  token: {file: ./token.txt}
  ext: {external: true, name: it-shared-ext}
configs:
  conf: {file: ./app.conf}
"#;
    let p = Project::on("it-swarm-sec", compose, m.env());
    p.write("token.txt", "s3cret-first");
    p.write("app.conf", "level=1\n");
    let plan = p.drover(&["plan", "-p", &p.name]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("create secret it-swarm-sec_token from ")
            && text.contains("create config it-swarm-sec_conf from "),
        "{text}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(!text.contains("s3cret"), "{text}");

    let mut d = p.run(&[]);
    let svc = "it-swarm-sec_app";
    eventually_with(&mut d, UP, "the app task running with its secret", |_| {
        cat_in_task(&m, svc, "/run/secrets/token").as_deref() == Some("s3cret-first")
    });
    assert_eq!(
        cat_in_task(&m, svc, "/etc/app.conf").as_deref(),
        Some("level=1\n")
    );
    let id = task_container(&m, svc).unwrap();
    assert_eq!(
        m.docker_ok(&["exec", &id, "busybox", "stat", "-c", "%u %a", "/etc/ext"]),
        "1000 400"
    );
    assert_eq!(
        objects(&m, "secret", "it-swarm-sec_"),
        vec!["it-swarm-sec_token"]
    );
    assert_eq!(
        m.docker_ok(&[
            "secret",
            "inspect",
            "-f",
            "{{index .Spec.Labels \"com.docker.stack.namespace\"}}",
            "it-swarm-sec_token"
        ]),
        "it-swarm-sec"
    );

    // New content: a new secret under a hashed name, the service rolled onto it, the old
    // secret removed once unused. The external one is never touched.
    p.write("token.txt", "s3cret-second");
    eventually_with(&mut d, UP, "the task reads the new secret", |_| {
        cat_in_task(&m, svc, "/run/secrets/token").as_deref() == Some("s3cret-second")
    });
    eventually_with(&mut d, UP, "the old secret removed", |_| {
        let names = objects(&m, "secret", "it-swarm-sec_");
        names.len() == 1 && names[0].starts_with("it-swarm-sec_token-")
    });
    assert!(
        d.actions("remove_secret").iter().any(|e| e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("it-swarm-sec_token ")),
        "{}",
        d.logs().join("\n")
    );
    assert!(
        d.actions("update")
            .iter()
            .any(|e| e["service"] == svc && e["reason"].as_str().unwrap_or("").contains("Secrets")),
        "{}",
        d.logs().join("\n")
    );
    assert!(
        m.docker(&["secret", "inspect", "it-shared-ext"])
            .status
            .success()
    );
    // A changed config rolls the service the same way.
    p.write("app.conf", "level=2\n");
    eventually_with(&mut d, UP, "the task reads the new config", |_| {
        cat_in_task(&m, svc, "/etc/app.conf").as_deref() == Some("level=2\n")
    });
    let logs = d.logs().join("\n");
    assert!(
        !logs.contains("s3cret") && !logs.contains("external-value"),
        "a secret's content was logged:\n{logs}"
    );
}

/// The value of the metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_and_status_show_swarms_tasks_per_service_and_node() {
    let m = Node::start("sw-st", 87);
    swarm(&[&m]);
    let compose = r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: 3
      placement:
        constraints: ["node.role == manager"]
  blocked:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    deploy:
      placement:
        constraints: ["node.labels.nowhere == x"]
"#;
    let p = Project::on("it-swarm-st", compose, m.env());
    let mut d = p.run(&["--listen", "127.0.0.1:0"]);
    let addr = address(&mut d);
    let web = "it-swarm-st_web";
    eventually_with(&mut d, UP, "3 web tasks running", |_| {
        running_tasks(&m, web).len() == 3
    });
    // The constraint reached Swarm as written.
    assert_eq!(
        inspect(&m, web, "{{json .Spec.TaskTemplate.Placement.Constraints}}"),
        r#"["node.role == manager"]"#
    );
    let host = m.docker_ok(&["node", "ls", "--format", "{{.Hostname}}"]);
    let ls = m.docker_ok(&[
        "service",
        "ls",
        "--filter",
        "label=com.docker.stack.namespace=it-swarm-st",
        "--format",
        "{{.Name}} {{.Replicas}}",
    ]);
    assert!(ls.contains("it-swarm-st_web 3/3"), "{ls}");
    assert!(ls.contains("it-swarm-st_blocked 0/1"), "{ls}");

    let want = |svc: &str, node: &str| {
        format!(
            "drover_service_actual_replicas{{project=\"it-swarm-st\",service=\"{svc}\",node=\"{node}\"}}"
        )
    };
    let mut text = String::new();
    eventually_with(
        &mut d,
        UP,
        "metrics: 3 of 3 web on the node, blocked unplaced",
        |_| {
            text = http::get(addr, "/metrics", Duration::from_secs(5))
                .unwrap()
                .1;
            metric(&text, &want("web", &host)) == Some(3.0)
                && metric(
                    &text,
                    "drover_swarm_task_problems{project=\"it-swarm-st\",service=\"blocked\"}",
                ) == Some(1.0)
        },
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "drover_service_desired_replicas{{project=\"it-swarm-st\",service=\"web\",node=\"{host}\"}}"
            )
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "drover_service_desired_replicas{project=\"it-swarm-st\",service=\"blocked\",node=\"unassigned\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("drover_swarm_node_ready{{project=\"it-swarm-st\",node=\"{host}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    // docker service ps agrees on where the tasks run.
    let ps = m.docker_ok(&[
        "service",
        "ps",
        web,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    assert_eq!(
        ps.lines()
            .filter(|l| l.starts_with(&format!("{host} Running")))
            .count(),
        3,
        "{ps}"
    );

    eventually_with(&mut d, UP, "ready", |_| {
        http::get(addr, "/readyz", Duration::from_secs(5))
            .unwrap()
            .0
            == 200
    });
    let out = p.drover(&["status", "--json", "--listen", &addr.to_string()]);
    let s: drover::telemetry::status::Status = serde_json::from_slice(&out.stdout).unwrap();
    let sw = s.swarm.as_ref().expect("the swarm section");
    assert_eq!(
        (sw.services["web"].desired, sw.services["web"].running),
        (3, 3)
    );
    let blocked = &sw.services["blocked"];
    assert_eq!((blocked.desired, blocked.running), (1, 0));
    assert!(
        blocked.problems[0].reason.contains("no suitable node"),
        "{:?}",
        blocked.problems
    );
    let web_row = s.services.iter().find(|x| x.name == "web").unwrap();
    assert_eq!((web_row.desired, web_row.actual), (3, 3));
    // The same state words as plain mode.
    assert_eq!(web_row.state.as_deref(), Some("running"));
    let blocked_row = s.services.iter().find(|x| x.name == "blocked").unwrap();
    assert_eq!(
        blocked_row.state.as_deref(),
        Some("unplaceable"),
        "{blocked_row:?}"
    );
    let out = p.drover(&["status", "--listen", &addr.to_string()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("SWARM NODE")
            && table.contains("no suitable node")
            && table.contains(": ready"),
        "{table}"
    );
}

#[test]
fn networks_that_left_the_file_go_with_their_services_foreign_ones_stay() {
    let m = Node::start("sw-net", 88);
    swarm(&[&m]);
    // A network in the project's namespace that drover did not create, and a bare one.
    m.docker_ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--label",
        "com.docker.stack.namespace=it-swarm-net",
        "it-swarm-net_stack",
    ]);
    m.docker_ok(&["network", "create", "-d", "overlay", "it-swarm-net_bare"]);
    let two = r#"
x-drover:
  mode: swarm
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    networks: [front, back]
  worker:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    networks: [back]
networks:
  front:
  back:
"#;
    let p = Project::on("it-swarm-net", two, m.env());
    let mut d = p.run(&[]);
    let nets = |m: &Node| -> Vec<String> {
        let mut v: Vec<String> = m
            .docker_ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .filter(|n| n.starts_with("it-swarm-net_"))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    eventually_with(&mut d, UP, "web and worker running", |_| {
        running_tasks(&m, "it-swarm-net_web").len() == 1
            && running_tasks(&m, "it-swarm-net_worker").len() == 1
    });
    assert_eq!(
        nets(&m),
        vec![
            "it-swarm-net_back",
            "it-swarm-net_bare",
            "it-swarm-net_front",
            "it-swarm-net_stack"
        ]
    );
    let one = r#"
x-drover:
  mode: swarm
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    networks: [front]
networks:
  front:
"#;
    p.write("compose.yml", one);
    eventually_with(&mut d, UP, "worker and the back network removed", |d| {
        nets(&m)
            == vec![
                "it-swarm-net_bare",
                "it-swarm-net_front",
                "it-swarm-net_stack",
            ]
            && d.actions("remove_network")
                .iter()
                .any(|e| e["service"] == "it-swarm-net_back")
    });
    assert!(
        !m.docker(&["service", "inspect", "it-swarm-net_worker"])
            .status
            .success()
    );
    eventually_with(&mut d, UP, "web running on front only", |_| {
        running_tasks(&m, "it-swarm-net_web").len() == 1
    });
}

/// What drover can promise about a service's data in Swarm mode: a named volume keeps it
/// across an update (the new task on the same node mounts the same volume); an anonymous
/// volume does not (Swarm gives each new task fresh ones), which drover says when it loads
/// the file.
#[test]
fn a_named_volume_keeps_its_data_across_a_swarm_update_and_an_anonymous_one_is_warned_about() {
    let m = Node::start("sw-vol", 89);
    swarm(&[&m]);
    let compose = |version: &str| {
        format!(
            r#"
x-drover:
  mode: swarm
services:
  db:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment: {{ VERSION: "{version}" }}
    volumes: ["/cache", "named:/named"]
volumes:
  named: {{}}
"#
        )
    };
    let p = Project::on("it-swarm-vol", &compose("1"), m.env());
    let mut d = p.run(&[]);
    let service = "it-swarm-vol_db";
    let on = |version: &str| {
        task_container(&m, service).filter(|id| {
            m.docker_ok(&["inspect", "-f", "{{json .Config.Env}}", id])
                .contains(&format!("VERSION={version}\""))
        })
    };
    eventually_with(&mut d, UP, "the db task running", |_| on("1").is_some());
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains("services.db: Swarm gives every new task fresh anonymous volumes")),
        "{}",
        d.logs().join("\n")
    );
    let first = on("1").unwrap();
    m.docker_ok(&[
        "exec",
        &first,
        "sh",
        "-c",
        "echo kept > /named/m; echo lost > /cache/m",
    ]);

    p.write("compose.yml", &compose("2"));
    eventually_with(&mut d, UP, "the updated db task running", |_| {
        on("2").is_some()
    });
    let second = on("2").unwrap();
    let cat = |path: &str| {
        let out = m.docker(&["exec", &second, "cat", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cat("/named/m"), "kept");
    assert_eq!(
        cat("/cache/m"),
        "",
        "Swarm gave the new task a fresh anonymous volume"
    );
}

/// Swarm mode watches the same files as plain mode: edits to files reached only through
/// `include` and `extends` roll the services, without SIGHUP.
#[test]
fn edits_to_included_and_extended_files_roll_the_services_in_swarm_mode() {
    let m = Node::start("sw-reach", 111);
    swarm(&[&m]);
    let svc = |name: &str, var: &str, v: &str| {
        format!(
            "services:\n  {name}:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    environment: {{ {var}: \"{v}\" }}\n"
        )
    };
    let p = Project::on(
        "it-swarm-reach",
        "x-drover:\n  mode: swarm\ninclude: [inc.yml]\nservices:\n  api:\n    extends: { file: base.yml, service: base }\n",
        m.env(),
    );
    p.write("inc.yml", &svc("web", "FROM_INCLUDE", "1"));
    p.write("base.yml", &svc("base", "FROM_BASE", "1"));
    let mut d = p.run(&[]);
    let env = |service: &str| {
        inspect(
            &m,
            &format!("it-swarm-reach_{service}"),
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        )
    };
    eventually_with(&mut d, UP, "the services created", |_| {
        env("web").contains("FROM_INCLUDE=1") && env("api").contains("FROM_BASE=1")
    });
    p.write("inc.yml", &svc("web", "FROM_INCLUDE", "2"));
    eventually_with(&mut d, UP, "the included file's edit applied", |_| {
        env("web").contains("FROM_INCLUDE=2")
    });
    p.write("base.yml", &svc("base", "FROM_BASE", "2"));
    eventually_with(&mut d, UP, "the extended file's edit applied", |_| {
        env("api").contains("FROM_BASE=2")
    });
    assert!(d.actions("reload").iter().all(|e| e["reason"] != "SIGHUP"));
}
