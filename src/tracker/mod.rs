//! The leadership tracker: [`TrackerActor`], its messages, the [`Tracker`] handle, and
//! the pure state machine that makes every decision.

mod actor;
mod handle;
pub(crate) mod machine;

use std::time::Duration;

pub use actor::{ClaimLeader, TrackerActor, WaitLeader, WaitMinion};
pub use handle::Tracker;

use crate::protocol::LeaseError;

/// Why a tracker could not start or stopped with a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// A claim failed or went unanswered (contract rule 4).
    #[error("leadership failure: {0}")]
    LeadershipFailure(LeaseError),
    /// The claim duration is zero, or too long to represent its lease.
    #[error("invalid claim duration {0:?}")]
    InvalidDuration(Duration),
}
