//! The `pergola` binary against a live server that runs stages (the local runtime, sandboxed):
//! a build uploaded from a directory runs from the server's copy once the directory is gone, and
//! deploying an earlier build again (a rollback) runs its bytes, whatever the client has now.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Live {
    url: String,
    token: String,
    /// The runtime's data directory (stages' storage under `storage/`).
    data: PathBuf,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let env = pergola_core::testing::sqlite_env().await;
                let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-runtime-{}", std::process::id()));
                let local = std::sync::Arc::new(pergola_runtime::LocalRuntime::new(&data));
                let services = env
                    .services
                    .with_clock(std::sync::Arc::new(pergola_core::SystemClock))
                    .with_runtime(local.clone(), Duration::from_secs(2));
                let token = env.as_admin(&services).create_token("cli-runtime", None, None).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                tx.send(Live { url, token: token.token, data }).unwrap();
                axum::serve(
                    listener,
                    pergola_api::router(services, pergola_api::auth::SessionCookie { secure: false }),
                )
                .await
                .unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

fn pergola(args: &[&str]) -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-runtime-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::cargo_bin("pergola").unwrap();
    cmd.env("PERGOLA_URL", &live().url)
        .env("PERGOLA_TOKEN", &live().token)
        .env("XDG_CONFIG_HOME", &home)
        .env("HOME", &home)
        .args(args);
    cmd
}

/// A fresh build directory `name` (under cargo's temp dir) holding `files`.
fn build_from(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

/// A build directory whose worker writes `version` (from the build's own file) into its storage.
fn build_dir(version: &str) -> PathBuf {
    build_from(
        &format!("cli-runtime-build-{version}"),
        &[
            (
                "pergola.toml",
                "[[component]]\nname = \"worker\"\nkind = \"worker\"\ncommand = \"sh\"\nargs = [\"run.sh\"]\nstorage = [\"out\"]\n",
            ),
            ("run.sh", "cat version.txt > \"$PERGOLA_STORAGE_OUT/version\"\nexec sleep 600\n"),
            ("version.txt", &format!("{version}\n")),
        ],
    )
}

/// Waits until the stage's worker has written `version`.
fn wait_for_version(version: &str) {
    let file = live().data.join("storage/live/qa/out/version");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&file).ok().as_deref() != Some(&format!("{version}\n")) {
        assert!(Instant::now() < deadline, "the worker never wrote {version}: {:?}", std::fs::read_to_string(&file));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_uploaded_build_runs_once_its_directory_is_gone_and_a_rollback_runs_its_own_bytes() {
    if let Err(why) = pergola_runtime::Sandbox::detect() {
        eprintln!("SKIPPED: the sandbox cannot run on this machine: {why}");
        return;
    }
    pergola(&["create", "project", "live"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "live"]).assert().success();
    // Build 1 uploaded, its directory deleted, then deployed: it runs.
    let dir = build_dir("v1");
    pergola(&["create", "build", "--dir", dir.to_str().unwrap(), "-p", "live"]).assert().success();
    std::fs::remove_dir_all(&dir).unwrap();
    pergola(&["deploy", "1", "-s", "qa", "-p", "live"]).assert().success();
    wait_for_version("v1");
    // The client's files change: build 2 runs them.
    let dir = build_dir("v2");
    pergola(&["create", "build", "--dir", dir.to_str().unwrap(), "-p", "live"]).assert().success();
    pergola(&["deploy", "2", "-s", "qa", "-p", "live"]).assert().success();
    wait_for_version("v2");
    // Build 1 again (a rollback) runs build 1's bytes, not what the client has now.
    std::fs::write(dir.join("version.txt"), "v3\n").unwrap();
    pergola(&["deploy", "1", "-s", "qa", "-p", "live"]).assert().success();
    wait_for_version("v1");
    pergola(&["suspend", "stage", "qa", "-p", "live"]).assert().success();
    let _ = std::fs::remove_dir_all(dir);
}

/// `pergola logs`: the last lines with control characters escaped (a component cannot drive
/// the reader's terminal), `--since`, and `-f` printing new lines as they come.
#[test]
fn pergola_logs_prints_escaped_lines_and_follows_new_ones() {
    use std::io::BufRead;
    if let Err(why) = pergola_runtime::Sandbox::detect() {
        eprintln!("SKIPPED: the sandbox cannot run on this machine: {why}");
        return;
    }
    pergola(&["create", "project", "logs"]).assert().success();
    pergola(&["create", "stage", "dev", "--type", "dev", "-p", "logs"]).assert().success();
    let dir = build_from(
        "cli-logs-build",
        &[
            ("pergola.toml", "[[component]]\nname = \"talker\"\nkind = \"worker\"\ncommand = \"sh\"\nargs = [\"talk.sh\"]\n"),
            (
                "talk.sh",
                "echo hello\nprintf '\\033[2J\\033]0;pwned\\007cleared\\n'\necho oops >&2\ni=0\nwhile true; do i=$((i+1)); echo \"tick $i\"; sleep 0.3; done\n",
            ),
        ],
    );
    pergola(&["create", "build", "--dir", dir.to_str().unwrap(), "-p", "logs"]).assert().success();
    pergola(&["deploy", "1", "-s", "dev", "-p", "logs"]).assert().success();
    let deadline = Instant::now() + Duration::from_secs(20);
    let printed = loop {
        let out = pergola(&["logs", "talker", "-s", "dev", "-p", "logs", "-n", "500"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        if text.contains("tick 2") {
            break text;
        }
        assert!(Instant::now() < deadline, "no output: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(printed.lines().any(|l| l.ends_with(" hello")), "{printed}");
    assert!(printed.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}cleared"), "{printed}");
    assert!(!printed.bytes().any(|b| b == 0x1b || b == 0x07), "a raw control character reached the terminal");
    assert!(printed.lines().any(|l| l.ends_with(" ! oops")), "stderr is marked: {printed}");
    // In the future: nothing yet.
    let later =
        pergola(&["logs", "talker", "-s", "dev", "-p", "logs", "--since", "2999-01-01T00:00:00Z"]).output().unwrap();
    assert!(later.status.success() && later.stdout.is_empty());
    let bad = pergola(&["logs", "talker", "-s", "dev", "-p", "logs", "--since", "yesterday"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("since must be an age"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Followed: the last line first, then new ones as they are printed, in order.
    let mut follow = std::process::Command::new(assert_cmd::cargo::cargo_bin("pergola"))
        .env("PERGOLA_URL", &live().url)
        .env("PERGOLA_TOKEN", &live().token)
        .env("XDG_CONFIG_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-runtime-home"))
        .args(["logs", "talker", "-s", "dev", "-p", "logs", "-f", "-n", "1", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut ticks = Vec::new();
    while ticks.len() < 5 {
        let line: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let text = line["line"].as_str().unwrap().to_owned();
        let n: u64 = text.strip_prefix("tick ").unwrap().parse().unwrap();
        ticks.push((n, line["seq"].as_u64().unwrap()));
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(ticks.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1), "in order, none missed: {ticks:?}");
    pergola(&["suspend", "stage", "dev", "-p", "logs"]).assert().success();
    let _ = std::fs::remove_dir_all(dir);
}

/// `pergola suspend` of a stage whose component ignores SIGTERM waits — following the stage's
/// live stream — until the grace period has passed and the component was killed, then says the
/// stage is suspended; `--no-wait` answers at once that it is suspending.
#[test]
fn suspend_waits_for_a_stubborn_component_and_no_wait_does_not() {
    if let Err(why) = pergola_runtime::Sandbox::detect() {
        eprintln!("SKIPPED: the sandbox cannot run on this machine: {why}");
        return;
    }
    pergola(&["create", "project", "stubborn"]).assert().success();
    let p = ["-p", "stubborn"];
    let dir = build_from(
        "cli-runtime-build-stubborn",
        &[
            (
                "pergola.toml",
                "[[component]]\nname = \"worker\"\nkind = \"worker\"\ncommand = \"sh\"\nargs = [\"run.sh\"]\n",
            ),
            ("run.sh", "trap '' TERM\necho started\nwhile :; do sleep 0.1; done\n"),
        ],
    );
    pergola(&[&["create", "build", "--dir", dir.to_str().unwrap()][..], &p].concat()).assert().success();
    for stage in ["dev", "qa"] {
        pergola(&[&["create", "stage", stage, "--type", "dev"][..], &p].concat()).assert().success();
        pergola(&[&["update", "stage", stage, "--grace", "2"][..], &p].concat()).assert().success();
        pergola(&[&["deploy", "1", "-s", stage][..], &p].concat()).assert().success();
    }
    let started = |stage: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = pergola(&[&["logs", "worker", "-s", stage][..], &p].concat()).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("started") {
                break;
            }
            assert!(Instant::now() < deadline, "the worker of {stage} never started");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    started("dev");
    started("qa");
    let asked = Instant::now();
    pergola(&[&["suspend", "stage", "dev"][..], &p].concat()).assert().success().stdout("Stage 'dev' suspended.\n");
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(10), "{took:?}");
    let asked = Instant::now();
    let out = pergola(&[&["suspend", "stage", "qa", "--no-wait"][..], &p].concat()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Stage 'qa' is suspending"), "{out:?}");
    assert!(asked.elapsed() < Duration::from_millis(1500));
    let _ = std::fs::remove_dir_all(dir);
}
