//! Following image tags: which services ask their registry for their tag's digest and when,
//! what each answer decides, and the digest every service is pinned to. Pure: time is passed
//! in, the mode asks the registry (or the engine, for its own copy) and hands the answers
//! here.
//!
//! A pin is the digest a service's containers must run (`Service::digest`); the mode
//! applies the pins to the project it loaded ([`Follow::apply`]) and hands the result to
//! [`History::reloaded`](super::History::reloaded) like any new definition, so a moved
//! digest rolls through the service's `update_config` and a digest whose rollout failed is
//! rolled back per `failure_action` and stays refused while the tag still points at it.
//! Safety rules, in one place:
//! - nothing is pinned before the service's own replicas say what they run: the first pin is
//!   the digest they run (no roll), so a restarted drover never rolls a service by itself;
//! - a tag that did not move decides nothing; a failed check keeps the pin;
//! - a digest whose rollout failed is not tried again until the tag points elsewhere.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::config::{Project, PullPolicy};

pub use crate::observe::{Digests, count_digest};

/// Every service's image state.
#[derive(Debug, Clone, Default)]
pub struct Follow {
    services: BTreeMap<String, Tracked>,
}

/// One service's image, as drover knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    /// The image reference as written (a tag).
    pub image: String,
    /// How often the registry is asked; `None`: the service does not follow its tag (it is
    /// pinned only to what a reload finds on the engine).
    pub every: Option<Duration>,
    /// When the registry was last asked (answered or not).
    pub last_check: Option<SystemTime>,
    /// The last check's error, while the registry cannot be asked.
    pub error: Option<String>,
    /// The newest digest seen for the tag (in the registry, or on the engine after a reload).
    pub newest: Option<String>,
    /// The digest most of the service's containers run (their `drover.image-digest`).
    pub running: Option<String>,
    /// The digest the service's containers must run.
    pub pinned: Option<String>,
    /// A digest whose rollout failed: not tried again until the tag moves on.
    pub failed: Option<String>,
}

impl Tracked {
    /// When the registry is to be asked next; `None` when the service does not follow.
    pub fn next_check(&self) -> Option<SystemTime> {
        let every = self.every?;
        Some(
            self.last_check
                .map_or(SystemTime::UNIX_EPOCH, |t| t + every),
        )
    }
}

/// Where a digest was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The registry's answer to a scheduled check.
    Registry,
    /// The engine's copy of the tag, looked at after a reload (a `docker pull` by hand).
    Engine,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Registry => "registry",
            Source::Engine => "engine",
        }
    }
}

/// What one answer decided, as plain data for the log line and for hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDecision {
    /// The tag moved: the service is pinned to `to` and rolls to it.
    Follow {
        service: String,
        image: String,
        from: Option<String>,
        to: String,
        source: Source,
    },
    /// The tag still points where the service is pinned.
    Unchanged {
        service: String,
        image: String,
        digest: String,
    },
    /// The tag points at a digest whose rollout failed: it stays refused until the tag moves.
    Refused {
        service: String,
        image: String,
        digest: String,
    },
    /// The registry could not be asked; the pin stays.
    CheckFailed {
        service: String,
        image: String,
        error: String,
    },
}

impl ImageDecision {
    pub fn service(&self) -> &str {
        match self {
            ImageDecision::Follow { service, .. }
            | ImageDecision::Unchanged { service, .. }
            | ImageDecision::Refused { service, .. }
            | ImageDecision::CheckFailed { service, .. } => service,
        }
    }

    /// Whether it changes what runs.
    pub fn moves(&self) -> bool {
        matches!(self, ImageDecision::Follow { .. })
    }
}

impl Follow {
    /// Take a newly loaded project's services: a service whose image changed (or that is
    /// new) starts afresh; one whose policy changed keeps what it knows.
    pub fn configure(&mut self, project: &Project) {
        self.services.retain(|name, t| {
            project
                .services
                .get(name)
                .is_some_and(|s| s.image == t.image)
        });
        for (name, svc) in &project.services {
            let t = self.services.entry(name.clone()).or_default();
            t.image = svc.image.clone();
            t.every = svc.options.pull_policy.follow_every();
            if svc.options.pull_policy == PullPolicy::Never
                || svc.options.pull_policy == PullPolicy::Build
            {
                t.pinned = None;
            }
        }
    }

    pub fn get(&self, service: &str) -> Option<&Tracked> {
        self.services.get(service)
    }

    pub fn tracked(&self) -> impl Iterator<Item = (&String, &Tracked)> {
        self.services.iter()
    }

    /// `project` with every pin applied (`Service::digest`).
    pub fn apply(&self, project: &Project) -> Project {
        let mut out = project.clone();
        for (name, svc) in out.services.iter_mut() {
            svc.digest = self.services.get(name).and_then(|t| t.pinned.clone());
        }
        out
    }

    /// The digests the services' containers run, counted over the nodes (see
    /// [`Snapshot::digests`](crate::observe::Snapshot::digests)). A following service not
    /// pinned yet is pinned to what its containers run: drover starts by keeping what
    /// runs. True when that pinned a service.
    pub fn observed<'d>(&mut self, nodes: impl IntoIterator<Item = &'d Digests>) -> bool {
        let mut counts = Digests::new();
        for node in nodes {
            for (svc, by) in node {
                for (d, n) in by {
                    count_digest(&mut counts, svc, d, *n);
                }
            }
        }
        let running = self
            .services
            .keys()
            .map(|name| {
                let most = counts.get(name.as_str()).and_then(|by| {
                    by.iter()
                        .max_by_key(|(d, n)| (**n, std::cmp::Reverse(*d)))
                        .map(|(d, _)| d.to_string())
                });
                (name.clone(), most)
            })
            .collect();
        self.running(running)
    }

    /// The digest each service runs (`None`: not known), from the replicas' labels or, in
    /// Swarm mode, the service spec. A following service not pinned yet is pinned to it.
    /// True when that pinned a service.
    pub fn running(&mut self, running: BTreeMap<String, Option<String>>) -> bool {
        let mut pinned = false;
        for (name, t) in self.services.iter_mut() {
            t.running = running.get(name).cloned().flatten();
            if t.every.is_some() && t.pinned.is_none() && t.running.is_some() {
                t.pinned = t.running.clone();
                pinned = true;
            }
        }
        pinned
    }

    /// `project` with the pins applied, except that a service whose pin was refused keeps
    /// what it runs: for Swarm mode, where Swarm itself rolled the failed digest back.
    pub fn apply_settled(&self, project: &Project) -> Project {
        let mut out = project.clone();
        for (name, svc) in out.services.iter_mut() {
            svc.digest = self.services.get(name).and_then(|t| {
                if t.failed.is_some() && t.failed == t.pinned {
                    t.running.clone()
                } else {
                    t.pinned.clone()
                }
            });
        }
        out
    }

    /// Ask for every followed tag in the next pass (a reload, SIGHUP).
    pub fn check_now(&mut self) {
        for t in self.services.values_mut() {
            t.last_check = None;
        }
    }

    /// Services whose registry check is due at `now`, with their images.
    pub fn due(&self, now: SystemTime) -> Vec<(String, String)> {
        self.services
            .iter()
            .filter(|(_, t)| t.next_check().is_some_and(|at| at <= now))
            .map(|(n, t)| (n.clone(), t.image.clone()))
            .collect()
    }

    /// The earliest scheduled check.
    pub fn next_check(&self) -> Option<SystemTime> {
        self.services.values().filter_map(Tracked::next_check).min()
    }

    /// The registry's answer for `service`'s tag, asked at `now`.
    pub fn checked(
        &mut self,
        service: &str,
        answer: Result<String, String>,
        now: SystemTime,
    ) -> Option<ImageDecision> {
        let t = self.services.get_mut(service)?;
        t.last_check = Some(now);
        match answer {
            Err(error) => {
                t.error = Some(error.clone());
                Some(ImageDecision::CheckFailed {
                    service: service.to_string(),
                    image: t.image.clone(),
                    error,
                })
            }
            Ok(digest) => {
                t.error = None;
                Some(seen(service, t, digest, Source::Registry))
            }
        }
    }

    /// The engine's copy of `service`'s tag has `digest` (looked at after a reload). It is
    /// followed only when it differs from what the replicas run: replicas whose digest is
    /// not known are not rolled for it.
    pub fn local(&mut self, service: &str, digest: &str) -> Option<ImageDecision> {
        let t = self.services.get_mut(service)?;
        let known = t.pinned.as_ref().or(t.running.as_ref())?;
        if known == digest {
            return None;
        }
        Some(seen(service, t, digest.to_string(), Source::Engine))
    }

    /// The rollout of `service` to `digest` failed (and was rolled back or paused).
    pub fn failed(&mut self, service: &str, digest: &str) {
        if let Some(t) = self.services.get_mut(service) {
            t.failed = Some(digest.to_string());
        }
    }
}

/// `digest` seen for `t`'s tag: follow it unless it is the pin already or it failed.
fn seen(service: &str, t: &mut Tracked, digest: String, source: Source) -> ImageDecision {
    t.newest = Some(digest.clone());
    let (service, image) = (service.to_string(), t.image.clone());
    if t.failed.as_ref() == Some(&digest) {
        return ImageDecision::Refused {
            service,
            image,
            digest,
        };
    }
    if t.pinned.as_ref() == Some(&digest) {
        return ImageDecision::Unchanged {
            service,
            image,
            digest,
        };
    }
    let from = t
        .pinned
        .replace(digest.clone())
        .or_else(|| t.running.clone());
    t.failed = None;
    ImageDecision::Follow {
        service,
        image,
        from,
        to: digest,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LABEL_IMAGE_DIGEST;
    use crate::observe::State;
    use crate::observe::{Container, Snapshot};
    use crate::plan::tests::{P, container, project, svc};

    const HOUR: Duration = Duration::from_secs(3600);

    fn following(every: Duration) -> Project {
        let mut web = svc("web", 2);
        web.image = "reg:5000/app:v1".into();
        web.options.pull_policy = PullPolicy::Refresh(every);
        project(vec![web, svc("db", 1)])
    }

    fn running(service: &str, digest: &str) -> Container {
        let mut c = container("c", service, 1, State::Running, "hash");
        c.labels.insert(LABEL_IMAGE_DIGEST.into(), digest.into());
        c
    }

    /// What one node holding `containers` shows.
    fn seen(containers: &[Container]) -> Digests {
        let node = Snapshot {
            containers: containers.to_vec(),
            ..Snapshot::default()
        };
        node.digests(P, None)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn started(every: Duration) -> Follow {
        let mut f = Follow::default();
        f.configure(&following(every));
        f.observed([&seen(&[
            running("web", "sha256:a"),
            running("web", "sha256:a"),
        ])]);
        f
    }

    #[test]
    fn a_following_service_is_pinned_to_what_it_runs_and_checked_at_once_then_on_schedule() {
        let f = started(HOUR);
        assert_eq!(f.get("web").unwrap().pinned.as_deref(), Some("sha256:a"));
        // db does not follow: never due, never pinned by what it runs.
        assert_eq!(f.get("db").unwrap().pinned, None);
        assert_eq!(f.due(at(0)), vec![("web".into(), "reg:5000/app:v1".into())]);
        let mut f = f;
        let d = f.checked("web", Ok("sha256:a".into()), at(0));
        assert!(matches!(d, Some(ImageDecision::Unchanged { .. })));
        assert!(f.due(at(10)).is_empty());
        assert_eq!(f.next_check(), Some(at(3600)));
        assert_eq!(f.due(at(3600)).len(), 1);
    }

    #[test]
    fn a_moved_tag_pins_the_new_digest_and_the_project_asks_for_it() {
        let mut f = started(HOUR);
        let d = f.checked("web", Ok("sha256:b".into()), at(0)).unwrap();
        assert_eq!(
            d,
            ImageDecision::Follow {
                service: "web".into(),
                image: "reg:5000/app:v1".into(),
                from: Some("sha256:a".into()),
                to: "sha256:b".into(),
                source: Source::Registry,
            }
        );
        let p = f.apply(&following(HOUR));
        assert_eq!(p.services["web"].digest.as_deref(), Some("sha256:b"));
        assert_eq!(p.services["web"].reference(), "reg:5000/app:v1@sha256:b");
        assert_eq!(p.services["db"].digest, None);
    }

    #[test]
    fn a_failed_digest_is_refused_until_the_tag_moves_on() {
        let mut f = started(HOUR);
        f.checked("web", Ok("sha256:b".into()), at(0));
        f.failed("web", "sha256:b");
        let again = f.checked("web", Ok("sha256:b".into()), at(3600)).unwrap();
        assert!(matches!(again, ImageDecision::Refused { .. }), "{again:?}");
        assert!(!again.moves());
        let next = f.checked("web", Ok("sha256:c".into()), at(7200)).unwrap();
        assert!(next.moves());
        assert_eq!(f.get("web").unwrap().failed, None);
    }

    #[test]
    fn a_failed_check_keeps_the_pin_and_waits_for_the_next_one() {
        let mut f = started(HOUR);
        let d = f.checked("web", Err("unreachable".into()), at(0)).unwrap();
        assert!(matches!(d, ImageDecision::CheckFailed { .. }));
        let t = f.get("web").unwrap();
        assert_eq!(t.pinned.as_deref(), Some("sha256:a"));
        assert_eq!(t.error.as_deref(), Some("unreachable"));
        assert!(f.due(at(60)).is_empty());
    }

    #[test]
    fn an_engine_copy_that_differs_from_what_runs_is_followed_even_without_a_schedule() {
        let mut f = Follow::default();
        f.configure(&following(HOUR));
        f.observed([&seen(&[running("db", "sha256:1")])]);
        assert_eq!(f.local("db", "sha256:1"), None);
        let d = f.local("db", "sha256:2").unwrap();
        assert!(matches!(
            d,
            ImageDecision::Follow {
                source: Source::Engine,
                ..
            }
        ));
        assert_eq!(f.get("db").unwrap().pinned.as_deref(), Some("sha256:2"));
    }

    #[test]
    fn replicas_whose_digest_is_unknown_are_not_rolled_for_an_engine_copy() {
        let mut f = Follow::default();
        f.configure(&following(HOUR));
        f.observed([&seen(&[])]);
        assert_eq!(f.local("db", "sha256:2"), None);
        assert_eq!(f.get("db").unwrap().pinned, None);
    }

    #[test]
    fn a_new_image_starts_afresh_and_a_removed_service_is_forgotten() {
        let mut f = started(HOUR);
        f.checked("web", Ok("sha256:b".into()), at(0));
        let mut p = following(HOUR);
        p.services.get_mut("web").unwrap().image = "reg:5000/app:v2".into();
        p.services.remove("db");
        f.configure(&p);
        let t = f.get("web").unwrap();
        assert_eq!((t.pinned.as_ref(), t.last_check), (None, None));
        assert!(f.get("db").is_none());
    }
}

#[cfg(test)]
mod settled {
    use super::*;
    use crate::plan::tests::{project, svc};

    #[test]
    fn a_refused_pin_keeps_what_runs_when_the_engine_rolled_it_back_itself() {
        let mut web = svc("web", 1);
        web.options.pull_policy = PullPolicy::Refresh(Duration::from_secs(60));
        let p = project(vec![web]);
        let mut f = Follow::default();
        f.configure(&p);
        f.running(BTreeMap::from([("web".into(), Some("sha256:a".into()))]));
        let now = SystemTime::UNIX_EPOCH;
        f.checked("web", Ok("sha256:b".into()), now);
        assert_eq!(
            f.apply_settled(&p).services["web"].digest.as_deref(),
            Some("sha256:b")
        );
        f.failed("web", "sha256:b");
        assert_eq!(
            f.apply_settled(&p).services["web"].digest.as_deref(),
            Some("sha256:a")
        );
        assert_eq!(
            f.apply(&p).services["web"].digest.as_deref(),
            Some("sha256:b"),
            "plain mode's History keeps the rollback itself"
        );
    }
}
