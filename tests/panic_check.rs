//! The panic check of `tests/paused` (see [`paused::PanicCheck`]): a panic in an actor
//! callback is swallowed by the runtime, and a test that should fail passes. These tests
//! show the swallowing, and that the check turns it into a failure.

mod paused;

use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::prelude::*;
use paused::{CheckedSystem, PanicCheck, PausedSystem};

/// An actor that panics in a handler on [`Boom`], or in `stopped()` after [`Halt`] —
/// where a mutant of `ManagerActor::stopped` overflowed.
struct Fragile {
    /// Pending "blocks" counted when stopping, as `ManagerActor::stopped` does.
    blocks: usize,
}

impl Actor for Fragile {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        // The mutant's shape: a count subtracted instead of added, overflowing.
        let none = std::hint::black_box(0usize);
        let _ = none - self.blocks;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Boom;

impl Handler<Boom> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("deliberate panic in a handler");
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Halt;

impl Handler<Halt> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// What a test body sees of a panicking actor: only a mailbox error, or nothing.
async fn provoke_both_panics() {
    let in_handler = Fragile { blocks: 0 }.start();
    assert!(in_handler.send(Boom).await.is_err(), "the actor is gone");
    let in_stopped = Fragile { blocks: 1 }.start();
    in_stopped
        .send(Halt)
        .await
        .expect("answered before stopping");
    // Let the actor run its `stopped()`.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// The panic message of a failed test run, as a string.
fn failure_of(run: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(run)).expect_err("the test must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn without_the_check_an_actor_panic_lets_the_test_pass() {
    // The gap this check closes: the same body on a plain system completes normally.
    actix_rt::System::new().block_on(provoke_both_panics());
}

#[test]
fn a_paused_system_fails_the_test_on_a_swallowed_actor_panic() {
    let message = failure_of(|| PausedSystem::new().block_on(provoke_both_panics()));
    assert!(message.contains("2 panic(s)"), "{message}");
    assert!(
        message.contains("deliberate panic in a handler"),
        "{message}"
    );
    assert!(message.contains("subtract with overflow"), "{message}");
}

#[test]
fn a_checked_system_and_the_guard_fail_the_test_too() {
    let message = failure_of(|| CheckedSystem::new().block_on(provoke_both_panics()));
    assert!(message.contains("2 panic(s)"), "{message}");
    // The guard, as an `#[actix_rt::test]` would hold it.
    let message = failure_of(|| {
        actix_rt::System::new().block_on(async {
            let _panics = PanicCheck::new();
            provoke_both_panics().await;
        })
    });
    assert!(message.contains("2 panic(s)"), "{message}");
}

#[test]
fn only_panics_during_the_run_count() {
    // Runs on one thread (as proptest's cases do): a failed run before does not leak
    // into the next one.
    failure_of(|| PausedSystem::new().block_on(provoke_both_panics()));
    PausedSystem::new().block_on(async {
        let ok = Fragile { blocks: 0 }.start();
        ok.send(Halt).await.unwrap();
    });
}

#[test]
fn a_failing_test_keeps_its_own_message() {
    // A test that fails on its own is not re-reported as a swallowed panic.
    let message = failure_of(|| {
        PausedSystem::new().block_on(async {
            assert_eq!(1 + 1, 3, "the test's own failure");
        })
    });
    assert!(message.contains("the test's own failure"), "{message}");
}
