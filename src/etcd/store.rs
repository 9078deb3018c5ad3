//! The etcd side of the manager: the key layout and every request a lease operation
//! makes. Each method is one operation for one service; the actor bounds and
//! serialises them.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use tokio::time::Instant;
use tracing::debug;

use super::claim::{decide, retake_lapsed, Decision, Guard, Holder, Snapshot};
use super::fenced::FencedTxnError;
use super::MAX_TTL_SECS;
use crate::{ClaimLeadership, Grant, LeaseError, LeaseInfo};

/// How many times a claim reads the keys again after a guarded transaction lost a race.
const CLAIM_ATTEMPTS: usize = 4;

/// The etcd side of the manager: a cheap-to-clone client plus the key layout.
#[derive(Clone)]
pub(super) struct Store {
    pub(super) client: Client,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
}

/// How an extension of a held key went.
enum Extended {
    /// The lease covers the claim and the key is still ours, as read.
    Done,
    /// The key changed since the read: read it again.
    Changed,
    /// etcd no longer knows the key's lease (expired, not yet reaped): the holding
    /// lapsed.
    Lapsed,
}

impl Store {
    /// The holder key: its value is the holding unit's name, it is bound to the lease.
    pub(super) fn key(&self, service: &str) -> String {
        format!("{}/{}", self.prefix, service)
    }

    /// The term key: written (value: the new holder) in the same transaction as every
    /// change of holder and never bound to a lease, so its mod revision is the current
    /// holding's term. Service names contain no `/`, so it collides with no holder key.
    pub(super) fn term_key(&self, service: &str) -> String {
        format!("{}/{}/term", self.prefix, service)
    }

    /// Reads both keys of `service` at one revision.
    pub(super) async fn snapshot(&self, service: &str) -> Result<Snapshot, LeaseError> {
        let mut client = self.client.clone();
        let txn = Txn::new().and_then([
            TxnOp::get(self.key(service), None),
            TxnOp::get(self.term_key(service), None),
        ]);
        let resp = bounded(self.timeout, "etcd get", client.txn(txn)).await?;
        Ok(snapshot_of(&resp))
    }

    /// One claim; the caller bounds it as a whole and serialises it per service.
    pub(super) async fn claim(&self, msg: &ClaimLeadership, ttl: i64) -> Result<Grant, LeaseError> {
        let unit = msg.unit.as_str();
        for _ in 0..CLAIM_ATTEMPTS {
            let found = self.snapshot(&msg.service).await?;
            let decision = match decide(&found, unit) {
                Decision::Deny => return Err(LeaseError::ClaimDenied),
                Decision::Extend {
                    term,
                    lease,
                    mod_revision,
                } => match self
                    .extend(&msg.service, unit, ttl, lease, mod_revision)
                    .await?
                {
                    Extended::Done => return Ok(Grant::new(term)),
                    Extended::Changed => continue,
                    Extended::Lapsed => retake_lapsed(mod_revision, lease),
                },
                take => take,
            };
            if let Decision::Take { guard, old_lease } = decision {
                if let Some(grant) = self.take(&msg.service, unit, ttl, guard, old_lease).await? {
                    return Ok(grant);
                }
            }
        }
        Err(LeaseError::Failed(format!(
            "etcd claim for {} lost {CLAIM_ATTEMPTS} races in a row",
            self.key(&msg.service)
        )))
    }

    /// Starts a new term for `unit`: a new lease, and the holder key and the term key
    /// written in one transaction guarded by `guard`. `None` when the guard failed (the
    /// key changed since the read).
    async fn take(
        &self,
        service: &str,
        unit: &str,
        ttl: i64,
        guard: Guard,
        old_lease: i64,
    ) -> Result<Option<Grant>, LeaseError> {
        let key = self.key(service);
        let compare = match guard {
            Guard::Absent => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            Guard::At(revision) => Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
        };
        let lease = self.grant(ttl).await?;
        // No guard on the term key is needed: the term is the revision etcd gives this
        // transaction, greater than every earlier one, however late it commits.
        let txn = Txn::new().when([compare]).and_then([
            TxnOp::put(
                key.as_str(),
                unit,
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(self.term_key(service), unit, None),
        ]);
        let mut client = self.client.clone();
        let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
        if !resp.succeeded() {
            self.revoke_later(lease);
            return Ok(None);
        }
        if old_lease != 0 {
            self.revoke_later(old_lease);
        }
        let term = revision_of(&resp);
        debug!(key, unit, term, "new term");
        Ok(Some(Grant::new(term)))
    }

    /// Extends the key held by `unit` so that its lease covers `ttl` seconds from now,
    /// never shortening it and never touching the term key.
    async fn extend(
        &self,
        service: &str,
        unit: &str,
        ttl: i64,
        lease: i64,
        mod_revision: i64,
    ) -> Result<Extended, LeaseError> {
        let key = self.key(service);
        let mut client = self.client.clone();
        let guard = Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision);
        if lease != 0 {
            let live = bounded(
                self.timeout,
                "etcd lease ttl",
                client.lease_time_to_live(lease, None),
            )
            .await?;
            if live.ttl() < 0 {
                return Ok(Extended::Lapsed);
            }
            // etcd rounds the remaining TTL down: the lease lasts at least that long.
            let covered = live.ttl() >= ttl;
            if covered || live.granted_ttl() >= ttl {
                if !covered {
                    // A keep-alive resets the lease to its granted TTL, which covers the
                    // claim; it is refused for a lease that has expired.
                    match tokio::time::timeout(self.timeout, client.lease_keep_alive(lease)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                            debug!(key, lease, error = %e, "lease gone");
                            return Ok(Extended::Lapsed);
                        }
                        Ok(Err(e)) => {
                            return Err(LeaseError::Failed(format!("etcd keep-alive: {e}")))
                        }
                        Err(_) => {
                            return Err(LeaseError::Failed(format!(
                                "etcd keep-alive: timed out after {:?}",
                                self.timeout
                            )))
                        }
                    }
                }
                // The lease covers the claim; prove the key is still bound to it.
                let txn = Txn::new().when([guard]);
                let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
                return Ok(if resp.succeeded() {
                    Extended::Done
                } else {
                    Extended::Changed
                });
            }
        }
        // The granted TTL is too short (or the key has no lease): move the key to a new,
        // longer lease. Only the holder key is written: the term stays.
        let longer = self.grant(ttl).await?;
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(
            key.as_str(),
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
            Ok(Extended::Done)
        } else {
            self.revoke_later(longer);
            Ok(Extended::Changed)
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

    /// One transaction: deletes the holder key if `unit` holds it. The term key stays,
    /// the released lease is revoked afterwards.
    pub(super) async fn release(&self, service: &str, unit: &str) -> Result<(), LeaseError> {
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

    /// One transaction: if `unit` holds the key, it names `successor`, keeps its lease
    /// (so its expiry), and the term key is written, which starts the successor's term.
    pub(super) async fn hand_over(
        &self,
        service: &str,
        unit: &str,
        successor: &str,
    ) -> Result<(), LeaseError> {
        let key = self.key(service);
        let mut client = self.client.clone();
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, unit)])
            .and_then([
                TxnOp::put(
                    key.as_str(),
                    successor,
                    Some(PutOptions::new().with_ignore_lease()),
                ),
                TxnOp::put(self.term_key(service), successor, None),
            ]);
        let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(LeaseError::NotHeld { unit: unit.into() });
        }
        debug!(
            key,
            unit,
            successor,
            term = revision_of(&resp),
            "lease handed over"
        );
        Ok(())
    }

    /// The live lease of `service`, if any.
    pub(super) async fn leader(&self, service: &str) -> Result<Option<LeaseInfo>, LeaseError> {
        let found = self.snapshot(service).await?;
        self.info(&found).await
    }

    /// The lease a snapshot shows, with its expiry read from etcd.
    pub(super) async fn info(&self, found: &Snapshot) -> Result<Option<LeaseInfo>, LeaseError> {
        let (Some(holder), Some(term)) = (&found.holder, found.term()) else {
            return Ok(None);
        };
        let now = Instant::now();
        let remaining = if holder.lease == 0 {
            // Not written by a manager: it never expires.
            MAX_TTL_SECS as i64
        } else {
            let mut client = self.client.clone();
            bounded(
                self.timeout,
                "etcd lease ttl",
                client.lease_time_to_live(holder.lease, None),
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
            holder: String::from_utf8_lossy(&holder.unit).into_owned(),
            expires,
            term,
        }))
    }

    /// `ops` in one transaction that commits only while `service`'s holder key exists
    /// and carries `term` (validated by the caller: 0 < term < i64::MAX).
    pub(super) async fn fenced(
        &self,
        service: &str,
        term: i64,
        ops: Vec<TxnOp>,
    ) -> Result<TxnResponse, FencedTxnError> {
        let key = self.key(service);
        let term_key = self.term_key(service);
        let txn = Txn::new()
            .when([
                // A holder, whose holding began at `term` at the latest (this rules out
                // a holder key created since by an older writer that skips the term
                // key), and the term key written at `term`: the holding of `term`.
                Compare::create_revision(key.as_str(), CompareOp::Greater, 0),
                Compare::create_revision(key.as_str(), CompareOp::Less, term + 1),
                Compare::mod_revision(term_key.as_str(), CompareOp::Equal, term),
            ])
            .and_then(ops)
            // On failure, say who holds it now, as of the same revision.
            .or_else([TxnOp::get(key.as_str(), None), TxnOp::get(term_key, None)]);
        let mut client = self.client.clone();
        let resp = bounded(self.timeout, "etcd fenced txn", client.txn(txn))
            .await
            // `bounded` fails only with `Failed`, whose message is the cause.
            .map_err(|e| FencedTxnError::Failed(e.to_string()))?;
        if resp.succeeded() {
            return Ok(resp);
        }
        let now = snapshot_of(&resp);
        Err(FencedTxnError::StaleTerm {
            service: service.into(),
            term: term as u64,
            holder: now
                .holder
                .as_ref()
                .map(|h| String::from_utf8_lossy(&h.unit).into_owned()),
            current: now.term(),
        })
    }
}

/// The snapshot in a transaction's two get responses (holder key, then term key).
fn snapshot_of(resp: &TxnResponse) -> Snapshot {
    let mut gets = resp.op_responses().into_iter().filter_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get.kvs().first().cloned()),
        _ => None,
    });
    let holder: Option<KeyValue> = gets.next().flatten();
    let term: Option<KeyValue> = gets.next().flatten();
    debug_assert!(gets.next().is_none(), "a snapshot reads exactly two keys");
    Snapshot {
        holder: holder.map(|kv| Holder {
            unit: kv.value().to_vec(),
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
        }),
        term_revision: term.map_or(0, |kv| kv.mod_revision()),
        revision: resp.header().map_or(0, |h| h.revision()),
    }
}

/// The revision a committed transaction created.
fn revision_of(resp: &TxnResponse) -> u64 {
    u64::try_from(resp.header().map_or(0, |h| h.revision())).unwrap_or(0)
}

/// Runs one etcd call with a bound; errors and timeouts become `Failed`.
pub(super) async fn bounded<T, E: fmt::Display>(
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
