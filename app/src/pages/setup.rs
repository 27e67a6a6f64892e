//! `/setup`: a fresh instance's first page. Whoever opens it must type the one-time setup code
//! the server printed in its log (so the first visitor of a public address cannot claim the
//! instance), then "Create the administrator account".

use crate::components::{ui, CredentialFields, FormAlert};
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
                <FormAlert message=Signal::derive(error)/>
                <div>
                    <label for="code" class=ui::LABEL>"Setup code"</label>
                    <input id="code" name="code" type="text" autocomplete="off" spellcheck="false" required class=format!("{} font-mono", ui::INPUT)/>
                </div>
                <CredentialFields new_password=true/>
                <button type="submit" class=format!("w-full {}", ui::PRIMARY)>"Create the administrator account"</button>
            </form>
        </div>
    }
}
