//! The in-app widget API: a publishable key, a user hash signed with the project's widget
//! secret and an allowed origin list a user's pending invitations; nothing less does.

use beckon_domain::secret::user_hash;
use beckon_e2e::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

/// Issues (or rotates) the project's widget secret.
async fn widget_secret(app: &TestApp, project_path: &str) -> Value {
    let r = app
        .authed(Method::POST, &format!("{project_path}/widget-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_lists_a_users_pending_invitations_to_its_allowed_origins_only() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let project_path = format!("/api/v1/projects/{project}");
    let r = app
        .authed(Method::PATCH, &project_path)
        .json(&json!({"allowed_origins": ["ftp://nope"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .authed(Method::PATCH, &project_path)
        .json(&json!({"allowed_origins": ["https://app.example.com"]}))
        .send()
        .await
        .unwrap();
    let patched: Value = r.json().await.unwrap();
    assert_eq!(
        patched["allowed_origins"],
        json!(["https://app.example.com"])
    );
    let issued: Value = app
        .authed(Method::POST, &format!("{project_path}/publishable-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = issued["publishable_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pk_"));
    assert_eq!(issued["widget_secret_issued"], false);
    let secret = widget_secret(&app, &project_path).await;
    let secret = secret["widget_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wsk_"));

    let answered = app
        .create_survey(
            project,
            json!({"name": "Answered", "trigger": {"events": ["trial_expired"]}}),
        )
        .await;
    let pending = app
        .create_survey(
            project,
            json!({"name": "Pending", "trigger": {"events": ["trial_expired"]}}),
        )
        .await;
    let (_, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    let links: Vec<(String, String)> = body["created_invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["survey_id"].as_str().unwrap().to_owned(),
                i["magic_link_url"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let answered_link = &links
        .iter()
        .find(|(s, _)| s == answered["id"].as_str().unwrap())
        .unwrap()
        .1;
    let pending_link = &links
        .iter()
        .find(|(s, _)| s == pending["id"].as_str().unwrap())
        .unwrap()
        .1;
    assert_eq!(
        app.http
            .put(format!("{answered_link}/answers/nps"))
            .json(&json!({"value": 7}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .post(format!("{answered_link}/complete"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.dispatch(
        json!({"project_id": project, "user_ref": "someone-else", "event": "trial_expired"}),
    )
    .await;

    let hash = user_hash(&secret, "u1");
    let url = app.url(&format!(
        "/api/v1/widget/invitations?user_ref=u1&user_hash={hash}"
    ));
    let r = app
        .http
        .get(&url)
        .header("x-publishable-key", &key)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let list: Value = r.json().await.unwrap();
    let data = list["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "only the unanswered invitation of this user: {list}"
    );
    assert_eq!(data[0]["survey"]["name"], "Pending");
    assert_eq!(
        data[0]["magic_link_url"].as_str().unwrap(),
        pending_link,
        "the same link the dispatch gave"
    );

    // The key may come as a query parameter (no preflight needed).
    let r = app
        .http
        .get(format!("{url}&key={key}"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Other origins are refused, without CORS headers.
    let r = app
        .http
        .get(&url)
        .header("x-publishable-key", &key)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "origin_not_allowed");
    // The preflight lets the browser send the key header.
    let r = app
        .http
        .request(Method::OPTIONS, &url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("X-Publishable-Key, X-User-Hash")
    );
    // A missing, wrong or replaced key is 401.
    assert_eq!(
        app.http
            .get(&url)
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.http
            .get(&url)
            .header("x-publishable-key", "pk_wrong")
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    app.authed(Method::POST, &format!("{project_path}/publishable-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.http
            .get(&url)
            .header("x-publishable-key", &key)
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// What a stranger holding the public key can try: no hash, a made-up hash, another user's
/// hash, another project's secret, no Origin. Every one is refused and shows no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_users_hash_the_widget_reveals_nothing() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let project_path = format!("/api/v1/projects/{project}");
    let issued: Value = app
        .authed(Method::POST, &format!("{project_path}/publishable-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = issued["publishable_key"].as_str().unwrap().to_owned();
    app.create_survey(
        project,
        json!({"name": "S", "trigger": {"events": ["trial_expired"]}}),
    )
    .await;
    for user in ["alice", "bob"] {
        app.dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
            .await;
    }
    let ask = |query: String, origin: Option<&'static str>| {
        let mut request = app
            .http
            .get(app.url(&format!("/api/v1/widget/invitations?{query}")))
            .header("x-publishable-key", &key);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(
                status == 200 || !body.contains("/surveys/"),
                "a refusal shows no link: {body}"
            );
            let body: Value = serde_json::from_str(&body).unwrap();
            (status, body)
        }
    };

    // Until the project has a widget secret the widget answers nobody.
    let (status, body) = ask("user_ref=alice".into(), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("widget_secret_not_issued"))
    );
    let first = widget_secret(&app, &project_path).await;
    assert!(first["previous_secret_expires_at"].is_null());
    let first = first["widget_secret"].as_str().unwrap().to_owned();

    // The documented backend snippet computes the same hash.
    let snippet = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf '%s' \"$USER_REF\" | openssl dgst -sha256 -hmac \"$WIDGET_SECRET\" | sed 's/^.* //'")
        .env("USER_REF", "alice")
        .env("WIDGET_SECRET", &first)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&snippet.stdout).trim(),
        user_hash(&first, "alice")
    );

    let (status, body) = ask("user_ref=alice".into(), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("user_hash_required"))
    );
    let made_up = "0".repeat(64);
    let bob_hash = user_hash(&first, "bob");
    let other_project = app.create_project().await;
    let foreign: Value = widget_secret(&app, &format!("/api/v1/projects/{other_project}")).await;
    let foreign_hash = user_hash(foreign["widget_secret"].as_str().unwrap(), "alice");
    for hash in [
        made_up.as_str(),
        "zz",
        bob_hash.as_str(),
        foreign_hash.as_str(),
    ] {
        let (status, body) = ask(format!("user_ref=alice&user_hash={hash}"), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_user_hash")),
            "{hash}"
        );
    }
    // With no origins listed, a native app (no Origin) with the right hash is answered.
    let alice = user_hash(&first, "alice");
    let (status, body) = ask(format!("user_ref=alice&user_hash={alice}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    // Once origins are listed, a request without an Origin could be any server: refused.
    app.authed(Method::PATCH, &project_path)
        .json(&json!({"allowed_origins": ["https://app.example.com"]}))
        .send()
        .await
        .unwrap();
    let (status, body) = ask(format!("user_ref=alice&user_hash={alice}"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, _) = ask(
        format!("user_ref=alice&user_hash={alice}"),
        Some("https://app.example.com"),
    )
    .await;
    assert_eq!(status, 200);

    // A rotation: the new secret verifies, and the old one for a day beside it.
    let second = widget_secret(&app, &project_path).await;
    assert!(second["previous_secret_expires_at"].is_string());
    let second = second["widget_secret"].as_str().unwrap().to_owned();
    for secret in [&first, &second] {
        let hash = user_hash(secret, "alice");
        let (status, _) = ask(
            format!("user_ref=alice&user_hash={hash}"),
            Some("https://app.example.com"),
        )
        .await;
        assert_eq!(status, 200);
    }
    // A second rotation ends the first secret at once.
    widget_secret(&app, &project_path).await;
    let (status, _) = ask(
        format!("user_ref=alice&user_hash={alice}"),
        Some("https://app.example.com"),
    )
    .await;
    assert_eq!(status, 401);
}

/// A widget secret sealed under a key the deployment no longer has cannot verify anyone: the
/// widget says so (503 `sealing_key_missing`) instead of refusing every user's right hash as
/// if it were a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_secret_no_key_opens_is_a_503_not_a_refused_hash() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let (key, secret) = app.widget_keys(project).await;
    let hash = user_hash(&secret, "alice");
    let ask = || async {
        let r = app
            .http
            .get(app.url(&format!(
                "/api/v1/widget/invitations?user_ref=alice&user_hash={hash}"
            )))
            .header("x-publishable-key", &key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(ask().await.0, 200);
    // Sealed under a key id no configured key has.
    app.execute(&format!(
        "UPDATE projects SET widget_secret_sealed = '\\x0102030405060708090a0b0c0d0e0f'::bytea \
         WHERE id = '{project}'"
    ))
    .await;
    let (status, body) = ask().await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("sealing_key_missing")),
        "{body}"
    );
}
