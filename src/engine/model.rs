//! The Engine API's data types (containers, networks, volumes, Swarm services, tasks,
//! nodes, events), as the rest of drover names them. They are the wire format's shapes,
//! re-exported so that only `engine/` depends on the client library: calls go through
//! [`super::Engine`], data is described with these.

pub use bollard::models::*;

use std::time::SystemTime;

/// Parse the engine's RFC 3339 timestamps; the zero time (`0001-01-01T00:00:00Z`) means unset.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    if s.is_empty() || s.starts_with("0001-") {
        return None;
    }
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('.').next()?)
        .ok()
        .map(|t| {
            // Keep sub-second precision: the engine gives nanoseconds.
            let frac = s
                .split('.')
                .nth(1)
                .map(|f| f.trim_end_matches('Z'))
                .and_then(|f| {
                    let digits: String = f.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let padded = format!("{digits:0<9}");
                    padded.get(..9)?.parse::<u64>().ok()
                })
                .unwrap_or(0);
            t + std::time::Duration::from_nanos(frac)
        })
}

/// A volume mounted in a container: the engine's volume name and the path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub name: String,
    pub destination: String,
}

/// The anonymous volumes among a container's mounts. The engine names an anonymous
/// volume with 64 hex digits; a named one (project or external) has the user's name. Mounts
/// never change after create, so the list's copy is as good as an inspect's.
pub fn anonymous_volumes(mounts: &[MountPoint]) -> Vec<VolumeMount> {
    mounts
        .iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            let name = m.name.as_deref()?;
            let destination = m.destination.as_deref()?;
            super::is_full_id(name).then(|| VolumeMount {
                name: name.to_string(),
                destination: destination.to_string(),
            })
        })
        .collect()
}
