//! A write-once value that many clones can await: the mechanism under [`Ticket`] and
//! under a tracker's stop report.
//!
//! [`Ticket`]: crate::Ticket
//!
//! The value is a `OnceLock`, read without locking once set (a ticket's second poll,
//! `try_wait`); the wakers of those awaiting it are under a mutex. A waiter looks for
//! the value again while holding that mutex, and the setter takes the wakers under it
//! after storing the value, so a waiter that found no value has registered its waker
//! before the setter takes them: no wake-up is lost. The setter is consumed by `set`;
//! dropping it unset stores the fallback given at creation, so a waiter never hangs on
//! a setter that went away (an actor that died, a message that was dropped with a full
//! or closed mailbox).
//!
//! Each waiting future registers its waker under a key of its own and takes it out if it
//! is dropped before the value is set (a caller that gave up: a timeout, a `select!`), so
//! a long-pending latch awaited from many tasks in turn holds only the wakers of the
//! futures still waiting. A future dropped after the value is set does not lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

/// The wakers of the futures awaiting one value, each under a key of its own, so that a
/// future dropped before the value comes takes its own waker out (a caller that gave up
/// leaves nothing behind). The tracker's stop report keeps its waiters in one too.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    /// The first waiter's key and waker: most latches (a ticket awaited once) have one
    /// waiter, and keeping it inline spares every ticket an allocation.
    first: Option<(u64, Waker)>,
    /// The other waiters' keys and wakers.
    more: Vec<(u64, Waker)>,
    /// The key of the next waiter to register.
    next: u64,
}

impl Wakers {
    /// Registers `waker` for the future whose key is `key`: its entry is updated if it
    /// still has one (polled again, perhaps from another task), otherwise it is given a
    /// new key, stored in `key`.
    pub(crate) fn register(&mut self, key: &mut Option<u64>, waker: &Waker) {
        let registered = key.and_then(|key| {
            self.first
                .iter_mut()
                .chain(self.more.iter_mut())
                .find(|(k, _)| *k == key)
        });
        match registered {
            // `clone_from` clones only if the waker would wake another task.
            Some((_, registered)) => registered.clone_from(waker),
            None => {
                let entry = (self.next, waker.clone());
                *key = Some(self.next);
                self.next += 1;
                if self.first.is_none() {
                    self.first = Some(entry);
                } else {
                    self.more.push(entry);
                }
            }
        }
    }

    /// Takes out the waker registered under `key`, if it still is.
    pub(crate) fn forget(&mut self, key: u64) {
        if self.first.as_ref().is_some_and(|(k, _)| *k == key) {
            self.first = None;
        } else if let Some(at) = self.more.iter().position(|(k, _)| *k == key) {
            self.more.swap_remove(at);
        }
    }

    /// Wakes every registered waker (call it outside any lock: a woken task may poll on
    /// another thread at once).
    pub(crate) fn wake_all(self) {
        self.first
            .into_iter()
            .chain(self.more)
            .for_each(|(_, waker)| waker.wake());
    }

    /// How many wakers are registered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }
}

struct Shared<T> {
    value: OnceLock<T>,
    wakers: Mutex<Wakers>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Wakers> {
        // Nothing panics while holding this lock; recover the data if something did.
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates a latch and its setter. If the setter is dropped unset, waiters see
/// `fallback`.
pub(crate) fn latch<T: Clone>(fallback: T) -> (LatchSetter<T>, Latch<T>) {
    let shared = Arc::new(Shared {
        value: OnceLock::new(),
        wakers: Mutex::default(),
    });
    let setter = LatchSetter {
        shared: shared.clone(),
        fallback: Some(fallback),
    };
    (setter, Latch { shared })
}

/// The reading side: clone it freely; every clone sees the same single value.
pub(crate) struct Latch<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Latch<T> {
    fn clone(&self) -> Self {
        Latch {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Clone> Latch<T> {
    /// The value, if it has been set.
    pub(crate) fn get(&self) -> Option<T> {
        self.shared.value.get().cloned()
    }

    /// A future resolving to the value once it is set.
    pub(crate) fn wait(&self) -> LatchFuture<T> {
        LatchFuture {
            shared: self.shared.clone(),
            key: None,
        }
    }

    /// Like [`wait`](Latch::wait), consuming this reader (no reference count to touch).
    pub(crate) fn into_wait(self) -> LatchFuture<T> {
        LatchFuture {
            shared: self.shared,
            key: None,
        }
    }
}

/// Resolves to the latch's value once it is set.
pub(crate) struct LatchFuture<T> {
    shared: Arc<Shared<T>>,
    /// The key of its registered waker, once it has waited.
    key: Option<u64>,
}

impl<T: Clone> Future for LatchFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if let Some(value) = this.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        let mut wakers = this.shared.lock();
        // Again under the lock: a value set since is seen here, or its setter takes the
        // waker registered below.
        if let Some(value) = this.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        wakers.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for LatchFuture<T> {
    fn drop(&mut self) {
        // Set: the setter took every waker, there is nothing to forget (and no lock).
        if let (Some(key), None) = (self.key, self.shared.value.get()) {
            let mut wakers = self.shared.lock();
            // Unless it was set meanwhile: the setter has taken them all then.
            if self.shared.value.get().is_none() {
                wakers.forget(key);
            }
        }
    }
}

/// The writing side: sets the value once, by `set` or, failing that, on drop.
pub(crate) struct LatchSetter<T> {
    shared: Arc<Shared<T>>,
    fallback: Option<T>,
}

impl<T> LatchSetter<T> {
    /// Whether anyone can still read the value: a [`Latch`] or one of its futures is
    /// alive. (Only the setter and the readers hold the shared state, and a reader
    /// cannot be made from the setter, so once this is `false` it stays `false`.)
    pub(crate) fn has_readers(&self) -> bool {
        Arc::strong_count(&self.shared) > 1
    }

    /// Stores `value` and wakes every waiter.
    pub(crate) fn set(mut self, value: T) {
        self.fallback = None;
        self.store(value);
    }

    fn store(&self, value: T) {
        if self.shared.value.set(value).is_err() {
            return; // Set already: the first value stays.
        }
        let wakers = std::mem::take(&mut *self.shared.lock());
        // Woken outside the lock.
        wakers.wake_all();
    }
}

impl<T> Drop for LatchSetter<T> {
    fn drop(&mut self) {
        if let Some(fallback) = self.fallback.take() {
            self.store(fallback);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn set_value_is_seen_by_every_clone_repeatedly() {
        let (setter, latch) = latch(false);
        let other = latch.clone();
        let mut pending = latch.wait();
        assert_eq!(latch.get(), None);
        assert_eq!((&mut pending).now_or_never(), None);
        setter.set(true);
        assert_eq!(pending.now_or_never(), Some(true));
        assert_eq!(other.get(), Some(true));
        assert_eq!(other.wait().now_or_never(), Some(true));
        assert_eq!(latch.get(), Some(true));
    }

    #[test]
    fn dropped_setter_stores_the_fallback() {
        let (setter, latch) = latch(false);
        drop(setter);
        assert_eq!(latch.get(), Some(false));
        assert_eq!(latch.wait().now_or_never(), Some(false));
    }

    #[test]
    fn has_readers_until_every_latch_and_future_is_gone() {
        let (setter, latch) = latch(false);
        let future = latch.wait();
        let clone = latch.clone();
        drop(latch);
        assert!(setter.has_readers());
        drop(clone);
        assert!(setter.has_readers(), "a future still reads");
        drop(future);
        assert!(!setter.has_readers());
    }

    /// A waker of its own that counts its wake-ups.
    fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(count.clone()))), count)
    }

    fn poll_once<T: Clone>(future: &mut LatchFuture<T>, waker: &Waker) -> Poll<T> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind_and_the_others_are_woken() {
        let (setter, latch) = latch(false);
        // A thousand futures awaited from a thousand tasks in turn, each giving up.
        for _ in 0..1_000 {
            let (waker, _) = counting_waker();
            let mut gave_up = latch.wait();
            assert!(poll_once(&mut gave_up, &waker).is_pending());
            assert!(poll_once(&mut gave_up, &waker).is_pending(), "polled again");
            assert_eq!(latch.shared.lock().len(), 1, "one entry per waiting future");
        }
        assert_eq!(latch.shared.lock().len(), 0, "every one dropped unanswered");

        // Three waiting; the first (the inline one) and the last give up.
        let mut waiting: Vec<_> = (0..3)
            .map(|_| {
                let (waker, count) = counting_waker();
                let mut future = latch.wait();
                assert!(poll_once(&mut future, &waker).is_pending());
                (future, count)
            })
            .collect();
        let last = waiting.pop().unwrap();
        let first = waiting.remove(0);
        drop((first.0, last.0));
        assert_eq!(latch.shared.lock().len(), 1, "only their own entries went");
        setter.set(true);
        let (mut kept, woken) = waiting.pop().unwrap();
        assert_eq!(
            woken.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "still woken"
        );
        assert_eq!(
            poll_once(&mut kept, &Waker::noop().clone()),
            Poll::Ready(true)
        );
        assert_eq!(first.1.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(last.1.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn a_waiter_polled_from_another_task_is_woken_there() {
        let (setter, latch) = latch(0u8);
        let (old, old_count) = counting_waker();
        let (new, new_count) = counting_waker();
        let mut future = latch.wait();
        assert!(poll_once(&mut future, &old).is_pending());
        assert!(
            poll_once(&mut future, &new).is_pending(),
            "moved to another task"
        );
        assert_eq!(latch.shared.lock().len(), 1, "its one entry, updated");
        setter.set(3);
        assert_eq!(old_count.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(new_count.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(poll_once(&mut future, &new), Poll::Ready(3));
    }

    #[test]
    fn waiters_on_other_threads_are_woken() {
        let (setter, latch) = latch(0u32);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let latch = latch.clone();
                std::thread::spawn(move || futures::executor::block_on(latch.wait()))
            })
            .collect();
        setter.set(7);
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), 7);
        }
    }
}
