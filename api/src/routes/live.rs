//! Live streams as server-sent events: what changed in a project, or on one stage. Each event
//! only says *that* something changed (`ready`, `change`, `output`); the page reads what it
//! shows again through the API with the caller's permissions. A stream ends when the server
//! stops, when the caller may no longer read what it shows (checked every 10 s, and at once
//! when they sign out, their token is revoked, they are disabled or a role changes), and after
//! 15 minutes — `EventSource` clients open a new one, signing in again.

use super::{ProjectPath, StagePath};
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use pergola_core::services::{Note, Watch};
use pergola_core::Services;
use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(project_changes)).routes(routes!(stage_changes))
}

/// What changed in a project — a stage created, deleted, suspended, resumed, deployed, a
/// component started, crashed or restarted, a member added — as server-sent events: `ready`
/// when the stream opens (read what you show), then `change` (read it again). Comments keep
/// the connection alive every 15 s.
#[utoipa::path(get, path = "/api/v1/projects/{project}/changes", tag = "stages",
    params(ProjectPath),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `event: ready`, then `event: change` at each change", body = String, content_type = "text/event-stream"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller has as many live streams open as one user may (24); `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn project_changes(
    User(s): User,
    Path(p): Path<ProjectPath>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    Ok(sse(s.watch(&p.project, None).await?))
}

/// What changed on one stage (live or archived) — status, components, health, restarts,
/// events, releases — and new output of its components, as server-sent events: `ready`, then
/// `change`, `output` or `metrics` (every 10 s while it runs).
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/changes", tag = "stages",
    params(StagePath),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `event: ready`, then `event: change` or `event: output`", body = String, content_type = "text/event-stream"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller has as many live streams open as one user may (24); `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project or stage", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stage_changes(
    User(s): User,
    Path(p): Path<StagePath>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    Ok(sse(s.watch(&p.project, Some(&p.stage)).await?))
}

fn sse(watch: Watch) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = match watch.next().await? {
            // A client that lost the stream tries again after a second (it backs off further
            // itself while the server is away).
            Note::Ready => Event::default().event("ready").data("{}").retry(Duration::from_secs(1)),
            Note::Changed => Event::default().event("change").data("{}"),
            Note::Output => Event::default().event("output").data("{}"),
            Note::Metrics => Event::default().event("metrics").data("{}"),
        };
        Some((Ok(event), watch))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
