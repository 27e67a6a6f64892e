#![recursion_limit = "256"]
//! The Pergola Stages server.
//!
//! Configuration: the environment variables of `pergola_core::config::SETTINGS` (the README's
//! table is checked against it), read once at start-up into a `ServerConfig`.
//!
//! Routes: the dashboard (pages and server functions), the REST API under `/api/v1`
//! (OpenAPI document at `/api/v1/openapi.json`), `/healthz`. Share-link hosts are proxied
//! ([`share`]); every other request passes `pergola_api::guard` first (its host, the origin of
//! a change, the body's size; security headers on the answer). The listener ([`serve`]) limits
//! how long a request's head may take and how many connections are served at once.
//!
//! Shutdown (SIGTERM, SIGINT or SIGHUP): the listener closes, requests in flight finish, and —
//! with the local runtime — every stage stops at once within its own grace period (the server
//! is then a child subreaper, `pergola_runtime::become_subreaper`); a cluster's stages go on
//! running ([`runtimes`]).

use app::{shell, App};
use axum::http::{header, HeaderValue};
use axum::{routing::get, Router};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes, ResponseOptions};
use pergola_api::guard::Guard;
use pergola_core::config::ServerConfig;
use pergola_core::{connect, purge::spawn_purge_task, SecretBox, Services, SystemClock};
use std::sync::Arc;

mod assets;
mod runtimes;
mod serve;
mod session;
mod share;
mod share_auth;
#[cfg(test)]
mod share_tests;

#[tokio::main]
async fn main() {
    serve::give_large_blocks_back();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    if let Err(message) = run().await {
        tracing::error!("{message}");
        eprintln!("pergola-server: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let conf = get_configuration(None).map_err(|e| format!("invalid Leptos configuration: {e}"))?;
    let mut leptos_options = conf.leptos_options;
    // A release build made with hashed file names left their hashes beside the binary: the
    // pages then link those names, which are cached for good.
    leptos_options.hash_files = leptos_options.hash_files || assets::hashed_names(&leptos_options.hash_file);
    let addr = leptos_options.site_addr;
    // The static files' brotli and gzip copies, written once (in the background: until they
    // are there, the files go out as they are), then — in a release build, whose files do not
    // change under it — held in memory.
    let site_root = std::path::PathBuf::from(leptos_options.site_root.as_ref());
    let static_memory = assets::Memory::default();
    {
        let (site_root, memory) = (site_root.clone(), static_memory.clone());
        let (pkg_dir, hashed) = (leptos_options.site_pkg_dir.to_string(), leptos_options.hash_files);
        tokio::task::spawn_blocking(move || {
            match assets::precompress(&site_root) {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "static files compressed"),
                Err(e) => {
                    tracing::warn!(error = %e, site = %site_root.display(), "cannot write compressed static files")
                }
            }
            if hashed {
                match memory.load(&site_root, &pkg_dir) {
                    Ok(n) => tracing::info!(files = n, "static files held in memory"),
                    Err(e) => tracing::warn!(error = %e, "cannot read the static files: they are read at each request"),
                }
            }
        });
    }

    let shutdown = shutdown_signal()?;
    let config = ServerConfig::from_env()?;
    // Absolute once and for all: the runtime hands paths under it to components, which run in
    // their build's directory, not in the server's.
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("cannot create data dir '{}': {e}", data_dir.display()))?;
    tracing::info!(data_dir = %data_dir.display(), "data directory");
    let database_url = config.database_url.clone();
    let store = connect(&database_url)
        .await
        .map_err(|e| format!("cannot open the database ({}): {e}", redact(&database_url)))?;
    tracing::info!(backend = store.backend(), "database ready");
    let grace = config.grace;
    let chosen = runtimes::Chosen::from_config(&config, &data_dir).await?;
    let share_domain = config.share_domain.clone();
    let share_port = config.share_port.unwrap_or(addr.port());
    // Secret configuration values are sealed at rest with the server's key.
    let secrets = match &config.secret_key {
        Some(hex) => SecretBox::from_hex(hex).map_err(|e| format!("{}: {e}", pergola_core::config::SECRET_KEY))?,
        None => SecretBox::from_key_file(&data_dir.join("secret.key")).map_err(|e| e.to_string())?,
    };
    // Uploaded builds: content-addressed under the data dir; what an interrupted upload left
    // in its temp directory goes.
    let artifacts = pergola_core::artifacts::Artifacts::new(
        data_dir.join("artifacts"),
        pergola_core::artifacts::ArtifactLimits { max_archive_bytes: config.max_artifact_bytes, ..Default::default() },
    );
    artifacts.clear_temp();
    if config.path_builds {
        tracing::warn!("PERGOLA_PATH_BUILDS=on: administrators may register builds by a directory on the server");
    }
    let services = Services::new(store, Arc::new(SystemClock))
        .with_secrets(secrets)
        .with_artifacts(artifacts)
        .with_artifact_retention(config.artifact_retention)
        .with_path_builds(config.path_builds)
        .with_cluster(config.cluster.clone())
        .with_runtime(chosen.runtime(), grace)
        .with_share_base(pergola_domain::share::ShareBase {
            domain: share_domain.clone(),
            port: share_port,
            secure: config.share_https(),
        });
    // One key for every server of the database (refused before anything runs otherwise).
    services.check_secret_key().await.map_err(|e| e.message)?;
    // Stages run as this server's processes: no other server may run them too (nor, before
    // this, reap what it runs).
    // On PostgreSQL, servers tell each other at once when stages change (share links).
    services.spawn_stage_notices().await.map_err(|e| e.message)?;
    let claims_runtime = services.claim_runtime().await.map_err(|e| e.message)?;
    services.renew_leases(claims_runtime).await;
    let lease_keeper = pergola_core::services::spawn_lease_keeper(services.clone(), claims_runtime);
    // What a killed server left running is stopped before anything else may start a stage;
    // then what should run, runs again (in the background: the dashboard answers meanwhile).
    chosen.clean_up_after_a_killed_server(grace).await;
    {
        let services = services.clone();
        tokio::spawn(async move {
            match services.reconcile().await {
                Ok(r) if r.failed > 0 => tracing::warn!(
                    started = r.started,
                    failed = r.failed,
                    "reconciled: some running stages could not be started again (see the errors above)"
                ),
                Ok(r) => tracing::info!(stages = r.started, "reconciled: running stages started"),
                Err(e) => tracing::error!(error = %e, "reconcile failed"),
            }
        });
    }

    spawn_purge_task(services.clone(), config.purge_interval);

    // Who may sign in: the administrator from the environment, or the setup code for the
    // first visitor (printed here, and nowhere else).
    let admin = config.admin.as_ref().map(|(user, password)| (user.as_str(), password.as_str()));
    match services.prepare_first_run(admin).await.map_err(|e| format!("cannot prepare the first run: {e}"))? {
        pergola_core::services::FirstRun::Ready => {}
        pergola_core::services::FirstRun::AdminCreated(user) => {
            tracing::info!(user, "administrator created from PERGOLA_ADMIN_USER; sign in at /login")
        }
        pergola_core::services::FirstRun::SetupCode(code) => {
            tracing::warn!(
                "no user yet: open the dashboard and type the setup code {code} to create the administrator"
            );
            eprintln!("\n  Pergola Stages has no user yet. Open http://{addr}/setup and type the setup code:\n\n      {code}\n");
        }
    }
    let session_cookie = pergola_api::auth::SessionCookie { secure: config.https() };
    let sessions = session::Sessions { services: services.clone(), cookie: session_cookie };

    let api = pergola_api::router(services.clone(), session_cookie);
    // Where share hosts send visitors to sign in: the public URL, else the listen address
    // (`localhost` for an unspecified one).
    let dashboard = config.public_url.clone().unwrap_or_else(|| {
        let host = if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
        let host = if addr.is_ipv6() && !addr.ip().is_unspecified() { format!("[{host}]") } else { host };
        format!("http://{host}:{}", addr.port())
    });
    let share = share::Share::new(services.clone(), share_domain, dashboard).with_limits(share::ProxyLimits::default());
    // The demo application, offered on first run when its binary is next to the server's.
    let demo = config
        .demo_dir
        .clone()
        .or_else(|| std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.to_path_buf())))
        .filter(|dir| dir.join("pergola-demo").is_file())
        .and_then(|dir| demo_build(&dir, &data_dir.join("demo")))
        .map(|dir| app::api::DemoApp { dir: dir.display().to_string() });
    match &demo {
        Some(d) => tracing::info!(dir = d.dir, "demo application available"),
        None => tracing::info!("demo application not found (cargo build --release -p pergola-demo-app)"),
    }
    let mut guard = Guard::new(addr, config.public_url.as_deref())
        .map_err(|e| format!("{} {e}", pergola_core::config::PUBLIC_URL))?;
    // The sign-in form's redirects may go on to a share host (through /share-auth).
    guard = guard.with_form_target(&share.form_target());
    if std::env::var("LEPTOS_WATCH").is_ok() {
        guard = guard.with_live_reload(leptos_options.reload_external_port.unwrap_or(leptos_options.reload_port));
    }
    tracing::info!(origins = ?guard.origins(), "the dashboard answers at");
    let context = {
        let guard = guard.clone();
        let services = services.clone();
        move || {
            provide_context(services.clone());
            if let Some(demo) = demo.clone() {
                provide_context(demo);
            }
            // A rendered page: leptos_axum has given it a fresh nonce, which its inline scripts
            // (the hydration bootstrap, serialized resources) carry; its policy names that nonce.
            // Server functions and static files get the guard's policy, without one.
            if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<ResponseOptions>()) {
                if let Ok(policy) = HeaderValue::from_str(&guard.content_security_policy(Some(&nonce))) {
                    response.insert_header(header::CONTENT_SECURITY_POLICY, policy);
                }
            }
        }
    };
    let routes = generate_route_list(App);
    let sign_in = Router::new()
        .route("/login", axum::routing::post(session::login))
        .route("/setup", axum::routing::post(session::setup))
        .route("/logout", axum::routing::post(session::logout))
        .route("/invite", axum::routing::post(session::invite))
        .with_state(sessions);
    let share_auth =
        Router::new().route(pergola_domain::share::SHARE_AUTH_PATH, get(share_auth::vouch)).with_state(share.clone());
    // CPU, memory and the proxy's figures, sampled every 10 s.
    pergola_core::services::spawn_metrics_sampler(services.clone());
    let static_files =
        assets::router(&site_root, &leptos_options.site_pkg_dir, leptos_options.hash_files, static_memory);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(services.clone()))
        .merge(sign_in)
        .merge(share_auth)
        .merge(api)
        .leptos_routes_with_context(&leptos_options, routes, context.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
        .layer(tower_http::compression::CompressionLayer::new())
        // A bug in one request answers 500 instead of taking the server down.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Signed out: pages send to /login (a fresh instance: /setup).
        .layer(axum::middleware::from_fn_with_state(services.clone(), session::require_sign_in))
        // Who is asking: a bearer token or the session cookie.
        .layer(axum::middleware::from_fn_with_state(
            (services.clone(), session_cookie),
            pergola_api::auth::authenticate,
        ))
        // Static files need no session: they are served before it is looked up.
        .merge(static_files)
        // Host allow-list, same origin for changes, body limit, security headers — for all but
        // the share links, which the next layer takes first.
        .layer(axum::middleware::from_fn_with_state(guard, pergola_api::guard::guard))
        .layer(axum::middleware::from_fn_with_state(share, share::route))
        .with_state(leptos_options);

    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("Pergola Stages listening on http://{addr}");
    let limits = serve::Limits {
        max_connections: serve::connections_for_open_files(serve::MAX_CONNECTIONS),
        trusted_proxies: config.trusted_proxies.clone().into(),
        ..serve::Limits::default()
    };
    // Live streams hold their connections: they may take half of them, never all.
    services.changes().limit_streams(limits.max_connections / 2);
    // At shutdown the live streams end first: the listener's drain does not wait for them.
    let live = services.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            // Another server took the runtime's claim (this one could not renew it in time).
            _ = lease_keeper => {}
        }
        live.close_live_streams();
    };
    serve::serve(listener, app, limits, shutdown).await;
    // No component of the local runtime outlives the server: every stage stops at once, each
    // within its own grace period; the runtime's sweep then ends anything left. A cluster's
    // stages go on running.
    if chosen.stages_stop_with_the_server() {
        let stopped = services.stop_all_stages().await;
        tracing::info!(stages = stopped, "stages stopped");
    }
    chosen.shutdown(grace).await;
    // What was sampled since the last 5-minute mark is kept in the day's charts.
    services.flush_metrics().await;
    // Another server may take the database's work at once.
    services.release_leases().await;
    tracing::info!("stopped");
    Ok(())
}

/// Whether this server should get requests: 200 while the database answers, 503 (with why)
/// while it does not or the server is stopping — for load balancers and readiness probes.
async fn readyz(axum::extract::State(services): axum::extract::State<Services>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match services.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.message).into_response(),
    }
}

/// The database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Completes at the first SIGINT, SIGTERM or SIGHUP (its terminal closed; there is no
/// configuration to reload, so it stops like SIGTERM rather than die at once). The handlers
/// are installed here, at once: a signal that comes while the server is still starting is not
/// lost (the server stops as soon as it listens).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = |kind: SignalKind, name: &str| signal(kind).map_err(|e| format!("cannot handle {name}: {e}"));
    let mut interrupt = handle(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = handle(SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = handle(SignalKind::hangup(), "SIGHUP")?;
    Ok(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        tracing::info!(signal, "shutting down");
    })
}

/// The demo's build directory: `<data dir>/demo`, holding only a copy of `pergola-demo` from
/// `dir` (where cargo puts it, next to everything else it builds), since a release copies its
/// build's whole directory.
fn demo_build(dir: &std::path::Path, into: &std::path::Path) -> Option<std::path::PathBuf> {
    if dir.canonicalize().ok() == into.canonicalize().ok() {
        return into.canonicalize().ok();
    }
    let copied =
        std::fs::create_dir_all(into).and_then(|()| std::fs::copy(dir.join("pergola-demo"), into.join("pergola-demo")));
    if let Err(e) = copied {
        tracing::warn!(dir = %into.display(), error = %e, "cannot copy the demo application");
        return None;
    }
    into.canonicalize().ok()
}
