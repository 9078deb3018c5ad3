//! Support code for the deterministic simulation (`tests/simulation.rs`). The etcd
//! fault run (`tests/etcd_faults/`) includes, by `#[path]`, only [`rng`], [`fault`],
//! [`overlap`], [`liveness`] and [`secs`], which therefore use nothing else from here.
//!
//! - [`rng`]: SplitMix64, the seeded random stream.
//! - [`fault`]: what a fault does to one request ([`Fate`](fault::Fate), played by
//!   [`play`](fault::play)), how often each strikes, and the network's heal.
//! - [`overlap`]: the safety check both runs share: no two units' `true` tickets overlap.
//! - [`liveness`]: the liveness verdict both runs share: a leader by the deadline.
//! - [`secs`]: how instants are printed.
//! - [`trace`]: the event trace of a run, printed when a seed fails.
//! - [`proxy`]: [`FaultProxy`](proxy::FaultProxy), the fault-injecting network between
//!   each tracker and the manager.
//! - [`sim`]: the scenario (random per seed, or scripted), the driver, and what a run
//!   records.
//! - [`check`]: the safety and liveness checker.
//! - [`paused`]: an actix `System` whose clock starts paused (shared with other tests).

pub mod check;
pub mod fault;
pub mod liveness;
pub mod overlap;
#[path = "../paused/mod.rs"]
pub mod paused;
pub mod proxy;
pub mod rng;
pub mod secs;
pub mod sim;
pub mod trace;
