//! The deliveries of a subscription, with the retries waiting and when each is due.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::{format_timestamp, parse_timestamp};
use crate::routes::webhooks::subscription;
use actix_web::{HttpResponse, web};
use beckon_store::webhooks;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id`.
    pub message_id: Uuid,
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<String>,
}

/// The deliveries of a subscription, newest first — including the retries waiting in the
/// database and when each is due.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id"),
        ("status" = Option<String>, Query, description = "pending, succeeded or failed"),
        ("limit" = Option<i64>, Query, description = "1 to 100, default 50"),
        ("before" = Option<String>, Query, description = "`next_before` of the previous page")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let status_filter = match query.status.as_deref() {
        None => None,
        Some(
            s @ (webhooks::delivery::PENDING
            | webhooks::delivery::SUCCEEDED
            | webhooks::delivery::FAILED
            | webhooks::delivery::SKIPPED),
        ) => Some(s),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                "status must be pending, succeeded, failed or skipped",
            ));
        }
    };
    let before = query
        .before
        .as_deref()
        .map(|raw| {
            parse_timestamp(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_before", "before must be an ISO 8601 timestamp")
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let rows =
        webhooks::deliveries_of_subscription(&mut conn, sub.id, status_filter, before, limit)
            .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| format_timestamp(r.delivery.created_at)))
        .flatten();
    let data = rows
        .into_iter()
        .map(|r| DeliveryView {
            id: r.delivery.id,
            message_id: r.delivery.message_id,
            event_type: r.event_type,
            next_attempt_at: (r.delivery.status == webhooks::delivery::PENDING)
                .then(|| format_timestamp(r.delivery.next_attempt_at)),
            status: r.delivery.status,
            attempts: r.delivery.attempts,
            last_attempt_at: r.delivery.last_attempt_at.map(format_timestamp),
            created_at: format_timestamp(r.delivery.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList { data, next_before }))
}
