//! From a desired service and slot to the engine's container create request. Pure.
//!
//! - Names are deterministic: `{project}-{service}-{slot}` (or the service's
//!   `container_name`), so creating twice is detectable as a name conflict.
//! - Labels carry all the state drover needs to rebuild itself from the engine:
//!   `drover.*` plus compose's `com.docker.compose.*` so compose-aware tools list them.
//! - drover owns restarts: no engine restart policy is set.
//! - API 1.41 accepts one network endpoint at create time: the first network (highest
//!   `priority`, then by key) is set here, the others are returned by [`extra_networks`] to
//!   connect afterwards. `network_mode` replaces networks altogether.
//! - References to other services (`network_mode: service:NAME`, `volumes_from`, `links`)
//!   name the other service's first container, as compose does on one engine.
//! - Secrets and configs from files are bind-mounted read-only, as compose does without
//!   Swarm.
//! - `platform` is not part of the body: it is a parameter of the create (and pull) call,
//!   see [`platform`].

use std::collections::HashMap;
use std::net::IpAddr;

use crate::engine::model::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Mount as EngineMount, MountBindOptions,
    MountTmpfsOptions, MountType, MountVolumeOptions, NetworkCreateRequest, NetworkingConfig,
    PortBinding, PortMap, ResourcesUlimits, RestartPolicy as EngineRestartPolicy,
    RestartPolicyNameEnum,
};

use crate::config::{Mount, MountKind, Project, Protocol, Service};
use crate::engine::model::VolumeMount;

use crate::labels::{
    COMPOSE_CONFIG_HASH, COMPOSE_CONTAINER_NUMBER, COMPOSE_ONEOFF, COMPOSE_PROJECT,
    COMPOSE_SERVICE, LABEL_AMBASSADOR, LABEL_CONFIG_HASH, LABEL_IMAGE_DIGEST, LABEL_MESH_ADDRESS,
    LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT,
};

/// `{project}-{service}-{slot}`, or the service's `container_name` when set
/// (the loader guarantees such a service has at most one replica).
pub fn container_name(project: &Project, service: &Service, slot: u32) -> String {
    match &service.container_name {
        Some(name) => name.clone(),
        None => format!("{}-{}-{}", project.name, service.name, slot),
    }
}

/// The `platform` parameter of the create and pull requests (`None`: the engine's own).
pub fn platform(service: &Service) -> Option<String> {
    service.options.platform.clone()
}

/// The name of the container another service's reference (`service:NAME`) points at:
/// that service's first container.
fn service_container(project: &Project, name: &str) -> String {
    match project.services.get(name) {
        Some(svc) => container_name(project, svc, 1),
        None => format!("{}-{name}-1", project.name),
    }
}

/// User labels, then drover's and compose's (which win over user labels of the same name).
pub fn labels(project: &Project, service: &Service, slot: u32) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let slot = slot.to_string();
    for (k, v) in [
        (LABEL_PROJECT, project.name.as_str()),
        (LABEL_SERVICE, service.name.as_str()),
        (LABEL_SLOT, slot.as_str()),
        (LABEL_CONFIG_HASH, service.config_hash.as_str()),
        (COMPOSE_PROJECT, project.name.as_str()),
        (COMPOSE_SERVICE, service.name.as_str()),
        (COMPOSE_CONTAINER_NUMBER, slot.as_str()),
        (COMPOSE_ONEOFF, "False"),
        (COMPOSE_CONFIG_HASH, service.config_hash.as_str()),
    ] {
        out.insert(k.to_string(), v.to_string());
    }
    if let Some(d) = &service.digest {
        out.insert(LABEL_IMAGE_DIGEST.to_string(), d.clone());
    }
    out
}

/// The engine's create request for one slot of `service`.
pub fn create_body(project: &Project, service: &Service, slot: u32) -> ContainerCreateBody {
    let o = &service.options;
    let env = environment(service);
    let ports = Ports::of(service);
    let first = match &o.network_mode {
        Some(_) => None,
        None => first_network(project, service, slot),
    };
    let network_mode = network_mode(project, service, first.as_ref().map(|(name, _)| name));
    let host_config = host_config(project, service, ports.bindings, network_mode);
    let networking_config = first.map(|(name, endpoint)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name, endpoint)])),
    });

    ContainerCreateBody {
        image: Some(service.reference()),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: (!env.is_empty()).then_some(env),
        labels: Some(labels(project, service, slot)),
        exposed_ports: (!ports.exposed.is_empty()).then_some(ports.exposed),
        healthcheck: healthcheck(service),
        user: service.user.clone(),
        working_dir: service.working_dir.clone(),
        hostname: service.hostname.clone(),
        domainname: o.domainname.clone(),
        tty: o.tty.then_some(true),
        open_stdin: o.stdin_open.then_some(true),
        stop_signal: service.stop_signal.clone(),
        stop_timeout: Some(service.stop_grace_period.as_secs() as i64),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// `KEY=value`, or `KEY` alone for a variable set without a value.
fn environment(service: &Service) -> Vec<String> {
    service
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect()
}

/// The exposed ports (`ports` first, then `expose`, each once) and the port bindings.
struct Ports {
    exposed: Vec<String>,
    bindings: PortMap,
}

impl Ports {
    fn of(service: &Service) -> Ports {
        let mut exposed: Vec<String> = Vec::new();
        let mut bindings: PortMap = HashMap::new();
        for p in &service.ports {
            let key = format!("{}/{}", p.target, protocol(p.protocol));
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            let binding = PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: p.published.map(|h| h.to_string()),
            };
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
        for e in &service.options.expose {
            if !exposed.contains(e) {
                exposed.push(e.clone());
            }
        }
        Ports { exposed, bindings }
    }
}

/// The service's volumes, secrets and configs as `Binds` strings and mounts.
///
/// Binds that may create their host path use the `Binds` form, as compose does (the
/// mount form has no such option); so do binds that need SELinux labels (which the
/// mount form cannot carry). A propagation mode alone asks for the mount form, as in
/// compose: such a missing path is an engine error. Everything else is a mount.
fn storage(service: &Service) -> (Vec<String>, Vec<EngineMount>) {
    let mut binds: Vec<String> = Vec::new();
    let mut mounts: Vec<EngineMount> = Vec::new();
    for m in &service.volumes {
        if m.kind == MountKind::Bind
            && (m.selinux.is_some() || (m.create_host_path && m.propagation.is_none()))
        {
            binds.push(bind_string(m));
        } else {
            mounts.push(engine_mount(m));
        }
    }
    for f in service
        .options
        .secrets
        .iter()
        .chain(service.options.configs.iter())
    {
        // External ones (Swarm mode only) have no file; the loader refuses them in plain mode.
        let Some(file) = &f.file else { continue };
        mounts.push(EngineMount {
            target: Some(f.target.clone()),
            source: Some(file.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    (binds, mounts)
}

fn healthcheck(service: &Service) -> Option<HealthConfig> {
    service.healthcheck.as_ref().map(|h| HealthConfig {
        test: (!h.test.is_empty()).then(|| h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(nanos),
        start_interval: h.start_interval.map(nanos),
    })
}

/// `network_mode` as the engine takes it (`service:NAME` names that service's
/// container), or else the first network, the one set at create time.
fn network_mode(project: &Project, service: &Service, first: Option<&String>) -> Option<String> {
    match service.options.network_mode.as_deref() {
        Some(mode) => Some(match mode.strip_prefix("service:") {
            Some(name) => format!("container:{}", service_container(project, name)),
            None => mode.to_string(),
        }),
        None => first.cloned(),
    }
}

/// `volumes_from` as the engine takes it: `[service:]NAME` names that service's
/// container, `container:NAME` the container itself; the `ro`/`rw` mode is kept.
fn volumes_from(project: &Project, service: &Service) -> Vec<String> {
    service
        .options
        .volumes_from
        .iter()
        .map(|v| {
            let (kind, rest) = v.split_once(':').unwrap_or(("service", v));
            let (name, mode) = match rest.rsplit_once(':') {
                Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
                _ => (rest, None),
            };
            let target = match kind {
                "service" => service_container(project, name),
                _ => name.to_string(),
            };
            match mode {
                Some(m) => format!("{target}:{m}"),
                None => target,
            }
        })
        .collect()
}

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn some_map(m: &std::collections::BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The host config: ports, storage, networking, process and security settings; the
/// resource limits come from [`resources`].
fn host_config(
    project: &Project,
    service: &Service,
    bindings: PortMap,
    network_mode: Option<String>,
) -> HostConfig {
    let o = &service.options;
    let (binds, mounts) = storage(service);
    let volumes_from = volumes_from(project, service);
    let links = links(project, service);
    HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode,
        cap_add: some_vec(&o.cap_add),
        cap_drop: some_vec(&o.cap_drop),
        privileged: o.privileged.then_some(true),
        readonly_rootfs: o.read_only.then_some(true),
        init: o.init,
        security_opt: some_vec(&o.security_opt),
        sysctls: some_map(&o.sysctls),
        storage_opt: some_map(&o.storage_opt),
        devices: (!o.devices.is_empty()).then(|| {
            o.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.source.clone()),
                    path_in_container: Some(d.target.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        dns: some_vec(&o.dns),
        dns_search: some_vec(&o.dns_search),
        dns_options: some_vec(&o.dns_opt),
        extra_hosts: some_vec(&o.extra_hosts),
        ipc_mode: o.ipc.clone(),
        pid_mode: o.pid.clone(),
        uts_mode: o.uts.clone(),
        userns_mode: o.userns_mode.clone(),
        cgroupns_mode: o
            .cgroup
            .as_deref()
            .and_then(|c| serde_json::from_value(serde_json::Value::from(c)).ok()),
        cgroup_parent: o.cgroup_parent.clone(),
        log_config: o.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| {
                l.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }),
        runtime: o.runtime.clone(),
        group_add: some_vec(&o.group_add),
        volumes_from: (!volumes_from.is_empty()).then_some(volumes_from),
        links: (!links.is_empty()).then_some(links),
        // drover restarts containers itself; the engine must not (said explicitly, so
        // `docker inspect` shows `no` on every engine version).
        restart_policy: Some(EngineRestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..resources(service)
    }
}

/// The host config's resource limits: memory, CPU, pids, shared memory, ulimits.
fn resources(service: &Service) -> HostConfig {
    let o = &service.options;
    HostConfig {
        shm_size: o.shm_size,
        pids_limit: o.pids_limit,
        memory: o.mem_limit,
        memory_reservation: o.mem_reservation,
        memory_swap: o.memswap_limit,
        memory_swappiness: o.mem_swappiness,
        oom_kill_disable: o.oom_kill_disable,
        oom_score_adj: o.oom_score_adj,
        nano_cpus: o.cpus.map(|c| (c * 1e9).round() as i64),
        cpu_shares: o.cpu_shares,
        cpu_period: o.cpu_period,
        cpu_quota: o.cpu_quota,
        cpuset_cpus: o.cpuset.clone(),
        ulimits: (!o.ulimits.is_empty()).then(|| {
            o.ulimits
                .iter()
                .map(|(name, l)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(l.soft),
                    hard: Some(l.hard),
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// The networks after the first, with their endpoint settings, to connect after the
/// container is created (none with `network_mode`).
pub fn extra_networks(
    project: &Project,
    service: &Service,
    slot: u32,
) -> Vec<(String, EndpointSettings)> {
    if service.options.network_mode.is_some() {
        return Vec::new();
    }
    network_order(service)
        .into_iter()
        .skip(1)
        .map(|key| endpoint(project, service, slot, key))
        .collect()
}

fn first_network(
    project: &Project,
    service: &Service,
    slot: u32,
) -> Option<(String, EndpointSettings)> {
    network_order(service)
        .into_iter()
        .next()
        .map(|key| endpoint(project, service, slot, key))
}

/// The service's networks, highest `priority` first, then by key (as compose orders them).
fn network_order(service: &Service) -> Vec<&str> {
    let mut keys: Vec<(&str, i64)> = service
        .networks
        .iter()
        .map(|(k, n)| (k.as_str(), n.priority))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.into_iter().map(|(k, _)| k).collect()
}

/// `links` and `external_links` as the engine takes them: `CONTAINER:ALIAS`. A link to a
/// service is also reachable as `SERVICE-1` and `PROJECT-SERVICE-1`, as compose links it.
fn links(project: &Project, service: &Service) -> Vec<String> {
    let o = &service.options;
    let mut out: Vec<String> = Vec::new();
    for l in &o.links {
        let (svc, alias) = l.split_once(':').unwrap_or((l, l));
        let c = service_container(project, svc);
        for alias in [
            alias.to_string(),
            format!("{svc}-1"),
            format!("{}-{svc}-1", project.name),
        ] {
            let link = format!("{c}:{alias}");
            if !out.contains(&link) {
                out.push(link);
            }
        }
    }
    for l in &o.external_links {
        out.push(match l.split_once(':') {
            Some(_) => l.clone(),
            None => format!("{l}:{l}"),
        });
    }
    out
}

/// Take over the anonymous volumes of the slot's previous container, as compose does when
/// it recreates one: each is mounted by name at the same path, so the data in an image's
/// `VOLUME` (or in a service volume with no source) outlives a definition change. A path
/// the new definition fills with something else (a named volume, a bind, a tmpfs, a secret
/// or config file) keeps the new definition's mount; an anonymous volume of the new
/// definition at that path gives way to the old one. Returns the volumes taken over.
pub fn inherit_volumes(body: &mut ContainerCreateBody, old: &[VolumeMount]) -> Vec<VolumeMount> {
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    let mut claimed: Vec<String> = mounts
        .iter()
        .filter(|m| !(m.typ == Some(MountType::VOLUME) && m.source.is_none()))
        .filter_map(|m| m.target.as_deref().map(clean))
        .collect();
    claimed.extend(
        host.binds
            .iter()
            .flatten()
            .filter_map(|b| b.split(':').nth(1).map(clean)),
    );
    claimed.extend(host.tmpfs.iter().flat_map(|t| t.keys().map(|k| clean(k))));
    let mut taken = Vec::new();
    for v in old {
        let target = clean(&v.destination);
        if claimed.contains(&target)
            || taken
                .iter()
                .any(|t: &VolumeMount| clean(&t.destination) == target)
        {
            continue;
        }
        let read_only = mounts
            .iter()
            .find(|m| m.target.as_deref().map(clean).as_deref() == Some(target.as_str()))
            .and_then(|m| m.read_only);
        mounts.retain(|m| m.target.as_deref().map(clean).as_deref() != Some(target.as_str()));
        mounts.push(EngineMount {
            typ: Some(MountType::VOLUME),
            source: Some(v.name.clone()),
            target: Some(v.destination.clone()),
            read_only,
            ..Default::default()
        });
        taken.push(v.clone());
    }
    if mounts.is_empty() {
        host.mounts = None;
    }
    taken
}

/// `z`/`Z`, propagation and `ro` as the `Binds` form writes them.
fn bind_string(m: &Mount) -> String {
    let mut opts: Vec<&str> = Vec::new();
    if m.read_only {
        opts.push("ro");
    }
    if let Some(z) = &m.selinux {
        opts.push(z);
    }
    if let Some(p) = &m.propagation {
        opts.push(p);
    }
    let src = m.source.as_deref().unwrap_or_default();
    if opts.is_empty() {
        format!("{src}:{}", m.target)
    } else {
        format!("{src}:{}:{}", m.target, opts.join(","))
    }
}

fn engine_mount(m: &Mount) -> EngineMount {
    let mut out = EngineMount {
        target: Some(m.target.clone()),
        source: m.source.clone(),
        typ: Some(match m.kind {
            MountKind::Bind => MountType::BIND,
            MountKind::Volume => MountType::VOLUME,
            MountKind::Tmpfs => MountType::TMPFS,
        }),
        read_only: m.read_only.then_some(true),
        ..Default::default()
    };
    match m.kind {
        MountKind::Bind if m.propagation.is_some() => {
            out.bind_options = Some(MountBindOptions {
                propagation: m
                    .propagation
                    .as_deref()
                    .and_then(|p| serde_json::from_value(serde_json::Value::from(p)).ok()),
                ..Default::default()
            })
        }
        MountKind::Volume if m.nocopy => {
            out.volume_options = Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            })
        }
        MountKind::Tmpfs if m.tmpfs_size.is_some() || m.tmpfs_mode.is_some() => {
            out.tmpfs_options = Some(MountTmpfsOptions {
                size_bytes: m.tmpfs_size,
                mode: m.tmpfs_mode.map(i64::from),
                ..Default::default()
            })
        }
        _ => {}
    }
    out
}

/// Engine network name and endpoint for one of the service's networks. The service name
/// and the container's name are always aliases, as compose makes them.
fn endpoint(
    project: &Project,
    service: &Service,
    slot: u32,
    key: &str,
) -> (String, EndpointSettings) {
    let engine_name = project
        .networks
        .get(key)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name));
    let mut aliases = vec![service.name.clone()];
    let own = container_name(project, service, slot);
    if !aliases.contains(&own) {
        aliases.push(own);
    }
    if let Some(net) = service.networks.get(key) {
        for a in &net.aliases {
            if !aliases.contains(a) {
                aliases.push(a.clone());
            }
        }
    }
    let net = service.networks.get(key);
    let ipam = net
        .filter(|n| n.ipv4_address.is_some() || n.ipv6_address.is_some())
        .map(|n| EndpointIpamConfig {
            ipv4_address: n.ipv4_address.clone(),
            ipv6_address: n.ipv6_address.clone(),
            ..Default::default()
        });
    let links = links(project, service);
    let settings = EndpointSettings {
        aliases: Some(aliases),
        ipam_config: ipam,
        links: (!links.is_empty()).then_some(links),
        // Engines before API 1.44 read the MAC address from the container config, which
        // this request type no longer has; from 1.44 it belongs to the endpoint.
        mac_address: service
            .options
            .mac_address
            .clone()
            .filter(|_| network_order(service).first() == Some(&key)),
        ..Default::default()
    };
    (engine_name, settings)
}

/// One node's ambassador for one project network (see `crate::mesh`): what shapes its
/// container. Its routes are not part of it: they are pushed to the running container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ambassador {
    /// Which of the network's ambassadors: the network's key for the first, then
    /// `{key}-2`, `{key}-3`… for services whose ports the first already forwards.
    pub id: String,
    /// The network's key in the file.
    pub network: String,
    /// The network's engine name.
    pub network_name: String,
    /// The services it forwards for.
    pub services: Vec<String>,
    /// The names it answers to: the services' names and their aliases on the network.
    pub aliases: Vec<String>,
    pub image: String,
}

/// The uid and gid ambassadors run as (drover's image's).
const AMBASSADOR_USER: &str = "65532:65532";

impl Ambassador {
    /// Ambassador `id` of network `key` (engine name `name`), forwarding for no service yet.
    pub fn new(id: String, key: &str, name: &str, image: &str) -> Ambassador {
        Ambassador {
            id,
            network: key.to_string(),
            network_name: name.to_string(),
            services: Vec::new(),
            aliases: Vec::new(),
            image: image.to_string(),
        }
    }

    /// `{project}-ambassador-{id}`: one per node, so the same on every node.
    pub fn container_name(&self, project: &Project) -> String {
        format!("{}-ambassador-{}", project.name, self.id)
    }

    /// sha256 (hex) of the definition, in the `drover.config-hash` label.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The create request of an ambassador: drover's image running `drover ambassador` on the
/// network with the aliases, as drover runs itself: not root, no capabilities, no new
/// privileges, a read-only filesystem; restarted by drover, never by the engine.
pub fn ambassador_body(project: &Project, a: &Ambassador) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), project.name.clone()),
        (LABEL_AMBASSADOR.to_string(), a.id.clone()),
        (LABEL_CONFIG_HASH.to_string(), a.hash()),
    ]);
    let endpoint = EndpointSettings {
        aliases: Some(a.aliases.clone()),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(a.image.clone()),
        cmd: Some(crate::mesh::serve_command()),
        user: Some(AMBASSADOR_USER.to_string()),
        labels: Some(labels),
        // The image's healthcheck asks drover's HTTP server, which an ambassador lacks.
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            pids_limit: Some(256),
            network_mode: Some(a.network_name.clone()),
            restart_policy: Some(EngineRestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(a.network_name.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

/// Publish the service's ports on `address` (engine-assigned host ports) for the other
/// nodes' ambassadors, each unless the file already publishes it where `address` reaches,
/// and record `address` in the `drover.mesh-address` label.
pub fn publish_for_mesh(body: &mut ContainerCreateBody, service: &Service, address: IpAddr) {
    if !service.options.mesh {
        return;
    }
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_MESH_ADDRESS.to_string(), address.to_string());
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    let bindings = host.port_bindings.get_or_insert_with(PortMap::new);
    let exposed = body.exposed_ports.get_or_insert_with(Vec::new);
    for (port, proto) in service.mesh_ports() {
        let key = format!("{port}/{}", protocol(proto));
        let list = bindings
            .entry(key.clone())
            .or_insert(None)
            .get_or_insert_with(Vec::new);
        let reached = list.iter().any(|b| {
            b.host_ip
                .as_deref()
                .is_none_or(|ip| ip.is_empty() || ip == "0.0.0.0" || ip == address.to_string())
        });
        if !reached {
            list.push(PortBinding {
                host_ip: Some(address.to_string()),
                host_port: Some(String::new()),
            });
        }
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The engine's request for a project network: its driver, `driver_opts`, `ipam`,
/// `internal`, `attachable` and `enable_ipv6`, as compose sends them.
pub fn network_request(
    net: &crate::config::Network,
    name: &str,
    labels: HashMap<String, String>,
) -> NetworkCreateRequest {
    let o = &net.options;
    let ipam = o.ipam.as_ref().map(|i| Ipam {
        driver: i.driver.clone(),
        config: (!i.config.is_empty()).then(|| {
            i.config
                .iter()
                .map(|c| IpamConfig {
                    subnet: c.subnet.clone(),
                    ip_range: c.ip_range.clone(),
                    gateway: c.gateway.clone(),
                    auxiliary_addresses: (!c.aux_addresses.is_empty())
                        .then(|| string_map(&c.aux_addresses)),
                })
                .collect()
        }),
        options: (!i.options.is_empty()).then(|| string_map(&i.options)),
    });
    NetworkCreateRequest {
        name: name.to_string(),
        driver: net.driver.clone(),
        internal: o.internal.then_some(true),
        attachable: o.attachable.then_some(true),
        enable_ipv6: o.enable_ipv6,
        ipam,
        options: (!o.driver_opts.is_empty()).then(|| string_map(&o.driver_opts)),
        labels: Some(labels),
        ..Default::default()
    }
}

/// A map of strings, as the engine's requests take them.
pub fn string_map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    fn network(name: &str) -> Network {
        Network {
            name: name.to_string(),
            driver: None,
            external: false,
            labels: BTreeMap::new(),
            options: Default::default(),
        }
    }

    /// A mount with no options besides `read_only`.
    fn plain_mount(kind: MountKind, source: Option<&str>, target: &str, read_only: bool) -> Mount {
        Mount {
            kind,
            source: source.map(str::to_string),
            target: target.into(),
            read_only,
            create_host_path: false,
            propagation: None,
            selinux: None,
            nocopy: false,
            tmpfs_size: None,
            tmpfs_mode: None,
        }
    }

    fn fixture() -> (Project, Service) {
        let service = Service {
            name: "web".into(),
            replicas: 2,
            image: "nginx:1.27".into(),
            command: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            entrypoint: None,
            environment: BTreeMap::from([
                ("MODE".to_string(), Some("prod".to_string())),
                ("PASSTHROUGH".to_string(), None),
            ]),
            labels: BTreeMap::from([
                ("team".to_string(), "edge".to_string()),
                (LABEL_PROJECT.to_string(), "spoofed".to_string()),
            ]),
            ports: vec![
                Port {
                    target: 80,
                    published: Some(8080),
                    host_ip: Some("127.0.0.1".into()),
                    protocol: Protocol::Tcp,
                },
                Port {
                    target: 53,
                    published: None,
                    host_ip: None,
                    protocol: Protocol::Udp,
                },
            ],
            volumes: vec![
                plain_mount(
                    MountKind::Bind,
                    Some("/srv/html"),
                    "/usr/share/nginx/html",
                    true,
                ),
                plain_mount(MountKind::Volume, None, "/cache", false),
                plain_mount(MountKind::Tmpfs, None, "/run", false),
            ],
            networks: BTreeMap::from([
                ("back".to_string(), ServiceNetwork::default()),
                (
                    "front".to_string(),
                    ServiceNetwork {
                        aliases: vec!["www".into()],
                        ..Default::default()
                    },
                ),
            ]),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "curl -f localhost".into()],
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_millis(1500)),
                retries: Some(3),
                start_period: None,
                start_interval: None,
            }),
            restart: RestartPolicy::default(),
            stop_signal: Some("SIGQUIT".into()),
            stop_grace_period: Duration::from_secs(45),
            user: Some("101".into()),
            working_dir: Some("/srv".into()),
            hostname: None,
            depends_on: BTreeMap::new(),
            container_name: None,
            mode: Default::default(),
            placement: Default::default(),
            update: Default::default(),
            rollback: Default::default(),
            unhealthy: Default::default(),
            backoff: Default::default(),
            config_hash: "abc123".into(),
            digest: None,
            options: ServiceOptions::default(),
        };
        let project = Project {
            name: "shop".into(),
            working_dir: PathBuf::from("/srv/shop"),
            services: BTreeMap::from([("web".to_string(), service.clone())]),
            networks: BTreeMap::from([
                ("back".to_string(), network("backend-net")),
                ("front".to_string(), network("shop_front")),
            ]),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            mesh: None,
        };
        (project, service)
    }

    #[test]
    fn names_are_deterministic() {
        let (project, mut service) = fixture();
        assert_eq!(container_name(&project, &service, 2), "shop-web-2");
        service.container_name = Some("fixed".into());
        assert_eq!(container_name(&project, &service, 1), "fixed");
    }

    #[test]
    fn labels_carry_ownership_and_compose_view() {
        let (project, service) = fixture();
        let l = labels(&project, &service, 3);
        assert_eq!(l["team"], "edge");
        assert_eq!(
            l[LABEL_PROJECT], "shop",
            "a user label cannot fake ownership"
        );
        assert_eq!(l[LABEL_SERVICE], "web");
        assert_eq!(l[LABEL_SLOT], "3");
        assert_eq!(l[LABEL_CONFIG_HASH], "abc123");
        assert_eq!(l["com.docker.compose.project"], "shop");
        assert_eq!(l["com.docker.compose.service"], "web");
        assert_eq!(l["com.docker.compose.container-number"], "3");
        assert_eq!(l["com.docker.compose.oneoff"], "False");
        assert_eq!(l["com.docker.compose.config-hash"], "abc123");
        assert!(!l.contains_key(crate::labels::LABEL_NODE));
    }

    #[test]
    fn create_body_maps_the_service() {
        let (project, service) = fixture();
        let body = create_body(&project, &service, 1);
        assert_eq!(body.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(body.cmd.as_ref().unwrap()[2], "daemon off;");
        assert_eq!(body.entrypoint, None);
        assert_eq!(
            body.env,
            Some(vec!["MODE=prod".to_string(), "PASSTHROUGH".to_string()])
        );
        assert_eq!(body.labels.as_ref().unwrap()[LABEL_SLOT], "1");
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".to_string(), "53/udp".to_string()])
        );
        assert_eq!(body.user.as_deref(), Some("101"));
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        assert_eq!(body.hostname, None);
        assert_eq!(body.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(body.stop_timeout, Some(45));

        let hc = body.healthcheck.as_ref().unwrap();
        assert_eq!(
            hc.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "curl -f localhost".to_string()
            ])
        );
        assert_eq!(hc.interval, Some(30_000_000_000));
        assert_eq!(hc.timeout, Some(1_500_000_000));
        assert_eq!(hc.retries, Some(3));
        assert_eq!(hc.start_period, None);

        let host = body.host_config.as_ref().unwrap();
        assert_eq!(
            host.restart_policy.as_ref().and_then(|p| p.name),
            Some(RestartPolicyNameEnum::NO),
            "drover owns restarts"
        );
        let ports = host.port_bindings.as_ref().unwrap();
        assert_eq!(
            ports["80/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("8080".into()),
            }])
        );
        assert_eq!(
            ports["53/udp"],
            Some(vec![PortBinding {
                host_ip: None,
                host_port: None,
            }])
        );
        let mounts = host.mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/html"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].source, None, "anonymous volume");
        assert_eq!(mounts[2].typ, Some(MountType::TMPFS));

        // The first network by key is attached at create time.
        assert_eq!(host.network_mode.as_deref(), Some("backend-net"));
        let endpoints = body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(
            endpoints["backend-net"].aliases,
            Some(vec!["web".to_string(), "shop-web-1".to_string()]),
            "the service and the container name, as compose"
        );
    }

    #[test]
    fn binds_take_the_form_compose_gives_them() {
        let (project, mut service) = fixture();
        let bind = |target: &str, create: bool, propagation: Option<&str>, z: Option<&str>| Mount {
            kind: MountKind::Bind,
            source: Some("/srv/x".into()),
            target: target.into(),
            read_only: false,
            create_host_path: create,
            propagation: propagation.map(String::from),
            selinux: z.map(String::from),
            nocopy: false,
            tmpfs_size: None,
            tmpfs_mode: None,
        };
        service.volumes = vec![
            // A short bind, or a long one without a `bind` section: may create its path.
            bind("/a", true, None, None),
            // `bind: {create_host_path: false}` or any `bind` section without it.
            bind("/b", false, None, None),
            // A propagation mode asks for the mount form, as compose sends it.
            bind("/c", true, Some("rslave"), None),
            // SELinux labels exist in the `Binds` form only.
            bind("/d", false, None, Some("z")),
        ];
        let host = create_body(&project, &service, 1).host_config.unwrap();
        assert_eq!(
            host.binds,
            Some(vec!["/srv/x:/a".to_string(), "/srv/x:/d:z".to_string()])
        );
        let mounts: Vec<&str> = host
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| m.target.as_deref())
            .collect();
        assert_eq!(mounts, ["/b", "/c"]);
    }

    #[test]
    fn mesh_ports_are_published_on_the_node_address_only_and_only_in_a_mesh() {
        let (project, mut service) = fixture();
        let address: IpAddr = "10.231.1.2".parse().unwrap();
        let before = create_body(&project, &service, 1);
        let mut body = before.clone();
        publish_for_mesh(&mut body, &service, address);
        assert_eq!(body, before, "not in a mesh: nothing more is published");
        service.options.mesh = true;
        service.options.expose = vec!["9000/tcp".into()];
        publish_for_mesh(&mut body, &service, address);
        let ports = body.host_config.unwrap().port_bindings.unwrap();
        // The file publishes 53/udp on every address already: the node address reaches it.
        assert_eq!(ports["53/udp"].as_ref().unwrap().len(), 1);
        assert!(
            body.exposed_ports
                .unwrap()
                .contains(&"9000/tcp".to_string())
        );
        for key in ["80/tcp", "9000/tcp"] {
            let on_node: Vec<&PortBinding> = ports[key]
                .as_ref()
                .unwrap()
                .iter()
                .filter(|b| b.host_ip.as_deref() == Some("10.231.1.2"))
                .collect();
            assert_eq!(on_node.len(), 1, "{key}: {ports:?}");
            assert_eq!(on_node[0].host_port.as_deref(), Some(""), "engine-assigned");
        }
        assert!(
            ports
                .values()
                .flatten()
                .flatten()
                .all(|b| b.host_ip.as_deref() != Some("0.0.0.0")),
            "never every address: {ports:?}"
        );
    }

    #[test]
    fn an_ambassador_runs_as_drover_does_on_its_network_under_the_service_names() {
        let (project, _) = fixture();
        let mut a = Ambassador::new("default".into(), "default", "demo_default", "drover:latest");
        a.services = vec!["db".into()];
        a.aliases = vec!["db".into(), "database".into()];
        let body = ambassador_body(&project, &a);
        assert_eq!(body.cmd, Some(vec!["ambassador".to_string()]));
        assert_eq!(body.user.as_deref(), Some("65532:65532"));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_AMBASSADOR], "default");
        assert_eq!(labels[LABEL_CONFIG_HASH], a.hash());
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(
            host.port_bindings.is_none(),
            "an ambassador publishes nothing"
        );
        let endpoints = body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap();
        assert_eq!(
            endpoints["demo_default"].aliases,
            Some(vec!["db".to_string(), "database".to_string()])
        );
        let mut other = a.clone();
        other.aliases.pop();
        assert_ne!(other.hash(), a.hash());
        assert_eq!(
            a.container_name(&project),
            format!("{}-ambassador-default", project.name)
        );
    }

    #[test]
    fn other_networks_are_connected_afterwards() {
        let (project, service) = fixture();
        let extra = extra_networks(&project, &service, 2);
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].0, "shop_front");
        assert_eq!(
            extra[0].1.aliases,
            Some(vec![
                "web".to_string(),
                "shop-web-2".to_string(),
                "www".to_string()
            ])
        );
    }

    #[test]
    fn links_name_the_first_container_under_the_aliases_compose_gives_it() {
        let (mut project, mut service) = fixture();
        service.options.links = vec!["db".into(), "db:database".into()];
        service.options.external_links = vec!["legacy".into()];
        project.services.insert(
            "db".into(),
            Service {
                name: "db".into(),
                ..service.clone()
            },
        );
        let body = create_body(&project, &service, 1);
        let want: Vec<String> = [
            "shop-db-1:db",
            "shop-db-1:db-1",
            "shop-db-1:shop-db-1",
            "shop-db-1:database",
            "legacy:legacy",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(body.host_config.unwrap().links, Some(want));
    }

    #[test]
    fn no_networks_means_engine_default() {
        let (project, mut service) = fixture();
        service.networks.clear();
        let body = create_body(&project, &service, 1);
        assert_eq!(body.networking_config, None);
        assert_eq!(body.host_config.unwrap().network_mode, None);
        assert!(extra_networks(&project, &service, 1).is_empty());
    }

    #[test]
    fn a_recreated_container_takes_over_the_anonymous_volumes_not_claimed_anew() {
        let (project, service) = fixture();
        let mut body = create_body(&project, &service, 1);
        let vol = |name: char, at: &str| VolumeMount {
            name: name.to_string().repeat(64),
            destination: at.into(),
        };
        let old = [
            vol('a', "/cache"),                // the service's anonymous volume
            vol('b', "/var/lib/data/"),        // an image VOLUME
            vol('c', "/usr/share/nginx/html"), // now a bind: the bind wins
            vol('d', "/run"),                  // now a tmpfs: the tmpfs wins
        ];
        let taken = inherit_volumes(&mut body, &old);
        assert_eq!(taken, old[..2].to_vec());
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let at = |t: &str| {
            mounts
                .iter()
                .filter(|m| m.target.as_deref() == Some(t))
                .collect::<Vec<_>>()
        };
        assert_eq!(at("/cache").len(), 1, "the anonymous mount gives way");
        assert_eq!(at("/cache")[0].source, Some("a".repeat(64)));
        assert_eq!(at("/var/lib/data/")[0].source, Some("b".repeat(64)));
        assert_eq!(at("/usr/share/nginx/html")[0].typ, Some(MountType::BIND));
        assert_eq!(at("/run")[0].typ, Some(MountType::TMPFS));
        assert_eq!(mounts.len(), 4);
    }
}
