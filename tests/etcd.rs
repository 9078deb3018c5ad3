//! The etcd-backed manager against a real etcd server.
//!
//! Every test is `#[ignore]`d, so a plain `cargo test --all-features` reports them
//! ignored, never passed: run them with `.ci/with-etcd cargo test --all-features --test
//! etcd -- --include-ignored`, where a missing `LEADERSHIP_ETCD_ENDPOINTS` is a
//! failure. Each test uses its own key prefix, so they run in parallel
//! on the shared server; tests that pause etcd (SIGSTOP) start a private etcd instead.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::time::Duration;

use actix::prelude::*;
use etcd_support::process::EtcdProcess;
use etcd_support::wait::{poll_until, within};
use etcd_support::{shared_endpoints, unique_prefix};
use leadership::etcd::etcd_client::{self, TxnOp};
use leadership::etcd::{EtcdConfig, EtcdManager, FencedTxn, FencedTxnError};
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, HandOverLeadership, Leader, LeaseError,
    LeaseInfo, ReleaseLeadership, StopManager, Tracker, UnitName, WatchLeader,
};
use tokio::time::Instant;

const SERVICE: &str = "web";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn claim(unit: &str, duration: Duration) -> ClaimLeadership {
    ClaimLeadership {
        service: SERVICE.into(),
        unit: unit.into(),
        duration,
    }
}

fn release(unit: &str) -> ReleaseLeadership {
    ReleaseLeadership {
        service: SERVICE.into(),
        unit: unit.into(),
    }
}

fn hand_over(unit: &str, successor: &str) -> HandOverLeadership {
    HandOverLeadership {
        service: SERVICE.into(),
        unit: unit.into(),
        successor: successor.into(),
    }
}

fn block() -> BlockUntilLeadershipReleased {
    BlockUntilLeadershipReleased {
        service: SERVICE.into(),
    }
}

fn leader() -> Leader {
    Leader {
        service: SERVICE.into(),
    }
}

async fn connect(endpoints: &[String], prefix: &str) -> Addr<EtcdManager> {
    let config = EtcdConfig::new(endpoints.to_vec(), prefix);
    EtcdManager::connect(config)
        .await
        .expect("connect to etcd")
        .start()
}

/// Asks `manager` to grant `unit` a lease of `duration`: `Ok` or why not (the grant's
/// term is left out).
async fn ask_claim(
    manager: &Addr<EtcdManager>,
    unit: &str,
    duration: Duration,
) -> Result<(), LeaseError> {
    manager
        .send(claim(unit, duration))
        .await
        .expect("the manager runs")
        .map(|_| ())
}

async fn leader_of(manager: &Addr<EtcdManager>) -> Option<LeaseInfo> {
    manager.send(leader()).await.expect("manager alive")
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).expect("valid unit name")
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn grant_deny_extend_release_and_terms() {
    let endpoints = shared_endpoints("grant_deny_extend_release_and_terms");
    let m = connect(&endpoints, &unique_prefix("grant")).await;

    assert_eq!(leader_of(&m).await, None, "nothing held yet");
    assert_eq!(ask_claim(&m, "web/0", secs(3.0)).await, Ok(()));
    let first = leader_of(&m).await.expect("web/0 leads");
    assert_eq!(first.holder, "web/0");
    let left = first.expires - Instant::now();
    assert!(
        left > secs(1.5) && left <= secs(3.0),
        "3 s lease, {left:?} left"
    );

    assert_eq!(
        m.send(claim("web/1", secs(3.0))).await.unwrap(),
        Err(LeaseError::ClaimDenied)
    );

    // Extending beyond the granted TTL moves the key to a longer lease: same term.
    assert_eq!(ask_claim(&m, "web/0", secs(10.0)).await, Ok(()));
    let extended = leader_of(&m).await.expect("still held");
    assert_eq!(extended.holder, "web/0");
    assert_eq!(extended.term, first.term, "an extension keeps the term");
    assert!(
        extended.expires - Instant::now() > secs(8.0),
        "{extended:?}"
    );

    // A shorter claim never shortens the lease.
    assert_eq!(ask_claim(&m, "web/0", secs(2.0)).await, Ok(()));
    let kept = leader_of(&m).await.expect("still held");
    assert_eq!(kept.term, first.term);
    assert!(kept.expires - Instant::now() > secs(7.0), "{kept:?}");

    assert_eq!(
        m.send(release("web/1")).await.unwrap(),
        Err(LeaseError::NotHeld {
            unit: "web/1".into()
        })
    );
    assert_eq!(m.send(release("web/0")).await.unwrap(), Ok(()));
    assert_eq!(leader_of(&m).await, None, "released");
    assert_eq!(
        m.send(release("web/0")).await.unwrap(),
        Err(LeaseError::NotHeld {
            unit: "web/0".into()
        }),
        "releasing twice"
    );

    assert_eq!(ask_claim(&m, "web/1", secs(3.0)).await, Ok(()));
    let second = leader_of(&m).await.expect("web/1 leads");
    assert_eq!(second.holder, "web/1");
    assert!(second.term > first.term, "a new holder has a greater term");

    // The same unit claiming again after a release starts a new term too.
    assert_eq!(m.send(release("web/1")).await.unwrap(), Ok(()));
    assert_eq!(ask_claim(&m, "web/1", secs(3.0)).await, Ok(()));
    assert!(leader_of(&m).await.unwrap().term > second.term);
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn renewal_refreshes_the_lease_and_keeps_the_term() {
    let endpoints = shared_endpoints("renewal_refreshes_the_lease_and_keeps_the_term");
    let m = connect(&endpoints, &unique_prefix("renew")).await;
    assert_eq!(ask_claim(&m, "web/0", secs(3.0)).await, Ok(()));
    let first = leader_of(&m).await.expect("held");
    // Let the lease run down by a second or so, then renew it (a keep-alive).
    poll_until(secs(5.0), "the lease to run down", || async {
        leader_of(&m).await.expect("held").expires - Instant::now() < secs(2.0)
    })
    .await;
    assert_eq!(ask_claim(&m, "web/0", secs(3.0)).await, Ok(()));
    let renewed = leader_of(&m).await.expect("held");
    assert_eq!(renewed.term, first.term);
    // `expires` rounds etcd's remaining TTL down to whole seconds: ~2 s after a refresh
    // of a 3 s lease (it was under 2 s, so ~1 s, before).
    assert!(renewed.expires - Instant::now() > secs(1.5), "{renewed:?}");
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn bad_input_is_invalid_and_the_manager_keeps_serving() {
    let endpoints = shared_endpoints("bad_input_is_invalid_and_the_manager_keeps_serving");
    let m = connect(&endpoints, &unique_prefix("invalid")).await;
    let bad_claims = [
        claim("web/0", Duration::ZERO),
        claim("web/0", Duration::MAX),
        claim("web/0", Duration::from_secs(10_000_000_000)),
        claim("db/0", secs(3.0)),
        claim("web/x", secs(3.0)),
        claim("web/007", secs(3.0)),
        claim("", secs(3.0)),
        ClaimLeadership {
            service: "Web".into(),
            unit: "Web/0".into(),
            duration: secs(3.0),
        },
    ];
    for bad in bad_claims {
        let answer = m.send(bad.clone()).await.unwrap();
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{bad:?}: {answer:?}"
        );
    }
    for bad in [release("web"), release("db/0"), release("web/-1")] {
        let answer = m.send(bad.clone()).await.unwrap();
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{bad:?}: {answer:?}"
        );
    }
    let answer = m
        .send(BlockUntilLeadershipReleased {
            service: "no_such service".into(),
        })
        .await
        .unwrap();
    assert!(matches!(answer, Err(LeaseError::Invalid(_))), "{answer:?}");
    let none = m
        .send(Leader {
            service: "1bad".into(),
        })
        .await
        .unwrap();
    assert_eq!(none, None);
    for bad in [
        hand_over("web/0", "web/0"),
        hand_over("web/0", "db/1"),
        hand_over("web/0", "web/x"),
        hand_over("db/0", "web/1"),
    ] {
        let answer = m.send(bad.clone()).await.unwrap();
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{bad:?}: {answer:?}"
        );
    }
    for service in ["", "Web", "web/0"] {
        let answer = m
            .send(WatchLeader {
                service: service.into(),
            })
            .await
            .unwrap();
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{service:?}: {answer:?}"
        );
    }
    for (service, term) in [("web", 0), ("Web", 5), ("", 5), ("web", u64::MAX)] {
        let answer = m.send(FencedTxn::new(service, term, vec![])).await.unwrap();
        assert!(
            matches!(answer, Err(FencedTxnError::Invalid(_))),
            "{service:?} {term}: {answer:?}"
        );
    }

    // Below etcd's smallest lease: Invalid, naming the floor.
    for short in [secs(1.0), secs(1.999), Duration::from_nanos(1)] {
        match m.send(claim("web/0", short)).await.unwrap() {
            Err(LeaseError::Invalid(why)) => assert!(why.contains("floor of 2s"), "{why}"),
            other => panic!("{short:?}: {other:?}"),
        }
    }

    assert_eq!(
        ask_claim(&m, "web/0", EtcdManager::MIN_CLAIM_DURATION).await,
        Ok(())
    );
    assert_eq!(leader_of(&m).await.unwrap().holder, "web/0");
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn concurrent_claims_through_one_manager() {
    let endpoints = shared_endpoints("concurrent_claims_through_one_manager");
    let m = connect(&endpoints, &unique_prefix("concurrent")).await;
    // Two units at once: exactly one wins.
    let (a, b) = futures::join!(
        m.send(claim("web/0", secs(3.0))),
        m.send(claim("web/1", secs(3.0)))
    );
    let answers = [a.unwrap(), b.unwrap()];
    assert_eq!(
        answers.iter().filter(|a| a.is_ok()).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.contains(&Err(LeaseError::ClaimDenied)),
        "{answers:?}"
    );
    let winner = if answers[0].is_ok() { "web/0" } else { "web/1" };
    let term = leader_of(&m).await.unwrap().term;

    // The winner's long and short extensions at once: whatever the order, the lease is
    // never shortened and the term stays.
    let (long, short) = futures::join!(
        m.send(claim(winner, secs(12.0))),
        m.send(claim(winner, secs(2.0)))
    );
    assert!(long.unwrap().is_ok() && short.unwrap().is_ok());
    let info = leader_of(&m).await.unwrap();
    assert_eq!((info.holder.as_str(), info.term), (winner, term));
    assert!(info.expires - Instant::now() > secs(10.0), "{info:?}");
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn block_answers_at_once_when_free_and_wakes_on_release() {
    let endpoints = shared_endpoints("block_answers_at_once_when_free_and_wakes_on_release");
    let m = connect(&endpoints, &unique_prefix("block-release")).await;
    let answer = within(secs(1.0), "block on a free service", m.send(block())).await;
    assert_eq!(answer.unwrap(), Ok(()));

    assert_eq!(ask_claim(&m, "web/0", secs(30.0)).await, Ok(()));
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(
        tokio::time::timeout(secs(0.5), &mut pending).await.is_err(),
        "a block stays pending while the lease is live"
    );
    let released = Instant::now();
    assert_eq!(m.send(release("web/0")).await.unwrap(), Ok(()));
    let answer = within(secs(2.0), "the block to wake on release", pending).await;
    assert_eq!(answer.unwrap(), Ok(()));
    println!("block woke {:?} after the release", released.elapsed());
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn block_wakes_on_expiry() {
    let endpoints = shared_endpoints("block_wakes_on_expiry");
    let m = connect(&endpoints, &unique_prefix("block-expiry")).await;
    let claimed = Instant::now();
    assert_eq!(ask_claim(&m, "web/0", secs(2.0)).await, Ok(()));
    // etcd reaps expired leases every ~0.5 s.
    let answer = within(secs(5.0), "the block to wake on expiry", m.send(block())).await;
    assert_eq!(answer.unwrap(), Ok(()));
    let woke = claimed.elapsed();
    println!("block woke {woke:?} after a 2 s claim (etcd's reaping included)");
    assert!(woke >= secs(1.9), "never before the lease ends: {woke:?}");
    assert_eq!(leader_of(&m).await, None);
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn pending_blocks_are_cancelled_when_the_manager_stops() {
    let endpoints = shared_endpoints("pending_blocks_are_cancelled_when_the_manager_stops");
    let m = connect(&endpoints, &unique_prefix("block-cancel")).await;
    assert_eq!(ask_claim(&m, "web/0", secs(30.0)).await, Ok(()));
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(tokio::time::timeout(secs(0.3), &mut pending).await.is_err());
    drop(m); // the last address: the manager stops
    let answer = within(secs(2.0), "the block to be cancelled", pending).await;
    assert!(
        matches!(answer, Ok(Err(LeaseError::BlockCancelled)) | Err(_)),
        "{answer:?}"
    );

    // Stopped by StopManager, as the in-memory manager can be.
    let m = connect(&endpoints, &unique_prefix("block-stop")).await;
    assert_eq!(ask_claim(&m, "web/0", secs(30.0)).await, Ok(()));
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(tokio::time::timeout(secs(0.3), &mut pending).await.is_err());
    m.do_send(StopManager);
    let answer = within(secs(2.0), "the block to be cancelled", pending).await;
    assert_eq!(answer.unwrap(), Err(LeaseError::BlockCancelled));
    assert!(
        m.send(leader()).await.is_err(),
        "a stopped manager takes no more messages"
    );
}

/// How many watchers `endpoint`'s etcd serves now (its `/metrics` gauge).
async fn watchers(endpoint: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to etcd's metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .expect("ask for metrics");
    let mut page = String::new();
    stream
        .read_to_string(&mut page)
        .await
        .expect("read the metrics");
    page.lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .expect("etcd_debugging_mvcc_watcher_total in etcd's metrics")
}

/// A block whose asker has gone (a timeout, a stopped tracker) or never was (`do_send`)
/// does not go on watching etcd; one still asked for does, and is answered.
#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn blocks_nobody_waits_for_stop_watching() {
    // A private server, so no other test's watchers move the count.
    let etcd = EtcdProcess::start("abandoned-blocks");
    let m = connect(std::slice::from_ref(&etcd.endpoint), "/abandoned").await;
    assert_eq!(ask_claim(&m, "web/0", secs(30.0)).await, Ok(()));
    let before = watchers(&etcd.endpoint).await;
    let given_up: Vec<_> = (0..10).map(|_| m.send(block())).collect();
    poll_until(secs(5.0), "ten blocks watching", || async {
        watchers(&etcd.endpoint).await == before + 10
    })
    .await;
    drop(given_up);
    for _ in 0..10 {
        m.do_send(block());
    }
    poll_until(secs(5.0), "the abandoned blocks' watchers gone", || async {
        watchers(&etcd.endpoint).await == before
    })
    .await;

    let kept = m.send(block());
    poll_until(secs(5.0), "the kept block watching", || async {
        watchers(&etcd.endpoint).await == before + 1
    })
    .await;
    assert_eq!(m.send(release("web/0")).await.unwrap(), Ok(()));
    let answer = within(secs(2.0), "the kept block's answer", kept).await;
    assert_eq!(answer.unwrap(), Ok(()));
}

/// Needs no server: nothing answers.
#[actix_rt::test]
async fn connect_fails_cleanly() {
    let empty = EtcdManager::connect(EtcdConfig::new(vec![], "/x")).await;
    assert!(matches!(empty, Err(LeaseError::Invalid(_))), "{empty:?}");

    let nobody = format!("http://127.0.0.1:{}", etcd_support::ports::free_port());
    let config = EtcdConfig {
        endpoints: vec![nobody],
        prefix: "/x".into(),
    };
    let started = Instant::now();
    let refused = EtcdManager::connect_with_timeout(config, secs(1.0)).await;
    assert!(matches!(refused, Err(LeaseError::Failed(_))), "{refused:?}");
    assert!(started.elapsed() < secs(3.0), "{:?}", started.elapsed());
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn requests_to_a_stopped_etcd_fail_within_their_bound() {
    let etcd = EtcdProcess::start("stopped");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], unique_prefix("stopped"));
    let m = EtcdManager::connect_with_timeout(config.clone(), secs(1.0))
        .await
        .unwrap()
        .start();
    assert_eq!(ask_claim(&m, "web/0", secs(2.0)).await, Ok(()));

    etcd.pause();
    // A claim for 2 s (a tracker with d = 1 s) answers within d / 2.
    let started = Instant::now();
    let answer = within(
        secs(3.0),
        "a claim to a paused etcd",
        m.send(claim("web/0", secs(2.0))),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    println!("claim to a paused etcd failed after {took:?}: {answer:?}");
    assert!(matches!(answer, Err(LeaseError::Failed(_))), "{answer:?}");
    assert!(took < secs(0.9), "bounded by duration / 4: {took:?}");

    // A long claim is bounded by the request timeout.
    let started = Instant::now();
    let answer = m.send(claim("web/1", secs(60.0))).await.unwrap();
    assert!(matches!(answer, Err(LeaseError::Failed(_))), "{answer:?}");
    assert!(started.elapsed() < secs(1.5), "{:?}", started.elapsed());

    let started = Instant::now();
    assert_eq!(leader_of(&m).await, None, "unknown while etcd is paused");
    let answer = m.send(block()).await.unwrap();
    assert!(matches!(answer, Err(LeaseError::Failed(_))), "{answer:?}");
    let answer = m.send(release("web/0")).await.unwrap();
    assert!(matches!(answer, Err(LeaseError::Failed(_))), "{answer:?}");
    assert!(started.elapsed() < secs(4.0), "{:?}", started.elapsed());

    let started = Instant::now();
    let refused = EtcdManager::connect_with_timeout(config, secs(1.0)).await;
    assert!(matches!(refused, Err(LeaseError::Failed(_))), "{refused:?}");
    assert!(started.elapsed() < secs(1.5), "{:?}", started.elapsed());

    etcd.resume();
    poll_until(secs(10.0), "the manager to serve again", || async {
        m.send(claim("web/0", secs(3.0))).await.unwrap().is_ok()
    })
    .await;
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn a_block_whose_watch_breaks_answers_failed() {
    let mut etcd = EtcdProcess::start("broken-watch");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], unique_prefix("broken-watch"));
    let m = EtcdManager::connect_with_timeout(config, secs(1.0))
        .await
        .unwrap()
        .start();
    assert_eq!(ask_claim(&m, "web/0", secs(30.0)).await, Ok(()));
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(tokio::time::timeout(secs(0.5), &mut pending).await.is_err());
    let killed = Instant::now();
    etcd.kill();
    // The watch stream ends; re-reading the key fails: the block answers an error (and a
    // tracker claims again after its backoff) instead of hanging.
    let answer = within(secs(5.0), "the block to answer", pending)
        .await
        .unwrap();
    println!(
        "block answered {answer:?} {:?} after etcd died",
        killed.elapsed()
    );
    assert!(matches!(answer, Err(LeaseError::Failed(_))), "{answer:?}");
}

/// Polls both trackers until exactly one says it leads; returns its index.
async fn single_leader(trackers: &[&Tracker; 2], deadline: Duration) -> usize {
    let start = Instant::now();
    loop {
        let a = trackers[0].claim_leader().await;
        let b = trackers[1].claim_leader().await;
        assert!(!(a && b), "two leaders at once");
        if a != b {
            return if a { 0 } else { 1 };
        }
        assert!(start.elapsed() < deadline, "no leader after {deadline:?}");
        tokio::time::sleep(secs(0.05)).await;
    }
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn two_machines_exactly_one_leader() {
    let endpoints = shared_endpoints("two_machines_exactly_one_leader");
    let prefix = unique_prefix("two");
    let d = secs(1.0);
    let (m0, m1) = (
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    );
    let t0 = Tracker::start(unit("web/0"), Claimer::new(&m0), d).unwrap();
    let t1 = Tracker::start(unit("web/1"), Claimer::new(&m1), d).unwrap();
    let first = single_leader(&[&t0, &t1], secs(5.0)).await;
    let name = ["web/0", "web/1"][first];
    // Over several renewals: the same single leader, as both connections see it.
    let until = Instant::now() + secs(2.5);
    while Instant::now() < until {
        assert_eq!(single_leader(&[&t0, &t1], secs(1.0)).await, first);
        for m in [&m0, &m1] {
            assert_eq!(leader_of(m).await.expect("held").holder, name);
        }
        tokio::time::sleep(secs(0.1)).await;
    }
    let (seen0, seen1) = (leader_of(&m0).await.unwrap(), leader_of(&m1).await.unwrap());
    // Each connection computes `expires` itself; holder and term are etcd's.
    assert_eq!((seen0.holder, seen0.term), (seen1.holder, seen1.term));
    t0.kill();
    t1.kill();
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn failover_when_the_leader_and_its_connection_go() {
    let endpoints = shared_endpoints("failover_when_the_leader_and_its_connection_go");
    let prefix = unique_prefix("failover");
    let d = secs(1.0);
    let managers = [
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    ];
    let trackers = [
        Tracker::start(unit("web/0"), Claimer::new(&managers[0]), d).unwrap(),
        Tracker::start(unit("web/1"), Claimer::new(&managers[1]), d).unwrap(),
    ];
    let first = single_leader(&[&trackers[0], &trackers[1]], secs(5.0)).await;
    let other = 1 - first;
    let old_term = leader_of(&managers[other]).await.expect("held").term;
    let takeover = trackers[other].wait_leader();

    // The leader's process goes away: tracker killed (no release), connection dropped.
    let [m0, m1] = managers;
    let [t0, t1] = trackers;
    let (gone_tracker, gone_manager, survivor, survivor_manager) = if first == 0 {
        (t0, m0, t1, m1)
    } else {
        (t1, m1, t0, m0)
    };
    let killed = Instant::now();
    gone_tracker.kill();
    assert_eq!(gone_tracker.wait().await, Ok(()));
    drop(gone_tracker);
    drop(gone_manager);

    // Its lease (2·d rounded up to whole seconds) was renewed at most d ago... or just
    // now; etcd reaps expired leases within ~0.5 s; then a watch, a claim.
    let bound = secs(2.0) + secs(1.5);
    assert!(within(bound, "the other unit to take over", takeover.wait()).await);
    let failover = killed.elapsed();
    println!("failover took {failover:?} (lease 2 s; bound {bound:?})");
    let info = leader_of(&survivor_manager).await.expect("held");
    assert_eq!(info.holder, survivor.unit_name().as_str());
    assert!(info.term > old_term, "a new holder, a greater term");
    survivor.kill();
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn etcd_paused_longer_than_the_lease() {
    let etcd = EtcdProcess::start("paused");
    let prefix = unique_prefix("paused");
    let endpoints = vec![etcd.endpoint.clone()];
    let d = secs(1.0);
    let (m0, m1) = (
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    );
    let trackers = [
        Tracker::start_supervised(unit("web/0"), Claimer::new(&m0), d).unwrap(),
        Tracker::start_supervised(unit("web/1"), Claimer::new(&m1), d).unwrap(),
    ];
    let first = single_leader(&[&trackers[0], &trackers[1]], secs(5.0)).await;
    let (leader, minion) = (&trackers[first], &trackers[1 - first]);
    let ends = leader.wait_minion();
    // Notes the instant WaitMinion resolves, independently of the polling below.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let watcher = ends.clone();
    actix_rt::spawn(async move {
        let answer = watcher.await;
        let _ = ended_tx.send((answer, Instant::now()));
    });

    etcd.pause();
    let paused = Instant::now();
    let pause = 2 * d + secs(2.0); // longer than the 2·d lease
    let mut last_true = None;
    while paused.elapsed() < pause {
        let asked = paused.elapsed();
        if leader.claim_leader().await {
            last_true = Some(asked);
        }
        assert!(
            !minion.claim_leader().await,
            "the minion never leads during the pause"
        );
        tokio::time::sleep(secs(0.05)).await;
    }
    let (answer, ended_at) = within(secs(0.1), "WaitMinion to have resolved", ended_rx)
        .await
        .expect("the watcher ran");
    assert!(!answer, "WaitMinion resolves false");
    let ended = ended_at - paused;
    println!("paused etcd: last true ClaimLeader at {last_true:?}, leadership ended at {ended:?}");
    // A true ticket promises d from when it was handled, and the last grant before the
    // pause was at most d before it: no true answer once d of the pause has passed.
    if let Some(t) = last_true {
        assert!(t < d, "ClaimLeader said true {t:?} into the pause");
    }
    assert_eq!(ends.try_wait(), Some(false), "WaitMinion resolved");
    assert!(
        ended <= 2 * d + secs(0.2),
        "ended by the lease's expiry: {ended:?}"
    );

    etcd.resume();
    let resumed = Instant::now();
    let now_leading = single_leader(&[&trackers[0], &trackers[1]], secs(10.0)).await;
    println!(
        "after SIGCONT: web/{now_leading} leads after {:?}",
        resumed.elapsed()
    );
    let name = ["web/0", "web/1"][now_leading];
    for m in [&m0, &m1] {
        assert_eq!(leader_of(m).await.expect("held").holder, name);
    }
    // Stable: still one leader a little later.
    tokio::time::sleep(secs(0.5)).await;
    assert_eq!(
        single_leader(&[&trackers[0], &trackers[1]], secs(5.0)).await,
        now_leading
    );
    for t in &trackers {
        t.kill();
    }
}

async fn granted(m: &Addr<EtcdManager>, unit: &str, duration: Duration) -> u64 {
    m.send(claim(unit, duration))
        .await
        .expect("manager alive")
        .unwrap_or_else(|e| panic!("{unit}'s claim: {e}"))
        .term
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn terms_grow_on_every_change_of_holder_and_grants_carry_them() {
    let endpoints = shared_endpoints("terms_grow_on_every_change_of_holder_and_grants_carry_them");
    let m = connect(&endpoints, &unique_prefix("terms")).await;

    let t1 = granted(&m, "web/0", secs(30.0)).await;
    assert!(t1 >= 1, "terms start at 1 or more: {t1}");
    let first = leader_of(&m).await.expect("held");
    assert_eq!((first.holder.as_str(), first.term), ("web/0", t1));
    assert_eq!(granted(&m, "web/0", secs(30.0)).await, t1, "extended");
    assert_eq!(
        granted(&m, "web/0", secs(40.0)).await,
        t1,
        "moved to a longer lease"
    );

    // A hand-over: the key keeps its create revision, the successor a new term.
    assert_eq!(m.send(hand_over("web/0", "web/1")).await.unwrap(), Ok(()));
    let handed = leader_of(&m).await.expect("held");
    assert_eq!(handed.holder, "web/1");
    assert!(handed.term > t1, "{handed:?} after term {t1}");
    let t2 = granted(&m, "web/1", secs(30.0)).await;
    assert_eq!(t2, handed.term, "the successor extends under its term");
    assert_eq!(
        m.send(claim("web/0", secs(30.0))).await.unwrap(),
        Err(LeaseError::ClaimDenied)
    );

    // Released and granted to the same unit again: a new term.
    assert_eq!(m.send(release("web/1")).await.unwrap(), Ok(()));
    let t3 = granted(&m, "web/1", secs(2.0)).await;
    assert!(t3 > t2, "{t3} after {t2}");
    assert_eq!(leader_of(&m).await.expect("held").term, t3);

    // Its lease lapses in etcd; the same unit granted again: a new term.
    poll_until(secs(5.0), "the 2 s lease to expire", || async {
        leader_of(&m).await.is_none()
    })
    .await;
    let t4 = granted(&m, "web/1", secs(2.0)).await;
    assert!(t4 > t3, "{t4} after {t3}");
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn managers_racing_for_the_key_get_strictly_growing_terms() {
    let endpoints = shared_endpoints("managers_racing_for_the_key_get_strictly_growing_terms");
    let prefix = unique_prefix("race-terms");
    let managers = [
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    ];
    let units = ["web/0", "web/1", "web/2"];
    let mut terms = Vec::new();
    for round in 0..15 {
        let answers = futures::future::join_all(
            managers
                .iter()
                .zip(units)
                .map(|(m, u)| m.send(claim(u, secs(10.0)))),
        )
        .await;
        let winners: Vec<_> = answers
            .into_iter()
            .zip(units)
            .filter_map(|(a, u)| match a.unwrap() {
                Ok(grant) => Some((u, grant.term)),
                Err(LeaseError::ClaimDenied) => None,
                Err(e) => panic!("round {round}: {u}: {e}"),
            })
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (winner, term) = winners[0];
        let seen = leader_of(&managers[1]).await.expect("held");
        assert_eq!((seen.holder.as_str(), seen.term), (winner, term));
        terms.push(term);
        // Every other round the holder hands over instead of releasing.
        let w = units.iter().position(|u| *u == winner).unwrap();
        if round % 2 == 0 {
            let next = units[(w + 1) % 3];
            let answer = managers[(w + 2) % 3].send(hand_over(winner, next)).await;
            assert_eq!(answer.unwrap(), Ok(()));
            let seen = leader_of(&managers[0]).await.expect("held");
            assert_eq!(seen.holder, next);
            terms.push(seen.term);
            assert_eq!(managers[w].send(release(next)).await.unwrap(), Ok(()));
        } else {
            assert_eq!(managers[w].send(release(winner)).await.unwrap(), Ok(()));
        }
    }
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "terms strictly increase: {terms:?}"
    );
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn hand_over_refusals_change_nothing() {
    let endpoints = shared_endpoints("hand_over_refusals_change_nothing");
    let m = connect(&endpoints, &unique_prefix("hand-over-refused")).await;
    assert_eq!(
        m.send(hand_over("web/0", "web/1")).await.unwrap(),
        Err(LeaseError::NotHeld {
            unit: "web/0".into()
        }),
        "nothing held"
    );
    assert_eq!(leader_of(&m).await, None);
    let term = granted(&m, "web/0", secs(30.0)).await;
    let before = leader_of(&m).await.expect("held");
    for (bad, expected) in [
        (
            hand_over("web/1", "web/2"),
            Some(LeaseError::NotHeld {
                unit: "web/1".into(),
            }),
        ),
        (hand_over("web/0", "web/0"), None),
        (hand_over("web/0", "db/1"), None),
        (hand_over("web/0", "web/01"), None),
    ] {
        let answer = m.send(bad.clone()).await.unwrap();
        match expected {
            Some(e) => assert_eq!(answer, Err(e), "{bad:?}"),
            None => assert!(
                matches!(answer, Err(LeaseError::Invalid(_))),
                "{bad:?}: {answer:?}"
            ),
        }
        let now = leader_of(&m).await.expect("still held");
        assert_eq!((now.holder.as_str(), now.term), ("web/0", term), "{bad:?}");
        assert!(
            now.expires >= before.expires - secs(1.5),
            "{bad:?}: {now:?}"
        );
    }
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn a_hand_over_keeps_the_expiry_and_wakes_blocks() {
    let endpoints = shared_endpoints("a_hand_over_keeps_the_expiry_and_wakes_blocks");
    let m = connect(&endpoints, &unique_prefix("hand-over-block")).await;
    granted(&m, "web/0", secs(20.0)).await;
    let before = leader_of(&m).await.expect("held");
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(
        tokio::time::timeout(secs(0.3), &mut pending).await.is_err(),
        "a block stays pending while web/0 holds the key"
    );
    assert_eq!(m.send(hand_over("web/0", "web/1")).await.unwrap(), Ok(()));
    let answer = within(secs(2.0), "the block to wake on the hand-over", pending).await;
    assert_eq!(answer.unwrap(), Ok(()));
    let after = leader_of(&m).await.expect("held by the successor");
    assert_eq!(after.holder, "web/1");
    // The same lease: its expiry (rounded down to whole seconds by etcd) is kept, not
    // renewed to anything longer.
    assert!(
        after.expires <= before.expires + secs(1.0) && after.expires >= before.expires - secs(1.5),
        "{before:?} then {after:?}"
    );
    // An extension by the successor (a put keeping the holder) wakes no block.
    let pending = m.send(block());
    futures::pin_mut!(pending);
    assert!(tokio::time::timeout(secs(0.3), &mut pending).await.is_err());
    granted(&m, "web/1", secs(40.0)).await; // moves the key to a longer lease: a put
    assert!(
        tokio::time::timeout(secs(0.5), &mut pending).await.is_err(),
        "the same holder extending is no release"
    );
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn a_blocked_successor_leads_at_once_after_a_hand_over() {
    let endpoints = shared_endpoints("a_blocked_successor_leads_at_once_after_a_hand_over");
    let prefix = unique_prefix("hand-over-tracker");
    let (m0, m1) = (
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    );
    // web/0 holds a long lease; web/1's tracker is a minion blocked on it.
    let old = granted(&m0, "web/0", secs(30.0)).await;
    let successor = Tracker::start(unit("web/1"), Claimer::new(&m1), secs(1.0)).unwrap();
    assert!(
        !within(
            secs(2.0),
            "web/1 to be a minion",
            successor.wait_minion().wait()
        )
        .await
    );
    // The block goes out right after the denial; there is no way to observe its watch
    // being set up, so give it a moment (a block set up after the hand-over would read
    // web/1 as the holder and wait for the lease to end: the test would fail).
    tokio::time::sleep(secs(0.3)).await;

    let leads = successor.wait_leader();
    let handed = Instant::now();
    assert_eq!(m0.send(hand_over("web/0", "web/1")).await.unwrap(), Ok(()));
    assert!(within(secs(2.0), "web/1 to lead after the hand-over", leads.wait()).await);
    let took = handed.elapsed();
    println!("the successor led {took:?} after the hand-over (its lease had ~30 s left)");
    let guarantee = leads
        .try_guarantee()
        .expect("a true ticket carries its guarantee");
    let info = leader_of(&m0).await.expect("held");
    assert_eq!(info.holder, "web/1");
    assert_eq!(
        guarantee.term, info.term,
        "the ticket's term is the lease's"
    );
    assert!(guarantee.term > old, "{guarantee:?} after term {old}");
    successor.kill();
}

/// A raw etcd client on the shared server, to read what fenced writes left behind.
async fn raw_client(endpoints: &[String]) -> etcd_client::Client {
    etcd_client::Client::connect(endpoints, None)
        .await
        .expect("connect a raw etcd client")
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn fenced_writes_commit_only_under_the_current_term() {
    let endpoints = shared_endpoints("fenced_writes_commit_only_under_the_current_term");
    let prefix = unique_prefix("fenced");
    let (m0, m1) = (
        connect(&endpoints, &prefix).await,
        connect(&endpoints, &prefix).await,
    );
    let data = format!("{prefix}-data/config");
    let put = |value: &str| vec![TxnOp::put(data.as_str(), value, None)];
    let mut raw = raw_client(&endpoints).await;
    let stored = |resp: etcd_client::GetResponse| {
        resp.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    };

    // Nobody leads yet: no term is current.
    let answer = m0.send(FencedTxn::new(SERVICE, 5, put("x"))).await.unwrap();
    assert!(
        matches!(
            answer,
            Err(FencedTxnError::StaleTerm {
                holder: None,
                current: None,
                ..
            })
        ),
        "{answer:?}"
    );

    // The old leader, through a tracker: its ticket's term fences its writes.
    let old = Tracker::start(unit("web/0"), Claimer::new(&m0), secs(1.0)).unwrap();
    let old_term = old
        .wait_leader()
        .guarantee()
        .await
        .expect("web/0 leads")
        .term;
    let resp = m0
        .send(FencedTxn::new(SERVICE, old_term, put("by web/0")))
        .await
        .unwrap()
        .expect("the leader's write commits");
    assert!(resp.succeeded());
    assert_eq!(
        stored(raw.get(data.as_str(), None).await.unwrap()).as_deref(),
        Some("by web/0")
    );
    // A term from the future is not current either.
    let answer = m0
        .send(FencedTxn::new(SERVICE, old_term + 1_000, put("x")))
        .await;
    assert!(matches!(
        answer.unwrap(),
        Err(FencedTxnError::StaleTerm { .. })
    ));

    // Failover: web/0's process dies (no release), web/1 takes over when the lease ends.
    let new = Tracker::start(unit("web/1"), Claimer::new(&m1), secs(1.0)).unwrap();
    old.kill();
    let new_term = within(
        secs(6.0),
        "web/1 to take over",
        new.wait_leader().guarantee(),
    )
    .await
    .expect("web/1 leads")
    .term;
    assert!(new_term > old_term);

    let answer = m0
        .send(FencedTxn::new(SERVICE, old_term, put("stale")))
        .await
        .unwrap();
    match answer {
        Err(FencedTxnError::StaleTerm {
            term,
            holder,
            current,
            ..
        }) => {
            assert_eq!(term, old_term);
            assert_eq!(holder.as_deref(), Some("web/1"));
            assert_eq!(current, Some(new_term));
        }
        other => panic!("the old leader's write after the failover: {other:?}"),
    }
    assert_eq!(
        stored(raw.get(data.as_str(), None).await.unwrap()).as_deref(),
        Some("by web/0")
    );
    let resp = m1
        .send(FencedTxn::new(SERVICE, new_term, put("by web/1")))
        .await
        .unwrap()
        .expect("the new leader's write commits");
    assert!(resp.succeeded());
    assert_eq!(
        stored(raw.get(data.as_str(), None).await.unwrap()).as_deref(),
        Some("by web/1")
    );

    // Once the lease is released, no term is current: not even the last one.
    new.kill();
    assert_eq!(m1.send(release("web/1")).await.unwrap(), Ok(()));
    let answer = m1
        .send(FencedTxn::new(SERVICE, new_term, put("late")))
        .await
        .unwrap();
    assert!(
        matches!(answer, Err(FencedTxnError::StaleTerm { holder: None, .. })),
        "{answer:?}"
    );
    assert_eq!(
        stored(raw.get(data.as_str(), None).await.unwrap()).as_deref(),
        Some("by web/1")
    );
}

/// How a racing failover moves the lease from web/0 to web/1.
#[derive(Debug, Clone, Copy)]
enum Failover {
    /// web/0 releases, web/1 claims through another manager: a new holder key.
    ReleaseAndClaim,
    /// web/0 hands over: the holder key keeps its create revision, only the term key
    /// tells the terms apart.
    HandOver,
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn stale_fenced_writes_never_land_even_racing_the_failover() {
    let endpoints = shared_endpoints("stale_fenced_writes_never_land_even_racing_the_failover");
    for how in [Failover::ReleaseAndClaim, Failover::HandOver] {
        stale_writes_race(&endpoints, how).await;
    }
}

/// 400 writes under web/0's term, sent in waves while the lease moves to web/1: every
/// one that landed committed before web/1's term began, and the store agrees.
async fn stale_writes_race(endpoints: &[String], how: Failover) {
    let prefix = unique_prefix("fenced-race");
    let (m0, m1) = (
        connect(endpoints, &prefix).await,
        connect(endpoints, &prefix).await,
    );
    let data = format!("{prefix}-data/");
    let old_term = granted(&m0, "web/0", secs(30.0)).await;

    let mut writes = Vec::new();
    let mut failover = None;
    for i in 0..400 {
        let op = vec![TxnOp::put(format!("{data}{i:03}"), "old", None)];
        writes.push(m0.send(FencedTxn::new(SERVICE, old_term, op)));
        if i == 100 {
            let (m0, m1) = (m0.clone(), m1.clone());
            failover = Some(actix_rt::spawn(async move {
                match how {
                    Failover::ReleaseAndClaim => {
                        assert_eq!(m0.send(release("web/0")).await.unwrap(), Ok(()));
                    }
                    Failover::HandOver => {
                        assert_eq!(m1.send(hand_over("web/0", "web/1")).await.unwrap(), Ok(()));
                    }
                }
                m1.send(claim("web/1", secs(30.0))).await.unwrap()
            }));
        }
        if i % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let answers = futures::future::join_all(writes).await;
    let new_term = failover
        .unwrap()
        .await
        .unwrap()
        .expect("web/1's claim")
        .term;
    assert!(new_term > old_term, "{how:?}");

    let mut landed = Vec::new();
    let mut refused = 0;
    for answer in answers {
        match answer.unwrap() {
            Ok(resp) => landed.push(resp.header().expect("header").revision()),
            Err(FencedTxnError::StaleTerm { .. }) => refused += 1,
            Err(e) => panic!("{how:?}: {e}"),
        }
    }
    println!(
        "{how:?}: {} stale-term writes landed before the failover, {refused} refused",
        landed.len()
    );
    assert!(
        !landed.is_empty() && refused > 0,
        "{how:?}: the writes raced the failover"
    );
    let new_term = i64::try_from(new_term).unwrap();
    assert!(
        landed.iter().all(|&rev| rev < new_term),
        "{how:?}: a write under term {old_term} committed after term {new_term} began"
    );
    // The store agrees: every key written under the old term predates the new term.
    let mut raw = raw_client(endpoints).await;
    let kept = raw
        .get(
            data.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(kept.kvs().len(), landed.len(), "{how:?}");
    assert!(
        kept.kvs().iter().all(|kv| kv.mod_revision() < new_term),
        "{how:?}"
    );
}

/// Waits for the receiver's next value.
async fn next(
    rx: &mut tokio::sync::watch::Receiver<Option<LeaseInfo>>,
    what: &str,
) -> Option<LeaseInfo> {
    within(secs(5.0), what, rx.changed())
        .await
        .expect("the watch is alive");
    rx.borrow_and_update().clone()
}

fn holder_and_term(info: &Option<LeaseInfo>) -> Option<(String, u64)> {
    info.as_ref().map(|i| (i.holder.clone(), i.term))
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn watch_leader_follows_grants_hand_overs_releases_and_expiry() {
    let endpoints = shared_endpoints("watch_leader_follows_grants_hand_overs_releases_and_expiry");
    let m = connect(&endpoints, &unique_prefix("watch-leader")).await;
    let watch = || {
        m.send(WatchLeader {
            service: SERVICE.into(),
        })
    };
    let mut rx = watch().await.unwrap().expect("a watch");
    assert_eq!(*rx.borrow_and_update(), None, "nobody leads yet");

    let t1 = granted(&m, "web/0", secs(30.0)).await;
    let seen = next(&mut rx, "the grant").await;
    assert_eq!(holder_and_term(&seen), Some(("web/0".into(), t1)));
    let mut late = watch().await.unwrap().expect("a second watch");
    assert_eq!(
        holder_and_term(&late.borrow_and_update()),
        Some(("web/0".into(), t1)),
        "a new receiver holds the current value at once"
    );

    assert_eq!(m.send(hand_over("web/0", "web/1")).await.unwrap(), Ok(()));
    let seen = next(&mut rx, "the hand-over").await;
    let t2 = seen.as_ref().expect("held").term;
    assert_eq!(holder_and_term(&seen), Some(("web/1".into(), t2)));
    assert!(t2 > t1);
    assert_eq!(
        holder_and_term(&next(&mut late, "the hand-over, second receiver").await),
        Some(("web/1".into(), t2))
    );

    assert_eq!(m.send(release("web/1")).await.unwrap(), Ok(()));
    assert_eq!(next(&mut rx, "the release").await, None);

    let t3 = granted(&m, "web/2", secs(2.0)).await;
    assert_eq!(
        holder_and_term(&next(&mut rx, "the new grant").await),
        Some(("web/2".into(), t3))
    );
    assert!(t3 > t2);
    let granted_at = Instant::now();
    assert_eq!(next(&mut rx, "the expiry").await, None);
    println!(
        "expiry published {:?} after a 2 s grant",
        granted_at.elapsed()
    );
    assert!(granted_at.elapsed() >= secs(1.9));
}

/// Checks for `period` that the receiver still shows `expected` (etcd unreachable:
/// nothing may be published, `None` least of all).
async fn holds_for(
    rx: &tokio::sync::watch::Receiver<Option<LeaseInfo>>,
    expected: &Option<(String, u64)>,
    period: Duration,
    why: &str,
) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert_eq!(&holder_and_term(&rx.borrow()), expected, "{why}");
        tokio::time::sleep(secs(0.05)).await;
    }
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn watch_leader_keeps_its_value_while_etcd_is_gone_and_resumes() {
    let mut etcd = EtcdProcess::start("watch-resume");
    let prefix = unique_prefix("watch-resume");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], prefix.as_str());
    let m = EtcdManager::connect_with_timeout(config, secs(1.0))
        .await
        .unwrap()
        .start();
    let term = granted(&m, "web/0", secs(60.0)).await;
    let mut rx = m
        .send(WatchLeader {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .expect("a watch");
    let held = Some(("web/0".to_owned(), term));
    assert_eq!(holder_and_term(&rx.borrow_and_update()), held);

    etcd.pause();
    holds_for(&rx, &held, secs(3.0), "etcd frozen").await;
    etcd.resume();
    etcd.restart(); // every connection breaks; keys and leases survive
    holds_for(&rx, &held, secs(1.0), "etcd restarted").await;

    // A change made through another connection after the restart reaches the receiver:
    // the watch resumed.
    let other = connect(&[etcd.endpoint.clone()], &prefix).await;
    assert_eq!(
        other.send(hand_over("web/0", "web/1")).await.unwrap(),
        Ok(())
    );
    let seen = within(secs(10.0), "the hand-over after the restart", async {
        loop {
            rx.changed().await.expect("the watch is alive");
            let seen = holder_and_term(&rx.borrow_and_update());
            if seen != held {
                return seen;
            }
        }
    })
    .await;
    let (holder, new_term) = seen.expect("held by the successor");
    assert_eq!(holder, "web/1");
    assert!(new_term > term);

    etcd.kill();
    holds_for(
        &rx,
        &Some(("web/1".into(), new_term)),
        secs(2.0),
        "etcd dead",
    )
    .await;
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd -- --include-ignored"]
async fn a_tracker_below_the_floor_fails_at_once_naming_it() {
    let endpoints = shared_endpoints("a_tracker_below_the_floor_fails_at_once_naming_it");
    let m = connect(&endpoints, &unique_prefix("floor")).await;
    // d = 0.9 s claims 1.8 s: below etcd's 2 s minimum lease.
    let tracker = Tracker::start(unit("web/0"), Claimer::new(&m), secs(0.9)).unwrap();
    assert!(!tracker.wait_leader().await, "it never leads");
    match within(secs(2.0), "the tracker to stop", tracker.wait()).await {
        Err(leadership::TrackerError::LeadershipFailure(LeaseError::Invalid(why))) => {
            assert!(why.contains("floor of 2s"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(leader_of(&m).await, None, "nothing was written");
}
