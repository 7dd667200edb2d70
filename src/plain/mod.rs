//! Plain mode: drover places each replica on a node and keeps it there, through the
//! shared loop ([`crate::runtime::Runtime`]). This module supplies what only plain mode
//! does: [`pass`] lists every node that is up, plans and executes; [`say`] logs what
//! changed, once.

mod images;
mod pass;
mod say;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{self, Project};
use crate::engine::{self, Credentials};
use crate::lease::{self, LeaseConfig};
use crate::nodes::{self, HealthConfig, NodeHandle, NodeSpec};
use crate::notify::Notifier;
use crate::observe::Snapshot;
use crate::plan::{BackoffConfig, History};
use crate::runtime::images::Images;
use crate::runtime::{Adopted, ConfigSource, Lease, Mode, Parts, Runtime, Start, Trigger, Wake};
use crate::telemetry::Telemetry;

/// Plain mode's settings (flags, then `x-drover`, then defaults).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A full list this often even when no event arrives.
    pub resync_interval: Duration,
    /// An event stream silent this long is reopened.
    pub watchdog: Duration,
    pub backoff: BackoffConfig,
    /// Engine operations in flight at once.
    pub parallel: usize,
    /// How often the config files are checked for changes.
    pub watch_interval: Duration,
    /// A node whose pings all fail for this long is down and its replicas move.
    pub node_down_after: Duration,
    /// Move replicas towards an even spread when a node joins or returns.
    pub rebalance: bool,
    /// Mutual exclusion with other drovers of the project; `None`: act without it.
    pub lease: Option<LeaseConfig>,
    /// Registry logins for every pull (the Docker CLI's `config.json`).
    pub credentials: Credentials,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync_interval: Duration::from_secs(30),
            watchdog: Duration::from_secs(60),
            backoff: BackoffConfig::default(),
            parallel: 8,
            watch_interval: Duration::from_secs(1),
            node_down_after: Duration::from_millis(1500),
            rebalance: false,
            lease: Some(LeaseConfig::default()),
            credentials: Credentials::default(),
        }
    }
}

/// Plain mode's state between passes.
pub struct Plain {
    nodes: Vec<NodeHandle>,
    /// The project as the files say it.
    file: Project,
    /// The project drover runs: the file's, with the image pins and the rollbacks in force.
    project: Project,
    /// Each service's image: the digests seen, the pins, the registry checks.
    images: Images,
    settings: Settings,
    own_id: Option<String>,
    /// Crash attempts and rollout state (see [`History`]).
    history: History,
    /// Containers killed through the API, until their exit is seen (or a minute passes).
    killed: HashMap<String, Instant>,
    /// What each node holds: listed, then kept current from the containers its events
    /// name (when the node's events reach the loop); used as it was while a node cannot be
    /// listed.
    last: HashMap<String, Snapshot>,
    /// When each node is listed again whatever its events say (its resync, paced: the
    /// nodes' lists are spread over the interval, not all at once).
    due: HashMap<String, Instant>,
    /// Containers the last pass acted on, by node: the next pass inspects them (their
    /// events may not have arrived yet).
    touched: HashMap<String, HashSet<String>>,
    /// Nodes whose kept networks and volumes are to be listed again before they are used:
    /// the last pass changed them, or an action there failed (events name containers only).
    infra_stale: HashSet<String>,
    /// What was last said, so nothing is logged at INFO twice when nothing changed.
    said: say::Said,
    telemetry: Telemetry,
    /// Where what people act on goes (nodes down and up, updates, replicas given up on).
    notifier: Notifier,
}

impl Plain {
    /// Plain mode over `nodes` that already have monitors (see [`nodes::spawn`]).
    pub fn new(
        nodes: Vec<NodeHandle>,
        project: Project,
        settings: Settings,
        telemetry: Telemetry,
    ) -> Plain {
        Plain {
            nodes,
            file: project.clone(),
            images: Images::new(&project),
            project,
            settings,
            own_id: engine::own_container_id(),
            history: History::default(),
            killed: HashMap::new(),
            last: HashMap::new(),
            due: HashMap::new(),
            touched: HashMap::new(),
            infra_stale: HashSet::new(),
            said: say::Said::default(),
            telemetry,
            notifier: Notifier::default(),
        }
    }

    /// Send notifications through `notifier`.
    pub fn notify_to(mut self, notifier: Notifier) -> Plain {
        self.notifier = notifier;
        self
    }
}

impl Mode for Plain {
    async fn start(&mut self, _cancel: &CancellationToken) {
        info!(
            action = "run",
            project = %self.project.name,
            nodes = %self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(","),
            services = self.project.services.len(),
            "reconciling"
        );
        // Plan only once every node had its chance to connect: otherwise the first node
        // to answer would get every replica.
        let first = self
            .nodes
            .iter_mut()
            .map(|n| n.first_attempt(Duration::from_secs(15)));
        futures::future::join_all(first).await;
    }

    fn adopt(&mut self, loaded: config::Loaded) -> Result<Adopted, String> {
        self.images.reloaded(&loaded.project);
        self.file = loaded.project;
        let mut pinned = self.images.follow.apply(&self.file);
        self.history.reloaded(&self.project, &mut pinned);
        let changed = pinned != self.project;
        if changed {
            say::changes(&self.project, &pinned);
            self.updates_started(&pinned);
            self.project = pinned;
            self.said.counts.clear();
        }
        Ok(Adopted {
            changed,
            warnings: loaded.warnings,
        })
    }

    async fn pass(&mut self, wake: Wake) -> Option<Duration> {
        let now = Instant::now();
        self.killed
            .extend(wake.killed.iter().map(|id| (id.clone(), now)));
        let again = self.reconcile(&wake).await;
        // Wake for the next registry check and the next node list due too.
        [again, self.images.next_wake(), self.next_list()]
            .into_iter()
            .flatten()
            .min()
    }

    fn resumed(&mut self) {
        self.last.clear();
        self.due.clear();
        self.touched.clear();
        self.infra_stale.clear();
    }

    fn left_running(&self) -> &'static str {
        "containers"
    }
}

/// Plain mode's loop for the project `loaded` describes on `nodes`: node monitors
/// started, the lease taken when `settings` asks for one, until `cancel` fires.
pub fn runtime(nodes: Vec<NodeSpec>, settings: Settings, start: Start) -> Runtime<Plain> {
    let Start {
        load,
        loaded,
        telemetry,
        cancel,
        reload,
        notify,
    } = start;
    let cancel = &cancel;
    let trigger = Arc::new(Trigger::default());
    let health = HealthConfig::with_down_after(settings.node_down_after);
    let (handles, tasks): (Vec<NodeHandle>, Vec<_>) = nodes
        .into_iter()
        .map(|spec| {
            nodes::spawn(
                spec,
                health,
                loaded.project.name.clone(),
                settings.watchdog,
                trigger.clone(),
                telemetry.clone(),
                cancel.child_token(),
            )
        })
        .unzip();
    let lease = start_lease(&settings, &handles, &loaded.project, cancel);
    let parts = Parts {
        project: loaded.project.name.clone(),
        source: ConfigSource::new(load, &loaded, settings.watch_interval, reload),
        trigger,
        lease,
        resync: settings.resync_interval,
        telemetry: telemetry.clone(),
        tasks: tasks.into_iter().chain(notify.tasks).collect(),
        notifier: notify.notifier.clone(),
    };
    let mode =
        Plain::new(handles, loaded.project.clone(), settings, telemetry).notify_to(notify.notifier);
    Runtime::new(mode, parts, &loaded, &loaded.warnings)
}

/// The project's lease on its lease node, through the node monitor's connection, when
/// `settings` asks for one and there is such a node; otherwise always held.
fn start_lease(
    settings: &Settings,
    nodes: &[NodeHandle],
    project: &Project,
    cancel: &CancellationToken,
) -> Lease {
    let (Some(cfg), Some(node)) = (settings.lease, lease_node(nodes)) else {
        return Lease::none();
    };
    let images = project.services.values().map(|s| s.image.clone()).collect();
    let (handle, task) = lease::spawn(
        node.engine(),
        node.endpoint.clone(),
        project.name.clone(),
        images,
        settings.credentials.clone(),
        cfg,
        cancel.child_token(),
    );
    Lease {
        handle,
        task: Some(task),
    }
}

/// The node that keeps the lease: the project's first node by name, the same for every
/// drover of the project.
fn lease_node(nodes: &[NodeHandle]) -> Option<&NodeHandle> {
    nodes.iter().min_by(|a, b| a.name.cmp(&b.name))
}
