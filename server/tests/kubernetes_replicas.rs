//! Two real server processes with the Kubernetes runtime on one PostgreSQL database, against
//! the fake API server of the runtime's own tests: the first to start does the background work
//! (purges), both answer, the stage runs once; SIGKILL the one doing the background work and
//! the other takes it over — a stage deleted afterwards is purged from the cluster.
//! (`--features kubernetes`; PostgreSQL as for the store tests.)

#[path = "../../kubernetes/tests/fake/mod.rs"]
mod fake;

mod common;

use common::{free_port, healthy};
use fake::Fake;
use pergola_core::services::{LEASE_RENEW, LEASE_TTL};
use pergola_core::testing::{postgres_admin_url, postgres_env, upload_manifest};
use pergola_domain::StageType;
use pergola_kubernetes::render::namespace;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST: &str = r#"
[[component]]
name = "web"
kind = "service"
command = "./shop"
port = 8080
"#;

/// The test environment's key for sealing secrets ([42; 32]), shared by both servers.
const SECRET_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";

async fn wait_for<F: FnMut() -> bool>(what: &str, within: Duration, mut done: F) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server process, killed (and waited for) when the test ends however it ends.
struct Server {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Server {
    fn start(dir: &Path, name: &str, database_url: &str, kubeconfig: &Path) -> Self {
        let (port, data, log) = (free_port(), dir.join(name), dir.join(format!("{name}.log")));
        std::fs::create_dir_all(&data).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pergola-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PERGOLA_DATA_DIR", &data)
            .env("DATABASE_URL", database_url)
            .env("PERGOLA_SECRET_KEY", SECRET_KEY)
            .env("PERGOLA_RUNTIME", "kubernetes")
            .env("KUBECONFIG", kubeconfig)
            .env("PERGOLA_PURGE_INTERVAL_SECS", "1")
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn took_background_work(&self) -> bool {
        self.said().contains("background work (purge, retention) taken")
    }

    fn gave_background_work_up(&self) -> bool {
        self.said().contains("background work (purge, retention) given up")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_doing_the_background_work_hands_it_to_the_other() {
    let fake = Fake::start().await;
    let env = postgres_env().await;
    let database = env.postgres_database().unwrap().to_owned();
    let (base, _) = postgres_admin_url().rsplit_once('/').map(|(b, d)| (b.to_owned(), d.to_owned())).unwrap();
    let database_url = format!("{base}/{database}");
    let dir = std::env::temp_dir().join(format!("pergola-kube-replicas-{database}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            fake.url
        ),
    )
    .unwrap();

    // Two stages with a release, deployed before any server ran: the first server to start
    // applies them (its reconcile).
    let admin = &env.admin;
    admin.create_project("Shop", Some("shop")).await.unwrap();
    let build = upload_manifest(admin, "shop", MANIFEST).await.unwrap();
    for stage in ["qa", "old"] {
        admin.create_stage("shop", stage, StageType::Qa, None).await.unwrap();
        admin.deploy("shop", stage, build.number).await.unwrap();
    }
    let web_pods = |stage: &str| {
        let ns = namespace("shop", stage);
        fake.all("pods")
            .into_iter()
            .filter(|p| p["metadata"]["namespace"] == ns.as_str() && p["status"]["phase"] == "Running")
            .count()
    };

    let mut first = Server::start(&dir, "first", &database_url, &kubeconfig);
    wait_for("the first server to answer", Duration::from_secs(60), || healthy(first.port)).await;
    wait_for("the first server to take the background work", Duration::from_secs(10), || first.took_background_work())
        .await;
    wait_for("both stages to run on the cluster", Duration::from_secs(20), || {
        web_pods("qa") == 1 && web_pods("old") == 1
    })
    .await;
    let second = Server::start(&dir, "second", &database_url, &kubeconfig);
    wait_for("the second server to answer", Duration::from_secs(60), || healthy(second.port)).await;
    let ready = common::request(second.port, "10.1.2.3", "GET", "/readyz", "");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // The second finds the work taken; a few renewals later the first still does it.
    wait_for("the second server to find the background work taken", Duration::from_secs(10), || {
        second.gave_background_work_up()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!second.took_background_work(), "{}", second.said());
    assert!(!first.gave_background_work_up(), "{}", first.said());
    assert_eq!((web_pods("qa"), web_pods("old")), (1, 1), "each stage runs once, whichever servers start");

    // SIGKILL: no lease given up. The second server takes the background work once the
    // first's lease has run out (10 s), and purges what is due.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = Instant::now();
    wait_for("the second server to take the background work over", Duration::from_secs(30), || {
        second.took_background_work()
    })
    .await;
    // The lease runs out 10 s after the first's last renewal (every 3 s); the second then
    // takes it at its next renewal.
    let bound = LEASE_TTL + LEASE_RENEW + Duration::from_secs(5);
    assert!(killed.elapsed() < bound, "taken over in {:?}", killed.elapsed());
    // Deleted long ago (the test's clock is days behind the servers'): due for purge.
    env.clock.advance(-chrono::Duration::days(60));
    admin.delete_stage("shop", "old").await.unwrap();
    let old_ns = namespace("shop", "old");
    wait_for("the second server to purge the deleted stage", Duration::from_secs(20), || {
        fake.get("namespaces", "", &old_ns).is_none()
    })
    .await;
    assert!(admin.list_stages("shop", true).await.unwrap().is_empty(), "purged from the database too");
    assert_eq!(web_pods("qa"), 1, "the other stage runs on");
    assert!(healthy(second.port));
    drop(second);
    drop(first);
    env.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}
