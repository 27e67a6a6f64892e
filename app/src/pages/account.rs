//! `/account`: the signed-in user's password and personal API tokens (for the CLI and CI). A new
//! token is shown once, right after it is created.

use crate::api::{list_tokens, ChangePassword, CreateToken, RevokeToken};
use crate::components::{loading, successes, ui, ErrorNotice, PageError};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{format_time, TokenInfo};

#[component]
pub fn AccountPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let (created, revoked) = (successes(create), successes(revoke));
    let tokens = Resource::new(move || (created.get(), revoked.get()), |_| list_tokens());
    let name = RwSignal::new(String::new());
    let days = RwSignal::new("90".to_owned());
    let on_create = move |ev: SubmitEvent| {
        ev.prevent_default();
        create.dispatch(CreateToken { name: name.get_untracked(), expires_in_days: days.get_untracked() });
    };
    let error =
        move || create.value().get().and_then(Result::err).or_else(|| revoke.value().get().and_then(Result::err));
    view! {
        <Title text="Account · Pergola Stages"/>
        <h1 class="text-2xl font-bold text-slate-900">"Account"</h1>
        <div class="mt-6 grid gap-8 lg:grid-cols-2">
            <section aria-labelledby="tokens-title" class=ui::CARD>
                <h2 id="tokens-title" class="text-lg font-semibold text-slate-900">"API tokens"</h2>
                <p class="mt-1 text-sm text-slate-600">"For the pergola CLI and CI: " <code class="font-mono">"Authorization: Bearer …"</code></p>
                <Transition fallback=loading>
                    {move || Suspend::new(async move {
                        match tokens.await {
                            Ok(list) => view! { <TokenList list revoke/> }.into_any(),
                            Err(error) => view! { <PageError error/> }.into_any(),
                        }
                    })}
                </Transition>
                <form class="mt-4 grid gap-3 sm:grid-cols-[1fr_8rem_auto] sm:items-end" on:submit=on_create novalidate>
                    <div>
                        <label for="token-name" class=ui::LABEL>"Token name"</label>
                        <input id="token-name" type="text" class=ui::INPUT placeholder="ci"
                            prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    </div>
                    <div>
                        <label for="token-days" class=ui::LABEL>"Expires in (days)"</label>
                        <input id="token-days" type="number" min="1" max="3650" class=ui::INPUT
                            prop:value=move || days.get() on:input=move |ev| days.set(event_target_value(&ev))/>
                    </div>
                    <button type="submit" class=ui::PRIMARY disabled=move || create.pending().get()>"Create token"</button>
                </form>
                {move || error().map(|error| view! { <div class="mt-3"><ErrorNotice error/></div> })}
                {move || create.value().get().and_then(Result::ok).map(|t| view! {
                    <div role="status" class="mt-3 rounded-md bg-emerald-50 p-3 text-sm text-emerald-900">
                        <p>{format!("Token '{}' created. Copy it now: it is not shown again.", t.name)}</p>
                        <code class="mt-1 block break-all font-mono" aria-label="New token">{t.token}</code>
                    </div>
                })}
            </section>
            <PasswordForm/>
        </div>
    }
}

#[component]
fn TokenList(list: Vec<TokenInfo>, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="mt-3 text-sm text-slate-600">"No tokens yet."</p> }.into_any();
    }
    view! {
        <table class="mt-3 w-full text-sm" aria-label="API tokens">
            <thead class="text-left text-slate-600">
                <tr><th class="py-1">"Name"</th><th class="py-1">"Expires"</th><th class="py-1">"Last used"</th><th></th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|t| {
                    let name = t.name.clone();
                    view! {
                        <tr class="border-t border-slate-200" aria-label=t.name.clone()>
                            <td class="py-1 font-mono">{t.name.clone()}</td>
                            <td class="py-1 text-slate-600">{t.expires_at.map_or_else(|| "never".to_owned(), format_time)}</td>
                            <td class="py-1 text-slate-600">{t.last_used_at.map_or_else(|| "never".to_owned(), format_time)}</td>
                            <td class="py-1 text-right">
                                <button type="button" class=ui::SECONDARY aria-label=format!("Revoke {name}")
                                    on:click=move |_| { revoke.dispatch(RevokeToken { name: name.clone() }); }>"Revoke"</button>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn PasswordForm() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        change.dispatch(ChangePassword { current: current.get_untracked(), new: new.get_untracked() });
    };
    view! {
        <section aria-labelledby="password-title" class=format!("{} h-fit", ui::CARD)>
            <h2 id="password-title" class="text-lg font-semibold text-slate-900">"Password"</h2>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                <div>
                    <label for="current-password" class=ui::LABEL>"Current password"</label>
                    <input id="current-password" type="password" autocomplete="current-password" class=ui::INPUT
                        on:input=move |ev| current.set(event_target_value(&ev))/>
                </div>
                <div>
                    <label for="new-password" class=ui::LABEL>"New password"</label>
                    <input id="new-password" type="password" autocomplete="new-password" class=ui::INPUT
                        on:input=move |ev| new.set(event_target_value(&ev))/>
                </div>
                {move || change.value().get().and_then(Result::err).map(|error| view! { <ErrorNotice error/> })}
                <button type="submit" class=ui::PRIMARY disabled=move || change.pending().get()>"Change password"</button>
                <p role="status" class="text-sm text-emerald-800">
                    {move || matches!(change.value().get(), Some(Ok(()))).then_some("Password changed.")}
                </p>
            </form>
        </section>
    }
}
