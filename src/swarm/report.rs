//! What Swarm is doing with the project, per service and per node: desired vs running
//! tasks, and the reason Swarm gives for each task slot that does not run. Pure; built
//! from one list of services, tasks and nodes. The controller logs its changes; a
//! telemetry layer (metrics, `/status`) can read the latest one through [`Shared`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::diff::{Current, compose_service};
use crate::engine::model::{Node, Task, TaskState};

// The report is data telemetry records and `/status` serves: its types are telemetry's.
pub use crate::telemetry::swarm::{
    NodeCounts, NodeReport, Report, ServiceReport, TaskProblem, UNASSIGNED,
};

/// The latest report, shared with whoever wants to read it.
pub type Shared = Arc<RwLock<Report>>;

fn text<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// Build the report. `services`: the project's services as Swarm has them; `tasks`: their
/// tasks (any state); `nodes`: every node of the swarm.
pub fn build(project: &str, services: &[Current], tasks: &[Task], nodes: &[Node]) -> Report {
    let mut report = Report {
        project: project.to_string(),
        nodes: node_reports(nodes),
        ..Default::default()
    };
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for c in services {
        let name = compose_service(&c.spec, project);
        by_id.insert(c.id.as_str(), name);
        report.services.insert(
            name.to_string(),
            ServiceReport {
                swarm_name: c.name().to_string(),
                desired: c.replicas().unwrap_or(0),
                global: c.replicas().is_none(),
                ..Default::default()
            },
        );
    }
    for ((svc, _), list) in slots(tasks, &by_id) {
        count_slot(&mut report, svc, list);
    }
    report
}

/// Every node of the swarm, with no tasks counted yet.
fn node_reports(nodes: &[Node]) -> BTreeMap<String, NodeReport> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let Some(id) = n.id.clone() else { continue };
        let spec = n.spec.as_ref();
        let status = n.status.as_ref();
        out.insert(
            id,
            NodeReport {
                hostname: n
                    .description
                    .as_ref()
                    .and_then(|d| d.hostname.clone())
                    .unwrap_or_default(),
                addr: status.and_then(|s| s.addr.clone()).unwrap_or_default(),
                state: status.map(|s| text(&s.state)).unwrap_or_default(),
                availability: spec.map(|s| text(&s.availability)).unwrap_or_default(),
                role: spec.map(|s| text(&s.role)).unwrap_or_default(),
                desired: 0,
                running: 0,
            },
        );
    }
    out
}

/// Each service's tasks (`by_id`: Swarm service id -> Compose service) grouped by slot
/// (replicated) or node (global).
fn slots<'t, 's>(
    tasks: &'t [Task],
    by_id: &HashMap<&str, &'s str>,
) -> BTreeMap<(&'s str, String), Vec<&'t Task>> {
    let mut slots: BTreeMap<(&str, String), Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        let Some(svc) = t.service_id.as_deref().and_then(|id| by_id.get(id)) else {
            continue;
        };
        let key = match t.slot {
            Some(s) if s > 0 => format!("slot {s}"),
            _ => format!("node {}", t.node_id.as_deref().unwrap_or("")),
        };
        slots.entry((*svc, key)).or_default().push(t);
    }
    slots
}

/// Count one slot's tasks into the service's and the nodes' figures; a slot that should
/// run and does not is a problem. The task Swarm wants running is the slot's current one,
/// else the latest.
fn count_slot(report: &mut Report, svc: &str, mut list: Vec<&Task>) {
    list.sort_by_key(|t| t.updated_at.as_ref().map(|d| d.to_string()));
    let Some(entry) = report.services.get_mut(svc) else {
        return;
    };
    for t in &list {
        if let Some(n) = t.node_id.as_ref().filter(|n| !n.is_empty()) {
            *entry.tasks_by_node.entry(n.clone()).or_default() += 1;
        }
    }
    let wanted: Vec<&&Task> = list
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .collect();
    if wanted.is_empty() {
        // Between attempts (a task that failed at once, e.g. its image could not be
        // pulled), Swarm's next task waits out the restart delay as `ready`: the slot
        // still does not run, and the failed one says why. Otherwise: scaled away.
        let waiting = list
            .iter()
            .rev()
            .find(|t| t.desired_state == Some(TaskState::READY));
        if let Some(t) = waiting {
            entry.problems.push(problem(t, &list));
        }
        return;
    }
    if entry.global {
        entry.desired += 1;
    }
    let mut running = false;
    for t in &wanted {
        let node = t.node_id.clone().filter(|n| !n.is_empty());
        if let Some(n) = &node {
            *entry.desired_by_node.entry(n.clone()).or_default() += 1;
        }
        if let Some(n) = node.as_ref().and_then(|n| report.nodes.get_mut(n)) {
            n.desired += 1;
        }
        if state(t) == Some(TaskState::RUNNING) {
            running = true;
            entry.running += 1;
            if let Some(n) = node {
                *entry.running_by_node.entry(n.clone()).or_default() += 1;
                if let Some(n) = report.nodes.get_mut(&n) {
                    n.running += 1;
                }
            }
        }
    }
    if !running {
        entry
            .problems
            .push(problem(wanted[wanted.len() - 1], &list));
    }
}

/// Why the slot's `current` task does not run. A task waiting out the restart delay says
/// little; the failed one before it (in `list`) says why.
fn problem(current: &Task, list: &[&Task]) -> TaskProblem {
    let mut reason = message(current);
    let mut error = has_err(current);
    if !error && let Some(prev) = list.iter().rev().find(|t| has_err(t)) {
        error = true;
        let why = message(prev);
        reason = if reason.is_empty() {
            why
        } else {
            format!("{reason} (last failure: {why})")
        };
    }
    TaskProblem {
        task: current.id.clone().unwrap_or_default(),
        slot: current
            .slot
            .filter(|s| *s > 0)
            .map(|s| s.clamp(0, i64::from(u32::MAX)) as u32),
        node: current.node_id.clone().filter(|n| !n.is_empty()),
        state: text(&state(current)),
        reason,
        error,
    }
}

fn has_err(t: &Task) -> bool {
    t.status
        .as_ref()
        .and_then(|s| s.err.as_ref())
        .is_some_and(|e| !e.is_empty())
}

fn state(t: &Task) -> Option<TaskState> {
    t.status.as_ref()?.state
}

/// Swarm's error when there is one, else its status message.
fn message(t: &Task) -> String {
    let Some(s) = t.status.as_ref() else {
        return String::new();
    };
    s.err
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| s.message.clone())
        .unwrap_or_default()
}

/// Each service's state as an operator sees it, from Swarm's report and the state of
/// each service's last update (by Swarm service name, as Swarm words it): the words plain
/// mode uses (`running`, `starting`, `crash-loop`, `updating`, `paused`, `rolled-back`).
/// Replicas are listed for replicated services: a slot with a task problem says it, the
/// others run once the service's count is reached.
pub fn states(
    r: &Report,
    updates: &HashMap<String, String>,
) -> Vec<crate::telemetry::ServiceStateRecord> {
    r.services
        .iter()
        .map(|(name, s)| {
            let update = updates.get(&s.swarm_name).map(String::as_str).unwrap_or("");
            let failing = s.problems.iter().find(|p| p.error);
            let waiting = s.problems.first();
            let (state, reason) = match (update, failing, waiting) {
                ("updating", ..) => ("updating", "Swarm rolls its tasks to the new spec".into()),
                ("rollback_started", ..) => {
                    ("updating", "the update failed; Swarm rolls back".into())
                }
                ("paused" | "rollback_paused", ..) => {
                    ("paused", "the update failed; Swarm paused it".to_string())
                }
                ("rollback_completed", ..) => (
                    "rolled-back",
                    "the update failed; Swarm runs the previous spec".to_string(),
                ),
                _ if s.running >= s.desired => ("running", String::new()),
                // Swarm's scheduler words an unsatisfiable placement so.
                (_, _, Some(p)) if p.reason.contains("no suitable node") => {
                    ("unplaceable", p.reason.clone())
                }
                (_, Some(p), _) => ("crash-loop", p.reason.clone()),
                (_, None, Some(p)) => ("starting", format!("{}: {}", p.state, p.reason)),
                _ => ("starting", "tasks on their way".to_string()),
            };
            crate::telemetry::ServiceStateRecord {
                service: name.clone(),
                state,
                reason,
                desired: s.desired,
                running: s.running,
                updated: None,
                replicas: if s.global { Vec::new() } else { replicas(s) },
            }
        })
        .collect()
}

fn replicas(s: &ServiceReport) -> Vec<crate::telemetry::ReplicaStateRecord> {
    (1..=s.desired)
        .map(|slot| {
            let problem = s.problems.iter().find(|p| p.slot == Some(slot));
            let (state, reason) = match problem {
                Some(p) if p.error => ("crash-loop", p.reason.clone()),
                Some(p) => ("starting", format!("{}: {}", p.state, p.reason)),
                None => ("running", String::new()),
            };
            crate::telemetry::ReplicaStateRecord {
                slot,
                node: problem.and_then(|p| p.node.clone()),
                container: None,
                state,
                reason,
                attempts: 0,
                retry_at: None,
                running: problem.is_none(),
                current: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{ServiceSpec, TaskStatus};

    fn task(id: &str, desired: TaskState, state: TaskState, err: &str, at: &str) -> Task {
        Task {
            id: Some(id.into()),
            service_id: Some("s1".into()),
            slot: Some(1),
            node_id: Some("n1".into()),
            desired_state: Some(desired),
            updated_at: Some(at.into()),
            status: Some(TaskStatus {
                state: Some(state),
                err: (!err.is_empty()).then(|| err.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_slot_between_failed_attempts_is_a_problem_with_the_last_failure() {
        let mut labels = HashMap::new();
        labels.insert("com.docker.stack.namespace".to_string(), "p".to_string());
        let svc = Current {
            id: "s1".into(),
            version: 1,
            spec: ServiceSpec {
                name: Some("p_app".into()),
                labels: Some(labels),
                ..Default::default()
            },
        };
        let tasks = [
            task(
                "t1",
                TaskState::SHUTDOWN,
                TaskState::REJECTED,
                "No such image: r:5000/app:latest",
                "2026-01-01T00:00:01Z",
            ),
            task(
                "t2",
                TaskState::READY,
                TaskState::NEW,
                "",
                "2026-01-01T00:00:02Z",
            ),
        ];
        let r = build("p", &[svc], &tasks, &[]);
        let app = &r.services["app"];
        assert_eq!((app.running, app.problems.len()), (0, 1), "{app:?}");
        let p = &app.problems[0];
        assert!(p.error);
        assert!(
            p.reason.contains("No such image: r:5000/app:latest"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn swarm_states_speak_the_words_plain_mode_speaks() {
        use crate::telemetry::swarm::{ServiceReport, TaskProblem};
        let svc = |desired, running, problems: Vec<TaskProblem>| ServiceReport {
            swarm_name: "p_web".into(),
            desired,
            running,
            problems,
            ..Default::default()
        };
        let problem = |error: bool| TaskProblem {
            task: "t1".into(),
            slot: Some(2),
            node: Some("n1".into()),
            state: "rejected".into(),
            reason: "No such image: app".into(),
            error,
        };
        let state = |s: ServiceReport, update: &str| {
            let mut r = Report::default();
            r.services.insert("web".into(), s);
            let updates = HashMap::from([("p_web".to_string(), update.to_string())]);
            let st = states(&r, &updates).remove(0);
            (st.state, st.reason, st.replicas)
        };
        let (s, _, replicas) = state(svc(2, 2, vec![]), "");
        assert_eq!(s, "running");
        assert!(replicas.iter().all(|r| r.state == "running"));
        let (s, reason, replicas) = state(svc(2, 1, vec![problem(true)]), "");
        assert_eq!((s, reason.as_str()), ("crash-loop", "No such image: app"));
        assert_eq!(replicas[1].state, "crash-loop");
        assert_eq!(replicas[1].node.as_deref(), Some("n1"));
        assert_eq!(state(svc(2, 1, vec![problem(false)]), "").0, "starting");
        assert_eq!(state(svc(2, 1, vec![]), "updating").0, "updating");
        assert_eq!(
            state(svc(2, 2, vec![]), "rollback_completed").0,
            "rolled-back"
        );
        assert_eq!(state(svc(2, 2, vec![]), "paused").0, "paused");
        assert_eq!(state(svc(2, 2, vec![]), "completed").0, "running");
    }
}
