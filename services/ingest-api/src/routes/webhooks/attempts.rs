//! The attempt log of a subscription, and of one message to it.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use crate::routes::webhooks::subscription;
use actix_web::{HttpResponse, web};
use beckon_store::webhooks::{self, Attempt};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub message_id: Uuid,
    #[schema(format = DateTime)]
    pub attempted_at: String,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    /// The start of the endpoint's answer (at most 1 KiB).
    pub response_body: Option<String>,
    pub error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id,
            message_id: a.message_id,
            attempted_at: format_timestamp(a.attempted_at),
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// The attempt log of a subscription, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/attempts", operation_id = "listWebhookAttempts", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id"),
        PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<AttemptView>),
        (status = 400, description = "A malformed query (`invalid_query`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let page = page.serial(&state.sealing_key, List::Attempts, sub.id)?;
    let attempts = webhooks::attempts_of_subscription(&mut conn, sub.id, None, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::serial(
        attempts,
        &state.sealing_key,
        (List::Attempts, sub.id),
        |a| a.id,
        AttemptView::from,
    )))
}

/// The attempts of one message to a subscription, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/messages/{message_id}/attempts", operation_id = "listWebhookMessageAttempts", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id"), ("message_id" = Uuid, Path, description = "Message (webhook-id)"),
        PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<AttemptView>),
        (status = 400, description = "A malformed query (`invalid_query`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn message_attempts(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, id, message) = path.into_inner();
    let message_id = body::path_id(&message, "message_not_found", "message")?;
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    // One message's attempts to one subscription: the pair owns the list.
    let owner = beckon_domain::ids::derive(sub.id, "message-attempts", &[message_id]);
    let page = page.serial(&state.sealing_key, List::MessageAttempts, owner)?;
    let attempts =
        webhooks::attempts_of_subscription(&mut conn, sub.id, Some(message_id), &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::serial(
        attempts,
        &state.sealing_key,
        (List::MessageAttempts, owner),
        |a| a.id,
        AttemptView::from,
    )))
}
