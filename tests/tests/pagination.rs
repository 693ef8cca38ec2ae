//! Every list pages the same way — `limit`, an opaque `cursor`, `{data, has_more,
//! next_cursor}` — and lists each row exactly once, however many rows share a `created_at`;
//! a cursor the gateway did not make is 400 `invalid_cursor`. And the organization's
//! triggers: listed, filtered, and never another organization's. And where a create says
//! its new resource is: a `Location` to read it back from.

use beckon_e2e::TestApp;
use beckon_store::webhooks::{self, NewMessage, Subscriber};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

/// Every page of the list at `path` (which may carry a query already), `limit` items at a
/// time, following `next_cursor` to the end; checks the shape of each page on the way.
async fn walk(app: &TestApp, token: &str, path: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..10_000 {
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = app
            .http
            .get(app.url(&url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let page: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "GET {url}: {page}");
        let data = page["data"].as_array().expect("data").clone();
        assert!(data.len() <= limit as usize, "GET {url}: {page}");
        items.extend(data);
        match (&page["has_more"], &page["next_cursor"]) {
            (Value::Bool(true), Value::String(next)) => cursor = Some(next.clone()),
            (Value::Bool(false), Value::Null) => return items,
            _ => panic!("GET {url}: has_more and next_cursor disagree: {page}"),
        }
    }
    panic!("{path} never ended");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Asserts `items` hold each of `expected` exactly once.
fn each_once(items: &[Value], expected: &HashSet<String>, what: &str) {
    let got = ids(items);
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "{what}: an item was listed twice");
    let missing = expected.difference(&unique).count();
    let others = unique.difference(expected).count();
    assert_eq!(
        (missing, others),
        (0, 0),
        "{what}: {} listed, {missing} of {} missing, {others} not expected",
        got.len(),
        expected.len()
    );
}

/// A subscription that gets nothing (its URL never answers the verification): what is stored
/// for it stays as the test puts it.
async fn quiet_subscription(app: &TestApp, project: Uuid) -> Uuid {
    let sub = app
        .create_webhook(project, json!({"url": "http://127.0.0.1:9/nowhere"}))
        .await;
    assert_eq!(sub["status"], "pending_verification");
    sub["id"].as_str().unwrap().parse().unwrap()
}

/// `n` messages of `project` and their deliveries to `subscription`, written as the delivery
/// service writes a batch: in one statement, so every delivery has the same `created_at`.
async fn one_batch_of_deliveries(app: &TestApp, project: Uuid, subscription: Uuid, n: usize) {
    let now = OffsetDateTime::now_utc();
    let messages: Vec<NewMessage> = (0..n)
        .map(|_| NewMessage {
            id: Uuid::now_v7(),
            org_id: app.org_id,
            project_id: project,
            event_type: "invitation.created".to_owned(),
            version: 1,
            body_encrypted: vec![0],
            occurred_at: now,
            user_ref: None,
        })
        .collect();
    let conn = app.store.conn().await.unwrap();
    webhooks::insert_messages(&conn, &messages).await.unwrap();
    // Disabled when they were emitted: skipped, kept, never attempted.
    let subscriber = [Subscriber {
        id: subscription,
        active: false,
        ordered: false,
        format: beckon_domain::webhook_format::PayloadFormat::Beckon,
        payload_version: 1,
    }];
    let batch: Vec<(Uuid, &[Subscriber])> =
        messages.iter().map(|m| (m.id, &subscriber[..])).collect();
    let made = webhooks::insert_deliveries_of(&conn, &batch, now)
        .await
        .unwrap();
    assert_eq!(made.len(), n);
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.store.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_of_one_batch_are_each_listed_exactly_once() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let sub = quiet_subscription(&app, project).await;
    one_batch_of_deliveries(&app, project, sub, 1000).await;
    let times = count(
        &app,
        &format!(
            "SELECT count(DISTINCT created_at) AS n FROM webhook_deliveries \
             WHERE subscription_id = '{sub}'"
        ),
    )
    .await;
    assert_eq!(times, 1, "the batch's deliveries share one created_at");
    let expected: HashSet<String> = {
        use beckon_store::schema::webhook_deliveries;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let mut conn = app.store.conn().await.unwrap();
        webhook_deliveries::table
            .filter(webhook_deliveries::subscription_id.eq(sub))
            .select(webhook_deliveries::id)
            .load::<Uuid>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect()
    };
    let path = format!("/api/v1/projects/{project}/webhooks/{sub}/deliveries");
    let all = walk(&app, &app.token, &path, 100).await;
    each_once(&all, &expected, "1000 deliveries, 100 a page");
    // Newest first, the id breaking the tie.
    let listed = ids(&all);
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, sorted);

    // With the status filter, pages of an odd size: each of a status exactly once.
    app.execute(&format!(
        "UPDATE webhook_deliveries SET status = 'failed' WHERE id IN ( \
           SELECT id FROM webhook_deliveries WHERE subscription_id = '{sub}' \
           ORDER BY md5(id::text) LIMIT 300)"
    ))
    .await;
    let failed = walk(&app, &app.token, &format!("{path}?status=failed"), 7).await;
    let skipped = walk(&app, &app.token, &format!("{path}?status=skipped"), 99).await;
    assert_eq!((failed.len(), skipped.len()), (300, 700));
    assert!(failed.iter().all(|d| d["status"] == "failed"));
    assert!(skipped.iter().all(|d| d["status"] == "skipped"));
    let both: HashSet<String> = ids(&failed).into_iter().chain(ids(&skipped)).collect();
    assert_eq!(both, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_one_or_two_at_a_time_across_rows_created_together() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let survey = survey["id"].as_str().unwrap().to_owned();
    for name in ["second", "third"] {
        app.create_survey(project, json!({"name": name})).await;
    }
    for _ in 0..2 {
        app.create_project().await;
    }
    for name in ["a", "b"] {
        let r = app
            .authed(Method::POST, "/api/v1/tokens")
            .json(&json!({"name": name, "scopes": ["read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(quiet_subscription(&app, project).await);
    }
    // Three triggers, each with an invitation answered: three responses.
    for user in ["ann", "bob", "cy"] {
        let (status, body) = app
            .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
            .await;
        assert_eq!(status, 200, "{body}");
        let link = body["created_invitations"][0]["magic_link_url"]
            .as_str()
            .unwrap();
        let r = app
            .http
            .put(format!("{link}/answers/nps"))
            .json(&json!({"value": 9}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Attempts: three of one message, two of another, to the first subscription.
    one_batch_of_deliveries(&app, project, subs[0], 2).await;
    app.execute(&format!(
        "INSERT INTO webhook_attempts (delivery_id, message_id, subscription_id, attempted_at, \
           status_code, duration_ms) \
         SELECT d.id, d.message_id, d.subscription_id, now(), 500, 1 \
         FROM webhook_deliveries d, generate_series(1, 3) AS n \
         WHERE d.subscription_id = '{}' AND (n < 3 OR d.id = ( \
           SELECT max(id::text)::uuid FROM webhook_deliveries WHERE subscription_id = '{}'))",
        subs[0], subs[0]
    ))
    .await;
    // Every row of every table created at one instant: only the id orders them.
    for table in [
        "projects",
        "surveys",
        "api_tokens",
        "webhook_subscriptions",
        "triggers",
        "responses",
        "webhook_attempts",
    ] {
        app.execute(&format!(
            "UPDATE {table} SET {} = '2026-12-01T12:00:00Z'",
            if table == "webhook_attempts" {
                "attempted_at"
            } else {
                "created_at"
            }
        ))
        .await;
    }
    let message = {
        let all = walk(
            &app,
            &app.token,
            &format!("/api/v1/projects/{project}/webhooks/{}/attempts", subs[0]),
            2,
        )
        .await;
        assert_eq!(all.len(), 5);
        let listed: Vec<i64> = all.iter().map(|a| a["id"].as_i64().unwrap()).collect();
        let mut sorted = listed.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(listed, sorted, "attempts newest first");
        let messages: Vec<&str> = all
            .iter()
            .map(|a| a["message_id"].as_str().unwrap())
            .collect();
        // The message with three attempts.
        messages
            .iter()
            .find(|m| messages.iter().filter(|n| n == m).count() == 3)
            .unwrap()
            .to_string()
    };

    let lists = [
        ("/api/v1/projects".to_owned(), 3),
        (format!("/api/v1/projects/{project}/surveys"), 3),
        ("/api/v1/tokens".to_owned(), 3),
        (format!("/api/v1/projects/{project}/webhooks"), 3),
        ("/api/v1/triggers".to_owned(), 3),
        (
            format!("/api/v1/projects/{project}/surveys/{survey}/responses"),
            3,
        ),
        (
            format!(
                "/api/v1/projects/{project}/webhooks/{}/messages/{message}/attempts",
                subs[0]
            ),
            3,
        ),
        (
            format!("/api/v1/projects/{project}/webhooks/{}/deliveries", subs[0]),
            2,
        ),
    ];
    for (path, n) in &lists {
        let everything = walk(&app, &app.token, path, 100).await;
        assert_eq!(everything.len(), *n, "{path}: {everything:?}");
        let expected: HashSet<String> = ids(&everything).into_iter().collect();
        for limit in [1, 2] {
            let paged = walk(&app, &app.token, path, limit).await;
            each_once(&paged, &expected, &format!("{path} by {limit}"));
            assert_eq!(ids(&paged), ids(&everything), "{path} by {limit}: order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_the_gateway_did_not_give_or_a_limit_out_of_range_is_a_400() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_project().await;
    let survey = app.create_survey(project, json!({})).await;
    let survey = survey["id"].as_str().unwrap();
    let sub = quiet_subscription(&app, project).await;
    let message = Uuid::now_v7();
    let lists = [
        "/api/v1/projects".to_owned(),
        "/api/v1/tokens".to_owned(),
        "/api/v1/triggers".to_owned(),
        format!("/api/v1/projects/{project}/surveys"),
        format!("/api/v1/projects/{project}/webhooks"),
        format!("/api/v1/projects/{project}/surveys/{survey}/responses"),
        format!("/api/v1/projects/{project}/webhooks/{sub}/deliveries"),
        format!("/api/v1/projects/{project}/webhooks/{sub}/attempts"),
        format!("/api/v1/projects/{project}/webhooks/{sub}/messages/{message}/attempts"),
    ];
    // A real cursor, of the project list.
    let first: Value = app
        .authed(Method::GET, "/api/v1/projects?limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let projects_cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut edited = projects_cursor.clone().into_bytes();
    let i = edited.len() / 2;
    edited[i] = if edited[i] == b'x' { b'y' } else { b'x' };
    let edited = String::from_utf8(edited).unwrap();
    let an_old_timestamp = "2026-12-01T12%3A00%3A00Z";
    for path in &lists {
        let mut refused = vec![
            ("cursor=garbage".to_owned(), "invalid_cursor"),
            ("cursor=".to_owned(), "invalid_cursor"),
            (format!("cursor={an_old_timestamp}"), "invalid_cursor"),
            (format!("cursor={edited}"), "invalid_cursor"),
            ("limit=0".to_owned(), "invalid_limit"),
            ("limit=101".to_owned(), "invalid_limit"),
            ("limit=-5".to_owned(), "invalid_limit"),
            ("limit=many".to_owned(), "invalid_query"),
            ("limit=99999999999999999999".to_owned(), "invalid_query"),
        ];
        if path != "/api/v1/projects" {
            // Another list's cursor is no position in this one.
            refused.push((format!("cursor={projects_cursor}"), "invalid_cursor"));
        }
        for (query, code) in refused {
            let r = app
                .authed(Method::GET, &format!("{path}?{query}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some(code)),
                "{path}?{query}: {body}"
            );
        }
        // The bounds themselves are fine.
        for query in ["limit=1", "limit=100"] {
            let r = app
                .authed(Method::GET, &format!("{path}?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}?{query}");
        }
    }
    // The cursor is the same for the list it came from.
    let r = app
        .authed(
            Method::GET,
            &format!("/api/v1/projects?limit=1&cursor={projects_cursor}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The old parameter is gone, not quietly honoured.
    let listed: Value = app
        .authed(
            Method::GET,
            &format!(
                "/api/v1/projects/{project}/webhooks/{sub}/deliveries?before=2020-01-01T00:00:00Z"
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.get("next_before").is_none(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_listed_newest_first_filtered_and_never_another_organizations() {
    let app = TestApp::spawn().await;
    let web = app.create_project().await;
    let mobile = app.create_project().await;
    for project in [web, mobile] {
        app.create_survey(
            project,
            json!({"trigger": {"events": ["trial_expired", {"custom": "payment_failed"}]}}),
        )
        .await;
    }
    let dispatch = |project: Uuid, user: &'static str, event: Value| {
        let app = &app;
        async move {
            let (status, body) = app
                .dispatch(json!({"project_id": project, "user_ref": user, "event": event}))
                .await;
            assert_eq!(status, 200, "{body}");
            body["trigger_id"].as_str().unwrap().to_owned()
        }
    };
    // Another organization fires the same event, first.
    let (_, other) = app.other_org().await;
    let as_other = |method: Method, path: &str, body: Value| {
        app.http
            .request(method, app.url(path))
            .bearer_auth(&other)
            .json(&body)
            .send()
    };
    let r = as_other(Method::POST, "/api/v1/projects", json!({"name": "theirs"}))
        .await
        .unwrap();
    let their_project = r.json::<Value>().await.unwrap()["id"].clone();
    let r = as_other(
        Method::POST,
        &format!(
            "/api/v1/projects/{}/surveys",
            their_project.as_str().unwrap()
        ),
        json!({"name": "theirs", "status": "live", "trigger": {"events": ["trial_expired"]},
               "questions": [{"id": "q", "type": "nps", "title": "?", "required": true}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = as_other(
        Method::POST,
        "/api/v1/lifecycle/dispatch",
        json!({"project_id": their_project, "user_ref": "ann", "event": "trial_expired"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let theirs = r.json::<Value>().await.unwrap()["trigger_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let web_expired = dispatch(web, "ann", json!("trial_expired")).await;
    let web_payment = dispatch(web, "bob", json!({"custom": "payment_failed"})).await;
    let mobile_expired = dispatch(mobile, "cy", json!("trial_expired")).await;
    let between = OffsetDateTime::now_utc();
    let (status, scheduled) = app
        .send_event(
            Some(mobile),
            json!({"event_name": "payment_failed", "user_info": {"contact_external_id": "dee"},
                   "trigger_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201, "{scheduled}");
    let scheduled = scheduled["trigger_id"].as_str().unwrap().to_owned();
    let (status, cancelled) = app
        .send_event(
            Some(web),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "eve"},
                   "trigger_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201, "{cancelled}");
    let cancelled = cancelled["trigger_id"].as_str().unwrap().to_owned();
    let r = app
        .authed(Method::DELETE, &format!("/api/v1/triggers/{cancelled}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let list = |query: String| {
        let app = &app;
        async move { ids(&walk(app, &app.token, &format!("/api/v1/triggers{query}"), 2).await) }
    };
    // Everything, newest first; each item as GET /api/v1/triggers/{id} shows it.
    let everything = walk(&app, &app.token, "/api/v1/triggers", 2).await;
    assert_eq!(
        ids(&everything),
        [
            cancelled.as_str(),
            scheduled.as_str(),
            mobile_expired.as_str(),
            web_payment.as_str(),
            web_expired.as_str()
        ]
    );
    for item in &everything {
        let (status, one) = app.trigger(item["id"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(item, &one);
    }
    let first = &everything[4];
    assert_eq!(first["project_id"], web.to_string());
    assert_eq!(first["event"], "trial_expired");
    assert_eq!(first["user_ref"], "ann");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["summary"]["sent"], 1);

    // Filters, alone and together.
    assert_eq!(
        list(format!("?project_id={web}")).await,
        [
            cancelled.as_str(),
            web_payment.as_str(),
            web_expired.as_str()
        ]
    );
    assert_eq!(list("?status=scheduled".into()).await, [scheduled.as_str()]);
    assert_eq!(list("?status=cancelled".into()).await, [cancelled.as_str()]);
    assert_eq!(
        list("?status=completed".into()).await,
        [
            mobile_expired.as_str(),
            web_payment.as_str(),
            web_expired.as_str()
        ]
    );
    assert_eq!(
        list("?event=trial_expired".into()).await,
        [
            cancelled.as_str(),
            mobile_expired.as_str(),
            web_expired.as_str()
        ]
    );
    for custom in ["custom:payment_failed", "payment_failed"] {
        assert_eq!(
            list(format!("?event={custom}")).await,
            [scheduled.as_str(), web_payment.as_str()],
            "{custom}"
        );
    }
    assert_eq!(
        list(format!(
            "?project_id={mobile}&event=trial_expired&status=completed"
        ))
        .await,
        [mobile_expired.as_str()]
    );
    let between = between
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let between = between.replace('+', "%2B").replace(':', "%3A");
    assert_eq!(
        list(format!("?since={between}")).await,
        [cancelled.as_str(), scheduled.as_str()]
    );
    assert_eq!(
        list(format!("?until={between}")).await,
        [
            mobile_expired.as_str(),
            web_payment.as_str(),
            web_expired.as_str()
        ]
    );
    assert!(list("?since=2099-01-01T00:00:00Z".into()).await.is_empty());

    // Refused at the edge, never a panic: timestamps out of range or not timestamps, unknown
    // statuses and events, malformed project ids.
    for query in [
        "since=9999-12-31T23:59:59-23:59",
        "until=0000-01-01T00:00:00%2B23:59",
        "since=yesterday",
        "status=done",
        "event=",
        "project_id=web",
    ] {
        let r = app
            .authed(Method::GET, &format!("/api/v1/triggers?{query}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_query")),
            "{query}: {body}"
        );
    }
    let r = app
        .authed(
            Method::GET,
            &format!("/api/v1/triggers?project_id={}", Uuid::now_v7()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The other organization: its own trigger only, and not A's by naming A's project either.
    assert_eq!(
        ids(&walk(&app, &other, "/api/v1/triggers", 100).await),
        [theirs.as_str()]
    );
    let r = app
        .http
        .get(app.url(&format!("/api/v1/triggers?project_id={web}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("project_forbidden"))
    );

    // Listing needs `read`; a backend's `send` token reads its triggers one by one only.
    let mut tokens = Vec::new();
    for scope in ["read", "send"] {
        let r = app
            .authed(Method::POST, "/api/v1/tokens")
            .json(&json!({"name": scope, "scopes": [scope]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        tokens.push(
            r.json::<Value>().await.unwrap()["secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        walk(&app, &tokens[0], "/api/v1/triggers", 50).await.len(),
        5
    );
    let r = app
        .http
        .get(app.url("/api/v1/triggers"))
        .bearer_auth(&tokens[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Every create answers 201 with a `Location` a GET reads the new resource back from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_answers_with_the_location_of_what_it_made() {
    let app = TestApp::spawn().await;
    let receiver = beckon_e2e::receiver::Receiver::start().await;
    let made = |method: Method, path: String, body: Value| {
        let request = app.authed(method, &path).json(&body);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 201, "{path}");
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path} answers a Location"))
                .to_owned();
            let body: Value = r.json().await.unwrap();
            (location, body)
        }
    };
    let read_back = |location: String, id: Value| {
        let request = app.authed(Method::GET, &location);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{location}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["id"], id, "{location}");
        }
    };
    let (location, project) = made(
        Method::POST,
        "/api/v1/projects".into(),
        json!({"name": "located"}),
    )
    .await;
    read_back(location, project["id"].clone()).await;
    let project = project["id"].as_str().unwrap().to_owned();
    let (location, survey) = made(
        Method::POST,
        format!("/api/v1/projects/{project}/surveys"),
        json!({"name": "S", "status": "live", "trigger": {"events": ["trial_expired"]},
               "questions": [{"id": "q", "type": "nps", "title": "?"}]}),
    )
    .await;
    read_back(location, survey["id"].clone()).await;
    let (location, webhook) = made(
        Method::POST,
        format!("/api/v1/projects/{project}/webhooks"),
        json!({"url": receiver.url("/ok/located")}),
    )
    .await;
    read_back(location, webhook["id"].clone()).await;
    let (location, sent) = made(
        Method::POST,
        "/api/v1/events/send".into(),
        json!({"project_id": project, "event_name": "trial_expired",
               "user_info": {"contact_external_id": "u1"}}),
    )
    .await;
    read_back(location, sent["trigger_id"].clone()).await;
}
