//! [`Watchers`]: the watch senders behind [`WatchLeader`](crate::WatchLeader), one per
//! watched service, shared by all of its watchers.
//!
//! The manager publishes to a service's sender at the instant its lease changes holder
//! or term, or ends; a service nobody watches costs one check of an empty or small map.
//! Nothing grows without bound: a sender whose receivers are all gone is dropped the
//! next time its service changes, and the whole map is swept of such senders whenever it
//! has doubled since the last sweep (amortised O(1) per new watched service). So the map
//! holds at most about twice as many senders as there are watched services, plus a few.

use std::collections::HashMap;

use tokio::sync::watch;

use super::name::Name;
use crate::protocol::LeaseInfo;

/// The size below which the map is never swept: a sweep would cost more than it saves.
const SWEEP_FLOOR: usize = 16;

/// The senders of the watched services.
#[derive(Debug, Default)]
pub(super) struct Watchers {
    senders: HashMap<Name, watch::Sender<Option<LeaseInfo>>>,
    /// The map's size after the last sweep; the next comes when it has doubled.
    swept: usize,
    /// How many sweeps ran (test probe of the amortised cost).
    #[cfg(test)]
    sweeps: usize,
}

impl Watchers {
    /// A receiver for `service`, whose lease is `current` now. Joins the service's
    /// sender if it has one (refreshing its value, so the newcomer sees the current
    /// expiry too), or makes one.
    pub(super) fn subscribe(
        &mut self,
        service: &str,
        current: Option<LeaseInfo>,
    ) -> watch::Receiver<Option<LeaseInfo>> {
        if let Some(sender) = self.senders.get(service.as_bytes()) {
            sender.send_if_modified(|value| {
                let changed = *value != current;
                *value = current;
                changed
            });
            return sender.subscribe();
        }
        if self.senders.len() >= (2 * self.swept).max(SWEEP_FLOOR) {
            self.senders.retain(|_, sender| sender.receiver_count() > 0);
            self.swept = self.senders.len();
            #[cfg(test)]
            {
                self.sweeps += 1;
            }
        }
        let (sender, receiver) = watch::channel(current);
        self.senders.insert(Name::new(service), sender);
        receiver
    }

    /// Publishes `service`'s new lease (`None`: it ended), built only if somebody
    /// watches; drops the sender instead if nobody does any more.
    pub(super) fn publish(&mut self, service: &[u8], lease: impl FnOnce() -> Option<LeaseInfo>) {
        if self.senders.is_empty() {
            return;
        }
        let Some(sender) = self.senders.get(service) else {
            return;
        };
        if sender.receiver_count() == 0 {
            self.senders.remove(service);
        } else {
            sender.send_replace(lease());
        }
    }

    /// How many senders are held (test probe).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.senders.len()
    }

    /// Drops every sender: their receivers see the channel closed.
    pub(super) fn clear(&mut self) {
        self.senders.clear();
        self.swept = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_refreshes_the_value_and_only_a_change_notifies() {
        let at = tokio::time::Instant::now();
        let lease = |holder: &str, term: u64| {
            Some(LeaseInfo {
                holder: holder.into(),
                expires: at,
                term,
            })
        };
        let mut watchers = Watchers::default();
        let first = watchers.subscribe("svc", lease("svc/0", 1));
        assert!(!first.has_changed().unwrap());
        // The same lease: the first watcher is not woken.
        let _second = watchers.subscribe("svc", lease("svc/0", 1));
        assert!(!first.has_changed().unwrap());
        // A different one (say, renewed since): every watcher sees it.
        let _third = watchers.subscribe("svc", lease("svc/1", 2));
        assert!(first.has_changed().unwrap());
        assert_eq!(*first.borrow(), lease("svc/1", 2));
    }

    #[test]
    fn sweeps_are_amortised_over_the_new_services() {
        // 1 000 services, all still watched: each sweep finds nothing to drop, and
        // they come only as the map doubles.
        let mut watchers = Watchers::default();
        let mut kept = Vec::new();
        for i in 0..1_000 {
            kept.push(watchers.subscribe(&format!("s{i}"), None));
        }
        assert_eq!(watchers.len(), 1_000);
        // At 16, 32, 64, … 512 senders.
        assert_eq!(watchers.sweeps, 6);
    }
}
