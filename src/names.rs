//! Unit and service names: `"<service>/<number>"`, validated once at the edge.
//!
//! Every lease manager validates the strings it receives with the same rules
//! ([`validate_service`], [`UnitName::new`]), so a name accepted by one backend is
//! accepted by all of them.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid unit or service name. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not of the form `"<service>/<number>"`.
    #[error(
        "{0:?} is not a valid unit name (expected \"<service>/<number>\", e.g. \"led-service/0\")"
    )]
    Unit(String),
    /// Not a valid service name.
    #[error("{0:?} is not a valid service name (lowercase letters, digits and single hyphens, starting with a letter)")]
    Service(String),
}

/// A validated unit name `"<service>/<number>"`, e.g. `"led-service/123"`.
///
/// Service names are lowercase ASCII letters, digits and single hyphens, start with a
/// letter, and every hyphen-separated segment after the first contains a letter. The
/// number is a decimal without sign or leading zeros that fits in `u32`.
///
/// ```
/// use leadership::UnitName;
/// let unit = UnitName::new("led-service/123").unwrap();
/// assert_eq!((unit.service(), unit.number()), ("led-service", 123));
/// assert!(UnitName::new("led-service/007").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName {
    name: String,
    slash: usize,
    number: u32,
}

impl UnitName {
    /// Parses and validates `s`.
    ///
    /// # Errors
    ///
    /// [`NameError::Unit`] if `s` is not `"<service>/<number>"` by the rules above.
    pub fn new(s: &str) -> Result<UnitName, NameError> {
        let invalid = || NameError::Unit(s.to_owned());
        let (service, number) = s.split_once('/').ok_or_else(invalid)?;
        if !is_valid_service(service) {
            return Err(invalid());
        }
        let number = parse_unit_number(number).ok_or_else(invalid)?;
        Ok(UnitName {
            name: s.to_owned(),
            slash: service.len(),
            number,
        })
    }

    /// The whole name, e.g. `"led-service/123"`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The service part, e.g. `"led-service"`.
    pub fn service(&self) -> &str {
        &self.name[..self.slash]
    }

    /// The unit number, e.g. `123`.
    pub fn number(&self) -> u32 {
        self.number
    }
}

impl FromStr for UnitName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitName::new(s)
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Checks a service name with the same rules as the service part of a [`UnitName`].
///
/// # Errors
///
/// [`NameError::Service`] if `service` breaks those rules.
pub fn validate_service(service: &str) -> Result<(), NameError> {
    if is_valid_service(service) {
        Ok(())
    } else {
        Err(NameError::Service(service.to_owned()))
    }
}

/// `[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*`, written out so that no input can make it
/// slow or panic.
pub(crate) fn is_valid_service(service: &str) -> bool {
    let mut segments = service.split('-');
    let first = segments.next().unwrap_or_default();
    let lower_or_digit = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first_ok = first.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && first.bytes().all(lower_or_digit);
    first_ok
        && segments.all(|segment| {
            segment.bytes().all(lower_or_digit) && segment.bytes().any(|c| c.is_ascii_lowercase())
        })
}

/// A decimal `u32` without sign or leading zeros.
pub(crate) fn parse_unit_number(s: &str) -> Option<u32> {
    let digits_only = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let leading_zero = s.len() > 1 && s.starts_with('0');
    if digits_only && !leading_zero {
        s.parse().ok()
    } else {
        None
    }
}

/// A juju-style entity tag: what an agent is, as a string like `"unit-led-service-123"`
/// or `"machine-0"`.
///
/// ```
/// use leadership::{Tag, UnitName};
/// let tag: Tag = "unit-led-service-123".parse().unwrap();
/// assert_eq!(tag, Tag::Unit(UnitName::new("led-service/123").unwrap()));
/// assert_eq!(tag.to_string(), "unit-led-service-123");
/// assert_eq!("machine-0-lxd-2".parse::<Tag>().unwrap(), Tag::Machine("0/lxd/2".into()));
/// assert!("unit-led-service".parse::<Tag>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tag {
    /// `unit-<service>-<number>`: a unit of a service.
    Unit(UnitName),
    /// `machine-<id>`: a machine; the id is `"0"`, or `"0/lxd/1"` for a container
    /// (tag `machine-0-lxd-1`).
    Machine(String),
    /// `application-<service>`: a whole service (application, in juju's words).
    Application(String),
}

/// Why a string is not a valid [`Tag`]. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid tag (expected e.g. \"unit-led-service-0\", \"machine-0\" or \"application-led-service\")")]
pub struct TagError(pub String);

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Tag, TagError> {
        let invalid = || TagError(s.to_owned());
        let (kind, id) = s.split_once('-').ok_or_else(invalid)?;
        match kind {
            "unit" => {
                // The number is after the last hyphen; service names may hold hyphens.
                let (service, number) = id.rsplit_once('-').ok_or_else(invalid)?;
                UnitName::new(&format!("{service}/{number}"))
                    .map(Tag::Unit)
                    .map_err(|_| invalid())
            }
            "machine" => parse_machine_id(id).map(Tag::Machine).ok_or_else(invalid),
            "application" if is_valid_service(id) => Ok(Tag::Application(id.to_owned())),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Unit(unit) => write!(f, "unit-{}-{}", unit.service(), unit.number()),
            Tag::Machine(id) => write!(f, "machine-{}", id.replace('/', "-")),
            Tag::Application(service) => write!(f, "application-{service}"),
        }
    }
}

/// A machine id from its tag form: `0`, `0-lxd-1`, `3-kvm-0-lxd-12` become `0`,
/// `0/lxd/1`, `3/kvm/0/lxd/12`: a number, then pairs of container type (lowercase
/// letters) and number.
fn parse_machine_id(tag_id: &str) -> Option<String> {
    let parts: Vec<&str> = tag_id.split('-').collect();
    let (first, containers) = parts.split_first()?;
    parse_unit_number(first)?;
    if containers.len() % 2 != 0 {
        return None;
    }
    for pair in containers.chunks(2) {
        let kind_ok = !pair[0].is_empty() && pair[0].bytes().all(|c| c.is_ascii_lowercase());
        if !kind_ok || parse_unit_number(pair[1]).is_none() {
            return None;
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_tags() {
        let unit = |s: &str| Tag::Unit(UnitName::new(s).unwrap());
        for (s, tag) in [
            ("unit-led-service-123", unit("led-service/123")),
            ("unit-mysql-0", unit("mysql/0")),
            ("unit-a1-b2c-7", unit("a1-b2c/7")),
            ("machine-0", Tag::Machine("0".into())),
            ("machine-12-lxd-3", Tag::Machine("12/lxd/3".into())),
            (
                "machine-3-kvm-0-lxd-12",
                Tag::Machine("3/kvm/0/lxd/12".into()),
            ),
            (
                "application-led-service",
                Tag::Application("led-service".into()),
            ),
        ] {
            assert_eq!(s.parse::<Tag>(), Ok(tag.clone()), "{s}");
            assert_eq!(tag.to_string(), s);
        }
    }

    #[test]
    fn rejects_invalid_tags_quoting_the_input() {
        for s in [
            "",
            "unit",
            "unit-",
            "unit-mysql",
            "unit-mysql-",
            "unit-mysql-007",
            "unit-MySQL-0",
            "unit-1mysql-0",
            "unit-mysql-x",
            "unit-mysql--1",
            "unit-mysql-1-",
            "unit-mysql/0",
            "machine",
            "machine-",
            "machine-x",
            "machine-01",
            "machine-0-lxd",
            "machine-0-lxd-",
            "machine-0-LXD-1",
            "machine-0-1-2",
            "application-",
            "application-My",
            "service-mysql",
            "user-admin",
            "mysql/0",
        ] {
            let err = s.parse::<Tag>().unwrap_err();
            assert_eq!(err, TagError(s.to_owned()));
            assert!(err.to_string().contains(&format!("{s:?}")), "{err}");
        }
    }

    #[test]
    fn accepts_valid_unit_names() {
        for (s, service, number) in [
            ("led-service/123", "led-service", 123),
            ("mysql/0", "mysql", 0),
            ("a/7", "a", 7),
            ("a1-b2c/4294967295", "a1-b2c", u32::MAX),
            ("wordpress-2x-b/1", "wordpress-2x-b", 1),
        ] {
            let unit = UnitName::new(s).unwrap();
            assert_eq!(unit.as_str(), s);
            assert_eq!(unit.to_string(), s);
            assert_eq!(unit.service(), service);
            assert_eq!(unit.number(), number);
            assert_eq!(s.parse::<UnitName>().unwrap(), unit);
        }
    }

    #[test]
    fn rejects_invalid_unit_names_quoting_the_input() {
        for s in [
            "",
            "mysql",
            "MySQL/0",
            "my_sql/0",
            "mysql/x",
            "mysql/-1",
            "mysql/+1",
            "mysql/0/1",
            "1mysql/0",
            "mysql/007",
            "mysql/",
            "/0",
            "my--sql/0",
            "mysql-/0",
            "-mysql/0",
            "mysql-1/0",
            "mysql/4294967296",
            "mysql/ 1",
            "mysql/١",
            "é/0",
        ] {
            let err = UnitName::new(s).unwrap_err();
            assert_eq!(err, NameError::Unit(s.to_owned()));
            assert!(err.to_string().contains(&format!("{s:?}")), "{err}");
        }
    }

    #[test]
    fn validates_service_names() {
        assert!(validate_service("led-service").is_ok());
        for s in ["", "Led", "led-", "led--x", "led-1", "1led", "led/0"] {
            assert_eq!(
                validate_service(s),
                Err(NameError::Service(s.to_owned())),
                "{s:?}"
            );
        }
    }
}
