//! What the simulator counts over all its engines: requests by kind, running containers
//! (and the most seen at once), and reactions: from a crash's `die` to the first create or
//! start of a container of the same name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Ping,
    Version,
    Info,
    List,
    Inspect,
    Create,
    Start,
    Stop,
    Restart,
    Kill,
    Remove,
    Rename,
    Update,
    Events,
    Networks,
    Volumes,
    Images,
    Other,
}

const KINDS: [Kind; 18] = [
    Kind::Ping,
    Kind::Version,
    Kind::Info,
    Kind::List,
    Kind::Inspect,
    Kind::Create,
    Kind::Start,
    Kind::Stop,
    Kind::Restart,
    Kind::Kill,
    Kind::Remove,
    Kind::Rename,
    Kind::Update,
    Kind::Events,
    Kind::Networks,
    Kind::Volumes,
    Kind::Images,
    Kind::Other,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Version => "version",
            Kind::Info => "info",
            Kind::List => "list",
            Kind::Inspect => "inspect",
            Kind::Create => "create",
            Kind::Start => "start",
            Kind::Stop => "stop",
            Kind::Restart => "restart",
            Kind::Kill => "kill",
            Kind::Remove => "remove",
            Kind::Rename => "rename",
            Kind::Update => "update",
            Kind::Events => "events",
            Kind::Networks => "networks",
            Kind::Volumes => "volumes",
            Kind::Images => "images",
            Kind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.name() == s)
    }

    /// The kind of call a request is (the path without the `/vX.Y` prefix).
    pub fn of(method: &str, path: &str) -> Kind {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (_, ["_ping"]) => Kind::Ping,
            (_, ["version"]) => Kind::Version,
            (_, ["info"]) => Kind::Info,
            (_, ["events"]) => Kind::Events,
            ("GET", ["containers", "json"]) => Kind::List,
            ("POST", ["containers", "create"]) => Kind::Create,
            ("GET", ["containers", _, "json"]) => Kind::Inspect,
            ("POST", ["containers", _, "start"]) => Kind::Start,
            ("POST", ["containers", _, "stop"]) => Kind::Stop,
            ("POST", ["containers", _, "restart"]) => Kind::Restart,
            ("POST", ["containers", _, "kill"]) => Kind::Kill,
            ("POST", ["containers", _, "rename"]) => Kind::Rename,
            ("POST", ["containers", _, "update"]) => Kind::Update,
            ("DELETE", ["containers", _]) => Kind::Remove,
            (_, ["networks", ..]) => Kind::Networks,
            (_, ["volumes", ..]) => Kind::Volumes,
            (_, ["images", ..]) => Kind::Images,
            _ => Kind::Other,
        }
    }
}

#[derive(Default)]
pub struct Shared {
    counts: [AtomicU64; 18],
    running: AtomicI64,
    max_running: AtomicI64,
    /// Container name -> when its crash's `die` was sent.
    crashed: Mutex<HashMap<String, Instant>>,
    /// Milliseconds from a crash to the first create or start of its name.
    reactions: Mutex<Vec<f64>>,
    /// Container name -> its last crash, kept after the reaction (`/crash?rest_ms=`).
    last_crash: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    pub fn count(&self, kind: Kind) {
        let i = KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn crashed(&self, name: &str) {
        let now = Instant::now();
        self.crashed.lock().unwrap().insert(name.to_string(), now);
        self.last_crash
            .lock()
            .unwrap()
            .insert(name.to_string(), now);
    }

    /// True unless `name` crashed within `rest`.
    pub fn rested(&self, name: &str, rest: Duration) -> bool {
        self.last_crash
            .lock()
            .unwrap()
            .get(name)
            .is_none_or(|at| at.elapsed() >= rest)
    }

    /// A create or start of `name`: the reaction to its crash, if it crashed.
    pub fn replaced(&self, name: &str) {
        if let Some(at) = self.crashed.lock().unwrap().remove(name) {
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            self.reactions.lock().unwrap().push(ms);
        }
    }

    pub fn started(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
    }

    pub fn stopped(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Forget reactions and crashes; the most running at once starts again from now.
    pub fn reset(&self) {
        self.reactions.lock().unwrap().clear();
        self.crashed.lock().unwrap().clear();
        self.max_running
            .store(self.running.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub fn json(&self) -> Value {
        let requests: serde_json::Map<String, Value> = KINDS
            .iter()
            .zip(&self.counts)
            .map(|(k, n)| (k.name().to_string(), json!(n.load(Ordering::Relaxed))))
            .collect();
        let total: u64 = self.counts.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        json!({
            "requests": requests,
            "requests_total": total,
            "running": self.running.load(Ordering::SeqCst),
            "max_running": self.max_running.load(Ordering::SeqCst),
            "reactions_ms": *self.reactions.lock().unwrap(),
            "pending_crashes": self.crashed.lock().unwrap().len(),
        })
    }
}
