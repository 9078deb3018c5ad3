//! The metrics of feature `metrics`, asserted exactly: a recorder keeps every value,
//! and a scripted stub manager on a paused clock drives one tracker through claims, a
//! denial, an outage past 2·d, recovery, a manager error and a resign; the in-memory
//! manager's gauges follow its leases and blocks.
//!
//! Each checkpoint compares *every* series recorded so far with the expected list, so
//! a series that moves when it should not fails the test too.

mod paused;
#[path = "common/until.rs"]
mod until;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use leadership::metrics::{BLOCKED, CLAIM_SECONDS, FAILURES, IS_LEADER, LEASES, TERM, TRANSITIONS};
use leadership::testing::{StubAnswer, StubCall, StubManager};
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, LeaseError, ManagerActor, ReleaseLeadership,
    Tracker, UnitName,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use paused::PausedSystem;
use tokio::time::Instant;
use until::until;

const D: Duration = Duration::from_secs(1);
const UNIT: &str = "led-service/0";

/// A recorder that keeps every value as it is now: counters as totals, gauges as last
/// set, histograms as every value recorded. (metrics-util's `DebuggingRecorder` resets
/// counters and gauges to zero at each snapshot, which would make a gauge left alone
/// since the last checkpoint read 0.)
struct Keep(Registry<Key, AtomicStorage>);

impl Keep {
    fn new() -> Keep {
        Keep(Registry::atomic())
    }

    /// Every series recorded so far, rendered `name{label="value",…}` → value.
    fn now(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        self.0.visit_counters(|key, counter| {
            all.insert(render(key), counter.load(Ordering::SeqCst).to_string());
        });
        self.0.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(Ordering::SeqCst));
            all.insert(render(key), value.to_string());
        });
        self.0.visit_histograms(|key, histogram| {
            all.insert(render(key), format!("{:?}", histogram.data()));
        });
        all
    }

    /// Waits (as `until` does, the clock standing still) for the series to be `want`;
    /// if they never are, fails showing how they differ.
    async fn reach(&self, what: &str, want: BTreeMap<String, String>) {
        let shown = Differs {
            what,
            series: self,
            want: &want,
        };
        until(shown, || self.now() == want).await;
    }
}

/// What [`Keep::reach`] waited for, and how the series differ from it (rendered only if
/// the wait fails).
struct Differs<'a> {
    what: &'a str,
    series: &'a Keep,
    want: &'a BTreeMap<String, String>,
}

impl std::fmt::Display for Differs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = self.series.now();
        writeln!(f, "{}; the series differ:", self.what)?;
        for (key, value) in now.iter().filter(|(k, v)| self.want.get(*k) != Some(*v)) {
            writeln!(f, "  now    {key} = {value}")?;
        }
        for (key, value) in self.want.iter().filter(|(k, v)| now.get(*k) != Some(*v)) {
            writeln!(f, "  wanted {key} = {value}")?;
        }
        Ok(())
    }
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={:?}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// `name{service, unit, extra}` as [`Series`] renders a tracker series.
fn tracker(name: &str, extra: Option<(&str, &str)>) -> String {
    let mut labels = vec![
        format!("service={:?}", "led-service"),
        format!("unit={UNIT:?}"),
    ];
    if let Some((k, v)) = extra {
        labels.push(format!("{k}={v:?}"));
    }
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// The expected series of the tracker, from its counts so far.
#[derive(Clone, Default)]
struct Expect {
    is_leader: u8,
    term: u64,
    to_leader: u64,
    to_minion: u64,
    /// outcome → seconds of each claim so far.
    claims: BTreeMap<&'static str, Vec<f64>>,
    /// reason → count.
    failures: BTreeMap<&'static str, u64>,
}

impl Expect {
    fn series(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        all.insert(tracker(IS_LEADER, None), self.is_leader.to_string());
        all.insert(tracker(TERM, None), self.term.to_string());
        for (to, n) in [("leader", self.to_leader), ("minion", self.to_minion)] {
            if n > 0 {
                all.insert(tracker(TRANSITIONS, Some(("to", to))), n.to_string());
            }
        }
        for (outcome, seconds) in &self.claims {
            all.insert(
                tracker(CLAIM_SECONDS, Some(("outcome", outcome))),
                format!("{seconds:?}"),
            );
        }
        for (reason, n) in &self.failures {
            all.insert(tracker(FAILURES, Some(("reason", reason))), n.to_string());
        }
        all
    }

    fn lead(&mut self, term: u64) {
        self.is_leader = 1;
        self.term = term;
        self.to_leader += 1;
    }

    fn lose(&mut self) {
        self.is_leader = 0;
        self.term = 0;
        self.to_minion += 1;
    }

    fn claim(&mut self, outcome: &'static str, seconds: f64) {
        self.claims.entry(outcome).or_default().push(seconds);
    }

    fn fail(&mut self, reason: &'static str) {
        *self.failures.entry(reason).or_default() += 1;
    }
}

#[test]
fn a_scripted_tracker_moves_every_series_exactly_when_it_should() {
    let series = Keep::new();
    // The paused system runs on this thread: the local recorder sees everything.
    let _recorder = metrics::set_default_local_recorder(&series);
    PausedSystem::new().block_on(async {
        let mut want = Expect::default();
        let stub = StubManager::start();
        // Granted at once; the renewal at t0 + d denied.
        stub.script([StubAnswer::Grant, StubAnswer::Deny]);
        let unit = UnitName::new(UNIT).unwrap();
        let t0 = Instant::now();
        let tracker = Tracker::start_supervised(unit, stub.claimer(), D).unwrap();
        assert!(tracker.wait_leader().await);
        want.lead(1);
        want.claim("granted", 0.0);
        assert_eq!(series.now(), want.series(), "granted");

        // The denial ends leadership at once; the tracker blocks.
        assert!(!tracker.wait_minion().await);
        assert_eq!(Instant::now(), t0 + D);
        want.lose();
        want.claim("denied", 0.0);
        series.reach("the denial's series", want.series()).await;

        // The other leader's lease ends half a second later: granted under term 2.
        tokio::time::sleep(D / 2).await;
        stub.set_term(2);
        assert_eq!(stub.release_blocks(), 1);
        assert!(tracker.wait_leader().await);
        let t1 = Instant::now();
        want.lead(2);
        want.claim("granted", 0.0);
        assert_eq!(series.now(), want.series(), "leader again");

        // Outage: the renewal at t1 + d hangs. Leadership ends a little before
        // t1 + 2·d; the claim times out d after it was sent, at t1 + 2·d: a failure.
        stub.script([StubAnswer::Hang]);
        assert!(!tracker.wait_minion().await);
        assert!(Instant::now() < t1 + 2 * D);
        want.lose();
        assert_eq!(series.now(), want.series(), "leadership lost in the outage");
        tokio::time::sleep_until(t1 + 2 * D).await;
        want.fail("unanswered");
        want.claim("abandoned", D.as_secs_f64());
        series.reach("the timeout's series", want.series()).await;

        // Recovery: the supervised tracker claims again after its backoff, granted.
        stub.set_term(3);
        assert!(tracker.wait_leader().await);
        assert!(Instant::now() > t1 + 2 * D, "the outage lasted past 2·d");
        want.lead(3);
        want.claim("granted", 0.0);
        assert_eq!(series.now(), want.series(), "recovered");

        // The manager fails a renewal: a failure of reason "error".
        stub.script([StubAnswer::Fail(LeaseError::Failed("pow".into()))]);
        assert!(!tracker.wait_minion().await);
        want.lose();
        want.fail("error");
        want.claim("error", 0.0);
        series.reach("the error's series", want.series()).await;
        assert!(tracker.wait_leader().await);
        want.lead(3);
        want.claim("granted", 0.0);

        // A resign: the unit stops leading the instant it is handled (its tickets say
        // `false` from then on), releases once its last promise has ended, and stops.
        let resign = tracker.resign();
        let mut resign = std::pin::pin!(resign);
        assert!(futures::poll!(resign.as_mut()).is_pending());
        want.lose();
        series.reach("the resign's series", want.series()).await;
        assert_eq!(resign.await, Ok(()));
        assert!(stub
            .calls()
            .iter()
            .any(|call| matches!(call, StubCall::Release { .. })));
        assert_eq!(series.now(), want.series(), "resigned");
        stub.stop();
    });
}

#[test]
fn the_manager_gauges_follow_its_leases_and_blocks() {
    let series = Keep::new();
    let _recorder = metrics::set_default_local_recorder(&series);
    PausedSystem::new().block_on(async {
        let gauges = |leases: usize, blocked: usize| {
            BTreeMap::from([
                (format!("{LEASES}{{}}"), leases.to_string()),
                (format!("{BLOCKED}{{}}"), blocked.to_string()),
            ])
        };
        let manager = ManagerActor::new().start();
        let claim = |service: &str, ms: u64| ClaimLeadership {
            service: service.into(),
            unit: format!("{service}/0"),
            duration: Duration::from_millis(ms),
        };
        manager.send(claim("a", 100)).await.unwrap().unwrap();
        manager.send(claim("b", 300)).await.unwrap().unwrap();
        let block = |service: &str| {
            actix_rt::spawn(manager.send(BlockUntilLeadershipReleased {
                service: service.into(),
            }))
        };
        let blocks = [block("a"), block("a"), block("b")];
        series
            .reach("two leases and three blocks", gauges(2, 3))
            .await;

        // A renewal moves nothing.
        manager.send(claim("b", 300)).await.unwrap().unwrap();
        assert_eq!(series.now(), gauges(2, 3));

        // "a" expires: its lease and its two blocks go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        series.reach("one lease and one block", gauges(1, 1)).await;

        // "b" is released: nothing is left.
        manager
            .send(ReleaseLeadership {
                service: "b".into(),
                unit: "b/0".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(series.now(), gauges(0, 0));
        for block in blocks {
            assert_eq!(block.await.unwrap().unwrap(), Ok(()));
        }
    });
}
