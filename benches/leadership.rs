//! Benchmarks of `leadership` against bare actix, and of its etcd backend against
//! `etcdctl elect`, each measured beside its baseline in the same run (issues 5, 13).
//!
//! Run with
//!
//! ```sh
//! cargo bench --bench leadership             # the full run (about a minute in memory)
//! cargo bench --bench leadership -- --quick  # under 60 s on a 2-core machine
//! .ci/with-etcd cargo bench --bench leadership -- --quick --etcd   # with the etcd figures
//! cargo bench --bench leadership -- --only handover,memory          # some groups only
//! ```
//!
//! Groups: per-op, concurrent, expiry, failover, handover, etcd, memory. The etcd group
//! runs when `LEADERSHIP_ETCD_ENDPOINTS` names a server or `--etcd` asks for a private
//! one; it needs the crate's `etcd` feature, so a build without it runs itself again
//! through `cargo bench --features etcd` (see `benches/etcd/mod.rs` for its figures).
//!
//! It prints a human table (figure | value | baseline | ratio | target | met?), notes
//! with medians and maxima, and one line `metric <name> <value>` per figure:
//!
//! | metric | how it is measured |
//! |---|---|
//! | `actix_roundtrip_ns` | `addr.send(Ping).await` to a no-op actor on the same arbiter; median of sequential per-op timings (the baseline) |
//! | `ticket_roundtrip_ns` | `tracker.claim_leader().await` (the handle path) on a tracker that is leader; median of sequential per-op timings. The `addr.send(ClaimLeader).await?.await` path is printed too, not as a metric |
//! | `ticket_ratio` | ticket / actix: the median over the interleaved rounds of each round's ratio of medians; target ≤ 1.2 |
//! | `ticket_concurrent_per_s` | tickets answered per second with 1 000 concurrent clients (tasks on the same arbiter) looping `claim_leader().await` on one leader |
//! | `manager_claim_ns` | `ClaimLeadership` extensions against a `ManagerActor` holding 100 000 live leases, services visited in a scattered order, messages built before timing; median of sequential per-op timings. A note gives the same against 1 000 leases (a table that stays in the caches) |
//! | `manager_ratio` | manager / actix, the median of the rounds' ratios as for `ticket_ratio`; target ≤ 1.5 |
//! | `expiry_wake_p99_ms` | 100 000 leases expiring spread evenly over 10 s of real time, each with a pending `BlockUntilLeadershipReleased`; p99 of (instant the block's answer is observed − `LeaseInfo.expires`); target ≤ 2. Baseline: bare `tokio::time::sleep_until` tasks, one per millisecond of the same window |
//! | `tracker_bytes` | resident memory (RSS growth from `/proc/self/statm`) per tracker: 100 000 trackers of distinct services on one manager, measured after all are granted |
//! | `actor_bytes` | the same for 100 000 bare no-op actix actors, each answered one `Ping` |
//! | `memory_ratio` | tracker / actor, both started 1 000 at a time; target ≤ 2.0 |
//! | `tracker_bytes_burst`, `memory_ratio_burst` | the same with all 100 000 started at once (against 100 000 actors started at once); target ≤ 2.5 |
//! | `failover_p99_ms` | d = 50 ms, 200 failovers, each on a fresh service with two units: the leader's tracker is killed; p99 of (instant the other unit's `WaitLeader` ticket resolves − the old lease's expiry, read with `Leader` once the old tracker has stopped); target ≤ 2. Baseline: after each failover, one bare tokio sleep on the idle runtime |
//! | `handover_us_p99` | 1 000 hand-overs (5 000 in the full run), each on a fresh service with two units, d = 10 s: the leader (its status says it leads, so nothing is promised) calls `resign()`; p99 of the time until the other unit's `WaitLeader` ticket resolves `true`. No timer is on that path; target ≤ 100 µs |
//! | `trackers_100k_start_s` | wall time from starting 100 000 trackers (all at once) to all of them being granted. Baseline: 100 000 no-op actors started at once and answered once |
//!
//! Everything runs on one actix `System` (one thread), the way an agent runs its
//! trackers. Per-op figures are timed one operation at a time with `std::time::Instant`
//! (the bench measures real time; the library itself only ever reads tokio's clock),
//! in interleaved rounds so that the baseline and the measured path see the same load
//! from the rest of the (shared) machine; the figure is the median over all rounds.
//!
//! Timer-driven figures cannot beat tokio's timer: a deadline is rounded up to the
//! next 1 ms tick, and a runtime parked until that tick sleeps whole milliseconds
//! counted from the start of the current one, so it can wake up to another 1 ms late.
//! The baselines measure exactly that on the same runtime in the same run.
//!
//! The memory figures are each measured in a fresh child process of this same binary
//! (`--child trackers|actors --batch N`): the allocator keeps freed memory resident,
//! so a measurement taken after other benchmarks would reuse their freed heap and look
//! cheaper, and whichever of the two ran second would be favoured. A fresh process
//! gives both the same empty heap. A child starts its 100 000 actors `N` at a time,
//! waits until each has answered once (a granted `WaitLeader`, or a `Ping`) before
//! starting the next batch, and reports the RSS growth divided by 100 000; the handles
//! (`Tracker` or `Addr`) are kept alive, as a user would keep them. The metric uses
//! batches of 1 000, so that what start-up leaves behind in the allocator (freed
//! messages, not per-tracker state) is bounded by a batch, for trackers and actors
//! alike; the all-at-once figures (`N` = 100 000, which also give the start-up time)
//! are printed beside it. `LEADERSHIP_BENCH_UNITS=10000` runs a child with fewer
//! actors, e.g. under `valgrind --tool=massif`.
//!
//! `--quick` keeps every measurement's shape but runs fewer operations: 20 000 timed
//! operations per per-op figure instead of 200 000, 1 000 tickets per concurrent client
//! instead of 2 000, 20 000 leases (still spread over 10 s of real time) for the
//! expiry figure, 40 failovers instead of 200 (so its p99 is the worst of 40), 1 000
//! hand-overs instead of 5 000; with etcd, 20 hand-overs and failovers each instead of
//! 40, a 10 s scale window instead of 60 s, no 100- and 300-service scale windows, and
//! no `etcdctl elect` failover (a minute per sample). The memory and start-up figures
//! use 100 000 trackers in both modes.

use std::future::IntoFuture;
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use actix::prelude::*;
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeader, ClaimLeadership, Claimer, Leader, ManagerActor,
    ReleaseLeadership, Status, Tracker, UnitName,
};

/// How many actors the memory and start-up figures use, and how many live leases the
/// manager figure extends.
const UNITS: usize = 100_000;

/// How many trackers (or actors) the steady-state memory figure starts at a time.
const STEADY_BATCH: usize = 1_000;

/// `UNITS`, unless a child is run by hand under a heap profiler with fewer:
/// `LEADERSHIP_BENCH_UNITS=10000 valgrind --tool=massif <bench binary> --child trackers`.
fn child_units() -> usize {
    std::env::var("LEADERSHIP_BENCH_UNITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(UNITS)
}

/// The run's size: full or `--quick`.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Timed operations per per-op figure, over all rounds.
    ops: usize,
    /// Interleaved rounds the per-op figures are split into.
    rounds: usize,
    /// Tickets each of the 1 000 concurrent clients asks for.
    per_client: usize,
    /// Leases in the expiry figure (always spread over 10 s).
    leases: usize,
    /// Failovers in the failover figure.
    failovers: usize,
    /// Hand-overs in the hand-over figure.
    handovers: usize,
    /// Samples of each etcd hand-over and failover figure (ours and `etcdctl elect`'s).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    etcd_samples: usize,
    /// Services in the etcd scale figure.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    etcd_services: usize,
}

const FULL: Size = Size {
    ops: 200_000,
    rounds: 20,
    per_client: 2_000,
    leases: 100_000,
    failovers: 200,
    handovers: 5_000,
    etcd_samples: 40,
    etcd_services: 1_000,
};

const QUICK: Size = Size {
    ops: 20_000,
    rounds: 10,
    per_client: 1_000,
    leases: 20_000,
    failovers: 40,
    handovers: 1_000,
    etcd_samples: 20,
    etcd_services: 1_000,
};

/// A no-op request for the baseline actor.
#[derive(Message)]
#[rtype(result = "()")]
struct Ping;

/// The bare actix actor every figure is compared with.
struct NoOp;

impl Actor for NoOp {
    type Context = Context<Self>;
}

impl Handler<Ping> for NoOp {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

#[cfg(feature = "etcd")]
mod etcd;
#[path = "../tests/common/resident.rs"]
mod resident;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let which = args.get(i + 1).map(String::as_str).unwrap_or("");
        #[cfg(feature = "etcd")]
        if which == "etcd-leaders" {
            etcd::leaders_child(&args);
            return;
        }
        let batch = args
            .iter()
            .position(|a| a == "--batch")
            .and_then(|j| args.get(j + 1)?.parse().ok())
            .unwrap_or(UNITS);
        child(which, batch);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let size = if quick { QUICK } else { FULL };
    // The etcd figures run when a server is named or `--etcd` asks for a private one;
    // they need the `etcd` feature, so a build without it runs itself again with it.
    let want_etcd = args.iter().any(|a| a == "--etcd")
        || std::env::var("LEADERSHIP_ETCD_ENDPOINTS").is_ok_and(|v| !v.trim().is_empty());
    if want_etcd && !cfg!(feature = "etcd") {
        rerun_with_etcd_feature(&args);
    }
    let started = StdInstant::now();
    println!(
        "leadership bench ({}), load average at start: {}",
        if quick { "--quick" } else { "full" },
        loadavg()
    );
    // `--only GROUP[,GROUP…]` runs some groups: per-op, concurrent, expiry, failover,
    // handover, etcd, memory (for profiling one figure; a full report needs them all).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let runs = |group: &str| only.as_ref().is_none_or(|o| o.iter().any(|g| g == group));
    let mut report = Report::default();
    // Each timed group runs alone, with the CPU the other processes took meanwhile.
    macro_rules! timed_group {
        ($name:literal, $group:ident) => {
            if runs($name) {
                let cpu = Cpu::sample();
                $group(size, &mut report).await;
                report.others($name, cpu);
            }
        };
    }
    System::new().block_on(async {
        timed_group!("per-op", per_op);
        timed_group!("concurrent", concurrent);
        timed_group!("expiry", expiry_wake);
        timed_group!("failover", failover);
        timed_group!("handover", handover);
    });
    #[cfg(feature = "etcd")]
    if want_etcd && runs("etcd") {
        let server = etcd::Server::find(true).expect("an etcd server");
        let cpu = Cpu::sample();
        System::new().block_on(etcd::run(&server, size, quick, &mut report));
        report.others("etcd", cpu);
    }
    if runs("memory") {
        memory(&mut report);
    }
    report.print();
    println!(
        "run took {:.1} s; load average at end: {}",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
}

/// Runs this bench again through cargo with the `etcd` feature (the etcd figures need
/// it), passing the same arguments, and exits with its status.
fn rerun_with_etcd_feature(args: &[String]) -> ! {
    if std::env::var_os("LEADERSHIP_BENCH_RERUN").is_some() {
        eprintln!("the etcd figures need the `etcd` feature, and the rerun lacks it");
        std::process::exit(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "the etcd figures need the `etcd` feature: running \
         `cargo bench --features etcd --bench leadership -- {}`",
        args.join(" ")
    );
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--features", "etcd", "--bench", "leadership", "--"])
        .args(args)
        .env("LEADERSHIP_BENCH_RERUN", "1")
        .status()
        .expect("cargo runs");
    std::process::exit(status.code().unwrap_or(1));
}

/// The 1-, 5- and 15-minute load averages, from `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time (user + system, in clock ticks of 10 ms) of process `pid` (`self` for this
/// one), from `/proc/<pid>/stat`.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum(),
    )
}

/// CPU time counters, to tell how busy the rest of the machine was during a figure.
#[derive(Clone, Copy)]
struct Cpu {
    /// Busy time of all CPUs (`/proc/stat`, clock ticks), steal included.
    busy: u64,
    /// Busy plus idle time of all CPUs.
    total: u64,
    /// This process's own user and system time (`/proc/self/stat`).
    own: u64,
}

impl Cpu {
    fn sample() -> Cpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Cpu {
            busy: total - idle,
            total,
            own: cpu_ticks("self").unwrap_or(0),
        }
    }

    /// The share of the machine's CPU time other processes (and the hypervisor's
    /// steal) used since `self`.
    fn others_since(self) -> f64 {
        let now = Cpu::sample();
        let total = now.total.saturating_sub(self.total).max(1);
        let others = (now.busy.saturating_sub(self.busy)).saturating_sub(now.own - self.own);
        others as f64 / total as f64
    }
}

/// One line of the human table.
struct Row {
    figure: &'static str,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    met: &'static str,
}

/// Every figure measured, in order, plus extra non-metric lines.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    metrics: Vec<(&'static str, f64)>,
    notes: Vec<String>,
}

impl Report {
    /// A wake-up figure: the p99 lateness `p` in ms, against the p99 `base` of bare
    /// tokio timers measured in the same run, with the issue's 2 ms target.
    fn timer_row(&mut self, name: &'static str, p: Duration, base: Duration) {
        self.target_row(
            name,
            format!("{:.3} ms", ms(p)),
            format!("{:.3} ms", ms(base)),
            Some(ms(p) / ms(base)),
            ms(p),
            2.0,
        );
    }

    /// Notes how busy other processes kept the machine since `cpu`.
    fn others(&mut self, group: &str, cpu: Cpu) {
        self.notes.push(format!(
            "while measuring {group}: other processes (and steal) used {:.0} % of all CPU time",
            cpu.others_since() * 100.0
        ));
    }

    fn metric(&mut self, name: &'static str, value: f64) {
        self.metrics.push((name, value));
    }

    fn row(&mut self, figure: &'static str, value: String, baseline: String, ratio: Option<f64>) {
        self.rows.push(Row {
            figure,
            value,
            baseline,
            ratio: ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            target: "-".into(),
            met: "-",
        });
    }

    /// Adds a row whose `measured` value must be at most `target`.
    fn target_row(
        &mut self,
        figure: &'static str,
        value: String,
        baseline: String,
        ratio: Option<f64>,
        measured: f64,
        target: f64,
    ) {
        self.row(figure, value, baseline, ratio);
        let row = self.rows.last_mut().expect("just pushed");
        row.target = format!("≤ {target}");
        row.met = if measured <= target { "yes" } else { "NO" };
    }

    fn print(&self) {
        println!();
        println!(
            "| {:<26} | {:>14} | {:>14} | {:>6} | {:>6} | {:<4} |",
            "figure", "value", "baseline", "ratio", "target", "met?"
        );
        println!(
            "|{:-<28}|{:->16}|{:->16}|{:->8}|{:->8}|{:-<6}|",
            "", "", "", "", "", ""
        );
        for r in &self.rows {
            println!(
                "| {:<26} | {:>14} | {:>14} | {:>6} | {:>6} | {:<4} |",
                r.figure, r.value, r.baseline, r.ratio, r.target, r.met
            );
        }
        println!();
        for note in &self.notes {
            println!("note: {note}");
        }
        for (name, value) in &self.metrics {
            println!("metric {name} {value}");
        }
    }
}

/// The median of `samples` (sorted in place).
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The 99th percentile of `samples` (sorted in place): the smallest value at or above
/// 99 % of them.
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1);
    samples[rank - 1]
}

/// The median over rounds of `num[i] / den[i]`.
fn median_ratio(num: &[Duration], den: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| ns(*n) / ns(*d)).collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A valid service name per index: `prefix` plus the index's decimal digits spelt as
/// letters (`0` → `a`, … `9` → `j`), since every hyphen-separated segment of a service
/// name after the first needs a letter.
fn service(prefix: &str, i: usize) -> String {
    let digits: String = i
        .to_string()
        .bytes()
        .map(|b| char::from(b - b'0' + b'a'))
        .collect();
    format!("{prefix}-{digits}")
}

fn unit(s: &str) -> UnitName {
    UnitName::new(s).expect("a valid unit name")
}

/// Times `op` `n` times, one at a time, appending each duration to `out`.
async fn time_each<F, Fut>(n: usize, out: &mut Vec<Duration>, mut op: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..n {
        let start = StdInstant::now();
        op(i).await;
        out.push(start.elapsed());
    }
}

/// Claims a lease of `duration` for each `(service, unit)` of `names` at `manager`,
/// each granted: a manager holding that many live leases.
async fn fill(manager: &Addr<ManagerActor>, names: &[(String, String)], duration: Duration) {
    for (service, unit) in names {
        manager
            .send(ClaimLeadership {
                service: service.clone(),
                unit: unit.clone(),
                duration,
            })
            .await
            .expect("manager alive")
            .expect("granted");
    }
}

/// Times `n` `Ping`s to `noop` into `scratch` (cleared first): the actix baseline.
async fn time_pings(noop: &Addr<NoOp>, n: usize, scratch: &mut Vec<Duration>) {
    scratch.clear();
    time_each(n, scratch, |_| async move {
        noop.send(Ping).await.expect("actor alive")
    })
    .await;
}

/// Times `n` extensions of the leases `manager` holds for `names` (see [`fill`]) into
/// `scratch` (cleared first). The services are visited from `*next` on in a scattered
/// order (a stride coprime with both lease counts), as renewals from many trackers
/// would, rather than walking memory in order.
async fn time_extensions(
    manager: &Addr<ManagerActor>,
    names: &[(String, String)],
    next: &mut usize,
    n: usize,
    duration: Duration,
    scratch: &mut Vec<Duration>,
) {
    // The messages are built before timing: the baseline's `Ping` carries nothing.
    let mut msgs: Vec<ClaimLeadership> = (0..n)
        .map(|_| {
            *next = (*next + 7_919) % names.len();
            let (service, unit) = &names[*next];
            ClaimLeadership {
                service: service.clone(),
                unit: unit.clone(),
                duration,
            }
        })
        .collect();
    msgs.reverse();
    scratch.clear();
    time_each(n, scratch, |_| {
        let msg = msgs.pop().expect("one message per op");
        async move {
            manager
                .send(msg)
                .await
                .expect("manager alive")
                .expect("extended");
        }
    })
    .await;
}

/// The sequential per-op figures: actix baseline, ticket (handle and `Addr` paths),
/// manager extensions with 100 000 live leases. Interleaved in rounds.
async fn per_op(size: Size, report: &mut Report) {
    let noop = NoOp.start();

    let manager = ManagerActor::new().start();
    let tracker = Tracker::start(
        unit("bench/0"),
        Claimer::new(&manager),
        Duration::from_secs(3_600),
    )
    .expect("a valid duration");
    assert!(tracker.wait_leader().await, "the only unit leads");
    let tracker_addr = tracker.addr();

    // A second manager holding 100 000 live leases, each to be extended.
    let leases = ManagerActor::new().start();
    let long = Duration::from_secs(3_600);
    let names: Vec<(String, String)> = (0..UNITS)
        .map(|i| (service("svc", i), format!("{}/0", service("svc", i))))
        .collect();
    fill(&leases, &names, long).await;

    let per_round = size.ops / size.rounds;
    let warm = per_round / 4;
    let mut actix = Vec::with_capacity(size.ops);
    let mut ticket = Vec::with_capacity(size.ops);
    let mut ticket_addr = Vec::with_capacity(size.ops);
    let mut claim = Vec::with_capacity(size.ops);
    let mut scratch = Vec::new();
    // Each round's median per path, for the per-round ratios.
    let mut round_actix = Vec::with_capacity(size.rounds);
    let mut round_ticket = Vec::with_capacity(size.rounds);
    let mut round_claim = Vec::with_capacity(size.rounds);
    let mut round_small = Vec::with_capacity(size.rounds);
    let mut next_small = 0usize;
    let mut next_service = 0usize;
    for round in 0..=size.rounds {
        // Round 0 only warms up.
        let n = if round == 0 { warm } else { per_round };
        let keep = round > 0;
        time_pings(&noop, n, &mut scratch).await;
        if keep {
            actix.extend_from_slice(&scratch);
            round_actix.push(median(&mut scratch));
        }
        scratch.clear();
        time_each(n, &mut scratch, |_| {
            let tracker = &tracker;
            async move { assert!(tracker.claim_leader().await) }
        })
        .await;
        if keep {
            ticket.extend_from_slice(&scratch);
            round_ticket.push(median(&mut scratch));
        }
        scratch.clear();
        time_each(n, &mut scratch, |_| {
            let addr = &tracker_addr;
            async move {
                let t = addr.send(ClaimLeader).await.expect("tracker alive");
                assert!(t.await);
            }
        })
        .await;
        if keep {
            ticket_addr.extend_from_slice(&scratch);
        }
        time_extensions(&leases, &names, &mut next_service, n, long, &mut scratch).await;
        if keep {
            claim.extend_from_slice(&scratch);
            round_claim.push(median(&mut scratch));
        }
    }
    // A third manager holding only 1 000 leases: the same claims, with a lease table
    // that stays in the caches. Not a metric; it shows what the table's size costs.
    // Started only now, and timed in rounds of its own, because with it in the rounds
    // above the 100 000-lease figure came out ~0.04 higher.
    const SMALL: usize = 1_000;
    let small = ManagerActor::new().start();
    fill(&small, &names[..SMALL], long).await;

    // Rounds of the baseline and claims against the small manager.
    let mut round_small_actix = Vec::with_capacity(size.rounds);
    for round in 0..=size.rounds {
        let n = if round == 0 { warm } else { per_round };
        let keep = round > 0;
        time_pings(&noop, n, &mut scratch).await;
        if keep {
            round_small_actix.push(median(&mut scratch));
        }
        time_extensions(
            &small,
            &names[..SMALL],
            &mut next_small,
            n,
            long,
            &mut scratch,
        )
        .await;
        if keep {
            round_small.push(median(&mut scratch));
        }
    }
    let actix = median(&mut actix);
    let ticket = median(&mut ticket);
    let ticket_addr = median(&mut ticket_addr);
    let claim = median(&mut claim);
    // The ratios are the median over rounds of each round's ratio of medians, so that
    // one round disturbed by the rest of the machine does not decide them.
    let ratio = median_ratio(&round_ticket, &round_actix);
    let mratio = median_ratio(&round_claim, &round_actix);
    let small_ratio = median_ratio(&round_small, &round_small_actix);
    let base = format!("{:.0} ns", ns(actix));
    report.row("actix_roundtrip_ns", base.clone(), "-".into(), None);
    report.target_row(
        "ticket_roundtrip_ns",
        format!("{:.0} ns", ns(ticket)),
        base.clone(),
        Some(ratio),
        ratio,
        1.2,
    );
    let addr_ratio = ns(ticket_addr) / ns(actix);
    report.row(
        "(ticket via addr.send)",
        format!("{:.0} ns", ns(ticket_addr)),
        base.clone(),
        Some(addr_ratio),
    );
    report.target_row(
        "manager_claim_ns",
        format!("{:.0} ns", ns(claim)),
        base,
        Some(mratio),
        mratio,
        1.5,
    );
    let spread = |num: &[Duration], den: &[Duration]| {
        let mut r: Vec<f64> = num.iter().zip(den).map(|(n, d)| ns(*n) / ns(*d)).collect();
        r.sort_by(f64::total_cmp);
        format!("{:.2}-{:.2}", r[0], r[r.len() - 1])
    };
    report.notes.push(format!(
        "per-op figures: {} timed ops each in {} interleaved rounds (+ warm-up); the ratios \
         are the median of the rounds' ratios (ticket {}, manager {} across rounds); \
         ticket via addr.send(ClaimLeader).await?.await: {:.0} ns (not a metric)",
        per_round * size.rounds,
        size.rounds,
        spread(&round_ticket, &round_actix),
        spread(&round_claim, &round_actix),
        ns(ticket_addr)
    ));
    report.notes.push(format!(
        "manager claims against {SMALL} leases instead of {UNITS} (the table in the caches; \
         not a metric): ratio {small_ratio:.2} (rounds {})",
        spread(&round_small, &round_small_actix)
    ));
    report.metric("actix_roundtrip_ns", ns(actix));
    report.metric("ticket_roundtrip_ns", ns(ticket));
    report.metric("ticket_ratio", ratio);
    report.metric("manager_claim_ns", ns(claim));
    report.metric("manager_ratio", mratio);

    tracker.kill();
    let _ = tracker.wait().await;
}

/// Tickets per second with 1 000 concurrent clients on one leader.
async fn concurrent(size: Size, report: &mut Report) {
    const CLIENTS: usize = 1_000;
    let manager = ManagerActor::new().start();
    let tracker = Tracker::start(
        unit("conc/0"),
        Claimer::new(&manager),
        Duration::from_secs(3_600),
    )
    .expect("a valid duration");
    assert!(tracker.wait_leader().await);
    let start = StdInstant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tracker = tracker.clone();
            actix_rt::spawn(async move {
                for _ in 0..size.per_client {
                    assert!(tracker.claim_leader().await);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client finished");
    }
    let elapsed = start.elapsed();
    let per_s = (CLIENTS * size.per_client) as f64 / elapsed.as_secs_f64();
    report.row(
        "ticket_concurrent_per_s",
        format!("{per_s:.0} /s"),
        "-".into(),
        None,
    );
    report.notes.push(format!(
        "concurrent tickets: {CLIENTS} clients x {} tickets in {:.2} s",
        size.per_client,
        elapsed.as_secs_f64()
    ));
    report.metric("ticket_concurrent_per_s", per_s);
    tracker.kill();
    let _ = tracker.wait().await;
}

/// Leases expiring spread over 10 s, each with a pending block: p99 of the lateness
/// of the block's answer, as observed by the asker.
async fn expiry_wake(size: Size, report: &mut Report) {
    const SPREAD: Duration = Duration::from_secs(10);
    // Time to set everything up before the first lease expires.
    let margin = Duration::from_secs(3);
    let manager = ManagerActor::new().start();
    let n = size.leases;
    let first = tokio::time::Instant::now() + margin;
    let mut expiries = Vec::with_capacity(n);
    for i in 0..n {
        let service = service("exp", i);
        let at = first + SPREAD * i as u32 / n as u32;
        let duration = at - tokio::time::Instant::now();
        manager
            .send(ClaimLeadership {
                service: service.clone(),
                unit: format!("{service}/0"),
                duration,
            })
            .await
            .expect("manager alive")
            .expect("granted");
        let lease = manager
            .send(Leader { service })
            .await
            .expect("manager alive")
            .expect("a live lease");
        expiries.push(lease.expires);
    }
    let waits: Vec<_> = expiries
        .iter()
        .enumerate()
        .map(|(i, &expires)| {
            let request = manager.send(BlockUntilLeadershipReleased {
                service: service("exp", i),
            });
            actix_rt::spawn(async move {
                request
                    .await
                    .expect("manager alive")
                    .expect("released at expiry");
                tokio::time::Instant::now().saturating_duration_since(expires)
            })
        })
        .collect();
    // The baseline: bare tokio sleeps, one per millisecond of the same window, woken
    // by the same timer wheel under the same load. Their lateness is what any
    // timer-driven wake-up costs here.
    let sleeps: Vec<_> = (0..SPREAD.as_millis() as u32)
        .map(|k| {
            // Deadlines at varied sub-millisecond phases, as the leases' are.
            let phase = Duration::from_nanos((u64::from(k) * 618_034) % 1_000_000);
            let at = first + Duration::from_millis(u64::from(k)) + phase;
            actix_rt::spawn(async move {
                tokio::time::sleep_until(at).await;
                tokio::time::Instant::now().saturating_duration_since(at)
            })
        })
        .collect();
    // The mailbox is FIFO: once this is answered every block is registered.
    let _ = manager
        .send(Leader {
            service: "x".into(),
        })
        .await;
    let ready = tokio::time::Instant::now();
    assert!(
        ready < first,
        "set-up overran the first expiry by {:?}",
        ready - first
    );
    let mut late = Vec::with_capacity(n);
    for wait in waits {
        late.push(wait.await.expect("block task finished"));
    }
    let mut slept = Vec::with_capacity(sleeps.len());
    for sleep in sleeps {
        slept.push(sleep.await.expect("sleep task finished"));
    }
    let p = p99(&mut late);
    let base = p99(&mut slept);
    report.timer_row("expiry_wake_p99_ms", p, base);
    report.notes.push(format!(
        "expiry wake: {n} leases over {SPREAD:?}; late by median {:.3} ms, p99 {:.3} ms, \
         max {:.3} ms (set-up left {:.2} s spare). Baseline, {} bare tokio sleeps in the \
         same window: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(late[late.len() / 2]),
        ms(p),
        ms(late.last().copied().unwrap_or_default()),
        (first - ready).as_secs_f64(),
        slept.len(),
        ms(slept[slept.len() / 2]),
        ms(base),
        ms(slept.last().copied().unwrap_or_default()),
    ));
    report.metric("expiry_wake_p99_ms", ms(p));
}

/// Failovers with d = 50 ms: from the killed leader's lease expiry to the other unit's
/// `WaitLeader` ticket resolving.
async fn failover(size: Size, report: &mut Report) {
    const D: Duration = Duration::from_millis(50);
    let manager = ManagerActor::new().start();
    let claimer = Claimer::new(&manager);
    let mut gaps = Vec::with_capacity(size.failovers);
    let mut slept = Vec::with_capacity(size.failovers);
    for k in 0..size.failovers {
        let service = service("fo", k);
        let old = Tracker::start(unit(&format!("{service}/0")), claimer.clone(), D)
            .expect("a valid duration");
        assert!(old.wait_leader().await);
        let new = Tracker::start(unit(&format!("{service}/1")), claimer.clone(), D)
            .expect("a valid duration");
        // A minion's WaitMinion resolves false once its claim is denied.
        assert!(!new.wait_minion().await);
        let took_over = new.wait_leader().into_future();
        old.kill();
        old.wait().await.expect("a clean stop");
        // The old tracker has stopped, so any renewal it sent is already in the
        // manager's mailbox ahead of this query: the expiry read here is final.
        let expires = manager
            .send(Leader {
                service: service.clone(),
            })
            .await
            .expect("manager alive")
            .expect("the old lease is live until it expires")
            .expires;
        assert!(took_over.await, "the other unit takes over");
        gaps.push(tokio::time::Instant::now().saturating_duration_since(expires));
        new.kill();
        let _ = new.wait().await;
        // The baseline, in the same regime (an idle runtime parked until a timer):
        // a bare tokio sleep whose deadline falls at a sub-millisecond phase that
        // varies from round to round, as a lease's expiry does.
        let phase = Duration::from_nanos((k as u64 * 618_034) % 1_000_000);
        let at = tokio::time::Instant::now() + Duration::from_millis(20) + phase;
        tokio::time::sleep_until(at).await;
        slept.push(tokio::time::Instant::now().saturating_duration_since(at));
    }
    // The same hand-over without any timer: the old leader's lease is released (as
    // if by its owner) instead of expiring. What is left is the library's own cost:
    // the block's answer, the minion's claim, the grant, the ticket.
    let mut chain = Vec::with_capacity(size.failovers);
    for k in 0..size.failovers {
        let service = service("rel", k);
        let old_unit = format!("{service}/0");
        let old = Tracker::start(unit(&old_unit), claimer.clone(), D).expect("a valid duration");
        assert!(old.wait_leader().await);
        let new = Tracker::start(unit(&format!("{service}/1")), claimer.clone(), D)
            .expect("a valid duration");
        assert!(!new.wait_minion().await);
        let took_over = new.wait_leader().into_future();
        old.kill();
        old.wait().await.expect("a clean stop");
        let released = StdInstant::now();
        manager
            .send(ReleaseLeadership {
                service,
                unit: old_unit,
            })
            .await
            .expect("manager alive")
            .expect("released");
        assert!(took_over.await, "the other unit takes over");
        chain.push(released.elapsed());
        new.kill();
        let _ = new.wait().await;
    }
    let chain_p99 = p99(&mut chain);
    report.notes.push(format!(
        "failover without timers ({} hand-overs by ReleaseLeadership instead of expiry): \
         median {:.1} µs, p99 {:.1} µs",
        chain.len(),
        chain[chain.len() / 2].as_secs_f64() * 1e6,
        chain_p99.as_secs_f64() * 1e6,
    ));
    let p = p99(&mut gaps);
    let median = gaps[gaps.len() / 2];
    let base = p99(&mut slept);
    report.timer_row("failover_p99_ms", p, base);
    report.notes.push(format!(
        "failover: {} failovers at d = {D:?}; median {:.3} ms, p99 {:.3} ms, max {:.3} ms. \
         Baseline, a bare tokio sleep after each (idle runtime): median {:.3} ms, \
         p99 {:.3} ms, max {:.3} ms",
        size.failovers,
        ms(median),
        ms(p),
        ms(gaps.last().copied().unwrap_or_default()),
        ms(slept[slept.len() / 2]),
        ms(base),
        ms(slept.last().copied().unwrap_or_default()),
    ));
    report.metric("failover_p99_ms", ms(p));
}

/// Waits until `tracker`'s status says it leads. Watching the status promises
/// nothing, unlike a `WaitLeader` ticket, so a resign after it releases at once.
pub(crate) async fn until_leading(tracker: &Tracker) {
    until_status(tracker, |s| matches!(s, Status::Leader(_))).await;
}

/// Waits until `tracker`'s status is one that `wanted` accepts.
pub(crate) async fn until_status(tracker: &Tracker, wanted: impl FnMut(&Status) -> bool) {
    let mut status = tracker.status();
    status
        .wait_for(wanted)
        .await
        .expect("the tracker is running");
}

/// Resigns `old` and returns how long until `new`, blocked as a minion, leads (its
/// `WaitLeader` resolving `true`); then stops `new`.
async fn time_handover(old: &Tracker, new: &Tracker) -> Duration {
    let took_over = new.wait_leader().into_future();
    let start = StdInstant::now();
    let (resigned, led) = futures::join!(old.resign(), async {
        let led = took_over.await;
        (led, start.elapsed())
    });
    resigned.expect("a clean resign");
    assert!(led.0, "the successor leads");
    new.kill();
    let _ = new.wait().await;
    led.1
}

/// Hand-overs with nothing promised: from `resign()` to the successor's `WaitLeader`
/// resolving `true`. No timer is on this path: the release, the blocked minion's
/// answer, its claim and grant, its ticket.
async fn handover(size: Size, report: &mut Report) {
    const D: Duration = Duration::from_secs(10);
    let manager = ManagerActor::new().start();
    let claimer = Claimer::new(&manager);
    let mut gaps = Vec::with_capacity(size.handovers);
    for k in 0..size.handovers {
        let service = service("ho", k);
        let old = Tracker::start(unit(&format!("{service}/0")), claimer.clone(), D)
            .expect("a valid duration");
        until_leading(&old).await;
        let new = Tracker::start(unit(&format!("{service}/1")), claimer.clone(), D)
            .expect("a valid duration");
        // Denied, so now blocked until the lease goes.
        assert!(!new.wait_minion().await);
        gaps.push(time_handover(&old, &new).await);
    }
    let p = p99(&mut gaps);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    report.target_row(
        "handover_us_p99",
        format!("{:.1} µs", us(p)),
        "-".into(),
        None,
        us(p),
        100.0,
    );
    report.notes.push(format!(
        "hand-over (resign with nothing promised, to the successor's WaitLeader): {} \
         hand-overs; median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        gaps.len(),
        us(gaps[gaps.len() / 2]),
        us(p),
        us(gaps.last().copied().unwrap_or_default()),
    ));
    report.metric("handover_us_p99", us(p));
}

/// Runs the memory children and reports their figures.
fn memory(report: &mut Report) {
    // Steady state: started 1 000 at a time, so that what start-up leaves behind in
    // the allocator is bounded by a batch, the same for trackers and actors.
    let trackers = run_child("trackers", STEADY_BATCH);
    let actors = run_child("actors", STEADY_BATCH);
    // All at once: the start-up time, and the memory with start-up's leftovers.
    let burst = run_child("trackers", UNITS);
    let burst_actors = run_child("actors", UNITS);
    let tracker_bytes = trackers["bytes"];
    let actor_bytes = actors["bytes"];
    let ratio = tracker_bytes / actor_bytes;
    report.row(
        "actor_bytes",
        format!("{actor_bytes:.0} B"),
        "-".into(),
        None,
    );
    report.target_row(
        "tracker_bytes",
        format!("{tracker_bytes:.0} B"),
        format!("{actor_bytes:.0} B"),
        Some(ratio),
        ratio,
        2.0,
    );
    let burst_ratio = burst["bytes"] / burst_actors["bytes"];
    report.target_row(
        "tracker_bytes_burst",
        format!("{:.0} B", burst["bytes"]),
        format!("{:.0} B", burst_actors["bytes"]),
        Some(burst_ratio),
        burst_ratio,
        2.5,
    );
    let start_s = burst["start_s"];
    report.row(
        "trackers_100k_start_s",
        format!("{start_s:.3} s"),
        format!("{:.3} s", burst_actors["start_s"]),
        Some(start_s / burst_actors["start_s"]),
    );
    report.notes.push(format!(
        "memory: RSS growth / {UNITS}, each in a fresh child process, started \
         {STEADY_BATCH} at a time (each batch answered before the next); all at once \
         (at most 1 024 first claims in flight, the rest queued on the claimer): {:.0} B \
         per tracker, {:.0} B per actor. Start-up baseline: {UNITS} no-op actors started at once and \
         pinged once each",
        burst["bytes"], burst_actors["bytes"]
    ));
    report.metric("tracker_bytes", tracker_bytes);
    report.metric("actor_bytes", actor_bytes);
    report.metric("memory_ratio", ratio);
    report.metric("tracker_bytes_burst", burst["bytes"]);
    report.metric("memory_ratio_burst", burst_ratio);
    report.metric("trackers_100k_start_s", start_s);
}

/// Runs this binary as `--child which --batch n` and parses its `child <key> <value>` lines.
fn run_child(which: &str, batch: usize) -> std::collections::HashMap<String, f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args(["--child", which, "--batch", &batch.to_string()])
        .output()
        .expect("child ran");
    assert!(
        out.status.success(),
        "child {which} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("child")).then_some(())?;
            let key = words.next()?.to_owned();
            let value = words.next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// Resident set size of this process in bytes.
fn rss() -> f64 {
    resident::resident_bytes() as f64
}

/// One memory measurement in a fresh process: `trackers` or `actors`, started `batch`
/// at a time (each batch answered once before the next starts).
fn child(which: &str, batch: usize) {
    let units = child_units();
    let batch = batch.clamp(1, units);
    System::new().block_on(async {
        // Warm up what is allocated once per process (runtime, thread-locals, the
        // manager) before the first reading.
        let manager = ManagerActor::new().start();
        let warm = NoOp.start();
        warm.send(Ping).await.expect("actor alive");
        let before = rss();
        let start = StdInstant::now();
        match which {
            "trackers" => {
                let claimer = Claimer::new(&manager);
                let mut trackers: Vec<Tracker> = Vec::with_capacity(units);
                for first in (0..units).step_by(batch) {
                    let end = (first + batch).min(units);
                    trackers.extend((first..end).map(|i| {
                        Tracker::start(
                            unit(&format!("{}/0", service("mem", i))),
                            claimer.clone(),
                            Duration::from_secs(3_600),
                        )
                        .expect("a valid duration")
                    }));
                    for tracker in &trackers[first..end] {
                        assert!(tracker.wait_leader().await);
                    }
                }
                child_report(before, start, units);
                drop(trackers);
            }
            "actors" => {
                let mut actors: Vec<Addr<NoOp>> = Vec::with_capacity(units);
                for first in (0..units).step_by(batch) {
                    let end = (first + batch).min(units);
                    actors.extend((first..end).map(|_| NoOp.start()));
                    for actor in &actors[first..end] {
                        actor.send(Ping).await.expect("actor alive");
                    }
                }
                child_report(before, start, units);
                drop(actors);
            }
            other => panic!("unknown child {other:?}"),
        }
    });
}

/// Prints a child's figures, while its `units` actors are still alive: the RSS growth
/// since `before` per actor, and the time since `start`.
fn child_report(before: f64, start: StdInstant, units: usize) {
    let elapsed = start.elapsed();
    let after = rss();
    println!("child bytes {}", (after - before) / units as f64);
    println!("child start_s {}", elapsed.as_secs_f64());
}
