//! What the manager keeps per service: the lock that serialises its claims, releases and
//! hand-overs (and guards what the manager remembers of the service's holding), and its
//! shared leader watch. An entry lives while it is in use or its remembered holding may
//! still be live, and an idle one goes when its service's next request finishes or at
//! the next sweep, so the map holds the services with a request in flight, a live watch,
//! or a lease this manager renewed within its TTL, plus idle entries awaiting a sweep
//! (which runs once the map has doubled since the last, and past [`SWEEP_FLOOR`]) — and
//! never more than [`MAX_ENTRIES`] remembered holdings: past that, holdings are not
//! remembered.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::held::Held;
use super::watch::Upstream;

/// Above this many entries the manager stops remembering holdings (renewals then take
/// the full path), so entries live only while in use.
pub(super) const MAX_ENTRIES: usize = 100_000;

/// The fewest entries at which a sweep of stale entries runs.
const SWEEP_FLOOR: usize = 1_024;

/// A service's lock, which also guards what the manager remembers of its holding.
pub(super) type ServiceLock = Arc<tokio::sync::Mutex<Option<Held>>>;

/// A request's hold on its service's lock: the remembered holding, for it alone.
pub(super) type Serialised = tokio::sync::OwnedMutexGuard<Option<Held>>;

/// One service's entry.
#[derive(Debug, Default)]
pub(super) struct ServiceEntry {
    /// Claims, releases and hand-overs of the service through this manager run one at a
    /// time, so each reads the state the previous one committed, and each may read and
    /// replace the remembered holding. Every request in flight holds a clone.
    lock: ServiceLock,
    /// The service's leader watch, while it has receivers.
    pub(super) watch: Option<Arc<Upstream>>,
}

impl ServiceEntry {
    /// Nothing uses the entry: no request holds its lock, no watch runs, and the holding
    /// it remembers (if any) has surely expired.
    fn is_idle(&self, now: Instant) -> bool {
        if Arc::strong_count(&self.lock) != 1 || self.watch.is_some() {
            return false;
        }
        // Nobody else holds a clone, so nobody holds the lock.
        self.lock
            .try_lock()
            .is_ok_and(|held| held.as_ref().is_none_or(|h| h.is_stale(now)))
    }
}

/// The entries and when to sweep them next.
#[derive(Debug)]
pub(super) struct Services {
    pub(super) map: HashMap<String, ServiceEntry>,
    /// A sweep of all entries runs once the map grows past this size, which is then
    /// twice what the sweep kept: amortised constant work per request.
    sweep_at: usize,
}

impl Default for Services {
    fn default() -> Services {
        Services {
            map: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
        }
    }
}

impl Services {
    /// The service's entry, created if needed (without allocating the name when it
    /// exists).
    pub(super) fn entry(&mut self, service: &str) -> &mut ServiceEntry {
        if !self.map.contains_key(service) {
            self.map.insert(service.to_owned(), ServiceEntry::default());
        }
        self.map.get_mut(service).expect("inserted above")
    }

    /// The service's lock, creating its entry if needed. Call [`Services::settle`] once
    /// the request that took it has finished.
    pub(super) fn lock(&mut self, service: &str) -> ServiceLock {
        self.entry(service).lock.clone()
    }

    /// After a request for `service` finished: forgets its holding if the map is full,
    /// drops its entry if idle, and sweeps every idle entry when the map has grown.
    pub(super) fn settle(&mut self, service: &str) {
        let now = Instant::now();
        if self.map.len() > MAX_ENTRIES {
            if let Some(entry) = self.map.get(service) {
                if let Ok(mut held) = entry.lock.try_lock() {
                    *held = None;
                }
            }
        }
        self.prune(service, now);
        if self.map.len() > self.sweep_at {
            self.map.retain(|_, entry| !entry.is_idle(now));
            self.sweep_at = (2 * self.map.len()).max(SWEEP_FLOOR);
        }
    }

    /// Drops the service's entry if it is idle: the pruning rule that bounds the map.
    fn prune(&mut self, service: &str, now: Instant) {
        if self.map.get(service).is_some_and(|e| e.is_idle(now)) {
            self.map.remove(service);
        }
    }

    /// How many entries there are.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    /// A request for `service` that leaves a holding of `granted` seconds remembered.
    fn renewed(services: &mut Services, service: &str, granted: i64) {
        let lock = services.lock(service);
        *lock.try_lock().expect("free") = Some(Held::new("u/0", 7, granted, 3, 2));
        drop(lock);
        services.settle(service);
    }

    fn remembered(services: &Services, service: &str) -> Option<i64> {
        Some(
            services
                .map
                .get(service)?
                .lock
                .try_lock()
                .ok()?
                .as_ref()?
                .lease,
        )
    }

    #[actix_rt::test]
    async fn an_entry_lives_while_a_request_holds_its_lock() {
        let mut services = Services::default();
        let first = services.lock("web");
        let second = services.lock("web");
        assert!(Arc::ptr_eq(&first, &second), "one lock per service");
        let other = services.lock("db");
        assert_eq!(services.len(), 2);

        drop(first);
        services.settle("web");
        assert_eq!(services.len(), 2, "still held by the second request");
        drop(second);
        services.settle("web");
        assert!(!services.map.contains_key("web"), "idle: evicted");

        drop(other);
        services.settle("db");
        services.settle("never-seen");
        assert_eq!(services.len(), 0);
    }

    #[actix_rt::test]
    async fn an_entry_with_a_watch_stays() {
        let mut services = Services::default();
        services.entry("web").watch = Some(Upstream::new(None));
        services.settle("web");
        assert_eq!(services.len(), 1);
        services.map.get_mut("web").unwrap().watch = None;
        services.settle("web");
        assert_eq!(services.len(), 0);
    }

    #[actix_rt::test]
    async fn many_services_leave_nothing_behind() {
        let mut services = Services::default();
        for n in 0..10_000 {
            let service = format!("s{n}");
            let held = services.lock(&service);
            drop(held);
            services.settle(&service);
        }
        assert_eq!(services.len(), 0);
    }

    #[actix_rt::test]
    async fn a_remembered_holding_keeps_its_entry_until_its_lease_is_over() {
        tokio::time::pause();
        let mut services = Services::default();
        renewed(&mut services, "web", 4);
        assert_eq!(services.len(), 1, "the holding may be renewed from it");
        assert!(remembered(&services, "web").is_some());

        tokio::time::advance(Duration::from_millis(3_900)).await;
        services.settle("web");
        assert_eq!(services.len(), 1, "the lease may still be live");
        tokio::time::advance(Duration::from_millis(100)).await;
        services.settle("web");
        assert_eq!(services.len(), 0, "the lease is over: evicted");
    }

    #[actix_rt::test]
    async fn a_sweep_drops_the_stale_holdings_of_services_nobody_asks_for_again() {
        tokio::time::pause();
        let mut services = Services::default();
        for n in 0..SWEEP_FLOOR {
            renewed(&mut services, &format!("s{n}"), 4);
        }
        assert_eq!(services.len(), SWEEP_FLOOR, "all live: nothing swept");
        tokio::time::advance(Duration::from_secs(5)).await;
        // The map grows past the sweep threshold: every stale entry goes.
        renewed(&mut services, "new", 4);
        assert_eq!(services.len(), 1);
        assert!(remembered(&services, "new").is_some());
    }

    #[actix_rt::test]
    async fn live_holdings_grow_the_map_only_up_to_its_bound() {
        tokio::time::pause();
        let mut services = Services::default();
        for n in 0..MAX_ENTRIES + 10 {
            renewed(&mut services, &format!("s{n}"), 60);
        }
        // Past the bound a holding is not remembered, so its entry is idle at once.
        assert_eq!(services.len(), MAX_ENTRIES);
        assert!(remembered(&services, "s0").is_some());
        assert!(remembered(&services, &format!("s{}", MAX_ENTRIES + 9)).is_none());
    }
}
