//! Several servers on one database (SQLite and PostgreSQL): one of them does the background
//! work and a dead one's is taken over; a runtime that belongs to one server is claimed by it,
//! and a second server with such a runtime is refused with who holds it.

use async_trait::async_trait;
use pergola_core::services::{Replica, LEASE_TTL, PROXY_CACHE_TTL, RUNTIME_LEASE};
use pergola_core::testing::Env;
use pergola_core::{Clock, Runtime, RuntimeError, Services, StageKey, StageSpec, StopMode, StopReport};
use pergola_domain::runtime::{ComponentStatus, LogLine};
use pergola_domain::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

#[macro_use]
mod support;

all_backends!(
    one_server_of_several_does_the_background_work_and_a_dead_ones_is_taken_over,
    of_servers_racing_for_the_background_work_one_gets_it,
    a_runtime_of_one_server_is_claimed_and_a_second_server_refused,
    readiness_says_whether_the_database_answers,
    a_change_through_one_server_reaches_the_share_links_of_the_others_at_once,
    a_stage_turn_is_held_by_one_at_a_time_and_a_wait_too_long_gives_up,
    the_charts_add_up_what_every_server_sampled_outlive_a_restart_and_end_after_their_window,
    a_page_open_on_one_server_hears_what_is_done_through_another,
    a_share_code_minted_by_one_server_is_exchanged_by_another_once,
    a_server_with_another_secret_key_is_refused,
);

fn server(env: &Env, name: &str) -> Services {
    env.services.as_another_server(Replica { host: format!("node-{name}"), pid: 4242, pid_ns: 1, nonce: name.into() })
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap()
}

async fn one_server_of_several_does_the_background_work_and_a_dead_ones_is_taken_over(env: &Env) {
    let (a, b, c) = (server(env, "a"), server(env, "b"), server(env, "c"));
    for s in [&a, &b, &c] {
        assert!(s.renew_leases(false).await);
    }
    let doing = |all: &[&Services]| all.iter().filter(|s| s.runs_background_work()).count();
    assert!(a.runs_background_work(), "the first to ask");
    assert_eq!(doing(&[&a, &b, &c]), 1);
    // While it renews, it keeps it.
    for _ in 0..5 {
        env.clock.advance(chrono(LEASE_TTL / 2));
        for s in [&a, &b, &c] {
            s.renew_leases(false).await;
        }
        assert!(a.runs_background_work());
        assert_eq!(doing(&[&a, &b, &c]), 1);
    }
    // A dies (renews no more): once its lease has run out, one other takes the work.
    env.clock.advance(chrono(LEASE_TTL / 2));
    b.renew_leases(false).await;
    c.renew_leases(false).await;
    assert_eq!(doing(&[&b, &c]), 0, "not before the lease runs out");
    env.clock.advance(chrono(LEASE_TTL / 2) + chrono::Duration::seconds(1));
    b.renew_leases(false).await;
    c.renew_leases(false).await;
    assert_eq!(doing(&[&b, &c]), 1);
    // A was only paused: back, it learns that it no longer does the work.
    a.renew_leases(false).await;
    assert!(!a.runs_background_work());
    assert_eq!(doing(&[&a, &b, &c]), 1);
    // The holder stops: the next to ask takes over at once, without waiting for the lease.
    let (holder, other) = if b.runs_background_work() { (&b, &c) } else { (&c, &b) };
    holder.release_leases().await;
    assert!(!holder.runs_background_work());
    other.renew_leases(false).await;
    assert!(other.runs_background_work());
}

async fn of_servers_racing_for_the_background_work_one_gets_it(env: &Env) {
    for round in 0..5 {
        let servers: Vec<_> = (0..6).map(|n| server(env, &format!("r{round}-{n}"))).collect();
        let tasks: Vec<_> = servers
            .iter()
            .cloned()
            .map(|s| {
                tokio::spawn(async move {
                    s.renew_leases(false).await;
                    s.runs_background_work()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}");
        // Everyone gone: the next round starts with a free lease.
        env.clock.advance(chrono(LEASE_TTL) + chrono::Duration::seconds(1));
    }
}

/// A runtime whose stages are one server's own processes, as the local runtime's are.
struct OwnProcesses;

#[async_trait]
impl Runtime for OwnProcesses {
    async fn start(&self, _: StageSpec, _: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn stop(&self, _: &StageKey, _: Duration, _: StopMode) -> StopReport {
        StopReport::default()
    }
    async fn forget(&self, _: &StageKey) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn status(&self, _: &StageKey) -> Vec<ComponentStatus> {
        Vec::new()
    }
    fn logs(&self, _: &StageKey, _: &str) -> Vec<LogLine> {
        Vec::new()
    }
}

async fn a_runtime_of_one_server_is_claimed_and_a_second_server_refused(env: &Env) {
    let sqlite = env.services.store().backend() == "sqlite";
    // A runtime every server reaches needs no claim — but SQLite has one server, always.
    let (a, b) = (server(env, "a"), server(env, "b"));
    assert_eq!(a.claim_runtime().await.unwrap(), sqlite);
    let second = b.claim_runtime().await;
    if !sqlite {
        assert!(!second.unwrap(), "nothing to claim");
    }
    a.release_leases().await;

    let own = |name: &str| server(env, name).with_runtime(Arc::new(OwnProcesses), Duration::from_secs(1));
    let (a, b) = (own("a"), own("b"));
    assert!(a.claim_runtime().await.unwrap());
    assert!(a.claim_runtime().await.unwrap(), "claiming again is keeping it");
    let refused = b.claim_runtime().await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidState);
    assert!(refused.message.contains("node-a pid 4242 ns 1 (a)"), "names the holder: {}", refused.message);
    assert!(refused.message.contains("Stop that server first"), "{}", refused.message);
    // Still refused while A renews; A keeps its claim.
    env.clock.advance(chrono(LEASE_TTL / 2));
    assert!(a.renew_leases(true).await);
    env.clock.advance(chrono(LEASE_TTL / 2));
    assert!(b.claim_runtime().await.is_err());
    // A killed: after the lease runs out, B claims it, and A — back — learns it lost it.
    env.clock.advance(chrono(LEASE_TTL) + chrono::Duration::seconds(1));
    assert!(b.claim_runtime().await.unwrap());
    assert!(!a.renew_leases(true).await, "A must stop running stages");
    // B stops: a new server claims it at once.
    b.release_leases().await;
    assert!(own("c").claim_runtime().await.unwrap());

    // A server of this machine that was killed (its process is gone) does not hold up its
    // successor until its lease runs out.
    let c = own("c");
    c.release_leases().await;
    let here = Replica::this_process();
    let dead = Replica { pid: u32::MAX - 7, nonce: "dead".into(), ..here.clone() };
    let killed = env.services.as_another_server(dead).with_runtime(Arc::new(OwnProcesses), Duration::from_secs(1));
    assert!(killed.claim_runtime().await.unwrap());
    let successor = env.services.as_another_server(here).with_runtime(Arc::new(OwnProcesses), Duration::from_secs(1));
    assert!(successor.claim_runtime().await.unwrap(), "taken over at once");
    let (holder, until) = env.services.store().lease(RUNTIME_LEASE).await.unwrap().unwrap();
    assert_eq!(holder, successor.replica().holder());
    assert!(until > env.clock.now());
}

async fn readiness_says_whether_the_database_answers(env: &Env) {
    env.services.ready().await.unwrap();
    env.services.close_live_streams();
    let stopping = env.services.ready().await.unwrap_err();
    assert!(stopping.message.contains("stopping"), "{}", stopping.message);
}

async fn a_change_through_one_server_reaches_the_share_links_of_the_others_at_once(env: &Env) {
    let (a, b) = (server(env, "a"), server(env, "b"));
    a.spawn_stage_notices().await.unwrap();
    b.spawn_stage_notices().await.unwrap();
    let admin = env.as_admin(&a);
    admin.create_project("Shop", Some("shop")).await.unwrap();
    admin.create_stage("shop", "QA", pergola_domain::StageType::Qa, Some("qa")).await.unwrap();
    // B's share-link proxy reads the stage: from now on it may answer from its cache for 1 s.
    let (stage, _) = b.stage_with_components("shop", "qa").await.unwrap();
    assert_eq!(stage.status, pergola_domain::StageStatus::Running);
    let read = std::time::Instant::now();
    admin.suspend_stage("shop", "qa").await.unwrap();
    loop {
        let (stage, _) = b.stage_with_components("shop", "qa").await.unwrap();
        if stage.status != pergola_domain::StageStatus::Running {
            break;
        }
        assert!(read.elapsed() < PROXY_CACHE_TTL * 2, "B never saw the suspend");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = read.elapsed();
    if env.services.store().backend() == "postgres" {
        // Told through LISTEN/NOTIFY, not found when the cache ran out.
        assert!(seen < PROXY_CACHE_TTL / 2, "B saw the suspend after {seen:?}");
    }
}

async fn a_stage_turn_is_held_by_one_at_a_time_and_a_wait_too_long_gives_up(env: &Env) {
    let store = env.services.store();
    let wait = Duration::from_millis(300);
    let first = store.stage_turn("shop", "qa", wait).await.unwrap();
    if store.backend() == "sqlite" {
        // One server: nobody to take turns with.
        let again = tokio::time::timeout(Duration::from_secs(1), store.stage_turn("shop", "qa", wait)).await;
        assert!(again.unwrap().is_ok());
        first.release().await;
        return;
    }
    // Another stage's turn is free.
    let other = store.stage_turn("shop", "dev", wait).await.unwrap();
    other.release().await;
    // The same stage's is not: the wait runs out, and says so.
    let asked = std::time::Instant::now();
    let busy = store.stage_turn("shop", "qa", wait).await;
    assert!(matches!(busy, Err(pergola_core::store::StoreError::Busy)), "{:?}", busy.err());
    assert!(asked.elapsed() >= wait, "it waited");
    // Once released, the next one gets it — also one that was waiting meanwhile.
    let waiting = tokio::spawn({
        let services = env.services.clone();
        async move { services.store().stage_turn("shop", "qa", Duration::from_secs(10)).await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    first.release().await;
    assert!(tokio::time::timeout(Duration::from_secs(2), waiting).await.unwrap().unwrap());
}

async fn the_charts_add_up_what_every_server_sampled_outlive_a_restart_and_end_after_their_window(env: &Env) {
    use pergola_domain::metrics::{MetricPoint, MetricsWindow};
    let shop = env.admin.create_project("Shop", Some("shop")).await.unwrap().id;
    env.admin.create_stage(&shop, "QA", pergola_domain::StageType::Qa, Some("qa")).await.unwrap();
    // Just after one of the clock's 5-minute marks (where summaries end).
    let past_mark = env.clock.now().timestamp().rem_euclid(300);
    env.clock.advance(chrono::Duration::seconds(300 - past_mark + 1));
    let (a, b) = (server(env, "a"), server(env, "b"));
    a.sample_metrics().await;
    b.sample_metrics().await;
    // Each server proxied some of the requests to the stage's web service.
    env.clock.advance(chrono::Duration::seconds(10));
    for _ in 0..3 {
        a.record_proxied(&shop, "qa", "web", 200, 10.0);
    }
    b.record_proxied(&shop, "qa", "web", 502, 50.0);
    a.sample_metrics().await;
    b.sample_metrics().await;
    // A server that started since (nothing sampled in its memory) charts them all.
    let c = server(env, "c");
    let charts = |window| {
        let (c, shop) = (env.as_admin(&c), shop.clone());
        async move { c.stage_metrics(&shop, "qa", window).await.unwrap().components }
    };
    let totals = |points: &[MetricPoint]| {
        (points.iter().map(|p| p.requests).sum::<u64>(), points.iter().map(|p| p.errors).sum::<u64>())
    };
    let hour = charts(MetricsWindow::Hour).await;
    assert_eq!(hour.len(), 1);
    assert_eq!(hour[0].component, "web");
    assert_eq!(totals(&hour[0].points), (4, 1), "{:?}", hour[0].points);
    let latencies: Vec<f64> = hour[0].points.iter().filter_map(|p| p.p50_ms).collect();
    assert_eq!(latencies, vec![20.0], "weighted by each server's requests: (3 × 10 + 50) / 4");
    assert_eq!(totals(&charts(MetricsWindow::Day).await[0].points), (4, 1));

    // B is restarted: stopping, it summarizes what it sampled; the new B goes on. Past the next
    // mark, A summarizes its points; both sample more after it.
    env.clock.advance(chrono::Duration::seconds(10));
    b.flush_metrics().await;
    let b = server(env, "b-restarted");
    env.clock.advance(chrono::Duration::seconds(280));
    for s in [&a, &b] {
        s.record_proxied(&shop, "qa", "web", 200, 10.0);
        s.sample_metrics().await;
    }
    env.clock.advance(chrono::Duration::seconds(10));
    a.record_proxied(&shop, "qa", "web", 200, 10.0);
    a.sample_metrics().await;
    // The day's chart: the summaries (A's at the mark, the old B's at its stop), then each
    // server's 10-second points after its own last summary — every request once.
    let day = charts(MetricsWindow::Day).await;
    assert_eq!(totals(&day[0].points), (7, 1), "{:?}", day[0].points);
    assert!(day[0].points.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(totals(&charts(MetricsWindow::Hour).await[0].points), (7, 1));

    // An hour later the 10-second points are gone from the database, the summaries stay a day.
    env.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(c.prune_metrics().await.unwrap(), 5);
    assert!(charts(MetricsWindow::Hour).await.is_empty());
    assert_eq!(totals(&charts(MetricsWindow::Day).await[0].points), (4, 1), "what was summarized");
    env.clock.advance(chrono::Duration::hours(24));
    assert_eq!(c.prune_metrics().await.unwrap(), 2);
    assert!(charts(MetricsWindow::Day).await.is_empty());
}

async fn a_page_open_on_one_server_hears_what_is_done_through_another(env: &Env) {
    use pergola_core::services::Note;
    let (a, b) = (server(env, "a"), server(env, "b"));
    a.spawn_stage_notices().await.unwrap();
    b.spawn_stage_notices().await.unwrap();
    let shop = env.as_admin(&a).create_project("Shop", None).await.unwrap().id;
    env.as_admin(&a).create_stage(&shop, "QA", pergola_domain::StageType::Qa, Some("qa")).await.unwrap();
    env.member("vic", &shop, pergola_domain::Role::Viewer).await;
    // Vic's tab is served by B.
    let session = b.sign_in_session("vic", pergola_core::testing::USER_PASSWORD, "127.0.0.1").await.unwrap();
    let vic = b.acting(b.session_caller(&session.secret, None).await.unwrap().unwrap());
    let mut tab = vic.watch(&shop, Some("qa")).await.unwrap();
    assert_eq!(heard(&mut tab).await, Some(Note::Ready));
    if env.services.store().backend() == "sqlite" {
        // One server per SQLite file: nothing to hear from another.
        return;
    }
    // A suspend through A: B's page hears it at once.
    env.as_admin(&a).suspend_stage(&shop, "qa").await.unwrap();
    assert_eq!(heard_within(&mut tab, Duration::from_secs(5)).await, Some(Note::Changed));
    while heard(&mut tab).await.is_some() {}
    // New metrics sampled by A.
    a.record_proxied(&shop, "qa", "web", 200, 1.0);
    a.sample_metrics().await;
    assert_eq!(heard_within(&mut tab, Duration::from_secs(5)).await, Some(Note::Metrics));
    // The servers' connections that listen are cut (a network blip, a database restart):
    // what was published meanwhile is lost, so the page reads everything again — and changes
    // reach it again once the connection is back.
    while heard(&mut tab).await.is_some() {}
    let database = env.postgres_database().unwrap();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&pergola_core::testing::postgres_admin_url()).await.unwrap();
    let cut = listening(&mut admin, database).await;
    assert_eq!(cut.len(), 2, "A's and B's listening connections");
    for pid in &cut {
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut admin).await.unwrap();
    }
    assert_eq!(heard_within(&mut tab, Duration::from_secs(5)).await, Some(Note::Changed));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listening(&mut admin, database).await.iter().filter(|pid| !cut.contains(pid)).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "the servers listen again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.as_admin(&a).resume_stage(&shop, "qa").await.unwrap();
    assert_eq!(heard_within(&mut tab, Duration::from_secs(5)).await, Some(Note::Changed));
    while heard(&mut tab).await.is_some() {}
    // Vic signed out through A: the tab on B ends at once (not at its next periodic check).
    a.end_session(&session.secret).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(1), async { while tab.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the stream on B ended at once");
}

/// A replica given another key (a data directory of its own, a mistyped PERGOLA_SECRET_KEY)
/// would open no stage's secret and seal values the others cannot open: it is refused.
async fn a_server_with_another_secret_key_is_refused(env: &Env) {
    let (a, b) = (server(env, "a"), server(env, "b"));
    // Secrets sealed before any server recorded its key (an instance upgraded to this check):
    // a first server whose key opens none of them is refused, and records nothing.
    let admin = env.as_admin(&a);
    admin.create_project("Shop", Some("shop")).await.unwrap();
    admin.create_stage("shop", "QA", pergola_domain::StageType::Qa, Some("qa")).await.unwrap();
    admin.set_config("shop", "qa", "API_TOKEN", "s3cr3t", true).await.unwrap();
    let lost = server(env, "lost").with_secrets(pergola_core::SecretBox::new([7; 32]));
    let refused = lost.check_secret_key().await.unwrap_err();
    assert!(refused.message.contains("opens none of the secrets"), "{}", refused.message);
    assert_eq!(env.services.store().setting("key-check").await.unwrap(), None, "nothing recorded");
    a.check_secret_key().await.unwrap();
    b.check_secret_key().await.unwrap();
    a.check_secret_key().await.unwrap();
    let stranger = server(env, "c").with_secrets(pergola_core::SecretBox::new([9; 32]));
    let refused = stranger.check_secret_key().await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidState);
    assert!(refused.message.contains("PERGOLA_SECRET_KEY"), "{}", refused.message);
    a.check_secret_key().await.unwrap();
}

async fn a_share_code_minted_by_one_server_is_exchanged_by_another_once(env: &Env) {
    // Behind a load balancer, /share-auth and the share host's /.pergola/auth may be answered
    // by different servers.
    let (a, b) = (server(env, "a"), server(env, "b"));
    let admin = env.as_admin(&a);
    admin.create_project("Shop", Some("shop")).await.unwrap();
    admin.create_stage("shop", "QA", pergola_domain::StageType::Qa, Some("qa")).await.unwrap();
    let host = "web.qa.shop.localhost";
    let admin = env.in_a_session(&a, "admin", pergola_core::testing::ADMIN_PASSWORD).await;
    let code = admin.share_code("shop", "qa", host).await.unwrap();
    let secret = b.exchange_share_code(&code, "shop", "qa", host, None).await.unwrap().expect("exchanged on B");
    assert_eq!(a.exchange_share_code(&code, "shop", "qa", host, None).await.unwrap(), None, "once, on any server");
    assert_eq!(b.exchange_share_code(&code, "shop", "qa", host, None).await.unwrap(), None);
    let visitor = pergola_core::services::ShareCredentials { share: Some(secret), ..Default::default() };
    for s in [&a, &b] {
        assert_eq!(s.share_access("shop", "qa", &visitor).await.unwrap(), pergola_core::services::ShareAccess::Allowed);
    }
    // Two servers racing to exchange one code: one wins.
    let code = admin.share_code("shop", "qa", host).await.unwrap();
    let (x, y) = tokio::join!(
        a.exchange_share_code(&code, "shop", "qa", host, None),
        b.exchange_share_code(&code, "shop", "qa", host, None)
    );
    assert_eq!([x.unwrap().is_some(), y.unwrap().is_some()].iter().filter(|won| **won).count(), 1);
}

/// What a live stream says within a second (`None`: nothing).
async fn heard(watch: &mut pergola_core::services::Watch) -> Option<pergola_core::services::Note> {
    heard_within(watch, Duration::from_secs(1)).await
}

async fn heard_within(
    watch: &mut pergola_core::services::Watch,
    within: Duration,
) -> Option<pergola_core::services::Note> {
    tokio::time::timeout(within, watch.next()).await.ok().flatten()
}

/// The server connections of `database` that listen for the other servers' notices.
async fn listening(admin: &mut sqlx::PgConnection, database: &str) -> Vec<i32> {
    let query = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%LISTEN%'";
    sqlx::query_scalar(query).bind(database).fetch_all(admin).await.unwrap()
}
