//! The public surface, written the way `contract.md` writes it: if a name or a signature
//! drifts from the contract, this file stops compiling. The functions are never called;
//! compiling them is the test.
#![allow(
    dead_code,
    unused_must_use,
    clippy::let_unit_value,
    clippy::let_underscore_future
)]

use actix::prelude::*;
use leadership::manifold::{Manifold, ManifoldConfig, Resources, StartError, Tag};
use leadership::*;
use std::str::FromStr;
use std::time::Duration;
fn _names() {
    let u: Result<UnitName, NameError> = UnitName::new("a/0");
    let u = u.unwrap();
    let _: &str = u.as_str();
    let _: &str = u.service();
    let _: u32 = u.number();
    let _: Result<UnitName, NameError> = UnitName::from_str("a/0");
    let _ = u.to_string();
    let _ = ClaimLeadership {
        service: String::new(),
        unit: String::new(),
        duration: Duration::ZERO,
    };
    let _ = BlockUntilLeadershipReleased {
        service: String::new(),
    };
    let _ = ReleaseLeadership {
        service: String::new(),
        unit: String::new(),
    };
    let _ = Leader {
        service: String::new(),
    };
    let _ = LeaseInfo {
        holder: String::new(),
        expires: tokio::time::Instant::now(),
        term: 0u64,
    };
    let _ = [
        LeaseError::ClaimDenied,
        LeaseError::NotHeld {
            unit: String::new(),
        },
        LeaseError::BlockCancelled,
        LeaseError::Invalid(String::new()),
        LeaseError::Failed(String::new()),
    ];
    let _ = [
        TrackerError::LeadershipFailure(LeaseError::ClaimDenied),
        TrackerError::InvalidDuration(Duration::ZERO),
    ];
    let _: ManagerActor = ManagerActor::new();
    let _: ManagerActor = Default::default();
    let _ = ManagerActor::recovering(Duration::from_secs(1));
    let _ = Tag::Unit(u.clone());
    let _ = Tag::Machine("0".into());
    let _: Result<Tag, _> = "machine-0".parse::<Tag>();
    let _ = ManifoldConfig {
        agent_name: String::new(),
        api_caller_name: String::new(),
        leadership_guarantee: Duration::ZERO,
    };
    let mut r: Resources = Resources::new();
    r.insert("a", 1u8);
    let _: Result<u8, StartError> = r.get::<u8>("a");
}
fn _with_addr(
    addr: &Addr<ManagerActor>,
    claim: Recipient<ClaimLeadership>,
    block: Recipient<BlockUntilLeadershipReleased>,
) {
    let c: Claimer = Claimer::new(addr);
    let _: Claimer = Claimer::from_recipients(claim, block);
    let t: Result<Tracker, TrackerError> = Tracker::start(
        UnitName::new("a/0").unwrap(),
        c.clone(),
        Duration::from_secs(1),
    );
    let _: Result<TrackerActor, TrackerError> = TrackerActor::new(
        UnitName::new("a/0").unwrap(),
        c.clone(),
        Duration::from_secs(1),
    );
    let _: Result<Tracker, TrackerError> =
        Tracker::start_supervised(UnitName::new("a/0").unwrap(), c, Duration::from_secs(1));
    let t = t.unwrap();
    let _: &str = t.service_name();
    let _: &UnitName = t.unit_name();
    let _: Duration = t.claim_duration();
    let tk: Ticket = t.claim_leader();
    let _: Ticket = t.wait_leader();
    let _: Ticket = t.wait_minion();
    let _: Addr<TrackerActor> = t.addr();
    let _: tokio::sync::watch::Receiver<Status> = t.status();
    let _: TrackerError = TrackerError::InvalidSuccessor(String::new());
    t.kill();
    let _ = async move {
        let _: Result<(), TrackerError> = t.resign().await;
        let _: Result<(), TrackerError> = t.hand_over(UnitName::new("a/1").unwrap()).await;
        let _: Option<u64> = t.lead(|g: Guarantee| async move { g.term }).await;
        let _: Result<(), TrackerError> = t.wait().await;
        let _: bool = tk.wait().await;
        let _: Option<bool> = tk.try_wait();
        let _: bool = tk.await;
    };
    let m = Manifold::new(ManifoldConfig {
        agent_name: String::new(),
        api_caller_name: String::new(),
        leadership_guarantee: Duration::ZERO,
    });
    let _: Vec<String> = m.inputs();
    let _: Result<Tracker, StartError> = m.start(&Resources::new());
    fn sendsync<T: Send + Sync + 'static + std::fmt::Debug + Clone>() {}
    sendsync::<Ticket>();
    sendsync::<Tag>();
    sendsync::<Claimer>();
    sendsync::<Tracker>();
    fn msg<M: Message<Result = Ticket>>() {}
    msg::<ClaimLeader>();
    msg::<WaitLeader>();
    msg::<WaitMinion>();
    fn stop<M: Message<Result = ()>>() {}
    stop::<StopTracker>();
    fn resign<M: Message<Result = Result<(), TrackerError>>>() {}
    resign::<Resign>();
    let status = Status::Claiming;
    let _ = matches!(
        status,
        Status::Claiming | Status::Leader(_) | Status::Minion | Status::Resigning | Status::Stopped
    );
}
#[test]
fn the_contracts_surface_compiles_as_written() {
    // The assertions are the type annotations above; this test exists so that the
    // file is built by `cargo test` and reported as run.
    assert_eq!(UnitName::new("led-service/123").unwrap().number(), 123);
}
