//! A release's files: the build's directory copied once per release, read-only, under
//! `<runtime root>/releases/<project>/<stage>/<release>/`; its components run from the copy, so
//! what happens to the build's directory afterwards changes nothing a running (or rolled-back)
//! release runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The largest build copied: its files' bytes …
pub const MAX_RELEASE_BYTES: u64 = 1 << 30;
/// … and its entries (files, directories, symlinks).
pub const MAX_RELEASE_FILES: usize = 100_000;

/// `build` copied into `dest` (unless `dest` is there already: a copy appears only complete,
/// by a rename). Symlinks are copied as symlinks (never followed); other special files are left
/// out, and so is every directory of `hidden` (the runtime's own files, the server's data
/// directory). Files keep their execute bits and lose their write bits; directories are made
/// read-only last. Returns `dest`.
pub(super) fn copy_release(build: &Path, dest: &Path, hidden: &[PathBuf]) -> Result<PathBuf, String> {
    if dest.is_dir() {
        return Ok(dest.to_path_buf());
    }
    let build = std::fs::canonicalize(build).map_err(|e| format!("cannot read '{}': {e}", build.display()))?;
    if !build.is_dir() {
        return Err(format!("'{}' is not a directory", build.display()));
    }
    let parent = dest.parent().ok_or("the release has no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create '{}': {e}", parent.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Partial copies an earlier server left (it stopped while copying).
    let own = format!(".{name}.partial-{}-", std::process::id());
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&format!(".{name}.partial-")) && !file.starts_with(&own) {
            let _ = remove_tree(&entry.path());
        }
    }
    let staging = parent.join(format!("{own}{nanos}"));
    let hidden: Vec<PathBuf> = hidden.iter().map(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.clone())).collect();
    let mut budget = Budget { bytes: 0, files: 0, build: &build };
    let copied = copy_dir(&build, &staging, &hidden, &mut budget).and_then(|()| {
        seal(&staging).map_err(|e| format!("cannot make the copy read-only: {e}"))?;
        match std::fs::rename(&staging, dest) {
            Ok(()) => Ok(()),
            // Copied meanwhile by another start of the same release.
            Err(_) if dest.is_dir() => Ok(()),
            Err(e) => Err(format!("cannot move the copy to '{}': {e}", dest.display())),
        }
    });
    if staging.exists() {
        let _ = remove_tree(&staging);
    }
    copied.map(|()| dest.to_path_buf())
}

struct Budget<'a> {
    bytes: u64,
    files: usize,
    build: &'a Path,
}

impl Budget<'_> {
    fn take(&mut self, bytes: u64) -> Result<(), String> {
        self.files += 1;
        self.bytes += bytes;
        if self.files > MAX_RELEASE_FILES || self.bytes > MAX_RELEASE_BYTES {
            return Err(format!(
                "the build directory '{}' is too large to copy into a release (at most {MAX_RELEASE_FILES} files \
                 and {} MiB)",
                self.build.display(),
                MAX_RELEASE_BYTES >> 20
            ));
        }
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path, hidden: &[PathBuf], budget: &mut Budget) -> Result<(), String> {
    let io = |what: &str, path: &Path, e: std::io::Error| format!("cannot {what} '{}': {e}", path.display());
    std::fs::create_dir(to).map_err(|e| io("create", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io("read", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("read", from, e))?;
        let source = entry.path();
        if hidden.iter().any(|h| h == &source) {
            continue;
        }
        let target = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&source).map_err(|e| io("read", &source, e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            budget.take(0)?;
            let link = std::fs::read_link(&source).map_err(|e| io("read", &source, e))?;
            std::os::unix::fs::symlink(&link, &target).map_err(|e| io("create", &target, e))?;
        } else if kind.is_dir() {
            budget.take(0)?;
            copy_dir(&source, &target, hidden, budget)?;
        } else if kind.is_file() {
            budget.take(meta.len())?;
            std::fs::copy(&source, &target).map_err(|e| io("copy", &source, e))?;
            let mode = meta.permissions().mode() & 0o555;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o444))
                .map_err(|e| io("set the mode of", &target, e))?;
        }
        // Sockets, pipes and devices are not part of a release.
    }
    Ok(())
}

/// Deletes a tree of read-only release copies (their directories are made writable first).
pub(super) use pergola_core::artifacts::remove_tree;
/// Makes a release copy's directories read-only (the artifacts' own way).
use pergola_core::artifacts::seal;

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pergola-release-{name}-{}", std::process::id()));
        let _ = remove_tree(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_copy_is_read_only_keeps_symlinks_and_leaves_hidden_directories_out() {
        let dir = scratch("copy");
        let build = dir.join("build");
        std::fs::create_dir_all(build.join("bin")).unwrap();
        std::fs::create_dir_all(build.join("data/runtime")).unwrap();
        std::fs::write(build.join("bin/app"), "#!/bin/sh\necho v1\n").unwrap();
        std::fs::set_permissions(build.join("bin/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(build.join("data/runtime/secret"), "no").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", build.join("shadow")).unwrap();
        let dest = dir.join("releases/shop/qa/1");
        copy_release(&build, &dest, &[build.join("data")]).unwrap();
        let app = dest.join("bin/app");
        assert_eq!(std::fs::read_to_string(&app).unwrap(), "#!/bin/sh\necho v1\n");
        assert_eq!(std::fs::metadata(&app).unwrap().permissions().mode() & 0o777, 0o555);
        assert_eq!(std::fs::metadata(dest.join("bin")).unwrap().permissions().mode() & 0o777, 0o555);
        assert_eq!(std::fs::read_link(dest.join("shadow")).unwrap(), Path::new("/etc/shadow"), "not followed");
        assert!(!dest.join("data").exists(), "hidden");
        // Once there, it is not copied again: a changed build does not change the release.
        std::fs::write(build.join("bin/app"), "#!/bin/sh\necho v2\n").unwrap();
        copy_release(&build, &dest, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&app).unwrap(), "#!/bin/sh\necho v1\n");
        let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no partial copy left");
        // A partial copy an earlier server left is cleared by the next copy of that release.
        let stale = dest.parent().unwrap().join(".2.partial-1-5");
        std::fs::create_dir_all(stale.join("bin")).unwrap();
        seal(&stale).unwrap();
        copy_release(&build, &dest.with_file_name("2"), &[]).unwrap();
        assert!(!stale.exists());
        assert_eq!(std::fs::read_to_string(dest.with_file_name("2").join("bin/app")).unwrap(), "#!/bin/sh\necho v2\n");
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_build_with_too_many_files_is_refused() {
        let dir = scratch("many");
        let build = dir.join("build");
        std::fs::create_dir_all(&build).unwrap();
        let mut budget = Budget { bytes: 0, files: MAX_RELEASE_FILES - 1, build: &build };
        assert!(budget.take(10).is_ok());
        let e = budget.take(10).unwrap_err();
        assert!(e.contains("too large") && e.contains("100000 files"), "{e}");
        let mut budget = Budget { bytes: MAX_RELEASE_BYTES, files: 0, build: &build };
        assert!(budget.take(1).unwrap_err().contains("1024 MiB"));
        remove_tree(&dir).unwrap();
    }
}
