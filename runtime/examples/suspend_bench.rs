//! Benchmark (not a test): how long a suspend takes for 10 services that honour SIGTERM, and
//! for 10 that ignore it with a 2 s grace period.
//!
//! `cargo run --release -p pergola-runtime --example suspend_bench`

use pergola_domain::{ComponentKind, ComponentSpec};
use pergola_runtime::{LocalRuntime, Runtime, StageKey, StageSpec, StopMode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn service(i: usize, script: &str) -> ComponentSpec {
    ComponentSpec {
        name: format!("svc-{i}"),
        kind: ComponentKind::Service,
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        port: Some(1),
        schedule: None,
        health: None,
        storage: vec![],
        env: BTreeMap::new(),
    }
}

async fn measure(runtime: &LocalRuntime, stage: &str, script: &str, grace: Duration, rounds: usize) -> Vec<Duration> {
    let key = StageKey { project: "bench".into(), stage: stage.into() };
    let mut times = Vec::new();
    for _ in 0..rounds {
        let spec = StageSpec {
            key: key.clone(),
            release: 1,
            components: (0..10).map(|i| service(i, script)).collect(),
            config: BTreeMap::new(),
            workdir: std::env::temp_dir(),
        };
        runtime.start(spec, grace).await.unwrap();
        // Let every process install its signal handling.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let report = runtime.stop(&key, grace, StopMode::Suspend).await;
        times.push(started.elapsed());
        assert_eq!(report.terminated.len() + report.killed.len(), 10);
    }
    times
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
    let runtime = LocalRuntime::new(&dir);
    let polite = "trap 'exit 0' TERM; while true; do sleep 0.05; done";
    let stubborn = "trap '' TERM; while true; do sleep 0.05; done";
    summary(
        "suspend, 10 services honouring SIGTERM (grace 60 s)",
        measure(&runtime, "polite", polite, Duration::from_secs(60), 10).await,
    );
    summary(
        "suspend, 10 services ignoring SIGTERM (grace 2 s)",
        measure(&runtime, "stubborn", stubborn, Duration::from_secs(2), 3).await,
    );
    let _ = std::fs::remove_dir_all(dir);
}
