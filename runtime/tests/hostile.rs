//! The hostile example build (`examples/hostile`) deployed next to a healthy stage, with real
//! processes: every attack it makes fails or is contained, the healthy stage keeps running, and
//! the server's memory stays bounded. The same attacks made without the sandbox succeed, so
//! these checks can fail.

mod common;

use pergola_domain::{parse_manifest, ComponentKind, ComponentSpec, ResourceLimits};
use pergola_runtime::{
    ComponentState, LocalRuntime, NetworkGuard, Runtime, Sandbox, StageKey, StageSpec, StopMode, MAX_LINE_BYTES,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECRET: &str = "VICTIM-TOKEN-9f2c";

/// The tests run one at a time: one's fork bomb and flood would slow the other's scan of every
/// process's environment past its wait (and count in its memory readings).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Rig {
    runtime: LocalRuntime,
    dir: PathBuf,
    server: PathBuf,
    /// A copy of examples/hostile.
    build: PathBuf,
    /// A service of the machine's own, on 127.0.0.1 (as its database would be).
    machine: std::net::TcpListener,
    /// A free port that is nobody's.
    spare_port: u16,
}

impl Rig {
    fn new(sandbox: bool) -> Option<Self> {
        if let Err(why) = Sandbox::detect() {
            eprintln!("SKIPPED: the sandbox cannot run on this machine: {why}");
            return None;
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("pergola-hostile-{}-{nanos}", std::process::id()));
        let (server, build) = (dir.join("server"), dir.join("build"));
        std::fs::create_dir_all(&server).unwrap();
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(server.join("pergola.db"), "DATABASE-CONTENT").unwrap();
        std::fs::write(server.join("secret.key"), "SECRET-KEY-CONTENT").unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hostile");
        for file in ["pergola.toml", "hostile.sh"] {
            std::fs::copy(example.join(file), build.join(file)).unwrap();
        }
        let runtime = LocalRuntime::new(server.join("runtime")).hiding(&server);
        let runtime = if sandbox { runtime } else { runtime.with_sandbox(Sandbox::Off) };
        let machine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let spare_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Some(Rig { runtime, dir, server, build, machine, spare_port })
    }

    fn data(&self) -> PathBuf {
        self.server.join("runtime")
    }

    /// The healthy PROD stage: a service holding a secret, with a file in its storage.
    async fn start_victim(&self) -> PathBuf {
        let key = StageKey::new("shop", "prod");
        let volume = self.runtime.storage_dir(&key, "data");
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(volume.join("orders.csv"), "PROD-ORDERS").unwrap();
        let web = ComponentSpec {
            name: "web".into(),
            kind: ComponentKind::Service,
            command: "sh".into(),
            image: None,
            args: vec!["-c".into(), "echo up; exec python3 -m http.server \"$PORT\" --bind 127.0.0.1".into()],
            port: None,
            schedule: None,
            health: None,
            storage: vec!["data".into()],
            env: BTreeMap::new(),
        };
        let config = BTreeMap::from([("API_TOKEN".to_owned(), SECRET.to_owned())]);
        let spec = StageSpec {
            key,
            release: 1,
            components: vec![web],
            config,
            workdir: self.build.clone(),
            limits: ResourceLimits::default(),
            stage_type: pergola_domain::StageType::Dev,
        };
        self.runtime.start(spec, Duration::from_secs(5)).await.unwrap();
        self.wait_for("the victim", |r| r.logs("prod", "web").contains(&"up".to_owned())).await;
        // Its service listens (a refused connection would look like a denied one).
        self.wait_for("the victim's service", |r| {
            let port = r.runtime.status(&StageKey::new("shop", "prod")).into_iter().find_map(|c| c.port);
            port.is_some_and(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
        })
        .await;
        volume
    }

    /// The victim's service port and the machine's own service (a listener of the test).
    fn targets_to_connect(&self) -> Vec<u16> {
        let victim = self.runtime.status(&StageKey::new("shop", "prod")).into_iter().find_map(|c| c.port);
        victim.into_iter().chain([self.machine.local_addr().unwrap().port()]).collect()
    }

    /// The hostile build on the DEV stage, with `only` of its components (all when empty).
    async fn start_hostile(&self, victim_volume: &Path, only: &[&str]) {
        let manifest = parse_manifest(&std::fs::read_to_string(self.build.join("pergola.toml")).unwrap()).unwrap();
        let components =
            manifest.components.into_iter().filter(|c| only.is_empty() || only.contains(&c.name.as_str())).collect();
        let server = self.server.display();
        let config = BTreeMap::from([
            (
                "TARGET_READ".to_owned(),
                format!("{server}/pergola.db {server}/secret.key {}/orders.csv", victim_volume.display()),
            ),
            ("TARGET_WRITE".to_owned(), format!("{} {}", victim_volume.display(), self.build.display())),
            ("SNOOP_A".to_owned(), SECRET[..7].to_owned()),
            ("SNOOP_B".to_owned(), SECRET[7..].to_owned()),
            ("FLOOD_MB".to_owned(), "200".to_owned()),
            (
                "TARGET_CONNECT".to_owned(),
                self.targets_to_connect().iter().map(u16::to_string).collect::<Vec<_>>().join(" "),
            ),
            ("TARGET_LISTEN".to_owned(), self.spare_port.to_string()),
        ]);
        let limits = ResourceLimits { memory_mib: 256, processes: 64, ..pergola_domain::LimitsPolicy::default().dev };
        let spec = StageSpec {
            key: StageKey::new("shop", "dev"),
            release: 1,
            components,
            config,
            workdir: self.build.clone(),
            limits,
            stage_type: pergola_domain::StageType::Dev,
        };
        self.runtime.start(spec, Duration::from_secs(1)).await.unwrap();
    }

    fn logs(&self, stage: &str, component: &str) -> Vec<String> {
        let logs = self.runtime.logs(&StageKey::new("shop", stage), component).into_iter();
        logs.filter(|l| l.stream != "pergola").map(|l| l.line).collect()
    }

    fn state(&self, stage: &str, component: &str) -> Option<ComponentState> {
        self.runtime.status(&StageKey::new("shop", stage)).into_iter().find(|c| c.name == component).map(|c| c.state)
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_line(&self, component: &str, line: &str) {
        self.wait_for(&format!("{component}: {line}"), |r| r.logs("dev", component).iter().any(|l| l == line)).await;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB");
    kb.trim().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn the_hostile_build_is_contained_and_the_other_stage_keeps_running() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(rig) = Rig::new(true) else { return };
    let volume = rig.start_victim().await;
    let before = rss();
    rig.start_hostile(&volume, &[]).await;

    // Reading the server's files, another stage's storage, other processes' environments.
    rig.wait_for_line("snoop", "snooped").await;
    let snoop = rig.logs("dev", "snoop");
    assert!(!snoop.iter().any(|l| l.contains("GOT IT")), "{snoop:#?}");
    assert_eq!(snoop.iter().filter(|l| l.ends_with(": denied")).count(), 3, "{snoop:#?}");

    // Writing into its release, the build, another stage's storage (its own storage works).
    rig.wait_for_line("vandal", "vandalised").await;
    let vandal = rig.logs("dev", "vandal");
    let got: Vec<_> = vandal.iter().filter(|l| l.ends_with("GOT IT")).collect();
    assert_eq!(got, ["write its own storage: GOT IT"], "{vandal:#?}");
    assert_eq!(std::fs::read_to_string(volume.join("orders.csv")).unwrap(), "PROD-ORDERS");
    assert!(!volume.join("owned").exists() && !rig.build.join("owned").exists());
    let script = std::fs::read_to_string(rig.build.join("hostile.sh")).unwrap();
    assert!(script.starts_with("#!/bin/sh"), "the build was changed");

    // 200 MB without a newline, then bytes that are not UTF-8: cut, shown lossily, bounded.
    rig.wait_for_line("flood", "flooded").await;
    let flood = rig.logs("dev", "flood");
    assert!(flood[0].starts_with("xxxx") && flood[0].ends_with("[line cut at 16 KiB]"), "{}", &flood[0][..40]);
    assert!(flood[0].len() <= MAX_LINE_BYTES + 64);
    assert!(flood.contains(&"\u{fffd}\u{fffd} not utf-8 \u{fffd}".to_owned()), "{flood:?}");
    assert_eq!(rig.state("dev", "flood"), Some(ComponentState::Running), "the flood did not kill it");
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "the server's memory grew by {} MiB", grown >> 20);

    // The machine's network: the other stage's service, the machine's own service, a port to
    // listen on (where the kernel has Landlock's network rules).
    rig.wait_for_line("prowl", "prowled").await;
    let prowl = rig.logs("dev", "prowl");
    if NetworkGuard::detect().restricts_tcp() {
        assert!(!prowl.iter().any(|l| l.contains("GOT IT")), "{prowl:#?}");
        assert_eq!(prowl.iter().filter(|l| l.ends_with(": denied")).count(), 3, "{prowl:#?}");
    }

    // A fork bomb, a process escaping with setsid, one ignoring SIGTERM.
    rig.wait_for_line("bomb", "bombing").await;
    rig.wait_for_line("escape", "escaped").await;
    rig.wait_for_line("stubborn", "ignoring SIGTERM").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bomb_processes = common::marked(&rig.data())
        .into_iter()
        .filter(|(pid, cmd)| common::stage_of(*pid).as_deref() == Some("dev") && cmd.contains("bomb"))
        .count();
    assert!(bomb_processes <= 64 + 1, "{bomb_processes} processes of the bomb");

    // Meanwhile the healthy stage runs on, its secret and its files untouched.
    assert_eq!(rig.state("prod", "web"), Some(ComponentState::Running));

    // A stop ends every process of the hostile stage within the grace period (1 s).
    let started = Instant::now();
    rig.runtime.stop(&StageKey::new("shop", "dev"), Duration::from_secs(1), StopMode::Halt).await;
    rig.wait_for("every hostile process to end", |r| common::of_stage(&r.data(), "dev") == 0).await;
    assert!(started.elapsed() < Duration::from_secs(10), "the stop took {:?}", started.elapsed());
    assert_eq!(rig.state("prod", "web"), Some(ComponentState::Running));
    assert!(rss().saturating_sub(before) < 64 << 20);
    rig.runtime.stop(&StageKey::new("shop", "prod"), Duration::from_secs(5), StopMode::Halt).await;
}

#[tokio::test]
async fn without_the_sandbox_the_same_attacks_succeed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(rig) = Rig::new(false) else { return };
    let volume = rig.start_victim().await;
    rig.start_hostile(&volume, &["snoop", "vandal"]).await;
    rig.wait_for_line("snoop", "snooped").await;
    let snoop = rig.logs("dev", "snoop");
    for target in ["pergola.db: GOT IT", "secret.key: GOT IT", "orders.csv: GOT IT"] {
        assert!(snoop.iter().any(|l| l.ends_with(target)), "{target} missing from {snoop:#?}");
    }
    assert!(snoop.iter().any(|l| l.starts_with("secret in /proc/")), "{snoop:#?}");
    rig.wait_for_line("vandal", "vandalised").await;
    assert!(volume.join("owned").exists(), "{:#?}", rig.logs("dev", "vandal"));
    rig.runtime.stop(&StageKey::new("shop", "dev"), Duration::from_secs(1), StopMode::Halt).await;
    rig.runtime.stop(&StageKey::new("shop", "prod"), Duration::from_secs(5), StopMode::Halt).await;
}
