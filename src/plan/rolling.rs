//! The last phase of a service's pass, once nothing else is happening to it: moving the
//! replicas off a drained node, a rolling update (`deploy.update_config`), moving a replica
//! whose node no longer fits, or a rebalancing move; and watching an update until its new
//! replicas settle or fail. Drain moves and update steps share one budget: the service's
//! `update_config` (`parallelism` replicas in flight, each until it has run for `monitor`,
//! healthy with a healthcheck; `delay` between batches).

use std::collections::BTreeMap;

use super::place::Placer;
use super::service::{Sink, recreate};
use super::{Action, Input, Plan, Reason, Unplaced, UpdateFailed};
use crate::config::{DeployMode, FailureAction, Service, UpdateOrder};
use crate::observe::{Container, Health, State};

/// Replicas the repair phase left for this one: running, but on a node that no longer fits
/// or on an old definition.
#[derive(Default)]
pub(super) struct Pending<'c> {
    pub misplaced: Vec<(u32, &'c Container)>,
    /// Running on a drained node: moved start-first within the update budget.
    pub drained: Vec<(u32, &'c Container)>,
    pub outdated: Vec<(u32, &'c Container)>,
}

impl Pending<'_> {
    /// Nothing to roll: no replica misplaced, drained or outdated.
    pub fn is_empty(&self) -> bool {
        self.misplaced.is_empty() && self.drained.is_empty() && self.outdated.is_empty()
    }
}

/// Watch an update, then (when the service is quiet and whole) move one misplaced replica,
/// take one step of a rolling update, or rebalance.
pub(super) fn roll(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    pending: &Pending,
    overlap: usize,
    placer: &mut Placer,
    sink: &mut Sink,
) {
    // A rolling update whose new replicas fail beyond the tolerated ratio stops here.
    let updating = !pending.outdated.is_empty() || input.updating.contains(&svc.name);
    if updating && update_failed(input, svc, kept, sink.plan) {
        return;
    }
    if input.updating.contains(&svc.name) && settled(input, svc, kept) {
        sink.plan.settled.push(svc.name.clone());
    }
    // A drained node is emptied whatever else waits (a crash loop elsewhere, an unplaced
    // slot), as long as this pass does nothing else to the service.
    if !pending.drained.is_empty() {
        if !sink.acted {
            drain(input, svc, kept, &pending.drained, overlap, placer, sink);
        }
        return;
    }
    // Rolling changes only while nothing else is happening to the service.
    let plan = &*sink.plan;
    let quiet = !sink.acted
        && plan.waits.iter().all(|w| w.service != svc.name)
        && plan.unplaced.iter().all(|u| u.service != svc.name);
    if !quiet {
        return;
    }
    let whole = kept.len() == svc.replicas as usize
        && kept.values().all(|c| c.state == State::Running)
        && overlap == 0;
    if whole && let Some((n, c)) = pending.misplaced.first() {
        if let Some(a) = recreate(svc, *n, c, Reason::Misplaced, true, placer, sink.plan) {
            sink.out.push(a);
        }
        return;
    }
    if !pending.outdated.is_empty() {
        rolling_update(
            input,
            svc,
            kept,
            &pending.outdated,
            overlap,
            sink.out,
            sink.plan,
        );
        return;
    }
    if whole
        && input.rebalance
        && svc.mode == DeployMode::Replicated
        && let Some(a) = rebalance(svc, kept, placer)
    {
        sink.out.push(a);
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
    let room = room(input, svc, kept, overlap, outdated.len(), plan);
    for (n, c) in outdated.iter().take(room) {
        let reason = if c.config_hash() != Some(svc.config_hash.as_str()) {
            Reason::ConfigChanged
        } else if c.runs(svc) {
            Reason::AddressChanged
        } else {
            Reason::ImageChanged
        };
        // A replica with anonymous volumes hands them to its successor: stop-first, so two
        // containers never write to one volume (compose never overlaps them either).
        let order = if c.anonymous_volumes.is_empty() {
            cfg.order
        } else {
            UpdateOrder::StopFirst
        };
        out.push(match order {
            UpdateOrder::StopFirst => {
                Action::recreate(&svc.name, *n, &c.node, &c.id, &c.node, reason)
            }
            UpdateOrder::StartFirst => {
                Action::start_first(&svc.name, *n, &c.node, &c.id, &c.node, reason)
            }
        });
    }
}

/// How many more replicas may be replaced (or moved) now, of `wanted`: `parallelism` (all
/// when 0) less those in flight (a new copy not run for `monitor` yet, or not healthy yet
/// with a healthcheck, or an old copy still serving until its successor runs); none
/// until `delay` has passed since the last batch settled.
fn room(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    overlap: usize,
    wanted: usize,
    plan: &mut Plan,
) -> usize {
    let cfg = &svc.update;
    let has_health = health_checked(svc);
    let fresh: Vec<&Container> = kept
        .values()
        .copied()
        .filter(|c| input.current(svc, c))
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
        wanted
    } else {
        cfg.parallelism as usize
    };
    let busy = in_progress.len() + overlap;
    if busy >= batch {
        return 0;
    }
    if !cfg.delay.is_zero() && !fresh.is_empty() {
        let last = fresh.iter().filter_map(|c| settle(c)).max();
        if let Some(next) = last.map(|t| t + cfg.delay)
            && next > input.now
        {
            plan.recheck.push(next);
            return 0;
        }
    }
    batch - busy
}

/// Move replicas off drained nodes, start-first, as many at once as the update budget
/// allows ([`room`]): each new copy is created on another node first, and the old one is
/// removed once the new one runs, so the service never drops below its target. A replica
/// no other node can take is removed all the same (nothing runs on a drained node, as in
/// Swarm), and its slot shows as unplaceable.
fn drain(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    drained: &[(u32, &Container)],
    overlap: usize,
    placer: &mut Placer,
    sink: &mut Sink,
) {
    let room = room(input, svc, kept, overlap, drained.len(), sink.plan);
    for (n, c) in drained.iter().take(room) {
        placer.remove(&svc.name, &c.node);
        match placer.place(svc) {
            Ok(to) => sink.act(Action::start_first(
                &svc.name,
                *n,
                &c.node,
                &c.id,
                to,
                Reason::Drained,
            )),
            Err(why) => {
                sink.plan.unplaced.push(Unplaced {
                    service: svc.name.clone(),
                    slot: *n,
                    reason: format!(
                        "its node {} is drained and no other node can take it: {why}",
                        c.node
                    ),
                });
                sink.act(Action::remove(
                    &svc.name,
                    *n,
                    &c.node,
                    &c.id,
                    Reason::Drained,
                ));
            }
        }
    }
}

/// Whether the service's containers report health (a healthcheck that is not `NONE`).
pub(super) fn health_checked(svc: &Service) -> bool {
    svc.healthcheck
        .as_ref()
        .is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"))
}

/// Whether every replica of the service runs its current definition and has settled: up
/// for `monitor` since it was created, and healthy when the service has a healthcheck. The
/// list gives creation times to the second, truncated: a second more makes sure a replica
/// created late in a second is not taken as settled almost at once.
fn settled(input: &Input, svc: &Service, kept: &BTreeMap<u32, &Container>) -> bool {
    let has_health = health_checked(svc);
    kept.len() == svc.replicas as usize
        && kept.values().all(|c| {
            input.current(svc, c)
                && c.state == State::Running
                && c.created.is_some_and(|t| {
                    t + svc.update.monitor + std::time::Duration::from_secs(1) <= input.now
                })
                && (!has_health || c.health == Health::Healthy)
        })
}

/// Whether the new replicas of an update in progress failed beyond
/// `max_failure_ratio`; if so (and the action is not `continue`), report it.
fn update_failed(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &Container>,
    plan: &mut Plan,
) -> bool {
    let cfg = &svc.update;
    let failed = kept
        .values()
        .filter(|c| input.current(svc, c))
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
    Some(Action::create(&svc.name, slot, min_node, Reason::Rebalance))
}
