//! The fault proxy between each tracker and its own `EtcdManager` connection: the
//! simulation's fates ([`Fate`], drawn by [`FaultRates::draw`], played by [`play`]),
//! with a connection that a fault or a kill can take away.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use actix::prelude::*;
use leadership::etcd::EtcdManager;
use leadership::{BlockUntilLeadershipReleased, ClaimLeadership, LeaseError};

use crate::fault::{play, Fate, FaultRates, Heal};
use crate::rng::Rng;
use crate::{Log, D};

/// The rates while faults are on: 40% of requests meet one. With `d` = 1 s, delays are
/// up to 100 ms half the time, else up to 1.5 s (beyond the tracker's own timeout of
/// d for a claim).
const RATES: FaultRates = FaultRates {
    delay_request: 10,
    delay_answer: 10,
    lose_request: 3,
    lose_answer: 3,
    fail: 5,
    fail_after_forwarding: 5,
    duplicate: 4,
};

/// What the proxies share: each slot's current connection, the fault switch, the
/// fates' random stream.
pub struct Net {
    /// Each slot's connection, if it has one.
    pub managers: Vec<Option<Addr<EtcdManager>>>,
    /// Whether faults are on.
    pub faults: bool,
    /// The network's heal, which ends every fault still holding a request.
    pub heal: Heal,
    /// The fates' random stream.
    pub rng: Rng,
    /// The run's log.
    pub log: Log,
    /// Requests that met a fault.
    pub faulted: u32,
}

impl Net {
    /// The fate of the next request.
    pub fn decide(&mut self) -> Fate {
        if !self.faults {
            return Fate::Forward;
        }
        let fate = RATES.draw(&mut self.rng, D, None);
        if fate != Fate::Forward {
            self.faulted += 1;
        }
        fate
    }

    /// Stops injecting faults and ends every fault still holding a request.
    pub fn heal(&mut self) {
        self.faults = false;
        self.heal.heal();
    }
}

/// The fault-injecting wire between slot `slot`'s tracker and its `EtcdManager`. With
/// no connection (killed, or stopped by a fault) it answers `Failed` at once.
pub struct Proxy {
    pub slot: usize,
    pub net: Rc<RefCell<Net>>,
}

impl Actor for Proxy {
    type Context = Context<Self>;
}

/// Sends `msg` to the slot's connection as it is *now*.
pub async fn forward<M, T>(net: &RefCell<Net>, slot: usize, msg: M) -> Result<T, LeaseError>
where
    M: Message<Result = Result<T, LeaseError>> + Send + 'static,
    T: Send + 'static,
    EtcdManager: Handler<M>,
{
    let manager = net.borrow().managers[slot].clone();
    match manager {
        None => Err(LeaseError::Failed("no connection to etcd".into())),
        Some(manager) => manager
            .send(msg)
            .await
            .unwrap_or_else(|e| Err(LeaseError::Failed(format!("manager unreachable: {e}")))),
    }
}

pub fn relay<M, T>(
    slot: usize,
    net: Rc<RefCell<Net>>,
    request: &'static str,
    msg: M,
) -> impl Future<Output = Result<T, LeaseError>>
where
    M: Message<Result = Result<T, LeaseError>> + Clone + Send + 'static,
    T: std::fmt::Debug + Send + 'static,
    EtcdManager: Handler<M>,
{
    let (fate, healed, log) = {
        let mut n = net.borrow_mut();
        (n.decide(), n.heal.until_healed(), n.log.clone())
    };
    let send = {
        let net = Rc::clone(&net);
        move || {
            let (net, msg) = (Rc::clone(&net), msg.clone());
            async move { forward(&net, slot, msg).await }
        }
    };
    let duplicated = {
        let log = log.clone();
        move |answer: Result<T, LeaseError>| {
            log.log(format!(
                "p{slot} {request} duplicate answered {answer:?} (dropped)"
            ))
        }
    };
    async move {
        let answer = play(fate, healed, send, duplicated).await;
        log.log(format!("p{slot} {request} [{fate}] -> {answer:?}"));
        answer
    }
}

impl Handler<ClaimLeadership> for Proxy {
    type Result = ResponseFuture<Result<leadership::Grant, LeaseError>>;

    fn handle(&mut self, msg: ClaimLeadership, _: &mut Context<Self>) -> Self::Result {
        Box::pin(relay(self.slot, Rc::clone(&self.net), "Claim", msg))
    }
}

impl Handler<BlockUntilLeadershipReleased> for Proxy {
    type Result = ResponseFuture<Result<(), LeaseError>>;

    fn handle(&mut self, msg: BlockUntilLeadershipReleased, _: &mut Context<Self>) -> Self::Result {
        Box::pin(relay(self.slot, Rc::clone(&self.net), "Block", msg))
    }
}
