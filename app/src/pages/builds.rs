//! `/projects/{project}/builds`: register a build from its manifest; list the project's builds.

use super::param;
use crate::api::{list_builds, RegisterBuild};
use crate::components::{loading, successes, ui, ErrorNotice, FieldMessage, PageError, TextField};
use crate::paths;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{format_time, Build};

const EXAMPLE: &str = r#"version = "1.0.0"

[[component]]
name = "web"
kind = "service"
command = "./web"
storage = ["data"]
health = { path = "/healthz", interval_secs = 5 }
"#;

#[component]
pub fn BuildsPage() -> impl IntoView {
    let project = param("project");
    let register = ServerAction::<RegisterBuild>::new();
    let registered = successes(register);
    let builds = Resource::new(move || (project.get(), registered.get()), |(p, _)| list_builds(p));
    let manifest = RwSignal::new(String::new());
    let workdir = RwSignal::new(String::new());
    let uploaded = RwSignal::new(None::<String>);
    // A manifest file chosen from disk fills the text area (read in the browser).
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
        let name = file.name();
        leptos::task::spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string());
            match text {
                Some(text) => {
                    manifest.try_set(text);
                    uploaded.try_set(Some(format!("Loaded {name}; check it, then register the build.")));
                }
                None => {
                    uploaded.try_set(Some(format!("{name} could not be read as text.")));
                }
            }
        });
    };
    let error = move || register.value().get().and_then(Result::err);
    let field_error = move |field: &'static str| Signal::derive(move || error().and_then(|e| e.message_for(field)));
    let other_error = move || error().filter(|e| !e.0.is_for("manifest") && !e.0.is_for("workdir"));
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        register.dispatch(RegisterBuild {
            project: project.get_untracked(),
            manifest: manifest.get_untracked(),
            workdir: workdir.get_untracked(),
        });
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
                <h2 id="builds-title" class="sr-only">"Registered builds"</h2>
                <Transition fallback=loading>
                    {move || Suspend::new(async move {
                        match builds.await {
                            Ok(list) => view! { <BuildList list/> }.into_any(),
                            Err(error) => view! { <PageError error/> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
            <section aria-labelledby="register-title" class=format!("{} h-fit", ui::CARD)>
                <h2 id="register-title" class="text-lg font-semibold text-slate-900">"Register a build"</h2>
                <p class="mt-1 text-sm text-slate-600">"Paste the build's manifest or upload its file; the build's files are in a directory on this server."</p>
                <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                    <div>
                        <label for="build-manifest" class=ui::LABEL>"Manifest"</label>
                        <textarea
                            id="build-manifest"
                            rows="12"
                            class=format!("{} font-mono text-xs", ui::INPUT)
                            placeholder=EXAMPLE
                            spellcheck="false"
                            aria-describedby="build-manifest-msg"
                            prop:value=move || manifest.get()
                            on:input=move |ev| manifest.set(event_target_value(&ev))
                        ></textarea>
                        <FieldMessage id="build-manifest-msg" message=field_error("manifest")/>
                    </div>
                    <div>
                        <label for="build-manifest-file" class=ui::LABEL>"Or upload a manifest file"</label>
                        <input
                            id="build-manifest-file"
                            type="file"
                            accept=".toml,text/plain"
                            class="mt-1 block text-sm text-slate-600 file:mr-3 file:rounded-md file:border-0 file:bg-slate-100 file:px-3 file:py-1.5 file:text-sm file:font-medium file:text-slate-800 hover:file:bg-slate-200"
                            on:change=on_file
                        />
                        <p class="mt-1 text-sm text-slate-600" role="status">{move || uploaded.get()}</p>
                    </div>
                    <TextField
                        id="build-workdir"
                        label="Build directory"
                        mono=true
                        placeholder="/srv/builds/shop-1.0.0"
                        value=workdir
                        on_input=move |v: String| workdir.set(v)
                        message=field_error("workdir")
                    />
                    {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                    <button type="submit" class=ui::PRIMARY disabled=move || register.pending().get()>"Register build"</button>
                    <p role="status" class="text-sm text-emerald-800">
                        {move || register.value().get().and_then(Result::ok).map(|b| format!("Build {} registered.", b.number))}
                    </p>
                </form>
            </section>
        </div>
    }
}

#[component]
fn BuildList(list: Vec<Build>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="rounded-lg border border-dashed border-slate-300 p-8 text-center text-slate-600">
                "No builds yet. Register one with its manifest, then deploy it to a stage."
            </p>
        }
        .into_any();
    }
    view! {
        <ul class="space-y-3" aria-label="Builds">
            {list
                .into_iter()
                .map(|b| {
                    let components = pergola_domain::parse_manifest(&b.manifest)
                        .map(|m| m.components.iter().map(|c| format!("{} ({:?})", c.name, c.kind).to_lowercase()).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    view! {
                        <li class=ui::CARD aria-label=format!("Build {}", b.number)>
                            <div class="flex items-baseline justify-between">
                                <h3 class="font-semibold text-slate-900">
                                    {format!("Build {}", b.number)}
                                    {b.version.map(|v| view! { <span class="ml-2 text-sm font-normal text-slate-600">{v}</span> })}
                                </h3>
                                <span class="text-xs text-slate-500">{format_time(b.created_at)}</span>
                            </div>
                            <p class="mt-1 text-sm text-slate-600">"Components: " {components}</p>
                            <p class="mt-1 font-mono text-xs text-slate-500">{b.workdir}</p>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}
