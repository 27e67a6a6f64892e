//! The users of the instance: create one (optionally an administrator), disable or enable,
//! grant or take the administrator role, reset a password. Disabling ends the user's sessions and
//! stops their tokens at once.

use crate::api::{list_users, CreateInvitation, CreateUser, UpdateUser};
use crate::components::{loading, successes, ui, ErrorNotice, PageError};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use pergola_domain::{format_time, UserInfo};

#[component]
pub fn Users() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let update = ServerAction::<UpdateUser>::new();
    let (created, updated) = (successes(create), successes(update));
    let users = Resource::new(move || (created.get(), updated.get()), |_| list_users());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let admin = RwSignal::new(false);
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        create.dispatch(CreateUser {
            username: username.get_untracked(),
            password: password.get_untracked(),
            admin: admin.get_untracked(),
        });
    };
    let error =
        move || create.value().get().and_then(Result::err).or_else(|| update.value().get().and_then(Result::err));
    view! {
        <section aria-labelledby="users-title" class=format!("mt-6 {}", ui::CARD)>
            <h2 id="users-title" class="font-semibold text-slate-900">"Users"</h2>
            <Transition fallback=loading>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! { <UserList list update/> }.into_any(),
                        Err(error) => view! { <PageError error/> }.into_any(),
                    }
                })}
            </Transition>
            <form class="mt-4 grid gap-3 sm:grid-cols-[1fr_1fr_auto_auto] sm:items-end" aria-label="New user" on:submit=on_submit novalidate>
                <div>
                    <label for="new-username" class=ui::LABEL>"Username"</label>
                    <input id="new-username" type="text" autocomplete="off" class=ui::INPUT
                        prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
                </div>
                <div>
                    <label for="new-user-password" class=ui::LABEL>"Password"</label>
                    <input id="new-user-password" type="password" autocomplete="new-password" class=ui::INPUT
                        prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                </div>
                <label class="flex items-center gap-2 text-sm text-slate-700">
                    <input type="checkbox" prop:checked=move || admin.get() on:change=move |ev| admin.set(event_target_checked(&ev))/>
                    "Administrator"
                </label>
                <button type="submit" class=ui::PRIMARY disabled=move || create.pending().get()>"Create user"</button>
            </form>
            {move || error().map(|error| view! { <div class="mt-3"><ErrorNotice error/></div> })}
            <p role="status" class="mt-2 text-sm text-emerald-800">
                {move || create.value().get().and_then(Result::ok).map(|u| format!("User '{}' created.", u.username))}
            </p>
            <InviteForm/>
        </section>
    }
}

/// "Invite someone": a one-time link (7 days) to create their own account, optionally joining a
/// project with a role.
#[component]
fn InviteForm() -> impl IntoView {
    let invite = ServerAction::<CreateInvitation>::new();
    let project = RwSignal::new(String::new());
    let role = RwSignal::new("developer".to_owned());
    let admin = RwSignal::new(false);
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        invite.dispatch(CreateInvitation {
            admin: admin.get_untracked(),
            project: project.get_untracked(),
            role: role.get_untracked(),
        });
    };
    let origin = move || window().location().origin().unwrap_or_default();
    view! {
        <h3 class="mt-6 font-semibold text-slate-900">"Invite someone"</h3>
        <form class="mt-2 grid gap-3 sm:grid-cols-[1fr_10rem_auto_auto] sm:items-end" aria-label="Invitation" on:submit=on_submit novalidate>
            <div>
                <label for="invite-project" class=ui::LABEL>"Project (optional)"</label>
                <input id="invite-project" type="text" class=ui::INPUT placeholder="Project ID"
                    prop:value=move || project.get() on:input=move |ev| project.set(event_target_value(&ev))/>
            </div>
            <div>
                <label for="invite-role" class=ui::LABEL>"Role in it"</label>
                <select id="invite-role" class=ui::INPUT on:change=move |ev| role.set(event_target_value(&ev))>
                    {pergola_domain::Role::ALL.into_iter().map(|r| view! {
                        <option value=r.as_str() selected=r == pergola_domain::Role::Developer>{r.label()}</option>
                    }).collect_view()}
                </select>
            </div>
            <label class="flex items-center gap-2 text-sm text-slate-700">
                <input type="checkbox" prop:checked=move || admin.get() on:change=move |ev| admin.set(event_target_checked(&ev))/>
                "Administrator"
            </label>
            <button type="submit" class=ui::SECONDARY disabled=move || invite.pending().get()>"Create invitation link"</button>
        </form>
        {move || invite.value().get().map(|result| match result {
            Ok(i) => view! {
                <div role="status" class="mt-3 rounded-md bg-emerald-50 p-3 text-sm text-emerald-900">
                    <p>{format!("Send this link; it works once, until {}.", format_time(i.expires_at))}</p>
                    <code class="mt-1 block break-all font-mono" aria-label="Invitation link">{format!("{}{}", origin(), i.link)}</code>
                </div>
            }.into_any(),
            Err(error) => view! { <div class="mt-3"><ErrorNotice error/></div> }.into_any(),
        })}
    }
}

#[component]
fn UserList(list: Vec<UserInfo>, update: ServerAction<UpdateUser>) -> impl IntoView {
    let act = move |username: String, change: &'static str| {
        move |_| {
            update.dispatch(UpdateUser { username: username.clone(), change: change.into(), password: String::new() });
        }
    };
    view! {
        <table class="mt-3 w-full text-sm" aria-label="Users">
            <thead class="text-left text-slate-600">
                <tr><th class="py-1">"Username"</th><th class="py-1">"Role"</th><th class="py-1">"Status"</th><th class="py-1">"Created"</th><th></th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|u| {
                    let name = u.username.clone();
                    let (toggle, toggle_label) = if u.disabled { ("enable", "Enable") } else { ("disable", "Disable") };
                    let (role_change, role_label) =
                        if u.is_admin { ("revoke-admin", "Remove administrator") } else { ("grant-admin", "Make administrator") };
                    view! {
                        <tr class="border-t border-slate-200" aria-label=u.username.clone()>
                            <td class="py-1 font-medium text-slate-900">{u.username.clone()}</td>
                            <td class="py-1">{if u.is_admin { "Administrator" } else { "User" }}</td>
                            <td class="py-1">{if u.disabled { "disabled" } else { "active" }}</td>
                            <td class="py-1 text-slate-600">{format_time(u.created_at)}</td>
                            <td class="flex justify-end gap-2 py-1">
                                <button type="button" class=ui::SECONDARY aria-label=format!("{toggle_label} {name}") on:click=act(name.clone(), toggle)>{toggle_label}</button>
                                <button type="button" class=ui::SECONDARY aria-label=format!("{role_label}: {name}") on:click=act(name.clone(), role_change)>{role_label}</button>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
