//! What one seed records: the intervals its `true` tickets prove, etcd's view of the
//! key, the `WaitMinion` checks, and the outcome the checker reads.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use leadership::Ticket;
use tokio::time::Instant;

/// The one question whose `true` answers the fault run records (printed as its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLeader;

/// A `true` `ClaimLeader` ticket: its unit certainly held leadership over
/// `[r, s + d]`, where `s` is when it was sent (`asked`) and `r` when the task awaiting
/// it saw it resolve (`start`); see the crate doc for why.
pub type Interval = crate::overlap::Interval<ClaimLeader>;

/// One `Leader` query: sent at `q0`, answered at `q1` (offsets), and what it saw.
#[derive(Debug, Clone)]
pub struct Sample {
    pub q0: Duration,
    pub q1: Duration,
    /// `(holder, term)`, or `None`: no live key (or etcd could not be asked).
    pub seen: Option<(String, u64)>,
}

/// A `WaitMinion` asked of a unit right after its `ClaimLeader` said `true`.
#[derive(Debug, Clone)]
pub struct MinionCheck {
    pub slot: usize,
    pub life: u32,
    pub asked: Duration,
    pub resolved: Duration,
    pub answer: bool,
}

/// A `WaitMinion` ticket still pending, for the stale-leader check.
pub struct PendingMinion {
    pub slot: usize,
    pub life: u32,
    pub asked: Instant,
    pub ticket: Ticket,
}

/// A unit that still counted itself leader (its `WaitMinion` unresolved at
/// `checked`) after etcd had shown another holder (read within `[q0, q1]`).
#[derive(Debug, Clone)]
pub struct Stale {
    pub slot: usize,
    pub life: u32,
    pub asked: Duration,
    pub q0: Duration,
    pub q1: Duration,
    pub checked: Duration,
    pub holder: String,
}

/// What the probes record, shared with their tasks.
#[derive(Clone, Default)]
pub struct Records {
    pub intervals: Rc<RefCell<Vec<Interval>>>,
    pub minion: Rc<RefCell<Vec<MinionCheck>>>,
    pub pending_minions: Rc<RefCell<Vec<PendingMinion>>>,
    pub stale: Rc<RefCell<Vec<Stale>>>,
    pub samples: Rc<RefCell<Vec<Sample>>>,
    /// `true` tickets that resolved too late to prove anything (`r ≥ s + d`).
    pub late_trues: Rc<Cell<u32>>,
    /// When the liveness window opened, and the first `true` after it.
    pub stable_at: Rc<Cell<Option<Instant>>>,
    pub leader_at: Rc<Cell<Option<Instant>>>,
}

/// The outcome of one seed.
pub struct Outcome {
    pub seed: u64,
    pub d: Duration,
    pub intervals: Vec<Interval>,
    pub minion: Vec<MinionCheck>,
    pub stale: Vec<Stale>,
    pub samples: Vec<Sample>,
    pub late_trues: u32,
    pub stable_at: Duration,
    pub leader_at: Option<Duration>,
    pub deadline: Duration,
    pub log: Vec<(Duration, String)>,
    /// Kills, etcd freezes, connections stopped, requests that met a proxy fault.
    pub kills: u32,
    /// Whether the last fault killed the leader for good.
    pub leader_gone: bool,
    pub freezes: u32,
    pub stops: u32,
    pub faulted: u32,
}
