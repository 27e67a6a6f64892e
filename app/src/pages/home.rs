//! `/`: all projects and the "New project" form.

use crate::api::{list_projects, CreateProject};
use crate::components::derived_id::DerivedId;
use crate::components::{loading, ui, ErrorNotice, TextField};
use crate::paths;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use pergola_domain::{format_time, IdKind, Project};

#[component]
pub fn HomePage() -> impl IntoView {
    let projects = Resource::new(|| (), |_| list_projects());
    view! {
        <Title text="Projects · Pergola Stages"/>
        <div class="grid gap-8 lg:grid-cols-[1fr_22rem]">
            <section aria-labelledby="projects-title">
                <h1 id="projects-title" class="text-2xl font-bold text-slate-900">"Projects"</h1>
                <p class="mt-1 text-sm text-slate-600">
                    "Each project holds the stages (dev, qa, prod, …) its application runs on."
                </p>
                <Suspense fallback=loading>
                    {move || Suspend::new(async move {
                        match projects.await {
                            Ok(list) => view! { <ProjectList list/> }.into_any(),
                            Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
            <NewProjectForm/>
        </div>
    }
}

#[component]
fn ProjectList(list: Vec<Project>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="mt-6 rounded-lg border border-dashed border-slate-300 p-8 text-center text-slate-600">
                "No projects yet. Create your first one with the form."
            </p>
        }
        .into_any();
    }
    view! {
        <ul aria-label="Projects" class="mt-6 grid gap-4 sm:grid-cols-2">
            {list
                .into_iter()
                .map(|p| {
                    view! {
                        <li class=ui::CARD>
                            <a href=paths::project(&p.id) class="text-base font-semibold text-slate-900 hover:underline">
                                {p.name.clone()}
                            </a>
                            <p class="mt-1 font-mono text-sm text-slate-600">{p.id.clone()}</p>
                            <p class="mt-2 text-xs text-slate-500">"Created " {format_time(p.created_at)}</p>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn NewProjectForm() -> impl IntoView {
    let form = DerivedId::new(IdKind::Project);
    let create = ServerAction::<CreateProject>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(project)) = create.value().get() {
            navigate(&paths::project(&project.id), Default::default());
        }
    });
    let error = move || create.value().get().and_then(Result::err);
    let field_error = move |field: &'static str| Signal::derive(move || error().and_then(|e| e.message_for(field)));
    let id_message = Signal::derive(move || form.local_error().or_else(|| field_error("project_id").get()));
    let other_error = move || error().filter(|e| !e.0.is_for("name") && !e.0.is_for("project_id"));
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        create.dispatch(CreateProject { name: form.name.get_untracked(), project_id: form.id.get_untracked() });
    };
    view! {
        <section aria-labelledby="new-project-title" class=format!("{} h-fit", ui::CARD)>
            <h2 id="new-project-title" class="text-lg font-semibold text-slate-900">"New project"</h2>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                <TextField
                    id="project-name"
                    label="Project name"
                    value=form.name
                    on_input=move |v: String| form.set_name(v)
                    message=field_error("name")
                />
                <TextField
                    id="project-id"
                    label="Project ID"
                    mono=true
                    value=form.id
                    on_input=move |v: String| form.set_id(v)
                    message=id_message
                />
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <button type="submit" class=ui::PRIMARY disabled=move || create.pending().get()>
                    "Create project"
                </button>
            </form>
        </section>
    }
}
