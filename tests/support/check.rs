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
//! - **Liveness**: once the network has healed and every tracker runs (the window opens
//!   at `stable_at`), some tracker's `ClaimLeader` answers `true` no later than
//!   `stable_at + 2·d + d + grace left` ([`liveness_bound`](super::sim::liveness_bound)).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::proxy::Grant;
use super::sim::{Interval, MinionWatch, Run};
use super::trace::{Event, Request, Secs, What};

/// Two intervals of different units that overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The interval that started first.
    pub first: Interval,
    /// The one that started inside it.
    pub second: Interval,
}

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

/// The checker's findings for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every overlapping pair of intervals of different units.
    pub violations: Vec<Violation>,
    /// True-ticket intervals not inside a lease of their unit.
    pub uncovered: Vec<Interval>,
    /// Overlapping leases of different units.
    pub shared_leases: Vec<(Held, Held)>,
    /// `WaitMinion` tickets of a leading unit that resolved `true`, or after its lease
    /// ended (with the lease stretch, if any).
    pub stale: Vec<(MinionWatch, Option<Held>)>,
    /// Requests from a stopped tracker: `(slot, stopped at, request, sent at)`.
    pub after_stop: Vec<(usize, Duration, Request, Duration)>,
    /// Why liveness failed, if it did.
    pub liveness_failure: Option<String>,
}

impl Verdict {
    /// Whether the run is both safe and live.
    pub fn is_ok(&self) -> bool {
        self.is_safe() && self.liveness_failure.is_none()
    }

    /// Whether the run broke none of the safety properties.
    pub fn is_safe(&self) -> bool {
        self.violations.is_empty()
            && self.uncovered.is_empty()
            && self.shared_leases.is_empty()
            && self.stale.is_empty()
            && self.after_stop.is_empty()
    }
}

/// Whether two closed intervals overlap in more than a point.
pub fn overlap(a: &Interval, b: &Interval) -> bool {
    a.start.max(b.start) < a.end.min(b.end)
}

/// Every pair of intervals of different units that overlap, the earlier-starting one
/// first. Intervals may have any lengths (the etcd fault run records shorter ones than
/// the simulation's `[r, r + d]`).
pub fn overlapping(intervals: &[Interval]) -> Vec<Violation> {
    let mut sorted = intervals.to_vec();
    sorted.sort_by_key(|i| (i.start, i.slot));
    let mut violations = Vec::new();
    for (n, first) in sorted.iter().enumerate() {
        // Sorted by start: only intervals starting before `first` ends can overlap it.
        for second in sorted[n + 1..].iter().take_while(|s| s.start < first.end) {
            if second.slot != first.slot && overlap(first, second) {
                violations.push(Violation {
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
    }
    violations
}

/// Checks safety and liveness of `run`.
pub fn check(run: &Run) -> Verdict {
    let violations = overlapping(&run.intervals);
    let held = held(&run.grants);
    let uncovered = run
        .intervals
        .iter()
        .filter(|i| {
            !held
                .iter()
                .any(|h| h.slot == i.slot && h.from <= i.start && i.end <= h.until)
        })
        .cloned()
        .collect();
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
    let liveness_failure = match live.leader_at {
        Some(at) if at <= live.deadline => None,
        Some(at) => Some(format!(
            "the first leader after {} appeared at {}, after the deadline {}",
            Secs(live.stable_at),
            Secs(at),
            Secs(live.deadline)
        )),
        None => Some(format!(
            "no leader between {} and the deadline {}",
            Secs(live.stable_at),
            Secs(live.deadline)
        )),
    };
    Verdict {
        violations,
        uncovered,
        shared_leases,
        stale,
        after_stop,
        liveness_failure,
    }
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
pub fn held(grants: &[Grant]) -> Vec<Held> {
    let mut grants = grants.to_vec();
    grants.sort_by_key(|g| (g.slot, g.from));
    let mut held: Vec<Held> = Vec::new();
    for g in grants {
        match held.last_mut() {
            Some(h) if h.slot == g.slot && g.from <= h.until => h.until = h.until.max(g.until),
            _ => held.push(Held {
                slot: g.slot,
                from: g.from,
                until: g.until,
            }),
        }
    }
    held.sort_by_key(|h| (h.from, h.slot));
    held
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
    if let Some(why) = &verdict.liveness_failure {
        let _ = writeln!(out, "LIVENESS: {why}");
    }
    let _ = writeln!(out, "trace ({} events):", run.trace.len());
    for event in &run.trace {
        let _ = writeln!(out, "  {event}");
    }
    out
}
