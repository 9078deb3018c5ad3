//! Faults between a tracker and its lease manager, shared by the simulation's proxy
//! (`proxy.rs`) and the etcd fault run's (`tests/etcd_faults/`): what a fault does to
//! one request ([`Fate`], played by [`play`]), how often each strikes ([`FaultRates`]),
//! and the moment the network heals ([`Heal`]).
//!
//! Every fault that holds a request (a delay, a lost request or answer, a duplicate
//! not yet delivered) ends when the network heals: delays end early, lost requests
//! answer `Failed("connection reset")` as a client notices a broken connection,
//! pending duplicates are dropped, and an answer that was to be replaced by an error
//! passes if it comes after the heal. After healing a proxy is a wire.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt as _;
use leadership::LeaseError;

use super::rng::Rng;

/// What a proxy decided to do with one request (see [`play`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Forward at once and pass the answer back at once.
    Forward,
    /// Hold the request this long (or until the network heals), then forward it.
    DelayThenForward(Duration),
    /// Forward at once, then hold the answer this long (or until healed).
    ForwardThenDelay(Duration),
    /// Never forward; answer `Failed` when the network heals (a lost request).
    Lose,
    /// Forward, but answer `Failed` only when the network heals (a lost answer).
    ForwardThenLose,
    /// Answer `Failed` at once without forwarding.
    Fail,
    /// Forward, then answer `Failed` instead of the manager's answer.
    ForwardThenFail,
    /// Forward and answer; deliver the request again this much later (unless the
    /// network heals first), discarding the second answer.
    Duplicate(Duration),
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Forward => write!(f, "forward"),
            Fate::DelayThenForward(d) => write!(f, "delay {d:?}, then forward"),
            Fate::ForwardThenDelay(d) => write!(f, "forward, then delay the answer {d:?}"),
            Fate::Lose => write!(f, "lose the request (fails at heal)"),
            Fate::ForwardThenLose => write!(f, "forward, then lose the answer (fails at heal)"),
            Fate::Fail => write!(f, "answer an error"),
            Fate::ForwardThenFail => write!(f, "forward, then answer an error"),
            Fate::Duplicate(d) => write!(f, "forward, and deliver a duplicate in {d:?}"),
        }
    }
}

/// How often each fault strikes while faults are on, in percent of requests.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Hold the request before forwarding it.
    pub delay_request: u64,
    /// Hold the answer after forwarding.
    pub delay_answer: u64,
    /// Lose the request (it fails when the network heals).
    pub lose_request: u64,
    /// Forward, then lose the answer.
    pub lose_answer: u64,
    /// Answer `Failed` without forwarding.
    pub fail: u64,
    /// Forward, then answer `Failed`.
    pub fail_after_forwarding: u64,
    /// Forward and answer, and deliver the request to the manager once more later
    /// (at-least-once delivery; the second answer goes nowhere).
    pub duplicate: u64,
}

impl FaultRates {
    /// Draws the fate of one request from `rng`. Delays are short (up to d/10) half
    /// the time, otherwise up to 1.5·d, which can outlast a claim's timeout (d) or a
    /// lease's guarantee; none is longer than `cap`, if given.
    pub fn draw(&self, rng: &mut Rng, d: Duration, cap: Option<Duration>) -> Fate {
        let d_ms = d.as_millis() as u64;
        let cap = cap.map_or(u64::MAX, |cap| cap.as_millis() as u64);
        let delay = |rng: &mut Rng| {
            let max = if rng.percent(50) {
                d_ms / 10
            } else {
                d_ms * 3 / 2
            };
            Duration::from_millis(rng.range(1, max.min(cap).max(1)))
        };
        let mut roll = rng.range(0, 99);
        let mut pick = |rate: u64| {
            let hit = roll < rate;
            roll = roll.saturating_sub(rate);
            hit
        };
        if pick(self.delay_request) {
            Fate::DelayThenForward(delay(rng))
        } else if pick(self.delay_answer) {
            Fate::ForwardThenDelay(delay(rng))
        } else if pick(self.lose_request) {
            Fate::Lose
        } else if pick(self.lose_answer) {
            Fate::ForwardThenLose
        } else if pick(self.fail) {
            Fate::Fail
        } else if pick(self.fail_after_forwarding) {
            Fate::ForwardThenFail
        } else if pick(self.duplicate) {
            Fate::Duplicate(delay(rng))
        } else {
            Fate::Forward
        }
    }
}

/// The network's heal: faults waiting for it are woken in the order they began (a
/// `tokio::sync::watch` would wake them in a random order, breaking the simulation's
/// replay).
#[derive(Debug, Default)]
pub struct Heal {
    healed: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Heal {
    /// Heals the network: every fault still holding a request ends.
    pub fn heal(&mut self) {
        self.healed = true;
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// A future that resolves once the network has healed (at once if it has).
    pub fn until_healed(&mut self) -> impl Future<Output = ()> + 'static {
        let waiter = (!self.healed).then(|| {
            let (tx, rx) = oneshot::channel();
            self.waiters.push(tx);
            rx
        });
        async move {
            if let Some(rx) = waiter {
                // Cancelled only when the network is dropped, i.e. the run is over.
                if rx.await.is_err() {
                    futures::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Waits `delay`, or less if `healed` resolves first.
async fn hold(delay: Duration, healed: impl Future<Output = ()>) {
    tokio::select! {
        // `biased`: poll in order, not in a random one, so that runs replay exactly.
        biased;
        _ = healed => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

/// Plays one request's `fate` and returns the answer the tracker sees. `send` delivers
/// a copy of the request to the manager as it is when called (at most twice: once, and
/// once more for a duplicate); `healed` resolves when the network heals; `duplicated`
/// hears the answer to a duplicate delivery, which the tracker never sees. Every fault
/// proxy relays through this one function, so a fate means the same everywhere.
pub async fn play<S, F, T>(
    fate: Fate,
    healed: impl Future<Output = ()> + 'static,
    send: S,
    duplicated: impl FnOnce(Result<T, LeaseError>) + 'static,
) -> Result<T, LeaseError>
where
    S: Fn() -> F + 'static,
    F: Future<Output = Result<T, LeaseError>> + 'static,
    T: 'static,
{
    let injected = |what: &str| Err(LeaseError::Failed(format!("injected: {what}")));
    match fate {
        Fate::Forward => send().await,
        Fate::DelayThenForward(delay) => {
            hold(delay, healed).await;
            send().await
        }
        Fate::ForwardThenDelay(delay) => {
            let answer = send().await;
            hold(delay, healed).await;
            answer
        }
        Fate::Lose => {
            healed.await;
            injected("connection reset")
        }
        Fate::ForwardThenLose => {
            // The manager handles it whenever it does (a block may be held long after
            // the heal); the client's connection resets at the heal, answered or not.
            let forwarded = send();
            actix_rt::spawn(async move {
                let _lost = forwarded.await;
            });
            healed.await;
            injected("connection reset")
        }
        Fate::Fail => injected("pow"),
        Fate::ForwardThenFail => {
            let answer = send().await;
            // An answer that comes after the network healed (a block answered long
            // after it was sent) passes: after healing a proxy is a wire.
            match healed.now_or_never() {
                Some(()) => answer,
                None => injected("pow after forwarding"),
            }
        }
        Fate::Duplicate(delay) => {
            let again = send();
            actix_rt::spawn(async move {
                tokio::select! {
                    biased;
                    _ = healed => {}
                    _ = tokio::time::sleep(delay) => duplicated(again.await),
                }
            });
            send().await
        }
    }
}
