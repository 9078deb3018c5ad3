//! Model-based tests.
//!
//! - `ManagerActor` against a reference model of contract §3: random sequences of
//!   claims, releases, blocks, time advances and leader queries, on a clock that
//!   starts paused (so every expiry is exact), must agree with a map
//!   `service → (holder, expiry, term)` after every step. A `WatchLeader` receiver per
//!   service (dropped and taken anew now and then) must show, before anything asks
//!   the manager, the holder and term `Leader` then reports: changes are pushed, expiries
//!   included; and the terms it shows never decrease.
//! - `UnitName::new` never panics, agrees with a reference reading of contract §1, and
//!   round-trips what it accepts.
//! - `Tag` parsing never panics, round-trips what it accepts (display, then parse), and
//!   quotes what it rejects; every unit name's tag round-trips.

mod paused;
#[path = "common/settle.rs"]
mod settle;
#[path = "common/until.rs"]
mod until;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, Leader, LeaseError, LeaseInfo, ManagerActor,
    ReleaseLeadership, Tag, UnitName, WatchLeader,
};
use proptest::prelude::*;
use settle::settle;
use tokio::time::Instant;
use until::until;

/// The services the model test uses; both valid, the second with a hyphen.
const SERVICES: [&str; 2] = ["alpha", "beta-x2"];
/// Units per service: `<service>/0` … `<service>/2`.
const UNITS: u32 = 3;

/// One step of a model test.
#[derive(Debug, Clone)]
enum Op {
    /// `ClaimLeadership` by `unit` of `service` for `ms` (0 is invalid).
    Claim { service: usize, unit: u32, ms: u64 },
    /// A claim naming a unit of the *other* service: always `Invalid`.
    ClaimForeign { service: usize, unit: u32 },
    /// `ReleaseLeadership`.
    Release { service: usize, unit: u32 },
    /// `BlockUntilLeadershipReleased`, left pending in a task of its own.
    Block { service: usize },
    /// Let `ms` of paused time pass.
    Advance { ms: u64 },
    /// `Leader` (also checked after every step).
    Leader { service: usize },
    /// Drop the service's `WatchLeader` receiver and take a new one.
    Rewatch { service: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let service = 0..SERVICES.len();
    prop_oneof![
        4 => (service.clone(), 0..UNITS, 0u64..=3_000)
            .prop_map(|(service, unit, ms)| Op::Claim { service, unit, ms }),
        1 => (service.clone(), 0..UNITS)
            .prop_map(|(service, unit)| Op::ClaimForeign { service, unit }),
        2 => (service.clone(), 0..UNITS).prop_map(|(service, unit)| Op::Release { service, unit }),
        2 => service.clone().prop_map(|service| Op::Block { service }),
        // Short steps land on and around expiries, long ones jump past them.
        4 => prop_oneof![0u64..=5, 0u64..=2_500].prop_map(|ms| Op::Advance { ms }),
        1 => service.clone().prop_map(|service| Op::Leader { service }),
        1 => service.prop_map(|service| Op::Rewatch { service }),
    ]
}

fn unit_name(service: usize, unit: u32) -> String {
    format!("{}/{unit}", SERVICES[service])
}

/// The reference model's lease of one service. Invariant after every step: live
/// (`now < expires`); an expired lease is removed when time passes its expiry.
#[derive(Debug, Clone, Copy)]
struct ModelLease {
    holder: u32,
    /// Milliseconds since the start of the test.
    expires: u64,
    /// The term the manager reported for this grant, once seen.
    term: Option<u64>,
}

/// Contract §3 as plain data.
#[derive(Debug, Default)]
struct Model {
    now: u64,
    leases: [Option<ModelLease>; 2],
    /// The highest term seen per service: a new holder's must exceed it.
    max_term: [u64; 2],
    /// Blocks sent so far: their service, and whether they must have been answered.
    blocks: Vec<(usize, bool)>,
}

impl Model {
    fn claim(&mut self, service: usize, unit: u32, ms: u64) -> Result<(), LeaseError> {
        if ms == 0 {
            return Err(LeaseError::Invalid(
                "claim duration must be positive".into(),
            ));
        }
        let wanted = self.now + ms;
        match &mut self.leases[service] {
            Some(lease) if lease.holder == unit => {
                // Extension: never shortens, keeps the term.
                lease.expires = lease.expires.max(wanted);
                Ok(())
            }
            Some(_) => Err(LeaseError::ClaimDenied),
            slot @ None => {
                *slot = Some(ModelLease {
                    holder: unit,
                    expires: wanted,
                    term: None,
                });
                Ok(())
            }
        }
    }

    fn release(&mut self, service: usize, unit: u32) -> Result<(), LeaseError> {
        match self.leases[service] {
            Some(lease) if lease.holder == unit => {
                self.end(service);
                Ok(())
            }
            _ => Err(LeaseError::NotHeld {
                unit: unit_name(service, unit),
            }),
        }
    }

    fn block(&mut self, service: usize) {
        let answered = self.leases[service].is_none();
        self.blocks.push((service, answered));
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for service in 0..SERVICES.len() {
            if self.leases[service].is_some_and(|lease| self.now >= lease.expires) {
                self.end(service);
            }
        }
    }

    /// The lease of `service` ends (expiry or release): its blocks are answered.
    fn end(&mut self, service: usize) {
        self.leases[service] = None;
        for (s, answered) in &mut self.blocks {
            *answered |= *s == service;
        }
    }
}

/// Where a block's task puts the answer once it arrives.
type BlockAnswer = Rc<RefCell<Option<Result<(), LeaseError>>>>;

/// A `ManagerActor` under test, and the answers of its pending blocks.
struct Subject {
    manager: Addr<ManagerActor>,
    start: Instant,
    blocks: Vec<BlockAnswer>,
    /// A `WatchLeader` receiver per service, and the greatest term it has shown.
    watches: Vec<(tokio::sync::watch::Receiver<Option<LeaseInfo>>, u64)>,
}

/// A `WatchLeader` receiver of the service.
async fn watch(
    manager: &Addr<ManagerActor>,
    service: usize,
) -> tokio::sync::watch::Receiver<Option<LeaseInfo>> {
    manager
        .send(WatchLeader {
            service: SERVICES[service].into(),
        })
        .await
        .expect("manager runs")
        .expect("a valid service")
}

impl Subject {
    async fn apply(&mut self, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Claim { service, unit, ms } => {
                let claim = ClaimLeadership {
                    service: SERVICES[service].into(),
                    unit: unit_name(service, unit),
                    duration: Duration::from_millis(ms),
                };
                let got = self.manager.send(claim).await.expect("manager runs");
                // The granted term must be the one `Leader` reports for the lease.
                if let Ok(granted) = &got {
                    let lease = self.manager.send(Leader {
                        service: SERVICES[service].into(),
                    });
                    let lease = lease.await.expect("manager runs");
                    prop_assert_eq!(lease.map(|l| l.term), Some(granted.term), "{:?}", op);
                }
                let got = got.map(|_| ());
                let want = model.claim(service, unit, ms);
                match (&got, &want) {
                    (Err(LeaseError::Invalid(_)), Err(LeaseError::Invalid(_))) => {}
                    _ => prop_assert_eq!(got, want, "{:?}", op),
                }
            }
            Op::ClaimForeign { service, unit } => {
                let claim = ClaimLeadership {
                    service: SERVICES[service].into(),
                    unit: unit_name(1 - service, unit),
                    duration: Duration::from_secs(1),
                };
                let got = self.manager.send(claim).await.expect("manager runs");
                prop_assert!(matches!(got, Err(LeaseError::Invalid(_))), "{:?}", got);
            }
            Op::Release { service, unit } => {
                let release = ReleaseLeadership {
                    service: SERVICES[service].into(),
                    unit: unit_name(service, unit),
                };
                let got = self.manager.send(release).await.expect("manager runs");
                prop_assert_eq!(got, model.release(service, unit), "{:?}", op);
            }
            Op::Block { service } => {
                let answer = Rc::new(RefCell::new(None));
                let block = self.manager.send(BlockUntilLeadershipReleased {
                    service: SERVICES[service].into(),
                });
                let slot = Rc::clone(&answer);
                actix_rt::spawn(async move {
                    let got = block.await.expect("manager runs");
                    *slot.borrow_mut() = Some(got);
                });
                self.blocks.push(answer);
                model.block(service);
            }
            Op::Advance { ms } => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                model.advance(ms);
            }
            Op::Leader { service } => {
                // Every lease is compared in full below; this asks out of turn.
                let got = self
                    .manager
                    .send(Leader {
                        service: SERVICES[service].into(),
                    })
                    .await
                    .expect("manager runs");
                let want = model.leases[service].map(|lease| unit_name(service, lease.holder));
                prop_assert_eq!(got.map(|info| info.holder), want);
            }
            Op::Rewatch { service } => {
                let fresh = watch(&self.manager, service).await;
                self.watches[service].0 = fresh;
            }
        }
        // What must have happened by now: the blocks the model answered are answered,
        // and every watch shows the model's holder.
        until("the answers and pushes the model expects", || {
            self.caught_up(model)
        })
        .await;
        // What must not have (a block answered early), `check` finds after a settle.
        settle().await;
        self.check(model).await
    }

    /// Whether every block the model answered has its answer and every watch shows the
    /// model's holder.
    fn caught_up(&self, model: &Model) -> bool {
        let blocks = self
            .blocks
            .iter()
            .zip(&model.blocks)
            .all(|(answer, (_, answered))| !*answered || answer.borrow().is_some());
        let watches = self.watches.iter().enumerate().all(|(service, (rx, _))| {
            let shown = rx.borrow().as_ref().map(|lease| lease.holder.clone());
            shown == model.leases[service].map(|lease| unit_name(service, lease.holder))
        });
        blocks && watches
    }

    /// Compares every lease and every block with the model.
    async fn check(&mut self, model: &mut Model) -> Result<(), TestCaseError> {
        let now = Instant::now();
        prop_assert_eq!(now - self.start, Duration::from_millis(model.now));
        // What the watches show before anything asks (a `Leader` query would reap an
        // expired lease itself): pushed changes only.
        let shown: Vec<Option<(String, u64)>> = self
            .watches
            .iter_mut()
            .map(|(rx, _)| {
                rx.borrow_and_update()
                    .as_ref()
                    .map(|lease| (lease.holder.clone(), lease.term))
            })
            .collect();
        for (service, name) in SERVICES.iter().enumerate() {
            let got = self
                .manager
                .send(Leader {
                    service: (*name).into(),
                })
                .await
                .expect("manager runs");
            let reported = got.as_ref().map(|info| (info.holder.clone(), info.term));
            prop_assert_eq!(&shown[service], &reported, "{}: watch vs Leader", name);
            let greatest = &mut self.watches[service].1;
            if let Some((_, term)) = &reported {
                prop_assert!(
                    *term >= *greatest,
                    "{}: term {} after {}",
                    name,
                    term,
                    greatest
                );
                *greatest = *term;
            }
            let want = &mut model.leases[service];
            match (got, want) {
                (None, None) => {}
                (Some(info), Some(lease)) => {
                    prop_assert_eq!(&info.holder, &unit_name(service, lease.holder));
                    prop_assert_eq!(
                        info.expires - self.start,
                        Duration::from_millis(lease.expires)
                    );
                    match lease.term {
                        // The same grant, extended or not: the same term.
                        Some(term) => prop_assert_eq!(info.term, term),
                        // A new grant: a term above every earlier one of the service.
                        None => {
                            prop_assert!(info.term > model.max_term[service]);
                            lease.term = Some(info.term);
                            model.max_term[service] = info.term;
                        }
                    }
                }
                (got, want) => prop_assert!(
                    false,
                    "{}: manager {:?}, model {:?}",
                    SERVICES[service],
                    got,
                    want
                ),
            }
        }
        for (n, (answer, (_, answered))) in self.blocks.iter().zip(&model.blocks).enumerate() {
            let got = answer.borrow().clone();
            match got {
                Some(result) => {
                    prop_assert!(*answered, "block {} answered early: {:?}", n, result);
                    prop_assert_eq!(result, Ok(()));
                }
                None => prop_assert!(!*answered, "block {} still pending", n),
            }
        }
        Ok(())
    }
}

/// Runs `ops` against a fresh manager on a clock that starts paused (on tokio's
/// millisecond grid, so every expiry fires exactly on time).
fn run_model(ops: &[Op]) -> Result<(), TestCaseError> {
    paused::PausedSystem::new().block_on(async {
        let manager = ManagerActor::new().start();
        let mut watches = Vec::new();
        for service in 0..SERVICES.len() {
            watches.push((watch(&manager, service).await, 0));
        }
        let mut subject = Subject {
            manager,
            start: Instant::now(),
            blocks: Vec::new(),
            watches,
        };
        let mut model = Model::default();
        for op in ops {
            subject.apply(&mut model, op).await?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn manager_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        run_model(&ops)?;
    }
}

/// Contract §1, read independently of the implementation.
fn reference_accepts(s: &str) -> bool {
    let Some((service, number)) = s.split_once('/') else {
        return false;
    };
    let service_ok = service.starts_with(|c: char| c.is_ascii_lowercase())
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && service.split('-').all(|segment| !segment.is_empty())
        && service
            .split('-')
            .skip(1)
            .all(|segment| segment.bytes().any(|b| b.is_ascii_lowercase()));
    let number_ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'))
        && number.parse::<u32>().is_ok();
    service_ok && number_ok
}

fn check_unit_name(s: &str) -> Result<(), TestCaseError> {
    let parsed = UnitName::new(s);
    prop_assert_eq!(
        parsed.is_ok(),
        reference_accepts(s),
        "{:?}: {:?}",
        s,
        parsed
    );
    prop_assert_eq!(s.parse::<UnitName>(), parsed.clone());
    match parsed {
        Ok(unit) => {
            prop_assert_eq!(UnitName::new(unit.as_str()), Ok(unit.clone()));
            prop_assert_eq!(unit.to_string(), s);
            prop_assert_eq!(unit.as_str(), s);
            prop_assert_eq!(format!("{}/{}", unit.service(), unit.number()), s);
        }
        Err(e) => {
            let quoted = format!("{s:?}");
            prop_assert!(
                e.to_string().contains(&quoted),
                "{} does not quote {}",
                e,
                quoted
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn unit_name_never_panics_on_arbitrary_strings(s in any::<String>()) {
        check_unit_name(&s)?;
    }

    #[test]
    fn unit_name_agrees_with_the_contract_on_near_valid_strings(
        s in "[a-z0-9A-Z_-]{0,3}(-?[a-z0-9]{0,3}){0,3}/?[0-9+-]{0,11}(/[0-9])?"
    ) {
        check_unit_name(&s)?;
    }
}

#[test]
fn reference_reading_of_the_contract_examples() {
    for good in ["led-service/123", "a/0", "mysql/7", "a1-b2/4294967295"] {
        assert!(reference_accepts(good), "{good}");
    }
    for bad in [
        "",
        "mysql",
        "MySQL/0",
        "my_sql/0",
        "mysql/x",
        "mysql/-1",
        "mysql/0/1",
        "1mysql/0",
        "mysql/007",
        "a--b/0",
        "a-/0",
        "a-1/0",
        "a/4294967296",
        "a/+1",
    ] {
        assert!(!reference_accepts(bad), "{bad}");
    }
}

/// `Tag` parsing never panics, and whatever it accepts displays back to the input and
/// parses again to the same tag.
fn check_tag(s: &str) -> Result<(), TestCaseError> {
    if let Ok(tag) = s.parse::<Tag>() {
        prop_assert_eq!(tag.to_string(), s, "display round-trips");
        prop_assert_eq!(tag.to_string().parse::<Tag>(), Ok(tag.clone()));
        if let Tag::Unit(unit) = &tag {
            prop_assert_eq!(format!("unit-{}-{}", unit.service(), unit.number()), s);
        }
    } else {
        let err = s.parse::<Tag>().unwrap_err();
        prop_assert!(
            err.to_string().contains(&format!("{s:?}")),
            "quotes the input: {err}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tag_never_panics_on_arbitrary_strings(s in any::<String>()) {
        check_tag(&s)?;
    }

    #[test]
    fn tag_round_trips_near_valid_strings(
        s in "(unit|machine|application|user)-[a-z0-9-]{0,12}(-[0-9]{1,3})?(-lxd-[0-9]{1,2})?"
    ) {
        check_tag(&s)?;
    }

    #[test]
    fn every_unit_name_has_a_tag_that_round_trips(
        service in "[a-z][a-z0-9]{0,6}(-[a-z][a-z0-9]{0,4}){0,2}", number in any::<u32>()
    ) {
        let unit = UnitName::new(&format!("{service}/{number}")).unwrap();
        let tag = Tag::Unit(unit.clone());
        prop_assert_eq!(tag.to_string().parse::<Tag>(), Ok(tag));
    }
}
