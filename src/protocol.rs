//! The lease-manager protocol: the messages every lease manager handles, their errors,
//! and [`Claimer`], the part of a manager a tracker talks to.
//!
//! Any actor that handles [`ClaimLeadership`], [`BlockUntilLeadershipReleased`],
//! [`ReleaseLeadership`] and [`HandOverLeadership`] can back a tracker: the in-memory
//! [`ManagerActor`](crate::ManagerActor), the etcd-backed manager, a remote client, or a
//! test stub.

use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::names::{validate_service, UnitName};
use crate::tracker::gate::{FirstClaims, FIRST_CLAIMS_IN_FLIGHT};

/// Claims (or extends) leadership of `service` for `unit`, for `duration` from the
/// moment the manager handles it. Granted, it answers the lease's [`Grant`].
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<Grant, LeaseError>")]
pub struct ClaimLeadership {
    /// The service whose leadership is claimed, e.g. `"led-service"`.
    pub service: String,
    /// The claiming unit, e.g. `"led-service/0"`; must belong to `service`.
    pub unit: String,
    /// How long the lease must last; greater than zero.
    pub duration: Duration,
}

/// What a granted claim carries: the service's term (fencing token) for this holder.
///
/// The term is the lease's term, the one [`Leader`] and [`WatchLeader`] report: per
/// service it strictly increases every time the holder changes (a new grant, a
/// hand-over, a grant after the holder's own lease lapsed), and an extension keeps it.
/// Terms start at 1; 0 is never a granted term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Grant {
    /// The lease's term.
    pub term: u64,
}

impl Grant {
    /// A grant under `term`.
    pub fn new(term: u64) -> Grant {
        Grant { term }
    }
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

/// Passes `unit`'s live lease of `service` straight to `successor`, who then holds it
/// under a new, greater term until the released lease's expiry; pending blocks are woken
/// so that the successor's tracker extends it at once.
///
/// Not held by `unit` → [`LeaseError::NotHeld`]; a successor that is not a valid unit of
/// the same service, or equal to `unit` → [`LeaseError::Invalid`], and nothing changes.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), LeaseError>")]
pub struct HandOverLeadership {
    /// The service whose lease is handed over.
    pub service: String,
    /// The unit that must hold it now.
    pub unit: String,
    /// The unit that holds it afterwards.
    pub successor: String,
}

/// Observes who leads `service`: a tokio watch whose value is the live lease (`None`
/// when there is none).
///
/// It holds the current value at once and then changes on every change of holder or
/// term (a grant to a new holder, a hand-over, a release, an expiry) at the instant it
/// happens. Extensions may or may not be published. The terms a reader sees never
/// decrease. An invalid service name → [`LeaseError::Invalid`].
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<tokio::sync::watch::Receiver<Option<LeaseInfo>>, LeaseError>")]
pub struct WatchLeader {
    /// The service to observe.
    pub service: String,
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

/// What a tracker talks to: the recipients of the claim protocol, taken from any actor
/// that handles them.
///
/// Built with [`Claimer::new`] it can also release and hand over a lease, which
/// [`Tracker::resign`](crate::Tracker::resign) and
/// [`Tracker::hand_over`](crate::Tracker::hand_over) use. Built with
/// [`Claimer::from_recipients`] from a claim and a block recipient alone, it cannot:
/// a resigning tracker then stops without releasing, and its lease expires on its own.
///
/// A claimer (with its clones) lets 1 024 of its trackers' first claims be in flight at
/// once: a tracker started beyond that waits, answering tickets as one whose first claim
/// is unanswered, and sends its claim (counting its lease from then) as soon as an
/// earlier first claim is answered or its tracker stops. Started all together, 100 000
/// trackers would otherwise put 100 000 claims in the manager's mailbox at once.
///
/// Cloning a `Claimer` only increments a reference count: every tracker of a process
/// holds a clone, and cloning the recipients themselves would allocate three blocks
/// each (actix gives every `Recipient` clone its own boxed sender and parking state).
/// One `Arc` rather than one per recipient keeps the claimer 8 bytes inside every
/// tracker's task.
#[derive(Clone, Debug)]
pub struct Claimer {
    recipients: Arc<Recipients>,
}

/// What every clone of a [`Claimer`] shares.
#[derive(Debug)]
struct Recipients {
    claim: Recipient<ClaimLeadership>,
    block: Recipient<BlockUntilLeadershipReleased>,
    /// Release and hand-over, when the manager offers them.
    leave: Option<Leave>,
    /// Bounds the first claims in flight of the trackers using this claimer.
    first_claims: Arc<FirstClaims>,
}

/// The recipients a resigning tracker uses to give its lease up early.
#[derive(Debug)]
pub(crate) struct Leave {
    pub(crate) release: Recipient<ReleaseLeadership>,
    pub(crate) hand_over: Recipient<HandOverLeadership>,
}

impl Claimer {
    /// Takes every recipient of the protocol from one manager actor.
    pub fn new<A>(addr: &Addr<A>) -> Claimer
    where
        A: Actor
            + Handler<ClaimLeadership>
            + Handler<BlockUntilLeadershipReleased>
            + Handler<ReleaseLeadership>
            + Handler<HandOverLeadership>,
        A::Context: ToEnvelope<A, ClaimLeadership>
            + ToEnvelope<A, BlockUntilLeadershipReleased>
            + ToEnvelope<A, ReleaseLeadership>
            + ToEnvelope<A, HandOverLeadership>,
    {
        Claimer::with(
            addr.clone().recipient(),
            addr.clone().recipient(),
            Some(Leave {
                release: addr.clone().recipient(),
                hand_over: addr.clone().recipient(),
            }),
        )
    }

    /// Builds a claimer from a claim and a block recipient, e.g. of two different
    /// actors. It cannot release or hand over: a resigning tracker lets its lease
    /// expire instead.
    pub fn from_recipients(
        claim: Recipient<ClaimLeadership>,
        block: Recipient<BlockUntilLeadershipReleased>,
    ) -> Claimer {
        Claimer::with(claim, block, None)
    }

    fn with(
        claim: Recipient<ClaimLeadership>,
        block: Recipient<BlockUntilLeadershipReleased>,
        leave: Option<Leave>,
    ) -> Claimer {
        Claimer {
            recipients: Arc::new(Recipients {
                claim,
                block,
                leave,
                first_claims: FirstClaims::new(FIRST_CLAIMS_IN_FLIGHT),
            }),
        }
    }

    /// Whether this claimer can release and hand over a lease.
    pub fn can_release(&self) -> bool {
        self.recipients.leave.is_some()
    }

    /// Where claims go.
    pub(crate) fn claim(&self) -> &Recipient<ClaimLeadership> {
        &self.recipients.claim
    }

    /// Where blocks go.
    pub(crate) fn block(&self) -> &Recipient<BlockUntilLeadershipReleased> {
        &self.recipients.block
    }

    /// Where releases and hand-overs go, if the manager offers them.
    pub(crate) fn leave(&self) -> Option<&Leave> {
        self.recipients.leave.as_ref()
    }

    /// The slots for first claims, shared by this claimer's trackers.
    pub(crate) fn first_claims(&self) -> &Arc<FirstClaims> {
        &self.recipients.first_claims
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

/// Validates a hand-over: both units of `service`, and distinct. Returns the successor.
pub(crate) fn check_hand_over(msg: &HandOverLeadership) -> Result<UnitName, LeaseError> {
    check_unit(&msg.service, &msg.unit)?;
    let successor = check_unit(&msg.service, &msg.successor)?;
    if msg.successor == msg.unit {
        return Err(LeaseError::Invalid(format!(
            "unit {:?} cannot hand leadership over to itself",
            msg.unit
        )));
    }
    Ok(successor)
}

/// Validates a claim made at `now` (its lease must be able to end: `now + duration`
/// representable) and returns its unit.
pub(crate) fn check_claim(
    claim: &ClaimLeadership,
    now: tokio::time::Instant,
) -> Result<UnitName, LeaseError> {
    let unit = check_unit(&claim.service, &claim.unit)?;
    if claim.duration.is_zero() {
        return Err(LeaseError::Invalid(
            "claim duration must be positive".into(),
        ));
    }
    if now.checked_add(claim.duration).is_none() {
        return Err(too_long(claim.duration));
    }
    Ok(unit)
}

/// The error for a claim whose lease would end later than the clock can say.
pub(crate) fn too_long(duration: Duration) -> LeaseError {
    LeaseError::Invalid(format!("claim duration {duration:?} is too long"))
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
            Ok(UnitName::new("a/0").unwrap())
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
