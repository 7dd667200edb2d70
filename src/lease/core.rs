//! The majority lease's judgement, pure: what each node showed, what this drover holds,
//! and what to do next on each node. Time is passed in; no engine is called here (the
//! task in `task.rs` sends the requests and hands their outcomes back).
//!
//! The rules, for `n` nodes and a majority `m = n / 2 + 1`:
//!
//! - A **grant** is this drover's lease container on one node. It counts from `clean_at`
//!   (when any earlier holder's claim on that node has surely run out) until `until` (the
//!   ttl after the last create or renewal that succeeded was *sent*).
//! - This drover **acts** while at least `m` of its grants count at once ([`window`]).
//! - A node's lease is **free** when absent, released, held by a process known to have
//!   exited, or not renewed for `stale_after` as this drover watched it ([`Core::takeable`]).
//! - A drover **campaigns** (takes free nodes) only when its grants and the free nodes
//!   together make a majority, so a drover on the minority side of a partition never
//!   disturbs anything; a leader keeps taking free nodes to hold every node it can.
//! - **Terms**: a campaign takes `max(every term seen) + 1`, written on every grant. A
//!   drover steps down (releases everything) when another holder shows a higher term, or,
//!   before it leads, an equal one: so each leadership has its own term and terms only grow.

use std::time::{Duration, Instant};

/// What one look at a node's lease container showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Not looked at yet, or the node did not answer.
    Unknown,
    Absent,
    /// Released by its holder; `clean`: the holder had stopped acting and no earlier claim
    /// on this node can still count (otherwise the taker waits a ttl).
    Released {
        id: String,
        term: u64,
        clean: bool,
    },
    Held {
        id: String,
        holder: String,
        counter: i64,
        term: u64,
        /// The holder is known to have exited (same machine, its pid gone).
        exited: bool,
    },
    /// A container of that name that is not this project's lease: never touched.
    Foreign,
}

impl View {
    fn term(&self) -> u64 {
        match self {
            View::Released { term, .. } | View::Held { term, .. } => *term,
            _ => 0,
        }
    }
}

/// This drover's lease container on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub counter: i64,
    pub term: u64,
    /// The grant counts from here: any earlier holder's claim on the node has run out.
    pub clean_at: Instant,
    /// ... until here (`None`: no renewal has succeeded yet, e.g. an adopted container).
    pub until: Option<Instant>,
}

/// What to do on one node now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Look,
    Renew {
        id: String,
        counter: i64,
    },
    /// Remove `replace` (if any, by id) and create our lease container with `term`.
    Take {
        replace: Option<String>,
        term: u64,
        clean_at: Instant,
        reason: &'static str,
    },
    Release {
        id: String,
        clean: bool,
    },
}

/// How a request on one node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Looked(Option<View>),
    /// A renewal sent at `sent`: `Ok`, gone (404: the container was removed or taken over),
    /// or no answer / another error (nothing known).
    Renewed {
        sent: Instant,
        result: Renewal,
    },
    /// Our container created at `sent` (`Some(id)`), someone was quicker (`None`), or an
    /// error (the node did not answer; nothing known).
    Took {
        sent: Instant,
        result: Result<Option<String>, String>,
        term: u64,
        clean_at: Instant,
    },
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Ok,
    Gone,
    Failed,
}

/// When this drover may act, and under which term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
    pub term: u64,
    /// A majority granted requests sent at or after this instant (`until` less the ttl):
    /// this drover reached a majority then.
    pub confirmed: Instant,
}

/// Timing, all derived from the ttl (see `LeaseConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl: Duration,
    pub interval: Duration,
    pub stale_after: Duration,
}

/// One node as this drover knows it.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub grant: Option<Grant>,
    pub view: View,
    /// Someone else's lease in its present form: (id, counter, when our first read that
    /// showed it came back, when the last read that still showed it was sent). Silence is
    /// what lies between the two: a drover that was frozen or starved has not watched the
    /// time it lost, and a read sent before that proves nothing about it.
    watch: Option<(String, i64, Instant, Instant)>,
    /// A request is in flight: nothing new is sent to this node until it ends.
    pub busy: bool,
    /// No look or renewal before this.
    next_at: Option<Instant>,
    /// When a take we sent counts from, should its create have been applied late (the
    /// container then shows up as ours).
    pending_clean_at: Option<Instant>,
}

impl NodeState {
    fn new() -> NodeState {
        NodeState {
            grant: None,
            view: View::Unknown,
            watch: None,
            busy: false,
            next_at: None,
            pending_clean_at: None,
        }
    }
}

/// A change worth a log line, from [`Core::round`] and [`Core::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Taking over `holder`'s lease on a node.
    Takeover {
        node: usize,
        holder: String,
        reason: &'static str,
        silent: Duration,
    },
    /// Another holder shows term `seen` (ours: `own`): everything released.
    SteppedDown { seen: u64, own: u64 },
    /// Our grant on a node is gone (removed, or taken over).
    GrantLost { node: usize },
    /// A campaign started with this term.
    Campaign { term: u64 },
}

/// The lease's state in one drover.
#[derive(Debug, Clone)]
pub struct Core {
    pub me: String,
    pub timing: Timing,
    pub nodes: Vec<NodeState>,
    /// Our term while we hold grants (campaigning or leading); 0: none.
    pub term: u64,
    /// The highest term seen anywhere, ours included.
    pub highest: u64,
    /// No campaign before this (after stepping down from an equal-term contest).
    backoff_until: Option<Instant>,
    /// A term seen on a project container: no leadership below it.
    pub observed: u64,
}

/// The smallest strict majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// When the grants make a strict majority of `n` at once: the first time at or after
/// `now` at which at least a majority count, and until when (the grants that become
/// clean later are not counted: the window only grows as they do). `None`: not within
/// the grants' lives.
pub fn window(grants: &[&Grant], n: usize, now: Instant) -> Option<(Instant, Instant)> {
    let need = majority(n);
    let mut starts: Vec<Instant> = grants
        .iter()
        .map(|g| g.clean_at.max(now))
        .collect::<Vec<_>>();
    starts.sort();
    starts.dedup();
    for t in starts {
        let mut ends: Vec<Instant> = grants
            .iter()
            .filter(|g| g.clean_at <= t)
            .filter_map(|g| g.until)
            .filter(|u| *u > t)
            .collect();
        if ends.len() >= need {
            ends.sort_by(|a, b| b.cmp(a));
            return Some((t, ends[need - 1]));
        }
    }
    None
}

/// The term a new campaign takes: above every term seen.
pub fn next_term(highest: u64, observed: u64) -> u64 {
    highest.max(observed) + 1
}

impl Core {
    pub fn new(me: String, timing: Timing, n: usize) -> Core {
        Core {
            me,
            timing,
            nodes: (0..n).map(|_| NodeState::new()).collect(),
            term: 0,
            highest: 0,
            backoff_until: None,
            observed: 0,
        }
    }

    fn grants(&self) -> Vec<&Grant> {
        self.nodes.iter().filter_map(|s| s.grant.as_ref()).collect()
    }

    /// When this drover may act, if its grants make a majority now or later.
    pub fn window(&self, now: Instant) -> Option<Window> {
        if self.term == 0 || self.observed > self.term {
            return None;
        }
        let (from, until) = window(&self.grants(), self.nodes.len(), now)?;
        Some(Window {
            from,
            until,
            term: self.term,
            confirmed: until.checked_sub(self.timing.ttl).unwrap_or(from),
        })
    }

    /// True while this drover may act.
    pub fn acting(&self, now: Instant) -> bool {
        self.window(now).is_some_and(|w| w.from <= now)
    }

    /// Whether node `i`'s lease may be taken now, and how: (container to replace, when the
    /// grant would count from, why).
    pub fn takeable(
        &self,
        i: usize,
        now: Instant,
    ) -> Option<(Option<String>, Instant, &'static str)> {
        let s = &self.nodes[i];
        if s.grant.is_some() {
            return None;
        }
        match &s.view {
            View::Absent => Some((None, now, "absent")),
            View::Released { id, clean, .. } => {
                let at = if *clean { now } else { now + self.timing.ttl };
                Some((Some(id.clone()), at, "released"))
            }
            View::Held {
                id, exited: true, ..
            } => Some((Some(id.clone()), now, "holder-exited")),
            View::Held { id, holder, .. } if *holder == self.me => {
                // Ours from an earlier campaign (released late, or a create answered late).
                Some((Some(id.clone()), now + self.timing.ttl, "own-leftover"))
            }
            View::Held { id, counter, .. } => {
                let (wid, wc, since, last_sent) = s.watch.as_ref()?;
                if wid != id || wc != counter {
                    return None;
                }
                let silent = last_sent.saturating_duration_since(*since);
                // The holder's last renewal was sent before we first read its counter
                // (`since`): its claim ran out by `since + ttl`, at the latest.
                (silent >= self.timing.stale_after).then(|| {
                    (
                        Some(id.clone()),
                        (*since + self.timing.ttl).max(now),
                        "not-renewed",
                    )
                })
            }
            View::Unknown | View::Foreign => None,
        }
    }

    /// Other holders' highest term (live or not, released included).
    fn others_highest(&self) -> Option<(u64, String)> {
        self.nodes
            .iter()
            .filter_map(|s| match &s.view {
                View::Held { term, holder, .. } if *holder != self.me => {
                    Some((*term, holder.clone()))
                }
                View::Released { term, .. } => Some((*term, String::new())),
                _ => None,
            })
            .max()
    }

    /// Drop every grant (they are to be released); stop campaigning.
    fn step_down(&mut self, now: Instant, ops: &mut Vec<(usize, Op)>) {
        let acting = self.acting(now);
        for (i, s) in self.nodes.iter_mut().enumerate() {
            if let Some(g) = s.grant.take() {
                // We stop acting now; a grant that does not count yet still fences.
                let clean = !acting && g.clean_at <= now;
                if !s.busy {
                    s.busy = true;
                    ops.push((i, Op::Release { id: g.id, clean }));
                }
            }
        }
        self.term = 0;
    }

    /// What to send to each node that has no request in flight.
    pub fn round(&mut self, now: Instant, notes: &mut Vec<Note>) -> Vec<(usize, Op)> {
        let mut ops = Vec::new();
        self.highest = self
            .highest
            .max(self.observed)
            .max(self.nodes.iter().map(|s| s.view.term()).max().unwrap_or(0));
        // Terms: a higher one elsewhere ends ours; before leading, an equal one too (each
        // leadership its own term).
        if self.term > 0 {
            let leading = self.window(now).is_some();
            if let Some((seen, _)) = self
                .others_highest()
                .filter(|(t, _)| *t > self.term || (!leading && *t == self.term))
            {
                notes.push(Note::SteppedDown {
                    seen,
                    own: self.term,
                });
                let equal = seen == self.term;
                self.step_down(now, &mut ops);
                if equal {
                    self.backoff_until = Some(now + jitter(self.timing.interval));
                }
            } else if self.observed > self.term {
                notes.push(Note::SteppedDown {
                    seen: self.observed,
                    own: self.term,
                });
                self.step_down(now, &mut ops);
            }
        }
        let n = self.nodes.len();
        let mine = self.nodes.iter().filter(|s| s.grant.is_some()).count();
        let free: Vec<usize> = (0..n)
            .filter(|&i| self.takeable(i, now).is_some())
            .collect();
        let backing_off = self.backoff_until.is_some_and(|b| now < b);
        let campaign = mine + free.len() >= majority(n) && (self.term > 0 || !backing_off);
        if campaign && self.term == 0 && !free.is_empty() {
            self.term = next_term(self.highest, self.observed);
            self.highest = self.term;
            notes.push(Note::Campaign { term: self.term });
        }
        for i in 0..n {
            if self.nodes[i].busy {
                continue;
            }
            let op = if let Some(g) = self.nodes[i].grant.clone() {
                self.paced(i, now).then(|| Op::Renew {
                    id: g.id,
                    counter: g.counter + 1,
                })
            } else if let (true, Some((replace, clean_at, reason))) =
                (campaign && self.term > 0, self.takeable(i, now))
            {
                if let View::Held { holder, .. } = &self.nodes[i].view
                    && *holder != self.me
                {
                    let silent = self.nodes[i]
                        .watch
                        .as_ref()
                        .map_or(Duration::ZERO, |w| w.3.saturating_duration_since(w.2));
                    notes.push(Note::Takeover {
                        node: i,
                        holder: holder.clone(),
                        reason,
                        silent,
                    });
                }
                self.nodes[i].pending_clean_at = Some(clean_at);
                Some(Op::Take {
                    replace,
                    term: self.term,
                    clean_at,
                    reason,
                })
            } else if let View::Held { id, holder, .. } = &self.nodes[i].view
                && *holder == self.me
            {
                // Ours from an earlier campaign, and we do not campaign now: let it go
                // (it may still fence an earlier holder's claim: not clean).
                Some(Op::Release {
                    id: id.clone(),
                    clean: false,
                })
            } else {
                self.paced(i, now).then_some(Op::Look)
            };
            if let Some(op) = op {
                self.nodes[i].busy = true;
                ops.push((i, op));
            }
        }
        ops
    }

    /// True (and the next look or renewal scheduled) when node `i` is due one.
    fn paced(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.nodes[i];
        if s.next_at.is_some_and(|t| now < t) {
            return false;
        }
        s.next_at = Some(now + self.timing.interval);
        true
    }

    /// When the next request is due, for the task's sleep.
    pub fn next_due(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter(|s| !s.busy)
            .filter_map(|s| s.next_at)
            .min()
    }

    /// Take the outcome of node `i`'s request, sent when it came back (tests).
    #[cfg(test)]
    pub fn apply(&mut self, i: usize, outcome: Outcome, now: Instant, notes: &mut Vec<Note>) {
        self.apply_sent(i, outcome, now, now, notes)
    }

    /// Take the outcome of node `i`'s request, sent at `sent` (its answer came back at
    /// `now`).
    pub fn apply_sent(
        &mut self,
        i: usize,
        outcome: Outcome,
        now: Instant,
        sent: Instant,
        notes: &mut Vec<Note>,
    ) {
        let ttl = self.timing.ttl;
        let own_term = self.term;
        let me = self.me.clone();
        let s = &mut self.nodes[i];
        s.busy = false;
        match outcome {
            Outcome::Looked(None) => s.view = View::Unknown,
            Outcome::Looked(Some(view)) => {
                if let View::Held {
                    id,
                    counter,
                    holder,
                    term,
                    ..
                } = &view
                {
                    match s.watch.as_mut() {
                        Some((wid, wc, _, last_sent)) if wid == id && wc == counter => {
                            *last_sent = (*last_sent).max(sent);
                        }
                        _ => s.watch = Some((id.clone(), *counter, now, sent)),
                    }
                    // A create of ours answered too late for us to know: adopt it.
                    if *holder == me && own_term > 0 && *term == own_term && s.grant.is_none() {
                        s.grant = Some(Grant {
                            id: id.clone(),
                            counter: *counter,
                            term: *term,
                            clean_at: s.pending_clean_at.unwrap_or(now + ttl),
                            until: None,
                        });
                    }
                } else {
                    s.watch = None;
                }
                s.view = view;
            }
            Outcome::Renewed { sent, result } => match result {
                Renewal::Ok => {
                    if let Some(g) = &mut s.grant {
                        g.counter += 1;
                        g.until = Some(g.until.map_or(sent + ttl, |u| u.max(sent + ttl)));
                    }
                }
                Renewal::Gone => {
                    if s.grant.take().is_some() {
                        notes.push(Note::GrantLost { node: i });
                    }
                    s.view = View::Unknown;
                    s.watch = None;
                    s.next_at = None;
                }
                Renewal::Failed => {}
            },
            Outcome::Took {
                sent,
                result,
                term,
                clean_at,
            } => {
                match result {
                    Ok(Some(id)) if term == own_term => {
                        s.grant = Some(Grant {
                            id,
                            counter: 0,
                            term,
                            clean_at,
                            until: Some(sent + ttl),
                        });
                        s.pending_clean_at = None;
                    }
                    // We stepped down meanwhile: this container is released at the
                    // next look (it shows as our leftover).
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {}
                }
                s.view = View::Unknown;
                s.watch = None;
                s.next_at = None;
            }
            Outcome::Released => {
                s.view = View::Unknown;
                s.next_at = None;
            }
        }
    }

    /// The holder seen on a majority of nodes (ourselves included), its term and nodes.
    pub fn leader(&self, now: Instant) -> Option<(String, u64, Vec<usize>)> {
        if let Some(w) = self.window(now).filter(|w| w.from <= now) {
            let nodes = self.granted(now);
            return Some((self.me.clone(), w.term, nodes));
        }
        let mut by: Vec<(String, u64, Vec<usize>)> = Vec::new();
        for (i, s) in self.nodes.iter().enumerate() {
            if let View::Held { holder, term, .. } = &s.view
                && *holder != self.me
            {
                match by.iter_mut().find(|(h, t, _)| h == holder && t == term) {
                    Some(e) => e.2.push(i),
                    None => by.push((holder.clone(), *term, vec![i])),
                }
            }
        }
        by.into_iter()
            .filter(|(_, _, ns)| ns.len() >= majority(self.nodes.len()))
            .max_by_key(|(_, t, _)| *t)
    }

    /// The nodes whose grant to us counts now.
    pub fn granted(&self, now: Instant) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.grant
                    .as_ref()
                    .is_some_and(|g| g.clean_at <= now && g.until.is_some_and(|u| u > now))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Why this drover does not act now, in a few words (`None`: it acts).
    pub fn standby_reason(&self, now: Instant, names: &[String]) -> Option<String> {
        if self.acting(now) {
            return None;
        }
        let n = self.nodes.len();
        let need = majority(n);
        if let Some(w) = self.window(now) {
            return Some(format!(
                "fencing: acts in {} ms, once any earlier holder's lease has run out",
                w.from.saturating_duration_since(now).as_millis()
            ));
        }
        if self.observed > self.term && self.term > 0 {
            return Some(format!(
                "a project container carries term {}, above ours ({})",
                self.observed, self.term
            ));
        }
        if let Some((holder, term, nodes)) = self.leader(now) {
            let on: Vec<&str> = nodes.iter().map(|&i| names[i].as_str()).collect();
            return Some(format!(
                "another drover leads: {holder} (term {term}) on {}",
                on.join(",")
            ));
        }
        let reachable = self
            .nodes
            .iter()
            .filter(|s| s.view != View::Unknown || s.grant.is_some())
            .count();
        if reachable < need {
            return Some(format!(
                "no majority: {reachable} of {n} nodes answer, {need} needed"
            ));
        }
        if self.nodes.iter().any(|s| s.view == View::Foreign) {
            return Some("a container with the lease's name is not a lease: remove it".into());
        }
        let granted = self.granted(now).len();
        Some(format!(
            "waiting for the lease: granted by {granted} of {n} nodes, {need} needed"
        ))
    }
}

/// A delay between `base / 2` and `3 * base / 2`, different in each process and call: two
/// drovers that stepped down together do not campaign together again.
fn jitter(base: Duration) -> Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (std::process::id() as u64).rotate_left(32)
        ^ SEQ.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let frac = (x % 1000) as u32;
    base / 2 + base * frac / 1000
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
