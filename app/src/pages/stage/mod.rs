//! `/projects/{project}/stages/{stage}`: one stage, as a teammate opening a shared link sees it.

mod metrics_section;
mod output_section;
mod promote_section;
mod release_section;

use super::param;
use crate::api::get_stage;
use crate::components::{loading, use_live, OfflineNotice, PageError, StatusBadge, TypeBadge};
use crate::paths;
use leptos::prelude::*;
use leptos_meta::Title;
use metrics_section::MetricsSection;
use pergola_domain::{format_time, Stage};
use promote_section::PromoteSection;
use release_section::ReleaseSection;

#[component]
pub fn StagePage() -> impl IntoView {
    let project = param("project");
    let stage = param("stage");
    // One resource for the page: the stage, who is looking, the builds to deploy and where
    // it may be promoted.
    // One live stream for the page: the Release section reads again at each change.
    let live = use_live(move || crate::paths::api_stage_changes(&project.get(), &stage.get()));
    let data = Resource::new(
        move || (project.get(), stage.get()),
        |(p, s)| async move {
            let stage = get_stage(p.clone(), s.clone()).await?;
            let actor = crate::api::project_actor(p.clone()).await?;
            let builds = crate::api::list_builds(p.clone()).await?;
            let options = crate::api::promotion_options(p, s).await?;
            Ok::<_, crate::error::AppError>((stage, actor, builds, options))
        },
    );
    view! {
        <OfflineNotice live/>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((stage, actor, builds, options)) => view! { <StageView stage actor builds options live/> }.into_any(),
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn StageView(
    stage: Stage,
    actor: pergola_domain::Actor,
    builds: Vec<pergola_domain::Build>,
    options: Vec<pergola_domain::StageComparison>,
    live: crate::components::Live,
) -> impl IntoView {
    let copied = RwSignal::new(false);
    let settings_href = paths::stage_settings(&stage.project_id, &stage.id);
    // Settings and Deploy are offered only to who may use them.
    let may_change = pergola_domain::permits(&actor, pergola_domain::Action::UpdateStage, Some(stage.stage_type));
    let may_deploy = pergola_domain::permits(&actor, pergola_domain::Action::Deploy, Some(stage.stage_type));
    // The Release section refreshes it while the page is open (a suspend settles later).
    let status = RwSignal::new(stage.status);
    let copy_link = move |_| {
        let window = window();
        if let Ok(href) = window.location().href() {
            let _ = window.navigator().clipboard().write_text(&href);
            copied.set(true);
        }
    };
    view! {
        <Title text=format!("{} · {} · Pergola Stages", stage.name, stage.project_id)/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=paths::project(&stage.project_id) class="hover:underline">{stage.project_id.clone()}</a>
            " / "
            <span>{stage.id.clone()}</span>
        </nav>
        <div class="mt-2 flex flex-wrap items-center justify-between gap-4">
            <div class="flex flex-wrap items-center gap-3">
                <h1 class="text-2xl font-bold text-slate-900">{stage.name.clone()}</h1>
                <TypeBadge stage_type=stage.stage_type/>
                {move || view! { <StatusBadge status=status.get()/> }}
            </div>
            <div class="flex gap-3">
                <button type="button" class="rounded-md border border-slate-300 bg-white px-4 py-2 text-sm font-semibold text-slate-700 hover:bg-slate-50" on:click=copy_link>
                    {move || if copied.get() { "Link copied" } else { "Copy link" }}
                </button>
                {may_change.then(|| view! {
                    <a
                        href=settings_href.clone()
                        class="rounded-md bg-slate-800 px-4 py-2 text-sm font-semibold text-white hover:bg-slate-900"
                    >
                        "Settings"
                    </a>
                })}
            </div>
        </div>
        <div class="mt-6 grid gap-6 lg:grid-cols-3">
            <section aria-labelledby="details-title" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm">
                <h2 id="details-title" class="font-semibold text-slate-900">"Details"</h2>
                <dl class="mt-3 grid grid-cols-[auto_1fr] gap-x-4 gap-y-2 text-sm">
                    <dt class="text-slate-500">"Stage ID"</dt>
                    <dd><code class="font-mono">{stage.id.clone()}</code></dd>
                    <dt class="text-slate-500">"Type"</dt>
                    <dd>{stage.stage_type.label()}</dd>
                    <dt class="text-slate-500">"Status"</dt>
                    <dd>{move || status.get().as_str()}</dd>
                    <dt class="text-slate-500">"Grace period"</dt>
                    <dd>{format!("{} s", stage.grace_secs)}</dd>
                    <dt class="text-slate-500">"Created"</dt>
                    <dd>{format_time(stage.created_at)}</dd>
                    <dt class="text-slate-500">"Last change"</dt>
                    <dd>{format_time(stage.updated_at)}</dd>
                </dl>
            </section>
            <ReleaseSection project=stage.project_id.clone() stage=stage.id.clone() status builds=may_deploy.then_some(builds) live/>
            <PromoteSection project=stage.project_id.clone() stage=stage.id.clone() options actor/>
            <MetricsSection project=stage.project_id.clone() stage=stage.id.clone() live/>
        </div>
    }
}
