//! drover: a replication controller for Docker.
//!
//! The program is one level-triggered loop:
//!
//! - [`config`]: Compose file(s), `.env`, scale targets -> the desired [`config::Project`].
//! - [`labels`]: the label keys drover writes and reads back (its only state).
//! - [`spec`]: a desired service and slot -> the engine's container create request (pure).
//! - [`engine`]: connecting like the Docker CLI.
//! - [`observe`]: the engine's containers -> observed state; events decide when to look.
//! - [`plan`]: desired + observed -> actions. Pure; where the product's judgement lives.
//! - [`execute`]: actions -> engine calls, with bounded concurrency.
//! - [`runtime`]: the one loop both modes run, and what it shares: the config source,
//!   each engine's event stream (reloads are asked for, never taken from signals: the
//!   `drover` command owns those).
//! - [`plain`]: plain mode: drover places replicas on nodes and keeps them there.
//! - [`preview`]: `drover plan`: what a pass would do, changing nothing.
//! - [`down`]: `drover down`: take a project down as `docker compose down` does.
//! - [`swarm`]: Swarm mode: drive Swarm services like `docker stack deploy` instead.
//! - [`lease`]: one acting drover per project, through a lease container on the engine.
//! - [`nodes`]: the engines of a project and whether each is up.
//! - [`telemetry`]: logs, metrics, `/status`; imports nothing above it.

pub mod autoscale;
pub mod config;
pub mod down;
pub mod engine;
pub mod execute;
pub mod labels;
pub mod lease;
pub mod mesh;
pub mod nodes;
pub mod notify;
pub mod observe;
pub mod plain;
pub mod plan;
pub mod preview;
pub mod runtime;
pub mod spec;
pub mod swarm;
pub mod telemetry;
