//! Plain mode's part in following image tags (the judgement is [`plan::follow`]): ask an
//! engine for the digests that are due, hand the answers to [`Follow`], say each decision,
//! and re-pin the project so that a moved digest rolls like a changed definition.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use super::Plain;
use crate::engine::{Client, connect};
use crate::plan::follow::{Follow, ImageDecision};
use crate::telemetry::ImageRecord;

/// A registry check that takes longer than this counts as failed (the next one is on
/// schedule).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

impl Plain {
    /// Take what the replicas run, look at the engine's copies after a reload, ask the
    /// registry for the tags that are due, and re-pin. True when the project changed.
    pub(super) async fn follow_images(&mut self, engines: &HashMap<String, Client>) -> bool {
        let project = self.project.name.clone();
        let own = self.own_id.clone();
        let containers = self
            .last
            .values()
            .flat_map(|s| s.containers.iter())
            .filter(|c| c.owned_by(&project))
            .filter(|c| own.as_deref().is_none_or(|me| !c.id.starts_with(me)));
        let mut moved = self.follow.observed(containers);
        // The first node that answered asks for everyone: a registry digest is the same
        // from every engine, and a `docker pull` by hand is usually done on the first.
        let Some((endpoint, engine)) = self.nodes.iter().find_map(|n| {
            engines
                .get(&n.name)
                .map(|e| (n.endpoint.clone(), e.clone()))
        }) else {
            return moved && self.repin();
        };
        let mut decisions = Vec::new();
        if std::mem::take(&mut self.look_local) {
            decisions.extend(self.engine_copies(&engine).await);
        }
        let now = SystemTime::now();
        let due = self.follow.due(now);
        let answers = futures::future::join_all(due.iter().map(|(_, image)| {
            let (engine, endpoint) = (engine.clone(), &endpoint);
            async move {
                match tokio::time::timeout(CHECK_TIMEOUT, engine.registry_digest(image)).await {
                    Ok(r) => r.map_err(|e| connect::explain(endpoint, &e)),
                    Err(_) => Err(format!(
                        "the registry did not answer within {} s",
                        CHECK_TIMEOUT.as_secs()
                    )),
                }
            }
        }))
        .await;
        for ((service, _), answer) in due.iter().zip(answers) {
            decisions.extend(self.follow.checked(service, answer, now));
        }
        for d in &decisions {
            moved |= d.moves();
            self.say_image(d);
        }
        self.record_images();
        moved && self.repin()
    }

    /// The engine's copy of every service's image, after a reload: a tag pulled by hand
    /// (`docker pull` then SIGHUP) is followed like a registry's answer.
    async fn engine_copies(&mut self, engine: &Client) -> Vec<ImageDecision> {
        let images: Vec<(String, String)> = self
            .follow
            .tracked()
            .map(|(s, t)| (s.clone(), t.image.clone()))
            .collect();
        let mut out = Vec::new();
        for (service, image) in images {
            match tokio::time::timeout(CHECK_TIMEOUT, engine.local_digest(&image)).await {
                Ok(Ok(Some(digest))) => out.extend(self.follow.local(&service, &digest)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    debug!(project = %self.project.name, service = %service, error = %e, "cannot inspect the image")
                }
                Err(_) => {
                    debug!(project = %self.project.name, service = %service, "inspecting the image timed out")
                }
            }
        }
        out
    }

    /// The project with the current pins, taken like a new definition (see
    /// [`crate::plan::History::reloaded`]). True when it changed.
    pub(super) fn repin(&mut self) -> bool {
        let mut pinned = self.follow.apply(&self.file);
        self.history.reloaded(&self.project, &mut pinned);
        if pinned == self.project {
            return false;
        }
        self.project = pinned;
        true
    }

    /// One line per decision: a move and a refusal at INFO/WARN once, an unchanged tag at
    /// DEBUG; a failing registry at WARN once until it answers again.
    fn say_image(&mut self, d: &ImageDecision) {
        let p = &self.project.name;
        let result = match d {
            ImageDecision::Follow {
                service,
                image,
                from,
                to,
                source,
            } => {
                self.said.image_errors.remove(service);
                info!(
                    action = "image",
                    project = %p,
                    service = %service,
                    image = %image,
                    reason = "tag-moved",
                    source = source.as_str(),
                    desired = %to,
                    actual = from.as_deref().unwrap_or("unknown"),
                    "the tag points at a new digest; rolling the service to it"
                );
                "new"
            }
            ImageDecision::Unchanged {
                service,
                image,
                digest,
            } => {
                if self.said.image_errors.remove(service) {
                    info!(action = "image", project = %p, service = %service, image = %image, "the registry answers again");
                }
                debug!(action = "image", project = %p, service = %service, image = %image, actual = %digest, "the tag has not moved");
                "unchanged"
            }
            ImageDecision::Refused {
                service,
                image,
                digest,
            } => {
                self.said.image_errors.remove(service);
                if self.said.refused.insert((service.clone(), digest.clone())) {
                    warn!(
                        action = "image",
                        project = %p,
                        service = %service,
                        image = %image,
                        reason = "failed-before",
                        desired = %digest,
                        "the tag still points at a digest whose update failed; not trying it again until the tag moves"
                    );
                }
                "refused"
            }
            ImageDecision::CheckFailed {
                service,
                image,
                error,
            } => {
                if self.said.image_errors.insert(service.clone()) {
                    warn!(action = "image", project = %p, service = %service, image = %image, error = %error, "cannot ask the registry for the tag's digest; keeping what runs");
                }
                "error"
            }
        };
        if matches!(
            d,
            ImageDecision::Follow {
                source: crate::plan::follow::Source::Engine,
                ..
            }
        ) {
            return;
        }
        self.telemetry.image_checked(d.service(), result);
    }

    /// Every service's image state, for `/status` and `/metrics`.
    fn record_images(&self) {
        self.telemetry.images(images_record(&self.follow));
    }

    /// A rollout to a pinned digest failed: that digest is refused until the tag moves.
    pub(super) fn image_failed(&mut self, service: &str, digest: &str) {
        self.follow.failed(service, digest);
        self.record_images();
    }
}

/// [`Follow`]'s state as telemetry records it.
pub(super) fn images_record(follow: &Follow) -> Vec<ImageRecord> {
    follow
        .tracked()
        .map(|(service, t)| ImageRecord {
            service: service.clone(),
            image: t.image.clone(),
            every: t.every,
            running: t.running.clone(),
            newest: t.newest.clone(),
            pinned: t.pinned.clone(),
            failed: t.failed.clone(),
            last_check: t.last_check,
            next_check: t.next_check(),
            error: t.error.clone(),
        })
        .collect()
}
