//! The REST API: `/api/v1/…` JSON over the same [`Services`] as the dashboard — no rule is
//! written twice. Errors are `application/problem+json` ([`problem`]); the OpenAPI 3.1
//! document is generated from the handlers in [`routes`] and served at `/api/v1/openapi.json`.
//! Request bodies are the shared types of [`pergola_domain::wire`], which the CLI sends.

pub mod auth;
pub mod download;
pub mod guard;
pub mod problem;
pub mod routes;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use pergola_core::Services;
use pergola_domain::{wire, Error};
use problem::Problem;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// JSON request bodies whose rejections (bad JSON, wrong shape) are problems too. A body must be
/// a JSON object: serde would otherwise read a struct from an array (`[null, null]`).
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = problem::ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(problem::ApiError(Error::malformed("The request body must be a JSON object.")));
        }
        serde_json::from_value(value).map(Body).map_err(|e| problem::ApiError(Error::malformed(e.to_string())))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pergola Stages API",
        version = "1",
        description = "Projects and their Stages: create, list, rename, suspend, resume, delete (archive) and restore."
    ),
    tags(
        (name = "projects", description = "Projects"),
        (name = "stages", description = "Stages of a project"),
        (name = "configuration", description = "Environment settings of a stage"),
        (name = "releases", description = "Builds, releases and what runs"),
        (name = "admin", description = "Administration"),
        (name = "access", description = "Signing in, API tokens, users and project members")
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the API's one way in: a personal API token as a bearer (`pgt_…`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "A personal API token (`pgt_…`): `pergola login`, `pergola create token` or the dashboard's Account page."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The API's routes, to merge into the server's router; `session_cookie` is the dashboard's
/// session cookie as the server sets it.
pub fn router<S>(services: Services, session_cookie: auth::SessionCookie) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (router, doc) = openapi_router().split_for_parts();
    let doc = Arc::new(finished(doc));
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        // Prometheus' conventional path (outside the documented API: scraped, not called).
        .route("/metrics", get(routes::metrics::prometheus))
        .route("/api/v1", any(unknown_route))
        .route("/api/v1/{*rest}", any(unknown_route))
        .layer(axum::middleware::from_fn_with_state((services.clone(), session_cookie), auth::authenticate))
        .with_state(services)
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    finished(openapi_router().split_for_parts().1)
}

/// The document as served: the domain's patterns, and the answers every authenticated
/// operation may give.
fn finished(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    with_access_answers(with_domain_patterns(doc))
}

/// Every operation that needs a token may answer 401 (no valid token) and 403 (not allowed:
/// the message names the role needed); only `POST /api/v1/login` needs none.
fn with_access_answers(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                problem::PROBLEM_JSON,
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations =
            [item.get.as_mut(), item.put.as_mut(), item.post.as_mut(), item.delete.as_mut(), item.patch.as_mut()];
        for op in operations.into_iter().flatten() {
            if path == "/api/v1/login" {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                problem("No valid API token (urn:pergola:problem:unauthenticated); WWW-Authenticate: Bearer").into()
            });
            responses.entry("403".into()).or_insert_with(|| {
                problem("Not allowed (urn:pergola:problem:forbidden): the message names the role needed").into()
            });
        }
    }
    doc
}

/// Declares the domain's patterns that an attribute cannot name (utoipa takes only literals
/// there): every request body's display `name` ([`wire::NAME_PATTERN`]) and configuration
/// `value` ([`wire::CONFIG_VALUE_PATTERN`]).
fn with_domain_patterns(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{RefOr, Schema};
    let declared = [
        ("NewProject", "name", wire::NAME_PATTERN),
        ("NewStage", "name", wire::NAME_PATTERN),
        ("StagePatch", "name", wire::NAME_PATTERN),
        ("ConfigInput", "value", wire::CONFIG_VALUE_PATTERN),
    ];
    let schemas = &mut doc.components.as_mut().expect("the document has components").schemas;
    for (body, field, pattern) in declared {
        let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(body) else {
            panic!("the OpenAPI document has no request body {body}");
        };
        match object.properties.get_mut(field) {
            Some(RefOr::T(Schema::Object(property))) => property.pattern = Some(pattern.to_owned()),
            _ => panic!("the OpenAPI document's {body} has no plain `{field}`"),
        }
    }
    doc
}

fn openapi_router() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::projects::router())
        .merge(routes::stages::router())
        .merge(routes::lifecycle::router())
        .merge(routes::builds::router())
        .merge(routes::releases::router())
        .merge(routes::promote::router())
        .merge(routes::components::router())
        .merge(routes::live::router())
        .merge(routes::metrics::router())
        .merge(routes::kubernetes::router())
        .merge(routes::events::router())
        .merge(routes::config::router())
        .merge(routes::settings::router())
        .merge(routes::access::router())
        .merge(routes::sharing::router())
}

async fn unknown_route() -> problem::ApiError {
    problem::ApiError(Error::not_found("There is no such API route. See /api/v1/openapi.json."))
}

fn created<T: serde::Serialize>(location: String, body: T) -> impl IntoResponse {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body))
}
