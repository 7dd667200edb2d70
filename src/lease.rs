//! Mutual exclusion between drover processes managing the same project.
//!
//! The engine is the only store two drovers share, and it offers one atomic primitive: a
//! container name is unique per engine (a second create of the same name fails with 409).
//! The lease is therefore a container named `drover-lease-{project}` on the project's first
//! node (by name), created and never started, labelled `drover.lease=<project>` and
//! `drover.lease.holder=<holder>`. It carries no `drover.project` label, so the planner never
//! sees it.
//!
//! - **Acquire**: create the container. 409 means someone holds it.
//! - **Renew**: every `ttl / 4` the holder bumps a counter kept in the container's restart
//!   policy (`on-failure:N`, the one field of a stopped container the engine lets a client
//!   change in place), addressing the container by id. A 404 means the lease was taken away.
//! - **Validity**: the holder may act only until `ttl` after it *sent* the last renewal that
//!   succeeded. A holder that cannot reach the lease node (crash of the engine, partition,
//!   stall) stops acting within `ttl`.
//! - **Holder gone**: the holder label carries its pid and a `drover.lease.scope` label says
//!   where that pid means something (the boot and the container). A waiting drover in the
//!   same scope that finds no such process (or is that pid itself: a restarted container)
//!   knows the holder is gone and takes the lease at once, without waiting.
//! - **Takeover**: a waiting drover inspects the container every `ttl / 4`. When its id and
//!   counter have not changed for `3 * ttl / 2` (measured on the waiting drover's own
//!   monotonic clock), the holder is taken to be gone: the waiting drover removes that
//!   container by id and creates its own (a 409 or 404 on the way means another drover was
//!   quicker: it goes back to waiting).
//! - **Fencing by time**: the removal and a late renewal can cross (a holder coming back from
//!   a partition renews just before its container is removed). So a drover that acquired a
//!   lease it did not find released waits `ttl` before acting: by then any previous holder's
//!   last successful renewal has run out.
//! - **Release**: on shutdown the holder marks the lease released (restart policy `no`)
//!   after it has stopped acting; the next drover takes a released lease at once, without
//!   the wait.
//!
//! What it relies on: the drovers share the project's node list (they must pick the same
//! lease node) and their clocks run at about the same rate (no synchronisation is needed;
//! only durations on each process's own monotonic clock are compared). An engine request
//! already sent when the lease runs out may still be applied by the engine after it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::engine::model::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use crate::engine::{Client, Credentials, Engine, Kind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::connect::{self, Endpoint};

pub use crate::labels::{
    LEASE_HOLDER as LABEL_HOLDER, LEASE_PROJECT as LABEL_LEASE, LEASE_SCOPE as LABEL_SCOPE,
};

/// The lease container's name for `project`.
pub fn container_name(project: &str) -> String {
    format!("drover-lease-{project}")
}

/// Lease timing; everything derives from `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// A holder acts at most this long after its last successful renewal was sent; a new
    /// holder waits this long before acting.
    pub ttl: Duration,
}

impl Default for LeaseConfig {
    /// Long enough that a loaded engine (seconds per request) does not cost the lease; a
    /// holder that exits is replaced at once (see "Holder gone"), so the ttl only bounds
    /// takeovers from a holder that hangs or is cut off.
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(10),
        }
    }
}

impl LeaseConfig {
    /// How often the holder renews and a waiting drover looks.
    pub fn interval(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(50))
    }

    /// A lease unchanged this long is taken over.
    pub fn stale_after(&self) -> Duration {
        self.ttl * 3 / 2
    }

    /// One engine request's deadline.
    fn request_timeout(&self) -> Duration {
        (self.ttl / 2).max(Duration::from_millis(100))
    }
}

/// When the current holder may act: from `from` until `until` (monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub from: Instant,
    pub until: Instant,
}

/// The controller's side of a running lease task.
#[derive(Clone)]
pub struct LeaseHandle {
    rx: watch::Receiver<Option<Validity>>,
}

impl LeaseHandle {
    /// A handle that always holds (for a single process that opted out, and for tests).
    pub fn always() -> LeaseHandle {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let (tx, rx) = watch::channel(Some(Validity {
            from: Instant::now(),
            until: far,
        }));
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        LeaseHandle { rx }
    }

    /// True when this process may act right now.
    pub fn held(&self) -> bool {
        let now = Instant::now();
        matches!(*self.rx.borrow(), Some(v) if v.from <= now && now < v.until)
    }

    /// Wait until this process may act.
    pub async fn acquired(&mut self) {
        loop {
            let v = *self.rx.borrow_and_update();
            let now = Instant::now();
            match v {
                Some(v) if v.from <= now && now < v.until => return,
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

    /// Wait until this process may no longer act.
    pub async fn lost(&mut self) {
        loop {
            let v = *self.rx.borrow_and_update();
            let now = Instant::now();
            match v {
                Some(v) if v.from <= now && now < v.until => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(v.until.into()) => {}
                        r = self.rx.changed() => if r.is_err() { std::future::pending::<()>().await },
                    }
                }
                _ => return,
            }
        }
    }
}

/// Start the lease task for `project` on the lease node: `engine` is its connection once
/// there is one (`None`: there will be none), `endpoint` where it is (for messages).
/// `images` are the project's images, preferred for the lease container (any image
/// present works: the container is never started; `credentials` log in for the pull when
/// the node has no image at all). On `cancel` a held lease is released.
pub fn spawn(
    engine: impl Future<Output = Option<Client>> + Send + 'static,
    endpoint: Endpoint,
    project: String,
    images: Vec<String>,
    credentials: Credentials,
    config: LeaseConfig,
    cancel: CancellationToken,
) -> (LeaseHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = Task {
        endpoint,
        name: container_name(&project),
        project,
        holder: holder_id(),
        scope: own_scope(),
        images,
        credentials,
        config,
        tx,
    };
    let join = tokio::spawn(task.run(engine, cancel));
    (LeaseHandle { rx }, join)
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

/// What was seen of the lease container at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Absent,
    /// Held by someone (possibly us): id, holder, counter.
    Held {
        id: String,
        holder: String,
        scope: String,
        counter: i64,
    },
    Released {
        id: String,
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
    let policy = c.host_config.and_then(|h| h.restart_policy);
    let name = policy.as_ref().and_then(|p| p.name);
    if name == Some(RestartPolicyNameEnum::NO) {
        return Seen::Released { id };
    }
    Seen::Held {
        id,
        holder: labels.get(LABEL_HOLDER).cloned().unwrap_or_default(),
        scope: labels.get(LABEL_SCOPE).cloned().unwrap_or_default(),
        counter: policy.and_then(|p| p.maximum_retry_count).unwrap_or(0),
    }
}

/// Whether a drover acts for a project, as its lease container on the lease node says
/// (for commands that must not race a running drover, such as `drover down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No lease container (or a container of that name that is not this project's lease).
    Absent,
    /// The last holder released it when it stopped.
    Released { id: String },
    /// A drover holds it and renewed it while we watched.
    Acting { id: String, holder: String },
    /// A holder is named but did not renew while we watched, or is known to have exited
    /// (gone without release, frozen, or cut off from the lease node).
    Silent { id: String, holder: String },
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
    } = first
    else {
        return Ok(match first {
            Seen::Released { id } => Standing::Released { id },
            _ => Standing::Absent,
        });
    };
    if holder_exited(&holder, &scope, own_scope().as_deref(), &holder_id()) {
        return Ok(Standing::Silent { id, holder });
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
            Seen::Released { id } => return Ok(Standing::Released { id }),
            Seen::Absent | Seen::Foreign => return Ok(Standing::Absent),
            Seen::Held { id, holder, .. } => return Ok(Standing::Acting { id, holder }),
        }
    }
    Ok(Standing::Silent { id, holder })
}

struct Task {
    endpoint: Endpoint,
    project: String,
    name: String,
    holder: String,
    scope: Option<String>,
    images: Vec<String>,
    /// Registry logins, when the lease node must pull an image.
    credentials: Credentials,
    config: LeaseConfig,
    tx: watch::Sender<Option<Validity>>,
}

/// Outcome of an attempt to take the lease.
enum Take {
    Got { id: String, wait: bool },
    NotYet,
}

impl Task {
    async fn run(self, engine: impl Future<Output = Option<Client>>, cancel: CancellationToken) {
        let mut said = String::new();
        let d = tokio::select! {
            _ = cancel.cancelled() => None,
            d = self.connected(engine, &mut said) => d,
        };
        let Some(d) = d else {
            return;
        };
        // The client opens a connection per request as needed: after a restart of the
        // engine the next look or renewal reaches it again.
        let mut held: Option<(String, i64)> = None;
        // The last distinct state of someone else's lease, and when we first saw it.
        let mut watching: Option<(Seen, Instant)> = None;
        loop {
            let attempt = Instant::now();
            match held.clone() {
                Some((id, counter)) => match self.renew(&d, &id, counter + 1).await {
                    Ok(()) => held = Some((id, counter + 1)),
                    Err(Some(Kind::NotFound)) => {
                        warn!(action = "lease-lost", project = %self.project, reason = "taken", "lease container removed or taken over; stopped acting");
                        self.tx.send_replace(None);
                        held = None;
                        watching = None;
                    }
                    Err(_) => {}
                },
                None => match self.try_take(&d, &mut watching).await {
                    Ok(Take::Got { id, wait }) => {
                        let now = Instant::now();
                        let from = if wait { attempt + self.config.ttl } else { now };
                        info!(
                            action = "lease-acquired",
                            project = %self.project,
                            container = %crate::engine::short_id(&id),
                            delay_ms = from.saturating_duration_since(now).as_millis() as u64,
                            "lease acquired"
                        );
                        self.tx.send_replace(Some(Validity {
                            from,
                            until: attempt + self.config.ttl,
                        }));
                        held = Some((id, 0));
                        watching = None;
                        said.clear();
                    }
                    Ok(Take::NotYet) => {}
                    Err(e) => self.say(&mut said, &e),
                },
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.interval()) => {}
            }
        }
        self.tx.send_replace(None);
        if let Some((id, _)) = held {
            self.release(&d, &id).await;
        }
    }

    /// The lease node's connection, once there is one; said once when it is slow to come.
    async fn connected(
        &self,
        engine: impl Future<Output = Option<Client>>,
        said: &mut String,
    ) -> Option<Client> {
        let mut engine = std::pin::pin!(engine);
        tokio::select! {
            d = &mut engine => return d,
            _ = tokio::time::sleep(self.config.request_timeout() * 4) => {}
        }
        self.say(said, "lease node: not connected");
        engine.await
    }

    fn say(&self, said: &mut String, what: &str) {
        if said != what {
            warn!(action = "lease", project = %self.project, error = %what, "cannot reach the lease; not acting");
            *said = what.to_string();
        }
    }

    /// Bump the counter of our lease container; on success extend the validity.
    async fn renew(&self, d: &Client, id: &str, counter: i64) -> Result<(), Option<Kind>> {
        let sent = Instant::now();
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(counter),
            }),
            ..Default::default()
        };
        match tokio::time::timeout(self.config.request_timeout(), d.update_container(id, body))
            .await
        {
            Ok(Ok(())) => {
                self.tx.send_modify(|v| {
                    if let Some(v) = v {
                        v.until = v.until.max(sent + self.config.ttl);
                    }
                });
                Ok(())
            }
            Ok(Err(e)) => {
                debug!(project = %self.project, error = %e, "lease renewal failed");
                Err(Some(e.kind))
            }
            Err(_) => {
                debug!(project = %self.project, "lease renewal timed out");
                Err(None)
            }
        }
    }

    async fn look(&self, d: &Client) -> Result<Seen, String> {
        let inspected = tokio::time::timeout(
            self.config.request_timeout(),
            d.inspect_container(&self.name),
        )
        .await
        .map_err(|_| "lease node: no answer in time".to_string())?;
        let c = match inspected {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(Seen::Absent),
            Err(e) => {
                return Err(format!(
                    "lease node: {}",
                    connect::explain(&self.endpoint, &e)
                ));
            }
        };
        Ok(seen_in(c, &self.project))
    }

    async fn try_take(
        &self,
        d: &Client,
        watching: &mut Option<(Seen, Instant)>,
    ) -> Result<Take, String> {
        let seen = self.look(d).await?;
        match &seen {
            // Nobody holds it: a first start (or a user removed it, in which case its holder
            // stops at its next renewal).
            Seen::Absent => self.create(d, false).await,
            Seen::Released { id } => {
                if self.remove(d, id).await? {
                    self.create(d, false).await
                } else {
                    Ok(Take::NotYet)
                }
            }
            Seen::Foreign => Err(format!(
                "a container named {} exists without the label {LABEL_LEASE}={}; remove it to let drover run",
                self.name, self.project
            )),
            Seen::Held {
                id, holder, scope, ..
            } if holder_exited(holder, scope, self.scope.as_deref(), &self.holder) => {
                warn!(
                    action = "lease-takeover",
                    project = %self.project,
                    reason = "holder-exited",
                    holder = %holder,
                    "the drover holding the lease has exited; taking it over"
                );
                *watching = None;
                if self.remove(d, id).await? {
                    self.create(d, false).await
                } else {
                    Ok(Take::NotYet)
                }
            }
            Seen::Held { id, holder, .. } => {
                let now = Instant::now();
                match watching {
                    Some((prev, since)) if *prev == seen => {
                        if now.duration_since(*since) < self.config.stale_after() {
                            return Ok(Take::NotYet);
                        }
                        warn!(
                            action = "lease-takeover",
                            project = %self.project,
                            reason = "not-renewed",
                            holder = %holder,
                            duration_ms = now.duration_since(*since).as_millis() as u64,
                            "lease not renewed; taking it over"
                        );
                        *watching = None;
                        if self.remove(d, id).await? {
                            self.create(d, true).await
                        } else {
                            Ok(Take::NotYet)
                        }
                    }
                    _ => {
                        if watching.is_none() {
                            info!(action = "lease-wait", project = %self.project, holder = %holder, "another drover holds the lease; standing by");
                        }
                        *watching = Some((seen.clone(), now));
                        Ok(Take::NotYet)
                    }
                }
            }
        }
    }

    /// Remove a lease container by id; false when it was already gone (someone was quicker).
    async fn remove(&self, d: &Client, id: &str) -> Result<bool, String> {
        match tokio::time::timeout(self.config.request_timeout(), d.remove_container(id, false))
            .await
        {
            Err(_) => Err("lease node: no answer in time".into()),
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) if e.is_not_found() => Ok(false),
            // Already being removed by someone else.
            Ok(Err(e)) if e.is_conflict() => Ok(false),
            Ok(Err(e)) => Err(format!(
                "lease node: {}",
                connect::explain(&self.endpoint, &e)
            )),
        }
    }

    async fn create(&self, d: &Client, wait: bool) -> Result<Take, String> {
        let image = self.image(d).await?;
        let labels = [
            (LABEL_LEASE.to_string(), self.project.clone()),
            (LABEL_HOLDER.to_string(), self.holder.clone()),
        ]
        .into_iter()
        .chain(self.scope.clone().map(|s| (LABEL_SCOPE.to_string(), s)))
        .collect();
        let body = ContainerCreateBody {
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
        };
        match tokio::time::timeout(
            self.config.request_timeout() * 2,
            d.create_container(&self.name, None, body),
        )
        .await
        {
            Err(_) => Err("lease node: no answer in time".into()),
            Ok(Ok(id)) => Ok(Take::Got { id, wait }),
            Ok(Err(e)) if e.is_conflict() => Ok(Take::NotYet),
            Ok(Err(e)) => Err(format!(
                "cannot create the lease container {}: {}",
                self.name,
                connect::explain(&self.endpoint, &e)
            )),
        }
    }

    /// An image present on the lease node: one of the project's if possible; pulls the
    /// project's first image when the engine has none at all.
    async fn image(&self, d: &Client) -> Result<String, String> {
        let listed = tokio::time::timeout(self.config.request_timeout() * 2, d.list_images())
            .await
            .map_err(|_| "lease node: no answer in time".to_string())?
            .map_err(|e| format!("lease node: {}", connect::explain(&self.endpoint, &e)))?;
        for want in &self.images {
            let full = if want.contains(':') || want.contains('@') {
                want.clone()
            } else {
                format!("{want}:latest")
            };
            if let Some(img) = listed
                .iter()
                .find(|i| i.repo_tags.iter().any(|t| *t == full || t == want))
            {
                return Ok(img.id.clone());
            }
        }
        if let Some(img) = listed.first() {
            return Ok(img.id.clone());
        }
        let Some(want) = self.images.first() else {
            return Err("no image on the lease node to create the lease container from".into());
        };
        d.pull(want, None, &self.credentials)
            .await
            .map_err(|e| format!("pull {want} for the lease container: {e}"))?;
        Ok(want.clone())
    }

    /// Mark the lease released (we have stopped acting): the next drover takes it at once.
    async fn release(&self, d: &Client, id: &str) {
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: Some(0),
            }),
            ..Default::default()
        };
        match tokio::time::timeout(Duration::from_millis(500), d.update_container(id, body)).await {
            Ok(Ok(())) => {
                info!(action = "lease-released", project = %self.project, "lease released")
            }
            _ => debug!(project = %self.project, "could not release the lease; it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::connect::Transport;
    use crate::engine::fake::FakeEngine;
    use std::sync::Arc;
    use tokio::task::JoinHandle;

    /// One drover's lease task on `fake`, as `holder`; no scope, so a holder never reads
    /// as exited (every holder here has this process's pid).
    fn holder(
        fake: &Arc<FakeEngine>,
        holder: &str,
        ttl: Duration,
    ) -> (LeaseHandle, JoinHandle<()>, CancellationToken) {
        let (tx, rx) = watch::channel(None);
        let task = Task {
            endpoint: Endpoint::new(Transport::Tcp("lease-node:2375".into())),
            project: "p".into(),
            name: container_name("p"),
            holder: holder.into(),
            scope: None,
            images: vec!["img".into()],
            credentials: Credentials::in_dir("/nonexistent", "a test"),
            config: LeaseConfig { ttl },
            tx,
        };
        let cancel = CancellationToken::new();
        let client = Client::from(fake.clone());
        let join = tokio::spawn(task.run(async move { Some(client) }, cancel.clone()));
        (LeaseHandle { rx }, join, cancel)
    }

    /// The lease container as the engine has it: id, holder label, restart policy.
    async fn lease_container(fake: &FakeEngine) -> (String, String, RestartPolicy) {
        let c = fake.inspect_container(&container_name("p")).await.unwrap();
        let holder = c.config.unwrap().labels.unwrap()[LABEL_HOLDER].clone();
        let policy = c.host_config.unwrap().restart_policy.unwrap();
        (c.id.unwrap(), holder, policy)
    }

    /// Wait until `cond` holds, checking every few milliseconds; fail after `deadline`.
    async fn until<F: Future<Output = bool>>(what: &str, deadline: Duration, cond: impl Fn() -> F) {
        let end = Instant::now() + deadline;
        while !cond().await {
            assert!(Instant::now() < end, "not within {deadline:?}: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn acquired(h: &mut LeaseHandle, deadline: Duration) {
        tokio::time::timeout(deadline, h.acquired())
            .await
            .expect("lease acquired in time");
    }

    fn counter(p: &RestartPolicy) -> i64 {
        p.maximum_retry_count.unwrap_or(0)
    }

    #[tokio::test]
    async fn a_second_holder_waits_while_the_first_renews() {
        let fake = Arc::new(FakeEngine::default());
        let ttl = Duration::from_millis(400);
        let (mut a, _a_task, _a_cancel) = holder(&fake, "a", ttl);
        acquired(&mut a, Duration::from_secs(2)).await;
        let (id, who, _) = lease_container(&fake).await;
        assert_eq!(who, "a");
        let (b, _b_task, _b_cancel) = holder(&fake, "b", ttl);
        // Renewals enough to span twice the takeover delay (`stale_after`).
        let config = LeaseConfig { ttl };
        let enough = 2 * config.stale_after().as_millis() / config.interval().as_millis();
        until("a renews", Duration::from_secs(10), || async {
            counter(&lease_container(&fake).await.2) >= enough as i64
        })
        .await;
        assert!(a.held() && !b.held());
        let (still, who, _) = lease_container(&fake).await;
        assert_eq!((still, who.as_str()), (id, "a"), "the same container, a's");
    }

    #[tokio::test]
    async fn a_holder_that_stops_renewing_is_taken_over_after_the_ttl() {
        let fake = Arc::new(FakeEngine::default());
        let config = LeaseConfig {
            ttl: Duration::from_millis(400),
        };
        let (mut a, a_task, _a_cancel) = holder(&fake, "a", config.ttl);
        acquired(&mut a, Duration::from_secs(2)).await;
        let (mut b, _b_task, _b_cancel) = holder(&fake, "b", config.ttl);
        until("a renews", Duration::from_secs(5), || async {
            counter(&lease_container(&fake).await.2) >= 2
        })
        .await;
        // a hangs: no renewal, no release.
        a_task.abort();
        let stopped = Instant::now();
        acquired(&mut b, Duration::from_secs(5)).await;
        let took = stopped.elapsed();
        assert!(took >= config.ttl, "not before the fencing delay: {took:?}");
        assert!(!a.held(), "a's last renewal ran out before b acts");
        assert_eq!(lease_container(&fake).await.1, "b");
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let fake = Arc::new(FakeEngine::default());
        let config = LeaseConfig {
            ttl: Duration::from_secs(2),
        };
        let (mut a, a_task, a_cancel) = holder(&fake, "a", config.ttl);
        acquired(&mut a, Duration::from_secs(5)).await;
        fake.take_calls();
        let (mut b, _b_task, _b_cancel) = holder(&fake, "b", config.ttl);
        until("b looks", Duration::from_secs(5), || async {
            fake.take_calls().iter().any(|c| c.starts_with("inspect"))
        })
        .await;
        a_cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), a_task)
            .await
            .expect("a ends on cancel")
            .unwrap();
        assert!(!a.held());
        let released = Instant::now();
        assert_eq!(
            lease_container(&fake).await.2.name,
            Some(RestartPolicyNameEnum::NO),
            "released"
        );
        acquired(&mut b, Duration::from_secs(5)).await;
        let took = released.elapsed();
        assert!(
            took < config.ttl,
            "no wait for the silence nor the fencing delay: {took:?}"
        );
        assert_eq!(lease_container(&fake).await.1, "b");
    }

    #[tokio::test]
    async fn a_failed_renewal_is_no_loss_until_the_ttl_runs_out() {
        let fake = Arc::new(FakeEngine::default());
        let ttl = Duration::from_millis(400);
        let (mut a, _a_task, _a_cancel) = holder(&fake, "a", ttl);
        acquired(&mut a, Duration::from_secs(2)).await;
        let (id, _, _) = lease_container(&fake).await;
        // One renewal answered with 500: the holder keeps acting and renewing.
        fake.fail("update", Kind::Api(500), 1);
        until("the failure is met", Duration::from_secs(5), || async {
            fake.take_calls().iter().any(|c| c.starts_with("update"))
        })
        .await;
        let after = counter(&lease_container(&fake).await.2);
        until("a renews again", Duration::from_secs(5), || async {
            counter(&lease_container(&fake).await.2) > after
        })
        .await;
        assert!(a.held());
        // Every renewal fails: a stops acting within the ttl, keeping its container ...
        fake.fail("update", Kind::Api(500), u32::MAX);
        tokio::time::timeout(ttl * 4, a.lost())
            .await
            .expect("a stops acting");
        assert_eq!(lease_container(&fake).await.0, id);
        // ... and acts again at the first renewal that succeeds.
        fake.fail("update", Kind::Api(500), 1);
        acquired(&mut a, Duration::from_secs(5)).await;
        assert_eq!(lease_container(&fake).await.0, id);
    }

    #[tokio::test]
    async fn handle_waits_for_the_start_and_reports_the_end() {
        let (tx, rx) = watch::channel(None);
        let mut h = LeaseHandle { rx };
        assert!(!h.held());
        let now = Instant::now();
        tx.send_replace(Some(Validity {
            from: now + Duration::from_millis(200),
            until: now + Duration::from_millis(400),
        }));
        assert!(!h.held(), "not before the fencing delay");
        h.acquired().await;
        assert!(Instant::now() >= now + Duration::from_millis(200));
        assert!(h.held());
        h.lost().await;
        assert!(Instant::now() >= now + Duration::from_millis(400));
        assert!(!h.held());
    }

    #[tokio::test]
    async fn a_renewal_extends_and_a_loss_ends_at_once() {
        let (tx, rx) = watch::channel(None);
        let mut h = LeaseHandle { rx };
        let now = Instant::now();
        tx.send_replace(Some(Validity {
            from: now,
            until: now + Duration::from_millis(200),
        }));
        let tx2 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx2.send_modify(|v| v.as_mut().unwrap().until = now + Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx2.send_replace(None);
        });
        h.lost().await;
        let took = now.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn an_exited_holder_is_recognised_only_in_the_same_scope() {
        let me = holder_id();
        let here = own_scope();
        let scope = here.clone().unwrap_or_default();
        let mine = std::process::id();
        // A restarted container: the old holder had our pid.
        let old_me = format!("h/{mine}/0000beef");
        assert_eq!(
            holder_exited(&old_me, &scope, here.as_deref(), &me),
            here.is_some()
        );
        // Never ourselves, never another scope, never a pid that is alive.
        assert!(!holder_exited(&me, &scope, here.as_deref(), &me));
        assert!(!holder_exited(
            &old_me,
            "other-boot/host",
            here.as_deref(),
            &me
        ));
        assert!(!holder_exited(&old_me, &scope, None, &me));
        let parent = format!("h/{}/0", std::os::unix::process::parent_id());
        assert!(!holder_exited(&parent, &scope, here.as_deref(), &me));
        // A pid no process has (above the kernel's pid_max limit).
        let gone = "h/4194305/0";
        assert_eq!(
            holder_exited(gone, &scope, here.as_deref(), &me),
            here.is_some()
        );
        assert!(!holder_exited("garbage", &scope, here.as_deref(), &me));
    }

    #[test]
    fn timing_derives_from_the_ttl() {
        let c = LeaseConfig::default();
        assert_eq!(c.interval(), Duration::from_millis(2500));
        assert_eq!(c.stale_after(), Duration::from_secs(15));
        assert!(
            c.stale_after() > c.ttl,
            "takeover only after the holder stopped"
        );
    }
}
