//! The invitation handler called directly on a real database, without a broker: what a batch
//! of matched events comes to.

use beckon_bus::{BusConfig, Topology};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::{Envelope, EventMatched, MatchedSurvey, Skip, TriggerType};
use beckon_domain::outcome::SurveyOutcome;
use beckon_domain::survey::SurveyStatus;
use beckon_domain::user_ref::UserRef;
use beckon_store::surveys::{self, NewSurvey};
use beckon_store::testing::WithProject;
use beckon_store::triggers::{self, NewTrigger};
use beckon_worker::{Handler, Item};
use invitation::Inviter;
use uuid::Uuid;

fn inviter() -> Inviter {
    Inviter {
        public_url: "http://127.0.0.1:8080".into(),
        topology: Topology::new(&BusConfig::new("amqp://127.0.0.1", "handler-test")),
        sealing_keys: beckon_webhooks::sealed::SealingKeys::from_base64_list(
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
        )
        .expect("a key"),
    }
}

async fn live_survey(seeded: &WithProject, cooldown_seconds: i64) -> MatchedSurvey {
    live_survey_in(seeded, seeded.project_id, cooldown_seconds).await
}

async fn live_survey_in(
    seeded: &WithProject,
    project_id: Uuid,
    cooldown_seconds: i64,
) -> MatchedSurvey {
    let mut conn = seeded.store.conn().await.expect("a connection");
    let survey = surveys::create_survey(
        &mut conn,
        NewSurvey {
            project_id,
            cooldown_seconds,
            ..seeded.survey(SurveyStatus::Live, vec![LifecycleEvent::TrialExpired])
        },
    )
    .await
    .expect("a survey");
    MatchedSurvey {
        survey_id: survey.id,
        name: survey.name,
        version: survey.version,
        cooldown_seconds,
        sample_rate: 1.0,
        sample_by: Default::default(),
        invitation_lifetime_seconds: 600,
        skip: None,
    }
}

/// A queued trigger for `user` and the `event.matched` envelope listing `surveys` for it.
async fn matched(
    seeded: &WithProject,
    user: &str,
    surveys: Vec<MatchedSurvey>,
) -> Envelope<EventMatched> {
    let mut conn = seeded.store.conn().await.expect("a connection");
    let trigger = NewTrigger::new(
        seeded.org_id,
        seeded.project_id,
        TriggerType::Event,
        user,
        &LifecycleEvent::TrialExpired,
    );
    triggers::insert(&mut conn, &trigger)
        .await
        .expect("a trigger");
    Envelope::new(
        Uuid::now_v7(),
        seeded.org_id,
        seeded.project_id,
        trigger.id,
        EventMatched {
            trigger_type: TriggerType::Event,
            user_ref: UserRef::parse(user).expect("a user"),
            event: LifecycleEvent::TrialExpired,
            reply_to: None,
            surveys,
            event_data: None,
            variables: None,
            source: None,
            unmatched: Vec::<beckon_domain::envelope::UnmatchedSurvey>::new(),
        },
    )
}

async fn handle(seeded: &WithProject, envs: &[Envelope<EventMatched>]) -> Vec<usize> {
    let span = tracing::Span::none();
    let items: Vec<_> = envs.iter().map(|env| Item { env, span: &span }).collect();
    let mut conn = seeded.store.conn().await.expect("a connection");
    let emitted = inviter()
        .handle(&items, &mut conn)
        .await
        .expect("the batch is handled");
    emitted.emits.iter().map(Vec::len).collect()
}

async fn outcomes(
    seeded: &WithProject,
    trigger_id: Uuid,
) -> Vec<(Uuid, SurveyOutcome, Option<String>)> {
    let mut conn = seeded.store.conn().await.expect("a connection");
    triggers::results(&mut conn, trigger_id)
        .await
        .expect("the results")
        .into_iter()
        .map(|r| (r.survey_id, r.outcome, r.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_deleted_after_the_match_errors_alone_and_the_others_are_invited() {
    let seeded = WithProject::new(4).await;
    let kept = live_survey(&seeded, 3600).await;
    let deleted = live_survey(&seeded, 3600).await;
    let env = matched(&seeded, "user_1", vec![kept.clone(), deleted.clone()]).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "DELETE FROM surveys WHERE id = '{}'",
            deleted.survey_id
        )),
        &mut conn,
    )
    .await
    .expect("deleted");
    drop(conn);

    // One announcement, of the invitation created.
    assert_eq!(handle(&seeded, std::slice::from_ref(&env)).await, vec![1]);
    let mut found = outcomes(&seeded, env.correlation_id).await;
    found.sort_by_key(|(id, ..)| *id != kept.survey_id);
    assert_eq!(found[0].1, SurveyOutcome::Created);
    assert_eq!(found[1].0, deleted.survey_id);
    assert_eq!(found[1].1, SurveyOutcome::Errored);
    assert!(
        found[1].2.as_deref().is_some_and(|r| r.contains("deleted")),
        "the reason says why: {:?}",
        found[1].2
    );
    let mut conn = seeded.store.conn().await.expect("a connection");
    let trigger = triggers::get(&mut conn, env.correlation_id)
        .await
        .expect("read")
        .expect("the trigger");
    assert_eq!(
        (
            trigger.status.as_str(),
            trigger.created_count,
            trigger.errored_count
        ),
        ("completed", 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_events_of_one_user_in_one_batch_share_the_cooldown() {
    let seeded = WithProject::new(4).await;
    let survey = live_survey(&seeded, 3600).await;
    let first = matched(&seeded, "user_1", vec![survey.clone()]).await;
    let second = matched(&seeded, "user_1", vec![survey.clone()]).await;
    let other = matched(&seeded, "user_2", vec![survey.clone()]).await;

    assert_eq!(
        handle(&seeded, &[first.clone(), second.clone(), other.clone()]).await,
        vec![1, 0, 1],
        "the second event of user_1 finds the window the first claimed"
    );
    assert_eq!(
        outcomes(&seeded, first.correlation_id).await[0].1,
        SurveyOutcome::Created
    );
    assert_eq!(
        outcomes(&seeded, second.correlation_id).await[0].1,
        SurveyOutcome::Cooldown
    );
    assert_eq!(
        outcomes(&seeded, other.correlation_id).await[0].1,
        SurveyOutcome::Created
    );
}

/// A survey deleted while the batch is decided: the deletion started first and commits while
/// the handler waits on the survey's row. The handler finds it gone, marks it `errored` and
/// invites the user to the other survey; the envelope does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_deleted_while_the_batch_is_decided_errors_alone() {
    let seeded = WithProject::new(4).await;
    let kept = live_survey(&seeded, 3600).await;
    let deleted = live_survey(&seeded, 3600).await;
    let env = matched(&seeded, "user_1", vec![kept.clone(), deleted.clone()]).await;

    let mut deleter = seeded.store.conn().await.expect("a connection");
    for sql in [
        "BEGIN".to_owned(),
        format!("DELETE FROM surveys WHERE id = '{}'", deleted.survey_id),
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut deleter)
            .await
            .expect("the deletion, uncommitted");
    }
    let handled = tokio::spawn(in_transaction(seeded.store.clone(), env.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("COMMIT"), &mut deleter)
        .await
        .expect("the deletion commits");
    assert_eq!(handled.await.expect("the task"), Ok(vec![1]));
    let found = outcomes(&seeded, env.correlation_id).await;
    assert!(
        found
            .iter()
            .any(|(id, outcome, _)| *id == deleted.survey_id && *outcome == SurveyOutcome::Errored)
    );
    assert!(
        found
            .iter()
            .any(|(id, outcome, _)| *id == kept.survey_id && *outcome == SurveyOutcome::Created)
    );
}

/// An envelope naming a survey of another project (only someone able to write to the broker
/// could forge one) invites no one to it: the survey counts as gone from this project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_of_another_project_is_never_invited_to() {
    let seeded = WithProject::new(4).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    let other = beckon_store::tenancy::create_project(&mut conn, seeded.org_id, "Other")
        .await
        .expect("a project");
    drop(conn);
    let foreign = live_survey_in(&seeded, other.id, 0).await;
    let env = matched(&seeded, "user_1", vec![foreign.clone()]).await;
    assert_eq!(
        in_transaction(seeded.store.clone(), env.clone()).await,
        Ok(vec![0])
    );
    assert_eq!(
        outcomes(&seeded, env.correlation_id).await[0].1,
        SurveyOutcome::Errored
    );
    let mut conn = seeded.store.conn().await.expect("a connection");
    let invited = diesel_async::RunQueryDsl::execute(
        diesel::sql_query("SELECT 1 FROM invitations"),
        &mut conn,
    )
    .await
    .expect("counted");
    assert_eq!(invited, 0);
}

async fn in_transaction(
    store: beckon_store::Store,
    env: Envelope<EventMatched>,
) -> Result<Vec<usize>, String> {
    let mut conn = store.conn().await.expect("a connection");
    diesel_async::AsyncConnection::transaction::<_, beckon_worker::HandleError, _>(
        &mut conn,
        async |conn| {
            let span = tracing::Span::none();
            let items = [Item {
                env: &env,
                span: &span,
            }];
            Ok(inviter()
                .handle(&items, conn)
                .await?
                .emits
                .iter()
                .map(Vec::len)
                .collect())
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// A survey the matcher skipped is recorded with its reason and claims no cooldown: a later
/// event whose conditions hold invites the user at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_survey_records_why_and_starts_no_cooldown() {
    let seeded = WithProject::new(4).await;
    let survey = live_survey(&seeded, 3600).await;
    let skipped = MatchedSurvey {
        skip: Some(Skip::ConditionFalse {
            clause: "/all/1/eq".into(),
        }),
        ..survey.clone()
    };
    let unreadable = live_survey(&seeded, 3600).await;
    let broken = MatchedSurvey {
        skip: Some(Skip::Unreadable {
            reason: "the survey's conditions could not be read".into(),
        }),
        ..unreadable.clone()
    };
    let first = matched(&seeded, "user_1", vec![skipped, broken]).await;
    assert_eq!(handle(&seeded, std::slice::from_ref(&first)).await, vec![0]);
    let mut recorded = outcomes(&seeded, first.correlation_id).await;
    recorded.sort_by_key(|(id, _, _)| *id != survey.survey_id);
    assert_eq!(
        recorded,
        vec![
            (
                survey.survey_id,
                SurveyOutcome::ConditionFalse,
                Some("/all/1/eq".into())
            ),
            (
                unreadable.survey_id,
                SurveyOutcome::Errored,
                Some("the survey's conditions could not be read".into())
            ),
        ]
    );
    let second = matched(&seeded, "user_1", vec![survey.clone()]).await;
    handle(&seeded, std::slice::from_ref(&second)).await;
    assert_eq!(
        outcomes(&seeded, second.correlation_id).await[0].1,
        SurveyOutcome::Created
    );
}

async fn set_cap(seeded: &WithProject, max: i32, period_seconds: i64) {
    let mut conn = seeded.store.conn().await.expect("a connection");
    beckon_store::tenancy::update_project(
        &mut conn,
        seeded.project_id,
        beckon_store::tenancy::ProjectChanges {
            invitation_cap: Some(Some(beckon_domain::cap::InvitationCap {
                max,
                period_seconds,
            })),
            ..Default::default()
        },
    )
    .await
    .expect("the cap is set")
    .expect("the project");
}

async fn invitations_of(seeded: &WithProject, user: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = seeded.store.conn().await.expect("a connection");
    diesel_async::RunQueryDsl::get_result::<N>(
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM invitations WHERE user_ref = '{user}'"
        )),
        &mut conn,
    )
    .await
    .expect("counted")
    .n
}

/// A cap far from reached does not weaken the cooldown: a capped user's cooldowns are read
/// and claimed later, so two events of theirs for one survey in one batch must still see each
/// other (as they do without a cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_keeps_the_cooldown_between_two_events_of_one_user_in_one_batch() {
    let seeded = WithProject::new(4).await;
    set_cap(&seeded, 10, 3600).await;
    let survey = live_survey(&seeded, 3600).await;
    let first = matched(&seeded, "user_1", vec![survey.clone()]).await;
    let second = matched(&seeded, "user_1", vec![survey.clone()]).await;
    let emitted = handle(&seeded, &[first.clone(), second.clone()]).await;
    assert_eq!(
        (emitted, invitations_of(&seeded, "user_1").await),
        (vec![1, 0], 1)
    );
    assert_eq!(
        outcomes(&seeded, second.correlation_id).await[0].1,
        SurveyOutcome::Cooldown
    );
}
