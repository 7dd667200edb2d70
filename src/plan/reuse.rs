//! Planning at the cost of what changed. A service the last plan left quiet is taken as it
//! was when none of its containers changed ([`Quiet::replay`]); when it was also settled
//! (see [`Quiet`]), only the slots whose containers changed, and those it last acted on,
//! are planned again ([`Quiet::patch`]): the rest decided nothing last time, and nothing
//! they are decided from changed. Either way the plan is the one a full pass makes (a
//! property test checks it over random worlds).

use std::collections::{BTreeMap, BTreeSet};

use super::groups::Grouped;
use super::place::{Counts, Placer};
use super::service::{Sink, repair};
use super::{Action, Blocked, Input, Kind, Plan, Stopped, Wait};
use crate::config::{DeployMode, Service};
use crate::observe::Container;

/// A replica slot and where its container is: the node that holds it, and its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Held {
    pub slot: u32,
    pub node: String,
    pub id: String,
}

/// The containers that changed since the last plan, by service: the node that holds each
/// now, and its id.
pub type Named = BTreeMap<String, Vec<(String, String)>>;

/// A service whose plan did nothing but start or restart containers in their slots, or
/// wait out their backoff, waits on no other time and is in no rollout: what it decided,
/// so that a pass in which nothing it depends on changed can take it as it is instead of
/// planning it again (see [`super::plan_reusing`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quiet {
    stopped: Vec<Stopped>,
    blocked: Vec<Blocked>,
    /// Its replicas by node, as the placer counted them.
    placed: Counts,
    /// It had its target of replicas, one container in each slot, none of them outdated,
    /// misplaced or on a drained node: each slot's decision read its own container only.
    settled: bool,
    /// The slots it started, restarted or waits at, and their containers: planned again
    /// at every pass (a settled service is patched there; another one planned in full).
    open: Vec<Held>,
}

/// The last plan's quiet services and what changed since.
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub quiet: &'a BTreeMap<String, Quiet>,
    /// The containers that changed, by service (the services whose containers changed
    /// are its keys). A container gone from every node is not among them: its service is
    /// not known, and the caller passes no `reuse` then.
    pub named: &'a Named,
}

/// How a pass plans one service.
#[derive(Debug, Clone, Copy)]
pub(super) enum Way<'q> {
    /// As the last plan decided: nothing it reads changed.
    Replay(&'q Quiet),
    /// Only at the slots whose containers changed and those it last acted on, when it can
    /// (see [`Quiet::patch`]).
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
        let changed = self.named.contains_key(name)
            || svc.depends_on.keys().any(|d| touched.contains(d.as_str()));
        if changed {
            touched.insert(name);
        }
        match self.quiet.get(name) {
            None => Way::Full,
            Some(q) if !changed && q.open.is_empty() => Way::Replay(q),
            Some(q) if !q.settled => Way::Full,
            Some(q) => Way::Patch(q),
        }
    }
}

impl Quiet {
    pub(super) fn new(
        plan: &Plan,
        since: (usize, usize),
        placed: Counts,
        settled: bool,
        open: Vec<Held>,
    ) -> Quiet {
        Quiet {
            stopped: plan.stopped[since.0..].to_vec(),
            blocked: plan.blocked[since.1..].to_vec(),
            placed,
            settled,
            open,
        }
    }

    /// The slots planned again at every pass (see [`Quiet`]).
    pub fn open(&self) -> &[Held] {
        &self.open
    }

    /// Take this quiet service's decisions into `plan` as they were (it has no open slot).
    pub(super) fn replay(&self, name: &str, placer: &mut Placer, plan: &mut Plan) {
        placer.add_counts(name, &self.placed);
        plan.stopped.extend(self.stopped.iter().cloned());
        plan.blocked.extend(self.blocked.iter().cloned());
        plan.quiet.insert(name.to_string(), self.clone());
        plan.replayed.insert(name.to_string());
    }

    /// Plan `svc` (service `k` of `grouped`), settled when last planned, at its open slots
    /// and the slots of its containers in `named` only, and take the other slots'
    /// decisions as they were. It still holds exactly its target of containers and no
    /// container of it is gone (the caller's `reuse` says so), so they are the same
    /// containers, one per slot, on the same nodes: nothing to scale, fill or remove. A
    /// changed container that is outdated or misplaced would start a rollout, which weighs
    /// every replica: then nothing is done here and false returned, for a full plan of the
    /// service. Each container is found on its node among the service's (not among all
    /// its replicas): the cost is that of the slots planned.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch<'c>(
        &self,
        input: &Input,
        svc: &Service,
        (grouped, k): (&Grouped<'c>, usize),
        named: &[(String, String)],
        placer: &mut Placer,
        out: &mut Vec<Action>,
        plan: &mut Plan,
    ) -> bool {
        if !self.settled
            || svc.mode == DeployMode::Global
            || grouped.len(k) != svc.replicas as usize
        {
            return false;
        }
        let finder = grouped.finder(k, self.open.len() + named.len());
        let open = self.open.iter().map(|h| (&h.node, &h.id, Some(h.slot)));
        let named = named.iter().map(|(node, id)| (node, id, None));
        let mut changed: BTreeMap<u32, &Container> = BTreeMap::new();
        for (node, id, slot) in open.chain(named) {
            let Some(c) = finder.find(node, id) else {
                return false;
            };
            let Some(n) = c.slot().filter(|n| slot.is_none_or(|s| s == *n)) else {
                return false;
            };
            // It was current and allowed where it is when the service settled, and
            // neither its labels nor its node change: this guards the rule that a
            // patch never has anything to roll.
            if !input.current(svc, c) || !placer.allowed(svc, &c.node) {
                return false;
            }
            // An open slot's container named again is the same container.
            if changed.insert(n, c).is_some_and(|was| was.id != c.id) {
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
        let held = changed.iter().map(|(n, c)| Held {
            slot: *n,
            node: c.node.clone(),
            id: c.id.clone(),
        });
        plan.patched.insert(svc.name.clone(), held.collect());
        true
    }
}

/// The slots a service's plan acted on or waits at, when all it did was start or restart
/// containers in place and wait out backoff (its open slots, see [`Quiet`]); `None` when
/// it did anything else.
pub(super) fn open_slots(actions: &[Action], waits: &[Wait]) -> Option<BTreeSet<u32>> {
    let mut open = BTreeSet::new();
    for a in actions {
        let (Kind::Start { .. } | Kind::Restart) = a.kind else {
            return None;
        };
        open.insert(a.target.slot()?);
    }
    open.extend(waits.iter().map(|w| w.slot));
    Some(open)
}

/// Where the containers of `slots` are: from `held` (what a patch planned, in slot order)
/// when it has them all, else from the service's `containers` (one per slot: it is settled).
pub(super) fn locate<'c>(
    slots: &BTreeSet<u32>,
    held: Option<&[Held]>,
    containers: impl Iterator<Item = &'c Container>,
) -> Option<Vec<Held>> {
    if slots.is_empty() {
        return Some(Vec::new());
    }
    if let Some(held) = held {
        let found: Vec<Held> = slots
            .iter()
            .filter_map(|n| Some(held[held.binary_search_by_key(n, |h| h.slot).ok()?].clone()))
            .collect();
        if found.len() == slots.len() {
            return Some(found);
        }
    }
    let mut found: Vec<Held> = containers
        .filter_map(|c| Some((c.slot().filter(|n| slots.contains(n))?, c)))
        .map(|(slot, c)| Held {
            slot,
            node: c.node.clone(),
            id: c.id.clone(),
        })
        .collect();
    found.sort();
    (found.len() == slots.len()).then_some(found)
}

/// How far a plan's lists had come: a service that added nothing since but stopped slots,
/// blocked dependencies, starts and restarts in place and waits is quiet.
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

    /// The slots acted on or waiting since (see [`open_slots`]), when the service is
    /// quiet; `None` when it is not.
    pub(super) fn open_since(&self, plan: &Plan, actions: &[Action]) -> Option<BTreeSet<u32>> {
        let now = Marks::of(plan, actions);
        let same = (self.unplaced, self.update_failed) == (now.unplaced, now.update_failed)
            && (self.settled, self.recheck) == (now.settled, now.recheck);
        same.then(|| open_slots(&actions[self.actions..], &plan.waits[self.waits..]))?
    }
}
