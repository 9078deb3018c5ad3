//! The safety check both fault runs share: no two units' `true` tickets overlap.

use std::time::Duration;

/// A `true` ticket: its unit held leadership over `[start, end]` (time since the start
/// of the run). The simulation records `end = start + d` and its `A` says which
/// question was asked; the etcd fault run, on a real clock, records a shorter end it
/// can prove, always of a `ClaimLeader` (see each for why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval<A> {
    /// The tracker slot, i.e. the unit `<service>/<slot>`.
    pub slot: usize,
    /// Which incarnation of the slot's tracker answered.
    pub life: u32,
    /// Which question it answered.
    pub ask: A,
    /// When the question was asked.
    pub asked: Duration,
    /// When the ticket resolved `true` (`r`).
    pub start: Duration,
    /// When the leadership it proves ends at the earliest.
    pub end: Duration,
}

/// Two intervals of different units that overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<A> {
    /// The interval that started first.
    pub first: Interval<A>,
    /// The one that started inside it.
    pub second: Interval<A>,
}

/// Whether two closed intervals overlap in more than a point.
pub fn overlap<A>(a: &Interval<A>, b: &Interval<A>) -> bool {
    a.start.max(b.start) < a.end.min(b.end)
}

/// Every pair of intervals of different units that overlap, the earlier-starting one
/// first. Intervals may have any lengths.
pub fn overlapping<A: Clone>(intervals: &[Interval<A>]) -> Vec<Violation<A>> {
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
