//! Regression tests for library bugs the simulation (`tests/simulation.rs`) found. Each
//! test is named after what it reproduces.

mod paused;

use paused::PausedSystem;
use std::time::Duration;

use leadership::testing::{StubAnswer, StubManager};
use leadership::{Tracker, UnitName};
use tokio::time::Instant;

const D: Duration = Duration::from_secs(2);

/// Found by the simulation's "no stale leader" check after process stalls had moved
/// the clock off tokio's millisecond grid (as a real clock always is): a tracker whose
/// renewal hangs must end leadership — resolve `WaitMinion` — no later than its lease
/// expires, `t0 + 2·d` for a lease granted at `t0`. tokio rounds a timer's deadline up
/// to a millisecond tick and sleeps whole milliseconds from the current tick rounded
/// down, so a timer armed for the expiry itself fired up to 2 ms after it, while the
/// manager could already grant the lease to another unit.
#[actix_rt::test(system = "PausedSystem")]
async fn wait_minion_resolves_no_later_than_the_lease_expiry_off_the_millisecond_grid() {
    // 0.1 ms past a tick: the lease is granted, and its expiry falls, 0.1 ms past one.
    tokio::time::advance(Duration::from_micros(100)).await;
    let stub = StubManager::start();
    stub.script([StubAnswer::Grant, StubAnswer::Hang]);
    let unit = UnitName::new("led-service/0").expect("a valid unit name");
    let tracker = Tracker::start(unit, stub.claimer(), D).expect("a valid duration");
    assert!(tracker.wait_leader().await);
    // The stub granted the first claim when it handled it: the lease ends 2·d later.
    let (_, granted_at) = stub.claims()[0].clone();
    let lease_end = granted_at + 2 * D;
    // Now 0.9 ms past a tick: every later wait is counted from here, in whole
    // milliseconds, so the tracker's timers fire about 1.8 ms after their deadlines.
    tokio::time::advance(Duration::from_micros(800)).await;
    let minion = tracker.wait_minion();
    assert!(!minion.await, "a WaitMinion resolves false");
    let ended = Instant::now();
    assert!(
        ended <= lease_end,
        "leadership ended {:?} after the lease expired",
        ended - lease_end
    );
    tracker.kill();
}

/// Found reading the code against the README (issue 12): when leadership ended because a
/// renewal went unanswered, parked `ClaimLeader` tickets kept waiting for the claim's
/// timeout (`d` after it was sent) instead of answering `false` when leadership ended.
#[actix_rt::test(system = "PausedSystem")]
async fn parked_claim_leader_answers_false_when_leadership_ends_during_a_renewal() {
    let stub = StubManager::start();
    stub.script([StubAnswer::Grant, StubAnswer::Hang]);
    let unit = UnitName::new("led-service/0").expect("a valid unit name");
    let start = Instant::now();
    let tracker = Tracker::start(unit, stub.claimer(), D).expect("a valid duration");
    let mut status = tracker.status();
    status
        .wait_for(|s| matches!(s, leadership::Status::Leader(_)))
        .await
        .expect("the tracker runs");
    // Parked on the renewal sent at d.
    tokio::time::advance(D + Duration::from_millis(1)).await;
    let parked = tracker.claim_leader();
    let minion = tracker.wait_minion();
    assert!(!minion.await);
    let ended = Instant::now();
    assert_eq!(parked.try_wait(), Some(false), "at the same instant");
    assert!(ended < start + 2 * D, "before the renewal's timeout at 2·d");
    assert_eq!(
        tracker.claim_leader().try_wait(),
        None,
        "a ticket not yet handled is pending"
    );
    assert!(!tracker.claim_leader().await, "and false once handled");
    tracker.kill();
}
