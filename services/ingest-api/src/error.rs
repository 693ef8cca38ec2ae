//! The one error shape of every endpoint, serving both seeds' clients:
//! `{"statusCode": 400, "error": "Bad Request", "code": "user_ref_empty", "message": "…"}`.
//!
//! The user's faults are 4xx with a stable `code`; ours are an opaque 500 (or 503 when a
//! dependency is down) with the whole cause chain logged, never shown.

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use beckon_store::StoreError;
use serde::Serialize;

/// The error body, as documented in the OpenAPI spec.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[serde(rename = "statusCode")]
    #[schema(example = 400)]
    pub status_code: u16,
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    pub error: String,
    /// Stable and machine-readable; branch on this.
    #[schema(example = "user_ref_empty")]
    pub code: String,
    /// For humans.
    pub message: String,
    /// The trigger a timed-out dispatch created (504 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<uuid::Uuid>,
    /// Where in the request body the problem is, as a JSON pointer (RFC 6901), when one
    /// part of it is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/trigger/conditions/all/1/gt/field")]
    pub pointer: Option<String>,
    /// The request's id, as in the `X-Request-Id` header: quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "req_019a8e4c2f7b7c4e9d1a3b5c7d9e0f12")]
    pub request_id: Option<String>,
}

/// Marks a response that refused a credential — an unknown organization token, publishable
/// key or magic link — so the rate limit on refused credentials can count it.
#[derive(Debug, Clone, Copy)]
pub struct CredentialRefused;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub trigger_id: Option<uuid::Uuid>,
    /// Where in the body the problem is (a JSON pointer).
    pub pointer: Option<String>,
    /// Extra response headers (`Retry-After`, `RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            trigger_id: None,
            pointer: None,
            headers: Vec::new(),
        }
    }

    /// The same error, pointing at `pointer` (a JSON pointer into the request body).
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// Our fault: logged with its causes, shown as an opaque 500.
    pub fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %beckon_runtime::error_chain(err), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; it has been logged.",
        )
    }

    /// The generic error for a status produced outside our handlers (routing, payload limits).
    pub fn from_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            s if s.is_server_error() => "internal_error",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("Error");
        Self::new(status, code, message)
    }

    /// Whether this error refuses a credential the client presented (as opposed to one it
    /// forgot, or one that was valid but expired or was revoked, which answer `token_expired`
    /// and `token_revoked`): what guessing produces.
    pub fn refuses_credential(&self) -> bool {
        matches!(
            self.code,
            "invalid_token"
                | "invalid_publishable_key"
                | "invalid_user_hash"
                | "invitation_not_found"
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            status_code: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            code: self.code.to_owned(),
            message: self.message.clone(),
            trigger_id: self.trigger_id,
            pointer: self.pointer.clone(),
            request_id: crate::request_id::current(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        if self.refuses_credential() {
            response.extensions_mut().insert(CredentialRefused);
        }
        response.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::AttributesTooLarge = err {
            return Self::bad_request("attributes_too_large", err.to_string());
        }
        if err.is_transient() {
            tracing::warn!(error = %beckon_runtime::error_chain(&err), "database unavailable");
            Self::unavailable(
                "database_unavailable",
                "The database is unavailable; try again shortly.",
            )
        } else {
            Self::internal(&err)
        }
    }
}

/// A statement that failed inside a transaction the handler runs.
impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        StoreError::from(err).into()
    }
}

/// Rewrites error responses that did not come from us (unknown routes, payload limits,
/// extractor failures) into the same shape.
pub fn json_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // Ours already: JSON errors, and the respond page's HTML notices.
    let is_ours = res.response().headers().get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if is_ours {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (req, _) = res.into_parts();
    let response = ApiError::from_status(status).error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
