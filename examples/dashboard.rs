//! A leadership dashboard: three units of `web` on the in-memory manager, one failover
//! and one hand-over, with the crate's metrics served as Prometheus text while it runs.
//!
//! ```text
//! cargo run --example dashboard --features metrics
//! curl http://127.0.0.1:9464/metrics        # in another terminal, while it runs
//! ```
//!
//! It prints each leadership change it observes through `WatchLeader`, e.g.
//! `web/1 leads, term 2, 1.2 ms after web/0's lease ended`, kills the leader a quarter
//! of the way through (the failover: another unit leads once the dead one's lease has
//! ended), has the next leader hand over to the last unit at 60 % (no wait for an
//! expiry), and exits after 10 s (`--seconds`) or at Ctrl-C, stopping every tracker.
//! `--addr` changes where the metrics are served; `--help` lists the options.
//!
//! The metrics endpoint is a few lines over a tokio `TcpListener` rendering
//! `metrics-exporter-prometheus`'s handle: enough for a scrape, no HTTP stack to build.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use clap::Parser;
use leadership::{Claimer, LeaseInfo, ManagerActor, Tracker, UnitName, WatchLeader};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// The service the three units share.
const SERVICE: &str = "web";
/// Each unit's claim duration: a dead leader's lease ends within 2·d of its last
/// renewal, so the failover takes at most about a second.
const CLAIM: Duration = Duration::from_millis(500);

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(about = "Three units of `web`, a failover and a hand-over; metrics on /metrics")]
pub struct Args {
    /// Where to serve the Prometheus metrics (`GET /metrics`).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub addr: SocketAddr,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub seconds: f64,
}

/// A run length: seconds a `Duration` can hold (not negative, not NaN) and a clock
/// can add to now, refused by clap otherwise rather than a panic later.
fn seconds(arg: &str) -> Result<f64, String> {
    let seconds: f64 = arg.parse().map_err(|e| format!("{e}"))?;
    let run = Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?;
    match std::time::Instant::now().checked_add(run) {
        Some(_) => Ok(seconds),
        None => Err("too long a run for this clock".into()),
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    System::new().block_on(async move {
        let stop = async {
            // Without a signal handler there is no Ctrl-C to wait for: run to the end.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        run(
            args,
            |addr| println!("metrics on http://{addr}/metrics"),
            stop,
        )
        .await?;
        Ok(())
    })
}

/// What a run saw: the lines it printed about leadership.
#[derive(Debug, Default)]
pub struct Report {
    /// Each change of leader, as printed.
    pub changes: Vec<String>,
}

/// Runs the dashboard until `args.seconds` have passed or `stop` resolves. Calls
/// `listening` with the metrics address once it accepts scrapes.
///
/// # Errors
///
/// The address cannot be bound, or a metrics recorder is already installed.
pub async fn run(
    args: Args,
    listening: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<Report> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| io::Error::other(e.to_string()))?;
    leadership::metrics::describe();
    let listener = TcpListener::bind(args.addr).await?;
    listening(listener.local_addr()?);
    let server = actix_rt::spawn(serve(listener, metrics.clone()));

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.seconds.max(0.0));
    let manager = ManagerActor::new().start();
    let leader = manager
        .send(WatchLeader {
            service: SERVICE.into(),
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let observer = actix_rt::spawn(observe(leader.clone(), started));
    let trackers: Vec<Tracker> = (0..3)
        .map(|n| {
            let unit = UnitName::new(&format!("{SERVICE}/{n}")).expect("a valid unit name");
            Tracker::start(unit, Claimer::new(&manager), CLAIM).expect("a valid duration")
        })
        .collect();

    let scenario = async {
        // The failover: kill the leader; no release, so the others wait for its lease.
        sleep_until(started + (end - started) / 4).await;
        if let Some(tracker) = holder(&leader, &trackers) {
            println!(
                "{:>7}  killing {} (no release: its lease must run out)",
                since(started),
                tracker.unit_name()
            );
            tracker.kill();
        }
        // The hand-over: the leader passes leadership to the last live unit at once.
        sleep_until(started + (end - started) * 3 / 5).await;
        if let Some(from) = holder(&leader, &trackers) {
            let to = trackers
                .iter()
                .rev()
                .find(|t| t.unit_name() != from.unit_name() && !is_stopped(t))
                .map(|t| t.unit_name().clone());
            if let Some(to) = to {
                println!(
                    "{:>7}  {} hands over to {to}",
                    since(started),
                    from.unit_name()
                );
                hand_over(from, to).await;
            }
        }
        sleep_until(end).await;
    };
    tokio::select! {
        () = scenario => {}
        () = stop => println!("{:>7}  interrupted", since(started)),
    }

    for tracker in &trackers {
        tracker.kill();
    }
    for tracker in &trackers {
        let _ = tracker.wait().await;
    }
    manager.do_send(leadership::StopManager);
    let changes = observer.await.unwrap_or_default();
    server.abort();
    println!("{:>7}  stopped", since(started));
    Ok(Report { changes })
}

/// Hands leadership over from `from`'s unit to `to`: `from` resigns (it made no
/// promises, so at once) and its lease passes to `to` under a new term.
async fn hand_over(from: &Tracker, to: UnitName) {
    if let Err(error) = from.hand_over(to).await {
        println!("hand-over failed: {error}");
    }
}

/// The tracker of the unit `leader` shows, if any.
fn holder<'a>(
    leader: &watch::Receiver<Option<LeaseInfo>>,
    trackers: &'a [Tracker],
) -> Option<&'a Tracker> {
    let holder = leader.borrow().as_ref()?.holder.clone();
    trackers.iter().find(|t| t.unit_name().as_str() == holder)
}

fn is_stopped(tracker: &Tracker) -> bool {
    futures::FutureExt::now_or_never(tracker.wait()).is_some()
}

/// Seconds since `start`, for the margin of each line.
fn since(start: Instant) -> String {
    format!("{:.2} s", start.elapsed().as_secs_f64())
}

/// Prints every change of leader the watch shows until the manager stops; returns the
/// lines printed.
async fn observe(mut leader: watch::Receiver<Option<LeaseInfo>>, started: Instant) -> Vec<String> {
    let mut changes = Vec::new();
    // The last unit seen leading and its term, and when its lease was seen to end.
    let mut last: Option<(String, u64)> = None;
    let mut ended_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let lease = leader
            .borrow_and_update()
            .as_ref()
            .map(|l| (l.holder.clone(), l.term));
        let line = match (lease, &last) {
            (Some((holder, term)), old) => {
                let line = match (old, ended_at) {
                    (Some((old, _)), Some(at)) => Some(format!(
                        "{holder} leads, term {term}, {:.1} ms after {old}'s lease ended",
                        (now - at).as_secs_f64() * 1e3
                    )),
                    (Some((old, _)), None) if *old != holder => Some(format!(
                        "{holder} leads, term {term}, handed over by {old} (no expiry to wait for)"
                    )),
                    (Some((_, old_term)), None) if *old_term != term => {
                        Some(format!("{holder} leads again, term {term}"))
                    }
                    (None, _) => Some(format!("{holder} leads, term {term}")),
                    _ => None, // the same lease, refreshed
                };
                last = Some((holder, term));
                ended_at = None;
                line
            }
            (None, Some((old, _))) if ended_at.is_none() => {
                ended_at = Some(now);
                Some(format!("{old}'s lease ended; nobody leads"))
            }
            (None, _) => None,
        };
        if let Some(line) = line {
            println!("{:>7}  {line}", since(started));
            changes.push(line);
        }
        if leader.changed().await.is_err() {
            return changes; // the manager stopped
        }
    }
}

/// Answers every connection on `listener` with the current metrics.
async fn serve(listener: TcpListener, metrics: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: the error repeats at once, so pause rather
            // than spin on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        metrics.run_upkeep();
        actix_rt::spawn(answer(stream, metrics.render()));
    }
}

/// Reads one request's head and answers it: the metrics for `GET /metrics`, 404 for
/// anything else. A request that does not arrive within a second is dropped.
async fn answer(mut stream: TcpStream, body: String) {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(1), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    });
    if !matches!(read.await, Ok(true)) {
        return;
    }
    let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
    let (status, body) = if wanted {
        ("200 OK", body)
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
