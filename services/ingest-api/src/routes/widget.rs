//! The in-app widget API: with a project's publishable key, list a user's pending invitations
//! so the widget can show them on the user's next session. Browsers call it from the
//! project's allowed origins (CORS).

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::format_timestamp;
use actix_web::http::StatusCode;
use actix_web::http::header::ORIGIN;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use beckon_domain::UserRef;
use beckon_store::{invitations, tenancy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct WidgetQuery {
    pub user_ref: Option<String>,
    /// The publishable key, when not sent as `X-Publishable-Key` (a plain GET needs no
    /// preflight).
    pub key: Option<String>,
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
#[utoipa::path(get, path = "/api/v1/widget/invitations", tag = "widget",
    params(("user_ref" = String, Query, description = "The user"),
        ("key" = Option<String>, Query, description = "The project's publishable key (or the X-Publishable-Key header)"),
        ("X-Publishable-Key" = Option<String>, Header, description = "The project's publishable key")),
    responses(
        (status = 200, body = PendingList),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Missing or unknown publishable key", body = ErrorBody),
        (status = 403, description = "The Origin is not one the project allows", body = ErrorBody)
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
        Err(err) if err.code == "origin_not_allowed" => err.error_response(),
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
    let key = req
        .headers()
        .get("x-publishable-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.key.clone())
        .ok_or_else(|| {
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
    // Browsers always send Origin on cross-origin calls; a server-side call has none.
    if let Some(origin) = origin
        && !project.allowed_origins.iter().any(|o| o == origin)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("{origin} is not an allowed origin of this project."),
        ));
    }
    let user_ref = UserRef::parse(query.user_ref.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_user_ref", e.to_string()))?;
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

/// The CORS preflight: any origin may ask; the GET itself checks the project's allowed origins.
pub async fn preflight(req: HttpRequest) -> HttpResponse {
    let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    let response = HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET"))
        .insert_header(("Access-Control-Allow-Headers", "X-Publishable-Key"))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish();
    with_cors(response, origin)
}
