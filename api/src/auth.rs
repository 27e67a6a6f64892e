//! Who is asking: one middleware ([`authenticate`]) in front of the dashboard and the REST API
//! finds the signed-in [`Caller`], and one extractor ([`User`]) hands handlers the services as
//! that caller.
//!
//! - `Authorization: Bearer pgt_…` (an API token) is tried first; a bearer that is not a live
//!   token answers **401** at once, whatever else the request carries. `Bearer pgf_…` (a
//!   build-fetch token) signs nobody in: it only lets its bearer download the one release's
//!   build it names.
//! - Otherwise the session cookie [`SESSION_COOKIE`] (the dashboard's). A change (any method
//!   that is not safe) authenticated by the cookie must say where it comes from — `Origin` or
//!   `Sec-Fetch-Site`, which every browser sends — or it is refused with **403**: the guard has
//!   already refused those from another origin, so a forged cross-site request never runs.
//! - A request without either is anonymous: REST handlers answer **401** problem+json
//!   (`urn:pergola:problem:unauthenticated`, `WWW-Authenticate: Bearer`), dashboard pages
//!   redirect to `/login` (the server's `require_sign_in`).

use crate::problem::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pergola_core::services::{Acting, FETCH_TOKEN_PREFIX};
use pergola_core::Services;
use pergola_domain::Error;
use std::net::SocketAddr;

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "pergola_session";

pub use pergola_core::services::Authenticated;

/// The client's address (the socket's peer), as the audit trail and the sign-in throttle see it.
pub fn client_address<B>(req: &axum::http::Request<B>) -> String {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The middleware: puts [`Authenticated`] in the request's extensions (once: a request that
/// already has it passes through).
pub async fn authenticate(State(services): State<Services>, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Authenticated>().is_some() {
        return next.run(req).await;
    }
    let address = client_address(&req);
    let headers = req.headers();
    let found = if let Some(token) = bearer(headers).filter(|t| t.starts_with(FETCH_TOKEN_PREFIX)) {
        match services.build_grant(token) {
            Some(grant) => Authenticated::BuildFetch(grant),
            None => {
                let e = Error::new(
                    pergola_domain::ErrorKind::Unauthenticated,
                    "The build-fetch token is not valid: it has ended, or this server never issued it.",
                );
                return ApiError(e).into_response();
            }
        }
    } else if let Some(token) = bearer(headers) {
        match services.token_caller(token, Some(&address)).await {
            Ok(Some(caller)) => Authenticated::Token(caller),
            Ok(None) => {
                let e = Error::new(
                    pergola_domain::ErrorKind::Unauthenticated,
                    "The API token is not valid: it was revoked, has expired or never existed. Sign in again \
                     (pergola login).",
                );
                return ApiError(e).into_response();
            }
            Err(e) => return ApiError(e).into_response(),
        }
    } else if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        match services.session_caller(&secret, Some(&address)).await {
            Ok(Some(caller)) => {
                let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
                let says_where = headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site");
                if !safe && !says_where {
                    return ApiError(Error::forbidden(
                        "A change made with the dashboard's session must come from the dashboard (no Origin).",
                    ))
                    .into_response();
                }
                Authenticated::Session { caller, secret }
            }
            Ok(None) => Authenticated::Anonymous,
            Err(e) => return ApiError(e).into_response(),
        }
    } else {
        Authenticated::Anonymous
    };
    req.extensions_mut().insert(found);
    next.run(req).await
}

/// The services as the signed-in caller; 401 for an anonymous request.
pub struct User(pub Acting);

impl FromRequestParts<Services> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authenticated>().and_then(Authenticated::caller) {
            Some(caller) => Ok(User(services.acting(caller.clone()))),
            None => Err(ApiError(Error::unauthenticated())),
        }
    }
}

/// How the request was authenticated (for signing out).
pub struct Auth(pub Authenticated);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Auth(parts.extensions.get::<Authenticated>().cloned().unwrap_or(Authenticated::Anonymous)))
    }
}

/// The `Set-Cookie` value of a new session: HttpOnly, SameSite=Lax, the whole site, for the
/// session's lifetime; `Secure` when the dashboard is served over https.
pub fn session_cookie(secret: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}
