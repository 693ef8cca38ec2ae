//! Faults under load: while events stream in with two webhook subscriptions attached, each
//! service in turn is killed with SIGKILL and restarted a few seconds later, then RabbitMQ is
//! restarted, then PostgreSQL. When the load stops and the system drains, every event that got
//! a 2xx has its trigger completed and exactly one invitation, and every invitation reached
//! each subscription at least once — a duplicate only ever as a repeat of the same
//! `webhook-id`. The counts are printed.
//!
//! It disturbs the shared broker and database, so it runs alone (`--run-ignored only`, as
//! `make test` does with a short load); `make chaos` runs it longer and harder through
//! `BECKON_CHAOS_RATE` (events/s, default 40) and `BECKON_CHAOS_PHASE_SECONDS` (load around
//! each fault, default 3).

use beckon_e2e::infra::{postgres, restart_rabbitmq};
use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Load {
    /// user ref → trigger id, for every event answered 201.
    accepted: HashMap<String, String>,
    refused: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: kills services and restarts RabbitMQ and PostgreSQL; run alone"]
async fn nothing_accepted_is_lost_when_services_the_broker_or_the_database_die() {
    let rate = setting("BECKON_CHAOS_RATE", 40);
    let phase = Duration::from_secs(setting("BECKON_CHAOS_PHASE_SECONDS", 3));
    let mut app = TestApp::spawn_with(Options {
        env: vec![
            ("RUST_LOG", "warn".into()),
            ("BECKON_DELIVERY_LIMIT", "20".into()),
        ],
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 0}),
    )
    .await;
    let subscriptions = ["/ok/chaos-a", "/ok/chaos-b"];
    for path in subscriptions {
        app.create_webhook(project, json!({"url": receiver.url(path)}))
            .await;
    }

    // A steady load, open loop, from its own task.
    let load = Arc::new(Mutex::new(Load::default()));
    let running = Arc::new(AtomicBool::new(true));
    let sender = {
        let (load, running) = (load.clone(), running.clone());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let (url, token) = (app.url("/api/v1/events/send"), app.token.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut n = 0u64;
            let mut in_flight = tokio::task::JoinSet::new();
            while running.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let user = format!("c{n}");
                let request = http
                    .post(&url)
                    .header("x-api-key", &token)
                    .header("x-team-id", project.to_string())
                    .json(&json!({"event_name": "trial_expired", "user_info": {"contact_external_id": user}}));
                let load = load.clone();
                in_flight.spawn(async move {
                    let answer = match request.send().await {
                        Ok(r) if r.status().as_u16() == 201 => {
                            r.json::<serde_json::Value>().await.ok()
                        }
                        _ => None,
                    };
                    let mut load = load.lock().unwrap();
                    match answer.and_then(|b| b["trigger_id"].as_str().map(str::to_owned)) {
                        Some(trigger) => {
                            load.accepted.insert(user, trigger);
                        }
                        None => load.refused += 1,
                    }
                });
            }
            while in_flight.join_next().await.is_some() {}
        })
    };

    tokio::time::sleep(phase).await;
    for service in ["matcher", "invitation", "webhook-delivery", "ingest-api"] {
        eprintln!("chaos: SIGKILL {service}");
        app.kill(service);
        tokio::time::sleep(Duration::from_secs(2)).await;
        app.start(service);
        tokio::time::sleep(phase).await;
    }
    eprintln!("chaos: restarting RabbitMQ");
    tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap();
    tokio::time::sleep(phase).await;
    eprintln!("chaos: restarting PostgreSQL");
    tokio::task::spawn_blocking(|| postgres("restart"))
        .await
        .unwrap();
    tokio::time::sleep(phase).await;
    running.store(false, Ordering::SeqCst);
    sender.await.unwrap();

    let (accepted, refused) = {
        let load = load.lock().unwrap();
        (load.accepted.clone(), load.refused)
    };
    assert!(
        accepted.len() as u64 >= rate,
        "too little was accepted to show anything: {}",
        accepted.len()
    );

    // Drain: every accepted trigger completes (the pipeline reconnects by itself).
    app.wait_ready(Duration::from_secs(60)).await.unwrap();
    let triggers: Vec<String> = accepted.values().cloned().collect();
    let list = triggers
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    app.eventually(
        Duration::from_secs(120),
        "every accepted trigger to complete",
        || {
            let sql =
                format!("SELECT 1 FROM triggers WHERE id IN ({list}) AND status = 'completed'");
            let app = &app;
            let want = triggers.len();
            async move { (app.execute(&sql).await == want).then_some(()) }
        },
    )
    .await;

    // Exactly one invitation per accepted event.
    let invitations = app
        .execute(&format!(
            "SELECT 1 FROM invitations WHERE trigger_id IN ({list})"
        ))
        .await;
    let doubled = app
        .execute(&format!(
            "SELECT trigger_id FROM invitations WHERE trigger_id IN ({list}) GROUP BY trigger_id HAVING count(*) > 1"
        ))
        .await;

    // Every invitation at every subscription, at least once.
    let expected: HashSet<&str> = accepted.keys().map(String::as_str).collect();
    let mut webhooks = 0;
    let mut duplicates = 0;
    let mut lost = 0;
    for path in subscriptions {
        let want = expected.len();
        let got = app
            .eventually(
                Duration::from_secs(120),
                &format!("webhooks at {path}"),
                || {
                    let received = receiver.received(path);
                    let users: HashSet<String> = received
                        .iter()
                        .filter_map(|r| {
                            r.json()["data"]["user"]["user_ref"]
                                .as_str()
                                .map(str::to_owned)
                        })
                        .filter(|u| expected.contains(u.as_str()))
                        .collect();
                    std::future::ready((users.len() >= want).then_some(received))
                },
            )
            .await;
        let mut ids_by_user: HashMap<String, HashSet<String>> = HashMap::new();
        for r in &got {
            let body = r.json();
            let Some(user) = body["data"]["user"]["user_ref"].as_str() else {
                continue;
            };
            if !expected.contains(user) {
                continue;
            }
            webhooks += 1;
            ids_by_user
                .entry(user.to_owned())
                .or_default()
                .insert(r.header("webhook-id").to_owned());
        }
        for user in &expected {
            match ids_by_user.get(*user) {
                None => lost += 1,
                Some(ids) => assert_eq!(
                    ids.len(),
                    1,
                    "{user} at {path} arrived under more than one webhook-id: {ids:?}"
                ),
            }
        }
        duplicates += got
            .iter()
            .filter(|r| {
                r.json()["data"]["user"]["user_ref"]
                    .as_str()
                    .is_some_and(|u| expected.contains(u))
            })
            .count()
            - ids_by_user.len();
    }
    println!(
        "chaos: accepted {}, refused {refused}, invitations {invitations}, webhooks {webhooks} \
         ({} subscriptions), duplicates {duplicates} (same webhook-id), lost {lost}",
        accepted.len(),
        subscriptions.len()
    );
    assert_eq!(
        invitations,
        accepted.len(),
        "one invitation per accepted event"
    );
    assert_eq!(doubled, 0, "no event invited twice");
    assert_eq!(lost, 0, "every invitation reached every subscription");
}
