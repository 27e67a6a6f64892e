//! `/projects/{project}`: the stage cards, "+ NEW STAGE" and the archived stages.

mod archived_list;
mod new_stage_dialog;
mod stage_card;
mod stage_search;

use super::param;
use crate::api::{demo_available, get_overview, RestoreStage, TryDemo};
use crate::components::{loading, use_live, OfflineNotice, PageError};
use archived_list::ArchivedList;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use new_stage_dialog::NewStageDialog;
use pergola_domain::{permits, Action, StageType};
use pergola_domain::{ProjectOverview, Stage, StageQueryParams};
use stage_card::StageCard;
use stage_search::{StagePages, StageSearch};

#[component]
pub fn ProjectPage() -> impl IntoView {
    let project = param("project");
    // The search form's fields, from the URL (the page size is the page's own).
    let query = use_query_map();
    let params = Memo::new(move |_| {
        let q = query.read();
        StageQueryParams {
            q: q.get("q"),
            stage_type: q.get("type"),
            status: q.get("status"),
            sort: q.get("sort"),
            limit: None,
            cursor: q.get("cursor"),
        }
    });
    let restore = ServerAction::<RestoreStage>::new();
    let created = RwSignal::new(None::<Stage>);
    // Whatever changes in the project — here, in another tab, through the CLI or the
    // runtime — the page reads again (the live stream says when).
    let live = use_live(move || crate::paths::api_project_changes(&project.get()));
    let overview = Resource::new(
        move || {
            (
                project.get(),
                params.get(),
                created.get().map(|s| s.id),
                restore.version().get(),
                live.changes.get(),
                live.metrics.get(),
            )
        },
        |(project, params, ..)| async move {
            let overview = get_overview(project, params.clone()).await?;
            let demo = demo_available().await.unwrap_or(false);
            Ok::<_, crate::error::AppError>((overview, demo, params))
        },
    );
    let dialog_open = RwSignal::new(false);
    view! {
        <OfflineNotice live/>
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok((overview, demo, params)) => {
                        view! { <ProjectView overview params demo dialog_open restore created/> }.into_any()
                    }
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Transition>
        <NewStageDialog
            project=project
            open=dialog_open
            on_created=move |stage: Stage| created.set(Some(stage))
        />
    }
}

#[component]
fn ProjectView(
    overview: ProjectOverview,
    /// The search, filters, sort and page the stages were listed with.
    params: StageQueryParams,
    /// Whether to offer the demo application (first run: nothing deployed yet).
    demo: bool,
    dialog_open: RwSignal<bool>,
    restore: ServerAction<RestoreStage>,
    created: RwSignal<Option<Stage>>,
) -> impl IntoView {
    let ProjectOverview { project, stages, archived, retention, summaries, actor, matching, total, next } = overview;
    // Only what the user may do is offered (the server refuses the rest anyway).
    let can_create = permits(&actor, Action::CreateStage, Some(StageType::Dev));
    let can_restore = permits(&actor, Action::RestoreStage, None);
    let restored = move || restore.value().get().and_then(Result::ok);
    let announcement = move || {
        restored()
            .map(|s| format!("Stage '{}' was restored.", s.name))
            .or_else(|| created.get().map(|s| format!("Stage '{}' was created.", s.name)))
    };
    let empty = total == 0;
    let shown = stages.len();
    let created_link = move || {
        created.get().filter(|_| restored().is_none()).map(|s| {
            let href = crate::paths::stage(&s.project_id, &s.id);
            view! { <a href=href class="ml-2 text-sm text-emerald-700 underline">{format!("Open {}", s.name)}</a> }
        })
    };
    let first_run = demo
        && can_create
        && permits(&actor, Action::RegisterBuild, None)
        && summaries.values().all(|s| s.release.is_none());
    let try_demo = ServerAction::<TryDemo>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(url)) = try_demo.value().get() {
            navigate(&url, Default::default());
        }
    });
    let project_id = project.id.clone();
    view! {
        <Title text=format!("{} · Pergola Stages", project.name)/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <span>{project.id.clone()}</span>
        </nav>
        <div class="mt-2 flex flex-wrap items-end justify-between gap-4">
            <div>
                <h1 class="text-2xl font-bold text-slate-900">{project.name.clone()}</h1>
                <p class="mt-1 text-sm text-slate-600">
                    "Project ID " <code class="font-mono">{project.id.clone()}</code>
                    " · "
                    <a href=format!("{}/builds", crate::paths::project(&project.id)) class="text-emerald-700 underline">"Builds"</a>
                    " · "
                    <a href=format!("{}/members", crate::paths::project(&project.id)) class="text-emerald-700 underline">"Members"</a>
                    " · "
                    <a href=format!("{}/activity", crate::paths::project(&project.id)) class="text-emerald-700 underline">"Activity"</a>
                    " · "
                    <a href=format!("{}/compare", crate::paths::project(&project.id)) class="text-emerald-700 underline">"Compare stages"</a>
                </p>
            </div>
            <div class="flex gap-3">
                {first_run.then(|| view! {
                    <button
                        type="button"
                        class=crate::components::ui::SECONDARY
                        disabled=move || try_demo.pending().get()
                        on:click=move |_| { try_demo.dispatch(TryDemo { project: project_id.clone() }); }
                    >
                        {move || if try_demo.pending().get() { "Deploying the demo…" } else { "Try the demo app" }}
                    </button>
                })}
                {can_create.then(|| view! {
                    <button
                        type="button"
                        class="rounded-md bg-emerald-700 px-4 py-2 text-sm font-bold tracking-wide text-white shadow-sm hover:bg-emerald-800"
                        aria-haspopup="dialog"
                        on:click=move |_| dialog_open.set(true)
                    >
                        "+ NEW STAGE"
                    </button>
                })}
            </div>
        </div>
        {move || try_demo.value().get().and_then(Result::err).map(|error| view! { <div class="mt-3"><crate::components::ErrorNotice error/></div> })}
        <div class="mt-4 flex min-h-5 items-baseline">
            <p role="status" class="text-sm text-emerald-800">{announcement}</p>
            {created_link}
        </div>
        <section aria-labelledby="stages-title" class="mt-2">
            <h2 id="stages-title" class="sr-only">"Stages"</h2>
            <Show
                when=move || !empty
                fallback=|| view! {
                    <p class="rounded-lg border border-dashed border-slate-300 p-8 text-center text-slate-600">
                        "No stages yet. Most projects start with one DEV stage: press + NEW STAGE."
                    </p>
                }
            >
                <StageSearch project=project.id.clone() params=params.clone()/>
                <StagePages
                    project=project.id.clone()
                    params=params.clone()
                    shown
                    matching
                    total
                    next=next.clone()
                />
                {stages.is_empty().then(|| view! {
                    <p class="mt-4 rounded-lg border border-dashed border-slate-300 p-8 text-center text-slate-600">
                        "No stage matches. Change the search or the filters, or clear them."
                    </p>
                })}
                <ul aria-label="Stages" class="mt-4 grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
                    {stages
                        .clone()
                        .into_iter()
                        .map(|stage| {
                            let summary = summaries.get(&stage.id).cloned().unwrap_or_default();
                            view! { <StageCard stage summary actor/> }
                        })
                        .collect_view()}
                </ul>
            </Show>
        </section>
        <ArchivedList archived retention restore can_restore/>
    }
    .into_any()
}
