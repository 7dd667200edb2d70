//! Autoscaling (`x-drover.autoscale`): services whose replica target follows triggers.
//!
//! - [`decide`]: the decision, pure (the HPA's and KEDA's rules).
//! - [`read`]: reading the triggers (Redis, Prometheus, HTTP JSON, the replicas' stats).
//! - [`preview`]: what `drover plan` says about it.
//! - [`run`]: the task that polls, decides and publishes the targets the runtime applies.

pub mod decide;
pub mod preview;
pub mod read;
pub mod run;

pub use preview::preview;
pub use read::{Listed, Reading, Replicas};
pub use run::{Autoscaler, Counts, Specs, Targets};
