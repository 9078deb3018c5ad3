//! An actix `System` on a tokio runtime whose clock starts paused, for tests that need
//! instants exactly on tokio's millisecond timer grid.
//!
//! `tokio::time::pause()` inside a running test leaves "now" off that grid, so every
//! timer fires up to 1 ms after its deadline; a runtime that starts paused puts "now" on
//! the grid, so a lease of whole milliseconds is answered exactly at its expiry.

/// Use as `#[actix_rt::test(system = "PausedSystem")]`, which calls
/// `PausedSystem::new().block_on(..)`, or call [`PausedSystem::new`] directly.
pub struct PausedSystem;

impl PausedSystem {
    /// A fresh actix `System` on a current-thread runtime whose clock starts paused.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> actix_rt::SystemRunner {
        actix_rt::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a tokio runtime")
        })
    }
}
