//! Trial reminders from users/upsert, and scheduled triggers across replicas and restarts.

use beckon_e2e::{Options, TestApp};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DAY: i64 = 24 * 3600;
const WAIT: Duration = Duration::from_secs(30);

fn from_now(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(seconds)
}

fn iso(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn parse(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Reminders of the answer, as (survey id, fire time, trigger id), sorted by survey.
fn reminders(answer: &Value) -> Vec<(String, OffsetDateTime, String)> {
    let mut out: Vec<_> = answer["scheduled_reminders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["survey_id"].as_str().unwrap().to_owned(),
                parse(&r["fire_at"]),
                r["trigger_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn close(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    (a - b).abs() < time::Duration::seconds(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserting_trial_ends_at_sets_moves_and_clears_one_reminder_per_subscribed_survey() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let three_days = app
        .create_survey(
            project,
            json!({"trigger": {"events": ["trial_ending_soon"]}}),
        )
        .await;
    let one_day = app
        .create_survey(project, json!({"trigger": {"events": ["trial_ending_soon"]}, "trial_reminder_lead_seconds": DAY}))
        .await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_ending_soon"]}, "status": "draft"}),
    )
    .await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let mut ids = [
        three_days["id"].as_str().unwrap().to_owned(),
        one_day["id"].as_str().unwrap().to_owned(),
    ];
    ids.sort();
    let lead_of = |survey: &str| {
        if survey == three_days["id"].as_str().unwrap() {
            3 * DAY
        } else {
            DAY
        }
    };
    let upsert = |trial: Value| {
        app.upsert_user(json!({"project_id": project, "user_ref": "trialist", "email": "t@example.com", "trial_ends_at": trial}))
    };

    // Set.
    let ends = from_now(10 * DAY);
    let (status, set) = upsert(json!(iso(ends))).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["user"]["user_ref"], "trialist");
    assert_eq!(set["user"]["email"], "t@example.com");
    let first = reminders(&set);
    assert_eq!(first.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), ids);
    for (survey, at, _) in &first {
        assert!(
            close(*at, ends - time::Duration::seconds(lead_of(survey))),
            "{survey} at {at}"
        );
    }
    let (_, trigger) = app.trigger(&first[0].2).await;
    assert_eq!(
        (
            trigger["status"].clone(),
            trigger["trigger_type"].clone(),
            trigger["event"].clone()
        ),
        (
            json!("scheduled"),
            json!("scheduled"),
            json!("trial_ending_soon")
        )
    );

    // The same value again changes nothing.
    let (_, same) = upsert(json!(iso(ends))).await;
    assert_eq!(reminders(&same), first);

    // Move earlier, then later: the same triggers move.
    for days in [5, 20] {
        let ends = from_now(days * DAY);
        let (_, moved) = upsert(json!(iso(ends))).await;
        let moved = reminders(&moved);
        assert_eq!(
            moved.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
            first.iter().map(|r| r.2.clone()).collect::<Vec<_>>()
        );
        for (survey, at, _) in &moved {
            assert!(close(*at, ends - time::Duration::seconds(lead_of(survey))));
        }
    }

    // An upsert without trial_ends_at keeps the schedule.
    let (_, kept) = app
        .upsert_user(json!({"project_id": project, "user_ref": "trialist", "name": "T"}))
        .await;
    assert_eq!(reminders(&kept).len(), 2);
    assert_eq!(
        kept["user"]["email"], "t@example.com",
        "absent fields keep their value"
    );

    // Clear: null cancels.
    let (_, cleared) = upsert(Value::Null).await;
    assert_eq!(cleared["scheduled_reminders"], json!([]));
    assert_eq!(cleared["user"]["trial_ends_at"], Value::Null);
    for (_, _, id) in &first {
        let (_, t) = app.trigger(id).await;
        assert_eq!(t["status"], "cancelled");
    }

    // A trial already over schedules nothing.
    let (_, over) = upsert(json!(iso(from_now(-3600)))).await;
    assert_eq!(over["scheduled_reminders"], json!([]));
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_already_due_fires_now_each_for_its_own_survey() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let a = app
        .create_survey(
            project,
            json!({"trigger": {"events": ["trial_ending_soon"]}}),
        )
        .await;
    let b = app
        .create_survey(
            project,
            json!({"trigger": {"events": ["trial_ending_soon"]}}),
        )
        .await;
    // The trial ends in a day: both 3-day reminders are past due while the trial still runs.
    let (status, body) = app
        .upsert_user(
            json!({"project_id": project, "user_ref": "soon", "trial_ends_at": iso(from_now(DAY))}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = body["scheduled_reminders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let done = app.wait_trigger(id, "completed", WAIT).await;
        assert_eq!(
            (
                done["summary"]["matched"].clone(),
                done["summary"]["sent"].clone()
            ),
            (json!(1), json!(1)),
            "{done}"
        );
    }
    // Two surveys, two invitations — not four.
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'soon'")
            .await,
        2
    );
    // Each fired about a scheduler interval after it was made, not days "late" because its
    // time had passed before it existed.
    let metrics = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
    let lag = |name: &'static str| app.metric(&metrics, name);
    assert_eq!(lag("beckon_scheduler_lag_seconds_count").await, Some(2.0));
    let total = lag("beckon_scheduler_lag_seconds_sum").await.unwrap();
    assert!(total < 10.0, "fired {total} s late in all");
    for survey in [&a, &b] {
        let sql = format!(
            "SELECT 1 FROM invitations WHERE user_ref = 'soon' AND survey_id = '{}'",
            survey["id"].as_str().unwrap()
        );
        assert_eq!(app.execute(&sql).await, 1);
    }
    // Upserting the same trial end again does not remind twice.
    let (_, again) = app
        .upsert_user(json!({"project_id": project, "user_ref": "soon", "trial_ends_at": body["user"]["trial_ends_at"]}))
        .await;
    assert_eq!(again["scheduled_reminders"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduler_replicas_fire_each_trigger_exactly_once() {
    let app = TestApp::spawn_with(Options {
        matcher_replicas: 2,
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // Every envelope on the events exchange: each scheduler fire publishes one
    // `event.received`.
    let broker = beckon_e2e::broker::Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;
    let at = iso(from_now(2));
    let sends = (0..30).map(|i| {
        app.send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}, "trigger_at": at}))
    });
    let ids: Vec<String> = join_all(sends)
        .await
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 201, "{body}");
            body["trigger_id"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        let done = app.wait_trigger(id, "completed", WAIT).await;
        assert_eq!(done["summary"]["sent"], 1);
    }
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, 30);
    let mut fired = std::collections::HashMap::<String, usize>::new();
    while let Some(bytes) = tap.next(Duration::from_secs(1)).await {
        let env: Value = serde_json::from_slice(&bytes).unwrap();
        if env["type"] == "event.received" {
            *fired
                .entry(env["correlation_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(fired.len(), 30, "every trigger fired");
    assert!(
        fired.values().all(|n| *n == 1),
        "each fired once: {fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_survives_a_restart_of_every_service() {
    let mut app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, body) = app
        .send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "patient"}, "trigger_at": iso(from_now(2))}))
        .await;
    assert_eq!(status, 201);
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    for service in ["ingest-api", "matcher", "invitation", "webhook-delivery"] {
        app.stop(service);
    }
    // Down past the due time.
    let due = format!(
        "SELECT 1 FROM triggers WHERE id = '{id}' AND scheduled_for < now() AND status = 'scheduled'"
    );
    app.eventually(
        WAIT,
        "the trigger to fall due while everything is down",
        || async { (app.execute(&due).await == 1).then_some(()) },
    )
    .await;
    app.start_all().await;
    let done = app.wait_trigger(&id, "completed", WAIT).await;
    assert_eq!(done["summary"]["sent"], 1);
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'patient'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_follow_a_survey_that_goes_live_changes_its_lead_and_stops_listening() {
    // Two users a batch, so the sync takes several.
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_REMINDER_SYNC_BATCH", "2".into()),
            ("BECKON_REMINDER_SYNC_INTERVAL_MS", "100".into()),
        ],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    let ends = from_now(10 * DAY);
    for user in ["ada", "bob", "cy", "dee", "eve"] {
        let (status, body) = app
            .upsert_user(
                json!({"project_id": project, "user_ref": user, "trial_ends_at": iso(ends)}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Neither a trial that is over nor none at all gets a reminder.
    for (user, trial) in [("old", json!(iso(from_now(-DAY)))), ("none", Value::Null)] {
        let (status, _) = app
            .upsert_user(json!({"project_id": project, "user_ref": user, "trial_ends_at": trial}))
            .await;
        assert_eq!(status, 200);
    }
    let survey = app
        .create_survey(
            project,
            json!({"status": "draft", "trigger": {"events": ["trial_ending_soon"]}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/projects/{project}/surveys/{survey}");
    let patch = |body: Value| {
        let app = &app;
        let path = &path;
        async move {
            let r = app
                .authed(reqwest::Method::PATCH, path)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{body}");
        }
    };
    // The survey's reminders in `status` whose fire time is `lead` seconds before the trial end.
    let count = |status: &'static str, lead: Option<i64>| {
        let app = &app;
        let survey = survey.clone();
        async move {
            let lead = lead.map_or(String::new(), |l| {
                format!(" AND abs(extract(epoch FROM reminder_for - scheduled_for) - {l}) < 1")
            });
            app.execute(&format!(
                "SELECT 1 FROM triggers WHERE survey_id = '{survey}' AND status = '{status}'{lead}"
            ))
            .await
        }
    };
    let settled = |scheduled: usize, lead: Option<i64>, what: &'static str| {
        let app = &app;
        async move {
            app.eventually(WAIT, what, || async {
                let synced = app.execute("SELECT 1 FROM reminder_sync").await == 0;
                (synced && count("scheduled", lead).await == scheduled).then_some(())
            })
            .await
        }
    };
    settled(0, None, "a draft to schedule nothing").await;

    patch(json!({"status": "live"})).await;
    settled(5, Some(3 * DAY), "a reminder for each running trial").await;
    patch(json!({"trial_reminder_lead_seconds": DAY})).await;
    settled(5, Some(DAY), "each reminder moved to the new lead").await;
    // Moved, not made again; and a sync run twice keeps them as they are.
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE survey_id = '{survey}'"
        ))
        .await,
        5
    );
    patch(json!({"name": "Renamed, same reminders", "status": "live"})).await;
    settled(5, Some(DAY), "the same reminders").await;
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE survey_id = '{survey}'"
        ))
        .await,
        5
    );

    // A user who arrives meanwhile is the upsert's to schedule, once.
    let (_, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "fay", "trial_ends_at": iso(ends)}))
        .await;
    assert_eq!(reminders(&body).len(), 1, "{body}");
    settled(6, Some(DAY), "fay's reminder").await;

    patch(json!({"trigger": {"events": ["trial_expired"]}})).await;
    settled(0, None, "every reminder cleared").await;
    assert_eq!(count("cancelled", None).await, 6);
    patch(json!({"trigger": {"events": ["trial_ending_soon"]}})).await;
    settled(6, Some(DAY), "every reminder set again").await;
    patch(json!({"status": "paused"})).await;
    settled(0, None, "a paused survey's reminders cleared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_while_their_survey_goes_live_gets_a_reminder() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_REMINDER_SYNC_INTERVAL_MS", "50".into())],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(
            project,
            json!({"status": "paused", "trigger": {"events": ["trial_ending_soon"]}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let synced = || async { app.execute("SELECT 1 FROM reminder_sync").await == 0 };
    app.eventually(WAIT, "the paused survey's sync", || async {
        synced().await.then_some(())
    })
    .await;

    // A gate the test holds: the upsert of `late` cannot commit until it opens, so it commits
    // after everything it read, the survey still paused among it.
    for sql in [
        "CREATE TABLE gate (id int PRIMARY KEY)",
        "INSERT INTO gate VALUES (1)",
        "CREATE FUNCTION wait_at_gate() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM 1 FROM gate WHERE id = 1 FOR SHARE; RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER gated AFTER INSERT ON users DEFERRABLE INITIALLY DEFERRED \
           FOR EACH ROW WHEN (NEW.user_ref = 'late') EXECUTE FUNCTION wait_at_gate()",
    ] {
        app.execute(sql).await;
    }
    let mut gate = app.store.conn().await.unwrap();
    for sql in ["BEGIN", "SELECT 1 FROM gate FOR UPDATE"] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut *gate)
            .await
            .unwrap();
    }
    let ends = from_now(10 * DAY);
    let upsert = app.upsert_user(
        json!({"project_id": project, "user_ref": "late", "trial_ends_at": iso(ends)}),
    );
    let meanwhile = async {
        app.eventually(WAIT, "the upsert to wait at the gate", || async {
            (app.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query ILIKE 'COMMIT%'",
            )
            .await
                > 0)
            .then_some(())
        })
        .await;
        let r = app
            .authed(
                reqwest::Method::PATCH,
                &format!("/api/v1/projects/{project}/surveys/{survey}"),
            )
            .json(&json!({"status": "live"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The sync of the survey gone live is done, or waits for the upsert.
        app.eventually(WAIT, "the sync to finish or wait", || async {
            let waiting = app
                .execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                )
                .await
                > 0;
            (waiting || synced().await).then_some(())
        })
        .await;
        diesel_async::RunQueryDsl::execute(diesel::sql_query("COMMIT"), &mut *gate)
            .await
            .unwrap();
    };
    let ((status, body), ()) = futures_util::join!(upsert, meanwhile);
    assert_eq!(status, 200, "{body}");
    app.eventually(WAIT, "the sync to finish", || async {
        synced().await.then_some(())
    })
    .await;
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE survey_id = '{survey}' AND user_ref = 'late' \
             AND status = 'scheduled'"
        ))
        .await,
        1,
        "the survey went live before the new user was committed: the sync must see them"
    );
}
