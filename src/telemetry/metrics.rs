//! `/metrics`: the recorded figures in the Prometheus text exposition format (0.0.4).
//!
//! Every metric is prefixed `drover_` and labelled `project`; per-service figures add
//! `service` and `node`, per-engine figures add `node`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use super::recorder::{Histogram, Recorded, Telemetry};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value: backslash, double quote and newline.
pub(super) fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.0, "{name}{} {}", labels(pairs), float(v));
    }

    fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            let le = float(*bound);
            let mut with_le = pairs.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, *count as f64);
        }
        let mut inf = pairs.to_vec();
        inf.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &inf, h.count as f64);
        self.sample(&format!("{name}_sum"), pairs, h.sum);
        self.sample(&format!("{name}_count"), pairs, h.count as f64);
    }
}

/// Render every metric.
pub fn render(t: &Telemetry) -> String {
    let r = t.lock();
    render_recorded(&r)
}

fn render_recorded(r: &Recorded) -> String {
    let mut o = Out(String::new());
    let p = r.project.as_str();
    process(&mut o, r, p);
    engines(&mut o, r, p);
    services(&mut o, r, p);
    actions(&mut o, r, p);
    streams(&mut o, r, p);
    swarm(&mut o, r, p);
    images(&mut o, r, p);
    config(&mut o, r, p);
    notifications(&mut o, r, p);
    super::autoscale::metrics(&mut o.0, r);
    o.0
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Images: the digest each service runs and the newest seen, registry checks.
fn images(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_image_info",
        "gauge",
        "Always 1: the digest most replicas of the service run and the newest seen for its tag (empty when not known).",
    );
    for (svc, i) in &r.images {
        let running = i.running.as_deref().unwrap_or("");
        let newest = i.newest.as_deref().unwrap_or("");
        let pairs = [
            ("project", p),
            ("service", svc.as_str()),
            ("image", i.image.as_str()),
            ("running", running),
            ("newest", newest),
        ];
        o.sample("drover_image_info", &pairs, 1.0);
    }
    o.header(
        "drover_image_up_to_date",
        "gauge",
        "1 when the service runs the newest digest seen for its tag (or none was seen).",
    );
    for (svc, i) in &r.images {
        let current = i.newest.is_none() || i.newest == i.running;
        let v = if current { 1.0 } else { 0.0 };
        o.sample(
            "drover_image_up_to_date",
            &[("project", p), ("service", svc)],
            v,
        );
    }
    o.header(
        "drover_image_last_check_timestamp_seconds",
        "gauge",
        "When the registry was last asked for the service's tag, seconds since the Unix epoch.",
    );
    for (svc, i) in &r.images {
        if let Some(t) = i.last_check {
            o.sample(
                "drover_image_last_check_timestamp_seconds",
                &[("project", p), ("service", svc)],
                unix_secs(t),
            );
        }
    }
    o.header(
        "drover_image_checks_total",
        "counter",
        "Registry checks of a service's tag, by result: unchanged, new, refused (a digest that failed), error.",
    );
    for ((svc, result), n) in &r.image_checks {
        o.sample(
            "drover_image_checks_total",
            &[("project", p), ("service", svc), ("result", result)],
            *n as f64,
        );
    }
}

/// drover itself: build, start time, readiness.
fn process(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_build_info",
        "gauge",
        "Always 1; the version label says which drover runs.",
    );
    o.sample(
        "drover_build_info",
        &[("project", p), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.header(
        "drover_start_time_seconds",
        "gauge",
        "When this drover started, seconds since the Unix epoch.",
    );
    let started = r
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    o.sample("drover_start_time_seconds", &[("project", p)], started);
    o.header(
        "drover_ready",
        "gauge",
        "1 when every engine answers and its event stream is fresh (as /readyz).",
    );
    let ready = if r.readiness().is_ok() { 1.0 } else { 0.0 };
    o.sample("drover_ready", &[("project", p)], ready);
}

/// Engines: how many, and which answered.
fn engines(o: &mut Out, r: &Recorded, p: &str) {
    o.header("drover_nodes", "gauge", "Engines (nodes) drover manages.");
    o.sample("drover_nodes", &[("project", p)], r.nodes.len() as f64);
    o.header(
        "drover_nodes_up",
        "gauge",
        "Engines that answered their last reconcile pass.",
    );
    let up = r.nodes.values().filter(|n| n.up == Some(true)).count();
    o.sample("drover_nodes_up", &[("project", p)], up as f64);
    o.header(
        "drover_node_up",
        "gauge",
        "1 when the engine answered its last reconcile pass.",
    );
    for (name, n) in &r.nodes {
        let v = if n.up == Some(true) { 1.0 } else { 0.0 };
        o.sample("drover_node_up", &[("project", p), ("node", name)], v);
    }
}

/// Per service and node: targets, running, waiting and stopped slots.
fn services(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_service_desired_replicas",
        "gauge",
        "Replica target of a service on a node.",
    );
    for ((service, node), c) in &r.services {
        o.sample(
            "drover_service_desired_replicas",
            &[("project", p), ("service", service), ("node", node)],
            c.desired as f64,
        );
    }
    o.header(
        "drover_service_actual_replicas",
        "gauge",
        "Running containers of a service on a node, as of the last pass.",
    );
    for ((service, node), c) in &r.services {
        o.sample(
            "drover_service_actual_replicas",
            &[("project", p), ("service", service), ("node", node)],
            c.actual as f64,
        );
    }
    o.header(
        "drover_service_containers",
        "gauge",
        "Containers of a service on a node in any state (running, exited, created...).",
    );
    for ((service, node), c) in &r.services {
        o.sample(
            "drover_service_containers",
            &[("project", p), ("service", service), ("node", node)],
            c.containers as f64,
        );
    }
    o.header(
        "drover_backoff_slots",
        "gauge",
        "Slots of a service waiting out a crash-loop backoff.",
    );
    let mut waiting: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (service, node) in r.services.keys() {
        waiting.insert((service, node), 0);
    }
    for (node, ws) in &r.waits {
        for w in ws {
            *waiting.entry((&w.service, node)).or_default() += 1;
        }
    }
    for ((service, node), n) in &waiting {
        o.sample(
            "drover_backoff_slots",
            &[("project", p), ("service", service), ("node", node)],
            *n as f64,
        );
    }
    o.header(
        "drover_stopped_slots",
        "gauge",
        "Slots left exited on purpose (restart policy, or out of attempts).",
    );
    let mut stopped: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (service, node) in r.services.keys() {
        stopped.insert((service, node), 0);
    }
    for (node, ss) in &r.stopped {
        for s in ss {
            *stopped.entry((&s.service, node)).or_default() += 1;
        }
    }
    for ((service, node), n) in &stopped {
        o.sample(
            "drover_stopped_slots",
            &[("project", p), ("service", service), ("node", node)],
            *n as f64,
        );
    }
}

/// What drover did: actions, restarts and recreations by reason.
fn actions(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_actions_total",
        "counter",
        "Actions taken, by kind, reason and result (ok or error).",
    );
    for ((service, node, action, reason, result), n) in &r.actions {
        o.sample(
            "drover_actions_total",
            &[
                ("project", p),
                ("service", service),
                ("node", node),
                ("action", action),
                ("reason", reason),
                ("result", result),
            ],
            *n as f64,
        );
    }
    o.header(
        "drover_restarts_total",
        "counter",
        "Containers started again in place, by reason.",
    );
    for ((service, node, reason), n) in &r.restarts {
        o.sample(
            "drover_restarts_total",
            &[
                ("project", p),
                ("service", service),
                ("node", node),
                ("reason", reason),
            ],
            *n as f64,
        );
    }
    o.header(
        "drover_recreations_total",
        "counter",
        "Containers replaced by a new one, by reason (removed, dead, config-changed...).",
    );
    for ((service, node, reason), n) in &r.recreations {
        o.sample(
            "drover_recreations_total",
            &[
                ("project", p),
                ("service", service),
                ("node", node),
                ("reason", reason),
            ],
            *n as f64,
        );
    }
}

/// Reconcile passes and event streams per node.
fn streams(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_reconcile_duration_seconds",
        "histogram",
        "Duration of reconcile passes (observe, plan, act).",
    );
    for (name, n) in &r.nodes {
        o.histogram(
            "drover_reconcile_duration_seconds",
            &[("project", p), ("node", name)],
            &n.passes,
        );
    }
    o.header(
        "drover_event_lag_seconds",
        "histogram",
        "Delay between an engine event's timestamp and its arrival at drover.",
    );
    for (name, n) in &r.nodes {
        o.histogram(
            "drover_event_lag_seconds",
            &[("project", p), ("node", name)],
            &n.stream.lag,
        );
    }
    o.header(
        "drover_events_total",
        "counter",
        "Container events received from the engine.",
    );
    for (name, n) in &r.nodes {
        o.sample(
            "drover_events_total",
            &[("project", p), ("node", name)],
            n.stream.events as f64,
        );
    }
    o.header(
        "drover_event_stream_up",
        "gauge",
        "1 while the engine's event stream is open.",
    );
    for (name, n) in &r.nodes {
        let v = if n.stream.connected { 1.0 } else { 0.0 };
        o.sample(
            "drover_event_stream_up",
            &[("project", p), ("node", name)],
            v,
        );
    }
    o.header(
        "drover_event_stream_silence_seconds",
        "gauge",
        "Seconds since the event stream last showed life (an event or a reopen).",
    );
    for (name, n) in &r.nodes {
        if let Some(t) = n.stream.last_activity {
            o.sample(
                "drover_event_stream_silence_seconds",
                &[("project", p), ("node", name)],
                t.elapsed().as_secs_f64(),
            );
        }
    }
    o.header(
        "drover_event_stream_reconnects_total",
        "counter",
        "Times the event stream was opened again (after an error or a silent watchdog period).",
    );
    for (name, n) in &r.nodes {
        o.sample(
            "drover_event_stream_reconnects_total",
            &[("project", p), ("node", name)],
            n.stream.reconnects() as f64,
        );
    }

    o.header(
        "drover_event_stream_errors_total",
        "counter",
        "Event stream failures (a failed open or a broken stream), each followed by a retry.",
    );
    for (name, n) in &r.nodes {
        o.sample(
            "drover_event_stream_errors_total",
            &[("project", p), ("node", name)],
            n.stream.errors as f64,
        );
    }
}

/// Swarm mode: Swarm's nodes and the task slots that do not run.
fn swarm(o: &mut Out, r: &Recorded, p: &str) {
    if let Some(sw) = &r.swarm {
        o.header(
            "drover_swarm_node_ready",
            "gauge",
            "1 when Swarm reports the node ready (Swarm mode).",
        );
        for (id, n) in &sw.nodes {
            let v = if n.state == "ready" { 1.0 } else { 0.0 };
            o.sample(
                "drover_swarm_node_ready",
                &[("project", p), ("node", &sw.node_label(id))],
                v,
            );
        }
        o.header(
            "drover_swarm_node_active",
            "gauge",
            "1 when the node's availability is active (not paused or drained; Swarm mode).",
        );
        for (id, n) in &sw.nodes {
            let v = if n.availability == "active" { 1.0 } else { 0.0 };
            o.sample(
                "drover_swarm_node_active",
                &[("project", p), ("node", &sw.node_label(id))],
                v,
            );
        }
        o.header(
            "drover_swarm_task_problems",
            "gauge",
            "Task slots of a service that do not run and for which Swarm reports an error (Swarm mode).",
        );
        for (name, s) in &sw.services {
            let n = s.problems.iter().filter(|p| p.error).count();
            o.sample(
                "drover_swarm_task_problems",
                &[("project", p), ("service", name)],
                n as f64,
            );
        }
    }
}

/// The config: reload failures and whether the last load was good.
fn config(o: &mut Out, r: &Recorded, p: &str) {
    o.header(
        "drover_config_reload_failures_total",
        "counter",
        "Config reloads that failed (the last good config kept running).",
    );
    o.sample(
        "drover_config_reload_failures_total",
        &[("project", p)],
        r.reload_failures as f64,
    );
    o.header(
        "drover_config_valid",
        "gauge",
        "1 when the last config load succeeded, 0 while an invalid edit is pending.",
    );
    let valid = if r.reload_error.is_none() { 1.0 } else { 0.0 };
    o.sample("drover_config_valid", &[("project", p)], valid);
    o.header(
        "drover_lease_held",
        "gauge",
        "1 while this drover holds the project's lease and acts, 0 while it stands by.",
    );
    let held = if r.acting { 1.0 } else { 0.0 };
    o.sample("drover_lease_held", &[("project", p)], held);
    let Some(l) = &r.lease else {
        return;
    };
    o.header(
        "drover_lease_term",
        "gauge",
        "The term of the drover acting for the project, as this drover sees it (0: none seen).",
    );
    o.sample(
        "drover_lease_term",
        &[("project", p)],
        l.term.unwrap_or(0) as f64,
    );
    o.header(
        "drover_lease_grants",
        "gauge",
        "Nodes whose lease counts for this drover now; it acts with a majority of drover_lease_nodes.",
    );
    o.sample(
        "drover_lease_grants",
        &[("project", p)],
        l.granted.len() as f64,
    );
    o.header(
        "drover_lease_nodes",
        "gauge",
        "Nodes that hold lease votes (witnesses included).",
    );
    o.sample("drover_lease_nodes", &[("project", p)], l.nodes as f64);
    o.header(
        "drover_lease_granted",
        "gauge",
        "1 for each node whose lease counts for this drover now, 0 for the others.",
    );
    for node in &l.node_names {
        let v = if l.granted.contains(node) { 1.0 } else { 0.0 };
        o.sample("drover_lease_granted", &[("project", p), ("node", node)], v);
    }
}

/// Webhook notifications, by the webhook's name (never its URL).
fn notifications(o: &mut Out, r: &Recorded, p: &str) {
    if r.notifications.is_empty() && r.notifications_dropped.is_empty() {
        return;
    }
    o.header(
        "drover_notifications_total",
        "counter",
        "Webhook notifications by how they ended: sent (acknowledged) or failed (given up).",
    );
    for ((hook, result), n) in &r.notifications {
        o.sample(
            "drover_notifications_total",
            &[("project", p), ("webhook", hook), ("result", result)],
            *n as f64,
        );
    }
    o.header(
        "drover_notifications_dropped_total",
        "counter",
        "Webhook notifications dropped unsent because the webhook's queue was full.",
    );
    for (hook, n) in &r.notifications_dropped {
        o.sample(
            "drover_notifications_dropped_total",
            &[("project", p), ("webhook", hook)],
            *n as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("a\nb"), "a\\nb");
        assert_eq!(
            labels(&[("node", "tcp://h:2376 (tls)")]),
            "{node=\"tcp://h:2376 (tls)\"}"
        );
    }

    #[test]
    fn every_metric_has_help_and_type_and_the_prefix() {
        let t = Telemetry::new("p", std::time::Duration::from_secs(60), None);
        t.add_node("unix:///var/run/docker.sock");
        t.stream_connected("unix:///var/run/docker.sock");
        t.stream_event("unix:///var/run/docker.sock", Some(0));
        drop(t.pass("unix:///var/run/docker.sock"));
        let text = render(&t);
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("drover_"), "{line}");
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(typed.contains(name) || typed.contains(base), "{line}");
            assert!(line.contains("project=\"p\""), "{line}");
        }
        assert!(text.contains(
            "drover_reconcile_duration_seconds_bucket{project=\"p\",node=\"unix:///var/run/docker.sock\",le=\"+Inf\"} 1"
        ));
    }

    #[test]
    fn the_lease_gauge_says_whether_this_drover_acts() {
        let t = Telemetry::new("p", std::time::Duration::from_secs(60), None);
        assert!(render(&t).contains("drover_lease_held{project=\"p\"} 0"));
        t.acting(true);
        assert!(render(&t).contains("drover_lease_held{project=\"p\"} 1"));
        t.acting(false);
        assert!(render(&t).contains("drover_lease_held{project=\"p\"} 0"));
    }
}
