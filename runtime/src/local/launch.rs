//! What a component's process is started with: program, arguments, working directory,
//! environment and sandbox; and the port a service gets.

use super::limits::Applied;
use super::sandbox::{self, Mounts, SANDBOX_PATH};
use super::LocalRuntime;
use crate::StageSpec;
use pergola_domain::ComponentSpec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Variables of the server's own environment that components inherit; nothing else leaks
/// (the server's `DATABASE_URL`, for one, must not).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];
/// Every component process carries `PERGOLA_RUNTIME=<marker>` ([`runtime_marker`]), so the
/// processes a killed server left behind can be found (and stopped) when it starts again.
pub(super) const MARKER_VAR: &str = "PERGOLA_RUNTIME";

/// The value of `PERGOLA_RUNTIME` in the environment of every process of the runtime whose
/// data directory is `data_dir`: `runtime-<hash of its canonical path>`, the same for every
/// server with that data directory, and no host path (a sandboxed component sees only the
/// sandbox's paths, not where the server keeps its files).
pub fn runtime_marker(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    super::limits::instance_name(&dir)
}

/// Everything needed to start one component's process.
#[derive(Clone)]
pub(super) struct Launch {
    /// As the process sees it (inside the sandbox when there is one).
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    /// The release's files on the host.
    pub(super) workdir: PathBuf,
    /// Paths in it are as the process sees them.
    pub(super) env: Vec<(String, String)>,
    /// The component's temporary directory on the host.
    pub(super) tmp: PathBuf,
    /// `bwrap` and its arguments (up to the program) when it runs sandboxed.
    pub(super) sandbox: Option<(PathBuf, Vec<OsString>)>,
    /// Its resource limits (applied between fork and exec).
    pub(super) limits: Applied,
    /// What it may do on the network (put on it between fork and exec); `None` where the
    /// kernel cannot restrict it. Set once the stage's ports are known (see `start`).
    pub(super) network: Option<super::network::Rules>,
}

impl Launch {
    /// What the environment takes for the system: `NAME=value` and a terminating byte per
    /// variable (compared with [`crate::MAX_ENV_BYTES`]).
    pub(super) fn env_bytes(&self) -> usize {
        self.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }
}

impl LocalRuntime {
    /// Prepares the launch of component `c` of `spec` from the release's files in `release`:
    /// creates its storage directories and its temporary directory `tmp`, and gathers its
    /// environment. Sandboxed (`bwrap`), the paths in it are the sandbox's (`/storage/<volume>`,
    /// `/tmp`) and `PATH` is the sandbox's; else they are absolute host paths (the runtime's
    /// root is), as the process runs in the release's directory.
    pub(super) fn launch(
        &self,
        spec: &StageSpec,
        c: &ComponentSpec,
        port: Option<u16>,
        tmp: &Path,
        release: &Path,
        bwrap: Option<&Path>,
    ) -> std::io::Result<Launch> {
        let sandboxed = bwrap.is_some();
        let mut env: Vec<(String, String)> = INHERITED_ENV
            .iter()
            .filter_map(|k| match (*k, sandboxed) {
                ("PATH", true) => Some((k.to_string(), SANDBOX_PATH.to_owned())),
                ("HOME", true) => Some((k.to_string(), "/tmp".to_owned())),
                _ => std::env::var(k).ok().map(|v| (k.to_string(), v)),
            })
            .collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(spec.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string()));
        }
        env.push((MARKER_VAR.into(), self.marker()));
        env.push(("PERGOLA_PROJECT".into(), spec.key.project.clone()));
        env.push(("PERGOLA_STAGE".into(), spec.key.stage.clone()));
        env.push(("PERGOLA_COMPONENT".into(), c.name.clone()));
        let mut volumes = Vec::new();
        for volume in &c.storage {
            let dir = self.storage_dir(&spec.key, volume);
            std::fs::create_dir_all(&dir)?;
            let var = format!("PERGOLA_STORAGE_{}", volume.to_ascii_uppercase().replace('-', "_"));
            let seen = if sandboxed { sandbox::volume_path(volume) } else { dir.display().to_string() };
            env.push((var, seen));
            volumes.push((volume.clone(), dir));
        }
        std::fs::create_dir_all(tmp)?;
        env.push(("TMPDIR".into(), if sandboxed { "/tmp".into() } else { tmp.display().to_string() }));
        let (program, sandbox) = match bwrap {
            Some(bwrap) => {
                let (passwd, group) = self.sandbox_files()?;
                let mounts = Mounts { release: release.to_path_buf(), tmp: tmp.to_path_buf(), volumes, passwd, group };
                let args = sandbox::bwrap_args(&sandbox::HostFs::scan(), &mounts);
                (sandbox::program_inside(&c.command), Some((bwrap.to_path_buf(), args)))
            }
            None => {
                let program = PathBuf::from(&c.command);
                let program =
                    if program.is_relative() && c.command.contains('/') { release.join(program) } else { program };
                (program, None)
            }
        };
        Ok(Launch {
            program,
            args: c.args.clone(),
            workdir: release.to_path_buf(),
            env,
            tmp: tmp.to_path_buf(),
            sandbox,
            limits: self.limits.prepare(&self.cgroup_path(&spec.key, &c.name), &spec.limits)?,
            network: None,
        })
    }

    /// The `passwd` and `group` files sandboxes see (written once under the runtime's root).
    fn sandbox_files(&self) -> std::io::Result<(PathBuf, PathBuf)> {
        let dir = self.data_dir.join("sandbox");
        std::fs::create_dir_all(&dir)?;
        let (passwd, group) = (dir.join("passwd"), dir.join("group"));
        for (path, text) in [(&passwd, sandbox::PASSWD), (&group, sandbox::GROUP)] {
            if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
                std::fs::write(path, text)?;
            }
        }
        Ok((passwd, group))
    }
}

/// Where services get their ports when the manifest names none or its port is taken: from
/// here up to the system's ephemeral ports (`/proc/sys/net/ipv4/ip_local_port_range`), so that
/// no bind to port 0 and no outgoing connection of any process is given a service's port
/// between its assignment and the service's bind (with the network guard, the only ports a
/// component may bind besides its own are ephemeral ones).
const SERVICE_PORTS_FROM: u16 = 20_000;

/// The ports services are given: [`SERVICE_PORTS_FROM`] up to the first ephemeral port, if the
/// system leaves at least a thousand there.
fn service_ports() -> Option<std::ops::Range<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_from: u16 = text.split_whitespace().next()?.parse().ok()?;
    (ephemeral_from >= SERVICE_PORTS_FROM.saturating_add(1000)).then_some(SERVICE_PORTS_FROM..ephemeral_from)
}

/// The first of the preferred ports that is free (not given to another component, nothing
/// listening on it), else a free one below the ephemeral ports ([`service_ports`], from a random place in
/// it), else one the system picks.
pub(super) fn assign_port(preferred: impl IntoIterator<Item = u16>, taken: &[u16]) -> std::io::Result<u16> {
    let free = |port: u16| !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    if let Some(port) = preferred.into_iter().find(|p| free(*p)) {
        return Ok(port);
    }
    if let Some(range) = service_ports() {
        use std::hash::{BuildHasher, Hasher};
        let len = usize::from(range.end - range.start);
        // std's hasher is keyed from the system's randomness: servers starting at once rarely
        // begin at the same place.
        let start = std::collections::hash_map::RandomState::new().build_hasher().finish() as usize % len;
        for i in 0..len {
            let port = range.start + ((start + i) % len) as u16;
            if free(port) {
                return Ok(port);
            }
        }
    }
    loop {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_get_ports_below_the_ephemeral_ones_unless_the_manifests_is_free() {
        let Some(range) = service_ports() else {
            eprintln!("SKIPPED: the ephemeral ports leave no room below them here");
            return;
        };
        for _ in 0..20 {
            let port = assign_port(None, &[]).unwrap();
            assert!(range.contains(&port), "{port} is not in {range:?}");
        }
        // A port given to another component, or one something listens on, is not given again.
        let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let busy = held.local_addr().unwrap().port();
        let port = assign_port(Some(busy), &[]).unwrap();
        assert!(port != busy && range.contains(&port), "{port}");
        let given = assign_port(None, &[]).unwrap();
        assert_ne!(assign_port(Some(given), &[given]).unwrap(), given);
        // The manifest's port when it is free.
        let wanted = assign_port(None, &[]).unwrap();
        assert_eq!(assign_port(Some(wanted), &[]).unwrap(), wanted);
        // The first free one of those preferred (the manifest's, then the one of the last start).
        assert_eq!(assign_port([busy, wanted], &[]).unwrap(), wanted);
    }
}
