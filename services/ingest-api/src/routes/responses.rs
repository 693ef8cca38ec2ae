//! Reading responses: per survey, paginated, filtered by time and completion; and as CSV.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::events::{format_timestamp, parse_timestamp};
use crate::routes::owned_project;
use crate::routes::respond::AnswerValue;
use actix_web::{HttpResponse, web};
use beckon_domain::status::ResponseStatus;
use beckon_store::paging::PageRequest;
use beckon_store::responses::{self, Response, ResponseFilter, StoredAnswer};
use beckon_store::{Conn, surveys};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// Which responses to list or export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResponseQuery {
    /// Only the responses in this status.
    #[param(inline)]
    pub status: Option<ResponseStatus>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseView {
    pub id: Uuid,
    pub invitation_id: Uuid,
    /// The invitation's `user_ref`.
    pub submitted_by: String,
    /// The survey version answered.
    pub survey_version: i32,
    #[schema(value_type = ResponseStatus)]
    pub status: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub displayed_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// Answers by question id.
    #[schema(value_type = HashMap<String, AnswerValue>)]
    pub answers: HashMap<String, serde_json::Value>,
}

impl From<(Response, Vec<StoredAnswer>)> for ResponseView {
    fn from((r, answers): (Response, Vec<StoredAnswer>)) -> Self {
        Self {
            id: r.id,
            invitation_id: r.invitation_id,
            submitted_by: r.submitted_by,
            survey_version: r.survey_version,
            status: r.status,
            created_at: format_timestamp(r.created_at),
            displayed_at: r.displayed_at.map(format_timestamp),
            completed_at: r.completed_at.map(format_timestamp),
            answers: answers_map(answers),
        }
    }
}

fn filter(query: &ResponseQuery) -> Result<ResponseFilter, ApiError> {
    let time = |raw: &Option<String>, name: &'static str| {
        raw.as_deref()
            .map(|r| {
                parse_timestamp(r).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{name} must be an ISO 8601 timestamp"),
                    )
                })
            })
            .transpose()
    };
    Ok(ResponseFilter {
        status: query.status.map(ResponseStatus::as_str),
        since: time(&query.since, "since")?,
        until: time(&query.until, "until")?,
    })
}

async fn survey_of(
    conn: &mut Conn,
    auth: OrgAuth,
    project: &str,
    survey: &str,
) -> Result<Uuid, ApiError> {
    let project = owned_project(conn, auth.org_id, project).await?;
    let id = body::path_id(survey, "survey_not_found", "survey")?;
    surveys::get_survey(conn, project.id, id)
        .await?
        .map(|s| s.id)
        .ok_or_else(|| {
            ApiError::not_found(
                "survey_not_found",
                format!("No survey {} in this project.", body::shown(survey)),
            )
        })
}

fn answers_map(answers: Vec<StoredAnswer>) -> HashMap<String, serde_json::Value> {
    answers
        .into_iter()
        .map(|a| (a.question_id, a.value))
        .collect()
}

/// Responses to a survey, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys/{survey_id}/responses", operation_id = "listResponses", tag = "responses",
    params(("project_id" = Uuid, Path, description = "Project id"), ("survey_id" = Uuid, Path, description = "Survey id"),
        ResponseQuery, PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Paginated<ResponseView>),
        (status = 400, description = "A malformed query (`invalid_query`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<ResponseQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, survey) = path.into_inner();
    let filter = filter(&query)?;
    let mut conn = state.store.conn().await?;
    let survey_id = survey_of(&mut conn, auth, &project, &survey).await?;
    let page = page.keyset(&state.sealing_key, List::Responses, survey_id)?;
    let rows = responses::list(&mut conn, survey_id, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        rows,
        &state.sealing_key,
        (List::Responses, survey_id),
        ResponseView::from,
    )))
}

/// A CSV field: quoted when it needs to be, and defused when a spreadsheet would read it as a
/// formula.
fn csv_field(raw: &str) -> String {
    let defused = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

fn csv_value(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    }
}

/// Every response to a survey as CSV, one column per question of any version.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys/{survey_id}/responses.csv", operation_id = "exportResponsesCsv", tag = "responses",
    params(("project_id" = Uuid, Path, description = "Project id"), ("survey_id" = Uuid, Path, description = "Survey id"),
        ResponseQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "text/csv"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn csv(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<ResponseQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, survey) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let survey_id = survey_of(&mut conn, auth, &project, &survey).await?;
    let mut columns: Vec<String> = Vec::new();
    for (_, questions) in surveys::versions(&mut conn, survey_id).await? {
        for q in questions {
            if !columns.contains(&q.id) {
                columns.push(q.id);
            }
        }
    }
    let mut out =
        String::from("response_id,submitted_by,survey_version,status,created_at,completed_at");
    for c in &columns {
        out.push(',');
        out.push_str(&csv_field(c));
    }
    out.push('\n');
    // Paged internally so a large survey never loads at once.
    let filter = filter(&query)?;
    let mut page = PageRequest::first(500);
    loop {
        let rows = responses::list(&mut conn, survey_id, &filter, &page).await?;
        page.after = rows.next_keyset();
        for (r, answers) in rows.items {
            let answers = answers_map(answers);
            let fixed = [
                r.id.to_string(),
                r.submitted_by,
                r.survey_version.to_string(),
                r.status,
                format_timestamp(r.created_at),
                r.completed_at.map(format_timestamp).unwrap_or_default(),
            ];
            let line: Vec<String> = fixed
                .iter()
                .map(|f| csv_field(f))
                .chain(
                    columns
                        .iter()
                        .map(|c| csv_field(&csv_value(answers.get(c)))),
                )
                .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        if page.after.is_none() {
            break;
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"responses-{survey_id}.csv\""),
        ))
        .body(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_value(Some(&serde_json::json!(["A", "B"]))), "A; B");
        assert_eq!(csv_value(Some(&serde_json::json!(9))), "9");
    }
}
