//! What runs on a stage: its components and their logs.

use super::{ComponentPath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use pergola_core::Services;
use pergola_domain::logs::{format_line, LogFormat, LogParams, LogQuery};
use pergola_domain::runtime::{ComponentStatus, LogLine};
use std::convert::Infallible;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_components)).routes(routes!(component_logs))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "Each component's state, health and restarts", body = [ComponentStatus]),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_components(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Json<Vec<ComponentStatus>>> {
    Ok(Json(s.components(&p.project, &p.stage).await?))
}

/// A component's last output lines (at most the 500 it keeps), oldest first: those `since`
/// an age or a time, the last `tail`, those after line `after`; as JSON or, with
/// `format=text`, as text with control characters escaped. With `follow=true` the answer goes
/// on: each new line as it is printed (`application/x-ndjson`: one line object per line, or
/// text), also across restarts and releases, until the component has been gone for 5 s, the
/// caller may no longer read the stage (signed out, token revoked, role changed), the server
/// stops, or 15 minutes have passed (go on with `after` = the last line's `seq`).
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/components/{component}/logs", tag = "releases",
    params(ComponentPath, LogParams),
    responses(
        (status = 200, description = "The component's output lines", body = [LogLine],
            content((Vec<LogLine> = "application/json"), (String = "text/plain"), (String = "application/x-ndjson"))),
        (status = 400, description = "A bad parameter: since, tail, after, follow or format (a problem), or a query string that cannot be read at all, e.g. a parameter twice (a plain-text message)",
            content((String = "text/plain"), (Problem = "application/problem+json"))),
        (status = 404, description = "No such live stage", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "With `follow=true`: the caller has as many live streams open as one user may (24)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn component_logs(
    User(s): User,
    Path(p): Path<ComponentPath>,
    Query(params): Query<LogParams>,
) -> ApiResult<Response> {
    let query = LogQuery::parse(&params, chrono::Utc::now())?;
    let text = query.format == LogFormat::Text;
    // One line of output per line of the answer: printed as text, or a JSON object (NDJSON).
    let encode = move |lines: Vec<LogLine>| -> Bytes {
        let mut out = String::new();
        for l in &lines {
            if text {
                out += &format_line(l, true);
            } else {
                out += &serde_json::to_string(l).unwrap_or_default();
            }
            out.push('\n');
        }
        Bytes::from(out)
    };
    if !query.follow {
        let lines = s.logs_matching(&p.project, &p.stage, &p.component, &query).await?;
        return Ok(if text {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], encode(lines)).into_response()
        } else {
            Json(lines).into_response()
        });
    }
    let (first, follow) = s.follow_logs(&p.project, &p.stage, &p.component, &query).await?;
    let first = encode(first);
    let rest = futures_util::stream::unfold((follow, encode), |(mut follow, encode)| async move {
        let lines = follow.next().await?;
        // Nothing printed for a while: an empty line, so that a client gone away is noticed
        // (its stream then ends and gives its place back).
        let chunk = if lines.is_empty() { Bytes::from_static(b"\n") } else { encode(lines) };
        Some((Ok::<_, Infallible>(chunk), (follow, encode)))
    });
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(first) }).chain(rest);
    let content_type = if text { "text/plain; charset=utf-8" } else { "application/x-ndjson" };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Each line is sent as it comes: not held back to be compressed in blocks.
            (header::CONTENT_ENCODING, "identity"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
