//! The attempt log of a subscription, and of one message to it.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::format_timestamp;
use crate::routes::webhooks::subscription;
use actix_web::{HttpResponse, web};
use beckon_store::webhooks;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub message_id: Uuid,
    pub attempted_at: String,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    /// The start of the endpoint's answer (at most 1 KiB).
    pub response_body: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub data: Vec<AttemptView>,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub before: Option<i64>,
}

fn attempt_views(attempts: Vec<webhooks::Attempt>, limit: i64) -> AttemptList {
    let next_before = (attempts.len() as i64 == limit)
        .then(|| attempts.last().map(|a| a.id))
        .flatten();
    AttemptList {
        data: attempts
            .into_iter()
            .map(|a| AttemptView {
                id: a.id,
                message_id: a.message_id,
                attempted_at: format_timestamp(a.attempted_at),
                status_code: a.status_code,
                duration_ms: a.duration_ms,
                response_body: a.response_body,
                error: a.error,
            })
            .collect(),
        next_before,
    }
}

/// The attempt log of a subscription, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/attempts", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id"),
        ("limit" = Option<i64>, Query, description = "1 to 100, default 50"), ("before" = Option<i64>, Query, description = "An attempt id from `next_before`")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = AttemptList), (status = 400, description = "A malformed query (`invalid_query`)", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let rows =
        webhooks::attempts_of_subscription(&mut conn, sub.id, None, page.before, limit).await?;
    Ok(HttpResponse::Ok().json(attempt_views(rows, limit)))
}

/// The attempts of one message to a subscription, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/messages/{message_id}/attempts", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id"), ("message_id" = String, Path, description = "Message (webhook-id)")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = AttemptList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn message_attempts(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id, message) = path.into_inner();
    let message_id = body::path_id(&message, "message_not_found", "message")?;
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let rows =
        webhooks::attempts_of_subscription(&mut conn, sub.id, Some(message_id), None, 100).await?;
    Ok(HttpResponse::Ok().json(attempt_views(rows, 100)))
}
