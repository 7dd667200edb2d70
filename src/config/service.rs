//! One `services.<name>` entry -> a [`Service`] (replica target and hash filled in later).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use super::dotenv;
use super::model::*;
use super::read::{self, Result, Warnings, child, fail, index};
use super::syntax;
use super::yaml::{Kind, Loc, Node};

/// Service keys Compose knows that drover does not act on (yet): a warning, not an error.
const UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "runtime",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tty",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// What a service needs from the rest of the project while it is read.
pub struct Cx<'a> {
    pub project_dir: &'a Path,
    /// Interpolation environment (`.env` overlaid by the process environment).
    pub env: &'a HashMap<String, String>,
    pub networks: &'a BTreeMap<String, Network>,
    pub volumes: &'a BTreeMap<String, Volume>,
    pub services: &'a BTreeSet<String>,
    pub warnings: &'a mut Warnings,
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
}

pub fn read(cx: &mut Cx, name: &str, key_loc: &Loc, node: &Node) -> Result<Draft> {
    let path = format!("services.{name}");
    let entries = read::map(node, &path)?;
    let mut s = Service {
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
        placement: Placement::default(),
        update: UpdateConfig::default(),
        rollback: UpdateConfig::default(),
        unhealthy: UnhealthyAction::default(),
        backoff: BackoffSettings::default(),
        config_hash: String::new(),
    };
    let mut d = Draft {
        service: s.clone(),
        file_replicas: None,
        loc: key_loc.clone(),
        container_name_loc: None,
        depends_locs: BTreeMap::new(),
        default_network: true,
        unhealthy: None,
    };
    let mut image = None;
    let mut has_build = None;
    let mut env_from_files: Vec<(String, Option<String>)> = Vec::new();
    let mut env_inline = Vec::new();
    let mut restart_key: Option<(Option<RestartCondition>, Option<u32>)> = None;
    let mut deploy_restart: Option<RestartPolicy> = None;
    let mut scale_key = None;
    let mut deploy_replicas = None;
    let mut tmpfs = Vec::new();

    for (k, v) in entries {
        let p = child(&path, &k.name);
        let p = p.as_str();
        match k.name.as_str() {
            "image" => image = Some(read::string(v, p)?),
            "command" => s.command = opt_words(v, p)?,
            "entrypoint" => s.entrypoint = opt_words(v, p)?,
            "environment" => env_inline = read::map_or_list(v, p)?,
            "env_file" => env_from_files = env_files(cx, v, p)?,
            "labels" => {
                for e in read::map_or_list(v, p)? {
                    s.labels.insert(e.key, e.value.unwrap_or_default());
                }
            }
            "ports" => {
                for (i, item) in read::seq(v, p)?.iter().enumerate() {
                    ports(item, &index(p, i), &mut s.ports)?;
                }
            }
            "volumes" => {
                for (i, item) in read::seq(v, p)?.iter().enumerate() {
                    s.volumes.push(mount(cx, item, &index(p, i))?);
                }
            }
            "tmpfs" => {
                for target in read::string_or_list(v, p, false)? {
                    let target = target.split(':').next().unwrap_or_default().to_string();
                    if !target.starts_with('/') {
                        return Err(fail(&v.loc, p, "the container path must be absolute"));
                    }
                    tmpfs.push(Mount {
                        kind: MountKind::Tmpfs,
                        source: None,
                        target,
                        read_only: false,
                    });
                }
            }
            "networks" => {
                d.default_network = false;
                networks(cx, v, p, &mut s.networks)?;
            }
            "healthcheck" => s.healthcheck = healthcheck(cx.warnings, v, p)?,
            "restart" => restart_key = Some(restart(v, p)?),
            "deploy" => {
                if let Some(pl) = v.get("placement") {
                    s.placement = super::nodes::placement(pl, &child(p, "placement"), cx.warnings)?;
                }
                if let Some(u) = v.get("update_config") {
                    s.update = super::lifecycle::update_config(
                        u,
                        &child(p, "update_config"),
                        cx.warnings,
                    )?;
                }
                if let Some(u) = v.get("rollback_config") {
                    s.rollback = super::lifecycle::update_config(
                        u,
                        &child(p, "rollback_config"),
                        cx.warnings,
                    )?;
                }
                let (replicas, policy) = deploy(cx.warnings, v, p)?;
                deploy_replicas = replicas.map(|r| (r, v.loc.clone()));
                deploy_restart = policy;
            }
            "scale" => scale_key = Some(read::u32_(v, p)?),
            "stop_signal" => s.stop_signal = read::opt_string(v, p)?,
            "stop_grace_period" => s.stop_grace_period = read::duration(v, p)?,
            "user" => s.user = read::opt_string(v, p)?,
            "working_dir" => s.working_dir = read::opt_string(v, p)?,
            "hostname" => s.hostname = read::opt_string(v, p)?,
            "container_name" => {
                s.container_name = read::opt_string(v, p)?;
                d.container_name_loc = Some(k.loc.clone());
            }
            "depends_on" => depends_on(cx, v, p, &mut s.depends_on, &mut d.depends_locs)?,
            "x-drover" => {
                let (action, backoff) = super::lifecycle::service_drover(v, p, cx.warnings)?;
                d.unhealthy = action;
                s.backoff = backoff;
            }
            key if key.starts_with("x-") => {}
            "build" => has_build = Some(k.loc.clone()),
            key if UNSUPPORTED.contains(&key) => {
                cx.warnings.at(&k.loc, p, "not supported yet, ignored");
            }
            _ => cx.warnings.at(&k.loc, p, "unknown key, ignored"),
        }
    }

    s.image = match (image, has_build) {
        (Some(image), build) => {
            if let Some(loc) = build {
                cx.warnings.at(
                    &loc,
                    &child(&path, "build"),
                    "ignored: drover runs the image, it does not build it",
                );
            }
            image
        }
        (None, Some(_)) => {
            return Err(fail(
                key_loc,
                &path,
                "has build but no image; drover runs images, it does not build them",
            ));
        }
        (None, None) => return Err(fail(key_loc, &path, "has no image")),
    };

    // env_file entries first, `environment` on top; a bare KEY takes the environment's value.
    for (k, v) in env_from_files {
        s.environment.insert(k, v);
    }
    for e in env_inline {
        let value = e.value.or_else(|| cx.env.get(&e.key).cloned());
        s.environment.insert(e.key, value);
    }
    s.volumes.extend(tmpfs);
    if d.default_network {
        s.networks
            .insert("default".to_string(), ServiceNetwork::default());
    }

    s.restart = match (restart_key, deploy_restart) {
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
    };

    d.file_replicas = match (deploy_replicas, scale_key) {
        (Some((a, loc)), Some(b)) if a != b => {
            return Err(fail(
                &loc,
                &child(&path, "deploy.replicas"),
                "differs from scale; set only one",
            ));
        }
        (Some((a, _)), _) => Some(a),
        (None, b) => b,
    };
    d.service = s;
    Ok(d)
}

fn opt_words(v: &Node, p: &str) -> Result<Option<Vec<String>>> {
    match v.kind {
        Kind::Null => Ok(None),
        _ => read::string_or_list(v, p, true).map(Some),
    }
}

fn env_files(cx: &mut Cx, v: &Node, p: &str) -> Result<Vec<(String, Option<String>)>> {
    let mut files: Vec<(String, bool, Loc, String)> = Vec::new();
    match &v.kind {
        Kind::Str(s) => files.push((s.clone(), true, v.loc.clone(), p.to_string())),
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = index(p, i);
                match &item.kind {
                    Kind::Map(entries) => {
                        let mut path = None;
                        let mut required = true;
                        for (k, val) in entries {
                            let kp = child(&ip, &k.name);
                            match k.name.as_str() {
                                "path" => path = Some(read::string(val, &kp)?),
                                "required" => required = read::boolean(val, &kp)?,
                                "format" => {}
                                key if key.starts_with("x-") => {}
                                _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
                            }
                        }
                        let path = path.ok_or_else(|| fail(&item.loc, &ip, "missing path"))?;
                        files.push((path, required, item.loc.clone(), ip));
                    }
                    _ => files.push((read::string(item, &ip)?, true, item.loc.clone(), ip)),
                }
            }
        }
        _ => return Err(fail(&v.loc, p, "expected a path or a list of paths")),
    }
    let mut out = Vec::new();
    for (file, required, loc, ip) in files {
        let full = syntax::join_lexically(cx.project_dir, Path::new(&file));
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => {
                return Err(fail(
                    &loc,
                    &ip,
                    format!("cannot read {}: {e}", full.display()),
                ));
            }
        };
        let entries = dotenv::parse(&text, cx.env)
            .map_err(|(line, msg)| fail(&loc, &ip, format!("{}:{line}: {msg}", full.display())))?;
        for (k, v) in entries {
            let v = v.or_else(|| cx.env.get(&k).cloned());
            out.push((k, v));
        }
    }
    Ok(out)
}

fn ports(item: &Node, p: &str, out: &mut Vec<Port>) -> Result<()> {
    match &item.kind {
        Kind::Int(_) => out.push(Port {
            target: read::u16_(item, p, "a port number (1-65535)")?,
            published: None,
            host_ip: None,
            protocol: Protocol::Tcp,
        }),
        Kind::Str(s) => {
            let spec = syntax::parse_port_short(s).map_err(|m| fail(&item.loc, p, m))?;
            for i in 0..=(spec.target.1 - spec.target.0) {
                out.push(Port {
                    target: spec.target.0 + i,
                    published: spec.published.map(|(a, _)| a + i),
                    host_ip: spec.host_ip.clone(),
                    protocol: spec.protocol,
                });
            }
        }
        Kind::Map(entries) => {
            let mut port = Port {
                target: 0,
                published: None,
                host_ip: None,
                protocol: Protocol::Tcp,
            };
            for (k, v) in entries {
                let kp = child(p, &k.name);
                match k.name.as_str() {
                    "target" => port.target = read::u16_(v, &kp, "a port number (1-65535)")?,
                    "published" => {
                        port.published = match &v.kind {
                            Kind::Null => None,
                            Kind::Str(s) if s.is_empty() => None,
                            _ => Some(read::u16_(v, &kp, "a port number (1-65535)")?),
                        }
                    }
                    "host_ip" => port.host_ip = read::opt_string(v, &kp)?,
                    "protocol" => {
                        port.protocol = syntax::parse_protocol(&read::string(v, &kp)?)
                            .map_err(|m| fail(&v.loc, &kp, m))?
                    }
                    "mode" | "name" | "app_protocol" => {}
                    key if key.starts_with("x-") => {}
                    _ => return Err(fail(&k.loc, &kp, "unknown port setting")),
                }
            }
            if port.target == 0 {
                return Err(fail(&item.loc, p, "missing target"));
            }
            out.push(port);
        }
        _ => return Err(fail(&item.loc, p, "expected a port string or a map")),
    }
    Ok(())
}

/// Turn a volume key or host path into the mount's source.
fn resolve_source(cx: &Cx, kind: MountKind, src: &str, loc: &Loc, p: &str) -> Result<String> {
    match kind {
        MountKind::Bind => {
            let expanded = if src == "~" || src.starts_with("~/") {
                let home = cx.env.get("HOME").ok_or_else(|| {
                    fail(
                        loc,
                        p,
                        "cannot expand ~: HOME is not set in the environment",
                    )
                })?;
                format!("{home}{}", &src[1..])
            } else {
                src.to_string()
            };
            Ok(syntax::join_lexically(cx.project_dir, Path::new(&expanded))
                .to_string_lossy()
                .into_owned())
        }
        MountKind::Volume => cx.volumes.get(src).map(|v| v.name.clone()).ok_or_else(|| {
            fail(
                loc,
                p,
                format!("volume {src:?} is not declared in the top-level volumes"),
            )
        }),
        MountKind::Tmpfs => Err(fail(loc, p, "a tmpfs mount has no source")),
    }
}

fn mount(cx: &mut Cx, item: &Node, p: &str) -> Result<Mount> {
    match &item.kind {
        Kind::Str(s) => {
            let spec = syntax::parse_volume_short(s).map_err(|m| fail(&item.loc, p, m))?;
            let source = match &spec.source {
                Some(src) => Some(resolve_source(cx, spec.kind, src, &item.loc, p)?),
                None => None,
            };
            Ok(Mount {
                kind: spec.kind,
                source,
                target: spec.target,
                read_only: spec.read_only,
            })
        }
        Kind::Map(entries) => {
            let mut kind = None;
            let mut source: Option<(String, Loc)> = None;
            let mut target = None;
            let mut read_only = false;
            for (k, v) in entries {
                let kp = child(p, &k.name);
                match k.name.as_str() {
                    "type" => {
                        kind = Some(match read::string(v, &kp)?.as_str() {
                            "bind" => MountKind::Bind,
                            "volume" => MountKind::Volume,
                            "tmpfs" => MountKind::Tmpfs,
                            _ => return Err(fail(&v.loc, &kp, "expected bind, volume or tmpfs")),
                        })
                    }
                    "source" => {
                        source = read::opt_string(v, &kp)?.map(|s| (s, v.loc.clone()));
                    }
                    "target" => target = Some(read::string(v, &kp)?),
                    "read_only" => read_only = read::boolean(v, &kp)?,
                    "bind" | "volume" | "tmpfs" | "consistency" | "image" => {
                        cx.warnings.at(&k.loc, &kp, "not supported yet, ignored");
                    }
                    key if key.starts_with("x-") => {}
                    _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
                }
            }
            let kind = kind.ok_or_else(|| fail(&item.loc, p, "missing type"))?;
            let target = target.ok_or_else(|| fail(&item.loc, p, "missing target"))?;
            if !target.starts_with('/') {
                return Err(fail(&item.loc, p, "the container path must be absolute"));
            }
            let source = match (kind, source) {
                (MountKind::Tmpfs, _) => None,
                (MountKind::Bind, None) => return Err(fail(&item.loc, p, "missing source")),
                (kind, Some((src, loc))) => {
                    Some(resolve_source(cx, kind, &src, &loc, &child(p, "source"))?)
                }
                (MountKind::Volume, None) => None,
            };
            Ok(Mount {
                kind,
                source,
                target,
                read_only,
            })
        }
        _ => Err(fail(&item.loc, p, "expected a volume string or a map")),
    }
}

fn networks(
    cx: &mut Cx,
    v: &Node,
    p: &str,
    out: &mut BTreeMap<String, ServiceNetwork>,
) -> Result<()> {
    for (name, loc, settings) in read::names_with_settings(v, p)? {
        let np = child(p, &name);
        if !cx.networks.contains_key(&name) && name != "default" {
            return Err(fail(
                &loc,
                &np,
                format!("network {name:?} is not declared in the top-level networks"),
            ));
        }
        let mut net = ServiceNetwork::default();
        if let Some(settings) = settings {
            for (k, val) in read::map_or_null(settings, &np)? {
                let kp = child(&np, &k.name);
                match k.name.as_str() {
                    "aliases" => net.aliases = read::string_or_list(val, &kp, false)?,
                    key if key.starts_with("x-") => {}
                    _ => cx.warnings.at(&k.loc, &kp, "not supported yet, ignored"),
                }
            }
        }
        out.insert(name, net);
    }
    Ok(())
}

fn healthcheck(w: &mut Warnings, v: &Node, p: &str) -> Result<Option<Healthcheck>> {
    let mut h = Healthcheck {
        test: Vec::new(),
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
    };
    let mut disable = false;
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "test" => {
                h.test = match &val.kind {
                    Kind::Str(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    Kind::Seq(_) => {
                        let t = read::string_or_list(val, &kp, false)?;
                        match t.first().map(String::as_str) {
                            Some("CMD" | "CMD-SHELL" | "NONE") => t,
                            _ => {
                                return Err(fail(
                                    &val.loc,
                                    &kp,
                                    "a test list must start with CMD, CMD-SHELL or NONE",
                                ));
                            }
                        }
                    }
                    _ => return Err(fail(&val.loc, &kp, "expected a string or a list")),
                }
            }
            "interval" => h.interval = read::opt_duration(val, &kp)?,
            "timeout" => h.timeout = read::opt_duration(val, &kp)?,
            "start_period" => h.start_period = read::opt_duration(val, &kp)?,
            "retries" => h.retries = Some(read::u32_(val, &kp)?),
            "disable" => disable = read::boolean(val, &kp)?,
            "start_interval" => w.at(&k.loc, &kp, "not supported yet, ignored"),
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    if disable {
        h.test = vec!["NONE".to_string()];
    }
    // An empty test keeps the image's HEALTHCHECK command with these timings.
    Ok(Some(h))
}

fn restart(v: &Node, p: &str) -> Result<(Option<RestartCondition>, Option<u32>)> {
    let bad = || {
        fail(
            &v.loc,
            p,
            "expected no, always, on-failure, on-failure:N or unless-stopped",
        )
    };
    // `restart: no` unquoted is the boolean false in YAML 1.1 readers.
    let text = match &v.kind {
        Kind::Bool(false) => "no".to_string(),
        Kind::Str(s) => s.clone(),
        _ => return Err(bad()),
    };
    Ok(match text.as_str() {
        "no" | "" => (Some(RestartCondition::Never), None),
        "always" | "unless-stopped" => (Some(RestartCondition::Always), None),
        "on-failure" => (Some(RestartCondition::OnFailure), None),
        other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(n)) => (Some(RestartCondition::OnFailure), Some(n)),
            _ => return Err(bad()),
        },
    })
}

fn deploy(w: &mut Warnings, v: &Node, p: &str) -> Result<(Option<u32>, Option<RestartPolicy>)> {
    let mut replicas = None;
    let mut policy = None;
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "replicas" => replicas = Some(read::u32_(val, &kp)?),
            "restart_policy" => {
                let mut rp = RestartPolicy::default();
                for (rk, rv) in read::map(val, &kp)? {
                    let rp_path = child(&kp, &rk.name);
                    match rk.name.as_str() {
                        "condition" => {
                            rp.condition = match read::string(rv, &rp_path)?.as_str() {
                                "none" => RestartCondition::Never,
                                "on-failure" => RestartCondition::OnFailure,
                                "any" => RestartCondition::Always,
                                _ => {
                                    return Err(fail(
                                        &rv.loc,
                                        &rp_path,
                                        "expected none, on-failure or any",
                                    ));
                                }
                            }
                        }
                        "delay" => rp.delay = read::opt_duration(rv, &rp_path)?,
                        "max_attempts" => rp.max_attempts = Some(read::u32_(rv, &rp_path)?),
                        "window" => rp.window = read::opt_duration(rv, &rp_path)?,
                        key if key.starts_with("x-") => {}
                        _ => w.at(&rk.loc, &rp_path, "unknown key, ignored"),
                    }
                }
                policy = Some(rp);
            }
            "mode" | "endpoint_mode" | "labels" | "resources" => {
                w.at(&k.loc, &kp, "not supported yet, ignored")
            }
            "placement" | "update_config" | "rollback_config" => {}
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok((replicas, policy))
}

fn depends_on(
    cx: &mut Cx,
    v: &Node,
    p: &str,
    out: &mut BTreeMap<String, DependsOn>,
    locs: &mut BTreeMap<String, Loc>,
) -> Result<()> {
    for (name, loc, settings) in read::names_with_settings(v, p)? {
        let np = child(p, &name);
        let mut dep = DependsOn {
            condition: DependsCondition::ServiceStarted,
            required: true,
        };
        if let Some(settings) = settings {
            for (k, val) in read::map_or_null(settings, &np)? {
                let kp = child(&np, &k.name);
                match k.name.as_str() {
                    "condition" => {
                        dep.condition = match read::string(val, &kp)?.as_str() {
                            "service_started" => DependsCondition::ServiceStarted,
                            "service_healthy" => DependsCondition::ServiceHealthy,
                            "service_completed_successfully" => {
                                DependsCondition::ServiceCompletedSuccessfully
                            }
                            _ => {
                                return Err(fail(
                                    &val.loc,
                                    &kp,
                                    "expected service_started, service_healthy or \
                                     service_completed_successfully",
                                ));
                            }
                        }
                    }
                    "required" => dep.required = read::boolean(val, &kp)?,
                    "restart" => cx.warnings.at(&k.loc, &kp, "not supported yet, ignored"),
                    key if key.starts_with("x-") => {}
                    _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
                }
            }
        }
        if !cx.services.contains(&name) {
            if dep.required {
                return Err(fail(&loc, &np, format!("no such service {name:?}")));
            }
            cx.warnings
                .at(&loc, &np, "no such service; optional dependency ignored");
            continue;
        }
        out.insert(name.clone(), dep);
        locs.insert(name, loc);
    }
    Ok(())
}
