//! Merging Compose trees as compose does: several `-f` files (later files win), and a
//! service onto the service it `extends`.
//!
//! Rules (compose-go's override rules):
//! - maps merge key by key, recursively (top-level sections, a service's `deploy`,
//!   `healthcheck`, `ulimits`, ...);
//! - a service's `environment`, `labels`, `sysctls`, `annotations`, `extra_hosts`,
//!   `storage_opt` merge per entry, and `depends_on` and `networks` per name, whether each
//!   file writes them as a map or as a list;
//! - `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//! - `logging` is replaced whole when the driver changes, else its options merge;
//! - every other list of a service (`ports`, `volumes`, `secrets`, `dns`, `cap_add`, ...) is
//!   appended to, and entries that denote the same thing are then kept once, the later one
//!   winning in the earlier one's place: ports by their text, volumes and devices by
//!   container path, secrets and configs by target, `env_file` by path, other lists by value;
//! - scalars, and lists outside services, are replaced.

use super::syntax;
use super::yaml::{Key, Kind, Node};

/// Merge `over` onto `base` (both whole files).
pub fn merge_files(base: Node, over: Node) -> Node {
    merge(base, over, &mut Vec::new())
}

/// Merge service definition `over` onto `base` (for `extends`).
pub fn merge_service(base: Node, over: Node) -> Node {
    merge(
        base,
        over,
        &mut vec!["services".to_string(), "*".to_string()],
    )
}

fn merge(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    let in_service = path.len() == 3 && path[0] == "services";
    let (base, over) = if in_service {
        normalize_pair(&path[2], base, over)
    } else {
        (base, over)
    };
    if in_service && path[2] == "logging" {
        let driver = |n: &Node| n.get("driver").map(|d| d.kind.clone());
        if driver(&over).is_some() && driver(&base) != driver(&over) {
            return over;
        }
    }
    match (base.kind, over.kind) {
        (Kind::Map(mut entries), Kind::Map(over_entries)) => {
            for (k, v) in over_entries {
                match entries.iter().position(|(bk, _)| bk.name == k.name) {
                    Some(i) => {
                        let (bk, bv) = entries.remove(i);
                        path.push(k.name.clone());
                        let merged = merge(bv, v, path);
                        path.pop();
                        entries.insert(i, (bk, merged));
                    }
                    None => entries.push((k, v)),
                }
            }
            Node::new(Kind::Map(entries), base.loc)
        }
        (Kind::Seq(mut items), Kind::Seq(over_items))
            if in_service && !matches!(path[2].as_str(), "command" | "entrypoint") =>
        {
            items.extend(over_items);
            let key = path[2].clone();
            Node::new(Kind::Seq(unique(&key, items)), base.loc)
        }
        (_, kind) => Node {
            kind,
            loc: over.loc,
            vars: over.vars,
            rebased: over.rebased,
        },
    }
}

/// For the service keys that merge per entry, turn list forms into map forms; for the
/// keys that take one string or a list, make the string a list.
fn normalize_pair(key: &str, base: Node, over: Node) -> (Node, Node) {
    let split = match key {
        "environment" | "labels" | "sysctls" | "annotations" | "storage_opt" => Some('='),
        "extra_hosts" => Some(':'),
        "depends_on" | "networks" => None,
        "dns" | "dns_search" | "dns_opt" | "env_file" | "tmpfs" | "cap_add" | "cap_drop"
        | "profiles" | "security_opt" | "group_add" | "expose" | "links" | "external_links"
        | "volumes_from" | "devices" => return (to_seq(base), to_seq(over)),
        _ => return (base, over),
    };
    (to_map(base, split), to_map(over, split))
}

fn to_seq(node: Node) -> Node {
    match node.kind {
        Kind::Str(_) | Kind::Int(_) => {
            let loc = node.loc.clone();
            Node::new(Kind::Seq(vec![node]), loc)
        }
        _ => node,
    }
}

/// `["A=1", "B"]` -> `{A: "1", B: null}` when split on `=`; `[a, b]` -> `{a: null, b: null}`
/// without a separator. `extra_hosts` entries split on `=`, else on the first `:`.
/// Anything else is left for the reader to report.
fn to_map(node: Node, split: Option<char>) -> Node {
    let Kind::Seq(items) = &node.kind else {
        return node;
    };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Kind::Str(s) = &item.kind else {
            return node;
        };
        let cut = match split {
            Some(':') => s.split_once('=').or_else(|| s.split_once(':')),
            Some(c) => s.split_once(c),
            None => None,
        };
        let (name, value) = match cut {
            Some((k, v)) => (k.to_string(), Kind::Str(v.to_string())),
            None => (s.clone(), Kind::Null),
        };
        entries.retain(|(k, _)| k.name != name);
        entries.push((
            Key {
                name,
                loc: item.loc.clone(),
            },
            Node {
                kind: value,
                loc: item.loc.clone(),
                vars: item.vars.clone(),
                rebased: item.rebased,
            },
        ));
    }
    Node::new(Kind::Map(entries), node.loc)
}

/// Keep one entry per identity (see the module rules), the later one in the earlier place.
fn unique(key: &str, items: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<(Option<String>, Node)> = Vec::with_capacity(items.len());
    for item in items {
        let id = identity(key, &item);
        match id
            .as_ref()
            .and_then(|id| out.iter().position(|(k, _)| k.as_ref() == Some(id)))
        {
            Some(i) => out[i].1 = item,
            None => out.push((id, item)),
        }
    }
    out.into_iter().map(|(_, n)| n).collect()
}

fn text(n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The identity of a list entry, `None` when entries of this list are never merged.
fn identity(key: &str, n: &Node) -> Option<String> {
    let field = |f: &str| n.get(f).and_then(text);
    match key {
        "ports" => match &n.kind {
            Kind::Map(_) => Some(format!(
                "{}:{}:{}/{}",
                field("host_ip").unwrap_or_default(),
                field("published").unwrap_or_default(),
                field("target").unwrap_or_default(),
                field("protocol").unwrap_or_else(|| "tcp".into())
            )),
            _ => text(n),
        },
        "volumes" | "devices" => match &n.kind {
            Kind::Map(_) => field("target"),
            _ => text(n).map(|s| match syntax::parse_volume_short(&s) {
                Ok(v) => v.target,
                Err(_) => {
                    let parts: Vec<&str> = s.split(':').collect();
                    parts.get(1).unwrap_or(&parts[0]).to_string()
                }
            }),
        },
        "secrets" | "configs" => {
            let default = if key == "secrets" {
                "/run/secrets/"
            } else {
                "/"
            };
            match &n.kind {
                Kind::Map(_) => field("target")
                    .or_else(|| field("source"))
                    .map(|t| mount_target(default, &t)),
                _ => text(n).map(|t| mount_target(default, &t)),
            }
        }
        "env_file" => match &n.kind {
            Kind::Map(_) => field("path"),
            _ => text(n),
        },
        "security_opt" | "group_add" | "volumes_from" => None,
        _ => text(n),
    }
}

fn mount_target(default: &str, t: &str) -> String {
    if t.starts_with('/') {
        t.to_string()
    } else {
        format!("{default}{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn y(name: &str, text: &str) -> Node {
        parse(&Arc::from(name), text, Some(&HashMap::new())).unwrap()
    }

    fn strings(n: &Node) -> Vec<String> {
        let Kind::Seq(items) = &n.kind else {
            panic!("not a list: {n:?}")
        };
        items.iter().map(|i| text(i).unwrap_or_default()).collect()
    }

    #[test]
    fn later_file_wins_and_maps_merge() {
        let a = y(
            "a.yml",
            "services:\n  web:\n    image: a\n    environment: [A=1, B=2]\n    ports: ['80']\n    command: [a, b]\n",
        );
        let b = y(
            "b.yml",
            "services:\n  web:\n    image: b\n    environment: {B: 3, C: 4}\n    ports: ['81', '80']\n    command: [c]\n  db:\n    image: pg\n",
        );
        let m = merge_files(a, b);
        let web = m.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().kind, Kind::Str("b".into()));
        let env = web.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().kind, Kind::Str("1".into()));
        assert_eq!(env.get("B").unwrap().kind, Kind::Int(3));
        assert_eq!(env.get("C").unwrap().kind, Kind::Int(4));
        // Ports add up; the same port is kept once, the later one in its place.
        assert_eq!(strings(web.get("ports").unwrap()), vec!["80", "81"]);
        let Kind::Seq(ports) = &web.get("ports").unwrap().kind else {
            unreachable!()
        };
        assert_eq!(&*ports[0].loc.file, "b.yml");
        assert_eq!(strings(web.get("command").unwrap()), vec!["c"]);
        assert!(m.get("services").unwrap().get("db").is_some());
    }

    #[test]
    fn volumes_by_target_lists_by_value_logging_by_driver() {
        let a = y(
            "a.yml",
            "services:\n  web:\n    volumes: ['./a:/data', '/cache']\n    dns: 1.1.1.1\n    cap_add: [NET_ADMIN]\n    logging: {driver: json-file, options: {max-size: 1m}}\n    extra_hosts: ['a:10.0.0.1']\n",
        );
        let b = y(
            "b.yml",
            "services:\n  web:\n    volumes: [{type: bind, source: ./b, target: /data}, './c:/c']\n    dns: [8.8.8.8, 1.1.1.1]\n    cap_add: [NET_ADMIN, SYS_TIME]\n    logging: {options: {max-file: '2'}}\n    extra_hosts: {a: 10.0.0.2, b: 10.0.0.3}\n",
        );
        let m = merge_files(a, b);
        let web = m.get("services").unwrap().get("web").unwrap();
        let Kind::Seq(vols) = &web.get("volumes").unwrap().kind else {
            unreachable!()
        };
        assert_eq!(vols.len(), 3);
        assert!(matches!(vols[0].kind, Kind::Map(_)), "same target replaced");
        assert_eq!(strings(web.get("dns").unwrap()), vec!["1.1.1.1", "8.8.8.8"]);
        assert_eq!(
            strings(web.get("cap_add").unwrap()),
            vec!["NET_ADMIN", "SYS_TIME"]
        );
        let logging = web.get("logging").unwrap();
        assert!(logging.get("driver").is_some());
        assert!(logging.get("options").unwrap().get("max-size").is_some());
        assert!(logging.get("options").unwrap().get("max-file").is_some());
        let hosts = web.get("extra_hosts").unwrap();
        assert_eq!(hosts.get("a").unwrap().kind, Kind::Str("10.0.0.2".into()));
        // A new driver replaces the whole logging section.
        let c = y("c.yml", "services:\n  web:\n    logging: {driver: none}\n");
        let m = merge_files(m, c);
        let logging = m
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("logging");
        assert!(logging.unwrap().get("options").is_none());
    }
}
