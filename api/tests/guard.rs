//! The guard in front of the dashboard and the REST API: requests for a foreign host, changes
//! from another site or origin and oversized bodies are refused before any handler runs; every
//! response it passes carries the security headers.

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use pergola_api::guard::{guard, Guard, BODY_LIMIT};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const LISTEN: &str = "127.0.0.1:3000";
const SUSPEND: &str = "/api/v1/projects/shop/stages/main/suspend";
const SERVER_FN: &str = "/api/create_project12345";
const UPLOAD: &str = "/api/v1/projects/shop/builds";

/// A handler that reads its body as a stream (as the upload does) and answers its length, or
/// 413 when the body could not be read.
fn stream_len(
    calls: &Arc<AtomicUsize>,
) -> impl Fn(Body) -> std::pin::Pin<Box<dyn std::future::Future<Output = (StatusCode, String)> + Send>> + Clone {
    let calls = calls.clone();
    move |body: Body| {
        let calls = calls.clone();
        Box::pin(async move {
            use futures_util::StreamExt;
            calls.fetch_add(1, Ordering::SeqCst);
            let mut stream = body.into_data_stream();
            let mut len = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => len += c.len(),
                    Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, String::new()),
                }
            }
            (StatusCode::OK, len.to_string())
        })
    }
}

/// A router whose handlers count their calls, behind the guard.
fn app(public_url: Option<&str>) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = |calls: &Arc<AtomicUsize>| {
        let calls = calls.clone();
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            "done"
        }
    };
    let echo_len = {
        let calls = calls.clone();
        move |body: Bytes| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            body.len().to_string()
        }
    };
    let g = Guard::new(LISTEN.parse().unwrap(), public_url).unwrap();
    let router = Router::new()
        .route("/", get(count(&calls)))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(SUSPEND, post(count(&calls)))
        .route(SERVER_FN, post(count(&calls)))
        .route("/api/v1/echo", post(echo_len))
        .route(UPLOAD, post(stream_len(&calls)))
        .layer(axum::middleware::from_fn_with_state(g, guard));
    (router, calls)
}

async fn send(router: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(header::HOST, LISTEN);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
}

async fn body(response: Response) -> String {
    String::from_utf8(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
}

fn content_type(response: &Response) -> &str {
    response.headers().get(header::CONTENT_TYPE).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_and_reaches_nothing() {
    let (router, calls) = app(None);
    for host in [
        "evil.example",
        "evil.example:3000",
        "localhost:3001",
        "localhost",
        "127.0.0.1",
        "127.0.0.2:3000",
        "shop.localhost:3000",
        "",
        "localhost:3000@evil.example",
        "localhost.:3000",
    ] {
        for (method, path) in [("GET", "/"), ("POST", SUSPEND), ("POST", SERVER_FN)] {
            let r = send(&router, method, path, &[("host", host)]).await;
            assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{method} {path} for host '{host}'");
            assert!(content_type(&r).starts_with("text/plain"), "{host}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            let text = body(r).await;
            assert!(text.contains("does not answer to that host name") && !text.contains("done"), "{text}");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    // An absolute request URI names the host too; it must be ours as well.
    let r = send(&router, "GET", "http://evil.example/", &[]).await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_local_names_on_the_listen_port_are_answered() {
    let (router, calls) = app(None);
    for host in ["127.0.0.1:3000", "localhost:3000", "LocalHost:3000", "[::1]:3000"] {
        let r = send(&router, "GET", "/", &[("host", host)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // The listen address itself, whatever it is.
    let g = Guard::new("10.1.2.3:8080".parse().unwrap(), None).unwrap();
    assert!(g.allows_host("10.1.2.3:8080") && g.allows_host("localhost:8080") && !g.allows_host("10.1.2.3:3000"));
    let g = Guard::new("[2001:db8::7]:8080".parse().unwrap(), None).unwrap();
    assert!(g.allows_host("[2001:db8::7]:8080") && g.allows_origin("http://[2001:db8::7]:8080"));
}

#[tokio::test]
async fn the_probes_answer_whatever_the_host_and_nothing_else_does() {
    let (router, _) = app(None);
    let r = send(&router, "GET", "/healthz", &[("host", "10.0.0.9:3000")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await, "ok");
    let r = send(&router, "GET", "/readyz", &[("host", "10.0.0.9:3000")]).await;
    assert_eq!(body(r).await, "ready");
    for path in ["/healthz/", "/readyz/x", "/healthzz", "/api/v1/projects"] {
        let r = send(&router, "GET", path, &[("host", "10.0.0.9:3000")]).await;
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn a_change_from_another_origin_is_forbidden_and_changes_nothing() {
    let (router, calls) = app(None);
    for origin in [
        "http://evil.example",
        "null",
        "http://localhost:3001",
        "https://localhost:3000",
        "http://shop.localhost:3000",
        "http://localhost:3000/",
        "http://localhost:3000.evil.example",
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = send(&router, method, SUSPEND, &[("origin", origin)]).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} from {origin}");
            assert_eq!(content_type(&r), "application/problem+json");
            let problem: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
            assert_eq!(problem["type"], "urn:pergola:problem:forbidden");
            assert_eq!(problem["status"], 403);
            assert!(problem["detail"].as_str().unwrap().contains("another origin"), "{problem}");
        }
        // The dashboard's server functions: the same refusal, in plain text.
        let r = send(&router, "POST", SERVER_FN, &[("origin", origin)]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "server function from {origin}");
        assert!(content_type(&r).starts_with("text/plain"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
}

#[tokio::test]
async fn sec_fetch_site_other_than_same_origin_is_forbidden() {
    let (router, calls) = app(None);
    for site in ["cross-site", "same-site", "something-new"] {
        for path in [SUSPEND, SERVER_FN] {
            // Even with an Origin that would pass: the browser's word on the site wins.
            let r = send(&router, "POST", path, &[("sec-fetch-site", site), ("origin", "http://localhost:3000")]).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{site} {path}");
            let r = send(&router, "POST", path, &[("sec-fetch-site", site)]).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{site} {path}");
        }
    }
    let r = send(&router, "POST", SUSPEND, &[("sec-fetch-site", "cross-site")]).await;
    let problem: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
    assert_eq!(problem["type"], "urn:pergola:problem:forbidden");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    // same-origin passes, unless the Origin says otherwise.
    let r =
        send(&router, "POST", SERVER_FN, &[("sec-fetch-site", "same-origin"), ("origin", "http://evil.example")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    for headers in [
        &[("sec-fetch-site", "same-origin"), ("origin", "http://127.0.0.1:3000")][..],
        &[("sec-fetch-site", "same-origin")],
        &[("sec-fetch-site", "none")],
    ] {
        let r = send(&router, "POST", SERVER_FN, headers).await;
        assert_eq!(r.status(), StatusCode::OK, "{headers:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_dashboards_own_origins_and_header_less_clients_pass() {
    let (router, calls) = app(None);
    for origin in ["http://127.0.0.1:3000", "http://localhost:3000", "http://[::1]:3000", "HTTP://LOCALHOST:3000"] {
        let r = send(&router, "POST", SUSPEND, &[("origin", origin)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{origin}");
    }
    // The CLI, curl, scripts: neither Origin nor Sec-Fetch-Site.
    let r = send(&router, "POST", SUSPEND, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn safe_methods_pass_whatever_their_origin() {
    let (router, calls) = app(None);
    let r = send(&router, "GET", "/", &[("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_public_url_adds_its_host_and_origin() {
    let (router, calls) = app(Some("https://pergola.example.com"));
    for host in ["pergola.example.com", "pergola.example.com:443", "Pergola.Example.COM", "localhost:3000"] {
        let r = send(&router, "GET", "/", &[("host", host)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    for host in ["pergola.example.com:80", "pergola.example.com:3000", "example.com", "evil.pergola.example.com"] {
        let r = send(&router, "GET", "/", &[("host", host)]).await;
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for origin in ["https://pergola.example.com", "https://pergola.example.com:443"] {
        let r = send(&router, "POST", SUSPEND, &[("host", "pergola.example.com"), ("origin", origin)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{origin}");
    }
    for origin in ["http://pergola.example.com", "https://pergola.example.com:8443", "https://evil.example"] {
        let r = send(&router, "POST", SUSPEND, &[("host", "pergola.example.com"), ("origin", origin)]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // A non-default port is part of the name.
    let g = Guard::new(LISTEN.parse().unwrap(), Some("http://ci-box:8080")).unwrap();
    assert!(g.allows_host("ci-box:8080") && !g.allows_host("ci-box") && g.allows_origin("http://ci-box:8080"));
    assert!(Guard::new(LISTEN.parse().unwrap(), Some("https://x.example/path")).is_err());
    assert_eq!(
        g.origins(),
        ["http://127.0.0.1:3000", "http://localhost:3000", "http://[::1]:3000", "http://ci-box:8080"]
    );
}

#[tokio::test]
async fn responses_carry_the_security_headers() {
    let (router, _) = app(None);
    for r in [
        send(&router, "GET", "/", &[]).await,
        send(&router, "POST", SUSPEND, &[("origin", "http://evil.example")]).await,
        send(&router, "GET", "/", &[("host", "evil.example")]).await,
    ] {
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "same-origin");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("nonce-"), "{csp}");
    }
}

#[tokio::test]
async fn a_page_keeps_its_own_policy_with_its_nonce() {
    let g = Guard::new(LISTEN.parse().unwrap(), None).unwrap();
    let policy = g.content_security_policy(Some("abc123"));
    assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval' 'nonce-abc123';"), "{policy}");
    let router = Router::new()
        .route("/", get(move || async move { ([(header::CONTENT_SECURITY_POLICY, policy)], "page") }))
        .layer(axum::middleware::from_fn_with_state(g.clone(), guard));
    let r = send(&router, "GET", "/", &[]).await;
    assert_eq!(r.headers().get_all("content-security-policy").iter().count(), 1);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("'nonce-abc123'"));
    // Development: the live-reload WebSocket may connect.
    let dev = g.clone().with_live_reload(3001).content_security_policy(None);
    assert!(dev.contains("connect-src 'self' ws://*:3001 wss://*:3001;"), "{dev}");
    // Signing in on the way to a share link: the form's redirects may reach the share hosts.
    let sharing = g.clone().with_form_target("http://*.localhost:3000").content_security_policy(None);
    assert!(sharing.contains("form-action 'self' http://*.localhost:3000;"), "{sharing}");
    assert!(!g.content_security_policy(None).contains("*.localhost"), "not by default");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let (router, calls) = app(None);
    let announce = |len: usize| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/echo")
            .header(header::HOST, LISTEN)
            .header(header::CONTENT_LENGTH, len)
    };
    let r = router.clone().oneshot(announce(BODY_LIMIT + 1).body(Body::from(vec![b'x'; BODY_LIMIT + 1])).unwrap());
    assert_eq!(r.await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = send(&router, "POST", SERVER_FN, &[("content-length", "99999999999")]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A streamed body (no Content-Length) is cut off at the limit: the handler cannot read it.
    let chunks = futures_chunks(BODY_LIMIT + 1);
    let req = Request::builder().method("POST").uri("/api/v1/echo").header(header::HOST, LISTEN);
    let r = router.clone().oneshot(req.body(chunks).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // At the limit: read in full.
    let r = router.clone().oneshot(announce(BODY_LIMIT).body(Body::from(vec![b'x'; BODY_LIMIT])).unwrap());
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await, BODY_LIMIT.to_string());
}

/// A body of `len` bytes in 64 KiB chunks, its length not announced.
fn futures_chunks(len: usize) -> Body {
    let chunk = 64 * 1024;
    let parts: Vec<Result<Bytes, std::io::Error>> =
        (0..len).step_by(chunk).map(|start| Ok(Bytes::from(vec![b'x'; chunk.min(len - start)]))).collect();
    Body::from_stream(futures_util::stream::iter(parts))
}

/// A build's upload (`POST /api/v1/projects/{project}/builds` with an archive's type) has the
/// artifact limit of its own, enforced by the upload: the guard lets it past its 2 MiB, whether
/// announced or streamed. The same route with another type keeps the guard's limit, and so does
/// any other route with an archive's type.
#[tokio::test]
async fn uploads_have_their_own_limit() {
    let (router, calls) = app(None);
    let big = BODY_LIMIT * 2;
    let request = |uri: &str, content_type: &str, len: Option<usize>| {
        let mut r = Request::builder().method("POST").uri(uri).header(header::HOST, LISTEN);
        r = r.header(header::CONTENT_TYPE, content_type);
        if let Some(len) = len {
            r = r.header(header::CONTENT_LENGTH, len);
        }
        r
    };
    for content_type in ["application/gzip", "application/zstd"] {
        let r =
            router.clone().oneshot(request(UPLOAD, content_type, Some(big)).body(Body::from(vec![b'x'; big])).unwrap());
        let r = r.await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{content_type}");
        assert_eq!(body(r).await, big.to_string());
        let r = router.clone().oneshot(request(UPLOAD, content_type, None).body(futures_chunks(big)).unwrap());
        let r = r.await.unwrap();
        assert_eq!(body(r).await, big.to_string(), "streamed: read in full");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // The same route as JSON: the guard's limit, announced or streamed.
    let r = router
        .clone()
        .oneshot(request(UPLOAD, "application/json", Some(big)).body(Body::from(vec![b'x'; big])).unwrap());
    assert_eq!(r.await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "refused before the handler");
    let r = router.clone().oneshot(request(UPLOAD, "application/json", None).body(futures_chunks(big)).unwrap());
    assert_eq!(r.await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE, "cut off at the guard's limit");
    // Another route, or a deeper path, with an archive's type: the guard's limit.
    for uri in
        ["/api/v1/echo", "/api/v1/projects/shop/builds/1", "/api/v1/projects//builds", "/x/api/v1/projects/shop/builds"]
    {
        let r = router
            .clone()
            .oneshot(request(uri, "application/gzip", Some(big)).body(Body::from(vec![b'x'; big])).unwrap());
        assert_eq!(r.await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
    }
}
