//! Trial reminders that follow their survey: when a survey goes Live, starts or stops
//! listening for `trial_ending_soon`, or changes its lead, every user of the project with a
//! trial running gets their reminder for it set, moved or cleared.
//!
//! The survey's save only marks it ([`mark`]); the matcher works through the project's users
//! in batches, each in a transaction of its own ([`sync_batch`]), so the save never waits for
//! them. A batch locks its users (`FOR SHARE`) before their reminders, as `users/upsert` locks a
//! user before theirs, so the two never make the same reminder twice. Planning is
//! `beckon_domain::reminder::plan`, the same as the upsert's, so a batch run twice keeps.

use crate::StoreError;
use crate::schema::{reminder_sync, surveys, triggers, users};
use crate::triggers::{NewTrigger, Trigger};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::TriggerType;
use beckon_domain::reminder::{self, Existing, Plan};
use beckon_domain::survey::SurveyStatus;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// Asks for `survey_id`'s reminders to be brought in line with its users (again, from the
/// first user, when a sync is under way). In the survey's save's transaction.
pub async fn mark(conn: &mut AsyncPgConnection, survey_id: Uuid) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO reminder_sync (survey_id, requested_at, after_user) \
         VALUES ($1, clock_timestamp(), NULL) \
         ON CONFLICT (survey_id) DO UPDATE SET requested_at = EXCLUDED.requested_at, after_user = NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(survey_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes, until the transaction ends, the project's lock that a users/upsert planning trial
/// reminders holds shared and a sync batch exclusive ([`sync_batch`]).
///
/// A user the upsert creates is invisible to a sync until it commits, and the upsert plans
/// only for the surveys Live when it reads them: without this lock a survey that goes Live in
/// between, and is synced before the upsert commits, gives that user no reminder. With it, a
/// sync waits for the upserts under way, and an upsert that starts later sees the survey Live.
pub async fn hold_planning(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
) -> Result<(), StoreError> {
    planning_lock(conn, project_id, "pg_advisory_xact_lock_shared").await
}

async fn planning_lock(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    function: &str,
) -> Result<(), StoreError> {
    diesel::sql_query(format!(
        "SELECT {function}(hashtextextended($1::text, {PLANNING_LOCK_SEED}))::text"
    ))
    .bind::<diesel::sql_types::Uuid, _>(project_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the planning lock apart from other advisory locks on the project's id.
const PLANNING_LOCK_SEED: i64 = 7167;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub survey_id: Uuid,
    /// Users looked at.
    pub users: usize,
    pub created: usize,
    pub moved: usize,
    pub cancelled: usize,
    /// Every user of the project is done: the survey's sync is over.
    pub finished: bool,
}

/// Brings the reminders of the next `batch` users of the oldest survey waiting for a sync in
/// line, in one transaction; `None` when no survey waits (or every one is being synced by
/// another replica).
pub async fn sync_batch(
    conn: &mut AsyncPgConnection,
    batch: i64,
) -> Result<Option<Synced>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let waiting: Option<(Uuid, Option<String>)> = reminder_sync::table
            .order(reminder_sync::requested_at.asc())
            .select((reminder_sync::survey_id, reminder_sync::after_user))
            .limit(1)
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?;
        let Some((survey_id, after)) = waiting else {
            return Ok(None);
        };
        let mut synced = Synced {
            survey_id,
            ..Synced::default()
        };
        let survey: Option<(Uuid, Uuid, String, Vec<String>, i64)> = surveys::table
            .find(survey_id)
            .select((
                surveys::org_id,
                surveys::project_id,
                surveys::status,
                surveys::trigger_events,
                surveys::trial_reminder_lead_seconds,
            ))
            .first(conn)
            .await
            .optional()?;
        let Some((org_id, project_id, status_now, events, lead)) = survey else {
            // Gone (and its row with it, but for a race): nothing to keep in line.
            diesel::delete(reminder_sync::table.find(survey_id))
                .execute(conn)
                .await?;
            synced.finished = true;
            return Ok(Some(synced));
        };
        // Every user an upsert under way is creating is committed before this batch looks.
        planning_lock(conn, project_id, "pg_advisory_xact_lock").await?;
        let listens = status_now == SurveyStatus::Live.as_str()
            && events.contains(&LifecycleEvent::TrialEndingSoon.key());
        let lead = listens.then_some(lead);
        let now = OffsetDateTime::now_utc();

        // The users that may need a change: a trial running, or a reminder of this survey
        // waiting. Locked before their reminders, as an upsert locks them. (A user ref is
        // never empty, so every one sorts after "".)
        let waiting_reminder = diesel::dsl::sql::<diesel::sql_types::Bool>(
            "EXISTS (SELECT 1 FROM triggers t WHERE t.project_id = users.project_id \
             AND t.user_ref = users.user_ref AND t.status = 'scheduled' AND t.survey_id = ",
        )
        .bind::<diesel::sql_types::Uuid, _>(survey_id)
        .sql(")");
        let people: Vec<(String, Option<OffsetDateTime>)> = users::table
            .filter(users::project_id.eq(project_id))
            .filter(users::user_ref.gt(after.unwrap_or_default()))
            .filter(users::trial_ends_at.gt(now).or(waiting_reminder))
            .order(users::user_ref.asc())
            .limit(batch)
            .select((users::user_ref, users::trial_ends_at))
            .for_share()
            .load(conn)
            .await?;
        synced.users = people.len();
        let refs: Vec<&str> = people.iter().map(|(r, _)| r.as_str()).collect();
        let existing: Vec<Trigger> = triggers::table
            .filter(triggers::project_id.eq(project_id))
            .filter(triggers::survey_id.eq(survey_id))
            .filter(triggers::trigger_type.eq(TriggerType::Scheduled.as_str()))
            .filter(triggers::user_ref.eq_any(refs))
            .select(Trigger::as_select())
            .for_update()
            .load(conn)
            .await?;
        let mut created = Vec::new();
        for (user_ref, trial_ends_at) in &people {
            let theirs: Vec<Existing> = existing
                .iter()
                .filter(|t| t.user_ref.as_deref() == Some(user_ref.as_str()))
                .map(Trigger::as_reminder)
                .collect();
            match reminder::plan(*trial_ends_at, lead, &theirs, now) {
                Plan::Keep => {}
                Plan::Cancel(id) => {
                    synced.cancelled +=
                        usize::from(crate::triggers::cancel_scheduled(conn, id).await?);
                }
                Plan::Move {
                    id,
                    at,
                    reminder_for,
                } => {
                    synced.moved += usize::from(
                        crate::triggers::reschedule(conn, id, at, Some(reminder_for)).await?,
                    );
                }
                Plan::Create { at, reminder_for } => {
                    created.push(NewTrigger::reminder(
                        org_id,
                        project_id,
                        user_ref,
                        survey_id,
                        at,
                        reminder_for,
                    ));
                }
            }
        }
        synced.created = created.len();
        let created: Vec<&NewTrigger> = created.iter().collect();
        crate::triggers::insert_many(&*conn, &created).await?;
        synced.finished = people.len() < usize::try_from(batch).unwrap_or(usize::MAX);
        if synced.finished {
            diesel::delete(reminder_sync::table.find(survey_id))
                .execute(conn)
                .await?;
        } else {
            let last = people.last().map(|(r, _)| r.clone());
            diesel::update(reminder_sync::table.find(survey_id))
                .set(reminder_sync::after_user.eq(last))
                .execute(conn)
                .await?;
        }
        Ok(Some(synced))
    })
    .await
}
