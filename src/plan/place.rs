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

/// Counts of replicas per node, updated as the plan places more. A node is known by its
/// position among the candidates: counting one of a service's thousands of replicas is a
/// lookup of the node and two additions (maps by name hashed the service's and the node's
/// name twice for each, a tenth of planning a large service).
#[derive(Debug, Default)]
pub struct Placer<'a> {
    nodes: Vec<Candidate<'a>>,
    /// Each candidate's position, by name.
    at: HashMap<&'a str, usize>,
    /// service -> replicas by node position
    per_service: HashMap<String, Vec<u32>>,
    /// drover containers of the project by node position
    total: Vec<u32>,
}

/// The replicas of one service by node, as [`Placer::counts_of`] gives them: by the
/// position of each node among the candidates the placer was given.
pub type Counts = Vec<u32>;

impl<'a> Placer<'a> {
    pub fn new(nodes: Vec<Candidate<'a>>) -> Self {
        Placer {
            at: nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect(),
            total: vec![0; nodes.len()],
            nodes,
            per_service: HashMap::new(),
        }
    }

    fn node(&self, name: &str) -> Option<&Candidate<'a>> {
        self.at.get(name).and_then(|i| self.nodes.get(*i))
    }

    /// Count a replica of `service` on `node` (a node it was not given counts nowhere).
    pub fn add(&mut self, service: &str, node: &str) {
        let Some(&i) = self.at.get(node) else { return };
        let one = |c: &mut Counts| {
            if let Some(n) = c.get_mut(i) {
                *n += 1;
            }
        };
        self.with_counts(service, one);
        one(&mut self.total);
    }

    /// Count `placed` replicas of `service` by node at once (a service planned earlier,
    /// over the same nodes).
    pub fn add_counts(&mut self, service: &str, placed: &Counts) {
        let all = |c: &mut Counts| {
            for (n, add) in c.iter_mut().zip(placed) {
                *n += add;
            }
        };
        self.with_counts(service, all);
        all(&mut self.total);
    }

    /// Change `service`'s counts, made when it has none yet.
    fn with_counts(&mut self, service: &str, change: impl Fn(&mut Counts)) {
        match self.per_service.get_mut(service) {
            Some(c) => change(c),
            None => {
                let mut c = vec![0; self.nodes.len()];
                change(&mut c);
                self.per_service.insert(service.to_string(), c);
            }
        }
    }

    /// The replicas of `service` counted so far, by node position.
    pub fn counts_of(&self, service: &str) -> Counts {
        self.per_service
            .get(service)
            .cloned()
            .unwrap_or_else(|| vec![0; self.nodes.len()])
    }

    /// Forget a replica (planned for removal or moving away).
    pub fn remove(&mut self, service: &str, node: &str) {
        let Some(&i) = self.at.get(node) else { return };
        let counted = self.per_service.get_mut(service).and_then(|c| c.get_mut(i));
        if let Some(n) = counted {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.total.get_mut(i) {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether `node` is up and reachable.
    pub fn up(&self, node: &str) -> bool {
        self.node(node).is_some_and(|n| n.open)
    }

    pub fn count(&self, service: &str, node: &str) -> u32 {
        let Some(&i) = self.at.get(node) else {
            return 0;
        };
        let counts = self.per_service.get(service);
        counts.and_then(|c| c.get(i)).copied().unwrap_or(0)
    }

    /// Whether `node` may hold a replica of `svc` at all: its constraints, and the node not
    /// drained (a paused node keeps what runs there).
    pub fn allowed(&self, svc: &Service, node: &str) -> bool {
        self.node(node)
            .is_some_and(|n| n.availability != Availability::Drain && allows(svc, n))
    }

    /// Whether `node` is drained (its replicas move away, and nothing runs there).
    pub fn drained(&self, node: &str) -> bool {
        self.node(node)
            .is_some_and(|n| n.availability == Availability::Drain)
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
            self.at
                .get(n.name)
                .and_then(|i| self.total.get(*i))
                .copied()
                .unwrap_or(0),
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
