//! The HTTP side: JSON requests to the REST API with the bearer token, problem+json errors
//! turned into one line.

use pergola_domain::logs::escape_controls;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

/// What a 401 means for a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnUnauthorized {
    /// The token is missing, revoked or expired: sign in again.
    SignIn,
    /// The credentials given were refused (`pergola login`): the server's reason.
    Refused,
}

/// Why a command failed, said in one line.
pub struct Failure {
    message: String,
    /// The server answered 401.
    unauthorized: bool,
    /// The request field the server's problem names.
    field: Option<String>,
}

impl Failure {
    pub fn new(message: String) -> Self {
        Failure { message, unauthorized: false, field: None }
    }

    /// Whether the server refused the request over the input field `field`.
    pub fn is_for(&self, field: &str) -> bool {
        self.field.as_deref() == Some(field)
    }
}

/// The message with its control characters and direction-changing marks escaped: it often
/// holds the server's words (a problem's detail, where a redirect points), which must not reach
/// the terminal as escapes — and it stays one line.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_controls(&self.message))
    }
}

impl Client {
    /// A client for the server at `base`, sending `token` (if any) as `Authorization: Bearer`.
    ///
    /// Redirects are not followed (reqwest would): a `307`/`308` would send the same request —
    /// a sign-in's password, the bearer token's request body — to wherever the answer points,
    /// another host included. A redirect is reported instead (see `Client::send_raw`), naming
    /// the server to use.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self { base: crate::stored::normalize(base), token, http }
    }

    /// The server's URL, as signed in to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token sent, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A request whose 401 means the credentials it carries were refused, not "sign in again":
    /// signing in, and checking a token given to `pergola login`.
    pub fn post_credentials<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Failure> {
        self.send_as(self.http.post(self.url(path)).json(body), OnUnauthorized::Refused)
    }

    /// `GET` that answers a 401 with the server's reason (see [`Client::post_credentials`]).
    pub fn get_credentials<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send_as(self.http.get(self.url(path)), OnUnauthorized::Refused)
    }

    /// A `POST` without a body; `Ok(false)` when the server answered 401.
    pub fn post_unless_unauthorized(&self, path: &str) -> Result<bool, Failure> {
        match self.send_as::<()>(self.http.post(self.url(path)), OnUnauthorized::Refused) {
            Ok(()) => Ok(true),
            Err(e) if e.unauthorized => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.get(self.url(path)))
    }

    /// A GET whose answer is text (YAML, say), as it is.
    pub fn get_text(&self, path: &str) -> Result<String, Failure> {
        let response = self.send_raw(self.http.get(self.url(path)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = read_answer(response)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(self.refusal(status, &headers, &text, OnUnauthorized::SignIn))
        }
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Failure> {
        self.send(self.http.post(self.url(path)).json(body))
    }

    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Failure> {
        self.send(self.http.put(self.url(path)).json(body))
    }

    pub fn patch<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Failure> {
        self.send(self.http.patch(self.url(path)).json(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.delete(self.url(path)))
    }

    /// A POST that may take a while (a suspend waits for the components' grace period): shows
    /// a spinner on an interactive terminal until the server answers.
    pub fn post_waiting<T: DeserializeOwned>(&self, path: &str, doing: &str) -> Result<T, Failure> {
        self.waiting(self.http.post(self.url(path)), doing)
    }

    /// A POST with a JSON body that may take a while, with the same spinner.
    pub fn post_json_waiting<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        doing: &str,
    ) -> Result<T, Failure> {
        self.waiting(self.http.post(self.url(path)).json(body), doing)
    }

    /// A POST whose body is read from `body` while it is sent (chunked: no length is known
    /// beforehand), answered like the others. It may take as long as the upload does (an hour
    /// at most).
    pub fn post_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: reqwest::blocking::Body,
    ) -> Result<T, Failure> {
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(Duration::from_secs(3600))
            .body(body);
        self.send(request)
    }

    fn waiting<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        doing: &str,
    ) -> Result<T, Failure> {
        spin(doing, || self.send(request))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send<T: DeserializeOwned>(&self, request: reqwest::blocking::RequestBuilder) -> Result<T, Failure> {
        self.send_as(request, OnUnauthorized::SignIn)
    }

    /// Every item of a paged listing: `path` first, then each page its answer's
    /// `Link: <…>; rel="next"` names — only paths of this server's API, never another address
    /// (the token goes with each request) — until there is none or `enough` items arrived.
    pub fn get_all_pages<T: DeserializeOwned>(&self, path: &str, enough: Option<usize>) -> Result<Vec<T>, Failure> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(path) = next.take() {
            let (headers, page): (_, Vec<T>) = self.exchange(self.http.get(self.url(&path)), OnUnauthorized::SignIn)?;
            items.extend(page);
            pages += 1;
            if enough.is_some_and(|n| items.len() >= n) {
                break;
            }
            next = headers.get_all(reqwest::header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(next_link);
            if pages >= 100_000 {
                return Err(Failure::new("the server kept announcing further pages; stopped".to_owned()));
            }
        }
        Ok(items)
    }

    fn send_as<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        on_401: OnUnauthorized,
    ) -> Result<T, Failure> {
        self.exchange(request, on_401).map(|(_, body)| body)
    }

    /// Sends `request` and reads the answer's JSON body, with its headers.
    fn exchange<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        on_401: OnUnauthorized,
    ) -> Result<(reqwest::header::HeaderMap, T), Failure> {
        let response = self.send_raw(request)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = read_answer(response)?;
        if status.is_success() {
            // 204 No Content reads as JSON `null`: the unit type.
            let text = if text.trim().is_empty() { "null" } else { &text };
            return serde_json::from_str(text).map(|body| (headers, body)).map_err(|e| {
                Failure::new(format!("unexpected answer from the server ({e}); is {} a Pergola server?", self.base))
            });
        }
        Err(self.refusal(status, &headers, &text, on_401))
    }

    /// A GET whose answer is read line by line as it arrives (a followed log), each line handed
    /// to `each`, until the server ends it.
    pub fn get_lines(&self, path: &str, mut each: impl FnMut(&str) -> Result<(), Failure>) -> Result<(), Failure> {
        use std::io::{BufRead, Read};
        let response = self.send_raw(self.http.get(self.url(path)).timeout(Duration::from_secs(24 * 3600)))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let text = read_answer(response)?;
            return Err(self.refusal(status, &headers, &text, OnUnauthorized::SignIn));
        }
        let mut reader = std::io::BufReader::new(response);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Failure::new(format!("the server's answer broke off: {e}")))?;
            if read == 0 {
                return Ok(());
            }
            if line.len() as u64 > MAX_LINE_BYTES {
                return Err(too_large("a line of", MAX_LINE_BYTES));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if !text.trim().is_empty() {
                each(text)?;
            }
        }
    }

    /// Sends `request` with the token; a failure to reach the server (or one that cut an
    /// upload short) is said so, and so is a redirect (never followed).
    fn send_raw(&self, request: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, Failure> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().map_err(|e| {
            if e.is_body() {
                return Failure::new(format!(
                    "the server at {} closed the connection before the upload was complete ({})",
                    self.base,
                    root_cause(&e)
                ));
            }
            Failure::new(format!(
                "cannot reach the Pergola server at {} ({}). Is it running? Set --server or PERGOLA_URL.",
                self.base,
                root_cause(&e)
            ))
        })?;
        if response.status().is_redirection() {
            return Err(self.redirected(&response));
        }
        Ok(response)
    }

    /// What a redirect is reported as: where it points, and the `--server` that would reach it
    /// (the target up to the API's path: `http://h/api/v1/login` redirected to
    /// `https://h/api/v1/login` says `--server https://h`). The target is the server's text:
    /// it is escaped when printed, like every failure.
    fn redirected(&self, response: &reqwest::blocking::Response) -> Failure {
        let status = response.status();
        let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
            return Failure::new(format!(
                "the server at {} answered {status} without saying where to; is it a Pergola server?",
                self.base
            ));
        };
        let location = String::from_utf8_lossy(location.as_bytes()).trim().to_owned();
        let target = response.url().join(&location).map(|u| u.to_string()).unwrap_or(location);
        let server = match target.find("/api/v1/") {
            Some(api) => &target[..api],
            None => target.split(['?', '#']).next().unwrap_or(target.as_str()),
        };
        Failure::new(format!(
            "the server at {} answered with a redirect to {target}, which is not followed: if that is your \
             Pergola server, use --server {}",
            self.base,
            crate::stored::normalize(server)
        ))
    }

    /// The failure a refused request reports: the problem's detail, or what to do.
    fn refusal(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        text: &str,
        on_401: OnUnauthorized,
    ) -> Failure {
        let retry_after =
            headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
        let problem = serde_json::from_str::<serde_json::Value>(text).ok();
        let detail = problem
            .as_ref()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("the server answered {status}"));
        let field = problem.as_ref().and_then(|v| v["field"].as_str().map(str::to_owned));
        let message = match status.as_u16() {
            401 if on_401 == OnUnauthorized::SignIn => unauthorized_line(&self.base),
            429 => match retry_after {
                Some(wait) if wait.parse::<u64>().is_ok() => format!("{detail} (Retry-After: {wait} s)"),
                Some(wait) => format!("{detail} (Retry-After: {wait})"),
                None => detail,
            },
            _ => detail,
        };
        Failure { message, unauthorized: status.as_u16() == 401, field }
    }
}

/// The most of one answer the CLI reads (a page of a listing, a stage's objects, a refusal): a
/// server that sends more — hostile, or not a Pergola server — is refused, not read into memory.
pub const MAX_ANSWER_BYTES: u64 = 32 * 1024 * 1024;
/// The longest line of a followed answer (a log line is at most 16 KiB as the server keeps it).
pub const MAX_LINE_BYTES: u64 = 1024 * 1024;

/// An answer's body as text (not UTF-8 bytes replaced), at most [`MAX_ANSWER_BYTES`].
fn read_answer(response: reqwest::blocking::Response) -> Result<String, Failure> {
    use std::io::Read;
    if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(too_large("an answer of", MAX_ANSWER_BYTES));
    }
    let mut body = Vec::new();
    response
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| Failure::new(format!("the server's answer broke off: {e}")))?;
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(too_large("an answer of", MAX_ANSWER_BYTES));
    }
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn too_large(what: &str, limit: u64) -> Failure {
    Failure::new(format!(
        "the server sent {what} more than {} MiB, which is not read; is it a Pergola server?",
        limit / (1024 * 1024)
    ))
}

/// Refuses a server URL that is not `http://` or `https://` (`localhost:3000` would otherwise
/// fail as "relative URL without a base", or read as a URL of scheme `localhost:`), and warns —
/// one line on stderr — when it is plain `http://` to another machine than this one: the password
/// of `pergola login` and the API token of every command would cross the network unencrypted.
/// Not refused: a server on this machine, or on a trusted network, is commonly plain HTTP.
pub fn check_server(server: &str) -> Result<(), Failure> {
    if plain_http_to_another_machine(server)? {
        eprintln!(
            "warning: {} is plain http: your password and API token travel to it unencrypted; use https:// unless \
             the network is trusted.",
            escape_controls(server)
        );
    }
    Ok(())
}

/// Whether `server` is `http://` to a host that is not this machine (`localhost`, 127.0.0.0/8,
/// `::1`); a failure when it is not an `http(s)://` URL with a host.
fn plain_http_to_another_machine(server: &str) -> Result<bool, Failure> {
    let url = reqwest::Url::parse(server).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(host) = url.as_ref().and_then(|u| u.host_str()).filter(|h| !h.is_empty()) else {
        return Err(Failure::new(format!(
            "the server '{server}' is not an http:// or https:// URL: give it as --server https://HOST[:PORT] \
             (or PERGOLA_URL)."
        )));
    };
    let local = match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    Ok(url.as_ref().is_some_and(|u| u.scheme() == "http") && !local)
}

/// What a 401 says: no token, or one the server no longer accepts.
pub fn unauthorized_line(server: &str) -> String {
    format!("Not signed in, or your token was revoked or expired: run `pergola login --server {server}`.")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Runs `work`, with a spinner saying what it is `doing` on an interactive terminal.
pub fn spin<T>(doing: &str, work: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let spinner = std::io::stderr().is_terminal().then(|| {
        let done = done.clone();
        let doing = doing.to_owned();
        std::thread::spawn(move || {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut i = 0;
            std::thread::sleep(Duration::from_millis(150));
            while !done.load(Ordering::Relaxed) {
                eprint!("\r{} {doing}…", frames[i % frames.len()]);
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(80));
            }
            if i > 0 {
                eprint!("\r\x1b[2K");
            }
        })
    });
    let result = work();
    done.store(true, Ordering::Relaxed);
    if let Some(handle) = spinner {
        let _ = handle.join();
    }
    result
}

/// The path of a `Link` header's `rel="next"` target, if it is one of the API's own paths
/// (`</api/v1/…>`): an absolute URL or anything else is not followed.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        (next && target.starts_with("/api/v1/") && !target.contains("//") && !target.chars().any(char::is_whitespace))
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_needs_a_scheme_and_plain_http_elsewhere_than_here_is_warned_of() {
        for bad in ["localhost:3000", "127.0.0.1:3000", "pergola.example.com", "ftp://h", "http://", "/api", ""] {
            let err = plain_http_to_another_machine(bad).unwrap_err().to_string();
            assert!(err.contains("is not an http:// or https:// URL: give it as --server https://"), "{bad}: {err}");
        }
        for here in [
            "http://localhost:3000",
            "http://LOCALHOST",
            "http://127.0.0.1:3000",
            "http://127.8.9.10",
            "http://[::1]:3000",
            "https://pergola.example.com",
            "https://10.0.0.2:8443/pergola",
        ] {
            assert!(matches!(plain_http_to_another_machine(here), Ok(false)), "{here}");
        }
        for remote in ["http://pergola.example.com", "http://10.0.0.2:3000", "http://[2001:db8::1]", "http://0.0.0.0"] {
            assert!(matches!(plain_http_to_another_machine(remote), Ok(true)), "{remote}");
        }
    }

    #[test]
    fn a_refusal_s_detail_reaches_the_terminal_escaped() {
        let client = Client::new("http://127.0.0.1:9", None);
        let body = r#"{"status":422,"detail":"bad \u001b]52;c;AAAA\u0007 \u202e\u009b done"}"#;
        let failure = client.refusal(
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            &reqwest::header::HeaderMap::new(),
            body,
            OnUnauthorized::SignIn,
        );
        let shown = failure.to_string();
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202e}'), "{shown:?}");
        assert_eq!(shown, "bad \\u{1b}]52;c;AAAA\\u{7} \\u{202e}\\u{9b} done");
    }
}

#[cfg(test)]
mod link_tests {
    use super::next_link;

    #[test]
    fn only_the_apis_own_next_pages_are_followed() {
        assert_eq!(
            next_link(r#"</api/v1/projects/p/stages?limit=2&cursor=ab>; rel="next""#).as_deref(),
            Some("/api/v1/projects/p/stages?limit=2&cursor=ab")
        );
        assert_eq!(next_link(r#"</api/v1/a>; rel="prev", </api/v1/b>; rel="next""#).as_deref(), Some("/api/v1/b"));
        for hostile in [
            r#"<https://evil.example/api/v1/x>; rel="next""#,
            r#"<//evil.example/api/v1/x>; rel="next""#,
            r#"</api/v1//evil.example>; rel="next""#,
            r#"</login>; rel="next""#,
            r#"</api/v1/x>; rel="prev""#,
            r#"/api/v1/x; rel="next""#,
        ] {
            assert_eq!(next_link(hostile), None, "{hostile}");
        }
    }
}
