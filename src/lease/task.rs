//! The lease's shell: sends what [`Core`] decides to each node's engine, each request in a
//! task of its own with its own deadline, and hands the outcomes back. It publishes the
//! acting window to the loop (a watch channel), the lease as seen to telemetry, and the
//! changes to the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{Core, Note, Op, Outcome, Renewal, View, majority};
use super::{
    LABEL_LEASE, LeaseConfig, LeaseNode, Seen, Validity, container_name, renewal, seen_in, view_of,
};
use crate::engine::connect::{self, Endpoint};
use crate::engine::model::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
use crate::engine::{Client, Credentials, Engine, Kind};
use crate::telemetry::{LeaseRecord, Telemetry};

/// What the task is started with.
pub(super) struct Setup {
    pub project: String,
    pub holder: String,
    pub scope: Option<String>,
    pub images: Vec<String>,
    pub credentials: Credentials,
    pub config: LeaseConfig,
    pub telemetry: Telemetry,
    pub tx: watch::Sender<Option<Validity>>,
    pub observed: Arc<AtomicU64>,
}

/// What the requests on every node share.
struct Ctx {
    project: String,
    name: String,
    holder: String,
    scope: Option<String>,
    images: Vec<String>,
    credentials: Credentials,
    config: LeaseConfig,
    /// Each node's image for lease containers, once found.
    image: Vec<Mutex<Option<String>>>,
    endpoints: Vec<Endpoint>,
}

enum Event {
    Connected(Client),
    /// A request's outcome, and when it was sent.
    Done(Outcome, Option<String>, Instant),
}

pub(super) struct Task {
    setup: Setup,
}

/// What was last said, so each change is logged once.
#[derive(Default)]
struct Said {
    acting: Option<u64>,
    waiting_for: Option<(String, u64)>,
    errors: HashMap<usize, String>,
    record: Option<LeaseRecord>,
}

impl Task {
    pub fn new(setup: Setup) -> Task {
        Task { setup }
    }

    pub async fn run(self, nodes: Vec<LeaseNode>, cancel: CancellationToken) {
        let n = nodes.len();
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let s = &self.setup;
        let ctx = Arc::new(Ctx {
            name: container_name(&s.project),
            project: s.project.clone(),
            holder: s.holder.clone(),
            scope: s.scope.clone(),
            images: s.images.clone(),
            credentials: s.credentials.clone(),
            config: s.config,
            image: (0..n).map(|_| Mutex::new(None)).collect(),
            endpoints: nodes.iter().map(|n| n.endpoint.clone()).collect(),
        });
        let mut core = Core::new(s.holder.clone(), s.config.timing(), n);
        // Nothing goes to a node before it is connected.
        for node in &mut core.nodes {
            node.busy = true;
        }
        let (events, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
        let mut spawned = Vec::new();
        for (i, node) in nodes.into_iter().enumerate() {
            let events = events.clone();
            spawned.push(tokio::spawn(async move {
                if let Some(c) = node.engine.await {
                    let _ = events.send((i, Event::Connected(c)));
                }
            }));
        }
        let mut clients: Vec<Option<Client>> = vec![None; n];
        let mut said = Said::default();
        loop {
            let now = Instant::now();
            core.observed = core.observed.max(s.observed.load(Ordering::SeqCst));
            let mut notes = Vec::new();
            let ops = core.round(now, &mut notes);
            self.say(&notes, &names);
            for (i, op) in ops {
                let Some(client) = clients[i].clone() else {
                    continue;
                };
                let (ctx, events) = (ctx.clone(), events.clone());
                spawned.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    let (outcome, error) = send(&ctx, i, &client, op).await;
                    let _ = events.send((i, Event::Done(outcome, error, sent)));
                }));
            }
            spawned.retain(|t| !t.is_finished());
            let wake = self.publish(&core, &names, &mut said);
            let due = [core.next_due(), wake]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + s.config.interval());
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => {
                    let Some((i, ev)) = ev else { break };
                    match ev {
                        Event::Connected(c) => {
                            clients[i] = Some(c);
                            core.nodes[i].busy = false;
                        }
                        Event::Done(outcome, error, sent) => {
                            let mut notes = Vec::new();
                            core.apply_sent(i, outcome, Instant::now(), sent, &mut notes);
                            self.say(&notes, &names);
                            self.say_error(&mut said, i, &names[i], error);
                        }
                    }
                }
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        s.tx.send_replace(None);
        for t in &spawned {
            t.abort();
        }
        self.release_all(&ctx, &core, &clients).await;
    }

    /// Stopped acting: mark every grant released, all nodes at once.
    async fn release_all(&self, ctx: &Ctx, core: &Core, clients: &[Option<Client>]) {
        let now = Instant::now();
        let releases = core.nodes.iter().enumerate().filter_map(|(i, node)| {
            let g = node.grant.as_ref()?;
            let client = clients[i].as_ref()?;
            let clean = g.clean_at <= now;
            Some(async move {
                // A loaded engine can take a second or more per request; shutdown has
                // the engine's stop grace (10 s) to spend, and a lease left unreleased
                // costs the next drover a ttl.
                tokio::time::timeout(
                    RELEASE_TIMEOUT,
                    client.update_container(&g.id, released(clean)),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            })
        });
        let done = futures::future::join_all(releases).await;
        if done.iter().any(|ok| *ok) {
            info!(action = "lease-released", project = %ctx.project, nodes = done.iter().filter(|ok| **ok).count(), "lease released");
        } else if !done.is_empty() {
            debug!(project = %ctx.project, "could not release the lease; it expires");
        }
    }

    fn say(&self, notes: &[Note], names: &[String]) {
        let project = &self.setup.project;
        for note in notes {
            match note {
                Note::Takeover {
                    node,
                    holder,
                    reason,
                    silent,
                } => warn!(
                    action = "lease-takeover",
                    project = %project,
                    node = %names[*node],
                    reason = %reason,
                    holder = %holder,
                    duration_ms = silent.as_millis() as u64,
                    "taking over the lease on this node"
                ),
                Note::SteppedDown { seen, own } => warn!(
                    action = "lease-lost",
                    project = %project,
                    reason = "higher-term",
                    term = *own,
                    seen_term = *seen,
                    "another drover shows a newer term; stopped acting and let the lease go"
                ),
                Note::GrantLost { node } => info!(
                    action = "lease-grant-lost",
                    project = %project,
                    node = %names[*node],
                    "our lease container on this node was removed or taken over"
                ),
                Note::Campaign { term } => info!(
                    action = "lease-campaign",
                    project = %project,
                    term = *term,
                    "taking the lease on the nodes that are free"
                ),
            }
        }
    }

    fn say_error(&self, said: &mut Said, i: usize, node: &str, error: Option<String>) {
        match error {
            Some(e) if said.errors.get(&i) != Some(&e) => {
                warn!(action = "lease", project = %self.setup.project, node = %node, error = %e, "cannot use the lease on this node");
                said.errors.insert(i, e);
            }
            Some(_) => {}
            None => {
                said.errors.remove(&i);
            }
        }
    }

    /// The window to the loop, the lease to telemetry, changes to the log. Returns when to
    /// look again for the window's own sake (its start, its end).
    fn publish(&self, core: &Core, names: &[String], said: &mut Said) -> Option<Instant> {
        let s = &self.setup;
        let now = Instant::now();
        let window = core.window(now);
        let v = window.map(|w| Validity {
            from: w.from,
            until: w.until,
            term: w.term,
            confirmed: w.confirmed,
        });
        s.tx.send_if_modified(|old| {
            let changed = *old != v;
            *old = v;
            changed
        });
        let acting = core.acting(now);
        match (said.acting, window) {
            (None, Some(w)) => {
                let granted: Vec<&str> = core
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.grant.is_some())
                    .map(|(i, _)| names[i].as_str())
                    .collect();
                info!(
                    action = "lease-acquired",
                    project = %s.project,
                    term = w.term,
                    nodes = %granted.join(","),
                    delay_ms = w.from.saturating_duration_since(now).as_millis() as u64,
                    "lease acquired"
                );
                said.acting = Some(w.term);
                said.waiting_for = None;
            }
            (Some(term), None) => {
                warn!(action = "lease-lost", project = %s.project, reason = "no-majority", term, "the lease no longer counts on a majority of nodes; stopped acting");
                said.acting = None;
            }
            _ => {}
        }
        if window.is_none()
            && let Some((holder, term, _)) = core.leader(now)
            && said.waiting_for.as_ref() != Some(&(holder.clone(), term))
        {
            info!(action = "lease-wait", project = %s.project, holder = %holder, term, "another drover holds the lease; standing by");
            said.waiting_for = Some((holder, term));
        }
        let leader = core.leader(now);
        let record = LeaseRecord {
            leader: leader.as_ref().map(|l| l.0.clone()),
            term: leader.as_ref().map(|l| l.1),
            me: s.holder.clone(),
            granted: core
                .granted(now)
                .into_iter()
                .map(|i| names[i].clone())
                .collect(),
            node_names: names.to_vec(),
            nodes: names.len(),
            majority: majority(names.len()),
            standby: core.standby_reason(now, names),
        };
        if said.record.as_ref() != Some(&record) {
            s.telemetry.lease(record.clone());
            said.record = Some(record);
        }
        let _ = acting;
        window.map(|w| if w.from > now { w.from } else { w.until })
    }
}

/// How long a release on shutdown may wait for each node.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The restart policy that marks a lease container released.
fn released(clean: bool) -> ContainerUpdateBody {
    ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(if clean {
                RestartPolicyNameEnum::NO
            } else {
                RestartPolicyNameEnum::UNLESS_STOPPED
            }),
            maximum_retry_count: Some(0),
        }),
        ..Default::default()
    }
}

/// Send `op` to node `i`; the outcome, and an error worth saying.
async fn send(ctx: &Ctx, i: usize, d: &Client, op: Op) -> (Outcome, Option<String>) {
    let deadline = ctx.config.request_timeout();
    let explain = |e: &crate::engine::EngineError| connect::explain(&ctx.endpoints[i], e);
    match op {
        Op::Look => match tokio::time::timeout(deadline, d.inspect_container(&ctx.name)).await {
            Err(_) => (Outcome::Looked(None), Some("no answer in time".into())),
            Ok(Err(e)) if e.is_not_found() => (Outcome::Looked(Some(View::Absent)), None),
            Ok(Err(e)) => (Outcome::Looked(None), Some(explain(&e))),
            Ok(Ok(c)) => {
                let seen = seen_in(c, &ctx.project);
                let error = (seen == Seen::Foreign).then(|| {
                    format!(
                        "a container named {} exists without the label {LABEL_LEASE}={}; remove it to let this node hold lease votes",
                        ctx.name, ctx.project
                    )
                });
                let view = view_of(seen, ctx.scope.as_deref(), &ctx.holder);
                (Outcome::Looked(Some(view)), error)
            }
        },
        Op::Renew { id, counter } => {
            let sent = Instant::now();
            let body = renewal(counter);
            let result = match tokio::time::timeout(deadline, d.update_container(&id, body)).await {
                Ok(Ok(())) => Renewal::Ok,
                Ok(Err(e)) if e.kind == Kind::NotFound => Renewal::Gone,
                Ok(Err(e)) => {
                    debug!(project = %ctx.project, error = %e, "lease renewal failed");
                    Renewal::Failed
                }
                Err(_) => {
                    debug!(project = %ctx.project, "lease renewal timed out");
                    Renewal::Failed
                }
            };
            (Outcome::Renewed { sent, result }, None)
        }
        Op::Take {
            replace,
            term,
            clean_at,
            ..
        } => {
            let (sent, result) = take(ctx, i, d, replace.as_deref(), term).await;
            let error = result.as_ref().err().cloned();
            (
                Outcome::Took {
                    sent,
                    result,
                    term,
                    clean_at,
                },
                error,
            )
        }
        Op::Release { id, clean } => {
            let _ = tokio::time::timeout(deadline, d.update_container(&id, released(clean))).await;
            (Outcome::Released, None)
        }
    }
}

/// Remove `replace` by id (if any) and create our lease container with `term`: its id,
/// `None` when another drover was quicker. Also returns when the create was sent.
async fn take(
    ctx: &Ctx,
    i: usize,
    d: &Client,
    replace: Option<&str>,
    term: u64,
) -> (Instant, Result<Option<String>, String>) {
    let deadline = ctx.config.request_timeout();
    let explain = |e: &crate::engine::EngineError| connect::explain(&ctx.endpoints[i], e);
    if let Some(id) = replace {
        match tokio::time::timeout(deadline, d.remove_container(id, false)).await {
            Err(_) => return (Instant::now(), Err("no answer in time".into())),
            Ok(Ok(())) => {}
            // Already gone or being removed: someone else was quicker.
            Ok(Err(e)) if e.is_not_found() || e.is_conflict() => {
                return (Instant::now(), Ok(None));
            }
            Ok(Err(e)) => return (Instant::now(), Err(explain(&e))),
        }
    }
    let image = match image(ctx, i, d).await {
        Ok(image) => image,
        Err(e) => return (Instant::now(), Err(e)),
    };
    let body = super::container_body(&ctx.project, &ctx.holder, ctx.scope.as_deref(), term, image);
    let sent = Instant::now();
    let r =
        match tokio::time::timeout(deadline * 2, d.create_container(&ctx.name, None, body)).await {
            Err(_) => Err("no answer in time".into()),
            Ok(Ok(id)) => Ok(Some(id)),
            Ok(Err(e)) if e.is_conflict() => Ok(None),
            Ok(Err(e)) => {
                // The image may have been removed since: look for one again next time.
                *ctx.image[i].lock().unwrap() = None;
                Err(format!(
                    "cannot create the lease container {}: {}",
                    ctx.name,
                    explain(&e)
                ))
            }
        };
    (sent, r)
}

/// An image present on node `i`: one of the project's if possible; pulls the project's
/// first image when the engine has none at all.
async fn image(ctx: &Ctx, i: usize, d: &Client) -> Result<String, String> {
    if let Some(image) = ctx.image[i].lock().unwrap().clone() {
        return Ok(image);
    }
    let listed = tokio::time::timeout(ctx.config.request_timeout() * 2, d.list_images())
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| connect::explain(&ctx.endpoints[i], &e))?;
    let mut found = None;
    for want in &ctx.images {
        let full = if want.contains(':') || want.contains('@') {
            want.clone()
        } else {
            format!("{want}:latest")
        };
        if let Some(img) = listed
            .iter()
            .find(|i| i.repo_tags.iter().any(|t| *t == full || t == want))
        {
            found = Some(img.id.clone());
            break;
        }
    }
    let image = match found.or_else(|| listed.first().map(|i| i.id.clone())) {
        Some(image) => image,
        None => {
            let Some(want) = ctx.images.first() else {
                return Err("no image on the node to create the lease container from".into());
            };
            d.pull(want, None, &ctx.credentials)
                .await
                .map_err(|e| format!("pull {want} for the lease container: {e}"))?;
            want.clone()
        }
    };
    *ctx.image[i].lock().unwrap() = Some(image.clone());
    Ok(image)
}
