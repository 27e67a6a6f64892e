//! `pergola-demo web|worker|migrate|report`: the demo application Pergola offers to deploy.
//!
//! - `web` (service): serves a page on `$PORT` showing where it runs, the `GREETING` setting and
//!   a visit counter kept in `$PERGOLA_STORAGE_DATA` (so it survives suspend and redeploy);
//!   `/healthz` answers `ok`.
//! - `worker` (worker): every few seconds, notes the visit count it has seen in storage (a
//!   stand-in for a queue consumer); the page shows when it last did.
//! - `migrate` (job): records that it ran, then exits.
//! - `report` (cron): appends the visit count to a report file.
//!
//! Only the standard library: it builds in seconds and runs anywhere.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| "(not set)".into())
}

fn storage() -> PathBuf {
    PathBuf::from(std::env::var("PERGOLA_STORAGE_DATA").unwrap_or_else(|_| ".".into()))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn visits() -> u64 {
    std::fs::read_to_string(storage().join("visits")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn worker_seen() -> String {
    match std::fs::read_to_string(storage().join("worker-heartbeat")).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(at) => format!("last seen {} s ago", now().saturating_sub(at)),
        None => "not seen yet".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn respond(mut stream: TcpStream) -> std::io::Result<()> {
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? <= 2 {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = match path {
        "/healthz" => ("200 OK", "text/plain", "ok".to_owned()),
        "/" => {
            let count = visits() + 1;
            std::fs::write(storage().join("visits"), count.to_string())?;
            let body = format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Pergola demo</title></head>\
                 <body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto\">\
                 <h1>Pergola demo</h1><p>Running as component <b>{}</b> of stage <b>{}</b> in project <b>{}</b>.</p>\
                 <p>Greeting: <b>{}</b> (set <code>GREETING</code> in the stage's configuration, then redeploy).</p>\
                 <p>Visits: <b id=\"visits\">{count}</b> — kept on persistent storage across suspend and redeploy.</p>\
                 <p>Worker: {}.</p></body></html>",
                escape(&env("PERGOLA_COMPONENT")),
                escape(&env("PERGOLA_STAGE")),
                escape(&env("PERGOLA_PROJECT")),
                escape(&env("GREETING")),
                worker_seen(),
            );
            ("200 OK", "text/html; charset=utf-8", body)
        }
        _ => ("404 Not Found", "text/plain", "not found".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("web") => {
            let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
            let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("listen on PORT");
            println!("demo web listening on 127.0.0.1:{port}");
            for stream in listener.incoming().flatten() {
                if let Err(e) = respond(stream) {
                    eprintln!("request failed: {e}");
                }
            }
        }
        Some("worker") => {
            println!("demo worker started");
            let mut seen = visits();
            loop {
                std::fs::write(storage().join("worker-heartbeat"), now().to_string()).expect("write to storage");
                let count = visits();
                if count != seen {
                    println!("worker: {} new visit(s), {count} in all", count - seen);
                    seen = count;
                }
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
        }
        Some("migrate") => {
            std::fs::write(storage().join("migrated-at"), now().to_string()).expect("write to storage");
            println!("migration done");
        }
        Some("report") => {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(storage().join("report.log"))
                .expect("open report");
            writeln!(file, "{} visits={}", now(), visits()).expect("write report");
            println!("report written: {} visits", visits());
        }
        _ => {
            eprintln!("usage: pergola-demo web|worker|migrate|report");
            std::process::exit(2);
        }
    }
}
