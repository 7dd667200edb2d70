//! Observed state: what the engine says exists, as plain data for the planner.
//!
//! The engine is the source of truth. Every reconcile pass takes a fresh
//! [`Snapshot`] (one list of the project's containers, plus an inspect of the
//! few that are not running, and the networks and volumes); the event stream
//! only decides *when* to take one. A lost event therefore costs at most one
//! resync interval, never a wrong count.

mod events;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};

use crate::spec::{LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT};

pub use events::{EventWatch, EventWatchConfig, Trigger};

/// The lifecycle state of a container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
    Unknown,
}

impl State {
    pub fn parse(s: &str) -> State {
        match s {
            "created" => State::Created,
            "running" => State::Running,
            "paused" => State::Paused,
            "restarting" => State::Restarting,
            "exited" => State::Exited,
            "removing" => State::Removing,
            "dead" => State::Dead,
            _ => State::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Removing => "removing",
            State::Dead => "dead",
            State::Unknown => "unknown",
        }
    }
}

/// What the container's healthcheck says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// No healthcheck.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// From the list's status text, e.g. `Up 5 seconds (unhealthy)`.
    pub fn from_status(status: &str) -> Health {
        if status.contains("(unhealthy)") {
            Health::Unhealthy
        } else if status.contains("(healthy)") {
            Health::Healthy
        } else if status.contains("(health: starting)") {
            Health::Starting
        } else {
            Health::None
        }
    }
}

/// One container as seen by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Full engine id.
    pub id: String,
    /// The node (engine) the container was listed on.
    pub node: String,
    /// Name without the leading slash.
    pub name: String,
    pub labels: HashMap<String, String>,
    pub state: State,
    pub health: Health,
    /// Exit code of the last run, when the container has exited.
    pub exit_code: Option<i64>,
    /// When the container was created (from the list; seconds precision).
    pub created: Option<SystemTime>,
    /// When the last run started and finished (filled for containers that are not running).
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
}

impl Container {
    /// The 12-character id used in logs, as the Docker CLI shows it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    pub fn project(&self) -> Option<&str> {
        self.labels.get(LABEL_PROJECT).map(String::as_str)
    }

    pub fn service(&self) -> Option<&str> {
        self.labels.get(LABEL_SERVICE).map(String::as_str)
    }

    /// The slot label, when present and a positive integer.
    pub fn slot(&self) -> Option<u32> {
        self.labels
            .get(LABEL_SLOT)
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| *n > 0)
    }

    /// When this copy of its slot was placed; 0 for containers from before generations.
    pub fn generation(&self) -> u64 {
        self.labels
            .get(LABEL_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }

    pub fn config_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_CONFIG_HASH).map(String::as_str)
    }

    /// True when the container carries `drover.project=<project>`: only such containers are
    /// ever stopped, removed or changed.
    pub fn owned_by(&self, project: &str) -> bool {
        self.project() == Some(project)
    }

    /// How long the last run lasted, when both ends are known.
    pub fn last_run(&self) -> Option<std::time::Duration> {
        let (s, f) = (self.started_at?, self.finished_at?);
        f.duration_since(s).ok()
    }
}

/// The 12-character form of a container id.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Everything the planner needs to know about one engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    /// Engine names of existing networks.
    pub networks: BTreeSet<String>,
    /// Engine names of existing volumes.
    pub volumes: BTreeSet<String>,
}

/// Take a fresh snapshot of one project on one engine: one list of the project's
/// containers, an inspect of each one that is not running (for exit code and run
/// times) or that an event just named (the list can lag behind an exit), and the
/// names of existing networks and volumes.
pub async fn snapshot(
    docker: &Docker,
    node: &str,
    project: &str,
    changed: &HashSet<String>,
) -> Result<Snapshot, bollard::errors::Error> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    let mut containers = Vec::with_capacity(list.len());
    for summary in list {
        let Some(id) = summary.id else { continue };
        let state = summary
            .state
            .map(|s| State::parse(s.as_ref()))
            .unwrap_or(State::Unknown);
        let mut c = Container {
            node: node.to_string(),
            name: summary
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            id,
            labels: summary.labels.unwrap_or_default(),
            health: summary
                .status
                .as_deref()
                .map(Health::from_status)
                .unwrap_or_default(),
            state,
            created: summary
                .created
                .and_then(|t| u64::try_from(t).ok())
                .map(|t| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t)),
            exit_code: None,
            started_at: None,
            finished_at: None,
        };
        if !matches!(c.state, State::Running | State::Paused) || changed.contains(&c.id) {
            match docker.inspect_container(&c.id, None).await {
                Ok(details) => {
                    if let Some(st) = details.state {
                        if let Some(status) = st.status {
                            c.state = State::parse(status.as_ref());
                        }
                        if let Some(h) = st.health.and_then(|h| h.status) {
                            c.health = match h.as_ref() {
                                "healthy" => Health::Healthy,
                                "unhealthy" => Health::Unhealthy,
                                "starting" => Health::Starting,
                                _ => Health::None,
                            };
                        }
                        c.exit_code = st.exit_code;
                        c.started_at = st.started_at.as_deref().and_then(parse_time);
                        c.finished_at = st.finished_at.as_deref().and_then(parse_time);
                    }
                }
                // Removed between the list and the inspect: leave it out.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        containers.push(c);
    }
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await?
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    let volumes = docker
        .list_volumes(None::<ListVolumesOptions>)
        .await?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(Snapshot {
        containers,
        networks,
        volumes,
    })
}

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

/// Find the id of the container this process runs in, if any, so drover never touches itself.
///
/// Reads `/proc/self/mountinfo` (cgroup v1 and v2 alike: the engine bind-mounts
/// `/var/lib/docker/containers/<id>/hostname` and friends into every container).
pub fn own_container_id() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&mountinfo)
}

fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    for line in mountinfo.lines() {
        let Some(pos) = line.find("/containers/") else {
            continue;
        };
        let rest = &line[pos + "/containers/".len()..];
        let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if id.len() == 64 && rest[64..].starts_with('/') {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_times_with_nanoseconds() {
        let t = parse_time("2026-11-22T06:09:01.123456789Z").unwrap();
        let base = parse_time("2026-11-22T06:09:01Z").unwrap();
        assert_eq!(t.duration_since(base).unwrap().as_nanos(), 123_456_789);
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn finds_own_container_id_in_mountinfo() {
        let id = "a".repeat(64);
        let info = format!(
            "1 2 0:1 / / rw - overlay overlay rw\n\
             3 1 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&info), Some(id));
        assert_eq!(
            container_id_from_mountinfo("1 2 0:1 / / rw - ext4 x rw\n"),
            None
        );
    }

    #[test]
    fn slot_label_must_be_a_positive_integer() {
        let mut c = Container {
            id: "0123456789abcdef".into(),
            node: "n1".into(),
            name: "p-web-1".into(),
            labels: HashMap::from([(LABEL_SLOT.to_string(), "0".to_string())]),
            state: State::Running,
            health: Health::None,
            created: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
        };
        assert_eq!(c.slot(), None);
        c.labels.insert(LABEL_SLOT.into(), "x".into());
        assert_eq!(c.slot(), None);
        c.labels.insert(LABEL_SLOT.into(), "3".into());
        assert_eq!(c.slot(), Some(3));
        assert_eq!(c.short_id(), "0123456789ab");
    }
}
