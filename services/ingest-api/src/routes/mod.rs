//! The HTTP routes, one module per resource.

pub mod dispatch;
pub mod events;
pub mod health;
pub mod invitations;
pub mod projects;
pub mod respond;
pub mod responses;
pub mod segments;
pub mod surveys;
pub mod tokens;
pub mod triggers;
pub mod users;
pub mod webhooks;
pub mod widget;

use crate::error::ApiError;
use actix_web::middleware::from_fn;
use actix_web::web;
use beckon_store::tenancy::{self, Project};
use uuid::Uuid;

/// A 201 answer for a resource made at `location` (its path, which a GET reads back).
pub fn created(location: String) -> actix_web::HttpResponseBuilder {
    let mut builder = actix_web::HttpResponse::Created();
    builder.insert_header((actix_web::http::header::LOCATION, location));
    builder
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(crate::openapi::serve))
        .service(
            web::scope("/surveys/{token}")
                .wrap(from_fn(crate::ratelimit::respond_page))
                .route("", web::get().to(respond::show))
                .route("/display", web::post().to(respond::display))
                .route("/answers/{question_id}", web::put().to(respond::answer))
                .route("/complete", web::post().to(respond::complete))
                .route("/close", web::post().to(respond::close)),
        )
        .service(
            web::scope("/api/v1")
                .route("/lifecycle/dispatch", web::post().to(dispatch::dispatch))
                .route("/events/send", web::post().to(events::send::send))
                .route("/events/batch", web::post().to(events::batch::batch))
                .route("/users/upsert", web::post().to(users::upsert))
                .route("/triggers", web::get().to(triggers::list))
                .route("/triggers/{trigger_id}", web::get().to(triggers::get))
                .route("/triggers/{trigger_id}", web::delete().to(triggers::cancel))
                .route(
                    "/triggers/{trigger_id}/workflow",
                    web::get().to(triggers::workflow),
                )
                .route(
                    "/triggers/{trigger_id}/details",
                    web::get().to(triggers::details),
                )
                .route("/tokens", web::get().to(tokens::list))
                .route("/tokens", web::post().to(tokens::create))
                .route("/tokens/{token_id}", web::get().to(tokens::get))
                .route("/tokens/{token_id}", web::delete().to(tokens::revoke))
                .route("/projects", web::post().to(projects::create))
                .route("/projects", web::get().to(projects::list))
                .route("/projects/{project_id}", web::get().to(projects::get))
                .route("/projects/{project_id}", web::patch().to(projects::update))
                .route(
                    "/webhook-event-types",
                    web::get().to(webhooks::event_types::event_types),
                )
                .service(
                    web::resource("/widget/invitations")
                        .wrap(from_fn(crate::ratelimit::widget))
                        .route(web::get().to(widget::pending))
                        .route(web::method(actix_web::http::Method::OPTIONS).to(widget::preflight))
                        // A resource answers other methods itself: 405 with `Allow`, as the
                        // app's default does.
                        .default_service(web::to(not_found)),
                )
                .route(
                    "/projects/{project_id}/publishable-key",
                    web::post().to(projects::rotate_publishable_key),
                )
                .route(
                    "/projects/{project_id}/widget-secret",
                    web::post().to(projects::rotate_widget_secret),
                )
                .route(
                    "/projects/{project_id}/invitations/{invitation_id}/revoke",
                    web::post().to(invitations::revoke),
                )
                .route(
                    "/projects/{project_id}/users/{user_ref}",
                    web::delete().to(users::erase),
                )
                .route(
                    "/projects/{project_id}/surveys/{survey_id}/responses",
                    web::get().to(responses::list),
                )
                .route(
                    "/projects/{project_id}/surveys/{survey_id}/responses.csv",
                    web::get().to(responses::csv),
                )
                .service(
                    web::scope("/projects/{project_id}/webhooks")
                        .route("", web::post().to(webhooks::subscriptions::create))
                        .route("", web::get().to(webhooks::subscriptions::list))
                        .route("/{webhook_id}", web::get().to(webhooks::subscriptions::get))
                        .route(
                            "/{webhook_id}",
                            web::patch().to(webhooks::subscriptions::update),
                        )
                        .route(
                            "/{webhook_id}",
                            web::delete().to(webhooks::subscriptions::delete),
                        )
                        .route(
                            "/{webhook_id}/verify",
                            web::post().to(webhooks::subscriptions::reverify),
                        )
                        .route(
                            "/{webhook_id}/rotate-secret",
                            web::post().to(webhooks::subscriptions::rotate_secret),
                        )
                        .route(
                            "/{webhook_id}/ping",
                            web::post().to(webhooks::messages::ping),
                        )
                        .route(
                            "/{webhook_id}/attempts",
                            web::get().to(webhooks::attempts::attempts),
                        )
                        .route(
                            "/{webhook_id}/deliveries",
                            web::get().to(webhooks::deliveries::deliveries),
                        )
                        .route(
                            "/{webhook_id}/recover",
                            web::post().to(webhooks::messages::recover),
                        )
                        .route(
                            "/{webhook_id}/messages/{message_id}/attempts",
                            web::get().to(webhooks::attempts::message_attempts),
                        )
                        .route(
                            "/{webhook_id}/messages/{message_id}/resend",
                            web::post().to(webhooks::messages::resend),
                        ),
                )
                .service(
                    web::scope("/projects/{project_id}/segments")
                        .route("", web::post().to(segments::create))
                        .route("", web::get().to(segments::list))
                        .route("/{segment_id}", web::get().to(segments::get))
                        .route("/{segment_id}", web::patch().to(segments::update))
                        .route("/{segment_id}", web::delete().to(segments::delete)),
                )
                .route(
                    "/projects/{project_id}/surveys",
                    web::post().to(surveys::create),
                )
                .route(
                    "/projects/{project_id}/surveys",
                    web::get().to(surveys::list),
                )
                .route(
                    "/projects/{project_id}/surveys/{survey_id}",
                    web::get().to(surveys::get),
                )
                .route(
                    "/projects/{project_id}/surveys/{survey_id}",
                    web::patch().to(surveys::update),
                ),
        )
        .default_service(web::to(not_found));
}

/// A path the API documents with another method is 405 with `Allow`; anything else is 404.
async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    if let Some(allow) = crate::openapi::methods_of(req.path()) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here; use {allow}.", req.method()),
        )
        .with_header("allow", allow));
    }
    Err(ApiError::not_found("not_found", "No such route."))
}

/// The id of project `raw_id` when it exists and belongs to `org_id`, as [`owned_project`]
/// decides, but without asking the database again for a project seen before: a project's
/// organization never changes and projects are never deleted.
pub async fn owned_project_id(
    state: &crate::AppState,
    org_id: Uuid,
    raw_id: &str,
) -> Result<Uuid, ApiError> {
    if let Ok(id) = Uuid::parse_str(raw_id)
        && state.lookups.project_owner(id) == Some(org_id)
    {
        return Ok(id);
    }
    let mut conn = state.store.conn().await?;
    let project = owned_project(&mut conn, org_id, raw_id).await?;
    state.lookups.remember_project(project.id, project.org_id);
    Ok(project.id)
}

/// The project `raw_id` when it exists and belongs to `org_id`: 404 when it does not exist (a
/// malformed id names nothing), 403 when another organization owns it.
pub async fn owned_project(
    conn: &mut beckon_store::Conn,
    org_id: Uuid,
    raw_id: &str,
) -> Result<Project, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "project_not_found",
            format!("No project {}.", crate::body::shown(raw_id)),
        )
    };
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    let project = tenancy::get_project(conn, id)
        .await?
        .ok_or_else(not_found)?;
    if project.org_id != org_id {
        return Err(ApiError::forbidden(
            "project_forbidden",
            format!("Project {raw_id} belongs to another organization."),
        ));
    }
    Ok(project)
}
