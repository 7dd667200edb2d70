//! Swarm mode's replicas for autoscaling: the count is the service's replica count in
//! Swarm (what a restarted drover starts from); CPU and memory are sampled from the
//! service's task containers the manager's own engine runs (Swarm's API has no stats:
//! on a swarm of several nodes the average is over the manager's tasks only).

use crate::autoscale::read::sample;
use crate::autoscale::{Reading, Replicas};
use crate::engine::model::Usage;
use crate::engine::{Client, Filters, SwarmHandle};

use super::convert::service_name;

pub struct SwarmReplicas {
    pub project: String,
    pub swarm: SwarmHandle,
    pub manager: Client,
}

impl Replicas for SwarmReplicas {
    fn count<'a>(&'a self, service: &'a str) -> Reading<'a, u32> {
        Box::pin(async move {
            let name = service_name(&self.project, service);
            let services = self
                .swarm
                .list_services(Some(&name))
                .await
                .map_err(|e| format!("cannot list the swarm's services: {e}"))?;
            let found = services
                .iter()
                .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()))
                .ok_or_else(|| format!("no service {name} in the swarm yet"))?;
            found
                .spec
                .as_ref()
                .and_then(|s| s.mode.as_ref())
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas)
                .map(|n| n.max(0) as u32)
                .ok_or_else(|| format!("service {name} is not replicated"))
        })
    }

    fn usage<'a>(&'a self, service: &'a str) -> Reading<'a, Vec<Usage>> {
        Box::pin(async move {
            let filters = Filters::from([(
                "label".to_string(),
                vec![format!(
                    "com.docker.swarm.service.name={}",
                    service_name(&self.project, service)
                )],
            )]);
            let (_, usage) = sample(std::slice::from_ref(&self.manager), &filters, true).await?;
            Ok(usage)
        })
    }
}
