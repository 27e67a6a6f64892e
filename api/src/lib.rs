//! The REST API: `/api/v1/…` JSON over the same [`Services`] as the dashboard — no rule is
//! written twice. Errors are `application/problem+json` ([`problem`]); the OpenAPI 3.1
//! document is generated from the handlers in [`routes`] and served at `/api/v1/openapi.json`.
//! Request bodies are the shared types of [`pergola_domain::wire`], which the CLI sends.

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

/// JSON request bodies whose rejections (bad JSON, wrong shape) are problems too.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = problem::ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
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
        (name = "admin", description = "Administration")
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The API's routes, to merge into the server's router.
pub fn router<S>(services: Services) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (router, doc) = openapi_router().split_for_parts();
    let doc = Arc::new(with_domain_patterns(doc));
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/api/v1", any(unknown_route))
        .route("/api/v1/{*rest}", any(unknown_route))
        .with_state(services)
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    with_domain_patterns(openapi_router().split_for_parts().1)
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
        .merge(routes::components::router())
        .merge(routes::events::router())
        .merge(routes::config::router())
        .merge(routes::settings::router())
}

async fn unknown_route() -> problem::ApiError {
    problem::ApiError(Error::not_found("There is no such API route. See /api/v1/openapi.json."))
}

fn created<T: serde::Serialize>(location: String, body: T) -> impl IntoResponse {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body))
}
