//! `POST /api/v1/events/send` and `POST /api/v1/events/batch`: queue events now or for
//! later, and answer at once.
//!
//! An accepted event is durable: its trigger and the envelope that carries it commit in one
//! transaction (the envelope in the outbox), so a crash or a broker outage after the answer
//! loses nothing — the outbox relay publishes what the request could not.
//!
//! # Layout
//! - here: the event as both routes take it, and [`prepare`], the one way an event is checked
//!   and made into what it commits;
//! - [`send`]: one event, answered 201;
//! - [`batch`]: up to 100 events, each answered on its own, the accepted ones committed
//!   together.

pub mod batch;
pub mod send;

use crate::AppState;
use crate::body::{JsonObject, Object};
use crate::error::ApiError;
use crate::intake;
use crate::routes::owned_project_id;
use actix_web::HttpRequest;
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::{Envelope, EventReceived, TriggerType};
use beckon_domain::user_ref::UserRef;
use beckon_store::outbox::OutboxMessage;
use beckon_store::surveys;
use beckon_store::triggers::NewTrigger;
use beckon_store::users::UserChanges;
use serde::Deserialize;
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;
use uuid::Uuid;

/// An event to queue: now, or at `trigger_at`; a batch holds several.
// Parsed at the edge: a field of the wrong type is refused naming it, a free-form object must
// be an object. What the fields mean together (a name is required, a time must be in the
// future) is checked by `accept`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendEventRequest {
    /// A predefined lifecycle name (`trial_expired`, …) is that event; any other name is the
    /// custom event of that name.
    #[schema(value_type = String)]
    event_name: Option<String>,
    /// The project, when no `X-Team-ID` header names it.
    #[schema(format = Uuid)]
    project_id: Option<String>,
    /// `contact_external_id` is the user the event is about; `email`, `phone`, `name` and
    /// `custom_fields` update the user's record. Without a `contact_external_id` (or without
    /// `user_info`) there is no one to invite: the event is accepted and its trigger completes
    /// with `reason.code` `no_contact`.
    #[schema(value_type = Option<SendEventUserInfo>)]
    user_info: Option<Object<SendEventUserInfo>>,
    /// Where the event came from: `type`, `ip`, `user_agent`.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    source: Option<JsonObject>,
    /// The event's own parameters; they travel with the trigger to its webhooks.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    event_data: Option<JsonObject>,
    /// Your values for the workflow; kept on the trigger.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    variables: Option<JsonObject>,
    /// ISO 8601, in the future: fire then instead of now. An event without a contact waits
    /// too (and can be cancelled), then completes with `no_contact` when it fires.
    #[schema(format = DateTime)]
    trigger_at: Option<String>,
    /// `events/send` only: `true` answers what the event would do now for each survey of the
    /// project, and why (a `DryRunResponse`, 200), with `user_info`'s changes applied to the
    /// user first, without recording, updating or sending anything.
    dry_run: Option<bool>,
}

/// `user_info`: the user the event is about, and what to update on them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendEventUserInfo {
    /// Your stable identifier of the user (their `user_ref`). Without it the event reaches no
    /// one, and the other fields are not kept.
    #[schema(value_type = Option<String>, example = "user_8812")]
    contact_external_id: Option<UserRef>,
    #[schema(example = "ada@example.com")]
    email: Option<String>,
    phone: Option<String>,
    #[schema(example = "Ada Lovelace")]
    name: Option<String>,
    /// Merged key by key into the user's attributes.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    custom_fields: Option<JsonObject>,
}

/// The code of a body field that does not parse: a contact id keeps the code of a malformed
/// user ref.
fn field_code(path: &str) -> &'static str {
    if path == "user_info.contact_external_id" {
        "user_ref_invalid"
    } else {
        "invalid_body"
    }
}

/// An accepted event, every field checked.
struct Accepted {
    event: LifecycleEvent,
    /// The user the event is about, and what `user_info` updates on them; `None` when it names
    /// no contact.
    contact: Option<(UserRef, UserChanges)>,
    trigger_at: Option<OffsetDateTime>,
    source: Option<JsonObject>,
    event_data: Option<JsonObject>,
    variables: Option<JsonObject>,
}

impl SendEventRequest {
    /// Checks what the fields mean together, with the seed's messages where it has them; an
    /// error points at its field.
    fn accept(self) -> Result<Accepted, ApiError> {
        let event_name = self
            .event_name
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("event_name_required", "Event name is required")
                    .at("/event_name")
            })?;
        let event = LifecycleEvent::from_name(&event_name).map_err(|e| {
            ApiError::bad_request("invalid_event_name", e.to_string()).at("/event_name")
        })?;
        // Without a contact id the other fields of `user_info` describe no one Beckon keeps:
        // they are checked, and left.
        let contact = self.user_info.and_then(|Object(info)| {
            let changes = UserChanges {
                email: info.email,
                name: info.name,
                phone: info.phone,
                attributes: info.custom_fields.map(JsonObject::into_value),
                trial_ends_at: None,
                groups: None,
            };
            info.contact_external_id.map(|user_ref| (user_ref, changes))
        });
        let trigger_at = match self.trigger_at {
            None => None,
            Some(raw) => {
                let at = parse_timestamp(&raw).ok_or_else(|| {
                    ApiError::bad_request("invalid_trigger_at", "Invalid trigger_at format")
                        .at("/trigger_at")
                })?;
                if at <= OffsetDateTime::now_utc() {
                    return Err(ApiError::bad_request(
                        "trigger_at_in_past",
                        "trigger_at must be a future date",
                    )
                    .at("/trigger_at"));
                }
                Some(at)
            }
        };
        Ok(Accepted {
            event,
            contact,
            trigger_at,
            source: self.source,
            event_data: self.event_data,
            variables: self.variables,
        })
    }
}

fn team_context_error() -> ApiError {
    ApiError::unauthorized("invalid_team_context", "Invalid team context")
}

/// Parses an ISO 8601 timestamp into UTC, bounded to years 1970–9000 and truncated to the
/// microseconds the database keeps (`beckon_domain::timestamp`): an extreme offset or year is
/// refused here rather than overflow later.
pub fn parse_timestamp(raw: &str) -> Option<OffsetDateTime> {
    beckon_domain::timestamp::parse_utc(raw).ok()
}

pub fn format_timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The project `X-Team-ID` names, if the request has the header.
fn header_team(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    req.headers()
        .get("x-team-id")
        .map(|v| {
            v.to_str()
                .map(|s| s.trim().to_owned())
                .map_err(|_| team_context_error())
        })
        .transpose()
}

/// Whether `X-Team-ID` and a body's `project_id` name one project: as ids when both are ids
/// (a UUID in capitals is the same one), as written otherwise.
fn same_project(header: &str, body: &str) -> bool {
    match (Uuid::parse_str(header), Uuid::parse_str(body)) {
        (Ok(h), Ok(b)) => h == b,
        _ => header == body,
    }
}

/// The ids of an event's trigger and envelope, when they are derived from the request an
/// `Idempotency-Key` stands for: a retry that took the key over after its first run died
/// finds that run's trigger.
struct DerivedIds {
    trigger: Uuid,
    envelope: Uuid,
}

/// What preparing a request's events asks the database, asked once per request: a batch of
/// events for one project looks the project and each custom event up once.
struct Resolver<'a> {
    state: &'a AppState,
    org_id: Uuid,
    /// A project as named (header or body), and what it resolved to: its id, or the refusal.
    projects: HashMap<String, Result<Uuid, ApiError>>,
    /// Whether a survey of the project ever subscribed to the custom event of this key.
    known: HashMap<(Uuid, String), bool>,
}

impl<'a> Resolver<'a> {
    fn new(state: &'a AppState, org_id: Uuid) -> Self {
        Self {
            state,
            org_id,
            projects: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// The id of the organization's project `team`; a project that does not exist (or a
    /// malformed id) is an invalid team context, another organization's is 403.
    async fn project(&mut self, team: &str) -> Result<Uuid, ApiError> {
        if let Some(resolved) = self.projects.get(team) {
            return resolved.clone();
        }
        let resolved = owned_project_id(self.state, self.org_id, team)
            .await
            .map_err(|e| {
                if e.status.as_u16() == 404 {
                    team_context_error()
                } else {
                    e
                }
            });
        // The database's failures are not the project's answer: asked again next time.
        if !resolved.as_ref().is_err_and(|e| e.status.is_server_error()) {
            self.projects.insert(team.to_owned(), resolved.clone());
        }
        resolved
    }

    /// Whether `event` may be sent to `project_id`: a predefined event always, a custom one
    /// once a survey of the project subscribed to it.
    async fn event_known(
        &mut self,
        project_id: Uuid,
        event: &LifecycleEvent,
    ) -> Result<bool, ApiError> {
        if !matches!(event, LifecycleEvent::Custom(_)) {
            return Ok(true);
        }
        let key = (project_id, event.key());
        if let Some(known) = self.known.get(&key) {
            return Ok(*known);
        }
        let known =
            surveys::event_key_known(&mut *self.state.store.conn().await?, project_id, &key.1)
                .await?;
        self.known.insert(key, known);
        Ok(known)
    }
}

/// Checks one event as `events/send` takes it and makes what it commits: the project from
/// `X-Team-ID` (`header_team`) or the event's own `project_id`, which must agree; the fields;
/// the project, which must be the organization's; a custom event, which a survey must know.
/// An error points (`ApiError::pointer`) at its field, relative to the event, when one field
/// is at fault.
async fn prepare(
    resolver: &mut Resolver<'_>,
    header_team: Option<&str>,
    mut request: SendEventRequest,
    derived: Option<DerivedIds>,
) -> Result<intake::Event, ApiError> {
    let state = resolver.state;
    let org_id = resolver.org_id;
    if request.dry_run == Some(true) {
        return Err(ApiError::bad_request(
            "dry_run_unsupported",
            "A batch takes no dry run: send the event to events/send with dry_run.",
        )
        .at("/dry_run"));
    }
    let (team, from_body) = match (header_team, request.project_id.take()) {
        (Some(h), Some(b)) if !same_project(h, &b) => {
            return Err(ApiError::bad_request(
                "project_mismatch",
                "X-Team-ID and project_id name different projects.",
            )
            .at("/project_id"));
        }
        (Some(t), _) => (t.to_owned(), false),
        (None, Some(t)) => (t, true),
        (None, None) => return Err(team_context_error()),
    };
    let Accepted {
        event,
        contact,
        trigger_at,
        source,
        event_data,
        variables,
    } = request.accept()?;

    let project_id = resolver.project(&team).await.map_err(|e| {
        if from_body && !e.status.is_server_error() {
            e.at("/project_id")
        } else {
            e
        }
    })?;
    if !resolver.event_known(project_id, &event).await? {
        return Err(
            ApiError::not_found("event_type_not_found", "Event type not found").at("/event_name"),
        );
    }

    let trigger_type = if trigger_at.is_some() {
        TriggerType::Scheduled
    } else {
        TriggerType::Event
    };
    // Without a contact the trigger has no one to invite: recorded completed (or, with
    // `trigger_at`, scheduled, to complete so when it fires), with no envelope.
    let mut trigger = match &contact {
        Some((user_ref, _)) => {
            NewTrigger::new(org_id, project_id, trigger_type, user_ref.as_str(), &event)
        }
        None => NewTrigger::without_contact(org_id, project_id, trigger_type, &event),
    };
    if let Some(ids) = derived {
        trigger.id = ids.trigger;
        trigger.job_id = ids.envelope;
    }
    trigger.scheduled_for = trigger_at;
    let (event_data, variables, source) = (
        event_data.map(JsonObject::into_value),
        variables.map(JsonObject::into_map),
        source.map(JsonObject::into_map),
    );
    trigger.event_data = event_data.clone();
    trigger.variables = variables.clone().map(serde_json::Value::Object);
    trigger.source = source.clone().map(serde_json::Value::Object);
    let envelope = match (&contact, trigger.scheduled_for) {
        (Some((user_ref, _)), None) => {
            let envelope = Envelope::new(
                trigger.job_id,
                org_id,
                project_id,
                trigger.id,
                EventReceived {
                    trigger_type: TriggerType::Event,
                    user_ref: user_ref.clone(),
                    event,
                    reply_to: None,
                    survey_id: None,
                    event_data,
                    variables,
                    source,
                },
            );
            Some(intake::Envelope {
                id: envelope.id,
                exchange: state.publisher.topology().events_exchange(),
                routing_key: envelope.routing_key(),
                body: envelope.to_json(),
                traceparent: beckon_runtime::telemetry::traceparent(),
            })
        }
        // Scheduled: the envelope is made from the row when it fires. No contact: none.
        _ => None,
    };
    Ok(intake::Event {
        org_id,
        project_id,
        user: contact.map(|(user_ref, changes)| intake::UserUpdate {
            user_ref: user_ref.as_str().to_owned(),
            changes,
        }),
        trigger,
        envelope,
    })
}

/// The refusal of an event whose `custom_fields`, merged with the user's attributes, would
/// take them past their bound (found as it commits).
fn attributes_too_large() -> ApiError {
    ApiError::from(beckon_store::StoreError::AttributesTooLarge).at("/user_info/custom_fields")
}

/// Publishes the outbox rows of committed events. Committed, so accepted: the answer does not
/// wait for the broker's confirm (unless too many publishes are still running). Should the
/// publish fail, or this process stop first, the outbox relay sends the envelopes.
async fn flush(state: &AppState, rows: Vec<OutboxMessage>) {
    if rows.is_empty() {
        return;
    }
    match state.publishing.clone().try_acquire_owned() {
        Ok(running) => {
            let (publisher, cleaner) = (state.publisher.clone(), state.cleaner.clone());
            tokio::spawn(
                async move {
                    beckon_outbox::flush(&publisher, &cleaner, &rows).await;
                    drop(running);
                }
                .in_current_span(),
            );
        }
        Err(_) => beckon_outbox::flush(&state.publisher, &state.cleaner, &rows).await,
    }
}
