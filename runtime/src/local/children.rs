//! The server as a child subreaper: processes a component double-forks away from its process
//! group (`setsid` and an exiting parent: a daemon's escape) are re-parented to the server
//! instead of to init, so they stay findable (the runtime ends them when their stage stops:
//! [`stray_processes`]) and their exit is collected here.
//!
//! Reaping must not steal the exit status of the runtime's own children, which Tokio waits for
//! by their pid. So every child the runtime spawns is spawned through [`spawn_registered`],
//! which records its pid while holding [`SPAWNED`]'s lock, and [`reap_adopted`] only waits
//! (`waitpid(pid, WNOHANG)`, on that pid alone) for zombies whose parent is this process and
//! whose pid is not recorded, holding the same lock while it looks: a child between its fork
//! and its recording cannot be mistaken for an adopted one. (`waitid(P_ALL, WNOWAIT)` was the
//! other way: it shows one zombie at a time without reaping it, always the same first one, so
//! an adopted zombie behind a child of Tokio's not yet collected would wait for it.) A recorded
//! pid is forgotten once it is no longer a child of this process (Tokio collected it).
//! Anything else in the server that starts a process must go through [`spawn_registered`] too.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The pids of the children the runtime spawned (Tokio's, and the sandbox check's).
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// How often adopted zombies are looked for besides at every SIGCHLD (signals coalesce).
const REAP_EVERY: Duration = Duration::from_secs(2);

fn spawned() -> MutexGuard<'static, Option<HashSet<u32>>> {
    SPAWNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns a child through `spawn` and records its pid before any reaping can look at it.
pub(crate) fn spawn_registered<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid: impl Fn(&T) -> Option<u32>,
) -> std::io::Result<T> {
    let mut registry = spawned();
    let child = spawn()?;
    if let Some(pid) = pid(&child) {
        registry.get_or_insert_with(HashSet::new).insert(pid);
    }
    Ok(child)
}

/// Makes this process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): orphaned
/// descendants are re-parented to it. Call it once at start-up, before any stage starts.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer and touches no memory.
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Collects the adopted children that have exited (zombies of this process that the runtime
/// did not spawn). Returns how many.
pub fn reap_adopted() -> usize {
    let own = std::process::id();
    let mut registry = spawned();
    let recorded = registry.get_or_insert_with(HashSet::new);
    let mut children: Vec<(u32, bool)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some((state, ppid, _)) = stat(pid) {
                if ppid == own {
                    children.push((pid, state == 'Z'));
                }
            }
        }
    }
    // Recorded children Tokio has collected are no children any more.
    recorded.retain(|pid| children.iter().any(|(child, _)| child == pid));
    let mut reaped = 0;
    for (pid, zombie) in children {
        if zombie && !recorded.contains(&pid) {
            let mut status = 0;
            // SAFETY: waitpid on one pid, with a valid pointer to a local for the status.
            let done = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if done == pid as libc::pid_t {
                reaped += 1;
            }
        }
    }
    reaped
}

/// Reaps adopted children for as long as the server runs: at every SIGCHLD and every
/// [`REAP_EVERY`]. Call within a Tokio runtime.
pub fn spawn_reaper() {
    tokio::spawn(async move {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            match sigchld.as_mut() {
                Some(signal) => {
                    let _ = tokio::time::timeout(REAP_EVERY, signal.recv()).await;
                }
                None => tokio::time::sleep(REAP_EVERY).await,
            }
            let reaped = tokio::task::spawn_blocking(reap_adopted).await.unwrap_or(0);
            if reaped > 0 {
                tracing::debug!(reaped, "collected the exit of processes components had left");
            }
        }
    });
}

/// `/proc/<pid>/stat`: "pid (comm) state ppid pgrp …" (comm may hold spaces and ')'): the
/// state, the parent and the process group.
fn stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// A process of a stage ([`stage_processes`]).
#[derive(Clone, Debug)]
pub(super) struct StageProcess {
    pub(super) pid: u32,
    pub(super) group: u32,
    /// Its `PERGOLA_COMPONENT`.
    pub(super) component: String,
}

/// The live processes of one stage in this PID namespace, found by their environment (the
/// runtime's `marker`, the stage's project and ID), with their process group and their
/// component's name — strays
/// included, whatever group or session they moved to. Sandboxed components live in PID
/// namespaces of their own and end with them; a process that rewrote its own environment is
/// not found.
pub(super) fn stage_processes(marker: &str, project: &str, stage: &str) -> Vec<StageProcess> {
    let own = std::process::id();
    let namespace = super::process::pid_namespace(own as i32);
    let wanted = [marker.to_owned(), format!("PERGOLA_PROJECT={project}"), format!("PERGOLA_STAGE={stage}")];
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == own {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !wanted.iter().all(|w| vars.contains(&w.as_bytes())) {
            continue;
        }
        if super::process::pid_namespace(pid as i32) != namespace {
            continue;
        }
        let Some((state, _, group)) = stat(pid) else { continue };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let component = vars
            .iter()
            .rev()
            .find_map(|v| v.strip_prefix(b"PERGOLA_COMPONENT="))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        found.push(StageProcess { pid, group, component });
    }
    found
}

/// Sends `signal` to each of `processes` (to each process, not to its group).
pub(super) fn signal_each(processes: &[StageProcess], signal: libc::c_int) {
    for process in processes {
        if let Ok(pid) = libc::pid_t::try_from(process.pid) {
            // SAFETY: kill(2) sends a signal to one process; it touches no memory.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}
