//! Hostile components in the bubblewrap sandbox (real processes): what they try, and what they
//! get. Skipped, with a message, only where bwrap cannot run at all.

mod common;

use common::sh;

use pergola_core::config::OutboundPorts;
use pergola_domain::{ComponentKind, ComponentSpec, ResourceLimits};
use pergola_runtime::{
    ComponentState, Enforcer, LocalRuntime, NetworkGuard, Runtime, RuntimeError, Sandbox, StageKey, StageSpec,
    StopMode, SANDBOX_UID,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_secs(30);

/// A server's data directory (with a database and a secret key standing for the real ones),
/// its runtime at `server/runtime`, and a build directory.
struct Rig {
    runtime: LocalRuntime,
    dir: PathBuf,
    server: PathBuf,
    build: PathBuf,
}

impl Rig {
    /// `None` (with a message) when bwrap cannot run here at all.
    fn new() -> Option<Self> {
        if let Err(why) = Sandbox::detect() {
            eprintln!("SKIPPED: the sandbox cannot run on this machine: {why}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("pergola-sandbox-{}-{}", std::process::id(), suffix()));
        let server = dir.join("server");
        let build = dir.join("build");
        std::fs::create_dir_all(&server).unwrap();
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(server.join("pergola.db"), "DATABASE-CONTENT").unwrap();
        std::fs::write(server.join("secret.key"), "SECRET-KEY-CONTENT").unwrap();
        let runtime = LocalRuntime::new(server.join("runtime")).hiding(&server);
        Some(Rig { runtime, dir, server, build })
    }

    /// [`Rig::new`] where the kernel has Landlock's network rules (`None`, with a message,
    /// elsewhere).
    fn guarded() -> Option<Self> {
        if !NetworkGuard::detect().restricts_tcp() {
            eprintln!("SKIPPED: this kernel has no Landlock network rules (Linux 6.7 or newer)");
            return None;
        }
        Self::new()
    }

    fn data(&self) -> PathBuf {
        self.server.join("runtime")
    }

    fn spec(&self, stage: &str, release: i64, components: Vec<ComponentSpec>) -> StageSpec {
        StageSpec {
            key: StageKey::new("shop", stage),
            release,
            components,
            config: BTreeMap::new(),
            workdir: self.build.clone(),
            limits: Default::default(),
            stage_type: pergola_domain::StageType::Dev,
        }
    }

    /// What the component wrote (not what the runtime says about it).
    fn logs(&self, stage: &str, component: &str) -> Vec<String> {
        let logs = self.runtime.logs(&StageKey::new("shop", stage), component).into_iter();
        logs.filter(|l| l.stream != "pergola").map(|l| l.line).collect()
    }

    fn state(&self, stage: &str, component: &str) -> Option<ComponentState> {
        self.runtime.status(&StageKey::new("shop", stage)).into_iter().find(|c| c.name == component).map(|c| c.state)
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `script` as job `name` of stage `stage` to completion; its output (all of it: the
    /// output is read on its own, it may come after the job's end is seen).
    async fn run(&self, stage: &str, name: &str, script: &str) -> Vec<String> {
        let script = format!("{script}\necho END");
        self.runtime.start(self.spec(stage, 1, vec![sh(name, ComponentKind::Job, &script)]), GRACE).await.unwrap();
        self.wait_for(name, |r| {
            r.state(stage, name) == Some(ComponentState::Completed) && r.logs(stage, name).contains(&"END".to_owned())
        })
        .await;
        self.logs(stage, name).into_iter().filter(|l| l != "END").collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Release copies are read-only: make them writable to delete them.
        let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// A line per path: `<path>: readable` or `<path>: denied`.
fn try_to_read(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "if cat '{p}' >/dev/null 2>&1 || ls '{p}' >/dev/null 2>&1; \
                 then echo '{p}: readable'; else echo '{p}: denied'; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_component_sees_neither_the_database_nor_the_secret_key_nor_other_stages_nor_the_host() {
    let Some(rig) = Rig::new() else { return };
    // Another stage with a file in its storage.
    let prod = StageKey::new("shop", "prod");
    let volume = rig.runtime.storage_dir(&prod, "data");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("orders.csv"), "PROD-ORDERS").unwrap();
    let server = rig.server.display().to_string();
    let targets = [
        format!("{server}/pergola.db"),
        format!("{server}/secret.key"),
        format!("{}/orders.csv", volume.display()),
        format!("{}/runtime/storage", server),
        "/storage/../../prod".into(),
        "/etc/shadow".into(),
        "/root".into(),
        "/home".into(),
        format!("/proc/{}/environ", std::process::id()),
    ];
    let logs = rig
        .run(
            "qa",
            "snoop",
            &format!(
                "{}; echo \"root: $(ls / | tr '\\n' ' ')\"; echo \"processes: $(ls /proc | grep -c '^[0-9]')\"; \
                 echo \"user: $(id -u):$(id -g) $(id -un)\"",
                try_to_read(&targets)
            ),
        )
        .await;
    for target in &targets {
        assert!(logs.contains(&format!("{target}: denied")), "{target}: {logs:?}");
    }
    assert!(!logs.iter().any(|l| l.ends_with(": readable")), "{logs:?}");
    assert!(
        logs.contains(&"root: app bin dev etc lib lib64 proc sbin tmp usr ".to_owned())
            || logs.contains(&"root: app bin dev etc lib proc sbin tmp usr ".to_owned()),
        "nothing else of the host: {logs:?}"
    );
    // bwrap's init, its shell and the pipeline counting: the server's processes are not there.
    let processes: usize = logs.iter().find_map(|l| l.strip_prefix("processes: ")).unwrap().parse().unwrap();
    assert!(processes <= 6, "{logs:?}");
    assert!(logs.contains(&format!("user: {SANDBOX_UID}:{SANDBOX_UID} app")), "{logs:?}");
}

#[tokio::test]
async fn a_component_cannot_write_into_its_release_nor_into_another_stages_storage() {
    let Some(rig) = Rig::new() else { return };
    std::fs::write(rig.build.join("run.sh"), "echo original\n").unwrap();
    let prod = StageKey::new("shop", "prod");
    let volume = rig.runtime.storage_dir(&prod, "data");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("orders.csv"), "PROD-ORDERS").unwrap();
    let attempts = [
        "echo evil > /app/run.sh".to_owned(),
        "echo evil > /app/new-file".to_owned(),
        "chmod u+w /app/run.sh".to_owned(),
        "rm -f /app/run.sh".to_owned(),
        format!("echo evil > {}/orders.csv", volume.display()),
        format!("echo evil > {}/secret.key", rig.server.display()),
        "touch /evil".to_owned(),
        "echo evil > /usr/evil".to_owned(),
    ];
    let script = attempts
        .iter()
        .map(|a| format!("if {a} 2>/dev/null; then echo '{a}: done'; else echo '{a}: denied'; fi"))
        .collect::<Vec<_>>()
        .join("; ");
    let logs = rig.run("qa", "vandal", &script).await;
    for a in &attempts {
        assert!(logs.contains(&format!("{a}: denied")), "{a}: {logs:?}");
    }
    assert_eq!(std::fs::read_to_string(volume.join("orders.csv")).unwrap(), "PROD-ORDERS");
    assert_eq!(std::fs::read_to_string(rig.server.join("secret.key")).unwrap(), "SECRET-KEY-CONTENT");
    let release = rig.data().join("releases/shop/qa/1");
    assert_eq!(std::fs::read_to_string(release.join("run.sh")).unwrap(), "echo original\n");
    assert!(!release.join("new-file").exists());
    assert_eq!(std::fs::read_to_string(rig.build.join("run.sh")).unwrap(), "echo original\n");
    // What it may write: its own storage and /tmp.
    let mut own = sh(
        "writer",
        ComponentKind::Job,
        "echo kept > \"$PERGOLA_STORAGE_FILES/x\" && echo scratch > \"$TMPDIR/y\" \
         && echo \"wrote $PERGOLA_STORAGE_FILES $TMPDIR\"",
    );
    own.storage = vec!["files".into()];
    rig.runtime.start(rig.spec("qa", 1, vec![own]), GRACE).await.unwrap();
    rig.wait_for("the writer", |r| r.logs("qa", "writer").iter().any(|l| l.starts_with("wrote"))).await;
    assert!(
        rig.logs("qa", "writer").contains(&"wrote /storage/files /tmp".to_owned()),
        "{:?}",
        rig.logs("qa", "writer")
    );
    let written = rig.runtime.storage_dir(&StageKey::new("shop", "qa"), "files").join("x");
    assert_eq!(std::fs::read_to_string(written).unwrap(), "kept\n");
}

/// A stage's configuration (its secrets) reaches its own components only: not another stage's
/// components, which cannot read them in `/proc/*/environ` either; and nothing of the server's
/// environment but `LANG`/`LC_ALL`/`TZ` reaches a component.
#[tokio::test]
async fn a_config_secret_is_visible_to_its_own_component_only() {
    let Some(rig) = Rig::new() else { return };
    let mut prod =
        rig.spec("prod", 1, vec![sh("api", ComponentKind::Service, "echo \"token=$API_TOKEN\"; exec sleep 300")]);
    prod.config.insert("API_TOKEN".into(), "prod-secret-4711".into());
    rig.runtime.start(prod, GRACE).await.unwrap();
    rig.wait_for("prod's api", |r| r.logs("prod", "api").contains(&"token=prod-secret-4711".to_owned())).await;
    // The secret is in the environment of prod's process, as the host sees it.
    assert!(common::marked(&rig.data()).iter().any(|(_, cmd)| cmd == "sleep 300"));
    let logs = rig
        .run(
            "qa",
            "snoop",
            "echo \"token=${API_TOKEN:-none}\"; \
             echo \"found=$(cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c prod-secret-4711)\"; \
             env | cut -d= -f1 | sort | tr '\\n' ' ' | sed 's/^/vars: /'; echo; echo \"path=$PATH\"",
        )
        .await;
    assert!(logs.contains(&"token=none".to_owned()), "{logs:?}");
    assert!(logs.contains(&"found=0".to_owned()), "{logs:?}");
    let vars = logs.iter().find_map(|l| l.strip_prefix("vars: ")).unwrap();
    for var in vars.split_whitespace() {
        assert!(
            var.starts_with("PERGOLA_")
                || ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"].contains(&var),
            "{var} leaked from the server: {vars}"
        );
    }
    assert!(logs.contains(&"path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()), "{logs:?}");
    rig.runtime.stop(&StageKey::new("shop", "prod"), GRACE, StopMode::Suspend).await;
}

/// Inside, a component's environment names the sandbox's paths only: not where the server
/// keeps its files (`PERGOLA_RUNTIME` is an opaque marker, not the data directory's path).
#[tokio::test]
async fn a_sandboxed_component_sees_no_host_path_in_its_environment() {
    let Some(rig) = Rig::new() else { return };
    let mut job = sh("env", ComponentKind::Job, "env; echo END");
    job.storage = vec!["files".into()];
    rig.runtime.start(rig.spec("qa", 1, vec![job]), GRACE).await.unwrap();
    rig.wait_for("its environment", |r| r.logs("qa", "env").contains(&"END".to_owned())).await;
    let env = rig.logs("qa", "env");
    let canonical = std::fs::canonicalize(&rig.dir).unwrap();
    for host in [rig.dir.display().to_string(), canonical.display().to_string()] {
        assert!(!env.iter().any(|line| line.contains(&host)), "{host} is named inside: {env:?}");
    }
    let marker = format!("PERGOLA_RUNTIME={}", pergola_runtime::runtime_marker(&rig.data()));
    assert!(env.contains(&marker), "{env:?}");
    assert!(env.contains(&"PERGOLA_STORAGE_FILES=/storage/files".to_owned()), "{env:?}");
    assert!(env.contains(&"TMPDIR=/tmp".to_owned()), "{env:?}");
}

/// bwrap's `/dev` is a tmpfs of half the RAM: a component could fill it (or `/dev/shm` in it)
/// out of any disk quota. `/dev` is read-only, `/dev/shm` a tmpfs of 64 MiB, and the devices
/// still work.
#[tokio::test]
async fn dev_is_read_only_but_for_a_bounded_dev_shm() {
    let Some(rig) = Rig::new() else { return };
    let logs = rig
        .run(
            "qa",
            "filler",
            "if touch /dev/evil 2>/dev/null; then echo 'dev: written'; else echo 'dev: denied'; fi; \
             if head -c 100000000 /dev/zero > /dev/shm/fill 2>/dev/null; then echo 'shm: unbounded'; \
             else echo \"shm: full at $(wc -c < /dev/shm/fill)\"; fi; rm -f /dev/shm/fill; \
             if echo x > /dev/null && head -c 1 /dev/urandom >/dev/null; then echo 'devices: work'; fi",
        )
        .await;
    assert_eq!(logs, ["dev: denied", "shm: full at 67108864", "devices: work"]);
}

#[tokio::test]
async fn a_process_escaping_with_setsid_is_still_stopped_on_suspend() {
    let Some(rig) = Rig::new() else { return };
    let escaper = sh(
        "escaper",
        ComponentKind::Service,
        "setsid sh -c 'trap \"\" TERM HUP; echo escaped; while true; do sleep 0.1; done' & \
         echo started; while true; do sleep 0.1; done",
    );
    rig.runtime.start(rig.spec("qa", 1, vec![escaper]), GRACE).await.unwrap();
    rig.wait_for("the escape", |r| r.logs("qa", "escaper").contains(&"escaped".to_owned())).await;
    assert!(common::marked(&rig.data()).len() >= 4, "bwrap, its init, the shell, the escaped shell");
    let started = Instant::now();
    let report = rig.runtime.stop(&StageKey::new("shop", "qa"), Duration::from_secs(5), StopMode::Suspend).await;
    assert_eq!(report.terminated, ["escaper"]);
    rig.wait_for("every process to be gone", |r| common::marked(&r.data()).is_empty()).await;
    assert!(started.elapsed() < Duration::from_secs(5), "within the grace period");
}

#[tokio::test]
async fn a_component_ignoring_sigterm_is_killed_after_the_grace_period() {
    let Some(rig) = Rig::new() else { return };
    let stubborn = sh(
        "stubborn",
        ComponentKind::Service,
        "trap '' TERM; (trap '' TERM; while true; do sleep 0.1; done) & echo ready; while true; do sleep 0.1; done",
    );
    rig.runtime.start(rig.spec("qa", 1, vec![stubborn]), GRACE).await.unwrap();
    rig.wait_for("ready", |r| r.logs("qa", "stubborn").contains(&"ready".to_owned())).await;
    let grace = Duration::from_millis(1500);
    let started = Instant::now();
    let report = rig.runtime.stop(&StageKey::new("shop", "qa"), grace, StopMode::Suspend).await;
    assert!(started.elapsed() >= grace);
    assert_eq!(report.killed, ["stubborn"]);
    rig.wait_for("every process to be gone", |r| common::marked(&r.data()).is_empty()).await;
}

/// A release runs the files it was deployed with: changing the build's directory afterwards
/// changes nothing a resumed or rolled-back release runs; a new release gets the new files.
#[tokio::test]
async fn a_release_keeps_running_the_files_it_was_deployed_with() {
    let Some(rig) = Rig::new() else { return };
    std::fs::create_dir_all(rig.build.join("bin")).unwrap();
    let write = |version: &str| {
        let script = format!("#!/bin/sh\necho \"version {version} in $(pwd)\"\nexec sleep 60\n");
        std::fs::write(rig.build.join("bin/app"), script).unwrap();
        let mut perms = std::fs::metadata(rig.build.join("bin/app")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(rig.build.join("bin/app"), perms).unwrap();
    };
    // A worker: a job would run once per release, not at every start.
    let job = ComponentSpec { command: "./bin/app".into(), args: vec![], ..sh("app", ComponentKind::Worker, "") };
    let rig = &rig;
    let run = |release: i64| {
        let spec = rig.spec("qa", release, vec![job.clone()]);
        async move {
            rig.runtime.start(spec, GRACE).await.unwrap();
            rig.wait_for("the worker", |r| {
                r.state("qa", "app") == Some(ComponentState::Running) && !r.logs("qa", "app").is_empty()
            })
            .await;
            rig.logs("qa", "app")
        }
    };
    write("1");
    assert_eq!(run(1).await, ["version 1 in /app"]);
    write("2");
    assert_eq!(run(1).await, ["version 1 in /app"], "release 1 again (resumed) runs its own files");
    assert_eq!(run(2).await, ["version 2 in /app"], "a new release copies the build anew");
    write("3");
    assert_eq!(run(1).await, ["version 1 in /app"], "rolled back");
    assert_eq!(run(2).await, ["version 2 in /app"]);
    // Purging the stage stops it and deletes its copies.
    rig.runtime.forget(&StageKey::new("shop", "qa")).await.unwrap();
    assert!(common::marked(&rig.data()).is_empty());
    assert!(!rig.data().join("releases/shop/qa").exists());
}

#[tokio::test]
async fn a_build_holding_the_servers_data_directory_does_not_copy_it() {
    let Some(rig) = Rig::new() else { return };
    // The build directory is the server's parent: the data directory is inside it.
    let mut spec = rig.spec("qa", 1, vec![sh("look", ComponentKind::Job, "echo \"app: $(ls /app)\"")]);
    spec.workdir = rig.dir.clone();
    rig.runtime.start(spec, GRACE).await.unwrap();
    rig.wait_for("the job", |r| r.logs("qa", "look").iter().any(|l| l.starts_with("app: "))).await;
    assert_eq!(rig.logs("qa", "look"), ["app: build"], "the server's directory is left out");
}

#[tokio::test]
async fn without_a_working_sandbox_no_stage_starts_unless_it_is_off() {
    let dir = std::env::temp_dir().join(format!("pergola-nosandbox-{}-{}", std::process::id(), suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = LocalRuntime::new(dir.join("data")).with_sandbox(Sandbox::Bubblewrap("/nonexistent/bwrap".into()));
    let spec = StageSpec {
        key: StageKey::new("shop", "qa"),
        release: 1,
        components: vec![sh("web", ComponentKind::Service, "exec sleep 60")],
        config: BTreeMap::new(),
        workdir: dir.clone(),
        limits: Default::default(),
        stage_type: pergola_domain::StageType::Dev,
    };
    let e = broken.start(spec.clone(), GRACE).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Sandbox(_)), "{e}");
    assert!(e.to_string().contains("install the Debian package bubblewrap, or set PERGOLA_SANDBOX=off"), "{e}");
    assert!(broken.status(&spec.key).is_empty(), "nothing runs, not even unsandboxed");
    assert!(broken.sandbox_status().starts_with("no stage can start"));

    let off = LocalRuntime::new(dir.join("data")).with_sandbox(Sandbox::Off);
    assert!(off.sandbox_status().contains("PERGOLA_SANDBOX=off"));
    let job = sh("where", ComponentKind::Job, "pwd");
    off.start(StageSpec { components: vec![job], ..spec }, GRACE).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pwd = loop {
        let logs = off.logs(&StageKey::new("shop", "qa"), "where");
        if let Some(line) = logs.into_iter().find(|l| l.stream == "stdout") {
            break line.line;
        }
        assert!(Instant::now() < deadline, "the job did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(pwd.ends_with("data/releases/shop/qa/1"), "unsandboxed, it runs from the release's copy too: {pwd}");
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `PERGOLA_SANDBOX=off`: components are plain processes in their own group again, stopped by
/// SIGTERM to it (or SIGKILL after the grace period).
#[tokio::test]
async fn unsandboxed_components_are_stopped_through_their_process_group() {
    let dir = std::env::temp_dir().join(format!("pergola-unsandboxed-{}-{}", std::process::id(), suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let off = LocalRuntime::new(&data).with_sandbox(Sandbox::Off);
    let key = StageKey::new("shop", "qa");
    let polite = sh(
        "polite",
        ComponentKind::Service,
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    );
    let stubborn = sh("stubborn", ComponentKind::Service, "trap '' TERM; echo ready; while true; do sleep 0.05; done");
    let spec = StageSpec {
        key: key.clone(),
        release: 1,
        components: vec![polite, stubborn],
        config: BTreeMap::new(),
        workdir: dir.clone(),
        limits: Default::default(),
        stage_type: pergola_domain::StageType::Dev,
    };
    off.start(spec, GRACE).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = |c: &str| off.logs(&key, c).iter().any(|l| l.line == "ready");
    while !(ready("polite") && ready("stubborn")) {
        assert!(Instant::now() < deadline, "the services did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(common::marked(&data).iter().all(|(_, cmd)| !cmd.contains("bwrap")), "not sandboxed");
    let report = off.stop(&key, Duration::from_millis(1500), StopMode::Suspend).await;
    assert_eq!((report.terminated, report.killed), (vec!["polite".to_owned()], vec!["stubborn".to_owned()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::marked(&data).is_empty() || !off.logs(&key, "polite").iter().any(|l| l.line == "bye") {
        assert!(Instant::now() < deadline, "left: {:?}", common::marked(&data));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Limits small enough to hit in a test.
fn tight() -> ResourceLimits {
    ResourceLimits { memory_mib: 64, processes: 24, open_files: 64, cpu_nice: 10, oom_score_adj: 800 }
}

/// Whether memory and process limits are enforced here: by a cgroup, or by rlimits for a server
/// that is not root (the kernel does not apply `RLIMIT_NPROC` to root).
fn limits_enforced() -> bool {
    let mode = Enforcer::detect().mode();
    if mode == "rlimits" && unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "SKIPPED: no cgroup can be created here and the tests run as root: {}",
            Enforcer::detect().describe()
        );
        return false;
    }
    true
}

#[tokio::test]
async fn the_stage_types_limits_apply_to_every_process_of_a_component() {
    let Some(rig) = Rig::new() else { return };
    let script = "echo files=$(ulimit -n); echo oom=$(cat /proc/self/oom_score_adj); \
                  echo nice=$(cut -d' ' -f19 /proc/self/stat); \
                  sh -c 'echo child-files=$(ulimit -n) child-oom=$(cat /proc/self/oom_score_adj)'; echo END";
    let spec = StageSpec { limits: tight(), ..rig.spec("dev", 1, vec![sh("probe", ComponentKind::Job, script)]) };
    rig.runtime.start(spec, GRACE).await.unwrap();
    rig.wait_for("the probe's output", |r| r.logs("dev", "probe").contains(&"END".to_owned())).await;
    let logs = rig.logs("dev", "probe");
    for expected in ["files=64", "oom=800", "nice=10", "child-files=64 child-oom=800"] {
        assert!(logs.contains(&expected.to_owned()), "{expected} missing from {logs:?}");
    }
    // PROD's defaults: its own CPU priority, no out-of-memory preference.
    let logs = rig.run("prod", "probe", "echo oom=$(cat /proc/self/oom_score_adj) files=$(ulimit -n)").await;
    assert_eq!(logs, [format!("oom=0 files={}", ResourceLimits::default().open_files)]);
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_other_stages_keep_running() {
    let Some(rig) = Rig::new() else { return };
    if !limits_enforced() {
        return;
    }
    let prod = rig.spec("prod", 1, vec![sh("web", ComponentKind::Service, "echo up; exec sleep 600")]);
    rig.runtime.start(prod, GRACE).await.unwrap();
    rig.wait_for("prod", |r| r.logs("prod", "web").contains(&"up".to_owned())).await;
    // Forks until the system refuses, then says how many it got, and keeps them.
    let script =
        "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n        \
                print('refused after', n, flush=True)\n        time.sleep(600)\n    if pid == 0:\n        \
                time.sleep(600)\n        os._exit(0)\n    n += 1\n";
    let mut bomb = sh("bomb", ComponentKind::Service, "");
    bomb.command = "python3".into();
    bomb.args = vec!["-c".into(), script.into()];
    let limits = ResourceLimits { memory_mib: 512, ..tight() };
    let dev = StageSpec { limits, ..rig.spec("dev", 1, vec![bomb]) };
    rig.runtime.start(dev, GRACE).await.unwrap();
    rig.wait_for("the bomb", |r| r.logs("dev", "bomb").iter().any(|l| l.starts_with("refused after"))).await;
    let line = rig.logs("dev", "bomb").into_iter().find(|l| l.starts_with("refused after")).unwrap();
    let forks: u32 = line.trim_start_matches("refused after ").parse().unwrap();
    assert!((4..tight().processes).contains(&forks), "{line}");
    let dev_processes = || common::of_stage(&rig.data(), "dev");
    // The sandbox's own process (bwrap outside) aside, at most the limit.
    assert!(dev_processes() <= tight().processes as usize + 1, "{} processes of the bomb", dev_processes());
    assert_eq!(rig.state("prod", "web"), Some(ComponentState::Running));
    rig.runtime.stop(&StageKey::new("shop", "dev"), Duration::from_secs(1), StopMode::Halt).await;
    rig.wait_for("the bomb to be gone", |_| dev_processes() == 0).await;
    assert_eq!(rig.state("prod", "web"), Some(ComponentState::Running));
    rig.runtime.stop(&StageKey::new("shop", "prod"), GRACE, StopMode::Halt).await;
}

#[tokio::test]
async fn memory_beyond_the_limit_ends_the_component_and_nothing_else() {
    let Some(rig) = Rig::new() else { return };
    if !limits_enforced() {
        return;
    }
    // Holds 150 MB in a shell variable; 10 MB fits.
    let hog = |mb: u32| format!("x=$(head -c {}000000 /dev/zero | tr '\\0' a); echo held ${{#x}}", mb);
    let spec = StageSpec {
        limits: tight(),
        stage_type: pergola_domain::StageType::Dev,
        ..rig.spec("dev", 1, vec![sh("small", ComponentKind::Job, &hog(10)), sh("hog", ComponentKind::Job, &hog(150))])
    };
    rig.runtime.start(spec, GRACE).await.unwrap();
    let done = |r: &Rig, c: &str| {
        matches!(r.state("dev", c), Some(ComponentState::Completed | ComponentState::Crashed | ComponentState::Stopped))
    };
    rig.wait_for("both jobs", |r| done(r, "small") && done(r, "hog")).await;
    rig.wait_for("the small job's output", |r| r.logs("dev", "small").contains(&"held 10000000".to_owned())).await;
    let status = rig.runtime.status(&StageKey::new("shop", "dev"));
    let hog_status = status.iter().find(|c| c.name == "hog").unwrap();
    assert_ne!(hog_status.exit_code, Some(0), "the hog was not stopped: {:?}", rig.logs("dev", "hog"));
    assert!(!rig.logs("dev", "hog").iter().any(|l| l.starts_with("held 150")), "{:?}", rig.logs("dev", "hog"));
}

#[tokio::test]
async fn the_dashboard_is_told_how_components_are_isolated_and_limited() {
    let Some(rig) = Rig::new() else { return };
    let report = rig.runtime.isolation_report();
    assert_eq!(report.sandbox, "bubblewrap");
    assert!(!report.unsandboxed());
    assert_eq!(report.limits, Enforcer::detect().mode());
    assert!(report.limits_detail.contains("RLIMIT_NOFILE"), "{}", report.limits_detail);
    let off = LocalRuntime::new(rig.dir.join("off")).with_sandbox(Sandbox::Off);
    let report = off.isolation_report();
    assert_eq!(report.sandbox, "off");
    assert!(report.unsandboxed() && report.sandbox_detail.contains("PERGOLA_SANDBOX=off"));
}

/// A free TCP port of the machine (nothing listens on it once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Python script making one attempt per `KIND NAME PORT` of its arguments on 127.0.0.1 —
/// `connect`, `mptcp` (an MPTCP connection, which falls back to TCP), `fastopen` (a TCP Fast
/// Open send, which connects without `connect`), `listen`, `mptcp-listen` — printing `NAME: done`,
/// `NAME: denied` (refused by permission, or the protocol or operation refused) or
/// `NAME: failed: …` (anything else, a connection refused by nobody listening included).
const PROBE: &str = r#"
import errno, socket, sys
def connect(port, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto); s.settimeout(3); s.connect(("127.0.0.1", port)); s.close()
def fastopen(port):
    # Blocking: with a timeout, Python would take the send's EINPROGRESS for a failure.
    s = socket.socket(); s.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", port)); s.close()
def listen(port, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto); s.bind(("127.0.0.1", port)); s.listen(); s.close()
KINDS = {"connect": connect, "mptcp": lambda p: connect(p, 262), "fastopen": fastopen,
         "listen": listen, "mptcp-listen": lambda p: listen(p, 262)}
args = sys.argv[1:]
for kind, name, port in zip(args[0::3], args[1::3], args[2::3]):
    try:
        KINDS[kind](int(port)); print(name + ": done")
    except OSError as e:
        refused = e.errno in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT, errno.EOPNOTSUPP, errno.ENOSYS)
        print(name + (": denied" if refused else ": failed: " + str(e)))
print("END")
"#;

/// A service listening on its `PORT` (Python's HTTP server, from the host's `/usr`).
fn web(name: &str, port: u16) -> ComponentSpec {
    ComponentSpec {
        port: Some(port),
        ..sh(name, ComponentKind::Service, "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1")
    }
}

/// Hostile: a component reaches for another stage's service, the machine's own services and
/// ports it was not given — over TCP, MPTCP and TCP Fast Open; it reaches its own stage's service
/// and the outbound ports, and listens only where the system picks (a job has no PORT). Then the
/// same attempts without the guard all get through, so the checks can fail.
#[tokio::test]
async fn a_component_connects_only_to_its_stage_and_the_outbound_ports_and_listens_only_on_its_own() {
    let Some(mut rig) = Rig::guarded() else { return };
    std::fs::write(rig.build.join("probe.py"), PROBE).unwrap();
    // The machine's own services, on a port allowed outbound and on one not.
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let private = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (allowed_port, private_port) = (allowed.local_addr().unwrap().port(), private.local_addr().unwrap().port());
    let accepting = std::thread::spawn(move || {
        // Connections are answered (and dropped) while the test runs.
        for listener in [&allowed, &private] {
            listener.set_nonblocking(true).unwrap();
        }
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let _ = (allowed.accept(), private.accept());
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (prod_port, qa_port, unused) = (free_port(), free_port(), free_port());
    let attempts = |own: u16| -> Vec<String> {
        [
            ("connect", "its own stage's service", own),
            ("connect", "another stage's service", prod_port),
            ("connect", "the machine's private service", private_port),
            ("connect", "the outbound port", allowed_port),
            ("mptcp", "the machine's private service over MPTCP", private_port),
            ("fastopen", "the machine's private service by Fast Open", private_port),
            ("listen", "a port of its choosing", unused),
            ("mptcp-listen", "a port of its choosing over MPTCP", unused),
            ("listen", "where the system picks", 0),
        ]
        .iter()
        .flat_map(|(kind, name, port)| [kind.to_string(), name.to_string(), port.to_string()])
        .collect()
    };
    // The job starts once its stage's service listens.
    let prober = |own: u16| {
        ComponentSpec {
        command: "sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "until python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {own})).close()' 2>/dev/null; \
                 do sleep 0.1; done; exec python3 probe.py \"$@\""
            ),
            "probe".into(),
        ]
        .into_iter()
        .chain(attempts(own))
        .collect(),
        ..sh("prober", ComponentKind::Job, "")
    }
    };
    rig.runtime =
        LocalRuntime::new(rig.data()).hiding(&rig.server).with_outbound(OutboundPorts::Only(vec![allowed_port]));
    rig.runtime.start(rig.spec("prod", 1, vec![web("api", prod_port)]), GRACE).await.unwrap();
    // The other stage's service listens (a refused connection would look like a denied one).
    rig.wait_for("the other stage's service", |_| std::net::TcpStream::connect(("127.0.0.1", prod_port)).is_ok()).await;
    rig.runtime.start(rig.spec("qa", 1, vec![web("web", qa_port), prober(qa_port)]), GRACE).await.unwrap();
    rig.wait_for("the prober", |r| r.logs("qa", "prober").contains(&"END".to_owned())).await;
    let logs = rig.logs("qa", "prober");
    for expected in [
        "its own stage's service: done",
        "another stage's service: denied",
        "the machine's private service: denied",
        "the outbound port: done",
        "the machine's private service over MPTCP: denied",
        "the machine's private service by Fast Open: denied",
        "a port of its choosing: denied",
        "a port of its choosing over MPTCP: denied",
        "where the system picks: done",
    ] {
        assert!(logs.contains(&expected.to_owned()), "{expected}: {logs:#?}");
    }
    // What the dashboard is told.
    let report = rig.runtime.isolation_report();
    assert_eq!(report.network, "landlock");
    assert!(report.network_detail.contains(&format!("port {allowed_port} (PERGOLA_OUTBOUND_PORTS)")), "{report:?}");
    rig.runtime.stop(&StageKey::new("shop", "qa"), GRACE, StopMode::Halt).await;

    // Without the guard, the same attempts get through.
    let unguarded =
        LocalRuntime::new(rig.dir.join("unguarded")).hiding(&rig.server).with_network_guard(NetworkGuard::none());
    let dev_port = free_port();
    let spec = StageSpec {
        key: StageKey::new("shop", "dev"),
        ..rig.spec("dev", 1, vec![web("web", dev_port), prober(dev_port)])
    };
    unguarded.start(spec, GRACE).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let logs = loop {
        let logs: Vec<String> = unguarded
            .logs(&StageKey::new("shop", "dev"), "prober")
            .into_iter()
            .filter(|l| l.stream != "pergola")
            .map(|l| l.line)
            .collect();
        if logs.contains(&"END".to_owned()) {
            break logs;
        }
        assert!(Instant::now() < deadline, "the unguarded prober: {logs:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let denied: Vec<&String> = logs.iter().filter(|l| !l.ends_with(": done") && *l != "END").collect();
    assert!(denied.is_empty(), "without the guard everything gets through: {logs:#?}");
    assert_eq!(unguarded.isolation_report().network, "shared");
    unguarded.stop(&StageKey::new("shop", "dev"), GRACE, StopMode::Halt).await;
    rig.runtime.stop(&StageKey::new("shop", "prod"), GRACE, StopMode::Halt).await;
    drop(accepting);
}

/// Hostile, without the sandbox (components run as the server's user): a component signals the
/// server and takes a port it was not given — Landlock holds both where the kernel scopes
/// signals (Linux 6.12 or newer).
#[tokio::test]
async fn unsandboxed_a_component_cannot_signal_the_server_nor_listen_elsewhere() {
    let Some(mut rig) = Rig::guarded() else { return };
    rig.runtime = LocalRuntime::new(rig.data()).hiding(&rig.server).with_sandbox(Sandbox::Off);
    let unused = free_port();
    let me = std::process::id();
    let logs = rig
        .run(
            "qa",
            "rogue",
            &format!(
                "if kill -0 {me} 2>/dev/null; then echo 'signal the server: done'; else echo 'signal the server: denied'; fi; \
                 if python3 -c 'import socket; socket.socket().bind((\"127.0.0.1\", {unused}))' 2>/dev/null; \
                 then echo 'listen elsewhere: done'; else echo 'listen elsewhere: denied'; fi"
            ),
        )
        .await;
    assert!(logs.contains(&"listen elsewhere: denied".to_owned()), "{logs:?}");
    if rig.runtime.isolation_report().network_detail.contains("cannot signal the server") {
        assert!(logs.contains(&"signal the server: denied".to_owned()), "{logs:?}");
    }
}
