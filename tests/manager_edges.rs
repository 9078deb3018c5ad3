//! `ManagerActor` at the edges that mutation testing found untested (see
//! docs/testing.md): the window between a lease's expiry and its timer, and the blocks
//! of a lease handed over.
//!
//! **The window.** A message handled at (or after) a lease's expiry instant, before the
//! expiry timer has reaped the lease, must see the lease as gone: the handlers decide
//! by `now`, never by the timer.
//!
//! How a test reaches the window, deterministically: on a clock that starts paused (on
//! tokio's millisecond grid), *send* the message first — it is queued at once and wakes
//! the manager — and only then `advance` the clock to the expiry instant. The manager's
//! next poll finds the message in its mailbox at the expiry instant, ahead of the
//! message by which the expiry timer's task tells the manager that tick has come. (The
//! timer, aimed one tick early, already ran a tick before the expiry, found the lease
//! live and re-armed for the expiry's tick.)
//! Or give the lease an expiry off the grid: the timer then wakes only at the first tick
//! after it. That the window is really reached is checked by mutation: treating the
//! lease as live at its expiry in any one handler fails the matching test here.

#[path = "common/blocks.rs"]
mod blocks;
mod paused;
#[path = "common/settle.rs"]
mod settle;

use std::time::Duration;

use actix::prelude::*;
use blocks::{spawn_block, woke, BlockOutcome};
use leadership::{
    ClaimLeadership, HandOverLeadership, Leader, LeaseError, ManagerActor, ReleaseLeadership,
    WatchLeader,
};
use paused::PausedSystem;
use settle::settle;
use tokio::task::JoinHandle;
use tokio::time::{advance, Instant};

const SVC: &str = "led-service";
const U0: &str = "led-service/0";
const U1: &str = "led-service/1";
/// The lease every test grants first, at `t0`.
const LEASE: Duration = Duration::from_millis(100);
/// One tick of tokio's timer wheel.
const TICK: Duration = Duration::from_millis(1);

fn claim(unit: &str, duration: Duration) -> ClaimLeadership {
    ClaimLeadership {
        service: SVC.into(),
        unit: unit.into(),
        duration,
    }
}

/// Waits until `manager` has handled every message sent to it so far: it handles its
/// mailbox in order, so the answer to a query about a service no test uses comes after
/// theirs (and the query changes nothing).
async fn handled(manager: &Addr<ManagerActor>) {
    let other = Leader {
        service: "no-such-service".into(),
    };
    assert_eq!(manager.send(other).await.unwrap(), None);
}

/// A manager with `U0` granted `LEASE` at `t0`, a block waiting on it, and the clock one
/// tick before the expiry, the expiry timer having run there (early) and re-armed.
/// Returns the manager, `t0`, the first term and the block.
async fn one_tick_before_the_expiry() -> (Addr<ManagerActor>, Instant, u64, JoinHandle<BlockOutcome>)
{
    let t0 = Instant::now();
    let manager = ManagerActor::new().start();
    let term = manager.send(claim(U0, LEASE)).await.unwrap().unwrap().term;
    let block = spawn_block(&manager, SVC);
    handled(&manager).await;
    advance(LEASE - TICK).await;
    settle().await;
    assert!(!block.is_finished(), "woke before the expiry");
    (manager, t0, term, block)
}

/// Moves the clock to the expiry (one tick on), with `request` already queued.
async fn to_the_expiry<R>(request: R) -> R {
    advance(TICK).await;
    request
}

#[actix_rt::test(system = "PausedSystem")]
async fn the_holders_claim_at_its_expiry_before_the_timer_is_a_new_grant() {
    let (manager, t0, first, block) = one_tick_before_the_expiry().await;
    let claimed = to_the_expiry(manager.send(claim(U0, LEASE))).await;
    let granted = claimed.await.unwrap().expect("granted anew");
    assert!(
        granted.term > first,
        "a new term: {} > {first}",
        granted.term
    );
    // The old lease ended: its block answers at the expiry, not at the new lease's end.
    assert_eq!(woke(block).await, t0 + LEASE);
    let lease = manager
        .send(Leader {
            service: SVC.into(),
        })
        .await
        .unwrap()
        .expect("the new lease");
    assert_eq!(
        (lease.holder.as_str(), lease.term, lease.expires),
        (U0, granted.term, t0 + 2 * LEASE)
    );
}

#[actix_rt::test(system = "PausedSystem")]
async fn another_units_claim_at_the_expiry_before_the_timer_is_granted() {
    let (manager, t0, first, block) = one_tick_before_the_expiry().await;
    let claimed = to_the_expiry(manager.send(claim(U1, LEASE))).await;
    let granted = claimed.await.unwrap().expect("granted");
    assert!(granted.term > first);
    assert_eq!(woke(block).await, t0 + LEASE);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_at_the_expiry_before_the_timer_answers_at_once() {
    let (manager, t0, _, old_block) = one_tick_before_the_expiry().await;
    let block = to_the_expiry(spawn_block(&manager, SVC)).await;
    assert_eq!(woke(block).await, t0 + LEASE);
    assert_eq!(woke(old_block).await, t0 + LEASE);
}

#[actix_rt::test(system = "PausedSystem")]
async fn the_leader_at_the_expiry_before_the_timer_is_nobody() {
    let (manager, _, _, _) = one_tick_before_the_expiry().await;
    let asked = to_the_expiry(manager.send(Leader {
        service: SVC.into(),
    }))
    .await;
    assert_eq!(asked.await.unwrap(), None);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_watch_taken_at_the_expiry_before_the_timer_shows_nobody() {
    let (manager, t0, _, block) = one_tick_before_the_expiry().await;
    let watched = to_the_expiry(manager.send(WatchLeader {
        service: SVC.into(),
    }))
    .await;
    let watch = watched.await.unwrap().expect("a valid service");
    assert_eq!(*watch.borrow(), None);
    // Seeing the lease gone, the manager reaped it: its block answers at the expiry.
    assert_eq!(woke(block).await, t0 + LEASE);
}

#[actix_rt::test(system = "PausedSystem")]
async fn release_and_hand_over_at_the_expiry_before_the_timer_hold_nothing() {
    let not_held = Err(LeaseError::NotHeld { unit: U0.into() });
    let (manager, _, _, block) = one_tick_before_the_expiry().await;
    let released = to_the_expiry(manager.send(ReleaseLeadership {
        service: SVC.into(),
        unit: U0.into(),
    }))
    .await;
    assert_eq!(released.await.unwrap(), not_held.clone());
    woke(block).await;

    let (manager, _, _, block) = one_tick_before_the_expiry().await;
    let handed = to_the_expiry(manager.send(HandOverLeadership {
        service: SVC.into(),
        unit: U0.into(),
        successor: U1.into(),
    }))
    .await;
    assert_eq!(handed.await.unwrap(), not_held);
    woke(block).await;
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_at_an_off_grid_expiry_answers_at_once_not_at_the_timers_tick() {
    // A real clock is never on tokio's millisecond grid, and there the timer is late by
    // design: it wakes at the first tick at or after the expiry. The window then lasts
    // until that tick, and a block sent in it must not wait for the timer.
    let t0 = Instant::now();
    let manager = ManagerActor::new().start();
    advance(TICK / 2).await;
    manager.send(claim(U0, LEASE)).await.unwrap().unwrap();
    let expiry = t0 + TICK / 2 + LEASE;
    // The timer wakes on the tick before the expiry, finds the lease live, and re-arms
    // for the first tick after it.
    advance(LEASE - TICK / 2).await;
    settle().await;
    advance(TICK / 2).await;
    assert_eq!(Instant::now(), expiry);
    let at = woke(spawn_block(&manager, SVC)).await;
    assert_eq!(at, expiry, "answered at once, not at the timer's tick");
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_hand_over_wakes_the_blocks_at_once() {
    // The successor's tracker is blocked as a minion: it must wake and claim now, not
    // when the lease it has just been given would expire.
    let t0 = Instant::now();
    let manager = ManagerActor::new().start();
    manager.send(claim(U0, LEASE)).await.unwrap().unwrap();
    let block = spawn_block(&manager, SVC);
    handled(&manager).await;
    advance(LEASE / 2).await;
    let handed = manager.send(HandOverLeadership {
        service: SVC.into(),
        unit: U0.into(),
        successor: U1.into(),
    });
    assert_eq!(handed.await.unwrap(), Ok(()));
    assert_eq!(woke(block).await, t0 + LEASE / 2);
    // A block sent now waits for the successor's lease.
    let late = spawn_block(&manager, SVC);
    settle().await;
    assert!(!late.is_finished());
    assert_eq!(woke(late).await, t0 + LEASE);
}
