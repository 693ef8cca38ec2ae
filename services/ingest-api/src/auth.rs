//! Organization access tokens: `Authorization: Bearer oat_…` or `X-API-Key: oat_…`.

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::{self, Decision};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use beckon_domain::secret;
use beckon_store::tenancy;
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// The organization the request's token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct OrgAuth {
    pub org_id: Uuid,
}

/// The token a request presents, if any.
pub fn presented_token(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_owned());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

impl FromRequest for OrgAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = presented_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_token",
                    "Send an organization access token as `Authorization: Bearer <token>` or `X-API-Key: <token>`.",
                )
            })?;
            let state = state.ok_or_else(|| ApiError::internal(&MissingState))?;
            let org_id = token_owner(&state, &token).await?.ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "The access token is invalid or revoked.")
            })?;
            if let Some(limiter) = &state.limiter
                && let Decision::Deny { retry_after_secs } = limiter.check(&org_id)
            {
                return Err(ratelimit::refusal(
                    limiter.limit(),
                    retry_after_secs,
                    "Too many requests for this organization; retry after the delay given.",
                ));
            }
            Ok(Self { org_id })
        })
    }
}

/// The organization of a live token: remembered for `BECKON_AUTH_CACHE_MS` once found.
async fn token_owner(state: &AppState, token: &str) -> Result<Option<Uuid>, ApiError> {
    if !secret::looks_like_org_token(token) {
        return Ok(None);
    }
    let hash = secret::hash(token);
    if let Some(org_id) = state.lookups.token_owner(&hash) {
        return Ok(Some(org_id));
    }
    let mut conn = state.store.conn().await?;
    let owner = tenancy::token_owner(&mut conn, &hash).await?;
    if let Some(org_id) = owner {
        state.lookups.remember_token(hash, org_id);
    }
    Ok(owner)
}

#[derive(Debug, thiserror::Error)]
#[error("the application state is not registered")]
struct MissingState;
