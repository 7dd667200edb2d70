//! `deploy.mode: global` and node availability over several real engines (each a dockerd
//! in its own network namespace, with TLS): one replica per node following the node list
//! as it is edited, a drained node emptied start-first without dropping below the target,
//! a paused node taking nothing new, and `status` showing each node's availability.
//!
//! Node indices 181..189 belong to this file; project names start with `gl-`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::Node;
use support::drover::{Drover, Project, address, eventually_with};

const UP: Duration = Duration::from_secs(60);

/// `x-drover.nodes` listing `nodes`, each with its extra keys (`availability: drain`).
fn nodes_yaml(nodes: &[(&Node, &str)]) -> String {
    let mut out = String::from("x-drover:\n  nodes:\n");
    for (n, extra) in nodes {
        out.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display(),
        ));
        if !extra.is_empty() {
            out.push_str(&format!("      {extra}\n"));
        }
    }
    out
}

/// Names of the running containers of `service` on `node` (over its unix socket).
fn running_names(node: &Node, project: &str, service: &str) -> Vec<String> {
    let out = node.docker(&[
        "ps",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=drover.project={project}"),
        "--filter",
        &format!("label=drover.service={service}"),
    ]);
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn running_on(node: &Node, project: &str, service: &str) -> usize {
    running_names(node, project, service).len()
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

const AGENT: &str = r#"
  agent:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      mode: global
"#;

fn web(replicas: u32) -> String {
    format!(
        r#"
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {replicas}
      update_config: {{ parallelism: 1, monitor: 1s }}
"#
    )
}

/// `drover status --json` of the running drover at `listen`.
fn status(p: &Project, listen: &str) -> serde_json::Value {
    let out = p.drover(&["status", "--json", "--listen", listen]);
    assert!(out.status.success(), "{}", support::text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_availability(s: &serde_json::Value, node: &str) -> Option<String> {
    s["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)?
        .get("availability")?
        .as_str()
        .map(str::to_string)
}

/// How long `f` took to hold, waiting at most [`UP`].
fn timed(d: &mut Drover, what: &str, f: impl FnMut(&Drover) -> bool) -> Duration {
    let start = Instant::now();
    eventually_with(d, UP, what, f);
    start.elapsed()
}

#[test]
fn a_global_service_runs_once_per_node_and_follows_the_node_list() {
    let (a, b, c) = (
        Node::start("gl-a", 181),
        Node::start("gl-b", 182),
        Node::start("gl-c", 183),
    );
    let services = format!("services:{AGENT}");
    let compose = |nodes: &[(&Node, &str)]| format!("{services}{}", nodes_yaml(nodes));
    let p = Project::on("gl-follow", &compose(&[(&a, ""), (&b, "")]), a.env());
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--watch-interval", "200ms"]);
    let listen = address(&mut d).to_string();
    eventually_with(&mut d, UP, "one agent on each listed node", |_| {
        running_on(&a, &p.name, "agent") == 1 && running_on(&b, &p.name, "agent") == 1
    });
    // Its slot is the node's position in the list.
    assert_eq!(
        running_names(&b, &p.name, "agent"),
        [format!("{}-agent-2", p.name)]
    );
    assert_eq!(all_on(&c, &p.name), 0, "c is not listed yet");
    let s = status(&p, &listen);
    let agent = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "agent")
        .unwrap()
        .clone();
    assert_eq!(agent["desired"], 2, "{agent}");

    // c is added to the list: it gets its agent within seconds.
    p.write("compose.yml", &compose(&[(&a, ""), (&b, ""), (&c, "")]));
    let took = timed(&mut d, "an agent on the added node", |_| {
        running_on(&c, &p.name, "agent") == 1
    });
    eprintln!("the added node ran its agent {took:?} after the edit");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(
        running_names(&c, &p.name, "agent"),
        [format!("{}-agent-3", p.name)]
    );
    assert!(!d.actions("node-added").is_empty());

    // b is removed from the list: its agent goes, the others stay, b is let go.
    p.write("compose.yml", &compose(&[(&a, ""), (&c, "")]));
    eventually_with(&mut d, UP, "nothing left on the removed node", |_| {
        all_on(&b, &p.name) == 0
    });
    eventually_with(&mut d, UP, "the removed node let go", |d| {
        d.actions("node-removed")
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("let go"))
    });
    assert_eq!(running_on(&a, &p.name, "agent"), 1);
    assert_eq!(running_on(&c, &p.name, "agent"), 1);
    let s = status(&p, &listen);
    let names: Vec<&str> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["gl-a", "gl-c"]);
}

/// Running containers of `service` over all `nodes`, sampled in a thread until stopped:
/// the fewest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    min: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(nodes: Vec<(String, std::path::PathBuf)>, project: String, service: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let min = Arc::new(AtomicUsize::new(usize::MAX));
        let samples = Arc::new(AtomicUsize::new(0));
        let (s, m, n) = (stop.clone(), min.clone(), samples.clone());
        let service = service.to_string();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut total = 0;
                for (_, socket) in &nodes {
                    let out = support::docker(
                        &[("DOCKER_HOST", format!("unix://{}", socket.display()))],
                        &[
                            "ps",
                            "-q",
                            "--filter",
                            &format!("label=drover.project={project}"),
                            "--filter",
                            &format!("label=drover.service={service}"),
                        ],
                    );
                    total += String::from_utf8_lossy(&out.stdout).lines().count();
                }
                m.fetch_min(total, Ordering::Relaxed);
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Sampler {
            stop,
            min,
            samples,
            thread: Some(thread),
        }
    }

    /// (fewest running seen, samples taken).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.min.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

fn socket(n: &Node) -> (String, std::path::PathBuf) {
    (
        n.name.clone(),
        std::path::PathBuf::from(n.unix_host().trim_start_matches("unix://")),
    )
}

#[test]
fn a_drained_node_is_emptied_start_first_without_dropping_below_the_target() {
    let (a, b, c) = (
        Node::start("gl-da", 184),
        Node::start("gl-db", 185),
        Node::start("gl-dc", 186),
    );
    let services = format!("services:{AGENT}{}", web(6));
    let compose = |a_extra: &str| {
        format!(
            "{services}{}",
            nodes_yaml(&[(&a, a_extra), (&b, ""), (&c, "")])
        )
    };
    let p = Project::on("gl-drain", &compose(""), a.env());
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--watch-interval", "200ms"]);
    let listen = address(&mut d).to_string();
    eventually_with(&mut d, UP, "2 web and 1 agent on each node", |_| {
        [&a, &b, &c]
            .iter()
            .all(|n| running_on(n, &p.name, "web") == 2 && running_on(n, &p.name, "agent") == 1)
    });
    let sampler = Sampler::start(
        vec![socket(&a), socket(&b), socket(&c)],
        p.name.clone(),
        "web",
    );
    p.write("compose.yml", &compose("availability: drain"));
    let took = timed(&mut d, "nothing left on the drained node", |_| {
        all_on(&a, &p.name) == 0
    });
    eprintln!("the drained node was empty {took:?} after the edit");
    eventually_with(&mut d, UP, "6 web on the two other nodes", |_| {
        running_on(&b, &p.name, "web") + running_on(&c, &p.name, "web") == 6
    });
    let (min, samples) = sampler.finish();
    assert!(samples >= 5, "only {samples} samples");
    assert!(min >= 6, "{min} web running at one point during the drain");
    let drained = |d: &Drover| -> Vec<serde_json::Value> {
        d.actions("start-first")
            .into_iter()
            .filter(|e| e["reason"] == "drained")
            .collect()
    };
    // A move is logged once it finished, a moment after the engine shows it.
    eventually_with(&mut d, UP, "both moves logged", |d| drained(d).len() >= 2);
    let moves = drained(&d);
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert!(moves.iter().all(|e| e["node"] == "gl-da"), "{moves:?}");
    let said = d.actions("node-availability");
    assert!(
        said.iter()
            .any(|e| e["node"] == "gl-da" && e["availability"] == "drain"),
        "{said:?}"
    );
    assert_eq!(
        node_availability(&status(&p, &listen), "gl-da").as_deref(),
        Some("drain")
    );
    assert_eq!(running_on(&b, &p.name, "agent"), 1);
    assert_eq!(running_on(&c, &p.name, "agent"), 1);
    // `drover plan` says so, and has nothing to do.
    let plan = p.drover(&["plan", "-p", &p.name]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("node gl-da is drained"), "{text}");
    assert!(text.contains("nothing to do"), "{text}");
}

#[test]
fn a_paused_node_keeps_its_replicas_and_takes_no_new_one() {
    let (a, b) = (Node::start("gl-pa", 187), Node::start("gl-pb", 188));
    let compose = |replicas: u32, b_extra: &str| {
        format!(
            "services:{AGENT}{}{}",
            web(replicas),
            nodes_yaml(&[(&a, ""), (&b, b_extra)])
        )
    };
    let p = Project::on("gl-pause", &compose(2, ""), a.env());
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--watch-interval", "200ms"]);
    let listen = address(&mut d).to_string();
    eventually_with(&mut d, UP, "1 web and 1 agent on each node", |_| {
        [&a, &b]
            .iter()
            .all(|n| running_on(n, &p.name, "web") == 1 && running_on(n, &p.name, "agent") == 1)
    });
    let before = running_names(&b, &p.name, "web");
    p.write("compose.yml", &compose(2, "availability: pause"));
    eventually_with(&mut d, UP, "status shows the pause", |_| {
        node_availability(&status(&p, &listen), "gl-pb").as_deref() == Some("pause")
    });
    // Scale up: the new replicas all go to a.
    p.write("compose.yml", &compose(5, "availability: pause"));
    eventually_with(&mut d, UP, "4 web on the active node", |_| {
        running_on(&a, &p.name, "web") == 4
    });
    assert_eq!(
        running_names(&b, &p.name, "web"),
        before,
        "b kept its replica"
    );
    assert_eq!(running_on(&b, &p.name, "agent"), 1, "b kept its agent");
    let created_on_b: Vec<_> = d
        .actions("create")
        .into_iter()
        .filter(|e| e["node"] == "gl-pb" && e["service"] == "web")
        .collect();
    assert_eq!(
        created_on_b.len(),
        1,
        "only the first replica: {created_on_b:?}"
    );
}
