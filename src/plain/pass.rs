//! One plain-mode pass: list every node that is up (at once; a node that cannot be
//! listed is frozen, its last list kept), plan, execute, record the outcomes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::{Plain, say};
use crate::config::Availability;
use crate::config::Project;
use crate::engine::{Client, connect};
use crate::execute::Executor;
use crate::observe::{self, Snapshot, State};
use crate::plan::{self, NodeState, NodeView};

/// One node as a pass found it: its name, state, labels (the engine's, under the file's)
/// and availability.
type Seen = (String, NodeState, BTreeMap<String, String>, Availability);

/// A plan, the running counts it was made from, and the nodes whose networks and
/// volumes it needs listed first.
struct Planned {
    plan: plan::Plan,
    counts: HashMap<String, usize>,
    unlisted: Vec<String>,
    /// Each service's state, as an operator sees it.
    states: Vec<crate::telemetry::ServiceStateRecord>,
}

/// A list that takes longer than this counts as failed for the pass (the node is frozen,
/// not waited for).
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

impl Plain {
    /// List every node that is up, at once; a node that cannot be listed is frozen.
    async fn observe(&mut self, changed: &HashSet<String>) -> (Vec<Seen>, HashMap<String, Client>) {
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                let mut st = n.status();
                st.labels.extend(n.config.labels.clone());
                (
                    n.name.clone(),
                    n.endpoint.clone(),
                    st,
                    n.config.availability,
                )
            })
            .collect();
        let project = self.project.name.clone();
        let lists = futures::future::join_all(statuses.iter().map(|(name, endpoint, st, _)| {
            let docker = st.engine.clone().filter(|_| st.up);
            let project = project.clone();
            async move {
                match docker {
                    None => None,
                    Some(d) => Some(
                        tokio::time::timeout(
                            LIST_TIMEOUT,
                            observe::snapshot(&d, name, &project, changed),
                        )
                        .await
                        .map_err(|_| {
                            format!("listing took longer than {} s", LIST_TIMEOUT.as_secs())
                        })
                        .and_then(|r| r.map_err(|e| connect::explain(endpoint, &e)))
                        .map(|s| (d, s)),
                    ),
                }
            }
        }))
        .await;
        let mut views = Vec::new();
        let mut engines = HashMap::new();
        for ((name, endpoint, st, availability), list) in statuses.into_iter().zip(lists) {
            let state = match list {
                None => {
                    let why = st.error.as_deref().unwrap_or("not connected yet");
                    self.telemetry.unreachable(&name, why);
                    NodeState::Down
                }
                Some(Ok((docker, snapshot))) => {
                    // A newer leader's container ends our leadership at once.
                    if let Some(t) = snapshot.containers.iter().map(|c| c.term()).max() {
                        self.lease.saw_term(t);
                    }
                    let mut seen = snapshot.observation(&self.project, self.own_id.as_deref());
                    global_desired(&self.project, (&name, &st.labels, availability), &mut seen);
                    self.telemetry.observed(&name, seen);
                    if self.said.list_failing.remove(&name) {
                        info!(action = "observe", project = %self.project.name, node = %name, "node listed again");
                    }
                    self.last.insert(name.clone(), snapshot);
                    engines.insert(name.clone(), docker);
                    NodeState::Up
                }
                Some(Err(e)) => {
                    self.telemetry.unreachable(&name, &e);
                    if self.said.list_failing.insert(name.clone()) {
                        warn!(
                            action = "observe",
                            project = %self.project.name,
                            node = %name,
                            engine = %endpoint.display(),
                            error = %e,
                            "cannot list the node; acting elsewhere until it answers"
                        );
                    }
                    NodeState::Frozen
                }
            };
            if state == NodeState::Down {
                self.last.remove(&name);
            }
            self.node_state(&name, state, &st);
            views.push((name, state, st.labels, availability));
        }
        (views, engines)
    }

    /// One reconcile pass. Returns when to plan again regardless of events.
    pub async fn reconcile(&mut self, changed: &HashSet<String>) -> Option<Duration> {
        let started = Instant::now();
        // A pass spans every node: its duration counts for each.
        let _timers: Vec<_> = self
            .nodes
            .iter()
            .map(|n| self.telemetry.pass(&n.name))
            .collect();
        let (mut states, engines) = self.observe(changed).await;
        if !self.membership.leaving.is_empty() {
            let seen: Vec<(String, NodeState)> =
                states.iter().map(|(n, s, _, _)| (n.clone(), *s)).collect();
            self.let_go(&seen);
            states.retain(|(n, ..)| self.nodes.iter().any(|h| &h.name == n));
        }
        self.follow_images(&engines).await;
        let mut plan = self.plan(&states);
        // Containers to create or start: list those nodes' networks and volumes, then plan
        // again with them (an idle pass never lists them).
        if !plan.unlisted.is_empty() {
            self.list_infra(&plan.unlisted, &engines).await;
            plan = self.plan(&states);
        }
        let Planned {
            plan,
            counts,
            states,
            ..
        } = plan;
        self.report_counts(counts, &states);
        self.telemetry.states(states);
        // The plan's waits and stopped slots are the project's, not a node's: recorded once,
        // under the first node.
        if let Some(first) = self.nodes.first() {
            self.telemetry.planned(&first.name, plan.record());
        }
        self.report_waits(&plan);
        self.history.settled(&plan.settled);
        self.updates_settled(&plan.settled);
        if self.update_failures(&plan) {
            return Some(Duration::ZERO);
        }
        if plan.actions.is_empty() {
            debug!(project = %self.project.name, duration_ms = started.elapsed().as_millis() as u64, "nothing to do");
            return plan.requeue_after;
        }
        let failed = self.execute(&plan.actions, &engines).await;
        // Look again at once: the engines changed, and rolling updates go one step per pass.
        let again = if failed {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Some(plan.requeue_after.map_or(again, |r| r.min(again)))
    }

    /// Plan from the nodes' states and their last lists. Containers killed through the API
    /// whose exit is now seen have their crash history forgotten first.
    fn plan(&mut self, states: &[Seen]) -> Planned {
        let empty = Snapshot::default();
        let views: Vec<NodeView> = states
            .iter()
            .map(|(name, state, labels, availability)| NodeView {
                name,
                state: *state,
                availability: *availability,
                labels,
                snapshot: self.last.get(name).unwrap_or(&empty),
            })
            .collect();
        let all: Vec<&Snapshot> = views
            .iter()
            .filter(|v| v.state != NodeState::Down)
            .map(|v| v.snapshot)
            .collect();
        let counts = count_running(&self.project, &all);
        // An exit after `docker kill` / `docker stop` is not a crash: the slot restarts at
        // once, whatever its crash history.
        for (id, service, slot) in exited_kills(&self.killed, &all) {
            self.killed.remove(&id);
            self.history.backoff.forget(&service, slot);
        }
        self.killed
            .retain(|_, at| at.elapsed() < Duration::from_secs(60));
        let (halted, updating) = (self.history.halted(), self.history.updating());
        // Routes are remembered only while their ambassador runs.
        let ambassadors: HashSet<&str> = all
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter(|c| c.ambassador().is_some() && c.state == State::Running)
            .map(|c| c.id.as_str())
            .collect();
        self.pushed
            .retain(|id, _| ambassadors.contains(id.as_str()));
        let input = plan::Input {
            pushed: &self.pushed,
            project: &self.project,
            nodes: &views,
            backoff: &self.history.backoff,
            backoff_cfg: &self.settings.backoff,
            now: SystemTime::now(),
            exclude: self.own_id.as_deref(),
            rebalance: self.settings.rebalance,
            halted: &halted,
            updating: &updating,
        };
        let plan = plan::plan(&input);
        let unlisted = plan::unlisted_infra(&input, &plan)
            .into_iter()
            .map(str::to_string)
            .collect();
        let rolled_back = self.history.rolled_back();
        let rollouts = plan::state::Rollouts {
            halted: &halted,
            rolled_back: &rolled_back,
            updating: &updating,
        };
        let states = plan::state::services(&input, &plan, &rollouts);
        Planned {
            plan,
            counts,
            unlisted,
            states,
        }
    }

    /// Apply `actions`, recording and logging each outcome and feeding it to the
    /// history. True when one failed.
    async fn execute(
        &mut self,
        actions: &[plan::Action],
        engines: &HashMap<String, Client>,
    ) -> bool {
        let executor = Executor {
            nodes: engines,
            project: &self.project,
            parallel: self.settings.parallel,
            credentials: &self.settings.credentials,
            term: self.lease.term().filter(|t| *t > 0),
        };
        let mut failed = false;
        let (history, settings, project) = (&mut self.history, &self.settings, &self.project);
        let telemetry = &self.telemetry;
        let pushed = &mut self.pushed;
        executor
            .execute(actions, |o| {
                failed |= o.error.is_some();
                if let (plan::Kind::Routes { routes }, Some(container), None) =
                    (&o.action.kind, o.action.target.container(), &o.error)
                {
                    pushed.insert(container.to_string(), (**routes).clone());
                }
                telemetry.action(o.record());
                say::log_outcome(project, &o);
                let ok = o.error.is_none();
                history.record(project, &settings.backoff, &o.action, ok, SystemTime::now());
            })
            .await;
        failed
    }

    /// Add networks and volumes to the snapshots of `nodes`. A node that cannot be listed
    /// keeps its snapshot without them, so nothing is created there this pass.
    async fn list_infra(&mut self, nodes: &[String], engines: &HashMap<String, Client>) {
        let project = self.project.name.clone();
        let lists = futures::future::join_all(nodes.iter().filter_map(|name| {
            let docker = engines.get(name)?.clone();
            let mut snapshot = self.last.get(name)?.clone();
            let project = project.clone();
            Some(async move {
                let r = tokio::time::timeout(
                    LIST_TIMEOUT,
                    observe::list_infra(&docker, &project, &mut snapshot),
                )
                .await;
                (name.clone(), r, snapshot)
            })
        }))
        .await;
        for (name, result, snapshot) in lists {
            match result {
                Ok(Ok(())) => {
                    self.last.insert(name, snapshot);
                }
                Ok(Err(e)) => {
                    warn!(action = "observe", project = %self.project.name, node = %name, error = %e, "cannot list networks and volumes")
                }
                Err(_) => {
                    warn!(action = "observe", project = %self.project.name, node = %name, "listing networks and volumes timed out")
                }
            }
        }
    }
}

/// A global service wants one replica on a node it fits (active, or paused with one
/// already), none elsewhere: what `seen` records as the node's desired count.
fn global_desired(
    project: &Project,
    (node, labels, availability): (&str, &BTreeMap<String, String>, Availability),
    seen: &mut crate::telemetry::Observation,
) {
    for (name, svc) in &project.services {
        if svc.mode != crate::config::DeployMode::Global {
            continue;
        }
        if let Some(c) = seen.services.get_mut(name) {
            let fits = plan::global::fits(svc, node, labels, availability)
                && (availability == Availability::Active || c.containers > 0);
            c.desired = u32::from(fits);
        }
    }
}

/// Running containers of each service over the listed nodes.
fn count_running(project: &Project, snapshots: &[&Snapshot]) -> HashMap<String, usize> {
    let mut running: HashMap<String, usize> = HashMap::new();
    for c in snapshots.iter().flat_map(|s| s.containers.iter()) {
        if c.owned_by(&project.name)
            && c.state == State::Running
            && let Some(svc) = c.service()
        {
            *running.entry(svc.to_string()).or_default() += 1;
        }
    }
    running
}

/// Containers killed through the API whose exit is now seen: (id, service, slot).
fn exited_kills(
    killed: &HashMap<String, Instant>,
    snapshots: &[&Snapshot],
) -> Vec<(String, String, u32)> {
    if killed.is_empty() {
        return Vec::new();
    }
    snapshots
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.state == State::Exited && killed.contains_key(&c.id))
        .filter_map(|c| Some((c.id.clone(), c.service()?.to_string(), c.slot()?)))
        .collect()
}
