//! One live stage on the project page.

use crate::components::{StatusBadge, TypeBadge};
use crate::paths;
use leptos::prelude::*;
use pergola_domain::metrics::{chart_path, nice_top};
use pergola_domain::{Stage, StageSummary};

#[component]
pub fn StageCard(stage: Stage, summary: StageSummary, actor: pergola_domain::Actor) -> impl IntoView {
    let can_change = pergola_domain::permits(&actor, pergola_domain::Action::UpdateStage, Some(stage.stage_type));
    let release = match &summary.release {
        Some(r) => format!(
            "#{} (build {}{})",
            r.number,
            r.build_number,
            r.build_version.as_ref().map(|v| format!(", {v}")).unwrap_or_default()
        ),
        None => "No release deployed yet".to_owned(),
    };
    let href = paths::stage(&stage.project_id, &stage.id);
    let settings = paths::stage_settings(&stage.project_id, &stage.id);
    let settings_label = format!("Settings of {}", stage.name);
    view! {
        <li>
            <article
                aria-label=stage.name.clone()
                class="flex h-full flex-col gap-3 rounded-lg border border-slate-200 bg-white p-5 shadow-sm"
            >
                <header class="flex items-start justify-between gap-3">
                    <h3 class="min-w-0 break-words text-base font-semibold text-slate-900">
                        <a href=href class="hover:underline">{stage.name.clone()}</a>
                    </h3>
                    <TypeBadge stage_type=stage.stage_type/>
                </header>
                <dl class="grid grid-cols-[auto_1fr] gap-x-3 gap-y-1 text-sm">
                    <dt class="text-slate-500">"Stage ID"</dt>
                    <dd><code class="font-mono text-slate-800">{stage.id.clone()}</code></dd>
                    <dt class="text-slate-500">"Status"</dt>
                    <dd><StatusBadge status=stage.status/></dd>
                    <dt class="text-slate-500">"Release"</dt>
                    <dd class="text-slate-600">{release}</dd>
                </dl>
                {(!summary.components.is_empty()).then(|| view! {
                    <ul class="space-y-1 text-sm" aria-label="Components">
                        {summary.components.into_iter().map(|c| view! {
                            <li class="flex justify-between gap-2">
                                <span class="font-mono text-slate-800">{c.name.clone()}</span>
                                <span class="text-slate-600">{format!("{} · {}", c.state.as_str(), c.health_label())}</span>
                            </li>
                        }).collect_view()}
                    </ul>
                })}
                {(!summary.sparklines.is_empty()).then(|| view! {
                    <ul class="space-y-1 text-xs text-slate-500" aria-label="CPU over the last hour">
                        {summary.sparklines.into_iter().map(|spark| {
                            let latest = spark.values.iter().rev().find_map(|(_, v)| *v);
                            let label = match latest {
                                Some(cpu) => format!("CPU of {} over the last hour, now {cpu:.1} %", spark.component),
                                None => format!("CPU of {} over the last hour: no data yet", spark.component),
                            };
                            let top = nice_top(spark.values.iter().filter_map(|(_, v)| *v));
                            let path = chart_path(&spark.values, spark.from, spark.to, top, 96.0, 20.0);
                            view! {
                                <li class="flex items-center justify-between gap-2">
                                    <span class="font-mono">{spark.component.clone()}</span>
                                    <svg role="img" aria-label=label viewBox="0 0 96 20" class="h-5 w-24">
                                        <path d=path fill="none" stroke="#047857" stroke-width="1.5"
                                            stroke-linecap="round" vector-effect="non-scaling-stroke"/>
                                    </svg>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                })}
                {(!summary.links.is_empty()).then(|| view! {
                    <ul class="space-y-1 text-sm" aria-label="Share links">
                        {summary.links.into_iter().map(|l| view! {
                            <li class="truncate">
                                <a href=l.url.clone() class="text-emerald-700 underline" target="_blank" rel="noopener">{l.url.clone()}</a>
                            </li>
                        }).collect_view()}
                    </ul>
                })}
                {can_change.then(|| view! {
                    <footer class="mt-auto flex gap-4 pt-2 text-sm">
                        <a href=settings aria-label=settings_label class="text-slate-600 hover:text-slate-900">"Settings"</a>
                    </footer>
                })}
            </article>
        </li>
    }
}
