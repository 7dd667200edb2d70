//! One typed error for engine calls: what callers match on (not found, conflict, not
//! modified, unreachable, an API error with its status), the engine's own message for
//! people, and a label for metrics.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use bollard::errors::Error as BollardError;

use super::connect::causes;

/// What kind of failure an engine call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 404: the object does not exist (or no longer does).
    NotFound,
    /// 409: a name is taken, or the object is in use or being removed.
    Conflict,
    /// 304: the object is already in the requested state (started, stopped).
    NotModified,
    /// Any other status the engine answered with.
    Api(u16),
    /// The engine did not answer in time.
    Timeout,
    /// No answer at all: the socket or address is unreachable, the connection broke.
    Unreachable,
    /// A registry login was missing, could not be read, or was refused (the message
    /// names the registry and where drover looked; never a secret).
    Credentials,
    /// An answer drover could not read.
    Other,
}

/// A failed engine call.
#[derive(Debug, Clone)]
pub struct EngineError {
    pub kind: Kind,
    /// The engine's own message, or the transport's.
    pub message: String,
    /// The client library's error, when the call met one: its chain of causes (an I/O
    /// error, a TLS alert) is what [`super::connect::explain`] reads to say what to do.
    cause: Option<Arc<BollardError>>,
}

/// Two errors are the same when they say the same thing; the cause is detail.
impl PartialEq for EngineError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for EngineError {}

impl EngineError {
    pub fn new(kind: Kind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// The client library's error this one was made from, if any.
    pub(super) fn cause(&self) -> Option<&BollardError> {
        self.cause.as_deref()
    }

    /// The HTTP status, when the engine answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::NotFound => Some(404),
            Kind::Conflict => Some(409),
            Kind::NotModified => Some(304),
            Kind::Api(s) => Some(s),
            Kind::Timeout | Kind::Unreachable | Kind::Credentials | Kind::Other => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }

    pub fn is_conflict(&self) -> bool {
        self.kind == Kind::Conflict
    }

    /// A short stable name for metrics labels.
    pub fn metric_label(&self) -> &'static str {
        match self.kind {
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::NotModified => "not_modified",
            Kind::Api(s) if s >= 500 => "server_error",
            Kind::Api(_) => "client_error",
            Kind::Timeout => "timeout",
            Kind::Unreachable => "unreachable",
            Kind::Credentials => "credentials",
            Kind::Other => "other",
        }
    }
}

impl From<BollardError> for EngineError {
    fn from(e: BollardError) -> Self {
        let mut out = EngineError::from(&e);
        out.cause = Some(Arc::new(e));
        out
    }
}

/// The kind and message only: an error borrowed cannot be kept for the explainer.
impl From<&BollardError> for EngineError {
    fn from(e: &BollardError) -> Self {
        let (kind, message) = match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => {
                let kind = match status_code {
                    404 => Kind::NotFound,
                    409 => Kind::Conflict,
                    304 => Kind::NotModified,
                    s => Kind::Api(*s),
                };
                (kind, message.trim().to_string())
            }
            BollardError::RequestTimeoutError => (Kind::Timeout, e.to_string()),
            BollardError::SocketNotFoundError(_) => (Kind::Unreachable, e.to_string()),
            other => (transport(other).unwrap_or(Kind::Other), other.to_string()),
        };
        EngineError::new(kind, message)
    }
}

/// How the way to the engine failed: it timed out, or it could not be opened or broke
/// (refused, reset, closed early: unreachable). `None` when the error is not the
/// transport's.
fn transport(e: &BollardError) -> Option<Kind> {
    // Both are transparent: their own `source` skips the error they hold.
    let root: &(dyn StdError + 'static) = match e {
        BollardError::IOError { err } => err,
        BollardError::HyperResponseError { err } => err,
        BollardError::HyperLegacyError { .. } => e,
        _ => return None,
    };
    let chain = causes(root);
    let timed_out = chain.iter().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
            || c.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_timeout())
    });
    if timed_out {
        return Some(Kind::Timeout);
    }
    let broken = match e {
        BollardError::HyperLegacyError { err } => {
            err.is_connect()
                || chain
                    .iter()
                    .any(|c| c.is::<io::Error>() || c.is::<hyper::Error>())
        }
        _ => true,
    };
    broken.then_some(Kind::Unreachable)
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Timeout => write!(f, "the engine did not answer in time"),
            _ if self.message.is_empty() => write!(f, "{}", self.metric_label()),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for EngineError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::connect::{self, Endpoint, Transport};

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn statuses_become_kinds_callers_match_on() {
        let e = EngineError::from(server(404, "No such container: x"));
        assert!(e.is_not_found());
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.to_string(), "No such container: x");
        assert!(EngineError::from(server(409, "in use")).is_conflict());
        assert_eq!(EngineError::from(server(304, "")).kind, Kind::NotModified);
        let e = EngineError::from(server(500, "boom"));
        assert_eq!((e.kind, e.metric_label()), (Kind::Api(500), "server_error"));
        let e = EngineError::from(BollardError::RequestTimeoutError);
        assert_eq!((e.status(), e.metric_label()), (None, "timeout"));
    }

    /// A client of the engine at `addr`, as drover connects over TCP.
    fn client(addr: std::net::SocketAddr, timeout_secs: u64) -> bollard::Docker {
        bollard::Docker::connect_with_http(
            &format!("tcp://{addr}"),
            timeout_secs,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_explained_as_before() {
        // A port nothing listens on any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let failed = client(addr, 5).ping().await.unwrap_err();
        let ep = Endpoint::new(Transport::Tcp(addr.to_string()));
        let said = connect::explain(&ep, &failed);
        assert!(said.ends_with("connection refused"), "{said}");
        let e = EngineError::from(failed);
        assert_eq!(
            (e.kind, e.metric_label()),
            (Kind::Unreachable, "unreachable")
        );
        assert_eq!(connect::explain(&ep, &e), said);
    }

    #[tokio::test]
    async fn a_connection_the_engine_closes_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closer = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let e = EngineError::from(client(addr, 5).ping().await.unwrap_err());
        assert_eq!(e.kind, Kind::Unreachable, "{e}");
        closer.abort();
    }

    #[test]
    fn timeouts_on_the_way_are_timeouts() {
        let io = |kind: io::ErrorKind| BollardError::IOError {
            err: io::Error::from(kind),
        };
        assert_eq!(
            EngineError::from(io(io::ErrorKind::TimedOut)).kind,
            Kind::Timeout
        );
        assert_eq!(
            EngineError::from(io(io::ErrorKind::ConnectionReset)).kind,
            Kind::Unreachable
        );
        // Not the transport's: an answer that could not be read.
        let e = EngineError::from(BollardError::JsonDataError {
            message: "eof".into(),
            column: 0,
        });
        assert_eq!(e.kind, Kind::Other);
    }
}
