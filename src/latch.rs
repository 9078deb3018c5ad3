//! A write-once value that many clones can await: the mechanism under [`Ticket`] and
//! under a tracker's stop report.
//!
//! [`Ticket`]: crate::Ticket
//!
//! One mutex holds both the value and the wakers of those awaiting it, so a waiter that
//! found no value has registered its waker before the setter can take the list: no
//! wake-up is lost. The setter is consumed by `set`; dropping it unset stores the
//! fallback given at creation, so a waiter never hangs on a setter that went away (an
//! actor that died, a message that was dropped with a full or closed mailbox).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    wakers: Vec<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding this lock; recover the data if something did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates a latch and its setter. If the setter is dropped unset, waiters see
/// `fallback`.
pub(crate) fn latch<T: Clone>(fallback: T) -> (LatchSetter<T>, Latch<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            value: None,
            wakers: Vec::new(),
        }),
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
        self.shared.lock().value.clone()
    }

    /// A future resolving to the value once it is set.
    pub(crate) fn wait(&self) -> LatchFuture<T> {
        LatchFuture {
            shared: self.shared.clone(),
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
        let mut state = self.shared.lock();
        if let Some(value) = &state.value {
            return Poll::Ready(value.clone());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
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
        let wakers = {
            let mut state = self.shared.lock();
            if state.value.is_some() {
                return;
            }
            state.value = Some(value);
            std::mem::take(&mut state.wakers)
        };
        // Wake outside the lock: a woken task may poll on another thread at once.
        wakers.into_iter().for_each(Waker::wake);
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
