//! What a component's process is started with: program, arguments, working directory and
//! environment; and the port a service gets.

use super::LocalRuntime;
use crate::StageSpec;
use pergola_domain::ComponentSpec;
use std::path::{Path, PathBuf};

/// Variables of the server's own environment that components inherit; nothing else leaks
/// (the server's `DATABASE_URL`, for one, must not).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];
/// Every component process carries `PERGOLA_RUNTIME=<data dir>`, so the processes a killed
/// server left behind can be found (and stopped) when it starts again.
pub(super) const MARKER_VAR: &str = "PERGOLA_RUNTIME";

/// Everything needed to start one component's process.
#[derive(Clone)]
pub(super) struct Launch {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) workdir: PathBuf,
    pub(super) env: Vec<(String, String)>,
}

impl Launch {
    /// What the environment takes for the system: `NAME=value` and a terminating byte per
    /// variable (compared with [`crate::MAX_ENV_BYTES`]).
    pub(super) fn env_bytes(&self) -> usize {
        self.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    /// The component's temporary directory (`TMPDIR`).
    pub(super) fn tmp_dir(&self) -> Option<PathBuf> {
        self.env.iter().find(|(k, _)| k == "TMPDIR").map(|(_, v)| PathBuf::from(v))
    }
}

impl LocalRuntime {
    /// Prepares the launch of component `c` of `spec`: creates its storage directories and its
    /// temporary directory `tmp`, and gathers its environment. Every path in it is absolute
    /// (the runtime's root is), as the process runs in the build's directory.
    pub(super) fn launch(
        &self,
        spec: &StageSpec,
        c: &ComponentSpec,
        port: Option<u16>,
        tmp: &Path,
    ) -> std::io::Result<Launch> {
        let mut env: Vec<(String, String)> =
            INHERITED_ENV.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(spec.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string()));
        }
        env.push((MARKER_VAR.into(), self.marker()));
        env.push(("PERGOLA_PROJECT".into(), spec.key.project.clone()));
        env.push(("PERGOLA_STAGE".into(), spec.key.stage.clone()));
        env.push(("PERGOLA_COMPONENT".into(), c.name.clone()));
        for volume in &c.storage {
            let dir = self.storage_dir(&spec.key, volume);
            std::fs::create_dir_all(&dir)?;
            let var = format!("PERGOLA_STORAGE_{}", volume.to_ascii_uppercase().replace('-', "_"));
            env.push((var, dir.display().to_string()));
        }
        std::fs::create_dir_all(tmp)?;
        env.push(("TMPDIR".into(), tmp.display().to_string()));
        let program = PathBuf::from(&c.command);
        let program =
            if program.is_relative() && c.command.contains('/') { spec.workdir.join(program) } else { program };
        Ok(Launch { program, args: c.args.clone(), workdir: spec.workdir.clone(), env })
    }
}

/// The preferred port when it is free (not given to another component, nothing listening on
/// it), else a free one the system picks.
pub(super) fn assign_port(preferred: Option<u16>, taken: &[u16]) -> std::io::Result<u16> {
    if let Some(port) = preferred.filter(|p| !taken.contains(p)) {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    loop {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
}
