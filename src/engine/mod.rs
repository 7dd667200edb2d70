//! Talking to Docker Engines: connecting like the Docker CLI ([`connect`]) and the
//! small surface the rest of drover uses; [`hostmounts`]: where the engine's host has drover's files.

pub mod connect;
pub mod hostmounts;
