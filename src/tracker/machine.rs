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

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::{Grant, LeaseError};
use crate::ticket::Guarantee;

/// Which question a ticket asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketKind {
    /// Am I leader, with `d` guaranteed, right now?
    ClaimLeader,
    /// Tell me when I am leader.
    WaitLeader,
    /// Tell me when I am no longer leader.
    WaitMinion,
}

/// Something that happened to the tracker.
#[derive(Debug)]
pub(crate) enum Event<T> {
    /// The actor started: send the first claim (contract rule 1); nothing unless idle.
    Start,
    /// Time passed (a timer fired); only the time-driven rules apply.
    Tick,
    /// The manager answered the claim in flight (a mailbox error arrives as `Failed`).
    ClaimAnswered(Result<Grant, LeaseError>),
    /// The manager answered the block in flight.
    BlockAnswered(Result<(), LeaseError>),
    /// A user asked a question; `T` resolves its ticket.
    Ticket(TicketKind, T),
}

/// Something the actor must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect<T> {
    /// Send `ClaimLeadership` for `2·d`; the machine noted `now` as its `t0`.
    SendClaim,
    /// Send `BlockUntilLeadershipReleased`.
    SendBlock,
    /// Answer a ticket: `true` with its guarantee, or `false` (`None`).
    Resolve(T, Option<Guarantee>),
    /// Stop: a claim failed or went unanswered (contract rule 4).
    Fail(LeaseError),
}

/// Where the tracker is in its cycle. Whether it is leader is `grant`, not the phase:
/// during a renewal the phase is `Claiming` while the last grant still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started yet.
    Idle,
    /// A claim is in flight. `t0` is the instant its guarantee counts from, no later
    /// than `sent_at`, when it was actually sent (its timeout counts from there).
    /// `first` marks the first claim after a (re)start, when the tracker does not know
    /// yet whether it is leader or minion.
    Claiming {
        t0: Instant,
        sent_at: Instant,
        first: bool,
    },
    /// The last claim was granted; the renewal is due at `grant + d`.
    Leader,
    /// Denied: a block is in flight, waiting for the leader's lease to go.
    Blocking,
    /// Waiting before the next claim, after a failed block or a supervised restart.
    BackingOff { until: Instant },
    /// Stopped (killed, or failed); every ticket answers `false`.
    Stopped,
}

/// How late a tokio timer may fire (scheduling aside): the deadline is rounded up to a
/// millisecond tick, and the wait is counted in whole milliseconds from the current
/// tick rounded down, so up to (not including) 2 ms.
const TIMER_LATENESS: Duration = Duration::from_millis(2);

/// Exponential backoff with deterministic jitter: the first wait lies in [0.5 s, 1 s]
/// (spread by unit, so that many units failing together do not retry in step), then
/// doubles, capped at the claim duration; a granted claim resets it.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    next: Option<Duration>,
}

impl Backoff {
    /// `spread` picks the first wait in [0.5 s, 1 s]; any value is valid.
    pub(crate) fn new(spread: u64, cap: Duration) -> Backoff {
        let first = Duration::from_millis(500 + spread % 501);
        Backoff {
            first,
            cap,
            next: None,
        }
    }

    /// The wait before the next retry; doubles the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.unwrap_or(self.first).min(self.cap);
        self.next = Some(delay.saturating_mul(2).min(self.cap));
        delay
    }

    /// A granted claim: the next failure starts from the first wait again.
    pub(crate) fn reset(&mut self) {
        self.next = None;
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

/// The tracker's state. `T` resolves a ticket: the actor's ticket sender, or a plain
/// id in tests.
#[derive(Debug)]
pub(crate) struct Machine<T> {
    d: Duration,
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
}

impl<T> Machine<T> {
    /// A machine for claim duration `d` (validated by the caller: `2·d` representable).
    pub(crate) fn new(d: Duration, backoff: Backoff) -> Machine<T> {
        Machine {
            d,
            phase: Phase::Idle,
            grant: None,
            now: Instant::now(),
            backoff,
            parked: VecDeque::new(),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the tracker holds a grant whose lease has not been given up.
    pub(crate) fn is_leader(&self) -> bool {
        self.grant.is_some()
    }

    /// The guarantee a `true` answer given now would carry, if the tracker leads.
    pub(crate) fn guarantee(&self) -> Option<Guarantee> {
        self.grant.map(|held| self.guarantee_of(held))
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
            Event::Start if self.phase == Phase::Idle => self.claim(now, true, effects),
            Event::Start => {}
            Event::Ticket(kind, ticket) => {
                // Only the ticket is new: the catch-up above settled the queue already.
                match self.answer(kind) {
                    Some(answer) => effects.push(Effect::Resolve(ticket, answer)),
                    None => self.parked.push_back((kind, ticket)),
                }
                return;
            }
            Event::ClaimAnswered(result) => self.on_claim_answer(result, effects),
            Event::BlockAnswered(result) => self.on_block_answer(now, result, effects),
        }
        // An answer can leave a deadline already passed (a grant whose renewal is
        // already due): apply it now rather than on the next timer.
        self.catch_up(now, effects);
        self.settle(effects);
    }

    /// The next instant at which a time-driven rule applies, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Leader => self.grant.map(|held| held.t0 + self.d),
            Phase::Claiming { sent_at, .. } => {
                let timeout = sent_at + self.d;
                Some(match self.grant {
                    Some(held) => timeout.min(self.leadership_end(held.t0)),
                    None => timeout,
                })
            }
            Phase::BackingOff { until } => Some(until),
            Phase::Idle | Phase::Blocking | Phase::Stopped => None,
        }
    }

    /// Stops for good (kill, or the actor stopping): every parked ticket answers
    /// `false`, and so will every later one.
    pub(crate) fn stop(&mut self, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Stopped;
        self.grant = None;
        self.settle(effects);
    }

    /// A supervised restart after a failure: wait a backoff, then claim afresh.
    /// Returns the wait.
    pub(crate) fn restart(&mut self, now: Instant, effects: &mut Vec<Effect<T>>) -> Duration {
        self.now = self.now.max(now);
        self.stop(effects);
        let delay = self.backoff.next_delay();
        self.phase = Phase::BackingOff { until: now + delay };
        delay
    }

    /// When leadership from a claim granted with `t0` ends: a timer's lateness before
    /// the lease's expiry `t0 + 2·d` (see the module doc), never before `t0 + d`.
    fn leadership_end(&self, t0: Instant) -> Instant {
        t0 + 2 * self.d - TIMER_LATENESS.min(self.d)
    }

    /// Applies every rule that the passage of time triggers by `now`.
    fn catch_up(&mut self, now: Instant, effects: &mut Vec<Effect<T>>) {
        let mut changed = false;
        // Rule 8: an unrenewed lease ends at t0 + 2·d, whatever else is going on;
        // leadership ends a timer's lateness before, so that a late timer is on time.
        if let Some(held) = self.grant {
            if now >= self.leadership_end(held.t0) {
                self.grant = None;
                changed = true;
            }
        }
        match self.phase {
            Phase::Leader => {
                match self.grant {
                    // Rule 2: renew at t0 + d, counting the new guarantee from then.
                    Some(held) if now >= held.t0 + self.d => {
                        self.renew(held.t0 + self.d, now, effects)
                    }
                    Some(_) => {}
                    // Starved past the lease's end without renewing: claim afresh.
                    None => self.claim(now, false, effects),
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
                self.claim(now, false, effects);
                changed = true;
            }
            _ => {}
        }
        if changed {
            self.settle(effects);
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
                self.grant = None;
                self.phase = Phase::Blocking;
                effects.push(Effect::SendBlock);
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
            Ok(()) => self.claim(now, false, effects),
            // Rule 3: never a hot loop against a failing manager.
            Err(_) => {
                let delay = self.backoff.next_delay();
                self.phase = Phase::BackingOff { until: now + delay };
            }
        }
    }

    fn claim(&mut self, now: Instant, first: bool, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Claiming {
            t0: now,
            sent_at: now,
            first,
        };
        effects.push(Effect::SendClaim);
    }

    /// A renewal due at `due` (≤ `now`): its guarantee counts from `due`.
    fn renew(&mut self, due: Instant, now: Instant, effects: &mut Vec<Effect<T>>) {
        self.phase = Phase::Claiming {
            t0: due,
            sent_at: now,
            first: false,
        };
        effects.push(Effect::SendClaim);
    }

    fn fail(&mut self, error: LeaseError, effects: &mut Vec<Effect<T>>) {
        self.stop(effects);
        effects.push(Effect::Fail(error));
    }

    /// The answer to a ticket of `kind` now (`Some(None)` is `false`), or `None` if it
    /// must wait.
    fn answer(&self, kind: TicketKind) -> Option<Option<Guarantee>> {
        let leading = match self.grant {
            Some(held) if self.phase == Phase::Leader => Some(self.guarantee_of(held)),
            _ => None,
        };
        match (kind, self.phase) {
            (_, Phase::Stopped) => Some(None),
            // Rules 5 and 6: a claim due or in flight is waited for, never guessed.
            (TicketKind::ClaimLeader, Phase::Claiming { .. }) => None,
            (TicketKind::ClaimLeader, _) => Some(leading),
            (TicketKind::WaitLeader, _) => leading.map(Some),
            // Rule 7: resolves once leadership cannot be guaranteed; while the first
            // claim is in flight the tracker does not know yet, so it waits.
            (TicketKind::WaitMinion, Phase::Claiming { first: true, .. }) => None,
            (TicketKind::WaitMinion, _) => self.grant.is_none().then_some(None),
        }
    }

    /// Answers every parked ticket that can be answered now, in the order received.
    fn settle(&mut self, effects: &mut Vec<Effect<T>>) {
        if self.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        for (kind, ticket) in parked {
            match self.answer(kind) {
                Some(answer) => effects.push(Effect::Resolve(ticket, answer)),
                None => self.parked.push_back((kind, ticket)),
            }
        }
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
        Resolve(u32, bool),
        Fail(LeaseError),
    }

    /// Drives a machine whose tickets are plain ids, at instants relative to `start`.
    struct Harness {
        machine: Machine<u32>,
        start: Instant,
        effects: Vec<Effect<u32>>,
        /// The guarantee of every ticket resolved `true`, in order.
        guarantees: Vec<(u32, Guarantee)>,
    }

    impl Harness {
        /// A machine that has sent its first claim at `start`.
        fn started() -> Harness {
            let mut h = Harness {
                machine: Machine::new(D, Backoff::new(0, D)),
                start: Instant::now(),
                effects: Vec::new(),
                guarantees: Vec::new(),
            };
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
                    Effect::Fail(e) => Fx::Fail(e),
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
            vec![Resolve(1, false)],
            "WaitMinion resolves by the expiry"
        );
        // The renewal, unanswered for d, fails at 2·D.
        assert_eq!(h.machine.next_deadline(), Some(h.at(2 * D)));
        let fx = h.event(2 * D, Event::Tick);
        assert_eq!(fx[0], Resolve(2, false));
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
        let mut machine: Machine<u32> = Machine::new(tiny, Backoff::new(0, tiny));
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
            first: false,
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
        let mut short = Backoff::new(0, Duration::from_millis(50));
        assert_eq!(short.next_delay(), Duration::from_millis(50));
        let firsts: std::collections::HashSet<_> = (0..20)
            .map(|spread| Backoff::new(spread * 37, D).next_delay())
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
        assert!(firsts
            .iter()
            .all(|w| *w >= Duration::from_millis(500) && *w <= Duration::from_secs(1)));
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
        let delay = h.machine.restart(h.at(D / 2), &mut h.effects);
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
        assert_eq!(h.machine.guarantee().map(|g| g.term), Some(7));
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
        assert_eq!(h.machine.guarantee(), None);
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
        let delay = h.machine.restart(h.at(3 * NS), &mut h.effects);
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
        let delay = h.machine.restart(h.at(NS), &mut h.effects);
        assert_eq!(h.event(2 * NS, Event::BlockAnswered(Ok(()))), vec![]);
        assert_eq!(
            h.machine.phase(),
            Phase::BackingOff {
                until: h.at(NS) + delay
            }
        );
    }
}
