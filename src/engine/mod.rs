//! Talking to Docker Engines: connecting like the Docker CLI ([`connect`]), the one typed
//! error engine calls return ([`error`]), the one image pull path ([`images`]), and where
//! the engine's host has drover's files ([`hostmounts`]).

pub mod connect;
pub mod error;
pub mod hostmounts;
pub mod images;

pub use error::{EngineError, Kind};
