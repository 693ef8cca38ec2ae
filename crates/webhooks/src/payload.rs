//! The body every webhook carries: `{id, type, version, occurred_at, project_id, data}`, and
//! the catalogue of event types a subscription may choose.
//!
//! `id` is the event's id, sent as `webhook-id` too, the same for every subscription and on
//! every retry. `version` is the payload version, an integer from 1; a subscription pins the
//! version it receives.

use crate::sealed::{SealError, SealingKeys};
use beckon_domain::envelope::{
    Completion, Envelope, InvitationCreated, Kind, LinkUrl, Payload, ResponseProgressed,
    ResponseStage,
};
pub use beckon_domain::tenant::{Named, Tenant};
use beckon_domain::webhook_format::PayloadFormat;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody<T> {
    /// The event id; also the `webhook-id` header. Stable across retries and subscriptions.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload version, from 1.
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
    pub project_id: Uuid,
    pub data: T,
}

/// A webhook's data: the event's own fields, beside the organization and project it belongs
/// to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tenanted<D> {
    #[serde(flatten)]
    pub data: D,
    pub organization: Named,
    pub project: Named,
}

impl<D> Tenanted<D> {
    pub fn new(tenant: Tenant, data: D) -> Self {
        Self {
            data,
            organization: tenant.organization,
            project: tenant.project,
        }
    }
}

/// A bus payload that customers receive as a webhook.
pub trait Announcement: Payload + Clone {
    /// What the webhook's `data` holds: the payload, with what travels sealed opened.
    type Data: Serialize;
    /// The webhook type this payload is delivered as.
    fn webhook_type(&self) -> &'static str;
    /// The user the event is about, so erasing the user can find it.
    fn user_ref(&self) -> &str;
    /// The webhook's data.
    fn webhook_data(&self, key: &SealingKeys) -> Result<Self::Data, SealError>;
    /// How the response it is about ended, when it is about one that did.
    fn completion(&self) -> Option<Completion> {
        None
    }
}

impl Announcement for InvitationCreated {
    type Data = InvitationCreated<LinkUrl>;
    fn webhook_type(&self) -> &'static str {
        Self::TYPE
    }
    fn user_ref(&self) -> &str {
        self.user.user_ref.as_str()
    }
    fn webhook_data(&self, key: &SealingKeys) -> Result<Self::Data, SealError> {
        let link = key.open_link(&self.invitation.link)?;
        Ok(self.clone().with_link(|_| link))
    }
}

impl Announcement for ResponseProgressed {
    type Data = Self;
    fn webhook_type(&self) -> &'static str {
        self.stage.webhook_type()
    }
    fn user_ref(&self) -> &str {
        self.user.user_ref.as_str()
    }
    fn webhook_data(&self, _: &SealingKeys) -> Result<Self, SealError> {
        Ok(self.clone())
    }
    fn completion(&self) -> Option<Completion> {
        self.response.completion
    }
}

impl<D> WebhookBody<Tenanted<D>> {
    /// The webhook an envelope announces: same id, version and time, its data beside the
    /// `tenant` the envelope's project belongs to.
    pub fn from_envelope<T: Announcement<Data = D>>(
        env: &Envelope<T>,
        key: &SealingKeys,
        tenant: Tenant,
    ) -> Result<Self, SealError> {
        Ok(Self {
            id: env.id,
            kind: env.data.webhook_type().to_owned(),
            version: env.version,
            occurred_at: env.occurred_at,
            project_id: env.project_id,
            data: Tenanted::new(tenant, env.data.webhook_data(key)?),
        })
    }
}

/// The test event a `ping` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ping {
    /// Always `"ping"`.
    pub message: String,
    pub subscription_id: Uuid,
}

/// The type of a ping; delivered to its subscription whatever event types it chose.
pub const PING: &str = "webhook.ping";

/// Sent when a subscription's attempts fail: at a failed attempt, at most once a day per
/// subscription (a flapping endpoint is not announced at every relapse). An operational
/// event: it goes to the organization's other active subscriptions that name it in their
/// event types.
pub const FAILING: &str = "webhook.failing";

/// Sent when a subscription is disabled for failing (a failure streak past its window, or an
/// endpoint answering 410 Gone). An operational event, like [`FAILING`].
pub const DISABLED: &str = "webhook.disabled";

/// The operational event types: a subscription gets them only by naming them, never through
/// an empty list of event types (which means every survey event).
pub const OPERATIONAL: [&str; 2] = [FAILING, DISABLED];

/// The last failed attempt of a streak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedAttempt {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub attempted_at: OffsetDateTime,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why no answer counted (a timeout, a refused connection), when none did.
    pub error: Option<String>,
}

/// The data of a `webhook.failing` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionFailing {
    /// The subscription whose attempts fail (its project is the event's `project_id`).
    pub subscription_id: Uuid,
    pub description: String,
    /// When the failure streak began; any successful attempt ends it.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub failing_since: OffsetDateTime,
    /// Failed attempts since `failing_since`.
    pub failed_attempts: u32,
    pub last_attempt: FailedAttempt,
}

/// The data of a `webhook.disabled` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionDisabled {
    /// The subscription that was disabled (its project is the event's `project_id`). What
    /// it is sent while disabled is kept as `skipped` deliveries: re-enable it, then
    /// `POST …/recover` sends them.
    pub subscription_id: Uuid,
    pub description: String,
    /// Why, as the subscription's `disabled_reason` says.
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub disabled_at: OffsetDateTime,
    /// When the failure streak that disabled it began.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub failing_since: OffsetDateTime,
    /// Failed attempts in that streak.
    pub failed_attempts: u32,
}

/// One entry of the event type catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct EventType {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: u32,
    pub description: &'static str,
    /// The JSON Schema of the whole webhook body in each format that delivers the type.
    pub schemas: Vec<(PayloadFormat, serde_json::Value)>,
}

impl EventType {
    /// An event type whose webhook data (beside the tenant) is `T`.
    fn of<T: JsonSchema>(kind: &'static str, version: u32, description: &'static str) -> Self {
        Self {
            kind,
            version,
            description,
            schemas: crate::format::schemas::<Tenanted<T>>(kind, version),
        }
    }

    /// The JSON Schema of the body in `format`; `None` when the format does not deliver it.
    pub fn schema(&self, format: PayloadFormat) -> Option<&serde_json::Value> {
        self.schemas
            .iter()
            .find_map(|(f, schema)| (*f == format).then_some(schema))
    }
}

/// The JSON Schema of the body of a webhook whose data is `T`, with `type` and `version` pinned.
pub fn schema_of<T: JsonSchema>(kind: &str, version: u32) -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(WebhookBody<T>))
        .expect("a schema always serialises");
    schema["title"] = format!("{kind} v{version} webhook").into();
    schema["properties"]["type"] = serde_json::json!({ "const": kind });
    schema["properties"]["version"] = serde_json::json!({ "const": version });
    schema
}

/// Every event type a subscription may choose, with its schemas: built once, as every
/// subscription change checks its event types against it.
pub fn catalogue() -> &'static [EventType] {
    static CATALOGUE: std::sync::OnceLock<Vec<EventType>> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(|| vec![
        EventType::of::<InvitationCreated<LinkUrl>>(
            InvitationCreated::TYPE,
            InvitationCreated::VERSION,
            "An invitation was created for a user: the survey, the user, the magic link, and the event that caused it with its parameters, variables and source.",
        ),
        EventType::of::<ResponseProgressed>(
            ResponseStage::Displayed.webhook_type(),
            1,
            "The respond page was shown to the user (reported by the page itself, once per invitation, so mail link scanners do not count).",
        ),
        EventType::of::<ResponseProgressed>(
            ResponseStage::Answered.webhook_type(),
            1,
            "A question was answered: the answer given (`question`) and the response so far.",
        ),
        EventType::of::<ResponseProgressed>(
            ResponseStage::Ended.webhook_type(),
            1,
            "The response ended, submitted (`completion`: `fully_completed`) or closed by the user (`partially_completed`): the whole response.",
        ),
        EventType::of::<SubscriptionFailing>(
            FAILING,
            1,
            "Operational: another subscription of the organization is failing (sent at a failed attempt, at most once a day per subscription). Sent only to subscriptions that name it.",
        ),
        EventType::of::<SubscriptionDisabled>(
            DISABLED,
            1,
            "Operational: another subscription of the organization was disabled for failing; what it misses is kept until it is re-enabled and recovered. Sent only to subscriptions that name it.",
        ),
        EventType::of::<Ping>(
            PING,
            1,
            "A test event sent on request (POST …/webhooks/{id}/ping); delivered whatever event types the subscription chose.",
        ),
    ])
}

/// Whether `kind` names an event type a subscription may choose.
pub fn is_known_type(kind: &str) -> bool {
    catalogue().iter().any(|t| t.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Run with `BECKON_BLESS_SCHEMAS=1` (`make schemas`) to rewrite the committed schemas.
    #[test]
    fn committed_webhook_schemas_equal_the_generated_ones_byte_for_byte() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/webhooks");
        let bless = std::env::var_os("BECKON_BLESS_SCHEMAS").is_some();
        let mut expected = std::collections::BTreeSet::new();
        for event in catalogue() {
            for (format, schema) in &event.schemas {
                let generated = serde_json::to_string_pretty(schema).unwrap() + "\n";
                let dir = root.join(format.as_str());
                let path = dir.join(format!("{}.v{}.json", event.kind, event.version));
                if bless {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &generated).unwrap();
                }
                let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("{} is missing ({e}); run `make schemas`", path.display())
                });
                assert!(
                    committed == generated,
                    "{} drifted; run `make schemas`",
                    path.display()
                );
                expected.insert(path);
            }
        }
        // Nothing committed that no format generates any more.
        for format in std::fs::read_dir(&root).unwrap() {
            let format = format.unwrap().path();
            assert!(
                format.is_dir(),
                "{} is not a format's folder",
                format.display()
            );
            for file in std::fs::read_dir(&format).unwrap() {
                let file = file.unwrap().path();
                assert!(
                    expected.contains(&file),
                    "{} is generated by no format; delete it",
                    file.display()
                );
            }
        }
    }
}
