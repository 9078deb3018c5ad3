//! Support code for the deterministic simulation (`tests/simulation.rs`); the etcd
//! fault run (`tests/etcd_faults.rs`) reuses its RNG, `Interval`, the overlap check
//! and `Secs`.
//!
//! - [`rng`]: SplitMix64, the seeded random stream.
//! - [`trace`]: the event trace of a run, printed when a seed fails.
//! - [`proxy`]: [`FaultProxy`](proxy::FaultProxy), the fault-injecting network between
//!   each tracker and the manager.
//! - [`sim`]: the scenario (random per seed, or scripted), the driver, and what a run
//!   records.
//! - [`check`]: the safety and liveness checker.
//! - [`paused`]: an actix `System` whose clock starts paused (shared with other tests).

pub mod check;
pub mod fault;
pub mod overlap;
#[path = "../paused/mod.rs"]
pub mod paused;
pub mod proxy;
pub mod rng;
pub mod secs;
pub mod sim;
pub mod trace;
