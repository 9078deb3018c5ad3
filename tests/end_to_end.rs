//! Several trackers of one service on one in-memory manager, in paused virtual time:
//! exactly one leader at every sampled instant, and failover at the old lease's expiry.

use std::future::IntoFuture;
use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;
use leadership::{Claimer, Leader, ManagerActor, Tracker, UnitName};
use settle::settle;
use tokio::time::{sleep_until, Instant};

#[path = "common/settle.rs"]
mod settle;

const D: Duration = Duration::from_secs(4);
const SERVICE: &str = "led-service";

fn start_units(manager: &Addr<ManagerActor>, n: u32) -> Vec<Tracker> {
    (0..n)
        .map(|i| {
            let unit = UnitName::new(&format!("{SERVICE}/{i}")).unwrap();
            Tracker::start(unit, Claimer::new(manager), D).unwrap()
        })
        .collect()
}

/// Asks every live tracker `ClaimLeader` at this instant; returns who said yes.
async fn leaders_now(trackers: &[Tracker]) -> Vec<usize> {
    let answers = join_all(trackers.iter().map(|t| t.claim_leader().into_future())).await;
    answers
        .into_iter()
        .enumerate()
        .filter_map(|(i, yes)| yes.then_some(i))
        .collect()
}

async fn holder(manager: &Addr<ManagerActor>) -> Option<leadership::LeaseInfo> {
    manager
        .send(Leader {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
}

#[actix_rt::test]
async fn exactly_one_leader_at_every_sampled_instant() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let trackers = start_units(&manager, 5);
    let start = Instant::now();
    assert!(trackers[0].wait_leader().await, "the first to claim leads");
    let mut samples = 0;
    // Sample at a step that does not divide d, so samples land on every phase of the
    // renewal cycle, renewal instants included, over 250 renewals.
    let step = D / 7 + Duration::from_millis(3);
    let mut at = start;
    while at < start + D * 250 {
        sleep_until(at).await;
        let leaders = leaders_now(&trackers).await;
        assert_eq!(leaders, vec![0], "at {:?}", at - start);
        let lease = holder(&manager).await.expect("a live lease");
        assert_eq!(lease.holder, format!("{SERVICE}/0"));
        assert!(
            lease.expires >= Instant::now() + D,
            "the lease covers d ahead"
        );
        samples += 1;
        at += step;
    }
    assert!(samples > 1_500, "{samples} samples");
}

#[actix_rt::test]
async fn killed_leader_is_replaced_exactly_at_its_lease_expiry() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let mut trackers = start_units(&manager, 4);
    assert!(trackers[0].wait_leader().await);
    let mut terms = Vec::new();
    // Fail over three times: each time kill whoever leads.
    for round in 0..3 {
        // Kill at an awkward moment in the renewal cycle.
        sleep_until(Instant::now() + D * 3 + D / 3 * round).await;
        let leaders = leaders_now(&trackers).await;
        assert_eq!(leaders.len(), 1, "round {round}: {leaders:?}");
        let old = holder(&manager).await.unwrap();
        terms.push(old.term);
        let killed = trackers.remove(leaders[0]);
        assert_eq!(old.holder, killed.unit_name().as_str());
        killed.kill();
        assert_eq!(killed.wait().await, Ok(()));

        let waits: Vec<_> = trackers.iter().map(Tracker::wait_leader).collect();
        // Until the old lease expires nobody is leader. tokio rounds a sleep up to its
        // timer's next 1 ms tick, and after `pause()` the clock sits a fixed fraction
        // of a tick off that grid, so a sleep until `expires - 1 ms` can end at
        // `expires` itself; aim 2 ms early to sample strictly before the expiry.
        sleep_until(old.expires - Duration::from_millis(2)).await;
        assert!(Instant::now() < old.expires, "sampled before the expiry");
        assert_eq!(leaders_now(&trackers).await, Vec::<usize>::new());
        assert!(waits.iter().all(|w| w.try_wait().is_none()));

        let (_, new_leader, _) =
            futures::future::select_all(waits.iter().map(|w| Box::pin(w.clone().into_future())))
                .await;
        let took_over = Instant::now();
        assert!(
            took_over >= old.expires,
            "not before the old lease's expiry"
        );
        assert!(
            took_over - old.expires <= Duration::from_millis(5),
            "within a few ms: {:?}",
            took_over - old.expires
        );
        assert_eq!(leaders_now(&trackers).await, vec![new_leader]);
        let new = holder(&manager).await.unwrap();
        assert!(new.term > old.term, "the fencing term moved on");
    }
    assert!(terms.windows(2).all(|w| w[0] < w[1]));
}

/// A resigning leader keeps its lease exactly until its last promise ends, then
/// releases; another unit leads at that instant, not at the lease's expiry, and never
/// while the promise stands.
#[actix_rt::test]
async fn a_resigning_leader_is_followed_at_its_promise_horizon_not_its_expiry() {
    tokio::time::pause();
    let manager = ManagerActor::new().start();
    let trackers = start_units(&manager, 3);
    let start = Instant::now();
    let waits = trackers
        .iter()
        .map(|t| Box::pin(t.wait_leader().into_future()));
    let (_, old, _) = futures::future::select_all(waits).await;
    let promised_until = Instant::now() + D;
    let old_term = holder(&manager).await.unwrap().term;
    tokio::time::advance(D / 2).await;
    let resign = actix::spawn({
        let tracker = trackers[old].clone();
        async move { tracker.resign().await }
    });
    // Sample every millisecond through statuses, which promise nothing.
    let step = Duration::from_millis(1);
    let took_over = loop {
        tokio::time::advance(step).await;
        // What this millisecond brings has happened, or will not until the next.
        settle().await;
        let leading: Vec<usize> = (0..trackers.len())
            .filter(|&i| {
                matches!(
                    *trackers[i].status().borrow(),
                    leadership::Status::Leader(_)
                )
            })
            .collect();
        if let [new] = leading[..] {
            assert_ne!(new, old, "the resigning unit shows Resigning, not Leader");
            break Instant::now();
        }
        assert!(leading.is_empty(), "{leading:?}");
        assert!(
            Instant::now() < start + 2 * D,
            "nobody took over before the expiry"
        );
    };
    assert!(
        took_over >= promised_until && took_over <= promised_until + 2 * step,
        "took over {:?} after the horizon",
        took_over - promised_until
    );
    assert_eq!(resign.await.unwrap(), Ok(()));
    let lease = holder(&manager).await.unwrap();
    assert!(lease.term > old_term);
}
