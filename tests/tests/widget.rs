//! The in-app widget API: a publishable key with allowed origins lists a user's pending
//! invitations.

use beckon_e2e::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

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

    let url = app.url("/api/v1/widget/invitations?user_ref=u1");
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
            .contains("X-Publishable-Key")
    );
    // A missing, wrong or replaced key is 401.
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        app.http
            .get(&url)
            .header("x-publishable-key", "pk_wrong")
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
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
