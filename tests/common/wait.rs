//! Waiting without moving a paused clock, shared by the message-level tests: [`until`]
//! a condition the test needs holds, or [`settle`] when the check is that nothing
//! happens. Both only yield, so virtual time stands still while they wait: instants a
//! test asserts afterwards are those of the moment it started waiting.

/// How many times [`until`] yields before it gives up: far more than any chain of
/// messages in these tests needs (a few yields per actor hop), so reaching it means
/// the condition will not hold without the clock moving.
const ROUNDS: usize = 10_000;

/// How many times [`settle`] yields: every chain of messages these tests start (a
/// ticket through the tracker to a stub or manager and back, a hand-over waking a
/// block) is over within a third of it, so what has not happened by then would not
/// happen without the clock moving.
const QUIET: usize = 30;

/// Yields until `cond` holds, letting every task that is ready run; panics, saying
/// `what` was awaited, if it still does not hold after [`ROUNDS`] yields.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..ROUNDS {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("waited {ROUNDS} yields (virtual time standing still) for {what}");
}

/// For checks that nothing happens: lets every task that is ready run (the chains of
/// messages already started finish), without moving the clock.
pub async fn settle() {
    for _ in 0..QUIET {
        tokio::task::yield_now().await;
    }
}
