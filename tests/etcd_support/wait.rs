//! Waiting on a real clock, always with a deadline and a message saying what for.

use std::time::Duration;

/// Polls `cond` every 20 ms until it holds; panics with `what` after `deadline`.
pub async fn poll_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` for at most `deadline`, panicking with `what` otherwise.
pub async fn within<T>(
    deadline: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {deadline:?}: {what}"))
}
