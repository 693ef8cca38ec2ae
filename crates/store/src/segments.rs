//! Segments: named conditions over user fields, per project, that surveys' conditions refer
//! to (`{"segment": "<id>"}`).
//!
//! What a survey refers to stays there: a survey's save locks the segments it refers to
//! (`FOR SHARE`, [`lock_referenced`]), and a delete locks the segment (`FOR UPDATE`) before it
//! looks for surveys that refer to it, so either the save waits and finds the segment gone, or
//! the delete waits and finds the survey.

use crate::StoreError;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{segments, surveys};
use beckon_domain::condition::Condition;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// A segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    /// `None` when the stored condition does not read (written by a later version, or by
    /// hand): the segment is still listed, so it can be found and given a new one.
    pub condition: Option<Condition>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

crate::paging::keyed_by_created_at_and_id!(Segment);

#[derive(Queryable, Selectable)]
#[diesel(table_name = segments)]
struct Row {
    id: Uuid,
    org_id: Uuid,
    project_id: Uuid,
    name: String,
    description: String,
    condition: serde_json::Value,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<Row> for Segment {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            org_id: row.org_id,
            project_id: row.project_id,
            name: row.name,
            description: row.description,
            condition: serde_json::from_value(row.condition)
                .inspect_err(|e| {
                    tracing::warn!(segment_id = %row.id, error = %e, "a segment's stored condition does not read");
                })
                .ok(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A segment to create; the caller has validated every field.
#[derive(Debug, Clone)]
pub struct NewSegment {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    pub condition: Condition,
}

/// Fields to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct SegmentPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub condition: Option<Condition>,
}

/// Another segment of the project has this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameTaken;

/// Creates a segment; `Err(NameTaken)` when its project has one of that name.
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: NewSegment,
) -> Result<Result<Segment, NameTaken>, StoreError> {
    let now = OffsetDateTime::now_utc();
    let inserted = diesel::insert_into(segments::table)
        .values((
            segments::id.eq(Uuid::now_v7()),
            segments::org_id.eq(new.org_id),
            segments::project_id.eq(new.project_id),
            segments::name.eq(&new.name),
            segments::description.eq(&new.description),
            segments::condition.eq(serde_json::to_value(&new.condition)?),
            segments::created_at.eq(now),
            segments::updated_at.eq(now),
        ))
        .returning(Row::as_returning())
        .get_result::<Row>(conn)
        .await
        .map_err(StoreError::from);
    match inserted {
        Ok(row) => Ok(Ok(row.try_into()?)),
        Err(err) if err.is_unique_violation() => Ok(Err(NameTaken)),
        Err(err) => Err(err),
    }
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Segment>, StoreError> {
    segments::table
        .filter(segments::project_id.eq(project_id))
        .filter(segments::id.eq(id))
        .select(Row::as_select())
        .first::<Row>(conn)
        .await
        .optional()?
        .map(Segment::try_from)
        .transpose()
}

/// A page of a project's segments, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    page: &PageRequest<Keyset>,
) -> Result<Page<Segment>, StoreError> {
    let mut query = segments::table
        .filter(segments::project_id.eq(project_id))
        .order((segments::created_at.desc(), segments::id.desc()))
        .limit(page.fetch())
        .select(Row::as_select())
        .into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(segments::created_at, segments::id, after));
    }
    let rows: Vec<Row> = query.load(conn).await?;
    let segments = rows
        .into_iter()
        .map(Segment::try_from)
        .collect::<Result<_, _>>()?;
    Ok(page.page(segments))
}

/// Applies `patch`; `Ok(None)` when the project has no such segment.
pub async fn update(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
    patch: SegmentPatch,
) -> Result<Result<Option<Segment>, NameTaken>, StoreError> {
    let condition = patch
        .condition
        .as_ref()
        .map(serde_json::to_value)
        .transpose()?;
    let updated = diesel::update(
        segments::table
            .filter(segments::project_id.eq(project_id))
            .filter(segments::id.eq(id)),
    )
    .set((
        segments::updated_at.eq(OffsetDateTime::now_utc()),
        patch.name.as_deref().map(|n| segments::name.eq(n)),
        patch
            .description
            .as_deref()
            .map(|d| segments::description.eq(d)),
        condition.map(|c| segments::condition.eq(c)),
    ))
    .returning(Row::as_returning())
    .get_result::<Row>(conn)
    .await
    .optional()
    .map_err(StoreError::from);
    match updated {
        Ok(row) => Ok(Ok(row.map(Segment::try_from).transpose()?)),
        Err(err) if err.is_unique_violation() => Ok(Err(NameTaken)),
        Err(err) => Err(err),
    }
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// These surveys (some of them, at most 20) refer to the segment; nothing was deleted.
    InUse(Vec<Uuid>),
}

/// Deletes a segment no survey refers to.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Deleted, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let found: Option<Uuid> = segments::table
            .filter(segments::project_id.eq(project_id))
            .filter(segments::id.eq(id))
            .select(segments::id)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        if found.is_none() {
            return Ok(Deleted::NotFound);
        }
        // A statement of its own, so it sees the surveys saved while this waited for the lock.
        let users = using(conn, project_id, id).await?;
        if !users.is_empty() {
            return Ok(Deleted::InUse(users));
        }
        diesel::delete(segments::table.find(id))
            .execute(conn)
            .await?;
        Ok(Deleted::Deleted)
    })
    .await
}

/// Surveys of the project whose conditions refer to segment `id` (at most 20).
pub async fn using(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    use diesel::sql_types::{Bool, Text};
    Ok(surveys::table
        .filter(surveys::project_id.eq(project_id))
        .filter(
            diesel::dsl::sql::<Bool>(
                "jsonb_path_exists(trigger_json -> 'conditions', 'lax $.**.segment ? (@ == $id)', jsonb_build_object('id', ",
            )
            .bind::<Text, _>(id.to_string())
            .sql("))"),
        )
        .order(surveys::id.asc())
        .limit(20)
        .select(surveys::id)
        .load(conn)
        .await?)
}

/// Locks the segments `ids` of the project against deletion until the transaction ends
/// (`FOR SHARE`: a segment's edits wait too, so a survey is saved against the segment as it
/// is); the first that is not there is `StoreError::SegmentNotFound`.
pub async fn lock_referenced(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: Vec<Uuid> = segments::table
        .filter(segments::project_id.eq(project_id))
        .filter(segments::id.eq_any(ids))
        .order(segments::id.asc())
        .select(segments::id)
        .for_share()
        .load(conn)
        .await?;
    match ids.iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(StoreError::SegmentNotFound(*missing)),
        None => Ok(()),
    }
}
