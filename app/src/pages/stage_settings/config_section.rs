//! The Configuration section of a stage's settings: environment settings, secrets masked.

use crate::api::{get_config, SetConfig, UnsetConfig};
use crate::components::{loading, ui, ErrorNotice, TextField};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use pergola_domain::{format_time, ConfigEntry};

#[component]
pub fn ConfigSection(project: String, stage: String) -> impl IntoView {
    let set = ServerAction::<SetConfig>::new();
    let unset = ServerAction::<UnsetConfig>::new();
    let entries = Resource::new(
        {
            let (project, stage) = (project.clone(), stage.clone());
            move || (project.clone(), stage.clone(), set.version().get(), unset.version().get())
        },
        |(p, s, ..)| get_config(p, s),
    );
    let key = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    let secret = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Ok(_)) = set.value().get() {
            key.set(String::new());
            value.set(String::new());
            secret.set(false);
        }
    });
    let error = move || set.value().get().and_then(Result::err);
    let field_error = move |field: &'static str| Signal::derive(move || error().and_then(|e| e.message_for(field)));
    let other_error = move || {
        error()
            .filter(|e| !e.0.is_for("key") && !e.0.is_for("value"))
            .or_else(|| unset.value().get().and_then(Result::err))
    };
    let (p, s) = (project.clone(), stage.clone());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        set.dispatch(SetConfig {
            project: p.clone(),
            stage: s.clone(),
            key: key.get_untracked(),
            value: value.get_untracked(),
            secret: secret.get_untracked(),
        });
    };
    view! {
        <section aria-labelledby="config-title" class=ui::CARD>
            <h2 id="config-title" class="font-semibold text-slate-900">"Configuration"</h2>
            <p class="mt-2 text-sm text-slate-600">
                "Environment settings passed to every component of this stage. Changes apply with the stage's next release (redeploy). Secret values are never shown again after saving."
            </p>
            <Transition fallback=loading>
                {move || {
                    let (project, stage) = (project.clone(), stage.clone());
                    Suspend::new(async move {
                        match entries.await {
                            Ok(list) => view! { <ConfigTable list project stage unset/> }.into_any(),
                            Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        }
                    })
                }}
            </Transition>
            <form class="mt-4 grid gap-3 sm:grid-cols-[1fr_1fr_auto] sm:items-start" on:submit=on_submit novalidate>
                <TextField
                    id="config-key"
                    label="Key"
                    mono=true
                    placeholder="LOG_LEVEL"
                    value=key
                    on_input=move |v: String| key.set(v)
                    message=field_error("key")
                />
                <TextField
                    id="config-value"
                    label="Value"
                    input_type=Signal::derive(move || if secret.get() { "password" } else { "text" })
                    value=value
                    on_input=move |v: String| value.set(v)
                    message=field_error("value")
                />
                <div class="flex items-center gap-3 sm:pt-7">
                    <label class="flex items-center gap-2 text-sm text-slate-700">
                        <input type="checkbox" prop:checked=move || secret.get() on:change=move |ev| secret.set(event_target_checked(&ev))/>
                        "Secret"
                    </label>
                    <button type="submit" class=ui::PRIMARY disabled=move || set.pending().get()>"Save setting"</button>
                </div>
            </form>
            {move || other_error().map(|error| view! { <ErrorNotice error/> })}
        </section>
    }
    .into_any()
}

#[component]
fn ConfigTable(
    list: Vec<ConfigEntry>,
    project: String,
    stage: String,
    unset: ServerAction<UnsetConfig>,
) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="mt-4 text-sm text-slate-500">"No settings yet."</p> }.into_any();
    }
    view! {
        <table class="mt-4 w-full text-left text-sm" aria-label="Settings">
            <thead class="text-slate-500">
                <tr>
                    <th scope="col" class="py-1 font-medium">"Key"</th>
                    <th scope="col" class="py-1 font-medium">"Value"</th>
                    <th scope="col" class="py-1 font-medium">"Changed"</th>
                    <th scope="col" class="py-1"><span class="sr-only">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {list
                    .into_iter()
                    .map(|e| {
                        let (project, stage, key) = (project.clone(), stage.clone(), e.key.clone());
                        let label = format!("Remove {}", e.key);
                        view! {
                            <tr class="border-t border-slate-100" aria-label=e.key.clone()>
                                <td class="py-2 font-mono">{e.key.clone()}</td>
                                <td class="py-2 break-all">
                                    {match e.value {
                                        Some(v) => view! { <span class="font-mono">{v}</span> }.into_any(),
                                        None => view! { <span class="text-slate-500">"•••••• secret"</span> }.into_any(),
                                    }}
                                </td>
                                <td class="py-2 text-slate-500">{format_time(e.updated_at)}</td>
                                <td class="py-2 text-right">
                                    <button
                                        type="button"
                                        aria-label=label
                                        class="text-sm font-medium text-rose-700 hover:underline"
                                        on:click=move |_| {
                                            unset.dispatch(UnsetConfig { project: project.clone(), stage: stage.clone(), key: key.clone() });
                                        }
                                    >
                                        "Remove"
                                    </button>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
