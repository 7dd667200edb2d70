//! Following image tags, for both modes (the judgement is [`plan::follow`]): ask one engine
//! for the digests that are due (and, after a reload, for its own copies of the tags), hand
//! the answers to [`Follow`], say each decision once at the level it deserves, and record
//! every service's image for `/status` and `/metrics`. The mode then re-pins its project.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::config::Project;
use crate::engine::connect::{Endpoint, explain};
use crate::engine::{Client, Credentials, Engine};
use crate::notify::{Event, Notifier};
use crate::plan::follow::{Follow, ImageDecision, Source};
use crate::telemetry::{ImageRecord, Telemetry};

/// A registry check that takes longer than this counts as failed (the next one is on
/// schedule).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Each service's image, and what was said about it.
#[derive(Debug, Default)]
pub struct Images {
    pub follow: Follow,
    /// Look at the engine's copies of the tags in the next check (after a reload).
    look_local: bool,
    /// Services whose registry cannot be asked (said once until it answers).
    errors: HashSet<String>,
    /// (service, digest) refused because its rollout failed (said once).
    refused: HashSet<(String, String)>,
}

impl Images {
    pub fn new(project: &Project) -> Images {
        let mut images = Images::default();
        images.follow.configure(project);
        images
    }

    /// A new config was loaded (a file changed, or SIGHUP): every followed tag is asked
    /// for at once, and the engine's copies are looked at.
    pub fn reloaded(&mut self, project: &Project) {
        self.follow.configure(project);
        self.follow.check_now();
        self.look_local = true;
    }

    /// How long until the next scheduled check (at least a second).
    pub fn next_wake(&self) -> Option<Duration> {
        self.follow.next_check().map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_secs(1))
        })
    }

    /// Ask `engine` (at `endpoint`, for error lines) for what is due, say each decision and
    /// record the images. Returns the decisions, as plain data for hooks; a service's pin
    /// moved when one of them [`moves`](ImageDecision::moves).
    pub async fn check(
        &mut self,
        project: &str,
        engine: &Client,
        endpoint: &Endpoint,
        credentials: &Credentials,
        telemetry: &Telemetry,
        notifier: &Notifier,
    ) -> Vec<ImageDecision> {
        let mut decisions = Vec::new();
        if std::mem::take(&mut self.look_local) {
            decisions.extend(self.engine_copies(project, engine).await);
        }
        let now = SystemTime::now();
        let due = self.follow.due(now);
        let answers = futures::future::join_all(due.iter().map(|(_, image)| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, engine.registry_digest(image, credentials))
                .await
            {
                Ok(r) => r.map_err(|e| explain(endpoint, &e)),
                Err(_) => Err(format!(
                    "the registry did not answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                )),
            }
        }))
        .await;
        for ((service, _), answer) in due.iter().zip(answers) {
            decisions.extend(self.follow.checked(service, answer, now));
        }
        for d in &decisions {
            if let Some(result) = self.say(project, d) {
                telemetry.image_checked(d.service(), result);
            }
            // A tag that moved; a first pin (nothing ran before) is not news.
            if let ImageDecision::Follow {
                service,
                image,
                to,
                from: Some(_),
                ..
            } = d
            {
                notifier.send(Event::image_followed(service, image, Some(to)));
            }
        }
        self.record(telemetry);
        decisions
    }

    /// The engine's copy of every service's tag: a tag pulled by hand (`docker pull`, then
    /// SIGHUP) is followed like a registry's answer.
    async fn engine_copies(&mut self, project: &str, engine: &Client) -> Vec<ImageDecision> {
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
                    debug!(project = %project, service = %service, error = %e, "cannot inspect the image")
                }
                Err(_) => {
                    debug!(project = %project, service = %service, "inspecting the image timed out")
                }
            }
        }
        out
    }

    /// A rollout to `digest` failed (rolled back or paused): refused until the tag moves.
    pub fn failed(&mut self, service: &str, digest: &str, telemetry: &Telemetry) {
        self.follow.failed(service, digest);
        self.record(telemetry);
    }

    /// Every service's image state, for `/status` and `/metrics`.
    pub fn record(&self, telemetry: &Telemetry) {
        telemetry.images(
            self.follow
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
                .collect(),
        );
    }

    /// One line per decision: a move at INFO, a refusal at WARN once per digest, a failing
    /// registry at WARN once until it answers, an unchanged tag at DEBUG. Returns the
    /// registry check's result for the metrics (`None` for an engine copy).
    fn say(&mut self, p: &str, d: &ImageDecision) -> Option<&'static str> {
        match d {
            ImageDecision::Follow {
                service,
                image,
                from,
                to,
                source,
            } => {
                self.errors.remove(service);
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
                (*source == Source::Registry).then_some("new")
            }
            ImageDecision::Unchanged {
                service,
                image,
                digest,
            } => {
                if self.errors.remove(service) {
                    info!(action = "image", project = %p, service = %service, image = %image, "the registry answers again");
                }
                debug!(action = "image", project = %p, service = %service, image = %image, actual = %digest, "the tag has not moved");
                Some("unchanged")
            }
            ImageDecision::Refused {
                service,
                image,
                digest,
            } => {
                self.errors.remove(service);
                if self.refused.insert((service.clone(), digest.clone())) {
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
                Some("refused")
            }
            ImageDecision::CheckFailed {
                service,
                image,
                error,
            } => {
                if self.errors.insert(service.clone()) {
                    warn!(action = "image", project = %p, service = %service, image = %image, error = %error, "cannot ask the registry for the tag's digest; keeping what runs");
                }
                Some("error")
            }
        }
    }
}
