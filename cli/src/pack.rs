//! Packing a build directory into the archive `pergola create build` uploads: a tar archive,
//! compressed with gzip, whose root holds the directory's files and the manifest as
//! `pergola.toml`.
//!
//! What goes in:
//! - the manifest first, as `pergola.toml` (DIR's own, or the `--manifest` file's content in
//!   its place);
//! - then every directory, regular file and symbolic link under DIR, depth first, each
//!   directory's entries sorted by name, except what `.pergolaignore` files leave out (gitignore
//!   syntax, in DIR and in any subdirectory, each applying below its own directory) and any `.git`;
//! - permission bits (`0o777`, so executables stay executable; set-id bits are dropped) and
//!   modification times as on disk; owner 0:0 and no user or group names, so the same tree with
//!   the same mtimes gives the same archive bytes (the gzip header carries no time either);
//! - symbolic links as links, never followed; a link that points outside DIR (absolute, or
//!   climbing out with `..`) is refused before anything is sent, since the server would refuse
//!   the archive — and so is a `DIR/pergola.toml` that is a link leading out of DIR (it is read,
//!   not stored as a link: followed, it would upload whatever file it names);
//! - each file as it was planned: a file replaced between [`plan`] and [`Plan::write`] (by a
//!   link, a FIFO, another file) fails the packing rather than being followed or read;
//! - hard links as files of their own (the server takes no hard-link entries);
//! - sockets, FIFOs and device files are skipped, each with a warning.
//!
//! `.gitignore` files are not read: what git leaves out (a compiled binary, `dist/`) is often
//! exactly what a build needs.
//!
//! [`plan`] walks the tree (errors surface here, before any upload starts) and [`Plan::write`]
//! packs it into any writer, reading each file as it goes: nothing holds the whole archive.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// The manifest's name at the archive's root.
pub const MANIFEST: &str = "pergola.toml";
/// The ignore file, in gitignore syntax.
pub const IGNORE_FILE: &str = ".pergolaignore";

/// What will be packed, and what was skipped.
#[derive(Debug)]
pub struct Plan {
    root: PathBuf,
    manifest: Vec<u8>,
    manifest_mtime: u64,
    entries: Vec<Entry>,
    /// Special files left out (each deserves a warning).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug)]
struct Entry {
    /// Relative to the root, never empty.
    rel: PathBuf,
    kind: Kind,
    mode: u32,
    mtime: u64,
}

#[derive(Debug)]
enum Kind {
    Dir,
    /// A regular file: its size, and the device and inode it was found at — what it is opened
    /// as must be the same file.
    File {
        size: u64,
        dev: u64,
        ino: u64,
    },
    Symlink {
        target: PathBuf,
    },
}

/// A file that is not packed: a socket, a FIFO or a device.
#[derive(Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub what: &'static str,
}

/// Walks `dir` and reads the manifest (`manifest`, else `DIR/pergola.toml`). Fails — before
/// anything is sent — when the directory or the manifest cannot be read, a `.pergolaignore` is
/// invalid, or a symbolic link points outside `dir`.
pub fn plan(dir: &Path, manifest: Option<&Path>) -> Result<Plan, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let manifest_path = match manifest {
        Some(path) => path.to_path_buf(),
        None => manifest_in(dir)?,
    };
    let manifest_text = std::fs::read(&manifest_path).map_err(|e| match (e.kind(), manifest) {
        (io::ErrorKind::NotFound, None) => {
            format!("{} has no {MANIFEST}: add the manifest there, or name it with --manifest FILE", dir.display())
        }
        _ => format!("cannot read the manifest {}: {e}", manifest_path.display()),
    })?;
    let manifest_mtime = std::fs::metadata(&manifest_path).map(|m| mtime(&m)).unwrap_or(0);

    let mut walk = ignore::WalkBuilder::new(dir);
    walk.standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git");
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for item in walk.build() {
        let item = item.map_err(|e| format!("cannot pack {}: {e}", dir.display()))?;
        if item.depth() == 0 {
            continue;
        }
        let path = item.path();
        let rel = path.strip_prefix(dir).expect("the walk stays under its root").to_path_buf();
        if rel == Path::new(MANIFEST) {
            continue; // the manifest goes first, from wherever it comes
        }
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File { size: meta.len(), dev: meta.dev(), ino: meta.ino() }
        } else if file_type.is_symlink() {
            let target =
                std::fs::read_link(path).map_err(|e| format!("cannot read the link {}: {e}", path.display()))?;
            if !stays_inside(&rel, &target) {
                return Err(format!(
                    "{} is a symbolic link to {}, outside {} (or with a '..' after a name, which may lead \
                     anywhere): the server refuses such links; list it in {IGNORE_FILE} or replace it with \
                     what it points to",
                    path.display(),
                    target.display(),
                    dir.display()
                ));
            }
            Kind::Symlink { target }
        } else {
            let what = if file_type.is_socket() {
                "a socket"
            } else if file_type.is_fifo() {
                "a FIFO"
            } else if file_type.is_block_device() || file_type.is_char_device() {
                "a device file"
            } else {
                "not a file, directory or link"
            };
            skipped.push(Skipped { path: path.to_path_buf(), what });
            continue;
        };
        entries.push(Entry { rel, kind, mode: meta.mode() & 0o777, mtime: mtime(&meta) });
    }
    Ok(Plan { root: dir.to_path_buf(), manifest: manifest_text, manifest_mtime, entries, skipped })
}

/// Where `DIR/pergola.toml` is read from: itself, or — when it is a symbolic link — the file it
/// leads to, which must be inside `dir` (the rule of every other link: one leading out of DIR,
/// to `~/.ssh/id_ed25519` say, would upload that file as the manifest). `--manifest FILE` names
/// a file outside on purpose; a link does not.
fn manifest_in(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join(MANIFEST);
    let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(path); // a file, or nothing (said when it is read)
    }
    let target = std::fs::read_link(&path).map_err(|e| format!("cannot read the link {}: {e}", path.display()))?;
    // Resolved all the way (a link to a link, a link through a linked directory): the file read
    // is the one judged.
    let resolved = std::fs::canonicalize(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("{} is a symbolic link to {}, which does not exist", path.display(), target.display())
        }
        _ => format!("cannot read the manifest {}: {e}", path.display()),
    })?;
    let root = std::fs::canonicalize(dir).map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "{} is a symbolic link to {}, outside {}: a manifest is not read through a link out of the \
             directory; replace the link with the file, or name the file with --manifest FILE",
            path.display(),
            target.display(),
            dir.display()
        ));
    }
    Ok(resolved)
}

/// Whether a link at `rel` (relative to the root) pointing to `target` stays inside the root,
/// judged on the names alone (the link is stored, never followed) by the server's rule.
fn stays_inside(rel: &Path, target: &Path) -> bool {
    pergola_domain::archive::link_stays_inside(target, rel.components().count() - 1)
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    meta.mtime().max(0) as u64
}

impl Plan {
    /// The bytes of the regular files to pack, the manifest included (before compression).
    pub fn total_bytes(&self) -> u64 {
        let files: u64 = self.entries.iter().map(|e| if let Kind::File { size, .. } = e.kind { size } else { 0 }).sum();
        files + self.manifest.len() as u64
    }

    /// The archive's paths in order, `/` after directories (for tests and messages).
    #[cfg(test)]
    pub fn paths(&self) -> Vec<String> {
        let mut paths = vec![MANIFEST.to_owned()];
        for e in &self.entries {
            let mut p = e.rel.to_string_lossy().into_owned();
            if matches!(e.kind, Kind::Dir) {
                p.push('/');
            }
            paths.push(p);
        }
        paths
    }

    /// Packs the tree into `out` as tar + gzip, reading each file as it goes; `packed` counts the
    /// file bytes read so far. Fails if a file changed size or kind while it was packed, or is
    /// no longer the file planned (see `open_planned`).
    pub fn write<W: Write>(&self, out: W, packed: &AtomicU64) -> io::Result<W> {
        let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
        let mut header = tar_header(tar::EntryType::Regular, 0o644, self.manifest_mtime);
        header.set_size(self.manifest.len() as u64);
        tar.append_data(&mut header, MANIFEST, self.manifest.as_slice())?;
        packed.fetch_add(self.manifest.len() as u64, Ordering::Relaxed);
        for e in &self.entries {
            match &e.kind {
                Kind::Dir => {
                    let mut header = tar_header(tar::EntryType::Directory, e.mode, e.mtime);
                    header.set_size(0);
                    tar.append_data(&mut header, &e.rel, io::empty())?;
                }
                Kind::Symlink { target } => {
                    let mut header = tar_header(tar::EntryType::Symlink, e.mode, e.mtime);
                    header.set_size(0);
                    tar.append_link(&mut header, &e.rel, target)?;
                }
                Kind::File { size, dev, ino } => {
                    let path = self.root.join(&e.rel);
                    let file = open_planned(&path, *dev, *ino)?;
                    let mut header = tar_header(tar::EntryType::Regular, e.mode, e.mtime);
                    header.set_size(*size);
                    let reader = Exact { file, left: *size, path: &path, packed };
                    tar.append_data(&mut header, &e.rel, reader)?;
                }
            }
        }
        tar.into_inner()?.finish()
    }
}

/// How much of the archive may wait between the packing thread and the upload.
const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 8;

/// Packs `plan` in a background thread and hands the archive out as a [`Read`] as it is
/// produced (at most [`CHUNKS_IN_FLIGHT`] chunks of [`CHUNK`] bytes wait in between: the
/// packing waits for the upload). A packing failure is an error of the reader too, so an upload
/// stops instead of ending with a truncated archive; the thread's result says why.
pub fn spawn(plan: Plan, packed: Arc<AtomicU64>) -> (ArchiveReader, std::thread::JoinHandle<io::Result<()>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let thread = std::thread::spawn(move || {
        let out = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        match plan.write(out, &packed).and_then(ChunkWriter::end) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = tx.send(Chunk::Failed(e.to_string()));
                Err(e)
            }
        }
    });
    (ArchiveReader { rx, current: Vec::new(), pos: 0, ended: false }, thread)
}

enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(String),
}

struct ChunkWriter {
    tx: SyncSender<Chunk>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        self.tx.send(chunk).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn end(mut self) -> io::Result<()> {
        self.flush()?;
        self.send(Chunk::End)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.send(Chunk::Data(chunk))?;
        }
        Ok(())
    }
}

/// The archive as the packing thread produces it.
pub struct ArchiveReader {
    rx: Receiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(data)) => (self.current, self.pos) = (data, 0),
                Ok(Chunk::End) => self.ended = true,
                Ok(Chunk::Failed(why)) => return Err(io::Error::other(why)),
                Err(_) => return Err(io::Error::other("packing stopped")),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn tar_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Opens the regular file planned at `path` (device `dev`, inode `ino`), and only it: a file
/// swapped in since the plan — a link to a file outside DIR (of the same size, say), a FIFO, a
/// device, another file — is the packing's failure, never read. The last component is not
/// followed (`O_NOFOLLOW`), nothing blocks on opening (`O_NONBLOCK`: a FIFO opened for reading
/// would wait for a writer; regular files read as usual), and what was opened is checked to be
/// the planned inode, which also catches a directory on the way replaced by a link.
fn open_planned(path: &Path, dev: u64, ino: u64) -> io::Result<std::fs::File> {
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |err| match err.raw_os_error() {
                // The file is now a symbolic link.
                Some(libc::ELOOP) => changed(path),
                _ => io::Error::new(err.kind(), format!("cannot read {}: {err}", path.display())),
            },
        )?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.dev() != dev || meta.ino() != ino {
        return Err(changed(path));
    }
    Ok(file)
}

fn changed(path: &Path) -> io::Error {
    io::Error::other(format!("{} changed while it was packed; try again", path.display()))
}

/// A file read for exactly the size its header announces: shorter or longer is an error (the
/// archive would be corrupt).
struct Exact<'a> {
    file: std::fs::File,
    left: u64,
    path: &'a Path,
    packed: &'a AtomicU64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return match self.file.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(changed(self.path)),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed(self.path));
        }
        self.left -= n as u64;
        self.packed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn pack(dir: &Path, manifest: Option<&Path>) -> Vec<u8> {
        let plan = plan(dir, manifest).unwrap();
        plan.write(Vec::new(), &AtomicU64::new(0)).unwrap()
    }

    /// What an archive holds: path → (kind, mode, content or link target).
    fn read_back(archive: &[u8]) -> BTreeMap<String, (char, u32, String)> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        let mut out = BTreeMap::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
            let mode = entry.header().mode().unwrap();
            let value = match entry.header().entry_type() {
                tar::EntryType::Directory => ('d', mode, String::new()),
                tar::EntryType::Symlink => {
                    ('l', mode, entry.link_name().unwrap().unwrap().to_string_lossy().into_owned())
                }
                tar::EntryType::Regular => {
                    let mut text = String::new();
                    entry.read_to_string(&mut text).unwrap();
                    ('f', mode, text)
                }
                other => panic!("unexpected entry {other:?}"),
            };
            assert!(out.insert(path, value).is_none(), "each path once");
        }
        out
    }

    /// The same view of a directory on disk.
    fn read_tree(root: &Path) -> BTreeMap<String, (char, u32, String)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let mode = meta.mode() & 0o777;
                let value = if meta.is_dir() {
                    stack.push(path.clone());
                    ('d', mode, String::new())
                } else if meta.file_type().is_symlink() {
                    ('l', mode, std::fs::read_link(&path).unwrap().to_string_lossy().into_owned())
                } else {
                    ('f', mode, std::fs::read_to_string(&path).unwrap())
                };
                out.insert(rel, value);
            }
        }
        out
    }

    #[test]
    fn the_archive_read_back_equals_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "pergola.toml", "[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\n");
        write(root, "web", "#!/bin/sh\necho hi\n");
        std::fs::set_permissions(root.join("web"), std::fs::Permissions::from_mode(0o755)).unwrap();
        write(root, "static/css/site.css", "body{}");
        write(root, "static/index.html", "<p>hi</p>");
        std::fs::create_dir(root.join("empty")).unwrap();
        std::fs::set_permissions(root.join("static"), std::fs::Permissions::from_mode(0o750)).unwrap();
        symlink("static/index.html", root.join("index.html")).unwrap();
        symlink("../web", root.join("static/web")).unwrap();
        let archive = pack(root, None);
        let got = read_back(&archive);
        assert_eq!(got, read_tree(root));
        assert_eq!(got["web"].1, 0o755, "the executable bit is kept");
        assert_eq!(got["static"].1, 0o750);
        assert_eq!(got["index.html"], ('l', 0o777, "static/index.html".into()), "a link stays a link");
        assert_eq!(got["static/web"].0, 'l');
        let order = plan(root, None).unwrap().paths();
        assert_eq!(
            order,
            [
                "pergola.toml",
                "empty/",
                "index.html",
                "static/",
                "static/css/",
                "static/css/site.css",
                "static/index.html",
                "static/web",
                "web"
            ],
            "the manifest first, then sorted"
        );
        assert_eq!(archive, pack(root, None), "the same tree gives the same bytes");
    }

    #[test]
    fn long_names_and_link_targets_and_a_linked_directory_are_packed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "pergola.toml", "");
        let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(120));
        write(root, &long, "deep");
        symlink(&long, root.join("link")).unwrap();
        std::fs::hard_link(root.join(&long), root.join("hard")).unwrap();
        let got = read_back(&pack(root, None));
        assert_eq!(got[&long].2, "deep");
        assert_eq!(got["link"].2, long);
        assert_eq!(got["hard"], got[&long], "a hard link is packed as a file of its own");
        // DIR itself may be a link to the directory.
        let via = tempfile::tempdir().unwrap();
        symlink(root, via.path().join("build")).unwrap();
        assert_eq!(read_back(&pack(&via.path().join("build"), None)), got);
    }

    #[test]
    fn pergolaignore_leaves_out_files_directories_and_takes_negations_and_git_is_always_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "pergola.toml", "");
        write(root, ".pergolaignore", "# build leftovers\n*.log\n!keep.log\ntarget/\n/secret.env\n");
        write(root, "app.log", "x");
        write(root, "keep.log", "x");
        write(root, "target/debug/big", "x");
        write(root, "secret.env", "x");
        write(root, "sub/secret.env", "kept: the pattern is anchored at the root");
        write(root, "sub/.pergolaignore", "*.tmp\n");
        write(root, "sub/a.tmp", "x");
        write(root, "b.tmp", "kept: sub's ignore file applies below sub only");
        write(root, "sub/deep/c.log", "x");
        write(root, ".git/HEAD", "ref: refs/heads/main");
        write(root, "sub/.git", "gitdir: elsewhere");
        write(root, ".github/workflows/ci.yml", "kept");
        let paths = plan(root, None).unwrap().paths();
        assert_eq!(
            paths,
            [
                "pergola.toml",
                ".github/",
                ".github/workflows/",
                ".github/workflows/ci.yml",
                ".pergolaignore",
                "b.tmp",
                "keep.log",
                "sub/",
                "sub/.pergolaignore",
                "sub/deep/",
                "sub/secret.env"
            ]
        );
    }

    #[test]
    fn an_ignored_manifest_is_packed_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "version = \"1\"\n");
        write(dir.path(), ".pergolaignore", "*.toml\n");
        assert_eq!(read_back(&pack(dir.path(), None))["pergola.toml"].2, "version = \"1\"\n");
    }

    #[test]
    fn manifest_option_replaces_the_directorys_pergola_toml() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "version = \"from the directory\"\n");
        write(dir.path(), "app", "x");
        let other = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(other.path(), "version = \"from --manifest\"\n").unwrap();
        let got = read_back(&pack(dir.path(), Some(other.path())));
        assert_eq!(got["pergola.toml"].2, "version = \"from --manifest\"\n");
        assert_eq!(got.keys().collect::<Vec<_>>(), ["app", "pergola.toml"], "one pergola.toml");
        // And when the directory has none.
        std::fs::remove_file(dir.path().join("pergola.toml")).unwrap();
        assert_eq!(
            read_back(&pack(dir.path(), Some(other.path())))["pergola.toml"].2,
            "version = \"from --manifest\"\n"
        );
    }

    #[test]
    fn a_missing_manifest_or_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app", "x");
        let err = plan(dir.path(), None).unwrap_err();
        assert!(err.ends_with("has no pergola.toml: add the manifest there, or name it with --manifest FILE"), "{err}");
        let err = plan(dir.path(), Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(err.starts_with("cannot read the manifest ") && err.contains("nope.toml"), "{err}");
        let err = plan(&dir.path().join("missing"), None).unwrap_err();
        assert!(err.starts_with("cannot read the directory "), "{err}");
        let err = plan(&dir.path().join("app"), None).unwrap_err();
        assert!(err.ends_with("app is not a directory"), "{err}");
    }

    #[test]
    fn links_out_of_the_directory_are_refused_and_links_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "never packed");
        // Each link sits in `sub/`, one level down: `..` is fine, `../..` climbs out.
        // `x/../file` would land inside, but the server refuses it (where it leads depends on what
        // `x` is): refused before an upload, not after.
        for target in
            ["/etc/passwd", "../../x", "./../../x", "../sub/../../x", "x/../up", outside.path().to_str().unwrap()]
        {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "pergola.toml", "");
            std::fs::create_dir(dir.path().join("sub")).unwrap();
            symlink(target, dir.path().join("sub/link")).unwrap();
            let err = plan(dir.path(), None).map(|p| p.paths()).unwrap_err();
            assert!(err.contains("sub/link is a symbolic link to") && err.contains("outside"), "{target}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "");
        write(dir.path(), "file", "x");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        symlink("../file", dir.path().join("sub/up")).unwrap();
        symlink("sub", dir.path().join("dirlink")).unwrap();
        let got = read_back(&pack(dir.path(), None));
        assert_eq!(got["sub/up"], ('l', 0o777, "../file".into()));
        assert_eq!(got["dirlink"], ('l', 0o777, "sub".into()));
        assert!(!got.contains_key("dirlink/up"), "a link to a directory is not followed");
    }

    #[test]
    fn a_manifest_linked_from_outside_the_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "id_ed25519", "PRIVATE KEY");
        let key = outside.path().join("id_ed25519");
        let climbing = Path::new("..").join(outside.path().file_name().unwrap()).join("id_ed25519");
        for target in [key.clone(), climbing] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "app", "x");
            symlink(&target, dir.path().join("pergola.toml")).unwrap();
            let err = plan(dir.path(), None).map(|p| p.paths()).unwrap_err();
            let said = err.contains("pergola.toml is a symbolic link to") && err.contains(", outside ");
            assert!(said && err.contains("--manifest FILE"), "{}: {err}", target.display());
            // Named with --manifest, the same file is read: that is asked for.
            let got = read_back(&pack(dir.path(), Some(key.as_path())));
            assert_eq!(got["pergola.toml"].2, "PRIVATE KEY");
        }
        // A link to a file inside DIR is read.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "deploy/pergola.toml", "version = \"1\"\n");
        symlink("deploy/pergola.toml", dir.path().join("pergola.toml")).unwrap();
        let got = read_back(&pack(dir.path(), None));
        assert_eq!(got["pergola.toml"], ('f', 0o644, "version = \"1\"\n".into()));
        assert_eq!(got["deploy/pergola.toml"].2, "version = \"1\"\n");
    }

    #[test]
    fn a_file_swapped_after_planning_is_never_read() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "NOT-PACKED");
        write(outside.path(), "dir/data", "NOT-PACKED");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "");
        write(dir.path(), "data", "0123456789");
        write(dir.path(), "sub/data", "0123456789");
        let data = dir.path().join("data");
        let plan = plan(dir.path(), None).unwrap();
        // Each original is moved aside (not deleted: its inode stays taken, a new file cannot
        // reuse its number) and replaced by something of the same size.
        std::fs::rename(&data, dir.path().join("data.planned")).unwrap();
        symlink(outside.path().join("secret"), &data).unwrap();
        let err = plan.write(Vec::new(), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("data changed while it was packed"), "a link: {err}");

        std::fs::remove_file(&data).unwrap();
        write(dir.path(), "data", "NOT-PACKED");
        let err = plan.write(Vec::new(), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("data changed while it was packed"), "another file: {err}");

        std::fs::remove_file(&data).unwrap();
        std::fs::rename(dir.path().join("data.planned"), &data).unwrap();
        assert!(plan.write(Vec::new(), &AtomicU64::new(0)).is_ok(), "the planned files, back in place");

        std::fs::rename(dir.path().join("sub"), dir.path().join("sub.planned")).unwrap();
        symlink(outside.path().join("dir"), dir.path().join("sub")).unwrap();
        let err = plan.write(Vec::new(), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("sub/data changed while it was packed"), "a directory on the way: {err}");

        std::fs::remove_file(dir.path().join("sub")).unwrap();
        std::fs::rename(dir.path().join("sub.planned"), dir.path().join("sub")).unwrap();
        std::fs::rename(&data, dir.path().join("data.planned")).unwrap();
        let fifo = std::ffi::CString::new(data.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let err = plan.write(Vec::new(), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("data changed while it was packed"), "a FIFO, without waiting: {err}");
    }

    #[test]
    fn sockets_and_fifos_are_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "");
        let socket = dir.path().join("app.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let plan = plan(dir.path(), None).unwrap();
        assert_eq!(plan.skipped, [Skipped { path: socket, what: "a socket" }]);
        assert_eq!(plan.paths(), ["pergola.toml"]);
    }

    #[test]
    fn the_packing_thread_streams_the_same_archive_and_passes_failures_on() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "");
        let big: String = (0..200_000).map(|i| format!("{i}\n")).collect();
        write(dir.path(), "big", &big);
        let whole = pack(dir.path(), None);
        assert!(whole.len() > CHUNK, "several chunks");
        let (mut reader, thread) = spawn(plan(dir.path(), None).unwrap(), Arc::default());
        let mut streamed = Vec::new();
        reader.read_to_end(&mut streamed).unwrap();
        thread.join().unwrap().unwrap();
        assert_eq!(streamed, whole);

        let plan = plan(dir.path(), None).unwrap();
        write(dir.path(), "big", "shorter");
        let (mut reader, thread) = spawn(plan, Arc::default());
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("changed while it was packed"), "{err}");
        assert!(thread.join().unwrap().is_err());
    }

    #[test]
    fn a_file_that_changes_size_while_packed_fails_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pergola.toml", "");
        write(dir.path(), "data", "0123456789");
        let plan = plan(dir.path(), None).unwrap();
        write(dir.path(), "data", "012");
        let err = plan.write(Vec::new(), &AtomicU64::new(0)).unwrap_err();
        assert!(err.to_string().contains("changed while it was packed"), "{err}");
        write(dir.path(), "data", "0123456789 and more");
        assert!(plan.write(Vec::new(), &AtomicU64::new(0)).is_err(), "grown");
    }
}
