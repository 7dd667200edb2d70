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
//! - a global service has one replica on each eligible node (see [`global`]);
//! - a paused node takes no new replica, a drained one keeps none: its replicas move
//!   start-first within the service's update budget (`update_config`);
//! - a container without `drover.project=<project>` never appears in an action.

mod action;
pub mod backoff;
pub mod follow;
pub mod global;
mod groups;
pub mod history;
pub mod mesh;
pub mod place;
mod reuse;
mod rolling;
mod service;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::config::{Availability, DependsCondition, FailureAction, Project, Service};
use crate::observe::{Container, Snapshot};
use service::plan_service;

pub use action::{Action, Kind, Reason, Target};
pub use backoff::{Backoff, BackoffConfig};
pub use follow::{Follow, ImageDecision};
pub use groups::NodeGroups;
use groups::by_service;
pub use history::{Decision, History};
use place::{Candidate, Placer};
pub use reuse::{Held, Named, Quiet, Reuse};
use reuse::{Marks, Way};

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
    /// The services this plan left alone and that wait on no time (see [`Quiet`]).
    pub quiet: BTreeMap<String, Quiet>,
    /// The quiet services taken from the last plan as they were, not planned again: their
    /// containers, what they depend on and the world are the same, so is their state.
    pub replayed: BTreeSet<String>,
    /// The settled services planned only at some slots (see [`Quiet::patch`]): those
    /// slots, in order, and their containers.
    pub patched: BTreeMap<String, Vec<Held>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// What the plan holds back, as telemetry records it (`/status`).
    pub fn record(&self) -> crate::telemetry::PlanRecord {
        crate::telemetry::PlanRecord {
            waits: self
                .waits
                .iter()
                .map(|w| crate::telemetry::WaitRecord {
                    service: w.service.clone(),
                    slot: w.slot,
                    attempts: w.attempts,
                    until: w.until,
                })
                .collect(),
            stopped: self
                .stopped
                .iter()
                .map(|s| crate::telemetry::StoppedRecord {
                    service: s.service.clone(),
                    slot: s.slot,
                    container: s.container.clone(),
                    exit_code: s.exit_code,
                    gave_up: s.gave_up,
                })
                .collect(),
        }
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
    /// `x-drover.nodes[].availability`: a paused node takes nothing new, a drained one
    /// keeps nothing. A node removed from the list while it still holds replicas is
    /// drained until it holds none.
    pub availability: Availability,
    pub labels: &'a BTreeMap<String, String>,
    pub snapshot: &'a Snapshot,
    /// Its containers by service, when kept since its snapshot last changed (worked out
    /// here otherwise; see [`NodeGroups`]).
    pub groups: Option<&'a NodeGroups>,
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
    /// The routes last pushed to each ambassador (several nodes; see [`mesh`]).
    pub pushed: &'a mesh::Pushed,
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

    /// Whether `c` runs `svc` as it is now: its revision, and (several nodes) its ports
    /// published on the address its node has now, or not at all when there is none.
    fn current(&self, svc: &Service, c: &Container) -> bool {
        c.runs(svc) && self.published_where_wanted(svc, c)
    }

    fn published_where_wanted(&self, svc: &Service, c: &Container) -> bool {
        let wanted = match &self.project.mesh {
            Some(mesh) if svc.options.mesh => mesh.addresses.get(&c.node).copied(),
            _ => None,
        };
        c.mesh_address() == wanted
    }
}

/// Decide what to do. Applying the result and planning again yields no actions
/// (unless time passes or the engines change in between).
pub fn plan(input: &Input) -> Plan {
    plan_reusing(input, None)
}

/// [`plan`], taking each quiet service of the last plan as it was when neither its
/// containers nor those of a service it depends on changed: the same plan, at the cost of
/// the services that changed. The caller passes no `reuse` whenever anything else the plan
/// reads may have changed (the definition, the nodes, a fresh list, the rollouts).
pub fn plan_reusing(input: &Input, reuse: Option<Reuse>) -> Plan {
    // Rebalancing weighs every service's spread: a change anywhere can move any of them.
    let reuse = reuse.filter(|_| !input.rebalance);
    let project = input.project;
    let mut plan = Plan::default();

    let mut placer = placer(input);

    let missing = groups::missing(input);
    let grouped = by_service(input, &missing, &mut plan);
    let position = |name: &str| project.services.keys().position(|k| k == name);

    // The containers of the services some service depends on (read when a dependent is
    // blocked).
    let deps: BTreeMap<&str, Vec<&Container>> = (project.services.values())
        .flat_map(|s| s.depends_on.keys())
        .filter_map(|d| Some((d.as_str(), grouped.containers(position(d)?))))
        .collect();
    let mut service_actions: Vec<Action> = Vec::new();
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    for (name, k) in project
        .start_order()
        .into_iter()
        .filter_map(|n| Some((n, position(n)?)))
    {
        let svc = &project.services[name];
        let way = reuse.map_or(Way::Full, |r| r.way(name, svc, &mut touched));
        if let Way::Replay(q) = way {
            q.replay(name, &mut placer, &mut plan);
            continue;
        }
        if svc.mode == crate::config::DeployMode::Global {
            global::plan_global(
                input,
                svc,
                grouped.containers(k),
                &deps,
                &mut placer,
                &mut service_actions,
                &mut plan,
            );
            continue;
        }
        let before = Marks::of(&plan, &service_actions);
        let patched = match (way, reuse) {
            (Way::Patch(q), Some(r)) => q.patch(
                input,
                svc,
                (&grouped, k),
                r.named.get(name).map_or(&[], Vec::as_slice),
                &mut placer,
                &mut service_actions,
                &mut plan,
            ),
            _ => false,
        };
        let settled = patched
            || plan_service(
                input,
                svc,
                grouped.containers(k),
                &deps,
                &mut placer,
                &mut service_actions,
                &mut plan,
            );
        let rollout = input.halted.contains(name) || input.updating.contains(name);
        let open = before
            .open_since(&plan, &service_actions)
            .filter(|_| !rollout)
            // A service that acts is kept only when settled: it is patched at those slots.
            .filter(|open| settled || open.is_empty())
            .and_then(|open| {
                let held = plan.patched.get(name).map(Vec::as_slice);
                reuse::locate(&open, held, grouped.iter(k))
            });
        if let Some(open) = open {
            let since = (before.stopped, before.blocked);
            let q = Quiet::new(&plan, since, placer.counts_of(name), settled, open);
            plan.quiet.insert(name.to_string(), q);
        }
    }

    let mut mesh_actions = Vec::new();
    let nodes = groups::of_nodes(input, &missing);
    mesh::plan(input, &nodes, &mut mesh_actions, &mut plan.recheck);
    service_actions.splice(0..0, mesh_actions);
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

/// The placer over the nodes as the pass found them.
fn placer<'a>(input: &Input<'a>) -> Placer<'a> {
    let candidates = input.nodes.iter().map(|n| Candidate {
        name: n.name,
        labels: n.labels,
        open: n.state == NodeState::Up,
        availability: n.availability,
    });
    Placer::new(candidates.collect())
}

/// Nodes whose networks and volumes the plan depends on but were not listed: those where it
/// creates or starts a container. The caller lists them and plans again.
pub fn unlisted_infra<'a>(input: &Input<'a>, plan: &Plan) -> Vec<&'a str> {
    let wanted: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match &a.kind {
            Kind::Create | Kind::Start { .. } | Kind::Ambassador { .. } => Some(a.node.as_str()),
            Kind::Recreate { to } | Kind::StartFirst { to } => Some(to.as_str()),
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
        .filter_map(|a| match &a.kind {
            Kind::Create | Kind::Ambassador { .. } => Some(a.node.as_str()),
            Kind::Recreate { to } => Some(to.as_str()),
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
            out.push(Action::remove_network(view.name, &dup.id, &dup.name));
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
                out.push(Action::create_network(view.name, key, &net.name));
            }
        }
        for (key, vol) in &input.project.volumes {
            if !vol.external && !view.snapshot.volumes.contains(&vol.name) {
                out.push(Action::create_volume(view.name, key, &vol.name));
            }
        }
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

#[cfg(test)]
mod nodes_tests;
#[cfg(test)]
mod tests;
