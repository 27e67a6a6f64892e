//! The live streams through the services, on SQLite and on PostgreSQL: what a page hears when
//! something changes, what it does not hear, who may listen, and when a stream ends.

use pergola_core::services::{Note, METRICS_AT_MOST_EVERY, RECHECK, STREAMS_PER_USER};
use pergola_core::testing::{Env, USER_PASSWORD};
use pergola_domain::wire::{NewUser, UserPatch};
use pergola_domain::{ErrorKind, Role, StageType};
use std::time::Duration;

#[macro_use]
mod support;

all_backends!(
    a_change_by_anyone_reaches_the_pages_that_show_it_and_no_other,
    outsiders_cannot_listen_and_a_removed_member_stops_hearing,
    streams_end_when_the_server_stops,
    a_sample_of_every_stage_reaches_a_project_page_as_one_note,
    new_metrics_reach_a_page_at_most_once_in_nine_seconds,
    a_stream_ends_at_once_when_what_signed_its_caller_in_stops_working,
    one_user_holds_a_bounded_number_of_streams,
);

/// What the stream says within a second (`None`: nothing).
async fn heard(watch: &mut pergola_core::services::Watch) -> Option<Note> {
    tokio::time::timeout(Duration::from_secs(1), watch.next()).await.ok().flatten()
}

async fn a_change_by_anyone_reaches_the_pages_that_show_it_and_no_other(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    let blog = env.admin.create_project("Blog", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    env.admin.create_stage(&shop, "QA", StageType::Qa, None).await.unwrap();
    let dev = env.member("dana", &shop, Role::Developer).await;
    let mut project = dev.watch(&shop, None).await.unwrap();
    let mut stage = dev.watch(&shop, Some("dev")).await.unwrap();
    let mut other_stage = dev.watch(&shop, Some("qa")).await.unwrap();
    // Each stream first says it is open.
    for w in [&mut project, &mut stage, &mut other_stage] {
        assert_eq!(heard(w).await, Some(Note::Ready));
    }
    // Someone else suspends the DEV stage: the project page and the stage's page hear it, the
    // QA stage's page does not.
    env.admin.suspend_stage(&shop, "dev").await.unwrap();
    assert_eq!(heard(&mut project).await, Some(Note::Changed));
    assert_eq!(heard(&mut stage).await, Some(Note::Changed));
    assert_eq!(heard(&mut other_stage).await, None);
    // A burst of changes (suspending, suspended, …) reaches a page as few notes, then quiet.
    let mut notes = 0;
    while heard(&mut project).await.is_some() {
        notes += 1;
    }
    assert!(notes <= 2, "{notes} notes for one suspend");
    // A change in another project is not heard here.
    env.admin.create_stage(&blog, "Dev", StageType::Dev, None).await.unwrap();
    assert_eq!(heard(&mut project).await, None);
    // A new stage in this project is.
    env.admin.create_stage(&shop, "Dev 2", StageType::Dev, None).await.unwrap();
    assert_eq!(heard(&mut project).await, Some(Note::Changed));
}

async fn outsiders_cannot_listen_and_a_removed_member_stops_hearing(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    let outsider = env.services.acting(env.user("olga").await);
    assert_eq!(outsider.watch(&shop, None).await.err().map(|e| e.kind), Some(ErrorKind::NotFound));
    assert_eq!(outsider.watch(&shop, Some("dev")).await.err().map(|e| e.kind), Some(ErrorKind::NotFound));
    let viewer = env.member("vic", &shop, Role::Viewer).await;
    assert_eq!(viewer.watch(&shop, Some("nope")).await.err().map(|e| e.kind), Some(ErrorKind::NotFound));
    let mut watch = viewer.watch(&shop, None).await.unwrap();
    assert_eq!(heard(&mut watch).await, Some(Note::Ready));
    env.admin.remove_member(&shop, "vic").await.unwrap();
    // The stream ends at its next check, without telling the removed member anything more.
    let ended = tokio::time::timeout(RECHECK + Duration::from_secs(5), async {
        loop {
            env.admin.suspend_stage(&shop, "dev").await.ok();
            env.admin.resume_stage(&shop, "dev").await.ok();
            match tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
                Ok(None) => return true,
                _ => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true));
}

async fn streams_end_when_the_server_stops(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    let mut watch = env.admin.watch(&shop, Some("dev")).await.unwrap();
    assert_eq!(heard(&mut watch).await, Some(Note::Ready));
    env.services.close_live_streams();
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), watch.next()).await, Ok(None));
}

async fn a_sample_of_every_stage_reaches_a_project_page_as_one_note(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    for name in ["Dev", "QA", "Prod"] {
        env.admin.create_stage(&shop, name, StageType::Dev, None).await.unwrap();
    }
    let mut project = env.admin.watch(&shop, None).await.unwrap();
    assert_eq!(heard(&mut project).await, Some(Note::Ready));
    // Three stages answered requests: the sample gives each new points.
    for stage in ["dev", "qa", "prod"] {
        env.services.record_proxied(&shop, stage, "web", 200, 3.0);
    }
    env.services.sample_metrics().await;
    assert_eq!(heard(&mut project).await, Some(Note::Metrics));
    assert_eq!(heard(&mut project).await, None, "one note for the whole sample");
    // A change of state right after a sample is never lost behind it: the page hears it.
    env.services.record_proxied(&shop, "dev", "web", 200, 3.0);
    env.services.sample_metrics().await;
    env.admin.suspend_stage(&shop, "qa").await.unwrap();
    let mut notes = Vec::new();
    while let Some(note) = heard(&mut project).await {
        notes.push(note);
    }
    assert!(notes.contains(&Note::Changed) && notes.len() <= 2, "{notes:?}");
}

async fn new_metrics_reach_a_page_at_most_once_in_nine_seconds(env: &Env) {
    // With several servers, each samples every 10 s and says so (here: two samples 2 s apart);
    // each note makes the page read its charts again, so a stream passes on one per 9 s.
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    let mut stage = env.admin.watch(&shop, Some("dev")).await.unwrap();
    assert_eq!(heard(&mut stage).await, Some(Note::Ready));
    env.services.record_proxied(&shop, "dev", "web", 200, 3.0);
    env.services.sample_metrics().await;
    let told = std::time::Instant::now();
    assert_eq!(heard(&mut stage).await, Some(Note::Metrics));
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.services.record_proxied(&shop, "dev", "web", 200, 3.0);
    env.services.sample_metrics().await;
    assert_eq!(heard(&mut stage).await, None, "held: the last note was 2 s ago");
    // Told once its turn came — not lost.
    let note = tokio::time::timeout(METRICS_AT_MOST_EVERY, stage.next()).await.ok().flatten();
    assert_eq!(note, Some(Note::Metrics));
    let waited = told.elapsed();
    assert!(waited >= METRICS_AT_MOST_EVERY, "{waited:?}");
    assert_eq!(heard(&mut stage).await, None, "one note for the two samples");
    // A change of state is never held behind metrics.
    env.services.record_proxied(&shop, "dev", "web", 200, 3.0);
    env.services.sample_metrics().await;
    env.admin.suspend_stage(&shop, "dev").await.unwrap();
    assert_eq!(heard(&mut stage).await, Some(Note::Changed));
}

/// Whether the stream ends within a second (well before its periodic check).
async fn ends_at_once(watch: &mut pergola_core::services::Watch) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), watch.next()).await, Ok(None))
}

async fn a_stream_ends_at_once_when_what_signed_its_caller_in_stops_working(env: &Env) {
    let s = &env.services;
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    env.member("vic", &shop, Role::Viewer).await;
    let shop = shop.as_str();
    let open = |caller: pergola_core::services::Caller| async move {
        let mut watch = s.acting(caller).watch(shop, Some("dev")).await.unwrap();
        assert_eq!(heard(&mut watch).await, Some(Note::Ready));
        watch
    };

    // Signing out: the session's streams end; another session's go on.
    let a = s.sign_in_session("vic", USER_PASSWORD, "127.0.0.1").await.unwrap();
    let b = s.sign_in_session("vic", USER_PASSWORD, "127.0.0.1").await.unwrap();
    let mut tab_a = open(s.session_caller(&a.secret, None).await.unwrap().unwrap()).await;
    let mut tab_b = open(s.session_caller(&b.secret, None).await.unwrap().unwrap()).await;
    s.end_session(&a.secret).await.unwrap();
    assert!(ends_at_once(&mut tab_a).await, "signed out");
    assert_eq!(heard(&mut tab_b).await, None, "the other session still hears, and was told nothing");
    env.admin.suspend_stage(shop, "dev").await.unwrap();
    assert_eq!(heard(&mut tab_b).await, Some(Note::Changed));

    // A revoked token: its streams end, the session's go on.
    let vic = s.acting(s.session_caller(&b.secret, None).await.unwrap().unwrap());
    let token = vic.create_token("laptop", None, None).await.unwrap();
    let mut cli = open(s.token_caller(&token.token, None).await.unwrap().unwrap()).await;
    vic.revoke_token("laptop").await.unwrap();
    assert!(ends_at_once(&mut cli).await, "revoked");
    while heard(&mut tab_b).await.is_some() {}

    // `pergola login` again: the token it replaces ends its streams.
    let first = s.sign_in_token("vic", USER_PASSWORD, "127.0.0.1", "cli-laptop", None).await.unwrap();
    let mut follower = open(s.token_caller(&first.token, None).await.unwrap().unwrap()).await;
    s.sign_in_token("vic", USER_PASSWORD, "127.0.0.1", "cli-laptop", None).await.unwrap();
    assert!(ends_at_once(&mut follower).await, "replaced by a new login");
    while heard(&mut tab_b).await.is_some() {}

    // Disabled: everything of theirs ends.
    env.admin.update_user("vic", UserPatch { disabled: Some(true), ..Default::default() }).await.unwrap();
    assert!(ends_at_once(&mut tab_b).await, "disabled");

    // An administrator who is no member reads every project only while an administrator.
    let input = NewUser { username: "ada".into(), password: USER_PASSWORD.into(), admin: true, your_password: None };
    env.admin.create_user(input).await.unwrap();
    let ada = s.sign_in_session("ada", USER_PASSWORD, "127.0.0.1").await.unwrap();
    let mut admin_tab = open(s.session_caller(&ada.secret, None).await.unwrap().unwrap()).await;
    env.admin.update_user("ada", UserPatch { admin: Some(false), ..Default::default() }).await.unwrap();
    assert!(ends_at_once(&mut admin_tab).await, "no longer an administrator");
}

async fn one_user_holds_a_bounded_number_of_streams(env: &Env) {
    let shop = env.admin.create_project("Shop", None).await.unwrap().id;
    env.admin.create_stage(&shop, "Dev", StageType::Dev, None).await.unwrap();
    let dev = env.member("dana", &shop, Role::Developer).await;
    let mut open = Vec::new();
    for n in 0..STREAMS_PER_USER {
        let stage = (n % 2 == 0).then_some("dev");
        open.push(dev.watch(&shop, stage).await.unwrap());
    }
    let refused = dev.watch(&shop, None).await.err().unwrap();
    assert_eq!(refused.kind, ErrorKind::TooManyRequests);
    assert!(refused.message.contains("live streams open"), "{}", refused.message);
    assert!(refused.retry_after.is_some());
    // Another user is not held up by it; a stream that ends makes room.
    let other = env.member("otto", &shop, Role::Viewer).await;
    let mut others = other.watch(&shop, None).await.unwrap();
    assert_eq!(heard(&mut others).await, Some(Note::Ready));
    drop(open.pop());
    let mut again = dev.watch(&shop, None).await.unwrap();
    assert_eq!(heard(&mut again).await, Some(Note::Ready));
}
