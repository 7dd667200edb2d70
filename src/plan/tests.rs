use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{DependsCondition, DependsOn, Network, RestartCondition, RestartPolicy};
use crate::labels::{
    LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT,
};
use crate::observe::{Health, State};

pub(super) const P: &str = "demo";

pub(super) fn svc(name: &str, replicas: u32) -> Service {
    Service {
        name: name.into(),
        replicas,
        image: "drover-test/busybox:latest".into(),
        command: None,
        entrypoint: None,
        environment: BTreeMap::new(),
        labels: BTreeMap::new(),
        ports: vec![],
        volumes: vec![],
        networks: BTreeMap::from([("default".to_string(), Default::default())]),
        healthcheck: None,
        restart: RestartPolicy::default(),
        stop_signal: None,
        stop_grace_period: Duration::from_secs(10),
        user: None,
        working_dir: None,
        hostname: None,
        depends_on: BTreeMap::new(),
        container_name: None,
        mode: Default::default(),
        placement: Default::default(),
        update: Default::default(),
        rollback: Default::default(),
        unhealthy: Default::default(),
        backoff: Default::default(),
        config_hash: format!("hash-{name}"),
        digest: None,
        options: Default::default(),
    }
}

pub(super) fn project(services: Vec<Service>) -> Project {
    Project {
        name: P.into(),
        working_dir: "/tmp".into(),
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        networks: BTreeMap::from([(
            "default".to_string(),
            Network {
                name: format!("{P}_default"),
                driver: None,
                external: false,
                labels: BTreeMap::new(),
                options: Default::default(),
            },
        )]),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
        configs: BTreeMap::new(),
        mesh: None,
    }
}

pub(super) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(super) fn container(id: &str, service: &str, slot: u32, state: State, hash: &str) -> Container {
    Container {
        id: format!("{id:0<64}"),
        node: "n1".into(),
        name: format!("{P}-{service}-{slot}"),
        labels: HashMap::from([
            (LABEL_PROJECT.to_string(), P.to_string()),
            (LABEL_SERVICE.to_string(), service.to_string()),
            (LABEL_SLOT.to_string(), slot.to_string()),
            (LABEL_CONFIG_HASH.to_string(), hash.to_string()),
        ])
        .into(),
        state,
        health: Default::default(),
        created: Some(t0() - Duration::from_secs(100)),
        exit_code: (state == State::Exited).then_some(137),
        started_at: Some(t0() - Duration::from_secs(100)),
        finished_at: (state == State::Exited).then_some(t0() - Duration::from_secs(99)),
        anonymous_volumes: Vec::new(),
        published: Vec::new(),
        addresses: Default::default(),
    }
}

fn running(id: &str, service: &str, slot: u32) -> Container {
    container(
        id,
        service,
        slot,
        State::Running,
        &format!("hash-{service}"),
    )
}

pub(super) fn snapshot(containers: Vec<Container>) -> Snapshot {
    Snapshot {
        containers,
        networks: [format!("{P}_default")].into(),
        volumes: Default::default(),
        infra_listed: true,
        duplicate_networks: vec![],
    }
}

fn run_plan(p: &Project, s: &Snapshot, b: &Backoff) -> Plan {
    let labels = BTreeMap::new();
    let nodes = [NodeView {
        name: "n1",
        state: NodeState::Up,
        availability: Default::default(),
        labels: &labels,
        snapshot: s,
        groups: None,
    }];
    plan(&Input {
        project: p,
        nodes: &nodes,
        backoff: b,
        backoff_cfg: &BackoffConfig::default(),
        now: t0(),
        exclude: None,
        pushed: &Default::default(),
        rebalance: false,
        halted: &BTreeSet::new(),
        updating: &BTreeSet::new(),
    })
}

/// What an engine would look like after executing the plan without errors.
fn apply(p: &Project, s: &Snapshot, plan: &Plan, next_id: &mut u64) -> Snapshot {
    let mut out = s.clone();
    let mut new = |service: &str, slot: u32, node: &str| {
        *next_id += 1;
        let mut c = running(&format!("n{next_id}"), service, slot);
        c.node = node.to_string();
        c.labels.insert(
            LABEL_CONFIG_HASH.into(),
            p.services[service].config_hash.clone(),
        );
        c.labels
            .insert(LABEL_GENERATION.into(), (1_000 + *next_id).to_string());
        c
    };
    for a in &plan.actions {
        let container = a.target.container().unwrap_or_default();
        match (&a.kind, &a.target) {
            (Kind::CreateNetwork, Target::Network { name, .. }) => {
                out.networks.insert(name.clone());
            }
            (Kind::CreateVolume, Target::Volume { name, .. }) => {
                out.volumes.insert(name.clone());
            }
            (Kind::RemoveNetwork, Target::NetworkId { id, .. }) => {
                out.duplicate_networks.retain(|d| &d.id != id);
            }
            (Kind::Create, Target::Slot { service, slot, .. }) => {
                out.containers.push(new(service, *slot, &a.node))
            }
            (Kind::Start { .. }, _) => {
                let c = out
                    .containers
                    .iter_mut()
                    .find(|c| c.id == container)
                    .unwrap();
                c.state = State::Running;
            }
            (Kind::Recreate { to }, Target::Slot { service, slot, .. }) => {
                out.containers.retain(|c| c.id != container);
                out.containers.push(new(service, *slot, to));
            }
            (Kind::Remove, _) => out.containers.retain(|c| c.id != container),
            (Kind::Restart | Kind::Ambassador { .. } | Kind::Routes { .. }, _) => {}
            (Kind::StartFirst { to }, Target::Slot { service, slot, .. }) => {
                out.containers.push(new(service, *slot, to))
            }
            _ => panic!("malformed action {a:?}"),
        }
    }
    out
}

fn count(s: &Snapshot, service: &str) -> usize {
    s.containers
        .iter()
        .filter(|c| c.service() == Some(service) && c.owned_by(P))
        .count()
}

#[test]
fn brings_up_services_in_dependency_order_with_infrastructure_first() {
    let mut web = svc("web", 2);
    web.depends_on.insert(
        "db".into(),
        DependsOn {
            condition: DependsCondition::ServiceStarted,
            required: true,
        },
    );
    let p = project(vec![web, svc("db", 1)]);
    let mut s = snapshot(vec![]);
    s.networks.clear();
    let plan = run_plan(&p, &s, &Backoff::default());
    let names: Vec<String> = plan.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        names,
        vec![
            "create network demo_default on n1",
            "create db slot 1 on n1 (missing)",
            "create web slot 1 on n1 (missing)",
            "create web slot 2 on n1 (missing)",
        ]
    );
}

#[test]
fn nothing_to_do_when_everything_runs() {
    let p = project(vec![svc("web", 2)]);
    let s = snapshot(vec![running("a", "web", 1), running("b", "web", 2)]);
    assert!(run_plan(&p, &s, &Backoff::default()).is_empty());
}

#[test]
fn scale_up_fills_lowest_free_slots_and_scale_down_removes_highest() {
    let p = project(vec![svc("web", 4)]);
    let s = snapshot(vec![running("a", "web", 2), running("b", "web", 5)]);
    let plan = run_plan(&p, &s, &Backoff::default());
    let slots: Vec<u32> = plan
        .actions
        .iter()
        .filter_map(|a| a.target.slot())
        .collect();
    assert_eq!(slots, vec![1, 3]);

    let p = project(vec![svc("web", 1)]);
    let s = snapshot(vec![
        running("a", "web", 1),
        running("b", "web", 2),
        running("c", "web", 3),
    ]);
    let plan = run_plan(&p, &s, &Backoff::default());
    let removed: Vec<(u32, Reason)> = plan
        .actions
        .iter()
        .map(|a| (a.target.slot().unwrap(), a.reason.unwrap()))
        .collect();
    assert_eq!(
        removed,
        vec![(3, Reason::ScaleDown), (2, Reason::ScaleDown)]
    );
}

#[test]
fn exited_container_is_restarted_in_place_at_once() {
    let p = project(vec![svc("web", 1)]);
    let s = snapshot(vec![container("a", "web", 1, State::Exited, "hash-web")]);
    let plan = run_plan(&p, &s, &Backoff::default());
    assert_eq!(
        plan.actions,
        vec![Action::start(
            "web",
            1,
            "n1",
            format!("{:0<64}", "a"),
            false,
            Reason::Exited
        )]
    );
}

#[test]
fn restart_no_job_that_exits_zero_stays_exited_and_on_failure_restarts_non_zero() {
    let mut job = svc("job", 1);
    job.restart.condition = RestartCondition::Never;
    let mut worker = svc("worker", 1);
    worker.restart.condition = RestartCondition::OnFailure;
    let p = project(vec![job, worker]);
    let mut done = container("a", "job", 1, State::Exited, "hash-job");
    done.exit_code = Some(0);
    let mut ok = container("b", "worker", 1, State::Exited, "hash-worker");
    ok.exit_code = Some(0);
    let plan = run_plan(&p, &snapshot(vec![done.clone(), ok]), &Backoff::default());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.stopped.len(), 2);

    let mut failed = container("b", "worker", 1, State::Exited, "hash-worker");
    failed.exit_code = Some(3);
    let plan = run_plan(&p, &snapshot(vec![done, failed]), &Backoff::default());
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].target.service(), Some("worker"));
}

#[test]
fn crash_loop_backs_off_and_a_long_run_resets_it() {
    let p = project(vec![svc("web", 1)]);
    let mut b = Backoff::default();
    for _ in 0..3 {
        b.attempted("web", 1, false);
    }
    // Died just now after a 1 s run: third quick death waits initial * 2^2 = 4 s.
    let mut c = container("a", "web", 1, State::Exited, "hash-web");
    c.started_at = Some(t0() - Duration::from_secs(1));
    c.finished_at = Some(t0());
    let plan = run_plan(&p, &snapshot(vec![c.clone()]), &b);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.waits.len(), 1);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(4)));

    // The same death after a long run restarts at once and resets the history.
    c.started_at = Some(t0() - Duration::from_secs(3600));
    let plan = run_plan(&p, &snapshot(vec![c]), &b);
    assert!(matches!(
        plan.actions.as_slice(),
        [Action {
            kind: Kind::Start { reset: true },
            ..
        }]
    ));
}

#[test]
fn max_attempts_gives_up() {
    let mut web = svc("web", 1);
    web.restart.max_attempts = Some(2);
    let p = project(vec![web]);
    let mut b = Backoff::default();
    b.attempted("web", 1, false);
    b.attempted("web", 1, false);
    let mut c = container("a", "web", 1, State::Exited, "hash-web");
    c.finished_at = Some(t0() - Duration::from_secs(3600));
    c.started_at = c.finished_at;
    let plan = run_plan(&p, &snapshot(vec![c]), &b);
    assert!(plan.actions.is_empty());
    assert!(plan.stopped[0].gave_up);
}

#[test]
fn changed_definition_recreates_one_container_at_a_time() {
    let p = project(vec![svc("web", 3)]);
    let old = |id, n| container(id, "web", n, State::Running, "old");
    let mut s = snapshot(vec![old("a", 1), old("b", 2), old("c", 3)]);
    let mut next = 0;
    for pass in 1..=3 {
        let plan = run_plan(&p, &s, &Backoff::default());
        assert_eq!(plan.actions.len(), 1, "pass {pass}: {:?}", plan.actions);
        assert_eq!(plan.actions[0].target.slot(), Some(pass));
        assert_eq!(plan.actions[0].reason, Some(Reason::ConfigChanged));
        s = apply(&p, &s, &plan, &mut next);
    }
    assert!(run_plan(&p, &s, &Backoff::default()).is_empty());
}

#[test]
fn removed_service_and_duplicates_are_removed_but_foreign_containers_never_touched() {
    let p = project(vec![svc("web", 1)]);
    let mut foreign = running("f", "web", 1);
    foreign.labels.remove(LABEL_PROJECT);
    let mut other_project = running("o", "web", 2);
    other_project
        .labels
        .insert(LABEL_PROJECT.into(), "other".into());
    let mut dup = container("d", "web", 1, State::Exited, "hash-web");
    dup.started_at = None;
    let s = snapshot(vec![
        foreign,
        other_project,
        running("a", "web", 1),
        dup,
        running("g", "gone", 1),
    ]);
    let plan = run_plan(&p, &s, &Backoff::default());
    let got: Vec<(String, Reason)> = plan
        .actions
        .iter()
        .map(|a| {
            (
                a.target.container().unwrap()[..1].to_string(),
                a.reason.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("g".to_string(), Reason::ServiceRemoved),
            ("d".to_string(), Reason::Duplicate)
        ]
    );
}

#[test]
fn own_container_is_never_acted_on() {
    let p = project(vec![svc("web", 0)]);
    let me = running("me", "web", 1);
    let s = snapshot(vec![me.clone()]);
    let labels = BTreeMap::new();
    let nodes = [NodeView {
        name: "n1",
        state: NodeState::Up,
        availability: Default::default(),
        labels: &labels,
        snapshot: &s,
        groups: None,
    }];
    let plan = plan(&Input {
        project: &p,
        nodes: &nodes,
        backoff: &Backoff::default(),
        backoff_cfg: &BackoffConfig::default(),
        now: t0(),
        exclude: Some(&me.id[..12]),
        pushed: &Default::default(),
        rebalance: false,
        halted: &BTreeSet::new(),
        updating: &BTreeSet::new(),
    });
    assert!(plan.is_empty());
}

#[test]
fn failed_create_waits_for_its_backoff() {
    let p = project(vec![svc("web", 1)]);
    let mut b = Backoff::default();
    b.failed(&BackoffConfig::default(), "web", 1, None, t0());
    let plan = run_plan(&p, &snapshot(vec![]), &b);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
}

/// A small deterministic generator, so the property tests need no extra crate and
/// every failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_world(rng: &mut Rng) -> (Project, Snapshot) {
    let names = ["web", "db", "cache"];
    let mut services = vec![];
    for name in names.iter().take(1 + rng.below(3) as usize) {
        let mut s = svc(name, rng.below(5) as u32);
        s.restart.condition = match rng.below(3) {
            0 => RestartCondition::Never,
            1 => RestartCondition::OnFailure,
            _ => RestartCondition::Always,
        };
        services.push(s);
    }
    let p = project(services);
    let states = [
        State::Running,
        State::Exited,
        State::Created,
        State::Dead,
        State::Paused,
    ];
    let mut containers = vec![];
    for i in 0..rng.below(12) {
        let service = ["web", "db", "cache", "gone"][rng.below(4) as usize];
        let state = states[rng.below(states.len() as u64) as usize];
        let hash = if rng.below(4) == 0 {
            "old".to_string()
        } else {
            format!("hash-{service}")
        };
        let mut c = container(
            &format!("c{i:02}x"),
            service,
            1 + rng.below(6) as u32,
            state,
            &hash,
        );
        c.exit_code = Some(rng.below(2) as i64);
        match rng.below(5) {
            0 => {
                c.labels.remove(LABEL_PROJECT);
            }
            1 => {
                c.labels.insert(LABEL_PROJECT.into(), "other".into());
            }
            _ => {}
        }
        containers.push(c);
    }
    (p, snapshot(containers))
}

#[test]
fn property_plans_never_exceed_targets_and_never_touch_foreign_containers() {
    for seed in 1..3000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (p, s) = random_world(&mut rng);
        let plan = run_plan(&p, &s, &Backoff::default());
        for a in &plan.actions {
            if let Some(id) = a.target.container() {
                let c = s.containers.iter().find(|c| c.id == id).unwrap();
                assert!(c.owned_by(P), "seed {seed}: foreign container in {a}");
            }
        }
        let mut next = 0;
        let after = apply(&p, &s, &plan, &mut next);
        for (name, svc) in &p.services {
            let before = count(&s, name);
            let now = count(&after, name);
            assert!(
                now <= (svc.replicas as usize).max(before),
                "seed {seed}: {name} went from {before} to {now} over target {}",
                svc.replicas
            );
            assert!(
                now <= svc.replicas as usize,
                "seed {seed}: {name} above target"
            );
        }
        // Foreign containers are all still there, unchanged.
        for c in s.containers.iter().filter(|c| !c.owned_by(P)) {
            assert!(after.containers.contains(c), "seed {seed}: foreign changed");
        }
    }
}

#[test]
fn property_applying_plans_converges_and_then_plans_nothing() {
    for seed in 1..3000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let (p, mut s) = random_world(&mut rng);
        let mut next = 0;
        let mut first = true;
        let mut passes = 0;
        loop {
            let plan = run_plan(&p, &s, &Backoff::default());
            if plan.is_empty() {
                break;
            }
            // Without outdated containers one pass must be enough.
            let rolling = plan
                .actions
                .iter()
                .any(|a| a.reason == Some(Reason::ConfigChanged));
            assert!(
                first || rolling,
                "seed {seed}: second pass still acts: {:?}",
                plan.actions
            );
            s = apply(&p, &s, &plan, &mut next);
            first = false;
            passes += 1;
            assert!(passes <= 8, "seed {seed}: no convergence");
        }
        for (name, svc) in &p.services {
            let live = s
                .containers
                .iter()
                .filter(|c| c.owned_by(P) && c.service() == Some(name.as_str()))
                .count();
            assert_eq!(live, svc.replicas as usize, "seed {seed}: {name}");
        }
    }
}

// ---- several nodes ---------------------------------------------------------------

struct World {
    names: Vec<&'static str>,
    states: Vec<NodeState>,
    labels: Vec<BTreeMap<String, String>>,
    snaps: Vec<Snapshot>,
}

impl World {
    fn new(names: &[&'static str]) -> World {
        World {
            names: names.to_vec(),
            states: vec![NodeState::Up; names.len()],
            labels: vec![BTreeMap::new(); names.len()],
            snaps: vec![snapshot(vec![]); names.len()],
        }
    }

    fn idx(&self, node: &str) -> usize {
        self.names.iter().position(|n| *n == node).unwrap()
    }

    fn put(&mut self, node: &str, mut c: Container, generation: u64) {
        c.node = node.to_string();
        c.labels
            .insert(LABEL_GENERATION.into(), generation.to_string());
        let i = self.idx(node);
        self.snaps[i].containers.push(c);
    }

    fn plan(&self, p: &Project, rebalance: bool) -> Plan {
        self.plan_reusing(p, rebalance, None)
    }

    /// Every service's state from `plan` over this world (as a full pass works it out).
    fn service_states(
        &self,
        p: &Project,
        plan: &Plan,
    ) -> Vec<crate::telemetry::ServiceStateRecord> {
        let mut records = BTreeMap::new();
        self.record_states(p, plan, &mut records);
        records.into_values().collect()
    }

    /// Each service's state from `plan` over this world, in `records` (the last pass's),
    /// as a pass records them: worked out again for the services planned in full, at the
    /// slots planned for those patched, and kept for those replayed.
    fn record_states(
        &self,
        p: &Project,
        plan: &Plan,
        records: &mut BTreeMap<String, crate::telemetry::ServiceStateRecord>,
    ) {
        let views: Vec<NodeView> = (0..self.names.len())
            .map(|i| NodeView {
                name: self.names[i],
                state: self.states[i],
                availability: Default::default(),
                labels: &self.labels[i],
                snapshot: &self.snaps[i],
                groups: None,
            })
            .collect();
        let none = BTreeSet::new();
        let rollouts = state::Rollouts {
            halted: &none,
            rolled_back: &none,
            updating: &none,
        };
        let input = Input {
            project: p,
            nodes: &views,
            backoff: &Backoff::default(),
            backoff_cfg: &BackoffConfig::default(),
            now: t0(),
            exclude: None,
            pushed: &Default::default(),
            rebalance: false,
            halted: &none,
            updating: &none,
        };
        let whole = state::services(&input, plan, &rollouts);
        records.retain(|name, _| plan.replayed.contains(name) || plan.patched.contains_key(name));
        records.extend(whole.into_iter().map(|s| (s.service.clone(), s)));
        state::patch(&input, plan, &rollouts, records);
    }

    fn plan_reusing(&self, p: &Project, rebalance: bool, reuse: Option<Reuse>) -> Plan {
        let views: Vec<NodeView> = (0..self.names.len())
            .map(|i| NodeView {
                name: self.names[i],
                state: self.states[i],
                availability: Default::default(),
                labels: &self.labels[i],
                snapshot: &self.snaps[i],
                groups: None,
            })
            .collect();
        plan_reusing(
            &Input {
                project: p,
                nodes: &views,
                backoff: &Backoff::default(),
                backoff_cfg: &BackoffConfig::default(),
                now: t0(),
                exclude: None,
                pushed: &Default::default(),
                rebalance,
                halted: &BTreeSet::new(),
                updating: &BTreeSet::new(),
            },
            reuse,
        )
    }

    /// The containers that are not in `before` as they are now, by service, with the node
    /// that holds each (see [`Named`]); `None` when such a container has no service or is
    /// gone (as a pass that cannot attribute a change plans everything).
    fn changed_since(&self, before: &[Snapshot]) -> Option<Named> {
        let (now, then): (Vec<&Container>, Vec<&Container>) = (
            self.snaps.iter().flat_map(|s| &s.containers).collect(),
            before.iter().flat_map(|s| &s.containers).collect(),
        );
        let mut out = Named::new();
        for c in now.iter().filter(|c| !then.contains(c)) {
            let held = out.entry(c.service()?.to_string()).or_default();
            held.push((c.node.clone(), c.id.clone()));
        }
        for c in then.iter().filter(|c| !now.contains(c)) {
            if !now.iter().any(|n| n.id == c.id) {
                return None;
            }
            out.entry(c.service()?.to_string()).or_default();
        }
        Some(out)
    }

    /// What happens between two passes besides drover's actions, at random: a crash the
    /// events report (a running replica exits), and a copy of a replica appearing on any
    /// node (an old leader's late create, or one run by hand with the project's labels).
    fn disturb(&mut self, rng: &mut Rng, next: &mut u64) {
        if rng.below(3) == 0 {
            let n = rng.below(3) as usize;
            let running: Vec<usize> = (0..self.snaps[n].containers.len())
                .filter(|&i| self.snaps[n].containers[i].state == State::Running)
                .collect();
            if !running.is_empty() {
                let i = running[rng.below(running.len() as u64) as usize];
                let c = &mut self.snaps[n].containers[i];
                c.state = State::Exited;
                c.exit_code = Some(1);
            }
        }
        if rng.below(6) == 0 {
            let from = rng.below(3) as usize;
            if !self.snaps[from].containers.is_empty() {
                let i = rng.below(self.snaps[from].containers.len() as u64) as usize;
                let mut c = self.snaps[from].containers[i].clone();
                *next += 1;
                c.id = format!("copy{next}");
                let node = ["n1", "n2", "n3"][rng.below(3) as usize];
                let generation = rng.below(4);
                self.put(node, c, generation);
            }
        }
    }

    /// Apply a plan as the engines would, creating containers on the named nodes.
    fn apply(&mut self, p: &Project, plan: &Plan, next: &mut u64) {
        for a in &plan.actions {
            let container = a.target.container().unwrap_or_default();
            match (&a.kind, &a.target) {
                (Kind::Create, Target::Slot { service, slot, .. }) => {
                    *next += 1;
                    let mut c = running(&format!("z{next}"), service, *slot);
                    c.labels.insert(
                        LABEL_CONFIG_HASH.into(),
                        p.services[service].config_hash.clone(),
                    );
                    self.put(&a.node, c, 1_000 + *next);
                }
                (Kind::Recreate { to }, Target::Slot { service, slot, .. }) => {
                    for s in &mut self.snaps {
                        s.containers.retain(|c| c.id != container);
                    }
                    *next += 1;
                    let mut c = running(&format!("z{next}"), service, *slot);
                    c.labels.insert(
                        LABEL_CONFIG_HASH.into(),
                        p.services[service].config_hash.clone(),
                    );
                    self.put(to, c, 1_000 + *next);
                }
                (Kind::Remove, _) => {
                    for s in &mut self.snaps {
                        s.containers.retain(|c| c.id != container);
                    }
                }
                (Kind::StartFirst { to }, Target::Slot { service, slot, .. }) => {
                    *next += 1;
                    let mut c = running(&format!("z{next}"), service, *slot);
                    c.labels.insert(
                        LABEL_CONFIG_HASH.into(),
                        p.services[service].config_hash.clone(),
                    );
                    self.put(to, c, 1_000 + *next);
                }
                (Kind::Start { .. }, _) => {
                    for s in &mut self.snaps {
                        for c in &mut s.containers {
                            if c.id == container {
                                c.state = State::Running;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn per_node(&self, service: &str) -> Vec<usize> {
        self.snaps
            .iter()
            .map(|s| {
                s.containers
                    .iter()
                    .filter(|c| c.service() == Some(service))
                    .count()
            })
            .collect()
    }

    fn converge(&mut self, p: &Project, rebalance: bool) -> usize {
        let mut next = 0;
        for pass in 0..20 {
            let plan = self.plan(p, rebalance);
            if plan.actions.is_empty() {
                return pass;
            }
            self.apply(p, &plan, &mut next);
        }
        panic!("no convergence");
    }
}

#[test]
fn replicas_spread_evenly_over_nodes() {
    let p = project(vec![svc("web", 6), svc("db", 1)]);
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.converge(&p, false);
    assert_eq!(w.per_node("web"), vec![2, 2, 2]);
    // The lone db goes where there is least else: all equal, so the first by name.
    assert_eq!(w.per_node("db").iter().sum::<usize>(), 1);
}

#[test]
fn a_down_nodes_slots_move_to_the_others_and_come_back_exactly_once() {
    let p = project(vec![svc("web", 6)]);
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.converge(&p, false);
    let before: BTreeSet<u32> = w.snaps[2]
        .containers
        .iter()
        .filter_map(|c| c.slot())
        .collect();

    w.states[2] = NodeState::Down;
    let plan = w.plan(&p, false);
    let moved: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| a.target.slot())
        .collect();
    assert_eq!(moved, before, "exactly the lost slots are recreated");
    assert!(plan.actions.iter().all(|a| a.node != "n3"));
    let mut next = 100;
    w.apply(&p, &plan, &mut next);
    assert_eq!(w.per_node("web")[..2].iter().sum::<usize>(), 6);

    // The node returns with its old copies running: they are older, so they go.
    w.states[2] = NodeState::Up;
    let plan = w.plan(&p, false);
    assert_eq!(plan.actions.len(), 2, "{:?}", plan.actions);
    assert!(plan.actions.iter().all(|a| matches!(
        a,
        Action { kind: Kind::Remove, node, reason: Some(Reason::Stale), .. } if node == "n3"
    )));
    w.apply(&p, &plan, &mut next);
    assert_eq!(w.per_node("web"), vec![3, 3, 0]);
    assert!(w.plan(&p, false).is_empty());
}

#[test]
fn an_old_copy_keeps_serving_until_the_new_one_runs() {
    let p = project(vec![svc("web", 1)]);
    let mut w = World::new(&["n1", "n2"]);
    w.put("n1", running("old", "web", 1), 10);
    w.put(
        "n2",
        container("new", "web", 1, State::Created, "hash-web"),
        20,
    );
    let plan = w.plan(&p, false);
    // Start the new copy; do not remove the old one yet.
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert!(
        matches!(&plan.actions[0], Action { kind: Kind::Start { .. }, node, .. } if node == "n2")
    );
}

#[test]
fn of_two_copies_of_a_slot_the_higher_lease_term_wins_whatever_the_clocks_say() {
    use crate::labels::LABEL_TERM;
    let p = project(vec![svc("web", 1)]);
    let mut w = World::new(&["n1", "n2"]);
    // The current leader (term 7) placed slot 1 on n1. An old leader (term 6), back from
    // a freeze, had a create in flight: it landed on n2 later, with a later generation.
    let mut current = running("current", "web", 1);
    current.labels.insert(LABEL_TERM.into(), "7".into());
    w.put("n1", current, 100);
    let mut late = running("late", "web", 1);
    late.labels.insert(LABEL_TERM.into(), "6".into());
    w.put("n2", late, 200);
    let plan = w.plan(&p, false);
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert!(
        matches!(
            &plan.actions[0],
            Action { kind: Kind::Remove, node, reason: Some(Reason::Stale), .. } if node == "n2"
        ),
        "the old term's copy goes: {:?}",
        plan.actions
    );
    // Without terms (no lease), the later placement wins as before.
    let mut w = World::new(&["n1", "n2"]);
    w.put("n1", running("a", "web", 1), 100);
    w.put("n2", running("b", "web", 1), 200);
    let plan = w.plan(&p, false);
    assert!(matches!(
        &plan.actions[..],
        [Action { kind: Kind::Remove, node, .. }] if node == "n1"
    ));
}

#[test]
fn frozen_nodes_count_but_are_not_acted_on() {
    let p = project(vec![svc("web", 2)]);
    let mut w = World::new(&["n1", "n2"]);
    w.put("n1", running("a", "web", 1), 1);
    w.put("n2", container("b", "web", 2, State::Exited, "hash-web"), 1);
    w.states[1] = NodeState::Frozen;
    let plan = w.plan(&p, false);
    assert!(plan.is_empty(), "{:?}", plan.actions);
}

#[test]
fn constraints_and_max_per_node_are_honoured_and_the_rest_reported() {
    use crate::config::{Constraint, ConstraintField};
    let mut web = svc("web", 4);
    web.placement.constraints.push(Constraint {
        field: ConstraintField::NodeLabel("zone".into()),
        equal: true,
        value: "a".into(),
    });
    web.placement.max_replicas_per_node = Some(1);
    let p = project(vec![web]);
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.labels[0].insert("zone".into(), "a".into());
    w.labels[1].insert("zone".into(), "a".into());
    w.labels[2].insert("zone".into(), "b".into());
    let plan = w.plan(&p, false);
    let nodes: Vec<&str> = plan.actions.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert_eq!(plan.unplaced.len(), 2);
    assert!(plan.unplaced[0].reason.contains("max_replicas_per_node"));
}

#[test]
fn spread_preference_balances_label_values_first() {
    let mut web = svc("web", 4);
    web.placement.spread.push("zone".into());
    let p = project(vec![web]);
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.labels[0].insert("zone".into(), "a".into());
    w.labels[1].insert("zone".into(), "a".into());
    w.labels[2].insert("zone".into(), "b".into());
    w.converge(&p, false);
    // Two per zone: zone b's single node takes two.
    assert_eq!(w.per_node("web"), vec![1, 1, 2]);
}

#[test]
fn a_placement_change_moves_only_the_misplaced_replicas_one_at_a_time() {
    use crate::config::{Constraint, ConstraintField};
    let p = project(vec![svc("web", 4)]);
    let mut w = World::new(&["n1", "n2"]);
    w.converge(&p, false);
    let mut web = svc("web", 4);
    web.placement.constraints.push(Constraint {
        field: ConstraintField::NodeName,
        equal: false,
        value: "n2".into(),
    });
    let p = project(vec![web]);
    let plan = w.plan(&p, false);
    assert_eq!(plan.actions.len(), 1);
    assert!(matches!(
        &plan.actions[0],
        Action { kind: Kind::Recreate { to }, node, reason: Some(Reason::Misplaced), .. }
            if node == "n2" && to == "n1"
    ));
    w.converge(&p, false);
    assert_eq!(w.per_node("web"), vec![4, 0]);
}

#[test]
fn rebalance_moves_start_first_towards_an_even_spread_only_when_enabled() {
    let p = project(vec![svc("web", 4)]);
    let mut w = World::new(&["n1", "n2"]);
    for n in 1..=4 {
        w.put("n1", running(&format!("r{n}"), "web", n), n as u64);
    }
    assert!(w.plan(&p, false).is_empty(), "off by default");
    let plan = w.plan(&p, true);
    assert!(matches!(
        plan.actions.as_slice(),
        [Action {
            kind: Kind::Create,
            node,
            reason: Some(Reason::Rebalance),
            target: Target::Slot { slot: 4, .. },
        }] if node == "n2"
    ));
    w.converge(&p, true);
    assert_eq!(w.per_node("web"), vec![2, 2]);
}

#[test]
fn property_many_nodes_never_touch_foreign_or_down_and_converge() {
    for seed in 1..1500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (p, base) = random_world(&mut rng);
        let mut w = World::new(&["n1", "n2", "n3"]);
        for (i, c) in base.containers.into_iter().enumerate() {
            let node = ["n1", "n2", "n3"][rng.below(3) as usize];
            let generation = rng.below(3);
            let _ = i;
            w.put(node, c, generation);
        }
        let states = [NodeState::Up, NodeState::Frozen, NodeState::Down];
        w.states[2] = states[rng.below(3) as usize];
        let plan = w.plan(&p, rng.below(2) == 0);
        for a in &plan.actions {
            assert_eq!(
                w.states[w.idx(&a.node)],
                NodeState::Up,
                "seed {seed}: acts on a node that is not up: {a}"
            );
            if let Kind::Recreate { to } = &a.kind {
                assert_eq!(w.states[w.idx(to)], NodeState::Up, "seed {seed}: {a}");
            }
            if let Some(id) = a.target.container() {
                let c = w
                    .snaps
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .find(|c| c.id == id)
                    .unwrap();
                assert!(c.owned_by(P), "seed {seed}: foreign container in {a}");
            }
        }
        // With every node up, the world converges to exactly the targets.
        w.states = vec![NodeState::Up; 3];
        w.converge(&p, false);
        for (name, svc) in &p.services {
            let live: usize = w.per_node(name).iter().sum::<usize>()
                - w.snaps
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .filter(|c| c.service() == Some(name) && !c.owned_by(P))
                    .count();
            assert_eq!(live, svc.replicas as usize, "seed {seed}: {name}");
        }
    }
}

/// Taking the quiet services of the last plan when only other services' containers
/// changed, and planning a settled service only at the slots whose containers changed,
/// gives the plan a full pass would: over random worlds on three nodes, with dependencies,
/// each step of the convergence, after random crashes and after stray copies appear. A
/// replayed service's state (what status shows, not worked out again) is the one a full
/// pass gives.
#[test]
fn property_a_plan_that_reuses_quiet_services_is_the_full_plan() {
    let (mut replays, mut patched, mut reopened) = (0, 0, 0);
    for seed in 1..1500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 3);
        let (mut p, base) = random_world(&mut rng);
        let names: Vec<String> = p.services.keys().cloned().collect();
        if names.len() > 1 && rng.below(2) == 0 {
            let condition = [
                DependsCondition::ServiceStarted,
                DependsCondition::ServiceHealthy,
                DependsCondition::ServiceCompletedSuccessfully,
            ][rng.below(3) as usize];
            let dependent = p.services.get_mut(&names[1]).unwrap();
            dependent.depends_on.insert(
                names[0].clone(),
                DependsOn {
                    condition,
                    required: true,
                },
            );
        }
        let mut w = World::new(&["n1", "n2", "n3"]);
        for c in base.containers {
            let node = ["n1", "n2", "n3"][rng.below(3) as usize];
            let generation = rng.below(3);
            w.put(node, c, generation);
        }
        let mut next = 0;
        let mut last = w.plan(&p, false);
        let mut last_states = w.service_states(&p, &last);
        let mut before = w.snaps.clone();
        for step in 0..12 {
            w.disturb(&mut rng, &mut next);
            let full = w.plan(&p, false);
            if let Some(mut named) = w.changed_since(&before) {
                if rng.below(4) == 0 {
                    // A container named that did not change (a pass inspects those it
                    // acted on, whatever became of them).
                    let n = rng.below(3) as usize;
                    let cs = &w.snaps[n].containers;
                    if let Some(c) = cs.get(rng.below(cs.len().max(1) as u64) as usize)
                        && let Some(service) = c.service()
                    {
                        let held = named.entry(service.to_string()).or_default();
                        held.push((c.node.clone(), c.id.clone()));
                    }
                }
                let reuse = Reuse {
                    quiet: &last.quiet,
                    named: &named,
                };
                let mut reused = w.plan_reusing(&p, false, Some(reuse));
                // What status shows, worked out from the last pass's at the slots the
                // patches planned, is what a full pass works out.
                let mut records: BTreeMap<String, _> = (last_states.iter())
                    .map(|s| (s.service.clone(), s.clone()))
                    .collect();
                w.record_states(&p, &reused, &mut records);
                let full_states = w.service_states(&p, &full);
                assert_eq!(
                    records.values().collect::<Vec<_>>(),
                    full_states.iter().collect::<Vec<_>>(),
                    "seed {seed}, step {step}: the states"
                );
                for name in std::mem::take(&mut reused.patched).into_keys() {
                    patched += 1;
                    reopened += usize::from(!last.quiet[&name].open().is_empty());
                }
                let now_states = w.service_states(&p, &full);
                for name in std::mem::take(&mut reused.replayed) {
                    replays += 1;
                    assert!(!named.contains_key(&name), "seed {seed}: {name} changed");
                    assert_eq!(
                        now_states.iter().find(|s| s.service == name),
                        last_states.iter().find(|s| s.service == name),
                        "seed {seed}, step {step}: the state of replayed {name}"
                    );
                }
                // What the full plan keeps of each service (the open slots included) is
                // what reusing keeps.
                assert_eq!(reused, full, "seed {seed}, step {step}: changed {named:?}");
            }
            before = w.snaps.clone();
            last_states = w.service_states(&p, &full);
            w.apply(&p, &full, &mut next);
            last = full;
        }
    }
    assert!(
        replays > 1000 && patched > 300 && reopened > 100,
        "only {replays} services replayed, {patched} patched, {reopened} at slots acted on: \
         the property says little"
    );
}

/// A burst names many containers of one service: each is found through an index of the
/// service's containers (not by a search among all of them each), and the patch is the
/// full plan: every crashed slot restarted in place, the others left alone.
#[test]
fn a_burst_is_patched_at_its_crashed_slots_as_a_full_plan_would_plan_them() {
    let p = project(vec![svc("web", 30)]);
    let mut w = World::new(&["n1", "n2", "n3"]);
    for n in 1..=30u32 {
        let node = ["n1", "n2", "n3"][(n % 3) as usize];
        w.put(node, running(&format!("r{n}x"), "web", n), n as u64);
    }
    let last = w.plan(&p, false);
    assert!(last.is_empty());
    let before = w.snaps.clone();
    for s in &mut w.snaps {
        for c in s
            .containers
            .iter_mut()
            .filter(|c| c.slot().unwrap() % 2 == 0)
        {
            c.state = State::Exited;
            c.exit_code = Some(1);
        }
    }
    let named = w.changed_since(&before).unwrap();
    assert_eq!(named["web"].len(), 15);
    let reuse = Reuse {
        quiet: &last.quiet,
        named: &named,
    };
    let mut patched = w.plan_reusing(&p, false, Some(reuse));
    let held = patched.patched.remove("web").expect("patched");
    assert_eq!(held.len(), 15);
    let full = w.plan(&p, false);
    assert_eq!(patched, full);
    assert_eq!(full.actions.len(), 15);
    assert!(
        full.actions
            .iter()
            .all(|a| matches!(a.kind, Kind::Start { .. }))
    );
}

/// A slot that waits out its crash backoff is planned again when the wait ends, though no
/// event names its container: the pass a timer wakes patches it, as a full pass would
/// plan it, and every other slot keeps what it decided.
#[test]
fn a_slot_waiting_out_its_backoff_is_planned_again_when_the_wait_ends() {
    let p = project(vec![svc("web", 3)]);
    let mut b = Backoff::default();
    for _ in 0..3 {
        b.attempted("web", 2, false);
    }
    let mut dead = container("b", "web", 2, State::Exited, "hash-web");
    dead.started_at = Some(t0() - Duration::from_secs(1));
    dead.finished_at = Some(t0());
    let s = snapshot(vec![running("a", "web", 1), dead, running("c", "web", 3)]);
    let labels = BTreeMap::new();
    let nodes = [NodeView {
        name: "n1",
        state: NodeState::Up,
        availability: Default::default(),
        labels: &labels,
        snapshot: &s,
        groups: None,
    }];
    let (none, cfg, pushed) = (
        BTreeSet::new(),
        BackoffConfig::default(),
        Default::default(),
    );
    let at = |now: SystemTime| Input {
        project: &p,
        nodes: &nodes,
        backoff: &b,
        backoff_cfg: &cfg,
        now,
        exclude: None,
        pushed: &pushed,
        rebalance: false,
        halted: &none,
        updating: &none,
    };
    let first = plan(&at(t0()));
    assert!(first.actions.is_empty());
    assert_eq!(first.waits.len(), 1);
    let open: Vec<u32> = first.quiet["web"].open().iter().map(|h| h.slot).collect();
    assert_eq!(open, vec![2], "the waiting slot is open");

    let later = t0() + Duration::from_secs(5);
    let named = Named::new();
    let reuse = Reuse {
        quiet: &first.quiet,
        named: &named,
    };
    let mut patched = plan_reusing(&at(later), Some(reuse));
    let held = patched
        .patched
        .remove("web")
        .expect("patched, not planned in full");
    assert_eq!(held.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![2]);
    let full = plan(&at(later));
    assert_eq!(patched, full);
    assert!(matches!(
        full.actions.as_slice(),
        [Action {
            kind: Kind::Start { .. },
            target: Target::Slot { slot: 2, .. },
            ..
        }]
    ));
}

// ---- lifecycle -------------------------------------------------------------------

fn healthchecked(name: &str, replicas: u32) -> Service {
    let mut s = svc(name, replicas);
    s.healthcheck = Some(crate::config::Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
        start_interval: None,
    });
    s
}

#[test]
fn an_unhealthy_replica_is_restarted_and_a_healthy_one_left_alone() {
    let p = project(vec![healthchecked("web", 2)]);
    let mut sick = running("a", "web", 1);
    sick.health = Health::Unhealthy;
    let mut fine = running("b", "web", 2);
    fine.health = Health::Healthy;
    let plan = run_plan(&p, &snapshot(vec![sick, fine]), &Backoff::default());
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert!(matches!(
        &plan.actions[0],
        Action {
            kind: Kind::Restart,
            reason: Some(Reason::Unhealthy),
            target: Target::Slot { slot: 1, .. },
            ..
        }
    ));

    let mut ignoring = healthchecked("web", 1);
    ignoring.unhealthy = crate::config::UnhealthyAction::Ignore;
    let p = project(vec![ignoring]);
    let mut sick = running("a", "web", 1);
    sick.health = Health::Unhealthy;
    assert!(run_plan(&p, &snapshot(vec![sick]), &Backoff::default()).is_empty());
}

#[test]
fn scale_down_removes_not_running_then_unhealthy_then_outdated_first() {
    let p = project(vec![healthchecked("web", 2)]);
    let exited = container("a", "web", 1, State::Exited, "hash-web");
    let mut sick = running("b", "web", 2);
    sick.health = Health::Unhealthy;
    let old = container("c", "web", 3, State::Running, "old");
    let good = running("d", "web", 4);
    let mut fine = running("e", "web", 5);
    fine.health = Health::Healthy;
    let plan = run_plan(
        &p,
        &snapshot(vec![exited, sick, old, good, fine]),
        &Backoff::default(),
    );
    let removed: Vec<u32> = plan
        .actions
        .iter()
        .filter(|a| a.reason == Some(Reason::ScaleDown))
        .filter_map(|a| a.target.slot())
        .collect();
    assert_eq!(removed, vec![1, 2, 3]);
}

#[test]
fn service_healthy_dependency_gates_creation() {
    let mut web = svc("web", 1);
    web.depends_on.insert(
        "db".into(),
        DependsOn {
            condition: DependsCondition::ServiceHealthy,
            required: true,
        },
    );
    let p = project(vec![web, healthchecked("db", 1)]);
    let mut db = running("a", "db", 1);
    db.health = Health::Starting;
    let plan = run_plan(&p, &snapshot(vec![db.clone()]), &Backoff::default());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.blocked.len(), 1);
    db.health = Health::Healthy;
    let plan = run_plan(&p, &snapshot(vec![db]), &Backoff::default());
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].target.service(), Some("web"));
}

#[test]
fn rolling_update_respects_parallelism_monitor_and_start_first() {
    let mut web = svc("web", 6);
    web.update.parallelism = 2;
    web.update.order = crate::config::UpdateOrder::StartFirst;
    let p = project(vec![web]);
    let old: Vec<Container> = (1..=6)
        .map(|n| container(&format!("o{n}"), "web", n, State::Running, "old"))
        .collect();
    let plan = run_plan(&p, &snapshot(old.clone()), &Backoff::default());
    let firsts: Vec<u32> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.kind, Kind::StartFirst { .. }))
        .filter_map(|a| a.target.slot())
        .collect();
    assert_eq!(firsts, vec![1, 2]);

    // Two new copies just created (monitor not over): nothing more starts, and the old
    // copies of those slots go because the new ones run.
    let mut s = old;
    for n in 1..=2 {
        let mut c = running(&format!("n{n}"), "web", n);
        c.labels.insert(LABEL_GENERATION.into(), "99".into());
        c.created = Some(t0() - Duration::from_secs(1));
        s.push(c);
    }
    let plan = run_plan(&p, &snapshot(s), &Backoff::default());
    let kinds: Vec<(&str, u32)> = plan
        .actions
        .iter()
        .map(|a| (a.name(), a.target.slot().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("remove", 1), ("remove", 2)]);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(4)));
}

#[test]
fn a_replica_with_anonymous_volumes_is_updated_stop_first_even_when_start_first_is_asked() {
    let mut web = svc("web", 2);
    web.update.parallelism = 2;
    web.update.order = crate::config::UpdateOrder::StartFirst;
    let p = project(vec![web]);
    let mut with_data = container("o1", "web", 1, State::Running, "old");
    with_data.anonymous_volumes = vec![crate::observe::VolumeMount {
        name: "f".repeat(64),
        destination: "/data".into(),
    }];
    let without = container("o2", "web", 2, State::Running, "old");
    let plan = run_plan(&p, &snapshot(vec![with_data, without]), &Backoff::default());
    let kinds: Vec<(&str, u32)> = plan
        .actions
        .iter()
        .map(|a| (a.name(), a.target.slot().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("recreate", 1), ("start-first", 2)]);
}

#[test]
fn a_single_replica_whose_update_fails_fails_the_update_while_it_is_watched() {
    let mut web = svc("web", 1);
    web.update.failure_action = crate::config::FailureAction::Rollback;
    let p = project(vec![web]);
    let mut broken = container("n1", "web", 1, State::Exited, "hash-web");
    broken.exit_code = Some(1);
    broken.finished_at = Some(t0());
    let s = snapshot(vec![broken]);
    let labels = BTreeMap::new();
    let nodes = [NodeView {
        name: "n1",
        state: NodeState::Up,
        availability: Default::default(),
        labels: &labels,
        snapshot: &s,
        groups: None,
    }];
    let plan_with = |updating: &BTreeSet<String>| {
        plan(&Input {
            project: &p,
            nodes: &nodes,
            backoff: &Backoff::default(),
            backoff_cfg: &BackoffConfig::default(),
            now: t0(),
            exclude: None,
            pushed: &Default::default(),
            rebalance: false,
            halted: &BTreeSet::new(),
            updating,
        })
    };
    // No old replica is left, but the update is being watched: it failed.
    let watched = plan_with(&BTreeSet::from(["web".to_string()]));
    assert_eq!(watched.update_failed.len(), 1, "{watched:?}");
    // A first deploy that crashes is a crash loop, not a failed update.
    let first = plan_with(&BTreeSet::new());
    assert!(first.update_failed.is_empty());
    assert_eq!(first.actions[0].name(), "start");
}

#[test]
fn an_update_settles_once_every_new_replica_has_run_for_monitor() {
    let web = svc("web", 2);
    let p = project(vec![web]);
    let updating = BTreeSet::from(["web".to_string()]);
    let mut young = running("n1", "web", 1);
    young.created = Some(t0() - Duration::from_secs(2));
    let old_enough = running("n2", "web", 2);
    let s = snapshot(vec![young.clone(), old_enough.clone()]);
    let labels = BTreeMap::new();
    let settled = |s: &Snapshot| {
        let nodes = [NodeView {
            name: "n1",
            state: NodeState::Up,
            availability: Default::default(),
            labels: &labels,
            snapshot: s,
            groups: None,
        }];
        plan(&Input {
            project: &p,
            nodes: &nodes,
            backoff: &Backoff::default(),
            backoff_cfg: &BackoffConfig::default(),
            now: t0(),
            exclude: None,
            pushed: &Default::default(),
            rebalance: false,
            halted: &BTreeSet::new(),
            updating: &updating,
        })
        .settled
    };
    assert!(settled(&s).is_empty(), "monitor (5 s) not over for slot 1");
    young.created = Some(t0() - Duration::from_secs(5));
    let s = snapshot(vec![young.clone(), old_enough.clone()]);
    assert!(
        settled(&s).is_empty(),
        "creation times are truncated to the second"
    );
    young.created = Some(t0() - Duration::from_secs(6));
    assert_eq!(settled(&snapshot(vec![young, old_enough])), vec!["web"]);
}

#[test]
fn a_failed_update_triggers_its_failure_action() {
    let mut web = svc("web", 3);
    web.update.failure_action = crate::config::FailureAction::Rollback;
    let p = project(vec![web]);
    let mut s = vec![
        container("o2", "web", 2, State::Running, "old"),
        container("o3", "web", 3, State::Running, "old"),
    ];
    let mut broken = container("n1", "web", 1, State::Exited, "hash-web");
    broken.exit_code = Some(1);
    broken.finished_at = Some(t0());
    s.push(broken);
    let mut b = Backoff::default();
    b.attempted("web", 1, false);
    let plan = run_plan(&p, &snapshot(s), &b);
    assert_eq!(plan.update_failed.len(), 1);
    assert_eq!(
        plan.update_failed[0].action,
        crate::config::FailureAction::Rollback
    );
    assert!(
        plan.actions
            .iter()
            .all(|a| a.reason != Some(Reason::ConfigChanged)),
        "no further update steps: {:?}",
        plan.actions
    );
}

#[test]
fn restart_window_counts_only_recent_attempts() {
    let mut web = svc("web", 1);
    web.restart.max_attempts = Some(2);
    web.restart.window = Some(Duration::from_secs(10));
    let p = project(vec![web]);
    let mut b = Backoff::default();
    b.attempted("web", 1, false);
    b.attempted("web", 1, false);
    // Ran 20 s (longer than the window, shorter than reset_after): counted afresh.
    let mut c = container("a", "web", 1, State::Exited, "hash-web");
    c.started_at = Some(t0() - Duration::from_secs(120));
    c.finished_at = Some(t0() - Duration::from_secs(100));
    let plan = run_plan(&p, &snapshot(vec![c]), &b);
    assert!(plan.stopped.is_empty(), "{:?}", plan.stopped);
    assert_eq!(plan.actions.len(), 1);
}

#[test]
fn a_repeated_network_name_is_removed_by_id_even_when_nothing_else_changes() {
    let p = project(vec![svc("web", 1)]);
    let mut s = snapshot(vec![running("a", "web", 1)]);
    s.duplicate_networks = vec![crate::observe::NetworkRef {
        id: "b".repeat(64),
        name: format!("{P}_default"),
    }];
    let plan = run_plan(&p, &s, &Backoff::default());
    assert_eq!(
        plan.actions,
        vec![Action::remove_network(
            "n1",
            "b".repeat(64),
            format!("{P}_default")
        )]
    );
    let mut next = 0;
    let after = apply(&p, &s, &plan, &mut next);
    assert!(run_plan(&p, &after, &Backoff::default()).actions.is_empty());
}

#[test]
fn networks_are_needed_only_where_containers_are_created_or_started() {
    let p = project(vec![svc("web", 2)]);
    let b = Backoff::default();
    let labels = BTreeMap::new();
    let plan_for = |s: &Snapshot| {
        let nodes = [NodeView {
            name: "n1",
            state: NodeState::Up,
            availability: Default::default(),
            labels: &labels,
            snapshot: s,
            groups: None,
        }];
        let input = Input {
            project: &p,
            nodes: &nodes,
            backoff: &b,
            backoff_cfg: &BackoffConfig::default(),
            now: t0(),
            exclude: None,
            pushed: &Default::default(),
            rebalance: false,
            halted: &BTreeSet::new(),
            updating: &BTreeSet::new(),
        };
        let plan = plan(&input);
        let unlisted: Vec<String> = unlisted_infra(&input, &plan)
            .into_iter()
            .map(str::to_string)
            .collect();
        (plan, unlisted)
    };
    // Idle: nothing to list.
    let mut idle = snapshot(vec![running("a", "web", 1), running("b", "web", 2)]);
    idle.infra_listed = false;
    idle.networks.clear();
    let (plan, unlisted) = plan_for(&idle);
    assert!(plan.actions.is_empty() && unlisted.is_empty());
    // A replica to create: the node's networks are needed, and without them no network
    // create is planned (it would be a guess).
    let mut short = snapshot(vec![running("a", "web", 1)]);
    short.infra_listed = false;
    short.networks.clear();
    let (plan, unlisted) = plan_for(&short);
    assert_eq!(unlisted, ["n1"]);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a.kind, Kind::CreateNetwork))
    );
    // Listed, and the network is missing: created first.
    short.infra_listed = true;
    let (plan, unlisted) = plan_for(&short);
    assert!(unlisted.is_empty());
    assert!(matches!(plan.actions[0].kind, Kind::CreateNetwork));
}

#[test]
fn a_created_container_whose_start_failed_is_replaced_not_started_again() {
    let p = project(vec![svc("web", 1)]);
    let s = snapshot(vec![container("a", "web", 1, State::Created, "hash-web")]);
    // First time: started in place.
    let plan = run_plan(&p, &s, &Backoff::default());
    assert!(matches!(
        plan.actions[..],
        [Action {
            kind: Kind::Start { .. },
            reason: Some(Reason::NotStarted),
            ..
        }]
    ));
    // Its start failed once (and the backoff delay has passed): a fresh container.
    let mut b = Backoff::default();
    b.failed(
        &BackoffConfig::default(),
        "web",
        1,
        None,
        t0() - Duration::from_secs(3600),
    );
    let plan = run_plan(&p, &s, &b);
    assert!(
        matches!(
            &plan.actions[..],
            [a @ Action { kind: Kind::Recreate { .. }, reason: Some(Reason::NotStarted), .. }]
                if a.target.container() == Some(s.containers[0].id.as_str())
        ),
        "{:?}",
        plan.actions
    );
}

fn with_digest(mut c: Container, digest: &str) -> Container {
    c.labels
        .insert(crate::labels::LABEL_IMAGE_DIGEST.into(), digest.into());
    c
}

#[test]
fn a_pinned_digest_rolls_the_replicas_that_run_another_one_start_first() {
    let mut web = svc("web", 3);
    web.update.order = crate::config::UpdateOrder::StartFirst;
    web.digest = Some("sha256:b".into());
    let p = project(vec![web]);
    let s = vec![
        with_digest(running("a1", "web", 1), "sha256:a"),
        with_digest(running("b2", "web", 2), "sha256:b"),
        running("u3", "web", 3),
    ];
    let plan = run_plan(&p, &snapshot(s), &Backoff::default());
    // parallelism 1: one replica at a time, the unlabelled one counts as another digest.
    assert_eq!(plan.actions.len(), 1);
    let a = &plan.actions[0];
    assert!(matches!(a.kind, Kind::StartFirst { .. }), "{a:?}");
    assert_eq!(
        (a.target.slot(), a.reason),
        (Some(1), Some(Reason::ImageChanged))
    );
}

#[test]
fn without_a_pin_any_digest_runs_the_definition() {
    let p = project(vec![svc("web", 2)]);
    let s = vec![
        with_digest(running("a1", "web", 1), "sha256:a"),
        running("u2", "web", 2),
    ];
    let plan = run_plan(&p, &snapshot(s), &Backoff::default());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
}

#[test]
fn a_digest_whose_rollout_failed_stays_rolled_back_until_the_tag_moves() {
    use crate::config::FailureAction;
    let mut web = svc("web", 2);
    web.update.failure_action = FailureAction::Rollback;
    web.digest = Some("sha256:a".into());
    let running_a = project(vec![web.clone()]);
    let mut h = History::default();
    let mut to_b = running_a.clone();
    to_b.services.get_mut("web").unwrap().digest = Some("sha256:b".into());
    h.reloaded(&running_a, &mut to_b);
    let failed = UpdateFailed {
        service: "web".into(),
        action: FailureAction::Rollback,
        failed: 1,
    };
    let decided = h.update_failed(&mut to_b, &[failed]);
    assert!(matches!(decided[0], Decision::RolledBack { .. }));
    assert_eq!(to_b.services["web"].digest.as_deref(), Some("sha256:a"));
    // The tag still points at b: the service stays on a.
    let mut still_b = running_a.clone();
    still_b.services.get_mut("web").unwrap().digest = Some("sha256:b".into());
    h.reloaded(&to_b, &mut still_b);
    assert_eq!(still_b.services["web"].digest.as_deref(), Some("sha256:a"));
    // The tag moved to c: a new rollout from a.
    let mut to_c = running_a.clone();
    to_c.services.get_mut("web").unwrap().digest = Some("sha256:c".into());
    h.reloaded(&still_b, &mut to_c);
    assert_eq!(to_c.services["web"].digest.as_deref(), Some("sha256:c"));
    assert!(h.updating().contains("web"));
}

#[test]
fn start_first_keeps_the_old_copy_until_the_new_one_has_passed_its_healthcheck() {
    let mut web = healthchecked("web", 1);
    web.update.order = crate::config::UpdateOrder::StartFirst;
    let p = project(vec![web]);
    let mut old = container("o1", "web", 1, State::Running, "old");
    old.health = Health::Healthy;
    let mut new = running("n1", "web", 1);
    new.labels.insert(LABEL_GENERATION.into(), "99".into());
    new.health = Health::Starting;
    let plan = run_plan(
        &p,
        &snapshot(vec![old.clone(), new.clone()]),
        &Backoff::default(),
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    new.health = Health::Healthy;
    let plan = run_plan(&p, &snapshot(vec![old, new]), &Backoff::default());
    let kinds: Vec<(&str, u32)> = plan
        .actions
        .iter()
        .map(|a| (a.name(), a.target.slot().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("remove", 1)]);
}

/// Services reaching each other across nodes: the ambassadors and their routes.
mod mesh_tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;
    use crate::config::{Mesh, Port, Protocol};
    use crate::labels::{LABEL_AMBASSADOR, LABEL_MESH_ADDRESS, LABEL_NODE};
    use crate::mesh::{Proto, Route, Routes};
    use crate::observe::Published;

    const N1: &str = "10.231.1.2";
    const N2: &str = "10.231.2.2";

    /// `web` (no ports) and `db` (5432/tcp, 53/udp exposed) over nodes n1, n2, n3.
    fn mesh_project() -> Project {
        let mut db = svc("db", 1);
        db.ports = vec![Port {
            target: 5432,
            published: None,
            host_ip: None,
            protocol: Protocol::Tcp,
        }];
        db.options.expose = vec!["53/udp".into()];
        db.options.mesh = true;
        db.networks
            .get_mut("default")
            .unwrap()
            .aliases
            .push("database".into());
        let mut p = project(vec![svc("web", 1), db]);
        p.mesh = Some(Mesh {
            image: None,
            addresses: BTreeMap::from([
                ("n1".to_string(), N1.parse().unwrap()),
                ("n2".to_string(), N2.parse().unwrap()),
                ("n3".to_string(), "10.231.3.2".parse().unwrap()),
            ]),
        });
        p
    }

    /// A running `db` replica on `node`, at `ip` on the network, publishing 5432 on
    /// `public` of the node's address.
    fn db_on(id: &str, node: &str, slot: u32, ip: &str, public: u16) -> Container {
        let mut c = running(id, "db", slot);
        c.node = node.into();
        c.addresses
            .insert(format!("{P}_default"), ip.parse().unwrap());
        let address = mesh_project().mesh.unwrap().addresses[node];
        c.labels
            .insert(LABEL_MESH_ADDRESS.into(), address.to_string());
        c.published = vec![
            Published {
                ip: Some(address),
                private: 5432,
                public,
                proto: Proto::Tcp,
            },
            Published {
                ip: Some(address),
                private: 53,
                public: public + 1,
                proto: Proto::Udp,
            },
        ];
        c
    }

    fn ambassador_on(id: &str, node: &str, p: &Project, state: State) -> Container {
        let spec = mesh::ambassadors(p).remove(0);
        let mut c = container(id, "", 0, state, &spec.hash());
        c.node = node.into();
        c.labels = HashMap::from([
            (LABEL_PROJECT.to_string(), P.to_string()),
            (LABEL_AMBASSADOR.to_string(), "default".to_string()),
            (LABEL_CONFIG_HASH.to_string(), spec.hash()),
            (LABEL_NODE.to_string(), node.to_string()),
        ])
        .into();
        c
    }

    fn mesh_plan(
        p: &Project,
        nodes: &[(&str, NodeState, Snapshot)],
        pushed: &mesh::Pushed,
    ) -> Plan {
        mesh_plan_at(p, nodes, pushed, &Backoff::default(), t0())
    }

    fn mesh_plan_at(
        p: &Project,
        nodes: &[(&str, NodeState, Snapshot)],
        pushed: &mesh::Pushed,
        backoff: &Backoff,
        now: SystemTime,
    ) -> Plan {
        let labels = BTreeMap::new();
        let views: Vec<NodeView> = nodes
            .iter()
            .map(|(name, state, s)| NodeView {
                name,
                state: *state,
                availability: Default::default(),
                labels: &labels,
                snapshot: s,
                groups: None,
            })
            .collect();
        plan(&Input {
            project: p,
            nodes: &views,
            backoff,
            backoff_cfg: &BackoffConfig::default(),
            now,
            exclude: None,
            pushed,
            rebalance: false,
            halted: &BTreeSet::new(),
            updating: &BTreeSet::new(),
        })
    }

    fn routes_of(plan: &Plan) -> BTreeMap<String, Routes> {
        plan.actions
            .iter()
            .filter_map(|a| match &a.kind {
                Kind::Routes { routes } => Some((a.node.clone(), (**routes).clone())),
                _ => None,
            })
            .collect()
    }

    fn addr(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
    }

    #[test]
    fn one_ambassador_per_node_and_network_answering_to_the_services_with_ports() {
        let p = mesh_project();
        let specs = mesh::ambassadors(&p);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].network_name, format!("{P}_default"));
        assert_eq!(specs[0].aliases, vec!["db", "database"], "web has no ports");
        let plan = mesh_plan(
            &p,
            &[
                ("n1", NodeState::Up, snapshot(vec![])),
                ("n2", NodeState::Up, snapshot(vec![])),
                ("n3", NodeState::Down, snapshot(vec![])),
            ],
            &Default::default(),
        );
        let made: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| matches!(a.kind, Kind::Ambassador { .. }))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            made,
            vec![
                "ambassador for network default on n1 (missing)",
                "ambassador for network default on n2 (missing)"
            ]
        );
        // Before the services' replicas, so that they find their names answered.
        let first_create = plan
            .actions
            .iter()
            .position(|a| matches!(a.kind, Kind::Create))
            .unwrap();
        let last_ambassador = plan
            .actions
            .iter()
            .rposition(|a| matches!(a.kind, Kind::Ambassador { .. }))
            .unwrap();
        assert!(last_ambassador < first_create, "{:?}", plan.actions);
    }

    #[test]
    fn a_single_node_project_has_no_ambassador_and_loses_an_old_one() {
        let mesh = mesh_project();
        let mut p = mesh.clone();
        p.mesh = None;
        for s in p.services.values_mut() {
            s.options.mesh = false;
        }
        assert!(mesh::ambassadors(&p).is_empty());
        let old = ambassador_on("a1", "n1", &mesh, State::Running);
        let plan = mesh_plan(
            &p,
            &[("n1", NodeState::Up, snapshot(vec![old.clone()]))],
            &Default::default(),
        );
        let remove = plan
            .actions
            .iter()
            .find(|a| a.target.container() == Some(old.id.as_str()))
            .unwrap();
        assert_eq!(remove.name(), "remove");
        assert_eq!(remove.reason, Some(Reason::NotNeeded));
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a.kind, Kind::Ambassador { .. } | Kind::Routes { .. }))
        );
    }

    #[test]
    fn routes_prefer_the_local_replica_and_reach_the_others_through_their_node_address() {
        let p = mesh_project();
        let (a1, a2) = (
            ambassador_on("a1", "n1", &p, State::Running),
            ambassador_on("a2", "n2", &p, State::Running),
        );
        let db1 = db_on("d1", "n2", 1, "172.20.0.5", 32768);
        let nodes = [
            ("n1", NodeState::Up, snapshot(vec![a1.clone()])),
            ("n2", NodeState::Up, snapshot(vec![a2.clone(), db1])),
        ];
        let plan = mesh_plan(&p, &nodes, &Default::default());
        let routes = routes_of(&plan);
        let tcp = |r: &Routes| {
            r.routes
                .iter()
                .find(|r| r.proto == Proto::Tcp)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            tcp(&routes["n1"]),
            Route {
                service: "db".into(),
                proto: Proto::Tcp,
                port: 5432,
                local: vec![],
                remote: vec![addr(N2, 32768)],
            }
        );
        assert_eq!(tcp(&routes["n2"]).local, vec![addr("172.20.0.5", 5432)]);
        assert!(tcp(&routes["n2"]).remote.is_empty());
        // UDP as the service declares it, through its own published port.
        let udp = routes["n1"]
            .routes
            .iter()
            .find(|r| r.proto == Proto::Udp)
            .unwrap();
        assert_eq!((udp.port, udp.remote.clone()), (53, vec![addr(N2, 32769)]));

        // Pushed already: nothing to do.
        let pushed: mesh::Pushed = BTreeMap::from([
            (a1.id.clone(), routes["n1"].clone()),
            (a2.id.clone(), routes["n2"].clone()),
        ]);
        let again = mesh_plan(&p, &nodes, &pushed);
        assert!(
            !again
                .actions
                .iter()
                .any(|a| matches!(a.kind, Kind::Ambassador { .. } | Kind::Routes { .. })),
            "{:?}",
            again.actions
        );
    }

    #[test]
    fn a_replica_on_a_node_that_is_down_leaves_the_routes_and_its_replacement_joins_them() {
        let p = mesh_project();
        let a1 = ambassador_on("a1", "n1", &p, State::Running);
        let a3 = ambassador_on("a3", "n3", &p, State::Running);
        let moved = db_on("d3", "n3", 1, "172.20.0.9", 40000);
        let nodes = [
            ("n1", NodeState::Up, snapshot(vec![a1.clone()])),
            (
                "n2",
                NodeState::Down,
                snapshot(vec![db_on("d1", "n2", 1, "172.20.0.5", 32768)]),
            ),
            ("n3", NodeState::Up, snapshot(vec![a3, moved])),
        ];
        let routes = routes_of(&mesh_plan(&p, &nodes, &Default::default()));
        let tcp = routes["n1"]
            .routes
            .iter()
            .find(|r| r.proto == Proto::Tcp)
            .unwrap();
        assert_eq!(tcp.remote, vec![addr("10.231.3.2", 40000)]);
        assert!(
            !routes.contains_key("n2"),
            "nothing is planned on a node that is down"
        );
    }

    #[test]
    fn scaled_replicas_are_all_routes_and_an_unhealthy_one_is_left_out() {
        let p = mesh_project();
        let a1 = ambassador_on("a1", "n1", &p, State::Running);
        let mut sick = db_on("d4", "n3", 3, "172.20.0.7", 40004);
        sick.health = Health::Unhealthy;
        let nodes = [
            (
                "n1",
                NodeState::Up,
                snapshot(vec![a1, db_on("d1", "n1", 1, "172.20.0.3", 32000)]),
            ),
            (
                "n2",
                NodeState::Up,
                snapshot(vec![db_on("d2", "n2", 2, "172.20.0.5", 32768)]),
            ),
            (
                "n3",
                NodeState::Frozen,
                snapshot(vec![db_on("d3", "n3", 4, "172.20.0.6", 40000), sick]),
            ),
        ];
        let routes = routes_of(&mesh_plan(&p, &nodes, &Default::default()));
        let tcp = routes["n1"]
            .routes
            .iter()
            .find(|r| r.proto == Proto::Tcp)
            .unwrap();
        assert_eq!(tcp.local, vec![addr("172.20.0.3", 5432)]);
        assert_eq!(
            tcp.remote,
            vec![addr(N2, 32768), addr("10.231.3.2", 40000)],
            "a frozen node's replicas still count"
        );
    }

    #[test]
    fn an_exited_or_outdated_ambassador_is_replaced() {
        let p = mesh_project();
        let dead = ambassador_on("a1", "n1", &p, State::Exited);
        let mut old = ambassador_on("a2", "n2", &p, State::Running);
        old.labels.insert(LABEL_CONFIG_HASH.into(), "older".into());
        let plan = mesh_plan(
            &p,
            &[
                ("n1", NodeState::Up, snapshot(vec![dead.clone()])),
                ("n2", NodeState::Up, snapshot(vec![old.clone()])),
            ],
            &Default::default(),
        );
        let replaced: Vec<(String, Option<String>, Reason)> = plan
            .actions
            .iter()
            .filter_map(|a| match &a.kind {
                Kind::Ambassador { .. } => Some((
                    a.node.clone(),
                    a.target.container().map(String::from),
                    a.reason.unwrap(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            replaced,
            vec![
                ("n1".to_string(), Some(dead.id), Reason::Exited),
                ("n2".to_string(), Some(old.id), Reason::ConfigChanged),
            ]
        );
        assert!(
            routes_of(&plan).is_empty(),
            "routes go to running ambassadors only"
        );
    }

    #[test]
    fn a_replica_published_on_another_address_than_its_nodes_is_rolled() {
        let p = mesh_project();
        let db = db_on("d1", "n2", 1, "10.0.0.5", 40001);
        let mut web = running("w1", "web", 1);
        web.node = "n1".into();
        let nodes = |db: &Container| -> Vec<(&'static str, NodeState, Snapshot)> {
            vec![
                ("n1", NodeState::Up, snapshot(vec![web.clone()])),
                ("n2", NodeState::Up, snapshot(vec![db.clone()])),
                ("n3", NodeState::Up, snapshot(vec![])),
            ]
        };
        let replicas = |plan: &Plan| -> Vec<(String, Option<Reason>)> {
            plan.actions
                .iter()
                .filter(|a| a.target.service().is_some())
                .map(|a| (a.name().to_string(), a.reason))
                .collect()
        };
        let plan = mesh_plan(&p, &nodes(&db), &Default::default());
        assert_eq!(replicas(&plan), vec![], "bound where its node is: kept");
        // n2's address in the file changed: the replica is rolled, as for a new definition.
        let mut moved = p.clone();
        let mesh = moved.mesh.as_mut().unwrap();
        mesh.addresses
            .insert("n2".into(), "10.231.9.2".parse().unwrap());
        let plan = mesh_plan(&moved, &nodes(&db), &Default::default());
        assert_eq!(
            replicas(&plan),
            vec![("recreate".to_string(), Some(Reason::AddressChanged))]
        );
        // A node without an address: its replicas publish nothing.
        moved.mesh.as_mut().unwrap().addresses.remove("n2");
        let plan = mesh_plan(&moved, &nodes(&db), &Default::default());
        assert_eq!(
            replicas(&plan),
            vec![("recreate".to_string(), Some(Reason::AddressChanged))]
        );
    }

    #[test]
    fn an_ambassador_that_keeps_crashing_is_replaced_after_a_growing_delay() {
        let p = mesh_project();
        let cfg = BackoffConfig::default();
        let mut h = History::default();
        let mut now = t0();
        let mut delays = Vec::new();
        for n in 0..4 {
            let mut crashed = ambassador_on(&format!("x{n}"), "n1", &p, State::Exited);
            crashed.started_at = Some(now);
            crashed.finished_at = Some(now);
            let nodes = vec![("n1", NodeState::Up, snapshot(vec![crashed]))];
            // Held: nothing to do, and a recheck when it may be replaced.
            let plan = mesh_plan_at(&p, &nodes, &Default::default(), &h.backoff, now);
            let replace: Vec<&Action> = plan
                .actions
                .iter()
                .filter(|a| matches!(a.kind, Kind::Ambassador { .. }))
                .collect();
            if replace.is_empty() {
                let until = plan.recheck.iter().min().copied().expect("a recheck");
                delays.push(until.duration_since(now).unwrap().as_secs());
                now = until;
                let plan = mesh_plan_at(&p, &nodes, &Default::default(), &h.backoff, now);
                let a = plan
                    .actions
                    .iter()
                    .find(|a| matches!(a.kind, Kind::Ambassador { .. }));
                h.record(
                    &p,
                    &cfg,
                    a.expect("replaced once the delay is over"),
                    true,
                    now,
                );
            } else {
                delays.push(0);
                h.record(&p, &cfg, replace[0], true, now);
            }
        }
        assert_eq!(delays, vec![0, 1, 2, 4]);
        // One that ran longer than the reset time starts over: replaced at once.
        let mut long = ambassador_on("long", "n1", &p, State::Exited);
        long.started_at = Some(now);
        now += std::time::Duration::from_secs(100);
        long.finished_at = Some(now);
        let nodes = vec![("n1", NodeState::Up, snapshot(vec![long]))];
        let plan = mesh_plan_at(&p, &nodes, &Default::default(), &h.backoff, now);
        assert!(
            plan.actions
                .iter()
                .any(|a| matches!(a.kind, Kind::Ambassador { reset: true, .. })),
            "{:?}",
            plan.actions
        );
    }

    #[test]
    fn two_services_on_one_port_of_one_network_get_an_ambassador_each() {
        let mut p = mesh_project();
        let mut other = p.services["db"].clone();
        other.name = "cache".into();
        other.networks.get_mut("default").unwrap().aliases = vec!["memo".into()];
        p.services.insert("cache".into(), other);
        let found: Vec<(String, Vec<String>, Vec<String>)> = mesh::ambassadors(&p)
            .into_iter()
            .map(|a| (a.id, a.services, a.aliases))
            .collect();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            found,
            vec![
                (
                    "default".to_string(),
                    strings(&["cache"]),
                    strings(&["cache", "memo"])
                ),
                (
                    "default-2".to_string(),
                    strings(&["db"]),
                    strings(&["db", "database"])
                ),
            ]
        );
        // Each on every node, under its own name.
        let empty = snapshot(vec![]);
        let nodes: Vec<(&str, NodeState, Snapshot)> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (*n, NodeState::Up, empty.clone()))
            .collect();
        let plan = mesh_plan(&p, &nodes, &Default::default());
        let names: BTreeSet<(String, String)> = plan
            .actions
            .iter()
            .filter_map(|a| match &a.kind {
                Kind::Ambassador { spec, .. } => Some((a.node.clone(), spec.container_name(&p))),
                _ => None,
            })
            .collect();
        assert_eq!(
            names.len(),
            6,
            "two ambassadors on each of 3 nodes: {names:?}"
        );
    }
}

/// What telemetry records of a node: the counts take every container, the slots (a create
/// for a slot seen before counts as a replacement) only the containers asked for when a
/// patched view says which changed; and the digests the following of images reads.
#[test]
fn an_observation_counts_every_container_and_names_only_the_slots_asked_for() {
    let p = project(vec![svc("web", 2), svc("db", 1)]);
    let mut a = container("a", "web", 1, State::Running, "h");
    a.labels
        .insert(crate::labels::LABEL_IMAGE_DIGEST.into(), "sha256:1".into());
    let b = container("b", "web", 2, State::Exited, "h");
    let node = snapshot(vec![a.clone(), b.clone()]);

    let all = node.observation(&p, None, None);
    assert_eq!(
        (all.services["web"].containers, all.services["web"].actual),
        (2, 1)
    );
    assert_eq!(all.services["db"].desired, 1);
    assert_eq!(
        all.slots,
        BTreeSet::from([("web".to_string(), 1), ("web".to_string(), 2)])
    );
    let named = HashSet::from([b.id.clone()]);
    let patched = node.observation(&p, None, Some(&named));
    assert_eq!(patched.services, all.services);
    assert_eq!(patched.slots, BTreeSet::from([("web".to_string(), 2)]));
    // Drover's own container counts nowhere.
    let mine = node.observation(&p, Some(&a.id[..12]), None);
    assert_eq!(mine.services["web"].containers, 1);

    let digests = node.digests(P, None);
    assert_eq!(digests["web"]["sha256:1"], 1);
    assert_eq!(
        digests.len(),
        1,
        "a container without a digest label counts for none"
    );
}
