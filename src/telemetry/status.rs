//! `/status`: desired against actual per service and per node, engines and their event
//! streams, the latest actions and the slots in backoff, as JSON; and the table
//! `drover status` prints from it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::recorder::{Recorded, Telemetry};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub project: String,
    pub version: String,
    /// drover's own container id (it never acts on it), when it runs in one.
    pub container: Option<String>,
    pub started_at: String,
    pub uptime_seconds: f64,
    pub ready: bool,
    /// Why it is not ready, one line per problem.
    pub not_ready: Vec<String>,
    pub nodes: Vec<NodeStatus>,
    pub services: Vec<ServiceStatus>,
    pub backoff: Vec<BackoffStatus>,
    pub stopped: Vec<StoppedStatus>,
    /// Oldest first.
    pub last_actions: Vec<ActionStatus>,
    pub config: ConfigStatus,
    /// This drover holds the project's lease and acts; false while it stands by for
    /// another drover.
    #[serde(default)]
    pub acting: bool,
    /// The project's lease: leader, term, the nodes that granted it to this drover, why
    /// this one stands by (absent when there is no lease, e.g. Swarm mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
    /// Swarm mode: Swarm's services (desired vs running tasks, why slots do not run) and
    /// nodes. `services` above then counts tasks per Swarm node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<super::swarm::Report>,
    /// Each service's image: the digest it runs, the newest seen, the last registry check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageStatus>,
    /// Each autoscaled service: bounds, the count wanted, each trigger's last value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autoscale: Vec<super::autoscale::AutoscaleStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The drover acting for the project (`host/pid/random`), when one is seen on a
    /// majority of the nodes.
    pub leader: Option<String>,
    pub term: Option<u64>,
    /// This drover.
    pub me: String,
    /// Nodes whose lease counts for this drover now.
    pub granted: Vec<String>,
    /// Nodes holding lease votes (witnesses included), and how many make a majority.
    pub nodes: usize,
    pub majority: usize,
    /// Why this drover stands by (`None`: it acts).
    pub standby: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStatus {
    pub service: String,
    pub image: String,
    /// How often the registry is asked (`None`: the service does not follow its tag).
    pub check_every: Option<String>,
    pub running: Option<String>,
    pub newest: Option<String>,
    pub pinned: Option<String>,
    /// A digest whose rollout failed: refused until the tag moves on.
    pub failed: Option<String>,
    pub last_check: Option<String>,
    pub next_check: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub name: String,
    /// `None` until the first pass.
    pub up: Option<bool>,
    /// Plain mode: `active`, `pause`, `drain` (`x-drover.nodes[].availability`), or
    /// `leaving` (removed from the list; drained until it holds nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    pub error: Option<String>,
    pub last_observed: Option<String>,
    pub event_stream: StreamStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamStatus {
    pub connected: bool,
    /// Seconds since the last event or reopen.
    pub silence_seconds: Option<f64>,
    pub events: u64,
    pub reconnects: u64,
    pub errors: u64,
    pub last_lag_seconds: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub desired: u32,
    /// Running containers, all nodes together.
    pub actual: u32,
    pub nodes: Vec<ServiceNodeStatus>,
    /// `running`, `starting`, `unhealthy`, `crash-loop`, `waiting`, `unplaceable`,
    /// `updating`, `paused`, `rolled-back`, `exited`, `degraded` (plain mode; after the
    /// first pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why, for every state but `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While an update is watched: replicas on the new definition, of all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Updated>,
    /// Restarts of its replicas since drover started (stopped ones started again, dead or
    /// unhealthy ones replaced).
    #[serde(default)]
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Updated {
    pub new: u32,
    pub of: u32,
}

/// One replica slot: its state, why, and its restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicaStatus {
    pub slot: u32,
    pub node: Option<String>,
    pub container: Option<String>,
    /// `running`, `starting`, `unhealthy`, `crash-loop`, `waiting`, `unplaceable`,
    /// `pending`, `exited`, `gave-up`.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub restarts: u64,
    /// Crash loop: attempts in the current run of crashes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Crash loop: seconds until the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceNodeStatus {
    pub node: String,
    pub desired: u32,
    pub actual: u32,
    /// Containers in any state.
    pub containers: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackoffStatus {
    pub service: String,
    pub slot: u32,
    pub node: String,
    pub attempts: u32,
    /// Seconds until the next attempt (0 when due).
    pub retry_in_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoppedStatus {
    pub service: String,
    pub slot: u32,
    pub node: String,
    pub container: String,
    pub exit_code: Option<i64>,
    /// Out of attempts (`max_attempts`); otherwise the restart policy leaves it exited.
    pub gave_up: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionStatus {
    pub time: String,
    pub node: String,
    pub action: String,
    pub service: Option<String>,
    pub slot: Option<u32>,
    pub container: Option<String>,
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigStatus {
    pub reload_failures: u64,
    /// The pending invalid edit, while the last good config runs.
    pub error: Option<String>,
    /// drover runs in a container: the paths it resolved, as handed to the engine
    /// (`drover's path -> host path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_paths: Vec<String>,
}

/// A container id as the Docker CLI shows it (12 characters).
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The status as of now.
pub fn snapshot(t: &Telemetry) -> Status {
    let r = t.lock();
    let now = SystemTime::now();
    let readiness = r.readiness();
    let nodes = node_statuses(&r);
    let services = service_statuses(&r, now);
    let (backoff, stopped) = (backoff_statuses(&r, now), stopped_statuses(&r));
    let last_actions = action_statuses(&r);
    Status {
        project: r.project.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        container: r.container.clone(),
        started_at: rfc3339(r.started),
        uptime_seconds: now
            .duration_since(r.started)
            .unwrap_or_default()
            .as_secs_f64(),
        ready: readiness.is_ok(),
        not_ready: readiness.err().unwrap_or_default(),
        nodes,
        services,
        backoff,
        stopped,
        last_actions,
        config: ConfigStatus {
            reload_failures: r.reload_failures,
            error: r.reload_error.clone(),
            host_paths: r.host_paths.clone(),
        },
        acting: r.acting,
        lease: r.lease.as_ref().map(|l| LeaseStatus {
            leader: l.leader.clone(),
            term: l.term,
            me: l.me.clone(),
            granted: l.granted.clone(),
            nodes: l.nodes,
            majority: l.majority,
            standby: l.standby.clone(),
        }),
        swarm: r.swarm.clone(),
        images: image_statuses(&r),
        autoscale: r.autoscale.values().cloned().collect(),
    }
}

fn image_statuses(r: &Recorded) -> Vec<ImageStatus> {
    r.images
        .values()
        .map(|i| ImageStatus {
            service: i.service.clone(),
            image: i.image.clone(),
            check_every: i.every.map(|d| humantime::format_duration(d).to_string()),
            running: i.running.clone(),
            newest: i.newest.clone(),
            pinned: i.pinned.clone(),
            failed: i.failed.clone(),
            last_check: i.last_check.map(rfc3339),
            next_check: i.next_check.map(rfc3339),
            error: i.error.clone(),
        })
        .collect()
}

/// Each engine and its event stream.
fn node_statuses(r: &Recorded) -> Vec<NodeStatus> {
    r.nodes
        .iter()
        .map(|(name, n)| NodeStatus {
            name: name.clone(),
            up: n.up,
            availability: n.availability.map(str::to_string),
            error: n.error.clone(),
            last_observed: n.last_observed.map(rfc3339),
            event_stream: StreamStatus {
                connected: n.stream.connected,
                silence_seconds: n.stream.last_activity.map(|t| t.elapsed().as_secs_f64()),
                events: n.stream.events,
                reconnects: n.stream.reconnects(),
                errors: n.stream.errors,
                last_lag_seconds: n.stream.last_lag,
                error: n.stream.error.clone(),
            },
        })
        .collect()
}

/// Each service, with its count per node.
fn service_statuses(r: &Recorded, now: SystemTime) -> Vec<ServiceStatus> {
    let mut services: BTreeMap<&str, ServiceStatus> = BTreeMap::new();
    for ((service, node), c) in &r.services {
        let s = services.entry(service).or_insert_with(|| ServiceStatus {
            name: service.clone(),
            desired: 0,
            actual: 0,
            nodes: Vec::new(),
            state: None,
            reason: None,
            updated: None,
            restarts: 0,
            replicas: Vec::new(),
        });
        s.desired += c.desired;
        s.actual += c.actual;
        s.nodes.push(ServiceNodeStatus {
            node: node.clone(),
            desired: c.desired,
            actual: c.actual,
            containers: c.containers,
        });
    }
    for (name, st) in &r.states {
        if let Some(s) = services.get_mut(name.as_str()) {
            with_state(s, st, r, now);
        }
    }
    services.into_values().collect()
}

/// The service's state and its replicas', with their restarts.
fn with_state(
    s: &mut ServiceStatus,
    st: &super::ServiceStateRecord,
    r: &Recorded,
    now: SystemTime,
) {
    s.state = Some(st.state.to_string());
    // The planner's count is the service's (a global service's: the nodes that should
    // hold one), whatever each node's list said.
    s.desired = st.desired;
    s.reason = (!st.reason.is_empty()).then(|| st.reason.clone());
    s.updated = st.updated.map(|(new, of)| Updated { new, of });
    let restarts = |slot: u32| {
        r.slot_restarts
            .get(&(st.service.clone(), slot))
            .copied()
            .unwrap_or(0)
    };
    s.restarts = r
        .slot_restarts
        .iter()
        .filter(|((svc, _), _)| *svc == st.service)
        .map(|(_, n)| n)
        .sum();
    s.replicas = st
        .replicas
        .iter()
        .map(|x| ReplicaStatus {
            slot: x.slot,
            node: x.node.clone(),
            container: x.container.clone(),
            state: x.state.to_string(),
            reason: x.reason.clone(),
            restarts: restarts(x.slot),
            attempts: x.attempts,
            retry_in_seconds: x
                .retry_at
                .map(|t| t.duration_since(now).unwrap_or_default().as_secs_f64()),
        })
        .collect();
}

/// The slots held back by crash backoff, and when they are tried again.
fn backoff_statuses(r: &Recorded, now: SystemTime) -> Vec<BackoffStatus> {
    r.waits
        .iter()
        .flat_map(|(node, ws)| {
            ws.iter().map(move |w| BackoffStatus {
                service: w.service.clone(),
                slot: w.slot,
                node: node.clone(),
                attempts: w.attempts,
                retry_in_seconds: w
                    .until
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64(),
            })
        })
        .collect()
}

/// The slots left exited on purpose.
fn stopped_statuses(r: &Recorded) -> Vec<StoppedStatus> {
    r.stopped
        .iter()
        .flat_map(|(node, ss)| {
            ss.iter().map(move |s| StoppedStatus {
                service: s.service.clone(),
                slot: s.slot,
                node: node.clone(),
                container: short_id(&s.container).to_string(),
                exit_code: s.exit_code,
                gave_up: s.gave_up,
            })
        })
        .collect()
}

/// The latest actions, oldest first.
fn action_statuses(r: &Recorded) -> Vec<ActionStatus> {
    r.last_actions
        .iter()
        .map(|a| ActionStatus {
            time: rfc3339(a.time),
            node: a.node.clone(),
            action: a.action.to_string(),
            service: a.service.clone(),
            slot: a.slot,
            container: a.container.clone(),
            reason: a.reason.map(str::to_string),
            duration_ms: a.duration.as_millis() as u64,
            error: a.error.clone(),
        })
        .collect()
}

/// Columns padded to their widest cell, two spaces apart.
pub(super) fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn secs(s: f64) -> String {
    let d = Duration::from_secs_f64(s.max(0.0));
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(120) {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(7200) {
        format!("{}m", d.as_secs() / 60)
    } else {
        format!("{}h", d.as_secs() / 3600)
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_string(), T::to_string)
}

/// The status as the tables `drover status` prints.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    heading(&mut out, s);
    out.push('\n');
    services_table(&mut out, s);
    states_table(&mut out, s);
    out.push('\n');
    nodes_table(&mut out, s);
    swarm_tables(&mut out, s);
    images_table(&mut out, s);
    super::autoscale::table(&mut out, &s.autoscale);
    slots_table(&mut out, s);
    out.push('\n');
    actions_table(&mut out, s);
    out
}

/// Digests shortened for the table: `sha256:` and 12 hex digits.
fn short_digest(d: &Option<String>) -> String {
    d.as_deref()
        .map(|d| d.get(..19).unwrap_or(d).to_string())
        .unwrap_or_else(|| "-".into())
}

/// Each service whose image digest is known or followed.
fn images_table(out: &mut String, s: &Status) {
    let shown: Vec<&ImageStatus> = s
        .images
        .iter()
        .filter(|i| i.check_every.is_some() || i.running.is_some())
        .collect();
    if shown.is_empty() {
        return;
    }
    out.push('\n');
    let mut rows = vec![
        [
            "SERVICE",
            "IMAGE",
            "RUNNING",
            "NEWEST",
            "REFUSED",
            "CHECK",
            "LAST CHECK",
            "ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for i in shown {
        rows.push(vec![
            i.service.clone(),
            i.image.clone(),
            short_digest(&i.running),
            short_digest(&i.newest),
            short_digest(&i.failed),
            i.check_every.clone().unwrap_or_else(|| "-".into()),
            i.last_check.clone().unwrap_or_else(|| "-".into()),
            i.error.clone().unwrap_or_default(),
        ]);
    }
    table(out, &rows);
}

/// The lease: who leads under which term, what granted it to this drover, why it waits.
fn lease_lines(out: &mut String, acting: bool, l: &LeaseStatus) {
    let leader = match (&l.leader, l.term) {
        (Some(h), Some(t)) if *h == l.me => format!("this drover ({h}), term {t}"),
        (Some(h), Some(t)) => format!("{h}, term {t}"),
        _ => "none seen".into(),
    };
    let granted = if l.granted.is_empty() {
        "-".to_string()
    } else {
        l.granted.join(",")
    };
    let _ = writeln!(
        out,
        "  lease: leader {leader}; granted to this drover by {granted} ({} of {}, {} needed)",
        l.granted.len(),
        l.nodes,
        l.majority
    );
    if !acting {
        let why = l.standby.as_deref().unwrap_or("the lease is not held");
        let _ = writeln!(out, "  standing by: {why}");
    }
}

/// The project, whether it is ready and why not, the config's state.
fn heading(out: &mut String, s: &Status) {
    let _ = writeln!(
        out,
        "project {}: {} (drover {}, up {}{})",
        s.project,
        if s.ready { "ready" } else { "NOT READY" },
        s.version,
        secs(s.uptime_seconds),
        s.container
            .as_deref()
            .map(|c| format!(", container {}", short_id(c)))
            .unwrap_or_default()
    );
    for why in &s.not_ready {
        let _ = writeln!(out, "  {why}");
    }
    match &s.lease {
        Some(l) => lease_lines(out, s.acting, l),
        None if !s.acting => {
            let _ = writeln!(
                out,
                "  standing by: another drover holds the project's lease (or this one has not taken it yet)"
            );
        }
        None => {}
    }
    if let Some(e) = &s.config.error {
        let _ = writeln!(
            out,
            "config: invalid edit pending (last good config runs): {e}"
        );
    }
    for t in &s.config.host_paths {
        let _ = writeln!(out, "host path: {t}");
    }
}

/// Each service's state and restarts, then the replicas that are not simply running.
fn states_table(out: &mut String, s: &Status) {
    if s.services.iter().all(|svc| svc.state.is_none()) {
        return;
    }
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "STATE".into(),
        "RESTARTS".into(),
        "REASON".into(),
    ]];
    let mut replicas = vec![vec![
        "REPLICA".to_string(),
        "NODE".into(),
        "STATE".into(),
        "RESTARTS".into(),
        "REASON".into(),
    ]];
    for svc in &s.services {
        let Some(state) = &svc.state else { continue };
        let state = match &svc.updated {
            Some(u) => format!("{state} ({}/{})", u.new, u.of),
            None => state.clone(),
        };
        let reason = svc.reason.clone().unwrap_or_default();
        rows.push(vec![
            svc.name.clone(),
            state,
            svc.restarts.to_string(),
            reason,
        ]);
        for r in svc.replicas.iter().filter(|r| r.state != "running") {
            let reason = match r.retry_in_seconds {
                Some(t) => format!("{}; next in {}", r.reason, secs(t)),
                None => r.reason.clone(),
            };
            replicas.push(vec![
                format!("{}-{}", svc.name, r.slot),
                r.node.clone().unwrap_or_default(),
                r.state.clone(),
                r.restarts.to_string(),
                reason,
            ]);
        }
    }
    out.push('\n');
    table(out, &rows);
    if replicas.len() > 1 {
        out.push('\n');
        table(out, &replicas);
    }
}

/// Desired against actual per service and node.
fn services_table(out: &mut String, s: &Status) {
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "NODE".into(),
        "DESIRED".into(),
        "ACTUAL".into(),
        "CONTAINERS".into(),
    ]];
    for svc in &s.services {
        for n in &svc.nodes {
            rows.push(vec![
                svc.name.clone(),
                n.node.clone(),
                n.desired.to_string(),
                n.actual.to_string(),
                n.containers.to_string(),
            ]);
        }
        if svc.nodes.len() > 1 {
            rows.push(vec![
                svc.name.clone(),
                "(all)".into(),
                svc.desired.to_string(),
                svc.actual.to_string(),
                svc.nodes
                    .iter()
                    .map(|n| n.containers)
                    .sum::<u32>()
                    .to_string(),
            ]);
        }
    }
    table(out, &rows);
}

/// The engines and their event streams.
fn nodes_table(out: &mut String, s: &Status) {
    let mut rows = vec![vec![
        "NODE".to_string(),
        "UP".into(),
        "AVAILABILITY".into(),
        "EVENTS".into(),
        "SILENT".into(),
        "RECONNECTS".into(),
        "LAST LAG".into(),
        "ERROR".into(),
    ]];
    for n in &s.nodes {
        let stream = &n.event_stream;
        rows.push(vec![
            n.name.clone(),
            match n.up {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "?".into(),
            },
            n.availability.clone().unwrap_or_else(|| "-".into()),
            if stream.connected { "open" } else { "closed" }.into(),
            stream.silence_seconds.map_or("-".into(), secs),
            stream.reconnects.to_string(),
            stream.last_lag_seconds.map_or("-".into(), secs),
            n.error.clone().or(stream.error.clone()).unwrap_or_default(),
        ]);
    }
    table(out, &rows);
}

/// Swarm mode: Swarm's nodes, and the task slots that do not run.
fn swarm_tables(out: &mut String, s: &Status) {
    if let Some(sw) = &s.swarm {
        out.push('\n');
        let mut rows = vec![vec![
            "SWARM NODE".to_string(),
            "HOSTNAME".into(),
            "ROLE".into(),
            "STATE".into(),
            "AVAILABILITY".into(),
            "DESIRED".into(),
            "RUNNING".into(),
        ]];
        for (id, n) in &sw.nodes {
            rows.push(vec![
                id.clone(),
                n.hostname.clone(),
                n.role.clone(),
                n.state.clone(),
                n.availability.clone(),
                n.desired.to_string(),
                n.running.to_string(),
            ]);
        }
        table(out, &rows);
        let problems: Vec<(&String, &super::swarm::TaskProblem)> = sw
            .services
            .iter()
            .flat_map(|(name, svc)| svc.problems.iter().map(move |p| (name, p)))
            .collect();
        if !problems.is_empty() {
            out.push('\n');
            let mut rows = vec![vec![
                "TASK SLOT".to_string(),
                "NODE".into(),
                "STATE".into(),
                "REASON".into(),
            ]];
            for (name, p) in problems {
                rows.push(vec![
                    match p.slot {
                        Some(n) => format!("{name}.{n}"),
                        None => name.clone(),
                    },
                    p.node
                        .as_deref()
                        .map_or("-".to_string(), |n| sw.node_label(n)),
                    p.state.clone(),
                    p.reason.clone(),
                ]);
            }
            table(out, &rows);
        }
    }
}

/// Slots held back by crash backoff or left exited.
fn slots_table(out: &mut String, s: &Status) {
    if !s.backoff.is_empty() || !s.stopped.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "SLOT".to_string(),
            "NODE".into(),
            "STATE".into(),
            "DETAIL".into(),
        ]];
        for b in &s.backoff {
            rows.push(vec![
                format!("{}-{}", b.service, b.slot),
                b.node.clone(),
                "backoff".into(),
                format!(
                    "attempt {} failed; next in {}",
                    b.attempts,
                    secs(b.retry_in_seconds)
                ),
            ]);
        }
        for st in &s.stopped {
            rows.push(vec![
                format!("{}-{}", st.service, st.slot),
                st.node.clone(),
                if st.gave_up { "gave up" } else { "left exited" }.into(),
                format!(
                    "container {} exit code {}",
                    st.container,
                    opt(&st.exit_code)
                ),
            ]);
        }
        table(out, &rows);
    }
}

/// The latest actions, newest last.
fn actions_table(out: &mut String, s: &Status) {
    if s.last_actions.is_empty() {
        out.push_str("no actions yet\n");
    } else {
        let mut rows = vec![vec![
            "TIME".to_string(),
            "NODE".into(),
            "ACTION".into(),
            "SLOT".into(),
            "CONTAINER".into(),
            "REASON".into(),
            "TOOK".into(),
            "RESULT".into(),
        ]];
        // The latest ten, newest last.
        for a in s.last_actions.iter().rev().take(10).rev() {
            rows.push(vec![
                a.time.clone(),
                a.node.clone(),
                a.action.clone(),
                match (&a.service, a.slot) {
                    (Some(s), Some(n)) => format!("{s}-{n}"),
                    (Some(s), None) => s.clone(),
                    _ => "-".into(),
                },
                opt(&a.container),
                opt(&a.reason),
                format!("{}ms", a.duration_ms),
                a.error.clone().unwrap_or_else(|| "ok".into()),
            ]);
        }
        table(out, &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::LeaseRecord;

    #[test]
    fn table_lines_up_and_json_round_trips() {
        let t = Telemetry::new("demo", Duration::from_secs(60), None);
        t.add_node("unix:///var/run/docker.sock");
        let s = snapshot(&t);
        assert!(!s.ready);
        let json = serde_json::to_string(&s).unwrap();
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let text = render_table(&s);
        assert!(text.starts_with("project demo: NOT READY"), "{text}");
        assert!(text.contains("not observed yet"), "{text}");
        let mut out = String::new();
        table(
            &mut out,
            &[
                vec!["A".into(), "BB".into(), "C".into()],
                vec!["aaa".into(), "b".into(), "c".into()],
            ],
        );
        assert_eq!(out, "A    BB  C\naaa  b   c\n");
    }

    #[test]
    fn the_lease_shows_the_leader_its_term_the_grants_and_why_a_drover_waits() {
        let t = Telemetry::new("demo", Duration::from_secs(60), None);
        t.lease(LeaseRecord {
            leader: Some("h2/7/ab".into()),
            term: Some(4),
            me: "h1/9/cd".into(),
            granted: vec![],
            node_names: vec!["a".into(), "b".into(), "c".into()],
            nodes: 3,
            majority: 2,
            standby: Some("another drover leads: h2/7/ab (term 4) on a,b,c".into()),
        });
        let s = snapshot(&t);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        let text = render_table(&s);
        assert!(
            text.contains(
                "  lease: leader h2/7/ab, term 4; granted to this drover by - (0 of 3, 2 needed)"
            ),
            "{text}"
        );
        assert!(
            text.contains("  standing by: another drover leads: h2/7/ab (term 4) on a,b,c"),
            "{text}"
        );
        let metrics = crate::telemetry::metrics::render(&t);
        assert!(
            metrics.contains("drover_lease_term{project=\"demo\"} 4"),
            "{metrics}"
        );
        assert!(metrics.contains("drover_lease_grants{project=\"demo\"} 0"));
        assert!(metrics.contains("drover_lease_granted{project=\"demo\",node=\"b\"} 0"));
        // The leader itself.
        t.acting(true);
        let before = t.lock().lease.clone().unwrap();
        t.lease(LeaseRecord {
            leader: Some("h1/9/cd".into()),
            me: "h1/9/cd".into(),
            granted: vec!["a".into(), "c".into()],
            standby: None,
            ..before
        });
        let text = render_table(&snapshot(&t));
        assert!(
            text.contains("  lease: leader this drover (h1/9/cd), term 4; granted to this drover by a,c (2 of 3, 2 needed)"),
            "{text}"
        );
        assert!(!text.contains("standing by"), "{text}");
    }

    #[test]
    fn a_followed_image_shows_its_digests_in_status_table_and_metrics() {
        use crate::telemetry::ImageRecord;
        let t = Telemetry::new("demo", Duration::from_secs(60), None);
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        t.images(vec![ImageRecord {
            service: "web".into(),
            image: "reg:5000/app:live".into(),
            every: Some(Duration::from_secs(600)),
            running: Some(a.clone()),
            newest: Some(b.clone()),
            failed: Some(b.clone()),
            last_check: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ..Default::default()
        }]);
        t.image_checked("web", "refused");
        let s = snapshot(&t);
        assert_eq!(s.images[0].running.as_deref(), Some(a.as_str()));
        assert_eq!(s.images[0].check_every.as_deref(), Some("10m"));
        let table = render_table(&s);
        assert!(table.contains("reg:5000/app:live"), "{table}");
        assert!(table.contains("sha256:aaaaaaaaaaaa "), "{table}");
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let m = crate::telemetry::metrics::render(&t);
        assert!(
            m.contains(&format!(
                "drover_image_info{{project=\"demo\",service=\"web\",image=\"reg:5000/app:live\",running=\"{a}\",newest=\"{b}\"}} 1"
            )),
            "{m}"
        );
        assert!(m.contains("drover_image_up_to_date{project=\"demo\",service=\"web\"} 0"));
        assert!(m.contains(
            "drover_image_checks_total{project=\"demo\",service=\"web\",result=\"refused\"} 1"
        ));
        assert!(m.contains(
            "drover_image_last_check_timestamp_seconds{project=\"demo\",service=\"web\"} 1700000000"
        ));
    }

    #[test]
    fn translated_host_paths_show_in_status_and_change_only_when_they_do() {
        use crate::telemetry::HostPathsRecord;
        let t = Telemetry::new("demo", Duration::from_secs(60), None);
        let host = HostPathsRecord {
            reason: "host-project-dir",
            container: String::new(),
            paths: vec!["/config/data -> /home/u/app/data".into()],
        };
        t.host_paths(host.clone());
        t.host_paths(host);
        let s = snapshot(&t);
        assert_eq!(s.config.host_paths, ["/config/data -> /home/u/app/data"]);
        assert!(
            render_table(&s).contains("host path: /config/data -> /home/u/app/data"),
            "{}",
            render_table(&s)
        );
        let back: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        t.host_paths(HostPathsRecord::default());
        let s = snapshot(&t);
        assert!(s.config.host_paths.is_empty());
        assert!(!serde_json::to_string(&s).unwrap().contains("host_paths"));
    }
}
