//! `deploy.mode: global`: one replica of the service on each eligible node, as a Swarm
//! global service or a Kubernetes DaemonSet.
//!
//! - Eligible: the node satisfies the service's placement constraints and is not drained;
//!   an active node that is up gets a replica, a paused one keeps the one it has and gets
//!   none. `max_replicas_per_node` and the replica count mean nothing here.
//! - A replica belongs to its node: its slot is the node's position in the project's node
//!   list (1 for the first; the one engine of a project without `x-drover.nodes` is 1), so
//!   `{project}-{service}-2` is the replica of the second node, and a node that returns
//!   finds its own replica (or gets its own slot back). A container of the service counts
//!   as its node's replica whatever slot its label says (the list was edited since it was
//!   created): nothing is replaced because a node was added or removed elsewhere in the
//!   list.
//! - A node that is down keeps its replica, counted for nothing, and nothing is placed
//!   elsewhere in its stead; a node that no longer fits (its constraints, drained, removed
//!   from the list) has its replica removed.
//! - Restarts, crash backoff, health and rolling updates are a replicated service's, the
//!   slots being the nodes' (see [`super::service`], [`super::rolling`]).

use std::collections::BTreeMap;

use super::place::Placer;
use super::rolling::roll;
use super::service::{Sink, blocked_by, copies, remove, repair, wait};
use super::{Action, Input, NodeState, NodeView, Plan, Reason, Unplaced};
use crate::config::{Availability, DeployMode, Service};
use crate::observe::Container;

/// The slot of a global service's replica on the node at `index` (from 0) of the
/// project's nodes.
pub fn slot_of(index: usize) -> u32 {
    index as u32 + 1
}

/// Whether the node `name` (with `labels`, `availability`) may run a replica of `svc`: not
/// drained, and the service's constraints allow it.
pub fn fits(
    svc: &Service,
    name: &str,
    labels: &BTreeMap<String, String>,
    availability: Availability,
) -> bool {
    availability != Availability::Drain
        && svc
            .placement
            .constraints
            .iter()
            .all(|c| c.allows(name, labels))
}

/// Whether `view`'s list holds a container of `svc` of the project.
fn holds(input: &Input, svc: &Service, view: &NodeView) -> bool {
    view.snapshot.containers.iter().any(|c| {
        c.owned_by(&input.project.name)
            && c.service() == Some(svc.name.as_str())
            && input.exclude.is_none_or(|me| !c.id.starts_with(me))
    })
}

/// The nodes that should hold a replica of the global service `svc`, as (slot, node): not
/// down, allowed by the constraints, not drained, and active (a paused node only when it
/// holds one already). Their number is the service's desired count.
pub fn wanted<'a>(input: &Input<'a>, svc: &Service) -> Vec<(u32, &'a str)> {
    input
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.state != NodeState::Down && fits(svc, v.name, v.labels, v.availability))
        .filter(|(_, v)| v.availability == Availability::Active || holds(input, svc, v))
        .map(|(i, v)| (slot_of(i), v.name))
        .collect()
}

/// The slot of a global service's replica on `node`.
fn node_slot(input: &Input, node: &str) -> Option<u32> {
    input.nodes.iter().position(|v| v.name == node).map(slot_of)
}

/// One global service's pass: one copy per node, the replicas of nodes that no longer
/// fit removed, each kept one repaired, the nodes without one filled, then updates.
pub(super) fn plan_global(
    input: &Input,
    svc: &Service,
    containers: Vec<&Container>,
    deps: &BTreeMap<&str, Vec<&Container>>,
    placer: &mut Placer,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) {
    debug_assert_eq!(svc.mode, DeployMode::Global);
    let mut slots = copies(input, svc, containers, placer, &|c| {
        node_slot(input, &c.node)
    });
    // A node that no longer fits loses its replica: there is nowhere else for it to go.
    let leaving: Vec<u32> = slots
        .kept
        .iter()
        .filter(|(_, c)| !placer.allowed(svc, &c.node))
        .map(|(n, _)| *n)
        .collect();
    for n in leaving {
        let c = slots.kept.remove(&n).expect("kept");
        placer.remove(&svc.name, &c.node);
        if input.up(&c.node) && c.state != crate::observe::State::Removing {
            let reason = if placer.drained(&c.node) {
                Reason::Drained
            } else {
                Reason::Misplaced
            };
            slots.removals.push(remove(svc, n, c, reason));
        }
    }
    out.append(&mut slots.removals);
    // The rest of the pass is a replicated service's over the nodes' slots, its count the
    // nodes that should hold a replica.
    let wanted = wanted(input, svc);
    let svc = &Service {
        replicas: wanted.len() as u32,
        ..svc.clone()
    };
    let mut sink = Sink {
        out,
        plan,
        acted: false,
    };
    let pending = repair(input, svc, &slots.kept, placer, &mut sink);
    fill(input, svc, &wanted, &slots.kept, deps, placer, &mut sink);
    roll(
        input,
        svc,
        &slots.kept,
        &pending,
        slots.overlap,
        placer,
        &mut sink,
    );
}

/// A replica on each node that should hold one and can take it now (up and active), once
/// the dependencies are ready.
fn fill(
    input: &Input,
    svc: &Service,
    wanted: &[(u32, &str)],
    kept: &BTreeMap<u32, &Container>,
    deps: &BTreeMap<&str, Vec<&Container>>,
    placer: &mut Placer,
    sink: &mut Sink,
) {
    let missing: Vec<(u32, &str)> = wanted
        .iter()
        .copied()
        .filter(|(slot, _)| !kept.contains_key(slot))
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Some(b) = blocked_by(svc, input, deps) {
        sink.plan.blocked.push(b);
        return;
    }
    for (slot, node) in missing {
        if !input.up(node) {
            continue;
        }
        if !placer.eligible(svc).contains(&node) {
            sink.plan.unplaced.push(Unplaced {
                service: svc.name.clone(),
                slot,
                reason: format!("its node {node} is paused: it takes no new replica"),
            });
            continue;
        }
        let history = input.backoff.get(&svc.name, slot);
        if let Some(until) = history.not_before.filter(|t| *t > input.now) {
            wait(sink.plan, svc, slot, until, history.attempts);
            continue;
        }
        placer.add(&svc.name, node);
        sink.act(Action::create(&svc.name, slot, node, Reason::Missing));
    }
}
