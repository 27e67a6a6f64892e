//! `/projects/{project}/builds`: upload a build (an archive, from a file input or dropped on the
//! page, with its progress) and list the project's builds with where they run.
//!
//! The upload goes straight to the REST API (`POST /api/v1/projects/{project}/builds`, the
//! archive as the body) with an `XMLHttpRequest`, whose `upload.onprogress` reports the bytes
//! sent; being same-origin, it carries the session cookie and the dashboard's `Origin`.
//! Registering a directory on the server (administrators, `PERGOLA_PATH_BUILDS`) is left to
//! the API and the CLI.

use super::param;
use crate::api::project_builds;
use crate::components::{loading, ui, PageError};
use crate::paths;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{format_time, human_size, BuildListing, BuildStage};

const EXAMPLE: &str = r#"version = "1.0.0"

[[component]]
name = "web"
kind = "service"
command = "./web"
storage = ["data"]
health = { path = "/healthz", interval_secs = 5 }
"#;

/// Where an upload is.
#[derive(Clone, Debug, PartialEq)]
enum Upload {
    Idle,
    /// Bytes sent so far, of the file's size.
    Sending {
        name: String,
        sent: f64,
        total: f64,
    },
    /// Everything sent; the server checks and unpacks it.
    Checking {
        name: String,
    },
    Done(String),
    Failed(String),
}

/// The Content-Type of an archive by its file name: tar with gzip or with zstd.
fn content_type(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some("application/gzip")
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Some("application/zstd")
    } else {
        None
    }
}

#[component]
pub fn BuildsPage() -> impl IntoView {
    let project = param("project");
    // The list is read again after each upload.
    let uploads = RwSignal::new(0u32);
    let builds = Resource::new(move || (project.get(), uploads.get()), |(p, _)| project_builds(p));
    let state = RwSignal::new(Upload::Idle);
    let dragging = RwSignal::new(false);
    let busy = move || matches!(state.get(), Upload::Sending { .. } | Upload::Checking { .. });
    let start = move |file: web_sys::File| {
        if matches!(state.get_untracked(), Upload::Sending { .. } | Upload::Checking { .. }) {
            return;
        }
        let name = file.name();
        let Some(kind) = content_type(&name) else {
            state.set(Upload::Failed(format!(
                "'{name}' is not a build archive: choose a .tar.gz, .tgz or .tar.zst file (see below how to make one)."
            )));
            return;
        };
        let url = format!("/api/v1/projects/{}/builds", project.get_untracked());
        state.set(Upload::Sending { name: name.clone(), sent: 0.0, total: file.size() });
        leptos::task::spawn_local(async move {
            let shown = name.clone();
            let progress = move |sent: f64, total: f64| {
                let next = if sent >= total {
                    Upload::Checking { name: shown.clone() }
                } else {
                    Upload::Sending { name: shown.clone(), sent, total }
                };
                state.try_set(next);
            };
            match upload::send(&url, &file, kind, progress).await {
                Ok(build) => {
                    state.try_set(Upload::Done(build));
                    uploads.try_update(|n| *n += 1);
                }
                Err(why) => {
                    state.try_set(Upload::Failed(why));
                }
            }
        });
    };
    let on_change = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            start(file);
        }
        // The same file may be chosen again (after fixing it).
        input.set_value("");
    };
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|files| files.get(0)) {
            start(file);
        }
    };
    let on_dragover = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(true);
    };
    let dropzone = move || {
        let highlight =
            if dragging.get() { "border-emerald-600 bg-emerald-50" } else { "border-slate-300 bg-slate-50" };
        format!(
            "mt-4 rounded-lg border-2 border-dashed p-6 text-center focus-within:ring-2 focus-within:ring-emerald-200 \
             {highlight}"
        )
    };
    let percent = move || match state.get() {
        Upload::Sending { sent, total, .. } if total > 0.0 => (sent / total * 100.0).floor(),
        Upload::Checking { .. } => 100.0,
        _ => 0.0,
    };
    view! {
        <Title text="Builds · Pergola Stages"/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=move || paths::project(&project.get()) class="hover:underline">{move || project.get()}</a>
            " / builds"
        </nav>
        <h1 class="mt-2 text-2xl font-bold text-slate-900">"Builds"</h1>
        <div class="mt-6 grid gap-8 lg:grid-cols-[1fr_28rem]">
            <section aria-labelledby="builds-title">
                <h2 id="builds-title" class="sr-only">"Uploaded builds"</h2>
                <Transition fallback=loading>
                    {move || Suspend::new(async move {
                        match builds.await {
                            Ok(list) => view! { <BuildList list project=project.get_untracked()/> }.into_any(),
                            Err(error) => view! { <PageError error/> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
            <section aria-labelledby="upload-title" class=format!("{} h-fit", ui::CARD)>
                <h2 id="upload-title" class="text-lg font-semibold text-slate-900">"Upload a build"</h2>
                <p class="mt-1 text-sm text-slate-600">
                    "A build is an archive of its files — tar with gzip or zstd — with its manifest, "
                    <code class="font-mono text-xs">"pergola.toml"</code>
                    ", at the root."
                </p>
                <div
                    class=dropzone
                    on:dragover=on_dragover
                    on:dragenter=on_dragover
                    on:dragleave=move |_| dragging.set(false)
                    on:drop=on_drop
                >
                    <label for="build-archive" class="block text-sm font-medium text-slate-700">
                        "Build archive"
                    </label>
                    <p class="mt-1 text-sm text-slate-600" id="build-archive-hint">
                        "Drop a .tar.gz, .tgz or .tar.zst file here, or choose one."
                    </p>
                    <input
                        id="build-archive"
                        type="file"
                        accept=".tar.gz,.tgz,.tar.zst,.tzst,application/gzip,application/zstd"
                        aria-describedby="build-archive-hint"
                        class="mx-auto mt-3 block text-sm text-slate-600 file:mr-3 file:rounded-md file:border-0 file:bg-emerald-700 file:px-3 file:py-1.5 file:text-sm file:font-semibold file:text-white hover:file:bg-emerald-800 disabled:opacity-50"
                        disabled=busy
                        on:change=on_change
                    />
                </div>
                <div class="mt-3 space-y-2" aria-live="polite">
                    {move || match state.get() {
                        Upload::Sending { name, sent, total } => {
                            view! {
                                <label for="upload-progress" class="block text-sm text-slate-700">
                                    {format!(
                                        "Uploading {name}: {} of {}",
                                        human_size(sent as u64),
                                        human_size(total as u64),
                                    )}
                                </label>
                                <progress id="upload-progress" class="w-full" max="100" value=percent></progress>
                            }
                                .into_any()
                        }
                        Upload::Checking { name } => {
                            view! {
                                <label for="upload-progress" class="block text-sm text-slate-700">
                                    {format!("{name} sent; the server checks and unpacks it…")}
                                </label>
                                <progress id="upload-progress" class="w-full" max="100" value=percent></progress>
                            }
                                .into_any()
                        }
                        Upload::Done(message) => {
                            view! { <p role="status" class="text-sm break-all text-emerald-800">{message}</p> }.into_any()
                        }
                        Upload::Failed(why) => {
                            view! {
                                <p role="alert" class="rounded-md border border-rose-200 bg-rose-50 px-3 py-2 text-sm text-rose-800">
                                    {why}
                                </p>
                            }
                                .into_any()
                        }
                        Upload::Idle => ().into_any(),
                    }}
                </div>
                <h3 class="mt-6 text-sm font-semibold text-slate-900">"Making an archive"</h3>
                <p class="mt-1 text-sm text-slate-600">
                    "With the CLI, which packs the directory (honouring a .pergolaignore) and uploads it:"
                </p>
                <pre class="mt-1 overflow-x-auto rounded bg-slate-900 px-3 py-2 font-mono text-xs text-slate-100">
                    {move || format!("pergola create build --dir DIR -p {}", project.get())}
                </pre>
                <p class="mt-2 text-sm text-slate-600">"Or pack it yourself and upload the file here:"</p>
                <pre class="mt-1 overflow-x-auto rounded bg-slate-900 px-3 py-2 font-mono text-xs text-slate-100">
                    "tar czf build.tar.gz -C DIR ."
                </pre>
                <details class="mt-3 text-sm text-slate-600">
                    <summary class="cursor-pointer">"An example pergola.toml"</summary>
                    <pre class="mt-2 overflow-x-auto rounded bg-slate-100 px-3 py-2 font-mono text-xs text-slate-800">
                        {EXAMPLE}
                    </pre>
                </details>
            </section>
        </div>
    }
}

#[component]
fn BuildList(list: Vec<BuildListing>, project: String) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="rounded-lg border border-dashed border-slate-300 p-8 text-center text-slate-600">
                "No builds yet. Upload one, then deploy it to a stage."
            </p>
        }
        .into_any();
    }
    view! {
        <ul class="space-y-3" aria-label="Builds">
            {list.into_iter().map(|listing| view! { <BuildItem listing project=project.clone()/> }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn BuildItem(listing: BuildListing, project: String) -> impl IntoView {
    let BuildListing { build: b, running_on, components } = listing;
    let components = components.join(", ");
    let copied = RwSignal::new(false);
    let number = b.number;
    let digest = b.digest.clone().map(|full| {
        let short = b.short_digest().unwrap_or_default();
        let copy_digest = full.clone();
        let copy = move |_| {
            let _ = window().navigator().clipboard().write_text(&copy_digest);
            copied.set(true);
        };
        view! {
            <dt class="text-slate-500">"Digest"</dt>
            <dd class="flex flex-wrap items-center gap-2">
                <code class="font-mono text-xs text-slate-800" title=full.clone() data-digest=full>
                    {short}
                </code>
                <button
                    type="button"
                    class="rounded border border-slate-300 px-1.5 text-xs text-slate-600 hover:bg-slate-50"
                    aria-label=format!("Copy the digest of build {number}")
                    on:click=copy
                >
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </dd>
        }
    });
    let size = b.size.map(|size| {
        let unpacked = b.unpacked_size.map(|u| format!(" ({} unpacked)", human_size(u))).unwrap_or_default();
        view! {
            <dt class="text-slate-500">"Size"</dt>
            <dd>{format!("{}{unpacked}", human_size(size))}</dd>
        }
    });
    let uploaded = format!(
        "{} {}",
        b.uploaded_by.as_deref().map(|u| format!("by {u},")).unwrap_or_default(),
        format_time(b.created_at)
    );
    let origin = if b.digest.is_some() {
        view! {
            <dt class="text-slate-500">"Uploaded"</dt>
            <dd>{uploaded}</dd>
        }
        .into_any()
    } else {
        view! {
            <dt class="text-slate-500">"Registered"</dt>
            <dd>
                {uploaded} <span class="block font-mono text-xs text-slate-500">{format!("from {}", b.workdir)}</span>
            </dd>
        }
        .into_any()
    };
    let runs = if running_on.is_empty() {
        view! { <span class="text-slate-500">"no stage"</span> }.into_any()
    } else {
        view! {
            <ul class="flex flex-wrap gap-x-3 gap-y-1" aria-label=format!("Stages running build {number}")>
                {running_on.into_iter().map(|s| view! { <RunsOn stage=s project=project.clone()/> }).collect_view()}
            </ul>
        }
        .into_any()
    };
    view! {
        <li class=ui::CARD aria-label=format!("Build {number}")>
            <div class="flex flex-wrap items-baseline justify-between gap-2">
                <h3 class="font-semibold text-slate-900">
                    {format!("Build {number}")}
                    {b.version.map(|v| view! { <span class="ml-2 text-sm font-normal text-slate-600">{v}</span> })}
                    {b.expired.then(|| view! {
                        <span
                            class="ml-2 rounded bg-slate-200 px-2 py-0.5 text-xs font-semibold text-slate-700"
                            title="Its files were deleted: no release used them for the retention period. Upload it again to deploy it."
                        >
                            "expired"
                        </span>
                    })}
                </h3>
            </div>
            <dl class="mt-2 grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm text-slate-700">
                {digest}
                {size}
                {origin}
                <dt class="text-slate-500">"Components"</dt>
                <dd>{components}</dd>
                <dt class="text-slate-500">"Runs on"</dt>
                <dd>{runs}</dd>
            </dl>
        </li>
    }
}

#[component]
fn RunsOn(stage: BuildStage, project: String) -> impl IntoView {
    let note = format!("release {}, {}", stage.release, stage.status.as_str());
    view! {
        <li>
            <a href=paths::stage(&project, &stage.stage_id) class="font-medium text-emerald-800 hover:underline">
                {stage.stage_name}
            </a>
            <span class="ml-1 text-xs text-slate-500">{format!("({} · {note})", stage.stage_type.label())}</span>
        </li>
    }
}

/// The upload itself: an `XMLHttpRequest` (a `fetch` reports no upload progress).
mod upload {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};

    /// Sends `file` to `url` as `content_type`, calling `progress(sent, total)` as it goes.
    /// Answers what to tell the user: the new build, or the server's reason for refusing it.
    pub async fn send(
        url: &str,
        file: &web_sys::File,
        content_type: &str,
        progress: impl Fn(f64, f64) + 'static,
    ) -> Result<String, String> {
        let failed = |_: JsValue| "The browser could not send the upload.".to_owned();
        let xhr = web_sys::XmlHttpRequest::new().map_err(failed)?;
        xhr.open_with_async("POST", url, true).map_err(failed)?;
        xhr.set_request_header("Content-Type", content_type).map_err(failed)?;
        xhr.set_request_header("Accept", "application/json").map_err(failed)?;
        let on_progress = Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
            if e.length_computable() {
                progress(e.loaded(), e.total());
            }
        });
        xhr.upload().map_err(failed)?.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        // Settled when the request ends, however it ends (answered, failed, aborted).
        let ended = js_sys::Promise::new(&mut |resolve, _reject| xhr.set_onloadend(Some(&resolve)));
        xhr.send_with_opt_blob(Some(file)).map_err(failed)?;
        let _ = wasm_bindgen_futures::JsFuture::from(ended).await;
        drop(on_progress);
        let status = xhr.status().unwrap_or(0);
        let body = xhr.response_text().ok().flatten().unwrap_or_default();
        let answer = js_sys::JSON::parse(&body).ok();
        let field = |name: &str| {
            answer
                .as_ref()
                .and_then(|a| js_sys::Reflect::get(a, &JsValue::from_str(name)).ok())
                .filter(|v| !v.is_undefined() && !v.is_null())
        };
        match status {
            201 => {
                let number = field("number").and_then(|n| n.as_f64()).unwrap_or_default();
                let version =
                    field("version").and_then(|v| v.as_string()).map(|v| format!(" ({v})")).unwrap_or_default();
                let digest = field("digest").and_then(|d| d.as_string()).unwrap_or_default();
                Ok(format!("Build {number}{version} uploaded: {digest}."))
            }
            0 => Err("The upload failed: the connection to the server was lost.".to_owned()),
            _ => Err(field("detail")
                .or_else(|| field("title"))
                .and_then(|d| d.as_string())
                .unwrap_or_else(|| format!("The upload was refused (HTTP {status})."))),
        }
    }
}
