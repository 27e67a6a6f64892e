//! The dashboard's static files — `/pkg/*` (the wasm, its JavaScript, the stylesheet) and the
//! public files at the site's root (`/favicon.svg`) — served ahead of the session layers (a
//! stylesheet needs no session lookup), each in the smallest form the browser accepts: brotli
//! or gzip files written once beside the originals ([`precompress`]).
//!
//! Caching: a file whose name carries its content's hash (a release build with
//! `hash-files`, see [`hashed_names`]) never changes, so it is cached for a year as
//! `immutable`; anything else must be revalidated (`no-cache`, answered 304 while unchanged).
//!
//! A release build's files cannot change while the server runs, so once their compressed
//! copies are written they are held in memory ([`Memory`]) and answered without touching the
//! disk; until then, and always in a development build (whose files are rebuilt under a
//! running server), they are read from disk at each request.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Files worth compressing (the rest — images other than SVG — are compressed already).
const COMPRESSIBLE: [&str; 6] = ["js", "wasm", "css", "svg", "html", "json"];
/// Smaller files are sent as they are.
const MIN_SIZE: u64 = 512;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The static routes over `site_root`: `/pkg/…` and each file at the root, answered from
/// `memory` once it is loaded. `hashed`: the package's names carry content hashes (long-lived
/// caching).
pub fn router<S: Clone + Send + Sync + 'static>(
    site_root: &Path,
    pkg_dir: &str,
    hashed: bool,
    memory: Memory,
) -> Router<S> {
    let pkg = ServeDir::new(site_root.join(pkg_dir)).precompressed_br().precompressed_gzip();
    let caching = HeaderValue::from_static(if hashed { IMMUTABLE } else { REVALIDATE });
    // The answer depends on what the browser accepts: caches in between must know.
    let vary = || SetResponseHeaderLayer::if_not_present(header::VARY, HeaderValue::from_static("accept-encoding"));
    let mut router = Router::new().nest_service(
        &format!("/{pkg_dir}"),
        tower::ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, cache_found(caching)))
            .layer(vary())
            .service(pkg),
    );
    for file in root_files(site_root) {
        let Some(name) = file.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let served = ServeFile::new(&file).precompressed_br().precompressed_gzip();
        let revalidate =
            SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
        let service = tower::ServiceBuilder::new().layer(revalidate).layer(vary()).service(served);
        router = router.route_service(&format!("/{name}"), service);
    }
    router.layer(axum::middleware::from_fn_with_state(memory, from_memory))
}

/// `caching` for a file found (200, 206, 304), `no-store` for anything else: a 404 for a hashed
/// name kept for a year — by a browser or a cache in between, asked while a server that does
/// not have it yet answers during a rolling update — would break the page for a year.
fn cache_found<B>(caching: HeaderValue) -> impl Fn(&axum::http::Response<B>) -> Option<HeaderValue> + Clone {
    move |response| {
        let found = response.status().is_success() || response.status() == axum::http::StatusCode::NOT_MODIFIED;
        Some(if found { caching.clone() } else { HeaderValue::from_static("no-store") })
    }
}

/// The site's files held in memory by their paths (`/pkg/pergola.HASH.css`, `/favicon.svg`),
/// each with its compressed copies. Loaded once ([`Memory::load`]); empty until then.
#[derive(Clone, Default)]
pub struct Memory(Arc<OnceLock<HashMap<String, Asset>>>);

/// One file: its bytes as they are and compressed, its type, and how it is cached.
pub struct Asset {
    content_type: HeaderValue,
    cache_control: HeaderValue,
    /// The same hash of the content for each form, tagged with the form (a strong tag names
    /// one representation).
    tag: u64,
    identity: Bytes,
    br: Option<Bytes>,
    gzip: Option<Bytes>,
}

impl Memory {
    /// Reads the files the routes of [`router`] serve — the package's, and those at the
    /// site's root — with the brotli and gzip copies beside them; returns how many files.
    /// Only for a build whose files cannot change under the running server (hashed names).
    pub fn load(&self, site_root: &Path, pkg_dir: &str) -> std::io::Result<usize> {
        let mut table = HashMap::new();
        let mut add = |url: String, path: &Path, cache_control: &'static str| -> std::io::Result<()> {
            let identity = std::fs::read(path)?;
            let tag = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                identity.hash(&mut hasher);
                hasher.finish()
            };
            let copy = |ext: &str| std::fs::read(with_suffix(path, ext)).ok().map(Bytes::from);
            let content_type = mime_guess::from_path(path).first_or_octet_stream();
            table.insert(
                url,
                Asset {
                    content_type: HeaderValue::from_str(content_type.essence_str())
                        .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                    cache_control: HeaderValue::from_static(cache_control),
                    tag,
                    identity: Bytes::from(identity),
                    br: copy("br"),
                    gzip: copy("gz"),
                },
            );
            Ok(())
        };
        for entry in std::fs::read_dir(site_root.join(pkg_dir))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if path.is_file() && copy_of(&path).is_none() {
                add(format!("/{pkg_dir}/{name}"), &path, IMMUTABLE)?;
            }
        }
        for path in root_files(site_root) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            add(format!("/{name}"), &path, REVALIDATE)?;
        }
        let count = table.len();
        let _ = self.0.set(table);
        Ok(count)
    }
}

/// Answers a GET or HEAD of a file held in [`Memory`]; anything else goes on to the disk.
async fn from_memory(State(memory): State<Memory>, request: Request, next: Next) -> Response {
    let found = memory.0.get().and_then(|table| table.get(request.uri().path()));
    match found {
        Some(asset) if matches!(*request.method(), Method::GET | Method::HEAD) => {
            asset.answer(request.headers(), request.method() == Method::HEAD)
        }
        _ => next.run(request).await,
    }
}

impl Asset {
    fn answer(&self, request: &HeaderMap, head: bool) -> Response {
        let accepted = request.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (coding, bytes) = match (&self.br, &self.gzip) {
            (Some(br), _) if accepts(accepted, "br") => (Some("br"), br),
            (_, Some(gzip)) if accepts(accepted, "gzip") => (Some("gzip"), gzip),
            _ => (None, &self.identity),
        };
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{}\"", self.tag, coding.unwrap_or("identity")))
            .expect("hex and a coding name make a valid header");
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        let unchanged = request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
            v.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t.as_bytes() == etag.as_bytes())
        });
        headers.insert(header::ETAG, etag);
        if unchanged {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if let Some(coding) = coding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        if !head {
            *response.body_mut() = Body::from(bytes.clone());
        }
        response
    }
}

/// Whether an `Accept-Encoding` value accepts `coding`: named, or by `*`, with a quality
/// above 0 (`br;q=0` refuses brotli).
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut any = false;
    for item in accept_encoding.split(',') {
        let mut params = item.split(';');
        let name = params.next().unwrap_or_default().trim();
        let quality = params
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            .next()
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(coding) {
            return quality > 0.0;
        }
        if name == "*" {
            any = quality > 0.0;
        }
    }
    any
}

/// The plain files at the site's root (not the compressed copies), with simple names.
fn root_files(site_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(site_root) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| !matches!(p.extension().and_then(|e| e.to_str()), Some("br" | "gz")))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        })
        .collect()
}

/// Whether the package's file names carry content hashes: cargo-leptos wrote `hash_file`
/// beside the server's binary (leptos then links the hashed names).
pub fn hashed_names(hash_file: &str) -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(hash_file)))
        .is_some_and(|p| p.is_file())
}

/// Writes `NAME.br` and `NAME.gz` beside each compressible file under `site_root` that lacks
/// them or changed since; returns how many files it compressed. Each copy is written to a
/// temporary name and renamed, so a request never meets half a file (several servers may
/// share a site).
pub fn precompress(site_root: &Path) -> std::io::Result<usize> {
    let mut done = 0;
    let mut dirs = vec![site_root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            // A copy whose original is gone (an earlier build's hashed name) goes too.
            if let Some(original) = copy_of(&path) {
                if !original.exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let compressible = path.extension().and_then(|e| e.to_str()).is_some_and(|e| COMPRESSIBLE.contains(&e));
            let meta = std::fs::metadata(&path)?;
            if !compressible || meta.len() < MIN_SIZE {
                continue;
            }
            let modified = meta.modified()?;
            let fresh = |ext: &str| {
                std::fs::metadata(with_suffix(&path, ext)).and_then(|m| m.modified()).is_ok_and(|m| m >= modified)
            };
            if fresh("br") && fresh("gz") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let mut br = Vec::new();
            {
                let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
                brotli::BrotliCompress(&mut bytes.as_slice(), &mut br, &params)?;
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&bytes)?;
            let gz = gz.finish()?;
            write_atomically(&with_suffix(&path, "br"), &br)?;
            write_atomically(&with_suffix(&path, "gz"), &gz)?;
            done += 1;
        }
    }
    Ok(done)
}

/// The file `path` is the brotli or gzip copy of, if it is one.
fn copy_of(path: &Path) -> Option<PathBuf> {
    matches!(path.extension().and_then(|e| e.to_str()), Some("br" | "gz")).then(|| path.with_extension(""))
}

fn with_suffix(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = with_suffix(path, &format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn site() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pergola-assets-{}", uuid_like()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("pkg/pergola.css"), "body { color: red; }\n".repeat(200)).unwrap();
        std::fs::write(dir.join("pkg/tiny.js"), "1").unwrap();
        std::fs::write(dir.join("favicon.svg"), format!("<svg>{}</svg>", " ".repeat(1000))).unwrap();
        dir
    }

    fn uuid_like() -> String {
        format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect()
    }

    async fn get(router: Router, path: &str, accept: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let request = Request::get(path).header(header::ACCEPT_ENCODING, accept).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    /// What a browser sees of the site's files, the same from disk and from memory.
    async fn serves_the_site(dir: &Path, memory: impl Fn() -> Memory) {
        let original = std::fs::read(dir.join("pkg/pergola.css")).unwrap();
        let hashed = router::<()>(dir, "pkg", true, memory());
        let (status, headers, body) = get(hashed.clone(), "/pkg/pergola.css", "gzip, deflate, br").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_ENCODING], "br");
        assert_eq!(headers[header::CONTENT_TYPE], "text/css");
        assert_eq!(headers[header::CACHE_CONTROL], IMMUTABLE);
        assert!(headers[header::VARY].to_str().unwrap().to_lowercase().contains("accept-encoding"));
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut body.as_slice(), &mut plain).unwrap();
        assert_eq!(plain, original);
        assert!(body.len() * 5 < original.len());

        for accept in ["gzip", "br;q=0, gzip", "BR;Q=0,GZIP;q=0.5"] {
            let (_, headers, body) = get(hashed.clone(), "/pkg/pergola.css", accept).await;
            assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "{accept}");
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut plain).unwrap();
            assert_eq!(plain, original);
        }
        for accept in ["", "identity", "br;q=0, gzip;q=0", "deflate"] {
            let (_, headers, body) = get(hashed.clone(), "/pkg/pergola.css", accept).await;
            assert!(!headers.contains_key(header::CONTENT_ENCODING), "{accept}");
            assert_eq!(body, original);
        }
        // Asked again with the validator it was given (memory's ETag, the disk's date):
        // unchanged, no body.
        let (_, headers, _) = get(hashed.clone(), "/pkg/pergola.css", "br").await;
        let validator = match headers.get(header::ETAG) {
            Some(tag) => (header::IF_NONE_MATCH, tag.clone()),
            None => (header::IF_MODIFIED_SINCE, headers[header::LAST_MODIFIED].clone()),
        };
        let request = Request::get("/pkg/pergola.css")
            .header(header::ACCEPT_ENCODING, "br")
            .header(validator.0, validator.1)
            .body(Body::empty())
            .unwrap();
        let response = hashed.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert!(response.into_body().collect().await.unwrap().to_bytes().is_empty());
        // HEAD: the length, no body.
        let request = Request::head("/pkg/pergola.css").body(Body::empty()).unwrap();
        let response = hashed.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_LENGTH], original.len().to_string().as_str());
        assert!(response.into_body().collect().await.unwrap().to_bytes().is_empty());
        // Nothing but reading.
        let request = Request::post("/pkg/pergola.css").body(Body::from("x")).unwrap();
        let status = hashed.clone().oneshot(request).await.unwrap().status();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Root files are revalidated; unknown and escaping paths are 404.
        let (status, headers, _) = get(hashed.clone(), "/favicon.svg", "br").await;
        assert_eq!((status, &headers[header::CACHE_CONTROL]), (StatusCode::OK, &HeaderValue::from_static(REVALIDATE)));
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
        for path in ["/pkg/nope.js", "/pkg/../favicon.svg", "/pkg/%2e%2e/favicon.svg", "/pkg/pergola.css.br"] {
            let (status, headers, body) = get(hashed.clone(), path, "").await;
            if path.ends_with(".br") && status == StatusCode::OK {
                // From disk a copy may be asked for by its own name; it is the same bytes.
                assert_eq!(body, std::fs::read(dir.join("pkg/pergola.css.br")).unwrap());
                continue;
            }
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            // Not found now is no answer to keep: the file may come with the next version.
            assert_eq!(headers.get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap()), Some("no-store"), "{path}");
        }
    }

    #[tokio::test]
    async fn files_are_sent_compressed_as_the_browser_accepts_and_cached_by_their_names() {
        let dir = site();
        assert_eq!(precompress(&dir).unwrap(), 2, "the stylesheet and the icon; the tiny file is left alone");
        assert_eq!(precompress(&dir).unwrap(), 0, "nothing changed: nothing compressed again");

        serves_the_site(&dir, Memory::default).await;
        let loaded = || {
            let memory = Memory::default();
            assert_eq!(memory.load(&dir, "pkg").unwrap(), 3, "the two package files and the icon");
            memory
        };
        serves_the_site(&dir, loaded).await;

        // Held in memory, a file is answered even once the disk's copy is gone; the disk is
        // read again only for what memory lacks.
        let memory = loaded();
        let hashed = router::<()>(&dir, "pkg", true, memory);
        let original = std::fs::read(dir.join("pkg/pergola.css")).unwrap();
        std::fs::rename(dir.join("pkg/pergola.css"), dir.join("pkg/moved.css")).unwrap();
        let (status, _, body) = get(hashed.clone(), "/pkg/pergola.css", "").await;
        assert_eq!((status, body), (StatusCode::OK, original));
        let (status, _, _) = get(hashed.clone(), "/pkg/moved.css", "").await;
        assert_eq!(status, StatusCode::OK);
        std::fs::rename(dir.join("pkg/moved.css"), dir.join("pkg/pergola.css")).unwrap();

        let (_, headers, _) = get(router::<()>(&dir, "pkg", false, Memory::default()), "/pkg/pergola.css", "br").await;
        assert_eq!(headers[header::CACHE_CONTROL], REVALIDATE);

        // A changed file is compressed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("pkg/pergola.css"), "p { margin: 0; }\n".repeat(100)).unwrap();
        assert_eq!(precompress(&dir).unwrap(), 1);
        // A new build's names replace the old ones: the old copies go.
        std::fs::rename(dir.join("pkg/pergola.css"), dir.join("pkg/pergola.new.css")).unwrap();
        assert_eq!(precompress(&dir).unwrap(), 1);
        assert!(!dir.join("pkg/pergola.css.br").exists() && !dir.join("pkg/pergola.css.gz").exists());
        assert!(dir.join("pkg/pergola.new.css.br").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
