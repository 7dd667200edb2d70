//! The planner: desired state + observed state -> the actions that close the gap.
//!
//! Pure: no I/O, time passed in. This is where drover's judgement lives:
//! - a service never has more containers planned than its target;
//! - scale up fills the lowest free slots, scale down removes the highest;
//! - an exited container is restarted in place when its restart policy says so,
//!   with per-slot crash backoff; a removed one is recreated;
//! - a changed definition recreates the service's containers one at a time;
//! - a container without `drover.project=<project>` never appears in an action.

pub mod backoff;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::config::{Project, RestartCondition, Service};
use crate::observe::{Container, Snapshot, State};

pub use backoff::{Backoff, BackoffConfig};

/// Why an action is taken; logged as the `reason` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The slot has no container.
    Missing,
    /// The container exited and its restart policy restarts it.
    Exited,
    /// The container was created but never started (or its start failed).
    NotStarted,
    /// The engine reports the container dead.
    Dead,
    /// The service definition changed since the container was created.
    ConfigChanged,
    /// The service has more containers than its target.
    ScaleDown,
    /// Two containers claim the same slot.
    Duplicate,
    /// The service is no longer in the Compose file.
    ServiceRemoved,
    /// The container has the project label but no valid service or slot label.
    BadLabels,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Exited => "exited",
            Reason::NotStarted => "not-started",
            Reason::Dead => "dead",
            Reason::ConfigChanged => "config-changed",
            Reason::ScaleDown => "scale-down",
            Reason::Duplicate => "duplicate",
            Reason::ServiceRemoved => "service-removed",
            Reason::BadLabels => "bad-labels",
        }
    }
}

/// One change to make on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the project network with this engine name (`key` is its key in the file).
    CreateNetwork { key: String, name: String },
    /// Create the project volume with this engine name.
    CreateVolume { key: String, name: String },
    /// Create and start a container for an empty slot.
    Create {
        service: String,
        slot: u32,
        reason: Reason,
    },
    /// Start an existing container in place. `reset` forgets the slot's crash history
    /// (its last run was long enough).
    Start {
        service: String,
        slot: u32,
        container: String,
        reset: bool,
        reason: Reason,
    },
    /// Stop and remove the container, then create and start the slot anew.
    Recreate {
        service: String,
        slot: u32,
        container: String,
        reason: Reason,
    },
    /// Stop (the container's stop signal and grace period) and remove.
    Remove {
        service: Option<String>,
        slot: Option<u32>,
        container: String,
        reason: Reason,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "create-network",
            Action::CreateVolume { .. } => "create-volume",
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Recreate { .. } => "recreate",
            Action::Remove { .. } => "remove",
        }
    }

    pub fn service(&self) -> Option<&str> {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => None,
            Action::Create { service, .. }
            | Action::Start { service, .. }
            | Action::Recreate { service, .. } => Some(service),
            Action::Remove { service, .. } => service.as_deref(),
        }
    }

    pub fn slot(&self) -> Option<u32> {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => None,
            Action::Create { slot, .. }
            | Action::Start { slot, .. }
            | Action::Recreate { slot, .. } => Some(*slot),
            Action::Remove { slot, .. } => *slot,
        }
    }

    /// The existing container this action changes, if any.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::Start { container, .. }
            | Action::Recreate { container, .. }
            | Action::Remove { container, .. } => Some(container),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<Reason> {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => None,
            Action::Create { reason, .. }
            | Action::Start { reason, .. }
            | Action::Recreate { reason, .. }
            | Action::Remove { reason, .. } => Some(*reason),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateNetwork { name, .. } => write!(f, "create network {name}"),
            Action::CreateVolume { name, .. } => write!(f, "create volume {name}"),
            _ => {
                write!(f, "{}", self.name())?;
                if let Some(s) = self.service() {
                    write!(f, " {s}")?;
                }
                if let Some(n) = self.slot() {
                    write!(f, " slot {n}")?;
                }
                if let Some(c) = self.container() {
                    write!(f, " container {}", crate::observe::short_id(c))?;
                }
                if let Some(r) = self.reason() {
                    write!(f, " ({})", r.as_str())?;
                }
                Ok(())
            }
        }
    }
}

/// A slot held back by crash backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub service: String,
    pub slot: u32,
    pub until: SystemTime,
    pub attempts: u32,
}

/// A slot left exited on purpose: its restart policy does not restart it, or it ran
/// out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub service: String,
    pub slot: u32,
    pub container: String,
    pub exit_code: Option<i64>,
    pub gave_up: bool,
}

/// The outcome of one planning pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In execution order: infrastructure first, then services in depends_on order.
    pub actions: Vec<Action>,
    pub waits: Vec<Wait>,
    pub stopped: Vec<Stopped>,
    /// Plan again after this long even if nothing happens (the earliest backoff expiry).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Everything the planner looks at.
pub struct Input<'a> {
    pub project: &'a Project,
    pub observed: &'a Snapshot,
    pub backoff: &'a Backoff,
    pub backoff_cfg: &'a BackoffConfig,
    pub now: SystemTime,
    /// drover's own container id: never acted on, whatever its labels say.
    pub exclude: Option<&'a str>,
}

/// Decide what to do. Applying the result and planning again yields no actions
/// (unless time passes or the engine changes in between).
pub fn plan(input: &Input) -> Plan {
    let project = input.project;
    let mut plan = Plan::default();

    // Only the project's own containers, never drover itself.
    let owned: Vec<&Container> = input
        .observed
        .containers
        .iter()
        .filter(|c| c.owned_by(&project.name))
        .filter(|c| input.exclude.is_none_or(|me| !c.id.starts_with(me)))
        .collect();

    let mut by_service: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in &owned {
        match (c.service(), c.slot()) {
            (Some(s), Some(_)) if project.services.contains_key(s) => {
                by_service.entry(s).or_default().push(c)
            }
            (Some(s), Some(n)) => plan.actions.push(Action::Remove {
                service: Some(s.to_string()),
                slot: Some(n),
                container: c.id.clone(),
                reason: Reason::ServiceRemoved,
            }),
            (s, _) => plan.actions.push(Action::Remove {
                service: s.map(str::to_string),
                slot: None,
                container: c.id.clone(),
                reason: Reason::BadLabels,
            }),
        }
    }

    let mut service_actions: Vec<Action> = Vec::new();
    let mut creates_anything = false;
    for name in project.start_order() {
        let svc = &project.services[name];
        let containers = by_service.remove(name).unwrap_or_default();
        let before = service_actions.len();
        plan_service(input, svc, containers, &mut service_actions, &mut plan);
        creates_anything |= service_actions[before..]
            .iter()
            .any(|a| matches!(a, Action::Create { .. } | Action::Recreate { .. }));
    }

    if creates_anything {
        infrastructure(input, &mut plan.actions);
    }
    plan.actions.extend(service_actions);

    plan.requeue_after = plan
        .waits
        .iter()
        .map(|w| w.until.duration_since(input.now).unwrap_or_default())
        .min();
    plan
}

/// Networks and volumes the project declares but the engine lacks. Only planned when a
/// container is about to be created, so an idle pass stays free of them.
fn infrastructure(input: &Input, out: &mut Vec<Action>) {
    for (key, net) in &input.project.networks {
        if !net.external && !input.observed.networks.contains(&net.name) {
            out.push(Action::CreateNetwork {
                key: key.clone(),
                name: net.name.clone(),
            });
        }
    }
    for (key, vol) in &input.project.volumes {
        if !vol.external && !input.observed.volumes.contains(&vol.name) {
            out.push(Action::CreateVolume {
                key: key.clone(),
                name: vol.name.clone(),
            });
        }
    }
}

/// Rank containers claiming one slot: the one to keep sorts first.
fn keep_rank(c: &Container) -> (u8, std::cmp::Reverse<Option<SystemTime>>) {
    let state = match c.state {
        State::Running => 0,
        State::Restarting | State::Paused => 1,
        State::Created | State::Exited => 2,
        State::Unknown => 3,
        State::Dead | State::Removing => 4,
    };
    (state, std::cmp::Reverse(c.started_at))
}

fn plan_service(
    input: &Input,
    svc: &Service,
    containers: Vec<&Container>,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) {
    let target = svc.replicas;

    // One container per slot; extra claimants of a slot are removed.
    let mut slots: BTreeMap<u32, Vec<&Container>> = BTreeMap::new();
    for c in containers {
        if let Some(n) = c.slot() {
            slots.entry(n).or_default().push(c);
        }
    }
    let mut kept: BTreeMap<u32, &Container> = BTreeMap::new();
    let mut removals: Vec<Action> = Vec::new();
    for (n, mut cs) in slots {
        cs.sort_by_key(|c| keep_rank(c));
        let mut rest = cs.into_iter();
        if let Some(first) = rest.next() {
            kept.insert(n, first);
        }
        for dup in rest {
            if dup.state != State::Removing {
                removals.push(remove(svc, n, dup, Reason::Duplicate));
            }
        }
    }

    // Scale down: keep the lowest `target` slots, remove the rest from the highest.
    let occupied: BTreeSet<u32> = kept.keys().copied().collect();
    while kept.len() > target as usize {
        let Some((n, c)) = kept.pop_last() else { break };
        if c.state != State::Removing {
            removals.push(remove(svc, n, c, Reason::ScaleDown));
        }
    }
    out.extend(removals);

    // Containers in the kept slots.
    let mut recreate_candidates: Vec<(u32, &Container)> = Vec::new();
    let mut acted = false;
    for (&n, c) in &kept {
        let outdated = c.config_hash() != Some(svc.config_hash.as_str());
        let history = input.backoff.get(&svc.name, n);
        let held = history.not_before.filter(|t| *t > input.now);
        match c.state {
            State::Running | State::Paused | State::Restarting | State::Unknown => {
                if outdated {
                    recreate_candidates.push((n, c));
                }
            }
            State::Removing => {}
            State::Dead | State::Created if outdated || c.state == State::Dead => {
                let reason = if c.state == State::Dead {
                    Reason::Dead
                } else {
                    Reason::ConfigChanged
                };
                if let Some(until) = held {
                    wait(plan, svc, n, until, history.attempts);
                } else {
                    acted = true;
                    out.push(Action::Recreate {
                        service: svc.name.clone(),
                        slot: n,
                        container: c.id.clone(),
                        reason,
                    });
                }
            }
            State::Created | State::Dead => {
                if let Some(until) = held {
                    wait(plan, svc, n, until, history.attempts);
                } else {
                    acted = true;
                    out.push(Action::Start {
                        service: svc.name.clone(),
                        slot: n,
                        container: c.id.clone(),
                        reset: false,
                        reason: Reason::NotStarted,
                    });
                }
            }
            State::Exited => {
                acted |= plan_exited(input, svc, n, c, outdated, out, plan);
            }
        }
    }

    // Fill the lowest free slots up to the target.
    let missing = (target as usize).saturating_sub(kept.len());
    let mut slot = 0u32;
    for _ in 0..missing {
        slot += 1;
        while occupied.contains(&slot) {
            slot += 1;
        }
        let history = input.backoff.get(&svc.name, slot);
        match history.not_before.filter(|t| *t > input.now) {
            Some(until) => wait(plan, svc, slot, until, history.attempts),
            None => {
                acted = true;
                out.push(Action::Create {
                    service: svc.name.clone(),
                    slot,
                    reason: Reason::Missing,
                });
            }
        }
    }

    // Rolling update: one running container at a time, and only while the rest of the
    // service is whole and nothing else is happening to it.
    let whole = kept.len() == target as usize
        && kept.values().all(|c| c.state == State::Running)
        && plan.waits.iter().all(|w| w.service != svc.name);
    if !acted
        && whole
        && let Some((n, c)) = recreate_candidates.first()
    {
        out.push(Action::Recreate {
            service: svc.name.clone(),
            slot: *n,
            container: c.id.clone(),
            reason: Reason::ConfigChanged,
        });
    }
}

/// An exited container: restart in place, recreate, wait out the backoff, or leave it.
/// Returns whether an action was planned.
fn plan_exited(
    input: &Input,
    svc: &Service,
    n: u32,
    c: &Container,
    outdated: bool,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) -> bool {
    let policy = svc.restart;
    let restart = match policy.condition {
        RestartCondition::Never => false,
        RestartCondition::OnFailure => c.exit_code != Some(0),
        RestartCondition::Always => true,
    };
    if !restart && !outdated {
        plan.stopped.push(Stopped {
            service: svc.name.clone(),
            slot: n,
            container: c.id.clone(),
            exit_code: c.exit_code,
            gave_up: false,
        });
        return false;
    }
    let history = input.backoff.get(&svc.name, n);
    let long_run = c
        .last_run()
        .is_some_and(|d| d >= input.backoff_cfg.reset_after);
    let attempts = if long_run { 0 } else { history.attempts };
    if !outdated && policy.max_attempts.is_some_and(|m| attempts >= m) {
        plan.stopped.push(Stopped {
            service: svc.name.clone(),
            slot: n,
            container: c.id.clone(),
            exit_code: c.exit_code,
            gave_up: true,
        });
        return false;
    }
    let delay = input.backoff_cfg.delay(attempts, policy.delay);
    let died = c.finished_at.unwrap_or(input.now).min(input.now);
    let mut due = died + delay;
    if let Some(t) = history.not_before {
        due = due.max(t);
    }
    if due > input.now {
        wait(plan, svc, n, due, attempts);
        return false;
    }
    out.push(if outdated {
        Action::Recreate {
            service: svc.name.clone(),
            slot: n,
            container: c.id.clone(),
            reason: Reason::ConfigChanged,
        }
    } else {
        Action::Start {
            service: svc.name.clone(),
            slot: n,
            container: c.id.clone(),
            reset: long_run,
            reason: Reason::Exited,
        }
    });
    true
}

fn wait(plan: &mut Plan, svc: &Service, slot: u32, until: SystemTime, attempts: u32) {
    plan.waits.push(Wait {
        service: svc.name.clone(),
        slot,
        until,
        attempts,
    });
}

fn remove(svc: &Service, slot: u32, c: &Container, reason: Reason) -> Action {
    Action::Remove {
        service: Some(svc.name.clone()),
        slot: Some(slot),
        container: c.id.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests;
