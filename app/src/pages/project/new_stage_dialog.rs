//! The "+ NEW STAGE" popup: Name, Type and a Stage ID derived live from the name, checked
//! (debounced) for availability while typing and again, atomically, by the server on submit.

use crate::api::{check_stage_id, CreateStage};
use crate::components::derived_id::DerivedId;
use crate::components::{ui, ErrorNotice, Modal, StageTypeField, TextField};
use crate::error::AppError;
use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;
use pergola_domain::{IdCheck, IdKind, Stage, StageType};
use std::time::Duration;

const CHECK_DELAY: Duration = Duration::from_millis(250);

#[component]
pub fn NewStageDialog(
    #[prop(into)] project: Signal<String>,
    open: RwSignal<bool>,
    #[prop(into)] on_created: Callback<Stage>,
) -> impl IntoView {
    let form = DerivedId::new(IdKind::Stage);
    let stage_type = RwSignal::new(StageType::Dev.as_str().to_owned());
    // The server's answer for the ID currently in the field (None while unknown).
    let check = RwSignal::new(None::<IdCheck>);
    let submit_error = RwSignal::new(None::<AppError>);
    let pending_check = StoredValue::new(None::<TimeoutHandle>);
    let create = ServerAction::<CreateStage>::new();
    let name_ref = NodeRef::<html::Input>::new();

    // The timer and the request outlive a render: they may fire after the user navigated
    // away, when this component's signals are gone, hence the `try_` accessors.
    let cancel_check = move || {
        if let Some(Some(handle)) = pending_check.try_get_value() {
            handle.clear();
        }
    };
    on_cleanup(cancel_check);

    let schedule_check = move || {
        cancel_check();
        check.set(None);
        let id = form.id.get_untracked().trim().to_owned();
        if id.is_empty() || form.local_error().is_some() {
            return;
        }
        let handle = set_timeout_with_handle(
            move || {
                let Some(project) = project.try_get_untracked() else { return };
                leptos::task::spawn_local(async move {
                    let answer = check_stage_id(project, id.clone()).await;
                    // Ignore answers for an ID the user has typed over in the meantime.
                    if form.id.try_get_untracked().is_some_and(|current| current.trim() == id) {
                        check.try_set(answer.ok());
                    }
                });
            },
            CHECK_DELAY,
        );
        pending_check.set_value(handle.ok());
    };

    let close = move || {
        cancel_check();
        open.set(false);
        form.reset();
        stage_type.set(StageType::Dev.as_str().to_owned());
        check.set(None);
        submit_error.set(None);
    };

    // Focus the name field when the dialog opens.
    Effect::new(move |_| {
        if open.get() {
            request_animation_frame(move || {
                if let Some(input) = name_ref.get_untracked() {
                    let _ = input.focus();
                }
            });
        }
    });

    // React to the server's answer to a submit.
    Effect::new(move |_| match create.value().get() {
        Some(Ok(stage)) => {
            create.value().set(None);
            close();
            on_created.run(stage);
        }
        Some(Err(e)) => {
            if e.0.is_for("stage_id") {
                check.set(Some(IdCheck {
                    id: form.id.get_untracked().trim().to_owned(),
                    available: false,
                    message: Some(e.0.message.clone()),
                    suggestion: e.0.suggestion.clone(),
                }));
            }
            submit_error.set(Some(e));
        }
        None => {}
    });

    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        submit_error.set(None);
        create.dispatch(CreateStage {
            project: project.get_untracked(),
            name: form.name.get_untracked(),
            stage_type: stage_type.get_untracked(),
            stage_id: form.id.get_untracked(),
        });
    };

    let field_error =
        move |field: &'static str| Signal::derive(move || submit_error.get().and_then(|e| e.message_for(field)));
    let id_message = Signal::derive(move || {
        form.local_error().or_else(|| check.get().filter(|c| !c.available).and_then(|c| c.message))
    });
    let suggestion = move || check.get().filter(|c| !c.available).and_then(|c| c.suggestion);
    let id_available = move || check.get().is_some_and(|c| c.available && c.id == form.id.get().trim());
    let other_error =
        move || submit_error.get().filter(|e| !["name", "stage_type", "stage_id"].iter().any(|f| e.0.is_for(f)));

    view! {
        <Modal open=open title_id="new-stage-title" on_close=move |_| close()>
            <h2 id="new-stage-title" class="text-lg font-semibold text-slate-900">"New stage"</h2>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                <TextField
                    id="new-stage-name"
                    label="Name"
                    node_ref=name_ref
                    placeholder="e.g. Integration tests"
                    value=form.name
                    on_input=move |v: String| {
                        form.set_name(v);
                        if !form.edited.get_untracked() {
                            schedule_check();
                        }
                    }
                    message=field_error("name")
                />
                <StageTypeField id="new-stage-type" value=stage_type message=field_error("stage_type")/>
                <TextField
                    id="new-stage-id"
                    label="Stage ID"
                    mono=true
                    value=form.id
                    on_input=move |v: String| {
                        form.set_id(v);
                        schedule_check();
                    }
                    hint="Unique within the project and used in links. Derived from the name; you can override it."
                    message=id_message
                >
                    {move || suggestion().map(|s| {
                        let label = format!("Use '{s}'");
                        view! {
                            <button
                                type="button"
                                class="text-sm font-medium text-emerald-700 underline"
                                on:click=move |_| {
                                    form.set_id(s.clone());
                                    schedule_check();
                                }
                            >
                                {label}
                            </button>
                        }
                    })}
                    <Show when=id_available>
                        <p class="mt-1 text-sm text-emerald-700" role="status">
                            {move || format!("'{}' is available.", form.id.get().trim())}
                        </p>
                    </Show>
                </TextField>
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <div class="flex justify-end gap-3 pt-2">
                    <button type="button" class=ui::SECONDARY on:click=move |_| close()>"Cancel"</button>
                    <button type="submit" class=ui::PRIMARY disabled=move || create.pending().get()>
                        {move || if create.pending().get() { "Creating…" } else { "Create stage" }}
                    </button>
                </div>
            </form>
        </Modal>
    }
    .into_any()
}
