//! `POST /api/v1/users/upsert`: keep a user's record, and schedule (move, cancel) a
//! `trial_ending_soon` reminder per subscribed survey ahead of the user's `trial_ends_at`.

use crate::AppState;
use crate::auth::OrgAuth;
use crate::body;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency;
use crate::routes::events::{format_timestamp, parse_timestamp};
use crate::routes::owned_project;
use actix_web::{HttpRequest, HttpResponse, web};
use beckon_domain::reminder::{self, Plan};
use beckon_domain::user_ref::{UserRef, UserRefError};
use beckon_store::triggers::{self, NewTrigger};
use beckon_store::users::{self, User, UserChanges};
use beckon_store::{Conn, StoreError, surveys};
use diesel_async::AsyncConnection;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The request, as documented; read field by field for precise errors.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UpsertUserRequest {
    #[schema(format = Uuid)]
    project_id: String,
    user_ref: String,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    /// Merged key by key into the stored attributes.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    attributes: Option<Value>,
    /// ISO 8601. Schedules a `trial_ending_soon` reminder per subscribed Live survey, the
    /// survey's lead time ahead; a new value moves it, `null` cancels it, absent keeps it.
    #[schema(format = DateTime)]
    trial_ends_at: Option<String>,
    /// The groups the user belongs to (a plan, a company size, a team): at most 50 names of
    /// 1 to 100 characters, trimmed, repeats dropped. Replaces the stored list; absent or
    /// `null` keeps it, `[]` empties it. Carried in the webhooks about the user.
    #[schema(example = json!(["plan-enterprise", "10-100-companies"]))]
    groups: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub project_id: Uuid,
    pub user_ref: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// Your attributes of the user, as merged by every upsert.
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    pub attributes: Value,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
    #[schema(format = DateTime)]
    pub trial_ends_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            project_id: u.project_id,
            user_ref: u.user_ref,
            email: u.email,
            name: u.name,
            phone: u.phone,
            attributes: u.attributes,
            groups: u.groups,
            trial_ends_at: u.trial_ends_at.map(format_timestamp),
            created_at: format_timestamp(u.created_at),
            updated_at: format_timestamp(u.updated_at),
        }
    }
}

/// What erasing a user deleted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasedUser {
    pub user_ref: String,
    pub erased: ErasedCounts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasedCounts {
    pub invitations: usize,
    /// Responses, with their answers.
    pub responses: usize,
    /// Triggers, with their schedules.
    pub triggers: usize,
    /// Webhook messages about the user, with their deliveries and attempts.
    pub webhook_messages: usize,
    /// Whether a user record was held.
    pub user: bool,
}

impl From<users::Erased> for ErasedCounts {
    fn from(e: users::Erased) -> Self {
        Self {
            invitations: e.invitations,
            responses: e.responses,
            triggers: e.triggers,
            webhook_messages: e.webhook_messages,
            user: e.user,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduledReminder {
    pub trigger_id: Uuid,
    pub survey_id: Uuid,
    #[schema(format = DateTime)]
    pub fire_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpsertUserResponse {
    pub user: UserView,
    /// Every reminder of this user still waiting to fire.
    pub scheduled_reminders: Vec<ScheduledReminder>,
}

/// Create or update a user, and schedule its trial reminders.
#[utoipa::path(post, path = "/api/v1/users/upsert", operation_id = "upsertUser", tag = "users",
    request_body(content = UpsertUserRequest, example = json!({"project_id": "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57", "user_ref": "user_8812", "email": "ada@example.com", "name": "Ada Lovelace", "attributes": {"plan": "pro"}, "trial_ends_at": "2027-01-15T00:00:00Z"})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours; see the README")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, body = UpsertUserResponse),
        (status = 400, description = "A malformed field (`invalid_body`, `user_ref_invalid`, `invalid_trial_ends_at`, `invalid_groups`, …), or attributes that, merged with those kept, would exceed 64 KiB as JSON (`attributes_too_large`)", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key was used with another request", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody)
    ))]
pub async fn upsert(
    auth: OrgAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::run(
        &state,
        auth.org_id,
        &req,
        &bytes,
        |_| None,
        |_| upsert_inner(auth, &state, &bytes),
    )
    .await
}

async fn upsert_inner(
    auth: OrgAuth,
    state: &AppState,
    bytes: &[u8],
) -> Result<HttpResponse, ApiError> {
    let value = body::json_value(bytes)?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_body", "The body must be a JSON object."))?;
    let project_raw = body::optional_string(object, "project_id")?
        .ok_or_else(|| ApiError::bad_request("project_id_required", "project_id is required."))?;
    let user_ref = match body::optional_string(object, "user_ref")? {
        Some(raw) => UserRef::parse(&raw).map_err(|e| {
            let code = if e == UserRefError::Empty {
                "user_ref_empty"
            } else {
                "user_ref_invalid"
            };
            ApiError::bad_request(code, e.to_string())
        })?,
        None => {
            return Err(ApiError::bad_request(
                "user_ref_required",
                "user_ref is required.",
            ));
        }
    };
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => None,
        // Bounded as events/send's objects are: attributes travel in every webhook about the
        // user, deeper than they arrive.
        Some(Value::Object(map)) => {
            Some(body::JsonObject::bounded("attributes", map.clone())?.into_value())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "attributes must be an object",
            ));
        }
    };
    let trial_ends_at = match object.get("trial_ends_at") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => Some(Some(parse_timestamp(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_trial_ends_at",
                "trial_ends_at must be an ISO 8601 timestamp",
            )
        })?)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_trial_ends_at",
                "trial_ends_at must be an ISO 8601 timestamp or null",
            ));
        }
    };
    let groups = match object.get("groups") {
        None | Some(Value::Null) => None,
        Some(raw) => Some(groups(raw)?),
    };
    let changes = UserChanges {
        email: body::optional_string(object, "email")?,
        name: body::optional_string(object, "name")?,
        phone: body::optional_string(object, "phone")?,
        attributes,
        trial_ends_at,
        groups,
    };

    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project_raw).await?;
    let (user, reminders) = conn
        .transaction::<_, StoreError, _>(async |conn| {
            // Before the user is written: a reminder sync waits for this upsert to commit.
            if changes.trial_ends_at.is_some() {
                beckon_store::reminders::hold_planning(conn, project.id).await?;
            }
            let user =
                users::upsert(conn, auth.org_id, project.id, user_ref.as_str(), &changes).await?;
            if let Some(ends) = changes.trial_ends_at {
                reconcile_reminders(conn, auth.org_id, project.id, user_ref.as_str(), ends).await?;
            }
            let reminders =
                triggers::scheduled_reminders_of(conn, project.id, user_ref.as_str()).await?;
            Ok((user, reminders))
        })
        .await?;
    Ok(HttpResponse::Ok().json(UpsertUserResponse {
        user: UserView::from(user),
        scheduled_reminders: reminders
            .into_iter()
            .filter_map(|t| {
                Some(ScheduledReminder {
                    trigger_id: t.id,
                    survey_id: t.survey_id?,
                    fire_at: format_timestamp(t.scheduled_for?),
                })
            })
            .collect(),
    }))
}

/// Most groups a user may be in, and the longest name of one.
const MAX_GROUPS: usize = 50;
const MAX_GROUP_NAME: usize = 100;

/// A user's groups from the request: a list of names, each trimmed and bounded, in the order
/// given, repeats dropped.
fn groups(raw: &Value) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_groups",
            format!(
                "groups must be a list of at most {MAX_GROUPS} names of 1 to {MAX_GROUP_NAME} characters, without control characters"
            ),
        )
    };
    let items = raw.as_array().ok_or_else(invalid)?;
    if items.len() > MAX_GROUPS {
        return Err(invalid());
    }
    let mut groups: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().map(str::trim).ok_or_else(invalid)?;
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_GROUP_NAME || name.chars().any(char::is_control) {
            return Err(invalid());
        }
        if !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    Ok(groups)
}

/// Makes each subscribed survey's reminder match the user's trial end. Runs in the upsert's
/// transaction with the user's reminder rows locked; the scheduler's claim also locks them, so
/// a move or cancel that races a firing resolves to exactly one outcome.
async fn reconcile_reminders(
    conn: &mut Conn,
    org_id: Uuid,
    project_id: Uuid,
    user_ref: &str,
    trial_ends_at: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    for (survey_id, lead) in surveys::trial_reminder_surveys(conn, project_id).await? {
        let existing: Vec<_> = triggers::reminders(conn, project_id, user_ref, survey_id)
            .await?
            .iter()
            .map(triggers::Trigger::as_reminder)
            .collect();
        match reminder::plan(trial_ends_at, Some(lead), &existing, now) {
            Plan::Keep => {}
            Plan::Cancel(id) => {
                triggers::cancel_scheduled(conn, id).await?;
            }
            Plan::Move {
                id,
                at,
                reminder_for,
            } => {
                triggers::reschedule(conn, id, at, Some(reminder_for)).await?;
            }
            Plan::Create { at, reminder_for } => {
                let trigger =
                    NewTrigger::reminder(org_id, project_id, user_ref, survey_id, at, reminder_for);
                triggers::insert(conn, &trigger).await?;
            }
        }
    }
    Ok(())
}

/// Erase a user: delete everything held about `user_ref` in the project — invitations,
/// responses and answers, triggers and schedules, cooldowns, the webhook messages about them
/// and the user record — for privacy requests.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/users/{user_ref}", operation_id = "eraseUser", tag = "users",
    params(("project_id" = Uuid, Path, description = "Project id"), ("user_ref" = String, Path, description = "The user's user_ref")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "What was deleted", body = ErasedUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn erase(
    auth: OrgAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, user_ref) = path.into_inner();
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, auth.org_id, &project).await?;
    let erased = conn
        .transaction::<_, StoreError, _>(async |conn| {
            users::erase(conn, project.id, &user_ref).await
        })
        .await?;
    Ok(HttpResponse::Ok().json(ErasedUser {
        user_ref,
        erased: erased.into(),
    }))
}
