//! Invitations, the magic-link lookup, and the atomic cooldown claim.

use crate::StoreError;
use crate::cached::Cached;
use crate::schema::{invitations, survey_versions, surveys};
use beckon_domain::secret;
use beckon_domain::survey::Question;
use diesel::prelude::*;
use diesel::sql_types::{Double, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// An invitation to insert. Its id derives from (trigger, survey).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = invitations, treat_none_as_default_value = false)]
pub struct NewInvitation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub survey_id: Uuid,
    pub survey_version: i32,
    pub trigger_id: Uuid,
    pub user_ref: String,
    pub token_hash: Vec<u8>,
    /// The token sealed under the deployment's key, for the widget.
    pub token_sealed: Option<Vec<u8>>,
    pub expires_at: OffsetDateTime,
}

/// Inserts many invitations in one statement; returns the ids of those created (an id that
/// exists already was inserted by an earlier handling of the same envelope). The future
/// borrows the connection shared, so it can be awaited together with other statements, which
/// the connection pipelines.
pub fn insert_many<'c>(
    conn: &'c AsyncPgConnection,
    new: &[NewInvitation],
) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send + use<'c> {
    let sent = (!new.is_empty()).then(|| {
        Cached(
            diesel::insert_into(invitations::table)
                .values(new)
                .on_conflict(invitations::id)
                .do_nothing()
                .returning(invitations::id),
        )
        .get_results(&mut { conn })
    });
    crate::pipelined::rows(sent)
}

/// A cooldown window that is open: the user was invited to the survey within its cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooling {
    /// When the window ends; `None` when a concurrent claim opened it and this statement
    /// could not see when.
    pub until: Option<OffsetDateTime>,
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    claimed: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    until: Option<OffsetDateTime>,
}

/// Claims the cooldown window of (`survey_id`, `user_ref`): `None` when no invitation was
/// created within the last `cooldown_seconds`, and the window now starts afresh; otherwise
/// the window that is still open, and when it ends.
///
/// One statement, so concurrent claims serialise on the row: `ON CONFLICT DO UPDATE` locks the
/// existing row and evaluates `WHERE` against its latest committed version. A reader-then-writer
/// pair would let two dispatches both see an open window.
///
/// The future borrows the connection shared, so claims for many (survey, user) pairs can be
/// awaited together; the connection pipelines them and PostgreSQL runs them in order, so a
/// second claim of the same pair in one transaction sees the first.
pub fn claim_cooldown<'c>(
    conn: &'c AsyncPgConnection,
    survey_id: Uuid,
    user_ref: &str,
    cooldown_seconds: i64,
) -> impl Future<Output = Result<Option<Cooling>, StoreError>> + Send + use<'c> {
    // `prior` reads the row as the statement began, if its window was open then: when the
    // claim fails on it, its time says when the window ends. A window a concurrent claim
    // opened, this statement cannot see: `until` is then unknown.
    let sent = Cached(
        diesel::sql_query(
            "WITH prior AS (SELECT last_invited_at FROM cooldowns WHERE survey_id = $1 AND user_ref = $2 \
               AND last_invited_at > clock_timestamp() - make_interval(secs => $3)), \
             claimed AS (\
               INSERT INTO cooldowns (survey_id, user_ref, last_invited_at) \
               VALUES ($1, $2, clock_timestamp()) \
               ON CONFLICT (survey_id, user_ref) DO UPDATE SET last_invited_at = EXCLUDED.last_invited_at \
               WHERE cooldowns.last_invited_at <= EXCLUDED.last_invited_at - make_interval(secs => $3) \
               RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM claimed) AS claimed, \
               (SELECT last_invited_at + make_interval(secs => $3) FROM prior) AS until",
        )
        .bind::<SqlUuid, _>(survey_id)
        .bind::<Text, _>(user_ref.to_owned())
        .bind::<Double, _>(cooldown_seconds as f64),
    )
    .get_result::<Claimed>(&mut { conn });
    async move {
        let claimed = sent.await?;
        Ok((!claimed.claimed).then_some(Cooling {
            until: claimed.until,
        }))
    }
}

/// Takes the transaction's lock on a user of a project, so the invitations counted towards
/// the project's cap cannot change until the commit: two handlings of the same user wait for
/// each other. Take them in one fixed order (project, then user ref), or two transactions
/// could each hold one another waits for. Pipelined like [`claim_cooldown`].
pub fn lock_user<'c>(
    conn: &'c AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
) -> impl Future<Output = Result<(), StoreError>> + Send + use<'c> {
    let sent = Cached(
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 7166))",
        )
        .bind::<SqlUuid, _>(project_id)
        .bind::<Text, _>(user_ref.to_owned()),
    )
    .execute(&mut { conn });
    async move {
        sent.await?;
        Ok(())
    }
}

/// How many invitations `user_ref` got in the project, from any survey, in the last
/// `period_seconds`, leaving out those of `triggers` (being handled again, they count as
/// what they decide now). Pipelined like [`claim_cooldown`]; after [`lock_user`], the count
/// holds until the commit.
pub fn count_recent<'c>(
    conn: &'c AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
    period_seconds: i64,
    triggers: &[Uuid],
) -> impl Future<Output = Result<i64, StoreError>> + Send + use<'c> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sent = Cached(
        diesel::sql_query(
            "SELECT count(*) AS n FROM invitations WHERE project_id = $1 AND user_ref = $2 \
             AND created_at > clock_timestamp() - make_interval(secs => $3) \
             AND NOT (trigger_id = ANY($4))",
        )
        .bind::<SqlUuid, _>(project_id)
        .bind::<Text, _>(user_ref.to_owned())
        .bind::<Double, _>(period_seconds as f64)
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(triggers.to_vec()),
    )
    .get_result::<Count>(&mut { conn });
    async move { Ok(sent.await?.n) }
}

/// The cooldown window of (`survey_id`, `user_ref`) when it is open, and when it ends,
/// without claiming it. Pipelined like [`claim_cooldown`].
pub fn in_cooldown<'c>(
    conn: &'c AsyncPgConnection,
    survey_id: Uuid,
    user_ref: &str,
    cooldown_seconds: i64,
) -> impl Future<Output = Result<Option<Cooling>, StoreError>> + Send + use<'c> {
    #[derive(QueryableByName)]
    struct Until {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        until: OffsetDateTime,
    }
    let sent = Cached(
        diesel::sql_query(
            "SELECT last_invited_at + make_interval(secs => $3) AS until FROM cooldowns \
             WHERE survey_id = $1 AND user_ref = $2 \
             AND last_invited_at > clock_timestamp() - make_interval(secs => $3)",
        )
        .bind::<SqlUuid, _>(survey_id)
        .bind::<Text, _>(user_ref.to_owned())
        .bind::<Double, _>(cooldown_seconds as f64),
    )
    .load::<Until>(&mut { conn });
    async move {
        Ok(sent.await?.into_iter().next().map(|u| Cooling {
            until: Some(u.until),
        }))
    }
}

/// The cooldown windows of `user_ref` open now among `surveys` (each with its cooldown in
/// seconds), by survey, in one statement; reads only.
pub async fn open_cooldowns(
    conn: &mut AsyncPgConnection,
    user_ref: &str,
    surveys: &[(Uuid, i64)],
) -> Result<Vec<(Uuid, OffsetDateTime)>, StoreError> {
    #[derive(QueryableByName)]
    struct Open {
        #[diesel(sql_type = SqlUuid)]
        survey_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        until: OffsetDateTime,
    }
    if surveys.is_empty() {
        return Ok(Vec::new());
    }
    let open: Vec<Open> = diesel::sql_query(
        "SELECT c.survey_id, c.last_invited_at + make_interval(secs => v.secs) AS until \
         FROM unnest($1, $2) AS v(survey_id, secs) \
         JOIN cooldowns c ON c.survey_id = v.survey_id AND c.user_ref = $3 \
         WHERE c.last_invited_at > clock_timestamp() - make_interval(secs => v.secs)",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(
        surveys.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
    )
    .bind::<diesel::sql_types::Array<Double>, _>(
        surveys
            .iter()
            .map(|(_, secs)| *secs as f64)
            .collect::<Vec<_>>(),
    )
    .bind::<Text, _>(user_ref)
    .load(conn)
    .await?;
    Ok(open.into_iter().map(|o| (o.survey_id, o.until)).collect())
}

/// An invitation as the magic link finds it, with the survey version it shows.
#[derive(Debug, Clone)]
pub struct LinkedInvitation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub trigger_id: Uuid,
    pub survey_id: Uuid,
    pub survey_name: String,
    pub survey_version: i32,
    /// When the survey version was saved.
    pub survey_version_created_at: OffsetDateTime,
    pub questions: Vec<Question>,
    pub user_ref: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The invitation whose magic-link token is `token`, found by the token's hash.
pub async fn find_by_token(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> Result<Option<LinkedInvitation>, StoreError> {
    if !secret::looks_like_token_body(token) {
        return Ok(None);
    }
    type Row = (
        Uuid,
        Uuid,
        Uuid,
        Uuid,
        Uuid,
        String,
        i32,
        OffsetDateTime,
        serde_json::Value,
        String,
        OffsetDateTime,
        OffsetDateTime,
        Option<OffsetDateTime>,
    );
    let row: Option<Row> = invitations::table
        .inner_join(surveys::table)
        .inner_join(
            survey_versions::table.on(survey_versions::survey_id
                .eq(invitations::survey_id)
                .and(survey_versions::version.eq(invitations::survey_version))),
        )
        .filter(invitations::token_hash.eq(secret::hash(token)))
        .select((
            invitations::id,
            invitations::org_id,
            invitations::project_id,
            invitations::trigger_id,
            invitations::survey_id,
            surveys::name,
            invitations::survey_version,
            survey_versions::created_at,
            survey_versions::questions,
            invitations::user_ref,
            invitations::created_at,
            invitations::expires_at,
            invitations::revoked_at,
        ))
        .first(conn)
        .await
        .optional()?;
    row.map(
        |(
            id,
            org_id,
            project_id,
            trigger_id,
            survey_id,
            survey_name,
            survey_version,
            survey_version_created_at,
            questions,
            user_ref,
            created_at,
            expires_at,
            revoked_at,
        )| {
            Ok(LinkedInvitation {
                id,
                org_id,
                project_id,
                trigger_id,
                survey_id,
                survey_name,
                survey_version,
                survey_version_created_at,
                questions: serde_json::from_value(questions)?,
                user_ref,
                created_at,
                expires_at,
                revoked_at,
            })
        },
    )
    .transpose()
}

/// Revokes an invitation of `project_id` (its link then answers 410); returns when it was
/// revoked (the first time, if it already was), or `None` when there is no such invitation.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<OffsetDateTime>, StoreError> {
    Ok(diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::project_id.eq(project_id)),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    >("coalesce(revoked_at, now())")))
    .returning(invitations::revoked_at)
    .get_result::<Option<OffsetDateTime>>(conn)
    .await
    .optional()?
    .flatten())
}

/// A user's invitation still waiting for an answer.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub id: Uuid,
    pub survey_id: Uuid,
    pub survey_name: String,
    pub survey_version: i32,
    pub token_sealed: Option<Vec<u8>>,
    pub expires_at: OffsetDateTime,
}

/// The invitations of `user_ref` in a project that are neither revoked, expired nor answered,
/// newest first.
pub async fn pending_for(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
) -> Result<Vec<Pending>, StoreError> {
    use crate::schema::responses;
    let completed = responses::table
        .filter(responses::status.eq("completed"))
        .select(responses::invitation_id);
    Ok(invitations::table
        .inner_join(surveys::table)
        .filter(invitations::project_id.eq(project_id))
        .filter(invitations::user_ref.eq(user_ref))
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(OffsetDateTime::now_utc()))
        .filter(diesel::dsl::not(invitations::id.eq_any(completed)))
        .order(invitations::created_at.desc())
        .limit(50)
        .select((
            invitations::id,
            invitations::survey_id,
            surveys::name,
            invitations::survey_version,
            invitations::token_sealed,
            invitations::expires_at,
        ))
        .load(conn)
        .await?)
}

/// An invitation a trigger created, as its dispatch answered it.
#[derive(Debug, Clone, Queryable)]
pub struct Created {
    pub survey_id: Uuid,
    pub user_ref: String,
    pub token_sealed: Option<Vec<u8>>,
    pub expires_at: OffsetDateTime,
}

/// The invitations `trigger_id` created, in survey order.
pub async fn created_by(
    conn: &mut AsyncPgConnection,
    trigger_id: Uuid,
) -> Result<Vec<Created>, StoreError> {
    Ok(invitations::table
        .filter(invitations::trigger_id.eq(trigger_id))
        .order(invitations::survey_id.asc())
        .select((
            invitations::survey_id,
            invitations::user_ref,
            invitations::token_sealed,
            invitations::expires_at,
        ))
        .load(conn)
        .await?)
}
