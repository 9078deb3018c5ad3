//! [`Shared`]: what a tracker's actor and its handles share, in one allocation: the
//! unit, the current [`Status`] and the stop report.
//!
//! A tracker's fixed cost is most of what 100 000 trackers take (issue 13), and most
//! trackers are never watched nor waited for. So everything only a watcher or a waiter
//! needs — the status watch channel (~360 bytes: its receivers' eight notifiers), the
//! wakers of `wait()` — is created when somebody first asks for it, and until then the
//! shared state is the unit, the duration and three words under one mutex (128 bytes
//! with malloc's header, where the handle's state, a status cell and a stop latch
//! took 336 in three allocations).
//!
//! Status receivers see exactly what an eagerly created channel would have shown them:
//! the channel starts at [`Status::Claiming`] (moved on to the current value at once if
//! that differs), so a receiver's `changed()` reports every change since the tracker
//! started, and the channel closes when the actor is dropped.

use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use super::status::Status;
use super::TrackerError;
use crate::latch::Wakers;
use crate::names::UnitName;

/// The outcome a tracker reports when it stops for good.
pub(crate) type StopReport = Result<(), TrackerError>;

/// Shared by a tracker's actor and every handle to it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) unit: UnitName,
    /// The claim duration `d` given at start.
    pub(crate) duration: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    status: Status,
    /// The stop report, once the actor has stopped for good (boxed: set once, at the
    /// end, and 8 bytes here instead of 32).
    report: Option<Box<StopReport>>,
    /// What watchers and waiters need, once one asked (or the actor was dropped).
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Default)]
struct Rare {
    /// The status channel, once asked for: its sender (until the actor is dropped) and
    /// the first receiver, which every [`subscribe`](Shared::subscribe) clones.
    channel: Option<(Option<watch::Sender<Status>>, watch::Receiver<Status>)>,
    /// The tasks waiting for the stop report, each under the key of its
    /// [`stopped`](Shared::stopped) future, which takes its entry out when dropped
    /// unanswered (a waiter that gave up leaves nothing behind).
    waiters: Wakers,
    /// The actor is gone: a channel created now starts closed.
    closed: bool,
}

impl Shared {
    pub(crate) fn new(unit: UnitName, duration: Duration) -> Shared {
        Shared {
            unit,
            duration,
            state: Mutex::new(State {
                status: Status::Claiming,
                report: None,
                rare: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover the data if something did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current status.
    pub(crate) fn status(&self) -> Status {
        self.lock().status
    }

    /// Sets the status, notifying receivers if it changed; returns the status it replaced.
    pub(crate) fn publish(&self, status: Status) -> Status {
        let mut state = self.lock();
        let before = std::mem::replace(&mut state.status, status);
        if before != status {
            if let Some(Rare {
                channel: Some((Some(sender), _)),
                ..
            }) = state.rare.as_deref()
            {
                sender.send_replace(status);
            }
        }
        before
    }

    /// A receiver of the status, creating the channel on first use.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        let mut state = self.lock();
        let current = state.status;
        let rare = state.rare.get_or_insert_with(Box::default);
        let closed = rare.closed;
        let (_, receiver) = rare.channel.get_or_insert_with(|| {
            let (sender, receiver) = watch::channel(Status::Claiming);
            if current != Status::Claiming {
                sender.send_replace(current);
            }
            ((!closed).then_some(sender), receiver)
        });
        receiver.clone()
    }

    /// The stop report, once the tracker has stopped for good.
    pub(crate) fn report(&self) -> Option<StopReport> {
        self.lock().report.as_deref().cloned()
    }

    /// Records the stop report and wakes its waiters; only the first report counts.
    /// Returns whether this one did.
    pub(crate) fn set_report(&self, report: StopReport) -> bool {
        let waiters = {
            let mut state = self.lock();
            if state.report.is_some() {
                return false;
            }
            state.report = Some(Box::new(report));
            state
                .rare
                .as_mut()
                .map(|rare| std::mem::take(&mut rare.waiters))
        };
        // Woken outside the lock.
        if let Some(waiters) = waiters {
            waiters.wake_all();
        }
        true
    }

    /// Waits for the stop report.
    pub(crate) async fn stopped(&self) -> StopReport {
        let mut waiter = Waiter {
            shared: self,
            key: None,
        };
        poll_fn(|cx| waiter.poll(cx)).await
    }

    /// Forgets the waker of the waiter `key`, which gave up.
    fn forget_waiter(&self, key: u64) {
        let mut state = self.lock();
        if let Some(rare) = state.rare.as_mut() {
            rare.waiters.forget(key);
        }
    }

    /// The actor is gone: status receivers see the channel closed, and a tracker that
    /// never reported (its System shut down) stopped without a failure.
    pub(crate) fn close(&self) {
        {
            let mut state = self.lock();
            let rare = state.rare.get_or_insert_with(Box::default);
            rare.closed = true;
            if let Some((sender, _)) = &mut rare.channel {
                sender.take();
            }
        }
        self.set_report(Ok(()));
    }
}

/// One [`Shared::stopped`] call's place among the waiters.
struct Waiter<'a> {
    shared: &'a Shared,
    /// Its key once it has registered a waker.
    key: Option<u64>,
}

impl Waiter<'_> {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<StopReport> {
        let mut state = self.shared.lock();
        if let Some(report) = state.report.as_deref() {
            // Woken: the report took every waker, so there is nothing to forget.
            self.key = None;
            return Poll::Ready(report.clone());
        }
        let rare = state.rare.get_or_insert_with(Box::default);
        rare.waiters.register(&mut self.key, cx.waker());
        Poll::Pending
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.shared.forget_waiter(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::protocol::LeaseError;
    use crate::ticket::Guarantee;

    fn shared() -> Shared {
        Shared::new(UnitName::new("a/0").unwrap(), Duration::from_secs(1))
    }

    fn leader(until: tokio::time::Instant) -> Status {
        Status::Leader(Guarantee { term: 7, until })
    }

    #[test]
    fn fits_malloc_s_128_byte_class() {
        // 16 bytes of `Arc` counts and 8 of malloc's header: 128 bytes in all. A
        // tripwire, not a contract: it says when a change costs every tracker a class.
        assert!(std::mem::size_of::<Shared>() <= 104);
    }

    #[test]
    fn a_receiver_made_late_sees_every_change_since_start_and_then_the_next() {
        let cell = shared();
        cell.publish(Status::Minion);
        let mut rx = cell.subscribe();
        assert!(
            rx.has_changed().unwrap(),
            "changed since the tracker started"
        );
        assert_eq!(*rx.borrow_and_update(), Status::Minion);
        cell.publish(Status::Minion);
        assert!(!rx.has_changed().unwrap(), "no change, no notification");
        let until = tokio::time::Instant::now();
        cell.publish(leader(until));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), leader(until));
        assert_eq!(cell.status(), leader(until));
    }

    #[test]
    fn an_unchanged_tracker_reports_no_change_and_closing_ends_every_receiver() {
        let cell = shared();
        let rx = cell.subscribe();
        assert!(!rx.has_changed().unwrap());
        cell.close();
        assert!(rx.has_changed().is_err(), "closed with the actor");
        let late = cell.subscribe();
        assert!(
            late.has_changed().is_err(),
            "a receiver made after the close"
        );
        assert_eq!(*late.borrow(), Status::Claiming);
    }

    #[test]
    fn publishing_returns_the_status_it_replaced() {
        let cell = shared();
        assert_eq!(cell.publish(Status::Minion), Status::Claiming);
        assert_eq!(cell.publish(Status::Minion), Status::Minion);
        assert_eq!(cell.publish(Status::Stopped), Status::Minion);
        assert_eq!(cell.status(), Status::Stopped);
    }

    #[test]
    fn a_channel_first_made_after_the_close_holds_the_last_status() {
        let cell = shared();
        cell.publish(Status::Stopped);
        cell.close();
        let rx = cell.subscribe();
        assert_eq!(*rx.borrow(), Status::Stopped);
        assert!(rx.has_changed().is_err());
    }

    #[test]
    fn the_first_report_wins_and_wakes_every_waiter() {
        let cell = shared();
        let mut first = Box::pin(cell.stopped());
        let mut second = Box::pin(cell.stopped());
        assert_eq!((&mut first).now_or_never(), None);
        assert_eq!((&mut second).now_or_never(), None);
        assert_eq!(cell.report(), None);
        let failure = TrackerError::LeadershipFailure(LeaseError::Failed("pow".into()));
        assert!(cell.set_report(Err(failure.clone())));
        assert!(!cell.set_report(Ok(())), "only the first report counts");
        assert_eq!(first.now_or_never(), Some(Err(failure.clone())));
        assert_eq!(second.now_or_never(), Some(Err(failure.clone())));
        cell.close();
        assert_eq!(
            cell.report(),
            Some(Err(failure)),
            "closing keeps the report"
        );
    }

    fn waiting(cell: &Shared) -> usize {
        cell.lock()
            .rare
            .as_ref()
            .map_or(0, |rare| rare.waiters.len())
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let cell = shared();
        for _ in 0..3 {
            let mut gave_up = Box::pin(cell.stopped());
            assert_eq!((&mut gave_up).now_or_never(), None);
            assert_eq!((&mut gave_up).now_or_never(), None, "polled again");
            assert_eq!(waiting(&cell), 1, "one entry per waiter");
        }
        assert_eq!(waiting(&cell), 0, "every one dropped unanswered");
        let mut kept = Box::pin(cell.stopped());
        assert_eq!((&mut kept).now_or_never(), None);
        {
            let mut gave_up = Box::pin(cell.stopped());
            assert_eq!((&mut gave_up).now_or_never(), None);
            assert_eq!(waiting(&cell), 2);
        }
        assert_eq!(waiting(&cell), 1, "only its own entry went");
        assert!(cell.set_report(Ok(())));
        assert_eq!(waiting(&cell), 0);
        assert_eq!(
            kept.now_or_never(),
            Some(Ok(())),
            "the other still answered"
        );
    }

    #[test]
    fn closing_unreported_reports_ok_and_wakes_waiters_on_other_threads() {
        let cell = std::sync::Arc::new(shared());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || futures::executor::block_on(cell.stopped()))
            })
            .collect();
        cell.close();
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Ok(()));
        }
    }
}
