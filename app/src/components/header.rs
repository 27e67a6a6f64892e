//! The top bar on every page: who is signed in, and "Sign out".

use crate::api::current_user;
use leptos::prelude::*;

/// The top bar on every page.
#[component]
pub fn Header() -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    view! {
        <header class="border-b border-slate-200 bg-white">
            <nav aria-label="Main" class="mx-auto flex max-w-6xl items-center gap-6 px-6 py-3">
                <a href="/" class="flex items-center gap-2 font-semibold text-slate-900">
                    <span aria-hidden="true" class="inline-block h-6 w-6 rounded bg-emerald-600"></span>
                    "Pergola Stages"
                </a>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        me.await.ok().flatten().map(|me| view! {
                            <a href="/" class="text-sm text-slate-600 hover:text-slate-900">"Projects"</a>
                            {me.is_admin.then(|| view! {
                                <a href="/admin" class="text-sm text-slate-600 hover:text-slate-900">"Admin"</a>
                            })}
                            <a href="/account" class="ml-auto text-sm text-slate-600 hover:text-slate-900" aria-label="Signed in as">{me.username.clone()}</a>
                            <form method="post" action="/logout">
                                <button type="submit" class="text-sm font-semibold text-slate-700 hover:text-slate-900">"Sign out"</button>
                            </form>
                        })
                    })}
                </Transition>
            </nav>
        </header>
    }
}
