//! `/projects/{project}/activity`: who changed what in the project, newest first, filtered by
//! stage, user and kind (the audit trail).

use super::param;
use crate::api::project_activity;
use crate::components::{loading, ui, PageError};
use crate::paths;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{format_time, AuditEntry};

#[component]
pub fn ActivityPage() -> impl IntoView {
    let project = param("project");
    let stage = RwSignal::new(String::new());
    let user = RwSignal::new(String::new());
    let kind = RwSignal::new(String::new());
    let data = Resource::new(
        move || (project.get(), stage.get(), user.get(), kind.get()),
        |(p, s, u, k)| project_activity(p, s, u, k),
    );
    let filter = |id: &'static str, label: &'static str, value: RwSignal<String>, placeholder: &'static str| {
        view! {
            <div>
                <label for=id class=ui::LABEL>{label}</label>
                <input id=id type="search" class=ui::INPUT placeholder=placeholder
                    prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev))/>
            </div>
        }
    };
    view! {
        <Title text="Activity · Pergola Stages"/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=move || paths::project(&project.get()) class="hover:underline">{move || project.get()}</a>
            " / activity"
        </nav>
        <h1 class="mt-2 text-2xl font-bold text-slate-900">"Activity"</h1>
        <form class="mt-4 grid gap-3 sm:grid-cols-3" aria-label="Filters" on:submit=|ev| ev.prevent_default()>
            {filter("filter-stage", "Stage", stage, "Stage ID")}
            {filter("filter-user", "User", user, "Username")}
            {filter("filter-kind", "Kind", kind, "e.g. stage.deployed")}
        </form>
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(entries) => view! { <Entries entries/> }.into_any(),
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Entries(entries: Vec<AuditEntry>) -> impl IntoView {
    if entries.is_empty() {
        return view! { <p class="mt-6 text-slate-600">"Nothing matches."</p> }.into_any();
    }
    view! {
        <table class="mt-6 w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="Activity">
            <thead class="bg-slate-50 text-left text-slate-600">
                <tr>
                    <th class="px-4 py-2">"When"</th><th class="px-4 py-2">"Who"</th><th class="px-4 py-2">"What"</th>
                    <th class="px-4 py-2">"Stage"</th><th class="px-4 py-2">"Details"</th><th class="px-4 py-2">"From"</th>
                </tr>
            </thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr class="border-t border-slate-200">
                        <td class="whitespace-nowrap px-4 py-2 text-slate-600">{format_time(e.at)}</td>
                        <td class="px-4 py-2 font-medium text-slate-900">{e.actor}</td>
                        <td class="px-4 py-2"><code class="font-mono text-xs">{e.kind}</code></td>
                        <td class="px-4 py-2">{e.stage_id.unwrap_or_default()}</td>
                        <td class="px-4 py-2 text-slate-700">{e.message}</td>
                        <td class="px-4 py-2 text-slate-500">{e.address.unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
