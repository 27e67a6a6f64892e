//! Builds, releases (deploy, redeploy) and what runs on a stage.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
pub use pergola_domain::StageActivity;
use pergola_domain::{Build, Release};

#[server]
pub async fn list_builds(project: String) -> Result<Vec<Build>, AppError> {
    answer(services()?.builds(&project).await)
}

#[server]
pub async fn register_build(project: String, manifest: String, workdir: String) -> Result<Build, AppError> {
    answer(services()?.register_build(&project, &manifest, &workdir).await)
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
