//! What drover tells the outside world.
//!
//! - Structured logs (this module): one JSON object per line (or pretty lines on a
//!   terminal) with the stable field names from the conventions: `timestamp`, `level`,
//!   `message`, `action`, `project`, `service`, `slot`, `node`, `container`, `reason`,
//!   `desired`, `actual`, `duration_ms`, `error`.
//! - [`Telemetry`]: the handle the controller and event watcher record into, per node.
//! - [`http`]: `/livez`, `/readyz`, `/metrics` ([`metrics`]), `/status` ([`status`]).
//!
//! Telemetry imports nothing above it: the hooks take records defined here
//! ([`ActionEvent`], [`Observation`], [`swarm::Report`], ...), and each caller converts its
//! own types into them.

pub mod autoscale;
pub mod http;
pub mod metrics;
mod recorder;
pub mod status;
pub mod swarm;

pub use recorder::{
    ActionEvent, Counts, HostPathsRecord, ImageRecord, LeaseRecord, Observation, PassTimer,
    PlanRecord, ReplicaStateRecord, ServiceStateRecord, SlotChange, StoppedRecord, Telemetry,
    WaitRecord,
};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// Pretty on a terminal, JSON otherwise (containers, files, pipes).
    pub fn auto() -> LogFormat {
        if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }
}

/// Install the global subscriber. `level` is `--log-level`; RUST_LOG is used when it is
/// not given; the default is `info`. `quiet` is a log target kept at `info` unless the
/// level names it: the engine client's, whose debug lines carry request bodies (a
/// container's environment among them).
pub fn init(format: LogFormat, level: Option<&str>, quiet: &str) -> Result<(), String> {
    let mut filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("--log-level {l}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let asked = level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .is_some_and(|l| l.contains(quiet));
    if !asked && let Ok(d) = format!("{quiet}=info").parse() {
        filter = filter.add_directive(d);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    }
    .map_err(|e| format!("cannot install the logger: {e}"))
}
