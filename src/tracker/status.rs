//! [`Status`]: what a tracker is doing, as a value a program can watch.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::ticket::Guarantee;

/// What a tracker is doing now, from [`Tracker::status`](crate::Tracker::status).
///
/// It changes at the same instant the tickets' answers do: it becomes `Leader` when a
/// [`WaitLeader`](crate::WaitLeader) would resolve `true`, and leaves it when a
/// [`WaitMinion`](crate::WaitMinion) would resolve `false`. Reading it promises nothing:
/// unlike a `true` ticket, it does not hold up a later resign. Who leads a service is
/// [`WatchLeader`](crate::WatchLeader) on the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Not known yet: the first claim is in flight, or the tracker is backing off or
    /// claiming again after a minion's block was answered.
    Claiming,
    /// Leader; the guarantee of the latest grant (its term, and where leadership ends
    /// unless renewed).
    Leader(Guarantee),
    /// Another unit leads (the tracker is blocked, waiting for its lease to go).
    Minion,
    /// A resign or hand-over is in progress.
    Resigning,
    /// Stopped for good: killed, failed (unsupervised), or resigned.
    Stopped,
}

/// Where a tracker publishes its [`Status`], shared by the actor and its handles.
///
/// The watch channel behind [`Tracker::status`](crate::Tracker::status) is created
/// when somebody first asks for it: a tokio watch channel takes ~360 bytes (its
/// receivers' eight notifiers), more than a tracker's whole state, and most trackers
/// are never watched. Until then the cell keeps only the current value. Receivers see
/// exactly what an eagerly created channel would have shown them: the channel starts
/// at [`Status::Claiming`] (moved on to the current value at once if that differs), so
/// a receiver's `changed()` reports every change since the tracker started, and the
/// channel closes when the actor is dropped.
#[derive(Debug)]
pub(crate) struct StatusCell {
    state: Mutex<CellState>,
}

#[derive(Debug)]
struct CellState {
    current: Status,
    /// The channel, once asked for: its sender (until the actor is dropped) and the
    /// first receiver, which every [`subscribe`](StatusCell::subscribe) clones.
    channel: Option<(Option<watch::Sender<Status>>, watch::Receiver<Status>)>,
    /// The actor is gone: a channel created now starts closed.
    closed: bool,
}

impl StatusCell {
    pub(crate) fn new() -> Arc<StatusCell> {
        Arc::new(StatusCell {
            state: Mutex::new(CellState {
                current: Status::Claiming,
                channel: None,
                closed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        // Nothing panics while holding this lock; recover the data if something did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current status.
    pub(crate) fn get(&self) -> Status {
        self.lock().current
    }

    /// Sets the status, notifying receivers if it changed; returns the status it replaced.
    pub(crate) fn publish(&self, status: Status) -> Status {
        let mut state = self.lock();
        let before = std::mem::replace(&mut state.current, status);
        if before != status {
            if let Some((Some(sender), _)) = &state.channel {
                sender.send_replace(status);
            }
        }
        before
    }

    /// A receiver of the status, creating the channel on first use.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        let mut state = self.lock();
        let current = state.current;
        let closed = state.closed;
        let (_, receiver) = state.channel.get_or_insert_with(|| {
            let (sender, receiver) = watch::channel(Status::Claiming);
            if current != Status::Claiming {
                sender.send_replace(current);
            }
            ((!closed).then_some(sender), receiver)
        });
        receiver.clone()
    }

    /// The actor is gone: receivers see the channel closed.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        if let Some((sender, _)) = &mut state.channel {
            sender.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(until: tokio::time::Instant) -> Status {
        Status::Leader(Guarantee { term: 7, until })
    }

    #[test]
    fn a_receiver_made_late_sees_every_change_since_start_and_then_the_next() {
        let cell = StatusCell::new();
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
        assert_eq!(cell.get(), leader(until));
    }

    #[test]
    fn an_unchanged_tracker_reports_no_change_and_closing_ends_every_receiver() {
        let cell = StatusCell::new();
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
        let cell = StatusCell::new();
        assert_eq!(cell.publish(Status::Minion), Status::Claiming);
        assert_eq!(cell.publish(Status::Minion), Status::Minion);
        assert_eq!(cell.publish(Status::Stopped), Status::Minion);
        assert_eq!(cell.get(), Status::Stopped);
    }

    #[test]
    fn a_channel_first_made_after_the_close_holds_the_last_status() {
        let cell = StatusCell::new();
        cell.publish(Status::Stopped);
        cell.close();
        let rx = cell.subscribe();
        assert_eq!(*rx.borrow(), Status::Stopped);
        assert!(rx.has_changed().is_err());
    }
}
