//! `/invite/{token}`: someone invited by an administrator chooses a username and password; the
//! account is created (joining the project of the invitation, if any) and signed in. The link
//! works once, for 7 days.

use super::param;
use crate::components::{ui, CredentialFields, FormAlert};
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
                <FormAlert message=Signal::derive(error)/>
                <input type="hidden" name="token" value=move || token.get()/>
                <CredentialFields new_password=true/>
                <button type="submit" class=format!("w-full {}", ui::PRIMARY)>"Create my account"</button>
            </form>
        </div>
    }
}
