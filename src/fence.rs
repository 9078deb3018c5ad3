//! [`Fence`]: the check a resource that leaders write to makes on every write, so that a
//! leader that stalled past its lease cannot overwrite the work of its successor.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Admits a leadership term only if no greater term was admitted before: Kleppmann's
/// fencing token, checked by the resource rather than trusted from the writer.
///
/// Give every write the term of the [`Guarantee`](crate::Guarantee) it was made under,
/// and call [`admit`](Fence::admit) before applying it. A leader that stalled (a GC
/// pause, `SIGSTOP`, a slow disk) past the end of its lease wakes with an old term;
/// once its successor's greater term has been admitted, the old one is turned away with
/// [`StaleTerm`]. Equal terms pass, so one leader may write many times.
///
/// Lock-free (two atomics), `Send + Sync`, and cheap enough for every write: share it
/// behind an `Arc` or a `static`. Any `u64` is accepted; nothing here panics.
///
/// ```
/// use leadership::{Fence, StaleTerm};
///
/// let fence = Fence::new();
/// assert_eq!(fence.current(), None);
/// assert_eq!(fence.admit(3), Ok(()));
/// assert_eq!(fence.admit(3), Ok(()), "the same leader writes again");
/// assert_eq!(fence.admit(5), Ok(()), "a new leader");
/// assert_eq!(fence.admit(3), Err(StaleTerm { term: 3, current: 5 }), "the old one is turned away");
/// assert_eq!(fence.current(), Some(5));
/// ```
#[derive(Debug, Default)]
pub struct Fence {
    /// The greatest term admitted (0 until one is).
    greatest: AtomicU64,
    /// Whether any term has been admitted: only term 0 needs it to be told apart from
    /// "none yet".
    any: AtomicBool,
}

/// A write under a term older than one the [`Fence`] has already admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale leadership term {term}: term {current} was already admitted")]
pub struct StaleTerm {
    /// The term that was turned away.
    pub term: u64,
    /// The greatest term admitted before it.
    pub current: u64,
}

impl Fence {
    /// A fence that has admitted nothing yet.
    pub fn new() -> Fence {
        Fence::default()
    }

    /// Admits `term` unless a greater term was admitted before; equal terms pass.
    ///
    /// Linearizable: of two racing calls with terms `a < b`, either `a` is admitted
    /// before `b`, or `a` is turned away.
    ///
    /// # Errors
    ///
    /// [`StaleTerm`] when a greater term was admitted before, naming it.
    pub fn admit(&self, term: u64) -> Result<(), StaleTerm> {
        let before = self.greatest.fetch_max(term, Ordering::AcqRel);
        if before > term {
            return Err(StaleTerm {
                term,
                current: before,
            });
        }
        self.any.store(true, Ordering::Release);
        Ok(())
    }

    /// The greatest term admitted so far, `None` before the first.
    pub fn current(&self) -> Option<u64> {
        match self.greatest.load(Ordering::Acquire) {
            0 if !self.any.load(Ordering::Acquire) => None,
            greatest => Some(greatest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_equal_and_greater_terms_and_turns_older_ones_away() {
        let fence = Fence::new();
        assert_eq!(fence.current(), None);
        assert_eq!(fence.admit(0), Ok(()));
        assert_eq!(fence.current(), Some(0));
        assert_eq!(fence.admit(u64::MAX), Ok(()));
        assert_eq!(
            fence.admit(u64::MAX - 1),
            Err(StaleTerm {
                term: u64::MAX - 1,
                current: u64::MAX
            })
        );
        assert_eq!(fence.admit(0).unwrap_err().current, u64::MAX);
        assert_eq!(fence.admit(u64::MAX), Ok(()));
        assert_eq!(fence.current(), Some(u64::MAX));
        assert_eq!(
            StaleTerm {
                term: 3,
                current: 7
            }
            .to_string(),
            "stale leadership term 3: term 7 was already admitted"
        );
    }

    #[test]
    fn is_send_sync_and_never_admits_an_older_term_after_a_newer_one_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Fence>();
        let fence = std::sync::Arc::new(Fence::new());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let fence = fence.clone();
                std::thread::spawn(move || {
                    // Each thread's admitted terms must increase, and every refusal
                    // must name a greater term.
                    let mut admitted = Vec::new();
                    for i in 0..10_000u64 {
                        let term = (i * 7 + t * 13) % 5_000;
                        match fence.admit(term) {
                            Ok(()) => admitted.push(term),
                            Err(stale) => assert!(stale.current > stale.term),
                        }
                    }
                    admitted
                })
            })
            .collect();
        for thread in threads {
            let admitted = thread.join().unwrap();
            assert!(admitted.windows(2).all(|w| w[0] <= w[1]), "{admitted:?}");
        }
        assert!(fence.current().is_some());
    }
}
