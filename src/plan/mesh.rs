//! Services reaching each other across nodes (several nodes, plain mode; see
//! `crate::mesh`): which ambassador each node runs for each project network, and the
//! routes each one should have, decided as data from the listed containers.
//!
//! - One ambassador per node that is up and per project network that a service with ports
//!   joins; it answers to the names (and aliases) of those services. A service whose port
//!   another service of the network already takes gets an ambassador of its own on that
//!   network (one address per ambassador, so one service per port).
//! - Its routes: for each port of each of those services, the replicas running on its own
//!   node (their address on the network), then those on the other nodes that are not down
//!   (their node's address and the host port they publish there). A replica the engine
//!   reports unhealthy is left out.
//! - An exited ambassador, or one made from another definition, is replaced; one no
//!   longer needed is removed (on a drained node, once no replica runs there); a running one whose last pushed routes differ gets them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::SystemTime;

use super::{Action, Input, NodeState, Reason};
use crate::config::{Availability, Project, Protocol};
use crate::mesh::{Proto, Route, Routes};
use crate::observe::{Container, Health, State};
use crate::spec::Ambassador;

/// The routes last pushed to each ambassador, by container id (forgotten when it stops).
pub type Pushed = BTreeMap<String, Routes>;

/// The ambassadors of each project network that services with ports join: one per
/// network, and one more for each service whose ports another service of the network
/// already takes (each has one address on the network, so one port is one service).
pub fn ambassadors(project: &Project) -> Vec<Ambassador> {
    let Some(mesh) = &project.mesh else {
        return Vec::new();
    };
    let mut out: Vec<Ambassador> = Vec::new();
    for (key, net) in &project.networks {
        let mut groups: Vec<(BTreeSet<(u16, Proto)>, Ambassador)> = Vec::new();
        for svc in on_network(project, key) {
            let ports: BTreeSet<(u16, Proto)> = svc
                .mesh_ports()
                .into_iter()
                .map(|(port, proto)| (port, proto_of(proto)))
                .collect();
            let at = match groups
                .iter()
                .position(|(taken, _)| taken.is_disjoint(&ports))
            {
                Some(at) => at,
                None => {
                    let id = match groups.len() {
                        0 => key.clone(),
                        n => format!("{key}-{}", n + 1),
                    };
                    groups.push((
                        BTreeSet::new(),
                        Ambassador::new(id, key, &net.name, mesh.image()),
                    ));
                    groups.len() - 1
                }
            };
            let (taken, a) = &mut groups[at];
            taken.extend(ports);
            a.services.push(svc.name.clone());
            let aliases = svc.networks.get(key).map(|n| n.aliases.as_slice());
            for alias in std::iter::once(&svc.name).chain(aliases.unwrap_or_default()) {
                if !a.aliases.contains(alias) {
                    a.aliases.push(alias.clone());
                }
            }
        }
        out.extend(groups.into_iter().map(|(_, a)| a));
    }
    out
}

fn on_network<'a>(
    project: &'a Project,
    network: &'a str,
) -> impl Iterator<Item = &'a crate::config::Service> {
    project
        .services
        .values()
        .filter(move |s| s.options.mesh && s.networks.contains_key(network))
}

fn proto_of(p: Protocol) -> Proto {
    match p {
        Protocol::Udp => Proto::Udp,
        _ => Proto::Tcp,
    }
}

/// The routes of ambassador `a` on `node`.
pub fn routes(input: &Input, a: &Ambassador, node: &str) -> Routes {
    let project = input.project;
    let Some(mesh) = &project.mesh else {
        return Routes::default();
    };
    let Some(net) = project.networks.get(&a.network) else {
        return Routes::default();
    };
    let serving = |c: &&Container| {
        c.owned_by(&project.name) && c.state == State::Running && c.health != Health::Unhealthy
    };
    let mut out: Vec<Route> = Vec::new();
    for svc in a.services.iter().filter_map(|s| project.services.get(s)) {
        let replicas: Vec<&Container> = input
            .nodes
            .iter()
            .filter(|n| n.state != NodeState::Down)
            .flat_map(|n| n.snapshot.containers.iter())
            .filter(serving)
            .filter(|c| c.service() == Some(svc.name.as_str()) && c.slot().is_some())
            .collect();
        for (port, proto) in svc.mesh_ports() {
            let proto = proto_of(proto);
            if out.iter().any(|r| r.port == port && r.proto == proto) {
                continue;
            }
            let mut route = Route {
                service: svc.name.clone(),
                proto,
                port,
                local: Vec::new(),
                remote: Vec::new(),
            };
            for c in &replicas {
                if c.node == node {
                    if let Some(ip) = c.addresses.get(&net.name) {
                        route.local.push(SocketAddr::new(*ip, port));
                    }
                } else if let Some(addr) = mesh.addresses.get(&c.node)
                    && let Some(public) = c.published_on(*addr, port, proto)
                {
                    route.remote.push(SocketAddr::new(*addr, public));
                }
            }
            out.push(route);
        }
    }
    Routes::new(out)
}

/// The ambassadors' actions on every node that is up.
/// An ambassador that cannot be created, or crashes, is replaced after a growing delay
/// (the crash backoff's, on its own key); `recheck` gets the time it may be tried again.
/// `groups`: each node's, by position (see [`super::NodeGroups`]), which say where its
/// ambassadors are.
pub(super) fn plan(
    input: &Input,
    groups: &[Option<&super::NodeGroups>],
    out: &mut Vec<Action>,
    recheck: &mut Vec<SystemTime>,
) {
    let project = input.project;
    let pushed = input.pushed;
    let all = ambassadors(project);
    let up = (input.nodes.iter().zip(groups)).filter(|(n, _)| n.state == NodeState::Up);
    for (view, groups) in up.filter_map(|(n, g)| Some((n, (*g)?))) {
        // A drained node keeps its ambassadors only while replicas still run there.
        let wanted: &[Ambassador] = if view.availability == Availability::Drain && !groups.replicas
        {
            &[]
        } else {
            &all
        };
        let names: BTreeSet<&str> = wanted.iter().map(|a| a.id.as_str()).collect();
        let containers = &view.snapshot.containers;
        let mine: Vec<&Container> = (groups.ambassadors.iter())
            .map(|i| &containers[*i as usize])
            .collect();
        // Ambassadors no longer wanted.
        for c in mine
            .iter()
            .filter(|c| c.ambassador().is_some_and(|k| !names.contains(k)))
        {
            out.push(remove(view.name, c, Reason::NotNeeded));
        }
        for spec in wanted {
            let hash = spec.hash();
            let copies: Vec<&&Container> = mine
                .iter()
                .filter(|c| c.ambassador() == Some(spec.id.as_str()))
                .collect();
            let good = copies
                .iter()
                .find(|c| c.state == State::Running && c.config_hash() == Some(hash.as_str()));
            match good {
                Some(c) => {
                    for other in copies.iter().filter(|o| o.id != c.id) {
                        out.push(remove(view.name, other, Reason::Duplicate));
                    }
                    let routes = routes(input, spec, view.name);
                    if pushed.get(&c.id) != Some(&routes) {
                        out.push(Action::routes(view.name, spec, &c.id, routes));
                    }
                }
                None => {
                    let first = copies.first();
                    for other in copies.iter().skip(1) {
                        out.push(remove(view.name, other, Reason::Duplicate));
                    }
                    let reason = match first {
                        None => Reason::Missing,
                        Some(c) if c.config_hash() != Some(hash.as_str()) => Reason::ConfigChanged,
                        Some(c) if c.state == State::Dead => Reason::Dead,
                        Some(_) => Reason::Exited,
                    };
                    let held = input.backoff.get(&backoff_key(&spec.id, view.name), 0);
                    if let Some(t) = held.not_before.filter(|t| *t > input.now) {
                        recheck.push(t);
                        continue;
                    }
                    let reset = first
                        .and_then(|c| c.last_run())
                        .is_some_and(|d| d >= input.backoff_cfg.reset_after);
                    let replace = first.map(|c| c.id.clone());
                    out.push(Action::ambassador(
                        view.name,
                        spec.clone(),
                        replace,
                        reset,
                        reason,
                    ));
                }
            }
        }
    }
}

/// The crash-backoff key of ambassador `id` on `node` (not a service name: it has spaces).
pub fn backoff_key(id: &str, node: &str) -> String {
    format!("ambassador {id} on {node}")
}

pub fn is_backoff_key(key: &str) -> bool {
    key.starts_with("ambassador ") && key.contains(" on ")
}

fn remove(node: &str, c: &Container, reason: Reason) -> Action {
    Action::remove_stray(None, None, node, &c.id, reason)
}
