#![recursion_limit = "256"]
//! The Pergola Stages dashboard: routes, pages, components and server functions.
//!
//! Pages render on the server (`ssr`) and hydrate in the browser (`hydrate`). All data goes
//! through the server functions in [`api`], which are thin shims over `pergola_core::Services`.
//!
//! Where things live:
//! - the routes: [`App`] below; the URLs the pages link to: [`paths`];
//! - pages: one module per page in [`pages`] (`pages/home.rs`, `pages/admin.rs`, …). A page
//!   with sections only it uses is a folder: the page in `pages/<page>/mod.rs`, each section
//!   beside it (e.g. `pages/stage/release_section.rs`, `pages/project/new_stage_dialog.rs`);
//! - shared components, used by several pages: [`components`], one file per piece (header,
//!   badges, fields, modal, errors, `ui` classes, `derived_id`), all re-exported from
//!   `components`;
//! - server functions: [`api`], one file per topic (`projects`, `stages`, `releases`, `config`,
//!   `settings`, `demo`), all re-exported from `api`;
//! - the wire error of every server function: [`error`].

// The server renders with `ssr`, the browser hydrates with `hydrate`; one build with both makes
// a server that panics on every page ("spawn_local called from outside of a task::LocalSet").
#[cfg(all(feature = "ssr", feature = "hydrate"))]
compile_error!(
    "the `ssr` and `hydrate` features of `app` cannot be built together: build the server with \
     `cargo build -p server` (or plain `cargo build`, which leaves the wasm frontend out) and the \
     frontend with cargo-leptos"
);

pub mod api;
pub mod components;
pub mod error;
pub mod pages;

use components::{Header, NotFound};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags};
use leptos_router::{
    components::{Route, Router, Routes},
    lazy_route, path, Lazy, LazyRoute, SsrMode,
};
use pages::{
    AccountPage, ActivityPage, AdminPage, BuildsPage, ComparePage, HomePage, InvitePage, LoginPage, MembersPage,
    ProjectPage, SetupPage, StagePage, StageSettingsPage,
};

/// The dashboard's URLs, in one place.
pub mod paths {
    pub fn project(project: &str) -> String {
        format!("/projects/{project}")
    }

    pub fn stage(project: &str, stage: &str) -> String {
        format!("/projects/{project}/stages/{stage}")
    }

    pub fn stage_settings(project: &str, stage: &str) -> String {
        format!("/projects/{project}/stages/{stage}/settings")
    }

    /// The live stream of what changes in a project.
    pub fn api_project_changes(project: &str) -> String {
        format!("/api/v1/projects/{project}/changes")
    }

    /// The live stream of what changes on a stage (and its new output).
    pub fn api_stage_changes(project: &str, stage: &str) -> String {
        format!("/api/v1/projects/{project}/stages/{stage}/changes")
    }

    /// A component's output as text, to download.
    pub fn api_component_log_text(project: &str, stage: &str, component: &str) -> String {
        format!("/api/v1/projects/{project}/stages/{stage}/components/{component}/logs?format=text")
    }
}

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HashedStylesheet options=options.clone() id="pergola"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

/// Pages whose code the browser loads when one is first shown (each a chunk of the wasm, split
/// by `cargo leptos build --split`): the first visit downloads only the sign-in page and what
/// every page shares.
macro_rules! lazy_pages {
    ($($route:ident => $page:ident),* $(,)?) => {$(
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    )*};
}

lazy_pages!(
    HomeRoute => HomePage,
    AdminRoute => AdminPage,
    AccountRoute => AccountPage,
    MembersRoute => MembersPage,
    ActivityRoute => ActivityPage,
    InviteRoute => InvitePage,
    SetupRoute => SetupPage,
    ProjectRoute => ProjectPage,
    BuildsRoute => BuildsPage,
    CompareRoute => ComparePage,
    StageRoute => StagePage,
    StageSettingsRoute => StageSettingsPage,
);

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Every route renders completely before it is sent, so a missing project or stage
    // answers with HTTP 404 and a shared link works as a cold page load.
    view! {
        <Router>
            <Header/>
            <main class="mx-auto max-w-6xl px-6 py-8">
                <Routes fallback=|| view! { <NotFound message="There is no page at this address."/> }>
                    <Route path=path!("/") view={Lazy::<HomeRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view={Lazy::<AdminRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/account") view={Lazy::<AccountRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=path!("/projects/:project/members")
                        view={Lazy::<MembersRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("/projects/:project/activity")
                        view={Lazy::<ActivityRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/login") view=LoginPage/>
                    <Route path=path!("/invite/:token") view={Lazy::<InviteRoute>::new()}/>
                    <Route path=path!("/setup") view={Lazy::<SetupRoute>::new()}/>
                    <Route path=path!("/projects/:project") view={Lazy::<ProjectRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=path!("/projects/:project/builds")
                        view={Lazy::<BuildsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("/projects/:project/compare")
                        view={Lazy::<CompareRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("/projects/:project/stages/:stage")
                        view={Lazy::<StageRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("/projects/:project/stages/:stage/settings")
                        view={Lazy::<StageSettingsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                </Routes>
            </main>
        </Router>
    }
}
