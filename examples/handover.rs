//! A rolling restart without a leaderless gap, on the in-memory lease manager.
//!
//! Three units of the service `web` share one `ManagerActor`. Each does its leader work
//! inside a `Tracker::lead` scope that ends gracefully when its `WaitMinion` ticket
//! resolves (which a resign does at once). The example restarts the units one by one,
//! as an operator upgrading them would: the leader of the moment resigns — or hands over
//! to a named unit — and its tracker, once stopped, is started afresh and rejoins as a
//! minion. Each step prints how long the service went without leader work (the gap
//! between the old leader's scope ending and the new leader's starting), beside what a
//! kill costs; a last step kills the leader to measure that for real (about `2·d` at
//! worst: nobody may lead until the unreleased lease expires).
//!
//! Run with `cargo run --example handover` (`-- --help` for the options; add
//! `RUST_LOG=leadership=info` to see the trackers' own logs). Ctrl-C ends it cleanly:
//! every running unit resigns first.

use std::cell::{Cell, RefCell};
use std::future::IntoFuture;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use clap::Parser;
use futures::channel::mpsc;
use futures::StreamExt;
use leadership::{Claimer, ManagerActor, Tracker, UnitName};
use tokio::time::Instant;

/// A rolling restart of three units: each leader in turn resigns (or hands over) while
/// running leader work, and the next one takes over within microseconds.
#[derive(Parser, Debug)]
#[command(name = "handover")]
struct Args {
    /// The claim duration d, in milliseconds, 1 ms to a day (the lease is 2·d).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    claim_ms: u64,
    /// How many restart steps to run before the final kill.
    #[arg(long, default_value_t = 3)]
    steps: usize,
}

/// What a unit's leader work reports to the story.
#[derive(Debug)]
enum Work {
    /// A lead scope started: the unit does leader work from `at`, under `term`.
    Started { unit: usize, term: u64, at: Instant },
    /// The scope ended at `at`: its work finished, or it was cancelled.
    Ended { unit: usize, at: Instant },
}

/// Runs unit `index`: whenever it leads, leader work in a lead scope, until its
/// tracker stops.
async fn run_unit(index: usize, tracker: Tracker, report: mpsc::UnboundedSender<Work>) {
    loop {
        let started = Rc::new(Cell::new(false));
        tracker
            .lead(|guarantee| {
                started.set(true);
                let start = Work::Started {
                    unit: index,
                    term: guarantee.term,
                    at: Instant::now(),
                };
                let _ = report.unbounded_send(start);
                // The leader work: serve until leadership is about to end (a resign
                // resolves the WaitMinion ticket at once), then finish.
                tracker.wait_minion().into_future()
            })
            .await;
        if !started.get() {
            // `lead` gives up without starting only once the tracker is resigning or
            // stopped: wait for the end and leave.
            let _ = tracker.wait().await;
            return;
        }
        let ended = Work::Ended {
            unit: index,
            at: Instant::now(),
        };
        let _ = report.unbounded_send(ended);
    }
}

/// The units and the channel their work reports on.
struct Units {
    manager: Addr<ManagerActor>,
    claim: Duration,
    trackers: Vec<Tracker>,
    report: mpsc::UnboundedSender<Work>,
}

impl Units {
    fn name(index: usize) -> UnitName {
        UnitName::new(&format!("web/{index}")).expect("a valid unit name")
    }

    /// Starts (or restarts) unit `index` and its leader work.
    fn start(&mut self, index: usize) -> Tracker {
        let tracker = Tracker::start(Self::name(index), Claimer::new(&self.manager), self.claim)
            .expect("a valid claim duration");
        actix::spawn(run_unit(index, tracker.clone(), self.report.clone()));
        tracker
    }
}

/// Waits for the next report matching `wanted`.
async fn next(reports: &mut mpsc::UnboundedReceiver<Work>, wanted: impl Fn(&Work) -> bool) -> Work {
    loop {
        let work = reports.next().await.expect("the units keep reporting");
        if wanted(&work) {
            return work;
        }
    }
}

/// Waits for `leader`'s scope to end, then for the next unit's scope to start: returns
/// when the first ended, and who leads next, under which term, from when.
async fn succession(
    reports: &mut mpsc::UnboundedReceiver<Work>,
    leader: usize,
) -> (Instant, usize, u64, Instant) {
    let ended = next(
        reports,
        |w| matches!(w, Work::Ended { unit, .. } if *unit == leader),
    )
    .await;
    let started = next(reports, |w| matches!(w, Work::Started { .. })).await;
    match (ended, started) {
        (Work::Ended { at: ended, .. }, Work::Started { unit, term, at }) => {
            (ended, unit, term, at)
        }
        _ => unreachable!("next returns only what it was asked for"),
    }
}

fn micros(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{} ms", d.as_millis())
    }
}

async fn story(args: Args, units: Rc<RefCell<Units>>, mut reports: mpsc::UnboundedReceiver<Work>) {
    let claim = units.borrow().claim;
    println!(
        "Three units of `web` share one in-memory lease manager; claim duration d = {claim:?}, \
         so a kill leaves the service leaderless for up to 2·d = {:?}.",
        2 * claim
    );
    let Work::Started {
        unit: mut leader,
        term,
        ..
    } = next(&mut reports, |w| matches!(w, Work::Started { .. })).await
    else {
        unreachable!()
    };
    println!("web/{leader} leads (term {term}) and starts its leader work.\n");

    for step in 1..=args.steps {
        tokio::time::sleep(claim / 2).await; // it works a while
        let handing_to = (step % 2 == 0).then_some((leader + 1) % 3);
        let tracker = units.borrow().trackers[leader].clone();
        let asked = Instant::now();
        let resigned = match handing_to {
            None => {
                println!("Step {step}: web/{leader} resigns while its lead scope runs.");
                tracker.resign().await
            }
            Some(to) => {
                println!(
                    "Step {step}: web/{leader} hands over to web/{to} while its lead scope runs."
                );
                tracker.hand_over(Units::name(to)).await
            }
        };
        let released = Instant::now();
        resigned.expect("the resign succeeds");
        let (ended, new, term, started) = succession(&mut reports, leader).await;
        println!(
            "  web/{leader}'s scope finished {} after the resign began; resign() returned after {}",
            micros(ended - asked),
            micros(released - asked),
        );
        println!(
            "  web/{new} leads (term {term}); leaderless gap {} — a kill here would have cost up to {:?}",
            micros(started.saturating_duration_since(ended)),
            2 * claim
        );
        let restarted = units.borrow_mut().start(leader);
        units.borrow_mut().trackers[leader] = restarted;
        println!("  web/{leader} restarts and rejoins as a minion.\n");
        leader = new;
    }

    tokio::time::sleep(claim / 2).await;
    println!("Finally, for comparison: web/{leader} is killed (no release).");
    let tracker = units.borrow().trackers[leader].clone();
    tracker.kill();
    let (ended, new, term, at) = succession(&mut reports, leader).await;
    println!(
        "  web/{new} leads (term {term}) after a leaderless gap of {} (between d and 2·d: the \
         old lease had to expire).",
        micros(at - ended)
    );
}

#[actix_rt::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Colours only on a terminal: piped to a file, the log stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let (report, reports) = mpsc::unbounded();
    let units = Rc::new(RefCell::new(Units {
        manager: ManagerActor::new().start(),
        claim: Duration::from_millis(args.claim_ms),
        trackers: Vec::new(),
        report,
    }));
    for index in 0..3 {
        let tracker = units.borrow_mut().start(index);
        units.borrow_mut().trackers.push(tracker);
    }

    tokio::select! {
        () = story(args, units.clone(), reports) => {}
        _ = tokio::signal::ctrl_c() => println!("\nInterrupted."),
    }
    // Every unit still running resigns: the service is never left waiting on a lease.
    let trackers = units.borrow().trackers.clone();
    for tracker in &trackers {
        if let Err(error) = tracker.resign().await {
            eprintln!("{}: {error}", tracker.unit_name());
        }
    }
    println!("Every unit resigned; done.");
}
