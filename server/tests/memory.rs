//! The real server binary's memory: signing in (Argon2id works in 19 MiB) does not leave the
//! server that much bigger for good.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{free_port, healthy};

const PASSWORD: &str = "correct horse battery";

/// The process's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn signing_in_does_not_leave_the_server_twenty_megabytes_bigger() {
    let dir = std::env::temp_dir().join(format!("pergola-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let server = Command::new(env!("CARGO_BIN_EXE_pergola-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PERGOLA_DATA_DIR", &dir)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("PERGOLA_ADMIN_USER", "admin")
        .env("PERGOLA_ADMIN_PASSWORD", PASSWORD)
        .env("PERGOLA_SANDBOX", "off")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Killed(server);
    let pid = server.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "the server did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    let login = format!(r#"{{"username":"admin","password":"{PASSWORD}"}}"#);
    let host = format!("127.0.0.1:{port}");
    let request = |method: &str, path: &str, body: &str| common::request(port, &host, method, path, body);
    // The first sign-in sets up what any request needs once (the database's caches, the
    // runtime's threads); the ones after it show what signing in keeps.
    let answer = request("POST", "/api/v1/login", &login);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(pid);
    for _ in 0..4 {
        let answer = request("POST", "/api/v1/login", &login);
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    let grown = after.saturating_sub(before) as f64 / (1 << 20) as f64;
    assert!(grown < 8.0, "the server grew by {grown:.1} MiB over four sign-ins ({before} → {after} bytes)");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
