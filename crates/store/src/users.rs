//! The users a project tells Beckon about (`users/upsert`, `user_info` on events).

use crate::StoreError;
use crate::cached::Cached;
use crate::schema::users;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = users)]
pub struct User {
    pub project_id: Uuid,
    pub user_ref: String,
    pub org_id: Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub attributes: serde_json::Value,
    pub trial_ends_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The groups the user belongs to, as the last upsert that named them listed them.
    pub groups: Vec<String>,
}

/// Whether merging `attributes` into the user's (key by key, as an upsert does) keeps them
/// within [`MAX_ATTRIBUTES_BYTES`], measured as the upsert measures them, or adds nothing to
/// them (which the upsert lets through, so a user stored before the bound can still be
/// updated otherwise); reads only.
pub async fn attributes_fit(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
    attributes: &serde_json::Value,
) -> Result<bool, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Fits {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        fits: bool,
    }
    let found: Fits = diesel::sql_query(
        "WITH kept AS (SELECT coalesce((SELECT attributes FROM users \
           WHERE project_id = $1 AND user_ref = $2), '{}'::jsonb) AS attributes) \
         SELECT octet_length((attributes || $3)::text) <= $4 OR attributes @> $3 AS fits FROM kept",
    )
    .bind::<diesel::sql_types::Uuid, _>(project_id)
    .bind::<diesel::sql_types::Text, _>(user_ref)
    .bind::<diesel::sql_types::Jsonb, _>(attributes)
    .bind::<diesel::sql_types::Integer, _>(MAX_ATTRIBUTES_BYTES)
    .get_result(conn)
    .await?;
    Ok(found.fits)
}

impl User {
    /// The fields a targeting condition reads.
    pub fn facts(&self) -> beckon_domain::condition::UserFacts<'_> {
        beckon_domain::condition::UserFacts {
            email: self.email.as_deref(),
            name: self.name.as_deref(),
            groups: &self.groups,
            custom_fields: &self.attributes,
            trial_ends_at: self.trial_ends_at,
            created_at: self.created_at,
        }
    }
}

/// What an upsert changes. `None` keeps the stored value; attributes are merged key by key.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub attributes: Option<serde_json::Value>,
    /// `Some(None)` clears the trial end; `None` keeps it.
    pub trial_ends_at: Option<Option<OffsetDateTime>>,
    /// Replaces the groups; `None` keeps them.
    pub groups: Option<Vec<String>>,
}

impl UserChanges {
    /// Whether applying these changes would leave a stored user as it is.
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.name.is_none()
            && self.phone.is_none()
            && self
                .attributes
                .as_ref()
                .is_none_or(|a| a.as_object().is_some_and(|o| o.is_empty()))
            && self.trial_ends_at.is_none()
            && self.groups.is_none()
    }
}

/// Creates the user when it does not exist yet; a user already stored is left untouched (no
/// write at all), so an event about a known user with nothing new costs no update.
pub async fn ensure(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    project_id: Uuid,
    user_ref: &str,
) -> Result<(), StoreError> {
    ensure_many(conn, &[(org_id, project_id, user_ref)]).await
}

/// [`ensure`] for many `(org_id, project_id, user_ref)` users, in one statement (one shape
/// whatever their number). Repeats are fine; users are inserted in key order, so two callers
/// sharing users wait on each other instead of deadlocking.
pub fn ensure_many<'c>(
    conn: &'c AsyncPgConnection,
    wanted: &[(Uuid, Uuid, &str)],
) -> impl Future<Output = Result<(), StoreError>> + Send + use<'c> {
    let mut wanted = wanted.to_vec();
    wanted.sort_by_key(|(_, project, user)| (*project, *user));
    wanted.dedup_by_key(|(_, project, user)| (*project, *user));
    // The future borrows the connection shared, so it can be awaited together with the next
    // statements, which the connection then pipelines.
    let sent = (!wanted.is_empty()).then(|| {
        Cached(
            diesel::sql_query(
                "INSERT INTO users (org_id, project_id, user_ref) \
                 SELECT * FROM unnest($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind::<Array<SqlUuid>, _>(wanted.iter().map(|w| w.0).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(wanted.iter().map(|w| w.1).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(wanted.iter().map(|w| w.2.to_owned()).collect::<Vec<_>>()),
        )
        .execute(&mut { conn })
    });
    crate::pipelined::done(sent)
}

/// Creates or updates the user; returns it as stored.
/// The most a user's attributes may hold, as JSON text: they travel in every webhook about
/// the user (twice in some formats), so they are bounded in all, not only per request.
pub const MAX_ATTRIBUTES_BYTES: i32 = 64 * 1024;

/// Creates or updates a user; [`StoreError::AttributesTooLarge`] (and nothing written) when
/// the attributes, merged with those kept, would exceed [`MAX_ATTRIBUTES_BYTES`] — unless the
/// merge adds nothing, so a user stored before the bound can still be updated otherwise.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    project_id: Uuid,
    user_ref: &str,
    changes: &UserChanges,
) -> Result<User, StoreError> {
    let attributes = changes
        .attributes
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    Cached(diesel::sql_query(
        "INSERT INTO users (project_id, user_ref, org_id, email, name, phone, attributes, trial_ends_at, groups) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, COALESCE($10, '{}') \
         WHERE octet_length($7::text) <= $11 \
         ON CONFLICT (project_id, user_ref) DO UPDATE SET \
           email = COALESCE(EXCLUDED.email, users.email), \
           name = COALESCE(EXCLUDED.name, users.name), \
           phone = COALESCE(EXCLUDED.phone, users.phone), \
           attributes = users.attributes || EXCLUDED.attributes, \
           trial_ends_at = CASE WHEN $9 THEN EXCLUDED.trial_ends_at ELSE users.trial_ends_at END, \
           groups = COALESCE($10, users.groups), \
           updated_at = now() \
         WHERE octet_length((users.attributes || EXCLUDED.attributes)::text) <= $11 \
           OR users.attributes @> EXCLUDED.attributes \
         RETURNING *",
    )
    .bind::<SqlUuid, _>(project_id)
    .bind::<Text, _>(user_ref)
    .bind::<SqlUuid, _>(org_id)
    .bind::<Nullable<Text>, _>(changes.email.as_deref())
    .bind::<Nullable<Text>, _>(changes.name.as_deref())
    .bind::<Nullable<Text>, _>(changes.phone.as_deref())
    .bind::<Jsonb, _>(attributes)
    .bind::<Nullable<Timestamptz>, _>(changes.trial_ends_at.flatten())
    .bind::<Bool, _>(changes.trial_ends_at.is_some())
    .bind::<Nullable<Array<Text>>, _>(changes.groups.as_deref())
    .bind::<Int4, _>(MAX_ATTRIBUTES_BYTES))
    .get_result(conn)
    .await
    .optional()?
    .ok_or(StoreError::AttributesTooLarge)
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .find((project_id, user_ref))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The stored users among `(project_id, user_ref)` pairs, in one statement; those not stored
/// are left out. The future borrows the connection shared, so it can be awaited together with
/// other statements, which the connection pipelines.
pub fn get_many<'c>(
    conn: &'c AsyncPgConnection,
    keys: &[(Uuid, &str)],
) -> impl Future<Output = Result<Vec<User>, StoreError>> + Send + use<'c> {
    use diesel::sql_types::Array;
    let sent = (!keys.is_empty()).then(|| {
        Cached(
            diesel::sql_query(
                "SELECT * FROM users WHERE (project_id, user_ref) IN (SELECT * FROM unnest($1, $2))",
            )
            .bind::<Array<SqlUuid>, _>(keys.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(keys.iter().map(|(_, u)| *u).collect::<Vec<_>>()),
        )
        .load(&mut { conn })
    });
    crate::pipelined::rows(sent)
}

/// What erasing a user deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub invitations: usize,
    pub responses: usize,
    pub triggers: usize,
    pub webhook_messages: usize,
    pub user: bool,
}

/// Deletes everything held about `user_ref` in a project: invitations (and with them their
/// responses and answers), triggers and schedules, cooldowns, the webhook messages about them
/// (with their deliveries and attempts), and the user record. Call inside a transaction.
pub async fn erase(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    user_ref: &str,
) -> Result<Erased, StoreError> {
    use crate::schema::{cooldowns, invitations, responses, surveys, triggers, webhook_messages};
    let responses = diesel::delete(
        responses::table
            .filter(responses::project_id.eq(project_id))
            .filter(responses::submitted_by.eq(user_ref)),
    )
    .execute(conn)
    .await?;
    let invitations = diesel::delete(
        invitations::table
            .filter(invitations::project_id.eq(project_id))
            .filter(invitations::user_ref.eq(user_ref)),
    )
    .execute(conn)
    .await?;
    let triggers = diesel::delete(
        triggers::table
            .filter(triggers::project_id.eq(project_id))
            .filter(triggers::user_ref.eq(user_ref)),
    )
    .execute(conn)
    .await?;
    let project_surveys = surveys::table
        .filter(surveys::project_id.eq(project_id))
        .select(surveys::id);
    diesel::delete(
        cooldowns::table
            .filter(cooldowns::user_ref.eq(user_ref))
            .filter(cooldowns::survey_id.eq_any(project_surveys)),
    )
    .execute(conn)
    .await?;
    let webhook_messages = diesel::delete(
        webhook_messages::table
            .filter(webhook_messages::project_id.eq(project_id))
            .filter(webhook_messages::user_ref.eq(user_ref)),
    )
    .execute(conn)
    .await?;
    let user = diesel::delete(users::table.find((project_id, user_ref)))
        .execute(conn)
        .await?
        == 1;
    Ok(Erased {
        invitations,
        responses,
        triggers,
        webhook_messages,
        user,
    })
}
