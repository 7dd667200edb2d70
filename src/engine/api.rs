//! The narrow interface the executor talks to engines through ([`Engine`]), and its
//! implementation on a bollard client. A fake implementation lets executor scenarios be
//! unit-tested by the exact calls they make; the real one is proven by the integration
//! tests against real engines.
//!
//! Every method returns the one [`EngineError`]; calls that last as long as a container's
//! stop grace period (stop, restart) get a long timeout of their own.

use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RemoveVolumeOptions, RenameContainerOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};

use super::error::EngineError;
use super::images;

/// A stop or restart waits out the container's grace period: this is the longest allowed.
const SLOW: Duration = Duration::from_secs(600);

/// What an engine call returns.
pub type Answer<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// The engine calls that apply a plan.
pub trait Engine: Send + Sync {
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
    /// Remove (forced) with the anonymous volumes the engine made for it.
    fn remove_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn remove_volume<'a>(&'a self, name: &'a str) -> Answer<'a, ()>;
    fn create_volume(&self, req: VolumeCreateRequest) -> Answer<'_, ()>;
    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()>;
    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn connect_network<'a>(&'a self, net: &'a str, req: NetworkConnectRequest) -> Answer<'a, ()>;
    fn pull<'a>(&'a self, image: &'a str, platform: Option<&'a str>) -> Answer<'a, ()>;
}

impl Engine for Docker {
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

    fn remove_container<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            let opts = RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            };
            Ok(Docker::remove_container(self, id, Some(opts)).await?)
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

    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move { Ok(Docker::remove_network(self, id).await?) })
    }

    fn connect_network<'a>(&'a self, net: &'a str, req: NetworkConnectRequest) -> Answer<'a, ()> {
        Box::pin(async move { Ok(Docker::connect_network(self, net, req).await?) })
    }

    fn pull<'a>(&'a self, image: &'a str, platform: Option<&'a str>) -> Answer<'a, ()> {
        Box::pin(images::pull(self, image, platform))
    }
}
