//! Credentials under attack and in routine rotation: a revoked or expired token is no guess,
//! a token the gateway knows to be live is served from an address others guess from, made-up
//! HTTP methods add nothing to the metrics, strangers cannot spend a customer's widget budget,
//! and no token makes one that outlives it.

use beckon_domain::secret::user_hash;
use beckon_e2e::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn make_token(app: &TestApp, with: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(with)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn status_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A project with a publishable key, a widget secret and one allowed origin.
async fn widget_project(app: &TestApp) -> (String, String) {
    let project = app.create_project().await;
    let path = format!("/api/v1/projects/{project}");
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"allowed_origins": ["https://app.example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.widget_keys(project).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_no_guess_and_locks_nobody_out_of_a_shared_address() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_REFUSED_CREDENTIALS_PER_SECOND", "0.05".into()),
            ("BECKON_REFUSED_CREDENTIALS_BURST", "3".into()),
            // The test is the proxy; X-Forwarded-For names the shared egress address.
            ("BECKON_TRUSTED_PROXIES", "127.0.0.1".into()),
        ],
        ..Options::default()
    })
    .await;
    let egress = "198.51.100.77, 127.0.0.1";
    let (status, made) = make_token(
        &app,
        &app.token,
        json!({"name": "backend", "scopes": ["send", "read"]}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let old = made["secret"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    // The rotation the docs recommend: the next token exists, the last one is revoked.
    let r = app
        .authed(Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // One pod that has not rolled yet keeps calling with the revoked token.
    for _ in 0..3 {
        let (status, body) = status_of(
            app.http
                .get(app.url("/api/v1/projects"))
                .header("x-forwarded-for", egress)
                .bearer_auth(&old),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("token_revoked")),
            "{body}"
        );
    }
    // Another organization, same egress address, valid admin token: served.
    let (_, other_token) = app.other_org().await;
    let (status, body) = status_of(
        app.http
            .get(app.url("/api/v1/projects"))
            .header("x-forwarded-for", egress)
            .bearer_auth(&other_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_no_guess_and_a_live_token_is_served_after_guesses() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_REFUSED_CREDENTIALS_PER_SECOND", "0.05".into()),
            ("BECKON_REFUSED_CREDENTIALS_BURST", "3".into()),
        ],
        ..Options::default()
    })
    .await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, made) = make_token(
        &app,
        &app.token,
        json!({"name": "short", "scopes": ["read"], "expires_at": at}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let short = made["secret"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        let r = app
            .http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&short)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "token_expired");
    }
    // The organization's own good admin token, from the same address, is served.
    let (status, body) = status_of(app.authed(Method::GET, "/api/v1/projects")).await;
    assert_eq!(status, 200, "{body}");
    // Real guesses drain the address: a token never seen is refused before it is looked
    // at, but one this gateway knows to be live (just used) is still served.
    for _ in 0..3 {
        let r = app
            .http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(format!("oat_{}", "g".repeat(43)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let (_, stranger) = app.other_org().await;
    let (status, _) = status_of(
        app.http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&stranger),
    )
    .await;
    assert_eq!(
        status, 429,
        "an unknown token from a guessing address waits"
    );
    let (status, body) = status_of(app.authed(Method::GET, "/api/v1/projects")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_http_methods_add_no_metric_series() {
    let app = TestApp::spawn().await;
    let sent = 50;
    for i in 0..sent {
        let method =
            Method::from_bytes(format!("REVIEW{i:04}{}", "X".repeat(200)).as_bytes()).unwrap();
        let r = app.http.request(method, app.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let metrics = app.text(&app.ops_url("/metrics")).await;
    let distinct: std::collections::HashSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("beckon_http_requests_total{"))
        .filter_map(|l| l.split("method=\"REVIEW").nth(1))
        .filter_map(|rest| rest.get(..4))
        .collect();
    assert!(distinct.is_empty(), "no series per made-up method");
    assert!(
        metrics.contains("method=\"other\""),
        "they are counted as `other`"
    );
    // One request with a 60 KB method: actix accepts it, and the histogram repeats the label
    // on each of its bucket lines.
    let method = Method::from_bytes(format!("LONG{}", "Y".repeat(60_000)).as_bytes()).unwrap();
    let r = app.http.request(method, app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let grown = app.text(&app.ops_url("/metrics")).await;
    assert!(
        grown.len() < metrics.len() + 10_000,
        "one request grew /metrics from {} to {} bytes",
        metrics.len(),
        grown.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_requests_do_not_spend_a_customers_widget_budget() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_WIDGET_RATE_LIMIT_PER_SECOND", "0.01".into()),
            ("BECKON_WIDGET_RATE_LIMIT_BURST", "5".into()),
            ("BECKON_REFUSED_CREDENTIALS_PER_SECOND", "0.01".into()),
            ("BECKON_REFUSED_CREDENTIALS_BURST", "3".into()),
            ("BECKON_TRUSTED_PROXIES", "127.0.0.1".into()),
        ],
        ..Options::default()
    })
    .await;
    let (key, secret) = widget_project(&app).await;
    let url = app.url("/api/v1/widget/invitations?user_ref=u1");
    // The attacker: the public key, a foreign Origin or no hash at all. Nothing it sends is
    // counted as a refused credential.
    for i in 0..5 {
        let (status, body) = status_of(
            app.http
                .get(&url)
                .header("x-forwarded-for", "203.0.113.66, 127.0.0.1")
                .header("x-publishable-key", &key)
                .header(
                    "origin",
                    if i % 2 == 0 {
                        "https://evil.example"
                    } else {
                        "https://app.example.com"
                    },
                ),
        )
        .await;
        assert!(status == 403 || status == 401, "{status} {body}");
        assert_ne!(body["code"], "invalid_user_hash");
    }
    // A real signed-in user, elsewhere, with the right Origin and hash.
    let hash = user_hash(&secret, "u1");
    let (status, body) = status_of(
        app.http
            .get(format!("{url}&user_hash={hash}"))
            .header("x-forwarded-for", "192.0.2.10, 127.0.0.1")
            .header("x-publishable-key", &key)
            .header("origin", "https://app.example.com"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_makes_no_token_that_outlives_it() {
    let app = TestApp::spawn().await;
    let at = (time::OffsetDateTime::now_utc() + time::Duration::seconds(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, contractor) = make_token(
        &app,
        &app.token,
        json!({"name": "contractor", "scopes": ["admin"], "expires_at": at}),
    )
    .await;
    assert_eq!(status, 201);
    let contractor_secret = contractor["secret"].as_str().unwrap().to_owned();
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(365))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, refused) = make_token(
        &app,
        &contractor_secret,
        json!({"name": "forever", "scopes": ["admin"], "expires_at": later}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("invalid_expires_at"))
    );
    let (status, child) = make_token(
        &app,
        &contractor_secret,
        json!({"name": "innocuous", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(
        child["expires_at"], contractor["expires_at"],
        "it expires with its maker"
    );
    let child_secret = child["secret"].as_str().unwrap().to_owned();
    // Revoke the contractor's token and let it expire too.
    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", contractor["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, _) = status_of(
        app.http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&contractor_secret),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = status_of(
        app.http
            .post(app.url("/api/v1/projects"))
            .bearer_auth(&child_secret)
            .json(&json!({"name": "still here"})),
    )
    .await;
    assert_eq!(status, 401, "the child expired with its maker");
}

/// A reseal Job run with a key the services never got (mistyped, or step 2 before step 1)
/// would leave them unable to open anything: it refuses unless some value shows the services
/// seal with that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_refuses_a_key_no_stored_value_is_sealed_under() {
    let mut app = TestApp::spawn().await;
    let (key, secret) = widget_project(&app).await;
    let url = app.url(&format!(
        "/api/v1/widget/invitations?user_ref=u1&user_hash={}",
        user_hash(&secret, "u1")
    ));
    let http = app.http.clone();
    let ask = || {
        http.get(&url)
            .header("x-publishable-key", &key)
            .header("origin", "https://app.example.com")
    };
    assert_eq!(status_of(ask()).await.0, 200);
    // The Job's Secret has a new key the Deployments never got.
    let stray = "c3RyYXkta2V5LXN0cmF5LWtleS1zdHJheS1rZXktMzI=";
    app.set_secret_keys(&[stray, beckon_e2e::TEST_SECRET_KEY]);
    let out = app.cli(&["keys", "reseal"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let (status, body) = status_of(ask()).await;
    assert_eq!(status, 200, "the widget's users are still served: {body}");
    // A dry run still reports, and --force does what it is told.
    assert!(
        app.cli(&["keys", "reseal", "--dry-run"], "")
            .status
            .success()
    );
    assert!(app.cli(&["keys", "reseal", "--force"], "").status.success());
    // Now the services cannot open the widget secret: an operator's problem, said as such.
    let (status, body) = status_of(ask()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("sealing_key_missing")),
        "{body}"
    );
}

/// A leaked admin token is revoked; whatever it minted while it was out must stop too, as a
/// child of an expiring token stops when its maker expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_by_a_revoked_token_stops_with_it() {
    let app = TestApp::spawn().await;
    let (status, leaked) = make_token(
        &app,
        &app.token,
        json!({"name": "laptop", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(status, 201, "{leaked}");
    let leaked_secret = leaked["secret"].as_str().unwrap().to_owned();
    // The thief mints a token of their own with the leaked one.
    let (status, minted) = make_token(
        &app,
        &leaked_secret,
        json!({"name": "innocuous", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["parent_id"], leaked["id"], "{minted}");
    let minted_secret = minted["secret"].as_str().unwrap().to_owned();
    // The owner notices and revokes the leaked token.
    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", leaked["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&leaked_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&minted_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the token minted with the revoked one still works"
    );
}
