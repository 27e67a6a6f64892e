//! The modal dialog (the new-stage popup, the delete confirmation).

use leptos::prelude::*;

/// A modal dialog (`role="dialog"`, labelled by its title): closes on Escape and on a click
/// outside. Rendered with `<Show>`, since a portal renders nothing on the server.
#[component]
pub fn Modal(
    #[prop(into)] open: Signal<bool>,
    /// The `id` of the element that titles the dialog.
    title_id: &'static str,
    #[prop(into)] on_close: Callback<()>,
    children: ChildrenFn,
) -> impl IntoView {
    view! {
        <Show when=move || open.get()>
            <div
                class="fixed inset-0 z-40 flex items-start justify-center bg-slate-900/40 p-4 pt-24"
                on:click=move |_| on_close.run(())
            >
                <div
                    role="dialog"
                    aria-modal="true"
                    aria-labelledby=title_id
                    class="w-full max-w-md rounded-xl bg-white p-6 shadow-xl"
                    on:click=|ev| ev.stop_propagation()
                    on:keydown=move |ev| if ev.key() == "Escape" { on_close.run(()) }
                >
                    {children()}
                </div>
            </div>
        </Show>
    }
}
