//! Accounts in the dashboard: project members, the project's activity, users (administrators),
//! the signed-in user's password and API tokens.

#[cfg(feature = "ssr")]
use super::{answer, caller, services};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{Actor, AuditEntry, CreatedInvitation, CreatedToken, Member, TokenInfo, UserInfo};

/// Who the signed-in user is in `project` (role, administrator): which buttons to show.
#[server]
pub async fn project_actor(project: String) -> Result<pergola_domain::Actor, AppError> {
    answer(services()?.actor(&project).await)
}

/// Who is signed in (`None`: nobody), for the header.
#[server]
pub async fn current_user() -> Result<Option<pergola_domain::Me>, AppError> {
    // Signed out (the sign-in pages): nobody, and the page keeps its status.
    Ok(caller().map(|c| c.me()))
}

/// A project's members, and who is looking (owners get the forms).
#[server]
pub async fn list_members(project: String) -> Result<(Vec<Member>, Actor), AppError> {
    let s = services()?;
    let members = answer(s.members(&project).await)?;
    Ok((members, answer(s.actor(&project).await)?))
}

#[server]
pub async fn set_member(project: String, username: String, role: String) -> Result<Member, AppError> {
    let role = answer(pergola_domain::Role::parse(&role))?;
    answer(services()?.set_member(&project, &username, role, None).await)
}

#[server]
pub async fn remove_member(project: String, username: String) -> Result<(), AppError> {
    answer(services()?.remove_member(&project, &username).await)
}

/// The project's activity, newest first; empty filters match everything.
#[server]
pub async fn project_activity(
    project: String,
    stage: String,
    actor: String,
    kind: String,
) -> Result<Vec<AuditEntry>, AppError> {
    let some = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let filter = pergola_core::store::AuditFilter { stage_id: some(stage), actor: some(actor), kind: some(kind) };
    answer(services()?.project_activity(&project, filter, 200).await)
}

#[server]
pub async fn list_users() -> Result<Vec<UserInfo>, AppError> {
    answer(services()?.list_users().await)
}

#[server]
pub async fn create_user(username: String, password: String, admin: bool) -> Result<UserInfo, AppError> {
    answer(
        services()?.create_user(pergola_domain::wire::NewUser { username, password, admin, your_password: None }).await,
    )
}

/// `change`: `disable`, `enable`, `grant-admin`, `revoke-admin` or `reset-password` (with
/// `password`).
#[server]
pub async fn update_user(username: String, change: String, password: String) -> Result<UserInfo, AppError> {
    use pergola_domain::wire::UserPatch;
    let patch = match change.as_str() {
        "disable" => UserPatch { disabled: Some(true), ..Default::default() },
        "enable" => UserPatch { disabled: Some(false), ..Default::default() },
        "grant-admin" => UserPatch { admin: Some(true), ..Default::default() },
        "revoke-admin" => UserPatch { admin: Some(false), ..Default::default() },
        "reset-password" => UserPatch { password: Some(password), ..Default::default() },
        _ => return Err(AppError(pergola_domain::Error::malformed(format!("Unknown change '{change}'.")))),
    };
    answer(services()?.update_user(&username, patch).await)
}

#[server]
pub async fn list_tokens() -> Result<Vec<TokenInfo>, AppError> {
    answer(services()?.list_tokens().await)
}

/// `expires_in_days` may be empty: the token does not expire.
#[server]
pub async fn create_token(name: String, expires_in_days: String) -> Result<CreatedToken, AppError> {
    let days = match expires_in_days.trim() {
        "" => None,
        d => Some(d.parse::<u32>().map_err(|_| {
            AppError(pergola_domain::Error::validation("expires_in_days", "The expiry must be a number of days."))
        })?),
    };
    answer(services()?.create_token(&name, days, None).await)
}

#[server]
pub async fn revoke_token(name: String) -> Result<(), AppError> {
    answer(services()?.revoke_token(&name).await)
}

#[server]
pub async fn change_password(current: String, new: String) -> Result<(), AppError> {
    answer(services()?.change_password(&current, &new).await)
}

/// An invitation link; `project` may be empty (then `role` is ignored).
#[server]
pub async fn create_invitation(admin: bool, project: String, role: String) -> Result<CreatedInvitation, AppError> {
    let project = Some(project.trim().to_owned()).filter(|p| !p.is_empty());
    let role = match &project {
        Some(_) => Some(answer(pergola_domain::Role::parse(&role))?),
        None => None,
    };
    answer(
        services()?
            .create_invitation(pergola_domain::wire::NewInvitation { admin, project, role, your_password: None })
            .await,
    )
}
