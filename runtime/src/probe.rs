//! The HTTP health probe: `GET path` on the component's port; 2xx is healthy.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an answer a probe reads.
const MAX_ANSWER: usize = 64 * 1024;

/// Whether `GET http://127.0.0.1:{port}{path}` answers 2xx within `timeout`.
pub async fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pergola-probe\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        // Read the whole (bounded) answer: hanging up mid-response makes servers log errors.
        let mut answer = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || answer.len() >= MAX_ANSWER {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        let status =
            String::from_utf8_lossy(&answer[..answer.len().min(64)]).split_whitespace().nth(1)?.parse::<u16>().ok()?;
        Some((200..300).contains(&status))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}
