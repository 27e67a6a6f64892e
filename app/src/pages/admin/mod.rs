//! `/admin`: the administrator's page — users (`users.rs`), the retention of archived stages
//! per type, and the resource limits per type with how this machine enforces them
//! (`limits.rs`).

mod limits;
mod users;

use crate::api::{get_retention, SetRetention};
use crate::components::{loading, successes, ui, ErrorNotice, TextField};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{RetentionPolicy, StageType};

#[component]
pub fn AdminPage() -> impl IntoView {
    let save = ServerAction::<SetRetention>::new();
    let saves = successes(save);
    let policy = Resource::new(move || saves.get(), |_| get_retention());
    view! {
        <Title text="Admin · Pergola Stages"/>
        <h1 class="text-2xl font-bold text-slate-900">"Administration"</h1>
        <users::Users/>
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match policy.await {
                    Ok(policy) => view! { <RetentionForm policy save/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
        <limits::Limits/>
    }
}

#[component]
fn RetentionForm(policy: RetentionPolicy, save: ServerAction<SetRetention>) -> impl IntoView {
    let values = StageType::ALL.map(|t| RwSignal::new(policy.days(t).to_string()));
    let result = save.value();
    let error = move || result.get().and_then(Result::err);
    let saved = move || matches!(result.get(), Some(Ok(_)));
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let [dev, qa, prod] = values.map(|v| v.get_untracked());
        save.dispatch(SetRetention { dev, qa, prod });
    };
    let other_error = move || error().filter(|e| e.0.field.as_deref().is_none_or(|f| !f.starts_with("retention_")));
    view! {
        <section aria-labelledby="retention-title" class=format!("mt-6 max-w-xl {}", ui::CARD)>
            <h2 id="retention-title" class="font-semibold text-slate-900">"Retention of deleted stages"</h2>
            <p class="mt-2 text-sm text-slate-600">
                "A deleted stage is archived and can be restored until its retention runs out; then it is deleted for good. A change applies to stages deleted from now on."
            </p>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                {StageType::ALL
                    .into_iter()
                    .zip(values)
                    .map(|(t, value)| {
                        let field = format!("retention_{}", t.as_str());
                        let message = Signal::derive({
                            let field = field.clone();
                            move || error().and_then(|e| e.message_for(&field))
                        });
                        view! {
                            <TextField
                                id=field
                                label=format!("{} retention (days)", t.label())
                                inputmode="numeric"
                                value=value
                                on_input=move |v: String| value.set(v)
                                message
                            />
                        }
                    })
                    .collect_view()}
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <div class="flex items-center gap-4">
                    <button type="submit" class=ui::PRIMARY disabled=move || save.pending().get()>"Save retention"</button>
                    <p role="status" class="text-sm text-emerald-800">
                        {move || saved().then_some("Saved. Applies to stages deleted from now on.")}
                    </p>
                </div>
            </form>
        </section>
    }
}
