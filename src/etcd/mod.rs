//! A lease manager backed by a real etcd server (cargo feature `etcd`).
//!
//! [`EtcdManager`] handles the same messages as the in-memory
//! [`ManagerActor`](crate::ManagerActor), so [`Claimer::new`](crate::Claimer::new) works
//! unchanged and a tracker cannot tell the two apart. Several processes — units of one
//! service on different machines — each connect their own `EtcdManager` to the same etcd
//! cluster with the same [`EtcdConfig::prefix`]; etcd decides who leads. It also runs
//! [`FencedTxn`]: etcd writes that commit only under the current leader's term.
//!
//! # How a lease and its term are stored
//!
//! Two keys per service:
//!
//! - the **holder key** `<prefix>/<service>` holds the holder's unit name and is bound to
//!   an etcd lease whose TTL is the claimed duration rounded **up** to whole seconds; etcd
//!   deletes it when the lease expires;
//! - the **term key** `<prefix>/<service>/term` is written in the same transaction as every
//!   change of holder (a new grant, a grant after a lapse, a hand-over) and never
//!   otherwise; it has no lease and outlives the holdings. The **term** of a holding is the
//!   term key's mod revision, i.e. the etcd revision of the transaction that began it.
//!
//! etcd revisions strictly increase with every write, so terms strictly increase per
//! service on every change of holder, however transactions of several managers
//! interleave: a transaction that commits late commits at a later revision. No
//! read-increment-write race exists to guard against. An extension never writes the term
//! key, so it keeps the term; a hand-over is a put that keeps the holder key's create
//! revision, but writes the term key, so it starts a new term. Terms are at least 2 (the
//! first revision with data). A holder key written without its term key (by version 0.1
//! of this crate, whose term was the key's create revision) reports its create revision,
//! which is never smaller; its holder's next claim starts a term in place.
//! Terms last as long as etcd's history: a cluster wiped or restored from an older backup
//! starts again from a smaller revision (restore with the revision bumped past the old).
//!
//! - [`ClaimLeadership`]: one read of both keys (one revision), then, decided by a pure
//!   function: key absent → a new lease, and both keys written in a transaction guarded
//!   on the holder key being absent. Key held by the same unit → extended under its term,
//!   never shortened: left alone if the lease already covers the duration, otherwise
//!   refreshed with one keep-alive when its granted TTL covers the claim (a keep-alive
//!   resets a lease to its granted TTL) or moved to a new, longer lease in a transaction
//!   guarded on the key's mod revision; a lease etcd no longer knows (expired, not yet
//!   reaped) is a lapse: a new term in place. Every `Ok` follows a transaction etcd
//!   committed. Key held by another unit → [`LeaseError::ClaimDenied`].
//!   A holder's **renewal** skips the read and the TTL query: the manager remembers
//!   what its last claim for the service established (lease, granted TTL, both keys' mod
//!   revisions) and sends a keep-alive (on the lease's stream, kept open between
//!   renewals) and a transaction guarded on both mod revisions together; `Ok` only when
//!   both succeed, anything else continues as above from the keys the failed
//!   transaction read (`docs/etcd.md`, *Renewals*, argues why).
//! - [`BlockUntilLeadershipReleased`]: answers at once when the key is absent; otherwise a
//!   watch from the revision after the read waits for the key's deletion (release,
//!   expiry) or a put naming another unit (a hand-over): push, no polling, and no change
//!   between the read and the watch is missed. A watch that breaks is re-established a
//!   few times (re-reading the key first); after that the block answers
//!   [`LeaseError::Failed`] so the tracker claims again. The watch runs only while the
//!   asker waits ([`BlockAnswer`](crate::BlockAnswer)): a block given up (a timeout, a
//!   stopped tracker) or sent with `do_send` closes it.
//! - [`ReleaseLeadership`]: one transaction guarded on the key's value being the unit
//!   (otherwise [`LeaseError::NotHeld`]) deletes the key; the lease is revoked afterwards.
//! - [`HandOverLeadership`]: one transaction guarded on the key's value being the unit
//!   (otherwise `NotHeld`) puts the successor's name, keeping the lease and so the expiry,
//!   and writes the term key: the successor holds a new, greater term. Blocked trackers
//!   wake; the successor's claim finds itself the holder and extends the lease.
//! - [`Leader`]: holder and term from one read, and an **approximate** `expires` (see
//!   below). [`WatchLeader`]: the same, pushed on every change of holder or term (see
//!   below).
//!
//! Input is checked exactly as by `ManagerActor` (bad names or a zero duration give
//! [`LeaseError::Invalid`] and the manager keeps serving); in addition a duration below
//! [`EtcdManager::MIN_CLAIM_DURATION`] (etcd's smallest lease) or beyond etcd's longest
//! lease (9·10⁹ s) is `Invalid`.
//!
//! # Watching the leader
//!
//! [`WatchLeader`] answers a receiver holding the current lease at once. All receivers of
//! one service share one etcd watch on the holder key, which reports every put and
//! deletion (lease expiry included); on each change the manager reads both keys again and
//! publishes when the holder or the term changed (extensions are not published). After a
//! broken watch or while etcd is unreachable it keeps the last value — never `None` just
//! because etcd cannot be asked — reads the keys again once etcd answers and watches on
//! from that read's revision. The upstream watch ends, and its entry is dropped, once the
//! last receiver is gone (at the next change, or at once when it is noticed idle).
//!
//! # Timing, faults and clocks
//!
//! Every etcd call is bounded by [`tokio::time::timeout`]: a stopped or unreachable etcd
//! would otherwise hang a request forever. A claim for `duration` answers within
//! `min(request timeout, duration / 4)` — for a tracker, which claims `2·d` and treats a
//! claim unanswered for `d` as a failure, that is at most `d / 2`, so the tracker sees
//! [`LeaseError::Failed`] in time and ends its leadership by its own lease's expiry. A
//! claim that timed out may still commit in etcd later; that only errs on the safe side
//! (the unit holds a lease it does not know about; it is extended by its next claim or
//! expires).
//!
//! The tracker notes `t0` before sending a claim for `2·d` and counts on leadership until
//! `t0 + 2·d`. etcd starts the lease's TTL (`⌈2·d⌉` s or more) when it handles the grant or
//! keep-alive, which is after `t0`, so the etcd lease outlives the tracker's belief. That
//! argument assumes the two clocks run at the same *rate* (no absolute synchronisation
//! is needed: each side only measures intervals on its own monotonic clock); etcd times
//! its TTLs on its own leader's clock. After a lease's TTL, etcd deletes the key within
//! its expiry granularity (about 0.5 s on etcd 3.4), so another unit takes over at most
//! roughly `⌈2·d⌉ + 0.5 s` after the holder's last renewal.
//!
//! [`LeaseInfo::expires`](crate::LeaseInfo) from [`Leader`] is `now + the lease's
//! remaining TTL`, where etcd reports whole seconds rounded down and `now` is read before
//! the query: it is earlier than etcd's real expiry by up to about a second.
//!
//! [`ClaimLeadership`]: crate::ClaimLeadership
//! [`BlockUntilLeadershipReleased`]: crate::BlockUntilLeadershipReleased
//! [`ReleaseLeadership`]: crate::ReleaseLeadership
//! [`HandOverLeadership`]: crate::HandOverLeadership
//! [`Leader`]: crate::Leader
//! [`WatchLeader`]: crate::WatchLeader

use std::fmt;
use std::time::Duration;

use actix::prelude::*;

mod claim;
mod fenced;
mod handlers;
mod held;
mod keepalive;
mod secure;
mod services;
mod store;
mod watch;

/// The etcd client crate this module is built on, for the operations of a
/// [`FencedTxn`] (`etcd_client::TxnOp`) and its answer.
pub use etcd_client;
pub use fenced::{FencedTxn, FencedTxnError};
pub use secure::EtcdOptions;

use services::Services;
use store::Store;

use crate::LeaseError;

/// etcd's longest lease TTL, in seconds (`MaxLeaseTTL` in the server).
const MAX_TTL_SECS: u64 = 9_000_000_000;

/// Where an [`EtcdManager`] finds etcd and its keys.
///
/// Exactly the two fields the contract names, so it can be written as a literal; the
/// request timeout, TLS and credentials are given to [`EtcdManager::connect_with`] as
/// [`EtcdOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Key prefix shared by every manager of one application, e.g. `"/leadership"`;
    /// service `web` is stored under `<prefix>/web`.
    pub prefix: String,
}

impl EtcdConfig {
    /// A configuration from its two parts.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix: prefix.into(),
        }
    }
}
/// A lease manager whose leases live in etcd; an actix actor handling
/// [`ClaimLeadership`], [`BlockUntilLeadershipReleased`], [`ReleaseLeadership`],
/// [`HandOverLeadership`], [`Leader`], [`WatchLeader`] and [`FencedTxn`]. See the
/// [module documentation](self) for the semantics.
///
/// [`ClaimLeadership`]: crate::ClaimLeadership
/// [`BlockUntilLeadershipReleased`]: crate::BlockUntilLeadershipReleased
/// [`ReleaseLeadership`]: crate::ReleaseLeadership
/// [`HandOverLeadership`]: crate::HandOverLeadership
/// [`Leader`]: crate::Leader
/// [`WatchLeader`]: crate::WatchLeader
///
/// ```no_run
/// # async fn demo() -> Result<(), leadership::LeaseError> {
/// use actix::Actor;
/// use leadership::etcd::{EtcdConfig, EtcdManager};
///
/// let config = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()], "/leadership");
/// let manager = EtcdManager::connect(config).await?.start();
/// let claimer = leadership::Claimer::new(&manager);
/// # drop(claimer); Ok(()) }
/// ```
pub struct EtcdManager {
    store: Store,
    /// Per service: the lock serialising its claims, releases and hand-overs through this
    /// manager (guarding the holding it remembers), and its shared leader watch. An entry
    /// is dropped once it is idle (see `services::Services::settle`).
    services: Services,
    /// Dropped when the actor stops: pending blocks then answer `BlockCancelled`, leader
    /// watches end.
    stop: Option<tokio::sync::watch::Sender<()>>,
    stopped: tokio::sync::watch::Receiver<()>,
}

impl fmt::Debug for EtcdManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdManager")
            .field("prefix", &self.store.prefix)
            .field("request_timeout", &self.store.timeout)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl EtcdManager {
    /// The bound on each request to etcd (and on connecting) used by
    /// [`connect`](EtcdManager::connect).
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

    /// Connects to etcd over plain HTTP, with
    /// [`DEFAULT_REQUEST_TIMEOUT`](EtcdManager::DEFAULT_REQUEST_TIMEOUT); the same as
    /// [`connect_with`](EtcdManager::connect_with) with [`EtcdOptions::new`].
    ///
    /// # Errors
    ///
    /// As [`connect_with`](EtcdManager::connect_with).
    pub async fn connect(config: EtcdConfig) -> Result<EtcdManager, LeaseError> {
        EtcdManager::connect_with(config, EtcdOptions::new()).await
    }

    /// Like [`connect`](EtcdManager::connect), with another bound on each request to
    /// etcd: the same as [`connect_with`](EtcdManager::connect_with) with
    /// `EtcdOptions::new().request_timeout(request_timeout)`, which also takes TLS and a
    /// user.
    ///
    /// # Errors
    ///
    /// As [`connect_with`](EtcdManager::connect_with).
    pub async fn connect_with_timeout(
        config: EtcdConfig,
        request_timeout: Duration,
    ) -> Result<EtcdManager, LeaseError> {
        EtcdManager::connect_with(config, EtcdOptions::new().request_timeout(request_timeout)).await
    }

    /// Connects to etcd as `options` say (request timeout, TLS, client certificate,
    /// user) and proves the whole chain before returning: the TLS handshake, the login,
    /// and read and write permission on [`EtcdConfig::prefix`] (a transaction that etcd
    /// permits only to a user who may write under the prefix, and that writes nothing).
    /// The whole takes at most the request timeout.
    ///
    /// # Errors
    ///
    /// - [`LeaseError::Invalid`]: bad options, found before any I/O — no endpoints, a
    ///   malformed URL, a zero timeout, `https://` endpoints without a CA (or `http://`
    ///   ones with TLS options), a certificate or key file that cannot be read or holds
    ///   no PEM certificate or key (the message names the file), a client key that does
    ///   not match its certificate.
    /// - [`LeaseError::Failed`], the message saying which: "TLS" and "certificate" when
    ///   the handshake fails (the server's certificate is not signed by the given CA or
    ///   not valid for its name, or the server refused the client certificate);
    ///   "authentication" for a wrong user or password, or a server demanding a login
    ///   none was given for; "permission denied" when the user may not read and write
    ///   under the prefix; "timed out" only when no server answered in time.
    pub async fn connect_with(
        config: EtcdConfig,
        options: EtcdOptions,
    ) -> Result<EtcdManager, LeaseError> {
        let client = secure::open(&config, &options).await?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        Ok(EtcdManager {
            store: Store {
                client,
                prefix: config.prefix,
                timeout: options.timeout(),
                streams: Default::default(),
            },
            services: Services::default(),
            stop: Some(stop),
            stopped,
        })
    }
}

impl EtcdManager {
    /// The shortest claim duration this manager grants: etcd's smallest lease TTL (2 s
    /// with etcd's default election timeout; TTLs are whole seconds). A shorter claim is
    /// [`LeaseError::Invalid`] rather than a lease that lasts longer than asked, so a
    /// tracker needs a guarantee `d` of at least 1 s (it claims `2·d`). Its claims then
    /// answer within `min(request timeout, duration / 4)`, at least 0.5 s: etcd's few
    /// round trips fit with room to spare.
    pub const MIN_CLAIM_DURATION: Duration = Duration::from_secs(2);
}

impl Actor for EtcdManager {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop.take();
    }
}

/// The lease TTL for a claim: whole seconds, rounded up; the duration must be within
/// etcd's leases.
fn ttl_secs(duration: Duration) -> Result<i64, LeaseError> {
    if duration < EtcdManager::MIN_CLAIM_DURATION {
        return Err(LeaseError::Invalid(format!(
            "claim duration {duration:?} is below the etcd manager's floor of {:?} \
             (etcd's smallest lease); a tracker's guarantee must be at least {:?}",
            EtcdManager::MIN_CLAIM_DURATION,
            EtcdManager::MIN_CLAIM_DURATION / 2
        )));
    }
    let secs = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    if secs > MAX_TTL_SECS {
        return Err(LeaseError::Invalid(format!(
            "claim duration {duration:?} is longer than etcd's longest lease"
        )));
    }
    Ok(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_between_the_floor_and_etcds_longest_lease() {
        assert_eq!(ttl_secs(Duration::from_secs(2)), Ok(2));
        assert_eq!(ttl_secs(Duration::from_millis(2001)), Ok(3));
        assert_eq!(ttl_secs(Duration::from_secs(60)), Ok(60));
        assert_eq!(
            ttl_secs(Duration::from_secs(MAX_TTL_SECS)),
            Ok(MAX_TTL_SECS as i64)
        );
        for bad in [
            Duration::from_millis(1999),
            Duration::from_secs(1),
            Duration::from_nanos(1),
            Duration::from_secs(MAX_TTL_SECS + 1),
            Duration::MAX,
        ] {
            assert!(
                matches!(ttl_secs(bad), Err(LeaseError::Invalid(_))),
                "{bad:?}"
            );
        }
        let Err(LeaseError::Invalid(why)) = ttl_secs(Duration::from_secs(1)) else {
            panic!("1 s is below the floor");
        };
        assert!(why.contains("floor of 2s"), "{why}");
    }
}

#[cfg(test)]
mod server_tests;
