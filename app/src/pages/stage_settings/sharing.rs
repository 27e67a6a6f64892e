//! The Sharing section of a stage's settings: who may open its share links, and its guest
//! links. Shown to those who may change them (`Action::ManageSharing`).

use crate::api::{CreateGuestLink, RevokeGuestLink, SetVisibility};
use crate::components::{ui, ErrorNotice};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use pergola_domain::share::{describe_hours, GuestLink, StageSharing, GUEST_LINK_CHOICES};
use pergola_domain::{format_time, Visibility};

#[component]
pub fn SharingCard(
    project: String,
    stage: String,
    sharing: StageSharing,
    set: ServerAction<SetVisibility>,
    create: ServerAction<CreateGuestLink>,
    revoke: ServerAction<RevokeGuestLink>,
) -> impl IntoView {
    let hours = RwSignal::new(24i64.to_string());
    let (p, s) = (project.clone(), stage.clone());
    let choose = move |visibility: Visibility| {
        set.dispatch(SetVisibility {
            project: p.clone(),
            stage: s.clone(),
            visibility: visibility.as_str().to_owned(),
        });
    };
    let choose_public = choose.clone();
    let (p, s) = (project.clone(), stage.clone());
    let on_create = move |ev: SubmitEvent| {
        ev.prevent_default();
        create.dispatch(CreateGuestLink { project: p.clone(), stage: s.clone(), hours: hours.get_untracked() });
    };
    let created = move || create.value().get().and_then(Result::ok);
    let error = move || {
        set.value()
            .get()
            .and_then(Result::err)
            .or_else(|| create.value().get().and_then(Result::err))
            .or_else(|| revoke.value().get().and_then(Result::err))
    };
    let members = sharing.visibility == Visibility::Members;
    view! {
        <section aria-labelledby="sharing-title" class=ui::CARD>
            <h2 id="sharing-title" class="font-semibold text-slate-900">"Sharing"</h2>
            <p class="mt-2 text-sm text-slate-600">"Who may open this stage's share links."</p>
            <fieldset class="mt-4 space-y-2">
                <legend class="sr-only">"Who may open the share links"</legend>
                <label class="flex items-center gap-2 text-sm text-slate-700">
                    <input
                        type="radio"
                        name="visibility"
                        value="members"
                        prop:checked=members
                        on:change=move |_| choose(Visibility::Members)
                    />
                    "Members of the project"
                    <span class="text-slate-500">"(signed in)"</span>
                </label>
                <label class="flex items-center gap-2 text-sm text-slate-700">
                    <input
                        type="radio"
                        name="visibility"
                        value="public"
                        prop:checked=!members
                        on:change=move |_| choose_public(Visibility::Public)
                    />
                    "Anyone with the link"
                </label>
            </fieldset>
            <h3 class="mt-6 text-sm font-semibold text-slate-900">"Guest links"</h3>
            <p class="mt-1 text-sm text-slate-600">
                "A guest link opens this stage's share links without signing in, until it expires or is revoked."
            </p>
            <GuestLinks list=sharing.guest_links project=project.clone() stage=stage.clone() revoke/>
            <form class="mt-4 flex flex-wrap items-end gap-3" on:submit=on_create>
                <label class=ui::LABEL>
                    "Expires after"
                    <select
                        class=ui::INPUT
                        aria-label="Expires after"
                        on:change=move |ev| hours.set(event_target_value(&ev))
                        prop:value=move || hours.get()
                    >
                        {GUEST_LINK_CHOICES
                            .into_iter()
                            .map(|h| view! { <option value=h.to_string()>{describe_hours(h)}</option> })
                            .collect_view()}
                    </select>
                </label>
                <button type="submit" class=ui::SECONDARY disabled=move || create.pending().get()>
                    "Create guest link"
                </button>
            </form>
            {move || {
                created()
                    .map(|link| {
                        let url = link.url.clone().unwrap_or_else(|| link.token.clone());
                        view! {
                            <div class="mt-4 rounded-md bg-emerald-50 p-3 text-sm text-emerald-900" role="status">
                                <p>
                                    "Guest link created, valid until " {format_time(link.expires_at)}
                                    ". Copy it now: it is not shown again."
                                </p>
                                <input
                                    class="mt-2 block w-full rounded border border-emerald-200 bg-white px-2 py-1 font-mono text-xs"
                                    readonly=true
                                    aria-label="Guest link"
                                    value=url
                                />
                            </div>
                        }
                    })
            }}
            {move || error().map(|error| view! { <ErrorNotice error/> })}
        </section>
    }
    .into_any()
}

#[component]
fn GuestLinks(
    list: Vec<GuestLink>,
    project: String,
    stage: String,
    revoke: ServerAction<RevokeGuestLink>,
) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="mt-3 text-sm text-slate-500">"No guest links."</p> }.into_any();
    }
    view! {
        <table class="mt-3 w-full text-left text-sm" aria-label="Guest links">
            <thead class="text-slate-500">
                <tr>
                    <th scope="col" class="py-1 font-medium">"Link"</th>
                    <th scope="col" class="py-1 font-medium">"Created by"</th>
                    <th scope="col" class="py-1 font-medium">"Expires"</th>
                    <th scope="col" class="py-1"><span class="sr-only">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {list
                    .into_iter()
                    .map(|l| {
                        let (project, stage, id) = (project.clone(), stage.clone(), l.id.clone());
                        // No clock here (the page renders on the server and in the browser alike):
                        // an expired link is listed with its date, and revoking it is harmless.
                        let live = l.revoked_at.is_none();
                        let expires = match (l.revoked_at, l.expires_at) {
                            (Some(at), _) => format!("revoked {}", format_time(at)),
                            (None, Some(at)) => format_time(at),
                            (None, None) => "never".into(),
                        };
                        view! {
                            <tr class="border-t border-slate-100" aria-label=l.id.clone()>
                                <td class="py-2 font-mono">{l.id.clone()}</td>
                                <td class="py-2">{l.created_by.clone()}</td>
                                <td class="py-2 text-slate-500">{expires}</td>
                                <td class="py-2 text-right">
                                    {live
                                        .then(|| {
                                            view! {
                                                <button
                                                    type="button"
                                                    aria-label=format!("Revoke guest link {}", l.id)
                                                    class="text-sm font-medium text-rose-700 hover:underline"
                                                    on:click=move |_| {
                                                        revoke.dispatch(RevokeGuestLink { project: project.clone(), stage: stage.clone(), id: id.clone() });
                                                    }
                                                >
                                                    "Revoke"
                                                </button>
                                            }
                                        })}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
