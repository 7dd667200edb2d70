//! Merging several Compose files (`-f a.yml -f b.yml`) into one tree, later files winning.
//!
//! Rules (a subset of Compose's):
//! - maps merge key by key, recursively (top-level `services`, `networks`, `volumes`, a
//!   service's `deploy`, `healthcheck`, ...);
//! - a service's `environment` and `labels` merge per variable/label, and `depends_on`
//!   and `networks` per name, whether each file writes them as a map or as a list;
//! - every other list (`ports`, `volumes`, `command`, `env_file`, ...) and every scalar
//!   is replaced as a whole by the later file.

use super::yaml::{Key, Kind, Node};

/// Merge `over` onto `base` (both whole files).
pub fn merge_files(base: Node, over: Node) -> Node {
    merge(base, over, &mut Vec::new())
}

fn merge(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    let (base, over) = if path.len() == 3 && path[0] == "services" {
        normalize_pair(&path[2], base, over)
    } else {
        (base, over)
    };
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
            Node {
                kind: Kind::Map(entries),
                loc: base.loc,
            }
        }
        (_, kind) => Node {
            kind,
            loc: over.loc,
        },
    }
}

/// For the service keys that merge per entry, turn list forms into map forms.
fn normalize_pair(key: &str, base: Node, over: Node) -> (Node, Node) {
    let split = match key {
        "environment" | "labels" => true,
        "depends_on" | "networks" => false,
        _ => return (base, over),
    };
    (to_map(base, split), to_map(over, split))
}

/// `["A=1", "B"]` -> `{A: "1", B: null}` when `split`; `[a, b]` -> `{a: null, b: null}`
/// otherwise. Anything else is left for the reader to report.
fn to_map(node: Node, split: bool) -> Node {
    let Kind::Seq(items) = &node.kind else {
        return node;
    };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Kind::Str(s) = &item.kind else {
            return node;
        };
        let (name, value) = match s.split_once('=') {
            Some((k, v)) if split => (k.to_string(), Kind::Str(v.to_string())),
            _ => (s.clone(), Kind::Null),
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
            },
        ));
    }
    Node {
        kind: Kind::Map(entries),
        loc: node.loc,
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

    #[test]
    fn later_file_wins_and_maps_merge() {
        let a = y(
            "a.yml",
            "services:\n  web:\n    image: a\n    environment: [A=1, B=2]\n    ports: ['80']\n",
        );
        let b = y(
            "b.yml",
            "services:\n  web:\n    image: b\n    environment: {B: 3, C: 4}\n    ports: ['81']\n  db:\n    image: pg\n",
        );
        let m = merge_files(a, b);
        let web = m.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().kind, Kind::Str("b".into()));
        let env = web.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().kind, Kind::Str("1".into()));
        assert_eq!(env.get("B").unwrap().kind, Kind::Int(3));
        assert_eq!(env.get("C").unwrap().kind, Kind::Int(4));
        let Kind::Seq(ports) = &web.get("ports").unwrap().kind else {
            panic!("ports not a list")
        };
        assert_eq!(ports.len(), 1);
        assert_eq!(&*ports[0].loc.file, "b.yml");
        assert!(m.get("services").unwrap().get("db").is_some());
    }
}
