//! Messages to a subscription: a test event (ping), one message again (resend), and every
//! failed or skipped one since a time again (recover).

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::parse_timestamp;
use crate::routes::webhooks::subscription;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use beckon_store::webhooks::{self, NewMessage, status};
use beckon_webhooks::format;
use beckon_webhooks::payload::{PING, Ping, Tenanted, WebhookBody};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    pub message_id: Option<Uuid>,
    /// How many deliveries were queued.
    pub queued: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoverOutcome {
    #[serde(flatten)]
    pub queued: Queued,
    /// Failed or skipped deliveries not queued because their message's body was erased at the
    /// end of the payload retention period (`BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS`).
    pub skipped_payload_erased: usize,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// ISO 8601: recover failed and skipped deliveries created since then.
    #[schema(format = DateTime)]
    pub since: String,
}

/// Send a test event (`webhook.ping`) to the subscription through the normal delivery path.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/ping", operation_id = "pingWebhook", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Queued), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The subscription is not active (`webhook_not_active`), or its format has no test event (`ping_not_in_format`: `1flow`, `screeb-v2`)", body = ErrorBody)))]
pub async fn ping(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    if sub.status != status::ACTIVE {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_not_active",
            "Only an active subscription can be pinged.",
        ));
    }
    if !format::delivers(sub.format, PING, None) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ping_not_in_format",
            format!(
                "The {} format has no test event; its endpoint receives only the events it lists.",
                sub.format
            ),
        ));
    }
    let message_id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let body = WebhookBody {
        id: message_id,
        kind: PING.to_owned(),
        version: 1,
        occurred_at: now,
        project_id: sub.project_id,
        data: Tenanted::new(
            webhooks::tenant(&mut conn, sub.project_id).await?,
            Ping {
                message: "ping".to_owned(),
                subscription_id: sub.id,
            },
        ),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    webhooks::insert_message(
        &mut conn,
        &NewMessage {
            id: message_id,
            org_id: sub.org_id,
            project_id: sub.project_id,
            event_type: PING.to_owned(),
            version: 1,
            body_encrypted: state.sealing_key.seal(&body),
            occurred_at: now,
            user_ref: None,
        },
    )
    .await?;
    webhooks::insert_deliveries(&mut conn, message_id, &[&sub], now).await?;
    Ok(HttpResponse::Accepted().json(Queued {
        message_id: Some(message_id),
        queued: 1,
    }))
}

/// Send one message to the subscription again, now.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/messages/{message_id}/resend", operation_id = "resendWebhookMessage", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id"), ("message_id" = Uuid, Path, description = "Message (webhook-id)")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Queued), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "The message's body was erased at the end of the payload retention period (`payload_erased`)", body = ErrorBody)))]
pub async fn resend(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id, message) = path.into_inner();
    let message_id = body::path_id(&message, "message_not_found", "message")?;
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    match webhooks::resend(&mut conn, &sub, message_id).await? {
        webhooks::Resent::Queued => Ok(HttpResponse::Accepted().json(Queued {
            message_id: Some(message_id),
            queued: 1,
        })),
        webhooks::Resent::NotFound => Err(ApiError::not_found(
            "message_not_found",
            format!(
                "No message {} in this project.",
                crate::body::shown(&message)
            ),
        )),
        webhooks::Resent::PayloadErased => Err(ApiError::new(
            StatusCode::GONE,
            "payload_erased",
            "The message's body was erased at the end of the payload retention period; it \
             cannot be sent again.",
        )),
    }
}

/// Send every failed or skipped delivery of the subscription created since a time again,
/// oldest first; those whose message's body was erased (past the payload retention period)
/// cannot be, and are counted in `skipped_payload_erased`.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/recover", operation_id = "recoverWebhook", tag = "webhooks",
    request_body(content = Recover, example = json!({"since": "2026-11-30T00:00:00Z"})),
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = RecoverOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn recover(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let input: Recover = body::parse(&bytes)?;
    let since = parse_timestamp(&input.since).ok_or_else(|| {
        ApiError::bad_request("invalid_since", "since must be an ISO 8601 timestamp")
    })?;
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    let recovered = webhooks::recover(&mut conn, sub.id, since).await?;
    Ok(HttpResponse::Accepted().json(RecoverOutcome {
        queued: Queued {
            message_id: None,
            queued: recovered.queued as usize,
        },
        skipped_payload_erased: recovered.skipped_payload_erased as usize,
    }))
}
