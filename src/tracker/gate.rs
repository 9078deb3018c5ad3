//! [`FirstClaims`]: a bound on the first claims a [`Claimer`](crate::Claimer)'s
//! trackers have in flight at once.
//!
//! Started together, every tracker would send its first claim at once, and the manager
//! would hold them all in its mailbox (~600 bytes each: actix's request future, the
//! envelope, two strings, the reply channel). They are freed once answered, but the
//! allocator keeps that heap: 100 000 trackers started at once stayed ~600 bytes each
//! larger for good (issue 13). With the bound, a tracker started beyond it waits for a
//! slot in [`Phase::Queued`](super::machine::Phase::Queued), costing one weak address
//! here, and answers tickets exactly as one whose first claim is in flight. Its claim's
//! instant `t0` is taken when it is actually sent.
//!
//! A slot is held by a [`Permit`], which travels with the claim and is returned when the
//! claim is answered or its request is dropped (the actor stopped); a returned slot goes
//! to the longest-waiting tracker that is still running, as a [`FirstClaimSlot`]
//! message. Renewals and later claims are not bounded: a tracker has at most one
//! request in flight, and only start-up sends them all together.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use actix::WeakAddr;

use super::actor::TrackerActor;
use super::machine::prune_amortised;

/// How many first claims a claimer's trackers have in flight at most.
pub(crate) const FIRST_CLAIMS_IN_FLIGHT: usize = 1024;

/// The waiting queue is searched for trackers that stopped while waiting once it
/// reaches this length, and after that whenever it has doubled since the last search.
const PRUNE_FLOOR: usize = 1024;

/// The first-claim slots of one claimer (shared by its clones).
#[derive(Debug)]
pub(crate) struct FirstClaims {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Slots no claim holds.
    free: usize,
    /// Trackers waiting for a slot, in the order they started.
    waiting: VecDeque<WeakAddr<TrackerActor>>,
    /// The waiting length at which stopped trackers are next searched for.
    prune_at: u32,
}

/// A slot for one first claim; returned when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    /// `None` once handed on (the slot went to a waiting tracker, or was lost with it).
    gate: Option<Arc<FirstClaims>>,
}

/// Gives a waiting tracker the slot its first claim waited for.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct FirstClaimSlot(pub(crate) Permit);

impl FirstClaims {
    /// Slots for `bound` first claims in flight.
    pub(crate) fn new(bound: usize) -> Arc<FirstClaims> {
        Arc::new(FirstClaims {
            state: Mutex::new(State {
                free: bound,
                waiting: VecDeque::new(),
                prune_at: PRUNE_FLOOR as u32,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover the data if something did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot now, or `None` after queueing `waiter`, which is sent a
    /// [`FirstClaimSlot`] when one is free.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        waiter: impl FnOnce() -> WeakAddr<TrackerActor>,
    ) -> Option<Permit> {
        let mut state = self.lock();
        if state.free > 0 {
            state.free -= 1;
            return Some(Permit {
                gate: Some(self.clone()),
            });
        }
        // Amortised O(1) per waiter: trackers that stopped while waiting go.
        let State {
            waiting, prune_at, ..
        } = &mut *state;
        prune_amortised(waiting, prune_at, PRUNE_FLOOR, |w| {
            w.upgrade().is_some_and(|a| a.connected())
        });
        waiting.push_back(waiter());
        None
    }

    /// Gives a returned slot to the first waiting tracker still running, or frees it.
    fn release(self: &Arc<Self>) {
        loop {
            let waiter = {
                let mut state = self.lock();
                match state.waiting.pop_front() {
                    Some(waiter) => waiter,
                    None => {
                        state.free += 1;
                        return;
                    }
                }
            };
            let Some(addr) = waiter.upgrade() else {
                continue;
            };
            let slot = FirstClaimSlot(Permit {
                gate: Some(self.clone()),
            });
            // `try_send` rather than `do_send` for the `Closed` answer, which hands the
            // slot back. An address fresh from `upgrade` has never been parked, so with
            // actix 0.13 it queues even into a full mailbox (tested); were that ever to
            // change, a full mailbox still gets the slot.
            match addr.try_send(slot) {
                Ok(()) => return,
                Err(SendError::Full(slot)) => return addr.do_send(slot),
                // Stopped: the slot goes to the next one (here, not by a recursive drop).
                Err(SendError::Closed(mut slot)) => {
                    slot.0.gate = None;
                }
            }
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.free, state.waiting.len())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;
    use crate::testing::{StubAnswer, StubHandle, StubManager};
    use crate::{Claimer, Status, Tracker, UnitName};

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn slots_are_bounded_and_come_back_when_permits_drop() {
        let gate = FirstClaims::new(2);
        let no_waiter = || -> WeakAddr<TrackerActor> { unreachable!("a slot is free") };
        let a = gate.acquire(no_waiter).expect("free");
        let b = gate.acquire(no_waiter).expect("free");
        assert_eq!(gate.counts(), (0, 0));
        drop(a);
        assert_eq!(
            gate.counts(),
            (1, 0),
            "nobody waits: the slot is free again"
        );
        drop(b);
        assert_eq!(gate.counts(), (2, 0));
    }

    /// A unit of its own service per index (service segments need a letter).
    fn unit(i: usize) -> UnitName {
        let letters: String = i
            .to_string()
            .bytes()
            .map(|b| char::from(b - b'0' + b'a'))
            .collect();
        UnitName::new(&format!("svc-{letters}/0")).unwrap()
    }

    async fn yield_until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("waited for {what}");
    }

    /// A stub that never answers, its claimer, and as many trackers started on it as
    /// the bound lets claim at once (their claims hang).
    fn bound_filled() -> (StubHandle, Claimer, Vec<Tracker>) {
        let stub = StubManager::start_with(StubAnswer::Hang);
        let claimer = stub.claimer();
        let first = (0..FIRST_CLAIMS_IN_FLIGHT)
            .map(|i| Tracker::start(unit(i), claimer.clone(), D).unwrap())
            .collect();
        (stub, claimer, first)
    }

    /// Waits until the stub has received the bound's worth of claims.
    async fn bound_reached(stub: &StubHandle) {
        yield_until("the bound's claims", || {
            stub.claim_count() == FIRST_CLAIMS_IN_FLIGHT
        })
        .await;
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn a_tracker_beyond_the_bound_waits_like_an_unanswered_one_and_claims_from_its_send() {
        tokio::time::pause();
        let (stub, claimer, first) = bound_filled();
        let late = Tracker::start(unit(FIRST_CLAIMS_IN_FLIGHT), claimer.clone(), D).unwrap();
        bound_reached(&stub).await;
        settle().await;
        assert_eq!(
            stub.claim_count(),
            FIRST_CLAIMS_IN_FLIGHT,
            "the late one waits"
        );
        let tickets = [late.claim_leader(), late.wait_leader(), late.wait_minion()];
        settle().await;
        assert!(
            tickets.iter().all(|t| t.try_wait().is_none()),
            "all pending"
        );
        assert_eq!(*late.status().borrow(), Status::Claiming);

        // The claims in flight go unanswered for d and fail; their slots free, and the
        // late claim goes out then. It has not timed out meanwhile.
        // (Timers fire on tokio's next millisecond tick.)
        tokio::time::advance(D + Duration::from_millis(2)).await;
        yield_until("the late claim", || {
            stub.claim_count() == FIRST_CLAIMS_IN_FLIGHT + 1
        })
        .await;
        for tracker in &first {
            assert!(tracker.wait().await.is_err(), "unanswered for d");
        }
        let (claim, sent) = stub.claims().pop().unwrap();
        assert_eq!(claim.unit, unit(FIRST_CLAIMS_IN_FLIGHT).as_str());
        assert!(
            tickets.iter().all(|t| t.try_wait().is_none()),
            "still pending"
        );
        assert!(late.wait().now_or_never().is_none(), "running");

        // Granted: the lease counts from the send, not from the start.
        // (The failed trackers' claims hang in the stub too; nobody reads their answers.)
        stub.answer_hung_claims(StubAnswer::Grant);
        let guarantee = tickets[0].guarantee().await.expect("leader");
        assert_eq!(guarantee.until, sent + 2 * D - Duration::from_millis(2));
        assert!(tickets[1].wait().await);
        assert_eq!(tickets[2].try_wait(), None, "leads");
    }

    #[actix_rt::test]
    async fn trackers_that_stopped_while_waiting_are_pruned_amortised() {
        tokio::time::pause();
        let stub = StubManager::start_with(StubAnswer::Hang);
        let start = |i| {
            TrackerActor::new(unit(i), stub.claimer(), D)
                .unwrap()
                .start()
        };
        let gate = FirstClaims::new(1);
        let held = gate
            .acquire(|| unreachable!("a slot is free"))
            .expect("free");
        let kept = start(0);
        assert!(gate.acquire(|| kept.downgrade()).is_none());
        let mut most = 0;
        for i in 1..3 * PRUNE_FLOOR {
            let gone = start(i);
            assert!(gate.acquire(|| gone.downgrade()).is_none());
            gone.do_send(super::super::StopTracker);
            drop(gone);
            settle().await;
            most = most.max(gate.counts().1);
        }
        assert!(most <= PRUNE_FLOOR + 1, "{most} waiting");
        // The slot goes to the one still running (which, claiming already, passes it
        // on), and then to nobody.
        drop(held);
        settle().await;
        assert_eq!(gate.counts(), (1, 0));
    }

    /// The waiting tracker's thread is held up while its mailbox is over capacity: the
    /// freed slot is still queued to it, not freed nor lost.
    #[actix_rt::test]
    async fn a_slot_reaches_a_waiting_tracker_whose_mailbox_is_full() {
        use std::sync::mpsc;
        let stub = StubManager::start_with(StubAnswer::Hang);
        let (blocking_tx, blocking_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let arbiter = Arbiter::new();
        assert!(arbiter.spawn(async move {
            let _ = blocking_tx.send(());
            let _ = release_rx.recv();
        }));
        blocking_rx.recv().expect("the arbiter's thread is held");
        let claimer = stub.claimer();
        let waiting = TrackerActor::start_in_arbiter(&arbiter.handle(), move |_| {
            TrackerActor::new(unit(0), claimer, D).unwrap()
        });
        let mut queued = 0;
        while waiting.try_send(crate::ClaimLeader).is_ok() {
            queued += 1;
        }
        assert!(
            queued >= 16,
            "{queued} queued: the mailbox is over capacity"
        );

        let gate = FirstClaims::new(1);
        let held = gate
            .acquire(|| unreachable!("a slot is free"))
            .expect("free");
        assert!(gate.acquire(|| waiting.downgrade()).is_none());
        drop(held);
        assert_eq!(
            gate.counts(),
            (0, 0),
            "the slot is in the waiting tracker's mailbox"
        );

        release_tx.send(()).expect("the arbiter is waiting");
        // Answered after every message queued before it, the slot included.
        let _ticket = waiting
            .clone()
            .send(crate::WaitMinion)
            .await
            .expect("running");
        assert_eq!(
            gate.counts(),
            (1, 0),
            "the tracker, claiming on its own, passed the slot on"
        );
        assert!(arbiter.stop());
        arbiter.join().expect("the arbiter's thread ends");
    }

    #[actix_rt::test]
    async fn a_slot_skips_a_waiting_tracker_that_stopped() {
        tokio::time::pause();
        let (stub, claimer, first) = bound_filled();
        let killed = Tracker::start(unit(FIRST_CLAIMS_IN_FLIGHT), claimer.clone(), D).unwrap();
        let next = Tracker::start(unit(FIRST_CLAIMS_IN_FLIGHT + 1), claimer.clone(), D).unwrap();
        bound_reached(&stub).await;
        // Resigned while waiting: it just stops, as with its first claim unanswered.
        assert_eq!(killed.resign().await, Ok(()));
        first[0].kill();
        yield_until("the next claim", || {
            stub.claim_count() == FIRST_CLAIMS_IN_FLIGHT + 1
        })
        .await;
        settle().await;
        assert_eq!(
            stub.claim_count(),
            FIRST_CLAIMS_IN_FLIGHT + 1,
            "one slot, one claim"
        );
        let (claim, _) = stub.claims().pop().unwrap();
        assert_eq!(claim.unit, next.unit_name().as_str());
    }
}
