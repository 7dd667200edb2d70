//! From a desired service and slot to the engine's container create request. Pure.

pub const LABEL_PROJECT: &str = "drover.project";
pub const LABEL_SERVICE: &str = "drover.service";
pub const LABEL_SLOT: &str = "drover.slot";
pub const LABEL_CONFIG_HASH: &str = "drover.config-hash";
pub const LABEL_NODE: &str = "drover.node";

use crate::config::{Project, Service};
use bollard::models::{ContainerCreateBody, EndpointSettings};

pub fn container_name(project: &Project, service: &Service, slot: u32) -> String {
    format!("{}-{}-{}", project.name, service.name, slot)
}

pub fn create_body(_project: &Project, service: &Service, _slot: u32) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(service.image.clone()),
        ..Default::default()
    }
}

pub fn extra_networks(_project: &Project, _service: &Service) -> Vec<(String, EndpointSettings)> {
    vec![]
}
