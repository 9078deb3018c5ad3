#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! Users import everything from the crate root. Four modules are public as such,
//! because their items belong together: [`manifold`] (composition into an agent),
//! [`testing`] (a stub manager for your tests), [`metrics`] (the metric names) and
//! `etcd` (feature `etcd`); the rest are private and re-exported.
//!
//! - `names`: [`UnitName`] (`"<service>/<number>"`), juju-style [`Tag`]s, and the
//!   service-name rules every manager applies.
//! - `protocol`: the manager messages ([`ClaimLeadership`] and its [`Grant`],
//!   [`BlockUntilLeadershipReleased`], [`ReleaseLeadership`], [`HandOverLeadership`],
//!   [`Leader`], [`WatchLeader`]), [`LeaseInfo`], [`LeaseError`], and [`Claimer`], what a
//!   tracker talks to.
//! - `block_answer`: [`BlockAnswer`], how every manager answers a block: now, or from a
//!   task that runs only while somebody waits for it.
//! - `manager`: [`ManagerActor`], the in-memory lease manager: leases keyed by service,
//!   expiries in an ordered index with one timer.
//! - `tracker`: [`TrackerActor`], its messages ([`ClaimLeader`], [`WaitLeader`],
//!   [`WaitMinion`], [`Resign`], [`StopTracker`]), the [`Tracker`] handle (tickets,
//!   `resign`, `hand_over`, `lead` scopes), its [`Status`], and the pure state machine
//!   that makes every decision.
//! - `ticket`: [`Ticket`], a write-once answer that many clones can await, and the
//!   [`Guarantee`] a `true` answer carries (term and end).
//! - `fence`: [`Fence`] and [`StaleTerm`], the fencing-token check a resource makes on
//!   every write.
//! - [`manifold`]: [`Manifold`](manifold::Manifold) starts a supervised tracker from an
//!   agent's named [`Resources`](manifold::Resources).
//! - [`metrics`]: the names of the metrics trackers and the in-memory manager record
//!   through the `metrics` facade (cargo feature `metrics`), and `describe()`.
//! - [`testing`]: [`StubManager`](testing::StubManager), a scriptable stub lease manager
//!   for message-level tests.
//! - `etcd` (public, cargo feature `etcd`): `etcd::EtcdManager`, a lease manager keeping
//!   the leases in a real etcd cluster, so units on different machines share them.

mod block_answer;
#[cfg(feature = "etcd")]
pub mod etcd;
mod fence;
mod latch;
mod manager;
pub mod manifold;
pub mod metrics;
mod names;
mod protocol;
pub mod testing;
mod ticket;
mod tracker;

pub use block_answer::BlockAnswer;
pub use fence::{Fence, StaleTerm};
pub use manager::{ManagerActor, StopManager};
pub use names::{validate_service, NameError, Tag, TagError, UnitName};
pub use protocol::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Grant, HandOverLeadership, Leader,
    LeaseError, LeaseInfo, ReleaseLeadership, WatchLeader,
};
pub use ticket::{Guarantee, Ticket, TicketFuture};
pub use tracker::{
    ClaimLeader, Resign, Status, StopTracker, Tracker, TrackerActor, TrackerError, WaitLeader,
    WaitMinion,
};
