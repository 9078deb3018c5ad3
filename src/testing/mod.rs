//! A scriptable stub lease manager for message-level tests.
//!
//! [`StubManager`] is an actor that handles the manager messages
//! ([`ClaimLeadership`], [`BlockUntilLeadershipReleased`], [`ReleaseLeadership`],
//! [`HandOverLeadership`], [`Leader`]), records every message it receives with the tokio instant it handled it,
//! and answers claims from a script you control through a [`StubHandle`]. Hand
//! [`StubHandle::claimer`] to the code under test (a tracker) and assert on what it sent
//! and when.
//!
//! - Claims are answered by the next scripted [`StubAnswer`] ([`StubHandle::script`]),
//!   or by the default answer once the script is empty ([`StubHandle::set_default`];
//!   [`StubAnswer::Grant`] unless started with [`StubManager::start_with`]). A grant
//!   carries the stub's current term ([`StubHandle::set_term`], 1 at first) unless it
//!   is scripted with its own ([`StubAnswer::GrantTerm`]).
//!   [`StubAnswer::Hang`] keeps a claim unanswered until
//!   [`StubHandle::answer_hung_claims`] or [`StubHandle::stop`].
//! - Blocks pend until [`StubHandle::release_blocks`] or [`StubHandle::fail_blocks`],
//!   unless [`StubHandle::set_block_answer`] says to answer them at once.
//! - Releases and hand-overs answer `Ok(())`, or what [`StubHandle::set_leave_answer`]
//!   set; [`Leader`] answers what [`StubHandle::set_leader`] set (`None` by default),
//!   whatever the service, and [`WatchLeader`] answers a watch that holds that value and
//!   changes with each `set_leader` (not recorded as a call).
//! - Nothing here reads the clock except to timestamp calls, so tests under
//!   `tokio::time::pause()` are exact.
//!
//! The stub validates nothing: it answers malformed requests like any other. It keeps
//! every call it received for its whole life (that is what [`StubHandle::calls`]
//! returns), so it is made for tests, not for long runs: a tracker renewing every
//! second for a simulated day leaves 86 400 calls in it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use leadership::testing::{StubAnswer, StubCall, StubManager};
//! use leadership::{ClaimLeadership, Grant, LeaseError};
//!
//! actix::System::new().block_on(async {
//!     let stub = StubManager::start();
//!     stub.script([StubAnswer::Deny, StubAnswer::Grant]);
//!
//!     let claim = ClaimLeadership {
//!         service: "led-service".into(),
//!         unit: "led-service/0".into(),
//!         duration: Duration::from_secs(30),
//!     };
//!     let first = stub.addr().send(claim.clone()).await.expect("stub is running");
//!     let second = stub.addr().send(claim.clone()).await.expect("stub is running");
//!     assert_eq!(first, Err(LeaseError::ClaimDenied));
//!     assert_eq!(second, Ok(Grant::new(1)));
//!
//!     let calls = stub.calls();
//!     assert_eq!(calls.len(), 2);
//!     assert!(matches!(&calls[0], StubCall::Claim { claim: c, .. } if *c == claim));
//!     assert_eq!(stub.claim_count(), 2);
//!     stub.stop();
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use futures::channel::oneshot;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Grant, HandOverLeadership, Leader,
    LeaseError, LeaseInfo, ReleaseLeadership, WatchLeader,
};

/// How the stub answers one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubAnswer {
    /// `Ok(Grant)` under the stub's current term ([`StubHandle::set_term`]).
    Grant,
    /// `Ok(Grant)` under the given term.
    GrantTerm(u64),
    /// `Err(LeaseError::ClaimDenied)`.
    Deny,
    /// `Err(e)` with the given error.
    Fail(LeaseError),
    /// No answer while the stub runs; see [`StubHandle::answer_hung_claims`]. When the
    /// stub stops, the claim answers `Err(LeaseError::Failed("stub manager stopped"))`.
    Hang,
}

impl StubAnswer {
    /// The reply this answer stands for when the stub's term is `term`, or `None` for
    /// [`StubAnswer::Hang`].
    fn reply(self, term: u64) -> Option<Result<Grant, LeaseError>> {
        match self {
            StubAnswer::Grant => Some(Ok(Grant::new(term))),
            StubAnswer::GrantTerm(term) => Some(Ok(Grant::new(term))),
            StubAnswer::Deny => Some(Err(LeaseError::ClaimDenied)),
            StubAnswer::Fail(e) => Some(Err(e)),
            StubAnswer::Hang => None,
        }
    }
}

/// One message the stub received, with the tokio instant it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubCall {
    /// A [`ClaimLeadership`].
    Claim {
        /// The message as received.
        claim: ClaimLeadership,
        /// When the stub handled it.
        at: Instant,
    },
    /// A [`BlockUntilLeadershipReleased`].
    Block {
        /// The message as received.
        block: BlockUntilLeadershipReleased,
        /// When the stub handled it.
        at: Instant,
    },
    /// A [`ReleaseLeadership`].
    Release {
        /// The message as received.
        release: ReleaseLeadership,
        /// When the stub handled it.
        at: Instant,
    },
    /// A [`HandOverLeadership`].
    HandOver {
        /// The message as received.
        hand_over: HandOverLeadership,
        /// When the stub handled it.
        at: Instant,
    },
    /// A [`Leader`] query.
    Leader {
        /// The message as received.
        leader: Leader,
        /// When the stub handled it.
        at: Instant,
    },
}

impl StubCall {
    /// The instant the stub handled this message.
    pub fn at(&self) -> Instant {
        match self {
            StubCall::Claim { at, .. }
            | StubCall::Block { at, .. }
            | StubCall::Release { at, .. }
            | StubCall::HandOver { at, .. }
            | StubCall::Leader { at, .. } => *at,
        }
    }
}

/// The answer of a claim (`T = Grant`) or block (`T = ()`) still waiting for the test
/// to decide it.
type Responder<T> = oneshot::Sender<Result<T, LeaseError>>;

/// What the handle and the actor share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken (all waiters) after every recorded call, for [`StubHandle::wait_calls`].
    recorded: Notify,
    /// [`StubHandle::set_leader`]'s value: what [`Leader`] answers and [`WatchLeader`]
    /// receivers see.
    leader: tokio::sync::watch::Sender<Option<LeaseInfo>>,
}

#[derive(Debug)]
struct State {
    default: StubAnswer,
    /// The term of [`StubAnswer::Grant`].
    term: u64,
    script: VecDeque<StubAnswer>,
    block_answer: Option<Result<(), LeaseError>>,
    /// The answer to releases and hand-overs.
    leave_answer: Result<(), LeaseError>,
    calls: Vec<StubCall>,
    pending_blocks: Vec<Responder<()>>,
    hung_claims: Vec<Responder<Grant>>,
    /// Set by [`StubHandle::stop`] or when the actor stops: nothing may pend any more.
    stopped: bool,
}

impl State {
    /// Takes every pending block and hung claim, to be answered outside the lock.
    fn take_pending(&mut self) -> (Vec<Responder<()>>, Vec<Responder<Grant>>) {
        (
            std::mem::take(&mut self.pending_blocks),
            std::mem::take(&mut self.hung_claims),
        )
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later stub call into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the stub stopped and answers everything still pending with an error.
    fn shut_down(&self) {
        let (blocks, claims) = {
            let mut state = self.lock();
            state.stopped = true;
            state.take_pending()
        };
        answer_all(blocks, Err(LeaseError::BlockCancelled));
        answer_all(claims, Err(stopped_claim()));
    }
}

/// The answer of a claim that was hanging when the stub stopped.
fn stopped_claim() -> LeaseError {
    LeaseError::Failed("stub manager stopped".into())
}

/// Sends `reply` to every responder whose caller still listens; returns how many.
fn answer_all<T: Clone>(responders: Vec<Responder<T>>, reply: Result<T, LeaseError>) -> usize {
    responders
        .into_iter()
        .map(|tx| tx.send(reply.clone()))
        .filter(|tx_sent| tx_sent.is_ok())
        .count()
}

/// Drops responders nobody listens to any more (their answer task was dropped, e.g.
/// because the System shut down), so that counts report only answerable requests.
fn prune<T>(responders: &mut Vec<Responder<T>>) {
    responders.retain(|tx| !tx.is_canceled());
}

/// The stub lease manager actor. Start it with [`StubManager::start`] or
/// [`StubManager::start_with`] and drive it through the returned [`StubHandle`].
pub struct StubManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for StubManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubManager").finish_non_exhaustive()
    }
}

impl StubManager {
    /// Starts a stub in the current actix System that grants every claim not scripted
    /// otherwise, and keeps blocks pending until released.
    ///
    /// Must be called inside a running System (e.g. in `#[actix_rt::test]`).
    pub fn start() -> StubHandle {
        StubManager::start_with(StubAnswer::Grant)
    }

    /// Starts a stub whose answer to claims, once the script is empty, is `default`.
    ///
    /// Must be called inside a running System.
    pub fn start_with(default: StubAnswer) -> StubHandle {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default,
                term: 1,
                script: VecDeque::new(),
                block_answer: None,
                leave_answer: Ok(()),
                calls: Vec::new(),
                pending_blocks: Vec::new(),
                hung_claims: Vec::new(),
                stopped: false,
            }),
            recorded: Notify::new(),
            leader: tokio::sync::watch::Sender::new(None),
        });
        let addr = Actor::start(StubManager {
            shared: Arc::clone(&shared),
        });
        StubHandle { addr, shared }
    }

    /// Records `call`, then decides under the same lock how to answer it, so a test
    /// woken by [`StubHandle::wait_calls`] always finds the call's responder in place.
    fn record<T>(&self, call: StubCall, decide: impl FnOnce(&mut State) -> T) -> T {
        let decided = {
            let mut state = self.shared.lock();
            state.calls.push(call);
            decide(&mut state)
        };
        self.shared.recorded.notify_waiters();
        decided
    }
}

/// A reply now, or one the test decides later (through `rx`).
fn reply_future<T: 'static>(
    decided: Result<Result<T, LeaseError>, oneshot::Receiver<Result<T, LeaseError>>>,
    on_cancel: LeaseError,
) -> ResponseFuture<Result<T, LeaseError>> {
    match decided {
        Ok(reply) => Box::pin(std::future::ready(reply)),
        Err(rx) => Box::pin(async move { rx.await.unwrap_or(Err(on_cancel)) }),
    }
}

/// Registers a pending responder in `list`, unless the stub is stopping.
fn pend<T>(
    stopped: bool,
    list: &mut Vec<Responder<T>>,
    if_stopped: LeaseError,
) -> Result<Result<T, LeaseError>, oneshot::Receiver<Result<T, LeaseError>>> {
    if stopped {
        return Ok(Err(if_stopped));
    }
    let (tx, rx) = oneshot::channel();
    list.push(tx);
    Err(rx)
}

impl Actor for StubManager {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Covers stops not requested through the handle (e.g. the last address dropped).
        self.shared.shut_down();
    }
}

// Every pending answer is a `ResponseFuture`: actix spawns it on the arbiter, apart
// from the actor (see actix's `handler.rs`), so an answer given through the handle is
// delivered even after the actor has stopped, and the actor never awaits anything.

impl Handler<ClaimLeadership> for StubManager {
    type Result = ResponseFuture<Result<Grant, LeaseError>>;

    fn handle(&mut self, claim: ClaimLeadership, _ctx: &mut Self::Context) -> Self::Result {
        let call = StubCall::Claim {
            claim,
            at: Instant::now(),
        };
        let decided = self.record(call, |state| {
            let answer = match state.script.pop_front() {
                Some(answer) => answer,
                None => state.default.clone(),
            };
            match answer.reply(state.term) {
                Some(reply) => Ok(reply),
                None => pend(state.stopped, &mut state.hung_claims, stopped_claim()),
            }
        });
        reply_future(decided, stopped_claim())
    }
}

impl Handler<BlockUntilLeadershipReleased> for StubManager {
    type Result = ResponseFuture<Result<(), LeaseError>>;

    fn handle(
        &mut self,
        block: BlockUntilLeadershipReleased,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let call = StubCall::Block {
            block,
            at: Instant::now(),
        };
        let decided = self.record(call, |state| match &state.block_answer {
            Some(reply) => Ok(reply.clone()),
            None => pend(
                state.stopped,
                &mut state.pending_blocks,
                LeaseError::BlockCancelled,
            ),
        });
        reply_future(decided, LeaseError::BlockCancelled)
    }
}

impl Handler<ReleaseLeadership> for StubManager {
    type Result = Result<(), LeaseError>;

    /// Records the release and answers `Ok(())`, or what
    /// [`StubHandle::set_leave_answer`] set.
    fn handle(&mut self, release: ReleaseLeadership, _ctx: &mut Self::Context) -> Self::Result {
        let call = StubCall::Release {
            release,
            at: Instant::now(),
        };
        self.record(call, |state| state.leave_answer.clone())
    }
}

impl Handler<HandOverLeadership> for StubManager {
    type Result = Result<(), LeaseError>;

    /// Records the hand-over and answers `Ok(())`, or what
    /// [`StubHandle::set_leave_answer`] set.
    fn handle(&mut self, hand_over: HandOverLeadership, _ctx: &mut Self::Context) -> Self::Result {
        let call = StubCall::HandOver {
            hand_over,
            at: Instant::now(),
        };
        self.record(call, |state| state.leave_answer.clone())
    }
}

impl Handler<WatchLeader> for StubManager {
    type Result = MessageResult<WatchLeader>;

    /// Answers a watch of what [`StubHandle::set_leader`] sets, whatever the service.
    fn handle(&mut self, _: WatchLeader, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(Ok(self.shared.leader.subscribe()))
    }
}

impl Handler<Leader> for StubManager {
    type Result = MessageResult<Leader>;

    /// Records the query and answers what [`StubHandle::set_leader`] set (`None` by
    /// default), whatever the service.
    fn handle(&mut self, leader: Leader, _ctx: &mut Self::Context) -> Self::Result {
        let call = StubCall::Leader {
            leader,
            at: Instant::now(),
        };
        let leader = &self.shared.leader;
        MessageResult(self.record(call, |_| leader.borrow().clone()))
    }
}

/// Asks the stub to stop; sent by [`StubHandle::stop`].
struct StopStub;

impl Message for StopStub {
    type Result = ();
}

impl Handler<StopStub> for StubManager {
    type Result = ();

    fn handle(&mut self, _: StopStub, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// A handle to a started [`StubManager`]: script its answers, inspect what it received.
///
/// Cheap to clone, `Send + Sync`; all clones share one stub. It holds the stub's
/// address, so the stub runs until [`StubHandle::stop`] or until the handle, its clones
/// and every address or [`Claimer`] taken from it are dropped.
#[derive(Clone)]
pub struct StubHandle {
    addr: Addr<StubManager>,
    shared: Arc<Shared>,
}

impl fmt::Debug for StubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("StubHandle")
            .field("connected", &self.addr.connected())
            .field("default", &state.default)
            .field("script", &state.script)
            .field("calls", &state.calls.len())
            .field("pending_blocks", &state.pending_blocks.len())
            .field("hung_claims", &state.hung_claims.len())
            .finish_non_exhaustive()
    }
}

impl StubHandle {
    /// The stub's address, to send it messages directly.
    pub fn addr(&self) -> Addr<StubManager> {
        self.addr.clone()
    }

    /// A [`Claimer`] talking to this stub, for the code under test.
    pub fn claimer(&self) -> Claimer {
        Claimer::new(&self.addr)
    }

    /// Sets the answer to claims that find the script empty.
    pub fn set_default(&self, answer: StubAnswer) {
        self.shared.lock().default = answer;
    }

    /// Queues answers for the next claims, first in first out, after any still queued.
    /// Each is used once, before the default answer applies again.
    pub fn script<I: IntoIterator<Item = StubAnswer>>(&self, answers: I) {
        self.shared.lock().script.extend(answers);
    }

    /// Sets the term of [`StubAnswer::Grant`] answers from now on (1 at first).
    pub fn set_term(&self, term: u64) {
        self.shared.lock().term = term;
    }

    /// Sets what [`Leader`] queries answer from now on, for every service, and
    /// publishes it to every [`WatchLeader`] receiver.
    pub fn set_leader(&self, leader: Option<LeaseInfo>) {
        self.shared.leader.send_replace(leader);
    }

    /// Every message received so far, in the order handled.
    pub fn calls(&self) -> Vec<StubCall> {
        self.shared.lock().calls.clone()
    }

    /// The claims received so far, in order, with the instants they were handled.
    pub fn claims(&self) -> Vec<(ClaimLeadership, Instant)> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter_map(|call| match call {
                StubCall::Claim { claim, at } => Some((claim.clone(), *at)),
                _ => None,
            })
            .collect()
    }

    /// How many claims were received so far.
    pub fn claim_count(&self) -> usize {
        self.count(|call| matches!(call, StubCall::Claim { .. }))
    }

    /// How many blocks were received so far, answered or not.
    pub fn block_count(&self) -> usize {
        self.count(|call| matches!(call, StubCall::Block { .. }))
    }

    fn count(&self, kind: impl Fn(&StubCall) -> bool) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|call| kind(call))
            .count()
    }

    /// How many blocks are waiting for [`release_blocks`](Self::release_blocks) or
    /// [`fail_blocks`](Self::fail_blocks).
    pub fn pending_blocks(&self) -> usize {
        let mut state = self.shared.lock();
        prune(&mut state.pending_blocks);
        state.pending_blocks.len()
    }

    /// How many claims are hanging ([`StubAnswer::Hang`]), waiting for
    /// [`answer_hung_claims`](Self::answer_hung_claims).
    pub fn hung_claims(&self) -> usize {
        let mut state = self.shared.lock();
        prune(&mut state.hung_claims);
        state.hung_claims.len()
    }

    /// Answers every pending block `Ok(())`; returns how many were answered.
    pub fn release_blocks(&self) -> usize {
        let blocks = std::mem::take(&mut self.shared.lock().pending_blocks);
        answer_all(blocks, Ok(()))
    }

    /// Answers every pending block `Err(err)`; returns how many were answered.
    pub fn fail_blocks(&self, err: LeaseError) -> usize {
        let blocks = std::mem::take(&mut self.shared.lock().pending_blocks);
        answer_all(blocks, Err(err))
    }

    /// How blocks received from now on are answered: `None` (the default) keeps them
    /// pending until released or failed through the handle; `Some(reply)` answers each
    /// at once with `reply`. Blocks already pending are not affected.
    pub fn set_block_answer(&self, answer: Option<Result<(), LeaseError>>) {
        self.shared.lock().block_answer = answer;
    }

    /// How releases and hand-overs received from now on are answered (`Ok(())` at
    /// first), e.g. `Err(LeaseError::NotHeld { .. })` to test a failed resign.
    pub fn set_leave_answer(&self, answer: Result<(), LeaseError>) {
        self.shared.lock().leave_answer = answer;
    }

    /// How many releases were received so far.
    pub fn release_count(&self) -> usize {
        self.count(|call| matches!(call, StubCall::Release { .. }))
    }

    /// How many hand-overs were received so far.
    pub fn hand_over_count(&self) -> usize {
        self.count(|call| matches!(call, StubCall::HandOver { .. }))
    }

    /// Answers every hanging claim with `answer`; returns how many were answered.
    /// With [`StubAnswer::Hang`] it does nothing and returns 0.
    pub fn answer_hung_claims(&self, answer: StubAnswer) -> usize {
        let (claims, reply) = {
            let mut state = self.shared.lock();
            let Some(reply) = answer.reply(state.term) else {
                return 0;
            };
            (std::mem::take(&mut state.hung_claims), reply)
        };
        answer_all(claims, reply)
    }

    /// Resolves once at least `n` messages were received, with [`calls`](Self::calls).
    ///
    /// Woken by each recorded call; it never polls or sleeps. It does not resolve if
    /// fewer than `n` messages ever arrive: bound it with `tokio::time::timeout`, which
    /// under `tokio::time::pause()` fires as soon as the runtime is idle.
    pub async fn wait_calls(&self, n: usize) -> Vec<StubCall> {
        loop {
            let mut notified = pin!(self.shared.recorded.notified());
            // Created (and enabled) before looking, so a call recorded in between still
            // wakes us.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.calls.len() >= n {
                    return state.calls.clone();
                }
            }
            notified.await;
        }
    }

    /// Stops the stub. Pending blocks answer `Err(LeaseError::BlockCancelled)` and
    /// hanging claims `Err(LeaseError::Failed("stub manager stopped"))` at once; so do
    /// blocks and hanging claims still in the mailbox. Messages sent afterwards fail
    /// with a mailbox error once the actor has stopped. Idempotent.
    pub fn stop(&self) {
        self.shared.shut_down();
        self.addr.do_send(StopStub);
    }
}

#[cfg(test)]
mod tests;
