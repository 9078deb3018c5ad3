//! The lease-manager protocol: the messages every lease manager handles, their errors,
//! and [`Claimer`], the part of a manager a tracker talks to.
//!
//! Any actor that handles [`ClaimLeadership`] and [`BlockUntilLeadershipReleased`] can
//! back a tracker: the in-memory [`ManagerActor`](crate::ManagerActor), the etcd-backed
//! manager, a remote client, or a test stub.

use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::names::{validate_service, UnitName};

/// Claims (or extends) leadership of `service` for `unit`, for `duration` from the
/// moment the manager handles it.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), LeaseError>")]
pub struct ClaimLeadership {
    /// The service whose leadership is claimed, e.g. `"led-service"`.
    pub service: String,
    /// The claiming unit, e.g. `"led-service/0"`; must belong to `service`.
    pub unit: String,
    /// How long the lease must last; greater than zero.
    pub duration: Duration,
}

/// Answers once `service` has no live lease: at once if it has none now, otherwise
/// when the lease expires or is released.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), LeaseError>")]
pub struct BlockUntilLeadershipReleased {
    /// The service to watch.
    pub service: String,
}

/// Gives up `unit`'s lease on `service` before it expires.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), LeaseError>")]
pub struct ReleaseLeadership {
    /// The service whose lease is released.
    pub service: String,
    /// The unit that must hold it.
    pub unit: String,
}

/// Asks for the live lease of `service`, if any.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Option<LeaseInfo>")]
pub struct Leader {
    /// The service asked about.
    pub service: String,
}

/// A live lease as a manager sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The holding unit, e.g. `"led-service/0"`.
    pub holder: String,
    /// The instant the lease ends, on tokio's clock.
    pub expires: tokio::time::Instant,
    /// Fencing token: per service, strictly increases every time the holder changes
    /// (a holder extending its own lease keeps its term).
    pub term: u64,
}

/// Why a lease manager refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another unit holds a live lease.
    #[error("leadership claim denied")]
    ClaimDenied,
    /// A release by a unit that does not hold the lease.
    #[error("leadership not held by {unit}")]
    NotHeld {
        /// The unit that asked to release.
        unit: String,
    },
    /// The manager stopped while a block was waiting.
    #[error("waiting for leadership release was cancelled")]
    BlockCancelled,
    /// The request itself is malformed; the manager is unchanged and keeps serving.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Any other failure (store unreachable, timeout, manager gone, …).
    #[error("{0}")]
    Failed(String),
}

impl LeaseError {
    /// The error for a request the manager could not receive or answer.
    pub(crate) fn unreachable(err: MailboxError) -> LeaseError {
        LeaseError::Failed(format!("lease manager unreachable: {err}"))
    }
}

/// What a tracker talks to: the two recipients of the claim protocol, taken from any
/// actor that handles them.
///
/// Cloning a `Claimer` only increments two reference counts: every tracker of a process
/// holds a clone, and cloning the recipients themselves would allocate three blocks
/// each (actix gives every `Recipient` clone its own boxed sender and parking state).
#[derive(Clone, Debug)]
pub struct Claimer {
    pub(crate) claim: Arc<Recipient<ClaimLeadership>>,
    pub(crate) block: Arc<Recipient<BlockUntilLeadershipReleased>>,
}

impl Claimer {
    /// Takes both recipients from one manager actor.
    pub fn new<A>(addr: &Addr<A>) -> Claimer
    where
        A: Actor + Handler<ClaimLeadership> + Handler<BlockUntilLeadershipReleased>,
        A::Context: ToEnvelope<A, ClaimLeadership> + ToEnvelope<A, BlockUntilLeadershipReleased>,
    {
        Claimer::from_recipients(addr.clone().recipient(), addr.clone().recipient())
    }

    /// Builds a claimer from two recipients, e.g. of two different actors.
    pub fn from_recipients(
        claim: Recipient<ClaimLeadership>,
        block: Recipient<BlockUntilLeadershipReleased>,
    ) -> Claimer {
        Claimer {
            claim: Arc::new(claim),
            block: Arc::new(block),
        }
    }
}

/// Validates a service name for any manager request.
pub(crate) fn check_service(service: &str) -> Result<(), LeaseError> {
    validate_service(service).map_err(|e| LeaseError::Invalid(e.to_string()))
}

/// Validates a unit name of `service` for any manager request.
pub(crate) fn check_unit(service: &str, unit: &str) -> Result<UnitName, LeaseError> {
    check_service(service)?;
    let unit = UnitName::new(unit).map_err(|e| LeaseError::Invalid(e.to_string()))?;
    if unit.service() != service {
        return Err(LeaseError::Invalid(format!(
            "unit {unit:?} does not belong to service {service:?}",
            unit = unit.as_str()
        )));
    }
    Ok(unit)
}

/// Validates a claim and returns the instant its lease would end if granted at `now`.
pub(crate) fn check_claim(
    claim: &ClaimLeadership,
    now: tokio::time::Instant,
) -> Result<tokio::time::Instant, LeaseError> {
    check_unit(&claim.service, &claim.unit)?;
    if claim.duration.is_zero() {
        return Err(LeaseError::Invalid(
            "claim duration must be positive".into(),
        ));
    }
    now.checked_add(claim.duration).ok_or_else(|| {
        LeaseError::Invalid(format!("claim duration {:?} is too long", claim.duration))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(service: &str, unit: &str, secs: u64) -> ClaimLeadership {
        ClaimLeadership {
            service: service.into(),
            unit: unit.into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn claim_checks_reject_bad_input_with_invalid() {
        let now = tokio::time::Instant::now();
        for bad in [
            claim("", "a/0", 1),
            claim("a", "", 1),
            claim("a", "b/0", 1),
            claim("a", "a/x", 1),
            claim("A", "A/0", 1),
            claim("a", "a/0", 0),
        ] {
            assert!(
                matches!(check_claim(&bad, now), Err(LeaseError::Invalid(_))),
                "{bad:?}"
            );
        }
        let huge = ClaimLeadership {
            duration: Duration::MAX,
            ..claim("a", "a/0", 1)
        };
        assert!(matches!(
            check_claim(&huge, now),
            Err(LeaseError::Invalid(_))
        ));
        assert_eq!(
            check_claim(&claim("a", "a/0", 2), now),
            Ok(now + Duration::from_secs(2))
        );
    }

    #[test]
    fn errors_display_as_the_contract_says() {
        assert_eq!(LeaseError::Failed("pow".into()).to_string(), "pow");
        assert_eq!(
            LeaseError::ClaimDenied.to_string(),
            "leadership claim denied"
        );
        assert_eq!(
            LeaseError::NotHeld { unit: "a/0".into() }.to_string(),
            "leadership not held by a/0"
        );
    }
}
