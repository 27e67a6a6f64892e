//! The settings page's "Duplicate stage" section: a new stage like this one — its type,
//! configuration (secrets too, never shown) and grace period, optionally with its build — by
//! the "+ NEW STAGE" popup's ID rules; its storage when asked (the stage must be suspended).

use crate::api::DuplicateStage;
use crate::components::{ui, ErrorNotice, TextField};
use crate::paths;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use pergola_domain::Stage;

#[component]
pub fn DuplicateSection(stage: Stage) -> impl IntoView {
    let duplicate = ServerAction::<DuplicateStage>::new();
    let name = RwSignal::new(format!("{} copy", stage.name));
    let deploy = RwSignal::new(false);
    let with_storage = RwSignal::new(false);
    let result = duplicate.value();
    let error = move || result.get().and_then(Result::err);
    let name_error =
        Signal::derive(move || error().and_then(|e| e.message_for("name").or_else(|| e.message_for("id"))));
    let other_error = move || error().filter(|e| !e.0.is_for("name") && !e.0.is_for("id"));
    // Once created, the new stage's page.
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(created)) = result.get() {
            navigate(&paths::stage(&created.project_id, &created.id), Default::default());
        }
    });
    let (project, id) = (stage.project_id.clone(), stage.id.clone());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        duplicate.dispatch(DuplicateStage {
            project: project.clone(),
            stage: id.clone(),
            name: name.get_untracked(),
            deploy: deploy.get_untracked(),
            with_storage: with_storage.get_untracked(),
        });
    };
    view! {
        <section aria-labelledby="duplicate-title" class=ui::CARD>
            <h2 id="duplicate-title" class="font-semibold text-slate-900">"Duplicate stage"</h2>
            <p class="mt-1 text-sm text-slate-600">
                {format!(
                    "A new {} stage with this one's configuration (secrets included) and grace period; its storage only when asked.",
                    stage.stage_type.label()
                )}
            </p>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                <TextField
                    id="duplicate-name"
                    label="Name of the copy"
                    value=name
                    on_input=move |v: String| name.set(v)
                    message=name_error
                />
                <Check label="Deploy its current build too" value=deploy/>
                <Check label="Copy its storage too (suspend this stage first)" value=with_storage/>
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <button type="submit" class=ui::SECONDARY disabled=move || duplicate.pending().get()>
                    {move || if duplicate.pending().get() { "Duplicating…" } else { "Duplicate stage" }}
                </button>
            </form>
        </section>
    }
}

/// A labelled checkbox bound to `value`.
#[component]
fn Check(label: &'static str, value: RwSignal<bool>) -> impl IntoView {
    view! {
        <label class="flex items-center gap-2 text-sm text-slate-700">
            <input
                type="checkbox"
                class="h-4 w-4 rounded border-slate-300"
                prop:checked=move || value.get()
                on:change=move |ev| value.set(event_target_checked(&ev))
            />
            {label}
        </label>
    }
}
