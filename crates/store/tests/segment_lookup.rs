//! The segments a matched survey refers to are looked up by id, however many the project has.

use beckon_domain::LifecycleEvent;
use beckon_domain::condition::Condition;
use beckon_domain::survey::SurveyStatus;
use beckon_store::segments::{self, NewSegment};
use beckon_store::surveys::{self, NewSurvey};
use beckon_store::testing::WithProject;
use diesel_async::RunQueryDsl;

/// A Live survey of `seeded`'s project on `event`, with `conditions`.
fn live_survey(
    seeded: &WithProject,
    name: &str,
    event: &LifecycleEvent,
    conditions: Option<Condition>,
) -> NewSurvey {
    let mut survey = NewSurvey {
        name: name.to_owned(),
        invitation_lifetime_seconds: 60,
        ..seeded.survey(SurveyStatus::Live, vec![event.clone()])
    };
    survey.trigger.conditions = conditions;
    survey
}

#[derive(diesel::QueryableByName)]
struct Read {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
}

/// Every event a survey with conditions matches reads the segments they refer to. Those are
/// named by id; reading them must not scan the project's segments (any organization may make
/// as many as it likes), or each event costs the shared matcher a scan per survey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_reads_only_the_segments_it_refers_to() {
    let seeded = WithProject::new(4).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let condition: Condition =
        serde_json::from_value(serde_json::json!({"exists": {"field": "email"}})).unwrap();
    let segment = segments::create(
        &mut conn,
        NewSegment {
            org_id: seeded.org_id,
            project_id: seeded.project_id,
            name: "Has email".into(),
            description: String::new(),
            condition: condition.clone(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO segments (id, org_id, project_id, name, condition) \
         SELECT gen_random_uuid(), org_id, project_id, 'other ' || i, condition \
         FROM segments, generate_series(1, 5000) AS i WHERE id = '{}'",
        segment.id
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE segments")
        .execute(&mut conn)
        .await
        .unwrap();
    let event = LifecycleEvent::from_name("checkout_failed").unwrap();
    let refers: Condition =
        serde_json::from_value(serde_json::json!({"segment": segment.id})).unwrap();
    // A Live survey on `event` whose conditions refer to the segment.
    let survey = |name: String| live_survey(&seeded, &name, &event, Some(refers.clone()));
    for i in 0..3 {
        surveys::create_survey(&mut conn, survey(format!("Survey {i}")))
            .await
            .unwrap();
    }

    // A survey whose reference was edited by hand into no id still matches (the matcher
    // then errors it: its conditions do not read).
    let edited = surveys::create_survey(&mut conn, survey("Edited".into()))
        .await
        .unwrap();
    diesel::sql_query(format!(
        "UPDATE surveys SET trigger_json = jsonb_set(trigger_json, '{{conditions}}', \
           '{{\"any\": [{{\"segment\": \"not an id\"}}, {{\"segment\": 5}}]}}') WHERE id = '{}'",
        edited.id
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    // The rows of `segments` this transaction reads, as the statistics count them.
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    let live = surveys::candidates(&conn, seeded.project_id, &event.key(), None)
        .await
        .unwrap()
        .live;
    let read: Read = diesel::sql_query(
        "SELECT (coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0))::bigint AS rows \
         FROM pg_stat_xact_user_tables WHERE relname = 'segments'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("COMMIT")
        .execute(&mut conn)
        .await
        .unwrap();

    assert_eq!(live.len(), 4);
    let expected = serde_json::json!({segment.id.to_string(): condition});
    for survey in &live {
        let found = (survey.matched.survey_id != edited.id).then_some(&expected);
        let segments = survey
            .segments
            .as_deref()
            .map(|text| serde_json::from_str::<serde_json::Value>(text).unwrap());
        assert_eq!(segments.as_ref(), found);
    }
    assert!(
        read.rows <= 10,
        "matching 4 surveys read {} rows of segments, among the project's 5001",
        read.rows
    );
}

/// A survey's conditions find only its own project's segments: a reference to another
/// project's segment (written by hand) finds nothing, and the survey does not read. A trigger
/// whose conditions are stored as `null` has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_never_reads_another_projects_segment() {
    use beckon_domain::condition::Subject;
    use beckon_domain::targeting::Targeting;
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let other_org = beckon_store::tenancy::create_organization(&mut conn, "Other")
        .await
        .unwrap();
    let other_project = beckon_store::tenancy::create_project(&mut conn, other_org.id, "Web")
        .await
        .unwrap();
    let condition: Condition =
        serde_json::from_value(serde_json::json!({"exists": {"field": "email"}})).unwrap();
    let segment = |org_id, project_id| NewSegment {
        org_id,
        project_id,
        name: "Has email".into(),
        description: String::new(),
        condition: condition.clone(),
    };
    let own = segments::create(&mut conn, segment(seeded.org_id, seeded.project_id))
        .await
        .unwrap()
        .unwrap();
    let foreign = segments::create(&mut conn, segment(other_org.id, other_project.id))
        .await
        .unwrap()
        .unwrap();
    let event = LifecycleEvent::from_name("checkout_failed").unwrap();
    let mut stored = Vec::new();
    for conditions in [
        serde_json::json!({"all": [{"segment": own.id}, {"segment": foreign.id}]}),
        serde_json::Value::Null,
    ] {
        let survey =
            surveys::create_survey(&mut conn, live_survey(&seeded, "Targeted", &event, None))
                .await
                .unwrap();
        diesel::sql_query(format!(
            "UPDATE surveys SET trigger_json = jsonb_set(trigger_json, '{{conditions}}', '{conditions}') \
             WHERE id = '{}'",
            survey.id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        stored.push(survey.id);
    }

    let live = surveys::candidates(&conn, seeded.project_id, &event.key(), None)
        .await
        .unwrap()
        .live;
    assert_eq!(live.len(), 2);
    let subject = Subject {
        now: time::OffsetDateTime::now_utc(),
        event_data: None,
        user: None,
    };
    for survey in live {
        let targeting = Targeting::read(survey.conditions.as_deref(), survey.segments.as_deref());
        if survey.matched.survey_id == stored[0] {
            let found: serde_json::Value =
                serde_json::from_str(survey.segments.as_deref().unwrap()).unwrap();
            assert_eq!(found, serde_json::json!({own.id.to_string(): condition}));
            let reason = targeting.unreadable().unwrap();
            assert!(
                reason.contains(&foreign.id.to_string()) && reason.contains("no longer exists"),
                "{reason}"
            );
        } else {
            // Stored `null` is no conditions, as the survey's trigger reads it back.
            assert_eq!(survey.conditions, None);
            assert_eq!(survey.segments, None);
            assert_eq!(targeting.skip(&subject), None);
        }
    }
}
