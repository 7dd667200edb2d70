//! One service's pass, in phases a reader can follow:
//! 1. [`copies`]: one container per slot (older copies go once the current one runs);
//! 2. [`scale_down`]: the replicas beyond the target, worst first;
//! 3. [`repair`]: each kept slot by its state (start, restart, recreate, wait out backoff);
//! 4. [`fill`]: the lowest free slots, once the dependencies are ready;
//! 5. [`roll`](super::rolling::roll): updates, moves and rebalancing, when all else is quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::place::Placer;
use super::rolling::{Pending, health_checked, roll};
use super::{Action, Blocked, Input, Plan, Reason, Stopped, Unplaced, Wait, service_backoff};
use crate::config::{DependsCondition, RestartCondition, Service, UnhealthyAction};
use crate::observe::{Container, Health, State};

/// Where a service's phases put what they decide.
pub(super) struct Sink<'p> {
    pub out: &'p mut Vec<Action>,
    pub plan: &'p mut Plan,
    /// Whether this pass already acts on the service (then nothing rolls).
    pub acted: bool,
}

impl Sink<'_> {
    pub(super) fn act(&mut self, a: Action) {
        self.acted = true;
        self.out.push(a);
    }
}

/// The kept container of each slot, the removals of the other copies, and how many old
/// copies stay serving until their slot's new copy runs.
pub(super) struct Slots<'c> {
    pub kept: BTreeMap<u32, &'c Container>,
    pub removals: Vec<Action>,
    pub overlap: usize,
}

/// Plan one service in full. True when it is settled: exactly its target of containers,
/// one per slot, none of them outdated, misplaced or on a drained node (see
/// [`super::reuse::Quiet`]).
pub(super) fn plan_service(
    input: &Input,
    svc: &Service,
    containers: Vec<&Container>,
    deps: &BTreeMap<&str, Vec<&Container>>,
    placer: &mut Placer,
    out: &mut Vec<Action>,
    plan: &mut Plan,
) -> bool {
    let target = svc.replicas as usize;
    let whole = containers.len() == target;
    let mut slots = copies(input, svc, containers, placer, &|c| c.slot());
    // Each container kept in a slot of its own: nothing else to remove or keep serving.
    let single = whole && slots.kept.len() == target && slots.removals.is_empty();
    let occupied: BTreeSet<u32> = slots.kept.keys().copied().collect();
    scale_down(input, svc, &mut slots, placer);
    out.append(&mut slots.removals);
    let mut sink = Sink {
        out,
        plan,
        acted: false,
    };
    let pending = repair(input, svc, &slots.kept, placer, &mut sink);
    let settled = single && slots.overlap == 0 && pending.is_empty();
    fill(
        input,
        svc,
        slots.kept.len(),
        &occupied,
        deps,
        placer,
        &mut sink,
    );
    roll(
        input,
        svc,
        &slots.kept,
        &pending,
        slots.overlap,
        placer,
        &mut sink,
    );
    settled
}

/// One container per slot (`slot_of` says which slot a container holds). An older copy
/// goes once the current one runs; a copy on a node that cannot be acted on now stays
/// until it can.
pub(super) fn copies<'c>(
    input: &Input,
    svc: &Service,
    containers: Vec<&'c Container>,
    placer: &mut Placer,
    slot_of: &dyn Fn(&Container) -> Option<u32>,
) -> Slots<'c> {
    let current = |c: &Container| input.current(svc, c);
    // By slot, the copy to keep first in each.
    let mut by_slot: Vec<(u32, &Container)> = containers
        .into_iter()
        .filter_map(|c| Some((slot_of(c)?, c)))
        .collect();
    by_slot.sort_by(|a, b| (a.0, keep_rank(a.1)).cmp(&(b.0, keep_rank(b.1))));
    let mut slots = Slots {
        kept: BTreeMap::new(),
        removals: Vec::new(),
        overlap: 0,
    };
    for copies in by_slot.chunk_by(|a, b| a.0 == b.0) {
        let n = copies[0].0;
        let mut rest = copies.iter().map(|(_, c)| *c);
        let Some(first) = rest.next() else { continue };
        slots.kept.insert(n, first);
        placer.add(&svc.name, &first.node);
        for other in rest {
            let newer = other.placement() < first.placement();
            if !placer.up(&other.node) || other.state == State::Removing {
                continue;
            }
            let starting = first.state == State::Running
                && health_checked(svc)
                && first.health == Health::Starting;
            if newer && (starting || first.state != State::Running && about_to_run(svc, first)) {
                // Keep the old copy serving until the current one runs (and, with a
                // healthcheck, has passed it once).
                slots.overlap += 1;
                continue;
            }
            let reason = if !newer {
                Reason::Duplicate
            } else if current(first) && !current(other) {
                Reason::ConfigChanged
            } else {
                Reason::Stale
            };
            slots.removals.push(remove(svc, n, other, reason));
        }
    }
    slots
}

/// Scale down: not-running first, then unhealthy, then outdated, then the newest (by the
/// second), then the highest slot.
fn scale_down(input: &Input, svc: &Service, slots: &mut Slots, placer: &mut Placer) {
    let target = svc.replicas as usize;
    if slots.kept.len() <= target {
        return;
    }
    let current = |c: &Container| input.current(svc, c);
    let mut order: Vec<(u32, &Container)> = slots.kept.iter().map(|(n, c)| (*n, *c)).collect();
    order.sort_by_key(|(n, c)| {
        (
            c.state == State::Running,
            c.health != Health::Unhealthy,
            current(c),
            std::cmp::Reverse(c.generation() / 1_000_000_000),
            std::cmp::Reverse(*n),
        )
    });
    let excess = slots.kept.len() - target;
    for (n, c) in order.into_iter().take(excess) {
        slots.kept.remove(&n);
        placer.remove(&svc.name, &c.node);
        if input.up(&c.node) && c.state != State::Removing {
            slots.removals.push(remove(svc, n, c, Reason::ScaleDown));
        }
    }
}

/// Each kept slot on a node that can be acted on, by its state. Running replicas that are
/// misplaced or outdated are left to [`roll`].
pub(super) fn repair<'c>(
    input: &Input,
    svc: &Service,
    kept: &BTreeMap<u32, &'c Container>,
    placer: &mut Placer,
    sink: &mut Sink,
) -> Pending<'c> {
    let mut pending = Pending::default();
    for (&n, &c) in kept {
        if !placer.up(&c.node) {
            continue;
        }
        let outdated = !input.current(svc, c);
        let misplaced = !placer.allowed(svc, &c.node);
        let history = input.backoff.get(&svc.name, n);
        let held = history.not_before.filter(|t| *t > input.now);
        match c.state {
            State::Running | State::Paused | State::Restarting | State::Unknown => {
                if misplaced && placer.drained(&c.node) {
                    pending.drained.push((n, c));
                } else if misplaced {
                    pending.misplaced.push((n, c));
                } else if outdated {
                    pending.outdated.push((n, c));
                } else {
                    repair_unhealthy(svc, n, c, held, history.attempts, sink);
                }
            }
            State::Removing => {}
            State::Dead | State::Created if outdated || misplaced || c.state == State::Dead => {
                let reason = if c.state == State::Dead {
                    Reason::Dead
                } else if misplaced {
                    moved_because(placer, c)
                } else {
                    Reason::ConfigChanged
                };
                if let Some(until) = held {
                    wait(sink.plan, svc, n, until, history.attempts);
                } else if let Some(a) = recreate(svc, n, c, reason, misplaced, placer, sink.plan) {
                    sink.act(a);
                }
            }
            State::Created | State::Dead => {
                if let Some(until) = held {
                    wait(sink.plan, svc, n, until, history.attempts);
                } else if history.attempts > 0 {
                    // Its start has failed before: the engine may hold stale runtime state
                    // for it (after an engine restart in the middle of a start, every start
                    // fails with "task already exists"). A fresh container has none.
                    if let Some(a) =
                        recreate(svc, n, c, Reason::NotStarted, false, placer, sink.plan)
                    {
                        sink.act(a);
                    }
                } else {
                    sink.act(Action::start(
                        &svc.name,
                        n,
                        &c.node,
                        &c.id,
                        false,
                        Reason::NotStarted,
                    ));
                }
            }
            State::Exited => {
                plan_exited(input, svc, (n, c), (outdated, misplaced), placer, sink);
            }
        }
    }
    pending
}

/// A running replica on the current definition that reports unhealthy: restart or recreate
/// it per `x-drover.unhealthy`, after the backoff of earlier replacements.
fn repair_unhealthy(
    svc: &Service,
    n: u32,
    c: &Container,
    held: Option<SystemTime>,
    attempts: u32,
    sink: &mut Sink,
) {
    let unhealthy = c.health == Health::Unhealthy
        && c.state == State::Running
        && svc.unhealthy != UnhealthyAction::Ignore;
    if !unhealthy {
        return;
    }
    if let Some(until) = held {
        wait(sink.plan, svc, n, until, attempts);
        return;
    }
    sink.act(match svc.unhealthy {
        UnhealthyAction::Recreate => {
            Action::recreate(&svc.name, n, &c.node, &c.id, &c.node, Reason::Unhealthy)
        }
        _ => Action::restart(&svc.name, n, &c.node, &c.id, Reason::Unhealthy),
    });
}

/// Fill the lowest free slots up to the target, on the best nodes, once the dependencies
/// that must be healthy or finished are.
fn fill(
    input: &Input,
    svc: &Service,
    kept: usize,
    occupied: &BTreeSet<u32>,
    deps: &BTreeMap<&str, Vec<&Container>>,
    placer: &mut Placer,
    sink: &mut Sink,
) {
    let missing = (svc.replicas as usize).saturating_sub(kept);
    if missing == 0 {
        return;
    }
    if let Some(b) = blocked_by(svc, input, deps) {
        sink.plan.blocked.push(b);
        return;
    }
    let mut slot = 0u32;
    for _ in 0..missing {
        slot += 1;
        while occupied.contains(&slot) {
            slot += 1;
        }
        let history = input.backoff.get(&svc.name, slot);
        if let Some(until) = history.not_before.filter(|t| *t > input.now) {
            wait(sink.plan, svc, slot, until, history.attempts);
            continue;
        }
        match placer.place(svc) {
            Ok(node) => sink.act(Action::create(&svc.name, slot, node, Reason::Missing)),
            Err(reason) => sink.plan.unplaced.push(Unplaced {
                service: svc.name.clone(),
                slot,
                reason,
            }),
        }
    }
}

/// How copies of one slot sort: (term, generation) newest first, state, start, node.
type KeepRank<'c> = (
    std::cmp::Reverse<(u64, u64)>,
    u8,
    std::cmp::Reverse<Option<SystemTime>>,
    &'c str,
);

/// Rank the copies of one slot: the current one sorts first. The newest placement wins
/// (the higher lease term first: an old leader's late copy loses);
/// among equals, the one in the best state, then the node name.
fn keep_rank(c: &Container) -> KeepRank<'_> {
    let state = match c.state {
        State::Running => 0,
        State::Restarting | State::Paused => 1,
        State::Created | State::Exited => 2,
        State::Unknown => 3,
        State::Dead | State::Removing => 4,
    };
    (
        std::cmp::Reverse(c.placement()),
        state,
        std::cmp::Reverse(c.started_at),
        c.node.as_str(),
    )
}

/// The first dependency that must be healthy or finished and is not, if any.
pub(super) fn blocked_by(
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

/// Why a replica that no longer fits its node moves: the node is drained, or the service's
/// placement no longer allows it.
pub(super) fn moved_because(placer: &Placer, c: &Container) -> Reason {
    if placer.drained(&c.node) {
        Reason::Drained
    } else {
        Reason::Misplaced
    }
}

/// Recreate a slot's container: in place, or on another node when `moving`.
pub(super) fn recreate(
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
    Some(Action::recreate(&svc.name, n, &c.node, &c.id, to, reason))
}

/// An exited container: restart in place, recreate (`changed`: outdated, misplaced), wait
/// out the backoff, or leave it.
fn plan_exited(
    input: &Input,
    svc: &Service,
    (n, c): (u32, &Container),
    (outdated, misplaced): (bool, bool),
    placer: &mut Placer,
    sink: &mut Sink,
) {
    let backoff_cfg = service_backoff(input.backoff_cfg, svc);
    let plan = &mut *sink.plan;
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
        return;
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
        return;
    }
    let delay = backoff_cfg.delay(attempts, policy.delay);
    let died = c.finished_at.unwrap_or(input.now).min(input.now);
    let mut due = died + delay;
    if let Some(t) = history.not_before {
        due = due.max(t);
    }
    if due > input.now {
        wait(plan, svc, n, due, attempts);
        return;
    }
    if changed {
        let reason = if misplaced {
            moved_because(placer, c)
        } else {
            Reason::ConfigChanged
        };
        if let Some(a) = recreate(svc, n, c, reason, misplaced, placer, plan) {
            sink.act(a);
        }
        return;
    }
    sink.act(Action::start(
        &svc.name,
        n,
        &c.node,
        &c.id,
        long_run,
        Reason::Exited,
    ));
}

pub(super) fn wait(plan: &mut Plan, svc: &Service, slot: u32, until: SystemTime, attempts: u32) {
    plan.waits.push(Wait {
        service: svc.name.clone(),
        slot,
        until,
        attempts,
    });
}

pub(super) fn remove(svc: &Service, slot: u32, c: &Container, reason: Reason) -> Action {
    Action::remove(&svc.name, slot, &c.node, &c.id, reason)
}
