//! Unit tests of the manager's internals: its index, timer, watch senders and block
//! senders, seen through a test-only probe.

use super::*;

/// Test-only probe: (leases held, expired-but-not-yet-reaped ones included; index
/// entries; timer armed).
#[derive(Message)]
#[rtype(result = "(usize, usize, bool)")]
struct Probe;

impl Handler<Probe> for ManagerActor {
    type Result = MessageResult<Probe>;
    fn handle(&mut self, _: Probe, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.leases.len(), self.expiries.len(), self.timer.is_some()))
    }
}

fn claim(service: &str, unit: &str, ms: u64) -> ClaimLeadership {
    ClaimLeadership {
        service: service.into(),
        unit: unit.into(),
        duration: Duration::from_millis(ms),
    }
}

/// Sends `claim` and expects it granted.
async fn granted(manager: &Addr<ManagerActor>, claim: ClaimLeadership) -> Grant {
    manager.send(claim).await.unwrap().unwrap()
}

#[test]
fn unit_numbers_match_only_canonical_units_of_the_service() {
    assert_eq!(unit_number("svc", "svc/0"), Some(0));
    assert_eq!(unit_number("svc", "svc/42"), Some(42));
    assert_eq!(unit_number("svc", "svc/042"), None);
    assert_eq!(unit_number("svc", "svc2/0"), None);
    assert_eq!(unit_number("svc", "sv/0"), None);
    assert_eq!(unit_number("svc", "svc/"), None);
    assert_eq!(unit_number("svc", "svc/4294967296"), None);
}

#[actix_rt::test]
async fn long_service_names_are_granted_extended_and_reported() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let service = format!("long-{}", "a".repeat(40));
    let holder = format!("{service}/7");
    granted(&manager, claim(&service, &holder, 1_000)).await;
    granted(&manager, claim(&service, &holder, 5_000)).await;
    assert_eq!(
        manager
            .send(claim(&service, &format!("{service}/8"), 1_000))
            .await
            .unwrap(),
        Err(LeaseError::ClaimDenied)
    );
    let lease = manager
        .send(Leader {
            service: service.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.holder, holder);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(manager.send(Probe).await.unwrap(), (1, 1, true));
    manager
        .send(ReleaseLeadership {
            service: service.clone(),
            unit: holder,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manager.send(Leader { service }).await.unwrap(), None);
}

#[actix_rt::test]
async fn one_timer_and_an_index_entry_per_lease() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    assert_eq!(manager.send(Probe).await.unwrap(), (0, 0, false));
    for i in 0..100u64 {
        let service = format!("s{i}");
        let unit = format!("s{i}/0");
        granted(&manager, claim(&service, &unit, 1_000 + (i * 37) % 500)).await;
        // Extending again and again adds no index entry.
        granted(&manager, claim(&service, &unit, 2_000)).await;
    }
    assert_eq!(manager.send(Probe).await.unwrap(), (100, 100, true));
    // Past the first deadlines: the stale entries are re-filed, not duplicated.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(manager.send(Probe).await.unwrap(), (100, 100, true));
    tokio::time::advance(Duration::from_millis(399)).await;
    assert_eq!(manager.send(Probe).await.unwrap(), (100, 100, true));
    tokio::time::advance(Duration::from_millis(2)).await;
    // The timer's task tells the manager by a message, so a probe may come before it:
    // probe until the timer has run, which needs no time to pass.
    for round in 0.. {
        if manager.send(Probe).await.unwrap() == (0, 0, false) {
            break;
        }
        assert!(
            round < 1_000,
            "the due expiry did not run: {:?}",
            manager.send(Probe).await
        );
        tokio::task::yield_now().await;
    }
}

/// What the manager holds for others, as [`Held`] reports it.
#[derive(Debug, PartialEq, Eq)]
struct Holdings {
    /// Watch senders.
    watchers: usize,
    /// Block senders as counted (the `leadership_blocked` gauge).
    counted: usize,
    /// Block senders actually held, over every lease and the grace.
    held: usize,
    /// Of those, the ones whose asker has gone (not yet pruned).
    abandoned: usize,
}

/// Test-only probe of what the manager holds for others.
#[derive(Message)]
#[rtype(result = "Holdings")]
struct Held;

impl Handler<Held> for ManagerActor {
    type Result = MessageResult<Held>;
    fn handle(&mut self, _: Held, _: &mut Context<Self>) -> Self::Result {
        let all =
            || std::iter::once(&self.grace_waiters).chain(self.leases.values().map(|l| &l.waiters));
        MessageResult(Holdings {
            watchers: self.watchers.len(),
            counted: self.blocked,
            held: all().map(Waiters::len).sum(),
            abandoned: all().map(Waiters::abandoned).sum(),
        })
    }
}

fn block(service: &str) -> BlockUntilLeadershipReleased {
    BlockUntilLeadershipReleased {
        service: service.into(),
    }
}

#[actix_rt::test]
async fn blocks_abandoned_under_a_leader_that_renews_forever_are_pruned() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    granted(&manager, claim("svc", "svc/0", 60_000)).await;
    // One asker that stays, to prove pruning never drops a live block.
    let stays = manager.send(block("svc"));
    for round in 0..100 {
        // A thousand askers that give up after a millisecond each, like a tracker that
        // restarts or a caller's timeout.
        let askers: Vec<_> = (0..1_000)
            .map(|_| {
                let request = manager.send(block("svc"));
                actix_rt::spawn(tokio::time::timeout(Duration::from_millis(1), request))
            })
            .collect();
        for asker in askers {
            assert!(asker.await.unwrap().is_err(), "a block answered early");
        }
        // The leader renews.
        granted(&manager, claim("svc", "svc/0", 60_000)).await;
        // Blocks sent with `do_send` have nobody to answer and cost nothing either.
        manager.do_send(block("svc"));
        // The askers have all given up; their answering tasks end as they next run,
        // without the clock moving, dropping their receivers: then every sender held
        // is abandoned but the one that stays.
        for yields in 0.. {
            let Holdings {
                held, abandoned, ..
            } = manager.send(Held).await.unwrap();
            if abandoned + 1 == held {
                break;
            }
            assert!(
                yields < 10_000,
                "round {round}: {abandoned} of {held} senders abandoned"
            );
            tokio::task::yield_now().await;
        }
        let Holdings { counted, held, .. } = manager.send(Held).await.unwrap();
        assert_eq!(counted, held, "round {round}");
        assert!(held <= 2_100, "round {round}: {held} block senders held");
    }
    // 100 000 blocks were abandoned; the one that stayed is answered at the release.
    manager
        .send(ReleaseLeadership {
            service: "svc".into(),
            unit: "svc/0".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stays.await.unwrap(), Ok(()));
    assert_eq!(
        manager.send(Held).await.unwrap(),
        Holdings {
            watchers: 0,
            counted: 0,
            held: 0,
            abandoned: 0
        }
    );
}

#[actix_rt::test]
async fn watch_senders_are_shared_and_dropped_once_nobody_watches() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let watch = |service: &str| {
        manager.send(WatchLeader {
            service: service.into(),
        })
    };
    // Many watchers of one service share one sender.
    let mut shared = Vec::new();
    for _ in 0..100 {
        shared.push(watch("svc").await.unwrap().unwrap());
    }
    assert_eq!(manager.send(Held).await.unwrap().watchers, 1);
    // A dropped receiver costs nothing after the next change of its service.
    drop(shared);
    granted(&manager, claim("svc", "svc/0", 1_000)).await;
    assert_eq!(manager.send(Held).await.unwrap().watchers, 0);

    // Watchers of ten thousand services, each dropped at once, on services that never
    // change: the senders are swept as the map grows, never more than twice the live
    // ones (here one) plus a few.
    let live = watch("kept").await.unwrap().unwrap();
    for i in 0..10_000 {
        drop(watch(&format!("s{i}")).await.unwrap().unwrap());
        let held = manager.send(Held).await.unwrap().watchers;
        assert!(held <= 2 + 16, "{held} senders after {i} services");
    }
    // The live watcher is still served.
    granted(&manager, claim("kept", "kept/3", 1_000)).await;
    assert_eq!(
        live.borrow().as_ref().map(|l| l.holder.as_str()),
        Some("kept/3")
    );
}

#[test]
fn a_lease_map_entry_is_64_bytes_with_what_a_renewal_reads_in_its_first_48() {
    use std::mem::{offset_of, size_of};
    // The map's slots start 16 bytes into a cache line (a large allocation is 16 bytes
    // past a page start, and slots are laid out from there in 64-byte steps), so the
    // first 48 bytes of an entry lie in one line: the key and the fields a renewal
    // reads and writes must be there.
    assert_eq!(size_of::<(Name, Lease)>(), 64);
    let lease = offset_of!((Name, Lease), 1);
    assert_eq!(offset_of!((Name, Lease), 0), 0);
    for end in [
        lease + offset_of!(Lease, expires) + 8,
        lease + offset_of!(Lease, term) + 8,
        lease + offset_of!(Lease, holder) + 4,
    ] {
        assert!(end <= 48, "a renewal's field ends at byte {end}");
    }
}

/// Sends `n` blocks on `service`, each awaited by a task of its own; they are queued
/// in the manager's mailbox when this returns.
fn blocks_on(
    manager: &Addr<ManagerActor>,
    service: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<Result<(), LeaseError>, MailboxError>>> {
    (0..n)
        .map(|_| {
            let request = manager.send(block(service));
            actix_rt::spawn(request)
        })
        .collect()
}

#[actix_rt::test]
async fn the_blocked_count_follows_every_way_blocks_are_woken() {
    tokio::time::pause();
    let blocked = |manager: &Addr<ManagerActor>| {
        let request = manager.send(Held);
        async move { request.await.unwrap().counted }
    };

    // A hand-over wakes the lease's blocks.
    let manager = ManagerActor::new().start();
    granted(&manager, claim("svc", "svc/0", 1_000)).await;
    let woken = blocks_on(&manager, "svc", 2);
    assert_eq!(blocked(&manager).await, 2);
    manager
        .send(HandOverLeadership {
            service: "svc".into(),
            unit: "svc/0".into(),
            successor: "svc/1".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blocked(&manager).await, 0);
    for block in woken {
        assert_eq!(block.await.unwrap().unwrap(), Ok(()));
    }

    // The end of the recovery grace wakes the blocks it held.
    let manager = ManagerActor::recovering(Duration::from_millis(500)).start();
    let woken = blocks_on(&manager, "svc", 3);
    assert_eq!(blocked(&manager).await, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Whichever ends the grace, its timer or this claim, answers the blocks.
    granted(&manager, claim("svc", "svc/0", 1_000)).await;
    assert_eq!(blocked(&manager).await, 0);
    for block in woken {
        assert_eq!(block.await.unwrap().unwrap(), Ok(()));
    }
}

#[actix_rt::test]
async fn a_stopped_manager_leaves_no_timer_task_behind() {
    tokio::time::pause();
    // The manager (and so its timer's task) runs on a `LocalSet` of its own, which
    // completes once every task on it has ended. (The runtime's task metrics do not
    // count a `LocalSet`'s tasks.)
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let manager = ManagerActor::new().start();
            // An hour's lease: its expiry timer's task would sleep that long.
            granted(&manager, claim("svc", "svc/0", 3_600_000)).await;
            assert_eq!(manager.send(Probe).await.unwrap(), (1, 1, true));
            manager.send(StopManager).await.unwrap();
        })
        .await;
    // The paused clock jumps to the earliest timer when all is idle: this minute's, if
    // the timer's task is gone, else still the minute's, with the task left behind.
    let ended = tokio::time::timeout(Duration::from_secs(60), local).await;
    assert!(ended.is_ok(), "a task outlived the stopped manager");
}
