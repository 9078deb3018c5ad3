//! Supervised trackers (`Tracker::start_supervised`): a failure restarts the same actor
//! after a backoff; the handle survives; `wait()` resolves only after `kill()`.

use std::task::Poll;
use std::time::Duration;

use leadership::testing::{StubAnswer, StubCall, StubHandle, StubManager};
use leadership::{ClaimLeader, LeaseError, Tracker, UnitName};
use settle::settle;
use tokio::time::{sleep_until, Instant};
use until::until;

#[path = "common/settle.rs"]
mod settle;
#[path = "common/until.rs"]
mod until;

const D: Duration = Duration::from_secs(10);
/// tokio fires every timer up to 1 ms after its deadline (it rounds up to its tick).
const TIMER_SLACK: Duration = Duration::from_millis(1);

fn pow() -> StubAnswer {
    StubAnswer::Fail(LeaseError::Failed("pow".into()))
}

async fn start_supervised(stub: &StubHandle) -> (Tracker, Instant) {
    let t0 = Instant::now();
    let unit = UnitName::new("led-service/0").unwrap();
    let tracker = Tracker::start_supervised(unit, stub.claimer(), D).unwrap();
    until("the first claim", || stub.claim_count() >= 1).await;
    (tracker, t0)
}

fn claim_instants(stub: &StubHandle) -> Vec<Instant> {
    stub.claims().into_iter().map(|(_, at)| at).collect()
}

fn is_pending<T>(poll: Poll<T>) -> bool {
    poll.is_pending()
}

#[actix_rt::test]
async fn restart_keeps_the_handle_and_reclaims_exactly_once_after_the_backoff() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([StubAnswer::Grant, pow()]);
    let (tracker, t0) = start_supervised(&stub).await;
    let addr = tracker.addr();
    assert!(tracker.wait_leader().await);
    let minion = tracker.wait_minion();

    // The renewal at t0 + d fails: the tracker restarts as a minion.
    assert!(!minion.await);
    let failed_at = Instant::now();
    assert!(failed_at >= t0 + D && failed_at <= t0 + D + TIMER_SLACK);
    assert!(
        !tracker.claim_leader().await,
        "not leader while backing off"
    );
    assert_eq!(stub.claim_count(), 2);

    // Exactly one claim, after a backoff of 0.5-1 s.
    assert!(
        tracker.wait_leader().await,
        "leader again after the restart"
    );
    let claims = claim_instants(&stub);
    assert_eq!(claims.len(), 3, "re-claims exactly once");
    let backoff = claims[2] - failed_at;
    assert!(
        backoff >= Duration::from_millis(500) && backoff <= Duration::from_secs(1) + TIMER_SLACK,
        "{backoff:?}"
    );
    // The same actor, reachable through the same handle and Addr.
    assert!(addr.connected());
    assert!(addr.send(ClaimLeader).await.unwrap().await);
    assert!(is_pending(futures::poll!(Box::pin(tracker.wait()))));
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));
}

#[actix_rt::test]
async fn backoff_doubles_to_the_cap_and_a_grant_resets_it() {
    tokio::time::pause();
    let stub = StubManager::start_with(pow());
    let (tracker, t0) = start_supervised(&stub).await;
    sleep_until(t0 + Duration::from_secs(300)).await;
    let claims = claim_instants(&stub);
    let waits: Vec<Duration> = claims.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(waits.len() >= 20, "keeps retrying: {waits:?}");
    assert!(
        waits.len() < 60,
        "no hot loop: {} claims in 300 s",
        claims.len()
    );
    let first = waits[0];
    assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1) + TIMER_SLACK);
    for pair in waits.windows(2) {
        let expected = (pair[0] * 2).min(D);
        // Each wait is its backoff plus up to the timer's slack (which then doubles).
        assert!(
            pair[1] + 2 * TIMER_SLACK >= expected && pair[1] <= expected + TIMER_SLACK,
            "doubling, capped at d: {waits:?}"
        );
    }
    assert!(*waits.last().unwrap() >= D, "reaches the cap: {waits:?}");
    assert!(
        waits.iter().all(|w| *w <= D + TIMER_SLACK),
        "never beyond d: {waits:?}"
    );

    // A granted claim resets the backoff: the next failure waits the first wait again.
    // (Grant, then fail the renewal, then grant the claim after the backoff.)
    stub.script([StubAnswer::Grant, pow(), StubAnswer::Grant]);
    assert!(tracker.wait_leader().await);
    let granted = claim_instants(&stub).len();
    assert!(!tracker.wait_minion().await);
    assert!(tracker.wait_leader().await);
    let claims = claim_instants(&stub);
    let after_reset = claims[granted + 1] - claims[granted];
    assert!(
        after_reset + TIMER_SLACK >= first && after_reset <= first + TIMER_SLACK,
        "{after_reset:?} vs first {first:?}"
    );
    tracker.kill();
}

#[actix_rt::test]
async fn pending_tickets_resolve_false_at_a_restart() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Hang);
    let (tracker, t0) = start_supervised(&stub).await;
    let parked = [
        tracker.claim_leader(),
        tracker.wait_leader(),
        tracker.wait_minion(),
    ];
    settle().await;
    assert!(parked.iter().all(|t| t.try_wait().is_none()));
    // The first claim is unanswered for d: a failure, so a restart.
    sleep_until(t0 + D + TIMER_SLACK).await;
    until("the parked tickets' answers", || {
        parked.iter().all(|t| t.try_wait().is_some())
    })
    .await;
    assert!(
        parked.iter().all(|t| t.try_wait() == Some(false)),
        "{parked:?}"
    );
    stub.set_default(StubAnswer::Grant);
    assert_eq!(
        stub.answer_hung_claims(StubAnswer::Grant),
        1,
        "the stale claim"
    );
    settle().await;
    assert!(
        !tracker.claim_leader().await,
        "a stale answer is not a grant"
    );
    assert!(
        tracker.wait_leader().await,
        "the claim after the backoff is"
    );
    assert_eq!(stub.claim_count(), 2);
    tracker.kill();
}

#[actix_rt::test]
async fn manager_gone_means_retries_with_backoff_until_killed_then_inert() {
    tokio::time::pause();
    let stub = StubManager::start();
    let (tracker, t0) = start_supervised(&stub).await;
    assert!(tracker.wait_leader().await);
    stub.stop();
    sleep_until(t0 + Duration::from_secs(120)).await;
    assert!(!tracker.claim_leader().await);
    assert!(is_pending(futures::poll!(Box::pin(tracker.wait()))));
    assert!(tracker.addr().connected(), "the same actor, restarting");

    let leader = tracker.wait_leader();
    tracker.kill();
    assert!(!leader.await);
    assert_eq!(tracker.wait().await, Ok(()));
    // Inert after kill: the Supervisor restarted it (a handle is alive), but it
    // neither claims nor answers true.
    let calls = stub.calls().len();
    sleep_until(t0 + Duration::from_secs(600)).await;
    assert!(!tracker.claim_leader().await);
    assert!(!tracker.wait_leader().await);
    assert_eq!(tracker.wait().await, Ok(()));
    assert_eq!(stub.calls().len(), calls, "no claims after kill");
}

#[actix_rt::test]
async fn killed_supervised_tracker_sends_nothing_to_a_live_manager() {
    tokio::time::pause();
    let stub = StubManager::start();
    let (tracker, t0) = start_supervised(&stub).await;
    assert!(tracker.wait_leader().await);
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));
    sleep_until(t0 + D * 10).await;
    assert_eq!(stub.calls().len(), 1, "{:?}", stub.calls());
    assert!(matches!(stub.calls()[0], StubCall::Claim { .. }));
    assert!(!tracker.claim_leader().await);
}

/// The rule for `WaitMinion` after a restart (docs/design.md): the tracker knows it holds
/// nothing, so `WaitMinion` is `false` at once, during the backoff and during the claim
/// that follows it — unlike the first claim after start, which it waits for.
#[actix_rt::test]
async fn after_a_restart_wait_minion_is_false_at_once_even_while_the_claim_is_in_flight() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([pow(), StubAnswer::Hang]);
    let (tracker, _) = start_supervised(&stub).await;
    let mut status = tracker.status();
    assert_eq!(*status.borrow_and_update(), leadership::Status::Claiming);
    let minion = tracker.wait_minion();
    until("WaitMinion's answer", || minion.try_wait().is_some()).await;
    assert_eq!(minion.try_wait(), Some(false), "during the backoff");
    // The claim after the backoff hangs: still false at once.
    tokio::time::timeout(Duration::from_secs(2), stub.wait_calls(2))
        .await
        .expect("the claim after the backoff");
    until("the hung claim", || stub.hung_claims() >= 1).await;
    assert_eq!(stub.hung_claims(), 1);
    let minion = tracker.wait_minion();
    until("WaitMinion's answer", || minion.try_wait().is_some()).await;
    assert_eq!(minion.try_wait(), Some(false), "during the claim");
    assert_eq!(*status.borrow(), leadership::Status::Claiming);
    tracker.kill();
}
