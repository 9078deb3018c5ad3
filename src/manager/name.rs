//! [`Name`]: how the manager stores a service name.
//!
//! Why a type of its own rather than a `String`: a process may hold 100 000 leases, and
//! a renewal (the hot path: every leader renews every `d`) looks its lease up by the
//! service name. With a `String` key, every probe of the hash table compares against a
//! string stored elsewhere in memory, and with many leases each such read is likely a
//! cache miss. A name of up to [`INLINE`] bytes — nearly all service names — is stored
//! inline in the key itself, so the comparison reads only bytes already in the table's
//! bucket; a longer one is an `Arc<str>` that the lease map and the expiry index share
//! instead of copying. It hashes and compares as its bytes, so the map is looked up with
//! `service.as_bytes()` and no `Name` is built for a lookup.

use std::fmt;
use std::sync::Arc;

/// How many bytes of a service name [`Name`] keeps inline: with the length byte and
/// the enum's tag, a `Name` is as large as a `String` (24 bytes).
pub(super) const INLINE: usize = 22;

/// A service name as the manager stores it: inline when short, shared on the heap
/// otherwise.
#[derive(Clone)]
pub(super) enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Name {
    pub(super) fn new(service: &str) -> Name {
        match u8::try_from(service.len()) {
            Ok(len) if service.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..service.len()].copy_from_slice(service.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Shared(Arc::from(service)),
        }
    }

    /// The name as text. Names are validated ASCII, so the fallback is unreachable.
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("<invalid>")
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Shared(name) => name.as_bytes(),
        }
    }
}

impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, which `Borrow<[u8]>` requires.
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_and_compare_as_their_bytes_inline_or_shared() {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        let hasher = RandomState::new();
        for service in [
            "a",
            "led-service",
            "x".repeat(INLINE).as_str(),
            "y".repeat(40).as_str(),
        ] {
            let name = Name::new(service);
            assert_eq!(name.as_bytes(), service.as_bytes());
            assert_eq!(name.to_string(), service);
            assert_eq!(hasher.hash_one(&name), hasher.hash_one(service.as_bytes()));
            assert_eq!(name.clone(), name);
        }
        assert!(matches!(
            Name::new(&"x".repeat(INLINE)),
            Name::Inline { .. }
        ));
        assert!(matches!(
            Name::new(&"x".repeat(INLINE + 1)),
            Name::Shared(_)
        ));
        assert_ne!(Name::new("ab"), Name::new("abc"));
        assert_eq!(format!("{:?}", Name::new("led-service")), "\"led-service\"");
    }

    #[test]
    fn a_name_is_no_larger_than_a_string() {
        assert!(std::mem::size_of::<Name>() <= std::mem::size_of::<String>());
    }
}
