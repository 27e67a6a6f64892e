//! Build artifacts: uploaded archives (tar, gzip or zstd compressed), stored content-addressed
//! under the data directory and unpacked once into an immutable, read-only tree.
//!
//! ```text
//! <data>/artifacts/sha256/<hex>.tar.gz     the archive as uploaded (or .tar.zst)
//! <data>/artifacts/sha256/<hex>/           its files, read-only: a build's workdir
//! <data>/artifacts/tmp/                    uploads and unpacks in progress (removed when they end)
//! ```
//!
//! An upload is streamed to a temp file while it is hashed (SHA-256) and counted, and refused
//! at the size limit ([`ArtifactLimits::max_archive_bytes`]) without reading further. It is
//! then unpacked on a blocking thread into a temp directory, entry by entry, refusing what could
//! reach outside the tree or fill the disk ([`unpack`]): absolute paths, `..`, paths through a
//! symlink, symlinks that are absolute or climb out, hard links, devices, fifos and other special
//! entries, more than [`ArtifactLimits::max_entries`] entries (metadata entries such as PAX
//! global headers included) or [`ArtifactLimits::max_unpacked_bytes`] bytes (extension headers'
//! data included, and the decompressed stream as a whole capped a little above it), a truncated
//! or corrupt stream, and an archive without a valid `pergola.toml` at its root. Only once all
//! of it passed is the tree made read-only and renamed into place; a refusal leaves nothing
//! behind. The same bytes uploaded again are stored once (the second upload's unpacking is
//! skipped).

use pergola_domain::archive::link_stays_inside;
use pergola_domain::Error;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The manifest's name at an archive's root.
pub const MANIFEST_FILE: &str = "pergola.toml";
/// The default size limit of an archive as uploaded (`PERGOLA_MAX_ARTIFACT_MB`).
pub const DEFAULT_MAX_ARCHIVE_MB: u64 = 512;
/// At most this many entries (files, directories, symlinks) per archive — the runtime copies
/// no more into a release either.
pub const MAX_ENTRIES: u64 = 100_000;
/// At most this many bytes of files once unpacked (1 GiB) — the runtime's limit of a release
/// copy, so every artifact that unpacks can run.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// An upload that sends nothing for this long is given up (its connection and temp file freed).
pub const UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest `pergola.toml` read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What an upload may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArtifactLimits {
    /// Bytes of the archive as uploaded (compressed).
    pub max_archive_bytes: u64,
    /// Entries in the archive: every one the `tar` crate reads, metadata entries (PAX global
    /// headers) included.
    pub max_entries: u64,
    /// Bytes of its files once unpacked.
    pub max_unpacked_bytes: u64,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: DEFAULT_MAX_ARCHIVE_MB << 20,
            max_entries: MAX_ENTRIES,
            max_unpacked_bytes: MAX_UNPACKED_BYTES,
        }
    }
}

/// How an archive is compressed, named by the upload's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `application/gzip`: a `.tar.gz`.
    Gzip,
    /// `application/zstd`: a `.tar.zst`.
    Zstd,
}

impl Compression {
    /// The content types an upload may have.
    pub const CONTENT_TYPES: [&'static str; 2] = ["application/gzip", "application/zstd"];

    /// `application/gzip` (also `application/x-gzip`) or `application/zstd`, parameters ignored.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/gzip" | "application/x-gzip" => Some(Self::Gzip),
            "application/zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Gzip, Self::Zstd].into_iter().find(|c| c.as_str() == s)
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Gzip => "tar.gz",
            Self::Zstd => "tar.zst",
        }
    }

    /// The tar stream inside `reader`.
    fn decoder<'a>(self, reader: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        })
    }
}

/// Where artifacts are kept and what an upload may be. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Artifacts {
    root: PathBuf,
    limits: ArtifactLimits,
    /// Placing an artifact into the store and deleting one (retention) take it to write, one
    /// at a time; a deploy takes it to read while it checks its build's artifact is there and
    /// records the release (which then keeps the artifact).
    lock: Arc<tokio::sync::RwLock<()>>,
}

/// An upload received whole into a temp file, not yet checked.
#[derive(Debug)]
pub struct Received {
    file: TempPath,
    /// The SHA-256 of the bytes, hex.
    pub hex: String,
    pub size: u64,
    pub compression: Compression,
}

/// An artifact in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub unpacked_size: u64,
    pub compression: Compression,
    /// Its unpacked, read-only tree.
    pub dir: PathBuf,
    /// Its `pergola.toml`, already checked ([`pergola_domain::parse_manifest`]).
    pub manifest: String,
}

/// A temp file or directory, deleted when dropped (unless kept).
#[derive(Debug)]
struct TempPath(Option<PathBuf>);

impl TempPath {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a temp path in use")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("a temp path in use")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = remove_tree(&path);
        }
    }
}

/// The digest of the bytes `hex` names.
pub fn digest_of(hex: &str) -> String {
    format!("sha256:{hex}")
}

/// The hex of a `sha256:<hex>` digest, if it is one.
fn hex_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Artifacts {
    /// Artifacts under `root` (`<data>/artifacts`), created when first needed.
    pub fn new(root: impl Into<PathBuf>, limits: ArtifactLimits) -> Self {
        Self { root: root.into(), limits, lock: Arc::default() }
    }

    pub fn limits(&self) -> ArtifactLimits {
        self.limits
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn store_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// The unpacked tree of the artifact `digest` (whether or not it is there).
    pub fn dir_of(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|hex| self.store_dir().join(hex))
    }

    /// The message of an archive over the limit.
    pub fn too_large(&self) -> Error {
        Error::too_large(format!(
            "The archive is larger than this server accepts ({}, PERGOLA_MAX_ARTIFACT_MB).",
            human(self.limits.max_archive_bytes)
        ))
    }

    /// Reads an upload into a temp file, hashing and counting it; refuses it as soon as it
    /// passes the size limit (the rest is not read). A failure to read (the client went away)
    /// is a malformed request, and so is one that sends nothing for [`UPLOAD_IDLE_TIMEOUT`];
    /// nothing is left behind.
    pub async fn receive(&self, mut body: impl AsyncRead + Unpin, compression: Compression) -> Result<Received, Error> {
        let tmp = self.tmp();
        tokio::fs::create_dir_all(&tmp).await.map_err(io_failure("create the artifacts' temp directory"))?;
        let file = TempPath(Some(tmp.join(format!("upload-{}", uuid::Uuid::new_v4().simple()))));
        let mut out = tokio::fs::File::create(file.path()).await.map_err(io_failure("create an upload's temp file"))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, body.read(&mut buf)).await.map_err(|_| {
                Error::malformed(format!(
                    "The upload stalled: nothing came for {} seconds.",
                    UPLOAD_IDLE_TIMEOUT.as_secs()
                ))
            })?;
            let n = read.map_err(|e| {
                // The body's own limit (if any) also ends up here.
                tracing::debug!(error = %e, "an upload's body could not be read");
                Error::malformed(format!("The upload could not be read to its end: {e}"))
            })?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > self.limits.max_archive_bytes {
                return Err(self.too_large());
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await.map_err(io_failure("write an upload's temp file"))?;
        }
        out.flush().await.map_err(io_failure("write an upload's temp file"))?;
        out.sync_all().await.map_err(io_failure("write an upload's temp file"))?;
        drop(out);
        let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Received { file, hex, size, compression })
    }

    /// Checks a received archive and keeps it: unpacked into a temp directory on a blocking
    /// thread (unless the same bytes are stored already), then renamed into place and made
    /// read-only. Returns the artifact and the store's lock, held until the caller has recorded
    /// it (so retention cannot delete it meanwhile).
    pub async fn keep(&self, received: Received) -> Result<(Stored, tokio::sync::OwnedRwLockWriteGuard<()>), Error> {
        let hex = received.hex.clone();
        let dir = self.store_dir().join(&hex);
        // Unpacked outside the lock: other uploads go on meanwhile.
        let unpacked = if dir.is_dir() { None } else { Some(self.unpack_received(&received).await?) };
        let guard = self.lock.clone().write_owned().await;
        let this = self.clone();
        let stored = tokio::task::spawn_blocking(move || this.place(received, unpacked)).await.map_err(|e| {
            tracing::error!(error = %e, "placing an artifact panicked");
            Error::internal()
        })??;
        Ok((stored, guard))
    }

    async fn unpack_received(&self, received: &Received) -> Result<Unpacked, Error> {
        let archive = received.file.path().to_path_buf();
        let (compression, limits, tmp) = (received.compression, self.limits, self.tmp());
        tokio::task::spawn_blocking(move || unpack_archive(&archive, compression, limits, &tmp)).await.map_err(|e| {
            tracing::error!(error = %e, "unpacking an artifact panicked");
            Error::internal()
        })?
    }

    /// Under the lock, on a blocking thread: the unpacked tree and the archive renamed into
    /// place, or — the same bytes stored already — both dropped.
    fn place(&self, received: Received, unpacked: Option<Unpacked>) -> Result<Stored, Error> {
        let store = self.store_dir();
        std::fs::create_dir_all(&store).map_err(io_failure("create the artifact store"))?;
        let dir = store.join(&received.hex);
        let archive = store.join(format!("{}.{}", received.hex, received.compression.extension()));
        let (manifest, unpacked_size) = if dir.is_dir() {
            // Stored already (by an earlier upload, or one that raced this one) — as the
            // compression it really is: the same bytes cannot be the other one.
            drop(unpacked);
            let other = match received.compression {
                Compression::Gzip => Compression::Zstd,
                Compression::Zstd => Compression::Gzip,
            };
            if !archive.exists() && store.join(format!("{}.{}", received.hex, other.extension())).exists() {
                return Err(corrupt(format!("it is not a {} stream", received.compression.as_str())));
            }
            let manifest = read_manifest(&dir)?;
            (manifest, tree_size(&dir).map_err(io_failure("measure a stored artifact"))?)
        } else {
            let unpacked = match unpacked {
                Some(u) => u,
                // Deleted by retention since it was checked: unpack now.
                None => unpack_archive(received.file.path(), received.compression, self.limits, &self.tmp())?,
            };
            let Unpacked { tree, manifest, bytes } = unpacked;
            seal(tree.path()).map_err(io_failure("make an artifact read-only"))?;
            std::fs::rename(tree.path(), &dir).map_err(io_failure("move an artifact into place"))?;
            tree.keep();
            (manifest, bytes)
        };
        if !archive.exists() {
            let file = received.file;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o444))
                .map_err(io_failure("make an archive read-only"))?;
            std::fs::rename(file.path(), &archive).map_err(io_failure("move an archive into place"))?;
            file.keep();
        }
        Ok(Stored {
            digest: digest_of(&received.hex),
            size: received.size,
            unpacked_size,
            compression: received.compression,
            dir,
            manifest,
        })
    }

    /// The store's lock to write (retention deletes under it).
    pub async fn write(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.lock.clone().write_owned().await
    }

    /// The store's lock to read (a deploy holds it until its release is recorded).
    pub async fn read(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.lock.clone().read_owned().await
    }

    /// Deletes an artifact's files (its archive in either compression and its tree). The
    /// caller holds [`Self::write`].
    pub async fn delete(&self, digest: &str) -> std::io::Result<()> {
        let Some(hex) = hex_of(digest) else { return Ok(()) };
        let store = self.store_dir();
        let hex = hex.to_owned();
        tokio::task::spawn_blocking(move || {
            for c in [Compression::Gzip, Compression::Zstd] {
                match std::fs::remove_file(store.join(format!("{hex}.{}", c.extension()))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            remove_tree(&store.join(&hex))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Whether the unpacked tree of `digest` is there.
    pub fn has(&self, digest: &str) -> bool {
        self.dir_of(digest).is_some_and(|d| d.is_dir())
    }

    /// Removes what interrupted uploads left in the temp directory (at start-up).
    pub fn clear_temp(&self) {
        let _ = remove_tree(&self.tmp());
    }
}

/// A checked archive's files in a temp directory, not yet in place.
struct Unpacked {
    tree: TempPath,
    manifest: String,
    bytes: u64,
}

/// Unpacks `archive` into a new temp directory under `tmp`, refusing anything unsafe (see the
/// module's documentation) with a validation error naming the entry; then checks the manifest.
fn unpack_archive(
    archive: &Path,
    compression: Compression,
    limits: ArtifactLimits,
    tmp: &Path,
) -> Result<Unpacked, Error> {
    std::fs::create_dir_all(tmp).map_err(io_failure("create the artifacts' temp directory"))?;
    let tree = TempPath(Some(tmp.join(format!("unpack-{}", uuid::Uuid::new_v4().simple()))));
    std::fs::create_dir(tree.path()).map_err(io_failure("create an unpack directory"))?;
    let file = std::fs::File::open(archive).map_err(io_failure("open an uploaded archive"))?;
    let decoder = compression.decoder(std::io::BufReader::new(file)).map_err(corrupt)?;
    let bytes = unpack(decoder, tree.path(), limits)?;
    let manifest = read_manifest(tree.path())?;
    Ok(Unpacked { tree, manifest, bytes })
}

/// Unpacks the tar stream `tar` into the empty directory `into`; returns the bytes of its
/// files. Each entry is checked before anything is written for it:
/// - its path is relative, without `..`, and no directory on the way is a symlink;
/// - regular files and directories are created (files with their execute bits, no
///   setuid/setgid/sticky: read-only once sealed); a path may not appear twice;
/// - a symlink's target is relative and climbs (`..`, only at its start) no higher than the
///   link's own directory is deep: it points inside the tree;
/// - hard links, devices, fifos and every other kind of entry are refused;
/// - at most `limits.max_entries` entries (every one the crate yields, metadata included) and
///   `limits.max_unpacked_bytes` bytes (the stream is watched before the `tar` crate reads
///   it: its headers' sizes, extension headers' included, and its decompressed length);
/// - the stream ends as a whole (a truncated or corrupt one is refused).
pub fn unpack(tar: impl Read, into: &Path, limits: ArtifactLimits) -> Result<u64, Error> {
    let mut archive = tar::Archive::new(Watch::new(tar, limits));
    let mut entries_seen: u64 = 0;
    let mut bytes: u64 = 0;
    let entries = archive.entries().map_err(unreadable)?;
    for entry in entries {
        let mut entry = entry.map_err(unreadable)?;
        // Every entry the crate yields counts, metadata too: millions of empty PAX global
        // headers are as much work as millions of files. (The extension headers the crate folds
        // into the entry after them — a long name, a long link and a PAX header at most, each
        // once — are bounded by the entries.)
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(refused(format!("it has more than {} entries", limits.max_entries)));
        }
        let kind = entry.header().entry_type();
        // Metadata for the entries that follow (`git archive` writes a global one): no file.
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let raw = entry.path().map_err(unreadable)?.into_owned();
        let shown = raw.display().to_string();
        let parts = relative_parts(&raw).map_err(|why| refused(format!("'{shown}' {why}")))?;
        if parts.is_empty() {
            // `./` itself.
            if kind.is_dir() {
                continue;
            }
            return Err(refused(format!("'{shown}' names the archive's root")));
        }
        let target = parts.iter().fold(into.to_path_buf(), |p, c| p.join(c));
        // Every directory on the way must be one this archive made (never a symlink).
        let mut parent = into.to_path_buf();
        for part in &parts[..parts.len() - 1] {
            parent.push(part);
            match std::fs::symlink_metadata(&parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(refused(format!("'{shown}' goes through '{}', which is not a directory", part))),
                Err(_) => std::fs::create_dir(&parent).map_err(io_failure("create a directory of an artifact"))?,
            }
        }
        let mode = entry.header().mode().map_err(corrupt)? & 0o777;
        use tar::EntryType;
        match kind {
            EntryType::Directory => match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(refused(format!("'{shown}' appears twice"))),
                Err(_) => std::fs::create_dir(&target).map_err(io_failure("create a directory of an artifact"))?,
            },
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                if bytes.saturating_add(size) > limits.max_unpacked_bytes {
                    return Err(refused(format!(
                        "its files take more than {} unpacked",
                        human(limits.max_unpacked_bytes)
                    )));
                }
                let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map_err(|e| {
                    match e.kind() {
                        std::io::ErrorKind::AlreadyExists => refused(format!("'{shown}' appears twice")),
                        _ => io_failure("create a file of an artifact")(e),
                    }
                })?;
                // No more than the header said (the reader stops there), and all of it.
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(unreadable)?;
                if copied != size {
                    return Err(corrupt("an entry ends early"));
                }
                bytes += size;
                out.flush().map_err(io_failure("write a file of an artifact"))?;
                // Read-only, keeping who may execute it; never setuid, setgid or sticky.
                let mode = (mode & 0o555) | 0o444;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(io_failure("set the mode of a file of an artifact"))?;
            }
            EntryType::Symlink => {
                let link =
                    entry.link_name().map_err(unreadable)?.ok_or_else(|| corrupt("a symlink without a target"))?;
                let depth = parts.len() - 1;
                if !link_stays_inside(&link, depth) {
                    return Err(refused(format!(
                        "the symlink '{shown}' points outside the archive ('{}')",
                        link.display()
                    )));
                }
                std::os::unix::fs::symlink(&link, &target).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => refused(format!("'{shown}' appears twice")),
                    _ => io_failure("create a symlink of an artifact")(e),
                })?;
            }
            EntryType::Link => return Err(refused(format!("'{shown}' is a hard link (not accepted)"))),
            EntryType::Char | EntryType::Block => {
                return Err(refused(format!("'{shown}' is a device file (not accepted)")))
            }
            EntryType::Fifo => return Err(refused(format!("'{shown}' is a fifo (not accepted)"))),
            other => return Err(refused(format!("'{shown}' is an entry of a kind not accepted ({other:?})"))),
        }
    }
    // The rest of the stream (the end blocks, padding) must decompress whole: a truncated or
    // corrupt archive fails here even when its last entry was complete. Bounded, like the files.
    let mut rest = archive.into_inner();
    let mut tail = (&mut rest).take(limits.max_unpacked_bytes.saturating_sub(bytes).saturating_add(1));
    let trailing = std::io::copy(&mut tail, &mut std::io::sink()).map_err(unreadable)?;
    if bytes + trailing > limits.max_unpacked_bytes {
        return Err(refused(format!("its files take more than {} unpacked", human(limits.max_unpacked_bytes))));
    }
    Ok(bytes)
}

/// The largest extension entry (a GNU long name or link, a PAX header) accepted: the `tar`
/// crate reads each whole into memory, and no name or set of PAX records is anywhere near it.
const MAX_EXTENSION_BYTES: u64 = 64 << 10;

/// What a tar stream may take beyond its entries' sizes, per entry: its header and the up to
/// three extension headers before it (a long name, a long link, a PAX header), each with the
/// padding of its data to a whole block (4 × 1023 bytes at most).
const STREAM_BYTES_PER_ENTRY: u64 = 4 << 10;

/// And once per archive: its end blocks and the padding of its last record.
const STREAM_SLACK_BYTES: u64 = 1 << 20;

/// A refusal found while the tar stream is read (carried through the `tar` crate's I/O errors).
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The tar stream as the `tar` crate (0.4.46) reads it, watched header by header before the
/// crate sees it. It ends the stream with a [`Refusal`] at
/// - an extension entry (`L`, `K`, `x`, `g`) over [`MAX_EXTENSION_BYTES`] (the crate holds a
///   long name, a long link or a PAX header in memory whole);
/// - entries whose sizes, extension entries' included, add up past the unpacked limit
///   (whatever their kind: the crate decompresses what it skips too);
/// - a decompressed stream longer than that limit plus [`STREAM_BYTES_PER_ENTRY`] per entry
///   and [`STREAM_SLACK_BYTES`], however its headers read;
/// - a GNU sparse entry (never accepted: the crate reads its map from blocks this watch would
///   take for headers);
/// - a PAX `size` followed by another extension header before its entry (tar 0.4.45 sized those
///   by it, 0.4.46 does not: no archive the two would read apart is accepted).
///
/// Each entry's size is the crate's, so that the watch reads headers where the crate does:
/// the size field read as the crate reads it ([`header_size`]), replaced by the first `size`
/// record ([`first_pax_size`]) of the PAX header before it — only when that header is an `x`
/// with a ustar or GNU magic: the crate yields any other (an `x` without one included) as an
/// entry of its own, its data skipped, never applied. After the archive's end (an all-zero
/// block) the crate reads no header: neither does the watch.
struct Watch<R> {
    inner: R,
    /// The header being read, and how much of it has come.
    header: [u8; 512],
    filled: usize,
    /// Bytes of the current entry's data (with its padding) still to come.
    data_left: u64,
    /// A PAX header's records being collected (its data, without padding): what came, and how
    /// much there is.
    pax: Option<(Vec<u8>, u64)>,
    /// The size the PAX header read last gave the entry to come.
    pax_size: Option<u64>,
    /// The end of the archive was read.
    ended: bool,
    /// The sizes of the entries so far, and how far they may go.
    total: u64,
    max_total: u64,
    /// The bytes of the stream so far (headers, padding and what follows the end included), and
    /// how far they may go.
    streamed: u64,
    max_streamed: u64,
}

impl<R: Read> Watch<R> {
    fn new(inner: R, limits: ArtifactLimits) -> Self {
        let max_total = limits.max_unpacked_bytes;
        let overhead = limits.max_entries.saturating_add(1).saturating_mul(STREAM_BYTES_PER_ENTRY);
        let max_streamed = max_total.saturating_add(overhead).saturating_add(STREAM_SLACK_BYTES);
        // Whole MiB, for the message.
        let max_streamed = max_streamed.checked_next_multiple_of(1 << 20).unwrap_or(max_streamed);
        Self {
            inner,
            header: [0; 512],
            filled: 0,
            data_left: 0,
            pax: None,
            pax_size: None,
            ended: false,
            total: 0,
            max_total,
            streamed: 0,
            max_streamed,
        }
    }

    fn refuse(why: String) -> std::io::Error {
        std::io::Error::other(Refusal(why))
    }

    /// A complete header: what follows it.
    fn on_header(&mut self) -> std::io::Result<()> {
        if self.header.iter().all(|b| *b == 0) {
            // The end of the archive: the crate reads no header after it (what follows is only
            // counted, and read to its end by `unpack`).
            self.ended = true;
            return Ok(());
        }
        let kind = self.header[156];
        // The crate reads the size field even when a PAX record replaces it.
        let own = header_size(&self.header[124..136])
            .ok_or_else(|| std::io::Error::other("a header's size does not read"))?;
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let size = if extension {
            // Sized by its own field (tar 0.4.46; 0.4.45 applied a pending PAX size to it).
            if self.pax_size.is_some() {
                let why = "a PAX header's size record is followed by another extended header";
                return Err(Self::refuse(why.into()));
            }
            own
        } else {
            // The entry the PAX header describes: the crate yields it, and the PAX header with it.
            self.pax_size.take().unwrap_or(own)
        };
        if extension && size > MAX_EXTENSION_BYTES {
            return Err(Self::refuse(format!(
                "an extended header of {size} bytes (at most {})",
                human(MAX_EXTENSION_BYTES)
            )));
        }
        if kind == b'S' {
            return Err(Self::refuse("it has a sparse file (not accepted)".into()));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.max_total {
            return Err(Self::refuse(format!("its files take more than {} unpacked", human(self.max_total))));
        }
        self.data_left =
            size.checked_next_multiple_of(512).ok_or_else(|| std::io::Error::other("a header's size overflows"))?;
        // The crate takes an `x` for the next entry's PAX header only with a ustar or GNU magic.
        let magic = &self.header[257..265];
        let recognised = (magic[..6] == b"ustar\0"[..] && magic[6..] == b"00"[..])
            || (magic[..6] == b"ustar "[..] && magic[6..] == b" \0"[..]);
        if kind == b'x' && recognised && size > 0 {
            self.pax = Some((Vec::with_capacity(size as usize), size));
        }
        Ok(())
    }

    fn watch(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        self.streamed = self.streamed.saturating_add(bytes.len() as u64);
        if self.streamed > self.max_streamed {
            return Err(Self::refuse(format!("it takes more than {} once decompressed", human(self.max_streamed))));
        }
        while !bytes.is_empty() && !self.ended {
            if self.data_left == 0 {
                let take = (512 - self.filled).min(bytes.len());
                self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
                self.filled += take;
                bytes = &bytes[take..];
                if self.filled == 512 {
                    self.filled = 0;
                    self.on_header()?;
                }
            } else {
                let take = (self.data_left.min(bytes.len() as u64)) as usize;
                if let Some((records, wanted)) = &mut self.pax {
                    let keep = (*wanted - records.len() as u64).min(take as u64) as usize;
                    records.extend_from_slice(&bytes[..keep]);
                    if records.len() as u64 == *wanted {
                        let (records, _) = self.pax.take().unwrap_or_default();
                        self.pax_size = first_pax_size(&records);
                    }
                }
                self.data_left -= take as u64;
                bytes = &bytes[take..];
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n])?;
        Ok(n)
    }
}

/// A tar header's 12-byte size field, read as the `tar` crate reads it: with the high bit of
/// its first byte set, base-256 (its last 8 bytes only); else octal digits up to the first NUL,
/// whitespace around them (none at all does not read).
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let skip = field.len().saturating_sub(8);
        return Some(field[skip..].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)));
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The size PAX `records` give their entry, as the `tar` crate reads them: the first `size`
/// record's, when the records up to it are well formed (`<length> <key>=<value>\n`, split at
/// newlines, the length counting the whole record) and its value is a number. An empty line
/// ends them; a malformed record or value means no size at all.
fn first_pax_size(records: &[u8]) -> Option<u64> {
    for line in records.split(|b| *b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let space = line.iter().position(|b| *b == b' ')?;
        let length: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if line.len() + 1 != length {
            return None;
        }
        let record = &line[space + 1..];
        let equals = record.iter().position(|b| *b == b'=')?;
        if &record[..equals] == b"size" {
            return std::str::from_utf8(&record[equals + 1..]).ok()?.parse().ok();
        }
    }
    None
}

/// An error reading the archive: a [`Refusal`] says why it was refused, anything else means
/// the stream is truncated or corrupt.
fn unreadable(e: std::io::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(Refusal(why)) = c.downcast_ref::<Refusal>() {
            return refused(why.clone());
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(Refusal(why)) = inner.downcast_ref::<Refusal>() {
                return refused(why.clone());
            }
        }
        cause = c.source();
    }
    corrupt(e)
}

/// The normal parts of a relative path (`.` left out); why not, when it is absolute or has `..`.
fn relative_parts(path: &Path) -> Result<Vec<String>, &'static str> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or("is not UTF-8")?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(parts)
}

/// The root's `pergola.toml`, a regular file, checked.
fn read_manifest(tree: &Path) -> Result<String, Error> {
    let path = tree.join(MANIFEST_FILE);
    let missing = || Error::validation("manifest", format!("The archive has no {MANIFEST_FILE} at its root."));
    let meta = std::fs::symlink_metadata(&path).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(Error::validation("manifest", format!("The archive's {MANIFEST_FILE} is not a regular file.")));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(Error::validation(
            "manifest",
            format!("The archive's {MANIFEST_FILE} is larger than {} KiB.", MAX_MANIFEST_BYTES >> 10),
        ));
    }
    let bytes = std::fs::read(&path).map_err(io_failure("read an artifact's manifest"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::validation("manifest", format!("The archive's {MANIFEST_FILE} is not UTF-8.")))?;
    pergola_domain::parse_manifest(&text)?;
    Ok(text)
}

/// `512 MiB`, `256 KiB`, `100 bytes`: whole units only.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn refused(why: String) -> Error {
    Error::validation("archive", format!("The archive was refused: {why}."))
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    // The reason may quote the archive's bytes: printable characters only, and not too many.
    let reason: String = e.to_string().chars().filter(|c| !c.is_control() && *c != '\u{fffd}').take(200).collect();
    Error::validation("archive", format!("The archive is truncated or corrupt: {}.", reason.trim_end_matches('.')))
}

/// Logs a failure of the server's own files and answers the generic internal error.
#[track_caller]
fn io_failure(operation: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    let at = std::panic::Location::caller();
    move |e| {
        tracing::error!(operation, at = %at, error = %e, "artifact file operation failed");
        Error::internal()
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Makes every directory under `dir` (and `dir`) read-only, deepest first.
pub fn seal(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            seal(&entry.path())?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// Deletes a file or a tree (read-only directories are made writable first; symlinks are
/// removed, never followed). Nothing there is fine.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    fn unseal(dir: &Path) -> std::io::Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                unseal(&entry.path())?;
            }
        }
        Ok(())
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => {
            unseal(path)?;
            std::fs::remove_dir_all(path)
        }
        Ok(_) => std::fs::remove_file(path),
    }
}

/// Packs the directory `dir` into a tar + gzip archive in memory, with `manifest` as its
/// `pergola.toml` (replacing one `dir` may have). For small builds (the demo, tests).
pub fn pack_dir(dir: &Path, manifest: &str) -> std::io::Result<Vec<u8>> {
    pack_dir_into(dir, manifest, Vec::new())
}

/// [`pack_dir`], written to `out` as it is packed (a download streams it); returns `out`.
/// Links are stored as links, never followed.
pub fn pack_dir_into<W: std::io::Write>(dir: &Path, manifest: &str, out: W) -> std::io::Result<W> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == MANIFEST_FILE {
            continue;
        }
        if entry.file_type()?.is_dir() {
            tar.append_dir_all(&name, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), &name)?;
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST_FILE, manifest.as_bytes())?;
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_of_a_stored_tree_is_what_was_unpacked() {
        let dir = std::env::temp_dir().join(format!("pergola-tree-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let packed = pack_dir(&dir, "[[component]]\nname = \"web\"\nkind = \"job\"\ncommand = \"true\"\n").unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a"), "12345").unwrap();
        std::os::unix::fs::symlink("sub", dir.join("link")).unwrap();
        let into = dir.join("out");
        std::fs::create_dir(&into).unwrap();
        let tar = flate2::read::MultiGzDecoder::new(&packed[..]);
        let bytes = unpack(tar, &into, ArtifactLimits::default()).unwrap();
        assert_eq!(tree_size(&into).unwrap(), bytes);
        assert_eq!(tree_size(&dir.join("sub")).unwrap(), 5);
        remove_tree(&dir).unwrap();
    }

    /// As the `tar` crate reads them (`num_field_wrapper_from`), not only as it writes them.
    #[test]
    fn header_sizes_read_as_tar_writes_them() {
        assert_eq!(header_size(b"00000001750\0"), Some(1000));
        assert_eq!(header_size(b"     1750 \0\0"), Some(1000));
        assert_eq!(header_size(b"\t1750\n\0\0\0\0\0\0"), Some(1000), "whitespace trimmed");
        assert_eq!(header_size(b"1750\0 777777"), Some(1000), "read up to the first NUL");
        assert_eq!(header_size(&[0; 12]), None, "no digits do not read (the crate refuses them)");
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 2;
        assert_eq!(header_size(&big), Some(513));
        // Base-256: the crate reads the last 8 bytes only.
        big[0] = 0xff;
        big[1] = 0x7f;
        big[3] = 1;
        assert_eq!(header_size(&big), Some(513));
        assert_eq!(header_size(b"12x4\0\0\0\0\0\0\0\0"), None);
    }

    /// As the `tar` crate reads them (`pax_extensions_value`): the first `size` record, when
    /// the records before it are well formed.
    #[test]
    fn pax_records_read_as_tar_reads_them() {
        assert_eq!(first_pax_size(b"10 size=5\n"), Some(5));
        assert_eq!(first_pax_size(b"10 size=5\n11 size=99\n"), Some(5), "the first one");
        assert_eq!(first_pax_size(b"11 size=99\n10 size=5\n"), Some(99));
        assert_eq!(first_pax_size(b"8 uid=1\n10 size=5\n"), Some(5));
        assert_eq!(first_pax_size(b"10 size=5"), Some(5), "the last newline is not needed");
        assert_eq!(first_pax_size(b"11 size=+5\n"), Some(5));
        assert_eq!(first_pax_size(b"99 uid=1\n10 size=5\n"), None, "a bad length ends them");
        assert_eq!(first_pax_size(b"8 uid=1\n\n10 size=5\n"), None, "so does an empty line");
        assert_eq!(first_pax_size(b"12 size=abc\n10 size=5\n"), None, "so does a bad size");
        assert_eq!(first_pax_size(b"10 path=a\n"), None);
        assert_eq!(first_pax_size(b""), None);
    }

    /// A PAX header's `size` sizes the next entry, for the watch as for the `tar` crate: the
    /// entries after it still read.
    #[test]
    fn a_pax_size_applies_to_the_next_entry() {
        let mut tar = tar::Builder::new(Vec::new());
        let entry = |kind: tar::EntryType, name: &str, size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(kind);
            h.set_cksum();
            h
        };
        let records = b"10 size=5\n";
        tar.append(&entry(tar::EntryType::XHeader, "pax", records.len() as u64), &records[..]).unwrap();
        tar.append(&entry(tar::EntryType::Regular, "hello", 0), &b"hello"[..]).unwrap();
        let manifest = b"[[component]]\nname = \"web\"\nkind = \"job\"\ncommand = \"true\"\n";
        tar.append(&entry(tar::EntryType::Regular, MANIFEST_FILE, manifest.len() as u64), &manifest[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let dir = std::env::temp_dir().join(format!("pergola-pax-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let unpacked = unpack(&bytes[..], &dir, ArtifactLimits::default()).unwrap();
        assert_eq!(unpacked, 5 + manifest.len() as u64);
        assert_eq!(std::fs::read_to_string(dir.join("hello")).unwrap(), "hello");
        assert!(read_manifest(&dir).is_ok());
        remove_tree(&dir).unwrap();
    }

    /// A size a hostile header claims: far more than any limit, and more than octal fits.
    const HUGE: u64 = 16 << 30;

    const TEST_MANIFEST: &[u8] = b"[[component]]\nname = \"web\"\nkind = \"job\"\ncommand = \"true\"\n";

    /// A tar header, as the hostile tests write them byte by byte: `header` is
    /// `tar::Header::new_ustar()` or `new_gnu()` (the magics the crate reads extension headers
    /// in) or `new_old()` (no magic); named `name`, of the kind `kind`, its size field `size`
    /// (base-256 from 8 GiB on, as tar writes it).
    fn raw(mut header: tar::Header, name: &str, kind: u8, size: u64) -> Vec<u8> {
        header.set_path(name).unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    /// [`raw`], then `data` padded to whole blocks.
    fn member(header: tar::Header, name: &str, kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
        let mut out = raw(header, name, kind, size);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    /// PAX records: `<length> <key>=<value>\n` each, the length counting itself.
    fn pax_records(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in records {
            let rest = format!(" {key}={value}\n");
            let mut length = rest.len();
            while format!("{length}{rest}").len() != length {
                length = format!("{length}{rest}").len();
            }
            out.extend_from_slice(format!("{length}{rest}").as_bytes());
        }
        out
    }

    /// A PAX header (`x`, ustar magic: one the crate reads) with `records`, and its data.
    fn pax_member(records: &[(&str, &str)]) -> Vec<u8> {
        let records = pax_records(records);
        member(tar::Header::new_ustar(), "PaxHeaders/a", b'x', records.len() as u64, &records)
    }

    /// A tar stream: a valid `pergola.toml`, then `parts`, then the end (two zero blocks).
    fn archive_of(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = member(tar::Header::new_ustar(), MANIFEST_FILE, b'0', TEST_MANIFEST.len() as u64, TEST_MANIFEST);
        for part in parts {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    /// A new, empty store in a temp directory, with the default limits.
    fn new_store() -> Artifacts {
        let root = std::env::temp_dir().join(format!("pergola-artifacts-{}", uuid::Uuid::new_v4().simple()));
        Artifacts::new(root, ArtifactLimits::default())
    }

    /// Uploads the tar stream `tar`, gzipped, into `store`, and keeps it.
    async fn upload(store: &Artifacts, tar: &[u8]) -> Result<Stored, Error> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let gzipped = gz.finish().unwrap();
        let received = store.receive(&gzipped[..], Compression::Gzip).await?;
        store.keep(received).await.map(|(stored, _placing)| stored)
    }

    /// Uploads `tar` into a new store: refused, the reason saying `why`, and nothing kept (no
    /// artifact, no temp file).
    async fn assert_refused(what: &str, tar: &[u8], why: &str) {
        let store = new_store();
        let e = match upload(&store, tar).await {
            Ok(stored) => panic!("{what}: accepted as {stored:?}"),
            Err(e) => e,
        };
        assert_eq!(e.kind, pergola_domain::ErrorKind::Validation, "{what}: {e:?}");
        assert!(e.message.starts_with("The archive was refused: "), "{what}: {}", e.message);
        assert!(e.message.contains(why), "{what}: {}", e.message);
        assert!(!store.root().join("sha256").exists(), "{what}: nothing stored");
        let left: Vec<_> = std::fs::read_dir(store.root().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
        remove_tree(store.root()).unwrap();
    }

    /// A PAX header with two `size` records sizes its entry by the first, for the watch as for
    /// the `tar` crate: a huge last one neither refuses the archive nor moves the headers the
    /// watch reads.
    #[tokio::test]
    async fn a_pax_header_sizes_its_entry_by_its_first_size_record() {
        let tar = archive_of(&[
            pax_member(&[("size", "5"), ("size", "2147483648")]),
            member(tar::Header::new_ustar(), "hello", b'0', 0, b"hello"),
        ]);
        // What the crate reads.
        let mut read = tar::Archive::new(&tar[..]);
        let sizes: Vec<(Vec<u8>, u64)> =
            read.entries().unwrap().map(|e| e.map(|e| (e.path_bytes().into_owned(), e.size())).unwrap()).collect();
        assert_eq!(sizes, [(MANIFEST_FILE.as_bytes().to_vec(), TEST_MANIFEST.len() as u64), (b"hello".to_vec(), 5)]);
        // And what is kept.
        let store = new_store();
        let stored = upload(&store, &tar).await.unwrap();
        assert_eq!(std::fs::read_to_string(stored.dir.join("hello")).unwrap(), "hello");
        assert_eq!(stored.unpacked_size, 5 + TEST_MANIFEST.len() as u64);
        remove_tree(store.root()).unwrap();
    }

    /// Two `size` records in a PAX header, either way round, or a PAX size before a long name:
    /// whatever the records say, the header the crate reads next — here a GNU long name of
    /// 16 GiB, which it would read into memory — is one the watch reads and refuses.
    #[tokio::test]
    async fn pax_size_records_cannot_hide_a_header_from_the_checks() {
        let huge = raw(tar::Header::new_gnu(), "@LongLink", b'L', HUGE);
        let zeros = vec![0u8; 4 << 10];
        // The first record small: "a" is empty and the long name its next header (the last
        // record would have it taken for "a"'s data).
        let first_small = archive_of(&[
            pax_member(&[("size", "0"), ("size", "1024")]),
            raw(tar::Header::new_ustar(), "a", b'0', 0),
            huge.clone(),
            zeros.clone(),
        ]);
        // The first record larger: "a" holds a decoy header (which the last record would have
        // read as one, its data covering the long name).
        let first_large = archive_of(&[
            pax_member(&[("size", "1024"), ("size", "0")]),
            raw(tar::Header::new_ustar(), "a", b'0', 0),
            raw(tar::Header::new_ustar(), "decoy", b'0', 1024),
            vec![0; 512],
            huge.clone(),
            zeros.clone(),
        ]);
        let long_name = format!("an extended header of {HUGE} bytes (at most 64 KiB)");
        assert_refused("the first size small", &first_small, &long_name).await;
        assert_refused("the first size large", &first_large, &long_name).await;
        // A PAX size, then a long name: tar 0.4.45 sized the long name by it, 0.4.46 does not.
        let before_a_long_name = archive_of(&[pax_member(&[("size", "0")]), huge, zeros]);
        let why = "a PAX header's size record is followed by another extended header";
        assert_refused("a PAX size before a long name", &before_a_long_name, why).await;
    }

    /// A GNU long name claiming 16 GiB (which the crate would read into memory) is refused,
    /// also after an `x` header without a ustar or GNU magic: the crate yields that one as an
    /// entry of its own and applies its `size` record to nothing.
    #[tokio::test]
    async fn a_huge_gnu_long_name_is_refused_even_after_an_x_header_tar_does_not_read_as_pax() {
        let huge = raw(tar::Header::new_gnu(), "@LongLink", b'L', HUGE);
        let zeros = vec![0u8; 4 << 10];
        let records = pax_records(&[("size", "10")]);
        let no_magic = member(tar::Header::new_old(), "PaxHeaders/a", b'x', records.len() as u64, &records);
        let why = format!("an extended header of {HUGE} bytes (at most 64 KiB)");
        assert_refused("a long name", &archive_of(&[huge.clone(), zeros.clone()]), &why).await;
        assert_refused("after an x without a magic", &archive_of(&[no_magic, huge, zeros]), &why).await;
    }

    /// 100 000 empty PAX global headers (nothing to unpack, all to read) are as many entries.
    #[tokio::test]
    async fn empty_pax_global_headers_count_towards_the_entry_limit() {
        let global = raw(tar::Header::new_ustar(), "pax_global_header", b'g', 0);
        let tar = archive_of(&[global.repeat(MAX_ENTRIES as usize)]);
        assert_refused("global headers", &tar, &format!("it has more than {MAX_ENTRIES} entries")).await;
    }

    /// However its headers read, no more of a stream is decompressed than the unpacked limit
    /// and the headers' allowance: here 1 KiB + 2 × 4 KiB + 1 MiB, in whole MiB.
    #[test]
    fn the_decompressed_stream_is_capped() {
        let limits = ArtifactLimits { max_archive_bytes: 1 << 20, max_entries: 1, max_unpacked_bytes: 1 << 10 };
        let zeros = vec![0u8; 3 << 20];
        let e = std::io::copy(&mut Watch::new(&zeros[..], limits), &mut std::io::sink()).unwrap_err();
        assert_eq!(unreadable(e).message, "The archive was refused: it takes more than 2 MiB once decompressed.");
    }

    #[test]
    fn content_types_name_the_compression() {
        assert_eq!(Compression::from_content_type("application/gzip"), Some(Compression::Gzip));
        assert_eq!(Compression::from_content_type("Application/Zstd; x=1"), Some(Compression::Zstd));
        assert_eq!(Compression::from_content_type("application/json"), None);
        assert_eq!(Compression::parse("zstd"), Some(Compression::Zstd));
    }
}
