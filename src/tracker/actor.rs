//! [`TrackerActor`]: the thin actix shell around the tracker's state machine. It reads
//! the clock, sends the machine's claims and blocks, keeps one timer armed for the
//! machine's next deadline, and resolves tickets.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::Span;

use super::machine::{Backoff, Effect, Event, Machine, Phase, TicketKind};
use crate::latch::{latch, Latch, LatchSetter};
use crate::names::UnitName;
use crate::protocol::{BlockUntilLeadershipReleased, ClaimLeadership, Claimer, LeaseError};
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

/// A clean stop, from [`Tracker::kill`](crate::Tracker::kill).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Kill;

/// The outcome a tracker reports when it stops for good.
pub(crate) type StopReport = Result<(), TrackerError>;

/// The leadership tracker of one unit: claims and renews the unit's lease through a
/// [`Claimer`] and answers [`ClaimLeader`], [`WaitLeader`] and [`WaitMinion`] with
/// [`Ticket`]s.
///
/// Most users start it through [`Tracker::start`](crate::Tracker::start), which also
/// gives them a handle; starting a `TrackerActor` yourself is fine too.
pub struct TrackerActor {
    unit: UnitName,
    claimer: Claimer,
    lease: Duration,
    machine: Machine<TicketSender>,
    /// Effects buffer, reused across events to keep the ticket path allocation-free.
    effects: Vec<Effect<TicketSender>>,
    /// The single armed timer: its deadline and handle.
    timer: Option<(Instant, SpawnHandle)>,
    /// Bumped at every restart, so that an answer to a request of an earlier life is
    /// never taken for an answer to the current one.
    epoch: u64,
    failure: Option<LeaseError>,
    killed: bool,
    supervised: bool,
    report: Option<LatchSetter<StopReport>>,
    stopped: Latch<StopReport>,
    span: Span,
}

impl std::fmt::Debug for TrackerActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerActor")
            .field("unit", &self.unit.as_str())
            .field("lease", &self.lease)
            .field("phase", &self.machine.phase())
            .field("guarantee", &self.machine.guarantee())
            .finish_non_exhaustive()
    }
}

impl TrackerActor {
    /// A tracker for `unit` claiming through `claimer` with claim duration `duration`
    /// (the lease it claims is twice that). Rejects a zero duration, or one whose
    /// double, or now plus its double, overflows.
    pub fn new(
        unit: UnitName,
        claimer: Claimer,
        duration: Duration,
    ) -> Result<TrackerActor, TrackerError> {
        let lease = duration
            .checked_mul(2)
            .filter(|lease| !duration.is_zero() && Instant::now().checked_add(*lease).is_some())
            .ok_or(TrackerError::InvalidDuration(duration))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        unit.hash(&mut hasher);
        let backoff = Backoff::new(hasher.finish(), duration);
        // A tracker that vanishes without reporting (its System shut down) stopped
        // without a failure.
        let (report, stopped) = latch(Ok(()));
        // A span is enabled only if its level passes the subscriber's filter; at ERROR
        // it is there whenever any of the tracker's events is, so a warning logged
        // under a WARN filter still says which service and unit it is about.
        let span = tracing::error_span!("tracker", service = unit.service(), unit = unit.as_str());
        Ok(TrackerActor {
            unit,
            claimer,
            lease,
            machine: Machine::new(duration, backoff),
            effects: Vec::new(),
            timer: None,
            epoch: 0,
            failure: None,
            killed: false,
            supervised: false,
            report: Some(report),
            stopped,
            span,
        })
    }

    pub(crate) fn supervised(mut self) -> TrackerActor {
        self.supervised = true;
        self
    }

    /// The latch the actor sets when it stops for good.
    pub(crate) fn stop_report(&self) -> Latch<StopReport> {
        self.stopped.clone()
    }

    /// Feeds one event to the machine at the current instant and performs its effects.
    fn on_event(&mut self, ctx: &mut Context<Self>, event: Event<TicketSender>) {
        let was_leader = self.machine.is_leader();
        let term = self.machine.guarantee().map(|g| g.term); // metrics
        let mut effects = std::mem::take(&mut self.effects);
        self.machine.handle(Instant::now(), event, &mut effects);
        crate::metrics::leadership(&self.unit, term, self.machine.guarantee().map(|g| g.term));
        match (was_leader, self.machine.is_leader()) {
            (false, true) => tracing::info!("leadership gained"),
            (true, false) => tracing::info!("leadership lost"),
            _ => {}
        }
        self.perform(ctx, &mut effects);
        self.effects = effects;
    }

    fn perform(&mut self, ctx: &mut Context<Self>, effects: &mut Vec<Effect<TicketSender>>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Resolve(ticket, answer) => ticket.resolve(answer),
                Effect::SendClaim => self.send_claim(ctx),
                Effect::SendBlock => self.send_block(ctx),
                Effect::Fail(error) => {
                    tracing::warn!(%error, "leadership failure");
                    crate::metrics::failure(&self.unit, &error);
                    self.failure = Some(error);
                    ctx.stop();
                }
            }
        }
        self.arm_timer(ctx);
    }

    fn send_claim(&mut self, ctx: &mut Context<Self>) {
        let claim = ClaimLeadership {
            service: self.unit.service().to_owned(),
            unit: self.unit.as_str().to_owned(),
            duration: self.lease,
        };
        tracing::debug!(lease = ?self.lease, "claiming leadership");
        let request = crate::metrics::timed_claim(&self.unit, self.claimer.claim.send(claim));
        self.on_answer(ctx, request, Event::ClaimAnswered);
    }

    fn send_block(&mut self, ctx: &mut Context<Self>) {
        let block = BlockUntilLeadershipReleased {
            service: self.unit.service().to_owned(),
        };
        tracing::debug!("blocking until leadership is released");
        let request = self.claimer.block.send(block);
        self.on_answer(ctx, request, Event::BlockAnswered);
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
                crate::metrics::block_failed(&act.unit);
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
            let delay = at.saturating_duration_since(Instant::now());
            let handle = ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                let _entered = act.span.clone().entered();
                act.on_event(ctx, Event::Tick);
            });
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
            tracing::info!(claim_duration = ?self.lease / 2, "tracker started");
            crate::metrics::tracker_started(&self.unit);
            Event::Start
        } else {
            // Restarted by a Supervisor: a restart clears the context's timers, and a
            // tick re-arms the one the machine needs (its backoff).
            Event::Tick
        };
        self.on_event(ctx, event);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        // Rule 9: on stop, every pending ticket resolves false.
        let mut effects = std::mem::take(&mut self.effects);
        let term = self.machine.guarantee().map(|g| g.term); // metrics
        self.machine.stop(&mut effects);
        crate::metrics::leadership(&self.unit, term, None);
        resolve_tickets(&mut effects);
        self.effects = effects;
        self.timer = None;
        let restarting = self.supervised && !self.killed;
        if restarting {
            return; // The Supervisor decides; `restarting` runs next if it restarts us.
        }
        let report = match self.failure.take() {
            Some(error) => Err(TrackerError::LeadershipFailure(error)),
            None => Ok(()),
        };
        // A killed supervised tracker is restarted inert and stops again when its last
        // handle drops; only its first stop is reported.
        if let Some(setter) = self.report.take() {
            tracing::info!(?report, "tracker stopped");
            setter.set(report);
        }
    }
}

impl Supervised for TrackerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        self.epoch += 1;
        self.timer = None;
        if self.killed {
            // Killed: stay inert until the last handle drops (contract section 5).
            return;
        }
        let mut effects = std::mem::take(&mut self.effects);
        let delay = self.machine.restart(Instant::now(), &mut effects);
        resolve_tickets(&mut effects);
        self.effects = effects;
        let cause = self
            .failure
            .take()
            .map_or_else(|| "stopped".to_owned(), |e| e.to_string());
        tracing::warn!(%cause, ?delay, "restarting tracker after backoff");
    }
}

/// Performs the only effects a stopping machine produces: answering its tickets.
fn resolve_tickets(effects: &mut Vec<Effect<TicketSender>>) {
    for effect in effects.drain(..) {
        if let Effect::Resolve(ticket, answer) = effect {
            ticket.resolve(answer);
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

impl Handler<Kill> for TrackerActor {
    type Result = ();
    fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        if !self.killed {
            tracing::info!("tracker killed");
            self.killed = true;
            ctx.stop();
        }
    }
}
