//! `drover down`, as `docker compose down`: the project's containers and networks go,
//! named and anonymous volumes stay unless `--volumes` (then the anonymous volumes a
//! replacement took over go too), the lease container goes with them, nothing else is
//! touched; it refuses while a drover acts for the project unless `--force`; on three
//! nodes it takes the project down on each; in Swarm mode it removes the stack and nothing
//! else. Projects `it-down-*`; node indices 141..144.

mod support;

use std::time::Duration;

use support::Node;
use support::drover::{Project, eventually_with};

const UP: Duration = Duration::from_secs(60);

fn compose(extra: &str) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment: {{ V: "1" }}
    scale: 2
    volumes:
      - data:/data
      - /cache
volumes:
  data: {{}}
{extra}"#
    )
}

fn down(p: &Project, name: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["down", "-p", name];
    all.extend(args);
    let out = p.drover(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ls(p: &Project, kind: &str, filter: &str) -> Vec<String> {
    let out = p.docker_ok(&[kind, "ls", "-q", "--filter", filter]);
    out.lines().map(str::to_string).collect()
}

/// The anonymous (64-hex) volumes mounted in the project's containers.
fn anonymous_volumes(p: &Project) -> Vec<String> {
    let mut names = Vec::new();
    for id in p.containers(Some("web"), None) {
        let out = p.inspect(&id, "{{range .Mounts}}{{.Name}} {{end}}");
        names.extend(
            out.split_whitespace()
                .filter(|n| n.len() == 64)
                .map(str::to_string),
        );
    }
    names.sort();
    names
}

fn volume_exists(p: &Project, name: &str) -> bool {
    p.docker(&["volume", "inspect", name]).status.success()
}

#[test]
fn down_removes_containers_networks_and_the_lease_and_volumes_only_when_asked() {
    let name = "it-down-one";
    let p = Project::new(name, &compose(""));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running", |_| p.running("web") == 2);
    // A replacement takes over its predecessor's anonymous volume.
    let before = anonymous_volumes(&p);
    p.write("compose.yml", &compose("").replace("V: \"1\"", "V: \"2\""));
    eventually_with(&mut d, UP, "both replaced", |_| {
        p.containers(Some("web"), Some("running"))
            .iter()
            .all(|id| p.inspect(id, "{{.Config.Env}}").contains("V=2"))
            && p.running("web") == 2
            // and the last replaced one is removed, not only stopped
            && p.containers(Some("web"), None).len() == 2
    });
    assert_eq!(anonymous_volumes(&p), before, "taken over, not new");
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("drover stops");
    let lease = format!("drover-lease-{name}");
    assert!(
        p.docker(&["inspect", &lease]).status.success(),
        "the lease container is left"
    );

    let (ok, out, err) = down(&p, name, &[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("container {name}-web-1 removed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("network {name}_default removed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("lease container {lease} removed")),
        "{out}"
    );
    assert!(p.containers(None, None).is_empty());
    assert!(!p.docker(&["inspect", &lease]).status.success());
    let project = format!("label=drover.project={name}");
    assert!(ls(&p, "network", &project).is_empty());
    // Volumes stay, as compose's `down` leaves them.
    assert!(volume_exists(&p, &format!("{name}_data")));
    assert!(before.iter().all(|v| volume_exists(&p, v)), "{before:?}");

    // Up again: `--volumes` takes the named volume and the anonymous ones, the ones taken
    // over included.
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running again", |_| p.running("web") == 2);
    let now = anonymous_volumes(&p);
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("drover stops");
    let (ok, out, err) = down(&p, name, &["--volumes"]);
    assert!(ok, "{out}{err}");
    assert!(!volume_exists(&p, &format!("{name}_data")), "{out}");
    assert!(now.iter().all(|v| !volume_exists(&p, v)), "{out}");
    assert!(ls(&p, "volume", &project).is_empty());
    for v in before.iter().filter(|v| !now.contains(v)) {
        let _ = p.docker(&["volume", "rm", v]);
    }
}

#[test]
fn down_refuses_while_a_drover_acts_and_force_goes_on() {
    let name = "it-down-busy";
    let p = Project::new(name, &compose(""));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running", |_| p.running("web") == 2);
    let (ok, out, err) = down(&p, name, &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("a drover acts for project {name}")),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(p.running("web"), 2, "nothing removed");
    // The drover's lease is taken for the time of `down`: everything goes, the network
    // included, and the drover stood by meanwhile.
    let (ok, out, err) = down(&p, name, &["--force"]);
    assert!(ok, "{out}{err}");
    for gone in [
        format!("container {name}-web-2 removed"),
        format!("network {name}_default removed"),
        format!("lease container drover-lease-{name} removed"),
    ] {
        assert!(out.contains(&gone), "{gone}: {out}");
    }
    // Then the drover takes its lease back and creates everything again, as `down` warned.
    d.assert_alive();
    eventually_with(&mut d, UP, "2 web running again", |_| p.running("web") == 2);
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("drover stops");
}

#[test]
fn down_on_three_nodes_takes_the_project_down_on_each() {
    let (a, b, c) = (
        Node::start("dn-a", 141),
        Node::start("dn-b", 142),
        Node::start("dn-c", 143),
    );
    let mut nodes = String::from("x-drover:\n  nodes:\n");
    for n in [&a, &b, &c] {
        nodes.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display()
        ));
    }
    let name = "it-down-nodes";
    let yaml = compose(&nodes).replace("scale: 2", "scale: 6");
    let p = Project::on(name, &yaml, a.env());
    let mut d = p.run(&[]);
    let on = |n: &Node| -> usize {
        let out = n.docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=drover.project={name}"),
        ]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    eventually_with(&mut d, UP, "2 replicas on each node", |_| {
        [&a, &b, &c].iter().all(|n| on(n) == 2)
    });
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("drover stops");
    let (ok, out, err) = down(&p, name, &["--volumes"]);
    assert!(ok, "{out}{err}");
    for n in [&a, &b, &c] {
        assert_eq!(on(n), 0, "node {}: {out}", n.name);
        let nets = n.docker_ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=drover.project={name}"),
        ]);
        assert!(nets.trim().is_empty(), "node {}: {out}", n.name);
        let vols = n.docker_ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=drover.project={name}"),
        ]);
        assert!(vols.trim().is_empty(), "node {}: {out}", n.name);
        assert!(out.contains(&format!("(node {})", n.name)), "{out}");
    }
}

#[test]
fn down_in_swarm_mode_removes_the_stack_and_leaves_other_services() {
    let m = Node::start("down-sw", 144);
    m.docker_ok(&["swarm", "init", "--advertise-addr", "10.231.144.2"]);
    let name = "it-down-swarm";
    let p = Project::on(
        name,
        r#"
x-drover:
  mode: swarm
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    secrets: [token]
    deploy: { replicas: 2 }
secrets:
  token: { file: ./token.txt }
"#,
        m.env(),
    );
    p.write("token.txt", "not-a-real-token\n");
    // A service of someone else's, in no stack: down never touches it.
    m.docker_ok(&[
        "service",
        "create",
        "--name",
        "bystander",
        "--detach",
        "drover-test/busybox:latest",
        "sleep",
        "86400",
    ]);
    let services = || -> Vec<String> {
        m.docker_ok(&["service", "ls", "--format", "{{.Name}}"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut d = p.run(&[]);
    let web = format!("{name}_web");
    eventually_with(&mut d, UP, "the stack's service exists", |_| {
        services().contains(&web)
    });
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10)).expect("drover stops");

    let (ok, out, err) = down(&p, name, &[]);
    assert!(ok, "{out}{err}");
    for removed in [
        format!("service {web} removed"),
        format!("network {name}_default removed"),
        format!("secret {name}_token removed"),
    ] {
        assert!(out.contains(&removed), "{removed}: {out}");
    }
    assert_eq!(services(), vec!["bystander".to_string()], "{out}");
    let stack = format!("label=com.docker.stack.namespace={name}");
    support::wait_until(
        Duration::from_secs(30),
        "the stack's network removed",
        || ls(&p, "network", &stack).is_empty(),
    );
    assert!(ls(&p, "secret", &stack).is_empty(), "{out}");
    // Down twice: nothing left, still a success.
    let (ok, out, err) = down(&p, name, &[]);
    assert!(ok, "{out}{err}");
}
