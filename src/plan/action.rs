//! What the planner decides: one [`Action`] per change to make on one node, with the
//! [`Reason`] it is taken for (logged as the `reason` field).

/// Why an action is taken; logged as the `reason` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The slot has no container.
    Missing,
    /// The container exited and its restart policy restarts it.
    Exited,
    /// The container was created but never started (or its start failed).
    NotStarted,
    /// The engine reports the container dead.
    Dead,
    /// The service definition changed since the container was created.
    ConfigChanged,
    /// The container's node no longer satisfies the service's placement.
    Misplaced,
    /// The service has more containers than its target.
    ScaleDown,
    /// Two containers claim the same slot on one node.
    Duplicate,
    /// An older copy of a slot that now runs elsewhere (its node was down and came back).
    Stale,
    /// Moving a replica towards an even spread (`x-drover.rebalance`).
    Rebalance,
    /// The engine reports the container unhealthy.
    Unhealthy,
    /// The service is no longer in the Compose file.
    ServiceRemoved,
    /// The container has the project label but no valid service or slot label.
    BadLabels,
    /// An ambassador the project no longer needs (one node left, or no service with
    /// ports on its network).
    NotNeeded,
    /// An ambassador's routes differ from what its node should reach.
    Routes,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Exited => "exited",
            Reason::NotStarted => "not-started",
            Reason::Dead => "dead",
            Reason::ConfigChanged => "config-changed",
            Reason::Misplaced => "misplaced",
            Reason::ScaleDown => "scale-down",
            Reason::Duplicate => "duplicate",
            Reason::Stale => "stale",
            Reason::Rebalance => "rebalance",
            Reason::Unhealthy => "unhealthy",
            Reason::ServiceRemoved => "service-removed",
            Reason::BadLabels => "bad-labels",
            Reason::NotNeeded => "not-needed",
            Reason::Routes => "routes",
        }
    }
}

/// One change to make on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the project network with this engine name (`key` is its key in the file).
    CreateNetwork {
        node: String,
        key: String,
        name: String,
    },
    /// Remove a network of the project that repeats the name of an older one (by id: the
    /// name is ambiguous).
    RemoveNetwork {
        node: String,
        id: String,
        name: String,
    },
    /// Create the project volume with this engine name.
    CreateVolume {
        node: String,
        key: String,
        name: String,
    },
    /// Create and start a container for the slot on `node`.
    Create {
        service: String,
        slot: u32,
        node: String,
        reason: Reason,
    },
    /// Start an existing container in place. `reset` forgets the slot's crash history
    /// (its last run was long enough).
    Start {
        service: String,
        slot: u32,
        node: String,
        container: String,
        reset: bool,
        reason: Reason,
    },
    /// Restart a running container in place (stop with its signal and grace, start).
    Restart {
        service: String,
        slot: u32,
        node: String,
        container: String,
        reason: Reason,
    },
    /// Start-first replacement: move the old container's name aside, create and start the
    /// slot's new copy on `to`; the old copy is removed once the new one runs.
    StartFirst {
        service: String,
        slot: u32,
        node: String,
        container: String,
        to: String,
        reason: Reason,
    },
    /// Stop and remove the container on `node`, then create and start the slot on `to`.
    Recreate {
        service: String,
        slot: u32,
        node: String,
        container: String,
        to: String,
        reason: Reason,
    },
    /// Create and start the ambassador of a project network on `node`, removing the
    /// container it replaces first (`replace`: exited, or made from another definition).
    Ambassador {
        node: String,
        spec: Box<crate::spec::Ambassador>,
        replace: Option<String>,
        reason: Reason,
    },
    /// Hand a running ambassador its routes (it keeps running, and keeps its connections).
    Routes {
        node: String,
        /// The network's key.
        network: String,
        container: String,
        routes: Box<crate::mesh::Routes>,
    },
    /// Stop (the container's stop signal and grace period) and remove.
    Remove {
        service: Option<String>,
        slot: Option<u32>,
        node: String,
        container: String,
        reason: Reason,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "create-network",
            Action::CreateVolume { .. } => "create-volume",
            Action::RemoveNetwork { .. } => "remove-network",
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Restart { .. } => "restart",
            Action::StartFirst { .. } => "start-first",
            Action::Recreate { .. } => "recreate",
            Action::Remove { .. } => "remove",
            Action::Ambassador { .. } => "ambassador",
            Action::Routes { .. } => "routes",
        }
    }

    pub fn service(&self) -> Option<&str> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. }
            | Action::Ambassador { .. }
            | Action::Routes { .. } => None,
            Action::Create { service, .. }
            | Action::Start { service, .. }
            | Action::Restart { service, .. }
            | Action::StartFirst { service, .. }
            | Action::Recreate { service, .. } => Some(service),
            Action::Remove { service, .. } => service.as_deref(),
        }
    }

    pub fn slot(&self) -> Option<u32> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. }
            | Action::Ambassador { .. }
            | Action::Routes { .. } => None,
            Action::Create { slot, .. }
            | Action::Start { slot, .. }
            | Action::Restart { slot, .. }
            | Action::StartFirst { slot, .. }
            | Action::Recreate { slot, .. } => Some(*slot),
            Action::Remove { slot, .. } => *slot,
        }
    }

    /// The node the action starts on.
    pub fn node(&self) -> &str {
        match self {
            Action::CreateNetwork { node, .. }
            | Action::RemoveNetwork { node, .. }
            | Action::CreateVolume { node, .. }
            | Action::Create { node, .. }
            | Action::Start { node, .. }
            | Action::Restart { node, .. }
            | Action::StartFirst { node, .. }
            | Action::Recreate { node, .. }
            | Action::Ambassador { node, .. }
            | Action::Routes { node, .. }
            | Action::Remove { node, .. } => node,
        }
    }

    /// The existing container this action changes, if any.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::Start { container, .. }
            | Action::Restart { container, .. }
            | Action::StartFirst { container, .. }
            | Action::Recreate { container, .. }
            | Action::Routes { container, .. }
            | Action::Remove { container, .. } => Some(container),
            Action::Ambassador { replace, .. } => replace.as_deref(),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<Reason> {
        match self {
            Action::CreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume { .. } => None,
            Action::Routes { .. } => Some(Reason::Routes),
            Action::Create { reason, .. }
            | Action::Ambassador { reason, .. }
            | Action::Start { reason, .. }
            | Action::Restart { reason, .. }
            | Action::StartFirst { reason, .. }
            | Action::Recreate { reason, .. }
            | Action::Remove { reason, .. } => Some(*reason),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateNetwork { name, node, .. } => {
                write!(f, "create network {name} on {node}")
            }
            Action::CreateVolume { name, node, .. } => write!(f, "create volume {name} on {node}"),
            Action::Ambassador {
                spec, node, reason, ..
            } => write!(
                f,
                "ambassador for network {} on {node} ({})",
                spec.network,
                reason.as_str()
            ),
            Action::Routes {
                network,
                node,
                routes,
                ..
            } => write!(
                f,
                "routes for network {network} on {node}: {} ports, {} backends",
                routes.routes.len(),
                routes.backends()
            ),
            Action::RemoveNetwork { name, id, node } => write!(
                f,
                "remove network {name} ({}) on {node} (duplicate)",
                crate::observe::short_id(id)
            ),
            _ => {
                write!(f, "{}", self.name())?;
                if let Some(s) = self.service() {
                    write!(f, " {s}")?;
                }
                if let Some(n) = self.slot() {
                    write!(f, " slot {n}")?;
                }
                if let Some(c) = self.container() {
                    write!(f, " container {}", crate::observe::short_id(c))?;
                }
                write!(f, " on {}", self.node())?;
                if let Action::Recreate { to, node, .. } | Action::StartFirst { to, node, .. } =
                    self
                    && to != node
                {
                    write!(f, " to {to}")?;
                }
                if let Some(r) = self.reason() {
                    write!(f, " ({})", r.as_str())?;
                }
                Ok(())
            }
        }
    }
}
