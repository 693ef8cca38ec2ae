//! Every answer names its request: an `X-Request-Id` header, and `request_id` in every error
//! body, so a customer's report and the access log meet on one id. A caller's own
//! `X-Request-Id` (from a gateway or load balancer) is kept when it is a sane token;
//! otherwise, or when absent, one is made.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller id kept.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being answered, when called while answering one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The caller's id when it is 1 to 128 characters of letters, digits and `-_.:~`; a new
/// one otherwise.
fn of(headers: &HeaderMap) -> String {
    headers
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=MAX_LEN).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:~".contains(&b))
        })
        .map_or_else(
            || format!("req_{}", uuid::Uuid::now_v7().simple()),
            str::to_owned,
        )
}

/// Around every layer that answers: the id is in scope while they and the route run, so the
/// errors they answer carry it; an error a layer returns instead of an answer carries it too.
pub async fn tag(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = of(req.headers());
    let value = HeaderValue::from_str(&id).expect("checked or generated: visible ASCII");
    match CURRENT.scope(id.clone(), next.call(req)).await {
        Ok(mut res) => {
            res.headers_mut().insert(HEADER, value);
            Ok(res)
        }
        Err(inner) => Err(Tagged { inner, id, value }.into()),
    }
}

/// An error a layer returned, answered with the request's id.
struct Tagged {
    inner: actix_web::Error,
    id: String,
    value: HeaderValue,
}

impl std::fmt::Debug for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

impl std::fmt::Display for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl ResponseError for Tagged {
    fn status_code(&self) -> StatusCode {
        self.inner.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = CURRENT.sync_scope(self.id.clone(), || self.inner.error_response());
        res.headers_mut().insert(HEADER, self.value.clone());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_sane_caller_id_is_kept_and_anything_else_replaced() {
        let with = |v: &str| {
            of(TestRequest::default()
                .insert_header((HEADER, v))
                .to_http_request()
                .headers())
        };
        assert_eq!(with("gw-7f3a:01.2~x_y"), "gw-7f3a:01.2~x_y");
        for bad in ["", "has space", "quote\"", "<script>", &"a".repeat(129)] {
            let id = with(bad);
            assert!(
                id.starts_with("req_") && id.len() == 36,
                "{bad:?} gave {id}"
            );
        }
        let fresh = of(&HeaderMap::new());
        assert!(fresh.starts_with("req_"));
        assert_ne!(fresh, of(&HeaderMap::new()));
    }
}
