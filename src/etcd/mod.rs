//! A lease manager backed by a real etcd server (cargo feature `etcd`).
//!
//! [`EtcdManager`] handles the same four messages as the in-memory
//! [`ManagerActor`](crate::ManagerActor), so [`Claimer::new`](crate::Claimer::new) works
//! unchanged and a tracker cannot tell the two apart. Several processes — units of one
//! service on different machines — each connect their own `EtcdManager` to the same etcd
//! cluster with the same [`EtcdConfig::prefix`]; etcd decides who leads.
//!
//! # How a lease is stored
//!
//! The key `<prefix>/<service>` holds the holder's unit name and is bound to an etcd lease
//! whose TTL is the claimed duration rounded **up** to whole seconds (etcd may grant more:
//! its minimum TTL is about 2 s). etcd deletes the key when the lease expires.
//!
//! - [`ClaimLeadership`]: key absent → a new lease is granted and the key is put in a
//!   transaction guarded on the key being absent. Key held by the same unit → extended,
//!   never shortened: left alone if the lease already covers the duration, otherwise
//!   refreshed with one keep-alive (which resets it to its granted TTL) or, when the
//!   granted TTL is too short, moved to a new, longer lease in a transaction guarded on the
//!   key's mod revision. Every path ends with a transaction that etcd committed: no claim
//!   is reported granted that etcd did not commit. Key held by another unit →
//!   [`LeaseError::ClaimDenied`].
//! - [`BlockUntilLeadershipReleased`]: answers at once when the key is absent; otherwise a
//!   watch from the revision after the read waits for the key's deletion (push, no
//!   polling), so no deletion between the read and the watch is missed. A watch that
//!   breaks is re-established a few times (re-reading the key first); after that the block
//!   answers [`LeaseError::Failed`] so the tracker claims again.
//! - [`ReleaseLeadership`]: a transaction guarded on the key's value being the unit;
//!   otherwise [`LeaseError::NotHeld`]. The released lease is then revoked.
//! - [`Leader`]: holder, `term` = the key's create revision (a real fencing token: a new
//!   holder always creates the key anew, at a greater revision; an extension keeps it),
//!   and an **approximate** `expires` (see below).
//!
//! Input is checked exactly as by `ManagerActor` (bad names or a zero duration give
//! [`LeaseError::Invalid`] and the manager keeps serving); in addition a duration beyond
//! etcd's longest lease (9·10⁹ s) is `Invalid`.
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchFilterType, WatchOptions,
};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::protocol::{check_claim, check_service, check_unit};
use crate::{
    BlockUntilLeadershipReleased, ClaimLeadership, Grant, HandOverLeadership, Leader, LeaseError,
    LeaseInfo, ReleaseLeadership, StopManager,
};

/// etcd's longest lease TTL, in seconds (`MaxLeaseTTL` in the server).
const MAX_TTL_SECS: u64 = 9_000_000_000;

/// How many times a claim re-reads the key after a guarded transaction lost a race.
const CLAIM_ATTEMPTS: usize = 4;

/// How many consecutive broken watches a block re-establishes before it gives up.
const WATCH_RETRIES: usize = 3;

mod secure;
pub use secure::EtcdOptions;

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
/// [`ClaimLeadership`], [`BlockUntilLeadershipReleased`], [`ReleaseLeadership`] and
/// [`Leader`]. See the [module documentation](self) for the semantics.
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
    /// One lock per service: claims and releases of a service through this manager run
    /// one at a time, so each reads the state the previous one committed.
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Dropped when the actor stops: pending blocks then answer `BlockCancelled`.
    stop: Option<tokio::sync::watch::Sender<()>>,
    stopped: tokio::sync::watch::Receiver<()>,
}

impl fmt::Debug for EtcdManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdManager")
            .field("prefix", &self.store.prefix)
            .field("request_timeout", &self.store.timeout)
            .field("services", &self.locks.len())
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
            },
            locks: HashMap::new(),
            stop: Some(stop),
            stopped,
        })
    }

    fn lock(&mut self, service: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.entry(service.to_owned()).or_default().clone()
    }
}

impl Actor for EtcdManager {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop.take();
    }
}

/// Stops the manager at once: pending blocks answer [`LeaseError::BlockCancelled`],
/// later messages fail with a mailbox error. Leases stay in etcd until they expire or
/// are released by another manager. (Dropping the last `Addr` stops it too.)
impl Handler<StopManager> for EtcdManager {
    type Result = ();

    fn handle(&mut self, _: StopManager, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Claims run as plain futures (`ResponseFuture`): they never touch the actor's state
/// once started, and the actor keeps serving while etcd answers.
impl Handler<ClaimLeadership> for EtcdManager {
    type Result = ResponseFuture<Result<Grant, LeaseError>>;

    fn handle(&mut self, msg: ClaimLeadership, _: &mut Context<Self>) -> Self::Result {
        let checked = check_claim(&msg, Instant::now()).and_then(|_| ttl_secs(msg.duration));
        let ttl = match checked {
            Ok(ttl) => ttl,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let bound = self.store.timeout.min(msg.duration / 4);
        let lock = self.lock(&msg.service);
        let store = self.store.clone();
        Box::pin(async move {
            let started = Instant::now();
            let result = serialised(lock, bound, "claim", store.claim(&msg, ttl)).await;
            match &result {
                Ok(grant) => debug!(service = %msg.service, unit = %msg.unit, term = grant.term,
                                 elapsed = ?started.elapsed(), "claim granted"),
                Err(LeaseError::ClaimDenied) => debug!(service = %msg.service,
                                                       unit = %msg.unit, "claim denied"),
                Err(e) => warn!(service = %msg.service, unit = %msg.unit, error = %e,
                                "claim failed"),
            }
            result
        })
    }
}

/// Blocks run as plain futures that stay pending on an etcd watch; they answer
/// `BlockCancelled` when the actor stops.
impl Handler<BlockUntilLeadershipReleased> for EtcdManager {
    type Result = ResponseFuture<Result<(), LeaseError>>;

    fn handle(&mut self, msg: BlockUntilLeadershipReleased, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_service(&msg.service) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let store = self.store.clone();
        let mut stopped = self.stopped.clone();
        Box::pin(async move {
            let block = store.block(&msg.service);
            let cancelled = async move {
                // Resolves (with an error) once the sender is dropped, i.e. on stop.
                while stopped.changed().await.is_ok() {}
            };
            futures::pin_mut!(block, cancelled);
            match futures::future::select(block, cancelled).await {
                futures::future::Either::Left((result, _)) => result,
                futures::future::Either::Right(((), _)) => Err(LeaseError::BlockCancelled),
            }
        })
    }
}

impl Handler<ReleaseLeadership> for EtcdManager {
    type Result = ResponseFuture<Result<(), LeaseError>>;

    fn handle(&mut self, msg: ReleaseLeadership, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_unit(&msg.service, &msg.unit) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let lock = self.lock(&msg.service);
        let store = self.store.clone();
        Box::pin(async move {
            let release = store.release(&msg.service, &msg.unit);
            serialised(lock, store.timeout, "release", release).await
        })
    }
}

/// Not supported by the etcd manager yet: answers [`LeaseError::Failed`], and a
/// resigning tracker lets its lease expire.
impl Handler<HandOverLeadership> for EtcdManager {
    type Result = Result<(), LeaseError>;

    fn handle(&mut self, msg: HandOverLeadership, _: &mut Context<Self>) -> Self::Result {
        crate::protocol::check_hand_over(&msg)?;
        Err(LeaseError::Failed(
            "hand-over is not supported by the etcd manager yet".into(),
        ))
    }
}

/// `None` when the service has no live lease, when the request is malformed, and when
/// etcd cannot be asked (logged as a warning).
impl Handler<Leader> for EtcdManager {
    type Result = ResponseFuture<Option<LeaseInfo>>;

    fn handle(&mut self, msg: Leader, _: &mut Context<Self>) -> Self::Result {
        if check_service(&msg.service).is_err() {
            return Box::pin(std::future::ready(None));
        }
        let store = self.store.clone();
        Box::pin(async move {
            match store.leader(&msg.service).await {
                Ok(info) => info,
                Err(e) => {
                    warn!(service = %msg.service, error = %e, "cannot read the leader from etcd");
                    None
                }
            }
        })
    }
}

/// The lease TTL for a claim: whole seconds, rounded up.
fn ttl_secs(duration: Duration) -> Result<i64, LeaseError> {
    let secs = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    if secs > MAX_TTL_SECS {
        return Err(LeaseError::Invalid(format!(
            "claim duration {duration:?} is longer than etcd's longest lease"
        )));
    }
    Ok(secs.max(1) as i64)
}

/// Runs `op` (a claim or a release) alone among this manager's requests for its
/// service, bounded as a whole by `bound`: a timeout becomes `Failed`.
async fn serialised<T>(
    lock: Arc<tokio::sync::Mutex<()>>,
    bound: Duration,
    what: &str,
    op: impl Future<Output = Result<T, LeaseError>>,
) -> Result<T, LeaseError> {
    let run = async {
        let _serialised = lock.lock_owned().await;
        op.await
    };
    tokio::time::timeout(bound, run).await.unwrap_or_else(|_| {
        Err(LeaseError::Failed(format!(
            "etcd {what} timed out after {bound:?}"
        )))
    })
}

/// Runs one etcd call with a bound; errors and timeouts become `Failed`.
async fn bounded<T, E: fmt::Display>(
    bound: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(bound, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(LeaseError::Failed(format!("{what}: {e}"))),
        Err(_) => Err(LeaseError::Failed(format!(
            "{what}: timed out after {bound:?}"
        ))),
    }
}

/// The etcd side of the manager: a cheap-to-clone client plus the key layout.
#[derive(Clone)]
struct Store {
    client: Client,
    prefix: String,
    timeout: Duration,
}

/// What a claim found when it read the key.
enum Found {
    Free,
    Other,
    Mine {
        lease: i64,
        mod_revision: i64,
        create_revision: i64,
    },
}

/// The term of a key created at `revision`.
fn term_of(revision: i64) -> Grant {
    Grant::new(u64::try_from(revision).unwrap_or(0))
}

impl Store {
    fn key(&self, service: &str) -> String {
        format!("{}/{}", self.prefix, service)
    }

    async fn read(&self, key: &str, unit: &str) -> Result<Found, LeaseError> {
        let mut client = self.client.clone();
        let resp = bounded(self.timeout, "etcd get", client.get(key, None)).await?;
        Ok(match resp.kvs().first() {
            None => Found::Free,
            Some(kv) if kv.value() != unit.as_bytes() => Found::Other,
            Some(kv) => Found::Mine {
                lease: kv.lease(),
                mod_revision: kv.mod_revision(),
                create_revision: kv.create_revision(),
            },
        })
    }

    /// One claim; the caller bounds it as a whole and serialises it per service.
    async fn claim(&self, msg: &ClaimLeadership, ttl: i64) -> Result<Grant, LeaseError> {
        let key = self.key(&msg.service);
        let unit = msg.unit.as_str();
        let mut client = self.client.clone();
        for _ in 0..CLAIM_ATTEMPTS {
            match self.read(&key, unit).await? {
                Found::Other => return Err(LeaseError::ClaimDenied),
                Found::Free => {
                    let lease = self.grant(ttl).await?;
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key.as_str(),
                            unit,
                            Some(PutOptions::new().with_lease(lease)),
                        )]);
                    let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
                    if resp.succeeded() {
                        // The key was created by this transaction, at its revision.
                        return Ok(term_of(resp.header().map_or(0, |h| h.revision())));
                    }
                    // Someone created the key since the read: look again.
                    self.revoke_later(lease);
                }
                Found::Mine {
                    lease,
                    mod_revision,
                    create_revision,
                } => {
                    if self.extend(&key, unit, ttl, lease, mod_revision).await? {
                        return Ok(term_of(create_revision));
                    }
                }
            }
        }
        Err(LeaseError::Failed(format!(
            "etcd claim for {key} lost {CLAIM_ATTEMPTS} races in a row"
        )))
    }

    /// Extends the key held by `unit` so that its lease covers `ttl` seconds from now,
    /// never shortening it. `Ok(false)` when the key changed under us: read it again.
    async fn extend(
        &self,
        key: &str,
        unit: &str,
        ttl: i64,
        lease: i64,
        mod_revision: i64,
    ) -> Result<bool, LeaseError> {
        let mut client = self.client.clone();
        let guard = Compare::mod_revision(key, CompareOp::Equal, mod_revision);
        if lease != 0 {
            let live = bounded(
                self.timeout,
                "etcd lease ttl",
                client.lease_time_to_live(lease, None),
            )
            .await?;
            // etcd rounds the remaining TTL down: the lease lasts at least that long.
            let covered = live.ttl() >= ttl;
            let mut refreshed = false;
            if !covered {
                // A keep-alive resets the lease to its granted TTL (never less than what
                // remains), and is refused for a lease that has expired.
                match tokio::time::timeout(self.timeout, client.lease_keep_alive(lease)).await {
                    Ok(Ok(_)) => refreshed = true,
                    Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                        debug!(key, lease, error = %e, "lease gone; reading the key again");
                        return Ok(false);
                    }
                    Ok(Err(e)) => return Err(LeaseError::Failed(format!("etcd keep-alive: {e}"))),
                    Err(_) => {
                        return Err(LeaseError::Failed(format!(
                            "etcd keep-alive: timed out after {:?}",
                            self.timeout
                        )))
                    }
                }
            }
            if covered || (refreshed && live.granted_ttl() >= ttl) {
                // The lease covers the claim; prove the key is still bound to it.
                let txn = Txn::new().when([guard]);
                return Ok(bounded(self.timeout, "etcd txn", client.txn(txn))
                    .await?
                    .succeeded());
            }
        }
        // The granted TTL is too short (or the key has no lease): move the key to a new,
        // longer lease. Its create revision, the term, does not change.
        let longer = self.grant(ttl).await?;
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(
            key,
            unit,
            Some(PutOptions::new().with_lease(longer)),
        )]);
        if bounded(self.timeout, "etcd txn", client.txn(txn))
            .await?
            .succeeded()
        {
            if lease != 0 {
                self.revoke_later(lease);
            }
            Ok(true)
        } else {
            self.revoke_later(longer);
            Ok(false)
        }
    }

    async fn grant(&self, ttl: i64) -> Result<i64, LeaseError> {
        let mut client = self.client.clone();
        let resp = bounded(
            self.timeout,
            "etcd lease grant",
            client.lease_grant(ttl, None),
        )
        .await?;
        Ok(resp.id())
    }

    /// Revokes a lease that holds no key of ours any more, in the background; if that
    /// fails the lease simply expires.
    fn revoke_later(&self, lease: i64) {
        let mut client = self.client.clone();
        let bound = self.timeout;
        actix_rt::spawn(async move {
            if let Err(e) = bounded(bound, "etcd lease revoke", client.lease_revoke(lease)).await {
                debug!(lease, error = %e, "could not revoke a spare lease; it will expire");
            }
        });
    }

    async fn release(&self, service: &str, unit: &str) -> Result<(), LeaseError> {
        let key = self.key(service);
        let mut client = self.client.clone();
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, unit)])
            .and_then([TxnOp::delete(
                key.as_str(),
                Some(DeleteOptions::new().with_prev_key()),
            )]);
        let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(LeaseError::NotHeld { unit: unit.into() });
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(deleted) = op {
                for kv in deleted.prev_kvs() {
                    if kv.lease() != 0 {
                        self.revoke_later(kv.lease());
                    }
                }
            }
        }
        debug!(key, unit, "lease released");
        Ok(())
    }

    async fn leader(&self, service: &str) -> Result<Option<LeaseInfo>, LeaseError> {
        let key = self.key(service);
        let mut client = self.client.clone();
        let resp = bounded(self.timeout, "etcd get", client.get(key.as_str(), None)).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let holder = String::from_utf8_lossy(kv.value()).into_owned();
        let term = u64::try_from(kv.create_revision()).unwrap_or(0);
        let now = Instant::now();
        let remaining = if kv.lease() == 0 {
            // Not written by a manager: it never expires.
            MAX_TTL_SECS as i64
        } else {
            bounded(
                self.timeout,
                "etcd lease ttl",
                client.lease_time_to_live(kv.lease(), None),
            )
            .await?
            .ttl()
        };
        if remaining < 0 {
            return Ok(None); // expired; etcd is about to delete the key
        }
        let expires = now
            .checked_add(Duration::from_secs(remaining as u64))
            .unwrap_or(now);
        Ok(Some(LeaseInfo {
            holder,
            expires,
            term,
        }))
    }

    /// Waits until the service's key is absent. Unbounded while etcd is reachable and the
    /// lease is live; each setup call is bounded.
    async fn block(&self, service: &str) -> Result<(), LeaseError> {
        let key = self.key(service);
        let mut client = self.client.clone();
        let mut broken = 0;
        loop {
            let resp = bounded(self.timeout, "etcd get", client.get(key.as_str(), None)).await?;
            if resp.kvs().is_empty() {
                return Ok(());
            }
            let revision = resp.header().map_or(0, |h| h.revision());
            // From the revision after the read: a deletion in between is replayed.
            let options = WatchOptions::new()
                .with_start_revision(revision + 1)
                .with_filters([WatchFilterType::NoPut]);
            let mut watch = bounded(
                self.timeout,
                "etcd watch",
                client.watch(key.as_str(), Some(options)),
            )
            .await?;
            let why = loop {
                match watch.message().await {
                    Ok(Some(resp)) => {
                        broken = 0; // the watch works: only consecutive breaks count
                        if resp
                            .events()
                            .iter()
                            .any(|ev| ev.event_type() == EventType::Delete)
                        {
                            return Ok(());
                        }
                        if resp.canceled() {
                            break format!("watch cancelled: {}", resp.cancel_reason());
                        }
                    }
                    Ok(None) => break "watch stream ended".to_owned(),
                    Err(e) => break format!("watch failed: {e}"),
                }
            };
            broken += 1;
            if broken > WATCH_RETRIES {
                return Err(LeaseError::Failed(format!("etcd {why} (key {key})")));
            }
            warn!(key, reason = %why, "etcd watch broke; re-establishing");
        }
    }
}
