//! The autoscaler: a task of its own that reads each autoscaled service's triggers every
//! `polling_interval`, decides ([`super::decide`]) and publishes the replica targets. The
//! runtime takes them into the config the mode runs, whichever mode that is, and a new
//! target wakes its loop. It logs one INFO line per change of a target (action
//! `autoscale`) and nothing at INFO when nothing changed; a trigger that stops or starts
//! answering again is said once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decide::{self, Decision, Input, Memory};
use super::read::{Readers, Replicas};
use crate::config::{Autoscale, Project};
use crate::telemetry::Telemetry;
use crate::telemetry::autoscale::{AutoscaleStatus, TriggerStatus};

/// Replica targets by service.
pub type Counts = BTreeMap<String, u32>;

/// What the autoscaler publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Every autoscaled service has a target (its first count is known).
    pub ready: bool,
    /// The services it sets the target of (not those pinned by `--scale`).
    pub counts: Counts,
}

/// What the autoscaler works from: each service's settings and the target the config
/// gives it otherwise (used when its replicas cannot be counted at start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specs {
    pub services: BTreeMap<String, Autoscale>,
    pub fallback: Counts,
}

impl Specs {
    pub fn of(project: &Project, services: &BTreeMap<String, Autoscale>) -> Specs {
        Specs {
            services: services.clone(),
            fallback: project
                .services
                .iter()
                .filter(|(n, _)| services.contains_key(*n))
                .map(|(n, s)| (n.clone(), s.replicas))
                .collect(),
        }
    }
}

/// The runtime's handle on the autoscaler task.
pub struct Autoscaler {
    specs: watch::Sender<Specs>,
    targets: watch::Receiver<Targets>,
}

/// How long the first count of a service's replicas may take.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);

impl Autoscaler {
    /// Start the task for `specs`; it ends when `cancel` fires.
    pub fn spawn(
        project: &str,
        specs: Specs,
        replicas: Option<Arc<dyn Replicas>>,
        telemetry: Telemetry,
        cancel: CancellationToken,
    ) -> (Autoscaler, JoinHandle<()>) {
        let (specs_tx, specs_rx) = watch::channel(specs);
        let (targets_tx, targets_rx) = watch::channel(Targets::default());
        let task = Task {
            project: project.to_string(),
            readers: Readers::new(replicas),
            services: BTreeMap::new(),
            pinned: BTreeMap::new(),
            telemetry,
            targets: targets_tx,
        };
        let handle = tokio::spawn(task.run(specs_rx, cancel));
        let a = Autoscaler {
            specs: specs_tx,
            targets: targets_rx,
        };
        (a, handle)
    }

    /// A reloaded config's settings.
    pub fn reload(&self, specs: Specs) {
        self.specs.send_if_modified(|s| {
            let changed = *s != specs;
            *s = specs;
            changed
        });
    }

    /// The targets as they are now.
    pub fn counts(&self) -> Counts {
        self.targets.borrow().counts.clone()
    }

    /// Whether any service is autoscaled at all.
    pub fn active(&self) -> bool {
        !self.specs.borrow().services.is_empty()
    }

    /// Wait until every autoscaled service has a first target, or `deadline` passed.
    pub async fn ready(&mut self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, self.targets.wait_for(|t| t.ready)).await;
    }

    /// Wait for new targets (never returns once the task ended).
    pub async fn changed(&mut self) {
        if self.targets.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One autoscaled service, between polls.
struct Scaled {
    spec: Autoscale,
    memory: Memory,
    current: u32,
    /// `current` is the count of the service's replicas (not the files' count, used
    /// while they could not be counted): counted again at each poll until it is.
    counted: bool,
    next: Instant,
    /// Per trigger that does not answer, its latest error (said when it stopped).
    said: HashMap<String, String>,
    last: Option<Decision>,
    values: Vec<Result<f64, String>>,
}

struct Task {
    project: String,
    readers: Readers,
    services: BTreeMap<String, Scaled>,
    /// Services `--scale` pins, and their count (said once).
    pinned: BTreeMap<String, u32>,
    telemetry: Telemetry,
    targets: watch::Sender<Targets>,
}

impl Task {
    async fn run(mut self, mut specs: watch::Receiver<Specs>, cancel: CancellationToken) {
        let first = specs.borrow_and_update().clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = self.adopt(first) => {}
        }
        loop {
            let now = Instant::now();
            let due: Vec<String> = self
                .services
                .iter()
                .filter(|(_, s)| s.next <= now)
                .map(|(n, _)| n.clone())
                .collect();
            for name in due {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.poll(&name) => {}
                }
            }
            let next = self.services.values().map(|s| s.next).min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = specs.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let s = specs.borrow_and_update().clone();
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.adopt(s) => {}
                    }
                }
                _ = sleep => {}
            }
        }
    }

    /// Take (new) settings: services that start being autoscaled begin from the count
    /// they have now; the others keep their memory, their target moved into new bounds.
    async fn adopt(&mut self, specs: Specs) {
        let now = Instant::now();
        self.services.retain(|n, _| specs.services.contains_key(n));
        self.pinned.retain(|n, _| specs.services.contains_key(n));
        let names: Vec<String> = specs.services.keys().cloned().collect();
        self.telemetry.autoscale_keep(&names);
        for (name, spec) in specs.services {
            if let Some(n) = spec.pinned {
                self.services.remove(&name);
                if self.pinned.insert(name.clone(), n) != Some(n) {
                    info!(action = "autoscale", project = %self.project, service = %name, desired = n, reason = "pinned", "autoscaling off: --scale pins the service");
                }
                self.telemetry.autoscale(status(&name, &spec, n, None, &[]));
                continue;
            }
            self.pinned.remove(&name);
            let bounded = |n: u32| n.clamp(spec.lowest(), spec.max);
            match self.services.get_mut(&name) {
                Some(s) => {
                    let polling_changed = s.spec.polling_interval != spec.polling_interval;
                    s.current = bounded(s.current);
                    s.spec = spec;
                    if polling_changed {
                        s.next = now;
                    }
                }
                None => {
                    let counted = self.count(&name).await;
                    let found = counted.unwrap_or_else(|| {
                        specs.fallback.get(&name).copied().unwrap_or(spec.lowest())
                    });
                    let current = bounded(found);
                    self.telemetry
                        .autoscale(status(&name, &spec, current, None, &[]));
                    self.services.insert(
                        name,
                        Scaled {
                            memory: Memory::started(current, now),
                            current,
                            counted: counted.is_some(),
                            next: now,
                            said: HashMap::new(),
                            last: None,
                            values: Vec::new(),
                            spec,
                        },
                    );
                }
            }
        }
        self.publish();
    }

    /// How many replicas `name` has now, if they can be counted.
    async fn count(&self, name: &str) -> Option<u32> {
        match tokio::time::timeout(COUNT_TIMEOUT, self.readers.count(name)).await {
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) => {
                debug!(project = %self.project, service = %name, error = %e, "cannot count the replicas");
                None
            }
            Err(_) => None,
        }
    }

    fn publish(&self) {
        let t = Targets {
            ready: true,
            counts: self
                .services
                .iter()
                .map(|(n, s)| (n.clone(), s.current))
                .collect(),
        };
        self.targets.send_if_modified(|old| {
            let changed = *old != t;
            *old = t;
            changed
        });
    }

    /// Read `name`'s triggers, decide, say and publish what changed.
    async fn poll(&mut self, name: &str) {
        let Some((triggers, counted)) = self
            .services
            .get(name)
            .map(|s| (s.spec.triggers.clone(), s.counted))
        else {
            return;
        };
        // Started from the files' count: the replicas' own count, as soon as there is one.
        let recount = if counted {
            None
        } else {
            self.count(name).await
        };
        let values = self.readers.read_all(name, &triggers).await;
        let now = Instant::now();
        self.errors(name, &triggers, &values);
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        if let Some(n) = recount {
            s.current = n.clamp(s.spec.lowest(), s.spec.max);
            s.memory = Memory::started(s.current, now);
            s.counted = true;
        }
        let inputs: Vec<Input> = triggers
            .iter()
            .zip(&values)
            .map(|(t, v)| Input {
                value: v.as_ref().ok().copied(),
                target: t.target,
                activation: t.activation,
                per_replica: t.source.per_replica(),
            })
            .collect();
        let d = decide::decide(&s.spec, &mut s.memory, &inputs, s.current, now);
        let from = s.current;
        s.next = now + s.spec.polling_interval;
        s.current = d.desired;
        s.values = values;
        if d.desired != from {
            let direction = if d.desired > from { "up" } else { "down" };
            info!(
                action = "autoscale",
                project = %self.project,
                service = %name,
                desired = d.desired,
                from,
                reason = d.limited_by.as_str(),
                triggers = %inputs_line(&s.spec, &s.values, &d),
                scale_down_window = %humantime::format_duration(s.spec.scale_down_window),
                "scaling {direction}"
            );
            self.telemetry.autoscaled(name, direction);
        }
        let rec = status(name, &s.spec, d.desired, Some(&d), &s.values);
        s.last = Some(d);
        self.telemetry.autoscale(rec);
        self.publish();
    }

    /// Say each trigger's error once, and when it answers again.
    fn errors(
        &mut self,
        name: &str,
        triggers: &[crate::config::ScaleTrigger],
        values: &[Result<f64, String>],
    ) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        for (t, v) in triggers.iter().zip(values) {
            match v {
                Err(e) => {
                    self.telemetry.autoscale_error(name, &t.name);
                    // Said when it stops answering; other errors while it does not
                    // answer only at debug level (the latest is in the status).
                    if s.said.insert(t.name.clone(), e.clone()).is_none() {
                        warn!(action = "autoscale", project = %self.project, service = %name, trigger = %t.name, desired = s.current, error = %e, "trigger did not answer; holding the count");
                    } else {
                        debug!(project = %self.project, service = %name, trigger = %t.name, error = %e, "trigger still does not answer");
                    }
                }
                Ok(_) => {
                    if s.said.remove(&t.name).is_some() {
                        info!(action = "autoscale", project = %self.project, service = %name, trigger = %t.name, "trigger answers again");
                    }
                }
            }
        }
    }
}

/// `redis-0=23 (target 5, wants 5), cpu-1=35 (target 70, wants 2)`.
fn inputs_line(spec: &Autoscale, values: &[Result<f64, String>], d: &Decision) -> String {
    spec.triggers
        .iter()
        .zip(values)
        .zip(&d.wants)
        .map(|((t, v), w)| {
            let value = match v {
                Ok(v) => format!("{v}"),
                Err(_) => "none".to_string(),
            };
            let wants = w.map_or("-".to_string(), |w| w.to_string());
            format!("{}={value} (target {}, wants {wants})", t.name, t.target)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn status(
    name: &str,
    spec: &Autoscale,
    desired: u32,
    d: Option<&Decision>,
    values: &[Result<f64, String>],
) -> AutoscaleStatus {
    AutoscaleStatus {
        service: name.to_string(),
        min: spec.min,
        max: spec.max,
        floor: spec.floor,
        pinned: spec.pinned,
        desired,
        limited_by: d.map_or("none", |d| d.limited_by.as_str()).to_string(),
        scale_down_window: humantime::format_duration(spec.scale_down_window).to_string(),
        polling_interval: humantime::format_duration(spec.polling_interval).to_string(),
        // A decision is made at each poll, answered or not.
        last_poll: d
            .map(|_| humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        triggers: spec
            .triggers
            .iter()
            .enumerate()
            .map(|(i, t)| TriggerStatus {
                name: t.name.clone(),
                kind: t.source.kind().to_string(),
                target: t.target,
                value: values.get(i).and_then(|v| v.as_ref().ok().copied()),
                wants: d.and_then(|d| d.wants.get(i).copied().flatten()),
                error: values.get(i).and_then(|v| v.as_ref().err().cloned()),
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
