//! The narrow interface Swarm mode talks to its manager through ([`SwarmEngine`]), and its
//! implementation on a bollard client ([`Manager`]). Plain values in, [`super::model`]
//! types out, the one [`EngineError`] back.
//!
//! A failure to get an answer at all (unreachable, timed out, an unreadable answer) is
//! worded for people here, where its cause chain is at hand: its message is already the
//! line [`connect::explain`] gives. An engine's answer keeps the engine's own message;
//! [`connect::explain_error`] words both.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions,
    ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::api::Answer;
use super::connect::{self, Endpoint};
use super::error::EngineError;
use super::model::{
    Config, ConfigSpec, Network, NetworkCreateRequest, Node, Secret, SecretSpec, Service,
    ServiceSpec, SwarmInfo, Task,
};

/// The engine calls Swarm mode makes.
pub trait SwarmEngine: Send + Sync {
    /// The engine's place in a swarm (the `Swarm` part of `/info`).
    fn swarm_info(&self) -> Answer<'_, SwarmInfo>;
    /// Services whose name starts with `prefix`; every service with `None`.
    fn list_services<'a>(&'a self, prefix: Option<&'a str>) -> Answer<'a, Vec<Service>>;
    /// The tasks of the services with these ids.
    fn list_tasks<'a>(&'a self, service_ids: &'a [String]) -> Answer<'a, Vec<Task>>;
    fn list_nodes(&self) -> Answer<'_, Vec<Node>>;
    fn list_networks(&self) -> Answer<'_, Vec<Network>>;
    fn list_secrets(&self) -> Answer<'_, Vec<Secret>>;
    fn list_configs(&self) -> Answer<'_, Vec<Config>>;
    fn create_service(&self, spec: ServiceSpec) -> Answer<'_, ()>;
    /// Replace the spec of service `id`, which must still be at object version `version`.
    fn update_service<'a>(&'a self, id: &'a str, version: u64, spec: ServiceSpec)
    -> Answer<'a, ()>;
    fn delete_service<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    /// Create a secret; returns its id.
    fn create_secret(&self, spec: SecretSpec) -> Answer<'_, String>;
    fn delete_secret<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    /// Create a config; returns its id.
    fn create_config(&self, spec: ConfigSpec) -> Answer<'_, String>;
    fn delete_config<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()>;
    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
}

/// What Swarm mode holds: a manager behind the interface, cheap to clone.
pub type SwarmHandle = Arc<dyn SwarmEngine>;

/// The Swarm manager at `endpoint`, through the connected client `docker`.
pub fn manager(docker: &Docker, endpoint: &Endpoint) -> SwarmHandle {
    Arc::new(Manager {
        docker: docker.clone(),
        endpoint: endpoint.clone(),
    })
}

/// A Swarm manager reached through bollard.
pub struct Manager {
    docker: Docker,
    /// Where the engine is, to word failures that got no answer.
    endpoint: Endpoint,
}

impl Manager {
    fn error(&self, e: BollardError) -> EngineError {
        let mut out = EngineError::from(&e);
        if out.status().is_none() {
            out.message = connect::explain(&self.endpoint, &e);
        }
        out
    }
}

/// A name filter as the engine applies it: a prefix on recent engines, anywhere in the
/// name on some.
fn name_filter(prefix: &str) -> ListServicesOptions {
    ListServicesOptions {
        filters: Some(HashMap::from([(
            "name".to_string(),
            vec![prefix.to_string()],
        )])),
        status: None,
    }
}

fn named_with(s: &Service, prefix: &str) -> bool {
    s.spec
        .as_ref()
        .and_then(|spec| spec.name.as_deref())
        .is_some_and(|n| n.starts_with(prefix))
}

impl SwarmEngine for Manager {
    fn swarm_info(&self) -> Answer<'_, SwarmInfo> {
        Box::pin(async move {
            let info = self.docker.info().await.map_err(|e| self.error(e))?;
            Ok(info.swarm.unwrap_or_default())
        })
    }

    fn list_services<'a>(&'a self, prefix: Option<&'a str>) -> Answer<'a, Vec<Service>> {
        Box::pin(async move {
            let listed = self
                .docker
                .list_services(prefix.map(name_filter))
                .await
                .map_err(|e| self.error(e))?;
            Ok(match prefix {
                // The engine's filter may match anywhere in the name: keep the prefix.
                Some(p) => listed.into_iter().filter(|s| named_with(s, p)).collect(),
                None => listed,
            })
        })
    }

    fn list_tasks<'a>(&'a self, service_ids: &'a [String]) -> Answer<'a, Vec<Task>> {
        Box::pin(async move {
            let opts = ListTasksOptions {
                filters: Some(HashMap::from([(
                    "service".to_string(),
                    service_ids.to_vec(),
                )])),
            };
            self.docker
                .list_tasks(Some(opts))
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn list_nodes(&self) -> Answer<'_, Vec<Node>> {
        Box::pin(async move {
            self.docker
                .list_nodes(None::<ListNodesOptions>)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn list_networks(&self) -> Answer<'_, Vec<Network>> {
        Box::pin(async move {
            self.docker
                .list_networks(None::<ListNetworksOptions>)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn list_secrets(&self) -> Answer<'_, Vec<Secret>> {
        Box::pin(async move {
            self.docker
                .list_secrets(None::<ListSecretsOptions>)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn list_configs(&self) -> Answer<'_, Vec<Config>> {
        Box::pin(async move {
            self.docker
                .list_configs(None::<ListConfigsOptions>)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn create_service(&self, spec: ServiceSpec) -> Answer<'_, ()> {
        Box::pin(async move {
            self.docker
                .create_service(spec, None)
                .await
                .map(|_| ())
                .map_err(|e| self.error(e))
        })
    }

    fn update_service<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        spec: ServiceSpec,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let opts = UpdateServiceOptions {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..Default::default()
            };
            self.docker
                .update_service(id, spec, opts, None)
                .await
                .map(|_| ())
                .map_err(|e| self.error(e))
        })
    }

    fn delete_service<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            self.docker
                .delete_service(id)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn create_secret(&self, spec: SecretSpec) -> Answer<'_, String> {
        Box::pin(async move {
            self.docker
                .create_secret(spec)
                .await
                .map(|r| r.id)
                .map_err(|e| self.error(e))
        })
    }

    fn delete_secret<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            self.docker
                .delete_secret(id)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn create_config(&self, spec: ConfigSpec) -> Answer<'_, String> {
        Box::pin(async move {
            self.docker
                .create_config(spec)
                .await
                .map(|r| r.id)
                .map_err(|e| self.error(e))
        })
    }

    fn delete_config<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            self.docker
                .delete_config(id)
                .await
                .map_err(|e| self.error(e))
        })
    }

    fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
        Box::pin(async move {
            self.docker
                .create_network(req)
                .await
                .map(|_| ())
                .map_err(|e| self.error(e))
        })
    }

    fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            self.docker
                .remove_network(id)
                .await
                .map_err(|e| self.error(e))
        })
    }
}
