//! The project's nodes as the file lists them now: a reload of `x-drover.nodes` adds a
//! node (its monitor started at once), changes one's labels or `availability` (pause,
//! drain), or removes one. A removed node is *leaving*: drained (its replicas move to the
//! other nodes start-first, a global service's replica there is removed), then let go
//! (its monitor stopped) once it holds nothing of the project, or at once when it is down.
//! A changed `host` or `tls` takes effect at drover's next start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Plain;
use crate::config::{Availability, NodeConfig};
use crate::engine::connect::Endpoint;
use crate::nodes::{self, HealthConfig, NodeHandle, NodeSpec};
use crate::plan::NodeState;
use crate::runtime::Trigger;
use crate::telemetry::Telemetry;

/// What starting a node monitor takes, kept for the nodes a reload adds.
pub struct Spawner {
    pub health: HealthConfig,
    pub watchdog: Duration,
    pub trigger: Arc<Trigger>,
    pub telemetry: Telemetry,
    pub project: String,
    /// The runtime's token: each monitor runs under a child of it.
    pub cancel: CancellationToken,
    /// The environment node endpoints are resolved with (`HOME`).
    pub env: HashMap<String, String>,
}

impl Spawner {
    /// Start monitoring `spec`: its handle, the token that stops it, and its task.
    pub fn spawn(&self, spec: NodeSpec) -> (NodeHandle, CancellationToken, JoinHandle<()>) {
        let stop = self.cancel.child_token();
        let (handle, task) = nodes::spawn(
            spec,
            self.health,
            self.project.clone(),
            self.watchdog,
            self.trigger.clone(),
            self.telemetry.clone(),
            stop.clone(),
        );
        (handle, stop, task)
    }
}

/// The nodes' membership state kept between reloads.
#[derive(Default)]
pub struct Membership {
    /// How to start a node a reload adds; `None`: the nodes are fixed (tests).
    pub spawner: Option<Spawner>,
    /// Whether the project started with `x-drover.nodes` (a reload cannot switch between
    /// the environment's one engine and a list).
    pub listed: bool,
    /// The token that stops each node's monitor.
    pub stops: HashMap<String, CancellationToken>,
    /// Monitors started by reloads: joined at shutdown.
    pub spawned: Vec<JoinHandle<()>>,
    /// Nodes removed from the list that still hold containers of the project.
    pub leaving: BTreeMap<String, ()>,
    /// Nodes whose changed host or tls was already warned about.
    pub said_endpoint: BTreeMap<String, String>,
}

impl Plain {
    /// Take the node list of a new config. True when the nodes drover plans over changed
    /// (one added or removed, labels or availability); an error (a switch between the
    /// environment's engine and a list) keeps the last good config.
    pub(super) fn reload_nodes(&mut self, list: &[NodeConfig]) -> Result<bool, String> {
        if list.is_empty() == self.membership.listed {
            return Err(
                "x-drover.nodes was added or removed: switching between the environment's \
                 engine and a node list takes effect at drover's next start"
                    .into(),
            );
        }
        if list.is_empty() {
            return Ok(false);
        }
        // Witnesses hold lease votes only: never nodes to plan over.
        let list: Vec<&NodeConfig> = list.iter().filter(|n| !n.witness).collect();
        let mut changed = false;
        for config in &list {
            changed |= self.reload_node(config)?;
        }
        // Removed from the list: drained until it holds nothing, then let go.
        for handle in self.nodes.iter_mut() {
            if list.iter().any(|n| n.name == handle.name)
                || self.membership.leaving.contains_key(&handle.name)
            {
                continue;
            }
            info!(action = "node-removed", project = %self.project.name, node = %handle.name, "node removed from the list: its replicas move to the other nodes, then drover lets it go");
            self.membership.leaving.insert(handle.name.clone(), ());
            handle.config.availability = Availability::Drain;
            self.telemetry.node_availability(&handle.name, "leaving");
            changed = true;
        }
        // The list's order (a global service's slots), then the leaving nodes.
        let position = |name: &str| list.iter().position(|n| n.name == name);
        self.nodes
            .sort_by_key(|h| position(&h.name).unwrap_or(usize::MAX));
        Ok(changed)
    }

    /// One node of the new list: added, re-added, or its labels and availability changed.
    fn reload_node(&mut self, config: &NodeConfig) -> Result<bool, String> {
        let p = self.project.name.clone();
        let env = self
            .membership
            .spawner
            .as_ref()
            .map(|s| s.env.clone())
            .unwrap_or_default();
        let endpoint = Endpoint::for_node(
            &config.name,
            &config.host,
            config.tls.as_ref(),
            config.tls_server_name.as_deref(),
            &env,
        )
        .map_err(|e| e.to_string())?;
        let spec = NodeSpec {
            name: config.name.clone(),
            endpoint: endpoint.clone(),
            labels: config.labels.clone(),
            availability: config.availability,
        };
        let Some(handle) = self.nodes.iter_mut().find(|h| h.name == config.name) else {
            return Ok(self.add_node(spec));
        };
        let mut changed = false;
        if self.membership.leaving.remove(&config.name).is_some() {
            info!(action = "node-added", project = %p, node = %config.name, "node back in the list");
            changed = true;
        }
        if handle.endpoint != endpoint {
            let said = self.membership.said_endpoint.get(&config.name);
            if said != Some(&endpoint.display()) {
                warn!(action = "reload", project = %p, node = %config.name, engine = %handle.endpoint.display(), "the node's host or tls changed: drover keeps its connection until its next start");
                self.membership
                    .said_endpoint
                    .insert(config.name.clone(), endpoint.display());
            }
        }
        if handle.config.availability != config.availability || changed {
            if handle.config.availability != config.availability {
                info!(action = "node-availability", project = %p, node = %config.name, availability = config.availability.as_str(), "{}", availability_line(config.availability));
            }
            self.telemetry
                .node_availability(&config.name, config.availability.as_str());
            changed = true;
        }
        changed |= handle.config.labels != config.labels;
        handle.config.labels = config.labels.clone();
        handle.config.availability = config.availability;
        Ok(changed)
    }

    /// A node the list did not have: start its monitor (it counts as down until it
    /// answers). Without a way to start one (fixed nodes), nothing changes.
    fn add_node(&mut self, spec: NodeSpec) -> bool {
        let Some(spawner) = &self.membership.spawner else {
            warn!(action = "reload", project = %self.project.name, node = %spec.name, "a node added to the list is used from drover's next start");
            return false;
        };
        info!(action = "node-added", project = %self.project.name, node = %spec.name, engine = %spec.endpoint.display(), availability = spec.availability.as_str(), "node added to the list");
        let availability = spec.availability;
        let (handle, stop, task) = spawner.spawn(spec);
        self.telemetry
            .node_availability(&handle.name, availability.as_str());
        self.membership.stops.insert(handle.name.clone(), stop);
        self.membership.spawned.push(task);
        self.nodes.push(handle);
        true
    }

    /// Let go of the leaving nodes that hold nothing of the project any more, or are down
    /// (their containers there are left as they are: drover no longer reaches them).
    pub(super) fn let_go(&mut self, seen: &[(String, NodeState)]) {
        let project = self.project.name.clone();
        let own = self.own_id.clone();
        let done: Vec<String> = self
            .membership
            .leaving
            .keys()
            .filter(|name| {
                let state = seen.iter().find(|(n, _)| n == *name).map(|(_, s)| *s);
                match state {
                    Some(NodeState::Up) => self.last.get(*name).is_none_or(|s| {
                        !s.containers.iter().any(|c| {
                            c.owned_by(&project)
                                && own.as_deref().is_none_or(|me| !c.id.starts_with(me))
                        })
                    }),
                    Some(NodeState::Frozen) => false,
                    Some(NodeState::Down) | None => true,
                }
            })
            .cloned()
            .collect();
        for name in done {
            let down = !seen.iter().any(|(n, s)| *n == name && *s == NodeState::Up);
            if down {
                warn!(action = "node-removed", project = %project, node = %name, "node let go while down: its containers there are left as they are");
            } else {
                info!(action = "node-removed", project = %project, node = %name, "node emptied and let go");
            }
            self.membership.leaving.remove(&name);
            if let Some(stop) = self.membership.stops.remove(&name) {
                stop.cancel();
            }
            self.nodes.retain(|h| h.name != name);
            self.forget_node(&name);
            self.telemetry.remove_node(&name);
        }
    }
}

/// The log line of a node's new availability.
fn availability_line(a: Availability) -> &'static str {
    match a {
        Availability::Active => "node active: new replicas may be placed there",
        Availability::Pause => "node paused: what runs there stays, nothing new is placed there",
        Availability::Drain => {
            "node drained: its replicas move to the other nodes, then nothing runs there"
        }
    }
}
