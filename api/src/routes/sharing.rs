//! Who may open a stage's share links: its guest links (the visibility is a field of the
//! stage's PATCH).

use super::StagePath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::Services;
use pergola_domain::share::{CreatedGuestLink, GuestLink};
use pergola_domain::wire::NewGuestLink;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_links, create_link)).routes(routes!(revoke_link))
}

/// `/projects/{project}/stages/{stage}/links/{id}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinkPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Stage ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub stage: String,
    /// Guest link ID
    pub id: String,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/links", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "The stage's guest links, newest first, revoked and expired ones included (never their secret)", body = [GuestLink]),
        (status = 404, description = "No such stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_links(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<GuestLink>>> {
    Ok(Json(s.list_guest_links(&p.project, &p.stage).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/stages/{stage}/links", tag = "stages", request_body = NewGuestLink,
    params(StagePath),
    responses(
        (status = 201, description = "Created: the guest URL and its secret, shown this once", body = CreatedGuestLink),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The link must last 1 to 8760 hours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_link(
    User(s): User,
    Path(p): Path<StagePath>,
    Body(n): Body<NewGuestLink>,
) -> ApiResult<impl IntoResponse> {
    let link = s.create_guest_link(&p.project, &p.stage, n.expires_in()?).await?;
    Ok(created(format!("/api/v1/projects/{}/stages/{}/links/{}", p.project, p.stage, link.id), link))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/stages/{stage}/links/{id}", tag = "stages",
    params(LinkPath),
    responses(
        (status = 204, description = "Revoked: it stops working at once"),
        (status = 404, description = "No such stage, or no live guest link of that ID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_link(User(s): User, Path(p): Path<LinkPath>) -> ApiResult<StatusCode> {
    s.revoke_guest_link(&p.project, &p.stage, &p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
