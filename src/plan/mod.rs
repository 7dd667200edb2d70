//! The planner: desired state + observed state of every node -> the actions that close
//! the gap.
//!
//! Pure: no I/O, time passed in. This is where drover's judgement lives:
//! - a service never has more containers planned than its target;
//! - scale up fills the lowest free slots, scale down removes the highest;
//! - an exited container is restarted in place when its restart policy says so,
//!   with per-slot crash backoff; a removed one is recreated;
//! - the slots of a node that is down are placed on the nodes that are up;
//! - of two copies of one slot (a node came back), the newer placement is kept and the
//!   older removed once the newer runs;
//! - a changed definition, or a placement that no longer fits, recreates the service's
//!   containers one at a time; a replica with anonymous volumes is always replaced
//!   stop-first (its successor takes the volumes over, see the executor);
//! - a container without `drover.project=<project>` never appears in an action.

pub mod backoff;
pub mod history;
pub mod place;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::config::{
    DependsCondition, FailureAction, Project, RestartCondition, Service, UnhealthyAction,
    UpdateOrder,
};
use crate::observe::{Container, Health, Snapshot, State};

pub use backoff::{Backoff, BackoffConfig};
pub use history::{Decision, History};
use place::{Candidate, Placer};

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
    /// The container's node no longer satisfies the service's placement.
    Misplaced,
    /// The service has more containers than its target.
    ScaleDown,
    /// Two containers claim the same slot on one node.
    Duplicate,
    /// An older copy of a slot that now runs elsewhere (its node was down and came back).
    Stale,
    /// Moving a replica towards an even spread (`x-drover.rebalance`).
    Rebalance,
    /// The engine reports the container unhealthy.
    Unhealthy,
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
            Reason::Misplaced => "misplaced",
            Reason::ScaleDown => "scale-down",
            Reason::Duplicate => "duplicate",
            Reason::Stale => "stale",
            Reason::Rebalance => "rebalance",
            Reason::Unhealthy => "unhealthy",
            Reason::ServiceRemoved => "service-removed",
            Reason::BadLabels => "bad-labels",
        }
    }
}

/// One change to make on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the project network with this engine name (`key` is its key in the file).
    CreateNetwork {
        node: String,
        key: String,
        name: String,
    },
    /// Remove a network of the project that repeats the name of an older one (by id: the
    /// name is ambiguous).
    RemoveNetwork {
        node: String,
        id: String,
        name: String,
    },
    /// Create the project volume with this engine name.
    CreateVolume {
        node: String,
        key: String,
        name: String,
    },
    /// Create and start a container for the slot on `node`.
    Create {
        service: String,
        slot: u32,
        node: String,
        reason: Reason,
    },
    /// Start an existing container in place. `reset` forgets the slot's crash history
    /// (its last run was long enough).
    Start {
        service: String,
        slot: u32,
        node: String,
        container: String,
        reset: bool,
        reason: Reason,
    },
    /// Restart a running container in place (stop with its signal and grace, start).
    Restart {
        service: String,
        slot: u32,
        node: String,
        container: String,
        reason: Reason,
    },
    /// Start-first replacement: move the old container's name aside, create and start the
    /// slot's new copy on `to`; the old copy is removed once the new one runs.
    StartFirst {
        service: String,
        slot: u32,
        node: String,
        container: String,
        to: String,
        reason: Reason,
    },
    /// Stop and remove the container on `node`, then create and start the slot on `to`.
    Recreate {
        service: String,
        slot: u32,
        node: String,
        container: String,
        to: String,
        reason: Reason,
    },
    /// Stop (the container's stop signal and grace period) and remove.
    Remove {
        service: Option<String>,
        slot: Option<u32>,
        node: String,
        container: String,
        reason: Reason,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "create-network",
            Action::CreateVolume { .. } => "create-volume",
            Action::RemoveNetwork { .. } => "remove-network",
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Restart { .. } => "restart",
            Action::StartFirst { .. } => "start-first",
            Action::Recreate { .. } => "recreate",
            Action::Remove { .. } => "remove",
        }
    }

    pub fn service(&self) -> Option<&str> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. } => None,
            Action::Create { service, .. }
            | Action::Start { service, .. }
            | Action::Restart { service, .. }
            | Action::StartFirst { service, .. }
            | Action::Recreate { service, .. } => Some(service),
            Action::Remove { service, .. } => service.as_deref(),
        }
    }

    pub fn slot(&self) -> Option<u32> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. } => None,
            Action::Create { slot, .. }
            | Action::Start { slot, .. }
            | Action::Restart { slot, .. }
            | Action::StartFirst { slot, .. }
            | Action::Recreate { slot, .. } => Some(*slot),
            Action::Remove { slot, .. } => *slot,
        }
    }

    /// The node the action starts on.
    pub fn node(&self) -> &str {
        match self {
            Action::CreateNetwork { node, .. }
            | Action::RemoveNetwork { node, .. }
            | Action::CreateVolume { node, .. }
            | Action::Create { node, .. }
            | Action::Start { node, .. }
            | Action::Restart { node, .. }
            | Action::StartFirst { node, .. }
            | Action::Recreate { node, .. }
            | Action::Remove { node, .. } => node,
        }
    }

    /// The existing container this action changes, if any.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::Start { container, .. }
            | Action::Restart { container, .. }
            | Action::StartFirst { container, .. }
            | Action::Recreate { container, .. }
            | Action::Remove { container, .. } => Some(container),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<Reason> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. } => None,
            Action::Create { reason, .. }
            | Action::Start { reason, .. }
            | Action::Restart { reason, .. }
            | Action::StartFirst { reason, .. }
            | Action::Recreate { reason, .. }
            | Action::Remove { reason, .. } => Some(*reason),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateNetwork { name, node, .. } => {
                write!(f, "create network {name} on {node}")
            }
            Action::CreateVolume { name, node, .. } => write!(f, "create volume {name} on {node}"),
            Action::RemoveNetwork { name, id, node } => write!(
                f,
                "remove network {name} ({}) on {node} (duplicate)",
                crate::observe::short_id(id)
            ),
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
                write!(f, " on {}", self.node())?;
                if let Action::Recreate { to, node, .. } | Action::StartFirst { to, node, .. } =
                    self
                    && to != node
                {
                    write!(f, " to {to}")?;
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
    pub node: String,
    pub container: String,
    pub exit_code: Option<i64>,
    pub gave_up: bool,
}

/// A slot no node can take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub service: String,
    pub slot: u32,
    pub reason: String,
}

/// A rolling update whose new replicas failed beyond `max_failure_ratio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateFailed {
    pub service: String,
    pub action: FailureAction,
    pub failed: usize,
}

/// A slot not created yet because a dependency is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub service: String,
    pub dependency: String,
    pub condition: DependsCondition,
}

/// The outcome of one planning pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In execution order: infrastructure first, then services in depends_on order.
    pub actions: Vec<Action>,
    pub waits: Vec<Wait>,
    pub stopped: Vec<Stopped>,
    pub unplaced: Vec<Unplaced>,
    pub update_failed: Vec<UpdateFailed>,
    /// Services of `Input::updating` whose replicas all run the new definition and have
    /// settled (run for `monitor`, healthy with a healthcheck): their update is done.
    pub settled: Vec<String>,
    pub blocked: Vec<Blocked>,
    /// Times at which something will have changed without an event (a new replica's
    /// monitor period ending, an update delay passing).
    pub recheck: Vec<SystemTime>,
    /// Plan again after this long even if nothing happens (the earliest backoff expiry).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// How far a node can be trusted in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Listed just now: its containers are known and actions may go there.
    Up,
    /// Believed up, but this pass could not list it: its last known containers still
    /// count, and nothing is planned on it.
    Frozen,
    /// Declared down: its containers count for nothing and their slots go elsewhere.
    Down,
}

/// One node as the planner sees it.
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub state: NodeState,
    pub labels: &'a BTreeMap<String, String>,
    pub snapshot: &'a Snapshot,
}

/// Everything the planner looks at.
pub struct Input<'a> {
    pub project: &'a Project,
    pub nodes: &'a [NodeView<'a>],
    pub backoff: &'a Backoff,
    pub backoff_cfg: &'a BackoffConfig,
    pub now: SystemTime,
    /// drover's own container id: never acted on, whatever its labels say.
    pub exclude: Option<&'a str>,
    /// Move replicas towards an even spread (`x-drover.rebalance`).
    pub rebalance: bool,
    /// Services whose rolling update is paused (it failed with `failure_action: pause`).
    pub halted: &'a BTreeSet<String>,
    /// Services whose definition changed and whose new replicas have not all settled yet
    /// (see [`History::updating`]): their failures fail the update even when no old
    /// replica is left (one replica, or `parallelism` at least the count).
    pub updating: &'a BTreeSet<String>,
}

impl Input<'_> {
    fn state(&self, node: &str) -> NodeState {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(NodeState::Down, |n| n.state)
    }

    fn up(&self, node: &str) -> bool {
        self.state(node) == NodeState::Up
    }
}

/// Decide what to do. Applying the result and planning again yields no actions
/// (unless time passes or the engines change in between).
pub fn plan(input: &Input) -> Plan {
    let project = input.project;
    let mut plan = Plan::default();

    // Only the project's own containers, never drover itself, on nodes not known down.
    let owned: Vec<&Container> = input
        .nodes
        .iter()
        .filter(|n| n.state != NodeState::Down)
        .flat_map(|n| n.snapshot.containers.iter())
        .filter(|c| c.owned_by(&project.name))
        .filter(|c| input.exclude.is_none_or(|me| !c.id.starts_with(me)))
        .collect();

    let mut placer = Placer::new(
        input
            .nodes
            .iter()
            .map(|n| Candidate {
                name: n.name,
                labels: n.labels,
                open: n.state == NodeState::Up,
            })
            .collect(),
    );

    let mut by_service: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in &owned {
        match (c.service(), c.slot()) {
            (Some(s), Some(_)) if project.services.contains_key(s) => {
                by_service.entry(s).or_default().push(c)
            }
            (s, n) if input.up(&c.node) => plan.actions.push(Action::Remove {
                service: s.map(str::to_string),
                slot: n,
                node: c.node.clone(),
                container: c.id.clone(),
                reason: if s.is_some() && n.is_some() {
                    Reason::ServiceRemoved
                } else {
                    Reason::BadLabels
                },
            }),
            _ => {}
        }
    }

    let deps = by_service.clone();
    let mut service_actions: Vec<Action> = Vec::new();
    for name in project.start_order() {
        let svc = &project.services[name];
        let containers = by_service.remove(name).unwrap_or_default();
        plan_service(
            input,
            svc,
            containers,
            &deps,
            &mut placer,
            &mut service_actions,
            &mut plan,
        );
    }

    infrastructure(input, &service_actions, &mut plan.actions);
    plan.actions.extend(service_actions);

    plan.requeue_after = plan
        .waits
        .iter()
        .map(|w| w.until)
        .chain(plan.recheck.iter().copied())
        .map(|t| t.duration_since(input.now).unwrap_or_default())
        .min();
    plan
}

/// Nodes whose networks and volumes the plan depends on but were not listed: those where it
/// creates or starts a container. The caller lists them and plans again.
pub fn unlisted_infra<'a>(input: &Input<'a>, plan: &Plan) -> Vec<&'a str> {
    let wanted: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { node, .. } | Action::Start { node, .. } => Some(node.as_str()),
            Action::Recreate { to, .. } | Action::StartFirst { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    input
        .nodes
        .iter()
        .filter(|n| wanted.contains(n.name) && !n.snapshot.infra_listed)
        .map(|n| n.name)
        .collect()
}

/// Networks and volumes missing on a node where a container is about to be created. Only
/// planned then, so an idle pass stays free of them.
fn infrastructure(input: &Input, actions: &[Action], out: &mut Vec<Action>) {
    let targets: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { node, .. } => Some(node.as_str()),
            Action::Recreate { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    // A repeated network name makes every start on that network fail: remove the copies
    // on every node that is up, whatever else the pass does.
    for view in input
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Up && n.snapshot.infra_listed)
    {
        for dup in &view.snapshot.duplicate_networks {
            out.push(Action::RemoveNetwork {
                node: view.name.to_string(),
                id: dup.id.clone(),
                name: dup.name.clone(),
            });
        }
    }
    // Unlisted, the node's networks are unknown: the caller lists them and plans again.
    for view in input
        .nodes
        .iter()
        .filter(|n| targets.contains(n.name) && n.snapshot.infra_listed)
    {
        for (key, net) in &input.project.networks {
            if !net.external && !view.snapshot.networks.contains(&net.name) {
                out.push(Action::CreateNetwork {
                    node: view.name.to_string(),
                    key: key.clone(),
                    name: net.name.clone(),
                });
            }
        }
        for (key, vol) in &input.project.volumes {
            if !vol.external && !view.snapshot.volumes.contains(&vol.name) {
                out.push(Action::CreateVolume {
                    node: view.name.to_string(),
                    key: key.clone(),
                    name: vol.name.clone(),
                });
            }
        }
    }
}

/// Rank the copies of one slot: the current one sorts first. The newest placement wins;
/// among equals, the one in the best state, then the node name.
fn keep_rank(
    c: &Container,
) -> (
    std::cmp::Reverse<u64>,
    u8,
    std::cmp::Reverse<Option<SystemTime>>,
    String,
) {
    let state = match c.state {
        State::Running => 0,
        State::Restarting | State::Paused => 1,
        State::Created | State::Exited => 2,
        State::Unknown => 3,
        State::Dead | State::Removing => 4,
    };
    (
        std::cmp::Reverse(c.generation()),
        state,
        std::cmp::Reverse(c.started_at),
        c.node.clone(),
    )
}

fn plan_service(
    input: &Input,
    svc: &Service,
    containers: Vec<&Container>,
    deps: &BTreeMap<&str, Vec<&Container>>,
    placer: &mut Placer,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) {
    let target = svc.replicas;
    let backoff_cfg = service_backoff(input.backoff_cfg, svc);
    let current = |c: &Container| c.config_hash() == Some(svc.config_hash.as_str());

    // One container per slot. An older copy goes once the current one runs; a copy on a
    // node that cannot be acted on now stays until it can.
    let mut slots: BTreeMap<u32, Vec<&Container>> = BTreeMap::new();
    for c in containers {
        if let Some(n) = c.slot() {
            slots.entry(n).or_default().push(c);
        }
    }
    let mut kept: BTreeMap<u32, &Container> = BTreeMap::new();
    let mut removals: Vec<Action> = Vec::new();
    let mut overlap = 0usize;
    for (n, mut cs) in slots {
        cs.sort_by_key(|c| keep_rank(c));
        let mut rest = cs.into_iter();
        let Some(first) = rest.next() else { continue };
        kept.insert(n, first);
        placer.add(&svc.name, &first.node);
        for other in rest {
            let newer = other.generation() < first.generation();
            if !input.up(&other.node) || other.state == State::Removing {
                continue;
            }
            if newer && first.state != State::Running && about_to_run(svc, first) {
                // Keep the old copy serving until the current one runs.
                overlap += 1;
                continue;
            }
            let reason = if !newer {
                Reason::Duplicate
            } else if current(first) && !current(other) {
                Reason::ConfigChanged
            } else {
                Reason::Stale
            };
            removals.push(remove(svc, n, other, reason));
        }
    }

    // Scale down: not-running first, then unhealthy, then outdated, then the newest
    // (by the second), then the highest slot.
    let occupied: BTreeSet<u32> = kept.keys().copied().collect();
    if kept.len() > target as usize {
        let mut order: Vec<(u32, &Container)> = kept.iter().map(|(n, c)| (*n, *c)).collect();
        order.sort_by_key(|(n, c)| {
            (
                c.state == State::Running,
                c.health != Health::Unhealthy,
                current(c),
                std::cmp::Reverse(c.generation() / 1_000_000_000),
                std::cmp::Reverse(*n),
            )
        });
        for (n, c) in order.into_iter().take(kept.len() - target as usize) {
            kept.remove(&n);
            placer.remove(&svc.name, &c.node);
            if input.up(&c.node) && c.state != State::Removing {
                removals.push(remove(svc, n, c, Reason::ScaleDown));
            }
        }
    }
    out.extend(removals);

    // Containers in the kept slots, on nodes that can be acted on.
    let mut misplaced_running: Vec<(u32, &Container)> = Vec::new();
    let mut outdated_running: Vec<(u32, &Container)> = Vec::new();
    let mut acted = false;
    for (&n, c) in &kept {
        if !input.up(&c.node) {
            continue;
        }
        let outdated = !current(c);
        let misplaced = !placer.allowed(svc, &c.node);
        let history = input.backoff.get(&svc.name, n);
        let held = history.not_before.filter(|t| *t > input.now);
        match c.state {
            State::Running | State::Paused | State::Restarting | State::Unknown => {
                let unhealthy = c.health == Health::Unhealthy
                    && c.state == State::Running
                    && svc.unhealthy != UnhealthyAction::Ignore;
                if misplaced {
                    misplaced_running.push((n, c));
                } else if outdated {
                    outdated_running.push((n, c));
                } else if unhealthy {
                    let attempts = history.attempts;
                    if let Some(until) = held {
                        wait(plan, svc, n, until, attempts);
                    } else {
                        acted = true;
                        out.push(match svc.unhealthy {
                            UnhealthyAction::Recreate => Action::Recreate {
                                service: svc.name.clone(),
                                slot: n,
                                node: c.node.clone(),
                                container: c.id.clone(),
                                to: c.node.clone(),
                                reason: Reason::Unhealthy,
                            },
                            _ => Action::Restart {
                                service: svc.name.clone(),
                                slot: n,
                                node: c.node.clone(),
                                container: c.id.clone(),
                                reason: Reason::Unhealthy,
                            },
                        });
                    }
                }
            }
            State::Removing => {}
            State::Dead | State::Created if outdated || misplaced || c.state == State::Dead => {
                let reason = if c.state == State::Dead {
                    Reason::Dead
                } else if misplaced {
                    Reason::Misplaced
                } else {
                    Reason::ConfigChanged
                };
                if let Some(until) = held {
                    wait(plan, svc, n, until, history.attempts);
                } else if let Some(a) = recreate(svc, n, c, reason, misplaced, placer, plan) {
                    acted = true;
                    out.push(a);
                }
            }
            State::Created | State::Dead => {
                if let Some(until) = held {
                    wait(plan, svc, n, until, history.attempts);
                } else if history.attempts > 0 {
                    // Its start has failed before: the engine may hold stale runtime state
                    // for it (after an engine restart in the middle of a start, every start
                    // fails with "task already exists"). A fresh container has none.
                    if let Some(a) = recreate(svc, n, c, Reason::NotStarted, false, placer, plan) {
                        acted = true;
                        out.push(a);
                    }
                } else {
                    acted = true;
                    out.push(Action::Start {
                        service: svc.name.clone(),
                        slot: n,
                        node: c.node.clone(),
                        container: c.id.clone(),
                        reset: false,
                        reason: Reason::NotStarted,
                    });
                }
            }
            State::Exited => {
                acted |= plan_exited(
                    input,
                    &backoff_cfg,
                    svc,
                    n,
                    c,
                    outdated,
                    misplaced,
                    placer,
                    out,
                    plan,
                );
            }
        }
    }

    // Fill the lowest free slots up to the target, on the best nodes, once the
    // dependencies that must be healthy or finished are.
    let missing = (target as usize).saturating_sub(kept.len());
    let blocked = if missing > 0 {
        blocked_by(svc, input, deps)
    } else {
        None
    };
    if let Some(b) = blocked {
        plan.blocked.push(b);
    } else {
        let mut slot = 0u32;
        for _ in 0..missing {
            slot += 1;
            while occupied.contains(&slot) {
                slot += 1;
            }
            let history = input.backoff.get(&svc.name, slot);
            if let Some(until) = history.not_before.filter(|t| *t > input.now) {
                wait(plan, svc, slot, until, history.attempts);
                continue;
            }
            match placer.place(svc) {
                Ok(node) => {
                    acted = true;
                    out.push(Action::Create {
                        service: svc.name.clone(),
                        slot,
                        node,
                        reason: Reason::Missing,
                    });
                }
                Err(reason) => plan.unplaced.push(Unplaced {
                    service: svc.name.clone(),
                    slot,
                    reason,
                }),
            }
        }
    }

    // A rolling update whose new replicas fail beyond the tolerated ratio stops here.
    let updating = !outdated_running.is_empty() || input.updating.contains(&svc.name);
    if updating && update_failed(svc, &kept, plan) {
        return;
    }
    if input.updating.contains(&svc.name) && settled(input, svc, &kept) {
        plan.settled.push(svc.name.clone());
    }
    // Rolling changes only while nothing else is happening to the service.
    let quiet = !acted
        && plan.waits.iter().all(|w| w.service != svc.name)
        && plan.unplaced.iter().all(|u| u.service != svc.name);
    if !quiet {
        return;
    }
    let whole = kept.len() == target as usize
        && kept.values().all(|c| c.state == State::Running)
        && overlap == 0;
    if whole && let Some((n, c)) = misplaced_running.first() {
        if let Some(a) = recreate(svc, *n, c, Reason::Misplaced, true, placer, plan) {
            out.push(a);
        }
        return;
    }
    if !outdated_running.is_empty() {
        rolling_update(input, svc, &kept, &outdated_running, overlap, out, plan);
        return;
    }
    if whole
        && input.rebalance
        && let Some(a) = rebalance(svc, &kept, placer)
    {
        out.push(a);
    }
}

/// The service's own backoff settings over the global ones.
pub fn service_backoff(global: &BackoffConfig, svc: &Service) -> BackoffConfig {
    BackoffConfig {
        initial: svc.backoff.initial.unwrap_or(global.initial),
        max: svc.backoff.max.unwrap_or(global.max),
        reset_after: svc.backoff.reset_after.unwrap_or(global.reset_after),
    }
}

/// One step of a rolling update (`deploy.update_config`): up to `parallelism` outdated
/// replicas at once, each counting as done when its new copy has run (and been healthy)
/// for `monitor`; `delay` between batches; stop or fail per `failure_action`.
fn rolling_update(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    outdated: &[(u32, &Container)],
    overlap: usize,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) {
    if input.halted.contains(&svc.name) {
        return;
    }
    let cfg = &svc.update;
    let hash = svc.config_hash.as_str();
    let has_health = health_checked(svc);
    let fresh: Vec<&Container> = kept
        .values()
        .copied()
        .filter(|c| c.config_hash() == Some(hash))
        .collect();
    let settle = |c: &Container| c.created.map(|t| t + cfg.monitor);
    let in_progress: Vec<&Container> = fresh
        .iter()
        .copied()
        .filter(|c| {
            c.state != State::Running
                || settle(c).is_none_or(|t| t > input.now)
                || (has_health && c.health != Health::Healthy)
        })
        .collect();
    for c in &in_progress {
        if let Some(t) = settle(c).filter(|t| *t > input.now) {
            plan.recheck.push(t);
        }
    }
    let batch = if cfg.parallelism == 0 {
        outdated.len()
    } else {
        cfg.parallelism as usize
    };
    let busy = in_progress.len() + overlap;
    if busy >= batch {
        return;
    }
    if !cfg.delay.is_zero() && !fresh.is_empty() {
        let last = fresh.iter().filter_map(|c| settle(c)).max();
        if let Some(next) = last.map(|t| t + cfg.delay)
            && next > input.now
        {
            plan.recheck.push(next);
            return;
        }
    }
    for (n, c) in outdated.iter().take(batch - busy) {
        // A replica with anonymous volumes hands them to its successor: stop-first, so two
        // containers never write to one volume (compose never overlaps them either).
        let order = if c.anonymous_volumes.is_empty() {
            cfg.order
        } else {
            UpdateOrder::StopFirst
        };
        out.push(match order {
            UpdateOrder::StopFirst => Action::Recreate {
                service: svc.name.clone(),
                slot: *n,
                node: c.node.clone(),
                container: c.id.clone(),
                to: c.node.clone(),
                reason: Reason::ConfigChanged,
            },
            UpdateOrder::StartFirst => Action::StartFirst {
                service: svc.name.clone(),
                slot: *n,
                node: c.node.clone(),
                container: c.id.clone(),
                to: c.node.clone(),
                reason: Reason::ConfigChanged,
            },
        });
    }
}

/// Whether the service's containers report health (a healthcheck that is not `NONE`).
fn health_checked(svc: &Service) -> bool {
    svc.healthcheck
        .as_ref()
        .is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"))
}

/// Whether every replica of the service runs its current definition and has settled: up
/// for `monitor` since it was created, and healthy when the service has a healthcheck.
fn settled(input: &Input, svc: &Service, kept: &BTreeMap<u32, &Container>) -> bool {
    let has_health = health_checked(svc);
    kept.len() == svc.replicas as usize
        && kept.values().all(|c| {
            c.config_hash() == Some(svc.config_hash.as_str())
                && c.state == State::Running
                && c.created
                    .is_some_and(|t| t + svc.update.monitor <= input.now)
                && (!has_health || c.health == Health::Healthy)
        })
}

/// Whether the new replicas of an update in progress failed beyond
/// `max_failure_ratio`; if so (and the action is not `continue`), report it.
fn update_failed(svc: &Service, kept: &BTreeMap<u32, &Container>, plan: &mut Plan) -> bool {
    let cfg = &svc.update;
    let failed = kept
        .values()
        .filter(|c| c.config_hash() == Some(svc.config_hash.as_str()))
        .filter(|c| matches!(c.state, State::Exited | State::Dead) || c.health == Health::Unhealthy)
        .count();
    let too_many = failed > 0 && failed as f64 > cfg.max_failure_ratio * svc.replicas.max(1) as f64;
    if too_many && cfg.failure_action != FailureAction::Continue {
        plan.update_failed.push(UpdateFailed {
            service: svc.name.clone(),
            action: cfg.failure_action,
            failed,
        });
        return true;
    }
    false
}

/// The first dependency that must be healthy or finished and is not, if any.
fn blocked_by(
    svc: &Service,
    input: &Input,
    deps: &BTreeMap<&str, Vec<&Container>>,
) -> Option<Blocked> {
    for (name, dep) in &svc.depends_on {
        let Some(dep_svc) = input.project.services.get(name) else {
            continue;
        };
        let cs = deps.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let ready = match dep.condition {
            DependsCondition::ServiceStarted => true,
            DependsCondition::ServiceHealthy => {
                let checked = health_checked(dep_svc);
                !cs.is_empty()
                    && cs.iter().all(|c| {
                        c.state == State::Running && (!checked || c.health == Health::Healthy)
                    })
            }
            DependsCondition::ServiceCompletedSuccessfully => {
                !cs.is_empty()
                    && cs
                        .iter()
                        .all(|c| c.state == State::Exited && c.exit_code == Some(0))
            }
        };
        if !ready {
            return Some(Blocked {
                service: svc.name.clone(),
                dependency: name.clone(),
                condition: dep.condition,
            });
        }
    }
    None
}

/// Whether a container that is not running will be started by a coming pass.
fn about_to_run(svc: &Service, c: &Container) -> bool {
    match c.state {
        State::Created | State::Restarting | State::Dead => true,
        State::Exited => match svc.restart.condition {
            RestartCondition::Never => false,
            RestartCondition::OnFailure => c.exit_code != Some(0),
            RestartCondition::Always => true,
        },
        _ => false,
    }
}

/// Recreate a slot's container: in place, or on another node when `moving`.
fn recreate(
    svc: &Service,
    n: u32,
    c: &Container,
    reason: Reason,
    moving: bool,
    placer: &mut Placer,
    plan: &mut Plan,
) -> Option<Action> {
    let to = if moving {
        placer.remove(&svc.name, &c.node);
        match placer.place(svc) {
            Ok(node) => node,
            Err(why) => {
                placer.add(&svc.name, &c.node);
                plan.unplaced.push(Unplaced {
                    service: svc.name.clone(),
                    slot: n,
                    reason: why,
                });
                return None;
            }
        }
    } else {
        c.node.clone()
    };
    Some(Action::Recreate {
        service: svc.name.clone(),
        slot: n,
        node: c.node.clone(),
        container: c.id.clone(),
        to,
        reason,
    })
}

/// Start-first move of one replica from the fullest eligible node to the emptiest, when
/// they differ by more than one. The new copy is newer, so the old one goes once it runs.
fn rebalance(
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    placer: &mut Placer,
) -> Option<Action> {
    let eligible = placer.eligible(svc);
    let (min_node, min) = eligible
        .iter()
        .map(|n| (*n, placer.count(&svc.name, n)))
        .min_by_key(|(n, c)| (*c, *n))?;
    let (max_node, max) = eligible
        .iter()
        .map(|n| (*n, placer.count(&svc.name, n)))
        .max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))?;
    if max <= min + 1 {
        return None;
    }
    if let Some(m) = svc.placement.max_replicas_per_node
        && min >= m
    {
        return None;
    }
    let (&slot, _) = kept.iter().rev().find(|(_, c)| c.node == max_node)?;
    placer.add(&svc.name, min_node);
    Some(Action::Create {
        service: svc.name.clone(),
        slot,
        node: min_node.to_string(),
        reason: Reason::Rebalance,
    })
}

/// An exited container: restart in place, recreate, wait out the backoff, or leave it.
/// Returns whether an action was planned.
#[allow(clippy::too_many_arguments)]
fn plan_exited(
    input: &Input,
    backoff_cfg: &BackoffConfig,
    svc: &Service,
    n: u32,
    c: &Container,
    outdated: bool,
    misplaced: bool,
    placer: &mut Placer,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) -> bool {
    let policy = svc.restart;
    let restart = match policy.condition {
        RestartCondition::Never => false,
        RestartCondition::OnFailure => c.exit_code != Some(0),
        RestartCondition::Always => true,
    };
    let changed = outdated || misplaced;
    if !restart && !changed {
        plan.stopped.push(Stopped {
            service: svc.name.clone(),
            slot: n,
            node: c.node.clone(),
            container: c.id.clone(),
            exit_code: c.exit_code,
            gave_up: false,
        });
        return false;
    }
    let history = input.backoff.get(&svc.name, n);
    let last_run = c.last_run();
    let long_run = last_run.is_some_and(|d| d >= backoff_cfg.reset_after);
    let attempts = if long_run { 0 } else { history.attempts };
    // `window`: a run longer than it starts the count of attempts afresh.
    let counted = match policy.window {
        Some(w) if last_run.is_some_and(|d| d >= w) => 0,
        _ => attempts,
    };
    if !changed && policy.max_attempts.is_some_and(|m| counted >= m) {
        plan.stopped.push(Stopped {
            service: svc.name.clone(),
            slot: n,
            node: c.node.clone(),
            container: c.id.clone(),
            exit_code: c.exit_code,
            gave_up: true,
        });
        return false;
    }
    let delay = backoff_cfg.delay(attempts, policy.delay);
    let died = c.finished_at.unwrap_or(input.now).min(input.now);
    let mut due = died + delay;
    if let Some(t) = history.not_before {
        due = due.max(t);
    }
    if due > input.now {
        wait(plan, svc, n, due, attempts);
        return false;
    }
    if changed {
        let reason = if misplaced {
            Reason::Misplaced
        } else {
            Reason::ConfigChanged
        };
        return match recreate(svc, n, c, reason, misplaced, placer, plan) {
            Some(a) => {
                out.push(a);
                true
            }
            None => false,
        };
    }
    out.push(Action::Start {
        service: svc.name.clone(),
        slot: n,
        node: c.node.clone(),
        container: c.id.clone(),
        reset: long_run,
        reason: Reason::Exited,
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
        node: c.node.clone(),
        container: c.id.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests;
