//! What the autoscaler shows: per autoscaled service its bounds, the count it wants and
//! what limited it, and per trigger the last value or why there is none. Recorded by the
//! autoscaler, read by `/metrics`, `/status` and `drover status`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::recorder::Telemetry;

/// One autoscaled service, as of its last poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    pub service: String,
    pub min: u32,
    pub max: u32,
    /// The scale file's count: the lowest target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u32>,
    /// `--scale` pins the service: autoscaling is off, this count is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<u32>,
    /// The replica target the autoscaler set.
    pub desired: u32,
    /// What held or limited the last decision (`none`, `tolerance`, `min`, `max`,
    /// `scale-down-window`, `scale-up-window`, `rate`, `error`, `cooldown`, `idle`).
    pub limited_by: String,
    pub scale_down_window: String,
    pub polling_interval: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<String>,
    pub triggers: Vec<TriggerStatus>,
}

/// One trigger's last reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerStatus {
    pub name: String,
    /// `redis`, `prometheus`, `http`, `cpu`, `memory`.
    pub kind: String,
    pub target: f64,
    /// The last value read (`None`: it did not answer, or was not read yet).
    pub value: Option<f64>,
    /// The count this trigger alone asks for.
    pub wants: Option<u32>,
    /// Why it did not answer the last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Telemetry {
    /// Hook: the autoscaler's view of `status.service` after a poll (or at start).
    pub fn autoscale(&self, status: AutoscaleStatus) {
        let mut r = self.lock();
        for t in &status.triggers {
            r.autoscale_errors
                .entry((status.service.clone(), t.name.clone()))
                .or_default();
        }
        r.autoscale.insert(status.service.clone(), status);
    }

    /// Hook: only `services` are autoscaled now (after a reload).
    pub fn autoscale_keep(&self, services: &[String]) {
        let mut r = self.lock();
        r.autoscale.retain(|s, _| services.contains(s));
        r.autoscale_errors.retain(|(s, _), _| services.contains(s));
        r.autoscale_changes.retain(|(s, _), _| services.contains(s));
    }

    /// Hook: a trigger of `service` did not answer.
    pub fn autoscale_error(&self, service: &str, trigger: &str) {
        *self
            .lock()
            .autoscale_errors
            .entry((service.to_string(), trigger.to_string()))
            .or_default() += 1;
    }

    /// Hook: the autoscaler changed `service`'s target (`up` or `down`).
    pub fn autoscaled(&self, service: &str, direction: &'static str) {
        *self
            .lock()
            .autoscale_changes
            .entry((service.to_string(), direction))
            .or_default() += 1;
    }
}

/// The autoscaled services as `drover status` prints them: one row per trigger.
pub fn table(out: &mut String, services: &[AutoscaleStatus]) {
    if services.is_empty() {
        return;
    }
    out.push('\n');
    let mut rows = vec![
        [
            "AUTOSCALED",
            "MIN",
            "MAX",
            "DESIRED",
            "LIMITED BY",
            "TRIGGER",
            "VALUE",
            "TARGET",
            "WANTS",
            "ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in services {
        let limited = match s.pinned {
            Some(n) => format!("--scale {n}"),
            None => s.limited_by.clone(),
        };
        let head = [
            s.service.clone(),
            s.min.to_string(),
            s.max.to_string(),
            s.desired.to_string(),
            limited,
        ];
        for (i, t) in s.triggers.iter().enumerate() {
            let mut row: Vec<String> = if i == 0 {
                head.to_vec()
            } else {
                vec![String::new(); head.len()]
            };
            row.extend([
                t.name.clone(),
                t.value.map_or("-".into(), |v| format!("{v}")),
                format!("{}", t.target),
                t.wants.map_or("-".into(), |w| w.to_string()),
                t.error.clone().unwrap_or_default(),
            ]);
            rows.push(row);
        }
    }
    super::status::table(out, &rows);
}

/// The autoscaler's figures in the Prometheus text format.
pub(super) fn metrics(out: &mut String, r: &super::recorder::Recorded) {
    let p = r.project.as_str();
    let esc = super::metrics::esc;
    let mut gauge = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{project=\"{}\",{labels}}} {v}", esc(p));
        }
    };
    let svc = |s: &str| format!("service=\"{}\"", esc(s));
    let trig = |s: &str, t: &str| format!("service=\"{}\",trigger=\"{}\"", esc(s), esc(t));
    let each = |f: &dyn Fn(&AutoscaleStatus) -> f64| -> Vec<(String, f64)> {
        r.autoscale
            .values()
            .map(|s| (svc(&s.service), f(s)))
            .collect()
    };
    gauge(
        "drover_autoscale_desired_replicas",
        "The replica target the autoscaler set for the service.",
        each(&|s| f64::from(s.pinned.unwrap_or(s.desired))),
    );
    gauge(
        "drover_autoscale_min_replicas",
        "The service's autoscale min.",
        each(&|s| f64::from(s.min)),
    );
    gauge(
        "drover_autoscale_max_replicas",
        "The service's autoscale max.",
        each(&|s| f64::from(s.max)),
    );
    let per_trigger = |f: &dyn Fn(&TriggerStatus) -> Option<f64>| -> Vec<(String, f64)> {
        r.autoscale
            .values()
            .flat_map(|s| {
                s.triggers
                    .iter()
                    .filter_map(|t| f(t).map(|v| (trig(&s.service, &t.name), v)))
            })
            .collect()
    };
    gauge(
        "drover_autoscale_trigger_value",
        "The trigger's last value (absent while it does not answer).",
        per_trigger(&|t| t.value),
    );
    gauge(
        "drover_autoscale_trigger_target",
        "The trigger's target per replica.",
        per_trigger(&|t| Some(t.target)),
    );
    gauge(
        "drover_autoscale_trigger_up",
        "1 when the trigger answered its last poll, 0 when it did not.",
        per_trigger(&|t| Some(if t.error.is_none() { 1.0 } else { 0.0 })),
    );
    let limited: Vec<(String, f64)> = r
        .autoscale
        .values()
        .map(|s| {
            let reason = if s.pinned.is_some() {
                "pinned"
            } else {
                s.limited_by.as_str()
            };
            (
                format!("{},reason=\"{}\"", svc(&s.service), esc(reason)),
                1.0,
            )
        })
        .collect();
    gauge(
        "drover_autoscale_limited",
        "Always 1: what held or limited the service's last decision (reason).",
        limited,
    );
    counters(out, r);
}

/// The autoscaler's counters: trigger errors, target changes.
fn counters(out: &mut String, r: &super::recorder::Recorded) {
    let p = r.project.as_str();
    let esc = super::metrics::esc;
    let svc = |s: &str| format!("service=\"{}\"", esc(s));
    let trig = |s: &str, t: &str| format!("service=\"{}\",trigger=\"{}\"", esc(s), esc(t));
    let _ = writeln!(
        out,
        "# HELP drover_autoscale_trigger_errors_total Polls of the trigger that got no value.\n# TYPE drover_autoscale_trigger_errors_total counter"
    );
    for ((s, t), n) in &r.autoscale_errors {
        let _ = writeln!(
            out,
            "drover_autoscale_trigger_errors_total{{project=\"{}\",{}}} {n}",
            esc(p),
            trig(s, t)
        );
    }
    let _ = writeln!(
        out,
        "# HELP drover_autoscale_changes_total Replica target changes the autoscaler made (direction up or down).\n# TYPE drover_autoscale_changes_total counter"
    );
    for ((s, d), n) in &r.autoscale_changes {
        let _ = writeln!(
            out,
            "drover_autoscale_changes_total{{project=\"{}\",{},direction=\"{d}\"}} {n}",
            esc(p),
            svc(s)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn worker() -> AutoscaleStatus {
        AutoscaleStatus {
            service: "worker".into(),
            min: 1,
            max: 5,
            floor: None,
            pinned: None,
            desired: 4,
            limited_by: "none".into(),
            scale_down_window: "5m".into(),
            polling_interval: "15s".into(),
            last_poll: None,
            triggers: vec![
                TriggerStatus {
                    name: "redis-0".into(),
                    kind: "redis".into(),
                    target: 5.0,
                    value: Some(17.0),
                    wants: Some(4),
                    error: None,
                },
                TriggerStatus {
                    name: "cpu-1".into(),
                    kind: "cpu".into(),
                    target: 70.0,
                    value: None,
                    wants: None,
                    error: Some("no running replica to measure".into()),
                },
            ],
        }
    }

    #[test]
    fn metrics_status_and_the_table_show_the_autoscalers_view() {
        let t = Telemetry::new("demo", Duration::from_secs(60), None);
        t.autoscale(worker());
        t.autoscale_error("worker", "cpu-1");
        t.autoscaled("worker", "up");
        let m = super::super::metrics::render(&t);
        for line in [
            "drover_autoscale_desired_replicas{project=\"demo\",service=\"worker\"} 4",
            "drover_autoscale_max_replicas{project=\"demo\",service=\"worker\"} 5",
            "drover_autoscale_trigger_value{project=\"demo\",service=\"worker\",trigger=\"redis-0\"} 17",
            "drover_autoscale_trigger_up{project=\"demo\",service=\"worker\",trigger=\"cpu-1\"} 0",
            "drover_autoscale_limited{project=\"demo\",service=\"worker\",reason=\"none\"} 1",
            "drover_autoscale_trigger_errors_total{project=\"demo\",service=\"worker\",trigger=\"cpu-1\"} 1",
            "drover_autoscale_trigger_errors_total{project=\"demo\",service=\"worker\",trigger=\"redis-0\"} 0",
            "drover_autoscale_changes_total{project=\"demo\",service=\"worker\",direction=\"up\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
        }
        assert!(
            !m.contains("trigger_value{project=\"demo\",service=\"worker\",trigger=\"cpu-1\"}")
        );
        let s = super::super::status::snapshot(&t);
        assert_eq!(s.autoscale, vec![worker()]);
        let table = super::super::status::render_table(&s);
        let rows: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("AUTOSCALED"))
            .take(3)
            .collect();
        assert_eq!(rows.len(), 3, "{table}");
        let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            words(rows[1])[..9],
            ["worker", "1", "5", "4", "none", "redis-0", "17", "5", "4"]
        );
        assert!(
            rows[2].contains("cpu-1") && rows[2].contains("no running replica to measure"),
            "{table}"
        );
        // Forgotten once no longer autoscaled.
        t.autoscale_keep(&[]);
        assert!(!super::super::metrics::render(&t).contains("service=\"worker\""));
    }
}
