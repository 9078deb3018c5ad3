//! The simulated world and its driver: one service, 3-7 trackers behind fault-injecting
//! proxies, one `ManagerActor`, all on one thread under a paused tokio clock.
//!
//! A run is a pure function of its [`Scenario`] (whose `fault_seed` drives the
//! proxies): the actix `System` runs on a current-thread runtime that starts paused, so
//! nothing depends on real time and every task runs in a fixed order. Time moves only
//! when every task is idle, to the next timer — the driver's [`Step::Advance`] sleeps,
//! the trackers' renewals and timeouts, the proxies' delays, the manager's expiries and
//! grace — in whole milliseconds on tokio's tick grid, except that a [`Step::Stall`]
//! jumps the clock by any number of microseconds at once.
//!
//! # What is recorded, and why `[r, r + d]`
//!
//! Every ticket that resolves `true` becomes an [`Interval`] `[r, r + d]` of its unit,
//! where `r` is the instant the ticket *resolved*. The tracker's promise is about the
//! lease: a ticket it answers at once is answered at the moment `h` it handled the
//! request, while `now < t0 + d` for the last granted claim (sent at `t0`, granted by
//! the manager at some `m ≥ t0` for `2·d`, so the lease covers `[m, m + 2·d)` with
//! `m + 2·d ≥ t0 + 2·d`). A ticket that was parked (a claim was in flight) resolves at
//! `r ≥ h` when the grant that answers it arrives, still with `r < t0' + d` for that
//! grant and with `r ≥ m'` (the answer cannot precede the grant). Either way the lease
//! covers `[r, r + d]`: `m' ≤ r` and `r + d < t0' + 2·d ≤ m' + 2·d`. (It need not cover
//! `h` itself: a parked ticket may have been asked before the manager granted.) The
//! probe task awaiting the ticket records `Instant::now()` when it wakes: under a
//! paused clock a woken task runs before the clock can auto-advance, so that is `r`.
//!
//! Two units' leases from one manager never overlap, and a replacement manager grants
//! nothing until every lease the lost one may have granted has ended (its grace), so
//! intervals of different units must never overlap either — that is what the
//! [checker](super::check) verifies, along with the leases themselves: the proxies
//! record every grant on the wire, and each interval must lie inside its unit's.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use leadership::{Claimer, ManagerActor, StopManager, Tracker, UnitName};
use tokio::time::{sleep, sleep_until, Instant};

use super::proxy::{FaultProxy, FaultRates, Grant, Left, Network};
use super::rng::Rng;
use super::trace::{Ask, Event, Trace, What};

/// The simulated service: units are `sim/0`, `sim/1`, …
pub const SERVICE: &str = "sim";

/// How a lost manager is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// `ManagerActor::recovering(2·d)`: refuses claims for the longest lease the lost
    /// manager may have granted (trackers claim leases of `2·d`). The safe choice.
    Recovering,
    /// `ManagerActor::new()`: grants at once. Unsafe; used to show the checker fails.
    Fresh,
    /// `ManagerActor::recovering(grace)` with a grace of our choosing; shorter than
    /// `2·d` is unsafe, which measures how sensitive the checker is.
    Grace(Duration),
    /// `ManagerActor::new()` behind a grace of `2·d` that the network enforces (claims
    /// denied, blocks held until it ends): leases as safe as with `Recovering`, but
    /// terms restart at 1, below the lost manager's, so a `Fence` turns the new leaders
    /// away. Unsafe for fencing only; used to show the term checks catch it.
    LowTerms,
}

/// One thing the driver does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let this much virtual time pass (every timer due in it fires, in order).
    Advance(Duration),
    /// Freeze the whole process for this long, then jump the clock: every timer due
    /// meanwhile fires late, at once (a starved thread). Sub-millisecond stalls also
    /// knock the clock off tokio's millisecond grid, so later timers are rounded up.
    Stall(Duration),
    /// Ask tracker `slot` a question; a `true` answer is recorded as an interval.
    Probe(usize, Ask),
    /// If tracker `slot` leads now (a `ClaimLeader` answers `true` at once), ask it
    /// `WaitMinion` and note when that resolves: leadership must end no later than
    /// the lease does.
    WatchMinion(usize),
    /// Kill tracker `slot` (clean stop), if it runs.
    Kill(usize),
    /// Start a new tracker in `slot` if its tracker was killed or has failed.
    Restart(usize),
    /// Stop the manager (`StopManager`) and route every proxy to a new one.
    ReplaceManager,
}

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The claim duration `d` of every tracker.
    pub d: Duration,
    /// One entry per tracker: `true` for `Tracker::start_supervised`.
    pub supervised: Vec<bool>,
    /// What the driver does, in order, before the network heals.
    pub steps: Vec<Step>,
    /// Faults the proxies inject until the steps are done; `None` for a clean network.
    pub faults: Option<FaultRates>,
    /// How the driver replaces the manager.
    pub replacement: Replacement,
    /// Seeds the proxies' fault stream.
    pub fault_seed: u64,
}

/// The claim duration of the random simulation. With it, the backoff (first wait
/// 0.5-1 s, doubling, capped at `d`) reaches its cap on the second or third retry.
pub const D: Duration = Duration::from_secs(2);

impl Scenario {
    /// The random scenario of `seed`: 3-7 trackers, each plain or supervised, and 20-60
    /// rounds of "advance, probe, maybe kill, restart or replace the manager". A third
    /// of the advances are short (up to 10 ms), so probes cluster densely around
    /// whatever is happening; the others are up to d/2.
    pub fn random(seed: u64, replacement: Replacement) -> Scenario {
        let mut rng = Rng::new(seed);
        let mut steps_rng = rng.fork();
        let fault_seed = rng.next_u64();
        let rng = &mut steps_rng;
        let d_ms = D.as_millis() as u64;
        let n = rng.range(3, 7) as usize;
        let supervised = (0..n).map(|_| rng.percent(50)).collect();
        let mut steps = Vec::new();
        for _ in 0..rng.range(20, 60) {
            let max = if rng.percent(33) { 10 } else { d_ms / 2 };
            steps.push(Step::Advance(Duration::from_millis(rng.range(1, max))));
            for slot in 0..n {
                if rng.percent(60) {
                    steps.push(Step::Probe(slot, Ask::ClaimLeader));
                }
            }
            if rng.percent(15) {
                steps.push(Step::Probe(rng.index(n), Ask::WaitLeader));
            }
            if rng.percent(20) {
                steps.push(Step::WatchMinion(rng.index(n)));
            }
            match rng.range(0, 99) {
                0..=7 => steps.push(Step::Kill(rng.index(n))),
                8..=19 => steps.push(Step::Restart(rng.index(n))),
                20..=25 => steps.push(Step::ReplaceManager),
                26..=29 => {
                    let max_us = d_ms * 1_000 * 3 / 2;
                    steps.push(Step::Stall(Duration::from_micros(rng.range(1, max_us))));
                }
                _ => {}
            }
        }
        Scenario {
            d: D,
            supervised,
            steps,
            faults: Some(FaultRates::DEFAULT),
            replacement,
            fault_seed,
        }
    }

    /// The grace a replacement manager gets: the longest lease the lost one may have
    /// granted (trackers claim `2·d`), or none for [`Replacement::Fresh`].
    pub fn grace(&self) -> Duration {
        match self.replacement {
            Replacement::Recovering | Replacement::LowTerms => 2 * self.d,
            Replacement::Fresh => Duration::ZERO,
            Replacement::Grace(grace) => grace,
        }
    }
}

/// A `true` ticket: its unit held leadership over `[start, end]` (time since the start
/// of the run; in the simulation `end = start + d`). See the module doc for why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// The tracker slot, i.e. the unit `sim/<slot>`.
    pub slot: usize,
    /// Which incarnation of the slot's tracker answered.
    pub life: u32,
    /// Which question it answered.
    pub ask: Ask,
    /// When the question was asked.
    pub asked: Duration,
    /// When the ticket resolved `true` (`r`).
    pub start: Duration,
    /// `r + d` in the simulation; the etcd fault run (`tests/etcd_faults.rs`), on a
    /// real clock, records a shorter end it can prove (see there).
    pub end: Duration,
}

/// A `true` ticket: the interval it proves, and the [`Guarantee`](leadership::Guarantee)
/// it carried (`Ticket::guarantee()`), its `until` as time since the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    /// `[r, r + d]`, and who answered what when.
    pub interval: Interval,
    /// The guarantee's term: the fencing token a leader would write with.
    pub term: u64,
    /// The guarantee's `until`: leadership under `term` lasts at least until then.
    pub until: Duration,
}

/// A lead scope (`Tracker::lead`) whose work started: when, under which guarantee, and
/// when its future finished or was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The tracker slot.
    pub slot: usize,
    /// Its incarnation.
    pub life: u32,
    /// When `lead` was called.
    pub asked: Duration,
    /// When the work started.
    pub started: Duration,
    /// When the work's future completed or was dropped (cancelled).
    pub ended: Duration,
    /// Whether it completed (`lead` gave `Some`) rather than being cancelled.
    pub finished: bool,
    /// The guarantee the work was given: term and `until`.
    pub term: u64,
    pub until: Duration,
}

/// A `WaitMinion` asked of a tracker that was leading (its `ClaimLeader` had just
/// answered `true` at once), and when it resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinionWatch {
    /// The tracker slot.
    pub slot: usize,
    /// Its incarnation.
    pub life: u32,
    /// When `WaitMinion` was asked (the tracker led then).
    pub asked: Duration,
    /// When it resolved.
    pub resolved: Duration,
    /// What it resolved to: always `false` by contract.
    pub answer: bool,
}

/// What the liveness window saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// When the window opened: the network healed and every tracker runs.
    pub stable_at: Duration,
    /// The latest instant a leader may appear (see [`liveness_bound`]).
    pub deadline: Duration,
    /// When the first `ClaimLeader` of the window answered `true`, if any did.
    pub leader_at: Option<Duration>,
}

/// The time a leader may take to appear once the window opens at `stable_at`: `2·d`
/// (the longest lease still held, by a unit that may be dead or have lost the
/// grant's answer, runs out; leases are `2·d` and granted no later than `stable_at`),
/// plus the longest backoff, `d` (a tracker whose block failed, or a supervised one
/// that restarted, claims again after at most `d`), plus whatever is left of a
/// replacement manager's grace at `stable_at` (up to `2·d` if the manager was replaced
/// by the last fault): no claim is granted before the grace ends.
pub fn liveness_bound(d: Duration, grace_left: Duration) -> Duration {
    2 * d + d + grace_left
}

/// The outcome of one run, ready for the checker.
#[derive(Debug, Clone)]
pub struct Run {
    /// The claim duration.
    pub d: Duration,
    /// Every `true` ticket with its guarantee, in the order they resolved.
    pub promises: Vec<Promise>,
    /// Every lease the manager(s) granted, as the proxies saw it on the wire (a
    /// hand-over counts as a grant to the successor).
    pub grants: Vec<Grant>,
    /// Every release and hand-over the manager(s) accepted.
    pub leaves: Vec<Left>,
    /// Every lead scope whose work started.
    pub scopes: Vec<Scope>,
    /// Every `WaitMinion` asked of a leading tracker that resolved.
    pub minion_watches: Vec<MinionWatch>,
    /// The process stalls, as `[from, to]`: timers due inside one fire late.
    pub stalls: Vec<(Duration, Duration)>,
    /// The liveness window.
    pub liveness: Liveness,
    /// What happened, in order.
    pub trace: Vec<Event>,
    /// How many manager replacements happened.
    pub replacements: u32,
}

impl Run {
    /// The intervals of every `true` ticket, in the order they resolved.
    pub fn intervals(&self) -> Vec<Interval> {
        self.promises.iter().map(|p| p.interval.clone()).collect()
    }
}

/// Runs `scenario` in a fresh actix `System` on a paused clock.
pub fn run(scenario: &Scenario) -> Run {
    // Starting paused puts "now" on tokio's millisecond grid, so every timer fires
    // exactly at its deadline.
    super::paused::PausedSystem::new()
        .block_on(async { Driver::new(scenario).drive(scenario).await })
}

/// One tracker slot: the unit, its proxy, and its current tracker, if any.
struct Slot {
    index: usize,
    unit: UnitName,
    supervised: bool,
    proxy: Addr<FaultProxy>,
    tracker: Option<Tracker>,
    /// Incarnation number of `tracker`, from 1.
    life: u32,
    /// Cleared when the current tracker stops for good.
    alive: Rc<Cell<bool>>,
}

impl Slot {
    /// The current tracker, if it runs.
    fn running(&self) -> Option<&Tracker> {
        self.tracker.as_ref().filter(|_| self.alive.get())
    }
}

/// Performs a scenario's steps, then heals the network and watches for a leader.
struct Driver {
    d: Duration,
    replacement: Replacement,
    grace: Duration,
    start: Instant,
    trace: Trace,
    net: Rc<RefCell<Network>>,
    slots: Vec<Slot>,
    prober: Prober,
    /// When the latest replacement manager's grace ends.
    grace_until: Option<Instant>,
    /// The stalls so far, `[from, to]`.
    stalls: Vec<(Duration, Duration)>,
    replacements: u32,
}

impl Driver {
    /// Sets up the world: the manager, one proxy per tracker; no tracker runs yet.
    fn new(scenario: &Scenario) -> Driver {
        let start = Instant::now();
        let trace = Trace::new(start);
        let manager = ManagerActor::new().start();
        let net = Rc::new(RefCell::new(Network::new(
            manager,
            scenario.faults,
            scenario.d,
            Rng::new(scenario.fault_seed),
            trace.clone(),
        )));
        let slots = scenario
            .supervised
            .iter()
            .enumerate()
            .map(|(slot, &supervised)| Slot {
                index: slot,
                unit: UnitName::new(&format!("{SERVICE}/{slot}")).expect("a valid unit name"),
                supervised,
                proxy: FaultProxy::new(slot, Rc::clone(&net)).start(),
                tracker: None,
                life: 0,
                alive: Rc::new(Cell::new(false)),
            })
            .collect();
        Driver {
            d: scenario.d,
            replacement: scenario.replacement,
            grace: scenario.grace(),
            start,
            trace: trace.clone(),
            net,
            prober: Prober {
                d: scenario.d,
                trace,
                promises: Rc::default(),
                minion_watches: Rc::default(),
            },
            slots,
            grace_until: None,
            stalls: Vec::new(),
            replacements: 0,
        }
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    async fn drive(mut self, scenario: &Scenario) -> Run {
        for slot in 0..self.slots.len() {
            self.start_tracker(slot);
        }
        for step in &scenario.steps {
            self.step(*step).await;
        }
        let liveness = self.stabilise().await;
        Run {
            d: self.d,
            promises: self.prober.promises.borrow().clone(),
            grants: self.net.borrow().grants(),
            leaves: self.net.borrow().leaves(),
            scopes: Vec::new(),
            minion_watches: self.prober.minion_watches.borrow().clone(),
            stalls: self.stalls.clone(),
            liveness,
            trace: self.trace.events(),
            replacements: self.replacements,
        }
    }

    async fn step(&mut self, step: Step) {
        match step {
            Step::Advance(by) => sleep(by).await,
            Step::Stall(by) => {
                self.trace.log(What::Stalled { by });
                let from = self.offset(Instant::now());
                self.stalls.push((from, from + by));
                tokio::time::advance(by).await;
            }
            Step::Probe(slot, ask) => {
                let s = &self.slots[slot];
                if let Some(tracker) = s.running() {
                    actix_rt::spawn(self.prober.ask(slot, s.life, tracker, ask));
                }
            }
            Step::WatchMinion(slot) => {
                let s = &self.slots[slot];
                if let Some(tracker) = s.running() {
                    let watch = self
                        .prober
                        .clone()
                        .watch_minion(slot, s.life, tracker.clone());
                    actix_rt::spawn(watch);
                }
            }
            Step::Kill(slot) => {
                let slot_ref = &mut self.slots[slot];
                if let Some(tracker) = slot_ref.tracker.take() {
                    if slot_ref.alive.get() {
                        self.trace.log(What::Killed {
                            slot,
                            life: slot_ref.life,
                        });
                    }
                    // A supervised tracker stays inert after `kill` until its last
                    // handle drops; dropping ours (and the watcher's, once it has seen
                    // the stop) lets it go.
                    tracker.kill();
                }
            }
            Step::Restart(slot) => {
                if self.slots[slot].running().is_none() {
                    self.start_tracker(slot);
                }
            }
            Step::ReplaceManager => self.replace_manager(),
        }
    }

    /// Starts a new incarnation in `slot`, and a task that notes when it stops.
    fn start_tracker(&mut self, slot: usize) {
        let d = self.d;
        let s = &mut self.slots[slot];
        let claimer = Claimer::new(&s.proxy);
        let tracker = if s.supervised {
            Tracker::start_supervised(s.unit.clone(), claimer, d)
        } else {
            Tracker::start(s.unit.clone(), claimer, d)
        }
        .expect("a valid claim duration");
        s.life += 1;
        s.alive = Rc::new(Cell::new(true));
        s.tracker = Some(tracker.clone());
        let (alive, life, trace) = (Rc::clone(&s.alive), s.life, self.trace.clone());
        trace.log(What::TrackerStarted {
            slot,
            life,
            supervised: s.supervised,
        });
        actix_rt::spawn(async move {
            let report = tracker.wait().await;
            alive.set(false);
            let report = match report {
                Ok(()) => "Ok".to_owned(),
                Err(e) => e.to_string(),
            };
            trace.log(What::TrackerStopped { slot, life, report });
        });
    }

    fn replace_manager(&mut self) {
        let grace_until = Instant::now() + self.grace;
        let manager = match (self.replacement, self.grace) {
            (Replacement::LowTerms, _) | (_, Duration::ZERO) => ManagerActor::new(),
            (_, grace) => ManagerActor::recovering(grace),
        }
        .start();
        let mut net = self.net.borrow_mut();
        if self.replacement == Replacement::LowTerms {
            net.refusing_until = Some(grace_until);
        }
        let old = std::mem::replace(&mut net.manager, manager);
        drop(net);
        old.do_send(StopManager);
        self.grace_until = Some(grace_until);
        self.replacements += 1;
        self.trace.log(What::ManagerReplaced { grace: self.grace });
    }

    /// Heals the network, restarts every tracker that is not running, and watches for
    /// a leader until one appears or the liveness deadline passes.
    async fn stabilise(&mut self) -> Liveness {
        self.net.borrow_mut().heal();
        self.trace.log(What::Healed);
        // Let every fault the healing ends play out (a lost claim now fails, which
        // stops a plain tracker) before restarting what is not running.
        sleep(Duration::from_millis(1)).await;
        for slot in 0..self.slots.len() {
            if self.slots[slot].running().is_none() {
                self.start_tracker(slot);
            }
        }
        let stable_at = Instant::now();
        let grace_left = self.grace_until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(stable_at)
        });
        let deadline = stable_at + liveness_bound(self.d, grace_left);
        self.trace.log(What::Stable {
            deadline: self.offset(deadline),
        });
        let leader: Rc<Cell<Option<Instant>>> = Rc::default();
        for slot in &self.slots {
            if let Some(tracker) = slot.running() {
                let watch = self.prober.clone().watch_for_leadership(
                    slot.index,
                    slot.life,
                    tracker.clone(),
                    deadline,
                    Rc::clone(&leader),
                );
                actix_rt::spawn(watch);
            }
        }
        // Keep probing every tracker while waiting, and for `d` after a leader appears,
        // so the stable phase feeds the safety check too.
        loop {
            let now = Instant::now();
            match leader.get() {
                Some(at) if now >= at + self.d => break,
                None if now > deadline => break,
                _ => {}
            }
            sleep(self.d / 4).await;
            for slot in 0..self.slots.len() {
                self.step(Step::Probe(slot, Ask::ClaimLeader)).await;
            }
        }
        Liveness {
            stable_at: self.offset(stable_at),
            deadline: self.offset(deadline),
            leader_at: leader.get().map(|at| self.offset(at)),
        }
    }
}

/// Asks trackers questions and records the answers; cheap to clone into tasks.
#[derive(Clone)]
struct Prober {
    d: Duration,
    trace: Trace,
    promises: Rc<RefCell<Vec<Promise>>>,
    minion_watches: Rc<RefCell<Vec<MinionWatch>>>,
}

impl Prober {
    /// Asks `tracker` (incarnation `life` of `slot`) one question; the returned future
    /// resolves to the answer, recording it in the trace and, if `true`, as a
    /// [`Promise`].
    fn ask(
        &self,
        slot: usize,
        life: u32,
        tracker: &Tracker,
        ask: Ask,
    ) -> impl Future<Output = bool> + 'static {
        let ticket = match ask {
            Ask::ClaimLeader => tracker.claim_leader(),
            Ask::WaitLeader => tracker.wait_leader(),
            Ask::WaitMinion => tracker.wait_minion(),
        };
        let this = self.clone();
        let asked = self.trace.offset(Instant::now());
        async move {
            let guarantee = ticket.guarantee().await;
            let answer = guarantee.is_some();
            // `r`: see the module doc. This task runs as soon as the ticket resolves,
            // before the paused clock can move.
            let start = this.trace.offset(Instant::now());
            // A `true` WaitMinion breaks the contract; `watch_minion` reports it.
            if let (Some(guarantee), false) = (guarantee, ask == Ask::WaitMinion) {
                this.promises.borrow_mut().push(Promise {
                    interval: Interval {
                        slot,
                        life,
                        ask,
                        asked,
                        start,
                        end: start + this.d,
                    },
                    term: guarantee.term,
                    until: this.trace.offset(guarantee.until),
                });
            }
            this.trace.log(What::Ticket {
                slot,
                life,
                ask,
                asked,
                answer,
            });
            answer
        }
    }

    /// [`Step::WatchMinion`]: if `tracker` leads now, asks `WaitMinion` and notes when
    /// it resolves.
    async fn watch_minion(self, slot: usize, life: u32, tracker: Tracker) {
        let asked = Instant::now();
        let led = self.ask(slot, life, &tracker, Ask::ClaimLeader).await;
        // Only an answer given at once shows the tracker led at this instant.
        if !led || Instant::now() != asked {
            return;
        }
        let asked = self.trace.offset(asked);
        let answer = self.ask(slot, life, &tracker, Ask::WaitMinion).await;
        let resolved = self.trace.offset(Instant::now());
        self.minion_watches.borrow_mut().push(MinionWatch {
            slot,
            life,
            asked,
            resolved,
            answer,
        });
    }

    /// Waits for `tracker` to lead (asking again if a supervised restart answers its
    /// `WaitLeader` false), confirms with a `ClaimLeader`, and notes the first
    /// confirmed instant of any tracker in `leader`. Gives up after `deadline`.
    async fn watch_for_leadership(
        self,
        slot: usize,
        life: u32,
        tracker: Tracker,
        deadline: Instant,
        leader: Rc<Cell<Option<Instant>>>,
    ) {
        while leader.get().is_none() {
            let led = tokio::select! {
                biased;
                answer = self.ask(slot, life, &tracker, Ask::WaitLeader) => answer,
                _ = sleep_until(deadline + Duration::from_millis(1)) => return,
            };
            if led && self.ask(slot, life, &tracker, Ask::ClaimLeader).await {
                if leader.get().is_none() {
                    leader.set(Some(Instant::now()));
                    self.trace.log(What::Leader { slot, life });
                }
                return;
            }
            if !led {
                // The tracker restarted (supervised) or stopped: ask again a tick later
                // rather than spin at one instant.
                sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
