//! Talking to Docker Engines: connecting like the Docker CLI ([`connect`]) and the
//! small surface the rest of drover uses.

pub mod connect;
