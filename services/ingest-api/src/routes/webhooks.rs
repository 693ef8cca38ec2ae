//! Webhook subscriptions of a project: create (with URL verification), list, read, change,
//! delete; verify again, rotate the secret, ping; the attempt log; resend and recover; and the
//! catalogue of event types.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::{format_timestamp, parse_timestamp};
use crate::routes::owned_project;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use base64::Engine as _;
use beckon_store::Conn;
use beckon_store::webhooks::{
    self, NewMessage, NewSubscription, Subscription, SubscriptionChanges, SubscriptionCreated,
    status,
};
use beckon_webhooks::payload::{self, PING, Ping, WebhookBody};
use beckon_webhooks::policy::RetryPolicy;
use beckon_webhooks::signing::SigningSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long an endpoint has to echo the verification challenge.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
const DEFAULT_TIMEOUT_MS: i32 = 10_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    /// `pending_verification`, `active` or `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    #[schema(format = DateTime)]
    pub disabled_at: Option<String>,
    /// When its current run of failed attempts began (null while it is not failing); it is
    /// disabled once the run has lasted `BECKON_WEBHOOK_DISABLE_AFTER_SECS` and holds at least
    /// `BECKON_WEBHOOK_DISABLE_MIN_FAILURES` attempts.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    /// Failed attempts since `failing_since`.
    pub failures_in_streak: i32,
    #[schema(value_type = Object)]
    pub retry_policy: serde_json::Value,
    pub timeout_ms: i32,
    pub payload_version: i32,
    /// At most this many requests a second go to the endpoint (null: no limit); the excess
    /// waits its turn.
    pub rate_limit: Option<i32>,
    /// Events about one user go out one at a time, in the order they occurred.
    pub ordered: bool,
    pub last_success_at: Option<String>,
    pub verified_at: Option<String>,
    /// Until when the previous secret still signs, after a rotation.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        Self {
            id: s.id,
            project_id: s.project_id,
            url: s.url,
            description: s.description,
            event_types: s.event_types,
            status: s.status,
            disabled_reason: s.disabled_reason,
            disabled_at: s.disabled_at.map(format_timestamp),
            failing_since: s.failing_since.map(format_timestamp),
            failures_in_streak: s.failures_in_streak,
            retry_policy: s.retry_policy,
            timeout_ms: s.timeout_ms,
            payload_version: s.payload_version,
            rate_limit: s.rate_limit,
            ordered: s.ordered,
            last_success_at: s.last_success_at.map(format_timestamp),
            verified_at: s.verified_at.map(format_timestamp),
            previous_secret_expires_at: s
                .previous_secret_expires_at
                .filter(|t| *t > OffsetDateTime::now_utc())
                .map(format_timestamp),
            created_at: format_timestamp(s.created_at),
            updated_at: format_timestamp(s.updated_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub verified: bool,
    /// Why the endpoint did not pass, when it did not.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The signing secret, shown this once.
    pub secret: String,
    pub verification: Verification,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifiedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub verification: Verification,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub data: Vec<SubscriptionView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// An http(s) URL; it must echo the verification challenge to become active.
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Default `{"kind": "exponential"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub retry_policy: RetryPolicy,
    /// Milliseconds to wait for the endpoint's answer, 1000 to 30000 (default 10000).
    pub timeout_ms: Option<i32>,
    /// The payload version to receive (only 1 exists).
    pub payload_version: Option<i32>,
    /// At most this many requests a second to the endpoint, 1 to 1000 (absent or null: no
    /// limit). Deliveries past it wait their turn; they do not fail.
    pub rate_limit: Option<i32>,
    /// Deliver the events about one user one at a time, in the order they occurred: the next
    /// waits until the one before it has succeeded or failed for good (default false).
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// A new URL must pass verification again.
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<RetryPolicy>,
    pub timeout_ms: Option<i32>,
    pub payload_version: Option<i32>,
    /// 1 to 1000 requests a second; null removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub rate_limit: Option<Option<i32>>,
    pub ordered: Option<bool>,
    /// `active` re-enables a disabled subscription (a verified one; otherwise it waits for
    /// verification); `disabled` stops deliveries.
    pub status: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// The new signing secret, shown this once.
    pub secret: String,
    /// Until then the previous secret signs too.
    pub previous_secret_expires_at: String,
}

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
    pub since: String,
}

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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeView {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub description: String,
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventTypeView>,
}

fn validate_event_types(types: &[String]) -> Result<(), ApiError> {
    match types.iter().find(|t| !payload::is_known_type(t)) {
        Some(t) => Err(ApiError::bad_request(
            "unknown_event_type",
            format!("{t} is not an event type; GET /api/v1/webhook-event-types lists them"),
        )),
        None => Ok(()),
    }
}

fn validate_timeout(ms: i32) -> Result<(), ApiError> {
    if (1000..=30_000).contains(&ms) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_timeout",
            "timeout_ms must be from 1000 to 30000",
        ))
    }
}

/// A field that may be set to null: absent is `None`, null is `Some(None)`.
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn validate_rate_limit(limit: Option<i32>) -> Result<(), ApiError> {
    match limit {
        Some(n) if !(1..=1000).contains(&n) => Err(ApiError::bad_request(
            "invalid_rate_limit",
            "rate_limit must be 1 to 1000 requests a second, or null for no limit",
        )),
        _ => Ok(()),
    }
}

fn validate_version(v: i32) -> Result<(), ApiError> {
    if v == 1 {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_payload_version",
            "payload_version must be 1, the only version",
        ))
    }
}

fn validate_policy(p: &RetryPolicy) -> Result<(), ApiError> {
    p.validate()
        .map_err(|e| ApiError::bad_request("invalid_retry_policy", e.to_string()))
}

fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .sender
        .check_url(url)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request("invalid_url", e))
}

fn random_challenge() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn verify(state: &AppState, url: &str) -> Verification {
    match state
        .sender
        .verify(url, &random_challenge(), VERIFY_TIMEOUT)
        .await
    {
        Ok(()) => Verification {
            verified: true,
            error: None,
        },
        Err(error) => Verification {
            verified: false,
            error: Some(error),
        },
    }
}

async fn subscription(
    conn: &mut Conn,
    auth: OrgAuth,
    project_raw: &str,
    id_raw: &str,
) -> Result<Subscription, ApiError> {
    let project = owned_project(conn, auth.org_id, project_raw).await?;
    let id = body::path_id(id_raw, "webhook_not_found", "webhook subscription")?;
    webhooks::get_subscription(conn, project.id, id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "webhook_not_found",
                format!("No webhook subscription {id_raw} in this project."),
            )
        })
}

/// A project at `BECKON_WEBHOOK_MAX_SUBSCRIPTIONS`: every event fans out to each subscription,
/// so their number is bounded.
fn limit_reached(limit: u32) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "webhook_limit_reached",
        format!(
            "This project already has {limit} webhook subscriptions, the most it may have; delete one first."
        ),
    )
}

/// Create a subscription.
///
/// Beckon POSTs `{"type": "verification", "challenge": "…"}` to the URL; the endpoint must
/// answer 2xx with the challenge as its body within 3 seconds. Until it does, the subscription
/// is `pending_verification` and gets nothing. A project has at most
/// `BECKON_WEBHOOK_MAX_SUBSCRIPTIONS` subscriptions (default 20), in any status.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks", tag = "webhooks",
    request_body = CreateSubscription,
    params(("project_id" = String, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = CreatedSubscription),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The project has as many subscriptions as it may (`webhook_limit_reached`)", body = ErrorBody)
    ))]
pub async fn create(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: CreateSubscription = body::parse(&bytes)?;
    check_url(&state, &input.url)?;
    validate_event_types(&input.event_types)?;
    validate_policy(&input.retry_policy)?;
    let timeout_ms = input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    validate_timeout(timeout_ms)?;
    validate_rate_limit(input.rate_limit)?;
    let payload_version = input.payload_version.unwrap_or(1);
    validate_version(payload_version)?;
    let limit = state.webhook_subscription_limit;
    let project = {
        let mut conn = state.store.conn().await?;
        let project = owned_project(&mut conn, auth.org_id, &path).await?;
        // Refused before the URL is called; checked again, under a lock, when it is created.
        if webhooks::count_subscriptions(&mut conn, project.id).await? >= i64::from(limit) {
            return Err(limit_reached(limit));
        }
        project
    };
    let verification = verify(&state, &input.url).await;
    let secret = SigningSecret::generate();
    let mut conn = state.store.conn().await?;
    let created = match webhooks::create_subscription(
        &mut conn,
        &NewSubscription {
            id: Uuid::now_v7(),
            org_id: auth.org_id,
            project_id: project.id,
            url: input.url,
            description: input.description,
            event_types: input.event_types,
            status: if verification.verified {
                status::ACTIVE
            } else {
                status::PENDING_VERIFICATION
            }
            .to_owned(),
            retry_policy: serde_json::to_value(&input.retry_policy).unwrap_or_default(),
            timeout_ms,
            payload_version,
            secret_encrypted: state.sealing_key.seal(secret.expose().as_bytes()),
            verified_at: verification.verified.then(OffsetDateTime::now_utc),
            rate_limit: input.rate_limit,
            ordered: input.ordered,
        },
        limit,
    )
    .await?
    {
        SubscriptionCreated::Created(created) => created,
        SubscriptionCreated::LimitReached { limit } => return Err(limit_reached(limit)),
    };
    Ok(HttpResponse::Created().json(CreatedSubscription {
        subscription: (*created).into(),
        secret: secret.expose().to_owned(),
        verification,
    }))
}

/// List a project's subscriptions.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SubscriptionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let data = webhooks::list_subscriptions(&mut conn, project.id)
        .await?
        .into_iter()
        .map(SubscriptionView::from)
        .collect();
    Ok(HttpResponse::Ok().json(SubscriptionList { data }))
}

/// Read a subscription (never its secret).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SubscriptionView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::from(sub)))
}

/// Change a subscription. A new URL must pass verification again.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    request_body = UpdateSubscription,
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = VerifiedSubscription), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let input: UpdateSubscription = body::parse(&bytes)?;
    if let Some(url) = &input.url {
        check_url(&state, url)?;
    }
    if let Some(types) = &input.event_types {
        validate_event_types(types)?;
    }
    if let Some(policy) = &input.retry_policy {
        validate_policy(policy)?;
    }
    input.timeout_ms.map(validate_timeout).transpose()?;
    input.payload_version.map(validate_version).transpose()?;
    input.rate_limit.map(validate_rate_limit).transpose()?;
    if let Some(s) = &input.status
        && s != status::ACTIVE
        && s != status::DISABLED
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            "status must be active or disabled",
        ));
    }
    let current = {
        let mut conn = state.store.conn().await?;
        subscription(&mut conn, auth, &project, &id).await?
    };
    let verification = match &input.url {
        Some(url) if *url != current.url => Some(verify(&state, url).await),
        _ => None,
    };
    let verified = match &verification {
        Some(v) => v.verified,
        None => current.verified_at.is_some(),
    };
    let new_status = match (input.status.as_deref(), &verification) {
        (Some(status::DISABLED), _) => Some(status::DISABLED),
        (Some(status::ACTIVE), _) | (None, Some(_)) => Some(if verified {
            status::ACTIVE
        } else {
            status::PENDING_VERIFICATION
        }),
        _ => None,
    };
    let mut changes = SubscriptionChanges {
        url: input.url,
        description: input.description,
        event_types: input.event_types,
        retry_policy: input
            .retry_policy
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
        timeout_ms: input.timeout_ms,
        payload_version: input.payload_version,
        rate_limit: input.rate_limit,
        ordered: input.ordered,
        status: new_status.map(str::to_owned),
        ..Default::default()
    };
    if let Some(v) = &verification {
        changes.verified_at = Some(v.verified.then(OffsetDateTime::now_utc));
    }
    if new_status == Some(status::ACTIVE) || new_status == Some(status::PENDING_VERIFICATION) {
        changes.disabled_reason = Some(None);
        changes.disabled_at = Some(None);
        // Re-enabled: the failures that disabled it are behind it.
        if current.status == status::DISABLED {
            changes.failing_since = Some(None);
            changes.failures_in_streak = Some(0);
        }
    } else if new_status == Some(status::DISABLED) {
        changes.disabled_reason = Some(Some("disabled through the API".to_owned()));
        changes.disabled_at = Some(Some(OffsetDateTime::now_utc()));
    }
    let mut conn = state.store.conn().await?;
    let updated = webhooks::update_subscription(&mut conn, current.id, changes).await?;
    Ok(HttpResponse::Ok().json(VerifiedSubscription {
        subscription: updated.into(),
        verification: verification.unwrap_or(Verification {
            verified,
            error: None,
        }),
    }))
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let sub = subscription(&mut conn, auth, &project, &id).await?;
    webhooks::delete_subscription(&mut conn, sub.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Run the URL verification again; on success the subscription becomes active.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/verify", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = VerifiedSubscription), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reverify(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let current = {
        let mut conn = state.store.conn().await?;
        subscription(&mut conn, auth, &project, &id).await?
    };
    let verification = verify(&state, &current.url).await;
    let mut changes = SubscriptionChanges::default();
    if verification.verified {
        changes.verified_at = Some(Some(OffsetDateTime::now_utc()));
        if current.status == status::PENDING_VERIFICATION {
            changes.status = Some(status::ACTIVE.to_owned());
        }
    }
    let mut conn = state.store.conn().await?;
    let updated = webhooks::update_subscription(&mut conn, current.id, changes).await?;
    Ok(HttpResponse::Ok().json(VerifiedSubscription {
        subscription: updated.into(),
        verification,
    }))
}

/// Replace the signing secret. The previous one keeps signing beside it for 24 hours, so
/// receivers can switch without losing a webhook.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = RotatedSecret), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, id) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let current = subscription(&mut conn, auth, &project, &id).await?;
    let secret = SigningSecret::generate();
    let until = OffsetDateTime::now_utc() + ROTATION_OVERLAP;
    webhooks::update_subscription(
        &mut conn,
        current.id,
        SubscriptionChanges {
            secret_encrypted: Some(state.sealing_key.seal(secret.expose().as_bytes())),
            previous_secret_encrypted: Some(Some(current.secret_encrypted)),
            previous_secret_expires_at: Some(Some(until)),
            ..Default::default()
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(RotatedSecret {
        secret: secret.expose().to_owned(),
        previous_secret_expires_at: format_timestamp(until),
    }))
}

/// Send a test event (`webhook.ping`) to the subscription through the normal delivery path.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/ping", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Queued), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The subscription is not active", body = ErrorBody)))]
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
    let message_id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let body = WebhookBody {
        id: message_id,
        kind: PING.to_owned(),
        version: 1,
        occurred_at: now,
        project_id: sub.project_id,
        data: Ping {
            message: "ping".to_owned(),
            subscription_id: sub.id,
        },
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
    webhooks::insert_deliveries(&mut conn, message_id, &[sub.id], now).await?;
    Ok(HttpResponse::Accepted().json(Queued {
        message_id: Some(message_id),
        queued: 1,
    }))
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

/// Send one message to the subscription again, now.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/messages/{message_id}/resend", tag = "webhooks",
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id"), ("message_id" = String, Path, description = "Message (webhook-id)")),
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
            format!("No message {message} in this project."),
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
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/recover", tag = "webhooks",
    request_body = Recover,
    params(("project_id" = String, Path, description = "Project id"), ("webhook_id" = String, Path, description = "Subscription id")),
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

/// The event types a subscription may choose, with the JSON Schema of each webhook body.
#[utoipa::path(get, path = "/api/v1/webhook-event-types", tag = "webhooks",
    responses((status = 200, body = EventTypeList)))]
pub async fn event_types() -> HttpResponse {
    HttpResponse::Ok().json(EventTypeList {
        data: payload::catalogue()
            .into_iter()
            .map(|t| EventTypeView {
                kind: t.kind.to_owned(),
                version: t.version,
                description: t.description.to_owned(),
                schema: t.schema,
            })
            .collect(),
    })
}
