//! Metrics: a stage's charts as JSON, and `/metrics` for Prometheus.

use super::StagePath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pergola_core::Services;
use pergola_domain::metrics::{MetricsWindow, StageMetrics};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(stage_metrics))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParam {
    /// `1h` (the default: a point every 10 s) or `24h` (a point every 5 minutes).
    #[param(pattern = "^(1h|24h)$")]
    pub window: Option<String>,
}

/// A stage's components over the last hour or day: CPU (percent of one core), memory, and for
/// services the requests the share-link proxy forwarded, their errors (5xx) and latency
/// (p50, p95). Kept in the server's memory: a restart starts the charts again.
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/metrics", tag = "releases",
    params(StagePath, WindowParam),
    responses(
        (status = 200, description = "Each component's points, oldest first", body = StageMetrics),
        (status = 400, description = "A window other than 1h or 24h (a problem), or a query string that cannot be read at all, e.g. `window` twice (a plain-text message)",
            content((String = "text/plain"), (Problem = "application/problem+json"))),
        (status = 404, description = "No such project or stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stage_metrics(
    User(s): User,
    Path(p): Path<StagePath>,
    Query(q): Query<WindowParam>,
) -> ApiResult<Json<StageMetrics>> {
    let window = q.window.as_deref().map(MetricsWindow::parse).transpose()?.unwrap_or_default();
    Ok(Json(s.stage_metrics(&p.project, &p.stage, window).await?))
}

/// `GET /metrics`: the Prometheus text exposition (administrators' tokens).
pub async fn prometheus(User(s): User) -> ApiResult<Response> {
    let text = s.prometheus_metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
