//! The organization's access tokens: list them, make one with chosen scopes and expiry, revoke
//! one. Only an `admin` token may; a token's secret is shown once, when it is made.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use actix_web::{HttpResponse, web};
use beckon_domain::scope::Scope;
use beckon_store::tenancy::{self, ApiToken};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// An access token, never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it stops working; never, if null.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// The token it was made with; revoking that one revokes this one too. Null when the
    /// operator CLI made it.
    pub parent_id: Option<Uuid>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created_at: format_timestamp(t.created_at),
            expires_at: t.expires_at.map(format_timestamp),
            revoked_at: t.revoked_at.map(format_timestamp),
            parent_id: t.parent_id,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// A label to tell tokens apart, 1 to 200 characters.
    pub name: String,
    /// What the token may do: `send` (events/send and batch, lifecycle/dispatch, users/upsert, and
    /// reading or cancelling triggers by id), `read` (every GET), `admin` (everything). At
    /// least one.
    pub scopes: Vec<Scope>,
    /// When it stops working (RFC 3339, in the future, and no later than the expiry of the
    /// token making it); if left out, never — or when the token making it expires.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A new token, its secret shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// `oat_…`: store it now, it is never shown again.
    pub secret: String,
}

/// List the organization's tokens, newest first (revoked and expired ones too).
#[utoipa::path(get, path = "/api/v1/tokens", operation_id = "listTokens", tag = "tokens",
    params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<TokenView>),
        (status = 400, description = "A malformed `limit` or `cursor` (`invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.keyset(&state.sealing_key, List::Tokens, auth.org_id)?;
    let mut conn = state.store.conn().await?;
    let tokens = tenancy::list_tokens(&mut conn, auth.org_id, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        tokens,
        &state.sealing_key,
        (List::Tokens, auth.org_id),
        TokenView::from,
    )))
}

/// Make a token with the scopes and expiry given (an `admin` token only). It expires no
/// later than the token making it.
#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "createToken", tag = "tokens", request_body(content = TokenInput, example = json!({"name": "billing backend", "scopes": ["send"], "expires_at": "2027-12-31T00:00:00Z"})),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = CreatedToken, headers(("Location" = String, description = "The new token's path"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)
    ))]
pub async fn create(
    auth: OrgAuth,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: TokenInput = body::parse(&bytes)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 200 characters",
        ));
    }
    if input.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_scopes",
            "scopes must hold at least one of send, read, admin",
        ));
    }
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|raw| {
            beckon_domain::timestamp::parse_utc(raw)
                .ok()
                .filter(|at| *at > OffsetDateTime::now_utc())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_expires_at",
                        "expires_at must be an RFC 3339 time in the future",
                    )
                })
        })
        .transpose()?;
    // A token makes no token that outlives it: an expiring token's children expire with it
    // at the latest (and by default).
    let expires_at = match (expires_at, auth.expires_at) {
        (Some(asked), Some(own)) if asked > own => {
            return Err(ApiError::bad_request(
                "invalid_expires_at",
                "expires_at must not be later than the expiry of the token making it",
            ));
        }
        (None, own) => own,
        (asked, _) => asked,
    };
    let mut conn = state.store.conn().await?;
    let (token, secret) = tenancy::create_token(
        &mut conn,
        auth.org_id,
        name,
        &input.scopes,
        expires_at,
        Some(auth.token_id),
    )
    .await?;
    Ok(super::created(format!("/api/v1/tokens/{}", token.id))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedToken {
            token: TokenView::from(token),
            secret: secret.expose().to_owned(),
        }))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::not_found("token_not_found", format!("No token {}.", body::shown(raw)))
}

/// One of the organization's tokens (revoked and expired ones too), never its secret.
#[utoipa::path(get, path = "/api/v1/tokens/{token_id}", operation_id = "getToken", tag = "tokens",
    params(("token_id" = Uuid, Path, description = "Token id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = TokenView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = body::path_id(&path, "token_not_found", "token")?;
    let mut conn = state.store.conn().await?;
    let token = tenancy::get_token(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| not_found(&path))?;
    Ok(HttpResponse::Ok().json(TokenView::from(token)))
}

/// Revoke a token: every gateway refuses it within `BECKON_AUTH_CACHE_MS` (at most a minute).
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", operation_id = "revokeToken", tag = "tokens",
    params(("token_id" = Uuid, Path, description = "Token id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn revoke(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = body::path_id(&path, "token_not_found", "token")?;
    let mut conn = state.store.conn().await?;
    if !tenancy::revoke_token(&mut conn, auth.org_id, id).await? {
        return Err(not_found(&path));
    }
    // This replica refuses it at once; the others within their cache time.
    state.lookups.forget_tokens_of(auth.org_id);
    Ok(HttpResponse::NoContent().finish())
}
