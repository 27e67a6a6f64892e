//! The top bar on every page: who is signed in, and "Sign out"; below it, a banner while
//! components run without the sandbox.

use crate::api::{current_user, get_isolation};
use leptos::prelude::*;
use pergola_domain::Isolation;

/// The top bar on every page.
#[component]
pub fn Header() -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    let isolation = Resource::new(|| (), |_| get_isolation());
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
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    isolation.await.ok().flatten().filter(Isolation::unsandboxed).map(|isolation| view! { <SandboxBanner isolation/> })
                })}
            </Transition>
        </header>
    }
}

/// Says loudly that components run unsandboxed (or that none can start).
#[component]
fn SandboxBanner(isolation: Isolation) -> impl IntoView {
    let title = if isolation.sandbox == "off" { "Sandbox off" } else { "No sandbox: stages cannot start" };
    let text = if isolation.sandbox == "off" {
        "Components run without the bubblewrap sandbox (PERGOLA_SANDBOX=off), as the server's user: any stage can read the server's database and secret key, every other stage's files and secrets, and stop the server. Only run code you trust."
    } else {
        "Components must run in the bubblewrap sandbox and it cannot run on this machine."
    };
    view! {
        <aside aria-label=title class="border-t border-rose-300 bg-rose-50">
            <div class="mx-auto max-w-6xl px-6 py-2 text-sm text-rose-900">
                <strong class="font-semibold">{title}". "</strong>
                {text}
                // Why none can start (when off, the sentence above says it all).
                {(isolation.sandbox != "off").then(|| view! { <span class="block text-rose-800">{isolation.sandbox_detail.clone()}</span> })}
            </div>
        </aside>
    }
}
