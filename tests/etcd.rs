//! The etcd-backed manager against a real etcd server.
//!
//! Run under `.ci/with-etcd cargo test --all-features`. Without
//! `LEADERSHIP_ETCD_ENDPOINTS` each test prints a skip line and passes — unless `CI` is
//! set, where they must run. Each test uses its own key prefix, so they run in parallel
//! on the shared server; tests that pause etcd (SIGSTOP) start a private etcd instead.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::time::Duration;

use actix::prelude::*;
use etcd_support::{poll_until, shared_endpoints, unique_prefix, within, EtcdProcess};
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Leader, LeaseError, LeaseInfo,
    ReleaseLeadership, StopManager, Tracker, UnitName,
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

async fn leader_of(manager: &Addr<EtcdManager>) -> Option<LeaseInfo> {
    manager.send(leader()).await.expect("manager alive")
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).expect("valid unit name")
}

#[actix_rt::test]
async fn grant_deny_extend_release_and_terms() {
    let Some(endpoints) = shared_endpoints("grant_deny_extend_release_and_terms") else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("grant")).await;

    assert_eq!(leader_of(&m).await, None, "nothing held yet");
    assert_eq!(
        m.send(claim("web/0", secs(3.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
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
    assert_eq!(
        m.send(claim("web/0", secs(10.0)))
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
    let extended = leader_of(&m).await.expect("still held");
    assert_eq!(extended.holder, "web/0");
    assert_eq!(extended.term, first.term, "an extension keeps the term");
    assert!(
        extended.expires - Instant::now() > secs(8.0),
        "{extended:?}"
    );

    // A shorter claim never shortens the lease.
    assert_eq!(
        m.send(claim("web/0", secs(1.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
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

    assert_eq!(
        m.send(claim("web/1", secs(3.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    let second = leader_of(&m).await.expect("web/1 leads");
    assert_eq!(second.holder, "web/1");
    assert!(second.term > first.term, "a new holder has a greater term");

    // The same unit claiming again after a release starts a new term too.
    assert_eq!(m.send(release("web/1")).await.unwrap(), Ok(()));
    assert_eq!(
        m.send(claim("web/1", secs(3.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    assert!(leader_of(&m).await.unwrap().term > second.term);
}

#[actix_rt::test]
async fn renewal_refreshes_the_lease_and_keeps_the_term() {
    let Some(endpoints) = shared_endpoints("renewal_refreshes_the_lease_and_keeps_the_term") else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("renew")).await;
    assert_eq!(
        m.send(claim("web/0", secs(3.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    let first = leader_of(&m).await.expect("held");
    // Let the lease run down by a second or so, then renew it (a keep-alive).
    poll_until(secs(5.0), "the lease to run down", || async {
        leader_of(&m).await.expect("held").expires - Instant::now() < secs(2.0)
    })
    .await;
    assert_eq!(
        m.send(claim("web/0", secs(3.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    let renewed = leader_of(&m).await.expect("held");
    assert_eq!(renewed.term, first.term);
    // `expires` rounds etcd's remaining TTL down to whole seconds: ~2 s after a refresh
    // of a 3 s lease (it was under 2 s, so ~1 s, before).
    assert!(renewed.expires - Instant::now() > secs(1.5), "{renewed:?}");
}

#[actix_rt::test]
async fn bad_input_is_invalid_and_the_manager_keeps_serving() {
    let Some(endpoints) = shared_endpoints("bad_input_is_invalid_and_the_manager_keeps_serving")
    else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("invalid")).await;
    let bad_claims = [
        claim("web/0", Duration::ZERO),
        claim("web/0", Duration::MAX),
        claim("web/0", Duration::from_secs(10_000_000_000)),
        claim("db/0", secs(1.0)),
        claim("web/x", secs(1.0)),
        claim("web/007", secs(1.0)),
        claim("", secs(1.0)),
        ClaimLeadership {
            service: "Web".into(),
            unit: "Web/0".into(),
            duration: secs(1.0),
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

    assert_eq!(
        m.send(claim("web/0", secs(2.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    assert_eq!(leader_of(&m).await.unwrap().holder, "web/0");
}

#[actix_rt::test]
async fn concurrent_claims_through_one_manager() {
    let Some(endpoints) = shared_endpoints("concurrent_claims_through_one_manager") else {
        return;
    };
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
        m.send(claim(winner, secs(1.0)))
    );
    assert!(long.unwrap().is_ok() && short.unwrap().is_ok());
    let info = leader_of(&m).await.unwrap();
    assert_eq!((info.holder.as_str(), info.term), (winner, term));
    assert!(info.expires - Instant::now() > secs(10.0), "{info:?}");
}

#[actix_rt::test]
async fn block_answers_at_once_when_free_and_wakes_on_release() {
    let Some(endpoints) = shared_endpoints("block_answers_at_once_when_free_and_wakes_on_release")
    else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("block-release")).await;
    let answer = within(secs(1.0), "block on a free service", m.send(block())).await;
    assert_eq!(answer.unwrap(), Ok(()));

    assert_eq!(
        m.send(claim("web/0", secs(30.0)))
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
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
async fn block_wakes_on_expiry() {
    let Some(endpoints) = shared_endpoints("block_wakes_on_expiry") else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("block-expiry")).await;
    let claimed = Instant::now();
    assert_eq!(
        m.send(claim("web/0", secs(1.0))).await.unwrap().map(|_| ()),
        Ok(())
    );
    // etcd's minimum TTL is about 2 s; it reaps expired leases every ~0.5 s.
    let answer = within(secs(5.0), "the block to wake on expiry", m.send(block())).await;
    assert_eq!(answer.unwrap(), Ok(()));
    let woke = claimed.elapsed();
    println!("block woke {woke:?} after a 1 s claim (etcd's TTL floor and reaping included)");
    assert!(woke >= secs(0.9), "never before the lease ends: {woke:?}");
    assert_eq!(leader_of(&m).await, None);
}

#[actix_rt::test]
async fn pending_blocks_are_cancelled_when_the_manager_stops() {
    let Some(endpoints) = shared_endpoints("pending_blocks_are_cancelled_when_the_manager_stops")
    else {
        return;
    };
    let m = connect(&endpoints, &unique_prefix("block-cancel")).await;
    assert_eq!(
        m.send(claim("web/0", secs(30.0)))
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
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
    assert_eq!(
        m.send(claim("web/0", secs(30.0)))
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
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

#[actix_rt::test]
async fn connect_fails_cleanly() {
    let Some(_) = shared_endpoints("connect_fails_cleanly") else {
        return;
    };
    let empty = EtcdManager::connect(EtcdConfig::new(vec![], "/x")).await;
    assert!(matches!(empty, Err(LeaseError::Invalid(_))), "{empty:?}");

    let nobody = format!("http://127.0.0.1:{}", etcd_support::free_port());
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
async fn requests_to_a_stopped_etcd_fail_within_their_bound() {
    if shared_endpoints("requests_to_a_stopped_etcd_fail_within_their_bound").is_none() {
        return;
    }
    let etcd = EtcdProcess::start("stopped");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], unique_prefix("stopped"));
    let m = EtcdManager::connect_with_timeout(config.clone(), secs(1.0))
        .await
        .unwrap()
        .start();
    assert_eq!(
        m.send(claim("web/0", secs(2.0))).await.unwrap().map(|_| ()),
        Ok(())
    );

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
async fn a_block_whose_watch_breaks_answers_failed() {
    if shared_endpoints("a_block_whose_watch_breaks_answers_failed").is_none() {
        return;
    }
    let mut etcd = EtcdProcess::start("broken-watch");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], unique_prefix("broken-watch"));
    let m = EtcdManager::connect_with_timeout(config, secs(1.0))
        .await
        .unwrap()
        .start();
    assert_eq!(
        m.send(claim("web/0", secs(30.0)))
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
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
async fn two_machines_exactly_one_leader() {
    let Some(endpoints) = shared_endpoints("two_machines_exactly_one_leader") else {
        return;
    };
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
async fn failover_when_the_leader_and_its_connection_go() {
    let Some(endpoints) = shared_endpoints("failover_when_the_leader_and_its_connection_go") else {
        return;
    };
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
async fn etcd_paused_longer_than_the_lease() {
    if shared_endpoints("etcd_paused_longer_than_the_lease").is_none() {
        return;
    }
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
