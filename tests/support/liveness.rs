//! The liveness verdict both fault runs share: once the faults heal, a leader by the
//! deadline.

use std::time::Duration;

use super::secs::Secs;

/// Why a run failed liveness, if it did: no leader between `stable_at` (the faults
/// healed) and `deadline`, or the first one after the deadline.
pub fn liveness_failure(
    stable_at: Duration,
    leader_at: Option<Duration>,
    deadline: Duration,
) -> Option<String> {
    match leader_at {
        Some(at) if at <= deadline => None,
        Some(at) => Some(format!(
            "the first leader after {} appeared at {}, after the deadline {}",
            Secs(stable_at),
            Secs(at),
            Secs(deadline)
        )),
        None => Some(format!(
            "no leader between {} and the deadline {}",
            Secs(stable_at),
            Secs(deadline)
        )),
    }
}
