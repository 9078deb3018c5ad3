//! Failover on the in-memory lease manager, in real time.
//!
//! Three units of the service `web` track leadership on one `ManagerActor` with a claim
//! duration of 1 s (so a lease of 2 s, renewed every second). The example prints who
//! leads, kills the leader's tracker (which sends no release: the others must wait for
//! its lease to expire), then prints when the next unit took over and how that compares
//! with the old lease's expiry. It exits by itself after a few seconds.
//!
//! Run with `cargo run --example failover` (`-- --help` for the options; add
//! `RUST_LOG=leadership=info` to see the trackers' own logs). Ctrl-C ends it cleanly:
//! every running tracker is stopped first.

use std::future::IntoFuture;
use std::time::Duration;

use actix::prelude::*;
use clap::Parser;
use futures::future::select_all;
use leadership::{Claimer, Leader, ManagerActor, Tracker, UnitName};
use tokio::time::Instant;

/// Several units of one service on the in-memory manager; the leader is killed without
/// releasing, and the next leader is timed against the old lease's expiry.
#[derive(Parser, Debug)]
#[command(name = "failover")]
struct Args {
    /// The claim duration d, in milliseconds, 1 ms to a day (the lease is 2·d, renewed every d).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    claim_ms: u64,
    /// How many units of `web` to start (at least two: one to kill, one to take over).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=100))]
    units: u64,
}

/// Waits until one of `trackers` is leader and returns its index.
async fn first_leader(trackers: &[Tracker]) -> usize {
    let waits = trackers
        .iter()
        .map(|t| Box::pin(t.wait_leader().into_future()));
    let (is_leader, index, _) = select_all(waits).await;
    assert!(is_leader, "a tracker stopped instead of leading");
    index
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
    let claim = Duration::from_millis(args.claim_ms);
    let manager = ManagerActor::new().start();
    let mut trackers: Vec<Tracker> = (0..args.units)
        .map(|i| {
            let unit = UnitName::new(&format!("web/{i}")).expect("valid unit name");
            Tracker::start(unit, Claimer::new(&manager), claim).expect("valid duration")
        })
        .collect();
    let names: Vec<String> = trackers.iter().map(|t| t.unit_name().to_string()).collect();
    println!(
        "started {} with a claim duration of {claim:?} (lease {:?})",
        names.join(", "),
        2 * claim
    );

    tokio::select! {
        () = story(&manager, &mut trackers, claim) => {}
        _ = tokio::signal::ctrl_c() => println!("\nInterrupted."),
    }
    for tracker in &trackers {
        tracker.kill();
        let _ = tracker.wait().await;
    }
    System::current().stop();
}

/// Lets the first leader lead through a couple of renewals, kills it, and times the
/// next leader. The killed tracker leaves `trackers`.
async fn story(manager: &Addr<ManagerActor>, trackers: &mut Vec<Tracker>, claim: Duration) {
    let start = Instant::now();
    let ms = |at: Instant| at.duration_since(start).as_secs_f64() * 1e3;

    let leader = first_leader(trackers).await;
    println!(
        "{:>8.1} ms  {} leads",
        ms(Instant::now()),
        trackers[leader].unit_name()
    );

    // Let it lead through a couple of renewals.
    tokio::time::sleep(claim * 23 / 10).await;
    assert!(trackers[leader].claim_leader().await, "still leader");
    let lease = manager
        .send(Leader {
            service: "web".into(),
        })
        .await
        .expect("manager alive")
        .expect("a live lease");
    let killed = trackers.remove(leader);
    let killed_at = Instant::now();
    killed.kill();
    killed.wait().await.expect("clean stop");
    println!(
        "{:>8.1} ms  killed {} (term {}); its lease expires at {:.1} ms, {:.1} ms from now",
        ms(killed_at),
        killed.unit_name(),
        lease.term,
        ms(lease.expires),
        lease.expires.duration_since(killed_at).as_secs_f64() * 1e3,
    );

    let next = first_leader(trackers).await;
    let took_over = Instant::now();
    let new_lease = manager
        .send(Leader {
            service: "web".into(),
        })
        .await
        .expect("manager alive")
        .expect("a live lease");
    println!(
        "{:>8.1} ms  {} leads (term {})",
        ms(took_over),
        trackers[next].unit_name(),
        new_lease.term
    );
    let after_expiry = took_over.saturating_duration_since(lease.expires);
    println!(
        "failover took {:.1} ms after the kill, {:.2} ms after the old lease expired",
        took_over.duration_since(killed_at).as_secs_f64() * 1e3,
        after_expiry.as_secs_f64() * 1e3,
    );
    assert!(
        took_over >= lease.expires,
        "never before the old lease expired"
    );
}
