//! Applying a plan's actions to one engine.
//!
//! Actions run in stages: networks and volumes first, then removals of containers
//! no longer wanted, then each service in depends_on order; the actions of one stage
//! run concurrently, at most `parallel` at a time. Engine calls are idempotent by
//! construction: names are deterministic, a 409 name conflict on create means the
//! container already exists (checked to be ours), and a 404 on stop or remove means
//! it is already gone. Each action reports its own outcome; one failure never stops
//! the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::config::{Project, PullPolicy, Service};
use crate::engine::model::VolumeMount;
use crate::engine::model::{ContainerCreateBody, NetworkConnectRequest, VolumeCreateRequest};
use crate::engine::{Client, Credentials, Engine, Kind};
use crate::labels::{LABEL_GENERATION, LABEL_IMAGE_DIGEST, LABEL_NODE, LABEL_PROJECT, LABEL_TERM};
use crate::observe;
use crate::plan::{self, Action, Target};
use crate::spec;
use crate::telemetry;

/// `action`, abandoned since `started` because its node was found down.
fn abandoned(action: &Action, started: Instant) -> Outcome {
    let id = action.target.container().map(str::to_string);
    Outcome {
        action: action.clone(),
        container: id.as_deref().map(short),
        id,
        duration: started.elapsed(),
        error: Some(format!(
            "node {} was found down while this ran; abandoned",
            action.node
        )),
        volumes: Volumes::Untouched,
        abandoned: true,
    }
}

/// The result of one action.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    /// The container the action created or acted on (12-char id), when known.
    pub container: Option<String>,
    /// Its full id.
    pub id: Option<String>,
    pub duration: Duration,
    /// One line saying what failed and where.
    pub error: Option<String>,
    /// What became of the anonymous volumes of the container the action replaced or removed.
    pub volumes: Volumes,
    /// Abandoned because its node was found down while it ran: no fault of the container
    /// (its engine may still apply it; the next pass sees what it did).
    pub abandoned: bool,
}

impl Outcome {
    /// The outcome as telemetry records it.
    pub fn record(&self) -> telemetry::ActionEvent {
        let a = &self.action;
        telemetry::ActionEvent {
            node: a.node.clone(),
            action: a.name(),
            service: a.target.service().map(str::to_string),
            slot: a.target.slot(),
            container: self.container.clone(),
            reason: a.reason.map(|r| r.as_str()),
            duration: self.duration,
            error: self.error.clone(),
            change: match a.kind {
                plan::Kind::Start { .. } => telemetry::SlotChange::Started,
                plan::Kind::Recreate { .. } => telemetry::SlotChange::Recreated,
                plan::Kind::Create => telemetry::SlotChange::Created,
                plan::Kind::Remove => telemetry::SlotChange::Removed,
                _ => telemetry::SlotChange::Other,
            },
        }
    }
}

/// What an action did with a container's anonymous volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Volumes {
    /// It had none, or the action left them alone.
    #[default]
    Untouched,
    /// The slot's new container took this many over (same node).
    TakenOver(usize),
    /// This many were removed with the container: a slot gone for good, or a replica
    /// that moved to another node, where they cannot follow.
    Removed(usize),
}

/// Applies actions for one project on its nodes.
pub struct Executor<'a, E: Engine = Client> {
    /// The engine of each node that is up.
    pub nodes: &'a HashMap<String, E>,
    pub project: &'a Project,
    /// Most engine operations in flight at once on each node.
    pub parallel: usize,
    /// Registry logins for pulls, on every node.
    pub credentials: &'a Credentials,
    /// The lease term this drover acts under, stamped on everything it creates
    /// (`drover.term`); `None`: no lease.
    pub term: Option<u64>,
    /// For each node, a future that resolves when it is found down: its actions still in
    /// flight are abandoned then, instead of holding the pass until the engine's timeouts.
    pub gone: Option<&'a Gone>,
    /// The digests of the images on each node this execution looked up (start empty).
    pub digests: Digests,
}

/// The registry digest of each node's copy of each image, as this execution found it: a
/// cold start creates hundreds of replicas of one image on each engine, and asked the
/// engine for the same digest before every one of them.
#[derive(Default)]
pub struct Digests(Mutex<HashMap<(String, String), Option<String>>>);

impl Digests {
    fn get(&self, node: &str, image: &str) -> Option<Option<String>> {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(&(node.to_string(), image.to_string())).cloned()
    }

    fn put(&self, node: &str, image: &str, digest: Option<String>) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known.insert((node.to_string(), image.to_string()), digest);
    }
}

/// When a node (by name) is found down; see [`Executor::gone`].
pub type Gone = dyn Fn(&str) -> futures::future::BoxFuture<'static, ()> + Send + Sync;

impl<E: Engine> Executor<'_, E> {
    /// Execute every action of the plan, in stages, handing each outcome to `report`
    /// as soon as it is known. Each node has its own `parallel` actions in flight: a
    /// stage over many nodes is bound by each engine's pace, not by one queue for all.
    /// Only the actions in flight exist as futures: a burst made every action's future
    /// at once (thousands, a few KB each), the largest part of drover's memory then.
    pub async fn execute(&self, actions: &[Action], mut report: impl FnMut(Outcome)) {
        let width = self.parallel.max(1);
        for stage in self.stages(actions) {
            let mut by_node: BTreeMap<&str, Vec<&Action>> = BTreeMap::new();
            for a in stage {
                by_node.entry(a.node.as_str()).or_default().push(a);
            }
            let per_node = by_node.into_values().map(|node| {
                futures::stream::iter(node)
                    .map(|a| self.one(a))
                    .buffer_unordered(width)
            });
            let mut results = futures::stream::select_all(per_node);
            while let Some(outcome) = results.next().await {
                report(outcome);
            }
        }
    }

    /// One action, abandoned once its node is found down meanwhile.
    async fn one(&self, a: &Action) -> Outcome {
        let gone = match self.gone {
            Some(gone) => gone(&a.node),
            None => Box::pin(std::future::pending()),
        };
        let started = Instant::now();
        tokio::select! {
            outcome = self.run(a) => outcome,
            () = gone => abandoned(a, started),
        }
    }

    /// Group actions: infrastructure, then removals of unwanted containers, then one
    /// stage per service in start order.
    fn stages<'b>(&self, actions: &'b [Action]) -> Vec<Vec<&'b Action>> {
        let order = self.project.start_order();
        let mut stages: Vec<Vec<&Action>> = vec![Vec::new(); order.len() + 2];
        for a in actions {
            let idx = match &a.target {
                Target::Network { .. } | Target::NetworkId { .. } | Target::Volume { .. } => 0,
                target => match target
                    .service()
                    .and_then(|s| order.iter().position(|o| *o == s))
                {
                    Some(i) => i + 2,
                    None => 1,
                },
            };
            stages[idx].push(a);
        }
        stages.retain(|s| !s.is_empty());
        stages
    }

    async fn run(&self, action: &Action) -> Outcome {
        let started = Instant::now();
        let result = match self.engine(&action.node) {
            Err(e) => Err(e),
            Ok(docker) => self.dispatch(docker, action).await,
        };
        let (id, error, volumes) = match result {
            Ok((id, volumes)) => (id, None, volumes),
            Err(e) => (
                action.target.container().map(str::to_string),
                Some(e),
                Volumes::Untouched,
            ),
        };
        Outcome {
            action: action.clone(),
            container: id.as_deref().map(short),
            id,
            duration: started.elapsed(),
            error,
            volumes,
            abandoned: false,
        }
    }

    /// Apply `action` on `docker`, its node's engine: the container it made or changed,
    /// and what became of a replaced container's volumes.
    async fn dispatch(
        &self,
        docker: &E,
        action: &Action,
    ) -> Result<(Option<String>, Volumes), String> {
        let plain = |r: Result<Option<String>, String>| r.map(|id| (id, Volumes::Untouched));
        let node = &action.node;
        match (&action.kind, &action.target) {
            (plan::Kind::CreateNetwork, Target::Network { key, name }) => {
                plain(self.create_network(docker, key, name).await)
            }
            (plan::Kind::RemoveNetwork, Target::NetworkId { id, name }) => {
                plain(self.remove_network(docker, id, name).await)
            }
            (plan::Kind::CreateVolume, Target::Volume { key, name }) => {
                plain(self.create_volume(docker, key, name).await)
            }
            (plan::Kind::Create, Target::Slot { service, slot, .. }) => {
                plain(self.create(docker, node, service, *slot, &[]).await)
            }
            (
                plan::Kind::Start { .. },
                Target::Slot {
                    container: Some(container),
                    ..
                },
            ) => plain(self.start(docker, container).await),
            (
                plan::Kind::Restart,
                Target::Slot {
                    container: Some(container),
                    ..
                },
            ) => plain(self.restart(docker, container).await),
            (
                plan::Kind::StartFirst { to },
                Target::Slot {
                    service,
                    slot,
                    container: Some(container),
                },
            ) => plain(
                self.start_first(docker, container, to, service, *slot)
                    .await,
            ),
            (
                plan::Kind::Recreate { to },
                Target::Slot {
                    service,
                    slot,
                    container: Some(container),
                },
            ) => {
                self.recreate(docker, node, to, service, *slot, container)
                    .await
            }
            (plan::Kind::Ambassador { spec, .. }, Target::Ambassador { container, .. }) => plain(
                self.ambassador(docker, node, spec, container.as_deref())
                    .await,
            ),
            (
                plan::Kind::Routes { routes },
                Target::Ambassador {
                    container: Some(container),
                    ..
                },
            ) => plain(self.push_routes(docker, container, routes).await),
            (
                plan::Kind::Remove,
                Target::Slot {
                    container: Some(container),
                    ..
                }
                | Target::Stray { container, .. },
            ) => self
                .remove(docker, container)
                .await
                .map(|(id, n)| (id, removed(n))),
            // The constructors never build these: a kind on a target it does not take.
            _ => Err(format!(
                "cannot {action}: not a target for {}",
                action.name()
            )),
        }
    }

    /// Move `container`'s name aside, then create and start the slot's new copy on `to`.
    async fn start_first(
        &self,
        docker: &E,
        container: &str,
        to: &str,
        service: &str,
        slot: u32,
    ) -> Result<Option<String>, String> {
        self.move_aside(docker, container).await?;
        self.create(self.engine(to)?, to, service, slot, &[]).await
    }

    fn engine(&self, node: &str) -> Result<&E, String> {
        self.nodes
            .get(node)
            .ok_or_else(|| format!("node {node} is not reachable"))
    }

    fn service(&self, name: &str) -> Result<&Service, String> {
        self.project
            .services
            .get(name)
            .ok_or_else(|| format!("service {name} is not in the project"))
    }

    /// Labels for a network or volume: the user's, ownership, and compose's own.
    fn infra_labels(
        &self,
        user: &std::collections::BTreeMap<String, String>,
        kind_label: &str,
        key: &str,
    ) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = user.clone().into_iter().collect();
        labels.insert(LABEL_PROJECT.into(), self.project.name.clone());
        labels.insert(
            "com.docker.compose.project".into(),
            self.project.name.clone(),
        );
        labels.insert(kind_label.into(), key.into());
        if let Some(t) = self.term {
            labels.insert(LABEL_TERM.into(), t.to_string());
        }
        labels
    }

    async fn create_network(
        &self,
        docker: &E,
        key: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let net = &self.project.networks[key];
        let labels = self.infra_labels(&net.labels, "com.docker.compose.network", key);
        let req = spec::network_request(net, name, labels);
        match docker.create_network(req).await {
            Ok(_) => Ok(None),
            // Created meanwhile (another pass, or a second drover): fine.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(format!("create network {name}: {}", e)),
        }
    }

    /// Remove one copy of a repeated network, by id. The engine refuses while a container
    /// is attached, which leaves that copy in place (and reported).
    async fn remove_network(
        &self,
        docker: &E,
        id: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        match docker.remove_network(id).await {
            Ok(()) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(format!(
                "remove duplicate network {name} ({}): {}",
                short(id),
                e
            )),
        }
    }

    async fn create_volume(
        &self,
        docker: &E,
        key: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let vol = &self.project.volumes[key];
        let labels = self.infra_labels(&vol.labels, "com.docker.compose.volume", key);
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: vol.driver.clone(),
            driver_opts: (!vol.driver_opts.is_empty()).then(|| spec::string_map(&vol.driver_opts)),
            labels: Some(labels),
            ..Default::default()
        };
        docker
            .create_volume(req)
            .await
            .map(|_| None)
            .map_err(|e| format!("create volume {name}: {e}"))
    }

    /// Create and start the slot's container on `node`, pulling the image when the engine
    /// lacks it. The container records its node and its placement generation.
    async fn create(
        &self,
        docker: &E,
        node: &str,
        service: &str,
        slot: u32,
        inherit: &[VolumeMount],
    ) -> Result<Option<String>, String> {
        let svc = self.service(service)?;
        let name = spec::container_name(self.project, svc, slot);
        let platform = spec::platform(svc);
        let mut body = spec::create_body(self.project, svc, slot);
        if let Some(address) = self
            .project
            .mesh
            .as_ref()
            .and_then(|m| m.addresses.get(node))
        {
            spec::publish_for_mesh(&mut body, svc, *address);
        }
        spec::inherit_volumes(&mut body, inherit);
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(LABEL_NODE.into(), node.into());
        labels.insert(LABEL_GENERATION.into(), generation().to_string());
        if let Some(t) = self.term {
            labels.insert(LABEL_TERM.into(), t.to_string());
        }
        let image = svc.reference();
        let policy = svc.options.pull_policy;
        if policy == PullPolicy::Always {
            self.pull(docker, &image, platform.as_deref()).await?;
        }
        if svc.digest.is_none() {
            // Record the digest the engine's copy of the image was pulled as, if it is there
            // (it is looked up again after a pull).
            let pulled = policy == PullPolicy::Always;
            self.label_digest((docker, node), &svc.image, &mut body, pulled)
                .await;
        }
        let id = match docker
            .create_container(&name, platform.as_deref(), body.clone())
            .await
        {
            Ok(id) => id,
            Err(e) if e.is_not_found() && e.message.contains("image") => {
                match policy {
                    PullPolicy::Never => {
                        return Err(format!(
                            "create {name}: image {image} is not on the engine and pull_policy is never",
                        ));
                    }
                    PullPolicy::Build => {
                        return Err(format!(
                            "create {name}: image {image} is not on the engine; drover runs images and \
                             does not build them (the service has build:), so build or load it there",
                        ));
                    }
                    PullPolicy::Always | PullPolicy::Missing | PullPolicy::Refresh(_) => {}
                }
                self.pull(docker, &image, platform.as_deref()).await?;
                if svc.digest.is_none() {
                    self.label_digest((docker, node), &svc.image, &mut body, true)
                        .await;
                }
                docker
                    .create_container(&name, platform.as_deref(), body)
                    .await
                    .map_err(|e| format!("create {name}: {e}"))?
            }
            Err(e) if e.is_conflict() => return self.existing(docker, &name).await,
            Err(e) => return Err(format!("create {name}: {}", e)),
        };
        for (net, endpoint) in spec::extra_networks(self.project, svc, slot) {
            let req = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint),
            };
            docker
                .connect_network(&net, req)
                .await
                .map_err(|e| format!("connect {name} to network {net}: {e}"))?;
        }
        self.start(docker, &id)
            .await
            .map_err(|e| format!("{name} created but not started: {e}"))?;
        Ok(Some(id))
    }

    /// Create and start a node's ambassador for one network (see `crate::mesh`), after
    /// removing the container it replaces. Its routes follow in a later pass, once it runs.
    async fn ambassador(
        &self,
        docker: &E,
        node: &str,
        a: &spec::Ambassador,
        replace: Option<&str>,
    ) -> Result<Option<String>, String> {
        let name = a.container_name(self.project);
        if let Some(old) = replace {
            match docker.remove_container(old, true).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(format!("remove the old ambassador {name}: {e}")),
            }
        }
        let mut body = spec::ambassador_body(self.project, a);
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(LABEL_NODE.into(), node.into());
        if let Some(t) = self.term {
            labels.insert(LABEL_TERM.into(), t.to_string());
        }
        let id = match docker.create_container(&name, None, body.clone()).await {
            Ok(id) => id,
            Err(e) if e.is_not_found() && e.message.contains("image") => {
                self.pull(docker, &a.image, None).await?;
                docker
                    .create_container(&name, None, body)
                    .await
                    .map_err(|e| format!("create {name}: {e}"))?
            }
            Err(e) if e.is_conflict() => return self.existing(docker, &name).await,
            Err(e) => return Err(format!("create {name}: {e}")),
        };
        self.start(docker, &id)
            .await
            .map_err(|e| format!("{name} created but not started: {e}"))?;
        Ok(Some(short(&id)))
    }

    /// Hand a running ambassador its routes: `drover ambassador --push` inside it.
    async fn push_routes(
        &self,
        docker: &E,
        container: &str,
        routes: &crate::mesh::Routes,
    ) -> Result<Option<String>, String> {
        let (code, output) = docker
            .exec(container, crate::mesh::push_command(routes))
            .await
            .map_err(|e| format!("push routes: {e}"))?;
        if code != 0 {
            let said = output.trim();
            return Err(format!("push routes: exit code {code}: {said}"));
        }
        Ok(Some(short(container)))
    }

    /// The name is taken: fine when the holder is ours (the next pass deals with it),
    /// an error naming the holder when it is not.
    async fn existing(&self, docker: &E, name: &str) -> Result<Option<String>, String> {
        let c = docker
            .inspect_container(name)
            .await
            .map_err(|e| format!("create {name}: name taken, and {e}"))?;
        let ours = c
            .config
            .and_then(|cfg| cfg.labels)
            .and_then(|l| l.get(LABEL_PROJECT).cloned())
            == Some(self.project.name.clone());
        if ours {
            Ok(c.id)
        } else {
            Err(format!(
                "create {name}: the name is taken by container {} which drover does not manage; \
                 remove or rename it",
                c.id.as_deref().map(short).unwrap_or_default()
            ))
        }
    }

    /// Label `body` with the registry digest of the node's copy of `image`, when it knows
    /// one: asked once per node and image in an execution, and again just after a pull
    /// (`pulled`). A failed lookup only leaves the label out; the next create asks again.
    async fn label_digest(
        &self,
        (docker, node): (&E, &str),
        image: &str,
        body: &mut ContainerCreateBody,
        pulled: bool,
    ) {
        let known = if pulled {
            None
        } else {
            self.digests.get(node, image)
        };
        let digest = match known {
            Some(digest) => digest,
            None => match docker.local_digest(image).await {
                Ok(digest) => {
                    self.digests.put(node, image, digest.clone());
                    digest
                }
                Err(_) => None,
            },
        };
        if let Some(digest) = digest {
            body.labels
                .get_or_insert_with(HashMap::new)
                .insert(LABEL_IMAGE_DIGEST.into(), digest);
        }
    }

    async fn pull(&self, docker: &E, image: &str, platform: Option<&str>) -> Result<(), String> {
        docker
            .pull(image, platform, self.credentials)
            .await
            .map_err(|e| format!("pull {image}: {e}"))
    }

    async fn start(&self, docker: &E, id: &str) -> Result<Option<String>, String> {
        match docker.start_container(id).await {
            Ok(()) => Ok(Some(id.to_string())),
            Err(e) if e.kind == Kind::NotModified => Ok(Some(id.to_string())),
            Err(e) => Err(format!("start {}: {}", short(id), e)),
        }
    }

    /// Restart in place: the container's stop signal and grace period, then start.
    async fn restart(&self, docker: &E, id: &str) -> Result<Option<String>, String> {
        docker
            .restart_container(id)
            .await
            .map(|_| Some(id.to_string()))
            .map_err(|e| format!("restart {}: {e}", short(id)))
    }

    /// Free the slot's name for its new copy (start-first): rename the running old copy to
    /// `{name}-old-{id}`. Its labels still say which slot it serves, so the planner removes
    /// it once the new copy runs, also after a restart of drover.
    async fn move_aside(&self, docker: &E, id: &str) -> Result<(), String> {
        let c = match docker.inspect_container(id).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(format!("inspect {}: {}", short(id), e)),
        };
        let current = c.name.unwrap_or_default();
        let base = current.trim_start_matches('/');
        if base.contains("-old-") {
            return Ok(());
        }
        let aside = format!("{base}-old-{}", short(id));
        match docker.rename_container(id, &aside).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(format!("rename {} to {aside}: {}", short(id), e)),
        }
    }

    /// Replace the slot's container. On the same node the new container takes over the old
    /// one's anonymous volumes, as compose does: the old one is stopped and its name moved
    /// aside, the new one created and started with them, and only then is the old one
    /// removed, so the volumes always belong to a container (a failure in between leaves the
    /// old copy, stopped, for the next pass to replace again). Nothing local can follow a
    /// replica to another node: there the old one goes with its volumes.
    async fn recreate(
        &self,
        docker: &E,
        node: &str,
        to: &str,
        service: &str,
        slot: u32,
        id: &str,
    ) -> Result<(Option<String>, Volumes), String> {
        let volumes = self.anonymous_volumes(docker, id).await?;
        if volumes.is_empty() || node != to {
            let (_, n) = self.discard(docker, id, &volumes).await?;
            let created = self
                .create(self.engine(to)?, to, service, slot, &[])
                .await?;
            return Ok((created, removed(n)));
        }
        self.stop(docker, id).await?;
        self.move_aside(docker, id).await?;
        let created = self.create(docker, to, service, slot, &volumes).await?;
        self.discard(docker, id, &volumes).await.map_err(|e| {
            format!("the new container runs with the volumes, but the old one stays: {e}")
        })?;
        Ok((created, Volumes::TakenOver(volumes.len())))
    }

    /// The container's anonymous volumes (none when it is gone).
    async fn anonymous_volumes(&self, docker: &E, id: &str) -> Result<Vec<VolumeMount>, String> {
        match docker.inspect_container(id).await {
            Ok(c) => Ok(observe::anonymous_volumes(
                c.mounts.as_deref().unwrap_or_default(),
            )),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(format!("inspect {}: {}", short(id), e)),
        }
    }

    /// Stop with the container's own stop signal and grace period.
    async fn stop(&self, docker: &E, id: &str) -> Result<(), String> {
        match docker.stop_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind, Kind::NotModified | Kind::NotFound) => Ok(()),
            Err(e) => Err(format!("stop {}: {}", short(id), e)),
        }
    }

    /// Stop, then remove the container and its anonymous volumes; returns how many of those
    /// went. The engine removes only the volumes it created for the container itself, not
    /// ones taken over from a predecessor, so those are removed by name; a volume another
    /// container still holds (the slot's successor) is refused by the engine and stays.
    async fn remove(&self, docker: &E, id: &str) -> Result<(Option<String>, usize), String> {
        let volumes = self.anonymous_volumes(docker, id).await?;
        self.discard(docker, id, &volumes).await
    }

    /// [`remove`](Self::remove) with the container's anonymous volumes already known.
    async fn discard(
        &self,
        docker: &E,
        id: &str,
        volumes: &[VolumeMount],
    ) -> Result<(Option<String>, usize), String> {
        self.stop(docker, id).await?;
        match docker.remove_container(id, true).await {
            Ok(()) => {}
            // Gone already, or already being removed.
            Err(e) if matches!(e.kind, Kind::NotFound | Kind::Conflict) => {}
            Err(e) => return Err(format!("remove {}: {}", short(id), e)),
        }
        let mut gone = 0;
        for v in volumes {
            match docker.remove_volume(&v.name).await {
                Ok(()) => gone += 1,
                Err(e) if e.is_not_found() => gone += 1,
                // In use: the slot's new container holds it.
                Err(e) if e.is_conflict() => {}
                Err(e) => {
                    return Err(format!(
                        "remove volume {} of {}: {}",
                        short(&v.name),
                        short(id),
                        e
                    ));
                }
            }
        }
        Ok((Some(id.to_string()), gone))
    }
}

fn removed(n: usize) -> Volumes {
    if n == 0 {
        Volumes::Untouched
    } else {
        Volumes::Removed(n)
    }
}

/// A placement generation: the clock in nanoseconds, never repeating within the process.
fn generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

fn short(id: &str) -> String {
    crate::observe::short_id(id).to_string()
}

#[cfg(test)]
mod tests;
