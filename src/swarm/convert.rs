//! The desired [`Project`] -> Swarm service and network specs, named and labelled the way
//! `docker stack deploy` names and labels them. Pure: no engine involved.
//!
//! - Service `{project}_{service}`, labels `com.docker.stack.namespace={project}`,
//!   `com.docker.stack.image`, plus drover's `drover.project` / `drover.service`
//!   (ownership: a service without `drover.project={project}` and the namespace label is
//!   never changed or removed).
//! - Task containers carry the user's labels and the namespace label, but not
//!   `drover.project`: they belong to Swarm, and drover in plain mode must never take them
//!   for its own.
//! - Networks `{project}_{key}` (or their `name:`), overlay and attachable; external ones are
//!   used as they are and never created.
//! - `entrypoint` -> the container spec's Command, `command` -> Args (as the stack does).
//! - Secrets and configs: the ones services use are listed in [`Desired::objects`] with a
//!   hash of their content; the service specs refer to them by key until
//!   [`super::objects`] resolves each to the Swarm object of that content.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{
    DeployMode, FailureAction, FileMount, MountKind, Project, Protocol, RestartCondition, Service,
    UpdateConfig, UpdateOrder,
};
use crate::engine::model::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

/// `docker stack deploy`'s namespace label, on services, networks and task containers.
pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// `docker stack deploy`'s image label on services.
pub const STACK_IMAGE: &str = "com.docker.stack.image";
/// drover's ownership label (on services and networks).
pub const PROJECT: &str = "drover.project";
/// The Compose service a Swarm service comes from.
pub const SERVICE: &str = "drover.service";
/// On services with a healthcheck: sha256 of it. The engine stores the healthcheck under
/// `Healthcheck`, which the client library does not read back (it reads `HealthCheck`), so
/// a changed healthcheck is seen through this label instead.
pub const HEALTHCHECK_HASH: &str = "drover.healthcheck-hash";

/// Everything the project wants from Swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub project: String,
    /// By Compose service name.
    pub services: BTreeMap<String, DesiredService>,
    /// Networks to create when missing (external ones are not here).
    pub networks: Vec<NetworkCreateRequest>,
    /// Secrets and configs the services use, by kind and key.
    pub objects: BTreeMap<(Kind, String), DesiredObject>,
    /// Compose keys that Swarm cannot honour, one line each (logged once).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    /// `{project}_{service}`.
    pub name: String,
    /// `None` for a global service (one task per eligible node).
    pub replicas: Option<u32>,
    /// Secret and config references in `spec` still name their key in `SecretName` /
    /// `ConfigName` and have no id: see [`super::objects::resolve`].
    pub spec: ServiceSpec,
}

/// A Swarm secret or a Swarm config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

/// A secret or config a service uses.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub kind: Kind,
    /// Key in the top-level `secrets`/`configs`.
    pub key: String,
    /// `{project}_{key}` or `name:`; for an external one, the name it has in Swarm.
    pub name: String,
    pub external: bool,
    /// The file it is read from (for `drover plan`); `None` for an external one.
    pub file: Option<String>,
    /// Labels for a created one: the file's, the namespace, drover's.
    pub labels: HashMap<String, String>,
    /// sha256 of the content, hex; empty for an external one.
    pub hash: String,
    pub content: Content,
}

/// A secret's or config's bytes. Never printed: `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Content(pub Vec<u8>);

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Content({} bytes)", self.0.len())
    }
}

/// Label on secrets and configs drover creates: the sha256 of the content.
pub const CONTENT_HASH: &str = "drover.content-hash";
/// Label on secrets and configs drover creates: their key in the Compose file.
pub const OBJECT_KEY: &str = "drover.key";

/// sha256 of `data`, hex.
pub fn content_hash(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `{project}_{service}`.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

/// The whole project as Swarm specs. `contents`: the bytes of each secret and config file
/// the services use, by kind and key (read by the caller; external ones have none).
pub fn desired(project: &Project, contents: &BTreeMap<(Kind, String), Vec<u8>>) -> Desired {
    let mut warnings = Vec::new();
    let networks = project
        .networks
        .iter()
        .filter(|(key, n)| {
            !n.external
                && project
                    .services
                    .values()
                    .any(|s| s.networks.contains_key(*key))
        })
        .map(|(_, n)| {
            let mut labels: HashMap<String, String> = n
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.insert(NAMESPACE.into(), project.name.clone());
            labels.insert(PROJECT.into(), project.name.clone());
            // Overlay unless the file says otherwise, and attachable (drover itself, and
            // `docker run --network`, may join); the rest as the file says.
            let mut req = crate::spec::network_request(n, &n.name, labels);
            req.driver = Some(n.driver.clone().unwrap_or_else(|| "overlay".into()));
            req.attachable = Some(true);
            req
        })
        .collect();
    let mut objects = BTreeMap::new();
    for s in project.services.values() {
        for (kind, uses, defs) in [
            (Kind::Secret, &s.options.secrets, &project.secrets),
            (Kind::Config, &s.options.configs, &project.configs),
        ] {
            for m in uses {
                let Some(def) = defs.get(&m.source) else {
                    continue;
                };
                let content = contents
                    .get(&(kind, m.source.clone()))
                    .cloned()
                    .unwrap_or_default();
                let mut labels: HashMap<String, String> = def
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.insert(NAMESPACE.into(), project.name.clone());
                labels.insert(PROJECT.into(), project.name.clone());
                labels.insert(OBJECT_KEY.into(), m.source.clone());
                let hash = if def.external {
                    String::new()
                } else {
                    content_hash(&content)
                };
                labels.insert(CONTENT_HASH.into(), hash.clone());
                objects.insert(
                    (kind, m.source.clone()),
                    DesiredObject {
                        kind,
                        key: m.source.clone(),
                        name: def.name.clone(),
                        external: def.external,
                        file: def.file.clone(),
                        labels,
                        hash,
                        content: Content(content),
                    },
                );
            }
        }
    }
    let services = project
        .services
        .iter()
        .map(|(name, s)| (name.clone(), service(project, s, &mut warnings)))
        .collect();
    Desired {
        project: project.name.clone(),
        services,
        networks,
        objects,
        warnings,
    }
}

/// The file reference of a secret or config use, with Swarm's (and the CLI's) defaults:
/// owner 0:0, mode 0444.
fn file_ref(m: &FileMount) -> (String, String, String, u32) {
    (
        m.target.clone(),
        m.uid.clone().unwrap_or_else(|| "0".into()),
        m.gid.clone().unwrap_or_else(|| "0".into()),
        m.mode.unwrap_or(0o444),
    )
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn service(project: &Project, s: &Service, warn: &mut Vec<String>) -> DesiredService {
    let name = service_name(&project.name, &s.name);
    let mut labels = HashMap::new();
    labels.insert(NAMESPACE.to_string(), project.name.clone());
    labels.insert(STACK_IMAGE.to_string(), s.image.clone());
    labels.insert(PROJECT.to_string(), project.name.clone());
    labels.insert(SERVICE.to_string(), s.name.clone());

    let container_spec = container_spec(project, s);
    if let Some(h) = &container_spec.health_check {
        let json = serde_json::to_string(h).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        labels.insert(HEALTHCHECK_HASH.to_string(), hex);
    }

    warn_unsupported(s, warn);
    let global = s.mode == DeployMode::Global;
    let replicas = (!global).then_some(s.replicas);
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec),
            restart_policy: Some(restart_policy(s)),
            resources: resources(s),
            placement: placement(s),
            networks: non_empty(networks(project, s)),
            ..Default::default()
        }),
        mode: Some(mode(s)),
        update_config: Some(update_config(&s.update)),
        rollback_config: Some(rollback_config(&s.rollback)),
        endpoint_spec: non_empty(ports(s)).map(|ports| EndpointSpec {
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    DesiredService {
        name,
        replicas,
        spec,
    }
}

/// Warnings for the service keys Swarm cannot honour.
fn warn_unsupported(s: &Service, warn: &mut Vec<String>) {
    if s.container_name.is_some() {
        warn.push(format!(
            "services.{}.container_name: Swarm names task containers itself, ignored",
            s.name
        ));
    }
    if s.ports.iter().any(|p| p.host_ip.is_some()) {
        warn.push(format!(
            "services.{}.ports: a host IP cannot be set for Swarm's published ports, ignored",
            s.name
        ));
    }
    if !s.depends_on.is_empty() {
        warn.push(format!(
            "services.{}.depends_on: Swarm starts services in any order, ignored",
            s.name
        ));
    }
}

/// What each task runs: image, process, labels, mounts, health check, secrets, configs.
fn container_spec(project: &Project, s: &Service) -> TaskSpecContainerSpec {
    let mut container_labels: HashMap<String, String> = s
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    container_labels.insert(NAMESPACE.to_string(), project.name.clone());

    let env: Vec<String> = s
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();

    let health_check = s.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(nanos),
        ..Default::default()
    });

    TaskSpecContainerSpec {
        image: Some(s.reference()),
        labels: Some(container_labels),
        command: s.entrypoint.clone(),
        args: s.command.clone(),
        hostname: s.hostname.clone(),
        env: non_empty(env),
        dir: s.working_dir.clone(),
        user: s.user.clone(),
        mounts: non_empty(mounts(project, s)),
        stop_signal: s.stop_signal.clone(),
        stop_grace_period: Some(nanos(s.stop_grace_period)),
        health_check,
        secrets: non_empty(secrets(s)),
        configs: non_empty(configs(s)),
        ..Default::default()
    }
}

/// The service's volumes; a named volume Swarm creates carries the namespace label.
fn mounts(project: &Project, s: &Service) -> Vec<Mount> {
    s.volumes
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: m.source.clone(),
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: m.read_only.then_some(true),
            volume_options: (m.kind == MountKind::Volume && m.source.is_some()).then(|| {
                MountVolumeOptions {
                    labels: Some(HashMap::from([(
                        NAMESPACE.to_string(),
                        project.name.clone(),
                    )])),
                    ..Default::default()
                }
            }),
            ..Default::default()
        })
        .collect()
}

/// Secret uses, by key. Secrets mount under /run/secrets unless the target is absolute.
fn secrets(s: &Service) -> Vec<TaskSpecContainerSpecSecrets> {
    s.options
        .secrets
        .iter()
        .map(|m| {
            let (name, uid, gid, mode) = file_ref(m);
            TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(name),
                    uid: Some(uid),
                    gid: Some(gid),
                    mode: Some(mode),
                }),
                secret_id: None,
                secret_name: Some(m.source.clone()),
            }
        })
        .collect()
}

/// Config uses, by key. Configs mount anywhere.
fn configs(s: &Service) -> Vec<TaskSpecContainerSpecConfigs> {
    s.options
        .configs
        .iter()
        .map(|m| {
            let (name, uid, gid, mode) = file_ref(m);
            TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(name),
                    uid: Some(uid),
                    gid: Some(gid),
                    mode: Some(mode),
                }),
                config_name: Some(m.source.clone()),
                ..Default::default()
            }
        })
        .collect()
}

/// The networks the service joins, with the service name as an alias.
fn networks(project: &Project, s: &Service) -> Vec<NetworkAttachmentConfig> {
    s.networks
        .iter()
        .filter_map(|(key, sn)| {
            let net = project.networks.get(key)?;
            let mut aliases = vec![s.name.clone()];
            aliases.extend(sn.aliases.iter().cloned());
            Some(NetworkAttachmentConfig {
                target: Some(net.name.clone()),
                aliases: Some(aliases),
                ..Default::default()
            })
        })
        .collect()
}

/// Swarm evaluates constraints and preferences itself: passed on as written.
fn placement(s: &Service) -> Option<TaskSpecPlacement> {
    let constraints: Vec<String> = s.placement.swarm_constraints.clone();
    let preferences: Vec<TaskSpecPlacementPreferences> = s
        .placement
        .swarm_spread
        .iter()
        .map(|d| TaskSpecPlacementPreferences {
            spread: Some(TaskSpecPlacementSpread {
                spread_descriptor: Some(d.clone()),
            }),
        })
        .collect();
    let placement = TaskSpecPlacement {
        constraints: non_empty(constraints),
        preferences: non_empty(preferences),
        max_replicas: s.placement.max_replicas_per_node.map(i64::from),
        ..Default::default()
    };
    (placement != TaskSpecPlacement::default()).then_some(placement)
}

fn restart_policy(s: &Service) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: Some(match s.restart.condition {
            RestartCondition::Never => TaskSpecRestartPolicyConditionEnum::NONE,
            RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::Always => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        delay: s.restart.delay.map(nanos),
        max_attempts: s.restart.max_attempts.map(i64::from),
        window: s.restart.window.map(nanos),
    }
}

/// The published ports, on the ingress mesh (ports without a published port are left
/// out).
fn ports(s: &Service) -> Vec<EndpointPortConfig> {
    s.ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol {
                Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                Protocol::Sctp => EndpointPortConfigProtocolEnum::SCTP,
            }),
            target_port: Some(i64::from(p.target)),
            published_port: p.published.map(i64::from),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
            ..Default::default()
        })
        .filter(|p| p.published_port.is_some())
        .collect()
}

/// Global (one task per eligible node), or replicated with the replica target.
fn mode(s: &Service) -> ServiceSpecMode {
    if s.mode == DeployMode::Global {
        ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        }
    } else {
        ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(s.replicas)),
            }),
            ..Default::default()
        }
    }
}

/// The model's limits and reservations: deploy.resources, else the service-level keys.
fn resources(s: &Service) -> Option<TaskSpecResources> {
    let o = &s.options;
    let cpus = |c: f64| (c * 1e9).round() as i64;
    let limits = Limit {
        nano_cpus: o.cpus.map(cpus),
        memory_bytes: o.mem_limit,
        pids: o.pids_limit,
    };
    let reservations = ResourceObject {
        nano_cpus: o.cpus_reservation.map(cpus),
        memory_bytes: o.mem_reservation,
        ..Default::default()
    };
    let resources = TaskSpecResources {
        limits: (limits != Limit::default()).then_some(limits),
        reservations: (reservations != ResourceObject::default()).then_some(reservations),
        ..Default::default()
    };
    (resources != TaskSpecResources::default()).then_some(resources)
}

fn update_config(u: &UpdateConfig) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(i64::from(u.parallelism)),
        delay: Some(nanos(u.delay)),
        failure_action: Some(match u.failure_action {
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            UpdateOrder::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

fn rollback_config(u: &UpdateConfig) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(i64::from(u.parallelism)),
        delay: Some(nanos(u.delay)),
        failure_action: Some(match u.failure_action {
            FailureAction::Pause | FailureAction::Rollback => {
                ServiceSpecRollbackConfigFailureActionEnum::PAUSE
            }
            FailureAction::Continue => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
        }),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            UpdateOrder::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{self, DeployMode, LoadOptions, Mode};

    fn load(text: &str, mode: Mode) -> Result<config::Loaded, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("swarm-model-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yml"), text).unwrap();
        let r = config::load(&LoadOptions {
            project_name: Some("p".into()),
            cwd: dir.clone(),
            env: HashMap::from([("MEM".to_string(), "64M".to_string())]),
            mode: Some(mode),
            ..Default::default()
        })
        .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(dir);
        r
    }

    const SWARM_ONLY: &str = "services:
  web:
    image: img
    secrets: [{source: ext, uid: '5', mode: 0400}]
    deploy:
      mode: global
      resources:
        limits:
          memory: ${MEM}
        reservations: {cpus: '0.5'}
      placement:
        constraints: [node.role == manager]
secrets:
  ext: {external: true}
";

    #[test]
    fn swarm_keys_are_in_the_model_interpolated_and_located() {
        let l = load(SWARM_ONLY, Mode::Swarm).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let web = &l.project.services["web"];
        assert_eq!(web.mode, DeployMode::Global);
        assert_eq!(web.options.mem_limit, Some(64 << 20));
        assert_eq!(web.options.cpus_reservation, Some(0.5));
        assert_eq!(web.options.secrets[0].mode, Some(0o400));
        assert_eq!(web.options.secrets[0].file, None);
        assert_eq!(
            web.placement.swarm_constraints,
            vec!["node.role == manager"]
        );
        assert!(l.project.secrets["ext"].external);

        // Plain mode refuses what only Swarm can evaluate, at its place in the file.
        let err = load(SWARM_ONLY, Mode::Plain).unwrap_err();
        assert!(
            err.starts_with("compose.yml:4:15: services.web.secrets[0]: secrets \"ext\": external"),
            "{err}"
        );
        let plain = SWARM_ONLY.replace("{external: true}", "{file: ./x}");
        let err = load(&plain, Mode::Plain).unwrap_err();
        assert_eq!(
            err,
            "compose.yml:12:23: services.web.deploy.placement.constraints[0]: expected \
             node.name or node.labels.KEY, then == or !=, then a value"
        );
        let plain = plain.replace("constraints: [node.role == manager]", "{}");
        let l = load(&plain, Mode::Plain).unwrap();
        let w = l.warnings.join("\n");
        // Plain mode runs a global service itself: one replica per eligible node.
        assert!(!w.contains("deploy.mode"), "{w}");
        assert_eq!(l.project.services["web"].mode, DeployMode::Global);
        assert!(
            w.contains("services.web.deploy.resources.reservations.cpus: ignored in plain mode"),
            "{w}"
        );
        assert!(
            w.contains("services.web.secrets[0].uid: ignored in plain mode"),
            "{w}"
        );
    }

    #[test]
    fn global_with_replicas_and_jobs_are_errors() {
        let err = load(
            "services:\n  web:\n    image: img\n    deploy: {mode: global, replicas: 2}\n",
            Mode::Swarm,
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "compose.yml:4:20: services.web.deploy.mode: global runs one task per node"
            ),
            "{err}"
        );
        let err = load(
            "services:\n  web:\n    image: img\n    deploy: {mode: replicated-job}\n",
            Mode::Swarm,
        )
        .unwrap_err();
        assert!(err.contains("jobs are not supported"), "{err}");
    }
}
