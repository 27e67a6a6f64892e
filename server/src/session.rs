//! Signing in to the dashboard: the forms of `/login` and `/setup` post here (plain HTML forms:
//! they work before the page is hydrated, and without JavaScript), `/logout` ends the session,
//! and [`require_sign_in`] sends every page request of someone signed out to `/login?next=…`
//! (or, on a fresh instance, to `/setup`).
//!
//! Failures answer `303 See Other` back to the form with what went wrong in the query
//! (`error=wrong`, `error=throttled&wait=SECS`, …): the page shows the message. The REST API
//! (`POST /api/v1/login`) answers the same failures with 401 and 429 + `Retry-After`.

use axum::extract::FromRequest;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use pergola_api::auth::{client_address, Authenticated, SessionCookie};
use pergola_core::services::NewSession;
use pergola_core::Services;
use pergola_domain::ErrorKind;
use serde::Deserialize;

/// What the sign-in routes need.
#[derive(Clone)]
pub struct Sessions {
    pub services: Services,
    /// The session cookie's name and attributes (`Secure`, `__Host-` over https).
    pub cookie: SessionCookie,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Where to go after signing in: a path of this site (`/…`, not `//host` nor `/\host`), else
/// the home page — never another site.
pub fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A 303 that also sets the session cookie.
fn signed_in(sessions: &Sessions, session: NewSession, to: &str) -> Response {
    let max_age = sessions.services.session_lifetime().num_seconds();
    let cookie = sessions.cookie.set(&session.secret, max_age);
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /login`: signs in and goes to `next`; back to the form with the reason otherwise.
pub async fn login(State(sessions): State<Sessions>, req: Request) -> Response {
    let address = client_address(&req);
    let old = match req.extensions().get::<Authenticated>() {
        Some(Authenticated::Session { secret, .. }) => Some(secret.clone()),
        _ => None,
    };
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &()).await else {
        return Redirect::to("/login?error=malformed").into_response();
    };
    let next = safe_next(&form.next);
    match sessions.services.sign_in_session(&form.username, &form.password, &address).await {
        Ok(session) => {
            // A new session each time (no fixation); the one it replaces ends.
            if let Some(old) = old {
                let _ = sessions.services.end_session(&old).await;
            }
            signed_in(&sessions, session, &next)
        }
        Err(e) => {
            let reason = match (e.kind, e.retry_after) {
                (ErrorKind::TooManyRequests, Some(wait)) => format!("throttled&wait={wait}"),
                (ErrorKind::Unauthenticated, _) => "wrong".to_owned(),
                _ => "failed".to_owned(),
            };
            Redirect::to(&format!("/login?error={reason}&next={}", encode(&next))).into_response()
        }
    }
}

/// `POST /setup`: the first administrator, with the setup code from the log.
pub async fn setup(State(sessions): State<Sessions>, req: Request) -> Response {
    let address = client_address(&req);
    let Ok(Form(form)) = Form::<SetupForm>::from_request(req, &()).await else {
        return Redirect::to("/setup?error=malformed").into_response();
    };
    match sessions.services.complete_setup(&form.code, &form.username, &form.password, Some(&address)).await {
        Ok(session) => signed_in(&sessions, session, "/"),
        Err(e) if e.kind == ErrorKind::InvalidState => Redirect::to("/login").into_response(),
        Err(e) => {
            let field = e.field.clone().unwrap_or_default();
            let message = encode(&e.message);
            Redirect::to(&format!("/setup?error={}&message={message}", encode(&field))).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /invite`: creates the invited account and signs it in; back to the form otherwise.
pub async fn invite(State(sessions): State<Sessions>, req: Request) -> Response {
    let address = client_address(&req);
    let Ok(Form(form)) = Form::<InviteForm>::from_request(req, &()).await else {
        return Redirect::to("/login").into_response();
    };
    match sessions.services.accept_invitation(&form.token, &form.username, &form.password, Some(&address)).await {
        Ok(session) => signed_in(&sessions, session, "/"),
        Err(e) => {
            let token = encode(&form.token);
            Redirect::to(&format!("/invite/{token}?message={}", encode(&e.message))).into_response()
        }
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(sessions): State<Sessions>, req: Request) -> Response {
    if let Some(Authenticated::Session { secret, .. }) = req.extensions().get::<Authenticated>() {
        let _ = sessions.services.end_session(secret).await;
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&sessions.cookie.cleared()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Paths anyone may fetch: the sign-in pages and their posts, the wasm/JS/CSS bundle and
/// static files, the health check, and the REST API and server functions (which refuse
/// anonymous callers themselves, with 401).
fn is_open(path: &str) -> bool {
    matches!(path, "/login" | "/setup" | "/logout" | "/invite" | "/healthz" | "/readyz" | "/favicon.ico" | "/metrics")
        || path.starts_with("/invite/")
        || path.starts_with("/pkg/")
        || path.starts_with("/api/")
        || path.rsplit('/').next().is_some_and(|last| last.contains('.'))
}

/// Sends page requests of someone signed out to `/login?next=…` (a fresh instance: to
/// `/setup`), and someone signed in away from `/login` to where they were going.
pub async fn require_sign_in(State(services): State<Services>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let page = matches!(*req.method(), Method::GET | Method::HEAD);
    if !page {
        return next.run(req).await;
    }
    let signed_in = req.extensions().get::<Authenticated>().and_then(Authenticated::caller).is_some();
    match services.needs_setup().await {
        Ok(true)
            if path != "/setup"
                && !path.starts_with("/pkg/")
                && path != "/healthz"
                && path != "/readyz"
                && !path.contains('.') =>
        {
            return Redirect::to("/setup").into_response();
        }
        Ok(false) if path == "/setup" => return Redirect::to("/login").into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
        _ => {}
    }
    if path == "/login" && signed_in {
        let next = crate::share_auth::query_param(req.uri().query(), "next").unwrap_or_default();
        return Redirect::to(&safe_next(&next)).into_response();
    }
    if signed_in || is_open(&path) {
        return next.run(req).await;
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    Redirect::to(&format!("/login?next={}", encode(target))).into_response()
}

/// Percent-decodes a query value (`+` is a space); invalid escapes are kept as they are.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for (given, want) in [
            ("/projects/shop/stages/dev", "/projects/shop/stages/dev"),
            ("/projects/shop?tab=1", "/projects/shop?tab=1"),
            ("", "/"),
            ("https://evil.example/", "/"),
            ("//evil.example/x", "/"),
            ("/\\evil.example", "/"),
            ("/ok\r\nSet-Cookie: x=1", "/"),
            ("javascript:alert(1)", "/"),
        ] {
            assert_eq!(safe_next(given), want, "{given:?}");
        }
    }

    #[test]
    fn next_survives_the_query_round_trip() {
        let target = "/projects/my-shop/stages/qa?x=a b&y=é";
        assert_eq!(decode(&encode(target)), target);
    }
}
