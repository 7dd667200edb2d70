//! The project's containers by service, where a pass starts planning from. Each node's are
//! classified once when its snapshot changes ([`NodeGroups`], kept by the caller): a pass
//! that plans the one service whose container changed no longer reads every container of
//! every node to find its replicas (a third of a millisecond at 10,000 containers).

use std::collections::BTreeMap;

use super::{Action, Input, NodeState, Plan, Reason};
use crate::config::Project;
use crate::observe::{Container, Snapshot};

/// One node's containers of the project, never drover itself nor an ambassador, as
/// positions in its snapshot: by service of the file (those with a slot), and the others
/// (no service of the file, or without drover's labels), both in the order listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeGroups {
    services: Vec<(String, Vec<u32>)>,
    strays: Vec<u32>,
    /// Where the snapshot's containers were, and how many: groups of another list of
    /// the node are not used (the caller classifies a node again after each list and
    /// each change; this guards that rule).
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
            let mine = exclude.is_none_or(|me| !c.id.starts_with(me))
                && c.ambassador().is_none()
                && c.owned_by(&project.name);
            if !mine {
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
        if !project.services.contains_key(name) {
            return None;
        }
        Some(match self.services.iter().position(|(n, _)| n == name) {
            Some(k) => k,
            None => {
                self.services.push((name.to_string(), Vec::new()));
                self.services.len() - 1
            }
        })
    }

    fn fits(&self, snapshot: &Snapshot) -> bool {
        self.at == address(snapshot)
    }
}

fn address(snapshot: &Snapshot) -> (usize, usize) {
    let cs = &snapshot.containers;
    (cs.as_ptr() as usize, cs.len())
}

/// The project's own containers by service, never drover itself, on nodes not known down;
/// a container of no service in the file (or without drover's labels) is removed from a
/// node that is up.
pub(super) fn by_service<'a>(
    input: &Input<'a>,
    plan: &mut Plan,
) -> BTreeMap<&'a str, Vec<&'a Container>> {
    let project = input.project;
    let mut out: BTreeMap<&'a str, Vec<&'a Container>> = BTreeMap::new();
    for view in input.nodes.iter().filter(|n| n.state != NodeState::Down) {
        let fresh;
        let groups = match view.groups.filter(|g| g.fits(view.snapshot)) {
            Some(kept) => {
                debug_assert_eq!(
                    *kept,
                    NodeGroups::of(view.snapshot, project, input.exclude),
                    "the groups kept for node {} are not its snapshot's",
                    view.name
                );
                kept
            }
            None => {
                fresh = NodeGroups::of(view.snapshot, project, input.exclude);
                &fresh
            }
        };
        let containers = &view.snapshot.containers;
        let at = |i: &u32| &containers[*i as usize];
        for (name, positions) in &groups.services {
            let Some((name, svc)) = project.services.get_key_value(name) else {
                continue;
            };
            out.entry(name.as_str())
                .or_insert_with(|| Vec::with_capacity(svc.replicas as usize))
                .extend(positions.iter().map(at));
        }
        if view.state != NodeState::Up {
            continue;
        }
        for c in groups.strays.iter().map(at) {
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
    out
}
