//! Placement: which node gets a replica.
//!
//! Among the nodes that are up, active (not paused or drained: `x-drover.nodes[].availability`)
//! and satisfy the service's constraints, and below its
//! `max_replicas_per_node`: spread over each `spread` label first (the label value with
//! the fewest replicas of the service), then the node with the fewest replicas of the
//! service, then the fewest drover containers overall, then the node name.

use std::collections::{BTreeMap, HashMap};

use crate::config::{Availability, Service};

/// What the placer knows about one node.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Whether the node is up and reachable.
    pub open: bool,
    /// Only an active node takes new replicas; a drained one keeps none.
    pub availability: Availability,
}

impl Candidate<'_> {
    /// Whether a new replica may go there: up and active.
    fn takes_new(&self) -> bool {
        self.open && self.availability == Availability::Active
    }
}

/// Counts of replicas per node, updated as the plan places more.
#[derive(Debug, Default)]
pub struct Placer<'a> {
    nodes: Vec<Candidate<'a>>,
    /// service -> node -> replicas (looked up by `&str`: adding a replica allocates
    /// nothing once its service and node are known)
    per_service: HashMap<String, HashMap<String, u32>>,
    /// node -> drover containers of the project
    total: HashMap<String, u32>,
}

/// Add one to `key`'s count.
fn bump(counts: &mut HashMap<String, u32>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

impl<'a> Placer<'a> {
    pub fn new(nodes: Vec<Candidate<'a>>) -> Self {
        Placer {
            nodes,
            ..Default::default()
        }
    }

    /// Count a replica of `service` on `node`.
    pub fn add(&mut self, service: &str, node: &str) {
        match self.per_service.get_mut(service) {
            Some(nodes) => bump(nodes, node),
            None => {
                let mut nodes = HashMap::new();
                bump(&mut nodes, node);
                self.per_service.insert(service.to_string(), nodes);
            }
        }
        bump(&mut self.total, node);
    }

    /// Count `placed` replicas of `service` by node at once (a service planned earlier).
    pub fn add_counts(&mut self, service: &str, placed: &HashMap<String, u32>) {
        let nodes = self.per_service.entry(service.to_string()).or_default();
        for (node, n) in placed {
            *nodes.entry(node.clone()).or_default() += n;
            *self.total.entry(node.clone()).or_default() += n;
        }
    }

    /// The replicas of `service` counted so far, by node.
    pub fn counts_of(&self, service: &str) -> HashMap<String, u32> {
        self.per_service.get(service).cloned().unwrap_or_default()
    }

    /// Forget a replica (planned for removal or moving away).
    pub fn remove(&mut self, service: &str, node: &str) {
        if let Some(n) = self
            .per_service
            .get_mut(service)
            .and_then(|nodes| nodes.get_mut(node))
        {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.total.get_mut(node) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn count(&self, service: &str, node: &str) -> u32 {
        self.per_service
            .get(service)
            .and_then(|nodes| nodes.get(node))
            .copied()
            .unwrap_or(0)
    }

    /// Whether `node` may hold a replica of `svc` at all: its constraints, and the node not
    /// drained (a paused node keeps what runs there).
    pub fn allowed(&self, svc: &Service, node: &str) -> bool {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .is_some_and(|n| n.availability != Availability::Drain && allows(svc, n))
    }

    /// Whether `node` is drained (its replicas move away, and nothing runs there).
    pub fn drained(&self, node: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.name == node && n.availability == Availability::Drain)
    }

    /// The nodes that take new replicas (up, active) and satisfy the constraints.
    pub fn eligible(&self, svc: &Service) -> Vec<&'a str> {
        self.nodes
            .iter()
            .filter(|n| n.takes_new() && allows(svc, n))
            .map(|n| n.name)
            .collect()
    }

    /// Choose a node for one more replica of `svc`, counting it; or say why none fits.
    pub fn place(&mut self, svc: &Service) -> Result<String, String> {
        if !self.nodes.iter().any(|n| n.open) {
            return Err("no node is up".into());
        }
        let open: Vec<&Candidate> = self.nodes.iter().filter(|n| n.takes_new()).collect();
        if open.is_empty() {
            return Err("no node that is up is active (the others are paused or drained)".into());
        }
        let allowed: Vec<&Candidate> = open.into_iter().filter(|n| allows(svc, n)).collect();
        if allowed.is_empty() {
            return Err("no active node that is up satisfies the placement constraints".into());
        }
        let max = svc.placement.max_replicas_per_node;
        let fits: Vec<&Candidate> = allowed
            .into_iter()
            .filter(|n| max.is_none_or(|m| self.count(&svc.name, n.name) < m))
            .collect();
        let Some(best) = fits
            .iter()
            .min_by_key(|n| self.score(svc, n))
            .map(|n| n.name.to_string())
        else {
            return Err(format!(
                "max_replicas_per_node {} reached on every eligible node",
                max.unwrap_or(0)
            ));
        };
        self.add(&svc.name, &best);
        Ok(best)
    }

    fn score(&self, svc: &Service, n: &Candidate) -> (Vec<u32>, u32, u32, String) {
        let spread = svc
            .placement
            .spread
            .iter()
            .map(|key| {
                let value = n.labels.get(key);
                self.nodes
                    .iter()
                    .filter(|m| m.labels.get(key) == value)
                    .map(|m| self.count(&svc.name, m.name))
                    .sum()
            })
            .collect();
        (
            spread,
            self.count(&svc.name, n.name),
            self.total.get(n.name).copied().unwrap_or(0),
            n.name.to_string(),
        )
    }
}

/// Whether `n` satisfies the service's placement constraints.
fn allows(svc: &Service, n: &Candidate) -> bool {
    svc.placement
        .constraints
        .iter()
        .all(|c| c.allows(n.name, n.labels))
}
