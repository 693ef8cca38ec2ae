//! The in-app widget API: with a project's publishable key, list a user's pending invitations
//! so the widget can show them on the user's next session.
//!
//! The publishable key ships in page JavaScript and user refs are often guessable, so neither
//! proves who is asking. As Intercom and Formbricks do it, the customer's backend signs the
//! signed-in user's ref with the project's widget secret, `user_hash =
//! hex(HMAC-SHA256(widget_secret, user_ref))`, and the page passes the hash: without a valid
//! one the widget answers 401 and reveals nothing. When the project lists allowed origins,
//! only browsers on them are answered (CORS), and a request without an `Origin` is refused.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::format_timestamp;
use actix_web::http::StatusCode;
use actix_web::http::header::ORIGIN;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use beckon_domain::{UserRef, secret};
use beckon_store::{invitations, tenancy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";

#[derive(Debug, Deserialize)]
pub struct WidgetQuery {
    pub user_ref: Option<String>,
    /// The publishable key, when not sent as `X-Publishable-Key` (a plain GET needs no
    /// preflight).
    pub key: Option<String>,
    /// The user's hash, when not sent as `X-User-Hash`.
    pub user_hash: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WidgetSurvey {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingInvitation {
    pub invitation_id: Uuid,
    pub survey: WidgetSurvey,
    pub magic_link_url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingList {
    pub data: Vec<PendingInvitation>,
}

fn with_cors(mut response: HttpResponse, origin: Option<&str>) -> HttpResponse {
    if let Some(origin) = origin
        && let Ok(value) = origin.parse()
    {
        let headers = response.headers_mut();
        headers.insert(actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            actix_web::http::header::VARY,
            actix_web::http::header::HeaderValue::from_static("Origin"),
        );
    }
    response
}

/// The pending invitations of a user, for the in-app widget.
#[utoipa::path(get, path = "/api/v1/widget/invitations", operation_id = "listWidgetInvitations", tag = "widget",
    params(("user_ref" = String, Query, description = "The user"),
        ("key" = Option<String>, Query, description = "The project's publishable key (or the X-Publishable-Key header)"),
        ("X-Publishable-Key" = Option<String>, Header, description = "The project's publishable key"),
        ("user_hash" = Option<String>, Query, description = "hex(HMAC-SHA256(widget_secret, user_ref)), computed by your backend (or the X-User-Hash header)"),
        ("X-User-Hash" = Option<String>, Header, description = "hex(HMAC-SHA256(widget_secret, user_ref)), computed by your backend")),
    responses(
        (status = 200, body = PendingList),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Missing or unknown publishable key, or a missing or wrong user hash", body = ErrorBody),
        (status = 403, description = "The Origin is not one the project allows (or missing while it lists some), or the project has no widget secret yet", body = ErrorBody)
    ))]
pub async fn pending(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<WidgetQuery>,
) -> HttpResponse {
    let origin = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match pending_inner(&req, &state, &query, origin.as_deref()).await {
        Ok(response) => with_cors(response, origin.as_deref()),
        // A refused origin gets no CORS headers: its page may not read the answer.
        Err(err) if err.code == ORIGIN_NOT_ALLOWED => err.error_response(),
        // Other errors are readable by the widget, so it can tell what went wrong.
        Err(err) => with_cors(err.error_response(), origin.as_deref()),
    }
}

async fn pending_inner(
    req: &HttpRequest,
    state: &AppState,
    query: &WidgetQuery,
    origin: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let key = header_or_query(req, "x-publishable-key", query.key.as_deref()).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_publishable_key",
            "Send the project's publishable key as X-Publishable-Key or ?key=.",
        )
    })?;
    let mut conn = state.store.conn().await?;
    let project = tenancy::project_by_publishable_key(&mut conn, &key)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_publishable_key",
                "The publishable key is not valid.",
            )
        })?;
    check_origin(&project.allowed_origins, origin)?;
    if project.widget_secret_sealed.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "widget_secret_not_issued",
            "This project has no widget secret yet: issue one with \
             POST /api/v1/projects/{id}/widget-secret and sign user refs with it.",
        ));
    }
    let user_ref = UserRef::parse(query.user_ref.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_user_ref", e.to_string()))?;
    let hash = header_or_query(req, "x-user-hash", query.user_hash.as_deref()).ok_or_else(|| {
        ApiError::unauthorized(
            "user_hash_required",
            "Send the user's hash (HMAC-SHA256 of the user ref under the widget secret, in hex) \
             as X-User-Hash or ?user_hash=.",
        )
    })?;
    verify_user(state, &project, user_ref.as_str(), &hash)?;
    let pending = invitations::pending_for(&mut conn, project.id, user_ref.as_str()).await?;
    let data = pending
        .into_iter()
        .filter_map(|p| {
            let token = state.sealing_key.open(p.token_sealed.as_deref()?).ok()?;
            Some(PendingInvitation {
                invitation_id: p.id,
                survey: WidgetSurvey {
                    id: p.survey_id,
                    name: p.survey_name,
                    version: p.survey_version,
                },
                magic_link_url: format!(
                    "{}/surveys/{}",
                    state.public_url,
                    String::from_utf8_lossy(&token)
                ),
                expires_at: format_timestamp(p.expires_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(PendingList { data }))
}

fn header_or_query(req: &HttpRequest, header: &str, query: Option<&str>) -> Option<String> {
    req.headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .or(query)
        .map(str::to_owned)
}

/// When the project lists origins, only a browser on one of them is answered; a request with
/// no `Origin` (curl, a server) could claim any page and is refused. With none listed, no
/// browser is answered, but a native app (which sends no `Origin`) is.
fn check_origin(allowed: &[String], origin: Option<&str>) -> Result<(), ApiError> {
    match origin {
        Some(origin) if !allowed.iter().any(|o| o == origin) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ORIGIN_NOT_ALLOWED,
            format!("{origin} is not an allowed origin of this project."),
        )),
        None if !allowed.is_empty() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ORIGIN_NOT_ALLOWED,
            "This project's widget answers only browsers on its allowed origins; the request \
             has no Origin.",
        )),
        _ => Ok(()),
    }
}

/// The hash must be the user ref's HMAC under the project's widget secret (or, for a day after
/// a rotation, the one it replaced). A secret sealed under a key this deployment no longer
/// has is the operator's problem, not the caller's: 503, never a refused credential.
fn verify_user(
    state: &AppState,
    project: &tenancy::Project,
    user_ref: &str,
    hash: &str,
) -> Result<(), ApiError> {
    let secrets: Vec<Vec<u8>> = project
        .widget_secrets(time::OffsetDateTime::now_utc())
        .filter_map(|sealed| state.sealing_key.open(sealed).ok())
        .collect();
    if secrets.is_empty() {
        tracing::error!(project_id = %project.id, "the project's widget secret does not open under this gateway's keys");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sealing_key_missing",
            "This project's widget secret cannot be opened: BECKON_SECRET_KEYS lack the key it \
             was sealed with. Configure that key again, or issue a new widget secret.",
        ));
    }
    let verified = secrets
        .iter()
        .any(|secret| secret::verify_user_hash(&String::from_utf8_lossy(secret), user_ref, hash));
    if verified {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "invalid_user_hash",
            "The user hash does not match this user ref under the project's widget secret.",
        ))
    }
}

/// The CORS preflight: any origin may ask; the GET itself checks the project's allowed origins.
pub async fn preflight(req: HttpRequest) -> HttpResponse {
    let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    let response = HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET"))
        .insert_header((
            "Access-Control-Allow-Headers",
            "X-Publishable-Key, X-User-Hash",
        ))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish();
    with_cors(response, origin)
}
