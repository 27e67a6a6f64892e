//! The administrator's settings: retention of archived stages and resource limits per type; how
//! components are isolated (the banner when they are not).

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{Isolation, LimitsPolicy, RetentionPolicy};
#[cfg(feature = "ssr")]
use pergola_domain::{Limit, StageType};

#[server]
pub async fn get_retention() -> Result<RetentionPolicy, AppError> {
    answer(services()?.retention().await)
}

#[server]
pub async fn set_retention(dev: String, qa: String, prod: String) -> Result<RetentionPolicy, AppError> {
    let policy = answer(RetentionPolicy::parse(&dev, &qa, &prod))?;
    answer(services()?.set_retention(policy).await)
}

/// The resource limits of each stage type.
#[server]
pub async fn get_limits() -> Result<LimitsPolicy, AppError> {
    answer(services()?.limits().await)
}

/// Saves the limits typed on the admin page: `values` holds, for DEV, QA and PROD in turn, the
/// text of each limit in the order of `Limit::ALL`.
#[server]
pub async fn set_limits(values: Vec<String>) -> Result<LimitsPolicy, AppError> {
    let count = StageType::ALL.len() * Limit::ALL.len();
    if values.len() != count {
        return answer(Err(pergola_domain::Error::validation("limits", format!("Expected {count} values."))));
    }
    let policy = answer(LimitsPolicy::parse(|t, limit| {
        let (row, column) = (
            StageType::ALL.iter().position(|x| *x == t).unwrap_or_default(),
            Limit::ALL.iter().position(|x| *x == limit).unwrap_or_default(),
        );
        values[row * Limit::ALL.len() + column].clone()
    }))?;
    answer(services()?.set_limits(policy).await)
}

/// How components are sandboxed and limited (`None` when this server runs nothing, and for
/// nobody signed in: the sign-in pages keep their status).
#[server]
pub async fn get_isolation() -> Result<Option<Isolation>, AppError> {
    if super::caller().is_none() {
        return Ok(None);
    }
    Ok(services()?.isolation())
}
