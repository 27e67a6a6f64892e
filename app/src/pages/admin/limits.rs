//! The admin page's "Resource limits" section: memory, processes, open files, CPU priority and
//! out-of-memory preference per stage type, and how this machine enforces them.

use crate::api::{get_isolation, get_limits, SetLimits};
use crate::components::{loading, successes, ui, ErrorNotice, TextField};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use pergola_domain::{Isolation, Limit, LimitsPolicy, StageType};

#[component]
pub fn Limits() -> impl IntoView {
    let save = ServerAction::<SetLimits>::new();
    let saves = successes(save);
    let data = Resource::new(move || saves.get(), |_| async { (get_limits().await, get_isolation().await) });
    view! {
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    (Ok(policy), Ok(isolation)) => view! { <LimitsForm policy isolation save/> }.into_any(),
                    (Err(error), _) | (_, Err(error)) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn LimitsForm(policy: LimitsPolicy, isolation: Option<Isolation>, save: ServerAction<SetLimits>) -> impl IntoView {
    // One text per (type, limit), in the order the server function reads them.
    let values: Vec<(StageType, Limit, RwSignal<String>)> = StageType::ALL
        .into_iter()
        .flat_map(|t| Limit::ALL.map(|l| (t, l, RwSignal::new(policy.of(t).get(l).to_string()))))
        .collect();
    let result = save.value();
    let error = move || result.get().and_then(Result::err);
    let saved = move || matches!(result.get(), Some(Ok(_)));
    let on_submit = {
        let values = values.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            save.dispatch(SetLimits { values: values.iter().map(|(_, _, v)| v.get_untracked()).collect() });
        }
    };
    let other_error = move || error().filter(|e| e.0.field.as_deref().is_none_or(|f| !f.starts_with("limits_")));
    let enforcement = isolation.map(|i| {
        view! {
            <p class="mt-2 text-sm text-slate-600">
                <span class="font-medium text-slate-800">"Enforced here with " {i.limits.clone()} ": "</span>
                {i.limits_detail.clone()}
            </p>
            <p class="mt-2 text-sm text-slate-600">
                <span class="font-medium text-slate-800">"Network (" {i.network.clone()} "): "</span>
                {i.network_detail.clone()}
            </p>
        }
    });
    view! {
        <section aria-labelledby="limits-title" class=format!("mt-6 {}", ui::CARD)>
            <h2 id="limits-title" class="font-semibold text-slate-900">"Resource limits"</h2>
            <p class="mt-2 text-sm text-slate-600">
                "Every component of a stage (with every process it starts) gets its stage type's limits: PROD first, DEV last. A change applies to components started from now on (a deploy, a resume, a restart)."
            </p>
            {enforcement}
            <form class="mt-4" on:submit=on_submit novalidate>
                <div class="grid gap-4 md:grid-cols-3">
                    {StageType::ALL
                        .into_iter()
                        .map(|t| {
                            let fields = values
                                .iter()
                                .filter(|(vt, _, _)| *vt == t)
                                .map(|&(_, limit, value)| {
                                    let field = limit.field(t);
                                    let message = Signal::derive({
                                        let field = field.clone();
                                        move || error().and_then(|e| e.message_for(&field))
                                    });
                                    view! {
                                        <TextField
                                            id=field
                                            label=limit.label()
                                            inputmode="numeric"
                                            value=value
                                            on_input=move |v: String| value.set(v)
                                            message
                                        />
                                    }
                                })
                                .collect_view();
                            view! {
                                <fieldset class="space-y-3 rounded-md border border-slate-200 p-3">
                                    <legend class="px-1 text-sm font-semibold text-slate-800">{t.label()}</legend>
                                    {fields}
                                </fieldset>
                            }
                        })
                        .collect_view()}
                </div>
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <div class="mt-4 flex items-center gap-4">
                    <button type="submit" class=ui::PRIMARY disabled=move || save.pending().get()>"Save limits"</button>
                    <p role="status" class="text-sm text-emerald-800">
                        {move || saved().then_some("Saved. Applies to components started from now on.")}
                    </p>
                </div>
            </form>
        </section>
    }
}
