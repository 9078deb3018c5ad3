//! The fault-injecting network between each tracker and the lease manager.
//!
//! Every tracker talks to its own [`FaultProxy`] (`Claimer::new(&proxy)`); all proxies
//! share one [`Network`], which knows the current manager, whether faults are on, and
//! the random stream that decides each request's [`Fate`]. Fates are drawn when the
//! proxy *handles* a request; on one thread under a paused clock that order is fixed,
//! so a seed always gives the same fates.
//!
//! What a fault does to a request, and what healing ends, is in [`super::fault`].

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, HandOverLeadership, Leader, LeaseError,
    ManagerActor, ReleaseLeadership,
};

use super::fault::{play, Fate, FaultRates, Heal};
use super::rng::Rng;
use super::trace::{Request, Trace, What};

impl FaultRates {
    /// The rates of the random simulation: 45% of requests meet a fault.
    pub const DEFAULT: FaultRates = FaultRates {
        delay_request: 10,
        delay_answer: 10,
        lose_request: 4,
        lose_answer: 4,
        fail: 6,
        fail_after_forwarding: 6,
        duplicate: 5,
    };

    /// Delays only, of requests or answers, for the hand-over phase: half the requests.
    pub const DELAYS: FaultRates = FaultRates {
        delay_request: 25,
        delay_answer: 25,
        lose_request: 0,
        lose_answer: 0,
        fail: 0,
        fail_after_forwarding: 0,
        duplicate: 0,
    };
}

/// What all proxies share: the current manager and the fault switch.
#[derive(Debug)]
pub struct Network {
    /// Where requests are forwarded; replaced when the driver replaces the manager.
    pub manager: Addr<ManagerActor>,
    /// Until then the network plays a recovering manager's grace in front of a fresh
    /// one: claims are denied, blocks held ([`Replacement::LowTerms`](super::sim::Replacement)).
    pub refusing_until: Option<tokio::time::Instant>,
    /// `None` once healed (or for a fault-free run).
    faults: Option<FaultRates>,
    /// Whether the network has healed, and the faults waiting for it.
    heal: Heal,
    /// The longest delay to draw, if shorter than the usual 1.5·d.
    delay_cap: Option<Duration>,
    /// The claim duration `d`: delays are drawn relative to it.
    d: Duration,
    rng: Rng,
    trace: Trace,
    /// Every lease the manager granted, in order.
    grants: Vec<Grant>,
    /// Every release and hand-over the manager accepted, in order.
    leaves: Vec<Left>,
    /// How many blocks of each slot the manager holds now (forwarded, not answered).
    blocks: std::collections::HashMap<usize, u32>,
    /// How many releases and hand-overs of each slot are on their way (relayed, not
    /// yet answered).
    leaving: std::collections::HashMap<usize, u32>,
}

impl Network {
    /// A network to `manager`, injecting `faults` (if any) drawn from `rng`.
    pub fn new(
        manager: Addr<ManagerActor>,
        faults: Option<FaultRates>,
        d: Duration,
        rng: Rng,
        trace: Trace,
    ) -> Network {
        Network {
            manager,
            refusing_until: None,
            faults,
            heal: Heal::default(),
            delay_cap: None,
            d,
            rng,
            trace,
            grants: Vec::new(),
            leaves: Vec::new(),
            blocks: std::collections::HashMap::new(),
            leaving: std::collections::HashMap::new(),
        }
    }

    /// Whether a release or hand-over of `slot` is still on its way. The protocol names
    /// only the unit, so one that arrives after the unit's next incarnation has claimed
    /// would release *its* lease: the driver restarts a unit only once none is.
    pub fn leaving(&self, slot: usize) -> bool {
        self.leaving.get(&slot).is_some_and(|&n| n > 0)
    }

    /// Every lease granted so far.
    pub fn grants(&self) -> Vec<Grant> {
        self.grants.clone()
    }

    /// Every release and hand-over accepted so far.
    pub fn leaves(&self) -> Vec<Left> {
        self.leaves.clone()
    }

    /// Stops injecting faults and ends every fault still holding a request.
    pub fn heal(&mut self) {
        self.faults = None;
        self.heal.heal();
    }

    /// Injects `faults` again, with delays of at most `cap`, until the next
    /// [`heal`](Network::heal). (Healing woke every waiter, so a fresh [`Heal`] loses
    /// none.)
    pub fn unheal(&mut self, faults: FaultRates, cap: Duration) {
        self.faults = Some(faults);
        self.heal = Heal::default();
        self.delay_cap = Some(cap);
    }

    /// Draws the fate of the next request.
    fn decide(&mut self) -> Fate {
        match self.faults {
            Some(rates) => rates.draw(&mut self.rng, self.d, self.delay_cap),
            None => Fate::Forward,
        }
    }
}

/// A request a proxy relays: a claim (which asks for a lease) or a block.
pub trait Relayed:
    Message<Result = Result<Self::Granted, LeaseError>> + Clone + Send + 'static
where
    ManagerActor: Handler<Self>,
{
    /// What a successful answer carries.
    type Granted: Clone + Send + 'static;
    /// How the trace names it.
    const REQUEST: Request;
    /// The lease a granted request gives, from the instant the manager handles it
    /// (only a claim's does).
    fn lease(&self) -> Option<Duration> {
        None
    }
    /// The term a successful answer carries, if it grants a lease.
    fn term(_granted: &Self::Granted) -> Option<u64> {
        None
    }
    /// Whether the request gives the lease up, and to which unit (a release: `None`).
    fn leaving(&self) -> Option<Option<String>> {
        None
    }
}

impl Relayed for ClaimLeadership {
    type Granted = leadership::Grant;
    const REQUEST: Request = Request::Claim;
    fn lease(&self) -> Option<Duration> {
        Some(self.duration)
    }
    fn term(granted: &leadership::Grant) -> Option<u64> {
        Some(granted.term)
    }
}

impl Relayed for BlockUntilLeadershipReleased {
    type Granted = ();
    const REQUEST: Request = Request::Block;
}

impl Relayed for ReleaseLeadership {
    type Granted = ();
    const REQUEST: Request = Request::Release;
    fn leaving(&self) -> Option<Option<String>> {
        Some(None)
    }
}

impl Relayed for HandOverLeadership {
    type Granted = ();
    const REQUEST: Request = Request::HandOver;
    fn leaving(&self) -> Option<Option<String>> {
        Some(Some(self.successor.clone()))
    }
}

/// An answer as the trace records it: success or the error. Terms are left out: a
/// replacement manager counts them from the system clock, and a trace must be the same
/// on every run of a seed (the checker reads them from [`Grant`]).
fn traced<T>(answer: &Result<T, LeaseError>) -> Result<(), LeaseError> {
    answer.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// A lease the manager granted (or extended) to slot `slot`'s unit, as seen on the
/// wire when the manager answered `Ok`: it covers `[from, until]` (virtual time since
/// the start of the run) whatever happens to the answer afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The unit's slot.
    pub slot: usize,
    /// When the manager handled the claim.
    pub from: Duration,
    /// When the lease it granted ends at the earliest.
    pub until: Duration,
    /// The lease's term, as the manager answered it.
    pub term: u64,
}

/// A release or hand-over the manager accepted from slot `slot`'s unit, at `at`: from
/// then on the unit holds no lease (the successor, if any, holds it under a new term,
/// recorded as a [`Grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The leaver's slot.
    pub slot: usize,
    /// When the manager handled it.
    pub at: Duration,
    /// The successor's slot for a hand-over; `None` for a release.
    pub to: Option<usize>,
    /// How many grants the proxies had recorded before it: its place among them.
    pub grants_before: usize,
    /// For a hand-over: whether the successor had a block at the manager, which the
    /// hand-over wakes. (One that arrives later waits for the lease it now holds.)
    pub successor_blocked: bool,
}

/// The slot of unit `sim/<n>`, if `unit` is one.
fn slot_of(unit: &str) -> Option<usize> {
    unit.strip_prefix("sim/")?.parse().ok()
}

/// The proxy between one tracker (slot `slot`) and the manager.
#[derive(Debug)]
pub struct FaultProxy {
    slot: usize,
    net: Rc<RefCell<Network>>,
}

impl FaultProxy {
    /// A proxy for slot `slot` on `net`.
    pub fn new(slot: usize, net: Rc<RefCell<Network>>) -> FaultProxy {
        FaultProxy { slot, net }
    }

    /// Relays `msg` according to a freshly drawn fate, and traces what it did.
    fn relay<M>(&self, msg: M) -> impl Future<Output = Result<M::Granted, LeaseError>>
    where
        M: Relayed,
        ManagerActor: Handler<M>,
    {
        let (slot, request) = (self.slot, M::REQUEST);
        let leave = matches!(request, Request::Release | Request::HandOver);
        let (fate, healed, trace) = {
            let mut net = self.net.borrow_mut();
            let fate = match net.decide() {
                // A duplicate release names only the unit: delivered after the unit's
                // next incarnation claimed, it would release that lease (seed 6649 of
                // the long run). Releases and hand-overs are not retried.
                Fate::Duplicate(_) if leave => Fate::Forward,
                fate => fate,
            };
            if leave {
                *net.leaving.entry(slot).or_default() += 1;
            }
            (fate, net.heal.until_healed(), net.trace.clone())
        };
        trace.log(What::Relayed {
            slot,
            request,
            fate,
        });
        let net = Rc::clone(&self.net);
        let send = {
            let net = Rc::clone(&net);
            move || {
                let (net, msg) = (Rc::clone(&net), msg.clone());
                async move { forward(&net, slot, msg).await }
            }
        };
        let duplicated = {
            let trace = trace.clone();
            move |answer: Result<M::Granted, LeaseError>| {
                trace.log(What::Duplicated {
                    slot,
                    request,
                    answer: traced(&answer),
                })
            }
        };
        async move {
            let answer = play(fate, healed, send, duplicated).await;
            if leave {
                *net.borrow_mut().leaving.entry(slot).or_default() -= 1;
            }
            trace.log(What::Answered {
                slot,
                request,
                answer: traced(&answer),
            });
            answer
        }
    }
}

/// Sends `msg` to whichever manager is current *now* (after any delay), and notes
/// the lease if the manager grants it.
async fn forward<M>(net: &RefCell<Network>, slot: usize, msg: M) -> Result<M::Granted, LeaseError>
where
    M: Relayed,
    ManagerActor: Handler<M>,
{
    let lease = msg.lease();
    let refusing = net.borrow().refusing_until;
    if let Some(until) = refusing.filter(|&until| tokio::time::Instant::now() < until) {
        if lease.is_some() {
            return Err(LeaseError::ClaimDenied);
        }
        tokio::time::sleep_until(until).await;
    }
    let manager = net.borrow().manager.clone();
    let leaving = msg.leaving();
    let is_block = lease.is_none() && leaving.is_none();
    if is_block {
        *net.borrow_mut().blocks.entry(slot).or_default() += 1;
    }
    // `send` puts the message in the manager's mailbox at once, and the manager handles
    // its mailbox in order: a hand-over wakes the successor's block iff that block was
    // sent (and not yet answered) before the hand-over is.
    let successor_blocked = leaving
        .as_ref()
        .and_then(|to| to.as_deref())
        .and_then(slot_of)
        .is_some_and(|to| net.borrow().blocks.get(&to).is_some_and(|&n| n > 0));
    let answer = manager
        .send(msg)
        .await
        .unwrap_or_else(|e| Err(LeaseError::Failed(format!("manager unreachable: {e}"))));
    if is_block {
        *net.borrow_mut().blocks.entry(slot).or_default() -= 1;
    }
    if let (Some(successor), true) = (leaving, answer.is_ok()) {
        left(net, slot, successor, successor_blocked, &manager).await;
    }
    if let (Some(term), Some(lease)) = (answer.as_ref().ok().and_then(M::term), lease) {
        // The answer arrives at the very instant the manager handled the claim: no
        // virtual time passes while tasks are runnable.
        let mut net = net.borrow_mut();
        let from = net.trace.offset(tokio::time::Instant::now());
        let until = from + lease;
        net.grants.push(Grant {
            slot,
            from,
            until,
            term,
        });
        net.trace.log(What::Granted { slot, until });
    }
    answer
}

/// Records a release or hand-over the manager accepted from `slot`; for a hand-over,
/// asks the manager at once for the successor's lease and records it as a grant.
async fn left(
    net: &RefCell<Network>,
    slot: usize,
    successor: Option<String>,
    successor_blocked: bool,
    manager: &Addr<ManagerActor>,
) {
    let to = successor.as_deref().and_then(slot_of);
    {
        let mut net = net.borrow_mut();
        let at = net.trace.offset(tokio::time::Instant::now());
        let grants_before = net.grants.len();
        net.leaves.push(Left {
            slot,
            at,
            to,
            grants_before,
            successor_blocked,
        });
        net.trace.log(What::Gone { slot, to });
    }
    let Some(to) = to else { return };
    // The answer comes at the instant of the hand-over: no virtual time passes while
    // tasks are runnable. The successor may have extended the lease meanwhile; it keeps
    // the term, and that extension is recorded as a grant of its own.
    let leader = manager
        .send(Leader {
            service: super::sim::SERVICE.to_owned(),
        })
        .await
        .ok()
        .flatten();
    let mut net = net.borrow_mut();
    let from = net.trace.offset(tokio::time::Instant::now());
    match leader {
        Some(lease) if slot_of(&lease.holder) == Some(to) => {
            let until = net.trace.offset(lease.expires);
            net.grants.push(Grant {
                slot: to,
                from,
                until,
                term: lease.term,
            });
            net.trace.log(What::Granted { slot: to, until });
        }
        // The successor's lease already ended (or the manager stopped): nothing held.
        _ => {}
    }
}

impl Actor for FaultProxy {
    type Context = Context<Self>;
}

impl<M> Handler<M> for FaultProxy
where
    M: Relayed,
    ManagerActor: Handler<M>,
{
    type Result = ResponseFuture<Result<M::Granted, LeaseError>>;

    fn handle(&mut self, msg: M, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.relay(msg))
    }
}
