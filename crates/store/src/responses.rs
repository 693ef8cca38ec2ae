//! Responses to invitations, and their answers.

use crate::StoreError;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{answers, responses};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// Response statuses.
pub mod status {
    use beckon_domain::status::ResponseStatus;
    pub const IN_PROGRESS: &str = ResponseStatus::InProgress.as_str();
    pub const COMPLETED: &str = ResponseStatus::Completed.as_str();
    pub const CLOSED: &str = ResponseStatus::Closed.as_str();
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = responses)]
pub struct Response {
    pub id: Uuid,
    pub invitation_id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub survey_id: Uuid,
    pub survey_version: i32,
    pub submitted_by: String,
    pub status: String,
    pub sequence: i32,
    pub displayed_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When it was submitted or closed.
    pub completed_at: Option<OffsetDateTime>,
    /// What the respondent's client reported when the survey was shown.
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub user_agent: Option<String>,
}

crate::paging::keyed_by_created_at_and_id!(Response);

/// A listed response with its answers stands where the response does.
impl<A> crate::paging::Keyed for (Response, A) {
    fn keyset(&self) -> crate::paging::Keyset {
        crate::paging::Keyed::keyset(&self.0)
    }
}

/// What a response is created from.
#[derive(Debug, Clone)]
pub struct NewResponse {
    pub invitation_id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub survey_id: Uuid,
    pub survey_version: i32,
    pub submitted_by: String,
}

/// The response of an invitation, if it has one.
pub async fn of_invitation(
    conn: &mut AsyncPgConnection,
    invitation_id: Uuid,
) -> Result<Option<Response>, StoreError> {
    Ok(responses::table
        .filter(responses::invitation_id.eq(invitation_id))
        .select(Response::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The invitation's response, created if needed, locked for the rest of the transaction so
/// concurrent actions on one response take turns.
pub async fn lock_or_create(
    conn: &mut AsyncPgConnection,
    new: &NewResponse,
) -> Result<Response, StoreError> {
    diesel::insert_into(responses::table)
        .values((
            responses::id.eq(beckon_domain::ids::derive(
                new.invitation_id,
                "response",
                &[],
            )),
            responses::invitation_id.eq(new.invitation_id),
            responses::org_id.eq(new.org_id),
            responses::project_id.eq(new.project_id),
            responses::survey_id.eq(new.survey_id),
            responses::survey_version.eq(new.survey_version),
            responses::submitted_by.eq(&new.submitted_by),
            responses::status.eq(status::IN_PROGRESS),
        ))
        .on_conflict(responses::invitation_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(responses::table
        .filter(responses::invitation_id.eq(new.invitation_id))
        .select(Response::as_select())
        .for_update()
        .first(conn)
        .await?)
}

/// What the respondent's client reports when the survey is shown: where, in which language,
/// with which browser (each already bounded).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub user_agent: Option<String>,
}

/// Records the first display of a response in progress, with what the client reported; `None`
/// when it was recorded before or the response has ended (a report arriving after a close
/// would announce a display after the end), or when an answer was given already (a display
/// after it would be announced after the answer, and start the response after its first
/// answer): then only what the client reported is kept, where nothing was yet. Else the
/// response as it is now.
pub async fn mark_displayed(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    client: &Client,
) -> Result<Option<Response>, StoreError> {
    let answered = diesel::select(diesel::dsl::exists(
        answers::table.filter(answers::response_id.eq(id)),
    ))
    .get_result::<bool>(conn)
    .await?;
    if answered {
        use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
        diesel::sql_query(
            "UPDATE responses SET channel = coalesce(channel, $2), \
             locale = coalesce(locale, $3), user_agent = coalesce(user_agent, $4) \
             WHERE id = $1 AND displayed_at IS NULL AND status = $5",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Nullable<Text>, _>(client.channel.as_deref())
        .bind::<Nullable<Text>, _>(client.locale.as_deref())
        .bind::<Nullable<Text>, _>(client.user_agent.as_deref())
        .bind::<Text, _>(status::IN_PROGRESS)
        .execute(conn)
        .await?;
        return Ok(None);
    }
    Ok(diesel::update(
        responses::table
            .find(id)
            .filter(responses::displayed_at.is_null())
            .filter(responses::status.eq(status::IN_PROGRESS)),
    )
    .set((
        responses::displayed_at.eq(OffsetDateTime::now_utc()),
        responses::channel.eq(&client.channel),
        responses::locale.eq(&client.locale),
        responses::user_agent.eq(&client.user_agent),
    ))
    .returning(Response::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// What saving an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSaved {
    /// The question had no answer, or another one: the new value is stored.
    Changed,
    /// The question already had this very answer: nothing was written (its `answered_at`
    /// stays), so nothing new is to be announced.
    Unchanged,
}

/// Saves an answer, replacing an earlier, different one to the same question.
pub async fn save_answer(
    conn: &mut AsyncPgConnection,
    response_id: Uuid,
    question_id: &str,
    value: &serde_json::Value,
) -> Result<AnswerSaved, StoreError> {
    let now = OffsetDateTime::now_utc();
    // jsonb equality ignores key order and whitespace: the same answer sent again, however it
    // was spelled, updates no row.
    let upsert = diesel::insert_into(answers::table)
        .values((
            answers::response_id.eq(response_id),
            answers::question_id.eq(question_id),
            answers::value.eq(value),
            answers::answered_at.eq(now),
        ))
        .on_conflict((answers::response_id, answers::question_id))
        .do_update()
        .set((answers::value.eq(value), answers::answered_at.eq(now)));
    // `ON CONFLICT … DO UPDATE … WHERE`: an insert statement is not a `QueryDsl`, so its
    // filter is named in full.
    let written = diesel::query_dsl::methods::FilterDsl::filter(upsert, answers::value.ne(value))
        .execute(conn)
        .await?;
    Ok(if written == 0 {
        AnswerSaved::Unchanged
    } else {
        AnswerSaved::Changed
    })
}

/// An answer as stored.
#[derive(Debug, Clone, Queryable)]
pub struct StoredAnswer {
    pub question_id: String,
    pub value: serde_json::Value,
    pub answered_at: OffsetDateTime,
}

pub async fn answers_of(
    conn: &mut AsyncPgConnection,
    response_id: Uuid,
) -> Result<Vec<StoredAnswer>, StoreError> {
    Ok(answers::table
        .filter(answers::response_id.eq(response_id))
        .order(answers::answered_at.asc())
        .select((answers::question_id, answers::value, answers::answered_at))
        .load(conn)
        .await?)
}

/// Ends the response in progress as `ending` ([`status::COMPLETED`] or [`status::CLOSED`]);
/// `None` when it had ended before, else the response as it is now.
pub async fn end(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    ending: &'static str,
) -> Result<Option<Response>, StoreError> {
    let now = OffsetDateTime::now_utc();
    Ok(diesel::update(
        responses::table
            .find(id)
            .filter(responses::status.eq(status::IN_PROGRESS)),
    )
    .set((
        responses::status.eq(ending),
        responses::completed_at.eq(now),
        responses::updated_at.eq(now),
    ))
    .returning(Response::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// The number the response's next webhook carries.
pub async fn next_sequence(conn: &mut AsyncPgConnection, id: Uuid) -> Result<i32, StoreError> {
    Ok(diesel::update(responses::table.find(id))
        .set((
            responses::sequence.eq(responses::sequence + 1),
            responses::updated_at.eq(OffsetDateTime::now_utc()),
        ))
        .returning(responses::sequence)
        .get_result(conn)
        .await?)
}

/// Which responses to list; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct ResponseFilter {
    /// One of [`status`].
    pub status: Option<&'static str>,
    /// Created at or after.
    pub since: Option<OffsetDateTime>,
    /// Created before.
    pub until: Option<OffsetDateTime>,
}

/// A page of a survey's responses, newest first, each with its answers.
pub async fn list(
    conn: &mut AsyncPgConnection,
    survey_id: Uuid,
    filter: &ResponseFilter,
    page: &PageRequest<Keyset>,
) -> Result<Page<(Response, Vec<StoredAnswer>)>, StoreError> {
    let mut query = responses::table
        .filter(responses::survey_id.eq(survey_id))
        .into_boxed();
    if let Some(s) = filter.status {
        query = query.filter(responses::status.eq(s));
    }
    if let Some(t) = filter.since {
        query = query.filter(responses::created_at.ge(t));
    }
    if let Some(t) = filter.until {
        query = query.filter(responses::created_at.lt(t));
    }
    if let Some(after) = page.after {
        query = query.filter(older_than(responses::created_at, responses::id, after));
    }
    let rows: Vec<Response> = query
        .order((responses::created_at.desc(), responses::id.desc()))
        .limit(page.fetch())
        .select(Response::as_select())
        .load(conn)
        .await?;
    let page = page.page(rows);
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    let all: Vec<(Uuid, String, serde_json::Value, OffsetDateTime)> = answers::table
        .filter(answers::response_id.eq_any(&ids))
        .order(answers::answered_at.asc())
        .select((
            answers::response_id,
            answers::question_id,
            answers::value,
            answers::answered_at,
        ))
        .load(conn)
        .await?;
    Ok(page.map(|r| {
        let mine = all
            .iter()
            .filter(|a| a.0 == r.id)
            .map(|a| StoredAnswer {
                question_id: a.1.clone(),
                value: a.2.clone(),
                answered_at: a.3,
            })
            .collect();
        (r, mine)
    }))
}
