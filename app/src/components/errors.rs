//! Showing errors: a notice, a 404 page body, and the choice between them for a page.

use crate::error::AppError;
use leptos::prelude::*;

/// An error that is not about one field.
#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    view! {
        <div role="alert" class="rounded-md border border-rose-300 bg-rose-50 px-4 py-3 text-sm text-rose-800">
            {error.to_string()}
        </div>
    }
}

/// The 404 page body; also sets the HTTP status when rendered on the server.
#[component]
pub fn NotFound(#[prop(into)] message: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Not found · Pergola Stages"/>
        <section class="mx-auto max-w-xl py-16 text-center">
            <p class="text-sm font-semibold text-emerald-700">"404"</p>
            <h1 class="mt-2 text-3xl font-bold text-slate-900">"Not found"</h1>
            <p class="mt-4 text-slate-600">{message}</p>
            <a href="/" class="mt-6 inline-block text-emerald-700 underline">"Back to all projects"</a>
        </section>
    }
}

/// Shows the error of a page's resource: a 404 page for missing things, a notice otherwise.
#[component]
pub fn PageError(error: AppError) -> impl IntoView {
    if error.is_not_found() {
        view! { <NotFound message=error.to_string()/> }.into_any()
    } else {
        view! { <div class="py-8"><ErrorNotice error/></div> }.into_any()
    }
}
