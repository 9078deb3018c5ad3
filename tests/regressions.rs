//! Regression tests for library bugs the simulation (`tests/simulation.rs`) found. Each
//! test is named after what it reproduces.

use std::time::Duration;

use leadership::testing::{StubAnswer, StubManager};
use leadership::{Tracker, UnitName};
use tokio::time::Instant;

const D: Duration = Duration::from_secs(2);

/// Found by the simulation's "no stale leader" check after a process stall had moved
/// the clock off tokio's millisecond grid (as a real clock always is): a tracker whose
/// renewal hangs must end leadership — resolve `WaitMinion` — no later than its lease
/// expires, `t0 + 2·d` for a lease granted at `t0`. tokio rounds every timer up to its
/// next millisecond tick, so a timer armed for the expiry itself fired up to 1 ms after
/// it, while the manager could already grant the lease to another unit.
#[actix_rt::test]
async fn wait_minion_resolves_no_later_than_the_lease_expiry_off_the_millisecond_grid() {
    tokio::time::pause();
    // Half a millisecond off the tick grid: a timer for an instant on this clock rounds
    // up by about 0.5 ms.
    tokio::time::advance(Duration::from_micros(500)).await;
    let stub = StubManager::start();
    stub.script([StubAnswer::Grant, StubAnswer::Hang]);
    let unit = UnitName::new("led-service/0").expect("a valid unit name");
    let tracker = Tracker::start(unit, stub.claimer(), D).expect("a valid duration");
    assert!(tracker.wait_leader().await);
    // The stub granted the first claim when it handled it: the lease ends 2·d later.
    let (_, granted_at) = stub.claims()[0].clone();
    let lease_end = granted_at + 2 * D;
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
