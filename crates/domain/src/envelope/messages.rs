//! The payloads of the dispatch pipeline:
//! gateway → `event.received` → matcher → `event.matched` → invitation → `dispatch.completed`.

use super::{Kind, Payload};
use crate::event::LifecycleEvent;
use crate::outcome::DispatchCounts;
use crate::survey::SampleBy;
use crate::user_ref::UserRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A JSON object a caller gave with an event and Beckon carries as it came.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// How a trigger entered Beckon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// `POST /api/v1/lifecycle/dispatch`, answered synchronously.
    Dispatch,
    /// `POST /api/v1/events/send`, fire and forget.
    Event,
    /// An event that fired at a scheduled time.
    Scheduled,
}

impl TriggerType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatch => "dispatch",
            Self::Event => "event",
            Self::Scheduled => "scheduled",
        }
    }

    /// The inverse of [`TriggerType::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Dispatch, Self::Event, Self::Scheduled]
            .into_iter()
            .find(|t| t.as_str() == raw)
    }
}

/// Where the stage that finishes a trigger sends its one reply. AMQP properties do not carry
/// over from hop to hop, so the address travels inside the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplyTo {
    /// The queue of the waiting gateway instance, reached through the default exchange.
    pub queue: String,
}

/// A lifecycle event for one user, accepted by the gateway. The envelope's `correlation_id`
/// is the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventReceived {
    pub trigger_type: TriggerType,
    pub user_ref: UserRef,
    pub event: LifecycleEvent,
    /// Set when a caller waits for the outcome.
    pub reply_to: Option<ReplyTo>,
    /// Match this one survey only (a trial reminder fires for its own survey).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_id: Option<Uuid>,
    /// The event's own parameters, carried to the webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<serde_json::Value>,
    /// The caller's values for what the event starts (events/send `variables`), carried to the
    /// webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<JsonObject>,
    /// Where the event came from (events/send `source`: `type`, `ip`, `user_agent`, …),
    /// carried to the webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<JsonObject>,
}

impl Kind for EventReceived {
    const TYPE: &'static str = "event.received";
    const VERSION: u32 = 1;
}

impl Payload for EventReceived {}

/// A Live survey an event matched, with the rules that apply to it as they were at matching
/// time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatchedSurvey {
    pub survey_id: Uuid,
    /// The survey's name, for the webhooks the invitation causes.
    #[serde(default)]
    pub name: String,
    /// The survey version the invitation will show.
    pub version: i32,
    /// Seconds after an invitation during which the same user gets no other; 0 = off.
    pub cooldown_seconds: i64,
    /// Share of triggers that get an invitation, 0 to 1.
    pub sample_rate: f64,
    /// Whether the sample rolls per event (when absent) or once per user.
    // `default`: envelopes queued before the field existed still read; left out when it is
    // the default, as most surveys have it.
    #[serde(default, skip_serializing_if = "SampleBy::is_default")]
    pub sample_by: SampleBy,
    /// Seconds an invitation's magic link stays valid.
    pub invitation_lifetime_seconds: i64,
    /// Why the matcher already knows this survey gets no invitation, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Skip>,
}

/// Why a survey the event matched gets no invitation, decided by the matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Skip {
    /// The survey's conditions were false; `clause` is the JSON pointer of the clause that was.
    ConditionFalse { clause: String },
    /// The survey's stored conditions could not be read: the survey errors, saying why.
    Unreadable { reason: String },
}

/// Every Live survey one event matched — one envelope per event, possibly with none, so the
/// next stage knows when all matches are done and can reply once.
// `S` and `U` are how each survey is written: read, always a `MatchedSurvey` and an
// `UnmatchedSurvey`; a writer may carry the JSON of one written once for many envelopes
// instead, which reads the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "EventMatched")]
#[serde(bound(deserialize = "S: Deserialize<'de>, U: Deserialize<'de>"))]
pub struct EventMatched<S = MatchedSurvey, U = UnmatchedSurvey> {
    pub trigger_type: TriggerType,
    pub user_ref: UserRef,
    pub event: LifecycleEvent,
    pub reply_to: Option<ReplyTo>,
    pub surveys: Vec<S>,
    /// The event's own parameters, carried to the webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<serde_json::Value>,
    /// The event's `variables`, carried to the webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<JsonObject>,
    /// The event's `source`, carried to the webhooks it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<JsonObject>,
    /// The project's other surveys (not archived), which the event did not match: recorded
    /// on the trigger with why, so it lists every survey.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<U>,
}

/// A survey of the project an event did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnmatchedSurvey {
    pub survey_id: Uuid,
    pub version: i32,
    /// `true`: Live, but not subscribed to the event; `false`: not Live.
    pub live: bool,
}

impl<S, U> Kind for EventMatched<S, U> {
    const TYPE: &'static str = "event.matched";
    const VERSION: u32 = 1;
}

impl Payload for EventMatched {}

/// An invitation a dispatch created, as the dispatch response lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedInvitation {
    pub survey_id: Uuid,
    pub user_ref: UserRef,
    /// The public base URL, `/surveys/` and the 43-character token.
    pub magic_link_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
}

/// A magic link as it travels between services: sealed under the deployment's key, so that no
/// queue, outbox row or dead letter holds it in plaintext. Whoever shows it opens it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CarriedLink {
    Sealed {
        /// The magic-link URL sealed under the deployment's key, in base64.
        magic_link_sealed: String,
    },
    /// As services sent it before links were sealed: still read, so that messages queued
    /// across an upgrade flow on. Nothing sends it any more.
    Plain { magic_link_url: String },
}

/// A magic link as the `invitation.created` webhook shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkUrl {
    /// The link to send the user; it is a secret, like a password for this one survey.
    pub magic_link_url: String,
}

/// An invitation a dispatch created, as the reply to the waiting gateway carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuedInvitation {
    pub survey_id: Uuid,
    pub user_ref: UserRef,
    #[serde(flatten)]
    pub link: CarriedLink,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub expires_at: OffsetDateTime,
}

/// The outcome of a trigger, sent once to the gateway that waits for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DispatchCompleted {
    pub trigger_id: Uuid,
    #[serde(flatten)]
    pub counts: DispatchCounts,
    pub created_invitations: Vec<IssuedInvitation>,
}

impl Kind for DispatchCompleted {
    const TYPE: &'static str = "dispatch.completed";
    const VERSION: u32 = 1;
}

impl Payload for DispatchCompleted {}

/// The invitation a `invitation.created` webhook announces.
// Its link is `L`: sealed (`CarriedLink`) on the bus, in plaintext (`LinkUrl`) in the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "InvitationDetails")]
pub struct InvitationDetails<L> {
    pub id: Uuid,
    #[serde(flatten)]
    pub link: L,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub expires_at: OffsetDateTime,
}

/// The survey (and the version of it) an invitation shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SurveyDetails {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    /// When this version of the survey was saved (in `response.*` webhooks).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub version_created_at: Option<OffsetDateTime>,
}

/// The user, as the project last described them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserDetails {
    pub user_ref: UserRef,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The user's custom attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The groups the user belongs to (`groups` of users/upsert).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The event that caused an invitation, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TriggerDetails {
    pub id: Uuid,
    pub trigger_type: TriggerType,
    pub event: LifecycleEvent,
    /// The event's parameters (`event_data` of events/send), if any.
    pub parameters: Option<serde_json::Value>,
    /// The caller's values for what the event starts (`variables` of events/send), if any.
    // `default`: announcements queued before the field existed still read.
    #[serde(default)]
    pub variables: Option<JsonObject>,
    /// Where the event came from (`source` of events/send: `type`, `ip`, `user_agent`), if any.
    #[serde(default)]
    pub source: Option<JsonObject>,
}

/// An invitation was created: the `invitation.created` webhook's data, and the envelope that
/// carries it to the webhook service.
// On the bus its link travels sealed (`InvitationCreated<CarriedLink>`); the webhook shows it
// (`InvitationCreated<LinkUrl>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "InvitationCreated")]
pub struct InvitationCreated<L = CarriedLink> {
    pub invitation: InvitationDetails<L>,
    pub survey: SurveyDetails,
    pub user: UserDetails,
    pub trigger: TriggerDetails,
}

impl<L> InvitationCreated<L> {
    /// The same announcement with its link as `link` makes it.
    pub fn with_link<M>(self, link: impl FnOnce(L) -> M) -> InvitationCreated<M> {
        InvitationCreated {
            invitation: InvitationDetails {
                id: self.invitation.id,
                link: link(self.invitation.link),
                expires_at: self.invitation.expires_at,
            },
            survey: self.survey,
            user: self.user,
            trigger: self.trigger,
        }
    }
}

impl Kind for InvitationCreated {
    const TYPE: &'static str = "invitation.created";
    const VERSION: u32 = 1;
}

impl Payload for InvitationCreated {}

/// The stage of a response a `response.*` webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStage {
    /// The respond page was shown (reported by the page itself, once per invitation).
    Displayed,
    /// A question was answered (each answer, as it is given).
    Answered,
    /// The respondent submitted the survey, or closed it.
    Ended,
}

impl ResponseStage {
    /// The webhook type of this stage: `response.displayed`, `response.answered`,
    /// `response.ended`.
    pub fn webhook_type(self) -> &'static str {
        match self {
            Self::Displayed => "response.displayed",
            Self::Answered => "response.answered",
            Self::Ended => "response.ended",
        }
    }
}

/// One answer, with the question it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnswerDetails {
    pub question_id: String,
    pub title: String,
    /// `nps`, `rating`, `mcq`, `checkbox` or `text`.
    pub question_type: String,
    /// A number (nps, rating), an option (mcq), a list of options (checkbox) or text.
    pub answer: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub answered_at: OffsetDateTime,
    /// The question's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Where a response is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The hosted respond page a magic link opens.
    #[default]
    HostedPage,
    /// The in-app widget, through the respond API.
    Widget,
}

impl Channel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HostedPage => "hosted-page",
            Self::Widget => "widget",
        }
    }

    /// The inverse of [`Channel::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::HostedPage, Self::Widget]
            .into_iter()
            .find(|c| c.as_str() == raw)
    }
}

/// How an ended response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Submitted with every required question answered.
    FullyCompleted,
    /// Closed by the respondent before it was submitted.
    PartiallyCompleted,
}

/// A response so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseDetails {
    pub id: Uuid,
    pub invitation_id: Uuid,
    /// `in_progress`, `completed` or `closed`.
    pub status: String,
    /// Counts this response's webhooks from 1, so a receiver can order them.
    pub sequence: i32,
    pub answers: Vec<AnswerDetails>,
    /// Where it is given: `hosted-page` or `widget`.
    #[serde(default)]
    pub channel: Channel,
    /// The respondent's language as their browser reports it (BCP 47: `en-US`), when known.
    #[serde(default)]
    pub locale: Option<String>,
    /// The respondent's browser (its `User-Agent`) when the survey was shown, when known.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// When the survey was first shown (or, when that was never reported, first answered).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub started_at: Option<OffsetDateTime>,
    /// When it ended (`response.ended` only).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub ended_at: Option<OffsetDateTime>,
    /// How it ended (`response.ended` only): `fully_completed` (submitted) or
    /// `partially_completed` (closed by the respondent).
    #[serde(default)]
    pub completion: Option<Completion>,
    /// Whole seconds from `started_at` to `ended_at` (`response.ended` only).
    #[serde(default)]
    pub time_to_complete_seconds: Option<i64>,
}

/// A response progressed: the data of the `response.displayed`, `response.answered` and
/// `response.ended` webhooks, and the envelope that carries them to the webhook service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseProgressed {
    pub stage: ResponseStage,
    pub survey: SurveyDetails,
    pub user: UserDetails,
    /// The event that caused the invitation, when it is still known.
    pub trigger: Option<TriggerDetails>,
    pub response: ResponseDetails,
    /// The answer just given (`response.answered` only).
    pub question: Option<AnswerDetails>,
}

impl Kind for ResponseProgressed {
    const TYPE: &'static str = "response.progressed";
    const VERSION: u32 = 1;
}

impl Payload for ResponseProgressed {}
