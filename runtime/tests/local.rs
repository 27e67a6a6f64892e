//! LocalRuntime with real processes (`sh` and `python3`), sandboxed (bwrap must run here).

mod common;

use common::sh;

use pergola_domain::{ComponentKind, ComponentSpec, EventKind};
use pergola_runtime::{
    ComponentState, EventSink, EventStream, Health, LocalRuntime, Runtime, Sandbox, StageKey, StageSpec, StopMode,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Rig {
    runtime: LocalRuntime,
    dir: PathBuf,
    key: StageKey,
    events: std::sync::Mutex<EventStream>,
}

impl Rig {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pergola-runtime-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sink, rx) = EventSink::channel();
        let runtime = LocalRuntime::new(dir.join("data"));
        runtime.observe(sink);
        Rig {
            runtime,
            dir,
            key: StageKey { project: "shop".into(), stage: "qa".into() },
            events: std::sync::Mutex::new(rx),
        }
    }

    /// The events the runtime reported so far about `component`, in order.
    fn event_kinds(&self, component: &str) -> Vec<EventKind> {
        let mut rx = self.events.lock().unwrap();
        let mut kinds = Vec::new();
        while let Some((key, e)) = rx.try_recv() {
            assert_eq!(key, self.key);
            if e.component.as_deref() == Some(component) {
                kinds.push(e.kind);
            }
        }
        kinds
    }

    fn spec(&self, components: Vec<ComponentSpec>) -> StageSpec {
        let mut config = BTreeMap::new();
        config.insert("GREETING".to_owned(), "hello from config".to_owned());
        StageSpec {
            key: self.key.clone(),
            release: 1,
            components,
            config,
            workdir: self.dir.clone(),
            limits: Default::default(),
            stage_type: pergola_domain::StageType::Dev,
        }
    }

    /// Release `release` of the stage, with `config` as its configuration.
    fn release(&self, release: i64, config: &[(&str, &str)], components: Vec<ComponentSpec>) -> StageSpec {
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        StageSpec {
            key: self.key.clone(),
            release,
            components,
            config,
            workdir: self.dir.clone(),
            limits: Default::default(),
            stage_type: pergola_domain::StageType::Dev,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:?}",
                self.runtime.status(&self.key)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self, component: &str) -> Vec<String> {
        self.runtime.logs(&self.key, component).into_iter().map(|l| format!("{}: {}", l.stream, l.line)).collect()
    }

    fn state(&self, component: &str) -> Option<(ComponentState, Health, u32)> {
        self.runtime
            .status(&self.key)
            .into_iter()
            .find(|c| c.name == component)
            .map(|c| (c.state, c.health, c.restarts))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn alive(pid: i32) -> bool {
    // Signal 0 only checks existence; a zombie is not alive for our purpose.
    let exists = unsafe { libc_kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(false);
    exists && !zombie
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const GRACE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_service_gets_its_environment_and_its_output_is_kept() {
    let rig = Rig::new();
    let mut web = sh("web", ComponentKind::Service, "echo \"port=$PORT project=$PERGOLA_PROJECT stage=$PERGOLA_STAGE component=$PERGOLA_COMPONENT greeting=$GREETING level=$LEVEL secret=${PERGOLA_TEST_SECRET:-none}\"; echo warning >&2; exec sleep 60");
    web.port = Some(4321);
    web.env.insert("LEVEL".into(), "debug".into());
    std::env::set_var("PERGOLA_TEST_SECRET", "server-only");
    rig.runtime.start(rig.spec(vec![web]), GRACE).await.unwrap();
    // The "started" line, then stdout and stderr (read separately: in either order).
    rig.wait_for("output", |r| r.logs("web").len() >= 3).await;
    let logs = rig.logs("web");
    assert!(
        logs.contains(
            &"stdout: port=4321 project=shop stage=qa component=web greeting=hello from config level=debug secret=none"
                .to_owned()
        ),
        "{logs:?}"
    );
    assert!(logs.contains(&"stderr: warning".to_owned()), "{logs:?}");
    assert_eq!(rig.state("web").unwrap().0, ComponentState::Running);
    let report = rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert_eq!(report.terminated, ["web"]);
    assert_eq!(rig.state("web").unwrap().0, ComponentState::Stopped);
}

#[tokio::test]
async fn health_follows_the_http_probe() {
    let rig = Rig::new();
    let (good, bad) = (free_port(), free_port());
    let server = |name: &str, port: u16, path: &str| {
        let mut c = sh(name, ComponentKind::Service, "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1");
        c.port = Some(port);
        c.health = Some(pergola_domain::manifest::HealthCheck { path: path.into(), interval_secs: 1 });
        c
    };
    rig.runtime.start(rig.spec(vec![server("good", good, "/"), server("bad", bad, "/missing")]), GRACE).await.unwrap();
    rig.wait_for("good to be healthy", |r| r.state("good").unwrap().1 == Health::Healthy).await;
    rig.wait_for("bad to be unhealthy", |r| r.state("bad").unwrap().1 == Health::Unhealthy).await;
    // Several probes later, the component has logged requests but no errors: a probe reads
    // the whole answer instead of hanging up mid-response.
    rig.wait_for("three probes", |r| {
        r.logs("good").iter().filter(|l| l.contains("\"GET / HTTP/1.1\" 200")).count() >= 3
    })
    .await;
    let errors: Vec<_> =
        rig.logs("good").into_iter().filter(|l| l.contains("Traceback") || l.contains("Error")).collect();
    assert!(errors.is_empty(), "probes caused errors: {errors:?}");
    // The health history keeps the recent probes; uptime counts from the start.
    rig.wait_for("the bad one's third probe", |r| r.runtime.status(&r.key).iter().all(|c| c.probes.len() >= 3)).await;
    let status = rig.runtime.status(&rig.key);
    let after_first_success = status[0].probes.iter().skip_while(|p| !p.healthy);
    assert!(after_first_success.clone().count() >= 2 && after_first_success.clone().all(|p| p.healthy), "{status:?}");
    assert!(status[1].probes.iter().all(|p| !p.healthy), "{status:?}");
    assert!(status[0].probes.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert!(status[0].uptime_secs.is_some_and(|s| s >= 1), "{:?}", status[0].uptime_secs);
    assert_eq!(
        rig.event_kinds("good"),
        [EventKind::Started, EventKind::Healthy],
        "a change of health is an event, a repeat is not"
    );
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert_eq!(rig.state("good").unwrap().1, Health::Unknown, "no health without a process");
}

#[tokio::test]
async fn a_crashing_service_is_restarted_and_counted() {
    let rig = Rig::new();
    rig.runtime
        .start(
            rig.spec(vec![sh(
                "flaky",
                ComponentKind::Service,
                "echo attempt; seq 1 120 | sed 's/^/trace /' >&2; exit 3",
            )]),
            GRACE,
        )
        .await
        .unwrap();
    rig.wait_for("three restarts", |r| r.state("flaky").unwrap().2 >= 3).await;
    let status = rig.runtime.status(&rig.key).pop().unwrap();
    assert_eq!(status.exit_code, Some(3));
    assert!(rig.logs("flaky").iter().filter(|l| *l == "stdout: attempt").count() >= 3);
    assert!(
        rig.logs("flaky").iter().any(|l| l.starts_with("pergola: flaky exited with code 3; restarting in")),
        "{:?}",
        rig.logs("flaky")
    );
    // What it wrote before it ended (its traceback) comes before Pergola's line that it crashed.
    let logs = rig.logs("flaky");
    let mut attempt = Vec::new();
    for line in &logs {
        if line.starts_with("pergola: flaky exited") {
            assert!(attempt.contains(&"stdout: attempt".to_owned()), "{logs:?}");
            assert_eq!(attempt.iter().filter(|l| l.starts_with("stderr: trace")).count(), 120, "{logs:?}");
            attempt.clear();
        } else if !line.starts_with("pergola:") {
            attempt.push(line.clone());
        }
    }
    let kinds = rig.event_kinds("flaky");
    assert_eq!(
        kinds[..4],
        [EventKind::Started, EventKind::Crashed, EventKind::Restarted, EventKind::Crashed],
        "{kinds:?}"
    );
    let report = rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert!(report.killed.is_empty());
    let restarts = rig.state("flaky").unwrap().2;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.state("flaky").unwrap().2, restarts, "no restarts after the stop");
}

#[tokio::test]
async fn suspend_terminates_a_service_that_honours_sigterm_without_waiting_for_the_grace_period() {
    let rig = Rig::new();
    let polite = sh(
        "polite",
        ComponentKind::Service,
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    );
    rig.runtime.start(rig.spec(vec![polite]), GRACE).await.unwrap();
    rig.wait_for("ready", |r| r.logs("polite").contains(&"stdout: ready".to_owned())).await;
    let started = Instant::now();
    let report = rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert!(started.elapsed() < GRACE, "did not wait for the grace period");
    assert_eq!((report.terminated, report.killed), (vec!["polite".to_owned()], vec![]));
    rig.wait_for("the goodbye line", |r| r.logs("polite").contains(&"stdout: bye".to_owned())).await;
}

#[tokio::test]
async fn suspend_kills_a_service_that_ignores_sigterm_after_the_grace_period() {
    let rig = Rig::new();
    let stubborn = sh(
        "stubborn",
        ComponentKind::Service,
        "trap '' TERM; echo $$ > \"$TMPDIR/pid\"; echo ready; while true; do sleep 0.05; done",
    );
    rig.runtime.start(rig.spec(vec![stubborn]), GRACE).await.unwrap();
    rig.wait_for("ready", |r| r.logs("stubborn").contains(&"stdout: ready".to_owned())).await;
    let pid = rig.runtime.status(&rig.key)[0].pid.unwrap() as i32;
    let grace = Duration::from_millis(2500);
    let started = Instant::now();
    let stopping = async {
        // While it waits: stopping, with the seconds left before SIGKILL.
        rig.wait_for("stopping", |r| r.state("stubborn").unwrap().0 == ComponentState::Stopping).await;
        let status = rig.runtime.status(&rig.key).pop().unwrap();
        assert!(status.kill_in_secs.is_some_and(|s| s <= 2), "{status:?}");
    };
    let (report, ()) = tokio::join!(rig.runtime.stop(&rig.key, grace, StopMode::Suspend), stopping);
    assert!(started.elapsed() >= grace, "waited the grace period first");
    assert_eq!(rig.event_kinds("stubborn"), [EventKind::Started, EventKind::Killed]);
    assert_eq!(rig.runtime.status(&rig.key)[0].kill_in_secs, None);
    assert_eq!((report.terminated, report.killed), (vec![], vec!["stubborn".to_owned()]));
    assert!(!alive(pid), "killed");
    assert!(rig.logs("stubborn").iter().any(|l| l.contains("grace period; killed")));
}

#[tokio::test]
async fn storage_survives_suspend_and_restart_but_temporary_data_does_not() {
    let rig = Rig::new();
    let mut app = sh(
        "app",
        ComponentKind::Service,
        "echo \"kept=$(cat \"$PERGOLA_STORAGE_DATA/counter\" 2>/dev/null || echo none) tmp=$(cat \"$TMPDIR/scratch\" 2>/dev/null || echo none)\"; \
         echo run >> \"$PERGOLA_STORAGE_DATA/counter\"; echo temp > \"$TMPDIR/scratch\"; echo \"tmpdir=$TMPDIR\"; exec sleep 60",
    );
    app.storage = vec!["data".into()];
    rig.runtime.start(rig.spec(vec![app.clone()]), GRACE).await.unwrap();
    rig.wait_for("first run", |r| r.logs("app").iter().any(|l| l.starts_with("stdout: tmpdir="))).await;
    assert!(rig.logs("app").contains(&"stdout: kept=none tmp=none".to_owned()));
    // The sandbox's /tmp is the component's temporary directory, under the runtime's root.
    let tmp_root = rig.dir.join("data/tmp");
    assert_eq!(common::files_named(&tmp_root, "scratch").len(), 1);
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert!(common::files_named(&tmp_root, "scratch").is_empty(), "temporary data is lost on suspend");
    let volume = rig.runtime.storage_dir(&rig.key, "data");
    assert_eq!(std::fs::read_to_string(volume.join("counter")).unwrap(), "run\n", "storage is kept");
    // Resume: the same storage, a fresh temp directory.
    rig.runtime.start(rig.spec(vec![app]), GRACE).await.unwrap();
    rig.wait_for("second run", |r| r.logs("app").iter().any(|l| l.starts_with("stdout: kept="))).await;
    assert!(rig.logs("app").contains(&"stdout: kept=run tmp=none".to_owned()), "{:?}", rig.logs("app"));
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    rig.runtime.purge_storage(&rig.key).unwrap();
    assert!(!volume.exists(), "purge deletes storage for good");
}

#[tokio::test]
async fn a_started_job_runs_to_completion_during_a_suspend() {
    let rig = Rig::new();
    let mut job = sh(
        "migrate",
        ComponentKind::Job,
        "echo started; sleep 1; echo finished > \"$PERGOLA_STORAGE_OUT/marker\"; exit 0",
    );
    job.port = None;
    job.storage = vec!["out".into()];
    let web = sh("web", ComponentKind::Service, "exec sleep 60");
    rig.runtime.start(rig.spec(vec![job, web]), GRACE).await.unwrap();
    rig.wait_for("the job to start", |r| r.logs("migrate").contains(&"stdout: started".to_owned())).await;
    let report = rig.runtime.stop(&rig.key, Duration::from_millis(200), StopMode::Suspend).await;
    assert_eq!(report.terminated, ["web"], "only services are stopped");
    let marker = rig.runtime.storage_dir(&rig.key, "out").join("marker");
    assert!(!marker.exists(), "the job is still running after the suspend");
    rig.wait_for("the job to complete", |r| r.state("migrate").unwrap().0 == ComponentState::Completed).await;
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "finished\n");
    assert_eq!(rig.runtime.status(&rig.key).iter().find(|c| c.name == "migrate").unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn stopping_leaves_no_orphan_processes() {
    let rig = Rig::new();
    let parent = sh("parent", ComponentKind::Service, "sleep 300 & echo \"child=$!\"; wait");
    rig.runtime.start(rig.spec(vec![parent]), GRACE).await.unwrap();
    rig.wait_for("the grandchild", |r| r.logs("parent").iter().any(|l| l.starts_with("stdout: child="))).await;
    let data = rig.dir.join("data");
    rig.wait_for("the grandchild's process", |_| common::running(&data, "sleep 300").len() == 1).await;
    let child = common::running(&data, "sleep 300");
    assert!(alive(child[0]));
    rig.runtime.stop(&rig.key, Duration::from_secs(2), StopMode::Suspend).await;
    rig.wait_for("the grandchild to be gone", |_| !alive(child[0])).await;
    rig.wait_for("nothing of the component to be left", |_| common::marked(&data).is_empty()).await;
}

#[tokio::test]
async fn cron_runs_on_schedule_only_while_the_stage_runs() {
    use std::sync::atomic::{AtomicI64, Ordering};
    // Every check is one minute later; checks happen every 50 ms.
    let minute = Arc::new(AtomicI64::new(0));
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let clock = minute.clone();
    let mut rig = Rig::new();
    rig.runtime = LocalRuntime::new(rig.dir.join("data")).with_cron_timing(Duration::from_millis(50), move || {
        start + chrono::Duration::minutes(clock.fetch_add(1, Ordering::SeqCst))
    });
    let mut cron = sh("tick", ComponentKind::Cron, "echo run >> \"$PERGOLA_STORAGE_OUT/runs\"");
    cron.port = None;
    cron.schedule = Some("*/2 * * * *".into()); // every other check
    cron.storage = vec!["out".into()];
    let runs = rig.runtime.storage_dir(&rig.key, "out").join("runs");
    let count = || std::fs::read_to_string(&runs).map(|s| s.lines().count()).unwrap_or(0);
    rig.runtime.start(rig.spec(vec![cron.clone()]), GRACE).await.unwrap();
    rig.wait_for("three runs", |_| count() >= 3).await;
    assert!(rig.logs("tick").iter().any(|l| l == "pergola: scheduled: */2 * * * *"));
    assert_ne!(
        rig.state("tick").unwrap().0,
        ComponentState::Stopped,
        "scheduled, running or completed while the stage runs"
    );
    let checks_so_far = minute.load(Ordering::SeqCst);
    assert!(count() as i64 <= checks_so_far / 2 + 1, "it fires on even minutes only");

    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let a run that had started finish
    let suspended_at = count();
    assert_eq!(rig.state("tick").unwrap().0, ComponentState::Stopped);
    tokio::time::sleep(Duration::from_millis(600)).await; // about 12 checks
    assert_eq!(count(), suspended_at, "no runs while suspended");

    rig.runtime.start(rig.spec(vec![cron]), GRACE).await.unwrap();
    rig.wait_for("runs after resuming", |_| count() > suspended_at).await;
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
}

#[tokio::test]
async fn services_get_free_ports_and_workers_none() {
    let rig = Rig::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().port();
    let preferred = free_port();
    let server = |name: &str, port: Option<u16>| {
        let mut c = sh(name, ComponentKind::Service, "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1");
        c.port = port;
        c.health = Some(pergola_domain::manifest::HealthCheck { path: "/".into(), interval_secs: 1 });
        c
    };
    let worker = sh("queue", ComponentKind::Worker, "echo port=${PORT:-none}; exec sleep 60");
    let spec =
        rig.spec(vec![server("blocked", Some(taken)), server("auto", None), server("wanted", Some(preferred)), worker]);
    rig.runtime.start(spec.clone(), GRACE).await.unwrap();
    for name in ["blocked", "auto", "wanted"] {
        rig.wait_for(name, |r| r.state(name).unwrap().1 == Health::Healthy).await;
    }
    let port = |name: &str| rig.runtime.status(&rig.key).into_iter().find(|c| c.name == name).unwrap().port;
    assert_eq!(port("wanted"), Some(preferred), "the manifest's port when it is free");
    assert!(port("blocked").is_some_and(|p| p != taken), "another port when it is taken");
    assert!(rig.logs("blocked").iter().any(|l| l.contains(&format!("port {taken} is in use"))));
    let ports: std::collections::HashSet<_> = ["blocked", "auto", "wanted"].map(|n| port(n).unwrap()).into();
    assert_eq!(ports.len(), 3);
    // A worker has no port, restarts like a service.
    rig.wait_for("the worker's output", |r| r.logs("queue").iter().any(|l| l.starts_with("stdout:"))).await;
    assert!(rig.logs("queue").contains(&"stdout: port=none".to_owned()), "{:?}", rig.logs("queue"));
    assert_eq!((port("queue"), rig.state("queue").unwrap().0), (None, ComponentState::Running));
    // A second stage running the same build does not collide with the first.
    let other = StageKey { project: "shop".into(), stage: "dev".into() };
    rig.runtime.start(StageSpec { key: other.clone(), ..spec.clone() }, GRACE).await.unwrap();
    let wanted_there = rig.runtime.status(&other).into_iter().find(|c| c.name == "wanted").unwrap().port.unwrap();
    assert_ne!(wanted_there, preferred);
    let (auto, blocked) = (port("auto"), port("blocked"));
    let report = rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    assert!(report.terminated.contains(&"queue".to_owned()), "workers are stopped like services");
    // A resume gives each service the port it had when that one is still free.
    rig.runtime.start(spec, GRACE).await.unwrap();
    assert_eq!((port("auto"), port("blocked"), port("wanted")), (auto, blocked, Some(preferred)));
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    rig.runtime.stop(&other, GRACE, StopMode::Suspend).await;
    drop(busy);
}

/// A server killed without a chance to stop its components (SIGKILL, power cut) leaves them
/// running; the next server with the same data directory stops them before it starts anything.
#[test]
fn processes_left_by_a_killed_server_are_stopped_at_the_next_start() {
    let rig = Rig::new();
    let data = rig.dir.join("data");
    let bystander_dir = rig.dir.join("other");
    let old_server = tokio::runtime::Runtime::new().unwrap();
    let old = LocalRuntime::new(&data);
    let bystander = LocalRuntime::new(&bystander_dir);
    let parent = sh("parent", ComponentKind::Service, "sleep 300 & echo \"child=$!\"; wait");
    let (pid, _, other_pid) = old_server.block_on(async {
        old.start(rig.spec(vec![parent.clone()]), GRACE).await.unwrap();
        bystander.start(rig.spec(vec![parent]), GRACE).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let logs: Vec<_> = old.logs(&rig.key, "parent").into_iter().map(|l| l.line).collect();
            let child = logs.iter().find_map(|l| l.strip_prefix("child="));
            let pid = old.status(&rig.key)[0].pid;
            let other_pid = bystander.status(&rig.key)[0].pid;
            let exec = common::running(&data, "sleep 300").len() == 1;
            if let (Some(child), Some(pid), Some(other_pid), true) = (child, pid, other_pid, exec) {
                break (pid as i32, child.parse::<i32>().unwrap(), other_pid as i32);
            }
            assert!(Instant::now() < deadline, "the component did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // The old server is gone without stopping anything.
    std::mem::forget(old);
    std::mem::forget(old_server);
    let child = common::running(&data, "sleep 300");
    assert!(alive(pid) && child.len() == 1 && alive(child[0]));
    let child = child[0];

    let new_server = tokio::runtime::Runtime::new().unwrap();
    let fresh = LocalRuntime::new(&data);
    let reaped = new_server.block_on(fresh.reap_orphans(Duration::from_secs(2)));
    assert_eq!(reaped, 1, "one process group");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) || alive(child) {
        assert!(Instant::now() < deadline, "orphans still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(other_pid), "another data directory's processes are left alone");
    assert_eq!(new_server.block_on(fresh.reap_orphans(Duration::from_secs(2))), 0);
    new_server.block_on(bystander.shutdown(Duration::from_secs(2)));
}

/// With a relative data directory (the server's default is `./data`), a component, which runs
/// in its build's directory, still gets storage and temporary directories that exist: every
/// path handed to it is absolute.
#[tokio::test]
async fn a_relative_data_directory_still_gives_components_absolute_paths() {
    let rig = Rig::new();
    // rig.dir/relative, written relative to the test's working directory.
    let cwd = std::env::current_dir().unwrap();
    assert!(rig.dir.is_absolute() && !rig.dir.starts_with(&cwd));
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative = up.join(rig.dir.strip_prefix("/").unwrap()).join("relative");
    assert!(relative.is_relative());
    // The build's directory, from where that relative path leads elsewhere.
    let build = rig.dir.join(cwd.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&build).unwrap();
    let runtime = LocalRuntime::new(&relative);
    let mut job = sh(
        "writer",
        ComponentKind::Job,
        "echo \"storage=$PERGOLA_STORAGE_DATA tmp=$TMPDIR\"; echo kept > \"$PERGOLA_STORAGE_DATA/file\" \
         && echo scratch > \"$TMPDIR/file\" && cp \"$TMPDIR/file\" \"$PERGOLA_STORAGE_DATA/from-tmp\"",
    );
    job.storage = vec!["data".into()];
    runtime.start(StageSpec { workdir: build, ..rig.spec(vec![job]) }, GRACE).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = runtime.status(&rig.key).pop().unwrap();
        if status.state == ComponentState::Completed {
            break status;
        }
        assert!(Instant::now() < deadline, "the job did not complete: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let logs: Vec<String> = runtime.logs(&rig.key, "writer").into_iter().map(|l| l.line).collect();
    assert_eq!(status.exit_code, Some(0), "{logs:?}");
    let line = logs.iter().find(|l| l.starts_with("storage=")).unwrap();
    let (storage, tmp) = line.strip_prefix("storage=").unwrap().split_once(" tmp=").unwrap();
    assert!(PathBuf::from(storage).is_absolute() && PathBuf::from(tmp).is_absolute(), "{line}");
    let volume = rig.dir.join("relative/storage/shop/qa/data");
    assert_eq!(std::fs::read_to_string(volume.join("file")).unwrap(), "kept\n");
    assert_eq!(std::fs::read_to_string(volume.join("from-tmp")).unwrap(), "scratch\n");
}

/// A job that honours SIGTERM, and one that ignores it (as do its children).
fn long_jobs() -> Vec<ComponentSpec> {
    vec![
        sh(
            "polite",
            ComponentKind::Job,
            "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done",
        ),
        sh("stubborn", ComponentKind::Job, "trap '' TERM; echo started; while :; do sleep 0.1; done"),
    ]
}

#[tokio::test]
async fn a_delete_or_a_server_shutdown_stops_running_jobs_and_kills_those_ignoring_sigterm() {
    for sandbox in [None, Some(Sandbox::Off)] {
        let mut rig = Rig::new();
        if let Some(sandbox) = sandbox {
            rig.runtime = LocalRuntime::new(rig.data()).with_sandbox(sandbox);
        }
        jobs_are_stopped_by_a_delete_and_a_shutdown(rig).await;
    }
}

async fn jobs_are_stopped_by_a_delete_and_a_shutdown(rig: Rig) {
    let started = |r: &Rig| ["polite", "stubborn"].iter().all(|j| r.logs(j).contains(&"stdout: started".to_owned()));
    rig.runtime.start(rig.spec(long_jobs()), GRACE).await.unwrap();
    rig.wait_for("both jobs", started).await;
    let pids: Vec<u32> = rig.runtime.status(&rig.key).iter().map(|c| c.pid.unwrap()).collect();
    // A suspend lets them run; a delete (a halt) stops them: SIGTERM, the grace period, SIGKILL.
    let report = rig.runtime.stop(&rig.key, Duration::from_millis(100), StopMode::Suspend).await;
    assert_eq!(report, Default::default());
    assert_eq!(rig.state("polite").unwrap().0, ComponentState::Running);
    let begun = Instant::now();
    let report = rig.runtime.stop(&rig.key, Duration::from_millis(700), StopMode::Halt).await;
    assert!(begun.elapsed() >= Duration::from_millis(700), "the grace period is given");
    assert_eq!((report.terminated, report.killed), (vec!["polite".to_owned()], vec!["stubborn".to_owned()]));
    assert!(rig.logs("polite").contains(&"stdout: got TERM".to_owned()));
    assert!(rig.logs("stubborn").iter().any(|l| l.ends_with("grace period; killed")), "{:?}", rig.logs("stubborn"));
    for pid in pids {
        assert!(!alive(pid as i32), "{pid} is gone");
    }
    assert!(common::marked(&rig.data()).is_empty(), "{:?}", common::marked(&rig.data()));
    assert_eq!(rig.state("stubborn").unwrap().0, ComponentState::Stopped);

    // A server shutdown stops a running job the same way.
    let other = rig.release(2, &[], long_jobs());
    rig.runtime.start(other, GRACE).await.unwrap();
    rig.wait_for("the jobs of release 2", started).await;
    rig.runtime.shutdown(Duration::from_millis(300)).await;
    assert!(common::marked(&rig.data()).is_empty(), "{:?}", common::marked(&rig.data()));
    assert!(!rig.data().join("tmp/shop/qa").exists(), "no temporary data is left");
}

#[tokio::test]
async fn a_job_runs_once_per_release_and_a_new_release_stops_the_old_run() {
    let mut job = sh(
        "migrate",
        ComponentKind::Job,
        "echo \"run $REL\" >> \"$PERGOLA_STORAGE_OUT/runs\"; echo started; [ \"$REL\" = 1 ] && exec sleep 30; exit 0",
    );
    job.storage = vec!["out".into()];
    let rig = Rig::new();
    let runs = rig.runtime.storage_dir(&rig.key, "out").join("runs");
    let runs = || std::fs::read_to_string(&runs).unwrap_or_default();
    let one = rig.release(1, &[("REL", "1")], vec![job.clone()]);
    rig.runtime.start(one.clone(), GRACE).await.unwrap();
    rig.wait_for("the job", |r| r.logs("migrate").contains(&"stdout: started".to_owned())).await;
    let pid = rig.runtime.status(&rig.key)[0].pid.unwrap();
    // Suspended and resumed while it runs: it goes on, and is not started a second time.
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    rig.runtime.start(one.clone(), GRACE).await.unwrap();
    assert_eq!(rig.runtime.status(&rig.key)[0].pid, Some(pid), "the same run, still tracked");
    assert_eq!(rig.state("migrate").unwrap().0, ComponentState::Running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(), "run 1\n");
    // A new release stops the old release's run, and runs its own.
    rig.runtime.start(rig.release(2, &[("REL", "2")], vec![job.clone()]), Duration::from_secs(2)).await.unwrap();
    assert!(!alive(pid as i32), "the run of release 1 was stopped");
    rig.wait_for("release 2's run", |r| r.state("migrate").unwrap().0 == ComponentState::Completed).await;
    assert_eq!(runs(), "run 1\nrun 2\n");
    // Started again (a resume, a restore), release 2 does not run it again, and says so.
    rig.runtime.stop(&rig.key, GRACE, StopMode::Halt).await;
    rig.runtime.start(rig.release(2, &[("REL", "2")], vec![job.clone()]), GRACE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(), "run 1\nrun 2\n");
    assert_eq!(rig.state("migrate").unwrap().0, ComponentState::Completed);
    // Nor does a server that restarts (a new runtime on the same data directory).
    rig.runtime.shutdown(GRACE).await;
    let mut rig = rig;
    rig.runtime = LocalRuntime::new(rig.data());
    rig.runtime.start(rig.release(2, &[("REL", "2")], vec![job.clone()]), GRACE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs(), "run 1\nrun 2\n");
    let status = rig.runtime.status(&rig.key);
    assert_eq!((status[0].state, status[0].exit_code), (ComponentState::Completed, Some(0)));
    assert!(
        rig.logs("migrate").iter().any(|l| l.starts_with("pergola: already ran for release 2 (exit code 0)")),
        "{:?}",
        rig.logs("migrate")
    );
    // Release 1 was stopped before it ended: it is not run again either, and says why.
    rig.runtime.start(one, GRACE).await.unwrap();
    assert!(rig.logs("migrate").iter().any(|l| l.starts_with("pergola: already ran for release 1 (stopped")));
    rig.runtime.shutdown(GRACE).await;
    assert_eq!(runs(), "run 1\nrun 2\n");
}

/// Sandboxed (the sandbox's PID namespace ends with the job's process) and not (its process
/// group is killed).
#[tokio::test]
async fn what_a_job_leaves_running_is_killed_when_it_ends() {
    for sandbox in [None, Some(Sandbox::Off)] {
        let mut rig = Rig::new();
        if let Some(sandbox) = sandbox {
            rig.runtime = LocalRuntime::new(rig.data()).with_sandbox(sandbox);
        }
        let job = sh("spawner", ComponentKind::Job, "sleep 300 & echo \"child=$!\"; exit 0");
        rig.runtime.start(rig.spec(vec![job]), GRACE).await.unwrap();
        rig.wait_for("the job to end", |r| r.state("spawner").unwrap().0 == ComponentState::Completed).await;
        assert!(rig.logs("spawner").iter().any(|l| l.starts_with("stdout: child=")));
        rig.wait_for("its child to be gone", |r| common::running(&r.data(), "sleep 300").is_empty()).await;
        assert!(common::marked(&rig.data()).is_empty());
    }
}

#[tokio::test]
async fn every_cron_run_gets_a_fresh_empty_tmpdir_deleted_after_it() {
    for sandbox in [None, Some(Sandbox::Off)] {
        cron_runs_get_a_fresh_empty_tmpdir(sandbox).await;
    }
}

async fn cron_runs_get_a_fresh_empty_tmpdir(sandbox: Option<Sandbox>) {
    use std::sync::atomic::{AtomicI64, Ordering};
    let minute = Arc::new(AtomicI64::new(0));
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let mut rig = Rig::new();
    let mut runtime = LocalRuntime::new(rig.data()).with_cron_timing(Duration::from_millis(50), move || {
        start + chrono::Duration::minutes(minute.fetch_add(1, Ordering::SeqCst))
    });
    if let Some(sandbox) = sandbox {
        runtime = runtime.with_sandbox(sandbox);
    }
    rig.runtime = runtime;
    // Each run leaves a file, and a child that writes another one after the run has ended.
    let mut cron = sh(
        "tick",
        ComponentKind::Cron,
        "echo \"seen=$(ls -A \"$TMPDIR\" | wc -l)\" >> \"$PERGOLA_STORAGE_OUT/seen\"; echo x > \"$TMPDIR/left\"; \
         (sleep 0.3; echo late > \"$TMPDIR/late\") & exit 0",
    );
    cron.schedule = Some("* * * * *".into());
    cron.storage = vec!["out".into()];
    let seen = rig.runtime.storage_dir(&rig.key, "out").join("seen");
    let seen = || std::fs::read_to_string(&seen).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    rig.runtime.start(rig.spec(vec![cron]), GRACE).await.unwrap();
    rig.wait_for("eight runs", |_| seen().len() >= 8).await;
    rig.runtime.stop(&rig.key, GRACE, StopMode::Suspend).await;
    rig.wait_for("the last run to end", |r| r.state("tick").unwrap().0 == ComponentState::Stopped).await;
    assert!(seen().iter().all(|l| l == "seen=0"), "{:?}", seen());
    assert!(common::running(&rig.data(), "sleep 0.3").is_empty());
    assert!(common::files_named(&rig.data().join("tmp"), "left").is_empty());
    assert!(common::files_named(&rig.data().join("tmp"), "late").is_empty());
}

#[tokio::test]
async fn purge_forgets_everything_of_the_stage_and_a_new_one_with_its_id_starts_afresh() {
    let rig = Rig::new();
    let mut web =
        sh("web", ComponentKind::Service, "echo \"gen=$GEN\"; echo x > \"$PERGOLA_STORAGE_DATA/f\"; exec sleep 60");
    web.storage = vec!["data".into()];
    let job = sh("once", ComponentKind::Job, "echo \"job gen=$GEN\"");
    let components = vec![web, job];
    rig.runtime.start(rig.release(1, &[("GEN", "old")], components.clone()), GRACE).await.unwrap();
    rig.wait_for("the old stage", |r| {
        r.logs("web").contains(&"stdout: gen=old".to_owned()) && r.state("once").unwrap().0 == ComponentState::Completed
    })
    .await;
    rig.runtime.stop(&rig.key, GRACE, StopMode::Halt).await;
    rig.runtime.forget(&rig.key).await.unwrap();
    assert!(rig.runtime.status(&rig.key).is_empty());
    assert!(rig.logs("web").is_empty() && rig.logs("once").is_empty());
    for dir in ["tmp", "jobs", "releases", "storage"] {
        assert!(!rig.data().join(dir).join("shop/qa").exists(), "{dir} of the stage is deleted");
    }
    // Forgetting twice is fine (a purge that is retried).
    rig.runtime.forget(&rig.key).await.unwrap();
    // A new stage with the same ID: nothing of the old one, and its release 1 runs its job.
    rig.runtime.start(rig.release(1, &[("GEN", "new")], components), GRACE).await.unwrap();
    rig.wait_for("the new stage", |r| {
        r.logs("web").contains(&"stdout: gen=new".to_owned()) && r.state("once").unwrap().0 == ComponentState::Completed
    })
    .await;
    let all: Vec<String> = ["web", "once"].iter().flat_map(|c| rig.logs(c)).collect();
    assert!(!all.iter().any(|l| l.contains("old") || l.contains("already ran")), "{all:?}");
    assert!(all.contains(&"stdout: job gen=new".to_owned()), "{all:?}");
    rig.runtime.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_start_failing_on_its_second_component_leaves_nothing_behind() {
    let rig = Rig::new();
    let web = sh("web", ComponentKind::Service, "exec sleep 60");
    let job = sh("migrate", ComponentKind::Job, "echo migrated");
    let mut bad = sh("tick", ComponentKind::Cron, "echo tick");
    bad.schedule = Some("every now and then".into());
    let mut good = bad.clone();
    good.schedule = Some("* * * * *".into());
    let nothing_left = |r: &Rig| {
        assert!(common::marked(&r.data()).is_empty(), "{:?}", common::marked(&r.data()));
        assert!(r.runtime.status(&r.key).iter().all(|c| c.state == ComponentState::Stopped));
        let tmp = r.data().join("tmp/shop/qa");
        assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0, "no temporary directory is left");
        assert!(!r.data().join("jobs/shop/qa/1/migrate").exists(), "the job is not recorded as run");
    };
    // A cron schedule that does not parse.
    let e = rig.runtime.start(rig.spec(vec![web.clone(), job.clone(), bad]), GRACE).await.unwrap_err();
    assert!(e.to_string().contains("component 'tick'"), "{e}");
    nothing_left(&rig);
    // A second component whose storage cannot be created (its stage's storage is a file).
    let mut stored = good.clone();
    stored.storage = vec!["out".into()];
    let storage = rig.data().join("storage/shop/qa");
    std::fs::create_dir_all(storage.parent().unwrap()).unwrap();
    std::fs::write(&storage, "not a directory").unwrap();
    let e = rig.runtime.start(rig.spec(vec![web.clone(), job.clone(), stored]), GRACE).await.unwrap_err();
    assert!(e.to_string().contains("component 'tick'"), "{e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    nothing_left(&rig);
    std::fs::remove_file(&storage).unwrap();
    // Fixed: it starts, and the job runs (it had not run).
    rig.runtime.start(rig.spec(vec![web, job, good]), GRACE).await.unwrap();
    rig.wait_for("the job", |r| r.logs("migrate").contains(&"stdout: migrated".to_owned())).await;
    rig.runtime.shutdown(GRACE).await;
}

#[tokio::test]
async fn a_duplicates_storage_is_a_copy_of_every_volume_with_modes_and_links() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    let copy = StageKey { project: "shop".into(), stage: "qa-copy".into() };
    // Nothing to copy: fine, and nothing is made.
    rig.runtime.copy_storage(&rig.key, &copy).await.unwrap();
    assert!(!rig.runtime.storage_dir(&copy, "data").exists());
    let data = rig.runtime.storage_dir(&rig.key, "data");
    std::fs::create_dir_all(data.join("orders")).unwrap();
    std::fs::write(data.join("orders/1.json"), "{\"id\": 1}").unwrap();
    std::fs::write(data.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(data.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("orders/1.json", data.join("latest")).unwrap();
    std::fs::create_dir_all(rig.runtime.storage_dir(&rig.key, "cache")).unwrap();
    rig.runtime.copy_storage(&rig.key, &copy).await.unwrap();
    let copied = rig.runtime.storage_dir(&copy, "data");
    assert_eq!(std::fs::read_to_string(copied.join("orders/1.json")).unwrap(), "{\"id\": 1}");
    assert_eq!(std::fs::metadata(copied.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o750);
    assert_eq!(std::fs::read_link(copied.join("latest")).unwrap(), std::path::Path::new("orders/1.json"));
    assert!(rig.runtime.storage_dir(&copy, "cache").is_dir(), "empty volumes too");
    // The copy is independent of the source.
    std::fs::write(data.join("orders/1.json"), "changed").unwrap();
    assert_eq!(std::fs::read_to_string(copied.join("orders/1.json")).unwrap(), "{\"id\": 1}");
    // A target with storage already is refused and kept as it was.
    let e = rig.runtime.copy_storage(&rig.key, &copy).await.unwrap_err();
    assert!(e.to_string().contains("cannot copy the stage's storage"), "{e}");
    assert_eq!(std::fs::read_to_string(copied.join("orders/1.json")).unwrap(), "{\"id\": 1}");
}
