//! The archived (deleted) stages at the bottom of the project page, restorable until due.

use crate::api::RestoreStage;
use crate::components::{ErrorNotice, TypeBadge};
use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{format_time, RetentionPolicy, Stage, StageType};

#[component]
pub fn ArchivedList(
    archived: Vec<Stage>,
    retention: RetentionPolicy,
    restore: ServerAction<RestoreStage>,
    /// Whether the user may restore stages (maintainers and up).
    can_restore: bool,
) -> impl IntoView {
    let error = move || restore.value().get().and_then(|r: Result<Stage, AppError>| r.err());
    let policy = StageType::ALL
        .iter()
        .map(|t| {
            let days = retention.days(*t);
            format!("{} {} day{}", t.label(), days, if days == 1 { "" } else { "s" })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let empty = archived.is_empty();
    view! {
        <section aria-labelledby="archived-title" class="mt-12">
            <h2 id="archived-title" class="text-lg font-semibold text-slate-900">"Archived stages"</h2>
            <p class="mt-1 text-sm text-slate-600">
                "Deleted stages are kept with their configuration and storage until their deletion date ("
                {policy}
                "), then deleted for good."
            </p>
            {move || error().map(|error| view! { <div class="mt-3"><ErrorNotice error/></div> })}
            <Show
                when=move || !empty
                fallback=|| view! { <p class="mt-4 text-sm text-slate-500">"No archived stages."</p> }
            >
                <table class="mt-4 w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-left text-sm">
                    <thead class="bg-slate-50 text-slate-600">
                        <tr>
                            <th scope="col" class="px-4 py-2 font-medium">"Stage"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Stage ID"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Type"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Archived"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Deleted for good on"</th>
                            <th scope="col" class="px-4 py-2"><span class="sr-only">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        {archived.clone().into_iter().map(|stage| view! { <ArchivedRow stage restore can_restore/> }).collect_view()}
                    </tbody>
                </table>
            </Show>
        </section>
    }
    .into_any()
}

#[component]
fn ArchivedRow(stage: Stage, restore: ServerAction<RestoreStage>, can_restore: bool) -> impl IntoView {
    let label = format!("Restore {}", stage.id);
    let project = stage.project_id.clone();
    let id = stage.id.clone();
    view! {
        <tr class="border-t border-slate-200" aria-label=stage.name.clone()>
            <td class="px-4 py-2 text-slate-900">{stage.name.clone()}</td>
            <td class="px-4 py-2"><code class="font-mono">{stage.id.clone()}</code></td>
            <td class="px-4 py-2"><TypeBadge stage_type=stage.stage_type/></td>
            <td class="px-4 py-2 text-slate-600">{stage.archived_at.map(format_time)}</td>
            <td class="px-4 py-2 text-slate-600">{stage.purge_due_at.map(format_time)}</td>
            <td class="px-4 py-2 text-right">
                {can_restore.then(|| view! {
                <button
                    type="button"
                    aria-label=label
                    class="rounded-md border border-emerald-700 px-3 py-1 text-sm font-semibold text-emerald-800 hover:bg-emerald-50 disabled:opacity-50"
                    disabled=move || restore.pending().get()
                    on:click=move |_| {
                        restore.dispatch(RestoreStage { project: project.clone(), stage: id.clone() });
                    }
                >
                    "Restore"
                </button>
                })}
            </td>
        </tr>
    }
}
