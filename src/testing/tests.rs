//! The stub's own tests: every scripted answer, pending block and count it offers.

use std::future::Future;
use std::time::Duration;

use futures::poll;

use super::*;

fn claim(unit: &str) -> ClaimLeadership {
    ClaimLeadership {
        service: "led-service".into(),
        unit: unit.into(),
        duration: Duration::from_secs(10),
    }
}

fn block() -> BlockUntilLeadershipReleased {
    BlockUntilLeadershipReleased {
        service: "led-service".into(),
    }
}

/// Awaits `fut`, failing the test if it does not resolve while the runtime has work.
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not resolve"))
}

#[test]
fn handle_is_send_sync_clone_static() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<StubHandle>();
    check::<StubCall>();
}

#[actix_rt::test]
async fn scripted_answers_come_in_order_then_the_default() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([
        StubAnswer::Deny,
        StubAnswer::Fail(LeaseError::Failed("pow".into())),
    ]);
    stub.script([StubAnswer::Grant, StubAnswer::GrantTerm(9)]);
    stub.set_default(StubAnswer::Deny);
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(stub.addr().send(claim("led-service/0")).await.unwrap());
    }
    assert_eq!(
        answers,
        vec![
            Err(LeaseError::ClaimDenied),
            Err(LeaseError::Failed("pow".into())),
            Ok(Grant::new(1)),
            Ok(Grant::new(9)),
            Err(LeaseError::ClaimDenied),
            Err(LeaseError::ClaimDenied),
        ]
    );
    assert_eq!(stub.claim_count(), 6);
    stub.set_term(4);
    stub.script([StubAnswer::Grant]);
    assert_eq!(
        stub.addr().send(claim("led-service/0")).await.unwrap(),
        Ok(Grant::new(4))
    );
    assert_eq!(stub.block_count(), 0);
}

#[actix_rt::test]
async fn start_with_sets_the_default_and_claimer_reaches_the_stub() {
    tokio::time::pause();
    let stub = StubManager::start_with(StubAnswer::Fail(LeaseError::Invalid("x".into())));
    let claimer = stub.claimer();
    assert_eq!(
        claimer.claim().send(claim("led-service/1")).await.unwrap(),
        Err(LeaseError::Invalid("x".into()))
    );
    stub.set_block_answer(Some(Ok(())));
    assert_eq!(claimer.block().send(block()).await.unwrap(), Ok(()));
    assert_eq!(stub.claim_count(), 1);
    assert_eq!(stub.block_count(), 1);
}

#[actix_rt::test]
async fn hung_claims_wait_until_answered() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([StubAnswer::Hang, StubAnswer::Hang]);
    let mut first = Box::pin(stub.addr().send(claim("led-service/0")));
    let mut second = Box::pin(stub.addr().send(claim("led-service/1")));
    within("two claims", stub.wait_calls(2)).await;
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(poll!(&mut first).is_pending());
    assert!(poll!(&mut second).is_pending());
    assert_eq!(stub.hung_claims(), 2);

    assert_eq!(stub.answer_hung_claims(StubAnswer::Hang), 0);
    assert_eq!(stub.hung_claims(), 2);
    assert!(poll!(&mut first).is_pending());

    assert_eq!(stub.answer_hung_claims(StubAnswer::Deny), 2);
    assert_eq!(stub.hung_claims(), 0);
    assert_eq!(
        within("first", first).await.unwrap(),
        Err(LeaseError::ClaimDenied)
    );
    assert_eq!(
        within("second", second).await.unwrap(),
        Err(LeaseError::ClaimDenied)
    );
    // The script is used up: the default (Grant) answers.
    assert_eq!(
        stub.addr().send(claim("led-service/0")).await.unwrap(),
        Ok(Grant::new(1))
    );
    assert_eq!(stub.answer_hung_claims(StubAnswer::Grant), 0);
}

#[actix_rt::test]
async fn blocks_pend_until_released() {
    tokio::time::pause();
    let stub = StubManager::start();
    let mut first = Box::pin(stub.addr().send(block()));
    let mut second = Box::pin(stub.addr().send(block()));
    within("two blocks", stub.wait_calls(2)).await;
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(poll!(&mut first).is_pending());
    assert!(poll!(&mut second).is_pending());
    assert_eq!((stub.block_count(), stub.pending_blocks()), (2, 2));

    assert_eq!(stub.release_blocks(), 2);
    assert_eq!(within("first", first).await.unwrap(), Ok(()));
    assert_eq!(within("second", second).await.unwrap(), Ok(()));
    assert_eq!((stub.block_count(), stub.pending_blocks()), (2, 0));
    assert_eq!(stub.release_blocks(), 0);
}

#[actix_rt::test]
async fn blocks_pend_until_failed() {
    tokio::time::pause();
    let stub = StubManager::start();
    let mut pending = Box::pin(stub.addr().send(block()));
    within("a block", stub.wait_calls(1)).await;
    assert!(poll!(&mut pending).is_pending());
    assert_eq!(stub.fail_blocks(LeaseError::Failed("pow".into())), 1);
    assert_eq!(
        within("block", pending).await.unwrap(),
        Err(LeaseError::Failed("pow".into()))
    );
    assert_eq!(stub.pending_blocks(), 0);
    assert_eq!(stub.fail_blocks(LeaseError::BlockCancelled), 0);
}

#[actix_rt::test]
async fn set_block_answer_answers_new_blocks_at_once() {
    tokio::time::pause();
    let stub = StubManager::start();
    let mut old = Box::pin(stub.addr().send(block()));
    within("a block", stub.wait_calls(1)).await;

    stub.set_block_answer(Some(Err(LeaseError::Failed("down".into()))));
    assert_eq!(
        stub.addr().send(block()).await.unwrap(),
        Err(LeaseError::Failed("down".into()))
    );
    stub.set_block_answer(Some(Ok(())));
    assert_eq!(stub.addr().send(block()).await.unwrap(), Ok(()));
    // The block pending before is still pending.
    assert!(poll!(&mut old).is_pending());
    assert_eq!((stub.block_count(), stub.pending_blocks()), (3, 1));

    stub.set_block_answer(None);
    let mut new = Box::pin(stub.addr().send(block()));
    within("a fourth block", stub.wait_calls(4)).await;
    assert!(poll!(&mut new).is_pending());
    assert_eq!(stub.release_blocks(), 2);
    assert_eq!(within("old", old).await.unwrap(), Ok(()));
    assert_eq!(within("new", new).await.unwrap(), Ok(()));
}

#[actix_rt::test]
async fn calls_are_recorded_in_order_with_their_instants() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.set_block_answer(Some(Ok(())));
    let t0 = Instant::now();
    stub.addr()
        .send(claim("led-service/0"))
        .await
        .unwrap()
        .unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    stub.addr().send(block()).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_millis(250)).await;
    let release = ReleaseLeadership {
        service: "led-service".into(),
        unit: "led-service/0".into(),
    };
    assert_eq!(stub.addr().send(release.clone()).await.unwrap(), Ok(()));
    let leader = Leader {
        service: "led-service".into(),
    };
    assert_eq!(stub.addr().send(leader.clone()).await.unwrap(), None);
    let info = LeaseInfo {
        holder: "led-service/3".into(),
        expires: t0 + Duration::from_secs(60),
        term: 7,
    };
    stub.set_leader(Some(info.clone()));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(stub.addr().send(leader.clone()).await.unwrap(), Some(info));

    let t1 = t0 + Duration::from_secs(5);
    let t2 = t1 + Duration::from_millis(250);
    let t3 = t2 + Duration::from_secs(1);
    assert_eq!(
        stub.calls(),
        vec![
            StubCall::Claim {
                claim: claim("led-service/0"),
                at: t0
            },
            StubCall::Block {
                block: block(),
                at: t1
            },
            StubCall::Release { release, at: t2 },
            StubCall::Leader {
                leader: leader.clone(),
                at: t2
            },
            StubCall::Leader { leader, at: t3 },
        ]
    );
    assert_eq!(stub.calls()[1].at(), t1);
    assert_eq!(stub.claims(), vec![(claim("led-service/0"), t0)]);
    assert_eq!((stub.claim_count(), stub.block_count()), (1, 1));
}

#[actix_rt::test]
async fn wait_calls_resolves_when_the_nth_call_arrives() {
    tokio::time::pause();
    let stub = StubManager::start();
    assert!(within("zero calls", stub.wait_calls(0)).await.is_empty());

    let mut waiting = pin!(stub.wait_calls(2));
    assert!(poll!(waiting.as_mut()).is_pending());
    stub.addr()
        .send(claim("led-service/0"))
        .await
        .unwrap()
        .unwrap();
    assert!(poll!(waiting.as_mut()).is_pending());
    let _pending = stub.addr().send(block());
    let calls = within("two calls", waiting).await;
    assert_eq!(calls.len(), 2);
    assert!(matches!(calls[1], StubCall::Block { .. }));
    // The block is registered by the time the waiter sees it.
    assert_eq!(stub.pending_blocks(), 1);

    // A waiter for more calls than ever arrive stays pending.
    let never = tokio::time::timeout(Duration::from_secs(1), stub.wait_calls(3)).await;
    assert!(never.is_err());
}

#[actix_rt::test]
async fn stop_cancels_pending_blocks_and_hung_claims() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([StubAnswer::Hang]);
    let pending_block = stub.addr().send(block());
    let hung_claim = stub.addr().send(claim("led-service/0"));
    within("two calls", stub.wait_calls(2)).await;

    stub.stop();
    // Answered by `stop` itself, before the actor has even seen the stop request.
    assert_eq!((stub.pending_blocks(), stub.hung_claims()), (0, 0));
    assert_eq!(
        within("block", pending_block).await.unwrap(),
        Err(LeaseError::BlockCancelled)
    );
    assert_eq!(
        within("claim", hung_claim).await.unwrap(),
        Err(LeaseError::Failed("stub manager stopped".into()))
    );

    // Once the actor has stopped, nothing more gets through.
    let after = within("send after stop", stub.addr().send(block())).await;
    assert!(after.is_err(), "{after:?}");
    assert!(!stub.addr().connected());
    stub.stop();
    assert_eq!(stub.block_count(), 1);
}

#[actix_rt::test]
async fn requests_still_in_the_mailbox_at_stop_do_not_pend() {
    tokio::time::pause();
    let stub = StubManager::start();
    stub.script([StubAnswer::Hang]);
    // Queued, but not handled before `stop`.
    let queued_claim = stub.addr().send(claim("led-service/0"));
    let queued_block = stub.addr().send(block());
    stub.stop();
    assert_eq!(
        within("claim", queued_claim).await,
        Ok(Err(LeaseError::Failed("stub manager stopped".into())))
    );
    assert_eq!(
        within("block", queued_block).await,
        Ok(Err(LeaseError::BlockCancelled))
    );
    assert_eq!(stub.calls().len(), 2);
}

#[actix_rt::test]
async fn dropped_handles_stop_the_stub_and_cancel_blocks() {
    tokio::time::pause();
    let stub = StubManager::start();
    let probe = Arc::clone(&stub.shared);
    let pending = stub.addr().send(block());
    within("a block", stub.wait_calls(1)).await;
    drop(stub);
    // The last address is gone: the actor stops and cancels what it holds.
    assert_eq!(
        within("block", pending).await.unwrap(),
        Err(LeaseError::BlockCancelled)
    );
    assert!(probe.lock().stopped);
}
