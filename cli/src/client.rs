//! The HTTP side: JSON requests to the REST API, problem+json errors turned into one line.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// Why a command failed, said in one line.
pub struct Failure(String);

impl Failure {
    pub fn new(message: String) -> Self {
        Failure(message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().expect("an HTTP client");
        Self { base: base.trim_end_matches('/').to_owned(), http }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.get(self.url(path)))
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
        let response = request.send().map_err(|e| {
            Failure(format!(
                "cannot reach the Pergola server at {} ({}). Is it running? Set --server or PERGOLA_URL.",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = response.status();
        let text = response.text().map_err(|e| Failure(format!("the server's answer could not be read: {e}")))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                Failure(format!("unexpected answer from the server ({e}); is {} a Pergola server?", self.base))
            });
        }
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("the server answered {status}"));
        Err(Failure(detail))
    }
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
