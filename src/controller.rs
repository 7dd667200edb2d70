//! The reconcile loop for one project on one engine.
//!
//! A pass is: take a snapshot, plan, execute, record outcomes. Passes are triggered by
//! the event stream, by a resync timer (events can be lost), by backoff expiry, and
//! by config changes (file polling or SIGHUP). Passes never overlap. Every wait in
//! the loop also waits on the cancellation token, so SIGTERM ends it promptly and
//! leaves the managed containers running.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{self, LoadOptions, Project};
use crate::engine::connect::{self, Endpoint};
use crate::execute::{Executor, Outcome};
use crate::observe::{self, EventWatch, EventWatchConfig, Snapshot, State, Trigger};
use crate::plan::{self, Action, Backoff, BackoffConfig};
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync_interval: Duration::from_secs(30),
            watchdog: Duration::from_secs(60),
            backoff: BackoffConfig::default(),
            parallel: 8,
            watch_interval: Duration::from_secs(1),
        }
    }
}

/// Everything one running controller owns.
pub struct Controller {
    docker: Docker,
    endpoint: Endpoint,
    /// The endpoint as logged.
    engine: String,
    load: LoadOptions,
    project: Project,
    settings: Settings,
    own_id: Option<String>,
    backoff: Backoff,
    /// Containers killed through the API, until their exit is seen (or a minute passes).
    killed: HashMap<String, Instant>,
    /// What was last said, so nothing is logged at INFO twice when nothing changed.
    said: Said,
    files: Fingerprint,
    telemetry: Telemetry,
}

#[derive(Default)]
struct Said {
    engine_down: bool,
    warnings: HashSet<String>,
    waits: HashSet<(String, u32, u32)>,
    stopped: HashSet<String>,
    counts: BTreeMap<String, (u32, usize)>,
    reload_error: Option<String>,
}

impl Controller {
    pub fn new(
        docker: Docker,
        endpoint: Endpoint,
        load: LoadOptions,
        loaded: config::Loaded,
        settings: Settings,
        telemetry: Telemetry,
    ) -> Controller {
        let mut c = Controller {
            docker,
            engine: endpoint.display(),
            endpoint,
            files: Fingerprint::take(&load, &loaded.project),
            load,
            project: loaded.project,
            settings,
            own_id: observe::own_container_id(),
            backoff: Backoff::default(),
            killed: HashMap::new(),
            said: Said::default(),
            telemetry,
        };
        c.warn_once(&loaded.warnings);
        c
    }

    /// Reconcile until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let trigger = Arc::new(Trigger::default());
        let watch = EventWatch::new(
            self.docker.clone(),
            EventWatchConfig {
                project: self.project.name.clone(),
                watchdog: self.settings.watchdog,
                retry_max: Duration::from_secs(5),
                endpoint: self.endpoint.clone(),
                telemetry: self.telemetry.clone(),
            },
            trigger.clone(),
        );
        let events = tokio::spawn(watch.run(cancel.child_token()));
        let mut hangup = hangup_stream();

        info!(
            action = "run",
            project = %self.project.name,
            engine = %self.engine,
            services = self.project.services.len(),
            "reconciling"
        );
        let mut next_resync = Instant::now();
        let mut requeue: Option<Instant> = Some(Instant::now());
        let mut file_check = tokio::time::interval(self.settings.watch_interval);
        file_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake_at = match requeue {
                Some(r) => r.min(next_resync),
                None => next_resync,
            };
            let reload = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = trigger.wait() => false,
                _ = tokio::time::sleep_until(wake_at.into()) => false,
                _ = file_check.tick() => {
                    if !self.files_changed() { continue; }
                    true
                }
                _ = recv_hangup(&mut hangup) => {
                    info!(action = "reload", project = %self.project.name, reason = "SIGHUP", "reloading config");
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
                r = self.pass(&changed) => r.map(|d| Instant::now() + d),
            };
        }
        events.abort();
        info!(action = "shutdown", project = %self.project.name, "stopped reconciling; containers left running");
    }

    /// One reconcile pass. Returns when to plan again regardless of events.
    pub async fn pass(&mut self, changed: &HashSet<String>) -> Option<Duration> {
        let started = Instant::now();
        let _timer = self.telemetry.pass(&self.engine);
        let snapshot = match observe::snapshot(&self.docker, &self.project.name, changed).await {
            Ok(s) => s,
            Err(e) => {
                self.telemetry
                    .unreachable(&self.engine, &connect::explain(&self.endpoint, &e));
                if !self.said.engine_down {
                    self.said.engine_down = true;
                    warn!(
                        action = "observe",
                        project = %self.project.name,
                        engine = %self.engine,
                        error = %connect::explain(&self.endpoint, &e),
                        "engine unavailable; waiting for it"
                    );
                }
                return Some(Duration::from_secs(2));
            }
        };
        if self.said.engine_down {
            self.said.engine_down = false;
            info!(action = "observe", project = %self.project.name, engine = %self.engine, "engine reachable again");
        }
        self.report_counts(&snapshot);
        self.telemetry
            .observed(&self.engine, &self.project, &snapshot);
        self.forget_kills(&snapshot);
        let now = SystemTime::now();
        let plan = plan::plan(&plan::Input {
            project: &self.project,
            observed: &snapshot,
            backoff: &self.backoff,
            backoff_cfg: &self.settings.backoff,
            now,
            exclude: self.own_id.as_deref(),
        });
        self.report_waits(&plan);
        self.telemetry.planned(&self.engine, &plan);
        if plan.actions.is_empty() {
            debug!(project = %self.project.name, duration_ms = started.elapsed().as_millis() as u64, "nothing to do");
            return plan.requeue_after;
        }
        let executor = Executor {
            docker: &self.docker,
            project: &self.project,
            parallel: self.settings.parallel,
        };
        let mut failed = false;
        let (backoff, settings, project) = (&mut self.backoff, &self.settings, &self.project);
        executor
            .execute(&plan.actions, |o| {
                failed |= o.error.is_some();
                self.telemetry.action(&self.engine, &o);
                record(backoff, settings, project, &o);
            })
            .await;
        // Look again at once: the engine changed, and rolling updates go one step per pass.
        let again = if failed {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Some(plan.requeue_after.map_or(again, |r| r.min(again)))
    }

    /// An exit after `docker kill` or `docker stop` is not a crash: the slot restarts at
    /// once, whatever its crash history.
    fn forget_kills(&mut self, s: &Snapshot) {
        if self.killed.is_empty() {
            return;
        }
        for c in &s.containers {
            if c.state == State::Exited
                && self.killed.remove(&c.id).is_some()
                && let (Some(service), Some(slot)) = (c.service(), c.slot())
            {
                self.backoff.forget(service, slot);
            }
        }
        self.killed
            .retain(|_, at| at.elapsed() < Duration::from_secs(60));
    }

    /// Log each service's desired and running counts when they change.
    fn report_counts(&mut self, s: &Snapshot) {
        let mut running: HashMap<&str, usize> = HashMap::new();
        for c in &s.containers {
            if c.owned_by(&self.project.name) && c.state == State::Running {
                *running.entry(c.service().unwrap_or("")).or_default() += 1;
            }
        }
        for (name, svc) in &self.project.services {
            let now = (
                svc.replicas,
                running.get(name.as_str()).copied().unwrap_or(0),
            );
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

    fn files_changed(&mut self) -> bool {
        let now = Fingerprint::take(&self.load, &self.project);
        if now == self.files {
            return false;
        }
        self.files = now;
        true
    }

    /// Load the config again; on error keep running the last good one.
    fn reload(&mut self) {
        let loaded = match config::load(&self.load) {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                if self.said.reload_error.as_deref() != Some(msg.as_str()) {
                    error!(action = "reload", project = %self.project.name, error = %msg, "config invalid; keeping the last good one");
                    self.said.reload_error = Some(msg.clone());
                }
                self.telemetry.reload(Some(&msg));
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
        let services = &loaded.project.services;
        self.backoff
            .retain(|s, n| services.get(s).is_some_and(|svc| n <= svc.replicas));
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

/// Log one outcome and update the slot's crash history.
fn record(backoff: &mut Backoff, settings: &Settings, project: &Project, o: &Outcome) {
    let a = &o.action;
    let ms = o.duration.as_millis() as u64;
    let p = &project.name;
    if let Action::CreateNetwork { name, .. } | Action::CreateVolume { name, .. } = a {
        match &o.error {
            None => {
                info!(action = a.name(), project = %p, name = %name, duration_ms = ms, "{}", describe(a))
            }
            Some(err) => {
                error!(action = a.name(), project = %p, name = %name, duration_ms = ms, error = %err, "action failed")
            }
        }
        return;
    }
    let service = a.service().unwrap_or("");
    let slot = a.slot().unwrap_or(0);
    let reason = a.reason().map(|r| r.as_str()).unwrap_or("");
    let container = o.container.as_deref().unwrap_or("");
    match &o.error {
        None => {
            match a {
                Action::Start { reset, .. } => backoff.attempted(service, slot, *reset),
                Action::Recreate {
                    reason: plan::Reason::Dead,
                    ..
                } => backoff.attempted(service, slot, false),
                _ => {}
            }
            info!(action = a.name(), project = %p, service, slot, container, reason, duration_ms = ms, "{}", describe(a));
        }
        Some(err) => {
            if let Some(svc) = project.services.get(service)
                && a.slot().is_some()
            {
                backoff.failed(
                    &settings.backoff,
                    service,
                    slot,
                    svc.restart.delay,
                    SystemTime::now(),
                );
            }
            error!(action = a.name(), project = %p, service, slot, container, reason, duration_ms = ms, error = %err, "action failed");
        }
    }
}

fn describe(a: &Action) -> &'static str {
    match a {
        Action::CreateNetwork { .. } => "network created",
        Action::CreateVolume { .. } => "volume created",
        Action::Create { .. } => "container created and started",
        Action::Start { .. } => "container started",
        Action::Recreate { .. } => "container recreated",
        Action::Remove { .. } => "container removed",
    }
}

/// The contents of every file the config depends on, to notice edits (including the
/// rename-into-place that editors and `kubectl`-style tools do, which inotify on a
/// bind-mounted file misses).
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint(Vec<(std::path::PathBuf, Option<Vec<u8>>)>);

impl Fingerprint {
    fn take(load: &LoadOptions, project: &Project) -> Fingerprint {
        let mut paths: Vec<std::path::PathBuf> = if load.files.is_empty() {
            [
                "compose.yaml",
                "compose.yml",
                "docker-compose.yaml",
                "docker-compose.yml",
            ]
            .iter()
            .map(|n| load.cwd.join(n))
            .collect()
        } else {
            load.files.clone()
        };
        if load.env_files.is_empty() {
            paths.push(project.working_dir.join(".env"));
        } else {
            paths.extend(load.env_files.iter().cloned());
        }
        paths.extend(load.scale_file.iter().cloned());
        Fingerprint(
            paths
                .into_iter()
                .map(|p| {
                    let bytes = std::fs::read(&p).ok();
                    (p, bytes)
                })
                .collect(),
        )
    }
}

#[cfg(unix)]
fn hangup_stream() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(unix)]
async fn recv_hangup(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
