//! The respond flow a magic link opens: the page, displayed, answers saved as given (and
//! resumed), validation, finishing, and the response webhooks with their sequence numbers.

use beckon_e2e::TestApp;
use beckon_e2e::hooks::{assert_valid_beckon_webhook, post, put_answer};
use beckon_e2e::receiver::{Receiver, verify_with_standardwebhooks};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn every_kind() -> Value {
    json!([
        {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true},
        {"id": "rating", "type": "rating", "title": "Rate the onboarding", "required": true},
        {"id": "reason", "type": "mcq", "title": "Main reason?", "options": ["Price", "Bugs", "Other"], "required": true},
        {"id": "used", "type": "checkbox", "title": "What did you use?", "options": ["Reports", "API", "Widget"]},
        {"id": "more", "type": "text", "title": "Anything else?"}
    ])
}

async fn link_for(app: &TestApp, project: uuid::Uuid, user: &str) -> String {
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn as_json(app: &TestApp, link: &str) -> (u16, Value) {
    let r = app
        .http
        .get(link)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_respondent_answers_every_kind_leaves_resumes_finishes_and_each_stage_reaches_the_customer()
 {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"name": "Exit survey", "questions": every_kind(), "trigger": {"events": ["trial_expired"]}})).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/responses"), "event_types": ["response.displayed", "response.answered", "response.ended"]}))
        .await;
    let secret = sub["secret"].as_str().unwrap().to_owned();
    let link = link_for(&app, project, "respondent").await;

    // The page is real HTML with every question; opening it (as a mail scanner would) counts nothing.
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for text in [
        "Exit survey",
        "How likely are you to recommend us?",
        "name=\"nps\" value=\"10\"",
        "value=\"Bugs\"",
        "<textarea",
    ] {
        assert!(html.contains(text), "the page lacks {text}");
    }
    assert_eq!(
        app.execute("SELECT 1 FROM responses WHERE displayed_at IS NOT NULL")
            .await,
        0
    );

    // The page reports itself shown; only the first report counts.
    for _ in 0..2 {
        let r = app
            .http
            .post(format!("{link}/display"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let (_, opened) = as_json(&app, &link).await;
    assert_eq!(opened["response"]["status"], "in_progress");

    // Answers are validated server-side.
    let (s, e) = put_answer(&app, &link, "nps", json!(11)).await;
    assert_eq!((s, e["code"].as_str().unwrap()), (400, "invalid_answer"));
    let (s, e) = put_answer(&app, &link, "reason", json!("Weather")).await;
    assert_eq!((s, e["code"].as_str().unwrap()), (400, "invalid_answer"));
    let (s, e) = put_answer(&app, &link, "nope", json!(1)).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (404, "question_not_found")
    );

    // Some answers, then the person leaves...
    assert_eq!(put_answer(&app, &link, "nps", json!(9)).await.0, 200);
    assert_eq!(
        put_answer(&app, &link, "used", json!(["Widget", "API"]))
            .await
            .1["value"],
        json!(["API", "Widget"])
    );
    let (s, e) = post(&app, format!("{link}/complete")).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (400, "required_questions_missing")
    );
    assert_eq!(e["missing"], json!(["rating", "reason"]));

    // ...and comes back with the same link to find them in place.
    let html = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"nps\" value=\"9\" checked"));
    assert!(html.contains("value=\"API\" checked"));
    let (_, resumed) = as_json(&app, &link).await;
    assert_eq!(resumed["response"]["answers"]["nps"], 9);

    assert_eq!(put_answer(&app, &link, "rating", json!(4)).await.0, 200);
    assert_eq!(
        put_answer(&app, &link, "reason", json!("Price")).await.0,
        200
    );
    assert_eq!(
        put_answer(&app, &link, "more", json!("  Great support  "))
            .await
            .1["value"],
        "Great support"
    );
    let (s, done) = post(&app, format!("{link}/complete")).await;
    assert_eq!((s, done["status"].as_str().unwrap()), (200, "completed"));
    assert_eq!(
        post(&app, format!("{link}/complete")).await.0,
        200,
        "finishing twice is harmless"
    );
    let (s, e) = put_answer(&app, &link, "nps", json!(3)).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (409, "response_completed")
    );
    let thanks = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(thanks.contains("already answered"));

    let stored = app.execute("SELECT 1 FROM responses WHERE submitted_by = 'respondent' AND status = 'completed' AND survey_version = 1").await;
    assert_eq!(stored, 1);

    // displayed once, answered once per saved answer (5), ended once: in order, each signed.
    let hooks = receiver.wait_for("/ok/responses", 7, WAIT).await;
    let mut bodies: Vec<Value> = hooks.iter().map(|h| h.json()).collect();
    for h in &hooks {
        verify_with_standardwebhooks(&secret, h).expect("a valid signature");
    }
    bodies.sort_by_key(|b| b["data"]["response"]["sequence"].as_i64());
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.displayed",
            "response.answered",
            "response.answered",
            "response.answered",
            "response.answered",
            "response.answered",
            "response.ended"
        ]
    );
    let sequences: Vec<i64> = bodies
        .iter()
        .map(|b| b["data"]["response"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=7).collect::<Vec<_>>());
    assert_eq!(bodies[1]["data"]["question"]["question_id"], "nps");
    assert_eq!(bodies[1]["data"]["question"]["question_type"], "nps");
    let ended = &bodies[6]["data"];
    // With when the version shown was saved.
    assert_eq!(
        ended["survey"],
        json!({"id": ended["survey"]["id"], "name": "Exit survey", "version": 1,
               "version_created_at": ended["survey"]["version_created_at"]})
    );
    let saved = time::OffsetDateTime::parse(
        ended["survey"]["version_created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(saved <= time::OffsetDateTime::now_utc());
    assert_eq!(ended["user"]["user_ref"], "respondent");
    assert_eq!(ended["trigger"]["event"], "trial_expired");
    assert_eq!(ended["response"]["status"], "completed");
    let answers: Vec<(&str, &str)> = ended["response"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["question_id"].as_str().unwrap(),
                a["title"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(answers.len(), 5);
    assert!(answers.contains(&("more", "Anything else?")));
    for body in &bodies {
        assert_valid_beckon_webhook(body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_keeps_the_survey_version_it_was_created_with() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(project, json!({"questions": [{"id": "q1", "type": "rating", "title": "Version one?", "required": true}], "trigger": {"events": ["trial_expired"]}}))
        .await;
    let old_link = link_for(&app, project, "early").await;
    let r = app
        .authed(Method::PATCH, &format!("/api/v1/projects/{project}/surveys/{}", survey["id"].as_str().unwrap()))
        .json(&json!({"questions": [{"id": "q2", "type": "text", "title": "Version two?", "required": true}]}))
        .send()
        .await
        .unwrap();
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["version"], 2);
    let new_link = link_for(&app, project, "late").await;

    let (_, old) = as_json(&app, &old_link).await;
    assert_eq!(
        (
            old["survey"]["version"].clone(),
            old["survey"]["questions"][0]["id"].clone()
        ),
        (json!(1), json!("q1"))
    );
    let (_, new) = as_json(&app, &new_link).await;
    assert_eq!(
        (
            new["survey"]["version"].clone(),
            new["survey"]["questions"][0]["id"].clone()
        ),
        (json!(2), json!("q2"))
    );
    // Answers are validated against the invitation's version.
    assert_eq!(put_answer(&app, &old_link, "q1", json!(5)).await.0, 200);
    assert_eq!(put_answer(&app, &old_link, "q2", json!("x")).await.0, 404);
    assert_eq!(post(&app, format!("{old_link}/complete")).await.0, 200);
    assert_eq!(
        app.execute("SELECT 1 FROM responses WHERE submitted_by = 'early' AND survey_version = 1")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_links_show_friendly_pages_with_their_status() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let expired = link_for(&app, project, "u-expired").await;
    let revoked = link_for(&app, project, "u-revoked").await;
    app.execute("UPDATE invitations SET expires_at = now() - interval '1 second' WHERE user_ref = 'u-expired'").await;
    app.execute("UPDATE invitations SET revoked_at = now() WHERE user_ref = 'u-revoked'")
        .await;
    let unknown = app.url(&format!("/surveys/{}", "A".repeat(43)));
    for (link, status, text) in [
        (&expired, 410, "expired"),
        (&revoked, 410, "withdrawn"),
        (&unknown, 404, "not valid"),
    ] {
        let r = app.http.get(link.as_str()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let page = r.text().await.unwrap();
        assert!(page.contains(text));
        // The respondent has the request's id to quote.
        assert!(page.contains(&format!("Reference: {request_id}")), "{page}");
        let (s, _) = put_answer(&app, link, "nps", json!(5)).await;
        assert_eq!(s, status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magic_link_token_never_appears_in_any_services_log() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"questions": [{"id": "q1", "type": "rating", "title": "How?", "required": true}], "trigger": {"events": ["trial_expired"]}}))
        .await;
    let link = link_for(&app, project, "quiet").await;
    let token = link.rsplit('/').next().expect("a token").to_owned();
    let page = app.http.get(&link).send().await.expect("the page");
    assert_eq!(page.status(), 200);
    assert_eq!(as_json(&app, &link).await.0, 200);
    assert_eq!(put_answer(&app, &link, "q1", json!(4)).await.0, 200);
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);

    for entry in std::fs::read_dir(app.log_dir()).expect("the logs") {
        let path = entry.expect("a log").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            !text.contains(&token),
            "{} holds the magic-link token",
            path.display()
        );
    }
    // The requests were logged, by their route.
    let gateway: String = std::fs::read_dir(app.log_dir())
        .expect("the logs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ingest-api"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(gateway.contains("GET /surveys/{token}"), "{gateway}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_saved_again_unchanged_announces_nothing() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"questions": every_kind(), "trigger": {"events": ["trial_expired"]}}),
    )
    .await;
    let link = link_for(&app, project, "repeater").await;
    assert_eq!(post(&app, format!("{link}/display")).await.0, 204);

    // Each save answers 200 with the stored value, but only a change is news: the same score
    // again, and the same options in another order (stored in the question's order), are not.
    for (question, value) in [
        ("nps", json!(9)),
        ("nps", json!(9)),
        ("used", json!(["Widget", "API"])),
        ("used", json!(["API", "Widget"])),
        ("nps", json!(7)),
    ] {
        let (status, body) = put_answer(&app, &link, question, value).await;
        assert_eq!(status, 200, "{body}");
    }
    // Announced: displayed, nps 9, used, nps 7 — each stage takes the next sequence number.
    assert_eq!(
        app.execute("SELECT 1 FROM responses WHERE submitted_by = 'repeater' AND sequence = 4")
            .await,
        1
    );
    let (_, progress) = as_json(&app, &link).await;
    assert_eq!(progress["response"]["answers"]["nps"], 7);
}

/// The headers every served page carries: its own policy, no sniffing, no framing, and no
/// magic link leaking through `Referer`.
fn assert_page_headers(r: &reqwest::Response, what: &str) {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("cache-control"), "no-store", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_served_under_a_content_security_policy() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"questions": [{"id": "q1", "type": "rating", "title": "How?", "required": true}], "trigger": {"events": ["trial_expired"]}}))
        .await;
    let link = link_for(&app, project, "u-open").await;
    let revoked = link_for(&app, project, "u-revoked").await;
    app.execute("UPDATE invitations SET revoked_at = now() WHERE user_ref = 'u-revoked'")
        .await;
    let unknown = app.url(&format!("/surveys/{}", "A".repeat(43)));

    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_page_headers(&page, "the survey");
    // The script is the same text on every page (the token is in an attribute), so its hash
    // in the policy is the hash of what the page carries.
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>const TOKEN"), "{html}");
    for (url, status) in [(&revoked, 410), (&unknown, 404)] {
        let r = app.http.get(url.as_str()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_page_headers(&r, url);
    }
    assert_eq!(put_answer(&app, &link, "q1", json!(4)).await.0, 200);
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);
    let thanks = app.http.get(&link).send().await.unwrap();
    assert_page_headers(&thanks, "the already-answered page");
    assert!(thanks.text().await.unwrap().contains("already answered"));
}

/// What the page's script does: `"/surveys/" + token + "/answers/" + encodeURIComponent(id)`.
fn encode_uri_component(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A survey whose question ids the API accepts can be answered from its own respond page: the
/// path the page's script builds for each id reaches that question. Ids a browser would
/// resolve away as path segments (`.`, `..`) are refused when the survey is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_question_id_can_be_answered_from_the_page() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    for dots in [".", "..", "..."] {
        let r = app
            .authed(Method::POST, &format!("/api/v1/projects/{project}/surveys"))
            .json(
                &json!({"name": "S", "questions": [{"id": dots, "type": "text", "title": "Why?"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{dots}");
    }
    let ids = ["a/b", "a?b", "a#b", "100%", "x y", "a.b", ".hidden"];
    let questions: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "type": "text", "title": "Why?"}))
        .collect();
    app.create_survey(
        project,
        json!({"questions": questions, "trigger": {"events": ["trial_expired"]}}),
    )
    .await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let link = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = link.rsplit('/').next().unwrap().to_owned();
    let mut failed = Vec::new();
    for id in ids {
        let path = format!("/surveys/{token}/answers/{}", encode_uri_component(id));
        let r = app
            .http
            .put(app.url(&path))
            .header("accept", "application/json")
            .json(&json!({"value": "because"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            let text = r.text().await.unwrap_or_default();
            failed.push(format!("{id:?} -> {path} -> {status} {text}"));
        }
    }
    assert!(
        failed.is_empty(),
        "questions the survey accepted but its page cannot save:\n{}",
        failed.join("\n")
    );
}

/// The respondent's client reports where and in which language the survey is shown; the
/// browser it uses is read from its request. The webhooks carry them, and how and how fast the
/// response ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_client_reports_and_how_the_response_ended_reach_the_webhooks() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/r"), "event_types": ["response.displayed", "response.ended"]}),
    )
    .await;
    let link = link_for(&app, project, "u1").await;
    let r = app
        .http
        .post(format!("{link}/display"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64)\t Firefox/140.0",
        )
        .json(&json!({"channel": "hosted-page", "locale": "fr-CA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(put_answer(&app, &link, "nps", json!(7)).await.0, 200);
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);
    let got = receiver.wait_for("/ok/r", 2, WAIT).await;
    let shown = &got[0].json()["data"]["response"];
    assert_eq!(shown["channel"], "hosted-page", "{shown}");
    assert_eq!(shown["locale"], "fr-CA");
    // Control characters are dropped.
    assert_eq!(
        shown["user_agent"],
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
    );
    assert!(
        shown["completion"].is_null() && shown["ended_at"].is_null(),
        "{shown}"
    );
    let ended = &got[1].json()["data"]["response"];
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["completion"], "fully_completed");
    assert_eq!(ended["locale"], "fr-CA");
    assert_eq!(ended["started_at"], shown["started_at"]);
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert!(ended["time_to_complete_seconds"].as_i64().unwrap() >= 0);

    // Reported again, nothing changes; a client that names no channel is the widget.
    let link = link_for(&app, project, "u2").await;
    assert_eq!(post(&app, format!("{link}/display")).await.0, 204);
    let got = receiver.wait_for("/ok/r", 3, WAIT).await;
    let shown = &got[2].json()["data"]["response"];
    assert_eq!(shown["channel"], "widget", "{shown}");
    assert!(shown["locale"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_report_is_bounded_at_the_edge() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let link = link_for(&app, project, "u1").await;
    let report = |body: Value| app.http.post(format!("{link}/display")).json(&body).send();
    for bad in [
        json!({"locale": "en_US"}),
        json!({"locale": "<script>"}),
        json!({"locale": "a".repeat(36)}),
        json!({"locale": ""}),
    ] {
        let r = report(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_locale", "{bad}: {body}");
    }
    for bad in [
        json!({"channel": "email"}),
        json!({"chanel": "widget"}),
        json!(["widget"]),
    ] {
        let r = report(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Still unreported: the first valid report counts.
    let r = report(json!({"channel": "widget", "locale": "de"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Closing ends the response unsubmitted: `response.ended` with `partially_completed`, what was
/// answered kept, no answer after it, and the link's page says it was closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_respondent_who_closes_the_survey_ends_it_partially_completed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"questions": every_kind(), "trigger": {"events": ["trial_expired"]}}),
    )
    .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/c"), "event_types": ["response.ended"]}),
    )
    .await;
    let link = link_for(&app, project, "u1").await;
    assert_eq!(put_answer(&app, &link, "nps", json!(3)).await.0, 200);
    let (status, body) = post(&app, format!("{link}/close")).await;
    assert_eq!((status, &body["status"]), (200, &json!("closed")), "{body}");
    let got = receiver.wait_for("/ok/c", 1, WAIT).await;
    let data = got[0].json()["data"].clone();
    assert_eq!(data["response"]["status"], "closed", "{data}");
    assert_eq!(data["response"]["completion"], "partially_completed");
    assert_eq!(data["response"]["answers"][0]["question_id"], "nps");
    assert!(
        data["response"]["time_to_complete_seconds"]
            .as_i64()
            .is_some()
    );

    // Ended: no more answers; closing or completing again changes nothing and says so.
    let (status, body) = put_answer(&app, &link, "rating", json!(4)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "response_completed");
    assert_eq!(body["message"], "This survey was closed.");
    for again in ["close", "complete"] {
        let (status, body) = post(&app, format!("{link}/{again}")).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("closed")),
            "{again}"
        );
    }
    let (_, view) = as_json(&app, &link).await;
    assert_eq!(view["response"]["status"], "closed", "{view}");
    let page = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("This survey was closed"), "{page}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received("/ok/c").len(),
        1,
        "one end, announced once"
    );
    // The responses API lists it as closed.
    let r = app
        .authed(
            Method::GET,
            &format!(
                "/api/v1/projects/{project}/surveys/{}/responses?status=closed",
                data["survey"]["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
}

/// A question's tags travel with every answer to it; malformed tags are refused when the survey
/// is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_questions_tags_travel_with_its_answers() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "questions": [
            {"id": "nps", "type": "nps", "title": "How likely?", "required": true, "tags": ["loyalty", "nps"]},
            {"id": "why", "type": "text", "title": "Why?"}]}),
    )
    .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/t"), "event_types": ["response.answered", "response.ended"]}),
    )
    .await;
    let link = link_for(&app, project, "u1").await;
    assert_eq!(put_answer(&app, &link, "nps", json!(8)).await.0, 200);
    assert_eq!(put_answer(&app, &link, "why", json!("fast")).await.0, 200);
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);
    let got = receiver.wait_for("/ok/t", 3, WAIT).await;
    let answered = got[0].json();
    assert_eq!(
        answered["data"]["question"]["tags"],
        json!(["loyalty", "nps"])
    );
    let ended = got[2].json();
    let answers = ended["data"]["response"]["answers"].as_array().unwrap();
    assert_eq!(answers[0]["tags"], json!(["loyalty", "nps"]), "{ended}");
    assert_eq!(answers[1]["tags"], json!([]));

    let r = app
        .authed(Method::POST, &format!("/api/v1/projects/{project}/surveys"))
        .json(&json!({"name": "S", "questions": [
            {"id": "q", "type": "nps", "title": "a", "tags": ["dup", "dup"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_question_tags", "{body}");
}

/// A display reported after the respondent closed the survey (a widget's late report) records
/// and announces nothing: nothing follows `response.ended`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_after_close_announces_nothing_after_response_ended() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/late"), "event_types": ["response.displayed", "response.ended"]}),
    )
    .await;
    let link = link_for(&app, project, "u1").await;
    let r = app.http.post(format!("{link}/close")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = receiver.wait_for("/ok/late", 1, WAIT).await;
    assert_eq!(got[0].json()["type"], "response.ended");

    let r = app
        .http
        .post(format!("{link}/display"))
        .json(&json!({"channel": "hosted-page", "locale": "de-DE"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = receiver.received("/ok/late");
    let kinds: Vec<String> = all
        .iter()
        .map(|r| {
            let j = r.json();
            format!(
                "{} seq={} status={} channel={}",
                j["type"],
                j["data"]["response"]["sequence"],
                j["data"]["response"]["status"],
                j["data"]["response"]["channel"]
            )
        })
        .collect();
    assert_eq!(
        all.len(),
        1,
        "display after close answered {status} and announced: {kinds:#?}"
    );
}

/// A display reported after the first answer (the widget answered first, or the page's display
/// report lost the race) is not announced: a `response.displayed` after a `response.answered`
/// would misorder the stages and start the response after its first answer. What it reports
/// (where, in which language) is kept all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_reported_after_the_first_answer_is_not_announced() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/late"),
               "event_types": ["response.displayed", "response.answered", "response.ended"]}),
    )
    .await;
    let link = link_for(&app, project, "u1").await;
    assert_eq!(put_answer(&app, &link, "nps", json!(9)).await.0, 200);
    receiver.wait_for("/ok/late", 1, WAIT).await;
    let r = app
        .http
        .post(format!("{link}/display"))
        .json(&json!({"channel": "hosted-page", "locale": "en-US"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);
    let got = receiver.wait_for("/ok/late", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kinds: Vec<String> = receiver
        .received("/ok/late")
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["response.answered", "response.ended"]);
    let ended = &got[1].json()["data"]["response"];
    assert_eq!(
        ended["started_at"], ended["answers"][0]["answered_at"],
        "{ended}"
    );
    assert_eq!(ended["channel"], "hosted-page", "{ended}");
    assert_eq!(ended["locale"], "en-US", "{ended}");
}
