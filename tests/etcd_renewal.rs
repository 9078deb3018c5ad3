//! Renewals against a real etcd: a holder's renewal is a keep-alive and a guarded
//! transaction sent together, from what the manager remembers of the holding. These
//! tests change the keys behind the manager's back (as another manager, an operator or
//! etcd itself would) and check that a renewal then answers what the keys say, and
//! never `Ok` unless the key's lease covers the claim.
//!
//! `#[ignore]`d without a server: `.ci/with-etcd cargo test --all-features --test
//! etcd_renewal -- --include-ignored`.
#![cfg(feature = "etcd")]

#[path = "etcd_support/mod.rs"]
#[allow(dead_code)]
mod etcd_support;

use std::time::Duration;

use actix::prelude::*;
use etcd_support::process::EtcdProcess;
use etcd_support::wait::poll_until;
use etcd_support::{shared_endpoints, unique_prefix};
use leadership::etcd::etcd_client::{self, Compare, CompareOp, PutOptions, Txn, TxnOp};
use leadership::etcd::{EtcdConfig, EtcdManager};
use leadership::{ClaimLeadership, Grant, Leader, LeaseError};

const SERVICE: &str = "web";
/// Every claim here is for 4 s: a 4 s lease.
const CLAIM: Duration = Duration::from_secs(4);

/// A manager and a raw client on the same keys.
struct Keys {
    manager: Addr<EtcdManager>,
    raw: etcd_client::Client,
    key: String,
    term_key: String,
}

impl Keys {
    async fn connect(endpoints: &[String], test: &str) -> Keys {
        let prefix = unique_prefix(test);
        let manager = EtcdManager::connect(EtcdConfig::new(endpoints.to_vec(), prefix.as_str()))
            .await
            .expect("connect the manager")
            .start();
        let raw = etcd_client::Client::connect(endpoints, None)
            .await
            .expect("connect a raw client");
        Keys {
            manager,
            raw,
            key: format!("{prefix}/{SERVICE}"),
            term_key: format!("{prefix}/{SERVICE}/term"),
        }
    }

    async fn claim(&self, unit: &str) -> Result<Grant, LeaseError> {
        self.manager
            .send(ClaimLeadership {
                service: SERVICE.into(),
                unit: unit.into(),
                duration: CLAIM,
            })
            .await
            .expect("the manager runs")
    }

    /// The holder key: its value, lease and mod revision.
    async fn holder(&self) -> Option<(String, i64, i64)> {
        let resp = self.raw.clone().get(self.key.as_str(), None).await.unwrap();
        resp.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.lease(),
                kv.mod_revision(),
            )
        })
    }

    /// The remaining TTL of `lease`, in whole seconds rounded down (-1: unknown).
    async fn remaining(&self, lease: i64) -> i64 {
        let resp = self
            .raw
            .clone()
            .lease_time_to_live(lease, None)
            .await
            .unwrap();
        resp.ttl()
    }

    /// What every `Ok` must leave: the key names `unit` and is bound to a lease that
    /// covers the claim (4 s; etcd rounds the remaining TTL down, and this runs a few
    /// milliseconds after the answer).
    async fn assert_covered(&self, unit: &str) -> (i64, i64) {
        let (holder, lease, mod_revision) = self.holder().await.expect("a holder");
        assert_eq!(holder, unit);
        assert_ne!(lease, 0, "bound to a lease");
        let left = self.remaining(lease).await;
        assert!(left >= 3, "lease {lease} has {left} s left");
        (lease, mod_revision)
    }

    /// A new lease of `ttl` seconds, granted behind the manager's back.
    async fn grant(&self, ttl: i64) -> i64 {
        self.raw.clone().lease_grant(ttl, None).await.unwrap().id()
    }

    /// Deletes `key` behind the manager's back.
    async fn delete(&self, key: &str) {
        self.raw.clone().delete(key, None).await.unwrap();
    }

    /// Rebinds the holder key, naming `unit`, to `lease` behind the manager's back.
    async fn rebind(&self, unit: &str, lease: i64) {
        let put = PutOptions::new().with_lease(lease);
        self.raw
            .clone()
            .put(self.key.as_str(), unit, Some(put))
            .await
            .unwrap();
    }
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_resets_the_lease_and_writes_nothing() {
    let keys = Keys::connect(&shared_endpoints("renewal_resets"), "renewal-resets").await;
    let first = keys.claim("web/0").await.expect("granted");
    let (lease, mod_revision) = keys.assert_covered("web/0").await;
    // Let the lease run down to 2 s or less.
    poll_until(Duration::from_secs(5), "the lease to run down", || async {
        keys.remaining(lease).await <= 2
    })
    .await;
    let renewed = keys.claim("web/0").await.expect("renewed");
    assert_eq!(renewed.term, first.term, "a renewal keeps the term");
    // The same lease, reset to its granted 4 s; the key untouched (no write at all).
    assert_eq!(keys.assert_covered("web/0").await, (lease, mod_revision));
    // And again, from what the last renewal established.
    let again = keys.claim("web/0").await.expect("renewed");
    assert_eq!(again.term, first.term);
    assert_eq!(keys.assert_covered("web/0").await, (lease, mod_revision));
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_after_a_hand_over_behind_the_managers_back_is_denied() {
    let keys = Keys::connect(&shared_endpoints("renewal_handed_over"), "renewal-ho").await;
    keys.claim("web/0").await.expect("granted");
    // Another manager hands web/0's holding to web/1: same lease (so a keep-alive of it
    // succeeds), another value, a new term.
    let txn = Txn::new().and_then([
        TxnOp::put(
            keys.key.as_str(),
            "web/1",
            Some(PutOptions::new().with_ignore_lease()),
        ),
        TxnOp::put(keys.term_key.as_str(), "web/1", None),
    ]);
    keys.raw.clone().txn(txn).await.unwrap();
    assert_eq!(keys.claim("web/0").await, Err(LeaseError::ClaimDenied));
    // web/1, renewing through this manager, extends under its term.
    let grant = keys.claim("web/1").await.expect("web/1 holds it");
    keys.assert_covered("web/1").await;
    assert_eq!(keys.claim("web/0").await, Err(LeaseError::ClaimDenied));
    assert_eq!(keys.claim("web/1").await.unwrap().term, grant.term);
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_after_another_unit_took_over_is_denied() {
    let keys = Keys::connect(&shared_endpoints("renewal_taken"), "renewal-taken").await;
    keys.claim("web/0").await.expect("granted");
    // The key deleted and taken by web/1 on a lease of its own, as after an expiry.
    let theirs = keys.grant(30).await;
    keys.delete(&keys.key).await;
    let txn = Txn::new().and_then([
        TxnOp::put(
            keys.key.as_str(),
            "web/1",
            Some(PutOptions::new().with_lease(theirs)),
        ),
        TxnOp::put(keys.term_key.as_str(), "web/1", None),
    ]);
    keys.raw.clone().txn(txn).await.unwrap();
    assert_eq!(keys.claim("web/0").await, Err(LeaseError::ClaimDenied));
    assert_eq!(keys.holder().await.unwrap().0, "web/1", "left alone");
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_after_the_key_was_deleted_or_its_lease_revoked_starts_a_new_term() {
    let keys = Keys::connect(&shared_endpoints("renewal_deleted"), "renewal-deleted").await;
    let first = keys.claim("web/0").await.expect("granted");
    let (lease, _) = keys.assert_covered("web/0").await;

    // Deleted (a release by hand): the holding ended, the next claim is a new term.
    keys.delete(&keys.key).await;
    let second = keys.claim("web/0").await.expect("granted again");
    assert!(second.term > first.term, "{second:?} after {first:?}");
    let (second_lease, _) = keys.assert_covered("web/0").await;
    assert_ne!(second_lease, lease, "a new lease");

    // Its lease revoked: etcd deletes the key; the keep-alive finds no lease.
    keys.raw.clone().lease_revoke(second_lease).await.unwrap();
    let third = keys.claim("web/0").await.expect("granted again");
    assert!(third.term > second.term, "{third:?} after {second:?}");
    let (third_lease, _) = keys.assert_covered("web/0").await;
    assert_ne!(third_lease, second_lease);
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_after_the_key_moved_to_a_shorter_lease_moves_it_to_a_covering_one() {
    let keys = Keys::connect(&shared_endpoints("renewal_moved"), "renewal-moved").await;
    let first = keys.claim("web/0").await.expect("granted");
    // Rebound, same value, to a 2 s lease: a keep-alive of it could not cover 4 s, and
    // the remembered lease (still alive) no longer holds the key.
    let short = keys.grant(2).await;
    keys.rebind("web/0", short).await;
    let renewed = keys.claim("web/0").await.expect("renewed");
    assert_eq!(renewed.term, first.term, "still the same holding");
    let (lease, _) = keys.assert_covered("web/0").await;
    assert_ne!(lease, short, "moved off the 2 s lease");

    // Rebound to a long lease: the renewal keeps it.
    let long = keys.grant(60).await;
    keys.rebind("web/0", long).await;
    assert_eq!(keys.claim("web/0").await.unwrap().term, first.term);
    assert_eq!(keys.assert_covered("web/0").await.0, long);
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_guards_on_the_term_key_too() {
    let keys = Keys::connect(&shared_endpoints("renewal_term"), "renewal-term").await;
    let first = keys.claim("web/0").await.expect("granted");
    let (_, mod_revision) = keys.assert_covered("web/0").await;
    // The term key deleted by hand: the holding has no term key of this version's kind,
    // so the claim starts a term in place (as the full path always did).
    keys.delete(&keys.term_key).await;
    let renewed = keys.claim("web/0").await.expect("granted");
    assert!(renewed.term > first.term, "{renewed:?} after {first:?}");
    let (_, moved) = keys.assert_covered("web/0").await;
    assert!(moved > mod_revision, "the key was written again");
    // The term key is back, at the new term (a guard on the holder key alone would have
    // renewed under the old term, with no term key).
    let txn = Txn::new().when([Compare::mod_revision(
        keys.term_key.as_str(),
        CompareOp::Equal,
        i64::try_from(renewed.term).unwrap(),
    )]);
    assert!(keys.raw.clone().txn(txn).await.unwrap().succeeded());
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_while_etcd_is_down_fails_then_recovers() {
    let mut etcd = EtcdProcess::start("renewal-restart");
    let keys = Keys::connect(&[etcd.endpoint.clone()], "renewal-restart").await;
    let first = keys.claim("web/0").await.expect("granted");
    keys.claim("web/0").await.expect("renewed");

    etcd.kill();
    // Bounded by a quarter of the claim: 1 s.
    renewal_fails(&keys, "web/0", "etcd down").await;
    etcd.restart();
    // etcd kept the key and its lease (leases are restored on restart with their TTL
    // refreshed). Until the connection is back a claim may still fail; it never grants
    // anything the keys do not show.
    renews_again(&keys, "web/0", first.term).await;
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_whose_keep_alive_stream_broke_sends_it_on_a_new_one() {
    let mut etcd = EtcdProcess::start("renewal-stream");
    let keys = Keys::connect(&[etcd.endpoint.clone()], "renewal-stream").await;
    let first = keys.claim("web/0").await.expect("granted");
    keys.claim("web/0")
        .await
        .expect("renewed: the lease's stream opens");
    keys.claim("web/0").await.expect("renewed on that stream");

    // The stream dies with the connection; etcd keeps the key and its lease.
    etcd.restart();
    poll_until(
        Duration::from_secs(10),
        "both clients to reach etcd again",
        || async {
            let leader = Leader {
                service: SERVICE.into(),
            };
            let through_manager = keys.manager.send(leader).await.unwrap().is_some();
            through_manager && keys.raw.clone().get(keys.key.as_str(), None).await.is_ok()
        },
    )
    .await;
    // The manager's connection works again, but the kept stream is broken: the
    // renewal notices and sends its keep-alive on a new stream, at once.
    let renewed = keys.claim("web/0").await.expect("renewed");
    assert_eq!(renewed.term, first.term);
    keys.assert_covered("web/0").await;
    assert_eq!(keys.claim("web/0").await.unwrap().term, first.term);
    keys.assert_covered("web/0").await;
}

#[actix_rt::test]
#[ignore = "needs etcd: run through .ci/with-etcd cargo test --all-features --test etcd_renewal -- --include-ignored"]
async fn a_renewal_on_a_kept_stream_to_a_frozen_etcd_fails_then_recovers() {
    let etcd = EtcdProcess::start("renewal-frozen");
    let keys = Keys::connect(std::slice::from_ref(&etcd.endpoint), "renewal-frozen").await;
    let first = keys.claim("web/0").await.expect("granted");
    keys.claim("web/0")
        .await
        .expect("renewed: the lease's stream opens");

    // The kept stream's keep-alive (and the transaction) get no answer: the claim's
    // bound (a quarter of the claim, 1 s) ends it, and with it what was remembered.
    etcd.pause();
    renewal_fails(&keys, "web/0", "etcd frozen").await;
    etcd.resume();
    // Back within the lease (frozen about 1 s of its 4 s): the holding is the same.
    renews_again(&keys, "web/0", first.term).await;
}

/// A renewal of `unit` during an outage (`what`) answers `Failed`.
async fn renewal_fails(keys: &Keys, unit: &str, what: &str) {
    match keys.claim(unit).await {
        Err(LeaseError::Failed(_)) => {}
        other => panic!("a renewal with {what}: {other:?}"),
    }
}

/// After an outage: renewals of `unit` fail until the manager reaches etcd again, never
/// answering anything but `Failed` meanwhile, then succeed under the same `term`, and
/// the lease covers the claim; and renewals go on from there.
async fn renews_again(keys: &Keys, unit: &str, term: u64) {
    let answers = std::cell::RefCell::new(Vec::new());
    poll_until(Duration::from_secs(10), "a renewal to succeed", || async {
        let answer = keys.claim(unit).await;
        let ok = answer.is_ok();
        answers.borrow_mut().push(answer);
        ok
    })
    .await;
    for answer in answers.borrow().iter() {
        match answer {
            Ok(grant) => assert_eq!(grant.term, term, "the same holding"),
            Err(LeaseError::Failed(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    keys.assert_covered(unit).await;
    assert_eq!(keys.claim(unit).await.unwrap().term, term);
    keys.assert_covered(unit).await;
}
