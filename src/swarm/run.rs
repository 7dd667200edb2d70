//! The Swarm-mode controller: one level-triggered loop against one manager.
//!
//! Each pass lists the project's services, their tasks, the networks, secrets, configs
//! and nodes; creates the secrets and configs whose content is new ([`objects::plan`]),
//! plans the services with [`diff::plan`], applies the actions, removes what the project
//! no longer uses, and logs what changed in the [`Report`] (also kept for `/metrics` and
//! `/status`). Passes run on service and node events, on a short timer (the engine has no
//! task events, so tasks are listed every `task_interval`: a resync that also covers lost
//! events), when the config files change and on SIGHUP. The event stream reconnects with
//! backoff, and a stream silent for `watchdog` is reopened (a half-open connection sends
//! nothing). Nothing is kept between passes that the engine does not also have.

mod images;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::convert::{self, Desired, Kind};
use super::diff::{self, Action, Current};
use super::objects::{self, Existing, ObjectAction};
use super::report::{self, Report};
use crate::config::{self, Project};
use crate::engine::connect::{Connected, Endpoint, explain};
use crate::engine::credentials::{RegistryAuth, registry_of};
use crate::engine::model::{ConfigSpec, Node, SecretSpec, ServiceSpec, Task};
use crate::engine::{Client, Credentials, EngineError, SwarmEngine, SwarmHandle};
use crate::notify::{Event, Notifier};
use crate::runtime::images::Images;
use crate::runtime::{
    Adopted, ConfigSource, EventWatch, EventWatchConfig, Lease, Mode, Parts, Runtime, Start,
    Trigger, Wake, Watched,
};
use crate::telemetry::Telemetry;

/// The engine drover talks to, as named in `/status` and metrics (`node` label of
/// engine-level figures); per-service figures are per Swarm node.
pub const ENGINE: &str = "manager";

/// Timing of the Swarm-mode loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tasks are listed this often (Swarm sends no task events).
    pub task_interval: Duration,
    /// Config files are re-read this often; zero: on SIGHUP only.
    pub watch_interval: Duration,
    /// An event stream silent this long is reopened.
    pub watchdog: Duration,
    /// Registry logins handed to Swarm with each service's create and update, for the
    /// nodes that pull its image (`docker stack deploy --with-registry-auth`).
    pub credentials: Credentials,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            task_interval: Duration::from_secs(2),
            watch_interval: Duration::from_secs(1),
            watchdog: Duration::from_secs(60),
            credentials: Credentials::default(),
        }
    }
}

/// Everything one pass sees.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Services named `{project}_*` (the project's and any that collide with its names).
    pub services: Vec<Current>,
    pub networks: Vec<diff::Network>,
    pub network_names: Vec<String>,
    /// Network id -> name.
    pub network_ids: HashMap<String, String>,
    /// Every secret and config of the swarm.
    pub objects: Vec<Existing>,
    pub tasks: Vec<Task>,
    pub nodes: Vec<Node>,
    /// Service name -> the state of its last update as Swarm words it (`updating`,
    /// `completed`, `rollback_completed`, ...).
    pub updates: HashMap<String, String>,
}

/// Desired state for the project: the model as Swarm specs, with the content of the
/// secret and config files the services use. An error names the file that cannot be read.
pub fn desired(loaded: &config::Loaded) -> Result<(Desired, Vec<String>), String> {
    let p = &loaded.project;
    let mut contents = BTreeMap::new();
    for s in p.services.values() {
        for (kind, uses, defs) in [
            (Kind::Secret, &s.options.secrets, &p.secrets),
            (Kind::Config, &s.options.configs, &p.configs),
        ] {
            for m in uses {
                let Some(file) = defs.get(&m.source).and_then(|d| d.file.as_ref()) else {
                    continue;
                };
                if contents.contains_key(&(kind, m.source.clone())) {
                    continue;
                }
                let data = read_object(file).map_err(|e| {
                    format!(
                        "{}s.{}.file: cannot read {file}: {e}",
                        kind.as_str(),
                        m.source
                    )
                })?;
                contents.insert((kind, m.source.clone()), data);
            }
        }
    }
    let desired = convert::desired(p, &contents);
    let mut warnings = loaded.warnings.clone();
    warnings.extend(desired.warnings.iter().cloned());
    Ok((desired, warnings))
}

/// Swarm refuses secrets over 500 KB and configs over 1000 KB; a bigger file is refused here
/// before it is read.
const MAX_OBJECT_BYTES: u64 = 1000 * 1024;

fn read_object(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_OBJECT_BYTES {
        return Err(format!(
            "{} bytes is more than Swarm stores ({} KB at most)",
            meta.len(),
            MAX_OBJECT_BYTES / 1024
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// List what the plan and the report need.
pub async fn observe(engine: &dyn SwarmEngine, project: &str) -> Result<Observed, EngineError> {
    let prefix = format!("{project}_");
    let services = engine.list_services(Some(&prefix)).await?;
    let mut updates = HashMap::new();
    let services: Vec<Current> = services
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let state = s.update_status.and_then(|u| u.state);
            if let (Some(name), Some(state)) = (&spec.name, state) {
                updates.insert(name.clone(), state.to_string());
            }
            Some(Current {
                id: s.id?,
                version: s.version.and_then(|v| v.index).unwrap_or(0),
                spec,
            })
        })
        .collect();
    let listed = engine.list_networks().await?;
    let mut networks = Vec::new();
    let mut network_names = Vec::new();
    let mut network_ids = HashMap::new();
    for n in listed {
        if let (Some(id), Some(name)) = (n.id, n.name) {
            network_names.push(name.clone());
            network_ids.insert(id.clone(), name.clone());
            networks.push(diff::Network {
                id,
                name,
                labels: n.labels.unwrap_or_default(),
            });
        }
    }
    let mut objects = Vec::new();
    for s in engine.list_secrets().await? {
        let spec = s.spec.unwrap_or_default();
        if let (Some(id), Some(name)) = (s.id, spec.name) {
            objects.push(Existing {
                kind: Kind::Secret,
                id,
                name,
                labels: spec.labels.unwrap_or_default(),
            });
        }
    }
    for c in engine.list_configs().await? {
        let spec = c.spec.unwrap_or_default();
        if let (Some(id), Some(name)) = (c.id, spec.name) {
            objects.push(Existing {
                kind: Kind::Config,
                id,
                name,
                labels: spec.labels.unwrap_or_default(),
            });
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
        engine.list_tasks(&ids).await?
    };
    let nodes = engine.list_nodes().await?;
    Ok(Observed {
        services,
        networks,
        network_names,
        network_ids,
        objects,
        tasks,
        nodes,
        updates,
    })
}

/// Every Swarm service (any project), for what must not be removed while in use.
async fn all_services(engine: &dyn SwarmEngine) -> Result<Vec<Current>, EngineError> {
    Ok(engine
        .list_services(None)
        .await?
        .into_iter()
        .filter_map(|s| {
            Some(Current {
                id: s.id?,
                version: 0,
                spec: s.spec?,
            })
        })
        .collect())
}

/// The secret and config plan: which objects the services use, which to create or
/// remove. `all`: every service of the swarm (objects they use are kept).
pub fn plan_objects(
    desired: &Desired,
    observed: &Observed,
    all: &[Current],
) -> objects::ObjectPlan {
    let in_use: HashSet<String> = all
        .iter()
        .flat_map(|s| objects::referenced(&s.spec).collect::<Vec<_>>())
        .collect();
    objects::plan(desired, &observed.objects, &in_use)
}

/// `desired` with each service's secret and config references resolved against `names`
/// (from [`plan_objects`]) and the ids Swarm has (or was just given). A service whose
/// external secret or config is missing is left out, with the reason.
pub fn resolved(
    desired: &Desired,
    names: &BTreeMap<(Kind, String), String>,
    ids: &HashMap<(Kind, String), String>,
) -> (Desired, Vec<diff::Conflict>) {
    let external: HashSet<(Kind, String)> = desired
        .objects
        .iter()
        .filter(|(_, o)| o.external)
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = desired.clone();
    let mut problems = Vec::new();
    out.services.retain(
        |_, s| match objects::resolve(&s.spec, names, ids, &external) {
            Ok(spec) => {
                s.spec = spec;
                true
            }
            Err(reason) => {
                problems.push(diff::Conflict {
                    service: s.name.clone(),
                    reason,
                });
                false
            }
        },
    );
    (out, problems)
}

fn object_ids(observed: &Observed) -> HashMap<(Kind, String), String> {
    observed
        .objects
        .iter()
        .map(|o| ((o.kind, o.name.clone()), o.id.clone()))
        .collect()
}

/// The service and network plan for `desired` (references resolved) against `observed`.
/// Services Swarm still has to finish removing keep their networks until the next pass.
pub fn plan(desired: &Desired, observed: &Observed, all: &[Current]) -> diff::Plan {
    let mut p = diff::plan(
        desired,
        &observed.services,
        &observed.network_names,
        &observed.network_ids,
    );
    let removing = p.actions.iter().any(|a| matches!(a, Action::Remove { .. }));
    if !removing {
        p.actions
            .extend(diff::network_removals(desired, &observed.networks, all));
    }
    p
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
        Action::RemoveNetwork { name, .. } => {
            format!("remove network {name} (not in the file, no service uses it)")
        }
    }
}

/// One line per secret or config action, for `drover plan` and the logs. Never the content.
pub fn describe_object(a: &ObjectAction) -> String {
    match a {
        ObjectAction::Create {
            kind, name, file, ..
        } => format!(
            "create {} {name}{}",
            kind.as_str(),
            file.as_deref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default()
        ),
        ObjectAction::Remove { kind, name, .. } => {
            format!("remove {} {name} (no longer used)", kind.as_str())
        }
    }
}

/// The lines `drover plan` prints in Swarm mode.
pub async fn plan_lines(
    engine: &dyn SwarmEngine,
    desired: &Desired,
) -> Result<Vec<String>, EngineError> {
    let observed = observe(engine, &desired.project).await?;
    let all = all_services(engine).await?;
    let objects = plan_objects(desired, &observed, &all);
    let mut out: Vec<String> = objects.actions.iter().map(describe_object).collect();
    let (resolved, missing) = resolved(desired, &objects.names, &object_ids(&observed));
    let plan = plan(&resolved, &observed, &all);
    out.extend(plan.actions.iter().map(describe));
    for c in plan.conflicts.iter().chain(&missing) {
        out.push(format!("leave {} alone: {}", c.service, c.reason));
    }
    Ok(out)
}

#[derive(Default)]
struct Said {
    conflicts: HashSet<(String, String)>,
    services: BTreeMap<String, (u32, u32)>,
    nodes: BTreeMap<String, (String, String, u32, u32)>,
    problems: HashSet<(String, String)>,
    /// Each service's update state as last seen (see [`Observed::updates`]).
    updates: BTreeMap<String, String>,
    list_error: Option<String>,
    /// Failures of an action that repeats every pass (e.g. a network still in use), by
    /// what and error: said once.
    failures: HashSet<(String, String)>,
}

/// Swarm mode's state between passes.
pub struct Controller {
    swarm: SwarmHandle,
    engine: Endpoint,
    project: Project,
    /// The config as the files say it; `desired` is made from it with the image pins.
    file: config::Loaded,
    desired: Desired,
    /// Each service's image: the digests seen, the pins, the registry checks.
    images: Images,
    /// The manager's engine, asked for registry digests; `None`: tags are not followed.
    registry: Option<Client>,
    report: report::Shared,
    telemetry: Telemetry,
    said: Said,
    credentials: Credentials,
    /// Per service: its image's registry and where drover looked for the login it sent
    /// with the last create or update, said with a task that could not pull the image.
    logins: HashMap<String, Login>,
    notifier: Notifier,
}

/// The login a service was last sent with, for messages: never the secret.
#[derive(Debug, Clone)]
struct Login {
    registry: String,
    sent: bool,
    source: String,
}

impl Login {
    /// `reason` (Swarm's words for a task that did not run) with, when the node could not
    /// find the image, the registry and where drover looked for the login.
    fn explain(&self, reason: &str) -> String {
        if !reason.contains("No such image") {
            return reason.to_string();
        }
        let registry = &self.registry;
        if self.sent {
            format!(
                "{reason}; the node could not pull it from {registry} with the login drover sent, \
                 from {} (log in again with docker login {registry} if it was refused)",
                self.source
            )
        } else {
            format!(
                "{reason}; drover sent no login for {registry}: {} (run docker login {registry} \
                 with that DOCKER_CONFIG if it needs one)",
                self.source
            )
        }
    }
}

/// Swarm mode's loop for the project `loaded` describes, on the manager `manager`: its
/// event stream started, until `cancel` fires. `engine`: the manager, named in errors;
/// `telemetry`: where `/metrics` and `/status` read from. An error names a secret or
/// config file that cannot be read.
pub fn runtime(
    manager: Connected,
    engine: Endpoint,
    settings: Settings,
    start: Start,
) -> Result<Runtime<Controller>, String> {
    let Start {
        load,
        loaded,
        telemetry,
        cancel,
        reload,
        notify,
    } = start;
    let replicas = super::replicas::SwarmReplicas {
        project: loaded.project.name.clone(),
        swarm: manager.swarm.clone(),
        manager: manager.client.clone(),
    };
    let (mode, warnings) = Controller::new(
        manager.swarm,
        engine.clone(),
        &loaded,
        telemetry.clone(),
        settings.credentials.clone(),
    )?;
    let mut mode = mode.notify_to(notify.notifier.clone());
    mode.follow_with(manager.client.clone());
    let mut tasks = notify.tasks;
    let trigger = Arc::new(Trigger::default());
    let watch = EventWatch::new(
        manager.client,
        EventWatchConfig {
            project: loaded.project.name.clone(),
            watched: Watched::Swarm,
            watchdog: settings.watchdog,
            retry_max: Duration::from_secs(10),
            endpoint: engine.clone(),
            node: ENGINE.to_string(),
            on_error: None,
            heard: None,
            telemetry: telemetry.clone(),
        },
        trigger.clone(),
    );
    let parts = Parts {
        project: loaded.project.name.clone(),
        source: ConfigSource::new(load, &loaded, settings.watch_interval, reload),
        trigger,
        lease: Lease::none(),
        resync: settings.task_interval,
        telemetry: telemetry.clone(),
        tasks: {
            tasks.push(tokio::spawn(watch.run(cancel.child_token())));
            tasks
        },
        notifier: notify.notifier,
        replicas: Some(Arc::new(replicas)),
    };
    Ok(Runtime::new(mode, parts, &loaded, &warnings))
}

impl Controller {
    /// Swarm mode for `loaded` on the manager `swarm`, and the warnings to say; services
    /// are created and updated with the registry logins of `credentials`. An error names a
    /// secret or config file that cannot be read.
    pub fn new(
        swarm: SwarmHandle,
        engine: Endpoint,
        loaded: &config::Loaded,
        telemetry: Telemetry,
        credentials: Credentials,
    ) -> Result<(Controller, Vec<String>), String> {
        let (desired, warnings) = desired(loaded)?;
        telemetry.add_node(ENGINE);
        let c = Controller {
            swarm,
            engine,
            project: loaded.project.clone(),
            file: loaded.clone(),
            desired,
            images: Images::new(&loaded.project),
            registry: None,
            report: Arc::default(),
            telemetry,
            said: Said::default(),
            credentials,
            logins: HashMap::new(),
            notifier: Notifier::default(),
        };
        Ok((c, warnings))
    }

    /// Send notifications through `notifier`.
    pub fn notify_to(mut self, notifier: Notifier) -> Controller {
        self.notifier = notifier;
        self
    }
}

impl Mode for Controller {
    async fn start(&mut self, _cancel: &CancellationToken) {
        info!(
            action = "run",
            project = %self.project.name,
            mode = "swarm",
            services = self.project.services.len(),
            "reconciling Swarm services"
        );
    }

    /// A config whose desired services are the same needs no pass. A secret or config
    /// file that cannot be read keeps the last good config.
    fn adopt(&mut self, loaded: config::Loaded) -> Result<Adopted, String> {
        let (changed, warnings) = self.take(loaded)?;
        if changed {
            info!(action = "reload", project = %self.project.name, reason = "config changed", "config reloaded");
        }
        Ok(Adopted { changed, warnings })
    }

    fn retarget(&mut self, loaded: config::Loaded) -> bool {
        self.take(loaded).is_ok_and(|(changed, _)| changed)
    }

    /// After a change, look again soon: Swarm is converging. Otherwise tasks are listed
    /// again at the resync (Swarm sends no task events).
    async fn pass(&mut self, _wake: Wake) -> Option<Duration> {
        let acted = self.pass().await.then_some(Duration::from_millis(500));
        match (acted, self.images.next_wake()) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    fn left_running(&self) -> &'static str {
        "services"
    }
}

impl Controller {
    /// Run `loaded` from now on: whether the desired state changed, and the warnings.
    fn take(&mut self, loaded: config::Loaded) -> Result<(bool, Vec<String>), String> {
        self.images.reloaded(&loaded.project);
        let (desired, warnings) = desired(&images::pinned(&loaded, &self.images))?;
        let changed = desired != self.desired;
        if changed {
            self.project = loaded.project.clone();
            self.desired = desired;
        }
        self.file = loaded;
        Ok((changed, warnings))
    }

    /// The latest report (desired vs running per service and node, task errors).
    pub fn report(&self) -> report::Shared {
        self.report.clone()
    }

    fn list_failed(&mut self, e: &EngineError) {
        let msg = explain(&self.engine, e);
        self.telemetry.unreachable(ENGINE, &msg);
        if self.said.list_error.as_deref() != Some(msg.as_str()) {
            error!(action = "list", project = %self.project.name, error = %msg, "cannot list the swarm");
            self.said.list_error = Some(msg);
        }
    }

    /// One list-plan-apply-report round; `true` when something was changed.
    pub async fn pass(&mut self) -> bool {
        let _timer = self.telemetry.pass(ENGINE);
        let project = self.project.name.clone();
        let observed = match observe(self.swarm.as_ref(), &project).await {
            Ok(o) => o,
            Err(e) => {
                self.list_failed(&e);
                return false;
            }
        };
        if self.said.list_error.take().is_some() {
            info!(action = "list", project = %project, "listing the swarm again");
        }
        self.follow_images(&observed).await;

        // Secrets and configs first: the services refer to them by id. What may be
        // removed is checked against every service of the swarm, listed only then.
        let mut all = observed.services.clone();
        let mut objects = plan_objects(&self.desired, &observed, &all);
        let removable = objects
            .actions
            .iter()
            .any(|a| matches!(a, ObjectAction::Remove { .. }))
            || !diff::network_removals(&self.desired, &observed.networks, &all).is_empty();
        if removable {
            match all_services(self.swarm.as_ref()).await {
                Ok(a) => all = a,
                Err(e) => {
                    self.list_failed(&e);
                    return false;
                }
            }
            objects = plan_objects(&self.desired, &observed, &all);
        }
        let mut ids = object_ids(&observed);
        let mut acted = false;
        let (creates, removes): (Vec<ObjectAction>, Vec<ObjectAction>) = objects
            .actions
            .into_iter()
            .partition(|a| matches!(a, ObjectAction::Create { .. }));
        for a in creates {
            acted = true;
            if let Some((key, id)) = self.apply_object(a).await {
                ids.insert(key, id);
            }
        }
        let (desired, missing) = resolved(&self.desired, &objects.names, &ids);

        let plan = plan(&desired, &observed, &all);
        for c in plan.conflicts.iter().chain(&missing) {
            if self
                .said
                .conflicts
                .insert((c.service.clone(), c.reason.clone()))
            {
                error!(action = "conflict", project = %project, service = %c.service, reason = %c.reason, "service left alone");
            }
        }
        acted |= !plan.actions.is_empty();
        for a in plan.actions {
            self.apply(a).await;
        }
        for a in removes {
            acted = true;
            self.apply_object(a).await;
        }
        let observed = if acted {
            observe(self.swarm.as_ref(), &project)
                .await
                .unwrap_or(observed)
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
        self.notify_updates(&owned, &observed.updates, &r);
        self.telemetry.swarm_observed(ENGINE, &r);
        let states = report::states(&r, &observed.updates);
        self.telemetry.states(states, &Default::default(), |_| {});
        if let Ok(mut shared) = self.report.write() {
            *shared = r;
        }
        acted
    }

    /// Create or remove a secret or config; a created one's (kind, name) and id.
    async fn apply_object(&mut self, a: ObjectAction) -> Option<((Kind, String), String)> {
        let what = describe_object(&a);
        let started = std::time::Instant::now();
        let (action, reason, result) = match a {
            ObjectAction::Create {
                kind,
                name,
                labels,
                content,
                ..
            } => {
                let data = Some(objects::base64(&content.0));
                let r = match kind {
                    Kind::Secret => {
                        self.swarm
                            .create_secret(SecretSpec {
                                name: Some(name.clone()),
                                labels: Some(labels),
                                data,
                                ..Default::default()
                            })
                            .await
                    }
                    Kind::Config => {
                        self.swarm
                            .create_config(ConfigSpec {
                                name: Some(name.clone()),
                                labels: Some(labels),
                                data,
                                ..Default::default()
                            })
                            .await
                    }
                };
                let action = match kind {
                    Kind::Secret => "create_secret",
                    Kind::Config => "create_config",
                };
                (action, "content", r.map(|id| Some(((kind, name), id))))
            }
            ObjectAction::Remove { kind, id, .. } => {
                let (action, r) = match kind {
                    Kind::Secret => ("remove_secret", self.swarm.delete_secret(&id).await),
                    Kind::Config => ("remove_config", self.swarm.delete_config(&id).await),
                };
                (
                    action,
                    "unused",
                    ignore(r, EngineError::is_not_found).map(|()| None),
                )
            }
        };
        self.finish(action, None, reason, &what, started, result)
            .flatten()
    }

    /// Log and record a finished action; `Some(value)` when it succeeded.
    fn finish<T>(
        &mut self,
        action: &'static str,
        service: Option<&str>,
        reason: &'static str,
        what: &str,
        started: std::time::Instant,
        result: Result<T, EngineError>,
    ) -> Option<T> {
        let project = self.project.name.clone();
        let duration = started.elapsed();
        let duration_ms = duration.as_millis() as u64;
        match result {
            Ok(v) => {
                self.said.failures.retain(|(w, _)| w != what);
                self.telemetry
                    .swarm_action(ENGINE, action, service, reason, duration, None);
                match service {
                    Some(service) => {
                        info!(action, project = %project, service = %service, reason = %what, duration_ms, "done")
                    }
                    None => info!(action, project = %project, reason = %what, duration_ms, "done"),
                }
                Some(v)
            }
            Err(e) => {
                let msg = explain(&self.engine, &e);
                self.telemetry.swarm_action(
                    ENGINE,
                    action,
                    service,
                    reason,
                    duration,
                    Some(msg.clone()),
                );
                if self.said.failures.insert((what.to_string(), msg.clone())) {
                    error!(
                        action,
                        project = %project,
                        service = service.unwrap_or(""),
                        reason = %what,
                        error = %msg,
                        "failed; will retry"
                    );
                }
                None
            }
        }
    }

    /// The login for the registry of `spec`'s image, sent with its create or update so
    /// that every node can pull it; an error names the registry and the file or helper.
    async fn login(&mut self, spec: &ServiceSpec) -> Result<Option<RegistryAuth>, EngineError> {
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.as_deref());
        let Some(image) = image else {
            return Ok(None);
        };
        match self.credentials.for_image(image).await {
            Ok(found) => {
                if let Some(name) = &spec.name {
                    let login = Login {
                        registry: registry_of(image).to_string(),
                        sent: found.auth.is_some(),
                        source: found.source,
                    };
                    self.logins.insert(name.clone(), login);
                }
                Ok(found.auth)
            }
            Err(e) => Err(EngineError::new(
                crate::engine::Kind::Credentials,
                e.to_string(),
            )),
        }
    }

    async fn apply(&mut self, a: Action) {
        let what = describe(&a);
        let started = std::time::Instant::now();
        let (action, reason, service, result) = match a {
            Action::CreateNetwork(n) => {
                let name = n.name.clone();
                let r = self.swarm.create_network(n).await;
                (
                    "create_network",
                    "missing",
                    name,
                    ignore(r, EngineError::is_conflict),
                )
            }
            Action::Create { service, spec } => {
                let r = match self.login(&spec).await {
                    Ok(auth) => self.swarm.create_service(spec, auth).await,
                    Err(e) => Err(e),
                };
                (
                    "create",
                    "missing",
                    service,
                    ignore(r, EngineError::is_conflict),
                )
            }
            Action::Update {
                service,
                id,
                version,
                spec,
                ..
            } => {
                let r = match self.login(&spec).await {
                    Ok(auth) => self.swarm.update_service(&id, version, spec, auth).await,
                    Err(e) => Err(e),
                };
                ("update", "config-changed", service, r)
            }
            Action::Scale {
                service,
                id,
                version,
                spec,
                ..
            } => {
                let r = match self.login(&spec).await {
                    Ok(auth) => self.swarm.update_service(&id, version, spec, auth).await,
                    Err(e) => Err(e),
                };
                ("scale", "scale", service, r)
            }
            Action::Remove { service, id } => {
                let r = self.swarm.delete_service(&id).await;
                (
                    "remove",
                    "not-in-file",
                    service,
                    ignore(r, EngineError::is_not_found),
                )
            }
            Action::RemoveNetwork { name, id } => {
                let r = self.swarm.remove_network(&id).await;
                (
                    "remove_network",
                    "not-in-file",
                    name,
                    ignore(r, EngineError::is_not_found),
                )
            }
        };
        self.finish(action, Some(&service), reason, &what, started, result);
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
            let login = self.logins.get(&format!("{project}_{name}"));
            for p in s.problems.iter().filter(|p| p.error) {
                let key = (p.task.clone(), p.reason.clone());
                if self.said.problems.insert(key) {
                    let reason = login.map_or_else(|| p.reason.clone(), |l| l.explain(&p.reason));
                    warn!(
                        action = "task_error",
                        project = %project,
                        service = %name,
                        slot = p.slot,
                        node = p.node.as_deref().unwrap_or(""),
                        reason = %reason,
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
            let before = self.said.nodes.get(id).map(|s| s.0.as_str());
            match (before, n.state.as_str()) {
                (Some("ready"), "ready") | (None, _) => {}
                (Some("ready"), _) => {
                    let why = format!("Swarm reports the node {}", n.state);
                    let node = r.node_label(id);
                    self.notifier.send(Event::node_down(&node, &n.state, &why));
                }
                (Some(_), "ready") => self.notifier.send(Event::node_up(&r.node_label(id))),
                _ => {}
            }
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

impl Controller {
    /// Notify the update transitions Swarm reports: an update started, finished, rolled
    /// back. A service's first sight says nothing (drover may have restarted mid-update).
    fn notify_updates(&mut self, owned: &[Current], updates: &HashMap<String, String>, r: &Report) {
        let mut seen = BTreeMap::new();
        for c in owned {
            let name = diff::compose_service(&c.spec, &r.project).to_string();
            let state = updates
                .get(&c.spec.name.clone().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            let desired = r.services.get(&name).map_or(0, |s| s.desired);
            let before = self.said.updates.get(&name).map(String::as_str);
            if before.is_some_and(|b| b != state) {
                let event = match state.as_str() {
                    "updating" => Some(Event::update_started(&name, desired)),
                    "completed" => Some(Event::update_finished(&name, desired, false)),
                    "rollback_started" => Some(Event::rollback(&name, None, "update-failed")),
                    "rollback_completed" => Some(Event::update_finished(&name, desired, true)),
                    _ => None,
                };
                if let Some(e) = event {
                    self.notifier.send(e);
                }
            }
            seen.insert(name, state);
        }
        self.said.updates = seen;
    }
}

/// `r`, with the failure that means the action is already done (`done`: not found for a
/// removal, conflict for a creation) counted as success.
fn ignore(r: Result<(), EngineError>, done: fn(&EngineError) -> bool) -> Result<(), EngineError> {
    match r {
        Err(e) if done(&e) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::Kind as ErrorKind;
    use crate::engine::model::{
        Config, Network, ObjectVersion, Secret, SecretSpec, Service, ServiceSpec,
    };
    use crate::engine::swarm::fake::{FakeSwarm, State};
    use crate::swarm::convert::NAMESPACE;

    fn service(name: &str, namespace: Option<&str>, version: u64) -> Service {
        Service {
            id: Some(format!("id-{name}")),
            version: Some(ObjectVersion {
                index: Some(version),
            }),
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: namespace.map(|n| HashMap::from([(NAMESPACE.to_string(), n.to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, service: &str) -> Task {
        Task {
            id: Some(id.into()),
            service_id: Some(format!("id-{service}")),
            ..Default::default()
        }
    }

    /// A project with no services.
    fn nothing(project: &str) -> Desired {
        Desired {
            project: project.into(),
            services: BTreeMap::new(),
            networks: Vec::new(),
            objects: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    fn swarm() -> State {
        State {
            services: vec![
                service("p_web", Some("p"), 7),
                service("p_theirs", None, 2),
                service("q_web", Some("q"), 1),
            ],
            tasks: vec![task("t1", "p_web"), task("t2", "p_theirs")],
            nodes: vec![Node::default()],
            networks: vec![
                Network {
                    id: Some("n1".into()),
                    name: Some("p_default".into()),
                    ..Default::default()
                },
                Network::default(),
            ],
            secrets: vec![Secret {
                id: Some("s1".into()),
                spec: Some(SecretSpec {
                    name: Some("p_token".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            configs: vec![Config::default()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn observe_lists_the_projects_services_and_only_its_own_tasks() {
        let fake = FakeSwarm::new(swarm());
        let o = observe(&fake, "p").await.unwrap();
        let names: Vec<(&str, u64)> = o
            .services
            .iter()
            .map(|s| (s.spec.name.as_deref().unwrap(), s.version))
            .collect();
        assert_eq!(names, vec![("p_web", 7), ("p_theirs", 2)]);
        assert_eq!(o.network_names, vec!["p_default".to_string()]);
        assert_eq!(o.network_ids["n1"], "p_default");
        assert_eq!(
            o.objects,
            vec![Existing {
                kind: Kind::Secret,
                id: "s1".into(),
                name: "p_token".into(),
                labels: HashMap::new(),
            }]
        );
        let tasks: Vec<&str> = o.tasks.iter().map(|t| t.id.as_deref().unwrap()).collect();
        assert_eq!(tasks, vec!["t1"]);
        assert_eq!(o.nodes.len(), 1);
        assert_eq!(
            fake.calls(),
            vec![
                "list_services p_",
                "list_networks",
                "list_secrets",
                "list_configs",
                "list_tasks id-p_web",
                "list_nodes"
            ]
        );
    }

    #[tokio::test]
    async fn observe_asks_for_no_tasks_without_services_of_the_project() {
        let fake = FakeSwarm::new(swarm());
        let o = observe(&fake, "r").await.unwrap();
        assert!(o.services.is_empty() && o.tasks.is_empty());
        assert!(!fake.calls().iter().any(|c| c.starts_with("list_tasks")));
    }

    #[tokio::test]
    async fn a_failed_list_is_the_engines_error() {
        let gone = EngineError::new(ErrorKind::Unreachable, "cannot reach the Docker engine");
        let fake = FakeSwarm::new(State {
            fail: Some(gone.clone()),
            ..swarm()
        });
        assert_eq!(observe(&fake, "p").await.unwrap_err(), gone);
        let desired = nothing("p");
        assert_eq!(plan_lines(&fake, &desired).await.unwrap_err(), gone);
    }

    #[tokio::test]
    async fn plan_lines_removes_the_projects_services_not_in_the_file() {
        let mut state = swarm();
        state.services[0]
            .spec
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(crate::swarm::convert::PROJECT.into(), "p".into());
        let fake = FakeSwarm::new(state);
        let desired = nothing("p");
        let lines = plan_lines(&fake, &desired).await.unwrap();
        assert_eq!(lines, vec!["remove service p_web (not in the file)"]);
        // The plan only lists.
        assert!(
            fake.calls().iter().all(|c| c.starts_with("list_")),
            "{:?}",
            fake.calls()
        );
    }

    #[test]
    fn an_answer_that_means_done_counts_as_success() {
        let err = |kind| Err(EngineError::new(kind, ""));
        assert_eq!(
            ignore(err(ErrorKind::NotFound), EngineError::is_not_found),
            Ok(())
        );
        assert_eq!(
            ignore(err(ErrorKind::Conflict), EngineError::is_conflict),
            Ok(())
        );
        assert!(ignore(err(ErrorKind::Conflict), EngineError::is_not_found).is_err());
        assert!(ignore(err(ErrorKind::NotFound), EngineError::is_conflict).is_err());
        assert!(ignore(err(ErrorKind::Api(500)), EngineError::is_not_found).is_err());
        assert_eq!(ignore(Ok(()), EngineError::is_conflict), Ok(()));
    }

    /// A project loaded from `yaml` for Swarm mode, in a directory of its own (one per
    /// call: tests running at once load the same project name).
    pub(super) fn loaded(name: &str, yaml: &str) -> config::Loaded {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("drover-swarm-{name}-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yml"), yaml).unwrap();
        let load = crate::config::LoadOptions {
            files: vec![dir.join("compose.yml")],
            project_name: Some(name.into()),
            cwd: dir.clone(),
            mode: Some(crate::config::Mode::Swarm),
            ..Default::default()
        };
        let l = config::load(&load).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        l
    }

    pub(super) fn endpoint() -> Endpoint {
        let args = crate::engine::connect::ConnectArgs {
            host: Some("tcp://10.0.0.1:2375".into()),
            ..Default::default()
        };
        Endpoint::resolve(&args, &Default::default()).unwrap()
    }

    const WEB: &str = "services:\n  web:\n    image: busybox\n    deploy: { replicas: 2 }\n";

    /// Credentials with a Docker Hub login for `alice` (the `busybox` of [`WEB`] is Hub's).
    fn hub_login(name: &str) -> Credentials {
        let dir =
            std::env::temp_dir().join(format!("drover-swarm-creds-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6cHc="}}}"#,
        )
        .unwrap();
        Credentials::in_dir(dir, "DOCKER_CONFIG")
    }

    #[test]
    fn a_task_that_found_no_image_is_said_with_the_registry_and_the_login_sent() {
        let sent = Login {
            registry: "r:5000".into(),
            sent: true,
            source: "auths[\"r:5000\"] in /c/config.json".into(),
        };
        assert_eq!(
            sent.explain("No such image: r:5000/app:latest"),
            "No such image: r:5000/app:latest; the node could not pull it from r:5000 with the \
             login drover sent, from auths[\"r:5000\"] in /c/config.json (log in again with \
             docker login r:5000 if it was refused)"
        );
        assert_eq!(
            sent.explain("task: non-zero exit (1)"),
            "task: non-zero exit (1)"
        );
        let none = Login {
            sent: false,
            source: "no entry for r:5000 in /c/config.json".into(),
            ..sent
        };
        assert!(
            none.explain("No such image: x")
                .ends_with("drover sent no login for r:5000: no entry for r:5000 in /c/config.json (run docker login r:5000 with that DOCKER_CONFIG if it needs one)")
        );
    }

    #[tokio::test]
    async fn a_pass_creates_what_is_missing_leaves_what_matches_and_updates_an_edit() {
        let fake = Arc::new(FakeSwarm::new(State::default()));
        let telemetry = Telemetry::new("sp", Duration::from_secs(60), None);
        let creds = hub_login("sp");
        let (mut c, _) = Controller::new(
            fake.clone(),
            endpoint(),
            &loaded("sp", WEB),
            telemetry,
            creds.clone(),
        )
        .unwrap();
        // An empty swarm: the network, then the service.
        let next = Mode::pass(&mut c, Wake::default()).await;
        assert_eq!(
            next,
            Some(Duration::from_millis(500)),
            "acted: look again soon"
        );
        let changes: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("list_"))
            .collect();
        assert_eq!(
            changes,
            [
                "create_network sp_default",
                "create_service sp_web as alice"
            ],
            "the service is created with the registry login of its image"
        );

        // The swarm now has what the pass asked for: nothing to do.
        let spec = c.desired.services["web"].spec.clone();
        {
            let mut st = fake.state.lock().unwrap();
            st.calls.clear();
            st.networks.push(Network {
                id: Some("n1".into()),
                name: Some("sp_default".into()),
                ..Default::default()
            });
            st.services.push(Service {
                id: Some("id-sp_web".into()),
                version: Some(ObjectVersion { index: Some(4) }),
                spec: Some(spec),
                ..Default::default()
            });
        }
        assert_eq!(Mode::pass(&mut c, Wake::default()).await, None);
        assert!(fake.calls().iter().all(|c| c.starts_with("list_")));

        // An edit: adopted as a change, applied as an update of the version seen.
        let edited = WEB.replace("replicas: 2 }", "replicas: 2 }\n    environment: { A: b }");
        let adopted = c.adopt(loaded("sp", &edited)).unwrap();
        assert!(adopted.changed);
        assert!(
            !c.adopt(loaded("sp", &edited)).unwrap().changed,
            "the same again: no change"
        );
        Mode::pass(&mut c, Wake::default()).await;
        let changes: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("list_"))
            .collect();
        assert_eq!(changes, ["update_service id-sp_web 4 as alice"]);

        // A login that cannot be read: the update fails with one line, no engine call.
        std::fs::write(creds.path(), "{ not json").unwrap();
        let edited = edited.replace("A: b", "A: c");
        c.adopt(loaded("sp", &edited)).unwrap();
        fake.state.lock().unwrap().calls.clear();
        Mode::pass(&mut c, Wake::default()).await;
        assert!(fake.calls().iter().all(|c| c.starts_with("list_")));
        let _ = std::fs::remove_dir_all(creds.path().parent().unwrap());
    }
    #[tokio::test]
    async fn node_and_update_transitions_are_notified_once_each_and_not_at_first_sight() {
        use crate::engine::model::{
            NodeDescription, NodeState, NodeStatus, ServiceUpdateStatus,
            ServiceUpdateStatusStateEnum as U,
        };
        let fake = Arc::new(FakeSwarm::new(State::default()));
        let telemetry = Telemetry::new("sp", Duration::from_secs(60), None);
        let (c, _) = Controller::new(
            fake.clone(),
            endpoint(),
            &loaded("sp", WEB),
            telemetry,
            Credentials::in_dir("/nonexistent", "a test"),
        )
        .unwrap();
        let (notifier, sent) = Notifier::recording();
        let mut c = c.notify_to(notifier);
        let spec = c.desired.services["web"].spec.clone();
        let set = |node: NodeState, update: Option<U>| {
            let mut st = fake.state.lock().unwrap();
            st.networks = vec![Network {
                id: Some("n1".into()),
                name: Some("sp_default".into()),
                ..Default::default()
            }];
            st.services = vec![Service {
                id: Some("id-sp_web".into()),
                version: Some(ObjectVersion { index: Some(4) }),
                spec: Some(spec.clone()),
                update_status: update.map(|u| ServiceUpdateStatus {
                    state: Some(u),
                    ..Default::default()
                }),
                ..Default::default()
            }];
            st.nodes = vec![Node {
                id: Some("x1".into()),
                description: Some(NodeDescription {
                    hostname: Some("box1".into()),
                    ..Default::default()
                }),
                status: Some(NodeStatus {
                    state: Some(node),
                    ..Default::default()
                }),
                ..Default::default()
            }];
        };
        let said = || -> Vec<String> {
            sent()
                .iter()
                .map(|e| {
                    let who = e.service.as_deref().or(e.node.as_deref()).unwrap_or("");
                    format!(
                        "{} {who} {}",
                        e.event.as_str(),
                        e.reason.as_deref().unwrap_or("")
                    )
                })
                .collect()
        };
        // Mid-update at first sight: nothing said.
        set(NodeState::READY, Some(U::UPDATING));
        c.pass().await;
        assert_eq!(said(), Vec::<String>::new());
        for (node, update) in [
            (NodeState::DOWN, Some(U::ROLLBACK_STARTED)),
            (NodeState::DOWN, Some(U::ROLLBACK_STARTED)),
            (NodeState::READY, Some(U::ROLLBACK_COMPLETED)),
            (NodeState::READY, Some(U::UPDATING)),
            (NodeState::READY, Some(U::COMPLETED)),
        ] {
            set(node, update);
            c.pass().await;
        }
        assert_eq!(
            said(),
            [
                "node-down box1 down",
                "rollback web update-failed",
                "node-up box1 ",
                "update-finished web rolled-back",
                "update-started web config-changed",
                "update-finished web completed",
            ]
        );
    }
}
