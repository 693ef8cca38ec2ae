//! The sample roll.
//!
//! A miss creates no invitation, so a re-fired event (a new trigger) rolls again. A redelivered
//! envelope is the same trigger and must roll the same, so the roll is a hash of the trigger
//! and the survey, not a random draw.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A number in `[0, 1)`, uniform over triggers, fixed for one (trigger, survey) pair.
pub fn roll(trigger_id: Uuid, survey_id: Uuid) -> f64 {
    let digest = Sha256::new()
        .chain_update(b"sample")
        .chain_update(trigger_id.as_bytes())
        .chain_update(survey_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The top 53 bits fill an f64 mantissa exactly, so the result is < 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the survey's sample admits this trigger. A rate of 0 admits none, 1 admits all.
pub fn admits(sample_rate: f64, trigger_id: Uuid, survey_id: Uuid) -> bool {
    roll(trigger_id, survey_id) < sample_rate
}

/// A number in `[0, 1)`, uniform over users, fixed for one (survey, user) pair: what a survey
/// sampled by user rolls, whatever the event.
pub fn roll_for_user(survey_id: Uuid, user_ref: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(b"sample-user")
        .chain_update(survey_id.as_bytes())
        .chain_update(user_ref.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the survey's sample admits this user, once and for all events (at this rate; a
/// higher rate admits everyone a lower one did).
pub fn admits_user(sample_rate: f64, survey_id: Uuid, user_ref: &str) -> bool {
    roll_for_user(survey_id, user_ref) < sample_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_rolls_once_per_survey_and_a_higher_rate_keeps_who_was_in() {
        let survey = Uuid::now_v7();
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let admitted = |rate: f64| -> Vec<bool> {
            users.iter().map(|u| admits_user(rate, survey, u)).collect()
        };
        let half = admitted(0.5);
        assert_eq!(half, admitted(0.5), "the same users, every time");
        let share = half.iter().filter(|a| **a).count() as f64 / users.len() as f64;
        assert!((0.45..0.55).contains(&share), "{share}");
        let more = admitted(0.8);
        assert!(half.iter().zip(&more).all(|(h, m)| !h || *m));
        assert!(
            users
                .iter()
                .all(|u| admits_user(1.0, survey, u) && !admits_user(0.0, survey, u))
        );
        let other = Uuid::now_v7();
        assert_ne!(
            half,
            users
                .iter()
                .map(|u| admits_user(0.5, other, u))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn rates_zero_and_one_are_exact() {
        let survey = Uuid::now_v7();
        for _ in 0..10_000 {
            let trigger = Uuid::now_v7();
            assert!(!admits(0.0, trigger, survey));
            assert!(admits(1.0, trigger, survey));
        }
    }

    #[test]
    fn the_same_trigger_and_survey_roll_the_same() {
        let (trigger, survey) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(roll(trigger, survey), roll(trigger, survey));
    }

    #[test]
    fn half_the_triggers_pass_a_half_sample() {
        let survey = Uuid::now_v7();
        let admitted = (0..10_000)
            .filter(|_| admits(0.5, Uuid::now_v7(), survey))
            .count();
        assert!((4_500..=5_500).contains(&admitted), "{admitted}");
    }
}
