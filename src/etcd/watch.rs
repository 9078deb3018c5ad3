//! etcd watches: a block waiting for the holder to change, and the one shared
//! upstream watch per service behind every [`WatchLeader`](crate::WatchLeader)
//! receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{EventType, WatchOptions, WatchStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::store::{bounded, Store};
use super::EtcdManager;
use crate::{LeaseError, LeaseInfo};

/// How many consecutive broken watches a block re-establishes before it gives up.
const WATCH_RETRIES: usize = 3;

/// The first and the longest wait of an upstream watch between attempts to reach etcd.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits until the service's holder key is deleted (release, expiry) or names another
/// unit (a hand-over): then the caller claims again. Unbounded while etcd is reachable
/// and the holding lasts; each setup call is bounded.
pub(super) async fn block(store: &Store, service: &str) -> Result<(), LeaseError> {
    let key = store.key(service);
    let mut client = store.client.clone();
    let mut broken = 0;
    loop {
        let resp = bounded(store.timeout, "etcd get", client.get(key.as_str(), None)).await?;
        let Some(holder) = resp.kvs().first().map(|kv| kv.value().to_vec()) else {
            return Ok(());
        };
        let revision = resp.header().map_or(0, |h| h.revision());
        // From the revision after the read: a change in between is replayed. Every
        // event, puts included: a hand-over is a put naming another unit.
        let options = WatchOptions::new().with_start_revision(revision + 1);
        let mut stream = bounded(
            store.timeout,
            "etcd watch",
            client.watch(key.as_str(), Some(options)),
        )
        .await?;
        let why = loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    broken = 0; // the watch works: only consecutive breaks count
                    let moved = resp.events().iter().any(|ev| match ev.event_type() {
                        EventType::Delete => true,
                        EventType::Put => ev.kv().is_some_and(|kv| kv.value() != holder),
                    });
                    if moved {
                        return Ok(());
                    }
                    if resp.canceled() {
                        break format!("watch cancelled: {}", resp.cancel_reason());
                    }
                }
                Ok(None) => break "watch stream ended".to_owned(),
                Err(e) => break format!("watch failed: {e}"),
            }
        };
        broken += 1;
        if broken > WATCH_RETRIES {
            return Err(LeaseError::Failed(format!("etcd {why} (key {key})")));
        }
        warn!(key, reason = %why, "etcd watch broke; re-establishing");
    }
}

/// The publishing side of one service's leader watch, shared by the actor (which
/// subscribes new receivers) and the task that follows etcd.
#[derive(Debug)]
pub(super) struct Upstream {
    sender: watch::Sender<Option<LeaseInfo>>,
    /// Set, under this lock, by the task when it ends because no receiver is left;
    /// subscribing takes the same lock, so no receiver joins a task that is ending.
    closing: Mutex<bool>,
}

impl Upstream {
    pub(super) fn new(current: Option<LeaseInfo>) -> Arc<Upstream> {
        Arc::new(Upstream {
            sender: watch::channel(current).0,
            closing: Mutex::new(false),
        })
    }

    /// A new receiver, unless the task has ended.
    pub(super) fn subscribe(&self) -> Option<watch::Receiver<Option<LeaseInfo>>> {
        let closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        (!*closing).then(|| self.sender.subscribe())
    }

    /// How many receivers share this upstream.
    #[cfg(test)]
    pub(super) fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Whether the task may end: no receiver left. Decided once, under the lock.
    fn close_if_unused(&self) -> bool {
        let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        if self.sender.receiver_count() == 0 {
            *closing = true;
        }
        *closing
    }

    /// Publishes what etcd shows now if the holder or the term changed (an extension
    /// alone is not published). A term lower than one already published is never
    /// published: readers see terms that never decrease.
    fn publish(&self, now: Option<LeaseInfo>) {
        self.sender.send_if_modified(|seen| {
            let changed = match (&*seen, &now) {
                (None, None) => false,
                (Some(a), Some(b)) if b.term < a.term => {
                    debug_assert!(false, "etcd showed an older term: {a:?} then {b:?}");
                    false
                }
                (Some(a), Some(b)) => a.holder != b.holder || a.term != b.term,
                _ => true,
            };
            if changed {
                *seen = now;
            }
            changed
        });
    }
}

/// Tells the manager that a service's upstream watch ended, so it drops the entry.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(super) struct UpstreamEnded {
    pub(super) service: String,
    pub(super) upstream: Arc<Upstream>,
}

/// Follows `service`'s holder key from `revision` on and publishes every change of
/// holder or term to `upstream` until no receiver is left or the manager stops. A
/// broken watch or an unreachable etcd never publishes `None`: the task keeps the last
/// value, reads the keys again once etcd answers, and watches on from that read.
pub(super) async fn follow(
    store: Store,
    service: String,
    upstream: Arc<Upstream>,
    mut revision: i64,
    mut stopped: watch::Receiver<()>,
    manager: Addr<EtcdManager>,
) {
    let key = store.key(&service);
    let mut client = store.client.clone();
    let mut wait = RETRY_FIRST;
    let mut stream: Option<WatchStream> = None;
    'follow: loop {
        if stream.is_none() {
            // Start (or resume) watching after the last revision seen.
            let options = WatchOptions::new().with_start_revision(revision + 1);
            match bounded(
                store.timeout,
                "etcd watch",
                client.watch(key.as_str(), Some(options)),
            )
            .await
            {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    warn!(key, error = %e, "leader watch: cannot watch etcd; retrying");
                    if !pause(&mut wait, &upstream, &mut stopped).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let watching = stream.as_mut().expect("a watch was just established");
        let changed = tokio::select! {
            _ = upstream.sender.closed() => {
                if upstream.close_if_unused() {
                    break;
                }
                continue;
            }
            _ = stopped.changed() => break,
            message = watching.message() => message,
        };
        let resync = match changed {
            Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                // Compacted past our revision: what happened in between is lost; the
                // read below finds where things stand.
                debug!(key, reason = resp.cancel_reason(), "leader watch cancelled");
                true
            }
            Ok(Some(resp)) => {
                wait = RETRY_FIRST;
                if resp.events().is_empty() {
                    continue;
                }
                false
            }
            Ok(None) | Err(_) => {
                warn!(
                    key,
                    "leader watch broke; resuming from the last revision seen"
                );
                // Not at once: a server that accepts watches and drops them must not
                // be hammered.
                if !pause(&mut wait, &upstream, &mut stopped).await {
                    break;
                }
                true
            }
        };
        if resync {
            stream = None;
        }
        // Read both keys (and the lease's expiry) at once rather than piecing the state
        // together from events: the term lives in the other key.
        loop {
            match store.snapshot(&service).await {
                Ok(found) => match store.info(&found).await {
                    Ok(info) => {
                        wait = RETRY_FIRST;
                        revision = revision.max(found.revision);
                        upstream.publish(info);
                        break;
                    }
                    Err(e) => debug!(key, error = %e, "leader watch: cannot read the lease"),
                },
                Err(e) => debug!(key, error = %e, "leader watch: cannot read the keys"),
            }
            if !pause(&mut wait, &upstream, &mut stopped).await {
                break 'follow;
            }
        }
    }
    manager.do_send(UpstreamEnded { service, upstream });
}

/// Waits before the next attempt to reach etcd (doubling, capped); `false` when the task
/// should end meanwhile (no receiver left, or the manager stopped).
async fn pause(
    wait: &mut Duration,
    upstream: &Upstream,
    stopped: &mut watch::Receiver<()>,
) -> bool {
    let sleep = tokio::time::sleep(*wait);
    *wait = (*wait * 2).min(RETRY_MAX);
    tokio::select! {
        () = sleep => true,
        _ = upstream.sender.closed() => !upstream.close_if_unused(),
        _ = stopped.changed() => false,
    }
}
