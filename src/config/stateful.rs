//! Warnings for services that keep data where it cannot follow them.
//!
//! A volume of the `local` driver lives on one engine. drover carries a replica's anonymous
//! volumes over to its successor on the same node (see the executor), but nothing local
//! can follow a replica to another node, and Swarm gives every new task fresh anonymous
//! volumes. The loader cannot see the volumes an image declares (that needs the engine),
//! only those the Compose file names.

use super::model::{Mode, MountKind, Project, Service, Settings};

/// One warning per service whose local data may be left behind: on several plain nodes,
/// a service that may be placed on more than one of them and has an anonymous or a local
/// named volume; in Swarm mode, a service with an anonymous volume.
pub fn warnings(project: &Project, settings: &Settings, mode: Mode) -> Vec<String> {
    let mut out = Vec::new();
    for svc in project.services.values() {
        match mode {
            Mode::Swarm => {
                let anonymous = anonymous_targets(svc);
                if !anonymous.is_empty() {
                    out.push(format!(
                        "services.{}: Swarm gives every new task fresh anonymous volumes, so \
                         the data in {} does not survive an update or a rescheduled task; \
                         use a named volume",
                        svc.name,
                        anonymous.join(", ")
                    ));
                }
            }
            Mode::Plain | Mode::Auto => {
                let local = local_targets(project, svc);
                let nodes = eligible_nodes(settings, svc);
                if !local.is_empty() && nodes.len() > 1 {
                    out.push(format!(
                        "services.{}: keeps data in local volumes ({}) but may be placed on \
                         nodes {}: a replica that moves to another node starts with empty \
                         volumes; use a volume driver with shared storage, or pin the service \
                         with a placement constraint",
                        svc.name,
                        local.join(", "),
                        nodes.join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// Paths of the service's anonymous volumes.
fn anonymous_targets(svc: &Service) -> Vec<String> {
    svc.volumes
        .iter()
        .filter(|m| m.kind == MountKind::Volume && m.source.is_none())
        .map(|m| m.target.clone())
        .collect()
}

/// Paths of the service's anonymous volumes and named volumes of the local driver.
fn local_targets(project: &Project, svc: &Service) -> Vec<String> {
    svc.volumes
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .filter(|m| match &m.source {
            None => true,
            Some(name) => project.volumes.values().any(|v| {
                &v.name == name && !v.external && v.driver.as_deref().is_none_or(|d| d == "local")
            }),
        })
        .map(|m| m.target.clone())
        .collect()
}

/// The configured nodes the service's constraints allow, judged by the labels in the file
/// (an engine's own labels are only known once connected).
fn eligible_nodes<'a>(settings: &'a Settings, svc: &Service) -> Vec<&'a str> {
    settings
        .nodes
        .iter()
        .filter(|n| {
            svc.placement
                .constraints
                .iter()
                .all(|c| c.allows(&n.name, &n.labels))
        })
        .map(|n| n.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load};

    fn load_text(compose: &str, mode: Mode) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!(
            "drover-stateful-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        let loaded = load(&LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            mode: Some(mode),
            ..Default::default()
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        warnings(&loaded.project, &loaded.settings, mode)
    }

    const NODES: &str = r#"
x-drover:
  nodes:
    - { name: n1, host: "unix:///a.sock", labels: { disk: ssd } }
    - { name: n2, host: "unix:///b.sock" }
"#;

    #[test]
    fn a_stateful_service_that_may_move_between_nodes_is_warned_about() {
        let compose = format!(
            "{NODES}services:\n  db:\n    image: x\n    volumes: [\"/data\", \"pg:/pg\"]\n  \
             web:\n    image: x\nvolumes:\n  pg: {{}}\n"
        );
        let w = load_text(&compose, Mode::Plain);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("services.db: keeps data in local volumes (/data, /pg)")
                && w[0].contains("nodes n1, n2"),
            "{w:?}"
        );
    }

    #[test]
    fn pinned_shared_or_single_node_services_are_not() {
        let pinned = format!(
            "{NODES}services:\n  db:\n    image: x\n    volumes: [\"/data\"]\n    deploy:\n      \
             placement:\n        constraints: [node.labels.disk == ssd]\n"
        );
        assert!(load_text(&pinned, Mode::Plain).is_empty());
        let shared = format!(
            "{NODES}services:\n  db:\n    image: x\n    volumes: [\"pg:/pg\"]\nvolumes:\n  pg: \
             {{ driver: nfs-like }}\n"
        );
        assert!(load_text(&shared, Mode::Plain).is_empty());
        let one = "services:\n  db:\n    image: x\n    volumes: [\"/data\"]\n";
        assert!(load_text(one, Mode::Plain).is_empty());
    }

    #[test]
    fn in_swarm_mode_an_anonymous_volume_is_warned_about() {
        let compose = "services:\n  db:\n    image: x\n    volumes: [\"/data\", \"pg:/pg\"]\n\
                       volumes:\n  pg: {}\n";
        let w = load_text(compose, Mode::Swarm);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("the data in /data does not survive"), "{w:?}");
    }
}
