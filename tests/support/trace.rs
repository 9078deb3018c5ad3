//! The event trace of one simulated run: what happened at which virtual instant.
//!
//! Events are stored as plain data and only formatted when a run fails (or is replayed),
//! so tracing costs a run almost nothing.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use leadership::LeaseError;
use tokio::time::Instant;

use super::fault::Fate;
use super::secs::Secs;

/// Which manager request a proxy relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `ClaimLeadership`.
    Claim,
    /// `BlockUntilLeadershipReleased`.
    Block,
    /// `ReleaseLeadership`.
    Release,
    /// `HandOverLeadership`.
    HandOver,
}

/// Which ticket a probe asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `ClaimLeader`.
    ClaimLeader,
    /// `WaitLeader`.
    WaitLeader,
    /// `WaitMinion`.
    WaitMinion,
}

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A tracker (incarnation `life` of slot `slot`) started.
    TrackerStarted {
        slot: usize,
        life: u32,
        supervised: bool,
    },
    /// A tracker stopped for good, with its report.
    TrackerStopped {
        slot: usize,
        life: u32,
        report: String,
    },
    /// The driver killed a tracker.
    Killed { slot: usize, life: u32 },
    /// The process froze this long; everything due meanwhile runs late.
    Stalled { by: Duration },
    /// The driver stopped the manager and started another.
    ManagerReplaced { grace: Duration },
    /// A proxy received a request and decided its fate.
    Relayed {
        slot: usize,
        request: Request,
        fate: Fate,
    },
    /// A proxy answered a request.
    Answered {
        slot: usize,
        request: Request,
        answer: Result<(), LeaseError>,
    },
    /// The manager granted slot `slot`'s claim: the lease runs until `until` at least.
    Granted { slot: usize, until: Duration },
    /// The manager accepted slot `slot`'s release (`to: None`) or hand-over to `to`.
    Gone { slot: usize, to: Option<usize> },
    /// A proxy delivered a duplicate of a request; its answer went nowhere.
    Duplicated {
        slot: usize,
        request: Request,
        answer: Result<(), LeaseError>,
    },
    /// A probe's ticket resolved.
    Ticket {
        slot: usize,
        life: u32,
        ask: Ask,
        asked: Duration,
        answer: bool,
    },
    /// Faults stopped: hung requests fail, delays end, proxies forward transparently.
    Healed,
    /// The hand-over phase begins: proxies delay messages by up to `cap`.
    Delaying { cap: Duration },
    /// Every tracker is alive and the network healed: the liveness window opens.
    Stable { deadline: Duration },
    /// The first `true` ClaimLeader of the liveness window.
    Leader { slot: usize, life: u32 },
    /// The driver asked a tracker to resign (`to: None`) or hand over to `to`.
    Leaving {
        slot: usize,
        life: u32,
        to: Option<usize>,
    },
    /// A resign or hand-over returned, with its report.
    Left {
        slot: usize,
        life: u32,
        report: String,
    },
    /// The driver dropped its handle of a tracker (the watcher drops the last one).
    HandlesDropped { slot: usize, life: u32 },
    /// A lead scope's work started.
    ScopeStarted { slot: usize, life: u32 },
    /// A lead scope's work completed (`finished`) or was cancelled.
    ScopeEnded {
        slot: usize,
        life: u32,
        finished: bool,
    },
}

/// One event: virtual time since the run started, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// What happened.
    pub what: What,
}

/// A run's trace, shared by the driver, the proxies and the probe tasks.
#[derive(Debug, Clone)]
pub struct Trace {
    start: Instant,
    events: Rc<RefCell<Vec<Event>>>,
}

impl Trace {
    /// An empty trace whose instants count from `start`.
    pub fn new(start: Instant) -> Trace {
        Trace {
            start,
            events: Rc::default(),
        }
    }

    /// Virtual time from the start of the run to `at`.
    pub fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    /// Records `what` as happening now.
    pub fn log(&self, what: What) {
        let at = self.offset(Instant::now());
        self.events.borrow_mut().push(Event { at, what });
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>12}] ", Secs(self.at).to_string())?;
        match &self.what {
            What::TrackerStarted {
                slot,
                life,
                supervised,
            } => {
                let kind = if *supervised { "supervised" } else { "plain" };
                write!(f, "u{slot}#{life} started ({kind})")
            }
            What::TrackerStopped { slot, life, report } => {
                write!(f, "u{slot}#{life} stopped: {report}")
            }
            What::Killed { slot, life } => write!(f, "u{slot}#{life} killed"),
            What::Stalled { by } => write!(f, "STALL: the process freezes for {by:?}"),
            What::ManagerReplaced { grace } => {
                write!(f, "MANAGER replaced (new one's grace {grace:?})")
            }
            What::Relayed {
                slot,
                request,
                fate,
            } => write!(f, "p{slot} {request:?}: {fate}"),
            What::Answered {
                slot,
                request,
                answer,
            } => {
                write!(f, "p{slot} {request:?} answered {answer:?}")
            }
            What::Granted { slot, until } => {
                write!(f, "MANAGER grants u{slot} a lease until {}", Secs(*until))
            }
            What::Gone { slot, to: None } => write!(f, "MANAGER released u{slot}'s lease"),
            What::Gone { slot, to: Some(to) } => {
                write!(f, "MANAGER handed u{slot}'s lease over to u{to}")
            }
            What::Leaving {
                slot,
                life,
                to: None,
            } => write!(f, "u{slot}#{life} resigns"),
            What::Leaving {
                slot,
                life,
                to: Some(to),
            } => write!(f, "u{slot}#{life} hands over to u{to}"),
            What::Left { slot, life, report } => {
                write!(f, "u{slot}#{life} resign/hand-over returned: {report}")
            }
            What::HandlesDropped { slot, life } => {
                write!(f, "u{slot}#{life}: every handle dropped")
            }
            What::ScopeStarted { slot, life } => write!(f, "u{slot}#{life} lead scope starts"),
            What::ScopeEnded {
                slot,
                life,
                finished,
            } => {
                let how = if *finished {
                    "finishes"
                } else {
                    "is cancelled"
                };
                write!(f, "u{slot}#{life} lead scope {how}")
            }
            What::Duplicated {
                slot,
                request,
                answer,
            } => {
                write!(
                    f,
                    "p{slot} {request:?} duplicate delivered, answered {answer:?} (dropped)"
                )
            }
            What::Ticket {
                slot,
                life,
                ask,
                asked,
                answer,
            } => write!(
                f,
                "u{slot}#{life} {ask:?} asked at {} -> {answer}",
                Secs(*asked)
            ),
            What::Healed => write!(f, "HEALED: no more faults"),
            What::Delaying { cap } => {
                write!(
                    f,
                    "HAND-OVER PHASE: proxies delay messages by up to {cap:?}"
                )
            }
            What::Stable { deadline } => {
                write!(f, "STABLE: a leader is due by {}", Secs(*deadline))
            }
            What::Leader { slot, life } => write!(f, "LEADER u{slot}#{life}"),
        }
    }
}
