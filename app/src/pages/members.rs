//! `/projects/{project}/members`: who may do what in the project. Owners (and administrators)
//! add members by username with a role, change roles and remove members; everyone else sees the
//! list.

use super::param;
use crate::api::{list_members, RemoveMember, SetMember};
use crate::components::{loading, successes, ui, ErrorNotice, PageError};
use crate::paths;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use pergola_domain::{format_time, permits, Action, Actor, Member, Role};

#[component]
pub fn MembersPage() -> impl IntoView {
    let project = param("project");
    let set = ServerAction::<SetMember>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let (added, removed) = (successes(set), successes(remove));
    let data = Resource::new(move || (project.get(), added.get(), removed.get()), |(p, ..)| list_members(p));
    view! {
        <Title text="Members · Pergola Stages"/>
        <nav aria-label="Breadcrumb" class="text-sm text-slate-500">
            <a href="/" class="hover:underline">"Projects"</a>
            " / "
            <a href=move || paths::project(&project.get()) class="hover:underline">{move || project.get()}</a>
            " / members"
        </nav>
        <h1 class="mt-2 text-2xl font-bold text-slate-900">"Members"</h1>
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((members, actor)) => view! { <MemberList members actor project set remove/> }.into_any(),
                    Err(error) => view! { <PageError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn MemberList(
    members: Vec<Member>,
    actor: Actor,
    project: Memo<String>,
    set: ServerAction<SetMember>,
    remove: ServerAction<RemoveMember>,
) -> impl IntoView {
    let manage = permits(&actor, Action::ManageMembers, None);
    let username = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Developer.as_str().to_owned());
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        set.dispatch(SetMember {
            project: project.get_untracked(),
            username: username.get_untracked(),
            role: role.get_untracked(),
        });
    };
    let error = move || set.value().get().and_then(Result::err).or_else(|| remove.value().get().and_then(Result::err));
    view! {
        <div class="mt-6 grid gap-8 lg:grid-cols-[1fr_22rem]">
            <table class="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="Members">
                <thead class="bg-slate-50 text-left text-slate-600">
                    <tr><th class="px-4 py-2">"User"</th><th class="px-4 py-2">"Role"</th><th class="px-4 py-2">"Since"</th><th class="px-4 py-2"></th></tr>
                </thead>
                <tbody>
                    {members.into_iter().map(|m| {
                        let name = m.username.clone();
                        view! {
                            <tr class="border-t border-slate-200" aria-label=m.username.clone()>
                                <td class="px-4 py-2 font-medium text-slate-900">{m.username.clone()}</td>
                                <td class="px-4 py-2">{m.role.label()}</td>
                                <td class="px-4 py-2 text-slate-600">{format_time(m.since)}</td>
                                <td class="px-4 py-2 text-right">
                                    {manage.then(|| view! {
                                        <button type="button" class=ui::SECONDARY aria-label=format!("Remove {name}")
                                            on:click=move |_| { remove.dispatch(RemoveMember { project: project.get_untracked(), username: name.clone() }); }>
                                            "Remove"
                                        </button>
                                    })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {manage.then(|| view! {
                <section aria-labelledby="add-member-title" class=format!("{} h-fit", ui::CARD)>
                    <h2 id="add-member-title" class="text-lg font-semibold text-slate-900">"Add a member"</h2>
                    <p class="mt-1 text-sm text-slate-600">"Or change a member's role: add them again with the new one."</p>
                    <form class="mt-4 space-y-3" on:submit=on_submit novalidate>
                        <div>
                            <label for="member-username" class=ui::LABEL>"Username"</label>
                            <input id="member-username" type="text" class=ui::INPUT autocomplete="off"
                                prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
                        </div>
                        <div>
                            <label for="member-role" class=ui::LABEL>"Role"</label>
                            <select id="member-role" class=ui::INPUT on:change=move |ev| role.set(event_target_value(&ev))>
                                {Role::ALL.into_iter().map(|r| view! {
                                    <option value=r.as_str() selected=r == Role::Developer>{r.label()}</option>
                                }).collect_view()}
                            </select>
                        </div>
                        {move || error().map(|error| view! { <ErrorNotice error/> })}
                        <button type="submit" class=ui::PRIMARY disabled=move || set.pending().get()>"Add member"</button>
                        <p role="status" class="text-sm text-emerald-800">
                            {move || set.value().get().and_then(Result::ok).map(|m| format!("{} is now {}.", m.username, m.role.label()))}
                        </p>
                    </form>
                </section>
            })}
        </div>
    }
}
