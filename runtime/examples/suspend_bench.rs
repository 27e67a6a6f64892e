//! Benchmark (not a test): what the sandbox costs. For 10 services, with the bubblewrap sandbox
//! and without (`PERGOLA_SANDBOX=off`), each with its resource limits applied as the machine
//! allows: how long a start takes until every service has printed its first line, how long a
//! suspend takes when they honour SIGTERM, and when they ignore it with a 2 s grace period.
//!
//! `cargo run --release -p pergola-runtime --example suspend_bench`

use pergola_domain::{ComponentKind, ComponentSpec, ResourceLimits};
use pergola_runtime::{Enforcer, LocalRuntime, Runtime, Sandbox, StageKey, StageSpec, StopMode};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SERVICES: usize = 10;

fn service(i: usize, script: &str) -> ComponentSpec {
    ComponentSpec {
        name: format!("svc-{i}"),
        kind: ComponentKind::Service,
        command: "sh".into(),
        image: None,
        args: vec!["-c".into(), script.into()],
        port: Some(1),
        schedule: None,
        health: None,
        storage: vec![],
        env: BTreeMap::new(),
    }
}

/// `(start until every service printed "up", suspend)` per round.
async fn measure(
    runtime: &LocalRuntime,
    build: &Path,
    stage: &str,
    script: &str,
    grace: Duration,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let key = StageKey { project: "bench".into(), stage: stage.into() };
    let script = format!("echo up; {script}");
    let (mut starts, mut stops) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let spec = StageSpec {
            key: key.clone(),
            release: 1,
            components: (0..SERVICES).map(|i| service(i, &script)).collect(),
            config: BTreeMap::new(),
            workdir: build.to_path_buf(),
            limits: ResourceLimits::default(),
            stage_type: pergola_domain::StageType::Dev,
        };
        let started = Instant::now();
        runtime.start(spec, grace).await.unwrap();
        let up = |i: usize| runtime.logs(&key, &format!("svc-{i}")).iter().any(|l| l.line == "up");
        while !(0..SERVICES).all(up) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        starts.push(started.elapsed());
        // Let every process install its signal handling.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopping = Instant::now();
        let report = runtime.stop(&key, grace, StopMode::Suspend).await;
        stops.push(stopping.elapsed());
        assert_eq!(report.terminated.len() + report.killed.len(), SERVICES);
    }
    (starts, stops)
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: min {:.1} ms, median {:.1} ms, max {:.1} ms ({} rounds)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("pergola-bench-{}", std::process::id()));
    let build = dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    println!("limits: {}", Enforcer::detect().describe());
    let polite = "trap 'exit 0' TERM; while true; do sleep 0.05; done";
    let stubborn = "trap '' TERM; while true; do sleep 0.05; done";
    for (mode, sandbox) in [("sandboxed", None), ("unsandboxed", Some(Sandbox::Off))] {
        let runtime = LocalRuntime::new(dir.join(mode));
        let runtime = match sandbox {
            Some(s) => runtime.with_sandbox(s),
            None => runtime,
        };
        let (starts, stops) = measure(&runtime, &build, "polite", polite, Duration::from_secs(60), 10).await;
        summary(&format!("{mode}: start of {SERVICES} services until each printed a line"), starts);
        summary(&format!("{mode}: suspend, {SERVICES} services honouring SIGTERM (grace 60 s)"), stops);
        let (_, stops) = measure(&runtime, &build, "stubborn", stubborn, Duration::from_secs(2), 3).await;
        summary(&format!("{mode}: suspend, {SERVICES} services ignoring SIGTERM (grace 2 s)"), stops);
    }
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&dir).status();
    let _ = std::fs::remove_dir_all(dir);
}
