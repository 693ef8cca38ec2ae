//! Accepted events committed in groups, and batches committed whole, against a real, freshly
//! migrated database.

use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::TriggerType;
use beckon_store::Store;
use beckon_store::testing::WithProject;
use beckon_store::triggers::NewTrigger;
use beckon_store::users::UserChanges;
use diesel_async::RunQueryDsl;
use ingest_api::intake::{Envelope, Event, GroupError, Intake, UserUpdate};
use serde_json::json;
use uuid::Uuid;

fn event(org: Uuid, project: Uuid, user: &str) -> Event {
    let trigger = NewTrigger::new(
        org,
        project,
        TriggerType::Event,
        user,
        &LifecycleEvent::TrialExpired,
    );
    Event {
        org_id: org,
        project_id: project,
        user: Some(UserUpdate {
            user_ref: user.to_owned(),
            changes: UserChanges {
                email: Some(format!("{user}@example.com")),
                ..Default::default()
            },
        }),
        envelope: Some(Envelope {
            id: Uuid::now_v7(),
            exchange: "events".into(),
            routing_key: "event.received.v1".into(),
            body: b"{}".to_vec(),
            traceparent: None,
        }),
        trigger,
    }
}

async fn count(store: &Store, sql: &str) -> usize {
    let mut conn = store.conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap()
}

/// On this single-threaded runtime the intake workers run only when the test awaits, by which
/// time all three events are queued: they are taken as one group. The group fails (one event
/// names a project that does not exist), so each is committed again on its own: the good ones
/// commit, with their users and envelopes, and only the bad one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_a_bad_event_commits_the_others_and_fails_only_that_one() {
    let WithProject {
        db: _db,
        store,
        org_id: org,
        project_id: project,
    } = WithProject::new(8).await;
    let intake = Intake::start(store.clone(), tokio_util::sync::CancellationToken::new());

    let (a, bad, b) = tokio::join!(
        intake.commit(event(org, project, "a")),
        intake.commit(event(org, Uuid::now_v7(), "ghost")),
        intake.commit(event(org, project, "b")),
    );
    let a = a.expect("the intake runs").expect("a commits");
    let b = b.expect("the intake runs").expect("b commits");
    assert!(
        bad.expect("the intake runs").is_err(),
        "an event for a missing project fails"
    );
    assert_eq!((a.len(), b.len()), (1, 1), "each gets its own outbox row");
    assert_ne!(a[0].envelope_id, b[0].envelope_id);

    assert_eq!(count(&store, "SELECT 1 FROM triggers").await, 2);
    assert_eq!(count(&store, "SELECT 1 FROM outbox").await, 2);
    assert_eq!(
        count(
            &store,
            "SELECT 1 FROM users WHERE email IS NOT NULL AND user_ref IN ('a', 'b')"
        )
        .await,
        2
    );
    assert_eq!(
        count(&store, "SELECT 1 FROM users WHERE user_ref = 'ghost'").await,
        0
    );
}

/// An event that names no contact, committed in a group with one that does: its trigger is
/// recorded completed at once with the reason `no_contact`, with no user and no envelope; the
/// other is queued as ever. Scheduled, it waits like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_contact_commits_a_completed_trigger_and_nothing_to_send() {
    let WithProject {
        db: _db,
        store,
        org_id: org,
        project_id: project,
    } = WithProject::new(8).await;
    let intake = Intake::start(store.clone(), tokio_util::sync::CancellationToken::new());
    let contactless = |scheduled: bool| {
        let mut trigger = NewTrigger::without_contact(
            org,
            project,
            TriggerType::Event,
            &LifecycleEvent::TrialExpired,
        );
        if scheduled {
            trigger.scheduled_for = Some(time::OffsetDateTime::now_utc() + time::Duration::DAY);
        }
        Event {
            org_id: org,
            project_id: project,
            user: None,
            envelope: None,
            trigger,
        }
    };
    let (now, later, with) = tokio::join!(
        intake.commit(contactless(false)),
        intake.commit(contactless(true)),
        intake.commit(event(org, project, "a")),
    );
    let now = now.expect("the intake runs").expect("commits");
    let later = later.expect("the intake runs").expect("commits");
    let with = with.expect("the intake runs").expect("commits");
    assert_eq!((now.len(), later.len(), with.len()), (0, 0, 1));
    assert_eq!(
        count(
            &store,
            "SELECT 1 FROM triggers WHERE user_ref IS NULL AND status = 'completed' \
             AND reason = 'no_contact' AND started_at IS NOT NULL AND completed_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT 1 FROM triggers WHERE user_ref IS NULL AND status = 'scheduled' AND reason IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT 1 FROM triggers WHERE user_ref = 'a' AND status = 'queued'"
        )
        .await,
        1
    );
    assert_eq!(count(&store, "SELECT 1 FROM outbox").await, 1);
    assert_eq!(count(&store, "SELECT 1 FROM users").await, 1);
}

/// A database that takes connections but never answers (a failover in progress, a partition)
/// fails a group on its pool's 5 s timeouts; its events are then tried again each on its own,
/// all at once, so every request of the group is answered within three of those timeouts (the
/// group's connection; the first eight events' connections; the rest, which waited for those
/// slots, their own), not one round of timeouts per few events. The clock is paused: the
/// timeouts pass at once.
#[tokio::test(start_paused = true)]
async fn a_silent_database_answers_every_event_of_a_group_within_three_pool_timeouts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        // Accepts and holds every connection, and never says a word.
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = Store::new(&format!("postgres://postgres@127.0.0.1:{port}/silent"), 8).unwrap();
    let intake = Intake::start(store, tokio_util::sync::CancellationToken::new());
    let (org, project) = (Uuid::now_v7(), Uuid::now_v7());
    let start = tokio::time::Instant::now();
    // As many as one group holds.
    let answers = futures_util::future::join_all((0..64).map(|i| {
        let (intake, event) = (&intake, event(org, project, &format!("u{i}")));
        async move {
            let outcome = intake.commit(event).await.expect("the intake runs");
            (start.elapsed(), outcome.is_err())
        }
    }))
    .await;
    assert!(answers.iter().all(|(_, failed)| *failed));
    let last = answers.iter().map(|(at, _)| *at).max().unwrap();
    assert!(
        last <= std::time::Duration::from_secs(15),
        "the last request was answered after {last:?}"
    );
}

/// A batch commits in one transaction: when one of its events cannot be written (here its
/// trigger's id is taken), none of them is — no trigger, no envelope, no user — and the
/// batch without that event commits whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_all_its_events_or_none_of_them() {
    let WithProject {
        db: _db,
        store,
        org_id: org,
        project_id: project,
    } = WithProject::new(8).await;
    let intake = Intake::start(store.clone(), tokio_util::sync::CancellationToken::new());
    let mut batch: Vec<Event> = ["a", "b", "c"]
        .into_iter()
        .map(|user| event(org, project, user))
        .collect();
    let mut taken = NewTrigger::without_contact(
        org,
        project,
        TriggerType::Event,
        &LifecycleEvent::TrialExpired,
    );
    taken.id = batch[2].trigger.id;
    beckon_store::triggers::insert(&mut store.conn().await.unwrap(), &taken)
        .await
        .unwrap();

    let err = intake
        .commit_batch(&batch)
        .await
        .expect_err("a taken trigger id fails the batch");
    assert!(
        matches!(&err, GroupError::Store(e) if e.is_unique_violation()),
        "{err:?}"
    );
    assert_eq!(
        count(&store, "SELECT 1 FROM triggers").await,
        1,
        "only the trigger that was there"
    );
    assert_eq!(count(&store, "SELECT 1 FROM outbox").await, 0);
    assert_eq!(count(&store, "SELECT 1 FROM users").await, 0);

    batch.pop();
    let rows = intake.commit_batch(&batch).await.expect("commits");
    assert_eq!(rows.len(), 2, "an outbox row per event");
    assert_eq!(count(&store, "SELECT 1 FROM triggers").await, 3);
    assert_eq!(count(&store, "SELECT 1 FROM users").await, 2);
}

/// Events of a batch about one user update it in the batch's order (the later email wins,
/// custom fields merge in turn), however the group sorts its users to lock them, and a user
/// named twice is created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_named_twice_in_a_batch_is_updated_in_the_batchs_order() {
    let WithProject {
        db: _db,
        store,
        org_id: org,
        project_id: project,
    } = WithProject::new(8).await;
    let intake = Intake::start(store.clone(), tokio_util::sync::CancellationToken::new());
    let about = |user: &str, email: &str, fields: serde_json::Value| {
        let mut event = event(org, project, user);
        event.user = Some(UserUpdate {
            user_ref: user.to_owned(),
            changes: UserChanges {
                email: Some(email.to_owned()),
                attributes: Some(fields),
                ..Default::default()
            },
        });
        event
    };
    // `z` sorts after `a`, and is named first and last.
    let batch = [
        about(
            "z",
            "first@example.com",
            json!({"plan": "free", "seats": 1}),
        ),
        about("a", "a@example.com", json!({})),
        about("z", "second@example.com", json!({"plan": "pro"})),
    ];
    intake.commit_batch(&batch).await.expect("commits");
    let user = beckon_store::users::get(&mut store.conn().await.unwrap(), project, "z")
        .await
        .unwrap()
        .expect("z is kept");
    assert_eq!(user.email.as_deref(), Some("second@example.com"));
    assert_eq!(user.attributes, json!({"plan": "pro", "seats": 1}));
    assert_eq!(count(&store, "SELECT 1 FROM users").await, 2);
    assert_eq!(count(&store, "SELECT 1 FROM triggers").await, 3);
}

/// An event whose user update would take the user's attributes past their bound fails the
/// batch naming it, so the caller can refuse that event alone; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_update_too_large_fails_the_batch_naming_its_event() {
    let WithProject {
        db: _db,
        store,
        org_id: org,
        project_id: project,
    } = WithProject::new(8).await;
    let intake = Intake::start(store.clone(), tokio_util::sync::CancellationToken::new());
    let mut batch = vec![event(org, project, "a"), event(org, project, "b")];
    let big = "x".repeat(beckon_store::users::MAX_ATTRIBUTES_BYTES as usize);
    if let Some(user) = &mut batch[1].user {
        user.changes.attributes = Some(json!({ "notes": big }));
    }
    let err = intake.commit_batch(&batch).await.expect_err("too large");
    assert!(
        matches!(err, GroupError::AttributesTooLarge { index: 1 }),
        "{err:?}"
    );
    assert_eq!(count(&store, "SELECT 1 FROM triggers").await, 0);
    assert_eq!(count(&store, "SELECT 1 FROM users").await, 0);
}
