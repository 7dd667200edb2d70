//! What both modes' loops share. So far: the config source ([`config_source`]): the files
//! to watch, change detection, SIGHUP, loading again.

pub mod config_source;

pub use config_source::{ConfigSource, Reload, Why};
