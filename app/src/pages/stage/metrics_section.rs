//! The stage page's Metrics section: CPU, memory, requests, errors and latency of each
//! component over the last hour or day, as SVG charts drawn here (no chart library), read
//! again whenever the live stream says there are new points (every 10 s while it runs).

use crate::api::stage_metrics;
use crate::components::{ui, Live};
use leptos::prelude::*;
use pergola_domain::metrics::{chart_path, format_bytes, nice_top, ComponentMetrics, MetricPoint, StageMetrics};

/// A line's values over time.
type Values = Vec<(chrono::DateTime<chrono::Utc>, Option<f64>)>;

/// The colours of the components' lines, in order.
const COLOURS: [&str; 6] = ["#047857", "#2563eb", "#b45309", "#7c3aed", "#be123c", "#0f766e"];
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 110.0;

#[component]
pub fn MetricsSection(project: String, stage: String, live: Live) -> impl IntoView {
    let day = RwSignal::new(false);
    // Read in the browser only, after the page is interactive (the server renders "Loading"):
    // again when the window changes and at each note of new metrics or of a change.
    let data = RwSignal::new(None::<Result<StageMetrics, crate::error::AppError>>);
    Effect::new(move |_| {
        let (project, stage) = (project.clone(), stage.clone());
        let window = if day.get() { "24h" } else { "1h" }.to_owned();
        live.metrics.track();
        live.changes.track();
        leptos::task::spawn_local(async move {
            let answer = stage_metrics(project, stage, window).await;
            data.try_set(Some(answer));
        });
    });
    let choice = move |label: &'static str, want_day: bool| {
        view! {
            <button
                type="button"
                class=move || if day.get() == want_day { ui::PRIMARY } else { ui::SECONDARY }
                aria-pressed=move || (day.get() == want_day).to_string()
                on:click=move |_| day.set(want_day)
            >
                {label}
            </button>
        }
    };
    view! {
        <section aria-labelledby="metrics-title" class="rounded-lg border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <h2 id="metrics-title" class="font-semibold text-slate-900">"Metrics"</h2>
                <div class="flex gap-2" role="group" aria-label="Metrics window">
                    {choice("Last hour", false)}
                    {choice("Last 24 hours", true)}
                </div>
            </div>
            {move || match data.get() {
                None => view! { <p class="mt-2 text-sm text-slate-500">"Loading metrics…"</p> }.into_any(),
                Some(Ok(m)) => view! { <Charts m/> }.into_any(),
                Some(Err(e)) => view! { <p class="mt-2 text-sm text-rose-700">{e.to_string()}</p> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Charts(m: StageMetrics) -> impl IntoView {
    if m.components.iter().all(|c| c.points.is_empty()) {
        return view! {
            <p class="mt-2 text-sm text-slate-600">
                "No metrics yet: they are sampled every 10 seconds while a component runs."
            </p>
        }
        .into_any();
    }
    let services: Vec<ComponentMetrics> =
        m.components.iter().filter(|c| c.points.iter().any(|p| p.requests > 0)).cloned().collect();
    let window = if m.window == pergola_domain::metrics::MetricsWindow::Day { "last 24 hours" } else { "last hour" };
    let (from, to) = (m.from, m.to);
    let chart = |title: &'static str,
                 of: &[ComponentMetrics],
                 value: fn(&MetricPoint) -> Option<f64>,
                 show: fn(f64) -> String| {
        view! { <Chart title window from to components=of.to_vec() value show/> }
    };
    view! {
        <ul class="mt-3 flex flex-wrap gap-4 text-sm" aria-label="Metrics legend">
            {m.components.iter().enumerate().map(|(i, c)| view! {
                <li class="flex items-center gap-2">
                    // A presentation attribute, not an inline style (the policy forbids those).
                    <svg viewBox="0 0 16 8" class="h-2 w-4" aria-hidden="true">
                        <rect width="16" height="8" rx="2" fill=COLOURS[i % COLOURS.len()]/>
                    </svg>
                    <span class="font-mono">{c.component.clone()}</span>
                </li>
            }).collect_view()}
        </ul>
        <div class="mt-3 grid gap-5 md:grid-cols-2">
            {chart("CPU", &m.components, |p| p.cpu_percent, |v| format!("{v:.1} %"))}
            {chart("Memory", &m.components, |p| p.memory_bytes.map(|b| b as f64), format_bytes)}
            {(!services.is_empty()).then(|| view! {
                {chart("Requests per minute", &services, |p| Some(p.requests_per_minute()), |v| format!("{v:.0}/min"))}
                {chart("Errors (5xx)", &services, MetricPoint::error_percent, |v| format!("{v:.1} %"))}
                {chart("Latency p50", &services, |p| p.p50_ms, |v| format!("{v:.0} ms"))}
                {chart("Latency p95", &services, |p| p.p95_ms, |v| format!("{v:.0} ms"))}
            })}
        </div>
    }
    .into_any()
}

/// One measure of every component as lines over the window, with its scale and the latest
/// value of each (also what a screen reader is told).
#[component]
fn Chart(
    title: &'static str,
    window: &'static str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    components: Vec<ComponentMetrics>,
    value: fn(&MetricPoint) -> Option<f64>,
    show: fn(f64) -> String,
) -> impl IntoView {
    let series: Vec<(String, Values)> =
        components.iter().map(|c| (c.component.clone(), c.points.iter().map(|p| (p.at, value(p))).collect())).collect();
    let top = nice_top(series.iter().flat_map(|(_, v)| v.iter().filter_map(|(_, v)| *v)));
    let latest: Vec<String> = series
        .iter()
        .filter_map(|(name, v)| v.iter().rev().find_map(|(_, v)| *v).map(|v| format!("{name} {}", show(v))))
        .collect();
    let summary = if latest.is_empty() { "no data".to_owned() } else { latest.join(", ") };
    let label = format!("{title}, {window}: latest {summary}");
    view! {
        <figure>
            <figcaption class="flex items-baseline justify-between text-sm">
                <span class="font-medium text-slate-800">{title}</span>
                <span class="text-xs text-slate-500">{summary}</span>
            </figcaption>
            <svg
                role="img"
                aria-label=label
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                preserveAspectRatio="none"
                class="mt-1 h-28 w-full rounded border border-slate-100 bg-slate-50"
            >
                <line x1="0" y1="0.5" x2=WIDTH y2="0.5" stroke="#e2e8f0" stroke-dasharray="4 4"/>
                {series.into_iter().enumerate().map(|(i, (_, values))| view! {
                    <path
                        d=chart_path(&values, from, to, top, WIDTH, HEIGHT)
                        fill="none"
                        stroke=COLOURS[i % COLOURS.len()]
                        stroke-width="2"
                        stroke-linecap="round"
                        stroke-linejoin="round"
                        vector-effect="non-scaling-stroke"
                    />
                }).collect_view()}
            </svg>
            <p class="text-xs text-slate-500">{format!("top of the scale: {}", show(top))}</p>
        </figure>
    }
}
