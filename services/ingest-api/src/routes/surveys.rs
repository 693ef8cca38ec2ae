//! Surveys of a project: questions, status, the backend trigger and the delivery rules.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{List, PageQuery, Paginated};
use crate::routes::owned_project;
use actix_web::{HttpResponse, web};
use beckon_domain::survey::{
    self as rules, Question, SampleBy, SurveyError, SurveyStatus, SurveyTrigger,
};
use beckon_store::StoreError;
use beckon_store::surveys::{self, NewSurvey, Survey, SurveyPatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SurveyView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub status: SurveyStatus,
    /// The version new invitations show; new questions make a new version.
    pub version: i32,
    pub questions: Vec<Question>,
    pub trigger: SurveyTrigger,
    pub cooldown_seconds: i64,
    pub sample_rate: f64,
    /// `event`: each event rolls the sample anew; `user`: each user rolls once per survey, so
    /// a user left out stays out.
    pub sample_by: SampleBy,
    pub invitation_lifetime_seconds: i64,
    pub trial_reminder_lead_seconds: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Survey> for SurveyView {
    fn from(s: Survey) -> Self {
        Self {
            id: s.id,
            project_id: s.project_id,
            name: s.name,
            status: s.status,
            version: s.version,
            questions: s.questions,
            trigger: s.trigger,
            cooldown_seconds: s.cooldown_seconds,
            sample_rate: s.sample_rate,
            sample_by: s.sample_by,
            invitation_lifetime_seconds: s.invitation_lifetime_seconds,
            trial_reminder_lead_seconds: s.trial_reminder_lead_seconds,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

fn default_status() -> SurveyStatus {
    SurveyStatus::Draft
}
fn default_sample_rate() -> f64 {
    1.0
}
fn default_lifetime() -> i64 {
    rules::DEFAULT_LIFETIME_SECONDS
}
fn default_reminder_lead() -> i64 {
    rules::DEFAULT_REMINDER_LEAD_SECONDS
}

/// A survey to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSurvey {
    pub name: String,
    /// Default `draft`; only `live` surveys are matched.
    #[serde(default = "default_status")]
    pub status: SurveyStatus,
    pub questions: Vec<Question>,
    /// The lifecycle events the survey subscribes to. Default: none.
    #[serde(default)]
    pub trigger: SurveyTrigger,
    /// Seconds after an invitation during which the same user gets no other from this survey;
    /// 0 (the default) turns it off.
    #[serde(default)]
    pub cooldown_seconds: i64,
    /// Share of matching events that create an invitation, 0 to 1 (default 1).
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// What the sample rolls for: `event` (the default; every matching event rolls anew) or
    /// `user` (each user rolls once per survey, so a user left out stays out).
    #[serde(default)]
    pub sample_by: SampleBy,
    /// Seconds a magic link stays valid (default 30 days).
    #[serde(default = "default_lifetime")]
    pub invitation_lifetime_seconds: i64,
    /// For surveys subscribed to `trial_ending_soon`: how long before a user's
    /// `trial_ends_at` the reminder fires (default 3 days).
    #[serde(default = "default_reminder_lead")]
    pub trial_reminder_lead_seconds: i64,
}

/// Fields to change; absent fields keep their value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSurvey {
    pub name: Option<String>,
    pub status: Option<SurveyStatus>,
    /// New questions make a new survey version; existing invitations keep theirs.
    pub questions: Option<Vec<Question>>,
    pub trigger: Option<SurveyTrigger>,
    pub cooldown_seconds: Option<i64>,
    pub sample_rate: Option<f64>,
    pub sample_by: Option<SampleBy>,
    pub invitation_lifetime_seconds: Option<i64>,
    pub trial_reminder_lead_seconds: Option<i64>,
}

fn invalid(err: SurveyError) -> ApiError {
    let error = ApiError::bad_request(err.code(), err.to_string());
    match &err {
        SurveyError::Condition(at) => error.at(format!("/trigger/conditions{}", at.pointer)),
        _ => error,
    }
}

/// A segment the trigger's conditions refer to that the project does not have is
/// `segment_not_found`, pointing at the (first) reference; other errors are as they are.
fn segment_missing(err: StoreError, trigger: Option<&SurveyTrigger>) -> ApiError {
    let StoreError::SegmentNotFound(id) = err else {
        return err.into();
    };
    let pointer = trigger
        .and_then(|t| t.conditions.as_ref())
        .and_then(|c| c.segment_refs().into_iter().find(|(_, r)| *r == id))
        .map(|(at, _)| format!("/trigger/conditions{at}"));
    let error = ApiError::bad_request(
        "segment_not_found",
        format!("The conditions refer to segment {id}, which this project does not have."),
    );
    match pointer {
        Some(pointer) => error.at(pointer),
        None => error,
    }
}

/// A survey body: a part of the trigger's conditions that does not parse is
/// `invalid_condition`, anything else `invalid_body`; both point at the part.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    body::parse_fields(bytes, |path| {
        if path.starts_with("trigger.conditions") {
            "invalid_condition"
        } else {
            "invalid_body"
        }
    })
}

fn validate(patch: &UpdateSurvey) -> Result<(), ApiError> {
    let checks = [
        patch.name.as_deref().map(rules::validate_name),
        patch.questions.as_deref().map(rules::validate_questions),
        patch.trigger.as_ref().map(SurveyTrigger::validate),
        patch.cooldown_seconds.map(rules::validate_cooldown),
        patch.sample_rate.map(rules::validate_sample_rate),
        patch
            .invitation_lifetime_seconds
            .map(rules::validate_lifetime),
        patch
            .trial_reminder_lead_seconds
            .map(rules::validate_reminder_lead),
    ];
    checks
        .into_iter()
        .flatten()
        .try_for_each(|r| r.map_err(invalid))
}

/// Create a survey.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/surveys", operation_id = "createSurvey", tag = "surveys",
    request_body(content = CreateSurvey, example = json!({"name": "Why did you cancel?", "status": "live", "questions": [{"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true}, {"id": "why", "type": "mcq", "title": "What made you cancel?", "options": ["Too expensive", "Missing a feature", "Other"]}], "trigger": {"events": ["subscription_cancelled", {"custom": "payment_failed"}], "conditions": {"all": [{"in": {"field": "custom_fields.plan", "value": ["pro", "team"]}}, {"after": {"field": "created_at", "value": "now-90d"}}, {"not": {"contains": {"field": "groups", "value": "internal"}}}]}}, "cooldown_seconds": 2592000, "sample_rate": 1.0})),
    params(("project_id" = Uuid, Path, description = "Project id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, body = SurveyView, headers(("Location" = String, description = "The new survey's path"))),
        (status = 400, description = "A field out of bounds (`invalid_body`, `invalid_name`, …), conditions that do not parse or break a limit (`invalid_condition`, with a `pointer`), or conditions that refer to a segment the project does not have (`segment_not_found`, with a `pointer`)", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn create(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: CreateSurvey = parse(&bytes)?;
    validate(&UpdateSurvey {
        name: Some(input.name.clone()),
        questions: Some(input.questions.clone()),
        trigger: Some(input.trigger.clone()),
        cooldown_seconds: Some(input.cooldown_seconds),
        sample_rate: Some(input.sample_rate),
        invitation_lifetime_seconds: Some(input.invitation_lifetime_seconds),
        trial_reminder_lead_seconds: Some(input.trial_reminder_lead_seconds),
        ..Default::default()
    })?;
    let trigger = input.trigger;
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &path).await?;
    let survey = surveys::create_survey(
        &mut conn,
        NewSurvey {
            org_id: auth.org_id,
            project_id: project.id,
            name: input.name.trim().to_owned(),
            status: input.status,
            questions: input.questions,
            trigger: trigger.clone(),
            cooldown_seconds: input.cooldown_seconds,
            sample_rate: input.sample_rate,
            sample_by: input.sample_by,
            invitation_lifetime_seconds: input.invitation_lifetime_seconds,
            trial_reminder_lead_seconds: input.trial_reminder_lead_seconds,
        },
    )
    .await
    .map_err(|e| segment_missing(e, Some(&trigger)))?;
    Ok(super::created(format!(
        "/api/v1/projects/{}/surveys/{}",
        project.id, survey.id
    ))
    .json(SurveyView::from(survey)))
}

/// List a project's surveys, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys", operation_id = "listSurveys", tag = "surveys",
    params(("project_id" = Uuid, Path, description = "Project id"), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Paginated<SurveyView>),
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
    let page = page.keyset(&state.sealing_key, List::Surveys, project.id)?;
    let surveys = surveys::list_surveys(&mut conn, project.id, &page).await?;
    Ok(HttpResponse::Ok().json(Paginated::keyset(
        surveys,
        &state.sealing_key,
        (List::Surveys, project.id),
        SurveyView::from,
    )))
}

fn survey_not_found(raw: &str) -> ApiError {
    ApiError::not_found(
        "survey_not_found",
        format!("No survey {} in this project.", body::shown(raw)),
    )
}

/// Get a survey.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/surveys/{survey_id}", operation_id = "getSurvey", tag = "surveys",
    params(("project_id" = Uuid, Path, description = "Project id"), ("survey_id" = Uuid, Path, description = "Survey id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SurveyView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn get(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project_raw, survey_raw) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let survey_id = body::path_id(&survey_raw, "survey_not_found", "survey")?;
    let survey = surveys::get_survey(&mut conn, project.id, survey_id)
        .await?
        .ok_or_else(|| survey_not_found(&survey_raw))?;
    Ok(HttpResponse::Ok().json(SurveyView::from(survey)))
}

/// Change a survey: name, status, questions (a new version), trigger, rules.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/surveys/{survey_id}", operation_id = "updateSurvey", tag = "surveys",
    request_body(content = UpdateSurvey, example = json!({"status": "paused", "sample_rate": 0.5})),
    params(("project_id" = Uuid, Path, description = "Project id"), ("survey_id" = Uuid, Path, description = "Survey id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SurveyView),
        (status = 400, description = "A field out of bounds (`invalid_body`, `invalid_name`, …), conditions that do not parse or break a limit (`invalid_condition`, with a `pointer`), or conditions that refer to a segment the project does not have (`segment_not_found`, with a `pointer`)", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    ))]
pub async fn update(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (project_raw, survey_raw) = path.into_inner();
    let input: UpdateSurvey = parse(&bytes)?;
    validate(&input)?;
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let survey_id = body::path_id(&survey_raw, "survey_not_found", "survey")?;
    let patch = SurveyPatch {
        name: input.name.map(|n| n.trim().to_owned()),
        status: input.status,
        questions: input.questions,
        trigger: input.trigger,
        cooldown_seconds: input.cooldown_seconds,
        sample_rate: input.sample_rate,
        sample_by: input.sample_by,
        invitation_lifetime_seconds: input.invitation_lifetime_seconds,
        trial_reminder_lead_seconds: input.trial_reminder_lead_seconds,
    };
    let trigger = patch.trigger.clone();
    let survey = surveys::update_survey(&mut conn, project.id, survey_id, patch)
        .await
        .map_err(|e| segment_missing(e, trigger.as_ref()))?
        .ok_or_else(|| survey_not_found(&survey_raw))?;
    Ok(HttpResponse::Ok().json(SurveyView::from(survey)))
}
