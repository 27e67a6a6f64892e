//! What a stage's current release is on Kubernetes: the objects the Kubernetes runtime applies,
//! as multi-document YAML, each secret value redacted (none is opened).

use super::StagePath;
use crate::auth::User;
use crate::problem::{ApiResult, Problem};
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pergola_core::Services;
use pergola_domain::StageStatus;
use pergola_kubernetes::{Stage, REDACTED};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(stage_objects))
}

/// The Kubernetes objects of a stage's current release — namespace, priority class, the
/// release's configuration and build-download secrets, volumes, and a Deployment (and Service),
/// Job or CronJob per component — as multi-document YAML for review or `kubectl apply -f`.
/// Secret values are shown as `<redacted>`; a suspended stage's Deployments have 0 replicas
/// and its CronJobs are suspended.
#[utoipa::path(get, path = "/api/v1/projects/{project}/stages/{stage}/kubernetes", tag = "releases",
    params(StagePath),
    responses(
        (status = 200, description = "The objects, each a YAML document starting with `---`", body = String, content_type = "application/yaml"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project or live stage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stage has no release yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stage_objects(User(s): User, Path(p): Path<StagePath>) -> ApiResult<Response> {
    let (stage, spec) = s.current_spec(&p.project, &p.stage, REDACTED).await?;
    let suspended = matches!(stage.status, StageStatus::Suspended | StageStatus::Suspending);
    let cluster = s.cluster();
    let install = cluster.install.as_deref();
    let view = Stage { spec: &spec, suspended, grace_secs: stage.grace_secs, fetch_token: REDACTED, install };
    let text = pergola_kubernetes::to_yaml(&view, cluster);
    Ok(([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], text).into_response())
}
