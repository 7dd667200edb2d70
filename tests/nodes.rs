//! drover over several engines ("nodes", each a dockerd in its own network namespace
//! with TLS): spread, a node crashing, a node cut off by a partition, the returning node's
//! stale copies removed, placement constraints, a moved replica's anonymous volume.
//!
//! Node indices 71..79 belong to this file.

mod support;

use std::time::{Duration, Instant};

use support::Node;
use support::drover::{Project, eventually_with};

const UP: Duration = Duration::from_secs(60);

fn nodes_yaml(nodes: &[&Node], labels: &[&str]) -> String {
    let mut out = String::from("x-drover:\n  nodes:\n");
    for (n, l) in nodes.iter().zip(labels) {
        out.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n      labels: {{ {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display(),
            l
        ));
    }
    out
}

/// Running containers of `service` on `node` (over its unix socket).
fn running_on(node: &Node, project: &str, service: &str) -> usize {
    let out = node.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=drover.project={project}"),
        "--filter",
        &format!("label=drover.service={service}"),
    ]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// All containers (any state) of the project on `node`.
fn all_on(node: &Node, project: &str) -> usize {
    let out = node.docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=drover.project={project}"),
    ]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn web(replicas: u32, extra: &str) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {replicas}
{extra}
"#
    )
}

#[test]
fn spread_over_three_nodes_and_a_crashed_node_is_replaced_then_fenced() {
    let (a, b, c) = (
        Node::start("nd-a", 71),
        Node::start("nd-b", 72),
        Node::start("nd-c", 73),
    );
    let compose = web(6, "") + &nodes_yaml(&[&a, &b, &c], &["", "", ""]);
    let p = Project::on("it-nodes-crash", &compose, a.env());
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 replicas on each node", |_| {
        [&a, &b, &c]
            .iter()
            .all(|n| running_on(n, &p.name, "web") == 2)
    });

    let killed = Instant::now();
    c.kill();
    eventually_with(&mut d, UP, "6 replicas on the two nodes left", |_| {
        running_on(&a, &p.name, "web") + running_on(&b, &p.name, "web") == 6
    });
    let moved_in = killed.elapsed();
    eprintln!("node crash to replicas running elsewhere: {moved_in:?}");
    let down = d.actions("node-down");
    assert_eq!(down.len(), 1, "one node-down event: {down:?}");
    assert_eq!(down[0]["node"], "nd-c");

    // The node comes back with its old copies (exited by the crash): they are removed,
    // and the count stays exact.
    c.restart();
    eventually_with(
        &mut d,
        UP,
        "the stale copies on the returned node removed",
        |_| all_on(&c, &p.name) == 0,
    );
    assert_eq!(
        running_on(&a, &p.name, "web") + running_on(&b, &p.name, "web"),
        6
    );
    eventually_with(&mut d, UP, "node-up logged", |d| {
        d.actions("node-up")
            .iter()
            .filter(|e| e["node"] == "nd-c")
            .count()
            >= 2
    });
}

#[test]
fn a_partitioned_node_is_replaced_and_its_copies_fenced_when_it_heals() {
    let (a, b) = (Node::start("nd-pa", 74), Node::start("nd-pb", 75));
    let compose = web(4, "") + &nodes_yaml(&[&a, &b], &["", ""]);
    let p = Project::on("it-nodes-part", &compose, a.env());
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 replicas on each node", |_| {
        running_on(&a, &p.name, "web") == 2 && running_on(&b, &p.name, "web") == 2
    });
    b.partition();
    eventually_with(&mut d, UP, "4 replicas on the reachable node", |_| {
        running_on(&a, &p.name, "web") == 4
    });
    // Cut off, b's copies kept running: after healing, the older copies go.
    assert_eq!(running_on(&b, &p.name, "web"), 2);
    b.heal();
    eventually_with(&mut d, UP, "b's stale copies removed", |_| {
        all_on(&b, &p.name) == 0
    });
    assert_eq!(running_on(&a, &p.name, "web"), 4);
    let removed: Vec<_> = d
        .actions("remove")
        .into_iter()
        .filter(|e| e["reason"] == "stale")
        .collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
}

#[test]
fn constraints_and_max_per_node_are_respected_and_the_rest_reported() {
    let (a, b) = (Node::start("nd-ca", 76), Node::start("nd-cb", 77));
    let placement = r#"      placement:
        constraints: ["node.labels.zone == a"]
        max_replicas_per_node: 2"#;
    let compose = web(3, placement) + &nodes_yaml(&[&a, &b], &["zone: a", "zone: b"]);
    let p = Project::on("it-nodes-place", &compose, a.env());
    let plan = p.drover(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("cannot place web slot 3: max_replicas_per_node 2"),
        "{text}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 replicas on the zone-a node", |_| {
        running_on(&a, &p.name, "web") == 2
    });
    eventually_with(&mut d, UP, "the third slot reported", |d| {
        d.actions("unplaced")
            .iter()
            .any(|e| e["slot"] == 3 && e["reason"].as_str().unwrap_or("").contains("max_replicas"))
    });
    assert_eq!(all_on(&b, &p.name), 0, "nothing on the zone-b node");
}

/// A replica moved to another node (its placement changed) cannot take its anonymous
/// volumes along: the move is logged as a warning, the old node's volume is removed with
/// the old container (nothing leaks), and the new replica starts empty.
#[test]
fn a_replica_moved_to_another_node_leaves_its_anonymous_volume_and_says_so() {
    let (a, b) = (Node::start("nd-va", 78), Node::start("nd-vb", 79));
    let compose = |node: &str| {
        let placement =
            format!("      placement:\n        constraints: [\"node.name == {node}\"]\n");
        web(1, &placement).replace("    deploy:", "    volumes: [\"/data\"]\n    deploy:")
            + &nodes_yaml(&[&a, &b], &["", ""])
    };
    let p = Project::on("it-nodes-vol", &compose("nd-va"), a.env());
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "the replica on nd-va", |_| {
        running_on(&a, &p.name, "web") == 1
    });
    let filter = format!("label=drover.project={}", p.name);
    let first = a.docker_ok(&["ps", "-q", "--filter", &filter]);
    a.docker_ok(&["exec", &first, "sh", "-c", "echo here > /data/m"]);
    let volume = a.docker_ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &first]);
    assert_eq!(volume.len(), 64, "an anonymous volume: {volume}");

    p.write("compose.yml", &compose("nd-vb"));
    eventually_with(&mut d, UP, "the replica moved to nd-vb", |_| {
        running_on(&b, &p.name, "web") == 1 && all_on(&a, &p.name) == 0
    });
    eventually_with(&mut d, UP, "the move logged as a warning", |d| {
        d.actions("volumes").iter().any(|e| {
            e["level"] == "WARN"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("moved to node nd-vb"))
        })
    });
    assert!(
        !a.docker(&["volume", "inspect", &volume]).status.success(),
        "the old node's anonymous volume leaked"
    );
    let moved = b.docker_ok(&["ps", "-q", "--filter", &filter]);
    let out = b.docker(&["exec", &moved, "cat", "/data/m"]);
    assert!(!out.status.success(), "the moved replica starts empty");
}

/// A relative bind over several nodes names a path on whichever node runs the replica:
/// drover says so once at start (the nodes need not answer for that).
#[test]
fn a_relative_bind_over_several_nodes_is_warned_about_once() {
    let compose = "x-drover:\n  nodes:\n    - {name: a, host: 'tcp://127.0.0.1:1'}\n    \
                   - {name: b, host: 'tcp://127.0.0.1:2'}\nservices:\n  web:\n    \
                   image: drover-test/busybox:latest\n    volumes: ['./data:/data']\n";
    let p = Project::new("it-nodes-hostpath", compose);
    let mut d = p.run(&["--listen", "off", "--watch-interval", "100ms"]);
    let end = Instant::now() + UP;
    while d.actions("host-paths").is_empty() {
        d.assert_alive();
        assert!(
            Instant::now() < end,
            "no host-paths warning:\n{:?}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A reload (the file touched) does not say it again.
    p.write("compose.yml", &format!("{compose}# touched\n"));
    std::thread::sleep(Duration::from_secs(1));
    let said = d.actions("host-paths");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0]["level"], "WARN");
    assert_eq!(said[0]["reason"], "several-nodes");
}
