//! A build streamed as it is packed: tar + gzip written on a blocking thread into a bounded
//! channel that the response body reads, so a large build is never held whole in memory and a
//! client that stops reading stops the packing.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use pergola_core::services::BuildFiles;
use tokio::sync::mpsc;

/// How many packed chunks wait for a slow client at most.
const QUEUED: usize = 8;

/// Hands what the packer writes to the response, chunk by chunk.
struct Sender(mpsc::Sender<std::io::Result<Bytes>>);

impl std::io::Write for Sender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The build as an `application/gzip` download named after its stage and release.
pub fn packed(files: BuildFiles) -> Response {
    let (tx, rx) = mpsc::channel(QUEUED);
    let name = files.file_name.clone();
    tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        // A buffer between tar's small writes and the channel: chunks of 64 KiB.
        let out = std::io::BufWriter::with_capacity(64 * 1024, Sender(tx));
        let packed = pergola_core::artifacts::pack_dir_into(&files.dir, &files.manifest, out)
            .and_then(|out| out.into_inner().map_err(|e| e.into_error()));
        if let Err(e) = packed {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::error!(error = %e, dir = %files.dir.display(), "a build could not be packed for a download");
                // The client sees the body break off, not a valid archive.
                let _ = failed.blocking_send(Err(e));
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/gzip")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}
