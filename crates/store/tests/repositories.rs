//! The repositories against a real, freshly migrated database.

use beckon_domain::LifecycleEvent;
use beckon_domain::scope::Scope;
use beckon_domain::survey::SurveyStatus;
use beckon_store::paging::PageRequest;
use beckon_store::surveys::{self, NewSurvey, SurveyPatch};
use beckon_store::testing::{TestDatabase, WithProject};
use beckon_store::{Store, invitations, tenancy};
use uuid::Uuid;

async fn setup() -> (TestDatabase, Store, Uuid, Uuid) {
    let seeded = WithProject::new(24).await;
    (seeded.db, seeded.store, seeded.org_id, seeded.project_id)
}

fn new_survey(
    org: Uuid,
    project: Uuid,
    status: SurveyStatus,
    events: Vec<LifecycleEvent>,
) -> NewSurvey {
    NewSurvey {
        cooldown_seconds: 3600,
        invitation_lifetime_seconds: 60,
        ..beckon_store::testing::survey(org, project, status, events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_until_revoked_and_only_by_their_hash() {
    let (_db, store, org, _) = setup().await;
    let mut conn = store.conn().await.unwrap();
    let (token, plaintext) =
        tenancy::create_token(&mut conn, org, "ci", &[Scope::Send], None, None)
            .await
            .unwrap();
    let grant = tenancy::authenticate(&mut conn, plaintext.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((grant.org_id, grant.scopes), (org, vec![Scope::Send]));
    assert_eq!(
        tenancy::authenticate(&mut conn, "oat_nope").await.unwrap(),
        None
    );
    assert!(
        tenancy::revoke_token(&mut conn, org, token.id)
            .await
            .unwrap()
    );
    assert_eq!(
        tenancy::authenticate(&mut conn, plaintext.expose())
            .await
            .unwrap(),
        None
    );
    // An expired token is refused; one expiring later is not, and the list shows all three
    // without their secrets.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (_, expired) =
        tenancy::create_token(&mut conn, org, "old", &[Scope::Read], Some(past), None)
            .await
            .unwrap();
    assert_eq!(
        tenancy::authenticate(&mut conn, expired.expose())
            .await
            .unwrap(),
        None
    );
    let (_, later) =
        tenancy::create_token(&mut conn, org, "new", &[Scope::Read], Some(future), None)
            .await
            .unwrap();
    assert!(
        tenancy::authenticate(&mut conn, later.expose())
            .await
            .unwrap()
            .is_some()
    );
    let listed = tenancy::list_tokens(&mut conn, org, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(!listed.has_more);
    assert_eq!(
        listed
            .items
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["new", "old", "ci"]
    );
}

/// The ids of the Live surveys `found` matched, in order.
fn live_ids(found: &surveys::Candidates) -> Vec<Uuid> {
    found.live.iter().map(|s| s.matched.survey_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_live_surveys_subscribed_to_the_exact_event_match() {
    let (_db, store, org, project) = setup().await;
    let mut conn = store.conn().await.unwrap();
    let custom = LifecycleEvent::from_name("payment_failed").unwrap();
    let live = surveys::create_survey(
        &mut conn,
        new_survey(org, project, SurveyStatus::Live, vec![custom.clone()]),
    )
    .await
    .unwrap();
    let paused = surveys::create_survey(
        &mut conn,
        new_survey(org, project, SurveyStatus::Paused, vec![custom.clone()]),
    )
    .await
    .unwrap();
    let elsewhere = surveys::create_survey(
        &mut conn,
        new_survey(
            org,
            project,
            SurveyStatus::Live,
            vec![LifecycleEvent::TrialExpired],
        ),
    )
    .await
    .unwrap();
    surveys::create_survey(
        &mut conn,
        new_survey(org, project, SurveyStatus::Archived, vec![custom.clone()]),
    )
    .await
    .unwrap();

    let found = surveys::candidates(&conn, project, &custom.key(), None)
        .await
        .unwrap();
    assert_eq!(live_ids(&found), vec![live.id]);
    // The others but the archived one, each with why: oldest first.
    assert_eq!(
        found
            .unmatched
            .iter()
            .map(|s| (s.survey_id, s.live))
            .collect::<Vec<_>>(),
        vec![(paused.id, false), (elsewhere.id, true)]
    );
    // Matching one survey (a reminder) lists no others, and only that one if it matches.
    let only = surveys::candidates(&conn, project, &custom.key(), Some(live.id))
        .await
        .unwrap();
    assert_eq!(only.live.len(), 1);
    assert!(only.unmatched.is_empty());
    for not_matching in [paused.id, elsewhere.id] {
        let only = surveys::candidates(&conn, project, &custom.key(), Some(not_matching))
            .await
            .unwrap();
        assert!(only.live.is_empty() && only.unmatched.is_empty());
    }
    let other_project = Uuid::now_v7();
    assert!(
        surveys::candidates(&conn, other_project, &custom.key(), None)
            .await
            .unwrap()
            .live
            .is_empty()
    );
    let named_like_predefined = LifecycleEvent::Custom(
        beckon_domain::event::CustomEventName::parse("trial_expired").unwrap(),
    );
    assert!(
        surveys::candidates(&conn, project, &named_like_predefined.key(), None)
            .await
            .unwrap()
            .live
            .is_empty()
    );
}

/// However many surveys an event does not match, it lists the oldest hundred, and every
/// survey it does match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_lists_at_most_a_hundred_surveys_it_did_not_match() {
    let (_db, store, org, project) = setup().await;
    let mut conn = store.conn().await.unwrap();
    let event = LifecycleEvent::TrialExpired;
    let mut others = Vec::new();
    for _ in 0..surveys::MAX_UNMATCHED + 2 {
        let s = surveys::create_survey(
            &mut conn,
            new_survey(org, project, SurveyStatus::Draft, vec![event.clone()]),
        )
        .await
        .unwrap();
        others.push(s.id);
    }
    let mut live = Vec::new();
    for _ in 0..2 {
        let s = surveys::create_survey(
            &mut conn,
            new_survey(org, project, SurveyStatus::Live, vec![event.clone()]),
        )
        .await
        .unwrap();
        live.push(s.id);
    }
    let found = surveys::candidates(&conn, project, &event.key(), None)
        .await
        .unwrap();
    assert_eq!(live_ids(&found), live);
    others.truncate(surveys::MAX_UNMATCHED as usize);
    assert_eq!(
        found
            .unmatched
            .iter()
            .map(|s| s.survey_id)
            .collect::<Vec<_>>(),
        others
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_questions_make_a_new_version_and_other_edits_do_not() {
    let (_db, store, org, project) = setup().await;
    let mut conn = store.conn().await.unwrap();
    let s = surveys::create_survey(
        &mut conn,
        new_survey(org, project, SurveyStatus::Live, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(s.version, 1);
    let renamed = surveys::update_survey(
        &mut conn,
        project,
        s.id,
        SurveyPatch {
            name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((renamed.version, renamed.name.as_str()), (1, "Renamed"));
    let mut questions = s.questions.clone();
    questions[0].title = "Changed?".into();
    let v2 = surveys::update_survey(
        &mut conn,
        project,
        s.id,
        SurveyPatch {
            questions: Some(questions),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.questions[0].title, "Changed?");
    assert!(
        surveys::update_survey(&mut conn, Uuid::now_v7(), s.id, SurveyPatch::default())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_cooldown_claims_let_exactly_one_through() {
    let (_db, store, org, project) = setup().await;
    let survey = {
        let mut conn = store.conn().await.unwrap();
        surveys::create_survey(
            &mut conn,
            new_survey(org, project, SurveyStatus::Live, vec![]),
        )
        .await
        .unwrap()
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let conn = store.conn().await.unwrap();
            invitations::claim_cooldown(&conn, survey.id, "user_1", 3600)
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        claimed += usize::from(t.await.unwrap().is_none());
    }
    assert_eq!(claimed, 1);
    let conn = store.conn().await.unwrap();
    let until = invitations::in_cooldown(&conn, survey.id, "user_1", 3600)
        .await
        .unwrap()
        .and_then(|c| c.until)
        .expect("in its cooldown, until a time");
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(59) && left <= time::Duration::hours(1),
        "{left}"
    );
    // A claim that finds the window open says when it ends.
    assert_eq!(
        invitations::claim_cooldown(&conn, survey.id, "user_1", 3600)
            .await
            .unwrap()
            .and_then(|c| c.until),
        Some(until)
    );
    assert!(
        invitations::in_cooldown(&conn, survey.id, "user_2", 3600)
            .await
            .unwrap()
            .is_none()
    );
    // A zero-length window is always open again.
    assert!(
        invitations::claim_cooldown(&conn, survey.id, "user_1", 0)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensuring_a_user_creates_it_once_and_never_rewrites_a_stored_one() {
    use beckon_store::users::{self, UserChanges};
    let (_db, store, org, project) = setup().await;
    let mut conn = store.conn().await.unwrap();
    assert!(UserChanges::default().is_empty());
    let changes = UserChanges {
        email: Some("a@example.com".into()),
        attributes: Some(serde_json::json!({"plan": "pro"})),
        ..Default::default()
    };
    assert!(!changes.is_empty());
    let empty_attributes = UserChanges {
        attributes: Some(serde_json::json!({})),
        ..Default::default()
    };
    assert!(empty_attributes.is_empty());

    users::ensure(&mut conn, org, project, "u1").await.unwrap();
    let created = users::get(&mut conn, project, "u1").await.unwrap().unwrap();
    assert_eq!(created.email, None);
    assert_eq!(created.attributes, serde_json::json!({}));

    let stored = users::upsert(&mut conn, org, project, "u1", &changes)
        .await
        .unwrap();
    users::ensure(&mut conn, org, project, "u1").await.unwrap();
    // Left exactly as it was: the same values and the same row version.
    let after = users::get(&mut conn, project, "u1").await.unwrap().unwrap();
    assert_eq!(after, stored);
    assert_eq!(after.email.as_deref(), Some("a@example.com"));

    // Many at once, repeats included: the new one created, the stored one untouched; and read
    // back together, the pairs not stored left out.
    users::ensure_many(
        &conn,
        &[
            (org, project, "u2"),
            (org, project, "u1"),
            (org, project, "u2"),
        ],
    )
    .await
    .unwrap();
    let mut both = users::get_many(
        &conn,
        &[
            (project, "u1"),
            (project, "u2"),
            (project, "nobody"),
            (org, "u1"),
        ],
    )
    .await
    .unwrap();
    both.sort_by(|a, b| a.user_ref.cmp(&b.user_ref));
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], stored);
    assert_eq!(
        (both[1].user_ref.as_str(), both[1].email.as_deref()),
        ("u2", None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_connection_bounds_its_statements_and_its_lock_waits() {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use std::time::{Duration, Instant};

    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement_timeout: String,
    }

    let db = TestDatabase::new().await.expect("a test database");
    // The defaults every service runs with, unless configured otherwise.
    let defaults = Store::new(db.url(), 1).expect("a pool");
    let shown: Setting = diesel::sql_query("SHOW statement_timeout")
        .get_result(&mut defaults.conn().await.expect("a connection"))
        .await
        .expect("shown");
    assert_eq!(shown.statement_timeout, "30s");

    let limits = beckon_store::Limits {
        statement_timeout: Duration::from_millis(500),
        lock_timeout: Duration::from_millis(200),
    };
    let store = Store::with_limits(db.url(), 2, Some(limits)).expect("a pool");
    let mut conn = store.conn().await.expect("a connection");
    let started = Instant::now();
    let slow = diesel::sql_query("SELECT pg_sleep(10)")
        .execute(&mut conn)
        .await;
    assert!(slow.is_err(), "a statement past the timeout is cancelled");
    assert!(started.elapsed() < Duration::from_secs(5));

    // One connection holds a row lock inside a transaction; the other waits no longer than
    // its lock timeout for it.
    diesel::sql_query("CREATE TABLE locked (id int PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .expect("created");
    diesel::sql_query("INSERT INTO locked VALUES (1)")
        .execute(&mut conn)
        .await
        .expect("inserted");
    let mut holder = store.conn().await.expect("a second connection");
    let mut waiter = conn;
    let waited = holder
        .transaction::<_, diesel::result::Error, _>(async |holder| {
            diesel::sql_query("SELECT id FROM locked WHERE id = 1 FOR UPDATE")
                .execute(holder)
                .await?;
            let started = Instant::now();
            let blocked = diesel::sql_query("UPDATE locked SET id = 2 WHERE id = 1")
                .execute(&mut waiter)
                .await;
            Ok((blocked.is_err(), started.elapsed()))
        })
        .await
        .expect("the holder's transaction");
    assert!(waited.0, "a lock wait past the timeout fails");
    assert!(waited.1 < Duration::from_secs(5), "{:?}", waited.1);
}
