//! Where the engine's host has drover's files: the mounts of drover's own container, from
//! the engine's inspect (`config::hostpath` translates paths with them).

use std::path::PathBuf;
use std::time::Duration;

use super::api::{Client, Engine};
use super::error::EngineError;
use super::model::MountPoint;

use super::connect::{self, Endpoint};

/// drover's own container and its mounts, from the engine's inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMounts {
    /// The container's id (12 characters are shown).
    pub container: String,
    pub mounts: Vec<HostMount>,
}

/// One mount of drover's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Where it appears inside drover's container.
    pub destination: PathBuf,
    /// Its path on the engine's host: the bind's source, or a volume's mountpoint. `None`
    /// when the engine gives none (a volume of a driver without a local mountpoint).
    pub source: Option<PathBuf>,
    /// What it is, for messages: `bind`, `volume NAME`, `tmpfs`.
    pub what: String,
}

/// The mounts of drover's own container `own_id` (`None`: drover does not run in a
/// container, nothing to ask), from the engine (`docker`, else a connection to `endpoint`).
/// `Err` says why they could not be read: the engine did not answer, or does not know the
/// container (drover runs beside another engine than the one it manages). The caller then
/// hands paths on as they are, and says so.
pub async fn discover(
    own_id: Option<&str>,
    engine: Option<&Client>,
    endpoint: &Endpoint,
) -> Result<Option<HostMounts>, String> {
    let Some(id) = own_id else {
        return Ok(None);
    };
    let connected;
    let engine = match engine {
        Some(e) => e,
        None => {
            connected = tokio::time::timeout(Duration::from_secs(5), connect::connect(endpoint))
                .await
                .map_err(|_| format!("{}: no answer within 5s", endpoint.display()))?
                .map_err(|e| e.to_string())
                .map(Client::from)?;
            &connected
        }
    };
    match own_mounts(&**engine, id).await {
        Ok(Some(m)) => Ok(Some(m)),
        Ok(None) => Err(format!(
            "{} has no container {id}: drover runs on another engine's host",
            endpoint.display()
        )),
        Err(e) => Err(connect::explain(endpoint, &e)),
    }
}

/// The mounts of container `id`; `None` when the engine has no such container.
pub async fn own_mounts(engine: &dyn Engine, id: &str) -> Result<Option<HostMounts>, EngineError> {
    let c = match engine.inspect_container(id).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(HostMounts {
        container: c.id.unwrap_or_else(|| id.to_string()),
        mounts: c
            .mounts
            .unwrap_or_default()
            .iter()
            .filter_map(mount)
            .collect(),
    }))
}

fn mount(m: &MountPoint) -> Option<HostMount> {
    let destination = PathBuf::from(m.destination.as_deref()?);
    let source = m
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let what = match m.typ.as_deref() {
        Some("volume") => format!("volume {}", m.name.as_deref().unwrap_or("")),
        Some(t) => t.to_string(),
        None => "mount".to_string(),
    };
    Some(HostMount {
        destination,
        source,
        what,
    })
}
