//! POST /api/v1/lifecycle/dispatch, row by row of the contract, through the real services.

use beckon_e2e::broker::Broker;
use beckon_e2e::{TestApp, assert_valid_envelope};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn survey_id(survey: &Value) -> String {
    survey["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_creates_one_invitation_per_matching_live_survey() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let trigger = json!({"events": ["subscription_cancelled"]});
    let a = app
        .create_survey(project, json!({"trigger": trigger}))
        .await;
    let b = app
        .create_survey(
            project,
            json!({"trigger": {"events": ["trial_expired", "subscription_cancelled"]}}),
        )
        .await;
    app.create_survey(project, json!({"trigger": trigger, "status": "paused"}))
        .await;
    app.create_survey(project, json!({"trigger": trigger, "status": "draft"}))
        .await;
    app.create_survey(project, json!({"trigger": trigger, "status": "archived"}))
        .await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;

    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;

    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "user_abc123", "event": "subscription_cancelled"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched_surveys"], 2);
    assert_eq!(body["created_count"], 2);
    assert_eq!(body["suppressed_by_cooldown_count"], 0);
    assert_eq!(body["suppressed_by_sample_count"], 0);
    assert_eq!(body["errored_count"], 0);
    let invitations = body["created_invitations"].as_array().unwrap();
    let mut surveys: Vec<String> = invitations
        .iter()
        .map(|i| i["survey_id"].as_str().unwrap().to_owned())
        .collect();
    surveys.sort();
    let mut expected = vec![survey_id(&a), survey_id(&b)];
    expected.sort();
    assert_eq!(surveys, expected);

    for invitation in invitations {
        assert_eq!(invitation["user_ref"], "user_abc123");
        let link = invitation["magic_link_url"].as_str().unwrap();
        let token = link
            .strip_prefix(&format!("{}/surveys/", app.base_url))
            .expect("the public base URL");
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let expires = time::OffsetDateTime::parse(
            invitation["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
        assert!(
            (29..=30).contains(&days),
            "default lifetime is 30 days, got {days}"
        );

        let opened: Value = app
            .http
            .get(link)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(opened["survey"]["id"], invitation["survey_id"]);
        assert_eq!(opened["survey"]["version"], 1);
        assert_eq!(opened["survey"]["questions"][0]["type"], "nps");
    }

    // Tokens are stored only as hashes.
    let stored = app
        .execute(&format!(
            "SELECT 1 FROM invitations WHERE token_hash = convert_to('{}', 'UTF8')",
            invitations[0]["magic_link_url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
        ))
        .await;
    assert_eq!(stored, 0);

    // Every envelope the pipeline published validates against its committed schema.
    let mut kinds = Vec::new();
    while let Some(bytes) = tap.next(Duration::from_secs(2)).await {
        let envelope: Value = serde_json::from_slice(&bytes).unwrap();
        assert_valid_envelope(&envelope);
        kinds.push(envelope["type"].as_str().unwrap().to_owned());
        if kinds.len() == 2 {
            break;
        }
    }
    assert_eq!(kinds, ["event.received", "event.matched"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_no_live_survey_subscribes_to_answers_200_with_zero_counts() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "onboarding_completed"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched_surveys"], 0);
    assert_eq!(body["created_count"], 0);
    assert_eq!(body["created_invitations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_events_match_by_exact_equality() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "payment_failed"}]}}),
    )
    .await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;

    let fire = |event: Value| {
        app.dispatch(json!({"project_id": project, "user_ref": "u1", "event": event}))
    };
    let (status, body) = fire(json!({"custom": "payment_failed"})).await;
    assert_eq!((status, body["created_count"].clone()), (200, json!(1)));
    let (_, body) = fire(json!({"custom": "Payment_Failed"})).await;
    assert_eq!(body["matched_surveys"], 0, "matching is case-sensitive");
    let (_, body) = fire(json!({"custom": "trial_expired"})).await;
    assert_eq!(
        body["matched_surveys"], 0,
        "a custom event is not the predefined one of the same name"
    );
    let (_, body) = fire(json!("trial_expired")).await;
    assert_eq!(body["matched_surveys"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_401_and_other_orgs_projects_403() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let body = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});
    let url = app.url("/api/v1/lifecycle/dispatch");

    let r = app.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (
            e["statusCode"].clone(),
            e["error"].clone(),
            e["code"].clone()
        ),
        (json!(401), json!("Unauthorized"), json!("missing_token"))
    );

    for header in [
        ("authorization", "Bearer oat_wrong".to_owned()),
        ("x-api-key", format!("oat_{}", "A".repeat(43))),
    ] {
        let r = app
            .http
            .post(&url)
            .header(header.0, header.1)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "invalid_token");
    }

    // X-API-Key works as well as Bearer.
    let r = app
        .http
        .post(&url)
        .header("x-api-key", &app.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Another organization's token sees the project as forbidden, never its data.
    let (_, other_token) = app.other_org().await;
    let r = app
        .http
        .post(&url)
        .bearer_auth(&other_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "project_forbidden");
    let r = app
        .http
        .get(app.url(&format!("/api/v1/projects/{project}/surveys")))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let listed: Value = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_project_ids_are_404() {
    let app = TestApp::spawn().await;
    for id in [
        uuid::Uuid::now_v7().to_string(),
        "507f1f77bcf86cd799439011".to_owned(),
    ] {
        let (status, body) = app
            .dispatch(json!({"project_id": id, "user_ref": "u1", "event": "trial_expired"}))
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "project_not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_are_400_with_a_stable_code() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"project_id": project, "user_ref": "", "event": "trial_expired"}),
            "user_ref_empty",
        ),
        (
            json!({"project_id": project, "user_ref": "   ", "event": "trial_expired"}),
            "user_ref_empty",
        ),
        (
            json!({"project_id": project, "event": "trial_expired"}),
            "user_ref_required",
        ),
        (
            json!({"project_id": project, "user_ref": "u1", "event": "trial_exploded"}),
            "unknown_event",
        ),
        (
            json!({"project_id": project, "user_ref": "u1", "event": {"other": "x"}}),
            "unknown_event",
        ),
        (
            json!({"project_id": project, "user_ref": "u1", "event": 7}),
            "unknown_event",
        ),
        (
            json!({"project_id": project, "user_ref": "u1", "event": {"custom": ""}}),
            "invalid_event_name",
        ),
        (
            json!({"project_id": project, "user_ref": "u1"}),
            "event_required",
        ),
        (
            json!({"user_ref": "u1", "event": "trial_expired"}),
            "project_id_required",
        ),
        (json!([1, 2]), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, error) = app.dispatch(body.clone()).await;
        assert_eq!(
            (status, error["code"].as_str().unwrap_or("")),
            (400, code),
            "{body} → {error}"
        );
        assert_eq!(error["statusCode"], 400);
        assert_eq!(error["error"], "Bad Request");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = app
        .authed(Method::POST, "/api/v1/lifecycle/dispatch")
        .header("content-type", "application/json")
        .body("{\"project_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invalid_json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_suppresses_a_second_invitation_for_the_same_user_and_survey() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 3600}),
    )
    .await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 0}),
    )
    .await;
    let fire = |user: &'static str| {
        app.dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
    };

    let (_, first) = fire("u1").await;
    assert_eq!(
        (
            first["created_count"].clone(),
            first["suppressed_by_cooldown_count"].clone()
        ),
        (json!(2), json!(0))
    );
    let (_, second) = fire("u1").await;
    assert_eq!(second["matched_surveys"], 2);
    assert_eq!(
        (
            second["created_count"].clone(),
            second["suppressed_by_cooldown_count"].clone()
        ),
        (json!(1), json!(1))
    );
    let (_, other_user) = fire("u2").await;
    assert_eq!(other_user["created_count"], 2, "cooldown is per user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rates_zero_and_one_are_exact() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "sample_rate": 0.0}),
    )
    .await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "sample_rate": 1.0}),
    )
    .await;
    for i in 0..20 {
        let (_, body) = app.dispatch(json!({"project_id": project, "user_ref": format!("u{i}"), "event": "trial_expired"})).await;
        assert_eq!(body["matched_surveys"], 2);
        assert_eq!(body["created_count"], 1);
        assert_eq!(body["suppressed_by_sample_count"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magic_links_answer_404_when_unknown_and_410_when_expired_or_revoked() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let mut links = Vec::new();
    for user in ["u1", "u2"] {
        let (_, body) = app
            .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
            .await;
        links.push(
            body["created_invitations"][0]["magic_link_url"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.execute(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE user_ref = 'u1'",
    )
    .await;
    app.execute("UPDATE invitations SET revoked_at = now() WHERE user_ref = 'u2'")
        .await;
    for (link, code) in [
        (&links[0], "invitation_expired"),
        (&links[1], "invitation_revoked"),
    ] {
        let r = app
            .http
            .get(link)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], code);
    }
    for token in ["A".repeat(43), "short".to_owned()] {
        let r = app
            .http
            .get(app.url(&format!("/surveys/{token}")))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "invitation_not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatch_is_recorded_as_a_trigger_with_its_outcome_per_survey() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "sample_rate": 0.0}),
    )
    .await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (_, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    let trigger = body["trigger_id"].as_str().unwrap();
    let completed = app
        .execute(&format!(
            "SELECT 1 FROM triggers WHERE id = '{trigger}' AND status = 'completed' AND trigger_type = 'dispatch' \
             AND matched_count = 2 AND created_count = 1 AND sample_count = 1 AND completed_at IS NOT NULL"
        ))
        .await;
    assert_eq!(completed, 1);
    let outcomes = app
        .execute(&format!(
            "SELECT 1 FROM trigger_surveys WHERE trigger_id = '{trigger}' AND \
             ((outcome = 'created' AND invitation_id IS NOT NULL) OR (outcome = 'sample' AND invitation_id IS NULL))"
        ))
        .await;
    assert_eq!(outcomes, 2);
}
