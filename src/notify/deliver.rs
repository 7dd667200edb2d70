//! One webhook's sender: its queue's events posted in order, one at a time, each with a
//! bounded number of attempts and exponential backoff with jitter in between.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Event, Queue, Target};
use crate::telemetry::Telemetry;

pub type Http = Client<HttpsConnector<HttpConnector>, String>;

/// How an event is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts per event, the first included.
    pub attempts: u32,
    /// The wait after the first failed attempt; it doubles after each one.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait after `failed` failed attempts: `initial` doubled each time, capped at
    /// `max`, then a random part of it taken off (jitter in [50%, 100%]) so webhooks
    /// that failed together do not retry together.
    pub fn delay(&self, failed: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << failed.saturating_sub(1).min(16));
        let capped = base.min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        capped.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
    }
}

/// The HTTP client every webhook posts through: http and https (the system's CA
/// certificates), HTTP/1.1.
pub fn client() -> Http {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
        .unwrap_or_else(|e| {
            warn!(action = "notify", error = %e, "no system CA certificates: https webhooks will fail to verify (http ones work)");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        });
    let connector = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt: no answer, a timeout, 5xx, 408, 429.
    Transient(String),
    /// The webhook refused the event (another 4xx): repeating it changes nothing.
    Refused(String),
}

pub(super) struct Sender {
    pub target: Target,
    pub queue: Arc<Queue>,
    pub client: Http,
    pub retry: Retry,
    pub project: String,
    pub telemetry: Telemetry,
}

impl Sender {
    /// Post queued events until `cancel` fires; then post what is left, once each, and
    /// end (shutdown waits only so long for that).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            match self.queue.pop() {
                Some(e) => self.deliver(e, &cancel).await,
                None if cancel.is_cancelled() => return,
                None => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = self.queue.ready.notified() => {}
                    }
                }
            }
        }
    }

    /// Post one event until the webhook takes it, refuses it, or the attempts run out.
    /// After cancellation no more waiting: one last attempt.
    async fn deliver(&self, e: Event, cancel: &CancellationToken) {
        let body = match serde_json::to_string(&e) {
            Ok(b) => b,
            Err(err) => {
                self.failed(&e, 0, &err.to_string());
                return;
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match self.post(&e, body.clone()).await {
                Ok(()) => {
                    self.telemetry.notification(&self.target.name, "sent");
                    debug!(action = "notify", project = %self.project, webhook = %self.target.name, event = e.event.as_str(), id = %e.id, attempts = attempt, "notification sent");
                    return;
                }
                Err(Failure::Refused(why)) => return self.failed(&e, attempt, &why),
                Err(Failure::Transient(why)) => why,
            };
            if attempt >= self.retry.attempts || cancel.is_cancelled() {
                return self.failed(&e, attempt, &why);
            }
            let wait = self.retry.delay(attempt);
            debug!(action = "notify", project = %self.project, webhook = %self.target.name, event = e.event.as_str(), id = %e.id, attempts = attempt, delay_ms = wait.as_millis() as u64, error = %why, "notification not taken; trying again");
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn failed(&self, e: &Event, attempts: u32, why: &str) {
        self.telemetry.notification(&self.target.name, "failed");
        warn!(action = "notify", project = %self.project, webhook = %self.target.name, event = e.event.as_str(), id = %e.id, attempts, error = %why, "notification not delivered");
    }

    /// One POST within the webhook's timeout. Errors never carry the URL.
    async fn post(&self, e: &Event, body: String) -> Result<(), Failure> {
        let request = hyper::Request::post(self.target.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("drover/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-drover-event", e.event.as_str())
            .header("x-drover-event-id", e.id.as_str())
            .body(body)
            .map_err(|err| Failure::Refused(self.redact(&err.to_string())))?;
        let timeout = self.target.timeout;
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )));
            }
            Ok(Err(err)) => return Err(Failure::Transient(self.redact(&chain(&err)))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("the webhook answered {status}");
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(Failure::Transient(why)),
            _ => Err(Failure::Refused(why)),
        }
    }

    /// `text` with the URL, and each part of it that may carry a secret, cut out.
    fn redact(&self, text: &str) -> String {
        redact(text, &self.target.url)
    }
}

/// `text` without `url` or any of its parts that could carry a secret (authority with
/// credentials, host, path and query).
pub(super) fn redact(text: &str, url: &hyper::Uri) -> String {
    let mut parts: Vec<String> = vec![url.to_string()];
    if let Some(a) = url.authority() {
        parts.push(a.to_string());
        parts.push(a.host().to_string());
    }
    if let Some(pq) = url
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.len() > 1)
    {
        parts.push(pq.to_string());
        if let Some(q) = url.query() {
            parts.push(q.to_string());
        }
        let path = url.path();
        if path.len() > 1 {
            parts.push(path.to_string());
        }
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = text.to_string();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        out = out.replace(p.as_str(), "<webhook>");
    }
    out
}

/// An error and its sources, one clause each.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
