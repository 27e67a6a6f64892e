//! `/projects/{project}`: the stage cards, "+ NEW STAGE" and the archived stages.

use super::param;
use crate::api::{get_overview, RestoreStage};
use crate::components::archived_list::ArchivedList;
use crate::components::new_stage_dialog::NewStageDialog;
use crate::components::stage_card::StageCard;
use crate::components::{loading, PageError};
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{ProjectOverview, Stage};

#[component]
pub fn ProjectPage() -> impl IntoView {
    let project = param("project");
    let restore = ServerAction::<RestoreStage>::new();
    let created = RwSignal::new(None::<Stage>);
    let overview = Resource::new(
        move || (project.get(), created.get().map(|s| s.id), restore.version().get()),
        |(project, _, _)| get_overview(project),
    );
    let dialog_open = RwSignal::new(false);
    view! {
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <ProjectView overview dialog_open restore created/> }.into_any(),
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
    dialog_open: RwSignal<bool>,
    restore: ServerAction<RestoreStage>,
    created: RwSignal<Option<Stage>>,
) -> impl IntoView {
    let ProjectOverview { project, stages, archived, retention, summaries } = overview;
    let restored = move || restore.value().get().and_then(Result::ok);
    let announcement = move || {
        restored()
            .map(|s| format!("Stage '{}' was restored.", s.name))
            .or_else(|| created.get().map(|s| format!("Stage '{}' was created.", s.name)))
    };
    let empty = stages.is_empty();
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
                </p>
            </div>
            <button
                type="button"
                class="rounded-md bg-emerald-700 px-4 py-2 text-sm font-bold tracking-wide text-white shadow-sm hover:bg-emerald-800"
                aria-haspopup="dialog"
                on:click=move |_| dialog_open.set(true)
            >
                "+ NEW STAGE"
            </button>
        </div>
        <p role="status" class="mt-4 min-h-5 text-sm text-emerald-800">{announcement}</p>
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
                <ul aria-label="Stages" class="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
                    {stages
                        .clone()
                        .into_iter()
                        .map(|stage| {
                            let summary = summaries.get(&stage.id).cloned().unwrap_or_default();
                            view! { <StageCard stage summary/> }
                        })
                        .collect_view()}
                </ul>
            </Show>
        </section>
        <ArchivedList archived retention restore/>
    }
    .into_any()
}
