//! Server functions: thin shims over `pergola_core::Services`, which hold every rule.

use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::{Build, ConfigEntry, IdCheck, Project, ProjectOverview, Release, RetentionPolicy, Stage};
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

#[cfg(feature = "ssr")]
fn services() -> Result<pergola_core::Services, AppError> {
    use_context::<pergola_core::Services>().ok_or_else(|| {
        tracing::error!("Services missing from the request context");
        refuse(pergola_domain::Error::internal())
    })
}

/// Turns a refusal into the wire error and sets the response's HTTP status to match.
#[cfg(feature = "ssr")]
fn refuse(e: pergola_domain::Error) -> AppError {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(crate::error::http_status(e.kind));
    }
    AppError(e)
}

/// Hands a service's result to the caller.
#[cfg(feature = "ssr")]
fn answer<T>(result: Result<T, pergola_domain::Error>) -> Result<T, AppError> {
    result.map_err(refuse)
}

#[server]
pub async fn list_projects() -> Result<Vec<Project>, AppError> {
    answer(services()?.list_projects().await)
}

/// `project_id` may be empty: the ID is then derived from the name.
#[server]
pub async fn create_project(name: String, project_id: String) -> Result<Project, AppError> {
    answer(services()?.create_project(&name, Some(&project_id)).await)
}

#[server]
pub async fn get_overview(project: String) -> Result<ProjectOverview, AppError> {
    answer(services()?.project_overview(&project).await)
}

#[server]
pub async fn check_stage_id(project: String, stage_id: String) -> Result<IdCheck, AppError> {
    answer(services()?.check_stage_id(&project, &stage_id).await)
}

/// `stage_id` may be empty: the ID is then derived from the name.
#[server]
pub async fn create_stage(
    project: String,
    name: String,
    stage_type: String,
    stage_id: String,
) -> Result<Stage, AppError> {
    answer(services()?.create_stage(&project, &name, &stage_type, Some(&stage_id)).await)
}

#[server]
pub async fn get_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.get_stage(&project, &stage).await)
}

#[server]
pub async fn update_stage(
    project: String,
    stage: String,
    name: String,
    stage_type: String,
    grace_secs: String,
) -> Result<Stage, AppError> {
    answer(services()?.update_stage(&project, &stage, &name, &stage_type, Some(&grace_secs)).await)
}

#[server]
pub async fn suspend_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.suspend_stage(&project, &stage).await)
}

#[server]
pub async fn resume_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.resume_stage(&project, &stage).await)
}

#[server]
pub async fn delete_stage(project: String, stage: String, confirm: String) -> Result<Stage, AppError> {
    answer(services()?.delete_stage(&project, &stage, &confirm).await)
}

#[server]
pub async fn restore_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.restore_stage(&project, &stage).await)
}

#[server]
pub async fn get_retention() -> Result<RetentionPolicy, AppError> {
    answer(services()?.retention().await)
}

#[server]
pub async fn set_retention(dev: String, qa: String, prod: String) -> Result<RetentionPolicy, AppError> {
    answer(services()?.set_retention(&dev, &qa, &prod).await)
}

/// The stage's settings; secret values are never sent (they come back as `None`).
#[server]
pub async fn get_config(project: String, stage: String) -> Result<Vec<ConfigEntry>, AppError> {
    answer(services()?.config(&project, &stage).await)
}

#[server]
pub async fn set_config(
    project: String,
    stage: String,
    key: String,
    value: String,
    secret: bool,
) -> Result<ConfigEntry, AppError> {
    answer(services()?.set_config(&project, &stage, &key, &value, secret).await)
}

#[server]
pub async fn unset_config(project: String, stage: String, key: String) -> Result<(), AppError> {
    answer(services()?.unset_config(&project, &stage, &key).await)
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

/// Where the demo application's binary is; the server provides it when the binary is present.
#[derive(Clone, Debug)]
pub struct DemoApp {
    pub dir: String,
}

/// The demo's manifest: a web service (the runtime gives it a free port), a worker, a migrate
/// job and a report cron.
pub fn demo_manifest() -> String {
    r#"version = "demo"

[[component]]
name = "web"
kind = "service"
command = "./pergola-demo"
args = ["web"]
storage = ["data"]
health = { path = "/healthz", interval_secs = 5 }

[[component]]
name = "worker"
kind = "worker"
command = "./pergola-demo"
args = ["worker"]
storage = ["data"]

[[component]]
name = "migrate"
kind = "job"
command = "./pergola-demo"
args = ["migrate"]
storage = ["data"]

[[component]]
name = "report"
kind = "cron"
schedule = "*/5 * * * *"
command = "./pergola-demo"
args = ["report"]
storage = ["data"]
"#
    .to_owned()
}

/// Whether this server can deploy the demo application.
#[server]
pub async fn demo_available() -> Result<bool, AppError> {
    Ok(use_context::<DemoApp>().is_some())
}

/// First run: creates a DEV stage "Demo", registers the demo build and deploys it. Returns the
/// stage's URL.
#[server]
pub async fn try_demo(project: String) -> Result<String, AppError> {
    let s = services()?;
    let demo = use_context::<DemoApp>().ok_or_else(|| {
        refuse(pergola_domain::Error::invalid_state(
            "The demo application is not installed on this server (cargo build --release -p pergola-demo-app).",
        ))
    })?;
    let stage = match s.create_stage(&project, "Demo", "dev", None).await {
        Ok(stage) => stage,
        Err(e) if e.kind == pergola_domain::ErrorKind::StageIdTaken => {
            answer(s.create_stage(&project, "Demo", "dev", e.suggestion.as_deref()).await)?
        }
        Err(e) => return Err(refuse(e)),
    };
    let build = answer(s.register_build(&project, &demo_manifest(), &demo.dir).await)?;
    answer(s.deploy(&project, &stage.id, build.number).await)?;
    Ok(crate::paths::stage(&project, &stage.id))
}
