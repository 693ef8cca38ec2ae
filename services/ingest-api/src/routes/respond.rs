//! What a magic link opens: `GET /surveys/{token}` (the respond page, or JSON for the in-app
//! widget with `Accept: application/json`), and the calls the page makes: report itself shown,
//! save an answer, finish. Each stage is announced to the webhook service through the outbox
//! (`response.displayed`, `response.answered`, `response.ended`).

use crate::AppState;
use crate::body;
use crate::error::{ApiError, CredentialRefused, ErrorBody};
use crate::page;
use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, CACHE_CONTROL};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use beckon_domain::answer;
use beckon_domain::envelope::{
    AnswerDetails, Channel, Completion, Envelope, ResponseDetails, ResponseProgressed,
    ResponseStage, SurveyDetails, TriggerDetails, TriggerType, UserDetails,
};
use beckon_domain::status::ResponseStatus;
use beckon_domain::survey::Question;
use beckon_domain::{LifecycleEvent, UserRef, ids};
use beckon_store::invitations::{self, LinkedInvitation};
use beckon_store::outbox::{self, OutboxMessage};
use beckon_store::responses::{self, NewResponse, Response};
use beckon_store::{Conn, StoreError, triggers, users};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// An answer's value, by the question's kind. Documents the JSON the respond page sends and
/// the API shows; answers are checked against their question as they arrive.
/// Where the respondent is: a response's status, or `not_started` before the first answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ProgressStatus {
    NotStarted,
    InProgress,
    Completed,
    Closed,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AnswerValue {
    /// `nps` (0 to 10) and `rating` (1 to 5).
    #[schema(example = 9)]
    Score(u8),
    /// `mcq`: one of the options; `text`: the text, trimmed.
    #[schema(example = "Too expensive")]
    Text(String),
    /// `checkbox`: the options chosen, in the question's order.
    Choices(Vec<String>),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    #[schema(value_type = ProgressStatus)]
    pub status: String,
    /// The answers given so far, by question id.
    #[schema(value_type = HashMap<String, AnswerValue>)]
    pub answers: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub invitation_id: Uuid,
    pub survey: LinkedSurvey,
    pub response: ProgressView,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    /// A number (nps 0–10, rating 1–5), an option (mcq), a list of options (checkbox) or text.
    #[schema(value_type = AnswerValue)]
    pub value: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SavedAnswer {
    pub question_id: String,
    /// The answer as stored (trimmed text, options in the question's order).
    #[schema(value_type = AnswerValue)]
    pub value: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Completed {
    /// `completed`, or `closed` when the respondent closed it before.
    #[schema(value_type = ResponseStatus, example = "completed")]
    pub status: String,
}

/// What the respondent's client reports when it shows the survey.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplayInput {
    /// Where the survey is shown. The hosted respond page sends `hosted-page`; absent, it is
    /// `widget` (the respond API's other client).
    pub channel: Option<Channel>,
    /// The respondent's language, as the browser reports it (`navigator.language`): a BCP 47
    /// tag — a language of 2 to 8 letters, then subtags of 1 to 8 letters or digits, joined by
    /// hyphens — at most 35 characters.
    #[schema(example = "en-US")]
    pub locale: Option<String>,
}

/// The longest locale tag kept (BCP 47's longest registered forms fit).
const MAX_LOCALE: usize = 35;
/// The most of a `User-Agent` kept.
const MAX_USER_AGENT: usize = 512;

/// Whether `raw` has the shape of a BCP 47 language tag: a language of 2 to 8 letters, then
/// subtags of 1 to 8 letters or digits (`en-US`, `zh-Hant-TW`, `es-419`), at most
/// [`MAX_LOCALE`] characters in all.
fn valid_locale(raw: &str) -> bool {
    let mut subtags = raw.split('-');
    let language = subtags.next().unwrap_or_default();
    raw.len() <= MAX_LOCALE
        && (2..=8).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// What the client reported, bounded and normalised: a malformed locale is a 400, a user agent
/// is cut to [`MAX_USER_AGENT`] characters with control characters dropped.
fn client(req: &HttpRequest, input: DisplayInput) -> Result<responses::Client, ApiError> {
    let locale = input
        .locale
        .map(|raw| {
            if valid_locale(&raw) {
                Ok(raw)
            } else {
                Err(ApiError::bad_request(
                    "invalid_locale",
                    format!(
                        "locale must be a BCP 47 language tag (a language of 2 to 8 letters, then subtags of 1 to 8 letters or digits, joined by hyphens; at most {MAX_LOCALE} characters), such as en-US"
                    ),
                ))
            }
        })
        .transpose()?;
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect::<String>()
        })
        .filter(|ua| !ua.trim().is_empty());
    Ok(responses::Client {
        channel: Some(input.channel.unwrap_or(Channel::Widget).as_str().to_owned()),
        locale,
        user_agent,
    })
}

fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// Why a link cannot be answered, as JSON or as a friendly page.
fn closed(err: ApiError, html: bool) -> HttpResponse {
    if !html {
        return err.error_response();
    }
    let (title, message) = match err.code {
        "invitation_expired" => (
            "This survey has closed",
            "The link has expired. Thank you for your interest.",
        ),
        "invitation_revoked" => (
            "This survey is no longer available",
            "The link has been withdrawn.",
        ),
        "invitation_not_found" => (
            "Survey not found",
            "This link is not valid. Check that it was copied whole.",
        ),
        _ => ("Something went wrong", "Please try again in a moment."),
    };
    let mut page = page::response(err.status);
    if err.refuses_credential() {
        page.extensions_mut().insert(CredentialRefused);
    }
    page.body(page::notice(
        title,
        message,
        crate::request_id::current().as_deref(),
    ))
}

/// The invitation behind `token`: 404 unknown, 410 revoked or expired.
async fn open(conn: &mut Conn, token: &str) -> Result<LinkedInvitation, ApiError> {
    let invitation = invitations::find_by_token(conn, token)
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
    Ok(invitation)
}

/// Open a magic link: the respond page, or (`Accept: application/json`) the survey and the
/// answers so far for the in-app widget.
#[utoipa::path(get, path = "/surveys/{token}", operation_id = "showRespondPage", tag = "respond",
    params(("token" = String, Path, description = "The 43-character token of the magic link")),
    responses(
        (status = 200, description = "The respond page, or the invitation as JSON when the request accepts `application/json`",
            content((InvitationView = "application/json"), (String = "text/html"))),
        (status = 404, description = "Unknown token: a notice page, or the error as JSON",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 410, description = "Expired or revoked: a notice page, or the error as JSON",
            content((ErrorBody = "application/json"), (String = "text/html")))
    ))]
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let html = !wants_json(&req);
    let mut conn = state.store.conn().await?;
    let invitation = match open(&mut conn, &path).await {
        Ok(i) => i,
        Err(err) => return Ok(closed(err, html)),
    };
    let response = responses::of_invitation(&mut conn, invitation.id).await?;
    let answers: HashMap<String, serde_json::Value> = match &response {
        Some(r) => responses::answers_of(&mut conn, r.id)
            .await?
            .into_iter()
            .map(|a| (a.question_id, a.value))
            .collect(),
        None => HashMap::new(),
    };
    let status = response
        .as_ref()
        .map_or("not_started", |r| r.status.as_str())
        .to_owned();
    if html {
        let body = if status == responses::status::COMPLETED {
            page::notice(
                "Thanks, already answered",
                "Your answers to this survey were recorded.",
                None,
            )
        } else if status == responses::status::CLOSED {
            page::notice(
                "This survey was closed",
                "You closed this survey; what you answered was recorded.",
                None,
            )
        } else {
            page::survey(
                &path,
                &invitation.survey_name,
                &invitation.questions,
                &answers,
            )
        };
        return Ok(page::response(StatusCode::OK).body(body));
    }
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(InvitationView {
            invitation_id: invitation.id,
            survey: LinkedSurvey {
                id: invitation.survey_id,
                name: invitation.survey_name,
                version: invitation.survey_version,
                questions: invitation.questions,
            },
            response: ProgressView { status, answers },
            expires_at: crate::routes::events::format_timestamp(invitation.expires_at),
        }))
}

/// The `response.progressed` envelope of a stage, committed to the outbox with the stage.
async fn announce(
    conn: &mut Conn,
    exchange: &str,
    invitation: &LinkedInvitation,
    response: &Response,
    stage: ResponseStage,
    answered: Option<&str>,
) -> Result<OutboxMessage, StoreError> {
    let sequence = responses::next_sequence(conn, response.id).await?;
    let stored = responses::answers_of(conn, response.id).await?;
    let details = |a: &responses::StoredAnswer| {
        invitation
            .questions
            .iter()
            .find(|q| q.id == a.question_id)
            .map(|q| AnswerDetails {
                question_id: q.id.clone(),
                title: q.title.clone(),
                question_type: q.kind.name().to_owned(),
                answer: a.value.clone(),
                answered_at: a.answered_at,
                tags: q.tags.clone(),
            })
    };
    let question = answered
        .and_then(|id| stored.iter().find(|a| a.question_id == id))
        .and_then(details);
    let user = users::get(conn, invitation.project_id, &invitation.user_ref).await?;
    let trigger = triggers::get(conn, invitation.trigger_id)
        .await?
        .and_then(|t| {
            Some(TriggerDetails {
                id: t.id,
                trigger_type: TriggerType::parse(&t.trigger_type)?,
                event: serde_json::from_value::<LifecycleEvent>(t.event).ok()?,
                parameters: t.event_data,
                variables: triggers::object_of("variables", t.variables).ok()?,
                source: triggers::object_of("source", t.source).ok()?,
            })
        });
    let ended = (stage == ResponseStage::Ended)
        .then_some(response.completed_at)
        .flatten();
    let started_at = response
        .displayed_at
        .or_else(|| stored.first().map(|a| a.answered_at));
    let completion = ended.map(|_| {
        if response.status == responses::status::CLOSED {
            Completion::PartiallyCompleted
        } else {
            Completion::FullyCompleted
        }
    });
    let data = ResponseProgressed {
        stage,
        survey: SurveyDetails {
            id: invitation.survey_id,
            name: invitation.survey_name.clone(),
            version: invitation.survey_version,
            version_created_at: Some(invitation.survey_version_created_at),
        },
        user: UserDetails {
            user_ref: UserRef::parse(&invitation.user_ref)
                .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
            email: user.as_ref().and_then(|u| u.email.clone()),
            name: user.as_ref().and_then(|u| u.name.clone()),
            groups: user.as_ref().map(|u| u.groups.clone()).unwrap_or_default(),
            attributes: user
                .and_then(|u| u.attributes.as_object().cloned())
                .unwrap_or_default(),
        },
        trigger,
        response: ResponseDetails {
            id: response.id,
            invitation_id: invitation.id,
            status: response.status.clone(),
            sequence,
            answers: stored.iter().filter_map(details).collect(),
            channel: response
                .channel
                .as_deref()
                .and_then(Channel::parse)
                .unwrap_or(Channel::Widget),
            locale: response.locale.clone(),
            user_agent: response.user_agent.clone(),
            started_at,
            ended_at: ended,
            completion,
            time_to_complete_seconds: ended
                .zip(started_at)
                .map(|(end, start)| (end - start).whole_seconds().max(0)),
        },
        question,
    };
    let env = Envelope::new(
        ids::derive(response.id, &format!("response/{sequence}"), &[]),
        invitation.org_id,
        invitation.project_id,
        invitation.trigger_id,
        data,
    );
    let traceparent = beckon_runtime::telemetry::traceparent();
    outbox::enqueue(
        conn,
        env.id,
        exchange,
        &env.routing_key(),
        env.to_json(),
        traceparent.as_deref(),
    )
    .await
}

fn new_response(invitation: &LinkedInvitation) -> NewResponse {
    NewResponse {
        invitation_id: invitation.id,
        org_id: invitation.org_id,
        project_id: invitation.project_id,
        survey_id: invitation.survey_id,
        survey_version: invitation.survey_version,
        submitted_by: invitation.user_ref.clone(),
    }
}

impl std::error::Error for ApiError {}

fn completed_error(status: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "response_completed",
        if status == responses::status::CLOSED {
            "This survey was closed."
        } else {
            "This survey was already answered."
        },
    )
}

/// What the page asks for.
enum Action {
    Display(responses::Client),
    Answer {
        question_id: String,
        value: serde_json::Value,
    },
    Complete,
    Close,
}

/// What an action came to.
enum Done {
    Nothing,
    Saved(serde_json::Value),
    Missing(Vec<String>),
    /// The response has ended (now or before), with this status.
    Ended(String),
}

/// Runs one action in a transaction with the response locked; what it announces is committed
/// with it (outbox) and published after.
async fn act(state: &AppState, token: &str, action: Action) -> Result<Done, ApiError> {
    let mut conn = state.store.conn().await?;
    let invitation = open(&mut conn, token).await?;
    let exchange = state.publisher.topology().events_exchange();
    let (done, rows) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let response = responses::lock_or_create(conn, &new_response(&invitation)).await?;
            apply(conn, &exchange, &invitation, &response, &action).await
        })
        .await?;
    drop(conn);
    beckon_outbox::flush(&state.publisher, &state.cleaner, &rows).await;
    Ok(done)
}

async fn apply(
    conn: &mut Conn,
    exchange: &str,
    invitation: &LinkedInvitation,
    response: &Response,
    action: &Action,
) -> Result<(Done, Vec<OutboxMessage>), ApiError> {
    let completed = response.status != responses::status::IN_PROGRESS;
    match action {
        Action::Display(client) => {
            let Some(shown) = responses::mark_displayed(conn, response.id, client).await? else {
                return Ok((Done::Nothing, Vec::new()));
            };
            let row = announce(
                conn,
                exchange,
                invitation,
                &shown,
                ResponseStage::Displayed,
                None,
            )
            .await?;
            Ok((Done::Nothing, vec![row]))
        }
        Action::Answer { question_id, value } => {
            if completed {
                return Err(completed_error(&response.status));
            }
            let question = invitation
                .questions
                .iter()
                .find(|q| q.id == *question_id)
                .ok_or_else(|| {
                    ApiError::not_found(
                        "question_not_found",
                        format!("No question {} in this survey.", body::shown(question_id)),
                    )
                })?;
            let value = answer::validate(question, value)
                .map_err(|e| ApiError::bad_request("invalid_answer", e.to_string()))?;
            // The same answer again (a second tap, a retried save) is no news: no
            // `response.answered` for it.
            if responses::save_answer(conn, response.id, question_id, &value).await?
                == responses::AnswerSaved::Unchanged
            {
                return Ok((Done::Saved(value), Vec::new()));
            }
            let row = announce(
                conn,
                exchange,
                invitation,
                response,
                ResponseStage::Answered,
                Some(question_id),
            )
            .await?;
            Ok((Done::Saved(value), vec![row]))
        }
        Action::Complete => {
            if completed {
                return Ok((Done::Ended(response.status.clone()), Vec::new()));
            }
            let stored = responses::answers_of(conn, response.id).await?;
            let answered: Vec<&str> = stored.iter().map(|a| a.question_id.as_str()).collect();
            let missing: Vec<String> = answer::missing_required(&invitation.questions, &answered)
                .into_iter()
                .map(str::to_owned)
                .collect();
            if !missing.is_empty() {
                return Ok((Done::Missing(missing), Vec::new()));
            }
            end(
                conn,
                exchange,
                invitation,
                response,
                responses::status::COMPLETED,
            )
            .await
        }
        Action::Close => {
            if completed {
                return Ok((Done::Ended(response.status.clone()), Vec::new()));
            }
            end(
                conn,
                exchange,
                invitation,
                response,
                responses::status::CLOSED,
            )
            .await
        }
    }
}

/// Ends the response as `ending` and announces `response.ended`.
async fn end(
    conn: &mut Conn,
    exchange: &str,
    invitation: &LinkedInvitation,
    response: &Response,
    ending: &'static str,
) -> Result<(Done, Vec<OutboxMessage>), ApiError> {
    let Some(ended) = responses::end(conn, response.id, ending).await? else {
        // Locked and in progress, so it cannot have ended since: nothing to announce.
        return Ok((Done::Ended(response.status.clone()), Vec::new()));
    };
    let row = announce(
        conn,
        exchange,
        invitation,
        &ended,
        ResponseStage::Ended,
        None,
    )
    .await?;
    Ok((Done::Ended(ended.status.clone()), vec![row]))
}

/// Report the page shown. Sent by the page itself once it is on screen — not counted on the
/// GET, which mail link scanners also make. Only the first report counts.
#[utoipa::path(post, path = "/surveys/{token}/display", operation_id = "recordDisplay", tag = "respond",
    request_body(content = Option<DisplayInput>, description = "Optional: where the survey is shown and in which language", example = json!({"channel": "widget", "locale": "en-US"})),
    params(("token" = String, Path, description = "The magic link's token")),
    responses((status = 204, description = "Recorded (or recorded before)"),
        (status = 400, description = "A malformed body or locale (`invalid_body`, `invalid_locale`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn display(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // No body at all is an empty report, as clients before it sent.
    let input: DisplayInput = if bytes.iter().all(u8::is_ascii_whitespace) {
        DisplayInput::default()
    } else {
        body::parse(&bytes)?
    };
    act(&state, &path, Action::Display(client(&req, input)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Save the answer to one question (again, to change it), validated against the question.
/// Sending the answer the question already has changes nothing and announces nothing.
#[utoipa::path(put, path = "/surveys/{token}/answers/{question_id}", operation_id = "saveAnswer", tag = "respond",
    request_body(content = AnswerInput, example = json!({"value": 9})),
    params(("token" = String, Path, description = "The magic link's token"), ("question_id" = String, Path, description = "Question id")),
    responses(
        (status = 200, body = SavedAnswer),
        (status = 400, description = "Not a valid answer to this question (`invalid_answer`)", body = ErrorBody),
        (status = 404, description = "Unknown token or question", body = ErrorBody),
        (status = 409, description = "Already answered (`response_completed`)", body = ErrorBody),
        (status = 410, body = ErrorBody)
    ))]
pub async fn answer(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (token, question_id) = path.into_inner();
    let input: AnswerInput = body::parse(&bytes)?;
    let done = act(
        &state,
        &token,
        Action::Answer {
            question_id: question_id.clone(),
            value: input.value,
        },
    )
    .await?;
    let value = match done {
        Done::Saved(v) => v,
        _ => serde_json::Value::Null,
    };
    Ok(HttpResponse::Ok().json(SavedAnswer { question_id, value }))
}

/// Finish: every required question must be answered. Finishing twice is harmless.
#[utoipa::path(post, path = "/surveys/{token}/complete", operation_id = "completeResponse", tag = "respond",
    params(("token" = String, Path, description = "The magic link's token")),
    responses(
        (status = 200, body = Completed),
        (status = 400, description = "Required questions unanswered (`required_questions_missing`, listed in `missing`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)
    ))]
pub async fn complete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match act(&state, &path, Action::Complete).await? {
        Done::Missing(missing) => {
            let err = ApiError::bad_request(
                "required_questions_missing",
                format!(
                    "Please answer every required question ({}).",
                    missing.join(", ")
                ),
            );
            let mut body = serde_json::to_value(err.body()).unwrap_or_default();
            body["missing"] = serde_json::json!(missing);
            Ok(HttpResponse::BadRequest().json(body))
        }
        Done::Ended(status) => Ok(HttpResponse::Ok().json(Completed { status })),
        _ => Ok(HttpResponse::Ok().json(Completed {
            status: responses::status::COMPLETED.to_owned(),
        })),
    }
}

/// Close the survey without submitting it: what was answered stays, the response ends as
/// `closed`, and `response.ended` announces it with `completion: partially_completed`. Closing
/// twice, or after submitting, changes nothing.
#[utoipa::path(post, path = "/surveys/{token}/close", operation_id = "closeResponse", tag = "respond",
    params(("token" = String, Path, description = "The magic link's token")),
    responses(
        (status = 200, description = "Closed (or ended before: its status)", body = Completed),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)
    ))]
pub async fn close(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = match act(&state, &path, Action::Close).await? {
        Done::Ended(status) => status,
        _ => responses::status::CLOSED.to_owned(),
    };
    Ok(HttpResponse::Ok().json(Completed { status }))
}

#[cfg(test)]
mod tests {
    use super::valid_locale;

    #[test]
    fn locales_have_the_shape_of_bcp_47_tags() {
        for ok in [
            "en",
            "en-US",
            "zh-Hant-TW",
            "es-419",
            "fr-CA",
            "gsw-u-sd-chzh",
        ] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "---",
            "en--US",
            "-en",
            "en-",
            "e",
            "0000",
            "en_US",
            "en-123456789",
            &"a".repeat(36),
        ] {
            assert!(!valid_locale(bad), "{bad}");
        }
    }
}
