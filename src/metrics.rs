//! Metrics an operator can scrape, recorded through the [`metrics`] facade crate when
//! the cargo feature `metrics` is on.
//!
//! The library only records; the application installs the exporter it likes (for
//! example `metrics-exporter-prometheus`) before starting its trackers and managers.
//! With the feature off nothing is recorded and the crate does not depend on
//! `metrics`: every hook below compiles to nothing. The names are constants here so
//! that dashboards and tests need not spell them; `docs/metrics.md` says when each one
//! moves.
//!
//! Tracker series carry the labels `service` and `unit`; the manager's gauges carry
//! none (one in-memory manager per process is the common case).
//!
//! [`metrics`]: https://docs.rs/metrics

#[cfg(feature = "metrics")]
use std::time::Duration;

#[cfg(feature = "metrics")]
use actix::MailboxError;
#[cfg(feature = "metrics")]
use tokio::time::Instant;

use crate::names::UnitName;
#[cfg(feature = "metrics")]
use crate::protocol::Grant;
use crate::protocol::LeaseError;
use crate::tracker::Status;

/// Gauge, 1 while the unit leads (a `WaitLeader` would resolve `true`), else 0.
pub const IS_LEADER: &str = "leadership_is_leader";
/// Gauge, the term the unit leads under; 0 while it does not lead.
pub const TERM: &str = "leadership_term";
/// Counter, leadership gained (`to="leader"`) or lost (`to="minion"`).
pub const TRANSITIONS: &str = "leadership_transitions_total";
/// Histogram, seconds from sending a claim to its answer, by `outcome`.
pub const CLAIM_SECONDS: &str = "leadership_claim_seconds";
/// Counter, tracker failures by `reason`.
pub const FAILURES: &str = "leadership_failures_total";
/// Gauge, the leases an in-memory manager holds.
pub const LEASES: &str = "leadership_leases";
/// Gauge, the blocks an in-memory manager holds pending.
pub const BLOCKED: &str = "leadership_blocked";

/// Registers a description and unit of every metric with the installed recorder, so
/// that exporters can print help text. Optional; call it after installing the
/// recorder.
#[cfg(feature = "metrics")]
pub fn describe() {
    use metrics::Unit;
    metrics::describe_gauge!(IS_LEADER, "1 while the unit leads its service, else 0");
    metrics::describe_gauge!(
        TERM,
        "the term the unit leads under; 0 while it does not lead"
    );
    metrics::describe_counter!(
        TRANSITIONS,
        "leadership gained (to=leader) or lost (to=minion)"
    );
    metrics::describe_histogram!(
        CLAIM_SECONDS,
        Unit::Seconds,
        "time from sending a claim to its answer, by outcome"
    );
    metrics::describe_counter!(FAILURES, "tracker failures, by reason");
    metrics::describe_gauge!(LEASES, "leases the in-memory manager holds");
    metrics::describe_gauge!(BLOCKED, "blocks the in-memory manager holds pending");
}

/// The reason label of a tracker failure (a claim that failed or went unanswered).
///
/// The two failures the tracker makes itself are told apart by the start of their
/// message (`LeaseError::unreachable`, and the machine's claim timeout); tests pin
/// both, so a reworded message fails them rather than mislabelling.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn failure_reason(error: &LeaseError) -> &'static str {
    match error {
        LeaseError::Failed(message) if message.starts_with("lease manager unreachable") => {
            "unreachable"
        }
        LeaseError::Failed(message) if message.starts_with("leadership claim unanswered") => {
            "unanswered"
        }
        LeaseError::Invalid(_) => "invalid",
        _ => "error",
    }
}

/// The labels of a tracker series: `service`, `unit`, and `extra` if any.
#[cfg(feature = "metrics")]
fn labels(unit: &UnitName, extra: Option<(&'static str, &'static str)>) -> Vec<metrics::Label> {
    let mut labels = Vec::with_capacity(3);
    labels.push(metrics::Label::new("service", unit.service().to_owned()));
    labels.push(metrics::Label::new("unit", unit.as_str().to_owned()));
    if let Some((key, value)) = extra {
        labels.push(metrics::Label::new(key, value));
    }
    labels
}

/// A tracker started: it does not lead yet.
pub(crate) fn tracker_started(unit: &UnitName) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(IS_LEADER, labels(unit, None)).set(0.0);
        metrics::gauge!(TERM, labels(unit, None)).set(0.0);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = unit;
}

/// The tracker's status went from `before` to `after`: the leadership series follow
/// [`Status::Leader`] (a resigning unit no longer counts as leading: its tickets say
/// `false`).
pub(crate) fn status(unit: &UnitName, before: Status, after: Status) {
    let term = |status| match status {
        Status::Leader(guarantee) => Some(guarantee.term),
        _ => None,
    };
    leadership(unit, term(before), term(after));
}

/// The unit's leadership went from `before` to `after` (the term it leads under, or
/// `None`). Does nothing when they are equal.
fn leadership(unit: &UnitName, before: Option<u64>, after: Option<u64>) {
    if before == after {
        return;
    }
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(IS_LEADER, labels(unit, None)).set(if after.is_some() { 1.0 } else { 0.0 });
        // Terms are far below 2^53 in practice; the cast only rounds beyond it.
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(TERM, labels(unit, None)).set(after.unwrap_or(0) as f64);
        let to = match (before, after) {
            (None, Some(_)) => Some("leader"),
            (Some(_), None) => Some("minion"),
            _ => None,
        };
        if let Some(to) = to {
            metrics::counter!(TRANSITIONS, labels(unit, Some(("to", to)))).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = unit;
}

/// The tracker failed with `error` (it stops, or restarts if supervised).
pub(crate) fn failure(unit: &UnitName, error: &LeaseError) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        FAILURES,
        labels(unit, Some(("reason", failure_reason(error))))
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (unit, error);
}

/// A block failed: the tracker backs off and claims again.
pub(crate) fn block_failed(unit: &UnitName) {
    #[cfg(feature = "metrics")]
    metrics::counter!(FAILURES, labels(unit, Some(("reason", "block")))).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = unit;
}

/// The in-memory manager now holds `n` leases.
pub(crate) fn leases(n: usize) {
    #[cfg(feature = "metrics")]
    set_gauge(LEASES, n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// The in-memory manager now holds `n` pending blocks.
pub(crate) fn blocked(n: usize) {
    #[cfg(feature = "metrics")]
    set_gauge(BLOCKED, n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// Sets the unlabelled gauge `name` to the count `n`.
#[cfg(feature = "metrics")]
fn set_gauge(name: &'static str, n: usize) {
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(name).set(n as f64);
}

/// The answer to a claim, as a tracker receives it.
#[cfg(feature = "metrics")]
type ClaimReply = Result<Result<Grant, LeaseError>, MailboxError>;

/// Times a claim `request` of `unit`: records its seconds, by outcome, when it is
/// answered, or as `abandoned` when it is dropped unanswered (the tracker timed it out
/// or stopped).
#[cfg(feature = "metrics")]
pub(crate) fn timed_claim<F>(
    unit: &UnitName,
    request: F,
) -> impl std::future::Future<Output = ClaimReply>
where
    F: std::future::Future<Output = ClaimReply>,
{
    let timer = ClaimTimer {
        unit: unit.clone(),
        sent: Instant::now(),
        outcome: "abandoned",
    };
    async move {
        // Moved in whole (not just the field assigned below), so that it is dropped,
        // and records, with the future.
        let mut timer = timer;
        let reply = request.await;
        timer.outcome = match &reply {
            Ok(Ok(_)) => "granted",
            Ok(Err(LeaseError::ClaimDenied)) => "denied",
            Ok(Err(_)) => "error",
            Err(_) => "unreachable",
        };
        reply
    }
}

/// Without the feature, a claim is not timed.
#[cfg(not(feature = "metrics"))]
pub(crate) fn timed_claim<F: std::future::Future>(_: &UnitName, request: F) -> F {
    request
}

/// Records a claim's time when dropped: with its outcome once answered, as
/// `abandoned` otherwise.
#[cfg(feature = "metrics")]
struct ClaimTimer {
    unit: UnitName,
    sent: Instant,
    outcome: &'static str,
}

#[cfg(feature = "metrics")]
impl Drop for ClaimTimer {
    fn drop(&mut self) {
        let took: Duration = self.sent.elapsed();
        let labels = labels(&self.unit, Some(("outcome", self.outcome)));
        metrics::histogram!(CLAIM_SECONDS, labels).record(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_name_the_crate_s_own_errors() {
        let unreachable = LeaseError::unreachable(actix::MailboxError::Closed);
        assert_eq!(failure_reason(&unreachable), "unreachable");
        let unanswered = LeaseError::Failed("leadership claim unanswered after 1s".into());
        assert_eq!(failure_reason(&unanswered), "unanswered");
        assert_eq!(failure_reason(&LeaseError::Failed("pow".into())), "error");
        assert_eq!(failure_reason(&LeaseError::Invalid("x".into())), "invalid");
    }
}
