use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{DependsCondition, DependsOn, Network, RestartPolicy};
use crate::spec::{LABEL_CONFIG_HASH, LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT};

const P: &str = "demo";

fn svc(name: &str, replicas: u32) -> Service {
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
        config_hash: format!("hash-{name}"),
        options: Default::default(),
    }
}

fn project(services: Vec<Service>) -> Project {
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
            },
        )]),
        volumes: BTreeMap::new(),
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn container(id: &str, service: &str, slot: u32, state: State, hash: &str) -> Container {
    Container {
        id: format!("{id:0<64}"),
        name: format!("{P}-{service}-{slot}"),
        labels: HashMap::from([
            (LABEL_PROJECT.to_string(), P.to_string()),
            (LABEL_SERVICE.to_string(), service.to_string()),
            (LABEL_SLOT.to_string(), slot.to_string()),
            (LABEL_CONFIG_HASH.to_string(), hash.to_string()),
        ]),
        state,
        exit_code: (state == State::Exited).then_some(137),
        started_at: Some(t0() - Duration::from_secs(100)),
        finished_at: (state == State::Exited).then_some(t0() - Duration::from_secs(99)),
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

fn snapshot(containers: Vec<Container>) -> Snapshot {
    Snapshot {
        containers,
        networks: [format!("{P}_default")].into(),
        volumes: Default::default(),
    }
}

fn run_plan(p: &Project, s: &Snapshot, b: &Backoff) -> Plan {
    plan(&Input {
        project: p,
        observed: s,
        backoff: b,
        backoff_cfg: &BackoffConfig::default(),
        now: t0(),
        exclude: None,
    })
}

/// What an engine would look like after executing the plan without errors.
fn apply(p: &Project, s: &Snapshot, plan: &Plan, next_id: &mut u64) -> Snapshot {
    let mut out = s.clone();
    let mut new = |service: &str, slot: u32| {
        *next_id += 1;
        let mut c = running(&format!("n{next_id}"), service, slot);
        c.labels.insert(
            LABEL_CONFIG_HASH.into(),
            p.services[service].config_hash.clone(),
        );
        c
    };
    for a in &plan.actions {
        match a {
            Action::CreateNetwork { name, .. } => {
                out.networks.insert(name.clone());
            }
            Action::CreateVolume { name, .. } => {
                out.volumes.insert(name.clone());
            }
            Action::Create { service, slot, .. } => out.containers.push(new(service, *slot)),
            Action::Start { container, .. } => {
                let c = out
                    .containers
                    .iter_mut()
                    .find(|c| &c.id == container)
                    .unwrap();
                c.state = State::Running;
            }
            Action::Recreate {
                service,
                slot,
                container,
                ..
            } => {
                out.containers.retain(|c| &c.id != container);
                out.containers.push(new(service, *slot));
            }
            Action::Remove { container, .. } => out.containers.retain(|c| &c.id != container),
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
            "create network demo_default",
            "create db slot 1 (missing)",
            "create web slot 1 (missing)",
            "create web slot 2 (missing)",
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
    let slots: Vec<u32> = plan.actions.iter().filter_map(Action::slot).collect();
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
        .map(|a| (a.slot().unwrap(), a.reason().unwrap()))
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
        vec![Action::Start {
            service: "web".into(),
            slot: 1,
            container: format!("{:0<64}", "a"),
            reset: false,
            reason: Reason::Exited,
        }]
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
    assert_eq!(plan.actions[0].service(), Some("worker"));
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
        [Action::Start { reset: true, .. }]
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
        assert_eq!(plan.actions[0].slot(), Some(pass));
        assert_eq!(plan.actions[0].reason(), Some(Reason::ConfigChanged));
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
        .map(|a| (a.container().unwrap()[..1].to_string(), a.reason().unwrap()))
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
    let plan = plan(&Input {
        project: &p,
        observed: &s,
        backoff: &Backoff::default(),
        backoff_cfg: &BackoffConfig::default(),
        now: t0(),
        exclude: Some(&me.id[..12]),
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
            if let Some(id) = a.container() {
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
                .any(|a| a.reason() == Some(Reason::ConfigChanged));
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
