//! The reconcile loop for one project on its nodes.
//!
//! A pass is: list every node that is up, plan, execute, record outcomes. Passes are
//! triggered by the nodes' event streams, by node transitions (up, down), by a resync
//! timer (events can be lost), by backoff expiry, and by config changes (file polling or
//! SIGHUP). Passes never overlap. Every wait in the loop also waits on the cancellation
//! token, so SIGTERM ends it promptly and leaves the managed containers running.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{self, LoadOptions, Project};
use crate::engine::{Client, connect};
use crate::execute::{Executor, Outcome, Volumes};
use crate::lease::{self, LeaseConfig, LeaseHandle};
use crate::nodes::{self, HealthConfig, NodeHandle, NodeSpec};
use crate::observe::{self, Snapshot, State};
use crate::plan::{self, Action, BackoffConfig, Decision, History, NodeState, NodeView};
use crate::runtime::{ConfigSource, Trigger, Why};
use crate::telemetry::Telemetry;

/// Controller settings (flags, then `x-drover`, then defaults).
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
        }
    }
}

/// A list that takes longer than this counts as failed for the pass (the node is frozen,
/// not waited for).
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything one running controller owns.
pub struct Controller {
    nodes: Vec<NodeHandle>,
    trigger: Arc<Trigger>,
    /// The config: its files, change detection, SIGHUP.
    source: ConfigSource,
    project: Project,
    settings: Settings,
    own_id: Option<String>,
    /// Crash attempts and rollout state (see [`History`]).
    history: History,
    /// Containers killed through the API, until their exit is seen (or a minute passes).
    killed: HashMap<String, Instant>,
    /// The last good list of each node, used while a node cannot be listed.
    last: HashMap<String, Snapshot>,
    /// What was last said, so nothing is logged at INFO twice when nothing changed.
    said: Said,
    /// Metrics and status.
    telemetry: Telemetry,
    /// Whether this process may act now (see [`crate::lease`]).
    lease: LeaseHandle,
    lease_task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct Said {
    list_failing: HashSet<String>,
    warnings: HashSet<String>,
    waits: HashSet<(String, u32, u32)>,
    stopped: HashSet<String>,
    unplaced: HashSet<(String, u32, String)>,
    blocked: HashSet<(String, String)>,
    counts: BTreeMap<String, (u32, usize)>,
    reload_error: Option<String>,
}

impl Controller {
    /// Start monitoring `nodes` (connections, pings, event streams) for the loaded project.
    pub fn new(
        nodes: Vec<NodeSpec>,
        load: LoadOptions,
        loaded: config::Loaded,
        settings: Settings,
        telemetry: Telemetry,
        cancel: &CancellationToken,
        reload: crate::runtime::Reload,
    ) -> Controller {
        let trigger = Arc::new(Trigger::default());
        let health = HealthConfig::with_down_after(settings.node_down_after);
        let (lease, lease_task) = match (settings.lease, lease::lease_node(&nodes)) {
            (Some(cfg), Some(node)) => {
                let images = loaded
                    .project
                    .services
                    .values()
                    .map(|s| s.image.clone())
                    .collect();
                let (h, t) = lease::spawn(
                    node.endpoint.clone(),
                    loaded.project.name.clone(),
                    images,
                    cfg,
                    cancel.child_token(),
                );
                (h, Some(t))
            }
            _ => (LeaseHandle::always(), None),
        };
        let handles = nodes
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
            .collect();
        let mut c = Controller {
            nodes: handles,
            trigger,
            source: ConfigSource::new(load, &loaded, settings.watch_interval, reload),
            project: loaded.project,
            settings,
            own_id: observe::own_container_id(),
            history: History::default(),
            killed: HashMap::new(),
            last: HashMap::new(),
            said: Said::default(),
            telemetry,
            lease,
            lease_task,
        };
        c.warn_once(&loaded.warnings);
        c.telemetry
            .host_paths(c.source.options().host_paths.record(&loaded.host_paths));
        c
    }

    /// Reconcile until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        info!(
            action = "run",
            project = %self.project.name,
            nodes = %self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(","),
            services = self.project.services.len(),
            "reconciling"
        );
        // Plan only once every node had its chance to connect: otherwise the first node
        // to answer would get every replica.
        let first = futures::future::join_all(
            self.nodes
                .iter_mut()
                .map(|n| n.first_attempt(Duration::from_secs(15))),
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = first => {}
        }
        let mut next_resync = Instant::now();
        let mut requeue: Option<Instant> = Some(Instant::now());
        let trigger = self.trigger.clone();
        let mut lease = self.lease.clone();
        let mut acting = false;
        loop {
            // Act only while holding the project's lease; stand by otherwise.
            if !lease.held() {
                if acting {
                    warn!(action = "lease-lost", project = %self.project.name, reason = "expired", "lease not renewed in time; stopped acting");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = lease.acquired() => {}
                }
                // Whatever happened meanwhile, look at everything again.
                requeue = Some(Instant::now());
                self.last.clear();
            }
            acting = true;
            let wake_at = match requeue {
                Some(r) => r.min(next_resync),
                None => next_resync,
            };
            let reload = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = trigger.wait() => false,
                _ = tokio::time::sleep_until(wake_at.into()) => false,
                why = self.source.changed() => {
                    if why == Why::Hangup {
                        info!(action = "reload", project = %self.project.name, reason = "SIGHUP", "reloading config");
                    }
                    true
                }
            };
            if reload {
                self.reload();
            }
            if Instant::now() >= next_resync {
                next_resync = Instant::now() + self.settings.resync_interval;
            }
            let changed = trigger.take_changed();
            let now = Instant::now();
            self.killed
                .extend(trigger.take_killed().into_iter().map(|id| (id, now)));
            requeue = tokio::select! {
                _ = cancel.cancelled() => break,
                // The lease ran out mid-pass: stop sending requests now.
                _ = lease.lost() => Some(Instant::now()),
                r = self.pass(&changed) => r.map(|d| Instant::now() + d),
            };
        }
        info!(action = "shutdown", project = %self.project.name, "stopped reconciling; containers left running");
        // Let the lease task mark the lease released, so the next drover need not wait.
        if let Some(t) = self.lease_task.take() {
            let _ = tokio::time::timeout(Duration::from_millis(700), t).await;
        }
    }

    /// List every node that is up, at once; a node that cannot be listed is frozen.
    async fn observe(
        &mut self,
        changed: &HashSet<String>,
    ) -> (
        Vec<(String, NodeState, BTreeMap<String, String>)>,
        HashMap<String, Client>,
    ) {
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.endpoint.clone(), n.status()))
            .collect();
        let project = self.project.name.clone();
        let lists = futures::future::join_all(statuses.iter().map(|(name, endpoint, st)| {
            let docker = st.engine.clone().filter(|_| st.up);
            let project = project.clone();
            async move {
                match docker {
                    None => None,
                    Some(d) => Some(
                        tokio::time::timeout(
                            LIST_TIMEOUT,
                            observe::snapshot(&d, name, &project, changed),
                        )
                        .await
                        .map_err(|_| {
                            format!("listing took longer than {} s", LIST_TIMEOUT.as_secs())
                        })
                        .and_then(|r| r.map_err(|e| connect::explain(endpoint, &e)))
                        .map(|s| (d, s)),
                    ),
                }
            }
        }))
        .await;
        let mut views = Vec::new();
        let mut engines = HashMap::new();
        for ((name, endpoint, st), list) in statuses.into_iter().zip(lists) {
            let state = match list {
                None => {
                    let why = st.error.as_deref().unwrap_or("not connected yet");
                    self.telemetry.unreachable(&name, why);
                    NodeState::Down
                }
                Some(Ok((docker, snapshot))) => {
                    let seen = snapshot.observation(&self.project, self.own_id.as_deref());
                    self.telemetry.observed(&name, seen);
                    if self.said.list_failing.remove(&name) {
                        info!(action = "observe", project = %self.project.name, node = %name, "node listed again");
                    }
                    self.last.insert(name.clone(), snapshot);
                    engines.insert(name.clone(), docker);
                    NodeState::Up
                }
                Some(Err(e)) => {
                    self.telemetry.unreachable(&name, &e);
                    if self.said.list_failing.insert(name.clone()) {
                        warn!(
                            action = "observe",
                            project = %self.project.name,
                            node = %name,
                            engine = %endpoint.display(),
                            error = %e,
                            "cannot list the node; acting elsewhere until it answers"
                        );
                    }
                    NodeState::Frozen
                }
            };
            if state == NodeState::Down {
                self.last.remove(&name);
            }
            views.push((name, state, st.labels));
        }
        (views, engines)
    }

    /// One reconcile pass. Returns when to plan again regardless of events.
    pub async fn pass(&mut self, changed: &HashSet<String>) -> Option<Duration> {
        let started = Instant::now();
        // A pass spans every node: its duration counts for each.
        let _timers: Vec<_> = self
            .nodes
            .iter()
            .map(|n| self.telemetry.pass(&n.name))
            .collect();
        let (states, engines) = self.observe(changed).await;
        let empty = Snapshot::default();
        let mut listed_infra = false;
        let (plan, counts) = loop {
            let views: Vec<NodeView> = states
                .iter()
                .map(|(name, state, labels)| NodeView {
                    name,
                    state: *state,
                    labels,
                    snapshot: self.last.get(name).unwrap_or(&empty),
                })
                .collect();
            let all: Vec<&Snapshot> = views
                .iter()
                .filter(|v| v.state != NodeState::Down)
                .map(|v| v.snapshot)
                .collect();
            let counts = count_running(&self.project, &all);
            // An exit after `docker kill` / `docker stop` is not a crash: the slot restarts
            // at once, whatever its crash history.
            for (id, service, slot) in exited_kills(&self.killed, &all) {
                self.killed.remove(&id);
                self.history.backoff.forget(&service, slot);
            }
            self.killed
                .retain(|_, at| at.elapsed() < Duration::from_secs(60));
            let (halted, updating) = (self.history.halted(), self.history.updating());
            let input = plan::Input {
                project: &self.project,
                nodes: &views,
                backoff: &self.history.backoff,
                backoff_cfg: &self.settings.backoff,
                now: SystemTime::now(),
                exclude: self.own_id.as_deref(),
                rebalance: self.settings.rebalance,
                halted: &halted,
                updating: &updating,
            };
            let plan = plan::plan(&input);
            // Containers to create or start: list those nodes' networks and volumes, then
            // plan again with them (an idle pass never lists them).
            let unlisted: Vec<String> = plan::unlisted_infra(&input, &plan)
                .into_iter()
                .map(str::to_string)
                .collect();
            drop(views);
            if unlisted.is_empty() || listed_infra {
                break (plan, counts);
            }
            listed_infra = true;
            self.list_infra(&unlisted, &engines).await;
        };
        self.report_counts(counts);
        // The plan's waits and stopped slots are the project's, not a node's: recorded once,
        // under the first node.
        if let Some(first) = self.nodes.first() {
            self.telemetry.planned(&first.name, plan.record());
        }
        self.report_waits(&plan);
        self.history.settled(&plan.settled);
        if self.update_failures(&plan) {
            return Some(Duration::ZERO);
        }
        if plan.actions.is_empty() {
            debug!(project = %self.project.name, duration_ms = started.elapsed().as_millis() as u64, "nothing to do");
            return plan.requeue_after;
        }
        let executor = Executor {
            nodes: &engines,
            project: &self.project,
            parallel: self.settings.parallel,
        };
        let mut failed = false;
        let (history, settings, project) = (&mut self.history, &self.settings, &self.project);
        let telemetry = &self.telemetry;
        executor
            .execute(&plan.actions, |o| {
                failed |= o.error.is_some();
                telemetry.action(o.record());
                log_outcome(project, &o);
                let ok = o.error.is_none();
                history.record(project, &settings.backoff, &o.action, ok, SystemTime::now());
            })
            .await;
        // Look again at once: the engines changed, and rolling updates go one step per pass.
        let again = if failed {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Some(plan.requeue_after.map_or(again, |r| r.min(again)))
    }

    /// Add networks and volumes to the snapshots of `nodes`. A node that cannot be listed
    /// keeps its snapshot without them, so nothing is created there this pass.
    async fn list_infra(&mut self, nodes: &[String], engines: &HashMap<String, Client>) {
        let project = self.project.name.clone();
        let lists = futures::future::join_all(nodes.iter().filter_map(|name| {
            let docker = engines.get(name)?.clone();
            let mut snapshot = self.last.get(name)?.clone();
            let project = project.clone();
            Some(async move {
                let r = tokio::time::timeout(
                    LIST_TIMEOUT,
                    observe::list_infra(&docker, &project, &mut snapshot),
                )
                .await;
                (name.clone(), r, snapshot)
            })
        }))
        .await;
        for (name, result, snapshot) in lists {
            match result {
                Ok(Ok(())) => {
                    self.last.insert(name, snapshot);
                }
                Ok(Err(e)) => {
                    warn!(action = "observe", project = %self.project.name, node = %name, error = %e, "cannot list networks and volumes")
                }
                Err(_) => {
                    warn!(action = "observe", project = %self.project.name, node = %name, "listing networks and volumes timed out")
                }
            }
        }
    }

    /// Log each service's desired and running counts when they change.
    fn report_counts(&mut self, running: HashMap<String, usize>) {
        for (name, svc) in &self.project.services {
            let now = (svc.replicas, running.get(name).copied().unwrap_or(0));
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
    fn update_failures(&mut self, plan: &plan::Plan) -> bool {
        let p = self.project.name.clone();
        let decisions = self
            .history
            .update_failed(&mut self.project, &plan.update_failed);
        let mut changed = false;
        for d in decisions {
            match d {
                Decision::RolledBack { service, failed } => {
                    changed = true;
                    warn!(action = "rollback", project = %p, service = %service, actual = failed, reason = "update-failed", "update failed; rolling back to the previous definition");
                }
                Decision::Paused { service, failed } => {
                    warn!(action = "update-paused", project = %p, service = %service, actual = failed, reason = "update-failed", "update failed; paused until the definition changes again");
                }
            }
        }
        changed
    }

    /// Backoff waits and deliberately stopped slots, each said once per step.
    fn report_waits(&mut self, plan: &plan::Plan) {
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
        for u in &plan.unplaced {
            if self
                .said
                .unplaced
                .insert((u.service.clone(), u.slot, u.reason.clone()))
            {
                warn!(
                    action = "unplaced",
                    project = %self.project.name,
                    service = %u.service,
                    slot = u.slot,
                    reason = %u.reason,
                    "cannot place a replica"
                );
            }
        }
        if plan.unplaced.is_empty() {
            self.said.unplaced.clear();
        }
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

    /// Load the config again; on error keep running the last good one.
    fn reload(&mut self) {
        let loaded = match self.source.load() {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                self.telemetry.reload(Some(&msg));
                if self.said.reload_error.as_deref() != Some(msg.as_str()) {
                    error!(action = "reload", project = %self.project.name, error = %msg, "config invalid; keeping the last good one");
                    self.said.reload_error = Some(msg);
                }
                return;
            }
        };
        self.said.reload_error = None;
        self.telemetry.reload(None);
        if loaded.project.name != self.project.name {
            error!(
                action = "reload",
                project = %self.project.name,
                error = %format!("the project name changed to {}; restart drover to switch projects", loaded.project.name),
                "config change ignored"
            );
            return;
        }
        self.warn_once(&loaded.warnings);
        self.telemetry
            .host_paths(self.source.options().host_paths.record(&loaded.host_paths));
        let mut loaded = loaded;
        self.history.reloaded(&self.project, &mut loaded.project);
        if loaded.project == self.project {
            debug!(project = %self.project.name, "config unchanged");
            return;
        }
        for (name, svc) in &loaded.project.services {
            match self.project.services.get(name) {
                None => {
                    info!(action = "reload", project = %self.project.name, service = %name, desired = svc.replicas, "service added")
                }
                Some(old) if old.replicas != svc.replicas || old.config_hash != svc.config_hash => {
                    info!(
                        action = "reload",
                        project = %self.project.name,
                        service = %name,
                        desired = svc.replicas,
                        reason = if old.config_hash != svc.config_hash { "config-changed" } else { "scale" },
                        "service changed"
                    )
                }
                Some(_) => {}
            }
        }
        for name in self.project.services.keys() {
            if !loaded.project.services.contains_key(name) {
                info!(action = "reload", project = %self.project.name, service = %name, desired = 0, "service removed");
            }
        }
        self.project = loaded.project;
        self.said.counts.clear();
    }

    fn warn_once(&mut self, warnings: &[String]) {
        for w in warnings {
            if self.said.warnings.insert(w.clone()) {
                warn!(action = "config", project = %self.project.name, "{w}");
            }
        }
    }
}

/// Running containers of each service over the listed nodes.
fn count_running(project: &Project, snapshots: &[&Snapshot]) -> HashMap<String, usize> {
    let mut running: HashMap<String, usize> = HashMap::new();
    for c in snapshots.iter().flat_map(|s| s.containers.iter()) {
        if c.owned_by(&project.name)
            && c.state == State::Running
            && let Some(svc) = c.service()
        {
            *running.entry(svc.to_string()).or_default() += 1;
        }
    }
    running
}

/// Containers killed through the API whose exit is now seen: (id, service, slot).
fn exited_kills(
    killed: &HashMap<String, Instant>,
    snapshots: &[&Snapshot],
) -> Vec<(String, String, u32)> {
    if killed.is_empty() {
        return Vec::new();
    }
    snapshots
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.state == State::Exited && killed.contains_key(&c.id))
        .filter_map(|c| Some((c.id.clone(), c.service()?.to_string(), c.slot()?)))
        .collect()
}

/// Log one outcome.
fn log_outcome(project: &Project, o: &Outcome) {
    let a = &o.action;
    let ms = o.duration.as_millis() as u64;
    let p = &project.name;
    if let Action::CreateNetwork { name, .. }
    | Action::RemoveNetwork { name, .. }
    | Action::CreateVolume { name, .. } = a
    {
        match &o.error {
            None => {
                info!(action = a.name(), project = %p, node = a.node(), name = %name, duration_ms = ms, "{}", describe(a))
            }
            Some(err) => {
                error!(action = a.name(), project = %p, node = a.node(), name = %name, duration_ms = ms, error = %err, "action failed")
            }
        }
        return;
    }
    let service = a.service().unwrap_or("");
    let slot = a.slot().unwrap_or(0);
    let reason = a.reason().map(|r| r.as_str()).unwrap_or("");
    let container = o.container.as_deref().unwrap_or("");
    let node = a.node();
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
    let service = a.service().unwrap_or("");
    let slot = a.slot().unwrap_or(0);
    let node = a.node();
    match (a, volumes) {
        (Action::Recreate { .. }, Volumes::TakenOver(n)) => {
            info!(action = "volumes", project = %p, node, service, slot, "the new container took over {n} anonymous volume(s) of the one it replaced")
        }
        (Action::Recreate { to, .. }, Volumes::Removed(n)) if to != node => {
            warn!(action = "volumes", project = %p, node, service, slot, "the replica moved to node {to}: {n} anonymous volume(s) cannot follow it and were removed with the old container; it starts empty (keep data in a named volume on shared storage, or pin the service with placement constraints)")
        }
        (
            Action::Remove {
                reason: plan::Reason::Stale,
                ..
            },
            Volumes::Removed(n),
        ) => {
            warn!(action = "volumes", project = %p, node, service, slot, "{n} anonymous volume(s) of an older copy of the replica, which now runs on another node, were removed with it")
        }
        _ => {}
    }
}

fn describe(a: &Action) -> &'static str {
    match a {
        Action::CreateNetwork { .. } => "network created",
        Action::CreateVolume { .. } => "volume created",
        Action::RemoveNetwork { .. } => "duplicate network removed",
        Action::Create { .. } => "container created and started",
        Action::Start { .. } => "container started",
        Action::Restart { .. } => "container restarted",
        Action::StartFirst { .. } => "new copy started before the old one stops",
        Action::Recreate { .. } => "container recreated",
        Action::Remove { .. } => "container removed",
    }
}
