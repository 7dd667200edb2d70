//! Host paths: the paths drover hands the engine, as the engine's host sees them.
//!
//! The engine reads a bind mount's source on its own host. When drover runs in a container,
//! the paths it resolved (relative and `~` bind sources, secret and config `file:`s) are
//! paths in *its* filesystem, and mean something else on the host: `/config/data` inside
//! drover is `$PWD/app/data` on the host when drover runs with `-v $PWD/app:/config`.
//!
//! [`translate`] maps them, purely, through a description of where drover's files are on
//! the host ([`HostPaths`]): its container's mounts (longest destination wins; a volume
//! mount maps to the volume's mountpoint), or a project directory given by the user
//! (`--host-project-dir`). A path under none of drover's mounts is refused with the place
//! it is written: the engine cannot see it. Absolute bind sources the user wrote are host
//! paths already and never reach this module; relative ones that `include` or `extends`
//! made absolute against their file's directory do (`Node::rebased`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{MountKind, Project, Service};
use super::project::config_hash;
use super::syntax::join_lexically;

/// Where the engine's host has drover's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostPaths {
    /// drover's filesystem is the engine host's (drover runs on the host): no change.
    #[default]
    Same,
    /// `--host-project-dir`: the host path of the project directory. Relative paths
    /// resolve under it; nothing is inspected.
    ProjectDir(PathBuf),
    /// drover runs in this container; its mounts say where its files are on the host.
    Mounts(HostMounts),
}

/// drover's own container and its mounts, as the engine module reads them.
pub use crate::engine::hostmounts::{HostMount, HostMounts};

/// A path drover resolved and hands the engine, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    pub service: String,
    pub kind: UseKind,
    /// The mount's target in the service's containers (identifies it in the service).
    pub target: String,
    /// `file:line:column: key.path` of the entry that names the path.
    pub at: String,
    /// The path relative to the project directory (`data`, `../x`; for a path an included
    /// file wrote, relative to the including project's directory too); `None` for a `~`
    /// path or an absolute `file:`.
    pub relative: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseKind {
    /// A `volumes` bind with a relative or `~` source.
    Bind,
    /// A secret's `file:`, bind-mounted in plain mode.
    Secret,
    /// A config's `file:`, bind-mounted in plain mode.
    Config,
}

/// One path that changed: drover's path and the host path handed to the engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Translation {
    pub from: PathBuf,
    pub to: PathBuf,
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from.display(), self.to.display())
    }
}

/// A path the engine cannot be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// `file:line:column: key.path` of the entry.
    pub at: String,
    /// The path in drover's filesystem.
    pub path: PathBuf,
    pub kind: TranslateErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateErrorKind {
    /// Under none of the mounts of drover's container (id).
    Outside { container: String },
    /// In a mount the engine gives no host path for (a tmpfs, a volume of a remote
    /// driver): what it is and where it is mounted in drover's container.
    NoHostPath { mount: String, destination: PathBuf },
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, path) = (&self.at, self.path.display());
        match &self.kind {
            TranslateErrorKind::Outside { container } => write!(
                f,
                "{at}: {path} is in drover's own container ({}), under none of its mounts, so \
                 the engine cannot see it; mount that directory into drover at the same path \
                 (-v {path}:{path}), or use an absolute host path",
                short(container)
            ),
            TranslateErrorKind::NoHostPath { mount, destination } => write!(
                f,
                "{at}: {path} is in the {mount} mounted at {} in drover's container, which \
                 has no path on the engine's host; mount a host directory there instead, or \
                 use an absolute host path",
                destination.display()
            ),
        }
    }
}

impl std::error::Error for TranslateError {}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The project with every path of `uses` replaced by its host path (and the config hashes
/// of the services that changed recomputed), and the translations that applied.
///
/// `canonical` resolves symlinks in drover's filesystem (see [`canonical`]); it is only
/// used with [`HostPaths::Mounts`].
pub fn translate(
    project: &Project,
    uses: &[PathUse],
    host: &HostPaths,
    canonical: &dyn Fn(&Path) -> PathBuf,
) -> Result<(Project, Vec<Translation>), TranslateError> {
    let mut out = project.clone();
    let mut done = BTreeSet::new();
    if *host == HostPaths::Same {
        return Ok((out, Vec::new()));
    }
    for u in uses {
        let Some(svc) = out.services.get_mut(&u.service) else {
            continue;
        };
        let Some(source) = source_mut(svc, u) else {
            continue;
        };
        let from = PathBuf::from(&*source);
        let to = host_path(&from, u, host, canonical)?;
        if to != from {
            *source = to.to_string_lossy().into_owned();
            done.insert(Translation { from, to });
        }
    }
    for s in out.services.values_mut() {
        s.config_hash = config_hash(s, &out.networks, &out.volumes);
    }
    Ok((out, done.into_iter().collect()))
}

/// The source path of the mount `u` names in `svc`.
fn source_mut<'a>(svc: &'a mut Service, u: &PathUse) -> Option<&'a mut String> {
    match u.kind {
        UseKind::Bind => svc
            .volumes
            .iter_mut()
            .find(|m| m.kind == MountKind::Bind && m.target == u.target)
            .and_then(|m| m.source.as_mut()),
        UseKind::Secret => file_mut(&mut svc.options.secrets, &u.target),
        UseKind::Config => file_mut(&mut svc.options.configs, &u.target),
    }
}

fn file_mut<'a>(mounts: &'a mut [super::model::FileMount], target: &str) -> Option<&'a mut String> {
    mounts
        .iter_mut()
        .find(|m| m.target == target)
        .and_then(|m| m.file.as_mut())
}

/// The host path of `path` (a path in drover's filesystem).
fn host_path(
    path: &Path,
    u: &PathUse,
    host: &HostPaths,
    canonical: &dyn Fn(&Path) -> PathBuf,
) -> Result<PathBuf, TranslateError> {
    let err = |kind| TranslateError {
        at: u.at.clone(),
        path: path.to_path_buf(),
        kind,
    };
    match host {
        HostPaths::Same => Ok(path.to_path_buf()),
        HostPaths::ProjectDir(dir) => match &u.relative {
            Some(rel) => Ok(join_lexically(dir, rel)),
            // `~` and absolute files: not relative to the project; as they are.
            None => Ok(path.to_path_buf()),
        },
        HostPaths::Mounts(m) => {
            let real = canonical(path);
            let Some((mount, rest)) = longest_mount(&m.mounts, &real) else {
                return Err(err(TranslateErrorKind::Outside {
                    container: m.container.clone(),
                }));
            };
            match &mount.source {
                Some(src) => Ok(join_rest(src, rest)),
                None => Err(err(TranslateErrorKind::NoHostPath {
                    mount: mount.what.clone(),
                    destination: mount.destination.clone(),
                })),
            }
        }
    }
}

/// The mount with the longest destination that holds `path`, and the rest of the path
/// under it.
fn longest_mount<'a>(mounts: &'a [HostMount], path: &'a Path) -> Option<(&'a HostMount, &'a Path)> {
    mounts
        .iter()
        .filter_map(|m| path.strip_prefix(&m.destination).ok().map(|rest| (m, rest)))
        .max_by_key(|(m, _)| m.destination.components().count())
}

fn join_rest(src: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        src.to_path_buf()
    } else {
        src.join(rest)
    }
}

/// `path` with symlinks resolved in this process's filesystem: the longest existing
/// ancestor canonicalized, the rest appended as written (a bind source that does not
/// exist yet is created by the engine).
pub fn canonical(path: &Path) -> PathBuf {
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// `path` relative to `base`, lexically (`../x` when it is beside it).
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let (path, base) = (
        join_lexically(Path::new(""), path),
        join_lexically(Path::new(""), base),
    );
    let common = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in base.components().skip(common) {
        out.push("..");
    }
    for c in path.components().skip(common) {
        out.push(c);
    }
    out
}

impl HostPaths {
    /// The translations a load `done`, as telemetry records them: how the host paths were
    /// found, and the paths (`from -> to`).
    pub fn record(&self, done: &[Translation]) -> crate::telemetry::HostPathsRecord {
        let (reason, container) = match self {
            HostPaths::ProjectDir(_) => ("host-project-dir", ""),
            HostPaths::Mounts(m) => ("container-mounts", m.container.as_str()),
            HostPaths::Same => ("", ""),
        };
        crate::telemetry::HostPathsRecord {
            reason,
            container: container.to_string(),
            paths: done.iter().map(Translation::to_string).collect(),
        }
    }
}

/// The translations, one line for logs and `check`: `a -> b, c -> d`.
pub fn describe(done: &[Translation]) -> String {
    done.iter()
        .map(Translation::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, Loaded, Mode, load};
    use std::collections::HashMap;

    const COMPOSE: &str = "\
services:
  web:
    image: img
    volumes:
      - ./data:/data
      - ./site.conf:/etc/site.conf:ro
      - /srv/abs:/abs
      - {type: bind, source: ../shared, target: /shared}
      - cache:/cache
      - ~/notes:/notes
    secrets: [db]
    configs: [{source: site, target: /etc/app.conf}]
volumes:
  cache: {}
secrets:
  db: {file: ./secrets/db.txt}
configs:
  site: {file: /etc/drover/site.conf}
";

    /// The project in directory `dir` (which need not exist beyond the compose file).
    fn loaded(dir: &Path, compose: &str, mode: Mode) -> Loaded {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        load(&LoadOptions {
            cwd: dir.to_path_buf(),
            project_name: Some("p".into()),
            env: HashMap::from([("HOME".into(), "/home/drover".into())]),
            mode: Some(mode),
            ..Default::default()
        })
        .unwrap()
    }

    /// A directory of its own for each call (tests run in parallel).
    fn temp(name: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("hostpath-{name}-{}-{n}", std::process::id()))
    }

    fn mount(destination: &str, source: Option<&str>, what: &str) -> HostMount {
        HostMount {
            destination: destination.into(),
            source: source.map(PathBuf::from),
            what: what.into(),
        }
    }

    fn mounts(list: Vec<HostMount>) -> HostPaths {
        HostPaths::Mounts(HostMounts {
            container: "0123456789abcdef0123".into(),
            mounts: list,
        })
    }

    fn same(p: &Path) -> PathBuf {
        p.to_path_buf()
    }

    fn bind<'a>(p: &'a Project, target: &str) -> &'a str {
        let m = p.services["web"]
            .volumes
            .iter()
            .find(|m| m.target == target);
        m.unwrap().source.as_deref().unwrap()
    }

    fn file<'a>(p: &'a Project, target: &str) -> &'a str {
        let o = &p.services["web"].options;
        let m = o
            .secrets
            .iter()
            .chain(&o.configs)
            .find(|m| m.target == target);
        m.unwrap().file.as_deref().unwrap()
    }

    /// The project as drover sees it in its container, at /config.
    fn at_config(mode: Mode) -> Loaded {
        let base = temp(&format!("{mode:?}"));
        let mut l = loaded(&base.join("config"), COMPOSE, mode);
        // Rewrite as if the base directory were drover's / (the project is in /config).
        let uses = l.resolved_paths.clone();
        let moved = HostPaths::Mounts(HostMounts {
            container: String::new(),
            mounts: vec![
                mount(base.to_str().unwrap(), Some("/"), "bind"),
                mount("/", Some("/"), "bind"),
            ],
        });
        l.project = translate(&l.project, &uses, &moved, &same).unwrap().0;
        l
    }

    #[test]
    fn relative_binds_and_files_map_through_the_mount_absolute_ones_stay() {
        let l = at_config(Mode::Plain);
        let host = mounts(vec![
            mount("/config", Some("/home/u/app"), "bind"),
            mount("/", Some("/should/not/matter"), "bind"),
            mount("/etc/drover", Some("/srv/drover-etc"), "bind"),
        ]);
        let (p, done) = translate(&l.project, &l.resolved_paths, &host, &same).unwrap();
        assert_eq!(bind(&p, "/data"), "/home/u/app/data");
        assert_eq!(bind(&p, "/etc/site.conf"), "/home/u/app/site.conf");
        assert_eq!(
            bind(&p, "/abs"),
            "/srv/abs",
            "an absolute source is a host path"
        );
        assert_eq!(bind(&p, "/cache"), "p_cache", "a volume is not a path");
        // ../shared from /config is /shared: under the "/" mount only.
        assert_eq!(bind(&p, "/shared"), "/should/not/matter/shared");
        assert_eq!(bind(&p, "/notes"), "/should/not/matter/home/drover/notes");
        assert_eq!(file(&p, "/run/secrets/db"), "/home/u/app/secrets/db.txt");
        // A config file is drover's own path even when absolute.
        assert_eq!(file(&p, "/etc/app.conf"), "/srv/drover-etc/site.conf");
        assert!(done.contains(&Translation {
            from: "/config/data".into(),
            to: "/home/u/app/data".into()
        }));
        assert_eq!(done.len(), 6, "{done:?}");
        assert_ne!(
            p.services["web"].config_hash, l.project.services["web"].config_hash,
            "the hash follows what the engine is given"
        );
    }

    #[test]
    fn the_longest_mount_destination_wins_and_read_only_mounts_map_too() {
        let l = at_config(Mode::Plain);
        let host = mounts(vec![
            mount("/config", Some("/home/u/app"), "bind"),
            mount("/config/data", Some("/mnt/disk/data"), "bind"),
            mount("/configs", Some("/wrong"), "bind"),
            mount("/", Some("/root-fs"), "bind"),
        ]);
        let (p, _) = translate(&l.project, &l.resolved_paths, &host, &same).unwrap();
        assert_eq!(bind(&p, "/data"), "/mnt/disk/data");
        assert_eq!(bind(&p, "/etc/site.conf"), "/home/u/app/site.conf");
    }

    #[test]
    fn a_volume_mounted_at_config_maps_to_its_mountpoint() {
        let l = at_config(Mode::Plain);
        let host = mounts(vec![
            mount(
                "/config",
                Some("/var/lib/docker/volumes/app/_data"),
                "volume app",
            ),
            mount("/", Some("/r"), "bind"),
        ]);
        let (p, _) = translate(&l.project, &l.resolved_paths, &host, &same).unwrap();
        assert_eq!(bind(&p, "/data"), "/var/lib/docker/volumes/app/_data/data");
    }

    #[test]
    fn symlinks_are_resolved_before_matching() {
        let l = at_config(Mode::Plain);
        // /config/data is a link to /state/data inside drover.
        let canon = |p: &Path| match p.strip_prefix("/config/data") {
            Ok(rest) => Path::new("/state/data").join(rest),
            Err(_) => p.to_path_buf(),
        };
        let host = mounts(vec![
            mount("/config", Some("/home/u/app"), "bind"),
            mount("/state", Some("/var/state"), "bind"),
            mount("/", Some("/r"), "bind"),
        ]);
        let (p, _) = translate(&l.project, &l.resolved_paths, &host, &canon).unwrap();
        assert_eq!(bind(&p, "/data"), "/var/state/data");
    }

    #[test]
    fn canonical_resolves_a_real_symlink_and_keeps_a_missing_tail() {
        let dir = temp("canon");
        let real = dir.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(canonical(&link.join("x/y")), real.join("x/y"));
        assert_eq!(canonical(&link), real);
        assert_eq!(
            canonical(Path::new("/no/such/dir")),
            PathBuf::from("/no/such/dir")
        );
    }

    #[test]
    fn a_path_under_no_mount_is_refused_where_it_is_written() {
        let l = at_config(Mode::Plain);
        let host = mounts(vec![mount("/etc/drover", Some("/srv/e"), "bind")]);
        let e = translate(&l.project, &l.resolved_paths, &host, &same).unwrap_err();
        assert_eq!(e.path, PathBuf::from("/config/data"));
        assert!(matches!(e.kind, TranslateErrorKind::Outside { .. }));
        assert_eq!(
            e.to_string(),
            "compose.yml:5:9: services.web.volumes[0]: /config/data is in drover's own \
             container (0123456789ab), under none of its mounts, so the engine cannot see it; \
             mount that directory into drover at the same path (-v /config/data:/config/data), \
             or use an absolute host path"
        );
    }

    #[test]
    fn long_syntax_and_file_sources_are_located_at_their_source() {
        let l = at_config(Mode::Plain);
        let at = |kind, target: &str| {
            l.resolved_paths
                .iter()
                .find(|u| u.kind == kind && u.target == target)
                .unwrap()
                .at
                .clone()
        };
        assert_eq!(
            at(UseKind::Bind, "/shared"),
            "compose.yml:8:30: services.web.volumes[3].source"
        );
        assert_eq!(
            at(UseKind::Secret, "/run/secrets/db"),
            "compose.yml:16:14: secrets.db.file"
        );
        assert_eq!(
            at(UseKind::Config, "/etc/app.conf"),
            "compose.yml:18:16: configs.site.file"
        );
    }

    #[test]
    fn a_tmpfs_or_remote_volume_has_no_host_path() {
        let l = at_config(Mode::Plain);
        let host = mounts(vec![mount("/config", None, "tmpfs")]);
        let e = translate(&l.project, &l.resolved_paths, &host, &same).unwrap_err();
        assert!(
            e.to_string()
                .contains("/config/data is in the tmpfs mounted at /config in drover's container"),
            "{e}"
        );
    }

    #[test]
    fn the_override_resolves_relative_paths_under_the_host_project_dir() {
        let l = at_config(Mode::Plain);
        let host = HostPaths::ProjectDir("/home/u/app".into());
        let panic = |_: &Path| -> PathBuf { panic!("nothing is inspected with the override") };
        let (p, _) = translate(&l.project, &l.resolved_paths, &host, &panic).unwrap();
        assert_eq!(bind(&p, "/data"), "/home/u/app/data");
        assert_eq!(bind(&p, "/shared"), "/home/u/shared");
        assert_eq!(bind(&p, "/abs"), "/srv/abs");
        assert_eq!(
            bind(&p, "/notes"),
            "/home/drover/notes",
            "~ is not relative"
        );
        assert_eq!(file(&p, "/run/secrets/db"), "/home/u/app/secrets/db.txt");
        assert_eq!(file(&p, "/etc/app.conf"), "/etc/drover/site.conf");
    }

    #[test]
    fn same_changes_nothing_and_swarm_mode_leaves_secret_files_to_drover() {
        let l = at_config(Mode::Plain);
        let (p, done) = translate(&l.project, &l.resolved_paths, &HostPaths::Same, &same).unwrap();
        assert_eq!((p, done.len()), (l.project.clone(), 0));
        for mode in [Mode::Swarm, Mode::Auto] {
            let s = at_config(mode);
            assert!(s.resolved_paths.iter().all(|u| u.kind == UseKind::Bind));
        }
    }

    #[test]
    fn paths_an_included_file_made_absolute_are_still_translated() {
        let base = temp("include");
        let dir = base.join("config");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/compose.yml"),
            "services:\n  inc:\n    image: img\n    volumes:\n      - ./d:/d\n      \
             - /srv/abs:/abs\n      - {type: bind, source: ../up, target: /up}\n",
        )
        .unwrap();
        let l = loaded(
            &dir,
            "include: [sub/compose.yml]\nservices:\n  web:\n    image: img\n",
            Mode::Plain,
        );
        let host = mounts(vec![mount(dir.to_str().unwrap(), Some("/h/app"), "bind")]);
        let (p, _) = translate(&l.project, &l.resolved_paths, &host, &same).unwrap();
        let src = |t: &str| {
            let m = p.services["inc"].volumes.iter().find(|m| m.target == t);
            m.unwrap().source.clone().unwrap()
        };
        assert_eq!(src("/d"), "/h/app/sub/d");
        assert_eq!(src("/up"), "/h/app/up");
        assert_eq!(src("/abs"), "/srv/abs");
        let over = HostPaths::ProjectDir("/h/other".into());
        let (p, _) = translate(&l.project, &l.resolved_paths, &over, &same).unwrap();
        let d = p.services["inc"].volumes.iter().find(|m| m.target == "/d");
        assert_eq!(d.unwrap().source.as_deref(), Some("/h/other/sub/d"));
    }

    #[test]
    fn relative_to_walks_up_when_needed() {
        let r = |p: &str, b: &str| relative_to(Path::new(p), Path::new(b));
        assert_eq!(r("/config/data", "/config"), PathBuf::from("data"));
        assert_eq!(r("/shared/x", "/config"), PathBuf::from("../shared/x"));
        assert_eq!(r("/config", "/config"), PathBuf::from(""));
        assert_eq!(r("/a/./b/../c", "/a"), PathBuf::from("c"));
    }

    #[test]
    fn load_applies_the_translation() {
        let dir = temp("load");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("compose.yml"),
            "services:\n  web:\n    image: img\n    volumes: [./data:/data]\n",
        )
        .unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let l = load(&LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            host_paths: mounts(vec![mount(dir.to_str().unwrap(), Some("/h/app"), "bind")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(bind(&l.project, "/data"), "/h/app/data");
        assert_eq!(
            describe(&l.host_paths),
            format!("{}/data -> /h/app/data", dir.display())
        );
    }
}
