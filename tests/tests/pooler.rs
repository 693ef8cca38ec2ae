//! Every service behind PgBouncer in transaction pooling (Debian's 1.18, which keeps no
//! prepared statements in that mode), with few server connections shared by all of them:
//! `scripts/pgbouncer.sh` starts it on its own port and stops it when the test ends. One test:
//! the port is fixed.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, ScriptServers, TestApp};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_works_behind_pgbouncer_in_transaction_pooling() {
    let _pooler = ScriptServers::start("pgbouncer.sh");
    let app = TestApp::spawn_with(Options {
        database_address: Some("127.0.0.1:6442".into()),
        env: vec![("BECKON_DB_POOLING", "transaction".into())],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let receiver = Receiver::start().await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/pooled")}))
        .await;

    // Many requests at once, so that the services' connections take turns on the pooler's
    // few server connections, statement by statement.
    const EVENTS: usize = 120;
    let sent: Vec<(u16, serde_json::Value)> = futures_util::stream::iter(0..EVENTS)
        .map(|i| {
            let app = &app;
            async move {
                if i % 4 == 0 {
                    app.dispatch(json!({"project_id": project, "user_ref": format!("u{i}"), "event": "trial_expired"}))
                        .await
                } else {
                    app.send_event(
                        Some(project),
                        json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}),
                    )
                    .await
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (status, body) in &sent {
        assert!(matches!(status, 200 | 201), "{status} {body}");
    }
    app.eventually(
        Duration::from_secs(60),
        "every trigger completed",
        || async {
            let done = app
                .execute("SELECT 1 FROM triggers WHERE status = 'completed'")
                .await;
            (done == EVENTS).then_some(())
        },
    )
    .await;
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, EVENTS);
    // Each invitation's webhook, and reads through the gateway.
    receiver
        .wait_for("/ok/pooled", EVENTS, Duration::from_secs(60))
        .await;
    let (status, listed) = app.trigger(sent[1].1["trigger_id"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{listed}");

    // The limits are the role's: a `SET` on a pooled session would stay there for whichever
    // client runs on it next. Four statements at once run on every server session the pooler
    // keeps for this database, each still as the server made it.
    let pooled_url = app.db.url().replacen("127.0.0.1:5432", "127.0.0.1:6442", 1);
    let pooled = beckon_store::Store::with_limits(&pooled_url, 4, None).unwrap();
    let shown: Vec<String> =
        futures_util::future::join_all((0..4).map(|_| statement_timeout(&pooled))).await;
    assert_eq!(
        shown, ["0"; 4],
        "no service left its own settings on a shared session"
    );
}

/// The session's statement timeout, from a statement that keeps its session half a second.
async fn statement_timeout(store: &beckon_store::Store) -> String {
    use diesel_async::RunQueryDsl;
    let mut conn = store.conn().await.unwrap();
    let shown: Setting = diesel::sql_query(
        "SELECT current_setting('statement_timeout') AS statement_timeout, \
         pg_sleep(0.5)::text AS slept",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    shown.statement_timeout
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[allow(dead_code)]
    slept: String,
}
