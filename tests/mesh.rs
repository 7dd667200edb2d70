//! Services reaching each other across nodes through ambassadors (several engines, each a
//! dockerd in its own network namespace, reaching each other through this host): by name,
//! after a node is lost, spread over replicas, preferring the caller's own node, and UDP
//! (a static UDP echo built from tests/support/udp_echo.c with the C toolchain).
//! Judged from inside the calling container, with busybox.
//!
//! The ambassadors run drover's real image (deploy/build-image.sh, a static release
//! build), loaded into each node as an operator would ship it.
//!
//! Node indices 131..139 belong to this file.

mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::drover::{Project, eventually_with};
use support::{Node, repo_root, text};

const UP: Duration = Duration::from_secs(90);
const IMAGE: &str = "drover-test/drover:mesh";

/// Build drover's image once per test process, on the local engine.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(repo_root().join("deploy/build-image.sh"))
            .arg(IMAGE)
            .env("DOCKER_HOST", support::local_engine())
            .output()
            .expect("cannot run deploy/build-image.sh");
        assert!(
            out.status.success(),
            "deploy/build-image.sh failed:\n{}",
            text(&out)
        );
    });
    IMAGE
}

/// Nodes with drover's image loaded into each.
fn nodes(names: &[(&str, u8)]) -> Vec<Node> {
    let image = image();
    // One file per call: tests run at once, and each removes its own.
    let saved = std::env::temp_dir().join(format!(
        "drover-mesh-{}-{}.tar",
        std::process::id(),
        names[0].0
    ));
    support::docker_ok(
        &[("DOCKER_HOST", support::local_engine())],
        &["save", "-o", saved.to_str().unwrap(), image],
    );
    let nodes: Vec<Node> = names.iter().map(|(n, i)| Node::start(n, *i)).collect();
    for n in &nodes {
        n.docker_ok(&["load", "-q", "-i", saved.to_str().unwrap()]);
    }
    let _ = std::fs::remove_file(&saved);
    nodes
}

fn nodes_yaml(nodes: &[&Node]) -> String {
    let mut out = format!("x-drover:\n  ambassador: {{ image: {IMAGE} }}\n  nodes:\n");
    for n in nodes {
        out.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display()
        ));
    }
    out
}

/// A service answering HTTP on `port` with `NAME-<its container's hostname>`.
fn server(name: &str, port: u16, deploy: &str) -> String {
    format!(
        r#"
  {name}:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo {name}-$$HOSTNAME > /www/index.html && exec httpd -f -p {port} -h /www"]
    expose: ["{port}"]
    stop_signal: SIGKILL
    deploy:
{deploy}
"#
    )
}

/// A static UDP echo (tests/support/udp_echo.c), built once per test process: it runs in
/// the busybox image, bind-mounted from this host (the nodes share its file system).
fn udp_echo() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("drover-udp-echo-{}", std::process::id()));
        let src = repo_root().join("tests/support/udp_echo.c");
        let cc = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .output()
            .expect("cannot run cc");
        assert!(cc.status.success(), "cc udp_echo.c failed:\n{}", text(&cc));
        out.to_string_lossy().into_owned()
    })
}

/// A service answering UDP datagrams on `port` with `<its hostname> <datagram>`.
fn udp_server(name: &str, port: u16, deploy: &str) -> String {
    let bin = udp_echo();
    format!(
        r#"
  {name}:
    image: drover-test/busybox:latest
    command: ["/udp-echo", "serve", "{port}"]
    volumes: ["{bin}:/udp-echo:ro"]
    expose: ["{port}/udp"]
    stop_signal: SIGKILL
    deploy:
{deploy}
"#
    )
}

/// The caller: sleeps on `node`, reaches the others with busybox (and the UDP echo).
fn caller(node: &str) -> String {
    let bin = udp_echo();
    format!(
        r#"
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    volumes: ["{bin}:/udp-echo:ro"]
    stop_signal: SIGKILL
    deploy:
      placement: {{ constraints: ["node.name == {node}"] }}
"#
    )
}

/// What a datagram to `name:port` from `container` on `node` brings back (empty: nothing
/// within 2 s). The name is looked up by busybox (the engine's DNS), the datagram sent by
/// the UDP echo.
fn ask_udp(node: &Node, container: &str, name: &str, port: u16) -> String {
    let script = format!(
        "ip=$(nslookup {name} 2>/dev/null | awk '/^Address/ {{a=$NF}} END {{print a}}'); \
         /udp-echo ask \"$ip\" {port} ping"
    );
    let out = node.docker(&["exec", container, "/bin/sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Running containers of `service` on `node`.
fn running_on(node: &Node, project: &str, service: &str) -> Vec<String> {
    let out = node.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=drover.project={project}"),
        "--filter",
        &format!("label=drover.service={service}"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What `http://NAME:PORT/` answers inside `container` on `node`: the body's last line
/// (empty: nothing). busybox `nc`, whose name lookups work in a static busybox.
fn ask_on(node: &Node, container: &str, name: &str, port: u16) -> String {
    let out = node.docker(&[
        "exec",
        container,
        "/bin/sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {name} {port}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.starts_with("HTTP/1.") {
        return String::new();
    }
    text.lines().last().unwrap_or_default().trim().to_string()
}

fn ask(node: &Node, container: &str, name: &str) -> String {
    ask_on(node, container, name, 8080)
}

#[test]
fn web_reaches_db_on_another_node_by_name_and_again_after_the_node_is_lost() {
    let ns = nodes(&[("mesh-a", 131), ("mesh-b", 132), ("mesh-c", 133)]);
    let (a, b, c) = (&ns[0], &ns[1], &ns[2]);
    let compose = String::from("services:")
        + &caller("mesh-a")
        + &server(
            "db",
            8080,
            "      placement: { constraints: [\"node.name != mesh-a\"] }",
        )
        + &udp_server(
            "echo",
            5353,
            "      placement: { constraints: [\"node.name == mesh-c\"] }",
        )
        + &nodes_yaml(&[a, b, c]);
    let p = Project::on("it-mesh-reach", &compose, a.env());
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "web on mesh-a, db on mesh-b", |_| {
        running_on(a, &p.name, "web").len() == 1
            && running_on(b, &p.name, "db").len() == 1
            && running_on(c, &p.name, "echo").len() == 1
    });
    let web = running_on(a, &p.name, "web").remove(0);
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "web reaches db by name",
        |_| ask(a, &web, "db").starts_with("db-"),
    );

    // UDP, for a service that declares it: the datagram crosses to mesh-c and back.
    let echo = running_on(c, &p.name, "echo");
    assert_eq!(echo.len(), 1, "echo runs on mesh-c");
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "web reaches echo over UDP",
        |_| ask_udp(a, &web, "echo", 5353) == format!("{} ping", &echo[0][..12]),
    );

    // `drover plan` asks each running ambassador for its routes: nothing to push.
    let planned = p.drover(&["plan", "-p", &p.name]);
    assert!(planned.status.success(), "{}", text(&planned));
    let planned = String::from_utf8_lossy(&planned.stdout).to_string();
    assert!(!planned.contains("routes"), "no routes to push: {planned}");

    // Published on the node's address only, on an engine-assigned port.
    let db = running_on(b, &p.name, "db").remove(0);
    let port = b.docker_ok(&["port", &db, "8080/tcp"]);
    assert!(port.starts_with("10.231.132.2:"), "published where: {port}");
    assert!(!port.contains("0.0.0.0"), "{port}");
    // web has no ports: nothing of it is published.
    assert_eq!(a.docker_ok(&["port", &web]), "");

    let killed = Instant::now();
    b.kill();
    eventually_with(&mut d, UP, "db running on mesh-c", |_| {
        running_on(c, &p.name, "db").len() == 1
    });
    let running = killed.elapsed();
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "web reaches the moved db",
        |_| ask(a, &web, "db").starts_with("db-"),
    );
    let reached = killed.elapsed();
    eprintln!(
        "node killed -> db running on mesh-c: {running:?}; -> web reaches it: {reached:?} ({:?} after it runs)",
        reached - running
    );
    // An ambassador that dies is replaced like a replica, and gets its routes again.
    let ambassador = a.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=drover.project={}", p.name),
        "--filter",
        "label=drover.ambassador=default",
    ]);
    let killed = Instant::now();
    a.docker_ok(&["kill", &ambassador]);
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "web reaches db through a new ambassador",
        |_| ask(a, &web, "db").starts_with("db-"),
    );
    eprintln!(
        "ambassador killed -> web reaches db again: {:?}",
        killed.elapsed()
    );
    let pushes = d.actions("routes");
    assert!(
        pushes.iter().all(|e| e.get("error").is_none()),
        "every push of routes succeeded: {pushes:?}"
    );
}

#[test]
fn a_scaled_service_spreads_over_its_replicas_and_a_local_replica_is_preferred() {
    let ns = nodes(&[("mesh-d", 134), ("mesh-e", 135), ("mesh-f", 136)]);
    let (d_, e, f) = (&ns[0], &ns[1], &ns[2]);
    let compose = |api: u32| {
        String::from("services:")
            + &caller("mesh-d")
            + &server(
                "api",
                8081,
                &format!(
                    "      replicas: {api}\n      placement: {{ constraints: [\"node.name != mesh-d\"] }}"
                ),
            )
            + &server(
                "cache",
                8081,
                "      replicas: 3\n      placement: { max_replicas_per_node: 1 }",
            )
            + &nodes_yaml(&[d_, e, f])
    };
    let p = Project::on("it-mesh-spread", &compose(1), d_.env());
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "web, one api, a cache on each node", |_| {
        running_on(d_, &p.name, "web").len() == 1
            && ns
                .iter()
                .all(|n| running_on(n, &p.name, "cache").len() == 1)
            && running_on(e, &p.name, "api").len() + running_on(f, &p.name, "api").len() == 1
    });
    let web = running_on(d_, &p.name, "web").remove(0);
    eventually_with(&mut d, Duration::from_secs(20), "web reaches api", |_| {
        ask_on(d_, &web, "api", 8081).starts_with("api-")
    });

    // api and cache both listen on 8081: each name reaches its own service (the second
    // has an ambassador of its own on the network).
    // The caller's own node has a cache: every connection stays there.
    let local = running_on(d_, &p.name, "cache").remove(0);
    for _ in 0..6 {
        assert_eq!(ask_on(d_, &web, "cache", 8081), format!("cache-{local}"));
    }

    // Scaled from 1 to 3 over the two other nodes: connections reach all three.
    p.write("compose.yml", &compose(3));
    eventually_with(&mut d, UP, "3 api replicas", |_| {
        running_on(e, &p.name, "api").len() + running_on(f, &p.name, "api").len() == 3
    });
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "connections on all 3 replicas",
        |_| {
            let answer = ask_on(d_, &web, "api", 8081);
            if answer.starts_with("api-") {
                seen.insert(answer);
            }
            seen.len() == 3
        },
    );
    eprintln!(
        "3 api replicas running -> all 3 answered: {:?}",
        started.elapsed()
    );
}
