//! Leadership tracking for units of a distributed application, on actix.

#[cfg(feature = "etcd")]
pub mod etcd;
mod names;
mod protocol;

pub use names::{validate_service, NameError, UnitName};
pub use protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Leader, LeaseError, LeaseInfo,
    ReleaseLeadership,
};
