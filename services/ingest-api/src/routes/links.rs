//! `GET /surveys/{token}`: what a magic link opens. For now the survey as JSON; the hosted
//! respond page builds on it.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use beckon_domain::survey::Question;
use beckon_store::invitations;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkedSurvey {
    pub id: Uuid,
    pub name: String,
    /// The version this invitation was created with.
    pub version: i32,
    pub questions: Vec<Question>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub invitation_id: Uuid,
    pub survey: LinkedSurvey,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Open a magic link.
#[utoipa::path(get, path = "/surveys/{token}", tag = "respond",
    params(("token" = String, Path, description = "The 43-character token of the magic link")),
    responses(
        (status = 200, body = InvitationView),
        (status = 404, description = "Unknown token", body = ErrorBody),
        (status = 410, description = "Expired or revoked", body = ErrorBody)
    ))]
pub async fn show(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.store.conn().await?;
    let invitation = invitations::find_by_token(&mut conn, &path)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("invitation_not_found", "This survey link is not valid.")
        })?;
    if invitation.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "invitation_revoked",
            "This survey link has been withdrawn.",
        ));
    }
    if invitation.expires_at <= OffsetDateTime::now_utc() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "invitation_expired",
            "This survey link has expired.",
        ));
    }
    Ok(HttpResponse::Ok().json(InvitationView {
        invitation_id: invitation.id,
        survey: LinkedSurvey {
            id: invitation.survey_id,
            name: invitation.survey_name,
            version: invitation.survey_version,
            questions: invitation.questions,
        },
        expires_at: invitation.expires_at,
    }))
}
