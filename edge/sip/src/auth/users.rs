//! Where digest secrets come from: the [`UserStore`] trait (username → password or HA1) and
//! an in-memory implementation for `auth.backend: static` (`auth.users{name: password}`) and
//! the SDK's `auth.add_user(realm, user, pw)`.
//!
//! RFC 7616 §3.4.2 (A1 = user:realm:password), §5.1 (storing HA1 instead of the password).
//! A password answers every algorithm (HA1 is derived for the client's hash); a stored HA1
//! is bound to the hash it was computed with.

use std::collections::HashMap;
use std::sync::RwLock;

use super::digest::Algorithm;

/// The secret for one user.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A plaintext password.
    Password(String),
    /// `H(user:realm:password)` in hex for `algorithm`'s hash (any `-sess` suffix ignored).
    Ha1 {
        /// Hash the HA1 was computed with.
        algorithm: Algorithm,
        /// The hex HA1.
        ha1: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Self::Password(_) => f.write_str("Password(..)"),
            Self::Ha1 { algorithm, .. } => write!(f, "Ha1({algorithm:?}, ..)"),
        }
    }
}

impl Credential {
    /// The HA1 for `algorithm` (its base hash), or `None` when this is an HA1 for another hash.
    #[must_use]
    pub fn ha1_for(&self, algorithm: Algorithm, username: &str, realm: &str) -> Option<String> {
        match self {
            Self::Password(p) => Some(algorithm.base().ha1(username, realm, p)),
            Self::Ha1 { algorithm: a, ha1 } if a.base() == algorithm.base() => {
                Some(ha1.to_ascii_lowercase())
            }
            Self::Ha1 { .. } => None,
        }
    }
}

/// A source of user secrets. Object-safe, shared by all cores.
pub trait UserStore: Send + Sync {
    /// The secret of `username` in `realm`, or `None` for an unknown user.
    fn lookup(&self, realm: &str, username: &str) -> Option<Credential>;
}

/// Users in memory. A user added without a realm matches every realm.
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    users: RwLock<HashMap<(Option<String>, String), Credential>>,
}

impl MemoryUserStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a user; `realm: None` matches any realm.
    pub fn insert(&self, realm: Option<&str>, username: &str, credential: Credential) {
        let mut g = self.users.write().unwrap_or_else(|p| p.into_inner());
        g.insert((realm.map(str::to_owned), username.to_owned()), credential);
    }

    /// Removes a user; returns whether it existed.
    pub fn remove(&self, realm: Option<&str>, username: &str) -> bool {
        let mut g = self.users.write().unwrap_or_else(|p| p.into_inner());
        g.remove(&(realm.map(str::to_owned), username.to_owned()))
            .is_some()
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.read().map_or(0, |g| g.len())
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserStore for MemoryUserStore {
    fn lookup(&self, realm: &str, username: &str) -> Option<Credential> {
        let g = self.users.read().unwrap_or_else(|p| p.into_inner());
        g.get(&(Some(realm.to_owned()), username.to_owned()))
            .or_else(|| g.get(&(None, username.to_owned())))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_realm_then_any() {
        let s = MemoryUserStore::new();
        s.insert(None, "alice", Credential::Password("a".into()));
        s.insert(Some("r1"), "alice", Credential::Password("b".into()));
        assert_eq!(
            s.lookup("r1", "alice"),
            Some(Credential::Password("b".into()))
        );
        assert_eq!(
            s.lookup("r2", "alice"),
            Some(Credential::Password("a".into()))
        );
        assert_eq!(s.lookup("r1", "bob"), None);
        assert!(s.remove(None, "alice"));
        assert_eq!(s.lookup("r2", "alice"), None);
        assert_eq!(s.len(), 1);
        assert_eq!(
            format!("{:?}", Credential::Password("secret".into())),
            "Password(..)"
        );
    }

    #[test]
    fn ha1_bound_to_hash() {
        let ha1 = Algorithm::Md5.ha1("u", "r", "p");
        let c = Credential::Ha1 {
            algorithm: Algorithm::Md5,
            ha1: ha1.to_uppercase(),
        };
        assert_eq!(c.ha1_for(Algorithm::Md5Sess, "u", "r"), Some(ha1));
        assert_eq!(c.ha1_for(Algorithm::Sha256, "u", "r"), None);
    }
}
