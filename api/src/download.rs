//! A build streamed as it is packed: tar + gzip written on a blocking thread into a bounded
//! channel that the response body reads, so a large build is never held whole in memory and a
//! client that stops reading stops the packing — at once when it goes away, after
//! [`STALLED`] when it stays but reads nothing. At most [`DOWNLOADS_AT_ONCE`] builds are packed
//! at a time: the blocking threads (which also hash passwords and unpack uploads) and the two
//! cores are not given to downloads.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use pergola_core::services::{BuildFiles, DOWNLOADS_AT_ONCE};
use pergola_core::Services;
use pergola_domain::Error;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many packed chunks wait for a slow client at most.
const QUEUED: usize = 8;
/// How long a client may read nothing before its download is given up.
pub const STALLED: Duration = Duration::from_secs(60);

/// Hands what the packer writes to the response, chunk by chunk.
struct Sender {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl std::io::Write for Sender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = Ok(Bytes::copy_from_slice(buf));
        match self.runtime.block_on(tokio::time::timeout(STALLED, self.tx.send(chunk))) {
            Ok(Ok(())) => Ok(buf.len()),
            _ => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away or stopped reading")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The build as an `application/gzip` download named after its stage and release; refused
/// (429) while [`DOWNLOADS_AT_ONCE`] others are being packed.
pub fn packed(services: &Services, files: BuildFiles) -> Result<Response, Error> {
    let Some(permit) = services.download_permit() else {
        return Err(Error {
            message: format!(
                "{DOWNLOADS_AT_ONCE} builds are being downloaded at the moment, the most at once: try again shortly."
            ),
            ..Error::too_many_requests(5)
        });
    };
    let (tx, rx) = mpsc::channel(QUEUED);
    let name = files.file_name.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let failed = tx.clone();
        // A buffer between tar's small writes and the channel: chunks of 64 KiB.
        let out = std::io::BufWriter::with_capacity(64 * 1024, Sender { tx, runtime });
        let packed = pergola_core::artifacts::pack_dir_into(&files.dir, &files.manifest, out)
            .and_then(|out| out.into_inner().map_err(|e| e.into_error()));
        if let Err(e) = packed {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::error!(error = %e, dir = %files.dir.display(), "a build could not be packed for a download");
                // The client sees the body break off, not a valid archive.
                let _ = failed.try_send(Err(e));
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/gzip")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
