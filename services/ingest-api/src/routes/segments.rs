//! Segments of a project: named conditions over user fields that surveys' conditions refer
//! to with `{"segment": "<id>"}`. Changing a segment changes every survey that refers to it,
//! from the next event on; one a survey refers to cannot be deleted.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::owned_project;
use actix_web::{HttpResponse, web};
use beckon_domain::condition::Condition;
use beckon_store::segments::{self, Deleted, NameTaken, NewSegment, Segment, SegmentPatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest name and description, in characters.
const MAX_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 500;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub id: Uuid,
    pub project_id: Uuid,
    #[schema(example = "Enterprise users in France")]
    pub name: String,
    pub description: String,
    /// Reads user fields only (`email`, `name`, `groups`, `custom_fields.*`,
    /// `trial_ends_at`, `created_at`), and refers to no segment. Absent when the stored
    /// condition no longer reads (surveys that refer to the segment error, saying why): PATCH
    /// a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Segment> for SegmentView {
    fn from(s: Segment) -> Self {
        Self {
            id: s.id,
            project_id: s.project_id,
            name: s.name,
            description: s.description,
            condition: s.condition,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A segment to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegment {
    /// 1 to 100 characters, unique in the project.
    #[schema(example = "Enterprise users in France")]
    pub name: String,
    /// At most 500 characters.
    #[serde(default)]
    pub description: String,
    /// Reads user fields only, and refers to no segment.
    pub condition: Condition,
}

/// Fields to change; absent fields keep their value. A new condition applies from the next
/// event on, to every survey that refers to the segment.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSegment {
    pub name: Option<String>,
    pub description: Option<String>,
    pub condition: Option<Condition>,
}

/// A body: a part of the condition that does not parse is `invalid_condition`, anything else
/// `invalid_body`; both point at the part.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    body::parse_fields(bytes, |path| {
        if path.starts_with("condition") {
            "invalid_condition"
        } else {
            "invalid_body"
        }
    })
}

/// Checks the fields given; answers the name trimmed.
fn validate(patch: &UpdateSegment) -> Result<Option<String>, ApiError> {
    if let Some(condition) = &patch.condition {
        condition.validate_segment().map_err(|e| {
            ApiError::bad_request("invalid_condition", e.reason)
                .at(format!("/condition{}", e.pointer))
        })?;
    }
    if let Some(description) = &patch.description
        && description.chars().count() > MAX_DESCRIPTION
    {
        return Err(ApiError::bad_request(
            "invalid_description",
            format!("A description is at most {MAX_DESCRIPTION} characters."),
        )
        .at("/description"));
    }
    patch
        .name
        .as_deref()
        .map(|name| {
            let name = name.trim();
            let len = name.chars().count();
            if len == 0 || len > MAX_NAME || name.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "invalid_name",
                    format!(
                        "A name is 1 to {MAX_NAME} characters, none of them control characters."
                    ),
                )
                .at("/name"));
            }
            Ok(name.to_owned())
        })
        .transpose()
}

fn name_taken() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "segment_name_taken",
        "Another segment of this project has this name.",
    )
    .at("/name")
}

fn segment_not_found(raw: &str) -> ApiError {
    ApiError::not_found(
        "segment_not_found",
        format!("No segment {} in this project.", body::shown(raw)),
    )
}

/// Create a segment.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/segments", operation_id = "createSegment", tag = "segments",
    request_body(content = CreateSegment, example = json!({"name": "Enterprise users in France", "description": "Paying teams we interview in French", "condition": {"all": [{"contains": {"field": "groups", "value": "plan-enterprise"}}, {"eq": {"field": "custom_fields.country", "value": "FR"}}]}})),
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, body = SegmentView, headers(("Location" = String, description = "The new segment's path"))),
        (status = 400, description = "A condition that does not parse or reads the event (`invalid_condition`, with a `pointer`), a name or description out of bounds (`invalid_name`, `invalid_description`), or another field that does not fit (`invalid_body`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Another segment of the project has this name (`segment_name_taken`)", body = ErrorBody)
    ))]
pub async fn create(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: CreateSegment = parse(&bytes)?;
    let checked = UpdateSegment {
        name: Some(input.name),
        description: Some(input.description),
        condition: Some(input.condition),
    };
    let name = validate(&checked)?.unwrap_or_default();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let segment = segments::create(
        &mut conn,
        NewSegment {
            org_id: auth.org_id,
            project_id: project.id,
            name,
            description: checked.description.unwrap_or_default(),
            condition: checked.condition.expect("given above"),
        },
    )
    .await?
    .map_err(|NameTaken| name_taken())?;
    Ok(super::created(format!(
        "/api/v1/projects/{}/segments/{}",
        project.id, segment.id
    ))
    .json(SegmentView::from(segment)))
}

/// List a project's segments, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments", operation_id = "listSegments", tag = "segments",
    params(("project_id" = Uuid, Path, description = "Project id"), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Paginated<SegmentView>),
        (status = 400, description = "A malformed `limit` or `cursor` (`invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let page = page.keyset(&state.sealing_key, List::Segments, project.id)?;
    let segments = segments::list(&mut conn, project.id, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        segments,
        &state.sealing_key,
        (List::Segments, project.id),
        SegmentView::from,
    )))
}

/// Get a segment.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/{segment_id}", operation_id = "getSegment", tag = "segments",
    params(("project_id" = Uuid, Path, description = "Project id"), ("segment_id" = Uuid, Path, description = "Segment id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SegmentView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_raw, segment_raw) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let id = body::path_id(&segment_raw, "segment_not_found", "segment")?;
    let segment = segments::get(&mut conn, project.id, id)
        .await?
        .ok_or_else(|| segment_not_found(&segment_raw))?;
    Ok(HttpResponse::Ok().json(SegmentView::from(segment)))
}

/// Change a segment: its name, description or condition. Every survey that refers to it
/// uses the new condition from the next event on.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/segments/{segment_id}", operation_id = "updateSegment", tag = "segments",
    request_body(content = UpdateSegment, example = json!({"condition": {"eq": {"field": "custom_fields.country", "value": "BE"}}})),
    params(("project_id" = Uuid, Path, description = "Project id"), ("segment_id" = Uuid, Path, description = "Segment id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SegmentView),
        (status = 400, description = "As for create", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Another segment of the project has this name (`segment_name_taken`)", body = ErrorBody)
    ))]
pub async fn update(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (project_raw, segment_raw) = path.into_inner();
    let input: UpdateSegment = parse(&bytes)?;
    let name = validate(&input)?;
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let id = body::path_id(&segment_raw, "segment_not_found", "segment")?;
    let patch = SegmentPatch {
        name,
        description: input.description,
        condition: input.condition,
    };
    let segment = segments::update(&mut conn, project.id, id, patch)
        .await?
        .map_err(|NameTaken| name_taken())?
        .ok_or_else(|| segment_not_found(&segment_raw))?;
    Ok(HttpResponse::Ok().json(SegmentView::from(segment)))
}

/// Delete a segment no survey refers to.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/segments/{segment_id}", operation_id = "deleteSegment", tag = "segments",
    params(("project_id" = Uuid, Path, description = "Project id"), ("segment_id" = Uuid, Path, description = "Segment id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Surveys refer to the segment (`segment_in_use`; the message names up to 20 of them): change their conditions first", body = ErrorBody)
    ))]
pub async fn delete(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_raw, segment_raw) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let id = body::path_id(&segment_raw, "segment_not_found", "segment")?;
    match segments::delete(&mut conn, project.id, id).await? {
        Deleted::Deleted => Ok(HttpResponse::NoContent().finish()),
        Deleted::NotFound => Err(segment_not_found(&segment_raw)),
        Deleted::InUse(surveys) => Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "segment_in_use",
            format!(
                "Surveys refer to this segment: {}. Change their conditions first.",
                surveys
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
