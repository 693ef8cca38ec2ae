//! Triggers: one row per fired event, and what became of each survey it matched.

use crate::StoreError;
use crate::cached::Cached;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{trigger_surveys, triggers};
use beckon_domain::LifecycleEvent;
use beckon_domain::envelope::TriggerType;
use beckon_domain::outcome::{DispatchCounts, SurveyOutcome};
use beckon_domain::trigger::{TriggerReason, TriggerStatus};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// Trigger statuses, as stored and as the API shows them.
pub mod status {
    use beckon_domain::trigger::TriggerStatus;
    pub const QUEUED: &str = TriggerStatus::Queued.as_str();
    pub const SCHEDULED: &str = TriggerStatus::Scheduled.as_str();
    pub const PROCESSING: &str = TriggerStatus::Processing.as_str();
    pub const COMPLETED: &str = TriggerStatus::Completed.as_str();
    pub const FAILED: &str = TriggerStatus::Failed.as_str();
    pub const CANCELLED: &str = TriggerStatus::Cancelled.as_str();
}

/// A trigger about to be recorded.
///
/// One without a user (the event named no contact) has no one to invite: it is recorded
/// `completed` at once with the reason `no_contact`, and nothing is sent for it — unless it is
/// scheduled, when it completes so as it fires ([`complete_without_contact`]).
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub trigger_type: TriggerType,
    /// The user the event is about; `None` when it named no contact.
    pub user_ref: Option<String>,
    pub event: serde_json::Value,
    /// The id of the envelope that will carry the event.
    pub job_id: Uuid,
    /// When set, the trigger waits (`scheduled`) until then; otherwise it is `queued`.
    pub scheduled_for: Option<OffsetDateTime>,
    pub source: Option<serde_json::Value>,
    pub event_data: Option<serde_json::Value>,
    pub variables: Option<serde_json::Value>,
    /// Restricts matching to one survey (trial reminders).
    pub survey_id: Option<Uuid>,
    /// The trial end a reminder was computed from.
    pub reminder_for: Option<OffsetDateTime>,
}

impl NewTrigger {
    /// A trigger for `event` about `user_ref`, queued now; set the other fields as needed.
    pub fn new(
        org_id: Uuid,
        project_id: Uuid,
        trigger_type: TriggerType,
        user_ref: &str,
        event: &beckon_domain::LifecycleEvent,
    ) -> Self {
        Self::about(
            org_id,
            project_id,
            trigger_type,
            Some(user_ref.to_owned()),
            event,
        )
    }

    /// The `trial_ending_soon` reminder of `user_ref` for `survey_id`, due `at`, computed from
    /// the trial end `reminder_for`.
    pub fn reminder(
        org_id: Uuid,
        project_id: Uuid,
        user_ref: &str,
        survey_id: Uuid,
        at: OffsetDateTime,
        reminder_for: OffsetDateTime,
    ) -> Self {
        let mut trigger = Self::new(
            org_id,
            project_id,
            TriggerType::Scheduled,
            user_ref,
            &beckon_domain::LifecycleEvent::TrialEndingSoon,
        );
        trigger.scheduled_for = Some(at);
        trigger.survey_id = Some(survey_id);
        trigger.reminder_for = Some(reminder_for);
        trigger
    }

    /// A trigger for `event` that names no user: nothing to invite.
    pub fn without_contact(
        org_id: Uuid,
        project_id: Uuid,
        trigger_type: TriggerType,
        event: &beckon_domain::LifecycleEvent,
    ) -> Self {
        Self::about(org_id, project_id, trigger_type, None, event)
    }

    fn about(
        org_id: Uuid,
        project_id: Uuid,
        trigger_type: TriggerType,
        user_ref: Option<String>,
        event: &beckon_domain::LifecycleEvent,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            org_id,
            project_id,
            trigger_type,
            user_ref,
            event: serde_json::to_value(event).unwrap_or_default(),
            job_id: Uuid::now_v7(),
            scheduled_for: None,
            source: None,
            event_data: None,
            variables: None,
            survey_id: None,
            reminder_for: None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = triggers)]
pub struct Trigger {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub trigger_type: String,
    pub status: String,
    /// `None` when the event named no contact.
    pub user_ref: Option<String>,
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
    pub job_id: Option<Uuid>,
    pub source: Option<serde_json::Value>,
    pub event_data: Option<serde_json::Value>,
    pub variables: Option<serde_json::Value>,
    pub scheduled_for: Option<OffsetDateTime>,
    pub survey_id: Option<Uuid>,
    pub reminder_for: Option<OffsetDateTime>,
    /// Why the trigger ended as it did, when the counts alone do not say.
    pub reason: Option<StoredReason>,
    /// Matched surveys whose conditions were false.
    pub condition_count: i32,
    /// Matched surveys the project's invitation cap left out.
    pub cap_count: i32,
}

crate::paging::keyed_by_created_at_and_id!(Trigger);

impl Trigger {
    /// This trial reminder, as reminder planning reads it.
    pub fn as_reminder(&self) -> beckon_domain::reminder::Existing {
        beckon_domain::reminder::Existing {
            id: self.id,
            scheduled: self.status == status::SCHEDULED,
            cancelled: self.status == status::CANCELLED,
            scheduled_for: self.scheduled_for,
            reminder_for: self.reminder_for,
        }
    }
}

/// A [`TriggerReason`] in its text column; an unknown name there is an invalid row.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::deserialize::FromSqlRow,
    diesel::expression::AsExpression,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct StoredReason(pub TriggerReason);

impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for StoredReason {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let raw: String =
            diesel::deserialize::FromSql::<diesel::sql_types::Text, diesel::pg::Pg>::from_sql(
                bytes,
            )?;
        TriggerReason::parse(&raw)
            .map(Self)
            .ok_or_else(|| format!("unknown trigger reason `{raw}`").into())
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for StoredReason {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        diesel::serialize::ToSql::<diesel::sql_types::Text, diesel::pg::Pg>::to_sql(
            self.0.as_str(),
            out,
        )
    }
}

/// A stored object column of a trigger (`variables`, `source`) as the JSON object the gateway
/// accepted; anything else there is an invalid row.
pub fn object_of(
    column: &str,
    value: Option<serde_json::Value>,
) -> Result<Option<beckon_domain::envelope::JsonObject>, StoreError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(StoreError::InvalidRow(format!(
            "triggers.{column} holds JSON that is not an object"
        ))),
    }
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewTrigger) -> Result<(), StoreError> {
    diesel::insert_into(triggers::table)
        .values(TriggerRow::from(new))
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts several triggers in one statement. The future borrows the connection shared, so
/// it can be awaited together with other statements, which the connection pipelines.
pub fn insert_many<'c>(
    conn: &'c AsyncPgConnection,
    new: &[&NewTrigger],
) -> impl Future<Output = Result<(), StoreError>> + Send + use<'c> {
    let rows: Vec<_> = new.iter().map(|t| TriggerRow::from(*t)).collect();
    let sent = (!rows.is_empty())
        .then(|| Cached(diesel::insert_into(triggers::table).values(rows)).execute(&mut { conn }));
    crate::pipelined::done(sent)
}

/// Which of `ids` are stored triggers of `org_id`.
pub async fn existing(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    Ok(triggers::table
        .filter(triggers::org_id.eq(org_id))
        .filter(triggers::id.eq_any(ids.to_vec()))
        .select(triggers::id)
        .load(conn)
        .await?)
}

/// The stored triggers of `org_id` among `ids`.
pub async fn of_org(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Trigger>, StoreError> {
    Ok(triggers::table
        .filter(triggers::org_id.eq(org_id))
        .filter(triggers::id.eq_any(ids.to_vec()))
        .select(Trigger::as_select())
        .load(conn)
        .await?)
}

/// A new trigger as a row.
#[derive(Insertable)]
#[diesel(table_name = triggers, treat_none_as_default_value = false)]
struct TriggerRow<'a> {
    id: Uuid,
    org_id: Uuid,
    project_id: Uuid,
    trigger_type: &'static str,
    status: &'static str,
    user_ref: Option<&'a str>,
    event: &'a serde_json::Value,
    job_id: Uuid,
    scheduled_for: Option<OffsetDateTime>,
    source: Option<&'a serde_json::Value>,
    event_data: Option<&'a serde_json::Value>,
    variables: Option<&'a serde_json::Value>,
    survey_id: Option<Uuid>,
    reminder_for: Option<OffsetDateTime>,
    reason: Option<StoredReason>,
    started_at: Option<OffsetDateTime>,
    completed_at: Option<OffsetDateTime>,
}

impl<'a> From<&'a NewTrigger> for TriggerRow<'a> {
    fn from(new: &'a NewTrigger) -> Self {
        // Scheduled, it waits; without a user it is done at once; otherwise it is on its way.
        let (status, reason, done_at) = match (new.scheduled_for, &new.user_ref) {
            (Some(_), _) => (status::SCHEDULED, None, None),
            (None, None) => (
                status::COMPLETED,
                Some(StoredReason(TriggerReason::NoContact)),
                Some(OffsetDateTime::now_utc()),
            ),
            (None, Some(_)) => (status::QUEUED, None, None),
        };
        Self {
            id: new.id,
            org_id: new.org_id,
            project_id: new.project_id,
            trigger_type: new.trigger_type.as_str(),
            status,
            user_ref: new.user_ref.as_deref(),
            event: &new.event,
            job_id: new.job_id,
            scheduled_for: new.scheduled_for,
            source: new.source.as_ref(),
            event_data: new.event_data.as_ref(),
            variables: new.variables.as_ref(),
            survey_id: new.survey_id,
            reminder_for: new.reminder_for,
            reason,
            started_at: done_at,
            completed_at: done_at,
        }
    }
}

/// A trigger of `org_id` by id; another organization's trigger is not found.
pub async fn get_for_org(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Trigger>, StoreError> {
    Ok(triggers::table
        .find(id)
        .filter(triggers::org_id.eq(org_id))
        .select(Trigger::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Which of an organization's triggers to list; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct TriggerFilter {
    pub project_id: Option<Uuid>,
    pub status: Option<TriggerStatus>,
    pub event: Option<LifecycleEvent>,
    /// Created at or after.
    pub since: Option<OffsetDateTime>,
    /// Created before.
    pub until: Option<OffsetDateTime>,
}

/// A page of `org_id`'s triggers, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    filter: &TriggerFilter,
    page: &PageRequest<Keyset>,
) -> Result<Page<Trigger>, StoreError> {
    let mut query = triggers::table
        .filter(triggers::org_id.eq(org_id))
        .into_boxed();
    if let Some(project) = filter.project_id {
        query = query.filter(triggers::project_id.eq(project));
    }
    if let Some(status) = filter.status {
        query = query.filter(triggers::status.eq(status.as_str()));
    }
    if let Some(event) = &filter.event {
        // Stored as the event's JSON, which is equal for two events exactly when they are.
        query = query.filter(triggers::event.eq(serde_json::to_value(event)?));
    }
    if let Some(t) = filter.since {
        query = query.filter(triggers::created_at.ge(t));
    }
    if let Some(t) = filter.until {
        query = query.filter(triggers::created_at.lt(t));
    }
    if let Some(after) = page.after {
        query = query.filter(older_than(triggers::created_at, triggers::id, after));
    }
    let rows = query
        .order((triggers::created_at.desc(), triggers::id.desc()))
        .limit(page.fetch())
        .select(Trigger::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows))
}

/// Claims up to `limit` scheduled triggers that are due by the database's clock, moving them
/// to `queued`. Rows another scheduler holds are skipped, so each fires exactly once however
/// many schedulers run; a cancel or move that races the claim waits on the row lock and then
/// finds the trigger no longer `scheduled`.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<Trigger>, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE triggers SET status = 'queued' WHERE id IN ( \
           SELECT id FROM triggers WHERE status = 'scheduled' AND scheduled_for <= now() \
           ORDER BY scheduled_for LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Cancels a trigger of `org_id` that is still scheduled; `None` when there is no such
/// trigger, `Some(false)` when it is past cancelling.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<bool>, StoreError> {
    if get_for_org(conn, org_id, id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(cancel_scheduled(conn, id).await?))
}

/// The trial reminders of (`project_id`, `user_ref`) for `survey_id`: scheduled ones locked for
/// update, newest first.
pub async fn reminders(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
    survey_id: Uuid,
) -> Result<Vec<Trigger>, StoreError> {
    Ok(triggers::table
        .filter(triggers::project_id.eq(project_id))
        .filter(triggers::user_ref.eq(user_ref))
        .filter(triggers::survey_id.eq(survey_id))
        .filter(triggers::trigger_type.eq(TriggerType::Scheduled.as_str()))
        .order(triggers::created_at.desc())
        .select(Trigger::as_select())
        .for_update()
        .load(conn)
        .await?)
}

/// Moves a scheduled trigger; `false` when it is no longer scheduled (it fired or was
/// cancelled meanwhile).
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: OffsetDateTime,
    reminder_for: Option<OffsetDateTime>,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        triggers::table
            .find(id)
            .filter(triggers::status.eq(status::SCHEDULED)),
    )
    .set((
        triggers::scheduled_for.eq(at),
        triggers::reminder_for.eq(reminder_for),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Cancels a scheduled trigger by id, whoever owns it (the caller has checked).
pub async fn cancel_scheduled(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, StoreError> {
    let n = diesel::update(
        triggers::table
            .find(id)
            .filter(triggers::status.eq(status::SCHEDULED)),
    )
    .set((
        triggers::status.eq(status::CANCELLED),
        triggers::completed_at.eq(OffsetDateTime::now_utc()),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Scheduled trial reminders of a user, soonest first.
pub async fn scheduled_reminders_of(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
) -> Result<Vec<Trigger>, StoreError> {
    Ok(triggers::table
        .filter(triggers::project_id.eq(project_id))
        .filter(triggers::user_ref.eq(user_ref))
        .filter(triggers::status.eq(status::SCHEDULED))
        .filter(triggers::survey_id.is_not_null())
        .order(triggers::scheduled_for.asc())
        .select(Trigger::as_select())
        .load(conn)
        .await?)
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Trigger>, StoreError> {
    Ok(triggers::table
        .find(id)
        .select(Trigger::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Marks queued triggers as being processed (a no-op for one already further along), in one
/// statement. The future borrows the connection shared, so it can be awaited together with
/// other statements, which the connection pipelines.
pub fn mark_processing_many<'c>(
    conn: &'c AsyncPgConnection,
    ids: &[Uuid],
) -> impl Future<Output = Result<(), StoreError>> + Send + use<'c> {
    let sent = Cached(
        diesel::update(
            triggers::table
                .filter(triggers::id.eq_any(ids))
                .filter(triggers::status.eq(status::QUEUED)),
        )
        .set((
            triggers::status.eq(status::PROCESSING),
            triggers::started_at.eq(OffsetDateTime::now_utc()),
        )),
    )
    .execute(&mut { conn });
    async move {
        sent.await?;
        Ok(())
    }
}

/// The outcome of one matched survey.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyResult {
    pub survey_id: Uuid,
    pub survey_version: i32,
    pub outcome: SurveyOutcome,
    pub reason: Option<String>,
    pub invitation_id: Option<Uuid>,
    /// For a cooldown: when it ends (when known).
    pub until: Option<OffsetDateTime>,
}

/// Records every per-survey outcome and closes the trigger: `completed`, or `failed` when
/// every matched survey errored.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    results: &[SurveyResult],
) -> Result<DispatchCounts, StoreError> {
    let mut counts = complete_many(conn, &[(id, results)]).await?;
    Ok(counts.pop().unwrap_or_default())
}

/// [`complete`] for many triggers: one statement records every outcome, one closes every
/// trigger, sent together. Returns each trigger's counts, in order. The future borrows the
/// connection shared, so it can be awaited together with other statements, which the
/// connection pipelines.
pub fn complete_many<'c>(
    conn: &'c AsyncPgConnection,
    done: &[(Uuid, &[SurveyResult])],
) -> impl Future<Output = Result<Vec<DispatchCounts>, StoreError>> + Send + use<'c> {
    use diesel::sql_types::{Array, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    // One statement shape whatever the number of outcomes (the values travel as arrays), so
    // no count of surveys runs into the protocol's limit on parameters.
    let results: Vec<(Uuid, &SurveyResult)> = done
        .iter()
        .flat_map(|(id, results)| results.iter().map(move |r| (*id, r)))
        .collect();
    let recorded = (!results.is_empty()).then(|| {
        Cached(
            diesel::sql_query(
                "INSERT INTO trigger_surveys \
                   (trigger_id, survey_id, survey_version, outcome, reason, invitation_id, until) \
                 SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind::<Array<SqlUuid>, _>(results.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(results.iter().map(|(_, r)| r.survey_id).collect::<Vec<_>>())
            .bind::<Array<Int4>, _>(
                results
                    .iter()
                    .map(|(_, r)| r.survey_version)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                results
                    .iter()
                    .map(|(_, r)| r.outcome.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                results
                    .iter()
                    .map(|(_, r)| r.reason.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<SqlUuid>>, _>(
                results
                    .iter()
                    .map(|(_, r)| r.invitation_id)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Timestamptz>>, _>(
                results.iter().map(|(_, r)| r.until).collect::<Vec<_>>(),
            ),
        )
        .execute(&mut { conn })
    });
    let counts: Vec<_> = done
        .iter()
        .map(|(_, results)| DispatchCounts::from_outcomes(results.iter().map(|r| r.outcome)))
        .collect();
    let all_errored =
        |c: &DispatchCounts| c.matched_surveys > 0 && c.errored_count == c.matched_surveys;
    let column = |f: fn(&DispatchCounts) -> u32| -> Vec<i32> {
        counts.iter().map(|c| f(c) as i32).collect()
    };
    // One shape whatever the number of triggers: the values travel as arrays.
    let closed = Cached(
        diesel::sql_query(
            "UPDATE triggers AS t SET status = v.status, error = v.error, \
           matched_count = v.matched, created_count = v.created, cooldown_count = v.cooldown, \
           sample_count = v.sample, errored_count = v.errored, condition_count = v.condition, cap_count = v.cap, \
           started_at = coalesce(t.started_at, now()), completed_at = $9 \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $10, $11) \
           AS v(id, status, error, matched, created, cooldown, sample, errored, condition, cap) \
         WHERE t.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(done.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            counts
                .iter()
                .map(|c| {
                    if all_errored(c) {
                        status::FAILED
                    } else {
                        status::COMPLETED
                    }
                })
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            counts
                .iter()
                .map(|c| all_errored(c).then_some("every matched survey errored"))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int4>, _>(column(|c| c.matched_surveys))
        .bind::<Array<Int4>, _>(column(|c| c.created_count))
        .bind::<Array<Int4>, _>(column(|c| c.suppressed_by_cooldown_count))
        .bind::<Array<Int4>, _>(column(|c| c.suppressed_by_sample_count))
        .bind::<Array<Int4>, _>(column(|c| c.errored_count))
        .bind::<Timestamptz, _>(OffsetDateTime::now_utc())
        .bind::<Array<Int4>, _>(column(|c| c.suppressed_by_condition_count))
        .bind::<Array<Int4>, _>(column(|c| c.suppressed_by_cap_count)),
    )
    .execute(&mut { conn });
    async move {
        let recorded = async {
            match recorded {
                Some(recorded) => recorded.await.map(|_| ()),
                None => Ok(()),
            }
        };
        futures_util::future::try_join(recorded, closed).await?;
        Ok(counts)
    }
}

/// The recorded outcome of each survey a trigger matched.
pub async fn results(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<SurveyResult>, StoreError> {
    type Row = (
        Uuid,
        i32,
        String,
        Option<String>,
        Option<Uuid>,
        Option<OffsetDateTime>,
    );
    let rows: Vec<Row> = trigger_surveys::table
        .filter(trigger_surveys::trigger_id.eq(id))
        .order(trigger_surveys::survey_id.asc())
        .select((
            trigger_surveys::survey_id,
            trigger_surveys::survey_version,
            trigger_surveys::outcome,
            trigger_surveys::reason,
            trigger_surveys::invitation_id,
            trigger_surveys::until,
        ))
        .load(conn)
        .await?;
    // An outcome this version does not know (recorded by a later one) is left out, not an
    // error: the rest of the trigger still reads.
    Ok(rows
        .into_iter()
        .filter_map(
            |(survey_id, survey_version, outcome, reason, invitation_id, until)| {
                let Some(known) = SurveyOutcome::parse(&outcome) else {
                    tracing::warn!(%id, %survey_id, %outcome, "a survey outcome this version does not know is left out");
                    return None;
                };
                Some(SurveyResult {
                    survey_id,
                    survey_version,
                    outcome: known,
                    reason,
                    invitation_id,
                    until,
                })
            },
        )
        .collect())
}

/// Completes a trigger that names no user as it fires: nothing to match or invite, so it is
/// `completed` with the reason `no_contact` and nothing is sent. Only one still under way
/// (`queued`, as a claim leaves it, or `processing`); whether it was.
pub async fn complete_without_contact(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<bool, StoreError> {
    let now = OffsetDateTime::now_utc();
    let updated = diesel::update(
        triggers::table
            .find(id)
            .filter(triggers::user_ref.is_null())
            .filter(triggers::status.eq_any([status::QUEUED, status::PROCESSING])),
    )
    .set((
        triggers::status.eq(status::COMPLETED),
        triggers::reason.eq(StoredReason(TriggerReason::NoContact)),
        triggers::started_at.eq(now),
        triggers::completed_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
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

/// Marks a trigger failed because an envelope of its was dead-lettered: only one of
/// `org_id`, the organization the envelope names, and only while its work is under way
/// (`queued` or `processing`; a scheduled trigger has no envelope yet). Whether it was.
pub async fn fail_dead_lettered(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    org_id: Uuid,
    reason: &str,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        triggers::table
            .find(id)
            .filter(triggers::org_id.eq(org_id))
            .filter(triggers::status.eq_any([status::QUEUED, status::PROCESSING])),
    )
    .set((
        triggers::status.eq(status::FAILED),
        triggers::error.eq(reason),
        triggers::completed_at.eq(OffsetDateTime::now_utc()),
    ))
    .execute(conn)
    .await?;
    Ok(updated > 0)
}

/// Triggers waiting for their time, soonest first; of one project when given.
pub async fn scheduled(
    conn: &mut AsyncPgConnection,
    project_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Trigger>, StoreError> {
    let mut query = triggers::table
        .filter(triggers::status.eq(status::SCHEDULED))
        .into_boxed();
    if let Some(p) = project_id {
        query = query.filter(triggers::project_id.eq(p));
    }
    Ok(query
        .order(triggers::scheduled_for.asc())
        .limit(limit)
        .select(Trigger::as_select())
        .load(conn)
        .await?)
}
