//! The labels drover puts on what it creates and reads back: the whole of its state lives
//! in them (see the conventions: a container without `drover.project=<project>` is never
//! touched). One place for the label keys, so writers and readers cannot drift apart.
//! (Swarm mode's stack labels are with the rest of its Swarm spec, in `swarm::convert`.)

/// The project a container belongs to: ownership.
pub const LABEL_PROJECT: &str = "drover.project";
pub const LABEL_SERVICE: &str = "drover.service";
pub const LABEL_SLOT: &str = "drover.slot";
pub const LABEL_CONFIG_HASH: &str = "drover.config-hash";
/// The registry digest (`sha256:…`) of the image the container was created from, when the
/// image has one: a container whose digest differs from the service's pinned one is rolled.
pub const LABEL_IMAGE_DIGEST: &str = "drover.image-digest";
/// Set by the executor on multi-node setups.
pub const LABEL_NODE: &str = "drover.node";
/// On an ambassador (several nodes): which ambassador of which network it is (the
/// network's key, then `{key}-2`… for services on a port the first already forwards).
pub const LABEL_AMBASSADOR: &str = "drover.ambassador";
/// On a replica that publishes its ports for other nodes' ambassadors (several nodes):
/// the node address they are bound to. A replica bound elsewhere is rolled.
pub const LABEL_MESH_ADDRESS: &str = "drover.mesh-address";
/// When this copy of the slot was placed (nanoseconds since the epoch): of two copies of one
/// slot, the newer is current and the older is removed once the newer runs.
pub const LABEL_GENERATION: &str = "drover.generation";

/// Compose's own labels, so compose-aware tools list what drover creates.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";

/// On the lease container: the project it is for.
pub const LEASE_PROJECT: &str = "drover.lease";
/// On the lease container: the drover process that created it.
pub const LEASE_HOLDER: &str = "drover.lease.holder";
/// On the lease container: where the holder's pid can be checked:
/// `{boot id}/{container id or host}`.
pub const LEASE_SCOPE: &str = "drover.lease.scope";
/// On the lease container: the term of the campaign that created it (terms only grow).
pub const LEASE_TERM: &str = "drover.lease.term";
/// On containers, networks and volumes a drover created under the lease: the term of its
/// leadership then. Of two copies of one slot, the higher term's is kept.
pub const LABEL_TERM: &str = "drover.term";
