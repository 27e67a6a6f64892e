//! The sandbox a component runs in: bubblewrap (`bwrap`), with its own mount, PID, IPC, UTS
//! and user namespaces (the network is shared). Inside it sees only
//!
//! - `/usr` (and `/bin`, `/sbin`, `/lib`, `/lib64` as the host has them: directories bound
//!   read-only, or the same symlinks on a merged-`/usr` system), read-only;
//! - a few files of `/etc` a program needs (TLS certificates, name resolution, time zone, the
//!   dynamic linker's cache), read-only, and a `passwd`/`group` naming only its own user;
//! - `/app`: its release's files (an immutable copy of the build), read-only — the working
//!   directory;
//! - `/storage/<volume>`: each storage volume it declares, read-write;
//! - `/tmp`: its own temporary directory (wiped when the stage stops), read-write;
//! - its own `/proc` (only its own processes) and a minimal `/dev`, read-only but for
//!   `/dev/shm` (a tmpfs of [`SHM_BYTES`]).
//!
//! `/tmp` is a directory of the server's data directory, on its disk, like the storage: neither
//! has a quota. The network namespace is the host's: a component can bind any free port (one
//! another stage's service was given, while it is suspended) and connect to what listens on the
//! machine.
//!
//! It runs as uid/gid [`SANDBOX_UID`] (`app`) without capabilities, cannot create user
//! namespaces, and gets a new session (no `TIOCSTI` on the server's terminal); the root of
//! its file system is read-only. Nothing else of the host is visible: not the server's data
//! directory (database, `secret.key`), not other stages' storage or releases, not the server's
//! processes. The environment is never put on bwrap's command line (which every local user
//! can read in `/proc/*/cmdline`): it is bwrap's own environment, which bwrap passes on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The uid and gid components run as inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
/// Where the release's files are, inside.
pub(super) const APP_DIR: &str = "/app";
/// The `PATH` inside.
pub(super) const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The size of the sandbox's `/dev/shm` (a tmpfs: memory), as Docker's default.
pub(super) const SHM_BYTES: u64 = 64 << 20;
/// The top-level system directories bound (or re-created as the symlinks they are).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib64"];
/// What of `/etc` is visible (read-only, when the host has it).
const ETC: &[&str] = &[
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/mime.types",
];
/// The `passwd` and `group` files the sandbox sees.
pub(super) const PASSWD: &str = "app:x:1000:1000:app:/tmp:/usr/sbin/nologin\n\
                                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
pub(super) const GROUP: &str = "app:x:1000:\nnogroup:x:65534:\n";

/// How components are isolated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sandbox {
    /// In a bubblewrap sandbox, with this `bwrap`.
    Bubblewrap(PathBuf),
    /// Not at all: as the server's user, seeing what it sees (`PERGOLA_SANDBOX=off`).
    Off,
}

/// The message when components must be sandboxed and cannot be.
pub(super) const UNAVAILABLE: &str = "bubblewrap (bwrap) is not installed or cannot create namespaces: install the \
                                      Debian package bubblewrap, or set PERGOLA_SANDBOX=off to run components \
                                      unsandboxed";

impl Sandbox {
    /// `bwrap` from `PATH`, once it has run a sandbox like the components' (`true` in it);
    /// else why not, starting with [`UNAVAILABLE`] (unless no scratch directory for the check
    /// could be made). Checked in a scratch directory under the system's temporary directory
    /// (see [`Sandbox::check_in`]).
    pub fn detect() -> Result<Sandbox, String> {
        Sandbox::detect_in(&std::env::temp_dir())
    }

    /// [`Sandbox::detect`], with the scratch directory of the check under `parent`.
    pub fn detect_in(parent: &Path) -> Result<Sandbox, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bwrap = std::env::split_paths(&path)
            .map(|dir| dir.join("bwrap"))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("{UNAVAILABLE} (no bwrap on PATH)"))?;
        Sandbox::Bubblewrap(bwrap).check_in(parent)
    }

    /// Runs `true` in a sandbox built as the components' are (off: nothing to check), with its
    /// scratch directory under the system's temporary directory.
    pub fn check(self) -> Result<Sandbox, String> {
        self.check_in(&std::env::temp_dir())
    }

    /// [`Sandbox::check`], with its scratch directory (the sandbox's `/app`, `/tmp`, `passwd`
    /// and `group`) made under `parent` (created if need be): a new directory only this user
    /// can enter, under a name nobody can guess, made by `mkdir` — which fails on anything
    /// already there, a symlink a local user planted included — and deleted afterwards.
    pub fn check_in(self, parent: &Path) -> Result<Sandbox, String> {
        let Sandbox::Bubblewrap(bwrap) = &self else { return Ok(self) };
        let scratch = scratch_dir(parent).map_err(|e| {
            format!("cannot check the sandbox: cannot create a scratch directory under {}: {e}", parent.display())
        })?;
        let result = (|| {
            std::fs::create_dir(scratch.join("app"))?;
            std::fs::create_dir(scratch.join("tmp"))?;
            std::fs::write(scratch.join("passwd"), PASSWD)?;
            std::fs::write(scratch.join("group"), GROUP)?;
            let mounts = Mounts {
                release: scratch.join("app"),
                tmp: scratch.join("tmp"),
                volumes: Vec::new(),
                passwd: scratch.join("passwd"),
                group: scratch.join("group"),
            };
            let mut command = std::process::Command::new(bwrap);
            command
                .args(bwrap_args(&HostFs::scan(), &mounts))
                .args(["--", "true"])
                .env_clear()
                .env("PATH", SANDBOX_PATH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            // With no new privileges, as components start (their network guard sets it): a
            // setuid bwrap that needs privileges fails here, not at every start.
            // SAFETY: prctl is an async-signal-safe system call taking plain integers.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            // Recorded, so that the reaper of adopted processes leaves its exit to us.
            super::children::spawn_registered(|| command.spawn(), |c| Some(c.id()))?.wait_with_output()
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        match result {
            Ok(out) if out.status.success() => Ok(self),
            Ok(out) => Err(format!(
                "{UNAVAILABLE} ({} failed: {})",
                bwrap.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("{UNAVAILABLE} ({}: {e})", bwrap.display())),
        }
    }
}

/// A new, empty directory under `parent` (created if need be), mode 0700, named
/// `pergola-sandbox-check-<random>`: `mkdir` never follows nor reuses what is there, so a name
/// taken (by a planted symlink, say) is skipped for another.
fn scratch_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::DirBuilderExt;
    std::fs::create_dir_all(parent)?;
    let mut taken = None;
    for attempt in 0..16u32 {
        // std's hasher is keyed from the system's randomness: the name cannot be guessed.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u32(attempt);
        let dir = parent.join(format!("pergola-sandbox-check-{:016x}", hasher.finish()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => taken = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(taken.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// What the host has at each of [`SYSTEM_DIRS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Dir,
    Symlink(PathBuf),
    Missing,
}

/// The host's system directories, as the sandbox re-creates them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HostFs(pub(super) Vec<(&'static str, Entry)>);

impl HostFs {
    pub(super) fn scan() -> Self {
        HostFs(
            SYSTEM_DIRS
                .iter()
                .map(|&dir| {
                    let entry = match std::fs::symlink_metadata(dir) {
                        Ok(m) if m.file_type().is_symlink() => {
                            std::fs::read_link(dir).map(Entry::Symlink).unwrap_or(Entry::Missing)
                        }
                        Ok(m) if m.is_dir() => Entry::Dir,
                        _ => Entry::Missing,
                    };
                    (dir, entry)
                })
                .collect(),
        )
    }
}

/// The host directories one component's sandbox is made of.
#[derive(Clone, Debug)]
pub(super) struct Mounts {
    /// The release's files (→ `/app`, read-only).
    pub(super) release: PathBuf,
    /// Its temporary directory (→ `/tmp`).
    pub(super) tmp: PathBuf,
    /// Each storage volume (name, host directory) (→ `/storage/<name>`).
    pub(super) volumes: Vec<(String, PathBuf)>,
    pub(super) passwd: PathBuf,
    pub(super) group: PathBuf,
}

/// Where volume `name` is inside.
pub(super) fn volume_path(name: &str) -> String {
    format!("/storage/{name}")
}

/// The program to run inside: a relative command with a `/` (`./bin/app`, `bin/app`) is under
/// `/app`; a bare name is looked up on the sandbox's `PATH`; an absolute one runs as it is.
pub(super) fn program_inside(command: &str) -> PathBuf {
    let program = Path::new(command);
    if program.is_relative() && command.contains('/') {
        Path::new(APP_DIR).join(command.trim_start_matches("./"))
    } else {
        program.to_path_buf()
    }
}

/// bwrap's arguments up to (not including) the `--` before the program: every namespace but
/// the network's, an unprivileged user, and the file system described in the module's
/// documentation. Only paths: never a variable's value.
pub(super) fn bwrap_args(host: &HostFs, mounts: &Mounts) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(parts.iter().map(|p| p.as_ref().to_os_string()));
    };
    let uid = SANDBOX_UID.to_string();
    push(&[&"--unshare-all", &"--share-net", &"--unshare-user", &"--disable-userns"]);
    push(&[&"--uid", &uid, &"--gid", &uid]);
    push(&[&"--die-with-parent", &"--new-session"]);
    for (dir, entry) in &host.0 {
        match entry {
            Entry::Dir => push(&[&"--ro-bind", dir, dir]),
            Entry::Symlink(target) => push(&[&"--symlink", target, dir]),
            Entry::Missing => {}
        }
    }
    for file in ETC {
        push(&[&"--ro-bind-try", file, file]);
    }
    push(&[&"--ro-bind", &mounts.passwd, &"/etc/passwd"]);
    push(&[&"--ro-bind", &mounts.group, &"/etc/group"]);
    push(&[&"--proc", &"/proc", &"--dev", &"/dev"]);
    // bwrap's /dev is a tmpfs of the default size (half the RAM) the sandbox's user may write
    // to, and `--size` does not apply to `--dev`: /dev/shm gets a bounded tmpfs of its own, and
    // /dev itself is made read-only (its device nodes are mounts of their own and still work).
    let shm = SHM_BYTES.to_string();
    push(&[&"--size", &shm, &"--tmpfs", &"/dev/shm", &"--remount-ro", &"/dev"]);
    push(&[&"--ro-bind", &mounts.release, &APP_DIR]);
    push(&[&"--bind", &mounts.tmp, &"/tmp"]);
    for (name, dir) in &mounts.volumes {
        push(&[&"--bind", dir, &volume_path(name)]);
    }
    push(&[&"--remount-ro", &"/", &"--chdir", &APP_DIR]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// `flag a b` appears in `args`.
    fn has(args: &[String], triple: &[&str]) -> bool {
        args.windows(triple.len()).any(|w| w.iter().zip(triple).all(|(a, b)| a == b))
    }

    fn mounts() -> Mounts {
        Mounts {
            release: "/srv/data/runtime/releases/shop/qa/3".into(),
            tmp: "/srv/data/runtime/tmp/shop/qa/17/web".into(),
            volumes: vec![("uploads".into(), "/srv/data/runtime/storage/shop/qa/uploads".into())],
            passwd: "/srv/data/runtime/sandbox/passwd".into(),
            group: "/srv/data/runtime/sandbox/group".into(),
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let merged = HostFs(vec![
            ("/usr", Entry::Dir),
            ("/bin", Entry::Symlink("usr/bin".into())),
            ("/sbin", Entry::Symlink("usr/sbin".into())),
            ("/lib", Entry::Symlink("usr/lib".into())),
            ("/lib64", Entry::Missing),
        ]);
        let args = strings(&bwrap_args(&merged, &mounts()));
        for flag in ["--unshare-all", "--share-net", "--unshare-user", "--disable-userns", "--die-with-parent"] {
            assert!(args.contains(&flag.to_owned()), "{flag}: {args:?}");
        }
        assert!(args.contains(&"--new-session".to_owned()), "no TIOCSTI on the server's terminal");
        assert!(has(&args, &["--uid", "1000", "--gid", "1000"]));
        assert!(has(&args, &["--ro-bind", "/usr", "/usr"]));
        assert!(has(&args, &["--symlink", "usr/bin", "/bin"]));
        assert!(has(&args, &["--symlink", "usr/lib", "/lib"]));
        assert!(!args.iter().any(|a| a == "/lib64"), "what the host lacks is not made up");
        assert!(has(&args, &["--ro-bind", "/srv/data/runtime/releases/shop/qa/3", "/app"]));
        assert!(has(&args, &["--bind", "/srv/data/runtime/tmp/shop/qa/17/web", "/tmp"]));
        assert!(has(&args, &["--bind", "/srv/data/runtime/storage/shop/qa/uploads", "/storage/uploads"]));
        assert!(has(&args, &["--ro-bind", "/srv/data/runtime/sandbox/passwd", "/etc/passwd"]));
        assert!(has(&args, &["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]));
        assert!(has(&args, &["--proc", "/proc", "--dev", "/dev"]));
        assert!(has(&args, &["--size", "67108864", "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]));
        let at = |flag: &[&str]| args.windows(flag.len()).position(|w| w.iter().zip(flag).all(|(a, b)| a == b));
        assert!(at(&["--dev", "/dev"]) < at(&["--tmpfs", "/dev/shm"]), "/dev/shm is mounted on bwrap's /dev");
        assert!(has(&args, &["--remount-ro", "/", "--chdir", "/app"]));
        // Nothing else of the host: every bound host path is a system one, a copy of /etc's,
        // or one of the component's own.
        let own = ["/srv/data/runtime/releases/shop/qa/3", "/srv/data/runtime/tmp/shop/qa/17/web"];
        for w in args.windows(3) {
            if ["--bind", "--ro-bind", "--ro-bind-try"].contains(&w[0].as_str()) {
                let src = &w[1];
                assert!(
                    src == "/usr"
                        || src.starts_with("/etc/")
                        || own.contains(&src.as_str())
                        || src.starts_with("/srv/data/runtime/storage/shop/qa/")
                        || src.starts_with("/srv/data/runtime/sandbox/"),
                    "{src} is bound"
                );
            }
        }
        assert!(!args.iter().any(|a| a == "--setenv"), "no variable on bwrap's command line");
    }

    #[test]
    fn a_host_without_merged_usr_gets_its_directories_bound() {
        let split = HostFs(vec![("/usr", Entry::Dir), ("/bin", Entry::Dir), ("/lib64", Entry::Dir)]);
        let args = strings(&bwrap_args(&split, &mounts()));
        assert!(has(&args, &["--ro-bind", "/bin", "/bin"]));
        assert!(has(&args, &["--ro-bind", "/lib64", "/lib64"]));
        assert!(!args.iter().any(|a| a == "--symlink"));
    }

    #[test]
    fn relative_commands_run_from_the_release() {
        assert_eq!(program_inside("./bin/app"), Path::new("/app/bin/app"));
        assert_eq!(program_inside("bin/app"), Path::new("/app/bin/app"));
        assert_eq!(program_inside("/usr/bin/python3"), Path::new("/usr/bin/python3"));
        assert_eq!(program_inside("sh"), Path::new("sh"));
    }
}
