//! What plain mode says: each event once, at the level it deserves, with the stable
//! fields (docs/conventions.md). Nothing at INFO when nothing changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use tracing::{error, info, warn};

use super::Plain;
use crate::config::Project;
use crate::execute::{Outcome, Volumes};
use crate::nodes::NodeStatus;
use crate::notify::Event;
use crate::observe;
use crate::plan::{self, Action, Decision, Kind, NodeState, Target};

/// What was last said.
#[derive(Default)]
pub(super) struct Said {
    pub list_failing: HashSet<String>,
    /// Watched nodes whose last resync list failed (kept on their patched snapshot).
    pub resync_failing: HashSet<String>,
    waits: HashSet<(String, u32, u32)>,
    stopped: HashSet<String>,
    unplaced: HashSet<(String, String)>,
    blocked: HashSet<(String, String)>,
    pub counts: BTreeMap<String, (u32, usize)>,
    /// Nodes notified down (and not back up since).
    down: HashSet<String>,
    /// Services whose rollback is under way.
    rolling_back: HashSet<String>,
    /// At least half of the nodes are down under an HA lease (see `hold_if_disrupted`).
    pub disrupted: bool,
}

impl Plain {
    /// Log each service's desired (as `states` say it: a global service's is its nodes')
    /// and running counts when they change.
    pub(super) fn report_counts(
        &mut self,
        running: HashMap<String, usize>,
        desired: &HashMap<String, u32>,
    ) {
        for (name, svc) in &self.project.services {
            // A service whose state was not worked out in full (replayed or patched) wants
            // what it did.
            let desired = match desired.get(name) {
                Some(d) => *d,
                None => self.said.counts.get(name).map_or(svc.replicas, |c| c.0),
            };
            let now = (desired, running.get(name).copied().unwrap_or(0));
            if self.said.counts.get(name) != Some(&now) {
                self.said.counts.insert(name.clone(), now);
                info!(
                    action = "observe",
                    project = %self.project.name,
                    service = %name,
                    desired = now.0,
                    actual = now.1,
                    "service count"
                );
            }
        }
    }

    /// Act on rolling updates whose new replicas failed (see [`History::update_failed`]).
    /// True when the desired state changed and the pass must plan again.
    pub(super) fn update_failures(&mut self, plan: &plan::Plan) -> bool {
        let p = self.project.name.clone();
        let digests: Vec<(String, String)> = plan
            .update_failed
            .iter()
            .filter_map(|f| {
                let d = self.project.services.get(&f.service)?.digest.clone()?;
                Some((f.service.clone(), d))
            })
            .collect();
        let decisions = self
            .history
            .update_failed(&mut self.project, &plan.update_failed);
        for (service, digest) in digests {
            if decisions.iter().any(|d| d.service() == service) {
                self.images.failed(&service, &digest, &self.telemetry);
            }
        }
        let mut changed = false;
        for d in decisions {
            match d {
                Decision::RolledBack { service, failed } => {
                    changed = true;
                    self.notifier
                        .send(Event::rollback(&service, Some(failed), "update-failed"));
                    self.said.rolling_back.insert(service.clone());
                    warn!(action = "rollback", project = %p, service = %service, actual = failed, reason = "update-failed", "update failed; rolling back to the previous definition");
                }
                Decision::Paused { service, failed } => {
                    warn!(action = "update-paused", project = %p, service = %service, actual = failed, reason = "update-failed", "update failed; paused until the definition changes again");
                }
            }
        }
        changed
    }

    /// Notify the updates a new config starts: services whose definition changed.
    pub(super) fn updates_started(&mut self, new: &Project) {
        for (name, svc) in &new.services {
            let old = self.project.services.get(name);
            if old.is_some_and(|o| o.config_hash != svc.config_hash) {
                self.said.rolling_back.remove(name);
                let desired = self.said.counts.get(name).map_or(svc.replicas, |c| c.0);
                self.notifier.send(Event::update_started(name, desired));
            }
        }
    }

    /// Notify the updates (and rollbacks) whose replicas have all settled.
    pub(super) fn updates_settled(&mut self, services: &[String]) {
        for name in services {
            let desired = match self.said.counts.get(name) {
                Some((desired, _)) => *desired,
                None => self.project.services.get(name).map_or(0, |s| s.replicas),
            };
            let rolled_back = self.said.rolling_back.remove(name);
            self.notifier
                .send(Event::update_finished(name, desired, rolled_back));
        }
    }

    /// Notify a node going down (once, also when it never answered) and coming back.
    pub(super) fn node_state(&mut self, name: &str, state: NodeState, status: &NodeStatus) {
        if state == NodeState::Down {
            if status.attempted && self.said.down.insert(name.to_string()) {
                let why = status.error.as_deref().unwrap_or("");
                self.notifier
                    .send(Event::node_down(name, "unreachable", why));
            }
        } else if self.said.down.remove(name) {
            self.notifier.send(Event::node_up(name));
        }
    }

    /// Backoff waits and deliberately stopped slots, each said once per step.
    pub(super) fn report_waits(&mut self, plan: &plan::Plan) {
        for w in &plan.waits {
            if self
                .said
                .waits
                .insert((w.service.clone(), w.slot, w.attempts))
            {
                let delay = w
                    .until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                warn!(
                    action = "backoff",
                    project = %self.project.name,
                    service = %w.service,
                    slot = w.slot,
                    attempts = w.attempts,
                    delay_ms = delay.as_millis() as u64,
                    "crash loop: waiting before the next attempt"
                );
            }
        }
        // One line per service and reason (its first slot, and how many): a node that
        // cannot be observed can leave thousands of slots unplaced at once.
        let mut groups: BTreeMap<(&str, &str), (u32, usize)> = BTreeMap::new();
        for u in &plan.unplaced {
            let g = groups
                .entry((u.service.as_str(), u.reason.as_str()))
                .or_insert((u.slot, 0));
            g.0 = g.0.min(u.slot);
            g.1 += 1;
        }
        for (&(service, reason), &(slot, replicas)) in &groups {
            if self
                .said
                .unplaced
                .insert((service.to_string(), reason.to_string()))
            {
                warn!(
                    action = "unplaced",
                    project = %self.project.name,
                    service,
                    slot,
                    replicas,
                    reason,
                    "{}",
                    match replicas {
                        1 => "cannot place a replica".to_string(),
                        n => format!("cannot place {n} replicas"),
                    }
                );
            }
        }
        self.said
            .unplaced
            .retain(|(s, r)| groups.contains_key(&(s.as_str(), r.as_str())));
        for b in &plan.blocked {
            if self
                .said
                .blocked
                .insert((b.service.clone(), b.dependency.clone()))
            {
                info!(
                    action = "blocked",
                    project = %self.project.name,
                    service = %b.service,
                    reason = %format!("{:?}", b.condition),
                    dependency = %b.dependency,
                    "waiting for a dependency before creating replicas"
                );
            }
        }
        if plan.blocked.is_empty() {
            self.said.blocked.clear();
        }
        for s in &plan.stopped {
            let key = format!("{}:{}", s.container, s.gave_up);
            if self.said.stopped.insert(key) {
                if s.gave_up {
                    self.notifier
                        .send(Event::gave_up(&s.service, s.slot, &s.node, s.exit_code));
                }
                info!(
                    action = if s.gave_up { "give-up" } else { "leave-exited" },
                    project = %self.project.name,
                    service = %s.service,
                    slot = s.slot,
                    container = %observe::short_id(&s.container),
                    exit_code = s.exit_code.unwrap_or(-1),
                    reason = if s.gave_up { "max-attempts" } else { "restart-policy" },
                    "container left exited"
                );
            }
        }
    }
}

/// Log what a new config changes: services added, rescaled, redefined, removed.
pub(super) fn changes(old: &Project, new: &Project) {
    let p = &old.name;
    for (name, svc) in &new.services {
        match old.services.get(name) {
            None => {
                info!(action = "reload", project = %p, service = %name, desired = svc.replicas, "service added")
            }
            Some(o) if o.replicas != svc.replicas || o.config_hash != svc.config_hash => {
                info!(
                    action = "reload",
                    project = %p,
                    service = %name,
                    desired = svc.replicas,
                    reason = if o.config_hash != svc.config_hash { "config-changed" } else { "scale" },
                    "service changed"
                )
            }
            Some(_) => {}
        }
    }
    for name in old.services.keys() {
        if !new.services.contains_key(name) {
            info!(action = "reload", project = %p, service = %name, desired = 0, "service removed");
        }
    }
}

/// Log one outcome.
pub(super) fn log_outcome(project: &Project, o: &Outcome) {
    let a = &o.action;
    let ms = o.duration.as_millis() as u64;
    let p = &project.name;
    let node = a.node.as_str();
    if let Target::Network { name, .. }
    | Target::NetworkId { name, .. }
    | Target::Volume { name, .. } = &a.target
    {
        match &o.error {
            None => {
                info!(action = a.name(), project = %p, node, name = %name, duration_ms = ms, "{}", describe(a))
            }
            Some(err) => {
                error!(action = a.name(), project = %p, node, name = %name, duration_ms = ms, error = %err, "action failed")
            }
        }
        return;
    }
    let reason = a.reason.map(|r| r.as_str()).unwrap_or("");
    let container = o.container.as_deref().unwrap_or("");
    if let Some(network) = a.network() {
        let backends = match &a.kind {
            Kind::Routes { routes } => routes.backends(),
            _ => 0,
        };
        match &o.error {
            None => {
                info!(action = a.name(), project = %p, node, network, container, reason, backends, duration_ms = ms, "{}", describe(a))
            }
            Some(err) => {
                error!(action = a.name(), project = %p, node, network, container, reason, duration_ms = ms, error = %err, "action failed")
            }
        }
        return;
    }
    let service = a.target.service().unwrap_or("");
    let slot = a.target.slot().unwrap_or(0);
    match &o.error {
        None => {
            info!(action = a.name(), project = %p, node, service, slot, container, reason, duration_ms = ms, "{}", describe(a));
            volumes_note(p, a, o.volumes);
        }
        Some(err) => {
            error!(action = a.name(), project = %p, node, service, slot, container, reason, duration_ms = ms, error = %err, "action failed");
        }
    }
}

/// Say what became of a replaced or removed container's anonymous volumes when it matters
/// to the user's data: taken over by the slot's new container, or lost with a move.
fn volumes_note(p: &str, a: &Action, volumes: Volumes) {
    let service = a.target.service().unwrap_or("");
    let slot = a.target.slot().unwrap_or(0);
    let node = a.node.as_str();
    match (&a.kind, a.reason, volumes) {
        (Kind::Recreate { .. }, _, Volumes::TakenOver(n)) => {
            info!(action = "volumes", project = %p, node, service, slot, "the new container took over {n} anonymous volume(s) of the one it replaced")
        }
        (Kind::Recreate { to }, _, Volumes::Removed(n)) if to != node => {
            warn!(action = "volumes", project = %p, node, service, slot, "the replica moved to node {to}: {n} anonymous volume(s) cannot follow it and were removed with the old container; it starts empty (keep data in a named volume on shared storage, or pin the service with placement constraints)")
        }
        (Kind::Remove, Some(plan::Reason::Stale), Volumes::Removed(n)) => {
            warn!(action = "volumes", project = %p, node, service, slot, "{n} anonymous volume(s) of an older copy of the replica, which now runs on another node, were removed with it")
        }
        _ => {}
    }
}

fn describe(a: &Action) -> &'static str {
    match a.kind {
        Kind::CreateNetwork => "network created",
        Kind::CreateVolume => "volume created",
        Kind::RemoveNetwork => "duplicate network removed",
        Kind::Create => "container created and started",
        Kind::Start { .. } => "container started",
        Kind::Restart => "container restarted",
        Kind::StartFirst { .. } => "new copy started before the old one stops",
        Kind::Recreate { .. } => "container recreated",
        Kind::Remove => "container removed",
        Kind::Ambassador { .. } => "ambassador created and started",
        Kind::Routes { .. } => "ambassador routes updated",
    }
}
