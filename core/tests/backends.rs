//! One suite of store and service tests, run on SQLite and on PostgreSQL.

use chrono::Duration;
use pergola_core::credentials::{self, SecretKind};
use pergola_core::services::{Acting, Duplicate};
use pergola_core::store::{AuditEvent, AuditFilter, GuestLinkRow, InvitationRow, SessionRow, TokenRow, UserRow};
use pergola_core::testing::{self as common, Env, USER_PASSWORD};
use pergola_core::StoreError;
use pergola_domain::wire::StageUpdate;
use pergola_domain::{
    name_key, parse_grace, Error, ErrorKind, RetentionPolicy, Role, Stage, StageQuery, StageQueryParams, StageSort,
    StageStatus, StageType, Visibility,
};

/// Every case, run once per backend.
macro_rules! backend_suite {
    ($backend:ident, $make:path; $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let env = $make().await;
                    super::$case(&env).await;
                    env.cleanup().await;
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        backend_suite!(sqlite, pergola_core::testing::sqlite_env; $($case),*);
        backend_suite!(postgres, pergola_core::testing::postgres_env; $($case),*);
    };
}

all_backends!(
    projects_get_derived_ids_and_refuse_taken_ones,
    stages_are_created_running_with_derived_or_chosen_ids,
    taken_stage_ids_are_refused_with_a_free_suggestion,
    hundred_concurrent_creates_of_one_id_let_exactly_one_win,
    bad_input_is_refused_and_changes_nothing,
    live_id_check_reports_invalid_taken_and_free,
    suspend_and_resume_follow_the_lifecycle,
    rename_and_retype_keep_the_id,
    delete_archives_and_restore_brings_back_the_previous_state,
    restore_after_the_due_date_is_refused_even_before_purge,
    purge_deletes_only_due_stages_and_frees_their_ids,
    a_sample_of_many_components_is_kept_whole,
    retention_changes_apply_to_stages_archived_afterwards,
    limits_per_stage_type_reach_the_runtime_and_only_administrators_change_them,
    promotion_comparison_and_duplication_follow_dev_qa_prod,
    names_are_stored_verbatim,
    configuration_masks_secrets_survives_restore_and_is_purged,
    builds_and_releases,
    concurrent_builds_get_distinct_numbers,
    a_slow_suspend_shows_suspending_until_its_components_stop,
    reconcile_settles_a_suspend_the_server_did_not_finish,
    a_resume_while_suspending_starts_the_release_once_the_stop_ends,
    suspend_resume_suspend_while_the_stop_is_slow,
    reconcile_resumes_a_stage_whose_resume_was_pending,
    reconcile_goes_on_when_a_stage_cannot_start,
    a_failed_resume_or_restore_says_why_in_the_timeline,
    a_suspend_lets_started_jobs_finish_and_a_delete_stops_them,
    a_purge_the_runtime_cannot_finish_keeps_the_stage_and_is_retried,
    the_timeline_records_what_happened,
    secrets_are_sealed_at_rest_and_reach_the_runtime_in_clear,
    racing_deploys_leave_the_newest_release_running,
    a_stage_restored_before_its_delete_had_its_turn_is_not_stopped,
    the_share_proxy_sees_every_change_at_once,
    stages_are_listed_live_or_archived,
    stages_are_searched_filtered_sorted_and_paged,
    a_page_never_repeats_or_skips_a_stage_while_others_change,
    the_project_page_shows_one_page_with_current_releases,
    concurrent_patches_of_one_stage_lose_no_change,
    stage_activity_and_the_demo,
    users_are_unique_case_insensitively_and_can_be_disabled,
    sessions_are_found_by_hash_touched_and_deleted,
    api_token_names_are_unique_while_live_and_revocation_is_immediate,
    memberships_set_change_and_remove_roles,
    sign_in_failures_count_within_their_window,
    invitations_are_used_once_and_never_after_expiry,
    audit_events_are_listed_newest_first_and_filtered,
    guest_links_and_visibility_belong_to_their_stage,
    stage_events_record_their_actor,
    events_timelines_keep_the_newest_and_nothing_too_old,
    sharing_is_set_and_guest_links_made_through_the_services,
    sharing_needs_the_right_role_and_answers_the_proxy,
    path_builds_are_only_for_administrators_when_turned_on,
    hostile_archives_are_refused_and_leave_nothing_behind,
    a_good_archive_is_unpacked_read_only_and_stored_once,
    unused_artifacts_are_deleted_after_the_retention,
);

async fn project(env: &Env, name: &str) -> String {
    env.admin.create_project(name, None).await.unwrap().id
}

// What the dashboard's server functions do with the form's strings before they call the
// services: parse them at the edge.

async fn create(s: &Acting, p: &str, name: &str, t: &str, id: Option<&str>) -> Result<Stage, Error> {
    s.create_stage(p, name, StageType::parse(t)?, id).await
}

async fn update(s: &Acting, p: &str, id: &str, name: &str, t: &str, grace: Option<&str>) -> Result<Stage, Error> {
    let update = StageUpdate {
        name: Some(name.to_owned()),
        stage_type: Some(StageType::parse(t)?),
        grace_secs: grace.map(parse_grace).transpose()?,
    };
    s.update_stage(p, id, update).await
}

async fn confirmed_delete(s: &Acting, p: &str, id: &str, confirm: &str) -> Result<Stage, Error> {
    let stage = s.get_stage(p, id).await?;
    pergola_domain::confirm_deletion(&stage.id, confirm)?;
    s.delete_stage(p, id).await
}

async fn retention(s: &Acting, dev: &str, qa: &str, prod: &str) -> Result<RetentionPolicy, Error> {
    s.set_retention(RetentionPolicy::parse(dev, qa, prod)?).await
}

async fn projects_get_derived_ids_and_refuse_taken_ones(env: &Env) {
    let s = &env.admin;
    let p = s.create_project("My New Project", None).await.unwrap();
    assert_eq!(p.id, "my-new-project");
    assert_eq!(p.name, "My New Project");
    let e = s.create_project("my new project", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ProjectIdTaken);
    assert_eq!(e.suggestion.as_deref(), Some("my-new-project-2"));
    let other = s.create_project("Other", Some("my-new-project-2")).await.unwrap();
    assert_eq!(other.id, "my-new-project-2");
    let e = s.create_project("Third", Some("my-new-project")).await.unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("my-new-project-3"));
    let ids: Vec<_> = s.list_projects().await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["my-new-project", "my-new-project-2"]);
    let e = s.get_project("nope").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(s.project_overview("nope", &Default::default()).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn stages_are_created_running_with_derived_or_chosen_ids(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let a = s.create_stage(&p, "My New Stage", StageType::Dev, None).await.unwrap();
    assert_eq!((a.id.as_str(), a.stage_type, a.status), ("my-new-stage", StageType::Dev, StageStatus::Running));
    assert_eq!(a.created_at, env.clock.now_for_tests());
    let b = s.create_stage(&p, "User Acceptance", StageType::Qa, pergola_domain::typed_id("  uat ")).await.unwrap();
    assert_eq!(b.id, "uat");
    let c = s.create_stage(&p, "Übersicht Café", StageType::Prod, pergola_domain::typed_id("")).await.unwrap();
    assert_eq!(c.id, "ubersicht-cafe");
    // Through the API an ID is taken exactly as given: blank or padded ones are refused.
    for given in ["", " qa ", "  "] {
        let e = s.create_stage(&p, "Quality", StageType::Qa, Some(given)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{given:?}");
    }
    let overview = s.project_overview(&p, &Default::default()).await.unwrap();
    let ids: Vec<_> = overview.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["my-new-stage", "uat", "ubersicht-cafe"]);
    assert!(overview.archived.is_empty());
    assert_eq!(s.get_stage(&p, "uat").await.unwrap().name, "User Acceptance");
    // The same ID in another project is fine: IDs are unique per project.
    let q = project(env, "Other").await;
    assert_eq!(s.create_stage(&q, "My New Stage", StageType::Dev, None).await.unwrap().id, "my-new-stage");
}

async fn taken_stage_ids_are_refused_with_a_free_suggestion(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "My Stage", StageType::Dev, None).await.unwrap();
    let e = s.create_stage(&p, "my stage", StageType::Qa, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::StageIdTaken);
    assert!(e.is_for("stage_id"));
    assert_eq!(e.suggestion.as_deref(), Some("my-stage-2"));
    assert_eq!(e.message, "Stage ID 'my-stage' is already taken. Try 'my-stage-2'.");
    s.create_stage(&p, "Second", StageType::Dev, Some("my-stage-2")).await.unwrap();
    let e = s.create_stage(&p, "Third", StageType::Dev, Some("my-stage")).await.unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("my-stage-3"));
    // An archived stage still holds its ID.
    s.delete_stage(&p, "my-stage-2").await.unwrap();
    let e = s.create_stage(&p, "Again", StageType::Dev, Some("my-stage-2")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::StageIdTaken);
    assert!(e.message.contains("archived stage"), "{}", e.message);
    assert_eq!(e.suggestion.as_deref(), Some("my-stage-3"));
    assert_eq!(s.project_overview(&p, &Default::default()).await.unwrap().stages.len(), 1);
}

async fn hundred_concurrent_creates_of_one_id_let_exactly_one_win(env: &Env) {
    let p = project(env, "Race").await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = env.admin.clone();
            let p = p.clone();
            tokio::spawn(async move { s.create_stage(&p, &format!("Racer {i}"), StageType::Dev, Some("hot")).await })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(stage) => won.push(stage),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::StageIdTaken, "{e:?}");
                assert_eq!(e.suggestion.as_deref(), Some("hot-2"));
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one create wins");
    let stages = env.admin.project_overview(&p, &Default::default()).await.unwrap().stages;
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0].name, won[0].name);
}

async fn bad_input_is_refused_and_changes_nothing(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let long = "x".repeat(101);
    let cases: Vec<(&str, &str, Option<&str>, &str)> = vec![
        ("", "dev", None, "name"),
        ("   ", "dev", None, "name"),
        (&long, "dev", None, "name"),
        ("ctrl\u{7}bell", "dev", None, "name"),
        ("Fine", "staging", None, "stage_type"),
        ("Fine", "dev", Some("Has Spaces"), "stage_id"),
        ("Fine", "dev", Some("x'; DROP TABLE stages;--"), "stage_id"),
        ("Fine", "dev", Some("new"), "stage_id"),
        ("Fine", "dev", Some("9lives"), "stage_id"),
    ];
    for (name, t, id, field) in cases {
        let e = create(s, &p, name, t, id).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{name:?} {t} {id:?}");
        assert!(e.is_for(field), "{name:?} {t} {id:?}: {e:?}");
        assert!(!e.message.is_empty());
    }
    let e = s.create_stage("no-such-project", "Fine", StageType::Dev, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(s.project_overview(&p, &Default::default()).await.unwrap().stages.is_empty(), "nothing was created");
    assert_eq!(s.create_project("", None).await.unwrap_err().kind, ErrorKind::Validation);
    assert_eq!(s.list_projects().await.unwrap().len(), 1);
}

async fn live_id_check_reports_invalid_taken_and_free(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "QA", StageType::Qa, None).await.unwrap();
    let free = s.check_stage_id(&p, "integration").await.unwrap();
    assert!(free.available && free.message.is_none());
    let taken = s.check_stage_id(&p, "qa").await.unwrap();
    assert!(!taken.available);
    assert_eq!(taken.suggestion.as_deref(), Some("qa-2"));
    let invalid = s.check_stage_id(&p, "Not Valid").await.unwrap();
    assert!(!invalid.available && invalid.suggestion.is_none());
    assert!(invalid.message.unwrap().contains("lowercase"));
    assert_eq!(s.check_stage_id("ghost", "qa").await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn suspend_and_resume_follow_the_lifecycle(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "dev", StageType::Dev, None).await.unwrap();
    env.clock.advance(Duration::minutes(5));
    let st = s.suspend_stage(&p, "dev").await.unwrap();
    assert_eq!(st.status, StageStatus::Suspended);
    assert_eq!(st.updated_at, env.clock.now_for_tests());
    let e = s.suspend_stage(&p, "dev").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert!(e.message.contains("already suspended"));
    assert_eq!(s.get_stage(&p, "dev").await.unwrap().status, StageStatus::Suspended);
    assert_eq!(s.resume_stage(&p, "dev").await.unwrap().status, StageStatus::Running);
    assert!(s.resume_stage(&p, "dev").await.unwrap_err().message.contains("already running"));
    assert_eq!(s.suspend_stage(&p, "ghost").await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn rename_and_retype_keep_the_id(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "Staging", StageType::Dev, None).await.unwrap();
    assert_eq!(s.get_stage(&p, "staging").await.unwrap().grace_secs, 60, "the seed's usual grace period");
    let st = update(s, &p, "staging", "Pre-production", "prod", None).await.unwrap();
    assert_eq!(
        (st.id.as_str(), st.name.as_str(), st.stage_type, st.grace_secs),
        ("staging", "Pre-production", StageType::Prod, 60)
    );
    let st = update(s, &p, "staging", "Pre-production", "prod", Some("15")).await.unwrap();
    assert_eq!(st.grace_secs, 15);
    let e = update(s, &p, "staging", " ", "prod", None).await.unwrap_err();
    assert!(e.is_for("name"));
    let e = update(s, &p, "staging", "Ok", "uat", None).await.unwrap_err();
    assert!(e.is_for("stage_type"));
    let e = update(s, &p, "staging", "Changed", "dev", Some("0")).await.unwrap_err();
    assert!(e.is_for("grace_secs") && e.message.contains("1 to 3600"), "{e:?}");
    let st = s.get_stage(&p, "staging").await.unwrap();
    assert_eq!(
        (st.name.as_str(), st.stage_type, st.grace_secs),
        ("Pre-production", StageType::Prod, 15),
        "refusals change nothing"
    );
    s.delete_stage(&p, "staging").await.unwrap();
    assert_eq!(update(s, &p, "staging", "X", "dev", None).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn delete_archives_and_restore_brings_back_the_previous_state(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "Integration Tests", StageType::Dev, Some("test")).await.unwrap();
    s.suspend_stage(&p, "test").await.unwrap();
    let e = confirmed_delete(s, &p, "test", "tset").await.unwrap_err();
    assert!(e.is_for("confirm"));
    assert_eq!(
        s.project_overview(&p, &Default::default()).await.unwrap().stages.len(),
        1,
        "wrong confirmation deletes nothing"
    );
    let archived = s.delete_stage(&p, "test").await.unwrap();
    let now = env.clock.now_for_tests();
    assert_eq!(archived.archived_at, Some(now));
    assert_eq!(archived.purge_due_at, Some(now + Duration::days(1)));
    let overview = s.project_overview(&p, &Default::default()).await.unwrap();
    assert!(overview.stages.is_empty());
    assert_eq!(overview.archived.len(), 1);
    assert_eq!(s.get_stage(&p, "test").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.resume_stage(&p, "test").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.delete_stage(&p, "test").await.unwrap_err().kind, ErrorKind::NotFound);
    env.clock.advance(Duration::hours(23));
    let restored = s.restore_stage(&p, "test").await.unwrap();
    assert_eq!(restored.status, StageStatus::Suspended, "status from before the deletion");
    assert_eq!(restored.name, "Integration Tests");
    assert_eq!((restored.archived_at, restored.purge_due_at), (None, None));
    let e = s.restore_stage(&p, "test").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert_eq!(s.project_overview(&p, &Default::default()).await.unwrap().stages.len(), 1);
}

async fn restore_after_the_due_date_is_refused_even_before_purge(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "QA", StageType::Qa, None).await.unwrap();
    s.delete_stage(&p, "qa").await.unwrap();
    env.clock.advance(Duration::days(7));
    let e = s.restore_stage(&p, "qa").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Expired);
    assert!(e.message.contains("can no longer be restored"), "{}", e.message);
    assert!(e.message.contains("2026-12-05 12:00 UTC"), "{}", e.message);
    assert_eq!(s.project_overview(&p, &Default::default()).await.unwrap().archived.len(), 1, "not purged yet");
}

async fn a_sample_of_many_components_is_kept_whole(env: &Env) {
    // More components than one statement inserts: every point is kept, each as it was taken.
    let p = project(env, "Shop").await;
    create(&env.admin, &p, "dev", "dev", None).await.unwrap();
    for n in 0..150u32 {
        for _ in 0..=n % 3 {
            env.services.record_proxied(&p, "dev", &format!("web-{n:03}"), if n % 5 == 0 { 503 } else { 200 }, 1.0);
        }
    }
    env.services.sample_metrics().await;
    let since = chrono::DateTime::UNIX_EPOCH;
    let mut rows = env.services.store().metric_points(&p, "dev", false, since).await.unwrap();
    rows.sort_by(|a, b| a.component.cmp(&b.component));
    assert_eq!(rows.len(), 150);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row.component, format!("web-{n:03}"));
        assert_eq!(row.point.requests, n as u64 % 3 + 1, "{}", row.component);
        assert_eq!(row.point.errors, if n % 5 == 0 { n as u64 % 3 + 1 } else { 0 }, "{}", row.component);
    }
}

async fn purge_deletes_only_due_stages_and_frees_their_ids(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    for (name, t) in [("dev", "dev"), ("qa", "qa"), ("prod", "prod"), ("live", "dev")] {
        create(s, &p, name, t, None).await.unwrap();
    }
    // dev's service answered once: a metric point is kept.
    env.services.record_proxied(&p, "dev", "web", 200, 1.0);
    env.services.sample_metrics().await;
    let kept = |stage: &'static str| {
        let p = p.clone();
        async move {
            let since = chrono::DateTime::UNIX_EPOCH;
            env.services.store().metric_points(&p, stage, false, since).await.unwrap().len()
        }
    };
    assert_eq!(kept("dev").await, 1);
    for id in ["dev", "qa", "prod"] {
        s.delete_stage(&p, id).await.unwrap();
    }
    assert!(s.purge_due().await.unwrap().is_empty(), "nothing is due yet");
    env.clock.advance(Duration::days(1));
    assert_eq!(s.purge_due().await.unwrap(), [(p.clone(), "dev".to_owned())]);
    assert_eq!(kept("dev").await, 0, "a purged stage's metric points go with it");
    env.clock.advance(Duration::days(6));
    assert_eq!(s.purge_due().await.unwrap(), [(p.clone(), "qa".to_owned())]);
    let overview = s.project_overview(&p, &Default::default()).await.unwrap();
    assert_eq!(overview.archived.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["prod"]);
    assert_eq!(overview.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["live"]);
    assert_eq!(s.restore_stage(&p, "dev").await.unwrap_err().kind, ErrorKind::NotFound);
    // The purged IDs are free again.
    assert!(s.check_stage_id(&p, "dev").await.unwrap().available);
    s.create_stage(&p, "dev", StageType::Dev, None).await.unwrap();
    env.clock.advance(Duration::days(23));
    assert_eq!(s.purge_due().await.unwrap(), [(p.clone(), "prod".to_owned())]);
}

async fn retention_changes_apply_to_stages_archived_afterwards(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    assert_eq!(s.retention().await.unwrap(), Default::default());
    s.create_stage(&p, "early", StageType::Dev, None).await.unwrap();
    s.create_stage(&p, "late", StageType::Dev, None).await.unwrap();
    s.delete_stage(&p, "early").await.unwrap();
    let policy = retention(s, "3", "10", "60").await.unwrap();
    assert_eq!((policy.dev_days, policy.qa_days, policy.prod_days), (3, 10, 60));
    assert_eq!(s.retention().await.unwrap(), policy);
    let late = s.delete_stage(&p, "late").await.unwrap();
    let now = env.clock.now_for_tests();
    assert_eq!(late.purge_due_at, Some(now + Duration::days(3)));
    let early = s
        .project_overview(&p, &Default::default())
        .await
        .unwrap()
        .archived
        .into_iter()
        .find(|s| s.id == "early")
        .unwrap();
    assert_eq!(early.purge_due_at, Some(now + Duration::days(1)), "already archived keep their date");
    let e = retention(s, "0", "10", "60").await.unwrap_err();
    assert!(e.is_for("retention_dev"));
    let e = retention(s, "3", "10", "lots").await.unwrap_err();
    assert!(e.is_for("retention_prod"));
    assert_eq!(s.retention().await.unwrap(), policy, "refused input changes nothing");
}

async fn limits_per_stage_type_reach_the_runtime_and_only_administrators_change_them(env: &Env) {
    use pergola_domain::{Limit, LimitsPolicy};
    let runs = std::sync::Arc::new(FakeRuntime::default());
    let s = env.as_admin(&env.services.with_runtime(runs.clone(), std::time::Duration::from_secs(5)));
    assert_eq!(s.limits().await.unwrap(), LimitsPolicy::default());
    let p = project(env, "Shop").await;
    s.create_stage(&p, "dev", StageType::Dev, None).await.unwrap();
    s.create_stage(&p, "prod", StageType::Prod, None).await.unwrap();
    // A maintainer of the project is no administrator of the instance.
    let maintainer = env.member("mia", &p, pergola_domain::Role::Maintainer).await;
    let mut wanted = LimitsPolicy::default();
    wanted.dev.memory_mib = 128;
    wanted.dev.processes = 64;
    let e = maintainer.set_limits(wanted).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    let mut bad = wanted;
    bad.prod.open_files = 1;
    assert!(s.set_limits(bad).await.unwrap_err().is_for(&Limit::OpenFiles.field(StageType::Prod)));
    assert_eq!(s.limits().await.unwrap(), LimitsPolicy::default(), "refusals change nothing");
    assert_eq!(s.set_limits(wanted).await.unwrap(), wanted);
    assert_eq!(s.limits().await.unwrap(), wanted);
    // Each stage's components get their type's limits.
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.deploy(&p, "dev", 1).await.unwrap();
    s.deploy(&p, "prod", 1).await.unwrap();
    let given = runs.limits.lock().unwrap().clone();
    assert_eq!(given, [("dev".to_owned(), wanted.dev), ("prod".to_owned(), wanted.prod)]);
    assert_eq!(given[0].1.memory_mib, 128);
}

async fn promotion_comparison_and_duplication_follow_dev_qa_prod(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    for (id, t) in [("dev", StageType::Dev), ("qa", StageType::Qa), ("prod", StageType::Prod)] {
        s.create_stage(&p, id, t, None).await.unwrap();
    }
    let b1 = common::upload_manifest(s, &p, MANIFEST).await.unwrap();
    let with_worker = format!(
        "{}\n[[component]]\nname = \"worker\"\nkind = \"worker\"\ncommand = \"./work\"\n",
        MANIFEST.replace("1.2.0", "1.3.0")
    );
    let b2 = common::upload_manifest(s, &p, &with_worker).await.unwrap();
    s.deploy(&p, "dev", b2.number).await.unwrap();
    s.deploy(&p, "qa", b1.number).await.unwrap();
    for (stage, level, token) in [("dev", "debug", "same"), ("qa", "info", "same"), ("prod", "warn", "other")] {
        s.set_config(&p, stage, "LOG_LEVEL", level, false).await.unwrap();
        s.set_config(&p, stage, "API_TOKEN", token, true).await.unwrap();
    }
    update(s, &p, "qa", "qa", "qa", Some("45")).await.unwrap();

    // Compared: the build, the added component, the plain setting with its values; equal
    // secrets are equal (their sealed forms differ), and no secret value is ever shown.
    let c = s.compare_stages(&p, "dev", "qa").await.unwrap();
    assert!(c.build_differs && c.type_differs && c.grace_differs);
    assert_eq!((c.from.build, c.to.build), (Some(b2.number), Some(b1.number)));
    assert_eq!(c.components_added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["worker"]);
    assert!(c.components_removed.is_empty());
    assert_eq!(c.config.len(), 1, "{:?}", c.config);
    let level = &c.config[0];
    assert_eq!(level.key, "LOG_LEVEL");
    assert_eq!(level.from.as_ref().unwrap().value.as_deref(), Some("debug"));
    assert_eq!(level.to.as_ref().unwrap().value.as_deref(), Some("info"));
    let c = s.compare_stages(&p, "dev", "prod").await.unwrap();
    let token = c.config.iter().find(|d| d.key == "API_TOKEN").expect("different secrets differ");
    assert_eq!((token.from.as_ref().unwrap().value.as_ref(), token.to.as_ref().unwrap().value.as_ref()), (None, None));
    assert!(!serde_json::to_string(&c).unwrap().contains("same"), "no secret value leaves the server");
    assert_eq!(c.to.build, None);
    // The targets, the next type first.
    let options = s.promotion_options(&p, "dev").await.unwrap();
    assert_eq!(options.iter().map(|o| o.to.id.as_str()).collect::<Vec<_>>(), ["qa", "prod"]);

    // Promoted DEV → QA: DEV's build, QA's own configuration, and where it came from.
    let r = s.promote(&p, "dev", "qa").await.unwrap();
    assert_eq!((r.number, r.build_number, r.promoted_from.as_deref()), (2, b2.number, Some("dev")));
    let snapshot = s.store().list_releases(&p, "qa").await.unwrap().remove(0).config;
    assert_eq!(snapshot["LOG_LEVEL"], "info", "the target's configuration");
    assert_eq!(s.releases(&p, "qa").await.unwrap()[0].promoted_from.as_deref(), Some("dev"));
    let events = s.events(&p, "qa").await.unwrap();
    assert!(events[0].message.contains("promoted from 'dev' (its release 1)"), "{}", events[0].message);
    assert!(s.compare_stages(&p, "dev", "qa").await.unwrap().components_added.is_empty());

    // Refusals change nothing.
    let e = s.promote(&p, "qa", "qa").await.unwrap_err();
    assert!(e.is_for("to"), "{e:?}");
    assert_eq!(s.promote(&p, "prod", "qa").await.unwrap_err().kind, ErrorKind::InvalidState, "prod has no release");
    assert_eq!(s.promote(&p, "dev", "nope").await.unwrap_err().kind, ErrorKind::NotFound);
    let developer = env.member("dana", &p, Role::Developer).await;
    assert_eq!(developer.promote(&p, "qa", "prod").await.unwrap_err().kind, ErrorKind::Forbidden);
    assert!(s.releases(&p, "prod").await.unwrap().is_empty());
    assert_eq!(developer.promote(&p, "qa", "dev").await.unwrap().build_number, b2.number);

    // Duplicated: the type, the configuration (secrets open in their new place), the grace
    // period; with its build when asked.
    let copy = s.duplicate_stage(&p, "qa", "QA 2", None, Duplicate { deploy: true, storage: false }).await.unwrap();
    assert_eq!((copy.id.as_str(), copy.stage_type, copy.grace_secs), ("qa-2", StageType::Qa, 45));
    let values = s.config_values(&p, "qa-2").await.unwrap();
    assert_eq!((values["LOG_LEVEL"].as_str(), values["API_TOKEN"].as_str()), ("info", "same"));
    assert_eq!(s.releases(&p, "qa-2").await.unwrap()[0].build_number, b2.number);
    assert!(s.compare_stages(&p, "qa", "qa-2").await.unwrap().config.is_empty());
    let bare = s.duplicate_stage(&p, "dev", "Dev copy", Some("dev-copy"), Duplicate::default()).await.unwrap();
    assert!(s.releases(&p, &bare.id).await.unwrap().is_empty());
    let e = s.duplicate_stage(&p, "dev", "Dev copy", Some("dev-copy"), Duplicate::default()).await.unwrap_err();
    assert_eq!((e.kind, e.suggestion.as_deref()), (ErrorKind::StageIdTaken, Some("dev-copy-2")));
    assert_eq!(
        developer.duplicate_stage(&p, "prod", "Prod 2", None, Duplicate::default()).await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    assert!(s.get_stage(&p, "prod-2").await.is_err(), "nothing was created");
    // Storage is copied only from a suspended stage (nothing writes to it meanwhile).
    let with_storage = Duplicate { deploy: false, storage: true };
    let e = s.duplicate_stage(&p, "qa", "QA 3", None, with_storage).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e:?}");
    assert!(e.message.contains("Suspend stage 'qa' first"), "{}", e.message);
    assert!(s.get_stage(&p, "qa-3").await.is_err(), "nothing was created");
    s.suspend_stage(&p, "qa").await.unwrap();
    s.duplicate_stage(&p, "qa", "QA 3", None, with_storage).await.unwrap();
    let events = s.events(&p, "qa-3").await.unwrap();
    assert!(events[0].message.contains("its storage copied"), "{}", events[0].message);

    // The Builds page's read model: where each build runs now (the current releases).
    let listing = s.build_listing(&p).await.unwrap();
    assert_eq!(listing.iter().map(|l| l.build.number).collect::<Vec<_>>(), [b2.number, b1.number]);
    let on: Vec<(&str, i64, StageStatus)> =
        listing[0].running_on.iter().map(|r| (r.stage_id.as_str(), r.release, r.status)).collect();
    assert_eq!(
        on,
        [("dev", 2, StageStatus::Running), ("qa", 2, StageStatus::Suspended), ("qa-2", 1, StageStatus::Running)]
    );
    assert!(listing[1].running_on.is_empty(), "build 1 was replaced everywhere");
}

async fn names_are_stored_verbatim(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Robert'); DROP TABLE projects;--").await;
    assert_eq!(p, "robert-drop-table-projects");
    let name = "<script>alert('x')</script> 日本 🤔";
    let st = s.create_stage(&p, name, StageType::Dev, None).await.unwrap();
    assert_eq!(s.get_stage(&p, &st.id).await.unwrap().name, name);
    assert_eq!(s.get_project(&p).await.unwrap().name, "Robert'); DROP TABLE projects;--");
}

async fn configuration_masks_secrets_survives_restore_and_is_purged(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    let e = s.set_config(&p, "qa", "LOG_LEVEL", "debug", false).await.unwrap();
    assert_eq!((e.key.as_str(), e.value.as_deref(), e.secret), ("LOG_LEVEL", Some("debug"), false));
    let e = s.set_config(&p, "qa", " API_TOKEN ", "s3cr3t", true).await.unwrap();
    assert_eq!((e.key.as_str(), e.value, e.secret), ("API_TOKEN", None, true), "secrets are not sent back");
    s.set_config(&p, "qa", "LOG_LEVEL", "info", false).await.unwrap();
    let listed: Vec<_> = s.config(&p, "qa").await.unwrap().into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(listed, [("API_TOKEN".to_owned(), None), ("LOG_LEVEL".to_owned(), Some("info".to_owned()))]);
    let values = s.config_values(&p, "qa").await.unwrap();
    assert_eq!(values["API_TOKEN"], "s3cr3t", "the runtime gets the real value");
    // Refusals change nothing.
    assert!(s.set_config(&p, "qa", "PORT", "1", false).await.unwrap_err().is_for("key"));
    assert!(s.set_config(&p, "qa", "lower", "1", false).await.unwrap_err().is_for("key"));
    assert!(s.set_config(&p, "qa", "NUL", "a\0b", false).await.unwrap_err().is_for("value"));
    assert_eq!(s.set_config(&p, "nope", "A", "1", false).await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.unset_config(&p, "qa", "MISSING").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.config(&p, "qa").await.unwrap().len(), 2);
    // Archived: kept but not editable; restored: back as it was.
    s.delete_stage(&p, "qa").await.unwrap();
    assert_eq!(s.config(&p, "qa").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.set_config(&p, "qa", "A", "1", false).await.unwrap_err().kind, ErrorKind::NotFound);
    s.restore_stage(&p, "qa").await.unwrap();
    assert_eq!(s.config_values(&p, "qa").await.unwrap().len(), 2, "restore keeps the configuration");
    s.unset_config(&p, "qa", "LOG_LEVEL").await.unwrap();
    assert_eq!(s.config(&p, "qa").await.unwrap().len(), 1);
    // Purged: the configuration goes with the stage.
    s.delete_stage(&p, "qa").await.unwrap();
    env.clock.advance(Duration::days(7));
    s.purge_due().await.unwrap();
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    assert!(s.config(&p, "qa").await.unwrap().is_empty(), "a new stage with the old ID starts empty");
}

const MANIFEST: &str =
    "version = \"1.2.0\"\n\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\nport = 8080\n";

async fn builds_and_releases(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let b1 = common::upload_manifest(s, &p, MANIFEST).await.unwrap();
    assert_eq!((b1.number, b1.version.as_deref()), (1, Some("1.2.0")));
    let b2 = common::upload_manifest(s, &p, &MANIFEST.replace("1.2.0", "1.3.0")).await.unwrap();
    assert_eq!(b2.number, 2);
    let e = common::upload_manifest(
        s,
        &p,
        "[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"x\"\nport = 0\n",
    )
    .await
    .unwrap_err();
    assert!(e.is_for("manifest"));
    assert_eq!(e.message, "Invalid manifest, line 1: component 'web': port must be between 1 and 65535");
    // By a server path: off unless the server allows it (see path_builds_…).
    let e = s.register_build(&p, MANIFEST, &std::env::temp_dir().display().to_string()).await.unwrap_err();
    assert!(e.is_for("workdir") && e.message.contains("application/gzip"), "{e:?}");
    assert_eq!(common::upload_manifest(s, "nope", MANIFEST).await.unwrap_err().kind, ErrorKind::NotFound);
    let numbers: Vec<_> = s.builds(&p).await.unwrap().iter().map(|b| b.number).collect();
    assert_eq!(numbers, [2, 1], "refusals registered nothing");

    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    s.set_config(&p, "qa", "LOG_LEVEL", "debug", false).await.unwrap();
    let r1 = s.deploy(&p, "qa", 1).await.unwrap();
    assert_eq!((r1.number, r1.build_number, r1.build_version.as_deref()), (1, 1, Some("1.2.0")));
    assert_eq!(r1.config_keys, ["LOG_LEVEL"]);
    s.set_config(&p, "qa", "EXTRA", "1", false).await.unwrap();
    let r2 = s.deploy(&p, "qa", 2).await.unwrap();
    assert_eq!((r2.number, r2.build_number, r2.config_keys.len()), (2, 2, 2));
    let rollback = s.redeploy(&p, "qa", 1).await.unwrap();
    assert_eq!((rollback.number, rollback.build_number), (3, 1));
    let history: Vec<_> = s.releases(&p, "qa").await.unwrap().iter().map(|r| (r.number, r.build_number)).collect();
    assert_eq!(history, [(3, 1), (2, 2), (1, 1)], "newest first: the running one");
    assert_eq!(s.deploy(&p, "qa", 9).await.unwrap_err().kind, ErrorKind::Validation, "no such build");
    assert_eq!(s.redeploy(&p, "qa", 9).await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.deploy(&p, "nope", 1).await.unwrap_err().kind, ErrorKind::NotFound);
    // Releases stay with an archived stage and come back with it.
    s.delete_stage(&p, "qa").await.unwrap();
    assert_eq!(s.deploy(&p, "qa", 1).await.unwrap_err().kind, ErrorKind::NotFound);
    s.restore_stage(&p, "qa").await.unwrap();
    assert_eq!(s.releases(&p, "qa").await.unwrap().len(), 3);
}

async fn concurrent_builds_get_distinct_numbers(env: &Env) {
    let p = project(env, "Busy").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, p) = (env.admin.clone(), p.clone());
            tokio::spawn(async move { common::upload_manifest(&s, &p, MANIFEST).await.unwrap().number })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<i64>>());
}

trait NowForTests {
    fn now_for_tests(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTests for pergola_core::ManualClock {
    fn now_for_tests(&self) -> chrono::DateTime<chrono::Utc> {
        pergola_core::Clock::now(self)
    }
}

/// The server's purge task purges at start-up, without waiting for its first interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_task_purges_at_start_up() {
    let env = common::sqlite_env().await;
    let s = &env.admin;
    let p = project(&env, "Shop").await;
    s.create_stage(&p, "gone", StageType::Dev, None).await.unwrap();
    s.create_stage(&p, "kept", StageType::Prod, None).await.unwrap();
    s.delete_stage(&p, "gone").await.unwrap();
    s.delete_stage(&p, "kept").await.unwrap();
    env.clock.advance(Duration::days(2));
    let task = pergola_core::purge::spawn_purge_task(env.services.clone(), std::time::Duration::from_secs(3600));
    let mut archived = Vec::new();
    for _ in 0..100 {
        archived = s.project_overview(&p, &Default::default()).await.unwrap().archived;
        if archived.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.abort();
    assert_eq!(archived.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["kept"]);
    env.cleanup().await;
}

/// A runtime stand-in for the service tests: it records what it is asked (each start's release
/// and configuration, each stop's grace period), can hold stops until released, can make runs
/// take a while, and notices when two runs on a stage overlap.
#[derive(Default)]
struct FakeRuntime {
    /// Stops wait for this (when `hold_stops`).
    release_stops: tokio::sync::Notify,
    hold_stops: bool,
    run_takes: std::time::Duration,
    active: std::sync::atomic::AtomicUsize,
    overlapped: std::sync::atomic::AtomicBool,
    runs: std::sync::Mutex<Vec<(i64, std::collections::BTreeMap<String, String>)>>,
    /// The limits each start was given, with its stage.
    limits: std::sync::Mutex<Vec<(String, pergola_domain::ResourceLimits)>>,
    graces: std::sync::Mutex<Vec<std::time::Duration>>,
    /// Starts of this stage fail.
    fail_stage: Option<String>,
    /// How far each stop went.
    modes: std::sync::Mutex<Vec<pergola_core::StopMode>>,
    /// This many forgets fail (then they succeed); every forget is counted.
    forget_fails: std::sync::atomic::AtomicUsize,
    forgets: std::sync::atomic::AtomicUsize,
}

impl FakeRuntime {
    fn releases(&self) -> Vec<i64> {
        self.runs.lock().unwrap().iter().map(|(r, _)| *r).collect()
    }
}

#[async_trait::async_trait]
impl pergola_core::Runtime for FakeRuntime {
    async fn start(
        &self,
        spec: pergola_core::StageSpec,
        _: std::time::Duration,
    ) -> Result<(), pergola_core::RuntimeError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.fail_stage.as_deref() == Some(spec.key.stage.as_str()) {
            return Err(pergola_core::RuntimeError::Schedule { component: "web".into(), reason: "broken".into() });
        }
        if self.active.fetch_add(1, SeqCst) > 0 {
            self.overlapped.store(true, SeqCst);
        }
        tokio::time::sleep(self.run_takes).await;
        self.limits.lock().unwrap().push((spec.key.stage.clone(), spec.limits));
        self.runs.lock().unwrap().push((spec.release, spec.config));
        self.active.fetch_sub(1, SeqCst);
        Ok(())
    }
    async fn stop(
        &self,
        _: &pergola_core::StageKey,
        grace: std::time::Duration,
        mode: pergola_core::StopMode,
    ) -> pergola_core::StopReport {
        self.graces.lock().unwrap().push(grace);
        self.modes.lock().unwrap().push(mode);
        if self.hold_stops {
            self.release_stops.notified().await;
        }
        pergola_core::StopReport { terminated: vec!["web".into()], killed: vec!["worker".into()], ..Default::default() }
    }
    async fn forget(&self, key: &pergola_core::StageKey) -> Result<(), pergola_core::RuntimeError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.forgets.fetch_add(1, SeqCst);
        if self.forget_fails.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(pergola_core::RuntimeError::Storage {
                what: "cannot delete the stage's storage",
                path: std::path::PathBuf::from("/storage").join(&key.project).join(&key.stage),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        Ok(())
    }
    fn status(&self, _: &pergola_core::StageKey) -> Vec<pergola_domain::runtime::ComponentStatus> {
        vec![]
    }
    fn logs(&self, _: &pergola_core::StageKey, _: &str) -> Vec<pergola_domain::runtime::LogLine> {
        vec![]
    }
}

async fn a_slow_suspend_shows_suspending_until_its_components_stop(env: &Env) {
    let slow = std::sync::Arc::new(FakeRuntime { hold_stops: true, ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(slow.clone(), std::time::Duration::from_secs(60)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "prod", StageType::Prod, None).await.unwrap();
    update(&s, &p, "prod", "prod", "prod", Some("7")).await.unwrap();
    let st = s.suspend_stage(&p, "prod").await.unwrap();
    assert_eq!(st.status, StageStatus::Suspending, "the stop is still going on");
    assert_eq!(*slow.graces.lock().unwrap(), [std::time::Duration::from_secs(7)], "the stage's own grace period");
    assert_eq!(s.get_stage(&p, "prod").await.unwrap().status, StageStatus::Suspending);
    assert!(s.suspend_stage(&p, "prod").await.unwrap_err().message.contains("already being suspended"));
    slow.release_stops.notify_one();
    let events = suspended_and_said_so(&s, &p, "prod").await;
    assert!(
        events[0].message.contains("exited after SIGTERM: web")
            && events[0].message.contains("killed after the grace period: worker"),
        "{}",
        events[0].message
    );
    assert_eq!(events[1].kind, pergola_domain::EventKind::Suspending);
    assert!(events[1].message.contains("SIGKILL after 7 s"));
    assert_eq!(s.resume_stage(&p, "prod").await.unwrap().status, StageStatus::Running);
}

// A trigger makes PostgreSQL refuse an update for a moment (the settling retried is the same
// code on SQLite).
backend_suite!(postgres_only, pergola_core::testing::postgres_env;
    a_suspend_whose_settling_fails_at_first_is_settled_once_the_database_answers);

/// The database refuses, for a moment, to record that a suspend's components have stopped:
/// the stage is settled (suspended) once it answers again, not left suspending until the
/// server restarts. (PostgreSQL: a trigger refuses the update meanwhile.)
async fn a_suspend_whose_settling_fails_at_first_is_settled_once_the_database_answers(env: &Env) {
    use sqlx::{Connection, Executor};
    let database = env.postgres_database().expect("a PostgreSQL test database");
    let runtime = std::sync::Arc::new(FakeRuntime::default());
    let s = env.as_admin(&env.services.with_runtime(runtime, std::time::Duration::from_secs(60)));
    let p = project(env, "Shop").await;
    create(&s, &p, "qa", "qa", None).await.unwrap();
    let base = common::postgres_admin_url().rsplit_once('/').unwrap().0.to_owned();
    let mut db = sqlx::PgConnection::connect(&format!("{base}/{database}")).await.unwrap();
    db.execute(
        "CREATE FUNCTION refuse_settling() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the database refuses for the test'; END $$",
    )
    .await
    .unwrap();
    db.execute(
        "CREATE TRIGGER refuse_settling BEFORE UPDATE ON stages FOR EACH ROW \
         WHEN (NEW.status = 'suspended') EXECUTE FUNCTION refuse_settling()",
    )
    .await
    .unwrap();
    assert_eq!(s.suspend_stage(&p, "qa").await.unwrap().status, StageStatus::Suspending);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(s.get_stage(&p, "qa").await.unwrap().status, StageStatus::Suspending, "refused so far");
    db.execute("DROP TRIGGER refuse_settling ON stages").await.unwrap();
    suspended_and_said_so(&s, &p, "qa").await;
    db.close().await.unwrap();
}

/// Polls until the stage is suspended and its timeline says so (the status settles a moment
/// before its event is recorded), within 30 s (longer than SQLite's busy timeout: seen once,
/// right after a build, still suspending after 10 s); the timeline, newest first. What the
/// timeline says when it does not.
async fn suspended_and_said_so(s: &Acting, p: &str, id: &str) -> Vec<pergola_domain::StageEvent> {
    let began = std::time::Instant::now();
    loop {
        let status = s.get_stage(p, id).await.unwrap().status;
        let events = s.events(p, id).await.unwrap();
        if status == StageStatus::Suspended && events[0].kind == pergola_domain::EventKind::Suspended {
            return events;
        }
        assert!(began.elapsed() < std::time::Duration::from_secs(30), "{status:?} after 30 s: {events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls until the stage leaves `suspending` (or gives up after ten seconds).
async fn settled(s: &Acting, p: &str, id: &str) -> StageStatus {
    let mut status = StageStatus::Suspending;
    for _ in 0..500 {
        status = s.get_stage(p, id).await.unwrap().status;
        if status != StageStatus::Suspending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    status
}

async fn a_resume_while_suspending_starts_the_release_once_the_stop_ends(env: &Env) {
    use pergola_domain::EventKind as K;
    let slow = std::sync::Arc::new(FakeRuntime { hold_stops: true, ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(slow.clone(), std::time::Duration::from_secs(60)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "prod", StageType::Prod, None).await.unwrap();
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.deploy(&p, "prod", 1).await.unwrap();
    assert_eq!(slow.releases(), [1]);
    assert_eq!(s.suspend_stage(&p, "prod").await.unwrap().status, StageStatus::Suspending);
    // Accepted at once; the stage shows suspending until its components have stopped.
    assert_eq!(s.resume_stage(&p, "prod").await.unwrap().status, StageStatus::Suspending);
    assert_eq!(s.resume_stage(&p, "prod").await.unwrap().status, StageStatus::Suspending, "asking twice is fine");
    assert_eq!(s.get_stage(&p, "prod").await.unwrap().status, StageStatus::Suspending);
    assert!(s.suspend_stage(&p, "prod").await.unwrap_err().message.contains("already being suspended"));
    assert_eq!(slow.releases(), [1], "nothing starts before the stop has ended");
    slow.release_stops.notify_one();
    assert_eq!(settled(&s, &p, "prod").await, StageStatus::Running);
    for _ in 0..250 {
        if slow.releases().len() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(slow.releases(), [1, 1], "the current release started again, once");
    // The settle cannot win afterwards: the stage stays running.
    assert!(s.store().settle_stopped(&p, "prod", env.clock.now_for_tests()).await.unwrap().is_none());
    assert!(!s.store().request_resume(&p, "prod", env.clock.now_for_tests()).await.unwrap());
    assert_eq!(s.get_stage(&p, "prod").await.unwrap().status, StageStatus::Running);
    let events = s.events(&p, "prod").await.unwrap();
    let kinds: Vec<K> = events.iter().take(4).map(|e| e.kind).collect();
    assert_eq!(kinds, [K::Started, K::Resumed, K::Resumed, K::Suspending], "{events:?}");
    assert!(events[0].message.starts_with("Resumed: every component has stopped"), "{}", events[0].message);
    assert!(events[0].message.contains("started again with its last release"), "{}", events[0].message);
    assert!(events[1].message.contains("Resume requested while suspending"), "{}", events[1].message);
    assert!(!events.iter().any(|e| e.kind == K::Suspended), "it never settled as suspended");
}

async fn suspend_resume_suspend_while_the_stop_is_slow(env: &Env) {
    let slow = std::sync::Arc::new(FakeRuntime { hold_stops: true, ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(slow.clone(), std::time::Duration::from_secs(60)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.deploy(&p, "qa", 1).await.unwrap();
    s.suspend_stage(&p, "qa").await.unwrap();
    s.resume_stage(&p, "qa").await.unwrap();
    // While the resume is pending, a second suspend is refused as before.
    let e = s.suspend_stage(&p, "qa").await.unwrap_err();
    assert!(e.kind == ErrorKind::InvalidState && e.message.contains("already being suspended"), "{e:?}");
    slow.release_stops.notify_one();
    assert_eq!(settled(&s, &p, "qa").await, StageStatus::Running);
    // Once running again, it suspends (and settles) normally.
    assert_eq!(s.suspend_stage(&p, "qa").await.unwrap().status, StageStatus::Suspending);
    slow.release_stops.notify_one();
    assert_eq!(settled(&s, &p, "qa").await, StageStatus::Suspended);
    let e = s.suspend_stage(&p, "qa").await.unwrap_err();
    assert!(e.message.contains("already suspended"), "{e:?}");
    assert_eq!(s.resume_stage(&p, "qa").await.unwrap().status, StageStatus::Running);
    assert_eq!(slow.graces.lock().unwrap().len(), 2, "two stops");
}

async fn reconcile_resumes_a_stage_whose_resume_was_pending(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    s.create_stage(&p, "dev", StageType::Dev, None).await.unwrap();
    let now = env.clock.now_for_tests();
    for id in ["qa", "dev"] {
        assert!(s.store().transition_status(&p, id, StageStatus::Running, StageStatus::Suspending, now).await.unwrap());
    }
    assert!(s.store().request_resume(&p, "qa", now).await.unwrap());
    assert_eq!(s.get_stage(&p, "qa").await.unwrap().status, StageStatus::Suspending, "shown as suspending");
    assert!(!s.store().request_resume(&p, "nope", now).await.unwrap());
    // The server restarted with the stop unfinished: the pending resume wins, the other settles.
    s.reconcile().await.unwrap();
    assert_eq!(s.get_stage(&p, "qa").await.unwrap().status, StageStatus::Running);
    assert_eq!(s.get_stage(&p, "dev").await.unwrap().status, StageStatus::Suspended);
    assert_eq!(s.events(&p, "qa").await.unwrap()[0].kind, pergola_domain::EventKind::Started);
}

async fn reconcile_settles_a_suspend_the_server_did_not_finish(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    let now = env.clock.now_for_tests();
    assert!(s.store().transition_status(&p, "qa", StageStatus::Running, StageStatus::Suspending, now).await.unwrap());
    s.reconcile().await.unwrap();
    assert_eq!(s.get_stage(&p, "qa").await.unwrap().status, StageStatus::Suspended);
}

async fn reconcile_goes_on_when_a_stage_cannot_start(env: &Env) {
    let before = std::sync::Arc::new(FakeRuntime::default());
    let s = env.as_admin(&env.services.with_runtime(before.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    for stage in ["a", "b", "c"] {
        s.create_stage(&p, stage, StageType::Qa, None).await.unwrap();
        s.deploy(&p, stage, 1).await.unwrap();
    }
    // A restart, where the first stage listed (or any one) cannot start: the others still do.
    let after = std::sync::Arc::new(FakeRuntime { fail_stage: Some("a".into()), ..Default::default() });
    let s2 = env.as_admin(&env.services.with_runtime(after.clone(), std::time::Duration::from_secs(5)));
    let report = s2.reconcile().await.unwrap();
    assert_eq!(report, pergola_core::services::ReconcileReport { started: 2, failed: 1 });
    assert_eq!(after.releases().len(), 2);
    for stage in ["b", "c"] {
        assert_eq!(s2.events(&p, stage).await.unwrap()[0].message, "Started again: the server restarted.");
    }
    // The stage that could not start says why in its timeline.
    let why = &s2.events(&p, "a").await.unwrap()[0];
    assert_eq!(why.kind, pergola_domain::EventKind::Crashed);
    assert_eq!(why.message, "Release 1 could not be started: component 'web': broken");
}

async fn a_failed_resume_or_restore_says_why_in_the_timeline(env: &Env) {
    let broken = std::sync::Arc::new(FakeRuntime { fail_stage: Some("qa".into()), ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(broken.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    let e = s.deploy(&p, "qa", 1).await.unwrap_err();
    assert!(e.message.contains("could not be started"), "{}", e.message);
    let failed = |events: Vec<pergola_domain::StageEvent>| {
        events.iter().filter(|e| e.message == "Release 1 could not be started: component 'web': broken").count()
    };
    assert_eq!(failed(s.events(&p, "qa").await.unwrap()), 1, "one event per failed start");
    s.suspend_stage(&p, "qa").await.unwrap();
    assert!(s.resume_stage(&p, "qa").await.is_err());
    assert_eq!(failed(s.events(&p, "qa").await.unwrap()), 2);
    s.delete_stage(&p, "qa").await.unwrap();
    assert!(s.restore_stage(&p, "qa").await.is_err());
    assert_eq!(failed(s.events(&p, "qa").await.unwrap()), 3);
}

async fn a_suspend_lets_started_jobs_finish_and_a_delete_stops_them(env: &Env) {
    use pergola_core::StopMode;
    let fake = std::sync::Arc::new(FakeRuntime::default());
    let s = env.as_admin(&env.services.with_runtime(fake.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    s.suspend_stage(&p, "qa").await.unwrap();
    s.resume_stage(&p, "qa").await.unwrap();
    s.delete_stage(&p, "qa").await.unwrap();
    assert_eq!(*fake.modes.lock().unwrap(), [StopMode::Suspend, StopMode::Halt]);
}

async fn a_purge_the_runtime_cannot_finish_keeps_the_stage_and_is_retried(env: &Env) {
    use std::sync::atomic::Ordering::SeqCst;
    let fake = std::sync::Arc::new(FakeRuntime { forget_fails: 2.into(), ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(fake.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    for id in ["qa", "dev"] {
        create(&s, &p, id, "dev", None).await.unwrap();
        s.delete_stage(&p, id).await.unwrap();
    }
    assert!(s.purge_due().await.unwrap().is_empty());
    assert_eq!(fake.forgets.load(SeqCst), 0, "nothing is due yet: nothing is forgotten");
    env.clock.advance(Duration::days(1));
    // Both are due; the runtime cannot delete their files: both stay archived (due: no
    // longer restorable) and keep their IDs.
    assert!(s.purge_due().await.unwrap().is_empty());
    let archived = s.list_stages(&p, true).await.unwrap();
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert_eq!(s.restore_stage(&p, "qa").await.unwrap_err().kind, ErrorKind::Expired);
    assert!(!s.check_stage_id(&p, "qa").await.unwrap().available);
    // The next purge tries again, and then forgets them.
    let mut purged = s.purge_due().await.unwrap();
    purged.sort();
    assert_eq!(purged, [(p.clone(), "dev".to_owned()), (p.clone(), "qa".to_owned())]);
    assert_eq!(fake.forgets.load(SeqCst), 4);
    assert!(s.list_stages(&p, true).await.unwrap().is_empty());
    assert!(s.check_stage_id(&p, "qa").await.unwrap().available);
    assert!(s.purge_due().await.unwrap().is_empty());
    assert_eq!(fake.forgets.load(SeqCst), 4, "a purged stage is not forgotten twice");
    // In the store: only a due, archived stage is purged.
    let now = env.clock.now_for_tests();
    s.create_stage(&p, "qa", StageType::Dev, None).await.unwrap();
    assert!(!s.store().purge_stage(&p, "qa", now).await.unwrap(), "a live stage is never purged");
    s.delete_stage(&p, "qa").await.unwrap();
    assert!(s.store().due_for_purge(now).await.unwrap().is_empty());
    assert!(!s.store().purge_stage(&p, "qa", now).await.unwrap(), "not due yet");
    let later = now + Duration::days(1);
    assert_eq!(s.store().due_for_purge(later).await.unwrap(), [(p.clone(), "qa".to_owned())]);
    assert!(s.store().purge_stage(&p, "qa", later).await.unwrap());
    assert!(!s.store().purge_stage(&p, "qa", later).await.unwrap());
}

async fn the_timeline_records_what_happened(env: &Env) {
    use pergola_domain::{EventKind as K, StageEvent};
    let s = &env.admin;
    let p = project(env, "Shop").await;
    common::upload_manifest(s, &p, MANIFEST).await.unwrap();
    s.create_stage(&p, "QA", StageType::Qa, None).await.unwrap();
    update(s, &p, "qa", "QA", "qa", None).await.unwrap(); // no change: no event
    update(s, &p, "qa", "Quality", "qa", Some("5")).await.unwrap();
    s.set_config(&p, "qa", "API_KEY", "s3cret", true).await.unwrap();
    assert!(s.set_config(&p, "qa", "bad key", "x", false).await.is_err());
    env.clock.advance(Duration::minutes(1));
    s.deploy(&p, "qa", 1).await.unwrap();
    s.record_observed(
        &p,
        "qa",
        StageEvent::of_component(env.clock.now_for_tests(), K::Crashed, "web", "web exited with code 3"),
    )
    .await;
    s.suspend_stage(&p, "qa").await.unwrap();
    s.resume_stage(&p, "qa").await.unwrap();
    s.unset_config(&p, "qa", "API_KEY").await.unwrap();
    s.delete_stage(&p, "qa").await.unwrap();
    s.restore_stage(&p, "qa").await.unwrap();
    let events = s.events(&p, "qa").await.unwrap();
    let kinds: Vec<K> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            K::Restored,
            K::Archived,
            K::ConfigChanged,
            K::Resumed,
            K::Suspended,
            K::Suspending,
            K::Crashed,
            K::Deployed,
            K::ConfigChanged,
            K::Updated,
            K::Created
        ],
        "newest first; refusals and no-op saves record nothing"
    );
    let message = |k: K| events.iter().find(|e| e.kind == k).unwrap().message.clone();
    assert_eq!(message(K::Updated), "Renamed to 'Quality', grace period set to 5 s.");
    assert_eq!(message(K::Deployed), "Release 1 deployed: build 1 (1.2.0).");
    assert!(events.iter().any(|e| e.message == "Secret API_KEY set; it applies with the next release."));
    assert!(!events.iter().any(|e| e.message.contains("s3cret")), "secret values never reach the timeline");
    assert_eq!(events[6].component.as_deref(), Some("web"));
    assert_eq!(events[7].at, env.clock.now_for_tests());
    // The timeline goes with the stage when it is purged.
    s.delete_stage(&p, "qa").await.unwrap();
    env.clock.advance(Duration::days(8));
    s.purge_due().await.unwrap();
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    let kinds: Vec<K> = s.events(&p, "qa").await.unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [K::Created]);
    assert_eq!(s.events(&p, "nope").await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn secrets_are_sealed_at_rest_and_reach_the_runtime_in_clear(env: &Env) {
    let runs = std::sync::Arc::new(FakeRuntime::default());
    let s = env.as_admin(&env.services.with_runtime(runs.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "prod", StageType::Prod, None).await.unwrap();
    s.set_config(&p, "prod", "API_TOKEN", "t0p-s3cret", true).await.unwrap();
    s.set_config(&p, "prod", "LOG_LEVEL", "info", false).await.unwrap();
    // What the database holds.
    let stored = s.store().list_config(&p, "prod").await.unwrap();
    let token = stored.iter().find(|v| v.key == "API_TOKEN").unwrap();
    assert!(token.value.starts_with("enc:v2:") && !token.value.contains("t0p-s3cret"), "{}", token.value);
    assert_eq!(stored.iter().find(|v| v.key == "LOG_LEVEL").unwrap().value, "info", "plain settings stay readable");
    // The release snapshot is sealed too; the runtime gets the value in clear.
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.deploy(&p, "prod", 1).await.unwrap();
    let snapshot = s.store().list_releases(&p, "prod").await.unwrap().remove(0).config;
    assert!(snapshot["API_TOKEN"].starts_with("enc:v2:"));
    assert_eq!(snapshot["API_TOKEN"], token.value, "the snapshot copies the sealed value as it is");
    let run = runs.runs.lock().unwrap().last().cloned().unwrap().1;
    assert_eq!((run["API_TOKEN"].as_str(), run["LOG_LEVEL"].as_str()), ("t0p-s3cret", "info"));
    // Another key cannot read them: an internal error, not garbage.
    let other = env.as_admin(&s.with_secrets(pergola_core::SecretBox::new([1; 32])));
    assert_eq!(other.config_values(&p, "prod").await.unwrap_err().kind, ErrorKind::Internal);
    // A value stored before sealing existed still reads.
    let legacy = pergola_core::store::ConfigValue {
        key: "OLD".into(),
        value: "plain".into(),
        secret: true,
        updated_at: env.clock.now_for_tests(),
    };
    s.store().set_config(&p, "prod", &legacy).await.unwrap();
    assert_eq!(s.config_values(&p, "prod").await.unwrap()["OLD"], "plain");
    // A value sealed in the enc:v1 form (no place bound) still opens, from a snapshot too.
    let v1 = pergola_core::store::ConfigValue {
        key: "OLD_V1".into(),
        value: pergola_core::SecretBox::new([42; 32]).seal_v1("v1 value"),
        secret: true,
        updated_at: env.clock.now_for_tests(),
    };
    assert!(v1.value.starts_with("enc:v1:"));
    s.store().set_config(&p, "prod", &v1).await.unwrap();
    assert_eq!(s.config_values(&p, "prod").await.unwrap()["OLD_V1"], "v1 value");
    // Only entries marked secret are opened: a plain value that looks sealed is itself, in
    // the list, in the snapshot and for the runtime.
    for (key, value) in [("LOOKS_SEALED", "enc:v1:abc"), ("LOOKS_SEALED_2", "enc:v2:00ff"), ("NUL_FREE", "enc:")] {
        s.set_config(&p, "prod", key, value, false).await.unwrap();
    }
    let listed = s.config(&p, "prod").await.unwrap();
    assert_eq!(listed.iter().find(|e| e.key == "LOOKS_SEALED").unwrap().value.as_deref(), Some("enc:v1:abc"));
    assert_eq!(s.config_values(&p, "prod").await.unwrap()["LOOKS_SEALED"], "enc:v1:abc");
    s.deploy(&p, "prod", 1).await.unwrap();
    let run = runs.runs.lock().unwrap().last().cloned().unwrap().1;
    assert_eq!(run["LOOKS_SEALED"], "enc:v1:abc");
    assert_eq!(run["LOOKS_SEALED_2"], "enc:v2:00ff");
    assert_eq!(run["NUL_FREE"], "enc:");
    assert_eq!((run["OLD_V1"].as_str(), run["API_TOKEN"].as_str()), ("v1 value", "t0p-s3cret"));
    // A sealed value is bound to its project, stage and key: copied into another key's row
    // or another stage's, it does not open (an internal error, logged).
    let moved = |key: &str| pergola_core::store::ConfigValue {
        key: key.into(),
        value: token.value.clone(),
        secret: true,
        updated_at: env.clock.now_for_tests(),
    };
    s.store().set_config(&p, "prod", &moved("OTHER_TOKEN")).await.unwrap();
    assert_eq!(s.config_values(&p, "prod").await.unwrap_err().kind, ErrorKind::Internal);
    s.store().unset_config(&p, "prod", "OTHER_TOKEN").await.unwrap();
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    s.store().set_config(&p, "qa", &moved("API_TOKEN")).await.unwrap();
    assert_eq!(s.config_values(&p, "qa").await.unwrap_err().kind, ErrorKind::Internal);
    let runs_before = runs.releases().len();
    assert_eq!(s.deploy(&p, "qa", 1).await.unwrap_err().kind, ErrorKind::Internal, "its release cannot start");
    assert_eq!(runs.releases().len(), runs_before, "the runtime never got it");
    assert_eq!(s.config_values(&p, "prod").await.unwrap()["API_TOKEN"], "t0p-s3cret", "in its own place it opens");
}

async fn a_stage_restored_before_its_delete_had_its_turn_is_not_stopped(env: &Env) {
    // Its release takes 1.5 s to start; it is deleted meanwhile (the stop waits for the
    // stage's turn) and restored at once: by the time the stop has its turn, the stage should
    // run — the stop asks for nothing.
    let runs =
        std::sync::Arc::new(FakeRuntime { run_takes: std::time::Duration::from_millis(1500), ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(runs.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    s.deploy(&p, "qa", 1).await.unwrap();
    s.delete_stage(&p, "qa").await.unwrap();
    s.restore_stage(&p, "qa").await.unwrap();
    for _ in 0..300 {
        if runs.releases().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(runs.releases(), [1, 1], "started by the deploy, then by the restore");
    assert!(
        runs.modes.lock().unwrap().is_empty(),
        "a stop of a stage that runs again: {:?}",
        runs.modes.lock().unwrap()
    );
    assert_eq!(s.get_stage(&p, "qa").await.unwrap().status, StageStatus::Running);
}

async fn racing_deploys_leave_the_newest_release_running(env: &Env) {
    let runs =
        std::sync::Arc::new(FakeRuntime { run_takes: std::time::Duration::from_millis(150), ..Default::default() });
    let s = env.as_admin(&env.services.with_runtime(runs.clone(), std::time::Duration::from_secs(5)));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    common::upload_manifest(&s, &p, MANIFEST).await.unwrap();
    let deploys: Vec<_> = (0..5)
        .map(|_| {
            let (s, p) = (s.clone(), p.clone());
            tokio::spawn(async move { s.deploy(&p, "qa", 1).await.unwrap().number })
        })
        .collect();
    let mut numbers = Vec::new();
    for d in deploys {
        numbers.push(d.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    // The runs go on in the background; wait until they are done.
    for _ in 0..200 {
        if runs.active.load(std::sync::atomic::Ordering::SeqCst) == 0 && runs.releases().contains(&5) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!runs.overlapped.load(std::sync::atomic::Ordering::SeqCst), "two runs on one stage at once");
    let order = runs.releases();
    assert_eq!(order.last(), Some(&5), "the newest release is the one left running: {order:?}");
    // Suspended meanwhile: a deploy records the release and runs nothing.
    let before = runs.releases().len();
    s.suspend_stage(&p, "qa").await.unwrap();
    s.deploy(&p, "qa", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(runs.releases().len(), before);
}

async fn the_share_proxy_sees_every_change_at_once(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    assert_eq!(s.stage_with_components(&p, "web").await.unwrap_err().kind, ErrorKind::NotFound);
    s.create_stage(&p, "web", StageType::Dev, None).await.unwrap();
    let status = async || s.stage_with_components(&p, "web").await.map(|(stage, _)| stage.status);
    assert_eq!(status().await.unwrap(), StageStatus::Running, "a new stage is seen at once");
    assert_eq!(status().await.unwrap(), StageStatus::Running);
    s.suspend_stage(&p, "web").await.unwrap();
    assert_eq!(status().await.unwrap(), StageStatus::Suspended, "a suspend is seen at once");
    s.resume_stage(&p, "web").await.unwrap();
    assert_eq!(status().await.unwrap(), StageStatus::Running);
    update(s, &p, "web", "Web shop", "dev", None).await.unwrap();
    assert_eq!(s.stage_with_components(&p, "web").await.unwrap().0.name, "Web shop");
    s.delete_stage(&p, "web").await.unwrap();
    assert_eq!(status().await.unwrap_err().kind, ErrorKind::NotFound, "an archived stage at once");
    s.restore_stage(&p, "web").await.unwrap();
    assert_eq!(status().await.unwrap(), StageStatus::Running);
}

async fn stages_are_listed_live_or_archived(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    for name in ["one", "two", "three"] {
        s.create_stage(&p, name, StageType::Dev, None).await.unwrap();
    }
    s.delete_stage(&p, "one").await.unwrap();
    env.clock.advance(Duration::minutes(1));
    s.delete_stage(&p, "three").await.unwrap();
    let ids = |stages: Vec<Stage>| stages.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_stages(&p, false).await.unwrap()), ["two"]);
    assert_eq!(ids(s.list_stages(&p, true).await.unwrap()), ["three", "one"], "the latest deleted first");
    let overview = s.project_overview(&p, &Default::default()).await.unwrap();
    assert_eq!(
        (ids(overview.stages), ids(overview.archived)),
        (vec!["two".to_owned()], vec!["three".into(), "one".into()])
    );
    assert_eq!(s.list_stages("nope", false).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn concurrent_patches_of_one_stage_lose_no_change(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    for round in 1..=10u32 {
        let name = format!("Round {round}");
        let rename = StageUpdate { name: Some(name.clone()), ..Default::default() };
        let regrace = StageUpdate { grace_secs: Some(round), ..Default::default() };
        let retype = StageUpdate {
            stage_type: Some([StageType::Dev, StageType::Prod][round as usize % 2]),
            ..Default::default()
        };
        let tasks = [rename, regrace, retype].map(|update| {
            let (s, p) = (s.clone(), p.clone());
            tokio::spawn(async move { s.update_stage(&p, "qa", update).await })
        });
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let st = s.get_stage(&p, "qa").await.unwrap();
        assert_eq!(
            (st.name.as_str(), st.grace_secs, st.stage_type),
            (name.as_str(), round, [StageType::Dev, StageType::Prod][round as usize % 2]),
            "every patch applied"
        );
    }
}

async fn stage_activity_and_the_demo(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let scratch = Scratch::new();
    std::fs::write(scratch.0.join("pergola-demo"), "#!/bin/sh\n").unwrap();
    let dir = scratch.0.display().to_string();
    let demo = s.try_demo(&p, &dir).await.unwrap();
    assert_eq!((demo.id.as_str(), demo.name.as_str(), demo.stage_type), ("demo", "Demo", StageType::Dev));
    let again = s.try_demo(&p, &dir).await.unwrap();
    assert_eq!(again.id, "demo-2", "a taken ID gives way to the suggested one");
    let build = s.builds(&p).await.unwrap().remove(0);
    assert_eq!(build.manifest, pergola_core::services::DEMO_MANIFEST);
    // Uploaded like every build: the same bytes twice are one artifact.
    let first = s.builds(&p).await.unwrap().pop().unwrap();
    assert!(build.digest.as_deref().is_some_and(|d| d.starts_with("sha256:")) && build.digest == first.digest);
    assert!(std::path::Path::new(&build.workdir).join("pergola-demo").is_file());
    assert_eq!(build.version.as_deref(), Some("demo"));
    let activity = s.stage_activity(&p, "demo").await.unwrap();
    assert_eq!(activity.stage, s.get_stage(&p, "demo").await.unwrap());
    assert_eq!(activity.releases.len(), 1);
    assert_eq!(activity.events.len(), 2, "created, deployed: {:?}", activity.events);
    assert!(activity.components.is_empty(), "nothing runs without a runtime");
    assert!(s.stage_output(&p, "demo", &[]).await.unwrap().is_empty());
    assert_eq!(s.stage_output(&p, "ghost", &[]).await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.stage_activity(&p, "ghost").await.unwrap_err().kind, ErrorKind::NotFound);
    assert!(s.try_demo(&p, "relative/dir").await.unwrap_err().is_for("workdir"));
}

// --- Access (issue 9): the store's users, sessions, tokens, memberships, throttle,
// invitations, audit log and guest links.

fn new_user(env: &Env, username: &str) -> UserRow {
    let now = env.clock.now_for_tests();
    UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_owned(),
        password_hash: credentials::hash_password("a long enough password").unwrap(),
        is_admin: false,
        disabled_at: None,
        created_at: now,
        password_changed_at: now,
    }
}

async fn stored_user(env: &Env, username: &str) -> UserRow {
    let user = new_user(env, username);
    env.services.store().insert_user(&user).await.unwrap();
    env.services.store().get_user(&user.id).await.unwrap().unwrap()
}

fn new_token(env: &Env, user: &UserRow, name: &str) -> (String, TokenRow) {
    let secret = credentials::new_secret(SecretKind::ApiToken);
    let row = TokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        name: name.to_owned(),
        token_hash: credentials::secret_hash(&secret),
        created_at: env.clock.now_for_tests(),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    (secret, row)
}

async fn users_are_unique_case_insensitively_and_can_be_disabled(env: &Env) {
    let store = env.services.store();
    assert_eq!(store.count_users().await.unwrap(), 1, "the environment's administrator");
    let alice = new_user(env, "Alice");
    store.insert_user(&alice).await.unwrap();
    let stored = store.get_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(stored.username, "alice", "stored lowercase");
    assert_eq!(stored, UserRow { username: "alice".into(), ..alice.clone() });
    assert_eq!(store.get_user_by_name(" ALICE ").await.unwrap().unwrap().id, alice.id);
    assert_eq!(store.get_user(&alice.id).await.unwrap().unwrap().id, alice.id);
    for taken in ["alice", "ALICE", "aLiCe"] {
        let e = store.insert_user(&new_user(env, taken)).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict), "{taken}: {e:?}");
    }
    store.insert_user(&new_user(env, "bob")).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 3);
    let names: Vec<_> = store.list_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    assert!(store.get_user_by_name("carol").await.unwrap().is_none());
    assert!(store.get_user("nope").await.unwrap().is_none());

    let now = env.clock.now_for_tests();
    assert!(store.set_user_disabled(&alice.id, Some(now)).await.unwrap());
    assert_eq!(store.get_user(&alice.id).await.unwrap().unwrap().disabled_at, Some(now));
    assert!(store.set_user_disabled(&alice.id, None).await.unwrap());
    assert_eq!(store.get_user(&alice.id).await.unwrap().unwrap().disabled_at, None);
    assert!(!store.set_user_disabled("nope", Some(now)).await.unwrap());

    assert!(store.set_user_admin(&alice.id, true).await.unwrap());
    assert!(store.get_user(&alice.id).await.unwrap().unwrap().is_admin);
    assert!(!store.set_user_admin("nope", true).await.unwrap());

    env.clock.advance(Duration::hours(1));
    let later = env.clock.now_for_tests();
    let hash = credentials::hash_password("another long password").unwrap();
    assert!(store.update_user_password(&alice.id, &hash, later).await.unwrap());
    let changed = store.get_user(&alice.id).await.unwrap().unwrap();
    assert_eq!((changed.password_changed_at, changed.created_at), (later, now));
    assert!(credentials::verify_password("another long password", &changed.password_hash));
    assert!(!credentials::verify_password("a long enough password", &changed.password_hash));
    assert!(!store.update_user_password("nope", &hash, later).await.unwrap());
}

async fn sessions_are_found_by_hash_touched_and_deleted(env: &Env) {
    let store = env.services.store();
    let alice = stored_user(env, "alice").await;
    let bob = stored_user(env, "bob").await;
    let now = env.clock.now_for_tests();
    let mut hashes = Vec::new();
    for (user, address) in [(&alice, Some("10.0.0.1")), (&alice, None), (&bob, Some("10.0.0.2"))] {
        let secret = credentials::new_secret(SecretKind::Session);
        let row = SessionRow {
            id_hash: credentials::secret_hash(&secret),
            user_id: user.id.clone(),
            created_at: now,
            last_seen_at: now,
            address: address.map(str::to_owned),
            parent: None,
        };
        assert!(store.insert_session(&row).await.unwrap());
        assert!(matches!(store.insert_session(&row).await.unwrap_err(), StoreError::Conflict));
        // Found by the hash of the cookie value, never by the value.
        assert!(store.get_session(&secret).await.unwrap().is_none());
        let (found, found_user) = store.get_session(&row.id_hash).await.unwrap().unwrap();
        assert_eq!(found, row);
        assert_eq!(&found_user, user);
        hashes.push(row.id_hash);
    }
    env.clock.advance(Duration::minutes(5));
    let later = env.clock.now_for_tests();
    assert!(store.touch_session(&hashes[0], later).await.unwrap());
    let (touched, _) = store.get_session(&hashes[0]).await.unwrap().unwrap();
    assert_eq!((touched.created_at, touched.last_seen_at), (now, later));
    assert!(!store.touch_session("nope", later).await.unwrap());

    // A disabled user's session is still returned, with the user's state.
    store.set_user_disabled(&bob.id, Some(later)).await.unwrap();
    assert_eq!(store.get_session(&hashes[2]).await.unwrap().unwrap().1.disabled_at, Some(later));

    assert!(store.delete_session(&hashes[2]).await.unwrap());
    assert!(!store.delete_session(&hashes[2]).await.unwrap());
    assert!(store.get_session(&hashes[2]).await.unwrap().is_none());
    assert_eq!(store.delete_user_sessions(&alice.id, Some(&hashes[1])).await.unwrap(), 1, "all but the one kept");
    assert!(store.get_session(&hashes[0]).await.unwrap().is_none());
    assert!(store.get_session(&hashes[1]).await.unwrap().is_some());
    assert_eq!(store.delete_user_sessions(&alice.id, None).await.unwrap(), 1);
    assert!(store.get_session(&hashes[1]).await.unwrap().is_none());

    // Housekeeping: sessions idle or too old go.
    let t0 = env.clock.now_for_tests();
    let session =
        |hash: &str, created: chrono::DateTime<chrono::Utc>, seen: chrono::DateTime<chrono::Utc>| SessionRow {
            id_hash: hash.to_owned(),
            user_id: alice.id.clone(),
            created_at: created,
            last_seen_at: seen,
            address: None,
            parent: None,
        };
    let child = |hash: &str, parent: &str| SessionRow { parent: Some(parent.to_owned()), ..session(hash, t0, t0) };
    assert!(store.insert_session(&session("idle", t0 - Duration::hours(13), t0 - Duration::hours(13))).await.unwrap());
    assert!(store.insert_session(&session("old", t0 - Duration::days(8), t0)).await.unwrap());
    assert!(store.insert_session(&session("fresh", t0 - Duration::hours(1), t0)).await.unwrap());
    // A share host's session, opened from the idle one: it ends with it, though used just now.
    assert!(store.insert_session(&child("shared-idle", "idle")).await.unwrap());
    assert_eq!(store.get_session("shared-idle").await.unwrap().unwrap().0.parent.as_deref(), Some("idle"));
    assert_eq!(store.delete_stale_sessions(t0 - Duration::hours(12), t0 - Duration::days(7)).await.unwrap(), 2);
    assert!(store.get_session("fresh").await.unwrap().is_some());
    assert!(store.get_session("idle").await.unwrap().is_none());
    assert!(store.get_session("shared-idle").await.unwrap().is_none(), "ended with the session that opened it");

    // Signing out ends the share hosts' sessions it opened, and only those; none is opened
    // from a session that has ended.
    assert!(store.insert_session(&child("shared-a", "fresh")).await.unwrap());
    assert!(store.insert_session(&child("shared-b", "fresh")).await.unwrap());
    assert!(store.insert_session(&session("other", t0, t0)).await.unwrap());
    assert!(store.insert_session(&child("shared-other", "other")).await.unwrap());
    assert!(!store.insert_session(&child("orphan", "idle")).await.unwrap(), "its parent has ended");
    assert!(store.get_session("orphan").await.unwrap().is_none());
    assert!(store.delete_session("fresh").await.unwrap());
    for gone in ["fresh", "shared-a", "shared-b"] {
        assert!(store.get_session(gone).await.unwrap().is_none(), "{gone}");
    }
    assert!(store.get_session("shared-other").await.unwrap().is_some());
    // Ending a share host's session leaves the dashboard's.
    assert!(store.delete_session("shared-other").await.unwrap());
    assert!(store.get_session("other").await.unwrap().is_some());
}

async fn api_token_names_are_unique_while_live_and_revocation_is_immediate(env: &Env) {
    let store = env.services.store();
    let alice = stored_user(env, "alice").await;
    let bob = stored_user(env, "bob").await;
    let (secret, mut ci) = new_token(env, &alice, "ci");
    let expiry = env.clock.now_for_tests() + Duration::days(30);
    ci.expires_at = Some(expiry);
    store.insert_token(&ci).await.unwrap();
    let (token, user) = store.get_token_by_hash(&credentials::secret_hash(&secret)).await.unwrap().unwrap();
    assert_eq!(token, ci);
    assert_eq!(token.expires_at, Some(expiry));
    assert_eq!(user.username, "alice");
    assert!(store.get_token_by_hash(&secret).await.unwrap().is_none(), "never found by the secret itself");

    // A second live token of the same name is refused; another user's is fine.
    let e = store.insert_token(&new_token(env, &alice, "ci").1).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e:?}");
    store.insert_token(&new_token(env, &bob, "ci").1).await.unwrap();
    // So is a reused hash.
    let e = store.insert_token(&TokenRow { id: "other".into(), name: "other".into(), ..ci.clone() }).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e:?}");

    env.clock.advance(Duration::minutes(1));
    let used = env.clock.now_for_tests();
    assert!(store.touch_token(&ci.id, used).await.unwrap());
    assert_eq!(store.get_token_by_hash(&ci.token_hash).await.unwrap().unwrap().0.last_used_at, Some(used));

    // Revocation is seen at once, and only once.
    assert!(store.revoke_token(&alice.id, "ci", used).await.unwrap());
    assert!(store.get_token_by_hash(&ci.token_hash).await.unwrap().is_none());
    assert!(!store.revoke_token(&alice.id, "ci", used).await.unwrap());
    assert!(!store.touch_token(&ci.id, used).await.unwrap());
    assert!(!store.revoke_token(&alice.id, "nope", used).await.unwrap());
    // Bob's token of that name is untouched.
    assert_eq!(store.list_tokens(&bob.id).await.unwrap()[0].revoked_at, None);

    // The revoked name can be reused.
    env.clock.advance(Duration::minutes(1));
    let (second_secret, second) = new_token(env, &alice, "ci");
    store.insert_token(&second).await.unwrap();
    assert!(store.get_token_by_hash(&credentials::secret_hash(&second_secret)).await.unwrap().is_some());
    let listed = store.list_tokens(&alice.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].id.as_str(), listed[0].revoked_at), (second.id.as_str(), None));
    assert_eq!((listed[1].id.as_str(), listed[1].revoked_at), (ci.id.as_str(), Some(used)));

    // Of concurrent creations of one name, exactly one wins.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let services = env.admin.clone();
            let (_, row) = new_token(env, &bob, "deploy");
            tokio::spawn(async move { services.store().insert_token(&row).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
}

async fn memberships_set_change_and_remove_roles(env: &Env) {
    let store = env.services.store();
    let shop = project(env, "Shop").await;
    let blog = project(env, "Blog").await;
    let alice = stored_user(env, "alice").await;
    let bob = stored_user(env, "bob").await;
    let now = env.clock.now_for_tests();
    assert!(store.upsert_membership(&shop, &bob.id, Role::Viewer, now).await.unwrap());
    assert!(store.upsert_membership(&shop, &alice.id, Role::Owner, now).await.unwrap());
    assert!(store.upsert_membership(&blog, &alice.id, Role::Developer, now).await.unwrap());
    // No such project or user: nothing is stored.
    assert!(!store.upsert_membership("nope", &alice.id, Role::Owner, now).await.unwrap());
    assert!(!store.upsert_membership(&shop, "nope", Role::Owner, now).await.unwrap());

    assert_eq!(store.membership(&shop, &bob.id).await.unwrap(), Some(Role::Viewer));
    assert_eq!(store.membership(&blog, &bob.id).await.unwrap(), None);
    env.clock.advance(Duration::hours(1));
    assert!(store.upsert_membership(&shop, &bob.id, Role::Maintainer, env.clock.now_for_tests()).await.unwrap());
    assert_eq!(store.membership(&shop, &bob.id).await.unwrap(), Some(Role::Maintainer));

    let members = store.list_members(&shop).await.unwrap();
    let summary: Vec<_> = members.iter().map(|m| (m.username.as_str(), m.role)).collect();
    // The administrator who created the project through the services is its owner.
    assert_eq!(summary, [("admin", Role::Owner), ("alice", Role::Owner), ("bob", Role::Maintainer)]);
    assert_eq!(members[2].created_at, now, "a role change keeps the membership's start");
    assert_eq!(
        store.projects_of(&alice.id).await.unwrap(),
        [(blog.clone(), Role::Developer), (shop.clone(), Role::Owner)]
    );

    // Stages come and go without touching memberships (projects cannot be deleted).
    create(&env.admin, &shop, "dev", "dev", None).await.unwrap();
    env.admin.delete_stage(&shop, "dev").await.unwrap();
    env.clock.advance(Duration::days(2));
    assert_eq!(env.admin.purge_due().await.unwrap().len(), 1);
    assert_eq!(store.list_members(&shop).await.unwrap().len(), 3);

    assert!(store.delete_membership(&shop, &bob.id).await.unwrap());
    assert!(!store.delete_membership(&shop, &bob.id).await.unwrap());
    assert_eq!(store.membership(&shop, &bob.id).await.unwrap(), None);
    assert!(store.projects_of(&bob.id).await.unwrap().is_empty());
}

async fn sign_in_failures_count_within_their_window(env: &Env) {
    let store = env.services.store();
    let throttle = pergola_domain::Throttle::default();
    let t0 = env.clock.now_for_tests();
    for _ in 0..5 {
        store.record_sign_in_failure("Alice", "10.0.0.1", env.clock.now_for_tests()).await.unwrap();
        env.clock.advance(Duration::minutes(1));
    }
    store.record_sign_in_failure("alice", "10.0.0.2", t0).await.unwrap();
    store.record_sign_in_failure("bob", "10.0.0.1", t0).await.unwrap();

    let recent = |now| async move {
        store.sign_in_failures_since(" ALICE", "10.0.0.1", throttle.window_start(now)).await.unwrap()
    };
    let now = env.clock.now_for_tests(); // t0 + 5 min
    let failures = recent(now).await;
    assert_eq!(failures, (0..5).map(|m| t0 + Duration::minutes(m)).collect::<Vec<_>>());
    assert!(throttle.check(&failures, now).is_err(), "five failures lock out");
    // Another address or another user has its own count.
    assert_eq!(store.sign_in_failures_since("alice", "10.0.0.2", t0 - Duration::seconds(1)).await.unwrap(), [t0]);
    assert!(store.sign_in_failures_since("bob", "10.0.0.2", t0 - Duration::seconds(1)).await.unwrap().is_empty());

    // The window start is exclusive: at t0 + 15 min the first failure no longer counts.
    env.clock.set(t0 + Duration::minutes(15));
    let now = env.clock.now_for_tests();
    let failures = recent(now).await;
    assert_eq!(failures.len(), 4);
    assert!(throttle.check(&failures, now).is_ok());
    env.clock.set(t0 + Duration::minutes(30));
    assert!(recent(env.clock.now_for_tests()).await.is_empty());

    assert_eq!(store.clear_sign_in_failures("alice", "10.0.0.1").await.unwrap(), 5);
    assert!(store.sign_in_failures_since("alice", "10.0.0.1", t0 - Duration::days(1)).await.unwrap().is_empty());
    assert_eq!(store.sign_in_failures_since("alice", "10.0.0.2", t0 - Duration::days(1)).await.unwrap().len(), 1);
    assert_eq!(store.delete_sign_in_failures_before(t0).await.unwrap(), 2);
}

async fn invitations_are_used_once_and_never_after_expiry(env: &Env) {
    let store = env.services.store();
    let shop = project(env, "Shop").await;
    let now = env.clock.now_for_tests();
    let invitation = |secret: &str, is_admin, project_id: Option<&str>, role| InvitationRow {
        token_hash: credentials::secret_hash(secret),
        created_by: "admin".into(),
        is_admin,
        project_id: project_id.map(str::to_owned),
        role,
        expires_at: pergola_domain::invitation_expires_at(now),
        used_at: None,
        created_at: now,
    };
    let first = credentials::new_secret(SecretKind::Invitation);
    let second = credentials::new_secret(SecretKind::Invitation);
    let third = credentials::new_secret(SecretKind::Invitation);
    store.insert_invitation(&invitation(&first, false, Some(&shop), Some(Role::Developer))).await.unwrap();
    store.insert_invitation(&invitation(&second, true, None, None)).await.unwrap();
    store.insert_invitation(&invitation(&third, false, None, None)).await.unwrap();
    let e = store.insert_invitation(&invitation(&first, false, None, None)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e:?}");
    assert_eq!(store.list_open_invitations(now).await.unwrap().len(), 3);

    env.clock.advance(Duration::days(1));
    let later = env.clock.now_for_tests();
    assert!(store.take_invitation(&first, later).await.unwrap().is_none(), "by its hash only");
    let taken = store.take_invitation(&credentials::secret_hash(&first), later).await.unwrap().unwrap();
    assert_eq!(
        taken,
        InvitationRow { used_at: Some(later), ..invitation(&first, false, Some(&shop), Some(Role::Developer)) }
    );
    assert!(store.take_invitation(&credentials::secret_hash(&first), later).await.unwrap().is_none(), "used once");

    // Of concurrent takers, exactly one wins.
    let hash = credentials::secret_hash(&second);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (services, hash) = (env.admin.clone(), hash.clone());
            tokio::spawn(async move { services.store().take_invitation(&hash, later).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if let Some(i) = task.await.unwrap() {
            assert!(i.is_admin);
            won += 1;
        }
    }
    assert_eq!(won, 1);

    // Expired at exactly its expiry.
    let open: Vec<_> = store.list_open_invitations(later).await.unwrap();
    assert_eq!(open.len(), 1);
    env.clock.set(pergola_domain::invitation_expires_at(now));
    let expired = env.clock.now_for_tests();
    assert!(store.list_open_invitations(expired).await.unwrap().is_empty());
    assert!(store.take_invitation(&credentials::secret_hash(&third), expired).await.unwrap().is_none());
    let just_before = expired - Duration::milliseconds(1);
    assert!(store.take_invitation(&credentials::secret_hash(&third), just_before).await.unwrap().is_some());
}

async fn audit_events_are_listed_newest_first_and_filtered(env: &Env) {
    let store = env.services.store();
    // Straight into the store: creating it through the services would be audited too.
    let shop = "shop".to_owned();
    let created_at = env.clock.now_for_tests();
    store.insert_project(&pergola_domain::Project { id: shop.clone(), name: "Shop".into(), created_at }).await.unwrap();
    let event = |actor: &str, project: Option<&str>, stage: Option<&str>, kind: &str| AuditEvent {
        id: 0,
        at: env.clock.now_for_tests(),
        actor: actor.to_owned(),
        address: Some("10.0.0.1".into()),
        project_id: project.map(str::to_owned),
        stage_id: stage.map(str::to_owned),
        kind: kind.to_owned(),
        target: stage.unwrap_or("-").to_owned(),
        message: format!("{actor} did {kind}"),
    };
    let mut ids = Vec::new();
    for e in [
        event("alice", Some(&shop), Some("qa"), "stage.create"),
        event("token:ci", Some(&shop), Some("qa"), "stage.deploy"),
        event("alice", Some(&shop), Some("prod"), "stage.deploy"),
        event("system", Some(&shop), Some("qa"), "stage.purge"),
        event("alice", None, None, "user.create"),
        event("bob", Some("blog"), Some("qa"), "stage.deploy"),
    ] {
        ids.push(store.add_audit_event(&e).await.unwrap());
        env.clock.advance(Duration::seconds(1));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let list = |project: Option<&'static str>, stage: Option<&str>, actor: Option<&str>, kind: Option<&str>, limit| {
        let filter = AuditFilter {
            stage_id: stage.map(str::to_owned),
            actor: actor.map(str::to_owned),
            kind: kind.map(str::to_owned),
        };
        async move { store.list_audit_events(project, &filter, limit).await.unwrap() }
    };
    let shop: &'static str = "shop";
    let all = list(Some(shop), None, None, None, 100).await;
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[3], ids[2], ids[1], ids[0]]);
    let first = all.last().unwrap();
    assert_eq!(first.message, "alice did stage.create");
    assert_eq!(first.address.as_deref(), Some("10.0.0.1"));
    assert_eq!(first.at, env.clock.now_for_tests() - Duration::seconds(6));
    let ids_of = |events: Vec<AuditEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids_of(list(Some(shop), Some("qa"), None, None, 100).await), [ids[3], ids[1], ids[0]]);
    assert_eq!(ids_of(list(Some(shop), None, Some("alice"), None, 100).await), [ids[2], ids[0]]);
    assert_eq!(ids_of(list(Some(shop), None, None, Some("stage.deploy"), 100).await), [ids[2], ids[1]]);
    assert_eq!(ids_of(list(Some(shop), Some("qa"), Some("token:ci"), Some("stage.deploy"), 100).await), [ids[1]]);
    assert_eq!(ids_of(list(Some(shop), None, None, None, 2).await), [ids[3], ids[2]]);
    assert!(list(Some(shop), Some("nope"), None, None, 100).await.is_empty());
    // The whole instance.
    assert_eq!(ids_of(list(None, None, Some("alice"), None, 100).await), [ids[4], ids[2], ids[0]]);
    // Plus the environment's two: its administrator created and signed in.
    assert_eq!(list(None, None, None, None, 100).await.len(), 8);
}

async fn guest_links_and_visibility_belong_to_their_stage(env: &Env) {
    let store = env.services.store();
    let s = &env.admin;
    let p = project(env, "Shop").await;
    create(s, &p, "qa", "dev", None).await.unwrap();
    create(s, &p, "prod", "prod", None).await.unwrap();
    assert_eq!(store.stage_visibility(&p, "qa").await.unwrap(), Some(Visibility::Members), "the default");
    assert!(store.set_stage_visibility(&p, "qa", Visibility::Public).await.unwrap());
    assert_eq!(store.stage_visibility(&p, "qa").await.unwrap(), Some(Visibility::Public));
    assert_eq!(store.stage_visibility(&p, "prod").await.unwrap(), Some(Visibility::Members));
    assert!(!store.set_stage_visibility(&p, "nope", Visibility::Public).await.unwrap());
    assert_eq!(store.stage_visibility(&p, "nope").await.unwrap(), None);

    let now = env.clock.now_for_tests();
    let link = |stage: &str, secret: &str| GuestLinkRow {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: p.clone(),
        stage_id: stage.to_owned(),
        token_hash: credentials::secret_hash(secret),
        created_by: "alice".into(),
        created_at: now,
        expires_at: Some(now + Duration::days(3)),
        revoked_at: None,
    };
    let secrets: Vec<_> = (0..3).map(|_| credentials::new_secret(SecretKind::GuestLink)).collect();
    let a = link("qa", &secrets[0]);
    let b = link("qa", &secrets[1]);
    let c = GuestLinkRow { expires_at: None, ..link("prod", &secrets[2]) };
    for l in [&a, &b, &c] {
        assert!(store.insert_guest_link(l).await.unwrap());
    }
    assert!(!store.insert_guest_link(&link("nope", "x")).await.unwrap());
    let e = store.insert_guest_link(&GuestLinkRow { id: "other".into(), ..a.clone() }).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e:?}");
    assert_eq!(store.get_guest_link_by_hash(&a.token_hash).await.unwrap().unwrap(), a);
    assert_eq!(store.get_guest_link_by_hash(&c.token_hash).await.unwrap().unwrap(), c);
    assert!(store.get_guest_link_by_hash(&secrets[0]).await.unwrap().is_none());
    assert_eq!(store.list_guest_links(&p, "qa").await.unwrap().len(), 2);

    assert!(!store.revoke_guest_link(&p, "prod", &a.id, now).await.unwrap(), "another stage's link");
    assert!(store.revoke_guest_link(&p, "qa", &a.id, now).await.unwrap());
    assert!(!store.revoke_guest_link(&p, "qa", &a.id, now).await.unwrap());
    assert!(store.get_guest_link_by_hash(&a.token_hash).await.unwrap().is_none(), "revoked at once");
    let listed = store.list_guest_links(&p, "qa").await.unwrap();
    assert_eq!(listed.iter().filter(|l| l.revoked_at == Some(now)).count(), 1);

    // Archived: the links stay (a restore brings them back); purged: they go with the stage,
    // and a new stage of the same ID starts without them.
    s.delete_stage(&p, "qa").await.unwrap();
    assert!(!store.insert_guest_link(&link("qa", "y")).await.unwrap(), "not on an archived stage");
    assert!(!store.set_stage_visibility(&p, "qa", Visibility::Members).await.unwrap());
    assert_eq!(store.list_guest_links(&p, "qa").await.unwrap().len(), 2);
    env.clock.advance(Duration::days(2));
    assert_eq!(s.purge_due().await.unwrap(), [(p.clone(), "qa".to_owned())]);
    assert!(store.list_guest_links(&p, "qa").await.unwrap().is_empty());
    assert!(store.get_guest_link_by_hash(&b.token_hash).await.unwrap().is_none());
    create(s, &p, "qa", "dev", None).await.unwrap();
    assert!(store.list_guest_links(&p, "qa").await.unwrap().is_empty());
    assert_eq!(store.stage_visibility(&p, "qa").await.unwrap(), Some(Visibility::Members));
    assert_eq!(store.list_guest_links(&p, "prod").await.unwrap(), [c]);
}

async fn stage_events_record_their_actor(env: &Env) {
    use pergola_domain::{EventKind as K, StageEvent};
    let store = env.services.store();
    let p = project(env, "Shop").await;
    create(&env.admin, &p, "qa", "qa", None).await.unwrap();
    let now = env.clock.now_for_tests();
    assert!(store
        .add_event_by(&p, "qa", &StageEvent::new(now, K::Suspending, "by alice"), Some("alice"))
        .await
        .unwrap());
    let crash = StageEvent::of_component(now, K::Crashed, "web", "web exited with code 3");
    assert!(store.add_event(&p, "qa", &crash).await.unwrap());
    assert!(!store.add_event_by(&p, "nope", &crash, Some("alice")).await.unwrap());
    let listed = store.list_events_with_actors(&p, "qa", 10).await.unwrap();
    let summary: Vec<_> = listed.iter().map(|(e, actor)| (e.kind, actor.as_deref())).collect();
    assert_eq!(summary, [(K::Crashed, None), (K::Suspending, Some("alice")), (K::Created, Some("admin"))]);
    assert_eq!(listed[0].0, crash);
    let plain: Vec<_> = listed.into_iter().map(|(e, _)| e).collect();
    assert_eq!(store.list_events(&p, "qa", 10).await.unwrap(), plain);
}

async fn events_timelines_keep_the_newest_and_nothing_too_old(env: &Env) {
    use pergola_core::services::EventsKept;
    use pergola_domain::{EventKind as K, StageEvent};
    assert_eq!(EventsKept::default(), EventsKept { per_stage: 10_000, max_age: Duration::days(90) });
    let s = env.as_admin(&env.services.with_events_kept(EventsKept { per_stage: 10, max_age: Duration::days(90) }));
    let p = project(env, "Shop").await;
    s.create_stage(&p, "a", StageType::Dev, None).await.unwrap();
    s.create_stage(&p, "b", StageType::Qa, None).await.unwrap();
    env.clock.advance(Duration::days(91)); // the two `created` events are now too old
    let now = env.clock.now_for_tests();
    for i in 0..25 {
        let at = now - Duration::minutes(25 - i);
        assert!(s.store().add_event(&p, "a", &StageEvent::new(at, K::Crashed, format!("a{i}"))).await.unwrap());
    }
    let edge = now - Duration::days(90);
    assert!(s.store().add_event(&p, "b", &StageEvent::new(edge, K::Crashed, "exactly 90 days")).await.unwrap());
    for i in 0..3 {
        assert!(s.store().add_event(&p, "b", &StageEvent::new(now, K::Healthy, format!("b{i}"))).await.unwrap());
    }
    assert_eq!(s.prune_events().await.unwrap(), 2 + 15);
    let a: Vec<String> = s.events(&p, "a").await.unwrap().into_iter().map(|e| e.message).collect();
    assert_eq!(a, (15..25).rev().map(|i| format!("a{i}")).collect::<Vec<_>>(), "the newest 10 stay");
    let b: Vec<String> = s.events(&p, "b").await.unwrap().into_iter().map(|e| e.message).collect();
    assert_eq!(b, ["b2", "b1", "b0", "exactly 90 days"], "other stages are bounded on their own");
    assert_eq!(s.prune_events().await.unwrap(), 0, "nothing more to prune");
    env.clock.advance(Duration::milliseconds(1));
    assert_eq!(s.prune_events().await.unwrap(), 1, "older than 90 days: gone");
    assert_eq!(s.events(&p, "b").await.unwrap().len(), 3);
    // The default bounds keep all of that.
    assert_eq!(env.services.prune_events().await.unwrap(), 0);
}

async fn sharing_is_set_and_guest_links_made_through_the_services(env: &Env) {
    use pergola_core::services::{ShareAccess, ShareCredentials};
    use pergola_domain::EventKind as K;
    let s = &env.admin;
    let p = project(env, "Shop").await;
    create(s, &p, "qa", "qa", None).await.unwrap();
    create(s, &p, "dev", "dev", None).await.unwrap();
    assert_eq!(s.visibility(&p, "qa").await.unwrap(), Visibility::Members, "the default");
    let nobody = ShareCredentials::default();
    assert_eq!(env.services.share_access(&p, "qa", &nobody).await.unwrap(), ShareAccess::SignIn);
    assert_eq!(s.set_visibility(&p, "qa", Visibility::Public).await.unwrap(), Visibility::Public);
    assert_eq!(s.visibility(&p, "qa").await.unwrap(), Visibility::Public);
    assert_eq!(env.services.share_access(&p, "qa", &nobody).await.unwrap(), ShareAccess::Allowed, "forgotten at once");
    assert_eq!(env.services.share_access(&p, "dev", &nobody).await.unwrap(), ShareAccess::SignIn);
    assert!(env.services.share_access(&p, "nope", &nobody).await.is_err(), "no such stage");
    s.set_visibility(&p, "qa", Visibility::Public).await.unwrap(); // no change: not recorded again

    for bad in [Duration::minutes(59), Duration::days(366), Duration::zero(), Duration::hours(-3)] {
        let e = s.create_guest_link(&p, "qa", bad).await.unwrap_err();
        assert_eq!((e.kind, e.field.as_deref()), (ErrorKind::Validation, Some("expires_in")), "{bad}");
    }
    let link = s.create_guest_link(&p, "qa", Duration::hours(24)).await.unwrap();
    assert!(SecretKind::GuestLink.matches(&link.token), "{}", link.token);
    assert_eq!(link.expires_at, env.clock.now_for_tests() + Duration::hours(24));
    let listed = s.list_guest_links(&p, "qa").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].created_by.as_str()), (link.id.as_str(), "admin"));
    assert!(listed[0].is_live(env.clock.now_for_tests()));
    let stored = env.services.store().list_guest_links(&p, "qa").await.unwrap();
    assert_eq!(stored[0].token_hash, credentials::secret_hash(&link.token), "stored as its hash only");
    assert!(!format!("{listed:?}").contains(&link.token), "never listed");

    let guest = ShareCredentials { guest: Some(link.token.clone()), ..Default::default() };
    assert_eq!(env.services.share_access(&p, "dev", &guest).await.unwrap(), ShareAccess::SignIn, "not its stage");
    assert!(env.services.guest_link_opens(&link.token, &p, "qa").await.unwrap().is_some());
    assert!(env.services.guest_link_opens(&link.token, &p, "dev").await.unwrap().is_none());
    let sharing = s.sharing(&p, "qa").await.unwrap();
    assert_eq!((sharing.visibility, sharing.guest_links.len()), (Visibility::Public, 1));

    s.revoke_guest_link(&p, "qa", &link.id).await.unwrap();
    assert!(env.services.guest_link_opens(&link.token, &p, "qa").await.unwrap().is_none());
    let e = s.revoke_guest_link(&p, "qa", &link.id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "revoked once");
    assert!(s.list_guest_links(&p, "qa").await.unwrap()[0].revoked_at.is_some(), "listed as revoked");

    let short = s.create_guest_link(&p, "qa", Duration::hours(1)).await.unwrap();
    assert!(env.services.guest_link_opens(&short.token, &p, "qa").await.unwrap().is_some());
    env.clock.advance(Duration::hours(1));
    assert!(env.services.guest_link_opens(&short.token, &p, "qa").await.unwrap().is_none(), "expired");

    let events = s.events(&p, "qa").await.unwrap();
    let sharing: Vec<_> = events.iter().filter(|e| e.kind == K::SharingChanged).map(|e| e.message.as_str()).collect();
    assert_eq!(sharing.len(), 4, "{sharing:?}");
    assert!(sharing.iter().any(|m| m.contains("anyone with the link")), "{sharing:?}");
    assert!(sharing.iter().any(|m| m.contains(&format!("Guest link {} revoked", link.id))), "{sharing:?}");
    let audit = s.project_activity(&p, Default::default(), 50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "stage.sharing_changed" && a.actor == "admin"), "{audit:?}");
    assert!(!format!("{audit:?}{events:?}").contains(&link.token), "no secret in the trails");

    // Archived stages are not shared any more.
    s.delete_stage(&p, "dev").await.unwrap();
    assert_eq!(s.create_guest_link(&p, "dev", Duration::hours(2)).await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.set_visibility(&p, "dev", Visibility::Public).await.unwrap_err().kind, ErrorKind::NotFound);
    // Nor is their sharing read: it is gone with them until they are restored (as the stage
    // itself answers 404 with the hint to restore it).
    assert_eq!(s.list_guest_links(&p, "dev").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.visibility(&p, "dev").await.unwrap_err().kind, ErrorKind::NotFound);
    assert!(s.sharing(&p, "dev").await.unwrap_err().message.contains("Restore it"));
    s.restore_stage(&p, "dev").await.unwrap();
    assert!(s.list_guest_links(&p, "dev").await.unwrap().is_empty());
}

async fn sharing_needs_the_right_role_and_answers_the_proxy(env: &Env) {
    use pergola_core::services::{ShareAccess, ShareCredentials};
    let p = project(env, "Shop").await;
    create(&env.admin, &p, "dev", "dev", None).await.unwrap();
    create(&env.admin, &p, "prod", "prod", None).await.unwrap();
    let viewer = env.member("vera", &p, Role::Viewer).await;
    let developer = env.member("dora", &p, Role::Developer).await;
    let outsider = env.services.acting(env.user("olga").await);

    assert_eq!(viewer.visibility(&p, "dev").await.unwrap(), Visibility::Members, "viewers see it");
    assert!(viewer.list_guest_links(&p, "dev").await.unwrap().is_empty());
    for stage in ["dev", "prod"] {
        assert_eq!(
            viewer.create_guest_link(&p, stage, Duration::hours(2)).await.unwrap_err().kind,
            ErrorKind::Forbidden
        );
        assert_eq!(viewer.set_visibility(&p, stage, Visibility::Public).await.unwrap_err().kind, ErrorKind::Forbidden);
        assert_eq!(outsider.visibility(&p, stage).await.unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(
            outsider.create_guest_link(&p, stage, Duration::hours(2)).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
    let link = developer.create_guest_link(&p, "dev", Duration::hours(2)).await.unwrap();
    assert_eq!(developer.set_visibility(&p, "dev", Visibility::Public).await.unwrap(), Visibility::Public);
    let e = developer.create_guest_link(&p, "prod", Duration::hours(2)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "not on PROD: {e:?}");
    assert_eq!(developer.set_visibility(&p, "prod", Visibility::Public).await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(viewer.revoke_guest_link(&p, "dev", &link.id).await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(env.services.store().stage_visibility(&p, "prod").await.unwrap(), Some(Visibility::Members));

    // The hand-off: codes for those who may see the stage, signed in to the dashboard, once,
    // for their host only.
    let host = "web.prod.shop.localhost";
    let s = &env.services;
    let (outsider, viewer, developer) = (
        env.in_a_session(s, "olga", USER_PASSWORD).await,
        env.in_a_session(s, "vera", USER_PASSWORD).await,
        env.in_a_session(s, "dora", USER_PASSWORD).await,
    );
    assert_eq!(outsider.share_code(&p, "prod", host).await.unwrap_err().kind, ErrorKind::NotFound);
    let no_session = env.member("nina", &p, Role::Viewer).await;
    assert_eq!(no_session.share_code(&p, "prod", host).await.unwrap_err().kind, ErrorKind::Forbidden);
    let code = viewer.share_code(&p, "prod", host).await.unwrap();
    assert!(code.len() >= 43, "256 random bits");
    assert_eq!(s.exchange_share_code(&code, &p, "dev", host, None).await.unwrap(), None, "another stage");
    assert_eq!(s.exchange_share_code(&code, &p, "prod", host, None).await.unwrap(), None, "spent by the attempt");
    let code = viewer.share_code(&p, "prod", host).await.unwrap();
    assert_eq!(s.exchange_share_code(&code, &p, "prod", "api.prod.shop.localhost", None).await.unwrap(), None);
    let code = viewer.share_code(&p, "prod", host).await.unwrap();
    let secret = s.exchange_share_code(&code, &p, "prod", host, None).await.unwrap().expect("a share secret");
    assert_eq!(s.exchange_share_code(&code, &p, "prod", host, None).await.unwrap(), None, "once");
    assert_eq!(s.session_caller(&secret, None).await.unwrap(), None, "no dashboard session");
    let vera = ShareCredentials { share: Some(secret.clone()), ..Default::default() };
    assert_eq!(s.share_access(&p, "prod", &vera).await.unwrap(), ShareAccess::Allowed);
    env.admin.remove_member(&p, "vera").await.unwrap();
    assert_eq!(s.share_access(&p, "prod", &vera).await.unwrap(), ShareAccess::Refused, "removed: at once");
    let code = developer.share_code(&p, "prod", host).await.unwrap();
    env.clock.advance(Duration::seconds(61));
    assert_eq!(s.exchange_share_code(&code, &p, "prod", host, None).await.unwrap(), None, "expired");
    // Hostile: one user asking for codes without end keeps only their 256 newest pending (the
    // table stays small whatever a signed-in member does); another's pending code stays.
    let admin = env.in_a_session(s, "admin", common::ADMIN_PASSWORD).await;
    let others = admin.share_code(&p, "dev", "web.dev.shop.localhost").await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..260 {
        codes.push(developer.share_code(&p, "prod", host).await.unwrap());
        env.clock.advance(Duration::milliseconds(10));
    }
    assert_eq!(s.exchange_share_code(&codes[3], &p, "prod", host, None).await.unwrap(), None, "dropped");
    assert!(s.exchange_share_code(&codes[4], &p, "prod", host, None).await.unwrap().is_some());
    assert!(s.exchange_share_code(&codes[259], &p, "prod", host, None).await.unwrap().is_some());
    assert!(s.exchange_share_code(&others, &p, "dev", "web.dev.shop.localhost", None).await.unwrap().is_some());
    for garbage in ["", "x", &"A".repeat(10_000)] {
        assert_eq!(s.exchange_share_code(garbage, &p, "prod", host, None).await.unwrap(), None);
    }
    // Hostile: a (leaked) API token asks for a share host's session, which would outlive it.
    let token = env.admin.create_token("leaked-for-sharing", None, None).await.unwrap();
    let by_token = s.acting(s.token_caller(&token.token, None).await.unwrap().unwrap());
    let refused = by_token.share_code(&p, "prod", host).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden, "{refused:?}");
}

// --- Artifacts (issue 11): uploaded builds.

/// A temp directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pergola-scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = pergola_core::artifacts::remove_tree(&self.0);
    }
}

/// One tar entry, written byte for byte (the `tar` crate's own setters refuse `..` and such).
#[derive(Clone, Copy)]
struct Entry<'a> {
    path: &'a str,
    kind: tar::EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry { path, kind: tar::EntryType::Regular, link: None, data, mode: 0o644 }
}

fn link<'a>(path: &'a str, kind: tar::EntryType, target: &'a str) -> Entry<'a> {
    Entry { path, kind, link: Some(target), data: b"", mode: 0o777 }
}

fn special(path: &str, kind: tar::EntryType) -> Entry<'_> {
    Entry { path, kind, link: None, data: b"", mode: 0o644 }
}

/// The tar stream of `entries` (uncompressed).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            if let Some(l) = e.link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_entry_type(e.kind);
        h.set_cksum();
        tar.append(&h, e.data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

const SMALL_MANIFEST: &str = "[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./bin/app\"\n";

/// `entries` after a valid `pergola.toml`, gzipped.
fn hostile(entries: &[Entry]) -> Vec<u8> {
    let mut all = vec![file("pergola.toml", SMALL_MANIFEST.as_bytes())];
    all.extend(entries.iter().copied());
    gzip(&tar_of(&all))
}

/// What is in `dir` (names), recursively, relative to it.
fn listing(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

async fn path_builds_are_only_for_administrators_when_turned_on(env: &Env) {
    let p = project(env, "Shop").await;
    let dir = std::env::temp_dir().display().to_string();
    let off = env.admin.register_build(&p, MANIFEST, &dir).await.unwrap_err();
    assert_eq!((off.kind, off.field.as_deref()), (ErrorKind::Validation, Some("workdir")));
    assert_eq!(off.message, pergola_core::services::PATH_BUILDS_OFF);
    let on = env.services.with_path_builds(true);
    let admin = env.as_admin(&on);
    let b = admin.register_build(&p, MANIFEST, &dir).await.unwrap();
    assert_eq!((b.number, b.digest, b.size, b.uploaded_by.as_deref()), (1, None, None, Some("admin")));
    assert_eq!(b.workdir, dir);
    assert!(admin.register_build(&p, MANIFEST, "relative/dir").await.unwrap_err().is_for("workdir"));
    assert!(admin.register_build(&p, MANIFEST, "/no/such/dir").await.unwrap_err().is_for("workdir"));
    let maintainer = env.member("mia", &p, Role::Maintainer).await;
    let maintainer = on.acting(maintainer.caller().clone());
    let e = maintainer.register_build(&p, MANIFEST, &dir).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");
    assert!(e.message.contains("archive"));
    // A maintainer uploads.
    assert_eq!(common::upload_manifest(&maintainer, &p, MANIFEST).await.unwrap().number, 2);
    assert_eq!(admin.builds(&p).await.unwrap().len(), 2);
}

async fn hostile_archives_are_refused_and_leave_nothing_behind(env: &Env) {
    use pergola_core::artifacts::{ArtifactLimits, Artifacts, Compression};
    use tar::EntryType;
    let p = project(env, "Shop").await;
    // Test-sized limits: 10 000 entries, 1 MiB unpacked, 256 KiB uploaded.
    let limits = ArtifactLimits { max_archive_bytes: 256 << 10, max_entries: 10_000, max_unpacked_bytes: 1 << 20 };
    let services = env.services.with_artifacts(Artifacts::new(&env.artifacts, limits));
    let s = env.as_admin(&services);
    let outside = std::env::temp_dir().join(format!("pergola-escape-{}", uuid::Uuid::new_v4().simple()));
    let absolute = outside.display().to_string();
    let many: Vec<String> = (0..10_001).map(|i| format!("many/{i}")).collect();
    let many: Vec<Entry> = many.iter().map(|n| file(n, b"")).collect();
    let zeros = vec![0u8; 8 << 20];
    let halves = vec![0u8; 600 << 10];
    let good = hostile(&[file("bin/app", b"#!/bin/sh\n")]);
    // Incompressible: 300 KiB of xorshift output.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..300 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, ErrorKind, &str)> = vec![
        ("traversal", hostile(&[file("../escaped", b"x")]), ErrorKind::Validation, "'../escaped' has a '..' component"),
        ("deep traversal", hostile(&[file("a/../../escaped", b"x")]), ErrorKind::Validation, "'..' component"),
        ("absolute", hostile(&[file(&absolute, b"x")]), ErrorKind::Validation, "is an absolute path"),
        (
            "symlink to /etc",
            hostile(&[link("link", EntryType::Symlink, "/etc")]),
            ErrorKind::Validation,
            "points outside",
        ),
        (
            "symlink climbing out",
            hostile(&[link("sub/link", EntryType::Symlink, "../../x")]),
            ErrorKind::Validation,
            "the symlink 'sub/link' points outside the archive ('../../x')",
        ),
        (
            "a file through a symlink",
            hostile(&[link("link", EntryType::Symlink, "."), file("link/x", b"x")]),
            ErrorKind::Validation,
            "goes through 'link', which is not a directory",
        ),
        (
            "hard link",
            hostile(&[link("hard", EntryType::Link, "pergola.toml")]),
            ErrorKind::Validation,
            "'hard' is a hard link",
        ),
        (
            "hard link outside",
            hostile(&[link("hard", EntryType::Link, "/etc/passwd")]),
            ErrorKind::Validation,
            "hard link",
        ),
        ("device", hostile(&[special("dev", EntryType::Char)]), ErrorKind::Validation, "'dev' is a device file"),
        ("block device", hostile(&[special("blk", EntryType::Block)]), ErrorKind::Validation, "device file"),
        ("fifo", hostile(&[special("pipe", EntryType::Fifo)]), ErrorKind::Validation, "'pipe' is a fifo"),
        ("too many entries", hostile(&many), ErrorKind::Validation, "more than 10000 entries"),
        ("bomb", hostile(&[file("zeros", &zeros)]), ErrorKind::Validation, "more than 1 MiB unpacked"),
        (
            "bomb in parts",
            hostile(&[file("a", &halves), file("b", &halves)]),
            ErrorKind::Validation,
            "more than 1 MiB unpacked",
        ),
        ("truncated", good[..good.len() / 2].to_vec(), ErrorKind::Validation, "truncated or corrupt"),
        ("truncated trailer", good[..good.len() - 4].to_vec(), ErrorKind::Validation, "truncated or corrupt"),
        ("not gzip", b"PK\x03\x04 this is a zip".to_vec(), ErrorKind::Validation, "truncated or corrupt"),
        ("empty", Vec::new(), ErrorKind::Validation, "truncated or corrupt"),
        ("an empty archive", gzip(&[]), ErrorKind::Validation, "has no pergola.toml"),
        (
            "no manifest",
            gzip(&tar_of(&[file("bin/app", b"#!/bin/sh\n")])),
            ErrorKind::Validation,
            "The archive has no pergola.toml at its root.",
        ),
        (
            "manifest not at the root",
            gzip(&tar_of(&[file("sub/pergola.toml", SMALL_MANIFEST.as_bytes())])),
            ErrorKind::Validation,
            "has no pergola.toml",
        ),
        (
            "manifest a symlink",
            gzip(&tar_of(&[
                file("real.toml", SMALL_MANIFEST.as_bytes()),
                link("pergola.toml", EntryType::Symlink, "real.toml"),
            ])),
            ErrorKind::Validation,
            "not a regular file",
        ),
        (
            "bad manifest",
            gzip(&tar_of(&[file("pergola.toml", b"[[component]]\nname = 1\n")])),
            ErrorKind::Validation,
            "Invalid manifest, line 2",
        ),
        ("twice", hostile(&[file("a", b"1"), file("a", b"2")]), ErrorKind::Validation, "'a' appears twice"),
        (
            "a long name held in memory",
            hostile(&[
                Entry { kind: EntryType::GNULongName, ..file("././@LongLink", &zeros[..1 << 20]) },
                file("x", b"1"),
            ]),
            ErrorKind::Validation,
            "an extended header of 1048576 bytes (at most 64 KiB)",
        ),
        (
            "a directory with a bomb for data",
            hostile(&[Entry { kind: EntryType::Directory, ..file("dir", &zeros) }]),
            ErrorKind::Validation,
            "more than 1 MiB unpacked",
        ),
        ("over the upload limit", gzip(&noise), ErrorKind::TooLarge, "larger than this server accepts (256 KiB"),
    ];
    for (what, bytes, kind, reason) in &cases {
        let e = s.upload_build(&p, Compression::Gzip, None, &bytes[..]).await.unwrap_err();
        assert_eq!(e.kind, *kind, "{what}: {e:?}");
        assert!(e.message.contains(reason), "{what}: {}", e.message);
    }
    // Announced too large: refused before anything is read.
    struct Unreadable;
    impl tokio::io::AsyncRead for Unreadable {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            panic!("an upload announced over the limit is never read")
        }
    }
    let e = s.upload_build(&p, Compression::Gzip, Some(1 << 30), Unreadable).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    // A zstd stream that is not one.
    let e = s.upload_build(&p, Compression::Zstd, None, &good[..]).await.unwrap_err();
    assert!(e.message.contains("truncated or corrupt"), "{e:?}");
    // Only who may register builds may upload; the body is not read.
    let viewer = env.member("vic", &p, Role::Viewer).await;
    let viewer = services.acting(viewer.caller().clone());
    assert_eq!(
        viewer.upload_build(&p, Compression::Gzip, None, Unreadable).await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    // Nothing left: no build, no artifact, no temp file; nothing written outside.
    assert!(s.builds(&p).await.unwrap().is_empty());
    let left: Vec<_> = listing(&env.artifacts).into_iter().filter(|f| f != "tmp" && f != "sha256").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!outside.exists());
    assert!(!env.artifacts.join("escaped").exists() && !env.artifacts.join("tmp/escaped").exists());
    // The limits are the test's: the good archive passes, and so does a long path (a GNU long
    // name entry, as tar writes one).
    let b = s.upload_build(&p, Compression::Gzip, Some(good.len() as u64), &good[..]).await.unwrap();
    assert_eq!(b.number, 1);
    let long = format!("{}/file", "deep".repeat(50));
    let bytes = common::archive(&[("pergola.toml", SMALL_MANIFEST.as_bytes(), 0o644), (&long, b"x", 0o644)]);
    let b = s.upload_build(&p, Compression::Gzip, None, &bytes[..]).await.unwrap();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&b.workdir).join(&long)).unwrap(), "x");
}

async fn a_good_archive_is_unpacked_read_only_and_stored_once(env: &Env) {
    use pergola_core::artifacts::Compression;
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let entries = [
        file("pergola.toml", SMALL_MANIFEST.as_bytes()),
        Entry { mode: 0o4755, ..file("./bin/app", b"#!/bin/sh\necho hi\n") },
        Entry { mode: 0o666, ..file("data/readme.txt", b"hello") },
        link("bin/current", tar::EntryType::Symlink, "app"),
        link("data/up", tar::EntryType::Symlink, "../bin"),
        Entry { mode: 0o777, ..special("empty", tar::EntryType::Directory) },
    ];
    let tar = tar_of(&entries);
    let bytes = gzip(&tar);
    let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let b1 = s.upload_build(&p, Compression::Gzip, None, &bytes[..]).await.unwrap();
    assert_eq!(b1.digest.as_deref(), Some(format!("sha256:{hex}").as_str()));
    assert_eq!((b1.size, b1.uploaded_by.as_deref(), b1.expired), (Some(bytes.len() as u64), Some("admin"), false));
    let unpacked = (SMALL_MANIFEST.len() + "#!/bin/sh\necho hi\n".len() + 5) as u64;
    assert_eq!(b1.unpacked_size, Some(unpacked));
    assert_eq!(b1.manifest, SMALL_MANIFEST);
    let dir = env.artifacts.join("sha256").join(&hex);
    assert_eq!(std::path::Path::new(&b1.workdir), dir);
    let mode = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/app"), 0o555, "executable kept, no setuid, read-only");
    assert_eq!(mode("data/readme.txt"), 0o444);
    assert_eq!((mode("bin"), mode("empty"), mode("")), (0o555, 0o555, 0o555));
    assert_eq!(std::fs::read_link(dir.join("bin/current")).unwrap(), std::path::Path::new("app"));
    assert_eq!(std::fs::read_to_string(dir.join("data/up/app")).unwrap(), "#!/bin/sh\necho hi\n");
    assert!(env.artifacts.join("sha256").join(format!("{hex}.tar.gz")).is_file());
    // The same bytes again: a new build, the same artifact.
    let b2 = s.upload_build(&p, Compression::Gzip, None, &bytes[..]).await.unwrap();
    assert_eq!((b2.number, &b2.digest, &b2.workdir, b2.unpacked_size), (2, &b1.digest, &b1.workdir, Some(unpacked)));
    // The same files compressed otherwise are other bytes: another artifact.
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let b3 = s.upload_build(&p, Compression::Zstd, None, &zst[..]).await.unwrap();
    assert_ne!(b3.digest, b1.digest);
    assert!(std::path::Path::new(&b3.workdir).join("bin/app").is_file());
    let stored = listing(&env.artifacts.join("sha256"));
    let top: Vec<_> = stored.iter().filter(|f| !f.contains('/')).collect();
    assert_eq!(top.len(), 4, "two trees and two archives: {top:?}");
    assert!(listing(&env.artifacts.join("tmp")).is_empty(), "no temp file left");
    let listed: Vec<_> = s.builds(&p).await.unwrap().iter().map(|b| (b.number, b.digest.clone())).collect();
    assert_eq!(listed[1].1, listed[2].1);
    // Deployed: the release runs that tree.
    s.create_stage(&p, "qa", StageType::Qa, None).await.unwrap();
    s.deploy(&p, "qa", 2).await.unwrap();
    assert_eq!(s.releases(&p, "qa").await.unwrap()[0].build_number, 2);
}

async fn unused_artifacts_are_deleted_after_the_retention(env: &Env) {
    use pergola_core::artifacts::Compression;
    let s = &env.admin;
    let p = project(env, "Shop").await;
    let a = hostile(&[file("a", b"a")]);
    let b = hostile(&[file("b", b"b")]);
    let p = p.as_str();
    let up = |bytes: &Vec<u8>| {
        let bytes = bytes.clone();
        async move { s.upload_build(p, Compression::Gzip, None, &bytes[..]).await.unwrap() }
    };
    let a1 = up(&a).await;
    let b2 = up(&b).await;
    s.create_stage(p, "qa", StageType::Qa, None).await.unwrap();
    s.deploy(p, "qa", b2.number).await.unwrap();
    // Just uploaded: kept, released or not.
    assert!(env.services.purge_artifacts().await.unwrap().is_empty());
    env.clock.advance(Duration::days(7) - Duration::seconds(1));
    assert!(env.services.purge_artifacts().await.unwrap().is_empty(), "not before the retention ran out");
    env.clock.advance(Duration::seconds(2));
    assert_eq!(env.services.purge_artifacts().await.unwrap(), [a1.digest.clone().unwrap()], "only the unused one");
    assert!(!std::path::Path::new(&a1.workdir).exists());
    assert!(std::path::Path::new(&b2.workdir).exists(), "a release keeps it");
    let builds = s.builds(p).await.unwrap();
    assert_eq!(builds.iter().map(|b| (b.number, b.expired)).collect::<Vec<_>>(), [(2, false), (1, true)]);
    let e = s.deploy(p, "qa", 1).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert!(e.message.contains("was deleted") && e.message.contains("Upload the build again"), "{}", e.message);
    // Uploaded again: the same bytes are back, and so is the build that had them.
    let a3 = up(&a).await;
    assert_eq!((a3.digest.clone(), a3.expired), (a1.digest.clone(), false));
    assert!(!s.builds(p).await.unwrap().iter().any(|b| b.expired));
    s.deploy(p, "qa", 1).await.unwrap();
    // An archived stage's releases keep their artifacts; its purge lets them go.
    s.delete_stage(p, "qa").await.unwrap();
    env.clock.advance(Duration::days(6));
    assert!(env.services.purge_artifacts().await.unwrap().is_empty());
    env.clock.advance(Duration::days(2));
    assert_eq!(env.services.purge_due().await.unwrap().len(), 1);
    let mut deleted = env.services.purge_artifacts().await.unwrap();
    deleted.sort();
    let mut expected = vec![a1.digest.unwrap(), b2.digest.unwrap()];
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(s.builds(p).await.unwrap().iter().all(|b| b.expired));
    assert!(listing(&env.artifacts.join("sha256")).is_empty(), "every file went");
    // Nothing to do twice.
    assert!(env.services.purge_artifacts().await.unwrap().is_empty());
}

/// Every stage of `query`, page by page (`limit` each), as the API's clients follow the cursor.
async fn all_pages(s: &Acting, p: &str, mut query: StageQuery, limit: u32) -> (Vec<String>, usize, u64) {
    query.limit = Some(limit);
    let (mut ids, mut pages) = (Vec::new(), 0);
    let matching = loop {
        let page = s.stage_page(p, &query).await.unwrap();
        assert!(page.stages.len() <= limit as usize);
        pages += 1;
        ids.extend(page.stages.iter().map(|s| s.id.clone()));
        match page.next {
            Some(next) => query.cursor = Some(pergola_domain::Cursor::decode(&next).unwrap()),
            None => break page.matching,
        }
        assert!(pages < 100, "the cursor moves on");
    };
    (ids, pages, matching)
}

fn stage_query(pairs: &[(&str, &str)]) -> StageQuery {
    let mut p = StageQueryParams::default();
    for (k, v) in pairs {
        let v = Some((*v).to_owned());
        match *k {
            "q" => p.q = v,
            "type" => p.stage_type = v,
            "status" => p.status = v,
            "sort" => p.sort = v,
            _ => unreachable!(),
        }
    }
    StageQuery::parse(&p).unwrap()
}

async fn stages_are_searched_filtered_sorted_and_paged(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Many").await;
    // 23 stages: names in reverse of creation order, types in turn, every fourth suspended;
    // three created in the same millisecond (ties are ordered by ID).
    let mut made = Vec::new();
    for i in 0..23u32 {
        if i < 20 {
            env.clock.advance(Duration::seconds(1));
        }
        let t = StageType::ALL[(i % 3) as usize];
        let name = format!("Stage {}", char::from(b'z' - i as u8));
        let stage = s.create_stage(&p, &name, t, Some(&format!("s{i:02}"))).await.unwrap();
        if i % 4 == 0 {
            s.suspend_stage(&p, &stage.id).await.unwrap();
        }
        made.push(s.get_stage(&p, &stage.id).await.unwrap());
    }
    s.create_stage(&p, "100% done", StageType::Dev, Some("percent")).await.unwrap();
    // Beyond ASCII: found in any case, sorted by the lower-cased name's characters (after "z").
    s.create_stage(&p, "École Stage", StageType::Qa, Some("ecole")).await.unwrap();
    s.create_stage(&p, "Archived Stage q", StageType::Dev, Some("gone")).await.unwrap();
    s.delete_stage(&p, "gone").await.unwrap();
    made.push(s.get_stage(&p, "percent").await.unwrap());
    made.push(s.get_stage(&p, "ecole").await.unwrap());
    let other = project(env, "Other").await;
    s.create_stage(&other, "Stage z", StageType::Dev, Some("s00")).await.unwrap();

    for (pairs, label) in [
        (vec![], "everything"),
        (vec![("q", "STAGE")], "search by name, any case"),
        (vec![("q", "s1")], "search by ID"),
        (vec![("q", "ÉCOLE st")], "search by name, any case, beyond ASCII"),
        (vec![("type", "qa,prod")], "two types"),
        (vec![("status", "suspended")], "suspended"),
        (vec![("q", "stage"), ("type", "dev"), ("status", "running")], "all at once"),
        (vec![("sort", "name")], "by name"),
        (vec![("sort", "updated"), ("type", "prod")], "recently changed"),
    ] {
        let query = stage_query(&pairs);
        let mut expected: Vec<&Stage> = made.iter().filter(|st| query.matches(st)).collect();
        match query.sort {
            StageSort::Created => expected.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id))),
            StageSort::Name => expected.sort_by(|a, b| (name_key(&a.name), &a.id).cmp(&(name_key(&b.name), &b.id))),
            StageSort::Updated => expected.sort_by(|a, b| (b.updated_at, &b.id).cmp(&(a.updated_at, &a.id))),
        }
        let expected: Vec<String> = expected.iter().map(|st| st.id.clone()).collect();
        assert!(!expected.is_empty(), "{label}: the case selects something");
        let (all, pages, matching) = all_pages(s, &p, query.clone(), 500).await;
        assert_eq!((all.clone(), pages), (expected.clone(), 1), "{label}");
        assert_eq!(matching, expected.len() as u64, "{label}");
        let (paged, pages, _) = all_pages(s, &p, query.clone(), 4).await;
        assert_eq!(paged, expected, "{label}: page by page");
        assert_eq!(pages, expected.len().div_ceil(4).max(1), "{label}: no empty last page");
        // Without a limit, every matching stage at once, counted.
        let whole = s.stage_page(&p, &query).await.unwrap();
        assert_eq!((whole.stages.len(), whole.matching), (expected.len(), expected.len() as u64), "{label}");
    }
    // LIKE's wildcards are searched for literally.
    let p = p.as_str();
    let ids = |pairs: &[(&str, &str)]| {
        let q = stage_query(pairs);
        async move { s.stage_page(p, &q).await.unwrap().stages.into_iter().map(|s| s.id).collect::<Vec<_>>() }
    };
    assert_eq!(ids(&[("q", "%")]).await, ["percent"]);
    assert_eq!(ids(&[("q", "0%")]).await, ["percent"]);
    assert!(ids(&[("q", "_")]).await.is_empty());
    assert!(ids(&[("q", "gone")]).await.is_empty(), "archived stages are not listed");
    // Renaming a stage makes it the most recently changed.
    env.clock.advance(Duration::seconds(5));
    s.update_stage(p, "s05", StageUpdate { name: Some("Renamed".into()), ..Default::default() }).await.unwrap();
    assert_eq!(ids(&[("sort", "updated")]).await[0], "s05");
    // A project that is not one's own is not found, whatever the query.
    let outsider = env.services.acting(env.user("stranger").await);
    assert_eq!(outsider.stage_page(p, &StageQuery::default()).await.unwrap_err().kind, ErrorKind::NotFound);
}

async fn a_page_never_repeats_or_skips_a_stage_while_others_change(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Busy").await;
    for i in 0..10 {
        env.clock.advance(Duration::seconds(1));
        s.create_stage(&p, &format!("Stage {i}"), StageType::Dev, Some(&format!("s{i}"))).await.unwrap();
    }
    let first = s.stage_page(&p, &StageQuery { limit: Some(4), ..Default::default() }).await.unwrap();
    let seen: Vec<_> = first.stages.iter().map(|s| s.id.clone()).collect();
    assert_eq!(seen, ["s0", "s1", "s2", "s3"]);
    assert_eq!(first.matching, 10);
    // Meanwhile: a stage of the first page is deleted, one of a later page too, one is added.
    s.delete_stage(&p, "s1").await.unwrap();
    s.delete_stage(&p, "s6").await.unwrap();
    env.clock.advance(Duration::seconds(1));
    s.create_stage(&p, "Late", StageType::Dev, Some("late")).await.unwrap();
    let cursor = Some(pergola_domain::Cursor::decode(first.next.as_deref().unwrap()).unwrap());
    let rest = s.stage_page(&p, &StageQuery { limit: Some(50), cursor, ..Default::default() }).await.unwrap();
    let rest: Vec<_> = rest.stages.iter().map(|s| s.id.clone()).collect();
    assert_eq!(rest, ["s4", "s5", "s7", "s8", "s9", "late"]);
}

async fn the_project_page_shows_one_page_with_current_releases(env: &Env) {
    let s = &env.admin;
    let p = project(env, "Big").await;
    for i in 0..(pergola_domain::PROJECT_PAGE_SIZE + 2) {
        env.clock.advance(Duration::seconds(1));
        s.create_stage(&p, &format!("Stage {i:03}"), StageType::Qa, Some(&format!("s{i:03}"))).await.unwrap();
    }
    common::upload_manifest(s, &p, MANIFEST).await.unwrap();
    common::upload_manifest(s, &p, &MANIFEST.replace("1.2.0", "1.3.0")).await.unwrap();
    s.deploy(&p, "s001", 1).await.unwrap();
    s.deploy(&p, "s001", 2).await.unwrap();
    s.deploy(&p, "s003", 1).await.unwrap();
    s.delete_stage(&p, "s002").await.unwrap();
    let overview = s.project_overview(&p, &StageQuery::default()).await.unwrap();
    assert_eq!(overview.stages.len(), pergola_domain::PROJECT_PAGE_SIZE as usize);
    assert_eq!((overview.total, overview.matching), (49, 49));
    assert!(overview.next.is_some());
    assert_eq!(overview.archived.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s002"]);
    let release = |id: &str| overview.summaries[id].release.as_ref().map(|r| (r.number, r.build_number));
    assert_eq!(release("s001"), Some((2, 2)), "the current release, not the first");
    assert_eq!(release("s003"), Some((1, 1)));
    assert_eq!(release("s000"), None);
    assert_eq!(overview.summaries.len(), overview.stages.len());
    // Asking for more than a page still gives one page; a search narrows, the total stays.
    let big = StageQuery { limit: Some(500), ..stage_query(&[("q", "stage 00")]) };
    let found = s.project_overview(&p, &big).await.unwrap();
    assert_eq!(
        found.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s000", "s001", "s003", "s004", "s005", "s006", "s007", "s008", "s009"]
    );
    assert_eq!((found.total, found.matching, found.next.as_deref()), (49, 9, None));
}
