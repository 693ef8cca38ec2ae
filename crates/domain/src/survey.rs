//! Surveys: status, questions, the backend trigger, and the per-survey delivery rules.

use crate::condition::{Condition, InvalidCondition};
use crate::event::LifecycleEvent;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Where a survey is in its life. Only `live` surveys are matched by events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SurveyStatus {
    Draft,
    Live,
    Paused,
    Archived,
}

impl SurveyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Live => "live",
            Self::Paused => "paused",
            Self::Archived => "archived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Draft, Self::Live, Self::Paused, Self::Archived]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// Most questions one survey may hold.
pub const MAX_QUESTIONS: usize = 50;
/// Most options one `mcq` or `checkbox` question may hold.
pub const MAX_OPTIONS: usize = 50;
/// Longest question title or option label, in characters.
pub const MAX_LABEL_LEN: usize = 500;
/// Most tags one question may carry, and the longest tag, in characters.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_LEN: usize = 50;

/// One question of a survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Question {
    /// Stable within the survey; answers refer to it.
    pub id: String,
    /// What the respondent reads.
    pub title: String,
    /// Whether the respondent must answer before finishing.
    #[serde(default)]
    pub required: bool,
    /// Labels every answer to the question carries in the webhooks (`pricing`, `churn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub kind: QuestionKind,
}

/// The kind of a question and what its answers may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QuestionKind {
    /// Net Promoter Score, 0 to 10.
    Nps,
    /// A rating from 1 to 5.
    Rating,
    /// Exactly one of the options.
    Mcq { options: Vec<String> },
    /// Any number of the options.
    Checkbox { options: Vec<String> },
    /// Free text.
    Text,
}

/// The OpenAPI schema of [`Question`]: one object per `type`, each with the common fields,
/// as client generators want a tagged union (a flattened enum would be `allOf` over
/// `oneOf`, which most cannot read).
#[cfg(feature = "openapi")]
mod question_schema {
    use serde::Serialize;

    /// One question of a survey, by its `type`. `id` is stable within the survey (answers
    /// refer to it), `title` is what the respondent reads, and `required` whether it must be
    /// answered before finishing.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[schema(as = Question)]
    #[allow(dead_code)]
    pub enum QuestionDoc {
        /// Net Promoter Score, 0 to 10.
        Nps {
            id: String,
            title: String,
            #[serde(default)]
            required: bool,
            /// Labels every answer to the question carries in the webhooks.
            #[serde(default)]
            tags: Vec<String>,
        },
        /// A rating from 1 to 5.
        Rating {
            id: String,
            title: String,
            #[serde(default)]
            required: bool,
            /// Labels every answer to the question carries in the webhooks.
            #[serde(default)]
            tags: Vec<String>,
        },
        /// Exactly one of the options.
        Mcq {
            id: String,
            title: String,
            #[serde(default)]
            required: bool,
            /// Labels every answer to the question carries in the webhooks.
            #[serde(default)]
            tags: Vec<String>,
            options: Vec<String>,
        },
        /// Any number of the options.
        Checkbox {
            id: String,
            title: String,
            #[serde(default)]
            required: bool,
            /// Labels every answer to the question carries in the webhooks.
            #[serde(default)]
            tags: Vec<String>,
            options: Vec<String>,
        },
        /// Free text.
        Text {
            id: String,
            title: String,
            #[serde(default)]
            required: bool,
            /// Labels every answer to the question carries in the webhooks.
            #[serde(default)]
            tags: Vec<String>,
        },
    }

    impl utoipa::PartialSchema for super::Question {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            <QuestionDoc as utoipa::PartialSchema>::schema()
        }
    }

    impl utoipa::ToSchema for super::Question {
        fn name() -> std::borrow::Cow<'static, str> {
            "Question".into()
        }
    }
}

impl QuestionKind {
    /// The kind's wire name: `nps`, `rating`, `mcq`, `checkbox` or `text`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nps => "nps",
            Self::Rating => "rating",
            Self::Mcq { .. } => "mcq",
            Self::Checkbox { .. } => "checkbox",
            Self::Text => "text",
        }
    }
}

/// A survey's list of questions, validated by [`validate_questions`].
pub type Questions = Vec<Question>;

/// What is wrong with a survey definition; each maps to a stable API error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SurveyError {
    #[error("name must be 1 to 200 characters")]
    InvalidName,
    #[error("a survey needs at least one question and at most {MAX_QUESTIONS}")]
    QuestionCount,
    #[error(
        "question ids must be non-empty, at most 64 characters, not only dots, and unique; `{0}` is not"
    )]
    QuestionId(String),
    #[error("question `{0}` needs a title of 1 to {MAX_LABEL_LEN} characters")]
    QuestionTitle(String),
    #[error(
        "question `{0}` needs 1 to {MAX_OPTIONS} unique, non-empty options of at most {MAX_LABEL_LEN} characters"
    )]
    QuestionOptions(String),
    #[error(
        "question `{0}` may carry at most {MAX_TAGS} unique tags of 1 to {MAX_TAG_LEN} characters, without control characters or surrounding spaces"
    )]
    QuestionTags(String),
    #[error("sample_rate must be a number from 0 to 1")]
    SampleRate,
    #[error("cooldown_seconds must be from 0 to {MAX_COOLDOWN_SECONDS}")]
    Cooldown,
    #[error(
        "invitation_lifetime_seconds must be from {MIN_LIFETIME_SECONDS} to {MAX_LIFETIME_SECONDS}"
    )]
    Lifetime,
    #[error("trial_reminder_lead_seconds must be from 0 to {MAX_REMINDER_LEAD_SECONDS}")]
    ReminderLead,
    #[error("a trigger may list at most {MAX_TRIGGER_EVENTS} events")]
    TooManyTriggerEvents,
    #[error("trigger.conditions, at {}: {}", .0.pointer, .0.reason)]
    Condition(InvalidCondition),
}

impl SurveyError {
    /// The stable machine-readable code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::QuestionCount | Self::QuestionId(_) | Self::QuestionTitle(_) => {
                "invalid_questions"
            }
            Self::QuestionOptions(_) => "invalid_question_options",
            Self::QuestionTags(_) => "invalid_question_tags",
            Self::SampleRate => "invalid_sample_rate",
            Self::Cooldown => "invalid_cooldown",
            Self::Lifetime => "invalid_invitation_lifetime",
            Self::TooManyTriggerEvents => "invalid_trigger",
            Self::ReminderLead => "invalid_trial_reminder_lead",
            Self::Condition(_) => "invalid_condition",
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), SurveyError> {
    let len = name.trim().chars().count();
    if len == 0 || len > 200 {
        return Err(SurveyError::InvalidName);
    }
    Ok(())
}

fn valid_label(label: &str) -> bool {
    let len = label.trim().chars().count();
    len > 0 && len <= MAX_LABEL_LEN
}

pub fn validate_questions(questions: &[Question]) -> Result<(), SurveyError> {
    if questions.is_empty() || questions.len() > MAX_QUESTIONS {
        return Err(SurveyError::QuestionCount);
    }
    let mut ids = HashSet::new();
    for q in questions {
        // An id of dots only cannot be a path segment: a browser resolves `answers/..` away
        // before the request leaves, so the page could never save its answer.
        let dots_only = q.id.chars().all(|c| c == '.');
        if q.id.is_empty() || dots_only || q.id.chars().count() > 64 || !ids.insert(q.id.as_str()) {
            return Err(SurveyError::QuestionId(q.id.clone()));
        }
        if !valid_label(&q.title) {
            return Err(SurveyError::QuestionTitle(q.id.clone()));
        }
        let tags: HashSet<&str> = q.tags.iter().map(String::as_str).collect();
        let tag_ok = |t: &String| {
            let len = t.chars().count();
            len > 0 && len <= MAX_TAG_LEN && t.trim() == t && !t.chars().any(char::is_control)
        };
        if q.tags.len() > MAX_TAGS || tags.len() != q.tags.len() || !q.tags.iter().all(tag_ok) {
            return Err(SurveyError::QuestionTags(q.id.clone()));
        }
        if let QuestionKind::Mcq { options } | QuestionKind::Checkbox { options } = &q.kind {
            let unique: HashSet<&str> = options.iter().map(String::as_str).collect();
            if options.is_empty()
                || options.len() > MAX_OPTIONS
                || unique.len() != options.len()
                || !options.iter().all(|o| valid_label(o))
            {
                return Err(SurveyError::QuestionOptions(q.id.clone()));
            }
        }
    }
    Ok(())
}

/// Most events one survey's trigger may list.
pub const MAX_TRIGGER_EVENTS: usize = 32;

/// The backend trigger: the lifecycle events a survey subscribes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyTrigger {
    pub events: Vec<LifecycleEvent>,
    /// Whom the survey is for: a condition on the event and the user, checked when one of the
    /// events arrives (absent: everyone the event is about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Condition>,
}

impl SurveyTrigger {
    pub fn validate(&self) -> Result<(), SurveyError> {
        if self.events.len() > MAX_TRIGGER_EVENTS {
            return Err(SurveyError::TooManyTriggerEvents);
        }
        if let Some(condition) = &self.conditions {
            condition.validate().map_err(SurveyError::Condition)?;
        }
        Ok(())
    }

    /// The events' keys, without repeats, in the order given.
    pub fn keys(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.events
            .iter()
            .map(LifecycleEvent::key)
            .filter(|k| seen.insert(k.clone()))
            .collect()
    }

    /// The segments the conditions refer to, each once, sorted.
    pub fn segment_ids(&self) -> Vec<uuid::Uuid> {
        let mut ids: Vec<uuid::Uuid> = self
            .conditions
            .iter()
            .flat_map(Condition::segment_refs)
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What a survey's sample roll is rolled for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    /// Each event rolls anew: a user left out by one event may be invited by the next.
    #[default]
    Event,
    /// Each user rolls once per survey: a user left out stays out (while the rate stays).
    User,
}

impl SampleBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::User => "user",
        }
    }

    /// Whether this is the default (each event rolls), which messages leave out.
    pub fn is_default(&self) -> bool {
        *self == Self::Event
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Event, Self::User]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// Longest cooldown accepted: one year.
pub const MAX_COOLDOWN_SECONDS: i64 = 365 * 24 * 3600;
/// Default invitation lifetime: 30 days, as the dispatch contract says.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 30 * 24 * 3600;
pub const MIN_LIFETIME_SECONDS: i64 = 60;
pub const MAX_LIFETIME_SECONDS: i64 = 365 * 24 * 3600;

/// Default lead time of a `trial_ending_soon` reminder: 3 days before the trial ends.
pub const DEFAULT_REMINDER_LEAD_SECONDS: i64 = 3 * 24 * 3600;
/// Longest reminder lead time: 90 days.
pub const MAX_REMINDER_LEAD_SECONDS: i64 = 90 * 24 * 3600;

pub fn validate_reminder_lead(seconds: i64) -> Result<(), SurveyError> {
    if (0..=MAX_REMINDER_LEAD_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(SurveyError::ReminderLead)
    }
}

pub fn validate_sample_rate(rate: f64) -> Result<(), SurveyError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(SurveyError::SampleRate)
    }
}

pub fn validate_cooldown(seconds: i64) -> Result<(), SurveyError> {
    if (0..=MAX_COOLDOWN_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(SurveyError::Cooldown)
    }
}

pub fn validate_lifetime(seconds: i64) -> Result<(), SurveyError> {
    if (MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(SurveyError::Lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn questions(value: serde_json::Value) -> Vec<Question> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_question_kind_parses_from_its_wire_shape() {
        let qs = questions(json!([
            {"id": "q1", "type": "nps", "title": "How likely?", "required": true},
            {"id": "q2", "type": "rating", "title": "Rate us"},
            {"id": "q3", "type": "mcq", "title": "Why?", "options": ["Price", "Bugs"]},
            {"id": "q4", "type": "checkbox", "title": "What?", "options": ["A", "B"]},
            {"id": "q5", "type": "text", "title": "Anything else?"}
        ]));
        assert_eq!(qs.len(), 5);
        assert!(qs[0].required && !qs[1].required);
        assert_eq!(
            qs[2].kind,
            QuestionKind::Mcq {
                options: vec!["Price".into(), "Bugs".into()]
            }
        );
        assert_eq!(validate_questions(&qs), Ok(()));
    }

    #[test]
    fn duplicate_ids_empty_options_and_no_questions_are_rejected() {
        let dup = questions(json!([
            {"id": "q", "type": "nps", "title": "a"},
            {"id": "q", "type": "text", "title": "b"}
        ]));
        assert_eq!(
            validate_questions(&dup),
            Err(SurveyError::QuestionId("q".into()))
        );
        let no_options =
            questions(json!([{"id": "q", "type": "mcq", "title": "a", "options": []}]));
        assert_eq!(
            validate_questions(&no_options),
            Err(SurveyError::QuestionOptions("q".into()))
        );
        let repeated = questions(
            json!([{"id": "q", "type": "checkbox", "title": "a", "options": ["x", "x"]}]),
        );
        assert!(validate_questions(&repeated).is_err());
        assert_eq!(validate_questions(&[]), Err(SurveyError::QuestionCount));
    }

    #[test]
    fn question_tags_are_bounded_unique_and_clean() {
        let tagged = |tags: serde_json::Value| {
            validate_questions(&questions(
                json!([{"id": "q", "type": "nps", "title": "a", "tags": tags}]),
            ))
        };
        assert_eq!(tagged(json!(["loyalty", "nps"])), Ok(()));
        assert_eq!(tagged(json!([])), Ok(()));
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        for bad in [
            json!([""]),
            json!([" padded"]),
            json!(["a", "a"]),
            json!(["x".repeat(MAX_TAG_LEN + 1)]),
            json!(["tab\there"]),
            json!(many),
        ] {
            assert_eq!(
                tagged(bad.clone()),
                Err(SurveyError::QuestionTags("q".into())),
                "{bad}"
            );
        }
        // Untagged questions stay as they were stored.
        let plain = questions(json!([{"id": "q", "type": "text", "title": "a"}]));
        assert!(
            serde_json::to_value(&plain[0])
                .unwrap()
                .get("tags")
                .is_none()
        );
    }

    #[test]
    fn sample_rate_must_lie_in_the_unit_interval() {
        for ok in [0.0, 0.5, 1.0] {
            assert!(validate_sample_rate(ok).is_ok());
        }
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(validate_sample_rate(bad), Err(SurveyError::SampleRate));
        }
    }

    #[test]
    fn cooldown_and_lifetime_are_bounded() {
        assert!(validate_cooldown(0).is_ok());
        assert!(validate_cooldown(-1).is_err());
        assert!(validate_lifetime(DEFAULT_LIFETIME_SECONDS).is_ok());
        assert!(validate_lifetime(10).is_err());
    }

    #[test]
    fn trigger_keys_drop_repeats() {
        let trigger: SurveyTrigger = serde_json::from_value(json!({
            "events": ["trial_expired", {"custom": "x"}, "trial_expired"]
        }))
        .unwrap();
        assert_eq!(
            trigger.keys(),
            vec!["trial_expired".to_owned(), "custom:x".to_owned()]
        );
    }

    #[test]
    fn a_kind_is_named_as_it_travels() {
        for q in questions(json!([
            {"id": "a", "type": "nps", "title": "t"},
            {"id": "b", "type": "checkbox", "title": "t", "options": ["x"]},
            {"id": "c", "type": "text", "title": "t"}
        ])) {
            let wire = serde_json::to_value(&q).unwrap();
            assert_eq!(wire["type"], q.kind.name());
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            SurveyStatus::Draft,
            SurveyStatus::Live,
            SurveyStatus::Paused,
            SurveyStatus::Archived,
        ] {
            assert_eq!(SurveyStatus::parse(s.as_str()), Some(s));
        }
    }
}
