//! The HTTP listener: our own accept loop over hyper's HTTP/1 connections (axum's `serve` has
//! no knobs for what follows), so that hostile clients cannot take the server down.
//!
//! - **Header-read timeout** ([`HEADER_READ_TIMEOUT`]): a client must send a request's whole
//!   head within it, from the first request of a connection on and again for each next one on
//!   a kept-alive connection; else the connection is closed (a slowloris client that never
//!   finishes its headers, or an idle connection, holds nothing for long).
//! - **A cap on a request's head** ([`MAX_HEAD_BYTES`]): a larger one is answered 431.
//! - **A cap on connections** ([`MAX_CONNECTIONS`]): beyond it, new connections are not
//!   accepted — they wait in the system's listen queue and are served as soon as others close.
//!   With the timeout above, a slot taken by a silent client is free again within it.
//! - **A cap per client** ([`MAX_CONNECTIONS_PER_CLIENT`], per address, per /64 for IPv6; a
//!   trusted reverse proxy has none): one visitor cannot take every slot; beyond it a new
//!   connection is answered 429 and closed.
//! - **A request body must keep coming** ([`BODY_IDLE_TIMEOUT`]): a handler waiting for a
//!   body that stopped (a `Content-Length` promised and never sent) gets an error after it, and
//!   the connection closes.
//! - **An answer must be taken** ([`WRITE_STALL_TIMEOUT`]): a client that stops reading (a
//!   response or a stream it asked for left unread, its window full) has its connection closed
//!   once a write has waited that long. Only a write's wait counts: a live stream with nothing
//!   to say, a WebSocket at rest, are not cut off.
//! - Every request gets its peer address (`ConnectInfo<SocketAddr>`) and where it comes from
//!   (`ClientAddress`: the peer, or behind a trusted reverse proxy the visitor it names in
//!   `X-Forwarded-For` — what the sign-in throttle, the audit trail and the share-link proxy
//!   use), and protocol upgrades (WebSockets) work: once upgraded, a
//!   connection leaves the cap (the share-link proxy caps its splices itself).
//! - **Graceful shutdown**: when `shutdown` completes, the listener closes, each connection
//!   finishes its request in flight and closes; those still busy after [`DRAIN_TIMEOUT`] are
//!   dropped.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use pergola_api::auth::{client_ip, ClientAddress};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// How long a client has to send a request's head (request line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The most a request's head (request line and headers) may take, in bytes: a larger one gets
/// **431** and the connection closes (hyper checks when a read leaves the head incomplete, so
/// a head may go past it by what one read brings, never to twice it). Browsers send a few KiB (cookies included); hyper's
/// default, about 400 KiB per connection, would let a thousand slow clients hold 400 MiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How many connections are served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// How many connections one client (an address; an IPv6 /64) may hold at once. A browser opens
/// at most 6 to one server; this leaves room for a team behind one NAT.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 128;
/// How long a request's body may pause between two pieces once its handler reads it.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write to a client may wait for the client to read.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long requests in flight may take to finish once the server shuts down.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`serve`] allows (tests use small values), and whom it believes.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub body_idle_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub drain_timeout: Duration,
    /// The reverse proxies whose `X-Forwarded-For` names the client (`PERGOLA_TRUSTED_PROXIES`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
            trusted_proxies: Arc::from([]),
        }
    }
}

/// The connection cap that fits this process's limit of open files: `max_connections`, or half
/// the limit if that is less (each connection takes a file descriptor, and so do the database,
/// the components' pipes and the proxy's connections to them). The limit is not raised here:
/// components inherit it, and some expect the usual 1024 (`select`); raise it where the server
/// is started (`ulimit -n`, systemd's `LimitNOFILE=`).
pub fn connections_for_open_files(max_connections: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the one struct given, which is ours.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return max_connections;
    }
    let fit = usize::try_from(limit.rlim_cur / 2).unwrap_or(usize::MAX).max(16);
    if fit < max_connections {
        tracing::warn!(
            open_files = limit.rlim_cur,
            connections = fit,
            "the limit of open files is low: fewer connections are served at once (raise `ulimit -n`)"
        );
    }
    max_connections.min(fit)
}

/// Blocks of 1 MiB and more get memory of their own from the system, given back when they
/// are freed. glibc's default moves that threshold up to the largest block freed so far (up to
/// 32 MiB): the 19 MiB that Argon2id hashes a password in would, after the first sign-in,
/// come from the heap and stay with the process for good.
pub fn give_large_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one of the allocator's parameters; it touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module's text).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    // Tells every connection to finish its request in flight and close.
    let (closing, closed) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let per_client = PerClient::default();
    // When the cap, a client's cap, and a failure to accept were last reported (at most once a
    // minute each).
    let (mut reported, mut failed): (Option<tokio::time::Instant>, Option<tokio::time::Instant>) = (None, None);
    let mut crowded: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A free slot first: without one, nothing more is accepted.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if reported.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        connections = max_connections,
                        "the connection cap is reached: new connections wait until others close"
                    );
                    reported = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was accepted: wait
                    // a moment rather than spin (and say so at most once a minute).
                    if failed.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        failed = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let trusted = limits.trusted_proxies.clone();
        let proxy = trusted.iter().any(|net| net.contains(&peer.ip()));
        let held = match proxy {
            true => None,
            false => match per_client.take(peer.ip(), limits.max_connections_per_client) {
                Some(held) => Some(held),
                None => {
                    if crowded.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(
                            %peer,
                            cap = limits.max_connections_per_client,
                            "a client holds as many connections as one may: more are refused (behind a reverse proxy, \
                             name it in PERGOLA_TRUSTED_PROXIES)"
                        );
                        crowded = Some(tokio::time::Instant::now());
                    }
                    // The refusal holds its slot (and so its file descriptor counts) while it lasts.
                    tokio::spawn(async move {
                        refuse_crowded(stream).await;
                        drop(slot);
                    });
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_stall_timeout));
        let app = app.clone();
        let body_idle = limits.body_idle_timeout;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let client = client_ip(peer.ip(), req.headers(), &trusted);
            // A request without a body keeps saying so (the timeout's wrapper would not: the
            // share proxy would then send its component an empty chunked body).
            let mut req = req.map(|body| match hyper::body::Body::is_end_stream(&body) {
                true => axum::body::Body::new(body),
                false => axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_idle, body)),
            });
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(ClientAddress(client));
            app.clone().oneshot(req)
        });
        let connection = http.serve_connection(TokioIo::new(Box::pin(stream)), service).with_upgrades();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = closed.wait_for(|closing| *closing).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop((slot, held));
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every slot back: every connection has closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(timeout = ?limits.drain_timeout, "requests still in flight at shutdown were dropped");
    }
}

/// The connections each client holds (see [`MAX_CONNECTIONS_PER_CLIENT`]).
#[derive(Clone, Default)]
pub(crate) struct PerClient(pergola_core::places::CountedPlaces);

/// One connection of a client, given back when dropped.
pub(crate) type Held = pergola_core::places::Place;

impl PerClient {
    /// One more connection for the client at `ip`, unless it holds `cap` already.
    pub(crate) fn take(&self, ip: std::net::IpAddr, cap: usize) -> Option<Held> {
        self.0.take(&client_key(ip).to_string(), cap.max(1))
    }
}

/// Who a connection counts against: the IPv4 address (an IPv4-mapped IPv6 one as IPv4), or
/// the IPv6 /64 (one host is given a whole /64).
fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)).into(),
        },
        v4 => v4,
    }
}

/// Tells a client over its cap so, and closes (within 200 ms, whatever it does). What the
/// client sent is read and dropped until it closes too: closing with it unread would reset the
/// connection, and the client might never see the answer.
async fn refuse_crowded(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWER: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 45\r\nconnection: close\r\n\r\nToo many connections from your address: wait.";
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let _ = stream.write_all(ANSWER).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    /// Serves a small app with `limits`; the address and what ends it.
    async fn server(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
            .route("/client", get(|req: axum::extract::Request| async move { pergola_api::auth::client_address(&req) }))
            .route("/echo", axum::routing::post(|body: String| async move { body }))
            .route(
                "/empty",
                axum::routing::delete(|req: axum::extract::Request| async move {
                    format!("ends at once: {}", hyper::body::Body::is_end_stream(req.body()))
                }),
            )
            .route(
                "/endless",
                get(|| async {
                    let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
                    let chunks = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                    axum::body::Body::from_stream(chunks)
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "slow"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    /// One request on a fresh connection; the whole answer.
    async fn get_raw(addr: SocketAddr, path: &str) -> (String, SocketAddr) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        (answer, local)
    }

    /// Reads until the server closes the connection (or `within` passes: `None`).
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
        let mut seen = Vec::new();
        tokio::time::timeout(within, async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .ok()?;
        Some(String::from_utf8_lossy(&seen).into_owned())
    }

    fn limits(header_read_timeout: Duration, max_connections: usize) -> Limits {
        Limits { header_read_timeout, max_connections, drain_timeout: Duration::from_secs(5), ..Limits::default() }
    }

    /// The body of a GET of `path` with `headers` (raw lines) on a fresh connection.
    async fn body_of(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_visitor_can_name_another_address_only_through_a_trusted_proxy() {
        let forged = "X-Forwarded-For: 203.0.113.9\r\n";
        // No proxy trusted: the peer, whatever the request says.
        let (addr, _stop, _task) = server(limits(Duration::from_secs(5), 16)).await;
        assert_eq!(body_of(addr, "/client", forged).await, "127.0.0.1");
        assert_eq!(body_of(addr, "/client", "").await, "127.0.0.1");
        // Behind a trusted proxy (here: whatever connects from 127.0.0.1), the visitor it names;
        // an address the visitor put in front of it is not believed.
        let trusted = Limits {
            trusted_proxies: pergola_core::config::networks("127.0.0.1").unwrap().into(),
            ..limits(Duration::from_secs(5), 16)
        };
        let (addr, _stop, _task) = server(trusted).await;
        assert_eq!(body_of(addr, "/client", forged).await, "203.0.113.9");
        assert_eq!(body_of(addr, "/client", "X-Forwarded-For: 1.2.3.4, 203.0.113.9\r\n").await, "203.0.113.9");
        assert_eq!(body_of(addr, "/client", "").await, "127.0.0.1");
    }

    #[tokio::test]
    async fn a_slowloris_client_is_cut_off_while_others_are_served() {
        let (addr, _stop, _task) = server(limits(Duration::from_millis(500), 16)).await;
        // Half a head, and then nothing; and a connection that never says a word.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let (answer, _) = get_raw(addr, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");
        for stream in [&mut slow, &mut silent] {
            let answer = closed_within(stream, Duration::from_secs(3)).await.expect("cut off after the timeout");
            assert!(!answer.contains("200 OK"), "{answer}");
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
        // Trickling the rest of the head a byte at a time does not buy more time either.
        let mut trickle = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let cut = async {
            for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if trickle.write_all(&[*byte]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        assert!(cut.await, "the connection was closed while the head trickled in");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431_and_the_server_goes_on() {
        let (addr, _stop, _task) = server(limits(Duration::from_secs(5), 16)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // hyper checks the limit when a read leaves the head incomplete: a head may go past it
        // by what one read brings, never to twice it.
        let huge = "a".repeat(2 * MAX_HEAD_BYTES);
        let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: {huge}\r\n\r\n");
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = closed_within(&mut stream, Duration::from_secs(3)).await.expect("answered and closed");
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        // A head of ordinary size (big cookies included) is fine.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let cookie = "c".repeat(16 * 1024);
        let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nCookie: a={cookie}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = closed_within(&mut stream, Duration::from_secs(3)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_stops_sending_a_body_or_reading_an_answer_frees_its_slot() {
        let limits = Limits {
            body_idle_timeout: Duration::from_millis(500),
            write_stall_timeout: Duration::from_millis(500),
            ..limits(Duration::from_secs(5), 2)
        };
        let (addr, _stop, _task) = server(limits).await;
        // A body promised and never sent; an endless answer never read: both slots taken.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        silent.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc").await.unwrap();
        let mut deaf = TcpStream::connect(addr).await.unwrap();
        deaf.write_all(b"GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let (answer, _) = tokio::time::timeout(Duration::from_secs(10), get_raw(addr, "/"))
            .await
            .expect("a slot is given back once a client stalls");
        assert!(answer.ends_with("hello"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let answer = closed_within(&mut silent, Duration::from_secs(3)).await.expect("the silent client is cut off");
        assert!(!answer.contains("200 OK"), "the handler never saw a whole body: {answer}");
        // A body that keeps coming, however slowly overall, is read whole.
        let mut steady = TcpStream::connect(addr).await.unwrap();
        steady
            .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        for byte in b"ping" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            steady.write_all(&[*byte]).await.unwrap();
        }
        let answer = closed_within(&mut steady, Duration::from_secs(3)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ping"), "{answer}");
    }

    #[tokio::test]
    async fn a_request_without_a_body_still_says_so() {
        // What the share proxy forwards: a body that says it is over is sent as none at all.
        let (addr, _stop, _task) = server(limits(Duration::from_secs(5), 16)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"DELETE /empty HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = closed_within(&mut stream, Duration::from_secs(3)).await.unwrap();
        assert!(answer.ends_with("ends at once: true"), "{answer}");
    }

    #[tokio::test]
    async fn one_client_cannot_take_every_slot_unless_it_is_a_trusted_proxy() {
        let capped = Limits { max_connections_per_client: 2, ..limits(Duration::from_secs(5), 16) };
        let (addr, _stop, _task) = server(capped.clone()).await;
        let mut idle = vec![TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (answer, _) =
            tokio::time::timeout(Duration::from_secs(3), get_raw(addr, "/")).await.expect("answered at once");
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        drop(idle.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get_raw(addr, "/").await.0.ends_with("hello"), "a connection closed gives its place back");
        // Every visitor behind a trusted proxy comes through its connections.
        let trusted = Limits { trusted_proxies: pergola_core::config::networks("127.0.0.1").unwrap().into(), ..capped };
        let (addr, _stop, _task) = server(trusted).await;
        let _idle = [TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get_raw(addr, "/").await.0.ends_with("hello"));
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn the_cap_leaves_half_the_open_files_for_the_rest() {
        assert_eq!(connections_for_open_files(10), 10);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the one struct given, which is ours.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        if limit.rlim_cur != libc::RLIM_INFINITY {
            let half = usize::try_from(limit.rlim_cur / 2).unwrap().max(16);
            assert_eq!(connections_for_open_files(usize::MAX), half);
        }
    }

    #[tokio::test]
    async fn beyond_the_cap_connections_wait_and_are_served_once_others_close() {
        let (addr, _stop, _task) = server(limits(Duration::from_secs(20), 2)).await;
        let mut idle: Vec<TcpStream> = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(get_raw(addr, "/"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiting.is_finished(), "the cap holds: a third connection is not served yet");
        let released = Instant::now();
        drop(idle.pop());
        let (answer, _) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served").unwrap();
        assert!(answer.ends_with("hello"), "{answer}");
        assert!(released.elapsed() < Duration::from_secs(2), "served once a slot was free, not after a timeout");
        // Connections that come and go never use the slots up.
        for _ in 0..20 {
            assert!(get_raw(addr, "/").await.0.ends_with("hello"));
        }
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address_and_shutdown_lets_requests_in_flight_finish() {
        let (addr, stop, task) = server(limits(Duration::from_secs(5), 16)).await;
        let (answer, local) = get_raw(addr, "/peer").await;
        assert!(answer.ends_with(&local.to_string()), "{answer} / {local}");
        let slow = tokio::spawn(get_raw(addr, "/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let (answer, _) = slow.await.unwrap();
        assert!(answer.ends_with("slow"), "finished: {answer}");
        tokio::time::timeout(Duration::from_secs(3), task).await.expect("the server ended").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
    }
}
