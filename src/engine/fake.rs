//! An in-memory engine for unit tests of what drover asks engines to do.
//!
//! It keeps containers (name, labels, state, exit code, run times, restart policy, mounts),
//! networks, volumes and images the way an engine does, including the two rules volume
//! handover depends on (removing a container removes only the anonymous volumes the engine
//! made for it; a volume in use cannot be removed). It records every call by container
//! name, so a test asserts the exact sequence a scenario produces, and it sends the events
//! an engine sends for each change (`create`, `start`, `kill`, `die`, `stop`, `destroy`, ...)
//! to its event streams.
//!
//! A test also plays the rest of the world: a call that fails (once or `n` times, e.g. with
//! a 500), a container that exits with a code of its own, one killed or removed by someone
//! else, a health status, the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::channel::mpsc;

use super::api::{Answer, Engine, Events, Filters};
use super::credentials::Credentials;
use super::error::{EngineError, Kind};
use super::model::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, ContainerState,
    ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum, ContainerUpdateBody,
    EventActor, EventMessage, EventMessageTypeEnum, Health, HealthStatusEnum, HostConfig,
    ImageSummary, MountPoint, MountType, Network, NetworkConnectRequest, NetworkCreateRequest,
    RestartPolicy, SystemInfo, Volume, VolumeCreateRequest,
};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Created,
    Running,
    Exited,
}

impl Life {
    fn as_str(self) -> &'static str {
        match self {
            Life::Created => "created",
            Life::Running => "running",
            Life::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone)]
struct Container {
    name: String,
    image: String,
    labels: HashMap<String, String>,
    life: Life,
    exit_code: i64,
    created: SystemTime,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    health: Option<HealthStatusEnum>,
    restart_policy: Option<RestartPolicy>,
    /// (volume name, destination, made by the engine for this container)
    volumes: Vec<(String, String, bool)>,
}

#[derive(Debug, Clone)]
struct NetworkEntry {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    created: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, Container>,
    /// Volume name -> its labels.
    volumes: BTreeMap<String, HashMap<String, String>>,
    networks: Vec<NetworkEntry>,
    images: BTreeSet<String>,
    /// Tag -> the digest the registry holds for it.
    registry: BTreeMap<String, String>,
    /// Image reference -> the registry digest of the engine's copy.
    local_digests: BTreeMap<String, String>,
    calls: Vec<String>,
    next: u64,
    /// Calls (by their verb, or `*` for any) that fail: with this kind, this many more times.
    fail: HashMap<String, (Kind, u32)>,
    /// The time the engine reports; the real clock when unset.
    clock: Option<SystemTime>,
    /// A create needs its image on the engine (pulled or added); otherwise any image works.
    images_required: bool,
    /// Every event sent, for streams that resume with `since`.
    events: Vec<EventMessage>,
    /// Each pull's image and the user it was logged in as.
    pulled_as: Vec<(String, Option<String>)>,
    /// Open event streams, with their filters.
    streams: Vec<(Filters, mpsc::UnboundedSender<EventMessage>)>,
    /// Lists give the containers in the reverse of their usual order.
    lists_reversed: bool,
}

/// The fake engine. `image_volumes` are the paths every image declares with `VOLUME`.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
    pub image_volumes: Vec<String>,
    /// Every answer comes this much later (the request itself is applied at once, as by an
    /// engine that is slow to answer).
    stall: Mutex<Option<Duration>>,
    /// Calls of one verb answered this much later ([`FakeEngine::stall_verb`]).
    stall_verb: Mutex<Option<(String, Duration)>>,
    /// The stall the call under way asked for, taken by its answer.
    stall_next: Mutex<Option<Duration>>,
}

fn err(kind: Kind, message: &str) -> EngineError {
    EngineError::new(kind, message)
}

fn no_such_container() -> EngineError {
    err(Kind::NotFound, "no such container")
}

fn ready<'a, T: Send + 'a>(r: Result<T, EngineError>, stall: Option<Duration>) -> Answer<'a, T> {
    Box::pin(async move {
        if let Some(d) = stall {
            tokio::time::sleep(d).await;
        }
        r
    })
}

fn rfc3339(t: Option<SystemTime>) -> String {
    t.map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| humantime::format_rfc3339_nanos(t).to_string(),
    )
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// `secs` or `secs.nanos`, as `since` and `until` are given.
fn parse_instant(s: &str) -> Option<Duration> {
    let (secs, nanos) = s.split_once('.').unwrap_or((s, "0"));
    let nanos = format!("{nanos:0<9}");
    Some(Duration::new(
        secs.parse().ok()?,
        nanos.get(..9)?.parse().ok()?,
    ))
}

/// Label filters as the engine reads them: `key` (present) or `key=value`.
fn labels_match(wanted: Option<&Vec<String>>, labels: &HashMap<String, String>) -> bool {
    wanted.is_none_or(|all| {
        all.iter().all(|w| match w.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
            None => labels.contains_key(w.as_str()),
        })
    })
}

/// Any of the values matches (the engine ORs values of one key, ANDs keys; labels AND).
fn any_matches(wanted: Option<&Vec<String>>, f: impl Fn(&str) -> bool) -> bool {
    wanted.is_none_or(|all| all.iter().any(|w| f(w)))
}

fn only_keys(filters: &Filters, known: &[&str]) -> Result<(), EngineError> {
    match filters.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(err(Kind::Api(400), &format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

fn event_matches(filters: &Filters, ev: &EventMessage) -> bool {
    let typ = ev.typ.map(|t| t.to_string()).unwrap_or_default();
    let attrs = ev
        .actor
        .as_ref()
        .and_then(|a| a.attributes.clone())
        .unwrap_or_default();
    let id = ev
        .actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default();
    let action = ev.action.as_deref().unwrap_or_default();
    any_matches(filters.get("type"), |t| t == typ)
        && any_matches(filters.get("event"), |a| a == action)
        && any_matches(filters.get("container"), |c| {
            id.starts_with(c) || attrs.get("name").is_some_and(|n| n == c)
        })
        && labels_match(filters.get("label"), &attrs)
}

impl FakeEngine {
    pub fn with_image_volumes(paths: &[&str]) -> FakeEngine {
        FakeEngine {
            image_volumes: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The calls made so far, as `verb name [detail]`, and forget them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Make the next call whose verb is `verb` fail with `kind`.
    pub fn fail_next(&self, verb: &str, kind: Kind) {
        self.fail(verb, kind, 1);
    }

    /// Make the next `times` calls whose verb is `verb` (`*`: any call) fail with `kind`,
    /// e.g. `fail("list", Kind::Api(500), 3)`. A failed call is recorded and changes nothing.
    pub fn fail(&self, verb: &str, kind: Kind, times: u32) {
        self.state
            .lock()
            .unwrap()
            .fail
            .insert(verb.into(), (kind, times));
    }

    /// Every injected failure is forgotten: calls succeed again.
    pub fn clear_failures(&self) {
        self.state.lock().unwrap().fail.clear();
    }

    /// From now on every call is answered only after `d` (`None`: at once again). What the
    /// call does happens at once: a client that gives up waiting has still changed things.
    pub fn stall(&self, d: Option<Duration>) {
        *self.stall.lock().unwrap() = d;
    }

    /// From now on the calls whose verb is `verb` are answered only after `d` (applied at
    /// once, as with [`FakeEngine::stall`]); `None`: every verb at once again.
    pub fn stall_verb(&self, verb: &str, d: Option<Duration>) {
        *self.stall_verb.lock().unwrap() = d.map(|d| (verb.to_string(), d));
    }

    fn answer<'a, T: Send + 'a>(&self, r: Result<T, EngineError>) -> Answer<'a, T> {
        let verb = self.stall_next.lock().unwrap().take();
        ready(r, verb.or(*self.stall.lock().unwrap()))
    }

    /// Set the engine's clock (container times, events); it stays there until moved.
    pub fn set_clock(&self, t: SystemTime) {
        self.state.lock().unwrap().clock = Some(t);
    }

    /// Move the engine's clock on (from the real time, when it was not set).
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap();
        s.clock = Some(s.now() + d);
    }

    /// From now on a create fails with "No such image" (404) unless the image was pulled
    /// or added, as an engine does.
    pub fn require_images(&self) {
        self.state.lock().unwrap().images_required = true;
    }

    /// Each pull's image and the registry user it was logged in as (`None`: no login).
    pub fn pulled_as(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().pulled_as.clone()
    }

    /// An image the engine has (as if pulled or loaded before).
    pub fn add_image(&self, image: &str) {
        self.state.lock().unwrap().images.insert(image.to_string());
    }

    /// The registry now holds `digest` for `image` (a push of the tag).
    pub fn push(&self, image: &str, digest: &str) {
        let mut s = self.state.lock().unwrap();
        s.registry.insert(image.to_string(), digest.to_string());
    }

    /// The engine's copy of `image` has the registry digest `digest` (a `docker pull`).
    pub fn add_local_digest(&self, image: &str, digest: &str) {
        let mut s = self.state.lock().unwrap();
        s.images.insert(image.to_string());
        s.local_digests
            .insert(image.to_string(), digest.to_string());
    }

    /// A network made outside drover (or before it), e.g. a second one of the same name.
    /// Returns its id.
    pub fn add_network(&self, name: &str, labels: &[(&str, &str)], created: SystemTime) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.fresh('n');
        s.networks.push(NetworkEntry {
            id: id.clone(),
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created,
        });
        id
    }

    pub fn volume_exists(&self, name: &str) -> bool {
        self.state.lock().unwrap().volumes.contains_key(name)
    }

    /// Names of the networks, sorted.
    pub fn networks(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut names: Vec<String> = s.networks.iter().map(|n| n.name.clone()).collect();
        names.sort();
        names
    }

    /// Names of the containers, sorted.
    pub fn names(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut names: Vec<String> = s.containers.values().map(|c| c.name.clone()).collect();
        names.sort();
        names
    }

    /// The labels of the container named `name` (empty when there is none).
    pub fn labels_of(&self, name: &str) -> HashMap<String, String> {
        let s = self.state.lock().unwrap();
        s.find(name)
            .map(|id| s.containers[&id].labels.clone())
            .unwrap_or_default()
    }

    /// The image the container named `name` was created from (empty when there is none).
    pub fn image_of(&self, name: &str) -> String {
        let s = self.state.lock().unwrap();
        s.find(name)
            .map(|id| s.containers[&id].image.clone())
            .unwrap_or_default()
    }

    /// The state of the container named `name` (`created`, `running`, `exited`).
    pub fn state_of(&self, name: &str) -> Option<&'static str> {
        let s = self.state.lock().unwrap();
        let id = s.find(name)?;
        Some(s.containers[&id].life.as_str())
    }

    /// The volumes mounted in the container named `name`, as `destination=volume`.
    pub fn mounts(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.containers
            .values()
            .find(|c| c.name == name)
            .map(|c| {
                c.volumes
                    .iter()
                    .map(|(v, d, _)| format!("{d}={}", &v[..12.min(v.len())]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The running container named `name` (or with that id) exits with `code` by itself:
    /// a crash, or a program that finished. Not a call: nothing is recorded.
    pub fn exit(&self, name: &str, code: i64) {
        let mut s = self.state.lock().unwrap();
        let id = s.find(name).expect("no such container");
        s.die(&id, code);
    }

    /// Someone kills the running container named `name` through the API (`docker kill`):
    /// `kill`, then `die` with 137.
    pub fn kill(&self, name: &str) {
        let mut s = self.state.lock().unwrap();
        let id = s.find(name).expect("no such container");
        s.emit(&id, "kill", &[("signal", "9")]);
        s.die(&id, 137);
    }

    /// Lists give the containers in the reverse of their usual order (an engine promises
    /// no order).
    pub fn reverse_lists(&self, on: bool) {
        self.state.lock().unwrap().lists_reversed = on;
    }

    /// Someone removes the container named `name` (`docker rm -f`, which leaves its
    /// volumes behind).
    pub fn remove_by_other(&self, name: &str) {
        let mut s = self.state.lock().unwrap();
        let id = s.find(name).expect("no such container");
        s.destroy(&id, false);
    }

    /// The healthcheck of the container named `name` says `status`; `None`: it has none.
    pub fn set_health(&self, name: &str, status: Option<HealthStatusEnum>) {
        let mut s = self.state.lock().unwrap();
        let id = s.find(name).expect("no such container");
        s.containers.get_mut(&id).unwrap().health = status;
        if let Some(h) = status {
            s.emit(&id, &format!("health_status: {h}"), &[]);
        }
    }

    fn call<T>(
        &self,
        verb: &str,
        detail: String,
        f: impl FnOnce(&mut State) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if let Some((v, d)) = self.stall_verb.lock().unwrap().clone()
            && v == verb
        {
            *self.stall_next.lock().unwrap() = Some(d);
        }
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("{verb} {detail}"));
        for key in [verb, "*"] {
            if let Some((kind, left)) = s.fail.get_mut(key) {
                let kind = *kind;
                *left -= 1;
                if *left == 0 {
                    s.fail.remove(key);
                }
                return Err(err(kind, "injected"));
            }
        }
        f(&mut s)
    }

    /// A call on one container: records `verb name`.
    fn on_container<T>(
        &self,
        verb: &str,
        id: &str,
        f: impl FnOnce(&mut State, &str) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.call(verb, String::new(), |s| {
            let name = s.name(id);
            s.calls.last_mut().unwrap().push_str(&name);
            let key = s.find(id).ok_or_else(no_such_container)?;
            f(s, &key)
        })
    }
}

impl State {
    fn now(&self) -> SystemTime {
        self.clock.unwrap_or_else(SystemTime::now)
    }

    fn find(&self, id_or_name: &str) -> Option<String> {
        self.containers
            .iter()
            .find(|(id, c)| *id == id_or_name || c.name == id_or_name)
            .map(|(id, _)| id.clone())
    }

    fn name(&self, id: &str) -> String {
        self.find(id)
            .and_then(|i| self.containers.get(&i))
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    }

    fn fresh(&mut self, tag: char) -> String {
        self.next += 1;
        format!("{tag}{:063x}", self.next)
    }

    fn in_use(&self, volume: &str) -> bool {
        self.containers
            .values()
            .any(|c| c.volumes.iter().any(|(v, _, _)| v == volume))
    }

    /// Send a container event, as the engine does: the container's labels, name and image
    /// as the actor's attributes.
    fn emit(&mut self, id: &str, action: &str, extra: &[(&str, &str)]) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        let mut attributes = c.labels.clone();
        attributes.insert("name".into(), c.name.clone());
        attributes.insert("image".into(), c.image.clone());
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.to_string());
        }
        let t = unix(self.now());
        let ev = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            time: Some(t.as_secs() as i64),
            time_nano: Some(t.as_nanos() as i64),
            ..Default::default()
        };
        self.streams
            .retain(|(f, tx)| !event_matches(f, &ev) || tx.unbounded_send(ev.clone()).is_ok());
        self.events.push(ev);
    }

    fn start(&mut self, id: &str) {
        let now = self.now();
        let c = self.containers.get_mut(id).unwrap();
        c.life = Life::Running;
        c.started_at = Some(now);
        c.exit_code = 0;
        c.health = c.health.map(|_| HealthStatusEnum::STARTING);
        self.emit(id, "start", &[]);
    }

    fn die(&mut self, id: &str, code: i64) {
        let now = self.now();
        let c = self.containers.get_mut(id).unwrap();
        if c.life != Life::Running {
            return;
        }
        c.life = Life::Exited;
        c.exit_code = code;
        c.finished_at = Some(now);
        self.emit(id, "die", &[("exitCode", &code.to_string())]);
    }

    /// A stop through the API: `kill` with the stop signal, `die`, `stop`.
    fn stop(&mut self, id: &str) {
        self.emit(id, "kill", &[("signal", "15")]);
        self.die(id, 0);
        self.emit(id, "stop", &[]);
    }

    /// A forced removal; with `volumes`, of the anonymous volumes the engine made for the
    /// container too (only those, and only when unused).
    fn destroy(&mut self, id: &str, volumes: bool) {
        if self.containers[id].life == Life::Running {
            self.emit(id, "kill", &[("signal", "9")]);
            self.die(id, 137);
        }
        self.emit(id, "destroy", &[]);
        let c = self.containers.remove(id).unwrap();
        if volumes {
            for (v, _, own) in &c.volumes {
                if *own && !self.in_use(v) {
                    self.volumes.remove(v);
                }
            }
        }
    }

    fn summary(&self, id: &str, c: &Container) -> ContainerSummary {
        let health = match c.health {
            Some(HealthStatusEnum::HEALTHY) => " (healthy)",
            Some(HealthStatusEnum::UNHEALTHY) => " (unhealthy)",
            Some(HealthStatusEnum::STARTING) => " (health: starting)",
            _ => "",
        };
        let status = match c.life {
            Life::Created => "Created".to_string(),
            Life::Running => format!("Up{health}"),
            Life::Exited => format!("Exited ({})", c.exit_code),
        };
        ContainerSummary {
            id: Some(id.to_string()),
            names: Some(vec![format!("/{}", c.name)]),
            image: Some(c.image.clone()),
            created: Some(unix(c.created).as_secs() as i64),
            labels: Some(c.labels.clone()),
            state: c.life.as_str().parse::<ContainerSummaryStateEnum>().ok(),
            status: Some(status),
            mounts: Some(mount_points(c)),
            ..Default::default()
        }
    }
}

fn mount_points(c: &Container) -> Vec<MountPoint> {
    c.volumes
        .iter()
        .map(|(v, d, _)| MountPoint {
            typ: Some("volume".into()),
            name: Some(v.clone()),
            destination: Some(d.clone()),
            ..Default::default()
        })
        .collect()
}

fn filter_detail(filters: &Filters) -> String {
    let mut parts: Vec<String> = filters
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    parts.sort();
    parts.join(" ")
}

impl Engine for FakeEngine {
    fn list_containers(&self, filters: Filters) -> Answer<'_, Vec<ContainerSummary>> {
        let r = self.call("list", filter_detail(&filters), |s| {
            only_keys(&filters, &["label", "name", "id", "status"])?;
            Ok(s.containers
                .iter()
                .filter(|(id, c)| {
                    labels_match(filters.get("label"), &c.labels)
                        && any_matches(filters.get("name"), |n| c.name.contains(n))
                        && any_matches(filters.get("id"), |i| id.starts_with(i))
                        && any_matches(filters.get("status"), |st| st == c.life.as_str())
                })
                .map(|(id, c)| s.summary(id, c))
                .collect::<Vec<_>>())
            .map(|mut all| {
                if s.lists_reversed {
                    all.reverse();
                }
                all
            })
        });
        self.answer(r)
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        _platform: Option<&'a str>,
        body: ContainerCreateBody,
    ) -> Answer<'a, String> {
        let mounts = body
            .host_config
            .as_ref()
            .and_then(|h| h.mounts.clone())
            .unwrap_or_default();
        let image_volumes = self.image_volumes.clone();
        let detail: Vec<String> = mounts
            .iter()
            .filter(|m| m.typ == Some(MountType::VOLUME))
            .map(|m| {
                let src = m
                    .source
                    .as_deref()
                    .map_or("anonymous", |s| &s[..12.min(s.len())]);
                format!("{}={src}", m.target.as_deref().unwrap_or_default())
            })
            .collect();
        let r = self.call("create", format!("{name} {}", detail.join(" ")), |s| {
            if s.find(name).is_some() {
                return Err(err(Kind::Conflict, "name in use"));
            }
            let image = body.image.clone().unwrap_or_default();
            if s.images_required && !s.images.contains(&image) {
                return Err(err(Kind::NotFound, &format!("No such image: {image}")));
            }
            let mut volumes = Vec::new();
            for m in mounts.iter().filter(|m| m.typ == Some(MountType::VOLUME)) {
                let target = m.target.clone().unwrap_or_default();
                match &m.source {
                    Some(v) => {
                        s.volumes.entry(v.clone()).or_default();
                        volumes.push((v.clone(), target, false));
                    }
                    None => {
                        let v = s.fresh('a');
                        s.volumes.insert(v.clone(), HashMap::new());
                        volumes.push((v, target, true));
                    }
                }
            }
            for path in &image_volumes {
                if !volumes.iter().any(|(_, d, _)| d == path) {
                    let v = s.fresh('a');
                    s.volumes.insert(v.clone(), HashMap::new());
                    volumes.push((v, path.clone(), true));
                }
            }
            let id = s.fresh('c');
            s.images.insert(image.clone());
            let created = s.now();
            s.containers.insert(
                id.clone(),
                Container {
                    name: name.to_string(),
                    image,
                    labels: body.labels.clone().unwrap_or_default(),
                    life: Life::Created,
                    exit_code: 0,
                    created,
                    started_at: None,
                    finished_at: None,
                    health: body
                        .healthcheck
                        .as_ref()
                        .map(|_| HealthStatusEnum::STARTING),
                    restart_policy: body
                        .host_config
                        .as_ref()
                        .and_then(|h| h.restart_policy.clone()),
                    volumes,
                },
            );
            s.emit(&id, "create", &[]);
            Ok(id)
        });
        self.answer(r)
    }

    fn inspect_container<'a>(&'a self, id: &'a str) -> Answer<'a, ContainerInspectResponse> {
        let r = self.on_container("inspect", id, |s, key| {
            let c = &s.containers[key];
            let status = match c.life {
                Life::Created => ContainerStateStatusEnum::CREATED,
                Life::Running => ContainerStateStatusEnum::RUNNING,
                Life::Exited => ContainerStateStatusEnum::EXITED,
            };
            Ok(ContainerInspectResponse {
                id: Some(key.to_string()),
                name: Some(format!("/{}", c.name)),
                image: Some(c.image.clone()),
                created: Some(rfc3339(Some(c.created))),
                state: Some(ContainerState {
                    status: Some(status),
                    running: Some(c.life == Life::Running),
                    exit_code: Some(c.exit_code),
                    started_at: Some(rfc3339(c.started_at)),
                    finished_at: Some(rfc3339(c.finished_at)),
                    health: c.health.map(|h| Health {
                        status: Some(h),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                config: Some(ContainerConfig {
                    image: Some(c.image.clone()),
                    labels: Some(c.labels.clone()),
                    ..Default::default()
                }),
                host_config: Some(HostConfig {
                    restart_policy: c.restart_policy.clone(),
                    ..Default::default()
                }),
                mounts: Some(mount_points(c)),
                ..Default::default()
            })
        });
        self.answer(r)
    }

    fn start_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.on_container("start", id, |s, key| {
            if s.containers[key].life == Life::Running {
                return Err(err(Kind::NotModified, ""));
            }
            s.start(key);
            Ok(())
        });
        self.answer(r)
    }

    fn stop_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.on_container("stop", id, |s, key| {
            if s.containers[key].life != Life::Running {
                return Err(err(Kind::NotModified, ""));
            }
            s.stop(key);
            Ok(())
        });
        self.answer(r)
    }

    fn restart_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.on_container("restart", id, |s, key| {
            if s.containers[key].life == Life::Running {
                s.stop(key);
            }
            s.start(key);
            s.emit(key, "restart", &[]);
            Ok(())
        });
        self.answer(r)
    }

    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> Answer<'a, ()> {
        let r = self.call("rename", String::new(), |s| {
            let old = s.name(id);
            s.calls
                .last_mut()
                .unwrap()
                .push_str(&format!("{old} {name}"));
            let key = s.find(id).ok_or_else(no_such_container)?;
            if s.find(name).is_some() {
                return Err(err(Kind::Conflict, "name in use"));
            }
            s.containers.get_mut(&key).unwrap().name = name.to_string();
            s.emit(&key, "rename", &[("oldName", &format!("/{old}"))]);
            Ok(())
        });
        self.answer(r)
    }

    fn remove_container<'a>(&'a self, id: &'a str, volumes: bool) -> Answer<'a, ()> {
        let r = self.on_container("remove", id, |s, key| {
            s.destroy(key, volumes);
            Ok(())
        });
        self.answer(r)
    }

    fn update_container<'a>(&'a self, id: &'a str, body: ContainerUpdateBody) -> Answer<'a, ()> {
        let r = self.on_container("update", id, |s, key| {
            if let Some(p) = body.restart_policy {
                s.containers.get_mut(key).unwrap().restart_policy = Some(p);
            }
            s.emit(key, "update", &[]);
            Ok(())
        });
        self.answer(r)
    }

    fn list_volumes(&self, filters: Filters) -> Answer<'_, Vec<Volume>> {
        let r = self.call("list-volumes", filter_detail(&filters), |s| {
            only_keys(&filters, &["label", "name", "dangling"])?;
            Ok(s.volumes
                .iter()
                .filter(|(name, labels)| {
                    labels_match(filters.get("label"), labels)
                        && any_matches(filters.get("name"), |n| name.contains(n))
                        && any_matches(filters.get("dangling"), |d| {
                            (d == "true" || d == "1") != s.in_use(name)
                        })
                })
                .map(|(name, labels)| Volume {
                    name: name.clone(),
                    driver: "local".into(),
                    labels: labels.clone(),
                    ..Default::default()
                })
                .collect())
        });
        self.answer(r)
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()> {
        let r = self.call(
            "remove-volume",
            name[..12.min(name.len())].to_string(),
            |s| {
                if !s.volumes.contains_key(name) {
                    return Err(err(Kind::NotFound, "no such volume"));
                }
                if s.in_use(name) {
                    return Err(err(Kind::Conflict, "volume is in use"));
                }
                s.volumes.remove(name);
                Ok(())
            },
        );
        self.answer(r)
    }

    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()> {
        let name = req.name.unwrap_or_default();
        let r = self.call("create-volume", name.clone(), |s| {
            // An existing volume of the name is answered as created, as the engine does.
            s.volumes
                .entry(name)
                .or_insert_with(|| req.labels.unwrap_or_default());
            Ok(())
        });
        self.answer(r)
    }

    fn list_networks(&self, filters: Filters) -> Answer<'_, Vec<Network>> {
        let r = self.call("list-networks", filter_detail(&filters), |s| {
            only_keys(&filters, &["label", "name", "id"])?;
            Ok(s.networks
                .iter()
                .filter(|n| {
                    labels_match(filters.get("label"), &n.labels)
                        && any_matches(filters.get("name"), |f| n.name.contains(f))
                        && any_matches(filters.get("id"), |i| n.id.starts_with(i))
                })
                .map(|n| Network {
                    id: Some(n.id.clone()),
                    name: Some(n.name.clone()),
                    created: Some(rfc3339(Some(n.created))),
                    labels: Some(n.labels.clone()),
                    driver: Some("bridge".into()),
                    scope: Some("local".into()),
                    ..Default::default()
                })
                .collect())
        });
        self.answer(r)
    }

    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
        let r = self.call("create-network", req.name.clone(), |s| {
            if s.networks.iter().any(|n| n.name == req.name) {
                return Err(err(
                    Kind::Conflict,
                    &format!("network with name {} already exists", req.name),
                ));
            }
            let id = s.fresh('n');
            let created = s.now();
            s.networks.push(NetworkEntry {
                id,
                name: req.name,
                labels: req.labels.unwrap_or_default(),
                created,
            });
            Ok(())
        });
        self.answer(r)
    }

    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.call("remove-network", id.to_string(), |s| {
            let i = s
                .networks
                .iter()
                .position(|n| n.id == id || n.name == id)
                .ok_or_else(|| err(Kind::NotFound, "no such network"))?;
            s.networks.remove(i);
            Ok(())
        });
        self.answer(r)
    }

    fn connect_network<'a>(&'a self, net: &'a str, _req: NetworkConnectRequest) -> Answer<'a, ()> {
        let r = self.call("connect", net.to_string(), |_| Ok(()));
        self.answer(r)
    }

    fn exec<'a>(&'a self, id: &'a str, cmd: Vec<String>) -> Answer<'a, (i64, String)> {
        let verb = cmd.first().cloned().unwrap_or_default();
        let r = self.on_container("exec", id, |s, key| {
            if s.containers[key].life != Life::Running {
                return Err(err(Kind::Conflict, "container is not running"));
            }
            Ok((0, format!("ran {verb}")))
        });
        self.answer(r)
    }

    fn list_images(&self) -> Answer<'_, Vec<ImageSummary>> {
        let r = self.call("list-images", String::new(), |s| {
            Ok(s.images
                .iter()
                .enumerate()
                .map(|(i, name)| ImageSummary {
                    id: format!("sha256:{i:064x}"),
                    repo_tags: vec![if name.contains(':') || name.contains('@') {
                        name.clone()
                    } else {
                        format!("{name}:latest")
                    }],
                    ..Default::default()
                })
                .collect())
        });
        self.answer(r)
    }

    /// Asks `credentials` for the image's registry as the real pull does: a lookup that
    /// fails fails the pull; the user it found is recorded (see [`FakeEngine::pulled_as`]).
    fn pull<'a>(
        &'a self,
        image: &'a str,
        _platform: Option<&'a str>,
        credentials: &'a Credentials,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let found = credentials
                .for_image(image)
                .await
                .map_err(|e| err(Kind::Credentials, &e.to_string()))?;
            self.call("pull", image.to_string(), |s| {
                s.images.insert(image.to_string());
                let user = found.auth.map(|a| a.username);
                s.pulled_as.push((image.to_string(), user));
                Ok(())
            })
        })
    }

    fn registry_digest<'a>(
        &'a self,
        image: &'a str,
        _credentials: &'a Credentials,
    ) -> Answer<'a, String> {
        let r = self.call("registry-digest", image.to_string(), |s| {
            s.registry
                .get(image)
                .cloned()
                .ok_or_else(|| err(Kind::NotFound, "manifest unknown"))
        });
        self.answer(r)
    }

    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>> {
        let r = self.call("inspect", format!("image {image}"), |s| {
            Ok(s.local_digests.get(image).cloned())
        });
        self.answer(r)
    }

    fn ping(&self) -> Answer<'_, ()> {
        self.answer(self.call("ping", String::new(), |_| Ok(())))
    }

    fn usage<'a>(&'a self, id: &'a str) -> Answer<'a, super::model::Usage> {
        let r = self.call("stats", id.to_string(), |s| {
            s.containers
                .get(id)
                .map(|_| super::model::Usage::default())
                .ok_or_else(|| {
                    EngineError::new(
                        super::error::Kind::NotFound,
                        format!("no such container: {id}"),
                    )
                })
        });
        self.answer(r)
    }

    fn info(&self) -> Answer<'_, SystemInfo> {
        let r = self.call("info", String::new(), |s| {
            Ok(SystemInfo {
                id: Some("FAKE".into()),
                containers: Some(s.containers.len() as i64),
                ..Default::default()
            })
        });
        self.answer(r)
    }

    /// The events sent from `since` on (all of them up to `until`, then the stream ends),
    /// then the ones to come.
    fn events(&self, since: Option<String>, until: Option<String>, filters: Filters) -> Events {
        let detail = [("since", &since), ("until", &until)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v} ")))
            .collect::<String>()
            + &filter_detail(&filters);
        let r = self.call("events", detail.trim_end().to_string(), |s| {
            only_keys(&filters, &["type", "label", "event", "container"])?;
            let since = since.as_deref().and_then(parse_instant);
            let until = until.as_deref().and_then(parse_instant);
            let when = |ev: &EventMessage| Duration::from_nanos(ev.time_nano.unwrap_or(0) as u64);
            let past: Vec<EventMessage> = match (since, until) {
                (None, None) => Vec::new(),
                _ => s
                    .events
                    .iter()
                    .filter(|ev| since.is_none_or(|t| when(ev) >= t))
                    .filter(|ev| until.is_none_or(|t| when(ev) <= t))
                    .filter(|ev| event_matches(&filters, ev))
                    .cloned()
                    .collect(),
            };
            let past = futures::stream::iter(past);
            if until.is_some() {
                return Ok(past.boxed());
            }
            let (tx, rx) = mpsc::unbounded();
            s.streams.push((filters, tx));
            Ok(past.chain(rx).boxed())
        });
        match r {
            Ok(stream) => Box::pin(stream.map(Ok)),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{RestartPolicyNameEnum, VolumeCreateRequest};

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn labelled(image: &str, labels: &[(&str, &str)]) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(image.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn label(kv: &str) -> Filters {
        Filters::from([("label".to_string(), vec![kv.to_string()])])
    }

    #[test]
    fn lists_by_label_and_inspects_what_observe_reads() {
        let e = FakeEngine::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        e.set_clock(t0);
        block(async {
            let id = e
                .create_container("p-web-1", None, labelled("img", &[("p", "a")]))
                .await
                .unwrap();
            e.create_container("q-web-1", None, labelled("img", &[("p", "b")]))
                .await
                .unwrap();
            e.start_container(&id).await.unwrap();
            let listed = e.list_containers(label("p=a")).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].names, Some(vec!["/p-web-1".to_string()]));
            assert_eq!(listed[0].state, Some(ContainerSummaryStateEnum::RUNNING));
            assert_eq!(e.list_containers(label("p")).await.unwrap().len(), 2);
            assert_eq!(e.list_containers(Filters::new()).await.unwrap().len(), 2);

            e.advance(Duration::from_secs(3));
            e.exit("p-web-1", 2);
            let c = e.inspect_container("p-web-1").await.unwrap();
            let st = c.state.unwrap();
            assert_eq!(st.status, Some(ContainerStateStatusEnum::EXITED));
            assert_eq!(st.exit_code, Some(2));
            let (s, f) = (
                crate::engine::model::parse_time(&st.started_at.unwrap()).unwrap(),
                crate::engine::model::parse_time(&st.finished_at.unwrap()).unwrap(),
            );
            assert_eq!(f.duration_since(s).unwrap(), Duration::from_secs(3));
            assert_eq!(c.config.unwrap().labels.unwrap()["p"], "a");

            e.remove_by_other("q-web-1");
            let err = e.inspect_container("q-web-1").await.unwrap_err();
            assert_eq!(err.kind, Kind::NotFound);
        });
        assert_eq!(
            e.take_calls(),
            vec![
                "create p-web-1 ",
                "create q-web-1 ",
                "start p-web-1",
                "list label=p=a",
                "list label=p",
                "list ",
                "inspect p-web-1",
                "inspect q-web-1",
            ]
        );
    }

    #[test]
    fn a_call_fails_as_often_as_told_then_works() {
        let e = FakeEngine::default();
        e.fail("list", Kind::Api(500), 2);
        block(async {
            for _ in 0..2 {
                let err = e.list_containers(Filters::new()).await.unwrap_err();
                assert_eq!(err.kind, Kind::Api(500));
            }
            assert!(e.list_containers(Filters::new()).await.is_ok());
            e.fail("*", Kind::Unreachable, 1);
            assert_eq!(e.ping().await.unwrap_err().kind, Kind::Unreachable);
            assert!(e.ping().await.is_ok());
            let bad = Filters::from([("nonsense".to_string(), vec![])]);
            assert_eq!(
                e.list_containers(bad).await.unwrap_err().kind,
                Kind::Api(400)
            );
        });
        assert_eq!(e.take_calls().len(), 6);
    }

    #[test]
    fn updates_restart_policies_and_keeps_volumes_a_removal_leaves() {
        let e = FakeEngine::with_image_volumes(&["/data"]);
        block(async {
            let id = e
                .create_container("lease", None, labelled("img", &[]))
                .await
                .unwrap();
            let body = ContainerUpdateBody {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ON_FAILURE),
                    maximum_retry_count: Some(4),
                }),
                ..Default::default()
            };
            e.update_container(&id, body).await.unwrap();
            let c = e.inspect_container(&id).await.unwrap();
            let policy = c.host_config.unwrap().restart_policy.unwrap();
            assert_eq!(policy.maximum_retry_count, Some(4));
            let volume = c.mounts.unwrap()[0].name.clone().unwrap();

            e.remove_container(&id, false).await.unwrap();
            assert!(e.volume_exists(&volume), "left behind, as without -v");
            let dangling = Filters::from([("dangling".to_string(), vec!["true".to_string()])]);
            assert_eq!(e.list_volumes(dangling).await.unwrap().len(), 1);

            let req = VolumeCreateRequest {
                name: Some("p_data".into()),
                labels: Some(HashMap::from([("p".to_string(), "a".to_string())])),
                ..Default::default()
            };
            e.create_volume(req).await.unwrap();
            let listed = e.list_volumes(label("p=a")).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].name, "p_data");
            assert!(e.list_images().await.unwrap()[0].repo_tags == ["img:latest"]);
        });
    }

    #[test]
    fn events_follow_the_changes_and_resume_from_since() {
        let e = FakeEngine::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        e.set_clock(t0);
        let filters = Filters::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec!["p=a".to_string()]),
        ]);
        let seen = |evs: &[Result<EventMessage, EngineError>]| -> Vec<String> {
            evs.iter()
                .map(|ev| {
                    let ev = ev.as_ref().unwrap();
                    let attrs = ev.actor.as_ref().unwrap().attributes.as_ref().unwrap();
                    match attrs.get("exitCode") {
                        Some(code) => format!("{} {code}", ev.action.as_deref().unwrap()),
                        None => ev.action.clone().unwrap(),
                    }
                })
                .collect()
        };
        block(async {
            let mut live = e.events(None, None, filters.clone());
            let id = e
                .create_container("p-web-1", None, labelled("img", &[("p", "a")]))
                .await
                .unwrap();
            e.create_container("other", None, labelled("img", &[]))
                .await
                .unwrap();
            e.start_container(&id).await.unwrap();
            e.advance(Duration::from_secs(1));
            e.exit("p-web-1", 1);
            e.start_container(&id).await.unwrap();
            e.kill("p-web-1");
            e.start_container(&id).await.unwrap();
            e.stop_container(&id).await.unwrap();
            e.remove_container(&id, true).await.unwrap();
            let got: Vec<_> = live.by_ref().take(11).collect().await;
            assert_eq!(
                seen(&got),
                [
                    "create", "start", "die 1", "start", "kill", "die 137", "start", "kill",
                    "die 0", "stop", "destroy"
                ]
            );
            assert!(
                futures::FutureExt::now_or_never(live.next()).is_none(),
                "nothing else, and the stream stays open"
            );
            // Resumed from the exit, up to now: the past events, then the end.
            let at = |t: SystemTime| format!("{}.000000000", unix(t).as_secs());
            let t1 = t0 + Duration::from_secs(1);
            let resumed: Vec<_> = e
                .events(Some(at(t1)), Some(at(t1)), filters.clone())
                .collect()
                .await;
            assert_eq!(seen(&resumed)[..2], ["die 1", "start"]);
            assert_eq!(resumed.len(), 9);
        });
    }
}
