//! Swarm mode's report as telemetry keeps and serves it: what Swarm is doing with the
//! project, per service and per node (desired vs running tasks, why a task slot does not
//! run). Plain data; Swarm mode builds it (`swarm::report::build`) from one list of
//! services, tasks and nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub project: String,
    /// By Compose service name.
    pub services: BTreeMap<String, ServiceReport>,
    /// By Swarm node id; every node of the swarm, also those running nothing of the project.
    pub nodes: BTreeMap<String, NodeReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// `{project}_{service}`.
    pub swarm_name: String,
    /// Replicas for a replicated service; for a global one, the tasks Swarm wants running
    /// (one per eligible node).
    pub desired: u32,
    pub running: u32,
    pub global: bool,
    /// Running tasks by node id.
    pub running_by_node: BTreeMap<String, u32>,
    /// Tasks Swarm wants running, by the node they are assigned to (not yet assigned ones
    /// are missing here).
    pub desired_by_node: BTreeMap<String, u32>,
    /// Tasks Swarm still lists (any state, history included), by node.
    pub tasks_by_node: BTreeMap<String, u32>,
    /// Slots (or nodes, for a global service) without a running task, and why.
    pub problems: Vec<TaskProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProblem {
    pub task: String,
    /// The replica slot; `None` for a global service's task.
    pub slot: Option<u32>,
    /// The node the task is assigned to, if any.
    pub node: Option<String>,
    /// Swarm's task state, e.g. `pending`, `rejected`, `failed`.
    pub state: String,
    /// Swarm's error or status message (e.g. "no suitable node ...").
    pub reason: String,
    /// Swarm reported an error (the task failed or cannot be placed), rather than a task
    /// still on its way to running.
    pub error: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub hostname: String,
    pub addr: String,
    /// `ready`, `down`, `disconnected`, `unknown`.
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub role: String,
    /// Tasks of the project Swarm wants running here.
    pub desired: u32,
    /// Tasks of the project running here.
    pub running: u32,
}

/// Tasks not assigned to a node yet, in per-node figures.
pub const UNASSIGNED: &str = "unassigned";

/// One service's figures on one node, for metrics and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCounts {
    pub service: String,
    /// [`Report::node_label`], or [`UNASSIGNED`].
    pub node: String,
    pub desired: u32,
    pub running: u32,
    pub tasks: u32,
}

impl Report {
    /// How a node is named in metrics and `/status`: its hostname (what `docker service
    /// ps` shows), or its id when several nodes share the hostname.
    pub fn node_label(&self, id: &str) -> String {
        let Some(n) = self.nodes.get(id) else {
            return id.to_string();
        };
        let shared = self
            .nodes
            .values()
            .filter(|o| o.hostname == n.hostname)
            .count()
            > 1;
        if n.hostname.is_empty() || shared {
            id.to_string()
        } else {
            n.hostname.clone()
        }
    }

    /// Desired, running and listed tasks per service and node. Desired tasks Swarm has
    /// not placed yet count under [`UNASSIGNED`], so a service's rows add up to its target.
    pub fn per_node(&self) -> Vec<NodeCounts> {
        let mut out = Vec::new();
        for (name, s) in &self.services {
            let mut ids: Vec<&String> = s
                .desired_by_node
                .keys()
                .chain(s.running_by_node.keys())
                .chain(s.tasks_by_node.keys())
                .collect();
            ids.sort();
            ids.dedup();
            let mut placed = 0;
            for id in ids {
                let desired = s.desired_by_node.get(id).copied().unwrap_or(0);
                placed += desired;
                out.push(NodeCounts {
                    service: name.clone(),
                    node: self.node_label(id),
                    desired,
                    running: s.running_by_node.get(id).copied().unwrap_or(0),
                    tasks: s.tasks_by_node.get(id).copied().unwrap_or(0),
                });
            }
            if s.desired > placed || out.iter().all(|c| &c.service != name) {
                out.push(NodeCounts {
                    service: name.clone(),
                    node: UNASSIGNED.to_string(),
                    desired: s.desired.saturating_sub(placed),
                    running: 0,
                    tasks: 0,
                });
            }
        }
        out
    }
}
