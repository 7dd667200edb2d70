//! Autoscaling (`x-drover.autoscale`): services whose replica target follows triggers.
//!
//! - [`decide`]: the decision, pure (the HPA's and KEDA's rules).

pub mod decide;
