//! Another organization's token never reads or changes anything: every operation the served
//! OpenAPI spec documents under the API key is tried with organization B's token against
//! organization A's resources, and A's data is compared before and after.

use beckon_e2e::TestApp;
use beckon_e2e::receiver::Receiver;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn query(app: &TestApp, sql: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    let mut conn = app.store.conn().await.expect("conn");
    diesel::sql_query(sql)
        .load::<Row>(&mut conn)
        .await
        .expect(sql)
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// What organization A owns, by path parameter name.
struct Victim {
    ids: BTreeMap<&'static str, String>,
    /// Strings that must never appear in anything B is shown.
    secrets: Vec<String>,
}

/// A body that would be valid for each operation, so B's requests fail on ownership, not on
/// validation.
fn body_for(method: &Method, path: &str, victim: &Victim, receiver: &Receiver) -> Option<Value> {
    let project = &victim.ids["project_id"];
    let body = match (method.as_str(), path) {
        ("POST", "/api/v1/events/send") => {
            json!({"project_id": project, "event_name": "trial_expired",
            "user_info": {"contact_external_id": "victim-user", "email": "attacker@example.com"}})
        }
        ("POST", "/api/v1/events/batch") => json!({"events": [
            {"project_id": project, "event_name": "trial_expired",
             "user_info": {"contact_external_id": "victim-user", "email": "attacker@example.com"}}
        ]}),
        ("POST", "/api/v1/lifecycle/dispatch") => {
            json!({"project_id": project, "user_ref": "victim-user", "event": "trial_expired"})
        }
        ("POST", "/api/v1/users/upsert") => {
            json!({"project_id": project, "user_ref": "victim-user", "email": "attacker@example.com"})
        }
        ("POST", "/api/v1/projects") => json!({"name": "B's own"}),
        ("POST", "/api/v1/tokens") => json!({"name": "B's own", "scopes": ["read"]}),
        ("PATCH", "/api/v1/projects/{project_id}") => {
            json!({"name": "hijacked", "allowed_origins": ["https://evil.example"]})
        }
        ("POST", "/api/v1/projects/{project_id}/surveys") => json!({"name": "Planted",
            "status": "live", "trigger": {"events": ["trial_expired"]},
            "questions": [{"id": "q", "type": "nps", "title": "?", "required": true}]}),
        ("PATCH", "/api/v1/projects/{project_id}/surveys/{survey_id}") => {
            json!({"name": "hijacked", "status": "paused"})
        }
        ("POST", "/api/v1/projects/{project_id}/webhooks") => {
            json!({"url": receiver.url("/ok/attacker")})
        }
        ("POST", "/api/v1/projects/{project_id}/segments") => {
            json!({"name": "Planted", "condition": {"exists": {"field": "email"}}})
        }
        ("PATCH", "/api/v1/projects/{project_id}/segments/{segment_id}") => {
            json!({"name": "hijacked", "condition": {"exists": {"field": "name"}}})
        }
        ("PATCH", "/api/v1/projects/{project_id}/webhooks/{webhook_id}") => {
            json!({"url": receiver.url("/ok/attacker"), "status": "disabled"})
        }
        ("POST", "/api/v1/projects/{project_id}/webhooks/{webhook_id}/recover") => {
            json!({"since": "2020-01-01T00:00:00Z"})
        }
        (m, _) if m == "POST" || m == "PATCH" || m == "PUT" => json!({}),
        _ => return None,
    };
    Some(body)
}

/// A's data as A sees it, plus the rows B could have touched.
async fn snapshot(app: &TestApp, victim: &Victim) -> Value {
    let (p, s, w, t) = (
        &victim.ids["project_id"],
        &victim.ids["survey_id"],
        &victim.ids["webhook_id"],
        &victim.ids["trigger_id"],
    );
    let mut out = serde_json::Map::new();
    for path in [
        format!("/api/v1/projects/{p}"),
        format!("/api/v1/projects/{p}/surveys"),
        format!("/api/v1/projects/{p}/surveys/{s}"),
        format!("/api/v1/projects/{p}/surveys/{s}/responses"),
        format!("/api/v1/projects/{p}/webhooks"),
        format!("/api/v1/projects/{p}/webhooks/{w}"),
        format!("/api/v1/projects/{p}/segments"),
        format!("/api/v1/projects/{p}/segments/{}", victim.ids["segment_id"]),
        format!("/api/v1/projects/{p}/webhooks/{w}/deliveries"),
        format!("/api/v1/projects/{p}/webhooks/{w}/attempts"),
        format!("/api/v1/triggers/{t}/workflow"),
        format!("/api/v1/triggers/{t}/details"),
        format!("/api/v1/triggers?project_id={p}"),
        "/api/v1/tokens".to_owned(),
    ] {
        let r = app.authed(Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), 200, "A reads {path}");
        out.insert(path, r.json().await.unwrap());
    }
    for (name, sql) in [
        (
            "triggers",
            format!("SELECT count(*)::text AS value FROM triggers WHERE project_id = '{p}'"),
        ),
        (
            "invitations",
            format!(
                "SELECT id::text || coalesce(revoked_at::text, '') AS value FROM invitations WHERE project_id = '{p}' ORDER BY id"
            ),
        ),
        (
            "users",
            format!(
                "SELECT user_ref || coalesce(email, '') AS value FROM users WHERE project_id = '{p}' ORDER BY user_ref"
            ),
        ),
        (
            "secret",
            format!(
                "SELECT encode(secret_encrypted, 'hex') AS value FROM webhook_subscriptions WHERE id = '{w}'"
            ),
        ),
        (
            "messages",
            format!(
                "SELECT count(*)::text AS value FROM webhook_messages WHERE project_id = '{p}'"
            ),
        ),
        (
            "publishable_key",
            format!("SELECT coalesce(publishable_key, '') AS value FROM projects WHERE id = '{p}'"),
        ),
    ] {
        out.insert(name.to_owned(), json!(query(app, &sql).await));
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_token_reaches_nothing_on_any_documented_route() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;

    // Organization A: a project with a Live survey, a webhook, a user, a trigger with an
    // invitation, a delivered webhook message and a publishable key.
    let project = app.create_project().await;
    let survey = app
        .create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let webhook = app
        .create_webhook(project, json!({"url": receiver.url("/ok/victim")}))
        .await;
    let segment = app
        .authed(
            Method::POST,
            &format!("/api/v1/projects/{project}/segments"),
        )
        .json(&json!({"name": "Victims", "condition": {"exists": {"field": "email"}}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .expect("a segment")
        .to_owned();
    let (status, upserted) = app
        .upsert_user(json!({"project_id": project, "user_ref": "victim-user", "email": "victim@example.com"}))
        .await;
    assert_eq!(status, 200, "{upserted}");
    let (status, dispatched) = app
        .dispatch(
            json!({"project_id": project, "user_ref": "victim-user", "event": "trial_expired"}),
        )
        .await;
    assert_eq!(status, 200, "{dispatched}");
    let link = dispatched["created_invitations"][0]["magic_link_url"]
        .as_str()
        .expect("an invitation")
        .to_owned();
    receiver
        .wait_for("/ok/victim", 1, Duration::from_secs(30))
        .await;
    // Recorded too, so nothing of A's changes on its own while B tries.
    app.eventually(
        Duration::from_secs(30),
        "the webhook's attempt to be recorded",
        || async {
            let sql = "SELECT 1 FROM webhook_deliveries WHERE status = 'succeeded'";
            (app.execute(sql).await == 1).then_some(())
        },
    )
    .await;
    let (publishable, widget_secret) = app.widget_keys(project).await;
    let token_id = query(
        &app,
        &format!(
            "SELECT id::text AS value FROM api_tokens WHERE org_id = '{}'",
            app.org_id
        ),
    )
    .await
    .remove(0);

    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let message_id = query(
        &app,
        &format!("SELECT id::text AS value FROM webhook_messages WHERE project_id = '{project}'"),
    )
    .await
    .remove(0);
    let invitation_id = query(
        &app,
        &format!("SELECT id::text AS value FROM invitations WHERE project_id = '{project}'"),
    )
    .await
    .remove(0);
    let victim = Victim {
        ids: BTreeMap::from([
            ("project_id", project.to_string()),
            ("survey_id", survey["id"].as_str().unwrap().to_owned()),
            ("webhook_id", webhook_id.clone()),
            ("segment_id", segment.clone()),
            ("message_id", message_id.clone()),
            (
                "trigger_id",
                dispatched["trigger_id"].as_str().unwrap().to_owned(),
            ),
            ("invitation_id", invitation_id.clone()),
            ("user_ref", "victim-user".to_owned()),
            ("token_id", token_id.clone()),
        ]),
        secrets: vec![
            project.to_string(),
            survey["id"].as_str().unwrap().to_owned(),
            webhook_id,
            segment,
            message_id,
            invitation_id,
            "victim@example.com".to_owned(),
            link.rsplit('/').next().unwrap().to_owned(),
            webhook["secret"].as_str().unwrap().to_owned(),
            widget_secret,
            token_id,
            publishable,
        ],
    };
    let before = snapshot(&app, &victim).await;

    // Organization B, with a project of its own to mix into A's paths.
    let (_, other_token) = app.other_org().await;
    let r = app
        .http
        .post(app.url("/api/v1/projects"))
        .header("x-api-key", &other_token)
        .json(&json!({"name": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let own_project = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tried = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            if operation["security"].as_array().is_none_or(Vec::is_empty) {
                continue; // Public, or authorized by a magic link or publishable key.
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let names_resources = path.contains('{');
            // A's ids throughout; then B's own project with A's other ids.
            let mut variants = vec![victim.ids.clone()];
            // (A user_ref is only a name: in B's own project it is B's user.)
            if path.matches('{').count() > 1 && !path.ends_with("{user_ref}") {
                let mut mixed = victim.ids.clone();
                mixed.insert("project_id", own_project.clone());
                variants.push(mixed);
            }
            for ids in variants {
                let concrete = ids
                    .iter()
                    .fold(path.clone(), |p, (k, v)| p.replace(&format!("{{{k}}}"), v));
                let mut request = app
                    .http
                    .request(method.clone(), app.url(&concrete))
                    .header("x-api-key", &other_token)
                    .header("x-team-id", &victim.ids["project_id"]);
                // What B sent it may see echoed back (an id in an error message); nothing else.
                let mut sent = format!("{concrete} {}", victim.ids["project_id"]);
                if let Some(body) = body_for(&method, path, &victim, &receiver) {
                    sent.push_str(&body.to_string());
                    request = request.json(&body);
                }
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                tried += 1;
                // B's own projects, tokens and triggers: listed and made in B's organization.
                let own_resource = matches!(
                    path.as_str(),
                    "/api/v1/projects" | "/api/v1/tokens" | "/api/v1/triggers"
                );
                if names_resources || !own_resource {
                    assert!(
                        status == 403 || status == 404,
                        "{method} {concrete} with B's token answered {status}: {text}"
                    );
                    let code = serde_json::from_str::<Value>(&text).unwrap_or_default()["code"]
                        .as_str()
                        .map(str::to_owned);
                    assert!(
                        code.is_some(),
                        "{method} {concrete}: not the error shape: {text}"
                    );
                } else {
                    assert!(
                        (200..300).contains(&status),
                        "{method} {concrete}: {status} {text}"
                    );
                }
                for secret in victim.secrets.iter().filter(|s| !sent.contains(s.as_str())) {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{method} {concrete} showed B something of A's ({secret}): {text}"
                    );
                }
            }
        }
    }
    assert!(tried >= 40, "only {tried} requests tried");

    // Give anything B might have set off time to happen, then compare.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = snapshot(&app, &victim).await;
    assert_eq!(before, after, "B's requests changed A's data");
    assert_eq!(receiver.received("/ok/attacker").len(), 0);
}
