//! Talking to Docker Engines: connecting like the Docker CLI ([`connect`]), the interface
//! every engine call goes through ([`api::Engine`]), Swarm mode's ([`swarm::SwarmEngine`]),
//! the handle to one engine the rest of drover holds ([`api::Client`]), the one typed
//! error engine calls return ([`error`]), the one image pull path ([`images`]), image digests in the registry and on the engine
//! ([`digests`]), and where
//! the engine's host has drover's files ([`hostmounts`]).

pub mod api;
pub mod connect;
pub mod digests;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod hostmounts;
pub mod images;
pub mod model;
pub mod swarm;

pub use api::{Client, Engine, Events, Filters};
pub use error::{EngineError, Kind};
pub use swarm::{SwarmEngine, SwarmHandle};
