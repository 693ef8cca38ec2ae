//! The surveys a lookup found, as every event of it carries them: their conditions read
//! (kept across lookups while they stay the same as stored) and their JSON written once.

use beckon_domain::condition::Subject;
use beckon_domain::envelope::MatchedSurvey;
use beckon_domain::targeting::Targeting;
use beckon_store::surveys::LiveSurvey;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A Live survey an event matched, with its conditions and the segments they refer to read,
/// and its JSON as `event.matched` carries it when nothing skips it.
pub(crate) struct Target {
    matched: MatchedSurvey,
    /// `None`: the survey has no conditions.
    targeting: Option<Arc<Targeting>>,
    written: Box<RawValue>,
}

impl Target {
    fn new(matched: MatchedSurvey, targeting: Option<Arc<Targeting>>) -> Self {
        // Serialising a survey cannot fail: every map key is a string.
        let written =
            serde_json::value::to_raw_value(&matched).expect("a survey always serialises");
        Self {
            matched,
            targeting,
            written,
        }
    }

    /// The survey as the envelope about the event with `subject` carries it: marked to be
    /// skipped when its conditions are false for `subject` (or cannot be read).
    pub(crate) fn for_event(&self, subject: &Subject<'_>) -> Carried<'_> {
        match self.targeting.as_ref().and_then(|t| t.skip(subject)) {
            None => Carried::Written(&self.written),
            Some(skip) => Carried::Skipped(MatchedSurvey {
                skip: Some(skip),
                ..self.matched.clone()
            }),
        }
    }
}

/// The surveys an event did not match, each written once for every event of the lookup as
/// `event.matched` carries it.
pub(crate) fn unmatched(surveys: &[beckon_store::surveys::UnmatchedSurvey]) -> Vec<Box<RawValue>> {
    surveys
        .iter()
        .map(|s| {
            let carried = beckon_domain::envelope::UnmatchedSurvey {
                survey_id: s.survey_id,
                version: s.version,
                live: s.live,
            };
            // Serialising a survey cannot fail: every map key is a string.
            serde_json::value::to_raw_value(&carried).expect("a survey always serialises")
        })
        .collect()
}

/// A matched survey as one `event.matched` envelope carries it; reads as a `MatchedSurvey`.
pub(crate) enum Carried<'a> {
    /// The JSON written once for every event of the lookup that carries it unchanged.
    Written(&'a RawValue),
    /// This event's conditions skip it.
    Skipped(MatchedSurvey),
}

impl Carried<'_> {
    pub(crate) fn is_skipped(&self) -> bool {
        matches!(self, Self::Skipped(_))
    }
}

impl Serialize for Carried<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Written(json) => json.serialize(serializer),
            Self::Skipped(survey) => survey.serialize(serializer),
        }
    }
}

/// Surveys' conditions as last read, kept while their stored text (and their segments')
/// stays the same: most events meet conditions already read.
#[derive(Default)]
pub(crate) struct ReadConditions(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    surveys: HashMap<Uuid, Read>,
    /// The stored text of every survey kept, in bytes.
    bytes: usize,
}

/// One survey's conditions and segments as stored, and read.
struct Read {
    conditions: String,
    segments: Option<String>,
    targeting: Arc<Targeting>,
}

impl Read {
    fn bytes(&self) -> usize {
        self.conditions.len() + self.segments.as_ref().map_or(0, String::len)
    }
}

/// Most surveys whose read conditions are kept, and most stored text they hold (what is read
/// from it takes a few times as much); past either, all are read again.
const KEPT_SURVEYS: usize = 4096;
const KEPT_BYTES: usize = 16 << 20;
/// Most stored text of one survey that is kept: a larger one is read at every lookup, as
/// it would otherwise push the others out.
const KEPT_BYTES_EACH: usize = KEPT_BYTES / 16;

impl ReadConditions {
    /// `live`'s conditions, read: kept from before when stored as they were then.
    pub(crate) fn target(&self, live: LiveSurvey) -> Target {
        let LiveSurvey {
            matched,
            conditions,
            segments,
        } = live;
        let Some(conditions) = conditions else {
            return Target::new(matched, None);
        };
        // Only the look-up holds the lock; the survey is written after.
        let kept = self
            .kept()
            .surveys
            .get(&matched.survey_id)
            .filter(|read| read.conditions == conditions && read.segments == segments)
            .map(|read| read.targeting.clone());
        if let Some(targeting) = kept {
            return Target::new(matched, Some(targeting));
        }
        // Read without holding the others up.
        let targeting = Arc::new(Targeting::read(Some(&conditions), segments.as_deref()));
        if let Some(reason) = targeting.unreadable() {
            tracing::error!(survey_id = %matched.survey_id, %reason, "a survey's stored conditions do not read");
        }
        let read = Read {
            conditions,
            segments,
            targeting: targeting.clone(),
        };
        let mut kept = self.kept();
        if let Some(before) = kept.surveys.remove(&matched.survey_id) {
            kept.bytes -= before.bytes();
        }
        if read.bytes() <= KEPT_BYTES_EACH {
            if kept.surveys.len() >= KEPT_SURVEYS || kept.bytes + read.bytes() > KEPT_BYTES {
                kept.surveys.clear();
                kept.bytes = 0;
            }
            kept.bytes += read.bytes();
            kept.surveys.insert(matched.survey_id, read);
        }
        Target::new(matched, Some(targeting))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // What is kept stays whole whatever panicked: each change is made under the lock.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beckon_domain::envelope::{EventMatched, Skip, TriggerType};
    use beckon_domain::survey::SampleBy;

    fn survey(name: &str, sample_by: SampleBy) -> MatchedSurvey {
        MatchedSurvey {
            survey_id: Uuid::now_v7(),
            name: name.into(),
            version: 3,
            cooldown_seconds: 60,
            sample_rate: 0.25,
            sample_by,
            invitation_lifetime_seconds: 3600,
            skip: None,
        }
    }

    fn matched<S, U>(surveys: Vec<S>, unmatched: Vec<U>) -> EventMatched<S, U> {
        EventMatched {
            trigger_type: TriggerType::Event,
            user_ref: beckon_domain::user_ref::UserRef::parse("ada").unwrap(),
            event: beckon_domain::LifecycleEvent::TrialExpired,
            reply_to: None,
            surveys,
            event_data: Some(serde_json::json!({"plan": "pro"})),
            variables: None,
            source: None,
            unmatched,
        }
    }

    /// Written once or whole, the surveys an envelope carries (matched or not) are the same
    /// bytes as the surveys themselves: what the invitation stage reads cannot tell them apart.
    #[test]
    fn carried_surveys_write_the_same_json_as_the_surveys() {
        let targets = [
            Target::new(survey("Churn \"beta\"", SampleBy::Event), None),
            Target::new(survey("Ünïcode", SampleBy::User), None),
        ];
        let skipped = Skip::ConditionFalse {
            clause: "/all/0".into(),
        };
        let carried = vec![
            Carried::Written(&targets[0].written),
            Carried::Skipped(MatchedSurvey {
                skip: Some(skipped.clone()),
                ..targets[1].matched.clone()
            }),
            Carried::Written(&targets[1].written),
        ];
        let whole = vec![
            targets[0].matched.clone(),
            MatchedSurvey {
                skip: Some(skipped),
                ..targets[1].matched.clone()
            },
            targets[1].matched.clone(),
        ];
        let others = [
            beckon_store::surveys::UnmatchedSurvey {
                survey_id: Uuid::now_v7(),
                name: "Paused".into(),
                version: 2,
                live: false,
            },
            beckon_store::surveys::UnmatchedSurvey {
                survey_id: Uuid::now_v7(),
                name: "Elsewhere".into(),
                version: 1,
                live: true,
            },
        ];
        let not_matched: Vec<_> = others
            .iter()
            .map(|s| beckon_domain::envelope::UnmatchedSurvey {
                survey_id: s.survey_id,
                version: s.version,
                live: s.live,
            })
            .collect();
        let written = unmatched(&others);
        let carried = serde_json::to_vec(&matched(
            carried,
            written.iter().map(Box::as_ref).collect::<Vec<&RawValue>>(),
        ))
        .unwrap();
        assert_eq!(
            carried,
            serde_json::to_vec(&matched(whole.clone(), not_matched.clone())).unwrap()
        );
        let read: EventMatched = serde_json::from_slice(&carried).unwrap();
        assert_eq!(read, matched(whole, not_matched));
    }

    fn live(conditions: String) -> LiveSurvey {
        LiveSurvey {
            matched: survey("Churn", SampleBy::Event),
            conditions: Some(conditions),
            segments: None,
        }
    }

    /// However large the conditions, what is kept of them stays within its bound.
    #[test]
    fn kept_conditions_stay_within_their_bound() {
        let read = ReadConditions::default();
        // Text that does not read is kept like any other (the survey errors, saying why).
        let largest = "x".repeat(KEPT_BYTES_EACH);
        for _ in 0..40 {
            read.target(live(largest.clone()));
            let kept = read.kept();
            assert!(kept.bytes <= KEPT_BYTES && !kept.surveys.is_empty());
            assert_eq!(
                kept.bytes,
                kept.surveys.values().map(Read::bytes).sum::<usize>()
            );
        }
        // One survey larger than that is read, and not kept.
        let before = read.kept().surveys.len();
        let target = read.target(live("x".repeat(KEPT_BYTES_EACH + 1)));
        assert!(target.targeting.is_some_and(|t| t.unreadable().is_some()));
        assert_eq!(read.kept().surveys.len(), before);
        for _ in 0..KEPT_SURVEYS + 1 {
            read.target(live("{\"exists\": {\"field\": \"email\"}}".into()));
        }
        assert!(read.kept().surveys.len() <= KEPT_SURVEYS);
    }
}
