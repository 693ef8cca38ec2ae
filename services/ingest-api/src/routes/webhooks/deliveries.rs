//! The deliveries of a subscription, with the retries waiting and when each is due.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use crate::routes::webhooks::subscription;
use actix_web::{HttpResponse, web};
use beckon_domain::status::DeliveryStatus;
use beckon_store::webhooks::{self, DeliveryRow, delivery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id`.
    pub message_id: Uuid,
    pub event_type: String,
    #[schema(value_type = DeliveryStatus)]
    pub status: String,
    pub attempts: i32,
    /// Attempts the endpoint answered 429 with `Retry-After`: they waited as asked and are
    /// not counted by the retry policy.
    pub throttled: i32,
    /// When a pending delivery is tried next.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_attempt_at: Option<String>,
    /// When the message's body was erased (payload retention): it can no longer be sent.
    #[schema(format = DateTime)]
    pub payload_erased_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.delivery.id,
            message_id: r.delivery.message_id,
            event_type: r.event_type,
            next_attempt_at: (r.delivery.status == delivery::PENDING)
                .then(|| format_timestamp(r.delivery.next_attempt_at)),
            status: r.delivery.status,
            attempts: r.delivery.attempts,
            throttled: r.delivery.throttled,
            last_attempt_at: r.delivery.last_attempt_at.map(format_timestamp),
            payload_erased_at: r.payload_erased_at.map(format_timestamp),
            created_at: format_timestamp(r.delivery.created_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only the deliveries in this status.
    #[param(inline)]
    pub status: Option<DeliveryStatus>,
}

/// The deliveries of a subscription, newest first — including the retries waiting in the
/// database and when each is due.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries", operation_id = "listWebhookDeliveries", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id"),
        DeliveryFilter, PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<DeliveryView>),
        (status = 400, description = "A malformed query (`invalid_query`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    filter: web::Query<DeliveryFilter>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let page = page.keyset(&state.sealing_key, List::Deliveries, sub.id)?;
    let status = filter.status.map(DeliveryStatus::as_str);
    let rows = webhooks::deliveries_of_subscription(&mut conn, sub.id, status, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        rows,
        &state.sealing_key,
        (List::Deliveries, sub.id),
        DeliveryView::from,
    )))
}
