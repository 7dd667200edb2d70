//! `deploy.mode: global` and node availability (pause, drain) over several nodes: table
//! cases and seeded randomized runs that apply each plan as the engines would, with time
//! passing, and check the invariants after every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::tests::{container, project, snapshot, svc, t0};
use super::*;
use crate::config::{Availability, Constraint, ConstraintField, DeployMode, UpdateConfig};
use crate::labels::LABEL_GENERATION;
use crate::observe::State;

/// Nodes with their state, availability, labels and containers; plans are applied to it
/// as the engines would apply them (a new container runs at once).
struct Cluster {
    names: Vec<String>,
    states: Vec<NodeState>,
    availability: Vec<Availability>,
    labels: Vec<BTreeMap<String, String>>,
    snaps: Vec<Snapshot>,
    now: SystemTime,
    next: u64,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Cluster {
            names: (1..=n).map(|i| format!("n{i}")).collect(),
            states: vec![NodeState::Up; n],
            availability: vec![Availability::Active; n],
            labels: vec![BTreeMap::new(); n],
            snaps: vec![snapshot(vec![]); n],
            now: t0(),
            next: 0,
        }
    }

    fn idx(&self, node: &str) -> usize {
        self.names.iter().position(|n| n == node).expect("node")
    }

    fn set(&mut self, node: &str, a: Availability) {
        let i = self.idx(node);
        self.availability[i] = a;
    }

    fn label(&mut self, node: &str, k: &str, v: &str) {
        let i = self.idx(node);
        self.labels[i].insert(k.into(), v.into());
    }

    fn input<'a>(&'a self, p: &'a Project, views: &'a [NodeView<'a>]) -> Input<'a> {
        type Empty = (Backoff, BackoffConfig, BTreeSet<String>, mesh::Pushed);
        static EMPTY: std::sync::OnceLock<Empty> = std::sync::OnceLock::new();
        let (backoff, backoff_cfg, none, pushed) = EMPTY.get_or_init(Default::default);
        Input {
            project: p,
            nodes: views,
            backoff,
            backoff_cfg,
            now: self.now,
            exclude: None,
            pushed,
            rebalance: false,
            halted: none,
            updating: none,
        }
    }

    fn views(&self) -> Vec<NodeView<'_>> {
        (0..self.names.len())
            .map(|i| NodeView {
                name: &self.names[i],
                state: self.states[i],
                availability: self.availability[i],
                labels: &self.labels[i],
                snapshot: &self.snaps[i],
                groups: None,
            })
            .collect()
    }

    fn plan(&self, p: &Project) -> Plan {
        let views = self.views();
        plan(&self.input(p, &views))
    }

    fn states(&self, p: &Project) -> Vec<crate::telemetry::ServiceStateRecord> {
        let views = self.views();
        let input = self.input(p, &views);
        let none = BTreeSet::new();
        let rollouts = state::Rollouts {
            halted: &none,
            rolled_back: &none,
            updating: &none,
        };
        state::services(&input, &plan(&input), &rollouts)
    }

    fn put(&mut self, node: &str, service: &str, slot: u32, hash: &str) -> String {
        self.next += 1;
        let mut c = container(
            &format!("c{}", self.next),
            service,
            slot,
            State::Running,
            hash,
        );
        c.node = node.to_string();
        c.created = Some(self.now);
        c.labels
            .insert(LABEL_GENERATION.into(), (1_000 + self.next).to_string());
        let id = c.id.clone();
        let i = self.idx(node);
        self.snaps[i].containers.push(c);
        id
    }

    fn find(&mut self, id: &str) -> Option<&mut crate::observe::Container> {
        self.snaps
            .iter_mut()
            .flat_map(|s| s.containers.iter_mut())
            .find(|c| c.id == id)
    }

    fn drop_container(&mut self, id: &str) {
        for s in &mut self.snaps {
            s.containers.retain(|c| c.id != id);
        }
    }

    /// Apply `plan` as the engines would; time passes by one second.
    fn apply(&mut self, p: &Project, plan: &Plan) {
        for a in &plan.actions {
            let container = a.target.container().unwrap_or_default().to_string();
            let hash = |s: &str| p.services[s].config_hash.clone();
            match (&a.kind, &a.target) {
                (Kind::CreateNetwork | Kind::CreateVolume, _) => {}
                (Kind::Create, Target::Slot { service, slot, .. }) => {
                    self.put(&a.node, service, *slot, &hash(service));
                }
                (Kind::StartFirst { to }, Target::Slot { service, slot, .. }) => {
                    self.put(to, service, *slot, &hash(service));
                }
                (Kind::Recreate { to }, Target::Slot { service, slot, .. }) => {
                    self.drop_container(&container);
                    self.put(to, service, *slot, &hash(service));
                }
                (Kind::Start { .. } | Kind::Restart, _) => {
                    let now = self.now;
                    let c = self.find(&container).expect("container");
                    c.state = State::Running;
                    c.started_at = Some(now);
                }
                (Kind::Remove, _) => self.drop_container(&container),
                _ => panic!("unexpected action {a}"),
            }
        }
        self.now += Duration::from_secs(1);
    }

    /// Running containers of `service` on `node` (every node when `None`).
    fn running(&self, service: &str, node: Option<&str>) -> usize {
        self.snaps
            .iter()
            .zip(&self.names)
            .filter(|(_, n)| node.is_none_or(|want| want == n.as_str()))
            .flat_map(|(s, _)| s.containers.iter())
            .filter(|c| c.service() == Some(service) && c.state == State::Running)
            .count()
    }

    /// Plan and apply until a pass has nothing to do, checking `each` after every pass.
    fn settle(&mut self, p: &Project, mut each: impl FnMut(&Cluster, &Plan)) -> usize {
        for pass in 0..200 {
            let plan = self.plan(p);
            if plan.actions.is_empty() && plan.requeue_after.is_none() {
                return pass;
            }
            self.apply(p, &plan);
            each(self, &plan);
        }
        panic!("no convergence in 200 passes");
    }
}

fn global(name: &str) -> Service {
    let mut s = svc(name, 1);
    s.mode = DeployMode::Global;
    s
}

fn constraint(field: ConstraintField, equal: bool, value: &str) -> Constraint {
    Constraint {
        field,
        equal,
        value: value.into(),
    }
}

fn slots_on(c: &Cluster, service: &str) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (s, n) in c.snaps.iter().zip(&c.names) {
        for x in s.containers.iter().filter(|x| x.service() == Some(service)) {
            out.entry(n.clone()).or_default().push(x.slot().unwrap());
        }
    }
    out
}

#[test]
fn a_global_service_runs_one_replica_on_each_node_its_constraints_allow() {
    let mut agent = global("agent");
    agent.placement.constraints.push(constraint(
        ConstraintField::NodeLabel("zone".into()),
        true,
        "a",
    ));
    let p = project(vec![agent]);
    let mut c = Cluster::new(4);
    c.label("n1", "zone", "a");
    c.label("n2", "zone", "b");
    c.label("n3", "zone", "a");
    c.label("n4", "zone", "a");
    c.set("n4", Availability::Pause);
    let plan = c.plan(&p);
    let made: Vec<String> = plan.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        made,
        [
            "create agent slot 1 on n1 (missing)",
            "create agent slot 3 on n3 (missing)"
        ],
        "one per node, its slot the node's position; none on zone b or the paused node"
    );
    c.apply(&p, &plan);
    assert!(c.plan(&p).is_empty(), "stable");
    let s = &c.states(&p)[0];
    assert_eq!((s.desired, s.running), (2, 2));
    let nodes: Vec<_> = s.replicas.iter().map(|r| r.node.clone().unwrap()).collect();
    assert_eq!(nodes, ["n1", "n3"]);
    // max_replicas_per_node and the count mean nothing to a global service.
    let mut p2 = p.clone();
    let a = p2.services.get_mut("agent").unwrap();
    a.placement.max_replicas_per_node = Some(0);
    a.replicas = 7;
    assert!(c.plan(&p2).is_empty());
}

#[test]
fn a_global_service_on_one_engine_is_one_replica() {
    let p = project(vec![global("agent")]);
    let mut c = Cluster::new(1);
    assert_eq!(c.settle(&p, |_, _| {}), 1);
    assert_eq!(slots_on(&c, "agent")["n1"], [1]);
}

#[test]
fn a_node_that_joins_gets_its_replica_and_one_that_is_down_gets_none_elsewhere() {
    let p = project(vec![global("agent"), svc("web", 2)]);
    let mut c = Cluster::new(3);
    c.states[2] = NodeState::Down;
    c.settle(&p, |_, _| {});
    assert_eq!(c.running("agent", None), 2);
    // n2 goes down: its web replica moves, its agent is not replaced anywhere.
    c.states[1] = NodeState::Down;
    let plan = c.plan(&p);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.target.service() == Some("web")),
        "{:?}",
        plan.actions
    );
    c.apply(&p, &plan);
    c.settle(&p, |_, _| {});
    assert_eq!(c.running("agent", Some("n1")), 1);
    assert_eq!(c.running("agent", Some("n3")), 0);
    let s = c.states(&p);
    assert_eq!(s[0].desired, 1, "desired: the nodes up that fit");
    // n3 joins (a node that was never up): it gets its own slot.
    c.states[2] = NodeState::Up;
    let plan = c.plan(&p);
    let agent: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| a.target.service() == Some("agent"))
        .map(|a| a.to_string())
        .collect();
    assert_eq!(agent, ["create agent slot 3 on n3 (missing)"]);
    c.apply(&p, &plan);
    // n2 returns with its replica: nothing to do for the agent.
    c.states[1] = NodeState::Up;
    let plan = c.plan(&p);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.target.service() != Some("agent")),
        "{:?}",
        plan.actions
    );
    c.settle(&p, |_, _| {});
    assert_eq!(
        slots_on(&c, "agent"),
        BTreeMap::from([
            ("n1".to_string(), vec![1]),
            ("n2".to_string(), vec![2]),
            ("n3".to_string(), vec![3]),
        ])
    );
}

#[test]
fn a_global_replica_belongs_to_its_node_whatever_its_slot_label() {
    // Created when n3 was the list's third node; a node before it was removed since.
    let p = project(vec![global("agent")]);
    let mut c = Cluster::new(2);
    c.put("n1", "agent", 1, "hash-agent");
    c.put("n2", "agent", 3, "hash-agent");
    assert!(c.plan(&p).is_empty(), "{:?}", c.plan(&p).actions);
    // A second copy on one node (the same slot or not): one of them is removed (the
    // older placement, as for two copies of a slot).
    c.put("n1", "agent", 4, "hash-agent");
    let plan = c.plan(&p);
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert_eq!(plan.actions[0].kind, Kind::Remove);
    assert_eq!(plan.actions[0].node, "n1");
    c.apply(&p, &plan);
    assert_eq!(c.running("agent", Some("n1")), 1);
    assert!(c.plan(&p).is_empty());
}

#[test]
fn a_node_that_no_longer_fits_loses_its_global_replica() {
    let mut agent = global("agent");
    agent
        .placement
        .constraints
        .push(constraint(ConstraintField::NodeName, false, "n2"));
    let p = project(vec![agent]);
    let mut c = Cluster::new(3);
    c.put("n1", "agent", 1, "hash-agent");
    c.put("n2", "agent", 2, "hash-agent");
    c.put("n3", "agent", 3, "hash-agent");
    let plan = c.plan(&p);
    let lines: Vec<String> = plan.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("remove agent slot 2"), "{lines:?}");
    assert_eq!(plan.actions[0].reason, Some(Reason::Misplaced));
    c.apply(&p, &plan);
    // Drained: removed too (nowhere else to go), reason drained.
    c.set("n3", Availability::Drain);
    let plan = c.plan(&p);
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert_eq!(plan.actions[0].kind, Kind::Remove);
    assert_eq!(plan.actions[0].node, "n3");
    assert_eq!(plan.actions[0].reason, Some(Reason::Drained));
    c.apply(&p, &plan);
    assert!(c.plan(&p).is_empty());
    assert_eq!(c.states(&p)[0].desired, 1);
}

#[test]
fn a_paused_node_keeps_its_replicas_restarts_them_in_place_and_takes_nothing_new() {
    let p = project(vec![svc("web", 3), global("agent")]);
    let mut c = Cluster::new(3);
    c.settle(&p, |_, _| {});
    c.set("n2", Availability::Pause);
    assert!(c.plan(&p).is_empty(), "pause moves nothing");
    // Its web replica crashes: restarted where it is.
    let id = c.snaps[1]
        .containers
        .iter()
        .find(|x| x.service() == Some("web"))
        .unwrap()
        .id
        .clone();
    c.find(&id).unwrap().state = State::Exited;
    c.find(&id).unwrap().finished_at = Some(c.now - Duration::from_secs(1));
    let plan = c.plan(&p);
    assert_eq!(plan.actions.len(), 1);
    assert!(matches!(plan.actions[0].kind, Kind::Start { .. }));
    c.apply(&p, &plan);
    // Scale up: nothing new on n2.
    let mut p6 = p.clone();
    p6.services.get_mut("web").unwrap().replicas = 7;
    let plan = c.plan(&p6);
    assert!(!plan.actions.is_empty());
    assert!(plan.actions.iter().all(|a| a.node != "n2"), "{plan:?}");
    c.settle(&p6, |_, _| {});
    assert_eq!(c.running("web", Some("n2")), 1);
    assert_eq!(c.running("web", None), 7);
    // Its agent is removed by hand: not replaced there while paused.
    let agent = c.snaps[1]
        .containers
        .iter()
        .find(|x| x.service() == Some("agent"))
        .unwrap()
        .id
        .clone();
    c.drop_container(&agent);
    assert!(c.plan(&p6).is_empty());
    // Active again: it gets its agent back, in its own slot.
    c.set("n2", Availability::Active);
    let plan = c.plan(&p6);
    let lines: Vec<String> = plan.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(lines, ["create agent slot 2 on n2 (missing)"]);
}

#[test]
fn draining_moves_replicas_start_first_within_the_update_budget() {
    for parallelism in [1u32, 2, 0] {
        let mut web = svc("web", 6);
        web.update = UpdateConfig {
            parallelism,
            monitor: Duration::from_secs(3),
            ..UpdateConfig::default()
        };
        let p = project(vec![web, global("agent")]);
        let mut c = Cluster::new(3);
        c.settle(&p, |_, _| {});
        // Let everything settle past its monitor period.
        c.now += Duration::from_secs(10);
        assert_eq!(c.running("web", Some("n1")), 2);
        c.set("n1", Availability::Drain);
        let first = c.plan(&p);
        let moves: Vec<&Action> = first
            .actions
            .iter()
            .filter(|a| a.target.service() == Some("web"))
            .collect();
        let budget = if parallelism == 0 {
            2
        } else {
            parallelism as usize
        };
        assert_eq!(moves.len(), budget.min(2), "parallelism {parallelism}");
        for m in &moves {
            assert_eq!(m.node, "n1");
            assert!(
                matches!(&m.kind, Kind::StartFirst { to } if to != "n1"),
                "{m}"
            );
            assert_eq!(m.reason, Some(Reason::Drained));
        }
        let mut in_flight_max = 0;
        c.apply(&p, &first);
        c.settle(&p, |c, plan| {
            assert!(
                c.running("web", None) >= 6,
                "parallelism {parallelism}: below target during the drain"
            );
            let moving = plan
                .actions
                .iter()
                .filter(|a| matches!(a.kind, Kind::StartFirst { .. }))
                .count();
            in_flight_max = in_flight_max.max(moving);
        });
        assert!(in_flight_max <= budget, "{in_flight_max} > {budget}");
        assert_eq!(c.running("web", Some("n1")), 0);
        assert_eq!(c.running("agent", Some("n1")), 0);
        assert_eq!(c.running("web", None), 6);
        assert!(c.snaps[0].containers.is_empty(), "nothing left on n1");
    }
}

#[test]
fn a_drained_replica_with_nowhere_to_go_is_removed_and_unplaceable() {
    let mut db = svc("db", 1);
    db.placement
        .constraints
        .push(constraint(ConstraintField::NodeName, true, "n1"));
    let p = project(vec![db]);
    let mut c = Cluster::new(2);
    c.settle(&p, |_, _| {});
    c.now += Duration::from_secs(10);
    c.set("n1", Availability::Drain);
    let plan = c.plan(&p);
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].kind, Kind::Remove);
    assert_eq!(plan.actions[0].reason, Some(Reason::Drained));
    assert!(
        plan.unplaced[0].reason.contains("n1 is drained"),
        "{:?}",
        plan.unplaced
    );
    c.apply(&p, &plan);
    let plan = c.plan(&p);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(c.states(&p)[0].state, "unplaceable");
}

/// A tiny deterministic generator (no dependencies): xorshift.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random clusters (2 to 5 nodes, zone labels), a replicated and a global service with a
/// random constraint; converge, then pause and drain random nodes (one stays active):
/// no replicated service ever runs fewer than its target while nodes drain, nothing new
/// lands on a paused node, nothing stays on a drained one, and the global service ends with
/// exactly one replica on each node that fits.
#[test]
fn randomized_pause_and_drain_keep_targets_and_global_counts() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = 2 + rng.below(4) as usize;
        let mut c = Cluster::new(n);
        for i in 0..n {
            let zone = ["a", "b"][rng.below(2) as usize];
            let name = c.names[i].clone();
            c.label(&name, "zone", zone);
        }
        let mut web = svc("web", 1 + rng.below(8) as u32);
        web.update.parallelism = rng.below(3) as u32;
        web.update.monitor = Duration::from_secs(rng.below(4));
        let mut agent = global("agent");
        if rng.below(2) == 0 {
            agent.placement.constraints.push(constraint(
                ConstraintField::NodeLabel("zone".into()),
                true,
                "a",
            ));
        }
        let p = project(vec![web, agent.clone()]);
        c.settle(&p, |_, _| {});
        c.now += Duration::from_secs(10);
        let target = p.services["web"].replicas as usize;
        assert_eq!(c.running("web", None), target, "seed {seed}");
        let keep = c.names[rng.below(n as u64) as usize].clone();
        for i in 0..n {
            if c.names[i] != keep {
                c.availability[i] = [
                    Availability::Active,
                    Availability::Pause,
                    Availability::Drain,
                ][rng.below(3) as usize];
            }
        }
        let before: Vec<usize> = (0..n)
            .map(|i| c.running("web", Some(&c.names[i].clone())))
            .collect();
        c.settle(&p, |c, _| {
            assert!(
                c.running("web", None) >= target,
                "seed {seed}: below target during the drain"
            );
        });
        for (i, before) in before.iter().enumerate() {
            let name = c.names[i].clone();
            let web_here = c.running("web", Some(&name));
            let agent_here = c.running("agent", Some(&name));
            let fits = crate::plan::global::fits(&agent, &name, &c.labels[i], c.availability[i]);
            match c.availability[i] {
                Availability::Drain => {
                    assert_eq!(web_here + agent_here, 0, "seed {seed}: {name} drained")
                }
                Availability::Pause => {
                    assert!(web_here <= *before, "seed {seed}: new on paused {name}");
                    assert_eq!(agent_here, usize::from(fits), "seed {seed}: {name}");
                }
                Availability::Active => {
                    assert_eq!(agent_here, usize::from(fits), "seed {seed}: {name}")
                }
            }
        }
        assert_eq!(c.running("web", None), target, "seed {seed}");
        let s = c.states(&p);
        let agent_state = s.iter().find(|s| s.service == "agent").unwrap();
        assert_eq!(
            agent_state.desired as usize,
            c.running("agent", None),
            "seed {seed}"
        );
    }
}
