//! The tracker's decisions as a pure state machine: `(state, now, event) → effects`.
//!
//! Nothing here sends a message, reads a clock or arms a timer: the actor
//! ([`TrackerActor`](crate::TrackerActor)) passes in `now` and performs the effects.
//! That keeps every rule of the contract testable on its own, instant by instant.
//!
//! The one fact that makes a `true` answer safe is `grant`: the instant `t0`, noted
//! *before* sending, of the last claim the manager granted. The manager granted a lease
//! of `2·d` from the moment it handled that claim, which is no earlier than `t0`, so
//! the lease covers at least `[t0, t0 + 2·d)` on any clock that runs at the same rate.
//! A ticket answered `true` at `now < t0 + d` therefore has at least `d` of guaranteed
//! leadership ahead of it. The tracker renews at `t0 + d`, and if that renewal is not
//! granted by `t0 + 2·d` it forgets the grant: leadership ends at that instant.
//!
//! Leadership ends a little *before* the lease does: at `t0 + 2·d − 2 ms` (never before
//! `t0 + d`), because tokio fires timers late. It rounds a deadline up to its next
//! millisecond tick, then sleeps whole milliseconds counted from the current tick
//! rounded down, so a timer fires up to 2 ms after its deadline (plus whatever the OS
//! adds) — and a real clock is never on tokio's grid. A timer armed for the expiry
//! itself left `WaitMinion` tickets pending for up to 2 ms after the lease ended, while
//! the manager could already grant it to another unit. `ClaimLeader` is unaffected: it
//! needs `now < t0 + d`.
//!
//! A renewal's own `t0` is the instant it was *due*, `t0 + d`, even when the timer fires
//! a little later (tokio rounds timers up to the next millisecond, and a busy thread adds
//! more). That instant is still noted before sending, so the argument above holds, and
//! it keeps renewals on the grid `t0 + k·d` instead of drifting later by the timer's
//! lateness every period.
//!
//! Resigning (contract section 6) changes what the tracker answers, not how it keeps its
//! lease: a resigning tracker answers every new or parked ticket `false`, keeps its lease
//! (renewing it) while a promise it made may still be relied on, and gives the lease up
//! only once the *promise horizon* — the latest `handled_at + d` over its `true` answers —
//! has passed and every open lead scope has closed. Scopes still open `d` after the
//! resign are told to end; the release waits until they have.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::status::Status;
use crate::names::UnitName;
use crate::protocol::{Grant, LeaseError};
use crate::ticket::Guarantee;

/// Identifies one lead scope ([`Tracker::lead`](crate::Tracker::lead)) of a tracker.
pub(crate) type ScopeId = u64;

/// Which question a ticket asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketKind {
    /// Am I leader, with `d` guaranteed, right now?
    ClaimLeader,
    /// Tell me when I am leader.
    WaitLeader,
    /// Tell me when I am no longer leader.
    WaitMinion,
    /// Tell me when I am leader, and open a lead scope then: answered like `WaitLeader`,
    /// but a `true` answer promises nothing beyond the scope, which stays open until it
    /// closes ([`Event::ScopeClosed`]) or the machine ends it ([`Effect::EndScopes`]).
    Lead(ScopeId),
}

/// How a resigning tracker gives its lease up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leave {
    /// Send `ReleaseLeadership`.
    Release,
    /// Send `HandOverLeadership` to this unit (validated by the caller).
    HandOver(UnitName),
    /// The claimer cannot release: stop, and let the lease expire on its own.
    Expire,
}

/// Something that happened to the tracker.
#[derive(Debug)]
pub(crate) enum Event<T> {
    /// The actor started: send the first claim (contract rule 1); nothing unless idle.
    Start,
    /// The actor started, but its first claim must wait for a slot (too many first
    /// claims in flight on its claimer, see `gate`): wait in [`Phase::Queued`].
    StartQueued,
    /// A slot for the first claim is free: send it now, if still queued.
    ClaimSlot,
    /// Time passed (a timer fired); only the time-driven rules apply.
    Tick,
    /// The manager answered the claim in flight (a mailbox error arrives as `Failed`).
    ClaimAnswered(Result<Grant, LeaseError>),
    /// The manager answered the block in flight.
    BlockAnswered(Result<(), LeaseError>),
    /// A user asked a question; `T` resolves its ticket.
    Ticket(TicketKind, T),
    /// The user resigns (or hands over); ignored once resigning or stopped.
    Resign(Leave),
    /// A clean stop at once (`kill`): no release, nothing sent.
    Kill,
    /// The manager answered the release or hand-over in flight.
    LeaveAnswered(Result<(), LeaseError>),
    /// An open lead scope finished, or its future was dropped. (The actor knows which
    /// scopes are open: it keeps their end signals, see [`Effect::ScopeOpened`].)
    ScopeClosed,
    /// A lead scope's future was dropped before the scope opened: its ticket is parked.
    ParkedScopeClosed(ScopeId),
}

/// Something the actor must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect<T> {
    /// Send `ClaimLeadership` for `2·d`; the machine noted `now` as its `t0`.
    SendClaim,
    /// Send `BlockUntilLeadershipReleased`.
    SendBlock,
    /// Send `ReleaseLeadership` (`None`) or `HandOverLeadership` to the unit named.
    SendLeave(Option<UnitName>),
    /// Answer a ticket: `true` with its guarantee, or `false` (`None`).
    Resolve(T, Option<Guarantee>),
    /// The lead scope of this ticket opens (its ticket resolves `true` next); it is open
    /// until it closes ([`Event::ScopeClosed`]) or the machine ends it.
    ScopeOpened(ScopeId),
    /// Every open lead scope ends now (their futures are dropped), and is forgotten: a
    /// close arriving for one of them later is not an event.
    EndScopes,
    /// Tell every open lead scope to end now, but keep counting them as open until
    /// they close (a resign waits for them).
    CancelScopes,
    /// Stop: a claim failed or went unanswered (contract rule 4). A supervised tracker
    /// restarts.
    Fail(LeaseError),
    /// Stop for good, never restarted: killed or resigned (`Ok`), or a resign failed.
    Finish(Result<(), LeaseError>),
}

/// Which claim is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimKind {
    /// The first claim after start: the tracker does not know yet whether it leads.
    First,
    /// The renewal of a grant (which may have ended meanwhile, by rule 8).
    Renewal,
    /// A claim by a tracker without a grant: after a block, a backoff or a restart.
    Fresh,
}

/// Where the tracker is in its cycle. Whether it is leader is `grant`, not the phase:
/// during a renewal the phase is `Claiming` while the last grant still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started yet.
    Idle,
    /// Started; the first claim waits for a slot of its claimer before it is sent (and
    /// takes its `t0` then). Tickets are answered as while the first claim is in
    /// flight, and nothing times out: the claim has not been sent.
    Queued,
    /// A claim is in flight. `t0` is the instant its guarantee counts from, no later
    /// than `sent_at`, when it was actually sent (its timeout counts from there).
    Claiming {
        t0: Instant,
        sent_at: Instant,
        kind: ClaimKind,
    },
    /// The last claim was granted; the renewal is due at `grant + d`.
    Leader,
    /// Denied: a block is in flight, waiting for the leader's lease to go.
    Blocking,
    /// Waiting before the next claim, after a failed block or a supervised restart.
    BackingOff { until: Instant },
    /// Resigning, the release or hand-over is in flight (sent at `sent_at`).
    Leaving { sent_at: Instant },
    /// Stopped by a failure (rule 4); every ticket answers `false`. A supervised
    /// tracker leaves it by [`Machine::restart`].
    Stopped,
    /// Stopped for good: killed, or resigned (a resign that failed too). Every ticket
    /// answers `false`, and a supervised restart leaves it here: inert, claiming
    /// nothing, until the actor's last address drops (contract section 5).
    Ended,
}

/// How late a tokio timer may fire (scheduling aside): the deadline is rounded up to a
/// millisecond tick, and the wait is counted in whole milliseconds from the current
/// tick rounded down, so up to (not including) 2 ms.
const TIMER_LATENESS: Duration = Duration::from_millis(2);

/// The parked queue is checked for abandoned tickets once it reaches this length, and
/// after that whenever it has doubled since the last check: amortised O(1) per ticket,
/// and at most `2 × readable + PRUNE_FLOOR` tickets parked.
const PRUNE_FLOOR: usize = 64;

/// Keeps a queue whose entries can go dead (abandoned tickets, trackers that stopped)
/// from growing with them, at an amortised O(1) per entry: once the queue reaches
/// `prune_at`, only the entries `live` keeps stay, and the next prune waits until what
/// is left has doubled, never less than `floor`. The queue so holds at most
/// `2 × live entries + floor`. Call it before each push.
pub(crate) fn prune_amortised<E>(
    queue: &mut VecDeque<E>,
    prune_at: &mut u32,
    floor: usize,
    live: impl FnMut(&E) -> bool,
) {
    if queue.len() >= *prune_at as usize {
        queue.retain(live);
        let next = (2 * queue.len()).max(floor);
        *prune_at = u32::try_from(next).unwrap_or(u32::MAX);
    }
}

/// Exponential backoff with deterministic jitter: the first wait lies in [0.5 s, 1 s]
/// (spread by unit, so that many units failing together do not retry in step), then
/// doubles, capped at the claim duration; a granted claim resets it.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The first wait, in milliseconds (500 to 1 000).
    first_ms: u16,
    /// How many waits since the last reset: the next is `first · 2^waits`, capped. A
    /// count rather than the next wait's `Duration`, to keep every tracker's task small.
    waits: u8,
}

impl Backoff {
    /// `spread` picks the first wait in [0.5 s, 1 s]; any value is valid.
    pub(crate) fn new(spread: u64) -> Backoff {
        Backoff {
            first_ms: 500 + (spread % 501) as u16,
            waits: 0,
        }
    }

    /// The wait before the next retry, at most `cap` (the claim duration, passed in
    /// rather than kept: 16 bytes less in every tracker); doubles the one after.
    pub(crate) fn next_delay(&mut self, cap: Duration) -> Duration {
        // 2^31 times the first wait is beyond any cap a tracker accepts anyway.
        let factor = 1u32 << self.waits.min(31);
        let delay = Duration::from_millis(u64::from(self.first_ms))
            .saturating_mul(factor)
            .min(cap);
        self.waits = self.waits.saturating_add(1);
        delay
    }

    /// A granted claim: the next failure starts from the first wait again.
    pub(crate) fn reset(&mut self) {
        self.waits = 0;
    }
}

/// The last granted claim: when its guarantee counts from, and its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// The instant noted before the granted claim was sent (its due instant, for a
    /// renewal): the lease covers at least `[t0, t0 + 2·d)`.
    pub(crate) t0: Instant,
    /// The lease's term, from the grant.
    pub(crate) term: u64,
}

/// A resign in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resigning {
    /// When the resign was handled: scopes still open at `since + d` are ended.
    since: Instant,
    leave: Leave,
    /// Whether the scopes open at `since + d` were told to end.
    scopes_ended: bool,
}

/// Whether anyone can still read a ticket's answer. A parked ticket nobody can read
/// is dropped instead of answered (issue: a minion looping `timeout(wait_leader())`).
pub(crate) trait Readable {
    /// `false` once every reader of the ticket is gone.
    fn readable(&self) -> bool;
}

/// Test tickets (plain ids) are always read.
impl Readable for u32 {
    fn readable(&self) -> bool {
        true
    }
}

/// The tracker's state. `T` resolves a ticket: the actor's ticket sender, or a plain
/// id in tests.
#[derive(Debug)]
pub(crate) struct Machine<T> {
    d: Duration,
    /// How long after a grant's `t0` leadership ends: `2·d` less a timer's lateness,
    /// never less than `d` ([`leadership_end`](Machine::leadership_end)). Kept rather
    /// than computed: it is needed at every ticket.
    held_for: Duration,
    phase: Phase,
    /// The last granted claim, while its lease may still be live.
    grant: Option<Held>,
    /// The instant of the event being handled (the last one, between events).
    now: Instant,
    backoff: Backoff,
    /// Parked tickets, in the order received. Invariant: after every event none of
    /// them can be answered yet, so a new ticket that can be answered is answered at
    /// once without breaking the order.
    parked: VecDeque<(TicketKind, T)>,
    /// The parked length at which abandoned tickets are next looked for.
    /// (32 bits, packed beside the backoff: 8 bytes less in every tracker's task.)
    prune_at: u32,
    /// The promise horizon: the latest `handled_at + d` over the `true` answers to
    /// `ClaimLeader` and `WaitLeader`. A resigning leader keeps its lease until then.
    horizon: Option<Instant>,
    /// How many lead scopes are open (at most one per running `lead` call). A count:
    /// the actor keeps the scopes themselves (their end signals), so they are not
    /// listed twice.
    open_scopes: u32,
    /// Boxed: a resign happens once per tracker at most, and inline it would cost every
    /// tracker's task 64 bytes.
    resigning: Option<Box<Resigning>>,
}

impl<T: Readable> Machine<T> {
    /// A machine for claim duration `d` (validated by the caller: `2·d` representable).
    pub(crate) fn new(d: Duration, backoff: Backoff) -> Machine<T> {
        Machine {
            d,
            held_for: 2 * d - TIMER_LATENESS.min(d),
            phase: Phase::Idle,
            grant: None,
            now: Instant::now(),
            backoff,
            parked: VecDeque::new(),
            prune_at: PRUNE_FLOOR as u32,
            horizon: None,
            open_scopes: 0,
            resigning: None,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The claim duration `d`.
    pub(crate) fn claim_duration(&self) -> Duration {
        self.d
    }

    /// Whether the tracker holds a grant whose lease has not been given up.
    pub(crate) fn is_leader(&self) -> bool {
        self.grant.is_some()
    }

    /// Whether the tracker has stopped, for now (a failure) or for good.
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped | Phase::Ended)
    }

    /// Whether the tracker has stopped for good (killed or resigned).
    pub(crate) fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether a resign is in progress.
    pub(crate) fn is_resigning(&self) -> bool {
        self.resigning.is_some()
    }

    /// How many tickets are parked.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// What [`Tracker::status`](crate::Tracker::status) shows: it changes exactly when
    /// the tickets' answers do. `Leader` from the instant a `WaitLeader` would resolve
    /// `true` (a grant) until the instant a `WaitMinion` would resolve `false` (the
    /// grant gone); a resign shows as `Resigning` until the tracker stops.
    pub(crate) fn status(&self) -> Status {
        match (self.phase, self.grant) {
            (Phase::Stopped | Phase::Ended, _) => Status::Stopped,
            _ if self.resigning.is_some() => Status::Resigning,
            (_, Some(held)) => Status::Leader(Guarantee {
                term: held.term,
                until: self.leadership_end(held.t0),
            }),
            (Phase::Blocking, None) => Status::Minion,
            (_, None) => Status::Claiming,
        }
    }

    /// What [`status`](Machine::status) is computed from, cheap to copy and compare: if
    /// it is unchanged by an event, so is the status, and so is
    /// [`next_deadline`](Machine::next_deadline) unless a resign is in progress.
    pub(crate) fn status_inputs(&self) -> (Phase, Option<Held>, bool) {
        (self.phase, self.grant, self.resigning.is_some())
    }

    /// The guarantee of `held` for an answer given now: leadership lasts until the
    /// tracker's own end of it, and a `true` answer is only given while `now < t0 + d`,
    /// so `now + d` lies within the lease too. The later of the two is promised: it is
    /// never before `now + d`, and never after the lease's end `t0 + 2·d`.
    fn guarantee_of(&self, held: Held) -> Guarantee {
        Guarantee {
            term: held.term,
            until: self.leadership_end(held.t0).max(self.now + self.d),
        }
    }

    /// Handles one event at `now`: first the time-driven rules, then the event.
    pub(crate) fn handle(&mut self, now: Instant, event: Event<T>, effects: &mut Vec<Effect<T>>) {
        self.now = self.now.max(now);
        self.catch_up(now, effects);
        match event {
            Event::Tick => {}
            Event::Start if self.phase == Phase::Idle => self.claim(now, ClaimKind::First, effects),
            Event::Start => {}
            Event::StartQueued if self.phase == Phase::Idle => self.phase = Phase::Queued,
            Event::StartQueued => {}
            Event::ClaimSlot if self.phase == Phase::Queued => {
                self.claim(now, ClaimKind::First, effects)
            }
            Event::ClaimSlot => {}
            Event::Ticket(kind, ticket) => {
                // Only the ticket is new: the catch-up above settled the queue already.
                match self.answer(kind) {
                    Some(answer) => self.resolve(kind, ticket, answer, effects),
                    None => self.park(kind, ticket),
                }
                return;
            }
            Event::ClaimAnswered(result) => self.on_claim_answer(result, effects),
            Event::BlockAnswered(result) => self.on_block_answer(now, result, effects),
            Event::Resign(leave) => self.on_resign(now, leave),
            Event::Kill if !self.is_ended() => self.finish(Ok(()), effects),
            Event::Kill => {}
            Event::LeaveAnswered(result) => {
                if let Phase::Leaving { .. } = self.phase {
                    self.finish(result, effects);
                }
            }
            Event::ScopeClosed => self.open_scopes = self.open_scopes.saturating_sub(1),
            Event::ParkedScopeClosed(id) => self.on_parked_scope_closed(id),
        }
        // An answer can leave a deadline already passed (a grant whose renewal is
        // already due): apply it now rather than on the next timer.
        self.catch_up(now, effects);
        self.settle(effects);
        self.try_leave(now, effects);
    }

    /// The next instant at which a time-driven rule applies, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let cycle = match self.phase {
            Phase::Leader => self.grant.map(|held| held.t0 + self.d),
            Phase::Claiming { sent_at, .. } => {
                let timeout = sent_at + self.d;
                Some(match self.grant {
                    Some(held) => timeout.min(self.leadership_end(held.t0)),
                    None => timeout,
                })
            }
            Phase::BackingOff { until } => Some(until),
            Phase::Leaving { sent_at } => return Some(sent_at + self.d),
            Phase::Idle | Phase::Queued | Phase::Blocking | Phase::Stopped | Phase::Ended => None,
        };
        let resign = self.resigning.as_ref().and_then(|r| {
            if self.is_stopped() {
                return None;
            }
            let horizon = self
                .horizon
                .filter(|h| *h > self.now && self.waits_for_horizon());
            let scopes_end = (!r.scopes_ended && self.open_scopes > 0).then_some(r.since + self.d);
            [horizon, scopes_end].into_iter().flatten().min()
        });
        [cycle, resign].into_iter().flatten().min()
    }

    /// Stops (the actor stopping): every parked ticket answers `false`, every open
    /// scope is ended, and every later ticket answers `false`. A tracker that ended
    /// stays ended.
    pub(crate) fn stop(&mut self, effects: &mut Vec<Effect<T>>) {
        if self.phase != Phase::Ended {
            self.phase = Phase::Stopped;
        }
        self.grant = None;
        self.resigning = None;
        self.end_scopes(effects);
        self.settle(effects);
    }

    /// A supervised restart: after a failure, wait a backoff, then claim afresh, and
    /// return the wait; after a kill or a resign, stay ended (inert) and return `None`.
    /// The first claim after a restart is a fresh claim, not a first one: the tracker
    /// knows it holds nothing, so `WaitMinion` answers `false` at once.
    pub(crate) fn restart(
        &mut self,
        now: Instant,
        effects: &mut Vec<Effect<T>>,
    ) -> Option<Duration> {
        self.now = self.now.max(now);
        self.stop(effects);
        if self.is_ended() {
            return None;
        }
        let delay = self.backoff.next_delay(self.d);
        self.phase = Phase::BackingOff { until: now + delay };
        Some(delay)
    }

    /// When leadership from a claim granted with `t0` ends: a timer's lateness before
    /// the lease's expiry `t0 + 2·d` (see the module doc), never before `t0 + d`.
    fn leadership_end(&self, t0: Instant) -> Instant {
        t0 + self.held_for
    }

    /// Applies every rule that the passage of time triggers by `now`.
    fn catch_up(&mut self, now: Instant, effects: &mut Vec<Effect<T>>) {
        let mut changed = false;
        // A passed horizon promises nothing more. (Kept across a failure and restart
        // until then: the lease it was promised under may be extended again.)
        if self.horizon.is_some_and(|h| self.now >= h) {
            self.horizon = None;
        }
        // Rule 8: an unrenewed lease ends at t0 + 2·d, whatever else is going on;
        // leadership ends a timer's lateness before, so that a late timer is on time.
        if let Some(held) = self.grant {
            if now >= self.leadership_end(held.t0) {
                self.lose_grant(effects);
                changed = true;
            }
        }
        match self.phase {
            Phase::Leader => {
                match self.grant {
                    // A resigning leader with nothing left to keep leaves instead.
                    Some(_) if self.ready_to_leave(now) => {}
                    // Rule 2: renew at t0 + d, counting the new guarantee from then.
                    Some(held) if now >= held.t0 + self.d => {
                        self.renew(held.t0 + self.d, now, effects)
                    }
                    Some(_) => {}
                    // Starved past the lease's end without renewing: claim afresh.
                    None => self.claim(now, ClaimKind::Fresh, effects),
                }
                // Sending a renewal changes no parked ticket's answer: a leader parks
                // only `WaitMinion`, and it keeps waiting while the grant holds. Only
                // the grant's end (noted above) needs a settle.
            }
            Phase::Claiming { sent_at, .. } if now >= sent_at + self.d => {
                // Rule 8: a claim unanswered for d is a failure.
                let waited = now.saturating_duration_since(sent_at);
                self.fail(
                    LeaseError::Failed(format!("leadership claim unanswered after {waited:?}")),
                    effects,
                );
                return;
            }
            Phase::BackingOff { until } if now >= until => {
                self.claim(now, ClaimKind::Fresh, effects);
                changed = true;
            }
            Phase::Leaving { sent_at } if now >= sent_at + self.d => {
                let waited = now.saturating_duration_since(sent_at);
                let error =
                    LeaseError::Failed(format!("leadership release unanswered after {waited:?}"));
                self.finish(Err(error), effects);
                return;
            }
            _ => {}
        }
        // Contract section 6: a scope still open d after the resign is ended.
        if let Some(resigning) = &mut self.resigning {
            if !resigning.scopes_ended && now >= resigning.since + self.d {
                resigning.scopes_ended = true;
                if self.open_scopes > 0 {
                    effects.push(Effect::CancelScopes);
                }
                // They stay open until they close: the release waits for that.
            }
        }
        if changed {
            self.settle(effects);
        }
    }

    /// Leadership ends (rule 8, a denial): the grant is forgotten and every open lead
    /// scope is told to end at this instant.
    fn lose_grant(&mut self, effects: &mut Vec<Effect<T>>) {
        self.grant = None;
        self.end_scopes(effects);
    }

    fn end_scopes(&mut self, effects: &mut Vec<Effect<T>>) {
        if self.open_scopes > 0 {
            self.open_scopes = 0;
            effects.push(Effect::EndScopes);
        }
    }

    fn on_claim_answer(&mut self, result: Result<Grant, LeaseError>, effects: &mut Vec<Effect<T>>) {
        let Phase::Claiming { t0, .. } = self.phase else {
            return; // No claim in flight: a stale answer (cannot happen; ignore it).
        };
        match result {
            Ok(grant) => {
                self.grant = Some(Held {
                    t0,
                    term: grant.term,
                });
                self.phase = Phase::Leader;
                self.backoff.reset();
            }
            Err(LeaseError::ClaimDenied) => {
                // Someone else holds the lease: whatever we held before is void.
                self.lose_grant(effects);
                self.phase = Phase::Blocking;
                if self.resigning.is_none() {
                    effects.push(Effect::SendBlock);
                }
            }
            Err(error) => self.fail(error, effects),
        }
    }

    fn on_block_answer(
        &mut self,
        now: Instant,
        result: Result<(), LeaseError>,
        effects: &mut Vec<Effect<T>>,
    ) {
        if self.phase != Phase::Blocking {
            return;
        }
        match result {
            Ok(()) => self.claim(now, ClaimKind::Fresh, effects),
            // Rule 3: never a hot loop against a failing manager.
            Err(_) => {
                let delay = self.backoff.next_delay(self.d);
                self.phase = Phase::BackingOff { until: now + delay };
            }
        }
    }

    /// Contract section 6: from this instant every ticket but those already answered
    /// is `false`; a leader waits for its promises and scopes, anything else stops.
    fn on_resign(&mut self, now: Instant, leave: Leave) {
        if self.resigning.is_some() || self.is_stopped() || self.phase == Phase::Idle {
            return;
        }
        self.resigning = Some(Box::new(Resigning {
            since: now,
            leave,
            scopes_ended: false,
        }));
        // Lead tickets still parked will never open a scope now: `settle` answers them
        // (and every other parked ticket) `false`.
    }

    /// Whether a resigning tracker waits for its promise horizon before leaving. With
    /// a claimer that cannot release, stopping leaves the lease in place until it
    /// expires, which covers every promise, so it need not.
    fn waits_for_horizon(&self) -> bool {
        matches!(
            self.resigning.as_deref(),
            Some(Resigning {
                leave: Leave::Release | Leave::HandOver(_),
                ..
            })
        )
    }

    /// A resigning leader may give its lease up: no scope open and, if the release
    /// would shorten the lease, every promise ended.
    fn ready_to_leave(&self, now: Instant) -> bool {
        self.resigning.is_some()
            && self.open_scopes == 0
            && (!self.waits_for_horizon() || self.horizon.is_none_or(|h| now >= h))
    }

    /// Sends the release (or stops) once a resigning tracker may.
    fn try_leave(&mut self, now: Instant, effects: &mut Vec<Effect<T>>) {
        let Some(resigning) = &self.resigning else {
            return;
        };
        match self.phase {
            Phase::Stopped | Phase::Ended | Phase::Leaving { .. } => {}
            // Not leader (a minion, a claiming tracker, or leadership lost meanwhile):
            // nothing to give up, it just stops.
            _ if self.grant.is_none() => self.finish(Ok(()), effects),
            // With a renewal in flight, the release waits for its answer, so that the
            // manager never sees the release before the claim.
            Phase::Leader if self.ready_to_leave(now) => match resigning.leave.clone() {
                Leave::Expire => self.finish(Ok(()), effects),
                Leave::Release => self.leave(now, None, effects),
                Leave::HandOver(successor) => self.leave(now, Some(successor), effects),
            },
            _ if self.ready_to_leave(now) && !self.waits_for_horizon() => {
                self.finish(Ok(()), effects)
            }
            _ => {}
        }
    }

    fn leave(&mut self, now: Instant, successor: Option<UnitName>, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Leaving { sent_at: now };
        effects.push(Effect::SendLeave(successor));
    }

    /// Ends the tracker for good (a kill, a resign): stops with `result`.
    fn finish(&mut self, result: Result<(), LeaseError>, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Ended;
        self.stop(effects);
        effects.push(Effect::Finish(result));
    }

    fn on_parked_scope_closed(&mut self, id: ScopeId) {
        if let Some(at) = self
            .parked
            .iter()
            .position(|(kind, _)| *kind == TicketKind::Lead(id))
        {
            // Closed before it opened: its ticket has no reader left.
            self.parked.remove(at);
        }
    }

    fn claim(&mut self, now: Instant, kind: ClaimKind, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Claiming {
            t0: now,
            sent_at: now,
            kind,
        };
        effects.push(Effect::SendClaim);
    }

    /// A renewal due at `due` (≤ `now`): its guarantee counts from `due`.
    fn renew(&mut self, due: Instant, now: Instant, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Claiming {
            t0: due,
            sent_at: now,
            kind: ClaimKind::Renewal,
        };
        effects.push(Effect::SendClaim);
    }

    fn fail(&mut self, error: LeaseError, effects: &mut Vec<Effect<T>>) {
        if self.resigning.is_some() {
            // A resign ends the tracker for good, even supervised.
            self.finish(Err(error), effects);
            return;
        }
        self.stop(effects);
        effects.push(Effect::Fail(error));
    }

    /// The answer to a ticket of `kind` now (`Some(None)` is `false`), or `None` if it
    /// must wait.
    fn answer(&self, kind: TicketKind) -> Option<Option<Guarantee>> {
        if self.is_stopped() || self.resigning.is_some() {
            // Rule 9, and section 6: a resigning tracker promises nothing more.
            return Some(None);
        }
        let leading = match self.grant {
            Some(held) if self.phase == Phase::Leader => Some(self.guarantee_of(held)),
            _ => None,
        };
        match (kind, self.phase) {
            // Rule 8: leadership ended while the renewal was in flight; that claim can
            // no longer make this answer true in time, so it is false at once.
            (
                TicketKind::ClaimLeader,
                Phase::Claiming {
                    kind: ClaimKind::Renewal,
                    ..
                },
            ) if self.grant.is_none() => Some(None),
            // Rules 5 and 6: a claim due or in flight is waited for, never guessed (a
            // queued first claim is due).
            (TicketKind::ClaimLeader, Phase::Claiming { .. } | Phase::Queued) => None,
            (TicketKind::ClaimLeader, _) => Some(leading),
            (TicketKind::WaitLeader | TicketKind::Lead(_), _) => leading.map(Some),
            // Rule 7: resolves once leadership cannot be guaranteed; while the first
            // claim is in flight the tracker does not know yet, so it waits.
            (
                TicketKind::WaitMinion,
                Phase::Queued
                | Phase::Claiming {
                    kind: ClaimKind::First,
                    ..
                },
            ) => None,
            (TicketKind::WaitMinion, _) => self.grant.is_none().then_some(None),
        }
    }

    /// Answers a ticket, noting what a `true` answer commits the tracker to: a promise
    /// until `now + d`, or an open scope.
    fn resolve(
        &mut self,
        kind: TicketKind,
        ticket: T,
        answer: Option<Guarantee>,
        effects: &mut Vec<Effect<T>>,
    ) {
        if answer.is_some() {
            match kind {
                TicketKind::Lead(id) => {
                    self.open_scopes = self.open_scopes.saturating_add(1);
                    effects.push(Effect::ScopeOpened(id));
                }
                _ => {
                    let promise = self.now + self.d;
                    self.horizon = Some(self.horizon.map_or(promise, |h| h.max(promise)));
                }
            }
        }
        effects.push(Effect::Resolve(ticket, answer));
    }

    /// Parks a ticket. Once in a while (amortised O(1) per ticket) it first drops the
    /// parked tickets nobody can read any more, so that abandoned tickets do not pile
    /// up in a tracker that stays a minion for ever.
    fn park(&mut self, kind: TicketKind, ticket: T) {
        prune_amortised(
            &mut self.parked,
            &mut self.prune_at,
            PRUNE_FLOOR,
            |(_, t)| t.readable(),
        );
        self.parked.push_back((kind, ticket));
    }

    /// Answers every parked ticket that can be answered now, in the order received.
    fn settle(&mut self, effects: &mut Vec<Effect<T>>) {
        if self.parked.is_empty() {
            return;
        }
        // One turn of the queue in its own buffer: a ticket still waiting goes back to
        // the end, so the order holds and nothing is allocated (this runs after every
        // event but a ticket, e.g. each renewal of a leader with a `WaitMinion` parked).
        let mut parked = std::mem::take(&mut self.parked);
        for _ in 0..parked.len() {
            let Some((kind, ticket)) = parked.pop_front() else {
                break;
            };
            match self.answer(kind) {
                Some(answer) => self.resolve(kind, ticket, answer, effects),
                None => parked.push_back((kind, ticket)),
            }
        }
        self.parked = parked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(10);
    const NS: Duration = Duration::from_nanos(1);
    /// The grant of term 1.
    const G: Grant = Grant { term: 1 };

    /// An effect as the tests compare it: a resolution as `true`/`false`, its guarantee
    /// kept aside in [`Harness::guarantees`].
    #[derive(Debug, PartialEq, Eq)]
    enum Fx {
        SendClaim,
        SendBlock,
        /// A release (`None`) or hand-over (the successor's name).
        SendLeave(Option<&'static str>),
        Resolve(u32, bool),
        /// Every open scope ends and is forgotten.
        EndScopes,
        /// Every open scope is told to end, and still counted open until it closes.
        CancelScopes,
        Fail(LeaseError),
        Finish(Result<(), LeaseError>),
    }

    /// Drives a machine whose tickets are plain ids, at instants relative to `start`.
    struct Harness {
        machine: Machine<u32>,
        start: Instant,
        effects: Vec<Effect<u32>>,
        /// The guarantee of every ticket resolved `true`, in order.
        guarantees: Vec<(u32, Guarantee)>,
        /// Every lead scope opened, in order.
        opened: Vec<ScopeId>,
    }

    impl Harness {
        /// A machine that has not started yet (phase `Idle`); `start` is now.
        fn idle() -> Harness {
            Harness {
                machine: Machine::new(D, Backoff::new(0)),
                start: Instant::now(),
                effects: Vec::new(),
                guarantees: Vec::new(),
                opened: Vec::new(),
            }
        }

        /// A machine that has sent its first claim at `start`.
        fn started() -> Harness {
            let mut h = Harness::idle();
            h.machine.handle(h.start, Event::Start, &mut h.effects);
            assert_eq!(h.take(), vec![Fx::SendClaim]);
            h
        }

        fn at(&self, offset: Duration) -> Instant {
            self.start + offset
        }

        fn event(&mut self, offset: Duration, event: Event<u32>) -> Vec<Fx> {
            let now = self.at(offset);
            self.machine.handle(now, event, &mut self.effects);
            self.take()
        }

        fn ticket(&mut self, offset: Duration, kind: TicketKind, id: u32) -> Vec<Fx> {
            self.event(offset, Event::Ticket(kind, id))
        }

        fn take(&mut self) -> Vec<Fx> {
            let mut fx = Vec::new();
            for effect in std::mem::take(&mut self.effects) {
                fx.push(match effect {
                    Effect::SendClaim => Fx::SendClaim,
                    Effect::SendBlock => Fx::SendBlock,
                    Effect::SendLeave(to) => Fx::SendLeave(to.map(|unit| match unit.as_str() {
                        "led-service/1" => "led-service/1",
                        other => panic!("unexpected successor {other}"),
                    })),
                    Effect::ScopeOpened(id) => {
                        self.opened.push(id);
                        continue;
                    }
                    Effect::EndScopes => Fx::EndScopes,
                    Effect::CancelScopes => Fx::CancelScopes,
                    Effect::Fail(e) => Fx::Fail(e),
                    Effect::Finish(result) => Fx::Finish(result),
                    Effect::Resolve(id, answer) => {
                        if let Some(guarantee) = answer {
                            self.guarantees.push((id, guarantee));
                        }
                        Fx::Resolve(id, answer.is_some())
                    }
                });
            }
            fx
        }

        /// Grants the first claim: the machine is leader from `start`.
        fn leader() -> Harness {
            let mut h = Harness::started();
            assert_eq!(h.event(Duration::ZERO, Event::ClaimAnswered(Ok(G))), vec![]);
            h
        }
    }

    use Fx::{Resolve, SendBlock, SendClaim};
    use TicketKind::{ClaimLeader, WaitLeader, WaitMinion};

    #[test]
    fn tickets_wait_for_the_first_claim_then_resolve_in_order() {
        let mut h = Harness::started();
        assert_eq!(h.machine.next_deadline(), Some(h.at(D)), "claim timeout");
        for (id, kind) in [(1, WaitMinion), (2, ClaimLeader), (3, WaitLeader)] {
            assert_eq!(h.ticket(NS, kind, id), vec![], "{kind:?} parks");
        }
        let fx = h.event(Duration::from_millis(5), Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Resolve(2, true), Resolve(3, true)]);
        assert_eq!(h.machine.phase(), Phase::Leader);
        assert_eq!(h.machine.next_deadline(), Some(h.at(D)), "renewal from t0");
    }

    /// A machine started with its first claim queued (no slot on its claimer).
    fn queued() -> Harness {
        let mut h = Harness::idle();
        assert_eq!(h.event(Duration::ZERO, Event::StartQueued), vec![]);
        assert_eq!(h.machine.phase(), Phase::Queued);
        h
    }

    #[test]
    fn a_queued_first_claim_answers_tickets_as_one_in_flight_and_counts_from_its_send() {
        let mut h = queued();
        assert_eq!(h.machine.status(), Status::Claiming);
        for (id, kind) in [(1, WaitMinion), (2, ClaimLeader), (3, WaitLeader)] {
            assert_eq!(h.ticket(NS, kind, id), vec![], "{kind:?} parks");
        }
        // Nothing times out while queued: the claim has not been sent.
        assert_eq!(h.machine.next_deadline(), None);
        assert_eq!(h.event(5 * D, Event::Tick), vec![]);
        assert_eq!(h.event(5 * D, Event::Start), vec![], "started already");
        // The slot comes: the claim goes out now and its lease counts from now.
        assert_eq!(h.event(5 * D, Event::ClaimSlot), vec![SendClaim]);
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(6 * D)),
            "claim timeout"
        );
        assert_eq!(h.event(5 * D, Event::ClaimSlot), vec![], "sent once");
        let fx = h.event(5 * D + NS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Resolve(2, true), Resolve(3, true)]);
        let end = 7 * D - TIMER_LATENESS;
        assert_eq!(
            h.guarantees[0].1.until,
            h.at(end),
            "from the send, not the start"
        );
        assert_eq!(h.machine.next_deadline(), Some(h.at(6 * D)), "renewal");
    }

    #[test]
    fn a_queued_tracker_denied_later_answers_wait_minion_then_and_stops_at_once() {
        let mut h = queued();
        h.ticket(NS, WaitMinion, 1);
        assert_eq!(h.event(MS, Event::ClaimSlot), vec![SendClaim]);
        let fx = h.event(2 * MS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(fx, vec![SendBlock, Resolve(1, false)]);
        // Resigned or killed while queued: it just stops, and a late slot does nothing.
        for stop in [Event::Resign(Leave::Release), Event::Kill] {
            let mut h = queued();
            h.ticket(NS, ClaimLeader, 1);
            let fx = h.event(MS, stop);
            assert_eq!(fx, vec![Resolve(1, false), Fx::Finish(Ok(()))]);
            assert_eq!(h.event(2 * MS, Event::ClaimSlot), vec![]);
            assert_eq!(h.event(2 * MS, Event::StartQueued), vec![]);
        }
    }

    #[test]
    fn claim_leader_is_true_only_while_d_remains_of_the_grant() {
        let mut h = Harness::leader();
        assert_eq!(h.ticket(D - NS, ClaimLeader, 1), vec![Resolve(1, true)]);
        // At t0 + d the renewal is due: the ticket waits for it instead of guessing.
        assert_eq!(h.ticket(D, ClaimLeader, 2), vec![SendClaim]);
        assert_eq!(h.ticket(D + NS, ClaimLeader, 3), vec![]);
        let fx = h.event(D + 2 * NS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Resolve(2, true), Resolve(3, true)]);
        // The renewal's t0 is when it was sent (D), so the next renewal is at 2·D.
        assert_eq!(h.machine.next_deadline(), Some(h.at(2 * D)));
        assert_eq!(h.ticket(2 * D - NS, ClaimLeader, 4), vec![Resolve(4, true)]);
    }

    #[test]
    fn renewal_is_sent_once_per_d() {
        let mut h = Harness::leader();
        for n in 1..=100u32 {
            let renew_at = D * n;
            assert_eq!(h.machine.next_deadline(), Some(h.at(renew_at)));
            assert_eq!(h.event(renew_at - NS, Event::Tick), vec![]);
            assert_eq!(h.event(renew_at, Event::Tick), vec![SendClaim]);
            assert_eq!(
                h.event(renew_at, Event::Tick),
                vec![],
                "only one claim in flight"
            );
            assert_eq!(h.event(renew_at + NS, Event::ClaimAnswered(Ok(G))), vec![]);
        }
    }

    #[test]
    fn denial_makes_a_minion_that_blocks_once_then_claims_again() {
        let mut h = Harness::started();
        h.ticket(NS, WaitMinion, 1);
        h.ticket(NS, WaitLeader, 2);
        let fx = h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(fx, vec![SendBlock, Resolve(1, false)]);
        assert_eq!(h.machine.next_deadline(), None, "a block has no deadline");
        assert_eq!(h.ticket(D * 5, ClaimLeader, 3), vec![Resolve(3, false)]);
        assert_eq!(h.ticket(D * 5, WaitMinion, 4), vec![Resolve(4, false)]);
        let fx = h.event(D * 6, Event::BlockAnswered(Ok(())));
        assert_eq!(fx, vec![SendClaim]);
        assert_eq!(
            h.ticket(D * 6, ClaimLeader, 5),
            vec![],
            "waits for the claim"
        );
        let fx = h.event(D * 6, Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Resolve(2, true), Resolve(5, true)]);
    }

    #[test]
    fn renewal_denied_ends_leadership_at_once() {
        let mut h = Harness::leader();
        h.ticket(NS, WaitMinion, 1);
        h.event(D, Event::Tick);
        let fx = h.event(D + NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(fx, vec![SendBlock, Resolve(1, false)]);
        assert!(!h.machine.is_leader());
        assert_eq!(h.ticket(D + NS, ClaimLeader, 2), vec![Resolve(2, false)]);
    }

    #[test]
    fn unanswered_renewal_ends_leadership_at_expiry_and_then_fails() {
        let mut h = Harness::leader();
        h.ticket(NS, WaitMinion, 1);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        // Parked while the renewal is in flight, never answered true.
        assert_eq!(h.ticket(D + NS, ClaimLeader, 2), vec![]);
        // Leadership ends a timer's lateness before the lease's expiry at 2·D.
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(h.machine.next_deadline(), Some(h.at(end)));
        assert_eq!(h.event(end - NS, Event::Tick), vec![]);
        let fx = h.event(end, Event::Tick);
        assert!(!h.machine.is_leader());
        assert_eq!(
            fx,
            vec![Resolve(1, false), Resolve(2, false)],
            "WaitMinion resolves by the expiry, and so does the parked ClaimLeader"
        );
        assert_eq!(
            h.ticket(end + NS, ClaimLeader, 3),
            vec![Resolve(3, false)],
            "no more waiting on a renewal that cannot help in time"
        );
        assert_eq!(h.ticket(end + NS, WaitLeader, 4), vec![]);
        // The renewal, unanswered for d, fails at 2·D.
        assert_eq!(h.machine.next_deadline(), Some(h.at(2 * D)));
        let fx = h.event(2 * D, Event::Tick);
        assert_eq!(fx[0], Resolve(4, false));
        assert!(matches!(fx.last(), Some(Fx::Fail(LeaseError::Failed(_)))));
        assert_eq!(h.machine.phase(), Phase::Stopped);
    }

    #[test]
    fn leadership_ends_a_timers_lateness_before_the_lease_and_never_before_t0_plus_d() {
        // A late timer (tokio fires up to 2 ms late) still ends leadership no later
        // than the lease's expiry.
        let mut h = Harness::leader();
        h.event(D, Event::Tick);
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(2 * D - TIMER_LATENESS))
        );
        // With d below a timer's lateness, leadership still lasts until t0 + d.
        let tiny = Duration::from_micros(300);
        let mut machine: Machine<u32> = Machine::new(tiny, Backoff::new(0));
        let mut fx = Vec::new();
        machine.handle(h.start, Event::Start, &mut fx);
        machine.handle(h.start, Event::ClaimAnswered(Ok(G)), &mut fx);
        machine.handle(h.start + tiny - NS, Event::Tick, &mut fx);
        assert!(machine.is_leader(), "not ended before t0 + d");
        machine.handle(h.start + tiny, Event::Tick, &mut fx);
        assert!(!machine.is_leader(), "ended at t0 + d");
    }

    #[test]
    fn a_late_renewal_still_ends_leadership_at_the_lease_expiry() {
        // The actor was starved: the renewal goes out late, at t0 + 1.5·d. Leadership
        // must still end by t0 + 2·d, before that claim times out.
        let mut h = Harness::leader();
        let late = D + D / 2;
        assert_eq!(h.event(late, Event::Tick), vec![SendClaim]);
        h.ticket(late, WaitMinion, 1);
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(h.machine.next_deadline(), Some(h.at(end)));
        assert_eq!(h.event(end, Event::Tick), vec![Resolve(1, false)]);
        let renewal = Phase::Claiming {
            t0: h.at(D),
            sent_at: h.at(late),
            kind: ClaimKind::Renewal,
        };
        assert_eq!(
            h.machine.phase(),
            renewal,
            "the guarantee counts from the due instant"
        );
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(late + D)),
            "timeout from sending"
        );
        // The late renewal is granted: it covers from its due instant D, so at 2·D the
        // next renewal is already due and the ticket waits for it.
        assert_eq!(
            h.event(2 * D + NS, Event::ClaimAnswered(Ok(G))),
            vec![SendClaim]
        );
        assert_eq!(h.ticket(2 * D + NS, ClaimLeader, 2), vec![]);
        assert_eq!(
            h.event(2 * D + NS, Event::ClaimAnswered(Ok(G))),
            vec![Resolve(2, true)]
        );
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(3 * D)),
            "back on the grid"
        );
    }

    #[test]
    fn starved_past_the_expiry_a_leader_claims_afresh_and_answers_false() {
        let mut h = Harness::leader();
        let fx = h.ticket(3 * D, ClaimLeader, 1);
        assert_eq!(fx, vec![SendClaim]);
        assert!(!h.machine.is_leader());
        assert_eq!(h.ticket(3 * D, WaitMinion, 2), vec![Resolve(2, false)]);
    }

    #[test]
    fn claim_errors_and_timeouts_fail_and_resolve_everything_false() {
        let mut h = Harness::started();
        h.ticket(NS, WaitLeader, 1);
        let pow = LeaseError::Failed("pow".into());
        let fx = h.event(NS, Event::ClaimAnswered(Err(pow.clone())));
        assert_eq!(fx, vec![Resolve(1, false), Fx::Fail(pow)]);
        assert_eq!(h.ticket(NS, WaitLeader, 2), vec![Resolve(2, false)]);

        let mut h = Harness::started();
        h.ticket(NS, ClaimLeader, 1);
        assert_eq!(h.event(D - NS, Event::Tick), vec![]);
        let fx = h.event(D, Event::Tick);
        assert_eq!(fx[0], Resolve(1, false));
        assert!(matches!(&fx[1], Fx::Fail(LeaseError::Failed(m)) if m.contains("unanswered")));
        // An answer arriving after the failure changes nothing.
        assert_eq!(h.event(D, Event::ClaimAnswered(Ok(G))), vec![]);
        assert!(!h.machine.is_leader());
    }

    #[test]
    fn failed_blocks_back_off_doubling_to_the_cap_and_reset_on_grant() {
        let mut h = Harness::started();
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        let mut now = NS;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(
                h.event(now, Event::BlockAnswered(Err(LeaseError::BlockCancelled))),
                vec![]
            );
            let Phase::BackingOff { until } = h.machine.phase() else {
                panic!("backing off")
            };
            waits.push(until - h.at(now));
            assert_eq!(
                h.event(now, Event::Tick),
                vec![],
                "no claim before the backoff"
            );
            now = until - h.start;
            assert_eq!(h.event(now, Event::Tick), vec![SendClaim]);
            assert_eq!(
                h.event(now, Event::ClaimAnswered(Err(LeaseError::ClaimDenied))),
                vec![SendBlock]
            );
        }
        let first = waits[0];
        assert!(
            first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
            "{first:?}"
        );
        for pair in waits.windows(2) {
            assert_eq!(pair[1], (pair[0] * 2).min(D), "{waits:?}");
        }
        assert_eq!(*waits.last().unwrap(), D, "capped at d");
        // A grant resets the backoff.
        h.event(now, Event::BlockAnswered(Ok(())));
        h.event(now, Event::ClaimAnswered(Ok(G)));
        h.event(now, Event::Tick);
        let renew = now + D;
        h.event(renew, Event::Tick);
        h.event(renew, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        h.event(renew, Event::BlockAnswered(Err(LeaseError::BlockCancelled)));
        let Phase::BackingOff { until } = h.machine.phase() else {
            panic!("backing off")
        };
        assert_eq!(until - h.at(renew), first);
    }

    #[test]
    fn backoff_is_capped_by_a_short_claim_duration_and_spread_by_unit() {
        let mut short = Backoff::new(0);
        assert_eq!(
            short.next_delay(Duration::from_millis(50)),
            Duration::from_millis(50)
        );
        let firsts: std::collections::HashSet<_> = (0..20)
            .map(|spread| Backoff::new(spread * 37).next_delay(D))
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
        assert!(firsts
            .iter()
            .all(|w| *w >= Duration::from_millis(500) && *w <= Duration::from_secs(1)));
    }

    #[test]
    fn renewals_keep_the_parked_queue_in_its_buffer_and_in_order() {
        let mut h = Harness::leader();
        for id in 1..=3 {
            assert_eq!(h.ticket(Duration::ZERO, WaitMinion, id), vec![]);
        }
        // A buffer larger than three tickets would grow to: a new queue would show.
        h.machine.parked.reserve(100);
        let capacity = h.machine.parked.capacity();
        // Two renewals, each sent by a tick and granted: every event settles the queue.
        for k in 1..=2 {
            assert_eq!(h.event(D * k, Event::Tick), vec![SendClaim]);
            assert_eq!(h.event(D * k, Event::ClaimAnswered(Ok(G))), vec![]);
        }
        assert_eq!(h.machine.parked(), 3);
        assert_eq!(
            h.machine.parked.capacity(),
            capacity,
            "settled in place, not into a new queue"
        );
        // Unrenewed, leadership ends: they answer in the order they came.
        assert_eq!(h.event(D * 3, Event::Tick), vec![SendClaim]);
        assert_eq!(
            h.event(D * 4 - TIMER_LATENESS, Event::Tick),
            vec![Resolve(1, false), Resolve(2, false), Resolve(3, false)]
        );
    }

    #[test]
    fn stop_resolves_parked_tickets_false_in_order_and_stays_stopped() {
        let mut h = Harness::started();
        for id in 1..=3 {
            h.ticket(
                NS,
                [WaitMinion, WaitLeader, ClaimLeader][id as usize - 1],
                id,
            );
        }
        h.machine.stop(&mut h.effects);
        assert_eq!(
            h.take(),
            vec![Resolve(1, false), Resolve(2, false), Resolve(3, false)]
        );
        assert_eq!(h.machine.next_deadline(), None);
        assert_eq!(h.ticket(D, WaitLeader, 4), vec![Resolve(4, false)]);
        assert_eq!(h.event(D, Event::ClaimAnswered(Ok(G))), vec![]);
        assert_eq!(h.ticket(D, ClaimLeader, 5), vec![Resolve(5, false)]);
    }

    #[test]
    fn restart_backs_off_as_a_minion_then_claims() {
        let mut h = Harness::leader();
        h.ticket(NS, WaitMinion, 1);
        let delay = h
            .machine
            .restart(h.at(D / 2), &mut h.effects)
            .expect("restarts");
        assert_eq!(h.take(), vec![Resolve(1, false)]);
        assert!(!h.machine.is_leader());
        assert_eq!(h.machine.next_deadline(), Some(h.at(D / 2) + delay));
        assert_eq!(h.ticket(D / 2, WaitMinion, 2), vec![Resolve(2, false)]);
        assert_eq!(h.ticket(D / 2, WaitLeader, 3), vec![]);
        assert_eq!(h.event(D / 2 + delay, Event::Tick), vec![SendClaim]);
        assert_eq!(
            h.event(D / 2 + delay, Event::ClaimAnswered(Ok(G))),
            vec![Resolve(3, true)]
        );
    }

    #[test]
    fn true_answers_carry_the_grants_term_and_an_until_at_least_d_ahead() {
        let mut h = Harness::started();
        h.ticket(NS, WaitLeader, 1);
        let granted = Grant { term: 7 };
        h.event(NS, Event::ClaimAnswered(Ok(granted)));
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(
            h.guarantees,
            vec![(
                1,
                Guarantee {
                    term: 7,
                    until: h.at(end)
                }
            )]
        );
        assert!(matches!(h.machine.status(), Status::Leader(g) if g.term == 7));
        // Handled in the last instants before t0 + d: until is never before now + d.
        let late = D - NS;
        assert_eq!(h.ticket(late, ClaimLeader, 2), vec![Resolve(2, true)]);
        assert_eq!(h.guarantees[1].1.until, h.at(late + D));
        assert!(h.guarantees[1].1.until <= h.at(2 * D), "within the lease");
        // A renewal keeps the term; its guarantee counts from its due instant.
        h.event(D, Event::Tick);
        h.event(D + NS, Event::ClaimAnswered(Ok(granted)));
        assert_eq!(h.ticket(D + NS, ClaimLeader, 3), vec![Resolve(3, true)]);
        assert_eq!(
            h.guarantees[2].1,
            Guarantee {
                term: 7,
                until: h.at(D + end)
            }
        );
        // Leadership lapses; the next grant is a new term, and so are its answers.
        h.event(3 * D, Event::Tick);
        assert!(!h.machine.is_leader());
        h.event(3 * D, Event::ClaimAnswered(Ok(Grant { term: 9 })));
        assert_eq!(h.ticket(3 * D, ClaimLeader, 4), vec![Resolve(4, true)]);
        assert_eq!(h.guarantees[3].1.term, 9);
        // False answers carry nothing.
        h.machine.stop(&mut h.effects);
        assert_eq!(h.ticket(3 * D, ClaimLeader, 5), vec![Resolve(5, false)]);
        assert_eq!(h.guarantees.len(), 4);
        assert_eq!(h.machine.status(), Status::Stopped);
    }

    // Resigning (contract section 6), instant by instant.

    const MS: Duration = Duration::from_millis(1);

    fn successor() -> UnitName {
        UnitName::new("led-service/1").unwrap()
    }

    fn resign(h: &mut Harness, offset: Duration) -> Vec<Fx> {
        h.event(offset, Event::Resign(Leave::Release))
    }

    #[test]
    fn resign_with_nothing_promised_releases_at_once_and_stops_when_answered() {
        let mut h = Harness::leader();
        assert_eq!(resign(&mut h, D / 2), vec![Fx::SendLeave(None)]);
        assert_eq!(h.machine.status(), Status::Resigning);
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(D / 2 + D)),
            "release timeout"
        );
        assert_eq!(h.ticket(D / 2, WaitLeader, 1), vec![Resolve(1, false)]);
        assert_eq!(
            h.event(D / 2, Event::Tick),
            vec![],
            "the release is sent once"
        );
        let fx = h.event(D / 2 + MS, Event::LeaveAnswered(Ok(())));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
        assert_eq!(h.machine.phase(), Phase::Ended);
        assert_eq!(h.machine.status(), Status::Stopped);
        assert_eq!(h.machine.next_deadline(), None);
    }

    #[test]
    fn resign_answers_every_ticket_false_then_waits_for_the_promise_horizon() {
        let mut h = Harness::leader();
        // Two promises: the later one, until D/4 + D, is the horizon.
        assert_eq!(h.ticket(D / 8, WaitLeader, 1), vec![Resolve(1, true)]);
        assert_eq!(h.ticket(D / 4, ClaimLeader, 2), vec![Resolve(2, true)]);
        assert_eq!(h.ticket(D / 4, WaitMinion, 3), vec![]);
        let fx = resign(&mut h, D / 2);
        assert_eq!(fx, vec![Resolve(3, false)], "WaitMinion: stop leader work");
        for (id, kind) in [(4, ClaimLeader), (5, WaitLeader), (6, WaitMinion)] {
            assert_eq!(h.ticket(D / 2, kind, id), vec![Resolve(id, false)]);
        }
        assert_eq!(
            h.ticket(D / 2, TicketKind::Lead(9), 7),
            vec![Resolve(7, false)],
            "lead starts nothing"
        );
        // It keeps its lease meanwhile: the renewal at D goes out as usual.
        assert_eq!(h.machine.next_deadline(), Some(h.at(D)));
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        assert_eq!(h.event(D + MS, Event::ClaimAnswered(Ok(G))), vec![]);
        assert!(h.machine.is_leader());
        let horizon = D / 4 + D;
        assert_eq!(h.machine.next_deadline(), Some(h.at(horizon)));
        assert_eq!(h.event(horizon - NS, Event::Tick), vec![]);
        assert_eq!(h.event(horizon, Event::Tick), vec![Fx::SendLeave(None)]);
        let fx = h.event(horizon, Event::LeaveAnswered(Ok(())));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
    }

    #[test]
    fn a_resign_waits_for_a_renewal_in_flight_before_releasing() {
        let mut h = Harness::leader();
        h.ticket(D / 2, ClaimLeader, 1);
        resign(&mut h, D / 2);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        assert_eq!(
            h.machine.next_deadline(),
            Some(h.at(D + D / 2)),
            "the horizon"
        );
        // The horizon (1.5·D) passes while the renewal is in flight: the release waits
        // for its answer, so that the manager never sees the release before the claim.
        assert_eq!(h.event(D + D / 2, Event::Tick), vec![]);
        // Meanwhile the next deadline is the leadership end, not the horizon again (a
        // timer for "now" would spin).
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(h.machine.next_deadline(), Some(h.at(end)), "leadership end");
        let fx = h.event(D + D / 2 + MS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn hand_over_names_the_successor() {
        let mut h = Harness::leader();
        let fx = h.event(D / 2, Event::Resign(Leave::HandOver(successor())));
        assert_eq!(fx, vec![Fx::SendLeave(Some("led-service/1"))]);
        let fx = h.event(D / 2, Event::LeaveAnswered(Ok(())));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
    }

    #[test]
    fn a_resign_drains_open_scopes_and_releases_as_the_last_one_closes() {
        let mut h = Harness::leader();
        assert_eq!(h.ticket(NS, TicketKind::Lead(1), 1), vec![Resolve(1, true)]);
        assert_eq!(h.ticket(NS, TicketKind::Lead(2), 2), vec![Resolve(2, true)]);
        assert_eq!(resign(&mut h, D / 2), vec![], "scopes are not cancelled");
        assert_eq!(h.event(D / 2 + MS, Event::ScopeClosed), vec![]);
        // A scope promises nothing beyond its end: no horizon to wait for.
        let fx = h.event(D / 2 + 2 * MS, Event::ScopeClosed);
        assert_eq!(fx, vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn scopes_still_open_d_after_the_resign_are_ended_and_the_release_waits_for_them() {
        let mut h = Harness::leader();
        h.ticket(NS, TicketKind::Lead(1), 1);
        resign(&mut h, D / 2);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim], "renews meanwhile");
        assert_eq!(h.event(D, Event::ClaimAnswered(Ok(G))), vec![]);
        let cancel_at = D / 2 + D;
        assert_eq!(h.machine.next_deadline(), Some(h.at(cancel_at)));
        assert_eq!(h.event(cancel_at - NS, Event::Tick), vec![]);
        assert_eq!(h.event(cancel_at, Event::Tick), vec![Fx::CancelScopes]);
        assert_eq!(h.event(cancel_at, Event::Tick), vec![], "ended once");
        // The release waits until the scope's future is actually gone.
        let fx = h.event(cancel_at + NS, Event::ScopeClosed);
        assert_eq!(fx, vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn a_minion_or_a_tracker_whose_first_claim_is_unanswered_just_stops() {
        let mut h = Harness::started();
        h.ticket(NS, WaitLeader, 1);
        let fx = resign(&mut h, MS);
        assert_eq!(fx, vec![Resolve(1, false), Fx::Finish(Ok(()))]);
        assert_eq!(h.event(MS, Event::ClaimAnswered(Ok(G))), vec![]);
        assert!(!h.machine.is_leader());

        let mut h = Harness::started();
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(h.machine.status(), Status::Minion);
        assert_eq!(resign(&mut h, MS), vec![Fx::Finish(Ok(()))]);
        assert_eq!(h.event(MS, Event::BlockAnswered(Ok(()))), vec![]);
    }

    #[test]
    fn a_resign_on_a_stopped_or_resigning_machine_changes_nothing() {
        let mut h = Harness::leader();
        h.machine.stop(&mut h.effects);
        assert_eq!(resign(&mut h, NS), vec![]);
        let mut h = Harness::leader();
        h.ticket(NS, ClaimLeader, 1);
        assert_eq!(resign(&mut h, D / 2), vec![]);
        let fx = h.event(D / 2, Event::Resign(Leave::HandOver(successor())));
        assert_eq!(fx, vec![], "the first resign's way of leaving stands");
        h.event(D, Event::Tick);
        h.event(D, Event::ClaimAnswered(Ok(G)));
        assert_eq!(h.event(D + NS, Event::Tick), vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn a_failed_or_unanswered_release_finishes_with_a_failure() {
        let mut h = Harness::leader();
        resign(&mut h, NS);
        let pow = LeaseError::Failed("pow".into());
        let fx = h.event(MS, Event::LeaveAnswered(Err(pow.clone())));
        assert_eq!(fx, vec![Fx::Finish(Err(pow))]);

        let mut h = Harness::leader();
        resign(&mut h, NS);
        assert_eq!(h.event(NS + D - NS, Event::Tick), vec![]);
        let fx = h.event(NS + D, Event::Tick);
        assert!(
            matches!(&fx[..], [Fx::Finish(Err(LeaseError::Failed(m)))] if m.contains("release unanswered")),
            "{fx:?}"
        );
    }

    #[test]
    fn leadership_lost_while_resigning_stops_without_a_release() {
        // Renewal denied: someone else leads already; no block, no release.
        let mut h = Harness::leader();
        h.ticket(D / 2, ClaimLeader, 1);
        resign(&mut h, D / 2);
        h.event(D, Event::Tick);
        let fx = h.event(D + MS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);

        // Renewal unanswered: leadership ends by rule 8, and with it the resign.
        let mut h = Harness::leader();
        h.ticket(NS, TicketKind::Lead(1), 1);
        resign(&mut h, D / 2);
        h.event(D, Event::Tick);
        let end = 2 * D - TIMER_LATENESS;
        // The scope is ended at D/2 + D, before leadership ends; still open, so the
        // tracker keeps waiting for it.
        assert_eq!(h.event(D / 2 + D, Event::Tick), vec![Fx::CancelScopes]);
        let fx = h.event(end, Event::Tick);
        assert_eq!(fx, vec![Fx::EndScopes, Fx::Finish(Ok(()))]);

        // A claim error while resigning ends the tracker for good, not a restart.
        let mut h = Harness::leader();
        h.ticket(D / 2, ClaimLeader, 1);
        resign(&mut h, D / 2);
        h.event(D, Event::Tick);
        let pow = LeaseError::Failed("pow".into());
        let fx = h.event(D + MS, Event::ClaimAnswered(Err(pow.clone())));
        assert_eq!(fx, vec![Fx::Finish(Err(pow))]);
    }

    #[test]
    fn without_a_release_a_resign_stops_once_scopes_close_ignoring_the_horizon() {
        let mut h = Harness::leader();
        h.ticket(NS, ClaimLeader, 1);
        h.ticket(NS, TicketKind::Lead(1), 2);
        assert_eq!(h.event(D / 2, Event::Resign(Leave::Expire)), vec![]);
        // The lease, left to expire, covers every promise: only the scope is waited for.
        let fx = h.event(D / 2 + MS, Event::ScopeClosed);
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
    }

    // Lead scopes.

    #[test]
    fn lead_scopes_open_like_wait_leader_promise_nothing_and_end_with_leadership() {
        let mut h = Harness::started();
        assert_eq!(h.ticket(NS, TicketKind::Lead(1), 1), vec![], "parked");
        h.event(MS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(h.guarantees.len(), 1, "opened with its guarantee");
        assert_eq!(h.machine.horizon, None, "a scope is no promise");
        h.ticket(MS, TicketKind::Lead(2), 2);
        // Leadership ends (the renewal is denied): every open scope ends at once.
        h.event(D, Event::Tick);
        let fx = h.event(D + MS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(fx, vec![Fx::EndScopes, SendBlock]);
        assert_eq!(h.opened, vec![1, 2]);
        assert_eq!(h.machine.open_scopes, 0, "ended and forgotten");
    }

    #[test]
    fn the_promise_horizon_is_forgotten_once_it_has_passed() {
        let mut h = Harness::leader();
        h.ticket(NS, ClaimLeader, 1);
        h.ticket(D / 2, WaitLeader, 2);
        assert_eq!(
            h.machine.horizon,
            Some(h.at(D / 2 + D)),
            "the later promise"
        );
        h.event(D, Event::Tick);
        h.event(D, Event::ClaimAnswered(Ok(G)));
        h.event(D / 2 + D - NS, Event::Tick);
        assert_eq!(h.machine.horizon, Some(h.at(D / 2 + D)));
        h.event(D / 2 + D, Event::Tick);
        assert_eq!(h.machine.horizon, None);
        // A resign now releases at once: nothing promised is still running.
        assert_eq!(resign(&mut h, D / 2 + D), vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn a_scope_closed_while_parked_never_opens() {
        let mut h = Harness::started();
        h.ticket(NS, TicketKind::Lead(1), 1);
        h.ticket(NS, WaitLeader, 2);
        assert_eq!(h.event(NS, Event::ParkedScopeClosed(1)), vec![]);
        assert_eq!(h.machine.parked(), 1);
        let fx = h.event(MS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(fx, vec![Resolve(2, true)]);
        // Nothing open: a resign waits only for the WaitLeader promise.
        assert_eq!(resign(&mut h, 2 * MS), vec![]);
        assert_eq!(h.machine.horizon, Some(h.at(MS + D)));
        h.event(D, Event::Tick);
        assert_eq!(h.event(D, Event::ClaimAnswered(Ok(G))), vec![]);
        assert_eq!(h.event(MS + D, Event::Tick), vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn stop_ends_every_open_scope() {
        let mut h = Harness::leader();
        h.ticket(NS, TicketKind::Lead(4), 1);
        h.machine.stop(&mut h.effects);
        assert_eq!(h.take(), vec![Fx::EndScopes]);
        assert_eq!(h.opened, vec![4]);
    }

    // Status.

    #[test]
    fn status_changes_exactly_when_the_tickets_would() {
        let mut h = Harness::started();
        assert_eq!(
            h.machine.status(),
            Status::Claiming,
            "first claim in flight"
        );
        h.ticket(NS, WaitMinion, 1);
        h.event(NS, Event::ClaimAnswered(Ok(Grant { term: 3 })));
        let leader = Status::Leader(Guarantee {
            term: 3,
            until: h.at(2 * D - TIMER_LATENESS),
        });
        assert_eq!(h.machine.status(), leader, "WaitLeader would be true now");
        // The renewal in flight: WaitMinion stays pending, so the status stays.
        h.event(D, Event::Tick);
        assert_eq!(h.machine.status(), leader);
        h.event(D + MS, Event::ClaimAnswered(Ok(Grant { term: 3 })));
        let renewed = Status::Leader(Guarantee {
            term: 3,
            until: h.at(3 * D - TIMER_LATENESS),
        });
        assert_eq!(h.machine.status(), renewed, "the latest grant's guarantee");
        // Leadership ends at the renewal's unanswered expiry, with the WaitMinion.
        h.event(2 * D, Event::Tick);
        let end = 3 * D - TIMER_LATENESS;
        assert_eq!(h.event(end - NS, Event::Tick), vec![]);
        assert_eq!(h.machine.status(), renewed);
        assert_eq!(h.event(end, Event::Tick), vec![Resolve(1, false)]);
        assert_eq!(h.machine.status(), Status::Claiming);

        let mut h = Harness::started();
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        assert_eq!(h.machine.status(), Status::Minion);
        h.event(D, Event::BlockAnswered(Ok(())));
        assert_eq!(h.machine.status(), Status::Claiming, "claiming again");
        h.event(D, Event::ClaimAnswered(Ok(G)));
        assert!(matches!(h.machine.status(), Status::Leader(_)));
        resign(&mut h, D);
        assert_eq!(h.machine.status(), Status::Resigning);
    }

    // Bounds.

    /// A ticket whose readers are the other clones of an `Arc`.
    impl Readable for std::sync::Arc<()> {
        fn readable(&self) -> bool {
            std::sync::Arc::strong_count(self) > 1
        }
    }

    #[test]
    fn abandoned_parked_tickets_are_dropped_amortised() {
        let mut machine: Machine<std::sync::Arc<()>> = Machine::new(D, Backoff::new(0));
        let start = Instant::now();
        let mut effects = Vec::new();
        machine.handle(start, Event::Start, &mut effects);
        machine.handle(
            start,
            Event::ClaimAnswered(Err(LeaseError::ClaimDenied)),
            &mut effects,
        );
        let kept: Vec<_> = (0..10).map(|_| std::sync::Arc::new(())).collect();
        for reader in &kept {
            machine.handle(
                start,
                Event::Ticket(WaitLeader, reader.clone()),
                &mut effects,
            );
        }
        let mut most = 0;
        for _ in 0..1_000_000 {
            let abandoned = std::sync::Arc::new(());
            machine.handle(start, Event::Ticket(WaitLeader, abandoned), &mut effects);
            most = most.max(machine.parked());
        }
        assert!(most <= 2 * kept.len() + PRUNE_FLOOR + 1, "{most}");
        // The readable ones are still there, in order, and answered when it leads.
        machine.handle(start, Event::BlockAnswered(Ok(())), &mut effects);
        effects.clear();
        machine.handle(start, Event::ClaimAnswered(Ok(G)), &mut effects);
        let answered: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Resolve(t, Some(_)) => Some(std::sync::Arc::as_ptr(t)),
                _ => None,
            })
            .collect();
        let first: Vec<_> = kept.iter().map(std::sync::Arc::as_ptr).collect();
        assert_eq!(answered[..kept.len()], first[..]);
    }

    // The lifecycle: kill, failure, supervised restart.

    #[test]
    fn kill_ends_for_good_and_a_supervised_restart_leaves_it_inert() {
        let mut h = Harness::leader();
        h.ticket(NS, WaitMinion, 1);
        h.ticket(NS, TicketKind::Lead(3), 2);
        let fx = h.event(D / 2, Event::Kill);
        assert_eq!(
            fx,
            vec![Fx::EndScopes, Resolve(1, false), Fx::Finish(Ok(()))]
        );
        assert_eq!(h.machine.phase(), Phase::Ended);
        assert_eq!(h.machine.status(), Status::Stopped);
        assert_eq!(h.machine.restart(h.at(D / 2), &mut h.effects), None);
        assert_eq!(h.machine.phase(), Phase::Ended, "inert");
        for offset in [D / 2, 5 * D] {
            assert_eq!(h.event(offset, Event::Start), vec![]);
            assert_eq!(h.event(offset, Event::Tick), vec![]);
            assert_eq!(h.ticket(offset, WaitLeader, 4), vec![Resolve(4, false)]);
        }
        assert_eq!(h.event(5 * D, Event::Kill), vec![], "killed once");
        assert_eq!(resign(&mut h, 5 * D), vec![]);
        assert_eq!(h.machine.next_deadline(), None);
    }

    #[test]
    fn a_failure_stops_for_a_restart_and_a_kill_in_the_backoff_ends_it() {
        let mut h = Harness::started();
        let pow = LeaseError::Failed("pow".into());
        assert_eq!(
            h.event(NS, Event::ClaimAnswered(Err(pow.clone()))),
            vec![Fx::Fail(pow)]
        );
        assert_eq!(h.machine.phase(), Phase::Stopped, "stopped, not ended");
        let delay = h
            .machine
            .restart(h.at(NS), &mut h.effects)
            .expect("restarts");
        assert_eq!(h.machine.status(), Status::Claiming);
        assert_eq!(h.machine.next_deadline(), Some(h.at(NS) + delay));
        assert_eq!(h.event(MS, Event::Kill), vec![Fx::Finish(Ok(()))]);
        assert_eq!(
            h.machine.next_deadline(),
            None,
            "no claim after the backoff"
        );
        assert_eq!(h.machine.restart(h.at(MS), &mut h.effects), None);
    }

    #[test]
    fn wait_leader_asked_during_a_renewal_parks_until_the_renewal_is_answered() {
        // The last grant still holds while its renewal is in flight, but a `true` now
        // would promise d that the lease may not cover (found only by the simulation).
        let mut h = Harness::leader();
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        assert!(h.machine.is_leader(), "the last grant still holds");
        assert_eq!(h.ticket(D + NS, WaitLeader, 1), vec![], "parks");
        assert_eq!(h.ticket(D + 2 * NS, WaitLeader, 2), vec![], "parks");
        assert_eq!(
            h.event(D + 3 * NS, Event::ClaimAnswered(Ok(G))),
            vec![Resolve(1, true), Resolve(2, true)]
        );
        // Denied instead: still parked, then answered only once leadership comes back.
        h.ticket(2 * D - NS, WaitMinion, 3);
        assert_eq!(h.event(2 * D, Event::Tick), vec![SendClaim]);
        assert_eq!(h.ticket(2 * D + NS, WaitLeader, 4), vec![]);
        let fx = h.event(
            2 * D + NS,
            Event::ClaimAnswered(Err(LeaseError::ClaimDenied)),
        );
        assert_eq!(fx, vec![SendBlock, Resolve(3, false)], "4 keeps waiting");
        assert_eq!(
            h.event(3 * D, Event::BlockAnswered(Ok(()))),
            vec![SendClaim]
        );
        assert_eq!(
            h.event(3 * D, Event::ClaimAnswered(Ok(G))),
            vec![Resolve(4, true)]
        );
    }

    #[test]
    fn a_ticket_handled_at_the_leadership_end_before_its_tick_answers_after_older_ones() {
        // The timer for the leadership end has not run yet when a new ticket arrives at
        // that instant: the catch-up must settle the parked tickets first, in order.
        let mut h = Harness::leader();
        assert_eq!(h.ticket(NS, WaitMinion, 1), vec![]);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(h.machine.next_deadline(), Some(h.at(end)));
        assert_eq!(
            h.ticket(end, WaitMinion, 2),
            vec![Resolve(1, false), Resolve(2, false)]
        );
        // The same at a renewal's due instant: a parked `WaitMinion` keeps waiting and
        // the new `ClaimLeader` waits for the renewal it triggered.
        let mut h = Harness::leader();
        h.ticket(NS, WaitMinion, 1);
        assert_eq!(h.ticket(D, ClaimLeader, 2), vec![SendClaim]);
        assert_eq!(
            h.event(D + NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied))),
            vec![SendBlock, Resolve(1, false), Resolve(2, false)]
        );
    }

    #[test]
    fn start_claims_only_from_idle() {
        // A second `Start` (the actor restarted by a supervisor) must not skip the
        // backoff, nor send a second claim while one is in flight or a grant holds.
        let mut h = Harness::started();
        assert_eq!(h.event(NS, Event::Start), vec![], "a claim is in flight");
        h.event(NS, Event::ClaimAnswered(Ok(G)));
        assert_eq!(h.event(2 * NS, Event::Start), vec![], "leader");
        let delay = h
            .machine
            .restart(h.at(3 * NS), &mut h.effects)
            .expect("restarts");
        assert_eq!(h.event(3 * NS, Event::Start), vec![], "backing off");
        assert_eq!(h.event(3 * NS + delay, Event::Start), vec![SendClaim]);
    }

    #[test]
    fn a_block_answer_after_a_stop_or_a_restart_changes_nothing() {
        // The block of an earlier life answers late: a stopped tracker stays silent,
        // and a restarted one keeps its backoff.
        let mut h = Harness::started();
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        h.machine.stop(&mut h.effects);
        assert_eq!(h.event(2 * NS, Event::BlockAnswered(Ok(()))), vec![]);
        assert_eq!(h.machine.phase(), Phase::Stopped);

        let mut h = Harness::started();
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        let delay = h
            .machine
            .restart(h.at(NS), &mut h.effects)
            .expect("restarts");
        assert_eq!(h.event(2 * NS, Event::BlockAnswered(Ok(()))), vec![]);
        assert_eq!(
            h.machine.phase(),
            Phase::BackingOff {
                until: h.at(NS) + delay
            }
        );
    }

    // Mutation gaps in the v2 rules (docs/testing.md).

    #[test]
    fn test_tickets_survive_pruning_and_the_accessors_say_what_the_machine_is() {
        let mut h = Harness::started();
        assert_eq!(h.machine.claim_duration(), D);
        assert!(!h.machine.is_resigning());
        h.event(NS, Event::ClaimAnswered(Err(LeaseError::ClaimDenied)));
        // More parked tickets than the pruning floor: plain ids are always read, so a
        // prune keeps every one of them.
        let n = 2 * PRUNE_FLOOR as u32;
        for id in 0..n {
            assert_eq!(h.ticket(NS, WaitLeader, id), vec![]);
        }
        assert_eq!(h.machine.parked(), n as usize);
        h.event(MS, Event::BlockAnswered(Ok(())));
        let fx = h.event(MS, Event::ClaimAnswered(Ok(G)));
        let answered: Vec<_> = (0..n).map(|id| Resolve(id, true)).collect();
        assert_eq!(fx, answered);
        resign(&mut h, 2 * MS);
        assert!(h.machine.is_resigning());
    }

    #[test]
    fn a_resign_before_the_start_or_after_a_stop_is_ignored() {
        let mut h = Harness::idle();
        assert_eq!(resign(&mut h, Duration::ZERO), vec![]);
        assert!(!h.machine.is_resigning());
        assert_eq!(h.machine.phase(), Phase::Idle);
        assert_eq!(
            h.event(NS, Event::Start),
            vec![SendClaim],
            "starts as usual"
        );

        let mut h = Harness::leader();
        h.machine.stop(&mut h.effects);
        assert_eq!(resign(&mut h, NS), vec![]);
        assert!(
            !h.machine.is_resigning(),
            "a stopped tracker does not resign"
        );
    }

    #[test]
    fn a_resign_ready_when_the_renewal_is_due_releases_instead_of_renewing() {
        let mut h = Harness::leader();
        // The promise ends at D, the instant the renewal is due.
        assert_eq!(
            h.ticket(Duration::ZERO, ClaimLeader, 1),
            vec![Resolve(1, true)]
        );
        assert_eq!(resign(&mut h, D / 2), vec![]);
        assert_eq!(h.machine.next_deadline(), Some(h.at(D)));
        assert_eq!(h.event(D, Event::Tick), vec![Fx::SendLeave(None)]);
    }

    #[test]
    fn scopes_told_to_end_but_still_open_set_no_deadline() {
        // (A passed horizon sets none either: see
        // `a_resign_waits_for_a_renewal_in_flight_before_releasing`.)
        // Scopes already told to end, still open: the deadline is the renewal's.
        let mut h = Harness::leader();
        h.ticket(NS, TicketKind::Lead(1), 1);
        resign(&mut h, D / 2);
        h.event(D, Event::Tick);
        h.event(D, Event::ClaimAnswered(Ok(G)));
        assert_eq!(h.event(D / 2 + D, Event::Tick), vec![Fx::CancelScopes]);
        assert_eq!(h.machine.next_deadline(), Some(h.at(2 * D)), "renewal");
    }

    #[test]
    fn without_a_release_the_horizon_sets_no_deadline() {
        let mut h = Harness::leader();
        h.ticket(NS, ClaimLeader, 1);
        h.ticket(NS, TicketKind::Lead(1), 2);
        assert_eq!(h.event(D / 2, Event::Resign(Leave::Expire)), vec![]);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        assert_eq!(h.event(D, Event::ClaimAnswered(Ok(G))), vec![]);
        // The horizon (D + NS) is not waited for: the next deadline is the scopes' end.
        assert_eq!(h.machine.next_deadline(), Some(h.at(D / 2 + D)));
    }

    #[test]
    fn a_release_in_flight_is_waited_for_even_past_the_leadership_end() {
        let mut h = Harness::leader();
        // Sent just before the renewal is due: leadership ends before the release's
        // own timeout, and the tracker still waits for the manager's answer.
        assert_eq!(resign(&mut h, D - NS), vec![Fx::SendLeave(None)]);
        let end = 2 * D - TIMER_LATENESS;
        assert_eq!(h.event(end, Event::Tick), vec![]);
        assert!(!h.machine.is_leader());
        assert_eq!(
            h.machine.phase(),
            Phase::Leaving {
                sent_at: h.at(D - NS)
            }
        );
        let fx = h.event(end + NS, Event::LeaveAnswered(Ok(())));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
    }

    #[test]
    fn without_a_release_a_resign_during_a_renewal_stops_at_once() {
        let mut h = Harness::leader();
        h.ticket(NS, ClaimLeader, 1);
        assert_eq!(h.event(D, Event::Tick), vec![SendClaim]);
        // Nothing to give up explicitly and no scope open: it need not wait for the
        // renewal's answer (the lease is left to expire, covering every promise).
        let fx = h.event(D + NS, Event::Resign(Leave::Expire));
        assert_eq!(fx, vec![Fx::Finish(Ok(()))]);
        assert_eq!(h.event(D + MS, Event::ClaimAnswered(Ok(G))), vec![]);
    }

    /// A readable ticket that counts how often it is asked.
    #[derive(Debug)]
    struct Counted(std::rc::Rc<std::cell::Cell<usize>>);

    impl Readable for Counted {
        fn readable(&self) -> bool {
            self.0.set(self.0.get() + 1);
            true
        }
    }

    #[test]
    fn pruning_reads_each_parked_ticket_amortised_o1_times() {
        let asked = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut machine: Machine<Counted> = Machine::new(D, Backoff::new(0));
        let start = Instant::now();
        let mut effects = Vec::new();
        machine.handle(start, Event::Start, &mut effects);
        let denied = Event::ClaimAnswered(Err(LeaseError::ClaimDenied));
        machine.handle(start, denied, &mut effects);
        let n = 1000;
        for _ in 0..n {
            let ticket = Counted(asked.clone());
            machine.handle(start, Event::Ticket(WaitLeader, ticket), &mut effects);
        }
        assert_eq!(machine.parked(), n);
        // Prunes at 64, 128, 256 and 512 parked: 960 questions, not one per ticket
        // parked (a prune per park, or a threshold that grows by 2, asks ~n²/4).
        assert_eq!(asked.get(), 64 + 128 + 256 + 512);
    }
}
