//! Connecting to an engine with the Docker CLI's rules (DOCKER_HOST, DOCKER_TLS_VERIFY,
//! DOCKER_CERT_PATH and the matching flags), negotiating the API version, and turning
//! connection failures into one line a user can act on.

// Minimal stand-in for the local socket; replaced by the full CLI rules.
use std::collections::HashMap;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Engine address (unix://, tcp://, https://), like docker -H.
    #[arg(short = 'H', long = "host", env = "DROVER_HOST")]
    pub host: Option<String>,
}

pub struct Endpoint {
    path: String,
}

#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Endpoint {
    pub fn resolve(
        args: &ConnectArgs,
        env: &HashMap<String, String>,
    ) -> Result<Endpoint, ConnectError> {
        let host = args
            .host
            .clone()
            .or_else(|| env.get("DOCKER_HOST").cloned())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        Ok(Endpoint { path: host })
    }
    pub fn display(&self) -> String {
        self.path.clone()
    }
}

pub async fn connect(ep: &Endpoint) -> Result<bollard::Docker, ConnectError> {
    let d = bollard::Docker::connect_with_unix(
        ep.path.trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| ConnectError(e.to_string()))?;
    d.negotiate_version()
        .await
        .map_err(|e| ConnectError(e.to_string()))
}
