//! The OpenAPI spec, generated from the handlers' annotations and served at `/openapi.json`.

mod examples;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, PartialSchema as _};

use crate::routes::{
    dispatch, events, invitations, projects, respond, responses, segments, surveys, tokens,
    triggers, users, webhooks, widget,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Beckon API",
        description = "Event-triggered surveys: fire lifecycle events, get invitations with magic links, configure projects and surveys. Every answer carries an `X-Request-Id` header (yours, when you send a sane one); every error has the shape {statusCode, error, code, message, request_id}."
    ),
    paths(
        dispatch::dispatch,
        events::send::send, events::batch::batch,
        triggers::list, triggers::get, triggers::workflow, triggers::details, triggers::cancel,
        users::upsert, users::erase, invitations::revoke, responses::list, responses::csv,
        webhooks::subscriptions::create, webhooks::subscriptions::list, webhooks::subscriptions::get, webhooks::subscriptions::update, webhooks::subscriptions::delete,
        webhooks::subscriptions::reverify, webhooks::subscriptions::rotate_secret, webhooks::messages::ping, webhooks::attempts::attempts, webhooks::deliveries::deliveries,
        webhooks::attempts::message_attempts, webhooks::messages::resend, webhooks::messages::recover, webhooks::event_types::event_types,
        projects::create, projects::list, projects::get, projects::update, projects::rotate_publishable_key, projects::rotate_widget_secret,
        widget::pending,
        tokens::list, tokens::create, tokens::get, tokens::revoke,
        surveys::create, surveys::list, surveys::get, surveys::update,
        segments::create, segments::list, segments::get, segments::update, segments::delete,
        respond::show, respond::display, respond::answer, respond::complete, respond::close,
    ),
    modifiers(&Security, &RateLimited, &ResponseDefaults)
)]
pub struct ApiDoc;

/// Every operation may answer 429: the organization's limit, the public routes' limits per
/// client, link and key, and the limit on refused credentials, which covers every route. Every
/// operation a token opens may answer 403: a token without the route's scope.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let response = error_answer(
            "Rate limited (`rate_limited`); retry after `Retry-After` seconds (see `RateLimit-*`)",
        );
        let forbidden = error_answer(
            "The token's scopes do not cover this route (`insufficient_scope`), or the project is another organization's (`project_forbidden`)",
        );
        for operation in operations(openapi) {
            let responses = &mut operation.responses.responses;
            responses
                .entry("429".to_owned())
                .or_insert_with(|| response.clone().into());
            // Every route a token opens may refuse a token without its scope.
            let by_token = operation.security.iter().flatten().any(|requirement| {
                serde_json::to_value(requirement).is_ok_and(|r| r.get("bearer").is_some())
            });
            if by_token {
                responses
                    .entry("403".to_owned())
                    .or_insert_with(|| forbidden.clone().into());
            }
        }
    }
}

/// Every answer names its request (`crate::request_id`), has a description (OpenAPI
/// requires one; the status's reason phrase when the route gives none), and a success its
/// example (`examples`).
struct ResponseDefaults;

impl Modify for ResponseDefaults {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::header::HeaderBuilder;
        let header = HeaderBuilder::new()
            .schema(Some(String::schema()))
            .description(Some(
                "This request's id: the caller's `X-Request-Id` when it is 1 to 128 letters, digits or `-_.:~`, otherwise a new `req_…`",
            ))
            .build();
        for operation in operations(openapi) {
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.description.is_empty() {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| actix_web::http::StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Answer")
                        .to_owned();
                }
                if status.starts_with('2') {
                    for content in response.content.values_mut() {
                        let RefOr::T(content) = content else { continue };
                        let named = match &content.schema {
                            Some(RefOr::Ref(r)) => r.ref_location.rsplit('/').next(),
                            _ => None,
                        };
                        if let Some(example) = named.and_then(examples::of) {
                            content.example = Some(example);
                        }
                    }
                }
                response
                    .headers
                    .insert("X-Request-Id".to_owned(), RefOr::T(header.clone()));
            }
        }
    }
}

/// An answer with the error body.
fn error_answer(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Every operation of the spec.
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.options,
            &mut item.head,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An organization access token, `oat_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The spec as JSON.
pub fn spec() -> &'static str {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

/// The methods the spec documents for the path template matching `path`, as an `Allow`
/// header value (`GET, DELETE`), or `None` for a path it does not document.
pub fn methods_of(path: &str) -> Option<String> {
    static PATHS: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, String)>> =
        std::sync::OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(spec()).unwrap_or_default();
        spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(template, operations)| {
                let mut methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(m, _)| m.to_uppercase())
                    .collect();
                methods.sort();
                (
                    actix_web::dev::ResourceDef::new(template.as_str()),
                    methods.join(", "),
                )
            })
            .collect()
    });
    paths
        .iter()
        .find(|(def, _)| def.is_match(path))
        .map(|(_, allow)| allow.clone())
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(spec())
}
