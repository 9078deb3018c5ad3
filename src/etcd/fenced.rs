//! Fenced writes: etcd operations that commit only under the current leader's term.

use actix::prelude::*;
use etcd_client::{TxnOp, TxnResponse};

/// Runs `ops` in one etcd transaction that commits only while `service`'s leader key
/// still carries `term` — for a leader that keeps its own state in the same etcd.
///
/// `term` is the one the leader was granted: [`Guarantee::term`](crate::Guarantee) of a
/// `true` ticket, or [`LeaseInfo::term`](crate::LeaseInfo). etcd checks the term in the
/// same transaction that applies `ops`, so a leader that stalled past its lease (a GC
/// pause, SIGSTOP) and writes after another unit took over is turned back whatever the
/// timing: no write under an old term lands once a new term has begun, nor after the
/// lease ended (expiry or release). Answers the committed transaction's response, whose
/// [`op_responses`](TxnResponse::op_responses) are those of `ops`, in order.
///
/// `ops` must not touch the manager's own keys (`<prefix>/<service>` and
/// `<prefix>/<service>/term`): that would corrupt the leases.
///
/// ```no_run
/// # async fn demo(manager: actix::Addr<leadership::etcd::EtcdManager>, term: u64)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use leadership::etcd::etcd_client::TxnOp;
/// use leadership::etcd::{FencedTxn, FencedTxnError};
///
/// let write = FencedTxn::new("web", term, vec![TxnOp::put("/app/web/config", "v2", None)]);
/// match manager.send(write).await? {
///     Ok(_) => println!("written under term {term}"),
///     Err(FencedTxnError::StaleTerm { current, .. }) => {
///         println!("no longer the leader (current term {current:?}): nothing written")
///     }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<TxnResponse, FencedTxnError>")]
pub struct FencedTxn {
    /// The service whose leader writes, e.g. `"web"`.
    pub service: String,
    /// The writer's term; greater than zero.
    pub term: u64,
    /// The operations to apply, all or none.
    pub ops: Vec<TxnOp>,
}

impl FencedTxn {
    /// A fenced transaction of `ops` for `service` under `term`.
    pub fn new(service: impl Into<String>, term: u64, ops: Vec<TxnOp>) -> FencedTxn {
        FencedTxn {
            service: service.into(),
            term,
            ops,
        }
    }
}

/// Why a [`FencedTxn`] wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FencedTxnError {
    /// The request is malformed (an invalid service name, a term of 0 or beyond etcd's
    /// revisions); nothing was sent to etcd.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// `term` is not the term of `service`'s live lease: another unit leads under a
    /// newer term, or nobody leads (the lease expired or was released), or the term was
    /// never granted. etcd applied none of the operations.
    #[error(
        "stale leadership term {term} of {service}: {}",
        describe(holder, current)
    )]
    StaleTerm {
        /// The service written to.
        service: String,
        /// The term the write carried.
        term: u64,
        /// Who held the lease when etcd refused the write, if anyone.
        holder: Option<String>,
        /// The term of that holding, if any.
        current: Option<u64>,
    },
    /// etcd could not be asked or did not answer in time. The transaction may or may not
    /// have committed (it commits only under `term`, whatever the timing).
    #[error("{0}")]
    Failed(String),
}

fn describe(holder: &Option<String>, current: &Option<u64>) -> String {
    match (holder, current) {
        (Some(holder), Some(term)) => format!("{holder} leads under term {term}"),
        _ => "nobody leads".to_owned(),
    }
}

/// Validates a fenced write's term: etcd revisions are positive `i64`s.
pub(super) fn check_term(term: u64) -> Result<i64, FencedTxnError> {
    match i64::try_from(term) {
        Ok(t) if t > 0 && t < i64::MAX => Ok(t),
        _ => Err(FencedTxnError::Invalid(format!(
            "fencing term {term} is not a term etcd can grant (1 ..= {})",
            i64::MAX - 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_out_of_range_are_invalid() {
        for bad in [0, i64::MAX as u64, u64::MAX] {
            assert!(
                matches!(check_term(bad), Err(FencedTxnError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(check_term(1), Ok(1));
        assert_eq!(check_term(12_345), Ok(12_345));
    }

    #[test]
    fn a_stale_term_says_who_leads_now() {
        let e = FencedTxnError::StaleTerm {
            service: "web".into(),
            term: 7,
            holder: Some("web/1".into()),
            current: Some(9),
        };
        assert_eq!(
            e.to_string(),
            "stale leadership term 7 of web: web/1 leads under term 9"
        );
        let e = FencedTxnError::StaleTerm {
            service: "web".into(),
            term: 7,
            holder: None,
            current: None,
        };
        assert_eq!(
            e.to_string(),
            "stale leadership term 7 of web: nobody leads"
        );
    }
}
