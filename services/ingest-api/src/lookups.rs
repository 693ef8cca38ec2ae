//! What the hot endpoints look up on every request, remembered briefly.
//!
//! - An organization token's owner, by the token's SHA-256, for `BECKON_AUTH_CACHE_MS`
//!   (default 1000; 0 turns it off): a token revoked with `beckon token revoke` stops working
//!   on every gateway within that long. Only tokens found valid are remembered, so unknown
//!   tokens cannot fill the memory.
//! - A project's organization, which never changes once the project exists.
//!
//! Both are bounded; when full, stale entries go, and if none are stale everything goes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most entries each map holds.
const MAX_ENTRIES: usize = 10_000;

/// A bounded map whose entries expire `ttl` after they are put.
struct Expiring<K> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Uuid, Instant)>>,
}

impl<K: Eq + Hash> Expiring<K> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<Uuid>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(value, _)| *value)
    }

    fn put(&self, key: K, value: Uuid) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }
}

/// Token owners and project owners, shared by the gateway's workers.
pub struct Lookups {
    tokens: Expiring<Vec<u8>>,
    projects: Expiring<Uuid>,
}

impl Lookups {
    /// `token_ttl`: how long a valid token is trusted without asking the database.
    pub fn new(token_ttl: Duration) -> Self {
        Self {
            tokens: Expiring::new(token_ttl),
            // A project's owner never changes: kept until the map is full.
            projects: Expiring::new(Duration::MAX),
        }
    }

    /// The organization of the token whose SHA-256 is `hash`, when it was found valid lately.
    pub fn token_owner(&self, hash: &[u8]) -> Option<Uuid> {
        self.tokens.get(hash)
    }

    pub fn remember_token(&self, hash: Vec<u8>, org_id: Uuid) {
        self.tokens.put(hash, org_id);
    }

    /// The organization that owns `project_id`, when it was looked up before.
    pub fn project_owner(&self, project_id: Uuid) -> Option<Uuid> {
        self.projects.get(&project_id)
    }

    pub fn remember_project(&self, project_id: Uuid, org_id: Uuid) {
        self.projects.put(project_id, org_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_forgotten_after_its_time() {
        let lookups = Lookups::new(Duration::from_millis(50));
        let org = Uuid::now_v7();
        lookups.remember_token(vec![1], org);
        assert_eq!(lookups.token_owner(&[1]), Some(org));
        assert_eq!(lookups.token_owner(&[2]), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(lookups.token_owner(&[1]), None);
    }

    #[test]
    fn a_zero_time_remembers_nothing() {
        let lookups = Lookups::new(Duration::ZERO);
        lookups.remember_token(vec![1], Uuid::now_v7());
        assert_eq!(lookups.token_owner(&[1]), None);
    }

    #[test]
    fn the_maps_stay_bounded() {
        let lookups = Lookups::new(Duration::from_secs(60));
        for i in 0..(MAX_ENTRIES + 10) {
            lookups.remember_project(Uuid::from_u128(i as u128), Uuid::nil());
        }
        let len = lookups.projects.entries.lock().unwrap().len();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert_eq!(
            lookups.project_owner(Uuid::from_u128((MAX_ENTRIES + 9) as u128)),
            Some(Uuid::nil())
        );
    }
}
