//! The desired state: a validated, normalized Compose project with replica targets.
//!
//! Everything here is plain data. The loader builds it from files and the
//! environment; the planner and the container spec read it. Nothing in this
//! module touches the filesystem or an engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A whole Compose project as drover will run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Normalized project name (lowercase, `[a-z0-9_-]`, starts with a letter or digit).
    pub name: String,
    /// Directory relative paths in the file are resolved against (the first file's directory).
    pub working_dir: PathBuf,
    /// Services by name, with the replica target already resolved from all sources.
    pub services: BTreeMap<String, Service>,
    /// Networks by their key in the file (the engine name is in `Network::name`).
    pub networks: BTreeMap<String, Network>,
    /// Named volumes by their key in the file (the engine name is in `Volume::name`).
    pub volumes: BTreeMap<String, Volume>,
    /// Top-level `secrets` that can be used, by key (Swarm mode creates them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SwarmObject>,
    /// Top-level `configs` that can be used, by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, SwarmObject>,
    /// Several nodes in plain mode: how services reach each other across them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Mesh>,
}

/// Services reaching each other across nodes through ambassadors (see `crate::mesh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mesh {
    /// `x-drover.ambassador.image`: the image the ambassadors run; none: drover's own
    /// (see [`Mesh::image`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Each node's address the other nodes reach it at: the replicas' ports for the
    /// ambassadors are published on it, and only on it. A node without one publishes
    /// nothing, and its replicas are reached only on their own node.
    pub addresses: BTreeMap<String, std::net::IpAddr>,
}

/// The image ambassadors run when the file names none and drover does not run in a
/// container of one of the nodes: drover's image as the README builds it.
pub const AMBASSADOR_IMAGE: &str = "drover:latest";

impl Mesh {
    /// The image ambassadors run: the file's, else the one drover runs from (set by plain
    /// mode when it finds its own container), else [`AMBASSADOR_IMAGE`].
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(AMBASSADOR_IMAGE)
    }
}

/// A top-level secret or config: a file, or (Swarm mode) an existing external one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmObject {
    /// Name in Swarm: `name:`, else `{project}_{key}`; for an external one, `name:` or the key.
    pub name: String,
    /// Absolute host path of the file; `None` for an external one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One service: how each of its containers is created, and how many there are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// Target replica count after `--scale` > scale file > `x-drover` > `deploy.replicas`/`scale` > 1.
    pub replicas: u32,
    pub image: String,
    /// `None` keeps the image's CMD.
    pub command: Option<Vec<String>>,
    /// `None` keeps the image's ENTRYPOINT; `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Final environment (env_file entries overlaid by `environment`), `KEY=VALUE` semantics.
    /// A `None` value means "KEY" given without a value and not set in the environment: it is
    /// passed through unset, as compose does.
    pub environment: BTreeMap<String, Option<String>>,
    /// User labels from the file (drover's own labels are added by the container spec).
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Mount>,
    /// Networks to attach, by key in `Project::networks`, in a stable order.
    pub networks: BTreeMap<String, ServiceNetwork>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: RestartPolicy,
    pub stop_signal: Option<String>,
    /// Compose default: 10 s.
    #[serde(serialize_with = "human")]
    pub stop_grace_period: Duration,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    /// Services this one starts after (only names; conditions are kept for later use).
    pub depends_on: BTreeMap<String, DependsOn>,
    /// `container_name` from the file: such a service cannot have more than one replica.
    pub container_name: Option<String>,
    /// `deploy.mode`: `global` runs one replica on each eligible node (a Swarm global
    /// service in Swarm mode; `replicas` is then 1 and means nothing). Not part of the
    /// config hash.
    #[serde(skip_serializing_if = "is_default")]
    pub mode: DeployMode,
    /// `deploy.placement`: which nodes may run the replicas. Not part of the config hash:
    /// a changed placement moves only the replicas that no longer fit.
    #[serde(skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// `deploy.update_config`: how a changed definition rolls out (Swarm's defaults).
    #[serde(skip_serializing_if = "is_default")]
    pub update: UpdateConfig,
    /// `deploy.rollback_config`: how a failed rollout is rolled back.
    #[serde(skip_serializing_if = "is_default")]
    pub rollback: UpdateConfig,
    /// What to do with a replica the engine reports unhealthy (service-level
    /// `x-drover.unhealthy`, else the top-level one, else restart).
    #[serde(skip_serializing_if = "is_default")]
    pub unhealthy: UnhealthyAction,
    /// Per-service crash backoff (service-level `x-drover.backoff`), over the global one.
    #[serde(skip_serializing_if = "is_default")]
    pub backoff: BackoffSettings,
    /// Hash of everything that shapes a container (not the replica count).
    /// A container whose `drover.config-hash` label differs is recreated.
    pub config_hash: String,
    /// The image digest (`sha256:…`) the service's containers must run, when drover pinned
    /// one (a followed tag's digest, or the local image's after a reload). Never read from
    /// the files: the runtime sets it; not part of the config hash. A container whose
    /// `drover.image-digest` label differs is rolled like a changed definition.
    #[serde(skip)]
    pub digest: Option<String>,
    /// Every other Compose key that reaches the container or the engine calls. Printed
    /// at the service level (as compose does); keys left at their default are not printed
    /// and do not enter the config hash.
    #[serde(flatten)]
    pub options: ServiceOptions,
}

impl Service {
    /// What a container of this service must match: the config hash, and the pinned image
    /// digest when there is one. Rollouts and rollbacks are remembered by revision.
    pub fn revision(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.config_hash, d),
            None => self.config_hash.clone(),
        }
    }

    /// The image reference containers are created from: the image as written, pinned to
    /// the digest when there is one (`name:tag@sha256:…`, as `docker stack deploy` writes it).
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => pinned(&self.image, d),
            None => self.image.clone(),
        }
    }

    /// The TCP and UDP ports the service's containers listen on (`ports` targets, then
    /// `expose`), each once: what other nodes reach it on. None with a `network_mode`.
    pub fn mesh_ports(&self) -> Vec<(u16, Protocol)> {
        let mut out: Vec<(u16, Protocol)> = Vec::new();
        if self.options.network_mode.is_some() {
            return out;
        }
        let exposed = self.options.expose.iter().filter_map(|e| {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let proto = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return None,
            };
            Some((port.parse().ok()?, proto))
        });
        for p in self
            .ports
            .iter()
            .map(|p| (p.target, p.protocol))
            .chain(exposed)
        {
            if p.1 != Protocol::Sctp && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// `image` pinned to `digest`: any digest already in the reference is replaced.
pub fn pinned(image: &str, digest: &str) -> String {
    let name = image.split_once('@').map_or(image, |(n, _)| n);
    format!("{name}@{digest}")
}

/// Service keys beyond the core ones, with Compose's names. Everything is optional:
/// `ServiceOptions::default()` is a service that sets none of them.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ServiceOptions {
    /// When the executor pulls the image (see [`PullPolicy`]).
    #[serde(skip_serializing_if = "PullPolicy::is_default")]
    pub pull_policy: PullPolicy,
    /// `platform`: passed as the `platform` parameter of the create (and pull) request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `network_mode` as written: `host`, `none`, `bridge`, `container:NAME` or
    /// `service:NAME` (the service's first container; see `spec`). When set, the
    /// service has no `networks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `expose`: container ports opened without publishing, engine form `80/tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// The project spans several nodes in plain mode and the service has ports: each
    /// replica publishes them on its node's address (engine-assigned host ports) for the
    /// other nodes' ambassadors (see [`Project::mesh`]).
    #[serde(skip_serializing_if = "is_false")]
    pub mesh: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// `HOST:IP` (the engine's form), in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// `pids_limit`, or `deploy.resources.limits.pids` (which wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// Bytes: `mem_limit`, or `deploy.resources.limits.memory` (which wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<i64>,
    /// Bytes: `mem_reservation`, or `deploy.resources.reservations.memory` (which wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<i64>,
    /// CPUs: `deploy.resources.reservations.cpus` (Swarm mode only; not in the config hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_reservation: Option<f64>,
    /// Bytes, or -1 for unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// CPUs: `cpus`, or `deploy.resources.limits.cpus` (which wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    /// Secrets: bind-mounted read-only from their files in plain mode, Swarm secrets in
    /// Swarm mode (default target `/run/secrets/<name>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    /// Configs, the same way (default target `/<name>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    /// `service:NAME[:ro|rw]` or `container:NAME[:ro|rw]` (a bare name is a service).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// `SERVICE:ALIAS` (the alias defaults to the service name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `CONTAINER:ALIAS` links to containers outside the project.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    /// The profiles the service belongs to (only active services are in the project).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

/// `pull_policy`. The default, `missing`, pulls only when the engine lacks the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull before every create, even when the engine has the image.
    Always,
    /// Pull when the engine does not have the image (also `if_not_present`).
    #[default]
    Missing,
    /// Never pull: a missing image is an error.
    Never,
    /// The service has `build:` (or `pull_policy: build`): drover does not build, so the
    /// image must already be on the engine; never pull, and say so when it is missing.
    Build,
    /// `daily`, `weekly`, `every_<duration>`, or `refresh` with `pull_refresh_after`
    /// (compose-go's refresh policy with its window; `x-drover.follow_images` for services
    /// that set no policy): pull when missing, and check the registry for the tag's digest
    /// this often, for as long as drover runs. A new digest is rolled out through the
    /// service's `update_config` (see `plan::follow`).
    Refresh(Duration),
}

impl PullPolicy {
    pub fn is_default(&self) -> bool {
        *self == PullPolicy::Missing
    }

    /// How often the registry is asked for the tag's digest, when the service follows it.
    pub fn follow_every(&self) -> Option<Duration> {
        match self {
            PullPolicy::Refresh(every) => Some(*every),
            _ => None,
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullPolicy::Always => f.write_str("always"),
            PullPolicy::Missing => f.write_str("missing"),
            PullPolicy::Never => f.write_str("never"),
            PullPolicy::Build => f.write_str("build"),
            PullPolicy::Refresh(d) if *d == Duration::from_secs(86_400) => f.write_str("daily"),
            PullPolicy::Refresh(d) if *d == Duration::from_secs(7 * 86_400) => {
                f.write_str("weekly")
            }
            PullPolicy::Refresh(d) => {
                let human = humantime::format_duration(*d).to_string().replace(' ', "");
                write!(f, "every_{human}")
            }
        }
    }
}

impl Serialize for PullPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `devices`: a host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub source: String,
    pub target: String,
    /// cgroup permissions, default `rwm`.
    pub permissions: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Logging {
    /// `None`: the engine's default driver (with these options).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A service's use of a secret or config: bind-mounted read-only from its file as compose
/// does on one engine, or referenced as a Swarm secret/config in Swarm mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMount {
    /// The secret's or config's key in the top-level `secrets`/`configs`.
    pub source: String,
    /// Absolute host path of the file; `None` for an external one (Swarm mode only).
    pub file: Option<String>,
    /// Absolute path in the container.
    pub target: String,
    /// File owner and mode in the task (Swarm mode; a bind mount keeps the file's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `deploy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    #[default]
    Replicated,
    /// One replica on each eligible node (one task per eligible Swarm node).
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// One published or exposed container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub target: u16,
    /// `None`: not published to the host (or published to an ephemeral port when `publish` is true).
    pub published: Option<u16>,
    pub host_ip: Option<String>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Bind: absolute host path. Volume: engine volume name (already project-prefixed for
    /// project volumes), or `None` for an anonymous volume. Tmpfs: `None`.
    pub source: Option<String>,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    /// Bind: create a missing host path (short syntax always; long syntax with
    /// `bind.create_host_path`). Otherwise a missing host path is an engine error.
    #[serde(skip_serializing_if = "is_false")]
    pub create_host_path: bool,
    /// Bind: `bind.propagation` (`rprivate`, `shared`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// Bind: SELinux relabel, `z` (shared) or `Z` (private).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// Volume: `volume.nocopy` / `:nocopy`.
    #[serde(skip_serializing_if = "is_false")]
    pub nocopy: bool,
    /// Tmpfs: size in bytes (`tmpfs.size`, or `size=` in the `tmpfs` key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<i64>,
    /// Tmpfs: file mode (`tmpfs.mode`, or `mode=` in the `tmpfs` key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    /// Static addresses (the network needs a subnet of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// Higher first when choosing the network set at create time (then by key).
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i64,
}

fn is_zero(i: &i64) -> bool {
    *i == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// Engine name: `{project}_{key}` unless `name:` or `external` says otherwise.
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    /// `driver_opts`, `ipam`, `internal`, `attachable`, `enable_ipv6`.
    #[serde(flatten)]
    pub options: super::networks::NetworkOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// Engine name: `{project}_{key}` unless `name:` or `external` says otherwise.
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthcheck {
    /// Engine form: `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    #[serde(serialize_with = "human_opt")]
    pub interval: Option<Duration>,
    #[serde(serialize_with = "human_opt")]
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    #[serde(serialize_with = "human_opt")]
    pub start_period: Option<Duration>,
    /// Engine API 1.44+; older engines ignore it.
    #[serde(serialize_with = "human_opt", skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
}

/// When an exited container is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// `restart: "no"` / `condition: none`: an exited container stays exited.
    Never,
    /// `restart: on-failure` / `condition: on-failure`: only a non-zero exit is restarted.
    OnFailure,
    /// `always`, `unless-stopped`, `condition: any`, and the default.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Give up after this many restarts of one slot (`on-failure:N`, `max_attempts`).
    pub max_attempts: Option<u32>,
    /// `deploy.restart_policy.delay`: replaces the backoff's first step when set.
    #[serde(serialize_with = "human_opt")]
    pub delay: Option<Duration>,
    /// `deploy.restart_policy.window`: only restarts within this long count toward
    /// `max_attempts` (a slot that stayed up longer starts counting afresh).
    #[serde(serialize_with = "human_opt", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            window: None,
            condition: RestartCondition::Always,
            max_attempts: None,
            delay: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DependsOn {
    pub condition: DependsCondition,
    pub required: bool,
}

impl Project {
    /// Service names in start order: every service after the services it depends on,
    /// ties broken by name. The loader rejects cycles, so this always covers every service.
    pub fn start_order(&self) -> Vec<&str> {
        let mut done: Vec<&str> = Vec::with_capacity(self.services.len());
        while done.len() < self.services.len() {
            let before = done.len();
            for (name, svc) in &self.services {
                if done.contains(&name.as_str()) {
                    continue;
                }
                let ready = svc
                    .depends_on
                    .keys()
                    .all(|d| done.contains(&d.as_str()) || !self.services.contains_key(d));
                if ready {
                    done.push(name);
                }
            }
            if done.len() == before {
                // A cycle slipped past validation: append the rest by name rather than loop.
                for name in self.services.keys() {
                    if !done.contains(&name.as_str()) {
                        done.push(name);
                    }
                }
            }
        }
        done
    }
}

/// Controller settings from the top-level `x-drover` extension of the Compose file.
/// `None` everywhere means "use drover's defaults".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    /// How often the full list of containers is re-read from every engine.
    #[serde(serialize_with = "human_opt")]
    pub resync_interval: Option<Duration>,
    /// How long an engine event stream may stay silent before it is treated as dead.
    #[serde(serialize_with = "human_opt")]
    pub watchdog: Option<Duration>,
    pub backoff: BackoffSettings,
    /// The engines to spread the project over; empty: the Docker environment's one engine.
    pub nodes: Vec<NodeConfig>,
    /// Move replicas towards an even spread when a node joins or returns.
    pub rebalance: bool,
    /// The default for services without their own `x-drover.unhealthy`.
    pub unhealthy: Option<UnhealthyAction>,
    /// `x-drover.mode`: schedule containers ourselves, drive Swarm services, or pick.
    pub mode: Option<Mode>,
    /// `x-drover.follow_images`: services that set no `pull_policy` (or `missing`) check
    /// the registry for their tag's digest this often and follow it.
    #[serde(serialize_with = "human_opt")]
    pub follow_images: Option<Duration>,
    /// `x-drover.notify`: webhooks drover posts events to.
    pub notify: Vec<Webhook>,
    /// `x-drover.ambassador.image`: what the ambassadors run (several nodes, plain mode).
    pub ambassador_image: Option<String>,
    /// `x-drover.autoscale`: services whose replica target follows triggers, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub autoscale: BTreeMap<String, Autoscale>,
}

/// One webhook of `x-drover.notify`. Its URL is read from `url` when drover starts, and
/// is never logged or printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// How logs and metrics name it: `name`, or its index in the list.
    pub name: String,
    pub url: UrlSource,
    /// The events it receives (all of them unless the file lists some).
    pub events: BTreeSet<NotifyEvent>,
    /// One attempt's deadline; the notifier's default when `None`.
    #[serde(serialize_with = "human_opt")]
    pub timeout: Option<Duration>,
}

/// Where a webhook's URL is: a file (`url_file`, e.g. a Docker secret) or an environment
/// variable of drover's (`url_env`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlSource {
    #[serde(rename = "url_file")]
    File(PathBuf),
    #[serde(rename = "url_env")]
    Env(String),
}

/// What drover notifies about (`x-drover.notify[].events`, and the payload's `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    NodeDown,
    NodeUp,
    GaveUp,
    UpdateStarted,
    UpdateFinished,
    Rollback,
    ImageFollowed,
    Scale,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 8] = [
        NotifyEvent::NodeDown,
        NotifyEvent::NodeUp,
        NotifyEvent::GaveUp,
        NotifyEvent::UpdateStarted,
        NotifyEvent::UpdateFinished,
        NotifyEvent::Rollback,
        NotifyEvent::ImageFollowed,
        NotifyEvent::Scale,
    ];

    /// The name users write and receivers read.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::NodeDown => "node-down",
            NotifyEvent::NodeUp => "node-up",
            NotifyEvent::GaveUp => "gave-up",
            NotifyEvent::UpdateStarted => "update-started",
            NotifyEvent::UpdateFinished => "update-finished",
            NotifyEvent::Rollback => "rollback",
            NotifyEvent::ImageFollowed => "image-followed",
            NotifyEvent::Scale => "scale",
        }
    }
}

impl std::str::FromStr for NotifyEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<NotifyEvent, String> {
        NotifyEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event, expected one of {}", names.join(", "))
            })
    }
}

/// `x-drover.mode` / `--mode`: who places the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// drover creates containers on its nodes itself.
    Plain,
    /// drover drives Swarm services; Swarm places and reschedules the tasks.
    Swarm,
    /// Swarm when the engine is an active Swarm manager, plain otherwise.
    Auto,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "plain" => Ok(Mode::Plain),
            "swarm" => Ok(Mode::Swarm),
            "auto" => Ok(Mode::Auto),
            _ => Err("expected plain, swarm or auto".into()),
        }
    }
}

/// Restart backoff of one slot: `initial`, doubling up to `max`; a container that has run
/// for `reset_after` starts again from `initial`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackoffSettings {
    #[serde(serialize_with = "human_opt")]
    pub initial: Option<Duration>,
    #[serde(serialize_with = "human_opt")]
    pub max: Option<Duration>,
    #[serde(serialize_with = "human_opt")]
    pub reset_after: Option<Duration>,
}

/// Durations print as compose writes them (`10s`, `1m 30s`), not as seconds and nanos.
fn human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn human_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => human(d, s),
        None => s.serialize_none(),
    }
}

/// One engine drover manages (`x-drover.nodes`). No list means one node from the
/// Docker environment (DOCKER_HOST and friends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// The node's identity in labels (`drover.node`), logs and placement constraints.
    pub name: String,
    /// `unix:///path`, `tcp://host:port` or `https://host:port`.
    pub host: String,
    pub tls: Option<NodeTls>,
    /// Verify the engine's certificate against this name instead of the dialled address.
    pub tls_server_name: Option<String>,
    /// Placement labels; the engine's own labels (from `/info`) are merged under them.
    pub labels: BTreeMap<String, String>,
    /// `address`: where the other nodes reach this one (its replicas' ports for the
    /// ambassadors are published on it); default: the IP address in `host`.
    pub address: Option<std::net::IpAddr>,
    /// `availability`: whether new replicas may be placed there (Swarm's names).
    #[serde(skip_serializing_if = "is_default")]
    pub availability: Availability,
    /// `role: witness`: the node holds lease votes (a third engine beside two, for a
    /// majority) but runs nothing of the project. Default `role: worker`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
}

/// A node's `availability` (Swarm's names): `active` takes new replicas; `pause` keeps
/// what runs there and takes nothing new; `drain` runs nothing (its replicas move to the
/// other nodes, start-first, and a global service's replica there is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

impl NodeConfig {
    /// The address replicas publish on for the other nodes: `address`, else the IP address
    /// `host` names (none for a unix socket or a host name).
    pub fn mesh_address(&self) -> Option<std::net::IpAddr> {
        self.address.or_else(|| {
            let rest = self.host.split_once("://")?.1;
            let hostport = rest.split('/').next()?;
            let host = match hostport.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => hostport,
            };
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
    }
}

/// A node's TLS bundle: the engine module's description of one, which it connects with.
pub use crate::engine::connect::TlsFiles as NodeTls;

/// `deploy.placement`: where a service's replicas may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub constraints: Vec<Constraint>,
    pub max_replicas_per_node: Option<u32>,
    /// `spread: node.labels.KEY` preferences, as label keys, most important first.
    pub spread: Vec<String>,
    /// The constraints as written (trimmed), passed to Swarm unchanged: Swarm evaluates
    /// its own fields (`node.role`, `node.platform.os`, `engine.labels.K`, ...).
    #[serde(skip)]
    pub swarm_constraints: Vec<String>,
    /// The spread descriptors as written, passed to Swarm unchanged.
    #[serde(skip)]
    pub swarm_spread: Vec<String>,
}

/// `node.name == x`, `node.labels.zone != b`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Constraint {
    pub field: ConstraintField,
    pub equal: bool,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintField {
    NodeName,
    NodeLabel(String),
}

impl Constraint {
    /// Whether a node with this name and these labels satisfies the constraint.
    pub fn allows(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        let actual = match &self.field {
            ConstraintField::NodeName => Some(node),
            ConstraintField::NodeLabel(k) => labels.get(k).map(String::as_str),
        };
        (actual == Some(self.value.as_str())) == self.equal
    }
}

/// `deploy.update_config` / `deploy.rollback_config`, with Swarm's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateConfig {
    /// Replicas updated at once; 0 means all at once.
    pub parallelism: u32,
    /// Wait between batches.
    #[serde(serialize_with = "human")]
    pub delay: Duration,
    pub order: UpdateOrder,
    /// A new replica counts as updated once it has run (and been healthy) this long.
    #[serde(serialize_with = "human")]
    pub monitor: Duration,
    pub failure_action: FailureAction,
    /// Failures tolerated, as a fraction of the replicas, before `failure_action`.
    pub max_failure_ratio: f64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            order: UpdateOrder::StopFirst,
            monitor: Duration::from_secs(5),
            failure_action: FailureAction::Pause,
            max_failure_ratio: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old replica, then start the new one.
    StopFirst,
    /// Start the new replica, then stop the old one: never below the target.
    StartFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Pause,
    Continue,
    Rollback,
}

/// What happens to a replica the engine reports unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnhealthyAction {
    /// Restart the container in place.
    #[default]
    Restart,
    /// Remove it and create a new one.
    Recreate,
    /// Leave it be.
    Ignore,
}

/// Settings left at their defaults are not printed by `check`.
fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// One service's `x-drover.autoscale` entry: the bounds its replica target moves in, the
/// triggers that move it, and how fast (see docs/autoscaling.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Autoscale {
    pub min: u32,
    pub max: u32,
    /// The triggers are asked this often.
    #[serde(serialize_with = "human")]
    pub polling_interval: Duration,
    /// A scale-down goes only to the highest recommendation of this window.
    #[serde(serialize_with = "human")]
    pub scale_down_window: Duration,
    /// A scale-up goes only to the lowest recommendation of this window (0: at once).
    #[serde(serialize_with = "human")]
    pub scale_up_window: Duration,
    /// A ratio of value to target within `1 ± tolerance` changes nothing.
    pub tolerance: f64,
    /// With `min: 0`: how long every trigger must be at or below its activation threshold
    /// before the service goes to zero.
    #[serde(serialize_with = "human")]
    pub cooldown: Duration,
    pub scale_up: RateLimit,
    pub scale_down: RateLimit,
    pub triggers: Vec<ScaleTrigger>,
    /// `--scale` for this service: autoscaling is off, this count is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<u32>,
    /// The scale file's count for this service: the lowest target the autoscaler sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<u32>,
}

impl Autoscale {
    /// The lowest target: `min`, raised to the scale file's count.
    pub fn lowest(&self) -> u32 {
        self.min.max(self.floor.unwrap_or(0)).min(self.max)
    }
}

/// How much the target may change within `period`: the larger of `replicas` and
/// `percent` of the count at the period's start (the HPA's `selectPolicy: Max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(serialize_with = "human")]
    pub period: Duration,
}

/// One trigger: where its value comes from, and the value one replica is sized for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleTrigger {
    /// How logs, metrics and status name it: `name`, else its type and index (`redis-0`).
    pub name: String,
    /// Per replica: items of backlog, or % of a core (cpu), or bytes (memory).
    pub target: f64,
    /// With `min: 0`: a value above this wakes the service from zero (default 0).
    pub activation: f64,
    /// One reading's deadline.
    #[serde(serialize_with = "human")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub source: TriggerSource,
}

/// Where a trigger's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TriggerSource {
    /// A list's length, or the pending entries of a stream's consumer group.
    Redis {
        /// `redis://host:port[/db]` or `rediss://` (TLS); never a password.
        address: String,
        #[serde(flatten)]
        backlog: RedisBacklog,
        #[serde(skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<SecretSource>,
        /// TLS even with a `redis://` address.
        #[serde(skip_serializing_if = "is_false")]
        tls: bool,
        /// A CA certificate (PEM) to verify the server with, instead of the system's.
        #[serde(skip_serializing_if = "Option::is_none")]
        tls_ca_file: Option<PathBuf>,
    },
    /// A PromQL expression's value (an instant query; a vector's samples are summed).
    Prometheus {
        url: String,
        query: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<SecretSource>,
    },
    /// A number in a JSON document, found by a JSON pointer (RFC 6901).
    Http {
        url: String,
        pointer: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<SecretSource>,
    },
    /// Average CPU use of the service's running replicas, in % of one core.
    Cpu,
    /// Average memory use of the service's running replicas, in bytes.
    Memory,
}

impl TriggerSource {
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerSource::Redis { .. } => "redis",
            TriggerSource::Prometheus { .. } => "prometheus",
            TriggerSource::Http { .. } => "http",
            TriggerSource::Cpu => "cpu",
            TriggerSource::Memory => "memory",
        }
    }

    /// CPU and memory are averages per replica (desired = current × value / target);
    /// the others are a total to share out (desired = value / target).
    pub fn per_replica(&self) -> bool {
        matches!(self, TriggerSource::Cpu | TriggerSource::Memory)
    }
}

/// What a Redis trigger counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RedisBacklog {
    /// `LLEN list`.
    List { list: String },
    /// The pending entries of `group` on `stream` (`XPENDING`).
    Stream { stream: String, group: String },
}

/// A secret (a password, a token): a file or one of drover's environment variables; never
/// written in the Compose file, never logged or printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// Read the secret (a file's trailing newline dropped). The error names where it was
    /// looked for, never its content.
    pub fn read(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            SecretSource::Env(name) => {
                env(name).ok_or_else(|| format!("the environment variable {name} is not set"))
            }
        }
    }
}
