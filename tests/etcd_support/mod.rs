//! Test support for `tests/etcd.rs`: the shared server from `.ci/with-etcd` and unique
//! key prefixes on it, here; in submodules, one job each (the other etcd tests include
//! only the submodules they use, by `#[path]`, so that nothing in them is unused):
//!
//! - [`wait`]: polling a condition, or awaiting a future, with a deadline;
//! - [`ports`]: a free loopback port;
//! - [`server`]: an etcd's command line, free ports for it, waiting until it answers;
//! - [`process`]: a private etcd process, to freeze and resume;
//! - [`restart`]: killing and restarting one;
//! - [`unique`]: names no other process or run uses.

pub mod ports;
pub mod process;
pub mod restart;
pub mod server;
pub mod unique;
pub mod wait;

use std::sync::atomic::{AtomicUsize, Ordering};

/// The endpoints of the shared etcd (`LEADERSHIP_ETCD_ENDPOINTS`, comma-separated).
/// Tests that call it are `#[ignore]`d by default, so they run only when asked for:
/// then a missing server is a failure, never a silent pass.
pub fn shared_endpoints(test: &str) -> Vec<String> {
    match std::env::var("LEADERSHIP_ETCD_ENDPOINTS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_owned()).collect(),
        _ => panic!(
            "{test}: LEADERSHIP_ETCD_ENDPOINTS is unset: run the etcd tests through \
             .ci/with-etcd cargo test --all-features -- --include-ignored"
        ),
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("/leadership-test/{test}-{n}-{}", unique::stamp())
}
