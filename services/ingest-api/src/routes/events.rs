//! `POST /api/v1/events/send`: queue an event now or for later, and answer at once.
//!
//! A 201 means the event is durable: the trigger and the envelope that carries it commit in
//! one transaction (the envelope in the outbox), so a crash or a broker outage after the
//! answer loses nothing — the outbox relay publishes what the request could not.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body::{self, JsonObject, Object};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency;
use crate::intake;
use crate::routes::owned_project_id;
use actix_web::{HttpRequest, HttpResponse, web};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::{Envelope, EventReceived, TriggerType};
use beckon_domain::ids;
use beckon_domain::user_ref::UserRef;
use beckon_store::surveys;
use beckon_store::triggers::NewTrigger;
use beckon_store::users::UserChanges;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;
use uuid::Uuid;

/// An event to queue: now, or at `trigger_at`.
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
    /// Checks what the fields mean together, with the seed's messages where it has them.
    fn accept(self) -> Result<Accepted, ApiError> {
        let event_name = self
            .event_name
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("event_name_required", "Event name is required")
            })?;
        let event = LifecycleEvent::from_name(&event_name)
            .map_err(|e| ApiError::bad_request("invalid_event_name", e.to_string()))?;
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
                })?;
                if at <= OffsetDateTime::now_utc() {
                    return Err(ApiError::bad_request(
                        "trigger_at_in_past",
                        "trigger_at must be a future date",
                    ));
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendEventResponse {
    pub success: bool,
    pub trigger_id: Uuid,
    /// The id of the envelope that carries the event (an event without a contact needs none,
    /// and none is sent under it).
    pub job_id: Uuid,
    pub message: String,
    /// Present when `trigger_at` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    #[schema(example = "survey")]
    pub flow_type: &'static str,
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

/// Queue an event.
///
/// Answers at once; the event is matched behind the queue (or at `trigger_at`). Track it with
/// `GET /api/v1/triggers/{trigger_id}`.
#[utoipa::path(post, path = "/api/v1/events/send", operation_id = "sendEvent", tag = "events",
    request_body(content = SendEventRequest, example = json!({"event_name": "trial_expired", "project_id": "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57", "user_info": {"contact_external_id": "user_8812", "email": "ada@example.com", "name": "Ada Lovelace", "custom_fields": {"plan": "pro"}}, "event_data": {"trial_days": 14}, "variables": {"first_name": "Ada"}, "source": {"type": "api", "ip": "203.0.113.45"}})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours; see the README"), ("X-Team-ID" = Option<String>, Header, description = "The project id (or `project_id` in the body)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Queued, durably", body = SendEventResponse, headers(("Location" = String, description = "The trigger's path"))),
        (status = 400, description = "Event name is required (`event_name_required`), Invalid trigger_at format (`invalid_trigger_at`), trigger_at must be a future date (`trigger_at_in_past`), header and body name different projects (`project_mismatch`), a malformed `user_info.contact_external_id` (`user_ref_invalid`), a field of the wrong type or an object nested deeper than 32 levels (`invalid_body`, naming the field), or `custom_fields` that, merged with the user's attributes, would exceed 64 KiB (`attributes_too_large`)", body = ErrorBody),
        (status = 401, description = "Unauthorized, or Invalid team context", body = ErrorBody),
        (status = 403, description = "The project belongs to another organization", body = ErrorBody),
        (status = 404, description = "Event type not found: no survey of the project ever subscribed to this custom event", body = ErrorBody),
        (status = 503, description = "The database is unavailable; nothing was accepted", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key was used with another request", body = ErrorBody),
        (status = 429, description = "Rate limited (`rate_limited`), or the deployment sheds load past its backlog (`overloaded`, only with `BECKON_SHED_BACKLOG`); see Retry-After", body = ErrorBody)
    ))]
pub async fn send(
    auth: OrgAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Refused before an Idempotency-Key is taken: a retry of this request runs afresh.
    if let Some(backlog) = &state.backlog {
        backlog.admit()?;
    }
    idempotency::run(
        &state,
        auth.org_id,
        &req,
        &bytes,
        trigger_location,
        |slot| send_inner(auth, &state, &req, &bytes, slot.map(|s| s.request_id)),
    )
    .await
}

/// The `Location` of a replayed 201: the trigger its answer names.
fn trigger_location(answer: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        trigger_id: Uuid,
    }
    serde_json::from_slice::<Answer>(answer)
        .ok()
        .map(|a| format!("/api/v1/triggers/{}", a.trigger_id))
}

/// `request_id`: the request an `Idempotency-Key` stands for, when there is one.
async fn send_inner(
    auth: OrgAuth,
    state: &AppState,
    req: &HttpRequest,
    bytes: &[u8],
    request_id: Option<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut request: SendEventRequest = body::parse_fields(bytes, field_code)?;

    let header_team = req
        .headers()
        .get("x-team-id")
        .map(|v| {
            v.to_str()
                .map(|s| s.trim().to_owned())
                .map_err(|_| team_context_error())
        })
        .transpose()?;
    let team = match (header_team, request.project_id.take()) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::bad_request(
                "project_mismatch",
                "X-Team-ID and project_id name different projects.",
            ));
        }
        (Some(t), _) | (None, Some(t)) => t,
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

    let project_id = owned_project_id(state, auth.org_id, &team)
        .await
        .map_err(|e| {
            if e.status.as_u16() == 404 {
                team_context_error()
            } else {
                e
            }
        })?;
    if let LifecycleEvent::Custom(_) = &event
        && !surveys::event_key_known(&mut *state.store.conn().await?, project_id, &event.key())
            .await?
    {
        return Err(ApiError::not_found(
            "event_type_not_found",
            "Event type not found",
        ));
    }

    let trigger_type = if trigger_at.is_some() {
        TriggerType::Scheduled
    } else {
        TriggerType::Event
    };
    // Without a contact the trigger has no one to invite: recorded completed (or, with
    // `trigger_at`, scheduled, to complete so when it fires), with no envelope.
    let mut trigger = match &contact {
        Some((user_ref, _)) => NewTrigger::new(
            auth.org_id,
            project_id,
            trigger_type,
            user_ref.as_str(),
            &event,
        ),
        None => NewTrigger::without_contact(auth.org_id, project_id, trigger_type, &event),
    };
    if let Some(request) = request_id {
        // Under an Idempotency-Key the trigger is the request's, derived from it: a retry that
        // took the key over after its first run died finds that run's trigger.
        trigger.id = ids::derive(request, "event-trigger", &[]);
        trigger.job_id = ids::derive(request, "event-envelope", &[]);
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
                auth.org_id,
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
    let (trigger_id, job_id, scheduled_for) = (trigger.id, trigger.job_id, trigger.scheduled_for);
    let committed = state
        .intake
        .commit(intake::Event {
            org_id: auth.org_id,
            project_id,
            user: contact.map(|(user_ref, changes)| intake::UserUpdate {
                user_ref: user_ref.as_str().to_owned(),
                changes,
            }),
            trigger,
            envelope,
        })
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "database_unavailable",
                "The event was not committed (the gateway is stopping, or its intake worker failed and is being restarted); try again shortly.",
            )
        })?;
    let rows = match committed {
        Ok(rows) => rows,
        // The first run of this keyed request committed the trigger (and its envelope, which
        // the outbox sends): it is accepted, with the same ids.
        Err(err) if request_id.is_some() && err.is_unique_violation() => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    // Committed, so accepted: the answer does not wait for the broker's confirm (unless too
    // many publishes are still running). Should the publish fail, or this process stop first,
    // the outbox relay sends the envelope.
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

    let scheduled_for = scheduled_for.map(format_timestamp);
    Ok(
        super::created(format!("/api/v1/triggers/{trigger_id}")).json(SendEventResponse {
            success: true,
            trigger_id,
            job_id,
            message: match &scheduled_for {
                Some(at) => format!("Event scheduled for {at}"),
                None => "Event queued successfully".to_owned(),
            },
            scheduled_for,
            flow_type: "survey",
        }),
    )
}
