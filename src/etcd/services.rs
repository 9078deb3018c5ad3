//! What the manager keeps per service: the lock that serialises its claims, releases and
//! hand-overs, and its shared leader watch. An entry lives only while it is in use, so
//! the map is bounded by the services with a request in flight or a live watch.

use std::collections::HashMap;
use std::sync::Arc;

use super::watch::Upstream;

/// One service's entry.
#[derive(Debug, Default)]
pub(super) struct ServiceEntry {
    /// Claims, releases and hand-overs of the service through this manager run one at a
    /// time, so each reads the state the previous one committed. Every request in flight
    /// holds a clone.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The service's leader watch, while it has receivers.
    pub(super) watch: Option<Arc<Upstream>>,
}

impl ServiceEntry {
    /// Nothing uses the entry: no request holds its lock, no watch runs.
    fn is_idle(&self) -> bool {
        Arc::strong_count(&self.lock) == 1 && self.watch.is_none()
    }
}

/// The service's entry, created if needed (without allocating the name when it exists).
pub(super) fn entry<'a>(
    map: &'a mut HashMap<String, ServiceEntry>,
    service: &str,
) -> &'a mut ServiceEntry {
    if !map.contains_key(service) {
        map.insert(service.to_owned(), ServiceEntry::default());
    }
    map.get_mut(service).expect("inserted above")
}

/// The service's lock, creating its entry if needed. Call [`prune`] once the request
/// that took it has finished.
pub(super) fn lock(
    map: &mut HashMap<String, ServiceEntry>,
    service: &str,
) -> Arc<tokio::sync::Mutex<()>> {
    entry(map, service).lock.clone()
}

/// Drops the service's entry if it is idle: the pruning rule that bounds the map.
pub(super) fn prune(map: &mut HashMap<String, ServiceEntry>, service: &str) {
    if map.get(service).is_some_and(ServiceEntry::is_idle) {
        map.remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_while_a_request_holds_its_lock() {
        let mut map = HashMap::new();
        let first = lock(&mut map, "web");
        let second = lock(&mut map, "web");
        assert!(Arc::ptr_eq(&first, &second), "one lock per service");
        let other = lock(&mut map, "db");
        assert_eq!(map.len(), 2);

        drop(first);
        prune(&mut map, "web");
        assert_eq!(map.len(), 2, "still held by the second request");
        drop(second);
        prune(&mut map, "web");
        assert!(!map.contains_key("web"), "idle: evicted");

        drop(other);
        prune(&mut map, "db");
        prune(&mut map, "never-seen");
        assert!(map.is_empty());
    }

    #[test]
    fn an_entry_with_a_watch_stays() {
        let mut map = HashMap::new();
        entry(&mut map, "web").watch = Some(Upstream::new(None));
        prune(&mut map, "web");
        assert_eq!(map.len(), 1);
        map.get_mut("web").unwrap().watch = None;
        prune(&mut map, "web");
        assert!(map.is_empty());
    }

    #[test]
    fn many_services_leave_nothing_behind() {
        let mut map = HashMap::new();
        for n in 0..10_000 {
            let service = format!("s{n}");
            let held = lock(&mut map, &service);
            drop(held);
            prune(&mut map, &service);
        }
        assert!(map.is_empty());
    }
}
