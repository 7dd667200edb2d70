//! Desired state from files: Compose file(s), `.env`, scale targets.
//!
//! Loading is pure apart from reading the named files: bytes and an environment in,
//! a validated [`Project`] or a located [`ConfigError`] out. The YAML crate is used only
//! inside this module (in `yaml`) so it can be swapped.
//!
//! The steps, one file each:
//! - `yaml`: text + environment -> a located tree; Compose interpolation, anchors, `<<`.
//! - `dotenv`: `.env` / `env_file` syntax.
//! - `merge`: several `-f` files -> one tree (maps merge, lists are replaced; see there).
//! - `project`, `service`: the tree -> a validated [`Project`], warnings for keys drover
//!   does not act on, replica targets, config hashes.
//! - `read`, `syntax`: typed reads with located errors; Compose's small string syntaxes.
//! - `hostpath`: the paths drover resolved (relative binds, secret and config files) as
//!   the engine's host sees them, when drover runs in a container.
//!
//! A load has two halves: reading the files (the Compose files, `.env`, `include`, the
//! scale file) into one interpolated tree, then building the project from it for a mode
//! and host paths. [`Startup`] does the first half once for a start-up, whose mode and
//! host paths are only known after a first build.
//!
//! Errors are one line: `file:line:column: key.path: message`. They never quote values,
//! which may come from the environment and be secrets.
//!
//! Precedence: replicas `--scale` > scale file > `x-drover.scale` > `deploy.replicas` /
//! `scale` > 1 (an autoscaled service: `--scale` pins it, else the autoscaler's target
//! within `min`..`max` with the scale file's count as the floor, see `autoscale`); project name `-p` > `COMPOSE_PROJECT_NAME` > `name:` > directory name;
//! variables: process environment > `.env` (or the `--env-file`s). A service's `restart`
//! sets the restart condition; `deploy.restart_policy` fills in what it leaves open.
//!
//! Compose keys drover does not act on (build with an image, logging, secrets, ...) load
//! with one warning each; `x-*` keys are ignored silently everywhere.

pub mod autoscale;
pub mod hostpath;
pub mod model;

mod dotenv;
mod include;
mod lifecycle;
mod merge;
pub mod networks;
mod nodes;
mod project;
mod read;
mod reads;
mod service;
mod stateful;
mod syntax;
mod template;
mod webhooks;
mod yaml;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use model::*;
pub use syntax::parse_duration;

/// What to load: mirrors the command-line flags.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Compose files in order (later files override earlier ones). Empty: look for the
    /// default names in `cwd`.
    pub files: Vec<PathBuf>,
    /// `-p`: wins over COMPOSE_PROJECT_NAME, `name:` and the directory name.
    pub project_name: Option<String>,
    /// `--env-file`: replaces the project's `.env`.
    pub env_files: Vec<PathBuf>,
    /// `--scale SERVICE=N`, highest precedence.
    pub scale: Vec<(String, u32)>,
    /// `--scale-file`: YAML map service -> count.
    pub scale_file: Option<PathBuf>,
    /// The process environment (wins over `.env`).
    pub env: HashMap<String, String>,
    /// Directory default files are looked up in.
    pub cwd: PathBuf,
    /// `--profile` (repeatable): services with profiles run only when one of theirs is
    /// enabled. Empty: COMPOSE_PROFILES (comma-separated, from the environment or `.env`).
    /// `*` enables every profile.
    pub profiles: Vec<String>,
    /// The mode the project runs in, for what only one mode can honour: `None` or `Plain`
    /// refuses external secrets and configs and warns about Swarm-only keys; `Swarm`
    /// accepts them silently; `Auto` (not decided yet) accepts them with a warning.
    pub mode: Option<Mode>,
    /// Where the engine's host has drover's files (drover in a container, or
    /// `--host-project-dir`): the paths drover resolves are handed to the engine as host
    /// paths. Default: drover's filesystem is the host's.
    pub host_paths: hostpath::HostPaths,
}

/// A loaded project and the warnings met on the way (each reported once by the caller).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<String>,
    /// Controller settings from the top-level `x-drover` extension.
    pub settings: Settings,
    /// The paths handed to the engine as other host paths than drover's own.
    pub host_paths: Vec<hostpath::Translation>,
    /// Every path drover resolved that the engine is handed (relative and `~` bind
    /// sources; secret and config files outside Swarm mode), translated or not.
    pub resolved_paths: Vec<hostpath::PathUse>,
    /// Every file the load read or looked for: what the runtime watches.
    pub files: Vec<PathBuf>,
}

/// A config problem, as one line: `file:line:column: key.path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The file names looked up when no `-f` is given, in order.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Read after the default file when present, as compose does (the first one found).
pub const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// `-f` files, else `COMPOSE_FILE` (split on `COMPOSE_PATH_SEPARATOR`, default `:`).
fn explicit_files(opts: &LoadOptions) -> Vec<PathBuf> {
    if !opts.files.is_empty() {
        return opts.files.clone();
    }
    match opts.env.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        Some(list) => {
            let sep = opts
                .env
                .get("COMPOSE_PATH_SEPARATOR")
                .filter(|s| !s.is_empty())
                .map(String::as_str)
                .unwrap_or(":");
            list.split(sep)
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
                .collect()
        }
        None => Vec::new(),
    }
}

/// Load and validate the project described by `opts`.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    load_tracked(opts).0
}

/// [`load`], and every file it read or looked for (also when it failed: fixing a broken
/// file reached through `include` must be noticed too); a good load has them in
/// [`Loaded::files`] as well.
pub fn load_tracked(opts: &LoadOptions) -> (Result<Loaded, ConfigError>, Vec<PathBuf>) {
    let (loaded, files) = reads::tracked(|| load_files(opts));
    let loaded = loaded.map(|mut l| {
        l.files = files.clone();
        l
    });
    (loaded, files)
}

fn load_files(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    read_sources(opts)?.build(opts)
}

/// The files of a load read, interpolated and merged: everything a load does before the
/// mode and the host paths matter.
struct Sources {
    root: yaml::Node,
    env: HashMap<String, String>,
    project_dir: PathBuf,
    scale_file: Option<yaml::Node>,
}

fn read_sources(opts: &LoadOptions) -> Result<Sources, ConfigError> {
    let files = compose_files(opts)?;
    let project_dir = {
        let first = syntax::join_lexically(Path::new(""), &files[0].1);
        first.parent().map(Path::to_path_buf).unwrap_or_default()
    };

    let mut env = environment(opts, &project_dir)?;
    let mut texts = Vec::new();
    for (shown, path) in &files {
        texts.push(read_file(shown, path)?);
    }
    // Compose interpolates `${COMPOSE_PROJECT_NAME}` as the project name in effect.
    if let Some(name) = interpolated_project_name(opts, &env, &files, &texts, &project_dir) {
        env.insert("COMPOSE_PROJECT_NAME".to_string(), name);
    }
    let root = merged_tree(&files, texts, &env)?;

    let scale_file = match &opts.scale_file {
        Some(f) => {
            let shown = f.display().to_string();
            let text = read_file(&shown, &opts.cwd.join(f))?;
            Some(parse(&shown, &text, None)?)
        }
        None => None,
    };
    Ok(Sources {
        root,
        env,
        project_dir,
        scale_file,
    })
}

impl Sources {
    /// The project these files describe, for `opts.mode`, its paths translated with
    /// `opts.host_paths`. `opts` are the options the files were read with, but for those two.
    fn build(&self, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
        let mut warnings = read::Warnings::default();
        let inputs = project::Inputs {
            project_dir: &self.project_dir,
            env: &self.env,
            project_name: opts.project_name.as_deref(),
            scale: &opts.scale,
            scale_file: self.scale_file.as_ref(),
            profiles: &opts.profiles,
            mode: opts.mode.unwrap_or(Mode::Plain),
        };
        let (project, settings, uses) = project::build(&self.root, &inputs, &mut warnings)?;
        let (project, host_paths) =
            hostpath::translate(&project, &uses, &opts.host_paths, &hostpath::canonical)
                .map_err(|e| ConfigError(e.to_string()))?;
        let mode = opts.mode.or(settings.mode).unwrap_or(Mode::Plain);
        warnings
            .0
            .extend(stateful::warnings(&project, &settings, mode));
        Ok(Loaded {
            project,
            warnings: warnings.0,
            settings,
            host_paths,
            resolved_paths: uses,
            files: Vec::new(),
        })
    }
}

/// A start-up's load: the files are read once. The project is built first with the
/// options as given, so that config errors come before any engine is asked; the caller
/// then chooses the mode and finds the host paths from what that build says (and the
/// engine), and [`Startup::settle`] builds again only when either differs.
pub struct Startup {
    opts: LoadOptions,
    sources: Sources,
    first: Loaded,
}

impl Startup {
    /// Read the files and build the project with `opts`.
    pub fn load(opts: LoadOptions) -> Result<Startup, ConfigError> {
        let (built, files) = reads::tracked(|| {
            let sources = read_sources(&opts)?;
            let first = sources.build(&opts)?;
            Ok((sources, first))
        });
        let (sources, mut first) = built?;
        first.files = files;
        Ok(Startup {
            opts,
            sources,
            first,
        })
    }

    /// The options the first build was made with.
    pub fn options(&self) -> &LoadOptions {
        &self.opts
    }

    /// The first build: its settings (`x-drover`) and the paths it resolved decide the
    /// mode and the host paths.
    pub fn first(&self) -> &Loaded {
        &self.first
    }

    /// The project for `mode` with `host_paths`, built from the files already read (the
    /// first build when it was made with both), and the options it was built with, which
    /// reloads keep using.
    pub fn settle(
        self,
        mode: Mode,
        host_paths: hostpath::HostPaths,
    ) -> Result<(LoadOptions, Loaded), ConfigError> {
        let Startup {
            mut opts,
            sources,
            first,
        } = self;
        if opts.mode == Some(mode) && opts.host_paths == host_paths {
            return Ok((opts, first));
        }
        opts.mode = Some(mode);
        opts.host_paths = host_paths;
        let (loaded, more) = reads::tracked(|| sources.build(&opts));
        let mut loaded = loaded?;
        // What the reading noted (with the first build's), and what this build read.
        let files: BTreeSet<PathBuf> = first.files.into_iter().chain(more).collect();
        loaded.files = files.into_iter().collect();
        Ok((opts, loaded))
    }
}

/// The Compose files to read, as (name shown to the user, path): `-f` or `COMPOSE_FILE`,
/// else the first default file found plus the first override file found.
fn compose_files(opts: &LoadOptions) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let explicit = explicit_files(opts);
    Ok(if explicit.is_empty() {
        let found = DEFAULT_FILES
            .iter()
            .find(|f| {
                let path = opts.cwd.join(f);
                reads::note(&path);
                path.is_file()
            })
            .ok_or_else(|| {
                ConfigError(format!(
                    "no compose file found in {} (looked for {})",
                    display_dir(&opts.cwd),
                    DEFAULT_FILES.join(", ")
                ))
            })?;
        let mut files = vec![(found.to_string(), opts.cwd.join(found))];
        if let Some(o) = OVERRIDE_FILES.iter().find(|f| {
            let path = opts.cwd.join(f);
            reads::note(&path);
            path.is_file()
        }) {
            files.push((o.to_string(), opts.cwd.join(o)));
        }
        files
    } else {
        explicit
            .iter()
            .map(|f| (f.display().to_string(), opts.cwd.join(f)))
            .collect()
    })
}

/// Parse each file (interpolated with `env`), resolve its `include` and `extends`, and
/// merge them in order, later files winning.
fn merged_tree(
    files: &[(String, PathBuf)],
    texts: Vec<String>,
    env: &HashMap<String, String>,
) -> Result<yaml::Node, ConfigError> {
    let mut root: Option<yaml::Node> = None;
    for ((shown, path), text) in files.iter().zip(texts) {
        let node = parse(shown, &text, Some(env))?;
        let dir = syntax::join_lexically(Path::new(""), path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let node = include::resolve(node, &dir, env, 0)?;
        root = Some(match root {
            None => node,
            Some(base) => merge::merge_files(base, node),
        });
    }
    Ok(root.unwrap_or(yaml::Node::new(
        yaml::Kind::Null,
        yaml::Loc {
            file: Arc::from(""),
            line: 0,
            column: 0,
        },
    )))
}

/// The project name `${COMPOSE_PROJECT_NAME}` stands for, when the files use it and the
/// environment does not set it: `-p`, else the last `name:` (read in a first pass, with
/// the variable unset), else the directory's name, normalized as the name itself is.
fn interpolated_project_name(
    opts: &LoadOptions,
    env: &HashMap<String, String>,
    files: &[(String, PathBuf)],
    texts: &[String],
    project_dir: &Path,
) -> Option<String> {
    if let Some(p) = &opts.project_name {
        return syntax::normalize_project_name(p).ok();
    }
    if env
        .get("COMPOSE_PROJECT_NAME")
        .is_some_and(|p| !p.is_empty())
        || !texts.iter().any(|t| t.contains("COMPOSE_PROJECT_NAME"))
    {
        return None;
    }
    // The last file's `name:` wins. Anything unusual (a file that does not parse yet, a
    // name that is not text) leaves the variable unset rather than guess.
    let mut named = None;
    for ((shown, _), text) in files.iter().zip(texts).rev() {
        let node = parse(shown, text, Some(env)).ok()?;
        if let Some(n) = node.get("name") {
            match &n.kind {
                yaml::Kind::Str(n) if !n.is_empty() => named = Some(n.clone()),
                _ => return None,
            }
            break;
        }
    }
    let raw = named.unwrap_or_else(|| {
        project_dir
            .file_name()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    syntax::normalize_project_name(&raw).ok()
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".to_string()
    } else {
        dir.display().to_string()
    }
}

/// A config file larger than this is refused before it is parsed: real Compose files are
/// kilobytes, and parsing cost grows with size.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

pub(crate) fn read_file(shown: &str, path: &Path) -> Result<String, ConfigError> {
    reads::note(path);
    if let Ok(m) = std::fs::metadata(path)
        && m.len() > MAX_FILE_BYTES
    {
        return Err(ConfigError(format!(
            "{shown}: the file is {} bytes; a config file may be at most {} KiB",
            m.len(),
            MAX_FILE_BYTES / 1024
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError(format!("{shown}: no such file")),
        _ => ConfigError(format!("{shown}: cannot read: {e}")),
    })?;
    text(shown, bytes)
}

/// The file's bytes as text; the error names the line and column of the first byte that
/// is not UTF-8 (a file saved in Latin-1 or Windows-1252, usually).
fn text(shown: &str, bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters, as the YAML errors do.
        let column = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        ConfigError(format!(
            "{shown}:{line}:{column}: the file is not UTF-8 text (byte 0x{:02x}); save it as UTF-8",
            e.as_bytes()[good.len()]
        ))
    })
}

pub(crate) fn parse(
    shown: &str,
    text: &str,
    env: Option<&HashMap<String, String>>,
) -> Result<yaml::Node, ConfigError> {
    yaml::parse(&Arc::from(shown), text, env).map_err(|e| {
        let mut out = shown.to_string();
        if e.line > 0 {
            out.push_str(&format!(":{}:{}", e.line, e.column));
        }
        if !e.path.is_empty() {
            out.push_str(&format!(": {}", e.path));
        }
        out.push_str(&format!(": {}", e.message));
        ConfigError(out)
    })
}

/// The interpolation environment: `.env` beside the first file (or the `--env-file`s
/// instead), overlaid by the process environment.
fn environment(
    opts: &LoadOptions,
    project_dir: &Path,
) -> Result<HashMap<String, String>, ConfigError> {
    let (files, required): (Vec<(String, PathBuf)>, bool) = if opts.env_files.is_empty() {
        let p = project_dir.join(".env");
        (vec![(p.display().to_string(), p)], false)
    } else {
        let files = opts
            .env_files
            .iter()
            .map(|f| (f.display().to_string(), opts.cwd.join(f)))
            .collect();
        (files, true)
    };
    let mut env: HashMap<String, String> = HashMap::new();
    for (shown, path) in files {
        reads::note(&path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError(format!("{shown}: no such file")));
            }
            Err(e) => return Err(ConfigError(format!("{shown}: cannot read: {e}"))),
        };
        // Values may refer to the process environment (first) and to earlier entries.
        dotenv::parse(&text, &|k| opts.env.get(k).cloned(), &mut env)
            .map_err(|(line, msg)| ConfigError(format!("{shown}:{line}: {msg}")))?;
    }
    for (k, v) in &opts.env {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

/// The normalized project as YAML (for `drover check`).
pub fn to_yaml(project: &Project) -> Result<String, String> {
    serde_saphyr::to_string(project).map_err(|e| e.to_string())
}

/// What `drover check` prints: the project and, when there are any, the autoscaled
/// services' settings under `x-drover.autoscale` (secrets by where they are, never their
/// value).
#[derive(Debug, serde::Serialize)]
pub struct Checked<'a> {
    #[serde(flatten)]
    pub project: &'a Project,
    #[serde(rename = "x-drover", skip_serializing_if = "Option::is_none")]
    pub drover: Option<CheckedSettings<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct CheckedSettings<'a> {
    pub autoscale: &'a std::collections::BTreeMap<String, Autoscale>,
}

impl<'a> Checked<'a> {
    pub fn of(loaded: &'a Loaded) -> Checked<'a> {
        let a = &loaded.settings.autoscale;
        Checked {
            project: &loaded.project,
            drover: (!a.is_empty()).then_some(CheckedSettings { autoscale: a }),
        }
    }

    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn a_byte_that_is_not_utf8_is_located() {
        let e = super::text("c.yml", b"a: 1\nb: \"caf\xe9\"\n".to_vec()).unwrap_err();
        assert_eq!(
            e.0,
            "c.yml:2:8: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"
        );
        assert_eq!(super::text("c.yml", "é: ü".into()).unwrap(), "é: ü");
    }
}

#[cfg(test)]
mod startup_tests {
    use super::*;
    use hostpath::HostPaths;

    /// A project directory of its own for each call (tests run in parallel).
    fn project(name: &str, compose: &str) -> LoadOptions {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("startup-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose).unwrap();
        std::fs::write(dir.join("web.env"), "A=1\n").unwrap();
        LoadOptions {
            cwd: dir,
            project_name: Some("p".into()),
            mode: Some(Mode::Auto),
            ..Default::default()
        }
    }

    const EXTERNAL: &str = "\
services:
  web:
    image: img
    env_file: web.env
    secrets: [db]
secrets:
  db: {external: true}
";

    #[test]
    fn settling_on_the_options_given_keeps_the_first_build() {
        let opts = project("same", EXTERNAL);
        let start = Startup::load(opts.clone()).unwrap();
        let first = format!("{:?}", start.first());
        let (settled_opts, loaded) = start.settle(Mode::Auto, HostPaths::Same).unwrap();
        assert_eq!(format!("{loaded:?}"), first);
        assert_eq!(settled_opts.mode, Some(Mode::Auto));
        assert_eq!(loaded.files, load(&opts).unwrap().files);
    }

    #[test]
    fn settling_on_another_mode_builds_as_a_load_in_that_mode_would() {
        let opts = project("mode", EXTERNAL);
        for mode in [Mode::Plain, Mode::Swarm] {
            let direct = load(&LoadOptions {
                mode: Some(mode),
                ..opts.clone()
            });
            let settled = Startup::load(opts.clone())
                .unwrap()
                .settle(mode, HostPaths::Same);
            match (direct, settled) {
                (Ok(direct), Ok((settled_opts, loaded))) => {
                    assert_eq!(format!("{loaded:?}"), format!("{direct:?}"), "{mode:?}");
                    assert_eq!(settled_opts.mode, Some(mode));
                }
                (Err(direct), Err(settled)) => assert_eq!(settled, direct, "{mode:?}"),
                (direct, settled) => panic!("{mode:?}: {direct:?} but {settled:?}"),
            }
        }
        // Plain mode refuses the external secret that auto and swarm accept.
        let plain = Startup::load(opts)
            .unwrap()
            .settle(Mode::Plain, HostPaths::Same);
        assert!(plain.unwrap_err().0.contains("exist only in Swarm mode"));
    }

    #[test]
    fn the_files_are_read_once() {
        let opts = project("once", EXTERNAL);
        let start = Startup::load(opts.clone()).unwrap();
        std::fs::write(opts.cwd.join("compose.yaml"), "services: {}\n").unwrap();
        let (_, loaded) = start.settle(Mode::Swarm, HostPaths::Same).unwrap();
        assert!(loaded.project.services.contains_key("web"));
    }
}

#[cfg(test)]
mod global_tests {
    use super::*;

    /// `compose` loaded in plain mode with `scale` (`--scale`), in a directory of its own.
    fn load_with(compose: &str, scale: &[(&str, u32)]) -> Result<Loaded, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("global-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), compose).unwrap();
        let r = load(&LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            mode: Some(Mode::Plain),
            scale: scale.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            ..Default::default()
        })
        .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(dir);
        r
    }

    const GLOBAL: &str = "services:\n  agent:\n    image: img\n    deploy:\n      mode: global\n";

    #[test]
    fn plain_mode_runs_a_global_service_without_a_warning_and_refuses_a_count() {
        let l = load_with(GLOBAL, &[]).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.project.services["agent"].mode, DeployMode::Global);
        let e = load_with(GLOBAL, &[("agent", 3)]).unwrap_err();
        assert!(
            e.starts_with("--scale agent: agent is a global service"),
            "{e}"
        );
        let e = load_with(
            &format!("{GLOBAL}x-drover:\n  scale: {{ agent: 2 }}\n"),
            &[],
        )
        .unwrap_err();
        assert!(e.starts_with("x-drover.scale.agent: "), "{e}");
        let e = load_with(
            &GLOBAL.replace("    deploy:", "    scale: 2\n    deploy:"),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("services.agent.scale: a global service"), "{e}");
        let e = load_with(&format!("{GLOBAL}      replicas: 2\n"), &[]).unwrap_err();
        assert!(e.contains("cannot be combined with deploy.replicas"), "{e}");
    }

    #[test]
    fn a_node_availability_is_active_pause_or_drain() {
        let nodes = |a: &str| {
            format!(
                "{GLOBAL}x-drover:\n  nodes:\n    - {{ name: n1, host: tcp://10.0.0.1:2376 }}\n    \
                 - {{ name: n2, host: tcp://10.0.0.2:2376, availability: {a} }}\n"
            )
        };
        for (word, want) in [
            ("active", Availability::Active),
            ("pause", Availability::Pause),
            ("drain", Availability::Drain),
        ] {
            let l = load_with(&nodes(word), &[]).unwrap();
            assert_eq!(l.settings.nodes[0].availability, Availability::Active);
            assert_eq!(l.settings.nodes[1].availability, want);
        }
        let e = load_with(&nodes("paused"), &[]).unwrap_err();
        assert!(
            e.contains("x-drover.nodes[1].availability: expected active, pause or drain"),
            "{e}"
        );
    }
}
