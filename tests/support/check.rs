//! The checker: safety and liveness of one simulated [`Run`].
//!
//! - **Safety**: no two different units hold overlapping true-ticket intervals. Two
//!   intervals `[a, a + d]` and `[b, b + d]` overlap iff `max(a, b) < min(a + d, b + d)`;
//!   touching at one instant is fine (one lease ends exactly when the next begins).
//! - **Coverage**: every true-ticket interval of a unit lies inside a lease the manager
//!   granted that unit (the union of its [`Grant`]s, as the proxies saw them on the
//!   wire). This catches a tracker that says `true` without a lease even when no other
//!   unit happens to be asked at the same time.
//! - **Exclusive leases**: the leases of different units never overlap, across manager
//!   replacements too. This is what a replacement's grace must ensure.
//! - **No stale leader**: a `WaitMinion` asked while the unit leads resolves `false`
//!   (never `true`) no later than the unit's lease ends (contract rule 8: an unrenewed
//!   lease ends leadership at its expiry) — unless a process stall fell between the
//!   question and the answer, which makes every timer late by design.
//! - **Stopped means silent**: once a tracker has stopped (killed, or failed while
//!   plain), no claim or block from its unit reaches a proxy at any later instant until
//!   the driver starts a new tracker for it (contract rule 4 and §5: a killed
//!   supervised tracker stays inert).
//! - **Terms on tickets**: every `true` ticket's guarantee carries the term of the lease
//!   that covers it — a [`Tenure`]: the grants of one unit under one term, merged while
//!   the lease is live — and its `until` lies within that lease's end and no earlier
//!   than `r + d` (so `until ≥ asked + d` for a `ClaimLeader`, as contract §6 says).
//! - **Terms increase**: every grant either extends the live lease of its term (same
//!   unit) or opens a new tenure under a term greater than every earlier one — across
//!   manager replacements too, which is what `ManagerActor::recovering`'s clock-based
//!   terms must ensure. A term given again after its lease ended is *reused*.
//! - **Fence**: a `leadership::Fence` fed the term of every `true` ticket in the order
//!   they resolved admits each one (terms never go back).
//! - **Stale writes are fenced off**: whenever a stall outlasts a leader's guarantee
//!   (see [`StaleWrite`]), that leader's write under the old term is modelled arriving
//!   just after the next holder's first `true` ticket, and a `Fence` that has seen every
//!   term up to then must turn it away.
//! - **Liveness**: once the network has healed and every tracker runs (the window opens
//!   at `stable_at`), some tracker's `ClaimLeader` answers `true` no later than
//!   `stable_at + 2·d + d + grace left` ([`liveness_bound`](super::sim::liveness_bound)).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use leadership::{Fence, StaleTerm};

use super::liveness::liveness_failure;
use super::overlap::{overlapping, Violation};
use super::proxy::{Grant, Left};
use super::secs::Secs;
use super::sim::{Handover, Interval, MinionWatch, Promise, Run, Scope};
use super::trace::{Ask, Event, Request, What};

/// A stretch of time during which one unit held a lease without a break: the union
/// of overlapping or touching grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The unit's slot.
    pub slot: usize,
    /// When the first grant of the stretch was made.
    pub from: Duration,
    /// When the stretch's last lease ends.
    pub until: Duration,
}

/// One lease under one term: the grants of one unit under that term, merged while the
/// lease is live (an extension keeps the term).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenure {
    /// The holder's slot.
    pub slot: usize,
    /// The lease's term.
    pub term: u64,
    /// When the first grant of the lease was made.
    pub from: Duration,
    /// When the lease ends: the latest end of its grants, or its release or hand-over.
    pub until: Duration,
    /// When it would have ended but for a release or hand-over.
    pub granted: Duration,
}

/// A grant whose term breaks the order of terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermFinding {
    /// A new lease (a new holder, or the same unit after its lease ended) under a term
    /// no greater than the greatest term granted before.
    NotIncreasing { grant: Grant, greatest: u64 },
    /// A grant under the term of an earlier lease that had ended or was another unit's.
    Reused { grant: Grant, earlier: Tenure },
}

/// A `true` ticket whose guarantee is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuaranteeFinding {
    /// No lease of its unit under its term covers `[r, r + d]`; `covering` is a lease of
    /// the unit (under another term) that does, if any.
    WrongTerm {
        promise: Promise,
        covering: Option<Tenure>,
    },
    /// `until < r + d`: less than `d` promised from the answer.
    TooShort { promise: Promise },
    /// `until` after the end of the lease of its term as granted.
    PastLease { promise: Promise, lease: Tenure },
}

/// A leader stalled past its guarantee, and its write afterwards.
///
/// It *happens* when a stall `[s0, s1]` begins while a unit `L` holds a guarantee
/// (`writer`: `L`'s last `true` ticket resolved by `s0`, with `until > s0`) and ends
/// after that guarantee did (`until ≤ s1`), and afterwards a `true` ticket of a newer
/// holder resolves (`newer`: the first one at or after `s1` that is of another unit, or
/// of `L` under a lease granted after a break — not in the lease stretch of `writer`).
/// `L` wakes believing it leads and writes with the old term; the model has that write
/// reach the resource just after the newer holder's first write, as a write in flight
/// or a stall longer on `L`'s machine would. A `Fence` fed every `true` ticket up to
/// `newer` must turn it away. Which holder is newer is decided from the leases, not from
/// the terms, so a term that failed to grow shows up as an admitted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleWrite {
    /// The stall `[s0, s1]`.
    pub stall: (Duration, Duration),
    /// The stalled leader's last `true` ticket before the stall.
    pub writer: Promise,
    /// The newer holder's first `true` ticket after the stall.
    pub newer: Promise,
    /// What the fence said to the stale write: `Err` is right.
    pub fenced: Result<(), StaleTerm>,
}

/// What a leaving incarnation still owed when its release or hand-over took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owed {
    /// A `true` ticket whose `[r, r + d]` had not ended.
    Promise(Promise),
    /// A lead scope still running.
    Scope(Scope),
}

/// A release or hand-over the manager accepted before every promise and lead scope of
/// the leaving incarnation had ended (contract §6: the tracker keeps its lease until
/// then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftEarly {
    /// The release or hand-over.
    pub left: Left,
    /// What was still owed.
    pub owed: Owed,
}

/// The checker's findings for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every overlapping pair of intervals of different units.
    pub violations: Vec<Violation<Ask>>,
    /// True-ticket intervals not inside a lease of their unit.
    pub uncovered: Vec<Interval>,
    /// Overlapping leases of different units.
    pub shared_leases: Vec<(Held, Held)>,
    /// `WaitMinion` tickets of a leading unit that resolved `true`, or after its lease
    /// ended (with the lease stretch, if any).
    pub stale: Vec<(MinionWatch, Option<Held>)>,
    /// Requests from a stopped tracker: `(slot, stopped at, request, sent at)`.
    pub after_stop: Vec<(usize, Duration, Request, Duration)>,
    /// `true` tickets whose guarantee has the wrong term or `until`.
    pub guarantees: Vec<GuaranteeFinding>,
    /// Grants that break the order of terms.
    pub terms: Vec<TermFinding>,
    /// `true` tickets a fence fed every earlier `true` ticket turned away.
    pub fenced_out: Vec<(Promise, StaleTerm)>,
    /// Every stalled leader's write (see [`StaleWrite`]); unsafe if one was admitted.
    pub stale_writes: Vec<StaleWrite>,
    /// Releases and hand-overs that came before the leaver's promises ended.
    pub left_early: Vec<LeftEarly>,
    /// Not a safety finding: `true` tickets whose `[r, r + d]` had ended when their
    /// incarnation released or handed over its lease, but whose guarantee's `until` had
    /// not — contract §6 lets a resign end leadership before `until`.
    pub cut_short: Vec<(Left, Promise)>,
    /// Lead scopes that ran outside a lease of their unit under their term (ending
    /// late only across a stall is excused, as for `WaitMinion`).
    pub scopes_outside: Vec<Scope>,
    /// Lead scopes that ran while another unit held a `true` ticket or ran a scope.
    pub scopes_shared: Vec<(Scope, Owed)>,
    /// Why liveness failed, if it did.
    pub liveness_failure: Option<String>,
    /// Every resign or hand-over of the hand-over phase with its promise horizon, and
    /// how soon the next leader came (see [`handover_bound`]).
    pub handovers: Vec<(Handover, Duration, NextLeader)>,
}

/// How soon the next leader came after a resign or hand-over of the hand-over phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLeader {
    /// By the promise horizon plus four proxy delays.
    InTime,
    /// Later, but the successor of a hand-over was not blocked at the manager when the
    /// lease came to it (its claim was still being denied), so its block then waited
    /// for the lease it now held itself, and a leader (the successor, or whoever claimed
    /// first) came by the handed-over lease's expiry plus four proxy delays. A known gap
    /// of the hand-over protocol, counted, not failed.
    AtExpiry,
    /// Late, or never.
    Late,
}

impl Verdict {
    /// Whether the run is both safe and live.
    pub fn is_ok(&self) -> bool {
        self.is_safe() && self.is_live()
    }

    /// Whether a leader appeared in time after healing and after every resign or
    /// hand-over of the hand-over phase.
    pub fn is_live(&self) -> bool {
        self.liveness_failure.is_none() && self.handovers.iter().all(|h| h.2 != NextLeader::Late)
    }

    /// Whether the run broke none of the safety properties.
    pub fn is_safe(&self) -> bool {
        self.violations.is_empty()
            && self.uncovered.is_empty()
            && self.shared_leases.is_empty()
            && self.stale.is_empty()
            && self.after_stop.is_empty()
            && self.term_safe()
            && self.left_early.is_empty()
            && self.scopes_outside.is_empty()
            && self.scopes_shared.is_empty()
    }

    /// The kinds of safety finding in this run, by the names the report uses.
    pub fn finding_kinds(&self) -> Vec<&'static str> {
        let guarantee = |kind: fn(&GuaranteeFinding) -> bool| self.guarantees.iter().any(kind);
        let term = |kind: fn(&TermFinding) -> bool| self.terms.iter().any(kind);
        [
            ("overlapping tickets", !self.violations.is_empty()),
            ("uncovered tickets", !self.uncovered.is_empty()),
            ("shared leases", !self.shared_leases.is_empty()),
            ("stale leader", !self.stale.is_empty()),
            ("requests after stop", !self.after_stop.is_empty()),
            (
                "wrong term on a ticket",
                guarantee(|f| matches!(f, GuaranteeFinding::WrongTerm { .. })),
            ),
            (
                "guarantee shorter than d",
                guarantee(|f| matches!(f, GuaranteeFinding::TooShort { .. })),
            ),
            (
                "guarantee past its lease",
                guarantee(|f| matches!(f, GuaranteeFinding::PastLease { .. })),
            ),
            (
                "term not increasing",
                term(|f| matches!(f, TermFinding::NotIncreasing { .. })),
            ),
            (
                "term reused",
                term(|f| matches!(f, TermFinding::Reused { .. })),
            ),
            ("true ticket fenced out", !self.fenced_out.is_empty()),
            (
                "stale write admitted",
                self.stale_writes.iter().any(|w| w.fenced.is_ok()),
            ),
            (
                "left before a promise ended",
                self.left_early
                    .iter()
                    .any(|e| matches!(e.owed, Owed::Promise(_))),
            ),
            (
                "left while a scope ran",
                self.left_early
                    .iter()
                    .any(|e| matches!(e.owed, Owed::Scope(_))),
            ),
            ("scope outside its lease", !self.scopes_outside.is_empty()),
            (
                "scope beside another leader",
                !self.scopes_shared.is_empty(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, found)| found.then_some(name))
        .collect()
    }

    /// Whether the run broke none of the term properties (guarantees' terms and
    /// `until`, the order of terms, the fence, stale writes).
    pub fn term_safe(&self) -> bool {
        self.guarantees.is_empty()
            && self.terms.is_empty()
            && self.fenced_out.is_empty()
            && self.stale_writes.iter().all(|w| w.fenced.is_err())
    }
}

/// Checks safety and liveness of `run`.
pub fn check(run: &Run) -> Verdict {
    let intervals = run.intervals();
    let violations = overlapping(&intervals);
    let held = held(&run.grants, &run.leaves);
    let uncovered = intervals
        .iter()
        .filter(|i| !held.iter().any(|h| h.slot == i.slot && within(i, h)))
        .cloned()
        .collect();
    let (tenures, terms) = tenures(&run.grants, &run.leaves);
    let guarantees = guarantee_findings(run, &tenures);
    let fenced_out = fenced_out(&run.promises);
    let stale_writes = stale_writes(run, &held);
    let (left_early, cut_short) = left_early(run);
    let scopes_outside = run
        .scopes
        .iter()
        .filter(|c| {
            !tenures.iter().any(|t| {
                let began = t.slot == c.slot && t.term == c.term && t.from <= c.started;
                // A stall over the lease's end makes the cancelling timer late by
                // design; the work, frozen too, did nothing after the end.
                let stalled = run
                    .stalls
                    .iter()
                    .any(|&(s0, s1)| s0 < t.until && t.until <= s1 && c.ended <= s1);
                began && (c.ended <= t.until || stalled)
            })
        })
        .cloned()
        .collect();
    let scopes_shared = scopes_shared(run);
    let mut shared_leases = Vec::new();
    for (n, a) in held.iter().enumerate() {
        for b in held[n + 1..].iter().take_while(|b| b.from < a.until) {
            if a.slot != b.slot && a.from.max(b.from) < a.until.min(b.until) {
                shared_leases.push((*a, *b));
            }
        }
    }
    let mut stale = Vec::new();
    for w in &run.minion_watches {
        let lease = held
            .iter()
            .find(|h| h.slot == w.slot && h.from <= w.asked && w.asked < h.until)
            .copied();
        let stalled = run
            .stalls
            .iter()
            .any(|&(from, to)| from < w.resolved && w.asked < to);
        let late = lease.is_some_and(|h| w.resolved > h.until) && !stalled;
        if w.answer || late {
            stale.push((w.clone(), lease));
        }
    }
    let after_stop = requests_after_stop(&run.trace);
    let live = &run.liveness;
    let liveness_failure = liveness_failure(live.stable_at, live.leader_at, live.deadline);
    Verdict {
        violations,
        uncovered,
        shared_leases,
        stale,
        after_stop,
        guarantees,
        terms,
        fenced_out,
        stale_writes,
        left_early,
        cut_short,
        scopes_outside,
        scopes_shared,
        liveness_failure,
        handovers: run
            .handovers
            .iter()
            .map(|h| {
                let horizon = horizon(run, h);
                (h.clone(), horizon, next_leader(run, h, horizon))
            })
            .collect(),
    }
}

/// How soon the next leader came after `h`, whose horizon is `horizon`.
fn next_leader(run: &Run, h: &Handover, horizon: Duration) -> NextLeader {
    let Some((_, at)) = h.next else {
        return NextLeader::Late;
    };
    if at <= handover_bound(horizon, h.delay) {
        return NextLeader::InTime;
    }
    // The lease the successor was given: the grant recorded at the hand-over.
    let handed = run
        .leaves
        .iter()
        .find(|l| l.slot == h.slot && l.at >= h.asked && l.to == h.to && !l.successor_blocked)
        .and_then(|l| {
            run.grants
                .iter()
                .skip(l.grants_before)
                .find(|g| Some(g.slot) == h.to && g.from == l.at)
        });
    match handed {
        Some(g) if at <= g.until + 4 * h.delay => NextLeader::AtExpiry,
        _ => NextLeader::Late,
    }
}

/// The leaver's promise horizon for hand-over `h`: the instant it was asked to leave,
/// or the end of its incarnation's latest promise or lead scope, whichever is later.
pub fn horizon(run: &Run, h: &Handover) -> Duration {
    let ours = |slot, life| slot == h.slot && life == h.life;
    let promised = run
        .promises
        .iter()
        .filter(|p| ours(p.interval.slot, p.interval.life) && p.interval.start <= h.asked)
        .map(|p| p.interval.end);
    let scoped = run
        .scopes
        .iter()
        .filter(|c| ours(c.slot, c.life))
        .map(|c| c.ended);
    promised.chain(scoped).fold(h.asked, Duration::max)
}

/// When the next leader must have answered `true` after a resign or hand-over whose
/// promise horizon is `horizon`, on a network that delays each message by up to
/// `delay`: four messages stand in the way — a renewal in flight at the horizon (the
/// release waits for its answer), the release or hand-over itself, the successor's
/// block answer, and its claim.
pub fn handover_bound(horizon: Duration, delay: Duration) -> Duration {
    horizon + 4 * delay
}

/// Lead scopes that ran, for more than an instant, while another unit held a `true`
/// ticket's interval or ran a scope of its own.
fn scopes_shared(run: &Run) -> Vec<(Scope, Owed)> {
    let apart = |a: (Duration, Duration), b: (Duration, Duration)| a.0.max(b.0) >= a.1.min(b.1);
    let mut found = Vec::new();
    for (n, c) in run.scopes.iter().enumerate() {
        let span = (c.started, c.ended);
        for p in &run.promises {
            let i = &p.interval;
            if i.slot != c.slot && !apart(span, (i.start, i.end)) {
                found.push((c.clone(), Owed::Promise(p.clone())));
            }
        }
        for other in &run.scopes[n + 1..] {
            if other.slot != c.slot && !apart(span, (other.started, other.ended)) {
                found.push((c.clone(), Owed::Scope(other.clone())));
            }
        }
    }
    found
}

/// The incarnation of `slot` running at `at`, from the trace; `None` (any) for a
/// hand-made run whose trace does not say.
fn life_at(trace: &[Event], slot: usize, at: Duration) -> Option<u32> {
    trace
        .iter()
        .take_while(|e| e.at <= at)
        .filter_map(|e| match e.what {
            What::TrackerStarted { slot: s, life, .. } if s == slot => Some(life),
            _ => None,
        })
        .last()
}

/// Releases and hand-overs that took effect while a promise (`[r, r + d]`) or a lead
/// scope of the leaving incarnation was still running. A restarted incarnation cannot
/// know its predecessor's promises, so only the leaver's own count (the driver does not
/// make a unit leave within `d` of a kill; see `sim.rs`).
///
/// Also returns the promises that had ended but whose guarantee's `until` had not.
fn left_early(run: &Run) -> (Vec<LeftEarly>, Vec<(Left, Promise)>) {
    let mut found = Vec::new();
    let mut cut_short = Vec::new();
    for &left in &run.leaves {
        let life = life_at(&run.trace, left.slot, left.at);
        let ours = |slot: usize, l: u32| slot == left.slot && life.is_none_or(|life| life == l);
        for p in &run.promises {
            let i = &p.interval;
            if ours(i.slot, i.life) && i.start <= left.at && left.at < i.end {
                found.push(LeftEarly {
                    left,
                    owed: Owed::Promise(p.clone()),
                });
            } else if ours(i.slot, i.life) && i.end <= left.at && left.at < p.until {
                cut_short.push((left, p.clone()));
            }
        }
        for scope in &run.scopes {
            if ours(scope.slot, scope.life) && scope.started <= left.at && left.at < scope.ended {
                found.push(LeftEarly {
                    left,
                    owed: Owed::Scope(scope.clone()),
                });
            }
        }
    }
    (found, cut_short)
}

/// Whether interval `i` lies inside the lease stretch `h` (of any unit).
fn within(i: &Interval, h: &Held) -> bool {
    h.from <= i.start && i.end <= h.until
}

/// The leases under each term, in the order of their first grant, and the grants that
/// break the order of terms. Grants come in the order the proxies saw the manager's
/// answers, i.e. the order it handled them.
pub fn tenures(grants: &[Grant], leaves: &[Left]) -> (Vec<Tenure>, Vec<TermFinding>) {
    let mut tenures: Vec<Tenure> = Vec::new();
    // The latest tenure of each term.
    let mut by_term: HashMap<u64, usize> = HashMap::new();
    let mut findings = Vec::new();
    let mut greatest: Option<u64> = None;
    for event in wire(grants, leaves) {
        let grant = match event {
            Wire::Grant(grant) => grant,
            Wire::Left(l) => {
                // The leaver's live lease ends here.
                let live = tenures
                    .iter_mut()
                    .rev()
                    .find(|t| t.slot == l.slot && t.from <= l.at && l.at < t.until);
                if let Some(t) = live {
                    t.until = l.at;
                }
                continue;
            }
        };
        let fresh = Tenure {
            slot: grant.slot,
            term: grant.term,
            from: grant.from,
            until: grant.until,
            granted: grant.until,
        };
        match by_term.get(&grant.term).map(|&n| &mut tenures[n]) {
            // An extension of the live lease: the manager keeps its term.
            Some(t) if t.slot == grant.slot && grant.from < t.until => {
                t.until = t.until.max(grant.until);
                t.granted = t.until;
                continue;
            }
            Some(t) => findings.push(TermFinding::Reused { grant, earlier: *t }),
            None => {
                if let Some(greatest) = greatest.filter(|&g| grant.term <= g) {
                    findings.push(TermFinding::NotIncreasing { grant, greatest });
                }
            }
        }
        by_term.insert(grant.term, tenures.len());
        tenures.push(fresh);
        greatest = greatest.max(Some(grant.term));
    }
    (tenures, findings)
}

/// Checks every `true` ticket's guarantee against the lease of its term.
fn guarantee_findings(run: &Run, tenures: &[Tenure]) -> Vec<GuaranteeFinding> {
    let mut findings = Vec::new();
    for p in &run.promises {
        let i = &p.interval;
        let covers = |t: &&Tenure| t.slot == i.slot && t.from <= i.start && i.end <= t.until;
        match tenures.iter().filter(covers).find(|t| t.term == p.term) {
            None => findings.push(GuaranteeFinding::WrongTerm {
                promise: p.clone(),
                covering: tenures.iter().find(covers).copied(),
            }),
            // A resign may end the lease before `until` (contract §6 waits for
            // `handled_at + d` only): see `Verdict::cut_short`.
            Some(lease) if p.until > lease.granted => {
                findings.push(GuaranteeFinding::PastLease {
                    promise: p.clone(),
                    lease: *lease,
                });
            }
            Some(_) => {}
        }
        // `r + d ≥ asked + d`: the contract's bound for a ClaimLeader, and what a
        // WaitLeader's "leader with d guaranteed" means at the instant it resolves.
        if p.until < i.start + run.d {
            findings.push(GuaranteeFinding::TooShort { promise: p.clone() });
        }
    }
    findings
}

/// The `true` tickets a fence turns away when fed every `true` ticket in the order they
/// resolved: a term older than one already admitted.
fn fenced_out(promises: &[Promise]) -> Vec<(Promise, StaleTerm)> {
    let fence = Fence::new();
    promises
        .iter()
        .filter_map(|p| fence.admit(p.term).err().map(|e| (p.clone(), e)))
        .collect()
}

/// Every stalled leader's write (see [`StaleWrite`]) and what a fence said to it.
fn stale_writes(run: &Run, held: &[Held]) -> Vec<StaleWrite> {
    let promises = &run.promises;
    let stretch = |p: &Promise| {
        held.iter()
            .find(|h| h.slot == p.interval.slot && within(&p.interval, h))
            .copied()
    };
    let mut writes = Vec::new();
    for &(s0, s1) in &run.stalls {
        let mut slots: Vec<usize> = promises.iter().map(|p| p.interval.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            let Some(writer) = promises
                .iter()
                .rev()
                .find(|p| p.interval.slot == slot && p.interval.start <= s0)
            else {
                continue;
            };
            if !(s0 < writer.until && writer.until <= s1) {
                continue; // Not leading when the stall began, or still covered after it.
            }
            let lease = stretch(writer);
            let Some(n) = promises.iter().position(|p| {
                p.interval.start >= s1 && (p.interval.slot != slot || stretch(p) != lease)
            }) else {
                continue; // Nobody led after the stall.
            };
            // The resource has seen every write up to the newer holder's first.
            let fence = Fence::new();
            for p in &promises[..=n] {
                let _ = fence.admit(p.term);
            }
            writes.push(StaleWrite {
                stall: (s0, s1),
                writer: writer.clone(),
                newer: promises[n].clone(),
                fenced: fence.admit(writer.term),
            });
        }
    }
    writes
}

/// Requests a proxy received from a slot at an instant after its tracker stopped and
/// before a new one started. (At the stop instant itself a request may still be on its
/// way: it was sent before the stop.)
fn requests_after_stop(trace: &[Event]) -> Vec<(usize, Duration, Request, Duration)> {
    let mut stopped: HashMap<usize, Duration> = HashMap::new();
    let mut found = Vec::new();
    for event in trace {
        match event.what {
            What::TrackerStopped { slot, .. } => {
                stopped.insert(slot, event.at);
            }
            What::TrackerStarted { slot, .. } => {
                stopped.remove(&slot);
            }
            What::Relayed { slot, request, .. } => {
                if let Some(&at) = stopped.get(&slot) {
                    if event.at > at {
                        found.push((slot, at, request, event.at));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The stretches each unit held a lease, sorted by start: grants of one unit that
/// overlap or touch are merged (an extension continues the lease it extends).
/// A release or hand-over ends the leaver's stretch at that instant; a later grant to it
/// starts a new one.
pub fn held(grants: &[Grant], leaves: &[Left]) -> Vec<Held> {
    let mut held: Vec<Held> = Vec::new();
    // The stretch each slot may still extend.
    let mut open: HashMap<usize, usize> = HashMap::new();
    for event in wire(grants, leaves) {
        match event {
            Wire::Grant(g) => match open.get(&g.slot).map(|&n| &mut held[n]) {
                Some(h) if g.from <= h.until => h.until = h.until.max(g.until),
                _ => {
                    open.insert(g.slot, held.len());
                    held.push(Held {
                        slot: g.slot,
                        from: g.from,
                        until: g.until,
                    });
                }
            },
            Wire::Left(l) => {
                if let Some(n) = open.remove(&l.slot) {
                    let h = &mut held[n];
                    h.until = h.until.min(l.at.max(h.from));
                }
            }
        }
    }
    held.sort_by_key(|h| (h.from, h.slot));
    held
}

/// What the manager did, as the proxies saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A claim granted (or a hand-over's successor given the lease).
    Grant(Grant),
    /// A release or hand-over accepted.
    Left(Left),
}

/// Grants and leaves merged in the order the manager handled them.
pub fn wire(grants: &[Grant], leaves: &[Left]) -> Vec<Wire> {
    let mut events = Vec::with_capacity(grants.len() + leaves.len());
    let mut leaves = leaves.iter().peekable();
    for (n, g) in grants.iter().enumerate() {
        while let Some(l) = leaves.next_if(|l| l.grants_before <= n) {
            events.push(Wire::Left(*l));
        }
        events.push(Wire::Grant(*g));
    }
    events.extend(leaves.map(|l| Wire::Left(*l)));
    events
}

/// How many findings about `true` tickets a report lists of each kind (a tracker with a
/// wrong term gets one per ticket).
const SHOWN: usize = 20;

/// Notes the findings a report left out.
fn more(out: &mut String, found: usize) {
    if found > SHOWN {
        let _ = writeln!(out, "… and {} more of the kind above", found - SHOWN);
    }
}

/// `u0#1 ClaimLeader true at 1.200s (until 4.998s)`.
fn promised(p: &Promise) -> String {
    let i = &p.interval;
    format!(
        "u{}#{} {:?} true at {} (until {})",
        i.slot,
        i.life,
        i.ask,
        Secs(i.start),
        Secs(p.until)
    )
}

/// `u1's lease [0.000s, 4.000s] under term 3`.
fn tenure(t: &Tenure) -> String {
    format!(
        "u{}'s lease [{}, {}] under term {}",
        t.slot,
        Secs(t.from),
        Secs(t.until),
        t.term
    )
}

/// A readable account of a run (normally a failed one): the verdict, then the whole
/// trace.
pub fn report(seed: Option<u64>, run: &Run, verdict: &Verdict) -> String {
    let mut out = String::new();
    let outcome = if verdict.is_ok() { "passed" } else { "FAILED" };
    match seed {
        Some(seed) => {
            let _ = writeln!(out, "simulation seed {seed} {outcome}");
            let _ = writeln!(
                out,
                "replay: LEADERSHIP_SIM_SEED={seed} cargo test --test simulation -- --nocapture"
            );
        }
        None => {
            let _ = writeln!(out, "scripted simulation {outcome}");
        }
    }
    let _ = writeln!(out, "claim duration d = {:?}", run.d);
    for v in &verdict.violations {
        let _ = writeln!(
            out,
            "SAFETY: u{}#{} {:?} true over [{}, {}] overlaps u{}#{} {:?} true over [{}, {}]",
            v.first.slot,
            v.first.life,
            v.first.ask,
            Secs(v.first.start),
            Secs(v.first.end),
            v.second.slot,
            v.second.life,
            v.second.ask,
            Secs(v.second.start),
            Secs(v.second.end),
        );
    }
    for i in &verdict.uncovered {
        let _ = writeln!(
            out,
            "COVERAGE: u{}#{} {:?} true over [{}, {}] lies outside every lease of u{}",
            i.slot,
            i.life,
            i.ask,
            Secs(i.start),
            Secs(i.end),
            i.slot
        );
    }
    for (a, b) in &verdict.shared_leases {
        let _ = writeln!(
            out,
            "LEASES: u{} held [{}, {}] while u{} held [{}, {}]",
            a.slot,
            Secs(a.from),
            Secs(a.until),
            b.slot,
            Secs(b.from),
            Secs(b.until)
        );
    }
    for (w, lease) in &verdict.stale {
        let _ = writeln!(
            out,
            "STALE: u{}#{} WaitMinion asked at {} while leading resolved {} at {}; lease {}",
            w.slot,
            w.life,
            Secs(w.asked),
            w.answer,
            Secs(w.resolved),
            lease.map_or("none".to_owned(), |h| format!(
                "[{}, {}]",
                Secs(h.from),
                Secs(h.until)
            )),
        );
    }
    for (slot, stopped, request, at) in &verdict.after_stop {
        let _ = writeln!(
            out,
            "SILENCE: u{slot} stopped at {} but sent a {request:?} at {}",
            Secs(*stopped),
            Secs(*at)
        );
    }
    for finding in verdict.guarantees.iter().take(SHOWN) {
        let _ = match finding {
            GuaranteeFinding::WrongTerm { promise, covering } => writeln!(
                out,
                "TERM: {} carries term {}, but {}",
                promised(promise),
                promise.term,
                covering.map_or("no lease of its unit covers it".to_owned(), |t| format!(
                    "the lease covering it has term {} ({})",
                    t.term,
                    tenure(&t)
                )),
            ),
            GuaranteeFinding::TooShort { promise } => writeln!(
                out,
                "GUARANTEE: {} promises less than d = {:?} from the answer",
                promised(promise),
                run.d
            ),
            GuaranteeFinding::PastLease { promise, lease } => writeln!(
                out,
                "GUARANTEE: {} promises past the end of its lease ({})",
                promised(promise),
                tenure(lease)
            ),
        };
    }
    more(&mut out, verdict.guarantees.len());
    for finding in &verdict.terms {
        let _ = match finding {
            TermFinding::NotIncreasing { grant, greatest } => writeln!(
                out,
                "TERMS: u{} granted a new lease at {} under term {}, not above term {} granted before",
                grant.slot,
                Secs(grant.from),
                grant.term,
                greatest
            ),
            TermFinding::Reused { grant, earlier } => writeln!(
                out,
                "TERMS: u{} granted at {} under term {}, the term of an earlier lease ({})",
                grant.slot,
                Secs(grant.from),
                grant.term,
                tenure(earlier)
            ),
        };
    }
    for (promise, stale) in verdict.fenced_out.iter().take(SHOWN) {
        let _ = writeln!(out, "FENCE: {} turned away: {stale}", promised(promise));
    }
    more(&mut out, verdict.fenced_out.len());
    for w in verdict.stale_writes.iter().filter(|w| w.fenced.is_ok()) {
        let _ = writeln!(
            out,
            "STALE WRITE ADMITTED: u{} stalled over [{}, {}] past its guarantee ({}), \
             then wrote under term {} after {} under term {}",
            w.writer.interval.slot,
            Secs(w.stall.0),
            Secs(w.stall.1),
            promised(&w.writer),
            w.writer.term,
            promised(&w.newer),
            w.newer.term
        );
    }
    for early in verdict.left_early.iter().take(SHOWN) {
        let l = &early.left;
        let how = l.to.map_or("released its lease".to_owned(), |to| {
            format!("handed its lease over to u{to}")
        });
        let _ = match &early.owed {
            Owed::Promise(p) => writeln!(
                out,
                "LEFT EARLY: u{} {how} at {} while {} still ran (to {})",
                l.slot,
                Secs(l.at),
                promised(p),
                Secs(p.interval.end)
            ),
            Owed::Scope(scope) => writeln!(
                out,
                "LEFT EARLY: u{} {how} at {} while its lead scope [{}, {}] ran",
                l.slot,
                Secs(l.at),
                Secs(scope.started),
                Secs(scope.ended)
            ),
        };
    }
    more(&mut out, verdict.left_early.len());
    let scope = |c: &Scope| {
        format!(
            "u{}#{} lead scope [{}, {}] (term {}, until {})",
            c.slot,
            c.life,
            Secs(c.started),
            Secs(c.ended),
            c.term,
            Secs(c.until)
        )
    };
    for c in verdict.scopes_outside.iter().take(SHOWN) {
        let _ = writeln!(out, "SCOPE: {} ran outside its lease", scope(c));
    }
    more(&mut out, verdict.scopes_outside.len());
    for (c, other) in verdict.scopes_shared.iter().take(SHOWN) {
        let other = match other {
            Owed::Promise(p) => promised(p),
            Owed::Scope(o) => scope(o),
        };
        let _ = writeln!(out, "SCOPE: {} ran beside {other}", scope(c));
    }
    more(&mut out, verdict.scopes_shared.len());
    if !verdict.term_safe() {
        let _ = writeln!(out, "leases by term (the trace leaves terms out):");
        for t in tenures(&run.grants, &run.leaves).0 {
            let _ = writeln!(out, "  {}", tenure(&t));
        }
    }
    for (h, horizon, _) in verdict.handovers.iter().filter(|h| h.2 == NextLeader::Late) {
        let how =
            h.to.map_or("resigned".to_owned(), |to| format!("handed over to u{to}"));
        let next = h.next.map_or("no other unit led".to_owned(), |(o, at)| {
            format!("u{o} led at {}", Secs(at))
        });
        let _ = writeln!(
            out,
            "HAND-OVER: u{}#{} {how} at {}, promise horizon {}, due by {}, but {next}",
            h.slot,
            h.life,
            Secs(h.asked),
            Secs(*horizon),
            Secs(handover_bound(*horizon, h.delay))
        );
    }
    if let Some(why) = &verdict.liveness_failure {
        let _ = writeln!(out, "LIVENESS: {why}");
    }
    let _ = writeln!(out, "trace ({} events):", run.trace.len());
    for event in &run.trace {
        let _ = writeln!(out, "  {event}");
    }
    out
}
