//! The scaling decision, as the Kubernetes HPA and KEDA make it. Pure: the readings, the
//! current count and the time come in; the new count and why come out. What it must
//! remember between decisions (recent recommendations, recent changes, when a trigger
//! was last active) is in [`Memory`], which the caller keeps.
//!
//! 1. Any trigger without a reading: hold the current count (never to zero, never to
//!    `max` on an error).
//! 2. Per trigger: a total (a backlog) wants `ceil(value / target)`; a per-replica
//!    average (CPU, memory) wants `ceil(current × value / target)`. Within the tolerance
//!    (`|ratio − 1| ≤ tolerance`) it wants the current count.
//! 3. The highest wins, bounded by `min` (raised to the scale file's count) and `max`.
//!    With `min: 0`, the service is at zero while no trigger is above its activation
//!    threshold and goes to zero once none has been for `cooldown` (KEDA).
//! 4. Stabilization: up to the lowest recommendation of `scale_up_window` (0: at once),
//!    down only to the highest of `scale_down_window`.
//! 5. Rate limits: per period, up by the larger of `replicas` and `percent` of the count
//!    at the period's start, down likewise.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Autoscale, RateLimit};

/// One trigger's reading, as the decision needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// `None`: the trigger did not answer.
    pub value: Option<f64>,
    pub target: f64,
    pub activation: f64,
    /// An average per replica (CPU, memory) rather than a total to share out.
    pub per_replica: bool,
}

/// What held the count where it is, or limited the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    /// The triggers' recommendation, as it is.
    None,
    /// Every trigger is within the tolerance of the current count.
    Tolerance,
    /// Raised to `min` (or the scale file's count).
    Min,
    /// Capped at `max`.
    Max,
    /// A scale-down waits for the highest recommendation of its window.
    ScaleDownWindow,
    /// A scale-up waits for the lowest recommendation of its window.
    ScaleUpWindow,
    /// The rate limit of the period.
    Rate,
    /// A trigger did not answer: the count is held.
    Error,
    /// `min: 0`: no trigger is active but the cooldown has not passed.
    Cooldown,
    /// `min: 0`: no trigger is active, the service is at zero.
    Idle,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::None => "none",
            Limit::Tolerance => "tolerance",
            Limit::Min => "min",
            Limit::Max => "max",
            Limit::ScaleDownWindow => "scale-down-window",
            Limit::ScaleUpWindow => "scale-up-window",
            Limit::Rate => "rate",
            Limit::Error => "error",
            Limit::Cooldown => "cooldown",
            Limit::Idle => "idle",
        }
    }
}

/// What one decision decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub limited_by: Limit,
    /// Each trigger's own recommendation, in order (`None`: it did not answer).
    pub wants: Vec<Option<u32>>,
}

/// What decisions remember: recent recommendations (for the stabilization windows),
/// recent changes (for the rate limits), when a trigger was last active.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    recommendations: VecDeque<(Instant, u32)>,
    /// (when, from, to).
    changes: VecDeque<(Instant, u32, u32)>,
    last_active: Option<Instant>,
}

impl Memory {
    /// Memory for a service found at `current` replicas at `now`: that count stands as a
    /// recommendation of the window and, when above zero, as activity, so a restarted
    /// drover does not scale a running service down before a window has passed.
    pub fn started(current: u32, now: Instant) -> Memory {
        let mut m = Memory::default();
        m.recommendations.push_back((now, current));
        if current > 0 {
            m.last_active = Some(now);
        }
        m
    }
}

/// `ceil(x)` that does not turn 2.0000000001 (a float's error) into 3.
fn ceil(x: f64) -> u32 {
    let c = (x - 1e-9).ceil();
    if c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

/// One trigger's recommendation, and whether the tolerance held it at `current`.
fn wants(i: &Input, value: f64, current: u32, tolerance: f64) -> (u32, bool) {
    let cur = f64::from(current);
    if i.per_replica {
        if current == 0 {
            return (0, false);
        }
        let ratio = value / i.target;
        if (ratio - 1.0).abs() <= tolerance {
            return (current, true);
        }
        (ceil(cur * ratio), false)
    } else {
        if current > 0 && (value / (i.target * cur) - 1.0).abs() <= tolerance {
            return (current, true);
        }
        (ceil(value / i.target), false)
    }
}

/// Decide the count for a service at `current` replicas, given every trigger's reading.
pub fn decide(
    a: &Autoscale,
    mem: &mut Memory,
    inputs: &[Input],
    current: u32,
    now: Instant,
) -> Decision {
    let mut wanted = Vec::with_capacity(inputs.len());
    let mut all_tolerated = true;
    let mut raw = 0u32;
    let mut active = false;
    for i in inputs {
        match i.value {
            Some(v) => {
                let (w, tolerated) = wants(i, v, current, a.tolerance);
                all_tolerated &= tolerated;
                raw = raw.max(w);
                active |= !i.per_replica && v > i.activation;
                wanted.push(Some(w));
            }
            None => wanted.push(None),
        }
    }
    let hold = |limited_by| Decision {
        desired: current,
        limited_by,
        wants: wanted.clone(),
    };
    if wanted.iter().any(Option::is_none) || inputs.is_empty() {
        return hold(Limit::Error);
    }
    prune(a, mem, now);
    let mut lowest = a.lowest();
    if lowest == 0 {
        if active {
            mem.last_active = Some(now);
            lowest = 1;
        } else if current == 0 {
            return settle(mem, now, current, 0, Limit::Idle, wanted);
        } else if mem
            .last_active
            .is_some_and(|t| now.saturating_duration_since(t) < a.cooldown)
        {
            // Not active, but not for long enough: the count is left to the other rules
            // above one replica.
            lowest = 1;
        } else {
            return settle(mem, now, current, 0, Limit::Idle, wanted);
        }
    }
    let mut limited_by = if all_tolerated {
        Limit::Tolerance
    } else {
        Limit::None
    };
    let mut desired = raw;
    if desired > a.max {
        desired = a.max;
        limited_by = Limit::Max;
    } else if desired < lowest {
        desired = lowest;
        limited_by = if a.lowest() == 0 {
            Limit::Cooldown
        } else {
            Limit::Min
        };
    }
    mem.recommendations.push_back((now, desired));
    let (stable, why) = stabilize(a, mem, now, current, desired);
    if stable != desired {
        desired = stable;
        limited_by = why;
    }
    let limited = rate_limit(a, mem, now, current, desired);
    if limited != desired {
        desired = limited;
        limited_by = Limit::Rate;
    }
    settle(mem, now, current, desired, limited_by, wanted)
}

/// Record a change and say the decision.
fn settle(
    mem: &mut Memory,
    now: Instant,
    current: u32,
    desired: u32,
    limited_by: Limit,
    wants: Vec<Option<u32>>,
) -> Decision {
    if desired != current {
        mem.changes.push_back((now, current, desired));
    }
    Decision {
        desired,
        limited_by,
        wants,
    }
}

/// Forget what no window or period looks at any more.
fn prune(a: &Autoscale, mem: &mut Memory, now: Instant) {
    let window = a.scale_down_window.max(a.scale_up_window);
    let period = a.scale_up.period.max(a.scale_down.period);
    let older = |t: Instant, d: Duration| now.saturating_duration_since(t) > d;
    while mem
        .recommendations
        .front()
        .is_some_and(|(t, _)| older(*t, window))
    {
        mem.recommendations.pop_front();
    }
    while mem
        .changes
        .front()
        .is_some_and(|(t, _, _)| older(*t, period))
    {
        mem.changes.pop_front();
    }
}

/// The HPA's stabilization: up to the lowest recommendation of the up window, down to
/// the highest of the down window, never past `current` the other way.
fn stabilize(
    a: &Autoscale,
    mem: &Memory,
    now: Instant,
    current: u32,
    desired: u32,
) -> (u32, Limit) {
    let within = |d: Duration| {
        mem.recommendations
            .iter()
            .filter(move |(t, _)| now.saturating_duration_since(*t) <= d)
            .map(|(_, r)| *r)
    };
    if desired < current {
        if a.scale_down_window.is_zero() {
            return (desired, Limit::None);
        }
        let highest = within(a.scale_down_window).max().unwrap_or(desired);
        (highest.min(current), Limit::ScaleDownWindow)
    } else if desired > current {
        if a.scale_up_window.is_zero() {
            return (desired, Limit::None);
        }
        let lowest = within(a.scale_up_window).min().unwrap_or(desired);
        (lowest.max(current), Limit::ScaleUpWindow)
    } else {
        (desired, Limit::None)
    }
}

/// The count a change may reach this period: the larger of `replicas` and `percent`
/// of the count at the period's start (at least one replica).
fn rate_limit(a: &Autoscale, mem: &Memory, now: Instant, current: u32, desired: u32) -> u32 {
    let period = |r: &RateLimit| r.period;
    let in_period = |p: Duration| {
        mem.changes
            .iter()
            .filter(move |(t, _, _)| now.saturating_duration_since(*t) < p)
    };
    let room = |r: &RateLimit, start: u32| {
        let by_count = r.replicas.unwrap_or(0);
        let by_share = ceil(f64::from(start) * f64::from(r.percent.unwrap_or(0)) / 100.0);
        by_count.max(by_share).max(1)
    };
    if desired > current {
        let added: u32 = in_period(period(&a.scale_up))
            .map(|(_, from, to)| to.saturating_sub(*from))
            .sum();
        let start = current.saturating_sub(added);
        let limit = start.saturating_add(room(&a.scale_up, start));
        desired.min(limit.max(current))
    } else if desired < current {
        let removed: u32 = in_period(period(&a.scale_down))
            .map(|(_, from, to)| from.saturating_sub(*to))
            .sum();
        let start = current.saturating_add(removed);
        let limit = start.saturating_sub(room(&a.scale_down, start));
        desired.max(limit.min(current))
    } else {
        desired
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
