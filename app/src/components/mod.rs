//! Building blocks shared by several pages. A section only one page uses lives beside that
//! page in [`crate::pages`].

mod badges;
pub mod derived_id;
mod errors;
mod fields;
mod header;
mod live;
mod modal;
pub mod ui;

pub use badges::{StatusBadge, TypeBadge};
pub use errors::{ErrorNotice, NotFound, PageError};
pub use fields::{CredentialFields, FieldMessage, FormAlert, StageTypeField, TextField};
pub use header::Header;
pub use live::{use_live, Live, OfflineNotice};
pub use modal::Modal;

use leptos::prelude::*;

/// Counts an action's successful completions: the refetch source for a page with a form. A
/// refused submission must not refetch, since that re-renders (and so resets) the form the
/// user is still filling in.
pub fn successes<S>(action: ServerAction<S>) -> ReadSignal<u32>
where
    S: leptos::server_fn::ServerFn + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
    S::Error: Clone + Send + Sync + 'static,
{
    let (count, set_count) = signal(0u32);
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            set_count.update(|n| *n += 1);
        }
    });
    count
}

pub fn loading() -> impl IntoView {
    view! { <p class="py-8 text-slate-500" aria-busy="true">"Loading…"</p> }
}
