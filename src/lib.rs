//! Leadership tracking for units of a distributed application, on actix.

mod names;
mod protocol;
pub mod testing;

pub use names::{validate_service, NameError, UnitName};
pub use protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Leader, LeaseError, LeaseInfo,
    ReleaseLeadership,
};
