//! Organizations, their access tokens and their projects.

use crate::StoreError;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{api_tokens, organizations, projects};
use beckon_domain::cap::InvitationCap;
use beckon_domain::scope::Scope;
use beckon_domain::secret::{self, Plaintext};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
}

pub async fn create_organization(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> Result<Organization, StoreError> {
    let org = Organization {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        created_at: OffsetDateTime::now_utc(),
    };
    diesel::insert_into(organizations::table)
        .values(&org)
        .execute(conn)
        .await?;
    Ok(org)
}

pub async fn get_organization(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<Organization>, StoreError> {
    Ok(organizations::table
        .find(id)
        .select(Organization::as_select())
        .first(conn)
        .await
        .optional()?)
}

crate::paging::keyed_by_created_at_and_id!(Organization);

/// A page of every organization, newest first.
pub async fn list_organizations(
    conn: &mut AsyncPgConnection,
    page: &PageRequest<Keyset>,
) -> Result<Page<Organization>, StoreError> {
    let mut query = organizations::table.into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(
            organizations::created_at,
            organizations::id,
            after,
        ));
    }
    let rows = query
        .order((organizations::created_at.desc(), organizations::id.desc()))
        .limit(page.fetch())
        .select(Organization::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows))
}

/// An access token as stored: never its plaintext.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    created_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    scopes: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    parent_id: Option<Uuid>,
}

/// An organization access token, as listed (never its secret or its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The token it was made with through the API; `None` when the operator CLI made it.
    pub parent_id: Option<Uuid>,
}

crate::paging::keyed_by_created_at_and_id!(ApiToken);

impl From<TokenRow> for ApiToken {
    fn from(row: TokenRow) -> Self {
        Self {
            id: row.id,
            org_id: row.org_id,
            name: row.name,
            // Only the names `Scope` writes are stored; anything else grants nothing.
            scopes: row.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            parent_id: row.parent_id,
        }
    }
}

/// What a live token lets its bearer do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The token that grants it.
    pub token_id: Uuid,
    pub org_id: Uuid,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<OffsetDateTime>,
}

impl Grant {
    /// Whether the token has not expired at `now`.
    pub fn live_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A new access token with `scopes` (at least one), valid until `expires_at` if given.
/// Makes a token of `org_id`; `parent` is the token it is made with through the API (its
/// revocation revokes this one too), `None` for the operator CLI.
pub async fn create_token(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<OffsetDateTime>,
    parent: Option<Uuid>,
) -> Result<(ApiToken, Plaintext), StoreError> {
    let plaintext = secret::new_org_token();
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let token = ApiToken {
        id: Uuid::now_v7(),
        org_id,
        name: name.to_owned(),
        scopes,
        created_at: OffsetDateTime::now_utc(),
        expires_at,
        revoked_at: None,
        parent_id: parent,
    };
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(token.id),
            api_tokens::org_id.eq(org_id),
            api_tokens::name.eq(name),
            api_tokens::token_hash.eq(plaintext.hash()),
            api_tokens::created_at.eq(token.created_at),
            api_tokens::scopes.eq(token
                .scopes
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect::<Vec<_>>()),
            api_tokens::expires_at.eq(expires_at),
            api_tokens::parent_id.eq(parent),
        ))
        .execute(conn)
        .await?;
    Ok((token, plaintext))
}

/// A page of an organization's tokens, newest first, revoked and expired ones too.
pub async fn list_tokens(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    page: &PageRequest<Keyset>,
) -> Result<Page<ApiToken>, StoreError> {
    let mut query = api_tokens::table
        .filter(api_tokens::org_id.eq(org_id))
        .into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(api_tokens::created_at, api_tokens::id, after));
    }
    let rows: Vec<TokenRow> = query
        .order((api_tokens::created_at.desc(), api_tokens::id.desc()))
        .limit(page.fetch())
        .select(TokenRow::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows).map(ApiToken::from))
}

/// One of an organization's tokens, revoked and expired ones too; `None` when it is not the
/// organization's.
pub async fn get_token(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    token_id: Uuid,
) -> Result<Option<ApiToken>, StoreError> {
    let row: Option<TokenRow> = api_tokens::table
        .filter(api_tokens::org_id.eq(org_id))
        .filter(api_tokens::id.eq(token_id))
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(ApiToken::from))
}

pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    presented: &str,
) -> Result<Option<Grant>, StoreError> {
    if !secret::looks_like_org_token(presented) {
        return Ok(None);
    }
    Ok(
        match token_standing(conn, &secret::hash(presented)).await? {
            Some(Standing::Live(grant)) => Some(grant),
            _ => None,
        },
    )
}

/// Why a token that is not live is refused, when it was a real token once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapsed {
    Revoked,
    Expired,
}

/// Where a token stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    Live(Grant),
    Lapsed(Lapsed),
}

/// Where the token whose SHA-256 is `hash` stands, in one lookup (`None`: no such token).
pub async fn token_standing(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> Result<Option<Standing>, StoreError> {
    let row: Option<TokenRow> = api_tokens::table
        .filter(api_tokens::token_hash.eq(hash))
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let now = OffsetDateTime::now_utc();
    Ok(row.map(|row| {
        let token = ApiToken::from(row);
        let grant = Grant {
            token_id: token.id,
            org_id: token.org_id,
            scopes: token.scopes,
            expires_at: token.expires_at,
        };
        if token.revoked_at.is_some() {
            Standing::Lapsed(Lapsed::Revoked)
        } else if !grant.live_at(now) {
            Standing::Lapsed(Lapsed::Expired)
        } else {
            Standing::Live(grant)
        }
    }))
}

/// Revokes a token of `org_id` and every token made from it, and from those, down the line:
/// revoking a stolen token also ends whatever was minted with it. `false` when the token is
/// not the organization's or was revoked already.
pub async fn revoke_token(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    token_id: Uuid,
) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Revoked {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let revoked: Vec<Revoked> = diesel::sql_query(
        "WITH RECURSIVE line AS ( \
           SELECT id FROM api_tokens WHERE id = $1 AND org_id = $2 \
           UNION SELECT t.id FROM api_tokens t JOIN line ON t.parent_id = line.id) \
         UPDATE api_tokens SET revoked_at = now() \
         WHERE id IN (SELECT id FROM line) AND revoked_at IS NULL \
         RETURNING id",
    )
    .bind::<diesel::sql_types::Uuid, _>(token_id)
    .bind::<diesel::sql_types::Uuid, _>(org_id)
    .load(conn)
    .await?;
    Ok(revoked.iter().any(|r| r.id == token_id))
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The in-app widget's key; publishable, not a secret.
    pub publishable_key: Option<String>,
    /// Origins the widget may call from.
    pub allowed_origins: Vec<String>,
    /// The widget's identity-verification secret, sealed under the deployment's key.
    pub widget_secret_sealed: Option<Vec<u8>>,
    /// The secret a rotation replaced, verifying beside the new one until it expires.
    pub widget_previous_secret_sealed: Option<Vec<u8>>,
    pub widget_previous_secret_expires_at: Option<OffsetDateTime>,
    /// The cap on invitations per user across the project's surveys: at most this many…
    pub cap_max: Option<i32>,
    /// …every this many seconds.
    pub cap_period_seconds: Option<i64>,
}

crate::paging::keyed_by_created_at_and_id!(Project);

impl Project {
    /// The project's cap on invitations per user, if it has one.
    pub fn invitation_cap(&self) -> Option<InvitationCap> {
        Some(InvitationCap {
            max: self.cap_max?,
            period_seconds: self.cap_period_seconds?,
        })
    }

    /// The sealed widget secrets that verify now: the current one, and the one a rotation
    /// replaced until it expires.
    pub fn widget_secrets(&self, now: OffsetDateTime) -> impl Iterator<Item = &[u8]> {
        let previous = self.widget_previous_secret_sealed.as_deref().filter(|_| {
            self.widget_previous_secret_expires_at
                .is_some_and(|at| at > now)
        });
        self.widget_secret_sealed
            .as_deref()
            .into_iter()
            .chain(previous)
    }
}

pub async fn create_project(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    name: &str,
) -> Result<Project, StoreError> {
    let now = OffsetDateTime::now_utc();
    let project = Project {
        id: Uuid::now_v7(),
        org_id,
        name: name.to_owned(),
        created_at: now,
        updated_at: now,
        publishable_key: None,
        allowed_origins: Vec::new(),
        widget_secret_sealed: None,
        widget_previous_secret_sealed: None,
        widget_previous_secret_expires_at: None,
        cap_max: None,
        cap_period_seconds: None,
    };
    diesel::insert_into(projects::table)
        .values(&project)
        .execute(conn)
        .await?;
    Ok(project)
}

/// A project by id, whichever organization owns it: the caller tells 403 from 404.
pub async fn get_project(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<Project>, StoreError> {
    Ok(projects::table
        .find(id)
        .select(Project::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A page of an organization's projects, newest first.
pub async fn list_projects(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    page: &PageRequest<Keyset>,
) -> Result<Page<Project>, StoreError> {
    let mut query = projects::table
        .filter(projects::org_id.eq(org_id))
        .into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(projects::created_at, projects::id, after));
    }
    let rows = query
        .order((projects::created_at.desc(), projects::id.desc()))
        .limit(page.fetch())
        .select(Project::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows))
}

/// What a project update changes; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProjectChanges<'a> {
    pub name: Option<&'a str>,
    pub allowed_origins: Option<&'a [String]>,
    /// `Some(None)` lifts the cap.
    pub invitation_cap: Option<Option<InvitationCap>>,
}

/// Changes a project's name, the widget's allowed origins and/or its invitation cap.
pub async fn update_project(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: ProjectChanges<'_>,
) -> Result<Option<Project>, StoreError> {
    let cap = changes.invitation_cap;
    Ok(diesel::update(projects::table.find(id))
        .set((
            changes.name.map(|n| projects::name.eq(n)),
            changes
                .allowed_origins
                .map(|o| projects::allowed_origins.eq(o)),
            cap.map(|c| projects::cap_max.eq(c.map(|c| c.max))),
            cap.map(|c| projects::cap_period_seconds.eq(c.map(|c| c.period_seconds))),
            projects::updated_at.eq(OffsetDateTime::now_utc()),
        ))
        .returning(Project::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Issues a new publishable key for the widget (the previous one stops working).
pub async fn rotate_publishable_key(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<Project>, StoreError> {
    let key = format!("pk_{}", &secret::new_link_token().expose()[..32]);
    Ok(diesel::update(projects::table.find(id))
        .set((
            projects::publishable_key.eq(key),
            projects::updated_at.eq(OffsetDateTime::now_utc()),
        ))
        .returning(Project::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Replaces the widget's identity-verification secret (sealed by the caller); the one it
/// replaces keeps verifying until `previous_until`.
pub async fn rotate_widget_secret(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sealed: &[u8],
    previous_until: OffsetDateTime,
) -> Result<Option<Project>, StoreError> {
    Ok(diesel::update(projects::table.find(id))
        .set((
            projects::widget_previous_secret_sealed.eq(projects::widget_secret_sealed),
            projects::widget_previous_secret_expires_at.eq(previous_until),
            projects::widget_secret_sealed.eq(sealed),
            projects::updated_at.eq(OffsetDateTime::now_utc()),
        ))
        .returning(Project::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// The project a publishable key belongs to.
pub async fn project_by_publishable_key(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<Option<Project>, StoreError> {
    Ok(projects::table
        .filter(projects::publishable_key.eq(key))
        .select(Project::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The invitation caps of those of `ids` that have one. Pipelined (see [`crate::pipelined`]).
pub fn caps<'c>(
    conn: &'c AsyncPgConnection,
    ids: &[Uuid],
) -> impl Future<Output = Result<Vec<(Uuid, InvitationCap)>, StoreError>> + Send + use<'c> {
    let sent = (!ids.is_empty()).then(|| {
        crate::cached::Cached(
            projects::table
                .filter(projects::id.eq_any(ids.to_vec()))
                .filter(projects::cap_max.is_not_null())
                .select((
                    projects::id,
                    projects::cap_max.assume_not_null(),
                    projects::cap_period_seconds.assume_not_null(),
                )),
        )
        .load::<(Uuid, i32, i64)>(&mut { conn })
    });
    let rows = crate::pipelined::rows(sent);
    async move {
        Ok(rows
            .await?
            .into_iter()
            .map(|(id, max, period_seconds)| {
                (
                    id,
                    InvitationCap {
                        max,
                        period_seconds,
                    },
                )
            })
            .collect())
    }
}
