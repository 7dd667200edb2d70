//! Plain mode: drover places each replica on a node and keeps it there, through the
//! shared loop ([`crate::runtime::Runtime`]). This module supplies what only plain mode
//! does: [`pass`] lists every node that is up, plans and executes; [`say`] logs what
//! changed, once.

mod images;
mod membership;
mod pass;
mod relist;
mod replicas;
mod say;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{self, Availability, Project};
use crate::engine::{self, Credentials};
use crate::lease::{self, LeaseConfig, LeaseHandle};
use crate::nodes::{HealthConfig, NodeHandle, NodeSpec};
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
    /// Lists of each node that failed in a row (each doubles the next one's deadline).
    lists_failed: HashMap<String, u32>,
    /// Watched nodes' resync lists, running beside the passes.
    relists: relist::Relists,
    /// Containers the last pass acted on, by node: the next pass inspects them (their
    /// events may not have arrived yet).
    touched: HashMap<String, HashSet<String>>,
    /// Nodes whose kept networks and volumes are to be listed again before they are used:
    /// the last pass changed them, or an action there failed (events name containers only).
    infra_stale: HashSet<String>,
    /// The routes last pushed to each running ambassador (see [`crate::mesh`]).
    pushed: crate::plan::mesh::Pushed,
    /// The project the nodes' counts were last worked out for, and each node's labels and
    /// availability then: a node whose snapshot did not change keeps its counts.
    observed_project: Option<Project>,
    observed: HashMap<String, (BTreeMap<String, String>, Availability)>,
    /// Each node's running containers by service, as last counted there.
    running_on: HashMap<String, BTreeMap<String, usize>>,
    /// Each node's containers by service and image digest, as last counted there.
    digests_on: HashMap<String, crate::plan::follow::Digests>,
    /// Each node's containers by service, as last classified there.
    groups_on: HashMap<String, crate::plan::NodeGroups>,
    /// The containers this pass's observation inspected, when nothing but containers may
    /// have changed since the last pass (see [`pass`]).
    named: Option<pass::Named>,
    /// The last plan's quiet services, and what it was made over: a pass over the same
    /// plans again only the services whose containers changed.
    quiet: (BTreeMap<String, crate::plan::Quiet>, pass::World),
    /// The image drover runs from, when it runs in a container on one of the nodes: what
    /// ambassadors run unless the file names an image.
    own_image: Option<String>,
    /// What was last said, so nothing is logged at INFO twice when nothing changed.
    said: say::Said,
    telemetry: Telemetry,
    /// Where what people act on goes (nodes down and up, updates, replicas given up on).
    notifier: Notifier,
    /// Nodes added and removed by reloads (see [`membership`]).
    membership: membership::Membership,
    /// The nodes as autoscaling sees them (see [`replicas`]), updated when they change.
    shared_nodes: replicas::SharedNodes,
    /// The lease this drover acts under.
    lease: LeaseHandle,
    /// The nodes that only vote for the lease (`role: witness`): counted with the nodes
    /// when judging whether most of the lease's nodes are down.
    witnesses: Vec<NodeHandle>,
    /// A node found down is held (planned as frozen) until the lease shows this drover
    /// reached a majority after that: plan again soon (see `hold_if_disrupted`).
    holding: bool,
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
            lists_failed: HashMap::new(),
            relists: Default::default(),
            touched: HashMap::new(),
            infra_stale: HashSet::new(),
            pushed: Default::default(),
            observed_project: None,
            observed: HashMap::new(),
            running_on: HashMap::new(),
            digests_on: HashMap::new(),
            groups_on: HashMap::new(),
            named: None,
            quiet: Default::default(),
            own_image: None,
            said: say::Said::default(),
            telemetry,
            notifier: Notifier::default(),
            membership: membership::Membership::default(),
            shared_nodes: replicas::SharedNodes::default(),
            lease: LeaseHandle::always(),
            witnesses: Vec::new(),
            holding: false,
        }
    }

    /// The image of drover's own container, from the first node that knows it.
    async fn find_own_image(&self) -> Option<String> {
        let id = self.own_id.as_deref()?;
        for node in &self.nodes {
            let Some(engine) = node.status().engine else {
                continue;
            };
            if let Ok(c) = engine.inspect_container(id).await
                && let Some(image) = c.config.and_then(|c| c.image)
            {
                return Some(image);
            }
        }
        None
    }

    /// Ambassadors run drover's own image when the file names none.
    fn own_ambassador_image(&self, project: &mut Project) {
        own_ambassador_image(&self.own_image, project);
    }

    /// Send notifications through `notifier`.
    pub fn notify_to(mut self, notifier: Notifier) -> Plain {
        self.notifier = notifier;
        self
    }

    /// Act under `lease`: its term is stamped on what is created, and a project container
    /// with a higher term ends it.
    pub fn under(mut self, lease: LeaseHandle) -> Plain {
        self.lease = lease;
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
        if self.project.mesh.is_some() {
            self.own_image = self.find_own_image().await;
            own_ambassador_image(&self.own_image, &mut self.file);
            own_ambassador_image(&self.own_image, &mut self.project);
        }
    }

    fn adopt(&mut self, loaded: config::Loaded) -> Result<Adopted, String> {
        let mut loaded = loaded;
        let nodes_changed = self.reload_nodes(&loaded.settings.nodes)?;
        if nodes_changed {
            self.share_nodes();
        }
        self.own_ambassador_image(&mut loaded.project);
        let changed = self.take(loaded.project, true);
        Ok(Adopted {
            changed: changed || nodes_changed,
            warnings: loaded.warnings,
        })
    }

    fn retarget(&mut self, loaded: config::Loaded) -> bool {
        let mut project = loaded.project;
        self.own_ambassador_image(&mut project);
        self.take(project, false)
    }

    async fn pass(&mut self, wake: Wake) -> Option<Duration> {
        let now = Instant::now();
        self.killed
            .extend(wake.killed.iter().map(|id| (id.clone(), now)));
        let again = self.reconcile(&wake).await;
        // Wake for the next registry check and the next node list due too.
        let held = self.holding.then_some(pass::RECHECK_HELD);
        [again, self.images.next_wake(), self.next_list(), held]
            .into_iter()
            .flatten()
            .min()
    }

    fn resumed(&mut self) {
        self.observed.clear();
        self.quiet = Default::default();
        self.last.clear();
        self.due.clear();
        self.touched.clear();
        self.infra_stale.clear();
    }

    fn left_running(&self) -> &'static str {
        "containers"
    }

    fn tasks(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.membership.spawned)
    }
}

impl Plain {
    /// Run `project` from now on; `say`: log what changed (a reload; the autoscaler says
    /// its own changes). `true` when the desired state changed.
    /// The nodes autoscaling counts replicas on are these nodes now.
    fn share_nodes(&self) {
        let mut shared = self.shared_nodes.lock();
        *shared = self.nodes.clone();
    }

    fn take(&mut self, project: Project, say: bool) -> bool {
        self.images.reloaded(&project);
        self.file = project;
        let mut pinned = self.images.follow.apply(&self.file);
        self.history.reloaded(&self.project, &mut pinned);
        let changed = pinned != self.project;
        if changed {
            if say {
                say::changes(&self.project, &pinned);
            }
            self.updates_started(&pinned);
            self.project = pinned;
            self.said.counts.clear();
        }
        changed
    }
}

/// Plain mode's loop for the project `loaded` describes on `nodes`: node monitors
/// started, the lease taken when `settings` asks for one, until `cancel` fires.
/// `witnesses` hold lease votes only: they get a monitor (for their connection) and no
/// replicas.
pub fn runtime(
    nodes: Vec<NodeSpec>,
    witnesses: Vec<NodeSpec>,
    settings: Settings,
    start: Start,
) -> Runtime<Plain> {
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
    let spawner = membership::Spawner {
        health: HealthConfig::with_down_after(settings.node_down_after),
        watchdog: settings.watchdog,
        trigger: trigger.clone(),
        telemetry: telemetry.clone(),
        project: loaded.project.name.clone(),
        cancel: cancel.clone(),
        env: std::env::var("HOME")
            .map(|h| HashMap::from([("HOME".to_string(), h)]))
            .unwrap_or_default(),
    };
    let mut stops = HashMap::new();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    let workers = nodes.len();
    for spec in nodes.into_iter().chain(witnesses) {
        let availability = spec.availability;
        let (handle, stop, task) = spawner.spawn(spec);
        // Witnesses only vote: no availability, and reloads do not treat them as nodes.
        if handles.len() < workers {
            telemetry.node_availability(&handle.name, availability.as_str());
            stops.insert(handle.name.clone(), stop);
        }
        handles.push(handle);
        tasks.push(task);
    }
    let lease = start_lease(&settings, &handles, &loaded.project, &telemetry, cancel);
    let lease_handle = lease.handle.clone();
    // Witnesses only vote: the mode places nothing there.
    let witnesses = handles.split_off(workers);
    let shared_nodes = replicas::SharedNodes::new(handles.clone());
    let parts = Parts {
        project: loaded.project.name.clone(),
        source: ConfigSource::new(load, &loaded, settings.watch_interval, reload),
        trigger,
        lease,
        resync: settings.resync_interval,
        telemetry: telemetry.clone(),
        tasks: tasks.into_iter().chain(notify.tasks).collect(),
        notifier: notify.notifier.clone(),
        replicas: Some(Arc::new(replicas::NodeReplicas {
            project: loaded.project.name.clone(),
            nodes: shared_nodes.clone(),
        })),
    };
    let mut mode = Plain::new(handles, loaded.project.clone(), settings, telemetry)
        .notify_to(notify.notifier)
        .under(lease_handle);
    mode.relists.wake_with(parts.trigger.clone());
    mode.shared_nodes = shared_nodes;
    mode.witnesses = witnesses;
    mode.membership = membership::Membership {
        spawner: Some(spawner),
        listed: !loaded.settings.nodes.is_empty(),
        stops,
        ..Default::default()
    };
    Runtime::new(mode, parts, &loaded, &loaded.warnings)
}

/// The project's lease on every node (witnesses included), through the node monitors'
/// connections, when `settings` asks for one; otherwise always held.
fn start_lease(
    settings: &Settings,
    nodes: &[NodeHandle],
    project: &Project,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) -> Lease {
    let Some(cfg) = settings.lease.filter(|_| !nodes.is_empty()) else {
        return Lease::none();
    };
    let images = project.services.values().map(|s| s.image.clone()).collect();
    let voters = nodes
        .iter()
        .map(|n| lease::LeaseNode {
            name: n.name.clone(),
            endpoint: n.endpoint.clone(),
            engine: Box::pin(n.engine()),
        })
        .collect();
    let (handle, task) = lease::spawn(
        voters,
        project.name.clone(),
        images,
        settings.credentials.clone(),
        cfg,
        telemetry.clone(),
        cancel.child_token(),
    );
    Lease {
        handle,
        task: Some(task),
    }
}

/// Ambassadors run drover's own image (`own`) when the file names none.
fn own_ambassador_image(own: &Option<String>, project: &mut Project) {
    if let (Some(mesh), Some(own)) = (project.mesh.as_mut(), own)
        && mesh.image.is_none()
    {
        mesh.image = Some(own.clone());
    }
}
