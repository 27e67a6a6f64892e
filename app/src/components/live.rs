//! Live updates: one `EventSource` per open page on the server's change stream
//! (`GET /api/v1/projects/{project}/changes`, or a stage's). The stream only says *that*
//! something changed; the page's resource depends on [`Live::changes`] and reads again.
//! When the stream drops, the browser tries again after the second the server asked for;
//! when it gives up (the server answered with an error, or is gone), this tries again
//! itself, waiting longer each time (1 s, 2 s, 4 s … 30 s). A page shows when it is offline.
//! A tab in the background closes its stream and opens it again when shown (and reads
//! everything again): over HTTP/1.1 a browser opens at most six connections to one server, and
//! a stream holds one — seven open tabs would leave none for the pages' requests.

use leptos::prelude::*;

/// What an open page hears.
#[derive(Clone, Copy)]
pub struct Live {
    /// Counts the changes heard (and reconnections, after which anything may have changed).
    pub changes: ReadSignal<u32>,
    /// Counts the notes that components printed new output.
    pub output: ReadSignal<u32>,
    /// Counts the notes of new metrics (every 10 s while something runs).
    pub metrics: ReadSignal<u32>,
    /// Whether the stream is down (the page may be out of date).
    pub offline: ReadSignal<bool>,
}

/// Opens the change stream at `url` for as long as the calling component lives.
pub fn use_live(url: impl Fn() -> String + Send + Sync + 'static) -> Live {
    let (changes, set_changes) = signal(0u32);
    let (output, set_output) = signal(0u32);
    let (metrics, set_metrics) = signal(0u32);
    let (offline, set_offline) = signal(false);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let stream = browser::Stream::open(url(), [set_changes, set_output, set_metrics], set_offline);
        let stream = send_wrapper::SendWrapper::new(stream);
        on_cleanup(move || stream.take().close());
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (url, set_changes, set_output, set_metrics, set_offline);
    Live { changes, output, metrics, offline }
}

/// Says so while a page's live stream is down.
#[component]
pub fn OfflineNotice(live: Live) -> impl IntoView {
    move || {
        live.offline.get().then(|| {
            view! {
                <p role="status" class="mb-4 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-900">
                    "Offline — reconnecting… What you see may be out of date."
                </p>
            }
        })
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::EventSource;

    /// What the `EventSource` calls on an event.
    type Handler = Closure<dyn FnMut(web_sys::Event)>;

    /// The longest wait between two tries.
    const MAX_BACKOFF_MS: i32 = 30_000;

    struct State {
        url: String,
        source: RefCell<Option<EventSource>>,
        /// Closures the `EventSource` calls; kept alive with it.
        handlers: RefCell<Vec<Handler>>,
        backoff_ms: Cell<i32>,
        /// Whether the stream was open once: a `ready` after that is a reconnection.
        opened: Cell<bool>,
        retry: Cell<Option<i32>>,
        closed: Cell<bool>,
        /// Listens for the tab being hidden or shown.
        visibility: RefCell<Option<Handler>>,
        changes: WriteSignal<u32>,
        output: WriteSignal<u32>,
        metrics: WriteSignal<u32>,
        offline: WriteSignal<bool>,
    }

    pub struct Stream(Rc<State>);

    impl Stream {
        /// `counters`: of changes, output and metrics notes.
        pub fn open(url: String, counters: [WriteSignal<u32>; 3], offline: WriteSignal<bool>) -> Self {
            let [changes, output, metrics] = counters;
            let state = Rc::new(State {
                url,
                source: RefCell::new(None),
                handlers: RefCell::new(Vec::new()),
                backoff_ms: Cell::new(1_000),
                opened: Cell::new(false),
                retry: Cell::new(None),
                closed: Cell::new(false),
                visibility: RefCell::new(None),
                changes,
                output,
                metrics,
                offline,
            });
            let s = state.clone();
            let on_visibility: Handler = Closure::new(move |_| {
                if document().hidden() {
                    disconnect(&s);
                    // Shown again, the page reads everything again.
                    s.opened.set(true);
                } else if s.source.borrow().is_none() {
                    connect(&s);
                }
            });
            let _ =
                document().add_event_listener_with_callback("visibilitychange", on_visibility.as_ref().unchecked_ref());
            *state.visibility.borrow_mut() = Some(on_visibility);
            if document().hidden() {
                // Opened in the background: read everything again when first shown.
                state.opened.set(true);
            } else {
                connect(&state);
            }
            Stream(state)
        }

        pub fn close(self) {
            self.0.closed.set(true);
            disconnect(&self.0);
            if let Some(listener) = self.0.visibility.borrow_mut().take() {
                let _ = document()
                    .remove_event_listener_with_callback("visibilitychange", listener.as_ref().unchecked_ref());
            }
        }
    }

    /// Closes the stream and stops trying again (the page is closed, or its tab hidden).
    fn disconnect(state: &State) {
        if let Some(id) = state.retry.take() {
            window().clear_timeout_with_handle(id);
        }
        if let Some(source) = state.source.borrow_mut().take() {
            source.close();
        }
        state.handlers.borrow_mut().clear();
    }

    fn connect(state: &Rc<State>) {
        if state.closed.get() {
            return;
        }
        let Ok(source) = EventSource::new(&state.url) else {
            state.offline.set(true);
            return;
        };
        let mut handlers = Vec::new();
        let on = |name: &str, f: Box<dyn FnMut(web_sys::Event)>, handlers: &mut Vec<_>| {
            let closure = Closure::wrap(f);
            let _ = source.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
            handlers.push(closure);
        };
        let s = state.clone();
        on(
            "ready",
            Box::new(move |_| {
                s.offline.set(false);
                s.backoff_ms.set(1_000);
                // After a reconnection, anything may have changed meanwhile.
                if s.opened.replace(true) {
                    s.changes.update(|n| *n += 1);
                }
            }),
            &mut handlers,
        );
        let s = state.clone();
        on("change", Box::new(move |_| s.changes.update(|n| *n += 1)), &mut handlers);
        let s = state.clone();
        on("output", Box::new(move |_| s.output.update(|n| *n += 1)), &mut handlers);
        let s = state.clone();
        on("metrics", Box::new(move |_| s.metrics.update(|n| *n += 1)), &mut handlers);
        let s = state.clone();
        on(
            "error",
            Box::new(move |_| {
                s.offline.set(true);
                let given_up = s.source.borrow().as_ref().is_some_and(|src| src.ready_state() == EventSource::CLOSED);
                if given_up {
                    retry_later(&s);
                }
            }),
            &mut handlers,
        );
        if let Some(old) = state.source.borrow_mut().replace(source) {
            old.close();
        }
        *state.handlers.borrow_mut() = handlers;
    }

    /// The browser gave up on the stream: try again later, waiting longer each time.
    fn retry_later(state: &Rc<State>) {
        if state.closed.get() || state.retry.get().is_some() || document().hidden() {
            return;
        }
        let wait = state.backoff_ms.get();
        state.backoff_ms.set((wait * 2).min(MAX_BACKOFF_MS));
        let s = state.clone();
        let again = Closure::once_into_js(move || {
            s.retry.set(None);
            connect(&s);
        });
        if let Ok(id) = window().set_timeout_with_callback_and_timeout_and_arguments_0(again.unchecked_ref(), wait) {
            state.retry.set(Some(id));
        }
    }
}
