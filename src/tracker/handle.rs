//! [`Tracker`]: the handle users hold to a running tracker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::{select, Either};
use tokio::sync::watch;

use super::actor::{
    check_successor, CloseScope, OpenScope, Resign, StopTracker, Submit, TrackerActor,
};
use super::machine::{ScopeId, TicketKind};
use super::shared::Shared;
use super::status::Status;
use super::TrackerError;
use crate::names::UnitName;
use crate::protocol::Claimer;
use crate::ticket::{Guarantee, Ticket};

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
///
/// Dropping the last handle (every clone) resigns, as [`resign`](Tracker::resign) does:
/// a tracker nobody can ask does not keep a lease nobody can use.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

/// What every clone of a handle shares; dropped with the last one.
struct Inner {
    addr: Addr<TrackerActor>,
    /// The unit, status and stop report, shared with the actor.
    shared: Arc<Shared>,
    /// The id of the next lead scope; ids are unique per tracker, since only handles
    /// (which share this counter) open scopes.
    next_scope: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: resign, so that the actor, which actix keeps alive
        // while a timer or request is pending, does not renew a lease for ever.
        if self.shared.report().is_none() {
            self.addr.do_send(Resign::default());
        }
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("unit", &self.inner.shared.unit.as_str())
            .field("claim_duration", &self.inner.shared.duration)
            .field("status", &self.inner.shared.status())
            .field("stopped", &self.inner.shared.report())
            .finish_non_exhaustive()
    }
}

/// Tells the tracker that a lead scope is over, however `lead` ends (finished,
/// cancelled, or its future dropped).
struct CloseOnDrop<'a> {
    addr: &'a Addr<TrackerActor>,
    id: ScopeId,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.addr.do_send(CloseScope { id: self.id });
    }
}

impl Tracker {
    /// Starts a tracker for `unit` that claims through `claimer`, guaranteeing
    /// leadership `duration` ahead of every `true` ticket. Must be called inside a
    /// running actix `System`.
    ///
    /// # Errors
    ///
    /// [`TrackerError::InvalidDuration`] for a zero duration, or one whose double (the
    /// lease), or now plus its double, overflows.
    pub fn start(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<Tracker, TrackerError> {
        let actor = TrackerActor::new(unit, claimer, duration)?;
        Ok(Tracker::with_actor(actor, Actor::start))
    }

    /// Like [`start`](Tracker::start), but under an actix [`Supervisor`]: a failure
    /// (manager error, manager gone, claim unanswered) restarts the same actor instead
    /// of stopping it. Tickets pending at the failure resolve `false`; the tracker then
    /// waits an exponential backoff (the first wait between 0.5 s and 1 s, doubling,
    /// capped at `duration`, reset by a granted claim) and claims again. The handle
    /// stays valid across restarts, and [`wait`](Tracker::wait) resolves only after
    /// [`kill`](Tracker::kill) or a [`resign`](Tracker::resign), which end it for good
    /// (a failure during a resign too); a supervised tracker so ended stays inert (no
    /// claims, every ticket `false`) until its last handle drops.
    ///
    /// # Errors
    ///
    /// As [`start`](Tracker::start): [`TrackerError::InvalidDuration`].
    pub fn start_supervised(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<Tracker, TrackerError> {
        let actor = TrackerActor::new(unit, claimer, duration)?.supervised();
        Ok(Tracker::with_actor(actor, |actor| {
            Supervisor::start(move |_| actor)
        }))
    }

    fn with_actor(
        actor: TrackerActor,
        start: impl FnOnce(TrackerActor) -> Addr<TrackerActor>,
    ) -> Tracker {
        let shared = actor.shared();
        Tracker {
            inner: Arc::new(Inner {
                addr: start(actor),
                shared,
                next_scope: AtomicU64::new(0),
            }),
        }
    }

    /// The service whose leadership is tracked, e.g. `"led-service"`.
    pub fn service_name(&self) -> &str {
        self.inner.shared.unit.service()
    }

    /// The unit whose leadership is tracked.
    pub fn unit_name(&self) -> &UnitName {
        &self.inner.shared.unit
    }

    /// The claim duration given at start (the lease claimed is twice that).
    pub fn claim_duration(&self) -> Duration {
        self.inner.shared.duration
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
        self.inner.addr.clone()
    }

    /// Stops the tracker cleanly at once: pending tickets resolve `false`, running
    /// [`lead`](Tracker::lead) scopes are cancelled, and [`wait`](Tracker::wait) gives
    /// `Ok(())`. Sends no release: other units take over when the lease expires, up to
    /// `2·d` later. [`resign`](Tracker::resign) hands over without that gap.
    pub fn kill(&self) {
        self.inner.addr.do_send(StopTracker);
    }

    /// Resolves once the tracker has stopped for good: `Ok(())` after
    /// [`kill`](Tracker::kill) or a resign, `Err(LeadershipFailure(..))` after a
    /// failure of an unsupervised tracker or a failed release.
    ///
    /// # Errors
    ///
    /// [`TrackerError::LeadershipFailure`] when the tracker stopped because a claim,
    /// release or hand-over failed.
    pub async fn wait(&self) -> Result<(), TrackerError> {
        self.inner.shared.stopped().await
    }

    /// Gives leadership up without making other units wait for the lease to expire,
    /// and stops the tracker for good (a supervised one too). Resolves once it has
    /// stopped, with what [`wait`](Tracker::wait) gives.
    ///
    /// From the moment the tracker handles it, every new or parked
    /// [`ClaimLeader`](crate::ClaimLeader) and [`WaitLeader`](crate::WaitLeader)
    /// ticket answers `false`, pending [`WaitMinion`](crate::WaitMinion) tickets
    /// resolve `false` (the signal to stop leader work), and [`lead`](Tracker::lead)
    /// starts nothing. A leader keeps its lease, renewing it if due, until every promise
    /// it made has ended — the latest `handled_at + d` over its `true` answers — and
    /// every running `lead` scope has finished (a scope still running `d` after the
    /// resign is cancelled); then it sends `ReleaseLeadership` and stops. With nothing
    /// promised and no scope running, the release goes out at once. A minion, or a
    /// tracker whose first claim is unanswered, just stops. With a [`Claimer`] built
    /// by [`Claimer::from_recipients`], which cannot release, it stops once its scopes
    /// have finished and the lease expires on its own (covering every promise).
    ///
    /// Every `true` answer is a promise, `WaitLeader`'s included, so a resign right
    /// after one waits up to `d`; watch [`status`](Tracker::status) to learn *that* the
    /// unit leads without promising anything, and do leader work in
    /// [`lead`](Tracker::lead) scopes, which a resign drains as soon as they finish.
    ///
    /// On a tracker that has already stopped it returns at once and sends nothing.
    ///
    /// # Errors
    ///
    /// [`TrackerError::LeadershipFailure`] if the release failed (the lease still
    /// expires on its own) or the tracker had already failed.
    pub async fn resign(&self) -> Result<(), TrackerError> {
        self.leave(None).await
    }

    /// Like [`resign`](Tracker::resign), but passes the lease straight to `successor`
    /// (`HandOverLeadership`), whose tracker, blocked as a minion, becomes leader
    /// without waiting for any expiry.
    ///
    /// # Errors
    ///
    /// [`TrackerError::InvalidSuccessor`] if `successor` belongs to another service or
    /// is this unit; nothing changes then. Otherwise as [`resign`](Tracker::resign),
    /// e.g. [`TrackerError::LeadershipFailure`] if the manager refused the hand-over.
    pub async fn hand_over(&self, successor: UnitName) -> Result<(), TrackerError> {
        check_successor(&self.inner.shared.unit, &successor)?;
        self.leave(Some(successor)).await
    }

    async fn leave(&self, successor: Option<UnitName>) -> Result<(), TrackerError> {
        if let Some(report) = self.inner.shared.report() {
            return report;
        }
        // `do_send`: delivered even if this future is dropped; the answer is the stop.
        self.inner.addr.do_send(Resign { successor });
        self.inner.shared.stopped().await
    }

    /// Runs `work` as leader: waits until the unit leads, then runs
    /// `work(guarantee)` in the caller's task, and returns `Some(output)` if it
    /// finishes while the unit still leads.
    ///
    /// The future `work` returned is dropped (cancelled), and `lead` returns `None`,
    /// the instant leadership ends (the lease can no longer be guaranteed), the tracker
    /// stops or fails, or `d` after a resign. A resign does not cancel a running scope:
    /// it waits for it (scopes are what a resign drains), and releases as soon as the
    /// last one finishes, since a scope promises nothing beyond its own end. Returns
    /// `None` at once if the tracker has stopped or is resigning.
    ///
    /// Cancellation reaches `work` when its task next polls `lead`: keep `work`'s
    /// stretches between awaits short.
    pub async fn lead<F, Fut>(&self, work: F) -> Option<Fut::Output>
    where
        F: FnOnce(Guarantee) -> Fut,
        Fut: Future,
    {
        if self.inner.shared.report().is_some() {
            return None;
        }
        let id = self.inner.next_scope.fetch_add(1, Ordering::Relaxed);
        let (sender, ticket) = Ticket::pending();
        let (end, ended) = oneshot::channel();
        self.inner.addr.do_send(OpenScope { id, sender, end });
        let _close = CloseOnDrop {
            addr: &self.inner.addr,
            id,
        };
        let guarantee = ticket.guarantee().await?;
        let work = std::pin::pin!(work(guarantee));
        // `select` polls the end signal first: once told to end, `work` is not polled
        // again.
        match select(ended, work).await {
            Either::Left(_) => None,
            Either::Right((output, _)) => Some(output),
        }
    }

    /// Watches what the tracker is doing: [`Status::Leader`] from the instant a
    /// [`WaitLeader`](crate::WaitLeader) would resolve `true` until the instant a
    /// [`WaitMinion`](crate::WaitMinion) would resolve `false`, [`Status::Resigning`]
    /// during a resign, [`Status::Stopped`] once stopped. Unlike a ticket, it promises
    /// nothing, so watching it never holds up a resign.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.shared.subscribe()
    }

    fn submit(&self, kind: TicketKind) -> Ticket {
        let (sender, ticket) = Ticket::pending();
        // `do_send` ignores the mailbox's capacity, so the request is delivered whether
        // or not the ticket is ever polled; if the actor is gone the message, and with
        // it the sender, is dropped, which resolves the ticket `false` at once.
        self.inner.addr.do_send(Submit { kind, sender });
        ticket
    }
}
