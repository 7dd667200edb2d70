//! The project's containers by service, where a pass starts planning from. Each node's are
//! classified once when its snapshot changes ([`NodeGroups`], kept by the caller): a pass
//! that plans the one service whose container changed no longer reads every container of
//! every node to find its replicas (a third of a millisecond at 10,000 containers).

use std::collections::HashMap;

use super::{Action, Input, NodeState, Plan, Reason};
use crate::config::Project;
use crate::observe::{Container, FEW_IDS, Snapshot};

/// One node's containers of the project, never drover itself nor an ambassador, as
/// positions in its snapshot: by service of the file (those with a slot; a service known by
/// its position in the file's order), and the others (no service of the file, or without
/// drover's labels), both in the order listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeGroups {
    services: Vec<(usize, Vec<u32>)>,
    strays: Vec<u32>,
    /// The project's ambassadors (see [`super::mesh`]).
    pub(super) ambassadors: Vec<u32>,
    /// Whether a container of the project's services is here (a drained node keeps its
    /// ambassadors while one is).
    pub(super) replicas: bool,
    /// Where the snapshot's containers were, and how many: groups of another list of
    /// the node are not used (the caller classifies a node again after each list and
    /// each change, and whenever the definition changes; this guards that rule).
    at: (usize, usize),
}

impl NodeGroups {
    /// Classify `snapshot`'s containers for `project` (`exclude`: drover's own container).
    pub fn of(snapshot: &Snapshot, project: &Project, exclude: Option<&str>) -> NodeGroups {
        let mut g = NodeGroups {
            at: address(snapshot),
            ..NodeGroups::default()
        };
        // Label values are interned: a service's containers share one copy of its name,
        // so each copy is looked up in the file once (by its address).
        let mut known: Vec<(*const u8, Option<usize>)> = Vec::new();
        for (i, c) in snapshot.containers.iter().enumerate() {
            if !c.owned_by(&project.name) {
                continue;
            }
            if c.ambassador().is_some() {
                g.ambassadors.push(i as u32);
                continue;
            }
            g.replicas |= c.service().is_some();
            if exclude.is_some_and(|me| c.id.starts_with(me)) {
                continue;
            }
            let group = match (c.service(), c.slot()) {
                (Some(s), Some(_)) => match known.iter().find(|(at, _)| *at == s.as_ptr()) {
                    Some((_, group)) => *group,
                    None => {
                        let group = g.group(s, project);
                        known.push((s.as_ptr(), group));
                        group
                    }
                },
                _ => None,
            };
            match group {
                Some(k) => g.services[k].1.push(i as u32),
                None => g.strays.push(i as u32),
            }
        }
        g
    }

    /// The group of service `name`, made when it has none yet; `None` when the file has no
    /// such service.
    fn group(&mut self, name: &str, project: &Project) -> Option<usize> {
        let service = project.services.keys().position(|k| k == name)?;
        Some(
            match self.services.iter().position(|(s, _)| *s == service) {
                Some(k) => k,
                None => {
                    self.services.push((service, Vec::new()));
                    self.services.len() - 1
                }
            },
        )
    }

    fn fits(&self, snapshot: &Snapshot) -> bool {
        self.at == address(snapshot)
    }
}

fn address(snapshot: &Snapshot) -> (usize, usize) {
    let cs = &snapshot.containers;
    (cs.as_ptr() as usize, cs.len())
}

/// Each node's groups: kept, or worked out in `missing` (`None` for a node known down).
pub(super) fn of_nodes<'g>(
    input: &Input<'g>,
    missing: &'g [Option<NodeGroups>],
) -> Vec<Option<&'g NodeGroups>> {
    (input.nodes.iter().zip(missing))
        .map(|(v, fresh)| {
            fresh
                .as_ref()
                .or(v.groups)
                .filter(|_| v.state != NodeState::Down)
        })
        .collect()
}

/// The groups of the nodes not known down that have none kept for their snapshot, worked
/// out now (by node position; `None` where kept, or down).
pub(super) fn missing(input: &Input) -> Vec<Option<NodeGroups>> {
    (input.nodes.iter())
        .map(|v| {
            let kept = v.groups.is_some_and(|g| g.fits(v.snapshot));
            (v.state != NodeState::Down && !kept)
                .then(|| NodeGroups::of(v.snapshot, input.project, input.exclude))
        })
        .collect()
}

/// The project's own containers by service, never drover itself, on nodes not known down,
/// as the nodes' groups say where they are (a service's list is made only when a pass
/// plans it: a pass that replays most services reads none of their containers).
pub(super) struct Grouped<'g> {
    /// By service position in the file: each node's containers, and the service's
    /// positions among them.
    parts: Vec<Vec<(&'g [Container], &'g [u32])>>,
}

impl<'g> Grouped<'g> {
    /// The project's containers by service on the nodes not known down, from the groups
    /// kept for each node or those `missing` worked out.
    pub fn of(input: &Input<'g>, missing: &'g [Option<NodeGroups>]) -> Grouped<'g> {
        let project = input.project;
        let mut grouped = Grouped {
            parts: vec![Vec::new(); project.services.len()],
        };
        for (view, groups) in input.nodes.iter().zip(of_nodes(input, missing)) {
            let Some(groups) = groups else { continue };
            let containers = view.snapshot.containers.as_slice();
            for (k, positions) in &groups.services {
                grouped.parts[*k].push((containers, positions));
            }
        }
        grouped
    }

    /// How many containers service `k` has.
    pub fn len(&self, k: usize) -> usize {
        self.parts[k].iter().map(|(_, at)| at.len()).sum()
    }

    /// Service `k`'s containers, node by node in the order listed.
    pub fn iter(&self, k: usize) -> impl Iterator<Item = &'g Container> + '_ {
        (self.parts[k].iter()).flat_map(|(cs, at)| at.iter().map(|i| &cs[*i as usize]))
    }

    /// Service `k`'s container `id` on `node`, found among the service's there.
    pub fn find(&self, k: usize, node: &str, id: &str) -> Option<&'g Container> {
        let (cs, at) = self.parts[k]
            .iter()
            .find(|(cs, at)| at.first().is_some_and(|i| cs[*i as usize].node == node))?;
        at.iter().map(|i| &cs[*i as usize]).find(|c| c.id == id)
    }

    /// A way to find `n` of service `k`'s containers by node and id: each among the
    /// service's on its node when they are few, through an index of the service's
    /// containers built once when they are many (a burst names thousands: one search
    /// each among thousands of replicas would be quadratic).
    pub fn finder(&self, k: usize, n: usize) -> Finder<'_, 'g> {
        if n <= FEW_IDS {
            return Finder::Scan(self, k);
        }
        Finder::Index(self.iter(k).map(|c| (c.id.as_str(), c)).collect())
    }

    pub fn containers(&self, k: usize) -> Vec<&'g Container> {
        let mut out = Vec::with_capacity(self.len(k));
        out.extend(self.iter(k));
        out
    }
}

/// See [`Grouped::finder`].
pub enum Finder<'a, 'g> {
    Scan(&'a Grouped<'g>, usize),
    Index(HashMap<&'g str, &'g Container>),
}

impl<'g> Finder<'_, 'g> {
    pub fn find(&self, node: &str, id: &str) -> Option<&'g Container> {
        match self {
            Finder::Scan(grouped, k) => grouped.find(*k, node, id),
            Finder::Index(by_id) => by_id.get(id).copied().filter(|c| c.node == node),
        }
    }
}

/// Group the project's containers (see [`Grouped`]), with the groups kept for each node or
/// those `missing` worked out; a container of no service in the file (or without drover's
/// labels) is removed from a node that is up.
pub(super) fn by_service<'g>(
    input: &Input<'g>,
    missing: &'g [Option<NodeGroups>],
    plan: &mut Plan,
) -> Grouped<'g> {
    let project = input.project;
    for (view, groups) in input.nodes.iter().zip(of_nodes(input, missing)) {
        let Some(groups) = groups else { continue };
        debug_assert_eq!(
            *groups,
            NodeGroups::of(view.snapshot, project, input.exclude),
            "the groups kept for node {} are not its snapshot's",
            view.name
        );
        if view.state != NodeState::Up {
            continue;
        }
        let containers = view.snapshot.containers.as_slice();
        for c in groups.strays.iter().map(|i| &containers[*i as usize]) {
            let (s, n) = (c.service(), c.slot());
            plan.actions.push(Action::remove_stray(
                s.map(str::to_string),
                n,
                &c.node,
                &c.id,
                if s.is_some() && n.is_some() {
                    Reason::ServiceRemoved
                } else {
                    Reason::BadLabels
                },
            ));
        }
    }
    Grouped::of(input, missing)
}
