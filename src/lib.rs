//! Leadership tracking for units of a distributed application, on actix.

#[cfg(feature = "etcd")]
pub mod etcd;
mod latch;
mod names;
mod protocol;
pub mod testing;
mod ticket;
mod tracker;

pub use names::{validate_service, NameError, UnitName};
pub use protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Leader, LeaseError, LeaseInfo,
    ReleaseLeadership,
};
pub use ticket::{Ticket, TicketFuture};
pub use tracker::{ClaimLeader, Tracker, TrackerActor, TrackerError, WaitLeader, WaitMinion};
