//! Plain mode's part in following image tags (shared: [`crate::runtime::images`]): the
//! digests the replicas run come from their labels, the first node that answered asks the
//! registry, and a moved pin re-pins the project like a new definition.

use std::collections::HashMap;

use super::Plain;
use crate::engine::Client;
use crate::plan::ImageDecision;

impl Plain {
    /// Take what the replicas run, check what is due, and re-pin. True when the project
    /// changed.
    pub(super) async fn follow_images(&mut self, engines: &HashMap<String, Client>) -> bool {
        let project = self.project.name.clone();
        // Each node's digests as counted when its snapshot last changed (a node kept but
        // not counted since, none here).
        let nodes = self.last.keys().filter_map(|n| self.digests_on.get(n));
        let mut moved = self.images.follow.observed(nodes);
        // The first node that answered asks for everyone: a registry digest is the same
        // from every engine, and a `docker pull` by hand is usually done on the first.
        if let Some((endpoint, engine)) = self.nodes.iter().find_map(|n| {
            engines
                .get(&n.name)
                .map(|e| (n.endpoint.clone(), e.clone()))
        }) {
            moved |= self
                .images
                .check(
                    &project,
                    &engine,
                    &endpoint,
                    &self.settings.credentials,
                    &self.telemetry,
                    &self.notifier,
                )
                .await
                .iter()
                .any(ImageDecision::moves);
        }
        moved && self.repin()
    }

    /// The project with the current pins, taken like a new definition (see
    /// [`crate::plan::History::reloaded`]). True when it changed.
    pub(super) fn repin(&mut self) -> bool {
        let mut pinned = self.images.follow.apply(&self.file);
        self.history.reloaded(&self.project, &mut pinned);
        if pinned == self.project {
            return false;
        }
        self.project = pinned;
        true
    }
}
