//! Targeting, end to end through the real services: a survey's trigger conditions on the
//! event and the user decide who is invited, evaluated against the user as they are when the
//! event is handled; what was decided, and why, is on the trigger; malformed conditions are
//! refused where they are wrong.

use beckon_e2e::TestApp;
use beckon_e2e::hooks::{WAIT, get_json};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A Live survey of `project` named `name`, listening for `payment_failed`, with `conditions`.
async fn survey(app: &TestApp, project: Uuid, name: &str, conditions: Value) -> String {
    let mut trigger = json!({"events": [{"custom": "payment_failed"}]});
    if !conditions.is_null() {
        trigger["conditions"] = conditions;
    }
    let created = app
        .create_survey(
            project,
            json!({"name": name, "trigger": trigger, "cooldown_seconds": 3600}),
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

/// Sends `payment_failed` about `user` with `event_data`, and waits for its trigger.
async fn fire(app: &TestApp, project: Uuid, user: &str, event_data: Value) -> Value {
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "payment_failed", "user_info": {"contact_external_id": user},
                   "event_data": event_data}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.wait_trigger(body["trigger_id"].as_str().unwrap(), "completed", WAIT)
        .await
}

/// Each survey's outcome and reason on the trigger, by survey id.
async fn outcomes(app: &TestApp, trigger: &Value) -> Vec<(String, String, Value)> {
    let details = get_json(app, trigger["details_endpoint"].as_str().unwrap()).await;
    details["surveys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["survey_id"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
                s["reason"].clone(),
            )
        })
        .collect()
}

fn outcome_of<'a>(all: &'a [(String, String, Value)], survey: &str) -> (&'a str, &'a Value) {
    let (_, outcome, reason) = all
        .iter()
        .find(|(id, _, _)| id == survey)
        .unwrap_or_else(|| panic!("no outcome for {survey}: {all:?}"));
    (outcome, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_on_the_event_and_the_user_decide_who_is_invited_and_say_why_not() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let trial_ends = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, body) = app
        .upsert_user(
            json!({"project_id": project, "user_ref": "ada", "email": "ada@example.com",
                            "groups": ["plan-enterprise"], "trial_ends_at": trial_ends,
                            "attributes": {"country": "FR", "seats": 12}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pro_in_europe = survey(
        &app,
        project,
        "Pro users in Europe",
        json!({"all": [{"eq": {"field": "event_data.plan", "value": "pro"}},
                       {"in": {"field": "custom_fields.country", "value": ["FR", "DE"]}}]}),
    )
    .await;
    let big_payments = survey(
        &app,
        project,
        "Big payments",
        json!({"gt": {"field": "event_data.amount", "value": 100}}),
    )
    .await;
    let not_ada = survey(
        &app,
        project,
        "Not Ada",
        json!({"all": [{"exists": {"field": "email"}},
                       {"not": {"starts_with": {"field": "email", "value": "ada@"}}}]}),
    )
    .await;
    let trial_ending = survey(
        &app,
        project,
        "Trial ending, enterprise",
        json!({"any": [{"before": {"field": "trial_ends_at", "value": "now+3d"}},
                       {"contains": {"field": "groups", "value": "nobody"}}]}),
    )
    .await;
    let everyone = survey(&app, project, "Everyone", Value::Null).await;

    let trigger = fire(&app, project, "ada", json!({"plan": "pro", "amount": 49})).await;
    assert_eq!(
        trigger["summary"],
        json!({"total_contacts": 1, "matched": 5, "sent": 3, "filtered": 2,
               "filtered_by": {"cooldown": 0, "sample": 0, "condition": 2, "cap": 0}, "failed": 0})
    );
    let all = outcomes(&app, &trigger).await;
    assert_eq!(outcome_of(&all, &pro_in_europe).0, "created");
    assert_eq!(outcome_of(&all, &trial_ending).0, "created");
    assert_eq!(outcome_of(&all, &everyone).0, "created");
    assert_eq!(
        outcome_of(&all, &big_payments),
        ("condition_false", &json!("/gt"))
    );
    assert_eq!(
        outcome_of(&all, &not_ada),
        ("condition_false", &json!("/all/1/not"))
    );

    // The user as they are when the event is handled: Ada moved, and her payment was big.
    let (status, _) = app
        .upsert_user(json!({"project_id": project, "user_ref": "ada",
                            "attributes": {"country": "US"}}))
        .await;
    assert_eq!(status, 200);
    let trigger = fire(&app, project, "ada", json!({"plan": "pro", "amount": 500})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(
        outcome_of(&all, &pro_in_europe),
        ("condition_false", &json!("/all/1/in"))
    );
    // Skipped the first time, so no cooldown was started: invited now.
    assert_eq!(outcome_of(&all, &big_payments).0, "created");
    assert_eq!(outcome_of(&all, &everyone).0, "cooldown");

    // An event about a user the project has never described: every user field is absent.
    let trigger = fire(&app, project, "stranger", json!({"plan": "pro"})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(
        outcome_of(&all, &not_ada),
        ("condition_false", &json!("/all/0/exists"))
    );
    assert_eq!(
        outcome_of(&all, &trial_ending),
        ("condition_false", &json!("/any"))
    );
    assert_eq!(outcome_of(&all, &everyone).0, "created");

    // A dispatch counts them too.
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "bob", "event": {"custom": "payment_failed"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suppressed_by_condition_count"], 4, "{body}");
    assert_eq!(body["created_count"], 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_conditions_are_refused_pointing_at_the_offending_part() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let post = |trigger: Value| {
        app.authed(Method::POST, &format!("/api/v1/projects/{project}/surveys"))
            .json(&json!({"name": "S", "status": "live",
                          "questions": [{"id": "nps", "type": "nps", "title": "How likely?"}],
                          "trigger": trigger}))
            .send()
    };
    let events = json!([{"custom": "payment_failed"}]);
    for (conditions, pointer) in [
        (
            json!({"all": [{"eq": {"field": "event_data.plan", "value": "pro"}},
                           {"gt": {"field": "email", "value": 3}}]}),
            "/trigger/conditions/all/1/gt/field",
        ),
        (
            json!({"any": [{"eq": {"field": "plan", "value": "pro"}}]}),
            "/trigger/conditions/any/0/eq/field",
        ),
        (
            json!({"eq": {"field": "event_data.plan", "value": {"nested": true}}}),
            "/trigger/conditions/eq/value",
        ),
        (
            json!({"before": {"field": "trial_ends_at", "value": "next tuesday"}}),
            "/trigger/conditions/before/value",
        ),
        (json!({"all": []}), "/trigger/conditions/all"),
        (
            json!({"in": {"field": "custom_fields.country", "value": []}}),
            "/trigger/conditions/in/value",
        ),
    ] {
        let r = post(json!({"events": events, "conditions": conditions}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{conditions}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_condition", "{body}");
        assert_eq!(body["pointer"], pointer, "{body}");
    }
    let r = post(json!({"events": events, "conditions": {"matches": {"field": "email"}}}))
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["pointer"].as_str()),
        (Some("invalid_condition"), Some("/trigger/conditions")),
        "{body}"
    );

    // A valid condition reads back as written, and a PATCH is checked the same way.
    let conditions = json!({"all": [
        {"eq": {"field": "event_data.plan", "value": "pro"}},
        {"after": {"field": "created_at", "value": "now-14d"}}]});
    let r = post(json!({"events": events, "conditions": conditions}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["trigger"]["conditions"], conditions);
    let path = format!(
        "/api/v1/projects/{project}/surveys/{}",
        created["id"].as_str().unwrap()
    );
    assert_eq!(
        get_json(&app, &path).await["trigger"]["conditions"],
        conditions
    );
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"trigger": {"events": events,
                                  "conditions": {"not": {"lt": {"field": "name", "value": 1}}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["pointer"], "/trigger/conditions/not/lt/field",
        "{body}"
    );
    assert_eq!(
        get_json(&app, &path).await["trigger"]["conditions"],
        conditions
    );
}

/// A survey sampled by user rolls once per user: each user is always in or always out, while
/// a survey sampled by event rolls every event anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_sampled_by_user_keeps_each_user_in_or_out() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let mut ids = Vec::new();
    for sample_by in ["user", "event"] {
        let created = app
            .create_survey(
                project,
                json!({"name": sample_by, "trigger": {"events": ["trial_expired"]},
                       "sample_rate": 0.5, "sample_by": sample_by}),
            )
            .await;
        assert_eq!(created["sample_by"], sample_by, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (by_user, by_event) = (&ids[0], &ids[1]);
    let invited = |body: &Value, survey: &str| {
        body["created_invitations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["survey_id"] == survey)
    };
    let (mut users_in, mut users_out, mut mixed_by_event) = (0, 0, 0);
    for user in 0..30 {
        let mut rolls = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (status, body) = app
                .dispatch(
                    json!({"project_id": project, "user_ref": format!("u{user}"),
                                 "event": "trial_expired"}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            rolls.0.push(invited(&body, by_user));
            rolls.1.push(invited(&body, by_event));
        }
        assert!(
            rolls.0.iter().all(|r| *r == rolls.0[0]),
            "user u{user} rolled differently: {:?}",
            rolls.0
        );
        if rolls.0[0] {
            users_in += 1;
        } else {
            users_out += 1;
        }
        if rolls.1.iter().any(|r| *r != rolls.1[0]) {
            mixed_by_event += 1;
        }
    }
    assert!(
        users_in > 0 && users_out > 0,
        "{users_in} in, {users_out} out"
    );
    assert!(
        mixed_by_event > 0,
        "sampling by event rolls each event anew"
    );
    let path = format!("/api/v1/projects/{project}/surveys/{by_user}");
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"sample_by": "session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"sample_by": "event"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_json(&app, &path).await["sample_by"], "event");
}

/// A project's cap holds across its surveys under concurrency: twenty dispatches at once for
/// one user, each for another survey, create exactly as many invitations as the cap allows;
/// the rest are `capped`, counted apart. Other users are not affected, and lifting the cap
/// lets the user be invited again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projects_cap_holds_across_surveys_under_concurrent_dispatches() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let path = format!("/api/v1/projects/{project}");
    for bad in [
        json!({"max": 0, "period_seconds": 86400}),
        json!({"max": 1, "period_seconds": 1}),
        json!({"max": 1}),
    ] {
        let r = app
            .authed(Method::PATCH, &path)
            .json(&json!({"invitation_cap": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["pointer"]
                .as_str()
                .unwrap()
                .starts_with("/invitation_cap"),
            "{body}"
        );
    }
    let cap = json!({"max": 3, "period_seconds": 1_209_600});
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"invitation_cap": cap}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get_json(&app, &path).await["invitation_cap"], cap);
    for i in 0..10 {
        app.create_survey(
            project,
            json!({"name": format!("S{i}"), "trigger": {"events": [{"custom": format!("e{i}")}]}}),
        )
        .await;
    }
    let dispatches = (0..20).map(|i| {
        app.dispatch(json!({"project_id": project, "user_ref": "busy",
                            "event": {"custom": format!("e{}", i % 10)}}))
    });
    let answers = futures_util::future::join_all(dispatches).await;
    let (mut created, mut capped) = (0, 0);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        created += body["created_count"].as_u64().unwrap();
        capped += body["suppressed_by_cap_count"].as_u64().unwrap();
    }
    assert_eq!((created, capped), (3, 17), "{answers:?}");
    let capped_trigger = answers
        .iter()
        .find(|(_, b)| b["suppressed_by_cap_count"] == 1)
        .map(|(_, b)| b["trigger_id"].as_str().unwrap().to_owned())
        .unwrap();
    let trigger = get_json(&app, &format!("/api/v1/triggers/{capped_trigger}")).await;
    assert_eq!(trigger["summary"]["filtered_by"]["cap"], 1, "{trigger}");
    assert_eq!(trigger["summary"]["filtered"], 1, "{trigger}");
    let details = get_json(&app, trigger["details_endpoint"].as_str().unwrap()).await;
    // The other nine surveys listen for other events.
    let (matched, others): (Vec<&Value>, Vec<&Value>) = details["surveys"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|s| s["outcome"] != "not_subscribed");
    assert_eq!((matched.len(), others.len()), (1, 9), "{details}");
    assert_eq!(matched[0]["outcome"], "capped", "{details}");
    assert!(matched[0]["reason"].as_str().unwrap().contains("cap"));

    let (_, other) = app
        .dispatch(json!({"project_id": project, "user_ref": "calm", "event": {"custom": "e0"}}))
        .await;
    assert_eq!(other["created_count"], 1, "{other}");
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"invitation_cap": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(get_json(&app, &path).await["invitation_cap"].is_null());
    let (_, again) = app
        .dispatch(json!({"project_id": project, "user_ref": "busy", "event": {"custom": "e9"}}))
        .await;
    assert_eq!(again["created_count"], 1, "{again}");
}

/// Conditions stored by a later version and rolled back (or edited by hand) no longer read:
/// the survey is still listed, read and changed (shown without them), the matcher errors it,
/// saying why, and saving its trigger again repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_whose_stored_conditions_no_longer_read_stays_usable() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let bad = survey(
        &app,
        project,
        "Bad",
        json!({"eq": {"field": "email", "value": "a@b.c"}}),
    )
    .await;
    let good = survey(&app, project, "Good", Value::Null).await;
    app.execute(&format!(
        "UPDATE surveys SET trigger_json = jsonb_set(trigger_json, '{{conditions}}', \
         '{{\"matches\": {{\"field\": \"email\", \"value\": \"^a\"}}}}') WHERE id = '{bad}'"
    ))
    .await;
    let path = format!("/api/v1/projects/{project}/surveys/{bad}");
    let listed = get_json(&app, &format!("/api/v1/projects/{project}/surveys")).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    let shown = get_json(&app, &path).await;
    assert!(shown["trigger"].get("conditions").is_none(), "{shown}");
    assert_eq!(
        shown["trigger"]["events"],
        json!([{"custom": "payment_failed"}])
    );

    let trigger = fire(&app, project, "ada", json!({})).await;
    let all = outcomes(&app, &trigger).await;
    let (outcome, reason) = outcome_of(&all, &bad);
    assert_eq!(outcome, "errored");
    assert!(
        reason.as_str().unwrap().contains("could not be read"),
        "{reason}"
    );
    assert_eq!(outcome_of(&all, &good).0, "created");

    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"status": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .authed(Method::PATCH, &path)
        .json(&json!({"status": "live", "trigger": {"events": [{"custom": "payment_failed"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let trigger = fire(&app, project, "bob", json!({})).await;
    assert_eq!(
        outcome_of(&outcomes(&app, &trigger).await, &bad).0,
        "created"
    );
}

/// Sends `body` to `path` with `method`; the status and the JSON answer.
async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.authed(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_is_shared_by_surveys_and_changing_it_changes_them() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    for (user, country) in [("ada", "FR"), ("bob", "DE")] {
        let (status, body) = app
            .upsert_user(json!({"project_id": project, "user_ref": user,
                                "attributes": {"country": country}}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let segments = format!("/api/v1/projects/{project}/segments");
    let (status, french) = call(
        &app,
        Method::POST,
        &segments,
        Some(json!({"name": "French", "condition":
                    {"eq": {"field": "custom_fields.country", "value": "FR"}}})),
    )
    .await;
    assert_eq!(status, 201, "{french}");
    let segment = french["id"].as_str().unwrap().to_owned();
    let pro_french = survey(
        &app,
        project,
        "Pro and French",
        json!({"all": [{"segment": segment}, {"eq": {"field": "event_data.plan", "value": "pro"}}]}),
    )
    .await;
    let not_french = survey(
        &app,
        project,
        "Not French",
        json!({"not": {"segment": segment}}),
    )
    .await;

    let trigger = fire(&app, project, "ada", json!({"plan": "pro"})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(outcome_of(&all, &pro_french).0, "created");
    assert_eq!(
        outcome_of(&all, &not_french),
        ("condition_false", &json!("/not"))
    );
    let trigger = fire(&app, project, "bob", json!({"plan": "pro"})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(
        outcome_of(&all, &pro_french),
        ("condition_false", &json!("/all/0/segment"))
    );
    assert_eq!(outcome_of(&all, &not_french).0, "created");

    // Changing the segment changes both surveys from the next event on.
    let (status, changed) = call(
        &app,
        Method::PATCH,
        &format!("{segments}/{segment}"),
        Some(
            json!({"condition": {"in": {"field": "custom_fields.country", "value": ["FR", "DE"]}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "French");
    let trigger = fire(&app, project, "bob", json!({"plan": "pro"})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(outcome_of(&all, &pro_french).0, "created");
    // Bob is in the segment now, so out of the survey that leaves it out.
    assert_eq!(
        outcome_of(&all, &not_french),
        ("condition_false", &json!("/not"))
    );
    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("{segments}/{segment}"),
        Some(json!({"condition": {"eq": {"field": "custom_fields.country", "value": "IT"}}})),
    )
    .await;
    assert_eq!(status, 200);
    let trigger = fire(&app, project, "carol", json!({"plan": "pro"})).await;
    let all = outcomes(&app, &trigger).await;
    assert_eq!(outcome_of(&all, &not_french).0, "created");
    assert_eq!(outcome_of(&all, &pro_french).0, "condition_false");

    // In use: not deleted, and the answer names the surveys.
    let (status, body) = call(&app, Method::DELETE, &format!("{segments}/{segment}"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("segment_in_use")),
        "{body}"
    );
    for survey in [&pro_french, &not_french] {
        assert!(
            body["message"].as_str().unwrap().contains(survey.as_str()),
            "{body}"
        );
    }
    for survey in [&pro_french, &not_french] {
        let (status, _) = call(
            &app,
            Method::PATCH,
            &format!("/api/v1/projects/{project}/surveys/{survey}"),
            Some(json!({"trigger": {"events": [{"custom": "payment_failed"}]}})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = call(&app, Method::DELETE, &format!("{segments}/{segment}"), None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&app, Method::GET, &format!("{segments}/{segment}"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("segment_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_checked_kept_to_their_project_and_listed() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let segments = format!("/api/v1/projects/{project}/segments");
    let create = |body: Value| call(&app, Method::POST, &segments, Some(body));
    for (body, code, pointer) in [
        (
            json!({"name": "Paid", "condition": {"all": [{"exists": {"field": "email"}},
                   {"eq": {"field": "event_data.plan", "value": "pro"}}]}}),
            "invalid_condition",
            "/condition/all/1/eq/field",
        ),
        (
            json!({"name": "Nested", "condition": {"segment": Uuid::now_v7()}}),
            "invalid_condition",
            "/condition/segment",
        ),
        (
            json!({"name": "Bad", "condition": {"eq": {"field": "plan", "value": 1}}}),
            "invalid_condition",
            "/condition/eq/field",
        ),
        (
            json!({"name": "  ", "condition": {"exists": {"field": "email"}}}),
            "invalid_name",
            "/name",
        ),
        (
            json!({"name": "X", "description": "d".repeat(501),
                   "condition": {"exists": {"field": "email"}}}),
            "invalid_description",
            "/description",
        ),
    ] {
        let (status, answer) = create(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["pointer"].as_str()),
            (Some(code), Some(pointer)),
            "{answer}"
        );
    }
    let (status, first) =
        create(json!({"name": " Has email ", "condition": {"exists": {"field": "email"}}})).await;
    assert_eq!(
        (status, first["name"].as_str()),
        (201, Some("Has email")),
        "{first}"
    );
    let (status, body) =
        create(json!({"name": "Has email", "condition": {"exists": {"field": "name"}}})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("segment_name_taken"))
    );
    let (status, second) = create(
        json!({"name": "Beta", "condition": {"contains": {"field": "groups", "value": "beta"}}}),
    )
    .await;
    assert_eq!(status, 201);

    // Listed newest first, a page at a time.
    let page = get_json(&app, &format!("{segments}?limit=1")).await;
    assert_eq!(page["data"][0]["id"], second["id"], "{page}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = get_json(&app, &format!("{segments}?limit=1&cursor={cursor}")).await;
    assert_eq!(page["data"][0]["id"], first["id"], "{page}");
    assert_eq!(page["has_more"], false);

    // A survey may refer only to its own project's segments.
    let other_project = app.create_project().await;
    let (status, foreign) = call(
        &app,
        Method::POST,
        &format!("/api/v1/projects/{other_project}/segments"),
        Some(json!({"name": "Elsewhere", "condition": {"exists": {"field": "email"}}})),
    )
    .await;
    assert_eq!(status, 201);
    for missing in [foreign["id"].clone(), json!(Uuid::now_v7())] {
        let (status, body) = call(
            &app,
            Method::POST,
            &format!("/api/v1/projects/{project}/surveys"),
            Some(json!({"name": "S", "questions": [{"id": "nps", "type": "nps", "title": "How likely?"}],
                        "trigger": {"events": [{"custom": "payment_failed"}],
                                    "conditions": {"all": [{"exists": {"field": "email"}}, {"segment": missing}]}}})),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str(), body["pointer"].as_str()),
            (
                400,
                Some("segment_not_found"),
                Some("/trigger/conditions/all/1/segment")
            ),
            "{body}"
        );
    }

    // Another organization sees nothing of them.
    let (_, other_token) = app.other_org().await;
    for (method, path) in [
        (Method::GET, segments.clone()),
        (
            Method::GET,
            format!("{segments}/{}", first["id"].as_str().unwrap()),
        ),
        (
            Method::DELETE,
            format!("{segments}/{}", first["id"].as_str().unwrap()),
        ),
    ] {
        let r = app
            .http
            .request(method, app.url(&path))
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let still = get_json(
        &app,
        &format!("{segments}/{}", first["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(still["name"], "Has email");
}

/// The database's rows, every table, as `pg_dump --data-only` writes them (without the
/// random key each dump is fenced with).
fn dump(app: &TestApp) -> Vec<String> {
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", app.db.url()])
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "{dump:?}");
    let lines: Vec<String> = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(str::to_owned)
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("COPY public.cooldowns")),
        "a real dump"
    );
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_each_survey_would_do_and_why_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "ada",
                            "attributes": {"plan": "free"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let payment_failed = json!([{"custom": "payment_failed"}]);
    let mut ids = Vec::new();
    for (name, overrides) in [
        ("Cooling", json!({"cooldown_seconds": 3600})),
        (
            "Pro only",
            json!({"trigger": {"events": payment_failed,
                               "conditions": {"eq": {"field": "custom_fields.plan", "value": "pro"}}}}),
        ),
        (
            "Never sampled",
            json!({"sample_rate": 0.0, "sample_by": "user"}),
        ),
        ("Open", json!({"cooldown_seconds": 0})),
        ("Also open", json!({"cooldown_seconds": 0})),
        ("Draft", json!({"status": "draft"})),
        (
            "Other event",
            json!({"trigger": {"events": ["trial_expired"]}}),
        ),
    ] {
        let mut body = json!({"name": name, "trigger": {"events": payment_failed}});
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        ids.push(
            app.create_survey(project, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Ada's first payment failure: invited to the open surveys and "Cooling", which cools.
    let first = fire(&app, project, "ada", json!({})).await;
    assert_eq!(first["summary"]["sent"], 3, "{first}");
    let r = app
        .authed(Method::PATCH, &format!("/api/v1/projects/{project}"))
        .json(&json!({"invitation_cap": {"max": 4, "period_seconds": 86400}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Once the services are done with the first event (its outbox rows cleaned, its
    // announcements handled): the rows stop changing.
    let before = app
        .eventually(WAIT, "the database to settle", || async {
            let first = dump(&app);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            (dump(&app) == first).then_some(first)
        })
        .await;
    let dry = json!({"project_id": project, "user_ref": "ada",
                     "event": {"custom": "payment_failed"}, "dry_run": true});
    let r = app
        .authed(Method::POST, "/api/v1/lifecycle/dispatch")
        .header("Idempotency-Key", "dry-1")
        .json(&dry)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["dry_run"], true, "{answer}");
    let decisions: Vec<(&str, &str)> = answer["surveys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        decisions,
        [
            ("Cooling", "cooldown"),
            ("Pro only", "condition_false"),
            ("Never sampled", "sample"),
            ("Open", "created"),
            ("Also open", "capped"),
            ("Draft", "not_live"),
            ("Other event", "not_subscribed"),
        ]
    );
    let surveys = answer["surveys"].as_array().unwrap();
    let until = time::OffsetDateTime::parse(
        surveys[0]["until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(55) && left <= time::Duration::hours(1),
        "{left}"
    );
    assert_eq!(surveys[1]["reason"], "/eq");
    assert!(
        surveys[4]["reason"].as_str().unwrap().contains("cap of 4"),
        "{answer}"
    );
    assert_eq!(
        (
            answer["matched_surveys"].as_u64(),
            answer["created_count"].as_u64(),
            answer["suppressed_by_cap_count"].as_u64()
        ),
        (Some(5), Some(1), Some(1))
    );
    assert_eq!(surveys[0]["survey_id"], ids[0].as_str());
    // Again, the same; and nothing was written, claimed or kept.
    let (status, again) = app.dispatch(dry.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["surveys"], answer["surveys"]);
    // events/send too, with the user as `user_info` would leave them: on the pro plan now.
    let (status, sent) = app
        .send_event(
            Some(project),
            json!({"event_name": "payment_failed", "dry_run": true,
                   "user_info": {"contact_external_id": "ada", "custom_fields": {"plan": "pro"}}}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let decisions: Vec<(&str, &str)> = sent["surveys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &decisions[..5],
        [
            ("Cooling", "cooldown"),
            ("Pro only", "created"),
            ("Never sampled", "sample"),
            ("Open", "capped"),
            ("Also open", "capped"),
        ]
    );
    let r = app
        .authed(Method::POST, "/api/v1/events/batch")
        .header("X-Team-ID", project.to_string())
        .json(
            &json!({"events": [{"event_name": "payment_failed", "dry_run": true,
                                  "user_info": {"contact_external_id": "ada"}}]}),
        )
        .send()
        .await
        .unwrap();
    let batch: Value = r.json().await.unwrap();
    assert_eq!(
        (
            batch["results"][0]["error"]["code"].as_str(),
            batch["accepted_count"].as_u64()
        ),
        (Some("dry_run_unsupported"), Some(0)),
        "{batch}"
    );
    let after = dump(&app);
    let changed: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        changed.is_empty() && gone.is_empty(),
        "a dry run wrote to the database: new rows {changed:#?}, rows gone {gone:#?}"
    );

    // The real dispatch does what the dry run said.
    let mut real = dry.clone();
    real["dry_run"] = json!(false);
    let (status, done) = app.dispatch(real).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (
            done["created_count"].as_u64(),
            done["suppressed_by_cap_count"].as_u64(),
            done["suppressed_by_cooldown_count"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(done["created_invitations"][0]["survey_id"], ids[3].as_str());

    let mut wrong = dry;
    wrong["dry_run"] = json!("yes");
    let (status, body) = app.dispatch(wrong).await;
    assert_eq!(
        (status, body["code"].as_str(), body["pointer"].as_str()),
        (400, Some("invalid_body"), Some("/dry_run"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_says_why_each_survey_of_the_project_was_or_was_not_sent() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let payment_failed = json!({"events": [{"custom": "payment_failed"}]});
    let mut ids = Vec::new();
    for overrides in [
        json!({"name": "Cooling", "cooldown_seconds": 3600}),
        json!({"name": "Draft", "status": "draft"}),
        json!({"name": "Paused", "status": "paused"}),
        json!({"name": "Other event", "trigger": {"events": ["trial_expired"]}}),
        json!({"name": "Archived", "status": "archived"}),
    ] {
        let mut body = json!({"trigger": payment_failed});
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        ids.push(
            app.create_survey(project, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first = fire(&app, project, "ada", json!({})).await;
    let second = fire(&app, project, "ada", json!({})).await;
    // Counts are of the matched surveys only.
    assert_eq!(second["summary"]["matched"], 1, "{second}");
    let listed = |all: &[(String, String, Value)]| -> Vec<(String, String)> {
        let mut listed: Vec<_> = all
            .iter()
            .map(|(id, outcome, _)| (id.clone(), outcome.clone()))
            .collect();
        listed.sort();
        listed
    };
    let expected = |cooling: &str| {
        let mut expected = vec![
            (ids[0].clone(), cooling.to_owned()),
            (ids[1].clone(), "not_live".to_owned()),
            (ids[2].clone(), "not_live".to_owned()),
            (ids[3].clone(), "not_subscribed".to_owned()),
        ];
        expected.sort();
        expected
    };
    assert_eq!(listed(&outcomes(&app, &first).await), expected("created"));
    assert_eq!(listed(&outcomes(&app, &second).await), expected("cooldown"));

    // The cooldown says until when.
    let details = get_json(&app, second["details_endpoint"].as_str().unwrap()).await;
    let cooling = details["surveys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["survey_id"] == ids[0].as_str())
        .unwrap();
    let until = time::OffsetDateTime::parse(
        cooling["until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(55) && left <= time::Duration::hours(1),
        "{details}"
    );
}
