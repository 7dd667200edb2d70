//! The Engine API's data types (containers, networks, volumes, Swarm services, tasks,
//! nodes, events), as the rest of drover names them. They are the wire format's shapes,
//! re-exported so that only `engine/` depends on the client library: calls go through
//! [`super::Engine`], data is described with these.

pub use bollard::models::*;
