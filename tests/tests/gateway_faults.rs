//! The gateway under faults: a request that dies with its process, a broker that is away, a
//! background task that dies.

use beckon_e2e::{Options, TestApp};
use beckon_store::idempotency::{self, Claim};
use beckon_store::testing::WithProject;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn keyed_dispatch(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let r = app
        .authed(Method::POST, "/api/v1/lifecycle/dispatch")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_left_in_flight_is_taken_over_once_its_lease_lapses_but_an_answer_is_kept() {
    use diesel_async::RunQueryDsl as _;
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    let (org, lease) = (seeded.org_id, Duration::from_secs(30));

    let Claim::Owned { owner: first } = idempotency::claim(&mut conn, org, "k", b"request", lease)
        .await
        .unwrap()
    else {
        panic!("a new key is owned by its first request");
    };
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap(),
        Claim::InFlight,
        "a held lease keeps the key in flight"
    );
    assert!(
        idempotency::renew(&mut conn, org, "k", first, lease)
            .await
            .unwrap()
    );

    // The first request dies: nothing renews its lease, which lapses.
    let lapse = "UPDATE idempotency_keys SET lease_until = now() - interval '1 second'";
    diesel::sql_query(lapse).execute(&mut conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"another request", lease)
            .await
            .unwrap(),
        Claim::Mismatch,
        "a lapsed lease is taken over only by the same request"
    );
    let Claim::Owned { owner: second } = idempotency::claim(&mut conn, org, "k", b"request", lease)
        .await
        .unwrap()
    else {
        panic!("a retry takes over a key whose lease lapsed");
    };
    assert_ne!(first, second);
    assert!(
        !idempotency::renew(&mut conn, org, "k", first, lease)
            .await
            .unwrap(),
        "the first request lost the key"
    );
    assert!(
        !idempotency::complete(&mut conn, org, "k", first, 200, b"stale")
            .await
            .unwrap(),
        "the first request cannot store its answer any more"
    );
    idempotency::release(&mut conn, org, "k", first)
        .await
        .unwrap();
    assert!(
        idempotency::complete(&mut conn, org, "k", second, 201, b"fresh")
            .await
            .unwrap()
    );

    // A stored answer is kept for its 24 hours, whatever became of the lease.
    diesel::sql_query(lapse).execute(&mut conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap(),
        Claim::Done {
            status: 201,
            body: b"fresh".to_vec()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_dispatch_whose_gateway_was_killed_is_served_again_once_its_lease_lapses() {
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_IDEMPOTENCY_LEASE_MS", "2000".into())],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let body = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});
    // No matcher: the dispatch waits for an outcome that cannot come yet.
    app.stop("matcher");
    let waiting = tokio::spawn(
        app.authed(Method::POST, "/api/v1/lifecycle/dispatch")
            .header("idempotency-key", "crash-key")
            .json(&body)
            .send(),
    );
    app.eventually(
        Duration::from_secs(10),
        "the dispatch to hold its key with its trigger recorded",
        || async {
            let held = app
                .execute("SELECT 1 FROM idempotency_keys WHERE key = 'crash-key' AND state = 'in_flight'")
                .await;
            let recorded = app.execute("SELECT 1 FROM triggers").await;
            (held == 1 && recorded == 1).then_some(())
        },
    )
    .await;

    // While the dispatch runs it renews its lease: past the lease's length a retry is still
    // told the key is in flight.
    app.eventually(
        Duration::from_secs(8),
        "the running dispatch to hold its key past one lease",
        || async {
            let renewed = app
                .execute(
                    "SELECT 1 FROM idempotency_keys WHERE key = 'crash-key' AND state = 'in_flight' \
                     AND created_at < now() - interval '2500 milliseconds' AND lease_until > now()",
                )
                .await;
            (renewed == 1).then_some(())
        },
    )
    .await;
    let (status, busy) = keyed_dispatch(&app, "crash-key", &body).await;
    assert_eq!(
        (status, &busy["code"]),
        (409, &json!("idempotency_key_in_flight"))
    );

    app.kill("ingest-api");
    assert!(
        waiting.await.expect("the request task").is_err(),
        "the killed gateway never answered"
    );
    app.start("matcher");
    app.start("ingest-api");
    app.wait_ready(Duration::from_secs(30))
        .await
        .expect("the gateway is back");

    let (status, answer) = app
        .eventually(
            Duration::from_secs(20),
            "a retry with the key to be served rather than told it is in flight",
            || async {
                let (status, answer) = keyed_dispatch(&app, "crash-key", &body).await;
                (status != 409).then_some((status, answer))
            },
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["trigger_id"].is_string(), "{answer}");
    let (status, replay) = keyed_dispatch(&app, "crash-key", &body).await;
    assert_eq!((status, &replay), (200, &answer), "the answer is now kept");
}
