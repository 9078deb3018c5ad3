//! The in-memory lease manager: [`ManagerActor`].
//!
//! # Design
//!
//! The manager keeps, per service, at most one lease (`holder`, `expires`, `term`, and
//! the senders of the blocks waiting for it to end) in a `HashMap`, plus an *expiry
//! index*: a `BTreeMap<(u64, u64), Name>` from each lease's deadline (and term) to its
//! service. The index is ordered by deadline, so the next lease to end is always its
//! first entry, and one timer armed for that entry (a small task that messages the
//! manager; `arm_timer` says why not actix's `run_later`) is all the manager needs to
//! wake every block at its lease's expiry (within about a millisecond of it in real
//! time, see `TIMER_LEAD`; exactly, on a paused test clock) — no timer per lease, no
//! polling interval. Every operation costs at most O(log n) in the number of leases, a
//! renewal O(1).
//!
//! Why it is shaped this way:
//!
//! - **Extensions are the hot path.** A leader renews its lease every `d`, so nearly all
//!   claims extend a lease the claimant already holds. An extension only moves the
//!   lease's `expires` later: one hash lookup, no allocation, and neither the index nor
//!   the timer is touched. Its index entry is then filed *earlier* than the lease ends,
//!   which is harmless — the timer fires at the filed deadline, finds the lease still
//!   live, and re-files the entry under the real deadline, moving the service name
//!   rather than copying it. So the index always holds one entry per lease, filed at or
//!   before the lease's expiry, and the timer (armed for the first entry) can only be
//!   early, never late. It is cancelled and re-armed only when a grant brings a
//!   deadline *earlier* than the armed one. The names in a renewal are the very strings
//!   validated when the lease was granted, so only its duration is checked again.
//! - **A lease is small and a renewal touches little memory, because a process may hold
//!   100 000 leases.** A short service name is stored inline in the map's key and in
//!   the index entry (module `name` says why and how). The holder is stored as its unit
//!   number alone: a unit of the service is `"<service>/<number>"`, so the number says
//!   everything the name does, and a renewal's name is checked against it without
//!   reading another string (with many leases, each such read is likely a cache miss).
//!   Instants are kept as nanoseconds since the manager started (module `ticks`), and
//!   the senders of pending blocks are boxed, so that a map entry is 64 bytes and what
//!   a renewal reads of it lies in one cache line (see `Lease`).
//! - **The timer may be late; the answers never are.** A message can be handled at
//!   (or after) a lease's expiry instant before the timer for it runs. So every
//!   handler treats a lease with `now >= expires` as absent and reaps it on the spot,
//!   waking its blocks, rather than trusting the timer to have done so. The timer is
//!   also allowed to be early (its lease was extended or released): it expires only
//!   what is due and re-arms.
//! - **Terms come from one manager-wide counter.** Every grant takes the next value of a
//!   single `u64`, so a new holder's term is strictly greater than every earlier term
//!   of its service (and of every other service) with O(1) memory and no per-service
//!   history that would have to outlive the lease. The term also makes each index key
//!   unique: one grant, one term, one lease, one index entry.
//! - **Blocks are plain oneshot channels.** A pending block is the receiving half of a
//!   `futures` oneshot whose sender sits in the lease; the handler answers with a
//!   [`BlockAnswer`] that runs as a small task of its own, so waiting blocks cost the
//!   actor nothing. Ending a lease sends on every sender; when the manager stops, the
//!   senders are dropped and every pending block answers
//!   [`LeaseError::BlockCancelled`]. A block whose asker has gone ends its task at once,
//!   and the lease drops its sender at the next amortised prune (module `waiters`), so
//!   a leader that renews forever does not collect the blocks of units that left.
//! - **Watching is push, one sender per service.** [`WatchLeader`] subscribes to a
//!   tokio watch per watched service (module `watchers`); each change of holder or
//!   term, and each end of a lease (release, or expiry from the same timer that wakes
//!   the blocks) publishes to it at that instant. Renewals do not publish, so the hot
//!   path is unchanged, and a service nobody watches pays one map check per change.
//! - **A replacement manager must not grant at once.** A manager that replaces a lost
//!   one has forgotten every lease, yet the units that held them still believe their
//!   guarantees. [`ManagerActor::recovering`] refuses every claim for a grace period
//!   (at least the longest lease anyone may still hold), as a lock service's new master
//!   does after fail-over.
//!
//! All timing uses tokio's clock, so `tokio::time::pause()` drives every timer in tests.

mod name;
mod ticks;
mod waiters;
mod watchers;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::mem;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, trace};

use self::name::Name;
use self::ticks::Epoch;
use self::waiters::Waiters;
use self::watchers::Watchers;
use crate::block_answer::BlockAnswer;
use crate::metrics;
use crate::names::parse_unit_number;
use crate::protocol::{
    check_claim, check_hand_over, check_service, check_unit, too_long,
    BlockUntilLeadershipReleased, ClaimLeadership, Grant, HandOverLeadership, Leader, LeaseError,
    LeaseInfo, ReleaseLeadership, WatchLeader,
};

/// An upper bound for a grace so long that the clock cannot represent its end:
/// about 30 years, the same "far future" tokio uses for such sleeps.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// How early the expiry timer is aimed: one tick of tokio's timer wheel.
///
/// tokio rounds a deadline up to the next 1 ms tick, and a runtime parked until that
/// tick sleeps whole milliseconds counted from the start of the current one, so a
/// timer aimed at the expiry itself wakes between 0 and 2 ms after it. Aimed one tick
/// early, it wakes at the runtime's first wake-up in the millisecond before the
/// expiry's tick: past the expiry, it expires the lease at once (the handlers decide by
/// `now`, never by the timer); not yet, it re-arms for the very next tick, and so on
/// until the expiry has passed (at most one extra wake-up per expiry). Either way the
/// wake-up comes within about 1 ms after the expiry, and never before it.
const TIMER_LEAD: Duration = Duration::from_millis(1);

/// The in-memory lease manager: one lease per service, held by one unit until it
/// expires or is released.
///
/// It handles [`ClaimLeadership`], [`BlockUntilLeadershipReleased`],
/// [`ReleaseLeadership`], [`HandOverLeadership`], [`Leader`] and [`WatchLeader`] as the
/// crate's contract describes, and [`StopManager`] to stop it. A lease is live while
/// `now < expires` on tokio's clock.
///
/// ```
/// use std::time::Duration;
/// use actix::Actor;
/// use leadership::{ClaimLeadership, Leader, ManagerActor};
///
/// # actix_rt::System::new().block_on(async {
/// let manager = ManagerActor::new().start();
/// let claim = ClaimLeadership {
///     service: "led-service".into(),
///     unit: "led-service/0".into(),
///     duration: Duration::from_secs(60),
/// };
/// manager.send(claim).await.unwrap().unwrap();
/// let lease = manager.send(Leader { service: "led-service".into() }).await.unwrap();
/// assert_eq!(lease.unwrap().holder, "led-service/0");
/// # });
/// ```
///
/// Dropping every `Addr` does not stop a manager that still has leases: it keeps
/// running until the last lease has ended, so pending blocks answer `Ok(())` at the
/// expiry as promised. Send [`StopManager`] to stop it at once.
///
/// [`WatchLeader`] receivers see every change of holder or term at the instant it
/// happens: a grant to a new holder, a hand-over, a release, and an expiry (published
/// by the expiry timer, at the expiry instant on a paused clock). Renewals are not
/// published: a watched value's `expires` is the lease's end when it last changed hands
/// or a receiver of the service last subscribed (a newcomer refreshes the shared value,
/// waking every receiver if it moved), and the lease may since have been extended; ask
/// [`Leader`] for the current one. When the manager stops, the watch senders are
/// dropped: receivers keep the last value and `changed()` fails.
#[derive(Debug, Default)]
pub struct ManagerActor {
    /// The lease of each service that has one. A lease whose `expires` has passed is
    /// dead even if it is still here: handlers reap it when they meet it.
    ///
    /// std's SipHash, kept on purpose: foldhash cut about 190 of a renewal's ~600
    /// instructions beyond a bare actix round trip but no measurable time (the lookup
    /// waits on memory), so the flooding resistance is not traded away.
    leases: HashMap<Name, Lease>,
    /// `(filed, term) → service`: one entry per lease in `leases`, ordered by deadline.
    /// An entry may be filed earlier than its lease now expires (it was extended since):
    /// the timer re-files it when it comes due.
    expiries: BTreeMap<(u64, u64), Name>,
    /// What the ticks of `leases` and `expiries` count from: the actor's start.
    epoch: Epoch,
    /// The term of the latest grant, manager-wide.
    last_term: u64,
    /// The one expiry timer: the deadline (tick) it was armed for, and its task. While
    /// `expiries` is not empty this is armed for its first deadline or earlier.
    timer: Option<(u64, JoinHandle<()>)>,
    /// How long after starting the manager refuses every claim.
    grace: Duration,
    /// While in grace: the instant the grace ends.
    grace_until: Option<Instant>,
    /// Blocks received during the grace; they answer when it ends.
    grace_waiters: Waiters,
    /// The watch senders of the watched services.
    watchers: Watchers,
    /// How many block senders are held, over every lease and the grace (abandoned ones
    /// not yet pruned included): the `leadership_blocked` gauge.
    blocked: usize,
}

/// One service's lease: 40 bytes, so that with its 24-byte key a map entry is 64.
///
/// Instants are ticks of the manager's [`Epoch`] (8 bytes, not 16), and the senders of
/// pending blocks are boxed (nearly no lease has any). A renewal looks up one entry
/// among possibly 100 000, a likely cache miss, so what it touches should be one line.
/// The table's entries start 16 bytes into a cache line (a large allocation starts 16
/// bytes past a page boundary, and entries are laid out from there in 64-byte steps),
/// so an entry's first 48 bytes are one line: `repr(C)` puts the fields a renewal reads
/// and writes (`expires`, `term`, `holder`) there, right after the key. A test pins it.
#[derive(Debug)]
#[repr(C)]
struct Lease {
    /// When the lease ends (a tick): it is live while `now < expires`.
    expires: u64,
    term: u64,
    /// The holding unit's number: the holder is `"<service>/<holder>"`.
    holder: u32,
    /// The deadline (tick) of this lease's entry in the expiry index, `<= expires`.
    filed: u64,
    /// Senders of the pending blocks; sending `()` answers a block with `Ok(())`.
    waiters: Waiters,
}

impl Lease {
    /// What [`Leader`] and [`WatchLeader`] report for this lease of `service`.
    fn info(&self, service: impl fmt::Display, epoch: Epoch) -> LeaseInfo {
        LeaseInfo {
            holder: UnitOf(service, self.holder).to_string(),
            expires: epoch.instant(self.expires),
            term: self.term,
        }
    }
}

/// The number of `unit` if it names a unit of `service`; `None` otherwise. Numbers are
/// canonical (no leading zeros), so two names of one service are equal exactly when
/// their numbers are.
fn unit_number(service: &str, unit: &str) -> Option<u32> {
    unit.strip_prefix(service)?
        .strip_prefix('/')
        .and_then(parse_unit_number)
}

/// Displays a holder's unit name, `"<service>/<number>"`.
struct UnitOf<S>(S, u32);

impl<S: fmt::Display> fmt::Display for UnitOf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

/// Extends a live `lease` to end no earlier than `wanted`.
///
/// An extension never shortens a lease, keeps its term, and touches neither the expiry
/// index nor the timer: the lease's index entry, now filed earlier than the lease
/// ends, is re-filed by the timer when it comes due. So renewing costs one hash lookup
/// and no allocation.
fn extend(lease: &mut Lease, wanted: u64) {
    if wanted > lease.expires {
        lease.expires = wanted;
    }
    trace!(unit = lease.holder, term = lease.term, "lease extended");
}

/// Takes the term of the next grant (or hand-over) from the manager-wide `last_term`.
///
/// A function of the field, not a method, so that a handler can take a term while it
/// holds a lease borrowed from the map.
fn next_term(last_term: &mut u64) -> u64 {
    *last_term = last_term.saturating_add(1);
    *last_term
}

/// Arms a timer that ends the recovery grace at `until`.
///
/// Should the timer ever run before `until` (tokio promises it will not), it arms
/// another rather than leave the grace without an end.
fn arm_grace_timer(until: Instant, ctx: &mut Context<ManagerActor>) {
    let delay = until.saturating_duration_since(Instant::now());
    ctx.run_later(delay, move |manager, ctx| {
        if manager.in_grace(Instant::now()) {
            arm_grace_timer(until, ctx);
        }
    });
}

impl ManagerActor {
    /// A manager with no leases that grants claims at once.
    pub fn new() -> ManagerActor {
        ManagerActor::default()
    }

    /// A manager that replaces a lost one and so has forgotten every lease.
    ///
    /// Granting at once could hand leadership to a second unit while the first still
    /// holds a valid guarantee from the lost manager. So until `grace` has passed since
    /// the actor *started* (on tokio's clock), every valid claim answers
    /// [`LeaseError::ClaimDenied`] and every block stays pending until the grace ends
    /// (then answers `Ok(())`: no lease can exist yet). Invalid input is still
    /// [`LeaseError::Invalid`]. Choose `grace` at least as long as the longest lease a
    /// unit may have been granted. `recovering(Duration::ZERO)` is [`ManagerActor::new`].
    ///
    /// Its terms continue above the lost manager's: a [`Fence`](crate::Fence) that
    /// admitted the old leader's term must admit the new leader's. The lost manager's
    /// last term is unknown, so a recovering manager counts its terms from the system
    /// clock, in nanoseconds since the Unix epoch. Terms are handed out one per grant, a
    /// grant takes far more than a nanosecond, and the replacement starts after the
    /// manager it replaces did, so its first term exceeds every term the lost one could
    /// have issued — provided the system clock is not stepped back between the two
    /// starts. (The term is the only use of the system clock: leases are timed on
    /// tokio's clock.) If you know a floor, e.g. a term you persisted, add it with
    /// [`with_term_floor`](ManagerActor::with_term_floor).
    pub fn recovering(grace: Duration) -> ManagerActor {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 2)
            });
        ManagerActor {
            grace,
            last_term: clock,
            ..ManagerActor::default()
        }
    }

    /// Makes every term this manager grants greater than `floor` (and than the terms it
    /// would grant anyway), e.g. the greatest term a lost manager is known to have
    /// issued. Terms never come near `u64::MAX` in practice; a floor there saturates.
    pub fn with_term_floor(mut self, floor: u64) -> ManagerActor {
        self.last_term = self.last_term.max(floor);
        self
    }

    /// Whether the manager is still in its start-up grace at `now`; ends the grace,
    /// answering its blocks, if it is over.
    fn in_grace(&mut self, now: Instant) -> bool {
        match self.grace_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.grace_until = None;
                debug!(blocks = self.grace_waiters.len(), "recovery grace ended");
                let waiters = mem::take(&mut self.grace_waiters);
                self.woke(waiters);
                false
            }
            None => false,
        }
    }

    /// Removes the lease of `service` if it has expired at `now`, waking its blocks.
    ///
    /// The timer may not have run yet for a lease that ended at (or just before) `now`;
    /// this makes every handler see such a lease as absent.
    fn reap_if_expired(&mut self, service: &str, now: Instant) {
        let now = self.epoch.ticks(now);
        let expired = self
            .leases
            .get(service.as_bytes())
            .is_some_and(|lease| now >= lease.expires);
        if expired {
            self.reap(service);
        }
    }

    /// The live lease of `service` at `now`, as [`Leader`] reports it; reaps an expired
    /// one. One lookup when the lease is live or absent.
    fn live_info(&mut self, service: &str, now: Instant) -> Option<LeaseInfo> {
        let now = self.epoch.ticks(now);
        match self.leases.get(service.as_bytes()) {
            Some(lease) if now < lease.expires => Some(lease.info(service, self.epoch)),
            Some(_) => {
                self.reap(service);
                None
            }
            None => None,
        }
    }

    /// Removes the (expired) lease of `service`, waking its blocks.
    fn reap(&mut self, service: &str) {
        if let Some(lease) = self.leases.remove(service.as_bytes()) {
            self.expiries.remove(&(lease.filed, lease.term));
            self.ended(service, lease, "lease expired");
            self.gauges();
        }
    }

    /// A lease of `service`, already out of the lease map and the index, has ended
    /// (`how`: expired or released): its blocks answer `Ok(())`, its watchers see
    /// `None`. The caller records the gauges (once, when the timer ends many).
    fn ended(&mut self, service: &str, lease: Lease, how: &'static str) {
        let unit = UnitOf(service, lease.holder);
        debug!(%service, %unit, term = lease.term, "{how}");
        self.blocked -= lease.waiters.wake();
        self.watchers.publish(service.as_bytes(), || None);
    }

    /// Records how many leases and blocks the manager holds.
    fn gauges(&self) {
        metrics::leases(self.leases.len());
        metrics::blocked(self.blocked);
    }

    /// `waiters` were taken out to be answered: answers them and counts them out.
    fn woke(&mut self, waiters: Waiters) {
        self.blocked -= waiters.wake();
        metrics::blocked(self.blocked);
    }

    /// `service`'s lease changed hands (a grant to a new holder, a hand-over): its
    /// watchers see the new holder and term.
    fn changed_hands(&mut self, service: &str) {
        if let Some(lease) = self.leases.get(service.as_bytes()) {
            let epoch = self.epoch;
            self.watchers
                .publish(service.as_bytes(), || Some(lease.info(service, epoch)));
        }
    }

    /// Makes sure the timer fires no later than `deadline`.
    ///
    /// An armed timer at or before `deadline` is left alone (when it fires it re-arms
    /// for whatever is then earliest); a later one is replaced. The timer is aimed
    /// [`TIMER_LEAD`] early, or at `deadline` itself once that is past.
    ///
    /// The timer is a task of its own that sends the manager [`ExpiryDue`], not an
    /// actix `run_later`: an actix actor polls every future it holds each time it is
    /// woken, so a timer held by the actor would be polled (and its waker registered
    /// again) for every message, renewals included — about a fifth of a renewal's
    /// instructions. The task holds an `Addr`, so the manager keeps running until its
    /// last lease has ended even when nobody else holds one.
    fn arm_timer(&mut self, deadline: u64, ctx: &mut Context<Self>) {
        if let Some((armed, task)) = &self.timer {
            if *armed <= deadline {
                return;
            }
            task.abort();
        }
        let ticks = deadline;
        let deadline = self.epoch.instant(ticks);
        let now = Instant::now();
        // Within the lead, aim just past `now`: tokio rounds that up to the next tick.
        // Never `now` itself, which on a paused, tick-aligned clock would fire in the
        // current tick again and again without letting time advance.
        let aim = deadline
            .checked_sub(TIMER_LEAD)
            .filter(|&early| early > now)
            .unwrap_or_else(|| deadline.min(now + Duration::from_nanos(1)));
        let manager = ctx.address();
        let task = actix_rt::spawn(async move {
            tokio::time::sleep_until(aim).await;
            manager.do_send(ExpiryDue);
        });
        self.timer = Some((ticks, task));
    }

    /// The timer fired: expire every lease that is due, re-file the entries of leases
    /// extended since they were filed, then re-arm for the earliest deadline left.
    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        // Its task has ended (or is stale, if a re-arm raced its message: then it
        // must not fire again).
        if let Some((_, task)) = self.timer.take() {
            task.abort();
        }
        let now = self.epoch.ticks(Instant::now());
        let mut any_ended = false;
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, service) = entry.remove_entry();
            let Some(lease) = self.leases.get_mut(service.as_bytes()) else {
                debug_assert!(false, "an index entry without a lease: {service:?}");
                continue;
            };
            if lease.expires > now {
                // Extended since it was filed: file it again under its real deadline,
                // moving the name. That deadline is in the future, so this pass does
                // not meet the entry again.
                lease.filed = lease.expires;
                self.expiries.insert((lease.filed, lease.term), service);
            } else if let Some(lease) = self.leases.remove(service.as_bytes()) {
                self.ended(service.as_str(), lease, "lease expired");
                any_ended = true;
            }
        }
        if any_ended {
            self.gauges();
        }
        if let Some((&(deadline, _), _)) = self.expiries.first_key_value() {
            self.arm_timer(deadline, ctx);
        }
    }
}

impl Actor for ManagerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Counted from here, on the clock of the runtime the actor runs on (there are
        // no leases yet to convert).
        self.epoch = Epoch::default();
        if self.grace.is_zero() {
            return;
        }
        let now = Instant::now();
        let grace = self.grace.min(FAR_FUTURE);
        self.grace_until = Some(now + grace);
        debug!(
            ?grace,
            "lease manager recovering: refusing claims during the grace"
        );
        arm_grace_timer(now + grace, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Dropping the senders is what answers every pending block `BlockCancelled`
        // (see the block handler); do it now rather than whenever the actor is dropped.
        debug!(
            leases = self.leases.len(),
            blocks = self.blocked,
            "lease manager stopped"
        );
        self.leases.clear();
        self.expiries.clear();
        if let Some((_, task)) = self.timer.take() {
            task.abort();
        }
        self.grace_waiters = Waiters::default();
        // Receivers keep the last value and see the channel closed: the manager no
        // longer knows who leads, which is not the same as nobody leading.
        self.watchers.clear();
        self.blocked = 0;
        metrics::leases(0);
        metrics::blocked(0);
    }
}

impl Handler<ClaimLeadership> for ManagerActor {
    type Result = Result<Grant, LeaseError>;

    fn handle(&mut self, msg: ClaimLeadership, ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let now_ticks = self.epoch.ticks(now);
        // Fast path, the common case: the live holder renewing. The service name was
        // validated when this lease was granted and the unit matches the holder's
        // validated name, so only the duration is left to check. Anything this path
        // does not accept goes through the full validation below, which gives the error.
        if let Some(lease) = self.leases.get_mut(msg.service.as_bytes()) {
            if now_ticks < lease.expires
                && unit_number(&msg.service, &msg.unit) == Some(lease.holder)
                && !msg.duration.is_zero()
            {
                if let Some(wanted) = Epoch::after(now_ticks, msg.duration) {
                    extend(lease, wanted);
                    return Ok(Grant::new(lease.term));
                }
            }
        }
        let number = check_claim(&msg, now)?.number();
        // Later than a tick can say (about 584 years after the manager started).
        let wanted = Epoch::after(now_ticks, msg.duration).ok_or_else(|| too_long(msg.duration))?;
        if self.in_grace(now) {
            debug!(service = %msg.service, unit = %msg.unit, "claim denied: recovery grace");
            return Err(LeaseError::ClaimDenied);
        }
        let term;
        match self.leases.get_mut(msg.service.as_bytes()) {
            Some(lease) if now_ticks < lease.expires => {
                // The holder's own valid renewal took the fast path above, so a live
                // lease here is another unit's.
                debug_assert_ne!(lease.holder, number, "a renewal missed the fast path");
                let holder = UnitOf(&msg.service, lease.holder);
                trace!(unit = %msg.unit, %holder, "claim denied: held by another unit");
                return Err(LeaseError::ClaimDenied);
            }
            Some(lease) => {
                // Expired, not yet reaped: end it (its blocks answer) and grant anew,
                // reusing the entry and its name.
                let name = self
                    .expiries
                    .remove(&(lease.filed, lease.term))
                    .unwrap_or_else(|| Name::new(&msg.service));
                let old = UnitOf(&name, lease.holder);
                debug!(service = %name, unit = %old, term = lease.term, "lease expired");
                let waiters = mem::take(&mut lease.waiters);
                term = next_term(&mut self.last_term);
                lease.holder = number;
                lease.expires = wanted;
                lease.filed = wanted;
                lease.term = term;
                debug!(service = %name, unit = %msg.unit, term, "lease granted");
                self.expiries.insert((wanted, term), name);
                self.woke(waiters);
            }
            None => {
                term = next_term(&mut self.last_term);
                debug!(service = %msg.service, unit = %msg.unit, term, "lease granted");
                let name = Name::new(&msg.service);
                self.expiries.insert((wanted, term), name.clone());
                self.leases.insert(
                    name,
                    Lease {
                        expires: wanted,
                        term,
                        holder: number,
                        filed: wanted,
                        waiters: Waiters::default(),
                    },
                );
                metrics::leases(self.leases.len());
            }
        }
        self.changed_hands(&msg.service);
        self.arm_timer(wanted, ctx);
        Ok(Grant::new(term))
    }
}

impl Handler<BlockUntilLeadershipReleased> for ManagerActor {
    /// [`BlockAnswer`], not actix's `Response`: a free service is answered at once; a
    /// pending block is answered by a task of its own that needs no access to the actor
    /// (the lease's sender is its only link) and that ends as soon as its asker is gone.
    type Result = BlockAnswer;

    fn handle(&mut self, msg: BlockUntilLeadershipReleased, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_service(&msg.service) {
            return BlockAnswer::now(Err(e));
        }
        let now = Instant::now();
        let waiters = if self.in_grace(now) {
            &mut self.grace_waiters
        } else {
            self.reap_if_expired(&msg.service, now);
            match self.leases.get_mut(msg.service.as_bytes()) {
                Some(lease) => &mut lease.waiters,
                None => return BlockAnswer::now(Ok(())),
            }
        };
        let (tx, rx) = oneshot::channel();
        let pruned = waiters.push(tx);
        self.blocked = self.blocked + 1 - pruned;
        metrics::blocked(self.blocked);
        // The sender is dropped unanswered only when the manager stops.
        BlockAnswer::woken(rx)
    }
}

impl Handler<ReleaseLeadership> for ManagerActor {
    type Result = Result<(), LeaseError>;

    fn handle(&mut self, msg: ReleaseLeadership, _: &mut Context<Self>) -> Self::Result {
        let unit = check_unit(&msg.service, &msg.unit)?;
        self.reap_if_expired(&msg.service, Instant::now());
        let held = self
            .leases
            .get(msg.service.as_bytes())
            .is_some_and(|lease| lease.holder == unit.number());
        if !held {
            return Err(LeaseError::NotHeld { unit: msg.unit });
        }
        if let Some(lease) = self.leases.remove(msg.service.as_bytes()) {
            // The timer may be armed for this deadline; it will fire early and re-arm.
            self.expiries.remove(&(lease.filed, lease.term));
            self.ended(&msg.service, lease, "lease released");
            self.gauges();
        }
        Ok(())
    }
}

impl Handler<HandOverLeadership> for ManagerActor {
    type Result = Result<(), LeaseError>;

    /// Gives the lease to the successor under the next term, keeping its expiry, and
    /// wakes the blocks: the successor's tracker, blocked as a minion, claims at once
    /// and extends the lease it now holds.
    fn handle(&mut self, msg: HandOverLeadership, _: &mut Context<Self>) -> Self::Result {
        let successor = check_hand_over(&msg)?;
        let unit = check_unit(&msg.service, &msg.unit)?;
        self.reap_if_expired(&msg.service, Instant::now());
        let Some(lease) = self
            .leases
            .get_mut(msg.service.as_bytes())
            .filter(|lease| lease.holder == unit.number())
        else {
            return Err(LeaseError::NotHeld { unit: msg.unit });
        };
        // The index entry is keyed by the term: move it to the new one.
        let name = self
            .expiries
            .remove(&(lease.filed, lease.term))
            .unwrap_or_else(|| Name::new(&msg.service));
        let term = next_term(&mut self.last_term);
        debug!(service = %msg.service, unit = %msg.unit, successor = %msg.successor,
               from = lease.term, term, "lease handed over");
        lease.holder = successor.number();
        lease.term = term;
        self.expiries.insert((lease.filed, term), name);
        let waiters = mem::take(&mut lease.waiters);
        self.woke(waiters);
        self.changed_hands(&msg.service);
        Ok(())
    }
}

impl Handler<Leader> for ManagerActor {
    type Result = Option<LeaseInfo>;

    fn handle(&mut self, msg: Leader, _: &mut Context<Self>) -> Self::Result {
        // An invalid service can never have a lease, so it needs no check of its own.
        self.live_info(&msg.service, Instant::now())
    }
}

impl Handler<WatchLeader> for ManagerActor {
    type Result = Result<watch::Receiver<Option<LeaseInfo>>, LeaseError>;

    /// Subscribes to the service's watch, holding the live lease now.
    fn handle(&mut self, msg: WatchLeader, _: &mut Context<Self>) -> Self::Result {
        check_service(&msg.service)?;
        // An expired lease the timer has not reaped yet must not be shown as live.
        let current = self.live_info(&msg.service, Instant::now());
        Ok(self.watchers.subscribe(&msg.service, current))
    }
}

/// The expiry timer's task to the manager: the deadline it was armed for has come.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct ExpiryDue;

impl Handler<ExpiryDue> for ManagerActor {
    type Result = ();

    fn handle(&mut self, _: ExpiryDue, ctx: &mut Context<Self>) {
        self.on_timer(ctx);
    }
}

/// Stops a [`ManagerActor`] at once, as if it were lost: it forgets every lease,
/// pending blocks answer [`LeaseError::BlockCancelled`], and later messages fail with a
/// mailbox error. Useful to test how trackers cope with a vanished manager.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[rtype(result = "()")]
pub struct StopManager;

impl Handler<StopManager> for ManagerActor {
    type Result = ();

    fn handle(&mut self, _: StopManager, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
