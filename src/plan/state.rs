//! What an operator sees of each service and replica: one word and why, as `kubectl get
//! pods` taught users to expect (running, starting, unhealthy, crash loop with its attempts
//! and the time of the next one, waiting on a dependency, paused or rolled back, unplaceable,
//! updating n of m). Pure: derived from the planner's input, its plan and the history's
//! rollout state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::groups::{self, Grouped, NodeGroups};
use super::{Input, Plan, Stopped, Unplaced, Wait};
use crate::config::{DependsCondition, DeployMode, Service};
use crate::observe::{Container, Health, State};
use crate::telemetry::{ReplicaStateRecord, ServiceStateRecord};

/// Rollouts the history holds, for [`services`].
#[derive(Debug)]
pub struct Rollouts<'a> {
    /// Paused after a failed update.
    pub halted: &'a BTreeSet<String>,
    /// Rolled back; the file still asks for the definition that failed.
    pub rolled_back: &'a BTreeSet<String>,
    /// Being updated (or rolled back), not settled yet.
    pub updating: &'a BTreeSet<String>,
}

/// Every service of the project the plan worked out in full (not replayed: its state is
/// the last pass's; not patched: see [`patch`]), with each of its replica slots.
pub fn services(input: &Input, plan: &Plan, rollouts: &Rollouts) -> Vec<ServiceStateRecord> {
    let whole: Vec<&Service> = (input.project.services.values())
        .filter(|svc| !plan.replayed.contains(&svc.name) && !plan.patched.contains_key(&svc.name))
        .collect();
    if whole.is_empty() {
        return Vec::new();
    }
    let missing = groups::missing(input);
    let index = Index::new(input, plan, &missing, false);
    (whole.into_iter())
        .map(|svc| service(input, &index, rollouts, svc))
        .collect()
}

/// In `records` (the last pass's), the services the plan patched: the records of the
/// slots it planned worked out again, the others kept, and the service's state from them
/// all (a crash among 1,000 replicas costs its slot's record). A service whose record
/// does not hold its slots in order (none yet, or another count) is worked out whole.
pub fn patch(
    input: &Input,
    plan: &Plan,
    rollouts: &Rollouts,
    records: &mut BTreeMap<String, ServiceStateRecord>,
) {
    if plan.patched.is_empty() {
        return;
    }
    let missing = groups::missing(input);
    let index = Index::new(input, plan, &missing, true);
    let services = &input.project.services;
    for (name, held) in &plan.patched {
        let Some(svc) = services.get(name) else {
            continue;
        };
        let fits = records.get(name).is_some_and(|r| {
            let slots = r.replicas.iter().map(|r| r.slot);
            r.replicas.len() == svc.replicas as usize && slots.eq(1..=svc.replicas)
        });
        let Some(record) = records.get_mut(name).filter(|_| fits) else {
            records.insert(name.clone(), service(input, &index, rollouts, svc));
            continue;
        };
        for h in held {
            let at = (h.slot as usize).checked_sub(1);
            if let Some(r) = at.and_then(|i| record.replicas.get_mut(i)) {
                *r = replica(&index, svc, h.slot, None);
            }
        }
        summarize(record, svc, rollouts);
    }
}

/// What the records are made from, found by service and slot once per pass (a replica's
/// record reads them in constant time, whatever the size of the project).
struct Index<'a> {
    plan: &'a Plan,
    /// Each slot's container: the running one when there is one, else the newest.
    containers: HashMap<(&'a str, u32), &'a Container>,
    /// The same by service and node, whatever the slot (a global service's replicas).
    on_node: HashMap<(&'a str, &'a str), &'a Container>,
    waits: HashMap<(&'a str, u32), &'a Wait>,
    unplaced: HashMap<(&'a str, u32), &'a Unplaced>,
    stopped: HashMap<(&'a str, u32), &'a Stopped>,
}

impl<'a> Index<'a> {
    /// Over the containers of the slots the pass patched, and unless `patched_only` of the
    /// services it worked out in full (the groups `missing` worked out are those of nodes
    /// without kept ones).
    fn new(
        input: &Input<'a>,
        plan: &'a Plan,
        missing: &'a [Option<NodeGroups>],
        patched_only: bool,
    ) -> Index<'a> {
        let mut containers: HashMap<(&str, u32), &Container> = HashMap::new();
        let mut on_node: HashMap<(&str, &str), &Container> = HashMap::new();
        let rank = |c: &Container| (c.state == State::Running, c.created);
        let grouped = Grouped::of(input, missing);
        for (k, svc) in input.project.services.values().enumerate() {
            let name = svc.name.as_str();
            if plan.replayed.contains(name) {
                continue;
            }
            if let Some(held) = plan.patched.get(name) {
                let finder = grouped.finder(k, held.len());
                let found = held.iter().filter_map(|h| finder.find(&h.node, &h.id));
                for c in found {
                    keep_best(&mut containers, (name, c.slot().unwrap_or(0)), c, rank);
                }
                continue;
            }
            if patched_only {
                continue;
            }
            for c in grouped.iter(k) {
                if svc.mode == DeployMode::Global {
                    keep_best(&mut on_node, (name, c.node.as_str()), c, rank);
                }
                if let Some(slot) = c.slot() {
                    keep_best(&mut containers, (name, slot), c, rank);
                }
            }
        }
        // The first of each slot, as a search from the front would find.
        let mut waits = HashMap::new();
        for w in &plan.waits {
            waits.entry((w.service.as_str(), w.slot)).or_insert(w);
        }
        let mut unplaced = HashMap::new();
        for u in &plan.unplaced {
            unplaced.entry((u.service.as_str(), u.slot)).or_insert(u);
        }
        let mut stopped = HashMap::new();
        for st in &plan.stopped {
            stopped.entry((st.service.as_str(), st.slot)).or_insert(st);
        }
        Index {
            plan,
            containers,
            on_node,
            waits,
            unplaced,
            stopped,
        }
    }
}

/// Put `c` under `key` unless what is there ranks higher: the last of equals wins, as the
/// last of a stable sort would.
fn keep_best<'a, K: std::hash::Hash + Eq, R: Ord>(
    map: &mut HashMap<K, &'a Container>,
    key: K,
    c: &'a Container,
    rank: impl Fn(&Container) -> R,
) {
    match map.entry(key) {
        Entry::Occupied(mut e) if rank(c) >= rank(e.get()) => {
            e.insert(c);
        }
        Entry::Occupied(_) => {}
        Entry::Vacant(e) => {
            e.insert(c);
        }
    }
}

fn service(input: &Input, index: &Index, rollouts: &Rollouts, svc: &Service) -> ServiceStateRecord {
    // A global service's slots are the nodes that should hold a replica.
    let global;
    let svc = if svc.mode == DeployMode::Global {
        let wanted = super::global::wanted(input, svc);
        global = Service {
            replicas: wanted.len() as u32,
            ..svc.clone()
        };
        &global
    } else {
        svc
    };
    let replicas: Vec<ReplicaStateRecord> = slots(input, svc)
        .into_iter()
        .map(|(slot, node)| replica(index, svc, slot, node))
        .collect();
    let mut record = ServiceStateRecord {
        service: svc.name.clone(),
        state: "running",
        reason: String::new(),
        desired: svc.replicas,
        running: 0,
        updated: None,
        replicas,
    };
    summarize(&mut record, svc, rollouts);
    record
}

/// A service's state, from its replicas' and its rollout's.
fn summarize(record: &mut ServiceStateRecord, svc: &Service, rollouts: &Rollouts) {
    let replicas = &record.replicas;
    let running = replicas.iter().filter(|r| r.running).count() as u32;
    let current = replicas.iter().filter(|r| r.current).count() as u32;
    let any = |state: &str| replicas.iter().find(|r| r.state == state);
    let (state, reason) = if rollouts.halted.contains(&svc.name) {
        (
            "paused",
            "the update failed; paused until the definition changes".to_string(),
        )
    } else if rollouts.rolled_back.contains(&svc.name) {
        (
            "rolled-back",
            "the update failed; the previous definition runs until the file changes".to_string(),
        )
    } else if let Some(r) = any("crash-loop") {
        ("crash-loop", r.reason.clone())
    } else if let Some(r) = any("unplaceable") {
        ("unplaceable", r.reason.clone())
    } else if let Some(r) = any("waiting") {
        ("waiting", r.reason.clone())
    } else if rollouts.updating.contains(&svc.name) && current < svc.replicas {
        (
            "updating",
            format!("{current} of {} on the new definition", svc.replicas),
        )
    } else if let Some(r) = any("unhealthy") {
        ("unhealthy", r.reason.clone())
    } else if let Some(r) = any("starting").or(any("pending")) {
        ("starting", r.reason.clone())
    } else if let Some(r) = any("gave-up").or(any("exited")).filter(|_| running == 0) {
        ("exited", r.reason.clone())
    } else if let Some(r) = any("gave-up") {
        ("degraded", r.reason.clone())
    } else {
        ("running", String::new())
    };
    record.state = state;
    record.reason = reason;
    record.desired = svc.replicas;
    record.running = running;
    record.updated = (rollouts.updating)
        .contains(&svc.name)
        .then_some((current, svc.replicas));
}

/// The service's slots: 1 to its count, or for a global service each node that should
/// hold a replica (its slot, and the node).
fn slots<'a>(input: &Input<'a>, svc: &Service) -> Vec<(u32, Option<&'a str>)> {
    match svc.mode {
        DeployMode::Global => super::global::wanted(input, svc)
            .into_iter()
            .map(|(slot, node)| (slot, Some(node)))
            .collect(),
        DeployMode::Replicated => (1..=svc.replicas).map(|slot| (slot, None)).collect(),
    }
}

/// A replica's record: the slot's container (a global service's: its node's, whatever
/// its slot), and what the plan says of the slot.
fn replica(index: &Index, svc: &Service, slot: u32, node: Option<&str>) -> ReplicaStateRecord {
    let key = (svc.name.as_str(), slot);
    let c = match node {
        Some(node) => index.on_node.get(&(svc.name.as_str(), node)).copied(),
        None => index.containers.get(&key).copied(),
    };
    let mut r = ReplicaStateRecord {
        slot,
        node: c.map(|c| c.node.clone()).or(node.map(str::to_string)),
        container: c.map(|c| c.short_id().to_string()),
        state: "pending",
        reason: "to be created".into(),
        attempts: 0,
        retry_at: None,
        running: c.is_some_and(|c| c.state == State::Running),
        current: c.is_some_and(|c| c.config_hash() == Some(svc.config_hash.as_str())),
    };
    let wait = index.waits.get(&key).copied();
    let unplaced = index.unplaced.get(&key).copied();
    let blocked = index.plan.blocked.iter().find(|b| b.service == svc.name);
    let stopped = index.stopped.get(&key).copied();
    let (state, reason) = match (c, wait, unplaced, stopped) {
        (_, Some(w), _, _) => {
            r.attempts = w.attempts;
            r.retry_at = Some(w.until);
            let times = match w.attempts {
                1 => "once".to_string(),
                n => format!("{n} times in a row"),
            };
            (
                "crash-loop",
                format!("failed {times}; waiting before the next attempt"),
            )
        }
        (_, _, Some(u), _) => ("unplaceable", u.reason.clone()),
        (_, _, _, Some(s)) if s.gave_up => (
            "gave-up",
            format!(
                "out of attempts (max_attempts); last exit code {}",
                s.exit_code.unwrap_or(-1)
            ),
        ),
        (_, _, _, Some(s)) => (
            "exited",
            format!(
                "exited with {}; its restart policy leaves it",
                s.exit_code.unwrap_or(-1)
            ),
        ),
        (None, _, _, _) => match blocked {
            Some(b) => (
                "waiting",
                format!("on {}: {}", b.dependency, condition(b.condition)),
            ),
            None => ("pending", "to be created".to_string()),
        },
        (Some(c), _, _, _) => running_state(c),
    };
    r.state = state;
    r.reason = reason;
    r
}

/// A `depends_on` condition as the Compose file names it.
fn condition(c: DependsCondition) -> &'static str {
    match c {
        DependsCondition::ServiceStarted => "service_started",
        DependsCondition::ServiceHealthy => "service_healthy",
        DependsCondition::ServiceCompletedSuccessfully => "service_completed_successfully",
    }
}

fn running_state(c: &Container) -> (&'static str, String) {
    match (c.state, c.health) {
        (State::Running, Health::Unhealthy) => ("unhealthy", "its healthcheck fails".into()),
        (State::Running, Health::Starting) => {
            ("starting", "its healthcheck has not passed yet".into())
        }
        (State::Running, _) => ("running", String::new()),
        (State::Created, _) => ("starting", "created, not started yet".into()),
        (State::Restarting, _) => ("starting", "the engine restarts it".into()),
        (State::Exited | State::Dead, _) => ("starting", "exited; about to start again".into()),
        (s, _) => ("starting", s.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::*;
    use crate::config::Project;
    use crate::observe::Snapshot;
    use crate::plan::tests::{container, project, snapshot, svc, t0};
    use crate::plan::{Backoff, BackoffConfig, Blocked, NodeState, NodeView, Unplaced, Wait};

    struct Case {
        project: Project,
        snapshot: Snapshot,
        plan: Plan,
        halted: BTreeSet<String>,
        rolled_back: BTreeSet<String>,
        updating: BTreeSet<String>,
    }

    impl Case {
        fn new(replicas: u32, containers: Vec<Container>) -> Case {
            Case {
                project: project(vec![svc("web", replicas), svc("db", 1)]),
                snapshot: snapshot(containers),
                plan: Plan::default(),
                halted: BTreeSet::new(),
                rolled_back: BTreeSet::new(),
                updating: BTreeSet::new(),
            }
        }

        fn web(&self) -> ServiceStateRecord {
            let labels = BTreeMap::new();
            let nodes = [NodeView {
                name: "n1",
                state: NodeState::Up,
                availability: Default::default(),
                labels: &labels,
                snapshot: &self.snapshot,
                groups: None,
            }];
            let none = BTreeSet::new();
            let input = Input {
                project: &self.project,
                nodes: &nodes,
                backoff: &Backoff::default(),
                backoff_cfg: &BackoffConfig::default(),
                now: t0(),
                exclude: None,
                pushed: &Default::default(),
                rebalance: false,
                halted: &none,
                updating: &none,
            };
            let rollouts = Rollouts {
                halted: &self.halted,
                rolled_back: &self.rolled_back,
                updating: &self.updating,
            };
            services(&input, &self.plan, &rollouts)
                .into_iter()
                .find(|s| s.service == "web")
                .unwrap()
        }
    }

    fn up(id: &str, slot: u32) -> Container {
        container(id, "web", slot, State::Running, "hash-web")
    }

    #[test]
    fn replicas_running_make_a_running_service() {
        let s = Case::new(2, vec![up("a", 1), up("b", 2)]).web();
        assert_eq!((s.state, s.running, s.desired), ("running", 2, 2));
        assert!(s.replicas.iter().all(|r| r.state == "running" && r.current));
        assert_eq!(s.replicas[0].container.as_deref(), Some("a00000000000"));
    }

    #[test]
    fn a_slot_in_backoff_is_a_crash_loop_with_its_attempts_and_next_try() {
        let mut c = Case::new(
            2,
            vec![
                up("a", 1),
                container("b", "web", 2, State::Exited, "hash-web"),
            ],
        );
        let until = t0() + Duration::from_secs(4);
        c.plan.waits.push(Wait {
            service: "web".into(),
            slot: 2,
            until,
            attempts: 3,
        });
        let s = c.web();
        assert_eq!(s.state, "crash-loop");
        assert_eq!(s.running, 1);
        let r = &s.replicas[1];
        assert_eq!(
            (r.state, r.attempts, r.retry_at),
            ("crash-loop", 3, Some(until))
        );
        assert!(s.reason.contains("failed 3 times"), "{}", s.reason);
    }

    #[test]
    fn health_decides_between_starting_unhealthy_and_running() {
        let mut a = up("a", 1);
        a.health = Health::Starting;
        let mut b = up("b", 2);
        b.health = Health::Unhealthy;
        let s = Case::new(2, vec![a, b]).web();
        assert_eq!(s.state, "unhealthy");
        assert_eq!(s.replicas[0].state, "starting");
        assert_eq!(s.replicas[1].state, "unhealthy");
    }

    #[test]
    fn no_container_is_waiting_on_a_dependency_or_unplaceable_or_pending() {
        let mut c = Case::new(2, vec![]);
        c.plan.blocked.push(Blocked {
            service: "web".into(),
            dependency: "db".into(),
            condition: DependsCondition::ServiceHealthy,
        });
        let s = c.web();
        assert_eq!(s.state, "waiting");
        assert_eq!(s.reason, "on db: service_healthy");
        c.plan.blocked.clear();
        c.plan.unplaced.push(Unplaced {
            service: "web".into(),
            slot: 2,
            reason: "no node has label zone=b".into(),
        });
        let s = c.web();
        assert_eq!(
            (s.state, s.reason.as_str()),
            ("unplaceable", "no node has label zone=b")
        );
        assert_eq!(s.replicas[0].state, "pending");
        c.plan.unplaced.clear();
        assert_eq!(c.web().state, "starting", "about to be created");
    }

    #[test]
    fn an_update_counts_replicas_on_the_new_definition_and_rollouts_win() {
        let mut c = Case::new(
            3,
            vec![
                up("a", 1),
                up("b", 2),
                container("c", "web", 3, State::Running, "old"),
            ],
        );
        c.updating.insert("web".into());
        let s = c.web();
        assert_eq!((s.state, s.updated), ("updating", Some((2, 3))));
        assert_eq!(s.reason, "2 of 3 on the new definition");
        c.rolled_back.insert("web".into());
        assert_eq!(c.web().state, "rolled-back");
        c.halted.insert("web".into());
        assert_eq!(c.web().state, "paused");
    }

    #[test]
    fn the_running_container_of_a_slot_is_the_one_described() {
        let old = container("a", "web", 1, State::Exited, "hash-web");
        let s = Case::new(1, vec![old, up("b", 1)]).web();
        assert_eq!(s.replicas[0].container.as_deref(), Some("b00000000000"));
        assert_eq!(s.state, "running");
    }
}
