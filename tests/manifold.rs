//! The Manifold: starting a supervised tracker from an agent's named resources.

use std::time::Duration;

use leadership::manifold::{Manifold, ManifoldConfig, Resources, StartError, Tag};
use leadership::testing::StubManager;
use leadership::{Claimer, TrackerError, UnitName};

fn manifold(guarantee: Duration) -> Manifold {
    Manifold::new(ManifoldConfig {
        agent_name: "agent".into(),
        api_caller_name: "api-caller".into(),
        leadership_guarantee: guarantee,
    })
}

fn resources(tag: &str, claimer: Claimer) -> Resources {
    let mut resources = Resources::new();
    resources.insert("agent", tag.parse::<Tag>().unwrap());
    resources.insert("api-caller", claimer);
    resources
}

#[test]
fn inputs_are_the_agent_then_the_api_caller() {
    assert_eq!(
        manifold(Duration::from_secs(30)).inputs(),
        vec!["agent".to_owned(), "api-caller".to_owned()]
    );
}

#[actix_rt::test]
async fn starts_a_supervised_tracker_for_the_agents_unit() {
    tokio::time::pause();
    let stub = StubManager::start();
    let tracker = manifold(Duration::from_secs(30))
        .start(&resources("unit-led-service-123", stub.claimer()))
        .unwrap();
    assert_eq!(
        tracker.unit_name(),
        &UnitName::new("led-service/123").unwrap()
    );
    assert_eq!(tracker.service_name(), "led-service");
    assert_eq!(tracker.claim_duration(), Duration::from_secs(30));
    assert!(tracker.wait_leader().await);
    let (claim, _) = &stub.claims()[0];
    assert_eq!(claim.unit, "led-service/123");
    assert_eq!(claim.duration, Duration::from_secs(60));

    // Supervised: a failure restarts it rather than stopping it.
    stub.set_default(leadership::testing::StubAnswer::Fail(
        leadership::LeaseError::Failed("pow".into()),
    ));
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(stub.claim_count() > 2, "restarted and claimed again");
    assert_eq!(
        futures::poll!(Box::pin(tracker.wait())),
        std::task::Poll::Pending
    );
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));
}

#[actix_rt::test]
async fn a_missing_dependency_is_named() {
    let stub = StubManager::start();
    let mut only_agent = Resources::new();
    only_agent.insert("agent", "unit-a-0".parse::<Tag>().unwrap());
    let err = manifold(Duration::from_secs(1))
        .start(&only_agent)
        .unwrap_err();
    assert_eq!(err, StartError::Missing("api-caller".into()));
    assert_eq!(err.to_string(), "missing dependency \"api-caller\"");

    // Looked up in inputs() order: with both missing, the agent is reported.
    let err = manifold(Duration::from_secs(1))
        .start(&Resources::new())
        .unwrap_err();
    assert_eq!(err, StartError::Missing("agent".into()));
    assert_eq!(stub.claim_count(), 0);
}

#[actix_rt::test]
async fn a_dependency_of_the_wrong_type_is_named_with_both_types() {
    let stub = StubManager::start();
    let mut resources = Resources::new();
    resources.insert("agent", "unit-a-0".to_owned()); // a String, not a Tag
    resources.insert("api-caller", stub.claimer());
    let err = manifold(Duration::from_secs(1))
        .start(&resources)
        .unwrap_err();
    let StartError::WrongType {
        name,
        expected,
        found,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(name, "agent");
    assert!(expected.ends_with("Tag"), "{expected}");
    assert!(found.ends_with("String"), "{found}");
    assert!(
        err.to_string().starts_with("dependency \"agent\" is a "),
        "{err}"
    );

    let mut resources = Resources::new();
    resources.insert("agent", "unit-a-0".parse::<Tag>().unwrap());
    resources.insert("api-caller", 42u32);
    let err = manifold(Duration::from_secs(1))
        .start(&resources)
        .unwrap_err();
    assert!(
        matches!(&err, StartError::WrongType { name, .. } if name == "api-caller"),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn a_non_unit_agent_is_refused() {
    let stub = StubManager::start();
    for (tag, message) in [
        ("machine-0", "expected a unit tag; got \"machine-0\""),
        (
            "application-led-service",
            "expected a unit tag; got \"application-led-service\"",
        ),
    ] {
        let err = manifold(Duration::from_secs(1))
            .start(&resources(tag, stub.claimer()))
            .unwrap_err();
        assert_eq!(err, StartError::NotAUnit(tag.into()));
        assert_eq!(err.to_string(), message);
    }
    assert_eq!(stub.claim_count(), 0);
}

#[actix_rt::test]
async fn an_invalid_guarantee_is_a_tracker_error() {
    let stub = StubManager::start();
    let err = manifold(Duration::ZERO)
        .start(&resources("unit-a-0", stub.claimer()))
        .unwrap_err();
    assert_eq!(
        err,
        StartError::Tracker(TrackerError::InvalidDuration(Duration::ZERO))
    );
    assert_eq!(err.to_string(), "invalid claim duration 0ns");
}

#[test]
fn resources_read_back_by_name_and_type_and_replace_by_name() {
    let mut resources = Resources::new();
    resources.insert("n", 1u32);
    assert_eq!(resources.get::<u32>("n"), Ok(1));
    resources.insert("n", 2u32);
    assert_eq!(resources.get::<u32>("n"), Ok(2));
    assert!(matches!(
        resources.get::<u64>("n"),
        Err(StartError::WrongType { .. })
    ));
    assert_eq!(
        resources.get::<u32>("m"),
        Err(StartError::Missing("m".into()))
    );
    assert!(format!("{resources:?}").contains("\"n\""));
}
