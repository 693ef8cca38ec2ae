//! `POST /api/v1/events/batch`: queue up to 100 events in one request.
//!
//! Each event is checked as `events/send` checks it ([`super::prepare`]) and answered on its
//! own, in order: a bad event is refused with the code `events/send` gives it and a pointer
//! into the batch, and does not fail the others. The accepted events commit in one
//! transaction, all of them or none: should that commit fail, the whole request answers 503 and
//! nothing of it was accepted.

use super::{DerivedIds, Resolver, SendEventRequest, field_code, format_timestamp, header_team};
use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency;
use crate::intake::{self, GroupError};
use crate::ratelimit::{self, Decision};
use actix_web::{HttpRequest, HttpResponse, web};
use beckon_domain::ids;
use beckon_store::StoreError;
use beckon_store::triggers;
use beckon_store::users;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// Most events in one batch.
pub const MAX_EVENTS: usize = 100;

/// Several events to queue, each as `events/send` takes one.
// The events stay JSON values until each is parsed on its own: a field of the wrong type in one
// refuses that one, not the batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendEventBatchRequest {
    /// 1 to 100 events. Each names its project with `project_id`, or `X-Team-ID` names it for
    /// all (an event naming another then is refused with `project_mismatch`).
    #[schema(value_type = Vec<SendEventRequest>, required = true, min_items = 1, max_items = 100)]
    events: Option<Vec<serde_json::Value>>,
}

/// What became of each event of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendEventBatchResponse {
    /// One per event, in the order they were sent.
    pub results: Vec<BatchEventResult>,
    /// Events accepted: each has a trigger.
    pub accepted_count: usize,
    /// Events refused: nothing of them was kept.
    pub rejected_count: usize,
}

/// One event of a batch: accepted, with its trigger, or refused, with why.
// Made only by `accepted` and `refused`: an answer has either its ids or its error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchEventResult {
    /// The event's place in `events`, from 0.
    index: usize,
    /// Whether the event was accepted.
    success: bool,
    /// Accepted: its trigger; track it with `GET /api/v1/triggers/{trigger_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger_id: Option<Uuid>,
    /// Accepted: the id of the envelope that carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<Uuid>,
    /// Accepted with `trigger_at`: when it fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    scheduled_for: Option<String>,
    /// Refused: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<BatchEventError>,
}

/// Why an event of a batch was refused: what `events/send` answers for it alone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchEventError {
    /// The status `events/send` would answer: 400, 401, 403 or 404.
    #[schema(example = 400)]
    status: u16,
    /// Stable and machine-readable, as from `events/send`.
    #[schema(example = "trigger_at_in_past")]
    code: String,
    /// For humans.
    message: String,
    /// Where in the batch body the problem is (RFC 6901): the field at fault, or the event.
    #[schema(example = "/events/1/trigger_at")]
    pointer: String,
}

impl BatchEventResult {
    fn accepted(index: usize, event: &intake::Event) -> Self {
        Self {
            index,
            success: true,
            trigger_id: Some(event.trigger.id),
            job_id: Some(event.trigger.job_id),
            scheduled_for: event.trigger.scheduled_for.map(format_timestamp),
            error: None,
        }
    }

    /// `err`'s pointer is relative to the event.
    fn refused(index: usize, err: ApiError) -> Self {
        Self {
            index,
            success: false,
            trigger_id: None,
            job_id: None,
            scheduled_for: None,
            error: Some(BatchEventError {
                status: err.status.as_u16(),
                code: err.code.to_owned(),
                message: err.message,
                pointer: format!("/events/{index}{}", err.pointer.unwrap_or_default()),
            }),
        }
    }
}

/// Queue several events.
///
/// Each event is checked as `events/send` checks it and answered on its own, in order; a bad
/// event does not fail the others. The accepted ones are committed together, in one
/// transaction: when the answer is 200, every event it calls accepted is durable. Each costs
/// the organization's rate limit one request.
#[utoipa::path(post, path = "/api/v1/events/batch", operation_id = "sendEventBatch", tag = "events",
    request_body(content = SendEventBatchRequest, example = json!({"events": [
        {"event_name": "trial_expired", "project_id": "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57", "user_info": {"contact_external_id": "user_8812", "email": "ada@example.com"}, "event_data": {"trial_days": 14}},
        {"event_name": "payment_failed", "project_id": "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57", "user_info": {"contact_external_id": "user_8813"}, "trigger_at": "2026-12-01T09:00:00Z"}
    ]})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours; see the README"), ("X-Team-ID" = Option<String>, Header, description = "The project of every event (or `project_id` in each)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Each event accepted (durably) or refused, in order; a refused event has the `code` `events/send` gives it (`event_name_required`, `invalid_event_name`, `invalid_trigger_at`, `trigger_at_in_past`, `project_mismatch`, `user_ref_invalid`, `invalid_body`, `attributes_too_large`, `invalid_team_context`, `project_forbidden`, `event_type_not_found`) and a `pointer` into the batch", body = SendEventBatchResponse),
        (status = 400, description = "The body is not JSON (`invalid_json`), not an object with an `events` array (`invalid_body`), or holds no event or more than 100 (`batch_size`); `pointer` says where", body = ErrorBody),
        (status = 401, description = "Unauthorized, or an `X-Team-ID` that names no project of the organization (`invalid_team_context`)", body = ErrorBody),
        (status = 403, description = "The token lacks the `send` scope (`insufficient_scope`), or `X-Team-ID` names another organization's project (`project_forbidden`)", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key was used with another request", body = ErrorBody),
        (status = 429, description = "Rate limited (`rate_limited`: a batch costs one request per event), or the deployment sheds load past its backlog (`overloaded`, only with `BECKON_SHED_BACKLOG`); see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is unavailable (`database_unavailable`); none of the events was accepted", body = ErrorBody)
    ))]
pub async fn batch(
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
        |_| None,
        |slot| batch_inner(&auth, &state, &req, &bytes, slot.map(|s| s.request_id)),
    )
    .await
}

/// `request_id`: the request an `Idempotency-Key` stands for, when there is one.
async fn batch_inner(
    auth: &OrgAuth,
    state: &AppState,
    req: &HttpRequest,
    bytes: &[u8],
    request_id: Option<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let events = parse(bytes)?;
    // Inside the key: a replay costs one request, as any other (its token taken by auth).
    charge(state, auth.org_id, events.len())?;
    let header_team = header_team(req)?;
    let mut resolver = Resolver::new(state, auth.org_id);
    // The header speaks for the whole request: naming no project of the organization, it
    // refuses the request as events/send would, rather than each event alike.
    if let Some(team) = &header_team {
        resolver.project(team).await?;
    }
    let mut results: Vec<Option<BatchEventResult>> = Vec::with_capacity(events.len());
    let mut accepted = AcceptedEvents::default();
    let derived_ids = |index: usize| {
        request_id.map(|request| {
            // The event's place keeps its ids apart from its neighbours'.
            let place = [Uuid::from_u128(index as u128)];
            DerivedIds {
                trigger: ids::derive(request, "batch-event-trigger", &place),
                envelope: ids::derive(request, "batch-event-envelope", &place),
            }
        })
    };
    // A run of this keyed request that died after its commit accepted some events: they are
    // answered accepted as they were, not checked again (a `trigger_at` may have passed since).
    let committed: Vec<triggers::Trigger> = match request_id {
        Some(_) => {
            let ids: Vec<Uuid> = (0..events.len())
                .filter_map(|i| derived_ids(i).map(|d| d.trigger))
                .collect();
            triggers::of_org(&mut *state.store.conn().await?, auth.org_id, &ids).await?
        }
        None => Vec::new(),
    };
    for (index, value) in events.into_iter().enumerate() {
        let derived = derived_ids(index);
        if let Some(earlier) = derived
            .as_ref()
            .and_then(|d| committed.iter().find(|t| t.id == d.trigger))
        {
            results.push(Some(BatchEventResult {
                index,
                success: true,
                trigger_id: Some(earlier.id),
                job_id: earlier.job_id,
                scheduled_for: earlier.scheduled_for.map(format_timestamp),
                error: None,
            }));
            continue;
        }
        let prepared = match parse_event(value) {
            Ok(request) => {
                super::prepare(&mut resolver, header_team.as_deref(), request, derived).await
            }
            Err(err) => Err(err),
        };
        match prepared {
            Ok(event) => {
                accepted.indices.push(index);
                accepted.events.push(event);
                results.push(None);
            }
            // Ours, not the event's: the request fails whole, and a retry runs it afresh.
            Err(err) if err.status.is_server_error() => return Err(err),
            Err(err) => results.push(Some(BatchEventResult::refused(index, err))),
        }
    }

    let (rows, refused) = commit(state, auth.org_id, request_id.is_some(), &mut accepted).await?;
    for (index, err) in refused {
        results[index] = Some(BatchEventResult::refused(index, err));
    }
    for (index, event) in accepted.iter() {
        results[index] = Some(BatchEventResult::accepted(index, event));
    }
    super::flush(state, rows).await;

    let results: Vec<BatchEventResult> = results.into_iter().flatten().collect();
    let accepted_count = results.iter().filter(|r| r.success).count();
    Ok(HttpResponse::Ok().json(SendEventBatchResponse {
        rejected_count: results.len() - accepted_count,
        accepted_count,
        results,
    }))
}

/// The batch's events, still as JSON: 1 to [`MAX_EVENTS`] of them.
fn parse(bytes: &[u8]) -> Result<Vec<serde_json::Value>, ApiError> {
    let value = body::json_value(bytes)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The body must be a JSON object: {\"events\": [...]}.",
        )
        .at(""));
    }
    let request: SendEventBatchRequest = body::fields(value, |_| "invalid_body")?;
    let events = request.events.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            format!("events is required: an array of 1 to {MAX_EVENTS} events."),
        )
        .at("/events")
    })?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(ApiError::bad_request(
            "batch_size",
            format!(
                "A batch holds 1 to {MAX_EVENTS} events; this one has {}.",
                events.len()
            ),
        )
        .at("/events"));
    }
    Ok(events)
}

/// One event of the batch, its fields parsed as `events/send` parses its body.
fn parse_event(value: serde_json::Value) -> Result<SendEventRequest, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "An event must be a JSON object.",
        ));
    }
    body::fields(value, field_code)
}

/// Takes what a batch of `n` events costs beyond the one request auth took for it: a batch
/// weighs as much as sending its events one by one.
fn charge(state: &AppState, org_id: Uuid, n: usize) -> Result<(), ApiError> {
    let Some(limiter) = &state.limiter else {
        return Ok(());
    };
    let extra = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
    match limiter.check_more(&org_id, extra) {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after_secs } => Err(ratelimit::refusal(
            limiter.limit(),
            retry_after_secs,
            "Too many events for this organization (a batch counts one request per event); retry after the delay given.",
        )),
    }
}

/// The accepted events, and where each is in the batch.
#[derive(Default)]
struct AcceptedEvents {
    indices: Vec<usize>,
    events: Vec<intake::Event>,
}

impl AcceptedEvents {
    fn remove(&mut self, at: usize) -> (usize, intake::Event) {
        (self.indices.remove(at), self.events.remove(at))
    }

    fn push(&mut self, (index, event): (usize, intake::Event)) {
        self.indices.push(index);
        self.events.push(event);
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &intake::Event)> {
        self.indices.iter().copied().zip(&self.events)
    }
}

/// Commits the accepted events in one transaction; returns their outbox rows, to publish, and
/// the events the commit refused on their own account, which leave `accepted`.
///
/// One event can fail the transaction by itself: a user update that would take the user's
/// attributes past their bound. It is refused as `events/send` refuses it, and the others are
/// committed without it. Under an `Idempotency-Key`, a run of this request that died after its
/// commit (its key taken over since) left its triggers behind, under the same derived ids:
/// those events are accepted already, and the rest, if any, are committed now.
async fn commit(
    state: &AppState,
    org_id: Uuid,
    keyed: bool,
    accepted: &mut AcceptedEvents,
) -> Result<
    (
        Vec<beckon_store::outbox::OutboxMessage>,
        Vec<(usize, ApiError)>,
    ),
    ApiError,
> {
    let mut refused = too_large(state, accepted).await?;
    let mut earlier = AcceptedEvents::default();
    // Each round that does not commit takes at least one event out, so this ends. (Events
    // too large for their user were taken out above; one found here raced another update.)
    let rows = loop {
        if accepted.events.is_empty() {
            break Vec::new();
        }
        match state.intake.commit_batch(&accepted.events).await {
            Ok(rows) => break rows,
            Err(GroupError::AttributesTooLarge { index }) => {
                let (at, _) = accepted.remove(index);
                refused.push((at, super::attributes_too_large()));
            }
            Err(GroupError::Store(err)) if keyed && err.is_unique_violation() => {
                let ids: Vec<Uuid> = accepted.events.iter().map(|e| e.trigger.id).collect();
                let existing =
                    triggers::existing(&mut *state.store.conn().await?, org_id, &ids).await?;
                if existing.is_empty() {
                    return Err(commit_failed(err));
                }
                let mut i = 0;
                while i < accepted.events.len() {
                    if existing.contains(&accepted.events[i].trigger.id) {
                        earlier.push(accepted.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
            Err(GroupError::Store(err)) => return Err(commit_failed(err)),
        }
    };
    for committed in earlier.indices.into_iter().zip(earlier.events) {
        accepted.push(committed);
    }
    Ok((rows, refused))
}

/// Takes out, and refuses, each event whose `custom_fields` would take its user's attributes
/// past their bound, merged in batch order over what is stored (read, not written), so that
/// such events cost a read each rather than a transaction each.
async fn too_large(
    state: &AppState,
    accepted: &mut AcceptedEvents,
) -> Result<Vec<(usize, ApiError)>, ApiError> {
    let mut merged: HashMap<(Uuid, String), serde_json::Map<String, serde_json::Value>> =
        HashMap::new();
    let mut refused = Vec::new();
    let mut conn = None;
    let mut i = 0;
    while i < accepted.events.len() {
        let event = &accepted.events[i];
        let Some((user, serde_json::Value::Object(attributes))) = event
            .user
            .as_ref()
            .and_then(|u| Some((u, u.changes.attributes.as_ref()?)))
        else {
            i += 1;
            continue;
        };
        let key = (event.project_id, user.user_ref.clone());
        let mut candidate = merged.get(&key).cloned().unwrap_or_default();
        candidate.extend(attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let conn = match &mut conn {
            Some(conn) => conn,
            None => conn.insert(state.store.conn().await?),
        };
        let candidate = serde_json::Value::Object(candidate);
        if users::attributes_fit(conn, key.0, &key.1, &candidate).await? {
            if let serde_json::Value::Object(candidate) = candidate {
                merged.insert(key, candidate);
            }
            i += 1;
        } else {
            let (at, _) = accepted.remove(i);
            refused.push((at, super::attributes_too_large()));
        }
    }
    Ok(refused)
}

/// The answer when the batch's transaction failed: nothing of it was written.
fn commit_failed(err: StoreError) -> ApiError {
    if err.is_transient() {
        tracing::warn!(error = %beckon_runtime::error_chain(&err), "a batch of events was not committed");
        ApiError::unavailable(
            "database_unavailable",
            "None of the events was committed: the database is unavailable. Try again shortly.",
        )
    } else {
        ApiError::internal(&err)
    }
}
