//! What both modes' loops share: the config source ([`config_source`]: the files to
//! watch, change detection, SIGHUP, loading again) and the event source of each engine
//! ([`events`]: filters, backoff with jitter, an idle watchdog, resuming with `since`).

pub mod config_source;
pub mod events;
pub mod run;
#[cfg(test)]
mod tests;

pub use config_source::{ConfigSource, Reload, Why};
pub use events::{EventWatch, EventWatchConfig, Trigger, Watched};
pub use run::{Adopted, Lease, Mode, Parts, Runtime, Start, Wake};
