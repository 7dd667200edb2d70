//! From a desired service and slot to the engine's container create request. Pure.

pub const LABEL_PROJECT: &str = "drover.project";
pub const LABEL_SERVICE: &str = "drover.service";
pub const LABEL_SLOT: &str = "drover.slot";
pub const LABEL_CONFIG_HASH: &str = "drover.config-hash";
pub const LABEL_NODE: &str = "drover.node";
