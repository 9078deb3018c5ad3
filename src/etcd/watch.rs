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

#[cfg(test)]
mod tests {
    use tokio::time::{pause as pause_clock, Instant};

    use super::*;

    fn info(holder: &str, term: u64, expires_in: Duration) -> Option<LeaseInfo> {
        Some(LeaseInfo {
            holder: holder.into(),
            expires: Instant::now() + expires_in,
            term,
        })
    }

    /// Lets spawned tasks run without moving the paused clock.
    async fn run_tasks() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn a_pause_waits_its_time_then_doubles_it_up_to_the_cap() {
        pause_clock();
        let upstream = Upstream::new(None);
        let _receiver = upstream.subscribe().expect("open");
        let (_stop, stopped) = watch::channel(());
        let mut wait = RETRY_FIRST;
        let mut expected = RETRY_FIRST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            let mut stopped = stopped.clone();
            assert!(pause(&mut wait, &upstream, &mut stopped).await, "not ended");
            waits.push(started.elapsed());
            expected = (expected * 2).min(RETRY_MAX);
            assert_eq!(wait, expected, "the next wait");
        }
        // tokio's timer rounds a deadline up to its next 1 ms tick.
        let planned = [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000].map(Duration::from_millis);
        for (waited, planned) in waits.iter().zip(planned) {
            assert!(
                (planned..=planned + Duration::from_millis(1)).contains(waited),
                "waited {waited:?}, planned {planned:?}"
            );
        }
    }

    #[actix_rt::test]
    async fn a_pause_ends_at_once_when_the_manager_stops() {
        pause_clock();
        let upstream = Upstream::new(None);
        let _receiver = upstream.subscribe().expect("open");
        let (stop, mut stopped) = watch::channel(());
        let task = tokio::spawn(async move {
            let mut wait = RETRY_MAX;
            pause(&mut wait, &upstream, &mut stopped).await
        });
        run_tasks().await;
        assert!(!task.is_finished(), "waiting");
        stop.send(()).expect("the task listens");
        run_tasks().await;
        assert!(task.is_finished(), "ended without the clock moving");
        assert!(!task.await.expect("no panic"), "told to end");
    }

    #[actix_rt::test]
    async fn a_pause_ends_when_the_last_receiver_goes_and_no_one_joins_after() {
        pause_clock();
        let upstream = Upstream::new(None);
        let first = upstream.subscribe().expect("open");
        let second = upstream.subscribe().expect("open");
        let (_stop, mut stopped) = watch::channel(());
        let shared = upstream.clone();
        let task = tokio::spawn(async move {
            let mut wait = RETRY_MAX;
            pause(&mut wait, &shared, &mut stopped).await
        });
        drop(first);
        run_tasks().await;
        assert!(!task.is_finished(), "one receiver is left");
        drop(second);
        run_tasks().await;
        assert!(task.is_finished(), "ended without the clock moving");
        assert!(!task.await.expect("no panic"), "nobody listens");
        assert!(
            upstream.subscribe().is_none(),
            "an ended upstream takes no one"
        );
    }

    #[actix_rt::test]
    async fn changes_of_holder_or_term_are_published_renewals_are_not() {
        pause_clock();
        let upstream = Upstream::new(None);
        let mut receiver = upstream.subscribe().expect("open");
        upstream.publish(None);
        assert!(!receiver.has_changed().unwrap(), "None again is no change");

        upstream.publish(info("web/0", 7, Duration::from_secs(4)));
        assert!(receiver.has_changed().unwrap(), "a holder");
        assert_eq!(receiver.borrow_and_update().as_ref().unwrap().term, 7);

        upstream.publish(info("web/0", 7, Duration::from_secs(9)));
        assert!(
            !receiver.has_changed().unwrap(),
            "an extension is not published"
        );

        upstream.publish(info("web/1", 9, Duration::from_secs(4)));
        assert!(receiver.has_changed().unwrap(), "a hand-over");
        let seen = receiver.borrow_and_update().clone().unwrap();
        assert_eq!((seen.holder.as_str(), seen.term), ("web/1", 9));

        upstream.publish(info("web/1", 12, Duration::from_secs(4)));
        assert!(receiver.has_changed().unwrap(), "the same unit, a new term");
        assert_eq!(receiver.borrow_and_update().as_ref().unwrap().term, 12);

        upstream.publish(None);
        assert!(receiver.has_changed().unwrap(), "released or expired");
        assert!(receiver.borrow_and_update().is_none());
    }
}
