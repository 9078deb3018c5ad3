//! The safety check both fault runs share: no two units' `true` tickets overlap.

use std::time::Duration;

/// A stretch of time over which a unit's `true` ticket proves it held leadership.
pub trait Span: Clone {
    /// The tracker slot of the unit.
    fn slot(&self) -> usize;
    /// When the stretch begins.
    fn start(&self) -> Duration;
    /// When it ends.
    fn end(&self) -> Duration;
}

/// Two intervals of different units that overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<I> {
    /// The interval that started first.
    pub first: I,
    /// The one that started inside it.
    pub second: I,
}

/// Whether two closed intervals overlap in more than a point.
pub fn overlap(a: &impl Span, b: &impl Span) -> bool {
    a.start().max(b.start()) < a.end().min(b.end())
}

/// Every pair of intervals of different units that overlap, the earlier-starting one
/// first. Intervals may have any lengths (the etcd fault run records shorter ones than
/// the simulation's `[r, r + d]`).
pub fn overlapping<I: Span>(intervals: &[I]) -> Vec<Violation<I>> {
    let mut sorted = intervals.to_vec();
    sorted.sort_by_key(|i| (i.start(), i.slot()));
    let mut violations = Vec::new();
    for (n, first) in sorted.iter().enumerate() {
        // Sorted by start: only intervals starting before `first` ends can overlap it.
        for second in sorted[n + 1..]
            .iter()
            .take_while(|s| s.start() < first.end())
        {
            if second.slot() != first.slot() && overlap(first, second) {
                violations.push(Violation {
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
    }
    violations
}
