//! One plain-mode pass: observe every node that is up (at once: a list, or the kept
//! snapshot patched from what its events named; a node that cannot be observed is frozen,
//! its last snapshot kept), plan, execute, record the outcomes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::{Plain, say};
use crate::config::Availability;
use crate::config::Project;
use crate::engine::{Client, connect};
use crate::execute::Executor;
use crate::nodes::{NodeHandle, NodeStatus};
use crate::observe::{self, Snapshot, State};
use crate::plan::{self, NodeGroups, NodeState, NodeView};
use crate::runtime::Wake;

/// How soon to plan again while a down node is held for the lease's confirmation (a
/// renewal goes out every quarter of the ttl).
pub(super) const RECHECK_HELD: Duration = Duration::from_millis(100);

/// One node as a pass found it: its name, state, labels (the engine's, under the file's)
/// and availability.
pub(super) type Seen = (String, NodeState, BTreeMap<String, String>, Availability);

/// A plan, the running counts and rollouts it was made from, and the nodes whose networks
/// and volumes it needs listed first.
struct Planned {
    plan: plan::Plan,
    counts: HashMap<String, usize>,
    unlisted: Vec<String>,
    rollouts: Rollouts,
    /// What it was planned over besides the containers.
    world: World,
}

/// What a plan reads besides the containers and the definition: the nodes as the pass
/// found them, and the rollouts (halted, updating). A pass reuses the last plan's quiet
/// services only over the same.
pub(super) type World = (Vec<Seen>, (BTreeSet<String>, BTreeSet<String>));

/// The history's rollouts a plan was made with: (halted, updating, rolled back).
type Rollouts = (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>);

/// A list that takes longer than this counts as failed for the pass (the node is frozen,
/// not waited for).
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline of a list of a node that holds `size` containers (as last seen) after
/// `failed` lists of it failed in a row: a large node's list takes longer, and one that
/// keeps running late is given twice as long each time, up to two minutes, so that an
/// engine slower than any fixed deadline is still listed in the end.
fn list_deadline(size: usize, failed: u32) -> Duration {
    let base = LIST_TIMEOUT + Duration::from_millis(size as u64 * 2 / 5);
    (base * 2u32.pow(failed.min(5))).min(Duration::from_secs(120))
}

impl Plain {
    /// Observe every node that is up, at once: list it when it has no kept snapshot, its
    /// events cannot be trusted (not watched, a stream reopened, its last list failed) or
    /// its resync is due; otherwise patch the kept snapshot with the containers its events
    /// named and the last pass acted on (one inspect each). A node that cannot be observed
    /// is frozen, its last snapshot kept.
    async fn observe(&mut self, wake: &Wake) -> (Vec<Seen>, HashMap<String, Client>) {
        let statuses = self.statuses();
        let project = self.project.name.clone();
        let now = Instant::now();
        let looks: Vec<Option<Look>> = statuses
            .iter()
            .map(|(name, endpoint, st, _)| self.look((name, endpoint), st, wake, now))
            .collect();
        let results = futures::future::join_all(statuses.iter().zip(looks).map(
            |((name, endpoint, st, _), look)| {
                let docker = st.engine.clone().filter(|_| st.up);
                let project = project.clone();
                async move { Some(look?.run(docker?, name, endpoint, &project).await) }
            },
        ))
        .await;
        let same_project = self.observed_project.as_ref() == Some(&self.project);
        if !same_project {
            self.observed_project = Some(self.project.clone());
            // Classified for the old definition: each node is classified again (when
            // counted below, or by the planner while it is frozen).
            self.groups_on.clear();
        }
        // Only containers changed, and these: unless the definition changed or a node was
        // listed (the nodes' states, labels and availability are compared when planning).
        let mut named = Some(Named::default()).filter(|_| same_project);
        let mut views = Vec::new();
        // When each node that is down was found down, as the status read above says.
        let mut down_at = HashMap::new();
        let mut engines = HashMap::new();
        let observed = statuses.into_iter().zip(results).enumerate();
        for (i, ((name, endpoint, st, availability), result)) in observed {
            let state = match result {
                None => {
                    let why = st.error.as_deref().unwrap_or("not connected yet");
                    self.telemetry.unreachable(&name, why);
                    NodeState::Down
                }
                Some(Ok(mut looked)) => {
                    if looked.listed {
                        self.lists_failed.remove(&name);
                    }
                    let node = (name.as_str(), &st.labels, availability);
                    self.count(node, &looked, same_project);
                    match named.as_mut() {
                        Some(n) if !looked.whole => n.add(&mut looked),
                        _ => named = None,
                    }
                    self.reschedule((i, &name, &endpoint), &looked, st.watched, now);
                    self.last.insert(name.clone(), looked.snapshot);
                    engines.insert(name.clone(), looked.engine);
                    NodeState::Up
                }
                Some(Err((e, kept))) => {
                    self.telemetry.unreachable(&name, &e);
                    *self.lists_failed.entry(name.clone()).or_default() += 1;
                    if let Some(kept) = kept {
                        // Maybe patched in part: its groups are worked out again.
                        self.groups_on.remove(&name);
                        self.last.insert(name.clone(), kept);
                    }
                    // Listed again at the next pass, and no later than this.
                    self.due.insert(name.clone(), now + LIST_TIMEOUT);
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
            if state != NodeState::Up {
                self.observed.remove(&name);
            }
            self.node_state(&name, state, &st);
            if let Some(t) = st.down_at {
                down_at.insert(name.clone(), t);
            }
            views.push((name, state, st.labels, availability));
        }
        self.hold_if_disrupted(&mut views, &down_at);
        self.named = named;
        (views, engines)
    }

    /// Each node's name, endpoint, status (its labels under the file's) and availability.
    fn statuses(&self) -> Vec<(String, connect::Endpoint, NodeStatus, Availability)> {
        let status = |n: &NodeHandle| {
            let mut st = n.status();
            st.labels.extend(n.config.labels.clone());
            (
                n.name.clone(),
                n.endpoint.clone(),
                st,
                n.config.availability,
            )
        };
        self.nodes.iter().map(status).collect()
    }

    /// Record what `node` holds (telemetry's counts, the highest term seen) unless neither
    /// its snapshot, its labels and availability nor the definition changed.
    fn count(
        &mut self,
        (name, labels, avail): (&str, &BTreeMap<String, String>, Availability),
        looked: &Looked,
        same_project: bool,
    ) {
        let same = same_project
            && !looked.changed
            && self
                .observed
                .get(name)
                .is_some_and(|(l, a)| l == labels && *a == avail);
        // Patched in place: the same containers where they were, and a container's labels
        // never change, so its groups, lease terms and image digests stand.
        let in_place = same_project
            && !looked.listed
            && !looked.reshaped
            && self.groups_on.contains_key(name)
            && self.digests_on.contains_key(name);
        // A list that agrees with the view kept may hold its containers in another order:
        // the groups, positions in the snapshot, are taken again after every list.
        if (!same || looked.listed) && !in_place {
            let groups = NodeGroups::of(&looked.snapshot, &self.project, self.own_id.as_deref());
            self.groups_on.insert(name.to_string(), groups);
        }
        if same {
            // Nothing it holds or is asked to hold changed: the counts stand.
            self.telemetry.still_observed(name);
            return;
        }
        let own = self.own_id.as_deref();
        if !in_place {
            // A newer leader's container ends our leadership at once: every container the
            // node holds, listed or kept and patched.
            let terms = looked.snapshot.containers.iter().map(|c| c.term());
            if let Some(t) = terms.max() {
                self.lease.saw_term(t);
            }
            let digests = looked.snapshot.digests(&self.project.name, own);
            self.digests_on.insert(name.to_string(), digests);
        }
        // Patched, only the named containers can hold a slot not seen before.
        let only = (!looked.listed && same_project && self.observed.contains_key(name))
            .then_some(&looked.named);
        let mut seen = looked.snapshot.observation(&self.project, own, only);
        global_desired(&self.project, (name, labels, avail), &mut seen);
        let running = seen
            .services
            .iter()
            .map(|(s, c)| (s.clone(), c.actual as usize));
        self.running_on.insert(name.to_string(), running.collect());
        self.telemetry.observed(name, seen);
        self.observed
            .insert(name.to_string(), (labels.clone(), avail));
    }

    /// Forget what nodes that are down held, so that their slots go elsewhere; unless, under
    /// an HA lease, this drover may be the one cut off. A leader cut off into a minority
    /// sees the other nodes down before its lease runs out, and would move their replicas
    /// onto its side in its last moments: newer copies that win over the majority side's
    /// once the partition heals. So a down node's replicas move only once the lease shows
    /// that a majority of its nodes granted a renewal sent after the node was found down
    /// (within one renewal interval on the majority side; never on a cut-off leader), and
    /// not while at least half of the lease's nodes (witnesses included) are down at once
    /// (Kubernetes stops evicting from a fully disrupted zone for the same reason). Until
    /// then their replicas count where they were (the nodes are planned as frozen).
    fn hold_if_disrupted(&mut self, views: &mut [Seen], down_at: &HashMap<String, Instant>) {
        let down = views.iter().filter(|v| v.1 == NodeState::Down).count();
        let witnesses_down = self.witnesses.iter().filter(|w| !w.status().up).count();
        let voters = views.len() + self.witnesses.len();
        let disrupted =
            self.lease.needs_majority() && down > 0 && (down + witnesses_down) * 2 >= voters;
        if disrupted != self.said.disrupted {
            self.said.disrupted = disrupted;
            if disrupted {
                warn!(action = "observe", project = %self.project.name, down = down + witnesses_down, nodes = voters, "most nodes are unreachable: their replicas stay where they were until a majority answers");
            } else {
                info!(action = "observe", project = %self.project.name, "a majority of nodes answers again");
            }
        }
        let mut holding = false;
        for (name, state, ..) in views.iter_mut() {
            if *state != NodeState::Down {
                continue;
            }
            let confirmed = self.confirmed_down(down_at.get(name.as_str()).copied());
            if (disrupted || !confirmed) && self.last.contains_key(name.as_str()) {
                *state = NodeState::Frozen;
                holding |= !confirmed;
            } else {
                self.last.remove(name.as_str());
                self.due.remove(name.as_str());
            }
        }
        if holding && !self.holding {
            debug!(project = %self.project.name, "a node is down: its replicas move once a majority confirms the lease");
        }
        self.holding = holding;
    }

    /// Whether the lease shows that this drover reached a majority of its nodes after a
    /// node was found down at `down_at` (always, without an HA lease).
    fn confirmed_down(&self, down_at: Option<Instant>) -> bool {
        !self.lease.needs_majority() || down_at.is_some_and(|t| self.lease.confirmed_since(t))
    }

    /// How one node is observed this pass (`None`: it is not up). Its kept snapshot, if
    /// any, moves into the look and comes back with the result.
    fn look(
        &mut self,
        (name, endpoint): (&str, &connect::Endpoint),
        st: &NodeStatus,
        wake: &Wake,
        now: Instant,
    ) -> Option<Look> {
        let touched = self.touched.remove(name).unwrap_or_default();
        let engine = st.engine.clone().filter(|_| st.up)?;
        let mut ids = touched;
        ids.extend(
            wake.changed
                .iter()
                .filter(|id| wake.origin.get(*id).is_none_or(|n| n == name))
                .cloned(),
        );
        // Its events reach us and its last list held: what is kept is current, patched.
        let watched =
            st.watched && !wake.relist.contains(name) && !self.said.list_failing.contains(name);
        let due = self.due.get(name).is_none_or(|d| *d <= now);
        let stale = self.infra_stale.remove(name);
        let failed = self.lists_failed.get(name).copied().unwrap_or(0);
        Some(match self.last.remove(name) {
            Some(kept) if watched => {
                // Its resync list ended: take it, patched with what was named meanwhile.
                if let Some((listed, named)) = self.relists.take(name) {
                    ids.extend(named);
                    return Some(Look::Resynced(kept, listed, ids, stale));
                }
                // Due: list it beside the passes; until then it is patched as it was.
                if due && !self.relists.running(name) {
                    let deadline = list_deadline(kept.containers.len(), 0);
                    let at = (name, endpoint, self.project.name.as_str());
                    self.relists.start(at, engine, deadline);
                    // Woken when the list ends; looked at again by then in any case.
                    self.due.insert(name.to_string(), now + deadline);
                }
                self.relists.named(name, &ids);
                Look::Patch(kept, ids, stale)
            }
            kept => {
                // Listed afresh: a resync list running is not needed any more.
                self.relists.forget(name);
                let size = kept.as_ref().map_or(0, |k| k.containers.len());
                let deadline = list_deadline(size.max(ids.len()), failed);
                Look::List(kept, ids, deadline)
            }
        })
    }

    /// When node `i` is listed again after this look: a resync after a list; a resync whose
    /// list failed (the node kept on its patched snapshot) half an interval later. Each
    /// change said once.
    fn reschedule(
        &mut self,
        (i, name, endpoint): (usize, &str, &connect::Endpoint),
        looked: &Looked,
        watched: bool,
        now: Instant,
    ) {
        let project = &self.project.name;
        let resynced = looked.listed && self.said.resync_failing.remove(name);
        if self.said.list_failing.remove(name) || resynced {
            info!(action = "observe", project = %project, node = %name, "node listed again");
        }
        if let Some(e) = &looked.resync_failed {
            let retry = self.settings.resync_interval / 2;
            self.due.insert(name.to_string(), now + retry);
            if self.said.resync_failing.insert(name.to_string()) {
                warn!(action = "observe", project = %project, node = %name, engine = %endpoint.display(), error = %e, retry_ms = retry.as_millis() as u64, "resync list failed; the node stays on its event-patched view");
            }
        } else if looked.listed && watched {
            let due = self.resync_after(i, self.due.contains_key(name));
            self.due.insert(name.to_string(), now + due);
        }
    }

    /// How long until a node just listed is listed again: the resync interval, except
    /// after its first list, when the nodes are spread over up to 10 steps of the interval
    /// so that their lists do not all fall at once.
    fn resync_after(&self, index: usize, listed_before: bool) -> Duration {
        let every = self.settings.resync_interval;
        if listed_before {
            return every;
        }
        let n = self.nodes.len().max(1);
        let steps = n.min(10) as u32;
        let step = (index * steps as usize / n) as u32;
        every * (step + 1) / steps
    }

    /// Forget what was kept of a node drover let go: its snapshot, its resync, what the
    /// last pass did there (a node of that name added again later is listed afresh).
    pub(super) fn forget_node(&mut self, name: &str) {
        self.relists.forget(name);
        self.last.remove(name);
        self.due.remove(name);
        self.touched.remove(name);
        self.infra_stale.remove(name);
        self.digests_on.remove(name);
        self.groups_on.remove(name);
    }

    /// When the next watched node is due for its list.
    pub(super) fn next_list(&self) -> Option<Duration> {
        let now = Instant::now();
        self.due
            .values()
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// One reconcile pass. Returns when to plan again regardless of events.
    pub async fn reconcile(&mut self, wake: &Wake) -> Option<Duration> {
        let started = Instant::now();
        // A pass spans every node: its duration counts for each.
        let _timers: Vec<_> = self
            .nodes
            .iter()
            .map(|n| self.telemetry.pass(&n.name))
            .collect();
        let (mut states, engines) = self.observe(wake).await;
        let observed = started.elapsed();
        if !self.membership.leaving.is_empty() {
            self.named = None;
            let seen: Vec<(String, NodeState)> =
                states.iter().map(|(n, s, _, _)| (n.clone(), *s)).collect();
            self.let_go(&seen);
            states.retain(|(n, ..)| self.nodes.iter().any(|h| &h.name == n));
        }
        self.follow_images(&engines).await;
        let followed = started.elapsed();
        let mut plan = self.plan(&states);
        // Containers to create or start: list those nodes' networks and volumes, then plan
        // again with them (an idle pass never lists them).
        let infra = plan.unlisted.len();
        if infra > 0 {
            self.list_infra(&plan.unlisted, &engines).await;
            plan = self.plan(&states);
        }
        if !plan.plan.actions.is_empty() {
            debug!(
                project = %self.project.name,
                observed_ms = observed.as_secs_f64() * 1e3,
                followed_ms = followed.as_secs_f64() * 1e3,
                planned_ms = started.elapsed().as_secs_f64() * 1e3,
                infra_listed = infra,
                "pass planned"
            );
        }
        let Planned {
            mut plan,
            counts,
            rollouts,
            world,
            ..
        } = plan;
        self.quiet = (std::mem::take(&mut plan.quiet), world);
        let next = self.act(&plan, &engines, started).await;
        // What an operator sees of each service, worked out once the pass acted: it reads
        // every replica, so it stays off the way from an event to its action. A service the
        // plan replayed keeps the state it had.
        let desired = self.record_states(&states, &plan, &rollouts);
        self.report_counts(counts, &desired);
        next
    }

    /// Record what the plan holds back, settle and fail updates, execute the actions.
    /// Returns when to plan again regardless of events.
    async fn act(
        &mut self,
        plan: &plan::Plan,
        engines: &HashMap<String, Client>,
        started: Instant,
    ) -> Option<Duration> {
        // The plan's waits and stopped slots are the project's, not a node's: recorded once,
        // under the first node.
        if let Some(first) = self.nodes.first() {
            self.telemetry.planned(&first.name, plan.record());
        }
        self.report_waits(plan);
        self.history.settled(&plan.settled);
        self.updates_settled(&plan.settled);
        if self.update_failures(plan) {
            return Some(Duration::ZERO);
        }
        if plan.actions.is_empty() {
            debug!(project = %self.project.name, duration_ms = started.elapsed().as_millis() as u64, "nothing to do");
            return plan.requeue_after;
        }
        let failed = self.execute(&plan.actions, engines).await;
        // Look again at once: the engines changed, and rolling updates go one step per pass.
        let again = if failed {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Some(plan.requeue_after.map_or(again, |r| r.min(again)))
    }

    /// Running containers by service over the nodes not known down, from each node's
    /// counts (worked out when its snapshot changed, see [`Plain::count`]).
    fn count_running(&self, views: &[NodeView]) -> HashMap<String, usize> {
        let mut running: HashMap<&str, usize> = HashMap::new();
        let on = views.iter().filter(|v| v.state != NodeState::Down);
        for (svc, n) in on.filter_map(|v| self.running_on.get(v.name)).flatten() {
            *running.entry(svc.as_str()).or_default() += n;
        }
        running
            .into_iter()
            .map(|(svc, n)| (svc.to_string(), n))
            .collect()
    }

    /// Each service's state, as an operator sees it, from the pass's plan and what it was
    /// made from, recorded: worked out again for the services planned in full, at the
    /// slots planned for those patched. Returns what the services worked out in full want.
    fn record_states(
        &self,
        states: &[Seen],
        plan: &plan::Plan,
        (halted, updating, rolled_back): &Rollouts,
    ) -> HashMap<String, u32> {
        let empty = Snapshot::default();
        let views = views((&self.last, &self.groups_on), states, &empty);
        let input = plan::Input {
            pushed: &self.pushed,
            project: &self.project,
            nodes: &views,
            backoff: &self.history.backoff,
            backoff_cfg: &self.settings.backoff,
            now: SystemTime::now(),
            exclude: self.own_id.as_deref(),
            rebalance: self.settings.rebalance,
            halted,
            updating,
        };
        let rollouts = plan::state::Rollouts {
            halted,
            rolled_back,
            updating,
        };
        let whole = plan::state::services(&input, plan, &rollouts);
        let desired = whole.iter().map(|s| (s.service.clone(), s.desired));
        let desired = desired.collect();
        let mut kept = plan.replayed.clone();
        kept.extend(plan.patched.keys().cloned());
        let patch = |records: &mut _| plan::state::patch(&input, plan, &rollouts, records);
        self.telemetry.states(whole, &kept, patch);
        desired
    }

    /// Plan from the nodes' states and their last lists. Containers killed through the API
    /// whose exit is now seen have their crash history forgotten first.
    fn plan(&mut self, states: &[Seen]) -> Planned {
        let empty = Snapshot::default();
        let views = views((&self.last, &self.groups_on), states, &empty);
        let all: Vec<&Snapshot> = views
            .iter()
            .filter(|v| v.state != NodeState::Down)
            .map(|v| v.snapshot)
            .collect();
        let counts = self.count_running(&views);
        // An exit after `docker kill` / `docker stop` is not a crash: the slot restarts at
        // once, whatever its crash history.
        for (id, service, slot) in exited_kills(&self.killed, &all) {
            self.killed.remove(&id);
            self.history.backoff.forget(&service, slot);
        }
        self.killed
            .retain(|_, at| at.elapsed() < Duration::from_secs(60));
        let (halted, updating) = (self.history.halted(), self.history.updating());
        // Routes are remembered only while their ambassador runs (none pushed without a
        // mesh: no scan of every container then).
        if !self.pushed.is_empty() {
            let ambassadors: HashSet<&str> = all
                .iter()
                .flat_map(|s| s.containers.iter())
                .filter(|c| c.ambassador().is_some() && c.state == State::Running)
                .map(|c| c.id.as_str())
                .collect();
            self.pushed
                .retain(|id, _| ambassadors.contains(id.as_str()));
        }
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
        // Services whose containers this pass saw change; `None`: plan them all.
        let named: Option<plan::Named> = self.named.as_ref().and_then(Named::by_service);
        let world: World = (states.to_vec(), (halted.clone(), updating.clone()));
        // The definition may have changed since the nodes were observed (a tag moved).
        let same_project = self.observed_project.as_ref() == Some(&self.project);
        let reuse = named
            .as_ref()
            .filter(|_| same_project && self.quiet.1 == world)
            .map(|named| plan::Reuse {
                quiet: &self.quiet.0,
                named,
            });
        let plan = plan::plan_reusing(&input, reuse);
        let unlisted: Vec<String> = plan::unlisted_infra(&input, &plan)
            .into_iter()
            .map(str::to_string)
            .collect();
        let rolled_back = self.history.rolled_back();
        Planned {
            plan,
            counts,
            unlisted,
            rollouts: (halted, updating, rolled_back),
            world,
        }
    }

    /// Apply `actions`, recording and logging each outcome and feeding it to the
    /// history. True when one failed.
    async fn execute(
        &mut self,
        actions: &[plan::Action],
        engines: &HashMap<String, Client>,
    ) -> bool {
        let handles: HashMap<String, NodeHandle> = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect();
        let gone = move |node: &str| -> futures::future::BoxFuture<'static, ()> {
            match handles.get(node) {
                Some(h) => Box::pin(h.went_down()),
                None => Box::pin(std::future::pending()),
            }
        };
        let executor = Executor {
            nodes: engines,
            project: &self.project,
            parallel: self.settings.parallel,
            credentials: &self.settings.credentials,
            term: self.lease.term().filter(|t| *t > 0),
            gone: Some(&gone),
            digests: Default::default(),
        };
        let mut failed = false;
        let (history, settings, project) = (&mut self.history, &self.settings, &self.project);
        let (telemetry, touched) = (&self.telemetry, &mut self.touched);
        let (infra_stale, pushed) = (&mut self.infra_stale, &mut self.pushed);
        let last = &mut self.last;
        executor
            .execute(actions, |o| {
                failed |= o.error.is_some();
                for (node, id) in touched_by(&o) {
                    touched.entry(node).or_default().insert(id);
                }
                if note_infra(last, &o) {
                    infra_stale.insert(o.action.node.clone());
                    if let plan::Kind::StartFirst { to } | plan::Kind::Recreate { to } =
                        &o.action.kind
                    {
                        infra_stale.insert(to.clone());
                    }
                }
                if let (plan::Kind::Routes { routes }, Some(container), None) =
                    (&o.action.kind, o.action.target.container(), &o.error)
                {
                    pushed.insert(container.to_string(), (**routes).clone());
                }
                telemetry.action(o.record());
                say::log_outcome(project, &o);
                // An action abandoned with its node says nothing of the container: no
                // backoff for it.
                if !o.abandoned {
                    let ok = o.error.is_none();
                    history.record(project, &settings.backoff, &o.action, ok, SystemTime::now());
                }
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
            let gone = self.nodes.iter().find(|n| n.name == *name)?.went_down();
            Some(async move {
                let list = tokio::time::timeout(
                    LIST_TIMEOUT,
                    observe::list_infra(&docker, &project, &mut snapshot),
                );
                // A node found down meanwhile is not waited for (its node-down says so).
                let r = tokio::select! {
                    r = list => Some(r),
                    () = gone => None,
                };
                (name.clone(), r, snapshot)
            })
        }))
        .await;
        for (name, result, snapshot) in lists {
            let Some(result) = result else { continue };
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

/// The nodes as the planner sees them: what the pass found of each, its kept snapshot and
/// that snapshot's containers by service (see [`Plain::count`]).
fn views<'a>(
    (last, groups): (
        &'a HashMap<String, Snapshot>,
        &'a HashMap<String, NodeGroups>,
    ),
    states: &'a [Seen],
    empty: &'a Snapshot,
) -> Vec<NodeView<'a>> {
    states
        .iter()
        .map(|(name, state, labels, availability)| NodeView {
            name,
            state: *state,
            availability: *availability,
            labels,
            snapshot: last.get(name).unwrap_or(empty),
            groups: groups.get(name),
        })
        .collect()
}

/// How a pass observes one node.
enum Look {
    /// A fresh list within a deadline (with the snapshot kept so far, if any, for when the
    /// list fails), and inspects of the named containers it shows.
    List(Option<Snapshot>, HashSet<String>, Duration),
    /// The kept snapshot, patched from the named containers; its networks and volumes
    /// forgotten when stale.
    Patch(Snapshot, HashSet<String>, bool),
    /// A watched node's resync list ended (see [`super::relist`]): what it found, patched
    /// with the containers named since it began; or, when it failed or was late (a large
    /// node under load), the kept snapshot patched as above. The kept snapshot is current
    /// (the node's events keep it so): the node stays up, and the list is tried later.
    Resynced(Snapshot, super::relist::Listed, HashSet<String>, bool),
}

/// What a look found: the node's engine, its snapshot, whether it was a full list, and
/// whether the snapshot may have changed (a list, or a patch that inspected something).
struct Looked {
    engine: Client,
    snapshot: Snapshot,
    listed: bool,
    /// Containers were added or left out: those kept may have moved (a list, or a patch).
    reshaped: bool,
    /// What changed is not known (a fresh list): every service is planned again.
    whole: bool,
    changed: bool,
    /// The containers a patch inspected, or a resync found changed (none for a list).
    named: HashSet<String>,
    /// Those of them the patched snapshot holds, with their node and service.
    found: Vec<Found>,
    /// A resync's list failed (why); the kept snapshot was patched instead.
    resync_failed: Option<String>,
}

/// The containers a pass's observation inspected on the nodes it patched, and the service
/// of each that a node holds: the services whose containers changed.
#[derive(Debug, Default)]
pub(super) struct Named {
    ids: HashSet<String>,
    found: HashMap<String, (String, Option<String>)>,
}

/// A named container a node holds: its id, and its node and service.
type Found = (String, (String, Option<String>));

impl Named {
    fn add(&mut self, looked: &mut Looked) {
        self.ids.extend(std::mem::take(&mut looked.named));
        self.found.extend(std::mem::take(&mut looked.found));
    }

    /// The named containers by service, where each is (see [`plan::Named`]); `None` when
    /// one is gone from every node (its service is not known) or has none.
    pub(super) fn by_service(&self) -> Option<plan::Named> {
        if self.ids.iter().any(|id| !self.found.contains_key(id)) {
            return None;
        }
        let mut out = plan::Named::new();
        for (id, (node, service)) in &self.found {
            let held = out.entry(service.clone()?).or_default();
            held.push((node.clone(), id.clone()));
        }
        Some(out)
    }
}

impl Look {
    /// List or patch within its deadline; on failure, one line and the snapshot kept.
    async fn run(
        self,
        engine: Client,
        node: &str,
        endpoint: &connect::Endpoint,
        project: &str,
    ) -> Result<Looked, (String, Option<Snapshot>)> {
        let at = (node, endpoint, project);
        match self {
            Look::List(kept, ids, deadline) => list(engine, at, &ids, deadline)
                .await
                .map_err(|e| (e, kept)),
            Look::Patch(snapshot, ids, stale) => patch(engine, at, snapshot, ids, stale).await,
            Look::Resynced(kept, Ok(listed), ids, stale) => {
                let inspected = ids.clone();
                let mut looked = patch(engine, at, listed, ids, false).await?;
                // The containers the list shows otherwise than the view the events kept
                // are what changed: a list that agrees with them plans nothing again.
                let differ = agree(&kept, &mut looked.snapshot, &inspected);
                looked.found = found_in(&looked.snapshot, &differ);
                looked.changed = stale || !differ.is_empty();
                looked.named = differ;
                looked.listed = true;
                // The list reads containers only: the networks and volumes kept between
                // patches stay kept (an action that fails lists them again).
                if !stale {
                    looked.snapshot.keep_infra(kept);
                }
                Ok(looked)
            }
            Look::Resynced(kept, Err(failed), ids, stale) => {
                let mut looked = patch(engine, at, kept, ids, stale).await?;
                looked.resync_failed = Some(failed);
                Ok(looked)
            }
        }
    }
}

/// A fresh list of the node (with inspects of `ids` it shows) within `deadline`.
async fn list(
    engine: Client,
    (node, endpoint, project): (&str, &connect::Endpoint, &str),
    ids: &HashSet<String>,
    deadline: Duration,
) -> Result<Looked, String> {
    let listed =
        tokio::time::timeout(deadline, observe::snapshot(&engine, node, project, ids)).await;
    match listed {
        Ok(Ok(snapshot)) => Ok(Looked {
            engine,
            snapshot,
            listed: true,
            reshaped: true,
            whole: true,
            changed: true,
            named: HashSet::new(),
            found: Vec::new(),
            resync_failed: None,
        }),
        Ok(Err(e)) => Err(connect::explain(endpoint, &e)),
        Err(_) => Err(late(deadline)),
    }
}

pub(super) fn late(deadline: Duration) -> String {
    format!("listing took longer than {:.1} s", deadline.as_secs_f64())
}

/// Patch `snapshot` from the containers `ids` names (one inspect each) within a deadline
/// that grows with their number, its networks and volumes forgotten when `stale`.
async fn patch(
    engine: Client,
    (node, endpoint, project): (&str, &connect::Endpoint, &str),
    mut snapshot: Snapshot,
    ids: HashSet<String>,
    stale: bool,
) -> Result<Looked, (String, Option<Snapshot>)> {
    let changed = stale || !ids.is_empty();
    if stale {
        snapshot.forget_infra();
    }
    // One inspect per named container: a burst names thousands, and is given the time a
    // list of as many would be.
    let deadline = list_deadline(ids.len(), 0);
    let patched = tokio::time::timeout(
        deadline,
        observe::patch(&engine, node, project, &mut snapshot, &ids),
    )
    .await;
    match patched {
        Ok(Ok(reshaped)) => Ok(Looked {
            engine,
            found: found_in(&snapshot, &ids),
            snapshot,
            listed: false,
            reshaped,
            whole: false,
            changed,
            named: ids,
            resync_failed: None,
        }),
        Ok(Err(e)) => Err((connect::explain(endpoint, &e), Some(snapshot))),
        Err(_) => Err((
            format!(
                "inspecting {} containers took longer than {:.1} s",
                ids.len(),
                deadline.as_secs_f64()
            ),
            Some(snapshot),
        )),
    }
}

/// The containers of `ids` that `snapshot` holds, with their service: a few ids are
/// looked for one by one; many (a burst) in one scan of the node's containers.
fn found_in(snapshot: &Snapshot, ids: &HashSet<String>) -> Vec<Found> {
    let found = |c: &observe::Container| {
        let service = c.service().map(str::to_string);
        (c.id.clone(), (c.node.clone(), service))
    };
    let containers = &snapshot.containers;
    if ids.len() <= FEW_IDS {
        ids.iter()
            .filter_map(|id| containers.iter().find(|c| &c.id == id))
            .map(found)
            .collect()
    } else {
        containers
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(found)
            .collect()
    }
}

/// Take into a resync's list `now` what the kept view knew of each container the list
/// agrees on (its name, drover's labels, state and health: a list does not read the run
/// times and exit code an inspect gave), unless it was inspected with the list. Returns
/// the ids of the containers the list shows otherwise than `kept` (changed or new), and of
/// those `kept` held that it does not: what changed unseen by the events.
fn agree(kept: &Snapshot, now: &mut Snapshot, inspected: &HashSet<String>) -> HashSet<String> {
    let before: HashMap<&str, &observe::Container> =
        kept.containers.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut differ = HashSet::new();
    for c in now.containers.iter_mut() {
        match before.get(c.id.as_str()) {
            Some(k) if inspected.contains(&c.id) => {
                if *k != c {
                    differ.insert(c.id.clone());
                }
            }
            Some(k) if k.listed_as(c) => *c = (*k).clone(),
            _ => {
                differ.insert(c.id.clone());
            }
        }
    }
    let after: HashSet<&str> = now.containers.iter().map(|c| c.id.as_str()).collect();
    let gone = kept
        .containers
        .iter()
        .filter(|c| !after.contains(c.id.as_str()));
    differ.extend(gone.map(|c| c.id.clone()));
    differ
}

/// Up to this many named containers are looked for one by one (see [`found_in`]).
const FEW_IDS: usize = 8;

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

/// The containers an action acted on, by node: the one it targeted and the one it made
/// (on the node it moved to, for a move).
fn touched_by(o: &crate::execute::Outcome) -> Vec<(String, String)> {
    let a = &o.action;
    let mut out = Vec::new();
    if let Some(id) = a.target.container() {
        out.push((a.node.clone(), id.to_string()));
    }
    if let Some(id) = &o.id {
        out.push((a.node.clone(), id.clone()));
        if let plan::Kind::StartFirst { to } | plan::Kind::Recreate { to } = &a.kind {
            out.push((to.clone(), id.clone()));
        }
    }
    out
}

/// What an outcome did to its node's networks and volumes, which events do not name. A
/// network or volume it created is written into the node's kept snapshot (a restart that
/// follows lists neither again); `true` when they must be listed again instead: after a
/// failed action, or a network removed.
fn note_infra(last: &mut HashMap<String, Snapshot>, o: &crate::execute::Outcome) -> bool {
    use plan::{Kind, Target};
    if o.error.is_some() || o.action.kind == Kind::RemoveNetwork {
        return true;
    }
    let Some(kept) = last.get_mut(&o.action.node).filter(|s| s.infra_listed) else {
        return false;
    };
    match (&o.action.kind, &o.action.target) {
        (Kind::CreateNetwork, Target::Network { name, .. }) => {
            kept.networks.insert(name.clone());
        }
        (Kind::CreateVolume, Target::Volume { name, .. }) => {
            kept.volumes.insert(name.clone());
        }
        _ => {}
    }
    false
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

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn a_list_deadline_grows_with_the_node_and_doubles_while_lists_fail() {
        assert_eq!(list_deadline(0, 0), LIST_TIMEOUT);
        // 50,000 containers: 25 s, then 50, 100, and two minutes at most.
        assert_eq!(list_deadline(50_000, 0), Duration::from_secs(25));
        assert_eq!(list_deadline(50_000, 1), Duration::from_secs(50));
        assert_eq!(list_deadline(50_000, 2), Duration::from_secs(100));
        assert_eq!(list_deadline(50_000, 9), Duration::from_secs(120));
        // An empty node whose lists keep failing is still given longer each time.
        assert!(list_deadline(0, 1) > list_deadline(0, 0));
    }
}
