//! Plain mode's replicas for autoscaling: the project's running containers of a service
//! on every node that is up, counted and sampled through each node's engine.

use crate::autoscale::read::sample;
use crate::autoscale::{Reading, Replicas};
use crate::engine::{Client, Filters};
use crate::labels::{LABEL_PROJECT, LABEL_SERVICE};
use crate::nodes::NodeHandle;

pub struct NodeReplicas {
    pub project: String,
    pub nodes: Vec<NodeHandle>,
}

impl NodeReplicas {
    fn engines(&self) -> Vec<Client> {
        self.nodes
            .iter()
            .map(NodeHandle::status)
            .filter(|s| s.up)
            .filter_map(|s| s.engine)
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
            let (n, _) = sample(&self.engines(), &self.filters(service), false).await?;
            Ok(n)
        })
    }

    fn usage<'a>(&'a self, service: &'a str) -> Reading<'a, Vec<crate::engine::model::Usage>> {
        Box::pin(async move {
            let (_, usage) = sample(&self.engines(), &self.filters(service), true).await?;
            Ok(usage)
        })
    }
}
