//! A service's keys that name files of the project: `env_file`, `secrets`, `configs`.

use std::collections::HashMap;
use std::path::Path;

use super::super::dotenv;
use super::super::model::*;
use super::super::read::{self, Result, child, fail, index};
use super::super::syntax;
use super::super::yaml::{Kind, Loc, Node};
use super::Cx;

/// `env_file`: its variables come from the project's variables, then from the service's
/// `environment` (`service_env`), then from the keys read before, as compose resolves them.
pub(super) fn env_files(
    cx: &mut Cx,
    v: &Node,
    p: &str,
    service_env: &HashMap<String, String>,
) -> Result<Vec<(String, Option<String>)>> {
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
    let mut read_so_far = service_env.clone();
    for (file, required, loc, ip) in files {
        let full = syntax::join_lexically(cx.project_dir, Path::new(&file));
        super::super::reads::note(&full);
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
        // The project's variables first, then the service's, then the keys read before.
        let lookup = |k: &str| cx.env.get(k).or_else(|| service_env.get(k)).cloned();
        let entries = dotenv::parse(&text, &lookup, &mut read_so_far)
            .map_err(|(line, msg)| fail(&loc, &ip, format!("{}:{line}: {msg}", full.display())))?;
        // A key alone that the project's variables lack is left out, as compose does.
        out.extend(entries.into_iter().filter(|(_, v)| v.is_some()));
    }
    Ok(out)
}

/// A service's `secrets` or `configs`: names, or `{source, target, uid, gid, mode}`.
pub(super) fn file_mounts(cx: &mut Cx, v: &Node, p: &str, secrets: bool) -> Result<Vec<FileMount>> {
    let section = if secrets { "secrets" } else { "configs" };
    let mut out: Vec<FileMount> = Vec::new();
    for (i, item) in read::seq(v, p)?.iter().enumerate() {
        let ip = index(p, i);
        let mut m = FileMount {
            source: String::new(),
            file: None,
            target: String::new(),
            uid: None,
            gid: None,
            mode: None,
        };
        let mut target = None;
        let loc = item.loc.clone();
        match &item.kind {
            Kind::Str(s) => m.source = s.clone(),
            Kind::Map(entries) => {
                let mut source = None;
                for (k, val) in entries {
                    let kp = child(&ip, &k.name);
                    match k.name.as_str() {
                        "source" => source = Some(read::string(val, &kp)?),
                        "target" => target = read::opt_string(val, &kp)?,
                        "uid" => m.uid = Some(id_text(val, &kp)?),
                        "gid" => m.gid = Some(id_text(val, &kp)?),
                        "mode" => m.mode = Some(file_mode(val, &kp)?),
                        key if key.starts_with("x-") => {}
                        _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
                    }
                    if matches!(k.name.as_str(), "uid" | "gid" | "mode") {
                        cx.swarm_only(
                            &k.loc,
                            &kp,
                            "ignored in plain mode: the file is bind-mounted as it is (compose \
                             ignores it on one engine too)",
                        );
                    }
                }
                m.source = source.ok_or_else(|| fail(&item.loc, &ip, "missing source"))?;
            }
            _ => return Err(fail(&item.loc, &ip, "expected a name or a map")),
        }
        let defs = if secrets { cx.secrets } else { cx.configs };
        let source = &m.source;
        match defs.get(source) {
            Some(Ok(def)) if def.external && cx.mode == Mode::Plain => {
                return Err(fail(
                    &loc,
                    &ip,
                    format!(
                        "{section} {source:?}: external secrets and configs exist only in Swarm \
                         mode; use file:"
                    ),
                ));
            }
            Some(Ok(def)) => m.file = def.file.clone(),
            Some(Err(why)) => {
                return Err(fail(&loc, &ip, format!("{section} {source:?}: {why}")));
            }
            None => {
                return Err(fail(
                    &loc,
                    &ip,
                    format!("{source:?} is not declared in the top-level {section}"),
                ));
            }
        }
        m.target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if secrets => format!("/run/secrets/{t}"),
            Some(t) => format!("/{t}"),
            None if secrets => format!("/run/secrets/{source}"),
            None => format!("/{source}"),
        };
        out.retain(|o| o.target != m.target);
        out.push(m);
    }
    Ok(out)
}

/// A `uid`/`gid`: a number, written as a number or as text.
pub(super) fn id_text(v: &Node, p: &str) -> Result<String> {
    let t = read::scalar_text(v).unwrap_or_default();
    if t.trim().parse::<u32>().is_err() {
        return Err(read::bad(v, p, "expected a numeric id"));
    }
    Ok(t.trim().to_string())
}

/// A file mode: `0440` (octal, as YAML 1.1 and compose read a leading zero) or a number.
pub(super) fn file_mode(v: &Node, p: &str) -> Result<u32> {
    let mode = match &v.kind {
        Kind::Str(t) => u32::from_str_radix(t.trim().trim_start_matches("0o"), 8)
            .map_err(|_| read::bad(v, p, "expected an octal mode like 0440"))?,
        _ => {
            u32::try_from(read::int(v, p)?).map_err(|_| read::bad(v, p, "expected a file mode"))?
        }
    };
    if mode > 0o7777 {
        return Err(read::bad(v, p, "expected a file mode like 0440"));
    }
    Ok(mode)
}
