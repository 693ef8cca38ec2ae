//! Organization access tokens: `Authorization: Bearer oat_…` or `X-API-Key: oat_…`, each
//! with scopes (`send`, `read`, `admin`) and an optional expiry.

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::{self, Decision};
use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, web};
use beckon_domain::scope::{self, Scope};
use beckon_domain::secret;
use beckon_store::tenancy::{self, Grant};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// The organization the request's token belongs to, and what the token grants.
#[derive(Debug, Clone)]
pub struct OrgAuth {
    /// The token presented.
    pub token_id: Uuid,
    pub org_id: Uuid,
    pub scopes: Vec<Scope>,
    /// When the token presented stops working, if ever.
    pub expires_at: Option<time::OffsetDateTime>,
}

/// The routes a product backend calls with a `send` token: firing events and reading or
/// cancelling the organization's triggers by id (a trigger does not record which token made
/// it; its id is a UUIDv7 the caller was answered).
const SEND_ROUTES: [&str; 7] = [
    "/api/v1/lifecycle/dispatch",
    "/api/v1/events/send",
    "/api/v1/events/batch",
    "/api/v1/users/upsert",
    "/api/v1/triggers/{trigger_id}",
    "/api/v1/triggers/{trigger_id}/workflow",
    "/api/v1/triggers/{trigger_id}/details",
];

/// The scopes, any one of which lets a request through (`admin` always does): `send` for
/// the product backend's routes, `read` for any other `GET`, and `admin` for the rest.
pub fn accepted_scopes(method: &Method, route: Option<&str>) -> &'static [Scope] {
    let sends = route.is_some_and(|r| SEND_ROUTES.contains(&r));
    match (sends, method == Method::GET || method == Method::HEAD) {
        (true, true) => &[Scope::Send, Scope::Read],
        (true, false) => &[Scope::Send],
        (false, true) => &[Scope::Read],
        (false, false) => &[Scope::Admin],
    }
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
        let accepted = accepted_scopes(req.method(), req.match_pattern().as_deref());
        Box::pin(async move {
            let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_token",
                    "Send an organization access token as `Authorization: Bearer <token>` or `X-API-Key: <token>`.",
                )
            })?;
            let state = state.ok_or_else(|| ApiError::internal(&MissingState))?;
            let grant = token_grant(&state, &token).await?;
            if !accepted
                .iter()
                .any(|&needed| scope::grants(&grant.scopes, needed))
            {
                let names: Vec<&str> = accepted.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!(
                        "This token may not do this; it needs the scope {}.",
                        names.join(" or ")
                    ),
                ));
            }
            let org_id = grant.org_id;
            let (scopes, expires_at) = (grant.scopes, grant.expires_at);
            if let Some(limiter) = &state.limiter
                && let Decision::Deny { retry_after_secs } = limiter.check(&org_id)
            {
                return Err(ratelimit::refusal(
                    limiter.limit(),
                    retry_after_secs,
                    "Too many requests for this organization; retry after the delay given.",
                ));
            }
            Ok(Self {
                token_id: grant.token_id,
                org_id,
                scopes,
                expires_at,
            })
        })
    }
}

/// Why a token is refused: a real one that was revoked or has expired says so (its holder
/// made no guess, so it does not count against the address), anything else is
/// `invalid_token`.
fn refusal(lapsed: Option<tenancy::Lapsed>) -> ApiError {
    match lapsed {
        Some(tenancy::Lapsed::Revoked) => {
            ApiError::unauthorized("token_revoked", "The access token was revoked.")
        }
        Some(tenancy::Lapsed::Expired) => {
            ApiError::unauthorized("token_expired", "The access token has expired.")
        }
        None => ApiError::unauthorized("invalid_token", "The access token is not valid."),
    }
}

/// Whether `req` presents an organization token this replica found live lately: such a
/// request is no guess, and an address's refused guesses never turn it away.
pub fn presents_live_token(req: &HttpRequest, state: &AppState) -> bool {
    presented_token(req).is_some_and(|token| {
        secret::looks_like_org_token(&token)
            && state
                .lookups
                .token_grant(&secret::hash(&token))
                .is_some_and(|grant| grant.live_at(time::OffsetDateTime::now_utc()))
    })
}

/// What a live token grants, or why it is refused: a live token is remembered for
/// `BECKON_AUTH_CACHE_MS` once found, and never past its expiry.
async fn token_grant(state: &AppState, token: &str) -> Result<Grant, ApiError> {
    if !secret::looks_like_org_token(token) {
        return Err(refusal(None));
    }
    let hash = secret::hash(token);
    if let Some(grant) = state.lookups.token_grant(&hash) {
        return if grant.live_at(time::OffsetDateTime::now_utc()) {
            Ok(grant)
        } else {
            Err(refusal(Some(tenancy::Lapsed::Expired)))
        };
    }
    let looked_up = std::time::Instant::now();
    let mut conn = state.store.conn().await?;
    match tenancy::token_standing(&mut conn, &hash).await? {
        Some(tenancy::Standing::Live(grant)) => {
            state.lookups.remember_token(hash, grant.clone(), looked_up);
            Ok(grant)
        }
        Some(tenancy::Standing::Lapsed(lapsed)) => Err(refusal(Some(lapsed))),
        None => Err(refusal(None)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the application state is not registered")]
struct MissingState;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_scope() {
        let needs = |method: Method, route: &str| accepted_scopes(&method, Some(route));
        assert_eq!(needs(Method::POST, "/api/v1/events/send"), [Scope::Send]);
        assert_eq!(needs(Method::POST, "/api/v1/events/batch"), [Scope::Send]);
        assert_eq!(
            needs(Method::POST, "/api/v1/lifecycle/dispatch"),
            [Scope::Send]
        );
        assert_eq!(
            needs(Method::GET, "/api/v1/triggers/{trigger_id}"),
            [Scope::Send, Scope::Read]
        );
        for details in ["workflow", "details"] {
            assert_eq!(
                needs(
                    Method::GET,
                    &format!("/api/v1/triggers/{{trigger_id}}/{details}")
                ),
                [Scope::Send, Scope::Read]
            );
        }
        assert_eq!(needs(Method::GET, "/api/v1/projects"), [Scope::Read]);
        // Listing every trigger is reading, not what a backend sending events needs.
        assert_eq!(needs(Method::GET, "/api/v1/triggers"), [Scope::Read]);
        assert_eq!(needs(Method::POST, "/api/v1/projects"), [Scope::Admin]);
        assert_eq!(needs(Method::POST, "/api/v1/tokens"), [Scope::Admin]);
        assert_eq!(accepted_scopes(&Method::POST, None), [Scope::Admin]);
    }
}
