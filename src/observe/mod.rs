//! Observed state: what the engine says exists, as plain data for the planner.
//!
//! The engine is the source of truth. A [`snapshot`] is one list of the project's
//! containers, plus an inspect of the few that are not running (and the networks and
//! volumes when a pass needs them). Where a node's events reach the loop, a kept snapshot
//! is brought up to date with [`patch`] instead: an inspect of each container the events
//! named, so that noticing one change costs the same whatever the size of the project. The
//! events only say what to look at; the node is listed again at its resync and whenever its
//! stream reopens without resuming, so a lost event costs at most one resync interval,
//! never a wrong count.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::SystemTime;

use futures::StreamExt;

use crate::engine::model::{ContainerInspectResponse, ContainerState, Network, parse_time};
pub use crate::engine::model::{VolumeMount, anonymous_volumes};
use crate::engine::{Engine, EngineError, Filters};
use crate::labels::LABEL_PROJECT;
use crate::mesh::Proto;

mod addresses;
mod labels;
pub use addresses::Addresses;
pub use labels::Labels;

/// The lifecycle state of a container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
    Unknown,
}

impl State {
    pub fn parse(s: &str) -> State {
        match s {
            "created" => State::Created,
            "running" => State::Running,
            "paused" => State::Paused,
            "restarting" => State::Restarting,
            "exited" => State::Exited,
            "removing" => State::Removing,
            "dead" => State::Dead,
            _ => State::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Removing => "removing",
            State::Dead => "dead",
            State::Unknown => "unknown",
        }
    }
}

/// What the container's healthcheck says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// No healthcheck.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// From the list's status text, e.g. `Up 5 seconds (unhealthy)`.
    pub fn from_status(status: &str) -> Health {
        if status.contains("(unhealthy)") {
            Health::Unhealthy
        } else if status.contains("(healthy)") {
            Health::Healthy
        } else if status.contains("(health: starting)") {
            Health::Starting
        } else {
            Health::None
        }
    }
}

/// One container as seen by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Full engine id.
    pub id: String,
    /// The node (engine) the container was listed on.
    pub node: String,
    /// Name without the leading slash.
    pub name: String,
    pub labels: Labels,
    pub state: State,
    pub health: Health,
    /// Exit code of the last run, when the container has exited.
    pub exit_code: Option<i64>,
    /// When the container was created (from the list; seconds precision).
    pub created: Option<SystemTime>,
    /// When the last run started and finished (filled for containers that are not running).
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// The anonymous volumes mounted in it (from an image's `VOLUME`, a service volume
    /// with no source, or taken over from the slot's previous container).
    pub anonymous_volumes: Vec<VolumeMount>,
    /// The host ports it publishes (from the list).
    pub published: Vec<Published>,
    /// Its address on each network it joined, by the network's engine name.
    pub addresses: Addresses,
}

/// One host port a container publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The host address it is bound to; `None` for every address.
    pub ip: Option<IpAddr>,
    pub private: u16,
    pub public: u16,
    pub proto: Proto,
}

impl Container {
    /// The 12-character id used in logs, as the Docker CLI shows it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    pub fn project(&self) -> Option<&str> {
        self.labels.read().project.as_deref()
    }

    pub fn service(&self) -> Option<&str> {
        self.labels.read().service.as_deref()
    }

    /// The slot label, when present and a positive integer.
    pub fn slot(&self) -> Option<u32> {
        self.labels.read().slot
    }

    /// When this copy of its slot was placed; 0 for containers from before generations.
    pub fn generation(&self) -> u64 {
        self.labels.read().generation
    }

    /// The lease term of the drover that created this container; 0 for containers from
    /// before terms, or made without a lease.
    pub fn term(&self) -> u64 {
        self.labels.read().term
    }

    /// Which of two copies of one slot is the newer: the higher lease term first (a late
    /// write of an old leader loses, whatever its clock said), then the later placement.
    pub fn placement(&self) -> (u64, u64) {
        (self.term(), self.generation())
    }

    /// The project network key of an ambassador (see [`crate::mesh`]).
    pub fn ambassador(&self) -> Option<&str> {
        self.labels.read().ambassador.as_deref()
    }

    /// The host port that reaches this container's `port` from `address`: one published on
    /// that address or on every address.
    pub fn published_on(&self, address: IpAddr, port: u16, proto: Proto) -> Option<u16> {
        self.published
            .iter()
            .filter(|p| p.private == port && p.proto == proto)
            .find(|p| p.ip.is_none_or(|ip| ip == address || ip.is_unspecified()))
            .map(|p| p.public)
    }

    /// The node address its ports are published on for other nodes (`drover.mesh-address`).
    pub fn mesh_address(&self) -> Option<IpAddr> {
        self.labels.read().mesh_address
    }

    pub fn config_hash(&self) -> Option<&str> {
        self.labels.read().config_hash.as_deref()
    }

    /// The registry digest of the image it was created from (`drover.image-digest`).
    pub fn image_digest(&self) -> Option<&str> {
        self.labels.read().image_digest.as_deref()
    }

    /// Whether it runs `svc`'s current revision: the config hash, and the pinned image
    /// digest when the service has one (a container without the digest label does not).
    pub fn runs(&self, svc: &crate::config::Service) -> bool {
        self.config_hash() == Some(svc.config_hash.as_str())
            && svc
                .digest
                .as_deref()
                .is_none_or(|d| self.image_digest() == Some(d))
    }

    /// True when the container carries `drover.project=<project>`: only such containers are
    /// ever stopped, removed or changed.
    /// Whether a list shows `other` as it shows this container: the same name, drover's
    /// labels, state and health (a list does not read run times or exit codes).
    pub fn listed_as(&self, other: &Container) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.labels == other.labels
            && self.state == other.state
            && self.health == other.health
    }

    pub fn owned_by(&self, project: &str) -> bool {
        self.project() == Some(project)
    }

    /// How long the last run lasted, when both ends are known.
    pub fn last_run(&self) -> Option<std::time::Duration> {
        let (s, f) = (self.started_at?, self.finished_at?);
        f.duration_since(s).ok()
    }

    /// Take the live state an inspect read: state, health, exit code, run times.
    fn take_state(&mut self, st: ContainerState) {
        if let Some(status) = st.status {
            self.state = State::parse(status.as_ref());
        }
        if let Some(h) = st.health.and_then(|h| h.status) {
            self.health = match h.as_ref() {
                "healthy" => Health::Healthy,
                "unhealthy" => Health::Unhealthy,
                "starting" => Health::Starting,
                _ => Health::None,
            };
        }
        self.exit_code = st.exit_code;
        self.started_at = st.started_at.as_deref().and_then(parse_time);
        self.finished_at = st.finished_at.as_deref().and_then(parse_time);
    }

    /// The container an inspect describes, on `node`, as a list and an inspect of it would
    /// show it (the creation time to the second, as the list gives it).
    pub fn from_inspect(node: &str, details: ContainerInspectResponse) -> Option<Container> {
        let id = details.id?;
        let created = details
            .created
            .as_deref()
            .and_then(parse_time)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()));
        let mut c = Container {
            id,
            node: node.to_string(),
            name: details
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            labels: details
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .into(),
            state: State::Unknown,
            health: Health::None,
            exit_code: None,
            created,
            started_at: None,
            finished_at: None,
            anonymous_volumes: anonymous_volumes(details.mounts.as_deref().unwrap_or_default()),
            published: Vec::new(),
            addresses: Addresses::default(),
        };
        if let Some(net) = details.network_settings {
            c.published = published_ports(net.ports.unwrap_or_default());
            c.addresses = net
                .networks
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, e)| Some((name, e.ip_address?.parse().ok()?)))
                .collect();
        }
        if let Some(st) = details.state {
            c.take_state(st);
        }
        Some(c)
    }
}

pub use crate::engine::short_id;

/// Everything the planner needs to know about one engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    /// Engine names of existing networks.
    pub networks: BTreeSet<String>,
    /// Engine names of existing volumes.
    pub volumes: BTreeSet<String>,
    /// Whether `networks`, `volumes` and `duplicate_networks` were listed (see
    /// [`list_infra`]); when false they are empty and say nothing.
    pub infra_listed: bool,
    /// Networks of this project that repeat the name of an older network of this project
    /// (the engine allows it): each is ambiguous to every container that joins by name.
    pub duplicate_networks: Vec<NetworkRef>,
}

/// One network, by id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRef {
    pub id: String,
    pub name: String,
}

impl Snapshot {
    /// Forget the networks and volumes, as in a fresh snapshot: a pass that needs them lists
    /// them again ([`list_infra`]).
    pub fn forget_infra(&mut self) {
        self.networks.clear();
        self.volumes.clear();
        self.duplicate_networks.clear();
        self.infra_listed = false;
    }

    /// Take the networks and volumes `kept` had listed, if it had: a fresh list of the
    /// containers says nothing of them.
    pub fn keep_infra(&mut self, kept: Snapshot) {
        if kept.infra_listed {
            self.networks = kept.networks;
            self.volumes = kept.volumes;
            self.duplicate_networks = kept.duplicate_networks;
            self.infra_listed = true;
        }
    }

    /// What this list shows of `project`, as telemetry records it: per service, the
    /// replicas wanted on this node (`project` is what should run here) and the containers
    /// found, and the slots that have one: of every container, or (a snapshot patched from
    /// what events named) of the containers in `only`, the others' slots having been
    /// recorded when they were. `exclude` is drover's own container.
    pub fn observation(
        &self,
        project: &crate::config::Project,
        exclude: Option<&str>,
        only: Option<&HashSet<String>>,
    ) -> crate::telemetry::Observation {
        use crate::telemetry::Counts;
        let mut seen = crate::telemetry::Observation {
            services: project
                .services
                .iter()
                .map(|(name, s)| {
                    let counts = Counts {
                        desired: s.replicas,
                        ..Counts::default()
                    };
                    (name.clone(), counts)
                })
                .collect(),
            slots: BTreeSet::new(),
        };
        for c in &self.containers {
            if !c.owned_by(&project.name) || exclude.is_some_and(|me| c.id.starts_with(me)) {
                continue;
            }
            let Some(service) = c.service() else { continue };
            // Looked up before inserting: a name is copied once per service, not per
            // container.
            let e = match seen.services.get_mut(service) {
                Some(e) => e,
                None => seen.services.entry(service.to_string()).or_default(),
            };
            e.containers += 1;
            if c.state == State::Running {
                e.actual += 1;
            }
            // A few ids are compared one by one: cheaper than hashing every container's.
            let named = |ids: &HashSet<String>| match ids.len() {
                0..=FEW_IDS => ids.iter().any(|id| *id == c.id),
                _ => ids.contains(&c.id),
            };
            if let Some(slot) = c.slot()
                && only.is_none_or(named)
            {
                seen.slots.insert((service.to_string(), slot));
            }
        }
        seen
    }

    /// How many of `project`'s containers here run each image digest, by service
    /// (`drover.image-digest`; drover's own container, `exclude`, left out).
    pub fn digests(&self, project: &str, exclude: Option<&str>) -> Digests {
        let mut out = Digests::new();
        let mine = self
            .containers
            .iter()
            .filter(|c| c.owned_by(project) && exclude.is_none_or(|me| !c.id.starts_with(me)));
        for c in mine {
            if let (Some(svc), Some(d)) = (c.service(), c.image_digest()) {
                count_digest(&mut out, svc, d, 1);
            }
        }
        out
    }
}

/// How many containers run each image digest, by service.
pub type Digests = BTreeMap<String, BTreeMap<String, usize>>;

/// Count `n` more containers of `service` running `digest`.
pub fn count_digest(into: &mut Digests, service: &str, digest: &str, n: usize) {
    let by = match into.get_mut(service) {
        Some(by) => by,
        None => into.entry(service.to_string()).or_default(),
    };
    match by.get_mut(digest) {
        Some(c) => *c += n,
        None => {
            by.insert(digest.to_string(), n);
        }
    }
}

/// The project's networks that share a name with an older one of the project: all but
/// the oldest of each name (by creation time, then id, so that every drover picks the
/// same one to keep). Containers already on a network can only be on the oldest one: once
/// a second network of the name exists, joining by name fails.
pub fn duplicate_networks(networks: &[Network], project: &str) -> Vec<NetworkRef> {
    let mut by_name: BTreeMap<&str, Vec<(Option<SystemTime>, &str)>> = BTreeMap::new();
    for n in networks {
        let (Some(name), Some(id)) = (n.name.as_deref(), n.id.as_deref()) else {
            continue;
        };
        let ours = n
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_PROJECT))
            .is_some_and(|p| p == project);
        if ours {
            let created = n.created.as_deref().and_then(parse_time);
            by_name.entry(name).or_default().push((created, id));
        }
    }
    let mut out = Vec::new();
    for (name, mut copies) in by_name {
        copies.sort_by(|a, b| {
            // Unknown creation times sort last.
            (a.0.is_none(), a.0, a.1).cmp(&(b.0.is_none(), b.0, b.1))
        });
        out.extend(copies.into_iter().skip(1).map(|(_, id)| NetworkRef {
            id: id.to_string(),
            name: name.to_string(),
        }));
    }
    out
}

/// Inspects in flight at once while taking a snapshot.
const INSPECT_PARALLEL: usize = 8;

/// Take a fresh snapshot of one project on one engine: one list of the project's
/// containers, and an inspect of each one that is not running (for exit code and run
/// times) or that an event just named (the list can lag behind an exit). Networks and
/// volumes are added by [`list_infra`] when a pass needs them.
pub async fn snapshot(
    engine: &dyn Engine,
    node: &str,
    project: &str,
    changed: &HashSet<String>,
) -> Result<Snapshot, EngineError> {
    let mut containers = list(engine, node, project).await?;
    refresh(engine, &mut containers, changed).await?;
    Ok(Snapshot {
        containers,
        ..Default::default()
    })
}

/// The project's containers as the list shows them (state, health and creation time from
/// the list; exit codes and run times are left to [`refresh`]).
async fn list(
    engine: &dyn Engine,
    node: &str,
    project: &str,
) -> Result<Vec<Container>, EngineError> {
    let filters = Filters::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )]);
    let list = engine.list_containers(filters).await?;
    let mut containers = Vec::with_capacity(list.len());
    for summary in list {
        let Some(id) = summary.id else { continue };
        let state = summary
            .state
            .map(|s| State::parse(s.as_ref()))
            .unwrap_or(State::Unknown);
        let c = Container {
            node: node.to_string(),
            name: summary
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            id,
            labels: summary.labels.unwrap_or_default().into(),
            health: summary
                .status
                .as_deref()
                .map(Health::from_status)
                .unwrap_or_default(),
            state,
            created: summary
                .created
                .and_then(|t| u64::try_from(t).ok())
                .map(|t| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t)),
            exit_code: None,
            started_at: None,
            finished_at: None,
            anonymous_volumes: anonymous_volumes(summary.mounts.as_deref().unwrap_or_default()),
            published: published(summary.ports.as_deref().unwrap_or_default()),
            addresses: summary
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, e)| Some((name, e.ip_address?.parse().ok()?)))
                .collect(),
        };
        containers.push(c);
    }
    Ok(containers)
}

/// The host ports of a list entry (TCP and UDP).
fn published(ports: &[crate::engine::model::PortSummary]) -> Vec<Published> {
    use crate::engine::model::PortSummaryTypeEnum as T;
    ports
        .iter()
        .filter_map(|p| {
            let proto = match p.typ {
                Some(T::TCP) => Proto::Tcp,
                Some(T::UDP) => Proto::Udp,
                _ => return None,
            };
            Some(Published {
                ip: p.ip.as_deref().and_then(|ip| ip.parse().ok()),
                private: p.private_port,
                public: p.public_port?,
                proto,
            })
        })
        .collect()
}

/// The host ports of an inspect (TCP and UDP), as the list shows them: one entry per
/// binding, in the order of the container ports.
fn published_ports(ports: crate::engine::model::PortMap) -> Vec<Published> {
    let mut ports: Vec<_> = ports.into_iter().collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (key, bindings) in ports {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => continue,
        };
        let Ok(private) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let Some(public) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            out.push(Published {
                ip: b.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
                private,
                public,
                proto,
            });
        }
    }
    out
}

/// Inspect, a few at a time, the containers that are not running or that an event named,
/// for their live state, exit code and run times; one removed since the list is left out.
async fn refresh(
    engine: &dyn Engine,
    containers: &mut Vec<Container>,
    changed: &HashSet<String>,
) -> Result<(), EngineError> {
    let wanted: Vec<(usize, String)> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            !matches!(c.state, State::Running | State::Paused) || changed.contains(&c.id)
        })
        .map(|(i, c)| (i, c.id.clone()))
        .collect();
    let checks = wanted
        .into_iter()
        .map(|(i, id)| async move { (i, engine.inspect_container(&id).await) });
    // Each answer is applied as it comes: collected first, a node of thousands of created
    // containers held thousands of full inspect answers (a few KB each) at once.
    let mut results = futures::stream::iter(checks).buffer_unordered(INSPECT_PARALLEL);
    let mut gone = HashSet::new();
    while let Some((i, result)) = results.next().await {
        match result {
            Ok(details) => {
                if let (Some(st), Some(c)) = (details.state, containers.get_mut(i)) {
                    c.take_state(st);
                }
            }
            // Removed between the list and the inspect: leave it out.
            Err(e) if e.is_not_found() => {
                gone.insert(i);
            }
            Err(e) => return Err(e),
        }
    }
    if !gone.is_empty() {
        let mut i = 0;
        containers.retain(|_| {
            let keep = !gone.contains(&i);
            i += 1;
            keep
        });
    }
    Ok(())
}

/// Bring a kept snapshot of one project on one engine up to date without listing: inspect
/// each container `ids` names (full ids or unique prefixes, in parallel as a list would be
/// refreshed) and put what the engine says in place of what `snapshot` had: a container of
/// the project is added or replaced, one that is gone (or no longer the project's) is left
/// out. Networks and volumes are kept as they were listed (see [`Snapshot::forget_infra`]).
/// On an error `snapshot` holds what was patched so far. True when a container was added
/// or left out (those kept may have moved); false when each stayed where it was.
pub async fn patch(
    engine: &dyn Engine,
    node: &str,
    project: &str,
    snapshot: &mut Snapshot,
    ids: &HashSet<String>,
) -> Result<bool, EngineError> {
    if ids.is_empty() {
        return Ok(false);
    }
    let checks = ids.iter().filter(|id| !id.is_empty()).map(|id| async move {
        let r = engine.inspect_container(id).await;
        (id, r)
    });
    let mut results = futures::stream::iter(checks).buffer_unordered(INSPECT_PARALLEL);
    // Where each kept container is, by id: a burst names thousands of containers, and
    // looking each one up by a scan of the node's containers made the patch quadratic.
    // A few ids are looked up by a scan; more by an index built once.
    let containers = &mut snapshot.containers;
    let mut at: Option<HashMap<String, usize>> = (ids.len() > FEW_IDS).then(|| {
        containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect()
    });
    let mut gone: HashSet<String> = HashSet::new();
    let mut gone_prefixes: Vec<&str> = Vec::new();
    let mut reshaped = false;
    while let Some((id, result)) = results.next().await {
        let found = match result {
            Ok(details) => Container::from_inspect(node, details),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        match found {
            Some(c) if c.owned_by(project) => {
                let kept = match &at {
                    Some(at) => at.get(&c.id).copied(),
                    None => containers.iter().position(|k| k.id == c.id),
                };
                match kept {
                    Some(i) => containers[i] = c,
                    None => {
                        if let Some(at) = at.as_mut() {
                            at.insert(c.id.clone(), containers.len());
                        }
                        containers.push(c);
                        reshaped = true;
                    }
                }
            }
            Some(c) => {
                gone.insert(c.id);
            }
            // Gone from the engine: named by its full id, or by a prefix of it.
            None if id.len() == FULL_ID => {
                gone.insert(id.clone());
            }
            None => gone_prefixes.push(id.as_str()),
        }
    }
    if !gone.is_empty() || !gone_prefixes.is_empty() {
        let before = containers.len();
        containers.retain(|k| {
            !gone.contains(&k.id) && !gone_prefixes.iter().any(|p| k.id.starts_with(p))
        });
        reshaped |= containers.len() != before;
    }
    Ok(reshaped)
}

/// The length of a container's full id.
const FULL_ID: usize = 64;

/// Up to this many named containers are found one by one, not through an index or a
/// hash of every id: a patch scans the node's containers for each, an observation compares
/// each container's id with each of them, and the planner finds each among its service's
/// on its node (`plan::groups`).
pub const FEW_IDS: usize = 8;

/// Add the node's networks and volumes to `snapshot` (a pass needs them only when it is
/// about to create or start containers there, so an idle pass stays at one list).
pub async fn list_infra(
    engine: &dyn Engine,
    project: &str,
    snapshot: &mut Snapshot,
) -> Result<(), EngineError> {
    let listed = engine.list_networks(Filters::new()).await?;
    snapshot.duplicate_networks = duplicate_networks(&listed, project);
    snapshot.networks = listed.into_iter().filter_map(|n| n.name).collect();
    snapshot.volumes = engine
        .list_volumes(Filters::new())
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    snapshot.infra_listed = true;
    Ok(())
}

/// The routes each running ambassador of `snapshot` serves now, by container id, asked
/// inside each (`drover ambassador --show`); one that does not answer is left out.
pub async fn ambassador_routes(
    engine: &dyn Engine,
    snapshot: &Snapshot,
) -> std::collections::BTreeMap<String, crate::mesh::Routes> {
    let running = snapshot
        .containers
        .iter()
        .filter(|c| c.ambassador().is_some() && c.state == State::Running);
    let asked = futures::future::join_all(running.map(|c| async move {
        let (code, out) = engine.exec(&c.id, crate::mesh::show_command()).await.ok()?;
        let routes = serde_json::from_str(out.trim())
            .ok()
            .filter(|_| code == 0)?;
        Some((c.id.clone(), routes))
    }))
    .await;
    asked.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::labels::{LABEL_SERVICE, LABEL_SLOT};

    fn net(id: &str, name: &str, project: Option<&str>, created: &str) -> Network {
        Network {
            id: Some(id.into()),
            name: Some(name.into()),
            created: Some(created.into()),
            labels: project.map(|p| HashMap::from([(LABEL_PROJECT.to_string(), p.to_string())])),
            ..Default::default()
        }
    }

    /// One list; an inspect only of what is not running or was named by an event.
    #[tokio::test]
    async fn a_snapshot_lists_once_and_inspects_only_what_it_must() {
        use crate::engine::fake::FakeEngine;
        use crate::engine::model::ContainerCreateBody;
        let e = FakeEngine::default();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        e.set_clock(t0);
        let body = |project: &str, slot: &str| ContainerCreateBody {
            labels: Some(HashMap::from([
                (LABEL_PROJECT.to_string(), project.to_string()),
                (LABEL_SERVICE.to_string(), "web".to_string()),
                (LABEL_SLOT.to_string(), slot.to_string()),
            ])),
            ..Default::default()
        };
        let mut ids = Vec::new();
        for (name, project, slot) in [
            ("p-web-1", "p", "1"),
            ("p-web-2", "p", "2"),
            ("p-web-3", "p", "3"),
            ("q-web-1", "q", "1"),
        ] {
            let id = e
                .create_container(name, None, body(project, slot))
                .await
                .unwrap();
            e.start_container(&id).await.unwrap();
            ids.push(id);
        }
        e.advance(std::time::Duration::from_secs(2));
        e.exit("p-web-2", 3);
        e.take_calls();

        let changed = HashSet::from([ids[2].clone()]);
        let snap = snapshot(&e, "n1", "p", &changed).await.unwrap();
        let mut calls = e.take_calls();
        calls[1..].sort();
        assert_eq!(
            calls,
            [
                format!("list label={LABEL_PROJECT}=p"),
                "inspect p-web-2".to_string(),
                "inspect p-web-3".to_string(),
            ]
        );
        let by_name: HashMap<&str, &Container> = snap
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        assert_eq!(by_name.len(), 3);
        assert_eq!(by_name["p-web-1"].state, State::Running);
        let crashed = by_name["p-web-2"];
        assert_eq!((crashed.state, crashed.exit_code), (State::Exited, Some(3)));
        assert_eq!(crashed.last_run(), Some(std::time::Duration::from_secs(2)));
        assert_eq!(crashed.slot(), Some(2));

        e.fail("list", crate::engine::Kind::Api(500), 1);
        let err = snapshot(&e, "n1", "p", &changed).await.unwrap_err();
        assert_eq!(err.kind, crate::engine::Kind::Api(500));

        let mut snap = Snapshot::default();
        e.add_network("p_default", &[(LABEL_PROJECT, "p")], t0);
        e.add_network(
            "p_default",
            &[(LABEL_PROJECT, "p")],
            t0 + std::time::Duration::from_secs(1),
        );
        list_infra(&e, "p", &mut snap).await.unwrap();
        assert!(snap.infra_listed);
        assert_eq!(snap.networks, BTreeSet::from(["p_default".to_string()]));
        assert_eq!(snap.duplicate_networks.len(), 1);
    }

    /// A kept snapshot is brought up to date by inspecting only the named containers: an
    /// exit is taken, a removed one left out, a new one added, another project's ignored;
    /// no list.
    #[tokio::test]
    async fn a_patch_inspects_only_the_named_containers() {
        use crate::engine::fake::FakeEngine;
        use crate::engine::model::ContainerCreateBody;
        let e = FakeEngine::default();
        let body = |project: &str, slot: &str| ContainerCreateBody {
            labels: Some(HashMap::from([
                (LABEL_PROJECT.to_string(), project.to_string()),
                (LABEL_SERVICE.to_string(), "web".to_string()),
                (LABEL_SLOT.to_string(), slot.to_string()),
            ])),
            ..Default::default()
        };
        let mut ids = HashMap::new();
        for (name, slot) in [("p-web-1", "1"), ("p-web-2", "2"), ("p-web-3", "3")] {
            let id = e
                .create_container(name, None, body("p", slot))
                .await
                .unwrap();
            e.start_container(&id).await.unwrap();
            ids.insert(name, id);
        }
        let mut snap = snapshot(&e, "n1", "p", &HashSet::new()).await.unwrap();
        snap.infra_listed = true;
        snap.networks.insert("p_default".into());
        e.exit("p-web-1", 3);
        e.remove_by_other("p-web-2");
        let new = e
            .create_container("p-web-4", None, body("p", "4"))
            .await
            .unwrap();
        let theirs = e
            .create_container("q-web-1", None, body("q", "1"))
            .await
            .unwrap();
        e.take_calls();

        // An exit alone leaves every container where it was (the caller keeps what it
        // worked out from their positions and labels).
        let mut alone = snap.clone();
        let exit = HashSet::from([ids["p-web-1"].clone()]);
        assert!(!patch(&e, "n1", "p", &mut alone, &exit).await.unwrap());
        assert_eq!(alone.containers[0].state, State::Exited);
        e.take_calls();

        let named = HashSet::from([ids["p-web-1"].clone(), ids["p-web-2"].clone(), new, theirs]);
        let reshaped = patch(&e, "n1", "p", &mut snap, &named).await.unwrap();
        assert!(reshaped, "one container added, one left out");
        let calls = e.take_calls();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert!(calls.iter().all(|c| c.starts_with("inspect")), "{calls:?}");
        let by_name: HashMap<&str, &Container> = snap
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        let mut names: Vec<&str> = by_name.keys().copied().collect();
        names.sort();
        assert_eq!(names, ["p-web-1", "p-web-3", "p-web-4"]);
        let exited = by_name["p-web-1"];
        assert_eq!((exited.state, exited.exit_code), (State::Exited, Some(3)));
        assert_eq!(by_name["p-web-4"].state, State::Created);
        assert_eq!(by_name["p-web-4"].slot(), Some(4));
        assert_eq!(by_name["p-web-3"].state, State::Running);
        // Networks and volumes are kept as listed, until forgotten.
        assert!(snap.infra_listed && snap.networks.contains("p_default"));
        snap.forget_infra();
        assert!(!snap.infra_listed && snap.networks.is_empty());

        // An engine error leaves the rest for the next list.
        e.fail("inspect", crate::engine::Kind::Api(500), 1);
        let one = HashSet::from([ids["p-web-3"].clone()]);
        let err = patch(&e, "n1", "p", &mut snap, &one).await.unwrap_err();
        assert_eq!(err.kind, crate::engine::Kind::Api(500));
    }

    /// A burst: more named containers than a scan is used for. Exits taken, removed ones
    /// left out, new ones added once, another project's ignored, the rest untouched.
    #[tokio::test]
    async fn a_patch_of_a_burst_finds_every_named_container_by_its_index() {
        use crate::engine::fake::FakeEngine;
        use crate::engine::model::ContainerCreateBody;
        let e = FakeEngine::default();
        let body = |project: &str, slot: usize| ContainerCreateBody {
            labels: Some(HashMap::from([
                (LABEL_PROJECT.to_string(), project.to_string()),
                (LABEL_SERVICE.to_string(), "web".to_string()),
                (LABEL_SLOT.to_string(), slot.to_string()),
            ])),
            ..Default::default()
        };
        let mut ids = Vec::new();
        for slot in 1..=30 {
            let id = e
                .create_container(&format!("p-web-{slot}"), None, body("p", slot))
                .await
                .unwrap();
            e.start_container(&id).await.unwrap();
            ids.push(id);
        }
        let mut snap = snapshot(&e, "n1", "p", &HashSet::new()).await.unwrap();
        let mut named = HashSet::new();
        for slot in 1..=10 {
            e.exit(&format!("p-web-{slot}"), 1);
            named.insert(ids[slot - 1].clone());
        }
        for slot in 11..=14 {
            e.remove_by_other(&format!("p-web-{slot}"));
            named.insert(ids[slot - 1].clone());
        }
        for slot in 31..=33 {
            let id = e
                .create_container(&format!("p-web-{slot}"), None, body("p", slot))
                .await
                .unwrap();
            named.insert(id);
        }
        let theirs = e
            .create_container("q-web-1", None, body("q", 1))
            .await
            .unwrap();
        named.insert(theirs);
        assert!(named.len() > FEW_IDS);
        patch(&e, "n1", "p", &mut snap, &named).await.unwrap();
        let mut slots: Vec<(u32, State)> = snap
            .containers
            .iter()
            .map(|c| (c.slot().unwrap(), c.state))
            .collect();
        slots.sort_by_key(|(slot, _)| *slot);
        let want: Vec<(u32, State)> = (1..=10)
            .map(|s| (s, State::Exited))
            .chain((15..=30).map(|s| (s, State::Running)))
            .chain((31..=33).map(|s| (s, State::Created)))
            .collect();
        assert_eq!(slots, want);
    }

    #[test]
    fn keeps_the_oldest_of_a_repeated_project_network_and_never_names_foreign_ones() {
        let nets = [
            net("n2", "p_default", Some("p"), "2026-11-22T09:08:28.5Z"),
            net("n1", "p_default", Some("p"), "2026-11-22T09:08:28.1Z"),
            net("n3", "p_default", Some("p"), "2026-11-22T09:08:29Z"),
            net("f1", "p_default", None, "2026-11-22T09:00:00Z"),
            net("o1", "q_default", Some("q"), "2026-11-22T09:08:28Z"),
            net("o2", "q_default", Some("q"), "2026-11-22T09:08:29Z"),
            net("s1", "p_back", Some("p"), "2026-11-22T09:08:29Z"),
        ];
        let dups = duplicate_networks(&nets, "p");
        let ids: Vec<&str> = dups.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["n2", "n3"]);
        assert!(dups.iter().all(|d| d.name == "p_default"));
    }

    #[test]
    fn parses_engine_times_with_nanoseconds() {
        let t = parse_time("2026-11-22T06:09:01.123456789Z").unwrap();
        let base = parse_time("2026-11-22T06:09:01Z").unwrap();
        assert_eq!(t.duration_since(base).unwrap().as_nanos(), 123_456_789);
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn slot_label_must_be_a_positive_integer() {
        let mut c = Container {
            id: "0123456789abcdef".into(),
            node: "n1".into(),
            name: "p-web-1".into(),
            labels: HashMap::from([(LABEL_SLOT.to_string(), "0".to_string())]).into(),
            state: State::Running,
            health: Health::None,
            created: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            anonymous_volumes: Vec::new(),
            published: Vec::new(),
            addresses: Addresses::default(),
        };
        assert_eq!(c.slot(), None);
        c.labels.insert(LABEL_SLOT.into(), "x".into());
        assert_eq!(c.slot(), None);
        c.labels.insert(LABEL_SLOT.into(), "3".into());
        assert_eq!(c.slot(), Some(3));
        assert_eq!(c.short_id(), "0123456789ab");
    }
}

#[cfg(test)]
mod inspect_tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use super::*;
    use crate::engine::model::{EndpointSettings, NetworkSettings, PortBinding};

    /// A patched container carries what a list would have shown of its ports and
    /// addresses (the ambassadors' routes are made from them).
    #[test]
    fn an_inspect_gives_the_ports_and_addresses_a_list_gives() {
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let details = ContainerInspectResponse {
            id: Some("abc".into()),
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "80/tcp".to_string(),
                        Some(vec![binding("0.0.0.0", "8080"), binding("::", "8080")]),
                    ),
                    (
                        "53/udp".to_string(),
                        Some(vec![binding("10.0.0.1", "5353")]),
                    ),
                    ("9000/tcp".to_string(), None),
                ])),
                networks: Some(HashMap::from([
                    (
                        "p_default".to_string(),
                        EndpointSettings {
                            ip_address: Some("172.18.0.5".into()),
                            ..Default::default()
                        },
                    ),
                    (
                        "p_other".to_string(),
                        EndpointSettings {
                            ip_address: Some(String::new()),
                            ..Default::default()
                        },
                    ),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container::from_inspect("n1", details).unwrap();
        let node: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(c.published.len(), 3, "{:?}", c.published);
        assert_eq!(c.published_on(node, 80, Proto::Tcp), Some(8080));
        assert_eq!(c.published_on(node, 53, Proto::Udp), Some(5353));
        assert_eq!(c.published_on(node, 9000, Proto::Tcp), None);
        assert_eq!(
            c.addresses,
            Addresses::from_iter([("p_default", "172.18.0.5".parse().unwrap())])
        );
    }
}
