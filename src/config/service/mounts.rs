//! A service's `volumes` and `tmpfs` entries -> [`Mount`]s, with the bind sources drover
//! resolved itself (for the host path translation).

use std::path::{Path, PathBuf};

use super::super::hostpath::relative_to;
use super::super::model::*;
use super::super::read::{self, Result, Warnings, child, fail};
use super::super::syntax;
use super::super::yaml::{Key, Kind, Loc, Node};
use super::Cx;

/// Turn a volume key or host path into the mount's source.
pub(super) fn resolve_source(
    cx: &Cx,
    kind: MountKind,
    src: &str,
    loc: &Loc,
    p: &str,
) -> Result<String> {
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

/// A bind source drover resolved itself (relative, `~`, or made absolute by `include` or
/// `extends`): where it is written and the path relative to the project directory (`None`
/// for `~`).
pub(super) type Resolved = Option<(String, Option<PathBuf>)>;

/// A bind source as written (`rebased`: made absolute by `include`/`extends`, see
/// `Node::rebased`) and what drover resolved it `to` -> `Resolved`.
fn resolved_bind(
    cx: &Cx,
    kind: MountKind,
    (written, rebased): (&str, bool),
    to: &str,
    at: String,
) -> Resolved {
    if kind != MountKind::Bind || (written.starts_with('/') && !rebased) {
        return None;
    }
    let home = written == "~" || written.starts_with("~/");
    let relative = (!home).then(|| relative_to(Path::new(to), cx.project_dir));
    Some((at, relative))
}

/// A `volumes` entry, and whether its source is a bind source drover resolved.
pub(super) fn mount(cx: &mut Cx, item: &Node, p: &str) -> Result<(Mount, Resolved)> {
    match &item.kind {
        Kind::Str(s) => short_mount(cx, item, s, p),
        Kind::Map(entries) => long_mount(cx, item, entries, p),
        _ => Err(fail(&item.loc, p, "expected a volume string or a map")),
    }
}

/// `[SOURCE:]TARGET[:MODE]`.
fn short_mount(cx: &mut Cx, item: &Node, s: &str, p: &str) -> Result<(Mount, Resolved)> {
    let spec = syntax::parse_volume_short(s).map_err(|m| fail(&item.loc, p, m))?;
    let source = match &spec.source {
        Some(src) => Some(resolve_source(cx, spec.kind, src, &item.loc, p)?),
        None => None,
    };
    let resolved = match (&spec.source, &source) {
        (Some(src), Some(to)) => {
            let at = format!("{}: {p}", item.loc);
            resolved_bind(cx, spec.kind, (src, item.rebased), to, at)
        }
        _ => None,
    };
    let mut m = mount_of(spec.kind, source, spec.target);
    m.read_only = spec.read_only;
    m.selinux = spec.selinux;
    m.nocopy = spec.nocopy;
    if spec.kind == MountKind::Bind {
        // The short syntax creates a missing host directory, as `docker run -v` does.
        m.create_host_path = true;
        m.propagation = spec.propagation;
    }
    Ok((m, resolved))
}

/// The map form: `type`, `source`, `target`, `read_only` and a `bind`, `volume` or
/// `tmpfs` section of options.
fn long_mount(
    cx: &mut Cx,
    item: &Node,
    entries: &[(Key, Node)],
    p: &str,
) -> Result<(Mount, Resolved)> {
    let mut kind = None;
    let mut source: Option<(String, &Node)> = None;
    let mut target = None;
    let mut m = mount_of(MountKind::Volume, None, String::new());
    let mut options: Vec<(&str, &Node, String)> = Vec::new();
    for (k, v) in entries {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "type" => kind = Some(mount_type(v, &kp)?),
            "source" => {
                source = read::opt_string(v, &kp)?.map(|s| (s, v));
            }
            "target" => target = Some(read::string(v, &kp)?),
            "read_only" => m.read_only = read::boolean(v, &kp)?,
            "bind" | "volume" | "tmpfs" => options.push((k.name.as_str(), v, kp)),
            "consistency" => {}
            "image" => cx.warnings.at(&k.loc, &kp, "not supported yet, ignored"),
            key if key.starts_with("x-") => {}
            _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    let kind = kind.ok_or_else(|| fail(&item.loc, p, "missing type"))?;
    let target = target.ok_or_else(|| fail(&item.loc, p, "missing target"))?;
    if !target.starts_with('/') {
        return Err(fail(&item.loc, p, "the container path must be absolute"));
    }
    // Without a `bind` section compose sends a bind in the `Binds` form, which
    // creates a missing host path; with one, `create_host_path` decides (default
    // false: the mount form, and a missing path is an engine error).
    let mut bind_section = false;
    for (section, v, kp) in options {
        let applies = matches!(
            (section, kind),
            ("bind", MountKind::Bind) | ("volume", MountKind::Volume) | ("tmpfs", MountKind::Tmpfs)
        );
        if !applies {
            cx.warnings
                .at(&v.loc, &kp, "does not apply to this mount type, ignored");
            continue;
        }
        bind_section |= section == "bind" && !matches!(v.kind, Kind::Null);
        mount_options(cx, &mut m, section, v, &kp)?;
    }
    let mut resolved = None;
    let source = match (kind, source) {
        (MountKind::Tmpfs, _) => None,
        (MountKind::Bind, None) => return Err(fail(&item.loc, p, "missing source")),
        (kind, Some((src, node))) => {
            let sp = child(p, "source");
            let to = resolve_source(cx, kind, &src, &node.loc, &sp)?;
            let at = format!("{}: {sp}", node.loc);
            resolved = resolved_bind(cx, kind, (&src, node.rebased), &to, at);
            Some(to)
        }
        (MountKind::Volume, None) => None,
    };
    if kind == MountKind::Bind && !bind_section {
        m.create_host_path = true;
    }
    m.kind = kind;
    m.source = source;
    m.target = target;
    Ok((m, resolved))
}

/// `type`: bind, volume or tmpfs (compose's other types are refused).
fn mount_type(v: &Node, kp: &str) -> Result<MountKind> {
    let types = ["bind", "volume", "tmpfs", "npipe", "cluster", "image"];
    match read::choice(v, kp, &types)?.as_str() {
        "bind" => Ok(MountKind::Bind),
        "volume" => Ok(MountKind::Volume),
        "tmpfs" => Ok(MountKind::Tmpfs),
        _ => Err(read::bad(
            v,
            kp,
            "supported types are bind, volume and tmpfs",
        )),
    }
}

/// The options of a `bind`, `volume` or `tmpfs` section that applies to the mount.
fn mount_options(cx: &mut Cx, m: &mut Mount, section: &str, v: &Node, kp: &str) -> Result<()> {
    for (ok, ov) in read::map_or_null(v, kp)? {
        let op = child(kp, &ok.name);
        match (section, ok.name.as_str()) {
            ("bind", "create_host_path") => m.create_host_path = read::boolean(ov, &op)?,
            ("bind", "propagation") => {
                m.propagation = Some(read::choice(
                    ov,
                    &op,
                    &[
                        "shared", "rshared", "slave", "rslave", "private", "rprivate",
                    ],
                )?)
            }
            ("bind", "selinux") => m.selinux = Some(read::choice(ov, &op, &["z", "Z"])?),
            ("volume", "nocopy") => m.nocopy = read::boolean(ov, &op)?,
            ("tmpfs", "size") => m.tmpfs_size = Some(read::size(ov, &op)?),
            ("tmpfs", "mode") => {
                m.tmpfs_mode = Some(match &ov.kind {
                    // YAML reads 0755 as text (leading zero): octal, as compose.
                    Kind::Str(t) => u32::from_str_radix(t.trim(), 8)
                        .map_err(|_| read::bad(ov, &op, "expected an octal mode like 1777"))?,
                    _ => u32::try_from(read::int(ov, &op)?)
                        .map_err(|_| read::bad(ov, &op, "expected a file mode"))?,
                })
            }
            (_, key) if key.starts_with("x-") => {}
            _ => cx.warnings.at(&ok.loc, &op, "not supported yet, ignored"),
        }
    }
    Ok(())
}

/// One `tmpfs` entry: `/path[:size=N,mode=M,...]`.
pub(super) fn tmpfs_entry(w: &mut Warnings, entry: &str, loc: &Loc, p: &str) -> Result<Mount> {
    let (target, opts) = match entry.split_once(':') {
        Some((t, o)) => (t, Some(o)),
        None => (entry, None),
    };
    if !target.starts_with('/') {
        return Err(fail(loc, p, "the container path must be absolute"));
    }
    let mut m = mount_of(MountKind::Tmpfs, None, target.to_string());
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                m.tmpfs_size = Some(syntax::parse_size(v).map_err(|e| fail(loc, p, e))?)
            }
            Some(("mode", v)) => {
                m.tmpfs_mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| fail(loc, p, "mode must be octal, like 1777"))?,
                )
            }
            _ if opt.is_empty() => {}
            _ => w.at(loc, p, "tmpfs options other than size and mode are ignored"),
        }
    }
    Ok(m)
}

pub(super) fn mount_of(kind: MountKind, source: Option<String>, target: String) -> Mount {
    Mount {
        kind,
        source,
        target,
        read_only: false,
        create_host_path: false,
        propagation: None,
        selinux: None,
        nocopy: false,
        tmpfs_size: None,
        tmpfs_mode: None,
    }
}
