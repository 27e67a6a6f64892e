//! A component's process: spawned in its own process group with its output captured, and
//! signalled as a group.

use super::component::Component;
use super::launch::Launch;
use crate::ComponentState;
use chrono::Utc;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Starts the process of `launch`; its output goes to the component's log, and the component
/// is running.
pub(super) fn spawn(component: &Arc<Component>, launch: &Launch) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.program);
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
    let mut child = command.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(component.clone(), "stdout", out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(component.clone(), "stderr", err));
    }
    let pid = child.id();
    component.update(|s| {
        s.state = ComponentState::Running;
        s.pid = pid;
        s.started_at = Some(Utc::now());
        s.exit_code = None;
    });
    Ok(child)
}

async fn capture(component: Arc<Component>, stream: &'static str, pipe: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        component.log(stream, line);
    }
}

pub(super) fn signal_group(pid: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // component (process_group(0) makes its pid the group id); it touches no memory.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}
