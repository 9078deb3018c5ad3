//! The claim decision as a pure function: what a claim found in etcd (one consistent
//! read of the holder key and the term key) and which guarded transaction follows.
//!
//! Kept apart from the etcd calls so that every case is tested without a server.

/// The holder key as a claim read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    /// The unit named in the key's value.
    pub(super) unit: Vec<u8>,
    /// The etcd lease the key is bound to (0: none, written by hand).
    pub(super) lease: i64,
    /// The key's mod revision: the guard of any write that must see this exact key.
    pub(super) mod_revision: i64,
    /// The key's create revision.
    pub(super) create_revision: i64,
}

/// One consistent read (a single etcd revision) of a service's two keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Snapshot {
    /// The holder key, if present.
    pub(super) holder: Option<Holder>,
    /// The term key's mod revision (0 when absent): the revision of the transaction that
    /// last changed the holder.
    pub(super) term_revision: i64,
    /// The revision the read saw.
    pub(super) revision: i64,
}

impl Snapshot {
    /// The current holder's term, if there is a holder.
    ///
    /// Every change of holder writes the term key in the same transaction as the holder
    /// key, so the term key's mod revision is the revision at which the current holding
    /// began. A holder key written without the term key (by an older version of this
    /// crate, or after the term key was deleted by hand) began at its create revision at
    /// the latest; the greater of the two is right in both cases.
    pub(super) fn term(&self) -> Option<u64> {
        self.holder
            .as_ref()
            .map(|h| u64::try_from(self.term_revision.max(h.create_revision)).unwrap_or(0))
    }
}

/// The precondition of a transaction that makes a unit the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guard {
    /// The holder key must be absent (create revision 0).
    Absent,
    /// The holder key must be exactly as read (this mod revision).
    At(i64),
}

/// What a claim does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Another unit holds the key: `ClaimDenied`.
    Deny,
    /// Start a new term: bind a new lease and write the holder key and the term key in
    /// one transaction guarded by `guard`. The term is that transaction's revision.
    Take {
        /// The guard of the transaction.
        guard: Guard,
        /// The lease the key was bound to until now, to revoke once moved (0: none).
        old_lease: i64,
    },
    /// The claimant holds the key under `term`: extend its lease, keeping the term.
    Extend {
        /// The term the holding keeps.
        term: u64,
        /// The key's lease.
        lease: i64,
        /// The key's mod revision, the guard of the extension.
        mod_revision: i64,
    },
}

/// Decides a claim by `unit` from what it read.
pub(super) fn decide(found: &Snapshot, unit: &str) -> Decision {
    let Some(holder) = &found.holder else {
        return Decision::Take {
            guard: Guard::Absent,
            old_lease: 0,
        };
    };
    if holder.unit != unit.as_bytes() {
        return Decision::Deny;
    }
    if found.term_revision < holder.create_revision {
        // The holding began without writing the term key (an older writer): start a
        // term of this version's kind in place, so fenced writes can check it.
        return Decision::Take {
            guard: Guard::At(holder.mod_revision),
            old_lease: holder.lease,
        };
    }
    Decision::Extend {
        term: found.term().unwrap_or(0),
        lease: holder.lease,
        mod_revision: holder.mod_revision,
    }
}

/// What a claim does with a key it holds whose lease etcd no longer knows (expired but
/// not yet deleted: etcd reaps expired leases every ~0.5 s): the holding lapsed, so it
/// starts a new term in place rather than extending the old one.
pub(super) fn retake_lapsed(mod_revision: i64, lease: i64) -> Decision {
    Decision::Take {
        guard: Guard::At(mod_revision),
        old_lease: lease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(unit: &str, create_revision: i64, mod_revision: i64) -> Holder {
        Holder {
            unit: unit.as_bytes().to_vec(),
            lease: 77,
            mod_revision,
            create_revision,
        }
    }

    fn snapshot(holder: Option<Holder>, term_revision: i64) -> Snapshot {
        Snapshot {
            holder,
            term_revision,
            revision: 100,
        }
    }

    #[test]
    fn a_free_service_is_taken_guarded_on_the_key_being_absent() {
        for term_revision in [0, 5, 99] {
            let found = snapshot(None, term_revision);
            assert_eq!(found.term(), None);
            assert_eq!(
                decide(&found, "web/0"),
                Decision::Take {
                    guard: Guard::Absent,
                    old_lease: 0
                }
            );
        }
    }

    #[test]
    fn another_holder_is_a_denial() {
        let found = snapshot(Some(holder("web/1", 10, 12)), 10);
        assert_eq!(decide(&found, "web/0"), Decision::Deny);
        // A prefix of the holder's name is another unit, not the holder.
        let found = snapshot(Some(holder("web/10", 10, 12)), 10);
        assert_eq!(decide(&found, "web/1"), Decision::Deny);
    }

    #[test]
    fn the_holder_extends_under_the_term_key_revision() {
        // Granted at 10 (both keys written), extended at 12 (holder moved to a new lease).
        let found = snapshot(Some(holder("web/0", 10, 12)), 10);
        assert_eq!(found.term(), Some(10));
        assert_eq!(
            decide(&found, "web/0"),
            Decision::Extend {
                term: 10,
                lease: 77,
                mod_revision: 12
            }
        );
        // Handed over at 15: the key keeps create revision 10, the term is 15.
        let found = snapshot(Some(holder("web/0", 10, 15)), 15);
        assert_eq!(found.term(), Some(15));
        assert_eq!(
            decide(&found, "web/0"),
            Decision::Extend {
                term: 15,
                lease: 77,
                mod_revision: 15
            }
        );
    }

    #[test]
    fn a_holding_without_its_term_key_starts_a_term_in_place() {
        // Written by an older writer at 20 while the term key says 10 (or is absent).
        for term_revision in [0, 10] {
            let found = snapshot(Some(holder("web/0", 20, 21)), term_revision);
            assert_eq!(found.term(), Some(20), "the create revision, as before");
            assert_eq!(
                decide(&found, "web/0"),
                Decision::Take {
                    guard: Guard::At(21),
                    old_lease: 77
                }
            );
        }
    }

    #[test]
    fn a_lapsed_holding_is_taken_again_in_place() {
        assert_eq!(
            retake_lapsed(21, 77),
            Decision::Take {
                guard: Guard::At(21),
                old_lease: 77
            }
        );
    }
}
