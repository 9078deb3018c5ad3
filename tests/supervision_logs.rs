//! A supervised tracker's restart is logged at warn, with its cause, its delay, and the
//! tracker's span (service and unit).
//!
//! In a test binary of its own: `tracing` caches per-callsite interest process-wide,
//! so a thread-local subscriber can miss events while tests on other threads run
//! without one.

use std::sync::{Arc, Mutex};

use leadership::testing::{StubAnswer, StubManager};
use leadership::{LeaseError, Tracker, UnitName};

fn pow() -> StubAnswer {
    StubAnswer::Fail(LeaseError::Failed("pow".into()))
}

/// Collects formatted log lines in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_rt::test]
async fn each_restart_is_logged_at_warn_with_its_cause_and_delay() {
    tokio::time::pause();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let stub = StubManager::start();
    stub.script([StubAnswer::Grant, pow()]);
    let unit = UnitName::new("led-service/0").unwrap();
    let tracker =
        Tracker::start_supervised(unit, stub.claimer(), std::time::Duration::from_secs(10))
            .unwrap();
    assert!(tracker.wait_leader().await);
    assert!(!tracker.wait_minion().await);
    assert!(tracker.wait_leader().await);
    tracker.kill();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let restarts: Vec<&str> = text.lines().filter(|l| l.contains("restarting")).collect();
    assert_eq!(restarts.len(), 1, "{text}");
    let line = restarts[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("cause=pow"), "{line}");
    assert!(line.contains("delay="), "{line}");
    assert!(
        line.contains("unit=\"led-service/0\""),
        "the span names the unit: {line}"
    );
    assert!(
        line.contains("service=\"led-service\""),
        "and the service: {line}"
    );
}
