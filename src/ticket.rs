//! [`Ticket`]: the answer to a leadership question, possibly still pending, and the
//! [`Guarantee`] a `true` answer carries.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};

use crate::latch::{latch, Latch, LatchFuture, LatchSetter};

/// What a `true` ticket promises: this unit leads its service under `term` at least
/// until `until` (tokio's clock).
///
/// `until` is where this unit's leadership ends unless it is renewed — the tracker's own
/// end, a little before the lease's — and never earlier than the moment the tracker
/// handled the ticket plus the claim duration `d`. Only this unit itself can end it
/// sooner, by resigning ([`Tracker::resign`](crate::Tracker::resign)): a resigning
/// tracker keeps its lease until `handled_at + d` of every `true` answer it gave (the
/// promise the contract makes), not necessarily until `until`. `term` is the term of
/// the grant that made the answer true, the same term [`Leader`](crate::Leader) and
/// [`WatchLeader`](crate::WatchLeader) report for that lease; a
/// [`Fence`](crate::Fence) fed these terms turns a stalled former leader's writes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guarantee {
    /// The lease's term (fencing token).
    pub term: u64,
    /// Leadership under `term` lasts at least until this instant.
    pub until: tokio::time::Instant,
}

/// The answer to [`ClaimLeader`](crate::ClaimLeader), [`WaitLeader`](crate::WaitLeader)
/// or [`WaitMinion`](crate::WaitMinion): `true` means the unit is leader and will be for
/// at least the claim duration from the moment the tracker handled the request.
///
/// A ticket stays pending in the tracker until it can be answered truthfully. Awaiting
/// it (or [`wait`](Ticket::wait)) is repeatable and every clone gives the same answer;
/// [`try_wait`](Ticket::try_wait) peeks without waiting. A ticket whose tracker is gone
/// resolves `false`. A `true` answer carries its [`Guarantee`]
/// ([`guarantee`](Ticket::guarantee)): the term to fence writes with, and how long it
/// lasts.
#[must_use = "a ticket means nothing until its answer is read"]
#[derive(Clone)]
pub struct Ticket {
    answer: Latch<Option<Guarantee>>,
}

impl Ticket {
    /// Creates a pending ticket and the sender that resolves it. Dropping the sender
    /// unresolved resolves the ticket `false`.
    pub(crate) fn pending() -> (TicketSender, Ticket) {
        let (setter, answer) = latch(None);
        (TicketSender { setter }, Ticket { answer })
    }

    /// Waits for the answer. Every call gives the same answer.
    pub async fn wait(&self) -> bool {
        self.answer.wait().await.is_some()
    }

    /// The answer if it is known, `None` while pending. Needs no prior polling.
    pub fn try_wait(&self) -> Option<bool> {
        self.answer.get().map(|answer| answer.is_some())
    }

    /// Waits for the answer: `Some(guarantee)` iff it is `true`.
    pub async fn guarantee(&self) -> Option<Guarantee> {
        self.answer.wait().await
    }

    /// The guarantee once the ticket has resolved `true`; `None` while pending and
    /// after a `false` answer. Needs no prior polling.
    pub fn try_guarantee(&self) -> Option<Guarantee> {
        self.answer.get().flatten()
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answer = match self.try_wait() {
            None => "pending",
            Some(true) => "true",
            Some(false) => "false",
        };
        f.debug_struct("Ticket").field("answer", &answer).finish()
    }
}

impl IntoFuture for Ticket {
    type Output = bool;
    type IntoFuture = TicketFuture;

    fn into_future(self) -> TicketFuture {
        TicketFuture {
            inner: self.answer.into_wait(),
        }
    }
}

/// The future of an awaited [`Ticket`]: resolves to its answer.
#[must_use = "futures do nothing unless awaited"]
pub struct TicketFuture {
    inner: LatchFuture<Option<Guarantee>>,
}

impl Future for TicketFuture {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|answer| answer.is_some())
    }
}

impl std::fmt::Debug for TicketFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketFuture").finish_non_exhaustive()
    }
}

/// Handlers can return a [`Ticket`] directly; it is handed to the sender at once,
/// pending or not.
impl<A, M> MessageResponse<A, M> for Ticket
where
    A: Actor,
    M: Message<Result = Ticket>,
{
    fn handle(self, _: &mut A::Context, tx: Option<OneshotSender<Ticket>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Resolves one ticket. Kept inside the tracker while the ticket is pending.
pub(crate) struct TicketSender {
    setter: LatchSetter<Option<Guarantee>>,
}

impl TicketSender {
    /// Resolves the ticket: `true` with `Some(guarantee)`, `false` with `None`.
    pub(crate) fn resolve(self, answer: Option<Guarantee>) {
        self.setter.set(answer);
    }
}

/// A parked ticket whose every clone (and future) was dropped can be dropped unanswered.
impl crate::tracker::machine::Readable for TicketSender {
    fn readable(&self) -> bool {
        self.setter.has_readers()
    }
}

impl std::fmt::Debug for TicketSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSender")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn ticket_is_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Ticket>();
        assert::<TicketFuture>();
    }

    #[test]
    fn resolved_answer_is_repeatable_and_visible_without_polling() {
        let (sender, ticket) = Ticket::pending();
        assert_eq!(ticket.try_wait(), None);
        assert_eq!(format!("{ticket:?}"), "Ticket { answer: \"pending\" }");
        assert_eq!(ticket.try_guarantee(), None);
        let guarantee = Guarantee {
            term: 7,
            until: tokio::time::Instant::now(),
        };
        sender.resolve(Some(guarantee));
        assert_eq!(ticket.try_wait(), Some(true));
        assert_eq!(ticket.try_guarantee(), Some(guarantee));
        assert_eq!(ticket.guarantee().now_or_never(), Some(Some(guarantee)));
        assert_eq!(ticket.wait().now_or_never(), Some(true));
        assert_eq!(ticket.clone().into_future().now_or_never(), Some(true));
        assert_eq!(ticket.wait().now_or_never(), Some(true));
    }

    #[test]
    fn dropped_sender_resolves_false() {
        let (sender, ticket) = Ticket::pending();
        drop(sender);
        assert_eq!(ticket.try_wait(), Some(false));
        assert_eq!(ticket.try_guarantee(), None);
        assert_eq!(ticket.guarantee().now_or_never(), Some(None));
    }
}
