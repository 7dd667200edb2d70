//! Top-level `secrets` and `configs`: their definitions, and the services' uses of the
//! files they name (paths drover hands the engine in plain mode).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::hostpath::{PathUse, UseKind, relative_to};
use super::super::model::*;
use super::super::read::{self, Result, Warnings, child};
use super::super::service;
use super::super::syntax;
use super::super::yaml::{Kind, Node};
use super::TopLevel;

/// Top-level `secrets` or `configs`: key -> its definition, or why it cannot be used.
pub(super) fn file_sources(
    node: &Node,
    section: &str,
    project: &str,
    project_dir: &Path,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, service::FileSource>> {
    let mut out = BTreeMap::new();
    for (k, v) in read::map_or_null(node, section)? {
        let p = child(section, &k.name);
        let mut file = None;
        let mut external = false;
        let mut name = None;
        let mut labels = BTreeMap::new();
        let mut unusable = None;
        for (dk, dv) in read::map_or_null(v, &p)? {
            let dp = child(&p, &dk.name);
            match dk.name.as_str() {
                "file" => {
                    let f = read::string(dv, &dp)?;
                    file = Some(
                        syntax::join_lexically(project_dir, Path::new(&f))
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
                "external" => external = external_flag(dv, &dp, &mut name)?,
                "name" => name = read::opt_string(dv, &dp)?,
                "labels" => {
                    labels = read::string_map(dv, &dp)?;
                }
                "environment" => {
                    unusable =
                        Some("values from environment variables are not supported yet; use file:")
                }
                "content" => unusable = Some("inline content is not supported yet; use file:"),
                "driver" | "driver_opts" | "template_driver" => {
                    warnings.at(&dk.loc, &dp, "not supported yet, ignored")
                }
                key if key.starts_with("x-") => {}
                _ => warnings.at(&dk.loc, &dp, "unknown key, ignored"),
            }
        }
        let source = match (unusable, external, file) {
            (Some(why), _, _) => Err(why),
            (None, true, _) => Ok(SwarmObject {
                name: name.unwrap_or_else(|| k.name.clone()),
                file: None,
                external: true,
                labels,
            }),
            (None, false, Some(file)) => Ok(SwarmObject {
                name: name.unwrap_or_else(|| format!("{project}_{}", k.name)),
                file: Some(file),
                external: false,
                labels,
            }),
            (None, false, None) => {
                Err("has no file: (drover reads secrets and configs from files)")
            }
        };
        out.insert(k.name.clone(), source);
    }
    Ok(out)
}

/// `external: true|false`, or the legacy `external: {name: N}` (which sets the name).
fn external_flag(v: &Node, p: &str, name: &mut Option<String>) -> Result<bool> {
    if let Kind::Map(_) = &v.kind {
        if let Some(n) = v.get("name") {
            *name = read::opt_string(n, &child(p, "name"))?;
        }
        return Ok(true);
    }
    read::boolean(v, p)
}

/// In plain mode the secret and config files are bind-mounted by the engine. Swarm mode
/// reads them and sends their content; with the mode not decided yet (auto), they are
/// left as drover reads them.
pub(super) fn secret_and_config_uses(
    top: &TopLevel,
    services: &BTreeMap<String, Service>,
    project_dir: &Path,
) -> Vec<PathUse> {
    let mut out = Vec::new();
    for (node, kind) in [
        (top.secrets, UseKind::Secret),
        (top.configs, UseKind::Config),
    ] {
        if let Some(n) = node {
            out.extend(file_uses(n, kind, services, project_dir));
        }
    }
    out
}

/// The services' uses of top-level secrets or configs with a `file:`, each located at
/// the `file:` entry.
fn file_uses(
    node: &Node,
    kind: UseKind,
    services: &BTreeMap<String, Service>,
    project_dir: &Path,
) -> Vec<PathUse> {
    let section = if kind == UseKind::Secret {
        "secrets"
    } else {
        "configs"
    };
    let mut files: BTreeMap<&str, (String, Option<PathBuf>)> = BTreeMap::new();
    if let Kind::Map(entries) = &node.kind {
        for (k, v) in entries {
            if let Some(f) = v.get("file")
                && let Some(text) = read::scalar_text(f)
            {
                let at = format!("{}: {section}.{}.file", f.loc, k.name);
                let relative = (!text.starts_with('/') || f.rebased).then(|| {
                    relative_to(
                        &syntax::join_lexically(project_dir, Path::new(&text)),
                        project_dir,
                    )
                });
                files.insert(k.name.as_str(), (at, relative));
            }
        }
    }
    let mut out = Vec::new();
    for s in services.values() {
        let uses = if kind == UseKind::Secret {
            &s.options.secrets
        } else {
            &s.options.configs
        };
        for m in uses.iter().filter(|m| m.file.is_some()) {
            if let Some((at, relative)) = files.get(m.source.as_str()) {
                out.push(PathUse {
                    service: s.name.clone(),
                    kind,
                    target: m.target.clone(),
                    at: at.clone(),
                    relative: relative.clone(),
                });
            }
        }
    }
    out
}
