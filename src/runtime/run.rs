//! The one reconcile loop both modes run. It owns what every mode needs the same way:
//! waking (events through a [`Trigger`], the resync timer, a requeue the last pass asked
//! for), the config (change detection, SIGHUP, the last good config kept on a broken
//! edit, warnings said once), the lease (act only while holding it, stop mid-pass when
//! it runs out), and shutdown (the spawned tasks joined, the lease released). A mode
//! supplies only how it observes, plans and applies: [`Mode`].
//!
//! Passes never overlap. Every wait also waits on the cancellation token, so shutdown
//! is prompt and leaves the managed containers or services running.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{ConfigSource, Trigger, Why};
use crate::autoscale::{Autoscaler, Counts, Replicas, Specs};
use crate::config::{DeployMode, Loaded, Project};
use crate::lease::LeaseHandle;
use crate::notify::{Event, Notifications, Notifier};
use crate::telemetry::Telemetry;

/// What woke a pass: the containers events named since the last one.
#[derive(Debug, Default)]
pub struct Wake {
    /// Containers (ids) an event named: the pass inspects them.
    pub changed: HashSet<String>,
    /// Containers killed through the API (`docker kill`, `docker stop`): their exit is
    /// not a crash.
    pub killed: HashSet<String>,
    /// The node whose events named each of `changed` (a container without one may be on
    /// any node).
    pub origin: HashMap<String, String>,
    /// Nodes whose events may have been missed: list them again.
    pub relist: HashSet<String>,
}

/// A new config, as a mode took it.
#[derive(Debug, Default)]
pub struct Adopted {
    /// The desired state differs from the one before.
    pub changed: bool,
    /// Warnings about the config (said once each).
    pub warnings: Vec<String>,
}

/// How one mode observes, plans and applies. Everything else is the loop's.
pub trait Mode {
    /// Log the start and wait until the mode may plan (e.g. every node had its chance
    /// to connect). Ends early when `cancel` fires.
    fn start(&mut self, cancel: &CancellationToken) -> impl Future<Output = ()>;
    /// Take a newly loaded config. An error (one line) keeps the last good config.
    fn adopt(&mut self, loaded: Loaded) -> Result<Adopted, String>;
    /// One pass: observe, plan, apply, record. Returns when to pass again regardless of
    /// events, if sooner than the resync.
    fn pass(&mut self, wake: Wake) -> impl Future<Output = Option<Duration>>;
    /// The autoscaler set new replica targets: `loaded` is the config in force with them
    /// applied. Say whether the desired state changed; the autoscaler has logged why.
    fn retarget(&mut self, loaded: Loaded) -> bool {
        self.adopt(loaded).is_ok_and(|a| a.changed)
    }
    /// The lease was taken (again) after a time without it: forget what was observed.
    fn resumed(&mut self) {}
    /// What shutdown leaves behind, for the last log line.
    fn left_running(&self) -> &'static str;
    /// Tasks the mode spawned after it started (monitors of nodes a reload added): joined
    /// at shutdown with the others.
    fn tasks(&mut self) -> Vec<JoinHandle<()>> {
        Vec::new()
    }
}

/// The lease the loop acts under, and its task (joined at shutdown so a held lease is
/// released and the next drover need not wait).
pub struct Lease {
    pub handle: LeaseHandle,
    pub task: Option<JoinHandle<()>>,
}

impl Lease {
    /// Always held: one drover per project is ensured elsewhere (Swarm reschedules drover
    /// itself), or the user turned the lease off.
    pub fn none() -> Lease {
        Lease {
            handle: LeaseHandle::always(),
            task: None,
        }
    }
}

/// What the loop needs besides the mode.
pub struct Parts {
    pub project: String,
    pub source: ConfigSource,
    /// Poked by the mode's event streams and node monitors.
    pub trigger: Arc<Trigger>,
    pub lease: Lease,
    /// A full pass this often even when nothing woke one (events can be lost).
    pub resync: Duration,
    pub telemetry: Telemetry,
    /// Tasks the mode spawned (event streams, node monitors, webhook senders): joined at
    /// shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// Where the loop's own events go (a scale change in a reloaded config).
    pub notifier: Notifier,
    /// Where autoscaling counts the services' replicas and reads their CPU and memory
    /// (`None`: cpu and memory triggers do not answer).
    pub replicas: Option<Arc<dyn Replicas>>,
}

/// What every mode's loop starts from: the config as first loaded, how to load it again,
/// where to record, when to stop, and where reloads are asked for (SIGHUP).
pub struct Start {
    pub load: crate::config::LoadOptions,
    pub loaded: Loaded,
    pub telemetry: Telemetry,
    pub cancel: CancellationToken,
    pub reload: super::Reload,
    /// The webhooks' notifier and sender tasks (see [`crate::notify::start`]).
    pub notify: Notifications,
}

/// A spawned task gets this long to end after cancellation.
const JOIN_GRACE: Duration = Duration::from_millis(700);

/// The first pass waits this long at most for the autoscaler's first targets.
const AUTOSCALE_READY: Duration = Duration::from_secs(10);

/// The loop: a mode and the parts every mode shares.
pub struct Runtime<M: Mode> {
    mode: M,
    parts: Parts,
    said_warnings: HashSet<String>,
    said_reload_error: Option<String>,
    /// Each replicated service's replica target in the config in force (the files', with
    /// the autoscaler's targets), to notify scale changes.
    targets: BTreeMap<String, u32>,
    /// The config in force as the files say it: the autoscaler's targets go on top of it.
    file: Loaded,
    /// Started with the loop.
    autoscaler: Option<Autoscaler>,
    /// The autoscaler's targets the mode was last handed.
    applied: Counts,
}

impl<M: Mode> Runtime<M> {
    /// `loaded`: the config the mode was built from (its warnings are said now).
    pub fn new(mode: M, parts: Parts, loaded: &Loaded, warnings: &[String]) -> Self {
        let mut r = Runtime {
            mode,
            parts,
            said_warnings: HashSet::new(),
            said_reload_error: None,
            targets: targets(&loaded.project),
            file: loaded.clone(),
            autoscaler: None,
            applied: Counts::new(),
        };
        r.warn_once(warnings);
        r.record_host_paths(loaded);
        r
    }

    /// The mode, for what it shares with the caller (e.g. Swarm's report).
    pub fn mode(&self) -> &M {
        &self.mode
    }

    /// Reconcile until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (autoscaler, task) = Autoscaler::spawn(
            &self.parts.project,
            Specs::of(&self.file.project, &self.file.settings.autoscale),
            self.parts.replicas.clone(),
            self.parts.telemetry.clone(),
            cancel.child_token(),
        );
        self.parts.tasks.push(task);
        self.autoscaler = Some(autoscaler);
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.mode.start(&cancel) => self.reconcile(&cancel).await,
        }
        info!(action = "shutdown", project = %self.parts.project, "stopped reconciling; {} left running", self.mode.left_running());
        let mut tasks = std::mem::take(&mut self.parts.tasks);
        tasks.extend(self.mode.tasks());
        let lease = self.parts.lease.task.take();
        let all = futures::future::join_all(tasks.into_iter().chain(lease));
        let _ = tokio::time::timeout(JOIN_GRACE, all).await;
    }

    async fn reconcile(&mut self, cancel: &CancellationToken) {
        let mut next_resync = Instant::now();
        let mut requeue: Option<Instant> = Some(Instant::now());
        let trigger = self.parts.trigger.clone();
        let mut lease = self.parts.lease.handle.clone();
        let mut acting = false;
        if let Some(a) = self.autoscaler.as_mut().filter(|a| a.active()) {
            // The first pass runs with the targets the replicas have now, not with the
            // config's: a restarted drover must not scale an autoscaled service down.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = a.ready(AUTOSCALE_READY) => {}
            }
            self.autoscaled();
        }
        loop {
            // Act only while holding the project's lease; stand by otherwise.
            if !lease.held() {
                // On shutdown the lease goes with the loop: nothing was lost.
                if acting && !cancel.is_cancelled() {
                    warn!(action = "lease-lost", project = %self.parts.project, reason = "expired", "lease not renewed in time; stopped acting");
                }
                self.parts.telemetry.acting(false);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = lease.acquired() => {}
                }
                // Whatever happened meanwhile, look at everything again.
                requeue = Some(Instant::now());
                self.mode.resumed();
            }
            if !acting {
                self.parts.telemetry.acting(true);
            }
            acting = true;
            let wake_at = requeue.map_or(next_resync, |r| r.min(next_resync));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = trigger.wait() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                why = self.parts.source.changed() => {
                    // An edit that changes nothing the mode runs needs no pass.
                    if !self.reload(why) && why == Why::Files {
                        continue;
                    }
                }
                _ = autoscaler_changed(&mut self.autoscaler) => {
                    if !self.autoscaled() {
                        continue;
                    }
                }
            }
            if Instant::now() >= next_resync {
                next_resync = Instant::now() + self.parts.resync;
            }
            let wake = Wake {
                changed: trigger.take_changed(),
                killed: trigger.take_killed(),
                origin: trigger.take_origin(),
                relist: trigger.take_relist(),
            };
            requeue = tokio::select! {
                // The lease first: a process resumed after a freeze must not send one
                // more request before it sees the lease ran out.
                biased;
                _ = lease.lost() => Some(Instant::now()),
                _ = cancel.cancelled() => return,
                r = self.mode.pass(wake) => r.map(|d| Instant::now() + d),
            };
        }
    }

    /// Load the config again and hand it to the mode; `true` when the desired state
    /// changed. A broken config, or one the mode cannot take, keeps the last good one.
    fn reload(&mut self, why: Why) -> bool {
        let project = self.parts.project.clone();
        if why == Why::Hangup {
            info!(action = "reload", project = %project, reason = "SIGHUP", "reloading config");
        }
        let loaded = match self.parts.source.load() {
            Ok(l) => l,
            Err(e) => return self.reload_failed(e.to_string()),
        };
        if loaded.project.name != project {
            error!(
                action = "reload",
                project = %project,
                error = %format!("the project name changed to {}; restart drover to switch projects", loaded.project.name),
                "config change ignored"
            );
            return false;
        }
        self.record_host_paths(&loaded);
        if let Some(a) = &self.autoscaler {
            a.reload(Specs::of(&loaded.project, &loaded.settings.autoscale));
        }
        self.file = loaded.clone();
        let loaded = self.with_autoscaled(loaded);
        let targets = targets(&loaded.project);
        let adopted = match self.mode.adopt(loaded) {
            Ok(a) => a,
            Err(e) => return self.reload_failed(e),
        };
        self.scaled(targets);
        self.said_reload_error = None;
        self.parts.telemetry.reload(None);
        self.warn_once(&adopted.warnings);
        if !adopted.changed {
            debug!(project = %project, "config unchanged");
        }
        adopted.changed
    }

    /// `loaded` with the autoscaler's targets in place of the files'.
    fn with_autoscaled(&mut self, mut loaded: Loaded) -> Loaded {
        let counts: Counts = self
            .autoscaler
            .as_ref()
            .map(Autoscaler::counts)
            .unwrap_or_default();
        apply(&mut loaded.project, &counts);
        self.applied = counts;
        loaded
    }

    /// Hand the mode the config in force with the autoscaler's latest targets, when they
    /// changed; `true` when the desired state changed.
    fn autoscaled(&mut self) -> bool {
        let new = self.autoscaler.as_ref().map(Autoscaler::counts);
        if new.is_none_or(|c| c == self.applied) {
            return false;
        }
        let loaded = self.with_autoscaled(self.file.clone());
        let targets = targets(&loaded.project);
        let changed = self.mode.retarget(loaded);
        self.scaled(targets);
        changed
    }

    /// Notify each service whose replica target changed.
    fn scaled(&mut self, targets: BTreeMap<String, u32>) {
        for (name, to) in &targets {
            match self.targets.get(name) {
                Some(from) if from != to => {
                    self.parts.notifier.send(Event::scale(name, *from, *to));
                }
                _ => {}
            }
        }
        self.targets = targets;
    }

    fn reload_failed(&mut self, msg: String) -> bool {
        self.parts.telemetry.reload(Some(&msg));
        if self.said_reload_error.as_deref() != Some(msg.as_str()) {
            error!(action = "reload", project = %self.parts.project, error = %msg, "config invalid; keeping the last good one");
            self.said_reload_error = Some(msg);
        }
        false
    }

    fn record_host_paths(&self, loaded: &Loaded) {
        let record = self
            .parts
            .source
            .options()
            .host_paths
            .record(&loaded.host_paths);
        self.parts.telemetry.host_paths(record);
    }

    fn warn_once(&mut self, warnings: &[String]) {
        for w in warnings {
            if self.said_warnings.insert(w.clone()) {
                warn!(action = "config", project = %self.parts.project, "{w}");
            }
        }
    }
}

/// Wait for the autoscaler's next targets (forever without an autoscaler).
async fn autoscaler_changed(a: &mut Option<Autoscaler>) {
    match a {
        Some(a) => a.changed().await,
        None => std::future::pending().await,
    }
}

/// Set the replica target of each service `counts` names.
fn apply(project: &mut Project, counts: &Counts) {
    for (name, n) in counts {
        if let Some(s) = project.services.get_mut(name) {
            s.replicas = *n;
        }
    }
}

/// Each replicated service's replica target.
fn targets(project: &Project) -> BTreeMap<String, u32> {
    project
        .services
        .iter()
        .filter(|(_, s)| s.mode == DeployMode::Replicated)
        .map(|(name, s)| (name.clone(), s.replicas))
        .collect()
}
