//! What compose resolves inside each file before files are merged: `include` (other
//! Compose files whose resources join the project) and `extends` (a service built on
//! another one, from the same file or another file).
//!
//! Relative paths in what comes from another directory (bind mounts, `env_file`, secret
//! and config files) are made absolute against that directory, so they keep pointing where
//! the file that wrote them meant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::merge;
use super::read::{self, Result, child, fail};
use super::syntax;
use super::yaml::{Key, Kind, Node};
use super::{ConfigError, dotenv, parse, read_file};

/// At most this many files deep (include in include ...), against loops.
const MAX_DEPTH: usize = 16;

/// Resolve `include` and `extends` in the file `node` read from `dir`.
pub fn resolve(
    mut node: Node,
    dir: &Path,
    env: &HashMap<String, String>,
    depth: usize,
) -> Result<Node> {
    if let Some(inc) = take_key(&mut node, "include") {
        for (i, item) in includes(&inc)?.into_iter().enumerate() {
            let tree = load_include(&item, dir, env, depth, i)?;
            add_resources(&mut node, tree, &item.loc)?;
        }
    }
    apply_extends(&mut node, dir, env, depth)?;
    Ok(node)
}

struct Include {
    paths: Vec<String>,
    project_directory: Option<String>,
    env_files: Vec<String>,
    loc: super::yaml::Loc,
}

fn includes(node: &Node) -> Result<Vec<Include>> {
    let mut out = Vec::new();
    for (i, item) in read::seq(node, "include")?.iter().enumerate() {
        let p = read::index("include", i);
        match &item.kind {
            Kind::Str(s) => out.push(Include {
                paths: vec![s.clone()],
                project_directory: None,
                env_files: Vec::new(),
                loc: item.loc.clone(),
            }),
            Kind::Map(entries) => {
                let mut inc = Include {
                    paths: Vec::new(),
                    project_directory: None,
                    env_files: Vec::new(),
                    loc: item.loc.clone(),
                };
                for (k, v) in entries {
                    let kp = child(&p, &k.name);
                    match k.name.as_str() {
                        "path" => inc.paths = read::string_or_list(v, &kp, false)?,
                        "project_directory" => inc.project_directory = read::opt_string(v, &kp)?,
                        "env_file" => inc.env_files = read::string_or_list(v, &kp, false)?,
                        key if key.starts_with("x-") => {}
                        _ => return Err(fail(&k.loc, &kp, "unknown include setting")),
                    }
                }
                if inc.paths.is_empty() {
                    return Err(fail(&item.loc, &p, "missing path"));
                }
                out.push(inc);
            }
            _ => return Err(fail(&item.loc, &p, "expected a path or a map")),
        }
    }
    Ok(out)
}

fn load_include(
    inc: &Include,
    dir: &Path,
    env: &HashMap<String, String>,
    depth: usize,
    i: usize,
) -> Result<Node> {
    let p = read::index("include", i);
    if depth >= MAX_DEPTH {
        return Err(fail(&inc.loc, &p, "includes nest too deep (a loop?)"));
    }
    let first = syntax::join_lexically(dir, Path::new(&inc.paths[0]));
    let project_dir = match &inc.project_directory {
        Some(d) => syntax::join_lexically(dir, Path::new(d)),
        None => first.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    // The included project's own variables; the including project's win.
    let mut inc_env: HashMap<String, String> = HashMap::new();
    let (files, required): (Vec<PathBuf>, bool) = if inc.env_files.is_empty() {
        (vec![project_dir.join(".env")], false)
    } else {
        let files = inc
            .env_files
            .iter()
            .map(|f| syntax::join_lexically(dir, Path::new(f)))
            .collect();
        (files, true)
    };
    for f in files {
        super::reads::note(&f);
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => {
                return Err(fail(
                    &inc.loc,
                    &p,
                    format!("cannot read {}: {e}", f.display()),
                ));
            }
        };
        dotenv::parse(&text, &|k| env.get(k).cloned(), &mut inc_env)
            .map_err(|(line, msg)| fail(&inc.loc, &p, format!("{}:{line}: {msg}", f.display())))?;
    }
    for (k, v) in env {
        inc_env.insert(k.clone(), v.clone());
    }

    let mut tree: Option<Node> = None;
    for path in &inc.paths {
        let full = syntax::join_lexically(dir, Path::new(path));
        let shown = full.display().to_string();
        let text = read_file(&shown, &full).map_err(|e| fail(&inc.loc, &p, e))?;
        let node = parse(&shown, &text, Some(&inc_env))?;
        let file_dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let node = resolve(node, &file_dir, &inc_env, depth + 1)?;
        tree = Some(match tree {
            None => node,
            Some(base) => merge::merge_files(base, node),
        });
    }
    let mut tree = tree.unwrap_or_else(|| Node::new(Kind::Null, inc.loc.clone()));
    rebase_tree(&mut tree, &project_dir);
    Ok(tree)
}

/// Add the included file's services, networks, volumes, secrets and configs. A service
/// defined on both sides is an error (as in compose); for the other sections the including
/// file's definition wins.
fn add_resources(root: &mut Node, tree: Node, loc: &super::yaml::Loc) -> Result<()> {
    let Kind::Map(sections) = tree.kind else {
        return Ok(());
    };
    if matches!(root.kind, Kind::Null) {
        root.kind = Kind::Map(Vec::new());
    }
    let Kind::Map(root_entries) = &mut root.kind else {
        return Err(fail(&root.loc, "", "expected a map"));
    };
    for (key, value) in sections {
        if !matches!(
            key.name.as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs"
        ) {
            continue;
        }
        let Kind::Map(items) = value.kind else {
            continue;
        };
        let section = match root_entries.iter().position(|(k, _)| k.name == key.name) {
            Some(i) => &mut root_entries[i].1,
            None => {
                root_entries.push((key.clone(), Node::new(Kind::Map(Vec::new()), loc.clone())));
                &mut root_entries.last_mut().expect("just pushed").1
            }
        };
        if matches!(section.kind, Kind::Null) {
            section.kind = Kind::Map(Vec::new());
        }
        let Kind::Map(existing) = &mut section.kind else {
            return Err(fail(&section.loc, &key.name, "expected a map"));
        };
        for (k, v) in items {
            match existing.iter().find(|(ek, _)| ek.name == k.name) {
                Some((ek, _)) if key.name == "services" => {
                    return Err(fail(
                        &ek.loc,
                        &format!("services.{}", k.name),
                        format!(
                            "conflicts with the service of the same name included from {}",
                            k.loc.file
                        ),
                    ));
                }
                Some(_) => {}
                None => existing.push((k, v)),
            }
        }
    }
    Ok(())
}

fn take_key(node: &mut Node, key: &str) -> Option<Node> {
    let Kind::Map(entries) = &mut node.kind else {
        return None;
    };
    let i = entries.iter().position(|(k, _)| k.name == key)?;
    Some(entries.remove(i).1)
}

fn services_of(node: &Node) -> Vec<(Key, Node)> {
    match node.get("services").map(|s| &s.kind) {
        Some(Kind::Map(entries)) => entries.clone(),
        _ => Vec::new(),
    }
}

/// Replace every service that `extends` another by the merge of the two.
fn apply_extends(
    root: &mut Node,
    dir: &Path,
    env: &HashMap<String, String>,
    depth: usize,
) -> Result<()> {
    let services = services_of(root);
    if !services.iter().any(|(_, v)| v.get("extends").is_some()) {
        return Ok(());
    }
    let file: Arc<str> = root.loc.file.clone();
    let mut resolved = Vec::with_capacity(services.len());
    for (k, _) in &services {
        let mut chain = Vec::new();
        let node = resolve_service(&services, &k.name, &file, dir, env, depth, &mut chain)?;
        resolved.push((k.clone(), node));
    }
    if let Kind::Map(entries) = &mut root.kind
        && let Some((_, s)) = entries.iter_mut().find(|(k, _)| k.name == "services")
    {
        s.kind = Kind::Map(resolved);
    }
    Ok(())
}

fn resolve_service(
    services: &[(Key, Node)],
    name: &str,
    file: &Arc<str>,
    dir: &Path,
    env: &HashMap<String, String>,
    depth: usize,
    chain: &mut Vec<String>,
) -> Result<Node> {
    let Some((_, node)) = services.iter().find(|(k, _)| k.name == name) else {
        return Err(ConfigError(format!(
            "{file}: no service {name:?} to extend"
        )));
    };
    let mut node = node.clone();
    let Some(ext) = take_key(&mut node, "extends") else {
        return Ok(node);
    };
    let p = format!("services.{name}.extends");
    let (base_name, base_file) = match &ext.kind {
        Kind::Str(s) => (s.clone(), None),
        Kind::Map(_) => {
            let svc = ext
                .get("service")
                .ok_or_else(|| fail(&ext.loc, &p, "missing service"))?;
            let f = match ext.get("file") {
                Some(f) => read::opt_string(f, &child(&p, "file"))?,
                None => None,
            };
            (read::string(svc, &child(&p, "service"))?, f)
        }
        _ => return Err(fail(&ext.loc, &p, "expected a service name or a map")),
    };
    let link = format!(
        "{}:{base_name}",
        base_file.as_deref().unwrap_or(file.as_ref())
    );
    if chain.contains(&link) || chain.len() > 32 {
        chain.push(link);
        return Err(fail(
            &ext.loc,
            &p,
            format!("extends cycle: {}", chain.join(" -> ")),
        ));
    }
    chain.push(link);
    let base = match base_file {
        None => {
            if !services.iter().any(|(k, _)| k.name == base_name) {
                return Err(fail(
                    &ext.loc,
                    &p,
                    format!("no service {base_name:?} in this file"),
                ));
            }
            resolve_service(services, &base_name, file, dir, env, depth, chain)?
        }
        Some(f) => {
            if depth >= MAX_DEPTH {
                return Err(fail(&ext.loc, &p, "extends nest too deep"));
            }
            let full = syntax::join_lexically(dir, Path::new(&f));
            let shown = full.display().to_string();
            let text = read_file(&shown, &full).map_err(|e| fail(&ext.loc, &p, e))?;
            let other = parse(&shown, &text, Some(env))?;
            let other_dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
            let other_services = services_of(&other);
            if !other_services.iter().any(|(k, _)| k.name == base_name) {
                return Err(fail(
                    &ext.loc,
                    &p,
                    format!("no service {base_name:?} in {f}"),
                ));
            }
            let other_file: Arc<str> = Arc::from(shown.as_str());
            let mut base = resolve_service(
                &other_services,
                &base_name,
                &other_file,
                &other_dir,
                env,
                depth + 1,
                chain,
            )?;
            rebase_service(&mut base, &other_dir);
            base
        }
    };
    chain.pop();
    Ok(merge::merge_service(base, node))
}

/// Make the relative paths of a whole tree absolute against `dir`.
fn rebase_tree(tree: &mut Node, dir: &Path) {
    let Kind::Map(sections) = &mut tree.kind else {
        return;
    };
    for (k, v) in sections.iter_mut() {
        let Kind::Map(items) = &mut v.kind else {
            continue;
        };
        match k.name.as_str() {
            "services" => {
                for (_, s) in items.iter_mut() {
                    rebase_service(s, dir);
                }
            }
            "secrets" | "configs" => {
                for (_, d) in items.iter_mut() {
                    if let Kind::Map(fields) = &mut d.kind {
                        for (fk, fv) in fields.iter_mut() {
                            if fk.name == "file" {
                                rebase_str(fv, dir, false);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Make a service's relative bind sources and `env_file` paths absolute against `dir`.
fn rebase_service(service: &mut Node, dir: &Path) {
    let Kind::Map(entries) = &mut service.kind else {
        return;
    };
    for (k, v) in entries.iter_mut() {
        match k.name.as_str() {
            "volumes" => {
                if let Kind::Seq(items) = &mut v.kind {
                    for item in items {
                        match &mut item.kind {
                            Kind::Str(s) => {
                                if let Some((src, rest)) = s.split_once(':')
                                    && src.starts_with('.')
                                {
                                    let abs = syntax::join_lexically(dir, Path::new(src));
                                    *s = format!("{}:{rest}", abs.display());
                                    item.rebased = true;
                                }
                            }
                            Kind::Map(fields) => {
                                let bind = fields.iter().any(|(fk, fv)| {
                                    fk.name == "type" && fv.kind == Kind::Str("bind".into())
                                });
                                for (fk, fv) in fields.iter_mut() {
                                    if bind && fk.name == "source" {
                                        rebase_str(fv, dir, true);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            "env_file" => match &mut v.kind {
                Kind::Str(_) => rebase_str(v, dir, false),
                Kind::Seq(items) => {
                    for item in items {
                        match &mut item.kind {
                            Kind::Map(fields) => {
                                for (fk, fv) in fields.iter_mut() {
                                    if fk.name == "path" {
                                        rebase_str(fv, dir, false);
                                    }
                                }
                            }
                            _ => rebase_str(item, dir, false),
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// A relative path made absolute (`~` paths are left alone; only `.`-paths when `dotted`).
fn rebase_str(node: &mut Node, dir: &Path, dotted: bool) {
    if let Kind::Str(s) = &mut node.kind {
        let relative = !s.starts_with('/') && !s.starts_with('~');
        if relative && (!dotted || s.starts_with('.')) {
            *s = syntax::join_lexically(dir, Path::new(s.as_str()))
                .display()
                .to_string();
            node.rebased = true;
        }
    }
}
