//! One module per page. A page with sections of its own is a folder: the page in
//! `<page>/mod.rs`, each section only it uses beside it. What several pages share lives in
//! [`crate::components`].

mod account;
mod activity;
mod admin;
mod builds;
mod compare;
mod home;
mod invite;
mod login;
mod members;
mod project;
mod setup;
mod stage;
mod stage_settings;

pub use account::AccountPage;
pub use activity::ActivityPage;
pub use admin::AdminPage;
pub use builds::BuildsPage;
pub use compare::ComparePage;
pub use home::HomePage;
pub use invite::InvitePage;
pub use login::LoginPage;
pub use members::MembersPage;
pub use project::ProjectPage;
pub use setup::SetupPage;
pub use stage::StagePage;
pub use stage_settings::StageSettingsPage;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// A route parameter as a reactive value ("" when absent).
pub(crate) fn param(name: &'static str) -> Memo<String> {
    let params = use_params_map();
    Memo::new(move |_| params.read().get(name).unwrap_or_default())
}
