//! What the planner remembers between passes, as plain data updated by pure functions:
//! each slot's crash attempts ([`Backoff`]) and each service's rollout (the definition before
//! its last change, a rollback in force, a paused update).
//!
//! The controller stores one [`History`], feeds it the config changes, the plan's failed
//! updates and the outcome of every action, and logs what it decides; all judgement about
//! backoff, rollback and pause lives here and in the planner. It is in memory only: a
//! restarted drover starts with a clean slate (one immediate restart per crashing slot, and a
//! rolled-back definition tried once more).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::backoff::{Backoff, BackoffConfig};
use super::{Action, Kind, Reason, UpdateFailed, service_backoff};
use crate::config::{FailureAction, Project, Service};

/// Crash attempts per slot and rollout state per service.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub backoff: Backoff,
    rollouts: BTreeMap<String, Rollout>,
}

/// One service's rollout.
#[derive(Debug, Clone, Default)]
struct Rollout {
    /// The definition before the last change: what a rollback returns to.
    previous: Option<Service>,
    /// The revision (config hash, and image digest when pinned) that failed and was rolled
    /// back; the file (or the followed tag) still asks for it.
    rolled_back: Option<String>,
    /// The update failed with `failure_action: pause` (or had nothing to roll back to).
    halted: bool,
    /// Every replica runs the new definition and has settled: the update is over, and a
    /// later crash is a crash, not a failed update.
    done: bool,
}

/// What [`History::update_failed`] decided for one service, for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The service's desired definition is now its previous one, rolled out with its
    /// `rollback_config`.
    RolledBack { service: String, failed: usize },
    /// The update stays where it is until the definition changes again.
    Paused { service: String, failed: usize },
}

impl Decision {
    pub fn service(&self) -> &str {
        match self {
            Decision::RolledBack { service, .. } | Decision::Paused { service, .. } => service,
        }
    }
}

impl History {
    /// Services whose rolling update is paused.
    pub fn halted(&self) -> BTreeSet<String> {
        self.rollouts
            .iter()
            .filter(|(_, r)| r.halted)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Services rolled back while the file still asks for the definition that failed.
    pub fn rolled_back(&self) -> BTreeSet<String> {
        self.rollouts
            .iter()
            .filter(|(_, r)| r.rolled_back.is_some())
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Services whose update (or rollback) is still being watched: changed in this
    /// process, not settled, not paused.
    pub fn updating(&self) -> BTreeSet<String> {
        self.rollouts
            .iter()
            .filter(|(_, r)| r.previous.is_some() && !r.done && !r.halted)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The plan found these services' replicas all new and settled: their updates are over.
    pub fn settled(&mut self, services: &[String]) {
        for s in services {
            if let Some(r) = self.rollouts.get_mut(s) {
                r.done = true;
            }
        }
    }

    /// A new config was loaded while `running` is in force. A service that was rolled back
    /// stays rolled back while the file still asks for the definition that failed (its
    /// replica count follows the file); a service whose definition changes remembers the
    /// old one and forgets any pause or rollback. Slots beyond a service's count are
    /// forgotten.
    pub fn reloaded(&mut self, running: &Project, loaded: &mut Project) {
        for (name, svc) in loaded.services.iter_mut() {
            let rolled_back = self.rollouts.get(name).and_then(|r| r.rolled_back.as_ref());
            if rolled_back == Some(&svc.revision())
                && let Some(current) = running.services.get(name)
            {
                let replicas = svc.replicas;
                *svc = current.clone();
                svc.replicas = replicas;
            }
        }
        for (name, svc) in &loaded.services {
            if let Some(old) = running.services.get(name)
                && old.revision() != svc.revision()
            {
                self.rollouts.insert(
                    name.clone(),
                    Rollout {
                        previous: Some(old.clone()),
                        ..Default::default()
                    },
                );
            }
        }
        self.rollouts
            .retain(|name, _| loaded.services.contains_key(name));
        let services = &loaded.services;
        self.backoff.retain(|s, n| {
            services.get(s).is_some_and(|svc| {
                svc.mode == crate::config::DeployMode::Global || n <= svc.replicas
            }) || super::mesh::is_backoff_key(s)
        });
    }

    /// Rolling updates whose new replicas failed: roll back to the previous definition
    /// (changing `project`), or pause. A rollback needs a previous definition that differs
    /// from the one running (a rollback that fails in turn pauses instead of looping).
    pub fn update_failed(
        &mut self,
        project: &mut Project,
        failures: &[UpdateFailed],
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for f in failures {
            let Some(current) = project.services.get(&f.service) else {
                continue;
            };
            let rollout = self.rollouts.entry(f.service.clone()).or_default();
            let back = rollout
                .previous
                .as_ref()
                .filter(|prev| prev.revision() != current.revision());
            match (f.action, back) {
                (FailureAction::Rollback, Some(prev)) => {
                    let mut back = prev.clone();
                    back.replicas = current.replicas;
                    back.update = current.rollback.clone();
                    rollout.rolled_back = Some(current.revision());
                    rollout.done = false;
                    project.services.insert(f.service.clone(), back);
                    decisions.push(Decision::RolledBack {
                        service: f.service.clone(),
                        failed: f.failed,
                    });
                }
                _ if !rollout.halted => {
                    rollout.halted = true;
                    decisions.push(Decision::Paused {
                        service: f.service.clone(),
                        failed: f.failed,
                    });
                }
                _ => {}
            }
        }
        decisions
    }

    /// Record one action's outcome: a start or a replacement of a dead container counts
    /// as an attempt; a failed action, or the replacement of an unhealthy replica, holds
    /// the slot's next attempt for the backoff delay.
    pub fn record(
        &mut self,
        project: &Project,
        global: &BackoffConfig,
        action: &Action,
        ok: bool,
        now: SystemTime,
    ) {
        if let Kind::Ambassador { spec, reset } = &action.kind {
            // An ambassador that failed to start, or crashed, waits longer each time.
            let key = super::mesh::backoff_key(&spec.id, &action.node);
            if *reset {
                self.backoff.forget(&key, 0);
            }
            if !ok || matches!(action.reason, Some(Reason::Exited | Reason::Dead)) {
                self.backoff.failed(global, &key, 0, None, now);
            }
            return;
        }
        let (Some(service), Some(slot)) = (action.target.service(), action.target.slot()) else {
            return;
        };
        let Some(svc) = project.services.get(service) else {
            return;
        };
        let cfg = service_backoff(global, svc);
        let mut failed = || {
            self.backoff
                .failed(&cfg, service, slot, svc.restart.delay, now)
        };
        if !ok {
            failed();
            return;
        }
        match (&action.kind, action.reason) {
            (Kind::Start { reset }, _) => self.backoff.attempted(service, slot, *reset),
            (Kind::Recreate { .. }, Some(Reason::Dead)) => {
                self.backoff.attempted(service, slot, false)
            }
            // An unhealthy replica replaced: hold the next replacement for the backoff
            // delay, so a service that never turns healthy is not churned.
            (Kind::Restart, _) | (Kind::Recreate { .. }, Some(Reason::Unhealthy)) => failed(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpdateOrder;

    fn project(hash: &str, replicas: u32) -> Project {
        let mut p = crate::plan::tests::project(vec![crate::plan::tests::svc("web", replicas)]);
        let web = p.services.get_mut("web").unwrap();
        web.config_hash = hash.into();
        web.update.failure_action = FailureAction::Rollback;
        web.rollback.order = UpdateOrder::StartFirst;
        p
    }

    fn failure(action: FailureAction) -> UpdateFailed {
        UpdateFailed {
            service: "web".into(),
            action,
            failed: 1,
        }
    }

    #[test]
    fn a_failed_update_rolls_back_to_the_previous_definition_and_stays_there() {
        let mut h = History::default();
        let v1 = project("v1", 2);
        let mut v2 = project("v2", 2);
        h.reloaded(&v1, &mut v2);
        let decided = h.update_failed(&mut v2, &[failure(FailureAction::Rollback)]);
        assert_eq!(
            decided,
            vec![Decision::RolledBack {
                service: "web".into(),
                failed: 1
            }]
        );
        let web = &v2.services["web"];
        assert_eq!(web.config_hash, "v1");
        assert_eq!(web.update.order, UpdateOrder::StartFirst, "rollback_config");

        // The file still says v2 (scaled to 3): v1 stays, with the new count.
        let mut again = project("v2", 3);
        h.reloaded(&v2, &mut again);
        assert_eq!(again.services["web"].config_hash, "v1");
        assert_eq!(again.services["web"].replicas, 3);

        // A new definition in the file is tried.
        let mut v3 = project("v3", 3);
        h.reloaded(&again, &mut v3);
        assert_eq!(v3.services["web"].config_hash, "v3");
        assert!(h.halted().is_empty());
    }

    #[test]
    fn a_pause_is_said_once_and_lifted_by_the_next_change() {
        let mut h = History::default();
        let v1 = project("v1", 2);
        let mut v2 = project("v2", 2);
        h.reloaded(&v1, &mut v2);
        let f = [failure(FailureAction::Pause)];
        assert_eq!(h.update_failed(&mut v2, &f).len(), 1);
        assert!(h.update_failed(&mut v2, &f).is_empty(), "said once");
        assert_eq!(h.halted(), BTreeSet::from(["web".to_string()]));
        let mut v3 = project("v3", 2);
        h.reloaded(&v2, &mut v3);
        assert!(h.halted().is_empty());
    }

    #[test]
    fn a_rollback_with_nothing_to_return_to_pauses_instead_of_looping() {
        let mut h = History::default();
        // Started on v2 (nothing before it in this process).
        let mut v2 = project("v2", 2);
        let decided = h.update_failed(&mut v2, &[failure(FailureAction::Rollback)]);
        assert!(matches!(decided[..], [Decision::Paused { .. }]));
        assert_eq!(v2.services["web"].config_hash, "v2");

        // Rolled back to v1, and v1 fails in turn: pause, not another rollback to itself.
        let mut h = History::default();
        let v1 = project("v1", 2);
        let mut v2 = project("v2", 2);
        h.reloaded(&v1, &mut v2);
        h.update_failed(&mut v2, &[failure(FailureAction::Rollback)]);
        let mut back = v2.clone();
        back.services.get_mut("web").unwrap().update.failure_action = FailureAction::Rollback;
        h.reloaded(&v2, &mut back);
        let decided = h.update_failed(&mut back, &[failure(FailureAction::Rollback)]);
        assert!(
            matches!(decided[..], [Decision::Paused { .. }]),
            "{decided:?}"
        );
    }

    #[test]
    fn outcomes_count_attempts_and_failures_hold_the_slot() {
        let mut h = History::default();
        let p = project("v1", 2);
        let cfg = BackoffConfig::default();
        let now = SystemTime::UNIX_EPOCH;
        let start = Action::start("web", 1, "n1", "c", false, Reason::Exited);
        h.record(&p, &cfg, &start, true, now);
        h.record(&p, &cfg, &start, true, now);
        assert_eq!(h.backoff.get("web", 1).attempts, 2);
        assert_eq!(h.backoff.get("web", 1).not_before, None);
        h.record(&p, &cfg, &start, false, now);
        assert_eq!(h.backoff.get("web", 1).attempts, 3);
        assert!(h.backoff.get("web", 1).not_before.is_some_and(|t| t > now));
        // Slots beyond the count are forgotten on reload.
        let mut smaller = project("v1", 0);
        h.reloaded(&p, &mut smaller);
        assert_eq!(h.backoff.get("web", 1).attempts, 0);
    }

    #[test]
    fn an_update_is_watched_until_its_replicas_settle() {
        let mut h = History::default();
        let v1 = project("v1", 1);
        let mut v2 = project("v2", 1);
        assert!(h.updating().is_empty(), "a first deploy is not an update");
        h.reloaded(&v1, &mut v2);
        assert_eq!(h.updating(), BTreeSet::from(["web".to_string()]));
        h.settled(&["web".to_string()]);
        assert!(h.updating().is_empty());
        // A rollback is watched again.
        let mut v3 = project("v3", 1);
        h.reloaded(&v2, &mut v3);
        h.update_failed(&mut v3, &[failure(FailureAction::Rollback)]);
        assert_eq!(h.updating(), BTreeSet::from(["web".to_string()]));
    }
}
