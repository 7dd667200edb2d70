//! What both modes' loops share: the config source ([`config_source`]: the files to
//! watch, change detection, SIGHUP, loading again) and the event source of each engine
//! ([`events`]: filters, backoff with jitter, an idle watchdog, resuming with `since`),
//! and following image tags ([`images`]: registry checks and what they decided, said once).

pub mod config_source;
pub mod events;
pub mod images;
pub mod run;
#[cfg(test)]
mod tests;

pub use config_source::{ConfigSource, Reload, Why};
pub use events::{EventWatch, EventWatchConfig, Heard, Trigger, Watched};
pub use run::{Adopted, Lease, Mode, Parts, Runtime, Start, Wake};
