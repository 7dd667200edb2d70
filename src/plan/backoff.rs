//! Crash-loop backoff per slot: first restart immediate, then doubling to a cap,
//! forgotten once a container has stayed up long enough.
//!
//! This is bookkeeping only (plain data, time passed in): the planner reads it to
//! decide *when* a slot may be started again, the controller updates it after
//! each attempt.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// Backoff settings (flags `--backoff-initial`, `--backoff-max`, `--backoff-reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the second attempt; each later attempt doubles it.
    pub initial: Duration,
    /// The delay never grows past this.
    pub max: Duration,
    /// A run at least this long resets the slot's history.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl BackoffConfig {
    /// The delay before attempt number `attempts + 1`: 0 for the first, then
    /// `first_step`, doubling, capped at `max`.
    pub fn delay(&self, attempts: u32, first_step: Option<Duration>) -> Duration {
        if attempts == 0 && first_step.is_none() {
            return Duration::ZERO;
        }
        let base = first_step.unwrap_or(self.initial);
        let exp = attempts.saturating_sub(1).min(31);
        base.saturating_mul(1u32 << exp).min(self.max.max(base))
    }
}

/// A slot: service name and slot number.
pub type SlotKey = (String, u32);

/// What the controller remembers about one slot's recent attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotHistory {
    /// Attempts (starts or creates) since the history was last reset.
    pub attempts: u32,
    /// No new attempt before this time (set after a failed attempt).
    pub not_before: Option<SystemTime>,
}

/// Per-slot attempt history. Lives in memory: a restarted drover starts with a clean
/// slate, which at worst costs one immediate restart per crashing slot.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    slots: HashMap<SlotKey, SlotHistory>,
}

impl Backoff {
    pub fn get(&self, service: &str, slot: u32) -> SlotHistory {
        self.slots
            .get(&(service.to_string(), slot))
            .copied()
            .unwrap_or_default()
    }

    /// Record an attempt that the engine accepted. `reset` forgets the history first
    /// (the previous run lasted longer than `reset_after`).
    pub fn attempted(&mut self, service: &str, slot: u32, reset: bool) {
        let h = self.slots.entry((service.to_string(), slot)).or_default();
        if reset {
            *h = SlotHistory::default();
        }
        h.attempts = h.attempts.saturating_add(1);
        h.not_before = None;
    }

    /// Record an attempt the engine refused: the next one waits for the backoff delay.
    pub fn failed(
        &mut self,
        cfg: &BackoffConfig,
        service: &str,
        slot: u32,
        first_step: Option<Duration>,
        now: SystemTime,
    ) {
        let h = self.slots.entry((service.to_string(), slot)).or_default();
        h.attempts = h.attempts.saturating_add(1);
        h.not_before = Some(now + cfg.delay(h.attempts, first_step));
    }

    /// Forget one slot's history (its last exit was not a crash).
    pub fn forget(&mut self, service: &str, slot: u32) {
        self.slots.remove(&(service.to_string(), slot));
    }

    /// Forget slots that no longer exist in the desired state.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, u32) -> bool) {
        self.slots.retain(|(s, n), _| keep(s, *n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let cfg = BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(30),
        };
        let delays: Vec<u64> = (0..7).map(|a| cfg.delay(a, None).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 10, 10]);
        assert_eq!(cfg.delay(1000, None), Duration::from_secs(10));
    }

    #[test]
    fn a_policy_delay_replaces_the_first_step() {
        let cfg = BackoffConfig::default();
        let d = Some(Duration::from_secs(5));
        assert_eq!(cfg.delay(0, d), Duration::from_secs(5));
        assert_eq!(cfg.delay(2, d), Duration::from_secs(10));
    }

    #[test]
    fn attempts_accumulate_and_reset() {
        let mut b = Backoff::default();
        b.attempted("web", 1, false);
        b.attempted("web", 1, false);
        assert_eq!(b.get("web", 1).attempts, 2);
        b.attempted("web", 1, true);
        assert_eq!(b.get("web", 1).attempts, 1);
        let now = SystemTime::UNIX_EPOCH;
        b.failed(&BackoffConfig::default(), "web", 2, None, now);
        assert_eq!(
            b.get("web", 2).not_before,
            Some(now + Duration::from_secs(1))
        );
        b.retain(|s, n| s == "web" && n == 1);
        assert_eq!(b.get("web", 2), SlotHistory::default());
    }
}
