//! Mutual exclusion between drover processes managing the same project, through a lease
//! held on a majority of the project's nodes.
//!
//! The engines are the only store drovers share, and each offers one atomic primitive: a
//! container name is unique per engine (a second create of the same name fails with 409).
//! On every node that holds lease votes (the project's nodes, witnesses included) the lease
//! is a container named `drover-lease-{project}`, created and never started, labelled
//! `drover.lease=<project>`, `drover.lease.holder=<holder>` and `drover.lease.term=<term>`.
//! It carries no `drover.project` label, so the planner never sees it.
//!
//! - **Grant**: a node grants the lease to the drover whose container it holds. The holder
//!   renews each of its containers every `ttl / 4` by bumping a counter kept in the
//!   container's restart policy (`on-failure:N`, the one field of a stopped container the
//!   engine lets a client change in place), addressing it by id; a 404 means that node's
//!   grant was taken away. A grant counts until `ttl` after the last renewal that succeeded
//!   was *sent*, on the holder's own monotonic clock.
//! - **Majority**: a drover acts only while a strict majority of the nodes' grants count at
//!   once. Requests go to every node concurrently, each with its own deadline, and a node
//!   with a request in flight is skipped, never waited for: one slow node delays nobody.
//! - **Taking a node**: its container is absent, released, held by a process known to have
//!   exited (same machine: the holder's pid is gone), or not renewed for `stale_after` as
//!   the taker watched it. The taker removes it by id and creates its own; a 404 or 409 on
//!   the way means another drover was quicker. A drover takes nodes only while its grants
//!   and the free nodes together make a majority (a drover on the minority side of a
//!   partition touches nothing), and a leader keeps taking free nodes.
//! - **Fencing by time**: a grant taken from a silent holder counts only from `ttl` after
//!   the taker first saw that holder's last counter: the holder's last renewal was sent
//!   before, so its claim on the node has run out by then. A new leader's majority shares
//!   a node with any earlier leader's, so the two never act at once.
//! - **Terms**: a campaign takes `max(term seen) + 1` and writes it on its containers. A
//!   drover steps down (stops acting at once, releases everything) when another holder
//!   shows a higher term, or, before it leads, an equal one; and when a project container
//!   carries a higher term than its own ([`LeaseHandle::saw_term`]). The acting term is
//!   stamped on everything the leader creates (`drover.term`), and of two copies of one
//!   slot the planner keeps the higher term's: a late write of an old leader loses.
//! - **Release**: on shutdown the holder stops acting, then marks each container released
//!   (restart policy `no`); the next drover takes a released lease at once. A release that
//!   may still fence an earlier holder is marked `unless-stopped`: its taker waits `ttl`.
//!
//! What it relies on: the drovers share the project's node list, and their monotonic
//! clocks run at about the same rate (no synchronisation is needed; only durations on each
//! process's own clock are compared). An engine request already sent when the lease runs
//! out may still be applied by the engine after it: terms make such a write lose.

mod core;
mod fence;
mod task;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::model::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use crate::engine::{Client, Credentials, Engine};
use crate::telemetry::Telemetry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::connect::Endpoint;

pub use self::core::{View, Window, majority};
pub use self::fence::Fence;
pub use crate::labels::{
    LEASE_HOLDER as LABEL_HOLDER, LEASE_PROJECT as LABEL_LEASE, LEASE_SCOPE as LABEL_SCOPE,
    LEASE_TERM as LABEL_LEASE_TERM,
};

/// The lease container's name for `project`.
pub fn container_name(project: &str) -> String {
    format!("drover-lease-{project}")
}

/// Lease timing; everything derives from `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A grant counts at most this long after its last successful renewal was sent.
    pub ttl: Duration,
}

impl Default for LeaseConfig {
    /// One engine: long enough that a loaded engine (seconds per request) does not cost the
    /// lease; a holder that exits is replaced at once (see "holder exited"), so the ttl only
    /// bounds takeovers from a holder that hangs or is cut off.
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(10),
        }
    }
}

impl LeaseConfig {
    /// Several nodes (HA): a takeover within 5 s. One slow engine no longer costs the lease
    /// (the others still make a majority), so the ttl can be short.
    pub const HA_TTL: Duration = Duration::from_secs(2);

    /// The default for `n` nodes holding lease votes.
    pub fn for_nodes(n: usize) -> LeaseConfig {
        if n > 1 {
            LeaseConfig { ttl: Self::HA_TTL }
        } else {
            LeaseConfig::default()
        }
    }

    /// How often the holder renews and a waiting drover looks.
    pub fn interval(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(50))
    }

    /// A lease unchanged this long (on the watcher's clock) is taken over. Above the ttl,
    /// so a holder's claim has run out when its container is taken; the margin covers a
    /// watcher's look that comes late and clocks that run at slightly different rates.
    pub fn stale_after(&self) -> Duration {
        self.ttl * 5 / 4
    }

    /// One engine request's deadline.
    fn request_timeout(&self) -> Duration {
        (self.ttl / 2).max(Duration::from_millis(100))
    }

    fn timing(&self) -> self::core::Timing {
        self::core::Timing {
            ttl: self.ttl,
            interval: self.interval(),
            stale_after: self.stale_after(),
        }
    }
}

/// When the current holder may act: from `from` until `until` (monotonic clock), under
/// `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub from: Instant,
    pub until: Instant,
    pub term: u64,
    /// A majority of the lease's nodes granted requests sent at or after this instant.
    pub confirmed: Instant,
}

/// The controller's side of a running lease task.
#[derive(Clone)]
pub struct LeaseHandle {
    rx: watch::Receiver<Option<Validity>>,
    /// The highest term seen on the project's containers: no acting below it.
    observed: Arc<AtomicU64>,
    /// False for a handle without a lease ([`LeaseHandle::always`]): terms do not apply.
    fenced: bool,
    /// The nodes that hold lease votes (0 without a lease).
    voters: usize,
}

impl LeaseHandle {
    /// A handle that always holds (for a single process that opted out, and for tests).
    pub fn always() -> LeaseHandle {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let (tx, rx) = watch::channel(Some(Validity {
            from: Instant::now(),
            until: far,
            term: 0,
            confirmed: far,
        }));
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        LeaseHandle {
            rx,
            observed: Arc::new(AtomicU64::new(0)),
            fenced: false,
            voters: 0,
        }
    }

    /// [`LeaseHandle::always`], as if `voters` nodes held lease votes (tests).
    #[cfg(test)]
    pub(crate) fn always_over(voters: usize) -> LeaseHandle {
        LeaseHandle {
            voters,
            ..LeaseHandle::always()
        }
    }

    /// A handle over `voters` nodes whose validity a test sets.
    #[cfg(test)]
    pub(crate) fn settable_over(
        voters: usize,
        v: Validity,
    ) -> (LeaseHandle, watch::Sender<Option<Validity>>) {
        let (tx, rx) = watch::channel(Some(v));
        (LeaseHandle::new(rx, voters), tx)
    }

    fn new(rx: watch::Receiver<Option<Validity>>, voters: usize) -> LeaseHandle {
        LeaseHandle {
            rx,
            observed: Arc::new(AtomicU64::new(0)),
            fenced: true,
            voters,
        }
    }

    /// Whether acting needs a majority of several nodes (an HA lease): a drover that sees
    /// most of them down is then more likely cut off itself than looking at dead nodes.
    pub fn needs_majority(&self) -> bool {
        self.voters >= 3
    }

    /// Whether a majority of the lease's nodes granted requests this drover sent after `t`:
    /// it was not cut off into a minority from `t` until then. Always true without an HA
    /// lease.
    pub fn confirmed_since(&self, t: Instant) -> bool {
        !self.needs_majority() || matches!(*self.rx.borrow(), Some(v) if v.confirmed > t)
    }

    fn outranked(&self, term: u64) -> bool {
        self.fenced && self.observed.load(Ordering::SeqCst) > term
    }

    fn valid(&self, v: &Validity, now: Instant) -> bool {
        v.from <= now && now < v.until && !self.outranked(v.term)
    }

    /// True when this process may act right now.
    pub fn held(&self) -> bool {
        let now = Instant::now();
        matches!(*self.rx.borrow(), Some(v) if self.valid(&v, now))
    }

    /// The term this process acts under right now (`None`: it does not act; 0: no lease,
    /// e.g. turned off).
    pub fn term(&self) -> Option<u64> {
        let now = Instant::now();
        match *self.rx.borrow() {
            Some(v) if self.valid(&v, now) => Some(v.term),
            _ => None,
        }
    }

    /// A project container carries `term`: when it is above ours, stop acting at once (a
    /// newer leader exists), and tell the lease task.
    pub fn saw_term(&self, term: u64) {
        self.observed.fetch_max(term, Ordering::SeqCst);
    }

    /// Wait until this process may act.
    pub async fn acquired(&mut self) {
        loop {
            let v = *self.rx.borrow_and_update();
            let now = Instant::now();
            match v {
                Some(v) if self.valid(&v, now) => return,
                Some(v) if v.from > now => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(v.from.into()) => {}
                        r = self.rx.changed() => if r.is_err() { std::future::pending::<()>().await },
                    }
                }
                _ => {
                    if self.rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Wait until this process may no longer act. Every poll compares the clock itself, so
    /// a process resumed after a freeze sees at once that its lease ran out.
    pub async fn lost(&mut self) {
        loop {
            let v = *self.rx.borrow_and_update();
            let now = Instant::now();
            match v {
                Some(v) if self.valid(&v, now) => {
                    let mut sleep = std::pin::pin!(tokio::time::sleep_until(v.until.into()));
                    let (fenced, observed) = (self.fenced, self.observed.clone());
                    let mut changed = std::pin::pin!(self.rx.changed());
                    let again = std::future::poll_fn(|cx| {
                        let now = Instant::now();
                        let outranked = fenced && observed.load(Ordering::SeqCst) > v.term;
                        if now >= v.until || outranked {
                            return std::task::Poll::Ready(true);
                        }
                        if sleep.as_mut().poll(cx).is_ready() {
                            return std::task::Poll::Ready(true);
                        }
                        match changed.as_mut().poll(cx) {
                            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(true),
                            std::task::Poll::Ready(Err(_)) => std::task::Poll::Ready(false),
                            std::task::Poll::Pending => std::task::Poll::Pending,
                        }
                    })
                    .await;
                    if !again {
                        std::future::pending::<()>().await;
                    }
                }
                _ => return,
            }
        }
    }
}

/// One node that holds lease votes: its name, where it is (for messages) and its
/// connection once there is one (`None`: there will be none).
pub struct LeaseNode {
    pub name: String,
    pub endpoint: Endpoint,
    pub engine: Pin<Box<dyn Future<Output = Option<Client>> + Send>>,
}

/// Start the lease task for `project` over `nodes`. `images` are the project's images,
/// preferred for the lease containers (any image present works: the container is never
/// started; `credentials` log in for the pull when a node has no image at all). The lease
/// as seen is recorded in `telemetry`. On `cancel` every held grant is released.
pub fn spawn(
    nodes: Vec<LeaseNode>,
    project: String,
    images: Vec<String>,
    credentials: Credentials,
    config: LeaseConfig,
    telemetry: Telemetry,
    cancel: CancellationToken,
) -> (LeaseHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let handle = LeaseHandle::new(rx, nodes.len());
    let task = task::Task::new(task::Setup {
        project,
        holder: holder_id(),
        scope: own_scope(),
        images,
        credentials,
        config,
        telemetry,
        tx,
        observed: handle.observed.clone(),
    });
    let join = tokio::spawn(task.run(nodes, cancel));
    (handle, join)
}

/// Where this process's pid means something: the boot (pids restart with it) and the
/// container (each has its own pid namespace). None when the boot id cannot be read.
fn own_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    if boot.is_empty() {
        return None;
    }
    let place = crate::engine::own_container_id().unwrap_or_else(|| "host".into());
    Some(format!("{boot}/{place}"))
}

/// The pid in a holder id (`host/pid/random`).
fn holder_pid(holder: &str) -> Option<u32> {
    holder.split('/').nth(1)?.parse().ok()
}

/// True when the holder is known to have exited: same scope, and its pid is ours (a
/// restarted container: we are that pid now) or names no process. A pid reused by some
/// other process reads as alive, which only costs the wait.
fn holder_exited(holder: &str, scope: &str, own_scope: Option<&str>, me: &str) -> bool {
    if own_scope != Some(scope) || holder == me {
        return false;
    }
    match holder_pid(holder) {
        Some(pid) if pid == std::process::id() => true,
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// `hostname/pid/random`: unique per process.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}/{}/{nanos:08x}", std::process::id())
}

/// The lease container for `project` held by `holder` under `term`, from `image` (any
/// image present: it is never started).
fn container_body(
    project: &str,
    holder: &str,
    scope: Option<&str>,
    term: u64,
    image: String,
) -> ContainerCreateBody {
    let labels = [
        (LABEL_LEASE.to_string(), project.to_string()),
        (LABEL_HOLDER.to_string(), holder.to_string()),
        (LABEL_LEASE_TERM.to_string(), term.to_string()),
    ]
    .into_iter()
    .chain(scope.map(|s| (LABEL_SCOPE.to_string(), s.to_string())))
    .collect();
    ContainerCreateBody {
        image: Some(image),
        // Never started; if someone does start it, it fails at once instead of running
        // the image's program.
        entrypoint: Some(vec!["/drover-lease-is-never-started".into()]),
        cmd: Some(vec![]),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(0),
            }),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A renewal: the counter kept in the lease container's restart policy.
fn renewal(counter: i64) -> ContainerUpdateBody {
    ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(counter),
        }),
        ..Default::default()
    }
}

/// What was seen of one lease container at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Absent,
    /// Held by someone (possibly us): id, holder, counter, term.
    Held {
        id: String,
        holder: String,
        scope: String,
        counter: i64,
        term: u64,
    },
    Released {
        id: String,
        term: u64,
        clean: bool,
    },
    /// A container of that name that is not a lease of this project: never touched.
    Foreign,
}

/// What the inspected container `c` says about `project`'s lease.
fn seen_in(c: ContainerInspectResponse, project: &str) -> Seen {
    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
    let id = c.id.unwrap_or_default();
    if labels.get(LABEL_LEASE).map(String::as_str) != Some(project) || id.is_empty() {
        return Seen::Foreign;
    }
    let term = labels
        .get(LABEL_LEASE_TERM)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let policy = c.host_config.and_then(|h| h.restart_policy);
    let name = policy.as_ref().and_then(|p| p.name);
    match name {
        Some(RestartPolicyNameEnum::NO) => {
            return Seen::Released {
                id,
                term,
                clean: true,
            };
        }
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => {
            return Seen::Released {
                id,
                term,
                clean: false,
            };
        }
        _ => {}
    }
    Seen::Held {
        id,
        holder: labels.get(LABEL_HOLDER).cloned().unwrap_or_default(),
        scope: labels.get(LABEL_SCOPE).cloned().unwrap_or_default(),
        counter: policy.and_then(|p| p.maximum_retry_count).unwrap_or(0),
        term,
    }
}

/// [`Seen`] as the lease's judgement takes it (`me`: this process's holder id).
fn view_of(seen: Seen, own_scope: Option<&str>, me: &str) -> View {
    match seen {
        Seen::Absent => View::Absent,
        Seen::Foreign => View::Foreign,
        Seen::Released { id, term, clean } => View::Released { id, term, clean },
        Seen::Held {
            id,
            holder,
            scope,
            counter,
            term,
        } => View::Held {
            exited: holder_exited(&holder, &scope, own_scope, me),
            id,
            holder,
            counter,
            term,
        },
    }
}

/// Whether a drover acts for a project, as its lease container on the lease node says
/// (for commands that must not race a running drover, such as `drover down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No lease container (or a container of that name that is not this project's lease).
    Absent,
    /// The last holder released it when it stopped.
    Released { id: String, term: u64 },
    /// A drover holds it and renewed it while we watched.
    Acting {
        id: String,
        holder: String,
        term: u64,
    },
    /// A holder is named but did not renew while we watched, or is known to have exited
    /// (gone without release, frozen, or cut off from the lease node).
    Silent {
        id: String,
        holder: String,
        term: u64,
    },
}

impl Standing {
    /// The lease term the container carries (`None`: no lease container).
    pub fn term(&self) -> Option<u64> {
        match self {
            Standing::Absent => None,
            Standing::Released { term, .. }
            | Standing::Acting { term, .. }
            | Standing::Silent { term, .. } => Some(*term),
        }
    }
}

/// Look at `project`'s lease on `engine` for up to `watch` (a holder renews every quarter
/// of its ttl: watch at least half the holders' ttl to see a renewal).
pub async fn standing(
    engine: &dyn Engine,
    project: &str,
    watch: Duration,
) -> Result<Standing, crate::engine::EngineError> {
    let name = container_name(project);
    let look = || async {
        match engine.inspect_container(&name).await {
            Ok(c) => Ok(seen_in(c, project)),
            Err(e) if e.is_not_found() => Ok(Seen::Absent),
            Err(e) => Err(e),
        }
    };
    let first = look().await?;
    let Seen::Held {
        id,
        holder,
        scope,
        counter,
        term,
    } = first
    else {
        return Ok(match first {
            Seen::Released { id, term, .. } => Standing::Released { id, term },
            _ => Standing::Absent,
        });
    };
    if holder_exited(&holder, &scope, own_scope().as_deref(), &holder_id()) {
        return Ok(Standing::Silent { id, holder, term });
    }
    let until = Instant::now() + watch;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match look().await? {
            Seen::Held {
                id: now,
                counter: c,
                ..
            } if now == id && c == counter => {}
            Seen::Released { id, term, .. } => return Ok(Standing::Released { id, term }),
            Seen::Absent | Seen::Foreign => return Ok(Standing::Absent),
            Seen::Held {
                id, holder, term, ..
            } => {
                return Ok(Standing::Acting { id, holder, term });
            }
        }
    }
    Ok(Standing::Silent { id, holder, term })
}

#[cfg(test)]
mod tests;
