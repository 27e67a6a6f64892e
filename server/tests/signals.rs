//! The real server binary: SIGHUP shuts it down gracefully, stopping its stages (SIGTERM to
//! their components, within the grace), and a daemon a component double-forked away from its
//! process group is adopted by the server (a child subreaper) and ended with its stage. A
//! second server on the same database refuses to start (the local runtime belongs to one).

use pergola_core::{connect, Services, SystemClock};
use pergola_domain::wire::StageUpdate;
use pergola_domain::StageType;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{free_port, healthy};

const PASSWORD: &str = "correct horse battery";

/// The component: writes its pid, starts a daemon that escapes (setsid, its parent exits) and
/// ignores SIGTERM, and on SIGTERM notes that it was asked to stop and exits.
const SCRIPT: &str = r#"out="$PERGOLA_STORAGE_DATA"
trap 'echo stopped > "$out/stopped"; exit 0' TERM
( setsid sh -c 'trap "" TERM; echo $$ > "$0/daemon.pid.tmp"; mv "$0/daemon.pid.tmp" "$0/daemon.pid"; while :; do sleep 0.2; done' "$out" & )
echo $$ > "$out/web.pid"
while :; do sleep 0.1; done
"#;

const MANIFEST: &str = r#"version = "1.0.0"

[[component]]
name = "web"
kind = "service"
command = "sh"
args = ["run.sh"]
storage = ["data"]
"#;

/// The server's whole answer to `GET path`, asked by its address (empty when it does not answer).
fn get(port: u16, path: &str) -> String {
    common::request(port, &format!("10.1.2.3:{port}"), "GET", path, "")
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/proc/<pid>/stat`: (state, parent).
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    Some((rest.next()?.chars().next()?, rest.next()?.parse().ok()?))
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// When the test ends, passed or failed, nothing it started is left running: the server is
/// killed (and waited for), then the processes whose environment names the test's directory.
struct Cleanup {
    server: std::process::Child,
    dir: String,
    pids: Vec<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        for &pid in &self.pids {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if environ.windows(self.dir.len()).any(|w| w == self.dir.as_bytes()) {
                // SAFETY: kill(2) sends a signal; it touches no memory.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// A data directory whose database holds a running stage `shop/qa` (grace 2 s) with the
/// component above deployed: the server starts it again at start-up.
async fn prepared(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let build = dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("run.sh"), SCRIPT).unwrap();
    let store = connect(&format!("sqlite://{}/pergola.db", data.display())).await.unwrap();
    // Uploaded as every build is, into the data dir's artifacts (where the server keeps them).
    let artifacts = pergola_core::artifacts::Artifacts::new(data.join("artifacts"), Default::default());
    let services = Services::new(store, Arc::new(SystemClock)).with_artifacts(artifacts);
    services.prepare_first_run(Some(("admin", PASSWORD))).await.unwrap();
    let admin = services.acting(services.sign_in("admin", PASSWORD, "127.0.0.1").await.unwrap());
    admin.create_project("Shop", Some("shop")).await.unwrap();
    admin.create_stage("shop", "qa", StageType::Qa, None).await.unwrap();
    admin.update_stage("shop", "qa", StageUpdate { grace_secs: Some(2), ..Default::default() }).await.unwrap();
    let packed = pergola_core::artifacts::pack_dir(&build, MANIFEST).unwrap();
    let compression = pergola_core::artifacts::Compression::Gzip;
    let registered = admin.upload_build("shop", compression, None, &packed[..]).await.unwrap();
    admin.deploy("shop", "qa", registered.number).await.unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_the_server_gracefully_with_its_stages_and_their_escaped_daemons() {
    let dir = std::env::temp_dir().join(format!("pergola-signals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = prepared(&dir).await;
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let start = |port: u16, log: std::fs::File| {
        Command::new(env!("CARGO_BIN_EXE_pergola-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PERGOLA_DATA_DIR", &data)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("PERGOLA_ADMIN_USER", "admin")
            .env("PERGOLA_ADMIN_PASSWORD", PASSWORD)
            .env("PERGOLA_SANDBOX", "off")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let server = start(port, log);
    let server_pid = server.id();
    let mut cleanup = Cleanup { server, dir: dir.display().to_string(), pids: Vec::new() };
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();

    wait_for("the server to answer", Duration::from_secs(60), || healthy(port));
    let storage = data.join("runtime/storage/shop/qa/data");
    wait_for("the component and its daemon", Duration::from_secs(20), || {
        storage.join("web.pid").exists() && storage.join("daemon.pid").exists()
    });
    let (web, daemon) = (read_pid(&storage.join("web.pid")), read_pid(&storage.join("daemon.pid")));
    cleanup.pids.extend([web, daemon]);
    assert!(alive(web) && alive(daemon));
    wait_for("the daemon to be adopted by the server", Duration::from_secs(5), || {
        stat(daemon).is_some_and(|(_, parent)| parent == server_pid)
    });
    // Ready for requests, whatever name a load balancer asks by.
    let ready = get(port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready"), "{ready}");

    // A second server on the same database would run the same stages: it refuses to start,
    // saying which server holds them, and touches nothing of the first's.
    let second_log = dir.join("second.log");
    let mut second = start(free_port(), std::fs::File::create(&second_log).unwrap());
    let mut refused = None;
    wait_for("the second server to refuse to start", Duration::from_secs(30), || {
        refused = second.try_wait().unwrap();
        refused.is_some()
    });
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(!refused.unwrap().success(), "{said}");
    assert!(said.contains("Another Pergola server") && said.contains(&format!("pid {server_pid} ns ")), "{said}");
    assert!(alive(web) && alive(daemon) && healthy(port), "the first server's stage runs on");

    let hung_up = Instant::now();
    // SAFETY: kill(2) sends a signal to the child we started; it touches no memory.
    assert_eq!(unsafe { libc::kill(server_pid as libc::pid_t, libc::SIGHUP) }, 0);
    let mut status = None;
    wait_for("the server to exit", Duration::from_secs(15), || {
        status = cleanup.server.try_wait().unwrap();
        status.is_some()
    });
    let took = hung_up.elapsed();
    let log = log();
    assert!(status.unwrap().success(), "a graceful exit: {log}");
    assert!(log.contains("SIGHUP") && log.contains("shutting down"), "{log}");
    assert_eq!(std::fs::read_to_string(storage.join("stopped")).unwrap(), "stopped\n", "SIGTERM, then a clean exit");
    assert!(!alive(web), "the component is gone");
    assert!(!alive(daemon), "the escaped daemon ended with its stage: {log}");
    // The component left at once; the daemon ignoring SIGTERM got the rest of the 2 s grace.
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "{took:?}: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}
