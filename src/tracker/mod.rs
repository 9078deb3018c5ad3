//! The leadership tracker: [`TrackerActor`], its messages, the [`Tracker`] handle, its
//! [`Status`], and the pure state machine that makes every decision.

mod actor;
pub(crate) mod gate;
mod handle;
pub(crate) mod machine;
mod shared;
mod status;

use std::time::Duration;

pub use actor::{ClaimLeader, Resign, StopTracker, TrackerActor, WaitLeader, WaitMinion};
pub use handle::Tracker;
pub use status::Status;

use crate::protocol::LeaseError;

/// Why a tracker could not start, stopped with a failure, or refused a hand-over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// A claim failed or went unanswered (contract rule 4), or a resigning tracker's
    /// release or hand-over failed (the lease then expires on its own).
    #[error("leadership failure: {0}")]
    LeadershipFailure(LeaseError),
    /// The claim duration is zero, or too long to represent its lease.
    #[error("invalid claim duration {0:?}")]
    InvalidDuration(Duration),
    /// A hand-over to a unit of another service, or to the unit itself.
    #[error("invalid successor {0}")]
    InvalidSuccessor(String),
}
