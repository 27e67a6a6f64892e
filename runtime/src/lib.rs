//! The runtime: what actually runs a stage's components.
//!
//! [`Runtime`] (defined in `pergola-core`, re-exported here) is the seam the services talk to:
//! they **start** a stage's release, **stop** it, **forget** a purged stage, ask its
//! **status** and **logs**, and hand it an [`EventSink`] to **observe** what happens (a
//! Kubernetes implementation can follow: desired state in, observed state out).
//! [`LocalRuntime`] is the embedded default, running each component as a child process of the
//! server, in its own process group and in a bubblewrap sandbox ([`Sandbox`]: its release's
//! read-only copy at `/app`, its volumes at `/storage/<volume>`, its own `/tmp`, nothing else of
//! the host's files or processes; no stage starts without a working sandbox unless it is
//! [`Sandbox::Off`]). A release runs from a copy of its build's directory, made once, read-only
//! (at most [`MAX_RELEASE_FILES`] entries and [`MAX_RELEASE_BYTES`]):
//!
//! - **services** run continuously; when one exits it is `crashed`, restarted with back-off,
//!   and its restarts are counted; an HTTP health check marks it healthy / unhealthy; each
//!   gets a port (the manifest's when it is free, else any free one) passed as `PORT`;
//! - **workers** run continuously like services, without a port;
//! - **jobs** run once per release, to completion: a start of the same release (resume,
//!   restore, server restart) does not run a job that already ran for it (a record under the
//!   runtime's data directory says so, `jobs/<project>/<stage>/<release>/<job>`); the job shows
//!   as completed and its log says "already ran for release N (how it ended)";
//! - **cron** components run as jobs whenever their schedule matches, only while the stage runs,
//!   each run in a fresh, empty `TMPDIR` deleted after it;
//! - job runs and cron runs are tracked like services: visible while they run; when their
//!   process ends, what is left of its process group (sandboxed: of its sandbox) is killed;
//! - stdout and stderr are kept line by line (the last [`LOG_LINES`] per component), read as
//!   bytes: a line longer than [`MAX_LINE_BYTES`] (16 KiB) is cut (the rest of it is read and
//!   discarded, the kept part ends with ` … [line cut at 16 KiB]`), invalid UTF-8 is shown
//!   lossily, and the pipes are drained as long as the process lives, so no output (no
//!   newline ever, binary garbage) can grow the server's memory or make the process block or
//!   get SIGPIPE; what is kept per component stays under about 8 MiB;
//! - **stop** sends SIGTERM to every service's process group (in a sandbox: to every process in
//!   it), waits up to the grace period, then sends SIGKILL to what is left, and stops the cron
//!   schedules; with [`StopMode::Suspend`] jobs and cron runs already started are not touched
//!   and run to completion, with [`StopMode::Halt`] (delete, another release, purge, server
//!   shutdown) they are stopped the same way as services; temporary directories are wiped,
//!   storage is kept;
//! - **start** stops what ran first (a suspend's stop for the same release: its runs still going
//!   go on; a halt for another release), prepares every component and records the jobs it runs
//!   before it starts anything: a start that fails leaves nothing running, scheduled or
//!   recorded;
//! - **forget** (purge) kills what still runs, drops what was observed (components, logs) and
//!   deletes the stage's temporary data, job records, release copies and storage; when a
//!   deletion fails it says so, and the services ask again at their next purge.
//!
//! Each process gets the environment: manifest `env`, then the stage configuration, then what
//! the platform sets — `PORT` (services), `PERGOLA_RUNTIME` (marks the processes of this
//! runtime, so the ones a killed server left behind are stopped when it starts again: an opaque
//! [`runtime_marker`], not the data directory's path), `PERGOLA_PROJECT`, `PERGOLA_STAGE`,
//! `PERGOLA_COMPONENT`, `PERGOLA_STORAGE_<NAME>` (a per-stage directory per volume, kept across
//! suspend and redeploy) and `TMPDIR` (a per-start directory, wiped when the stage stops; a
//! job's or cron run's own, fresh per run). In the
//! sandbox these are `/storage/<volume>` and `/tmp`, and `PATH` is the sandbox's; unsandboxed
//! they are absolute host paths (under the runtime's data directory, made absolute when it is
//! created), since each process runs in its release's directory. The whole environment (`NAME=value` of
//! every variable) may take at most [`MAX_ENV_BYTES`] (128 KiB): a stage with a component over
//! it is not started ([`RuntimeError::Environment`] names the component and the size).
//!
//! What it observes (starts, crashes, restarts, kills, health changes, job results) goes to the
//! sink given to [`Runtime::observe`]: the services record it in the stages' timelines.

mod local;
mod probe;

pub use local::{
    become_subreaper, reap_adopted, runtime_marker, spawn_reaper, Enforcer, LocalRuntime, NetworkGuard, Sandbox,
    MAX_RELEASE_BYTES, MAX_RELEASE_FILES, SANDBOX_UID,
};
pub use pergola_core::runtime::{
    EventSink, EventStream, Runtime, RuntimeError, StageKey, StageSpec, StopMode, StopReport,
};
pub use pergola_domain::runtime::{ComponentState, ComponentStatus, Health, LogLine};

/// How many output lines are kept per component.
pub const LOG_LINES: usize = 500;

/// The longest output line kept (bytes, after lossy UTF-8 decoding); the rest of a longer line
/// is discarded up to its newline and the kept part ends with " … [line cut at 16 KiB]". With
/// [`LOG_LINES`], what is kept of a component's output stays under about 8 MiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The largest environment a component is started with: the sum over its variables of
/// `NAME=value` plus a terminating byte. Well under Linux's limits (`ARG_MAX`, and 128 KiB for
/// one variable), so a start is refused with [`RuntimeError::Environment`] rather than failing
/// with E2BIG at every restart.
pub const MAX_ENV_BYTES: usize = 128 * 1024;
