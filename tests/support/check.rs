//! The checker: safety and liveness of one simulated [`Run`].
//!
//! - **Safety**: no two different units hold overlapping true-ticket intervals. Two
//!   intervals `[a, a + d]` and `[b, b + d]` overlap iff `max(a, b) < min(a + d, b + d)`;
//!   touching at one instant is fine (one lease ends exactly when the next begins).
//! - **Liveness**: once the network has healed and every tracker runs (the window opens
//!   at `stable_at`), some tracker's `ClaimLeader` answers `true` no later than
//!   `stable_at + 2·d + d + grace left` ([`liveness_bound`](super::sim::liveness_bound)).

use std::fmt::Write as _;

use super::sim::{Interval, Run};
use super::trace::Secs;

/// Two intervals of different units that overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The interval that started first.
    pub first: Interval,
    /// The one that started inside it.
    pub second: Interval,
}

/// The checker's findings for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every overlapping pair of intervals of different units.
    pub violations: Vec<Violation>,
    /// Why liveness failed, if it did.
    pub liveness_failure: Option<String>,
}

impl Verdict {
    /// Whether the run is both safe and live.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && self.liveness_failure.is_none()
    }
}

/// Whether two closed intervals overlap in more than a point.
pub fn overlap(a: &Interval, b: &Interval) -> bool {
    a.start.max(b.start) < a.end.min(b.end)
}

/// Checks safety and liveness of `run`.
pub fn check(run: &Run) -> Verdict {
    let mut sorted = run.intervals.clone();
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
        liveness_failure,
    }
}

/// A readable account of a failed run: the verdict, then the whole trace.
pub fn report(seed: Option<u64>, run: &Run, verdict: &Verdict) -> String {
    let mut out = String::new();
    match seed {
        Some(seed) => {
            let _ = writeln!(out, "simulation seed {seed} FAILED");
            let _ = writeln!(
                out,
                "replay: LEADERSHIP_SIM_SEED={seed} cargo test --test simulation -- --nocapture"
            );
        }
        None => {
            let _ = writeln!(out, "scripted simulation:");
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
    if let Some(why) = &verdict.liveness_failure {
        let _ = writeln!(out, "LIVENESS: {why}");
    }
    let _ = writeln!(out, "trace ({} events):", run.trace.len());
    for event in &run.trace {
        let _ = writeln!(out, "  {event}");
    }
    out
}
