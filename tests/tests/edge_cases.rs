//! Edge cases of segments, dry runs, batches and per-survey reasons: another project under the
//! same Idempotency-Key, a dry run that must tell the truth, a project with very many surveys,
//! and stored rows a later version wrote.

use beckon_e2e::TestApp;
use beckon_e2e::hooks::WAIT;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// `POST path` with an `Idempotency-Key` and an `X-Team-ID`: the status, whether it was a
/// replay, and the body.
async fn keyed(
    app: &TestApp,
    path: &str,
    key: &str,
    team: Uuid,
    body: &Value,
) -> (u16, bool, Value) {
    let r = app
        .authed(Method::POST, path)
        .header("idempotency-key", key)
        .header("x-team-id", team.to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replay = r.headers().get("idempotency-replay").is_some();
    (status, replay, r.json().await.unwrap_or(Value::Null))
}

/// `X-Team-ID` names the project the events go to, but the Idempotency-Key's fingerprint is
/// the method, path and body only. The same key and body sent for another project is another
/// request: it must be refused (422) or run for that project, not answered with the first
/// project's triggers while nothing is recorded for the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_for_another_project_is_not_the_first_projects_answer() {
    let app = TestApp::spawn().await;
    let (first, second) = (app.create_project().await, app.create_project().await);
    for project in [first, second] {
        app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
            .await;
    }
    let event = json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "ada"}});
    let mut wrong = Vec::new();
    for (path, body) in [
        ("/api/v1/events/batch", json!({"events": [event.clone()]})),
        ("/api/v1/events/send", event.clone()),
    ] {
        let key = format!("key-{path}");
        let (status, _, answer) = keyed(&app, path, &key, first, &body).await;
        assert!(status == 200 || status == 201, "{path}: {status} {answer}");
        let (status, replay, answer) = keyed(&app, path, &key, second, &body).await;
        let recorded = app
            .execute(&format!(
                "SELECT 1 FROM triggers WHERE project_id = '{second}'"
            ))
            .await;
        if status != 422 && recorded == 0 {
            wrong.push(format!(
                "{path}: {status} (replay: {replay}) with the first project's answer {answer}, \
                 and nothing recorded for the second project"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A dry run says what the real event would do. An event whose `custom_fields` would take the
/// user's attributes past their 64 KiB bound is refused (400 `attributes_too_large`) and
/// invites no one; the dry run of the same event must not say an invitation would be created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_an_event_that_would_be_refused_does_not_say_it_would_invite() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": [{"custom": "payment_failed"}]}}),
    )
    .await;
    // Ada's attributes hold 60 KB already.
    let filler = "x".repeat(10_000);
    let kept: serde_json::Map<String, Value> = (0..6)
        .map(|i| (format!("k{i}"), Value::from(filler.clone())))
        .collect();
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "ada", "attributes": kept}))
        .await;
    assert_eq!(status, 200, "{body}");
    let event = |dry_run: bool| {
        json!({"event_name": "payment_failed", "dry_run": dry_run,
               "user_info": {"contact_external_id": "ada", "custom_fields": {"more": filler}}})
    };

    let (real_status, real) = app.send_event(Some(project), event(false)).await;
    assert_eq!(
        (real_status, real["code"].as_str()),
        (400, Some("attributes_too_large")),
        "the real event is refused: {real}"
    );
    let (status, dry) = app.send_event(Some(project), event(true)).await;
    let said: Vec<&str> = dry["surveys"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["decision"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        status == 400 || !said.contains(&"created"),
        "the real event is refused 400 {}, but its dry run answers {status} and says it \
         would invite: {dry}",
        real["code"]
    );
}

/// A project with many surveys that are not Live (drafts pile up): every event now records a
/// reason for each of them on its trigger, in one insert of seven parameters a row. Past
/// 65 535 parameters the insert cannot be sent at all, so the event is never handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_project_with_very_many_drafts_is_still_handled() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let live = app
        .create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let live = live["id"].as_str().unwrap();
    let drafts = 9_400;
    let copied = app
        .execute(&format!(
            "INSERT INTO surveys (id, org_id, project_id, name, status, current_version, \
               trigger_events, trigger_json, cooldown_seconds, sample_rate, \
               invitation_lifetime_seconds, created_at, updated_at, trial_reminder_lead_seconds, \
               sample_by) \
             SELECT gen_random_uuid(), org_id, project_id, name || ' draft ' || g, 'draft', 1, \
               trigger_events, trigger_json, cooldown_seconds, sample_rate, \
               invitation_lifetime_seconds, created_at, updated_at, trial_reminder_lead_seconds, \
               sample_by \
             FROM surveys, generate_series(1, {drafts}) g WHERE id = '{live}'"
        ))
        .await;
    assert_eq!(copied, drafts);
    app.execute(&format!(
        "INSERT INTO survey_versions (survey_id, version, questions) \
         SELECT s.id, 1, v.questions FROM surveys s, survey_versions v \
         WHERE s.project_id = '{project}' AND s.status = 'draft' AND v.survey_id = '{live}'"
    ))
    .await;

    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let timeout = WAIT * 2;
    let start = std::time::Instant::now();
    let trigger = loop {
        let (_, trigger) = app.trigger(&id).await;
        if trigger["status"] == "completed" || trigger["status"] == "failed" {
            break trigger;
        }
        assert!(
            start.elapsed() < timeout,
            "the event's trigger is still {} after {timeout:?}: {trigger}; logs in {}",
            trigger["status"],
            app.log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (
            trigger["status"].as_str(),
            trigger["summary"]["sent"].as_u64()
        ),
        (Some("completed"), Some(1)),
        "{trigger}"
    );
}

/// A segment whose stored condition no longer reads (written by a later version and rolled
/// back, or edited by hand) must not break its project's segment list, as a survey's
/// unreadable conditions do not break the survey list: otherwise no one can even find the
/// segment to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_stored_condition_no_longer_reads_does_not_break_the_list() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let path = format!("/api/v1/projects/{project}/segments");
    let r = app
        .authed(Method::POST, &path)
        .json(&json!({"name": "Has email", "condition": {"exists": {"field": "email"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.execute(&format!(
        "INSERT INTO segments (id, org_id, project_id, name, condition) \
         VALUES (gen_random_uuid(), '{}', '{project}', 'From a later version', \
                 '{{\"matches\": {{\"field\": \"email\", \"value\": \"^a\"}}}}')",
        app.org_id
    ))
    .await;
    let r = app.authed(Method::GET, &path).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "listing the project's segments: {body}");
}

/// A batch whose events each push their user's attributes past the bound is refused event by
/// event, as it should be. But it must not take a transaction per refused event, each
/// re-inserting (and rolling back) every trigger and outbox row of the batch: 100 events
/// would make 100 transactions and some 5 000 rolled-back rows each of triggers and outbox,
/// for the price of 100 events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_events_each_too_large_for_its_user_is_not_retried_once_per_event() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // Ada's attributes hold 64 KB already.
    let kept: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("k{i}"), Value::from("x".repeat(1_000))))
        .collect();
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "ada", "attributes": kept}))
        .await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = (0..100)
        .map(|i| {
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "ada",
                   "custom_fields": {format!("new{i}"): "y".repeat(1_500)}}})
        })
        .collect();

    let metrics = app.ops_url("/metrics");
    let series = |part: &'static str| {
        let (app, metrics) = (&app, &metrics);
        async move {
            app.metric(metrics, &format!("beckon_intake_group_size_{part}"))
                .await
                .unwrap_or(0.0)
        }
    };
    let (groups_before, events_before) = (series("count").await, series("sum").await);
    let (status, answer) = app
        .send_batch(Some(project), json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["accepted_count"].as_u64(),
            answer["rejected_count"].as_u64()
        ),
        (Some(0), Some(100)),
        "each event alone takes Ada past the bound"
    );
    let transactions = series("count").await - groups_before;
    let committed_again = series("sum").await - events_before;
    assert!(
        transactions <= 2.0,
        "one batch request ran {transactions} transactions, writing and rolling back \
         {committed_again} events' triggers and outbox rows"
    );
}

/// A dry run reads, one query after another on one connection, the cooldown of every Live
/// survey the event matches, and holds a pooled connection of the gateway all that time. For
/// the price of one request each (any organization may send thousands a second), a few dry
/// runs against a project with many Live surveys take every connection of the gateway, and
/// another organization's requests wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_of_one_organization_do_not_stall_another_organizations_requests() {
    use futures_util::future::join_all;
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let live = app
        .create_survey(
            project,
            json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 3600}),
        )
        .await;
    let live = live["id"].as_str().unwrap();
    app.execute(&format!(
        "INSERT INTO surveys (id, org_id, project_id, name, status, current_version, \
           trigger_events, trigger_json, cooldown_seconds, sample_rate, \
           invitation_lifetime_seconds, created_at, updated_at, trial_reminder_lead_seconds, \
           sample_by) \
         SELECT gen_random_uuid(), org_id, project_id, name || ' ' || g, status, 1, \
           trigger_events, trigger_json, cooldown_seconds, sample_rate, \
           invitation_lifetime_seconds, created_at, updated_at, trial_reminder_lead_seconds, \
           sample_by \
         FROM surveys, generate_series(1, 3000) g WHERE id = '{live}'"
    ))
    .await;
    let dry = json!({"project_id": project, "user_ref": "ada", "event": "trial_expired",
                     "dry_run": true});
    let start = std::time::Instant::now();
    let (status, answer) = app.dispatch(dry.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let one = start.elapsed();

    let (_, other_token) = app.other_org().await;
    let other = async {
        // Once the dry runs are under way.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = std::time::Instant::now();
        let r = app
            .http
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), start.elapsed())
    };
    let dry_runs = join_all((0..8).map(|_| app.dispatch(dry.clone())));
    let (answers, (status, waited)) = tokio::join!(dry_runs, other);
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s != 200)
        .map(|(_, body)| body)
        .collect();
    // What is asserted is the harm, not a time (speed is `make bench`'s): another
    // organization is answered, and no dry run is refused for want of a connection.
    assert!(
        status == 200 && refused.is_empty(),
        "another organization's request was answered {status} after {waited:?}, behind 8 dry \
         runs (one alone takes {one:?}; {} of them were refused: {:?})",
        refused.len(),
        refused.first()
    );
}

/// Rows a later version wrote must not make the trigger unreadable. This release records two
/// outcomes the release before cannot parse (`not_live`, `not_subscribed`): during a rolling
/// upgrade, or after rolling the binaries back, the earlier gateway answers 500 for the
/// workflow of every trigger the new invitation service completed. The same will happen at the
/// next new outcome: the workflow should show an outcome it does not know rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_with_an_outcome_from_a_later_version_still_reads() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_survey(
        project,
        json!({"name": "Draft", "status": "draft", "trigger": {"events": ["trial_expired"]}}),
    )
    .await;
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let trigger = app.wait_trigger(&id, "completed", WAIT).await;
    let path = trigger["details_endpoint"].as_str().unwrap().to_owned();
    let r = app.authed(Method::GET, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // What a later version might record; its migration widens the check, as this one's did.
    app.execute("ALTER TABLE trigger_surveys DROP CONSTRAINT trigger_surveys_outcome_check")
        .await;
    app.execute(&format!(
        "UPDATE trigger_surveys SET outcome = 'not_targeted' \
         WHERE trigger_id = '{id}' AND outcome = 'not_live'"
    ))
    .await;
    let r = app.authed(Method::GET, &path).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "the trigger's workflow: {body}");
}

/// A keyed request whose first run committed its events and died before answering is run
/// again by the retry that takes its key over, and every event is checked afresh. An event
/// whose `trigger_at` has passed in between is then refused as "in the past", although the
/// first run accepted it and its trigger is recorded and will fire: the answer (stored for
/// the key and replayed for a day) tells the client to fix and resend an event that is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_takeover_does_not_refuse_an_event_its_first_run_accepted() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"events": [
        {"event_name": "trial_expired", "user_info": {"contact_external_id": "ada"},
         "trigger_at": soon},
    ]});
    let (status, _, first) = keyed(&app, "/api/v1/events/batch", "soon", project, &body).await;
    assert_eq!(
        (status, first["accepted_count"].as_u64()),
        (200, Some(1)),
        "{first}"
    );
    let trigger = first["results"][0]["trigger_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // As if the gateway had died after the commit, before storing its answer; the retry
    // comes once the event's time has passed.
    app.execute(
        "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL, \
         response_body = NULL, lease_until = now() - interval '1 second'",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _, again) = keyed(&app, "/api/v1/events/batch", "soon", project, &body).await;
    assert_eq!(status, 200, "{again}");
    let (recorded, _) = app.trigger(&trigger).await;
    assert_eq!(recorded, 200, "the first run's trigger is there");
    assert_eq!(
        again["results"][0]["success"], true,
        "the event was accepted by the first run (trigger {trigger}), but the retry answers {again}"
    );
}

/// A user whose attributes were stored past their bound (before there was one) can still be
/// sent events whose `custom_fields` add nothing: the upsert lets such a merge through. A dry
/// run and a batch must check them as that upsert does, not refuse what events/send accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_fields_that_add_nothing_to_an_oversized_user_are_accepted_everywhere() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "ada"}))
        .await;
    assert_eq!(status, 200, "{body}");
    // 80 KB of attributes, written as an older version could.
    app.execute(&format!(
        "UPDATE users SET attributes = (SELECT jsonb_object_agg('k' || i, repeat('x', 1000)) \
         FROM generate_series(0, 79) AS i) WHERE project_id = '{project}' AND user_ref = 'ada'"
    ))
    .await;
    let event = |dry_run: bool| {
        json!({"event_name": "trial_expired", "dry_run": dry_run,
               "user_info": {"contact_external_id": "ada", "email": "ada@example.com",
                             "custom_fields": {"k0": "x".repeat(1000)}}})
    };

    let (status, answer) = app.send_event(Some(project), event(true)).await;
    assert_eq!(
        (status, answer["created_count"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = app
        .send_batch(Some(project), json!({"events": [event(false)]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted_count"], 1, "{answer}");
    let (status, answer) = app.send_event(Some(project), event(false)).await;
    assert_eq!(status, 201, "{answer}");
    // Something new still takes them further past the bound: refused.
    let (status, answer) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "dry_run": true,
                   "user_info": {"contact_external_id": "ada", "custom_fields": {"new": 1}}}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("attributes_too_large")),
        "{answer}"
    );
}

/// A project id is a UUID, whatever the letter case it is written in: `X-Team-ID` in capitals
/// and `project_id` in small letters name one project, for events/send and for a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_project_in_another_letter_case_is_no_mismatch() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let shouted = project.to_string().to_uppercase();
    let event = json!({"event_name": "trial_expired", "project_id": project,
        "user_info": {"contact_external_id": "user_case"}});
    let r = app
        .http
        .post(app.url("/api/v1/events/send"))
        .header("x-api-key", &app.token)
        .header("x-team-id", &shouted)
        .json(&event)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{body}");
    let r = app
        .http
        .post(app.url("/api/v1/events/batch"))
        .header("x-api-key", &app.token)
        .header("x-team-id", &shouted)
        .json(&json!({"events": [event]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(body["accepted_count"], 1, "{body}");
    // Two different projects are still a mismatch.
    let other = app.create_project().await;
    let (status, body) = app
        .send_event(
            Some(other),
            json!({"event_name": "trial_expired", "project_id": project,
                "user_info": {"contact_external_id": "user_case"}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("project_mismatch")),
        "{body}"
    );
}
