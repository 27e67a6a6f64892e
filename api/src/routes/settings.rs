//! Administration: the retention of archived stages, the resource limits per stage type, and how
//! components are isolated.

use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::Body;

use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::{LimitsInput, RetentionInput};
use pergola_domain::{Error, Isolation, LimitsPolicy, RetentionPolicy};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(get_retention, set_retention))
        .routes(routes!(get_limits, set_limits))
        .routes(routes!(get_isolation))
}

#[utoipa::path(get, path = "/api/v1/settings/retention", tag = "admin",
    responses((status = 200, description = "The retention policy in force", body = RetentionPolicy)))]
async fn get_retention(User(s): User) -> ApiResult<Json<RetentionPolicy>> {
    Ok(Json(s.retention().await?))
}

#[utoipa::path(put, path = "/api/v1/settings/retention", tag = "admin", request_body = RetentionInput,
    responses(
        (status = 200, description = "Saved; applies to stages deleted from now on", body = RetentionPolicy),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value out of range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_retention(User(s): User, Body(r): Body<RetentionInput>) -> ApiResult<Json<RetentionPolicy>> {
    Ok(Json(s.set_retention(r.parse()?).await?))
}

#[utoipa::path(get, path = "/api/v1/settings/limits", tag = "admin",
    responses((status = 200, description = "The resource limits of each stage type's components", body = LimitsPolicy)))]
async fn get_limits(User(s): User) -> ApiResult<Json<LimitsPolicy>> {
    Ok(Json(s.limits().await?))
}

#[utoipa::path(put, path = "/api/v1/settings/limits", tag = "admin", request_body = LimitsInput,
    responses(
        (status = 200, description = "Saved; applies to components started from now on", body = LimitsPolicy),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value out of range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_limits(User(s): User, Body(l): Body<LimitsInput>) -> ApiResult<Json<LimitsPolicy>> {
    Ok(Json(s.set_limits(l.parse()?).await?))
}

#[utoipa::path(get, path = "/api/v1/settings/isolation", tag = "admin",
    responses(
        (status = 200, description = "How components are sandboxed and their limits enforced", body = Isolation),
        (status = 404, description = "This server runs no stages", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_isolation(User(s): User) -> ApiResult<Json<Isolation>> {
    Ok(Json(s.isolation().ok_or_else(|| Error::not_found("This server runs no stages."))?))
}
