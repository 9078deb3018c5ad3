//! One unit of a service as its own process, electing its leader through etcd.
//!
//! ```text
//! cargo run --features etcd --example etcd_unit -- \
//!     --unit web/0 --endpoints http://127.0.0.1:2379 --duration 2s
//! ```
//!
//! Start three (`web/0`, `web/1`, `web/2`) in three terminals against one etcd: exactly
//! one prints `LEADER`, the others `minion`. Kill the leader (Ctrl-C, or `kill -9`): it
//! releases nothing, so its lease runs out in etcd (2·d rounded up to whole seconds after
//! its last renewal, plus etcd's ~0.5 s expiry granularity) and another unit prints
//! `LEADER` with a greater term. Each line carries a UTC wall-clock time to compare
//! terminals, and a leader says how long after losing sight of the old leader it took over.
//!
//! Options: `--unit SERVICE/N` (required), `--endpoints URL[,URL…]` (default
//! `http://127.0.0.1:2379`), `--duration D` (the guarantee d, e.g. `2s`, `500ms`; default
//! `2s`), `--prefix P` (default `/leadership`). `RUST_LOG=leadership=debug` shows each claim.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{Claimer, Leader, Tracker, UnitName};

struct Args {
    unit: UnitName,
    endpoints: Vec<String>,
    duration: Duration,
    prefix: String,
}

fn usage(problem: &str) -> ! {
    eprintln!("etcd_unit: {problem}");
    eprintln!(
        "usage: etcd_unit --unit SERVICE/N [--endpoints URL[,URL...]] [--duration 2s] \
         [--prefix /leadership]"
    );
    std::process::exit(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (number, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

fn parse_args() -> Args {
    let mut unit = None;
    let mut endpoints = vec!["http://127.0.0.1:2379".to_owned()];
    let mut duration = Duration::from_secs(2);
    let mut prefix = "/leadership".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--unit" => {
                unit = Some(UnitName::new(&value).unwrap_or_else(|e| usage(&e.to_string())))
            }
            "--endpoints" => endpoints = value.split(',').map(str::to_owned).collect(),
            "--duration" => {
                duration = parse_duration(&value)
                    .unwrap_or_else(|| usage(&format!("bad duration {value:?}")))
            }
            "--prefix" => prefix = value,
            other => usage(&format!("unknown option {other:?}")),
        }
    }
    Args {
        unit: unit.unwrap_or_else(|| usage("--unit is required")),
        endpoints,
        duration,
        prefix,
    }
}

/// Wall-clock time of day (UTC), only to line up the terminals of several units.
fn clock() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let day = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        since.subsec_millis()
    )
}

#[actix_rt::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "leadership=warn".into()),
        )
        .init();
    let args = parse_args();
    let unit = args.unit.clone();
    let config = EtcdConfig::new(args.endpoints.clone(), args.prefix.clone());
    let manager = match EtcdManager::connect(config).await {
        Ok(manager) => manager.start(),
        Err(e) => {
            eprintln!("etcd_unit: cannot reach etcd at {:?}: {e}", args.endpoints);
            std::process::exit(1);
        }
    };
    let tracker = Tracker::start_supervised(unit.clone(), Claimer::new(&manager), args.duration)
        .unwrap_or_else(|e| usage(&e.to_string()));
    println!(
        "{} {unit}: started (d = {:?}, lease 2·d, etcd {:?}, key {}/{})",
        clock(),
        args.duration,
        args.endpoints,
        args.prefix,
        unit.service()
    );

    let leader = || async {
        manager
            .send(Leader {
                service: unit.service().to_owned(),
            })
            .await
            .ok()
            .flatten()
    };
    let mut minion_since = tokio::time::Instant::now();
    loop {
        // Pending while a minion; `false` only when the tracker restarts after a failure.
        if !tracker.wait_leader().await {
            println!(
                "{} {unit}: tracker failed; it retries after a backoff",
                clock()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let term = leader()
            .await
            .map_or("?".to_owned(), |l| l.term.to_string());
        println!(
            "{} {unit}: LEADER (term {term}), after {:.2?} as a minion",
            clock(),
            minion_since.elapsed()
        );
        // Pending while leader; `false` as soon as leadership cannot be guaranteed.
        tracker.wait_minion().await;
        minion_since = tokio::time::Instant::now();
        let now = leader().await;
        let holder = now.map_or("nobody".to_owned(), |l| {
            format!("{} (term {})", l.holder, l.term)
        });
        println!(
            "{} {unit}: minion — lost leadership; etcd says the leader is {holder}",
            clock()
        );
    }
}
