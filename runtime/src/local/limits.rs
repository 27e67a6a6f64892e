//! The resource limits of a component's processes (its stage type's: see
//! `pergola_domain::limits`), applied between fork and exec so that the sandbox and every process
//! the component starts inherit them.
//!
//! - **Memory and processes**: a cgroup per component when this machine lets the server create
//!   cgroups — cgroup v2 (`memory.max`, `pids.max`; the server moves itself into a leaf
//!   `pergola-server` cgroup if that is what it takes to enable the controllers) or the cgroup v1
//!   `memory` and `pids` hierarchies (`memory.limit_in_bytes`, `pids.max`) — under
//!   `<the server's cgroup>/pergola-stages/runtime-<hash of its data directory>/<project>/<stage>/<component>`. The cgroup counts the
//!   whole component: all of its processes together. Otherwise (no cgroup the server may
//!   create), `RLIMIT_DATA` per process and `RLIMIT_NPROC` (which the kernel does not apply to
//!   processes of root).
//! - **Open files**: `RLIMIT_NOFILE` per process.
//! - **CPU priority**: the nice value (`setpriority`).
//! - **Out-of-memory preference**: `/proc/self/oom_score_adj` (DEV is ended before PROD).
//!
//! [`Enforcer::detect`] looks once at what the machine offers; [`Enforcer::describe`] says it in
//! a sentence for the dashboard.

use pergola_domain::ResourceLimits;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// The directory (under the server's own cgroup) that holds the components' cgroups.
const STAGES_CGROUP: &str = "pergola-stages";
/// Where the server moves itself on cgroup v2 when its own cgroup cannot enable controllers
/// for children while it holds a process (the "no internal processes" rule).
const SERVER_CGROUP: &str = "pergola-server";

/// A cgroup hierarchy in which the server can make components' cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    /// `<mount>/<the server's cgroup>/pergola-stages`.
    base: PathBuf,
    v2: bool,
}

/// What enforces the limits on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforcer {
    memory: Option<Hierarchy>,
    pids: Option<Hierarchy>,
    /// Why there is no cgroup for memory or processes (for the sentence).
    why_not: Option<String>,
    /// Whether the server runs as root (`RLIMIT_NPROC` does not apply then).
    root: bool,
}

/// What one component's processes are started with.
#[derive(Clone, Debug)]
pub(super) struct Applied {
    /// The component's cgroups: `(base, directory, limit files and values)`, made again before
    /// each process starts ([`Applied::ensure`]) and removed when it ends ([`Applied::release`]).
    cgroups: Vec<Cgroup>,
    /// `cgroup.procs` files the process is moved into.
    procs: Vec<CString>,
    /// `(resource, soft, hard)`.
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t, libc::rlim_t)>,
    nice: libc::c_int,
    /// `"<n>\n"`, written to `/proc/self/oom_score_adj`.
    oom: Vec<u8>,
}

/// One cgroup of a component.
#[derive(Clone, Debug)]
struct Cgroup {
    hierarchy: Hierarchy,
    dir: PathBuf,
    /// `(file, value, required)` written when it is made (`memory.swap.max` is not required:
    /// a kernel without swap accounting has none).
    limits: Vec<(&'static str, String, bool)>,
}

impl Enforcer {
    /// Looks at the machine: its cgroup mounts (`/proc/self/mountinfo`), the server's cgroups
    /// (`/proc/self/cgroup`), and whether it may create cgroups there.
    pub fn detect() -> Self {
        let root = unsafe { libc::geteuid() } == 0;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut reasons = Vec::new();
        match v2(&mountinfo, &own) {
            Ok(h) => return Self { memory: Some(h.clone()), pids: Some(h), why_not: None, root }.pruned(),
            Err(why) => reasons.push(format!("cgroup v2: {why}")),
        }
        let memory = v1(&mountinfo, &own, "memory").map_err(|why| reasons.push(format!("cgroup v1 memory: {why}")));
        let pids = v1(&mountinfo, &own, "pids").map_err(|why| reasons.push(format!("cgroup v1 pids: {why}")));
        let why_not = (!reasons.is_empty()).then(|| reasons.join("; "));
        Self { memory: memory.ok(), pids: pids.ok(), why_not, root }.pruned()
    }

    /// Removes what ended servers and tests left (see [`prune`]): empty cgroups untouched for
    /// ten minutes.
    fn pruned(self) -> Self {
        for h in [&self.memory, &self.pids].into_iter().flatten() {
            prune(&h.base, std::time::Duration::from_secs(600));
        }
        self
    }

    /// Limits by rlimits, nice and oom_score_adj only (for tests, and where cgroups must not be
    /// touched).
    pub fn without_cgroups(reason: &str) -> Self {
        Self { memory: None, pids: None, why_not: Some(reason.to_owned()), root: unsafe { libc::geteuid() } == 0 }
    }

    /// `cgroup v2`, `cgroup v1` or `rlimits`: what limits memory and processes.
    pub fn mode(&self) -> &'static str {
        match (&self.memory, &self.pids) {
            (Some(h), _) | (_, Some(h)) if h.v2 => "cgroup v2",
            (Some(_), _) | (_, Some(_)) => "cgroup v1",
            _ => "rlimits",
        }
    }

    /// How each limit is enforced, in a sentence.
    pub fn describe(&self) -> String {
        let cgroup = |h: &Hierarchy| {
            format!("a cgroup per component ({}, under {})", if h.v2 { "v2" } else { "v1" }, h.base.display())
        };
        let memory = match &self.memory {
            Some(h) => format!("memory by {}", cgroup(h)),
            None => "memory by RLIMIT_DATA per process".to_owned(),
        };
        let pids = match &self.pids {
            Some(h) if self.memory.as_ref() == Some(h) => "processes by the same cgroup".to_owned(),
            Some(h) => format!("processes by {}", cgroup(h)),
            None if self.root => {
                "processes by RLIMIT_NPROC, which the kernel does not apply to a server running as root".to_owned()
            }
            None => "processes by RLIMIT_NPROC".to_owned(),
        };
        let mut text = format!(
            "{memory}; {pids}; open files by RLIMIT_NOFILE; CPU priority by the nice value; the out-of-memory \
             preference by oom_score_adj"
        );
        if let (Some(why), true) = (&self.why_not, self.memory.is_none() || self.pids.is_none()) {
            text += &format!(" (no cgroup: {why})");
        }
        text
    }

    /// Prepares the limits of component `path` (`[project, stage, component]`): its cgroups
    /// are made (or found) and given the memory and process limits; the rest is applied when
    /// its process starts ([`Applied::pre_exec`]).
    pub(super) fn prepare(&self, path: &[&str], limits: &ResourceLimits) -> io::Result<Applied> {
        let mut applied = Applied {
            cgroups: Vec::new(),
            procs: Vec::new(),
            rlimits: Vec::new(),
            nice: libc::c_int::from(limits.cpu_nice),
            oom: format!("{}\n", limits.oom_score_adj).into_bytes(),
        };
        let bytes = limits.memory_bytes().to_string();
        for h in [&self.memory, &self.pids].into_iter().flatten() {
            if applied.cgroups.iter().any(|c| c.hierarchy == *h) {
                continue;
            }
            let mut dir = h.base.clone();
            dir.extend(path);
            let mut files = Vec::new();
            if self.memory.as_ref() == Some(h) {
                if h.v2 {
                    files.push(("memory.max", bytes.clone(), true));
                    // Swap would let the component go past its memory.
                    files.push(("memory.swap.max", "0".to_owned(), false));
                } else {
                    // With memory.memsw.limit_in_bytes (see `ensure`).
                    files.push(("memory.limit_in_bytes", bytes.clone(), true));
                }
            }
            if self.pids.as_ref() == Some(h) {
                files.push(("pids.max", limits.processes.to_string(), true));
            }
            applied.procs.push(cstring(&dir.join("cgroup.procs"))?);
            applied.cgroups.push(Cgroup { hierarchy: h.clone(), dir, limits: files });
        }
        applied.ensure()?;
        let bytes = limits.memory_bytes();
        if self.memory.is_none() {
            applied.rlimits.push((libc::RLIMIT_DATA, bytes, bytes));
        }
        if self.pids.is_none() {
            let n = libc::rlim_t::from(limits.processes);
            applied.rlimits.push((libc::RLIMIT_NPROC, n, n));
        }
        let files = libc::rlim_t::from(limits.open_files);
        // Only root may raise a hard limit: anyone else gets at most its own.
        let hard = if self.root { files } else { files.min(hard_limit(libc::RLIMIT_NOFILE)) };
        applied.rlimits.push((libc::RLIMIT_NOFILE, files.min(hard), hard));
        Ok(applied)
    }

    /// Removes the cgroups of component `path` when nothing runs in them any more, and the
    /// levels above them that are empty then (a job still running after a suspend keeps its
    /// own; each start makes them again).
    pub(super) fn release(&self, path: &[&str]) {
        for h in [&self.memory, &self.pids].into_iter().flatten() {
            let mut dir = h.base.clone();
            dir.extend(path);
            remove_up(&h.base, dir);
        }
    }
}

/// Removes `dir` and its parents below `base` while they are empty (a cgroup with processes or
/// children cannot be removed). The processes of a sandbox end just after the one the runtime
/// waited for: while `dir` still holds some, it is tried again in the background for a while.
fn remove_up(base: &Path, dir: PathBuf) {
    fn attempt(base: &Path, mut dir: PathBuf) -> bool {
        let first = std::fs::remove_dir(&dir);
        if let Err(e) = first {
            return e.kind() == io::ErrorKind::NotFound;
        }
        dir.pop();
        while dir.starts_with(base) && dir != base && std::fs::remove_dir(&dir).is_ok() {
            dir.pop();
        }
        true
    }
    if attempt(base, dir.clone()) {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    let base = base.to_path_buf();
    handle.spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if attempt(&base, dir.clone()) {
                return;
            }
        }
    });
}

/// Removes the empty cgroups under `dir` (every runtime's, on this machine) untouched for
/// `age`: what a server or a test left when it ended without stopping its stages. A cgroup
/// in use has processes, or was just made by a starting component, and is left alone.
fn prune(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        prune(&path, age);
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|o| o >= age) {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

impl Applied {
    /// Makes the component's cgroups (again: the last process of the component may have
    /// removed them) with their limits, before a process of it starts. Another stage's stop may
    /// remove an empty parent meanwhile: making them is tried again then.
    pub(super) fn ensure(&self) -> io::Result<()> {
        for cgroup in &self.cgroups {
            let mut made = Ok(());
            for _ in 0..5 {
                made = make_cgroup(&cgroup.hierarchy, &cgroup.dir);
                if made.is_ok() {
                    break;
                }
            }
            made?;
            for (file, value, required) in &cgroup.limits {
                let path = cgroup.dir.join(file);
                if *file == "memory.limit_in_bytes" {
                    // With swap accounting (cgroup v1), memory+swap may never be below memory:
                    // raised first if need be, set to the memory limit after it.
                    let memsw = cgroup.dir.join("memory.memsw.limit_in_bytes");
                    let raised = value.parse::<u64>().unwrap_or(0).max(current(&path));
                    let _ = write(&memsw, &raised.to_string());
                    write(&path, value)?;
                    let _ = write(&memsw, value);
                } else if let Err(e) = write(&path, value) {
                    if *required {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the component's cgroups once nothing runs in them (after its last process
    /// ended), and the levels above that are empty then.
    pub(super) fn release(&self) {
        for cgroup in &self.cgroups {
            remove_up(&cgroup.hierarchy.base, cgroup.dir.clone());
        }
    }

    /// Applies the limits in the child, between fork and exec: only async-signal-safe calls,
    /// on values prepared beforehand. Failing to join a cgroup or to set a limit fails the
    /// start (it would otherwise run unlimited); a nice value or an out-of-memory preference
    /// the kernel refuses is left as is.
    pub(super) fn pre_exec(&self) -> io::Result<()> {
        // SAFETY (all calls below): getpid, open, write, close, setrlimit and setpriority are
        // async-signal-safe system calls on memory owned by `self`, which lives in the parent's
        // copy of the address space until exec.
        let pid = unsafe { libc::getpid() };
        let mut digits = [0u8; 12];
        let text = decimal(pid as u32, &mut digits);
        for procs in &self.procs {
            write_fd(procs, text)?;
        }
        for &(resource, soft, hard) in &self.rlimits {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, self.nice);
        }
        let _ = write_fd(c"/proc/self/oom_score_adj", &self.oom);
        Ok(())
    }
}

/// The name of a runtime's own cgroup directory: `pergola-` and a hash (FNV-1a, 64 bits) of
/// its data directory, stable across restarts.
pub(super) fn instance_name(data_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let hash = data_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("runtime-{hash:016x}")
}

/// `n` in decimal, in `buf`, without allocating.
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

fn write_fd(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let error = io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if written != bytes.len() as isize {
        return Err(error);
    }
    Ok(())
}

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn current(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> libc::rlim_t {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return libc::RLIM_INFINITY;
    }
    limit.rlim_max
}

/// Makes cgroup `dir` of `h` and the levels above it (on v2 with the controllers enabled at
/// every level above it).
fn make_cgroup(h: &Hierarchy, dir: &Path) -> io::Result<()> {
    let mut at = h.base.clone();
    let rest = dir.strip_prefix(&h.base).map_err(|_| io::Error::other("cgroup outside its hierarchy"))?;
    for part in rest {
        if h.v2 {
            enable_controllers(&at)?;
        }
        at.push(part);
        match std::fs::create_dir(&at) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io::Error::new(e.kind(), format!("cannot create cgroup {}: {e}", at.display())))
            }
            _ => {}
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path) -> io::Result<()> {
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "memory") && enabled.split_whitespace().any(|c| c == "pids") {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), "+memory +pids")
}

/// `(mount point, root of the mount, super options)` of every mount of `fstype`.
fn mounts<'a>(mountinfo: &'a str, fstype: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            if right.next()? != fstype {
                return None;
            }
            let options = right.nth(1).unwrap_or_default();
            let mut left = left.split_whitespace();
            let root = left.nth(3)?;
            let point = left.next()?;
            Some((point, root, options))
        })
        .collect()
}

/// The directory of the server's cgroup `path` in a hierarchy mounted at `point` with `root`.
fn cgroup_dir(point: &str, root: &str, path: &str) -> Option<PathBuf> {
    let rest = if root == "/" { path } else { path.strip_prefix(root)? };
    Some(Path::new(point).join(rest.trim_start_matches('/')))
}

/// The cgroup v2 hierarchy, when the server can make cgroups with the memory and pids
/// controllers in it.
fn v2(mountinfo: &str, own: &str) -> Result<Hierarchy, String> {
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the server is in no cgroup v2 (/proc/self/cgroup has no 0:: line)")?;
    let (point, root, _) =
        mounts(mountinfo, "cgroup2").into_iter().next().ok_or("no cgroup2 file system is mounted")?;
    let dir = cgroup_dir(point, root, path).ok_or("the server's cgroup is outside the mounted hierarchy")?;
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).map_err(|e| format!("{e}"))?;
    for needed in ["memory", "pids"] {
        if !available.split_whitespace().any(|c| c == needed) {
            return Err(format!("the {needed} controller is not available in {}", dir.display()));
        }
    }
    let base = dir.join(STAGES_CGROUP);
    if let Err(e) = enable_controllers(&dir) {
        if e.raw_os_error() != Some(libc::EBUSY) && !e.to_string().contains("busy") {
            return Err(format!("cannot enable the memory and pids controllers in {}: {e}", dir.display()));
        }
        // The server's cgroup holds the server: move it into a leaf first.
        let leaf = dir.join(SERVER_CGROUP);
        std::fs::create_dir_all(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
        write(&leaf.join("cgroup.procs"), &std::process::id().to_string()).map_err(|e| e.to_string())?;
        enable_controllers(&dir).map_err(|e| e.to_string())?;
    }
    make_base(&base)?;
    Ok(Hierarchy { base, v2: true })
}

/// The cgroup v1 hierarchy of `controller`, when the server can make cgroups in it.
fn v1(mountinfo: &str, own: &str, controller: &str) -> Result<Hierarchy, String> {
    let (point, root, _) = mounts(mountinfo, "cgroup")
        .into_iter()
        .find(|(_, _, options)| options.split(',').any(|o| o == controller))
        .ok_or("not mounted")?;
    let path = own
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then_some(path)
        })
        .ok_or("the server is in no such cgroup")?;
    let dir = cgroup_dir(point, root, path).ok_or("the server's cgroup is outside the mounted hierarchy")?;
    let base = dir.join(STAGES_CGROUP);
    make_base(&base)?;
    Ok(Hierarchy { base, v2: false })
}

fn make_base(base: &Path) -> Result<(), String> {
    match std::fs::create_dir(base) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", base.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_and_the_servers_cgroup_in_them() {
        let info = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    39 31 0:36 /machine /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let v1 = mounts(info, "cgroup");
        assert_eq!(v1.len(), 2);
        assert_eq!(v1[0], ("/sys/fs/cgroup/memory", "/", "rw,memory"));
        assert_eq!(mounts(info, "cgroup2"), [("/sys/fs/cgroup/unified", "/", "rw")]);
        assert_eq!(cgroup_dir("/sys/fs/cgroup/memory", "/", "/a/b"), Some(PathBuf::from("/sys/fs/cgroup/memory/a/b")));
        assert_eq!(
            cgroup_dir("/sys/fs/cgroup/pids", "/machine", "/machine/x"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/x"))
        );
        assert_eq!(cgroup_dir("/sys/fs/cgroup/pids", "/machine", "/other"), None);
    }

    #[test]
    fn decimal_writes_pids_without_allocating() {
        let mut buf = [0u8; 12];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_194_304, &mut buf), b"4194304");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }

    #[test]
    fn without_cgroups_memory_and_processes_are_rlimits() {
        let e = Enforcer::without_cgroups("tests");
        assert_eq!(e.mode(), "rlimits");
        let limits = pergola_domain::LimitsPolicy::default().dev;
        let applied = e.prepare(&["p", "s", "c"], &limits).unwrap();
        assert!(applied.procs.is_empty() && applied.cgroups.is_empty());
        applied.ensure().unwrap();
        applied.release();
        let resources: Vec<_> = applied.rlimits.iter().map(|r| r.0).collect();
        assert_eq!(resources, [libc::RLIMIT_DATA, libc::RLIMIT_NPROC, libc::RLIMIT_NOFILE]);
        assert_eq!(applied.rlimits[0].1, 1024 * 1024 * 1024);
        assert_eq!(applied.oom, b"800\n");
        assert!(e.describe().contains("RLIMIT_DATA") && e.describe().contains("(no cgroup: tests)"));
    }
}
