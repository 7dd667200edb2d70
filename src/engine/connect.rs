//! Connecting to an engine with the Docker CLI's rules (DOCKER_HOST, DOCKER_TLS_VERIFY,
//! DOCKER_CERT_PATH and the matching flags), negotiating the API version, and turning
//! connection failures into one line a user can act on.
//!
//! - [`Endpoint::resolve`] is pure: flags and an environment map in, an endpoint or a
//!   one-line [`ConnectError`] out. Nothing is read from the process environment here.
//! - [`connect`] checks what can be checked locally first (the socket file, the TLS files),
//!   then negotiates the API version and pings. It never falls back from TLS to plaintext.
//! - [`explain`] turns any bollard error met later into one line naming the engine.
//!
//! Recovery: every error says whether retrying can help ([`ConnectError::is_transient`]).
//! An unreachable or slow engine may come back by itself; a missing socket permission, a
//! certificate the engine does not accept, or a service that is not Docker will not, until
//! the user changes something.
//!
//! Differences from the Docker CLI, on purpose: TLS always verifies the engine's certificate
//! against the given CA only (no system roots, no insecure mode), the client certificate
//! and key are required, and naming TLS files (flags or DOCKER_CERT_PATH) with a tcp host
//! turns TLS on instead of being silently ignored.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{API_DEFAULT_VERSION, BollardRequest, ClientVersion, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the Docker CLI looks when nothing is configured.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Limit for establishing a connection and for the version negotiation and ping in [`connect`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for an engine to start answering any later request (bollard's per-request timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The oldest Engine API drover is tested against (Docker Engine 20.10).
pub const MIN_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

const PLAIN_PORT: u16 = 2375;
const TLS_PORT: u16 = 2376;

/// A TLS bundle named in drover's own configuration (a node of `x-drover.nodes`): a
/// directory with ca.pem, cert.pem and key.pem, and/or single files, which win over it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsFiles {
    pub cert_path: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

// The connection flags of the command line, `docker`'s: accepted before or after the
// subcommand (`global`). Each is also read from its `DROVER_*` variable;
// `Endpoint::resolve` then falls back to the Docker CLI's `DOCKER_*` variables. (Plain
// comments, not doc comments: clap would print a doc comment at the top of `--help`.)
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Docker engine to manage: unix:///path, tcp://host[:port] or https://host[:port]
    /// [default: $DOCKER_HOST, else unix:///var/run/docker.sock]
    #[arg(
        short = 'H',
        long = "host",
        env = "DROVER_HOST",
        value_name = "URL",
        global = true
    )]
    pub host: Option<String>,

    /// Use TLS and verify the engine's certificate [default: on when $DOCKER_TLS_VERIFY is
    /// non-empty]
    #[arg(
        long,
        env = "DROVER_TLSVERIFY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub tlsverify: Option<bool>,

    /// CA the engine's certificate must be signed by [default: $DOCKER_CERT_PATH/ca.pem]
    #[arg(long, env = "DROVER_TLSCACERT", value_name = "PATH", global = true)]
    pub tlscacert: Option<PathBuf>,

    /// Client certificate [default: $DOCKER_CERT_PATH/cert.pem]
    #[arg(long, env = "DROVER_TLSCERT", value_name = "PATH", global = true)]
    pub tlscert: Option<PathBuf>,

    /// Client private key [default: $DOCKER_CERT_PATH/key.pem]
    #[arg(long, env = "DROVER_TLSKEY", value_name = "PATH", global = true)]
    pub tlskey: Option<PathBuf>,
}

/// How to reach an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket path.
    Unix(PathBuf),
    /// Plain HTTP over TCP to `host:port`.
    Tcp(String),
    /// HTTPS to `addr` (`host:port`), trusting only `ca`, authenticating with `cert`/`key`.
    /// `server_name`, when set, is the name the engine's certificate is verified against
    /// instead of the dialled host (for certificates that do not carry the address).
    Tls {
        addr: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        server_name: Option<String>,
    },
}

/// A resolved engine address, with enough context to explain failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: Transport,
    /// What turned TLS on (a flag or variable name), for error messages.
    tls_source: Option<&'static str>,
}

/// What went wrong, coarsely; the message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The flags or variables do not describe a usable engine address.
    Config,
    /// The unix socket does not exist.
    SocketMissing,
    /// The unix socket (or a directory on its path) may not be opened by this user.
    PermissionDenied,
    /// Nothing answers at the address (refused, no route, connection dropped).
    Unreachable,
    /// The engine did not answer in time.
    Timeout,
    /// A TLS file is missing, unreadable or not valid PEM.
    TlsFiles,
    /// The engine's certificate failed verification (CA, name, validity).
    TlsServerCertificate,
    /// The engine refused the client certificate.
    TlsClientRejected,
    /// The TLS handshake failed for another reason (e.g. no TLS on that port).
    TlsHandshake,
    /// The engine only speaks TLS but TLS is not configured.
    TlsRequired,
    /// Something answered, but it is not a Docker engine.
    NotDocker,
    /// The API version could not be negotiated.
    ApiVersion,
    /// The engine answered a request with an error status.
    Engine,
    /// Anything else.
    Other,
}

/// A connection problem as one line a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    kind: ErrorKind,
    transient: bool,
    message: String,
}

impl ConnectError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let transient = matches!(kind, ErrorKind::Unreachable | ErrorKind::Timeout);
        ConnectError {
            kind,
            transient,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later can succeed without anyone changing anything
    /// (engine unreachable, timed out, or failing with a server error).
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

impl Endpoint {
    /// Resolve with the Docker CLI's rules. `env` is the process environment (passed in so
    /// this stays pure): flag > `DROVER_*` > `DOCKER_*` > `unix:///var/run/docker.sock`.
    pub fn resolve(
        args: &ConnectArgs,
        env: &HashMap<String, String>,
    ) -> Result<Endpoint, ConnectError> {
        let vars = Vars(env);
        let host = Host::from_settings(args, vars);
        let verify = verify_setting(args, vars)?;
        let files = TlsFileSettings::from_settings(args, vars);
        let (scheme, rest) = host.scheme()?;
        // TLS settings do not apply to a local socket; the CLI ignores them too.
        if scheme == Scheme::Unix {
            return Ok(Endpoint {
                transport: Transport::Unix(PathBuf::from(rest)),
                tls_source: None,
            });
        }
        let tls_source = host.tls_source(scheme, verify, &files)?;
        let default_port = if tls_source.is_some() {
            TLS_PORT
        } else {
            PLAIN_PORT
        };
        let addr = parse_addr(rest, default_port).map_err(|e| host.invalid(e))?;
        let Some(tls_source) = tls_source else {
            return Ok(Endpoint {
                transport: Transport::Tcp(addr),
                tls_source: None,
            });
        };
        Ok(Endpoint {
            transport: files.transport(addr, tls_source, vars)?,
            tls_source: Some(tls_source),
        })
    }

    /// The endpoint of a node from `x-drover.nodes` named `name`: its `host`, and TLS
    /// (always verified) from its `tls` block, files named there winning over the
    /// `cert_path` directory; `tls_server_name` replaces the dialled name in verification.
    /// Only `HOME` is taken from `env`: a node's settings never mix with DOCKER_*.
    pub fn for_node(
        name: &str,
        host: &str,
        tls: Option<&TlsFiles>,
        tls_server_name: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Endpoint, ConnectError> {
        let mut node_env: HashMap<String, String> = env
            .get("HOME")
            .map(|h| ("HOME".to_string(), h.clone()))
            .into_iter()
            .collect();
        if let Some(dir) = tls.and_then(|t| t.cert_path.as_ref()) {
            node_env.insert("DOCKER_CERT_PATH".into(), dir.display().to_string());
        }
        let args = ConnectArgs {
            host: Some(host.to_string()),
            tlsverify: tls.map(|_| true),
            tlscacert: tls.and_then(|t| t.ca.clone()),
            tlscert: tls.and_then(|t| t.cert.clone()),
            tlskey: tls.and_then(|t| t.key.clone()),
        };
        let mut ep = Endpoint::resolve(&args, &node_env)
            .map_err(|e| ConnectError::new(e.kind(), format!("node {name}: {e}")))?;
        if let Transport::Tls { server_name, .. } = &mut ep.transport {
            *server_name = tls_server_name.map(str::to_string);
        }
        Ok(ep)
    }

    /// An endpoint for a known transport, bypassing the flag and environment rules
    /// (e.g. a node list in drover's own configuration).
    pub fn new(transport: Transport) -> Endpoint {
        let tls_source = matches!(transport, Transport::Tls { .. }).then_some("configured");
        Endpoint {
            transport,
            tls_source,
        }
    }

    /// The engine's address for logs, e.g. `unix:///var/run/docker.sock` or
    /// `tcp://10.0.0.2:2376 (tls)`.
    pub fn display(&self) -> String {
        match &self.transport {
            Transport::Tls { .. } => format!("{} (tls)", self.url()),
            _ => self.url(),
        }
    }

    /// The engine's address as a URL, without the TLS note.
    pub fn url(&self) -> String {
        match &self.transport {
            Transport::Unix(p) => format!("unix://{}", p.display()),
            Transport::Tcp(a) | Transport::Tls { addr: a, .. } => format!("tcp://{a}"),
        }
    }

    fn host_name(&self) -> &str {
        match &self.transport {
            Transport::Unix(_) => "",
            Transport::Tcp(a) | Transport::Tls { addr: a, .. } => {
                let h = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                h.trim_start_matches('[').trim_end_matches(']')
            }
        }
    }

    fn cannot(&self, kind: ErrorKind, what: impl fmt::Display) -> ConnectError {
        ConnectError::new(
            kind,
            format!(
                "cannot connect to the Docker engine at {}: {what}",
                self.url()
            ),
        )
    }

    fn unreachable(&self, what: impl fmt::Display) -> ConnectError {
        ConnectError::new(
            ErrorKind::Unreachable,
            format!("cannot reach the Docker engine at {}: {what}", self.url()),
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// The process environment as the Docker CLI reads it: an empty variable is unset.
#[derive(Clone, Copy)]
struct Vars<'a>(&'a HashMap<String, String>);

impl<'a> Vars<'a> {
    fn get(self, key: &str) -> Option<&'a str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A setting and the flag or variable it came from, for messages.
type Sourced<T> = (T, &'static str);

/// The engine address as given, and where it came from.
struct Host<'a> {
    text: &'a str,
    source: &'static str,
}

/// The schemes an engine address may have (`tcp` when none is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Unix,
    Tcp,
    Http,
    Https,
}

impl<'a> Host<'a> {
    /// `--host`, else `DROVER_HOST`, else `DOCKER_HOST`, else [`DEFAULT_HOST`]; trimmed.
    fn from_settings(args: &'a ConnectArgs, vars: Vars<'a>) -> Host<'a> {
        let (text, source) = if let Some(h) = args.host.as_deref() {
            (h, "--host")
        } else if let Some(h) = vars.get("DROVER_HOST") {
            (h, "DROVER_HOST")
        } else if let Some(h) = vars.get("DOCKER_HOST") {
            (h, "DOCKER_HOST")
        } else {
            (DEFAULT_HOST, "the default host")
        };
        Host {
            text: text.trim(),
            source,
        }
    }

    /// A configuration error about this address, naming where it came from.
    fn invalid(&self, what: String) -> ConnectError {
        ConnectError::new(
            ErrorKind::Config,
            format!(
                "invalid Docker host {:?} (from {}): {what}",
                self.text, self.source
            ),
        )
    }

    /// The scheme and what follows it; unix:// must name a socket, and ssh:// and
    /// schemes that are not Docker's are refused.
    fn scheme(&self) -> Result<(Scheme, &'a str), ConnectError> {
        let (scheme, rest) = match self.text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("tcp".to_string(), self.text),
        };
        let scheme = match scheme.as_str() {
            "unix" if rest.is_empty() => {
                return Err(self.invalid("no socket path after unix://".into()));
            }
            "unix" => Scheme::Unix,
            "tcp" => Scheme::Tcp,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ssh" => {
                return Err(self.invalid(
                    "ssh:// is not supported; use tcp:// with TLS, or forward the engine's socket"
                        .into(),
                ));
            }
            other => {
                return Err(self.invalid(format!(
                    "unsupported scheme {other}:// (use unix://, tcp:// or https://)"
                )));
            }
        };
        Ok((scheme, rest))
    }

    /// What turns TLS on for a tcp, http or https address (`None`: plaintext): https://,
    /// the verify setting, else a TLS file named one by one, else `DOCKER_CERT_PATH`.
    /// Settings that contradict each other are refused rather than one of them ignored.
    fn tls_source(
        &self,
        scheme: Scheme,
        verify: Option<Sourced<bool>>,
        files: &TlsFileSettings,
    ) -> Result<Option<&'static str>, ConnectError> {
        let named = files.first_named();
        let tls_source = match (scheme, verify) {
            (Scheme::Https, Some((false, src))) => {
                return Err(self.invalid(format!(
                    "https:// needs TLS but {src} turns it off; drover always verifies the engine's certificate"
                )));
            }
            (Scheme::Https, Some((true, src))) => Some(src),
            (Scheme::Https, None) => Some(self.source),
            (_, Some((true, src))) => Some(src),
            (_, Some((false, src))) => {
                if let Some(file_src) = named {
                    return Err(ConnectError::new(
                        ErrorKind::Config,
                        format!(
                            "{file_src} names a TLS file but {src} turns TLS off; drop one of them"
                        ),
                    ));
                }
                None
            }
            (_, None) => named.or(files.cert_path.as_ref().map(|_| "DOCKER_CERT_PATH")),
        };
        if let (Scheme::Http, Some(src)) = (scheme, tls_source) {
            return Err(self.invalid(format!(
                "http:// is plaintext but TLS is on ({src}); use tcp:// or https://"
            )));
        }
        Ok(tls_source)
    }
}

/// Whether TLS is asked for, and by what: `--tlsverify`, else `DROVER_TLSVERIFY` (a
/// boolean), else `DOCKER_TLS_VERIFY`, which any non-empty value turns on (as in the
/// Docker CLI). `None`: neither said.
fn verify_setting(args: &ConnectArgs, vars: Vars) -> Result<Option<Sourced<bool>>, ConnectError> {
    if let Some(v) = args.tlsverify {
        return Ok(Some((v, "--tlsverify")));
    }
    match vars.get("DROVER_TLSVERIFY") {
        Some(v) => {
            let on = parse_bool(v).ok_or_else(|| {
                ConnectError::new(
                    ErrorKind::Config,
                    format!("DROVER_TLSVERIFY={v:?} is not a boolean (use true or false)"),
                )
            })?;
            Ok(Some((on, "DROVER_TLSVERIFY")))
        }
        None => Ok(vars
            .get("DOCKER_TLS_VERIFY")
            .map(|_| (true, "DOCKER_TLS_VERIFY"))),
    }
}

/// The TLS files as the settings name them: each one by one (flag, else its `DROVER_*`
/// variable), and the `DOCKER_CERT_PATH` directory.
struct TlsFileSettings {
    ca: Option<Sourced<PathBuf>>,
    cert: Option<Sourced<PathBuf>>,
    key: Option<Sourced<PathBuf>>,
    cert_path: Option<PathBuf>,
}

impl TlsFileSettings {
    fn from_settings(args: &ConnectArgs, vars: Vars) -> TlsFileSettings {
        let named = |flag: &Option<PathBuf>, flag_name: &'static str, var: &'static str| {
            flag.clone()
                .map(|p| (p, flag_name))
                .or_else(|| vars.get(var).map(|p| (PathBuf::from(p), var)))
        };
        TlsFileSettings {
            ca: named(&args.tlscacert, "--tlscacert", "DROVER_TLSCACERT"),
            cert: named(&args.tlscert, "--tlscert", "DROVER_TLSCERT"),
            key: named(&args.tlskey, "--tlskey", "DROVER_TLSKEY"),
            cert_path: vars.get("DOCKER_CERT_PATH").map(PathBuf::from),
        }
    }

    /// Where the first file named one by one came from (CA, then certificate, then key).
    fn first_named(&self) -> Option<&'static str> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .flatten()
            .map(|(_, src)| *src)
            .next()
    }

    /// The TLS transport to `addr`: each file as named, else ca.pem, cert.pem and key.pem
    /// in `DOCKER_CERT_PATH`, else in `$HOME/.docker`. `tls_source` is what turned TLS on.
    fn transport(
        self,
        addr: String,
        tls_source: &'static str,
        vars: Vars,
    ) -> Result<Transport, ConnectError> {
        let dir = self
            .cert_path
            .or_else(|| vars.get("HOME").map(|h| Path::new(h).join(".docker")));
        let file = |named: Option<Sourced<PathBuf>>,
                    name: &str,
                    flag: &str|
         -> Result<PathBuf, ConnectError> {
            match (named, &dir) {
                (Some((p, _)), _) => Ok(p),
                (None, Some(d)) => Ok(d.join(name)),
                (None, None) => Err(ConnectError::new(
                    ErrorKind::Config,
                    format!(
                        "TLS is on ({tls_source}) but neither DOCKER_CERT_PATH nor HOME is set to find {name}; set DOCKER_CERT_PATH or pass {flag}"
                    ),
                )),
            }
        };
        Ok(Transport::Tls {
            addr,
            ca: file(self.ca, "ca.pem", "--tlscacert")?,
            cert: file(self.cert, "cert.pem", "--tlscert")?,
            key: file(self.key, "key.pem", "--tlskey")?,
            server_name: None,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// `host[:port]` (IPv6 in brackets) after the scheme, normalised to `host:port`.
fn parse_addr(rest: &str, default_port: u16) -> Result<String, String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a path after the address is not supported".into());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("missing ] after an IPv6 address")?;
        match after {
            "" => (format!("[{h}]"), None),
            p if p.starts_with(':') => (format!("[{h}]"), Some(&p[1..])),
            _ => return Err("unexpected text after the IPv6 address".into()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("put an IPv6 address in brackets, e.g. tcp://[::1]:2376".into());
            }
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port number")),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// One engine connected, through both interfaces drover uses on it: containers (plain
/// mode, the event stream, the lease) and Swarm (Swarm mode).
#[derive(Clone)]
pub struct Connected {
    pub client: super::Client,
    pub swarm: super::SwarmHandle,
}

/// Connect to `ep` as [`connect`] does, ready for either mode.
pub async fn open(ep: &Endpoint) -> Result<Connected, ConnectError> {
    let docker = connect(ep).await?;
    Ok(Connected {
        swarm: super::swarm::manager(&docker),
        client: super::Client::from(docker),
    })
}

/// Connect, negotiate the API version (never pinned: the lower of bollard's and the engine's)
/// and ping. Fails with one line naming the engine; see [`ConnectError::is_transient`].
pub async fn connect(ep: &Endpoint) -> Result<Docker, ConnectError> {
    let docker = match &ep.transport {
        Transport::Unix(path) => {
            check_socket(ep, path).await?;
            Docker::connect_with_unix(
                &path.to_string_lossy(),
                REQUEST_TIMEOUT.as_secs(),
                API_DEFAULT_VERSION,
            )
            .map_err(|e| classify(ep, &e))?
        }
        Transport::Tcp(addr) => over_hyper(ep, "http", addr, http_connector())?,
        Transport::Tls {
            addr,
            ca,
            cert,
            key,
            server_name,
        } => {
            let config = tls_config(ep, ca, cert, key)?;
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only();
            let builder = match server_name {
                Some(name) => {
                    let name =
                        rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                            ep.cannot(ErrorKind::Config, format!("tls_server_name {name:?}: {e}"))
                        })?;
                    builder
                        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
                }
                None => builder,
            };
            let https = builder.enable_http1().wrap_connector(http_connector());
            over_hyper(ep, "https", addr, https)?
        }
    };

    let timed_out = || {
        ConnectError::new(
            ErrorKind::Timeout,
            format!(
                "cannot reach the Docker engine at {}: no answer within {} s",
                ep.url(),
                CONNECT_TIMEOUT.as_secs()
            ),
        )
    };
    let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(negotiation_error(ep, &e)),
        Ok(Ok(d)) => d,
    };
    let version = docker.client_version();
    let docker = with_version_prefix(docker, &version);
    if version < MIN_API_VERSION {
        return Err(ep.cannot(
            ErrorKind::ApiVersion,
            format!("the engine speaks API {version}, older than {MIN_API_VERSION} (Docker Engine 20.10), the oldest drover supports; upgrade the engine"),
        ));
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) => Err(negotiation_error(ep, &e)),
        Ok(Ok(answer)) if answer.trim() == "OK" => Ok(docker),
        Ok(Ok(answer)) => Err(ep.cannot(
            ErrorKind::NotDocker,
            format!(
                "/_ping answered {:?} instead of OK; is this a Docker engine?",
                truncate(&answer, 60)
            ),
        )),
    }
}

/// bollard 0.21 builds request paths without the `/vX.Y` prefix, so the engine would apply
/// its own newest API semantics whatever was negotiated. Send the negotiated version the
/// way the Docker CLI does.
fn with_version_prefix(docker: Docker, version: &ClientVersion) -> Docker {
    let prefix = format!("/v{}.{}", version.major_version, version.minor_version);
    docker.with_request_modifier(move |mut req| {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if !pq.starts_with("/v1.") {
            let mut parts = req.uri().clone().into_parts();
            if let Ok(p) = hyper::http::uri::PathAndQuery::try_from(format!("{prefix}{pq}")) {
                parts.path_and_query = Some(p);
                if let Ok(uri) = hyper::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        req
    })
}

/// Turn any error an engine call met later into one actionable line naming the engine
/// (for logs): an [`EngineError`](super::EngineError), or the client library's own.
pub fn explain<E: Explainable + ?Sized>(ep: &Endpoint, err: &E) -> String {
    err.classify_at(ep).to_string()
}

/// An error [`explain`] can read.
pub trait Explainable {
    /// What went wrong talking to `ep`, and whether retrying can help.
    fn classify_at(&self, ep: &Endpoint) -> ConnectError;
}

impl Explainable for BollardError {
    fn classify_at(&self, ep: &Endpoint) -> ConnectError {
        classify(ep, self)
    }
}

impl Explainable for super::EngineError {
    /// The client library's error when the call met one (its causes say the most);
    /// otherwise the same rules from the kind and message.
    fn classify_at(&self, ep: &Endpoint) -> ConnectError {
        use super::Kind;
        if let Some(cause) = self.cause() {
            return classify(ep, cause);
        }
        match self.kind {
            Kind::Timeout => classify(ep, &BollardError::RequestTimeoutError),
            Kind::Unreachable => ep.unreachable(&self.message),
            Kind::Other => ep.cannot(ErrorKind::Other, &self.message),
            // About a registry, not the engine: the message says it all.
            Kind::Credentials => ConnectError::new(ErrorKind::Other, self.message.clone()),
            Kind::NotFound | Kind::Conflict | Kind::NotModified | Kind::Api(_) => {
                server_error(ep, self.status().unwrap_or_default(), &self.message)
            }
        }
    }
}

/// Classify a bollard error met while talking to `ep` (same rules as [`explain`]).
pub fn classify(ep: &Endpoint, err: &BollardError) -> ConnectError {
    match err {
        BollardError::SocketNotFoundError(_) => socket_missing(ep),
        BollardError::RequestTimeoutError => ConnectError::new(
            ErrorKind::Timeout,
            format!(
                "the Docker engine at {} did not answer within {} s",
                ep.url(),
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => server_error(ep, *status_code, message),
        BollardError::APIVersionParseError {} => ep.cannot(
            ErrorKind::ApiVersion,
            "the engine reported no usable API version; is this a Docker engine?",
        ),
        BollardError::JsonDataError { message, .. } => ep.cannot(
            ErrorKind::Other,
            format!("unexpected answer from the engine: {message}"),
        ),
        other => transport_error(ep, other),
    }
}

fn server_error(ep: &Endpoint, status: u16, message: &str) -> ConnectError {
    let message = truncate(message.trim(), 200);
    if message.contains("HTTP request to an HTTPS server") {
        return ep.cannot(
            ErrorKind::TlsRequired,
            "the engine only accepts TLS on this port; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (or --tlsverify with --tlscacert, --tlscert, --tlskey)",
        );
    }
    if message.contains("is too new") || message.contains("too old") {
        return ep.cannot(
            ErrorKind::ApiVersion,
            format!("API version mismatch: {message}"),
        );
    }
    let mut e = ConnectError::new(
        ErrorKind::Engine,
        format!(
            "the Docker engine at {} answered {status}: {message}",
            ep.url()
        ),
    );
    e.transient = status >= 500;
    e
}

/// Errors while negotiating: the same as later, except that an answer which does not parse
/// as a Docker version means something else is listening.
fn negotiation_error(ep: &Endpoint, err: &BollardError) -> ConnectError {
    let e = classify(ep, err);
    let not_docker = |what: String| {
        ep.cannot(
            ErrorKind::NotDocker,
            format!("{what}; is this a Docker engine?"),
        )
    };
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => not_docker("GET /version answered 404".into()),
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            not_docker("GET /version did not answer a Docker version".into())
        }
        BollardError::APIVersionParseError {} => {
            not_docker("GET /version did not name an API version".into())
        }
        _ => e,
    }
}

/// The error and everything it wraps, looking inside `io::Error` payloads too
/// (`io::Error::source` skips its payload, which is where rustls errors sit).
pub(super) fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out: Vec<&'a (dyn StdError + 'static)> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        if out.len() > 16 {
            break;
        }
        out.push(e);
        cur = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(payload) => Some(payload),
            None => e.source(),
        };
    }
    out
}

fn transport_error(ep: &Endpoint, err: &BollardError) -> ConnectError {
    // `IOError` is transparent: its own `source` skips the io::Error it holds.
    let root: &(dyn StdError + 'static) = match err {
        BollardError::IOError { err } => err,
        other => other,
    };
    let chain = causes(root);
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_error(ep, tls);
    }
    // The innermost io::Error is the most specific.
    if let Some(e) = chain
        .iter()
        .rev()
        .find_map(|e| e.downcast_ref::<io::Error>())
        .and_then(|io| io_error(ep, io))
    {
        return e;
    }
    if let Some(h) = chain.iter().find_map(|e| e.downcast_ref::<hyper::Error>()) {
        if h.is_parse() || h.is_parse_status() {
            return ep.cannot(
                ErrorKind::NotDocker,
                "the answer is not HTTP; is this a Docker engine, and does it need TLS?",
            );
        }
        if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
            return ep.unreachable("the engine closed the connection");
        }
        if h.is_timeout() {
            return ConnectError::new(
                ErrorKind::Timeout,
                format!("cannot reach the Docker engine at {}: timed out", ep.url()),
            );
        }
    }
    let text = chain
        .iter()
        .map(|e| e.to_string())
        .fold(Vec::<String>::new(), |mut acc, s| {
            if !acc.iter().any(|a| a.contains(&s)) {
                acc.push(s);
            }
            acc
        });
    let mut e = ep.cannot(ErrorKind::Other, text.join(": "));
    e.transient = true;
    e
}

fn io_error(ep: &Endpoint, io: &io::Error) -> Option<ConnectError> {
    use io::ErrorKind as K;
    let timeout = || {
        ConnectError::new(
            ErrorKind::Timeout,
            format!("cannot reach the Docker engine at {}: timed out", ep.url()),
        )
    };
    Some(match io.kind() {
        K::NotFound if matches!(ep.transport, Transport::Unix(_)) => socket_missing(ep),
        K::PermissionDenied => match &ep.transport {
            Transport::Unix(path) => permission_denied(ep, path),
            _ => ep.cannot(ErrorKind::PermissionDenied, "permission denied"),
        },
        K::ConnectionRefused => match ep.transport {
            Transport::Unix(_) => ep.unreachable(
                "nothing is listening on the socket (connection refused); is dockerd running?",
            ),
            _ => ep.unreachable("connection refused"),
        },
        K::TimedOut => timeout(),
        K::HostUnreachable => ep.unreachable("no route to host"),
        K::NetworkUnreachable => ep.unreachable("network is unreachable"),
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => ep.unreachable("the engine closed the connection"),
        _ => match io.raw_os_error() {
            Some(113) => ep.unreachable("no route to host"),
            Some(101) => ep.unreachable("network is unreachable"),
            Some(110) => timeout(),
            _ => return None,
        },
    })
}

fn tls_error(ep: &Endpoint, err: &rustls::Error) -> ConnectError {
    use rustls::CertificateError as C;
    let (ca, cert) = match &ep.transport {
        Transport::Tls { ca, cert, .. } => (ca.display().to_string(), cert.display().to_string()),
        _ => (
            String::from("the CA file"),
            String::from("the client certificate"),
        ),
    };
    let url = ep.url();
    let server = |what: String| {
        ConnectError::new(
            ErrorKind::TlsServerCertificate,
            format!("TLS verification failed: the engine's certificate at {url} {what}"),
        )
    };
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => server(format!("is not signed by the CA in {ca}; point DOCKER_CERT_PATH or --tlscacert at the CA that signed it")),
            C::NotValidForName => server(format!("is not valid for the name {}", ep.host_name())),
            C::NotValidForNameContext { presented, .. } => server(format!(
                "is not valid for the name {} (it names {}); connect using one of those names or reissue the certificate",
                ep.host_name(),
                if presented.is_empty() {
                    "nothing".to_string()
                } else {
                    presented.iter().map(|n| plain_name(n)).collect::<Vec<_>>().join(", ")
                }
            )),
            C::Expired | C::ExpiredContext { .. } => server("has expired".into()),
            C::NotValidYet | C::NotValidYetContext { .. } => server("is not valid yet (check both machines' clocks)".into()),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => server("is not a server certificate (extendedKeyUsage lacks serverAuth)".into()),
            other => server(format!("was rejected: {other:?}")),
        },
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            match alert {
                A::BadCertificate | A::UnknownCA | A::CertificateRequired | A::CertificateUnknown | A::UnsupportedCertificate | A::AccessDenied | A::CertificateExpired | A::CertificateRevoked => {
                    ConnectError::new(
                        ErrorKind::TlsClientRejected,
                        format!("the Docker engine at {url} rejected the client certificate {cert} (TLS alert {alert:?}); it must be signed by the CA the engine trusts (dockerd --tlscacert)"),
                    )
                }
                other => ep.cannot(ErrorKind::TlsHandshake, format!("the TLS handshake failed (the engine sent alert {other:?})")),
            }
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } | rustls::Error::InappropriateHandshakeMessage { .. } => ep.cannot(
            ErrorKind::TlsHandshake,
            "the TLS handshake failed: the engine does not speak TLS on this port; use its TLS port (2376) or, for a plaintext engine, unset DOCKER_TLS_VERIFY and DOCKER_CERT_PATH",
        ),
        other => ep.cannot(ErrorKind::TlsHandshake, format!("the TLS handshake failed: {other}")),
    }
}

/// `IpAddress(10.0.0.2)` or `DnsName("x")` (how rustls lists a certificate's names) -> the name.
fn plain_name(n: &str) -> &str {
    let inner = n
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(n);
    inner.trim_matches('"')
}

fn socket_missing(ep: &Endpoint) -> ConnectError {
    ep.cannot(
        ErrorKind::SocketMissing,
        "the socket does not exist; is dockerd running, or is the socket mounted into this container (-v /var/run/docker.sock:/var/run/docker.sock)?",
    )
}

fn permission_denied(ep: &Endpoint, path: &Path) -> ConnectError {
    let Ok(meta) = std::fs::metadata(path) else {
        return ep.cannot(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied on {} (or a directory above it)",
                path.display()
            ),
        );
    };
    let gid = meta.gid();
    let owner = match group_name(gid) {
        Some(name) => format!("gid {gid} \"{name}\""),
        None => format!("gid {gid}"),
    };
    ep.cannot(
        ErrorKind::PermissionDenied,
        format!("permission denied on {} (owned by {owner}); run with --group-add {gid}, or add the user to that group", path.display()),
    )
}

/// The name of group `gid` from /etc/group, when it has one.
fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    group_name_in(&text, gid)
}

fn group_name_in(etc_group: &str, gid: u32) -> Option<String> {
    etc_group.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.trim().parse::<u32>().ok()? == gid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Check the socket before bollard does, to tell "missing", "not a socket", "no permission"
/// and "nobody listening" apart.
async fn check_socket(ep: &Endpoint, path: &Path) -> Result<(), ConnectError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(socket_missing(ep)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(ep, path));
        }
        Err(e) => return Err(ep.cannot(ErrorKind::Other, e)),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ep.cannot(
                ErrorKind::Config,
                format!("{} exists but is not a socket", path.display()),
            ));
        }
        Ok(_) => {}
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Ok(()),
        Err(e) => Err(io_error(ep, &e).unwrap_or_else(|| ep.cannot(ErrorKind::Other, e))),
    }
}

fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    http
}

/// A bollard client over our own hyper client (plain or TLS connector).
fn over_hyper<C>(
    ep: &Endpoint,
    scheme: &str,
    addr: &str,
    connector: C,
) -> Result<Docker, ConnectError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut builder = Client::builder(TokioExecutor::new());
    // Like bollard's own transports: no idle connections kept across requests.
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(connector));
    let transport = move |req: BollardRequest| {
        let client = Arc::clone(&client);
        async move { client.request(req).await.map_err(BollardError::from) }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("{scheme}://{addr}")),
        REQUEST_TIMEOUT.as_secs(),
        API_DEFAULT_VERSION,
    )
    .map_err(|e| classify(ep, &e))
}

/// A rustls client config trusting only `ca` and presenting `cert`/`key`; every file is
/// checked here so a bad one is named before anything is dialled.
fn tls_config(
    ep: &Endpoint,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<rustls::ClientConfig, ConnectError> {
    let source = ep.tls_source.unwrap_or("TLS settings");
    let bad = |path: &Path, what: String| {
        ep.cannot(
            ErrorKind::TlsFiles,
            format!(
                "TLS is on ({source}) but {what} ({})",
                hint_for(path, ca, cert)
            ),
        )
    };
    let read = |path: &Path, what: &str| -> Result<Vec<u8>, ConnectError> {
        std::fs::read(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => bad(
                path,
                format!("the {what} {} does not exist", path.display()),
            ),
            _ => bad(
                path,
                format!("the {what} {} cannot be read: {e}", path.display()),
            ),
        })
    };
    let certs = |path: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, ConnectError> {
        let pem = read(path, what)?;
        let list: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                bad(
                    path,
                    format!("the {what} {} is not valid PEM: {e}", path.display()),
                )
            })?;
        if list.is_empty() {
            return Err(bad(
                path,
                format!("the {what} {} holds no PEM certificate", path.display()),
            ));
        }
        Ok(list)
    };

    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca, "CA certificate")? {
        roots.add(c).map_err(|e| {
            bad(
                ca,
                format!(
                    "the CA certificate {} is not a usable certificate: {e}",
                    ca.display()
                ),
            )
        })?;
    }
    let chain = certs(cert, "client certificate")?;
    let key_pem = read(key, "client key")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            key,
            format!(
                "the client key {} holds no usable PEM private key: {e}",
                key.display()
            ),
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ep.cannot(ErrorKind::Other, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| {
            bad(
                key,
                format!(
                    "the client key {} does not fit the certificate {}: {e}",
                    key.display(),
                    cert.display()
                ),
            )
        })
}

fn hint_for(path: &Path, ca: &Path, cert: &Path) -> &'static str {
    if path == ca {
        "set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem, or pass --tlscacert"
    } else if path == cert {
        "set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem, or pass --tlscert"
    } else {
        "set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem, or pass --tlskey"
    }
}

fn truncate(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        one_line.chars().take(max).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn resolve(args: &ConnectArgs, pairs: &[(&str, &str)]) -> Result<Endpoint, ConnectError> {
        Endpoint::resolve(args, &env(pairs))
    }

    fn tls(addr: &str, dir: &str) -> Transport {
        Transport::Tls {
            addr: addr.into(),
            ca: PathBuf::from(dir).join("ca.pem"),
            cert: PathBuf::from(dir).join("cert.pem"),
            key: PathBuf::from(dir).join("key.pem"),
            server_name: None,
        }
    }

    fn none() -> ConnectArgs {
        ConnectArgs::default()
    }

    fn host(h: &str) -> ConnectArgs {
        ConnectArgs {
            host: Some(h.into()),
            ..ConnectArgs::default()
        }
    }

    #[test]
    fn default_is_the_local_socket() {
        let ep = resolve(&none(), &[]).unwrap();
        assert_eq!(ep.transport, Transport::Unix("/var/run/docker.sock".into()));
        assert_eq!(ep.display(), "unix:///var/run/docker.sock");
    }

    #[test]
    fn flag_beats_drover_env_beats_docker_env() {
        let all = [
            ("DROVER_HOST", "unix:///drover.sock"),
            ("DOCKER_HOST", "unix:///docker.sock"),
        ];
        assert_eq!(
            resolve(&host("unix:///flag.sock"), &all).unwrap().transport,
            Transport::Unix("/flag.sock".into())
        );
        assert_eq!(
            resolve(&none(), &all).unwrap().transport,
            Transport::Unix("/drover.sock".into())
        );
        assert_eq!(
            resolve(&none(), &all[1..]).unwrap().transport,
            Transport::Unix("/docker.sock".into())
        );
        // An empty variable counts as unset.
        assert_eq!(
            resolve(&none(), &[("DOCKER_HOST", "")]).unwrap().transport,
            Transport::Unix("/var/run/docker.sock".into())
        );
    }

    #[test]
    fn tcp_forms_and_default_ports() {
        let t = |h: &str| resolve(&host(h), &[]).unwrap().transport;
        assert_eq!(
            t("tcp://10.0.0.2:2375"),
            Transport::Tcp("10.0.0.2:2375".into())
        );
        assert_eq!(t("tcp://10.0.0.2"), Transport::Tcp("10.0.0.2:2375".into()));
        assert_eq!(t("tcp://10.0.0.2/"), Transport::Tcp("10.0.0.2:2375".into()));
        assert_eq!(t("10.0.0.2:4000"), Transport::Tcp("10.0.0.2:4000".into()));
        assert_eq!(
            t("engine.example"),
            Transport::Tcp("engine.example:2375".into())
        );
        assert_eq!(t("tcp://[::1]:2375"), Transport::Tcp("[::1]:2375".into()));
        assert_eq!(t("tcp://[::1]"), Transport::Tcp("[::1]:2375".into()));
        assert_eq!(t("tcp://:2375"), Transport::Tcp("localhost:2375".into()));
        assert_eq!(t("TCP://h:1"), Transport::Tcp("h:1".into()));
    }

    #[test]
    fn bad_hosts_are_config_errors_naming_the_source() {
        for h in [
            "tcp://h:notaport",
            "tcp://h:0",
            "tcp://h:70000",
            "tcp://::1:2375",
            "tcp://h:1/path",
            "unix://",
            "ftp://h",
            "ssh://u@h",
        ] {
            let e = resolve(&none(), &[("DOCKER_HOST", h)]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{h}");
            assert!(e.to_string().contains("DOCKER_HOST"), "{e}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn tls_verify_uses_cert_path_and_port_2376() {
        let ep = resolve(
            &none(),
            &[
                ("DOCKER_HOST", "tcp://10.0.0.2"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ],
        )
        .unwrap();
        assert_eq!(ep.transport, tls("10.0.0.2:2376", "/certs"));
        assert_eq!(ep.display(), "tcp://10.0.0.2:2376 (tls)");
    }

    #[test]
    fn a_node_takes_its_own_tls_files_and_server_name_and_never_docker_vars() {
        let tls = TlsFiles {
            cert_path: Some("/certs/n1".into()),
            ca: None,
            cert: Some("/elsewhere/cert.pem".into()),
            key: None,
        };
        let vars = env(&[("HOME", "/home/u"), ("DOCKER_CERT_PATH", "/wrong")]);
        let ep = Endpoint::for_node("n1", "tcp://10.0.0.3", Some(&tls), Some("engine.n1"), &vars)
            .unwrap();
        assert_eq!(
            ep.transport,
            Transport::Tls {
                addr: "10.0.0.3:2376".into(),
                ca: "/certs/n1/ca.pem".into(),
                cert: "/elsewhere/cert.pem".into(),
                key: "/certs/n1/key.pem".into(),
                server_name: Some("engine.n1".into()),
            }
        );
        let plain = Endpoint::for_node("n2", "tcp://10.0.0.4:2375", None, None, &vars).unwrap();
        assert_eq!(plain.transport, Transport::Tcp("10.0.0.4:2375".into()));
        let e = Endpoint::for_node("n3", "ftp://h", None, None, &vars).unwrap_err();
        assert!(e.to_string().starts_with("node n3: "), "{e}");
    }

    #[test]
    fn any_non_empty_docker_tls_verify_turns_it_on() {
        // As in the Docker CLI, even "0" or "false" turns verification on.
        for v in ["1", "0", "false", "yes"] {
            let ep = resolve(
                &none(),
                &[
                    ("DOCKER_HOST", "tcp://h:2376"),
                    ("DOCKER_TLS_VERIFY", v),
                    ("HOME", "/home/u"),
                ],
            )
            .unwrap();
            assert_eq!(ep.transport, tls("h:2376", "/home/u/.docker"), "{v}");
        }
        let ep = resolve(
            &none(),
            &[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS_VERIFY", "")],
        )
        .unwrap();
        assert_eq!(ep.transport, Transport::Tcp("h:2376".into()));
    }

    #[test]
    fn https_implies_tls() {
        let ep = resolve(&host("https://h"), &[("DOCKER_CERT_PATH", "/c")]).unwrap();
        assert_eq!(ep.transport, tls("h:2376", "/c"));
    }

    #[test]
    fn tls_on_unix_is_ignored() {
        let ep = resolve(
            &none(),
            &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")],
        )
        .unwrap();
        assert_eq!(ep.transport, Transport::Unix("/var/run/docker.sock".into()));
    }

    #[test]
    fn single_file_flags_override_cert_path() {
        let args = ConnectArgs {
            host: Some("tcp://h".into()),
            tlsverify: Some(true),
            tlscacert: Some("/other/ca.pem".into()),
            ..ConnectArgs::default()
        };
        let ep = resolve(
            &args,
            &[("DOCKER_CERT_PATH", "/c"), ("DROVER_TLSKEY", "/k/key.pem")],
        )
        .unwrap();
        assert_eq!(
            ep.transport,
            Transport::Tls {
                addr: "h:2376".into(),
                ca: "/other/ca.pem".into(),
                cert: "/c/cert.pem".into(),
                key: "/k/key.pem".into(),
                server_name: None,
            }
        );
    }

    #[test]
    fn naming_tls_files_never_falls_back_to_plaintext() {
        let ep = resolve(&host("tcp://h:2376"), &[("DOCKER_CERT_PATH", "/c")]).unwrap();
        assert!(matches!(ep.transport, Transport::Tls { .. }));
        let ep = resolve(
            &host("tcp://h:2376"),
            &[("DROVER_TLSCACERT", "/ca.pem"), ("HOME", "/root")],
        )
        .unwrap();
        assert!(matches!(ep.transport, Transport::Tls { .. }));
    }

    #[test]
    fn drover_tlsverify_is_boolean_and_beats_docker_tls_verify() {
        let ep = resolve(
            &host("tcp://h"),
            &[("DROVER_TLSVERIFY", "false"), ("DOCKER_TLS_VERIFY", "1")],
        )
        .unwrap();
        assert_eq!(ep.transport, Transport::Tcp("h:2375".into()));
        let ep = resolve(
            &host("tcp://h"),
            &[("DROVER_TLSVERIFY", "true"), ("HOME", "/r")],
        )
        .unwrap();
        assert_eq!(ep.transport, tls("h:2376", "/r/.docker"));
        let e = resolve(&host("tcp://h"), &[("DROVER_TLSVERIFY", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("DROVER_TLSVERIFY"), "{e}");
    }

    #[test]
    fn contradictions_are_refused() {
        let off = ConnectArgs {
            host: Some("https://h".into()),
            tlsverify: Some(false),
            ..ConnectArgs::default()
        };
        assert_eq!(resolve(&off, &[]).unwrap_err().kind(), ErrorKind::Config);
        let off = ConnectArgs {
            host: Some("tcp://h".into()),
            tlsverify: Some(false),
            tlscert: Some("/c.pem".into()),
            ..ConnectArgs::default()
        };
        let e = resolve(&off, &[]).unwrap_err();
        assert!(
            e.to_string().contains("--tlscert") && e.to_string().contains("--tlsverify"),
            "{e}"
        );
        let e = resolve(
            &host("http://h"),
            &[("DOCKER_TLS_VERIFY", "1"), ("HOME", "/r")],
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn tls_without_home_or_cert_path_says_what_to_set() {
        let e = resolve(&host("tcp://h"), &[("DOCKER_TLS_VERIFY", "1")]).unwrap_err();
        assert!(e.to_string().contains("DOCKER_CERT_PATH"), "{e}");
    }

    #[test]
    fn schemes_are_case_blind_and_tcp_when_none_is_written() {
        let vars = env(&[]);
        let scheme = |h: &str| {
            let args = host(h);
            Host::from_settings(&args, Vars(&vars))
                .scheme()
                .map(|(s, rest)| (s, rest.to_string()))
        };
        assert_eq!(scheme("h:1").unwrap(), (Scheme::Tcp, "h:1".into()));
        assert_eq!(scheme(" HTTPS://h ").unwrap(), (Scheme::Https, "h".into()));
        assert_eq!(scheme("Unix:///s").unwrap(), (Scheme::Unix, "/s".into()));
        assert_eq!(scheme("http://h").unwrap(), (Scheme::Http, "h".into()));
        for bad in ["unix://", "ssh://h", "npipe:////./pipe/docker_engine"] {
            assert!(
                scheme(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("(from --host)")
            );
        }
    }

    #[test]
    fn tls_is_turned_on_by_the_first_setting_that_asks() {
        let on = |scheme: Scheme, verify: Option<Sourced<bool>>, pairs: &[(&str, &str)]| {
            let vars = env(pairs);
            let args = host("tcp://h");
            let files = TlsFileSettings::from_settings(&args, Vars(&vars));
            Host::from_settings(&args, Vars(&vars)).tls_source(scheme, verify, &files)
        };
        assert_eq!(on(Scheme::Tcp, None, &[]), Ok(None));
        assert_eq!(on(Scheme::Https, None, &[]), Ok(Some("--host")));
        assert_eq!(
            on(Scheme::Tcp, Some((true, "DOCKER_TLS_VERIFY")), &[]),
            Ok(Some("DOCKER_TLS_VERIFY"))
        );
        // A file named one by one wins over DOCKER_CERT_PATH; the CA over the key.
        let files = [
            ("DOCKER_CERT_PATH", "/c"),
            ("DROVER_TLSKEY", "/k.pem"),
            ("DROVER_TLSCACERT", "/ca.pem"),
        ];
        assert_eq!(on(Scheme::Tcp, None, &files), Ok(Some("DROVER_TLSCACERT")));
        assert_eq!(
            on(Scheme::Tcp, None, &files[..1]),
            Ok(Some("DOCKER_CERT_PATH"))
        );
        // Off wins over DOCKER_CERT_PATH, but not over a file named one by one.
        assert_eq!(
            on(Scheme::Tcp, Some((false, "--tlsverify")), &files[..1]),
            Ok(None)
        );
        assert!(on(Scheme::Tcp, Some((false, "--tlsverify")), &files).is_err());
        assert!(on(Scheme::Http, None, &files[..1]).is_err());
    }

    #[test]
    fn clap_reads_flags_and_drover_env() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            connect: ConnectArgs,
        }
        let cli = Cli::try_parse_from([
            "drover",
            "-H",
            "tcp://h:1",
            "--tlsverify",
            "--tlscacert",
            "/ca.pem",
        ])
        .unwrap();
        assert_eq!(cli.connect.host.as_deref(), Some("tcp://h:1"));
        assert_eq!(cli.connect.tlsverify, Some(true));
        assert_eq!(cli.connect.tlscacert, Some(PathBuf::from("/ca.pem")));
        let cli = Cli::try_parse_from(["drover", "--tlsverify=false"]).unwrap();
        assert_eq!(cli.connect.tlsverify, Some(false));
        let cli = Cli::try_parse_from(["drover"]).unwrap();
        assert_eq!(cli.connect.tlsverify, None);
    }

    #[test]
    fn group_names_come_from_etc_group() {
        let etc = "root:x:0:\nbad line\ndocker:x:999:alice,bob\n";
        assert_eq!(group_name_in(etc, 999).as_deref(), Some("docker"));
        assert_eq!(group_name_in(etc, 0).as_deref(), Some("root"));
        assert_eq!(group_name_in(etc, 5), None);
    }

    #[test]
    fn permission_denied_names_the_gid_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("drover-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("d.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let ep = Endpoint {
            transport: Transport::Unix(sock.clone()),
            tls_source: None,
        };
        let gid = std::fs::metadata(&sock).unwrap().gid();
        let e = permission_denied(&ep, &sock);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(!e.is_transient());
        assert!(
            e.to_string().contains(&format!("owned by gid {gid}")),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("--group-add {gid}")), "{e}");
    }

    fn tls_ep() -> Endpoint {
        resolve(
            &host("tcp://10.231.1.2:2376"),
            &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")],
        )
        .unwrap()
    }

    #[test]
    fn tls_errors_name_the_file_and_the_name() {
        let ep = tls_ep();
        let e = tls_error(
            &ep,
            &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            e.to_string(),
            "TLS verification failed: the engine's certificate at tcp://10.231.1.2:2376 is not signed by the CA in /certs/ca.pem; point DOCKER_CERT_PATH or --tlscacert at the CA that signed it"
        );
        assert!(!e.is_transient());
        let e = tls_error(
            &ep,
            &rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        assert!(
            e.to_string()
                .contains("is not valid for the name 10.231.1.2"),
            "{e}"
        );
        let e = tls_error(
            &ep,
            &rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert_eq!(e.kind(), ErrorKind::TlsClientRejected);
        assert!(e.to_string().contains("/certs/cert.pem"), "{e}");
    }

    #[test]
    fn io_errors_inside_bollard_errors_are_classified() {
        let ep = tls_ep();
        let wrap = |e: io::Error| BollardError::IOError { err: e };
        let e = classify(
            &ep,
            &wrap(io::Error::from(io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(
            e.to_string(),
            "cannot reach the Docker engine at tcp://10.231.1.2:2376: connection refused"
        );
        assert!(e.is_transient());
        let e = classify(&ep, &wrap(io::Error::from_raw_os_error(113)));
        assert!(
            e.to_string().ends_with("no route to host") && e.is_transient(),
            "{e}"
        );
        // A rustls error hidden in an io::Error payload is found.
        let hidden = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = classify(&ep, &wrap(hidden));
        assert_eq!(e.kind(), ErrorKind::TlsServerCertificate);
        assert!(!e.is_transient());
        let e = classify(&ep, &BollardError::RequestTimeoutError);
        assert!(e.is_transient() && e.kind() == ErrorKind::Timeout);
    }

    #[test]
    fn engine_answers_are_classified() {
        let ep = tls_ep();
        let e = classify(
            &ep,
            &BollardError::DockerResponseServerError {
                status_code: 400,
                message: "Client sent an HTTP request to an HTTPS server.\n".into(),
            },
        );
        assert_eq!(e.kind(), ErrorKind::TlsRequired);
        assert!(e.to_string().contains("DOCKER_TLS_VERIFY"), "{e}");
        let e = classify(
            &ep,
            &BollardError::DockerResponseServerError {
                status_code: 404,
                message: "No such container: x".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "the Docker engine at tcp://10.231.1.2:2376 answered 404: No such container: x"
        );
        assert!(!e.is_transient());
        let e = negotiation_error(
            &ep,
            &BollardError::DockerResponseServerError {
                status_code: 404,
                message: "<html>not found</html>".into(),
            },
        );
        assert_eq!(e.kind(), ErrorKind::NotDocker);
        let e = classify(
            &ep,
            &BollardError::DockerResponseServerError {
                status_code: 503,
                message: "starting".into(),
            },
        );
        assert!(e.is_transient());
    }

    #[test]
    fn engine_errors_are_explained_as_the_errors_they_came_from() {
        let ep = tls_ep();
        for (status, message) in [
            (404, "No such service: x"),
            (409, "name conflicts with an existing object\n"),
            (503, "rpc error: the swarm does not have a leader"),
            (400, "Client sent an HTTP request to an HTTPS server.\n"),
        ] {
            let e = BollardError::DockerResponseServerError {
                status_code: status,
                message: message.into(),
            };
            // Kept, the client's error words it; borrowed, the kind and message do the same.
            assert_eq!(
                explain(&ep, &crate::engine::EngineError::from(&e)),
                explain(&ep, &e)
            );
            let kept = explain(&ep, &e);
            assert_eq!(explain(&ep, &crate::engine::EngineError::from(e)), kept);
        }
        // An error made without the client's (the fake's) is worded from its kind.
        let bare = crate::engine::EngineError::new(crate::engine::Kind::Timeout, "");
        assert!(
            explain(&ep, &bare).contains("did not answer"),
            "{}",
            explain(&ep, &bare)
        );
    }

    #[test]
    fn certificate_names_are_shown_plainly() {
        assert_eq!(plain_name("IpAddress(10.0.0.2)"), "10.0.0.2");
        assert_eq!(plain_name("DnsName(\"drover-a\")"), "drover-a");
        assert_eq!(plain_name("other"), "other");
    }

    #[test]
    fn truncate_keeps_one_line() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
