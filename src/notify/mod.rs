//! Notifications: a JSON POST to each webhook of `x-drover.notify` when something
//! happens that people act on (a node down or back, a replica given up on, an update
//! started, finished or rolled back, an image followed, a scale change).
//!
//! [`Notifier::send`] never blocks and never fails: it queues the event for every webhook
//! that wants it (a bounded queue per webhook; when full, the oldest event is dropped and
//! counted). One sender task per webhook ([`deliver`]) posts its events in order, one at a
//! time, each with a few attempts and exponential backoff with jitter; an event is never
//! posted again once the webhook acknowledged it (2xx), and a later event is never sent
//! while an earlier one is still being retried. Every event carries an `id`, so a receiver
//! can also recognise the one repeat drover cannot rule out (an attempt that timed out
//! after the receiver took it). The URL (it usually carries a token) is read once at
//! start, never logged, and cut out of every error; logs and metrics name the webhook.
//!
//! Only the acting drover notifies: the hooks sit in the loop's passes and reloads, which
//! a drover without the project's lease does not run.

mod deliver;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use crate::config::NotifyEvent as Kind;
use crate::config::{UrlSource, Webhook};
use crate::telemetry::Telemetry;
pub use deliver::Retry;
/// The HTTP client webhooks post through (http and https, the system's CA certificates),
/// also what autoscaling triggers are read with.
pub use deliver::{Http, client as http_client};

/// Events kept per webhook while it is slow or down; past this the oldest are dropped.
pub const QUEUE: usize = 256;

/// One notification: the JSON body posted. Fields that do not apply are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Unique per event (the same on every attempt): what a receiver deduplicates with.
    pub id: String,
    pub event: Kind,
    pub project: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When it happened, RFC 3339 in UTC.
    pub time: String,
    /// One line for people.
    pub message: String,
}

impl Event {
    /// An event of `kind`; [`Notifier::send`] fills in the id, project and time.
    fn new(kind: Kind, message: String) -> Event {
        Event {
            id: String::new(),
            event: kind,
            project: String::new(),
            service: None,
            node: None,
            slot: None,
            reason: None,
            desired: None,
            actual: None,
            image: None,
            time: String::new(),
            message,
        }
    }

    fn service(mut self, s: &str) -> Event {
        self.service = Some(s.to_string());
        self
    }

    fn reason(mut self, r: &str) -> Event {
        self.reason = Some(r.to_string());
        self
    }

    /// A node stopped answering. `reason`: a short token (`unreachable`, or Swarm's node
    /// state); `detail`: why, as drover words it.
    pub fn node_down(node: &str, reason: &str, detail: &str) -> Event {
        let why = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let mut e = Event::new(Kind::NodeDown, format!("node {node} is down{why}"));
        e.node = Some(node.to_string());
        e.reason(reason)
    }

    /// A node that was down answers again.
    pub fn node_up(node: &str) -> Event {
        let mut e = Event::new(Kind::NodeUp, format!("node {node} is up again"));
        e.node = Some(node.to_string());
        e
    }

    /// A replica's restart policy ran out (`max_attempts`): it is left exited.
    pub fn gave_up(service: &str, slot: u32, node: &str, exit_code: Option<i64>) -> Event {
        let code = exit_code.map_or(String::new(), |c| format!(" (exit code {c})"));
        let mut e = Event::new(
            Kind::GaveUp,
            format!("{service} replica {slot} keeps failing{code}: left exited, no more restarts"),
        );
        e.node = Some(node.to_string());
        e.slot = Some(slot);
        e.service(service).reason("max-attempts")
    }

    /// A service's definition changed: its replicas are being replaced.
    pub fn update_started(service: &str, desired: u32) -> Event {
        let mut e = Event::new(
            Kind::UpdateStarted,
            format!("{service}: rolling out a new definition"),
        );
        e.desired = Some(desired);
        e.service(service).reason("config-changed")
    }

    /// Every replica of the service runs its current definition and has settled; after a
    /// rollback, `rolled_back` (the definition is the previous one).
    pub fn update_finished(service: &str, desired: u32, rolled_back: bool) -> Event {
        let (what, reason) = if rolled_back {
            ("rollback finished", "rolled-back")
        } else {
            ("update finished", "completed")
        };
        let mut e = Event::new(Kind::UpdateFinished, format!("{service}: {what}"));
        e.desired = Some(desired);
        e.service(service).reason(reason)
    }

    /// An update failed (`failed` new replicas did not settle, when known) and is being
    /// rolled back. `reason`: why (`update-failed`, or the caller's own).
    pub fn rollback(service: &str, failed: Option<usize>, reason: &str) -> Event {
        let mut e = Event::new(
            Kind::Rollback,
            format!("{service}: update failed; rolling back to the previous definition"),
        );
        e.actual = failed.map(|f| u32::try_from(f).unwrap_or(u32::MAX));
        e.service(service).reason(reason)
    }

    /// The service now runs a newer `image` (a tag followed to a new digest).
    pub fn image_followed(service: &str, image: &str, digest: Option<&str>) -> Event {
        let at = digest.map_or(String::new(), |d| format!(" at {d}"));
        let mut e = Event::new(
            Kind::ImageFollowed,
            format!("{service}: following {image}{at}"),
        );
        e.image = Some(image.to_string());
        e.service(service).reason("image-updated")
    }

    /// A service's replica target changed from `from` to `to`.
    pub fn scale(service: &str, from: u32, to: u32) -> Event {
        let mut e = Event::new(Kind::Scale, format!("{service} scaled from {from} to {to}"));
        e.desired = Some(to);
        e.service(service)
    }
}

/// One webhook's queue, shared by the notifier and its sender task.
struct Queue {
    name: String,
    events: BTreeSet<Kind>,
    items: Mutex<VecDeque<Event>>,
    ready: tokio::sync::Notify,
    cap: usize,
}

impl Queue {
    fn pop(&self) -> Option<Event> {
        self.lock().pop_front()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    project: String,
    queues: Vec<Arc<Queue>>,
    /// Makes ids unique across restarts: this process's start, in hex nanoseconds.
    boot: String,
    seq: AtomicU64,
    telemetry: Telemetry,
}

/// The handle hooks send events through: cheap to clone; with no webhooks configured
/// (or [`Notifier::default`]) it does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

impl Notifier {
    /// Queue `event` for every webhook that wants its kind. Never blocks: a full queue
    /// drops its oldest event (counted in `drover_notifications_dropped_total`).
    pub fn send(&self, mut event: Event) {
        let Some(inner) = &self.inner else { return };
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        event.id = format!("{}-{seq}", inner.boot);
        event.project = inner.project.clone();
        event.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        for q in inner
            .queues
            .iter()
            .filter(|q| q.events.contains(&event.event))
        {
            let dropped = {
                let mut items = q.lock();
                let dropped = if items.len() >= q.cap {
                    items.pop_front()
                } else {
                    None
                };
                items.push_back(event.clone());
                dropped
            };
            q.ready.notify_one();
            if let Some(d) = dropped {
                inner.telemetry.notification_dropped(&q.name);
                warn!(action = "notify", project = %inner.project, webhook = %q.name, event = d.event.as_str(), id = %d.id, reason = "queue-full", "notification dropped unsent: the webhook is too slow or down");
            }
        }
    }

    /// A notifier that keeps every event it is sent, and a way to read them (for tests of
    /// the hooks: no webhook, no task).
    #[cfg(test)]
    pub(crate) fn recording() -> (Notifier, impl Fn() -> Vec<Event>) {
        let q = Arc::new(Queue {
            name: "test".into(),
            events: Kind::ALL.into_iter().collect(),
            items: Mutex::new(VecDeque::new()),
            ready: tokio::sync::Notify::new(),
            cap: usize::MAX,
        });
        let n = Notifier {
            inner: Some(Arc::new(Inner {
                project: "test".into(),
                queues: vec![q.clone()],
                boot: "t".into(),
                seq: AtomicU64::new(1),
                telemetry: Telemetry::new("test", Duration::from_secs(60), None),
            })),
        };
        (n, move || q.lock().iter().cloned().collect())
    }
}

/// The notifier and its sender tasks (for `runtime::Parts::tasks`: joined at shutdown,
/// each flushing what it can in the time it gets).
#[derive(Default)]
pub struct Notifications {
    pub notifier: Notifier,
    pub tasks: Vec<JoinHandle<()>>,
}

/// A webhook ready to post to: its name, URL and attempt settings.
pub struct Target {
    pub name: String,
    url: hyper::Uri,
    pub events: BTreeSet<Kind>,
    pub timeout: Duration,
}

/// Shows the webhook's name, never its URL.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One attempt's deadline when the webhook sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Target {
    /// Read the webhook's URL (from its file or environment variable). The error names
    /// the webhook and where its URL should be, never the URL or the file's content.
    pub fn resolve(hook: &Webhook) -> Result<Target, String> {
        let what = format!("x-drover.notify webhook {}", hook.name);
        let (text, from) = match &hook.url {
            UrlSource::File(path) => {
                let from = format!("the file {}", path.display());
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{what}: cannot read {from} (url_file): {e}"))?;
                (text, from)
            }
            UrlSource::Env(name) => {
                let from = format!("the environment variable {name}");
                let text = std::env::var(name)
                    .map_err(|_| format!("{what}: {from} (url_env) is not set"))?;
                (text, from)
            }
        };
        Target::new(hook, text.trim(), &from).map_err(|e| format!("{what}: {e}"))
    }

    /// A target posting to `url` (`from`: where it came from, for errors).
    fn new(hook: &Webhook, url: &str, from: &str) -> Result<Target, String> {
        let bad = || format!("{from} does not hold an http:// or https:// URL");
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad());
        }
        Ok(Target {
            name: hook.name.clone(),
            url: uri,
            events: hook.events.clone(),
            timeout: hook.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// Start notifying: every webhook's URL read, its sender task spawned (ending once
/// `cancel` fires and its queue is flushed). No webhooks: a notifier that does nothing.
pub fn start(
    hooks: &[Webhook],
    project: &str,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) -> Result<Notifications, String> {
    let targets = hooks
        .iter()
        .map(Target::resolve)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(spawn(targets, project, telemetry, Retry::default(), cancel))
}

/// The notifier over `targets`, with a sender task each.
pub fn spawn(
    targets: Vec<Target>,
    project: &str,
    telemetry: &Telemetry,
    retry: Retry,
    cancel: &CancellationToken,
) -> Notifications {
    if targets.is_empty() {
        return Notifications::default();
    }
    let client = deliver::client();
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for t in targets {
        telemetry.add_webhook(&t.name);
        let q = Arc::new(Queue {
            name: t.name.clone(),
            events: t.events.clone(),
            items: Mutex::new(VecDeque::new()),
            ready: tokio::sync::Notify::new(),
            cap: QUEUE,
        });
        let sender = deliver::Sender {
            target: t,
            queue: q.clone(),
            client: client.clone(),
            retry,
            project: project.to_string(),
            telemetry: telemetry.clone(),
        };
        tasks.push(tokio::spawn(sender.run(cancel.child_token())));
        queues.push(q);
    }
    let boot = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Notifications {
        notifier: Notifier {
            inner: Some(Arc::new(Inner {
                project: project.to_string(),
                queues,
                boot: format!("{boot:x}"),
                seq: AtomicU64::new(1),
                telemetry: telemetry.clone(),
            })),
        },
        tasks,
    }
}
