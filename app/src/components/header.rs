//! The top bar on every page.

use leptos::prelude::*;

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
