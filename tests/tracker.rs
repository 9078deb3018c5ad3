//! Message-level tests of the tracker against a stub manager that records what it
//! receives, in paused virtual time: every rule of the contract's section 4.

use std::time::Duration;

use leadership::testing::{StubAnswer, StubCall, StubHandle, StubManager};
use leadership::{
    ClaimLeader, ClaimLeadership, LeaseError, Ticket, Tracker, TrackerError, UnitName, WaitLeader,
    WaitMinion,
};
use settle::settle;
use tokio::time::{advance, sleep_until, Instant};
use until::until;

#[path = "common/settle.rs"]
mod settle;
#[path = "common/until.rs"]
mod until;

const D: Duration = Duration::from_secs(10);
const NS: Duration = Duration::from_nanos(1);
const MS: Duration = Duration::from_millis(1);

fn unit() -> UnitName {
    UnitName::new("led-service/0").unwrap()
}

/// tokio rounds every timer's deadline up to its next millisecond tick: under paused
/// time a timer fires 1 ms after its deadline. Instants driven by a timer are asserted
/// to lie in `[deadline, deadline + TIMER_SLACK]`: never early, and late only by that.
const TIMER_SLACK: Duration = MS;

#[track_caller]
fn assert_fired_at(actual: Instant, deadline: Instant, what: &str) {
    assert!(actual >= deadline, "{what}: {:?} early", deadline - actual);
    assert!(
        actual <= deadline + TIMER_SLACK,
        "{what}: {:?} late",
        actual - deadline
    );
}

/// Pauses time and starts a tracker on a stub with the given default answer.
async fn start(default: StubAnswer) -> (StubHandle, Tracker, Instant) {
    start_scripted(default, []).await
}

/// Like `start`, with claim answers scripted ahead of the default.
async fn start_scripted<const N: usize>(
    default: StubAnswer,
    script: [StubAnswer; N],
) -> (StubHandle, Tracker, Instant) {
    tokio::time::pause();
    let stub = StubManager::start_with(default);
    stub.script(script);
    let t0 = Instant::now();
    let tracker = Tracker::start(unit(), stub.claimer(), D).unwrap();
    until("the first claim", || stub.claim_count() == 1).await;
    (stub, tracker, t0)
}

fn expected_claim() -> ClaimLeadership {
    ClaimLeadership {
        service: "led-service".into(),
        unit: "led-service/0".into(),
        duration: 2 * D,
    }
}

fn claim_instants(stub: &StubHandle) -> Vec<Instant> {
    stub.claims().into_iter().map(|(_, at)| at).collect()
}

#[actix_rt::test]
async fn leader_success_claims_twice_the_duration_and_answers_true() {
    let (stub, tracker, t0) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    assert!(tracker.claim_leader().await);
    assert_eq!(
        tracker.wait_minion().try_wait(),
        None,
        "pending while leader"
    );
    assert_eq!(stub.claims(), vec![(expected_claim(), t0)]);
    assert_eq!(tracker.service_name(), "led-service");
    assert_eq!(tracker.unit_name(), &unit());
    assert_eq!(tracker.claim_duration(), D);
}

#[actix_rt::test]
async fn tickets_from_messages_behave_like_tickets_from_the_handle() {
    let (_stub, tracker, _) = start(StubAnswer::Grant).await;
    let addr = tracker.addr();
    let leader: Ticket = addr.send(WaitLeader).await.unwrap();
    assert!(leader.await);
    assert!(addr.send(ClaimLeader).await.unwrap().await);
    let minion = addr.send(WaitMinion).await.unwrap();
    assert_eq!(minion.try_wait(), None);
}

#[actix_rt::test]
async fn first_tickets_wait_for_the_first_claim_rather_than_guess() {
    let (stub, tracker, t0) = start(StubAnswer::Hang).await;
    let claim = tracker.claim_leader();
    let minion = tracker.wait_minion();
    advance(D / 2).await;
    settle().await;
    assert_eq!((claim.try_wait(), minion.try_wait()), (None, None));
    assert_eq!(stub.answer_hung_claims(StubAnswer::Grant), 1);
    assert!(claim.await);
    assert_eq!(
        minion.try_wait(),
        None,
        "leader now: WaitMinion stays pending"
    );
    assert_eq!(claim_instants(&stub), vec![t0]);
}

#[actix_rt::test]
async fn denial_blocks_once_then_regains_leadership_when_released() {
    let (stub, tracker, _) = start_scripted(StubAnswer::Grant, [StubAnswer::Deny]).await;
    let leader = tracker.wait_leader();
    until("the block after the denial", || stub.block_count() == 1).await;
    assert!(!tracker.claim_leader().await, "a minion is not leader");
    assert!(
        !tracker.wait_minion().await,
        "WaitMinion resolves at once for a minion"
    );
    assert_eq!(leader.try_wait(), None, "WaitLeader waits while minion");
    advance(D * 3).await;
    settle().await;
    assert_eq!(stub.block_count(), 1, "exactly one block outstanding");
    assert_eq!(stub.claim_count(), 1, "no claims while blocked");
    let released_at = Instant::now();
    assert_eq!(stub.release_blocks(), 1);
    assert!(leader.await);
    let claims = claim_instants(&stub);
    assert_eq!(claims.len(), 2);
    assert_eq!(
        claims[1], released_at,
        "claims again as soon as the block answers"
    );
    assert!(tracker.claim_leader().await);
}

#[actix_rt::test]
async fn losing_leadership_at_renewal_resolves_wait_minion_then_blocks() {
    let (stub, tracker, t0) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    let minion = tracker.wait_minion();
    stub.set_default(StubAnswer::Deny);
    assert!(!minion.clone().await);
    assert_fired_at(Instant::now(), t0 + D, "lost at the renewal");
    assert!(!tracker.claim_leader().await);
    until("a block", || stub.block_count() >= 1).await;
    assert_eq!(stub.block_count(), 1);
    assert!(matches!(stub.calls().last(), Some(StubCall::Block { .. })));
}

#[actix_rt::test]
async fn manager_error_stops_the_tracker_with_leadership_failure() {
    let (_stub, tracker, _) = start(StubAnswer::Fail(LeaseError::Failed("pow".into()))).await;
    let err = tracker.wait().await.unwrap_err();
    assert_eq!(
        err,
        TrackerError::LeadershipFailure(LeaseError::Failed("pow".into()))
    );
    assert_eq!(err.to_string(), "leadership failure: pow");
    assert!(
        !tracker.wait_leader().await,
        "a stopped tracker answers false"
    );
    assert_eq!(tracker.claim_leader().try_wait(), Some(false), "at once");
}

#[actix_rt::test]
async fn manager_gone_stops_the_tracker_at_its_next_claim() {
    let (stub, tracker, t0) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    let minion = tracker.wait_minion();
    stub.stop();
    let err = tracker.wait().await.unwrap_err();
    assert_fired_at(Instant::now(), t0 + D, "noticed at the renewal");
    assert!(
        matches!(&err, TrackerError::LeadershipFailure(LeaseError::Failed(m)) if m.contains("unreachable")),
        "{err}"
    );
    assert_eq!(minion.try_wait(), Some(false));
}

#[actix_rt::test]
async fn kill_resolves_pending_tickets_false_and_sends_nothing() {
    let (stub, tracker, _) = start(StubAnswer::Deny).await;
    let leader = tracker.wait_leader();
    until("the block after the denial", || stub.block_count() == 1).await;
    let calls_before = stub.calls();
    tracker.kill();
    assert!(!leader.await);
    assert_eq!(tracker.wait().await, Ok(()));
    advance(D * 5).await;
    settle().await;
    assert_eq!(stub.calls(), calls_before, "no claim or release on stop");
    // A ticket from a tracker whose actor is gone resolves false at once.
    let late = tracker.claim_leader();
    until("the late ticket's answer", || late.try_wait().is_some()).await;
    assert_eq!(late.try_wait(), Some(false));
    assert!(tracker.addr().send(ClaimLeader).await.is_err());
}

#[actix_rt::test]
async fn kill_of_a_leader_resolves_wait_minion_false() {
    let (_stub, tracker, _) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    let minion = tracker.wait_minion();
    tracker.kill();
    assert!(!minion.await);
    assert_eq!(tracker.wait().await, Ok(()));
}

#[actix_rt::test]
async fn unanswered_renewal_never_yields_true_and_ends_leadership_at_expiry() {
    let (stub, tracker, t0) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    stub.set_default(StubAnswer::Hang);
    let minion = tracker.wait_minion();
    // (The test's own sleep is rounded up too: aim two slacks early to land one early.)
    sleep_until(t0 + D - 2 * TIMER_SLACK).await;
    assert!(Instant::now() < t0 + D);
    assert!(
        tracker.claim_leader().await,
        "d remains just before the renewal"
    );
    // From the renewal on, every ClaimLeader waits for its answer; none is true.
    let mut parked = Vec::new();
    for step in 0..10u32 {
        sleep_until(t0 + D + D * step / 10).await;
        parked.push(tracker.claim_leader());
    }
    settle().await;
    assert!(parked.iter().all(|t| t.try_wait().is_none()));
    assert_eq!(minion.try_wait(), None);
    assert!(!minion.clone().await);
    // Leadership ends 2 ms (tokio's worst timer lateness) before the lease's expiry,
    // so that a late timer never ends it after the lease.
    let expiry = t0 + 2 * D;
    let ended = Instant::now();
    assert!(ended <= expiry, "ended {:?} late", ended - expiry);
    assert!(
        ended >= expiry - 2 * TIMER_SLACK,
        "ended {:?} early",
        expiry - ended
    );
    // The renewal unanswered for d is a failure; the parked tickets answer false.
    let err = tracker.wait().await.unwrap_err();
    assert!(err.to_string().starts_with("leadership failure: "), "{err}");
    until("the parked tickets' answers", || {
        parked.iter().all(|t| t.try_wait().is_some())
    })
    .await;
    assert!(parked.iter().all(|t| t.try_wait() == Some(false)));
    assert_eq!(stub.claim_count(), 2);
}

#[actix_rt::test]
async fn first_claim_unanswered_for_d_is_a_failure() {
    let (stub, tracker, t0) = start(StubAnswer::Hang).await;
    let leader = tracker.wait_leader();
    assert!(matches!(
        tracker.wait().await,
        Err(TrackerError::LeadershipFailure(LeaseError::Failed(_)))
    ));
    assert_fired_at(Instant::now(), t0 + D, "the claim times out after d");
    assert_eq!(leader.try_wait(), Some(false));
    assert_eq!(stub.claim_count(), 1);
}

#[actix_rt::test]
async fn renewal_cadence_is_exactly_once_per_d_over_a_long_run() {
    let (stub, tracker, t0) = start(StubAnswer::Grant).await;
    const PERIODS: u32 = 1_000;
    sleep_until(t0 + D * PERIODS + D / 2).await;
    let claims = claim_instants(&stub);
    assert_eq!(claims.len(), PERIODS as usize + 1, "one claim per d");
    assert_eq!(claims[0], t0);
    for (k, at) in claims.iter().enumerate().skip(1) {
        // Renewals stay on the grid t0 + k·d: the timer's lateness does not accumulate.
        assert_fired_at(*at, t0 + D * k as u32, &format!("renewal {k}"));
    }
    assert_eq!(stub.block_count(), 0);
    assert!(tracker.claim_leader().await);
}

#[actix_rt::test]
async fn failing_block_is_retried_after_a_backoff_not_in_a_hot_loop() {
    let (stub, tracker, t0) = start(StubAnswer::Deny).await;
    let down = LeaseError::Failed("store down".into());
    stub.set_block_answer(Some(Err(down.clone())));
    assert_eq!(stub.fail_blocks(down), 1, "the first block, sent before");
    let horizon = t0 + Duration::from_secs(120);
    sleep_until(horizon).await;
    let calls = stub.calls();
    // Each failed block is followed by a claim no sooner than the backoff.
    let mut last_block = None;
    let mut waits = Vec::new();
    for call in &calls {
        match call {
            StubCall::Block { at, .. } => last_block = Some(*at),
            StubCall::Claim { at, .. } => {
                if let Some(block) = last_block.take() {
                    waits.push(*at - block);
                }
            }
            _ => {}
        }
    }
    assert!(waits.len() >= 10, "keeps retrying: {waits:?}");
    // Each wait is its backoff plus at most the timer's slack. Find the first backoff
    // (whole milliseconds in [0.5 s, 1 s]) that explains every wait by doubling up to d.
    let fits = |first: Duration| {
        let mut backoff = first;
        waits.iter().all(|wait| {
            let ok = *wait >= backoff && *wait <= backoff + TIMER_SLACK;
            backoff = (backoff * 2).min(D);
            ok
        })
    };
    let first_ms = waits[0].as_millis() as u64;
    let first = [first_ms, first_ms.saturating_sub(1)]
        .map(Duration::from_millis)
        .into_iter()
        .find(|first| fits(*first))
        .unwrap_or_else(|| panic!("not a doubling backoff capped at d: {waits:?}"));
    assert!(
        first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
        "the first wait is 0.5-1 s: {waits:?}"
    );
    assert!(*waits.last().unwrap() >= D, "capped at d: {waits:?}");
    assert!(
        calls.len() < 60,
        "no hot loop: {} calls in 120 s",
        calls.len()
    );
    assert!(!tracker.claim_leader().await);
}

#[actix_rt::test]
async fn rejects_invalid_durations() {
    let stub = StubManager::start();
    for bad in [Duration::ZERO, Duration::MAX, Duration::MAX / 2 + NS] {
        assert_eq!(
            Tracker::start(unit(), stub.claimer(), bad).unwrap_err(),
            TrackerError::InvalidDuration(bad)
        );
    }
    assert_eq!(
        TrackerError::InvalidDuration(Duration::ZERO).to_string(),
        "invalid claim duration 0ns"
    );
    assert_eq!(stub.claim_count(), 0);
}

#[actix_rt::test]
async fn tickets_are_delivered_without_being_polled() {
    let (_stub, tracker, _) = start(StubAnswer::Grant).await;
    let ticket = tracker.claim_leader();
    until("the ticket's answer", || ticket.try_wait().is_some()).await;
    assert_eq!(
        ticket.try_wait(),
        Some(true),
        "resolved though never polled"
    );
    assert_eq!(ticket.try_wait(), Some(true));
    assert!(ticket.wait().await);
    assert!(ticket.await);
}

#[actix_rt::test]
async fn parked_tickets_resolve_in_the_order_received() {
    let (stub, tracker, _) = start(StubAnswer::Hang).await;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tickets = [
        tracker.wait_leader(),
        tracker.claim_leader(),
        tracker.wait_leader(),
        tracker.claim_leader(),
    ];
    for (i, ticket) in tickets.iter().cloned().enumerate() {
        let order = order.clone();
        actix_rt::spawn(async move {
            let answer = ticket.await;
            order.lock().unwrap().push((i, answer));
        });
    }
    settle().await;
    assert!(order.lock().unwrap().is_empty(), "all parked");
    assert_eq!(stub.answer_hung_claims(StubAnswer::Grant), 1);
    until("four answers", || order.lock().unwrap().len() == 4).await;
    let expected: Vec<(usize, bool)> = (0..4).map(|i| (i, true)).collect();
    assert_eq!(*order.lock().unwrap(), expected);
}

#[actix_rt::test]
async fn a_flood_of_unpolled_tickets_is_delivered_past_the_mailbox_capacity() {
    let (_stub, tracker, _) = start(StubAnswer::Grant).await;
    assert!(tracker.wait_leader().await);
    // Far more than actix's default mailbox capacity (16), none of them polled.
    let tickets: Vec<Ticket> = (0..1_000).map(|_| tracker.claim_leader()).collect();
    until("every ticket's answer", || {
        tickets.iter().all(|t| t.try_wait().is_some())
    })
    .await;
    assert!(tickets.iter().all(|t| t.try_wait() == Some(true)));
}

#[actix_rt::test]
async fn manager_gone_while_minion_fails_after_the_backoff_not_at_once() {
    let (stub, tracker, _) = start(StubAnswer::Deny).await;
    let leader = tracker.wait_leader();
    until("a block", || stub.pending_blocks() == 1).await;
    assert_eq!(stub.pending_blocks(), 1);
    // The manager goes away: the pending block is cancelled, so the tracker backs off,
    // then its claim cannot be delivered: a leadership failure.
    stub.stop();
    settle().await;
    let stopped_at = Instant::now();
    assert!(
        futures::poll!(Box::pin(tracker.wait())).is_pending(),
        "backing off first"
    );
    let err = tokio::time::timeout(D, tracker.wait())
        .await
        .expect("fails within d of losing the manager")
        .unwrap_err();
    let waited = Instant::now() - stopped_at;
    assert!(
        waited >= Duration::from_millis(500) && waited <= Duration::from_secs(1) + MS,
        "failed after the first backoff: {waited:?}"
    );
    assert!(
        matches!(&err, TrackerError::LeadershipFailure(LeaseError::Failed(m)) if m.contains("unreachable")),
        "{err}"
    );
    assert_eq!(leader.try_wait(), Some(false));
    assert_eq!(
        stub.claim_count(),
        1,
        "the failed claim never reached the stub"
    );
}
