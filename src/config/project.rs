//! The merged Compose tree -> a validated [`Project`]: top-level keys, project name,
//! networks and volumes, services, `x-drover`, replica targets, dependency checks,
//! config hashes. Top-level secrets and configs are read in `files`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ConfigError;
use super::hostpath::PathUse;
use super::model::*;
use super::read::{self, Result, Warnings, child, fail};
use super::service::{self, Cx, Draft};
use super::syntax;
use super::yaml::{Key, Kind, Loc, Node};

mod files;

use files::{file_sources, secret_and_config_uses};

/// Everything besides the merged Compose tree that decides the project.
pub struct Inputs<'a> {
    pub project_dir: &'a Path,
    pub env: &'a HashMap<String, String>,
    /// `-p`.
    pub project_name: Option<&'a str>,
    /// `--scale`.
    pub scale: &'a [(String, u32)],
    /// The parsed scale file.
    pub scale_file: Option<&'a Node>,
    /// `--profile` values; when empty, COMPOSE_PROFILES (comma-separated) from `env`.
    pub profiles: &'a [String],
    /// See `LoadOptions::mode`.
    pub mode: Mode,
}

const TOP_UNSUPPORTED: &[&str] = &["models"];

/// A key that is not in the Compose specification, at the top level or in a service.
pub(super) const UNKNOWN_KEY: &str =
    "unknown key: the Compose specification has no such key (compose refuses it too); a typo?";

/// The enabled profiles: `--profile` values, else COMPOSE_PROFILES. `*` enables all.
fn enabled_profiles(inp: &Inputs) -> Vec<String> {
    let from_env;
    let list: &[String] = if inp.profiles.is_empty() {
        from_env = inp
            .env
            .get("COMPOSE_PROFILES")
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        &from_env
    } else {
        inp.profiles
    };
    list.to_vec()
}

/// The profiles a service entry lists (empty: always active).
fn service_profiles(node: &Node, path: &str) -> Result<Vec<String>> {
    match node.get("profiles") {
        Some(p) => read::string_or_list(p, &child(path, "profiles"), false),
        None => Ok(Vec::new()),
    }
}

/// The project, its settings, and the paths drover resolved that the engine is handed
/// (see `hostpath`).
pub fn build(
    root: &Node,
    inp: &Inputs,
    warnings: &mut Warnings,
) -> Result<(Project, Settings, Vec<PathUse>)> {
    let top = TopLevel::read(root, warnings)?;
    let name = project_name(inp, top.name)?;
    let mut networks = networks(&name, top.networks, warnings)?;
    let volumes = volumes(&name, top.volumes, warnings)?;
    let secrets = match top.secrets {
        Some(n) => file_sources(n, "secrets", &name, inp.project_dir, warnings)?,
        None => BTreeMap::new(),
    };
    let configs = match top.configs {
        Some(n) => file_sources(n, "configs", &name, inp.project_dir, warnings)?,
        None => BTreeMap::new(),
    };

    let (service_entries, disabled) = enabled_services(root, top.services, inp)?;
    let names: BTreeSet<String> = service_entries
        .iter()
        .map(|(k, _)| k.name.clone())
        .collect();
    let mut drafts: BTreeMap<String, Draft> = BTreeMap::new();
    for (k, v) in service_entries {
        let mut cx = Cx {
            project: &name,
            project_dir: inp.project_dir,
            env: inp.env,
            networks: &networks,
            volumes: &volumes,
            services: &names,
            disabled: &disabled,
            secrets: &secrets,
            configs: &configs,
            mode: inp.mode,
            warnings,
        };
        let draft = service::read(&mut cx, &k.name, &k.loc, v)?;
        drafts.insert(k.name.clone(), draft);
    }
    add_default_network(&name, &drafts, &mut networks);
    check_cycles(&drafts)?;

    let (mut settings, drover_scale) = match top.drover {
        Some(n) => x_drover(n, &names, inp.project_dir, warnings)?,
        None => (Settings::default(), BTreeMap::new()),
    };
    let file_scale = match inp.scale_file {
        Some(n) => scale_file(n, &names)?,
        None => BTreeMap::new(),
    };
    check_scale_flags(inp, &names)?;

    let mut services = BTreeMap::new();
    let mut published = PublishedPorts::new(&settings, inp.mode);
    let mesh = mesh(&settings, inp.mode);
    let mut host_paths = Vec::new();
    for (svc_name, d) in drafts {
        host_paths.extend(d.host_paths);
        let mut s = d.service;
        s.unhealthy = d.unhealthy.or(settings.unhealthy).unwrap_or_default();
        if let (Some(every), PullPolicy::Missing) = (settings.follow_images, s.options.pull_policy)
        {
            s.options.pull_policy = PullPolicy::Refresh(every);
        }
        let scales = (&file_scale, &drover_scale);
        if s.mode == DeployMode::Global {
            no_count_for_global(inp, scales, &svc_name)?;
        }
        s.replicas = replica_target(inp, scales, &svc_name, d.file_replicas);
        let autoscale = settings.autoscale.get_mut(&svc_name);
        autoscaled(autoscale, &s, inp, &file_scale, &d.loc, warnings)?;
        check_replicas(&s, &d.loc, d.container_name_loc.as_ref())?;
        published.check(&s, &d.port_locs, warnings)?;
        s.options.mesh = mesh.is_some() && !s.mesh_ports().is_empty();
        s.config_hash = config_hash(&s, &networks, &volumes);
        services.insert(svc_name, s);
    }
    if inp.mode == Mode::Plain {
        host_paths.extend(secret_and_config_uses(&top, &services, inp.project_dir));
    }

    let usable = |defs: BTreeMap<String, service::FileSource>| -> BTreeMap<String, SwarmObject> {
        defs.into_iter()
            .filter_map(|(k, d)| d.ok().map(|d| (k, d)))
            .collect()
    };
    let project = Project {
        name,
        working_dir: inp.project_dir.to_path_buf(),
        services,
        networks,
        volumes,
        secrets: usable(secrets),
        configs: usable(configs),
        mesh,
    };
    Ok((project, settings, host_paths))
}

/// The replica target: `--scale` (the last one for the service), else the scale file,
/// else `x-drover.scale`, else `deploy.replicas` or `scale` (`file_replicas`), else 1.
fn replica_target(
    inp: &Inputs,
    (file_scale, drover_scale): (&BTreeMap<String, u32>, &BTreeMap<String, u32>),
    svc_name: &str,
    file_replicas: Option<u32>,
) -> u32 {
    inp.scale
        .iter()
        .rev()
        .find(|(n, _)| *n == svc_name)
        .map(|(_, r)| *r)
        .or_else(|| file_scale.get(svc_name).copied())
        .or_else(|| drover_scale.get(svc_name).copied())
        .or(file_replicas)
        .unwrap_or(1)
}

/// An autoscaled service (`a`; nothing to do for the others): `--scale` pins it, the scale file's count is its floor; it must
/// be able to run more than one replica.
fn autoscaled(
    a: Option<&mut Autoscale>,
    s: &Service,
    inp: &Inputs,
    file_scale: &BTreeMap<String, u32>,
    loc: &Loc,
    warnings: &mut Warnings,
) -> Result<()> {
    let Some(a) = a else {
        return Ok(());
    };
    let path = format!("x-drover.autoscale.{}", s.name);
    if s.mode == DeployMode::Global {
        return Err(fail(
            loc,
            &path,
            "a global service runs one task per node: it cannot be autoscaled",
        ));
    }
    if s.container_name.is_some() && a.max > 1 {
        return Err(fail(
            loc,
            &path,
            "a service with container_name runs one replica: it cannot be autoscaled",
        ));
    }
    a.pinned = inp
        .scale
        .iter()
        .rev()
        .find(|(n, _)| *n == s.name)
        .map(|(_, r)| *r);
    a.floor = file_scale.get(&s.name).copied();
    if let Some(f) = a.floor.filter(|f| *f > a.max) {
        warnings.push(format!(
            "{path}: the scale file asks for {f}, above max ({}): the autoscaler keeps it at {}",
            a.max, a.max
        ));
    }
    Ok(())
}

/// A global service runs one replica per eligible node: a count for it (`--scale`, the
/// scale file, `x-drover.scale`) is refused, as `docker service scale` refuses it.
fn no_count_for_global(
    inp: &Inputs,
    (file_scale, drover_scale): (&BTreeMap<String, u32>, &BTreeMap<String, u32>),
    svc_name: &str,
) -> Result<()> {
    let source = if inp.scale.iter().any(|(n, _)| n == svc_name) {
        format!("--scale {svc_name}")
    } else if file_scale.contains_key(svc_name) {
        format!("scale file: {svc_name}")
    } else if drover_scale.contains_key(svc_name) {
        format!("x-drover.scale.{svc_name}")
    } else {
        return Ok(());
    };
    Err(ConfigError(format!(
        "{source}: {svc_name} is a global service (deploy.mode: global), which runs one \
         replica on each eligible node and takes no count (docker service scale refuses it \
         too)"
    )))
}

/// The top-level keys drover reads (each read later, in its own step); a warning for
/// the others.
struct TopLevel<'a> {
    name: Option<&'a Node>,
    services: Option<&'a Node>,
    networks: Option<&'a Node>,
    volumes: Option<&'a Node>,
    drover: Option<&'a Node>,
    secrets: Option<&'a Node>,
    configs: Option<&'a Node>,
}

impl<'a> TopLevel<'a> {
    fn read(root: &'a Node, warnings: &mut Warnings) -> Result<TopLevel<'a>> {
        let entries: &[(Key, Node)] = match &root.kind {
            Kind::Null => &[],
            _ => read::map(root, "")?,
        };
        let mut top = TopLevel {
            name: None,
            services: None,
            networks: None,
            volumes: None,
            drover: None,
            secrets: None,
            configs: None,
        };
        for (k, v) in entries {
            match k.name.as_str() {
                "secrets" => top.secrets = Some(v),
                "configs" => top.configs = Some(v),
                // Resolved by the loader before this step.
                "include" => {}
                "name" => top.name = Some(v),
                "services" => top.services = Some(v),
                "networks" => top.networks = Some(v),
                "volumes" => top.volumes = Some(v),
                "version" => {}
                "x-drover" => top.drover = Some(v),
                key if key.starts_with("x-") => {}
                key if TOP_UNSUPPORTED.contains(&key) => {
                    warnings.at(&k.loc, key, "not supported yet, ignored")
                }
                // Compose refuses a key its schema does not know; so does drover (a typo
                // would otherwise be a setting silently not applied).
                key => return Err(fail(&k.loc, key, UNKNOWN_KEY)),
            }
        }
        Ok(top)
    }
}

/// Top-level `networks`.
fn networks(
    project: &str,
    node: Option<&Node>,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, Network>> {
    let defs = match node {
        Some(n) => definitions(project, n, "networks", warnings)?,
        None => BTreeMap::new(),
    };
    Ok(defs
        .into_iter()
        .map(|(k, d)| {
            let net = Network {
                name: d.name,
                driver: d.driver,
                external: d.external,
                labels: d.labels,
                options: d.options,
            };
            (k, net)
        })
        .collect())
}

/// Top-level `volumes`.
fn volumes(
    project: &str,
    node: Option<&Node>,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, Volume>> {
    let defs = match node {
        Some(n) => definitions(project, n, "volumes", warnings)?,
        None => BTreeMap::new(),
    };
    Ok(defs
        .into_iter()
        .map(|(k, d)| {
            let vol = Volume {
                name: d.name,
                driver: d.driver,
                external: d.external,
                labels: d.labels,
                driver_opts: d.options.driver_opts,
            };
            (k, vol)
        })
        .collect())
}

/// Services left out because none of their profiles is enabled, with their profiles.
type Disabled = BTreeMap<String, Vec<String>>;

/// The `services` entries in the project, with their names checked, and the services
/// left out (none of their profiles is enabled) with their profiles.
fn enabled_services<'a>(
    root: &Node,
    services: Option<&'a Node>,
    inp: &Inputs,
) -> Result<(Vec<&'a (Key, Node)>, Disabled)> {
    let all_entries: &[(Key, Node)] = match services {
        Some(n) => read::map_or_null(n, "services")?,
        None => &[],
    };
    let loc = services.map_or(&root.loc, |n| &n.loc);
    if all_entries.is_empty() {
        return Err(fail(loc, "services", "no services defined"));
    }
    // Profiles: a service that lists some is in the project only when one is enabled.
    let enabled = enabled_profiles(inp);
    let mut disabled: Disabled = BTreeMap::new();
    let mut service_entries: Vec<&(Key, Node)> = Vec::new();
    for entry in all_entries {
        check_service_name(&entry.0)?;
        let profiles = service_profiles(&entry.1, &format!("services.{}", entry.0.name))?;
        let active =
            profiles.is_empty() || enabled.iter().any(|e| e == "*" || profiles.contains(e));
        if active {
            service_entries.push(entry);
        } else {
            disabled.insert(entry.0.name.clone(), profiles);
        }
    }
    if service_entries.is_empty() {
        return Err(fail(
            loc,
            "services",
            "no service is enabled: every service has profiles and none of them is enabled \
             (--profile or COMPOSE_PROFILES)",
        ));
    }
    Ok((service_entries, disabled))
}

fn check_service_name(key: &Key) -> Result<()> {
    let n = &key.name;
    if n.is_empty()
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(fail(
            &key.loc,
            &format!("services.{n}"),
            "a service name may hold only letters, digits, '.', '_' and '-' \
             (it becomes part of container and DNS names)",
        ));
    }
    Ok(())
}

/// The `default` network, `{project}_default`, when a service joins it and the file
/// does not define it.
fn add_default_network(
    project: &str,
    drafts: &BTreeMap<String, Draft>,
    networks: &mut BTreeMap<String, Network>,
) {
    let uses_default = drafts
        .values()
        .any(|d| d.service.networks.contains_key("default"));
    if uses_default && !networks.contains_key("default") {
        networks.insert(
            "default".to_string(),
            Network {
                name: format!("{project}_default"),
                driver: None,
                external: false,
                labels: BTreeMap::new(),
                options: Default::default(),
            },
        );
    }
}

/// Every `--scale` names a service of the project.
fn check_scale_flags(inp: &Inputs, names: &BTreeSet<String>) -> Result<()> {
    for (svc, _) in inp.scale {
        if !names.contains(svc) {
            return Err(ConfigError(format!(
                "--scale {svc}: no such service (services: {})",
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

/// The replica target is one a project can run, and one container when
/// `container_name` fixes its name.
fn check_replicas(s: &Service, loc: &Loc, container_name_loc: Option<&Loc>) -> Result<()> {
    let svc_name = &s.name;
    if s.replicas > MAX_REPLICAS {
        return Err(fail(
            loc,
            &format!("services.{svc_name}"),
            format!(
                "{} replicas is more than one project can run (at most {MAX_REPLICAS})",
                s.replicas
            ),
        ));
    }
    if let (Some(cn), Some(loc)) = (&s.container_name, container_name_loc)
        && s.replicas > 1
    {
        return Err(fail(
            loc,
            &format!("services.{svc_name}.container_name"),
            format!(
                "{cn:?} fixes the name of the one container, so the service cannot have \
                 {} replicas (compose refuses to scale it too); remove container_name",
                s.replicas
            ),
        ));
    }
    Ok(())
}

/// Host ports the project publishes, to refuse the ones that cannot all be bound: the same
/// host port in two services, twice in one service, or in every replica of a service that
/// runs more than one on a single engine. With several nodes, replicas and services may
/// land on different engines, so only a port repeated within one container is refused; in
/// Swarm mode ports are published once for the whole swarm, so replicas share them.
struct PublishedPorts {
    single_engine: bool,
    mode: Mode,
    seen: Vec<(u16, crate::config::Protocol, Option<String>, String)>,
}

impl PublishedPorts {
    fn new(settings: &Settings, mode: Mode) -> PublishedPorts {
        PublishedPorts {
            single_engine: settings.nodes.len() <= 1,
            mode,
            seen: Vec::new(),
        }
    }

    fn check(
        &mut self,
        s: &Service,
        locs: &[(crate::config::yaml::Loc, String)],
        w: &mut Warnings,
    ) -> Result<()> {
        let swarm = self.mode == Mode::Swarm;
        if s.replicas == 0 {
            return Ok(());
        }
        let wildcard = |ip: &Option<String>| {
            ip.as_deref()
                .is_none_or(|i| i.is_empty() || i == "0.0.0.0" || i == "::")
        };
        let mine_from = self.seen.len();
        for (port, (loc, path)) in s.ports.iter().zip(locs) {
            let Some(host) = port.published else { continue };
            let proto = port.protocol;
            let clash = self.seen.iter().enumerate().find(|(i, (h, p, ip, _))| {
                *h == host
                    && *p == proto
                    && (wildcard(ip) || wildcard(&port.host_ip) || *ip == port.host_ip)
                    && (*i >= mine_from || self.single_engine || swarm)
            });
            let what = format!("host port {host}/{}", protocol_name(proto));
            if let Some((_, (_, _, _, other))) = clash {
                return Err(fail(
                    loc,
                    path,
                    format!("{what} is already published by {other}; only one can bind it"),
                ));
            }
            if s.replicas > 1 && self.single_engine && !swarm {
                let msg = format!(
                    "{what} would be published by each of the {} replicas, and only one can \
                     bind it; leave the host port out (\"{}\") to let the engine pick one per \
                     replica",
                    s.replicas, port.target
                );
                // Not known yet whether Swarm (which shares the port) will run it.
                if self.mode == Mode::Auto {
                    w.at(loc, path, &format!("{msg} (unless it runs in Swarm mode)"));
                } else {
                    return Err(fail(loc, path, msg));
                }
            }
            self.seen
                .push((host, proto, port.host_ip.clone(), path.to_string()));
        }
        Ok(())
    }
}

fn protocol_name(p: crate::config::Protocol) -> &'static str {
    match p {
        crate::config::Protocol::Tcp => "tcp",
        crate::config::Protocol::Udp => "udp",
        crate::config::Protocol::Sctp => "sctp",
    }
}

/// A service's replica target above this is refused: planning and listing that many
/// slots would cost unbounded time and memory, and no engine runs that many containers.
pub const MAX_REPLICAS: u32 = 10_000;
/// `-p` > COMPOSE_PROJECT_NAME > `name:` > the project directory's name.
fn project_name(inp: &Inputs, name_node: Option<&Node>) -> Result<String> {
    if let Some(p) = inp.project_name {
        return syntax::normalize_project_name(p).map_err(ConfigError);
    }
    if let Some(p) = inp
        .env
        .get("COMPOSE_PROJECT_NAME")
        .filter(|p| !p.is_empty())
    {
        return syntax::normalize_project_name(p)
            .map_err(|m| ConfigError(format!("COMPOSE_PROJECT_NAME: {m}")));
    }
    if let Some(n) = name_node
        && let Some(p) = read::opt_string(n, "name")?
    {
        return syntax::normalize_project_name(&p).map_err(|m| fail(&n.loc, "name", m));
    }
    let dir = inp
        .project_dir
        .file_name()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    syntax::normalize_project_name(&dir).map_err(|m| {
        ConfigError(format!(
            "{m} (the name comes from the directory {}; set name: or -p)",
            inp.project_dir.display()
        ))
    })
}

/// A top-level network or volume definition.
struct Definition {
    name: String,
    driver: Option<String>,
    external: bool,
    labels: BTreeMap<String, String>,
    /// Networks' settings; volumes use only its `driver_opts`.
    options: super::networks::NetworkOptions,
}

fn definitions(
    project: &str,
    node: &Node,
    section: &str,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, Definition>> {
    let mut out = BTreeMap::new();
    for (k, v) in read::map_or_null(node, section)? {
        let p = child(section, &k.name);
        let mut explicit_name = None;
        let mut def = Definition {
            name: String::new(),
            driver: None,
            external: false,
            labels: BTreeMap::new(),
            options: Default::default(),
        };
        for (dk, dv) in read::map_or_null(v, &p)? {
            let dp = child(&p, &dk.name);
            match dk.name.as_str() {
                "name" => explicit_name = read::opt_string(dv, &dp)?,
                "driver" => def.driver = read::opt_string(dv, &dp)?,
                "external" => match &dv.kind {
                    // Legacy form: `external: {name: x}`.
                    Kind::Map(_) => {
                        def.external = true;
                        if let Some(n) = dv.get("name") {
                            explicit_name = read::opt_string(n, &child(&dp, "name"))?;
                        }
                    }
                    _ => def.external = read::boolean(dv, &dp)?,
                },
                "labels" => {
                    def.labels = read::string_map(dv, &dp)?;
                }
                key if key.starts_with("x-") => {}
                "driver_opts" if section == "volumes" => {
                    def.options.driver_opts = super::networks::driver_opts(dv, &dp)?
                }
                key if section == "networks"
                    && super::networks::network_key(&mut def.options, key, dv, &dp)? => {}
                "enable_ipv4" => warnings.at(&dk.loc, &dp, "not supported yet, ignored"),
                _ => warnings.at(&dk.loc, &dp, "unknown key, ignored"),
            }
        }
        def.name = match (explicit_name, def.external) {
            (Some(n), _) => n,
            (None, true) => k.name.clone(),
            (None, false) => format!("{project}_{}", k.name),
        };
        out.insert(k.name.clone(), def);
    }
    Ok(out)
}

/// Reject `depends_on` cycles, naming the cycle.
fn check_cycles(drafts: &BTreeMap<String, Draft>) -> Result<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        drafts: &'a BTreeMap<String, Draft>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Result<()> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(name);
                let first = cycle[0];
                let d = &drafts[first];
                let loc = d.depends_locs.get(cycle[1]).unwrap_or(&d.loc);
                return Err(fail(
                    loc,
                    &format!("services.{first}.depends_on"),
                    format!("dependency cycle: {}", cycle.join(" -> ")),
                ));
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Active);
        stack.push(name);
        if let Some(d) = drafts.get(name) {
            for dep in d.service.depends_on.keys() {
                visit(dep, drafts, marks, stack)?;
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        Ok(())
    }
    let mut marks = HashMap::new();
    for name in drafts.keys() {
        visit(name, drafts, &mut marks, &mut Vec::new())?;
    }
    Ok(())
}

/// `service: count` entries, each checked against the services.
fn counts(node: &Node, path: &str, names: &BTreeSet<String>) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for (k, v) in read::map_or_null(node, path)? {
        let p = child(path, &k.name);
        if !names.contains(&k.name) {
            return Err(fail(&k.loc, &p, "no such service"));
        }
        out.insert(k.name.clone(), read::u32_(v, &p)?);
    }
    Ok(out)
}

fn scale_file(node: &Node, names: &BTreeSet<String>) -> Result<BTreeMap<String, u32>> {
    counts(node, "", names)
}

fn x_drover(
    node: &Node,
    names: &BTreeSet<String>,
    dir: &Path,
    warnings: &mut Warnings,
) -> Result<(Settings, BTreeMap<String, u32>)> {
    let mut settings = Settings::default();
    let mut scale = BTreeMap::new();
    let path = "x-drover";
    for (k, v) in read::map_or_null(node, path)? {
        let p = child(path, &k.name);
        match k.name.as_str() {
            "scale" => scale = counts(v, &p, names)?,
            "resync_interval" => settings.resync_interval = read::opt_duration(v, &p)?,
            "watchdog" => settings.watchdog = read::opt_duration(v, &p)?,
            "nodes" => settings.nodes = super::nodes::nodes(v, &p, dir, warnings)?,
            "notify" => settings.notify = super::webhooks::webhooks(v, &p, dir, warnings)?,
            "autoscale" => {
                settings.autoscale = super::autoscale::autoscale(v, &p, names, dir, warnings)?
            }
            "rebalance" => settings.rebalance = read::boolean(v, &p)?,
            "follow_images" => settings.follow_images = follow_images(v, &p)?,
            "ambassador" => {
                for (ak, av) in read::map_or_null(v, &p)? {
                    let ap = child(&p, &ak.name);
                    match ak.name.as_str() {
                        "image" => settings.ambassador_image = read::opt_string(av, &ap)?,
                        _ => warnings.at(&ak.loc, &ap, "unknown key, ignored"),
                    }
                }
            }
            "unhealthy" => settings.unhealthy = Some(super::lifecycle::unhealthy(v, &p)?),
            "mode" => {
                let mode = read::string(v, &p)?
                    .parse()
                    .map_err(|m| fail(&v.loc, &p, m))?;
                settings.mode = Some(mode);
            }
            "backoff" => {
                for (bk, bv) in read::map_or_null(v, &p)? {
                    let bp = child(&p, &bk.name);
                    match bk.name.as_str() {
                        "initial" => settings.backoff.initial = read::opt_duration(bv, &bp)?,
                        "max" => settings.backoff.max = read::opt_duration(bv, &bp)?,
                        "reset_after" => {
                            settings.backoff.reset_after = read::opt_duration(bv, &bp)?
                        }
                        _ => warnings.at(&bk.loc, &bp, "unknown key, ignored"),
                    }
                }
            }
            _ => warnings.at(&k.loc, &p, "unknown key, ignored"),
        }
    }
    Ok((settings, scale))
}

/// `x-drover.follow_images`: a duration, or a refresh policy's word (`daily`, `weekly`,
/// `every_<duration>`); null or `false` for none.
fn follow_images(v: &Node, p: &str) -> Result<Option<Duration>> {
    if matches!(v.kind, Kind::Null | Kind::Bool(false)) {
        return Ok(None);
    }
    let words = read::string(v, p)?;
    let every = match words.as_str() {
        "daily" => Duration::from_secs(86_400),
        "weekly" => Duration::from_secs(7 * 86_400),
        w => {
            let d = w.strip_prefix("every_").unwrap_or(w);
            super::syntax::parse_duration(d).map_err(|m| read::bad(v, p, m))?
        }
    };
    if every.is_zero() {
        return Err(read::bad(v, p, "the interval must be longer than zero"));
    }
    Ok(Some(every))
}

/// Several nodes in plain mode: the ambassadors' image and each node's address.
fn mesh(settings: &Settings, mode: Mode) -> Option<crate::config::model::Mesh> {
    (settings.nodes.len() > 1 && mode != Mode::Swarm).then(|| crate::config::model::Mesh {
        image: settings.ambassador_image.clone(),
        addresses: settings
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.mesh_address()?)))
            .collect(),
    })
}

/// sha256 (hex) of everything that shapes the service's containers: the service without
/// its name, replica target and dependencies, plus the definitions of the networks and
/// volumes it uses. Serialized as JSON with sorted keys, so it is stable across loads.
pub fn config_hash(
    s: &Service,
    networks: &BTreeMap<String, Network>,
    volumes: &BTreeMap<String, Volume>,
) -> String {
    let mut value = serde_json::to_value(s).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        for k in [
            "name",
            "replicas",
            "depends_on",
            "config_hash",
            "pull_policy",
            "placement",
            "update",
            "rollback",
            "unhealthy",
            "backoff",
            "restart",
            "mode",
            "cpus_reservation",
        ] {
            obj.remove(k);
        }
        let nets: BTreeMap<&String, &Network> = s
            .networks
            .keys()
            .filter_map(|k| networks.get_key_value(k))
            .collect();
        let vols: BTreeMap<&String, &Volume> = volumes
            .iter()
            .filter(|(_, v)| {
                s.volumes
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source.as_deref() == Some(&v.name))
            })
            .collect();
        obj.insert(
            "network_definitions".into(),
            serde_json::to_value(nets).unwrap_or_default(),
        );
        obj.insert(
            "volume_definitions".into(),
            serde_json::to_value(vols).unwrap_or_default(),
        );
    }
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
