//! `/login`: "Username", "Password", "Sign in". A plain form posting to the server's `/login`
//! (it works before hydration and without JavaScript); after signing in the server sends the
//! user back to `next`, the page they opened while signed out.

use crate::components::{ui, CredentialFields, FormAlert};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The message for the `error` the server sent the form back with.
fn message(error: &str, wait: Option<u64>) -> Option<String> {
    match error {
        "" => None,
        "wrong" => Some("Wrong username or password.".into()),
        "throttled" => {
            let minutes = wait.unwrap_or(60).div_ceil(60);
            Some(format!(
                "Too many failed sign-ins for this username from your address. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            ))
        }
        _ => Some("Signing in failed; please try again.".into()),
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_else(|| "/".into());
    let error = move || {
        let q = query.read();
        message(&q.get("error").unwrap_or_default(), q.get("wait").and_then(|w| w.parse().ok()))
    };
    view! {
        <Title text="Sign in · Pergola Stages"/>
        <div class="mx-auto mt-12 max-w-sm">
            <h1 class="text-2xl font-bold text-slate-900">"Sign in"</h1>
            <form method="post" action="/login" class=format!("mt-6 space-y-4 {}", ui::CARD)>
                <FormAlert message=Signal::derive(error)/>
                <input type="hidden" name="next" value=next/>
                <CredentialFields new_password=false/>
                <button type="submit" class=format!("w-full {}", ui::PRIMARY)>"Sign in"</button>
            </form>
        </div>
    }
}
