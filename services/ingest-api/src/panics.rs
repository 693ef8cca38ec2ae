//! A request whose handler panics is answered, not dropped: 500 `internal_error` in the usual
//! error shape. The panic itself is logged and counted by the process's panic hook
//! (`beckon_panics_total`); the worker goes on serving every other request.

use crate::error::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;

/// The request is not held on to (routing needs it unshared); a panic becomes an error, which
/// the server turns into its answer like any error a middleware returns.
pub async fn contain(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(answered) => answered,
        Err(_) => Err(ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; it has been logged.",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    #[actix_web::test]
    async fn a_panicking_handler_is_answered_500_and_the_next_request_is_served() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(super::contain))
                .route(
                    "/panics",
                    web::get().to(|| async {
                        if true {
                            panic!("on purpose");
                        }
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/ok",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                ),
        )
        .await;
        for _ in 0..3 {
            let refused =
                test::try_call_service(&app, test::TestRequest::get().uri("/panics").to_request())
                    .await
                    .err()
                    .expect("the panic becomes an error")
                    .error_response();
            assert_eq!(refused.status(), 500);
            let body = actix_web::body::to_bytes(refused.into_body())
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "internal_error");
            let answer =
                test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
            assert_eq!(answer.status(), 200);
        }
    }
}
