use super::*;

const TTL: Duration = Duration::from_millis(2000);

fn timing() -> Timing {
    Timing {
        ttl: TTL,
        interval: TTL / 4,
        stale_after: TTL * 5 / 4,
    }
}

fn grant(clean_at: Instant, until: Option<Instant>) -> Grant {
    Grant {
        id: "c".into(),
        counter: 0,
        term: 1,
        clean_at,
        until,
    }
}

fn held(holder: &str, counter: i64, term: u64) -> View {
    View::Held {
        id: format!("id-{holder}"),
        holder: holder.into(),
        counter,
        term,
        exited: false,
    }
}

fn takes(ops: &[(usize, Op)]) -> Vec<usize> {
    ops.iter()
        .filter(|(_, op)| matches!(op, Op::Take { .. }))
        .map(|(i, _)| *i)
        .collect()
}

fn releases(ops: &[(usize, Op)]) -> Vec<usize> {
    ops.iter()
        .filter(|(_, op)| matches!(op, Op::Release { .. }))
        .map(|(i, _)| *i)
        .collect()
}

/// Every node of `c` answers its request with `view` (a look) at `now`.
fn looked(c: &mut Core, views: &[View], now: Instant) {
    let mut notes = Vec::new();
    for (i, v) in views.iter().enumerate() {
        c.apply(i, Outcome::Looked(Some(v.clone())), now, &mut notes);
    }
}

/// Each take in `ops` succeeds, sent at `now`.
fn took_all(c: &mut Core, ops: &[(usize, Op)], now: Instant) {
    let mut notes = Vec::new();
    for (i, op) in ops {
        if let Op::Take { term, clean_at, .. } = op {
            c.apply(
                *i,
                Outcome::Took {
                    sent: now,
                    result: Ok(Some(format!("mine-{i}"))),
                    term: *term,
                    clean_at: *clean_at,
                },
                now,
                &mut notes,
            );
        }
    }
}

#[test]
fn a_majority_is_more_than_half() {
    assert_eq!(
        [1, 2, 3, 4, 5].map(majority),
        [1, 2, 2, 3, 3],
        "of 1, 2, 3, 4, 5 nodes"
    );
}

#[test]
fn the_window_needs_a_majority_counting_at_once() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let a = grant(t0, Some(t0 + 2 * s));
    let b = grant(t0, Some(t0 + 3 * s));
    let c = grant(t0 + 5 * s, Some(t0 + 9 * s));
    // Two of three count from t0 until the second-latest end among them.
    assert_eq!(window(&[&a, &b, &c], 3, t0), Some((t0, t0 + 2 * s)));
    // One of three: no window.
    assert_eq!(window(&[&a], 3, t0), None);
    // b and c overlap only if c is clean before b ends: it is not.
    assert_eq!(window(&[&b, &c], 3, t0), None);
    // A grant that becomes clean later opens the window then (fencing).
    let d = grant(t0 + s, Some(t0 + 4 * s));
    assert_eq!(window(&[&b, &d], 3, t0), Some((t0 + s, t0 + 3 * s)));
    // A grant with no successful renewal yet does not count.
    let e = grant(t0, None);
    assert_eq!(window(&[&a, &e], 3, t0), None);
    // Past its end nothing counts.
    assert_eq!(window(&[&a, &b], 3, t0 + 2 * s), None);
    // One node: a majority of one.
    assert_eq!(window(&[&a], 1, t0), Some((t0, t0 + 2 * s)));
}

#[test]
fn a_campaign_takes_a_term_above_every_term_seen() {
    assert_eq!(next_term(0, 0), 1);
    assert_eq!(next_term(7, 3), 8);
    assert_eq!(next_term(7, 9), 10);
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    looked(
        &mut c,
        &[
            View::Absent,
            View::Released {
                id: "r".into(),
                term: 6,
                clean: true,
            },
            View::Absent,
        ],
        now,
    );
    let mut notes = Vec::new();
    let ops = c.round(now, &mut notes);
    assert_eq!(takes(&ops), [0, 1, 2]);
    assert_eq!(c.term, 7);
    assert!(notes.contains(&Note::Campaign { term: 7 }));
    for (_, op) in &ops {
        if let Op::Take { term, clean_at, .. } = op {
            assert_eq!(
                (*term, *clean_at),
                (7, now),
                "free and clean: counts at once"
            );
        }
    }
    took_all(&mut c, &ops, now);
    let w = c.window(now).expect("a majority");
    assert_eq!((w.from, w.until, w.term), (now, now + TTL, 7));
    assert!(c.acting(now));
    assert_eq!(c.granted(now), [0, 1, 2]);
}

#[test]
fn a_drover_that_sees_no_majority_touches_nothing() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    // Only one node answers (the minority side of a partition): its lease is free.
    let mut notes = Vec::new();
    c.apply(0, Outcome::Looked(Some(View::Absent)), now, &mut notes);
    c.apply(1, Outcome::Looked(None), now, &mut notes);
    c.apply(2, Outcome::Looked(None), now, &mut notes);
    let ops = c.round(now, &mut notes);
    assert!(takes(&ops).is_empty(), "{ops:?}");
    assert_eq!(c.term, 0);
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(
        c.standby_reason(now, &names).unwrap(),
        "no majority: 1 of 3 nodes answer, 2 needed"
    );
}

#[test]
fn a_live_leader_is_left_alone_and_a_silent_one_taken_over() {
    let t0 = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    // The leader renews on every node: its counter moves at each look.
    for k in 0..8 {
        let now = t0 + timing().interval * k;
        looked(
            &mut c,
            &[
                held("L", k as i64, 4),
                held("L", k as i64, 4),
                held("L", k as i64, 4),
            ],
            now,
        );
        let ops = c.round(now, &mut Vec::new());
        assert!(takes(&ops).is_empty(), "round {k}: {ops:?}");
    }
    let now = t0 + timing().interval * 8;
    assert_eq!(
        c.standby_reason(now, &names).unwrap(),
        "another drover leads: L (term 4) on a,b,c"
    );
    // It stops renewing (dead host, frozen): its counters stay at 7.
    let since = t0 + timing().interval * 7;
    let mut now = since;
    let mut taken = None;
    while now < since + TTL * 3 {
        now += Duration::from_millis(100);
        looked(
            &mut c,
            &[View::Unknown, held("L", 7, 4), held("L", 7, 4)],
            now,
        );
        let mut notes = Vec::new();
        let ops = c.round(now, &mut notes);
        if !takes(&ops).is_empty() {
            taken = Some((now, ops, notes));
            break;
        }
    }
    let (at, ops, notes) = taken.expect("taken over");
    assert!(at >= since + timing().stale_after, "not before stale_after");
    assert!(at < since + timing().stale_after + Duration::from_millis(150));
    assert_eq!(takes(&ops), [1, 2], "not the node that does not answer");
    assert_eq!(c.term, 5, "above the silent leader's term");
    assert!(notes.iter().any(|n| matches!(
        n,
        Note::Takeover {
            reason: "not-renewed",
            ..
        }
    )));
    for (_, op) in &ops {
        if let Op::Take {
            clean_at, replace, ..
        } = op
        {
            // The leader's last renewal was sent before we first saw it: its claim ran out
            // a ttl after that, before the takeover.
            assert_eq!(*clean_at, at.max(since + TTL));
            assert_eq!(replace.as_deref(), Some("id-L"));
        }
    }
    took_all(&mut c, &ops, at);
    assert!(c.acting(at), "two of three granted");
}

#[test]
fn a_holder_known_to_have_exited_is_replaced_at_once() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 1);
    let gone = View::Held {
        id: "x".into(),
        holder: "old".into(),
        counter: 3,
        term: 2,
        exited: true,
    };
    looked(&mut c, &[gone], now);
    let ops = c.round(now, &mut Vec::new());
    assert_eq!(
        ops,
        [(
            0,
            Op::Take {
                replace: Some("x".into()),
                term: 3,
                clean_at: now,
                reason: "holder-exited"
            }
        )]
    );
}

#[test]
fn a_leader_that_sees_a_higher_term_steps_down_at_once() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    looked(&mut c, &[View::Absent, View::Absent, View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    took_all(&mut c, &ops, now);
    assert!(c.acting(now));
    // A grant is taken from us (e.g. we were cut off) and the node shows a newer term.
    let later = now + TTL / 4;
    let mut notes = Vec::new();
    c.apply(
        0,
        Outcome::Renewed {
            sent: later,
            result: Renewal::Gone,
        },
        later,
        &mut notes,
    );
    assert_eq!(notes, [Note::GrantLost { node: 0 }]);
    assert!(c.acting(later), "two of three still count");
    c.apply(
        0,
        Outcome::Looked(Some(held("new", 0, 2))),
        later,
        &mut notes,
    );
    let mut notes = Vec::new();
    let ops = c.round(later, &mut notes);
    assert!(!c.acting(later));
    assert_eq!(c.window(later), None);
    assert_eq!(notes, [Note::SteppedDown { seen: 2, own: 1 }]);
    assert_eq!(releases(&ops), [1, 2]);
    for (_, op) in &ops {
        if let Op::Release { clean, .. } = op {
            assert!(!clean, "we were acting a moment ago: the taker waits");
        }
    }
}

#[test]
fn a_project_container_with_a_higher_term_ends_the_leadership() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 1);
    looked(&mut c, &[View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    took_all(&mut c, &ops, now);
    assert!(c.acting(now));
    c.observed = 9;
    assert!(!c.acting(now), "at once, before any round");
    let mut notes = Vec::new();
    let ops = c.round(now, &mut notes);
    assert_eq!(notes, [Note::SteppedDown { seen: 9, own: 1 }]);
    assert_eq!(releases(&ops), [0]);
}

#[test]
fn two_candidates_with_one_term_both_step_down_before_leading() {
    let now = Instant::now();
    // Three nodes; we got node 0, the other candidate (same term) nodes 1 and 2 are
    // still being taken: we see it on node 1 only, with our term.
    let mut c = Core::new("me".into(), timing(), 3);
    looked(&mut c, &[View::Absent, View::Absent, View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    let mut notes = Vec::new();
    c.apply(
        0,
        Outcome::Took {
            sent: now,
            result: Ok(Some("mine".into())),
            term: 1,
            clean_at: now,
        },
        now,
        &mut notes,
    );
    for i in [1, 2] {
        c.apply(
            i,
            Outcome::Took {
                sent: now,
                result: Ok(None),
                term: 1,
                clean_at: now,
            },
            now,
            &mut notes,
        );
    }
    assert_eq!(takes(&ops).len(), 3);
    assert!(!c.acting(now));
    c.apply(
        1,
        Outcome::Looked(Some(held("other", 0, 1))),
        now,
        &mut notes,
    );
    let mut notes = Vec::new();
    let ops = c.round(now, &mut notes);
    assert_eq!(notes, [Note::SteppedDown { seen: 1, own: 1 }]);
    assert_eq!(releases(&ops), [0]);
    for (_, op) in &ops {
        if let Op::Release { clean, .. } = op {
            assert!(clean, "never acted, took a free node: clean");
        }
    }
    assert_eq!(c.term, 0);
    // And it waits a little before it campaigns again (term 2, above the one seen).
    c.apply(0, Outcome::Released, now, &mut Vec::new());
    c.apply(0, Outcome::Looked(Some(View::Absent)), now, &mut Vec::new());
    c.apply(2, Outcome::Looked(Some(View::Absent)), now, &mut Vec::new());
    let ops = c.round(now, &mut Vec::new());
    assert!(takes(&ops).is_empty(), "backing off");
    for (i, _) in ops {
        c.apply(i, Outcome::Looked(Some(View::Absent)), now, &mut Vec::new());
    }
    let later = now + timing().interval * 2;
    let ops = c.round(later, &mut Vec::new());
    assert_eq!(takes(&ops), [0, 2]);
    assert_eq!(c.term, 2);
}

/// `confirmed` is the latest sending a majority granted: it follows renewals a majority
/// answered and stands still while only a minority answers (a cut-off leader), which is
/// what keeps a cut-off leader from moving the replicas of nodes it finds down.
#[test]
fn the_window_says_when_a_majority_last_granted_a_renewal() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    looked(&mut c, &[View::Absent, View::Absent, View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    took_all(&mut c, &ops, now);
    assert_eq!(c.window(now).map(|w| w.confirmed), Some(now));
    let renew = |c: &mut Core, t: Instant, ok: &[usize]| {
        for (i, op) in c.round(t, &mut Vec::new()) {
            if matches!(op, Op::Renew { .. }) {
                let result = if ok.contains(&i) {
                    Renewal::Ok
                } else {
                    Renewal::Failed
                };
                c.apply(i, Outcome::Renewed { sent: t, result }, t, &mut Vec::new());
            }
        }
    };
    let t1 = now + timing().interval;
    renew(&mut c, t1, &[0, 1]);
    assert_eq!(c.window(t1).map(|w| w.confirmed), Some(t1), "two of three");
    let t2 = t1 + timing().interval;
    renew(&mut c, t2, &[0]);
    assert_eq!(c.window(t2).map(|w| w.confirmed), Some(t1), "one of three");
    assert!(c.acting(t2), "still within the ttl of t1");
}

#[test]
fn a_minority_leader_stops_within_the_ttl_and_keeps_only_what_it_holds() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    looked(&mut c, &[View::Absent, View::Absent, View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    took_all(&mut c, &ops, now);
    // Cut off from nodes 1 and 2: their renewals fail; node 0 still renews.
    let mut t = now;
    let mut stopped = None;
    while t < now + TTL * 3 {
        t += timing().interval;
        let ops = c.round(t, &mut Vec::new());
        assert!(takes(&ops).is_empty());
        for (i, op) in ops {
            if matches!(op, Op::Renew { .. }) {
                let result = if i == 0 { Renewal::Ok } else { Renewal::Failed };
                c.apply(i, Outcome::Renewed { sent: t, result }, t, &mut Vec::new());
            }
        }
        if stopped.is_none() && !c.acting(t) {
            stopped = Some(t);
        }
    }
    let stopped = stopped.expect("stopped acting");
    assert!(
        stopped <= now + TTL,
        "within the ttl of the last renewal that counted"
    );
    assert!(c.nodes[0].grant.is_some(), "its own node's grant is kept");
}

#[test]
fn a_released_grant_fences_when_its_holder_might_still_count() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 1);
    looked(
        &mut c,
        &[View::Released {
            id: "r".into(),
            term: 3,
            clean: false,
        }],
        now,
    );
    let ops = c.round(now, &mut Vec::new());
    match &ops[..] {
        [(0, Op::Take { clean_at, term, .. })] => {
            assert_eq!((*clean_at, *term), (now + TTL, 4));
        }
        other => panic!("{other:?}"),
    }
    took_all(&mut c, &ops, now);
    // Renewed meanwhile, it counts from the fencing wait's end.
    let t = now + timing().interval;
    c.apply(
        0,
        Outcome::Renewed {
            sent: t,
            result: Renewal::Ok,
        },
        t,
        &mut Vec::new(),
    );
    let w = c.window(now).unwrap();
    assert_eq!(w.from, now + TTL, "acts only after the fencing wait");
    assert!(!c.acting(now));
    assert!(
        c.standby_reason(now, &["a".into()])
            .unwrap()
            .starts_with("fencing")
    );
}

#[test]
fn a_create_answered_late_is_adopted_as_ours() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 1);
    looked(&mut c, &[View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    assert_eq!(takes(&ops), [0]);
    // No answer in time: nothing known ...
    c.apply(
        0,
        Outcome::Took {
            sent: now,
            result: Err("no answer in time".into()),
            term: 1,
            clean_at: now,
        },
        now,
        &mut Vec::new(),
    );
    // ... but the engine made it: the next look shows it ours, with our term.
    c.apply(
        0,
        Outcome::Looked(Some(held("me", 0, 1))),
        now,
        &mut Vec::new(),
    );
    assert!(c.nodes[0].grant.is_some());
    assert!(!c.acting(now), "not before a renewal succeeds");
    let ops = c.round(now + timing().interval, &mut Vec::new());
    assert!(matches!(ops[..], [(0, Op::Renew { .. })]));
    let t = now + timing().interval;
    c.apply(
        0,
        Outcome::Renewed {
            sent: t,
            result: Renewal::Ok,
        },
        t,
        &mut Vec::new(),
    );
    assert!(c.acting(t));
}

#[test]
fn a_node_with_a_request_in_flight_is_skipped_not_waited_for() {
    let now = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    looked(&mut c, &[View::Absent, View::Absent, View::Absent], now);
    let ops = c.round(now, &mut Vec::new());
    took_all(&mut c, &ops, now);
    // Node 2 stalls on its renewal; nodes 0 and 1 keep renewing on time.
    let mut t = now;
    for _ in 0..12 {
        t += timing().interval;
        let ops = c.round(t, &mut Vec::new());
        for (i, op) in ops {
            if i == 2 {
                continue;
            }
            assert!(matches!(op, Op::Renew { .. }));
            c.apply(
                i,
                Outcome::Renewed {
                    sent: t,
                    result: Renewal::Ok,
                },
                t,
                &mut Vec::new(),
            );
        }
        assert!(c.nodes[2].busy);
        assert!(c.acting(t), "two of three keep it");
    }
}

#[test]
fn a_follower_that_was_frozen_does_not_count_the_time_it_lost_as_silence() {
    let t0 = Instant::now();
    let mut c = Core::new("me".into(), timing(), 3);
    let views = [held("L", 3, 4), held("L", 3, 4), held("L", 3, 4)];
    looked(&mut c, &views, t0);
    assert!(takes(&c.round(t0, &mut Vec::new())).is_empty());
    // Frozen for 5 s: the answers to reads sent just before the freeze come back after
    // it, still showing the counter the leader has since renewed past.
    let sent = t0 + timing().interval;
    let woke = t0 + Duration::from_secs(5);
    let mut notes = Vec::new();
    for (i, v) in views.iter().enumerate() {
        c.apply_sent(i, Outcome::Looked(Some(v.clone())), woke, sent, &mut notes);
    }
    let ops = c.round(woke, &mut notes);
    assert!(
        takes(&ops).is_empty(),
        "a live leader taken over by a resumed follower: {ops:?}"
    );
    // Reads sent after the wake see the leader's renewals: nothing to take, ever.
    for k in 1..10u32 {
        let now = woke + timing().interval * k;
        let renewed = [
            held("L", 3 + k as i64, 4),
            held("L", 3 + k as i64, 4),
            held("L", 3 + k as i64, 4),
        ];
        for (i, v) in renewed.iter().enumerate() {
            c.apply_sent(i, Outcome::Looked(Some(v.clone())), now, now, &mut notes);
        }
        assert!(takes(&c.round(now, &mut notes)).is_empty(), "look {k}");
    }
    // A leader that really went silent is still taken over once reads sent a
    // stale_after apart show the same counter.
    let quiet = woke + timing().interval * 10;
    let mut now = quiet;
    let mut taken = false;
    while now < quiet + TTL * 3 && !taken {
        now += Duration::from_millis(100);
        for i in 0..3 {
            c.apply_sent(
                i,
                Outcome::Looked(Some(held("L", 13, 4))),
                now,
                now,
                &mut notes,
            );
        }
        taken = !takes(&c.round(now, &mut notes)).is_empty();
    }
    assert!(taken, "a silent leader is taken over");
    assert!(now >= quiet + timing().stale_after);
}
