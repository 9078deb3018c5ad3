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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Wakers {
    /// The first waiter's waker: most latches (a ticket awaited once) have one waiter,
    /// and keeping it inline spares every ticket an allocation.
    first: Option<Waker>,
    /// The other waiters' wakers.
    more: Vec<Waker>,
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
        }
    }

    /// Like [`wait`](Latch::wait), consuming this reader (no reference count to touch).
    pub(crate) fn into_wait(self) -> LatchFuture<T> {
        LatchFuture {
            shared: self.shared,
        }
    }
}

/// Resolves to the latch's value once it is set.
pub(crate) struct LatchFuture<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Clone> Future for LatchFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = self.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        let mut wakers = self.shared.lock();
        // Again under the lock: a value set since is seen here, or its setter takes the
        // waker registered below.
        if let Some(value) = self.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        let waker = cx.waker();
        match &wakers.first {
            None => wakers.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !wakers.more.iter().any(|w| w.will_wake(waker)) {
                    wakers.more.push(waker.clone());
                }
            }
        }
        Poll::Pending
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
        let Wakers { first, more } = std::mem::take(&mut *self.shared.lock());
        // Wake outside the lock: a woken task may poll on another thread at once.
        first.into_iter().chain(more).for_each(Waker::wake);
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
