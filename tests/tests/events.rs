//! POST /api/v1/events/send and GET/DELETE /api/v1/triggers/{id}, through the real services.

use beckon_e2e::broker::Broker;
use beckon_e2e::hooks::assert_valid_beckon_webhook;
use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WAIT: Duration = Duration::from_secs(20);

fn in_seconds(s: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(s))
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_accepted_at_once_and_its_trigger_completes_with_a_summary() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(
            project,
            json!({"trigger": {"events": [{"custom": "payment_failed"}]}}),
        )
        .await;
    let (status, body) = app
        .send_event(
            Some(project),
            json!({
                "event_name": "payment_failed",
                "user_info": {"contact_external_id": "user_1", "email": "ada@example.com", "name": "Ada",
                              "custom_fields": {"plan": "pro"}},
                "source": {"type": "api", "ip": "127.0.0.1"},
                "event_data": {"amount": 49.0, "currency": "EUR"},
                "variables": {"first_name": "Ada"}
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Event queued successfully");
    assert_eq!(body["flow_type"], "survey");
    assert!(body.get("scheduled_for").is_none());
    let trigger_id = body["trigger_id"].as_str().unwrap().to_owned();
    assert!(body["job_id"].as_str().is_some_and(|j| j != trigger_id));

    let trigger = app.wait_trigger(&trigger_id, "completed", WAIT).await;
    assert_eq!(trigger["trigger_type"], "event");
    assert_eq!(trigger["flow_type"], "survey");
    assert_eq!(trigger["event"], json!({"custom": "payment_failed"}));
    assert_eq!(
        trigger["summary"],
        json!({"total_contacts": 1, "matched": 1, "sent": 1, "filtered": 0, "filtered_by": {"cooldown": 0, "sample": 0, "condition": 0, "cap": 0}, "failed": 0})
    );
    assert!(trigger["started_at"].is_string() && trigger["completed_at"].is_string());
    let details_path = trigger["details_endpoint"].as_str().unwrap();
    assert_eq!(
        details_path,
        format!("/api/v1/triggers/{trigger_id}/workflow")
    );
    let app = &app;
    let read = |path: String| async move {
        let r = app
            .authed(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json::<Value>().await.unwrap()
    };
    let details = read(details_path.to_owned()).await;
    // `/details` is an alias of `/workflow`.
    assert_eq!(
        read(format!("/api/v1/triggers/{trigger_id}/details")).await,
        details
    );
    assert_eq!(details["surveys"][0]["survey_id"], survey["id"]);
    assert_eq!(details["surveys"][0]["outcome"], "created");
    assert!(details["surveys"][0]["invitation_id"].is_string());

    // user_info updated the user; event_data travels with the trigger.
    assert_eq!(
        app.execute("SELECT 1 FROM users WHERE user_ref = 'user_1' AND email = 'ada@example.com' AND attributes->>'plan' = 'pro'").await,
        1
    );
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE id = '{trigger_id}' AND event_data->>'currency' = 'EUR'"
        ))
        .await,
        1
    );
}

/// `summary.filtered` is the one number Sendmator's clients read: every match skipped, for
/// any reason. `filtered_by` says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_counts_every_skipped_match_and_filtered_by_says_why() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let event = json!({"trigger": {"events": [{"custom": "payment_failed"}]}});
    let mut never_sampled = event.clone();
    never_sampled["sample_rate"] = json!(0.0);
    let mut cooling = event.clone();
    cooling["cooldown_seconds"] = json!(3600);
    app.create_survey(project, never_sampled).await;
    app.create_survey(project, cooling).await;
    let mut summaries = Vec::new();
    for _ in 0..2 {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "payment_failed", "user_info": {"contact_external_id": "u1"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let done = app
            .wait_trigger(body["trigger_id"].as_str().unwrap(), "completed", WAIT)
            .await;
        summaries.push(done["summary"].clone());
    }
    assert_eq!(
        summaries,
        [
            json!({"total_contacts": 1, "matched": 2, "sent": 1, "filtered": 1,
                   "filtered_by": {"cooldown": 0, "sample": 1, "condition": 0, "cap": 0}, "failed": 0}),
            json!({"total_contacts": 1, "matched": 2, "sent": 0, "filtered": 2,
                   "filtered_by": {"cooldown": 1, "sample": 1, "condition": 0, "cap": 0}, "failed": 0}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predefined_name_is_that_event_and_the_body_may_name_the_project() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, body) = app
        .send_event(None, json!({"project_id": project, "event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let trigger = app
        .wait_trigger(body["trigger_id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(trigger["event"], "trial_expired");
    assert_eq!(trigger["summary"]["sent"], 1);
    // A predefined event no survey listens to is still an event: accepted, matching nothing.
    let (status, body) = app
        .send_event(Some(project), json!({"event_name": "onboarding_completed", "user_info": {"contact_external_id": "u1"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let trigger = app
        .wait_trigger(body["trigger_id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(trigger["summary"]["matched"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_send_errors_have_the_seeds_messages_and_stable_codes() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "known"}]}}),
    )
    .await;
    let user = json!({"contact_external_id": "u1"});
    let (_, other_token) = app.other_org().await;
    let other_project = {
        let r = app
            .http
            .post(app.url("/api/v1/projects"))
            .bearer_auth(&other_token)
            .json(&json!({"name": "theirs"}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    };

    let cases: Vec<(Option<String>, Value, u16, &str, &str)> = vec![
        (
            Some(project.to_string()),
            json!({"user_info": user}),
            400,
            "event_name_required",
            "Event name is required",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "", "user_info": user}),
            400,
            "event_name_required",
            "Event name is required",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": user, "trigger_at": "tomorrow"}),
            400,
            "invalid_trigger_at",
            "Invalid trigger_at format",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": user, "trigger_at": "2020-01-01T00:00:00Z"}),
            400,
            "trigger_at_in_past",
            "trigger_at must be a future date",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": user, "project_id": uuid::Uuid::now_v7()}),
            400,
            "project_mismatch",
            "",
        ),
        // A field of the wrong type is named by its path.
        (
            Some(project.to_string()),
            json!({"event_name": 5, "user_info": user}),
            400,
            "invalid_body",
            "event_name: invalid type: integer `5`, expected a string",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": user, "event_data": [1]}),
            400,
            "invalid_body",
            "event_data: invalid type: sequence, expected an object",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": {"contact_external_id": "u1", "email": true}}),
            400,
            "invalid_body",
            "user_info.email: invalid type: boolean `true`, expected a string",
        ),
        // Not the fields in order, which serde would read a struct from.
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": ["u1"]}),
            400,
            "invalid_body",
            "user_info: invalid type: sequence, expected an object",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": {"contact_external_id": " "}}),
            400,
            "user_ref_invalid",
            "user_info.contact_external_id: user_ref must not be empty",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "known", "user_info": {"contact_external_id": 42}}),
            400,
            "user_ref_invalid",
            "",
        ),
        (
            None,
            json!({"event_name": "known", "user_info": user}),
            401,
            "invalid_team_context",
            "Invalid team context",
        ),
        (
            Some("not-a-team".into()),
            json!({"event_name": "known", "user_info": user}),
            401,
            "invalid_team_context",
            "Invalid team context",
        ),
        (
            Some(uuid::Uuid::now_v7().to_string()),
            json!({"event_name": "known", "user_info": user}),
            401,
            "invalid_team_context",
            "Invalid team context",
        ),
        (
            Some(other_project),
            json!({"event_name": "known", "user_info": user}),
            403,
            "project_forbidden",
            "",
        ),
        (
            Some(project.to_string()),
            json!({"event_name": "never_subscribed", "user_info": user}),
            404,
            "event_type_not_found",
            "Event type not found",
        ),
    ];
    for (team, body, status, code, message) in cases {
        let mut request = app
            .http
            .post(app.url("/api/v1/events/send"))
            .header("x-api-key", &app.token)
            .json(&body);
        if let Some(team) = &team {
            request = request.header("x-team-id", team);
        }
        let r = request.send().await.unwrap();
        let got = r.status().as_u16();
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            (got, e["code"].as_str().unwrap_or("")),
            (status, code),
            "{team:?} {body} → {e}"
        );
        assert_eq!(e["statusCode"], status);
        if !message.is_empty() {
            assert_eq!(e["message"], message);
        }
    }
    let r = app
        .http
        .post(app.url("/api/v1/events/send"))
        .header("x-team-id", project.to_string())
        .json(&json!({"event_name": "known"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        app.execute("SELECT 1 FROM triggers").await,
        0,
        "no error created a trigger"
    );
}

/// An event may name no contact (no `user_info`, or none of its `contact_external_id`): it is
/// accepted as any other, and its trigger completes with no one to invite, saying why
/// (`reason.code` `no_contact`), without an envelope ever reaching the matcher. With
/// `trigger_at` it waits, can be cancelled, and completes so when it fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_contact_completes_with_no_one_to_invite() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/contactless")}))
        .await;
    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;

    let mut contactless = Vec::new();
    for body in [
        json!({"event_name": "trial_expired"}),
        json!({"event_name": "trial_expired", "user_info": null, "variables": {"first_name": "Ada"}}),
        json!({"event_name": "trial_expired", "user_info": {"email": "nobody@example.com", "name": "Nobody"}}),
        json!({"event_name": "trial_expired", "user_info": {"contact_external_id": null}}),
    ] {
        let (status, answer) = app.send_event(Some(project), body.clone()).await;
        assert_eq!(status, 201, "{body} → {answer}");
        assert_eq!(answer["message"], "Event queued successfully");
        let id = answer["trigger_id"].as_str().unwrap().to_owned();
        // Completed by the time the 201 is answered: there is nothing to wait for.
        let (_, trigger) = app.trigger(&id).await;
        assert_eq!(trigger["status"], "completed", "{trigger}");
        assert_eq!(trigger["reason"]["code"], "no_contact", "{trigger}");
        assert!(
            trigger["reason"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no contact")),
            "{trigger}"
        );
        assert_eq!(trigger["user_ref"], Value::Null);
        assert_eq!(trigger["error"], Value::Null);
        assert_eq!(
            trigger["summary"],
            json!({"total_contacts": 0, "matched": 0, "sent": 0, "filtered": 0,
                   "filtered_by": {"cooldown": 0, "sample": 0, "condition": 0, "cap": 0}, "failed": 0})
        );
        assert!(trigger["started_at"].is_string() && trigger["completed_at"].is_string());
        let r = app
            .authed(
                reqwest::Method::GET,
                trigger["details_endpoint"].as_str().unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let workflow: Value = r.json().await.unwrap();
        assert_eq!(workflow["surveys"], json!([]));
        contactless.push(id);
    }
    let (_, second) = app.trigger(&contactless[1]).await;
    assert_eq!(second["variables"], json!({"first_name": "Ada"}));
    // The user_info without a contact described no one Beckon keeps.
    assert_eq!(app.execute("SELECT 1 FROM users").await, 0);

    // With trigger_at it waits like any scheduled event, and can be cancelled.
    let (status, cancelled) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "trigger_at": in_seconds(60)}),
        )
        .await;
    assert_eq!(status, 201, "{cancelled}");
    let cancelled = cancelled["trigger_id"].as_str().unwrap().to_owned();
    let r = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/triggers/{cancelled}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, scheduled) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "trigger_at": in_seconds(2)}),
        )
        .await;
    assert_eq!(status, 201, "{scheduled}");
    let scheduled_for = scheduled["scheduled_for"].as_str().unwrap().to_owned();
    assert_eq!(
        scheduled["message"],
        format!("Event scheduled for {scheduled_for}")
    );
    let id = scheduled["trigger_id"].as_str().unwrap().to_owned();
    let (_, waiting) = app.trigger(&id).await;
    assert_eq!(
        (&waiting["status"], &waiting["reason"], &waiting["user_ref"]),
        (&json!("scheduled"), &Value::Null, &Value::Null)
    );
    let done = app.wait_trigger(&id, "completed", WAIT).await;
    assert_eq!(done["reason"]["code"], "no_contact", "{done}");
    assert_eq!(done["summary"]["total_contacts"], 0);
    let fired = OffsetDateTime::parse(done["started_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(fired >= OffsetDateTime::parse(&scheduled_for, &Rfc3339).unwrap());
    contactless.extend([cancelled, id]);

    // The control: the same event for a user goes the whole way.
    let (_, with) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}),
        )
        .await;
    let with = with["trigger_id"].as_str().unwrap().to_owned();
    app.wait_trigger(&with, "completed", WAIT).await;
    receiver.wait_for("/ok/contactless", 1, WAIT).await;
    let mut tapped = Vec::new();
    while let Some(body) = tap.next(Duration::from_secs(1)).await {
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        tapped.push((
            envelope["correlation_id"].as_str().unwrap().to_owned(),
            envelope["type"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(
        tapped
            .iter()
            .any(|(id, kind)| *id == with && kind == "event.received"),
        "{tapped:?}"
    );
    assert!(
        tapped.iter().all(|(id, _)| !contactless.contains(id)),
        "an event without a contact sent an envelope: {tapped:?}"
    );
    assert_eq!(receiver.received("/ok/contactless").len(), 1);
    assert_eq!(
        app.execute("SELECT 1 FROM invitations").await,
        1,
        "only the control invited anyone"
    );
}

/// The committed JSON Schema of a webhook body's type and version holds `body`.
/// `variables` and `source` are shown on the trigger (read and listed) and carried beside
/// `event_data` (`parameters`) in the `invitation.created` webhook's `data.trigger`: from an
/// event sent now, and from a scheduled one fired later from its stored row. An event without
/// them shows both as `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_and_source_reach_the_trigger_and_the_invitation_webhook() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "purchase_completed"}]}}),
    )
    .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/carried"), "event_types": ["invitation.created"]}),
    )
    .await;
    let variables = json!({"order_total": "$149.99", "estimated_delivery": "2024-12-20", "items": [1, {"sku": "A"}]});
    let source = json!({"type": "web_signup", "ip": "192.0.2.7", "user_agent": "Mozilla/5.0"});
    let later_variables = json!({"renewal_date": "2024-12-20"});
    let later_source = json!({"type": "cron"});
    let mut sent = std::collections::HashMap::new();
    for (user, extra) in [
        (
            "now",
            json!({"event_data": {"order_id": "ORD-98765"}, "variables": variables, "source": source}),
        ),
        (
            "later",
            json!({"variables": later_variables, "source": later_source, "trigger_at": in_seconds(2)}),
        ),
        ("plain", json!({})),
    ] {
        let mut body =
            json!({"event_name": "purchase_completed", "user_info": {"contact_external_id": user}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = app.send_event(Some(project), body).await;
        assert_eq!(status, 201, "{answer}");
        sent.insert(user, answer["trigger_id"].as_str().unwrap().to_owned());
    }

    let hooks = receiver.wait_for("/ok/carried", 3, WAIT).await;
    let trigger_of = |user: &str| {
        let hook = hooks
            .iter()
            .map(|h| h.json())
            .find(|b| b["data"]["user"]["user_ref"] == user)
            .unwrap_or_else(|| panic!("no webhook for {user}"));
        assert_valid_beckon_webhook(&hook);
        hook["data"]["trigger"].clone()
    };
    let now = trigger_of("now");
    assert_eq!(now["id"].as_str(), Some(sent["now"].as_str()));
    assert_eq!(now["parameters"], json!({"order_id": "ORD-98765"}));
    assert_eq!((&now["variables"], &now["source"]), (&variables, &source));
    let later = trigger_of("later");
    assert_eq!(later["trigger_type"], "scheduled");
    assert_eq!(
        (&later["variables"], &later["source"]),
        (&later_variables, &later_source)
    );
    let plain = trigger_of("plain");
    for field in ["variables", "source"] {
        assert!(
            plain.as_object().unwrap().get(field) == Some(&Value::Null),
            "{field} is null when not given: {plain}"
        );
    }

    // On the trigger, read and listed.
    let (_, read) = app.trigger(&sent["now"]).await;
    assert_eq!((&read["variables"], &read["source"]), (&variables, &source));
    let (_, read) = app.trigger(&sent["plain"]).await;
    assert_eq!(
        (&read["variables"], &read["source"]),
        (&Value::Null, &Value::Null)
    );
    let listed: Value = app
        .authed(
            reqwest::Method::GET,
            &format!("/api/v1/triggers?project_id={project}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed_later = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_str() == Some(sent["later"].as_str()))
        .expect("the scheduled trigger is listed");
    assert_eq!(
        (&listed_later["variables"], &listed_later["source"]),
        (&later_variables, &later_source)
    );
}

/// `{"a": {"a": … 1}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({"a": 1}), |inner, _| json!({"a": inner}))
}

/// Free-form objects nest at most 32 levels. One near the parser's own limit (127 levels in the
/// whole body) was accepted, then travelled deeper inside envelopes than any consumer parses:
/// dead-lettered, its trigger failed. It is refused before anything is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_nested_deeper_than_32_levels_are_refused_before_anything_is_recorded() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let event = |field: &str, value: Value| {
        let mut body =
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}});
        match field.split_once('.') {
            Some((outer, inner)) => body[outer][inner] = value,
            None => body[field] = value,
        }
        body
    };
    for field in [
        "event_data",
        "variables",
        "source",
        "user_info.custom_fields",
    ] {
        let (status, body) = app
            .send_event(Some(project), event(field, nested(120)))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_body")),
            "{field}: {body}"
        );
        assert_eq!(
            body["message"],
            format!("{field}: nested more than 32 levels deep")
        );
        let (status, body) = app
            .send_event(Some(project), event(field, nested(33)))
            .await;
        assert_eq!(status, 400, "{field}: {body}");
    }
    // A user's attributes travel in every webhook about them: users/upsert bounds them too.
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "u1", "attributes": nested(120)}))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("attributes: nested more than 32 levels deep")),
        "{body}"
    );
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 0);
    assert_eq!(app.execute("SELECT 1 FROM users").await, 0);

    // 32 levels in every object at once travel the whole way.
    let mut body = event("event_data", nested(32));
    body["variables"] = nested(32);
    body["source"] = nested(32);
    body["user_info"]["custom_fields"] = nested(32);
    let (status, body) = app.send_event(Some(project), body).await;
    assert_eq!(status, 201, "{body}");
    let done = app
        .wait_trigger(body["trigger_id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(done["summary"]["sent"], 1, "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_fires_when_due_against_the_surveys_as_they_are_then() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    // Subscribe the event so it is known, but leave that survey paused.
    let first = app
        .create_survey(
            project,
            json!({"trigger": {"events": [{"custom": "renewal"}]}, "status": "paused"}),
        )
        .await;
    let at = in_seconds(2);
    let (status, body) = app
        .send_event(Some(project), json!({"event_name": "renewal", "user_info": {"contact_external_id": "u1"}, "trigger_at": at}))
        .await;
    assert_eq!(status, 201, "{body}");
    let scheduled_for = body["scheduled_for"].as_str().unwrap().to_owned();
    let drift = OffsetDateTime::parse(&scheduled_for, &Rfc3339).unwrap()
        - OffsetDateTime::parse(&at, &Rfc3339).unwrap();
    assert!(
        drift.abs() < time::Duration::microseconds(1),
        "scheduled for {scheduled_for}, asked {at}"
    );
    assert_eq!(
        body["message"],
        format!("Event scheduled for {scheduled_for}")
    );
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let (_, waiting) = app.trigger(&id).await;
    assert_eq!(
        (waiting["status"].clone(), waiting["trigger_type"].clone()),
        (json!("scheduled"), json!("scheduled"))
    );

    // Changed after scheduling: the firing sees the survey Live.
    let r = app
        .authed(
            reqwest::Method::PATCH,
            &format!(
                "/api/v1/projects/{project}/surveys/{}",
                first["id"].as_str().unwrap()
            ),
        )
        .json(&json!({"status": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let done = app.wait_trigger(&id, "completed", WAIT).await;
    assert_eq!(done["summary"]["sent"], 1);
    let fired = OffsetDateTime::parse(done["started_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(
        fired >= OffsetDateTime::parse(&scheduled_for, &Rfc3339).unwrap(),
        "fired before it was due"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_trigger_never_fires_and_only_scheduled_ones_can_be_cancelled() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (_, body) = app
        .send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}, "trigger_at": in_seconds(2)}))
        .await;
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let r = app
        .authed(reqwest::Method::DELETE, &format!("/api/v1/triggers/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");

    // A later event for another user fires and completes; the cancelled one stays cancelled.
    let (_, later) = app
        .send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u2"}, "trigger_at": in_seconds(3)}))
        .await;
    app.wait_trigger(later["trigger_id"].as_str().unwrap(), "completed", WAIT)
        .await;
    let (_, after) = app.trigger(&id).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'u1'")
            .await,
        0
    );

    let r = app
        .authed(reqwest::Method::DELETE, &format!("/api/v1/triggers/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "trigger_not_cancellable");
    let r = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/triggers/{}", later["trigger_id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_of_other_organizations_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let (_, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let (status, trigger) = app.trigger(&id).await;
    assert_eq!(status, 200);
    assert_eq!(
        (trigger["trigger_type"].clone(), trigger["status"].clone()),
        (json!("dispatch"), json!("completed"))
    );

    let (_, other_token) = app.other_org().await;
    for path in [
        format!("/api/v1/triggers/{id}"),
        format!("/api/v1/triggers/{id}/workflow"),
        format!("/api/v1/triggers/{id}/details"),
    ] {
        let r = app
            .http
            .get(app.url(&path))
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "trigger_not_found");
    }
    let r = app
        .http
        .delete(app.url(&format!("/api/v1/triggers/{id}")))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for unknown in [uuid::Uuid::now_v7().to_string(), "nope".to_owned()] {
        let (status, _) = app.trigger(&unknown).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_envelope_is_dead_lettered_shows_failed_with_the_reason() {
    let mut app = TestApp::spawn().await;
    let project = app.create_project().await;
    // A queued trigger whose own envelope is gone, so only the poison one names it.
    app.stop("matcher");
    let (_, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}),
        )
        .await;
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    app.eventually(WAIT, "the outbox to be empty", || async {
        (app.execute("SELECT 1 FROM outbox").await == 0).then_some(())
    })
    .await;
    let broker = Broker::connect(&app.prefix).await;
    broker
        .channel
        .queue_purge(
            format!("{}.matcher", app.prefix).as_str().into(),
            Default::default(),
        )
        .await
        .unwrap();
    app.start("matcher");
    let poison = json!({
        "id": uuid::Uuid::now_v7(), "type": "event.received", "version": 42,
        "occurred_at": "2026-11-23T10:00:00Z", "org_id": app.org_id, "project_id": project,
        "correlation_id": id, "data": {}
    });
    broker
        .publish_raw("event.received.v1", &serde_json::to_vec(&poison).unwrap())
        .await;
    let failed = app.wait_trigger(&id, "failed", WAIT).await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("unknown_version"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_together_are_committed_in_groups_and_each_counts() {
    use futures_util::stream::{self, StreamExt};
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;

    // 160 events, 32 at a time, about 8 users: every fourth is scheduled for tomorrow, and
    // each sets a custom field of its own on its user.
    const EVENTS: usize = 160;
    let answers: Vec<(usize, u16, Value)> = stream::iter(0..EVENTS)
        .map(|i| {
            let app = &app;
            async move {
                let mut body = json!({
                    "event_name": "trial_expired",
                    "user_info": {
                        "contact_external_id": format!("g{}", i % 8),
                        "custom_fields": {format!("k{i}"): i}
                    }
                });
                if i % 4 == 0 {
                    body["trigger_at"] = json!(in_seconds(86_400));
                }
                let (status, body) = app.send_event(Some(project), body).await;
                (i, status, body)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for (i, status, body) in &answers {
        assert_eq!(*status, 201, "event {i}: {body}");
    }

    let completed =
        format!("SELECT 1 FROM triggers WHERE project_id = '{project}' AND status = 'completed'");
    app.eventually(WAIT, "every immediate event to complete", || async {
        (app.execute(&completed).await == EVENTS * 3 / 4).then_some(())
    })
    .await;
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE project_id = '{project}' AND status = 'scheduled'"
        ))
        .await,
        EVENTS / 4
    );
    // Every event's field reached its user, whichever group it was committed in.
    for u in 0..8 {
        let keys: Vec<String> = (0..EVENTS)
            .filter(|i| i % 8 == u)
            .map(|i| format!("attributes ? 'k{i}'"))
            .collect();
        assert_eq!(
            app.execute(&format!(
                "SELECT 1 FROM users WHERE project_id = '{project}' AND user_ref = 'g{u}' AND {}",
                keys.join(" AND ")
            ))
            .await,
            1,
            "user g{u}"
        );
    }
    // More events than groups: some were committed together.
    app.assert_grouped(
        &app.ops_url("/metrics"),
        "beckon_intake_group_size",
        "",
        "events",
    )
    .await;
}

/// Past `BECKON_SHED_BACKLOG` events waiting for the matcher, intake answers 429 `overloaded`
/// with `Retry-After` and records nothing; once the backlog drains it accepts again, and every
/// event it accepted before is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_sheds_load_past_the_backlog_and_handles_all_it_accepted() {
    let mut app =
        TestApp::spawn_with(Options::with_env(vec![("BECKON_SHED_BACKLOG", "5".into())])).await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("matcher");
    let mut accepted = Vec::new();
    let mut shed = None;
    for i in 0..400 {
        let r = send_to(&app, project, i).await.expect("request");
        match r.status().as_u16() {
            201 => accepted.push(
                r.json::<Value>().await.unwrap()["trigger_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            429 => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                shed = Some((retry_after, r.json::<Value>().await.unwrap()));
                break;
            }
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (retry_after, body) = shed.expect("intake refused once the backlog passed 5");
    assert_eq!(body["code"], "overloaded", "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        accepted.len() > 5,
        "accepted {} before shedding",
        accepted.len()
    );
    let before = app.execute("SELECT 1 FROM triggers").await;
    assert_eq!(
        before as usize,
        accepted.len(),
        "a refused event records nothing"
    );

    app.start("matcher");
    for id in &accepted {
        app.wait_trigger(id, "completed", Duration::from_secs(30))
            .await;
    }
    // The backlog drained: intake accepts again (within a reading of the queue).
    app.eventually(
        Duration::from_secs(10),
        "intake to accept again",
        || async {
            (send_to(&app, project, 10_000).await.ok()?.status().as_u16() == 201).then_some(())
        },
    )
    .await;
}

async fn send_to(
    app: &TestApp,
    project: uuid::Uuid,
    i: usize,
) -> reqwest::Result<reqwest::Response> {
    app.http
        .post(app.url("/api/v1/events/send"))
        .header("x-api-key", &app.token)
        .header("x-team-id", project.to_string())
        .json(&json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("shed-{i}")}}))
        .send()
        .await
}

/// A user's attributes travel in every webhook about them: merged key by key, they are bounded
/// in all (64 KiB as JSON), not only per request. The upsert that would pass the bound is
/// refused and changes nothing; other changes to the user still go through, and an event whose
/// `custom_fields` would pass it is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_attributes_are_bounded_in_all_not_only_per_request() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "payment_failed"}]}}),
    )
    .await;
    let filler = "x".repeat(1000);
    let batch = |round: usize| -> serde_json::Map<String, Value> {
        (0..10)
            .map(|i| (format!("k{round}_{i}"), Value::from(filler.clone())))
            .collect()
    };
    let mut refused_at = None;
    for round in 0..10 {
        let (status, body) = app
            .upsert_user(
                json!({"project_id": project, "user_ref": "u1", "attributes": batch(round)}),
            )
            .await;
        if status != 200 {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["code"], "attributes_too_large", "{body}");
            refused_at = Some(round);
            break;
        }
    }
    let refused_at = refused_at.expect("the bound is reached within 10 rounds of 10 KB");
    assert!(refused_at >= 6, "refused too early: round {refused_at}");
    let kept = app
        .execute(&format!(
            "SELECT 1 FROM users WHERE user_ref = 'u1' AND octet_length(attributes::text) <= 65536 \
             AND NOT attributes ? 'k{refused_at}_0'"
        ))
        .await;
    assert_eq!(kept, 1, "the refused upsert changed nothing");
    let (status, body) = app
        .upsert_user(
            json!({"project_id": project, "user_ref": "u1", "email": "u1@example.com",
                            "attributes": {"k0_0": filler}}),
        )
        .await;
    assert_eq!(
        status, 200,
        "a change that adds nothing still goes through: {body}"
    );

    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "payment_failed",
                   "user_info": {"contact_external_id": "u1", "custom_fields": batch(99)}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "attributes_too_large", "{body}");
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "payment_failed", "user_info": {"contact_external_id": "u2",
                   "custom_fields": {"plan": "pro"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

// POST /api/v1/events/batch

/// The result of each event of a batch answer, as `(success, code, pointer)`.
fn outcomes(answer: &Value) -> Vec<(bool, String, String)> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {answer}"))
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i, "results come in order: {answer}");
            let error = &r["error"];
            (
                r["success"] == true,
                error["code"].as_str().unwrap_or("").to_owned(),
                error["pointer"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn accepted() -> (bool, String, String) {
    (true, String::new(), String::new())
}

fn refused(code: &str, pointer: &str) -> (bool, String, String) {
    (false, code.to_owned(), pointer.to_owned())
}

/// A batch is checked event by event exactly as events/send checks each: the good events are
/// accepted and go the whole way, each bad one is refused with the code events/send gives it
/// and a pointer into the batch, and nothing of a refused event is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_accepts_its_good_events_and_refuses_each_bad_one_with_its_code_and_pointer() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "payment_failed"}]}}),
    )
    .await;
    let event = |user: &str| json!({"event_name": "payment_failed", "user_info": {"contact_external_id": user}});
    let with = |user: &str, extra: Value| {
        let mut e = event(user);
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    // Whole seconds: the answer gives the time as stored, to the microsecond.
    let later = (OffsetDateTime::now_utc() + time::Duration::HOUR)
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    let (status, answer) = app
        .send_batch(
            Some(project),
            json!({"events": [
                with("good_1", json!({"user_info": {"contact_external_id": "good_1", "email": "g1@example.com"}})),
                with("past", json!({"trigger_at": "2020-01-01T00:00:00Z"})),
                with("typed", json!({"user_info": {"contact_external_id": "typed", "email": true}})),
                with("unknown", json!({"event_name": "never_subscribed"})),
                with("good_2", json!({"event_data": {"amount": 5}})),
                with("later", json!({"trigger_at": later})),
                42,
                event(" "),
                with("nameless", json!({"event_name": null})),
                with("garbled", json!({"trigger_at": "tomorrow"})),
                with("nested", json!({"variables": nested(40)})),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        [
            accepted(),
            refused("trigger_at_in_past", "/events/1/trigger_at"),
            refused("invalid_body", "/events/2/user_info/email"),
            refused("event_type_not_found", "/events/3/event_name"),
            accepted(),
            accepted(),
            refused("invalid_body", "/events/6"),
            refused(
                "user_ref_invalid",
                "/events/7/user_info/contact_external_id"
            ),
            refused("event_name_required", "/events/8/event_name"),
            refused("invalid_trigger_at", "/events/9/trigger_at"),
            refused("invalid_body", "/events/10/variables"),
        ]
    );
    assert_eq!(
        (
            answer["accepted_count"].clone(),
            answer["rejected_count"].clone()
        ),
        (json!(3), json!(8))
    );
    let results = &answer["results"];
    // The messages and statuses are those of events/send.
    assert_eq!(
        results[1]["error"]["message"],
        "trigger_at must be a future date"
    );
    assert_eq!(results[1]["error"]["status"], 400);
    assert_eq!(results[3]["error"]["status"], 404);
    assert_eq!(
        results[2]["error"]["message"],
        "user_info.email: invalid type: boolean `true`, expected a string"
    );
    assert!(results[1].get("trigger_id").is_none());
    assert_eq!(results[5]["scheduled_for"].as_str(), Some(later.as_str()));
    assert!(results[0].get("scheduled_for").is_none());

    for i in [0, 4] {
        let id = results[i]["trigger_id"].as_str().unwrap();
        assert!(results[i]["job_id"].as_str().is_some_and(|j| j != id));
        let done = app.wait_trigger(id, "completed", WAIT).await;
        assert_eq!(done["summary"]["sent"], 1, "{done}");
    }
    let (_, waiting) = app
        .trigger(results[5]["trigger_id"].as_str().unwrap())
        .await;
    assert_eq!(waiting["status"], "scheduled");
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref IN ('good_1', 'good_2')")
            .await,
        2
    );
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, 2);
    assert_eq!(
        app.execute("SELECT 1 FROM triggers").await,
        3,
        "a trigger for each accepted event, none for a refused one"
    );
    assert_eq!(
        app.execute("SELECT 1 FROM users WHERE user_ref = 'good_1' AND email = 'g1@example.com'")
            .await,
        1
    );
    assert_eq!(
        app.execute("SELECT 1 FROM users WHERE user_ref NOT IN ('good_1', 'good_2', 'later')")
            .await,
        0,
        "a refused event's user_info changed no one"
    );
}

/// The batch itself must be an object holding 1 to 100 events; anything else is refused whole
/// with a code and a pointer, and records nothing. 100 events are one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_no_events_or_more_than_a_hundred_is_refused_whole() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let events = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}))
            .collect()
    };
    for (body, code, pointer) in [
        (json!({"events": []}), "batch_size", "/events"),
        (json!({"events": events(101)}), "batch_size", "/events"),
        (json!({}), "invalid_body", "/events"),
        (json!({"events": null}), "invalid_body", "/events"),
        (
            json!({"events": {"event_name": "trial_expired"}}),
            "invalid_body",
            "/events",
        ),
        (json!([{"event_name": "trial_expired"}]), "invalid_body", ""),
    ] {
        let (status, answer) = app.send_batch(Some(project), body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str(), answer["pointer"].as_str()),
            (400, Some(code), Some(pointer)),
            "{answer}"
        );
    }
    let r = app
        .authed(reqwest::Method::POST, "/api/v1/events/batch")
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 0);

    let (status, answer) = app
        .send_batch(Some(project), json!({"events": events(100)}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted_count"], 100);
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 100);
}

/// Each event may name its own project of the organization. One naming another organization's
/// project, one that does not exist, or none at all is refused as events/send refuses it; the
/// others are accepted. With `X-Team-ID`, an event naming another project is a mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_naming_another_organizations_project_is_refused_alone() {
    let app = TestApp::spawn().await;
    let (project, second) = (app.create_project().await, app.create_project().await);
    let (_, other_token) = app.other_org().await;
    let theirs: Value = app
        .http
        .post(app.url("/api/v1/projects"))
        .bearer_auth(&other_token)
        .json(&json!({"name": "theirs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = |project: Value, user: &str| json!({"project_id": project, "event_name": "trial_expired", "user_info": {"contact_external_id": user}});
    let (status, answer) = app
        .send_batch(
            None,
            json!({"events": [
                event(json!(project), "mine"),
                event(theirs["id"].clone(), "theirs"),
                event(json!(uuid::Uuid::now_v7()), "nowhere"),
                {"event_name": "trial_expired", "user_info": {"contact_external_id": "unplaced"}},
                event(json!(second), "second"),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        [
            accepted(),
            refused("project_forbidden", "/events/1/project_id"),
            refused("invalid_team_context", "/events/2/project_id"),
            refused("invalid_team_context", "/events/3"),
            accepted(),
        ]
    );
    assert_eq!(answer["results"][1]["error"]["status"], 403);
    assert_eq!(answer["results"][3]["error"]["status"], 401);
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE (project_id, user_ref) IN \
             (('{project}', 'mine'), ('{second}', 'second'))"
        ))
        .await,
        2
    );
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 2);

    let (status, answer) = app
        .send_batch(
            Some(project),
            json!({"events": [event(json!(second), "mismatch"), event(json!(project), "same")]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        [
            refused("project_mismatch", "/events/0/project_id"),
            accepted()
        ]
    );

    // The header speaks for the whole request.
    let theirs_id: uuid::Uuid = theirs["id"].as_str().unwrap().parse().unwrap();
    for (team, status, code) in [
        (theirs_id, 403, "project_forbidden"),
        (uuid::Uuid::now_v7(), 401, "invalid_team_context"),
    ] {
        let (got, answer) = app
            .send_batch(
                Some(team),
                json!({"events": [{"event_name": "trial_expired", "user_info": {"contact_external_id": "u"}}]}),
            )
            .await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 3);
}

/// A keyed batch retried gets the same answer and creates nothing new: replayed while its key
/// holds the answer, and run again with the same triggers when its first run died after its
/// commit (the key in flight under a lapsed lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_batch_retried_gets_the_same_answer_and_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let body = json!({"events": [
        {"event_name": "trial_expired", "user_info": {"contact_external_id": "k1"}},
        {"event_name": "trial_expired", "user_info": {"contact_external_id": "k2"}, "trigger_at": "2020-01-01T00:00:00Z"},
        {"event_name": "trial_expired", "user_info": {"contact_external_id": "k3"}},
    ]});
    let send = || {
        app.authed(reqwest::Method::POST, "/api/v1/events/batch")
            .header("idempotency-key", "batch-key")
            .header("x-team-id", project.to_string())
            .json(&body)
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["accepted_count"], 2, "{first}");

    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotency-replay"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 2);

    // As if the gateway had died after the commit, before storing its answer.
    app.execute(
        "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL, \
         response_body = NULL, lease_until = now() - interval '1 second'",
    )
    .await;
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotency-replay").is_none(), "run again");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first, "the same triggers, the same answer");
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 2);
    for i in [0, 2] {
        app.wait_trigger(
            first["results"][i]["trigger_id"].as_str().unwrap(),
            "completed",
            WAIT,
        )
        .await;
    }
    assert_eq!(
        app.execute("SELECT user_ref FROM invitations GROUP BY user_ref HAVING count(*) = 1")
            .await,
        2,
        "each user invited once"
    );
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, 2);
}

/// Several events about one user in a batch are all accepted, and update the user in the
/// batch's order: the later email wins, custom fields merge in turn. One whose custom fields
/// would take the user's attributes past their bound is refused alone, the others committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_one_user_in_a_batch_are_all_accepted_and_applied_in_order() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let about = |email: &str, fields: Value| {
        json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "same",
               "email": email, "custom_fields": fields}})
    };
    let (status, answer) = app
        .send_batch(
            Some(project),
            json!({"events": [
                about("first@example.com", json!({"plan": "free", "seats": 1})),
                {"event_name": "trial_expired", "user_info": {"contact_external_id": "another"}},
                about("second@example.com", json!({"plan": "pro"})),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), [accepted(), accepted(), accepted()]);
    for i in 0..3 {
        app.wait_trigger(
            answer["results"][i]["trigger_id"].as_str().unwrap(),
            "completed",
            WAIT,
        )
        .await;
    }
    assert_eq!(
        app.execute(
            "SELECT 1 FROM users WHERE user_ref = 'same' AND email = 'second@example.com' \
             AND attributes = '{\"plan\": \"pro\", \"seats\": 1}'::jsonb"
        )
        .await,
        1
    );
    assert_eq!(
        app.execute("SELECT 1 FROM triggers WHERE user_ref = 'same'")
            .await,
        2
    );

    // Each 40 KB alone fits; the second, merged after the first, would not.
    let half = |key: &str| json!({ key: "x".repeat(40_000) });
    let (status, answer) = app
        .send_batch(
            Some(project),
            json!({"events": [
                about("third@example.com", half("a")),
                about("fourth@example.com", half("b")),
                {"event_name": "trial_expired", "user_info": {"contact_external_id": "bystander"}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        [
            accepted(),
            refused("attributes_too_large", "/events/1/user_info/custom_fields"),
            accepted(),
        ]
    );
    assert_eq!(
        app.execute(
            "SELECT 1 FROM users WHERE user_ref = 'same' AND email = 'third@example.com' \
             AND attributes ? 'a' AND NOT attributes ? 'b'"
        )
        .await,
        1,
        "the refused event changed nothing"
    );
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 5);
}

/// The accepted events of a batch commit in one transaction: when it fails (here a statement
/// the database refuses for one event's trigger), the request answers 503 and none of them is
/// recorded — no trigger, no user, nothing to send. Sent again once the database takes it, the
/// whole batch is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_fails_is_answered_503_and_records_none_of_its_events() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.execute(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.user_ref = 'poison' THEN RAISE EXCEPTION 'refused for the test'; END IF; \
         RETURN NEW; END $$",
    )
    .await;
    app.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON triggers \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .await;
    let events: Vec<Value> = ["a", "poison", "b"]
        .map(|user| {
            json!({"event_name": "trial_expired",
                   "user_info": {"contact_external_id": user, "email": format!("{user}@example.com")}})
        })
        .into();
    let body = json!({ "events": events });
    let (status, answer) = app.send_batch(Some(project), body.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "database_unavailable");
    for table in ["triggers", "users", "outbox"] {
        assert_eq!(
            app.execute(&format!("SELECT 1 FROM {table}")).await,
            0,
            "nothing in {table}"
        );
    }

    app.execute("DROP TRIGGER refuse_poison ON triggers").await;
    let (status, answer) = app.send_batch(Some(project), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted_count"], 3);
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 3);
}
