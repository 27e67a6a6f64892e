//! The stage page's "Promote" section: the seed's DEV → QA → PROD release path. Choose a target
//! (the next type first), see what will change there — build, components, configuration keys
//! (plain values shown, secrets never) — and promote: the target gets this stage's build with
//! its own configuration.

use crate::api::PromoteStage;
use crate::components::{ui, ErrorNotice};
use crate::paths;
use leptos::prelude::*;
use pergola_domain::{shown, Actor, StageComparison, StageSide};

#[component]
pub fn PromoteSection(project: String, stage: String, options: Vec<StageComparison>, actor: Actor) -> impl IntoView {
    // Only the targets this user may deploy to.
    let options: Vec<StageComparison> = options
        .into_iter()
        .filter(|o| pergola_domain::permits(&actor, pergola_domain::Action::Deploy, Some(o.to.stage_type)))
        .collect();
    let has_release = options.first().is_some_and(|o| o.from.release.is_some());
    let selected = RwSignal::new(options.first().map(|o| o.to.id.clone()).unwrap_or_default());
    let promote = ServerAction::<PromoteStage>::new();
    let result = promote.value();
    let all = StoredValue::new(options.clone());
    let chosen = Memo::new(move |_| all.with_value(|o| o.iter().find(|o| o.to.id == selected.get()).cloned()));
    let on_submit = {
        let (project, stage) = (project.clone(), stage.clone());
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            promote.dispatch(PromoteStage {
                project: project.clone(),
                from: stage.clone(),
                to: selected.get_untracked(),
            });
        }
    };
    let body = if options.is_empty() {
        view! { <p class="mt-2 text-sm text-slate-600">"No other stage of this project you may deploy to."</p> }
            .into_any()
    } else if !has_release {
        view! { <p class="mt-2 text-sm text-slate-600">"Deploy a build to this stage to promote it."</p> }.into_any()
    } else {
        let project_for_done = project.clone();
        view! {
            <form class="mt-3 space-y-3" on:submit=on_submit>
                <div>
                    <label for="promote-to" class=ui::LABEL>"Promote to"</label>
                    <select
                        id="promote-to"
                        class=ui::INPUT
                        prop:value=move || selected.get()
                        on:change=move |ev| selected.set(event_target_value(&ev))
                    >
                        {options.iter().map(|o| {
                            let label = format!("{} · {} ({})", o.to.stage_type.label(), o.to.name, o.to.id);
                            view! { <option value=o.to.id.clone()>{label}</option> }
                        }).collect_view()}
                    </select>
                </div>
                {move || chosen.get().map(|c| view! { <Changes c/> })}
                <button type="submit" class=ui::PRIMARY disabled=move || promote.pending().get()>
                    {move || match chosen.get() {
                        _ if promote.pending().get() => "Promoting…".to_owned(),
                        Some(c) => format!("Promote to {}", c.to.id),
                        None => "Promote".to_owned(),
                    }}
                </button>
                {move || match result.get() {
                    Some(Ok(release)) => {
                        let target = selected.get_untracked();
                        let href = paths::stage(&project_for_done, &target);
                        view! {
                            <p role="status" class="text-sm text-emerald-800">
                                {format!("Promoted: release #{} of ", release.number)}
                                <a href=href class="underline">{target}</a>
                                {format!(" runs build {}.", release.build_number)}
                            </p>
                        }.into_any()
                    }
                    Some(Err(error)) => view! { <ErrorNotice error/> }.into_any(),
                    None => ().into_any(),
                }}
            </form>
        }
        .into_any()
    };
    view! {
        <section aria-labelledby="promote-title" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
            <h2 id="promote-title" class="font-semibold text-slate-900">"Promote"</h2>
            <p class="mt-1 text-sm text-slate-600">
                "Deploys the build this stage runs to another stage, with that stage's own configuration: DEV → QA → PROD."
            </p>
            {body}
        </section>
    }
}

/// What a promotion would change on the target.
#[component]
fn Changes(c: StageComparison) -> impl IntoView {
    let mut items: Vec<String> = Vec::new();
    if c.build_differs {
        items.push(format!("Runs {} instead of {}.", build_label(&c.from), build_label(&c.to)));
    } else {
        items.push(format!("Already runs build {}: a new release of it.", c.to.build.unwrap_or_default()));
    }
    for x in &c.components_added {
        items.push(format!("New component: {} ({}).", x.name, x.kind.as_str()));
    }
    for x in &c.components_removed {
        items.push(format!("Component removed: {} ({}).", x.name, x.kind.as_str()));
    }
    let config = c.config.clone();
    view! {
        <div aria-label="What changes" role="group" class="rounded-md bg-slate-50 p-3 text-sm text-slate-700">
            <ul class="list-disc space-y-1 pl-5">
                {items.into_iter().map(|i| view! { <li>{i}</li> }).collect_view()}
            </ul>
            {(!config.is_empty()).then(|| view! {
                <table class="mt-3 w-full text-left" aria-label="Configuration that differs">
                    <caption class="text-left text-slate-600">
                        {format!("Configuration that differs ({} keeps its own):", c.to.id)}
                    </caption>
                    <thead class="text-slate-500">
                        <tr>
                            <th scope="col" class="py-1 font-medium">"Key"</th>
                            <th scope="col" class="py-1 font-medium">{c.from.id.clone()}</th>
                            <th scope="col" class="py-1 font-medium">{c.to.id.clone()}</th>
                        </tr>
                    </thead>
                    <tbody>
                        {config.into_iter().map(|d| view! {
                            <tr>
                                <th scope="row" class="py-1 font-mono font-normal">{d.key.clone()}</th>
                                <td class="py-1 font-mono">{shown(d.from.as_ref())}</td>
                                <td class="py-1 font-mono">{shown(d.to.as_ref())}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </div>
    }
}

fn build_label(side: &StageSide) -> String {
    match side.build {
        Some(build) => {
            format!("build {build}{}", side.version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default())
        }
        None => "nothing".to_owned(),
    }
}
