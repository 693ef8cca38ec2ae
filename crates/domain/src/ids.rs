//! Ids derived from their parent.
//!
//! A consumer that handles a redelivered message must produce the very same records and
//! envelopes as the first time, or unique constraints cannot catch the repeat. So every child
//! id is a function of its parent: a UUIDv7 whose timestamp is the parent's and whose random
//! bits are a SHA-256 of the parent id, a purpose and the other inputs. Ids stay time-ordered
//! (good for B-tree locality) and are reproducible.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A UUIDv7 derived from `parent`, `purpose` and `parts`; the same inputs give the same id.
pub fn derive(parent: Uuid, purpose: &str, parts: &[Uuid]) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(parent.as_bytes());
    hash.update((purpose.len() as u64).to_be_bytes());
    hash.update(purpose.as_bytes());
    for part in parts {
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = parent
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// The invitation a trigger creates for one matched survey: at most one per pair.
pub fn invitation_id(trigger_id: Uuid, survey_id: Uuid) -> Uuid {
    derive(trigger_id, "invitation", &[survey_id])
}

/// The envelope a consumer emits for `purpose` while handling envelope `parent`.
pub fn child_envelope_id(parent: Uuid, purpose: &str) -> Uuid {
    derive(parent, purpose, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_depend_on_every_input() {
        let trigger = Uuid::now_v7();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(invitation_id(trigger, a), invitation_id(trigger, a));
        assert_ne!(invitation_id(trigger, a), invitation_id(trigger, b));
        assert_ne!(
            child_envelope_id(trigger, "x"),
            child_envelope_id(trigger, "y")
        );
    }

    #[test]
    fn derived_ids_are_version_7_with_the_parents_timestamp() {
        let parent = Uuid::now_v7();
        let child = child_envelope_id(parent, "reply");
        assert_eq!(child.get_version_num(), 7);
        assert_eq!(
            child.get_timestamp().unwrap().to_unix().0,
            parent.get_timestamp().unwrap().to_unix().0
        );
    }
}
