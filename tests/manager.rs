//! Message-level tests of `ManagerActor` on a paused tokio clock: every instant asserted
//! here is exact, and no test sleeps in real time.

#[path = "common/blocks.rs"]
mod blocks;
mod paused;
#[path = "common/settle.rs"]
mod settle;
#[path = "common/until.rs"]
mod until;

use blocks::{spawn_block, within_an_hour, woke};
use paused::PausedSystem;
use settle::settle;
use std::time::Duration;

use actix::prelude::*;
use leadership::testing::StubManager;
use leadership::{
    ClaimLeadership, HandOverLeadership, Leader, LeaseError, LeaseInfo, ManagerActor,
    ReleaseLeadership, StopManager, WatchLeader,
};
use tokio::sync::watch;
use tokio::time::{advance, Instant};
use until::until;

const SVC: &str = "led-service";
const U0: &str = "led-service/0";
const U1: &str = "led-service/1";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The paused clock's "now", at the start of a test (on the tick grid, see
/// [`PausedSystem`]; `tokio::time::pause()` here would panic: it is already paused).
async fn paused_clock() -> Instant {
    Instant::now()
}

/// Waits until `manager` has handled every message sent to it so far: it handles its
/// mailbox in order, so the answer to a query about a service no test uses comes after
/// theirs (and the query changes nothing).
async fn handled(manager: &Addr<ManagerActor>) {
    leader_of(manager, "no-such-service").await;
}

fn claim_for(service: &str, unit: &str, duration: Duration) -> ClaimLeadership {
    ClaimLeadership {
        service: service.into(),
        unit: unit.into(),
        duration,
    }
}

fn claim(unit: &str, duration: Duration) -> ClaimLeadership {
    claim_for(SVC, unit, duration)
}

fn release(unit: &str) -> ReleaseLeadership {
    ReleaseLeadership {
        service: SVC.into(),
        unit: unit.into(),
    }
}

async fn leader_of(manager: &Addr<ManagerActor>, service: &str) -> Option<LeaseInfo> {
    manager
        .send(Leader {
            service: service.into(),
        })
        .await
        .expect("manager gone")
}

async fn leader(manager: &Addr<ManagerActor>) -> Option<LeaseInfo> {
    leader_of(manager, SVC).await
}

/// Sends `msg` and reports only whether it succeeded (a grant's term is dropped; the
/// term tests use [`grant`]).
async fn ask<M, T>(manager: &Addr<ManagerActor>, msg: M) -> Result<(), LeaseError>
where
    M: Message<Result = Result<T, LeaseError>> + Send + 'static,
    T: Send + 'static,
    ManagerActor: Handler<M>,
{
    manager.send(msg).await.expect("manager gone").map(|_| ())
}

/// Sends a claim and returns the granted term.
async fn grant(manager: &Addr<ManagerActor>, msg: ClaimLeadership) -> Result<u64, LeaseError> {
    let granted = manager.send(msg).await.expect("manager gone")?;
    Ok(granted.term)
}

#[actix_rt::test(system = "PausedSystem")]
async fn grants_a_free_service_to_the_first_claimant() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    assert_eq!(leader(&manager).await, None);

    assert_eq!(ask(&manager, claim(U0, ms(500))).await, Ok(()));
    let lease = leader(&manager).await.expect("a lease");
    assert_eq!(lease.holder, U0);
    assert_eq!(lease.expires, t0 + ms(500));
    assert!(lease.term > 0);
}

#[actix_rt::test(system = "PausedSystem")]
async fn denies_another_unit_while_the_lease_is_live() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(500))).await.unwrap();
    let before = leader(&manager).await;

    advance(ms(499)).await;
    assert_eq!(
        ask(&manager, claim(U1, ms(10_000))).await,
        Err(LeaseError::ClaimDenied)
    );
    assert_eq!(leader(&manager).await, before);
}

#[actix_rt::test(system = "PausedSystem")]
async fn extension_never_shortens_and_keeps_the_term() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(10_000))).await.unwrap();
    let first = leader(&manager).await.unwrap();

    // A shorter claim by the holder succeeds but leaves the expiry where it was.
    advance(ms(1_000)).await;
    assert_eq!(ask(&manager, claim(U0, ms(2_000))).await, Ok(()));
    assert_eq!(leader(&manager).await, Some(first.clone()));

    // A longer one moves it later, same term.
    assert_eq!(ask(&manager, claim(U0, ms(10_000))).await, Ok(()));
    let extended = leader(&manager).await.unwrap();
    assert_eq!(extended.expires, t0 + ms(11_000));
    assert_eq!(extended.term, first.term);
    assert_eq!(extended.holder, U0);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_lease_is_live_until_exactly_its_expiry() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let expiry = t0 + ms(100);

    advance(ms(100) - Duration::from_nanos(1)).await;
    assert_eq!(leader(&manager).await.map(|l| l.holder), Some(U0.into()));
    assert_eq!(
        ask(&manager, claim(U1, ms(100))).await,
        Err(LeaseError::ClaimDenied)
    );

    advance(Duration::from_nanos(1)).await;
    assert_eq!(Instant::now(), expiry);
    assert_eq!(leader(&manager).await, None);
    // Another unit may take it at that very instant.
    assert_eq!(ask(&manager, claim(U1, ms(100))).await, Ok(()));
    assert_eq!(leader(&manager).await.map(|l| l.holder), Some(U1.into()));
}

#[actix_rt::test(system = "PausedSystem")]
async fn an_expired_lease_is_absent_even_before_its_timer_runs() {
    // Messages queued before the clock reaches the expiry are ahead of the timer's own
    // message in the mailbox, so they are handled first: each must see the lease as gone.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let block = spawn_block(&manager, SVC);
    handled(&manager).await;

    advance(ms(100)).await;
    let claimed = manager.send(claim(U1, ms(100)));
    assert_eq!(woke(block).await, t0 + ms(100));
    assert_eq!(claimed.await.unwrap().map(|_| ()), Ok(()));
    assert_eq!(leader(&manager).await.unwrap().holder, U1);
}

#[actix_rt::test(system = "PausedSystem")]
async fn terms_grow_with_every_new_holder_and_stay_with_extensions() {
    paused_clock().await;
    let manager = ManagerActor::new().start();

    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let t_first = leader(&manager).await.unwrap().term;
    ask(&manager, claim(U0, ms(200))).await.unwrap();
    assert_eq!(leader(&manager).await.unwrap().term, t_first);

    // After a release.
    ask(&manager, release(U0)).await.unwrap();
    ask(&manager, claim(U1, ms(100))).await.unwrap();
    let t_released = leader(&manager).await.unwrap().term;
    assert!(t_released > t_first);

    // After an expiry, even for the same unit again.
    advance(ms(100)).await;
    ask(&manager, claim(U1, ms(100))).await.unwrap();
    let t_expired = leader(&manager).await.unwrap().term;
    assert!(t_expired > t_released);

    // Grants of other services do not make a later term of this one smaller.
    ask(&manager, claim_for("other", "other/3", ms(100)))
        .await
        .unwrap();
    ask(&manager, release(U1)).await.unwrap();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    assert!(leader(&manager).await.unwrap().term > t_expired);
}

#[actix_rt::test(system = "PausedSystem")]
async fn only_the_holder_of_a_live_lease_can_release_it() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    let not_held = |unit: &str| {
        Err(LeaseError::NotHeld {
            unit: unit.to_string(),
        })
    };

    // Nothing to release.
    assert_eq!(ask(&manager, release(U0)).await, not_held(U0));

    ask(&manager, claim(U0, ms(100))).await.unwrap();
    assert_eq!(ask(&manager, release(U1)).await, not_held(U1));
    assert_eq!(leader(&manager).await.unwrap().holder, U0);

    assert_eq!(ask(&manager, release(U0)).await, Ok(()));
    assert_eq!(leader(&manager).await, None);
    assert_eq!(ask(&manager, release(U0)).await, not_held(U0));

    // An expired lease is no longer held.
    ask(&manager, claim(U1, ms(100))).await.unwrap();
    advance(ms(100)).await;
    assert_eq!(ask(&manager, release(U1)).await, not_held(U1));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_answers_at_once_when_the_service_is_free() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    let block = spawn_block(&manager, SVC);
    assert_eq!(woke(block).await, t0);

    // Also once the only lease has expired.
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    advance(ms(150)).await;
    let block = spawn_block(&manager, SVC);
    assert_eq!(woke(block).await, t0 + ms(150));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_wakes_exactly_at_the_expiry_instant() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(250))).await.unwrap();
    let expiry = leader(&manager).await.unwrap().expires;
    assert_eq!(expiry, t0 + ms(250));

    let block = spawn_block(&manager, SVC);
    advance(ms(249)).await;
    settle().await;
    assert!(!block.is_finished(), "woke before the expiry");

    assert_eq!(woke(block).await, expiry);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_wakes_when_the_holder_releases() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(10_000))).await.unwrap();
    let blocks = [spawn_block(&manager, SVC), spawn_block(&manager, SVC)];
    advance(ms(1_000)).await;
    settle().await;
    assert!(blocks.iter().all(|b| !b.is_finished()));

    // A failed release by another unit wakes nobody.
    ask(&manager, release(U1)).await.unwrap_err();
    settle().await;
    assert!(blocks.iter().all(|b| !b.is_finished()));

    ask(&manager, release(U0)).await.unwrap();
    for block in blocks {
        assert_eq!(woke(block).await, t0 + ms(1_000));
    }
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_block_on_an_extended_lease_wakes_at_the_new_expiry() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let block = spawn_block(&manager, SVC);

    advance(ms(50)).await;
    ask(&manager, claim(U0, ms(200))).await.unwrap();
    assert_eq!(leader(&manager).await.unwrap().expires, t0 + ms(250));

    // Past the old expiry: the timer armed for it fires early and changes nothing.
    advance(ms(100)).await;
    settle().await;
    assert!(!block.is_finished(), "woke at the old expiry");
    assert_eq!(leader(&manager).await.unwrap().holder, U0);

    assert_eq!(woke(block).await, t0 + ms(250));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_lease_renewed_like_a_tracker_does_ends_at_its_last_expiry() {
    // Claim 2·d, renew every d: the timer keeps firing at stale deadlines and must
    // re-file the lease each time rather than expire it.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(200))).await.unwrap();
    let term = leader(&manager).await.unwrap().term;
    let block = spawn_block(&manager, SVC);
    for _ in 0..10 {
        tokio::time::sleep(ms(100)).await;
        ask(&manager, claim(U0, ms(200))).await.unwrap();
        assert!(!block.is_finished());
        let lease = leader(&manager).await.unwrap();
        assert_eq!(
            (lease.term, lease.expires),
            (term, Instant::now() + ms(200))
        );
    }
    assert_eq!(
        ask(&manager, claim(U1, ms(200))).await,
        Err(LeaseError::ClaimDenied)
    );
    assert_eq!(woke(block).await, t0 + ms(1_200));
    assert_eq!(ask(&manager, claim(U1, ms(200))).await, Ok(()));
    assert!(leader(&manager).await.unwrap().term > term);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_released_lease_leaves_nothing_behind_for_the_timer() {
    // Released after its index entry was re-filed; a new lease under the same service
    // must still expire (and wake its block) at its own deadline.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    advance(ms(50)).await;
    ask(&manager, claim(U0, ms(100))).await.unwrap(); // now ends at t0 + 150
    tokio::time::sleep(ms(60)).await; // the stale entry (t0 + 100) is re-filed
    ask(&manager, release(U0)).await.unwrap();
    ask(&manager, claim(U1, ms(30))).await.unwrap();
    let (answer, at) = within_an_hour(spawn_block(&manager, SVC)).await.unwrap();
    assert_eq!(answer.unwrap(), Ok(()));
    assert_eq!(at, t0 + ms(140));
    assert_eq!(leader(&manager).await, None);
}

#[actix_rt::test(system = "PausedSystem")]
async fn an_earlier_deadline_rearms_the_timer() {
    // The first lease is long; a second, shorter one must still wake its block on time.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim_for("slow", "slow/0", ms(10_000)))
        .await
        .unwrap();
    ask(&manager, claim_for("fast", "fast/0", ms(30)))
        .await
        .unwrap();
    let slow = spawn_block(&manager, "slow");
    let fast = spawn_block(&manager, "fast");

    assert_eq!(woke(fast).await, t0 + ms(30));
    assert!(!slow.is_finished());
    assert_eq!(woke(slow).await, t0 + ms(10_000));
}

#[actix_rt::test(system = "PausedSystem")]
async fn stopping_the_manager_cancels_pending_blocks() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(10_000))).await.unwrap();
    ask(&manager, claim_for("other", "other/0", ms(20_000)))
        .await
        .unwrap();
    let blocks = [
        spawn_block(&manager, SVC),
        spawn_block(&manager, SVC),
        spawn_block(&manager, "other"),
    ];
    handled(&manager).await;

    manager.send(StopManager).await.unwrap();
    for block in blocks {
        let (answer, _) = within_an_hour(block).await.unwrap();
        assert_eq!(answer.unwrap(), Err(LeaseError::BlockCancelled));
    }
    // The stopped manager receives nothing more.
    assert!(manager.send(claim(U1, ms(100))).await.is_err());
    assert!(!manager.connected());
}

#[actix_rt::test(system = "PausedSystem")]
async fn dropping_every_addr_lets_pending_blocks_answer_at_the_expiry() {
    // Without any `Addr` the manager can take no new claims, but its leases still end
    // when they said: it runs until then, and blocks answer `Ok`, not a cancellation.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(300))).await.unwrap();
    let block = spawn_block(&manager, SVC);
    drop(manager);

    assert_eq!(woke(block).await, t0 + ms(300));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_lease_ending_beyond_584_years_is_refused_as_too_long() {
    // The manager keeps instants as a `u64` of nanoseconds since it started: a lease
    // ending later than that can say is refused, not silently shortened (a holder
    // would believe a guarantee the manager does not keep).
    paused_clock().await;
    let manager = ManagerActor::new().start();
    let centuries = Duration::from_secs(600 * 365 * 86_400);
    let refused = ask(&manager, claim(U0, centuries)).await;
    assert!(
        matches!(&refused, Err(LeaseError::Invalid(m)) if m.contains("too long")),
        "{refused:?}"
    );
    assert_eq!(leader(&manager).await, None);
    // Nor may the holder renew to it: its lease stays as it was.
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let lease = leader(&manager).await;
    let refused = ask(&manager, claim(U0, centuries)).await;
    assert!(
        matches!(refused, Err(LeaseError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(leader(&manager).await, lease);
    // Well within the range (a century) is granted.
    let century = Duration::from_secs(100 * 365 * 86_400);
    assert_eq!(ask(&manager, claim(U0, century)).await, Ok(()));
    let now = Instant::now();
    assert_eq!(leader(&manager).await.unwrap().expires, now + century);
}

#[actix_rt::test(system = "PausedSystem")]
async fn invalid_input_is_rejected_and_the_manager_keeps_serving() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, ms(100))).await.unwrap();
    let lease = leader(&manager).await;

    let bad_claims = [
        claim(U1, Duration::ZERO),
        claim(U1, Duration::MAX),
        claim(U0, Duration::ZERO),
        claim(U0, Duration::MAX),
        claim("led-service/x", ms(100)),
        claim("led-service/007", ms(100)),
        claim("", ms(100)),
        claim("other/0", ms(100)),
        claim_for("", "/0", ms(100)),
        claim_for("", "", ms(100)),
        claim_for("Bad", "Bad/0", ms(100)),
        claim_for("my_sql", "my_sql/0", ms(100)),
    ];
    for bad in bad_claims {
        let answer = ask(&manager, bad.clone()).await;
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{bad:?}: {answer:?}"
        );
    }
    let bad_releases = [
        release("led-service/x"),
        release("other/0"),
        ReleaseLeadership {
            service: "".into(),
            unit: "".into(),
        },
    ];
    for bad in bad_releases {
        let answer = ask(&manager, bad.clone()).await;
        assert!(
            matches!(answer, Err(LeaseError::Invalid(_))),
            "{bad:?}: {answer:?}"
        );
    }
    for service in ["", "Bad", "led-service/0", "-x"] {
        let (answer, _) = within_an_hour(spawn_block(&manager, service))
            .await
            .unwrap();
        assert!(
            matches!(answer.unwrap(), Err(LeaseError::Invalid(_))),
            "{service:?}"
        );
        assert_eq!(leader_of(&manager, service).await, None);
    }

    // Nothing changed, and the manager still serves valid requests.
    assert_eq!(leader(&manager).await, lease);
    assert_eq!(
        ask(&manager, claim(U1, ms(100))).await,
        Err(LeaseError::ClaimDenied)
    );
    assert_eq!(ask(&manager, claim(U0, ms(200))).await, Ok(()));
    assert_eq!(
        ask(&manager, claim_for("fresh", "fresh/1", ms(100))).await,
        Ok(())
    );
    assert!(manager.connected());
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_recovering_manager_refuses_claims_until_its_grace_ends() {
    let t0 = paused_clock().await;
    let grace = ms(5_000);
    let manager = ManagerActor::recovering(grace).start();

    assert_eq!(
        ask(&manager, claim(U0, ms(100))).await,
        Err(LeaseError::ClaimDenied)
    );
    assert!(matches!(
        ask(&manager, claim(U0, Duration::ZERO)).await,
        Err(LeaseError::Invalid(_))
    ));
    assert!(matches!(
        ask(&manager, claim("other/0", ms(100))).await,
        Err(LeaseError::Invalid(_))
    ));
    assert_eq!(leader(&manager).await, None);
    assert_eq!(
        ask(&manager, release(U0)).await,
        Err(LeaseError::NotHeld { unit: U0.into() })
    );
    let blocks = [spawn_block(&manager, SVC), spawn_block(&manager, "other")];

    advance(grace - Duration::from_nanos(1)).await;
    settle().await;
    assert_eq!(
        ask(&manager, claim(U1, ms(100))).await,
        Err(LeaseError::ClaimDenied)
    );
    assert!(blocks.iter().all(|b| !b.is_finished()), "woke during grace");

    // Back onto the tick grid: the grace ends now.
    advance(Duration::from_nanos(1)).await;
    for block in blocks {
        assert_eq!(woke(block).await, t0 + grace);
    }
    assert_eq!(ask(&manager, claim(U1, ms(100))).await, Ok(()));
    assert_eq!(leader(&manager).await.unwrap().holder, U1);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_claim_at_the_end_of_the_grace_comes_after_the_grace_blocks() {
    // The claim is handled at the grace's last instant before the grace timer runs:
    // blocks from the grace must still answer `Ok`, not wait for the new lease.
    let t0 = paused_clock().await;
    let grace = ms(1_000);
    let manager = ManagerActor::recovering(grace).start();
    assert_eq!(leader(&manager).await, None); // the actor has started at t0
    let block = spawn_block(&manager, SVC);
    handled(&manager).await;

    advance(grace).await;
    assert_eq!(ask(&manager, claim(U0, ms(100))).await, Ok(()));
    assert_eq!(woke(block).await, t0 + grace);
    // A block sent now waits for the new lease.
    let (answer, at) = within_an_hour(spawn_block(&manager, SVC)).await.unwrap();
    assert_eq!(answer.unwrap(), Ok(()));
    assert_eq!(at, t0 + grace + ms(100));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_recovering_manager_measures_its_grace_from_its_start() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::recovering(ms(1_000));
    advance(ms(5_000)).await; // built long before it is started: no grace used up
    let manager = manager.start();
    assert_eq!(
        ask(&manager, claim(U0, ms(100))).await,
        Err(LeaseError::ClaimDenied)
    );
    advance(ms(1_000)).await;
    assert_eq!(ask(&manager, claim(U0, ms(100))).await, Ok(()));
    assert_eq!(
        leader(&manager).await.unwrap().expires,
        t0 + ms(6_000) + ms(100)
    );
}

#[actix_rt::test(system = "PausedSystem")]
async fn stopping_a_recovering_manager_cancels_blocks_waiting_for_the_grace() {
    paused_clock().await;
    let manager = ManagerActor::recovering(ms(1_000)).start();
    let block = spawn_block(&manager, SVC);
    handled(&manager).await;
    manager.send(StopManager).await.unwrap();
    let (answer, _) = within_an_hour(block).await.unwrap();
    assert_eq!(answer.unwrap(), Err(LeaseError::BlockCancelled));
}

#[actix_rt::test(system = "PausedSystem")]
async fn ten_thousand_leases_each_wake_their_block_at_their_own_expiry() {
    const LEASES: u64 = 10_000;
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    let duration = |i: u64| ms(1_000 + (i * 7_919) % 5_000);
    let service = |i: u64| format!("svc{i}");

    for i in 0..LEASES {
        let unit = format!("svc{i}/{}", i % 3);
        ask(&manager, claim_for(&service(i), &unit, duration(i)))
            .await
            .unwrap();
    }
    let mut blocks = Vec::new();
    for i in 0..LEASES {
        let block = spawn_block(&manager, &service(i));
        if i % 97 == 0 {
            blocks.push((i, block));
        }
    }
    handled(&manager).await;

    // Half-way: exactly the leases due by now have ended.
    let mid = t0 + ms(3_500);
    tokio::time::sleep_until(mid).await;
    let due = |i: u64| t0 + duration(i) <= mid;
    until("the blocks of the leases due by now", || {
        blocks
            .iter()
            .all(|(i, block)| !due(*i) || block.is_finished())
    })
    .await;
    // And no other (checked below).
    settle().await;
    for (i, block) in &blocks {
        let due = t0 + duration(*i) <= mid;
        assert_eq!(block.is_finished(), due, "lease {i}");
        assert_eq!(leader_of(&manager, &service(*i)).await.is_none(), due);
    }

    for (i, block) in blocks {
        let (answer, at) = within_an_hour(block).await.unwrap();
        assert_eq!(answer.unwrap(), Ok(()), "lease {i}");
        assert_eq!(at, t0 + duration(i), "lease {i} woke at the wrong instant");
    }
    tokio::time::sleep_until(t0 + ms(6_000)).await;
    for i in (0..LEASES).step_by(101) {
        assert_eq!(leader_of(&manager, &service(i)).await, None);
    }
}

#[actix_rt::test(system = "PausedSystem")]
async fn years_long_leases_and_graces_end_exactly_on_time() {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    ask(&manager, claim(U0, 5 * YEAR)).await.unwrap();
    tokio::time::sleep(4 * YEAR).await;
    assert_eq!(leader(&manager).await.unwrap().holder, U0);
    let block = tokio::time::timeout(10 * YEAR, spawn_block(&manager, SVC));
    let (answer, at) = block.await.expect("never woke").unwrap();
    assert_eq!(answer.unwrap(), Ok(()));
    assert_eq!(at, t0 + 5 * YEAR);

    let t1 = Instant::now();
    let recovering = ManagerActor::recovering(3 * YEAR).start();
    let block = tokio::time::timeout(10 * YEAR, spawn_block(&recovering, SVC));
    let (answer, at) = block.await.expect("never woke").unwrap();
    assert_eq!(answer.unwrap(), Ok(()));
    assert_eq!(at, t1 + 3 * YEAR);
    assert_eq!(ask(&recovering, claim(U0, ms(1))).await, Ok(()));
}

#[actix_rt::test(system = "PausedSystem")]
async fn grants_carry_the_lease_term_new_holders_get_greater_ones_and_hand_over_moves_it() {
    {
        let manager = ManagerActor::new().start();
        let first = grant(&manager, claim(U0, ms(100))).await.unwrap();
        assert_eq!(leader(&manager).await.unwrap().term, first);
        // An extension keeps the term.
        assert_eq!(grant(&manager, claim(U0, ms(500))).await, Ok(first));
        // Handed over: the successor holds it under a greater term, same expiry.
        let expires = leader(&manager).await.unwrap().expires;
        let hand_over = |unit: &str, successor: &str| HandOverLeadership {
            service: SVC.into(),
            unit: unit.into(),
            successor: successor.into(),
        };
        assert_eq!(ask(&manager, hand_over(U0, U1)).await, Ok(()));
        let lease = leader(&manager).await.unwrap();
        assert_eq!((lease.holder.as_str(), lease.expires), (U1, expires));
        assert!(lease.term > first);
        assert_eq!(grant(&manager, claim(U1, ms(500))).await, Ok(lease.term));
        // Bad hand-overs change nothing.
        assert_eq!(
            ask(&manager, hand_over(U0, U1)).await,
            Err(LeaseError::NotHeld { unit: U0.into() })
        );
        for bad in [
            hand_over(U1, U1),
            hand_over(U1, "other/1"),
            hand_over(U1, "x"),
        ] {
            assert!(matches!(
                ask(&manager, bad).await,
                Err(LeaseError::Invalid(_))
            ));
        }
        assert_eq!(leader(&manager).await, Some(lease.clone()));
        // The same unit granted again after its lease lapsed gets a greater term.
        advance(ms(600)).await;
        let again = grant(&manager, claim(U1, ms(100))).await.unwrap();
        assert!(again > lease.term);
    }
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_replacement_managers_terms_exceed_the_lost_managers() {
    {
        let lost = ManagerActor::new().with_term_floor(1_000).start();
        let old = grant(&lost, claim(U0, ms(100))).await.unwrap();
        assert_eq!(old, 1_001);
        lost.send(StopManager).await.unwrap();
        let recovering = ManagerActor::recovering(ms(200)).start();
        assert_eq!(
            ask(&recovering, claim(U1, ms(100))).await,
            Err(LeaseError::ClaimDenied),
            "in its grace"
        );
        advance(ms(200)).await;
        let new = grant(&recovering, claim(U1, ms(100))).await.unwrap();
        assert!(new > old, "{new} > {old}");
    }
}

type LeaderWatch = watch::Receiver<Option<LeaseInfo>>;

async fn watch_of(manager: &Addr<ManagerActor>, service: &str) -> LeaderWatch {
    manager
        .send(WatchLeader {
            service: service.into(),
        })
        .await
        .expect("manager gone")
        .expect("a valid service")
}

/// The holder and term a watch shows now, marking the value seen.
fn seen(watch: &mut LeaderWatch) -> Option<(String, u64)> {
    watch
        .borrow_and_update()
        .as_ref()
        .map(|lease| (lease.holder.clone(), lease.term))
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_watch_shows_the_lease_at_once_and_every_change_the_instant_it_happens() {
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    let mut early = watch_of(&manager, SVC).await;
    assert_eq!(seen(&mut early), None, "no lease yet");

    // A grant is published before the claim's answer arrives: no settling needed.
    let first = grant(&manager, claim(U0, ms(500))).await.unwrap();
    assert!(early.has_changed().unwrap());
    assert_eq!(seen(&mut early), Some((U0.into(), first)));
    // A late watcher sees the current lease at once, expiry included.
    let mut late = watch_of(&manager, SVC).await;
    assert_eq!(
        late.borrow().as_ref().map(|l| l.expires),
        Some(t0 + ms(500))
    );
    assert_eq!(seen(&mut late), Some((U0.into(), first)));

    // Hand-over: the successor under a greater term.
    ask(
        &manager,
        HandOverLeadership {
            service: SVC.into(),
            unit: U0.into(),
            successor: U1.into(),
        },
    )
    .await
    .unwrap();
    let handed = leader(&manager).await.unwrap().term;
    assert!(handed > first);
    for watch in [&mut early, &mut late] {
        assert_eq!(seen(watch), Some((U1.into(), handed)));
    }

    // Release: nobody leads.
    ask(&manager, release(U1)).await.unwrap();
    for watch in [&mut early, &mut late] {
        assert!(watch.has_changed().unwrap());
        assert_eq!(seen(watch), None);
    }

    // Expiry: published by the timer at the expiry instant, with nobody asking.
    let t1 = Instant::now();
    let third = grant(&manager, claim(U0, ms(300))).await.unwrap();
    assert!(third > handed);
    assert_eq!(seen(&mut early), Some((U0.into(), third)));
    within_an_hour(early.changed()).await.unwrap();
    assert_eq!(Instant::now(), t1 + ms(300));
    assert_eq!(seen(&mut early), None);
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_renewal_publishes_nothing_and_a_lapsed_holder_comes_back_under_a_greater_term() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    let mut watch = watch_of(&manager, SVC).await;
    let first = grant(&manager, claim(U0, ms(100))).await.unwrap();
    seen(&mut watch);
    for _ in 0..10 {
        advance(ms(50)).await;
        grant(&manager, claim(U0, ms(100))).await.unwrap();
        assert!(!watch.has_changed().unwrap(), "renewals are not published");
    }
    // The same holder, after its lease lapsed: a change of term, published.
    advance(ms(100)).await;
    until("the lapse published", || watch.has_changed().unwrap()).await;
    assert_eq!(seen(&mut watch), None);
    let again = grant(&manager, claim(U0, ms(100))).await.unwrap();
    assert!(again > first);
    assert_eq!(seen(&mut watch), Some((U0.into(), again)));
}

#[actix_rt::test(system = "PausedSystem")]
async fn a_claim_at_the_expiry_instant_publishes_the_new_holder() {
    // The claim is queued before the timer's message, so it may well meet the lease
    // before the timer has reaped it: either way the watch ends at the new
    // holder, under a greater term.
    let t0 = paused_clock().await;
    let manager = ManagerActor::new().start();
    let mut watch = watch_of(&manager, SVC).await;
    let first = grant(&manager, claim(U0, ms(200))).await.unwrap();
    seen(&mut watch);
    advance(ms(200)).await;
    assert_eq!(Instant::now(), t0 + ms(200));
    let second = grant(&manager, claim(U1, ms(200))).await.unwrap();
    assert!(second > first);
    assert_eq!(seen(&mut watch), Some((U1.into(), second)));
}

#[actix_rt::test(system = "PausedSystem")]
async fn watching_an_invalid_service_is_invalid_and_the_manager_keeps_serving() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    for bad in ["", "MySQL", "my_sql", "led-service/0", "1mysql"] {
        let answer = manager
            .send(WatchLeader {
                service: bad.into(),
            })
            .await
            .expect("manager runs");
        assert!(
            matches!(&answer, Err(LeaseError::Invalid(m)) if m.contains(&format!("{bad:?}"))),
            "{bad:?}: {answer:?}"
        );
    }
    let mut watch = watch_of(&manager, SVC).await;
    let term = grant(&manager, claim(U0, ms(100))).await.unwrap();
    assert_eq!(seen(&mut watch), Some((U0.into(), term)));
}

#[actix_rt::test(system = "PausedSystem")]
async fn watches_of_other_services_do_not_move_and_a_stopped_manager_closes_them() {
    paused_clock().await;
    let manager = ManagerActor::new().start();
    let mut mine = watch_of(&manager, SVC).await;
    let mut other = watch_of(&manager, "other").await;
    grant(&manager, claim(U0, ms(100))).await.unwrap();
    assert!(mine.has_changed().unwrap());
    assert!(!other.has_changed().unwrap());
    seen(&mut mine);

    manager.send(StopManager).await.unwrap();
    // The manager no longer knows: the value stays, the channel says it is closed.
    assert!(mine.changed().await.is_err());
    assert!(other.changed().await.is_err());
    assert_eq!(mine.borrow().as_ref().map(|l| l.holder.as_str()), Some(U0));
}

#[actix_rt::test(system = "PausedSystem")]
async fn the_stub_answers_watch_leader_with_what_set_leader_sets() {
    let t0 = paused_clock().await;
    let stub = StubManager::start();
    let mut watch = stub
        .addr()
        .send(WatchLeader {
            service: SVC.into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen(&mut watch), None);
    let lease = LeaseInfo {
        holder: U1.into(),
        expires: t0 + ms(100),
        term: 7,
    };
    stub.set_leader(Some(lease.clone()));
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), Some(lease));
    stub.set_leader(None);
    assert_eq!(seen(&mut watch), None);
    stub.stop();
}
