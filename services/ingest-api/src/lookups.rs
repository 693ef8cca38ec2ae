//! What the hot endpoints look up on every request, remembered briefly.
//!
//! - What an organization token grants (its organization, scopes and expiry), by the token's
//!   SHA-256, for `BECKON_AUTH_CACHE_MS` (default 1000, at most 60000; 0 turns it off): a
//!   revoked token stops working on every gateway within that long (at once on the gateway
//!   that revoked it, even for a lookup racing the revocation), an expired one at once. Only
//!   tokens found valid are remembered, so unknown tokens cannot fill the memory.
//! - A project's organization, which never changes once the project exists.
//!
//! Both are bounded; when full, stale entries go, and if none are stale everything goes.

use beckon_store::tenancy::Grant;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most entries each map holds.
const MAX_ENTRIES: usize = 10_000;

/// A bounded map whose entries expire `ttl` after they are put.
struct Expiring<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
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
            .map(|(value, _)| value.clone())
    }

    fn retain(&self, keep: impl Fn(&V) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (value, _)| keep(value));
    }

    fn put(&self, key: K, value: V) {
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

/// Token grants and project owners, shared by the gateway's workers.
pub struct Lookups {
    tokens: Expiring<Vec<u8>, Grant>,
    projects: Expiring<Uuid, Uuid>,
    /// When each organization's tokens were last forgotten (one was revoked): a grant looked
    /// up before then may predate the revocation and is not remembered.
    forgotten: Expiring<Uuid, Instant>,
}

impl Lookups {
    /// `token_ttl`: how long a valid token is trusted without asking the database.
    pub fn new(token_ttl: Duration) -> Self {
        Self {
            tokens: Expiring::new(token_ttl),
            // A project's owner never changes: kept until the map is full.
            projects: Expiring::new(Duration::MAX),
            // Longer than any lookup may take (statements time out well before).
            forgotten: Expiring::new(Duration::from_secs(300)),
        }
    }

    /// What the token whose SHA-256 is `hash` grants, when it was found valid lately.
    pub fn token_grant(&self, hash: &[u8]) -> Option<Grant> {
        self.tokens.get(hash)
    }

    /// Remembers a grant read from the database at `looked_up`, unless its organization's
    /// tokens were forgotten since: the read may have seen a token just revoked.
    pub fn remember_token(&self, hash: Vec<u8>, grant: Grant, looked_up: Instant) {
        if self
            .forgotten
            .get(&grant.org_id)
            .is_some_and(|at| at >= looked_up)
        {
            return;
        }
        self.tokens.put(hash, grant);
    }

    /// Forgets every remembered token of `org_id` (one of them was revoked), and refuses
    /// grants of it looked up before now.
    pub fn forget_tokens_of(&self, org_id: Uuid) {
        self.forgotten.put(org_id, Instant::now());
        self.tokens.retain(|grant| grant.org_id != org_id);
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

    fn grant() -> Grant {
        Grant {
            token_id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            scopes: vec![beckon_domain::scope::Scope::Admin],
            expires_at: None,
        }
    }

    #[test]
    fn a_grant_read_before_its_organization_revoked_a_token_is_not_remembered() {
        let lookups = Lookups::new(Duration::from_secs(60));
        let grant = grant();
        let read = Instant::now();
        // A revocation lands while the read is on its way back.
        lookups.forget_tokens_of(grant.org_id);
        lookups.remember_token(vec![1], grant.clone(), read);
        assert_eq!(lookups.token_grant(&[1]), None);
        // One read after it is remembered as usual.
        std::thread::sleep(Duration::from_millis(1));
        lookups.remember_token(vec![1], grant.clone(), Instant::now());
        assert_eq!(lookups.token_grant(&[1]), Some(grant));
    }

    #[test]
    fn a_token_is_forgotten_after_its_time() {
        let lookups = Lookups::new(Duration::from_millis(50));
        let grant = grant();
        lookups.remember_token(vec![1], grant.clone(), Instant::now());
        assert_eq!(lookups.token_grant(&[1]), Some(grant));
        assert_eq!(lookups.token_grant(&[2]), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(lookups.token_grant(&[1]), None);
    }

    #[test]
    fn a_zero_time_remembers_nothing() {
        let lookups = Lookups::new(Duration::ZERO);
        lookups.remember_token(vec![1], grant(), Instant::now());
        assert_eq!(lookups.token_grant(&[1]), None);
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
