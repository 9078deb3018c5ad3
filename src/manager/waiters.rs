//! Pending blocks: [`Waiters`], the senders a lease keeps for the blocks waiting for it
//! to end.
//!
//! Why pruning is needed: a block's asker may go away long before the lease ends (a
//! tracker restarted or stopped, a caller's timeout fired), and a leader that renews
//! forever keeps its lease, so its list of senders would grow without bound. Two things
//! keep that in check:
//!
//! - [`BlockAnswer`](crate::BlockAnswer) hands the block's answer to a small task that
//!   also watches the asker's side of the reply channel, and ends as soon as the asker
//!   is gone, dropping its receiver; a block sent with `do_send` (nobody to answer)
//!   gets no task at all. So a pending block costs a task only while somebody waits for
//!   it.
//! - [`Waiters`] drops the senders whose receiver is gone, amortised: only when its
//!   vector is full (about to reallocate), and it then keeps at least as many free slots
//!   as it has live senders, so a prune costing `k` comes after at least `k / 2`
//!   pushes. The senders it holds stay below four times the live blocks at its last
//!   prune (and a few more), whatever the number of abandoned ones.

use futures::channel::oneshot;

/// The capacity a pruned vector shrinks to at the least.
const MIN_CAPACITY: usize = 8;

/// The senders of the blocks waiting for one lease (or for the recovery grace) to end;
/// sending `()` answers a block with `Ok(())`.
///
/// Boxed, and absent until the first block comes (nearly every lease never has one); once
/// there it stays, pruned, until the lease ends or changes hands. It is a field of every
/// lease, and 8 bytes there instead of a `Vec`'s 24 keep a lease map entry within 64
/// bytes.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    // The extra allocation is the point: a thin pointer in every lease, the `Vec`
    // (24 bytes) only in those that have had blocks.
    #[allow(clippy::box_collection)]
    senders: Option<Box<Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    /// Adds a block's sender. Returns how many abandoned senders it pruned to make
    /// room, so the manager's count of held blocks stays exact.
    pub(super) fn push(&mut self, sender: oneshot::Sender<()>) -> usize {
        let senders = self.senders.get_or_insert_with(Box::default);
        let mut pruned = 0;
        if senders.len() == senders.capacity() && !senders.is_empty() {
            let before = senders.len();
            senders.retain(|sender| !sender.is_canceled());
            let live = senders.len();
            pruned = before - live;
            if live * 4 < senders.capacity() {
                // Mostly abandoned: give the memory back, keeping room for `live` more.
                senders.shrink_to((live * 2).max(MIN_CAPACITY));
            } else {
                // At least `live` free slots: the next prune is as far away as this
                // one cost.
                senders.reserve(live);
            }
        }
        senders.push(sender);
        pruned
    }

    /// How many senders are held, abandoned ones not yet pruned included.
    pub(super) fn len(&self) -> usize {
        self.senders.as_ref().map_or(0, |senders| senders.len())
    }

    /// How many senders are held whose block's asker has gone (test probe).
    #[cfg(test)]
    pub(super) fn abandoned(&self) -> usize {
        self.senders.as_ref().map_or(0, |senders| {
            senders.iter().filter(|sender| sender.is_canceled()).count()
        })
    }

    /// Answers every block with `Ok(())`; returns how many senders were held.
    pub(super) fn wake(self) -> usize {
        let senders = self.senders.map_or_else(Vec::new, |senders| *senders);
        let held = senders.len();
        for sender in senders {
            // A block whose asker has gone away has nobody to tell.
            let _ = sender.send(());
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_senders_are_pruned_and_live_ones_kept() {
        let mut waiters = Waiters::default();
        let mut live = Vec::new();
        let mut pruned = 0;
        for i in 0..100_000 {
            let (tx, rx) = oneshot::channel();
            pruned += waiters.push(tx);
            if i % 1_000 == 0 {
                live.push(rx); // one in a thousand asker stays
            }
            assert!(
                waiters.len() <= 4 * live.len() + MIN_CAPACITY,
                "{} held for {} live after {i} pushes",
                waiters.len(),
                live.len()
            );
        }
        assert_eq!(pruned + waiters.len(), 100_000);
        assert!(waiters.capacity() <= 8 * live.len() + 4 * MIN_CAPACITY);
        // Every live block is still answered.
        assert_eq!(waiters.wake(), 100_000 - pruned);
        for mut rx in live {
            assert_eq!(rx.try_recv(), Ok(Some(())));
        }
    }

    impl Waiters {
        fn capacity(&self) -> usize {
            self.senders
                .as_ref()
                .map_or(0, |senders| senders.capacity())
        }
    }

    #[test]
    fn no_waiters_hold_no_memory_and_cost_a_pointer() {
        let waiters = Waiters::default();
        assert_eq!(waiters.len(), 0);
        assert_eq!(waiters.capacity(), 0);
        assert_eq!(waiters.wake(), 0);
        assert_eq!(std::mem::size_of::<Waiters>(), std::mem::size_of::<usize>());
    }

    /// A sender whose receiver is already gone.
    fn abandoned() -> oneshot::Sender<()> {
        oneshot::channel().0
    }

    #[test]
    fn a_prune_waits_until_the_vector_is_full() {
        let mut waiters = Waiters::default();
        assert_eq!(waiters.push(abandoned()), 0);
        let capacity = waiters.capacity();
        for _ in 1..capacity {
            assert_eq!(waiters.push(abandoned()), 0, "pruned before it was full");
        }
        assert_eq!(waiters.len(), capacity);
        // Full: the next push prunes every abandoned sender.
        assert_eq!(waiters.push(abandoned()), capacity);
        assert_eq!(waiters.len(), 1);
    }

    /// Waiters holding `held` senders in a full vector, of which `live` are live
    /// (their receivers returned).
    fn full(held: usize, live: usize) -> (Waiters, Vec<oneshot::Receiver<()>>) {
        let mut waiters = Waiters::default();
        let mut receivers = Vec::new();
        for _ in 0..held {
            let (tx, rx) = oneshot::channel();
            assert_eq!(waiters.push(tx), 0);
            receivers.push(rx);
        }
        assert_eq!(
            waiters.capacity(),
            held,
            "a power of two from 4 up fills it"
        );
        receivers.truncate(live);
        (waiters, receivers)
    }

    #[test]
    fn a_mostly_abandoned_vector_shrinks_to_twice_its_live_senders() {
        // 5 live of 64: under a quarter, so it shrinks, keeping room for 5 more.
        let (mut waiters, _live) = full(64, 5);
        assert_eq!(waiters.push(abandoned()), 59);
        assert_eq!(waiters.len(), 6);
        let capacity = waiters.capacity();
        assert!((10..16).contains(&capacity), "capacity {capacity}");
    }

    #[test]
    fn a_vector_a_quarter_live_keeps_its_memory() {
        // 4 live of 16: exactly a quarter is not "mostly abandoned", so it keeps its
        // capacity, which already leaves room for 4 more.
        let (mut waiters, _live) = full(16, 4);
        assert_eq!(waiters.push(abandoned()), 12);
        assert_eq!(waiters.len(), 5);
        assert_eq!(waiters.capacity(), 16);
    }

    #[test]
    fn live_senders_are_never_pruned() {
        let mut waiters = Waiters::default();
        let mut live = Vec::new();
        for _ in 0..1_000 {
            let (tx, rx) = oneshot::channel();
            assert_eq!(waiters.push(tx), 0);
            live.push(rx);
        }
        assert_eq!(waiters.len(), 1_000);
    }
}
