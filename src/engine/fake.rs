//! An in-memory engine for unit tests of what drover asks engines to do: it keeps
//! containers (name, state, mounts) and volumes the way an engine does, including the two
//! rules volume handover depends on (removing a container removes only the anonymous
//! volumes the engine made for it; a volume in use cannot be removed), and records every
//! call by container name, so a test asserts the exact sequence a scenario produces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, MountPoint, MountType,
    NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest,
};

use super::api::{Answer, Engine};
use super::error::{EngineError, Kind};

#[derive(Debug, Clone)]
struct Container {
    name: String,
    labels: HashMap<String, String>,
    running: bool,
    /// (volume name, destination, made by the engine for this container)
    volumes: Vec<(String, String, bool)>,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, Container>,
    volumes: BTreeSet<String>,
    calls: Vec<String>,
    next: u64,
    /// Calls (by their first word) that fail once with this kind.
    fail: HashMap<String, Kind>,
}

/// The fake engine. `image_volumes` are the paths every image declares with `VOLUME`.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
    pub image_volumes: Vec<String>,
}

fn err(kind: Kind, message: &str) -> EngineError {
    EngineError {
        kind,
        message: message.to_string(),
    }
}

impl FakeEngine {
    pub fn with_image_volumes(paths: &[&str]) -> FakeEngine {
        FakeEngine {
            image_volumes: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The calls made so far, as `verb name [detail]`, and forget them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Make the next call whose verb is `verb` fail with `kind`.
    pub fn fail_next(&self, verb: &str, kind: Kind) {
        self.state.lock().unwrap().fail.insert(verb.into(), kind);
    }

    pub fn volume_exists(&self, name: &str) -> bool {
        self.state.lock().unwrap().volumes.contains(name)
    }

    /// Names of the containers, sorted.
    pub fn names(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut names: Vec<String> = s.containers.values().map(|c| c.name.clone()).collect();
        names.sort();
        names
    }

    /// The volumes mounted in the container named `name`, as `destination=volume`.
    pub fn mounts(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.containers
            .values()
            .find(|c| c.name == name)
            .map(|c| {
                c.volumes
                    .iter()
                    .map(|(v, d, _)| format!("{d}={}", &v[..12.min(v.len())]))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn call<T>(
        &self,
        verb: &str,
        detail: String,
        f: impl FnOnce(&mut State) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("{verb} {detail}"));
        if let Some(kind) = s.fail.remove(verb) {
            return Err(err(kind, "injected"));
        }
        f(&mut s)
    }
}

impl State {
    fn find(&self, id_or_name: &str) -> Option<String> {
        self.containers
            .iter()
            .find(|(id, c)| *id == id_or_name || c.name == id_or_name)
            .map(|(id, _)| id.clone())
    }

    fn name(&self, id: &str) -> String {
        self.find(id)
            .and_then(|i| self.containers.get(&i))
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    }

    fn fresh(&mut self, tag: char) -> String {
        self.next += 1;
        format!("{tag}{:063x}", self.next)
    }

    fn in_use(&self, volume: &str) -> bool {
        self.containers
            .values()
            .any(|c| c.volumes.iter().any(|(v, _, _)| v == volume))
    }
}

impl Engine for FakeEngine {
    fn create_container<'a>(
        &'a self,
        name: &'a str,
        _platform: Option<&'a str>,
        body: ContainerCreateBody,
    ) -> Answer<'a, String> {
        let mounts = body
            .host_config
            .as_ref()
            .and_then(|h| h.mounts.clone())
            .unwrap_or_default();
        let image_volumes = self.image_volumes.clone();
        let detail: Vec<String> = mounts
            .iter()
            .filter(|m| m.typ == Some(MountType::VOLUME))
            .map(|m| {
                let src = m
                    .source
                    .as_deref()
                    .map_or("anonymous", |s| &s[..12.min(s.len())]);
                format!("{}={src}", m.target.as_deref().unwrap_or_default())
            })
            .collect();
        let r = self.call("create", format!("{name} {}", detail.join(" ")), |s| {
            if s.find(name).is_some() {
                return Err(err(Kind::Conflict, "name in use"));
            }
            let mut volumes = Vec::new();
            for m in mounts.iter().filter(|m| m.typ == Some(MountType::VOLUME)) {
                let target = m.target.clone().unwrap_or_default();
                match &m.source {
                    Some(v) => {
                        s.volumes.insert(v.clone());
                        volumes.push((v.clone(), target, false));
                    }
                    None => {
                        let v = s.fresh('a');
                        s.volumes.insert(v.clone());
                        volumes.push((v, target, true));
                    }
                }
            }
            for path in &image_volumes {
                if !volumes.iter().any(|(_, d, _)| d == path) {
                    let v = s.fresh('a');
                    s.volumes.insert(v.clone());
                    volumes.push((v, path.clone(), true));
                }
            }
            let id = s.fresh('c');
            s.containers.insert(
                id.clone(),
                Container {
                    name: name.to_string(),
                    labels: body.labels.clone().unwrap_or_default(),
                    running: false,
                    volumes,
                },
            );
            Ok(id)
        });
        Box::pin(async move { r })
    }

    fn inspect_container<'a>(&'a self, id: &'a str) -> Answer<'a, ContainerInspectResponse> {
        let r = self.call("inspect", String::new(), |s| {
            let name = s.name(id);
            s.calls.last_mut().unwrap().push_str(&name);
            let key = s
                .find(id)
                .ok_or_else(|| err(Kind::NotFound, "no such container"))?;
            let c = &s.containers[&key];
            Ok(ContainerInspectResponse {
                id: Some(key.clone()),
                name: Some(format!("/{}", c.name)),
                config: Some(ContainerConfig {
                    labels: Some(c.labels.clone()),
                    ..Default::default()
                }),
                mounts: Some(
                    c.volumes
                        .iter()
                        .map(|(v, d, _)| MountPoint {
                            typ: Some("volume".into()),
                            name: Some(v.clone()),
                            destination: Some(d.clone()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            })
        });
        Box::pin(async move { r })
    }

    fn start_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.state_change("start", id, |c| {
            if c.running {
                return Err(err(Kind::NotModified, ""));
            }
            c.running = true;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn stop_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.state_change("stop", id, |c| {
            if !c.running {
                return Err(err(Kind::NotModified, ""));
            }
            c.running = false;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn restart_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.state_change("restart", id, |c| {
            c.running = true;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> Answer<'a, ()> {
        let r = self.call("rename", String::new(), |s| {
            let old = s.name(id);
            s.calls
                .last_mut()
                .unwrap()
                .push_str(&format!("{old} {name}"));
            let key = s
                .find(id)
                .ok_or_else(|| err(Kind::NotFound, "no such container"))?;
            if s.find(name).is_some() {
                return Err(err(Kind::Conflict, "name in use"));
            }
            s.containers.get_mut(&key).unwrap().name = name.to_string();
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.call("remove", String::new(), |s| {
            let name = s.name(id);
            s.calls.last_mut().unwrap().push_str(&name);
            let key = s
                .find(id)
                .ok_or_else(|| err(Kind::NotFound, "no such container"))?;
            let c = s.containers.remove(&key).unwrap();
            // Only the volumes the engine made for this container, and only when unused.
            for (v, _, own) in c.volumes {
                if own && !s.in_use(&v) {
                    s.volumes.remove(&v);
                }
            }
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()> {
        let r = self.call(
            "remove-volume",
            name[..12.min(name.len())].to_string(),
            |s| {
                if !s.volumes.contains(name) {
                    return Err(err(Kind::NotFound, "no such volume"));
                }
                if s.in_use(name) {
                    return Err(err(Kind::Conflict, "volume is in use"));
                }
                s.volumes.remove(name);
                Ok(())
            },
        );
        Box::pin(async move { r })
    }

    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()> {
        let name = req.name.unwrap_or_default();
        let r = self.call("create-volume", name.clone(), |s| {
            s.volumes.insert(name);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
        let r = self.call("create-network", req.name, |_| Ok(()));
        Box::pin(async move { r })
    }

    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        let r = self.call("remove-network", id.to_string(), |_| Ok(()));
        Box::pin(async move { r })
    }

    fn connect_network<'a>(&'a self, net: &'a str, _req: NetworkConnectRequest) -> Answer<'a, ()> {
        let r = self.call("connect", net.to_string(), |_| Ok(()));
        Box::pin(async move { r })
    }

    fn pull<'a>(&'a self, image: &'a str, _platform: Option<&'a str>) -> Answer<'a, ()> {
        let r = self.call("pull", image.to_string(), |_| Ok(()));
        Box::pin(async move { r })
    }
}

impl FakeEngine {
    fn state_change(
        &self,
        verb: &str,
        id: &str,
        f: impl FnOnce(&mut Container) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.call(verb, String::new(), |s| {
            let name = s.name(id);
            s.calls.last_mut().unwrap().push_str(&name);
            let key = s
                .find(id)
                .ok_or_else(|| err(Kind::NotFound, "no such container"))?;
            f(s.containers.get_mut(&key).unwrap())
        })
    }
}
