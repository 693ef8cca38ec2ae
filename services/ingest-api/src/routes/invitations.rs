//! Invitations of a project: revoking one.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::format_timestamp;
use crate::routes::owned_project;
use actix_web::{HttpResponse, web};
use beckon_store::invitations;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub id: Uuid,
    #[schema(format = DateTime)]
    pub revoked_at: String,
}

/// Revoke an invitation: its magic link answers 410 from now on. Revoking twice is harmless.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/invitations/{invitation_id}/revoke", operation_id = "revokeInvitation", tag = "invitations",
    params(("project_id" = Uuid, Path, description = "Project id"), ("invitation_id" = Uuid, Path, description = "Invitation id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, raw) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project).await?;
    let id = body::path_id(&raw, "invitation_not_found", "invitation")?;
    let at = invitations::revoke(&mut conn, project.id, id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "invitation_not_found",
                format!(
                    "No invitation {} in this project.",
                    crate::body::shown(&raw)
                ),
            )
        })?;
    Ok(HttpResponse::Ok().json(Revoked {
        id,
        revoked_at: format_timestamp(at),
    }))
}
