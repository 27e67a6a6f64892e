//! Administration: the retention of archived stages.

use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::Body;

use axum::Json;
use pergola_core::Services;
use pergola_domain::wire::RetentionInput;
use pergola_domain::RetentionPolicy;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(get_retention, set_retention))
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
