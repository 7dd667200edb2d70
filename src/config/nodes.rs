//! `x-drover.nodes` and `deploy.placement`: the engines a project spreads over and where
//! each service's replicas may run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::model::{
    Availability, Constraint, ConstraintField, Mode, NodeConfig, NodeTls, Placement,
};
use super::read::{self, Warnings, child, fail, index};
use super::yaml::{Kind, Node};

type Result<T> = std::result::Result<T, ConfigError>;

/// The `nodes` list of `x-drover`. Relative certificate paths are resolved against `dir`.
pub fn nodes(v: &Node, path: &str, dir: &Path, w: &mut Warnings) -> Result<Vec<NodeConfig>> {
    let mut out: Vec<NodeConfig> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, item) in read::seq(v, path)?.iter().enumerate() {
        let p = index(path, i);
        let mut name = None;
        let mut host = None;
        let mut tls = None;
        let mut server_name = None;
        let mut labels = BTreeMap::new();
        let mut address = None;
        let mut availability = Availability::Active;
        let mut witness = false;
        for (k, val) in read::map(item, &p)? {
            let kp = child(&p, &k.name);
            match k.name.as_str() {
                "name" => name = Some(read::string(val, &kp)?),
                "host" => host = Some(read::string(val, &kp)?),
                "tls" => tls = Some(node_tls(val, &kp, dir, w)?),
                "tls_server_name" => server_name = read::opt_string(val, &kp)?,
                "address" => {
                    let text = read::string(val, &kp)?;
                    address = Some(text.parse().map_err(|_| {
                        fail(
                            &val.loc,
                            &kp,
                            "an IP address the other nodes reach this one at",
                        )
                    })?);
                }
                "availability" => {
                    availability =
                        match read::choice(val, &kp, &["active", "pause", "drain"])?.as_str() {
                            "pause" => Availability::Pause,
                            "drain" => Availability::Drain,
                            _ => Availability::Active,
                        }
                }
                "role" => {
                    witness = match read::string(val, &kp)?.as_str() {
                        "worker" => false,
                        "witness" => true,
                        _ => {
                            return Err(fail(
                                &val.loc,
                                &kp,
                                "worker (runs replicas) or witness (holds lease votes only)",
                            ));
                        }
                    }
                }
                "labels" => {
                    for e in read::map_or_list(val, &kp)? {
                        labels.insert(e.key, e.value.unwrap_or_default());
                    }
                }
                key if key.starts_with("x-") => {}
                _ => w.at(&k.loc, &kp, "unknown key, ignored"),
            }
        }
        let name = name.ok_or_else(|| fail(&item.loc, &p, "a node needs a name"))?;
        if !valid_name(&name) {
            return Err(fail(
                &item.loc,
                &child(&p, "name"),
                "use letters, digits, '.', '_' and '-' (it becomes a label value)",
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(fail(&item.loc, &p, format!("node {name} is listed twice")));
        }
        let host = host.ok_or_else(|| fail(&item.loc, &p, "a node needs a host"))?;
        out.push(NodeConfig {
            name,
            host,
            tls,
            tls_server_name: server_name,
            labels,
            address,
            availability,
            witness,
        });
    }
    if !out.is_empty() && out.iter().all(|n| n.witness) {
        return Err(fail(
            &v.loc,
            path,
            "every node is a witness: at least one must run replicas (role: worker)",
        ));
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn node_tls(v: &Node, path: &str, dir: &Path, w: &mut Warnings) -> Result<NodeTls> {
    let mut tls = NodeTls {
        cert_path: None,
        ca: None,
        cert: None,
        key: None,
    };
    let file = |val: &Node, p: &str| -> Result<Option<PathBuf>> {
        Ok(read::opt_string(val, p)?.map(|s| dir.join(s)))
    };
    for (k, val) in read::map(v, path)? {
        let kp = child(path, &k.name);
        match k.name.as_str() {
            "cert_path" => tls.cert_path = file(val, &kp)?,
            "ca" => tls.ca = file(val, &kp)?,
            "cert" => tls.cert = file(val, &kp)?,
            "key" => tls.key = file(val, &kp)?,
            "verify" => {
                if !read::boolean(val, &kp)? {
                    return Err(fail(
                        &val.loc,
                        &kp,
                        "drover always verifies the engine's certificate; use tls_server_name \
                         when the certificate does not carry the dialled address",
                    ));
                }
            }
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok(tls)
}

/// `deploy.placement`. Swarm evaluates its constraints itself, so in Swarm mode any
/// expression is passed on; plain mode refuses what drover cannot evaluate.
pub fn placement(v: &Node, path: &str, w: &mut Warnings, mode: Mode) -> Result<Placement> {
    let mut out = Placement::default();
    let mut unevaluable = |loc: &super::yaml::Loc, p: &str, msg: &str| -> Result<()> {
        match mode {
            Mode::Plain => Err(fail(loc, p, msg)),
            Mode::Auto => {
                w.at(
                    loc,
                    p,
                    &format!("only Swarm mode can use this; in plain mode: {msg}"),
                );
                Ok(())
            }
            Mode::Swarm => Ok(()),
        }
    };
    let mut warnings = Vec::new();
    for (k, val) in read::map(v, path)? {
        let kp = child(path, &k.name);
        match k.name.as_str() {
            "constraints" => {
                for (i, c) in read::seq(val, &kp)?.iter().enumerate() {
                    let cp = index(&kp, i);
                    let text = read::string(c, &cp)?;
                    if !swarm_syntax(&text) {
                        return Err(fail(
                            &c.loc,
                            &cp,
                            "expected FIELD == VALUE or FIELD != VALUE (e.g. node.labels.zone == a)",
                        ));
                    }
                    match constraint(&text) {
                        Some(parsed) => out.constraints.push(parsed),
                        None => unevaluable(
                            &c.loc,
                            &cp,
                            "expected node.name or node.labels.KEY, then == or !=, then a value",
                        )?,
                    }
                    out.swarm_constraints.push(text.trim().to_string());
                }
            }
            "max_replicas_per_node" => out.max_replicas_per_node = Some(read::u32_(val, &kp)?),
            "preferences" => {
                for (i, pref) in read::seq(val, &kp)?.iter().enumerate() {
                    let pp = index(&kp, i);
                    let spread = match &pref.kind {
                        Kind::Map(_) => pref.get("spread"),
                        _ => None,
                    }
                    .ok_or_else(|| fail(&pref.loc, &pp, "expected `spread: DESCRIPTOR`"))?;
                    let sp = child(&pp, "spread");
                    let text = read::string(spread, &sp)?;
                    match text.trim().strip_prefix("node.labels.") {
                        Some(key) if !key.is_empty() => out.spread.push(key.to_string()),
                        _ => unevaluable(&spread.loc, &sp, "expected node.labels.KEY")?,
                    }
                    out.swarm_spread.push(text.trim().to_string());
                }
            }
            key if key.starts_with("x-") => {}
            _ => warnings.push((k.loc.clone(), kp)),
        }
    }
    for (loc, p) in warnings {
        w.at(&loc, &p, "not supported yet, ignored");
    }
    Ok(out)
}

/// `node.name == a`, `node.labels.zone!=b`. Other Swarm fields (node.role, node.id,
/// engine.labels...) are not drover's and are refused.
/// Swarm's grammar for a constraint, which every mode shares: a field name, `==` or `!=`,
/// and a value of Swarm's characters (`node.name === a` leaves the value `= a`).
fn swarm_syntax(text: &str) -> bool {
    let Some((lhs, rhs)) = text.split_once("==").or_else(|| text.split_once("!=")) else {
        return false;
    };
    let (key, value) = (lhs.trim(), rhs.trim());
    let key_ok = key.len() > 1
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let value_ok = !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || c.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(c)
        });
    key_ok && value_ok
}

fn constraint(text: &str) -> Option<Constraint> {
    let (lhs, rhs, equal) = if let Some((l, r)) = text.split_once("==") {
        (l, r, true)
    } else {
        let (l, r) = text.split_once("!=")?;
        (l, r, false)
    };
    let (lhs, value) = (lhs.trim(), rhs.trim());
    // Swarm's own rule for a constraint's value; `node.name === a` leaves `= a`.
    let value_ok =
        |c: char| c.is_ascii_alphanumeric() || c.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(c);
    if value.is_empty() || !value.chars().all(value_ok) {
        return None;
    }
    let field = match lhs {
        "node.name" | "node.hostname" => ConstraintField::NodeName,
        _ => ConstraintField::NodeLabel(
            lhs.strip_prefix("node.labels.")
                .or_else(|| lhs.strip_prefix("engine.labels."))
                .filter(|k| !k.is_empty())?
                .to_string(),
        ),
    };
    Some(Constraint {
        field,
        equal,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(compose: &str) -> std::result::Result<crate::config::Loaded, String> {
        let dir = std::env::temp_dir().join(format!(
            "drover-nodes-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            ..Default::default()
        });
        let _ = std::fs::remove_dir_all(&dir);
        loaded.map_err(|e| e.to_string())
    }

    #[test]
    fn a_witness_holds_lease_votes_and_a_worker_is_the_default() {
        let l = load_text(
            "services:\n  a: {image: x}\nx-drover:\n  nodes:\n    \
             - {name: a, host: \"tcp://10.0.0.1:2376\"}\n    \
             - {name: b, host: \"tcp://10.0.0.2:2376\", role: worker}\n    \
             - {name: w, host: \"tcp://10.0.0.3:2376\", role: witness}\n",
        )
        .unwrap();
        let roles: Vec<(&str, bool)> = l
            .settings
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.witness))
            .collect();
        assert_eq!(roles, [("a", false), ("b", false), ("w", true)]);
        let e = load_text(
            "services:\n  a: {image: x}\nx-drover:\n  nodes:\n    \
             - {name: a, host: \"tcp://10.0.0.1:2376\", role: boss}\n",
        )
        .unwrap_err();
        assert!(
            e.contains("x-drover.nodes[0].role") && e.contains("witness"),
            "{e}"
        );
        let e = load_text(
            "services:\n  a: {image: x}\nx-drover:\n  nodes:\n    \
             - {name: w, host: \"tcp://10.0.0.3:2376\", role: witness}\n",
        )
        .unwrap_err();
        assert!(e.contains("at least one must run replicas"), "{e}");
    }

    #[test]
    fn parses_constraints() {
        let c = constraint("node.labels.zone == a").unwrap();
        assert_eq!(c.field, ConstraintField::NodeLabel("zone".into()));
        assert!(c.equal);
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        assert!(c.allows("n1", &labels));
        assert!(!c.allows("n1", &BTreeMap::new()));
        let c = constraint("node.name!=n2").unwrap();
        assert!(c.allows("n1", &labels));
        assert!(!c.allows("n2", &labels));
        assert!(constraint("node.role == manager").is_none());
        assert!(constraint("node.name ==").is_none());
        assert!(constraint("node.name === a").is_none());
        assert!(constraint("node.name == a=b").is_none());
        assert!(constraint("node.labels.disk == ssd-*").is_some());
        for ok in [
            "node.role == manager",
            "engine.labels.os!=windows",
            "node.id==x1",
        ] {
            assert!(swarm_syntax(ok), "{ok}");
        }
        for bad in [
            "node.name === a",
            "node.role = manager",
            "== a",
            "node.role ==",
            "1x == a",
        ] {
            assert!(!swarm_syntax(bad), "{bad}");
        }
    }
}
