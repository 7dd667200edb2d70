//! What one simulated engine holds: containers, networks, volumes, images, and its event
//! history, with the JSON shapes the Engine API (1.41) gives them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Events kept for `since` (the real engine keeps a bounded log too).
pub const HISTORY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// The create body's `Config` part (without `HostConfig` and `NetworkingConfig`).
    pub config: Value,
    pub host_config: Value,
    /// Network name -> network id.
    pub networks: BTreeMap<String, String>,
    pub mounts: Vec<Value>,
    pub created: SystemTime,
    pub status: Status,
    pub exit_code: i64,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub pid: u32,
    /// `Config.Labels`, read once (labels never change).
    pub labels: BTreeMap<String, String>,
    /// The list entry's JSON before and after its `Status` text (which changes with the
    /// clock): a list of thousands is then mostly copying. Cleared on every change.
    pub cache: Option<(String, String)>,
}

impl Container {
    /// The labels of a create body.
    pub fn labels_of(config: &Value) -> BTreeMap<String, String> {
        config
            .get("Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Append the list entry to `out`.
    pub fn write_summary(&mut self, now: SystemTime, out: &mut String) {
        if self.cache.is_none() {
            let mut v = self.summary(now);
            v["Status"] = json!("\u{1}");
            let text = v.to_string();
            let (pre, post) = text.split_once("\"\\u0001\"").unwrap_or((&text, ""));
            self.cache = Some((pre.to_string(), post.to_string()));
        }
        let (pre, post) = self.cache.as_ref().expect("just filled");
        out.push_str(pre);
        out.push_str(&json!(self.status_text(now)).to_string());
        out.push_str(post);
    }

    /// The `Status` text of a list: `Up 3 minutes`, `Exited (137) 2 seconds ago`, `Created`.
    fn status_text(&self, now: SystemTime) -> String {
        let since = |t: Option<SystemTime>| {
            human(
                t.and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default(),
            )
        };
        match self.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}", since(self.started_at)),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                since(self.finished_at)
            ),
        }
    }

    /// One entry of `GET /containers/json`.
    pub fn summary(&self, now: SystemTime) -> Value {
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": self.command(),
            "Created": secs(self.created),
            "Ports": [],
            "Labels": self.labels,
            "State": self.status.as_str(),
            "Status": self.status_text(now),
            "HostConfig": { "NetworkMode": self.network_mode() },
            "NetworkSettings": { "Networks": self.endpoints() },
            "Mounts": self.mounts,
        })
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self) -> Value {
        let running = self.status == Status::Running;
        let mut config = self.config.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.entry("Hostname")
                .or_insert_with(|| json!(self.id[..12].to_string()));
            obj.entry("Labels").or_insert_with(|| json!({}));
            obj.insert("Image".into(), json!(self.image));
        }
        json!({
            "Id": self.id,
            "Created": rfc3339(Some(self.created)),
            "Path": self.command().split(' ').next().unwrap_or_default(),
            "Args": [],
            "State": {
                "Status": self.status.as_str(),
                "Running": running,
                "Paused": false,
                "Restarting": false,
                "OOMKilled": false,
                "Dead": false,
                "Pid": if running { self.pid } else { 0 },
                "ExitCode": self.exit_code,
                "Error": "",
                "StartedAt": rfc3339(self.started_at),
                "FinishedAt": rfc3339(self.finished_at),
            },
            "Image": self.image_id,
            "ResolvConfPath": "",
            "HostnamePath": "",
            "HostsPath": "",
            "LogPath": "",
            "Name": format!("/{}", self.name),
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": self.host_config,
            "Mounts": self.mounts,
            "Config": config,
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": "",
                "HairpinMode": false,
                "Ports": {},
                "SandboxKey": "",
                "Networks": self.endpoints(),
            },
        })
    }

    fn command(&self) -> String {
        let words = |k: &str| {
            self.config
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let mut all = words("Entrypoint");
        all.extend(words("Cmd"));
        if all.is_empty() {
            "/bin/sleep 86400".into()
        } else {
            all.join(" ")
        }
    }

    pub fn network_mode(&self) -> String {
        match self.host_config.get("NetworkMode").and_then(Value::as_str) {
            None | Some("") => "default".into(),
            Some(m) => m.into(),
        }
    }

    fn endpoints(&self) -> Value {
        let nets: serde_json::Map<String, Value> = self
            .networks
            .iter()
            .map(|(name, id)| {
                let ip = if self.status == Status::Running {
                    "172.18.0.2"
                } else {
                    ""
                };
                (
                    name.clone(),
                    json!({
                        "IPAMConfig": null,
                        "Links": null,
                        "Aliases": null,
                        "NetworkID": id,
                        "EndpointID": "",
                        "Gateway": "",
                        "IPAddress": ip,
                        "IPPrefixLen": 0,
                        "IPv6Gateway": "",
                        "GlobalIPv6Address": "",
                        "GlobalIPv6PrefixLen": 0,
                        "MacAddress": "",
                        "DriverOpts": null,
                    }),
                )
            })
            .collect();
        Value::Object(nets)
    }
}

#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
    pub builtin: bool,
}

impl Network {
    pub fn json(&self, containers: &[(&str, &str)]) -> Value {
        let attached: serde_json::Map<String, Value> = containers
            .iter()
            .map(|(id, name)| {
                (
                    id.to_string(),
                    json!({"Name": name, "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}),
                )
            })
            .collect();
        json!({
            "Name": self.name,
            "Id": self.id,
            "Created": rfc3339(Some(self.created)),
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": null, "Config": []},
            "Internal": false,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": attached,
            "Options": {},
            "Labels": self.labels,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created: SystemTime,
}

impl Volume {
    pub fn json(&self) -> Value {
        json!({
            "CreatedAt": rfc3339(Some(self.created)),
            "Driver": self.driver,
            "Labels": self.labels,
            "Mountpoint": format!("/var/lib/docker/volumes/{}/_data", self.name),
            "Name": self.name,
            "Options": self.options,
            "Scope": "local",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub tags: Vec<String>,
    pub created: SystemTime,
}

impl Image {
    pub fn summary(&self) -> Value {
        json!({
            "Containers": -1,
            "Created": secs(self.created),
            "Id": self.id,
            "Labels": null,
            "ParentId": "",
            "RepoDigests": [],
            "RepoTags": self.tags,
            "SharedSize": -1,
            "Size": 1_200_000,
            "VirtualSize": 1_200_000,
        })
    }

    pub fn inspect(&self) -> Value {
        json!({
            "Id": self.id,
            "RepoTags": self.tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": "",
            "Created": rfc3339(Some(self.created)),
            "Container": "",
            "DockerVersion": "",
            "Author": "",
            "Config": {"Cmd": ["/bin/sleep", "86400"], "Env": null, "Labels": null},
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 1_200_000,
            "VirtualSize": 1_200_000,
            "GraphDriver": {"Data": {}, "Name": "overlay2"},
            "RootFS": {"Type": "layers", "Layers": []},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        })
    }

    /// Whether `reference` (a tag, `name` meaning `name:latest`, or an id) names it.
    pub fn named(&self, reference: &str) -> bool {
        let full = if reference.contains(':') || reference.contains('@') {
            reference.to_string()
        } else {
            format!("{reference}:latest")
        };
        let bare = self.id.trim_start_matches("sha256:");
        self.tags.contains(&full)
            || reference == self.id
            || (reference.len() >= 12 && bare.starts_with(reference.trim_start_matches("sha256:")))
    }
}

/// One event, with what filters match on kept beside its JSON.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub time_nano: i64,
    pub typ: &'static str,
    pub action: String,
    pub actor: String,
    pub attributes: BTreeMap<String, String>,
    pub line: Vec<u8>,
}

impl Event {
    pub fn new(
        seq: u64,
        typ: &'static str,
        action: &str,
        actor: &str,
        attributes: BTreeMap<String, String>,
        from: Option<&str>,
    ) -> Event {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time_nano = now.as_nanos() as i64;
        let mut v = json!({
            "Type": typ,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": attributes},
            "scope": "local",
            "time": now.as_secs(),
            "timeNano": time_nano,
        });
        if typ == "container" {
            v["status"] = json!(action);
            v["id"] = json!(actor);
            v["from"] = json!(from.unwrap_or_default());
        }
        Event {
            seq,
            time_nano,
            typ,
            action: action.to_string(),
            actor: actor.to_string(),
            attributes,
            line: format!("{v}\n").into_bytes(),
        }
    }

    /// Whether the event passes `filters` (`type`, `label`, `event`, `container`, `image`,
    /// `network`, `volume`; another key matches nothing, as the engine refuses it).
    pub fn matches(&self, filters: &HashMap<String, Vec<String>>) -> bool {
        filters.iter().all(|(key, values)| {
            values.is_empty()
                || values.iter().any(|want| match key.as_str() {
                    "type" => want == self.typ,
                    "event" => *want == self.action,
                    "label" => match want.split_once('=') {
                        Some((k, v)) => self.attributes.get(k).is_some_and(|a| a == v),
                        None => self.attributes.contains_key(want.as_str()),
                    },
                    "container" => {
                        self.typ == "container"
                            && (self.actor.starts_with(want.as_str())
                                || self.attributes.get("name") == Some(want))
                    }
                    "image" => self.attributes.get("image") == Some(want),
                    "network" | "volume" => {
                        self.typ == key
                            && (self.actor == *want || self.attributes.get("name") == Some(want))
                    }
                    "scope" => want == "local",
                    _ => false,
                })
        })
    }
}

/// Everything one engine holds.
#[derive(Debug, Default)]
pub struct State {
    pub containers: HashMap<String, Container>,
    /// Name -> id.
    pub names: HashMap<String, String>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub images: Vec<Image>,
    pub history: VecDeque<Arc<Event>>,
    pub seq: u64,
    /// How many containers run: kept as they start and exit, so that the harness's
    /// frequent `/stats` holds the engine for no scan of its containers.
    pub running: usize,
}

impl State {
    /// A container by full id, unique id prefix or name.
    pub fn find(&self, key: &str) -> Option<String> {
        let key = key.trim_start_matches('/');
        if self.containers.contains_key(key) {
            return Some(key.to_string());
        }
        if let Some(id) = self.names.get(key) {
            return Some(id.clone());
        }
        let mut found = self.containers.keys().filter(|id| id.starts_with(key));
        match (found.next(), found.next()) {
            (Some(id), None) if !key.is_empty() => Some(id.clone()),
            _ => None,
        }
    }

    /// A network by id, id prefix or name.
    pub fn network(&self, key: &str) -> Option<String> {
        if self.networks.contains_key(key) {
            return Some(key.to_string());
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Some(n.id.clone());
        }
        let mut found = self.networks.keys().filter(|id| id.starts_with(key));
        match (found.next(), found.next()) {
            (Some(id), None) if !key.is_empty() => Some(id.clone()),
            _ => None,
        }
    }

    pub fn image(&self, reference: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.named(reference))
    }
}

/// Seconds since the epoch.
pub fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// The engine's timestamps: RFC 3339 with nanoseconds; the zero time when unset.
pub fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".into(),
        Some(t) => {
            let whole = humantime::format_rfc3339_seconds(t).to_string();
            let nanos = t
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            format!("{}.{nanos:09}Z", whole.trim_end_matches('Z'))
        }
    }
}

/// The Docker CLI's rough durations: `Less than a second`, `5 seconds`, `About a minute`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        _ => format!("{} hours", s / 3600),
    }
}

/// A 64-hex id, unique per (engine, sequence number): splitmix64 is a bijection.
pub fn make_id(engine: usize, seq: u64) -> String {
    let mut x = ((engine as u64) << 40) ^ seq;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_hex() {
        let a = make_id(0, 1);
        let b = make_id(1, 1);
        let c = make_id(0, 2);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(a != b && a != c && b != c);
        assert!(a[..16] != b[..16] && a[..16] != c[..16]);
    }

    #[test]
    fn events_match_filters_like_the_engine() {
        let attrs = BTreeMap::from([
            ("drover.project".to_string(), "p".to_string()),
            ("name".to_string(), "p-web-1".to_string()),
        ]);
        let e = Event::new(1, "container", "die", "abc", attrs, Some("img"));
        let f = |k: &str, v: &str| HashMap::from([(k.to_string(), vec![v.to_string()])]);
        assert!(e.matches(&f("label", "drover.project=p")));
        assert!(e.matches(&f("label", "drover.project")));
        assert!(!e.matches(&f("label", "drover.project=q")));
        assert!(e.matches(&f("type", "container")));
        assert!(!e.matches(&f("type", "network")));
        assert!(e.matches(&f("container", "p-web-1")));
        assert!(e.matches(&f("event", "die")));
        let v: Value = serde_json::from_slice(&e.line).unwrap();
        assert_eq!(v["Action"], "die");
        assert_eq!(v["status"], "die");
    }

    #[test]
    fn times_look_like_the_engines() {
        let t = UNIX_EPOCH + Duration::new(1_800_000_000, 5);
        assert_eq!(rfc3339(Some(t)), "2027-01-15T08:00:00.000000005Z");
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
    }
}
