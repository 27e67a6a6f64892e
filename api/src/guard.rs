//! Requests only from where they belong: one middleware ([`guard`]) in front of the dashboard
//! and the REST API (the server applies it to every request the share-link proxy does not take).
//!
//! 1. **Host allow-list.** The dashboard answers only for its own names ([`Guard::new`]): the
//!    listen address, `localhost`, `127.0.0.1` and `[::1]` on the listen port, and the host of
//!    `PERGOLA_PUBLIC_URL`. Any other `Host` — a DNS-rebinding page, a stray virtual host — gets
//!    **421 Misdirected Request** and no dashboard. `/healthz` and `/readyz` answer for any
//!    host (they say only "ok" / "ready", and load balancers and container probes ask by
//!    address).
//! 2. **Same origin for state changes.** A POST, PUT, PATCH or DELETE (any method that is not
//!    safe) is refused with **403** when `Sec-Fetch-Site` says it comes from another site or
//!    origin (anything but `same-origin` or `none`), or when `Origin` is not exactly one of the
//!    dashboard's origins (`null` included). Under `/api/v1` the 403 is problem+json
//!    (`urn:pergola:problem:forbidden`), elsewhere plain text. The handler never runs.
//! 3. **Body limit.** A body over [`BODY_LIMIT`] is refused: **413** when `Content-Length` says
//!    so up front, and a streamed body is cut off at the limit (the reader fails). The REST API's
//!    JSON bodies had axum's 2 MiB default; the dashboard's server functions had none. The one
//!    exception is a build's upload ([`has_own_body_limit`]: `POST /api/v1/projects/{project}/builds`
//!    with an archive's content type), which streams to disk under the artifact limit
//!    (`PERGOLA_MAX_ARTIFACT_MB`), enforced by the upload itself — its announced length up
//!    front, its bytes as they come — with a 413 problem. (axum's `DefaultBodyLimit` only
//!    applies to extractors that buffer a body — `Json`, `Bytes` —, never to a streamed one.)
//! 4. **Security headers** on every response that passes through here (the proxied share
//!    links never do): `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
//!    `X-Frame-Options: DENY` and a `Content-Security-Policy`
//!    ([`Guard::content_security_policy`]). A response that already carries a CSP keeps it:
//!    dashboard pages set their own, naming the nonce of their inline scripts.

use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pergola_core::config::{split_host_port, PublicUrl};
use pergola_domain::Error;
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest request body accepted, in bytes (axum's default for JSON, which the REST API
/// always had).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Which host names and origins are the dashboard's. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Guard(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    names: Vec<Name>,
    /// `cargo leptos watch`'s live-reload WebSocket port, allowed in `connect-src`.
    live_reload: Option<u32>,
    /// Where a form's redirect may also lead (`form-action`): the share hosts, which the
    /// sign-in form's redirect reaches through `/share-auth` (browsers check every hop).
    form_targets: Option<String>,
}

/// One address the dashboard is reached at.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Name {
    scheme: &'static str,
    /// Lower case, IPv6 in brackets.
    host: String,
    port: u16,
}

impl Name {
    fn default_port(&self) -> u16 {
        if self.scheme == "https" {
            443
        } else {
            80
        }
    }
}

impl Guard {
    /// The dashboard listening on `listen`, and reached at `public_url` (`http(s)://host[:port]`,
    /// see [`PublicUrl::parse`]) when that is set.
    pub fn new(listen: SocketAddr, public_url: Option<&str>) -> Result<Self, String> {
        let port = listen.port();
        let listen_host = match listen {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let mut names = Vec::new();
        for host in [listen_host.as_str(), "localhost", "127.0.0.1", "[::1]"] {
            let name = Name { scheme: "http", host: host.to_owned(), port };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if let Some(url) = public_url {
            let url = PublicUrl::parse(url)?;
            names.push(Name { scheme: url.scheme, host: url.host, port: url.port });
        }
        Ok(Self(Arc::new(Inner { names, live_reload: None, form_targets: None })))
    }

    /// Allows the live-reload WebSocket `cargo leptos watch` serves on `port` (development only).
    pub fn with_live_reload(self, port: u32) -> Self {
        Self(Arc::new(Inner { live_reload: Some(port), ..self.inner() }))
    }

    /// Lets the redirects that follow a form (signing in, then `/share-auth`) reach `source`
    /// too (a CSP source such as `http://*.localhost:3000`: the share hosts).
    pub fn with_form_target(self, source: &str) -> Self {
        Self(Arc::new(Inner { form_targets: Some(source.to_owned()), ..self.inner() }))
    }

    fn inner(&self) -> Inner {
        Inner {
            names: self.0.names.clone(),
            live_reload: self.0.live_reload,
            form_targets: self.0.form_targets.clone(),
        }
    }

    /// Whether `host` (a `Host` header: `name[:port]`) is one of the dashboard's. Without a port,
    /// the scheme's default is meant (`pergola.example.com` is `pergola.example.com:443` for
    /// `https://pergola.example.com`).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let Some((name, port)) = split_host_port(&host) else {
            return false;
        };
        self.0.names.iter().any(|n| n.host == name && port.unwrap_or(n.default_port()) == n.port)
    }

    /// Whether `origin` (an `Origin` header) is exactly one of the dashboard's origins, the
    /// scheme's default port written or not. `null` never is.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let Ok(url) = PublicUrl::parse(origin) else {
            return false;
        };
        // An Origin header never ends in '/'; `PublicUrl::parse` forgives one, this does not.
        !origin.ends_with('/')
            && self.0.names.iter().any(|n| n.scheme == url.scheme && n.host == url.host && n.port == url.port)
    }

    /// The dashboard's origins, as browsers write them (for the start-up log).
    pub fn origins(&self) -> Vec<String> {
        self.0
            .names
            .iter()
            .map(|n| PublicUrl { scheme: n.scheme, host: n.host.clone(), port: n.port }.origin())
            .collect()
    }

    /// The Content-Security-Policy of the dashboard: everything from its own origin only, no
    /// framing, no plugins, no inline styles (the app has no `style` attributes), and scripts
    /// from its own origin plus — on a rendered page — the inline ones carrying `nonce` (Leptos's
    /// hydration bootstrap and serialized resources). WebAssembly needs `'wasm-unsafe-eval'`.
    pub fn content_security_policy(&self, nonce: Option<&str>) -> String {
        let nonce = nonce.map(|n| format!(" 'nonce-{n}'")).unwrap_or_default();
        let live_reload = self.0.live_reload.map(|p| format!(" ws://*:{p} wss://*:{p}")).unwrap_or_default();
        let form_targets = self.0.form_targets.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{nonce}; style-src 'self'; \
             img-src 'self' data:; connect-src 'self'{live_reload}; object-src 'none'; base-uri 'self'; \
             form-action 'self'{form_targets}; frame-ancestors 'none'"
        )
    }

    /// Why this request must not reach the dashboard, if it must not.
    fn refusal(&self, req: &Request) -> Option<Response> {
        let path = req.uri().path();
        let api = path == "/api/v1" || path.starts_with("/api/v1/");
        // 1. The host: the `Host` header, and the authority of an absolute request URI (HTTP/2's
        //    `:authority`) when there is one — both must be ours.
        let host = req.headers().get(header::HOST).map(|h| h.to_str().unwrap_or("\u{0}"));
        let authority = req.uri().authority().map(|a| a.as_str());
        let hosts_ok = (host.is_some() || authority.is_some())
            && host.is_none_or(|h| self.allows_host(h))
            && authority.is_none_or(|a| self.allows_host(a));
        if !hosts_ok && path != "/healthz" && path != "/readyz" {
            return Some(
                (
                    StatusCode::MISDIRECTED_REQUEST,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "421 Misdirected Request: this Pergola Stages server does not answer to that host name. \
                     Open the dashboard at its own address (see PERGOLA_PUBLIC_URL).\n",
                )
                    .into_response(),
            );
        }
        // 2. Changes only from the dashboard's own pages. Requests with neither header — the CLI,
        //    curl, scripts — pass here; one the session cookie authenticates is refused by
        //    `auth::authenticate` (only token-authenticated ones may omit both).
        if !req.method().is_safe() {
            let headers = req.headers();
            let why = if let Some(site) = headers.get(SEC_FETCH_SITE) {
                let site = site.to_str().unwrap_or("?");
                (!matches!(site, "same-origin" | "none"))
                    .then(|| format!("This request comes from another site (Sec-Fetch-Site: {site})."))
            } else {
                None
            };
            let why = why.or_else(|| {
                let origin = headers.get(header::ORIGIN)?;
                let origin = origin.to_str().unwrap_or("?");
                (!self.allows_origin(origin)).then(|| format!("This request comes from another origin ('{origin}')."))
            });
            if let Some(why) = why {
                let message = format!("{why} Changes are accepted only from the dashboard's own pages.");
                return Some(forbidden(api, message));
            }
        }
        // 3. The body's announced size (an upload has a limit of its own).
        let too_large = !has_own_body_limit(req)
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|l| l > BODY_LIMIT as u64);
        if too_large {
            return Some(
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("413 Payload Too Large: request bodies are limited to {BODY_LIMIT} bytes.\n"),
                )
                    .into_response(),
            );
        }
        None
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        let csp = HeaderValue::from_str(&self.content_security_policy(None)).expect("the policy is ASCII");
        headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp);
        headers.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
        headers.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
        headers.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    }
}

/// Whether the request is a build's upload — `POST /api/v1/projects/{project}/builds` with
/// `Content-Type: application/gzip` or `application/zstd` —, whose body the upload limits
/// itself (the artifact limit, not [`BODY_LIMIT`]).
pub fn has_own_body_limit(req: &Request) -> bool {
    let archive = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(pergola_core::artifacts::Compression::from_content_type)
        .is_some();
    let upload_path = req
        .uri()
        .path()
        .strip_prefix("/api/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/builds"))
        .is_some_and(|project| !project.is_empty() && !project.contains('/'));
    archive && upload_path && req.method() == axum::http::Method::POST
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

fn forbidden(api: bool, message: String) -> Response {
    if api {
        ApiError(Error::forbidden(message)).into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("403 Forbidden: {message}\n"),
        )
            .into_response()
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(guard, pergola_api::guard::guard)`.
pub async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let mut response = match guard.refusal(&req) {
        Some(refused) => {
            tracing::debug!(method = %req.method(), path = req.uri().path(), status = refused.status().as_u16(), "request refused by the guard");
            refused
        }
        None if has_own_body_limit(&req) => next.run(req).await,
        None => {
            let req = req.map(|body| Body::new(http_body_util::Limited::new(body, BODY_LIMIT)));
            next.run(req).await
        }
    };
    guard.add_headers(response.headers_mut());
    response
}
