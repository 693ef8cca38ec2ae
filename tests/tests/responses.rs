//! Reading responses (API and CSV), revoking an invitation, and erasing a user.

use beckon_e2e::TestApp;
use beckon_e2e::receiver::Receiver;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn invite(app: &TestApp, project: uuid::Uuid, user: &str) -> (String, String) {
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let link = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let details: Value = app
        .authed(
            Method::GET,
            &format!(
                "/api/v1/triggers/{}/workflow",
                body["trigger_id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        link,
        details["surveys"][0]["invitation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

async fn answer(app: &TestApp, link: &str, question: &str, value: Value) {
    assert_eq!(
        beckon_e2e::hooks::put_answer(app, link, question, value)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_listed_filtered_paged_and_exported_as_csv() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(
            project,
            json!({"questions": [
            {"id": "nps", "type": "nps", "title": "NPS", "required": true},
            {"id": "why", "type": "text", "title": "Why?"},
            {"id": "used", "type": "checkbox", "title": "Used", "options": ["A", "B"]}
        ], "trigger": {"events": ["trial_expired"]}}),
        )
        .await;
    let survey_id = survey["id"].as_str().unwrap();
    let (done, _) = invite(&app, project, "done").await;
    answer(&app, &done, "nps", json!(10)).await;
    answer(&app, &done, "why", json!("=1+1, \"quoted\"")).await;
    answer(&app, &done, "used", json!(["B", "A"])).await;
    assert_eq!(
        app.http
            .post(format!("{done}/complete"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (halfway, _) = invite(&app, project, "halfway").await;
    answer(&app, &halfway, "nps", json!(3)).await;
    invite(&app, project, "never-opened").await;

    let base = format!("/api/v1/projects/{project}/surveys/{survey_id}/responses");
    let all: Value = app
        .authed(Method::GET, &base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["submitted_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["halfway", "done"],
        "newest first; an invitation never answered has no response"
    );
    let completed: Value = app
        .authed(Method::GET, &format!("{base}?status=completed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(completed["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        completed["data"][0]["answers"],
        json!({"nps": 10, "why": "=1+1, \"quoted\"", "used": ["A", "B"]})
    );
    assert_eq!(completed["data"][0]["survey_version"], 1);
    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let none: Value = app
        .authed(Method::GET, &format!("{base}?since={future}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["data"], json!([]));

    let page1: Value = app
        .authed(Method::GET, &format!("{base}?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page1["data"][0]["submitted_by"], "halfway");
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: Value = app
        .authed(Method::GET, &format!("{base}?limit=1&cursor={cursor}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["data"][0]["submitted_by"], "done");
    assert_eq!(page2["has_more"], false);
    assert_eq!(page2["next_cursor"], Value::Null);
    let r = app
        .authed(Method::GET, &format!("{base}?status=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = app
        .authed(Method::GET, &format!("{base}.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "response_id,submitted_by,survey_version,status,created_at,completed_at,nps,why,used"
    );
    assert_eq!(lines.len(), 3);
    let done_line = lines.iter().find(|l| l.contains(",done,")).unwrap();
    assert!(
        done_line.ends_with(",10,\"'=1+1, \"\"quoted\"\"\",A; B"),
        "{done_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_invitation_answers_410() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (link, invitation) = invite(&app, project, "u1").await;
    let path = format!("/api/v1/projects/{project}/invitations/{invitation}/revoke");
    let r = app.authed(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let again: Value = app
        .authed(Method::POST, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["revoked_at"], again["revoked_at"],
        "revoking twice keeps the first time"
    );
    let r = app
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invitation_revoked");
    let r = app
        .authed(
            Method::POST,
            &format!(
                "/api/v1/projects/{project}/invitations/{}/revoke",
                uuid::Uuid::now_v7()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, other) = app.other_org().await;
    let r = app
        .http
        .post(app.url(&path))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_user_deletes_everything_held_about_them_and_nothing_else() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired", "trial_ending_soon"]}, "cooldown_seconds": 3600})).await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/erase")}))
        .await;
    for user in ["forget-me", "keep-me"] {
        let (link, _) = invite(&app, project, user).await;
        // Every kind of webhook that names a user: invitation.created, then
        // response.displayed, response.answered and response.ended.
        for stage in ["display", "answer", "complete"] {
            if stage == "answer" {
                answer(&app, &link, "nps", json!(8)).await;
                continue;
            }
            let r = app
                .http
                .post(format!("{link}/{stage}"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{stage}: {}", r.status());
        }
        let (status, _) = app
            .upsert_user(json!({"project_id": project, "user_ref": user, "email": format!("{user}@example.com"),
                                "trial_ends_at": (time::OffsetDateTime::now_utc() + time::Duration::days(10)).format(&time::format_description::well_known::Rfc3339).unwrap()}))
            .await;
        assert_eq!(status, 200);
    }
    // Both users' webhooks were kept as messages, each naming its user in `user_ref`, which
    // is how erasure finds them: only a ping names nobody.
    receiver
        .wait_for("/ok/erase", 8, Duration::from_secs(30))
        .await;
    let kinds = |user: &str| {
        format!("SELECT DISTINCT event_type FROM webhook_messages WHERE user_ref = '{user}'")
    };
    assert_eq!(app.execute(&kinds("forget-me")).await, 4);
    assert_eq!(
        app.execute(
            "SELECT 1 FROM webhook_messages WHERE user_ref IS NULL AND event_type <> 'webhook.ping'"
        )
        .await,
        0,
        "every message about a user names them"
    );

    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/users/forget-me"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(erased["erased"]["invitations"], 1);
    assert_eq!(erased["erased"]["responses"], 1);
    assert_eq!(
        erased["erased"]["triggers"], 2,
        "the dispatch and the scheduled reminder"
    );
    assert_eq!(erased["erased"]["user"], true);
    assert_eq!(erased["erased"]["webhook_messages"], 4);
    assert_eq!(app.execute(&kinds("keep-me")).await, 4);

    for (table, column) in [
        ("invitations", "user_ref"),
        ("responses", "submitted_by"),
        ("triggers", "user_ref"),
        ("users", "user_ref"),
        ("cooldowns", "user_ref"),
        ("webhook_messages", "user_ref"),
    ] {
        assert_eq!(
            app.execute(&format!(
                "SELECT 1 FROM {table} WHERE {column} = 'forget-me'"
            ))
            .await,
            0,
            "{table}"
        );
        assert!(
            app.execute(&format!("SELECT 1 FROM {table} WHERE {column} = 'keep-me'"))
                .await
                >= 1,
            "{table} kept the other user"
        );
    }
}
