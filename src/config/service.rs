//! One `services.<name>` entry -> a [`Service`] (replica target and hash filled in later).
//!
//! [`read`] goes through the keys by group (process, networking, storage, isolation,
//! resources, lifecycle), then puts together what depends on several keys. The readers of
//! single keys live in the submodules: `networking`, `mounts` (volumes, tmpfs), `files`
//! (env_file, secrets, configs), `dependencies` (depends_on, volumes_from), `deploy`, and
//! `values` (healthcheck, restart, devices, ulimits, logging).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use super::hostpath::{PathUse, UseKind};
use super::model::*;
use super::read::{self, Result, Warnings, child, fail, index};
use super::syntax;
use super::yaml::{Key, Kind, Loc, Node};

mod dependencies;
mod deploy;
mod files;
mod mounts;
mod networking;
mod values;

use dependencies::{depends_on, volumes_from};
use deploy::{Resources, deploy};
use files::{env_files, file_mounts};
use mounts::{mount, tmpfs_entry};
use networking::{expose, extra_hosts, link, network_mode, networks, ports};
use values::{devices, healthcheck, logging, restart, ulimits};

/// Service keys Compose knows that drover does not act on (yet): a warning, not an error.
const UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cpu_count",
    "cpu_percent",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "gpus",
    "isolation",
    "label_file",
    "models",
    "post_start",
    "pre_stop",
    "provider",
    "use_api_socket",
];

/// A top-level secret or config, or why it cannot be used.
pub type FileSource = std::result::Result<SwarmObject, &'static str>;

/// What a service needs from the rest of the project while it is read.
pub struct Cx<'a> {
    pub project: &'a str,
    pub project_dir: &'a Path,
    /// Interpolation environment (`.env` overlaid by the process environment).
    pub env: &'a HashMap<String, String>,
    pub networks: &'a BTreeMap<String, Network>,
    pub volumes: &'a BTreeMap<String, Volume>,
    pub services: &'a BTreeSet<String>,
    /// Services left out because none of their profiles is enabled, with their profiles.
    pub disabled: &'a BTreeMap<String, Vec<String>>,
    pub secrets: &'a BTreeMap<String, FileSource>,
    pub configs: &'a BTreeMap<String, FileSource>,
    /// See `LoadOptions::mode`.
    pub mode: Mode,
    pub warnings: &'a mut Warnings,
}

impl Cx<'_> {
    /// Warn about a key only Swarm honours, unless the project runs in Swarm mode.
    fn swarm_only(&mut self, loc: &Loc, path: &str, msg: &str) {
        if self.mode != Mode::Swarm {
            self.warnings.at(loc, path, msg);
        }
    }
}

/// A read service plus what the project-level checks need.
pub struct Draft {
    pub service: Service,
    /// `deploy.replicas` / `scale`.
    pub file_replicas: Option<u32>,
    /// Where the service's key is written.
    pub loc: Loc,
    /// Where `container_name` is written.
    pub container_name_loc: Option<Loc>,
    /// Where each `depends_on` entry is written.
    pub depends_locs: BTreeMap<String, Loc>,
    /// Whether `networks` was given (else the service joins `default`).
    pub default_network: bool,
    /// The service's own `x-drover.unhealthy`, which wins over the top-level one.
    pub unhealthy: Option<UnhealthyAction>,
    /// Where each of `service.ports` is written, with its key path (one per port; a range
    /// gives several ports at one place).
    pub port_locs: Vec<(Loc, String)>,
    /// Bind sources drover resolved (relative or `~`), for the host path translation.
    pub host_paths: Vec<PathUse>,
}

pub fn read(cx: &mut Cx, name: &str, key_loc: &Loc, node: &Node) -> Result<Draft> {
    let mut r = Reading::new(name, key_loc);
    for (k, v) in read::map(node, &r.path)? {
        let p = child(&r.path, &k.name);
        no_number_where_compose_wants_text(&k.name, v, &p)?;
        r.key(cx, k, v, &p)?;
    }
    r.finish(cx, key_loc)
}

/// A service while its keys are read: the parts that are final once read, and the keys
/// that are put together with others afterwards (in [`Reading::finish`]).
struct Reading<'n> {
    path: String,
    s: Service,
    o: ServiceOptions,
    d: Draft,
    image: Option<String>,
    /// Where `build` is written.
    has_build: Option<Loc>,
    pull_policy: Option<PolicyWords>,
    /// `pull_refresh_after`: the window of `pull_policy: refresh`.
    pull_refresh_after: Option<(Duration, Loc)>,
    /// Read last: its variables may come from `environment`.
    env_file_node: Option<(&'n Node, String)>,
    env_inline: Vec<read::Entry>,
    tmpfs: Vec<Mount>,
    network_mode_loc: Option<Loc>,
    networks_loc: Option<Loc>,
    restart_key: Option<(Option<RestartCondition>, Option<u32>)>,
    deploy_restart: Option<RestartPolicy>,
    scale_key: Option<u32>,
    /// Where `scale` is written.
    scale_loc: Option<Loc>,
    deploy_replicas: Option<(u32, Loc)>,
    limits: Resources,
    reservations: Resources,
    /// Where cpus, mem_limit, mem_reservation and pids_limit were written.
    resource_locs: Vec<(&'static str, Loc)>,
    /// Services this one needs started first without saying so in depends_on.
    implied: Vec<(String, Loc, String)>,
}

impl<'n> Reading<'n> {
    fn new(name: &str, key_loc: &Loc) -> Reading<'n> {
        let s = Service {
            name: name.to_string(),
            replicas: 1,
            image: String::new(),
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            networks: BTreeMap::new(),
            healthcheck: None,
            restart: RestartPolicy::default(),
            stop_signal: None,
            stop_grace_period: Duration::from_secs(10),
            user: None,
            working_dir: None,
            hostname: None,
            depends_on: BTreeMap::new(),
            container_name: None,
            mode: DeployMode::default(),
            placement: Placement::default(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            unhealthy: UnhealthyAction::default(),
            backoff: BackoffSettings::default(),
            config_hash: String::new(),
            digest: None,
            options: ServiceOptions::default(),
        };
        let d = Draft {
            service: s.clone(),
            file_replicas: None,
            loc: key_loc.clone(),
            container_name_loc: None,
            depends_locs: BTreeMap::new(),
            default_network: true,
            unhealthy: None,
            port_locs: Vec::new(),
            host_paths: Vec::new(),
        };
        Reading {
            path: format!("services.{name}"),
            s,
            o: ServiceOptions::default(),
            d,
            image: None,
            has_build: None,
            pull_policy: None,
            pull_refresh_after: None,
            env_file_node: None,
            env_inline: Vec::new(),
            tmpfs: Vec::new(),
            network_mode_loc: None,
            networks_loc: None,
            restart_key: None,
            deploy_restart: None,
            scale_key: None,
            scale_loc: None,
            deploy_replicas: None,
            limits: Resources::default(),
            reservations: Resources::default(),
            resource_locs: Vec::new(),
            implied: Vec::new(),
        }
    }

    /// One service key, by the group it belongs to.
    fn key(&mut self, cx: &mut Cx, k: &Key, v: &'n Node, p: &str) -> Result<()> {
        if self.process_key(cx, k, v, p)?
            || self.networking_key(cx, k, v, p)?
            || self.storage_key(cx, k, v, p)?
            || self.isolation_key(k, v, p)?
            || self.resources_key(k, v, p)?
            || self.lifecycle_key(cx, k, v, p)?
        {
            return Ok(());
        }
        match k.name.as_str() {
            "extends" => {}
            key if key.starts_with("x-") => {}
            "build" => self.has_build = Some(k.loc.clone()),
            key if UNSUPPORTED.contains(&key) => {
                cx.warnings.at(&k.loc, p, "not supported yet, ignored");
            }
            _ => return Err(fail(&k.loc, p, super::project::UNKNOWN_KEY)),
        }
        Ok(())
    }

    /// What runs and how: image, command, environment, user, stop settings. False for
    /// a key of another group.
    fn process_key(&mut self, cx: &mut Cx, k: &Key, v: &'n Node, p: &str) -> Result<bool> {
        let (s, o) = (&mut self.s, &mut self.o);
        match k.name.as_str() {
            "image" => self.image = Some(read::string(v, p)?),
            "command" => s.command = opt_words(v, p)?,
            "entrypoint" => s.entrypoint = opt_words(v, p)?,
            "environment" => self.env_inline = read::map_or_list(v, p)?,
            // Read after the loop: its variables may come from `environment`.
            "env_file" => self.env_file_node = Some((v, p.to_string())),
            "labels" => {
                for e in read::map_or_list(v, p)? {
                    s.labels.insert(e.key, e.value.unwrap_or_default());
                }
            }
            "pull_policy" => self.pull_policy = Some(pull_policy(v, p)?),
            "pull_refresh_after" => {
                self.pull_refresh_after = Some((read::duration(v, p)?, v.loc.clone()))
            }
            "platform" => o.platform = read::opt_string(v, p)?,
            "runtime" => o.runtime = read::opt_string(v, p)?,
            "profiles" => o.profiles = read::string_or_list(v, p, false)?,
            "tty" => o.tty = read::boolean(v, p)?,
            "stdin_open" => o.stdin_open = read::boolean(v, p)?,
            "init" => o.init = read::opt_boolean(v, p)?,
            "stop_signal" => s.stop_signal = read::opt_string(v, p)?,
            "stop_grace_period" => s.stop_grace_period = read::duration(v, p)?,
            "user" => s.user = read::opt_string(v, p)?,
            "group_add" => o.group_add = read::string_or_list(v, p, false)?,
            "working_dir" => s.working_dir = read::opt_string(v, p)?,
            "container_name" => {
                s.container_name = read::opt_string(v, p)?;
                self.d.container_name_loc = Some(k.loc.clone());
            }
            "logging" => o.logging = Some(logging(cx.warnings, v, p)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Ports, networks, names and links. False for a key of another group.
    fn networking_key(&mut self, cx: &mut Cx, k: &Key, v: &Node, p: &str) -> Result<bool> {
        let (s, o) = (&mut self.s, &mut self.o);
        match k.name.as_str() {
            "ports" => {
                for (i, item) in read::seq(v, p)?.iter().enumerate() {
                    let ip = index(p, i);
                    ports(item, &ip, &mut s.ports)?;
                    self.d
                        .port_locs
                        .resize(s.ports.len(), (item.loc.clone(), ip.clone()));
                }
            }
            "expose" => o.expose = expose(v, p)?,
            "networks" => {
                self.d.default_network = false;
                self.networks_loc = Some(k.loc.clone());
                networks(cx, v, p, &mut s.networks)?;
            }
            "network_mode" => {
                o.network_mode = Some(network_mode(cx, v, p, &mut self.implied)?);
                self.network_mode_loc = Some(k.loc.clone());
            }
            "hostname" => s.hostname = read::opt_string(v, p)?,
            "domainname" => o.domainname = read::opt_string(v, p)?,
            "mac_address" => o.mac_address = read::opt_string(v, p)?,
            "dns" => o.dns = read::string_or_list(v, p, false)?,
            "dns_search" => o.dns_search = read::string_or_list(v, p, false)?,
            "dns_opt" => o.dns_opt = read::string_or_list(v, p, false)?,
            "extra_hosts" => o.extra_hosts = extra_hosts(v, p)?,
            "external_links" => o.external_links = read::string_or_list(v, p, false)?,
            "links" => {
                for (i, item) in read::string_or_list(v, p, false)?.into_iter().enumerate() {
                    let ip = index(p, i);
                    let (svc, alias) = link(cx, &item, &v.loc, &ip)?;
                    o.links.push(format!("{svc}:{alias}"));
                    self.implied.push((svc, v.loc.clone(), ip));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Volumes, tmpfs, secrets, configs, devices. False for a key of another group.
    fn storage_key(&mut self, cx: &mut Cx, k: &Key, v: &Node, p: &str) -> Result<bool> {
        let (s, o) = (&mut self.s, &mut self.o);
        match k.name.as_str() {
            "volumes" => {
                for (i, item) in read::seq(v, p)?.iter().enumerate() {
                    let (m, resolved) = mount(cx, item, &index(p, i))?;
                    if let Some((at, relative)) = resolved {
                        self.d.host_paths.push(PathUse {
                            service: s.name.clone(),
                            kind: UseKind::Bind,
                            target: m.target.clone(),
                            at,
                            relative,
                        });
                    }
                    s.volumes.push(m);
                }
            }
            "tmpfs" => {
                for entry in read::string_or_list(v, p, false)? {
                    self.tmpfs
                        .push(tmpfs_entry(cx.warnings, &entry, &v.loc, p)?);
                }
            }
            "volumes_from" => {
                for (i, item) in read::string_or_list(v, p, false)?.into_iter().enumerate() {
                    let ip = index(p, i);
                    let (entry, service) = volumes_from(cx, &item, &v.loc, &ip)?;
                    if let Some(svc) = service {
                        self.implied.push((svc, v.loc.clone(), ip));
                    }
                    o.volumes_from.push(entry);
                }
            }
            "secrets" => o.secrets = file_mounts(cx, v, p, true)?,
            "configs" => o.configs = file_mounts(cx, v, p, false)?,
            "devices" => o.devices = devices(v, p)?,
            "storage_opt" => o.storage_opt = read::string_map(v, p)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Namespaces, capabilities and other isolation settings. False for a key of
    /// another group.
    fn isolation_key(&mut self, k: &Key, v: &Node, p: &str) -> Result<bool> {
        let o = &mut self.o;
        match k.name.as_str() {
            "ipc" => o.ipc = read::opt_string(v, p)?,
            "pid" => o.pid = read::opt_string(v, p)?,
            "uts" => o.uts = read::opt_string(v, p)?,
            "userns_mode" => o.userns_mode = read::opt_string(v, p)?,
            "cgroup" => o.cgroup = Some(read::choice(v, p, &["host", "private"])?),
            "cgroup_parent" => o.cgroup_parent = read::opt_string(v, p)?,
            "cap_add" => o.cap_add = read::string_or_list(v, p, false)?,
            "cap_drop" => o.cap_drop = read::string_or_list(v, p, false)?,
            "security_opt" => {
                // A list, as the Compose schema wants (compose refuses a string).
                read::seq(v, p)?;
                o.security_opt = read::string_or_list(v, p, false)?
            }
            "privileged" => o.privileged = read::boolean(v, p)?,
            "read_only" => o.read_only = read::boolean(v, p)?,
            "sysctls" => o.sysctls = read::string_map(v, p)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Memory, CPU, pids and other limits. False for a key of another group.
    fn resources_key(&mut self, k: &Key, v: &Node, p: &str) -> Result<bool> {
        let o = &mut self.o;
        match k.name.as_str() {
            "cpuset" => o.cpuset = read::opt_string(v, p)?,
            "oom_kill_disable" => o.oom_kill_disable = read::opt_boolean(v, p)?,
            "shm_size" => o.shm_size = read::opt_size(v, p)?,
            "mem_limit" => {
                o.mem_limit = read::opt_size(v, p)?;
                self.resource_locs.push(("mem_limit", v.loc.clone()));
            }
            "mem_reservation" => {
                o.mem_reservation = read::opt_size(v, p)?;
                self.resource_locs.push(("mem_reservation", v.loc.clone()));
            }
            "memswap_limit" => {
                o.memswap_limit = match &v.kind {
                    Kind::Int(-1) => Some(-1),
                    Kind::Str(x) if x.trim() == "-1" => Some(-1),
                    _ => read::opt_size(v, p)?,
                }
            }
            "pids_limit" => {
                o.pids_limit = Some(read::int(v, p)?);
                self.resource_locs.push(("pids_limit", v.loc.clone()));
            }
            "mem_swappiness" => o.mem_swappiness = Some(read::int(v, p)?),
            "oom_score_adj" => {
                let adj = read::int(v, p)?;
                if !(-1000..=1000).contains(&adj) {
                    return Err(read::bad(v, p, "expected a number from -1000 to 1000"));
                }
                o.oom_score_adj = Some(adj);
            }
            "cpu_shares" => o.cpu_shares = Some(read::int(v, p)?),
            "cpu_period" => o.cpu_period = Some(read::int(v, p)?),
            "cpu_quota" => o.cpu_quota = Some(read::int(v, p)?),
            "cpus" => {
                o.cpus = Some(read::float(v, p)?);
                self.resource_locs.push(("cpus", v.loc.clone()));
            }
            "ulimits" => o.ulimits = ulimits(v, p)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Health, restarts, replicas, deploy settings, dependencies, drover's own
    /// settings. False for a key of another group.
    fn lifecycle_key(&mut self, cx: &mut Cx, k: &Key, v: &Node, p: &str) -> Result<bool> {
        let s = &mut self.s;
        match k.name.as_str() {
            "healthcheck" => s.healthcheck = healthcheck(cx.warnings, v, p)?,
            "restart" => self.restart_key = Some(restart(v, p)?),
            "deploy" => self.deploy(cx, v, p)?,
            "scale" => {
                self.scale_key = Some(read::u32_(v, p)?);
                self.scale_loc = Some(v.loc.clone());
            }
            "depends_on" => depends_on(cx, v, p, &mut s.depends_on, &mut self.d.depends_locs)?,
            "x-drover" => {
                let (action, backoff) = super::lifecycle::service_drover(v, p, cx.warnings)?;
                self.d.unhealthy = action;
                s.backoff = backoff;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn deploy(&mut self, cx: &mut Cx, v: &Node, p: &str) -> Result<()> {
        let s = &mut self.s;
        if let Some(pl) = v.get("placement") {
            s.placement =
                super::nodes::placement(pl, &child(p, "placement"), cx.warnings, cx.mode)?;
        }
        if let Some(u) = v.get("update_config") {
            s.update = super::lifecycle::update_config(u, &child(p, "update_config"), cx.warnings)?;
        }
        if let Some(u) = v.get("rollback_config") {
            s.rollback =
                super::lifecycle::update_config(u, &child(p, "rollback_config"), cx.warnings)?;
        }
        let dep = deploy(cx, v, p)?;
        self.deploy_replicas = dep.replicas.map(|r| (r, v.loc.clone()));
        self.deploy_restart = dep.restart;
        self.limits = dep.limits;
        self.reservations = dep.reservations;
        s.mode = dep.mode;
        Ok(())
    }

    /// The keys read, put together, in this order: image, networking, resources,
    /// implied dependencies, environment, restart policy, replicas.
    fn finish(mut self, cx: &mut Cx, key_loc: &Loc) -> Result<Draft> {
        self.image(cx, key_loc)?;
        self.network_mode_or_networks()?;
        self.resources()?;
        self.implied_dependencies()?;
        self.s.options = std::mem::take(&mut self.o);
        self.environment(cx)?;
        self.s.volumes.append(&mut self.tmpfs);
        if self.d.default_network {
            self.s
                .networks
                .insert("default".to_string(), ServiceNetwork::default());
        }
        self.s.restart = self.restart();
        self.d.file_replicas = self.file_replicas()?;
        self.d.service = self.s;
        Ok(self.d)
    }

    /// The image and pull policy, with what `build` means for them.
    ///
    /// drover runs images and never builds them: a service with `build:` runs its image
    /// (compose's `{project}-{service}` when it names none) if the engine already has it.
    fn image(&mut self, cx: &mut Cx, key_loc: &Loc) -> Result<()> {
        let written = self.written_policy(cx);
        let path = &self.path;
        if let Some(loc) = &self.has_build {
            let named = self.image.is_some();
            cx.warnings.at(
                loc,
                &child(path, "build"),
                if named {
                    "ignored: drover runs images and does not build them; the image must be \
                     present on the engine"
                } else {
                    "ignored: drover runs images and does not build them; the image (named as \
                     compose names it) must be present on the engine"
                },
            );
        }
        self.s.image = match (self.image.take(), &self.has_build) {
            (Some(image), _) => image,
            (None, Some(_)) => format!("{}-{}", cx.project, self.s.name),
            (None, None) => return Err(fail(key_loc, path, "has no image")),
        };
        self.o.pull_policy = match (written, &self.has_build) {
            (Some(p), _) => p,
            (None, Some(_)) => PullPolicy::Build,
            (None, None) => PullPolicy::Missing,
        };
        if self.o.pull_policy == PullPolicy::Build && self.has_build.is_none() {
            cx.warnings.at(
                key_loc,
                &child(path, "pull_policy"),
                "build: drover does not build images; the image must be present on the engine",
            );
        }
        Ok(())
    }

    /// The policy `pull_policy` and `pull_refresh_after` say, if any. `refresh` without a
    /// window is read as `missing`, as compose-go reads it.
    fn written_policy(&mut self, cx: &mut Cx) -> Option<PullPolicy> {
        let path = &self.path;
        let after = self.pull_refresh_after.take();
        match (self.pull_policy.take(), after) {
            (Some(PolicyWords::Refresh(_)), Some((every, _))) if !every.is_zero() => {
                Some(PullPolicy::Refresh(every))
            }
            (Some(PolicyWords::Refresh(loc)), _) => {
                cx.warnings.at(
                    &loc,
                    &child(path, "pull_policy"),
                    "refresh without a pull_refresh_after window: read as missing, as compose does",
                );
                Some(PullPolicy::Missing)
            }
            (words, Some((_, loc))) => {
                cx.warnings.at(
                    &loc,
                    &child(path, "pull_refresh_after"),
                    "ignored: only pull_policy: refresh has a refresh window",
                );
                words.map(|w| match w {
                    PolicyWords::Is(p) => p,
                    PolicyWords::Refresh(_) => PullPolicy::Missing,
                })
            }
            (Some(PolicyWords::Is(p)), None) => Some(p),
            (None, None) => None,
        }
    }

    fn network_mode_or_networks(&mut self) -> Result<()> {
        if let (Some(loc), Some(_)) = (&self.network_mode_loc, &self.networks_loc) {
            return Err(fail(
                loc,
                &child(&self.path, "network_mode"),
                "cannot be combined with networks; use one of them",
            ));
        }
        if self.o.network_mode.is_some() {
            self.d.default_network = false;
        }
        Ok(())
    }

    /// Resource limits: the deploy.resources values are the ones used; a service-level
    /// key and its deploy.resources twin must agree, as compose checks (a `limits` or
    /// `reservations` block without the twin counts as zero, as there).
    fn resources(&mut self) -> Result<()> {
        let (o, limits, reservations) = (&mut self.o, &self.limits, &self.reservations);
        for (key, loc) in &self.resource_locs {
            let (set, twin, block, other) = match *key {
                "cpus" => (
                    o.cpus.is_some_and(|c| c != 0.0),
                    "deploy.resources.limits.cpus",
                    limits,
                    o.cpus != Some(limits.cpus.unwrap_or(0.0)),
                ),
                "mem_limit" => (
                    o.mem_limit.is_some_and(|m| m != 0),
                    "deploy.resources.limits.memory",
                    limits,
                    o.mem_limit != Some(limits.memory.unwrap_or(0)),
                ),
                "mem_reservation" => (
                    o.mem_reservation.is_some_and(|m| m != 0),
                    "deploy.resources.reservations.memory",
                    reservations,
                    o.mem_reservation != Some(reservations.memory.unwrap_or(0)),
                ),
                _ => (
                    o.pids_limit.is_some_and(|m| m != 0),
                    "deploy.resources.limits.pids",
                    limits,
                    o.pids_limit != Some(limits.pids.unwrap_or(0)),
                ),
            };
            if set && block.present && other {
                return Err(fail(
                    loc,
                    &child(&self.path, key),
                    format!("differs from {twin}; set only one (compose refuses distinct values)"),
                ));
            }
        }
        // Equal to the service-level keys when both are written, checked above.
        if let Some(m) = limits.memory {
            o.mem_limit = Some(m);
        }
        if let Some(c) = limits.cpus {
            o.cpus = Some(c);
        }
        if let Some(pids) = limits.pids {
            o.pids_limit = Some(pids);
        }
        if let Some(m) = reservations.memory {
            o.mem_reservation = Some(m);
        }
        o.cpus_reservation = reservations.cpus;
        Ok(())
    }

    /// Services named by network_mode, volumes_from or links become dependencies
    /// (started first) unless depends_on names them already.
    fn implied_dependencies(&mut self) -> Result<()> {
        for (dep, loc, _) in std::mem::take(&mut self.implied) {
            if dep == self.s.name {
                return Err(fail(&loc, &self.path, "a service cannot refer to itself"));
            }
            if let std::collections::btree_map::Entry::Vacant(e) =
                self.s.depends_on.entry(dep.clone())
            {
                e.insert(DependsOn {
                    condition: DependsCondition::ServiceStarted,
                    required: true,
                });
                self.d.depends_locs.insert(dep, loc);
            }
        }
        Ok(())
    }

    /// env_file entries first, `environment` on top; a bare KEY takes the environment's
    /// value.
    fn environment(&mut self, cx: &mut Cx) -> Result<()> {
        let env_inline: Vec<(String, Option<String>)> = std::mem::take(&mut self.env_inline)
            .into_iter()
            .map(|e| {
                let value = e.value.or_else(|| cx.env.get(&e.key).cloned());
                (e.key, value)
            })
            .collect();
        let env_from_files = match self.env_file_node.take() {
            Some((v, p)) => {
                let service_env: HashMap<String, String> = env_inline
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .collect();
                env_files(cx, v, &p, &service_env)?
            }
            None => Vec::new(),
        };
        for (k, v) in env_from_files {
            self.s.environment.insert(k, v);
        }
        for (k, v) in env_inline {
            self.s.environment.insert(k, v);
        }
        Ok(())
    }

    /// `restart` with what `deploy.restart_policy` adds to it, or the latter alone.
    fn restart(&self) -> RestartPolicy {
        match (self.restart_key, self.deploy_restart) {
            (Some((condition, max)), deploy) => RestartPolicy {
                condition: condition
                    .or(deploy.map(|p| p.condition))
                    .unwrap_or(RestartCondition::Always),
                max_attempts: max.or(deploy.and_then(|p| p.max_attempts)),
                delay: deploy.and_then(|p| p.delay),
                window: deploy.and_then(|p| p.window),
            },
            (None, Some(p)) => p,
            (None, None) => RestartPolicy::default(),
        }
    }

    /// `deploy.replicas` or `scale`, which must agree when both are written.
    fn file_replicas(&self) -> Result<Option<u32>> {
        if let (DeployMode::Global, Some(loc)) = (self.s.mode, &self.scale_loc) {
            return Err(fail(
                loc,
                &child(&self.path, "scale"),
                "a global service runs one replica per eligible node and takes no count \
                 (as docker stack deploy refuses replicas with mode: global); remove one of them",
            ));
        }
        Ok(match (&self.deploy_replicas, self.scale_key) {
            (Some((a, loc)), Some(b)) if *a != b => {
                return Err(fail(
                    loc,
                    &child(&self.path, "deploy.replicas"),
                    "differs from scale; set only one",
                ));
            }
            (Some((a, _)), _) => Some(*a),
            (None, b) => b,
        })
    }
}

fn pull_policy(v: &Node, p: &str) -> Result<PolicyWords> {
    let policy = read::string(v, p)?;
    let every = |d: &str| -> Result<PullPolicy> {
        let every = syntax::parse_duration(d).map_err(|m| read::bad(v, p, m))?;
        if every.is_zero() {
            return Err(read::bad(v, p, "the interval must be longer than zero"));
        }
        Ok(PullPolicy::Refresh(every))
    };
    Ok(match policy.as_str() {
        "always" => PolicyWords::Is(PullPolicy::Always),
        "missing" | "if_not_present" => PolicyWords::Is(PullPolicy::Missing),
        "never" => PolicyWords::Is(PullPolicy::Never),
        "build" => PolicyWords::Is(PullPolicy::Build),
        "daily" => PolicyWords::Is(PullPolicy::Refresh(Duration::from_secs(86_400))),
        "weekly" => PolicyWords::Is(PullPolicy::Refresh(Duration::from_secs(7 * 86_400))),
        "refresh" => PolicyWords::Refresh(v.loc.clone()),
        x if x.starts_with("every_") => PolicyWords::Is(every(&x["every_".len()..])?),
        _ => {
            return Err(read::bad(
                v,
                p,
                "expected always, missing, if_not_present, never, build, daily, weekly, \
                 every_<duration> or refresh",
            ));
        }
    })
}

/// `pull_policy` as written: a policy, or `refresh`, whose window is `pull_refresh_after`.
#[derive(Debug, Clone)]
enum PolicyWords {
    Is(PullPolicy),
    Refresh(Loc),
}

fn opt_words(v: &Node, p: &str) -> Result<Option<Vec<String>>> {
    match v.kind {
        Kind::Null => Ok(None),
        _ => read::string_or_list(v, p, true).map(Some),
    }
}

/// Service keys the Compose schema types as strings (or lists of strings): compose refuses
/// a YAML number there (`user: 1000` must be written `user: "1000"`), and so does drover.
const TEXT_KEYS: &[&str] = &[
    "image",
    "user",
    "working_dir",
    "hostname",
    "domainname",
    "container_name",
    "stop_signal",
    "ipc",
    "pid",
    "uts",
    "userns_mode",
    "runtime",
    "cgroup_parent",
    "mac_address",
    "platform",
];
const TEXT_LIST_KEYS: &[&str] = &[
    "cap_add",
    "cap_drop",
    "dns_search",
    "dns_opt",
    "external_links",
    "links",
    "security_opt",
];

fn no_number_where_compose_wants_text(key: &str, v: &Node, p: &str) -> Result<()> {
    let number = |n: &Node| matches!(n.kind, Kind::Int(_) | Kind::Float(_));
    let why = "expected a string (quote a number, as compose requires)";
    if TEXT_KEYS.contains(&key) && number(v) {
        return Err(read::bad(v, p, why));
    }
    if TEXT_LIST_KEYS.contains(&key) {
        match &v.kind {
            Kind::Seq(items) => {
                if let Some((i, item)) = items.iter().enumerate().find(|(_, n)| number(n)) {
                    return Err(read::bad(item, &index(p, i), why));
                }
            }
            _ if number(v) => return Err(read::bad(v, p, why)),
            _ => {}
        }
    }
    Ok(())
}
