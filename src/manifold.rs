//! Composing a tracker into an agent: [`Manifold`] starts a supervised [`Tracker`] from
//! named dependencies ([`Resources`]), the way juju's dependency engine starts its
//! leadership worker from the agent's name and its API connection.
//!
//! ```
//! use std::time::Duration;
//! use actix::Actor;
//! use leadership::manifold::{Manifold, ManifoldConfig, Resources, Tag};
//! use leadership::{Claimer, ManagerActor};
//!
//! # actix::System::new().block_on(async {
//! let manifold = Manifold::new(ManifoldConfig {
//!     agent_name: "agent".into(),
//!     api_caller_name: "api-caller".into(),
//!     leadership_guarantee: Duration::from_secs(30),
//! });
//! assert_eq!(manifold.inputs(), ["agent", "api-caller"]);
//!
//! let mut resources = Resources::new();
//! resources.insert("agent", "unit-led-service-0".parse::<Tag>().unwrap());
//! resources.insert("api-caller", Claimer::new(&ManagerActor::new().start()));
//! let tracker = manifold.start(&resources).unwrap();
//! assert_eq!(tracker.unit_name().as_str(), "led-service/0");
//! assert!(tracker.wait_leader().await);
//! tracker.kill();
//! # });
//! ```

use std::any::{type_name, Any};
use std::collections::HashMap;
use std::time::Duration;

pub use crate::names::{Tag, TagError};
use crate::protocol::Claimer;
use crate::tracker::{Tracker, TrackerError};

/// What a [`Manifold`] needs to know: the names of its two dependencies and the
/// leadership guarantee (the trackers' claim duration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifoldConfig {
    /// The resource holding the agent's [`Tag`]; it must be a unit tag.
    pub agent_name: String,
    /// The resource holding the [`Claimer`] the tracker claims through.
    pub api_caller_name: String,
    /// How long a `true` ticket guarantees leadership for.
    pub leadership_guarantee: Duration,
}

/// Starts a supervised leadership tracker from an agent's resources.
#[derive(Debug, Clone)]
pub struct Manifold {
    config: ManifoldConfig,
}

impl Manifold {
    /// A manifold with the given configuration.
    pub fn new(config: ManifoldConfig) -> Manifold {
        Manifold { config }
    }

    /// The names of the resources [`start`](Manifold::start) needs, in the order it
    /// looks them up: `[agent_name, api_caller_name]`.
    pub fn inputs(&self) -> Vec<String> {
        vec![
            self.config.agent_name.clone(),
            self.config.api_caller_name.clone(),
        ]
    }

    /// Starts a tracker under an actix `Supervisor` (see
    /// [`Tracker::start_supervised`]) for the agent's unit, claiming through the API
    /// caller. Must be called inside a running actix `System`.
    ///
    /// # Errors
    ///
    /// [`StartError::Missing`] or [`StartError::WrongType`] if a named resource is
    /// absent or of another type, [`StartError::NotAUnit`] if the agent's tag is not a
    /// unit's, and [`StartError::Tracker`] if the tracker rejects the leadership
    /// guarantee as its claim duration.
    pub fn start(&self, resources: &Resources) -> Result<Tracker, StartError> {
        let tag: Tag = resources.get(&self.config.agent_name)?;
        let Tag::Unit(unit) = tag else {
            return Err(StartError::NotAUnit(tag.to_string()));
        };
        let claimer: Claimer = resources.get(&self.config.api_caller_name)?;
        Ok(Tracker::start_supervised(
            unit,
            claimer,
            self.config.leadership_guarantee,
        )?)
    }
}

/// Why a [`Manifold`] could not start its tracker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// No resource has this name.
    #[error("missing dependency {0:?}")]
    Missing(String),
    /// The resource exists but holds another type.
    #[error("dependency {name:?} is a {found}, expected a {expected}")]
    WrongType {
        /// The resource's name.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: &'static str,
    },
    /// The agent is not a unit, so it has no leadership to track.
    #[error("expected a unit tag; got {0:?}")]
    NotAUnit(String),
    /// The tracker rejected the configuration (an invalid leadership guarantee).
    #[error(transparent)]
    Tracker(#[from] TrackerError),
}

struct Resource {
    value: Box<dyn Any + Send + Sync>,
    type_name: &'static str,
}

/// Named dependencies an agent hands to its workers: any `Clone + Send + Sync` value
/// under a name, read back by name and type.
#[derive(Default)]
pub struct Resources {
    resources: HashMap<String, Resource>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self
            .resources
            .iter()
            .map(|(name, r)| (name.as_str(), r.type_name))
            .collect();
        names.sort_unstable();
        f.debug_struct("Resources")
            .field("resources", &names)
            .finish()
    }
}

impl Resources {
    /// No resources.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Stores `value` under `name`, replacing any earlier value of that name.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, name: impl Into<String>, value: T) {
        let resource = Resource {
            value: Box::new(value),
            type_name: type_name::<T>(),
        };
        self.resources.insert(name.into(), resource);
    }

    /// A clone of the value under `name`, if there is one of type `T`.
    ///
    /// # Errors
    ///
    /// [`StartError::Missing`] if nothing is under `name`, [`StartError::WrongType`] if
    /// what is there is not a `T`.
    pub fn get<T: Clone + 'static>(&self, name: &str) -> Result<T, StartError> {
        let resource = self
            .resources
            .get(name)
            .ok_or_else(|| StartError::Missing(name.to_owned()))?;
        resource
            .value
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| StartError::WrongType {
                name: name.to_owned(),
                expected: type_name::<T>(),
                found: resource.type_name,
            })
    }
}
