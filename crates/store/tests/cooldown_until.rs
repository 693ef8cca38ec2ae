//! The cooldown a claim reports when it loses a race for the window.

use beckon_domain::survey::SurveyStatus;
use beckon_store::invitations;
use beckon_store::surveys::{self, NewSurvey};
use beckon_store::testing::WithProject;
use diesel_async::RunQueryDsl;
use std::time::Duration;
use time::OffsetDateTime;

/// A claim that waits on a concurrent claim of the same window, and loses it, reports the
/// window as open. The `until` it gives must be when that window ends, or nothing (the
/// statement could not see when): never a time already past, which the trigger's workflow
/// would then show as "cooldown until <a moment ago>".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_loses_a_race_never_reports_a_cooldown_that_already_ended() {
    let seeded = WithProject::new(8).await;
    let store = seeded.store.clone();
    let survey = {
        let mut conn = store.conn().await.unwrap();
        surveys::create_survey(
            &mut conn,
            NewSurvey {
                cooldown_seconds: 3600,
                invitation_lifetime_seconds: 60,
                ..seeded.survey(SurveyStatus::Live, vec![])
            },
        )
        .await
        .unwrap()
    };
    // The user was invited two hours ago: the one-hour window closed an hour ago.
    {
        let mut conn = store.conn().await.unwrap();
        diesel::sql_query(format!(
            "INSERT INTO cooldowns (survey_id, user_ref, last_invited_at) \
             VALUES ('{}', 'ada', now() - interval '2 hours')",
            survey.id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    // One handling claims the window again, in a transaction it has not committed yet.
    let mut first = store.conn().await.unwrap();
    diesel::sql_query("BEGIN")
        .execute(&mut first)
        .await
        .unwrap();
    let claimed = invitations::claim_cooldown(&first, survey.id, "ada", 3600)
        .await
        .unwrap();
    assert_eq!(claimed, None, "the first claim takes the window");

    // Another claims it at the same moment: it sees the row as it was (two hours old) and
    // waits for the first to commit.
    let second = {
        let store = store.clone();
        let id = survey.id;
        tokio::spawn(async move {
            let conn = store.conn().await.unwrap();
            invitations::claim_cooldown(&conn, id, "ada", 3600)
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "the second claim waits on the first");
    diesel::sql_query("COMMIT")
        .execute(&mut first)
        .await
        .unwrap();

    let lost = second
        .await
        .unwrap()
        .expect("the second claim finds the window open");
    let now = OffsetDateTime::now_utc();
    if let Some(until) = lost.until {
        assert!(
            until > now,
            "the cooldown the losing claim reports ended {} ago, yet it kept the user out",
            now - until
        );
    }
}
