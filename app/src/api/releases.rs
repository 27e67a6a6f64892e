//! Builds, releases (deploy, redeploy) and what runs on a stage.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::logs::OutputPart;
pub use pergola_domain::StageActivity;
use pergola_domain::{Build, BuildListing, Release, StageComparison};

#[server]
pub async fn list_builds(project: String) -> Result<Vec<Build>, AppError> {
    answer(services()?.builds(&project).await)
}

/// The Builds page: each build with the stages whose current release runs it. (Builds are
/// uploaded by the page straight to the REST API, for the upload's progress.)
#[server]
pub async fn project_builds(project: String) -> Result<Vec<BuildListing>, AppError> {
    answer(services()?.build_listing(&project).await)
}

#[server]
pub async fn deploy(project: String, stage: String, build: i64) -> Result<Release, AppError> {
    answer(services()?.deploy(&project, &stage, build).await)
}

#[server]
pub async fn redeploy(project: String, stage: String, release: i64) -> Result<Release, AppError> {
    answer(services()?.redeploy(&project, &stage, release).await)
}

#[server]
pub async fn stage_runtime(project: String, stage: String) -> Result<StageActivity, AppError> {
    answer(services()?.stage_activity(&project, &stage).await)
}

/// What the stage page shows of its components' output: with `components` and `after` (the
/// number of the last line shown of each), only the new lines; without, each component's
/// newest lines.
#[server]
pub async fn stage_output(
    project: String,
    stage: String,
    #[server(default)] components: Vec<String>,
    #[server(default)] after: Vec<u64>,
) -> Result<Vec<OutputPart>, AppError> {
    if components.len() != after.len() {
        return Err(pergola_domain::Error::malformed("components and after name the same components.").into());
    }
    let after: Vec<(String, u64)> = components.into_iter().zip(after).collect();
    answer(services()?.stage_output(&project, &stage, &after).await)
}

/// Where a stage may be promoted, the next type first, each with what would change there.
#[server]
pub async fn promotion_options(project: String, stage: String) -> Result<Vec<StageComparison>, AppError> {
    answer(services()?.promotion_options(&project, &stage).await)
}

/// Deploys the build stage `from` runs to stage `to`, with `to`'s configuration.
#[server]
pub async fn promote_stage(project: String, from: String, to: String) -> Result<Release, AppError> {
    answer(services()?.promote(&project, &from, &to).await)
}

/// How stage `from` differs from stage `to`.
#[server]
pub async fn compare_stages(project: String, from: String, to: String) -> Result<StageComparison, AppError> {
    answer(services()?.compare_stages(&project, &from, &to).await)
}

/// A new stage like `stage`: its type, configuration and grace period (and its build, with
/// `deploy`).
#[server]
pub async fn duplicate_stage(
    project: String,
    stage: String,
    name: String,
    deploy: bool,
    with_storage: bool,
) -> Result<pergola_domain::Stage, AppError> {
    let copy = pergola_core::services::Duplicate { deploy, storage: with_storage };
    answer(services()?.duplicate_stage(&project, &stage, &name, None, copy).await)
}

/// A stage's metrics in a window (`1h` or `24h`).
#[server]
pub async fn stage_metrics(
    project: String,
    stage: String,
    window: String,
) -> Result<pergola_domain::metrics::StageMetrics, AppError> {
    let window = pergola_domain::metrics::MetricsWindow::parse(&window).map_err(AppError)?;
    answer(services()?.stage_metrics(&project, &stage, window).await)
}
