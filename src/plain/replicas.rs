//! Plain mode's replicas for autoscaling: the project's running containers of a service
//! on every node that is up, counted and sampled through each node's engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::autoscale::read::sample;
use crate::autoscale::{Reading, Replicas};
use crate::engine::{Client, Filters};
use crate::labels::{LABEL_PROJECT, LABEL_SERVICE};
use crate::nodes::{NodeHandle, NodeStatus};

/// The nodes of plain mode, shared with autoscaling (reloads add and remove nodes).
#[derive(Clone, Default)]
pub struct SharedNodes(Arc<Mutex<Vec<NodeHandle>>>);

impl SharedNodes {
    pub fn new(nodes: Vec<NodeHandle>) -> SharedNodes {
        SharedNodes(Arc::new(Mutex::new(nodes)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeHandle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct NodeReplicas {
    pub project: String,
    pub nodes: SharedNodes,
}

/// How long a node that has not tried to connect yet is waited for (drover's start).
const FIRST_CONNECT: Duration = Duration::from_secs(4);

impl NodeReplicas {
    /// The engines of the nodes that are up; a node still making its first connection
    /// is waited for a little (at start the monitors may not have connected yet).
    async fn engines(&self) -> Vec<Client> {
        let nodes = self.nodes.lock().clone();
        let each = nodes.iter().map(|n| {
            let status = n.status();
            let connected = n.engine();
            async move {
                match status {
                    NodeStatus {
                        up: true,
                        engine: Some(e),
                        ..
                    } => Some(e),
                    NodeStatus {
                        attempted: false, ..
                    } => tokio::time::timeout(FIRST_CONNECT, connected)
                        .await
                        .ok()
                        .flatten(),
                    _ => None,
                }
            }
        });
        futures::future::join_all(each)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn filters(&self, service: &str) -> Filters {
        Filters::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_PROJECT}={}", self.project),
                format!("{LABEL_SERVICE}={service}"),
            ],
        )])
    }
}

impl Replicas for NodeReplicas {
    fn count<'a>(&'a self, service: &'a str) -> Reading<'a, u32> {
        Box::pin(async move {
            let (n, _) = sample(&self.engines().await, &self.filters(service), false).await?;
            Ok(n)
        })
    }

    fn usage<'a>(&'a self, service: &'a str) -> Reading<'a, Vec<crate::engine::model::Usage>> {
        Box::pin(async move {
            let (_, usage) = sample(&self.engines().await, &self.filters(service), true).await?;
            Ok(usage)
        })
    }
}
