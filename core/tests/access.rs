//! Who may act, through the services, on SQLite and on PostgreSQL: sessions and their expiry
//! (with the injected clock), disabled users, the sign-in throttle, the first run, and the
//! permission table as the services enforce it.

use chrono::Duration;
use pergola_core::services::FirstRun;
use pergola_core::store::AuditFilter;
use pergola_core::testing::{Env, ADMIN_PASSWORD, USER_PASSWORD};
use pergola_core::{connect, Clock, ManualClock, Services};
use pergola_domain::wire::{NewInvitation, NewUser, StageUpdate, UserPatch};
use pergola_domain::{ErrorKind, Role, StageComparison, StageType};
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
    wrong_guesses_made_at_once_get_no_more_tries_than_the_throttle_allows,
    a_flood_of_sign_ins_with_made_up_usernames_is_answered_and_leaves_the_server_working,
    a_made_up_invitation_never_tells_whether_a_username_is_taken,
    a_token_makes_no_token_that_outlives_it,
    a_token_alone_leaves_no_way_in_behind_it_needs_its_owners_password,
    a_leaked_owners_token_raises_no_members_role_without_the_owners_password,
    guesses_of_the_current_password_are_throttled_like_sign_ins,
    secrets_are_told_equal_only_to_who_may_configure_both_stages,
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

    // Sessions left to idle out, never used again, are deleted by the purge task's sweep (the
    // table keeps the live ones only), with nothing else.
    let hash = |secret: &str| pergola_core::credentials::secret_hash(secret);
    let forgotten = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    env.clock.advance(Duration::hours(6));
    let live = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    env.clock.advance(Duration::hours(7));
    assert!(s.store().get_session(&hash(&forgotten.secret)).await.unwrap().is_some(), "still stored");
    assert_eq!(s.end_stale_sessions().await.unwrap(), 1);
    assert!(s.store().get_session(&hash(&forgotten.secret)).await.unwrap().is_none());
    assert!(who(live.secret.clone()).await.is_some(), "the live one stays");
}

async fn a_disabled_user_is_signed_out_at_once_and_cannot_sign_in(env: &Env) {
    let s = &env.services;
    let alice = s.acting(env.user("alice").await);
    let session = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    let token = alice.create_token("laptop", None, None).await.unwrap();
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
    assert_eq!(developer.set_member(&shop, "olga", Role::Owner, None).await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(outsider.set_member(&shop, "olga", Role::Owner, None).await.unwrap_err().kind, ErrorKind::NotFound);
    // Removed, the developer sees nothing any more.
    env.admin.remove_member(&shop, "dev").await.unwrap();
    let after = env.services.acting(developer.caller().clone());
    assert_eq!(after.get_project(&shop).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn tokens_stop_at_their_expiry_and_at_revocation(env: &Env) {
    let s = &env.services;
    let day = env.admin.create_token("day", Some(1), None).await.unwrap();
    let forever = env.admin.create_token("forever", None, None).await.unwrap();
    assert_eq!(day.expires_at, Some(env.clock.now() + Duration::days(1)));
    assert_eq!(s.token_caller(&day.token, None).await.unwrap().unwrap().token.as_deref(), Some("day"));
    env.clock.advance(Duration::days(1));
    assert!(s.token_caller(&day.token, None).await.unwrap().is_none(), "expired");
    assert!(s.token_caller(&forever.token, None).await.unwrap().is_some());
    env.admin.revoke_token("forever").await.unwrap();
    assert!(s.token_caller(&forever.token, None).await.unwrap().is_none(), "revoked");
    let listed: Vec<_> = env.admin.list_tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(listed, ["day"], "revoked tokens are not listed; expired ones are");
    assert_eq!(env.admin.create_token("bad name", None, None).await.unwrap_err().kind, ErrorKind::Validation);
    assert_eq!(env.admin.create_token("x", Some(0), None).await.unwrap_err().kind, ErrorKind::Validation);
}

/// The first run, on a store of its own (no administrator from the environment).
#[tokio::test]
async fn the_setup_code_works_once_and_only_while_nobody_exists() {
    let (servers, dir) = fresh_servers(1, "setup").await;
    let s = &servers[0];
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
    drop(servers);
    let _ = std::fs::remove_dir_all(dir);
}

/// `n` servers on one fresh SQLite database that has no user yet, and its directory (removed
/// by the test at its end).
async fn fresh_servers(n: usize, name: &str) -> (Vec<Services>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("pergola-{name}-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = connect(&format!("sqlite://{}/pergola.db", dir.display())).await.unwrap();
    let clock = ManualClock::new(chrono::Utc::now());
    let servers = (0..n).map(|_| Services::new(store.clone(), Arc::new(clock.clone()))).collect();
    (servers, dir)
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
    let token = s.acting(here.caller.clone()).create_token("ci", None, None).await.unwrap();
    let me = s.acting(s.session_caller(&here.secret, Some(HERE)).await.unwrap().unwrap());
    me.change_password(USER_PASSWORD, "a-new-password-1").await.unwrap();
    assert!(s.session_caller(&here.secret, Some(HERE)).await.unwrap().is_some(), "the session that changed it");
    assert!(s.session_caller(&elsewhere.secret, Some(HERE)).await.unwrap().is_none(), "another session");
    assert!(s.token_caller(&token.token, Some(HERE)).await.unwrap().is_some(), "tokens are revoked one by one");
    assert!(s.sign_in("alice", USER_PASSWORD, HERE).await.is_err());
    assert!(s.sign_in("alice", "a-new-password-1", HERE).await.is_ok());
}

/// Hostile: sign-ins with usernames nobody has (each a password hash to compute) at once, each
/// from an address of its own (no throttle holds them back).
async fn a_flood_of_sign_ins_with_made_up_usernames_is_answered_and_leaves_the_server_working(env: &Env) {
    let mut flood = Vec::new();
    for n in 0..40 {
        let s = env.services.clone();
        flood.push(tokio::spawn(async move {
            let (name, address) = (format!("nobody-{n}"), format!("192.0.2.{n}"));
            s.sign_in(&name, "some-password-1", &address).await
        }));
    }
    let (mut checked, mut busy) = (0, 0);
    for attempt in flood {
        match attempt.await.unwrap().unwrap_err().kind {
            ErrorKind::Unauthenticated => checked += 1,
            // Told to come back when the server checks too many at once.
            ErrorKind::TooManyRequests => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(checked >= 1, "the flood is answered: {checked} checked, {busy} told to come back");
    // Every place among the hashes was given back: the administrator signs in (at once, or a
    // moment later while the last hashes finish).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match env.services.sign_in("admin", ADMIN_PASSWORD, HERE).await {
            Ok(_) => break,
            Err(e) if e.kind == ErrorKind::TooManyRequests && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Hostile: 20 wrong guesses for one user from one address at once — each would pass a check
/// that none of the others had counted yet.
async fn wrong_guesses_made_at_once_get_no_more_tries_than_the_throttle_allows(env: &Env) {
    let s = &env.services;
    let mut guesses = Vec::new();
    for n in 0..20 {
        let s = s.clone();
        guesses.push(tokio::spawn(async move { s.sign_in("admin", &format!("wrong-guess-{n}"), HERE).await }));
    }
    let (mut checked, mut refused) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap().unwrap_err().kind {
            ErrorKind::Unauthenticated => checked += 1,
            ErrorKind::TooManyRequests => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(checked + refused, 20);
    assert!((1..=5).contains(&checked), "{checked} guesses checked at once; the throttle allows 5");
    // However the burst went, the window allows 5 checked guesses in all.
    let mut more = 0;
    while s.sign_in("admin", "one-more-wrong-guess", HERE).await.unwrap_err().kind == ErrorKind::Unauthenticated {
        more += 1;
        assert!(checked + more <= 5, "{checked} + {more} guesses checked");
    }
    let locked = s.sign_in("admin", ADMIN_PASSWORD, HERE).await.unwrap_err();
    assert_eq!(locked.kind, ErrorKind::TooManyRequests, "even the right password, until the window passes");
}

/// Servers sharing a database each print a setup code of their own while nobody exists: the
/// second code used (after the first, or at the same moment) makes no second administrator.
#[tokio::test]
async fn a_second_servers_setup_code_makes_no_second_administrator() {
    for at_once in [false, true] {
        let (servers, dir) = fresh_servers(2, "setup-twice").await;
        let (one, two) = (&servers[0], &servers[1]);
        let FirstRun::SetupCode(code_one) = one.prepare_first_run(None).await.unwrap() else { panic!("a code") };
        let FirstRun::SetupCode(code_two) = two.prepare_first_run(None).await.unwrap() else { panic!("a code") };
        let (first, second) = if at_once {
            tokio::join!(
                one.complete_setup(&code_one, "root", "root-password", None),
                two.complete_setup(&code_two, "mallory", "mallory-password", None),
            )
        } else {
            let first = one.complete_setup(&code_one, "root", "root-password", None).await;
            (first, two.complete_setup(&code_two, "mallory", "mallory-password", None).await)
        };
        let winner = match (first, second) {
            (Ok(winner), Err(e)) | (Err(e), Ok(winner)) => {
                assert_eq!(e.kind, ErrorKind::InvalidState, "{e:?}");
                winner
            }
            (first, second) => panic!("exactly one setup succeeds: {first:?} / {second:?}"),
        };
        if !at_once {
            assert_eq!(winner.caller.username, "root");
        }
        let users = one.acting(winner.caller).list_users().await.unwrap();
        assert_eq!(users.len(), 1, "one administrator: {users:?}");
        assert!(!one.needs_setup().await.unwrap() && !two.needs_setup().await.unwrap());
        drop(servers);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Behind a load balancer, the setup code one server printed is typed into a page another
/// server answers: it works there, once, and the other codes then answer that the instance
/// is set up.
#[tokio::test]
async fn the_setup_code_one_server_printed_works_on_another() {
    let (servers, dir) = fresh_servers(2, "setup-elsewhere").await;
    let (one, two) = (&servers[0], &servers[1]);
    let FirstRun::SetupCode(printed_by_one) = one.prepare_first_run(None).await.unwrap() else { panic!("a code") };
    let FirstRun::SetupCode(printed_by_two) = two.prepare_first_run(None).await.unwrap() else { panic!("a code") };
    assert_ne!(printed_by_one, printed_by_two);
    let typed = format!(" {} ", printed_by_one.to_lowercase());
    let made = two.complete_setup(&typed, "root", "root-password", None).await.unwrap();
    assert_eq!(made.caller.username, "root");
    for (server, code) in [(one, &printed_by_one), (one, &printed_by_two), (two, &printed_by_two)] {
        let refused = server.complete_setup(code, "mallory", "mallory-password", None).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InvalidState, "{refused:?}");
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(dir);
}

/// Replicas started together with the same `PERGOLA_ADMIN_USER`: every one starts (none fails
/// on a username another has just taken), and the instance has one administrator.
#[tokio::test]
async fn replicas_started_at_once_with_the_administrator_in_their_environment_all_start() {
    let (servers, dir) = fresh_servers(3, "admin-env").await;
    let admin = Some(("admin", "admin-password-1"));
    let (a, b, c) = tokio::join!(
        servers[0].prepare_first_run(admin),
        servers[1].prepare_first_run(admin),
        servers[2].prepare_first_run(admin),
    );
    let runs = [a.unwrap(), b.unwrap(), c.unwrap()];
    let created = runs.iter().filter(|r| matches!(r, FirstRun::AdminCreated(name) if name == "admin")).count();
    let ready = runs.iter().filter(|r| **r == FirstRun::Ready).count();
    assert_eq!((created, ready), (1, 2), "{runs:?}");
    let caller = servers[2].sign_in("admin", "admin-password-1", "127.0.0.1").await.unwrap();
    let users = servers[2].acting(caller).list_users().await.unwrap();
    assert_eq!(users.len(), 1, "one administrator: {users:?}");
    drop(servers);
    let _ = std::fs::remove_dir_all(dir);
}

/// Hostile: an invitation code made up, with a username someone has and with one nobody has.
async fn a_made_up_invitation_never_tells_whether_a_username_is_taken(env: &Env) {
    let s = &env.services;
    env.user("alice").await;
    let made_up = format!("pgi_{}", "A".repeat(43));
    let taken = s.accept_invitation(&made_up, "alice", "some-password-1", None).await.unwrap_err();
    let free = s.accept_invitation(&made_up, "zed", "some-password-1", None).await.unwrap_err();
    assert_eq!(taken, free, "the same answer whether the username is taken or not");
    assert_eq!(taken.kind, ErrorKind::Expired);
    // With a real invitation, a taken username is said, and the invitation is not used up.
    let invitation = env.admin.create_invitation(NewInvitation::default()).await.unwrap();
    let secret = invitation.link.trim_start_matches("/invite/").to_owned();
    let e = s.accept_invitation(&secret, "alice", "some-password-1", None).await.unwrap_err();
    assert!(e.is_for("username"), "{e:?}");
    assert_eq!(s.accept_invitation(&secret, "zed", "some-password-1", None).await.unwrap().caller.username, "zed");
    // Used: it answers as a made-up one, whatever the username.
    let used = s.accept_invitation(&secret, "alice", "some-password-1", None).await.unwrap_err();
    assert_eq!(used, free);
    // Two invited people choose the same username at the same moment: one gets it, and the
    // other's invitation still works (with another name).
    let first = env.admin.create_invitation(NewInvitation::default()).await.unwrap();
    let second = env.admin.create_invitation(NewInvitation::default()).await.unwrap();
    let [first, second] = [first, second].map(|i| i.link.trim_start_matches("/invite/").to_owned());
    let (a, b) = tokio::join!(
        s.accept_invitation(&first, "sam", "some-password-1", None),
        s.accept_invitation(&second, "sam", "some-password-2", None),
    );
    let (lost, left) = match (a, b) {
        (Ok(_), Err(e)) => (e, second),
        (Err(e), Ok(_)) => (e, first),
        (a, b) => panic!("one of them gets 'sam': {:?} {:?}", a.map(|s| s.caller), b.map(|s| s.caller)),
    };
    assert!(lost.is_for("username"), "{lost:?}");
    assert_eq!(env.admin.list_invitations().await.unwrap().len(), 1, "the loser's invitation is still open");
    assert_eq!(
        s.accept_invitation(&left, "samantha", "some-password-2", None).await.unwrap().caller.username,
        "samantha"
    );
}

/// Hostile: a (leaked) token asks for a token that never expires, or outlives it: only with its
/// owner's password too.
async fn a_token_makes_no_token_that_outlives_it(env: &Env) {
    let s = &env.services;
    let week = env.admin.create_token("week", Some(7), None).await.unwrap();
    let by_week = s.acting(s.token_caller(&week.token, Some(HERE)).await.unwrap().unwrap());
    for given in [None, Some(""), Some("not-the-admins-password")] {
        let refused = by_week.create_token("forever", None, given).await.unwrap_err();
        assert!(refused.is_for("your_password"), "{refused:?}");
    }
    let names: Vec<String> = env.admin.list_tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["week"], "nothing was made");
    // With the password, as a password sign-in would make it.
    let forever = by_week.create_token("forever", None, Some(ADMIN_PASSWORD)).await.unwrap();
    assert_eq!(forever.expires_at, None);
    // A session's caller needs nothing more (it signed in with the password).
    assert_eq!(env.admin.create_token("admin-forever", None, None).await.unwrap().expires_at, None);
    // A token revoked meanwhile makes none.
    env.admin.revoke_token("week").await.unwrap();
    let late = by_week.create_token("late", None, Some(ADMIN_PASSWORD)).await.unwrap_err();
    assert_eq!(late.kind, ErrorKind::Unauthenticated, "{late:?}");
}

/// Hostile: a leaked administrator's token tries to leave a way in that outlives it — an
/// account, a password, the administrator role, an account enabled again, an invitation.
/// Each needs the administrator's own password too; without it (or with a wrong one) nothing
/// changes. Disabling, and everything through a session, needs nothing more.
async fn a_token_alone_leaves_no_way_in_behind_it_needs_its_owners_password(env: &Env) {
    let s = &env.services;
    env.user("alice").await;
    env.user("bob").await;
    env.admin.update_user("bob", UserPatch { disabled: Some(true), ..Default::default() }).await.unwrap();
    let leaked = env.admin.create_token("leaked", None, None).await.unwrap();
    let by_token = s.acting(s.token_caller(&leaked.token, Some(HERE)).await.unwrap().unwrap());
    let new_user = |your_password: Option<&str>| NewUser {
        username: "mallory".into(),
        password: "mallorys-password-1".into(),
        admin: true,
        your_password: your_password.map(str::to_owned),
    };
    let patches = [
        UserPatch { password: Some("alices-new-password".into()), ..Default::default() },
        UserPatch { admin: Some(true), ..Default::default() },
    ];
    for given in [None, Some("")] {
        let refused = by_token.create_user(new_user(given)).await.unwrap_err();
        assert!(refused.is_for("your_password"), "{refused:?}");
        for patch in &patches {
            let patch = UserPatch { your_password: given.map(str::to_owned), ..patch.clone() };
            let refused = by_token.update_user("alice", patch).await.unwrap_err();
            assert!(refused.is_for("your_password"), "{refused:?}");
        }
        let enable = UserPatch { disabled: Some(false), your_password: given.map(str::to_owned), ..Default::default() };
        assert!(by_token.update_user("bob", enable).await.unwrap_err().is_for("your_password"));
        let invite = NewInvitation { admin: true, your_password: given.map(str::to_owned), ..Default::default() };
        assert!(by_token.create_invitation(invite).await.unwrap_err().is_for("your_password"));
    }
    let wrong = Some("not-the-admins-password");
    let refused = by_token.create_user(new_user(wrong)).await.unwrap_err();
    assert_eq!(refused.message, "Your password is not right.");
    let patch = UserPatch { admin: Some(true), your_password: wrong.map(str::to_owned), ..Default::default() };
    assert!(by_token.update_user("alice", patch).await.unwrap_err().is_for("your_password"));
    // Nothing changed: no mallory, alice's password and role as they were, bob still disabled,
    // no invitation.
    let users = env.admin.list_users().await.unwrap();
    assert!(!users.iter().any(|u| u.username == "mallory"), "{users:?}");
    assert!(users.iter().any(|u| u.username == "alice" && !u.is_admin));
    assert!(users.iter().any(|u| u.username == "bob" && u.disabled));
    assert!(s.sign_in("alice", USER_PASSWORD, "10.0.0.8").await.is_ok(), "alice's password is unchanged");
    assert!(env.admin.list_invitations().await.unwrap().is_empty());
    // The wrong guesses were audited and counted with the sign-in throttle.
    let filter = AuditFilter { kind: Some("user.confirm-failed".into()), ..Default::default() };
    let audited = s.store().list_audit_events(None, &filter, 50).await.unwrap();
    assert_eq!(audited.len(), 2, "{audited:?}");
    let by =
        |e: &pergola_core::store::AuditEvent| e.actor == "admin (token leaked)" && e.address.as_deref() == Some(HERE);
    assert!(audited.iter().all(by), "{audited:?}");
    // Lowering access needs nothing more (a leaked token can do harm, not hide a way in).
    let disable = UserPatch { disabled: Some(true), ..Default::default() };
    by_token.update_user("alice", disable).await.unwrap();
    // With the password, each works.
    let created = by_token.create_user(new_user(Some(ADMIN_PASSWORD))).await.unwrap();
    assert!(created.is_admin);
    let enable = UserPatch { disabled: Some(false), your_password: Some(ADMIN_PASSWORD.into()), ..Default::default() };
    assert!(!by_token.update_user("alice", enable).await.unwrap().disabled);
    let invite = NewInvitation { your_password: Some(ADMIN_PASSWORD.into()), ..Default::default() };
    by_token.create_invitation(invite).await.unwrap();
    // Through the session (a password sign-in), none of it asks for the password again.
    let patch = UserPatch { password: Some("alices-new-password".into()), ..Default::default() };
    env.admin.update_user("alice", patch).await.unwrap();
    env.admin.create_invitation(NewInvitation::default()).await.unwrap();
    // Too many wrong guesses through the token: even the right password is refused for a while.
    for n in 0..5 {
        let guess = NewInvitation { your_password: Some(format!("guess-number-{n}")), ..Default::default() };
        assert!(by_token.create_invitation(guess).await.unwrap_err().is_for("your_password"));
    }
    let right = NewInvitation { your_password: Some(ADMIN_PASSWORD.into()), ..Default::default() };
    assert_eq!(by_token.create_invitation(right).await.unwrap_err().kind, ErrorKind::TooManyRequests);
}

/// Hostile: a project owner's leaked token tries to give an account of the project (an
/// accomplice's, or the thief's own) more than it has — owner, which would outlive the token's
/// revocation. Adding a member or raising a role needs the owner's password too; lowering and
/// keeping a role do not; through a session nothing more is asked.
async fn a_leaked_owners_token_raises_no_members_role_without_the_owners_password(env: &Env) {
    let s = &env.services;
    let shop = env.admin.create_project("Shop", Some("shop")).await.unwrap().id;
    let owner = env.member("olivia", &shop, Role::Owner).await;
    env.member("vic", &shop, Role::Viewer).await;
    env.user("newbie").await;
    let leaked = owner.create_token("leaked", None, None).await.unwrap();
    let by_token = s.acting(s.token_caller(&leaked.token, Some(HERE)).await.unwrap().unwrap());
    let role_of = |name: &'static str| async move {
        env.admin.members("shop").await.unwrap().into_iter().find(|m| m.username == name).map(|m| m.role)
    };
    for (name, role) in [("vic", Role::Owner), ("vic", Role::Developer), ("newbie", Role::Viewer)] {
        for given in [None, Some(""), Some("not-olivias-password")] {
            let refused = by_token.set_member(&shop, name, role, given).await.unwrap_err();
            assert!(refused.is_for("your_password"), "{name} {role:?} {given:?}: {refused:?}");
        }
    }
    assert_eq!(role_of("vic").await, Some(Role::Viewer), "nothing changed");
    assert_eq!(role_of("newbie").await, None);
    // Keeping or lowering a role needs nothing more (a leaked token can do harm, not hide a way in).
    by_token.set_member(&shop, "vic", Role::Viewer, None).await.unwrap();
    // With the owner's password, raising works.
    by_token.set_member(&shop, "vic", Role::Maintainer, Some(USER_PASSWORD)).await.unwrap();
    assert_eq!(role_of("vic").await, Some(Role::Maintainer));
    by_token.set_member(&shop, "vic", Role::Developer, None).await.unwrap();
    assert_eq!(role_of("vic").await, Some(Role::Developer));
    // Through a session (a password sign-in), nothing more is asked.
    owner.set_member(&shop, "newbie", Role::Owner, None).await.unwrap();
    assert_eq!(role_of("newbie").await, Some(Role::Owner));
}

/// Hostile: a stolen session guesses the current password by changing it.
async fn guesses_of_the_current_password_are_throttled_like_sign_ins(env: &Env) {
    let s = &env.services;
    env.user("alice").await;
    let session = s.sign_in_session("alice", USER_PASSWORD, HERE).await.unwrap();
    let me = s.acting(s.session_caller(&session.secret, Some(HERE)).await.unwrap().unwrap());
    for n in 0..5 {
        let wrong = me.change_password(&format!("guess-number-{n}"), "a-new-password-1").await.unwrap_err();
        assert!(wrong.is_for("current"), "{wrong:?}");
    }
    let locked = me.change_password(USER_PASSWORD, "a-new-password-1").await.unwrap_err();
    assert_eq!((locked.kind, locked.retry_after), (ErrorKind::TooManyRequests, Some(15 * 60)), "even the right one");
    assert_eq!(s.sign_in("alice", USER_PASSWORD, HERE).await.unwrap_err().kind, ErrorKind::TooManyRequests);
    let filter = AuditFilter { kind: Some("user.password-change-failed".into()), ..Default::default() };
    let audited = s.store().list_audit_events(None, &filter, 50).await.unwrap();
    assert_eq!(audited.len(), 5, "{audited:?}");
    assert!(audited.iter().all(|e| e.actor == "alice" && e.address.as_deref() == Some(HERE)), "{audited:?}");
    // After the window, the right one works (and the password is changed).
    env.clock.advance(Duration::minutes(15));
    me.change_password(USER_PASSWORD, "a-new-password-1").await.unwrap();
    assert!(s.sign_in("alice", "a-new-password-1", HERE).await.is_ok());
}

fn secret_differs(c: &StageComparison) -> bool {
    c.config.iter().any(|d| d.key == "API_TOKEN")
}

/// Hostile: a developer, who may not know PROD's secrets, sets a guess in DEV and compares.
async fn secrets_are_told_equal_only_to_who_may_configure_both_stages(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    for (name, stage_type) in [("Dev", StageType::Dev), ("QA", StageType::Qa), ("Prod", StageType::Prod)] {
        env.admin.create_stage(&shop, name, stage_type, None).await.unwrap();
    }
    for stage in ["dev", "qa", "prod"] {
        env.admin.set_config(&shop, stage, "API_TOKEN", "guessed-right", true).await.unwrap();
    }
    let developer = env.member("dev", &shop, Role::Developer).await;
    let viewer = env.member("vic", &shop, Role::Viewer).await;
    // Who may configure both stages is told equal secrets are equal.
    assert!(!secret_differs(&env.admin.compare_stages(&shop, "dev", "prod").await.unwrap()));
    assert!(!secret_differs(&developer.compare_stages(&shop, "dev", "qa").await.unwrap()));
    // A developer may not configure PROD: a right guess and a wrong one look the same.
    let right = developer.compare_stages(&shop, "dev", "prod").await.unwrap();
    assert!(secret_differs(&right), "{right:?}");
    let options = developer.promotion_options(&shop, "dev").await.unwrap();
    let to_prod = options.iter().find(|o| o.to.id == "prod").unwrap();
    let to_qa = options.iter().find(|o| o.to.id == "qa").unwrap();
    assert!(secret_differs(to_prod) && !secret_differs(to_qa));
    let reversed = developer.compare_stages(&shop, "prod", "dev").await.unwrap();
    assert!(secret_differs(&reversed));
    env.admin.set_config(&shop, "prod", "API_TOKEN", "the-real-one", true).await.unwrap();
    assert_eq!(developer.compare_stages(&shop, "dev", "prod").await.unwrap(), right);
    assert!(secret_differs(&env.admin.compare_stages(&shop, "dev", "prod").await.unwrap()));
    // A viewer configures nothing: never told.
    assert!(secret_differs(&viewer.compare_stages(&shop, "dev", "qa").await.unwrap()));
}
