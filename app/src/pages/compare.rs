//! `/projects/{project}/compare?from=A&to=B`: two stages side by side — type, what runs (release,
//! build, version), components, the configuration keys that differ (plain values shown,
//! secrets never), grace period. The form is a plain GET form: it works before hydration too.

use super::param;
use crate::api::{compare_stages, list_live_stages};
use crate::components::{loading, ui, PageError};
use crate::error::AppError;
use crate::paths;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use pergola_domain::{shown, Stage, StageComparison, StageSide};

#[component]
pub fn ComparePage() -> impl IntoView {
    let project = param("project");
    let query = use_query_map();
    let chosen = Memo::new(move |_| {
        let q = query.read();
        (q.get("from").unwrap_or_default(), q.get("to").unwrap_or_default())
    });
    // One resource for the page: the project's stages and, once two are chosen, how they differ.
    let data = Resource::new(
        move || (project.get(), chosen.get()),
        |(p, (from, to))| async move {
            let stages = list_live_stages(p.clone()).await?;
            let comparison = if from.is_empty() || to.is_empty() || from == to {
                None
            } else {
                Some(compare_stages(p, from.clone(), to.clone()).await?)
            };
            Ok::<_, AppError>((stages, from, to, comparison))
        },
    );
    view! {
        <Title text=move || format!("Compare stages · {} · Pergola Stages", project.get())/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=move || paths::project(&project.get()) class="hover:underline">{move || project.get()}</a>
            " / compare"
        </nav>
        <h1 class="mt-2 text-2xl font-bold text-slate-900">"Compare stages"</h1>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((stages, from, to, comparison)) => view! { <CompareView stages from to comparison/> }.into_any(),
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn CompareView(stages: Vec<Stage>, from: String, to: String, comparison: Option<StageComparison>) -> impl IntoView {
    let select = |id: &'static str, label: &'static str, name: &'static str, chosen: String| {
        let options = stages
            .iter()
            .map(|s| {
                let selected = s.id == chosen;
                view! { <option value=s.id.clone() selected=selected>{format!("{} ({}, {})", s.name, s.id, s.stage_type.label())}</option> }
            })
            .collect_view();
        view! {
            <div>
                <label for=id class=ui::LABEL>{label}</label>
                <select id=id name=name class=ui::INPUT>
                    <option value="">"Choose a stage…"</option>
                    {options}
                </select>
            </div>
        }
    };
    view! {
        <form method="get" class="mt-4 flex flex-wrap items-end gap-3">
            {select("compare-from", "Stage", "from", from.clone())}
            {select("compare-to", "Compared with", "to", to.clone())}
            <button type="submit" class=ui::PRIMARY>"Compare"</button>
        </form>
        {match comparison {
            Some(c) => view! { <ComparisonTable c/> }.into_any(),
            None if !from.is_empty() && from == to => {
                view! { <p class="mt-4 text-sm text-slate-600">"Choose two different stages."</p> }.into_any()
            }
            None => view! { <p class="mt-4 text-sm text-slate-600">"Choose two stages of this project."</p> }.into_any(),
        }}
    }
}

#[component]
fn ComparisonTable(c: StageComparison) -> impl IntoView {
    let (a, b) = (&c.from, &c.to);
    let components = |s: &StageSide| {
        if s.components.is_empty() {
            "none".to_owned()
        } else {
            s.components.iter().map(|x| format!("{} ({})", x.name, x.kind.as_str())).collect::<Vec<_>>().join(", ")
        }
    };
    let mut rows: Vec<(String, String, String, bool)> = vec![
        ("Type".into(), a.stage_type.label().into(), b.stage_type.label().into(), c.type_differs),
        ("Runs".into(), a.runs(), b.runs(), c.build_differs),
        (
            "Components".into(),
            components(a),
            components(b),
            !c.components_added.is_empty() || !c.components_removed.is_empty(),
        ),
        ("Grace period".into(), format!("{} s", a.grace_secs), format!("{} s", b.grace_secs), c.grace_differs),
    ];
    for d in &c.config {
        rows.push((format!("Setting {}", d.key), shown(d.from.as_ref()), shown(d.to.as_ref()), true));
    }
    let same = c.is_same();
    view! {
        <table class=format!("mt-6 w-full text-left text-sm {}", ui::CARD) aria-label="Comparison">
            <thead class="text-slate-500">
                <tr>
                    <th scope="col" class="py-1 font-medium">""</th>
                    <th scope="col" class="py-1 font-medium">{a.id.clone()}</th>
                    <th scope="col" class="py-1 font-medium">{b.id.clone()}</th>
                </tr>
            </thead>
            <tbody>
                {rows.into_iter().map(|(what, x, y, differs)| view! {
                    <tr class=if differs { "bg-amber-50" } else { "" } data-differs=differs.to_string()>
                        <th scope="row" class="py-1 pr-4 font-medium text-slate-700">{what}</th>
                        <td class="py-1 pr-4 font-mono">{x}</td>
                        <td class="py-1 font-mono">{y}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <p role="status" class="mt-3 text-sm text-slate-600">
            {if same {
                "No difference: same build, components, configuration, type and grace period.".to_owned()
            } else {
                format!("{} setting(s) differ; settings that are the same are not listed. Secret values are never shown.", c.config.len())
            }}
        </p>
    }
}
