//! The stage page's Release section: deploy a build, see each component's state, health,
//! restarts and output, and the release history with redeploy (rollback).

use super::output_section::{OutputControls, OutputSection};
use crate::api::{stage_output, stage_runtime, Deploy, Redeploy, StageActivity};
use crate::components::{ui, ErrorNotice, Live};
use crate::paths;
use leptos::prelude::*;
use pergola_domain::logs::{last_lines, merge_output};
use pergola_domain::runtime::{format_duration, ComponentState, ComponentStatus, Health, Probe};
use pergola_domain::{format_time, Build, ComponentKind, Release, StageEvent, StageStatus};

#[component]
pub fn ReleaseSection(
    project: String,
    stage: String,
    status: RwSignal<StageStatus>,
    /// The builds to offer in the deploy form; `None`: the user may not deploy here (no form).
    builds: Option<Vec<Build>>,
    /// The page's live stream.
    live: Live,
) -> impl IntoView {
    let deploy = ServerAction::<Deploy>::new();
    let redeploy = ServerAction::<Redeploy>::new();
    let controls = OutputControls::new();
    let data = Resource::new(
        {
            let (p, s) = (project.clone(), stage.clone());
            move || {
                (
                    p.clone(),
                    s.clone(),
                    live.changes.get(),
                    // Uptimes move on: read again at each sample of metrics (every 10 s) too.
                    live.metrics.get(),
                    deploy.version().get(),
                    redeploy.version().get(),
                )
            }
        },
        |(p, s, ..)| stage_runtime(p, s),
    );
    // The output: each component's newest lines, read whole at each change; then only the
    // lines printed since, as the live stream says there are.
    let whole = Resource::new(
        {
            let (p, s) = (project.clone(), stage.clone());
            move || (p.clone(), s.clone(), live.changes.get(), deploy.version().get(), redeploy.version().get())
        },
        // Answered with what asked for it: taken in once (the section below is drawn again at
        // every sample of metrics too).
        |(p, s, changes, deployed, redeployed)| async move {
            (changes, deployed, redeployed, stage_output(p, s, Vec::new(), Vec::new()).await)
        },
    );
    follow_output(project.clone(), stage.clone(), live, controls);
    Effect::new(move |_| {
        if let Some(Ok(rt)) = data.get() {
            status.try_set(rt.stage.status);
        }
    });
    let error =
        move || deploy.value().get().and_then(Result::err).or_else(|| redeploy.value().get().and_then(Result::err));
    let builds_href = format!("{}/builds", paths::project(&project));
    let form = builds.map(|builds| view! { <DeployForm project=project.clone() stage=stage.clone() deploy builds/> });
    view! {
        <section aria-labelledby="release-title" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm lg:col-span-2">
            <h2 id="release-title" class="font-semibold text-slate-900">"Release"</h2>
            <Transition fallback=|| ()>
                {
                    let (project, stage, builds_href) = (project.clone(), stage.clone(), builds_href.clone());
                    move || {
                        let (project, stage, builds_href) = (project.clone(), stage.clone(), builds_href.clone());
                        Suspend::new(async move {
                            let (changes, deployed, redeployed, fresh) = whole.await;
                            if let Ok(fresh) = fresh {
                                controls.take_whole((changes, deployed, redeployed), fresh);
                            }
                            match data.await {
                                Ok(rt) => view! { <RuntimeView rt project stage builds_href redeploy controls/> }.into_any(),
                                Err(error) => view! { <ErrorNotice error/> }.into_any(),
                            }
                        })
                    }
                }
            </Transition>
            {form}
            {move || error().map(|error| view! { <div class="mt-3"><ErrorNotice error/></div> })}
        </section>
        <section aria-labelledby="events-title" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
            <h2 id="events-title" class="font-semibold text-slate-900">"Events"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(rt) => view! { <Timeline events=rt.events/> }.into_any(),
                        Err(_) => ().into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

/// Adds the lines printed since to the output shown, whenever the live stream says there are
/// new ones and the output is followed (and when it is followed again after a pause, and after
/// each read of the whole output, which may be older than the last lines read). One read at a
/// time: notes heard meanwhile make one more read after it.
fn follow_output(project: String, stage: String, live: Live, controls: OutputControls) {
    let (busy, again) = (StoredValue::new(false), StoredValue::new(false));
    Effect::new(move |_| {
        live.output.track();
        controls.wholes.track();
        if controls.paused() {
            return;
        }
        if busy.get_value() {
            again.set_value(true);
            return;
        }
        busy.set_value(true);
        let (project, stage) = (project.clone(), stage.clone());
        leptos::task::spawn_local(async move {
            loop {
                // The page may have been left meanwhile: then its signals are gone, and so is
                // the need to read.
                let shown: Option<(Vec<String>, Vec<u64>)> =
                    controls.lines.try_with_untracked(|lines| last_lines(lines).into_iter().unzip());
                let (Some((components, after)), Some(asked_at)) = (shown, controls.wholes.try_get_untracked()) else {
                    break;
                };
                if let Ok(fresh) = stage_output(project.clone(), stage.clone(), components, after).await {
                    match controls.wholes.try_get_untracked() {
                        None => break,
                        // The whole output was taken in since (this answer was asked after
                        // other lines): ask again, after the whole output's.
                        Some(wholes) if wholes != asked_at => continue,
                        Some(_) => {
                            let _ = controls.lines.try_update(|held| merge_output(held, fresh, false));
                        }
                    }
                }
                if !again.try_update_value(std::mem::take).unwrap_or(false) {
                    break;
                }
            }
            busy.try_set_value(false);
        });
    });
}

/// Choose a build, deploy it. The list of builds loads once, apart from the refreshing status.
#[component]
fn DeployForm(project: String, stage: String, deploy: ServerAction<Deploy>, builds: Vec<Build>) -> impl IntoView {
    let selected = RwSignal::new(String::new());
    let on_deploy = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Ok(build) = selected.get_untracked().parse::<i64>() {
            deploy.dispatch(Deploy { project: project.clone(), stage: stage.clone(), build });
        }
    };
    view! {
        <form class="mt-4 flex flex-wrap items-end gap-3" on:submit=on_deploy>
            <div>
                <label for="deploy-build" class=ui::LABEL>"Build"</label>
                <select
                    id="deploy-build"
                    class=ui::INPUT
                    prop:value=move || selected.get()
                    on:change=move |ev| selected.set(event_target_value(&ev))
                >
                    <option value="">"Choose a build…"</option>
                    {builds.into_iter().map(|b| {
                        let label = format!("Build {}{}", b.number, b.version.map(|v| format!(" ({v})")).unwrap_or_default());
                        view! { <option value=b.number.to_string()>{label}</option> }
                    }).collect_view()}
                </select>
            </div>
            <button type="submit" class=ui::PRIMARY disabled=move || deploy.pending().get() || selected.get().is_empty()>
                {move || if deploy.pending().get() { "Deploying…" } else { "Deploy" }}
            </button>
        </form>
    }
}

#[component]
fn RuntimeView(
    rt: StageActivity,
    project: String,
    stage: String,
    builds_href: String,
    redeploy: ServerAction<Redeploy>,
    controls: OutputControls,
) -> impl IntoView {
    let current = rt.releases.first().cloned();
    let suspending = (rt.stage.status == StageStatus::Suspending).then(|| view! {
        <p role="status" class="mt-2 rounded bg-amber-50 px-3 py-2 text-sm text-amber-900">
            {format!("Suspending: every component got SIGTERM; those still running after {} s are killed.", rt.stage.grace_secs)}
        </p>
    });
    let summary = match &current {
        Some(r) => view! {
            <p class="mt-2 text-sm text-slate-700">
                {format!("Release #{} — build {}{}, deployed {}.", r.number, r.build_number,
                    r.build_version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default(), format_time(r.created_at))}
            </p>
        }
        .into_any(),
        None => view! {
            <p class="mt-2 text-sm text-slate-600">
                "No release deployed yet. Upload a build on the " <a href=builds_href class="text-emerald-700 underline">"Builds"</a> " page, then deploy it here."
            </p>
        }
        .into_any(),
    };
    let links = rt.links;
    view! {
        {suspending}
        {summary}
        {(!links.is_empty()).then(|| view! {
            <ul class="mt-3 space-y-1 text-sm" aria-label="Share links">
                {links.into_iter().map(|l| view! {
                    <li>
                        <span class="font-mono text-slate-600">{l.component.clone()}": "</span>
                        <a href=l.url.clone() class="text-emerald-700 underline" target="_blank" rel="noopener">{l.url.clone()}</a>
                    </li>
                }).collect_view()}
            </ul>
        })}
        {(!rt.components.is_empty()).then(|| view! {
            <table class="mt-4 w-full text-left text-sm" aria-label="Components">
                <thead class="text-slate-500">
                    <tr>
                        <th scope="col" class="py-1 font-medium">"Component"</th>
                        <th scope="col" class="py-1 font-medium">"State"</th>
                        <th scope="col" class="py-1 font-medium">"Health"</th>
                        <th scope="col" class="py-1 font-medium">"Restarts"</th>
                        <th scope="col" class="py-1 font-medium">"Uptime"</th>
                    </tr>
                </thead>
                <tbody>
                    {rt.components.into_iter().map(|c| view! { <ComponentRow c/> }).collect_view()}
                </tbody>
            </table>
        })}
        <OutputSection project=project.clone() stage=stage.clone() controls/>
        <History releases=rt.releases project stage redeploy/>
    }
}

#[component]
fn ComponentRow(c: ComponentStatus) -> impl IntoView {
    let state_class = match c.state {
        ComponentState::Running | ComponentState::Completed => "text-emerald-800",
        ComponentState::Crashed => "text-rose-700",
        _ => "text-slate-600",
    };
    let health_class = match c.health {
        Health::Healthy => "text-emerald-800",
        Health::Unhealthy => "text-rose-700",
        Health::Unknown => "text-slate-500",
    };
    let state = match c.kill_in_secs {
        Some(left) => format!("{} — killed in {left} s unless it exits", c.state.as_str()),
        None => c.state.as_str().to_owned(),
    };
    let kind = match c.kind {
        ComponentKind::Service => c.port.map(|p| format!("service · port {p}")).unwrap_or_else(|| "service".into()),
        ComponentKind::Worker => "worker".into(),
        ComponentKind::Job => "job".into(),
        ComponentKind::Cron => "cron".into(),
    };
    let since = c.started_at.map(|t| format!("since {}", format_time(t))).unwrap_or_default();
    view! {
        <tr class="border-t border-slate-100" aria-label=c.name.clone()>
            <td class="py-2">
                <span class="font-mono">{c.name.clone()}</span>
                <span class="block text-xs text-slate-500">{kind}</span>
            </td>
            <td class=format!("py-2 {state_class}") data-state=c.state.as_str()>{state}</td>
            <td class=format!("py-2 {health_class}")>
                {c.health_label()}
                <HealthHistory probes=c.probes/>
            </td>
            <td class="py-2">{c.restarts}</td>
            <td class="py-2 text-slate-600" title=since>{c.uptime_secs.map(format_duration).unwrap_or_else(|| "—".into())}</td>
        </tr>
    }
}

/// The recent probes as a strip of squares, oldest first.
#[component]
fn HealthHistory(probes: Vec<Probe>) -> impl IntoView {
    if probes.is_empty() {
        return ().into_any();
    }
    let healthy = probes.iter().filter(|p| p.healthy).count();
    let label = format!("Health history: {healthy} of the last {} probes healthy", probes.len());
    view! {
        <span role="img" aria-label=label.clone() title=label class="mt-1 flex gap-0.5">
            {probes.into_iter().map(|p| {
                let colour = if p.healthy { "bg-emerald-500" } else { "bg-rose-500" };
                view! { <span class=format!("h-3 w-1.5 rounded-sm {colour}") title=p.at.format("%H:%M:%S").to_string()></span> }
            }).collect_view()}
        </span>
    }
    .into_any()
}

/// What happened to the stage, newest first.
#[component]
fn Timeline(events: Vec<StageEvent>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p class="mt-2 text-sm text-slate-600">"Nothing has happened yet."</p> }.into_any();
    }
    view! {
        <ol class="mt-3 divide-y divide-slate-100 text-sm" aria-label="Events timeline">
            {events.into_iter().map(|e| {
                let colour = if e.kind.is_trouble() { "bg-rose-100 text-rose-800" } else { "bg-slate-100 text-slate-700" };
                view! {
                    <li class="flex flex-wrap items-baseline gap-x-3 gap-y-1 py-2" data-kind=e.kind.as_str()>
                        <time class="w-40 shrink-0 font-mono text-xs text-slate-500" datetime=e.at.to_rfc3339()>
                            {e.at.format("%Y-%m-%d %H:%M:%S").to_string()}
                        </time>
                        <span class=format!("rounded px-1.5 py-0.5 text-xs font-semibold {colour}")>{e.kind.label()}</span>
                        <span class="text-slate-700">{e.message}</span>
                    </li>
                }
            }).collect_view()}
        </ol>
    }
    .into_any()
}

#[component]
fn History(releases: Vec<Release>, project: String, stage: String, redeploy: ServerAction<Redeploy>) -> impl IntoView {
    if releases.len() < 2 {
        return ().into_any();
    }
    view! {
        <h3 class="mt-5 text-sm font-semibold text-slate-900">"History"</h3>
        <ul class="mt-2 divide-y divide-slate-100 text-sm" aria-label="Release history">
            {releases.into_iter().enumerate().map(|(i, r)| {
                let (project, stage) = (project.clone(), stage.clone());
                let label = format!("Redeploy release {}", r.number);
                view! {
                    <li class="flex items-center justify-between py-2">
                        <span>{format!("#{} — build {} — {}{}", r.number, r.build_number, format_time(r.created_at), if i == 0 { " (running)" } else { "" })}</span>
                        {(i > 0).then(|| view! {
                            <button
                                type="button"
                                aria-label=label
                                class="text-sm font-medium text-emerald-700 hover:underline"
                                on:click=move |_| { redeploy.dispatch(Redeploy { project: project.clone(), stage: stage.clone(), release: r.number }); }
                            >
                                "Redeploy"
                            </button>
                        })}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}
