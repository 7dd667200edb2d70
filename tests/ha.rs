//! HA drover: the lease held on a majority of three nodes, with the drovers themselves in
//! the nodes' network namespaces (`scripts/node.sh exec`), so a partition cuts a drover
//! off with its node. Judged from the engines (containers, their `drover.term` labels)
//! and from the drovers' JSON logs; every wait is a condition with a deadline.
//!
//! Node indices 171..179 belong to this file; project names start with `ha-`.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Node;
use support::drover::Drover;

const UP: Duration = Duration::from_secs(60);
/// Takeover and stepping down are timed and printed; these bounds only catch a broken
/// lease (the targets, 5 s to a new leader and the 2 s ttl, are checked by the numbers
/// printed and recorded in docs/reliability.md, not by a timed assertion that a busy
/// machine can miss).
const TAKEOVER_BOUND: Duration = Duration::from_secs(15);
const STOP_BOUND: Duration = Duration::from_secs(6);

/// A project over `nodes`, in a directory of its own, and the drovers that run it.
struct Ha {
    name: String,
    dir: std::path::PathBuf,
    nodes: Vec<Node>,
}

impl Ha {
    fn new(name: &str, nodes: Vec<Node>, replicas: u32) -> Ha {
        Ha::with_witness(name, nodes, replicas, None)
    }

    /// [`Ha::new`] with node `witness` given `role: witness` (lease votes, no replicas).
    fn with_witness(name: &str, nodes: Vec<Node>, replicas: u32, witness: Option<usize>) -> Ha {
        let dir = std::env::temp_dir().join(format!("drover-it-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut compose = format!(
            r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {replicas}
x-drover:
  nodes:
"#
        );
        for (i, n) in nodes.iter().enumerate() {
            compose.push_str(&format!(
                "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
                n.name,
                n.host,
                n.cert_dir.display()
            ));
            if witness == Some(i) {
                compose.push_str("      role: witness\n");
            }
        }
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        Ha {
            name: name.to_string(),
            dir,
            nodes,
        }
    }

    /// `drover run` inside node `i`'s network namespace.
    fn drover(&self, i: usize, extra: &[&str]) -> Drover {
        let mut cmd = Command::new(support::repo_root().join("scripts/node.sh"));
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("RUST_LOG", "info")
            .arg("exec")
            .arg(&self.nodes[i].name)
            .arg(support::drover_bin())
            .args(["run", "--log-format", "json", "--listen", "off"])
            .args(["-p", &self.name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Drover::spawn(cmd)
    }

    /// The project's containers on node `i` (any state): (name, state, term).
    fn containers(&self, i: usize) -> Vec<(String, String, u64)> {
        let out = self.nodes[i].docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=drover.project={}", self.name),
            "--format",
            "{{.Names}} {{.State}} {{.Label \"drover.term\"}}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?.to_string();
                let state = f.next()?.to_string();
                let term = f.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                Some((name, state, term))
            })
            .collect()
    }

    fn running_on(&self, i: usize) -> usize {
        self.containers(i)
            .iter()
            .filter(|c| c.1 == "running")
            .count()
    }

    /// How many running copies each slot has, over the nodes in `on`.
    fn slots(&self, on: &[usize]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for &i in on {
            for (name, state, _) in self.containers(i) {
                if state == "running" {
                    *out.entry(name).or_default() += 1;
                }
            }
        }
        out
    }

    fn each_slot_once(&self, on: &[usize], n: usize) -> bool {
        let s = self.slots(on);
        s.len() == n && s.values().all(|c| *c == 1)
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn three(prefix: &str, first: u8) -> Vec<Node> {
    (0..3)
        .map(|i| Node::start(&format!("{prefix}{i}"), first + i))
        .collect()
}

/// The lease events of a drover, in order: ("acquired", term) or ("lost", term).
fn lease_events(d: &Drover) -> Vec<(&'static str, u64)> {
    d.events()
        .iter()
        .filter_map(|e| match e["action"].as_str()? {
            "lease-acquired" => Some(("acquired", e["term"].as_u64().unwrap_or(0))),
            "lease-lost" => Some(("lost", e["term"].as_u64().unwrap_or(0))),
            _ => None,
        })
        .collect()
}

/// True when the drover's last word on the lease is that it acquired it.
fn leads(d: &Drover) -> Option<u64> {
    match lease_events(d).last() {
        Some(("acquired", t)) => Some(*t),
        _ => None,
    }
}

fn creates(d: &Drover) -> usize {
    d.actions("create").len()
}

/// Everything the drover changed on an engine (succeeded or failed), from its log.
fn changes(d: &Drover) -> usize {
    const CHANGING: &[&str] = &[
        "create-network",
        "create-volume",
        "remove-network",
        "create",
        "start",
        "restart",
        "start-first",
        "recreate",
        "remove",
        "ambassador",
        "routes",
    ];
    d.events()
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| CHANGING.contains(&a)))
        .count()
}

/// Wait for `f` over the drovers, failing with all their logs.
fn wait(drovers: &[&Drover], deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            let logs: Vec<String> = drovers
                .iter()
                .enumerate()
                .map(|(i, d)| format!("--- drover {i}:\n{}", d.logs().join("\n")))
                .collect();
            panic!(
                "timed out after {deadline:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start one drover per node; wait for one leader and `replicas` running, each slot once.
fn settle(ha: &Ha, replicas: usize) -> (Vec<Drover>, usize) {
    let drovers: Vec<Drover> = (0..ha.nodes.len()).map(|i| ha.drover(i, &[])).collect();
    let all: Vec<&Drover> = drovers.iter().collect();
    // A leader whose lease ran out in the middle of its first pass (on a loaded machine
    // its renewals can answer late) stopped acting at once: the creates it had sent end
    // on the engines, but not in its log. Then only the engines say each slot was created
    // once.
    let interrupted = |d: &Drover| {
        let events = lease_events(d);
        let first = events.iter().position(|(e, _)| *e == "acquired");
        first.is_some_and(|f| events[f..].iter().any(|(e, _)| *e == "lost"))
    };
    let held = |d: &Drover| lease_events(d).iter().any(|(e, _)| *e == "acquired");
    // A create is logged once its container runs, so the engine can show every slot a
    // moment before the leader's log does: wait for both.
    wait(&all, UP, "one leader and every slot running once", || {
        let leaders: Vec<&Drover> = drovers.iter().filter(|d| leads(d).is_some()).collect();
        leaders.len() == 1
            && ha.each_slot_once(&[0, 1, 2], replicas)
            && (creates(leaders[0]) >= replicas || interrupted(leaders[0]))
    });
    let leader = drovers.iter().position(|d| leads(d).is_some()).unwrap();
    // Started together: no drover that never held the lease changed anything, and none
    // meets the double-create errors two acting drovers meet ("network ... ambiguous").
    for d in &drovers {
        let logs = d.logs().join("\n");
        assert!(!logs.contains("ambiguous"), "{logs}");
        if !held(d) {
            assert_eq!(changes(d), 0, "a follower changed something:\n{logs}");
        }
    }
    if interrupted(&drovers[leader]) {
        eprintln!("the leader's lease ran out during its first pass: its log is not counted");
        return (drovers, leader);
    }
    let mut created: Vec<String> = drovers[leader]
        .actions("create")
        .iter()
        .map(|e| format!("{} {}", e["service"], e["slot"]))
        .collect();
    let n = created.len();
    created.sort();
    created.dedup();
    assert_eq!(
        (n, created.len()),
        (replicas, replicas),
        "each slot created once"
    );
    (drovers, leader)
}

#[test]
fn three_drovers_started_together_one_leads_and_killing_its_host_elects_another() {
    let ha = Ha::new("ha-kill", three("ha-k", 171), 6);
    let (mut drovers, l) = settle(&ha, 6);
    let old_term = leads(&drovers[l]).unwrap();
    wait(
        &drovers.iter().collect::<Vec<_>>(),
        UP,
        "2 replicas per node",
        || (0..3).all(|i| ha.running_on(i) == 2),
    );
    // The leader's host dies: its engine and its drover at once.
    let killed = Instant::now();
    drovers[l].child.kill().unwrap();
    ha.nodes[l].kill();
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let mut new_leader = None;
    let mut elected = Duration::ZERO;
    {
        let all: Vec<&Drover> = others.iter().map(|&i| &drovers[i]).collect();
        wait(&all, UP, "a new leader", || {
            new_leader = others
                .iter()
                .copied()
                .find(|&i| leads(&drovers[i]).is_some());
            elected = killed.elapsed();
            new_leader.is_some()
        });
        wait(
            &all,
            UP,
            "the dead node's replicas running elsewhere",
            || {
                others.iter().map(|&i| ha.running_on(i)).sum::<usize>() == 6
                    && ha.each_slot_once(&others, 6)
            },
        );
    }
    let moved = killed.elapsed();
    let n = new_leader.unwrap();
    let new_term = leads(&drovers[n]).unwrap();
    eprintln!(
        "leader's host killed: new leader acting after {elected:?}, its replicas running elsewhere after {moved:?}"
    );
    assert!(new_term > old_term, "term {new_term} after {old_term}");
    // The 5 s target is measured and printed above (docs/reliability.md has the figures);
    // the bound here only catches a takeover that is broken, not a slow machine.
    assert!(
        elected <= TAKEOVER_BOUND,
        "a new leader within {TAKEOVER_BOUND:?}: {elected:?}"
    );
    // What the new leader created carries its term; the other survivor created nothing.
    let mut new_copies = 0;
    for &i in &others {
        for (_, _, term) in ha.containers(i) {
            assert!(term == old_term || term == new_term, "term {term}");
            new_copies += usize::from(term == new_term);
        }
    }
    assert_eq!(
        new_copies, 2,
        "the two moved replicas, created under the new term"
    );
    let follower = others.iter().copied().find(|&i| i != n).unwrap();
    assert_eq!(creates(&drovers[follower]), 0, "the follower never acted");
    drovers[n].assert_alive();
}

#[test]
fn a_frozen_leader_is_replaced_and_never_acts_once_resumed_with_a_witness() {
    // Two engines that run replicas and a witness (lease votes only), a drover on each.
    let ha = Ha::with_witness("ha-freeze", three("ha-f", 174), 3, Some(2));
    let (mut drovers, l) = settle(&ha, 3);
    let lease = "drover-lease-ha-freeze";
    assert!(
        ha.containers(2).is_empty(),
        "nothing of the project on the witness"
    );
    assert!(
        ha.nodes[2]
            .docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .any(|n| n == lease),
        "the witness holds a lease container"
    );
    let old_term = leads(&drovers[l]).unwrap();
    drovers[l].signal("STOP");
    let frozen = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let mut n = 0;
    wait(
        &others.iter().map(|&i| &drovers[i]).collect::<Vec<_>>(),
        UP,
        "a new leader",
        || {
            n = others
                .iter()
                .copied()
                .find(|&i| leads(&drovers[i]).is_some())
                .unwrap_or(0);
            leads(&drovers[n]).is_some() && n != l
        },
    );
    let took = frozen.elapsed();
    let new_term = leads(&drovers[n]).unwrap();
    eprintln!("leader frozen: new leader acting after {took:?}");
    assert!(took <= TAKEOVER_BOUND, "takeover took {took:?}");
    assert!(new_term > old_term);
    // Work for whoever acts: a replica removed on each node that runs some.
    for i in 0..2 {
        if let Some((name, _, _)) = ha.containers(i).first() {
            ha.nodes[i].docker_ok(&["rm", "-f", name]);
        }
    }
    let before = changes(&drovers[l]);
    drovers[l].signal("CONT");
    let all: Vec<&Drover> = drovers.iter().collect();
    wait(&all, UP, "every slot running once again", || {
        ha.each_slot_once(&[0, 1, 2], 3)
    });
    wait(
        &all,
        UP,
        "the resumed drover says it lost the lease",
        || leads(&drovers[l]).is_none(),
    );
    // More work after it resumed: still only the new leader acts.
    let (name, _, _) = ha
        .containers(0)
        .first()
        .cloned()
        .expect("a replica on node 0");
    ha.nodes[0].docker_ok(&["rm", "-f", &name]);
    wait(&all, UP, "the slot back", || {
        ha.each_slot_once(&[0, 1, 2], 3)
    });
    drovers[l].assert_alive();
    assert_eq!(
        changes(&drovers[l]),
        before,
        "the resumed old leader created, started or removed nothing:\n{}",
        drovers[l].logs().join("\n")
    );
    assert!(leads(&drovers[l]).is_none());
    assert_eq!(leads(&drovers[n]), Some(new_term));
    for i in 0..3 {
        for (name, _, term) in ha.containers(i) {
            assert!(term <= new_term, "{name} has term {term}");
        }
    }
    assert!(ha.containers(2).is_empty(), "still nothing on the witness");
}

#[test]
fn the_leader_partitioned_into_a_minority_stops_and_the_majority_takes_over() {
    let ha = Ha::new("ha-part", three("ha-p", 177), 6);
    let (drovers, l) = settle(&ha, 6);
    let old_term = leads(&drovers[l]).unwrap();
    let all: Vec<&Drover> = drovers.iter().collect();
    wait(&all, UP, "2 replicas per node", || {
        (0..3).all(|i| ha.running_on(i) == 2)
    });
    let before_cut = changes(&drovers[l]);
    ha.nodes[l].partition();
    let cut = Instant::now();
    let mut stopped = Duration::ZERO;
    wait(&all, UP, "the cut-off leader stops acting", || {
        stopped = cut.elapsed();
        leads(&drovers[l]).is_none()
    });
    eprintln!("leader partitioned: it stopped acting after {stopped:?}");
    // The ttl is 2 s; the slack covers the log line's way here on a loaded machine. A
    // leader that kept acting without its majority would not stop at all.
    assert!(stopped <= STOP_BOUND, "{stopped:?}");
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let mut n = 0;
    wait(&all, UP, "a leader on the majority side", || {
        match others
            .iter()
            .copied()
            .find(|&i| leads(&drovers[i]).is_some())
        {
            Some(i) => {
                n = i;
                true
            }
            None => false,
        }
    });
    eprintln!("majority side leading after {:?}", cut.elapsed());
    let new_term = leads(&drovers[n]).unwrap();
    assert!(new_term > old_term);
    wait(&all, UP, "6 running on the majority side", || {
        ha.each_slot_once(&others, 6)
    });
    // Heal: exactly one leader (the newer term), each slot once where the majority side
    // put it (the old node's copies removed), and the old leader did nothing from the cut
    // on: it saw the other nodes down before its lease ran out, but its lease never showed
    // a majority answering after that, so it moved none of their replicas.
    ha.nodes[l].heal();
    wait(
        &all,
        UP,
        "healed: each slot once, on the majority side",
        || ha.each_slot_once(&[0, 1, 2], 6) && ha.each_slot_once(&others, 6),
    );
    wait(&all, UP, "exactly one leader", || {
        drovers.iter().filter(|d| leads(d).is_some()).count() == 1
    });
    assert_eq!(leads(&drovers[n]), Some(new_term));
    assert_eq!(
        changes(&drovers[l]),
        before_cut,
        "the cut-off leader changed nothing from the cut on:\n{}",
        drovers[l].logs().join("\n")
    );
}
