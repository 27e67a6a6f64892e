//! Sharing: who may open a stage's share links, and its guest links.

#[cfg(feature = "ssr")]
use super::{answer, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::share::{CreatedGuestLink, StageSharing};
use pergola_domain::Visibility;

#[server]
pub async fn get_sharing(project: String, stage: String) -> Result<StageSharing, AppError> {
    answer(services()?.sharing(&project, &stage).await)
}

/// `visibility`: `members` or `public`.
#[server]
pub async fn set_visibility(project: String, stage: String, visibility: String) -> Result<Visibility, AppError> {
    let visibility = answer(Visibility::parse(&visibility))?;
    answer(services()?.set_visibility(&project, &stage, visibility).await)
}

/// `hours`: how long the link lasts (1 to 8760).
#[server]
pub async fn create_guest_link(project: String, stage: String, hours: String) -> Result<CreatedGuestLink, AppError> {
    let hours: i64 = answer(
        hours
            .trim()
            .parse()
            .map_err(|_| pergola_domain::Error::validation("expires_in", "Choose how long the link lasts.")),
    )?;
    let expires_in = chrono::Duration::try_hours(hours).unwrap_or(chrono::Duration::MAX);
    answer(services()?.create_guest_link(&project, &stage, expires_in).await)
}

#[server]
pub async fn revoke_guest_link(project: String, stage: String, id: String) -> Result<(), AppError> {
    answer(services()?.revoke_guest_link(&project, &stage, &id).await)
}
