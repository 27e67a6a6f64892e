//! What the runtime tests share: the processes a runtime started, as the host sees them.

use pergola_domain::{ComponentKind, ComponentSpec};
use std::path::Path;

/// The processes (host pid, command line with spaces) carrying the marker of the runtime whose
/// data directory is `data` — every process it started, sandboxed or not, and theirs.
#[allow(dead_code)]
pub fn marked(data: &Path) -> Vec<(i32, String)> {
    let marker = format!("PERGOLA_RUNTIME={}", pergola_runtime::runtime_marker(data));
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end().to_owned();
        found.push((pid, cmdline));
    }
    found
}

/// The marked processes of `data` running `command` (its command line, exactly).
#[allow(dead_code)]
pub fn running(data: &Path, command: &str) -> Vec<i32> {
    marked(data).into_iter().filter(|(_, c)| c == command).map(|(p, _)| p).collect()
}

/// Every file named `name` under `dir`.
#[allow(dead_code)]
pub fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// `PERGOLA_STAGE` of process `pid` (the stage a component process belongs to).
#[allow(dead_code)]
pub fn stage_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"PERGOLA_STAGE=").map(|s| String::from_utf8_lossy(s).into()))
}

/// The marked processes of `data` that belong to stage `stage`.
#[allow(dead_code)]
pub fn of_stage(data: &Path, stage: &str) -> usize {
    marked(data).into_iter().filter(|(pid, _)| stage_of(*pid).as_deref() == Some(stage)).count()
}

/// A component running `sh -c script`.
#[allow(dead_code)]
pub fn sh(name: &str, kind: ComponentKind, script: &str) -> ComponentSpec {
    ComponentSpec {
        name: name.into(),
        kind,
        command: "sh".into(),
        image: None,
        args: vec!["-c".into(), script.into()],
        port: None,
        schedule: None,
        health: None,
        storage: vec![],
        env: std::collections::BTreeMap::new(),
    }
}
