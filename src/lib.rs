//! Leadership tracking for units of a distributed application, on actix.

mod manager;
mod names;
mod protocol;

pub use manager::{ManagerActor, StopManager};
pub use names::{validate_service, NameError, UnitName};
pub use protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Leader, LeaseError, LeaseInfo,
    ReleaseLeadership,
};
