//! The served OpenAPI spec matches the code: every operation it documents is routed.

use actix_web::{App, test, web};

#[actix_web::test]
async fn every_documented_operation_is_routed() {
    let spec: serde_json::Value = serde_json::from_str(ingest_api::openapi::spec()).unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::PayloadConfig::new(1024))
            .configure(ingest_api::routes::configure),
    )
    .await;
    // The control: what an unrouted request looks like here.
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/not-a-route")
            .to_request(),
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(body["code"], "not_found");
    // A documented path with a method it does not document.
    let res = test::call_service(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::TRACE)
            .uri("/api/v1/triggers/x")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "DELETE, GET");
    let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(body["code"], "method_not_allowed");
    // The same on a route registered as a resource of its own (the widget's, wrapped in its
    // rate limit).
    let res = test::call_service(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::TRACE)
            .uri("/api/v1/widget/invitations")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "GET");

    let paths = spec["paths"].as_object().expect("the spec has paths");
    assert!(paths.len() >= 30, "only {} paths documented", paths.len());
    let mut checked = 0;
    for (path, operations) in paths {
        // Any value will do for a path parameter: routing does not look at it.
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().unwrap().keys() {
            let method =
                actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri(&concrete)
                .to_request();
            let res = test::call_service(&app, req).await;
            let body: serde_json::Value =
                serde_json::from_slice(&test::read_body(res).await).unwrap_or_default();
            // An unrouted request reaches the default service, which answers `not_found`, or
            // `method_not_allowed` for a documented path.
            assert!(
                body["code"] != "not_found" && body["code"] != "method_not_allowed",
                "{method} {path} is documented but not routed: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 38, "only {checked} operations checked");
}
