//! Component processes an earlier server left running (it was killed without a chance to stop
//! them) are found by their marker variable and stopped.

use super::launch::MARKER_VAR;
use super::process::{kill_all, pid_namespace, terminate};
use super::LocalRuntime;
use std::time::Duration;

impl LocalRuntime {
    /// Stops the component processes an earlier server with the same data directory left
    /// running (it was killed without a chance to stop them): SIGTERM to their process groups
    /// (sandboxed: to the processes in their sandboxes), up to `grace`, then SIGKILL. Returns
    /// how many process groups there were (a sandbox is one: its bwrap's). Call it at start-up,
    /// before the stages that should run are started again.
    pub async fn reap_orphans(&self, grace: Duration) -> usize {
        // Also the path older servers marked their processes with (an upgrade after a kill).
        let markers = [format!("{MARKER_VAR}={}", self.marker()), format!("{MARKER_VAR}={}", self.legacy_marker())];
        let groups = orphan_groups(&markers);
        if groups.is_empty() {
            return 0;
        }
        tracing::warn!(groups = groups.len(), "stopping component processes left behind by an earlier server");
        for &pgid in &groups {
            // Started sandboxed or not: a sandbox is looked for.
            terminate(Some(pgid), true);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && !orphan_groups(&markers).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pgid in orphan_groups(&markers) {
            kill_all(Some(pgid), true).await;
        }
        groups.len()
    }
}

/// The process groups of the processes whose environment holds one of `markers` (`NAME=value`),
/// in the server's PID namespace (a sandbox's processes are reached through its bwrap's group).
fn orphan_groups(markers: &[String]) -> Vec<u32> {
    let own = std::process::id();
    let namespace = pid_namespace(own as i32);
    let mut groups: Vec<u32> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return groups };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == own {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| markers.iter().any(|m| var == m.as_bytes())) {
            continue;
        }
        if pid_namespace(pid as i32) != namespace {
            continue;
        }
        // /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces and ')'.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(pgrp) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok())
        else {
            continue;
        };
        let zombie = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z");
        if !zombie && pgrp > 1 && !groups.contains(&pgrp) {
            groups.push(pgrp);
        }
    }
    groups
}
