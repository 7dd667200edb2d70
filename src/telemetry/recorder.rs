//! What the controller tells the outside world: a cheap, cloneable [`Telemetry`] handle
//! whose hook methods record figures per node, read by `/metrics`, `/status` and `/readyz`.
//!
//! Every per-service figure and every action carries the node it happened on (today the
//! one engine, named by its endpoint). Hooks never fail and never block on I/O: each takes
//! a short lock on plain data.
//!
//! The hooks take records defined here ([`ActionEvent`], [`Observation`], [`PlanRecord`],
//! [`HostPathsRecord`], Swarm's [`Report`]): telemetry imports nothing
//! above it; whoever records converts its own types into these.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::swarm::Report;

/// How many of the latest actions `/status` keeps.
const LAST_ACTIONS: usize = 50;

/// Reconcile pass durations, seconds.
pub(crate) const PASS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Event lag (engine timestamp to receipt), seconds.
pub(crate) const LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The handle the controller and the event watcher record into. Clones share one state.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Mutex<Recorded>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// A cumulative histogram with fixed buckets (Prometheus semantics).
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    pub bounds: &'static [f64],
    /// Observations `<=` each bound (cumulative, same length as `bounds`).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// One engine's health as drover last saw it.
#[derive(Debug, Clone)]
pub(crate) struct NodeRecord {
    /// `None` until the first pass on this node.
    pub up: Option<bool>,
    /// Plain mode: `active`, `pause`, `drain`, or `leaving` (removed from the list, drained
    /// until it holds nothing); `None` in Swarm mode.
    pub availability: Option<&'static str>,
    pub error: Option<String>,
    pub last_observed: Option<SystemTime>,
    pub passes: Histogram,
    pub stream: StreamRecord,
}

impl NodeRecord {
    fn new() -> NodeRecord {
        NodeRecord {
            up: None,
            availability: None,
            error: None,
            last_observed: None,
            passes: Histogram::new(PASS_BUCKETS),
            stream: StreamRecord::new(),
        }
    }
}

/// One engine's event stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamRecord {
    pub connected: bool,
    /// Last sign of life: a (re)connection or an event.
    pub last_activity: Option<Instant>,
    pub connections: u64,
    /// Failed opens and streams that broke.
    pub errors: u64,
    pub events: u64,
    pub last_lag: Option<f64>,
    pub lag: Histogram,
    pub error: Option<String>,
}

impl StreamRecord {
    fn new() -> StreamRecord {
        StreamRecord {
            connected: false,
            last_activity: None,
            connections: 0,
            errors: 0,
            events: 0,
            last_lag: None,
            lag: Histogram::new(LAG_BUCKETS),
            error: None,
        }
    }

    /// Opens after the first one.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }
}

/// Desired and observed counts of one service on one node.
/// The project's lease as one drover sees it (several nodes: held on a majority of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The holder acting for the project (this drover or another), when one is seen on a
    /// majority of the nodes.
    pub leader: Option<String>,
    /// The leader's term (terms only grow; each leadership has its own).
    pub term: Option<u64>,
    /// This drover's own identity (`host/pid/random`).
    pub me: String,
    /// The nodes whose lease counts for this drover now.
    pub granted: Vec<String>,
    /// The nodes that hold lease votes (witnesses included), by name.
    pub node_names: Vec<String>,
    /// How many nodes hold lease votes, and how many make a majority.
    pub nodes: usize,
    pub majority: usize,
    /// Why this drover does not act (`None`: it acts).
    pub standby: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: u32,
    /// Running containers.
    pub actual: u32,
    /// Containers in any state.
    pub containers: u32,
}

/// A service as an operator sees it: one state word and why, and each replica slot's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStateRecord {
    pub service: String,
    /// `running`, `starting`, `unhealthy`, `crash-loop`, `waiting`, `unplaceable`,
    /// `updating`, `paused`, `rolled-back`, `exited`, `degraded` (some replicas gave up).
    pub state: &'static str,
    /// Why, for every state but `running`.
    pub reason: String,
    pub desired: u32,
    pub running: u32,
    /// While an update (or rollback) is watched: replicas on the new definition, of all.
    pub updated: Option<(u32, u32)>,
    pub replicas: Vec<ReplicaStateRecord>,
}

/// One replica slot of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStateRecord {
    pub slot: u32,
    pub node: Option<String>,
    /// 12-char id of the slot's container, when it has one.
    pub container: Option<String>,
    /// `running`, `starting`, `unhealthy`, `crash-loop`, `waiting`, `unplaceable`,
    /// `pending` (to be created), `exited` (left by its restart policy), `gave-up`.
    pub state: &'static str,
    pub reason: String,
    /// Crash loop: attempts so far, and when the next one is due.
    pub attempts: u32,
    pub retry_at: Option<SystemTime>,
    /// Its container runs.
    pub running: bool,
    /// Its container runs the service's current definition.
    pub current: bool,
}

/// A slot held back by crash backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRecord {
    pub service: String,
    pub slot: u32,
    pub attempts: u32,
    pub until: SystemTime,
}

/// A slot left exited on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedRecord {
    pub service: String,
    pub slot: u32,
    pub container: String,
    pub exit_code: Option<i64>,
    pub gave_up: bool,
}

/// What one node's list showed: per service, desired and observed counts; and the slots
/// that have a container (a later create for one of them replaces a removed container).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// By service name.
    pub services: BTreeMap<String, Counts>,
    /// (service, slot) of every container listed.
    pub slots: BTreeSet<(String, u32)>,
}

/// What a plan holds back: slots in crash backoff and slots left exited on purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRecord {
    pub waits: Vec<WaitRecord>,
    pub stopped: Vec<StoppedRecord>,
}

/// What a finished action did to its slot, for the restart and recreation counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChange {
    /// A stopped container started again: a restart (counted by reason).
    Started,
    /// A container replaced by a new one (counted by reason).
    Recreated,
    /// A new container: a recreation (reason `removed`) when the slot had one before.
    Created,
    /// drover removed the slot's container: a later create is a scale-up.
    Removed,
    /// Anything else (restarts in place, networks, volumes, Swarm changes).
    Other,
}

/// One finished action (successful or not), as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    /// The node (engine) it happened on.
    pub node: String,
    /// Short stable word: `create`, `start`, `recreate`, `update`, `scale`, ...
    pub action: &'static str,
    pub service: Option<String>,
    pub slot: Option<u32>,
    /// The container it created or acted on (12-char id), when known.
    pub container: Option<String>,
    /// Short stable word: `missing`, `exited`, `config-changed`, ...
    pub reason: Option<&'static str>,
    pub duration: Duration,
    /// One line saying what failed.
    pub error: Option<String>,
    pub change: SlotChange,
}

/// Paths handed to the engine as host paths other than drover's own (`from -> to`), and
/// how they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPathsRecord {
    /// `host-project-dir`, `container-mounts`, or empty.
    pub reason: &'static str,
    /// drover's own container (12 characters), when the paths come from its mounts.
    pub container: String,
    pub paths: Vec<String>,
}

/// One service's image as the last pass saw it: what runs, what the tag points at, when
/// the registry was last asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRecord {
    pub service: String,
    /// The image as written (a tag).
    pub image: String,
    /// How often the registry is asked; `None` when the service does not follow its tag.
    pub every: Option<Duration>,
    /// The digest most replicas run (their `drover.image-digest`).
    pub running: Option<String>,
    /// The newest digest seen for the tag.
    pub newest: Option<String>,
    /// The digest the replicas must run.
    pub pinned: Option<String>,
    /// A digest whose rollout failed, refused until the tag moves on.
    pub failed: Option<String>,
    pub last_check: Option<SystemTime>,
    pub next_check: Option<SystemTime>,
    /// The last check's error, while the registry cannot be asked.
    pub error: Option<String>,
}

/// One finished action.
#[derive(Debug, Clone)]
pub(crate) struct ActionRecord {
    pub time: SystemTime,
    pub node: String,
    pub action: &'static str,
    pub service: Option<String>,
    pub slot: Option<u32>,
    pub container: Option<String>,
    pub reason: Option<&'static str>,
    pub duration: Duration,
    pub error: Option<String>,
}

/// Key of a counter broken down by service, node and reason.
pub(crate) type ReasonKey = (String, String, &'static str);

/// Everything recorded so far.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub project: String,
    pub started: SystemTime,
    pub container: Option<String>,
    /// An event stream silent longer than this is stale (not ready).
    pub freshness: Duration,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// (service, node) -> counts.
    pub services: BTreeMap<(String, String), Counts>,
    /// node -> waits, as of the last plan on that node.
    pub waits: BTreeMap<String, Vec<WaitRecord>>,
    pub stopped: BTreeMap<String, Vec<StoppedRecord>>,
    /// (service, node, action, reason, result) -> count.
    pub actions: BTreeMap<(String, String, &'static str, &'static str, &'static str), u64>,
    pub restarts: BTreeMap<ReasonKey, u64>,
    pub recreations: BTreeMap<ReasonKey, u64>,
    pub last_actions: VecDeque<ActionRecord>,
    /// Slots that had a container at some point (node, service, slot): a create for one
    /// of them replaces a removed container.
    seen_slots: BTreeSet<(String, String, u32)>,
    pub reload_failures: u64,
    pub reload_error: Option<String>,
    /// This drover holds the project's lease and acts (false while it stands by).
    pub acting: bool,
    /// The lease as this drover last saw it (`None`: no lease, e.g. Swarm mode).
    pub lease: Option<LeaseRecord>,
    /// Each service's state as of the last pass, by name.
    pub states: BTreeMap<String, ServiceStateRecord>,
    /// Restarts of each replica (service, slot): a stopped container started again, or
    /// a dead or unhealthy one replaced.
    pub slot_restarts: BTreeMap<(String, u32), u64>,
    /// Bind sources handed to the engine as host paths other than drover's (`from -> to`).
    pub host_paths: Vec<String>,
    /// Swarm mode: the latest report of the project's services, tasks and nodes.
    pub swarm: Option<Report>,
    /// (webhook, result) -> notifications that ended so (`sent`, `failed`).
    pub notifications: BTreeMap<(String, &'static str), u64>,
    /// webhook -> notifications dropped unsent because its queue was full.
    pub notifications_dropped: BTreeMap<String, u64>,
    /// Each service's image, as of the last pass.
    pub images: BTreeMap<String, ImageRecord>,
    /// (service, result) -> registry checks: `unchanged`, `new`, `refused`, `error`.
    pub image_checks: BTreeMap<(String, &'static str), u64>,
    /// Each autoscaled service, as of its last poll.
    pub autoscale: BTreeMap<String, super::autoscale::AutoscaleStatus>,
    /// (service, trigger) -> polls without a value.
    pub autoscale_errors: BTreeMap<(String, String), u64>,
    /// (service, direction) -> target changes.
    pub autoscale_changes: BTreeMap<(String, &'static str), u64>,
}

impl Telemetry {
    /// A handle for `project`. `freshness` is how long an event stream may stay silent and
    /// still count as fresh (the watchdog reopens a silent stream well before that);
    /// `container` is drover's own container id, when it runs in one.
    pub fn new(project: &str, freshness: Duration, container: Option<String>) -> Telemetry {
        Telemetry {
            inner: Arc::new(Mutex::new(Recorded {
                project: project.to_string(),
                started: SystemTime::now(),
                container,
                freshness,
                nodes: BTreeMap::new(),
                services: BTreeMap::new(),
                waits: BTreeMap::new(),
                stopped: BTreeMap::new(),
                actions: BTreeMap::new(),
                restarts: BTreeMap::new(),
                recreations: BTreeMap::new(),
                last_actions: VecDeque::new(),
                seen_slots: BTreeSet::new(),
                reload_failures: 0,
                reload_error: None,
                acting: false,
                lease: None,
                states: BTreeMap::new(),
                slot_restarts: BTreeMap::new(),
                host_paths: Vec::new(),
                swarm: None,
                notifications: BTreeMap::new(),
                notifications_dropped: BTreeMap::new(),
                images: BTreeMap::new(),
                image_checks: BTreeMap::new(),
                autoscale: BTreeMap::new(),
                autoscale_errors: BTreeMap::new(),
                autoscale_changes: BTreeMap::new(),
            })),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panic while holding the lock leaves plain counters behind: still worth serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Declare a node drover manages, before anything is known about it (it is not ready
    /// until its first pass and event stream).
    pub fn add_node(&self, node: &str) {
        self.lock().node(node);
    }

    /// Hook (plain mode): `node`'s availability as the file says it now (`active`, `pause`,
    /// `drain`), or `leaving` (removed from the list, drained until it holds nothing).
    pub fn node_availability(&self, node: &str, availability: &'static str) {
        self.lock().node(node).availability = Some(availability);
    }

    /// Forget a node drover no longer manages (removed from the list, and let go).
    pub fn remove_node(&self, node: &str) {
        let mut r = self.lock();
        r.nodes.remove(node);
        r.services.retain(|(_, n), _| n != node);
        r.waits.remove(node);
        r.stopped.remove(node);
        r.seen_slots.retain(|(n, _, _)| n != node);
    }

    /// Declare a webhook (by its name, never its URL): its counters start at zero.
    pub fn add_webhook(&self, webhook: &str) {
        let mut r = self.lock();
        for result in ["sent", "failed"] {
            r.notifications
                .entry((webhook.to_string(), result))
                .or_default();
        }
        r.notifications_dropped
            .entry(webhook.to_string())
            .or_default();
    }

    /// Hook: a notification to `webhook` ended: `sent` (acknowledged) or `failed` (given
    /// up after its attempts).
    pub fn notification(&self, webhook: &str, result: &'static str) {
        *self
            .lock()
            .notifications
            .entry((webhook.to_string(), result))
            .or_default() += 1;
    }

    /// Hook: a notification to `webhook` was dropped unsent (its queue was full).
    pub fn notification_dropped(&self, webhook: &str) {
        *self
            .lock()
            .notifications_dropped
            .entry(webhook.to_string())
            .or_default() += 1;
    }

    /// Hook: a reconcile pass on `node` starts; its duration is recorded when the returned
    /// guard is dropped (whichever way the pass ends).
    pub fn pass(&self, node: &str) -> PassTimer {
        PassTimer {
            telemetry: self.clone(),
            node: node.to_string(),
            started: Instant::now(),
        }
    }

    /// Hook: `node` answered a list; `seen` is what it showed of the project (what should
    /// run on that node, what runs there).
    pub fn observed(&self, node: &str, seen: Observation) {
        let mut r = self.lock();
        let n = r.node(node);
        n.up = Some(true);
        n.error = None;
        n.last_observed = Some(SystemTime::now());
        for (service, slot) in seen.slots {
            r.seen_slots.insert((node.to_string(), service, slot));
        }
        r.services.retain(|(_, n), _| n != node);
        for (service, c) in seen.services {
            r.services.insert((service, node.to_string()), c);
        }
    }

    /// Hook: `node` answered and holds what it held at its last [`Telemetry::observed`].
    pub fn still_observed(&self, node: &str) {
        let mut r = self.lock();
        let n = r.node(node);
        n.up = Some(true);
        n.error = None;
        n.last_observed = Some(SystemTime::now());
    }

    /// Hook (Swarm mode): the manager `engine` answered and Swarm's state is `report`.
    /// Per-service figures are then per Swarm node.
    pub fn swarm_observed(&self, engine: &str, report: &Report) {
        let mut r = self.lock();
        let n = r.node(engine);
        n.up = Some(true);
        n.error = None;
        n.last_observed = Some(SystemTime::now());
        r.services.clear();
        for c in report.per_node() {
            r.services.insert(
                (c.service, c.node),
                Counts {
                    desired: c.desired,
                    actual: c.running,
                    containers: c.tasks,
                },
            );
        }
        r.swarm = Some(report.clone());
    }

    /// Hook (Swarm mode): one change to Swarm finished. `action` and `reason` are short
    /// stable words (`create`, `update`, `scale`, ...; `config-changed`, `scale`, ...).
    pub fn swarm_action(
        &self,
        engine: &str,
        action: &'static str,
        service: Option<&str>,
        reason: &'static str,
        duration: Duration,
        error: Option<String>,
    ) {
        self.action(ActionEvent {
            node: engine.to_string(),
            action,
            service: service.map(str::to_string),
            slot: None,
            container: None,
            reason: Some(reason),
            duration,
            error,
            change: SlotChange::Other,
        });
    }

    /// Hook: `node` did not answer a pass.
    pub fn unreachable(&self, node: &str, error: &str) {
        let mut r = self.lock();
        let n = r.node(node);
        n.up = Some(false);
        n.error = Some(error.to_string());
    }

    /// Hook: the plan made for `node`: its backoff waits and the slots it leaves exited.
    pub fn planned(&self, node: &str, plan: PlanRecord) {
        let mut r = self.lock();
        r.waits.insert(node.to_string(), plan.waits);
        r.stopped.insert(node.to_string(), plan.stopped);
    }

    /// Hook: one action finished (successfully or not).
    pub fn action(&self, a: ActionEvent) {
        let mut r = self.lock();
        let service = a.service.clone().unwrap_or_default();
        let node = a.node.clone();
        let reason = a.reason.unwrap_or("");
        let result = if a.error.is_some() { "error" } else { "ok" };
        *r.actions
            .entry((service.clone(), node.clone(), a.action, reason, result))
            .or_default() += 1;
        if a.error.is_none() {
            let slot_key = a.slot.map(|slot| (node.clone(), service.clone(), slot));
            let key = |reason: &'static str| (service.clone(), node.clone(), reason);
            let restarted = match a.change {
                SlotChange::Started => true,
                SlotChange::Recreated => matches!(reason, "dead" | "unhealthy"),
                _ => false,
            };
            if restarted && let Some(slot) = a.slot {
                *r.slot_restarts.entry((service.clone(), slot)).or_default() += 1;
            }
            match a.change {
                SlotChange::Started => *r.restarts.entry(key(reason)).or_default() += 1,
                SlotChange::Recreated => *r.recreations.entry(key(reason)).or_default() += 1,
                // A create for a slot that had a container: someone removed it.
                SlotChange::Created
                    if slot_key.as_ref().is_some_and(|k| r.seen_slots.contains(k)) =>
                {
                    *r.recreations.entry(key("removed")).or_default() += 1
                }
                // drover removed it itself: a later create is a scale-up, not a replacement.
                SlotChange::Removed => {
                    if let Some(k) = &slot_key {
                        r.seen_slots.remove(k);
                    }
                }
                _ => {}
            }
            if let Some(k) = slot_key
                && a.change != SlotChange::Removed
            {
                r.seen_slots.insert(k);
            }
        }
        if r.last_actions.len() == LAST_ACTIONS {
            r.last_actions.pop_front();
        }
        r.last_actions.push_back(ActionRecord {
            time: SystemTime::now(),
            node: a.node,
            action: a.action,
            service: a.service,
            slot: a.slot,
            container: a.container,
            reason: a.reason,
            duration: a.duration,
            error: a.error,
        });
    }

    /// Hook: the services' states as of the pass that just planned: `states` worked out
    /// again in full, the services in `kept` keep theirs (any other is gone), and `patch`
    /// then updates some of those kept in place (a service planned at a few slots).
    /// Each change of a service's state is one log event, in both modes (the first sight
    /// of a running service is not news; a new reason within a state is not either).
    pub fn states(
        &self,
        states: Vec<ServiceStateRecord>,
        kept: &BTreeSet<String>,
        patch: impl FnOnce(&mut BTreeMap<String, ServiceStateRecord>),
    ) {
        let mut r = self.lock();
        let before: BTreeMap<String, &'static str> =
            r.states.iter().map(|(k, v)| (k.clone(), v.state)).collect();
        r.states.retain(|name, _| kept.contains(name));
        r.states
            .extend(states.into_iter().map(|s| (s.service.clone(), s)));
        patch(&mut r.states);
        for s in r.states.values() {
            let before = before.get(&s.service).copied();
            if before == Some(s.state) || (before.is_none() && s.state == "running") {
                continue;
            }
            let warn = matches!(
                s.state,
                "crash-loop" | "unhealthy" | "unplaceable" | "paused" | "rolled-back"
            );
            let (project, service, reason) = (&r.project, &s.service, &s.reason);
            let (desired, actual) = (s.desired, s.running);
            if warn {
                tracing::warn!(action = "state", project = %project, service = %service, reason = %reason, desired, actual, "service is {}", s.state);
            } else {
                tracing::info!(action = "state", project = %project, service = %service, reason = %reason, desired, actual, "service is {}", s.state);
            }
        }
    }

    /// Hook: this drover started acting for the project (it holds the lease), or stopped
    /// (the lease ran out or was never taken: it stands by).
    pub fn acting(&self, acting: bool) {
        self.lock().acting = acting;
    }

    /// Hook: the lease as seen now (leader, term, grants, why standing by).
    pub fn lease(&self, record: LeaseRecord) {
        self.lock().lease = Some(record);
    }

    /// Hook: every service's image as of this pass (services not listed are forgotten).
    pub fn images(&self, images: Vec<ImageRecord>) {
        self.lock().images = images.into_iter().map(|i| (i.service.clone(), i)).collect();
    }

    /// Hook: the registry was asked for `service`'s tag; `result` is `unchanged`, `new`,
    /// `refused` or `error`.
    pub fn image_checked(&self, service: &str, result: &'static str) {
        *self
            .lock()
            .image_checks
            .entry((service.to_string(), result))
            .or_default() += 1;
    }

    /// Hook: the config was loaded again; `error` when it was invalid (the last good one
    /// keeps running).
    pub fn reload(&self, error: Option<&str>) {
        let mut r = self.lock();
        match error {
            Some(e) => {
                r.reload_failures += 1;
                r.reload_error = Some(e.to_string());
            }
            None => r.reload_error = None,
        }
    }

    /// Hook: the config was loaded (at start or reload) with `host` paths handed to the
    /// engine as host paths other than drover's own. Logs one INFO event listing them when
    /// they differ from the last load's.
    pub fn host_paths(&self, host: HostPathsRecord) {
        let mut r = self.lock();
        if r.host_paths == host.paths {
            return;
        }
        r.host_paths = host.paths;
        let project = r.project.clone();
        let list = r.host_paths.join(", ");
        drop(r);
        if list.is_empty() {
            return;
        }
        let container = host.container.get(..12).unwrap_or(&host.container);
        tracing::info!(
            action = "host-paths",
            project = %project,
            reason = host.reason,
            container,
            "paths handed to the engine as host paths: {list}"
        );
    }

    /// Hook: the event stream of `node` is (re)opened.
    pub fn stream_connected(&self, node: &str) {
        let mut r = self.lock();
        let s = &mut r.node(node).stream;
        s.connected = true;
        s.connections += 1;
        s.last_activity = Some(Instant::now());
        s.error = None;
    }

    /// Hook: an event arrived from `node`; `time_nano` is the engine's timestamp of it.
    pub fn stream_event(&self, node: &str, time_nano: Option<i64>) {
        let mut r = self.lock();
        let s = &mut r.node(node).stream;
        s.events += 1;
        s.last_activity = Some(Instant::now());
        if let Some(t) = time_nano {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0);
            // Clocks of remote engines can be ahead: a negative lag is no lag.
            let lag = ((now - t as i128).max(0) as f64) / 1e9;
            s.last_lag = Some(lag);
            s.lag.observe(lag);
        }
    }

    /// Hook: the event stream of `node` failed; it is being reopened with backoff.
    pub fn stream_lost(&self, node: &str, error: &str) {
        let mut r = self.lock();
        let s = &mut r.node(node).stream;
        s.connected = false;
        s.errors += 1;
        s.error = Some(error.to_string());
    }

    /// Ready: at least one node, and every node answered its last pass and has an event
    /// stream that is open and fresh. Otherwise the reasons, one per problem.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.lock().readiness()
    }
}

impl Recorded {
    fn node(&mut self, node: &str) -> &mut NodeRecord {
        self.nodes
            .entry(node.to_string())
            .or_insert_with(NodeRecord::new)
    }

    pub(crate) fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.nodes.is_empty() {
            why.push("no engine configured".to_string());
        }
        for (name, n) in &self.nodes {
            match n.up {
                None => why.push(format!("{name}: not observed yet")),
                Some(false) => why.push(format!(
                    "{name}: unreachable: {}",
                    n.error.as_deref().unwrap_or("no answer")
                )),
                Some(true) => {}
            }
            let s = &n.stream;
            if !s.connected {
                why.push(format!(
                    "{name}: event stream not open{}",
                    s.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            } else if let Some(age) = s.last_activity.map(|t| t.elapsed())
                && age > self.freshness
            {
                why.push(format!(
                    "{name}: event stream silent for {}s",
                    age.as_secs()
                ));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// Records a pass's duration when dropped. See [`Telemetry::pass`].
#[must_use = "the pass is timed until this guard is dropped"]
pub struct PassTimer {
    telemetry: Telemetry,
    node: String,
    started: Instant,
}

impl Drop for PassTimer {
    fn drop(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        // A node let go during the pass is not declared again.
        if let Some(n) = self.telemetry.lock().nodes.get_mut(&self.node) {
            n.passes.observe(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        action: &'static str,
        slot: u32,
        reason: &'static str,
        change: SlotChange,
    ) -> ActionEvent {
        ActionEvent {
            node: "n1".into(),
            action,
            service: Some("web".into()),
            slot: Some(slot),
            container: None,
            reason: Some(reason),
            duration: Duration::from_millis(3),
            error: None,
            change,
        }
    }

    #[test]
    fn restarts_and_recreations_are_counted_from_plain_records() {
        let t = Telemetry::new("p", Duration::from_secs(60), None);
        let mut seen = Observation::default();
        seen.services.insert(
            "web".into(),
            Counts {
                desired: 2,
                actual: 1,
                containers: 1,
            },
        );
        seen.slots.insert(("web".into(), 1));
        t.observed("n1", seen);
        // Slot 1 had a container: a create there replaces a removed one.
        t.action(event("create", 1, "missing", SlotChange::Created));
        // Slot 2 never had one: a scale-up.
        t.action(event("create", 2, "missing", SlotChange::Created));
        t.action(event("start", 2, "exited", SlotChange::Started));
        // drover removed slot 2 itself: creating it again is not a replacement.
        t.action(event("remove", 2, "scale-down", SlotChange::Removed));
        t.action(event("create", 2, "missing", SlotChange::Created));
        t.swarm_action(
            "n1",
            "update",
            Some("web"),
            "config-changed",
            Duration::ZERO,
            None,
        );
        let r = t.lock();
        let key = |reason: &'static str| ("web".to_string(), "n1".to_string(), reason);
        assert_eq!(r.recreations.get(&key("removed")), Some(&1));
        assert_eq!(r.restarts.get(&key("exited")), Some(&1));
        assert_eq!(r.last_actions.len(), 6);
        assert_eq!(
            r.services[&("web".to_string(), "n1".to_string())],
            Counts {
                desired: 2,
                actual: 1,
                containers: 1
            }
        );
        assert_eq!(
            r.actions[&(
                "web".to_string(),
                "n1".to_string(),
                "create",
                "missing",
                "ok"
            )],
            3
        );
    }
}
