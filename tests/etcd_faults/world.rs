//! The world of one seed: its slots (a unit each, with its tracker, proxy and
//! connection), the probes that ask the trackers, and the sampler that asks etcd.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{Claimer, Leader, StopManager, Tracker, UnitName};
use tokio::time::{sleep, Instant};

use crate::process::EtcdProcess;
use crate::proxy::{Net, Proxy};
use crate::records::{ClaimLeader, Interval, MinionCheck, PendingMinion, Records, Sample, Stale};
use crate::rng::Rng;
use crate::secs::Secs;
use crate::{ms, Log, D, SERVICE, UNITS};

/// One tracker slot: unit `faults/<slot>`.
pub struct Slot {
    pub unit: UnitName,
    pub proxy: Addr<Proxy>,
    pub tracker: Option<Tracker>,
    pub life: u32,
    pub alive: Rc<Cell<bool>>,
    /// When to give this slot a new connection (and a tracker, if none runs).
    pub reconnect_at: Option<Instant>,
    /// Killed for good by the last fault: it stays down in the liveness window.
    pub retired: bool,
    pub connecting: bool,
}

impl Slot {
    pub fn running(&self) -> Option<&Tracker> {
        self.tracker.as_ref().filter(|_| self.alive.get())
    }
}

/// New connections, by slot, waiting to be installed.
pub type Inbox = Rc<RefCell<Vec<(usize, Addr<EtcdManager>)>>>;

/// How a seed's world is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long faults last, in ms (drawn from this range).
    pub phase_ms: (u64, u64),
    /// Unit 0 keeps its key under another prefix, so it never competes with the
    /// others: two units lead at once. Unsafe on purpose, to show the checker fails.
    pub split_brain: bool,
}

impl Options {
    pub const DEFAULT: Options = Options {
        phase_ms: (10_000, 12_000),
        split_brain: false,
    };
}

/// The driver of one seed.
pub struct World<'a> {
    pub rng: Rng,
    pub etcd: &'a EtcdProcess,
    pub config: EtcdConfig,
    pub options: Options,
    pub log: Log,
    pub net: Rc<RefCell<Net>>,
    pub slots: Vec<Slot>,
    pub records: Records,
    /// New connections, by slot, waiting to be installed.
    pub inbox: Inbox,
    pub kills: u32,
    pub stops: u32,
    pub leader_gone: bool,
}

impl World<'_> {
    pub fn now(&self) -> Duration {
        self.log.offset(Instant::now())
    }

    /// Connects a new `EtcdManager` for `slot` in the background (retrying while etcd
    /// is frozen); [`install`](World::install) puts it in place.
    pub fn connect(&mut self, slot: usize) {
        self.slots[slot].connecting = true;
        self.slots[slot].reconnect_at = None;
        let mut config = self.config.clone();
        if self.options.split_brain && slot == 0 {
            config.prefix.push_str("-elsewhere");
        }
        let (inbox, log) = (Rc::clone(&self.inbox), self.log.clone());
        actix_rt::spawn(async move {
            loop {
                match EtcdManager::connect_with_timeout(config.clone(), ms(500)).await {
                    Ok(manager) => {
                        inbox.borrow_mut().push((slot, manager.start()));
                        return;
                    }
                    Err(e) => {
                        log.log(format!("p{slot} connect failed: {e}"));
                        sleep(ms(200)).await;
                    }
                }
            }
        });
    }

    /// Installs new connections; a slot without a running tracker gets a new one.
    pub fn install(&mut self) {
        let arrived: Vec<_> = self.inbox.borrow_mut().drain(..).collect();
        for (slot, manager) in arrived {
            self.slots[slot].connecting = false;
            if self.slots[slot].retired {
                manager.do_send(StopManager);
                continue;
            }
            let old = self.net.borrow_mut().managers[slot].replace(manager);
            if let Some(old) = old {
                old.do_send(StopManager);
            }
            self.log.log(format!("p{slot} connected to etcd"));
            if self.slots[slot].running().is_none() {
                self.start_tracker(slot);
            }
        }
    }

    pub fn start_tracker(&mut self, slot: usize) {
        let supervised = self.rng.percent(50);
        let s = &mut self.slots[slot];
        s.life += 1;
        let claimer =
            Claimer::from_recipients(s.proxy.clone().recipient(), s.proxy.clone().recipient());
        let tracker = if supervised {
            Tracker::start_supervised(s.unit.clone(), claimer, D)
        } else {
            Tracker::start(s.unit.clone(), claimer, D)
        }
        .expect("d = 1 s is a valid claim duration");
        let alive = Rc::new(Cell::new(true));
        s.alive = Rc::clone(&alive);
        s.tracker = Some(tracker.clone());
        let (life, log) = (s.life, self.log.clone());
        let kind = if supervised { "supervised" } else { "plain" };
        log.log(format!("u{slot}#{life} started ({kind})"));
        actix_rt::spawn(async move {
            let result = tracker.wait().await;
            alive.set(false);
            log.log(format!("u{slot}#{life} stopped: {result:?}"));
        });
    }

    /// A process restart: the tracker (if any) is killed and its connection dropped;
    /// a new connection and tracker follow after `after`.
    pub fn kill(&mut self, slot: usize, after: Duration) {
        let s = &mut self.slots[slot];
        if let Some(tracker) = s.tracker.take() {
            tracker.kill();
            if s.alive.get() {
                self.log
                    .log(format!("KILL u{slot}#{} and its connection", s.life));
                self.kills += 1;
            } else {
                self.log.log(format!(
                    "u{slot}#{} is down: its process restarts in {after:?}",
                    s.life
                ));
            }
        }
        s.alive.set(false);
        if let Some(old) = self.net.borrow_mut().managers[slot].take() {
            old.do_send(StopManager);
        }
        if !s.connecting {
            s.reconnect_at = Some(Instant::now() + after);
        }
    }

    /// One probe round: `ClaimLeader` to every running tracker, sometimes `WaitMinion`.
    pub fn probe(&mut self) {
        let watch_minion = if self.options.split_brain {
            // Unit 0 always leads its own key: its WaitMinion must be caught stale.
            self.rng.percent(30).then_some(0)
        } else {
            self.rng.percent(15).then(|| self.rng.index(UNITS))
        };
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(tracker) = s.running() else { continue };
            let (life, log, records) = (s.life, self.log.clone(), self.records.clone());
            let tracker = tracker.clone();
            let then_minion = watch_minion == Some(slot);
            let sent = Instant::now();
            let ticket = tracker.claim_leader();
            actix_rt::spawn(async move {
                let answer = ticket.await;
                let r = Instant::now();
                if !answer {
                    return;
                }
                // Certainly covered: [r, s + d] (see the module doc).
                let end = sent + D;
                if r < end {
                    let interval = Interval {
                        slot,
                        life,
                        ask: ClaimLeader,
                        asked: log.offset(sent),
                        start: log.offset(r),
                        end: log.offset(end),
                    };
                    log.log(format!(
                        "u{slot}#{life} ClaimLeader sent {} true: covered [{}, {}]",
                        Secs(interval.asked),
                        Secs(interval.start),
                        Secs(interval.end)
                    ));
                    records.intervals.borrow_mut().push(interval);
                } else {
                    records.late_trues.set(records.late_trues.get() + 1);
                    log.log(format!(
                        "u{slot}#{life} ClaimLeader sent {} true only at {} (proves nothing)",
                        Secs(log.offset(sent)),
                        Secs(log.offset(r))
                    ));
                }
                if let Some(stable) = records.stable_at.get() {
                    if sent >= stable && records.leader_at.get().is_none() {
                        records.leader_at.set(Some(r));
                        log.log(format!("LEADER u{slot}#{life}"));
                    }
                }
                if then_minion {
                    let asked = Instant::now();
                    let ticket = tracker.wait_minion();
                    records.pending_minions.borrow_mut().push(PendingMinion {
                        slot,
                        life,
                        asked,
                        ticket: ticket.clone(),
                    });
                    let answer = ticket.await;
                    let check = MinionCheck {
                        slot,
                        life,
                        asked: log.offset(asked),
                        resolved: log.offset(Instant::now()),
                        answer,
                    };
                    log.log(format!(
                        "u{slot}#{life} WaitMinion asked {} -> {answer} at {}",
                        Secs(check.asked),
                        Secs(check.resolved)
                    ));
                    records.minion.borrow_mut().push(check);
                }
            });
        }
    }

    /// Notices stopped trackers and due reconnections; installs new connections.
    pub fn tend(&mut self, restart_after: impl Fn(&mut Rng) -> Duration) {
        self.install();
        let now = Instant::now();
        for slot in 0..UNITS {
            let s = &self.slots[slot];
            if s.retired {
                continue;
            }
            if s.tracker.is_some() && !s.alive.get() && s.reconnect_at.is_none() && !s.connecting {
                // A tracker that failed (plain): its process restarts later.
                let after = restart_after(&mut self.rng);
                self.kill(slot, after);
            }
            if self.slots[slot].reconnect_at.is_some_and(|at| at <= now) {
                self.connect(slot);
            }
        }
    }

    /// The holder of the latest sample, as a slot.
    pub fn sampled_leader(&self) -> Option<usize> {
        let samples = self.records.samples.borrow();
        let (holder, _) = samples.iter().rev().find_map(|s| s.seen.clone())?;
        holder.strip_prefix(&format!("{SERVICE}/"))?.parse().ok()
    }
}

/// Samples the key's holder through its own connection until `stop` is set.
pub async fn sample(manager: Addr<EtcdManager>, records: Records, log: Log, stop: Rc<Cell<bool>>) {
    let mut last: Option<Option<(String, u64)>> = None;
    while !stop.get() {
        let q0 = Instant::now();
        let info = manager
            .send(Leader {
                service: SERVICE.into(),
            })
            .await
            .ok()
            .flatten();
        let q1 = Instant::now();
        let seen = info.map(|i| (i.holder, i.term));
        if last.as_ref() != Some(&seen) {
            log.log(format!(
                "etcd key over [{}, {}]: {}",
                Secs(log.offset(q0)),
                Secs(log.offset(q1)),
                seen.as_ref()
                    .map_or("absent".to_owned(), |(h, t)| format!("{h}, term {t}"))
            ));
            last = Some(seen.clone());
        }
        if let Some((holder, _)) = &seen {
            check_stale(&records, &log, holder, q0, q1).await;
        }
        records.samples.borrow_mut().push(Sample {
            q0: log.offset(q0),
            q1: log.offset(q1),
            seen,
        });
        sleep(ms(100)).await;
    }
}

/// etcd read `holder` as the key's holder at some instant `x` in `[q0, q1]`, so every
/// other unit's lease had ended by `x`, and with it (contract rule 8) its tracker's
/// leadership: its timer for that is due at `t0 + 2·d − 2 ms`, before etcd's lease
/// (≥ `t0 + 2·d`) ends. A `WaitMinion` of another unit, asked before `q0`, that is
/// still unresolved afterwards is a stale leader. "Afterwards" is after a 10 ms sleep
/// and a yield, so that a timer due before `x` has been processed and the task it
/// woke has run even if this thread was descheduled meanwhile. `try_wait` reports a
/// resolution whether or not the ticket's own task has run yet.
pub async fn check_stale(records: &Records, log: &Log, holder: &str, q0: Instant, q1: Instant) {
    sleep(ms(10)).await;
    tokio::task::yield_now().await;
    let checked = Instant::now();
    // A ticket is checked until it resolves, and flagged at most once.
    records.pending_minions.borrow_mut().retain(|p| {
        if p.ticket.try_wait().is_some() {
            return false;
        }
        if p.asked > q0 || holder == format!("{SERVICE}/{}", p.slot) {
            return true;
        }
        log.log(format!(
            "STALE: u{}#{} still leads by its WaitMinion, etcd shows {holder}",
            p.slot, p.life
        ));
        records.stale.borrow_mut().push(Stale {
            slot: p.slot,
            life: p.life,
            asked: log.offset(p.asked),
            q0: log.offset(q0),
            q1: log.offset(q1),
            checked: log.offset(checked),
            holder: holder.to_owned(),
        });
        false
    });
}
