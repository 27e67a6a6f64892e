//! LocalRuntime against hostile components (real processes): output without newlines, invalid
//! UTF-8, over-long lines, an oversized environment. In a test binary of its own, so the memory
//! measured is not that of the other tests' processes.

mod common;

use common::sh;
use pergola_domain::{ComponentKind, ComponentSpec};
use pergola_runtime::{
    ComponentState, LocalRuntime, Runtime, RuntimeError, StageKey, StageSpec, StopMode, MAX_ENV_BYTES, MAX_LINE_BYTES,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CUT_MARK: &str = " … [line cut at 16 KiB]";
const GRACE: Duration = Duration::from_secs(5);

struct Rig {
    runtime: LocalRuntime,
    dir: PathBuf,
    key: StageKey,
}

impl Rig {
    fn new(stage: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("pergola-output-{}-{stage}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Rig { runtime: LocalRuntime::new(dir.join("data")), dir, key: StageKey::new("shop", stage) }
    }

    fn spec(&self, components: Vec<ComponentSpec>) -> StageSpec {
        StageSpec {
            key: self.key.clone(),
            release: 1,
            components,
            config: BTreeMap::new(),
            workdir: self.dir.clone(),
            limits: Default::default(),
            stage_type: pergola_domain::StageType::Dev,
        }
    }

    async fn wait_for(&self, what: &str, secs: u64, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:?}",
                self.runtime.status(&self.key)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The output lines of `component` (its own, not the runtime's notes).
    fn output(&self, component: &str) -> Vec<String> {
        self.runtime.logs(&self.key, component).into_iter().filter(|l| l.stream != "pergola").map(|l| l.line).collect()
    }

    fn state(&self, component: &str) -> Option<(ComponentState, u32)> {
        self.runtime.status(&self.key).into_iter().find(|c| c.name == component).map(|c| (c.state, c.restarts))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_without_a_newline_keep_memory_bounded() {
    let rig = Rig::new("flood");
    let before = rss();
    let flood = sh("flood", ComponentKind::Worker, "head -c 200000000 /dev/zero; echo; echo after; exec sleep 60");
    rig.runtime.start(rig.spec(vec![flood]), GRACE).await.unwrap();
    rig.wait_for("the line after the flood", 120, |r| r.output("flood").contains(&"after".to_owned())).await;
    let after = rss();
    assert!(after < before + 64 * 1024 * 1024, "RSS grew from {before} to {after} bytes");
    let out = rig.output("flood");
    assert_eq!(out.len(), 2, "{:?}", out.iter().map(|l| l.len()).collect::<Vec<_>>());
    assert_eq!(out[0], format!("{}{CUT_MARK}", "\0".repeat(MAX_LINE_BYTES)));
    assert_eq!(rig.state("flood"), Some((ComponentState::Running, 0)), "it goes on running");
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
}

#[tokio::test]
async fn invalid_utf8_does_not_stop_the_capture_nor_crash_the_component() {
    let rig = Rig::new("garbage");
    let script = r"printf 'bad \377\376 bytes\n'; echo normal; while true; do echo tick; sleep 0.05; done";
    rig.runtime.start(rig.spec(vec![sh("garbage", ComponentKind::Worker, script)]), GRACE).await.unwrap();
    rig.wait_for("ticks after the garbage", 15, |r| r.output("garbage").iter().filter(|l| *l == "tick").count() >= 5)
        .await;
    let out = rig.output("garbage");
    assert_eq!(out[..2], ["bad \u{fffd}\u{fffd} bytes", "normal"], "{out:?}");
    assert_eq!(rig.state("garbage"), Some((ComponentState::Running, 0)), "no crash, no restart");
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
}

#[tokio::test]
async fn the_line_after_an_over_long_one_is_intact() {
    let rig = Rig::new("long");
    let script = "head -c 100000 /dev/zero | tr '\\0' x; echo; echo normal; printf 'last without newline'";
    rig.runtime.start(rig.spec(vec![sh("long", ComponentKind::Job, script)]), GRACE).await.unwrap();
    rig.wait_for("the job to complete", 15, |r| r.state("long").map(|s| s.0) == Some(ComponentState::Completed)).await;
    rig.wait_for("its last line", 5, |r| r.output("long").len() == 3).await;
    let out = rig.output("long");
    assert_eq!(out[0], format!("{}{CUT_MARK}", "x".repeat(MAX_LINE_BYTES)));
    assert_eq!(out[1..], ["normal", "last without newline"]);
}

#[tokio::test]
async fn an_oversized_environment_refuses_the_start_and_nothing_runs() {
    let rig = Rig::new("bigenv");
    let first = sh("first", ComponentKind::Service, "touch started; exec sleep 60");
    let mut big = sh("big", ComponentKind::Worker, "touch big-started; exec sleep 60");
    big.env.insert("HUGE".into(), "x".repeat(MAX_ENV_BYTES));
    let err = rig.runtime.start(rig.spec(vec![first, big]), GRACE).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Environment { component, size, limit }
            if component == "big" && *size > MAX_ENV_BYTES && *limit == MAX_ENV_BYTES),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("'big'") && message.contains("131072"), "{message}");
    assert!(rig.runtime.status(&rig.key).is_empty(), "nothing is started");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rig.dir.join("started").exists() && !rig.dir.join("big-started").exists(), "no process ran");

    // Just under the limit, it starts.
    let mut fits = sh("fits", ComponentKind::Job, "echo ok");
    fits.env.insert("HUGE".into(), "x".repeat(MAX_ENV_BYTES / 2));
    rig.runtime.start(rig.spec(vec![fits]), GRACE).await.unwrap();
    rig.wait_for("the job", 15, |r| r.output("fits") == ["ok"]).await;
}
