//! The same containers compose v2 would create: an engine-level differential suite.
//!
//! Each project under `tests/fixtures/engine/` is brought up twice on the local engine, in
//! a copy of its directory each: once by Docker Compose v2 (`docker compose -p A up -d`,
//! then `down` so host ports are free again) and once by drover (`drover run -p B` until
//! the same containers are there, then stopped). What the engine holds is then compared
//! field by field: every container-affecting field of each container (Config,
//! HostConfig, mounts, networks and aliases, health, state, the labels users set, the host
//! paths the engine created for binds), and the networks and volumes created.
//!
//! Normalised, because they are the same to the engine: project names (and the project
//! directories named after them), `Binds` strings against `Mounts` entries and the
//! `tmpfs` map, the default stop timeout, `CAP_` prefixes, trailing slashes, the order of
//! distinct environment variables, extra hosts, ulimits and link aliases, ids,
//! timestamps, addresses the engine allocates, empty against absent, and labels only
//! compose writes ([`COMPOSE_ONLY_LABELS`]). drover's deliberate differences are in
//! [`DELIBERATE`], with the reason. The fixtures run in parallel threads, each with its
//! own project names; everything is removed afterwards, also when a comparison fails.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use support::drover::Project;
use support::{TEST_IMAGE, local_engine, repo_root, text, unique_name};

/// The projects compared, one directory each under `tests/fixtures/engine/`.
const FIXTURES: &[&str] = &["process", "storage", "network", "shop", "monitoring"];

/// Where drover differs from compose on purpose, with why: (containers whose name ends
/// with this, or every one for `*`; fields under this path). Left out of the comparison.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "*",
        "HostConfig.RestartPolicy",
        "drover restarts containers itself (its `restart` default is `always`); the engine's \
         policy is always `no`, so the engine never races it",
    ),
    (
        "*",
        "Config.Labels.drover.",
        "drover's own labels (project, service, slot, config hash, node, generation): its \
         state lives in labels",
    ),
    (
        "-reader-ro-1",
        "HostConfig.VolumesFrom",
        "`volumes_from: [SERVICE:ro]` mounts the volumes read-only, as `docker run \
         --volumes-from` does; compose v2 drops the `:ro`",
    ),
    (
        "-reader-ro-1",
        "Mounts.",
        "(the same: the mounts from volumes_from are read-only)",
    ),
];

/// The entry of [`DELIBERATE`] that covers this difference, if any.
fn deliberate(name: &str, path: &str) -> Option<usize> {
    DELIBERATE
        .iter()
        .position(|(n, p, _)| (*n == "*" || name.ends_with(n)) && path.starts_with(p))
}

/// Labels compose writes for its own bookkeeping, which drover does not need to match.
const COMPOSE_ONLY_LABELS: &[&str] = &[
    "com.docker.compose.config-hash",
    "com.docker.compose.version",
    "com.docker.compose.image",
    "com.docker.compose.depends_on",
    "com.docker.compose.replace",
    "com.docker.compose.project.config_files",
    "com.docker.compose.project.working_dir",
    "com.docker.compose.project.environment_file",
];

/// How long drover may take to bring a fixture's containers to compose's state.
const UP: Duration = Duration::from_secs(90);

/// Install (once per process) and find Docker Compose v2.
fn compose_v2() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/compose-v2.sh"))
            .output()
            .expect("cannot run scripts/compose-v2.sh");
        assert!(
            out.status.success(),
            "scripts/compose-v2.sh failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// `docker` against the local engine with `env` added, in `dir`.
fn docker_in(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    for var in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_API_VERSION",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DOCKER_HOST", local_engine());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.current_dir(dir)
        .args(args)
        .output()
        .expect("cannot run docker")
}

/// `docker ... inspect` output; what was removed since it was listed is left out.
fn docker_json(args: &[&str]) -> Value {
    let out = docker_in(Path::new("/"), &[], args);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// Ids of the containers, networks or volumes labelled with compose project `name`.
fn listed(kind: &str, name: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={name}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-aq", "--no-trunc", "--filter", &filter],
        "network" => vec!["network", "ls", "-q", "--filter", &filter],
        _ => vec!["volume", "ls", "-q", "--filter", &filter],
    };
    let out = docker_in(Path::new("/"), &[], &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `docker inspect` of everything of `kind` labelled with project `name`.
fn inspect_all(kind: &str, name: &str) -> Vec<Value> {
    let ids = listed(kind, name);
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = match kind {
        "container" => vec!["inspect"],
        "network" => vec!["network", "inspect"],
        _ => vec!["volume", "inspect"],
    };
    args.extend(ids.iter().map(String::as_str));
    match docker_json(&args) {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Compose's side of one fixture: its directory, and `down -v` when dropped.
struct ComposeSide {
    name: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl ComposeSide {
    fn down(&self) {
        let _ = docker_in(
            &self.dir,
            &self.env,
            &[
                "compose",
                "-p",
                &self.name,
                "down",
                "-v",
                "-t",
                "0",
                "--remove-orphans",
            ],
        );
    }
}

impl Drop for ComposeSide {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A network both projects use as `external`, removed when dropped.
struct ExternalNetwork(String);

impl Drop for ExternalNetwork {
    fn drop(&mut self) {
        let _ = docker_in(Path::new("/"), &[], &["network", "rm", &self.0]);
    }
}

/// A container outside both projects (for `external_links`, `volumes_from:
/// container:NAME`, `network_mode: container:NAME`), removed when dropped.
struct ExternalContainer(String);

impl Drop for ExternalContainer {
    fn drop(&mut self) {
        let _ = docker_in(Path::new("/"), &[], &["rm", "-f", "-v", &self.0]);
    }
}

/// What the engine holds for one project, normalised.
#[derive(Default)]
struct Held {
    containers: BTreeMap<String, Value>,
    networks: BTreeMap<String, Value>,
    volumes: BTreeMap<String, Value>,
}

fn held(project: &str, dir: &Path) -> Held {
    let norm = |v: &Value| {
        let t = v.to_string().replace(project, "<project>");
        serde_json::from_str::<Value>(&t).unwrap()
    };
    let mut out = Held::default();
    let containers = inspect_all("container", project);
    // Every container's name by id: references may point outside the project.
    let listed = docker_in(
        Path::new("/"),
        &[],
        &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
    );
    let names: BTreeMap<String, String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    for c in &containers {
        let v = norm(&container_view(c, dir, &names));
        out.containers
            .insert(v["Name"].as_str().unwrap_or_default().to_string(), v);
    }
    for n in inspect_all("network", project) {
        let v = norm(&network_view(&n));
        out.networks
            .insert(v["Name"].as_str().unwrap_or_default().to_string(), v);
    }
    for n in inspect_all("volume", project) {
        let v = norm(&volume_view(&n));
        out.volumes
            .insert(v["Name"].as_str().unwrap_or_default().to_string(), v);
    }
    out
}

/// Container name -> (status, exit code) for compose project `name`.
fn states(name: &str) -> BTreeMap<String, (String, i64)> {
    inspect_all("container", name)
        .iter()
        .map(|c| {
            (
                c["Name"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .replace(name, "<project>"),
                (
                    c["State"]["Status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["State"]["ExitCode"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect()
}

/// Run one fixture on both sides; the differences found, one line each.
/// Run one fixture on both sides: the differences found, one line each, and the entries
/// of [`DELIBERATE`] that were met.
fn compare(fixture: &str, external: &[(String, String)]) -> (Vec<String>, BTreeSet<usize>) {
    let source = repo_root().join("tests/fixtures/engine").join(fixture);
    let a = unique_name(&format!("edc-{fixture}"));
    let b = unique_name(&format!("edd-{fixture}"));

    // Compose v2.
    let compose = ComposeSide {
        dir: std::env::temp_dir().join(format!("drover-it-{a}")),
        name: a.clone(),
        env: external.to_vec(),
    };
    let _ = std::fs::remove_dir_all(&compose.dir);
    copy_dir(&source, &compose.dir);
    let out = docker_in(
        &compose.dir,
        &compose.env,
        &["compose", "-p", &a, "up", "-d"],
    );
    assert!(
        out.status.success(),
        "{fixture}: docker compose up failed:\n{}",
        text(&out)
    );
    // One-off jobs and health: let them settle as drover's side will.
    let want = settle(&a);
    let theirs = held(&a, &compose.dir);
    compose.down();

    // drover.
    let mut p = Project::new(&b, "");
    copy_dir(&source, &p.dir);
    p.env.extend(external.iter().cloned());
    let mut d = p.run(&[]);
    let deadline = Instant::now() + UP;
    let mut diffs = Vec::new();
    let mut met = BTreeSet::new();
    loop {
        let got = states(&b);
        if got == want {
            break;
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            diffs.push(format!(
                "{fixture}: drover exited with {status}; logs:\n{}",
                d.logs().join("\n")
            ));
            break;
        }
        if Instant::now() >= deadline {
            diffs.push(format!(
                "{fixture}: containers after {UP:?}: drover {got:?}, compose {want:?}; logs:\n{}",
                d.logs().join("\n")
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    d.signal("TERM");
    let _ = d.wait_exit(Duration::from_secs(5));
    let ours = held(&b, &p.dir);
    // DROVER_EDIFF_DUMP=DIR writes both sides, normalised, for a closer look.
    if let Some(out) = std::env::var_os("DROVER_EDIFF_DUMP") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        for (side, h) in [("compose", &theirs), ("drover", &ours)] {
            let all = json!({
                "containers": h.containers,
                "networks": h.networks,
                "volumes": h.volumes,
            });
            let text = serde_json::to_string_pretty(&all).unwrap();
            std::fs::write(out.join(format!("{fixture}.{side}.json")), text).unwrap();
        }
    }

    for (what, t, o) in [
        ("container", &theirs.containers, &ours.containers),
        ("network", &theirs.networks, &ours.networks),
        ("volume", &theirs.volumes, &ours.volumes),
    ] {
        for name in t.keys().chain(o.keys()).collect::<BTreeSet<_>>() {
            match (t.get(name), o.get(name)) {
                (Some(tv), Some(ov)) => {
                    let mut found = Vec::new();
                    diff("", tv, ov, &mut found);
                    for (path, f) in found {
                        match deliberate(name, &path).filter(|_| what == "container") {
                            Some(i) => {
                                met.insert(i);
                            }
                            None => diffs.push(format!("{fixture}: {what} {name}: {path}: {f}")),
                        }
                    }
                }
                (Some(_), None) => diffs.push(format!("{fixture}: {what} {name}: drover has none")),
                (None, Some(_)) => {
                    diffs.push(format!("{fixture}: {what} {name}: compose has none"))
                }
                (None, None) => {}
            }
        }
    }
    drop(d);
    drop(p);
    drop(compose);
    (diffs, met)
}

/// Wait until compose's containers stop changing state (a job finishing, a dependent
/// starting); return their states.
fn settle(name: &str) -> BTreeMap<String, (String, i64)> {
    let mut last = states(name);
    let mut stable_since = Instant::now();
    let start = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(2) && start.elapsed() < UP {
        std::thread::sleep(Duration::from_millis(250));
        let now = states(name);
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    last
}

/// Null, `[]`, `{}` and `""` are the same to the engine.
fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Field-by-field differences between compose's `t` and drover's `o`.
fn diff(path: &str, t: &Value, o: &Value, out: &mut Vec<(String, String)>) {
    if empty(Some(t)) && empty(Some(o)) {
        return;
    }
    match (t, o) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&p, x, y, out),
                    (x, y) if empty(x) && empty(y) => {}
                    (x, y) => out.push((
                        p,
                        format!(
                            "compose {}, drover {}",
                            x.unwrap_or(&Value::Null),
                            y.unwrap_or(&Value::Null)
                        ),
                    )),
                }
            }
        }
        _ if t == o => {}
        _ => out.push((path.to_string(), format!("compose {t}, drover {o}"))),
    }
}

fn sort_strings(obj: &mut Map<String, Value>, key: &str) {
    if let Some(Value::Array(a)) = obj.get_mut(key) {
        a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
    }
}

/// Labels without the ones only compose writes (drover's stay: they are listed as
/// deliberate).
fn compose_only_stripped(labels: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in labels.as_object().into_iter().flatten() {
        if COMPOSE_ONLY_LABELS.contains(&k.as_str()) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// Labels of networks and volumes: without compose's bookkeeping and drover's.
fn strip_labels(labels: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in labels.as_object().into_iter().flatten() {
        if k.starts_with("drover.") || COMPOSE_ONLY_LABELS.contains(&k.as_str()) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `size=2m` style sizes in bytes.
fn bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    num.parse::<i64>().ok().map(|n| n * mult)
}

/// Every mount a container was asked for, whatever form it was sent in (`Binds`,
/// `Mounts`, the `tmpfs` map): target -> one normalised description.
fn requested_mounts(h: &Value) -> Value {
    let clean = |p: &str| {
        let t = p.trim_end_matches('/');
        if t.is_empty() {
            "/".to_string()
        } else {
            t.to_string()
        }
    };
    let mut out = Map::new();
    for b in h["Binds"].as_array().into_iter().flatten() {
        let s = b.as_str().unwrap_or_default();
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        let (src, dst, opts) = (parts[0], parts.get(1).copied().unwrap_or(""), parts.get(2));
        let opts: Vec<&str> = opts.map(|o| o.split(',').collect()).unwrap_or_default();
        let kind = if src.starts_with('/') {
            "bind"
        } else {
            "volume"
        };
        let mut m = json!({
            "Type": kind,
            "Source": clean(src),
            "ReadOnly": opts.contains(&"ro"),
        });
        for o in &opts {
            match *o {
                "z" | "Z" => m["SELinux"] = json!(o),
                "nocopy" => m["NoCopy"] = json!(true),
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    m["Propagation"] = json!(o)
                }
                _ => {}
            }
        }
        out.insert(clean(dst), m);
    }
    for mnt in h["Mounts"].as_array().into_iter().flatten() {
        let kind = mnt["Type"].as_str().unwrap_or_default();
        let mut m = json!({
            "Type": kind,
            "ReadOnly": mnt["ReadOnly"].as_bool().unwrap_or(false),
        });
        if let Some(s) = mnt["Source"].as_str().filter(|s| !s.is_empty()) {
            m["Source"] = json!(clean(s));
        }
        if let Some(p) = mnt["BindOptions"]["Propagation"].as_str() {
            m["Propagation"] = json!(p);
        }
        if mnt["VolumeOptions"]["NoCopy"].as_bool() == Some(true) {
            m["NoCopy"] = json!(true);
        }
        if let Some(n) = mnt["TmpfsOptions"]["SizeBytes"].as_i64() {
            m["Size"] = json!(n);
        }
        if let Some(n) = mnt["TmpfsOptions"]["Mode"].as_i64() {
            m["Mode"] = json!(n);
        }
        out.insert(clean(mnt["Target"].as_str().unwrap_or_default()), m);
    }
    for (dst, opts) in h["Tmpfs"].as_object().into_iter().flatten() {
        let mut m = json!({"Type": "tmpfs", "ReadOnly": false});
        for o in opts.as_str().unwrap_or_default().split(',') {
            match o.split_once('=') {
                Some(("size", s)) => m["Size"] = json!(bytes(s)),
                Some(("mode", s)) => m["Mode"] = json!(i64::from_str_radix(s, 8).ok()),
                _ => {}
            }
        }
        out.insert(clean(dst), m);
    }
    Value::Object(out)
}

/// The fields of a container that affect how it runs, normalised.
fn container_view(c: &Value, dir: &Path, names: &BTreeMap<String, String>) -> Value {
    let id = c["Id"].as_str().unwrap_or_default();
    let mut config = c["Config"].clone();
    let cfg = config.as_object_mut().unwrap();
    if cfg.get("Hostname").and_then(Value::as_str) == id.get(..12) {
        cfg.insert("Hostname".into(), json!("<id>"));
    }
    // Compose leaves the stop timeout to the engine's default (10 s), drover says it.
    if cfg.get("StopTimeout").is_none_or(Value::is_null) {
        cfg.insert("StopTimeout".into(), json!(10));
    }
    let labels = compose_only_stripped(&cfg["Labels"]);
    cfg.insert("Labels".into(), labels);
    // Distinct variables: their order does not matter.
    sort_strings(cfg, "Env");
    // How a client attaches (`docker run -a`), not how the container runs.
    for k in ["AttachStdin", "AttachStdout", "AttachStderr"] {
        cfg.remove(k);
    }

    let mut host = c["HostConfig"].clone();
    let mounts = requested_mounts(&host);
    let h = host.as_object_mut().unwrap();
    for k in ["Binds", "Mounts", "Tmpfs"] {
        h.remove(k);
    }
    // Distinct host names: their order in /etc/hosts does not matter.
    sort_strings(h, "ExtraHosts");
    // Links are aliases: repeats and order do not matter.
    if let Some(Value::Array(l)) = h.get_mut("Links") {
        l.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
        l.dedup();
    }
    // One limit per name (compose sends them in map order, which varies).
    if let Some(Value::Array(u)) = h.get_mut("Ulimits") {
        u.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    }
    // Other containers by id (compose) or by name (drover).
    if let Some(Value::Array(from)) = h.get("VolumesFrom") {
        let from: Vec<Value> = from
            .iter()
            .filter_map(Value::as_str)
            .map(|f| {
                let (c, mode) = f.split_once(':').map_or((f, ""), |(c, m)| (c, m));
                let c = names.get(c).map_or(c, String::as_str);
                json!(if mode.is_empty() {
                    c.to_string()
                } else {
                    format!("{c}:{mode}")
                })
            })
            .collect();
        h.insert("VolumesFrom".into(), json!(from));
    }
    h.insert("RequestedMounts".into(), mounts);
    for k in ["CapAdd", "CapDrop"] {
        if let Some(Value::Array(caps)) = h.get(k) {
            let mut caps: Vec<String> = caps
                .iter()
                .filter_map(Value::as_str)
                .map(|c| c.trim_start_matches("CAP_").to_string())
                .collect();
            caps.sort();
            h.insert(k.into(), json!(caps));
        }
    }
    // The network mode names the other container by id once created.
    if let Some(mode) = h.get("NetworkMode").and_then(Value::as_str)
        && let Some(other) = mode.strip_prefix("container:")
        && is_id(other)
    {
        h.insert("NetworkMode".into(), json!("container:<id>"));
    }

    // What the engine mounted, and the host paths behind binds into the project dir.
    let mut mounted = Map::new();
    let mut host_paths = Map::new();
    for m in c["Mounts"].as_array().into_iter().flatten() {
        let dest = m["Destination"].as_str().unwrap_or_default().to_string();
        // Compared with the requested mounts: the `tmpfs` map does not list them here.
        if m["Type"] == "tmpfs" {
            continue;
        }
        let mut m = m.clone();
        let o = m.as_object_mut().unwrap();
        if let Some(name) = o.get("Name").and_then(Value::as_str)
            && is_id(name)
        {
            let src = o["Source"]
                .as_str()
                .unwrap_or_default()
                .replace(name, "<anonymous>");
            o.insert("Name".into(), json!("<anonymous>"));
            o.insert("Source".into(), json!(src));
        }
        // `Binds` record their mode (`rw`, `z`, ...), mounts do not: RW says it.
        o.remove("Mode");
        if let Some(src) = o.get("Source").and_then(Value::as_str)
            && let Ok(rel) = Path::new(src).strip_prefix(dir)
        {
            let kind = match std::fs::metadata(src) {
                Ok(m) if m.is_dir() => "directory",
                Ok(_) => "file",
                Err(_) => "missing",
            };
            host_paths.insert(rel.display().to_string(), json!(kind));
        }
        mounted.insert(dest, m);
    }

    let mut networks = Map::new();
    for (name, n) in c["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let mut aliases: Vec<String> = n["Aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| !id.starts_with(a))
            .map(str::to_string)
            .collect();
        aliases.sort();
        // Links are aliases seen from this container: repeats and order do not matter.
        let links: BTreeSet<&str> = n["Links"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        networks.insert(
            name.clone(),
            json!({
                "Aliases": aliases,
                "IPAMConfig": n["IPAMConfig"],
                "Links": links,
                "DriverOpts": n["DriverOpts"],
            }),
        );
    }

    let state = &c["State"];
    json!({
        "Name": c["Name"].as_str().unwrap_or_default().trim_start_matches('/'),
        "Config": config,
        "HostConfig": host,
        "Mounts": mounted,
        "HostPaths": host_paths,
        "Networks": networks,
        "State": {
            "Status": state["Status"],
            "ExitCode": state["ExitCode"],
            "Health": !state["Health"].is_null(),
        },
    })
}

/// Whether `cidr` is from the engine's default address pools (allocated, not asked for).
fn allocated(cidr: &str) -> bool {
    let mut octets = cidr.split(['.', '/']).map(|o| o.parse::<u8>().unwrap_or(0));
    matches!(
        (octets.next(), octets.next()),
        (Some(172), Some(16..=31)) | (Some(192), Some(168))
    )
}

fn network_view(n: &Value) -> Value {
    let mut ipam = n["IPAM"].clone();
    for c in ipam["Config"].as_array_mut().into_iter().flatten() {
        for k in ["Subnet", "Gateway", "IPRange"] {
            if c[k].as_str().is_some_and(allocated) {
                c[k] = json!("<allocated>");
            }
        }
    }
    json!({
        "Name": n["Name"],
        "Driver": n["Driver"],
        "Scope": n["Scope"],
        "EnableIPv6": n["EnableIPv6"],
        "IPAM": ipam,
        "Internal": n["Internal"],
        "Attachable": n["Attachable"],
        "Ingress": n["Ingress"],
        "ConfigOnly": n["ConfigOnly"],
        "Options": n["Options"],
        "Labels": strip_labels(&n["Labels"]),
    })
}

fn volume_view(v: &Value) -> Value {
    json!({
        "Name": v["Name"],
        "Driver": v["Driver"],
        "Scope": v["Scope"],
        "Options": v["Options"],
        "Labels": strip_labels(&v["Labels"]),
    })
}

#[test]
fn containers_networks_and_volumes_match_what_compose_v2_creates() {
    let started = Instant::now();
    local_engine();
    compose_v2();
    let external = ExternalNetwork(unique_name("ediff-outside"));
    // With a subnet of its own: a static address on it is compared too.
    let out = docker_in(
        Path::new("/"),
        &[],
        &[
            "network",
            "create",
            "--subnet",
            "10.231.210.0/24",
            &external.0,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let outside = ExternalContainer(unique_name("ediff-outside"));
    let out = docker_in(
        Path::new("/"),
        &[],
        &[
            "run",
            "-d",
            "--name",
            &outside.0,
            "-v",
            "/outside-data",
            TEST_IMAGE,
            "sleep",
            "86400",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let env = vec![
        ("EDIFF_EXTERNAL_NETWORK".to_string(), external.0.clone()),
        ("EDIFF_EXTERNAL_CONTAINER".to_string(), outside.0.clone()),
    ];

    let threads: Vec<_> = FIXTURES
        .iter()
        .map(|f| {
            let env = env.clone();
            (*f, std::thread::spawn(move || compare(f, &env)))
        })
        .collect();
    let mut diffs = Vec::new();
    let mut met = BTreeSet::new();
    for (f, t) in threads {
        match t.join() {
            Ok((d, m)) => {
                diffs.extend(d);
                met.extend(m);
            }
            Err(e) => diffs.push(format!(
                "{f}: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    eprintln!(
        "{} fixtures compared in {:.1?}; deliberate differences left out: {}",
        FIXTURES.len(),
        started.elapsed(),
        DELIBERATE
            .iter()
            .map(|(n, k, why)| format!("{n} {k}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Every deliberate difference is one the fixtures show: the list stays true.
    for (i, (name, path, _)) in DELIBERATE.iter().enumerate() {
        if !met.contains(&i) && diffs.is_empty() {
            diffs.push(format!(
                "the deliberate difference {name} {path} no longer shows: remove it from the list"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences from compose v2:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Deliberate: compose creates every container up front and starts them in dependency
/// order; drover creates a service's containers only once its dependencies' conditions
/// hold. Meanwhile the waiting service has no container, and `plan` says what it waits on.
#[test]
fn a_service_waiting_on_a_job_has_no_container_and_plan_says_why() {
    let name = unique_name("edwait");
    let p = Project::new(
        &name,
        r#"
services:
  migrate:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "sleep 4"]
    restart: "no"
  api:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    depends_on:
      migrate: {condition: service_completed_successfully}
"#,
    );
    let plan = |p: &Project| {
        let out = p.drover(&["plan", "-p", &p.name]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let waiting = "wait api: no container until migrate has completed successfully \
                   (depends_on condition service_completed_successfully)";
    let before = plan(&p);
    assert!(before.contains(waiting), "{before}");
    assert!(!before.contains("nothing to do"), "{before}");

    let mut d = p.run(&[]);
    support::drover::eventually_with(&mut d, UP, "the job running", |_| p.running("migrate") == 1);
    assert!(
        p.containers(Some("api"), None).is_empty(),
        "no container for api while the job runs"
    );
    let meanwhile = plan(&p);
    assert!(meanwhile.contains(waiting), "{meanwhile}");
    support::drover::eventually_with(&mut d, UP, "api running after the job", |_| {
        p.running("api") == 1
    });
    assert_eq!(p.containers(Some("migrate"), Some("exited")).len(), 1);
    let after = plan(&p);
    assert!(after.contains("nothing to do"), "{after}");

    // Compose, by contrast, creates api's container up front and starts it after the job.
    compose_v2();
    let c = ComposeSide {
        name: unique_name("edwaitc"),
        dir: p.dir.clone(),
        env: Vec::new(),
    };
    let mut up = Command::new("docker")
        .env("DOCKER_HOST", local_engine())
        .env_remove("COMPOSE_PROJECT_NAME")
        .current_dir(&c.dir)
        .args(["compose", "-p", &c.name, "up", "-d"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Compose creates the services' containers concurrently, so api's may appear a moment
    // after the job started: look for it for as long as the job runs.
    let api = "<project>-api-1";
    let mut seen = None;
    let mut job_ran = false;
    let deadline = Instant::now() + UP;
    while Instant::now() < deadline {
        let s = states(&c.name);
        let running = s
            .get("<project>-migrate-1")
            .is_some_and(|m| m.0 == "running");
        if running {
            job_ran = true;
            if let Some(a) = s.get(api) {
                seen = Some(a.0.clone());
                break;
            }
        } else if job_ran {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = up.wait();
    assert_eq!(
        seen.as_deref(),
        Some("created"),
        "compose creates api's container while the job runs"
    );
}
