//! Triggers: one row per fired event, and what became of each survey it matched.

use crate::StoreError;
use crate::schema::{trigger_surveys, triggers};
use beckon_domain::envelope::TriggerType;
use beckon_domain::outcome::{DispatchCounts, SurveyOutcome};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// Trigger statuses, as stored and as the API shows them.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const SCHEDULED: &str = "scheduled";
    pub const PROCESSING: &str = "processing";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
}

/// A trigger about to be recorded.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub trigger_type: TriggerType,
    pub user_ref: String,
    pub event: serde_json::Value,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = triggers)]
pub struct Trigger {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub trigger_type: String,
    pub status: String,
    pub user_ref: String,
    pub event: serde_json::Value,
    pub error: Option<String>,
    pub matched_count: i32,
    pub created_count: i32,
    pub cooldown_count: i32,
    pub sample_count: i32,
    pub errored_count: i32,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewTrigger) -> Result<(), StoreError> {
    diesel::insert_into(triggers::table)
        .values((
            triggers::id.eq(new.id),
            triggers::org_id.eq(new.org_id),
            triggers::project_id.eq(new.project_id),
            triggers::trigger_type.eq(new.trigger_type.as_str()),
            triggers::status.eq(status::QUEUED),
            triggers::user_ref.eq(&new.user_ref),
            triggers::event.eq(&new.event),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Trigger>, StoreError> {
    Ok(triggers::table
        .find(id)
        .select(Trigger::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Marks a queued trigger as being processed; a no-op for one already further along.
pub async fn mark_processing(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(), StoreError> {
    diesel::update(
        triggers::table
            .find(id)
            .filter(triggers::status.eq(status::QUEUED)),
    )
    .set((
        triggers::status.eq(status::PROCESSING),
        triggers::started_at.eq(OffsetDateTime::now_utc()),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The outcome of one matched survey.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyResult {
    pub survey_id: Uuid,
    pub survey_version: i32,
    pub outcome: SurveyOutcome,
    pub reason: Option<String>,
    pub invitation_id: Option<Uuid>,
}

/// Records every per-survey outcome and closes the trigger: `completed`, or `failed` when
/// every matched survey errored.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    results: &[SurveyResult],
) -> Result<DispatchCounts, StoreError> {
    let rows: Vec<_> = results
        .iter()
        .map(|r| {
            (
                trigger_surveys::trigger_id.eq(id),
                trigger_surveys::survey_id.eq(r.survey_id),
                trigger_surveys::survey_version.eq(r.survey_version),
                trigger_surveys::outcome.eq(r.outcome.as_str()),
                trigger_surveys::reason.eq(r.reason.as_deref()),
                trigger_surveys::invitation_id.eq(r.invitation_id),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(trigger_surveys::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    let counts = DispatchCounts::from_outcomes(results.iter().map(|r| r.outcome));
    let all_errored = counts.matched_surveys > 0 && counts.errored_count == counts.matched_surveys;
    let now = OffsetDateTime::now_utc();
    diesel::update(triggers::table.find(id))
        .set((
            triggers::status.eq(if all_errored {
                status::FAILED
            } else {
                status::COMPLETED
            }),
            triggers::error.eq(all_errored.then_some("every matched survey errored")),
            triggers::matched_count.eq(counts.matched_surveys as i32),
            triggers::created_count.eq(counts.created_count as i32),
            triggers::cooldown_count.eq(counts.suppressed_by_cooldown_count as i32),
            triggers::sample_count.eq(counts.suppressed_by_sample_count as i32),
            triggers::errored_count.eq(counts.errored_count as i32),
            triggers::started_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("coalesce(started_at, now())")),
            triggers::completed_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(counts)
}

/// The recorded outcome of each survey a trigger matched.
pub async fn results(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<SurveyResult>, StoreError> {
    type Row = (Uuid, i32, String, Option<String>, Option<Uuid>);
    let rows: Vec<Row> = trigger_surveys::table
        .filter(trigger_surveys::trigger_id.eq(id))
        .order(trigger_surveys::survey_id.asc())
        .select((
            trigger_surveys::survey_id,
            trigger_surveys::survey_version,
            trigger_surveys::outcome,
            trigger_surveys::reason,
            trigger_surveys::invitation_id,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(
            |(survey_id, survey_version, outcome, reason, invitation_id)| {
                Ok(SurveyResult {
                    survey_id,
                    survey_version,
                    outcome: SurveyOutcome::parse(&outcome).ok_or_else(|| {
                        StoreError::InvalidRow(format!("unknown outcome `{outcome}`"))
                    })?,
                    reason,
                    invitation_id,
                })
            },
        )
        .collect()
}

/// Marks a trigger failed with `reason` (it could not be queued, or its envelope was
/// dead-lettered), unless it already finished.
pub async fn fail(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> Result<(), StoreError> {
    diesel::update(triggers::table.find(id).filter(triggers::status.eq_any([
        status::QUEUED,
        status::SCHEDULED,
        status::PROCESSING,
    ])))
    .set((
        triggers::status.eq(status::FAILED),
        triggers::error.eq(reason),
        triggers::completed_at.eq(OffsetDateTime::now_utc()),
    ))
    .execute(conn)
    .await?;
    Ok(())
}
