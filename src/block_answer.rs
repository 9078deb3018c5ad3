//! [`BlockAnswer`]: how a manager answers a
//! [`BlockUntilLeadershipReleased`](crate::BlockUntilLeadershipReleased) — now, or from
//! a small task that runs only while somebody still waits for the answer.
//!
//! A block's asker may go away long before the lease ends (a tracker restarted or
//! stopped, a caller's timeout fired), and a leader that renews forever keeps its lease.
//! With actix's `ResponseFuture`, what a block waits on would run to its end anyway: a
//! receiver in the in-memory manager, an etcd watch in the etcd manager, one more for
//! every unit that left. A `BlockAnswer` task also watches the asker's side of the reply
//! channel and ends as soon as the asker is gone, dropping what it waited on; a block
//! sent with `do_send` (nobody to answer) starts no task at all.

use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::FutureExt;

use crate::protocol::LeaseError;

/// A manager's response to a
/// [`BlockUntilLeadershipReleased`](crate::BlockUntilLeadershipReleased): an answer
/// now, or once the lease ends (or when the asker gives up, whichever comes first).
///
/// You never build one: it is what the block handlers of
/// [`ManagerActor`](crate::ManagerActor) and the etcd manager return, and actix
/// delivers it to the asker like any response. It exists instead of actix's `Response`
/// because it sees whether anybody still waits for the answer (see the module docs).
///
/// It is `Send`: what it waits on must be.
pub struct BlockAnswer(Reply);

enum Reply {
    Now(Result<(), LeaseError>),
    /// Woken by the lease's sender; a dropped sender means the manager stopped.
    Woken(oneshot::Receiver<()>),
    /// Whatever the manager waits on (an etcd watch), polled only while asked for.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Waiting(Pin<Box<dyn Future<Output = Result<(), LeaseError>> + Send>>),
}

impl fmt::Debug for BlockAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Reply::Now(answer) => f.debug_tuple("BlockAnswer::Now").field(answer).finish(),
            Reply::Woken(_) => f.write_str("BlockAnswer::Woken"),
            Reply::Waiting(_) => f.write_str("BlockAnswer::Waiting"),
        }
    }
}

impl BlockAnswer {
    /// The answer, now.
    pub(crate) fn now(answer: Result<(), LeaseError>) -> BlockAnswer {
        BlockAnswer(Reply::Now(answer))
    }

    /// `Ok(())` when `woken` fires; `BlockCancelled` if its sender is dropped.
    pub(crate) fn woken(woken: oneshot::Receiver<()>) -> BlockAnswer {
        BlockAnswer(Reply::Woken(woken))
    }

    /// What `answer` resolves to, polled only while the asker waits.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn waiting(
        answer: impl Future<Output = Result<(), LeaseError>> + Send + 'static,
    ) -> BlockAnswer {
        BlockAnswer(Reply::Waiting(Box::pin(answer)))
    }
}

impl<A, M> MessageResponse<A, M> for BlockAnswer
where
    A: Actor,
    M: Message<Result = Result<(), LeaseError>>,
{
    fn handle(self, _: &mut A::Context, asker: Option<OneshotSender<M::Result>>) {
        // Sent with `do_send`: nobody to answer. What the answer waited on is dropped
        // here (a lease's sender then counts as abandoned, to be pruned).
        let Some(asker) = asker else {
            return;
        };
        match self.0 {
            Reply::Now(answer) => {
                let _ = asker.send(answer);
            }
            Reply::Woken(woken) => {
                let answer = woken.map(|woken| woken.map_err(|_| LeaseError::BlockCancelled));
                actix_rt::spawn(answer_while_asked(answer, asker));
            }
            Reply::Waiting(answer) => {
                actix_rt::spawn(answer_while_asked(answer, asker));
            }
        }
    }
}

/// Answers `asker` with what `answer` resolves to, and ends at once, dropping
/// `answer`, if the asker goes first.
async fn answer_while_asked(
    answer: impl Future<Output = Result<(), LeaseError>>,
    mut asker: OneshotSender<Result<(), LeaseError>>,
) {
    let answer = {
        let gone = pin!(asker.closed());
        match select(pin!(answer), gone).await {
            Either::Left((answer, _)) => answer,
            Either::Right(_) => return,
        }
    };
    let _ = asker.send(answer);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::BlockUntilLeadershipReleased;

    /// An actor whose blocks wait on a future that never ends and counts its drops.
    struct Blocks {
        dropped: Arc<AtomicUsize>,
    }

    impl Actor for Blocks {
        type Context = Context<Self>;
    }

    struct CountsDrop(Arc<AtomicUsize>);

    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Handler<BlockUntilLeadershipReleased> for Blocks {
        type Result = BlockAnswer;

        fn handle(
            &mut self,
            _: BlockUntilLeadershipReleased,
            _: &mut Context<Self>,
        ) -> BlockAnswer {
            let guard = CountsDrop(Arc::clone(&self.dropped));
            BlockAnswer::waiting(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            })
        }
    }

    #[test]
    fn a_block_answer_is_send() {
        fn send<T: Send>() {}
        send::<BlockAnswer>();
    }

    fn block() -> BlockUntilLeadershipReleased {
        BlockUntilLeadershipReleased {
            service: "svc".into(),
        }
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn what_a_block_waits_on_is_dropped_once_its_asker_is_gone() {
        tokio::time::pause();
        let dropped = Arc::new(AtomicUsize::new(0));
        let blocks = Blocks {
            dropped: Arc::clone(&dropped),
        }
        .start();
        // An asker that gives up (a timeout), and one that sends and forgets.
        let gave_up = tokio::time::timeout(Duration::from_secs(1), blocks.send(block())).await;
        assert!(gave_up.is_err(), "the block waits");
        blocks.do_send(block());
        settle().await;
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "neither goes on waiting");

        // One still asked for keeps waiting.
        let asked = blocks.send(block());
        settle().await;
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        drop(asked);
        settle().await;
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
    }
}
