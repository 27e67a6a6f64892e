//! Who is asking: one middleware ([`authenticate`]) in front of the dashboard and the REST API
//! finds the signed-in [`Caller`], and one extractor ([`User`]) hands handlers the services as
//! that caller.
//!
//! - `Authorization: Bearer pgt_…` (an API token) is tried first; a bearer that is not a live
//!   token answers **401** at once, whatever else the request carries. `Bearer pgf_…` (a
//!   build-fetch token) signs nobody in: it only lets its bearer download the one release's
//!   build it names.
//! - Otherwise the session cookie ([`SessionCookie`]: `pergola_session`, over https
//!   `__Host-pergola_session`; sent twice, it is ignored). A change (any method
//!   that is not safe) authenticated by the cookie must say where it comes from — `Origin` or
//!   `Sec-Fetch-Site`, which every browser sends — or it is refused with **403**: the guard has
//!   already refused those from another origin, so a forged cross-site request never runs.
//! - The cookie does not sign in a request a page of another site — or of another host of this
//!   site, such as a share link's app under the same domain — makes in the background
//!   (`Sec-Fetch-Site: same-site` or `cross-site`, other than a link followed to a page here — not
//!   a frame, an object, a prefetch): a stage's page cannot
//!   use a visitor's session to hold their live streams or read on their behalf.
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
use std::net::{IpAddr, SocketAddr};

/// The dashboard's session cookie over plain http.
pub const SESSION_COOKIE: &str = "pergola_session";
/// The dashboard's session cookie over https: a `__Host-` name, which a browser takes only from
/// this very host over https, with `Path=/` and no `Domain` — a page of another host of the site
/// (a share link's component whose share domain is under the dashboard's) cannot set it for the
/// dashboard to sign a visitor out, or into the attacker's account.
pub const HOST_SESSION_COOKIE: &str = "__Host-pergola_session";

/// The session cookie as this server names and reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCookie {
    /// Whether the dashboard is served over https (the cookie is then `Secure` and `__Host-`).
    pub secure: bool,
}

impl SessionCookie {
    pub fn name(self) -> &'static str {
        if self.secure {
            HOST_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The `Set-Cookie` value of a new session: HttpOnly, SameSite=Lax, the whole site, for
    /// the session's lifetime; `Secure` when the dashboard is served over https.
    pub fn set(self, secret: &str, max_age_secs: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}", self.name())
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn cleared(self) -> String {
        self.set("", 0)
    }

    /// The session's secret the request carries. None when the cookie comes more than once:
    /// this server sets one, for `/`; another (for a parent domain, or a narrower path) was set
    /// by another host of the site — over plain http a share link's component can — and which
    /// is whose cannot be told, so neither signs anyone in.
    pub fn read(self, headers: &HeaderMap) -> Option<String> {
        let mut found = cookies(headers, self.name());
        let first = found.next()?;
        if found.next().is_some() {
            tracing::warn!(
                cookie = self.name(),
                "a request carried the session cookie twice (another host of the site set one: is the share \
                 domain under the dashboard's domain?); it signs nobody in"
            );
            return None;
        }
        Some(first)
    }
}

pub use pergola_core::services::Authenticated;

/// Where a request comes from: its peer or, from a trusted reverse proxy, the visitor the
/// proxy names ([`client_ip`]). The listener puts it in every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client's address, as the audit trail and the sign-in throttle see it: the
/// [`ClientAddress`] the listener found, else the socket's peer.
pub fn client_address<B>(req: &axum::http::Request<B>) -> String {
    if let Some(ClientAddress(ip)) = req.extensions().get::<ClientAddress>() {
        return ip.to_string();
    }
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Where a request from `peer` comes from. From a peer outside `trusted`, the peer itself,
/// whatever the headers say. From a trusted proxy, the `X-Forwarded-For` entries are read from
/// the last one back (each proxy appends the address it heard from; only the ones after the
/// last untrusted address were written by proxies we trust): the first one that is not a
/// trusted proxy is the client. An entry that is no address (or a header that is not text)
/// ends the walk: the client is then the last address read.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let trusts = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !trusts(&client) {
        return client;
    }
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        // Entry by entry, as bytes: a proxy appends to what the visitor sent, so bytes that
        // are no text end the walk only where they are, left of what the proxies wrote.
        for entry in value.as_bytes().rsplit(|b| *b == b',') {
            let Some(ip) = std::str::from_utf8(entry).ok().and_then(forwarded_ip) else { return client };
            client = ip;
            if !trusts(&ip) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, IPv6 perhaps in brackets, perhaps with a port.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let bare = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')).unwrap_or(entry);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry.parse::<SocketAddr>().ok().map(|s| s.ip().to_canonical())
}

/// The value of cookie `name` in the request's `Cookie` headers (the first, if it comes twice).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers, name).next()
}

/// Every value of cookie `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The middleware: puts [`Authenticated`] in the request's extensions (once: a request that
/// already has it passes through).
pub async fn authenticate(
    State((services, session_cookie)): State<(Services, SessionCookie)>,
    mut req: Request,
    next: Next,
) -> Response {
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
    } else if let Some(secret) = session_cookie.read(headers).filter(|_| !from_another_sites_page(headers)) {
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

/// Whether a browser sends the request for a page of another site, or of another host of this
/// one, other than by following a link to a page here (a frame, an object, a prefetch: not).
fn from_another_sites_page(headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let visit = value("sec-fetch-mode") == Some("navigate")
        && value("sec-fetch-dest") == Some("document")
        && !headers.contains_key("sec-purpose");
    matches!(value("sec-fetch-site"), Some("same-site" | "cross-site")) && !visit
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn over_https_the_session_cookie_is_a_host_cookie_and_read_once_or_not_at_all() {
        let https = SessionCookie { secure: true };
        let http = SessionCookie { secure: false };
        // A `__Host-` cookie must be Secure, for `/`, and have no Domain, or browsers drop it.
        assert_eq!(
            https.set("pgs_x", 60),
            "__Host-pergola_session=pgs_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert_eq!(https.cleared(), "__Host-pergola_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure");
        assert_eq!(http.set("pgs_x", 60), "pergola_session=pgs_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::COOKIE, v.parse().unwrap());
            }
            headers
        };
        let both = headers(&["a=1; pergola_session=plain; __Host-pergola_session=host"]);
        assert_eq!(https.read(&both).as_deref(), Some("host"));
        assert_eq!(http.read(&both).as_deref(), Some("plain"));
        assert_eq!(https.read(&headers(&["pergola_session=plain"])), None, "the plain name is not read over https");
        for twice in [&["pergola_session=a; pergola_session=b"][..], &["pergola_session=a", "pergola_session=b"]] {
            assert_eq!(http.read(&headers(twice)), None, "{twice:?}");
        }
        assert_eq!(http.read(&headers(&["pergola_sessions=a; xpergola_session=b"])), None);
    }

    #[test]
    fn the_visitor_behind_trusted_proxies_is_the_last_address_no_trusted_proxy_wrote() {
        let trusted = pergola_core::config::networks("10.42.0.0/16, 192.168.1.5").unwrap();
        let proxy = ip("10.42.3.4");
        // No proxy trusted, or a peer that is none of them: the peer, whatever it claims.
        assert_eq!(client_ip(proxy, &forwarded(&["203.0.113.9"]), &[]), proxy);
        let stranger = ip("198.51.100.7");
        assert_eq!(client_ip(stranger, &forwarded(&["203.0.113.9"]), &trusted), stranger);
        // The proxy names the visitor.
        assert_eq!(client_ip(proxy, &forwarded(&["203.0.113.9"]), &trusted), ip("203.0.113.9"));
        // A visitor who sends an X-Forwarded-For of their own: the proxy appended the real one.
        let forged = forwarded(&["1.2.3.4, 10.42.9.9, 203.0.113.9"]);
        assert_eq!(client_ip(proxy, &forged, &trusted), ip("203.0.113.9"));
        // Two trusted proxies in a row (a load balancer, then the Ingress), headers appended as
        // lines of their own.
        let chain = forwarded(&["1.2.3.4", "203.0.113.9, 192.168.1.5"]);
        assert_eq!(client_ip(proxy, &chain, &trusted), ip("203.0.113.9"));
        // Every hop trusted: the first one.
        assert_eq!(client_ip(proxy, &forwarded(&["10.42.0.1, 10.42.0.2"]), &trusted), ip("10.42.0.1"));
        // No header: the proxy itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        // Garbage ends the walk at the last address read (never an address left of it).
        let garbage = forwarded(&["1.2.3.4, unknown, 192.168.1.5"]);
        assert_eq!(client_ip(proxy, &garbage, &trusted), ip("192.168.1.5"));
        assert_eq!(client_ip(proxy, &forwarded(&["1.2.3.4, "]), &trusted), proxy);
        // IPv6, bracketed with a port, and an IPv4 peer seen through a dual-stack socket.
        assert_eq!(client_ip(proxy, &forwarded(&["[2001:db8::7]:51234"]), &trusted), ip("2001:db8::7"));
        assert_eq!(client_ip(proxy, &forwarded(&["203.0.113.9:443"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("::ffff:10.42.3.4"), &forwarded(&["203.0.113.9"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(proxy, &forwarded(&["[2001:db8::7]"]), &trusted), ip("2001:db8::7"));
        // Bytes that are no text, sent by the visitor, then appended to by the proxy: the
        // proxy's entry still counts.
        let mut raw = HeaderMap::new();
        raw.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").unwrap());
        assert_eq!(client_ip(proxy, &raw, &trusted), ip("203.0.113.9"));
    }
}
