//! The share-link proxy against hostile visitors: a real component on 127.0.0.1, the proxy and
//! the dashboard's `/share-auth` driven with `oneshot`.

use crate::share::{self, ProxyLimits, Share};
use crate::share_auth;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pergola_core::services::Acting;
use pergola_core::testing::{sqlite_env, Env, USER_PASSWORD};
use pergola_core::{Runtime, RuntimeError, Services, StageKey, StageSpec, StopMode, StopReport};
use pergola_domain::runtime::{ComponentState, ComponentStatus, LogLine};
use pergola_domain::share::ShareBase;
use pergola_domain::{ComponentKind, Role, StageType, Visibility};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const DASHBOARD: &str = "http://localhost:3000";
const QA: &str = "web.qa.shop.localhost:3000";
const DEV: &str = "web.dev.shop.localhost:3000";

/// Every stage runs the service `web` on `port`.
struct Fake {
    port: u16,
}

#[async_trait]
impl Runtime for Fake {
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
        vec![ComponentStatus::new("web", ComponentKind::Service, Some(self.port), ComponentState::Running)]
    }
    fn logs(&self, _: &StageKey, _: &str) -> Vec<LogLine> {
        Vec::new()
    }
}

/// The component: answers `component saw cookies: …` and tries to set cookies it must not.
async fn upstream() -> u16 {
    let app = Router::new().fallback(|req: Request<Body>| async move {
        let cookies = req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let seen = |name: &str| {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        let forwarded = format!("{:?} {:?} {:?}", seen("x-forwarded-for"), seen("x-real-ip"), seen("forwarded"));
        let mut response = format!("component saw cookies: [{cookies}] forwarded: {forwarded}").into_response();
        for cookie in [
            "app=1; Path=/",
            "wide=1; Domain=localhost; Path=/",
            "wide2=1; path=/; DOMAIN=.localhost",
            "pergola_session=stolen; Path=/",
            "__Host-pergola_session=planted; Path=/; Secure",
            "pergola_share=forged",
            "Pergola_Guest=forged",
        ] {
            response.headers_mut().append(header::SET_COOKIE, cookie.parse().unwrap());
        }
        // Asks shared caches to keep the page, and browsers to forget the whole site's cookies.
        response.headers_mut().insert(header::CACHE_CONTROL, "public, max-age=600, s-maxage=600".parse().unwrap());
        response.headers_mut().insert("clear-site-data", "\"cookies\"".parse().unwrap());
        response
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

struct World {
    env: Env,
    app: Router,
    /// The administrator, on the services with the component running.
    admin: Acting,
    /// How the dashboard names and reads its session cookie (`__Host-` behind https).
    session_cookie: pergola_api::auth::SessionCookie,
}

async fn world() -> World {
    world_with(upstream().await, ProxyLimits::default()).await
}

/// The world with the component on `port` and the proxy's `limits`.
async fn world_with(port: u16, limits: ProxyLimits) -> World {
    world_on(port, limits, false).await
}

/// The same, its share links served over https (`secure`) or not.
async fn world_on(port: u16, limits: ProxyLimits, secure: bool) -> World {
    let env = sqlite_env().await;
    let services: Services = env
        .services
        .with_runtime(Arc::new(Fake { port }), Duration::from_secs(1))
        .with_share_base(ShareBase { domain: "localhost".into(), port: 3000, secure });
    env.admin.create_project("Shop", Some("shop")).await.unwrap();
    env.admin.create_stage("shop", "qa", StageType::Qa, None).await.unwrap();
    env.admin.create_stage("shop", "dev", StageType::Dev, None).await.unwrap();
    let share = Share::new(services.clone(), "localhost".into(), DASHBOARD.into()).with_limits(limits);
    let session_cookie = pergola_api::auth::SessionCookie { secure };
    // The sign-in form's redirect chain ends on a share host: the dashboard's CSP allows it.
    let scheme = if secure { "https" } else { "http" };
    assert_eq!(share.form_target(), format!("{scheme}://*.localhost:3000"));
    let app = Router::new()
        .route("/share-auth", get(share_auth::vouch))
        .with_state(share.clone())
        .fallback(|| async { "the dashboard" })
        .layer(axum::middleware::from_fn_with_state(services.clone(), crate::session::require_sign_in))
        .layer(axum::middleware::from_fn_with_state(
            (services.clone(), session_cookie),
            pergola_api::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(share, share::route));
    let admin = env.as_admin(&services);
    World { env, app, admin, session_cookie }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

impl World {
    async fn send(&self, method: &str, host: &str, path: &str, cookies: &[(&str, &str)]) -> Answer {
        self.send_with(method, host, path, cookies, &[]).await
    }

    /// A request with `headers` besides the host and the cookies.
    async fn send_with(
        &self,
        method: &str,
        host: &str,
        path: &str,
        cookies: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path).header(header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if !cookies.is_empty() {
            let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            req = req.header(header::COOKIE, cookie);
        }
        let response: Response = self.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let location =
            response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let set_cookies =
            response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        Answer { status, headers, location, set_cookies, body: String::from_utf8_lossy(&body).into_owned() }
    }

    async fn get(&self, host: &str, path: &str, cookies: &[(&str, &str)]) -> Answer {
        self.send("GET", host, path, cookies).await
    }

    /// A dashboard session of `username`.
    async fn session(&self, username: &str, password: &str) -> String {
        self.env.services.sign_in_session(username, password, "127.0.0.1").await.unwrap().secret
    }

    async fn member(&self, username: &str, role: Role) -> (Acting, String) {
        let acting = self.env.member(username, "shop", role).await;
        (acting, self.session(username, USER_PASSWORD).await)
    }

    /// Steps 1 and 2 of the hand-off: the share host sends to `/share-auth`, which (signed in
    /// with `session`) answers with the share host's `/.pergola/auth?code=…` URL.
    async fn code_url(&self, host: &str, path: &str, session: &str) -> Answer {
        let first = self.get(host, path, &[]).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        let dashboard_path = first.location.strip_prefix(DASHBOARD).expect("to the dashboard").to_owned();
        assert!(dashboard_path.starts_with("/share-auth?to="), "{dashboard_path}");
        self.get("localhost:3000", &dashboard_path, &[(self.session_cookie.name(), session)]).await
    }

    /// The whole hand-off: the `pergola_share` cookie's value.
    async fn hand_off(&self, host: &str, session: &str) -> String {
        let vouched = self.code_url(host, "/page?x=1", session).await;
        assert_eq!(vouched.status, StatusCode::SEE_OTHER, "{}", vouched.body);
        let prefix = format!("http://{host}/.pergola/auth?code=");
        let path = vouched.location.strip_prefix(&format!("http://{host}")).expect(&prefix).to_owned();
        let done = self.get(host, &path, &[]).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location, "/page?x=1");
        share_cookie(&done.set_cookies).expect("the share cookie")
    }
}

fn share_cookie(set_cookies: &[String]) -> Option<String> {
    let cookie = set_cookies.iter().find(|c| c.starts_with("pergola_share="))?;
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain"), "host-only: {cookie}");
    Some(cookie.trim_start_matches("pergola_share=").split(';').next().unwrap().to_owned())
}

fn reached(answer: &Answer) -> bool {
    answer.body.contains("component saw cookies")
}

#[tokio::test]
async fn a_members_only_stage_never_reaches_the_component_without_a_valid_share_cookie() {
    let w = world().await;
    let session = w.session("admin", pergola_core::testing::ADMIN_PASSWORD).await;
    // No cookie: to the dashboard's hand-off, with the whole share URL.
    let a = w.get(QA, "/orders?id=7", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location, "http://localhost:3000/share-auth?to=http%3A//web.qa.shop.localhost%3A3000/orders%3Fid%3D7");
    assert!(!reached(&a));
    // The dashboard's own session cookie is no key to a share host, nor forged share cookies.
    for cookies in [
        vec![("pergola_session", session.as_str())],
        vec![("pergola_share", session.as_str())],
        vec![("pergola_share", "pgs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        vec![("pergola_guest", "pgg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
    ] {
        let a = w.get(QA, "/", &cookies).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{cookies:?}");
        assert!(!reached(&a));
    }
    // Not a page request: 401 from the proxy.
    for method in ["POST", "PUT", "DELETE"] {
        let a = w.send(method, QA, "/api", &[]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method}");
        assert!(!reached(&a));
    }
    // The proxy's own paths are never forwarded.
    let a = w.get(QA, "/.pergola/anything", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!reached(&a));
    w.env.cleanup().await;
}

#[tokio::test]
async fn the_hand_off_lets_a_member_in_and_the_proxy_keeps_pergolas_cookies_to_itself() {
    let w = world().await;
    let (_viewer, session) = w.member("vera", Role::Viewer).await;
    let secret = w.hand_off(QA, &session).await;
    assert_ne!(secret, session, "a secret of its own");
    let a = w
        .get(
            QA,
            "/",
            &[
                ("app", "kept"),
                ("pergola_share", &secret),
                ("pergola_session", &session),
                ("__Host-pergola_session", &session),
                ("pergola_guest", "x"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.starts_with("component saw cookies: [app=kept] forwarded"), "{}", a.body);
    assert_eq!(a.set_cookies, vec!["app=1; Path=/".to_owned()], "no Domain cookies, no pergola_* ones");
    // The share cookie does not sign in to the dashboard.
    let d = w.get("localhost:3000", "/projects/shop", &[("pergola_session", &secret)]).await;
    assert_eq!(d.status, StatusCode::SEE_OTHER);
    assert!(d.location.starts_with("/login?next="), "{}", d.location);
    // Signed out at the dashboard: /share-auth goes through the sign-in page and comes back.
    let d = w.get("localhost:3000", "/share-auth?to=http%3A//web.qa.shop.localhost%3A3000/", &[]).await;
    assert_eq!(d.status, StatusCode::SEE_OTHER);
    assert!(d.location.starts_with("/login?next=/share-auth%3Fto%3D"), "{}", d.location);
    w.env.cleanup().await;
}

/// A request of a browser: its method, headers, and what it is.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn another_hosts_page_cannot_act_with_a_visitors_share_cookie() {
    let w = world().await;
    let (_viewer, session) = w.member("vera", Role::Viewer).await;
    let secret = w.hand_off(QA, &session).await;
    let cookies = [("pergola_share", secret.as_str())];
    // Every share host is of one site: the browser sends the cookie with what another stage's
    // page (here `dev`'s) makes it send to `qa` — it must not count.
    let dev_page = "http://web.dev.shop.localhost:3000";
    let elsewhere: [Case; 8] = [
        (
            "POST",
            &[("origin", dev_page), ("sec-fetch-site", "same-site"), ("sec-fetch-mode", "no-cors")],
            "a form or script",
        ),
        (
            "GET",
            &[("origin", dev_page), ("sec-fetch-site", "same-site"), ("sec-fetch-mode", "cors")],
            "a script's read",
        ),
        (
            "GET",
            &[
                ("origin", dev_page),
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "websocket"),
                ("upgrade", "websocket"),
            ],
            "a WebSocket",
        ),
        (
            "GET",
            &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")],
            "a frame",
        ),
        (
            "POST",
            &[("sec-fetch-site", "same-site"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")],
            "a form sent",
        ),
        ("POST", &[("origin", dev_page)], "a browser without fetch metadata"),
        ("GET", &[("origin", dev_page)], "a script's read without fetch metadata"),
        (
            "GET",
            &[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
                ("referer", "http://web.dev.shop.localhost:3000/"),
            ],
            "an image on another stage's page",
        ),
    ];
    for (method, headers, what) in elsewhere {
        let a = w.send_with(method, QA, "/orders", &cookies, headers).await;
        assert!(!reached(&a), "{what}: {} {}", a.status, a.body);
    }
    // Following a link here from anywhere, the stage's own page, and another component of the
    // same stage (its page calling its API): the visitor's own requests.
    let own: [Case; 6] = [
        (
            "GET",
            &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")],
            "a link",
        ),
        ("POST", &[("origin", "http://web.qa.shop.localhost:3000"), ("sec-fetch-site", "same-origin")], "its own page"),
        (
            "POST",
            &[
                ("origin", "http://api.qa.shop.localhost:3000"),
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "cors"),
            ],
            "another component of the stage",
        ),
        ("GET", &[], "no browser at all"),
        ("POST", &[("origin", "null"), ("sec-fetch-site", "same-origin")], "its own page, sending no referrer"),
        (
            "GET",
            &[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
                ("referer", "http://api.qa.shop.localhost:3000/gallery"),
            ],
            "an image on another component's page of the stage",
        ),
    ];
    for (method, headers, what) in own {
        let a = w.send_with(method, QA, "/orders", &cookies, headers).await;
        assert!(reached(&a), "{what}: {} {}", a.status, a.body);
        // What the component answers for a member is that member's: no shared cache keeps it;
        // and it cannot clear the browser's cookies of every host of the site.
        let cache = a.headers.get(header::CACHE_CONTROL).unwrap().to_str().unwrap();
        assert_eq!(cache, "private, max-age=600", "{what}");
        assert!(a.headers.get("clear-site-data").is_none(), "{what}");
    }
    // A public stage's answers are anyone's: the component's caching stands.
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let a = w.get(QA, "/", &[]).await;
    assert!(reached(&a));
    assert_eq!(a.headers.get(header::CACHE_CONTROL).unwrap(), "public, max-age=600, s-maxage=600");
    assert!(a.headers.get("clear-site-data").is_none());
    w.env.cleanup().await;
}

#[tokio::test]
async fn behind_tls_share_links_codes_and_cookies_stay_on_https() {
    let w = world_on(upstream().await, ProxyLimits::default(), true).await;
    let session = w.session("admin", pergola_core::testing::ADMIN_PASSWORD).await;
    let first = w.get(QA, "/page", &[]).await;
    assert_eq!(first.location, "http://localhost:3000/share-auth?to=https%3A//web.qa.shop.localhost%3A3000/page");
    // The dashboard hands the one-time code to the https share host only.
    let plain = w
        .get(
            "localhost:3000",
            "/share-auth?to=http%3A//web.qa.shop.localhost%3A3000/",
            &[("__Host-pergola_session", &session)],
        )
        .await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{}", plain.location);
    let vouched = w.code_url(QA, "/page", &session).await;
    let path = vouched.location.strip_prefix("https://web.qa.shop.localhost:3000").expect("https").to_owned();
    let done = w.get(QA, &path, &[]).await;
    // A `__Host-` cookie: a browser takes it only from this very host over https, so another
    // stage's page on a sibling share host cannot plant one for the whole share domain.
    let cookie = done.set_cookies.iter().find(|c| c.starts_with("__Host-pergola_share=")).expect("the share cookie");
    assert!(cookie.ends_with("; Secure") && cookie.contains("; Path=/;"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain"), "host-only: {cookie}");
    let secret = cookie.trim_start_matches("__Host-pergola_share=").split(';').next().unwrap().to_owned();
    let a = w.get(QA, "/", &[("__Host-pergola_share", &secret)]).await;
    assert!(reached(&a), "{}", a.body);
    assert!(!a.body.contains(&secret), "the component never sees it: {}", a.body);
    // The name without its prefix is what anyone could set for the share domain: it counts
    // for nothing here.
    let planted = w.get(QA, "/", &[("pergola_share", &secret)]).await;
    assert!(!reached(&planted), "{}", planted.body);
    assert_eq!(planted.status, StatusCode::SEE_OTHER, "sent to sign in");
    w.env.cleanup().await;
}

#[tokio::test]
async fn forged_expired_and_reused_codes_are_refused() {
    let w = world().await;
    let (_dev, session) = w.member("dora", Role::Developer).await;
    let forged = w.get(QA, "/.pergola/auth?code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&to=/", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(share_cookie(&forged.set_cookies), None);

    let vouched = w.code_url(QA, "/", &session).await;
    let path = vouched.location.strip_prefix(&format!("http://{QA}")).unwrap().to_owned();
    let first = w.get(QA, &path, &[]).await;
    assert!(share_cookie(&first.set_cookies).is_some());
    let again = w.get(QA, &path, &[]).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "used once");
    assert_eq!(share_cookie(&again.set_cookies), None);

    let vouched = w.code_url(QA, "/", &session).await;
    let path = vouched.location.strip_prefix(&format!("http://{QA}")).unwrap().to_owned();
    w.env.clock.advance(chrono::Duration::seconds(61));
    let late = w.get(QA, &path, &[]).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN, "expired after 60 s");
    assert_eq!(share_cookie(&late.set_cookies), None);

    // `to` never leaves the share host.
    let vouched = w.code_url(QA, "/", &session).await;
    let path = vouched.location.strip_prefix(&format!("http://{QA}")).unwrap().replace("to=/", "to=//evil.example/");
    let away = w.get(QA, &path, &[]).await;
    assert_eq!(away.location, "/");
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_code_for_one_stage_or_host_opens_no_other() {
    let w = world().await;
    let (_dev, session) = w.member("dora", Role::Developer).await;
    let vouched = w.code_url(QA, "/", &session).await;
    let path = vouched.location.strip_prefix(&format!("http://{QA}")).unwrap().to_owned();
    for host in [DEV, "api.qa.shop.localhost:3000"] {
        let a = w.get(host, &path, &[]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{host}");
        assert_eq!(share_cookie(&a.set_cookies), None);
    }
    let a = w.get(QA, &path, &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "a code tried elsewhere is spent");
    // A share cookie of stage QA does not open DEV either (its own host gets its own).
    let secret = w.hand_off(QA, &session).await;
    let a = w.get(DEV, "/", &[("pergola_share", &secret)]).await;
    assert!(reached(&a), "the same user may see DEV: the cookie is the user's");
    // /share-auth refuses URLs that are not this server's share links.
    for to in [
        "http%3A//web.qa.shop.localhost.evil.example%3A3000/",
        "http%3A//web.qa.shop.localhost%3A4000/",
        "http%3A//localhost%3A3000/",
        "javascript%3Aalert(1)",
        "http%3A//user%40web.qa.shop.localhost%3A3000/",
    ] {
        let a = w.get("localhost:3000", &format!("/share-auth?to={to}"), &[("pergola_session", &session)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{to}");
    }
    w.env.cleanup().await;
}

#[tokio::test]
async fn outsiders_and_removed_members_are_kept_out() {
    let w = world().await;
    let (_dev, session) = w.member("dora", Role::Developer).await;
    w.env.user("olga").await;
    let outsider = w.session("olga", USER_PASSWORD).await;
    let a = w.code_url(QA, "/", &outsider).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "the dashboard vouches for nobody who cannot see the stage");
    assert!(!a.location.contains("code="));

    let secret = w.hand_off(QA, &session).await;
    assert!(reached(&w.get(QA, "/", &[("pergola_share", &secret)]).await));
    w.admin.remove_member("shop", "dora").await.unwrap();
    let a = w.get(QA, "/", &[("pergola_share", &secret)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "removed: out at once");
    assert!(!reached(&a));
    w.admin.set_member("shop", "dora", Role::Viewer, None).await.unwrap();
    assert!(reached(&w.get(QA, "/", &[("pergola_share", &secret)]).await));
    let patch = pergola_domain::wire::UserPatch { disabled: Some(true), ..Default::default() };
    w.admin.update_user("dora", patch).await.unwrap();
    let a = w.get(QA, "/", &[("pergola_share", &secret)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "disabled: the share session ended");
    assert!(!reached(&a));
    w.env.cleanup().await;
}

#[tokio::test]
async fn signing_out_of_the_dashboard_signs_the_browser_out_of_the_share_hosts_too() {
    let w = world().await;
    let (_dev, laptop) = w.member("dora", Role::Developer).await;
    let phone = w.session("dora", USER_PASSWORD).await;
    let on_laptop = w.hand_off(QA, &laptop).await;
    let on_laptop_dev = w.hand_off(DEV, &laptop).await;
    let on_phone = w.hand_off(QA, &phone).await;
    // A code asked for on the laptop, not yet exchanged.
    let pending = w.code_url(QA, "/later", &laptop).await;
    let pending = pending.location.strip_prefix(&format!("http://{QA}")).unwrap().to_owned();
    for secret in [&on_laptop, &on_laptop_dev, &on_phone] {
        let host = if secret == &on_laptop_dev { DEV } else { QA };
        assert!(reached(&w.get(host, "/", &[("pergola_share", secret)]).await));
    }

    w.env.services.end_session(&laptop).await.unwrap();
    for (host, secret) in [(QA, &on_laptop), (DEV, &on_laptop_dev)] {
        let a = w.get(host, "/", &[("pergola_share", secret)]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "signed out: back to the dashboard's sign-in");
        assert!(a.location.starts_with("http://localhost:3000/share-auth?to="), "{}", a.location);
        assert!(!reached(&a));
    }
    let a = w.get(QA, &pending, &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "a code of a session that signed out opens nothing");
    assert!(share_cookie(&a.set_cookies).is_none());
    // The phone's dashboard session, and the share session it opened, go on.
    assert!(reached(&w.get(QA, "/", &[("pergola_share", &on_phone)]).await));
    let d = w.get("localhost:3000", "/projects/shop", &[("pergola_session", &phone)]).await;
    assert_eq!(d.status, StatusCode::OK);
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_share_session_lives_as_long_as_the_dashboard_session_that_opened_it() {
    let w = world().await;
    let (_dev, session) = w.member("dora", Role::Developer).await;
    // Opened 77 hours into the dashboard session (used every 11 hours).
    for _ in 0..7 {
        w.env.clock.advance(chrono::Duration::hours(11));
        let d = w.get("localhost:3000", "/projects/shop", &[("pergola_session", &session)]).await;
        assert_eq!(d.status, StatusCode::OK);
    }
    let secret = w.hand_off(QA, &session).await;
    // Used on the share host every 11 hours (the dashboard's idle limit is 12), the dashboard
    // session idles no more than it does; it ends when the dashboard session reaches its 7
    // days — though the share host's own session is not four days old then.
    let mut used = chrono::Duration::zero();
    loop {
        w.env.clock.advance(chrono::Duration::hours(11));
        used += chrono::Duration::hours(11);
        tokio::time::sleep(share_ttl()).await;
        let a = w.get(QA, "/", &[("pergola_share", &secret)]).await;
        if chrono::Duration::hours(77) + used >= chrono::Duration::days(7) {
            assert_eq!(a.status, StatusCode::SEE_OTHER, "after {used}");
            assert!(!reached(&a));
            break;
        }
        assert!(reached(&a), "after {used}");
        if used == chrono::Duration::hours(22) {
            let d = w.get("localhost:3000", "/projects/shop", &[("pergola_session", &session)]).await;
            assert_eq!(d.status, StatusCode::OK, "kept alive by the share host's use alone");
        }
    }
    let d = w.get("localhost:3000", "/projects/shop", &[("pergola_session", &session)]).await;
    assert_eq!(d.status, StatusCode::SEE_OTHER);
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_component_hears_the_address_pergola_found_never_the_one_a_visitor_wrote() {
    let w = world().await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let forged = |client: Option<&str>| {
        let mut req = Request::builder()
            .uri("/")
            .header(header::HOST, QA)
            .header("x-forwarded-for", "203.0.113.66")
            .header("x-real-ip", "203.0.113.66")
            .header("forwarded", "for=203.0.113.66")
            .body(Body::empty())
            .unwrap();
        if let Some(ip) = client {
            req.extensions_mut().insert(pergola_api::auth::ClientAddress(ip.parse().unwrap()));
        }
        req
    };
    let body = |response: Response| async move {
        String::from_utf8_lossy(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).into_owned()
    };
    // The address the listener found (the peer, or the visitor behind a trusted proxy).
    let seen = body(w.app.clone().oneshot(forged(Some("198.51.100.7"))).await.unwrap()).await;
    assert!(seen.ends_with(r#"forwarded: ["198.51.100.7"] [] []"#), "{seen}");
    // None known: nothing, and never the visitor's own.
    let seen = body(w.app.clone().oneshot(forged(None)).await.unwrap()).await;
    assert!(seen.ends_with("forwarded: [] [] []"), "{seen}");
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_public_stage_lets_anyone_in() {
    let w = world().await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let a = w.get(QA, "/", &[]).await;
    assert!(reached(&a), "{}", a.body);
    let a = w.send("POST", QA, "/form", &[]).await;
    assert!(reached(&a));
    assert!(!reached(&w.get(DEV, "/", &[]).await), "only that stage");
    w.admin.set_visibility("shop", "qa", Visibility::Members).await.unwrap();
    assert_eq!(w.get(QA, "/", &[]).await.status, StatusCode::SEE_OTHER, "members only again, at once");
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_guest_link_works_for_its_stage_until_revoked_or_expired() {
    let w = world().await;
    let link = w.admin.create_guest_link("shop", "qa", chrono::Duration::hours(2)).await.unwrap();
    let url = link.url.clone().unwrap();
    assert_eq!(url, format!("http://{QA}/.pergola/guest?token={}", link.token));
    let path = url.strip_prefix(&format!("http://{QA}")).unwrap().to_owned();
    // Only for its own stage.
    let elsewhere = w.get(DEV, &path, &[]).await;
    assert!(!elsewhere.set_cookies.iter().any(|c| c.starts_with("pergola_guest=")));
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);
    assert!(elsewhere.location.starts_with("http://localhost:3000/share-auth"));
    assert!(!reached(&w.get(DEV, "/", &[("pergola_guest", &link.token)]).await));

    let opened = w.get(QA, &path, &[]).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(opened.location, "/");
    let cookie = opened.set_cookies.iter().find(|c| c.starts_with("pergola_guest=")).unwrap();
    assert!(cookie.contains("HttpOnly") && !cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
    let a = w.get(QA, "/", &[("pergola_guest", &link.token)]).await;
    assert!(a.body.starts_with("component saw cookies: [] forwarded"), "{}", a.body);
    assert!(reached(&w.send("POST", QA, "/form", &[("pergola_guest", &link.token)]).await));

    w.admin.revoke_guest_link("shop", "qa", &link.id).await.unwrap();
    let a = w.get(QA, "/", &[("pergola_guest", &link.token)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "revoked: to sign in");
    assert_eq!(w.send("POST", QA, "/form", &[("pergola_guest", &link.token)]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(w.get(QA, &path, &[]).await.status, StatusCode::SEE_OTHER);

    let link = w.admin.create_guest_link("shop", "qa", chrono::Duration::hours(1)).await.unwrap();
    assert!(reached(&w.get(QA, "/", &[("pergola_guest", &link.token)]).await));
    w.env.clock.advance(chrono::Duration::minutes(61));
    tokio::time::sleep(share_ttl()).await;
    let a = w.get(QA, "/", &[("pergola_guest", &link.token)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "expired");
    assert!(!reached(&a));
    w.env.cleanup().await;
}

fn share_ttl() -> Duration {
    pergola_core::services::PROXY_CACHE_TTL + Duration::from_millis(50)
}

/// A component that accepts connections and never answers.
async fn silent_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// A component that counts the requests reaching it and says how many body bytes it got; on
/// `/ws` it switches protocols and echoes what it reads until the other side closes.
async fn counting_upstream() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let app = Router::new()
        .route(
            "/ws",
            get(|mut req: Request<Body>| async move {
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(upgraded) = upgrade.await {
                        let mut io = hyper_util::rt::TokioIo::new(upgraded);
                        let (mut read, mut write) = tokio::io::split(&mut io);
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(header::CONNECTION, "upgrade")
                    .header(header::UPGRADE, "websocket")
                    .body(Body::empty())
                    .unwrap()
            }),
        )
        .fallback(move |req: Request<Body>| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                match axum::body::to_bytes(req.into_body(), usize::MAX).await {
                    Ok(body) => format!("component got {} bytes", body.len()),
                    Err(_) => "component got a broken body".to_owned(),
                }
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, reached)
}

fn limits(response_timeout: Duration, max_splices: usize, body_limit: usize) -> ProxyLimits {
    ProxyLimits {
        connect_timeout: Duration::from_secs(1),
        response_timeout,
        max_splices,
        body_limit,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_component_that_never_answers_gives_a_504_page_within_the_timeout() {
    let w = world_with(silent_upstream().await, limits(Duration::from_millis(500), 4, 1 << 20)).await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let started = std::time::Instant::now();
    let a = w.get(QA, "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.body);
    assert!(a.body.contains("did not answer within 0.5 seconds"), "{}", a.body);
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
    w.env.cleanup().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_never_reaches_the_component() {
    use std::sync::atomic::Ordering;
    let (port, reached) = counting_upstream().await;
    let w = world_with(port, limits(Duration::from_secs(5), 4, 1000)).await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let send = |body: Body, length: Option<usize>| {
        let mut req = Request::builder().method("POST").uri("/upload").header(header::HOST, QA);
        if let Some(length) = length {
            req = req.header(header::CONTENT_LENGTH, length);
        }
        w.app.clone().oneshot(req.body(body).unwrap())
    };
    // Announced too large: refused before anything is forwarded.
    let response = send(Body::from(vec![b'x'; 1001]), Some(1001)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("at most 1000 bytes"));
    assert_eq!(reached.load(Ordering::SeqCst), 0, "nothing reached the component");
    // Streamed without a length: cut off at the limit, 413.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b'y'; 100])).collect();
    let response = send(Body::from_stream(chunked(chunks)), None).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Within the limit: forwarded whole.
    let response = send(Body::from(vec![b'z'; 1000]), Some(1000)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&body), "component got 1000 bytes");
    w.env.cleanup().await;
}

/// A stream of `chunks`, for a body without a length.
fn chunked(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Chunks(chunks.into_iter())
}

/// A body fed by the returned sender, piece by piece, without a length.
fn fed_body() -> (tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>, Body) {
    struct Fed(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Fed {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, Body::from_stream(Fed(rx)))
}

#[tokio::test]
async fn a_slow_upload_is_no_timeout_but_a_stalled_one_is() {
    let (port, _) = counting_upstream().await;
    let w = world_with(port, limits(Duration::from_millis(400), 4, 1 << 20)).await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let post = |body: Body| {
        let req = Request::builder().method("POST").uri("/upload").header(header::HOST, QA);
        w.app.clone().oneshot(req.body(body).unwrap())
    };
    // Five pieces 250 ms apart: 1.25 s in all, over three times the timeout, and answered.
    let (tx, body) = fed_body();
    let feeding = tokio::spawn(async move {
        for _ in 0..5 {
            tx.send(Ok(vec![b'a'; 100])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let response = post(body).await.unwrap();
    feeding.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&body), "component got 500 bytes");
    // One piece, and then nothing (the component waits for the rest): 504 after the timeout.
    let (tx, body) = fed_body();
    tx.send(Ok(vec![b'a'; 100])).await.unwrap();
    let started = std::time::Instant::now();
    let response = post(body).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop(tx);
    w.env.cleanup().await;
}

/// Opens a WebSocket-like upgrade to the share host through the real listener; the status
/// line of the answer, and the connection.
async fn upgrade(addr: std::net::SocketAddr) -> (String, tokio::net::TcpStream) {
    upgrade_with(addr, "").await
}

/// [`upgrade`] with more header lines (each ending in `\r\n`).
async fn upgrade_with(addr: std::net::SocketAddr, headers: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET /ws HTTP/1.1\r\nHost: {QA}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (head.lines().next().unwrap_or_default().to_owned(), stream)
}

async fn echoes(stream: &mut tokio::net::TcpStream, text: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf)).await.is_ok_and(|r| r.is_ok())
        && buf == text.as_bytes()
}

#[tokio::test]
async fn websocket_splices_are_capped_and_a_closed_one_frees_its_place() {
    let (port, _) = counting_upstream().await;
    let w = world_with(port, limits(Duration::from_secs(5), 2, 1 << 20)).await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = w.app.clone();
    tokio::spawn(crate::serve::serve(listener, app, crate::serve::Limits::default(), std::future::pending()));

    let (status, mut first) = upgrade(addr).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(echoes(&mut first, "one").await, "spliced through the real listener");
    let (status, mut second) = upgrade(addr).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(echoes(&mut second, "two").await);
    let (status, _third) = upgrade(addr).await;
    assert!(status.starts_with("HTTP/1.1 503"), "over the cap: {status}");
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, mut again) = upgrade(addr).await;
        if status.starts_with("HTTP/1.1 101") {
            assert!(echoes(&mut again, "three").await);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed splice's place was never freed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(echoes(&mut second, "still").await, "the others go on");
    w.env.cleanup().await;
}

#[tokio::test]
async fn a_websocket_ends_once_its_visitor_may_no_longer_see_the_stage() {
    let (port, _) = counting_upstream().await;
    let w = world_with(port, limits(Duration::from_secs(5), 8, 1 << 20)).await;
    let (_viewer, session) = w.member("vera", Role::Viewer).await;
    let secret = w.hand_off(QA, &session).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::serve::serve(listener, w.app.clone(), crate::serve::Limits::default(), std::future::pending()));

    let (status, mut member) = upgrade_with(addr, &format!("Cookie: pergola_share={secret}\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(echoes(&mut member, "hello").await);
    w.admin.remove_member("shop", "vera").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!echoes(&mut member, "still there?").await, "a removed member's WebSocket ends");
    // A public stage's anonymous WebSocket ends once the stage is members-only again.
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let (status, mut anyone) = upgrade(addr).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(echoes(&mut anyone, "hello").await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(echoes(&mut anyone, "still open").await, "nothing changed: it goes on");
    w.admin.set_visibility("shop", "qa", Visibility::Members).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!echoes(&mut anyone, "still there?").await, "members only now");
    w.env.cleanup().await;
}

#[tokio::test]
async fn one_visitor_cannot_hold_every_websocket() {
    let (port, _) = counting_upstream().await;
    let limits = ProxyLimits { max_splices_per_client: 2, ..limits(Duration::from_secs(5), 8, 1 << 20) };
    let w = world_with(port, limits).await;
    w.admin.set_visibility("shop", "qa", Visibility::Public).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::serve::serve(listener, w.app.clone(), crate::serve::Limits::default(), std::future::pending()));
    let (first, mut one) = upgrade(addr).await;
    let (second, _two) = upgrade(addr).await;
    assert!(first.starts_with("HTTP/1.1 101") && second.starts_with("HTTP/1.1 101"), "{first} {second}");
    let (third, _) = upgrade(addr).await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    assert!(echoes(&mut one, "the others go on").await);
    drop(one);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _again) = upgrade(addr).await;
        if status.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a closed splice gives its visitor's place back: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.env.cleanup().await;
}
