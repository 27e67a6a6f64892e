//! Share links: requests whose `Host` is `{component}.{stage}.{project}.{domain}` are
//! forwarded to that component (a reverse proxy, bodies streamed both ways, `X-Forwarded-*`
//! set, protocol upgrades such as WebSockets spliced through). A suspended stage answers 503 with a readable page, an unknown or archived one 404,
//! a component that is not running or not answering 502, one that does not answer within
//! [`UPSTREAM_RESPONSE_TIMEOUT`] 504. Bodies over [`FORWARD_BODY_LIMIT`] get 413, WebSockets
//! beyond [`MAX_SPLICES`] at once 503.
//!
//! Who may pass is decided before anything reaches the component (`Services::share_access`):
//! anyone for a `public` stage; for a members-only one (the default), a visitor with a valid
//! `pergola_share` cookie of a user who may see the stage, or a `pergola_guest` cookie of a
//! live guest link of this stage. Others are sent to sign in through the dashboard
//! ([`crate::share_auth`]), or refused (401, 403). The paths under `/.pergola/` are the
//! proxy's own. Pergola's cookies never reach the component, and the component cannot set
//! cookies for other hosts (a `Domain` attribute) nor Pergola's own (`pergola_*`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pergola_api::auth::cookie;
use pergola_core::services::{ShareAccess, ShareCredentials};
use pergola_core::Services;
use pergola_domain::runtime::ComponentState;
use pergola_domain::share::parse_share_host;
use pergola_domain::share::{share_cookie_name, AUTH_PATH, GUEST_COOKIE, GUEST_PATH, SHARE_COOKIE};
use pergola_domain::{ComponentKind, StageStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long connecting to a component may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a component may take to answer a forwarded request (until its response's status
/// and headers; the body then streams for as long as it takes), counted from when the request
/// — the last piece of its body, if it has one — reached it. Beyond it the visitor gets a 504
/// page.
pub const UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many upgraded connections (WebSockets) are spliced to components at once, over every
/// stage; one more gets a 503 page.
pub const MAX_SPLICES: usize = 512;
/// How many of them one visitor (an address, an IPv6 /64) may hold: one visitor of a public
/// stage cannot take every other stage's WebSockets.
pub const MAX_SPLICES_PER_CLIENT: usize = 32;
/// How often a spliced connection's visitor is asked again whether they may still see the
/// stage: removing a member, revoking a guest link or making a public stage members-only ends
/// their WebSockets too, within about this (and the access cache's second).
pub const SPLICE_RECHECK: Duration = Duration::from_secs(1);
/// The largest request body forwarded to a component (64 MiB): a larger announced
/// `Content-Length` gets a 413 page and nothing reaches the component; a streamed body is
/// cut off at the limit (the component sees the request end early; the visitor gets 413).
pub const FORWARD_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What the proxy allows (tests use small values).
#[derive(Clone, Copy, Debug)]
pub struct ProxyLimits {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_splices: usize,
    pub max_splices_per_client: usize,
    pub body_limit: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            connect_timeout: UPSTREAM_CONNECT_TIMEOUT,
            response_timeout: UPSTREAM_RESPONSE_TIMEOUT,
            max_splices: MAX_SPLICES,
            max_splices_per_client: MAX_SPLICES_PER_CLIENT,
            body_limit: FORWARD_BODY_LIMIT,
        }
    }
}

#[derive(Clone)]
pub struct Share {
    pub(crate) services: Services,
    pub(crate) domain: String,
    /// The dashboard's origin (`PERGOLA_PUBLIC_URL`, else `http://{listen address}`), where
    /// visitors sign in.
    pub(crate) dashboard: String,
    /// Whether share links are served over https (the cookies are then `Secure`).
    pub(crate) secure: bool,
    client: Client<HttpConnector, Body>,
    limits: ProxyLimits,
    /// One permit per WebSocket spliced now.
    splices: Arc<Semaphore>,
    /// The splices each visitor holds.
    splicers: crate::serve::PerClient,
}

impl Share {
    pub fn new(services: Services, domain: String, dashboard: String) -> Self {
        let secure = services.share_base().secure;
        Self {
            services,
            domain,
            dashboard: dashboard.trim_end_matches('/').to_owned(),
            secure,
            client: client(&ProxyLimits::default()),
            limits: ProxyLimits::default(),
            splices: Arc::new(Semaphore::new(MAX_SPLICES)),
            splicers: crate::serve::PerClient::default(),
        }
    }

    /// The same proxy with other limits.
    pub fn with_limits(self, limits: ProxyLimits) -> Self {
        Self {
            client: client(&limits),
            splices: Arc::new(Semaphore::new(limits.max_splices.min(Semaphore::MAX_PERMITS))),
            limits,
            ..self
        }
    }
}

fn client(limits: &ProxyLimits) -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(limits.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Share {
    /// The share hosts as a CSP source: `http://*.{domain}:{port}`.
    pub fn form_target(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        match self.services.share_base().port {
            80 if !self.secure => format!("{scheme}://*.{}", self.domain),
            443 if self.secure => format!("{scheme}://*.{}", self.domain),
            port => format!("{scheme}://*.{}:{port}", self.domain),
        }
    }
}

/// The proxy's own paths on a share host.
const OWN_PATHS: &str = "/.pergola/";

/// Middleware: share-link hosts are proxied, everything else goes to the dashboard and API.
pub async fn route(State(share): State<Share>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let Some((component, stage, project)) = parse_share_host(host, &share.domain) else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == AUTH_PATH {
        share.exchange(&component, &stage, &project, req).await
    } else if path == GUEST_PATH {
        share.guest(&stage, &project, req).await
    } else if path.starts_with(OWN_PATHS) {
        page(StatusCode::NOT_FOUND, "Not found", "There is nothing here.")
    } else {
        share.forward(&component, &stage, &project, req).await
    }
}

/// Whether a cookie name is Pergola's own (never forwarded to a component, never set by one),
/// also under a `__Host-` or `__Secure-` prefix (the dashboard's session over https).
fn is_pergola_cookie(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let bare = name.strip_prefix("__host-").or_else(|| name.strip_prefix("__secure-")).unwrap_or(&name);
    bare.starts_with("pergola_")
}

/// Removes Pergola's cookies from the request's `Cookie` headers, keeping the others.
fn strip_pergola_cookies(headers: &mut axum::http::HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !is_pergola_cookie(pair.split('=').next().unwrap_or_default()))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// Whether a component's `Set-Cookie` may reach the browser: not for another host (a `Domain`
/// attribute) and not one of Pergola's cookies.
fn allowed_set_cookie(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else { return false };
    let mut parts = value.split(';');
    let name = parts.next().unwrap_or_default().split('=').next().unwrap_or_default();
    !is_pergola_cookie(name)
        && !parts.any(|attribute| attribute.split('=').next().unwrap_or_default().trim().eq_ignore_ascii_case("domain"))
}

/// Drops the component's `Set-Cookie` headers that are not [`allowed_set_cookie`].
fn filter_set_cookies(headers: &mut axum::http::HeaderMap) {
    let kept: Vec<HeaderValue> =
        headers.get_all(header::SET_COOKIE).iter().filter(|v| allowed_set_cookie(v)).cloned().collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

/// What of a component's answer headers reaches the browser: its `Set-Cookie`s as
/// [`filter_set_cookies`] lets them; no `Clear-Site-Data` (a browser applies it to the whole
/// site — every share host and the dashboard under the same domain: one public stage could sign
/// its visitors out of everything); and, for an answer given on a visitor's credentials
/// (`personal`), `Cache-Control` made `private` (a members-only page marked `public` would be
/// kept by a shared cache in front of the share hosts and handed to anyone).
fn filter_answer_headers(headers: &mut axum::http::HeaderMap, personal: bool) {
    filter_set_cookies(headers);
    headers.remove("clear-site-data");
    if personal {
        let kept: Vec<String> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|d| {
                let name = d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
                !d.is_empty() && !matches!(name.as_str(), "public" | "private" | "s-maxage" | "proxy-revalidate")
            })
            .map(str::to_owned)
            .collect();
        let value = std::iter::once("private".to_owned()).chain(kept).collect::<Vec<_>>().join(", ");
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private")),
        );
    }
}

/// Whether the browser sends this request for a page of another host — another stage's
/// component, another site — other than by the visitor following a link (a top-level `GET`):
/// a script, a form, a frame, an image or a WebSocket of that page. Such a request does not
/// carry the visitor's share cookies' authority: every stage's share host is of one site (the
/// share domain), so a browser sends a `SameSite=Lax` cookie with them, and any stage's page —
/// a developer's `dev` stage, any public one — could otherwise act on (and, by a WebSocket,
/// read) the members-only stages its visitor may see. The components of one stage are one
/// application: a request from a page of one of the stage's share hosts (its `Origin`, else
/// its `Referer`) keeps its cookies.
///
/// Browsers say where a request comes from in `Sec-Fetch-Site` to https and local hosts; to a
/// plain-http share domain, and from older browsers, only `Origin` tells (sent with a script's
/// reads, forms' posts and WebSockets — not with images or frames, which then cannot be told
/// from the visitor's own).
fn from_another_hosts_page(req: &Request, domain: &str, project: &str, stage: &str) -> bool {
    let headers = req.headers();
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // `scheme://host[:port]…` → `host[:port]`.
    let host_of =
        |url: &str| url.split_once("://").and_then(|(_, rest)| rest.split(['/', '?', '#']).next()).map(str::to_owned);
    let origin = value("origin").filter(|o| *o != "null");
    let source = origin.or_else(|| value("referer")).and_then(host_of);
    if source.and_then(|h| parse_share_host(&h, domain)).is_some_and(|(_, s, p)| s == stage && p == project) {
        return false;
    }
    let foreign_origin = value("origin")
        .is_some_and(|o| host_of(o).zip(value("host")).is_none_or(|(from, here)| !from.eq_ignore_ascii_case(here)));
    let from_elsewhere = match value("sec-fetch-site") {
        Some(site) => matches!(site, "same-site" | "cross-site"),
        None => foreign_origin,
    };
    if !from_elsewhere {
        return false;
    }
    // A link followed: a top-level GET, which carries no `Origin`.
    let visit = value("sec-fetch-mode").is_none_or(|mode| mode == "navigate")
        && value("sec-fetch-dest").is_none_or(|dest| dest == "document")
        && !headers.contains_key("sec-purpose")
        && matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD)
        && !headers.contains_key(header::UPGRADE)
        && !foreign_origin;
    !visit
}

/// Headers that belong to one connection, not to the request or response being forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Share {
    async fn forward(&self, component: &str, stage_id: &str, project: &str, mut req: Request) -> Response {
        let (stage, components) = match self.services.stage_with_components(project, stage_id).await {
            Ok(found) => found,
            Err(e) => return page(StatusCode::NOT_FOUND, "Not found", &e.message),
        };
        // Who may pass: decided before anything about the stage is shown or forwarded. The
        // visitor's cookies count only for what they asked for themselves (see
        // `from_another_hosts_page`).
        let credentials = match from_another_hosts_page(&req, &self.domain, project, stage_id) {
            true => ShareCredentials::default(),
            false => ShareCredentials {
                share: cookie(req.headers(), &share_cookie_name(SHARE_COOKIE, self.secure)),
                guest: cookie(req.headers(), &share_cookie_name(GUEST_COOKIE, self.secure)),
            },
        };
        // An answer given on a visitor's credentials is theirs: no shared cache keeps it.
        let personal = credentials.share.is_some() || credentials.guest.is_some();
        match self.services.share_access(project, stage_id, &credentials).await {
            Ok(ShareAccess::Allowed) => {}
            Ok(ShareAccess::SignIn) => {
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                return self.sign_in(&req, &path);
            }
            Ok(ShareAccess::Refused) => {
                return page(
                    StatusCode::FORBIDDEN,
                    "Not allowed",
                    &format!("You are signed in, but not as a member of project '{project}'."),
                )
            }
            Err(e) if e.kind == pergola_domain::ErrorKind::NotFound => {
                return page(StatusCode::NOT_FOUND, "Not found", &e.message)
            }
            Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.message),
        }
        // Traffic stops as soon as a suspend begins, while the components still shut down.
        if stage.status != StageStatus::Running {
            let state = if stage.status == StageStatus::Suspending { "being suspended" } else { "suspended" };
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Stage suspended",
                &format!(
                    "Stage '{}' of project '{project}' is {state}. It serves again as soon as it is resumed.",
                    stage.name
                ),
            );
        }
        let Some(target) = components.iter().find(|c| c.name == component && c.kind == ComponentKind::Service) else {
            return page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("Stage '{stage_id}' runs no service '{component}'."),
            );
        };
        let (Some(upstream), ComponentState::Running) =
            (self.services.upstream(project, stage_id, target), target.state)
        else {
            return page(
                StatusCode::BAD_GATEWAY,
                "Not running",
                &format!(
                    "Service '{component}' of stage '{stage_id}' is {} right now. Try again in a moment.",
                    target.state.as_str()
                ),
            );
        };
        // A body too large for the component is refused before anything is forwarded.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.trim().parse::<u64>().ok());
        if announced.is_some_and(|length| length > self.limits.body_limit as u64) {
            return too_large(self.limits.body_limit);
        }
        let original_host = req.headers().get(header::HOST).cloned();
        // A protocol upgrade (WebSocket): forward the handshake, then splice the two connections
        // (a limited number at once).
        let upgrade = req.headers().get(header::UPGRADE).cloned();
        let visitor = req.extensions().get::<pergola_api::auth::ClientAddress>().map(|a| a.0);
        let splice = match upgrade {
            Some(_) => match self.splices.clone().try_acquire_owned() {
                Ok(permit) => {
                    let held = match visitor {
                        Some(ip) => match self.splicers.take(ip, self.limits.max_splices_per_client) {
                            Some(held) => Some(held),
                            None => {
                                return page(
                                    StatusCode::TOO_MANY_REQUESTS,
                                    "Too many connections",
                                    "You hold as many WebSocket connections to share links as one visitor may. \
                                     Close some and try again.",
                                )
                            }
                        },
                        None => None,
                    };
                    Some((permit, held))
                }
                Err(_) => {
                    tracing::warn!(
                        max = self.limits.max_splices,
                        "share links: too many WebSocket connections at once; one more was refused"
                    );
                    return page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many connections",
                        "This server holds as many WebSocket connections as it allows. Try again in a moment.",
                    );
                }
            },
            None => None,
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let client_ip = Some(pergola_api::auth::client_address(&req)).filter(|a| a != "unknown");
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *req.uri_mut() = match format!("http://{upstream}{path}").parse() {
            Ok(uri) => uri,
            Err(_) => return page(StatusCode::BAD_REQUEST, "Bad request", "The request path is not valid."),
        };
        let headers = req.headers_mut();
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        strip_pergola_cookies(headers);
        if let Some(host) = original_host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        let proto = if self.secure { "https" } else { "http" };
        headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(proto));
        // Only the address Pergola found: never what the visitor wrote.
        for name in ["x-forwarded-for", "x-real-ip", "forwarded"] {
            headers.remove(name);
        }
        if let Some(ip) = client_ip.and_then(|ip| HeaderValue::from_str(&ip).ok()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), ip);
        }
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        // A streamed body is cut off at the limit; whether that is what failed is remembered.
        // Each piece of it forwarded is noted: the component's time to answer counts from the
        // last one (a long upload is not an unanswered request; a stalled one is).
        let cut = Arc::new(AtomicBool::new(false));
        let limit = self.limits.body_limit;
        let started = tokio::time::Instant::now();
        let progress = Arc::new(AtomicU64::new(0));
        let req = req.map(|body| {
            let (cut, progress) = (cut.clone(), progress.clone());
            let limited = http_body_util::BodyExt::map_err(http_body_util::Limited::new(body, limit), move |e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    cut.store(true, Ordering::Relaxed);
                }
                e
            });
            Body::new(http_body_util::BodyExt::map_frame(limited, move |frame| {
                progress.store(millis_since(started), Ordering::Relaxed);
                frame
            }))
        });
        let request = self.client.request(req);
        tokio::pin!(request);
        let answered = loop {
            let last = progress.load(Ordering::Relaxed);
            let deadline = started + Duration::from_millis(last) + self.limits.response_timeout;
            tokio::select! {
                answered = &mut request => break Some(answered),
                () = tokio::time::sleep_until(deadline) => {
                    if progress.load(Ordering::Relaxed) == last {
                        break None;
                    }
                }
            }
        };
        // Every request that reached the component counts in its metrics (not answering: 504,
        // failing: 502), with the time to the answer's head.
        let status = match &answered {
            None => 504,
            Some(Ok(response)) => response.status().as_u16(),
            Some(Err(_)) => 502,
        };
        self.services.record_proxied(project, stage_id, component, status, started.elapsed().as_secs_f64() * 1000.0);
        let Some(answered) = answered else {
            tracing::warn!(project, stage = stage_id, component, "share link target did not answer in time");
            return page(
                StatusCode::GATEWAY_TIMEOUT,
                "Not answering",
                &format!(
                    "Service '{component}' of stage '{stage_id}' did not answer within {} seconds.",
                    self.limits.response_timeout.as_secs_f32()
                ),
            );
        };
        if cut.load(Ordering::Relaxed) {
            return too_large(limit);
        }
        match answered {
            Ok(mut response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let Some(client_upgrade) = client_upgrade else {
                    return page(StatusCode::BAD_GATEWAY, "Bad gateway", "The service switched protocols unasked.");
                };
                filter_answer_headers(response.headers_mut(), personal);
                let server_upgrade = hyper::upgrade::on(&mut response);
                let (services, project, stage) = (self.services.clone(), project.to_owned(), stage_id.to_owned());
                tokio::spawn(async move {
                    // Held while the splice lasts.
                    let _splice = splice;
                    match (client_upgrade.await, server_upgrade.await) {
                        (Ok(client), Ok(server)) => {
                            let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                            // While the visitor may still see the stage.
                            let revoked = async {
                                loop {
                                    tokio::time::sleep(SPLICE_RECHECK).await;
                                    match services.share_access(&project, &stage, &credentials).await {
                                        Ok(ShareAccess::Allowed) => {}
                                        // The database out of reach for a moment is no reason.
                                        Err(e) if e.kind == pergola_domain::ErrorKind::Internal => {}
                                        _ => break,
                                    }
                                }
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                () = revoked => {
                                    tracing::info!(project = %project, stage = %stage, "share link: a WebSocket closed, its visitor may no longer see the stage");
                                }
                            }
                        }
                        (c, s) => tracing::warn!(client = c.is_ok(), service = s.is_ok(), "upgrade failed"),
                    }
                });
                response.map(|_| Body::empty())
            }
            Ok(response) => {
                let mut response = response.map(Body::new);
                for name in HOP_BY_HOP {
                    response.headers_mut().remove(name);
                }
                filter_answer_headers(response.headers_mut(), personal);
                response
            }
            Err(e) => {
                tracing::warn!(project, stage = stage_id, component, error = %e, "share link target did not answer");
                page(
                    StatusCode::BAD_GATEWAY,
                    "Not answering",
                    &format!("Service '{component}' of stage '{stage_id}' did not answer."),
                )
            }
        }
    }
}

/// Milliseconds from `start` to now.
fn millis_since(start: tokio::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// 413 for a body over `limit` bytes.
fn too_large(limit: usize) -> Response {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Too large",
        &match limit % (1024 * 1024) {
            0 => format!("Requests to share links may carry at most {} MiB.", limit / (1024 * 1024)),
            _ => format!("Requests to share links may carry at most {limit} bytes."),
        },
    )
}

/// A small self-contained page (share-link hosts do not load the dashboard's assets).
pub(crate) fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Pergola Stages</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family: system-ui, sans-serif; background: #f8fafc; color: #0f172a; display: grid; place-items: center; min-height: 90vh\">\
         <main style=\"max-width: 32rem; text-align: center\"><p style=\"color: #047857; font-weight: 600\">{code}</p>\
         <h1>{title}</h1><p style=\"color: #475569\">{message}</p><p style=\"color: #94a3b8; font-size: .85rem\">Pergola Stages</p></main></body></html>",
        code = status.as_u16(),
        title = escape(title),
        message = escape(message),
    );
    (status, Html(body)).into_response()
}
