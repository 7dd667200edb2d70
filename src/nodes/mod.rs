//! Nodes: the engines a project runs on, and whether each one is up.
//!
//! Every node has a monitor task that connects (and keeps reconnecting), pings on a short
//! interval, follows the node's event stream, and publishes a [`NodeStatus`]. A node is
//! declared down when no ping has succeeded for `down_after` (a broken event stream
//! triggers a ping at once, and a half-open connection that stays silent fails its pings
//! the same way); it is up again at the first ping that succeeds. Each transition is one
//! log event and wakes the controller.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Availability, NodeConfig};
use crate::engine::connect::{self, ConnectError, Endpoint};
use crate::engine::{Client, Engine};
use crate::runtime::{EventWatch, EventWatchConfig, Heard, Trigger, Watched};
use crate::telemetry::Telemetry;

/// The name of the single node taken from the Docker environment when the Compose file
/// lists no nodes.
pub const DEFAULT_NODE: &str = "default";

/// A node to manage: its name, how to reach it, its configured labels.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub endpoint: Endpoint,
    pub labels: BTreeMap<String, String>,
    /// `availability` in the file: whether new replicas may go there.
    pub availability: Availability,
}

impl NodeSpec {
    /// The nodes of `x-drover.nodes`, or the one node of the Docker environment.
    pub fn from_config(
        nodes: &[NodeConfig],
        env_endpoint: &Endpoint,
        env: &HashMap<String, String>,
    ) -> Result<Vec<NodeSpec>, ConnectError> {
        if nodes.is_empty() {
            return Ok(vec![NodeSpec {
                name: DEFAULT_NODE.into(),
                endpoint: env_endpoint.clone(),
                labels: BTreeMap::new(),
                availability: Availability::Active,
            }]);
        }
        nodes
            .iter()
            .filter(|n| !n.witness)
            .map(|n| Self::from_node(n, env))
            .collect()
    }

    /// The witnesses of `x-drover.nodes`: engines that hold lease votes and run nothing.
    pub fn witnesses(
        nodes: &[NodeConfig],
        env: &HashMap<String, String>,
    ) -> Result<Vec<NodeSpec>, ConnectError> {
        nodes
            .iter()
            .filter(|n| n.witness)
            .map(|n| Self::from_node(n, env))
            .collect()
    }

    fn from_node(n: &NodeConfig, env: &HashMap<String, String>) -> Result<NodeSpec, ConnectError> {
        Ok(NodeSpec {
            name: n.name.clone(),
            endpoint: Endpoint::for_node(
                &n.name,
                &n.host,
                n.tls.as_ref(),
                n.tls_server_name.as_deref(),
                env,
            )?,
            labels: n.labels.clone(),
            availability: n.availability,
        })
    }
}

/// Health checking settings.
#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    /// A node whose pings have all failed for this long is down.
    pub down_after: Duration,
    /// Ping period.
    pub interval: Duration,
    /// One ping's deadline.
    pub ping_timeout: Duration,
}

impl HealthConfig {
    /// Settings that declare a dead node down within about `down_after` + one interval.
    pub fn with_down_after(down_after: Duration) -> Self {
        let interval = (down_after / 3).clamp(Duration::from_millis(100), Duration::from_secs(5));
        HealthConfig {
            down_after,
            interval,
            ping_timeout: down_after.max(Duration::from_millis(200)),
        }
    }
}

/// What is known about a node right now.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The first connection attempt has finished (either way).
    pub attempted: bool,
    pub up: bool,
    /// The engine, once connected.
    pub engine: Option<Client>,
    /// The engine's ID from `/info`.
    pub engine_id: Option<String>,
    /// Configured labels over the engine's own.
    pub labels: BTreeMap<String, String>,
    /// Why the node is down, when it is.
    pub error: Option<String>,
    /// When it was found down (the monitor's clock), while it is down.
    pub down_at: Option<Instant>,
    /// The node's events reach the loop (its monitor runs an event stream that names the
    /// containers that change, and asks for a list when it opens): what was observed there
    /// can be kept and patched. Without it every pass lists the node.
    pub watched: bool,
}

/// A running node monitor.
#[derive(Clone)]
pub struct NodeHandle {
    pub name: String,
    pub endpoint: Endpoint,
    /// The node's configured labels and availability as the file says them now (a reload
    /// changes them; its monitor keeps the labels it connected with).
    pub config: NodeSpec,
    status: watch::Receiver<NodeStatus>,
}

impl NodeHandle {
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A node that is always up on `engine`, with no monitor: no connecting, pinging or
    /// event stream (whoever builds it pokes the loop). For running the controller over
    /// engines a test provides; the caller registers the node with telemetry.
    pub fn fixed(spec: NodeSpec, engine: Client) -> NodeHandle {
        NodeHandle::fixed_node(spec, engine, false)
    }

    /// As [`NodeHandle::fixed`], for a caller that delivers the node's events itself
    /// (through the loop's [`Trigger`], naming the node): its observed state is kept and
    /// patched from the containers events name, and listed again when asked or due.
    pub fn fixed_watched(spec: NodeSpec, engine: Client) -> NodeHandle {
        NodeHandle::fixed_node(spec, engine, true)
    }

    /// As [`NodeHandle::fixed`], with the sender of its status: a test takes it down and
    /// up again.
    #[cfg(test)]
    pub(crate) fn switchable(
        spec: NodeSpec,
        engine: Client,
    ) -> (NodeHandle, watch::Sender<NodeStatus>) {
        let (tx, status) = watch::channel(NodeStatus {
            attempted: true,
            up: true,
            engine: Some(engine),
            engine_id: None,
            labels: spec.labels.clone(),
            error: None,
            down_at: None,
            watched: false,
        });
        let handle = NodeHandle {
            name: spec.name.clone(),
            endpoint: spec.endpoint.clone(),
            config: spec,
            status,
        };
        (handle, tx)
    }

    fn fixed_node(spec: NodeSpec, engine: Client, watched: bool) -> NodeHandle {
        let (_, status) = watch::channel(NodeStatus {
            attempted: true,
            up: true,
            engine: Some(engine),
            engine_id: None,
            labels: spec.labels.clone(),
            error: None,
            down_at: None,
            watched,
        });
        NodeHandle {
            name: spec.name.clone(),
            endpoint: spec.endpoint.clone(),
            config: spec,
            status,
        }
    }

    /// The node's engine once its monitor has connected (`None`: the monitor ended
    /// before it did). The monitor keeps that one client: it reconnects per request.
    pub fn engine(&self) -> impl Future<Output = Option<Client>> + Send + 'static {
        let mut status = self.status.clone();
        async move {
            let connected = status.wait_for(|s| s.engine.is_some()).await;
            connected.ok().and_then(|s| s.engine.clone())
        }
    }

    /// Resolves when the node is found down (at once if it is down now); never for a node
    /// without a monitor. Work on the node still in flight can be abandoned then: a
    /// partitioned engine would hold it until its own timeouts.
    pub fn went_down(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.status.clone();
        async move {
            if status.wait_for(|s| s.attempted && !s.up).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wait until the first connection attempt finished, or `deadline` passed.
    pub async fn first_attempt(&mut self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, self.status.wait_for(|s| s.attempted)).await;
    }
}

/// Start monitoring `spec`. The monitor task (which joins the node's event stream) ends
/// promptly on `cancel`: whoever started it joins it at shutdown.
pub fn spawn(
    spec: NodeSpec,
    health: HealthConfig,
    project: String,
    watchdog: Duration,
    trigger: Arc<Trigger>,
    telemetry: Telemetry,
    cancel: CancellationToken,
) -> (NodeHandle, JoinHandle<()>) {
    telemetry.add_node(&spec.name);
    let (tx, rx) = watch::channel(NodeStatus {
        attempted: false,
        up: false,
        engine: None,
        engine_id: None,
        labels: spec.labels.clone(),
        error: None,
        down_at: None,
        watched: false,
    });
    let handle = NodeHandle {
        name: spec.name.clone(),
        endpoint: spec.endpoint.clone(),
        config: spec.clone(),
        status: rx,
    };
    let monitor = Monitor {
        spec,
        health,
        project,
        watchdog,
        trigger,
        telemetry,
        tx,
        poke: Arc::new(Notify::new()),
        heard: Arc::new(Heard::default()),
    };
    (handle, tokio::spawn(monitor.run(cancel)))
}

struct Monitor {
    spec: NodeSpec,
    health: HealthConfig,
    project: String,
    watchdog: Duration,
    trigger: Arc<Trigger>,
    telemetry: Telemetry,
    tx: watch::Sender<NodeStatus>,
    poke: Arc<Notify>,
    /// When the node's event stream last delivered an event.
    heard: Arc<Heard>,
}

impl Monitor {
    /// Monitor until `cancel` (a connect or ping under way is dropped), then join the
    /// event stream's task.
    async fn run(self, cancel: CancellationToken) {
        let mut events: Option<JoinHandle<()>> = None;
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.monitor(&cancel, &mut events) => {}
        }
        if let Some(events) = events {
            let _ = events.await;
        }
    }

    async fn monitor(&self, cancel: &CancellationToken, events: &mut Option<JoinHandle<()>>) {
        let name = self.spec.name.clone();
        let mut client: Option<Client> = None;
        let mut last_ok: Option<Instant> = None;
        let mut down_since_start = Instant::now();
        let mut said_error: Option<String> = None;
        loop {
            let result: Result<(), String> = match &client {
                None => match connect::connect(&self.spec.endpoint).await {
                    Ok(d) => {
                        let d = Client::from(d);
                        *events = Some(self.connected(&d, cancel).await);
                        client = Some(d);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                },
                Some(d) => self.ping(d).await,
            };
            let was_up = self.tx.borrow().up;
            match result {
                Ok(()) => {
                    last_ok = Some(Instant::now());
                    said_error = None;
                    if !was_up {
                        let status = self.tx.borrow().clone();
                        info!(
                            action = "node-up",
                            project = %self.project,
                            node = %name,
                            engine = %self.spec.endpoint.display(),
                            engine_id = status.engine_id.as_deref().unwrap_or(""),
                            "node up"
                        );
                        self.tx.send_modify(|s| {
                            s.up = true;
                            s.attempted = true;
                            s.error = None;
                            s.down_at = None;
                        });
                        self.trigger.poke(None, "");
                    }
                }
                Err(e) => {
                    let silent_for =
                        silent_for(last_ok, self.heard.last(), down_since_start, Instant::now());
                    if was_up && silent_for >= self.health.down_after {
                        warn!(
                            action = "node-down",
                            project = %self.project,
                            node = %name,
                            engine = %self.spec.endpoint.display(),
                            duration_ms = silent_for.as_millis() as u64,
                            error = %e,
                            "node down"
                        );
                        self.tx.send_modify(|s| {
                            s.up = false;
                            s.error = Some(e.clone());
                            s.down_at = Some(Instant::now());
                        });
                        said_error = Some(e);
                        down_since_start = Instant::now();
                        self.trigger.poke(None, "");
                    } else if !was_up && said_error.as_deref() != Some(e.as_str()) {
                        warn!(
                            action = "node-down",
                            project = %self.project,
                            node = %name,
                            engine = %self.spec.endpoint.display(),
                            error = %e,
                            "node unreachable"
                        );
                        self.tx.send_modify(|s| {
                            s.error = Some(e.clone());
                            s.attempted = true;
                            s.down_at.get_or_insert_with(Instant::now);
                        });
                        said_error = Some(e);
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.health.interval) => {}
                _ = self.poke.notified() => {}
            }
        }
    }

    /// A new connection: read the engine's id and labels, start its event stream (its task
    /// returned), and publish the client.
    async fn connected(&self, d: &Client, cancel: &CancellationToken) -> JoinHandle<()> {
        let info = d.info().await.ok();
        let engine_id = info.as_ref().and_then(|i| i.id.clone());
        let mut labels: BTreeMap<String, String> = info
            .and_then(|i| i.labels)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        labels.extend(self.spec.labels.clone());
        let watch = EventWatch::new(
            d.clone(),
            EventWatchConfig {
                project: self.project.clone(),
                watched: Watched::Containers {
                    project: self.project.clone(),
                },
                watchdog: self.watchdog,
                retry_max: Duration::from_secs(5),
                endpoint: self.spec.endpoint.clone(),
                node: self.spec.name.clone(),
                on_error: Some(self.poke.clone()),
                heard: Some(self.heard.clone()),
                telemetry: self.telemetry.clone(),
            },
            self.trigger.clone(),
        );
        let events = tokio::spawn(watch.run(cancel.child_token()));
        self.tx.send_modify(|s| {
            s.engine = Some(d.clone());
            s.engine_id = engine_id;
            s.labels = labels;
            s.watched = true;
        });
        events
    }

    /// One health ping, with its timeout.
    async fn ping(&self, d: &Client) -> Result<(), String> {
        match tokio::time::timeout(self.health.ping_timeout, d.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(connect::explain(&self.spec.endpoint, &e)),
            Err(_) => Err(format!(
                "no answer to a ping from {} within {} ms",
                self.spec.endpoint.url(),
                self.health.ping_timeout.as_millis()
            )),
        }
    }
}

/// How long a node has not answered at `now`: since its last ping that answered or its
/// last event, whichever came later (an event is an answer too: a busy engine streams
/// events while its pings come late); since `since` when neither came.
fn silent_for(
    last_ping: Option<Instant>,
    last_event: Option<Instant>,
    since: Instant,
    now: Instant,
) -> Duration {
    let last = last_ping.max(last_event).unwrap_or(since);
    now.saturating_duration_since(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::connect::Transport;
    use crate::engine::fake::FakeEngine;

    #[test]
    fn a_node_whose_events_flow_is_not_silent_while_its_pings_come_late() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Pings last answered 3 s ago, an event 100 ms ago: silent for 100 ms only.
        let busy = silent_for(Some(at(0)), Some(at(2_900)), at(0), at(3_000));
        assert_eq!(busy, Duration::from_millis(100));
        // No event since the last ping: silent since that ping.
        let dead = silent_for(Some(at(1_000)), Some(at(500)), at(0), at(3_000));
        assert_eq!(dead, Duration::from_millis(2_000));
        // Never answered: since the monitor started waiting.
        let never = silent_for(None, None, at(200), at(3_000));
        assert_eq!(never, Duration::from_millis(2_800));
    }

    #[tokio::test]
    async fn a_fixed_node_is_up_at_once_on_its_engine() {
        let fake = Arc::new(FakeEngine::default());
        let spec = NodeSpec {
            name: "n1".into(),
            endpoint: Endpoint::new(Transport::Tcp("n1:2375".into())),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            availability: Availability::Active,
        };
        let mut node = NodeHandle::fixed(spec, Client::from(fake.clone()));
        node.first_attempt(Duration::from_millis(10)).await;
        let st = node.status();
        assert!(st.attempted && st.up && st.error.is_none());
        assert_eq!(st.labels["zone"], "a");
        st.engine.unwrap().ping().await.unwrap();
        node.engine()
            .await
            .expect("connected")
            .ping()
            .await
            .unwrap();
        assert_eq!(fake.take_calls(), ["ping ", "ping "]);
    }

    /// An engine that accepts connections and never answers: the monitor is still
    /// connecting when cancelled, and ends at once all the same.
    #[tokio::test]
    async fn a_monitor_ends_promptly_on_cancel_even_while_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Notify::new());
        let seen = accepted.clone();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
                seen.notify_one();
            }
        });
        let spec = NodeSpec {
            name: "n1".into(),
            endpoint: Endpoint::new(Transport::Tcp(addr.to_string())),
            labels: BTreeMap::new(),
            availability: Availability::Active,
        };
        let cancel = CancellationToken::new();
        let (node, task) = spawn(
            spec,
            HealthConfig::with_down_after(Duration::from_secs(1)),
            "p".into(),
            Duration::from_secs(60),
            Arc::new(Trigger::default()),
            Telemetry::new("p", Duration::from_secs(60), None),
            cancel.clone(),
        );
        tokio::time::timeout(Duration::from_secs(5), accepted.notified())
            .await
            .expect("the monitor connects");
        assert!(!node.status().attempted, "still waiting for an answer");
        cancel.cancel();
        tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .expect("the monitor ends promptly")
            .unwrap();
        silent.abort();
    }
}
