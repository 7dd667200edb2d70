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
    /// The definition is the same but the service is pinned to another image digest (its
    /// tag moved, or a rollback to the digest before).
    ImageChanged,
    /// Its ports are published on another address than its node's (`x-drover.nodes[].address`
    /// changed), or published when its node has none.
    AddressChanged,
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
    /// Its node is drained (`availability: drain`, or removed from `x-drover.nodes`): the
    /// replica moves to another node, or (a global service's) is removed.
    Drained,
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
            Reason::ImageChanged => "image-changed",
            Reason::AddressChanged => "address-changed",
            Reason::Misplaced => "misplaced",
            Reason::ScaleDown => "scale-down",
            Reason::Duplicate => "duplicate",
            Reason::Stale => "stale",
            Reason::Rebalance => "rebalance",
            Reason::Drained => "drained",
            Reason::Unhealthy => "unhealthy",
            Reason::ServiceRemoved => "service-removed",
            Reason::BadLabels => "bad-labels",
            Reason::NotNeeded => "not-needed",
            Reason::Routes => "routes",
        }
    }
}

/// One change to make on one node: what is done (`kind`), where it starts (`node`), why
/// (`reason`) and to what (`target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: Kind,
    /// The node the action starts on.
    pub node: String,
    /// Why a container action is taken; `None` for networks and volumes, made because a
    /// container needs them (or removed because their name repeats).
    pub reason: Option<Reason>,
    pub target: Target,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Create a project network ([`Target::Network`]).
    CreateNetwork,
    /// Remove a network of the project that repeats the name of an older one
    /// ([`Target::NetworkId`]: by id, the name is ambiguous).
    RemoveNetwork,
    /// Create a project volume ([`Target::Volume`]).
    CreateVolume,
    /// Create and start a container for the slot.
    Create,
    /// Start the existing container in place. `reset` forgets the slot's crash history
    /// (its last run was long enough).
    Start { reset: bool },
    /// Restart the running container in place (stop with its signal and grace, start).
    Restart,
    /// Start-first replacement: move the old container's name aside, create and start the
    /// slot's new copy on `to`; the old copy is removed once the new one runs.
    StartFirst { to: String },
    /// Stop and remove the container, then create and start the slot on `to`.
    Recreate { to: String },
    /// Stop (the container's stop signal and grace period) and remove.
    Remove,
    /// Create and start the ambassador of a project network ([`Target::Ambassador`]),
    /// removing the container it replaces first (exited, or made from another definition).
    /// `reset` forgets its crash history (its last run was long enough).
    Ambassador {
        spec: Box<crate::spec::Ambassador>,
        reset: bool,
    },
    /// Hand a running ambassador its routes (it keeps running, and keeps its connections).
    Routes { routes: Box<crate::mesh::Routes> },
}

/// What an action is taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A replica slot of a service, and the container that holds it now (`None` for a
    /// create).
    Slot {
        service: String,
        slot: u32,
        container: Option<String>,
    },
    /// A container in no slot of the project (its service is gone or its labels are bad),
    /// with the service and slot its labels name, if any.
    Stray {
        container: String,
        service: Option<String>,
        slot: Option<u32>,
    },
    /// A project network: its key in the file and its engine name.
    Network { key: String, name: String },
    /// One network on the engine, by id, and its name.
    NetworkId { id: String, name: String },
    /// A project volume: its key in the file and its engine name.
    Volume { key: String, name: String },
    /// One ambassador (its id) of a project network (the network's key), and its
    /// container now (`None` when there is none to replace).
    Ambassador {
        id: String,
        network: String,
        container: Option<String>,
    },
}

impl Kind {
    /// The action's name, logged as the `action` field.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::CreateNetwork => "create-network",
            Kind::CreateVolume => "create-volume",
            Kind::RemoveNetwork => "remove-network",
            Kind::Create => "create",
            Kind::Start { .. } => "start",
            Kind::Restart => "restart",
            Kind::StartFirst { .. } => "start-first",
            Kind::Recreate { .. } => "recreate",
            Kind::Remove => "remove",
            Kind::Ambassador { .. } => "ambassador",
            Kind::Routes { .. } => "routes",
        }
    }
}

impl Target {
    pub fn service(&self) -> Option<&str> {
        match self {
            Target::Slot { service, .. } => Some(service),
            Target::Stray { service, .. } => service.as_deref(),
            _ => None,
        }
    }

    pub fn slot(&self) -> Option<u32> {
        match self {
            Target::Slot { slot, .. } => Some(*slot),
            Target::Stray { slot, .. } => *slot,
            _ => None,
        }
    }

    /// The existing container the action changes, if any.
    pub fn container(&self) -> Option<&str> {
        match self {
            Target::Slot { container, .. } => container.as_deref(),
            Target::Stray { container, .. } => Some(container),
            Target::Ambassador { container, .. } => container.as_deref(),
            Target::Network { .. } | Target::NetworkId { .. } | Target::Volume { .. } => None,
        }
    }
}

/// Constructors, one per kind of action, each with the target that kind takes.
impl Action {
    pub fn create_network(
        node: impl Into<String>,
        key: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Action::infra(
            Kind::CreateNetwork,
            node,
            Target::Network {
                key: key.into(),
                name: name.into(),
            },
        )
    }

    pub fn remove_network(
        node: impl Into<String>,
        id: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Action::infra(
            Kind::RemoveNetwork,
            node,
            Target::NetworkId {
                id: id.into(),
                name: name.into(),
            },
        )
    }

    pub fn create_volume(
        node: impl Into<String>,
        key: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Action::infra(
            Kind::CreateVolume,
            node,
            Target::Volume {
                key: key.into(),
                name: name.into(),
            },
        )
    }

    pub fn create(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        reason: Reason,
    ) -> Self {
        Action::on_slot(Kind::Create, service, slot, node, None, reason)
    }

    pub fn start(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: impl Into<String>,
        reset: bool,
        reason: Reason,
    ) -> Self {
        Action::on_slot(
            Kind::Start { reset },
            service,
            slot,
            node,
            Some(container.into()),
            reason,
        )
    }

    pub fn restart(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: impl Into<String>,
        reason: Reason,
    ) -> Self {
        Action::on_slot(
            Kind::Restart,
            service,
            slot,
            node,
            Some(container.into()),
            reason,
        )
    }

    pub fn start_first(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: impl Into<String>,
        to: impl Into<String>,
        reason: Reason,
    ) -> Self {
        let kind = Kind::StartFirst { to: to.into() };
        Action::on_slot(kind, service, slot, node, Some(container.into()), reason)
    }

    pub fn recreate(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: impl Into<String>,
        to: impl Into<String>,
        reason: Reason,
    ) -> Self {
        let kind = Kind::Recreate { to: to.into() };
        Action::on_slot(kind, service, slot, node, Some(container.into()), reason)
    }

    /// Remove the container of a slot.
    pub fn remove(
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: impl Into<String>,
        reason: Reason,
    ) -> Self {
        Action::on_slot(
            Kind::Remove,
            service,
            slot,
            node,
            Some(container.into()),
            reason,
        )
    }

    /// Remove a container in no slot of the project, with what its labels say.
    pub fn remove_stray(
        service: Option<String>,
        slot: Option<u32>,
        node: impl Into<String>,
        container: impl Into<String>,
        reason: Reason,
    ) -> Self {
        Action {
            kind: Kind::Remove,
            node: node.into(),
            reason: Some(reason),
            target: Target::Stray {
                container: container.into(),
                service,
                slot,
            },
        }
    }

    /// Create and start the ambassador `spec` describes, replacing `replace`.
    pub fn ambassador(
        node: impl Into<String>,
        spec: crate::spec::Ambassador,
        replace: Option<String>,
        reset: bool,
        reason: Reason,
    ) -> Self {
        Action {
            target: Target::Ambassador {
                id: spec.id.clone(),
                network: spec.network.clone(),
                container: replace,
            },
            kind: Kind::Ambassador {
                spec: Box::new(spec),
                reset,
            },
            node: node.into(),
            reason: Some(reason),
        }
    }

    /// Hand the running ambassador `container` (made from `spec`) its routes.
    pub fn routes(
        node: impl Into<String>,
        spec: &crate::spec::Ambassador,
        container: impl Into<String>,
        routes: crate::mesh::Routes,
    ) -> Self {
        Action {
            kind: Kind::Routes {
                routes: Box::new(routes),
            },
            node: node.into(),
            reason: Some(Reason::Routes),
            target: Target::Ambassador {
                id: spec.id.clone(),
                network: spec.network.clone(),
                container: Some(container.into()),
            },
        }
    }

    /// The project network an ambassador action is for.
    pub fn network(&self) -> Option<&str> {
        match &self.target {
            Target::Ambassador { network, .. } => Some(network),
            _ => None,
        }
    }

    fn infra(kind: Kind, node: impl Into<String>, target: Target) -> Self {
        Action {
            kind,
            node: node.into(),
            reason: None,
            target,
        }
    }

    fn on_slot(
        kind: Kind,
        service: impl Into<String>,
        slot: u32,
        node: impl Into<String>,
        container: Option<String>,
        reason: Reason,
    ) -> Self {
        Action {
            kind,
            node: node.into(),
            reason: Some(reason),
            target: Target::Slot {
                service: service.into(),
                slot,
                container,
            },
        }
    }

    /// The action's name, logged as the `action` field.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Where the slot's new container goes (`to`), for a replacement.
    pub fn to(&self) -> Option<&str> {
        match &self.kind {
            Kind::StartFirst { to } | Kind::Recreate { to } => Some(to),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let node = &self.node;
        match &self.target {
            Target::Network { name, .. } => write!(f, "create network {name} on {node}"),
            Target::Volume { name, .. } => write!(f, "create volume {name} on {node}"),
            Target::NetworkId { id, name } => write!(
                f,
                "remove network {name} ({}) on {node} (duplicate)",
                crate::observe::short_id(id)
            ),
            Target::Ambassador { id, network, .. } => {
                write!(f, "{} ", self.name())?;
                if id != network {
                    write!(f, "{id} ")?;
                }
                write!(f, "for network {network} on {node}")?;
                match &self.kind {
                    Kind::Routes { routes } => write!(
                        f,
                        ": {} ports, {} backends",
                        routes.routes.len(),
                        routes.backends()
                    ),
                    _ => write!(f, " ({})", self.reason.map_or("", |r| r.as_str())),
                }
            }
            target => {
                write!(f, "{}", self.name())?;
                if let Some(s) = target.service() {
                    write!(f, " {s}")?;
                }
                if let Some(n) = target.slot() {
                    write!(f, " slot {n}")?;
                }
                if let Some(c) = target.container() {
                    write!(f, " container {}", crate::observe::short_id(c))?;
                }
                write!(f, " on {node}")?;
                if let Some(to) = self.to()
                    && to != node
                {
                    write!(f, " to {to}")?;
                }
                if let Some(r) = self.reason {
                    write!(f, " ({})", r.as_str())?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `drover plan` prints and the `action` field, for every kind.
    #[test]
    fn each_kind_reads_as_before() {
        let id = "0123456789abcdef0123";
        let cases = [
            (
                Action::create_network("n1", "default", "demo_default"),
                "create-network",
                "create network demo_default on n1",
            ),
            (
                Action::remove_network("n1", id, "demo_default"),
                "remove-network",
                "remove network demo_default (0123456789ab) on n1 (duplicate)",
            ),
            (
                Action::create_volume("n1", "data", "demo_data"),
                "create-volume",
                "create volume demo_data on n1",
            ),
            (
                Action::create("web", 1, "n1", Reason::Missing),
                "create",
                "create web slot 1 on n1 (missing)",
            ),
            (
                Action::start("web", 2, "n1", id, true, Reason::Exited),
                "start",
                "start web slot 2 container 0123456789ab on n1 (exited)",
            ),
            (
                Action::restart("web", 2, "n1", id, Reason::Unhealthy),
                "restart",
                "restart web slot 2 container 0123456789ab on n1 (unhealthy)",
            ),
            (
                Action::start_first("web", 3, "n1", id, "n1", Reason::ConfigChanged),
                "start-first",
                "start-first web slot 3 container 0123456789ab on n1 (config-changed)",
            ),
            (
                Action::recreate("web", 3, "n2", id, "n1", Reason::Misplaced),
                "recreate",
                "recreate web slot 3 container 0123456789ab on n2 to n1 (misplaced)",
            ),
            (
                Action::remove("web", 4, "n1", id, Reason::ScaleDown),
                "remove",
                "remove web slot 4 container 0123456789ab on n1 (scale-down)",
            ),
            (
                Action::remove_stray(
                    Some("gone".into()),
                    Some(1),
                    "n1",
                    id,
                    Reason::ServiceRemoved,
                ),
                "remove",
                "remove gone slot 1 container 0123456789ab on n1 (service-removed)",
            ),
            (
                Action::remove_stray(Some("web".into()), None, "n1", id, Reason::BadLabels),
                "remove",
                "remove web container 0123456789ab on n1 (bad-labels)",
            ),
        ];
        for (action, name, text) in cases {
            assert_eq!(action.name(), name);
            assert_eq!(action.to_string(), text);
        }
    }

    #[test]
    fn only_container_actions_have_a_reason_service_and_slot() {
        let net = Action::create_network("n1", "default", "demo_default");
        assert_eq!(net.reason, None);
        assert_eq!((net.target.service(), net.target.slot()), (None, None));
        assert_eq!(net.target.container(), None);
        let create = Action::create("web", 1, "n1", Reason::Missing);
        assert_eq!(create.reason, Some(Reason::Missing));
        assert_eq!(
            (create.target.service(), create.target.slot()),
            (Some("web"), Some(1))
        );
        assert_eq!(create.target.container(), None);
        let stray = Action::remove_stray(None, Some(2), "n1", "c", Reason::BadLabels);
        assert_eq!(
            (stray.target.service(), stray.target.slot()),
            (None, Some(2))
        );
        assert_eq!(stray.target.container(), Some("c"));
    }
}
