//! One seed's run: the fault phase, the heal, and the liveness window.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{StopManager, UnitName};
use tokio::time::{sleep, Instant};

use crate::fault::Heal;
use crate::process::EtcdProcess;
use crate::proxy::{Net, Proxy};
use crate::records::{Outcome, Records};
use crate::rng::Rng;
use crate::secs::Secs;
use crate::world::{sample, Options, Slot, World};
use crate::{liveness_bound, ms, Log, D, SERVICE, UNITS};

pub async fn drive(seed: u64, options: Options, etcd: &EtcdProcess) -> Outcome {
    let mut rng = Rng::new(seed);
    let net_rng = rng.fork();
    let start = Instant::now();
    let log = Log {
        start,
        events: Rc::default(),
    };
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], "/leadership-faults");
    let phase = ms(rng.range(options.phase_ms.0, options.phase_ms.1));
    // Freezes of etcd: short ones (0.2-1 s: claims time out) and ones longer than the
    // 2 s lease, 2-5 s apart.
    let mut freezes = Vec::new();
    let mut t = ms(rng.range(1_000, 3_000));
    while t + ms(4_000) < phase {
        let len = if rng.percent(60) {
            ms(rng.range(2_200, 3_500))
        } else {
            ms(rng.range(200, 1_000))
        };
        freezes.push((t, len));
        t += len + ms(rng.range(2_000, 5_000));
    }
    log.log(format!(
        "seed {seed}: faults for {}, etcd freezes (at, for) {freezes:?}",
        Secs(phase)
    ));
    let net = Rc::new(RefCell::new(Net {
        managers: vec![None; UNITS],
        faults: true,
        heal: Heal::default(),
        rng: net_rng,
        log: log.clone(),
        faulted: 0,
    }));
    let slots = (0..UNITS)
        .map(|slot| Slot {
            unit: UnitName::new(&format!("{SERVICE}/{slot}")).expect("a valid unit name"),
            proxy: Proxy {
                slot,
                net: Rc::clone(&net),
            }
            .start(),
            tracker: None,
            life: 0,
            alive: Rc::new(Cell::new(false)),
            reconnect_at: None,
            connecting: false,
            retired: false,
        })
        .collect();
    let mut world = World {
        rng,
        etcd,
        config: config.clone(),
        options,
        log: log.clone(),
        net: Rc::clone(&net),
        slots,
        records: Records::default(),
        inbox: Rc::default(),
        kills: 0,
        stops: 0,
        leader_gone: false,
    };
    let sampler = EtcdManager::connect(config)
        .await
        .expect("connect the sampler to the private etcd")
        .start();
    let stop_sampling = Rc::new(Cell::new(false));
    actix_rt::spawn(sample(
        sampler.clone(),
        world.records.clone(),
        log.clone(),
        Rc::clone(&stop_sampling),
    ));
    for slot in 0..UNITS {
        world.connect(slot);
    }

    // The fault phase.
    let mut frozen_until: Option<Instant> = None;
    let mut next_freeze = 0;
    while world.now() < phase || frozen_until.is_some() {
        sleep(ms(world.rng.range(50, 100))).await;
        let now = Instant::now();
        match frozen_until {
            Some(until) if now >= until => {
                world.etcd.resume();
                world.log.log("ETCD resumed (SIGCONT)");
                frozen_until = None;
            }
            None if next_freeze < freezes.len() && world.now() >= freezes[next_freeze].0 => {
                let len = freezes[next_freeze].1;
                world.etcd.pause();
                world
                    .log
                    .log(format!("ETCD frozen (SIGSTOP) for {}", Secs(len)));
                frozen_until = Some(now + len);
                next_freeze += 1;
            }
            _ => {}
        }
        world.tend(|rng| ms(rng.range(300, 2_000)));
        world.probe();
        match world.rng.range(0, 999) {
            0..=11 => {
                let slot = world.rng.index(UNITS);
                if world.slots[slot].tracker.is_some() {
                    let after = ms(world.rng.range(500, 3_000));
                    world.kill(slot, after);
                }
            }
            12..=21 => {
                if let Some(slot) = world.sampled_leader() {
                    let taken = world.net.borrow_mut().managers[slot].take();
                    if let Some(manager) = taken {
                        manager.do_send(StopManager);
                        world.stops += 1;
                        world
                            .log
                            .log(format!("STOP the leader u{slot}'s EtcdManager"));
                        let s = &mut world.slots[slot];
                        if !s.connecting {
                            s.reconnect_at = Some(now + ms(world.rng.range(200, 2_000)));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Half the time the last fault kills the leader for good (its machine is gone):
    // its lease outlives it, so the others must wait for etcd to expire it — what the
    // liveness bound is about. Otherwise every unit runs in the liveness window.
    if world.rng.percent(50) {
        if let Some(slot) = world.sampled_leader() {
            world
                .log
                .log(format!("last fault: the leader u{slot} dies for good"));
            world.kill(slot, Duration::ZERO);
            let s = &mut world.slots[slot];
            s.retired = true;
            s.reconnect_at = None;
            world.leader_gone = true;
        }
    }
    // Faults stop: heal the network, give every slot a connection and a tracker.
    net.borrow_mut().heal();
    world
        .log
        .log("HEALED: no more faults; restarting what is down");
    loop {
        world.install();
        for slot in 0..UNITS {
            let s = &world.slots[slot];
            if s.retired {
                continue;
            }
            let down = s.running().is_none() || net.borrow().managers[slot].is_none();
            if down && !s.connecting {
                world.kill(slot, Duration::ZERO);
                world.connect(slot);
            }
        }
        let all_up = (0..UNITS).all(|slot| {
            world.slots[slot].retired
                || (world.slots[slot].running().is_some() && net.borrow().managers[slot].is_some())
        });
        if all_up {
            break;
        }
        sleep(ms(20)).await;
    }
    let stable = Instant::now();
    let deadline = stable + liveness_bound(D);
    world.records.stable_at.set(Some(stable));
    world.log.log(format!(
        "STABLE: a leader is due by {}",
        Secs(log.offset(deadline))
    ));
    // Probe until a leader has held for a while, or well past the deadline. A tracker
    // that stops now (a plain one whose claim failed) is restarted at once.
    loop {
        sleep(ms(world.rng.range(50, 100))).await;
        world.tend(|_| Duration::ZERO);
        world.probe();
        let now = Instant::now();
        let done = match world.records.leader_at.get() {
            Some(at) => now > at + ms(1_500),
            None => now > deadline + ms(1_000),
        };
        if done {
            break;
        }
    }
    stop_sampling.set(true);
    sleep(ms(150)).await;
    for s in &mut world.slots {
        if let Some(tracker) = s.tracker.take() {
            tracker.kill();
        }
    }
    for manager in net.borrow_mut().managers.iter_mut() {
        if let Some(manager) = manager.take() {
            manager.do_send(StopManager);
        }
    }
    sampler.do_send(StopManager);
    let records = &world.records;
    let outcome = Outcome {
        seed,
        d: D,
        intervals: records.intervals.borrow().clone(),
        minion: records.minion.borrow().clone(),
        stale: records.stale.borrow().clone(),
        samples: records.samples.borrow().clone(),
        late_trues: records.late_trues.get(),
        stable_at: log.offset(stable),
        leader_at: records.leader_at.get().map(|at| log.offset(at)),
        deadline: log.offset(deadline),
        log: log.events.borrow().clone(),
        kills: world.kills,
        leader_gone: world.leader_gone,
        freezes: freezes.len() as u32,
        stops: world.stops,
        faulted: net.borrow().faulted,
    };
    outcome
}
