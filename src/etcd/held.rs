//! What the manager remembers of a holding it established, so that the holder's next
//! renewal needs neither a read of the keys nor `LeaseTimeToLive`.
//!
//! A hint only, never a source of truth: a renewal from it is one keep-alive and one
//! guarded transaction, sent together, and it answers `Ok` only when etcd confirmed both
//! (see `Store::renew`). Whatever else it finds falls back to the full claim, starting
//! from the keys as that transaction read them.

use tokio::time::{Duration, Instant};

use super::keepalive::KeepAlive;

/// A holding of one service as this manager last established or confirmed it.
#[derive(Debug)]
pub(super) struct Held {
    /// The holding unit.
    pub(super) unit: String,
    /// The lease the holder key is bound to.
    pub(super) lease: i64,
    /// The lease's granted TTL in seconds, as etcd reported it: a keep-alive resets the
    /// lease to it.
    pub(super) granted: i64,
    /// The holder key's mod revision: the exact version of the key that is bound to
    /// `lease` and names `unit`.
    pub(super) mod_revision: i64,
    /// The term key's mod revision (the term): unchanged while the holding lasts.
    pub(super) term_revision: i64,
    /// After this the lease has expired unless renewed: the hint is useless and its
    /// service's entry may be dropped.
    pub(super) stale_after: Instant,
    /// The lease's keep-alive stream, once a renewal opened one.
    pub(super) stream: Option<Box<KeepAlive>>,
}

impl Held {
    /// A holding confirmed now, whose lease etcd reset (or granted) to `granted` seconds
    /// at the latest now.
    pub(super) fn new(
        unit: &str,
        lease: i64,
        granted: i64,
        mod_revision: i64,
        term_revision: i64,
    ) -> Held {
        Held {
            unit: unit.to_owned(),
            lease,
            granted,
            mod_revision,
            term_revision,
            stale_after: stale_after(granted),
            stream: None,
        }
    }

    /// The term of the holding.
    pub(super) fn term(&self) -> u64 {
        u64::try_from(self.term_revision).unwrap_or(0)
    }

    /// Whether a renewal by `unit` for `ttl` seconds can start from this hint: the same
    /// unit, and a lease whose granted TTL covers the claim (a keep-alive cannot make a
    /// lease last longer than its granted TTL).
    pub(super) fn serves(&self, unit: &str, ttl: i64) -> bool {
        self.unit == unit && self.granted >= ttl && self.lease != 0
    }

    /// The same holding, its lease renewed now (to its granted TTL).
    pub(super) fn renewed(mut self) -> Held {
        self.stale_after = stale_after(self.granted);
        self
    }

    /// Whether the lease has surely expired by now (unless renewed since, which this
    /// manager would have recorded).
    pub(super) fn is_stale(&self, now: Instant) -> bool {
        now >= self.stale_after
    }
}

fn stale_after(granted: i64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(u64::try_from(granted).unwrap_or(0)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_hint_serves_its_unit_within_its_granted_ttl_until_the_lease_is_over() {
        tokio::time::pause();
        let held = Held::new("web/0", 77, 4, 12, 10);
        assert_eq!(held.term(), 10);
        assert!(held.serves("web/0", 4));
        assert!(held.serves("web/0", 2));
        assert!(!held.serves("web/0", 5), "a keep-alive cannot reach 5 s");
        assert!(!held.serves("web/1", 4), "another unit");
        assert!(
            !Held::new("web/0", 0, 4, 12, 10).serves("web/0", 4),
            "no lease"
        );

        let now = Instant::now();
        assert!(!held.is_stale(now));
        tokio::time::advance(Duration::from_millis(3_999)).await;
        assert!(!held.is_stale(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(held.is_stale(Instant::now()), "4 s after the last renewal");

        let renewed = Held::new("web/0", 77, 4, 12, 10).renewed();
        assert_eq!(renewed.granted, 4);
        assert_eq!(
            renewed.mod_revision, 12,
            "a renewal keeps the key's version"
        );
        assert!(!renewed.is_stale(Instant::now()));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(renewed.is_stale(Instant::now()));
    }
}
