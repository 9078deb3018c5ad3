//! [`Tracker`]: the handle users hold to a running tracker.

use std::time::Duration;

use actix::prelude::*;

use super::actor::{Kill, StopReport, Submit, TrackerActor};
use super::machine::TicketKind;
use super::TrackerError;
use crate::latch::Latch;
use crate::names::UnitName;
use crate::protocol::Claimer;
use crate::ticket::Ticket;

/// A handle to a running [`TrackerActor`]: cheap to clone, answers leadership
/// questions with [`Ticket`]s.
///
/// ```
/// # use std::time::Duration;
/// # use leadership::{Claimer, ManagerActor, Tracker, UnitName};
/// # use actix::Actor;
/// # actix::System::new().block_on(async {
/// let manager = ManagerActor::new().start();
/// let unit = UnitName::new("led-service/0").unwrap();
/// let tracker = Tracker::start(unit, Claimer::new(&manager), Duration::from_secs(30)).unwrap();
/// assert!(tracker.wait_leader().await, "the only unit becomes leader");
/// assert!(tracker.claim_leader().await, "and stays leader for 30 s from now");
/// tracker.kill();
/// assert_eq!(tracker.wait().await, Ok(()));
/// # });
/// ```
#[derive(Clone)]
pub struct Tracker {
    addr: Addr<TrackerActor>,
    unit: UnitName,
    duration: Duration,
    stopped: Latch<StopReport>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("unit", &self.unit.as_str())
            .field("claim_duration", &self.duration)
            .field("stopped", &self.stopped.get())
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Starts a tracker for `unit` that claims through `claimer`, guaranteeing
    /// leadership `duration` ahead of every `true` ticket. Must be called inside a
    /// running actix `System`. Rejects a zero duration, or one whose double (the
    /// lease), or now plus its double, overflows.
    pub fn start(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<Tracker, TrackerError> {
        let actor = TrackerActor::new(unit.clone(), claimer, duration)?;
        Ok(Tracker::with_actor(actor, unit, duration, Actor::start))
    }

    /// Like [`start`](Tracker::start), but under an actix [`Supervisor`]: a failure
    /// (manager error, manager gone, claim unanswered) restarts the same actor instead
    /// of stopping it. Tickets pending at the failure resolve `false`; the tracker then
    /// waits an exponential backoff (the first wait between 0.5 s and 1 s, doubling,
    /// capped at `duration`, reset by a granted claim) and claims again. The handle
    /// stays valid across restarts, and [`wait`](Tracker::wait) resolves only after
    /// [`kill`](Tracker::kill); a killed supervised tracker stays inert (no claims,
    /// every ticket `false`) until its last handle drops.
    pub fn start_supervised(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<Tracker, TrackerError> {
        let actor = TrackerActor::new(unit.clone(), claimer, duration)?.supervised();
        Ok(Tracker::with_actor(actor, unit, duration, |actor| {
            Supervisor::start(move |_| actor)
        }))
    }

    fn with_actor(
        actor: TrackerActor,
        unit: UnitName,
        duration: Duration,
        start: impl FnOnce(TrackerActor) -> Addr<TrackerActor>,
    ) -> Tracker {
        let stopped = actor.stop_report();
        Tracker {
            addr: start(actor),
            unit,
            duration,
            stopped,
        }
    }

    /// The service whose leadership is tracked, e.g. `"led-service"`.
    pub fn service_name(&self) -> &str {
        self.unit.service()
    }

    /// The unit whose leadership is tracked.
    pub fn unit_name(&self) -> &UnitName {
        &self.unit
    }

    /// The claim duration given at start (the lease claimed is twice that).
    pub fn claim_duration(&self) -> Duration {
        self.duration
    }

    /// `true` iff the unit is leader with the claim duration guaranteed from the moment
    /// the tracker handles the request. See [`ClaimLeader`](crate::ClaimLeader).
    pub fn claim_leader(&self) -> Ticket {
        self.submit(TicketKind::ClaimLeader)
    }

    /// Resolves `true` once the unit is leader, `false` if the tracker stops first.
    pub fn wait_leader(&self) -> Ticket {
        self.submit(TicketKind::WaitLeader)
    }

    /// Resolves `false` once leadership can no longer be guaranteed, or the tracker
    /// stops.
    pub fn wait_minion(&self) -> Ticket {
        self.submit(TicketKind::WaitMinion)
    }

    /// The tracker actor's address, for sending [`ClaimLeader`](crate::ClaimLeader),
    /// [`WaitLeader`](crate::WaitLeader) and [`WaitMinion`](crate::WaitMinion) directly.
    pub fn addr(&self) -> Addr<TrackerActor> {
        self.addr.clone()
    }

    /// Stops the tracker cleanly: pending tickets resolve `false` and
    /// [`wait`](Tracker::wait) gives `Ok(())`. Sends no release: other units take
    /// over when the lease expires.
    pub fn kill(&self) {
        self.addr.do_send(Kill);
    }

    /// Resolves once the tracker has stopped for good: `Ok(())` after
    /// [`kill`](Tracker::kill), `Err(LeadershipFailure(..))` after a failure of an
    /// unsupervised tracker.
    pub async fn wait(&self) -> Result<(), TrackerError> {
        self.stopped.wait().await
    }

    fn submit(&self, kind: TicketKind) -> Ticket {
        let (sender, ticket) = Ticket::pending();
        // `do_send` ignores the mailbox's capacity, so the request is delivered whether
        // or not the ticket is ever polled; if the actor is gone the message, and with
        // it the sender, is dropped, which resolves the ticket `false` at once.
        self.addr.do_send(Submit { kind, sender });
        ticket
    }
}
