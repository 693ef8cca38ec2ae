//! Webhook subscriptions: create (with URL verification), list, read, change, delete; verify
//! again and rotate the secret.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use crate::routes::owned_project;
use crate::routes::webhooks::subscription;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use base64::Engine as _;
use beckon_domain::status::SubscriptionStatus;
use beckon_store::webhooks::{
    self, NewSubscription, Subscription, SubscriptionChanges, SubscriptionCreated, status,
};
use beckon_webhooks::format::{self, PayloadFormat};
use beckon_webhooks::payload;
use beckon_webhooks::policy::RetryPolicy;
use beckon_webhooks::signing::SigningSecret;
use diesel_async::AsyncConnection as _;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long an endpoint has to echo the verification challenge.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    #[schema(value_type = SubscriptionStatus)]
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
    #[schema(value_type = RetryPolicy)]
    pub retry_policy: serde_json::Value,
    pub timeout_ms: i32,
    /// The shape its webhooks take.
    pub format: PayloadFormat,
    /// The version of `format` it receives.
    pub payload_version: i32,
    /// At most this many requests a second go to the endpoint (null: no limit); the excess
    /// waits its turn.
    pub rate_limit: Option<i32>,
    /// Events about one user go out one at a time, in the order they occurred.
    pub ordered: bool,
    #[schema(format = DateTime)]
    pub last_success_at: Option<String>,
    #[schema(format = DateTime)]
    pub verified_at: Option<String>,
    /// Until when the previous secret still signs, after a rotation.
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
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
            format: s.format,
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// An http(s) URL; it must echo the verification challenge to become active (in the
    /// `1flow` and `screeb-v2` formats, whose products have no such handshake, it is active
    /// at once).
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all that `format` delivers.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// The shape of the webhooks (default `beckon`): Beckon's own body; `1flow`, 1Flow's
    /// `submitted_survey` alert (submitted responses only); `seismic`, Seismic's event
    /// super-structure; or `screeb-v2`, Screeb's webhook v2.0.0 (the three response events).
    /// Its product's retry policy and timeout are the defaults.
    #[serde(default)]
    pub format: PayloadFormat,
    /// The version of `format` to receive (default its newest; each format has only 1 yet).
    pub payload_version: Option<i32>,
    /// Default the format's: `{"kind": "exponential"}` for `beckon`, `{"kind": "hourly"}` for
    /// `1flow`, `{"kind": "backoff24h"}` for `seismic`, `{"kind": "once_after_60s"}` for
    /// `screeb-v2`.
    pub retry_policy: Option<RetryPolicy>,
    /// Milliseconds to wait for the endpoint's answer, 1000 to 30000 (default the format's:
    /// 10000 for `beckon`, `1flow` and `screeb-v2`, 3000 for `seismic`).
    pub timeout_ms: Option<i32>,
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
    pub retry_policy: Option<RetryPolicy>,
    pub timeout_ms: Option<i32>,
    /// A new format takes effect for messages created from now on; those already created
    /// (and their retries) keep the shape they began with. Its retry policy and timeout are
    /// not taken over: set `retry_policy` and `timeout_ms` too to adopt them.
    pub format: Option<PayloadFormat>,
    /// A new version of the format (default, when `format` changes: the new format's newest);
    /// like a new format, for new messages only.
    pub payload_version: Option<i32>,
    /// 1 to 1000 requests a second; null removes the limit.
    #[serde(default, deserialize_with = "body::nullable")]
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
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: String,
}

/// Every one of `types` is an event type that `format` delivers.
fn validate_event_types(types: &[String], format: PayloadFormat) -> Result<(), ApiError> {
    let catalogue = payload::catalogue();
    let unknown = |t: &String| !catalogue.iter().any(|known| known.kind == t);
    if let Some(t) = types.iter().find(|t| unknown(t)) {
        return Err(ApiError::bad_request(
            "unknown_event_type",
            format!(
                "{} is not an event type; GET /api/v1/webhook-event-types lists them",
                body::shown(t)
            ),
        ));
    }
    let delivered = |t: &String| {
        catalogue
            .iter()
            .any(|known| known.kind == t && known.schema(format).is_some())
    };
    match types.iter().find(|t| !delivered(t)) {
        Some(t) => Err(ApiError::bad_request(
            "event_type_not_in_format",
            format!(
                "the {format} format does not deliver {t}; GET /api/v1/webhook-event-types?format={format} lists what it does"
            ),
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

fn validate_rate_limit(limit: Option<i32>) -> Result<(), ApiError> {
    match limit {
        Some(n) if !(1..=1000).contains(&n) => Err(ApiError::bad_request(
            "invalid_rate_limit",
            "rate_limit must be 1 to 1000 requests a second, or null for no limit",
        )),
        _ => Ok(()),
    }
}

fn validate_version(format: PayloadFormat, version: i32) -> Result<(), ApiError> {
    if u32::try_from(version).is_ok_and(|v| format.versions().contains(&v)) {
        Ok(())
    } else {
        let versions: Vec<String> = format.versions().iter().map(u32::to_string).collect();
        Err(ApiError::bad_request(
            "invalid_payload_version",
            format!(
                "payload_version of the {format} format must be one of {}",
                versions.join(", ")
            ),
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

/// Verifies `url` for a subscription in `format`: by the challenge, for a format whose
/// receivers answer it; a format whose product has no such handshake is not asked.
async fn verify(state: &AppState, format: PayloadFormat, url: &str) -> Verification {
    if !format::verifies(format) {
        return Verification {
            verified: true,
            error: None,
        };
    }
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

/// What a change asks of a subscription's shape: its format, event types and version.
struct Shape {
    format: Option<PayloadFormat>,
    event_types: Option<Vec<String>>,
    payload_version: Option<i32>,
}

impl Shape {
    /// The event types and version the change leaves `current` with, checked against the
    /// format it will have; the version to store, when it changes.
    fn checked(&self, current: &Subscription) -> Result<Option<i32>, ApiError> {
        let format = self.format.unwrap_or(current.format);
        validate_event_types(
            self.event_types.as_deref().unwrap_or(&current.event_types),
            format,
        )?;
        let payload_version = match (self.payload_version, self.format) {
            (Some(version), _) => Some(version),
            (None, Some(new)) if new != current.format => Some(new.latest() as i32),
            (None, _) => None,
        };
        validate_version(format, payload_version.unwrap_or(current.payload_version))?;
        Ok(payload_version)
    }
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
/// is `pending_verification` and gets nothing. (`1flow` and `screeb-v2` subscriptions are sent
/// no challenge and are active at once: those products have no such handshake.) A project has at most
/// `BECKON_WEBHOOK_MAX_SUBSCRIPTIONS` subscriptions (default 20), in any status.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks", operation_id = "createWebhook", tag = "webhooks",
    request_body(content = CreateSubscription, example = json!({"url": "https://hooks.acme.example/beckon", "description": "CRM sync", "event_types": ["invitation.created", "response.ended"], "retry_policy": {"kind": "exponential"}})),
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = CreatedSubscription, headers(("Location" = String, description = "The new subscription's path"))),
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
    validate_event_types(&input.event_types, input.format)?;
    let defaults = format::defaults(input.format);
    let retry_policy = input.retry_policy.unwrap_or(defaults.retry_policy);
    validate_policy(&retry_policy)?;
    let timeout_ms = input.timeout_ms.unwrap_or(defaults.timeout_ms);
    validate_timeout(timeout_ms)?;
    validate_rate_limit(input.rate_limit)?;
    let payload_version = input
        .payload_version
        .unwrap_or(input.format.latest() as i32);
    validate_version(input.format, payload_version)?;
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
    let verification = verify(&state, input.format, &input.url).await;
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
            retry_policy: serde_json::to_value(&retry_policy).unwrap_or_default(),
            timeout_ms,
            format: input.format,
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
    let location = format!(
        "/api/v1/projects/{}/webhooks/{}",
        created.project_id, created.id
    );
    Ok(crate::routes::created(location).json(CreatedSubscription {
        subscription: (*created).into(),
        secret: secret.expose().to_owned(),
        verification,
    }))
}

/// List a project's subscriptions, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks", operation_id = "listWebhooks", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<SubscriptionView>),
        (status = 400, description = "A malformed `limit` or `cursor` (`invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let page = page.keyset(&state.sealing_key, List::WebhookSubscriptions, project.id)?;
    let subscriptions = webhooks::list_subscriptions(&mut conn, project.id, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        subscriptions,
        &state.sealing_key,
        (List::WebhookSubscriptions, project.id),
        SubscriptionView::from,
    )))
}

/// Read a subscription (never its secret).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", operation_id = "getWebhook", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
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
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", operation_id = "updateWebhook", tag = "webhooks",
    request_body(content = UpdateSubscription, example = json!({"event_types": ["response.ended"], "rate_limit": 10})),
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
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
    if let Some(policy) = &input.retry_policy {
        validate_policy(policy)?;
    }
    input.timeout_ms.map(validate_timeout).transpose()?;
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
    // Checked now, before the URL is called, and again under the row's lock when the change
    // is made, against what another change may have made meanwhile.
    let shape = Shape {
        format: input.format,
        event_types: input.event_types.clone(),
        payload_version: input.payload_version,
    };
    let payload_version = shape.checked(&current)?;
    let verification = match &input.url {
        Some(url) if *url != current.url => {
            Some(verify(&state, input.format.unwrap_or(current.format), url).await)
        }
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
        format: input.format.map(String::from),
        payload_version,
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
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let locked = webhooks::lock_subscription(conn, current.id)
                .await?
                .ok_or_else(|| {
                    // Deleted since it was read.
                    ApiError::not_found(
                        "webhook_not_found",
                        format!(
                            "No webhook subscription {} in this project.",
                            body::shown(&id)
                        ),
                    )
                })?;
            changes.payload_version = shape.checked(&locked)?;
            Ok(webhooks::update_subscription(conn, current.id, changes).await?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(VerifiedSubscription {
        subscription: updated.into(),
        verification: verification.unwrap_or(Verification {
            verified,
            error: None,
        }),
    }))
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}", operation_id = "deleteWebhook", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
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
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/verify", operation_id = "verifyWebhook", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
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
    let verification = verify(&state, current.format, &current.url).await;
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
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/webhooks/{webhook_id}/rotate-secret", operation_id = "rotateWebhookSecret", tag = "webhooks",
    params(("project_id" = Uuid, Path, description = "Project id"), ("webhook_id" = Uuid, Path, description = "Subscription id")),
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
