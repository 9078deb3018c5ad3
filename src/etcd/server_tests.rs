//! The manager's own bookkeeping against a real etcd: what it keeps per service, and
//! when it lets go. `#[ignore]`d without a server: run through
//! `.ci/with-etcd cargo test --all-features --lib -- --include-ignored`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use super::{EtcdConfig, EtcdManager};
use crate::{ClaimLeadership, HandOverLeadership, ReleaseLeadership, WatchLeader};

/// Test-only: how many per-service entries the manager keeps, and how many receivers
/// share `service`'s leader watch (0 without one).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
struct Inspect(&'static str);

impl Handler<Inspect> for EtcdManager {
    type Result = MessageResult<Inspect>;

    fn handle(&mut self, msg: Inspect, _: &mut Context<Self>) -> Self::Result {
        let receivers = self
            .services
            .map
            .get(msg.0)
            .and_then(|e| e.watch.as_ref())
            .map_or(0, |w| w.receivers());
        MessageResult((self.services.len(), receivers))
    }
}

/// Test-only: how many keep-alive streams the manager keeps open.
#[derive(Message)]
#[rtype(result = "usize")]
struct OpenStreams;

impl Handler<OpenStreams> for EtcdManager {
    type Result = usize;

    fn handle(&mut self, _: OpenStreams, _: &mut Context<Self>) -> usize {
        self.store.streams.open()
    }
}

/// A key prefix no other test (or earlier run) uses.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("/leadership-test/{test}-{}-{nanos}", std::process::id())
}

async fn manager(test: &str) -> Addr<EtcdManager> {
    manager_at(test, unique_prefix(test)).await
}

/// A manager on `prefix`, which another manager may share.
async fn manager_at(test: &str, prefix: String) -> Addr<EtcdManager> {
    let endpoints = std::env::var("LEADERSHIP_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| panic!("{test}: LEADERSHIP_ETCD_ENDPOINTS is unset"));
    let config = EtcdConfig::new(endpoints.split(',').map(str::to_owned).collect(), prefix);
    EtcdManager::connect(config).await.expect("connect").start()
}

fn claim(service: &str, unit: &str) -> ClaimLeadership {
    ClaimLeadership {
        service: service.into(),
        unit: unit.into(),
        duration: Duration::from_secs(10),
    }
}

/// Polls the manager until `cond` holds on what it keeps, for at most 3 s.
async fn until(m: &Addr<EtcdManager>, what: &str, cond: impl Fn((usize, usize)) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let seen = m.send(Inspect("web")).await.unwrap();
        if cond(seen) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --lib -- --include-ignored"]
async fn idle_service_entries_are_evicted() {
    let m = manager("evict").await;
    for n in 0..20 {
        let service = format!("s{n}");
        let unit = format!("s{n}/0");
        m.send(claim(&service, &unit)).await.unwrap().unwrap();
        if n % 2 == 0 {
            let hand_over = HandOverLeadership {
                service: service.clone(),
                unit: unit.clone(),
                successor: format!("s{n}/1"),
            };
            m.send(hand_over).await.unwrap().unwrap();
        } else {
            let release = ReleaseLeadership { service, unit };
            m.send(release).await.unwrap().unwrap();
        }
    }
    // Denials and invalid requests leave nothing either.
    m.send(claim("s0", "s0/2")).await.unwrap().unwrap_err();
    m.send(claim("s0", "s1/2")).await.unwrap().unwrap_err();
    assert_eq!(m.send(Inspect("web")).await.unwrap(), (0, 0));

    // A holding the manager remembers keeps its entry (for the next renewal) until it
    // is released (or its lease is over: see `services`).
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(m.send(Inspect("web")).await.unwrap(), (1, 0));
    let release = ReleaseLeadership {
        service: "web".into(),
        unit: "web/0".into(),
    };
    m.send(release).await.unwrap().unwrap();
    assert_eq!(m.send(Inspect("web")).await.unwrap(), (0, 0));
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --lib -- --include-ignored"]
async fn one_upstream_watch_per_service_dropped_with_its_last_receiver() {
    let m = manager("upstream").await;
    let watch = || {
        m.send(WatchLeader {
            service: "web".into(),
        })
    };
    // Asked at once, before any upstream exists: still one, shared.
    let mut receivers: Vec<_> = futures::future::join_all((0..5).map(|_| watch()))
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("a receiver"))
        .collect();
    assert_eq!(m.send(Inspect("web")).await.unwrap(), (1, 5));

    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    for rx in &mut receivers {
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("every receiver sees the grant")
            .unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().holder, "web/0");
    }

    receivers.truncate(1);
    until(&m, "four receivers gone", |seen| seen == (1, 1)).await;
    drop(receivers);
    // The entry stays: it remembers web/0's live holding.
    until(&m, "the upstream to end with its last receiver", |seen| {
        seen == (1, 0)
    })
    .await;

    // A new watcher starts a new upstream, holding the current value.
    let rx = watch().await.unwrap().unwrap();
    assert_eq!(rx.borrow().as_ref().unwrap().holder, "web/0");
    assert_eq!(m.send(Inspect("web")).await.unwrap(), (1, 1));
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --lib -- --include-ignored"]
async fn a_keep_alive_stream_lives_as_long_as_its_remembered_holding() {
    let m = manager("streams").await;
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(m.send(OpenStreams).await.unwrap(), 0, "a grant needs none");
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(m.send(OpenStreams).await.unwrap(), 1, "the renewal's, kept");
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(m.send(OpenStreams).await.unwrap(), 1, "reused");
    // Another unit's claim is denied and leaves the holding remembered.
    m.send(claim("web", "web/1")).await.unwrap().unwrap_err();
    assert_eq!(m.send(OpenStreams).await.unwrap(), 1);
    let release = ReleaseLeadership {
        service: "web".into(),
        unit: "web/0".into(),
    };
    m.send(release).await.unwrap().unwrap();
    assert_eq!(
        m.send(OpenStreams).await.unwrap(),
        0,
        "closed with the holding"
    );
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --lib -- --include-ignored"]
async fn a_keep_alive_of_the_full_path_keeps_its_stream_for_the_next_renewal() {
    let prefix = unique_prefix("full-path-stream");
    let granting = manager_at("full-path-stream", prefix.clone()).await;
    granting.send(claim("web", "web/0")).await.unwrap().unwrap();
    // Another manager remembers nothing of web/0's holding: its claim takes the full
    // path, finds the 10 s lease below 10 s (etcd rounds down) and keeps it alive.
    let m = manager_at("full-path-stream", prefix).await;
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(
        m.send(OpenStreams).await.unwrap(),
        1,
        "the full path's keep-alive stream, kept"
    );
    m.send(claim("web", "web/0")).await.unwrap().unwrap();
    assert_eq!(
        m.send(OpenStreams).await.unwrap(),
        1,
        "the renewal reused it"
    );
}
