//! Reading responses: per survey, paginated, filtered by time and completion; and as CSV.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::events::{format_timestamp, parse_timestamp};
use crate::routes::owned_project;
use actix_web::{HttpResponse, web};
use beckon_store::responses::{self, ResponseFilter, StoredAnswer};
use beckon_store::{Conn, surveys};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct ResponseQuery {
    /// `in_progress` or `completed`.
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseView {
    pub id: Uuid,
    pub invitation_id: Uuid,
    /// The invitation's `user_ref`.
    pub submitted_by: String,
    /// The survey version answered.
    pub survey_version: i32,
    pub status: String,
    pub created_at: String,
    pub displayed_at: Option<String>,
    pub completed_at: Option<String>,
    /// Answers by question id.
    #[schema(value_type = Object)]
    pub answers: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseList {
    pub data: Vec<ResponseView>,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<String>,
}

fn filter(query: &ResponseQuery, limit: i64) -> Result<ResponseFilter, ApiError> {
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
    let status = match query.status.as_deref() {
        None => None,
        Some(s @ (responses::status::IN_PROGRESS | responses::status::COMPLETED)) => {
            Some(s.to_owned())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "status must be in_progress or completed",
            ));
        }
    };
    Ok(ResponseFilter {
        status,
        since: time(&query.since, "since")?,
        until: time(&query.until, "until")?,
        before: time(&query.before, "before")?,
        limit,
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
                format!("No survey {survey} in this project."),
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
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys/{survey_id}/responses", tag = "responses",
    params(("project_id" = String, Path, description = "Project id"), ("survey_id" = String, Path, description = "Survey id"),
        ("status" = Option<String>, Query, description = "in_progress or completed"),
        ("since" = Option<String>, Query, description = "Created at or after (ISO 8601)"),
        ("until" = Option<String>, Query, description = "Created before (ISO 8601)"),
        ("before" = Option<String>, Query, description = "`next_before` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ResponseList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<ResponseQuery>,
) -> Result<HttpResponse, ApiError> {
    let (project, survey) = path.into_inner();
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let filter = filter(&query, limit)?;
    let mut conn = state.store.conn().await?;
    let survey_id = survey_of(&mut conn, auth, &project, &survey).await?;
    let rows = responses::list(&mut conn, survey_id, &filter).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(r, _)| format_timestamp(r.created_at)))
        .flatten();
    let data = rows
        .into_iter()
        .map(|(r, answers)| ResponseView {
            id: r.id,
            invitation_id: r.invitation_id,
            submitted_by: r.submitted_by,
            survey_version: r.survey_version,
            status: r.status,
            created_at: format_timestamp(r.created_at),
            displayed_at: r.displayed_at.map(format_timestamp),
            completed_at: r.completed_at.map(format_timestamp),
            answers: answers_map(answers),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ResponseList { data, next_before }))
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
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys/{survey_id}/responses.csv", tag = "responses",
    params(("project_id" = String, Path, description = "Project id"), ("survey_id" = String, Path, description = "Survey id"),
        ("status" = Option<String>, Query, description = "in_progress or completed"),
        ("since" = Option<String>, Query, description = "Created at or after (ISO 8601)"),
        ("until" = Option<String>, Query, description = "Created before (ISO 8601)")),
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
    let mut filter = filter(&query, 500)?;
    loop {
        let rows = responses::list(&mut conn, survey_id, &filter).await?;
        let full = rows.len() as i64 == filter.limit;
        filter.before = rows.last().map(|(r, _)| r.created_at);
        for (r, answers) in rows {
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
        if !full {
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
