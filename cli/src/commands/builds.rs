//! `pergola create build` (an upload, or a directory on the server), `pergola list build`.

use super::project_path;
use crate::args::Output;
use crate::client::{Client, Failure};
use crate::output::Printer;
use crate::pack;
use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use pergola_domain::logs::escape_controls;
use pergola_domain::wire::NewBuild;
use pergola_domain::{format_time, Build};
use serde::Deserialize;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the CLI reads of an uploaded build; the fields beyond `number` and `version` are those
/// of the upload route and optional, so an older server's answer reads too. `-o json` prints the
/// server's answer as it came.
#[derive(Deserialize)]
struct Uploaded {
    number: i64,
    version: Option<String>,
    /// `sha256:…` of the archive.
    digest: Option<String>,
    /// The archive's bytes.
    size: Option<u64>,
    unpacked_size: Option<u64>,
}

/// Packs `dir` (with `manifest` as its `pergola.toml`) and streams the archive to the project's
/// builds: `POST /api/v1/projects/{project}/builds`, `Content-Type: application/gzip`, chunked.
pub fn upload(
    client: &Client,
    out: &Printer,
    project: &str,
    dir: &Path,
    manifest: Option<&Path>,
) -> Result<(), Failure> {
    let plan = pack::plan(dir, manifest).map_err(Failure::new)?;
    let api = project_path(project)?;
    // A cheap question first: a server refusing the upload before reading it (no sign-in, no
    // such project) may close the connection while the archive is still being sent, and its
    // reason would be lost; here it is said in one line before anything is packed.
    let _: serde_json::Value = client.get(&api)?;
    for skipped in &plan.skipped {
        // A file's name may hold anything but `/` and NUL: escape sequences too.
        eprintln!(
            "warning: {} is {}: skipped (only files, directories and symbolic links are packed)",
            escape_controls(&skipped.path.display().to_string()),
            skipped.what
        );
    }
    let packed = Arc::new(AtomicU64::new(0));
    let show = out.format == Output::Table && std::io::stderr().is_terminal();
    let bar = if show { progress_bar(dir, plan.total_bytes(), packed.clone()) } else { ProgressBar::hidden() };
    let (archive, packing) = pack::spawn(plan, packed);
    let body = reqwest::blocking::Body::new(bar.wrap_read(archive));
    let answer: Result<serde_json::Value, Failure> =
        client.post_stream(&format!("{api}/builds"), "application/gzip", body);
    bar.finish_and_clear();
    let packing = packing.join().unwrap_or_else(|_| Err(std::io::Error::other("the packing thread panicked")));
    let value = match (answer, packing) {
        // The upload stopped first (the server answered or went away): the server's reason.
        (Err(failure), Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Err(failure),
        (_, Err(e)) => return Err(Failure::new(format!("cannot pack {}: {e}", dir.display()))),
        (answer, Ok(())) => answer?,
    };
    let build: Uploaded = serde_json::from_value(value.clone())
        .map_err(|e| Failure::new(format!("unexpected answer from the server ({e}); is it a Pergola server?")))?;
    out.one(&value, || uploaded_line(&build))
}

/// `Build 3 uploaded (1.0): 1.2 MiB, 4.0 MiB unpacked, sha256:0123456789ab.`
fn uploaded_line(build: &Uploaded) -> String {
    let mut line = format!("Build {} uploaded", build.number);
    if let Some(v) = &build.version {
        line.push_str(&format!(" ({v})"));
    }
    let mut details = Vec::new();
    if let Some(size) = build.size {
        details.push(BinaryBytes(size).to_string());
    }
    if let Some(size) = build.unpacked_size {
        details.push(format!("{} unpacked", BinaryBytes(size)));
    }
    if let Some(digest) = &build.digest {
        details.push(digest.chars().take("sha256:".len() + 12).collect());
    }
    if !details.is_empty() {
        line.push_str(": ");
        line.push_str(&details.join(", "));
    }
    line.push('.');
    line
}

/// The progress line on stderr: bytes sent (compressed) and their rate — the archive's size is
/// unknown until it is packed — and how much of the tree's file bytes is packed so far.
fn progress_bar(dir: &Path, total: u64, packed: Arc<AtomicU64>) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{spinner} Uploading {prefix}: {bytes} sent ({binary_bytes_per_sec}), {packed} packed [{elapsed}]",
    )
    .expect("a valid template")
    .with_key("packed", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let done = packed.load(Ordering::Relaxed).min(total);
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let _ = write!(w, "{percent}% of {}", BinaryBytes(total));
    });
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.set_prefix(short(&escape_controls(&dir.display().to_string()), 40));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.tick();
    bar
}

/// `text`, or its last `max` characters after `…` when it is longer.
fn short(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    std::iter::once('…').chain(text.chars().skip(count - (max - 1))).collect()
}

/// The old way: a build whose files are already in `dir` on the server (`{manifest, workdir}`).
pub fn register(client: &Client, out: &Printer, project: &str, manifest: &Path, dir: String) -> Result<(), Failure> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", manifest.display())))?;
    let body = NewBuild { manifest: text, workdir: dir };
    let build: Build = client.post(&format!("{}/builds", project_path(project)?), &body)?;
    out.one(&build, || {
        format!(
            "Build {} registered{}.",
            build.number,
            build.version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
        )
    })
}

pub fn list(client: &Client, out: &Printer, project: &str) -> Result<(), Failure> {
    let builds: Vec<Build> = client.get(&format!("{}/builds", project_path(project)?))?;
    out.many(&builds, &["build", "version", "components", "created"], |b| {
        let components = pergola_domain::parse_manifest(&b.manifest)
            .map(|m| m.components.into_iter().map(|c| c.name).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        vec![b.number.to_string(), b.version.clone().unwrap_or_default(), components, format_time(b.created_at)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uploaded_line_says_what_the_server_told() {
        let full: Uploaded = serde_json::from_value(serde_json::json!({
            "project_id": "shop", "number": 3, "version": "1.0", "manifest": "", "workdir": "",
            "created_at": "2026-01-01T00:00:00Z", "digest": format!("sha256:{}", "ab".repeat(32)),
            "size": 1_258_291, "unpacked_size": 4_194_304, "uploaded_by": "alice"
        }))
        .unwrap();
        assert_eq!(uploaded_line(&full), "Build 3 uploaded (1.0): 1.20 MiB, 4.00 MiB unpacked, sha256:abababababab.");
        let today: Uploaded = serde_json::from_value(serde_json::json!({"number": 1, "version": null})).unwrap();
        assert_eq!(uploaded_line(&today), "Build 1 uploaded.");
    }

    #[test]
    fn long_directories_are_shortened_from_the_left() {
        assert_eq!(short("./dist", 10), "./dist");
        assert_eq!(short("/home/alice/projects/shop/dist", 10), "…shop/dist");
    }
}
