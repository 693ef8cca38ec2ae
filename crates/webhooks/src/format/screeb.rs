//! Screeb's webhook v2.0.0: `{event_id, event_type, version: "2.0.0", time, time_ms,
//! payload}` for the three response stages, every date beside its `_ms` twin.
//!
//! What Beckon holds is mapped field by field:
//!
//! - `event_id` is the `webhook-id`; `time` when the event occurred.
//! - `organization` the organization; `channel.type` where the response is given
//!   (`hosted-page` or `widget`), and `channel.id` an id derived from the project and that
//!   type, the same for every response of the project given there.
//! - `survey.scenario_version` the survey version the invitation shows, `scenario_time` when
//!   that version was saved, and `scenario_id` an id derived from the survey and the version.
//! - `user.user_id` the user's `user_ref`; `anonymous_id` an id derived from the project and
//!   the `user_ref`; `group_names` the user's `groups`; `name` and `email` `null` when unknown.
//! - `response.time` when the survey was first shown (or first answered); `locale` the
//!   browser's language; `hidden_fields` the user's attributes, with the browser's `locale`
//!   and `user_agent` when known (over attributes of the same names); `completion`
//!   `not_started` until the first answer, `partially_completed` until the response is
//!   submitted (and when it is closed), `fully_completed` once submitted;
//!   `time_to_complete_second` `null` until the response ends.
//! - `response.question` and `response.answer` the answer just given (`response.answered`),
//!   the last answer given (`response.ended`) or `null` (no answer yet); `items` every answer
//!   so far; `tags` the tags of all of them.
//! - A question's `type` is `input` (text), `nps`, `rating`, `choice` (one option) or
//!   `multiple_choice` (several options, one field each); a field's `type` is `string` or
//!   `number`, the value repeated in the field of that type, and its `id` derived from the
//!   survey, the question and (for options) the option.

use crate::payload::{Tenanted, WebhookBody};
use beckon_domain::envelope::{self, AnswerDetails, ResponseProgressed, ResponseStage};
use beckon_domain::ids;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The semantic version of the payload, Screeb's `version`.
pub const VERSION: &str = "2.0.0";

/// A Screeb webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The event's id: also the `webhook-id` header, the same on every retry.
    pub event_id: Uuid,
    /// `response.displayed`, `response.answered` or `response.ended`.
    pub event_type: String,
    /// Always `2.0.0`.
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: OffsetDateTime,
    pub time_ms: i64,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub organization: Organization,
    pub channel: ChannelInfo,
    pub survey: Survey,
    pub user: User,
    pub response: Response,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
}

/// Where the response is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInfo {
    /// Derived from the project and the type: the same for all the project's responses there.
    pub id: Uuid,
    /// `hosted-page` or `widget`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    pub id: Uuid,
    pub name: String,
    /// Derived from the survey and its version.
    pub scenario_id: String,
    /// The survey version the invitation shows.
    pub scenario_version: i32,
    /// When that version was saved.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub scenario_time: OffsetDateTime,
    pub scenario_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Derived from the project and the user's `user_ref`.
    pub anonymous_id: Uuid,
    /// The user's id in your system (Beckon's `user_ref`).
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The user's groups (`groups` of users/upsert).
    pub group_names: Vec<String>,
}

/// How far the response got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Shown, nothing answered yet.
    NotStarted,
    /// Answered in part: still going, or closed before it was submitted.
    PartiallyCompleted,
    /// Submitted.
    FullyCompleted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub id: Uuid,
    /// The respondent's language as their browser reports it (`en-US`), when known.
    pub locale: Option<String>,
    /// When the survey was first shown (or first answered).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: OffsetDateTime,
    pub time_ms: i64,
    /// Seconds from `time` to the end (`null` until the response ends).
    pub time_to_complete_second: Option<i64>,
    pub completion: Completion,
    /// The user's attributes, with the browser's `locale` and `user_agent` when known.
    pub hidden_fields: Map<String, Value>,
    /// The question just answered, or the last one (`null` before any answer).
    pub question: Option<Question>,
    /// Its answer.
    pub answer: Option<Answer>,
    /// The tags of every answer so far, each once.
    pub tags: Vec<String>,
    /// Every answer so far, in the order given.
    pub items: Vec<Item>,
}

/// The kind of a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionType {
    /// Free text.
    Input,
    /// Net Promoter Score, 0 to 10.
    Nps,
    /// A rating from 1 to 5.
    Rating,
    /// One of the options.
    Choice,
    /// Any of the options.
    MultipleChoice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The question's id in the survey.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// One per value: one for a score, a text or an option; one per option chosen.
    pub fields: Vec<Field>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub replied_at: OffsetDateTime,
    pub replied_at_ms: i64,
    /// The question's tags.
    pub tags: Vec<String>,
}

/// The type of a field's value: the one of `text`, `number`, `boolean`, `time` that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Time,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The value, whatever its type.
    pub value: Value,
    pub text: Option<String>,
    pub number: Option<serde_json::Number>,
    pub boolean: Option<bool>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub question: Question,
    pub answer: Answer,
}

/// Why a stored body has no Screeb webhook.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
    #[error("Screeb webhooks are sent for response events only, not {0}")]
    NotAResponse(String),
    #[error("the message was stored before the survey version's time was kept")]
    NoScenarioTime,
}

/// Milliseconds since the Unix epoch.
fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn question(survey: Uuid, answer: &AnswerDetails) -> Item {
    let kind = match answer.question_type.as_str() {
        "nps" => QuestionType::Nps,
        "rating" => QuestionType::Rating,
        "mcq" => QuestionType::Choice,
        "checkbox" => QuestionType::MultipleChoice,
        _ => QuestionType::Input,
    };
    let field = |value: &Value| {
        let id = ids::derive(
            survey,
            &format!(
                "screeb/field/{}/{}",
                answer.question_id,
                match (kind, value) {
                    (QuestionType::Choice | QuestionType::MultipleChoice, Value::String(o)) => o,
                    _ => "",
                }
            ),
            &[],
        );
        match value {
            Value::Number(n) => Field {
                id,
                kind: FieldType::Number,
                value: value.clone(),
                text: None,
                number: Some(n.clone()),
                boolean: None,
                time: None,
            },
            Value::Bool(b) => Field {
                id,
                kind: FieldType::Boolean,
                value: value.clone(),
                text: None,
                number: None,
                boolean: Some(*b),
                time: None,
            },
            other => {
                let text = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned);
                Field {
                    id,
                    kind: FieldType::String,
                    value: Value::String(text.clone()),
                    text: Some(text),
                    number: None,
                    boolean: None,
                    time: None,
                }
            }
        }
    };
    let fields = match &answer.answer {
        Value::Array(values) => values.iter().map(field).collect(),
        Value::Null => Vec::new(),
        value => vec![field(value)],
    };
    Item {
        question: Question {
            id: answer.question_id.clone(),
            kind,
            title: answer.title.clone(),
        },
        answer: Answer {
            fields,
            replied_at: answer.answered_at,
            replied_at_ms: millis(answer.answered_at),
            tags: answer.tags.clone(),
        },
    }
}

/// The Screeb webhook of a stored `response.*` body.
pub fn event(stored: &[u8]) -> Result<Event, EventError> {
    let body: WebhookBody<Tenanted<ResponseProgressed>> = serde_json::from_slice(stored)?;
    let stage = super::RESPONSE_STAGES
        .into_iter()
        .find(|s| s.webhook_type() == body.kind)
        .ok_or_else(|| EventError::NotAResponse(body.kind.clone()))?;
    let Tenanted {
        data: progressed,
        organization,
        project,
    } = body.data;
    let survey_id = progressed.survey.id;
    let scenario_time = progressed
        .survey
        .version_created_at
        .ok_or(EventError::NoScenarioTime)?;
    let response = progressed.response;
    let items: Vec<Item> = response
        .answers
        .iter()
        .map(|a| question(survey_id, a))
        .collect();
    let current = match stage {
        ResponseStage::Answered => progressed.question.map(|a| question(survey_id, &a)),
        ResponseStage::Ended => items.last().cloned(),
        ResponseStage::Displayed => None,
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in items.iter().flat_map(|i| &i.answer.tags) {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    let completion = match response.completion {
        Some(envelope::Completion::FullyCompleted) => Completion::FullyCompleted,
        Some(envelope::Completion::PartiallyCompleted) => Completion::PartiallyCompleted,
        None if items.is_empty() => Completion::NotStarted,
        None => Completion::PartiallyCompleted,
    };
    let mut hidden_fields = progressed.user.attributes;
    for (key, value) in [
        ("locale", &response.locale),
        ("user_agent", &response.user_agent),
    ] {
        if let Some(value) = value {
            hidden_fields.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    let started = response.started_at.unwrap_or(body.occurred_at);
    let channel = response.channel.as_str();
    let user_ref = progressed.user.user_ref.as_str().to_owned();
    Ok(Event {
        event_id: body.id,
        event_type: body.kind,
        version: VERSION.to_owned(),
        time: body.occurred_at,
        time_ms: millis(body.occurred_at),
        payload: Payload {
            organization: Organization {
                id: organization.id,
                name: organization.name,
            },
            channel: ChannelInfo {
                id: ids::derive(project.id, &format!("screeb/channel/{channel}"), &[]),
                kind: channel.to_owned(),
            },
            survey: Survey {
                id: survey_id,
                name: progressed.survey.name,
                scenario_id: ids::derive(
                    survey_id,
                    &format!("screeb/scenario/{}", progressed.survey.version),
                    &[],
                )
                .to_string(),
                scenario_version: progressed.survey.version,
                scenario_time,
                scenario_time_ms: millis(scenario_time),
            },
            user: User {
                anonymous_id: ids::derive(project.id, &format!("screeb/user/{user_ref}"), &[]),
                user_id: user_ref,
                name: progressed.user.name,
                email: progressed.user.email,
                group_names: progressed.user.groups,
            },
            response: Response {
                id: response.id,
                locale: response.locale,
                time: started,
                time_ms: millis(started),
                time_to_complete_second: response.time_to_complete_seconds,
                completion,
                hidden_fields,
                question: current.as_ref().map(|i| i.question.clone()),
                answer: current.map(|i| i.answer),
                tags,
                items,
            },
        },
    })
}

/// The Screeb body of a stored `response.*` body.
pub fn render(stored: &[u8]) -> Result<Vec<u8>, EventError> {
    Ok(serde_json::to_vec(&event(stored)?)?)
}

/// The JSON Schema of the Screeb webhook of `kind`, with `event_type` and `version` pinned:
/// of the body as it is sent, so every field is required, those that may be `null` too.
pub fn schema(kind: &str) -> serde_json::Value {
    let generated = schemars::generate::SchemaSettings::default()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Event>();
    let mut schema = serde_json::to_value(generated).expect("a schema always serialises");
    schema["title"] = format!("{kind} webhook v{VERSION} (Screeb)").into();
    schema["properties"]["event_type"] = serde_json::json!({ "const": kind });
    schema["properties"]["version"] = serde_json::json!({ "const": VERSION });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Named, Tenant};
    use beckon_domain::envelope::{Channel, ResponseDetails, SurveyDetails, UserDetails};
    use beckon_domain::user_ref::UserRef;

    fn answer(id: &str, kind: &str, value: Value, tags: &[&str]) -> AnswerDetails {
        AnswerDetails {
            question_id: id.into(),
            title: format!("{id}?"),
            question_type: kind.into(),
            answer: value,
            answered_at: time::macros::datetime!(2026-12-02 10:00:01.5 UTC),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn stored(stage: ResponseStage, answers: Vec<AnswerDetails>) -> Vec<u8> {
        let project = Uuid::now_v7();
        let body = WebhookBody {
            id: Uuid::now_v7(),
            kind: stage.webhook_type().to_owned(),
            version: 1,
            occurred_at: time::macros::datetime!(2026-12-02 10:00:02.123456789 UTC),
            project_id: project,
            data: Tenanted::new(
                Tenant {
                    organization: Named {
                        id: Uuid::now_v7(),
                        name: "Acme".into(),
                    },
                    project: Named {
                        id: project,
                        name: "Web".into(),
                    },
                },
                ResponseProgressed {
                    stage,
                    survey: SurveyDetails {
                        id: Uuid::now_v7(),
                        name: "NPS".into(),
                        version: 3,
                        version_created_at: Some(
                            time::macros::datetime!(2026-12-01 08:00:00.069497 UTC),
                        ),
                    },
                    user: UserDetails {
                        user_ref: UserRef::parse("u-1").unwrap(),
                        email: None,
                        name: Some("Ada".into()),
                        attributes: serde_json::json!({"plan": "pro", "locale": "de"})
                            .as_object()
                            .unwrap()
                            .clone(),
                        groups: vec!["beta".into()],
                    },
                    trigger: None,
                    question: answers.last().cloned(),
                    response: ResponseDetails {
                        id: Uuid::now_v7(),
                        invitation_id: Uuid::now_v7(),
                        status: "in_progress".into(),
                        sequence: 1,
                        answers,
                        channel: Channel::Widget,
                        locale: Some("fr-FR".into()),
                        user_agent: None,
                        started_at: None,
                        ended_at: None,
                        completion: None,
                        time_to_complete_seconds: None,
                    },
                },
            ),
        };
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn answers_become_typed_fields_and_the_browser_wins_over_attributes() {
        let answers = vec![
            answer("q1", "nps", Value::from(9), &["nps"]),
            answer(
                "q2",
                "checkbox",
                serde_json::json!(["API", "Widget"]),
                &["nps", "x"],
            ),
        ];
        let event = event(&stored(ResponseStage::Answered, answers)).unwrap();
        assert_eq!(event.version, "2.0.0");
        assert_eq!(event.time_ms, 1_796_205_602_123);
        let response = &event.payload.response;
        assert_eq!(response.completion, Completion::PartiallyCompleted);
        assert_eq!(response.hidden_fields["locale"], "fr-FR");
        assert_eq!(response.hidden_fields["plan"], "pro");
        assert_eq!(response.tags, ["nps", "x"]);
        let nps = &response.items[0].answer.fields;
        assert_eq!(nps.len(), 1);
        assert_eq!(
            (
                nps[0].kind,
                &nps[0].value,
                nps[0].number.as_ref().and_then(|n| n.as_i64())
            ),
            (FieldType::Number, &Value::from(9), Some(9))
        );
        assert_eq!(nps[0].text, None);
        let boxes = response.answer.as_ref().unwrap();
        assert_eq!(boxes.fields.len(), 2);
        assert_eq!(boxes.fields[1].text.as_deref(), Some("Widget"));
        assert_ne!(boxes.fields[0].id, boxes.fields[1].id);
        assert_eq!(
            response.question.as_ref().unwrap().kind,
            QuestionType::MultipleChoice
        );
        assert_eq!(event.payload.survey.scenario_time_ms, 1_796_112_000_069);
    }

    #[test]
    fn a_display_has_no_answer_and_other_events_have_no_screeb_body() {
        let displayed = event(&stored(ResponseStage::Displayed, Vec::new())).unwrap();
        assert_eq!(
            displayed.payload.response.completion,
            Completion::NotStarted
        );
        assert_eq!(displayed.payload.response.question, None);
        assert_eq!(displayed.payload.response.answer, None);
        let mut raw: Value =
            serde_json::from_slice(&stored(ResponseStage::Ended, Vec::new())).unwrap();
        raw["type"] = "invitation.created".into();
        assert!(matches!(
            event(&serde_json::to_vec(&raw).unwrap()),
            Err(EventError::NotAResponse(_))
        ));
        raw["type"] = "response.ended".into();
        raw["data"]["survey"]
            .as_object_mut()
            .unwrap()
            .remove("version_created_at");
        assert!(matches!(
            event(&serde_json::to_vec(&raw).unwrap()),
            Err(EventError::NoScenarioTime)
        ));
    }
}
