//! What the tests of the real server binary share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server's whole answer to `method path` with a JSON `body`, asked as `host` (empty when
/// it does not answer).
pub fn request(port: u16, host: &str, method: &str, path: &str, body: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// Whether `/healthz` answers 200 — asked as a load balancer does, by the pod's address.
pub fn healthy(port: u16) -> bool {
    request(port, &format!("10.1.2.3:{port}"), "GET", "/healthz", "").starts_with("HTTP/1.1 200")
}
