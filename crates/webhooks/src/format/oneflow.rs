//! 1Flow's survey-response alert, `submitted_survey`: one per fully completed response
//! (`response.ended` submitted, not closed), its answers as strings.
//!
//! What Beckon holds is mapped field by field: `alert_id` is the `webhook-id`; `project_name`
//! the project's name; `platform` where the response was given (`hosted-page` or `widget`);
//! `survey_info.screens` the questions answered, in the order they were answered, each answer
//! as text (a score as its number, a choice as the option, several choices joined with `", "`);
//! `user.user_system_id` the user's `user_ref`; `user.parameters` their attributes, with
//! `email` and `name` when known and not attributes already; `timestamp` when the response
//! was submitted; `trigger_event` the event that caused the invitation and its parameters (an
//! empty name and no parameters once the event is no longer kept).

use crate::payload::{Tenanted, WebhookBody};
use beckon_domain::envelope::{AnswerDetails, ResponseProgressed};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The one alert 1Flow sends.
pub const ALERT_NAME: &str = "submitted_survey";

/// A 1Flow webhook alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Always `submitted_survey`.
    pub alert_name: String,
    /// The alert's id: the `webhook-id`, the same on every retry.
    pub alert_id: String,
    pub project_name: String,
    pub survey_id: String,
    /// Where the survey was answered: `hosted-page` or `widget`.
    pub platform: String,
    pub survey_info: SurveyInfo,
    pub user: User,
    /// When the user submitted the survey (ISO 8601, milliseconds, UTC).
    pub timestamp: String,
    pub trigger_event: TriggerEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyInfo {
    pub name: String,
    /// The questions answered, in the order they were answered.
    pub screens: Vec<Screen>,
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    pub title: String,
    /// The answer as text.
    pub answer: String,
    #[serde(rename = "type")]
    pub kind: ScreenType,
}

/// 1Flow's screen types; Beckon's rating (1 to 5, numbered) is `rating-numerical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScreenType {
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "nps")]
    Nps,
    #[serde(rename = "mcq")]
    Mcq,
    #[serde(rename = "checkbox")]
    Checkbox,
    #[serde(rename = "rating-numerical")]
    RatingNumerical,
    #[serde(rename = "rating-5-star")]
    Rating5Star,
    #[serde(rename = "rating-emojis")]
    RatingEmojis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's id in your system (Beckon's `user_ref`).
    pub user_system_id: String,
    pub parameters: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerEvent {
    pub event_name: String,
    pub parameters: Map<String, Value>,
}

/// Why a stored body has no 1Flow alert.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
    #[error("1Flow alerts are sent for submitted responses only")]
    NotSubmitted,
}

fn screen(answer: &AnswerDetails) -> Screen {
    let kind = match answer.question_type.as_str() {
        "nps" => ScreenType::Nps,
        "rating" => ScreenType::RatingNumerical,
        "mcq" => ScreenType::Mcq,
        "checkbox" => ScreenType::Checkbox,
        _ => ScreenType::Text,
    };
    let text = match &answer.answer {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Screen {
        title: answer.title.clone(),
        answer: text,
        kind,
    }
}

/// ISO 8601 in UTC with milliseconds, as 1Flow writes its timestamps.
fn millis(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The alert of a stored `response.ended` body.
pub fn alert(stored: &[u8]) -> Result<Alert, AlertError> {
    let body: WebhookBody<Tenanted<ResponseProgressed>> = serde_json::from_slice(stored)?;
    let data = body.data;
    let ended = data
        .data
        .response
        .ended_at
        .ok_or(AlertError::NotSubmitted)?;
    if data.data.response.completion != Some(beckon_domain::envelope::Completion::FullyCompleted) {
        return Err(AlertError::NotSubmitted);
    }
    let progressed = data.data;
    let mut parameters = progressed.user.attributes;
    for (key, value) in [
        ("email", progressed.user.email),
        ("name", progressed.user.name),
    ] {
        if let Some(value) = value {
            parameters.entry(key).or_insert(Value::String(value));
        }
    }
    let trigger_event = match progressed.trigger {
        Some(trigger) => TriggerEvent {
            event_name: trigger.event.name().to_owned(),
            parameters: match trigger.parameters {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            },
        },
        None => TriggerEvent {
            event_name: String::new(),
            parameters: Map::new(),
        },
    };
    Ok(Alert {
        alert_name: ALERT_NAME.to_owned(),
        alert_id: body.id.to_string(),
        project_name: data.project.name,
        survey_id: progressed.survey.id.to_string(),
        platform: progressed.response.channel.as_str().to_owned(),
        survey_info: SurveyInfo {
            name: progressed.survey.name,
            screens: progressed.response.answers.iter().map(screen).collect(),
        },
        user: User {
            user_system_id: progressed.user.user_ref.as_str().to_owned(),
            parameters,
        },
        timestamp: millis(ended),
        trigger_event,
    })
}

/// The 1Flow body of a stored `response.ended` body.
pub fn render(stored: &[u8]) -> Result<Vec<u8>, AlertError> {
    Ok(serde_json::to_vec(&alert(stored)?)?)
}

/// The JSON Schema of the alert.
pub fn schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Alert)).expect("a schema always serialises");
    schema["title"] = "submitted_survey alert (1Flow)".into();
    schema["properties"]["alert_name"] = serde_json::json!({ "const": ALERT_NAME });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_answers_are_text() {
        let at = time::macros::datetime!(2022-09-30 03:26:24.894512 UTC);
        assert_eq!(millis(at), "2022-09-30T03:26:24.894Z");
        let answer = |kind: &str, value: Value| AnswerDetails {
            question_id: "q".into(),
            title: "Q?".into(),
            question_type: kind.into(),
            answer: value,
            answered_at: at,
            tags: Vec::new(),
        };
        let nps = screen(&answer("nps", Value::from(10)));
        assert_eq!((nps.answer.as_str(), nps.kind), ("10", ScreenType::Nps));
        let rating = screen(&answer("rating", Value::from(4)));
        assert_eq!(rating.kind, ScreenType::RatingNumerical);
        let boxes = screen(&answer("checkbox", serde_json::json!(["API", "Widget"])));
        assert_eq!(
            (boxes.answer.as_str(), boxes.kind),
            ("API, Widget", ScreenType::Checkbox)
        );
        let text = screen(&answer("text", Value::from("best user experience")));
        assert_eq!(text.answer, "best user experience");
    }
}
