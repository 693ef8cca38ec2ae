//! `POST /api/v1/lifecycle/dispatch`: fire a lifecycle event now and get back the invitations
//! it created.
//!
//! The dispatch rides the same pipeline as every event: the gateway records the trigger and,
//! in the same transaction, the `event.received` envelope (with its own reply queue inside) in
//! the outbox; publishes it after the commit (the outbox relay does, should that fail); and
//! waits (with a deadline) for the one reply the invitation stage sends when every matched
//! survey is done.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::dry_run::{self, DryRunResponse};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{self, Slot};
use crate::routes::owned_project_id;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::{
    self, CreatedInvitation, DispatchCompleted, Envelope, EventReceived, ReplyTo, TriggerType,
};
use beckon_domain::ids;
use beckon_domain::outcome::DispatchCounts;
use beckon_domain::user_ref::{UserRef, UserRefError};
use beckon_store::invitations;
use beckon_store::triggers::{self, NewTrigger};
use beckon_store::{StoreError, outbox};
use diesel_async::AsyncConnection as _;
use serde::Serialize;
use uuid::Uuid;

/// The request, as documented; the handler reads it field by field to give precise codes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DispatchRequest {
    /// The project to fire the event against; it must belong to the token's organization.
    #[schema(format = Uuid)]
    project_id: String,
    /// Your stable identifier of the user the event is about. Must not be empty.
    user_ref: String,
    /// A predefined kind, or `{"custom": "name"}`; matched by exact equality.
    event: LifecycleEvent,
    /// `true`: answer what the event would do for each survey of the project, and why,
    /// without recording, claiming or sending anything (a `DryRunResponse`).
    dry_run: Option<bool>,
}

/// A dispatch's answer: its outcome, or with `dry_run`, what it would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DispatchAnswer {
    Dispatched(DispatchResponse),
    DryRun(DryRunResponse),
}

/// The outcome of a dispatch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DispatchResponse {
    /// The trigger recorded for this dispatch.
    pub trigger_id: Uuid,
    #[serde(flatten)]
    pub counts: DispatchCounts,
    pub created_invitations: Vec<CreatedInvitation>,
}

struct DispatchInput {
    project_id: String,
    user_ref: UserRef,
    event: LifecycleEvent,
    dry_run: bool,
}

fn parse(bytes: &[u8]) -> Result<DispatchInput, ApiError> {
    let value = body::json_value(bytes)?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_body", "The body must be a JSON object."))?;
    let project_id = match object.get("project_id") {
        Some(serde_json::Value::String(id)) => id.clone(),
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad_request(
                "project_id_required",
                "project_id is required.",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "project_id must be a string.",
            ));
        }
    };
    let user_ref = match object.get("user_ref") {
        Some(serde_json::Value::String(raw)) => UserRef::parse(raw).map_err(|e| {
            let code = match e {
                UserRefError::Empty => "user_ref_empty",
                _ => "user_ref_invalid",
            };
            ApiError::bad_request(code, e.to_string())
        })?,
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad_request(
                "user_ref_required",
                "user_ref is required.",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "user_ref must be a string.",
            ));
        }
    };
    let event = match object.get("event") {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad_request(
                "event_required",
                "event is required.",
            ));
        }
        Some(raw) => parse_event(raw)?,
    };
    let dry_run = match object.get("dry_run") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(dry_run)) => *dry_run,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_body", "dry_run must be a boolean.").at("/dry_run"),
            );
        }
    };
    Ok(DispatchInput {
        project_id,
        user_ref,
        event,
        dry_run,
    })
}

fn parse_event(raw: &serde_json::Value) -> Result<LifecycleEvent, ApiError> {
    serde_json::from_value(raw.clone()).map_err(|_| {
        if let Some(name) = raw.get("custom") {
            return ApiError::bad_request(
                "invalid_event_name",
                format!("{name} is not a valid custom event name: 1 to 128 characters, no surrounding whitespace."),
            );
        }
        let known: Vec<&str> = beckon_domain::event::PREDEFINED.iter().map(|(_, n)| *n).collect();
        ApiError::bad_request(
            "unknown_event",
            format!("{raw} is not a lifecycle event: use one of {} or {{\"custom\": \"name\"}}.", known.join(", ")),
        )
    })
}

/// Fire a lifecycle event now.
///
/// Matches every Live survey of the project whose backend trigger subscribes to the event,
/// applies each survey's cooldown and sample rate, and returns the invitations created with
/// their magic links. A 200 with `created_count: 0` is a success that created nothing.
#[utoipa::path(post, path = "/api/v1/lifecycle/dispatch", operation_id = "dispatchLifecycleEvent", tag = "dispatch",
    request_body(content = DispatchRequest, example = json!({"project_id": "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57", "user_ref": "user_8812", "event": "trial_expired"})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours; see the README")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Dispatch handled; inspect the counts (a `DispatchResponse`). With `dry_run: true`, what it would do, survey by survey, with nothing recorded (a `DryRunResponse`)", body = DispatchAnswer),
        (status = 400, description = "Empty user_ref, unparseable body or unknown event", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The project belongs to another organization", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 503, description = "The broker (`broker_unavailable`) or the database (`database_unavailable`) is unavailable; nothing was recorded, retry", body = ErrorBody),
        (status = 504, description = "No outcome within the deadline; the work still completes (see trigger_id)", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key was used with another request", body = ErrorBody),
        (status = 429, description = "Rate limited (`rate_limited`), or the deployment sheds load past its backlog (`overloaded`, only with `BECKON_SHED_BACKLOG`); see Retry-After", body = ErrorBody)
    ))]
pub async fn dispatch(
    auth: OrgAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // A dry run writes nothing and queues nothing: no key to take, no backlog to mind.
    let input = parse(&bytes);
    if let Ok(DispatchInput { dry_run: true, .. }) = &input {
        return dry_run(auth, &state, input?).await;
    }
    // Refused before an Idempotency-Key is taken: a retry of this request runs afresh.
    if let Some(backlog) = &state.backlog {
        backlog.admit()?;
    }
    let inner_state = state.clone();
    let body = bytes.clone();
    idempotency::run(
        &state,
        auth.org_id,
        &req,
        &bytes,
        |_| None,
        |slot| dispatch_inner(auth, inner_state, body, slot),
    )
    .await
}

/// What the dispatch would do, read from the database as the services would read it.
async fn dry_run(
    auth: OrgAuth,
    state: &AppState,
    input: DispatchInput,
) -> Result<HttpResponse, ApiError> {
    let project_id = owned_project_id(state, auth.org_id, &input.project_id).await?;
    let mut conn = state.store.conn().await?;
    let answer = dry_run::decide(
        &mut conn,
        project_id,
        input.user_ref.as_str(),
        &input.event.key(),
        None,
        None,
    )
    .await?;
    Ok(HttpResponse::Ok().json(DispatchAnswer::DryRun(answer)))
}

async fn dispatch_inner(
    auth: OrgAuth,
    state: web::Data<AppState>,
    bytes: web::Bytes,
    slot: Option<Slot>,
) -> Result<HttpResponse, ApiError> {
    let input = parse(&bytes)?;
    let project_id = owned_project_id(&state, auth.org_id, &input.project_id).await?;
    // A broker already known to be away: say so before recording anything, so the client
    // retries rather than waits for a dispatch that cannot run yet. (A broker that fails after
    // the commit is the relay's to cover.)
    if !state.publisher.ensure_connected().await {
        return Err(ApiError::unavailable(
            "broker_unavailable",
            "The message broker is unavailable; nothing was recorded. Try again shortly.",
        ));
    }

    let mut trigger = NewTrigger::new(
        auth.org_id,
        project_id,
        TriggerType::Dispatch,
        input.user_ref.as_str(),
        &input.event,
    );
    if let Some(slot) = &slot {
        // Under an Idempotency-Key the trigger is the request's, derived from it: a retry that
        // took the key over after its first run died finds that run's trigger.
        trigger.id = ids::derive(slot.request_id, "dispatch-trigger", &[]);
        trigger.job_id = ids::derive(slot.request_id, "dispatch-envelope", &[]);
    }
    let trigger_id = trigger.id;
    let env = Envelope::new(
        trigger.job_id,
        auth.org_id,
        project_id,
        trigger_id,
        EventReceived {
            trigger_type: TriggerType::Dispatch,
            user_ref: input.user_ref,
            event: input.event,
            reply_to: Some(ReplyTo {
                queue: state.replies.queue().to_owned(),
            }),
            survey_id: None,
            event_data: None,
            variables: None,
            source: None,
        },
    );
    // Registered before anything can publish, so a fast reply cannot arrive before anyone
    // waits.
    let mut waiting = state.replies.register(trigger_id);
    let rows = match commit(&state, &trigger, &env).await {
        Ok(rows) => rows,
        // A first run of this request committed the trigger already (its gateway died, and
        // this retry took the key over): answer its outcome rather than run it again.
        Err(Committed::Before) => return outcome_of_earlier_run(&state, trigger_id).await,
        Err(Committed::Failed(err)) => return Err(err),
    };
    // Committed, so the dispatch will run: a publish that fails here leaves the envelope in the
    // outbox, and the relay sends it; the dispatch waits for its outcome either way.
    beckon_outbox::flush(&state.publisher, &state.cleaner, &rows).await;

    let Some(reply) = waiting.wait(state.dispatch_timeout).await else {
        if let Some(slot) = slot {
            // Keep waiting past the answer, holding the key's lease, so a retry with the same
            // key gets the outcome.
            let state = state.clone();
            state.late_waits.clone().spawn(async move {
                let _held = slot.hold(&state.store);
                let late = tokio::select! {
                    late = waiting.wait(state.late_reply_window) => late,
                    _ = state.shutdown.cancelled() => {
                        // Stopping: a retry (on another replica) runs the dispatch again
                        // rather than wait for a lease no one renews.
                        slot.release(&state).await;
                        return;
                    }
                };
                match late.as_deref().map(|reply| response_from(&state, reply)) {
                    Some(Ok(response)) => {
                        let body = serde_json::to_vec(&response).unwrap_or_default();
                        slot.complete(&state, StatusCode::OK, &body).await;
                    }
                    _ => {
                        tracing::warn!(%trigger_id, "no late outcome for an idempotent dispatch; its key is released");
                        slot.release(&state).await;
                    }
                }
            });
        }
        let mut err = ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "dispatch_timeout",
            "The dispatch did not complete within the deadline. It is still being processed; look it up by trigger_id.",
        );
        err.trigger_id = Some(trigger_id);
        return Err(err);
    };
    Ok(HttpResponse::Ok().json(response_from(&state, &reply)?))
}

/// Records the trigger and the envelope that carries it (in the outbox) in one transaction,
/// so a crash after the commit leaves the envelope for the relay rather than a trigger that
/// never runs.
async fn commit(
    state: &AppState,
    trigger: &NewTrigger,
    env: &Envelope<EventReceived>,
) -> Result<Vec<outbox::OutboxMessage>, Committed> {
    let (exchange, routing_key, body) = (
        state.publisher.topology().events_exchange(),
        env.routing_key(),
        env.to_json(),
    );
    let traceparent = beckon_runtime::telemetry::traceparent();
    let message = outbox::NewOutboxMessage {
        envelope_id: env.id,
        exchange: &exchange,
        routing_key: &routing_key,
        body: &body,
        traceparent: traceparent.as_deref(),
    };
    let mut conn = state
        .store
        .conn()
        .await
        .map_err(|e| Committed::Failed(e.into()))?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        let conn = &*conn;
        let (_, rows) = futures_util::try_join!(
            triggers::insert_many(conn, &[trigger]),
            outbox::enqueue_many(conn, std::slice::from_ref(&message)),
        )?;
        Ok(rows)
    })
    .await
    .map_err(|err| {
        if err.is_unique_violation() {
            Committed::Before
        } else {
            Committed::Failed(err.into())
        }
    })
}

/// Why a dispatch's trigger was not committed.
enum Committed {
    /// An earlier run of the same request committed it (its id is derived from the request).
    Before,
    Failed(ApiError),
}

/// The answer of a dispatch whose earlier run committed the trigger: its outcome once the
/// trigger is finished (polled from the database: the earlier run's reply went to a gateway
/// that is gone), or 504 with the trigger id if it is not within the deadline.
async fn outcome_of_earlier_run(
    state: &AppState,
    trigger_id: Uuid,
) -> Result<HttpResponse, ApiError> {
    let deadline = tokio::time::Instant::now() + state.dispatch_timeout;
    loop {
        let mut conn = state.store.conn().await?;
        let trigger = triggers::get(&mut conn, trigger_id).await?.ok_or_else(|| {
            ApiError::internal(&std::io::Error::other("a committed trigger is gone"))
        })?;
        if matches!(
            trigger.status.as_str(),
            triggers::status::COMPLETED | triggers::status::FAILED
        ) {
            let created = invitations::created_by(&mut conn, trigger_id).await?;
            let created_invitations = created
                .into_iter()
                .filter_map(|c| {
                    let token = state.sealing_key.open(c.token_sealed.as_deref()?).ok()?;
                    Some(CreatedInvitation {
                        survey_id: c.survey_id,
                        user_ref: UserRef::parse(&c.user_ref).ok()?,
                        magic_link_url: format!(
                            "{}/surveys/{}",
                            state.public_url,
                            String::from_utf8_lossy(&token)
                        ),
                        expires_at: c.expires_at,
                    })
                })
                .collect();
            let count = |n: i32| u32::try_from(n).unwrap_or_default();
            return Ok(HttpResponse::Ok().json(DispatchResponse {
                trigger_id,
                counts: DispatchCounts {
                    matched_surveys: count(trigger.matched_count),
                    created_count: count(trigger.created_count),
                    suppressed_by_cooldown_count: count(trigger.cooldown_count),
                    suppressed_by_sample_count: count(trigger.sample_count),
                    errored_count: count(trigger.errored_count),
                    suppressed_by_condition_count: count(trigger.condition_count),
                    suppressed_by_cap_count: count(trigger.cap_count),
                },
                created_invitations,
            }));
        }
        drop(conn);
        if tokio::time::Instant::now() >= deadline {
            let mut err = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "dispatch_timeout",
                "The dispatch did not complete within the deadline. It is still being processed; look it up by trigger_id.",
            );
            err.trigger_id = Some(trigger_id);
            return Err(err);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The answer a reply makes, its links opened: they travel sealed.
fn response_from(state: &AppState, reply: &[u8]) -> Result<DispatchResponse, ApiError> {
    let reply = envelope::decode::<DispatchCompleted>(reply).map_err(|e| ApiError::internal(&e))?;
    let created_invitations = reply
        .data
        .created_invitations
        .into_iter()
        .map(|issued| {
            let link = state.sealing_key.open_link(&issued.link).map_err(|err| {
                tracing::error!(error = %err, "a dispatch reply's link does not open under this gateway's keys");
                let mut answer = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sealing_key_missing",
                    "The dispatch completed, but this gateway cannot open its magic links: its \
                     BECKON_SECRET_KEYS lack the key they were sealed with. Look the trigger up \
                     by trigger_id.",
                );
                answer.trigger_id = Some(reply.data.trigger_id);
                answer
            })?;
            Ok(CreatedInvitation {
                survey_id: issued.survey_id,
                user_ref: issued.user_ref,
                magic_link_url: link.magic_link_url,
                expires_at: issued.expires_at,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(DispatchResponse {
        trigger_id: reply.data.trigger_id,
        counts: reply.data.counts,
        created_invitations,
    })
}
