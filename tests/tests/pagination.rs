//! Every list pages the same way — `limit`, an opaque `cursor`, `{data, has_more,
//! next_cursor}` — and lists each row exactly once, however many rows share a `created_at`;
//! a cursor the gateway did not make is 400 `invalid_cursor`.

use beckon_e2e::TestApp;
use beckon_store::webhooks::{self, Message, Subscriber};
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
    let messages: Vec<Message> = (0..n)
        .map(|_| Message {
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
