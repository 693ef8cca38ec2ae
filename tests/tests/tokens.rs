//! Organization access tokens: scopes that limit what a token may do, expiry, revocation
//! honoured on every request within the auth cache's bound, and a listing that never shows a
//! secret.

use beckon_e2e::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn make_token(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .authed(Method::POST, "/api/v1/tokens")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_only_what_its_scopes_allow_until_it_is_revoked() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, sender) = make_token(&app, json!({"name": "backend", "scopes": ["send"]})).await;
    assert_eq!(status, 201, "{sender}");
    assert_eq!(sender["scopes"], json!(["send"]));
    let send = sender["secret"].as_str().unwrap().to_owned();
    let (_, reader) = make_token(&app, json!({"name": "dashboard", "scopes": ["read"]})).await;
    let read = reader["secret"].as_str().unwrap().to_owned();

    // send: fire events and read their triggers; nothing else.
    let event = json!({"event_name": "trial_expired", "project_id": project,
                       "user_info": {"contact_external_id": "u1"}});
    let (status, sent) = call(
        &app,
        &send,
        Method::POST,
        "/api/v1/events/send",
        Some(event.clone()),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let trigger = format!("/api/v1/triggers/{}", sent["trigger_id"].as_str().unwrap());
    assert_eq!(call(&app, &send, Method::GET, &trigger, None).await.0, 200);
    for (method, path, body) in [
        (Method::GET, "/api/v1/projects".to_owned(), None),
        (
            Method::POST,
            "/api/v1/projects".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({"name": "x", "scopes": ["admin"]})),
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{project}/surveys"),
            None,
        ),
    ] {
        let (status, err) = call(&app, &send, method.clone(), &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}"
        );
    }
    // read: every GET, no change.
    assert_eq!(
        call(&app, &read, Method::GET, "/api/v1/projects", None)
            .await
            .0,
        200
    );
    assert_eq!(call(&app, &read, Method::GET, &trigger, None).await.0, 200);
    assert_eq!(
        call(&app, &read, Method::GET, "/api/v1/tokens", None)
            .await
            .0,
        200
    );
    for (method, path, body) in [
        (Method::POST, "/api/v1/events/send", Some(event.clone())),
        (Method::POST, "/api/v1/projects", Some(json!({"name": "x"}))),
        (Method::DELETE, trigger.as_str(), None),
    ] {
        let (status, _) = call(&app, &read, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}");
    }

    // The list shows every token and no secret.
    let (status, listed) = call(&app, &app.token, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dashboard", "backend", "test"]);
    let text = listed.to_string();
    assert!(
        !text.contains(&send) && !text.contains(&read) && !text.contains("oat_"),
        "{text}"
    );
    // A new token's Location reads it back (never its secret); another organization's
    // token is not found there.
    let made = app
        .authed(Method::POST, "/api/v1/tokens")
        .json(&json!({"name": "located", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let location = made.headers()["location"].to_str().unwrap().to_owned();
    let made: Value = made.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/tokens/{}", made["id"].as_str().unwrap())
    );
    let (status, read_back) = call(&app, &app.token, Method::GET, &location, None).await;
    assert_eq!(status, 200, "{read_back}");
    assert_eq!(read_back["name"], "located");
    assert!(read_back.get("secret").is_none(), "{read_back}");
    let (_, other_token) = app.other_org().await;
    let (status, refused) = call(&app, &other_token, Method::GET, &location, None).await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["code"], "token_not_found");
    let cli = app.cli(
        &[
            "--output",
            "json",
            "token",
            "list",
            "--org",
            &app.org_id.to_string(),
        ],
        "",
    );
    assert!(cli.status.success(), "{cli:?}");
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli.as_array().unwrap().len(), 4);
    assert!(!cli.to_string().contains("oat_"));

    // Bad requests are 400s with their codes.
    for (body, code) in [
        (json!({"name": "x", "scopes": []}), "invalid_scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "invalid_body"),
        (json!({"name": "", "scopes": ["read"]}), "invalid_name"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": "9999-12-31T23:59:59-23:59"}),
            "invalid_expires_at",
        ),
    ] {
        let (status, err) = make_token(&app, body.clone()).await;
        assert_eq!((status, err["code"].as_str()), (400, Some(code)), "{body}");
    }

    // Revoked: refused at once on the replica that revoked it (within the auth cache's time,
    // 1 s by default, on others).
    let revoke = format!("/api/v1/tokens/{}", sender["id"].as_str().unwrap());
    assert_eq!(
        call(&app, &read, Method::DELETE, &revoke, None).await.0,
        403
    );
    assert_eq!(
        call(&app, &app.token, Method::DELETE, &revoke, None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&app, &app.token, Method::DELETE, &revoke, None)
            .await
            .0,
        404
    );
    let (status, err) = call(
        &app,
        &send,
        Method::POST,
        "/api/v1/events/send",
        Some(event),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (401, Some("token_revoked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_at_once_even_while_remembered() {
    // The longest cache allowed: expiry must not wait for it.
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_AUTH_CACHE_MS", "60000".into())],
        ..Options::default()
    })
    .await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, made) = make_token(
        &app,
        json!({"name": "short", "scopes": ["read"], "expires_at": at}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let token = made["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&app, &token, Method::GET, "/api/v1/projects", None)
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, err) = call(&app, &token, Method::GET, "/api/v1/projects", None).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("token_expired")));
}
