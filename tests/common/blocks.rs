//! Blocks sent to a `ManagerActor` from tasks of their own, shared by the manager's
//! message-level tests (`tests/manager.rs`, `tests/manager_edges.rs`).

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use leadership::{BlockUntilLeadershipReleased, LeaseError, ManagerActor};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a block's task reports: the answer, and the instant it arrived.
pub type BlockOutcome = (Result<Result<(), LeaseError>, MailboxError>, Instant);

/// Awaits `fut`, failing the test if it needs more than an hour of (paused) time.
pub async fn within_an_hour<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3600), fut)
        .await
        .expect("the manager never answered")
}

/// Sends a block for `service` from a task of its own; the task reports the answer and
/// the instant it arrived. The block is queued in the manager's mailbox on return.
pub fn spawn_block(manager: &Addr<ManagerActor>, service: &str) -> JoinHandle<BlockOutcome> {
    let request = manager.send(BlockUntilLeadershipReleased {
        service: service.into(),
    });
    actix_rt::spawn(async move {
        let answer = request.await;
        (answer, Instant::now())
    })
}

/// Awaits a block that must be answered `Ok`, and says when it was.
pub async fn woke(block: JoinHandle<BlockOutcome>) -> Instant {
    let (answer, at) = within_an_hour(block).await.unwrap();
    assert_eq!(answer.unwrap(), Ok(()));
    at
}
