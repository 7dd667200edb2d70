//! The narrow interface Swarm mode talks to its manager through ([`SwarmEngine`]), and its
//! implementation on a bollard client ([`Manager`]). Plain values in, [`super::model`]
//! types out, the one [`EngineError`] back.
//!
//! Errors keep the client's own error, so [`connect::explain`], the one place that words
//! engine errors for people, reads its causes (refused, TLS, timed out) as for plain mode.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions,
    ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::api::Answer;

use super::credentials::RegistryAuth;
use super::error::EngineError;
use super::images::engine_auth;
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
    /// Create a service; `auth`: the login for its image's registry, handed to the nodes
    /// that pull it (as `docker stack deploy --with-registry-auth` does).
    fn create_service(&self, spec: ServiceSpec, auth: Option<RegistryAuth>) -> Answer<'_, ()>;
    /// Replace the spec of service `id`, which must still be at object version `version`;
    /// `auth` as for [`SwarmEngine::create_service`] (none: the service keeps its own).
    fn update_service<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        spec: ServiceSpec,
        auth: Option<RegistryAuth>,
    ) -> Answer<'a, ()>;
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

/// The Swarm manager behind the connected client `docker`.
pub fn manager(docker: &Docker) -> SwarmHandle {
    Arc::new(Manager {
        docker: docker.clone(),
    })
}

/// A Swarm manager reached through bollard.
pub struct Manager {
    docker: Docker,
}

impl Manager {
    /// The error, keeping the client's own for [`connect::explain`] to word.
    fn error(&self, e: BollardError) -> EngineError {
        EngineError::from(e)
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

    fn create_service(&self, spec: ServiceSpec, auth: Option<RegistryAuth>) -> Answer<'_, ()> {
        Box::pin(async move {
            self.docker
                .create_service(spec, auth.as_ref().map(engine_auth))
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
        auth: Option<RegistryAuth>,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let opts = UpdateServiceOptions {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..Default::default()
            };
            self.docker
                .update_service(id, spec, opts, auth.as_ref().map(engine_auth))
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

/// An in-memory Swarm manager for unit tests: it lists what a test put into its
/// [`fake::State`], records every call, and fails every call with
/// [`fake::State::fail`] when set.
#[cfg(test)]
pub mod fake {
    use std::sync::Mutex;

    use super::*;

    /// ` as USER` when a login is passed (never its secret).
    fn login(auth: &Option<RegistryAuth>) -> String {
        auth.as_ref()
            .map(|a| format!(" as {}", a.username))
            .unwrap_or_default()
    }

    #[derive(Debug, Default)]
    pub struct State {
        pub info: SwarmInfo,
        pub services: Vec<Service>,
        pub tasks: Vec<Task>,
        pub nodes: Vec<Node>,
        pub networks: Vec<Network>,
        pub secrets: Vec<Secret>,
        pub configs: Vec<Config>,
        /// The calls made, as `verb [argument]`.
        pub calls: Vec<String>,
        pub fail: Option<EngineError>,
    }

    #[derive(Debug, Default)]
    pub struct FakeSwarm {
        pub state: Mutex<State>,
    }

    impl FakeSwarm {
        pub fn new(state: State) -> FakeSwarm {
            FakeSwarm {
                state: Mutex::new(state),
            }
        }

        pub fn calls(&self) -> Vec<String> {
            self.state.lock().unwrap().calls.clone()
        }

        /// Record `call`; then the configured failure, or `answer` applied to the state.
        fn call<T: Send + 'static>(
            &self,
            call: String,
            answer: impl FnOnce(&mut State) -> T,
        ) -> Answer<'_, T> {
            let mut s = self.state.lock().unwrap();
            s.calls.push(call);
            let out = match s.fail.clone() {
                Some(e) => Err(e),
                None => Ok(answer(&mut s)),
            };
            Box::pin(async move { out })
        }
    }

    impl SwarmEngine for FakeSwarm {
        fn swarm_info(&self) -> Answer<'_, SwarmInfo> {
            self.call("info".into(), |s| s.info.clone())
        }

        fn list_services<'a>(&'a self, prefix: Option<&'a str>) -> Answer<'a, Vec<Service>> {
            let call = format!("list_services {}", prefix.unwrap_or("*"));
            self.call(call, |s| match prefix {
                Some(p) => s
                    .services
                    .iter()
                    .filter(|x| named_with(x, p))
                    .cloned()
                    .collect(),
                None => s.services.clone(),
            })
        }

        fn list_tasks<'a>(&'a self, service_ids: &'a [String]) -> Answer<'a, Vec<Task>> {
            let call = format!("list_tasks {}", service_ids.join(","));
            self.call(call, |s| {
                s.tasks
                    .iter()
                    .filter(|t| {
                        t.service_id
                            .as_ref()
                            .is_some_and(|id| service_ids.contains(id))
                    })
                    .cloned()
                    .collect()
            })
        }

        fn list_nodes(&self) -> Answer<'_, Vec<Node>> {
            self.call("list_nodes".into(), |s| s.nodes.clone())
        }

        fn list_networks(&self) -> Answer<'_, Vec<Network>> {
            self.call("list_networks".into(), |s| s.networks.clone())
        }

        fn list_secrets(&self) -> Answer<'_, Vec<Secret>> {
            self.call("list_secrets".into(), |s| s.secrets.clone())
        }

        fn list_configs(&self) -> Answer<'_, Vec<Config>> {
            self.call("list_configs".into(), |s| s.configs.clone())
        }

        fn create_service(&self, spec: ServiceSpec, auth: Option<RegistryAuth>) -> Answer<'_, ()> {
            let call = format!(
                "create_service {}{}",
                spec.name.unwrap_or_default(),
                login(&auth)
            );
            self.call(call, |_| ())
        }

        fn update_service<'a>(
            &'a self,
            id: &'a str,
            version: u64,
            _spec: ServiceSpec,
            auth: Option<RegistryAuth>,
        ) -> Answer<'a, ()> {
            self.call(
                format!("update_service {id} {version}{}", login(&auth)),
                |_| (),
            )
        }

        fn delete_service<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
            self.call(format!("delete_service {id}"), |_| ())
        }

        fn create_secret(&self, spec: SecretSpec) -> Answer<'_, String> {
            let name = spec.name.unwrap_or_default();
            self.call(format!("create_secret {name}"), |_| format!("id-{name}"))
        }

        fn delete_secret<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
            self.call(format!("delete_secret {id}"), |_| ())
        }

        fn create_config(&self, spec: ConfigSpec) -> Answer<'_, String> {
            let name = spec.name.unwrap_or_default();
            self.call(format!("create_config {name}"), |_| format!("id-{name}"))
        }

        fn delete_config<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
            self.call(format!("delete_config {id}"), |_| ())
        }

        fn create_network(&self, req: NetworkCreateRequest) -> Answer<'_, ()> {
            self.call(format!("create_network {}", req.name), |_| ())
        }

        fn remove_network<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
            self.call(format!("remove_network {id}"), |_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::connect::{self, ConnectArgs, Endpoint};

    fn service(name: &str) -> Service {
        Service {
            id: Some(format!("id-{name}")),
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_name_filter_keeps_only_names_that_start_with_the_prefix() {
        assert!(named_with(&service("p_web"), "p_"));
        assert!(!named_with(&service("other_p_web"), "p_"));
        assert!(!named_with(&Service::default(), "p_"));
        let opts = name_filter("p_");
        assert_eq!(opts.filters.unwrap()["name"], vec!["p_".to_string()]);
    }

    #[tokio::test]
    async fn a_manager_that_does_not_answer_is_worded_as_connect_words_it() {
        let args = ConnectArgs {
            host: Some("tcp://127.0.0.1:1".into()),
            ..Default::default()
        };
        let endpoint = Endpoint::resolve(&args, &HashMap::new()).unwrap();
        let docker =
            Docker::connect_with_http("tcp://127.0.0.1:1", 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let e = manager(&docker).list_nodes().await.unwrap_err();
        assert_eq!(e.status(), None);
        assert_eq!(
            connect::explain(&endpoint, &e),
            "cannot reach the Docker engine at tcp://127.0.0.1:1: connection refused"
        );
    }
}
