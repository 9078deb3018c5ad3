//! The manager's message handlers: validation, bounds and per-service serialisation
//! here; the etcd requests in `store` and `watch`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::TxnResponse;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::fenced::{check_term, FencedTxn, FencedTxnError};
use super::services::Serialised;
use super::watch::{block, follow, Upstream, UpstreamEnded};
use super::{ttl_secs, EtcdManager};
use crate::block_answer::BlockAnswer;
use crate::names::validate_service;
use crate::protocol::{check_claim, check_hand_over, check_service, check_unit};
use crate::{
    BlockUntilLeadershipReleased, ClaimLeadership, Grant, HandOverLeadership, Leader, LeaseError,
    LeaseInfo, ReleaseLeadership, StopManager, WatchLeader,
};

type LeaderReceiver = tokio::sync::watch::Receiver<Option<LeaseInfo>>;

impl EtcdManager {
    /// Runs `op` (a claim, a release or a hand-over) alone among this manager's requests
    /// for `service`, bounded as a whole by `bound` (a timeout becomes `Failed`), and
    /// drops the service's entry afterwards if nothing else uses it.
    ///
    /// A `ResponseActFuture` only for that last step: the request itself never touches
    /// the actor, which keeps serving while etcd answers.
    fn serialised<T: 'static, F: Future<Output = Result<T, LeaseError>> + 'static>(
        &mut self,
        service: &str,
        bound: Duration,
        what: &'static str,
        op: impl FnOnce(Serialised) -> F + 'static,
    ) -> ResponseActFuture<Self, Result<T, LeaseError>> {
        let lock = self.services.lock(service);
        let service = service.to_owned();
        let run = async move { op(lock.lock_owned().await).await };
        let bounded = async move {
            tokio::time::timeout(bound, run).await.unwrap_or_else(|_| {
                Err(LeaseError::Failed(format!(
                    "etcd {what} timed out after {bound:?}"
                )))
            })
        };
        Box::pin(bounded.into_actor(self).map(move |result, act, _| {
            act.services.settle(&service);
            result
        }))
    }
}

/// Stops the manager at once: pending blocks answer [`LeaseError::BlockCancelled`],
/// leader watches end (their receivers see the sender gone), later messages fail with a
/// mailbox error. Leases stay in etcd until they expire or are released by another
/// manager. (Dropping the last `Addr` stops it too.)
impl Handler<StopManager> for EtcdManager {
    type Result = ();

    fn handle(&mut self, _: StopManager, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<ClaimLeadership> for EtcdManager {
    type Result = ResponseActFuture<Self, Result<Grant, LeaseError>>;

    fn handle(&mut self, msg: ClaimLeadership, _: &mut Context<Self>) -> Self::Result {
        let checked = check_claim(&msg, Instant::now()).and_then(|_| ttl_secs(msg.duration));
        let ttl = match checked {
            Ok(ttl) => ttl,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let bound = self.store.timeout.min(msg.duration / 4);
        let store = self.store.clone();
        let service = msg.service.clone();
        let claim = move |mut held: Serialised| async move {
            let started = Instant::now();
            let result = store.claim(&msg, ttl, &mut held).await;
            match &result {
                Ok(grant) => debug!(service = %msg.service, unit = %msg.unit, term = grant.term,
                                 elapsed = ?started.elapsed(), "claim granted"),
                Err(LeaseError::ClaimDenied) => debug!(service = %msg.service,
                                                       unit = %msg.unit, "claim denied"),
                Err(e) => warn!(service = %msg.service, unit = %msg.unit, error = %e,
                                "claim failed"),
            }
            result
        };
        self.serialised(&service, bound, "claim", claim)
    }
}

/// A block waits on an etcd watch inside a [`BlockAnswer`]: it answers
/// `BlockCancelled` when the actor stops, and stops watching as soon as its asker is
/// gone (a block sent with `do_send` never watches).
impl Handler<BlockUntilLeadershipReleased> for EtcdManager {
    type Result = BlockAnswer;

    fn handle(&mut self, msg: BlockUntilLeadershipReleased, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_service(&msg.service) {
            return BlockAnswer::now(Err(e));
        }
        let store = self.store.clone();
        let mut stopped = self.stopped.clone();
        BlockAnswer::waiting(async move {
            let block = block(&store, &msg.service);
            let cancelled = async move {
                // Resolves (with an error) once the sender is dropped, i.e. on stop.
                while stopped.changed().await.is_ok() {}
            };
            futures::pin_mut!(block, cancelled);
            match futures::future::select(block, cancelled).await {
                futures::future::Either::Left((result, _)) => result,
                futures::future::Either::Right(((), _)) => Err(LeaseError::BlockCancelled),
            }
        })
    }
}

/// One guarded transaction: see the [module documentation](super).
impl Handler<ReleaseLeadership> for EtcdManager {
    type Result = ResponseActFuture<Self, Result<(), LeaseError>>;

    fn handle(&mut self, msg: ReleaseLeadership, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_unit(&msg.service, &msg.unit) {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        let bound = store.timeout;
        let service = msg.service.clone();
        let release = move |mut held: Serialised| async move {
            // Whatever the answer, the holding changed or was never ours.
            *held = None;
            store.release(&msg.service, &msg.unit).await
        };
        self.serialised(&service, bound, "release", release)
    }
}

/// One guarded transaction: see the [module documentation](super). Invalid input is
/// checked before anything is sent, so it changes nothing.
impl Handler<HandOverLeadership> for EtcdManager {
    type Result = ResponseActFuture<Self, Result<(), LeaseError>>;

    fn handle(&mut self, msg: HandOverLeadership, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_hand_over(&msg) {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        let bound = store.timeout;
        let service = msg.service.clone();
        let hand_over = move |mut held: Serialised| async move {
            // Whatever the answer, the holding changed or was never ours.
            *held = None;
            store
                .hand_over(&msg.service, &msg.unit, &msg.successor)
                .await
        };
        self.serialised(&service, bound, "hand-over", hand_over)
    }
}

/// `None` when the service has no live lease, when the request is malformed, and when
/// etcd cannot be asked (logged as a warning).
impl Handler<Leader> for EtcdManager {
    type Result = ResponseFuture<Option<LeaseInfo>>;

    fn handle(&mut self, msg: Leader, _: &mut Context<Self>) -> Self::Result {
        if check_service(&msg.service).is_err() {
            return Box::pin(std::future::ready(None));
        }
        let store = self.store.clone();
        Box::pin(async move {
            match store.leader(&msg.service).await {
                Ok(info) => info,
                Err(e) => {
                    warn!(service = %msg.service, error = %e, "cannot read the leader from etcd");
                    None
                }
            }
        })
    }
}

/// A receiver of the service's shared watch: at once when one runs; otherwise after one
/// read of the keys (so the receiver holds the current value), which starts the watch.
/// `Failed` when etcd cannot be read for that first value.
impl Handler<WatchLeader> for EtcdManager {
    type Result = ResponseActFuture<Self, Result<LeaderReceiver, LeaseError>>;

    fn handle(&mut self, msg: WatchLeader, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_service(&msg.service) {
            return Box::pin(fut::ready(Err(e)));
        }
        if let Some(receiver) = self.subscribe(&msg.service) {
            return Box::pin(fut::ready(Ok(receiver)));
        }
        let store = self.store.clone();
        let service = msg.service;
        let read = async move {
            let found = store.snapshot(&service).await?;
            let info = store.info(&found).await?;
            Ok::<_, LeaseError>((service, info, found.revision))
        };
        Box::pin(read.into_actor(self).map(|read, act, ctx| {
            let (service, info, revision) = read?;
            // Another request may have started the watch while this one read.
            if let Some(receiver) = act.subscribe(&service) {
                return Ok(receiver);
            }
            let upstream = Upstream::new(info);
            let receiver = upstream.subscribe().expect("a new upstream is not closing");
            act.services.entry(&service).watch = Some(upstream.clone());
            actix_rt::spawn(follow(
                act.store.clone(),
                service,
                upstream,
                revision,
                act.stopped.clone(),
                ctx.address(),
            ));
            Ok(receiver)
        }))
    }
}

impl EtcdManager {
    /// A receiver of the service's running watch, if one runs.
    fn subscribe(&self, service: &str) -> Option<LeaderReceiver> {
        self.services.map.get(service)?.watch.as_ref()?.subscribe()
    }
}

/// A service's watch ended (no receiver left, or the manager stopping): forget it.
impl Handler<UpstreamEnded> for EtcdManager {
    type Result = ();

    fn handle(&mut self, msg: UpstreamEnded, _: &mut Context<Self>) {
        if let Some(entry) = self.services.map.get_mut(&msg.service) {
            if entry
                .watch
                .as_ref()
                .is_some_and(|w| Arc::ptr_eq(w, &msg.upstream))
            {
                entry.watch = None;
            }
        }
        self.services.settle(&msg.service);
    }
}

/// Validated here; the transaction itself runs as a plain future, bounded by the
/// request timeout. Not serialised with claims: etcd orders it against them.
impl Handler<FencedTxn> for EtcdManager {
    type Result = ResponseFuture<Result<TxnResponse, FencedTxnError>>;

    fn handle(&mut self, msg: FencedTxn, _: &mut Context<Self>) -> Self::Result {
        let checked = validate_service(&msg.service)
            .map_err(|e| FencedTxnError::Invalid(e.to_string()))
            .and_then(|()| check_term(msg.term));
        let term = match checked {
            Ok(term) => term,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let store = self.store.clone();
        Box::pin(async move { store.fenced(&msg.service, term, msg.ops).await })
    }
}
