//! The server as a child subreaper (this test binary plays the server): a component's process
//! that escapes its process group by a double fork and `setsid` (unsandboxed) is adopted, ended
//! when its stage stops, and collected; the runtime's own children keep their exit statuses.

mod common;

use common::sh;
use pergola_domain::{ComponentKind, ComponentSpec};
use pergola_runtime::{ComponentState, LocalRuntime, Runtime, Sandbox, StageKey, StageSpec, StopMode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `/proc/<pid>/stat`: (state, parent, process group).
fn stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    Some((rest.next()?.chars().next()?, rest.next()?.parse().ok()?, rest.next()?.parse().ok()?))
}

/// Kills a process when the test ends, passed or failed (a failed test leaves no daemon), if
/// it is still the one started here (its environment names `marker`).
struct KillOnDrop(u32, String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let environ = std::fs::read(format!("/proc/{}/environ", self.0)).unwrap_or_default();
        if environ.windows(self.1.len()).any(|w| w == self.1.as_bytes()) {
            // SAFETY: kill(2) sends a signal; it touches no memory.
            unsafe {
                libc::kill(self.0 as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_double_forked_process_is_adopted_killed_with_its_stage_and_reaped() {
    pergola_runtime::become_subreaper().expect("prctl(PR_SET_CHILD_SUBREAPER)");
    // The reaper at its most eager, all along: it must never take the runtime's children.
    let reaping = Arc::new(AtomicBool::new(true));
    let reaper = {
        let reaping = reaping.clone();
        std::thread::spawn(move || {
            let mut reaped = 0;
            while reaping.load(Ordering::Relaxed) {
                reaped += pergola_runtime::reap_adopted();
                std::thread::sleep(Duration::from_millis(1));
            }
            reaped
        })
    };
    let dir = std::env::temp_dir().join(format!("pergola-subreaper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = LocalRuntime::new(dir.join("data")).with_sandbox(Sandbox::Off);
    let key = StageKey::new("shop", "qa");
    let pid_file = dir.join("stray.pid");
    // The daemon ignores SIGTERM: only SIGKILL ends it.
    let web = sh(
        "web",
        ComponentKind::Service,
        "( setsid sh -c 'trap \"\" TERM; echo $$ > \"$STRAY_FILE\"; while :; do sleep 0.2; done' & ); exec sleep 300",
    );
    // Jobs exiting with a code of their own, again and again, while the reaper runs.
    let jobs: Vec<ComponentSpec> =
        (0..8).map(|n| sh(&format!("job{n}"), ComponentKind::Job, &format!("exit {}", 10 + n))).collect();
    let mut config = BTreeMap::new();
    config.insert("STRAY_FILE".to_owned(), pid_file.display().to_string());
    let mut components = vec![web];
    components.extend(jobs);
    let spec = StageSpec {
        key: key.clone(),
        release: 1,
        components,
        config,
        workdir: dir.clone(),
        limits: Default::default(),
        stage_type: pergola_domain::StageType::Dev,
    };
    runtime.start(spec, Duration::from_secs(30)).await.unwrap();

    wait_for("the daemon's pid", || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))).await;
    let stray: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _cleanup = KillOnDrop(stray, dir.display().to_string());
    let web_pid = runtime.status(&key).into_iter().find(|c| c.name == "web").unwrap().pid.unwrap();
    wait_for("the daemon to be adopted", || stat(stray).is_some_and(|(_, parent, _)| parent == std::process::id()))
        .await;
    assert_ne!(stat(stray).unwrap().2, web_pid, "it left the component's process group");

    for n in 0..8 {
        let name = format!("job{n}");
        wait_for("the jobs to complete", || {
            runtime.status(&key).iter().any(|c| c.name == name && c.state == ComponentState::Completed)
        })
        .await;
        let job = runtime.status(&key).into_iter().find(|c| c.name == name).unwrap();
        assert_eq!(job.exit_code, Some(10 + n), "{name}: the runtime got its child's exit status");
    }

    let started = Instant::now();
    let report = runtime.stop(&key, Duration::from_millis(500), StopMode::Suspend).await;
    assert_eq!(report.terminated, ["web"]);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // Killed with its stage, and collected: no zombie is left behind.
    wait_for("the daemon to be gone", || stat(stray).is_none()).await;

    reaping.store(false, Ordering::Relaxed);
    assert!(reaper.join().unwrap() >= 1, "the adopted daemon was reaped here");
    runtime.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
