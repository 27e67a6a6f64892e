//! A component's process: spawned in its own process group (sandboxed: `bwrap`, which runs the
//! component in a PID namespace of its own) with its output captured, and signalled as a group
//! (sandboxed: every process of its namespace).

use super::component::Component;
use super::launch::Launch;
use crate::{ComponentState, MAX_LINE_BYTES};
use chrono::Utc;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Starts the process of `launch`; its output goes to the component's log, and the component
/// is running.
pub(super) fn spawn(component: &Arc<Component>, launch: &Launch) -> std::io::Result<Child> {
    // A service's temporary directory is kept across its restarts (made when it was prepared);
    // a job or cron run gets a fresh one (see `jobs`).
    match std::fs::create_dir_all(&launch.tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let mut command = match &launch.sandbox {
        Some((bwrap, args)) => {
            let mut command = Command::new(bwrap);
            command.args(args).arg("--").arg(&launch.program);
            command
        }
        None => Command::new(&launch.program),
    };
    command
        .args(&launch.args)
        .current_dir(&launch.workdir)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Its cgroups, made again if its last process removed them.
    launch.limits.ensure()?;
    let (limits, network) = (launch.limits.clone(), launch.network.clone());
    // SAFETY: `Applied::pre_exec` and `Rules::restrict` make only async-signal-safe calls, on
    // values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            limits.pre_exec()?;
            match &network {
                Some(rules) => rules.restrict(),
                None => Ok(()),
            }
        });
    }
    let mut child = super::children::spawn_registered(|| command.spawn(), Child::id)?;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(capture(component.clone(), "stdout", out)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(capture(component.clone(), "stderr", err)));
    }
    component.reading(readers);
    let pid = child.id();
    component.update(|s| {
        s.state = ComponentState::Running;
        s.pid = pid;
        s.started_at = Some(Utc::now());
        s.exit_code = None;
    });
    Ok(child)
}

/// What ends a line kept longer than [`MAX_LINE_BYTES`] (the rest of it is not kept).
pub(super) const CUT_MARK: &str = " … [line cut at 16 KiB]";

/// Keeps the output of `pipe` line by line as bytes: a line longer than [`MAX_LINE_BYTES`] is
/// cut (the rest of it, up to the next newline, is read and discarded), invalid UTF-8 is shown
/// lossily, and reading goes on until the pipe closes, so the process never blocks on a full
/// pipe nor gets SIGPIPE, whatever it writes.
async fn capture(component: Arc<Component>, stream: &'static str, mut pipe: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Lines::default();
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => line.feed(&buf[..n], |l| component.log(stream, l)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                component.log("pergola", format!("cannot read {stream} any more: {e}"));
                break;
            }
        }
    }
    line.finish(|l| component.log(stream, l));
}

/// Splits bytes into bounded lines (see [`capture`]).
#[derive(Default)]
pub(super) struct Lines {
    /// The current line, at most `MAX_LINE_BYTES` of it.
    kept: Vec<u8>,
    /// Whether bytes of the current line were dropped.
    cut: bool,
}

impl Lines {
    /// Takes in `bytes`; every line they complete goes to `emit`.
    pub(super) fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(String)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let part = &bytes[..end.unwrap_or(bytes.len())];
            let room = MAX_LINE_BYTES - self.kept.len();
            if part.len() > room {
                self.cut = true;
            }
            self.kept.extend_from_slice(&part[..part.len().min(room)]);
            match end {
                Some(i) => {
                    emit(self.take());
                    bytes = &bytes[i + 1..];
                }
                None => break,
            }
        }
    }

    /// The pipe closed: what is left of the last line (without a newline) goes to `emit`.
    pub(super) fn finish(&mut self, emit: impl FnOnce(String)) {
        if !self.kept.is_empty() || self.cut {
            emit(self.take());
        }
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.kept);
        if bytes.last() == Some(&b'\r') && !self.cut {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        // Lossy decoding can make a line longer (three bytes per invalid one).
        if line.len() > MAX_LINE_BYTES {
            let mut at = MAX_LINE_BYTES;
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            line.truncate(at);
            self.cut = true;
        }
        if std::mem::take(&mut self.cut) {
            line.push_str(CUT_MARK);
        }
        line
    }
}

pub(super) fn signal_group(pid: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        kill(-pid, signal);
    }
}

fn kill(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) sends a signal (a negative pid: to the process group we created for the
    // component, as process_group(0) makes its pid the group id); it touches no memory.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Asks what component process `pid` (not reaped yet) runs to stop (SIGTERM). Unsandboxed, its
/// process group (also when `sandboxed` but no sandbox is found: the reaper does not know).
/// Sandboxed (`pid` is bwrap's), every process in its PID namespace but the namespace's init
/// (bwrap's reaper, which ends when the component's process ends): bwrap itself is left
/// alone, as SIGTERM would end it at once and its sandbox with it, by SIGKILL (which is what
/// happens to a sandbox still starting, with no process of the component in it yet).
pub(super) fn terminate(pid: Option<u32>, sandboxed: bool) {
    let Some(pid) = pid else { return };
    let inits = if sandboxed { sandbox_inits(pid) } else { Vec::new() };
    if inits.is_empty() {
        return signal_group(Some(pid), libc::SIGTERM);
    }
    let mut signalled = false;
    for (p, ns) in processes() {
        if inits.iter().any(|(init, space)| *space == ns && *init != p) {
            kill(p, libc::SIGTERM);
            signalled = true;
        }
    }
    if !signalled {
        // Still starting (nothing but bwrap's init in there): ending bwrap ends it all.
        signal_group(Some(pid), libc::SIGTERM);
    }
}

/// Ends what component process `pid` runs (SIGKILL): its process group, and when sandboxed
/// the init of its PID namespace (the kernel then ends every process in it), and waits (up to
/// [`SANDBOX_END`]) until those are gone: the kernel ends them one by one, after the process
/// the runtime waits for. Only for a `pid` not reaped yet (else it may be another process's
/// by now).
pub(super) async fn kill_all(pid: Option<u32>, sandboxed: bool) {
    let Some(pid) = pid else { return };
    let inits: Vec<i32> = if sandboxed { sandbox_inits(pid) } else { Vec::new() }.into_iter().map(|i| i.0).collect();
    for &init in &inits {
        kill(init, libc::SIGKILL);
    }
    signal_group(Some(pid), libc::SIGKILL);
    // A namespace's init ends (becomes a zombie or is gone) once every other process in it has.
    let deadline = std::time::Instant::now() + SANDBOX_END;
    while inits.iter().any(|&init| alive(init)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How long a killed sandbox may take to end before a stop goes on without it.
const SANDBOX_END: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The children of `pid` that are the first process of another PID namespace (bwrap's
/// sandbox), with that namespace.
fn sandbox_inits(pid: u32) -> Vec<(i32, String)> {
    let Some(own) = pid_namespace(pid as i32) else { return Vec::new() };
    let mut inits = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return inits };
    for entry in entries.flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if parent(p) == Some(pid as i32) {
            if let Some(ns) = pid_namespace(p).filter(|ns| *ns != own) {
                inits.push((p, ns));
            }
        }
    }
    inits
}

/// Every process with its PID namespace.
fn processes() -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(|p| pid_namespace(p).map(|ns| (p, ns)))
        .collect()
}

pub(super) fn pid_namespace(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().map(|l| l.to_string_lossy().into_owned())
}

/// `/proc/<pid>/stat`: "pid (comm) state ppid …"; comm may hold spaces and ')'.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.feed(c, |l| out.push(l));
        }
        lines.finish(|l| out.push(l));
        out
    }

    #[test]
    fn lines_are_split_across_reads() {
        assert_eq!(split(&[b"a\nb", b"c\r\n", b"\nlast"]), ["a", "bc", "", "last"]);
    }

    #[test]
    fn a_long_line_is_cut_and_the_next_one_is_intact() {
        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        let out = split(&[&long, &long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], format!("{}{CUT_MARK}", "x".repeat(MAX_LINE_BYTES)));
        assert_eq!(out[1], "next");
        let exact = vec![b'y'; MAX_LINE_BYTES];
        assert_eq!(split(&[&exact, b"\n"]), ["y".repeat(MAX_LINE_BYTES)]);
    }

    #[test]
    fn invalid_utf8_is_shown_lossily_and_stays_bounded() {
        assert_eq!(split(&[b"ok \xff\xfe end\n"]), ["ok \u{fffd}\u{fffd} end"]);
        let bad = vec![0xffu8; MAX_LINE_BYTES];
        let out = split(&[&bad]);
        assert!(out[0].ends_with(CUT_MARK));
        assert!(out[0].len() <= MAX_LINE_BYTES + CUT_MARK.len());
    }
}
