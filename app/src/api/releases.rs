//! Builds, releases (deploy, redeploy) and what runs on a stage.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::{Build, Release, Stage};
use serde::{Deserialize, Serialize};

/// What the stage page shows of what runs: releases (newest first), components and their
/// last output lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageActivity {
    /// The stage as it is now (its status changes while it is suspending).
    pub stage: Stage,
    pub events: Vec<pergola_domain::StageEvent>,
    pub releases: Vec<Release>,
    pub components: Vec<ComponentStatus>,
    pub logs: Vec<(String, Vec<LogLine>)>,
    pub links: Vec<pergola_domain::share::ShareLink>,
}

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
    let s = services()?;
    let current = answer(s.get_stage(&project, &stage).await)?;
    let events = answer(s.events(&project, &stage).await)?;
    let releases = answer(s.releases(&project, &stage).await)?;
    let components = answer(s.components(&project, &stage).await)?;
    let mut logs = Vec::new();
    for c in &components {
        let mut lines = answer(s.logs(&project, &stage, &c.name).await)?;
        let keep = lines.len().saturating_sub(30);
        logs.push((c.name.clone(), lines.split_off(keep)));
    }
    let links = answer(s.share_links(&project, &stage).await)?;
    Ok(StageActivity { stage: current, events, releases, components, logs, links })
}
