//! The respond page in a real browser: headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from npm, both installed by `scripts/test-tools.sh`) opens a magic link,
//! answers one question of every kind, leaves, comes back to resume, finishes; the receiver
//! gets the displayed, answered (one per question) and ended webhooks, validly signed.

use beckon_e2e::TestApp;
use beckon_e2e::receiver::{Receiver, verify_with_standardwebhooks};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and playwright-core (scripts/test-tools.sh); run by `make test`"]
async fn a_person_answers_the_respond_page_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"name": "Before you go", "trigger": {"events": ["subscription_cancelled"]}, "questions": [
            {"id": "nps", "type": "nps", "title": "How likely are you to recommend us to a friend?", "required": true},
            {"id": "rating", "type": "rating", "title": "How was your experience overall?", "required": true},
            {"id": "reason", "type": "mcq", "title": "What is the main reason you cancelled?", "options": ["Price", "Missing features", "Switched tools"], "required": true},
            {"id": "used", "type": "checkbox", "title": "Which parts did you use?", "options": ["Reports", "API", "Widget"]},
            {"id": "more", "type": "text", "title": "Anything else we should know?"}
        ]}),
    )
    .await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/browser")}))
        .await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "browser-user", "event": "subscription_cancelled"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let link = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "closes-it", "event": "subscription_cancelled"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let to_close = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/respond.cjs");
    let screenshot = std::env::var("BECKON_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("respond-{}.png", app.prefix)));
    let node_path = std::env::var("BECKON_TEST_NODE_PATH").unwrap_or_else(|_| {
        std::env::var("HOME").unwrap_or_default() + "/.cache/beckon-tools/node/node_modules"
    });
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&link)
        .arg(&screenshot)
        .arg(&to_close)
        .env("NODE_PATH", node_path)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser run finishes within 90 s")
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&screenshot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot was taken"
    );

    // Per respondent: invitation.created, displayed, the answers, ended.
    let all = receiver
        .wait_for("/ok/browser", 12, Duration::from_secs(30))
        .await;
    let of = |user: &str| -> Vec<_> {
        all.iter()
            .filter(|h| h.json()["data"]["user"]["user_ref"] == user)
            .collect()
    };
    let hooks = of("browser-user");
    let secret = sub["secret"].as_str().unwrap();
    let mut counts = std::collections::HashMap::new();
    for hook in &hooks {
        verify_with_standardwebhooks(secret, hook).expect("a valid signature");
        *counts
            .entry(hook.json()["type"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let expected = [
        ("invitation.created", 1),
        ("response.displayed", 1),
        ("response.answered", 5),
        ("response.ended", 1),
    ];
    for (kind, n) in expected {
        assert_eq!(
            counts.get(kind).copied().unwrap_or(0),
            n,
            "{kind}: {counts:?}"
        );
    }
    // The page reports where it is shown and the browser's language; the server keeps its
    // User-Agent.
    let shown = hooks
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "response.displayed")
        .unwrap();
    let response = &shown["data"]["response"];
    assert_eq!(response["channel"], "hosted-page", "{response}");
    assert_eq!(response["locale"], "fr-FR", "{response}");
    assert!(
        response["user_agent"].as_str().unwrap().contains("Chrome"),
        "{response}"
    );
    let ended = hooks
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "response.ended")
        .unwrap();
    let answers: serde_json::Map<String, serde_json::Value> = ended["data"]["response"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["question_id"].as_str().unwrap().to_owned(),
                a["answer"].clone(),
            )
        })
        .collect();
    assert_eq!(answers["nps"], 9);
    assert_eq!(answers["rating"], 4);
    assert_eq!(answers["reason"], "Price");
    assert_eq!(answers["used"], json!(["API", "Widget"]));
    assert_eq!(answers["more"], "Great support");
    assert_eq!(ended["data"]["response"]["completion"], "fully_completed");

    // The other respondent closed the survey after one answer.
    let closed = of("closes-it")
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "response.ended")
        .expect("the closed response ended");
    let response = &closed["data"]["response"];
    assert_eq!(response["status"], "closed", "{response}");
    assert_eq!(response["completion"], "partially_completed");
    assert_eq!(response["answers"][0]["answer"], 3, "{response}");
}
