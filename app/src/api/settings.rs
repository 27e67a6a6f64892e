//! The administrator's settings: retention of archived stages per type.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::RetentionPolicy;

#[server]
pub async fn get_retention() -> Result<RetentionPolicy, AppError> {
    answer(services()?.retention().await)
}

#[server]
pub async fn set_retention(dev: String, qa: String, prod: String) -> Result<RetentionPolicy, AppError> {
    let policy = answer(RetentionPolicy::parse(&dev, &qa, &prod))?;
    answer(services()?.set_retention(policy).await)
}
