//! From a desired service and slot to the engine's container create request. Pure.
