//! One engine's event stream, used only to decide *when* to reconcile, in both modes:
//! plain mode watches the project's containers ([`Watched::Containers`]), Swarm mode the
//! swarm's services and nodes ([`Watched::Swarm`]).
//!
//! Recovery: a stream that ends or fails is reopened with capped exponential backoff
//! and jitter, resuming with `since` at the last event seen so nothing in between
//! is missed; a stream silent past the watchdog limit is treated as dead and
//! reopened (an idle engine sends nothing, and a half-open TCP connection sends
//! nothing either: reopening tells the two apart). Every (re)connection pokes
//! the controller, which then lists the engine: events lost in any gap are
//! covered by that list.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::connect::{self, Endpoint};
use crate::engine::{Client, Engine, Filters};
use crate::labels::LABEL_PROJECT;
use crate::telemetry::Telemetry;

/// What the event watcher hands the controller: a wake-up, and the ids of the
/// containers that changed.
///
/// The ids matter because the engine announces an exit (`die`) before its container
/// list reflects it: a list taken right after the event can still say `running`.
/// Inspecting the named containers reads their live state.
#[derive(Debug, Default)]
pub struct Trigger {
    notify: Notify,
    changed: Mutex<HashSet<String>>,
    killed: Mutex<HashSet<String>>,
    /// The node whose event stream named each changed container.
    origin: Mutex<HashMap<String, String>>,
    /// Nodes whose event stream (re)opened without resuming where it left off: what they
    /// hold must be listed again.
    relist: Mutex<HashSet<String>>,
}

impl Trigger {
    /// Wake the controller, noting which container changed (if any) and whether the
    /// change was a `kill` sent through the API (`docker kill`, `docker stop`): the exit
    /// that follows is someone's doing, not a crash, and must not count toward backoff.
    pub fn poke(&self, container: Option<&str>, action: &str) {
        if let Some(id) = container {
            if let Ok(mut set) = self.changed.lock() {
                set.insert(id.to_string());
            }
            if action == "kill"
                && let Ok(mut set) = self.killed.lock()
            {
                set.insert(id.to_string());
            }
        }
        self.notify.notify_one();
    }

    /// A container event from `node`'s stream: as [`Trigger::poke`], remembering the node
    /// (the loop inspects the container there, instead of listing every node).
    pub fn event(&self, node: &str, container: &str, action: &str) {
        if let Ok(mut map) = self.origin.lock() {
            map.insert(container.to_string(), node.to_string());
        }
        self.poke(Some(container), action);
    }

    /// `node`'s events may have been missed (its stream opened, or reopened after a
    /// failure): wake the loop, which lists that node again.
    pub fn relist(&self, node: &str) {
        if let Ok(mut set) = self.relist.lock() {
            set.insert(node.to_string());
        }
        self.notify.notify_one();
    }

    /// The node each changed container was named on, since the last call.
    pub fn take_origin(&self) -> HashMap<String, String> {
        self.origin
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// The nodes to list again, since the last call.
    pub fn take_relist(&self) -> HashSet<String> {
        self.relist
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// The containers killed through the API since the last call.
    pub fn take_killed(&self) -> HashSet<String> {
        self.killed
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// Wait for the next poke (one stored poke is returned at once).
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    /// The containers changed since the last call.
    pub fn take_changed(&self) -> HashSet<String> {
        self.changed
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// What a stream watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The containers labelled with this project.
    Containers { project: String },
    /// The swarm's services and nodes (Swarm sends no task events; the loop lists tasks).
    Swarm,
}

impl Watched {
    fn filters(&self) -> Filters {
        match self {
            Watched::Containers { project } => HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{LABEL_PROJECT}={project}")],
                ),
            ]),
            Watched::Swarm => HashMap::from([(
                "type".to_string(),
                vec!["service".to_string(), "node".to_string()],
            )]),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventWatchConfig {
    pub project: String,
    pub watched: Watched,
    /// A stream silent this long is reopened.
    pub watchdog: Duration,
    /// Longest wait between reconnection attempts.
    pub retry_max: Duration,
    /// The engine, for logs and error messages.
    pub endpoint: Endpoint,
    /// The node's name, for logs.
    pub node: String,
    /// Poked when the stream breaks (the node monitor pings at once).
    pub on_error: Option<Arc<Notify>>,
    /// Told of every event received (the node monitor counts it as an answer).
    pub heard: Option<Arc<Heard>>,
    /// Where stream health (opens, events and their lag, failures) is recorded.
    pub telemetry: Telemetry,
}

/// When an engine last answered on its event stream: an engine that streams events is
/// alive, even when a burst of work makes its pings come late.
#[derive(Debug)]
pub struct Heard {
    base: Instant,
    /// Milliseconds after `base`, plus one (0: never).
    at: AtomicU64,
}

impl Default for Heard {
    fn default() -> Heard {
        Heard {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }
}

impl Heard {
    /// The engine answered now.
    pub fn now(&self) {
        let ms = self.base.elapsed().as_millis() as u64 + 1;
        self.at.fetch_max(ms, Ordering::Relaxed);
    }

    /// When it last answered, if ever.
    pub fn last(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

/// Watches one engine's events for one project and pokes `notify` on every relevant one.
pub struct EventWatch {
    engine: Client,
    cfg: EventWatchConfig,
    trigger: Arc<Trigger>,
    /// The engine's address, for logs.
    address: String,
    /// Last event time seen, as `secs.nanos` for `since`.
    since: Option<String>,
}

impl EventWatch {
    /// `engine`: a [`Client`], or the connected client [`connect::connect`] returns.
    pub fn new(engine: impl Into<Client>, cfg: EventWatchConfig, trigger: Arc<Trigger>) -> Self {
        EventWatch {
            address: cfg.endpoint.display(),
            engine: engine.into(),
            cfg,
            trigger,
            since: None,
        }
    }

    /// Run until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut failures: u32 = 0;
        let mut lost = false;
        // Whether the next stream resumes where a healthy one left off (`since`).
        let mut resume = false;
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                o = self.stream_once(&mut lost, &mut failures, resume) => o,
            };
            resume = outcome.is_ok();
            match outcome {
                Ok(()) => {
                    // Watchdog expiry or a clean end: reopen at once.
                    debug!(engine = %self.address, "event stream reopened");
                }
                Err(e) => {
                    if let Some(p) = &self.cfg.on_error {
                        p.notify_one();
                    }
                    failures = failures.saturating_add(1);
                    self.cfg.telemetry.stream_lost(&self.cfg.node, &e);
                    if !lost {
                        lost = true;
                        warn!(
                            action = "events",
                            node = %self.cfg.node,
                            engine = %self.address,
                            project = %self.cfg.project,
                            error = %e,
                            "event stream lost; reconnecting with backoff"
                        );
                    }
                    let delay = retry_delay(failures, self.cfg.retry_max);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Open the stream and follow it until it fails, ends or goes silent too long.
    /// `resume`: the last stream was healthy (it went silent past the watchdog), so this one
    /// picks up with `since` where it left off and nothing needs listing again.
    async fn stream_once(
        &mut self,
        lost: &mut bool,
        failures: &mut u32,
        resume: bool,
    ) -> Result<(), String> {
        let filters = self.cfg.watched.filters();
        // Ping first: an engine that answers is reachable again even if it stays idle.
        self.engine
            .ping()
            .await
            .map_err(|e| connect::explain(&self.cfg.endpoint, &e))?;
        *failures = 0;
        self.cfg.telemetry.stream_connected(&self.cfg.node);
        if *lost {
            *lost = false;
            info!(
                action = "events",
                node = %self.cfg.node,
                engine = %self.address,
                project = %self.cfg.project,
                "event stream restored"
            );
        }
        // Whatever happened while the stream was closed, a fresh list covers it. Reopened
        // after a healthy silence with `since`, the engine replays what happened meanwhile.
        match self.cfg.watched {
            Watched::Containers { .. } if resume && self.since.is_some() => {}
            Watched::Containers { .. } => self.trigger.relist(&self.cfg.node),
            Watched::Swarm => self.trigger.poke(None, ""),
        }
        let mut stream = self.engine.events(self.since.clone(), None, filters);
        loop {
            let ev = match tokio::time::timeout(self.cfg.watchdog, stream.next()).await {
                Err(_) => {
                    debug!(engine = %self.address, "event stream silent past the watchdog");
                    return Ok(());
                }
                Ok(None) => return Err("the engine closed the event stream".into()),
                Ok(Some(Err(e))) => return Err(connect::explain(&self.cfg.endpoint, &e)),
                Ok(Some(Ok(ev))) => ev,
            };
            if let (Some(s), Some(n)) = (ev.time, ev.time_nano) {
                self.since = Some(format!("{s}.{:09}", n.rem_euclid(1_000_000_000)));
            }
            if let Some(h) = &self.cfg.heard {
                h.now();
            }
            self.cfg
                .telemetry
                .stream_event(&self.cfg.node, ev.time_nano);
            let action = ev.action.as_deref().unwrap_or("");
            // Health checks run an exec every interval: not a change in the count.
            if action.starts_with("exec_") {
                continue;
            }
            // Only containers are named to the loop (it inspects them, on this node); a
            // service or node event is a wake-up.
            let id = match self.cfg.watched {
                Watched::Containers { .. } => ev.actor.as_ref().and_then(|a| a.id.as_deref()),
                Watched::Swarm => None,
            };
            debug!(engine = %self.address, event = action, "engine event");
            match id {
                Some(id) => self.trigger.event(&self.cfg.node, id, action),
                None => self.trigger.poke(None, action),
            }
        }
    }
}

/// Capped exponential backoff with jitter: 100 ms, 200 ms, ... up to `max`.
fn retry_delay(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << failures.min(16));
    let capped = base.min(max);
    // Jitter in [50%, 100%] without a random crate: the clock's nanoseconds are enough.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let frac = 0.5 + (nanos % 1000) as f64 / 2000.0;
    capped.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;
    use crate::engine::model::ContainerCreateBody;

    /// The watcher names the project's containers that changed, tells a kill through the
    /// API from a crash, and never names another project's.
    #[tokio::test]
    async fn names_the_changed_containers_of_the_project() {
        let fake = Arc::new(FakeEngine::default());
        let trigger = Arc::new(Trigger::default());
        let heard = Arc::new(Heard::default());
        let cfg = EventWatchConfig {
            project: "p".into(),
            watched: Watched::Containers {
                project: "p".into(),
            },
            watchdog: Duration::from_secs(60),
            retry_max: Duration::from_secs(1),
            endpoint: Endpoint::new(crate::engine::connect::Transport::Tcp("fake:2375".into())),
            node: "n1".into(),
            on_error: None,
            heard: Some(heard.clone()),
            telemetry: Telemetry::new("p", Duration::from_secs(60), None),
        };
        let cancel = CancellationToken::new();
        let watch = EventWatch::new(Client::from(fake.clone()), cfg, trigger.clone());
        tokio::spawn(watch.run(cancel.clone()));
        // The poke after the stream (re)opens.
        trigger.wait().await;
        assert!(trigger.take_changed().is_empty());
        assert_eq!(heard.last(), None, "nothing streamed yet");

        let body = |project: &str| ContainerCreateBody {
            labels: Some(HashMap::from([(LABEL_PROJECT.to_string(), project.into())])),
            ..Default::default()
        };
        let ours = fake
            .create_container("p-web-1", None, body("p"))
            .await
            .unwrap();
        let theirs = fake
            .create_container("q-web-1", None, body("q"))
            .await
            .unwrap();
        fake.start_container(&theirs).await.unwrap();
        fake.start_container(&ours).await.unwrap();
        fake.kill("p-web-1");
        let mut changed = HashSet::new();
        let mut killed = HashSet::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while killed.is_empty() {
                trigger.wait().await;
                changed.extend(trigger.take_changed());
                killed.extend(trigger.take_killed());
            }
        })
        .await
        .expect("the kill was seen");
        cancel.cancel();
        assert_eq!(changed, HashSet::from([ours.clone()]));
        assert_eq!(killed, HashSet::from([ours]));
        // Every event is an answer from the engine, told to the node monitor.
        assert!(heard.last().is_some());
        let calls = fake.take_calls();
        assert_eq!(
            calls[..2],
            ["ping ", "events label=drover.project=p type=container"]
        );
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        assert!(retry_delay(1, max) <= Duration::from_millis(200));
        assert!(retry_delay(1, max) >= Duration::from_millis(100));
        assert!(retry_delay(30, max) <= max);
        assert!(retry_delay(30, max) >= max / 2);
    }
}
