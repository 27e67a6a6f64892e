//! The dashboard's static files — `/pkg/*` (the wasm, its JavaScript, the stylesheet) and the
//! public files at the site's root (`/favicon.svg`) — served straight from disk, ahead of the
//! session layers (a stylesheet needs no session lookup), each in the smallest form the
//! browser accepts: brotli or gzip files written once beside the originals ([`precompress`]).
//!
//! Caching: a file whose name carries its content's hash (a release build with
//! `hash-files`, see [`hashed_names`]) never changes, so it is cached for a year as
//! `immutable`; anything else must be revalidated (`no-cache`, answered 304 while unchanged).

use axum::http::{header, HeaderValue};
use axum::Router;
use std::io::Write;
use std::path::{Path, PathBuf};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Files worth compressing (the rest — images other than SVG — are compressed already).
const COMPRESSIBLE: [&str; 6] = ["js", "wasm", "css", "svg", "html", "json"];
/// Smaller files are sent as they are.
const MIN_SIZE: u64 = 512;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The static routes over `site_root`: `/pkg/…` and each file at the root. `hashed`: the
/// package's names carry content hashes (long-lived caching).
pub fn router<S: Clone + Send + Sync + 'static>(site_root: &Path, pkg_dir: &str, hashed: bool) -> Router<S> {
    let pkg = ServeDir::new(site_root.join(pkg_dir)).precompressed_br().precompressed_gzip();
    let caching = HeaderValue::from_static(if hashed { IMMUTABLE } else { REVALIDATE });
    // The answer depends on what the browser accepts: caches in between must know.
    let vary = || SetResponseHeaderLayer::if_not_present(header::VARY, HeaderValue::from_static("accept-encoding"));
    let mut router = Router::new().nest_service(
        &format!("/{pkg_dir}"),
        tower::ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, caching))
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
    router
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

    #[tokio::test]
    async fn files_are_sent_compressed_as_the_browser_accepts_and_cached_by_their_names() {
        let dir = site();
        assert_eq!(precompress(&dir).unwrap(), 2, "the stylesheet and the icon; the tiny file is left alone");
        assert_eq!(precompress(&dir).unwrap(), 0, "nothing changed: nothing compressed again");
        let original = std::fs::read(dir.join("pkg/pergola.css")).unwrap();

        let hashed = router::<()>(&dir, "pkg", true);
        let (status, headers, body) = get(hashed.clone(), "/pkg/pergola.css", "gzip, deflate, br").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_ENCODING], "br");
        assert_eq!(headers[header::CACHE_CONTROL], IMMUTABLE);
        assert!(headers[header::VARY].to_str().unwrap().to_lowercase().contains("accept-encoding"));
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut body.as_slice(), &mut plain).unwrap();
        assert_eq!(plain, original);
        assert!(body.len() * 5 < original.len());

        let (_, headers, body) = get(hashed.clone(), "/pkg/pergola.css", "gzip").await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut plain).unwrap();
        assert_eq!(plain, original);

        let (_, headers, body) = get(hashed.clone(), "/pkg/pergola.css", "").await;
        assert!(!headers.contains_key(header::CONTENT_ENCODING));
        assert_eq!(body, original);

        // Root files and unhashed builds are revalidated; unknown and escaping paths are 404.
        let (status, headers, _) = get(hashed.clone(), "/favicon.svg", "br").await;
        assert_eq!((status, &headers[header::CACHE_CONTROL]), (StatusCode::OK, &HeaderValue::from_static(REVALIDATE)));
        let (_, headers, _) = get(router::<()>(&dir, "pkg", false), "/pkg/pergola.css", "br").await;
        assert_eq!(headers[header::CACHE_CONTROL], REVALIDATE);
        for path in ["/pkg/nope.js", "/pkg/../favicon.svg", "/pkg/%2e%2e/favicon.svg"] {
            let (status, _, _) = get(hashed.clone(), path, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }

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
