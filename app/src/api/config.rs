//! A stage's configuration: environment settings and secrets.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::ConfigEntry;

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
