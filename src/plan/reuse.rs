//! Planning at the cost of what changed. A service the last plan left quiet is taken as it
//! was when none of its containers changed ([`Quiet::replay`]); when it was also settled
//! (see [`Quiet`]), only the slots whose containers changed are planned again
//! ([`Quiet::patch`]): the rest decided nothing last time, and nothing they are decided
//! from changed. Either way the plan is the one a full pass makes (a property test checks
//! it over random worlds).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::place::{Counts, Placer};
use super::service::{Sink, repair};
use super::{Action, Blocked, Input, Plan, Stopped};
use crate::config::{DeployMode, Service};
use crate::observe::Container;

/// A service whose plan did nothing, waits on no time and is in no rollout: what it
/// decided, so that a pass in which nothing it depends on changed can take it as it is
/// instead of planning it again (see [`super::plan_reusing`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quiet {
    stopped: Vec<Stopped>,
    blocked: Vec<Blocked>,
    /// Its replicas by node, as the placer counted them.
    placed: Counts,
    /// It had its target of replicas, one container in each slot, none of them outdated,
    /// misplaced or on a drained node: each slot's decision read its own container only.
    settled: bool,
}

/// The last plan's quiet services and what changed since.
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub quiet: &'a BTreeMap<String, Quiet>,
    /// The services whose containers changed.
    pub changed: &'a BTreeSet<String>,
    /// The ids of the containers that changed, as the nodes hold them now. A container
    /// gone from every node is not among them: its service is not known, and the caller
    /// passes no `reuse` then.
    pub named: &'a HashSet<String>,
}

/// How a pass plans one service.
#[derive(Debug, Clone, Copy)]
pub(super) enum Way<'q> {
    /// As the last plan decided: nothing it reads changed.
    Replay(&'q Quiet),
    /// Only at the slots whose containers changed, when it can (see [`Quiet::patch`]).
    Patch(&'q Quiet),
    Full,
}

impl<'a> Reuse<'a> {
    /// How to plan `name` given the services `touched` so far this pass (those whose
    /// containers changed, or that depend on one that did; `name` is added when it does).
    pub(super) fn way<'p>(
        &self,
        name: &'p str,
        svc: &Service,
        touched: &mut BTreeSet<&'p str>,
    ) -> Way<'a> {
        // Start order puts a service after what it depends on: one look suffices.
        let changed = self.changed.contains(name)
            || svc.depends_on.keys().any(|d| touched.contains(d.as_str()));
        let Some(q) = self.quiet.get(name) else {
            if changed {
                touched.insert(name);
            }
            return Way::Full;
        };
        if !changed {
            return Way::Replay(q);
        }
        touched.insert(name);
        Way::Patch(q)
    }
}

impl Quiet {
    pub(super) fn new(plan: &Plan, since: (usize, usize), placed: Counts, settled: bool) -> Quiet {
        Quiet {
            stopped: plan.stopped[since.0..].to_vec(),
            blocked: plan.blocked[since.1..].to_vec(),
            placed,
            settled,
        }
    }

    /// Take this quiet service's decisions into `plan` as they were.
    pub(super) fn replay(&self, name: &str, placer: &mut Placer, plan: &mut Plan) {
        placer.add_counts(name, &self.placed);
        plan.stopped.extend(self.stopped.iter().cloned());
        plan.blocked.extend(self.blocked.iter().cloned());
        plan.quiet.insert(name.to_string(), self.clone());
        plan.replayed.insert(name.to_string());
    }

    /// Plan `svc`, settled when last planned, at the slots of its containers named in
    /// `named` only, and take the other slots' decisions as they were. It still holds
    /// exactly its target of containers and no container of it is gone (the caller's
    /// `reuse` says so), so they are the same containers, one per slot, on the same nodes:
    /// nothing to scale, fill or remove. A changed container that is outdated or misplaced
    /// would start a rollout, which weighs every replica: then nothing is done here and
    /// false returned, for a full plan of the service.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch<'c>(
        &self,
        input: &Input,
        svc: &Service,
        (count, containers): (usize, impl Iterator<Item = &'c Container>),
        named: &HashSet<String>,
        placer: &mut Placer,
        out: &mut Vec<Action>,
        plan: &mut Plan,
    ) -> bool {
        if !self.settled || svc.mode == DeployMode::Global || count != svc.replicas as usize {
            return false;
        }
        let mut changed: BTreeMap<u32, &Container> = BTreeMap::new();
        for c in containers.filter(|c| is_named(named, &c.id)) {
            let Some(n) = c.slot() else { return false };
            // It was current and allowed where it is when the service settled, and
            // neither its labels nor its node change: this guards the rule that a
            // patch never has anything to roll.
            if !input.current(svc, c) || !placer.allowed(svc, &c.node) {
                return false;
            }
            if changed.insert(n, c).is_some() {
                return false;
            }
        }
        placer.add_counts(&svc.name, &self.placed);
        let mark = plan.stopped.len();
        let kept = self
            .stopped
            .iter()
            .filter(|s| !changed.contains_key(&s.slot));
        plan.stopped.extend(kept.cloned());
        let mut sink = Sink {
            out,
            plan,
            acted: false,
        };
        let pending = repair(input, svc, &changed, placer, &mut sink);
        debug_assert!(pending.is_empty(), "checked above: current and allowed");
        // In slot order, as a full plan of the service lists them.
        plan.stopped[mark..].sort_by_key(|s| s.slot);
        plan.patched.insert(svc.name.clone());
        true
    }
}

/// Whether `id` is among `named`: a few are compared one by one (cheaper than hashing the
/// id of each of a service's thousands of containers).
fn is_named(named: &HashSet<String>, id: &str) -> bool {
    if named.len() <= 8 {
        named.iter().any(|n| n == id)
    } else {
        named.contains(id)
    }
}

/// How far a plan's lists had come: a service that added nothing but stopped slots and
/// blocked dependencies is quiet.
#[derive(Debug)]
pub(super) struct Marks {
    actions: usize,
    waits: usize,
    unplaced: usize,
    update_failed: usize,
    settled: usize,
    recheck: usize,
    pub stopped: usize,
    pub blocked: usize,
}

impl Marks {
    pub(super) fn of(plan: &Plan, actions: &[Action]) -> Marks {
        Marks {
            actions: actions.len(),
            waits: plan.waits.len(),
            unplaced: plan.unplaced.len(),
            update_failed: plan.update_failed.len(),
            settled: plan.settled.len(),
            recheck: plan.recheck.len(),
            stopped: plan.stopped.len(),
            blocked: plan.blocked.len(),
        }
    }

    /// Whether `now` shows only stopped slots and blocked dependencies added since.
    pub(super) fn quiet_until(&self, now: &Marks) -> bool {
        (self.actions, self.waits, self.unplaced) == (now.actions, now.waits, now.unplaced)
            && (self.update_failed, self.settled, self.recheck)
                == (now.update_failed, now.settled, now.recheck)
    }
}
