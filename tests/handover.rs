//! Resign, hand-over, lead scopes, status and resign-on-drop (contract sections 6 and
//! 7), message by message against a stub manager, and end to end against the in-memory
//! manager, in paused virtual time.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use actix::Actor;
use leadership::testing::{StubAnswer, StubCall, StubHandle, StubManager};
use leadership::{
    ClaimLeader, Claimer, Leader, LeaseError, LeaseInfo, ManagerActor, Resign, Status, StopTracker,
    Tracker, TrackerActor, TrackerError, UnitName, WaitLeader,
};
use settle::settle;
use tokio::time::{advance, timeout, Instant};
use until::until;

#[path = "common/settle.rs"]
mod settle;
#[path = "common/until.rs"]
mod until;

const D: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);
/// tokio fires a timer up to 1 ms after its deadline under a paused clock.
const TIMER_SLACK: Duration = MS;

fn unit(n: u32) -> UnitName {
    UnitName::new(&format!("led-service/{n}")).unwrap()
}

/// Waits (in virtual time, so at once when nothing else is due) for `future`, failing
/// the test with `what` if it is not ready within `d`.
async fn within<F: std::future::IntoFuture>(what: &str, d: Duration, future: F) -> F::Output {
    timeout(d, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {d:?}"))
}

/// A paused clock, a stub granting every claim, and a tracker that leads, learnt from
/// its status: a `true` ticket would be a promise that holds a resign up for `d`.
async fn leader() -> (StubHandle, Tracker) {
    tokio::time::pause();
    let stub = StubManager::start();
    let tracker = Tracker::start(unit(0), stub.claimer(), D).unwrap();
    leads(&tracker).await;
    (stub, tracker)
}

/// Waits (at most a millisecond of virtual time) until `tracker` says it leads.
async fn leads(tracker: &Tracker) {
    let mut status = tracker.status();
    within(
        "leads",
        MS,
        status.wait_for(|s| matches!(s, Status::Leader(_))),
    )
    .await
    .unwrap();
}

/// Spawns a lead scope on `tracker` that runs `work`, and waits until the work has
/// started (the scope holds leadership from then on).
async fn running_scope<T: 'static>(
    tracker: &Tracker,
    work: impl std::future::Future<Output = T> + 'static,
) -> tokio::task::JoinHandle<Option<T>> {
    let started = Rc::new(Cell::new(false));
    let scope = tokio::task::spawn_local({
        let (tracker, started) = (tracker.clone(), started.clone());
        async move {
            tracker
                .lead(|_| async move {
                    started.set(true);
                    work.await
                })
                .await
        }
    });
    until("the scope's work", || started.get()).await;
    scope
}

/// The instants of the releases and hand-overs the stub received.
fn leaves(stub: &StubHandle) -> Vec<Instant> {
    stub.calls()
        .into_iter()
        .filter(|call| matches!(call, StubCall::Release { .. } | StubCall::HandOver { .. }))
        .map(|call| call.at())
        .collect()
}

#[actix_rt::test]
async fn resign_with_nothing_promised_releases_at_once() {
    tokio::time::pause();
    let stub = StubManager::start();
    let tracker = Tracker::start(unit(0), stub.claimer(), D).unwrap();
    leads(&tracker).await;
    let at = Instant::now();
    let minion = tracker.wait_minion();
    assert_eq!(within("resign", MS, tracker.resign()).await, Ok(()));
    assert_eq!(
        leaves(&stub),
        vec![at],
        "released at the instant of the resign"
    );
    assert!(matches!(
        &stub.calls()[..],
        [StubCall::Claim { .. }, StubCall::Release { release, .. }]
            if release.unit == "led-service/0" && release.service == "led-service"
    ));
    assert_eq!(minion.try_wait(), Some(false));
    assert_eq!(tracker.wait().await, Ok(()));
    assert_eq!(*tracker.status().borrow(), Status::Stopped);
    assert!(!tracker.claim_leader().await);
}

#[actix_rt::test]
async fn resign_keeps_every_promise_then_releases_at_the_horizon() {
    let (stub, tracker) = leader().await;
    advance(D / 4).await;
    let promised_at = Instant::now();
    assert!(tracker.claim_leader().await, "a promise until now + d");
    let minion = tracker.wait_minion();
    advance(D / 4).await;
    let resign = tokio::spawn({
        let tracker = tracker.clone();
        async move { tracker.resign().await }
    });
    until("WaitMinion's answer", || minion.try_wait().is_some()).await;
    // From the resign on: WaitMinion false, every new question false.
    assert_eq!(minion.try_wait(), Some(false));
    assert!(!tracker.claim_leader().await);
    assert!(!tracker.wait_leader().await);
    assert!(!tracker.wait_minion().await);
    assert_eq!(
        tracker.lead(|_| async { 1 }).await,
        None,
        "lead starts nothing"
    );
    assert_eq!(*tracker.status().borrow(), Status::Resigning);
    // The lease is kept, and renewed when due, until the promise has ended.
    let horizon = promised_at + D;
    within("released", 2 * D, resign).await.unwrap().unwrap();
    let released = leaves(&stub);
    assert_eq!(released.len(), 1);
    assert!(
        released[0] >= horizon && released[0] <= horizon + TIMER_SLACK,
        "{:?}",
        released[0] - horizon
    );
    assert_eq!(stub.claim_count(), 2, "the renewal at d went out");
    assert_eq!(tracker.wait().await, Ok(()));
}

#[actix_rt::test]
async fn hand_over_names_the_successor_and_refuses_bad_ones() {
    let (stub, tracker) = leader().await;
    let other = UnitName::new("other-service/1").unwrap();
    assert_eq!(
        tracker.hand_over(other).await,
        Err(TrackerError::InvalidSuccessor("other-service/1".into()))
    );
    assert_eq!(
        tracker.hand_over(unit(0)).await,
        Err(TrackerError::InvalidSuccessor("led-service/0".into()))
    );
    assert_eq!(
        TrackerError::InvalidSuccessor("led-service/0".into()).to_string(),
        "invalid successor led-service/0"
    );
    // Nothing changed: still leader, nothing sent.
    assert!(tracker.claim_leader().await);
    assert_eq!(stub.calls().len(), 1);
    // The same check through the actor's message.
    let refused = tracker
        .addr()
        .send(Resign {
            successor: Some(unit(0)),
        })
        .await
        .unwrap();
    assert!(matches!(refused, Err(TrackerError::InvalidSuccessor(_))));
    assert_eq!(stub.calls().len(), 1);

    advance(D).await; // Past the promise: the hand-over goes out at once.
    assert_eq!(
        within("hand over", MS, tracker.hand_over(unit(7))).await,
        Ok(())
    );
    let calls = stub.calls();
    assert!(
        matches!(calls.last(), Some(StubCall::HandOver { hand_over, .. })
            if hand_over.successor == "led-service/7" && hand_over.unit == "led-service/0"),
        "{calls:?}"
    );
    assert_eq!(stub.release_count(), 0);
}

#[actix_rt::test]
async fn resign_on_a_stopped_tracker_returns_at_once_and_sends_nothing() {
    let (stub, tracker) = leader().await;
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));
    let before = stub.calls().len();
    assert_eq!(
        within("resign", Duration::ZERO, tracker.resign()).await,
        Ok(())
    );
    assert_eq!(
        within("hand over", Duration::ZERO, tracker.hand_over(unit(1))).await,
        Ok(())
    );
    assert_eq!(tracker.lead(|_| async { 1 }).await, None);
    settle().await;
    assert_eq!(stub.calls().len(), before);
}

#[actix_rt::test]
async fn a_failed_release_is_a_leadership_failure() {
    let (stub, tracker) = leader().await;
    advance(D).await;
    let not_held = LeaseError::NotHeld {
        unit: "led-service/0".into(),
    };
    stub.set_leave_answer(Err(not_held.clone()));
    let failure = Err(TrackerError::LeadershipFailure(not_held));
    assert_eq!(within("resign", MS, tracker.resign()).await, failure);
    assert_eq!(tracker.wait().await, failure);
}

#[actix_rt::test]
async fn a_minion_just_stops() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Deny);
    let tracker = Tracker::start(unit(0), stub.claimer(), D).unwrap();
    let mut status = tracker.status();
    within("minion", MS, status.wait_for(|s| *s == Status::Minion))
        .await
        .unwrap();
    let leader = tracker.wait_leader();
    assert_eq!(within("resign", MS, tracker.resign()).await, Ok(()));
    assert_eq!(leader.try_wait(), Some(false));
    assert_eq!(leaves(&stub), vec![]);
}

#[actix_rt::test]
async fn a_claimer_that_cannot_release_stops_and_lets_the_lease_expire() {
    tokio::time::pause();
    let stub = StubManager::start();
    let addr = stub.addr();
    let claimer = Claimer::from_recipients(addr.clone().recipient(), addr.recipient());
    assert!(!claimer.can_release());
    let tracker = Tracker::start(unit(0), claimer, D).unwrap();
    assert!(
        tracker.claim_leader().await,
        "a promise: the lease itself keeps it"
    );
    assert_eq!(within("resign", MS, tracker.resign()).await, Ok(()));
    assert_eq!(leaves(&stub), vec![]);
}

#[actix_rt::test]
async fn a_supervised_tracker_resigns_for_good() {
    tokio::time::pause();
    let stub = StubManager::start();
    let tracker = Tracker::start_supervised(unit(0), stub.claimer(), D).unwrap();
    leads(&tracker).await;
    advance(D - MS).await;
    assert!(tracker.claim_leader().await, "a promise until 2·d − 1 ms");
    // The renewal at d fails while the resign waits for that promise: the tracker
    // ends with that failure instead of restarting.
    stub.script([StubAnswer::Fail(LeaseError::Failed("pow".into()))]);
    let failure = Err(TrackerError::LeadershipFailure(LeaseError::Failed(
        "pow".into(),
    )));
    assert_eq!(within("resign", D, tracker.resign()).await, failure);
    let claims = stub.claim_count();
    advance(4 * D).await;
    settle().await;
    assert_eq!(stub.claim_count(), claims, "never restarted");
    assert!(!tracker.wait_leader().await);
    assert_eq!(*tracker.status().borrow(), Status::Stopped);

    // And a plain resign of a supervised tracker: released, stopped, inert.
    let tracker = Tracker::start_supervised(unit(1), stub.claimer(), D).unwrap();
    leads(&tracker).await;
    assert_eq!(within("resign", MS, tracker.resign()).await, Ok(()));
    let claims = stub.claim_count();
    advance(4 * D).await;
    settle().await;
    assert_eq!(stub.claim_count(), claims);
    assert_eq!(stub.release_count(), 1);
}

#[actix_rt::test]
async fn dropping_the_last_handle_resigns_and_the_actor_stops() {
    let (stub, tracker) = leader().await;
    let addr = tracker.addr();
    let clone = tracker.clone();
    drop(tracker);
    settle().await;
    assert_eq!(leaves(&stub), vec![], "a clone is still alive");
    drop(clone);
    until("the release", || stub.release_count() == 1).await;
    // The actor stopped: it renews nothing any more, even though an Addr is held.
    let claims = stub.claim_count();
    advance(4 * D).await;
    settle().await;
    assert_eq!(stub.claim_count(), claims);
    assert!(addr.send(ClaimLeader).await.is_err(), "the actor is gone");
}

#[actix_rt::test]
async fn a_tracker_started_by_hand_stops_on_stop_tracker_and_resigns_on_resign() {
    tokio::time::pause();
    let stub = StubManager::start();
    let addr = TrackerActor::new(unit(0), stub.claimer(), D)
        .unwrap()
        .start();
    assert!(addr.send(WaitLeader).await.unwrap().await);
    assert_eq!(addr.send(Resign::default()).await.unwrap(), Ok(()));
    assert_eq!(stub.release_count(), 1);

    let addr = TrackerActor::new(unit(1), stub.claimer(), D)
        .unwrap()
        .start();
    assert!(addr.send(WaitLeader).await.unwrap().await);
    let minion = addr.send(leadership::WaitMinion).await.unwrap();
    addr.do_send(StopTracker);
    assert!(!minion.await);
    until("the actor's stop", || !addr.connected()).await;
    assert_eq!(stub.release_count(), 1, "StopTracker releases nothing");
}

// Lead scopes.

#[actix_rt::test]
async fn lead_waits_for_leadership_and_returns_the_work_output() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Deny);
    let tracker = Tracker::start(unit(0), stub.claimer(), D).unwrap();
    until("the block after the denial", || stub.block_count() == 1).await;
    let scope = tokio::task::spawn_local({
        let tracker = tracker.clone();
        async move { tracker.lead(|g| async move { g.term }).await }
    });
    settle().await;
    assert!(!scope.is_finished(), "waits while a minion");
    stub.set_default(StubAnswer::GrantTerm(5));
    stub.release_blocks();
    assert_eq!(within("scope", MS, scope).await.unwrap(), Some(5));
}

#[actix_rt::test]
async fn a_resign_waits_for_a_running_scope_and_releases_as_it_finishes() {
    let (stub, tracker) = leader().await;
    let (finish, finished) = futures::channel::oneshot::channel::<()>();
    let scope = running_scope(&tracker, async move { finished.await.is_ok() }).await;
    let resign = tokio::task::spawn_local({
        let tracker = tracker.clone();
        async move { tracker.resign().await }
    });
    advance(D / 2).await;
    settle().await;
    assert_eq!(leaves(&stub), vec![], "the scope is drained, not cancelled");
    let at = Instant::now();
    finish.send(()).unwrap();
    assert_eq!(within("scope", MS, scope).await.unwrap(), Some(true));
    assert_eq!(within("resign", MS, resign).await.unwrap(), Ok(()));
    assert_eq!(leaves(&stub), vec![at], "released as the scope finished");
}

#[actix_rt::test]
async fn a_scope_still_running_d_after_the_resign_is_cancelled() {
    let (stub, tracker) = leader().await;
    let dropped = Rc::new(Cell::new(false));
    struct OnDrop(Rc<Cell<bool>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let guard = OnDrop(dropped.clone());
    let scope = running_scope(&tracker, async move {
        let _guard = guard;
        std::future::pending::<()>().await
    })
    .await;
    let resigned_at = Instant::now();
    let resign = tokio::task::spawn_local({
        let tracker = tracker.clone();
        async move { tracker.resign().await }
    });
    assert_eq!(within("scope", 2 * D, scope).await.unwrap(), None);
    let cancelled_at = Instant::now();
    assert!(dropped.get(), "the work's future was dropped");
    assert!(cancelled_at >= resigned_at + D && cancelled_at <= resigned_at + D + TIMER_SLACK);
    assert_eq!(within("resign", MS, resign).await.unwrap(), Ok(()));
    assert_eq!(leaves(&stub), vec![cancelled_at]);
}

#[actix_rt::test]
async fn a_scope_is_cancelled_the_instant_leadership_ends() {
    let (stub, tracker) = leader().await;
    stub.script([StubAnswer::Hang]);
    let start = Instant::now();
    let scope = tokio::task::spawn_local({
        let tracker = tracker.clone();
        async move { tracker.lead(|_| std::future::pending::<()>()).await }
    });
    let minion = tracker.wait_minion();
    assert_eq!(within("scope", 3 * D, scope).await.unwrap(), None);
    // The renewal hung: leadership ends 2 ms before the lease's expiry at 2·d, and the
    // WaitMinion resolves at the same instant.
    let ended = Instant::now();
    assert!(
        ended >= start + 2 * D - 2 * MS && ended <= start + 2 * D,
        "{:?}",
        ended - start
    );
    assert_eq!(minion.try_wait(), Some(false));
}

#[actix_rt::test]
async fn a_dropped_lead_closes_its_scope() {
    let (stub, tracker) = leader().await;
    // A lead dropped while running: its scope closes, so a resign releases at once.
    let running = tracker.lead(|_| std::future::pending::<()>());
    let mut running = Box::pin(running);
    assert!(futures::poll!(running.as_mut()).is_pending());
    settle().await;
    assert!(futures::poll!(running.as_mut()).is_pending());
    drop(running);
    let at = Instant::now();
    assert_eq!(within("resign", MS, tracker.resign()).await, Ok(()));
    assert_eq!(leaves(&stub), vec![at]);
}

#[actix_rt::test]
async fn a_scope_ended_with_leadership_that_closes_late_is_not_taken_for_a_newer_one() {
    // The machine counts open scopes; the actor forgets the ones leadership's end
    // ended, so such a scope closing late (its task slow to notice) must not count as
    // the close of a scope opened since, or a resign would release under it.
    let (stub, tracker) = leader().await;
    let mut old = Box::pin(tracker.lead(|_| std::future::pending::<()>()));
    assert!(futures::poll!(old.as_mut()).is_pending());
    settle().await;
    assert!(futures::poll!(old.as_mut()).is_pending(), "open");
    // The renewal is denied: leadership ends, and with it the old scope (not polled).
    stub.script([StubAnswer::Deny]);
    advance(D + TIMER_SLACK).await;
    until("blocked", || stub.pending_blocks() == 1).await;
    assert_eq!(*tracker.status().borrow(), Status::Minion);
    // Leader again, with a new scope running.
    stub.release_blocks();
    leads(&tracker).await;
    let _new = running_scope(&tracker, std::future::pending::<()>()).await;
    drop(old);
    settle().await;
    let resign = tokio::task::spawn_local({
        let tracker = tracker.clone();
        async move { tracker.resign().await }
    });
    settle().await;
    assert_eq!(leaves(&stub), vec![], "the new scope still runs");
    // It is cancelled d after the resign, and the release follows.
    assert_eq!(
        within("resign", D + TIMER_SLACK, resign).await.unwrap(),
        Ok(())
    );
    assert_eq!(leaves(&stub).len(), 1);
}

#[actix_rt::test]
async fn a_scope_ends_when_the_tracker_is_killed() {
    let (_stub, tracker) = leader().await;
    let scope = running_scope(&tracker, std::future::pending::<()>()).await;
    tracker.kill();
    assert_eq!(within("scope", MS, scope).await.unwrap(), None);
}

// Status.

#[actix_rt::test]
async fn status_follows_the_tickets_instant_by_instant() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Hang);
    let start = Instant::now();
    let tracker = Tracker::start(unit(0), stub.claimer(), D).unwrap();
    let status = tracker.status();
    until("the first claim", || stub.claim_count() == 1).await;
    assert_eq!(*status.borrow(), Status::Claiming);
    let leader = tracker.wait_leader();
    stub.set_default(StubAnswer::Grant);
    stub.set_term(4);
    stub.answer_hung_claims(StubAnswer::Grant);
    until("WaitLeader's answer", || leader.try_wait().is_some()).await;
    assert_eq!(leader.try_wait(), Some(true));
    let Status::Leader(g) = *status.borrow() else {
        panic!("leader");
    };
    assert_eq!(g.term, 4);
    assert!(g.until > start + D && g.until <= start + 2 * D);
    // Denied at the renewal: minion at the same instant the WaitMinion resolves.
    stub.script([StubAnswer::Deny]);
    let minion = tracker.wait_minion();
    let mut watch = tracker.status();
    watch.mark_unchanged();
    within("minion", D + MS, watch.changed()).await.unwrap();
    assert_eq!(*watch.borrow(), Status::Minion);
    assert_eq!(minion.try_wait(), Some(false));
    tracker.kill();
    within("stopped", MS, watch.wait_for(|s| *s == Status::Stopped))
        .await
        .unwrap();
}

// End to end, on the in-memory manager.

/// The lease of `led-service` on `manager`, which must have one.
async fn lease_of(manager: &actix::Addr<ManagerActor>) -> LeaseInfo {
    manager
        .send(Leader {
            service: "led-service".into(),
        })
        .await
        .unwrap()
        .expect("a lease")
}

#[actix_rt::test]
async fn hand_over_to_a_blocked_minion_makes_it_leader_without_waiting() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let a = Tracker::start(unit(0), Claimer::new(&manager), D).unwrap();
    assert!(a.wait_leader().await);
    let b = Tracker::start(unit(1), Claimer::new(&manager), D).unwrap();
    let mut b_status = b.status();
    within("minion", MS, b_status.wait_for(|s| *s == Status::Minion))
        .await
        .unwrap();
    let old = lease_of(&manager).await;
    advance(D).await; // a's WaitLeader promise has ended
    let at = Instant::now();
    assert_eq!(within("hand over", MS, a.hand_over(unit(1))).await, Ok(()));
    let b_leads = b.wait_leader();
    let g = within("b leads", Duration::ZERO, b_leads.guarantee())
        .await
        .unwrap();
    assert_eq!(Instant::now(), at, "no time passed");
    assert!(g.term > old.term);
    let lease = lease_of(&manager).await;
    assert_eq!(
        (lease.holder.as_str(), lease.term),
        ("led-service/1", g.term)
    );
}
