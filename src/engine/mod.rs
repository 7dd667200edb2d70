//! Talking to Docker Engines: connecting like the Docker CLI ([`connect`]), the interface
//! every engine call goes through ([`api::Engine`]), Swarm mode's ([`swarm::SwarmEngine`]),
//! the handle to one engine the rest of drover holds ([`api::Client`]), the one typed
//! error engine calls return ([`error`]), the one image pull path ([`images`]) with the
//! registry credentials it uses ([`credentials`]), image digests in the registry and on the
//! engine ([`digests`]), where the engine's host has drover's files ([`hostmounts`]), and
//! which container drover itself runs in ([`own`]).

pub mod api;
pub mod connect;
pub mod credentials;
pub mod digests;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod hostmounts;
pub mod images;
pub mod model;
pub mod own;
pub mod swarm;

pub use api::{Client, Engine, Events, Filters};
pub use credentials::Credentials;
pub use error::{EngineError, Kind};
pub use own::own_container_id;
pub use swarm::{SwarmEngine, SwarmHandle};

/// The log target of the Docker client library drover talks to engines with. It logs
/// request bodies at debug level, and a create request carries the container's
/// environment: the logger keeps this target at `info` unless it is asked for by name.
pub const CLIENT_LOG_TARGET: &str = "bollard";

/// The 12-character form of a container id.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// True for a full container id: 64 hex digits.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
