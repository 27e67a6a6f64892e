//! Who may open a share link: the hand-off between the dashboard and a share host.
//!
//! A share host (`{component}.{stage}.{project}.{domain}`) cannot read the dashboard's
//! cookie, so for a members-only stage (the default):
//!
//! 1. the proxy answers a visitor without a valid `pergola_share` cookie with a 303 to the
//!    dashboard's [`vouch`] (`/share-auth?to={share URL}`), which signs them in first if need
//!    be (`require_sign_in`: `/login?next=…` and back);
//! 2. `/share-auth` checks the user may see the stage and mints a one-time code (60 s, bound to
//!    the user, the stage and the share host), then 303s to the share host's
//!    `/.pergola/auth?code=…&to=/path`;
//! 3. the proxy exchanges the code ([`Share::exchange`]) for the host-only cookie
//!    `pergola_share` (HttpOnly, SameSite=Lax, a secret of its own) and 303s to the path.
//!
//! Guest links (`/.pergola/guest?token=pgg_…`, [`Share::guest`]) set the host-only cookie
//! `pergola_guest` for as long as the link lives. Every proxied request is then judged by
//! `Services::share_access`.

use crate::session::{decode, encode, safe_next};
use crate::share::{page, Share};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use pergola_api::auth::{client_address, Authenticated};
use pergola_domain::share::{
    parse_share_host, share_cookie_name, share_host, GUEST_COOKIE, SHARE_AUTH_PATH, SHARE_COOKIE,
};

/// The decoded value of `name` in a query string.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| decode(v))
}

/// A share URL the dashboard may send someone back to: `(scheme, authority, project, stage,
/// component, path+query)`, only for a share host of this server (its domain and share port).
fn share_target(share: &Share, to: &str) -> Option<(String, String, String, String, String, String)> {
    let (scheme, rest) = to.split_once("://")?;
    // Over TLS, the code never goes out in the clear.
    if scheme != "https" && (scheme != "http" || share.secure) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains(['@', '\\']) || authority.is_empty() {
        return None;
    }
    let (component, stage, project) = parse_share_host(authority, &share.domain)?;
    let port = share.services.share_base().port;
    let default = if scheme == "https" { 443 } else { 80 };
    let given = match authority.rsplit_once(':') {
        Some((_, p)) => p.parse::<u16>().ok()?,
        None => default,
    };
    if given != port {
        return None;
    }
    let path = if path.starts_with('/') { safe_next(path.split('#').next().unwrap_or("/")) } else { "/".to_owned() };
    Some((scheme.to_owned(), authority.to_ascii_lowercase(), project, stage, component, path))
}

/// `GET /share-auth?to={share URL}` on the dashboard: vouches for the signed-in user to the
/// share host with a one-time code, if they may see that stage.
pub async fn vouch(State(share): State<Share>, req: Request) -> Response {
    let Some(caller) = req.extensions().get::<Authenticated>().and_then(Authenticated::caller).cloned() else {
        let target = req.uri().path_and_query().map_or(SHARE_AUTH_PATH, |pq| pq.as_str());
        return Redirect::to(&format!("/login?next={}", encode(target))).into_response();
    };
    let to = query_param(req.uri().query(), "to").unwrap_or_default();
    let Some((scheme, authority, project, stage, component, path)) = share_target(&share, &to) else {
        return page(StatusCode::BAD_REQUEST, "Not a share link", "This is not a share link of this server.");
    };
    let caller = pergola_core::services::Caller { address: Some(client_address(&req)), ..caller };
    let host = share_host(&component, &stage, &project, &share.domain);
    match share.services.acting(caller).share_code(&project, &stage, &host).await {
        Ok(code) => no_store(Redirect::to(&format!(
            "{scheme}://{authority}{}?code={code}&to={}",
            pergola_domain::share::AUTH_PATH,
            encode(&path)
        ))),
        Err(e) => page(
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::FORBIDDEN),
            "Cannot open this stage",
            &e.message,
        ),
    }
}

/// Not cached, and no `Referer` carrying a code or a token onwards.
fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A host-only cookie of a share host (no `Domain`: it goes back to this host only; over https
/// a `__Host-` one, see [`share_cookie_name`]).
fn share_cookie(base: &str, value: &str, max_age: i64, secure: bool) -> String {
    let name = share_cookie_name(base, secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

impl Share {
    /// `GET {share host}/.pergola/auth?code=…&to=/path`: the dashboard's code, exchanged once
    /// for the `pergola_share` cookie.
    pub(crate) async fn exchange(&self, component: &str, stage: &str, project: &str, req: Request) -> Response {
        if req.method() != Method::GET {
            return page(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "Open this link in a browser.");
        }
        let query = req.uri().query();
        let code = query_param(query, "code").unwrap_or_default();
        let to = safe_next(&query_param(query, "to").unwrap_or_default());
        let host = share_host(component, stage, project, &self.domain);
        let address = client_address(&req);
        match self.services.exchange_share_code(&code, project, stage, &host, Some(&address)).await {
            Ok(Some(secret)) => {
                let max_age = self.services.session_lifetime().num_seconds();
                let mut response = no_store(Redirect::to(&to));
                if let Ok(cookie) = HeaderValue::from_str(&share_cookie(SHARE_COOKIE, &secret, max_age, self.secure)) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                response
            }
            Ok(None) => no_store(page(
                StatusCode::FORBIDDEN,
                "Link not valid",
                "This sign-in link is not valid: it was used already, has expired or is for another stage. \
                 Open the share link again.",
            )),
            Err(e) => page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.message),
        }
    }

    /// `GET {share host}/.pergola/guest?token=pgg_…`: a live guest link of this stage sets the
    /// `pergola_guest` cookie (until the link expires) and goes to `/`; any other token is
    /// sent to sign in.
    pub(crate) async fn guest(&self, stage: &str, project: &str, req: Request) -> Response {
        let token = query_param(req.uri().query(), "token").unwrap_or_default();
        match self.services.guest_link_opens(&token, project, stage).await {
            Ok(Some(left)) => {
                let max_age = left.num_seconds().max(1);
                let mut response = no_store(Redirect::to("/"));
                if let Ok(cookie) = HeaderValue::from_str(&share_cookie(GUEST_COOKIE, &token, max_age, self.secure)) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                response
            }
            Ok(None) => no_store(self.sign_in(&req, "/")),
            Err(e) => page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.message),
        }
    }

    /// Someone the proxy does not know: a page request goes to the dashboard's `/share-auth`
    /// (signing in there if need be) and comes back to `path`; anything else is a 401.
    pub(crate) fn sign_in(&self, req: &Request, path: &str) -> Response {
        let page_request =
            matches!(*req.method(), Method::GET | Method::HEAD) && !req.headers().contains_key(header::UPGRADE);
        if !page_request {
            return page(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "This stage is open to the members of its project: open it in a browser and sign in.",
            );
        }
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let scheme = if self.secure { "https" } else { "http" };
        let to = format!("{scheme}://{host}{path}");
        Redirect::to(&format!("{}{SHARE_AUTH_PATH}?to={}", self.dashboard, encode(&to))).into_response()
    }
}
