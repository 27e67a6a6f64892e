//! Form fields with their label and message: text inputs and the stage-type select.

use super::ui;
use leptos::prelude::*;
use pergola_domain::StageType;

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

/// The "Username" and "Password" fields of the plain sign-in forms (`/login`, `/setup`,
/// `/invite/…`), posted as `username` and `password`. `new_password`: a password being chosen
/// (`autocomplete="new-password"`, at least 10 characters), else the current one.
#[component]
pub fn CredentialFields(#[prop(optional)] new_password: bool) -> impl IntoView {
    let (autocomplete, minlength) =
        if new_password { ("new-password", Some("10")) } else { ("current-password", None) };
    view! {
        <div>
            <label for="username" class=ui::LABEL>"Username"</label>
            <input id="username" name="username" type="text" autocomplete="username" required class=ui::INPUT/>
        </div>
        <div>
            <label for="password" class=ui::LABEL>"Password"</label>
            <input id="password" name="password" type="password" autocomplete=autocomplete minlength=minlength required class=ui::INPUT/>
        </div>
    }
}

/// The message a plain form was sent back with, as an alert above its fields.
#[component]
pub fn FormAlert(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|e| view! { <p role="alert" class="rounded-md bg-rose-50 p-3 text-sm text-rose-800">{e}</p> })
    }
}
