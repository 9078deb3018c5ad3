//! [`Ticket`]: the answer to a leadership question, possibly still pending.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};

use crate::latch::{latch, Latch, LatchFuture, LatchSetter};

/// The answer to [`ClaimLeader`](crate::ClaimLeader), [`WaitLeader`](crate::WaitLeader)
/// or [`WaitMinion`](crate::WaitMinion): `true` means the unit is leader and will be for
/// at least the claim duration from the moment the tracker handled the request.
///
/// A ticket stays pending in the tracker until it can be answered truthfully. Awaiting
/// it (or [`wait`](Ticket::wait)) is repeatable and every clone gives the same answer;
/// [`try_wait`](Ticket::try_wait) peeks without waiting. A ticket whose tracker is gone
/// resolves `false`.
#[must_use = "a ticket means nothing until its answer is read"]
#[derive(Clone)]
pub struct Ticket {
    answer: Latch<bool>,
}

impl Ticket {
    /// Creates a pending ticket and the sender that resolves it. Dropping the sender
    /// unresolved resolves the ticket `false`.
    pub(crate) fn pending() -> (TicketSender, Ticket) {
        let (setter, answer) = latch(false);
        (TicketSender { setter }, Ticket { answer })
    }

    /// Waits for the answer. Every call gives the same answer.
    pub async fn wait(&self) -> bool {
        self.answer.wait().await
    }

    /// The answer if it is known, `None` while pending. Needs no prior polling.
    pub fn try_wait(&self) -> Option<bool> {
        self.answer.get()
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
            inner: self.answer.wait(),
        }
    }
}

/// The future of an awaited [`Ticket`]: resolves to its answer.
#[must_use = "futures do nothing unless awaited"]
pub struct TicketFuture {
    inner: LatchFuture<bool>,
}

impl Future for TicketFuture {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        Pin::new(&mut self.inner).poll(cx)
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
    setter: LatchSetter<bool>,
}

impl TicketSender {
    pub(crate) fn resolve(self, answer: bool) {
        self.setter.set(answer);
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
        sender.resolve(true);
        assert_eq!(ticket.try_wait(), Some(true));
        assert_eq!(ticket.wait().now_or_never(), Some(true));
        assert_eq!(ticket.clone().into_future().now_or_never(), Some(true));
        assert_eq!(ticket.wait().now_or_never(), Some(true));
    }

    #[test]
    fn dropped_sender_resolves_false() {
        let (sender, ticket) = Ticket::pending();
        drop(sender);
        assert_eq!(ticket.try_wait(), Some(false));
    }
}
