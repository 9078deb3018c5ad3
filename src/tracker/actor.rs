//! [`TrackerActor`]: the thin actix shell around the tracker's state machine. It reads
//! the clock, sends the machine's claims and blocks, keeps one timer armed for the
//! machine's next deadline, and resolves tickets.

use std::cell::Cell;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use tokio::time::Instant;
use tracing::Span;

use super::gate::{FirstClaimSlot, Permit};
use super::machine::{Backoff, Effect, Event, Leave, Machine, Phase, ScopeId, TicketKind};
use super::shared::Shared;
use crate::names::UnitName;
use crate::protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, HandOverLeadership, LeaseError,
    ReleaseLeadership,
};
use crate::ticket::{Ticket, TicketSender};
use crate::tracker::TrackerError;

/// Asks whether the unit is leader now, with the claim duration guaranteed from the
/// moment the tracker handles the request (contract rule 5).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Ticket")]
pub struct ClaimLeader;

/// Resolves `true` once the unit is leader (rule 6), `false` if the tracker stops first.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Ticket")]
pub struct WaitLeader;

/// Resolves `false` once leadership can no longer be guaranteed (rule 7), or when the
/// tracker stops.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Ticket")]
pub struct WaitMinion;

/// A ticket request from a [`Tracker`](crate::Tracker) handle: sent with `do_send`, so
/// it is delivered even when the caller never polls the ticket, and a dropped message
/// drops the sender, resolving the ticket `false`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Submit {
    pub(crate) kind: TicketKind,
    pub(crate) sender: TicketSender,
}

/// Stops a tracker cleanly at once, as [`Tracker::kill`](crate::Tracker::kill) does:
/// pending tickets resolve `false`, open lead scopes end, and nothing is sent to the
/// manager (the lease runs out on its own). For a tracker started by hand, whose only
/// handle is its `Addr`.
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "()")]
pub struct StopTracker;

/// Resigns the tracker, as [`Tracker::resign`](crate::Tracker::resign) (no successor)
/// or [`Tracker::hand_over`](crate::Tracker::hand_over) do; answers once the tracker
/// has stopped, with what [`Tracker::wait`](crate::Tracker::wait) gives.
///
/// A successor of another service, or the unit itself, is refused with
/// [`TrackerError::InvalidSuccessor`] and changes nothing. A tracker that is already
/// stopped or resigning is not changed; the answer still comes when it stops.
#[derive(Message, Debug, Clone, PartialEq, Eq, Default)]
#[rtype(result = "Result<(), TrackerError>")]
pub struct Resign {
    /// The unit to hand the lease over to; `None` releases it.
    pub successor: Option<UnitName>,
}

/// Opens a lead scope for [`Tracker::lead`](crate::Tracker::lead): its ticket resolves
/// `true` (with the guarantee) when the scope opens; dropping `end`'s sender, or
/// sending on it, tells the scope to end.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct OpenScope {
    pub(crate) id: ScopeId,
    pub(crate) sender: TicketSender,
    pub(crate) end: oneshot::Sender<()>,
}

/// A lead scope finished, or its future was dropped (sent by its guard on drop).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseScope {
    pub(crate) id: ScopeId,
}

/// A lead scope of the actor: how to tell it to end (dropping `end` does), and whether
/// it is open (its ticket answered `true`) rather than parked.
#[derive(Debug)]
struct Scope {
    id: ScopeId,
    /// `None` once told to end (cancelled at a resign's deadline, still open).
    end: Option<oneshot::Sender<()>>,
    open: bool,
}

/// The leadership tracker of one unit: claims and renews the unit's lease through a
/// [`Claimer`] and answers [`ClaimLeader`], [`WaitLeader`] and [`WaitMinion`] with
/// [`Ticket`]s.
///
/// Most users start it through [`Tracker::start`](crate::Tracker::start), which also
/// gives them a handle; starting a `TrackerActor` yourself is fine too.
pub struct TrackerActor {
    /// The unit, status and stop report, shared with the handles.
    shared: Arc<Shared>,
    claimer: Claimer,
    machine: Machine<TicketSender>,
    /// The single armed timer: its deadline and handle.
    timer: Option<(Instant, SpawnHandle)>,
    /// Bumped at every restart, so that an answer to a request of an earlier life is
    /// never taken for an answer to the current one.
    /// (32 bits: a stale answer would have to outlive four billion restarts, each at
    /// least half a second of backoff apart.)
    epoch: u32,
    /// Boxed: rare, and 32 bytes inline in every tracker's task otherwise.
    failure: Option<Box<LeaseError>>,
    supervised: bool,
    /// The slot for the first claim, from the moment the claimer gives it until the
    /// claim is sent (it then travels with the claim's request).
    permit: Option<Permit>,
    /// The lead scopes, parked or open (the machine only counts the open ones). An
    /// entry lives from `OpenScope` until the scope's `CloseScope` or the machine ends
    /// it. A vector, not a map: a tracker has a handful of scopes at most, and an empty
    /// map is 48 bytes inline in every tracker's task against a vector's 24.
    scopes: Vec<Scope>,
    span: Span,
}

impl Drop for TrackerActor {
    fn drop(&mut self) {
        // As a dropped watch sender would: status receivers see the channel closed. A
        // tracker that vanishes without reporting (its System shut down) stopped without
        // a failure.
        self.shared.close();
    }
}

impl std::fmt::Debug for TrackerActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerActor")
            .field("unit", &self.shared.unit.as_str())
            .field("claim_duration", &self.machine.claim_duration())
            .field("phase", &self.machine.phase())
            .field("status", &self.machine.status())
            .finish_non_exhaustive()
    }
}

impl TrackerActor {
    /// A tracker for `unit` claiming through `claimer` with claim duration `duration`
    /// (the lease it claims is twice that).
    ///
    /// # Errors
    ///
    /// [`TrackerError::InvalidDuration`] for a zero duration, or one whose double, or
    /// now plus its double, overflows.
    pub fn new(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<TrackerActor, TrackerError> {
        duration
            .checked_mul(2)
            .filter(|lease| !duration.is_zero() && Instant::now().checked_add(*lease).is_some())
            .ok_or(TrackerError::InvalidDuration(duration))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        unit.hash(&mut hasher);
        let backoff = Backoff::new(hasher.finish());
        // A span is enabled only if its level passes the subscriber's filter; at ERROR
        // it is there whenever any of the tracker's events is, so a warning logged
        // under a WARN filter still says which service and unit it is about.
        let span = tracing::error_span!("tracker", service = unit.service(), unit = unit.as_str());
        Ok(TrackerActor {
            shared: Arc::new(Shared::new(unit, duration)),
            claimer,
            machine: Machine::new(duration, backoff),
            timer: None,
            epoch: 0,
            failure: None,
            supervised: false,
            permit: None,
            scopes: Vec::new(),
            span,
        })
    }

    pub(crate) fn supervised(mut self) -> TrackerActor {
        self.supervised = true;
        self
    }

    /// What the actor shares with its handles.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Publishes the machine's status if it changed.
    fn publish_status(&self) {
        let status = self.machine.status();
        let before = self.shared.publish(status);
        crate::metrics::status(&self.shared.unit, before, status);
    }

    /// Feeds one event to the machine at the current instant and performs its effects.
    fn on_event(&mut self, ctx: &mut Context<Self>, event: Event<TicketSender>) {
        // What the handles see: every event that changes the status publishes it, so
        // an unchanged one (most tickets) need not take the shared lock.
        let inputs = self.machine.status_inputs();
        let was_leader = self.machine.is_leader();
        let mut effects = take_effects();
        self.machine.handle(Instant::now(), event, &mut effects);
        match (was_leader, self.machine.is_leader()) {
            (false, true) => tracing::info!("leadership gained"),
            (true, false) => tracing::info!("leadership lost"),
            _ => {}
        }
        self.perform(ctx, &mut effects);
        return_effects(effects);
        let changed = self.machine.status_inputs() != inputs;
        // The machine's next deadline follows from the same inputs unless it is
        // resigning, so an armed timer is still the right one when they did not change.
        if changed || self.timer.is_none() || self.machine.is_resigning() {
            self.arm_timer(ctx);
        }
        if changed {
            self.publish_status();
        }
    }

    fn perform(&mut self, ctx: &mut Context<Self>, effects: &mut Vec<Effect<TicketSender>>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Resolve(ticket, answer) => ticket.resolve(answer),
                Effect::ScopeOpened(id) => {
                    if let Some(scope) = self.scopes.iter_mut().find(|s| s.id == id) {
                        scope.open = true;
                    }
                }
                // Dropping a scope's end signal wakes its `lead` call, which ends it.
                Effect::EndScopes => self.scopes.retain(|s| !s.open),
                Effect::CancelScopes => {
                    for scope in self.scopes.iter_mut().filter(|s| s.open) {
                        scope.end = None;
                    }
                }
                Effect::SendClaim => self.send_claim(ctx),
                Effect::SendBlock => self.send_block(ctx),
                Effect::SendLeave(successor) => self.send_leave(ctx, successor),
                Effect::Fail(error) => {
                    tracing::warn!(%error, "leadership failure");
                    crate::metrics::failure(&self.shared.unit, &error);
                    self.failure = Some(Box::new(error));
                    ctx.stop();
                }
                Effect::Finish(result) => {
                    // Killed or resigned: the machine has ended, so `stopped` reports
                    // and a Supervisor's restart leaves it inert.
                    if let Err(error) = &result {
                        tracing::warn!(%error, "resign failed");
                    }
                    self.failure = result.err().map(Box::new);
                    ctx.stop();
                }
            }
        }
    }

    fn send_claim(&mut self, ctx: &mut Context<Self>) {
        // The lease claimed is 2·d (rule 1); `new` checked that it is representable.
        let lease = 2 * self.machine.claim_duration();
        let claim = ClaimLeadership {
            service: self.shared.unit.service().to_owned(),
            unit: self.shared.unit.as_str().to_owned(),
            duration: lease,
        };
        tracing::debug!(?lease, "claiming leadership");
        let request =
            crate::metrics::timed_claim(&self.shared.unit, self.claimer.claim().send(claim));
        // A first claim's slot is returned when it is answered, or dropped unanswered.
        let permit = self.permit.take();
        let request = async move {
            let answer = request.await;
            drop(permit);
            answer
        };
        self.on_answer(ctx, request, Event::ClaimAnswered);
    }

    fn send_block(&mut self, ctx: &mut Context<Self>) {
        let block = BlockUntilLeadershipReleased {
            service: self.shared.unit.service().to_owned(),
        };
        tracing::debug!("blocking until leadership is released");
        let request = self.claimer.block().send(block);
        self.on_answer(ctx, request, Event::BlockAnswered);
    }

    /// Sends the release, or the hand-over to `successor`, of a resigning tracker.
    fn send_leave(&mut self, ctx: &mut Context<Self>, successor: Option<UnitName>) {
        let Some(leave) = self.claimer.leave() else {
            // The machine leaves by expiry when the claimer cannot release.
            debug_assert!(false, "a release without the recipients to send it");
            self.on_event(ctx, Event::LeaveAnswered(Ok(())));
            return;
        };
        let service = self.shared.unit.service().to_owned();
        let unit = self.shared.unit.as_str().to_owned();
        match successor {
            None => {
                tracing::info!("releasing leadership");
                let request = leave.release.send(ReleaseLeadership { service, unit });
                self.on_answer(ctx, request, Event::LeaveAnswered);
            }
            Some(successor) => {
                tracing::info!(%successor, "handing leadership over");
                let successor = successor.as_str().to_owned();
                let hand_over = HandOverLeadership {
                    service,
                    unit,
                    successor,
                };
                let request = leave.hand_over.send(hand_over);
                self.on_answer(ctx, request, Event::LeaveAnswered);
            }
        }
    }

    /// Feeds the manager's answer to `request` to the machine as `event`, unless the
    /// actor was restarted meanwhile (a mailbox error counts as a failed answer).
    fn on_answer<R, V>(
        &mut self,
        ctx: &mut Context<Self>,
        request: R,
        event: fn(Result<V, LeaseError>) -> Event<TicketSender>,
    ) where
        R: Future<Output = Result<Result<V, LeaseError>, MailboxError>> + 'static,
        V: std::fmt::Debug + 'static,
    {
        let epoch = self.epoch;
        ctx.spawn(request.into_actor(self).map(move |answer, act, ctx| {
            if act.epoch != epoch {
                return;
            }
            let _entered = act.span.clone().entered();
            let answer = answer.unwrap_or_else(|e| Err(LeaseError::unreachable(e)));
            tracing::debug!(?answer, "manager answered");
            let event = event(answer);
            if let Event::BlockAnswered(Err(error)) = &event {
                tracing::warn!(%error, "waiting for leadership release failed; backing off");
                crate::metrics::block_failed(&act.shared.unit);
            }
            act.on_event(ctx, event);
        }));
    }

    /// Keeps exactly one timer armed for the machine's next deadline.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let wanted = self.machine.next_deadline();
        if self.timer.map(|(at, _)| at) == wanted {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = wanted {
            // A bare sleep mapped to the tick, not `run_later`: that boxes the closure
            // beside its sleep, 112 bytes per tracker against 96 (a 112-byte malloc
            // block instead of 128).
            let wake = tokio::time::sleep_until(at).into_actor(self);
            let handle = ctx.spawn(wake.map(|(), act, ctx| {
                act.timer = None;
                let _entered = act.span.clone().entered();
                act.on_event(ctx, Event::Tick);
            }));
            self.timer = Some((at, handle));
        }
    }

    fn submit(&mut self, ctx: &mut Context<Self>, kind: TicketKind, sender: TicketSender) {
        let _entered = self.span.clone().entered();
        self.on_event(ctx, Event::Ticket(kind, sender));
    }

    fn ticket(&mut self, ctx: &mut Context<Self>, kind: TicketKind) -> Ticket {
        let (sender, ticket) = Ticket::pending();
        self.submit(ctx, kind, sender);
        ticket
    }
}

impl Actor for TrackerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        let event = if self.machine.phase() == Phase::Idle {
            tracing::info!(claim_duration = ?self.machine.claim_duration(), "tracker started");
            crate::metrics::tracker_started(&self.shared.unit);
            match self
                .claimer
                .first_claims()
                .acquire(|| ctx.address().downgrade())
            {
                Some(permit) => {
                    self.permit = Some(permit);
                    Event::Start
                }
                None => {
                    tracing::debug!("first claim queued: too many in flight on this claimer");
                    Event::StartQueued
                }
            }
        } else {
            // Restarted by a Supervisor: a restart clears the context's timers, and a
            // tick re-arms the one the machine needs (its backoff).
            Event::Tick
        };
        self.on_event(ctx, event);
        // Sent with the first claim; were it not, the slot goes on rather than waiting
        // for this actor's end.
        self.permit = None;
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        // Rule 9: on stop, every pending ticket resolves false.
        let mut effects = take_effects();
        self.machine.stop(&mut effects);
        resolve_tickets(&mut effects);
        return_effects(effects);
        self.timer = None;
        // Whatever the machine still knew of, no scope outlives a stop.
        self.scopes.clear();
        let restarting = self.supervised && !self.machine.is_ended();
        if restarting {
            return; // The Supervisor decides; `restarting` runs next if it restarts us.
        }
        self.publish_status();
        let report = match self.failure.take() {
            Some(error) => Err(TrackerError::LeadershipFailure(*error)),
            None => Ok(()),
        };
        // A killed supervised tracker is restarted inert and stops again when its last
        // handle drops; only its first stop is reported.
        if self.shared.report().is_none() {
            tracing::info!(?report, "tracker stopped");
            self.shared.set_report(report);
        }
    }
}

impl Supervised for TrackerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        self.epoch = self.epoch.wrapping_add(1);
        self.timer = None;
        let mut effects = take_effects();
        let restarted = self.machine.restart(Instant::now(), &mut effects);
        resolve_tickets(&mut effects);
        return_effects(effects);
        self.scopes.clear();
        let Some(delay) = restarted else {
            // Killed or resigned: the machine stays ended, inert until the last handle
            // drops (contract section 5).
            return;
        };
        self.publish_status();
        let cause = self
            .failure
            .take()
            .map_or_else(|| "stopped".to_owned(), |e| e.to_string());
        tracing::warn!(%cause, ?delay, "restarting tracker after backoff");
    }
}

thread_local! {
    /// The effects buffer, shared by every tracker on the thread and reused across
    /// events to keep the ticket path allocation-free. One per thread rather than one
    /// per tracker: a buffer per tracker cost ~250 bytes each (measured, issue 13).
    /// An event's handling takes it and returns it emptied; a nested event (none today)
    /// would simply get a fresh one.
    static EFFECTS: Cell<Vec<Effect<TicketSender>>> = const { Cell::new(Vec::new()) };
}

/// A buffer no larger than this is kept for the next event; a larger one (a stop that
/// answered many parked tickets) is freed, so the shared buffer stays small.
const EFFECTS_KEPT: usize = 64;

/// The thread's effects buffer (empty), or a new one during thread teardown.
fn take_effects() -> Vec<Effect<TicketSender>> {
    EFFECTS.try_with(Cell::take).unwrap_or_default()
}

/// Returns an emptied effects buffer for the next event.
fn return_effects(effects: Vec<Effect<TicketSender>>) {
    debug_assert!(effects.is_empty(), "every effect was performed");
    if effects.capacity() <= EFFECTS_KEPT {
        let _ = EFFECTS.try_with(|cell| cell.set(effects));
    }
}

/// Performs the only effects a stopping machine produces that matter once stopping:
/// answering its tickets (its scopes end as the actor clears them all).
fn resolve_tickets(effects: &mut Vec<Effect<TicketSender>>) {
    for effect in effects.drain(..) {
        match effect {
            Effect::Resolve(ticket, answer) => ticket.resolve(answer),
            Effect::ScopeOpened(_) | Effect::EndScopes | Effect::CancelScopes => {}
            other => debug_assert!(false, "a stopping machine asked for {other:?}"),
        }
    }
}

impl Handler<ClaimLeader> for TrackerActor {
    type Result = Ticket;
    fn handle(&mut self, _: ClaimLeader, ctx: &mut Context<Self>) -> Ticket {
        self.ticket(ctx, TicketKind::ClaimLeader)
    }
}

impl Handler<WaitLeader> for TrackerActor {
    type Result = Ticket;
    fn handle(&mut self, _: WaitLeader, ctx: &mut Context<Self>) -> Ticket {
        self.ticket(ctx, TicketKind::WaitLeader)
    }
}

impl Handler<WaitMinion> for TrackerActor {
    type Result = Ticket;
    fn handle(&mut self, _: WaitMinion, ctx: &mut Context<Self>) -> Ticket {
        self.ticket(ctx, TicketKind::WaitMinion)
    }
}

impl Handler<Submit> for TrackerActor {
    type Result = ();
    fn handle(&mut self, submit: Submit, ctx: &mut Context<Self>) {
        self.submit(ctx, submit.kind, submit.sender);
    }
}

impl Handler<FirstClaimSlot> for TrackerActor {
    type Result = ();
    fn handle(&mut self, slot: FirstClaimSlot, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        self.permit = Some(slot.0);
        self.on_event(ctx, Event::ClaimSlot);
        // Not queued any more (killed or resigned meanwhile): the slot goes on.
        self.permit = None;
    }
}

impl Handler<StopTracker> for TrackerActor {
    type Result = ();
    fn handle(&mut self, _: StopTracker, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        if !self.machine.is_ended() {
            tracing::info!("tracker killed");
            self.on_event(ctx, Event::Kill);
        }
    }
}

impl Handler<OpenScope> for TrackerActor {
    type Result = ();
    fn handle(&mut self, open: OpenScope, ctx: &mut Context<Self>) {
        if self.machine.is_stopped() {
            return; // Dropping `open` answers the ticket `false` and ends the scope.
        }
        self.scopes.push(Scope {
            id: open.id,
            end: Some(open.end),
            open: false,
        });
        let _entered = self.span.clone().entered();
        self.on_event(ctx, Event::Ticket(TicketKind::Lead(open.id), open.sender));
    }
}

impl Handler<CloseScope> for TrackerActor {
    type Result = ();
    fn handle(&mut self, close: CloseScope, ctx: &mut Context<Self>) {
        // A scope the actor no longer has was ended and forgotten by the machine (or the
        // tracker stopped): its close is no event.
        let Some(i) = self.scopes.iter().position(|s| s.id == close.id) else {
            return;
        };
        let scope = self.scopes.swap_remove(i);
        let event = if scope.open {
            Event::ScopeClosed
        } else {
            Event::ParkedScopeClosed(scope.id)
        };
        let _entered = self.span.clone().entered();
        self.on_event(ctx, event);
    }
}

/// Checks a successor named for `unit`'s hand-over: a unit of the same service, not
/// `unit` itself.
pub(crate) fn check_successor(unit: &UnitName, successor: &UnitName) -> Result<(), TrackerError> {
    if successor.service() != unit.service() || successor == unit {
        return Err(TrackerError::InvalidSuccessor(successor.to_string()));
    }
    Ok(())
}

/// `ResponseFuture`: the answer waits for the stop, which the actor reaches through
/// later events; the future itself touches no actor state.
impl Handler<Resign> for TrackerActor {
    type Result = ResponseFuture<Result<(), TrackerError>>;
    fn handle(&mut self, resign: Resign, ctx: &mut Context<Self>) -> Self::Result {
        let _entered = self.span.clone().entered();
        if let Some(successor) = &resign.successor {
            if let Err(error) = check_successor(&self.shared.unit, successor) {
                return Box::pin(std::future::ready(Err(error)));
            }
        }
        if !self.machine.is_stopped() && !self.machine.is_resigning() {
            let leave = match (resign.successor, self.claimer.can_release()) {
                (_, false) => Leave::Expire,
                (None, true) => Leave::Release,
                (Some(successor), true) => Leave::HandOver(successor),
            };
            tracing::info!(?leave, "resigning");
            self.on_event(ctx, Event::Resign(leave));
        }
        let shared = self.shared.clone();
        Box::pin(async move { shared.stopped().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_fits_a_768_byte_task() {
        // tokio rounds a task cell up to 128 bytes; a tracker's task is its actor plus
        // actix's context (336 bytes) and tokio's header and trailer (~100): 320 bytes
        // of actor make a 768-byte task (measured), 432 made an 896-byte one, and about
        // 336 would.
        // A tripwire, not a contract: it says when a change costs every tracker another
        // 128 bytes.
        assert!(std::mem::size_of::<TrackerActor>() <= 320);
    }
}
