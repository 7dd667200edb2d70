//! The narrow interface drover talks to engines through ([`Engine`]), the handle the rest
//! of drover holds ([`Client`]), and the implementation on a bollard client. A fake
//! implementation lets scenarios be unit-tested by the exact calls they make; the real one
//! is proven by the integration tests against real engines.
//!
//! Every method is one engine call with plain-value parameters and returns the one
//! [`EngineError`]; calls that last as long as a container's stop grace period (stop,
//! restart) get a long timeout of their own.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerUpdateBody,
    EventMessage, ImageSummary, Network, NetworkConnectRequest, NetworkCreateRequest, SystemInfo,
    Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, ListImagesOptions,
    ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
    RenameContainerOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures::{Stream, StreamExt};

use super::credentials::Credentials;
use super::error::EngineError;
use super::{digests, images};

/// A stop or restart waits out the container's grace period: this is the longest allowed.
const SLOW: Duration = Duration::from_secs(600);

/// The most output an exec keeps.
const EXEC_OUTPUT: usize = 4096;

/// What an engine call returns.
pub type Answer<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// List filters as the Engine API takes them: `label` -> [`key=value`, `key`], `name` -> ...
pub type Filters = HashMap<String, Vec<String>>;

/// An engine's event stream: it ends when the engine closes it (or at `until`).
pub type Events = Pin<Box<dyn Stream<Item = Result<EventMessage, EngineError>> + Send>>;

/// The engine calls drover makes.
pub trait Engine: Send + Sync {
    /// Every container, running or not, that matches `filters`.
    fn list_containers(&self, filters: Filters) -> Answer<'_, Vec<ContainerSummary>>;
    /// Create a container named `name`; returns its id.
    fn create_container<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a str>,
        body: ContainerCreateBody,
    ) -> Answer<'a, String>;
    fn inspect_container<'a>(&'a self, id: &'a str) -> Answer<'a, ContainerInspectResponse>;
    fn start_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    /// Stop with the container's own stop signal and grace period.
    fn stop_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn restart_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> Answer<'a, ()>;
    /// Remove (forced), with the anonymous volumes the engine made for it when `volumes`.
    fn remove_container<'a>(&'a self, id: &'a str, volumes: bool) -> Answer<'a, ()>;
    /// Change a container's settings in place (its restart policy, resources).
    fn update_container<'a>(&'a self, id: &'a str, body: ContainerUpdateBody) -> Answer<'a, ()>;
    fn list_volumes(&self, filters: Filters) -> Answer<'_, Vec<Volume>>;
    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()>;
    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()>;
    fn list_networks(&self, filters: Filters) -> Answer<'_, Vec<Network>>;
    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()>;
    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn connect_network<'a>(&'a self, net: &'a str, req: NetworkConnectRequest) -> Answer<'a, ()>;
    /// Run `cmd` in the running container `id` and wait for it: its exit code and its
    /// output (stdout and stderr, at most a few KB).
    fn exec<'a>(&'a self, id: &'a str, cmd: Vec<String>) -> Answer<'a, (i64, String)>;
    /// The images on the engine (tagged or not, not the intermediate layers).
    fn list_images(&self) -> Answer<'_, Vec<ImageSummary>>;
    /// Pull `image` (a reference without a tag means `latest`, a digest wins over a tag),
    /// logged in with what `credentials` has for its registry; see [`images::pull`].
    fn pull<'a>(
        &'a self,
        image: &'a str,
        platform: Option<&'a str>,
        credentials: &'a Credentials,
    ) -> Answer<'a, ()>;
    /// The digest the registry holds for `image`'s tag, asked through the engine without
    /// pulling; see [`digests::registry_digest`].
    fn registry_digest<'a>(
        &'a self,
        image: &'a str,
        credentials: &'a Credentials,
    ) -> Answer<'a, String>;
    /// The registry digest of the engine's copy of `image`, if it has one; see
    /// [`digests::local_digest`].
    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>>;
    /// One sample of a running container's CPU and memory use (`/stats`, not streamed:
    /// the engine takes about a second to answer).
    fn usage<'a>(&'a self, id: &'a str) -> Answer<'a, super::model::Usage>;
    /// `/_ping`: the engine answers.
    fn ping(&self) -> Answer<'_, ()>;
    /// `/info`: the engine's id, labels, Swarm state.
    fn info(&self) -> Answer<'_, SystemInfo>;
    /// The events matching `filters`, from `since` (the engine's `secs.nanos`; none: from
    /// now) until `until` (none: for as long as the stream stays open).
    fn events(&self, since: Option<String>, until: Option<String>, filters: Filters) -> Events;
}

/// No filters are sent as none at all.
fn given(filters: Filters) -> Option<Filters> {
    (!filters.is_empty()).then_some(filters)
}

/// The handle to one engine the rest of drover holds: cheap to clone, one implementation
/// behind it (the bollard client, or a fake in unit tests).
#[derive(Clone)]
pub struct Client(Arc<dyn Engine>);

impl Client {
    pub fn new(engine: impl Engine + 'static) -> Client {
        Client(Arc::new(engine))
    }
}

impl From<Docker> for Client {
    fn from(docker: Docker) -> Client {
        Client::new(docker)
    }
}

/// A shared engine, kept by the caller too (a test reads the fake it hands out).
impl<E: Engine + 'static> From<Arc<E>> for Client {
    fn from(engine: Arc<E>) -> Client {
        Client(engine)
    }
}

impl Deref for Client {
    type Target = dyn Engine;

    fn deref(&self) -> &(dyn Engine + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("engine::Client")
    }
}

impl Engine for Client {
    fn list_containers(&self, filters: Filters) -> Answer<'_, Vec<ContainerSummary>> {
        self.0.list_containers(filters)
    }
    fn create_container<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a str>,
        body: ContainerCreateBody,
    ) -> Answer<'a, String> {
        self.0.create_container(name, platform, body)
    }
    fn inspect_container<'a>(&'a self, id: &'a str) -> Answer<'a, ContainerInspectResponse> {
        self.0.inspect_container(id)
    }
    fn start_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        self.0.start_container(id)
    }
    fn stop_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        self.0.stop_container(id)
    }
    fn restart_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        self.0.restart_container(id)
    }
    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> Answer<'a, ()> {
        self.0.rename_container(id, name)
    }
    fn remove_container<'a>(&'a self, id: &'a str, volumes: bool) -> Answer<'a, ()> {
        self.0.remove_container(id, volumes)
    }
    fn update_container<'a>(&'a self, id: &'a str, body: ContainerUpdateBody) -> Answer<'a, ()> {
        self.0.update_container(id, body)
    }
    fn list_volumes(&self, filters: Filters) -> Answer<'_, Vec<Volume>> {
        self.0.list_volumes(filters)
    }
    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()> {
        self.0.remove_volume(name)
    }
    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()> {
        self.0.create_volume(req)
    }
    fn list_networks(&self, filters: Filters) -> Answer<'_, Vec<Network>> {
        self.0.list_networks(filters)
    }
    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
        self.0.create_network(req)
    }
    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        self.0.remove_network(id)
    }
    fn connect_network<'a>(&'a self, net: &'a str, req: NetworkConnectRequest) -> Answer<'a, ()> {
        self.0.connect_network(net, req)
    }
    fn exec<'a>(&'a self, id: &'a str, cmd: Vec<String>) -> Answer<'a, (i64, String)> {
        self.0.exec(id, cmd)
    }
    fn list_images(&self) -> Answer<'_, Vec<ImageSummary>> {
        self.0.list_images()
    }
    fn pull<'a>(
        &'a self,
        image: &'a str,
        platform: Option<&'a str>,
        credentials: &'a Credentials,
    ) -> Answer<'a, ()> {
        self.0.pull(image, platform, credentials)
    }
    fn registry_digest<'a>(
        &'a self,
        image: &'a str,
        credentials: &'a Credentials,
    ) -> Answer<'a, String> {
        self.0.registry_digest(image, credentials)
    }
    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>> {
        self.0.local_digest(image)
    }
    fn ping(&self) -> Answer<'_, ()> {
        self.0.ping()
    }
    fn info(&self) -> Answer<'_, SystemInfo> {
        self.0.info()
    }
    fn usage<'a>(&'a self, id: &'a str) -> Answer<'a, super::model::Usage> {
        self.0.usage(id)
    }
    fn events(&self, since: Option<String>, until: Option<String>, filters: Filters) -> Events {
        self.0.events(since, until, filters)
    }
}

impl Engine for Docker {
    fn list_containers(&self, filters: Filters) -> Answer<'_, Vec<ContainerSummary>> {
        Box::pin(async move {
            let opts = ListContainersOptions {
                all: true,
                filters: given(filters),
                ..Default::default()
            };
            Ok(Docker::list_containers(self, Some(opts)).await?)
        })
    }

    fn create_container<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a str>,
        body: ContainerCreateBody,
    ) -> Answer<'a, String> {
        Box::pin(async move {
            let opts = CreateContainerOptions {
                name: Some(name.to_string()),
                platform: platform.unwrap_or_default().to_string(),
            };
            Ok(Docker::create_container(self, Some(opts), body).await?.id)
        })
    }

    fn inspect_container<'a>(&'a self, id: &'a str) -> Answer<'a, ContainerInspectResponse> {
        Box::pin(async move { Ok(Docker::inspect_container(self, id, None).await?) })
    }

    fn start_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            Ok(Docker::start_container(self, id, None::<StartContainerOptions>).await?)
        })
    }

    fn stop_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            let slow = self.clone().with_timeout(SLOW);
            Ok(slow
                .stop_container(id, None::<StopContainerOptions>)
                .await?)
        })
    }

    fn restart_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            let slow = self.clone().with_timeout(SLOW);
            Ok(slow
                .restart_container(id, None::<RestartContainerOptions>)
                .await?)
        })
    }

    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            let opts = RenameContainerOptions {
                name: name.to_string(),
            };
            Ok(Docker::rename_container(self, id, opts).await?)
        })
    }

    fn remove_container<'a>(&'a self, id: &'a str, volumes: bool) -> Answer<'a, ()> {
        Box::pin(async move {
            let opts = RemoveContainerOptions {
                force: true,
                v: volumes,
                link: false,
            };
            Ok(Docker::remove_container(self, id, Some(opts)).await?)
        })
    }

    fn update_container<'a>(&'a self, id: &'a str, body: ContainerUpdateBody) -> Answer<'a, ()> {
        Box::pin(async move { Ok(Docker::update_container(self, id, body).await?) })
    }

    fn list_volumes(&self, filters: Filters) -> Answer<'_, Vec<Volume>> {
        Box::pin(async move {
            let opts = ListVolumesOptions {
                filters: given(filters),
            };
            let listed = Docker::list_volumes(self, Some(opts)).await?;
            Ok(listed.volumes.unwrap_or_default())
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            Ok(Docker::remove_volume(self, name, None::<RemoveVolumeOptions>).await?)
        })
    }

    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()> {
        Box::pin(async move {
            Docker::create_volume(self, req).await?;
            Ok(())
        })
    }

    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
        Box::pin(async move {
            Docker::create_network(self, req).await?;
            Ok(())
        })
    }

    fn list_networks(&self, filters: Filters) -> Answer<'_, Vec<Network>> {
        Box::pin(async move {
            let opts = ListNetworksOptions {
                filters: given(filters),
            };
            Ok(Docker::list_networks(self, Some(opts)).await?)
        })
    }

    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move { Ok(Docker::remove_network(self, id).await?) })
    }

    fn connect_network<'a>(&'a self, net: &'a str, req: NetworkConnectRequest) -> Answer<'a, ()> {
        Box::pin(async move { Ok(Docker::connect_network(self, net, req).await?) })
    }

    fn exec<'a>(&'a self, id: &'a str, cmd: Vec<String>) -> Answer<'a, (i64, String)> {
        Box::pin(async move {
            let config = bollard::models::ExecConfig {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = Docker::create_exec(self, id, config).await?.id;
            let mut output = String::new();
            if let bollard::exec::StartExecResults::Attached {
                output: mut out, ..
            } = Docker::start_exec(self, &exec, None).await?
            {
                while let Some(chunk) = out.next().await {
                    if output.len() < EXEC_OUTPUT {
                        output.push_str(&chunk?.to_string());
                    }
                }
            }
            let done = Docker::inspect_exec(self, &exec).await?;
            Ok((done.exit_code.unwrap_or(-1), output))
        })
    }

    fn list_images(&self) -> Answer<'_, Vec<ImageSummary>> {
        Box::pin(async move { Ok(Docker::list_images(self, None::<ListImagesOptions>).await?) })
    }

    fn pull<'a>(
        &'a self,
        image: &'a str,
        platform: Option<&'a str>,
        credentials: &'a Credentials,
    ) -> Answer<'a, ()> {
        Box::pin(images::pull(self, image, platform, credentials))
    }

    fn registry_digest<'a>(
        &'a self,
        image: &'a str,
        credentials: &'a Credentials,
    ) -> Answer<'a, String> {
        Box::pin(digests::registry_digest(self, image, credentials))
    }

    fn local_digest<'a>(&'a self, image: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(digests::local_digest(self, image))
    }

    fn ping(&self) -> Answer<'_, ()> {
        Box::pin(async move {
            Docker::ping(self).await?;
            Ok(())
        })
    }

    fn info(&self) -> Answer<'_, SystemInfo> {
        Box::pin(async move { Ok(Docker::info(self).await?) })
    }

    fn usage<'a>(&'a self, id: &'a str) -> Answer<'a, super::model::Usage> {
        Box::pin(async move {
            let opts = bollard::query_parameters::StatsOptions {
                stream: false,
                one_shot: false,
            };
            let mut answers = Box::pin(Docker::stats(self, id, Some(opts)));
            match answers.next().await {
                Some(stats) => Ok(super::model::Usage::from_stats(&stats?)),
                None => Err(EngineError::new(
                    super::error::Kind::Other,
                    format!("the engine sent no stats for container {id}"),
                )),
            }
        })
    }

    fn events(&self, since: Option<String>, until: Option<String>, filters: Filters) -> Events {
        let opts = EventsOptions {
            since,
            until,
            filters: given(filters),
        };
        Box::pin(Docker::events(self, Some(opts)).map(|r| r.map_err(EngineError::from)))
    }
}
