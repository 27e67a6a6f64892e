//! `/invite/{token}`: someone invited by an administrator chooses a username and password; the
//! account is created (joining the project of the invitation, if any) and signed in. The link
//! works once, for 7 days.

use super::param;
use crate::components::ui;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn InvitePage() -> impl IntoView {
    let token = param("token");
    let query = use_query_map();
    let error = move || query.read().get("message").filter(|m| !m.is_empty());
    view! {
        <Title text="Create your account · Pergola Stages"/>
        <div class="mx-auto mt-12 max-w-sm">
            <h1 class="text-2xl font-bold text-slate-900">"Create your account"</h1>
            <p class="mt-2 text-sm text-slate-600">"You were invited to Pergola Stages. Choose a username and a password (at least 10 characters)."</p>
            <form method="post" action="/invite" class=format!("mt-6 space-y-4 {}", ui::CARD)>
                {move || error().map(|e| view! { <p role="alert" class="rounded-md bg-rose-50 p-3 text-sm text-rose-800">{e}</p> })}
                <input type="hidden" name="token" prop:value=move || token.get()/>
                <div>
                    <label for="username" class=ui::LABEL>"Username"</label>
                    <input id="username" name="username" type="text" autocomplete="username" required class=ui::INPUT/>
                </div>
                <div>
                    <label for="password" class=ui::LABEL>"Password"</label>
                    <input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required class=ui::INPUT/>
                </div>
                <button type="submit" class=format!("w-full {}", ui::PRIMARY)>"Create my account"</button>
            </form>
        </div>
    }
}
