//! A stage's storage copied for a duplicate, without ever following a symlink.
//!
//! What is copied was written by the stage's components, and one of them may still run (a job
//! of a suspended stage): between a check of an entry and its copy it can swap a directory for
//! a symlink (`renameat2(RENAME_EXCHANGE)`) to the server's data directory. So the walk goes by
//! file descriptors: the source directory is opened with `O_DIRECTORY | O_NOFOLLOW`, every
//! entry relative to its parent's descriptor with `O_NOFOLLOW`, and its type is taken from the
//! descriptor opened (`fstat`), which is what is read; no path string is ever resolved through
//! the source tree. Symlinks are copied as symlinks (`readlinkat`); an entry that changes
//! between its `fstatat` and its `openat` makes the copy fail, it is never followed.
//!
//! Nor may the copy write more than the source holds on disk: a file's holes stay holes
//! (`SEEK_DATA`/`SEEK_HOLE` — a 1 TiB sparse file costs the copy nothing), and a file with
//! several names inside the tree is copied once, its other names hard links to that copy.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// How deep directories may nest in a copied tree (each level holds two descriptors open).
const MAX_DEPTH: usize = 128;

/// Copies the tree `from` (a stage's storage: nothing there is fine) into `to`, which must not
/// exist: files with their permission bits (not set-user-ID, set-group-ID nor sticky),
/// directories with theirs, symlinks as symlinks (never followed, `from` itself included:
/// a symlink there is refused); anything else (sockets, fifos, devices) is left out.
pub(super) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let source = match open_dir(libc::AT_FDCWD, &c_path(from.as_os_str())?) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err(io::Error::other(format!(
                "{} is not a directory (a symlink is not followed): {e}",
                from.display()
            )))
        }
        other => other?,
    };
    let mode = fstat(source.as_raw_fd())?.st_mode;
    std::fs::create_dir_all(to.parent().unwrap_or(to))?;
    std::fs::create_dir(to)?;
    let target = open_dir(libc::AT_FDCWD, &c_path(to.as_os_str())?)?;
    let mut copied = HashMap::new();
    copy_dir(source, &target, to, &mut copied, 0)?;
    fchmod(target.as_raw_fd(), mode & 0o777)
}

/// The copies made so far of files with several names: (device, inode) → the copy's path.
type Copied = HashMap<(libc::dev_t, libc::ino_t), PathBuf>;

/// Copies the entries of the directory open as `source` into the one open as `target` (at
/// `target_path`: a new directory of the server's, where nothing of the stage runs).
fn copy_dir(
    source: OwnedFd,
    target: &OwnedFd,
    target_path: &Path,
    copied: &mut Copied,
    depth: usize,
) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(io::Error::other(format!("directories nested more than {MAX_DEPTH} deep")));
    }
    let dir = Dir::new(source)?;
    let into = target.as_raw_fd();
    while let Some(name) = dir.next_name()? {
        let seen = stat_at(dir.fd(), &name)?;
        match seen.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                let link = read_link_at(dir.fd(), &name)?;
                // SAFETY: symlinkat with two valid C strings and a directory descriptor.
                check(unsafe { libc::symlinkat(link.as_ptr(), into, name.as_ptr()) })?;
            }
            libc::S_IFDIR => {
                let child = open_dir(dir.fd(), &name).map_err(|e| changed(&name, e))?;
                let mode = same_entry(child.as_raw_fd(), &seen, &name)?;
                // SAFETY: mkdirat with a valid C string and a directory descriptor.
                check(unsafe { libc::mkdirat(into, name.as_ptr(), 0o700) })?;
                let copy = open_dir(into, &name)?;
                let copy_path = target_path.join(OsStr::from_bytes(name.to_bytes()));
                copy_dir(child, &copy, &copy_path, copied, depth + 1)?;
                fchmod(copy.as_raw_fd(), mode & 0o777)?;
            }
            libc::S_IFREG => {
                let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
                let file = open_at(dir.fd(), &name, flags, 0).map_err(|e| changed(&name, e))?;
                let mode = same_entry(file.as_raw_fd(), &seen, &name)?;
                let copy_path = target_path.join(OsStr::from_bytes(name.to_bytes()));
                let inode = (seen.st_dev, seen.st_ino);
                if seen.st_nlink > 1 {
                    if let Some(first) = copied.get(&inode) {
                        // Another name of a file copied already: a name of that copy.
                        std::fs::hard_link(first, &copy_path)?;
                        continue;
                    }
                }
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
                let copy = open_at(into, &name, flags, 0o600)?;
                let (file, copy) = (std::fs::File::from(file), std::fs::File::from(copy));
                copy_data(&file, &copy)?;
                fchmod(copy.as_raw_fd(), mode & 0o777)?;
                if seen.st_nlink > 1 {
                    copied.insert(inode, copy_path);
                }
            }
            // Sockets, fifos and devices are not copied (nor opened).
            _ => {}
        }
    }
    Ok(())
}

/// Copies the data of `file` into the empty `copy`, leaving its holes holes: only the ranges
/// `SEEK_DATA` finds are read and written, and the copy is given the file's length.
fn copy_data(file: &std::fs::File, copy: &std::fs::File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let length = file.metadata()?.len();
    let (mut reader, mut writer) = (file, copy);
    let mut offset: u64 = 0;
    while offset < length {
        let Some(data) = seek(file, offset, libc::SEEK_DATA)? else { break };
        // A data range ends at a hole, or at the end (there is always a hole at the end).
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(length).min(length);
        reader.seek(SeekFrom::Start(data))?;
        writer.seek(SeekFrom::Start(data))?;
        let want = hole.saturating_sub(data);
        let copied = io::copy(&mut reader.take(want), &mut writer)?;
        if copied < want {
            break; // The file was cut short meanwhile: what is there is copied.
        }
        offset = hole.max(data + 1);
    }
    writer.flush()?;
    copy.set_len(length)
}

/// `lseek(fd, offset, whence)` for `SEEK_DATA`/`SEEK_HOLE`: `None` when there is no more
/// data (`ENXIO`).
fn seek(file: &std::fs::File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::other("a file offset out of range"))?;
    // SAFETY: lseek on an open descriptor; it touches no memory.
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if at < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
    }
    Ok(Some(u64::try_from(at).unwrap_or(0)))
}

/// The mode of the entry open as `fd`, if it is still the one `seen` by `fstatat` (same type,
/// device and inode); else it was swapped meanwhile, and the copy fails.
fn same_entry(fd: RawFd, seen: &libc::stat, name: &CStr) -> io::Result<libc::mode_t> {
    let opened = fstat(fd)?;
    let same = (opened.st_mode & libc::S_IFMT) == (seen.st_mode & libc::S_IFMT)
        && opened.st_dev == seen.st_dev
        && opened.st_ino == seen.st_ino;
    if same {
        Ok(opened.st_mode)
    } else {
        Err(io::Error::other(format!("'{}' changed while it was copied", name.to_string_lossy())))
    }
}

/// An entry that could not be opened as what `fstatat` said it was (a symlink now, most likely).
fn changed(name: &CStr, e: io::Error) -> io::Error {
    if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
        io::Error::other(format!("'{}' changed while it was copied: {e}", name.to_string_lossy()))
    } else {
        e
    }
}

/// A directory stream over a descriptor (`fdopendir`), closed when dropped.
struct Dir(NonNull<libc::DIR>);

impl Dir {
    fn new(fd: OwnedFd) -> io::Result<Dir> {
        // SAFETY: fdopendir on an open directory descriptor; on success the stream owns it.
        let stream = unsafe { libc::fdopendir(fd.as_raw_fd()) };
        match NonNull::new(stream) {
            Some(stream) => {
                // Closed by closedir from now on.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
                Ok(Dir(stream))
            }
            None => Err(io::Error::last_os_error()),
        }
    }

    /// The stream's descriptor, for the `*at` calls.
    fn fd(&self) -> RawFd {
        // SAFETY: dirfd on a stream that is open for as long as `self` lives.
        unsafe { libc::dirfd(self.0.as_ptr()) }
    }

    /// The next entry's name (`.` and `..` skipped); `None` at the end.
    fn next_name(&self) -> io::Result<Option<CString>> {
        loop {
            // SAFETY: errno is this thread's; readdir is told apart from the end by it.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: readdir on an open stream; the entry is read before the next call.
            let entry = unsafe { libc::readdir(self.0.as_ptr()) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                return if e.raw_os_error() == Some(0) { Ok(None) } else { Err(e) };
            }
            // SAFETY: d_name is a NUL-terminated name inside the entry readdir returned.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                return Ok(Some(name.to_owned()));
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe {
            libc::closedir(self.0.as_ptr());
        }
    }
}

fn c_path(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: openat with a valid C string; the descriptor it returns is owned from here on.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `name` under `dir`, never through a symlink (`O_DIRECTORY | O_NOFOLLOW`).
fn open_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` into the buffer when it succeeds.
    check(unsafe { libc::fstat(fd, stat.as_mut_ptr()) })?;
    // SAFETY: it succeeded.
    Ok(unsafe { stat.assume_init() })
}

/// What `name` under `dir` is, itself (`AT_SYMLINK_NOFOLLOW`).
fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstatat with a valid C string writes a whole `stat` when it succeeds.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), stat.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    // SAFETY: it succeeded.
    Ok(unsafe { stat.assume_init() })
}

/// The target of the symlink `name` under `dir`.
fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<CString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: readlinkat writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n >= buf.len() {
        return Err(io::Error::other(format!("the target of '{}' is too long", name.to_string_lossy())));
    }
    buf.truncate(n);
    CString::new(buf).map_err(|_| io::Error::other("a symlink's target holds a NUL byte"))
}

fn fchmod(fd: RawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: fchmod on an open descriptor; it touches no memory.
    check(unsafe { libc::fchmod(fd, mode) })
}
