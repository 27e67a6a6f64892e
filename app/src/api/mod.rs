//! Server functions: thin shims over `pergola_core::Services`, which hold every rule. One
//! file per topic; everything is re-exported here, so callers use `crate::api::…`.

mod access;
mod config;
mod demo;
mod projects;
mod releases;
mod settings;
mod sharing;
mod stages;

pub use access::{
    change_password, create_invitation, create_token, create_user, current_user, list_members, list_tokens, list_users,
    project_activity, project_actor, remove_member, revoke_token, set_member, update_user, ChangePassword,
    CreateInvitation, CreateToken, CreateUser, CurrentUser, ListMembers, ListTokens, ListUsers, ProjectActivity,
    ProjectActor, RemoveMember, RevokeToken, SetMember, UpdateUser,
};
pub use config::{get_config, set_config, unset_config, GetConfig, SetConfig, UnsetConfig};
pub use demo::{demo_available, try_demo, DemoApp, DemoAvailable, TryDemo};
pub use projects::{
    create_project, get_overview, list_live_stages, list_projects, CreateProject, GetOverview, ListLiveStages,
    ListProjects,
};
pub use releases::{
    compare_stages, deploy, duplicate_stage, list_builds, project_builds, promote_stage, promotion_options, redeploy,
    stage_metrics, stage_output, stage_runtime, CompareStages, Deploy, DuplicateStage, ListBuilds, ProjectBuilds,
    PromoteStage, PromotionOptions, Redeploy, StageActivity, StageOutput, StageRuntime,
};
pub use settings::{
    get_isolation, get_limits, get_retention, set_limits, set_retention, GetIsolation, GetLimits, GetRetention,
    SetLimits, SetRetention,
};
pub use sharing::{
    create_guest_link, get_sharing, revoke_guest_link, set_visibility, CreateGuestLink, GetSharing, RevokeGuestLink,
    SetVisibility,
};
pub use stages::{
    check_stage_id, create_stage, delete_stage, get_stage, restore_stage, resume_stage, suspend_stage, update_stage,
    CheckStageId, CreateStage, DeleteStage, GetStage, RestoreStage, ResumeStage, SuspendStage, UpdateStage,
};

#[cfg(feature = "ssr")]
use crate::error::AppError;
#[cfg(feature = "ssr")]
use leptos::prelude::*;

/// Who is signed in for this request, if anyone (no side effect on the response).
#[cfg(feature = "ssr")]
fn caller() -> Option<pergola_core::services::Caller> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<pergola_core::services::Authenticated>().cloned())
        .and_then(|auth| auth.caller().cloned())
}

/// The services as the signed-in user of this request (the server's authentication middleware
/// put who it is in the request's extensions); 401 when nobody is signed in.
#[cfg(feature = "ssr")]
fn services() -> Result<pergola_core::services::Acting, AppError> {
    let services = use_context::<pergola_core::Services>().ok_or_else(|| {
        tracing::error!("Services missing from the request context");
        refuse(pergola_domain::Error::internal())
    })?;
    match caller() {
        Some(caller) => Ok(services.acting(caller)),
        None => Err(refuse(pergola_domain::Error::unauthenticated())),
    }
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
