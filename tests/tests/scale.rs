//! Two replicas of every consumer share the work; each service (the gateway too) is stopped
//! with SIGTERM in turn while events stream in, and started again. Nothing accepted is lost and
//! nothing is done twice.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_and_sigterm_under_load_loses_nothing() {
    let mut app = TestApp::spawn_with(Options {
        matcher_replicas: 2,
        invitation_replicas: 2,
        ..Options::default()
    })
    .await;
    app.start("webhook-delivery");
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/scale")}))
        .await;

    let app = Arc::new(tokio::sync::Mutex::new(app));
    let done = Arc::new(AtomicBool::new(false));
    // A steady stream of events, bounded in count.
    let load = {
        let app = app.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (http, url, token) = {
                let a = app.lock().await;
                (
                    a.http.clone(),
                    a.url("/api/v1/events/send"),
                    a.token.clone(),
                )
            };
            let accepted: Vec<String> = stream::iter(0..240)
                .map(|i| {
                    let (http, url, token) = (http.clone(), url.clone(), token.clone());
                    async move {
                        tokio::time::sleep(Duration::from_millis(8 * (i % 40))).await;
                        let r = http
                            .post(&url)
                            .header("x-api-key", token)
                            .header("x-team-id", project.to_string())
                            .json(&json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("user-{i}")}}))
                            .send()
                            .await
                            .ok()?;
                        (r.status() == 201).then_some(())?;
                        let body: serde_json::Value = r.json().await.ok()?;
                        body["trigger_id"].as_str().map(str::to_owned)
                    }
                })
                .buffer_unordered(4)
                .filter_map(|x| async move { x })
                .collect()
                .await;
            done.store(true, Ordering::SeqCst);
            accepted
        })
    };
    // Meanwhile each consumer service loses one replica to SIGTERM, and gets it back; so does
    // the gateway, which finishes the requests it holds (those sent while it is away are
    // refused, never half-accepted).
    for service in ["matcher", "invitation", "webhook-delivery", "ingest-api"] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut a = app.lock().await;
        assert!(a.stop_one(service), "{service} runs");
        a.start(service);
    }
    let accepted = load.await.unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert!(
        accepted.len() >= 100,
        "most events were accepted: {}",
        accepted.len()
    );

    let app = app.lock().await;
    let n = accepted.len();
    let completed = "SELECT 1 FROM triggers WHERE trigger_type = 'event' AND status = 'completed'";
    app.eventually(
        Duration::from_secs(60),
        "every accepted event to complete",
        || async { (app.execute(completed).await == n).then_some(()) },
    )
    .await;
    assert_eq!(
        app.execute("SELECT 1 FROM invitations").await,
        n,
        "one invitation per event, none twice"
    );
    let hooks = receiver
        .wait_for("/ok/scale", n, Duration::from_secs(60))
        .await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for h in &hooks {
        *by_id.entry(h.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(by_id.len(), n, "one webhook per invitation");
    let repeats: usize = by_id.values().map(|c| c - 1).sum();
    assert_eq!(repeats, 0, "a graceful stop repeats nothing");
    let work_split = app
        .execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'invitation'")
        .await;
    assert_eq!(work_split, n);
}
