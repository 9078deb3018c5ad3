//! The simulated world and its driver: one service, 3-7 trackers behind fault-injecting
//! proxies, one `ManagerActor`, all on one thread under a paused tokio clock. After the
//! faults and the liveness window comes a hand-over phase (see `Driver::hand_overs`).
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
use futures::channel::oneshot;
use leadership::{Claimer, ManagerActor, Status, StopManager, Tracker, UnitName, WaitMinion};
use tokio::time::{sleep, sleep_until, Instant};

use super::fault::FaultRates;
use super::proxy::{FaultProxy, Grant, Left, Network};
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
    /// Tracker `slot` resigns (`Tracker::resign`), if it runs and its predecessor
    /// stopped at least `d` ago (a new incarnation cannot know its promises).
    Resign(usize),
    /// Tracker `slot` hands its lease over to unit `sim/<to>` (`Tracker::hand_over`),
    /// under the same conditions; `to == slot` must be refused and change nothing.
    HandOver(usize, usize),
    /// Tracker `slot` runs a lead scope (`Tracker::lead`) whose work takes this long.
    Lead(usize, Duration),
    /// Every handle of tracker `slot` is dropped without `kill` (so it must resign),
    /// under the same conditions as [`Step::Resign`].
    DropHandles(usize),
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
    ///
    /// Among them, from a stream of their own (so that the other steps of a seed are
    /// the same with or without them): lead scopes (work of 1-50 ms, or up to 1.5·d,
    /// longer than a resign waits), resigns, hand-overs (to a random unit, now and then
    /// itself) and dropped handles.
    pub fn random(seed: u64, replacement: Replacement) -> Scenario {
        let mut rng = Rng::new(seed);
        let mut steps_rng = rng.fork();
        let fault_seed = rng.next_u64();
        let mut leave_rng = Rng::new(seed ^ 0x1EAF_0F7E_ACE0);
        let leave = &mut leave_rng;
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
            if leave.percent(20) {
                let max = if leave.percent(60) { 50 } else { d_ms * 3 / 2 };
                let work = Duration::from_millis(leave.range(1, max));
                steps.push(Step::Lead(leave.index(n), work));
            }
            match leave.range(0, 99) {
                0..=3 => steps.push(Step::Resign(leave.index(n))),
                4..=6 => steps.push(Step::HandOver(leave.index(n), leave.index(n))),
                7..=8 => steps.push(Step::DropHandles(leave.index(n))),
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

/// A `true` ticket of the simulation: `[r, r + d]` (see the module doc for why).
pub type Interval = super::overlap::Interval<Ask>;

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

/// One resign or hand-over of the hand-over phase (after the liveness window), and the
/// next leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The leaver's slot.
    pub slot: usize,
    /// Its incarnation.
    pub life: u32,
    /// The successor's slot for a hand-over, `None` for a resign.
    pub to: Option<usize>,
    /// When `resign`/`hand_over` was called.
    pub asked: Duration,
    /// The first other unit whose `WaitLeader` answered `true` afterwards, and when.
    pub next: Option<(usize, Duration)>,
    /// The longest delay a proxy could add to one message in the phase.
    pub delay: Duration,
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
    /// The hand-over phase's resigns and hand-overs.
    pub handovers: Vec<Handover>,
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
    /// Tells the current tracker's stop watcher to drop its handle.
    drop_watch: Option<oneshot::Sender<()>>,
    /// When an incarnation of this slot last stopped (killed, failed, resigned).
    stopped_at: Rc<Cell<Option<Instant>>>,
}

impl Slot {
    /// The current tracker, if it runs.
    fn running(&self) -> Option<&Tracker> {
        self.tracker.as_ref().filter(|_| self.alive.get())
    }

    /// The current tracker, if it runs and may leave: the last incarnation before it
    /// stopped at least `d` ago, so none of its promises can still run (a new tracker
    /// inherits the unit's lease but cannot know them; releasing would cut them short).
    fn may_leave(&self, d: Duration) -> Option<&Tracker> {
        let quiet = self
            .stopped_at
            .get()
            .is_none_or(|at| Instant::now() >= at + d);
        self.running().filter(|_| quiet)
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
                drop_watch: None,
                stopped_at: Rc::default(),
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
                scopes: Rc::default(),
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
        let handovers = self.hand_overs(scenario.fault_seed).await;
        // Stop every tracker before the runtime goes, so that none is torn down
        // half-way through a supervised restart.
        for slot in &mut self.slots {
            if let Some(tracker) = slot.tracker.take() {
                tracker.kill();
            }
            if let Some(watch) = slot.drop_watch.take() {
                let _ = watch.send(());
            }
        }
        sleep(Duration::from_millis(1)).await;
        Run {
            d: self.d,
            promises: self.prober.promises.borrow().clone(),
            grants: self.net.borrow().grants(),
            leaves: self.net.borrow().leaves(),
            scopes: self.prober.scopes.borrow().clone(),
            handovers,
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
                    let watch = self.prober.clone().watch_minion(slot, s.life, tracker);
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
                // Not while the last incarnation is still resigning (two trackers of
                // one unit are not a deployment), nor while its release is on its way.
                if !self.slots[slot].alive.get() && !self.net.borrow().leaving(slot) {
                    self.start_tracker(slot);
                }
            }
            Step::ReplaceManager => self.replace_manager(),
            Step::Resign(slot) => self.leave(slot, None),
            Step::HandOver(slot, to) => self.leave(slot, Some(to)),
            Step::Lead(slot, work) => {
                let s = &self.slots[slot];
                if let Some(tracker) = s.running() {
                    let scope = self.prober.lead(slot, s.life, tracker.clone(), work);
                    actix_rt::spawn(scope);
                }
            }
            Step::DropHandles(slot) => {
                let d = self.d;
                let s = &mut self.slots[slot];
                if s.may_leave(d).is_some() {
                    self.trace.log(What::HandlesDropped { slot, life: s.life });
                    s.tracker = None;
                    if let Some(watch) = s.drop_watch.take() {
                        let _ = watch.send(());
                    }
                }
            }
        }
    }

    /// Makes tracker `slot` resign, or hand over to `sim/<to>`, in a task that notes
    /// the outcome.
    fn leave(&mut self, slot: usize, to: Option<usize>) {
        let s = &self.slots[slot];
        let Some(tracker) = s.may_leave(self.d).cloned() else {
            return;
        };
        let (life, trace) = (s.life, self.trace.clone());
        let successor = to.map(|to| self.slots[to].unit.clone());
        trace.log(What::Leaving { slot, life, to });
        actix_rt::spawn(async move {
            let report = match successor {
                Some(successor) => tracker.hand_over(successor).await,
                None => tracker.resign().await,
            };
            let report = match report {
                Ok(()) => "Ok".to_owned(),
                Err(e) => e.to_string(),
            };
            trace.log(What::Left { slot, life, report });
        });
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
        let (drop_watch, dropped) = oneshot::channel();
        s.drop_watch = Some(drop_watch);
        let (alive, life, trace) = (Rc::clone(&s.alive), s.life, self.trace.clone());
        let stopped_at = Rc::clone(&s.stopped_at);
        trace.log(What::TrackerStarted {
            slot,
            life,
            supervised: s.supervised,
        });
        actix_rt::spawn(async move {
            let mut status = tracker.status();
            let report = tokio::select! {
                biased;
                report = tracker.wait() => Some(report),
                Ok(()) = dropped => None,
            };
            let report = match report {
                Some(Ok(())) => "Ok".to_owned(),
                Some(Err(e)) => e.to_string(),
                None => {
                    // Every handle is gone (the driver's went first): the tracker
                    // resigns; its status says when it has stopped.
                    drop(tracker);
                    while !matches!(*status.borrow_and_update(), Status::Stopped) {
                        if status.changed().await.is_err() {
                            break;
                        }
                    }
                    "stopped (every handle dropped)".to_owned()
                }
            };
            alive.set(false);
            stopped_at.set(Some(Instant::now()));
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
        // A tracker still resigning (its handles dropped, or a resign under way) stops
        // within `d` of it on a healed network; restart it only then.
        let patience = Instant::now() + 2 * self.d;
        while Instant::now() < patience
            && self
                .slots
                .iter()
                .any(|s| s.tracker.is_none() && s.alive.get())
        {
            sleep(self.d / 20).await;
        }
        for slot in 0..self.slots.len() {
            if !self.slots[slot].alive.get() {
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

impl Driver {
    /// The hand-over phase: a rolling restart on a network that only delays (each
    /// message by at most d/10). Three times: find the leader by its `status()` (which
    /// promises nothing), maybe start a lead scope and maybe ask it a `ClaimLeader` (a
    /// promise), make it resign or hand over to a random running unit, watch the
    /// others' `status()` for the next leader, then restart the leaver once it has
    /// stopped — so the next hand-over may name a unit that has only just started.
    async fn hand_overs(&mut self, seed: u64) -> Vec<Handover> {
        let mut rng = Rng::new(seed ^ 0x4A4D_0FE5);
        let cap = self.d / 10;
        self.net.borrow_mut().unheal(FaultRates::DELAYS, cap);
        self.trace.log(What::Delaying { cap });
        let mut handovers = Vec::new();
        for _ in 0..3 {
            let Some(slot) = self.find_leader().await else {
                break;
            };
            if rng.percent(50) {
                let work = Duration::from_millis(rng.range(1, 2 * self.d.as_millis() as u64));
                self.step(Step::Lead(slot, work)).await;
            }
            sleep(Duration::from_millis(rng.range(1, 50))).await;
            if rng.percent(50) {
                self.step(Step::Probe(slot, Ask::ClaimLeader)).await;
            }
            sleep(Duration::from_millis(rng.range(0, 10))).await;
            let others: Vec<usize> = (0..self.slots.len())
                .filter(|&o| o != slot && self.slots[o].running().is_some())
                .collect();
            if others.is_empty() || self.slots[slot].may_leave(self.d).is_none() {
                break;
            }
            let to = rng.percent(50).then(|| others[rng.index(others.len())]);
            let asked = Instant::now();
            let life = self.slots[slot].life;
            let mut leaver = self.slots[slot].running().map(Tracker::status);
            self.leave(slot, to);
            // The horizon is at most `d` away; a successor that must wait for the
            // handed-over lease to expire waits up to `2·d` after that.
            let deadline = asked + 4 * self.d;
            let next = self.first_leader(&others, deadline).await;
            handovers.push(Handover {
                slot,
                life,
                to,
                asked: self.offset(asked),
                next: next.map(|(o, at)| (o, self.offset(at))),
                delay: cap,
            });
            if let Some(status) = &mut leaver {
                let stopped = status.wait_for(|s| matches!(s, Status::Stopped));
                let _ = tokio::time::timeout_at(deadline + self.d, stopped).await;
            }
            if !self.slots[slot].alive.get() {
                self.start_tracker(slot);
            }
        }
        self.net.borrow_mut().heal();
        self.trace.log(What::Healed);
        handovers
    }

    /// The running tracker whose `status()` says it leads (waiting up to 3·d for one).
    async fn find_leader(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&slot| self.slots[slot].running().is_some())
            .collect();
        let deadline = Instant::now() + 3 * self.d;
        self.first_leader(&running, deadline)
            .await
            .map(|(slot, _)| slot)
    }

    /// The first of `slots` whose tracker's `status()` says it leads, and when, if one
    /// does by `deadline`.
    async fn first_leader(&self, slots: &[usize], deadline: Instant) -> Option<(usize, Instant)> {
        let watches: Vec<_> = slots
            .iter()
            .filter_map(|&slot| {
                let status = self.slots[slot].running()?.status();
                Some(Box::pin(leads(slot, status)))
            })
            .collect();
        if watches.is_empty() {
            return None;
        }
        tokio::time::timeout_at(deadline, futures::future::select_all(watches))
            .await
            .ok()
            .map(|(first, _, _)| (first, Instant::now()))
    }
}

/// Resolves to `slot` once `status` says its tracker leads; never if it stops first.
async fn leads(slot: usize, mut status: tokio::sync::watch::Receiver<Status>) -> usize {
    if status
        .wait_for(|s| matches!(s, Status::Leader(_)))
        .await
        .is_err()
    {
        futures::future::pending::<()>().await;
    }
    slot
}

/// Asks trackers questions and records the answers; cheap to clone into tasks.
#[derive(Clone)]
struct Prober {
    d: Duration,
    trace: Trace,
    promises: Rc<RefCell<Vec<Promise>>>,
    scopes: Rc<RefCell<Vec<Scope>>>,
    minion_watches: Rc<RefCell<Vec<MinionWatch>>>,
}

/// Records a lead scope's work when it is dropped: completed, or cancelled.
struct ScopeGuard {
    scope: Option<Scope>,
    done: Rc<Cell<bool>>,
    trace: Trace,
    scopes: Rc<RefCell<Vec<Scope>>>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if let Some(mut scope) = self.scope.take() {
            scope.ended = self.trace.offset(Instant::now());
            scope.finished = self.done.get();
            self.trace.log(What::ScopeEnded {
                slot: scope.slot,
                life: scope.life,
                finished: scope.finished,
            });
            self.scopes.borrow_mut().push(scope);
        }
    }
}

impl Prober {
    /// [`Step::Lead`]: runs a lead scope on `tracker` whose work takes `work`, and
    /// records it if it starts.
    fn lead(
        &self,
        slot: usize,
        life: u32,
        tracker: Tracker,
        work: Duration,
    ) -> impl Future<Output = ()> + 'static {
        let this = self.clone();
        let asked = self.trace.offset(Instant::now());
        async move {
            let done = Rc::new(Cell::new(false));
            let started = Rc::new(Cell::new(false));
            let worker = {
                let (this, done, started) = (this.clone(), Rc::clone(&done), Rc::clone(&started));
                move |g: leadership::Guarantee| async move {
                    started.set(true);
                    let started = this.trace.offset(Instant::now());
                    this.trace.log(What::ScopeStarted { slot, life });
                    let _guard = ScopeGuard {
                        scope: Some(Scope {
                            slot,
                            life,
                            asked,
                            started,
                            ended: started,
                            finished: false,
                            term: g.term,
                            until: this.trace.offset(g.until),
                        }),
                        done: Rc::clone(&done),
                        trace: this.trace.clone(),
                        scopes: Rc::clone(&this.scopes),
                    };
                    sleep(work).await;
                    done.set(true);
                }
            };
            // A minion's scope waits to lead; give it up after `d` if it has not
            // started, so that this task does not hold a handle for ever.
            let give_up = async {
                sleep(this.d).await;
                if started.get() {
                    futures::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                _ = tracker.lead(worker) => {}
                _ = give_up => {}
            }
        }
    }

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
        self.answer(slot, life, ticket, ask)
    }

    /// Awaits `ticket`, the answer to `ask` just asked of incarnation `life` of `slot`,
    /// as [`ask`](Prober::ask) does.
    fn answer(
        &self,
        slot: usize,
        life: u32,
        ticket: leadership::Ticket,
        ask: Ask,
    ) -> impl Future<Output = bool> + 'static {
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
    /// It holds no handle while it waits (only the actor's address), so that dropping
    /// every handle can end the tracker.
    fn watch_minion(
        self,
        slot: usize,
        life: u32,
        tracker: &Tracker,
    ) -> impl Future<Output = ()> + 'static {
        let led = self.ask(slot, life, tracker, Ask::ClaimLeader);
        let addr = tracker.addr();
        async move {
            let asked = Instant::now();
            let led = led.await;
            // Only an answer given at once shows the tracker led at this instant.
            if !led || Instant::now() != asked {
                return;
            }
            let Ok(ticket) = addr.send(WaitMinion).await else {
                return;
            };
            self.record_minion_watch(slot, life, asked, ticket).await;
        }
    }

    async fn record_minion_watch(
        self,
        slot: usize,
        life: u32,
        asked: Instant,
        ticket: leadership::Ticket,
    ) {
        let asked = self.trace.offset(asked);
        let answer = self.answer(slot, life, ticket, Ask::WaitMinion).await;
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
            // The ask runs in a task of its own, so that its answer is recorded even
            // after this watch gives up: a tracker counts every `true` it gives as a
            // promise, and so must the checker.
            let (answered, answer) = oneshot::channel();
            let ask = self.ask(slot, life, &tracker, Ask::WaitLeader);
            actix_rt::spawn(async move {
                let _ = answered.send(ask.await);
            });
            let led = tokio::select! {
                biased;
                answer = answer => answer.unwrap_or(false),
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
