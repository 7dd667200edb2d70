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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::config::{
    ConstraintField, FailureAction, MountKind, Project, Protocol, RestartCondition, Service,
    UpdateConfig, UpdateOrder,
};

/// `docker stack deploy`'s namespace label, on services, networks and task containers.
pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// `docker stack deploy`'s image label on services.
pub const STACK_IMAGE: &str = "com.docker.stack.image";
/// drover's ownership label (on services and networks).
pub const PROJECT: &str = "drover.project";
/// The Compose service a Swarm service comes from.
pub const SERVICE: &str = "drover.service";

/// Everything the project wants from Swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub project: String,
    /// By Compose service name.
    pub services: BTreeMap<String, DesiredService>,
    /// Networks to create when missing (external ones are not here).
    pub networks: Vec<NetworkCreateRequest>,
    /// Compose keys that Swarm cannot honour, one line each (logged once).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    /// `{project}_{service}`.
    pub name: String,
    /// `None` for a global service (one task per eligible node).
    pub replicas: Option<u32>,
    pub spec: ServiceSpec,
}

/// What the Compose model cannot express yet but Swarm needs per service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// `deploy.mode: global`.
    pub global: bool,
    /// `deploy.resources`.
    pub resources: Resources,
}

/// `deploy.resources.limits` / `reservations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub limits: ResourceAmounts,
    pub reservations: ResourceAmounts,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceAmounts {
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// Limits only.
    pub pids: Option<i64>,
}

/// `{project}_{service}`.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

/// The whole project as Swarm specs. `extras` holds per-service keys the model lacks.
pub fn desired(project: &Project, extras: &BTreeMap<String, Extras>) -> Desired {
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
            NetworkCreateRequest {
                name: n.name.clone(),
                driver: Some(n.driver.clone().unwrap_or_else(|| "overlay".into())),
                attachable: Some(true),
                labels: Some(labels),
                ..Default::default()
            }
        })
        .collect();
    let services = project
        .services
        .iter()
        .map(|(name, s)| {
            let extra = extras.get(name).cloned().unwrap_or_default();
            (name.clone(), service(project, s, &extra, &mut warnings))
        })
        .collect();
    Desired {
        project: project.name.clone(),
        services,
        networks,
        warnings,
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn service(
    project: &Project,
    s: &Service,
    extra: &Extras,
    warn: &mut Vec<String>,
) -> DesiredService {
    let name = service_name(&project.name, &s.name);
    let mut labels = HashMap::new();
    labels.insert(NAMESPACE.to_string(), project.name.clone());
    labels.insert(STACK_IMAGE.to_string(), s.image.clone());
    labels.insert(PROJECT.to_string(), project.name.clone());
    labels.insert(SERVICE.to_string(), s.name.clone());

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

    let mounts: Vec<Mount> = s
        .volumes
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
        .collect();

    let health_check = s.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(nanos),
        ..Default::default()
    });

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

    let container = TaskSpecContainerSpec {
        image: Some(s.image.clone()),
        labels: Some(container_labels),
        command: s.entrypoint.clone(),
        args: s.command.clone(),
        hostname: s.hostname.clone(),
        env: non_empty(env),
        dir: s.working_dir.clone(),
        user: s.user.clone(),
        mounts: non_empty(mounts),
        stop_signal: s.stop_signal.clone(),
        stop_grace_period: Some(nanos(s.stop_grace_period)),
        health_check,
        ..Default::default()
    };

    let networks: Vec<NetworkAttachmentConfig> = s
        .networks
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
        .collect();

    let constraints: Vec<String> = s
        .placement
        .constraints
        .iter()
        .map(|c| {
            let field = match &c.field {
                ConstraintField::NodeName => "node.hostname".to_string(),
                ConstraintField::NodeLabel(k) => format!("node.labels.{k}"),
            };
            format!("{field}{}{}", if c.equal { "==" } else { "!=" }, c.value)
        })
        .collect();
    let preferences: Vec<TaskSpecPlacementPreferences> = s
        .placement
        .spread
        .iter()
        .map(|k| TaskSpecPlacementPreferences {
            spread: Some(TaskSpecPlacementSpread {
                spread_descriptor: Some(format!("node.labels.{k}")),
            }),
        })
        .collect();
    let placement = TaskSpecPlacement {
        constraints: non_empty(constraints),
        preferences: non_empty(preferences),
        max_replicas: s.placement.max_replicas_per_node.map(i64::from),
        ..Default::default()
    };
    let placement = (placement != TaskSpecPlacement::default()).then_some(placement);

    let restart_policy = TaskSpecRestartPolicy {
        condition: Some(match s.restart.condition {
            RestartCondition::Never => TaskSpecRestartPolicyConditionEnum::NONE,
            RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::Always => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        delay: s.restart.delay.map(nanos),
        max_attempts: s.restart.max_attempts.map(i64::from),
        window: s.restart.window.map(nanos),
    };

    let ports: Vec<EndpointPortConfig> = s
        .ports
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
        .collect();

    let replicas = (!extra.global).then_some(s.replicas);
    let mode = if extra.global {
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
    };

    let r = &extra.resources;
    let resources = TaskSpecResources {
        limits: (r.limits != ResourceAmounts::default()).then_some(Limit {
            nano_cpus: r.limits.nano_cpus,
            memory_bytes: r.limits.memory_bytes,
            pids: r.limits.pids,
        }),
        reservations: (r.reservations != ResourceAmounts::default()).then(|| ResourceObject {
            nano_cpus: r.reservations.nano_cpus,
            memory_bytes: r.reservations.memory_bytes,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resources = (resources != TaskSpecResources::default()).then_some(resources);

    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            restart_policy: Some(restart_policy),
            resources,
            placement,
            networks: non_empty(networks),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config: Some(update_config(&s.update)),
        rollback_config: Some(rollback_config(&s.rollback)),
        endpoint_spec: non_empty(ports).map(|ports| EndpointSpec {
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
