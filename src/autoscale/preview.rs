//! `drover plan`'s view of autoscaling: each autoscaled service's triggers read once,
//! the decision a fresh autoscaler would make from the replicas it has now, and that
//! target put in the project the plan is made for.

use std::sync::Arc;
use std::time::Instant;

use super::decide::{self, Input, Limit, Memory};
use super::read::{Readers, Replicas};
use crate::config::Loaded;

/// One line per autoscaled service; `loaded`'s targets set to the autoscaler's.
pub async fn preview(loaded: &mut Loaded, replicas: Option<Arc<dyn Replicas>>) -> Vec<String> {
    let mut readers = Readers::new(replicas);
    let mut out = Vec::new();
    for (name, spec) in loaded.settings.autoscale.clone() {
        let Some(service) = loaded.project.services.get_mut(&name) else {
            continue;
        };
        if let Some(n) = spec.pinned {
            out.push(format!("autoscale {name}: off, --scale pins it to {n}"));
            continue;
        }
        let current = readers
            .count(&name)
            .await
            .unwrap_or(service.replicas)
            .clamp(spec.lowest(), spec.max);
        let values = readers.read_all(&name, &spec.triggers).await;
        let inputs: Vec<Input> = spec
            .triggers
            .iter()
            .zip(&values)
            .map(|(t, v)| Input {
                value: v.as_ref().ok().copied(),
                target: t.target,
                activation: t.activation,
                per_replica: t.source.per_replica(),
            })
            .collect();
        let now = Instant::now();
        let d = decide::decide(
            &spec,
            &mut Memory::started(current, now),
            &inputs,
            current,
            now,
        );
        let readings: Vec<String> = spec
            .triggers
            .iter()
            .zip(&values)
            .zip(&d.wants)
            .map(|((t, v), w)| match v {
                Ok(v) => format!(
                    "{}={v} (target {}, wants {})",
                    t.name,
                    t.target,
                    w.map_or("-".into(), |w| w.to_string())
                ),
                Err(e) => format!("{}: {e}", t.name),
            })
            .collect();
        let verdict = match (d.desired.cmp(&current), d.limited_by) {
            (std::cmp::Ordering::Equal, Limit::ScaleDownWindow) => format!(
                "stays at {current}: a scale-down waits for the {} window",
                humantime::format_duration(spec.scale_down_window)
            ),
            (std::cmp::Ordering::Equal, Limit::Error) => {
                format!("stays at {current}: a trigger does not answer")
            }
            (std::cmp::Ordering::Equal, _) => format!("stays at {current}"),
            (_, why) => format!("{current} -> {} ({})", d.desired, why.as_str()),
        };
        out.push(format!(
            "autoscale {name} ({}..{}): {}; {verdict}",
            spec.lowest(),
            spec.max,
            readings.join(", ")
        ));
        service.replicas = d.desired;
    }
    out
}
