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

/// What a running container uses, from one sample of the engine's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU over the sample, in % of one core (200: two cores busy).
    pub cpu_percent: f64,
    /// Memory in use, less the page cache that can be dropped (as `docker stats` shows it).
    pub memory_bytes: f64,
}

impl Usage {
    /// `docker stats`'s figures from a non-streamed stats answer (which carries the
    /// previous sample too).
    pub fn from_stats(s: &ContainerStatsResponse) -> Usage {
        let total = |c: &Option<ContainerCpuStats>| {
            c.as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let system = |c: &Option<ContainerCpuStats>| {
            c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0)
        };
        let cpu_delta = total(&s.cpu_stats).saturating_sub(total(&s.precpu_stats)) as f64;
        let system_delta = system(&s.cpu_stats).saturating_sub(system(&s.precpu_stats)) as f64;
        let cpus = s
            .cpu_stats
            .as_ref()
            .and_then(|c| {
                c.online_cpus.map(f64::from).or_else(|| {
                    let n = c.cpu_usage.as_ref()?.percpu_usage.as_ref()?.len();
                    Some(n as f64)
                })
            })
            .unwrap_or(1.0);
        let cpu_percent = if system_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        };
        let memory_bytes = s.memory_stats.as_ref().map_or(0.0, |m| {
            let usage = m.usage.unwrap_or(0);
            // cgroup v1 calls the cache total_inactive_file, v2 inactive_file.
            let cache = m.stats.as_ref().and_then(|st| {
                st.get("total_inactive_file")
                    .or_else(|| st.get("inactive_file"))
                    .copied()
            });
            usage.saturating_sub(cache.unwrap_or(0)) as f64
        });
        Usage {
            cpu_percent,
            memory_bytes,
        }
    }
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
