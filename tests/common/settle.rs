//! The one bounded settle of the message-level tests, for checks that nothing happens
//! (to wait for something that should happen, they use `until` in `until.rs`). It only
//! yields, so virtual time stands still.

/// How many times [`settle`] yields: every chain of messages these tests start (a
/// ticket through the tracker to a stub or manager and back, a hand-over waking a
/// block) is over within a third of it, so what has not happened by then would not
/// happen without the clock moving.
const QUIET: usize = 30;

/// For checks that nothing happens: lets every task that is ready run (the chains of
/// messages already started finish), without moving the clock.
pub async fn settle() {
    for _ in 0..QUIET {
        tokio::task::yield_now().await;
    }
}
