//! The etcd figures (issue 13): hand-over and failover against `etcdctl elect`, etcd's
//! own election, on the same server in the same run; and many services on three
//! `EtcdManager` connections.
//!
//! | metric | how it is measured |
//! |---|---|
//! | `etcd_handover_ms_p50` | d = 1 s, two units of a fresh service on two `EtcdManager` connections: the leader (its status says so, nothing promised) calls `resign()`; median of the time until the other unit's `WaitLeader` resolves `true` |
//! | `etcd_handover_ratio` | that median / the median for `etcdctl elect`: two `etcdctl elect` processes on one election name; SIGINT the leader (it resigns), time until the waiting campaigner prints that it leads |
//! | `etcd_failover_ms_p50` | d = 1 s: the leaders of several services run in a child process (started d / n apart, so the kill falls at every point of the renewal cycle), which is killed (SIGKILL); median of the time from the kill until each successor's `WaitLeader` resolves `true`. Bound: `2·d` (the lease, renewed every `d`) plus etcd's expiry granularity (~0.5 s) plus a watch event and a claim |
//! | (`etcdctl elect` failover) | the same with `etcdctl elect` (session TTL 60 s): full run only, one sample (it takes about a minute), measured while the scale figure runs |
//! | `etcd_services` | services in the scale figure: each with 3 units, unit `j` on connection `j` of 3, d = 2 s, started ten services at a time with the batches spread over one `d` (as services started at unrelated instants: their renewals are spread, not in one burst), then measured for 60 s (10 s with `--quick`) |
//! | `etcd_claim_ms_p99` | p99 of the claims answered during that window (renewals, and denied claims of minions), timed between the tracker's `ClaimLeadership` and the manager's answer by a forwarding actor |
//! | `etcd_claim_failures` | claims in the window answered with an error other than "denied" (a timeout, etcd unreachable), plus trackers that stopped |
//! | `etcd_leader_samples_bad` | samples (every 0.5 s) at which some service did not have exactly one unit whose status is `Leader` |
//!
//! The server: `LEADERSHIP_ETCD_ENDPOINTS` (as `.ci/with-etcd` exports it, with the
//! server's pid in `LEADERSHIP_ETCD_PID` for its CPU time), or with `--etcd` a private
//! `etcd` started as the tests' support starts one (free loopback ports, a fresh data
//! directory, removed afterwards).

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant as StdInstant};

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Grant, HandOverLeadership, LeaseError,
    ReleaseLeadership, Status, Tracker,
};

// The etcd tests' support: the bench starts a private server the way they do, but has
// no use for the rest of it (freezing, restarting, polling helpers).
#[allow(dead_code)]
#[path = "../../tests/etcd_support/mod.rs"]
mod etcd_support;

use super::{
    cpu_ticks, median, ms, p99, service, time_handover, unit, until_leading, until_status, Report,
    Size,
};

/// The etcd server the figures run against.
pub struct Server {
    endpoints: Vec<String>,
    /// The server's process, for its CPU time, when known.
    pid: Option<u32>,
    /// A private server, stopped and removed on drop.
    _private: Option<etcd_support::process::EtcdProcess>,
}

impl Server {
    /// `LEADERSHIP_ETCD_ENDPOINTS` if set, else a private server if `start` is true.
    pub fn find(start: bool) -> Option<Server> {
        if let Ok(v) = std::env::var("LEADERSHIP_ETCD_ENDPOINTS") {
            if !v.trim().is_empty() {
                return Some(Server {
                    endpoints: v.split(',').map(|s| s.trim().to_owned()).collect(),
                    pid: std::env::var("LEADERSHIP_ETCD_PID")
                        .ok()
                        .and_then(|p| p.parse().ok()),
                    _private: None,
                });
            }
        }
        if !start {
            return None;
        }
        let process = etcd_support::process::EtcdProcess::start("bench");
        Some(Server {
            endpoints: vec![process.endpoint.clone()],
            pid: Some(process.pid()),
            _private: Some(process),
        })
    }

    /// A description for the report.
    pub fn describe(&self) -> String {
        let version = Command::new("etcd")
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default();
        format!(
            "etcd at {} (pid {}; {}; {})",
            self.endpoints.join(","),
            self.pid.map_or_else(|| "unknown".into(), |p| p.to_string()),
            version,
            if self._private.is_some() {
                "private"
            } else {
                "LEADERSHIP_ETCD_ENDPOINTS"
            }
        )
    }
}

/// A key prefix no other run uses.
fn prefix(what: &str) -> String {
    etcd_support::unique_prefix(&format!("bench-{what}"))
}

async fn connect(server: &Server, prefix: &str) -> Addr<EtcdManager> {
    EtcdManager::connect(EtcdConfig::new(server.endpoints.clone(), prefix))
        .await
        .expect("etcd reachable")
        .start()
}

/// Runs every etcd figure.
pub async fn run(server: &Server, size: Size, quick: bool, report: &mut Report) {
    report
        .notes
        .push(format!("etcd figures against {}", server.describe()));
    handover(server, size, report).await;
    failover(server, size, report).await;
    // etcdctl's failover waits for its 60 s session TTL: measured once, in the full run,
    // beside the scale figure (it only waits).
    let elect_failover = (!quick).then(|| {
        let endpoint = server.endpoints[0].clone();
        std::thread::spawn(move || elect_failover(&endpoint))
    });
    if !quick {
        for services in [100, 300] {
            scale(server, services, Duration::from_secs(20), false, report).await;
        }
    }
    let window = if quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(60)
    };
    scale(server, size.etcd_services, window, true, report).await;
    if let Some(thread) = elect_failover {
        match thread.join().expect("elect thread") {
            Some(gap) => report.notes.push(format!(
                "etcdctl elect failover (leader's etcdctl killed with SIGKILL, session TTL \
                 60 s): the waiting campaigner led {:.0} ms after the kill (one sample)",
                ms(gap)
            )),
            None => report
                .notes
                .push("etcdctl elect failover: no sample (the first campaigner did not lead within 10 s, or the second within 120 s of the kill)".into()),
        }
    }
}

/// Our hand-over against `etcdctl elect`'s, alternating, `size.etcd_samples` each.
async fn handover(server: &Server, size: Size, report: &mut Report) {
    const D: Duration = Duration::from_secs(1);
    let prefix = prefix("handover");
    let a = connect(server, &prefix).await;
    let b = connect(server, &prefix).await;
    let endpoint = server.endpoints[0].clone();
    let mut ours = Vec::with_capacity(size.etcd_samples);
    let mut theirs = Vec::with_capacity(size.etcd_samples);
    for k in 0..size.etcd_samples {
        let service = service("eho", k);
        let old = Tracker::start(unit(&format!("{service}/0")), Claimer::new(&a), D)
            .expect("a valid duration");
        until_leading(&old).await;
        let new = Tracker::start(unit(&format!("{service}/1")), Claimer::new(&b), D)
            .expect("a valid duration");
        until_status(&new, |s| *s == Status::Minion).await;
        // Let the minion's block reach etcd (its watch), as etcdctl's campaigner is
        // given time to wait below.
        tokio::time::sleep(Duration::from_millis(100)).await;
        ours.push(time_handover(&old, &new).await);

        let name = format!("{prefix}/elect-{k}");
        let endpoint = endpoint.clone();
        let gap = actix_rt::task::spawn_blocking(move || elect_handover(&endpoint, &name))
            .await
            .expect("elect thread");
        theirs.push(gap);
    }
    let ours_p50 = median(&mut ours);
    let theirs_p50 = median(&mut theirs);
    let ratio = ms(ours_p50) / ms(theirs_p50);
    report.target_row(
        "etcd_handover_ms_p50",
        format!("{:.2} ms", ms(ours_p50)),
        format!("{:.2} ms", ms(theirs_p50)),
        Some(ratio),
        ratio,
        1.5,
    );
    report.notes.push(format!(
        "etcd hand-over, {} each, d = {D:?}: resign() to the successor's WaitLeader: median \
         {:.2} ms, p99 {:.2} ms; etcdctl elect (SIGINT the leader, until the waiting \
         campaigner prints): median {:.2} ms, p99 {:.2} ms",
        ours.len(),
        ms(ours_p50),
        ms(p99(&mut ours)),
        ms(theirs_p50),
        ms(p99(&mut theirs)),
    ));
    report.metric("etcd_handover_ms_p50", ms(ours_p50));
    report.metric("etcd_handover_ratio", ratio);
}

/// `etcdctl elect NAME PROPOSAL` in the background: the process, and a receiver of the
/// instant it first prints (it prints only once elected).
fn elect(endpoint: &str, name: &str, proposal: &str) -> (Child, mpsc::Receiver<StdInstant>) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "elect", name, proposal])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl on PATH (Debian package etcd-client)");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(_)) = lines.next() {
            let _ = tx.send(StdInstant::now());
        }
        for _ in lines {}
    });
    (child, rx)
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, signal).expect("signal the child");
}

/// One `etcdctl elect` hand-over: SIGINT the leader, until the other campaigner leads.
fn elect_handover(endpoint: &str, name: &str) -> Duration {
    let (mut leader, led) = elect(endpoint, name, "a");
    led.recv_timeout(Duration::from_secs(10))
        .expect("the first campaigner leads");
    let (mut next, next_led) = elect(endpoint, name, "b");
    // etcdctl prints nothing while it waits: give it time to campaign.
    std::thread::sleep(Duration::from_millis(300));
    assert!(next_led.try_recv().is_err(), "the second campaigner waits");
    let start = StdInstant::now();
    signal(&leader, rustix::process::Signal::INT);
    let at = next_led
        .recv_timeout(Duration::from_secs(10))
        .expect("the second campaigner leads after the resign");
    let _ = leader.wait();
    signal(&next, rustix::process::Signal::INT);
    let _ = next.wait();
    at.saturating_duration_since(start)
}

/// One `etcdctl elect` failover: SIGKILL the leader, until the other campaigner leads.
fn elect_failover(endpoint: &str) -> Option<Duration> {
    let name = format!("{}/elect-failover", prefix("failover"));
    let (mut leader, led) = elect(endpoint, &name, "a");
    if led.recv_timeout(Duration::from_secs(10)).is_err() {
        // Not elected: stop it rather than leave it campaigning after the bench.
        let _ = leader.kill();
        let _ = leader.wait();
        return None;
    }
    let (mut next, next_led) = elect(endpoint, &name, "b");
    std::thread::sleep(Duration::from_millis(300));
    let start = StdInstant::now();
    let _ = leader.kill();
    let _ = leader.wait();
    let gap = next_led
        .recv_timeout(Duration::from_secs(120))
        .ok()
        .map(|at| at.saturating_duration_since(start));
    signal(&next, rustix::process::Signal::INT);
    let _ = next.wait();
    gap
}

/// Failovers at d = 1 s: the leaders live in a child process, killed with SIGKILL.
async fn failover(server: &Server, size: Size, report: &mut Report) {
    const D: Duration = Duration::from_secs(1);
    let n = size.etcd_samples;
    let prefix = prefix("failover");
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["--child", "etcd-leaders", "--endpoints"])
        .arg(server.endpoints.join(","))
        .args(["--prefix", &prefix, "--services", &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the leaders' child process");
    let stdout = child.stdout.take().expect("piped");
    let ready = actix_rt::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).ok();
        line
    })
    .await
    .expect("reader");
    assert_eq!(ready.trim(), "ready", "the leaders' child started");
    let manager = connect(server, &prefix).await;
    let mut successors = Vec::with_capacity(n);
    for k in 0..n {
        let tracker = Tracker::start(
            unit(&format!("{}/1", service("efo", k))),
            Claimer::new(&manager),
            D,
        )
        .expect("a valid duration");
        until_status(&tracker, |s| *s == Status::Minion).await;
        successors.push(tracker);
    }
    // Let the minions' blocks reach etcd (their watches).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took_over: Vec<_> = successors.iter().map(|t| t.wait_leader()).collect();
    let start = StdInstant::now();
    let _ = child.kill();
    let _ = child.wait();
    let mut gaps: Vec<Duration> = futures::future::join_all(took_over.into_iter().map(|t| async {
        assert!(t.await, "a successor takes over");
        start.elapsed()
    }))
    .await;
    for t in &successors {
        t.kill();
    }
    let p50 = median(&mut gaps);
    let bound = 2 * D + Duration::from_millis(500);
    report.target_row(
        "etcd_failover_ms_p50",
        format!("{:.0} ms", ms(p50)),
        "-".into(),
        None,
        ms(p50),
        ms(bound),
    );
    report.notes.push(format!(
        "etcd failover, d = {D:?}, {n} services whose leaders' process was killed at once: \
         from the kill to each successor's WaitLeader: min {:.0} ms, median {:.0} ms, max \
         {:.0} ms (bound 2·d + etcd's ~0.5 s expiry granularity = {:.0} ms)",
        ms(gaps[0]),
        ms(p50),
        ms(gaps[gaps.len() - 1]),
        ms(bound),
    ));
    report.metric("etcd_failover_ms_p50", ms(p50));
}

/// The child process of the failover figure: leads `--services` services and waits to
/// be killed.
pub fn leaders_child(args: &[String]) {
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let endpoints: Vec<String> = arg("--endpoints").split(',').map(str::to_owned).collect();
    let prefix = arg("--prefix");
    let n: usize = arg("--services").parse().expect("a count");
    System::new().block_on(async move {
        let manager = EtcdManager::connect(EtcdConfig::new(endpoints, prefix))
            .await
            .expect("etcd reachable")
            .start();
        let mut leaders = Vec::with_capacity(n);
        for k in 0..n {
            let tracker = Tracker::start(
                unit(&format!("{}/0", service("efo", k))),
                Claimer::new(&manager),
                Duration::from_secs(1),
            )
            .expect("a valid duration");
            until_leading(&tracker).await;
            leaders.push(tracker);
            // Spread the leaders' renewals evenly over d, so that the kill falls at a
            // different point of each one's renewal cycle.
            tokio::time::sleep(Duration::from_secs(1) / n as u32).await;
        }
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush().ok();
        // Lead until killed.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        drop(leaders);
    });
}

/// What the forwarding actor saw of the claims.
#[derive(Default)]
struct ClaimStats {
    /// Whether claims are being recorded (the measurement window).
    recording: bool,
    answered: Vec<Duration>,
    denied: usize,
    failures: Vec<String>,
}

/// Forwards the protocol to an `EtcdManager`, timing each claim.
struct Timed {
    inner: Addr<EtcdManager>,
    stats: Rc<RefCell<ClaimStats>>,
}

impl Actor for Timed {
    type Context = Context<Self>;
}

impl Handler<ClaimLeadership> for Timed {
    type Result = ResponseFuture<Result<Grant, LeaseError>>;
    fn handle(&mut self, claim: ClaimLeadership, _: &mut Context<Self>) -> Self::Result {
        let request = self.inner.send(claim);
        let stats = self.stats.clone();
        let start = StdInstant::now();
        Box::pin(async move {
            let answer = request
                .await
                .unwrap_or_else(|e| Err(LeaseError::Failed(e.to_string())));
            let took = start.elapsed();
            let mut stats = stats.borrow_mut();
            if stats.recording {
                stats.answered.push(took);
                match &answer {
                    Ok(_) => {}
                    Err(LeaseError::ClaimDenied) => stats.denied += 1,
                    Err(other) => stats.failures.push(other.to_string()),
                }
            }
            answer
        })
    }
}

macro_rules! forward {
    ($msg:ty, $out:ty) => {
        impl Handler<$msg> for Timed {
            type Result = ResponseFuture<$out>;
            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                let request = self.inner.send(msg);
                Box::pin(async move {
                    request
                        .await
                        .unwrap_or_else(|e| Err(LeaseError::Failed(e.to_string())))
                })
            }
        }
    };
}

forward!(BlockUntilLeadershipReleased, Result<(), LeaseError>);
forward!(ReleaseLeadership, Result<(), LeaseError>);
forward!(HandOverLeadership, Result<(), LeaseError>);

/// `services` services × 3 units on three connections, d = 2 s, for `window`.
async fn scale(
    server: &Server,
    services: usize,
    window: Duration,
    metrics: bool,
    report: &mut Report,
) {
    const D: Duration = Duration::from_secs(2);
    const UNITS: usize = 3;
    let prefix = prefix("scale");
    let stats = Rc::new(RefCell::new(ClaimStats::default()));
    let mut claimers = Vec::with_capacity(UNITS);
    let mut managers = Vec::with_capacity(UNITS);
    for _ in 0..UNITS {
        let manager = connect(server, &prefix).await;
        let timed = Timed {
            inner: manager.clone(),
            stats: stats.clone(),
        }
        .start();
        claimers.push(Claimer::new(&timed));
        managers.push((manager, timed));
    }
    // Start ten services at a time, the batches spread evenly over one claim duration,
    // each settled before the next. Services in a deployment start at unrelated
    // instants, so their renewals (every `D` from their first claim) are spread over
    // `D`; starting them all at once would lock every renewal into one burst per `D`,
    // which measures the burst, not a renewal (earlier runs started a hundred at a time
    // back to back: the p99 was then the time etcd took to drain ~100 renewals).
    const BATCH: usize = 10;
    let set_up = StdInstant::now();
    let batches = services.div_ceil(BATCH).max(1);
    let spacing = D / u32::try_from(batches).expect("a few batches");
    let mut trackers: Vec<Vec<Tracker>> = Vec::with_capacity(services);
    for (batch, first) in (0..services).step_by(BATCH).enumerate() {
        let due = set_up + spacing * u32::try_from(batch).expect("a few batches");
        tokio::time::sleep_until(due.into()).await;
        let end = (first + BATCH).min(services);
        for i in first..end {
            let service = service("scale", i);
            trackers.push(
                (0..UNITS)
                    .map(|j| {
                        Tracker::start(unit(&format!("{service}/{j}")), claimers[j].clone(), D)
                            .expect("a valid duration")
                    })
                    .collect(),
            );
        }
        for units in &trackers[first..end] {
            let mut statuses: Vec<_> = units.iter().map(Tracker::status).collect();
            for status in &mut statuses {
                status
                    .wait_for(|s| *s != Status::Claiming)
                    .await
                    .expect("running");
            }
        }
    }
    let set_up = set_up.elapsed();
    // Settle for one claim duration, then measure.
    tokio::time::sleep(D).await;
    let etcd_pid = server.pid.map(|p| p.to_string());
    let etcd_before = etcd_pid.as_deref().and_then(cpu_ticks);
    let own_before = cpu_ticks("self");
    stats.borrow_mut().recording = true;
    let start = StdInstant::now();
    let mut samples = 0usize;
    let mut bad = 0usize;
    let mut worst = (usize::MAX, 0usize);
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples += 1;
        let mut sample_bad = false;
        for units in &trackers {
            let leaders = units
                .iter()
                .filter(|t| matches!(*t.status().borrow(), Status::Leader(_)))
                .count();
            worst = (worst.0.min(leaders), worst.1.max(leaders));
            sample_bad |= leaders != 1;
        }
        bad += usize::from(sample_bad);
    }
    let elapsed = start.elapsed();
    stats.borrow_mut().recording = false;
    let etcd_cpu = etcd_pid
        .as_deref()
        .and_then(cpu_ticks)
        .zip(etcd_before)
        .map(|(after, before)| (after - before) as f64 / 100.0 / elapsed.as_secs_f64());
    let own_cpu = cpu_ticks("self")
        .zip(own_before)
        .map(|(after, before)| (after - before) as f64 / 100.0 / elapsed.as_secs_f64());
    let stopped = trackers
        .iter()
        .flatten()
        .filter(|t| *t.status().borrow() == Status::Stopped)
        .count();
    let (mut answered, denied, failures) = {
        let mut s = stats.borrow_mut();
        (
            std::mem::take(&mut s.answered),
            s.denied,
            std::mem::take(&mut s.failures),
        )
    };
    let claims = answered.len();
    let claim_p99 = if answered.is_empty() {
        Duration::ZERO
    } else {
        p99(&mut answered)
    };
    let claim_p50 = answered
        .get(answered.len() / 2)
        .copied()
        .unwrap_or_default();
    let failed = failures.len() + stopped;
    let pct =
        |c: Option<f64>| c.map_or_else(|| "unknown".into(), |c| format!("{:.0} %", c * 100.0));
    report.notes.push(format!(
        "etcd scale: {services} services x {UNITS} units on {UNITS} connections, d = {D:?}, \
         set up in {:.1} s, measured {:.0} s: {claims} claims answered ({:.0}/s, {denied} \
         denied), claim latency median {:.2} ms, p99 {:.2} ms; {} failed claims{}, {stopped} \
         trackers stopped; leaders per service between {} and {} over {samples} samples \
         ({bad} bad); etcd CPU {} of a core, this process {}",
        set_up.as_secs_f64(),
        elapsed.as_secs_f64(),
        claims as f64 / elapsed.as_secs_f64(),
        ms(claim_p50),
        ms(claim_p99),
        failures.len(),
        failures
            .first()
            .map_or_else(String::new, |f| format!(" (first: {f})")),
        worst.0,
        worst.1,
        pct(etcd_cpu),
        pct(own_cpu),
    ));
    if metrics {
        report.row("etcd_services", format!("{services}"), "-".into(), None);
        report.target_row(
            "etcd_claim_ms_p99",
            format!("{:.2} ms", ms(claim_p99)),
            "-".into(),
            None,
            ms(claim_p99),
            50.0,
        );
        report.target_row(
            "etcd_claim_failures",
            format!("{failed}"),
            "-".into(),
            None,
            failed as f64,
            0.0,
        );
        report.target_row(
            "etcd_leader_samples_bad",
            format!("{bad} of {samples}"),
            "-".into(),
            None,
            bad as f64,
            0.0,
        );
        report.metric("etcd_services", services as f64);
        report.metric("etcd_claim_ms_p99", ms(claim_p99));
        report.metric("etcd_claim_failures", failed as f64);
        report.metric("etcd_leader_samples_bad", bad as f64);
        if let Some(cpu) = etcd_cpu {
            report.metric("etcd_cpu_percent", cpu * 100.0);
        }
    }
    for tracker in trackers.iter().flatten() {
        tracker.kill();
    }
}
