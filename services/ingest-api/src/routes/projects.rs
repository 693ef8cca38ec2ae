//! Projects of the caller's organization.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::format_timestamp;
use crate::routes::owned_project;
use actix_web::{HttpResponse, web};
use beckon_domain::cap::InvitationCap;
use beckon_store::tenancy::{self, Project};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The in-app widget's key (`pk_…`); publishable, not a secret. Issue one with
    /// `POST /api/v1/projects/{id}/publishable-key`.
    pub publishable_key: Option<String>,
    /// Origins the widget may call from.
    pub allowed_origins: Vec<String>,
    /// Whether the widget's identity-verification secret has been issued (the widget answers
    /// only once it has). Issue or rotate it with `POST /api/v1/projects/{id}/widget-secret`.
    pub widget_secret_issued: bool,
    /// At most this many invitations per user per period, across all the project's surveys
    /// (`null`: no cap).
    pub invitation_cap: Option<InvitationCap>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        let invitation_cap = p.invitation_cap();
        Self {
            id: p.id,
            org_id: p.org_id,
            name: p.name,
            created_at: p.created_at,
            updated_at: p.updated_at,
            publishable_key: p.publishable_key,
            allowed_origins: p.allowed_origins,
            widget_secret_issued: p.widget_secret_sealed.is_some(),
            invitation_cap,
        }
    }
}

/// A newly issued widget secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WidgetSecret {
    /// `wsk_…`, shown this once. Keep it on your backend: sign each signed-in user's ref with
    /// it, `user_hash = hex(HMAC-SHA256(widget_secret, user_ref))`, and hand the hash to the
    /// widget. Never ship it to a browser.
    pub widget_secret: String,
    /// Until then the secret this one replaced verifies too (absent on the first issue).
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    /// 1 to 200 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectChanges {
    /// 1 to 200 characters.
    pub name: Option<String>,
    /// Origins (`https://app.example.com`) the in-app widget may call from.
    pub allowed_origins: Option<Vec<String>>,
    /// At most `max` invitations per user every `period_seconds`, across all the project's
    /// surveys (`{"max": 1, "period_seconds": 1209600}`: one survey every 14 days); `null`
    /// lifts it. A survey it leaves out is `capped` on the trigger.
    #[serde(default, deserialize_with = "body::nullable")]
    #[schema(value_type = Option<InvitationCap>)]
    pub invitation_cap: Option<Option<InvitationCap>>,
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn valid_origins(origins: &[String]) -> Result<Vec<String>, ApiError> {
    origins
        .iter()
        .map(|raw| {
            let url = url::Url::parse(raw).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.username().is_empty()
                    && !raw.trim_end_matches('/').ends_with(':')
            });
            url.map(|u| u.origin().ascii_serialization())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_origin",
                        format!("{raw} is not an origin like https://app.example.com"),
                    )
                })
        })
        .collect()
}

fn valid_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 200 characters",
        ));
    }
    Ok(name)
}

/// Create a project.
#[utoipa::path(post, path = "/api/v1/projects", operation_id = "createProject", tag = "projects", request_body(content = ProjectInput, example = json!({"name": "Acme web app"})),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, body = ProjectView, headers(("Location" = String, description = "The new project's path"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)
    ))]
pub async fn create(
    auth: OrgAuth,
    state: web::Data<AppState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ProjectInput = body::parse(&bytes)?;
    let name = valid_name(&input.name)?;
    let mut conn = state.store.conn().await?;
    let project = tenancy::create_project(&mut conn, auth.org_id, name).await?;
    Ok(super::created(format!("/api/v1/projects/{}", project.id)).json(ProjectView::from(project)))
}

/// List the organization's projects, newest first.
#[utoipa::path(get, path = "/api/v1/projects", operation_id = "listProjects", tag = "projects",
    params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<ProjectView>),
        (status = 400, description = "A malformed `limit` or `cursor` (`invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.keyset(&state.sealing_key, List::Projects, auth.org_id)?;
    let mut conn = state.store.conn().await?;
    let projects = tenancy::list_projects(&mut conn, auth.org_id, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        projects,
        &state.sealing_key,
        (List::Projects, auth.org_id),
        ProjectView::from,
    )))
}

/// Get a project.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}", operation_id = "getProject", tag = "projects",
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = ProjectView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Change a project's name, the widget's allowed origins or the invitation cap.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}", operation_id = "updateProject", tag = "projects", request_body(content = ProjectChanges, example = json!({"allowed_origins": ["https://app.acme.example"], "invitation_cap": {"max": 1, "period_seconds": 1209600}})),
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = ProjectView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn update(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ProjectChanges = body::parse_fields(&bytes, |path| {
        if path.starts_with("invitation_cap") {
            "invalid_invitation_cap"
        } else {
            "invalid_body"
        }
    })?;
    let name = input.name.as_deref().map(valid_name).transpose()?;
    if let Some(Some(cap)) = &input.invitation_cap {
        cap.validate().map_err(|e| {
            ApiError::bad_request("invalid_invitation_cap", e.to_string()).at("/invitation_cap")
        })?;
    }
    let origins = input
        .allowed_origins
        .as_deref()
        .map(valid_origins)
        .transpose()?;
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let changes = tenancy::ProjectChanges {
        name,
        allowed_origins: origins.as_deref(),
        invitation_cap: input.invitation_cap,
    };
    let project = tenancy::update_project(&mut conn, project.id, changes)
        .await?
        .ok_or_else(|| gone(&path))?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// A project deleted between its lookup and its update.
fn gone(id: &str) -> ApiError {
    ApiError::not_found(
        "project_not_found",
        format!("No project {}.", body::shown(id)),
    )
}

/// Issue the project's publishable key for the in-app widget (a new one replaces the old).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/publishable-key", operation_id = "rotatePublishableKey", tag = "projects",
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = ProjectView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn rotate_publishable_key(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let project = tenancy::rotate_publishable_key(&mut conn, project.id)
        .await?
        .ok_or_else(|| gone(&path))?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// How long a rotated-out widget secret keeps verifying beside the new one.
const WIDGET_SECRET_OVERLAP: time::Duration = time::Duration::hours(24);

/// Issue the widget's identity-verification secret, or rotate it (the previous one keeps
/// verifying for 24 hours, so backends can be redeployed with the new one).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/widget-secret", operation_id = "rotateWidgetSecret", tag = "projects",
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The secret, shown this once", body = WidgetSecret),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn rotate_widget_secret(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let secret = beckon_domain::secret::new_widget_secret();
    let until = OffsetDateTime::now_utc() + WIDGET_SECRET_OVERLAP;
    let sealed = state.sealing_key.seal(secret.expose().as_bytes());
    let had_one = project.widget_secret_sealed.is_some();
    tenancy::rotate_widget_secret(&mut conn, project.id, &sealed, until)
        .await?
        .ok_or_else(|| gone(&path))?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(WidgetSecret {
            widget_secret: secret.expose().to_owned(),
            previous_secret_expires_at: had_one.then(|| format_timestamp(until)),
        }))
}
