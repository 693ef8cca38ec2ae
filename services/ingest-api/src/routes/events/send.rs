//! `POST /api/v1/events/send`: queue one event, answered 201 once it is durable.

use super::{DerivedIds, Resolver, SendEventRequest, field_code, format_timestamp, header_team};
use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::dry_run::DryRunResponse;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency;
use actix_web::{HttpRequest, HttpResponse, web};
use beckon_domain::LifecycleEvent;
use beckon_domain::ids;
use beckon_store::StoreError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        (status = 200, description = "With `dry_run: true`: what the event would do now, survey by survey, with nothing recorded, updated or sent", body = DryRunResponse),
        (status = 400, description = "Event name is required (`event_name_required`), Invalid trigger_at format (`invalid_trigger_at`), trigger_at must be a future date (`trigger_at_in_past`), header and body name different projects (`project_mismatch`), a malformed `user_info.contact_external_id` (`user_ref_invalid`), a field of the wrong type or an object nested deeper than 32 levels (`invalid_body`, naming the field), or `custom_fields` that, merged with the user's attributes, would exceed 64 KiB (`attributes_too_large`); `pointer` names the field", body = ErrorBody),
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
    // A dry run writes nothing and queues nothing: no key to take, no backlog to mind.
    if let Ok(request) = body::parse_fields::<SendEventRequest>(&bytes, field_code)
        && request.dry_run == Some(true)
    {
        return dry_run(auth, &state, &req, request).await;
    }
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

/// What the event would do, checked as it would be and read from the database as the
/// services would read it; nothing is written.
async fn dry_run(
    auth: OrgAuth,
    state: &AppState,
    req: &HttpRequest,
    mut request: SendEventRequest,
) -> Result<HttpResponse, ApiError> {
    request.dry_run = None;
    let event = prepare_one(&auth, state, req, request, None).await?;
    let Some(user) = &event.user else {
        return Ok(HttpResponse::Ok().json(DryRunResponse::without_contact()));
    };
    let kind: LifecycleEvent =
        serde_json::from_value(event.trigger.event.clone()).map_err(|e| ApiError::internal(&e))?;
    let mut conn = state.store.conn().await?;
    let answer = crate::dry_run::decide(
        &mut conn,
        event.project_id,
        &user.user_ref,
        &kind.key(),
        event.trigger.event_data.as_ref(),
        Some(&user.changes),
    )
    .await
    .map_err(|e| match e {
        StoreError::AttributesTooLarge => super::attributes_too_large(),
        other => other.into(),
    })?;
    Ok(HttpResponse::Ok().json(answer))
}

/// The one event of an `events/send` request, checked and made ready to commit, its project
/// named by `X-Team-ID` or the body.
async fn prepare_one(
    auth: &OrgAuth,
    state: &AppState,
    req: &HttpRequest,
    request: SendEventRequest,
    derived: Option<DerivedIds>,
) -> Result<crate::intake::Event, ApiError> {
    let header_team = header_team(req)?;
    super::prepare(
        &mut Resolver::new(state, auth.org_id),
        header_team.as_deref(),
        request,
        derived,
    )
    .await
}

/// `request_id`: the request an `Idempotency-Key` stands for, when there is one.
async fn send_inner(
    auth: OrgAuth,
    state: &AppState,
    req: &HttpRequest,
    bytes: &[u8],
    request_id: Option<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let request: SendEventRequest = body::parse_fields(bytes, field_code)?;
    let derived = request_id.map(|request| DerivedIds {
        trigger: ids::derive(request, "event-trigger", &[]),
        envelope: ids::derive(request, "event-envelope", &[]),
    });
    let event = prepare_one(&auth, state, req, request, derived).await?;
    let (trigger_id, job_id, scheduled_for) = (
        event.trigger.id,
        event.trigger.job_id,
        event.trigger.scheduled_for,
    );
    let committed = state.intake.commit(event).await.map_err(|_| {
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
        Err(StoreError::AttributesTooLarge) => return Err(super::attributes_too_large()),
        Err(err) => return Err(err.into()),
    };
    super::flush(state, rows).await;

    let scheduled_for = scheduled_for.map(format_timestamp);
    Ok(
        crate::routes::created(format!("/api/v1/triggers/{trigger_id}")).json(SendEventResponse {
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
