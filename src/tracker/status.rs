//! [`Status`]: what a tracker is doing, as a value a program can watch.

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
    /// Not known yet: the first claim is in flight (or waits for one of its claimer's
    /// first-claim slots), or the tracker is backing off or claiming again after a
    /// minion's block was answered.
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
