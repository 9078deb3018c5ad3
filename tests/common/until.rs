//! Waiting for a condition without moving a paused clock, shared by the message-level
//! tests (with `settle` in `settle.rs` for checks that nothing happens). It only
//! yields, so virtual time stands still while it waits: instants a test asserts
//! afterwards are those of the moment it started waiting.

/// How many times [`until`] yields before it gives up: far more than any chain of
/// messages in these tests needs (a few yields per actor hop), so reaching it means
/// the condition will not hold without the clock moving.
const ROUNDS: usize = 10_000;

/// Yields until `cond` holds, letting every task that is ready run; panics, saying
/// `what` was awaited (rendered only then), if it still does not hold after [`ROUNDS`] yields.
pub async fn until(what: impl std::fmt::Display, mut cond: impl FnMut() -> bool) {
    for _ in 0..ROUNDS {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("waited {ROUNDS} yields (virtual time standing still) for {what}");
}
