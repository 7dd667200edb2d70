//! `drover plan` in plain mode: list every node once, plan as a pass would, and say what
//! the pass would do, changing nothing. (Swarm mode's is `swarm::plan_lines`.)

use std::time::SystemTime;

use crate::config::{Availability, DependsCondition, Loaded};
use crate::engine::{self, connect};
use crate::nodes::NodeSpec;
use crate::{observe, plan};

/// The lines to print. With one node, a node that cannot be listed is the error; with
/// several, it is down (one line says so) and the plan moves its replicas.
pub async fn plan_lines(specs: &[NodeSpec], loaded: &Loaded) -> Result<Vec<String>, String> {
    let project = &loaded.project;
    let mut out = Vec::new();
    let mut states = Vec::new();
    let mut snapshots = Vec::new();
    // What each running ambassador serves: routes are planned only where they differ.
    let mut pushed = plan::mesh::Pushed::new();
    for spec in specs {
        let listed = match connect::connect(&spec.endpoint).await {
            Ok(d) => {
                match observe::snapshot(&d, &spec.name, &project.name, &Default::default()).await {
                    Ok(s) => {
                        pushed.extend(observe::ambassador_routes(&d, &s).await);
                        Ok(s)
                    }
                    Err(e) => Err(connect::explain(&spec.endpoint, &e)),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match listed {
            Ok(s) => {
                states.push(plan::NodeState::Up);
                snapshots.push(s);
            }
            Err(e) if specs.len() == 1 => return Err(e),
            Err(e) => {
                out.push(format!("node {} is down: {e}", spec.name));
                states.push(plan::NodeState::Down);
                snapshots.push(observe::Snapshot::default());
            }
        }
    }
    for spec in specs {
        match spec.availability {
            Availability::Active => {}
            Availability::Pause => out.push(format!(
                "node {} is paused: what runs there stays, nothing new is placed there",
                spec.name
            )),
            Availability::Drain => out.push(format!(
                "node {} is drained: its replicas move to the other nodes, then nothing runs there",
                spec.name
            )),
        }
    }
    let views: Vec<plan::NodeView> = specs
        .iter()
        .zip(&states)
        .zip(&snapshots)
        .map(|((spec, state), snapshot)| plan::NodeView {
            name: &spec.name,
            state: *state,
            availability: spec.availability,
            labels: &spec.labels,
            snapshot,
            groups: None,
        })
        .collect();
    let own = engine::own_container_id();
    let none = Default::default();
    let input = plan::Input {
        pushed: &pushed,
        project,
        nodes: &views,
        backoff: &plan::Backoff::default(),
        backoff_cfg: &plan::BackoffConfig::default(),
        now: SystemTime::now(),
        exclude: own.as_deref(),
        rebalance: loaded.settings.rebalance,
        halted: &none,
        updating: &none,
    };
    let plan = plan::plan(&input);
    let rollouts = plan::state::Rollouts {
        halted: &none,
        rolled_back: &none,
        updating: &none,
    };
    // A service that is not simply running: its state as `status` would show it.
    for s in plan::state::services(&input, &plan, &rollouts) {
        if !matches!(s.state, "running") && !s.replicas.iter().all(|r| r.state == "pending") {
            out.push(format!("state {}: {} ({})", s.service, s.state, s.reason));
        }
    }
    out.extend(describe(&project.name, &plan));
    Ok(out)
}

/// What the plan would do and what it holds back, one line each.
fn describe(project: &str, plan: &plan::Plan) -> Vec<String> {
    let mut out = Vec::new();
    if plan.actions.is_empty() && plan.unplaced.is_empty() && plan.blocked.is_empty() {
        out.push(format!(
            "nothing to do: project {} is at its targets",
            project
        ));
    }
    out.extend(plan.actions.iter().map(ToString::to_string));
    for u in &plan.unplaced {
        out.push(format!(
            "cannot place {} slot {}: {}",
            u.service, u.slot, u.reason
        ));
    }
    // Unlike compose, which creates every container up front and starts them in order,
    // drover creates a service's containers once its dependencies' conditions hold.
    for b in &plan.blocked {
        let (state, condition) = match b.condition {
            DependsCondition::ServiceStarted => ("has started", "service_started"),
            DependsCondition::ServiceHealthy => ("is healthy", "service_healthy"),
            DependsCondition::ServiceCompletedSuccessfully => (
                "has completed successfully",
                "service_completed_successfully",
            ),
        };
        out.push(format!(
            "wait {}: no container until {} {state} (depends_on condition {condition})",
            b.service, b.dependency
        ));
    }
    for s in &plan.stopped {
        out.push(format!(
            "leave {} slot {} on {} exited (exit code {})",
            s.service,
            s.slot,
            s.node,
            s.exit_code.map_or("unknown".into(), |c| c.to_string())
        ));
    }
    out
}
