//! The Kubernetes runtime against a cluster: request-exact tests of what it asks of the API
//! server (`tower-test`), and a stage's whole life — deploy, crash, suspend (pods terminating,
//! one killed after its grace period), resume, redeploy, delete, restore, purge — and a
//! control plane's restart, driven through the services against the stateful fake API server
//! with its fake kubelet (`fake/`).

mod common;
mod fake;

use fake::Fake;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use pergola_core::services::Replica;
use pergola_core::testing::{postgres_env, sqlite_env, upload_manifest, Env};
use pergola_core::{BuildMinter, Runtime, Services, StageKey, StageSpec, StopMode};
use pergola_domain::runtime::{ComponentState, ComponentStatus};
use pergola_domain::{parse_manifest, EventKind, LimitsPolicy, StageStatus, StageType};
use pergola_kubernetes::client::FIELD_MANAGER;
use pergola_kubernetes::render::namespace;
use pergola_kubernetes::{objects, Cluster, KubernetesRuntime, Stage};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

const MANIFEST: &str = r#"
[[component]]
name = "web"
kind = "service"
command = "./shop"
args = ["web"]
port = 8080
storage = ["data"]
health = { path = "/healthz", interval_secs = 5 }

[[component]]
name = "worker"
kind = "worker"
command = "./shop"
args = ["worker"]

[[component]]
name = "migrate"
kind = "job"
command = "./shop"
args = ["migrate"]

[[component]]
name = "report"
kind = "cron"
schedule = "*/5 * * * *"
command = "./shop"
args = ["report"]
"#;

/// Waits (up to 10 s: the fake is quick) until `check` gives something.
async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::until_within(Duration::from_secs(10), what, check).await
}

fn minter() -> BuildMinter {
    Arc::new(|key: &StageKey, release: i64| Some(format!("pgf_{}/{}/{release}", key.project, key.stage)))
}

fn spec(release: i64) -> StageSpec {
    StageSpec {
        key: StageKey::new("shop", "qa"),
        release,
        components: parse_manifest(MANIFEST).unwrap().components,
        config: BTreeMap::from([("API_KEY".into(), "s3cret".into())]),
        workdir: "/unused".into(),
        limits: LimitsPolicy::default().of(StageType::Qa),
        stage_type: StageType::Qa,
    }
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3D", "=").replace("%21", "!").replace("%2C", ",")))
        .collect()
}

async fn body(request: Request<Body>) -> (http::request::Parts, Value) {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn answer(value: &Value) -> Response<Body> {
    Response::builder().status(200).body(Body::from(serde_json::to_vec(value).unwrap())).unwrap()
}

/// The runtime's next request (a test fails, not hangs, when none comes).
async fn next(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> Option<(Request<Body>, tower_test::mock::SendResponse<Response<Body>>)> {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await.expect("the runtime's next request")
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

#[tokio::test]
async fn a_deploy_is_one_forced_server_side_apply_per_object_then_the_older_releases_objects_go() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let runtime = KubernetesRuntime::new(kube::Client::new(service, "default"), Cluster::default());
    runtime.grant_builds(minter());
    let started = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.start(spec(2), Duration::from_secs(7)).await }
    });
    let expected = objects(
        &Stage { spec: &spec(2), suspended: false, grace_secs: 7, fetch_token: "pgf_shop/qa/2", install: None },
        &Cluster::default(),
    );
    let ns = namespace("shop", "qa");
    for object in &expected {
        if object["kind"] == "Job" {
            // A job runs once per release: it is made only when it is not there yet.
            let (request, reply) = next(&mut handle).await.expect("a look for the job");
            assert_eq!(request.method(), Method::GET);
            assert!(request.uri().path().ends_with(&format!("/namespaces/{ns}/jobs/migrate-r2")));
            let missing =
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
            reply.send_response(
                Response::builder().status(404).body(Body::from(missing.to_string().into_bytes())).unwrap(),
            );
        }
        let (request, reply) = next(&mut handle).await.expect("an apply");
        let (parts, sent) = body(request).await;
        assert_eq!(parts.method, Method::PATCH);
        assert_eq!(parts.headers["content-type"], "application/apply-patch+yaml");
        let q = query(&parts.uri);
        assert_eq!(q.get("fieldManager").map(String::as_str), Some(FIELD_MANAGER));
        assert_eq!(q.get("force").map(String::as_str), Some("true"), "forced: Pergola owns these objects");
        let name = object["metadata"]["name"].as_str().unwrap();
        let path = parts.uri.path();
        assert!(path.ends_with(&format!("/{name}")), "{path}");
        if object["kind"] != "Namespace" && object["kind"] != "PriorityClass" {
            assert!(path.contains(&format!("/namespaces/{ns}/")), "{path}");
        }
        assert_eq!(&sent, object, "the rendered object, as it is");
        reply.send_response(answer(object));
    }
    // The token the init containers download the build with: minted for this release.
    let fetch = expected.iter().find(|o| o["metadata"]["name"] == "fetch-r2").unwrap();
    assert_eq!(fetch["stringData"]["token"], "pgf_shop/qa/2");
    // Then what earlier releases left is looked for, kind by kind, by its release label.
    let mut listed = Vec::new();
    for kind in ["deployments", "services", "jobs", "cronjobs", "secrets"] {
        let (request, reply) = next(&mut handle).await.expect("a listing");
        assert_eq!(request.method(), Method::GET);
        let q = query(request.uri());
        assert!(request.uri().path().ends_with(&format!("/namespaces/{ns}/{kind}")), "{}", request.uri());
        assert_eq!(
            q["labelSelector"],
            "app.kubernetes.io/managed-by=pergola,pergola.dev/release,pergola.dev/release!=2"
        );
        let old = if kind == "jobs" {
            vec![json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate-r1", "namespace": ns}})]
        } else {
            Vec::new()
        };
        reply.send_response(answer(&list(old)));
        listed.push(kind);
        if kind == "jobs" {
            // The old release's job is deleted, its pods with it (in the background).
            let (request, reply) = next(&mut handle).await.expect("a delete");
            let (parts, sent) = body(request).await;
            assert_eq!(parts.method, Method::DELETE);
            assert!(parts.uri.path().ends_with(&format!("/namespaces/{ns}/jobs/migrate-r1")));
            assert_eq!(sent["propagationPolicy"], "Background");
            reply.send_response(answer(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})));
        }
    }
    started.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_suspend_scales_to_zero_and_suspends_schedules_and_a_halt_also_suspends_jobs() {
    for mode in [StopMode::Suspend, StopMode::Halt] {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let runtime = KubernetesRuntime::new(kube::Client::new(service, "default"), Cluster::default());
        let stopped = tokio::spawn({
            let runtime = runtime.clone();
            async move { runtime.stop(&StageKey::new("shop", "qa"), Duration::from_secs(1), mode).await }
        });
        // The requests end when the stop has ended (and its client with it).
        drop(runtime);
        let ns = namespace("shop", "qa");
        let mut seen = Vec::new();
        loop {
            let Some((request, reply)) = next(&mut handle).await else { break };
            let (parts, sent) = body(request).await;
            let path = parts.uri.path().to_owned();
            seen.push(format!("{} {}", parts.method, path.rsplit('/').take(2).collect::<Vec<_>>().join(" ")));
            let item = |kind: &str, name: &str| json!({"kind": kind, "metadata": {"name": name, "namespace": ns}});
            let response = match (parts.method.clone(), path.rsplit('/').next().unwrap()) {
                (Method::GET, "deployments") => list(vec![item("Deployment", "web"), item("Deployment", "worker")]),
                (Method::GET, "cronjobs") => list(vec![item("CronJob", "report")]),
                (Method::GET, "jobs") => list(vec![item("Job", "migrate-r1")]),
                (Method::PATCH, _) => {
                    assert_eq!(parts.headers["content-type"], "application/merge-patch+json");
                    if path.contains("/deployments/") {
                        assert_eq!(sent, json!({"spec": {"replicas": 0}}));
                    } else {
                        // Schedules, and with a halt jobs: suspended (a suspended job's pods
                        // stop; the job stays, so it does not run again for this release).
                        assert_eq!(sent, json!({"spec": {"suspend": true}}));
                    }
                    sent
                }
                (Method::DELETE, _) => {
                    assert_eq!(sent["propagationPolicy"], "Background");
                    json!({"kind": "Status", "status": "Success"})
                }
                other => panic!("unexpected {other:?}"),
            };
            reply.send_response(answer(&response));
        }
        let report = stopped.await.unwrap();
        assert!(report.terminated.is_empty() && report.killed.is_empty(), "no pods were known");
        let mut expected = vec![
            "GET deployments ns",
            "PATCH web deployments",
            "PATCH worker deployments",
            "GET cronjobs ns",
            "PATCH report cronjobs",
        ];
        if mode == StopMode::Halt {
            expected.extend(["GET jobs ns", "PATCH migrate-r1 jobs"]);
        }
        let seen: Vec<String> = seen.iter().map(|s| s.replace(&ns, "ns")).collect();
        assert_eq!(seen, expected, "{mode:?}");
    }
}

/// The services on the fake cluster, with a watcher (new stages' grace period: 1 s).
fn on_cluster(env: &Env, fake: &Fake) -> (Services, KubernetesRuntime, tokio::task::JoinHandle<()>) {
    on_cluster_with_grace(env, fake, Duration::from_secs(1))
}

fn on_cluster_with_grace(
    env: &Env,
    fake: &Fake,
    grace: Duration,
) -> (Services, KubernetesRuntime, tokio::task::JoinHandle<()>) {
    let runtime = KubernetesRuntime::new(fake.client(), Cluster::default());
    let watcher = runtime.watch();
    let services = env.services.with_runtime(Arc::new(runtime.clone()), grace);
    (services, runtime, watcher)
}

/// The services of a server that cannot reach the cluster (every request fails to connect).
async fn cut_off_server(env: &Env) -> Services {
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let unreachable = kube::Client::try_from(kube::Config::new(format!("http://{gone}").parse().unwrap())).unwrap();
    env.services.with_runtime(Arc::new(KubernetesRuntime::new(unreachable, Cluster::default())), Duration::from_secs(1))
}

async fn component(services: &Services, name: &str) -> Option<ComponentStatus> {
    let (_, components) = services.stage_with_components("shop", "qa").await.ok()?;
    components.into_iter().find(|c| c.name == name)
}

async fn running(services: &Services, name: &str) -> Option<ComponentStatus> {
    component(services, name).await.filter(|c| c.state == ComponentState::Running)
}

/// How many times `shop/qa`'s timeline says a stop was not taken.
async fn refusals(admin: &pergola_core::services::Acting) -> usize {
    let events = admin.events("shop", "qa").await.unwrap();
    events.iter().filter(|e| e.kind == EventKind::StopFailed).count()
}

/// `shop/qa` running on the fake cluster, then suspended while the API server refuses every
/// change — once the refusal is on its timeline. The services, and their watcher.
async fn suspended_while_refused(fake: &Fake, env: &Env) -> (Services, tokio::task::JoinHandle<()>) {
    let (services, _runtime, watcher) = on_cluster(env, fake);
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    until("web runs", || running(&services, "web")).await;
    fake.refuse_changes(true);
    admin.suspend_stage("shop", "qa").await.unwrap();
    until("the refusal is on the timeline", || async { (refusals(&admin).await == 1).then_some(()) }).await;
    (services, watcher)
}

/// Project `shop`, stage `qa`, and [`MANIFEST`] deployed to it.
async fn deploy_shop_qa(admin: &pergola_core::services::Acting) -> pergola_domain::Build {
    admin.create_project("Shop", Some("shop")).await.unwrap();
    admin.create_stage("shop", "QA", StageType::Qa, Some("qa")).await.unwrap();
    let build = upload_manifest(admin, "shop", MANIFEST).await.unwrap();
    admin.deploy("shop", "qa", build.number).await.unwrap();
    build
}

fn pods_of<'a>(fake: &'a Fake, component: &'a str) -> impl Iterator<Item = Value> + 'a {
    fake.all("pods").into_iter().filter(move |p| p["metadata"]["labels"]["pergola.dev/component"] == component)
}

/// The component's pods whose container has not ended (an ended pod lingers a moment before
/// it goes, `Failed` or `Succeeded`).
fn running_pods_of(fake: &Fake, component: &str) -> usize {
    pods_of(fake, component).filter(|p| p["status"]["phase"] != "Failed" && p["status"]["phase"] != "Succeeded").count()
}

#[tokio::test]
async fn a_stage_lives_its_whole_life_on_the_cluster() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    let ns = namespace("shop", "qa");

    // Deployed: the objects are there, the pods run, the job completes.
    let web = until("web runs", || running(&services, "web")).await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 1);
    assert!(fake.get("services", &ns, "web").is_some());
    assert!(fake.get("persistentvolumeclaims", &ns, "storage-data").is_some());
    assert_eq!(fake.get("cronjobs", &ns, "report").unwrap()["spec"]["suspend"], false);
    let namespace_object = fake.get("namespaces", "", &ns).unwrap();
    assert_eq!(namespace_object["metadata"]["labels"]["pergola.dev/stage"], "qa");
    assert_eq!(services.upstream("shop", "qa", &web).unwrap(), format!("web.{ns}.svc:80"));
    until("the job completed", || async {
        component(&services, "migrate").await.filter(|c| c.state == ComponentState::Completed)
    })
    .await;
    // The init containers' token is a real build-fetch token of this release, nothing more.
    let token = fake.get("secrets", &ns, "fetch-r1").unwrap()["stringData"]["token"].as_str().unwrap().to_owned();
    let grant = services.build_grant(&token).expect("a token of this server");
    assert_eq!((grant.project.as_str(), grant.stage.as_str(), grant.release), ("shop", "qa", 1));
    // A token works for minutes: the running release's is minted again (a pod started later
    // still downloads its build), and it is a token of the same release.
    env.clock.advance(chrono::Duration::minutes(14));
    assert_eq!(runtime.refresh_fetch_tokens().await, 1);
    let renewed = fake.get("secrets", &ns, "fetch-r1").unwrap()["stringData"]["token"].as_str().unwrap().to_owned();
    assert_ne!(renewed, token);
    env.clock.advance(chrono::Duration::minutes(2));
    assert!(services.build_grant(&token).is_none(), "the first token has ended");
    assert_eq!(services.build_grant(&renewed).expect("the renewed token works").release, 1);
    // Every object was applied with the runtime's field manager, forced; the renewal only
    // patched the token into the Secret that was there.
    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    let (renewals, applies): (Vec<_>, Vec<_>) =
        patches.into_iter().partition(|r| r.content_type == "application/merge-patch+json");
    assert_eq!(renewals.len(), 1);
    assert!(renewals[0].uri.contains("/secrets/fetch-r1"), "{}", renewals[0].uri);
    assert!(applies.len() >= 10, "{}", applies.len());
    assert!(applies.iter().all(|r| r.content_type == "application/apply-patch+yaml"
        && r.uri.contains("fieldManager=pergola")
        && r.uri.contains("force=true")));

    // What the watcher saw is in the timeline; what the pods print is in their output.
    until("started events", || async {
        let events = admin.events("shop", "qa").await.ok()?;
        let started =
            |c: &str| events.iter().any(|e| e.kind == EventKind::Started && e.component.as_deref() == Some(c));
        (started("web") && started("worker")).then_some(())
    })
    .await;
    until("completed event", || async {
        let events = admin.events("shop", "qa").await.ok()?;
        events.iter().any(|e| e.kind == EventKind::Completed && e.component.as_deref() == Some("migrate")).then_some(())
    })
    .await;
    fake.print("web", "GET / 200");
    until("the line is followed", || async {
        let lines = admin.logs("shop", "qa", "web").await.ok()?;
        lines.iter().any(|l| l.line == "GET / 200").then_some(())
    })
    .await;
    // Followed again after the stream ends: nothing twice.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let lines = admin.logs("shop", "qa", "web").await.unwrap();
    assert_eq!(lines.iter().filter(|l| l.line == "GET / 200").count(), 1, "{lines:?}");
    assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));

    // A crash: recorded, counted, and the component runs again.
    fake.crash("worker", 3);
    until("crash events", || async {
        let events = admin.events("shop", "qa").await.ok()?;
        let crashed = events.iter().any(|e| e.kind == EventKind::Crashed && e.message.contains("code 3"));
        let restarted = events.iter().any(|e| e.kind == EventKind::Restarted);
        (crashed && restarted).then_some(())
    })
    .await;
    assert_eq!(until("worker runs", || running(&services, "worker")).await.restarts, 1);

    // Suspend: the pods terminate within the grace period, schedules stop, the job stays.
    admin.suspend_stage("shop", "qa").await.unwrap();
    // The status settles a moment before its event is on the timeline.
    until("suspended, and said so", || async {
        let settled = admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended;
        let said = admin.events("shop", "qa").await.ok()?.iter().any(|e| e.kind == EventKind::Suspended);
        (settled && said).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    assert_eq!(fake.get("cronjobs", &ns, "report").unwrap()["spec"]["suspend"], true);
    assert!(fake.get("jobs", &ns, "migrate-r1").is_some(), "a suspend lets jobs be");
    assert_eq!(running_pods_of(&fake, "web"), 0, "web's container has ended (its pod may linger, ended)");
    let events = admin.events("shop", "qa").await.unwrap();
    let suspended = events.iter().find(|e| e.kind == EventKind::Suspended).unwrap();
    assert!(suspended.message.contains("exited after SIGTERM: web, worker"), "{}", suspended.message);
    assert!(services
        .stage_with_components("shop", "qa")
        .await
        .unwrap()
        .1
        .iter()
        .all(|c| c.state != ComponentState::Running));

    // Resume: the same release again.
    admin.resume_stage("shop", "qa").await.unwrap();
    until("web runs again", || running(&services, "web")).await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 1);
    assert!(fake.get("jobs", &ns, "migrate-r1").is_some());

    // A new release without the worker: its objects replace the old release's.
    let without_worker = MANIFEST.replace(
        "[[component]]\nname = \"worker\"\nkind = \"worker\"\ncommand = \"./shop\"\nargs = [\"worker\"]\n",
        "",
    );
    assert_ne!(without_worker, MANIFEST);
    let build = upload_manifest(&admin, "shop", &without_worker).await.unwrap();
    admin.deploy("shop", "qa", build.number).await.unwrap();
    until("release 2 runs", || async {
        pods_of(&fake, "web")
            .any(|p| p["metadata"]["labels"]["pergola.dev/release"] == "2" && p["status"]["phase"] == "Running")
            .then_some(())
    })
    .await;
    until("the old release's objects are gone", || async {
        (fake.get("deployments", &ns, "worker").is_none()
            && fake.get("jobs", &ns, "migrate-r1").is_none()
            && fake.get("secrets", &ns, "config-r1").is_none())
        .then_some(())
    })
    .await;
    assert!(fake.get("jobs", &ns, "migrate-r2").is_some() && fake.get("secrets", &ns, "config-r2").is_some());
    assert!(fake.get("persistentvolumeclaims", &ns, "storage-data").is_some(), "storage outlives releases");
    until("worker gone from the status", || async {
        let (_, components) = services.stage_with_components("shop", "qa").await.ok()?;
        (components.iter().all(|c| c.name != "worker") && components.iter().any(|c| c.name == "web")).then_some(())
    })
    .await;

    // A component that ignores SIGTERM: killed at the end of the grace period (1 s).
    until("web runs on release 2", || running(&services, "web")).await;
    fake.set_stop_time(Duration::from_secs(30));
    let suspends =
        |events: &[pergola_domain::StageEvent]| events.iter().filter(|e| e.kind == EventKind::Suspended).count();
    let before = suspends(&admin.events("shop", "qa").await.unwrap());
    admin.suspend_stage("shop", "qa").await.unwrap();
    // The status settles a moment before its event is on the timeline.
    until("suspended again, and said so", || async {
        let settled = admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended;
        (settled && suspends(&admin.events("shop", "qa").await.ok()?) > before).then_some(())
    })
    .await;
    let events = admin.events("shop", "qa").await.unwrap();
    let suspended = events.iter().find(|e| e.kind == EventKind::Suspended).unwrap();
    assert!(suspended.message.contains("killed after the grace period: web"), "{}", suspended.message);
    fake.set_stop_time(Duration::from_millis(100));

    // Delete (a halt: jobs go too), restore (as it was: suspended), purge (the namespace goes).
    admin.resume_stage("shop", "qa").await.unwrap();
    until("running before the delete", || running(&services, "web")).await;
    let migrate_pods = || pods_of(&fake, "migrate").count();
    assert_eq!(migrate_pods(), 1, "release 2's job ran once");
    admin.delete_stage("shop", "qa").await.unwrap();
    assert_eq!(fake.get("jobs", &ns, "migrate-r2").unwrap()["spec"]["suspend"], true, "a halt stops jobs");
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    assert!(fake.get("namespaces", "", &ns).is_some(), "kept while the stage is restorable");
    let restored = admin.restore_stage("shop", "qa").await.unwrap();
    assert_eq!(restored.status, StageStatus::Running);
    until("running after the restore", || running(&services, "web")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(migrate_pods(), 1, "a restore does not run the release's job again");
    admin.delete_stage("shop", "qa").await.unwrap();
    env.clock.advance(chrono::Duration::days(400));
    let purged = services.purge_due().await.unwrap();
    assert_eq!(purged, vec![("shop".to_owned(), "qa".to_owned())]);
    // Forgotten at once (its pods are still going), and forgetting again is no error.
    assert!(runtime.status(&StageKey::new("shop", "qa")).is_empty());
    assert!(runtime.logs(&StageKey::new("shop", "qa"), "web").is_empty());
    runtime.forget(&StageKey::new("shop", "qa")).await.expect("a namespace being deleted is no error");
    until("the namespace is gone", || async { fake.get("namespaces", "", &ns).is_none().then_some(()) }).await;
    assert_eq!(fake.all("pods").len(), 0);
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_restarted_control_plane_learns_what_runs_and_reconciles_without_restarting_anything() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    let build = deploy_shop_qa(&admin).await;
    until("web runs", || running(&services, "web")).await;
    let pod = pods_of(&fake, "web").next().unwrap()["metadata"]["uid"].clone();
    // A second stage, suspended — but its scale-down was undone behind Pergola's back (or the
    // server died before asking).
    admin.create_stage("shop", "Dev", StageType::Dev, Some("dev")).await.unwrap();
    admin.deploy("shop", "dev", build.number).await.unwrap();
    admin.suspend_stage("shop", "dev").await.unwrap();
    until("dev suspended", || async {
        (admin.get_stage("shop", "dev").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    let dev = namespace("shop", "dev");
    fake.patch("deployments", &dev, "web", &json!({"spec": {"replicas": 1}}));
    // The server goes away; another starts with no memory of what it applied.
    watcher.abort();
    drop(services);
    let (services, runtime, watcher) = on_cluster(&env, &fake);
    until("the watcher listed the pods", || async { runtime.synced().then_some(()) }).await;
    let web = until("web is known from its pod", || running(&services, "web")).await;
    assert_eq!(web.kind, pergola_domain::ComponentKind::Service);
    let before = fake.requests().iter().filter(|r| r.method == "PATCH").count();
    let report = services.reconcile().await.unwrap();
    assert_eq!(report.started, 1, "{report:?}");
    let started = || async {
        let events = env.admin.events("shop", "qa").await.unwrap();
        events.iter().filter(|e| e.kind == EventKind::Started && e.component.as_deref() == Some("web")).count()
    };
    let after = fake.requests().iter().filter(|r| r.method == "PATCH").count();
    assert!(after > before, "reconciling applies the release again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pods: Vec<Value> = pods_of(&fake, "web").collect();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["uid"], pod, "the same pod: nothing changed, nothing restarted");
    assert_eq!(started().await, 1, "what the new watcher found running did not start now");
    let events = env.admin.events("shop", "qa").await.unwrap();
    assert!(events.iter().all(|e| !e.message.starts_with("Started again")), "nothing was started again");
    // What should be stopped is stopped again.
    until("dev scaled to 0 again", || async {
        (fake.get("deployments", &dev, "web")?["spec"]["replicas"] == 0).then_some(())
    })
    .await;
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_pod_that_keeps_crashing_shows_as_crashed() {
    let fake = Fake::start().await;
    fake.fail("web");
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    let web = until("web crashed", || async {
        component(&services, "web").await.filter(|c| c.state == ComponentState::Crashed)
    })
    .await;
    assert_eq!(web.exit_code, Some(3));
    assert_eq!(web.restarts, 1);
    watcher.abort();
    env.cleanup().await;
}

/// Two servers of one PostgreSQL database, each with its runtime and watcher on one cluster;
/// the first one's requests are answered late.
fn two_servers(env: &Env, fake: &Fake) -> Vec<(Services, tokio::task::JoinHandle<()>)> {
    ["a", "b"]
        .into_iter()
        .map(|name| {
            let replica = Replica { host: format!("node-{name}"), pid: 7, pid_ns: 1, nonce: name.into() };
            let client = if name == "a" { fake.slow_client() } else { fake.client() };
            let runtime = KubernetesRuntime::new(client, Cluster::default());
            let watcher = runtime.watch();
            let services =
                env.services.as_another_server(replica).with_runtime(Arc::new(runtime), Duration::from_secs(1));
            (services, watcher)
        })
        .collect()
}

#[tokio::test]
async fn racing_deploys_through_two_servers_end_on_the_newest_release_and_a_stage_is_purged_once() {
    let fake = Fake::start().await;
    let env = postgres_env().await;
    let servers = two_servers(&env, &fake);
    let (a, b) = (env.as_admin(&servers[0].0), env.as_admin(&servers[1].0));
    a.create_project("Shop", Some("shop")).await.unwrap();
    a.create_stage("shop", "QA", StageType::Qa, Some("qa")).await.unwrap();
    let ns = namespace("shop", "qa");
    let release_of = |object: Option<Value>| -> Option<i64> {
        object?["spec"]["template"]["metadata"]["labels"]["pergola.dev/release"].as_str()?.parse().ok()
    };
    for round in 0..6 {
        let one = upload_manifest(&a, "shop", &MANIFEST.replace("\"web\"]", &format!("\"web\", \"{round}a\"]")))
            .await
            .unwrap();
        let two = upload_manifest(&b, "shop", &MANIFEST.replace("\"web\"]", &format!("\"web\", \"{round}b\"]")))
            .await
            .unwrap();
        // A deploys first, and applies slowly; B deploys a moment later, a newer release, and
        // would be done long before A — were they not taking turns.
        let later = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.deploy("shop", "qa", two.number).await
        };
        let (x, y) = tokio::join!(a.deploy("shop", "qa", one.number), later);
        let newest = x.unwrap().number.max(y.unwrap().number);
        until(&format!("round {round}: release {newest} is applied"), || async {
            (release_of(fake.get("deployments", &ns, "web")) == Some(newest)
                && fake.get("jobs", &ns, &format!("migrate-r{newest}")).is_some()
                && fake.get("secrets", &ns, &format!("config-r{}", newest - 1)).is_none())
            .then_some(())
        })
        .await;
        // And it stays so: the older deploy did not land after the newer one.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(release_of(fake.get("deployments", &ns, "web")), Some(newest), "round {round}");
    }
    // Both servers purge at once: the stage is purged by one of them, its namespace deleted.
    a.delete_stage("shop", "qa").await.unwrap();
    env.clock.advance(chrono::Duration::days(400));
    let (x, y) = tokio::join!(servers[0].0.purge_due(), servers[1].0.purge_due());
    let purged = x.unwrap().len() + y.unwrap().len();
    assert_eq!(purged, 1, "purged once");
    until("the namespace is gone", || async { fake.get("namespaces", "", &ns).is_none().then_some(()) }).await;
    for (_, watcher) in servers {
        watcher.abort();
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_stop_waiting_for_its_pods_holds_no_turn_so_every_stage_suspended_at_once_is_asked_at_once() {
    let fake = Fake::start().await;
    let env = postgres_env().await;
    // A grace period of 10 s: the pods below stop within it.
    let (services, _runtime, watcher) = on_cluster_with_grace(&env, &fake, Duration::from_secs(10));
    let admin = env.as_admin(&services);
    admin.create_project("Shop", Some("shop")).await.unwrap();
    let build = upload_manifest(&admin, "shop", MANIFEST).await.unwrap();
    // More stages than a server holds turns at once.
    let stages: Vec<String> = (0..pergola_core::services::SHARED_TURNS + 2).map(|i| format!("qa{i}")).collect();
    for id in &stages {
        admin.create_stage("shop", &format!("QA {id}"), StageType::Qa, Some(id)).await.unwrap();
        admin.deploy("shop", id, build.number).await.unwrap();
    }
    for id in &stages {
        until(&format!("web runs on {id}"), || async {
            let (_, components) = services.stage_with_components("shop", id).await.ok()?;
            components.into_iter().find(|c| c.name == "web" && c.state == ComponentState::Running)
        })
        .await;
    }
    // Every pod takes 4 s to stop once asked: a stop waits that long for its pods.
    fake.set_stop_time(Duration::from_secs(4));
    let suspends = futures_util::future::join_all(stages.iter().map(|id| admin.suspend_stage("shop", id))).await;
    assert!(suspends.iter().all(Result::is_ok), "{suspends:?}");
    // Every stage is asked to stop at once — none waits for another's pods to be gone.
    common::until_within(Duration::from_secs(2), "every stage is scaled to 0", || async {
        stages
            .iter()
            .all(|id| fake.get("deployments", &namespace("shop", id), "web").unwrap()["spec"]["replicas"] == 0)
            .then_some(())
    })
    .await;
    // And each stop still waits for its pods before the stage is suspended, saying so.
    for id in &stages {
        assert_eq!(admin.get_stage("shop", id).await.unwrap().status, StageStatus::Suspending, "{id}");
    }
    for id in &stages {
        let suspended = until(&format!("{id} suspended"), || async {
            let events = admin.events("shop", id).await.ok()?;
            events.into_iter().find(|e| e.kind == EventKind::Suspended)
        })
        .await;
        assert!(suspended.message.contains("exited after SIGTERM: web, worker"), "{id}: {}", suspended.message);
        assert_eq!(admin.get_stage("shop", id).await.unwrap().status, StageStatus::Suspended, "{id}");
    }
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_server_whose_release_another_replaced_shows_the_newer_one_and_renews_no_token_for_the_old() {
    let fake = Fake::start().await;
    let env = postgres_env().await;
    let runtimes: Vec<KubernetesRuntime> =
        (0..2).map(|_| KubernetesRuntime::new(fake.client(), Cluster::default())).collect();
    let watchers: Vec<_> = runtimes.iter().map(|r| r.watch()).collect();
    let servers: Vec<Services> = ["a", "b"]
        .into_iter()
        .zip(&runtimes)
        .map(|(name, runtime)| {
            let replica = Replica { host: format!("node-{name}"), pid: 7, pid_ns: 1, nonce: name.into() };
            env.services.as_another_server(replica).with_runtime(Arc::new(runtime.clone()), Duration::from_secs(1))
        })
        .collect();
    let (a, b) = (env.as_admin(&servers[0]), env.as_admin(&servers[1]));
    // Release 1 through A; then release 2 through B, where the worker is now "mailer".
    deploy_shop_qa(&a).await;
    until("web runs", || running(&servers[0], "web")).await;
    let ns = namespace("shop", "qa");
    let two = upload_manifest(&b, "shop", &MANIFEST.replace("name = \"worker\"", "name = \"mailer\"")).await.unwrap();
    b.deploy("shop", "qa", two.number).await.unwrap();
    until("release 1's objects are gone", || async {
        (fake.get("secrets", &ns, "fetch-r1").is_none() && fake.get("deployments", &ns, "worker").is_none())
            .then_some(())
    })
    .await;
    // A shows what runs — release 2's components — not what it applied itself.
    until("A shows the mailer running", || running(&servers[0], "mailer")).await;
    until("A no longer shows release 1's worker", || async {
        component(&servers[0], "worker").await.is_none().then_some(())
    })
    .await;
    // Renewing tokens, A does not bring release 1's Secret back; B renews release 2's.
    assert_eq!(runtimes[0].refresh_fetch_tokens().await, 0);
    assert!(fake.get("secrets", &ns, "fetch-r1").is_none(), "release 1's token Secret stays gone");
    let before = fake.get("secrets", &ns, "fetch-r2").unwrap()["stringData"]["token"].clone();
    env.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(runtimes[1].refresh_fetch_tokens().await, 1);
    let after = fake.get("secrets", &ns, "fetch-r2").unwrap()["stringData"]["token"].clone();
    assert_ne!(before, after, "a fresh token");
    for watcher in watchers {
        watcher.abort();
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_stage_restored_while_its_pods_still_stop_starts_them_only_once_they_are_gone() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    // A grace period of 10 s: the pods below stop within it.
    let (services, _runtime, watcher) = on_cluster_with_grace(&env, &fake, Duration::from_secs(10));
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    until("web runs", || running(&services, "web")).await;
    let old = pods_of(&fake, "web").next().unwrap()["metadata"]["uid"].clone();
    // Deleted, its pods taking 2 s to stop — and restored at once, the same release: the same
    // ReplicaSet, scaled up again.
    fake.set_stop_time(Duration::from_secs(2));
    admin.delete_stage("shop", "qa").await.unwrap();
    admin.restore_stage("shop", "qa").await.unwrap();
    // Never two instances on the volume: no new web pod while the old one is still stopping.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pods: Vec<Value> = pods_of(&fake, "web").collect();
        let stopping = pods.iter().any(|p| p["metadata"]["uid"] == old);
        let new = pods.iter().any(|p| p["metadata"]["uid"] != old);
        assert!(!(stopping && new), "a new web pod while the old one still stops: {pods:?}");
        if new && running(&services, "web").await.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "web did not run again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Running);
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn each_components_grace_period_runs_from_when_the_cluster_took_its_stop_and_counts_down() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster_with_grace(&env, &fake, Duration::from_secs(3));
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    until("web and worker run", || async {
        running(&services, "web").await?;
        running(&services, "worker").await
    })
    .await;
    // Pods take 2 s to stop (within their 3 s), and the API server answers each change 1.5 s
    // late: worker is asked ~3 s after the suspend began and is gone ~2 s later — in time for
    // its own grace period, though 5 s after the suspend began.
    fake.set_stop_time(Duration::from_secs(2));
    fake.set_patch_latency(Duration::from_millis(1500));
    let mut countdown = Vec::new();
    let watch = async {
        loop {
            // Settled, and said so on the timeline (a moment after the status).
            let settled = admin.get_stage("shop", "qa").await.unwrap().status == StageStatus::Suspended;
            if settled && admin.events("shop", "qa").await.unwrap().iter().any(|e| e.kind == EventKind::Suspended) {
                break;
            }
            let (_, components) = services.stage_with_components("shop", "qa").await.unwrap();
            countdown.extend(components.iter().filter_map(|c| c.kill_in_secs));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let watch = async { tokio::time::timeout(Duration::from_secs(30), watch).await.expect("suspended within 30 s") };
    let (suspended, ()) = tokio::join!(admin.suspend_stage("shop", "qa"), watch);
    suspended.unwrap();
    fake.set_patch_latency(Duration::ZERO);
    let events = admin.events("shop", "qa").await.unwrap();
    let message = &events.iter().find(|e| e.kind == EventKind::Suspended).unwrap().message;
    assert!(message.contains("exited after SIGTERM: web, worker") && !message.contains("killed"), "{message}");
    // Their pods ended Failed (exit code 143) before they went, as kubelets since Kubernetes
    // 1.27 leave them: that is the stop, not a crash.
    assert!(!events.iter().any(|e| e.kind == EventKind::Crashed), "{events:?}");
    // The page's "killed in N s" counts down from the grace period (the API server's deletion
    // time is when the grace period ends, not when it began).
    assert!(countdown.contains(&3) && countdown.iter().any(|s| *s <= 2), "no countdown: {countdown:?}");
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_stop_the_cluster_does_not_take_is_asked_again_and_the_stage_is_not_called_suspended_meanwhile() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    // The API server takes no changes: the suspend cannot scale anything down.
    let (services, watcher) = suspended_while_refused(&fake, &env).await;
    let admin = env.as_admin(&services);
    let ns = namespace("shop", "qa");
    let status = || async { admin.get_stage("shop", "qa").await.unwrap().status };
    // Asked again (after 1 s, then 2 s), refused again: still suspending, web still runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status().await, StageStatus::Suspending, "not suspended while what it runs was never asked to stop");
    assert!(running(&services, "web").await.is_some());
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 1);
    let asked = fake.requests().iter().filter(|r| r.method == "PATCH" && r.uri.contains("/deployments/")).count();
    assert!(asked >= 2, "asked again: {asked}");

    // The API server takes changes again: the next ask stops it, and the stage settles.
    fake.refuse_changes(false);
    until("suspended", || async { (status().await == StageStatus::Suspended).then_some(()) }).await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    assert_eq!(fake.get("cronjobs", &ns, "report").unwrap()["spec"]["suspend"], true);
    until("web's pod is gone", || async { (pods_of(&fake, "web").count() == 0).then_some(()) }).await;
    assert_eq!(refusals(&admin).await, 1, "the refusal is told once");
    let events = admin.events("shop", "qa").await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == EventKind::Suspended && e.message.contains("every component has stopped")),
        "{events:?}"
    );
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_stop_refused_part_way_shows_what_it_scaled_down_as_stopped_and_the_rest_as_running() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    until("web and worker run", || async {
        running(&services, "web").await?;
        running(&services, "worker").await
    })
    .await;
    // web is scaled to 0, then the API server refuses worker's change.
    fake.refuse_changes_to(Some("/deployments/worker"));
    admin.suspend_stage("shop", "qa").await.unwrap();
    until("the refusal is on the timeline", || async { (refusals(&admin).await == 1).then_some(()) }).await;
    until("web's pod is gone", || async { (pods_of(&fake, "web").count() == 0).then_some(()) }).await;
    until("web shows as stopped", || async {
        (component(&services, "web").await?.state == ComponentState::Stopped).then_some(())
    })
    .await;
    assert!(running(&services, "worker").await.is_some(), "worker still runs");
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Suspending);
    fake.refuse_changes_to(None);
    common::until_within(Duration::from_secs(20), "suspended", || async {
        (admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_delete_while_a_refused_suspend_is_asked_again_takes_over_the_asking_and_the_timeline_is_told_once() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, watcher) = suspended_while_refused(&fake, &env).await;
    let admin = env.as_admin(&services);
    let ns = namespace("shop", "qa");
    // Deleted while the suspend is still asked again: the delete's stop (a halt) is refused
    // too, and from now on one stop is asked again — the delete's; the timeline knows already.
    admin.delete_stage("shop", "qa").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(refusals(&admin).await, 1, "one refusal on the timeline, not one per stop");
    fake.refuse_changes(false);
    until("the delete's halt went through", || async {
        (fake.get("jobs", &ns, "migrate-r1")?["spec"]["suspend"] == true).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    until("web's pod is gone", || async { (pods_of(&fake, "web").count() == 0).then_some(()) }).await;
    assert!(admin.list_stages("shop", true).await.unwrap().iter().any(|s| s.id == "qa"), "deleted, restorable");
    assert_eq!(refusals(&admin).await, 1);
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_refused_suspend_goes_on_being_asked_when_the_delete_that_took_over_is_undone_by_a_restore() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, watcher) = suspended_while_refused(&fake, &env).await;
    let admin = env.as_admin(&services);
    let ns = namespace("shop", "qa");
    // The delete's stop takes the asking over; the restore undoes the delete, so the delete's
    // stop has nothing more to ask for — but the suspend still has: the stage is suspending.
    admin.delete_stage("shop", "qa").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    admin.restore_stage("shop", "qa").await.unwrap();
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Suspending);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    fake.refuse_changes(false);
    common::until_within(Duration::from_secs(40), "suspended", || async {
        (admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    until("web's pod is gone", || async { (pods_of(&fake, "web").count() == 0).then_some(()) }).await;
    assert_eq!(refusals(&admin).await, 1, "told once");
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_restarted_control_plane_the_cluster_refuses_keeps_a_suspending_stage_suspending_until_it_was_stopped() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster(&env, &fake);
    deploy_shop_qa(&env.as_admin(&services)).await;
    until("web runs", || running(&services, "web")).await;
    watcher.abort();
    drop(services);
    let ns = namespace("shop", "qa");
    // A server that cannot reach the cluster is asked to suspend the stage: it is left
    // suspending (that server goes on asking, in vain).
    let cut_off = cut_off_server(&env).await;
    env.as_admin(&cut_off).suspend_stage("shop", "qa").await.unwrap();

    // Another server starts while the cluster takes no changes: its reconcile does not call
    // the stage suspended while web runs.
    fake.refuse_changes(true);
    let (services, runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    until("the watcher listed the pods", || async { runtime.synced().then_some(()) }).await;
    services.reconcile().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Suspending);
    assert!(running(&services, "web").await.is_some());
    // Once the cluster takes changes again, the reconciling server's next ask stops it.
    fake.refuse_changes(false);
    until("suspended", || async {
        (admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn an_api_server_that_keeps_answering_503_holds_a_start_or_a_stop_no_longer_than_it_is_given() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    // kube's client retries a 503 for minutes; the runtime gives the requests 1 s here.
    let runtime = KubernetesRuntime::new(fake.client(), Cluster::default()).asking_within(Duration::from_secs(1));
    let watcher = runtime.watch();
    let services = env.services.with_runtime(Arc::new(runtime), Duration::from_secs(1));
    let admin = env.as_admin(&services);
    let events = || async { admin.events("shop", "qa").await.unwrap() };
    let status = || async { admin.get_stage("shop", "qa").await.unwrap().status };
    deploy_shop_qa(&admin).await;
    until("web runs", || running(&services, "web")).await;
    // A stop: asked again (and told once) until the API server answers.
    fake.overload(true);
    admin.suspend_stage("shop", "qa").await.unwrap();
    until("the stop failed", || async { events().await.iter().any(|e| e.kind == EventKind::StopFailed).then_some(()) })
        .await;
    assert_eq!(status().await, StageStatus::Suspending);
    fake.overload(false);
    until("suspended", || async { (status().await == StageStatus::Suspended).then_some(()) }).await;
    // A start fails, and says why.
    fake.overload(true);
    let answer = admin.resume_stage("shop", "qa").await.unwrap_err();
    assert!(answer.message.contains("did not answer within 1 s"), "{}", answer.message);
    let failed = until("the start failed", || async {
        events().await.into_iter().find(|e| e.kind == EventKind::Crashed && e.message.contains("could not be started"))
    })
    .await;
    assert!(failed.message.contains("did not answer within 1 s"), "{}", failed.message);
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn a_server_restarting_while_another_suspends_a_stage_leaves_the_suspend_to_it() {
    let fake = Fake::start().await;
    let env = postgres_env().await;
    let servers: Vec<(Services, tokio::task::JoinHandle<()>)> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let replica = Replica { host: format!("node-{name}"), pid: 7, pid_ns: 1, nonce: name.into() };
            let runtime = KubernetesRuntime::new(fake.client(), Cluster::default());
            let watcher = runtime.watch();
            let services =
                env.services.as_another_server(replica).with_runtime(Arc::new(runtime), Duration::from_secs(10));
            (services, watcher)
        })
        .collect();
    let (a, b) = (&servers[0].0, &servers[1].0);
    // A does the background work, B does not.
    a.renew_leases(false).await;
    b.renew_leases(false).await;
    assert!(a.runs_background_work() && !b.runs_background_work());
    let admin = env.as_admin(a);
    deploy_shop_qa(&admin).await;
    until("web runs", || running(a, "web")).await;
    // A suspends the stage; its pods take 2 s to stop. Meanwhile B restarts (a rolling
    // upgrade): its reconcile does not call the stage suspended while web still stops.
    fake.set_stop_time(Duration::from_secs(2));
    admin.suspend_stage("shop", "qa").await.unwrap();
    b.reconcile().await.unwrap();
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Suspending);
    assert_eq!(pods_of(&fake, "web").count(), 1, "web is still stopping");
    // A's suspend settles it once web is gone.
    until("suspended", || async {
        (admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    assert_eq!(running_pods_of(&fake, "web"), 0, "web's container has ended (its pod may linger, ended)");
    for (_, watcher) in servers {
        watcher.abort();
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_stage_a_cut_off_server_left_suspending_is_settled_by_the_server_doing_the_background_work() {
    let fake = Fake::start().await;
    let env = sqlite_env().await;
    let (services, _runtime, watcher) = on_cluster(&env, &fake);
    let admin = env.as_admin(&services);
    deploy_shop_qa(&admin).await;
    until("web runs", || running(&services, "web")).await;
    let ns = namespace("shop", "qa");
    // A server that cannot reach the cluster suspends the stage: it stays suspending.
    let cut_off = cut_off_server(&env).await;
    env.as_admin(&cut_off).suspend_stage("shop", "qa").await.unwrap();
    assert_eq!(admin.get_stage("shop", "qa").await.unwrap().status, StageStatus::Suspending);
    // Not left yet: a stop may take its grace period and more.
    assert_eq!(services.settle_left_suspends().await.unwrap(), 0);
    assert!(running(&services, "web").await.is_some());
    // Left suspending well past its grace period: the server doing the background work stops
    // and settles it.
    env.clock.advance(chrono::Duration::minutes(3));
    // Renamed meanwhile: the suspend is no younger for it.
    let rename = pergola_domain::wire::StageUpdate { name: Some("QA renamed".into()), ..Default::default() };
    admin.update_stage("shop", "qa", rename).await.unwrap();
    assert_eq!(services.settle_left_suspends().await.unwrap(), 1);
    until("suspended", || async {
        (admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns, "web").unwrap()["spec"]["replicas"], 0);
    assert_eq!(running_pods_of(&fake, "web"), 0, "web's container has ended (its pod may linger, ended)");
    watcher.abort();
    env.cleanup().await;
}

#[tokio::test]
async fn two_installations_on_one_cluster_each_run_and_change_only_their_own_stages() {
    let fake = Fake::start().await;
    let (one, other) = (sqlite_env().await, sqlite_env().await);
    let on = |env: &Env, cluster: Cluster| {
        let runtime = KubernetesRuntime::new(fake.client(), cluster.clone());
        let watcher = runtime.watch();
        (env.services.with_cluster(cluster).with_runtime(Arc::new(runtime), Duration::from_secs(1)), watcher)
    };
    let (a, a_watcher) = on(&one, Cluster::default());
    let (b, b_watcher) = on(&other, Cluster { install: Some("staging".into()), ..Cluster::default() });
    // Two databases, the same project and stage IDs.
    deploy_shop_qa(&one.as_admin(&a)).await;
    deploy_shop_qa(&other.as_admin(&b)).await;
    until("web runs on one", || running(&a, "web")).await;
    until("web runs on the other", || running(&b, "web")).await;
    let (ns_a, ns_b) =
        (namespace("shop", "qa"), pergola_kubernetes::render::namespace_of(Some("staging"), "shop", "qa"));
    assert_ne!(ns_a, ns_b);
    assert!(ns_b.starts_with("pergola-staging-"), "{ns_b}");
    assert_eq!(fake.get("namespaces", "", &ns_b).unwrap()["metadata"]["labels"]["pergola.dev/install"], "staging");
    assert!(fake.get("priorityclasses", "", "pergola-qa").is_some());
    assert!(fake.get("priorityclasses", "", "pergola-staging-qa").is_some());
    // Suspending the stage of one leaves the other's running, and each sees its own.
    one.as_admin(&a).suspend_stage("shop", "qa").await.unwrap();
    until("suspended", || async {
        (one.admin.get_stage("shop", "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    assert_eq!(fake.get("deployments", &ns_a, "web").unwrap()["spec"]["replicas"], 0);
    assert_eq!(fake.get("deployments", &ns_b, "web").unwrap()["spec"]["replicas"], 1);
    assert!(running(&a, "web").await.is_none());
    let web = running(&b, "web").await.expect("the other's web still runs");
    assert_eq!(b.upstream("shop", "qa", &web).unwrap(), format!("web.{ns_b}.svc:80"));
    // Purging one deletes its namespace only.
    one.as_admin(&a).delete_stage("shop", "qa").await.unwrap();
    one.clock.advance(chrono::Duration::days(400));
    a.purge_due().await.unwrap();
    until("one's namespace is gone", || async { fake.get("namespaces", "", &ns_a).is_none().then_some(()) }).await;
    assert!(fake.get("namespaces", "", &ns_b).is_some());
    assert!(running(&b, "web").await.is_some());
    a_watcher.abort();
    b_watcher.abort();
    one.cleanup().await;
    other.cleanup().await;
}
