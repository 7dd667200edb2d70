//! Swarm mode's part in following image tags (shared: [`crate::runtime::images`]): the
//! digest each service runs is the one in its spec's image (`name:tag@sha256:…`), the
//! manager's engine asks the registry, and a moved pin changes the desired spec, which
//! Swarm rolls out with the service's `update_config`. When Swarm rolls a pinned digest
//! back itself (`failure_action: rollback`), that digest is refused until the tag moves
//! and the service keeps what Swarm rolled back to.

use std::collections::BTreeMap;

use tracing::error;

use super::{Controller, Observed, desired};
use crate::config;
use crate::engine::Client;
use crate::plan::ImageDecision;
use crate::runtime::images::Images;
use crate::swarm::diff;

/// Swarm's update states that mean the last update was rolled back.
const ROLLED_BACK: &[&str] = &["rollback_started", "rollback_paused", "rollback_completed"];

impl Controller {
    /// Ask `client` (the manager's engine) for the registry digests of followed tags.
    pub fn follow_with(&mut self, client: Client) {
        self.registry = Some(client);
    }

    /// Take what the services run and what Swarm rolled back, check what is due, and
    /// re-derive the desired specs when a pin moved.
    pub(super) async fn follow_images(&mut self, observed: &Observed) {
        let project = self.project.name.clone();
        let mut running = BTreeMap::new();
        let mut rolled_back = Vec::new();
        for cur in observed.services.iter().filter(|s| s.owned_by(&project)) {
            let service = diff::compose_service(&cur.spec, &project).to_string();
            let image = cur
                .spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.as_deref())
                .unwrap_or("");
            let digest = image.split_once('@').map(|(_, d)| d.to_string());
            if observed
                .updates
                .get(cur.name())
                .is_some_and(|s| ROLLED_BACK.contains(&s.as_str()))
            {
                rolled_back.push((service.clone(), digest.clone()));
            }
            running.insert(service, digest);
        }
        let mut moved = self.images.follow.running(running);
        for (service, runs) in rolled_back {
            let pinned = self
                .images
                .follow
                .get(&service)
                .and_then(|t| t.pinned.clone());
            if let Some(p) = pinned.filter(|p| Some(p) != runs.as_ref()) {
                let refused = self
                    .images
                    .follow
                    .get(&service)
                    .and_then(|t| t.failed.clone());
                if refused.as_ref() != Some(&p) {
                    self.images.failed(&service, &p, &self.telemetry);
                    moved = true;
                }
            }
        }
        if let Some(client) = &self.registry {
            moved |= self
                .images
                .check(
                    &project,
                    client,
                    &self.engine,
                    &self.credentials,
                    &self.telemetry,
                    &self.notifier,
                )
                .await
                .iter()
                .any(ImageDecision::moves);
        } else {
            self.images.record(&self.telemetry);
        }
        if !moved {
            return;
        }
        match desired(&pinned(&self.file, &self.images)) {
            Ok((d, _)) => self.desired = d,
            Err(e) => {
                error!(action = "image", project = %project, error = %e, "cannot apply the image pins; keeping the specs as they are")
            }
        }
    }
}

/// `loaded` with the image pins applied; a pin Swarm rolled back keeps what runs.
pub(super) fn pinned(loaded: &config::Loaded, images: &Images) -> config::Loaded {
    let mut out = loaded.clone();
    out.project = images.follow.apply_settled(&loaded.project);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::tests::{endpoint, loaded};
    use super::*;
    use crate::engine::fake::FakeEngine;
    use crate::engine::model::{
        ObjectVersion, Service, ServiceUpdateStatus, ServiceUpdateStatusStateEnum,
    };
    use crate::engine::swarm::fake::{FakeSwarm, State};
    use crate::runtime::Mode;
    use crate::telemetry::Telemetry;

    const YAML: &str = "services:\n  web:\n    image: app:1\n    pull_policy: every_1h\n    deploy:\n      replicas: 2\n      update_config: { failure_action: rollback }\n";

    fn image(c: &Controller) -> String {
        c.desired.services["web"]
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|s| s.image.clone())
            .unwrap_or_default()
    }

    /// Swarm has the service as `c` wants it, with its last update in `state`.
    fn swarm_has(fake: &FakeSwarm, c: &Controller, state: ServiceUpdateStatusStateEnum) {
        let mut st = fake.state.lock().unwrap();
        st.calls.clear();
        st.services = vec![Service {
            id: Some("id-sw_web".into()),
            version: Some(ObjectVersion { index: Some(4) }),
            spec: Some(c.desired.services["web"].spec.clone()),
            update_status: Some(ServiceUpdateStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }];
    }

    fn updates(fake: &FakeSwarm) -> Vec<String> {
        fake.calls()
            .into_iter()
            .filter(|c| c.starts_with("update_service") || c.starts_with("create_service"))
            .collect()
    }

    #[tokio::test]
    async fn a_followed_tag_pins_the_spec_and_a_digest_swarm_rolled_back_is_refused() {
        let fake = Arc::new(FakeSwarm::new(State::default()));
        let engine = Arc::new(FakeEngine::default());
        engine.push("app:1", "sha256:a");
        let telemetry = Telemetry::new("sw", Duration::from_secs(60), None);
        let (mut c, _) = Controller::new(
            fake.clone(),
            endpoint(),
            &loaded("sw", YAML),
            telemetry,
            crate::engine::Credentials::in_dir("/nonexistent", "a test"),
        )
        .unwrap();
        c.follow_with(Client::from(engine.clone()));
        Mode::pass(&mut c, Default::default()).await;
        assert_eq!(image(&c), "app:1@sha256:a");
        assert_eq!(updates(&fake), ["create_service sw_web"]);
        swarm_has(&fake, &c, ServiceUpdateStatusStateEnum::COMPLETED);

        // The tag moves: the spec is updated to the new digest.
        engine.push("app:1", "sha256:b");
        c.adopt(loaded("sw", YAML)).unwrap();
        Mode::pass(&mut c, Default::default()).await;
        assert_eq!(image(&c), "app:1@sha256:b");
        assert_eq!(updates(&fake), ["update_service id-sw_web 4"]);

        // Swarm rolled it back (the fake still has the spec with a): b is refused, the
        // spec stays on a, now and at the next check.
        {
            let mut st = fake.state.lock().unwrap();
            st.calls.clear();
            st.services[0].update_status = Some(ServiceUpdateStatus {
                state: Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED),
                ..Default::default()
            });
        }
        Mode::pass(&mut c, Default::default()).await;
        assert_eq!(image(&c), "app:1@sha256:a");
        assert_eq!(updates(&fake), Vec::<String>::new());
        c.adopt(loaded("sw", YAML)).unwrap();
        Mode::pass(&mut c, Default::default()).await;
        assert_eq!(image(&c), "app:1@sha256:a");
        assert_eq!(updates(&fake), Vec::<String>::new());
        let t = c.images.follow.get("web").unwrap();
        assert_eq!(t.failed.as_deref(), Some("sha256:b"));

        // The tag moves on: the next digest is tried.
        engine.push("app:1", "sha256:c");
        c.adopt(loaded("sw", YAML)).unwrap();
        Mode::pass(&mut c, Default::default()).await;
        assert_eq!(image(&c), "app:1@sha256:c");
        assert_eq!(updates(&fake), ["update_service id-sw_web 4"]);
    }
}
