//! Keep-alive streams kept open between renewals of one lease.
//!
//! etcd-client opens a gRPC stream for each `lease_keep_alive` call and binds it to one
//! lease, so the manager keeps the stream of each remembered holding and sends the
//! holding's next keep-alive on it: no stream set-up on either side per renewal. etcd's
//! server answers the requests of one stream one at a time, in order (receive, renew,
//! send), and a renewal sends only one request on a stream and waits for its answer; a
//! claim that is cancelled midway drops the stream with the rest of what it remembered,
//! so an unread answer is never taken for a later request's. A stream that fails is
//! dropped, and the keep-alive is sent again on a new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};

/// The most keep-alive streams one manager keeps open: beyond that a renewal's stream is
/// closed after its answer (the next one opens another), so the streams on the
/// connection stay within what a server allows.
pub(super) const MAX_STREAMS: usize = 1_024;

/// The keep-alive stream of one lease.
#[derive(Debug)]
pub(super) struct KeepAlive {
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    _slot: Slot,
}

impl KeepAlive {
    /// One keep-alive on this stream: the TTL etcd answered (0 or less: the lease is
    /// gone), or why the stream is broken.
    pub(super) async fn once(&mut self) -> Result<i64, String> {
        self.keeper.keep_alive().await.map_err(|e| e.to_string())?;
        match self.answers.message().await {
            Ok(Some(answer)) if answer.id() == self.keeper.id() => Ok(answer.ttl()),
            Ok(Some(answer)) => Err(format!("an answer for lease {}", answer.id())),
            Ok(None) => Err("stream ended".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Counts the keep-alive streams a manager keeps open.
#[derive(Debug, Clone, Default)]
pub(super) struct Streams {
    open: Arc<AtomicUsize>,
}

impl Streams {
    /// Keeps a new stream if fewer than [`MAX_STREAMS`] are open; otherwise `None` (the
    /// stream closes when dropped).
    pub(super) fn keep(
        &self,
        keeper: LeaseKeeper,
        answers: LeaseKeepAliveStream,
    ) -> Option<KeepAlive> {
        let slot = self.slot()?;
        Some(KeepAlive {
            keeper,
            answers,
            _slot: slot,
        })
    }

    fn slot(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.open.clone()))
    }

    /// How many streams are kept open.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One kept stream's place in the count, given back when the stream is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let streams = Streams::default();
        let slots: Vec<_> = (0..MAX_STREAMS).map(|_| streams.slot().unwrap()).collect();
        assert_eq!(streams.open(), MAX_STREAMS);
        assert!(streams.slot().is_none(), "full");
        drop(slots);
        assert_eq!(streams.open(), 0);
        assert!(streams.slot().is_some());
    }
}
