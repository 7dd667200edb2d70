//! Desired specs + the services Swarm has -> the actions that bring them together. Pure.
//!
//! A service is updated only when a field drover sets differs from what Swarm stores:
//! both specs are compared as JSON after normalizing what the engine fills in or rewrites
//! (network names become ids, empty values are dropped, fields drover never sets are
//! ignored). An update restarts tasks, so a service that only needs another replica count
//! gets the spec Swarm already has with just the count changed.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::convert::{Desired, NAMESPACE, PROJECT, SERVICE};
use crate::engine::model::{NetworkCreateRequest, ServiceSpec};

/// One service as Swarm has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub id: String,
    /// The object version, needed for an update.
    pub version: u64,
    pub spec: ServiceSpec,
}

impl Current {
    pub fn name(&self) -> &str {
        self.spec.name.as_deref().unwrap_or("")
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.spec.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// In the project's stack namespace (what `docker stack deploy` and drover both set).
    pub fn in_namespace(&self, project: &str) -> bool {
        self.label(NAMESPACE) == Some(project)
    }

    /// Created (or adopted) by drover for this project: the only services ever removed.
    pub fn owned_by(&self, project: &str) -> bool {
        self.in_namespace(project) && self.label(PROJECT) == Some(project)
    }

    /// `Some(n)` for a replicated service, `None` for a global one.
    pub fn replicas(&self) -> Option<u32> {
        let r = self.spec.mode.as_ref()?.replicated.as_ref()?;
        Some(r.replicas.unwrap_or(1).clamp(0, i64::from(u32::MAX)) as u32)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateNetwork(NetworkCreateRequest),
    Create {
        service: String,
        spec: ServiceSpec,
    },
    /// The definition changed: Swarm rolls the tasks out per the update config.
    Update {
        service: String,
        id: String,
        version: u64,
        spec: ServiceSpec,
        /// The fields that differ, e.g. `TaskTemplate.ContainerSpec.Image`.
        changed: Vec<String>,
    },
    /// Only the replica count changed: Swarm's spec back with the new count.
    Scale {
        service: String,
        id: String,
        version: u64,
        spec: ServiceSpec,
        from: u32,
        to: u32,
    },
    /// A service of the project that left the file.
    Remove {
        service: String,
        id: String,
    },
    /// A network of the project that left the file and that no service uses.
    RemoveNetwork {
        name: String,
        id: String,
    },
}

/// One network as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

impl Network {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }
}

/// Networks drover created for the project (both labels) that the project no longer wants
/// and that none of `services` (all Swarm services listed) is attached to, as
/// `docker stack deploy --prune` would remove them. A network without drover's label, or of
/// another project, is never removed.
pub fn network_removals(
    desired: &Desired,
    networks: &[Network],
    services: &[Current],
) -> Vec<Action> {
    let wanted: Vec<&str> = desired.networks.iter().map(|n| n.name.as_str()).collect();
    let attached: Vec<&str> = services
        .iter()
        .flat_map(|s| {
            let t = s.spec.task_template.as_ref();
            t.and_then(|t| t.networks.as_ref())
                .into_iter()
                .flatten()
                .chain(s.spec.networks.iter().flatten())
                .filter_map(|n| n.target.as_deref())
        })
        .collect();
    let mut out: Vec<Action> = networks
        .iter()
        .filter(|n| {
            n.label(NAMESPACE) == Some(desired.project.as_str())
                && n.label(PROJECT) == Some(desired.project.as_str())
                && !wanted.contains(&n.name.as_str())
                && !attached.contains(&n.id.as_str())
                && !attached.contains(&n.name.as_str())
        })
        .map(|n| Action::RemoveNetwork {
            name: n.name.clone(),
            id: n.id.clone(),
        })
        .collect();
    out.sort_by_key(|a| match a {
        Action::RemoveNetwork { name, .. } => name.clone(),
        _ => String::new(),
    });
    out
}

/// A service drover will not touch although the project wants its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub service: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub conflicts: Vec<Conflict>,
}

/// `existing_networks`: names of the networks the engine has; `network_names`: id -> name,
/// to read back the network targets Swarm stores as ids.
pub fn plan(
    desired: &Desired,
    current: &[Current],
    existing_networks: &[String],
    network_names: &HashMap<String, String>,
) -> Plan {
    let mut out = Plan::default();
    for n in &desired.networks {
        if !existing_networks.contains(&n.name) {
            out.actions.push(Action::CreateNetwork(n.clone()));
        }
    }
    let by_name: HashMap<&str, &Current> = current.iter().map(|c| (c.name(), c)).collect();
    for want in desired.services.values() {
        let Some(have) = by_name.get(want.name.as_str()) else {
            out.actions.push(Action::Create {
                service: want.name.clone(),
                spec: want.spec.clone(),
            });
            continue;
        };
        if !have.in_namespace(&desired.project) {
            out.conflicts.push(Conflict {
                service: want.name.clone(),
                reason: format!(
                    "a service of that name exists without the label {NAMESPACE}={}; \
                     it is left alone (remove or rename it)",
                    desired.project
                ),
            });
            continue;
        }
        let changed = differences(&want.spec, &have.spec, network_names);
        if !changed.is_empty() {
            out.actions.push(Action::Update {
                service: want.name.clone(),
                id: have.id.clone(),
                version: have.version,
                spec: want.spec.clone(),
                changed,
            });
        } else if let (Some(to), Some(from)) = (want.replicas, have.replicas())
            && to != from
        {
            let mut spec = have.spec.clone();
            if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                r.replicas = Some(i64::from(to));
            }
            // The healthcheck Swarm has is not read back: send the one it has, which is
            // the one wanted (its label matched).
            if let (Some(c), Some(w)) = (
                spec.task_template
                    .as_mut()
                    .and_then(|t| t.container_spec.as_mut()),
                want.spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.container_spec.as_ref()),
            ) {
                c.health_check = w.health_check.clone();
            }
            out.actions.push(Action::Scale {
                service: want.name.clone(),
                id: have.id.clone(),
                version: have.version,
                spec,
                from,
                to,
            });
        }
    }
    let wanted: Vec<&str> = desired.services.values().map(|s| s.name.as_str()).collect();
    let mut gone: Vec<&Current> = current
        .iter()
        .filter(|c| c.owned_by(&desired.project) && !wanted.contains(&c.name()))
        .collect();
    gone.sort_by_key(|c| c.name().to_string());
    for c in gone {
        out.actions.push(Action::Remove {
            service: c.name().to_string(),
            id: c.id.clone(),
        });
    }
    out
}

/// The paths at which `have` does not match `want` (empty: nothing to update). The
/// replica count is left out; so are fields drover does not set.
pub fn differences(
    want: &ServiceSpec,
    have: &ServiceSpec,
    network_names: &HashMap<String, String>,
) -> Vec<String> {
    let want = normalize(want, network_names);
    let have = normalize(have, network_names);
    let mut out = Vec::new();
    subset(&want, &have, "", &mut out);
    out
}

/// JSON with the replica count removed, network ids replaced by names, empty values gone.
fn normalize(spec: &ServiceSpec, network_names: &HashMap<String, String>) -> Value {
    let mut spec = spec.clone();
    if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
        r.replicas = None;
    }
    // The engine moves the old top-level Networks into the task template.
    if let Some(nets) = spec.networks.take()
        && let Some(t) = spec.task_template.as_mut()
    {
        t.networks.get_or_insert_with(Vec::new).extend(nets);
    }
    if let Some(nets) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.networks.as_mut())
    {
        for n in nets.iter_mut() {
            if let Some(name) = n.target.as_ref().and_then(|t| network_names.get(t)) {
                n.target = Some(name.clone());
            }
        }
        nets.sort_by(|a, b| a.target.cmp(&b.target));
    }
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        if let Some(env) = c.env.as_mut() {
            env.sort();
        }
        // Never read back (see `convert::HEALTHCHECK_HASH`, the label that stands for it).
        c.health_check = None;
    }
    prune(serde_json::to_value(&spec).unwrap_or(Value::Null))
}

/// Drop what the engine does not store (Go's `omitempty`): nulls, zeros, `false`, empty
/// strings, lists and maps, recursively.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        v => v,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// Keys whose maps are compared whole (a label someone added is drift too), not as subsets.
const WHOLE_MAPS: &[&str] = &["Labels"];

/// Record in `out` every path where `want` is not contained in `have`. Objects compare
/// key by key (`have` may have more keys: engine defaults), lists element by element,
/// scalars exactly.
fn subset(want: &Value, have: &Value, path: &str, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            let whole = WHOLE_MAPS.iter().any(|k| path.ends_with(k));
            if whole {
                if w != h {
                    out.push(path.to_string());
                }
                return;
            }
            for (k, wv) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match h.get(k) {
                    Some(hv) => subset(wv, hv, &p, out),
                    None => out.push(p),
                }
            }
        }
        // Lists: same length, each element contained in its counterpart (the engine may
        // fill defaults into list entries such as mounts and ports).
        (Value::Array(w), Value::Array(h)) => {
            if w.len() != h.len() {
                out.push(path.to_string());
                return;
            }
            let before = out.len();
            let mut inner = Vec::new();
            for (wv, hv) in w.iter().zip(h) {
                subset(wv, hv, path, &mut inner);
            }
            if !inner.is_empty() && out.len() == before {
                out.push(path.to_string());
            }
        }
        // Numbers: the engine may hand back 0.0 for 0.
        (Value::Number(a), Value::Number(b)) => {
            if a.as_f64() != b.as_f64() {
                out.push(path.to_string());
            }
        }
        (w, h) => {
            if w != h {
                out.push(path.to_string());
            }
        }
    }
}

/// The Compose service behind a Swarm service of the project (its `drover.service` label,
/// else the name without the `{project}_` prefix).
pub fn compose_service<'a>(spec: &'a ServiceSpec, project: &str) -> &'a str {
    if let Some(s) = spec.labels.as_ref().and_then(|l| l.get(SERVICE)) {
        return s;
    }
    let name = spec.name.as_deref().unwrap_or("");
    name.strip_prefix(project)
        .and_then(|n| n.strip_prefix('_'))
        .unwrap_or(name)
}

/// Services by Compose name, for the report.
pub fn by_compose_name<'a>(
    current: &'a [Current],
    project: &str,
) -> BTreeMap<&'a str, &'a Current> {
    current
        .iter()
        .filter(|c| c.in_namespace(project))
        .map(|c| (compose_service(&c.spec, project), c))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::swarm::convert;

    fn project(replicas: u32, image: &str) -> crate::config::Project {
        project_with(&format!("deploy: {{ replicas: {replicas} }}"), image)
    }

    fn project_with(deploy: &str, image: &str) -> crate::config::Project {
        let dir = std::env::temp_dir();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let replicas = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = format!("services:\n  web:\n    image: {image}\n    {deploy}\n");
        let path = dir.join(format!("swarm-diff-{}-{replicas}.yml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            files: vec![path.clone()],
            project_name: Some("p".into()),
            cwd: dir,
            mode: Some(crate::config::Mode::Swarm),
            ..Default::default()
        })
        .unwrap();
        let _ = std::fs::remove_file(path);
        loaded.project
    }

    /// What Swarm hands back for a spec drover created: ids for network names, zero
    /// values dropped, defaults filled in.
    fn as_stored(spec: &ServiceSpec, ids: &HashMap<String, String>) -> ServiceSpec {
        let mut v = serde_json::to_value(spec).unwrap();
        let t = &mut v["TaskTemplate"];
        t["ForceUpdate"] = 0.into();
        t["Runtime"] = "container".into();
        t["ContainerSpec"]["Isolation"] = "default".into();
        // The engine stores it as `Healthcheck`, which is not read back.
        if let Some(c) = t["ContainerSpec"].as_object_mut()
            && let Some(h) = c.remove("HealthCheck")
        {
            c.insert("Healthcheck".into(), h);
        }
        if let Some(nets) = t["Networks"].as_array_mut() {
            for n in nets {
                let name = n["Target"].as_str().unwrap().to_string();
                let id = ids.iter().find(|(_, v)| **v == name).unwrap().0.clone();
                n["Target"] = id.into();
            }
        }
        v["UpdateConfig"].as_object_mut().unwrap().remove("Delay");
        v["UpdateConfig"]
            .as_object_mut()
            .unwrap()
            .remove("MaxFailureRatio");
        serde_json::from_value(v).unwrap()
    }

    fn current(spec: ServiceSpec) -> Current {
        Current {
            id: "id1".into(),
            version: 7,
            spec,
        }
    }

    fn ids() -> HashMap<String, String> {
        HashMap::from([("n1".to_string(), "p_default".to_string())])
    }

    #[test]
    fn a_stored_spec_that_matches_needs_nothing() {
        let d = convert::desired(&project(2, "img:1"), &BTreeMap::new());
        let have = current(as_stored(&d.services["web"].spec, &ids()));
        let plan = plan(&d, &[have], &["p_default".into()], &ids());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_healthcheck_the_engine_does_not_hand_back_is_compared_by_its_label() {
        let hc = |retries: u32| {
            format!(
                "healthcheck: {{ test: [\"CMD\", \"true\"], retries: {retries} }}\n    \
                 deploy: {{ replicas: 2 }}"
            )
        };
        let d1 = convert::desired(&project_with(&hc(1), "img:1"), &BTreeMap::new());
        let stored = as_stored(&d1.services["web"].spec, &ids());
        let ours = |s: &ServiceSpec| {
            s.task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.health_check.clone())
        };
        assert_eq!(ours(&stored), None, "as the client library reads it");
        let p = plan(
            &d1,
            &[current(stored.clone())],
            &["p_default".into()],
            &ids(),
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        // A scale keeps the healthcheck Swarm has.
        let more = convert::desired(
            &project_with(&hc(1).replace("replicas: 2", "replicas: 3"), "img:1"),
            &BTreeMap::new(),
        );
        let p = plan(
            &more,
            &[current(stored.clone())],
            &["p_default".into()],
            &ids(),
        );
        match &p.actions[..] {
            [Action::Scale { spec, .. }] => {
                assert_eq!(ours(spec), ours(&d1.services["web"].spec));
                assert!(ours(spec).is_some());
            }
            a => panic!("{a:?}"),
        }
        // A changed healthcheck is an update.
        let d2 = convert::desired(&project_with(&hc(3), "img:1"), &BTreeMap::new());
        let p = plan(&d2, &[current(stored)], &["p_default".into()], &ids());
        match &p.actions[..] {
            [Action::Update { changed, .. }] => {
                assert!(
                    changed
                        .iter()
                        .any(|c| c.contains(convert::HEALTHCHECK_HASH) || c.ends_with("Labels")),
                    "{changed:?}"
                );
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn a_new_count_scales_swarms_own_spec_and_a_new_image_updates() {
        let d1 = convert::desired(&project(2, "img:1"), &BTreeMap::new());
        let stored = as_stored(&d1.services["web"].spec, &ids());
        let d2 = convert::desired(&project(5, "img:1"), &BTreeMap::new());
        let p = plan(
            &d2,
            &[current(stored.clone())],
            &["p_default".into()],
            &ids(),
        );
        match &p.actions[..] {
            [
                Action::Scale {
                    from: 2,
                    to: 5,
                    spec,
                    ..
                },
            ] => {
                let mut expect = stored.clone();
                expect
                    .mode
                    .as_mut()
                    .unwrap()
                    .replicated
                    .as_mut()
                    .unwrap()
                    .replicas = Some(5);
                assert_eq!(spec, &expect);
            }
            a => panic!("{a:?}"),
        }
        let d3 = convert::desired(&project(2, "img:2"), &BTreeMap::new());
        let p = plan(&d3, &[current(stored)], &["p_default".into()], &ids());
        match &p.actions[..] {
            [Action::Update { changed, .. }] => {
                assert!(
                    changed.iter().any(|c| c.ends_with("ContainerSpec.Image")),
                    "{changed:?}"
                );
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn only_owned_services_are_removed_and_look_alikes_are_left_alone() {
        let d = convert::desired(&project(1, "img:1"), &BTreeMap::new());
        let mut gone = as_stored(&d.services["web"].spec, &ids());
        gone.name = Some("p_old".into());
        let mut stack_only = gone.clone();
        stack_only.name = Some("p_stack".into());
        stack_only.labels.as_mut().unwrap().remove(PROJECT);
        let look_alike = ServiceSpec {
            name: Some("p_web".into()),
            ..Default::default()
        };
        let services = [
            Current {
                id: "a".into(),
                version: 1,
                spec: gone,
            },
            Current {
                id: "b".into(),
                version: 1,
                spec: stack_only,
            },
            Current {
                id: "c".into(),
                version: 1,
                spec: look_alike,
            },
        ];
        let p = plan(&d, &services, &["p_default".into()], &ids());
        assert_eq!(
            p.actions,
            vec![Action::Remove {
                service: "p_old".into(),
                id: "a".into()
            }]
        );
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].service, "p_web");
    }

    #[test]
    fn global_mode_and_missing_network() {
        let d = convert::desired(
            &project_with("deploy: { mode: global }", "img:1"),
            &BTreeMap::new(),
        );
        assert_eq!(d.services["web"].replicas, None);
        let p = plan(&d, &[], &[], &HashMap::new());
        assert!(matches!(&p.actions[0], Action::CreateNetwork(n) if n.name == "p_default"));
        assert!(matches!(&p.actions[1], Action::Create { spec, .. }
            if spec.mode.as_ref().unwrap().global.is_some()));
    }

    #[test]
    fn resources_and_placement_reach_the_spec_as_written() {
        let d = convert::desired(
            &project_with(
                "deploy:\n      resources:\n        limits: {cpus: '0.5', memory: 64M, pids: 100}\n        reservations: {cpus: '0.25', memory: 32M}\n      placement:\n        constraints: [node.role == manager, engine.labels.disk==ssd]\n        preferences: [{spread: node.platform.arch}]",
                "img:1",
            ),
            &BTreeMap::new(),
        );
        let t = d.services["web"].spec.task_template.clone().unwrap();
        let r = t.resources.unwrap();
        let l = r.limits.unwrap();
        assert_eq!(
            (l.nano_cpus, l.memory_bytes, l.pids),
            (Some(500_000_000), Some(64 << 20), Some(100))
        );
        let res = r.reservations.unwrap();
        assert_eq!(
            (res.nano_cpus, res.memory_bytes),
            (Some(250_000_000), Some(32 << 20))
        );
        let p = t.placement.unwrap();
        assert_eq!(
            p.constraints.unwrap(),
            vec!["node.role == manager", "engine.labels.disk==ssd"]
        );
        assert_eq!(
            p.preferences.unwrap()[0]
                .spread
                .as_ref()
                .unwrap()
                .spread_descriptor
                .as_deref(),
            Some("node.platform.arch")
        );
    }

    #[test]
    fn only_owned_networks_that_left_the_file_and_are_unused_go() {
        let d = convert::desired(&project(1, "img:1"), &BTreeMap::new());
        let labels = |p: &str, owned: bool| {
            let mut l = HashMap::from([(NAMESPACE.to_string(), p.to_string())]);
            if owned {
                l.insert(PROJECT.to_string(), p.to_string());
            }
            l
        };
        let net = |id: &str, name: &str, l| Network {
            id: id.into(),
            name: name.into(),
            labels: l,
        };
        let nets = [
            net("n1", "p_default", labels("p", true)),
            net("n2", "p_old", labels("p", true)),
            net("n3", "p_used", labels("p", true)),
            net("n4", "p_stack", labels("p", false)),
            net("n5", "q_old", labels("q", true)),
            net("n6", "p_bare", HashMap::new()),
        ];
        let mut user = as_stored(&d.services["web"].spec, &ids());
        user.name = Some("other_svc".into());
        user.task_template.as_mut().unwrap().networks =
            Some(vec![crate::engine::model::NetworkAttachmentConfig {
                target: Some("n3".into()),
                ..Default::default()
            }]);
        let gone = network_removals(&d, &nets, &[current(user)]);
        assert_eq!(
            gone,
            vec![Action::RemoveNetwork {
                name: "p_old".into(),
                id: "n2".into()
            }]
        );
    }
}
