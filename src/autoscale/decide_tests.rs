use std::time::{Duration, Instant};

use super::*;
use crate::config::autoscale::{COOLDOWN, SCALE_DOWN, SCALE_UP};
use crate::config::{Autoscale, RateLimit};

fn policy(min: u32, max: u32) -> Autoscale {
    Autoscale {
        min,
        max,
        polling_interval: Duration::from_secs(15),
        scale_down_window: Duration::from_secs(300),
        scale_up_window: Duration::ZERO,
        tolerance: 0.1,
        cooldown: COOLDOWN,
        scale_up: SCALE_UP,
        scale_down: SCALE_DOWN,
        triggers: Vec::new(),
        pinned: None,
        floor: None,
    }
}

fn backlog(value: f64, target: f64) -> Input {
    Input {
        value: Some(value),
        target,
        activation: 0.0,
        per_replica: false,
    }
}

fn cpu(value: f64, target: f64) -> Input {
    Input {
        per_replica: true,
        ..backlog(value, target)
    }
}

fn failed() -> Input {
    Input {
        value: None,
        ..backlog(0.0, 5.0)
    }
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[test]
fn a_backlog_wants_one_replica_per_target_rounded_up_and_the_highest_trigger_wins() {
    let a = policy(1, 20);
    let t0 = Instant::now();
    let mut m = Memory::started(3, t0);
    let d = decide(&a, &mut m, &[backlog(23.0, 5.0), cpu(35.0, 70.0)], 3, t0);
    assert_eq!(d.desired, 5);
    assert_eq!(d.wants, [Some(5), Some(2)]);
    assert_eq!(d.limited_by, Limit::None);
    // CPU at twice its target on 5 replicas wants 10, more than the backlog.
    let d = decide(
        &a,
        &mut m,
        &[backlog(23.0, 5.0), cpu(140.0, 70.0)],
        5,
        t0 + s(60),
    );
    assert_eq!(d.wants, [Some(5), Some(10)]);
    assert_eq!(d.desired, 10);
}

#[test]
fn bounds_and_the_scale_files_floor_hold() {
    let mut a = policy(2, 6);
    let t0 = Instant::now();
    let mut m = Memory::started(2, t0);
    let d = decide(&a, &mut m, &[backlog(500.0, 5.0)], 6, t0);
    assert_eq!((d.desired, d.limited_by), (6, Limit::Max));
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 2, t0);
    assert_eq!((d.desired, d.limited_by), (2, Limit::Min));
    a.floor = Some(4);
    let mut m = Memory::started(4, t0);
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 4, t0 + s(600));
    assert_eq!((d.desired, d.limited_by), (4, Limit::Min));
}

#[test]
fn within_the_tolerance_nothing_changes() {
    let a = policy(1, 20);
    let t0 = Instant::now();
    let mut m = Memory::started(4, t0);
    // 21 jobs for 4 replicas of 5: 5% over, within 10%.
    let d = decide(&a, &mut m, &[backlog(21.0, 5.0)], 4, t0);
    assert_eq!((d.desired, d.limited_by), (4, Limit::Tolerance));
    // 23: 15% over.
    let d = decide(&a, &mut m, &[backlog(23.0, 5.0)], 4, t0);
    assert_eq!(d.desired, 5);
    let d = decide(&a, &mut m, &[cpu(75.0, 70.0)], 4, t0);
    assert_eq!((d.desired, d.limited_by), (4, Limit::Tolerance));
}

#[test]
fn scale_down_waits_for_the_highest_recommendation_of_its_window() {
    let mut a = policy(1, 20);
    a.scale_down_window = s(60);
    let t0 = Instant::now();
    let mut m = Memory::started(1, t0);
    assert_eq!(decide(&a, &mut m, &[backlog(20.0, 5.0)], 1, t0).desired, 4);
    // Drained: the window still remembers 4.
    for secs in [15, 30, 45, 60] {
        let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 4, t0 + s(secs));
        assert_eq!(
            (d.desired, d.limited_by),
            (4, Limit::ScaleDownWindow),
            "at {secs}s"
        );
    }
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 4, t0 + s(61));
    assert_eq!(d.desired, 1);
}

#[test]
fn scale_up_can_wait_for_its_own_window() {
    let mut a = policy(1, 20);
    a.scale_up_window = s(30);
    let t0 = Instant::now();
    let mut m = Memory::started(1, t0);
    let d = decide(&a, &mut m, &[backlog(10.0, 5.0)], 1, t0 + s(1));
    assert_eq!((d.desired, d.limited_by), (1, Limit::ScaleUpWindow));
    let d = decide(&a, &mut m, &[backlog(10.0, 5.0)], 1, t0 + s(32));
    assert_eq!(d.desired, 2);
}

#[test]
fn rate_limits_count_the_changes_of_the_period() {
    let mut a = policy(1, 100);
    a.scale_down_window = Duration::ZERO;
    let t0 = Instant::now();
    let mut m = Memory::started(1, t0);
    // Up: 4 replicas or 100% per 15 s, whichever is more.
    let d = decide(&a, &mut m, &[backlog(500.0, 5.0)], 1, t0);
    assert_eq!((d.desired, d.limited_by), (5, Limit::Rate));
    let d = decide(&a, &mut m, &[backlog(500.0, 5.0)], 5, t0 + s(5));
    assert_eq!((d.desired, d.limited_by), (5, Limit::Rate), "same period");
    let d = decide(&a, &mut m, &[backlog(500.0, 5.0)], 5, t0 + s(16));
    assert_eq!(d.desired, 10);
    let d = decide(&a, &mut m, &[backlog(500.0, 5.0)], 10, t0 + s(32));
    assert_eq!(d.desired, 20);
    // Down: at most one replica per minute.
    a.scale_down = RateLimit {
        replicas: Some(1),
        percent: None,
        period: s(60),
    };
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 20, t0 + s(100));
    assert_eq!((d.desired, d.limited_by), (19, Limit::Rate));
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 19, t0 + s(130));
    assert_eq!(d.desired, 19);
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 19, t0 + s(161));
    assert_eq!(d.desired, 18);
}

#[test]
fn a_trigger_without_an_answer_holds_the_count() {
    let a = policy(0, 20);
    let t0 = Instant::now();
    let mut m = Memory::started(3, t0);
    for (inputs, current) in [
        (vec![failed()], 3),
        (vec![failed(), backlog(500.0, 5.0)], 3),
        (vec![backlog(0.0, 5.0), failed()], 3),
        (vec![failed()], 0),
    ] {
        let d = decide(&a, &mut m, &inputs, current, t0 + s(3600));
        assert_eq!((d.desired, d.limited_by), (current, Limit::Error));
    }
}

#[test]
fn min_zero_wakes_on_activation_and_sleeps_after_the_cooldown() {
    let mut a = policy(0, 10);
    a.scale_down_window = Duration::ZERO;
    a.cooldown = s(120);
    let t0 = Instant::now();
    let mut m = Memory::started(0, t0);
    let mut act = backlog(3.0, 5.0);
    act.activation = 5.0;
    // At or below the activation threshold: stays at zero.
    let d = decide(&a, &mut m, &[act.clone()], 0, t0);
    assert_eq!((d.desired, d.limited_by), (0, Limit::Idle));
    act.value = Some(12.0);
    let d = decide(&a, &mut m, &[act.clone()], 0, t0 + s(15));
    assert_eq!(d.desired, 3);
    // Drained: one replica stays through the cooldown, then zero.
    act.value = Some(0.0);
    let d = decide(&a, &mut m, &[act.clone()], 3, t0 + s(30));
    assert_eq!((d.desired, d.limited_by), (1, Limit::Cooldown));
    let d = decide(&a, &mut m, &[act.clone()], 1, t0 + s(15 + 119));
    assert_eq!(d.desired, 1);
    let d = decide(&a, &mut m, &[act.clone()], 1, t0 + s(15 + 121));
    assert_eq!((d.desired, d.limited_by), (0, Limit::Idle));
}

#[test]
fn a_restart_finds_the_running_count_and_keeps_it_for_a_window() {
    let mut a = policy(0, 10);
    a.scale_down_window = s(60);
    let t0 = Instant::now();
    let mut m = Memory::started(6, t0);
    let d = decide(&a, &mut m, &[backlog(0.0, 5.0)], 6, t0 + s(1));
    assert_eq!(d.desired, 6);
}

/// A small deterministic generator: every failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_policy(rng: &mut Rng) -> Autoscale {
    let min = rng.below(4) as u32;
    let mut a = policy(min, min + 1 + rng.below(30) as u32);
    a.scale_down_window = s(rng.below(200));
    a.scale_up_window = s(rng.below(3) * 20);
    a.cooldown = s(rng.below(200));
    a.tolerance = rng.below(30) as f64 / 100.0;
    if rng.below(2) == 0 {
        a.floor = Some(rng.below(10) as u32);
    }
    a
}

/// As the config allows: with `min: 0`, at least one trigger that is not per replica.
fn random_inputs(rng: &mut Rng, min: u32) -> Vec<Input> {
    let mut inputs: Vec<Input> = (0..1 + rng.below(3))
        .map(|_| {
            let mut i = if rng.below(3) == 0 {
                cpu(rng.below(300) as f64, 1.0 + rng.below(100) as f64)
            } else {
                backlog(rng.below(400) as f64, 1.0 + rng.below(20) as f64)
            };
            i.activation = rng.below(5) as f64;
            if rng.below(8) == 0 {
                i.value = None;
            }
            i
        })
        .collect();
    if min == 0 && inputs.iter().all(|i| i.per_replica) {
        inputs.push(backlog(rng.below(50) as f64, 1.0 + rng.below(20) as f64));
    }
    inputs
}

/// Runs of random readings on random policies, the decided count fed back as current.
#[test]
fn properties_hold_over_random_runs() {
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let a = random_policy(&mut rng);
        let t0 = Instant::now();
        let mut current = a.lowest();
        let mut m = Memory::started(current, t0);
        let mut now = t0;
        let mut last_up: Option<(Instant, u32)> = None;
        for step in 0..60 {
            now += s(1 + rng.below(30));
            let inputs = random_inputs(&mut rng, a.min);
            let d = decide(&a, &mut m, &inputs, current, now);
            let ctx =
                format!("seed {seed} step {step}: {a:?} {inputs:?} current {current} -> {d:?}");
            // Never outside min..max (zero only when min is zero and nothing is active).
            assert!(d.desired <= a.max, "{ctx}");
            if a.lowest() > 0 || d.desired > 0 {
                assert!(d.desired >= a.lowest().max(1.min(d.desired)), "{ctx}");
            }
            // A trigger without an answer never changes the count.
            if inputs.iter().any(|i| i.value.is_none()) {
                assert_eq!(d.desired, current, "{ctx}");
            }
            // Within the tolerance of every trigger, nothing moves (inside the bounds).
            let tolerated = inputs.iter().all(|i| match i.value {
                Some(v) if current > 0 => {
                    let ratio = if i.per_replica {
                        v / i.target
                    } else {
                        v / (i.target * f64::from(current))
                    };
                    (ratio - 1.0).abs() <= a.tolerance
                }
                _ => false,
            });
            if tolerated && a.lowest() > 0 && current >= a.lowest() && current <= a.max {
                assert_eq!(d.desired, current, "{ctx}");
            }
            // A scale-down (other than to zero after the cooldown) waits for the window
            // after a scale-up: it goes no lower than that scale-up went.
            if d.desired < current
                && d.desired > 0
                && let Some((t, n)) = last_up
                && now.saturating_duration_since(t) < a.scale_down_window
            {
                assert!(
                    d.desired >= n.min(current),
                    "{ctx} (scaled up to {n} at {t:?})"
                );
            }
            if d.desired > current {
                last_up = Some((now, d.desired));
            }
            current = d.desired;
        }
    }
}

/// docs/autoscaling.md's worked example, poll by poll.
#[test]
fn the_worked_example_of_the_docs() {
    let a = policy(1, 20);
    let t0 = Instant::now();
    let mut m = Memory::started(2, t0);
    let at = |secs| t0 + s(secs);
    let d = decide(&a, &mut m, &[backlog(9.0, 5.0), cpu(40.0, 70.0)], 2, at(0));
    assert_eq!((d.desired, d.wants.clone()), (2, vec![Some(2), Some(2)]));
    let d = decide(
        &a,
        &mut m,
        &[backlog(180.0, 5.0), cpu(95.0, 70.0)],
        2,
        at(15),
    );
    assert_eq!((d.desired, d.limited_by), (6, Limit::Rate));
    assert_eq!(d.wants, [Some(36), Some(3)]);
    let d = decide(
        &a,
        &mut m,
        &[backlog(170.0, 5.0), cpu(90.0, 70.0)],
        6,
        at(30),
    );
    assert_eq!((d.desired, d.limited_by), (12, Limit::Rate));
    assert_eq!(d.wants, [Some(34), Some(8)]);
    let d = decide(
        &a,
        &mut m,
        &[backlog(150.0, 5.0), cpu(80.0, 70.0)],
        12,
        at(45),
    );
    assert_eq!((d.desired, d.limited_by), (20, Limit::Max));
    assert_eq!(d.wants, [Some(30), Some(14)]);
    let mut secs = 60;
    while secs < 45 + 300 {
        let d = decide(
            &a,
            &mut m,
            &[backlog(0.0, 5.0), cpu(5.0, 70.0)],
            20,
            at(secs),
        );
        assert_eq!(
            (d.desired, d.limited_by),
            (20, Limit::ScaleDownWindow),
            "at {secs}s"
        );
        secs += 15;
    }
    let d = decide(
        &a,
        &mut m,
        &[backlog(0.0, 5.0), cpu(5.0, 70.0)],
        20,
        at(45 + 301),
    );
    assert_eq!((d.desired, d.wants), (2, vec![Some(0), Some(2)]));
}
