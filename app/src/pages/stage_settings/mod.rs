//! `/projects/{project}/stages/{stage}/settings`: rename, retype, suspend / resume, duplicate,
//! DELETE STAGE.

mod config_section;
mod duplicate;
mod sharing;

use super::param;
use crate::api::{
    get_retention, get_sharing, get_stage, project_actor, CreateGuestLink, DeleteStage, ResumeStage, RevokeGuestLink,
    SetVisibility, SuspendStage, UpdateStage,
};
use crate::components::{
    loading, successes, ui, use_live, ErrorNotice, Modal, OfflineNotice, PageError, StageTypeField, StatusBadge,
    TextField, TypeBadge,
};
use crate::error::AppError;
use crate::paths;
use config_section::ConfigSection;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use pergola_domain::share::StageSharing;
use pergola_domain::{Actor, RetentionPolicy, Stage, StageStatus};

/// What the settings page shows, loaded at once.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct PageData {
    stage: Stage,
    retention: RetentionPolicy,
    /// Who is looking (which sections to offer).
    actor: Actor,
    shared: StageSharing,
}

/// The actions of the Sharing section (the page reloads its data after each).
#[derive(Clone, Copy)]
struct SharingActions {
    set: ServerAction<SetVisibility>,
    create: ServerAction<CreateGuestLink>,
    revoke: ServerAction<RevokeGuestLink>,
}

#[component]
pub fn StageSettingsPage() -> impl IntoView {
    let project = param("project");
    let stage = param("stage");
    let update = ServerAction::<UpdateStage>::new();
    let suspend = ServerAction::<SuspendStage>::new();
    let resume = ServerAction::<ResumeStage>::new();
    let saves = successes(update);
    let sharing = SharingActions {
        set: ServerAction::<SetVisibility>::new(),
        create: ServerAction::<CreateGuestLink>::new(),
        revoke: ServerAction::<RevokeGuestLink>::new(),
    };
    // While the stage is suspending, read it again at each change the live stream tells of,
    // until it has settled (other changes leave the form being filled in alone).
    let settle = RwSignal::new(0u32);
    let live = use_live(move || crate::paths::api_stage_changes(&project.get(), &stage.get()));
    // One resource for the whole page (the sections get their data as props): resources made
    // inside a Suspend's children could hydrate against another's serialized value.
    let data = Resource::new(
        move || {
            let shared = (sharing.set.version().get(), sharing.create.version().get(), sharing.revoke.version().get());
            (
                project.get(),
                stage.get(),
                saves.get(),
                suspend.version().get(),
                resume.version().get(),
                settle.get(),
                shared,
            )
        },
        |(p, s, ..)| async move {
            let stage = get_stage(p.clone(), s.clone()).await?;
            let retention = get_retention().await?;
            let actor = project_actor(p.clone()).await?;
            let shared = get_sharing(p, s).await?;
            Ok::<_, AppError>(PageData { stage, retention, actor, shared })
        },
    );
    Effect::new(move |seen: Option<u32>| {
        let heard = live.changes.get();
        let suspending = data
            .get_untracked()
            .is_some_and(|d| d.is_ok_and(|PageData { stage, .. }| stage.status == StageStatus::Suspending));
        if seen.is_some_and(|seen| seen != heard) && suspending {
            settle.update(|n| *n += 1);
        }
        heard
    });
    view! {
        <OfflineNotice live/>
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(PageData { stage, retention, actor, shared }) => {
                        view! { <SettingsView stage retention actor shared update suspend resume sharing/> }.into_any()
                    }
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn SettingsView(
    stage: Stage,
    retention: RetentionPolicy,
    actor: Actor,
    shared: StageSharing,
    update: ServerAction<UpdateStage>,
    suspend: ServerAction<SuspendStage>,
    resume: ServerAction<ResumeStage>,
    sharing: SharingActions,
) -> impl IntoView {
    let may_share = pergola_domain::permits(&actor, pergola_domain::Action::ManageSharing, Some(stage.stage_type));
    let may_duplicate = pergola_domain::permits(&actor, pergola_domain::Action::CreateStage, Some(stage.stage_type))
        && pergola_domain::permits(&actor, pergola_domain::Action::ConfigureStage, Some(stage.stage_type));
    view! {
        <Title text=format!("Settings · {} · Pergola Stages", stage.name)/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=paths::project(&stage.project_id) class="hover:underline">{stage.project_id.clone()}</a>
            " / "
            <a href=paths::stage(&stage.project_id, &stage.id) class="hover:underline">{stage.id.clone()}</a>
            " / settings"
        </nav>
        <div class="mt-2 flex flex-wrap items-center gap-3">
            <h1 class="text-2xl font-bold text-slate-900">"Settings of " {stage.name.clone()}</h1>
            <TypeBadge stage_type=stage.stage_type/>
            <StatusBadge status=stage.status/>
        </div>
        <div class="mt-6 max-w-2xl space-y-6">
            <GeneralSection stage=stage.clone() update/>
            <ConfigSection project=stage.project_id.clone() stage=stage.id.clone()/>
            {may_share.then(|| view! {
                <sharing::SharingCard
                    project=stage.project_id.clone()
                    stage=stage.id.clone()
                    sharing=shared
                    set=sharing.set
                    create=sharing.create
                    revoke=sharing.revoke
                />
            })}
            <LifecycleSection stage=stage.clone() suspend resume/>
            {may_duplicate.then(|| view! { <duplicate::DuplicateSection stage=stage.clone()/> })}
            <DangerZone stage retention/>
        </div>
    }
    .into_any()
}

#[component]
fn GeneralSection(stage: Stage, update: ServerAction<UpdateStage>) -> impl IntoView {
    let name = RwSignal::new(stage.name.clone());
    let stage_type = RwSignal::new(stage.stage_type.as_str().to_owned());
    let grace = RwSignal::new(stage.grace_secs.to_string());
    let result = update.value();
    let error = move || result.get().and_then(Result::err);
    let field_error = move |field: &'static str| Signal::derive(move || error().and_then(|e| e.message_for(field)));
    let other_error =
        move || error().filter(|e| !e.0.is_for("name") && !e.0.is_for("stage_type") && !e.0.is_for("grace_secs"));
    let grace_error = field_error("grace_secs");
    let saved = move || matches!(result.get(), Some(Ok(_)));
    let (project, id) = (stage.project_id.clone(), stage.id.clone());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        update.dispatch(UpdateStage {
            project: project.clone(),
            stage: id.clone(),
            name: name.get_untracked(),
            stage_type: stage_type.get_untracked(),
            grace_secs: grace.get_untracked(),
        });
    };
    view! {
        <section aria-labelledby="general-title" class=ui::CARD>
            <h2 id="general-title" class="font-semibold text-slate-900">"General"</h2>
            <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                <TextField
                    id="stage-name"
                    label="Name"
                    value=name
                    on_input=move |v: String| name.set(v)
                    message=field_error("name")
                />
                <StageTypeField id="stage-type" value=stage_type message=field_error("stage_type")/>
                <TextField
                    id="stage-grace"
                    label="Grace period (seconds)"
                    class="w-32"
                    inputmode="numeric"
                    value=grace
                    on_input=move |v: String| grace.set(v)
                    hint="When the stage is suspended, deleted or redeployed, its components get SIGTERM and this long to shut down before they are killed (1 to 3600; usually 60)."
                    message=grace_error
                />
                <p class="text-sm text-slate-600">
                    "Stage ID " <code class="font-mono">{stage.id.clone()}</code>
                    " — it is part of this stage's links and never changes."
                </p>
                {move || other_error().map(|error| view! { <ErrorNotice error/> })}
                <div class="flex items-center gap-4">
                    <button type="submit" class=ui::PRIMARY disabled=move || update.pending().get()>"Save changes"</button>
                    <p role="status" class="text-sm text-emerald-800">{move || saved().then_some("Saved.")}</p>
                </div>
            </form>
        </section>
    }
}

#[component]
fn LifecycleSection(
    stage: Stage,
    suspend: ServerAction<SuspendStage>,
    resume: ServerAction<ResumeStage>,
) -> impl IntoView {
    let error =
        move || suspend.value().get().and_then(Result::err).or_else(|| resume.value().get().and_then(Result::err));
    let pending = move || suspend.pending().get() || resume.pending().get();
    let (project, id) = (stage.project_id.clone(), stage.id.clone());
    let stage_href = paths::stage(&stage.project_id, &stage.id);
    // Offered while suspending (it takes effect once the stop has finished) and when suspended.
    let resume_button = {
        let (project, id) = (project.clone(), id.clone());
        move || {
            let (project, id) = (project.clone(), id.clone());
            view! {
                <button
                    type="button"
                    class=ui::PRIMARY
                    disabled=pending
                    on:click=move |_| { resume.dispatch(ResumeStage { project: project.clone(), stage: id.clone() }); }
                >
                    "Resume stage"
                </button>
            }
        }
    };
    let (explanation, button) = match stage.status {
        StageStatus::Running => (
            format!("Suspending shuts down all running components (SIGTERM first, killed after this stage's grace period of {} seconds), stops incoming traffic and disables scheduled jobs. Data on persistent storage is kept; temporary data is lost. Jobs already started run to completion.", stage.grace_secs),
            view! {
                <button
                    type="button"
                    class=ui::SECONDARY
                    disabled=pending
                    on:click=move |_| { suspend.dispatch(SuspendStage { project: project.clone(), stage: id.clone() }); }
                >
                    "Suspend stage"
                </button>
            }
            .into_any(),
        ),
        StageStatus::Suspending => (
            format!("This stage is being suspended: its components got SIGTERM and are killed if they are still running after {} seconds. Traffic and scheduled jobs are already stopped. Resuming now starts its last release as soon as they have all stopped.", stage.grace_secs),
            view! {
                <div class="flex flex-wrap items-center gap-4">
                    {resume_button()}
                    <a href=stage_href class="text-sm font-medium text-emerald-700 underline">"Follow each component's progress on the stage page"</a>
                </div>
            }
            .into_any(),
        ),
        StageStatus::Suspended => (
            "This stage is suspended. Resuming restores its last state (services, storage, scheduled jobs) and serves the application again as soon as it is up.".to_owned(),
            resume_button().into_any(),
        ),
    };
    view! {
        <section aria-labelledby="lifecycle-title" class=ui::CARD>
            <h2 id="lifecycle-title" class="font-semibold text-slate-900">"Suspend or resume"</h2>
            <p class="mt-2 text-sm text-slate-600">
                "Status: " <StatusBadge status=stage.status/>
            </p>
            <p class="mt-2 text-sm text-slate-600">{explanation}</p>
            {move || error().map(|error| view! { <div class="mt-3"><ErrorNotice error/></div> })}
            <div class="mt-4">{button}</div>
        </section>
    }
}

#[component]
fn DangerZone(stage: Stage, retention: RetentionPolicy) -> impl IntoView {
    let open = RwSignal::new(false);
    let confirm = RwSignal::new(String::new());
    let delete = ServerAction::<DeleteStage>::new();
    let navigate = use_navigate();
    let project_url = paths::project(&stage.project_id);
    Effect::new(move |_| {
        if let Some(Ok(_)) = delete.value().get() {
            navigate(&project_url, Default::default());
        }
    });
    let error = move || delete.value().get().and_then(Result::err);
    let days = retention.days(stage.stage_type);
    let keep = format!(
        "{} stages are kept for {} day{} before they are deleted for good.",
        stage.stage_type.label(),
        days,
        if days == 1 { "" } else { "s" }
    );
    let id = stage.id.clone();
    let matches = move || confirm.get().trim() == id;
    let (project, stage_id) = (stage.project_id.clone(), stage.id.clone());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        delete.dispatch(DeleteStage {
            project: project.clone(),
            stage: stage_id.clone(),
            confirm: confirm.get_untracked(),
        });
    };
    let close = move || {
        open.set(false);
        confirm.set(String::new());
    };
    let prompt = format!("Type the Stage ID {} to confirm", stage.id);
    view! {
        <section aria-labelledby="danger-title" class="rounded-lg border border-rose-300 bg-white p-5 shadow-sm">
            <h2 id="danger-title" class="font-semibold text-rose-800">"Delete this stage"</h2>
            <p class="mt-2 text-sm text-slate-600">
                "The stage is archived first: you can restore it, with its configuration and persistent storage, from the archived stages on the project page until its deletion date. "
                {keep.clone()}
            </p>
            <button type="button" class=format!("mt-4 {}", ui::DANGER) aria-haspopup="dialog" on:click=move |_| open.set(true)>
                "DELETE STAGE"
            </button>
        </section>
        <Modal open=open title_id="delete-title" on_close=move |_| close()>
            <h2 id="delete-title" class="text-lg font-semibold text-slate-900">
                {format!("Delete stage {}?", stage.name)}
            </h2>
            <p class="mt-2 text-sm text-slate-600">{keep.clone()}</p>
            <form class="mt-4 space-y-3" on:submit=on_submit.clone() novalidate>
                <TextField
                    id="delete-confirm"
                    label=prompt.clone()
                    mono=true
                    value=confirm
                    on_input=move |v: String| confirm.set(v)
                    message=Signal::derive(move || error().map(|e| e.to_string()))
                />
                <div class="flex justify-end gap-3">
                    <button type="button" class=ui::SECONDARY on:click=move |_| close()>"Cancel"</button>
                    <button
                        type="submit"
                        class=ui::DANGER
                        disabled={
                            let matches = matches.clone();
                            move || !matches() || delete.pending().get()
                        }
                    >
                        "Delete stage"
                    </button>
                </div>
            </form>
        </Modal>
    }
}
