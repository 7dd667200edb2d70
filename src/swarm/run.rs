//! The Swarm-mode controller: one level-triggered loop against one manager.
//!
//! Each pass lists the project's services, their tasks, the networks and the nodes, plans
//! with [`diff::plan`], applies the actions, and logs what changed in the [`Report`].
//! Passes run on service and node events, on a short timer (the engine has no task
//! events, so tasks are listed every `task_interval`), when the config files change and on
//! SIGHUP. The event stream reconnects with backoff; lost events only delay a pass until
//! the next tick. Nothing is kept between passes that the engine does not also have.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{Node, Task};
use bollard::query_parameters::{
    EventsOptions, ListNetworksOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions,
    UpdateServiceOptions,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::convert::{self, Desired};
use super::diff::{self, Action, Current};
use super::extras;
use super::report::{self, Report};
use crate::config::{self, LoadOptions, Project};
use crate::engine::connect::{Endpoint, explain};

/// Timing of the Swarm-mode loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tasks are listed this often (Swarm sends no task events).
    pub task_interval: Duration,
    /// Config files are re-read this often; zero: on SIGHUP only.
    pub watch_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            task_interval: Duration::from_secs(2),
            watch_interval: Duration::from_secs(1),
        }
    }
}

/// Everything one pass sees.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Services named `{project}_*` (the project's and any that collide with its names).
    pub services: Vec<Current>,
    pub network_names: Vec<String>,
    /// Network id -> name.
    pub network_ids: HashMap<String, String>,
    pub tasks: Vec<Task>,
    pub nodes: Vec<Node>,
}

/// Desired state for the project, Swarm-only keys included.
pub fn desired(loaded: &config::Loaded, load: &LoadOptions) -> (Desired, Vec<String>) {
    let (extras, mut warnings) = extras::read(load);
    // The loader does not know these keys; here they are read and passed to Swarm.
    let handled = [
        ".deploy.mode: not supported",
        ".deploy.resources: not supported",
    ];
    let loader: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|w| !handled.iter().any(|h| w.contains(h)))
        .cloned()
        .collect();
    warnings.splice(0..0, loader);
    let desired = convert::desired(&loaded.project, &extras);
    warnings.extend(desired.warnings.iter().cloned());
    (desired, warnings)
}

/// List what the plan and the report need.
pub async fn observe(docker: &Docker, project: &str) -> Result<Observed, BollardError> {
    let prefix = format!("{project}_");
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(HashMap::from([("name".to_string(), vec![prefix.clone()])])),
            status: None,
        }))
        .await?;
    let services: Vec<Current> = services
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            // The name filter matches anywhere in the name on some engines: keep the prefix.
            if !spec.name.as_deref().unwrap_or("").starts_with(&prefix) {
                return None;
            }
            Some(Current {
                id: s.id?,
                version: s.version.and_then(|v| v.index).unwrap_or(0),
                spec,
            })
        })
        .collect();
    let networks = docker.list_networks(None::<ListNetworksOptions>).await?;
    let mut network_names = Vec::new();
    let mut network_ids = HashMap::new();
    for n in networks {
        if let (Some(id), Some(name)) = (n.id, n.name) {
            network_names.push(name.clone());
            network_ids.insert(id, name);
        }
    }
    let ids: Vec<String> = services
        .iter()
        .filter(|s| s.in_namespace(project))
        .map(|s| s.id.clone())
        .collect();
    let tasks = if ids.is_empty() {
        Vec::new()
    } else {
        docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([("service".to_string(), ids)])),
            }))
            .await?
    };
    let nodes = docker.list_nodes(None::<ListNodesOptions>).await?;
    Ok(Observed {
        services,
        network_names,
        network_ids,
        tasks,
        nodes,
    })
}

/// The plan for `desired` against what `observed` shows.
pub fn plan(desired: &Desired, observed: &Observed) -> diff::Plan {
    diff::plan(
        desired,
        &observed.services,
        &observed.network_names,
        &observed.network_ids,
    )
}

/// One line per action, for `drover plan`.
pub fn describe(a: &Action) -> String {
    match a {
        Action::CreateNetwork(n) => format!("create network {}", n.name),
        Action::Create { service, spec } => {
            let replicas = spec
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas);
            match replicas {
                Some(r) => format!("create service {service} with {r} replicas"),
                None => format!("create global service {service}"),
            }
        }
        Action::Update {
            service, changed, ..
        } => format!("update service {service}: {}", changed.join(", ")),
        Action::Scale {
            service, from, to, ..
        } => format!("scale service {service} from {from} to {to}"),
        Action::Remove { service, .. } => format!("remove service {service} (not in the file)"),
    }
}

#[derive(Default)]
struct Said {
    warnings: HashSet<String>,
    conflicts: HashSet<String>,
    services: BTreeMap<String, (u32, u32)>,
    nodes: BTreeMap<String, (String, String, u32, u32)>,
    problems: HashSet<(String, String)>,
    list_error: Option<String>,
    reload_error: Option<String>,
}

/// The running Swarm-mode controller.
pub struct Controller {
    docker: Docker,
    engine: Endpoint,
    load: LoadOptions,
    project: Project,
    desired: Desired,
    settings: Settings,
    report: report::Shared,
    said: Said,
}

impl Controller {
    /// `engine`: the manager, named in errors.
    pub fn new(
        docker: Docker,
        engine: Endpoint,
        load: LoadOptions,
        loaded: config::Loaded,
        settings: Settings,
    ) -> Controller {
        let (desired, warnings) = desired(&loaded, &load);
        let mut c = Controller {
            docker,
            engine,
            load,
            project: loaded.project,
            desired,
            settings,
            report: Arc::default(),
            said: Said::default(),
        };
        c.warn_once(&warnings);
        c
    }

    /// The latest report (desired vs running per service and node, task errors).
    pub fn report(&self) -> report::Shared {
        self.report.clone()
    }

    fn warn_once<'a>(&mut self, warnings: impl IntoIterator<Item = &'a String>) {
        for w in warnings {
            if self.said.warnings.insert(w.clone()) {
                warn!(action = "config", project = %self.project.name, reason = %w, "warning");
            }
        }
    }

    /// Reconcile until `cancel` fires; the services keep running afterwards.
    pub async fn run(mut self, cancel: CancellationToken) {
        info!(
            action = "run",
            project = %self.project.name,
            mode = "swarm",
            services = self.project.services.len(),
            "reconciling Swarm services"
        );
        let poke = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(watch_events(
            self.docker.clone(),
            poke.clone(),
            cancel.child_token(),
        ));
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let watching = !self.settings.watch_interval.is_zero();
        let mut files = tokio::time::interval(if watching {
            self.settings.watch_interval
        } else {
            Duration::from_secs(3600 * 24 * 365)
        });
        files.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = poke.notified() => {}
                _ = tokio::time::sleep_until(next) => {}
                _ = files.tick(), if watching => {
                    if !self.reload() { continue; }
                }
                _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    info!(action = "reload", project = %self.project.name, reason = "SIGHUP", "reloading config");
                    self.reload();
                }
            }
            let acted = tokio::select! {
                _ = cancel.cancelled() => break,
                a = self.pass() => a,
            };
            // After a change, look again soon: Swarm is converging.
            let wait = if acted {
                Duration::from_millis(500)
            } else {
                self.settings.task_interval
            };
            next = tokio::time::Instant::now() + wait;
        }
        info!(action = "shutdown", project = %self.project.name, "stopped reconciling; services left running");
    }

    /// Load the config again; `true` when the desired state changed. A broken config keeps
    /// the last good one.
    fn reload(&mut self) -> bool {
        let loaded = match config::load(&self.load) {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                if self.said.reload_error.as_deref() != Some(msg.as_str()) {
                    error!(action = "reload", project = %self.project.name, error = %msg, "config invalid; keeping the last good one");
                    self.said.reload_error = Some(msg);
                }
                return false;
            }
        };
        self.said.reload_error = None;
        if loaded.project.name != self.project.name {
            error!(
                action = "reload",
                project = %self.project.name,
                error = %format!("the project name changed to {}; restart drover to switch projects", loaded.project.name),
                "config change ignored"
            );
            return false;
        }
        let (desired, warnings) = desired(&loaded, &self.load);
        if desired == self.desired {
            return false;
        }
        self.warn_once(&warnings);
        info!(action = "reload", project = %self.project.name, reason = "config changed", "config reloaded");
        self.project = loaded.project;
        self.desired = desired;
        true
    }

    /// One list-plan-apply-report round; `true` when something was changed.
    pub async fn pass(&mut self) -> bool {
        let project = self.project.name.clone();
        let observed = match observe(&self.docker, &project).await {
            Ok(o) => o,
            Err(e) => {
                let msg = explain(&self.engine, &e);
                if self.said.list_error.as_deref() != Some(msg.as_str()) {
                    error!(action = "list", project = %project, error = %msg, "cannot list the swarm");
                    self.said.list_error = Some(msg);
                }
                return false;
            }
        };
        if self.said.list_error.take().is_some() {
            info!(action = "list", project = %project, "listing the swarm again");
        }
        let plan = plan(&self.desired, &observed);
        for c in &plan.conflicts {
            if self.said.conflicts.insert(c.service.clone()) {
                error!(action = "conflict", project = %project, service = %c.service, reason = %c.reason, "service left alone");
            }
        }
        let acted = !plan.actions.is_empty();
        for a in plan.actions {
            self.apply(a).await;
        }
        let observed = if acted {
            observe(&self.docker, &project).await.unwrap_or(observed)
        } else {
            observed
        };
        let owned: Vec<Current> = observed
            .services
            .iter()
            .filter(|s| s.in_namespace(&project))
            .cloned()
            .collect();
        let r = report::build(&project, &owned, &observed.tasks, &observed.nodes);
        self.log_report(&r);
        if let Ok(mut shared) = self.report.write() {
            *shared = r;
        }
        acted
    }

    async fn apply(&mut self, a: Action) {
        let project = self.project.name.clone();
        let what = describe(&a);
        let started = std::time::Instant::now();
        let (action, service, result) = match a {
            Action::CreateNetwork(n) => {
                let name = n.name.clone();
                let r = self.docker.create_network(n).await.map(|_| ());
                ("create_network", name, ignore_status(r, 409))
            }
            Action::Create { service, spec } => {
                let r = self.docker.create_service(spec, None).await.map(|_| ());
                ("create", service, ignore_status(r, 409))
            }
            Action::Update {
                service,
                id,
                version,
                spec,
                ..
            } => {
                let r = self.update(&id, version, spec).await;
                ("update", service, r)
            }
            Action::Scale {
                service,
                id,
                version,
                spec,
                ..
            } => {
                let r = self.update(&id, version, spec).await;
                ("scale", service, r)
            }
            Action::Remove { service, id } => {
                let r = self.docker.delete_service(&id).await;
                ("remove", service, ignore_status(r, 404))
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                info!(action, project = %project, service = %service, reason = %what, duration_ms, "done")
            }
            Err(e) => error!(
                action,
                project = %project,
                service = %service,
                reason = %what,
                error = %explain(&self.engine, &e),
                "failed; will retry"
            ),
        }
    }

    async fn update(
        &self,
        id: &str,
        version: u64,
        spec: bollard::models::ServiceSpec,
    ) -> Result<(), BollardError> {
        let opts = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        self.docker
            .update_service(id, spec, opts, None)
            .await
            .map(|_| ())
    }

    /// Log what changed since the last report: counts per service and node, new task errors.
    fn log_report(&mut self, r: &Report) {
        let project = &r.project;
        for (name, s) in &r.services {
            let now = (s.desired, s.running);
            if self.said.services.get(name) != Some(&now) {
                info!(action = "tasks", project = %project, service = %name, desired = s.desired, actual = s.running, "tasks running");
                self.said.services.insert(name.clone(), now);
            }
            // Tasks on their way (pending, preparing, starting) are not news; errors are.
            for p in s.problems.iter().filter(|p| p.error) {
                let key = (p.task.clone(), p.reason.clone());
                if self.said.problems.insert(key) {
                    warn!(
                        action = "task_error",
                        project = %project,
                        service = %name,
                        slot = p.slot,
                        node = p.node.as_deref().unwrap_or(""),
                        reason = %p.reason,
                        state = %p.state,
                        "task not running"
                    );
                }
            }
        }
        self.said.services.retain(|k, _| r.services.contains_key(k));
        for (id, n) in &r.nodes {
            let now = (
                n.state.clone(),
                n.availability.clone(),
                n.desired,
                n.running,
            );
            if self.said.nodes.get(id) != Some(&now) {
                info!(
                    action = "node",
                    project = %project,
                    node = %id,
                    hostname = %n.hostname,
                    addr = %n.addr,
                    state = %n.state,
                    availability = %n.availability,
                    desired = n.desired,
                    actual = n.running,
                    "node"
                );
                self.said.nodes.insert(id.clone(), now);
            }
        }
        // Forget errors of tasks that are gone, so a recurring reason is reported again.
        let live: HashSet<&str> = r
            .services
            .values()
            .flat_map(|s| s.problems.iter().map(|p| p.task.as_str()))
            .collect();
        self.said
            .problems
            .retain(|(t, _)| live.contains(t.as_str()));
    }
}

fn ignore_status(r: Result<(), BollardError>, code: u16) -> Result<(), BollardError> {
    match r {
        Err(BollardError::DockerResponseServerError { status_code, .. }) if status_code == code => {
            Ok(())
        }
        r => r,
    }
}

/// Service and node events poke the loop; the stream is reopened with backoff.
async fn watch_events(docker: Docker, poke: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let opts = EventsOptions {
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["service".to_string(), "node".to_string()],
            )])),
            ..Default::default()
        };
        let mut stream = docker.events(Some(opts));
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                n = stream.next() => n,
            };
            match next {
                Some(Ok(e)) => {
                    backoff = Duration::from_millis(200);
                    debug!(
                        action = "event",
                        reason = %format!("{} {}", e.typ.map(|t| t.to_string()).unwrap_or_default(), e.action.unwrap_or_default()),
                        "swarm event"
                    );
                    poke.notify_one();
                }
                Some(Err(e)) => {
                    debug!(action = "events", error = %e, "event stream failed; reopening");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
