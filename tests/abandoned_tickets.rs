//! A minion that keeps asking and giving up — `timeout(.., tracker.wait_leader())` in a
//! loop — must not make its tracker grow: a parked ticket nobody can read any more is
//! dropped (amortised), so a million abandoned `WaitLeader` tickets leave the process's
//! memory flat.
//!
//! One test in its own binary, so that no other test allocates while it measures the
//! process's resident memory.

use std::time::Duration;

use leadership::testing::{StubAnswer, StubManager};
use leadership::Tracker;

#[cfg(target_os = "linux")]
#[path = "common/resident.rs"]
mod resident;

#[cfg(target_os = "linux")]
use resident::resident_bytes;

#[cfg(target_os = "linux")]
#[actix_rt::test]
async fn a_million_abandoned_wait_leader_tickets_leave_memory_flat() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Deny);
    let tracker = Tracker::start(
        "web/1".parse().unwrap(),
        stub.claimer(),
        Duration::from_secs(10),
    )
    .unwrap();
    // A minion: its first claim was denied, and it blocks.
    assert!(!tracker.wait_minion().await);
    assert!(!tracker.claim_leader().await);

    // Each round warms up allocator pools first, then measures: one leaking ticket is
    // ~200 bytes, so a million would be ~200 MB; pruned, the queue stays tiny.
    let ask_and_give_up = |n: usize| {
        let tracker = tracker.clone();
        async move {
            for i in 0..n {
                // Asked, then abandoned: nobody can read this answer any more.
                drop(tracker.wait_leader());
                if i % 256 == 255 {
                    // Let the tracker take the requests from its mailbox.
                    tokio::task::yield_now().await;
                }
            }
            // A round trip through the tracker's mailbox: every request above handled.
            assert!(!tracker.claim_leader().await);
        }
    };
    ask_and_give_up(100_000).await;
    let before = resident_bytes();
    ask_and_give_up(1_000_000).await;
    let after = resident_bytes();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "a million abandoned tickets grew the process by {} MiB ({before} -> {after} bytes)",
        grown >> 20
    );

    // The tracker still answers: a live ticket is kept and resolved when it leads.
    let waiting = tracker.wait_leader();
    stub.set_default(StubAnswer::Grant);
    stub.release_blocks();
    assert!(waiting.await, "the one ticket somebody holds is answered");
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));
}
