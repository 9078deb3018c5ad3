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
use super::held::Held;
use super::keepalive::{KeepAlive, Streams};
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
    /// The keep-alive streams kept open for remembered holdings.
    pub(super) streams: Streams,
}

/// How a renewal of a remembered holding went.
enum Renewed {
    /// etcd reset the lease, and the keys are as remembered: the lease covers the claim.
    Done,
    /// The keys are as remembered, but etcd no longer knows their lease (expired, not
    /// yet reaped): the holding lapsed.
    Lapsed,
    /// The keys are not as remembered: here they are, as the transaction read them.
    Changed(Snapshot),
}

/// How an extension of a held key went.
enum Extended {
    /// The lease covers the claim and the key is still ours: the holding as it is now.
    Done(Held),
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

    /// One claim; the caller bounds it as a whole and serialises it per service, and
    /// hands it what this manager remembers of the service's holding (`held`), which it
    /// replaces with the holding it leaves behind.
    ///
    /// A renewal of a remembered holding is [`Store::renew`]: two requests sent together.
    /// Anything else, and whatever that renewal finds changed, takes the full path: the
    /// keys (read, or as the renewal's transaction read them), then the pure decision.
    pub(super) async fn claim(
        &self,
        msg: &ClaimLeadership,
        ttl: i64,
        held: &mut Option<Held>,
    ) -> Result<Grant, LeaseError> {
        let unit = msg.unit.as_str();
        // A holding this claim renews is taken out, and put back only with an answer etcd
        // confirmed: a renewal that fails or is cancelled midway leaves nothing
        // remembered. Any other (another unit's, or too short a lease) stays, a hint for
        // its own holder, until the full path below establishes a holding of its own.
        let hint = held.take_if(|h| h.serves(unit, ttl));
        // The keys as the last transaction read them, if that is the latest news.
        let mut read = None;
        let mut lapsed = None;
        if let Some(mut hint) = hint {
            match self.renew(&msg.service, &mut hint, ttl).await? {
                Renewed::Done => {
                    let term = hint.term();
                    *held = Some(hint.renewed());
                    return Ok(Grant::new(term));
                }
                Renewed::Lapsed => lapsed = Some(retake_lapsed(hint.mod_revision, hint.lease)),
                Renewed::Changed(found) => read = Some(found),
            }
        }
        for _ in 0..CLAIM_ATTEMPTS {
            let decision = match lapsed.take() {
                Some(retake) => retake,
                None => {
                    let found = match read.take() {
                        Some(found) => found,
                        None => self.snapshot(&msg.service).await?,
                    };
                    match decide(&found, unit) {
                        Decision::Deny => return Err(LeaseError::ClaimDenied),
                        Decision::Extend {
                            term,
                            lease,
                            mod_revision,
                        } => match self
                            .extend(&msg.service, unit, ttl, &found, lease, mod_revision)
                            .await?
                        {
                            Extended::Done(now) => {
                                *held = Some(now);
                                return Ok(Grant::new(term));
                            }
                            Extended::Changed => continue,
                            Extended::Lapsed => retake_lapsed(mod_revision, lease),
                        },
                        take => take,
                    }
                }
            };
            if let Decision::Take { guard, old_lease } = decision {
                if let Some((grant, now)) =
                    self.take(&msg.service, unit, ttl, guard, old_lease).await?
                {
                    *held = Some(now);
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
    /// written in one transaction guarded by `guard`. The grant and the holding it
    /// established; `None` when the guard failed (the key changed since the read).
    async fn take(
        &self,
        service: &str,
        unit: &str,
        ttl: i64,
        guard: Guard,
        old_lease: i64,
    ) -> Result<Option<(Grant, Held)>, LeaseError> {
        let key = self.key(service);
        let compare = match guard {
            Guard::Absent => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            Guard::At(revision) => Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
        };
        let (lease, granted) = self.grant(ttl).await?;
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
        // Both keys were written by this transaction, at its revision.
        let revision = header_revision(&resp);
        let now = Held::new(unit, lease, granted, revision, revision);
        Ok(Some((Grant::new(term), now)))
    }

    /// Renews a holding this manager remembers, in two requests sent together: a
    /// keep-alive of its lease, and a transaction that succeeds only while both keys are
    /// exactly as remembered (on failure it reads them, so a stale memory costs no extra
    /// request).
    ///
    /// Why `Done` means the lease covers the claim from when it was received. The
    /// keep-alive is sent after the claim arrived; etcd answers it only for a lease that
    /// has not expired (an expired one it answers with TTL 0, once revoked) and resets that
    /// lease to expire its granted TTL after handling it. The granted TTL is fixed when a
    /// lease is granted, and `held.granted` is what etcd reported for this lease, at
    /// least `ttl` (checked by `Held::serves`). The transaction proves that the holder key
    /// is still the version remembered — its mod revision — which names `unit` and is
    /// bound to `held.lease`: a key changes its mod revision with every write, and is
    /// deleted, never rebound, when its lease ends. In whichever order etcd handles the
    /// two, the key bound to a lease that is alive at the keep-alive and lasts `ttl`
    /// seconds after it stays, and so does the holding, until that lease ends or this
    /// unit releases or hands it over. The same argument as for a keep-alive followed by
    /// the transaction, which is what the full path does.
    async fn renew(&self, service: &str, held: &mut Held, ttl: i64) -> Result<Renewed, LeaseError> {
        debug_assert!(held.serves(&held.unit, ttl));
        let key = self.key(service);
        let term_key = self.term_key(service);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.as_str(), CompareOp::Equal, held.mod_revision),
                Compare::mod_revision(term_key.as_str(), CompareOp::Equal, held.term_revision),
            ])
            .or_else([
                TxnOp::get(key.as_str(), None),
                TxnOp::get(term_key.as_str(), None),
            ]);
        let mut client = self.client.clone();
        let (proof, kept) = tokio::join!(
            bounded(self.timeout, "etcd txn", client.txn(txn)),
            self.keep_alive(&key, held.lease, held.stream.take())
        );
        let proof = proof?;
        if !proof.succeeded() {
            return Ok(Renewed::Changed(snapshot_of(&proof)));
        }
        let (alive, stream) = kept?;
        held.stream = stream;
        Ok(if alive {
            Renewed::Done
        } else {
            Renewed::Lapsed
        })
    }

    /// One keep-alive of `lease`: on `stream`, the lease's stream kept from an earlier
    /// renewal, if given and still working, else on a new stream (etcd-client binds a
    /// keep-alive stream to one lease). Whether etcd reset the lease to its granted TTL
    /// (`false`: etcd no longer knows the lease, expired or revoked), and the stream to
    /// keep for the next renewal.
    async fn keep_alive(
        &self,
        key: &str,
        lease: i64,
        stream: Option<Box<KeepAlive>>,
    ) -> Result<(bool, Option<Box<KeepAlive>>), LeaseError> {
        if let Some(mut stream) = stream {
            match tokio::time::timeout(self.timeout, stream.once()).await {
                Ok(Ok(ttl)) if ttl > 0 => return Ok((true, Some(stream))),
                Ok(Ok(_)) => {
                    debug!(key, lease, "lease gone");
                    return Ok((false, None));
                }
                // Broken (etcd restarted, the connection dropped): try a new stream.
                Ok(Err(e)) => debug!(key, lease, error = %e, "keep-alive stream broken"),
                Err(_) => return Err(timed_out("etcd keep-alive", self.timeout)),
            }
        }
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.lease_keep_alive(lease)).await {
            // Its first answer came with a TTL above zero (etcd-client checks).
            Ok(Ok((keeper, answers))) => {
                Ok((true, self.streams.keep(keeper, answers).map(Box::new)))
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) => {
                debug!(key, lease, error = %e, "lease gone");
                Ok((false, None))
            }
            Ok(Err(e)) => Err(LeaseError::Failed(format!("etcd keep-alive: {e}"))),
            Err(_) => Err(timed_out("etcd keep-alive", self.timeout)),
        }
    }

    /// Extends the key held by `unit`, as `found` shows it (`lease`, `mod_revision`), so
    /// that its lease covers `ttl` seconds from now, never shortening it and never
    /// touching the term key.
    async fn extend(
        &self,
        service: &str,
        unit: &str,
        ttl: i64,
        found: &Snapshot,
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
                // A keep-alive resets the lease to its granted TTL, which covers the
                // claim; it is refused for a lease that has expired. Its stream is kept
                // for the holding's next renewal, as a renewal keeps its own.
                let mut stream = None;
                if !covered {
                    let (alive, kept) = self.keep_alive(&key, lease, None).await?;
                    if !alive {
                        return Ok(Extended::Lapsed);
                    }
                    stream = kept;
                }
                // The lease covers the claim; prove the key is still bound to it.
                let txn = Txn::new().when([guard]);
                let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
                return Ok(if resp.succeeded() {
                    Extended::Done(Held {
                        stream,
                        ..Held::new(
                            unit,
                            lease,
                            live.granted_ttl(),
                            mod_revision,
                            found.term_revision,
                        )
                    })
                } else {
                    Extended::Changed
                });
            }
        }
        // The granted TTL is too short (or the key has no lease): move the key to a new,
        // longer lease. Only the holder key is written: the term stays.
        let (longer, granted) = self.grant(ttl).await?;
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(
            key.as_str(),
            unit,
            Some(PutOptions::new().with_lease(longer)),
        )]);
        let resp = bounded(self.timeout, "etcd txn", client.txn(txn)).await?;
        if resp.succeeded() {
            if lease != 0 {
                self.revoke_later(lease);
            }
            let moved = header_revision(&resp);
            Ok(Extended::Done(Held::new(
                unit,
                longer,
                granted,
                moved,
                found.term_revision,
            )))
        } else {
            self.revoke_later(longer);
            Ok(Extended::Changed)
        }
    }

    /// A new lease of `ttl` seconds: its id and the TTL etcd granted (never less).
    async fn grant(&self, ttl: i64) -> Result<(i64, i64), LeaseError> {
        let mut client = self.client.clone();
        let resp = bounded(
            self.timeout,
            "etcd lease grant",
            client.lease_grant(ttl, None),
        )
        .await?;
        Ok((resp.id(), resp.ttl()))
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
    u64::try_from(header_revision(resp)).unwrap_or(0)
}

/// The revision in a response's header: for a committed write, the revision it created.
fn header_revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
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
        Err(_) => Err(timed_out(what, bound)),
    }
}

/// The error of an etcd call that got no answer within `bound`.
fn timed_out(what: &str, bound: Duration) -> LeaseError {
    LeaseError::Failed(format!("{what}: timed out after {bound:?}"))
}
