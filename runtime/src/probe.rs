//! The HTTP health probe: `GET path` on the component's port; 2xx is healthy.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether `GET http://127.0.0.1:{port}{path}` answers 2xx within `timeout`.
pub async fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pergola-probe\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let status = std::str::from_utf8(&head[..read]).ok()?.split_whitespace().nth(1)?.parse::<u16>().ok()?;
        Some((200..300).contains(&status))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}
