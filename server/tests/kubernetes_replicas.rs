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

/// The port share links name (the load balancer's, in front of both servers).
const SHARE_PORT: u16 = 8443;

/// The answer to `GET path` asked as `host` with the cookie header `cookie`.
fn get_with_cookie(port: u16, host: &str, path: &str, cookie: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let cookie = if cookie.is_empty() { String::new() } else { format!("Cookie: {cookie}\r\n") };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The value of the answer's header `name` (case as the server writes it, lower case).
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

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
            // Behind one load balancer, both name the share links by its port.
            .env("PERGOLA_SHARE_PORT", SHARE_PORT.to_string())
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

    // A share link's sign-in hand-off across the two servers (a load balancer without session
    // affinity): the code the first mints for a signed-in browser, the second exchanges — once.
    // A dashboard session of the administrator as of the servers' clock (the test's is not).
    use pergola_core::credentials::{new_secret, secret_hash, SecretKind};
    let secret = new_secret(SecretKind::Session);
    let store = env.services.store();
    let admin_user = store.get_user_by_name("admin").await.unwrap().unwrap();
    let now = chrono::Utc::now();
    let row = pergola_core::store::SessionRow {
        id_hash: secret_hash(&secret),
        user_id: admin_user.id,
        created_at: now,
        last_seen_at: now,
        address: None,
        parent: None,
    };
    assert!(store.insert_session(&row).await.unwrap());
    let cookie = format!("pergola_session={secret}");
    let share_host = format!("web.qa.shop.localhost:{SHARE_PORT}");
    let to = format!("/share-auth?to=http%3A//web.qa.shop.localhost%3A{SHARE_PORT}/orders");
    let vouched = get_with_cookie(first.port, &format!("127.0.0.1:{}", first.port), &to, &cookie);
    assert!(vouched.starts_with("HTTP/1.1 303"), "{vouched}");
    let location = header(&vouched, "location").unwrap().to_owned();
    let auth_path = location
        .strip_prefix(&format!("http://{share_host}"))
        .unwrap_or_else(|| panic!("to the share host: {location}"))
        .to_owned();
    assert!(auth_path.starts_with("/.pergola/auth?code="), "{auth_path}");
    let exchanged = get_with_cookie(second.port, &share_host, &auth_path, "");
    assert!(exchanged.starts_with("HTTP/1.1 303"), "exchanged on the other server: {exchanged}");
    assert!(header(&exchanged, "set-cookie").is_some_and(|c| c.starts_with("pergola_share=")), "{exchanged}");
    assert_eq!(header(&exchanged, "location"), Some("/orders"));
    let again = get_with_cookie(first.port, &share_host, &auth_path, "");
    assert!(again.starts_with("HTTP/1.1 403"), "a code works once, on any server: {again}");

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
