//! The matcher's handler called directly on a real database, without a broker: which surveys
//! an event reaches, and which of them its conditions skip.

use beckon_bus::{BusConfig, Topology};
use beckon_domain::LifecycleEvent;
use beckon_domain::condition::Condition;
use beckon_domain::envelope::{Envelope, EventMatched, EventReceived, Skip, TriggerType};
use beckon_domain::survey::SurveyStatus;
use beckon_domain::user_ref::UserRef;
use beckon_store::segments::{self, NewSegment, SegmentPatch};
use beckon_store::surveys;
use beckon_store::testing::WithProject;
use beckon_store::users::{self, UserChanges};
use beckon_worker::{Handler, Item};
use diesel_async::RunQueryDsl;
use matcher::Matcher;
use serde_json::json;
use uuid::Uuid;

async fn live_survey(seeded: &WithProject, conditions: Option<serde_json::Value>) -> Uuid {
    let mut conn = seeded.store.conn().await.expect("a connection");
    let conditions: Option<Condition> =
        conditions.map(|c| serde_json::from_value(c).expect("a condition"));
    let mut survey = seeded.survey(SurveyStatus::Live, vec![LifecycleEvent::TrialExpired]);
    survey.trigger.conditions = conditions;
    surveys::create_survey(&mut conn, survey)
        .await
        .expect("a survey")
        .id
}

fn matcher() -> Matcher {
    Matcher::new(Topology::new(&BusConfig::new(
        "amqp://127.0.0.1",
        "matcher-test",
    )))
}

/// What a new matcher sends on for `trial_expired` about `user` with `event_data`.
async fn matched(
    seeded: &WithProject,
    user: &str,
    event_data: serde_json::Value,
) -> Vec<(Uuid, Option<Skip>)> {
    matched_by(&matcher(), seeded, user, event_data).await
}

/// What `matcher` sends on for `trial_expired` about `user` with `event_data`.
async fn matched_by(
    matcher: &Matcher,
    seeded: &WithProject,
    user: &str,
    event_data: serde_json::Value,
) -> Vec<(Uuid, Option<Skip>)> {
    let env = Envelope::new(
        Uuid::now_v7(),
        seeded.org_id,
        seeded.project_id,
        Uuid::now_v7(),
        EventReceived {
            trigger_type: TriggerType::Event,
            user_ref: UserRef::parse(user).expect("a user"),
            event: LifecycleEvent::TrialExpired,
            reply_to: None,
            survey_id: None,
            event_data: Some(event_data),
            variables: None,
            source: None,
        },
    );
    let span = tracing::Span::none();
    let mut conn = seeded.store.conn().await.expect("a connection");
    let handled = matcher
        .handle(
            &[Item {
                env: &env,
                span: &span,
            }],
            &mut conn,
        )
        .await
        .expect("the batch is handled");
    let out: Envelope<EventMatched> =
        serde_json::from_slice(&handled.emits[0][0].body).expect("an event.matched envelope");
    let mut surveys: Vec<_> = out
        .data
        .surveys
        .into_iter()
        .map(|s| (s.survey_id, s.skip))
        .collect();
    surveys.sort_by_key(|(id, _)| *id);
    surveys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_are_evaluated_against_the_event_and_the_user_as_stored_now() {
    let seeded = WithProject::new(2).await;
    let open = live_survey(&seeded, None).await;
    let french_pros = live_survey(
        &seeded,
        Some(
            json!({"all": [{"eq": {"field": "event_data.plan", "value": "pro"}},
                            {"eq": {"field": "custom_fields.country", "value": "FR"}}]}),
        ),
    )
    .await;
    let unreadable = live_survey(&seeded, None).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    diesel::sql_query(format!(
        "UPDATE surveys SET trigger_json = jsonb_set(trigger_json, '{{conditions}}', '{{\"bogus\": 1}}') WHERE id = '{unreadable}'"
    ))
    .execute(&mut conn)
    .await
    .expect("a broken condition");
    let french = UserChanges {
        attributes: Some(json!({"country": "FR"})),
        ..Default::default()
    };
    users::upsert(&mut conn, seeded.org_id, seeded.project_id, "ada", &french)
        .await
        .expect("a user");

    let got = matched(&seeded, "ada", json!({"plan": "pro"})).await;
    let skip_of = |id: Uuid, all: &[(Uuid, Option<Skip>)]| {
        all.iter()
            .find(|(s, _)| *s == id)
            .expect("listed")
            .1
            .clone()
    };
    assert_eq!(got.len(), 3);
    assert_eq!(skip_of(open, &got), None);
    assert_eq!(skip_of(french_pros, &got), None);
    assert!(matches!(
        skip_of(unreadable, &got),
        Some(Skip::Unreadable { .. })
    ));

    let got = matched(&seeded, "ada", json!({"plan": "free"})).await;
    assert_eq!(
        skip_of(french_pros, &got),
        Some(Skip::ConditionFalse {
            clause: "/all/0/eq".into()
        })
    );
    // The user as stored when the event is handled.
    let german = UserChanges {
        attributes: Some(json!({"country": "DE"})),
        ..Default::default()
    };
    users::upsert(&mut conn, seeded.org_id, seeded.project_id, "ada", &german)
        .await
        .expect("a user");
    let got = matched(&seeded, "ada", json!({"plan": "pro"})).await;
    assert_eq!(
        skip_of(french_pros, &got),
        Some(Skip::ConditionFalse {
            clause: "/all/1/eq".into()
        })
    );
    // A user the project never described.
    let got = matched(&seeded, "nobody", json!({"plan": "pro"})).await;
    assert_eq!(
        skip_of(french_pros, &got),
        Some(Skip::ConditionFalse {
            clause: "/all/1/eq".into()
        })
    );
}

/// A matcher keeps the conditions it has read, but never past a change: to the survey's
/// conditions, or to a segment they refer to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matcher_follows_each_change_to_conditions_and_segments() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    let condition = |value: serde_json::Value| -> Condition {
        serde_json::from_value(value).expect("a condition")
    };
    let staff = segments::create(
        &mut conn,
        NewSegment {
            org_id: seeded.org_id,
            project_id: seeded.project_id,
            name: "Staff".into(),
            description: String::new(),
            condition: condition(json!({"eq": {"field": "custom_fields.team", "value": "staff"}})),
        },
    )
    .await
    .expect("a segment")
    .expect("a new name");
    let survey = live_survey(&seeded, Some(json!({"segment": staff.id}))).await;
    let staff_member = UserChanges {
        attributes: Some(json!({"team": "staff"})),
        ..Default::default()
    };
    users::upsert(
        &mut conn,
        seeded.org_id,
        seeded.project_id,
        "ada",
        &staff_member,
    )
    .await
    .expect("a user");
    let matcher = matcher();
    let skip = |got: Vec<(Uuid, Option<Skip>)>| {
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, survey);
        got[0].1.clone()
    };
    let false_at = |clause: &str| {
        Some(Skip::ConditionFalse {
            clause: clause.into(),
        })
    };
    // Read, then kept: the same verdict twice.
    for _ in 0..2 {
        assert_eq!(
            skip(matched_by(&matcher, &seeded, "ada", json!({})).await),
            None
        );
    }

    // The segment changes: every survey using it follows.
    segments::update(
        &mut conn,
        seeded.project_id,
        staff.id,
        SegmentPatch {
            condition: Some(condition(
                json!({"eq": {"field": "custom_fields.team", "value": "ops"}}),
            )),
            ..Default::default()
        },
    )
    .await
    .expect("updated")
    .expect("a free name")
    .expect("the segment");
    assert_eq!(
        skip(matched_by(&matcher, &seeded, "ada", json!({})).await),
        false_at("/segment")
    );

    // The survey's conditions change.
    let mut trigger = surveys::get_survey(&mut conn, seeded.project_id, survey)
        .await
        .expect("read")
        .expect("the survey")
        .trigger;
    trigger.conditions = Some(condition(
        json!({"any": [{"segment": staff.id}, {"eq": {"field": "event_data.plan", "value": "pro"}}]}),
    ));
    surveys::update_survey(
        &mut conn,
        seeded.project_id,
        survey,
        surveys::SurveyPatch {
            trigger: Some(trigger),
            ..Default::default()
        },
    )
    .await
    .expect("updated")
    .expect("the survey");
    assert_eq!(
        skip(matched_by(&matcher, &seeded, "ada", json!({"plan": "pro"})).await),
        None
    );
    assert_eq!(
        skip(matched_by(&matcher, &seeded, "ada", json!({"plan": "free"})).await),
        false_at("/any")
    );
}
