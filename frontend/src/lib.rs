#![recursion_limit = "256"]
//! The browser entry point: hydrates the server-rendered dashboard.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // The page's own code is a chunk of its own (see `app::App`), loaded before the page is
    // hydrated: hydration waits for it.
    let _ = any_spawner::Executor::init_wasm_bindgen();
    leptos::task::spawn_local(async {
        let body = leptos::prelude::document().body().expect("a page has a body");
        leptos::mount::hydrate_from_async(body.clone(), app::App).await.forget();
        // Tells tests (and scripts) that event handlers are attached from now on.
        let _ = body.set_attribute("data-hydrated", "true");
    });
}
