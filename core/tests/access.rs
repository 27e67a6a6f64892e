//! Who may act, through the services, on SQLite and on PostgreSQL: sessions and their expiry
//! (with the injected clock), disabled users, the sign-in throttle, the first run, and the
//! permission table as the services enforce it.

use chrono::Duration;
use pergola_core::services::FirstRun;
use pergola_core::testing::{Env, ADMIN_PASSWORD, USER_PASSWORD};
use pergola_core::{connect, Clock, ManualClock, Services};
use pergola_domain::wire::{StageUpdate, UserPatch};
use pergola_domain::{ErrorKind, Role, StageType};
use std::sync::Arc;

#[macro_use]
mod support;

all_backends!(
    changing_ones_password_ends_the_other_sessions_not_this_one,
    sessions_end_when_idle_or_too_old_and_on_sign_out,
    a_disabled_user_is_signed_out_at_once_and_cannot_sign_in,
    the_throttle_refuses_even_the_right_password_until_the_window_passes,
    outsiders_see_nothing_and_members_only_what_their_role_allows,
    tokens_stop_at_their_expiry_and_at_revocation,
);

const HERE: &str = "10.0.0.7";

async fn sessions_end_when_idle_or_too_old_and_on_sign_out(env: &Env) {
    let s = &env.services;
    env.user("alice").await;
    let session = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    let who = |secret: String| async move { s.session_caller(&secret, Some(HERE)).await.unwrap() };
    assert_eq!(who(session.secret.clone()).await.unwrap().username, "alice");
    // 12 hours idle ends it; a request within them keeps it going.
    env.clock.advance(Duration::hours(11));
    assert!(who(session.secret.clone()).await.is_some());
    env.clock.advance(Duration::hours(11));
    assert!(who(session.secret.clone()).await.is_some(), "used 11 hours ago");
    env.clock.advance(Duration::hours(12) + Duration::seconds(1));
    assert!(who(session.secret.clone()).await.is_none(), "idle for more than 12 hours");
    // 7 days at most, however busy.
    let busy = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    for _ in 0..(7 * 24 - 1) {
        env.clock.advance(Duration::hours(1));
        assert!(who(busy.secret.clone()).await.is_some());
    }
    env.clock.advance(Duration::hours(1));
    assert!(who(busy.secret.clone()).await.is_none(), "a week old");
    // Signing out ends it at once; garbage and secrets of another kind sign nobody in.
    let last = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    s.end_session(&last.secret).await.unwrap();
    assert!(who(last.secret.clone()).await.is_none());
    for forged in ["", "pgs_", "pgt_AAAA", &last.secret.replace("pgs_", "pgt_"), "x'; DROP TABLE sessions; --"] {
        assert!(who(forged.to_owned()).await.is_none(), "{forged}");
    }
}

async fn a_disabled_user_is_signed_out_at_once_and_cannot_sign_in(env: &Env) {
    let s = &env.services;
    let alice = s.acting(env.user("alice").await);
    let session = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    let token = alice.create_token("laptop", None).await.unwrap();
    assert!(s.token_caller(&token.token, None).await.unwrap().is_some());
    let patch = UserPatch { disabled: Some(true), ..Default::default() };
    assert!(env.admin.update_user("Alice", patch).await.unwrap().disabled);
    assert!(s.session_caller(&session.secret, None).await.unwrap().is_none(), "the session ended");
    assert!(s.token_caller(&token.token, None).await.unwrap().is_none(), "the token stopped");
    let refused = s.sign_in("alice", USER_PASSWORD, HERE).await.unwrap_err();
    let wrong = s.sign_in("alice", "not-her-password", HERE).await.unwrap_err();
    let nobody = s.sign_in("nobody", "not-her-password", HERE).await.unwrap_err();
    assert_eq!((refused.kind, &refused.message), (ErrorKind::Unauthenticated, &wrong.message));
    assert_eq!(wrong.message, nobody.message, "never says whether the user exists");
    // Enabled again: the old session stays ended, a new sign-in works.
    env.admin.update_user("alice", UserPatch { disabled: Some(false), ..Default::default() }).await.unwrap();
    assert!(s.session_caller(&session.secret, None).await.unwrap().is_none());
    assert!(s.sign_in("alice", USER_PASSWORD, HERE).await.is_ok());
    // Nobody disables themselves or takes their own administrator role.
    let own = env.admin.update_user("admin", UserPatch { disabled: Some(true), ..Default::default() }).await;
    assert_eq!(own.unwrap_err().kind, ErrorKind::InvalidState);
    let own = env.admin.update_user("admin", UserPatch { admin: Some(false), ..Default::default() }).await;
    assert_eq!(own.unwrap_err().kind, ErrorKind::InvalidState);
    // Only administrators administer users.
    let by_alice = alice.update_user("admin", UserPatch { disabled: Some(true), ..Default::default() }).await;
    assert_eq!(by_alice.unwrap_err().kind, ErrorKind::Forbidden);
}

async fn the_throttle_refuses_even_the_right_password_until_the_window_passes(env: &Env) {
    let s = &env.services;
    for _ in 0..5 {
        assert_eq!(s.sign_in("Admin", "wrong-password", HERE).await.unwrap_err().kind, ErrorKind::Unauthenticated);
    }
    let locked = s.sign_in("admin", ADMIN_PASSWORD, HERE).await.unwrap_err();
    assert_eq!(locked.kind, ErrorKind::TooManyRequests);
    assert_eq!(locked.retry_after, Some(15 * 60), "until the first failure leaves the 15-minute window");
    // Another address is not locked out; nor is another username from this address.
    assert!(s.sign_in("admin", ADMIN_PASSWORD, "10.0.0.8").await.is_ok());
    assert_eq!(s.sign_in("bob", "whatever-it-is", HERE).await.unwrap_err().kind, ErrorKind::Unauthenticated);
    env.clock.advance(Duration::minutes(15) - Duration::seconds(1));
    assert_eq!(s.sign_in("admin", ADMIN_PASSWORD, HERE).await.unwrap_err().retry_after, Some(1));
    env.clock.advance(Duration::seconds(1));
    assert!(s.sign_in("admin", ADMIN_PASSWORD, HERE).await.is_ok());
    // From IPv6, a fresh address of the same /64 for every try does not get round it.
    for n in 1..=5 {
        let address = format!("2001:db8:7:1::{n:x}");
        assert_eq!(s.sign_in("admin", "wrong-password", &address).await.unwrap_err().kind, ErrorKind::Unauthenticated);
    }
    let locked = s.sign_in("admin", ADMIN_PASSWORD, "2001:db8:7:1:ffff::77").await.unwrap_err();
    assert_eq!(locked.kind, ErrorKind::TooManyRequests);
    assert!(s.sign_in("admin", ADMIN_PASSWORD, "2001:db8:7:2::1").await.is_ok(), "another network is not");
}

async fn outsiders_see_nothing_and_members_only_what_their_role_allows(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_project("Blog", None).await.unwrap();
    env.admin.create_stage(&shop, "Prod", StageType::Prod, None).await.unwrap();
    let viewer = env.member("vic", &shop, Role::Viewer).await;
    let developer = env.member("dev", &shop, Role::Developer).await;
    let outsider = env.services.acting(env.user("olga").await);

    // An outsider: the project does not exist for them, exactly as one that does not exist.
    assert!(outsider.list_projects().await.unwrap().is_empty());
    let hidden = outsider.get_project(&shop).await.unwrap_err();
    let missing = outsider.get_project("nope").await.unwrap_err();
    assert_eq!((hidden.kind, hidden.message.replace(&shop, "X")), (missing.kind, missing.message.replace("nope", "X")));
    assert_eq!(outsider.get_stage(&shop, "prod").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(outsider.suspend_stage(&shop, "prod").await.unwrap_err().kind, ErrorKind::NotFound);

    // A viewer reads, and may change nothing.
    let names: Vec<_> = viewer.list_projects().await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(names, std::slice::from_ref(&shop));
    assert_eq!(viewer.get_stage(&shop, "prod").await.unwrap().status.as_str(), "running");
    let refused = viewer.create_stage(&shop, "QA", StageType::Qa, None).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden);
    assert!(refused.message.contains("needs the developer role") && refused.message.contains("you are a viewer"));

    // A developer: DEV and QA, not PROD — nor turning a DEV stage into a PROD one.
    developer.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    let prod = developer.create_stage(&shop, "Prod 2", StageType::Prod, None).await.unwrap_err();
    assert!(prod.message.contains("needs the maintainer role"), "{}", prod.message);
    assert_eq!(developer.suspend_stage(&shop, "prod").await.unwrap_err().kind, ErrorKind::Forbidden);
    let retype = StageUpdate { stage_type: Some(StageType::Prod), ..Default::default() };
    assert_eq!(developer.update_stage(&shop, "dev", retype).await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(developer.get_stage(&shop, "dev").await.unwrap().stage_type, StageType::Dev, "nothing changed");
    assert_eq!(developer.delete_stage(&shop, "dev").await.unwrap_err().kind, ErrorKind::Forbidden);
    developer.suspend_stage(&shop, "dev").await.unwrap();
    // The timeline and the activity name who did it.
    let events = developer.events(&shop, "dev").await.unwrap();
    let by = |kind| events.iter().find(|e| e.kind == kind).map(|e| e.actor.clone());
    assert_eq!(by(pergola_domain::EventKind::Suspending), Some(Some("dev".to_owned())), "{events:?}");
    assert_eq!(by(pergola_domain::EventKind::Suspended), Some(None), "the system settled it");
    let activity = viewer.project_activity(&shop, Default::default(), 50).await.unwrap();
    assert!(activity.iter().any(|e| e.actor == "dev" && e.kind == "stage.created"), "{activity:?}");
    assert!(activity.iter().all(|e| e.kind != "project.created" || e.actor == "admin"));
    // Members are the owner's business.
    assert_eq!(developer.set_member(&shop, "olga", Role::Owner).await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(outsider.set_member(&shop, "olga", Role::Owner).await.unwrap_err().kind, ErrorKind::NotFound);
    // Removed, the developer sees nothing any more.
    env.admin.remove_member(&shop, "dev").await.unwrap();
    let after = env.services.acting(developer.caller().clone());
    assert_eq!(after.get_project(&shop).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn tokens_stop_at_their_expiry_and_at_revocation(env: &Env) {
    let s = &env.services;
    let day = env.admin.create_token("day", Some(1)).await.unwrap();
    let forever = env.admin.create_token("forever", None).await.unwrap();
    assert_eq!(day.expires_at, Some(env.clock.now() + Duration::days(1)));
    assert_eq!(s.token_caller(&day.token, None).await.unwrap().unwrap().token.as_deref(), Some("day"));
    env.clock.advance(Duration::days(1));
    assert!(s.token_caller(&day.token, None).await.unwrap().is_none(), "expired");
    assert!(s.token_caller(&forever.token, None).await.unwrap().is_some());
    env.admin.revoke_token("forever").await.unwrap();
    assert!(s.token_caller(&forever.token, None).await.unwrap().is_none(), "revoked");
    let listed: Vec<_> = env.admin.list_tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(listed, ["day"], "revoked tokens are not listed; expired ones are");
    assert_eq!(env.admin.create_token("bad name", None).await.unwrap_err().kind, ErrorKind::Validation);
    assert_eq!(env.admin.create_token("x", Some(0)).await.unwrap_err().kind, ErrorKind::Validation);
}

/// The first run, on a store of its own (no administrator from the environment).
#[tokio::test]
async fn the_setup_code_works_once_and_only_while_nobody_exists() {
    let dir = std::env::temp_dir().join(format!("pergola-setup-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = connect(&format!("sqlite://{}/pergola.db", dir.display())).await.unwrap();
    let clock = ManualClock::new(chrono::Utc::now());
    let s = Services::new(store, Arc::new(clock));
    assert!(s.needs_setup().await.unwrap());
    let FirstRun::SetupCode(code) = s.prepare_first_run(None).await.unwrap() else { panic!("a setup code") };
    assert_eq!(code.len(), 19, "{code}");
    let wrong = s.complete_setup("AAAA-BBBB-CCCC-DDDD", "root", "root-password", None).await.unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Validation);
    let weak = s.complete_setup(&code, "root", "short", None).await.unwrap_err();
    assert_eq!(weak.field.as_deref(), Some("password"), "checked before the code is used up");
    let session = s.complete_setup(&code.to_lowercase(), "Root", "root-password", None).await.unwrap();
    assert_eq!((session.caller.username.as_str(), session.caller.is_admin), ("root", true));
    assert!(!s.needs_setup().await.unwrap());
    let again = s.complete_setup(&code, "other", "other-password", None).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::InvalidState, "the code works once");
    assert_eq!(s.prepare_first_run(Some(("x", "x-password-1"))).await.unwrap(), FirstRun::Ready);
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos}-{}", std::process::id())
}

async fn changing_ones_password_ends_the_other_sessions_not_this_one(env: &Env) {
    let s = &env.services;
    env.user("alice").await;
    let here = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    let elsewhere = s.sign_in_session("alice", USER_PASSWORD, "192.0.2.9").await.unwrap();
    let token = s.acting(here.caller.clone()).create_token("ci", None).await.unwrap();
    let me = s.acting(s.session_caller(&here.secret, Some(HERE)).await.unwrap().unwrap());
    me.change_password(USER_PASSWORD, "a-new-password-1").await.unwrap();
    assert!(s.session_caller(&here.secret, Some(HERE)).await.unwrap().is_some(), "the session that changed it");
    assert!(s.session_caller(&elsewhere.secret, Some(HERE)).await.unwrap().is_none(), "another session");
    assert!(s.token_caller(&token.token, Some(HERE)).await.unwrap().is_some(), "tokens are revoked one by one");
    assert!(s.sign_in("alice", USER_PASSWORD, HERE).await.is_err());
    assert!(s.sign_in("alice", "a-new-password-1", HERE).await.is_ok());
}
