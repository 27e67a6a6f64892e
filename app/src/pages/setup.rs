//! `/setup`: a fresh instance's first page. Whoever opens it must type the one-time setup code
//! the server printed in its log (so the first visitor of a public address cannot claim the
//! instance), then "Create the administrator account".

use crate::components::ui;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn SetupPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("message").filter(|m| !m.is_empty());
    view! {
        <Title text="Set up · Pergola Stages"/>
        <div class="mx-auto mt-12 max-w-md">
            <h1 class="text-2xl font-bold text-slate-900">"Create the administrator account"</h1>
            <p class="mt-2 text-sm text-slate-600">
                "This instance has no user yet. Type the setup code the server printed in its log when it started, "
                "then choose the administrator's username and password (at least 10 characters)."
            </p>
            <form method="post" action="/setup" class=format!("mt-6 space-y-4 {}", ui::CARD)>
                {move || error().map(|e| view! { <p role="alert" class="rounded-md bg-rose-50 p-3 text-sm text-rose-800">{e}</p> })}
                <div>
                    <label for="code" class=ui::LABEL>"Setup code"</label>
                    <input id="code" name="code" type="text" autocomplete="off" spellcheck="false" required class=format!("{} font-mono", ui::INPUT)/>
                </div>
                <div>
                    <label for="username" class=ui::LABEL>"Username"</label>
                    <input id="username" name="username" type="text" autocomplete="username" required class=ui::INPUT/>
                </div>
                <div>
                    <label for="password" class=ui::LABEL>"Password"</label>
                    <input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required class=ui::INPUT/>
                </div>
                <button type="submit" class=format!("w-full {}", ui::PRIMARY)>"Create the administrator account"</button>
            </form>
        </div>
    }
}
