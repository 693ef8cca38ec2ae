//! What became of each fired event: the organization's triggers, filtered and paged;
//! `GET /api/v1/triggers/{id}`; its per-survey outcomes at `…/workflow`, the path a trigger's
//! `details_endpoint` names (`…/details` answers the same, under its earlier name); and
//! cancelling a trigger that is still scheduled.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use crate::routes::owned_project_id;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::TriggerType;
use beckon_domain::outcome::SurveyOutcome;
use beckon_domain::trigger::{TriggerReason, TriggerStatus};
use beckon_store::triggers::{self, Trigger, TriggerFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Matches skipped, per reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FilteredCounts {
    /// Skipped because the survey's cooldown for the user was open.
    pub cooldown: i32,
    /// Skipped by the survey's sample rate.
    pub sample: i32,
    /// Skipped because the survey's trigger conditions were false for the event and the user.
    pub condition: i32,
    /// Skipped because the user had as many invitations as the project's cap allows.
    pub cap: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerSummary {
    /// Users the event was about: 1, or 0 when it named no contact.
    pub total_contacts: i32,
    /// Live surveys the event matched.
    pub matched: i32,
    /// Invitations created.
    pub sent: i32,
    /// Matches skipped, for any reason: the sum of `filtered_by`.
    pub filtered: i32,
    /// Matches skipped, per reason.
    pub filtered_by: FilteredCounts,
    /// Matches that errored.
    pub failed: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub id: Uuid,
    pub project_id: Uuid,
    #[schema(example = "survey")]
    pub flow_type: &'static str,
    #[schema(value_type = TriggerType)]
    pub trigger_type: String,
    #[schema(value_type = TriggerStatus)]
    pub status: String,
    /// The event fired.
    #[schema(value_type = LifecycleEvent)]
    pub event: Value,
    /// The user the event is about; `null` when it named no contact (see `reason`).
    pub user_ref: Option<String>,
    /// The `variables` the event was sent with (events/send), if any.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub variables: Option<Value>,
    /// The `source` the event was sent with (events/send), if any.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub source: Option<Value>,
    /// Why a failed trigger failed.
    pub error: Option<String>,
    /// Why the trigger ended as it did, when the counts alone do not say: `no_contact` (the
    /// event named no contact, so it completed with no one to invite).
    pub reason: Option<ReasonView>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// The survey a trial reminder is for.
    pub survey_id: Option<Uuid>,
    pub summary: TriggerSummary,
    /// Where the outcome of each matched survey is read: `/api/v1/triggers/{id}/workflow`.
    pub details_endpoint: String,
}

/// Why a trigger ended as it did: a stable code, and a sentence for people.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReasonView {
    /// Stable and machine-readable; branch on this.
    pub code: TriggerReason,
    /// For humans.
    pub message: &'static str,
}

impl From<TriggerReason> for ReasonView {
    fn from(code: TriggerReason) -> Self {
        Self {
            code,
            message: code.message(),
        }
    }
}

impl From<Trigger> for TriggerView {
    fn from(t: Trigger) -> Self {
        let total_contacts = i32::from(t.user_ref.is_some());
        Self {
            id: t.id,
            project_id: t.project_id,
            flow_type: "survey",
            trigger_type: t.trigger_type,
            status: t.status,
            event: t.event,
            user_ref: t.user_ref,
            variables: t.variables,
            source: t.source,
            error: t.error,
            reason: t.reason.map(|r| ReasonView::from(r.0)),
            created_at: format_timestamp(t.created_at),
            scheduled_for: t.scheduled_for.map(format_timestamp),
            started_at: t.started_at.map(format_timestamp),
            completed_at: t.completed_at.map(format_timestamp),
            survey_id: t.survey_id,
            summary: TriggerSummary {
                total_contacts,
                matched: t.matched_count,
                sent: t.created_count,
                filtered: t.cooldown_count + t.sample_count + t.condition_count + t.cap_count,
                filtered_by: FilteredCounts {
                    cooldown: t.cooldown_count,
                    sample: t.sample_count,
                    condition: t.condition_count,
                    cap: t.cap_count,
                },
                failed: t.errored_count,
            },
            details_endpoint: format!("/api/v1/triggers/{}/workflow", t.id),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SurveyOutcomeView {
    pub survey_id: Uuid,
    pub survey_version: i32,
    /// What became of the survey: `created`, `cooldown`, `sample`, `condition_false`,
    /// `capped` or `errored` when the event matched it; `not_live` or `not_subscribed` when it
    /// did not (as the survey was when the event was handled).
    pub outcome: SurveyOutcome,
    /// For `condition_false`, the JSON pointer of the false clause; for `capped` and
    /// `errored`, why.
    pub reason: Option<String>,
    /// The invitation created, when the outcome is `created`.
    pub invitation_id: Option<Uuid>,
    /// For `cooldown`: when it ends (absent when it was opened by an invitation made in the
    /// same moment).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerDetails {
    pub trigger_id: Uuid,
    #[schema(value_type = TriggerStatus)]
    pub status: String,
    pub surveys: Vec<SurveyOutcomeView>,
}

fn not_found(raw: &str) -> ApiError {
    ApiError::not_found(
        "trigger_not_found",
        format!("No trigger {}.", body::shown(raw)),
    )
}

async fn load(state: &AppState, auth: OrgAuth, raw: &str) -> Result<Trigger, ApiError> {
    let id = body::path_id(raw, "trigger_not_found", "trigger")?;
    let mut conn = state.store.conn().await?;
    triggers::get_for_org(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| not_found(raw))
}

/// Which of the organization's triggers to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TriggerQuery {
    /// Only this project's triggers.
    pub project_id: Option<Uuid>,
    /// Only the triggers in this status.
    #[param(inline)]
    pub status: Option<TriggerStatus>,
    /// Only the triggers of this event: a predefined one (`trial_expired`), or a custom one by
    /// its key (`custom:payment_failed`) or, when it is not a predefined name, by its name
    /// (`payment_failed`).
    pub event: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// The filter `query` asks for, once its project is known to be the organization's.
fn trigger_filter(query: &TriggerQuery) -> Result<TriggerFilter, ApiError> {
    let time = |raw: &Option<String>, name: &str| {
        raw.as_deref()
            .map(|r| {
                beckon_domain::timestamp::parse_utc(r)
                    .map_err(|e| invalid_query(format!("{name} is refused: {e}")))
            })
            .transpose()
    };
    let event = query
        .event
        .as_deref()
        .map(|raw| {
            LifecycleEvent::from_key(raw)
                .map_or_else(|| LifecycleEvent::from_name(raw), Ok)
                .map_err(|e| invalid_query(format!("event is not an event: {e}")))
        })
        .transpose()?;
    Ok(TriggerFilter {
        project_id: query.project_id,
        status: query.status,
        event,
        since: time(&query.since, "since")?,
        until: time(&query.until, "until")?,
    })
}

/// The organization's triggers, newest first.
#[utoipa::path(get, path = "/api/v1/triggers", operation_id = "listTriggers", tag = "triggers",
    params(TriggerQuery, PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Paginated<TriggerView>),
        (status = 400, description = "A malformed filter (`invalid_query`), `limit` (`invalid_limit`) or `cursor` (`invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`project_id` names another organization's project", body = ErrorBody),
        (status = 404, description = "`project_id` names no project", body = ErrorBody)
    ))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    query: web::Query<TriggerQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = trigger_filter(&query)?;
    let page = page.keyset(&state.sealing_key, List::Triggers, auth.org_id)?;
    if let Some(project) = filter.project_id {
        owned_project_id(&state, auth.org_id, &project.to_string()).await?;
    }
    let mut conn = state.store.conn().await?;
    let triggers = triggers::list(&mut conn, auth.org_id, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        triggers,
        &state.sealing_key,
        (List::Triggers, auth.org_id),
        TriggerView::from,
    )))
}

/// A trigger's status and summary.
#[utoipa::path(get, path = "/api/v1/triggers/{trigger_id}", operation_id = "getTrigger", tag = "triggers",
    params(("trigger_id" = Uuid, Path, description = "Trigger id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TriggerView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = load(&state, auth, &path).await?;
    Ok(HttpResponse::Ok().json(TriggerView::from(trigger)))
}

/// Why each survey of the project was or was not sent: the outcome of each survey the event
/// matched (with the invitation created), and every other survey as `not_live` or
/// `not_subscribed`.
///
/// The trigger's `details_endpoint` names this path.
#[utoipa::path(get, path = "/api/v1/triggers/{trigger_id}/workflow", operation_id = "getTriggerWorkflow", tag = "triggers",
    params(("trigger_id" = Uuid, Path, description = "Trigger id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TriggerDetails), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn workflow(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let trigger = load(&state, auth, &path).await?;
    let mut conn = state.store.conn().await?;
    let surveys = triggers::results(&mut conn, trigger.id)
        .await?
        .into_iter()
        .map(|r| SurveyOutcomeView {
            survey_id: r.survey_id,
            survey_version: r.survey_version,
            outcome: r.outcome,
            reason: r.reason,
            invitation_id: r.invitation_id,
            until: r.until.map(super::events::format_timestamp),
        })
        .collect();
    Ok(HttpResponse::Ok().json(TriggerDetails {
        trigger_id: trigger.id,
        status: trigger.status,
        surveys,
    }))
}

/// The outcome of each survey the trigger matched: an alias of
/// `GET /api/v1/triggers/{trigger_id}/workflow`.
///
/// The same answer under the name this path had first; kept for the clients that use it.
#[utoipa::path(get, path = "/api/v1/triggers/{trigger_id}/details", operation_id = "getTriggerDetails", tag = "triggers",
    params(("trigger_id" = Uuid, Path, description = "Trigger id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TriggerDetails), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn details(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    workflow(auth, state, path).await
}

/// Cancel a trigger that is still scheduled.
#[utoipa::path(delete, path = "/api/v1/triggers/{trigger_id}", operation_id = "cancelTrigger", tag = "triggers",
    params(("trigger_id" = Uuid, Path, description = "Trigger id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Cancelled", body = TriggerView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The trigger is not scheduled any more (it fired, or was cancelled)", body = ErrorBody)
    ))]
pub async fn cancel(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = body::path_id(&path, "trigger_not_found", "trigger")?;
    let mut conn = state.store.conn().await?;
    match triggers::cancel(&mut conn, auth.org_id, id).await? {
        None => Err(not_found(&path)),
        Some(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "trigger_not_cancellable",
            "Only a scheduled trigger can be cancelled; this one has fired or was cancelled.",
        )),
        Some(true) => {
            let trigger = triggers::get_for_org(&mut conn, auth.org_id, id)
                .await?
                .ok_or_else(|| not_found(&path))?;
            Ok(HttpResponse::Ok().json(TriggerView::from(trigger)))
        }
    }
}
