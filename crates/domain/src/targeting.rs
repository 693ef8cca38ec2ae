//! Who a matched survey is for, and what becomes of it: the rules in the order they apply,
//! shared by the services that apply them and the dry run that only says what they would do.
//!
//! 1. the survey's conditions (and the segments they refer to), by the matcher;
//! 2. the survey's cooldown for the user;
//! 3. the sample roll;
//! 4. the project's cap on invitations per user.

use crate::cap::InvitationCap;
use crate::condition::{Condition, Segments, Subject};
use crate::envelope::Skip;
use crate::outcome::SurveyOutcome;
use crate::sampling;
use crate::survey::SampleBy;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// A survey's stored conditions, read, with each segment they refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Targeting(Result<Option<(Condition, Segments)>, String>);

impl Targeting {
    /// Reads the conditions as stored and the segments they refer to (an object of each
    /// segment's condition by id), both JSON text. Conditions that do not read, or refer to
    /// a segment that is not there, make a targeting that errors the survey, saying why.
    pub fn read(conditions: Option<&str>, segments: Option<&str>) -> Self {
        Self(Self::parse(conditions, segments))
    }

    fn parse(
        conditions: Option<&str>,
        segments: Option<&str>,
    ) -> Result<Option<(Condition, Segments)>, String> {
        // Stored `null` arrives as none: the statement that reads them says so.
        let Some(conditions) = conditions else {
            return Ok(None);
        };
        let condition: Condition = serde_json::from_str(conditions)
            .map_err(|e| format!("the survey's conditions could not be read: {e}"))?;
        // Straight from the text to conditions: the statement that read them finds only the
        // segments referred to.
        let segments = match segments {
            None | Some("null") => Segments::new(),
            Some(text) => match serde_json::from_str::<Segments>(text) {
                Ok(segments) => segments,
                Err(_) => Self::referred_segments(&condition, text)?,
            },
        };
        if let Some(id) = condition.missing_segment(&segments) {
            return Err(Self::gone(id));
        }
        Ok(Some((condition, segments)))
    }

    fn gone(id: Uuid) -> String {
        format!("the survey refers to segment {id}, which no longer exists")
    }

    /// The segments `condition` refers to, one by one, when they did not read as a whole:
    /// one that is not referred to is left unread, and the first reference that is missing
    /// or does not read is named, as when every segment reads.
    fn referred_segments(condition: &Condition, text: &str) -> Result<Segments, String> {
        let stored: std::collections::HashMap<Uuid, Value> = serde_json::from_str(text)
            .map_err(|e| format!("the survey's segments could not be read: {e}"))?;
        let mut segments = Segments::new();
        for (_, id) in condition.segment_refs() {
            if segments.contains_key(&id) {
                continue;
            }
            let raw = stored.get(&id).ok_or_else(|| Self::gone(id))?;
            let segment = Condition::deserialize(raw)
                .map_err(|e| format!("segment {id} could not be read: {e}"))?;
            segments.insert(id, segment);
        }
        Ok(segments)
    }

    /// Why the survey is skipped for `subject`: its conditions are false (and which clause),
    /// or cannot be read; `None` when it is for them.
    pub fn skip(&self, subject: &Subject<'_>) -> Option<Skip> {
        match &self.0 {
            Ok(None) => None,
            Ok(Some((condition, segments))) => condition
                .evaluate(subject, segments)
                .err()
                .map(|clause| Skip::ConditionFalse { clause }),
            Err(reason) => Some(Skip::Unreadable {
                reason: reason.clone(),
            }),
        }
    }

    /// Why the conditions cannot be read, if they cannot.
    pub fn unreadable(&self) -> Option<&str> {
        self.0.as_ref().err().map(String::as_str)
    }
}

/// Whether the sample roll admits a survey: seeded from (trigger, survey), so a redelivered
/// envelope rolls the same; or, for a survey sampled by user, from (survey, user), so a user
/// left out stays out.
pub fn admits(
    sample_by: SampleBy,
    sample_rate: f64,
    trigger_id: Uuid,
    survey_id: Uuid,
    user_ref: &str,
) -> bool {
    match sample_by {
        SampleBy::Event => sampling::admits(sample_rate, trigger_id, survey_id),
        SampleBy::User => sampling::admits_user(sample_rate, survey_id, user_ref),
    }
}

/// What a user of a capped project may still get in one handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub cap: InvitationCap,
    /// Invitations left before the cap is reached.
    pub left: i64,
}

impl Allowance {
    /// The allowance of a user who got `recent` invitations in the cap's period.
    pub fn after(cap: InvitationCap, recent: i64) -> Self {
        Self {
            cap,
            left: i64::from(cap.max) - recent,
        }
    }
}

/// What the rules decide for one matched survey, before any invitation is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An invitation is to be created.
    Invite,
    /// None: why, and what to record as the reason.
    Without(SurveyOutcome, Option<String>),
}

/// Applies the rules in order to a survey the event matched: `skip` is the matcher's verdict
/// on its conditions, `in_cooldown` whether the user is in its cooldown, `admitted` whether the
/// sample roll admits it, and `cap` what the user may still get under the project's cap (one
/// is taken when the survey is admitted).
pub fn decide(
    skip: Option<&Skip>,
    in_cooldown: bool,
    admitted: bool,
    cap: Option<&mut Allowance>,
) -> Verdict {
    match skip {
        Some(Skip::ConditionFalse { clause }) => {
            return Verdict::Without(SurveyOutcome::ConditionFalse, Some(clause.clone()));
        }
        Some(Skip::Unreadable { reason }) => {
            return Verdict::Without(SurveyOutcome::Errored, Some(reason.clone()));
        }
        None => {}
    }
    if in_cooldown {
        return Verdict::Without(SurveyOutcome::Cooldown, None);
    }
    if !admitted {
        return Verdict::Without(SurveyOutcome::Sample, None);
    }
    if let Some(allowance) = cap {
        if allowance.left <= 0 {
            let reason = format!(
                "the user reached the project's cap of {} invitation(s) every {} seconds",
                allowance.cap.max, allowance.cap.period_seconds
            );
            return Verdict::Without(SurveyOutcome::Capped, Some(reason));
        }
        allowance.left -= 1;
    }
    Verdict::Invite
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_survey_referring_to_a_segment_that_is_gone_does_not_read() {
        let (kept, gone) = (Uuid::now_v7(), Uuid::now_v7());
        let read = |conditions: Value, segments: Value| {
            Targeting::read(Some(&conditions.to_string()), Some(&segments.to_string()))
        };
        let conditions = json!({"any": [{"segment": kept}, {"segment": gone}]});
        let segments = json!({kept.to_string(): {"exists": {"field": "email"}}});
        let err = read(conditions.clone(), segments)
            .unreadable()
            .unwrap()
            .to_owned();
        assert!(
            err.contains(&gone.to_string()) && err.contains("no longer exists"),
            "{err}"
        );

        let segments = json!({kept.to_string(): {"exists": {"field": "email"}},
                              gone.to_string(): {"exists": {"field": "name"}}});
        assert_eq!(read(conditions.clone(), segments).unreadable(), None);
        assert_eq!(Targeting::read(None, None), Targeting(Ok(None)));
        // A segment that does not read is named, beside one that does.
        let err = read(
            conditions,
            json!({kept.to_string(): {"exists": {"field": "email"}},
                   gone.to_string(): {"bogus": 1}}),
        )
        .unreadable()
        .unwrap()
        .to_owned();
        assert!(
            err.contains(&format!("segment {gone} could not be read")),
            "{err}"
        );
        assert!(
            read(
                json!({"segment": kept}),
                json!({kept.to_string(): {"bogus": 1}})
            )
            .unreadable()
            .unwrap()
            .contains("could not be read")
        );
        // The first reference that is missing or does not read is named, whichever of the
        // two it is: a missing one first, before one that does not read...
        let broken = Uuid::now_v7();
        let both = json!({"all": [{"segment": gone}, {"segment": broken}]});
        let err = read(both, json!({broken.to_string(): {"bogus": 1}}))
            .unreadable()
            .unwrap()
            .to_owned();
        assert_eq!(err, Targeting::gone(gone));
        // ...and one that does not read first, before a missing one.
        let both = json!({"all": [{"segment": broken}, {"segment": gone}]});
        let err = read(both, json!({broken.to_string(): {"bogus": 1}}))
            .unreadable()
            .unwrap()
            .to_owned();
        assert!(
            err.starts_with(&format!("segment {broken} could not be read")),
            "{err}"
        );
        // One that is not referred to is not read.
        assert_eq!(
            read(
                json!({"segment": kept}),
                json!({kept.to_string(): {"exists": {"field": "email"}},
                       gone.to_string(): {"bogus": 1}})
            )
            .unreadable(),
            None
        );
        // No segments at all (none referred to was found): the first reference is named.
        assert!(
            Targeting::read(Some(&json!({"segment": gone}).to_string()), None)
                .unreadable()
                .unwrap()
                .contains(&gone.to_string())
        );
    }

    #[test]
    fn the_rules_apply_in_order_and_the_cap_is_taken_only_by_an_invitation() {
        let cap = InvitationCap {
            max: 1,
            period_seconds: 3600,
        };
        let false_clause = Skip::ConditionFalse {
            clause: "/eq".to_owned(),
        };
        let mut allowance = Allowance::after(cap, 0);
        assert_eq!(
            decide(Some(&false_clause), true, false, Some(&mut allowance)),
            Verdict::Without(SurveyOutcome::ConditionFalse, Some("/eq".to_owned()))
        );
        assert_eq!(
            decide(None, true, false, Some(&mut allowance)),
            Verdict::Without(SurveyOutcome::Cooldown, None)
        );
        assert_eq!(
            decide(None, false, false, Some(&mut allowance)),
            Verdict::Without(SurveyOutcome::Sample, None)
        );
        assert_eq!(allowance.left, 1);
        assert_eq!(
            decide(None, false, true, Some(&mut allowance)),
            Verdict::Invite
        );
        assert!(matches!(
            decide(None, false, true, Some(&mut allowance)),
            Verdict::Without(SurveyOutcome::Capped, Some(_))
        ));
        assert_eq!(decide(None, false, true, None), Verdict::Invite);
    }
}
