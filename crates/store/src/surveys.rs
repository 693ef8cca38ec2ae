//! Surveys, their question versions, and matching Live surveys to an event.

use crate::StoreError;
use crate::cached::Cached;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{survey_versions, surveys};
use beckon_domain::envelope::MatchedSurvey;
use beckon_domain::survey::{Question, SampleBy, SurveyStatus, SurveyTrigger};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// A survey with the questions of its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub status: SurveyStatus,
    pub version: i32,
    pub questions: Vec<Question>,
    pub trigger: SurveyTrigger,
    pub cooldown_seconds: i64,
    pub sample_rate: f64,
    pub sample_by: SampleBy,
    pub invitation_lifetime_seconds: i64,
    /// How long before a user's trial ends its `trial_ending_soon` reminder fires.
    pub trial_reminder_lead_seconds: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

crate::paging::keyed_by_created_at_and_id!(Survey);

/// A survey to create; the caller has validated every field.
#[derive(Debug, Clone)]
pub struct NewSurvey {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub status: SurveyStatus,
    pub questions: Vec<Question>,
    pub trigger: SurveyTrigger,
    pub cooldown_seconds: i64,
    pub sample_rate: f64,
    pub sample_by: SampleBy,
    pub invitation_lifetime_seconds: i64,
    pub trial_reminder_lead_seconds: i64,
}

/// Fields to change; `None` keeps the current value. New questions make a new version.
#[derive(Debug, Clone, Default)]
pub struct SurveyPatch {
    pub name: Option<String>,
    pub status: Option<SurveyStatus>,
    pub questions: Option<Vec<Question>>,
    pub trigger: Option<SurveyTrigger>,
    pub cooldown_seconds: Option<i64>,
    pub sample_rate: Option<f64>,
    pub sample_by: Option<SampleBy>,
    pub invitation_lifetime_seconds: Option<i64>,
    pub trial_reminder_lead_seconds: Option<i64>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = surveys)]
struct SurveyRow {
    id: Uuid,
    org_id: Uuid,
    project_id: Uuid,
    name: String,
    status: String,
    current_version: i32,
    trigger_json: serde_json::Value,
    cooldown_seconds: i64,
    sample_rate: f64,
    invitation_lifetime_seconds: i64,
    trial_reminder_lead_seconds: i64,
    sample_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl SurveyRow {
    fn into_survey(self, questions: serde_json::Value) -> Result<Survey, StoreError> {
        Ok(Survey {
            id: self.id,
            org_id: self.org_id,
            project_id: self.project_id,
            name: self.name,
            status: SurveyStatus::parse(&self.status).ok_or_else(|| {
                StoreError::InvalidRow(format!("unknown survey status `{}`", self.status))
            })?,
            version: self.current_version,
            questions: serde_json::from_value(questions)?,
            trigger: stored_trigger(self.id, self.trigger_json)?,
            cooldown_seconds: self.cooldown_seconds,
            sample_rate: self.sample_rate,
            sample_by: SampleBy::parse(&self.sample_by).ok_or_else(|| {
                StoreError::InvalidRow(format!("unknown sample_by `{}`", self.sample_by))
            })?,
            invitation_lifetime_seconds: self.invitation_lifetime_seconds,
            trial_reminder_lead_seconds: self.trial_reminder_lead_seconds,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A survey's trigger as stored. Conditions that no longer read (written by a later version
/// and rolled back, or edited by hand) are left out, so the survey can still be listed, read
/// and changed: the matcher errors the survey, saying why, until its trigger is saved again.
fn stored_trigger(id: Uuid, raw: serde_json::Value) -> Result<SurveyTrigger, StoreError> {
    #[derive(serde::Deserialize)]
    struct Events {
        events: Vec<beckon_domain::LifecycleEvent>,
    }
    match serde_json::from_value::<SurveyTrigger>(raw.clone()) {
        Ok(trigger) => Ok(trigger),
        Err(unreadable) => {
            let Events { events } = serde_json::from_value(raw).map_err(|_| unreadable)?;
            tracing::warn!(survey_id = %id, "a survey's stored conditions do not read; shown without them");
            Ok(SurveyTrigger {
                events,
                conditions: None,
            })
        }
    }
}

async fn load(
    conn: &mut AsyncPgConnection,
    query: surveys::BoxedQuery<'_, diesel::pg::Pg>,
) -> Result<Vec<Survey>, StoreError> {
    let rows: Vec<(SurveyRow, serde_json::Value)> = query
        .inner_join(
            survey_versions::table.on(survey_versions::survey_id
                .eq(surveys::id)
                .and(survey_versions::version.eq(surveys::current_version))),
        )
        .select((SurveyRow::as_select(), survey_versions::questions))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(row, q)| row.into_survey(q))
        .collect()
}

pub async fn create_survey(
    conn: &mut AsyncPgConnection,
    new: NewSurvey,
) -> Result<Survey, StoreError> {
    let id = Uuid::now_v7();
    let questions = serde_json::to_value(&new.questions)?;
    let trigger_json = serde_json::to_value(&new.trigger)?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        crate::segments::lock_referenced(conn, new.project_id, &new.trigger.segment_ids()).await?;
        diesel::insert_into(surveys::table)
            .values((
                surveys::id.eq(id),
                surveys::org_id.eq(new.org_id),
                surveys::project_id.eq(new.project_id),
                surveys::name.eq(&new.name),
                surveys::status.eq(new.status.as_str()),
                surveys::current_version.eq(1),
                surveys::trigger_events.eq(new.trigger.keys()),
                surveys::trigger_json.eq(&trigger_json),
                surveys::cooldown_seconds.eq(new.cooldown_seconds),
                surveys::sample_rate.eq(new.sample_rate),
                surveys::sample_by.eq(new.sample_by.as_str()),
                surveys::invitation_lifetime_seconds.eq(new.invitation_lifetime_seconds),
                surveys::trial_reminder_lead_seconds.eq(new.trial_reminder_lead_seconds),
            ))
            .execute(conn)
            .await?;
        remember_event_keys(conn, new.project_id, &new.trigger.keys()).await?;
        if new.trigger.keys().contains(&reminder_key()) {
            crate::reminders::mark(conn, id).await?;
        }
        diesel::insert_into(survey_versions::table)
            .values((
                survey_versions::survey_id.eq(id),
                survey_versions::version.eq(1),
                survey_versions::questions.eq(&questions),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    get_survey(conn, new.project_id, id)
        .await?
        .ok_or(StoreError::Query(diesel::result::Error::NotFound))
}

pub async fn get_survey(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Survey>, StoreError> {
    let query = surveys::table
        .filter(surveys::project_id.eq(project_id))
        .filter(surveys::id.eq(id))
        .into_boxed();
    Ok(load(conn, query).await?.pop())
}

/// A page of a project's surveys, newest first.
pub async fn list_surveys(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    page: &PageRequest<Keyset>,
) -> Result<Page<Survey>, StoreError> {
    let mut query = surveys::table
        .filter(surveys::project_id.eq(project_id))
        .order((surveys::created_at.desc(), surveys::id.desc()))
        .limit(page.fetch())
        .into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(surveys::created_at, surveys::id, after));
    }
    Ok(page.page(load(conn, query).await?))
}

/// Applies `patch` under a row lock; new questions become version `current + 1`.
pub async fn update_survey(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
    patch: SurveyPatch,
) -> Result<Option<Survey>, StoreError> {
    let updated = conn
        .transaction::<_, StoreError, _>(async |conn| {
            let current: Option<(i32, Vec<String>)> = surveys::table
                .filter(surveys::project_id.eq(project_id))
                .filter(surveys::id.eq(id))
                .select((surveys::current_version, surveys::trigger_events))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some((mut version, events_before)) = current else {
                return Ok(false);
            };
            // Its users' trial reminders follow a survey that listens (or listened) for
            // `trial_ending_soon` when what decides them changes.
            let listened = events_before.contains(&reminder_key());
            let listens = patch
                .trigger
                .as_ref()
                .map_or(listened, |t| t.keys().contains(&reminder_key()));
            let decides = patch.status.is_some()
                || patch.trigger.is_some()
                || patch.trial_reminder_lead_seconds.is_some();
            if (listened || listens) && decides {
                crate::reminders::mark(conn, id).await?;
            }
            if let Some(trigger) = &patch.trigger {
                crate::segments::lock_referenced(conn, project_id, &trigger.segment_ids()).await?;
            }
            if let Some(questions) = &patch.questions {
                version += 1;
                diesel::insert_into(survey_versions::table)
                    .values((
                        survey_versions::survey_id.eq(id),
                        survey_versions::version.eq(version),
                        survey_versions::questions.eq(serde_json::to_value(questions)?),
                    ))
                    .execute(conn)
                    .await?;
            }
            let trigger = patch
                .trigger
                .as_ref()
                .map(|t| Ok::<_, StoreError>((t.keys(), serde_json::to_value(t)?)))
                .transpose()?;
            diesel::update(surveys::table.find(id))
                .set((
                    surveys::current_version.eq(version),
                    surveys::updated_at.eq(OffsetDateTime::now_utc()),
                    patch.name.as_deref().map(|n| surveys::name.eq(n)),
                    patch.status.map(|s| surveys::status.eq(s.as_str())),
                    trigger
                        .as_ref()
                        .map(|(keys, _)| surveys::trigger_events.eq(keys)),
                    trigger
                        .as_ref()
                        .map(|(_, json)| surveys::trigger_json.eq(json)),
                    patch
                        .cooldown_seconds
                        .map(|c| surveys::cooldown_seconds.eq(c)),
                    patch.sample_rate.map(|r| surveys::sample_rate.eq(r)),
                    patch.sample_by.map(|s| surveys::sample_by.eq(s.as_str())),
                    patch
                        .invitation_lifetime_seconds
                        .map(|l| surveys::invitation_lifetime_seconds.eq(l)),
                    patch
                        .trial_reminder_lead_seconds
                        .map(|l| surveys::trial_reminder_lead_seconds.eq(l)),
                ))
                .execute(conn)
                .await?;
            if let Some((keys, _)) = &trigger {
                remember_event_keys(conn, project_id, keys).await?;
            }
            Ok(true)
        })
        .await?;
    if !updated {
        return Ok(None);
    }
    get_survey(conn, project_id, id).await
}

/// The key of the event trial reminders fire.
fn reminder_key() -> String {
    beckon_domain::LifecycleEvent::TrialEndingSoon.key()
}

/// A Live survey an event matched, its trigger's conditions as stored (absent or `null`:
/// none), and the segments they refer to, as an object of each segment's condition by id:
/// both JSON text, read straight into conditions by
/// `beckon_domain::targeting::Targeting::read`.
#[derive(Debug, Clone)]
pub struct LiveSurvey {
    pub matched: MatchedSurvey,
    pub conditions: Option<String>,
    pub segments: Option<String>,
}

/// A survey of the project an event did not match, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmatchedSurvey {
    pub survey_id: Uuid,
    pub name: String,
    pub version: i32,
    /// Not Live (a draft or paused), or Live and not subscribed to the event.
    pub live: bool,
}

/// Most surveys an event did not match that are listed for it (so recorded on its trigger).
pub const MAX_UNMATCHED: i64 = 100;

/// The surveys of a project one event is matched against, read in one statement (so one
/// snapshot: a survey changed meanwhile is in one list, never in both or neither).
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Every Live survey subscribed to the event, with the rules that apply to it now.
    pub live: Vec<LiveSurvey>,
    /// The project's other surveys but the archived ones (not Live, or not subscribed to
    /// the event), oldest first, at most [`MAX_UNMATCHED`] of them. Empty when matching one
    /// survey.
    pub unmatched: Vec<UnmatchedSurvey>,
}

/// The columns [`candidates`] reads of each survey, from a relation named `surveys` with a
/// `matching` column: what an unmatched survey needs is read of every survey, conditions and
/// segments of the matching ones only.
///
/// The segments a survey's stored conditions refer to (`{"segment": id}` anywhere in them;
/// no other key of a condition is named `segment`) are read with it, by id. Looked up by
/// primary key, so the cost is the references', however many segments the project has; a
/// reference that is no id (written by hand) finds nothing, and the conditions it is in do
/// not read. Stored `"conditions": null` (written by hand) reads as none, as the survey's
/// trigger reads it back.
const CANDIDATE_COLUMNS: &str = "SELECT id, name, current_version, cooldown_seconds, sample_rate, \
    sample_by, invitation_lifetime_seconds, status = 'live', matching, \
    CASE WHEN matching THEN NULLIF(trigger_json -> 'conditions', 'null'::jsonb)::text END, \
    CASE WHEN matching AND trigger_json ? 'conditions' THEN \
    (SELECT jsonb_object_agg(g.id::text, g.condition)::text FROM segments g \
     WHERE g.project_id = surveys.project_id AND g.id = ANY(ARRAY( \
       SELECT CASE WHEN r.id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' \
                   THEN r.id::uuid END \
       FROM (SELECT jsonb_path_query(surveys.trigger_json -> 'conditions', 'lax $.**.segment') #>> '{}' AS id) r))) END \
    FROM (";

/// The columns of a survey the statement reads further.
const SURVEY_COLUMNS: &str = "id, name, current_version, cooldown_seconds, sample_rate, sample_by, \
    invitation_lifetime_seconds, status, trigger_json, project_id";

type CandidateRow = (
    Uuid,
    String,
    i32,
    i64,
    f64,
    String,
    i64,
    bool,
    bool,
    Option<String>,
    Option<String>,
);

type CandidateSql = (
    diesel::sql_types::Uuid,
    diesel::sql_types::Text,
    diesel::sql_types::Integer,
    diesel::sql_types::BigInt,
    diesel::sql_types::Double,
    diesel::sql_types::Text,
    diesel::sql_types::BigInt,
    diesel::sql_types::Bool,
    diesel::sql_types::Bool,
    diesel::sql_types::Nullable<diesel::sql_types::Text>,
    diesel::sql_types::Nullable<diesel::sql_types::Text>,
);

/// The surveys of `project_id` the event with `event_key` is matched against: every Live
/// survey whose trigger subscribes to it, and the project's others (see [`Candidates`]).
///
/// `only` restricts matching to one survey (a trial reminder fires for its own survey only),
/// and lists no others.
///
/// The future borrows the connection shared, so it can be awaited together with other
/// statements, which the connection pipelines.
pub fn candidates<'c>(
    conn: &'c AsyncPgConnection,
    project_id: Uuid,
    event_key: &str,
    only: Option<Uuid>,
) -> impl Future<Output = Result<Candidates, StoreError>> + Send + use<'c> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    let matching = sql::<CandidateSql>(&format!(
        "{CANDIDATE_COLUMNS}SELECT {SURVEY_COLUMNS}, true AS matching FROM surveys \
         WHERE project_id = "
    ))
    .bind::<SqlUuid, _>(project_id)
    .sql(" AND status = 'live' AND trigger_events @> ARRAY[")
    .bind::<Text, _>(event_key.to_owned());
    // Prepared once per connection in each of its two shapes.
    use futures_util::future::Either;
    let sent = match only {
        Some(id) => Either::Left(
            Cached(
            matching
                .sql("]::text[] AND id = ")
                .bind::<SqlUuid, _>(id)
                    .sql(") surveys ORDER BY id"),
            )
            .load::<CandidateRow>(&mut { conn }),
        ),
        None => Either::Right(
            Cached(
            matching
                .sql(&format!(
                    "]::text[] UNION ALL (SELECT {SURVEY_COLUMNS}, false FROM surveys WHERE project_id = "
                ))
                .bind::<SqlUuid, _>(project_id)
                .sql(" AND status <> 'archived' AND NOT (status = 'live' AND trigger_events @> ARRAY[")
                .bind::<Text, _>(event_key.to_owned())
                .sql(&format!(
                    "]::text[]) ORDER BY id LIMIT {MAX_UNMATCHED})) surveys ORDER BY matching DESC, id"
                )),
            )
            .load::<CandidateRow>(&mut { conn }),
        ),
    };
    async move {
        let mut candidates = Candidates::default();
        for (
            survey_id,
            name,
            version,
            cooldown_seconds,
            sample_rate,
            sample_by,
            lifetime,
            live,
            matching,
            conditions,
            segments,
        ) in sent.await?
        {
            if !matching {
                candidates.unmatched.push(UnmatchedSurvey {
                    survey_id,
                    name,
                    version,
                    live,
                });
                continue;
            }
            candidates.live.push(LiveSurvey {
                matched: MatchedSurvey {
                    survey_id,
                    name,
                    version,
                    cooldown_seconds,
                    sample_rate,
                    // Always known (a check constraint); per event is the old way.
                    sample_by: SampleBy::parse(&sample_by).unwrap_or_default(),
                    invitation_lifetime_seconds: lifetime,
                    skip: None,
                },
                conditions,
                segments,
            });
        }
        Ok(candidates)
    }
}

/// Records that the project's surveys subscribe to `keys` (kept for ever: events/send answers
/// 404 only for a custom event no survey ever listened for).
async fn remember_event_keys(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    keys: &[String],
) -> Result<(), StoreError> {
    use crate::schema::project_event_keys;
    if keys.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                project_event_keys::project_id.eq(project_id),
                project_event_keys::event_key.eq(k),
            )
        })
        .collect();
    diesel::insert_into(project_event_keys::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Which of `ids` are surveys that exist now, with their projects (one matched a moment ago
/// may have been deleted since). In a transaction, each one found is locked against deletion
/// (`FOR KEY SHARE`, which edits do not wait for) until the commit, so what refers to it can
/// be written. Pipelined like [`live_matching`].
pub fn existing<'c>(
    conn: &'c AsyncPgConnection,
    ids: &[Uuid],
) -> impl Future<Output = Result<Vec<(Uuid, Uuid)>, StoreError>> + Send + use<'c> {
    let sent = (!ids.is_empty()).then(|| {
        Cached(
            surveys::table
                .filter(surveys::id.eq_any(ids.to_vec()))
                .order(surveys::id.asc())
                .select((surveys::id, surveys::project_id))
                .for_key_share(),
        )
        .load::<(Uuid, Uuid)>(&mut { conn })
    });
    crate::pipelined::rows(sent)
}

/// Whether any survey of the project ever subscribed to the event with `key`.
pub async fn event_key_known(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    key: &str,
) -> Result<bool, StoreError> {
    use crate::schema::project_event_keys;
    let n: i64 = project_event_keys::table
        .filter(project_event_keys::project_id.eq(project_id))
        .filter(project_event_keys::event_key.eq(key))
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}

/// The Live surveys of a project subscribed to `trial_ending_soon`, with their reminder lead
/// time in seconds.
pub async fn trial_reminder_surveys(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
) -> Result<Vec<(Uuid, i64)>, StoreError> {
    use diesel::PgArrayExpressionMethods;
    let key = beckon_domain::LifecycleEvent::TrialEndingSoon.key();
    Ok(surveys::table
        .filter(surveys::project_id.eq(project_id))
        .filter(surveys::status.eq(SurveyStatus::Live.as_str()))
        .filter(surveys::trigger_events.contains(vec![key]))
        .order(surveys::id.asc())
        .select((surveys::id, surveys::trial_reminder_lead_seconds))
        .load(conn)
        .await?)
}

/// Every version of a survey's questions, oldest first.
pub async fn versions(
    conn: &mut AsyncPgConnection,
    survey_id: Uuid,
) -> Result<Vec<(i32, Vec<Question>)>, StoreError> {
    let rows: Vec<(i32, serde_json::Value)> = survey_versions::table
        .filter(survey_versions::survey_id.eq(survey_id))
        .order(survey_versions::version.asc())
        .select((survey_versions::version, survey_versions::questions))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(v, q)| Ok((v, serde_json::from_value(q)?)))
        .collect()
}
