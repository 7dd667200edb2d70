//! Secrets and configs: which Swarm object each one a service uses maps to, which to
//! create and which to remove. Pure.
//!
//! Swarm secrets and configs cannot be changed. A created one carries the sha256 of its
//! content (`drover.content-hash`) and its key (`drover.key`); an existing one of the
//! project with the same key and hash is reused, whatever its name. New content gets a new
//! object: named `{project}_{key}` (or `name:`) when that name is free, else with the first
//! eight hex digits of the hash appended (`{project}_{key}-1a2b3c4d`); the services are
//! updated to it, and the old one is removed once no service refers to it any more.
//! External ones are looked up by name and never created or removed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::convert::{CONTENT_HASH, Content, Desired, Kind, NAMESPACE, OBJECT_KEY, PROJECT};
use crate::engine::model::ServiceSpec;

/// One secret or config as Swarm has it (its content is never read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

impl Existing {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }

    /// Created by drover for `project` (the only ones ever removed).
    pub fn owned_by(&self, project: &str) -> bool {
        self.label(NAMESPACE) == Some(project) && self.label(PROJECT) == Some(project)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObjectAction {
    Create {
        kind: Kind,
        key: String,
        name: String,
        /// The file it comes from, to name in `drover plan` (never the content).
        file: Option<String>,
        labels: HashMap<String, String>,
        content: Content,
    },
    /// Owned by the project, no longer wanted and not used by any service.
    Remove {
        kind: Kind,
        id: String,
        name: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectPlan {
    /// (kind, key) -> the name of the object the services use (existing or to create).
    pub names: BTreeMap<(Kind, String), String>,
    /// Creates first, then removes.
    pub actions: Vec<ObjectAction>,
}

/// `existing`: every secret and config of the swarm; `in_use`: the ids that some service
/// refers to (such an object is never removed: Swarm would refuse anyway).
pub fn plan(desired: &Desired, existing: &[Existing], in_use: &HashSet<String>) -> ObjectPlan {
    let mut out = ObjectPlan::default();
    let mut creates = Vec::new();
    for ((kind, key), want) in &desired.objects {
        if want.external {
            out.names.insert((*kind, key.clone()), want.name.clone());
            continue;
        }
        let same: Vec<&Existing> = existing
            .iter()
            .filter(|e| {
                e.kind == *kind
                    && e.owned_by(&desired.project)
                    && e.label(OBJECT_KEY) == Some(key.as_str())
                    && e.label(CONTENT_HASH) == Some(want.hash.as_str())
            })
            .collect();
        let found = same
            .iter()
            .find(|e| e.name == want.name)
            .or_else(|| same.first());
        let name = match found {
            Some(e) => e.name.clone(),
            None => {
                let taken = existing
                    .iter()
                    .any(|e| e.kind == *kind && e.name == want.name);
                let name = if taken {
                    format!("{}-{}", want.name, &want.hash[..8.min(want.hash.len())])
                } else {
                    want.name.clone()
                };
                creates.push(ObjectAction::Create {
                    kind: *kind,
                    key: key.clone(),
                    name: name.clone(),
                    file: want.file.clone(),
                    labels: want.labels.clone(),
                    content: want.content.clone(),
                });
                name
            }
        };
        out.names.insert((*kind, key.clone()), name);
    }
    let wanted: HashSet<(Kind, &str)> = out
        .names
        .iter()
        .map(|((k, _), n)| (*k, n.as_str()))
        .collect();
    let mut removes: Vec<&Existing> = existing
        .iter()
        .filter(|e| {
            e.owned_by(&desired.project)
                && !wanted.contains(&(e.kind, e.name.as_str()))
                && !in_use.contains(&e.id)
        })
        .collect();
    removes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out.actions = creates;
    out.actions
        .extend(removes.into_iter().map(|e| ObjectAction::Remove {
            kind: e.kind,
            id: e.id.clone(),
            name: e.name.clone(),
        }));
    out
}

/// `spec` with its secret and config references pointing at the objects `names` chose;
/// `ids` by kind and name (an object still to be created has none yet, as in `drover
/// plan`). An error names an external object Swarm does not have.
pub fn resolve(
    spec: &ServiceSpec,
    names: &BTreeMap<(Kind, String), String>,
    ids: &HashMap<(Kind, String), String>,
    external: &HashSet<(Kind, String)>,
) -> Result<ServiceSpec, String> {
    let mut spec = spec.clone();
    let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(spec);
    };
    let look = |kind: Kind, key: &str| -> Result<(String, Option<String>), String> {
        let name = names
            .get(&(kind, key.to_string()))
            .cloned()
            .unwrap_or_else(|| key.to_string());
        let id = ids.get(&(kind, name.clone())).cloned();
        if id.is_none() && external.contains(&(kind, key.to_string())) {
            return Err(format!(
                "external {} {name:?} does not exist in the swarm; create it (docker {} create) \
                 or remove external: from {key:?}",
                kind.as_str(),
                kind.as_str()
            ));
        }
        Ok((name, id))
    };
    for s in c.secrets.iter_mut().flatten() {
        let key = s.secret_name.clone().unwrap_or_default();
        let (name, id) = look(Kind::Secret, &key)?;
        s.secret_name = Some(name);
        s.secret_id = id;
    }
    for s in c.configs.iter_mut().flatten() {
        let key = s.config_name.clone().unwrap_or_default();
        let (name, id) = look(Kind::Config, &key)?;
        s.config_name = Some(name);
        s.config_id = id;
    }
    Ok(spec)
}

/// The ids of the secrets and configs `spec` refers to.
pub fn referenced(spec: &ServiceSpec) -> impl Iterator<Item = String> + '_ {
    let c = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref());
    let secrets = c
        .and_then(|c| c.secrets.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| s.secret_id.clone());
    let configs = c
        .and_then(|c| c.configs.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| s.config_id.clone());
    secrets.chain(configs)
}

/// Standard base64 (RFC 4648, padded), as the engine wants secret and config data.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::convert;

    fn project(secret_file: &str) -> (crate::config::Project, BTreeMap<(Kind, String), Vec<u8>>) {
        let dir = std::env::temp_dir().join(format!("swarm-objects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("compose.yml"),
            "services:\n  web:\n    image: img\n    secrets:\n      - db\n      - {source: ext, target: /etc/ext, uid: '10', mode: 0400}\n    configs: [site]\n\
             secrets:\n  db: {file: ./db.txt}\n  ext: {external: true, name: shared}\n\
             configs:\n  site: {file: ./site.conf}\n",
        )
        .unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            project_name: Some("p".into()),
            cwd: dir,
            mode: Some(crate::config::Mode::Swarm),
            ..Default::default()
        })
        .unwrap();
        let contents = BTreeMap::from([
            (
                (Kind::Secret, "db".to_string()),
                secret_file.as_bytes().to_vec(),
            ),
            ((Kind::Config, "site".to_string()), b"conf".to_vec()),
        ]);
        (loaded.project, contents)
    }

    fn existing(kind: Kind, id: &str, name: &str, d: &Desired, key: &str) -> Existing {
        Existing {
            kind,
            id: id.into(),
            name: name.into(),
            labels: d.objects[&(kind, key.to_string())].labels.clone(),
        }
    }

    #[test]
    fn first_deploy_creates_named_like_the_stack_and_refers_by_id() {
        let (p, c) = project("s3cret");
        let d = convert::desired(&p, &c);
        let plan = plan(&d, &[], &HashSet::new());
        let created: Vec<(&str, &str)> = plan
            .actions
            .iter()
            .map(|a| match a {
                ObjectAction::Create { kind, name, .. } => (kind.as_str(), name.as_str()),
                a => panic!("{a:?}"),
            })
            .collect();
        assert_eq!(created, vec![("secret", "p_db"), ("config", "p_site")]);
        // The content never shows in Debug output.
        assert!(!format!("{plan:?}").contains("s3cret"));
        let ids = HashMap::from([
            ((Kind::Secret, "p_db".to_string()), "S1".to_string()),
            ((Kind::Secret, "shared".to_string()), "S2".to_string()),
            ((Kind::Config, "p_site".to_string()), "C1".to_string()),
        ]);
        let ext = HashSet::from([(Kind::Secret, "ext".to_string())]);
        let spec = resolve(&d.services["web"].spec, &plan.names, &ids, &ext).unwrap();
        let cs = spec.task_template.unwrap().container_spec.unwrap();
        let secrets = cs.secrets.unwrap();
        assert_eq!(secrets[0].secret_name.as_deref(), Some("p_db"));
        assert_eq!(secrets[0].secret_id.as_deref(), Some("S1"));
        let f = secrets[0].file.as_ref().unwrap();
        assert_eq!(
            (f.name.as_deref(), f.uid.as_deref(), f.mode),
            (Some("/run/secrets/db"), Some("0"), Some(0o444))
        );
        let f = secrets[1].file.as_ref().unwrap();
        assert_eq!(secrets[1].secret_name.as_deref(), Some("shared"));
        assert_eq!(
            (f.name.as_deref(), f.uid.as_deref(), f.mode),
            (Some("/etc/ext"), Some("10"), Some(0o400))
        );
        let configs = cs.configs.unwrap();
        assert_eq!(configs[0].config_id.as_deref(), Some("C1"));
        assert_eq!(
            configs[0].file.as_ref().unwrap().name.as_deref(),
            Some("/site")
        );
        // A missing external one is an error naming it.
        let err = resolve(&d.services["web"].spec, &plan.names, &HashMap::new(), &ext).unwrap_err();
        assert!(err.contains("\"shared\" does not exist"), "{err}");
    }

    #[test]
    fn same_content_is_reused_new_content_gets_a_hashed_name_old_goes_when_unused() {
        let (p, c) = project("one");
        let d1 = convert::desired(&p, &c);
        let old = existing(Kind::Secret, "S1", "p_db", &d1, "db");
        let site = existing(Kind::Config, "C1", "p_site", &d1, "site");
        let have = vec![old.clone(), site.clone()];
        let same = plan(&d1, &have, &HashSet::new());
        assert!(same.actions.is_empty(), "{:?}", same.actions);

        let (p, c) = project("two");
        let d2 = convert::desired(&p, &c);
        let hash = &d2.objects[&(Kind::Secret, "db".to_string())].hash;
        let changed = plan(&d2, &have, &HashSet::from(["S1".to_string()]));
        let want = format!("p_db-{}", &hash[..8]);
        assert_eq!(changed.names[&(Kind::Secret, "db".to_string())], want);
        assert!(matches!(&changed.actions[..],
            [ObjectAction::Create { name, .. }] if *name == want));

        // Once the service uses the new one, the old one is removed; a foreign one never.
        let mut new = existing(Kind::Secret, "S2", &want, &d2, "db");
        new.name = want.clone();
        let foreign = Existing {
            kind: Kind::Secret,
            id: "F".into(),
            name: "p_other".into(),
            labels: HashMap::from([(NAMESPACE.to_string(), "p".to_string())]),
        };
        let have = vec![old, new, site, foreign];
        let after = plan(&d2, &have, &HashSet::from(["S2".to_string()]));
        assert_eq!(
            after.actions,
            vec![ObjectAction::Remove {
                kind: Kind::Secret,
                id: "S1".into(),
                name: "p_db".into()
            }]
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
