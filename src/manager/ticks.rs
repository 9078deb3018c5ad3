//! [`Epoch`]: instants as nanoseconds since the manager started, in 8 bytes.
//!
//! Why not `Instant`: a lease keeps two instants (its end, and where its expiry-index
//! entry is filed) and the index keys on one, and an `Instant` is 16 bytes. As a `u64`
//! of nanoseconds each is 8, which is what lets a lease map entry fit 64 bytes (one
//! cache line, see the manager's module docs), and a renewal compares plain integers.
//! A `u64` of nanoseconds spans about 584 years from the manager's start: a claim whose
//! lease would end later is refused as too long, like one `Instant` cannot represent.

use std::time::Duration;

use tokio::time::Instant;

/// The instant the manager counts from. Every instant it converts is at or after it
/// (it is taken when the actor starts, and tokio's clock never goes back).
#[derive(Debug, Clone, Copy)]
pub(super) struct Epoch(Instant);

impl Default for Epoch {
    fn default() -> Epoch {
        Epoch(Instant::now())
    }
}

impl Epoch {
    /// `at` in nanoseconds since the epoch: 0 before it, `u64::MAX` beyond 584 years.
    pub(super) fn ticks(self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The tick `duration` after `now`, if a `u64` holds it.
    pub(super) fn after(now: u64, duration: Duration) -> Option<u64> {
        u64::try_from(duration.as_nanos())
            .ok()
            .and_then(|nanos| now.checked_add(nanos))
    }

    /// The instant of `ticks`. Every tick the manager holds came from an instant
    /// (`ticks` of `now`, plus a duration that `Instant` could also add), so it is
    /// representable.
    pub(super) fn instant(self, ticks: u64) -> Instant {
        self.0 + Duration::from_nanos(ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_exactly_and_saturate_at_the_ends() {
        let epoch = Epoch::default();
        let later = epoch.0 + Duration::new(3_600, 123_456_789);
        let ticks = epoch.ticks(later);
        assert_eq!(ticks, 3_600_123_456_789);
        assert_eq!(epoch.instant(ticks), later);
        assert_eq!(epoch.ticks(epoch.0), 0);
        // Before the epoch: 0, not a wrap-around.
        let before = Epoch(later);
        assert_eq!(before.ticks(epoch.0), 0);
        // Beyond a u64 of nanoseconds (about 584 years): the largest tick.
        let far = epoch.0 + Duration::from_secs(600 * 365 * 86_400);
        assert_eq!(epoch.ticks(far), u64::MAX);
    }

    #[test]
    fn after_adds_a_duration_unless_a_u64_cannot_hold_the_sum() {
        assert_eq!(Epoch::after(5, Duration::from_nanos(7)), Some(12));
        assert_eq!(
            Epoch::after(1, Duration::from_nanos(u64::MAX - 1)),
            Some(u64::MAX)
        );
        assert_eq!(Epoch::after(2, Duration::from_nanos(u64::MAX - 1)), None);
        assert_eq!(Epoch::after(0, Duration::MAX), None);
    }
}
