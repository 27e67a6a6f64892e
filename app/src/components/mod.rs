//! Small building blocks shared by the pages.

pub mod derived_id;

use crate::error::AppError;
use leptos::prelude::*;
use pergola_domain::{StageStatus, StageType};

/// The top bar on every page.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="border-b border-slate-200 bg-white">
            <nav aria-label="Main" class="mx-auto flex max-w-6xl items-center gap-6 px-6 py-3">
                <a href="/" class="flex items-center gap-2 font-semibold text-slate-900">
                    <span aria-hidden="true" class="inline-block h-6 w-6 rounded bg-emerald-600"></span>
                    "Pergola Stages"
                </a>
                <a href="/" class="text-sm text-slate-600 hover:text-slate-900">"Projects"</a>
                <a href="/admin" class="text-sm text-slate-600 hover:text-slate-900">"Admin"</a>
            </nav>
        </header>
    }
}

/// DEV / QA / PROD, coloured by type.
#[component]
pub fn TypeBadge(stage_type: StageType) -> impl IntoView {
    let colour = match stage_type {
        StageType::Dev => "bg-sky-100 text-sky-800 ring-sky-300",
        StageType::Qa => "bg-amber-100 text-amber-800 ring-amber-300",
        StageType::Prod => "bg-rose-100 text-rose-800 ring-rose-300",
    };
    view! {
        <span
            class=format!("rounded px-2 py-0.5 text-xs font-bold tracking-wide ring-1 {colour}")
            title="Stage type"
        >
            {stage_type.label()}
        </span>
    }
}

/// running / suspending / suspended, with a dot.
#[component]
pub fn StatusBadge(status: StageStatus) -> impl IntoView {
    let (dot, text) = match status {
        StageStatus::Running => ("bg-emerald-500", "text-emerald-800"),
        StageStatus::Suspending => ("bg-amber-500 animate-pulse", "text-amber-800"),
        StageStatus::Suspended => ("bg-slate-400", "text-slate-600"),
    };
    view! {
        <span class=format!("inline-flex items-center gap-1.5 text-sm font-medium {text}") data-status=status.as_str()>
            <span aria-hidden="true" class=format!("h-2 w-2 rounded-full {dot}")></span>
            {status.as_str()}
        </span>
    }
}

/// A labelled text input with its message under it: the input is `aria-invalid` while there is
/// a message, and described by the hint (when given) and the message. `children` go after the
/// message (a suggestion, a status line).
#[component]
pub fn TextField(
    #[prop(into)] id: String,
    #[prop(into)] label: String,
    #[prop(into)] value: Signal<String>,
    #[prop(into)] on_input: Callback<String>,
    #[prop(into)] message: Signal<Option<String>>,
    /// Code-like values (IDs, keys, paths): monospace, no spell checking.
    #[prop(optional)]
    mono: bool,
    #[prop(optional, into)] placeholder: Option<String>,
    /// A line under the field, always shown.
    #[prop(optional, into)]
    hint: Option<String>,
    /// `text` unless given (e.g. `password` for a secret).
    #[prop(optional, into)]
    input_type: Option<Signal<&'static str>>,
    /// e.g. `numeric` for a mobile keyboard with digits.
    #[prop(optional, into)]
    inputmode: Option<&'static str>,
    /// Extra classes of the input (a width).
    #[prop(optional, into)]
    class: Option<&'static str>,
    #[prop(optional)] node_ref: NodeRef<leptos::html::Input>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    let msg_id = format!("{id}-msg");
    let hint_id = format!("{id}-hint");
    let described_by = if hint.is_some() { format!("{hint_id} {msg_id}") } else { msg_id.clone() };
    let classes = format!(
        "{}{}{}",
        ui::INPUT,
        if mono { " font-mono" } else { "" },
        class.map(|c| format!(" {c}")).unwrap_or_default()
    );
    view! {
        <div>
            <label for=id.clone() class=ui::LABEL>{label}</label>
            <input
                id=id
                node_ref=node_ref
                class=classes
                type=move || input_type.map_or("text", |t| t.get())
                inputmode=inputmode
                placeholder=placeholder
                autocomplete="off"
                spellcheck=mono.then_some("false")
                aria-describedby=described_by
                aria-invalid=move || message.get().is_some().to_string()
                prop:value=move || value.get()
                on:input=move |ev| on_input.run(event_target_value(&ev))
            />
            {hint.map(|hint| view! { <p id=hint_id class="mt-1 text-sm text-slate-500">{hint}</p> })}
            <FieldMessage id=msg_id message/>
            {children.map(|children| children())}
        </div>
    }
}

/// A message under a form field; `id` is what the field's `aria-describedby` points at.
#[component]
pub fn FieldMessage(#[prop(into)] id: String, #[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    view! {
        <p id=id class="mt-1 min-h-5 text-sm text-rose-700" aria-live="polite">
            {move || message.get()}
        </p>
    }
}

/// A modal dialog (`role="dialog"`, labelled by its title): closes on Escape and on a click
/// outside. Rendered with `<Show>`, since a portal renders nothing on the server.
#[component]
pub fn Modal(
    #[prop(into)] open: Signal<bool>,
    /// The `id` of the element that titles the dialog.
    title_id: &'static str,
    #[prop(into)] on_close: Callback<()>,
    children: ChildrenFn,
) -> impl IntoView {
    view! {
        <Show when=move || open.get()>
            <div
                class="fixed inset-0 z-40 flex items-start justify-center bg-slate-900/40 p-4 pt-24"
                on:click=move |_| on_close.run(())
            >
                <div
                    role="dialog"
                    aria-modal="true"
                    aria-labelledby=title_id
                    class="w-full max-w-md rounded-xl bg-white p-6 shadow-xl"
                    on:click=|ev| ev.stop_propagation()
                    on:keydown=move |ev| if ev.key() == "Escape" { on_close.run(()) }
                >
                    {children()}
                </div>
            </div>
        </Show>
    }
}

/// The "Type" field (DEV / QA / PROD) of the new-stage popup and the stage settings.
#[component]
pub fn StageTypeField(
    /// The select's `id`; its message gets `{id}-msg`.
    id: &'static str,
    /// `dev`, `qa` or `prod`.
    value: RwSignal<String>,
    #[prop(into)] message: Signal<Option<String>>,
) -> impl IntoView {
    let initial = value.get_untracked();
    view! {
        <div>
            <label for=id class=ui::LABEL>"Type"</label>
            <select
                id=id
                class=ui::INPUT
                aria-describedby=format!("{id}-msg")
                prop:value=move || value.get()
                on:change=move |ev| value.set(event_target_value(&ev))
            >
                {StageType::ALL
                    .into_iter()
                    .map(|t| view! { <option value=t.as_str() selected=t.as_str() == initial>{t.label()}</option> })
                    .collect_view()}
            </select>
            <FieldMessage id=format!("{id}-msg") message/>
        </div>
    }
}

/// An error that is not about one field.
#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    view! {
        <div role="alert" class="rounded-md border border-rose-300 bg-rose-50 px-4 py-3 text-sm text-rose-800">
            {error.to_string()}
        </div>
    }
}

/// The 404 page body; also sets the HTTP status when rendered on the server.
#[component]
pub fn NotFound(#[prop(into)] message: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Not found · Pergola Stages"/>
        <section class="mx-auto max-w-xl py-16 text-center">
            <p class="text-sm font-semibold text-emerald-700">"404"</p>
            <h1 class="mt-2 text-3xl font-bold text-slate-900">"Not found"</h1>
            <p class="mt-4 text-slate-600">{message}</p>
            <a href="/" class="mt-6 inline-block text-emerald-700 underline">"Back to all projects"</a>
        </section>
    }
}

/// Shows the error of a page's resource: a 404 page for missing things, a notice otherwise.
#[component]
pub fn PageError(error: AppError) -> impl IntoView {
    if error.is_not_found() {
        view! { <NotFound message=error.to_string()/> }.into_any()
    } else {
        view! { <div class="py-8"><ErrorNotice error/></div> }.into_any()
    }
}

/// Counts an action's successful completions: the refetch source for a page with a form. A
/// refused submission must not refetch, since that re-renders (and so resets) the form the
/// user is still filling in.
pub fn successes<S>(action: ServerAction<S>) -> ReadSignal<u32>
where
    S: leptos::server_fn::ServerFn + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
    S::Error: Clone + Send + Sync + 'static,
{
    let (count, set_count) = signal(0u32);
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            set_count.update(|n| *n += 1);
        }
    });
    count
}

pub fn loading() -> impl IntoView {
    view! { <p class="py-8 text-slate-500" aria-busy="true">"Loading…"</p> }
}

/// Tailwind classes shared by the dashboard's controls.
pub mod ui {
    pub const INPUT: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 shadow-sm focus:border-emerald-600 focus:outline-none focus:ring-2 focus:ring-emerald-200 aria-[invalid=true]:border-rose-500";
    pub const LABEL: &str = "block text-sm font-medium text-slate-700";
    pub const PRIMARY: &str = "rounded-md bg-emerald-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-emerald-800 disabled:cursor-not-allowed disabled:opacity-50";
    pub const SECONDARY: &str = "rounded-md border border-slate-300 bg-white px-4 py-2 text-sm font-semibold text-slate-700 hover:bg-slate-50 disabled:opacity-50";
    pub const DANGER: &str = "rounded-md bg-rose-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-rose-800 disabled:cursor-not-allowed disabled:opacity-50";
    pub const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";
}
