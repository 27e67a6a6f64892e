//! The stage page's output: each component's last lines, following the tail as they are
//! printed (the live stream says when), with pause, a filter and a download of all that is kept.

use crate::components::ui;
use crate::paths;
use leptos::prelude::*;
use pergola_domain::logs::{format_line, merge_output, Output, OutputPart};

/// What the output shows: followed live, or held still while the user reads.
#[derive(Clone, Copy)]
pub struct OutputControls {
    /// The lines followed: each component's newest.
    pub lines: RwSignal<Output>,
    /// The lines held while paused (`None`: following).
    pub held: RwSignal<Option<Output>>,
    /// Only lines containing this text (any case).
    pub filter: RwSignal<String>,
    /// Which read of the whole output was taken in last (the counts that asked for it).
    whole: StoredValue<Option<WholeRead>>,
    /// How many reads of the whole output were taken in: an answer to a read of new lines asked
    /// before the last of them may be older than what is shown.
    pub wholes: RwSignal<u32>,
}

/// What asked for a read of the whole output: the counts of changes, deploys and redeploys.
pub type WholeRead = (u32, usize, usize);

impl OutputControls {
    pub fn new() -> Self {
        OutputControls {
            lines: RwSignal::new(Vec::new()),
            held: RwSignal::new(None),
            filter: RwSignal::new(String::new()),
            whole: StoredValue::new(None),
            wholes: RwSignal::new(0),
        }
    }

    /// Takes in the whole output `read` answered, once.
    pub fn take_whole(&self, read: WholeRead, fresh: Vec<OutputPart>) {
        if self.whole.try_with_value(|last| *last == Some(read)).unwrap_or(true) {
            return;
        }
        self.whole.set_value(Some(read));
        self.lines.update(|held| merge_output(held, fresh, true));
        self.wholes.update(|n| *n += 1);
    }

    pub fn paused(&self) -> bool {
        self.held.with(Option::is_some)
    }
}

#[component]
pub fn OutputSection(project: String, stage: String, controls: OutputControls) -> impl IntoView {
    let shown = move || controls.held.get().unwrap_or_else(|| controls.lines.get());
    // Shown once a component has printed (the stream brings the first lines too).
    let printed =
        move || controls.paused() || controls.lines.with(|output| output.iter().any(|(_, lines)| !lines.is_empty()));
    let toggle = move |_| {
        if controls.paused() {
            controls.held.set(None);
        } else {
            controls.held.set(Some(controls.lines.get_untracked()));
        }
    };
    let figures = move || {
        let needle = controls.filter.get().to_lowercase();
        shown()
            .into_iter()
            .map(|(name, lines)| {
                let text = lines
                    .iter()
                    .filter(|l| needle.is_empty() || l.line.to_lowercase().contains(&needle))
                    .map(|l| format_line(l, false))
                    .collect::<Vec<_>>()
                    .join("\n");
                let download = paths::api_component_log_text(&project, &stage, &name);
                let file = format!("{stage}-{name}.log");
                view! {
                    <figure class="mt-3">
                        <figcaption class="flex items-baseline justify-between text-sm text-slate-600">
                            <span>{format!("Output of {name}")}</span>
                            <a href=download download=file class="text-emerald-700 underline">{format!("Download output of {name}")}</a>
                        </figcaption>
                        // Column-reverse keeps the newest lines in view.
                        <div class="mt-1 flex max-h-72 flex-col-reverse overflow-auto rounded bg-slate-900">
                            <pre class="p-3 text-xs text-slate-100" aria-label=format!("Output lines of {name}")>{text}</pre>
                        </div>
                    </figure>
                }
            })
            .collect_view()
    };
    view! {
        <Show when=printed>
            <div class="mt-4 flex flex-wrap items-end gap-3" role="group" aria-label="Output controls">
                <div>
                    <label for="output-filter" class=ui::LABEL>"Filter output"</label>
                    <input
                        id="output-filter"
                        type="search"
                        class=ui::INPUT
                        placeholder="text in a line"
                        prop:value=move || controls.filter.get()
                        on:input=move |ev| controls.filter.set(event_target_value(&ev))
                    />
                </div>
                <button type="button" class=ui::SECONDARY aria-pressed=move || controls.paused().to_string() on:click=toggle>
                    {move || if controls.paused() { "Follow output" } else { "Pause output" }}
                </button>
                <span role="status" class="text-sm text-slate-600">
                    {move || if controls.paused() { "Paused: new lines are not shown." } else { "Following new lines." }}
                </span>
            </div>
            {figures.clone()}
        </Show>
    }
}
