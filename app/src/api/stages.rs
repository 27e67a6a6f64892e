//! Stages: ID check, create, read, update, suspend / resume, delete and restore.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{IdCheck, Stage};

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
    let stage_type = answer(pergola_domain::StageType::parse(&stage_type))?;
    answer(services()?.create_stage(&project, &name, stage_type, pergola_domain::typed_id(&stage_id)).await)
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
    let update = pergola_domain::wire::StageUpdate {
        name: Some(name),
        stage_type: Some(answer(pergola_domain::StageType::parse(&stage_type))?),
        grace_secs: Some(answer(pergola_domain::parse_grace(&grace_secs))?),
    };
    answer(services()?.update_stage(&project, &stage, update).await)
}

#[server]
pub async fn suspend_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.suspend_stage(&project, &stage).await)
}

#[server]
pub async fn resume_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.resume_stage(&project, &stage).await)
}

/// The user must type the Stage ID to confirm (the dashboard's rule; the services and the
/// REST API delete without it).
#[server]
pub async fn delete_stage(project: String, stage: String, confirm: String) -> Result<Stage, AppError> {
    let s = services()?;
    let current = answer(s.get_stage(&project, &stage).await)?;
    answer(pergola_domain::confirm_deletion(&current.id, &confirm))?;
    answer(s.delete_stage(&project, &stage).await)
}

#[server]
pub async fn restore_stage(project: String, stage: String) -> Result<Stage, AppError> {
    answer(services()?.restore_stage(&project, &stage).await)
}
