//! An actix `System` on a tokio runtime whose clock starts paused, for tests that need
//! instants exactly on tokio's millisecond timer grid; and the panic check that every
//! test run through it gets.
//!
//! `tokio::time::pause()` inside a running test leaves "now" off that grid, so every
//! timer fires up to 1 ms after its deadline; a runtime that starts paused puts "now" on
//! the grid, so a lease of whole milliseconds is answered exactly at its expiry.
//!
//! # Why a panic check
//!
//! An actor runs as a task of the runtime, and tokio catches a task's panic: the
//! actor is gone, its pending requests answer a `MailboxError` or are cancelled, and the
//! test carries on — often to a pass, because a vanished actor looks much like a stopped
//! one (a mutant that overflowed in `ManagerActor::stopped()` passed every test). So a
//! panic hook records every panic on the test's thread, and [`PanicCheck`] fails the test
//! if any happened while it watched. [`PausedSystem`] and [`CheckedSystem`] watch the
//! whole test; a test on `#[actix_rt::test]` can hold a [`PanicCheck`] instead.
//!
//! Only the test's own thread is watched: every actor of a test runs there (actix's
//! `System` is a current-thread runtime), unless the test starts an `Arbiter` of its own.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Once;

thread_local! {
    /// Every panic on this thread since the hook was installed, as the hook displays it
    /// (location and message).
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Installs, once per process, a panic hook that records each panic on the thread it
/// happens on, then runs the previous hook (which prints it as usual).
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while the thread's locals are torn down has nowhere to go.
            let _ = PANICS.try_with(|panics| panics.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

fn panics_so_far() -> usize {
    PANICS.with(|panics| panics.borrow().len())
}

/// Fails the test, when dropped, if anything on this thread panicked since it was made:
/// a panic the runtime swallowed (an actor callback's) must not let a test pass.
///
/// In an `#[actix_rt::test]`, make it first: `let _panics = PanicCheck::new();`. A test
/// already failing is left to fail with its own message.
#[derive(Debug)]
pub struct PanicCheck {
    seen: usize,
}

impl PanicCheck {
    /// Starts watching this thread.
    pub fn new() -> PanicCheck {
        install_hook();
        PanicCheck {
            seen: panics_so_far(),
        }
    }
}

impl Drop for PanicCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let swallowed: Vec<String> = PANICS.with(|panics| panics.borrow()[self.seen..].to_vec());
        if !swallowed.is_empty() {
            panic!(
                "{} panic(s) during the test were swallowed by the runtime (an actor's, \
                 most likely); the test must fail:\n{}",
                swallowed.len(),
                swallowed.join("\n")
            );
        }
    }
}

/// An actix `SystemRunner` whose `block_on` fails the test if anything panicked on the
/// test's thread meanwhile, even a panic the runtime swallowed (see [`PanicCheck`]).
#[derive(Debug)]
pub struct CheckedRunner(actix_rt::SystemRunner);

impl CheckedRunner {
    /// Runs `fut` to completion on the system, then checks for swallowed panics.
    pub fn block_on<F: Future>(self, fut: F) -> F::Output {
        let check = PanicCheck::new();
        let output = self.0.block_on(fut);
        drop(check);
        output
    }
}

/// Use as `#[actix_rt::test(system = "PausedSystem")]`, which calls
/// `PausedSystem::new().block_on(..)`, or call [`PausedSystem::new`] directly. The test
/// fails if any actor panicked during it (see [`PanicCheck`]).
pub struct PausedSystem;

impl PausedSystem {
    /// A fresh actix `System` on a current-thread runtime whose clock starts paused.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> CheckedRunner {
        CheckedRunner(actix_rt::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a tokio runtime")
        }))
    }
}

/// A plain actix `System` (real clock, as `#[actix_rt::test]` gives) with the panic
/// check: `#[actix_rt::test(system = "paused::CheckedSystem")]`.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub struct CheckedSystem;

#[allow(dead_code)]
impl CheckedSystem {
    /// A fresh actix `System`, checked for swallowed panics.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> CheckedRunner {
        CheckedRunner(actix_rt::System::new())
    }
}
