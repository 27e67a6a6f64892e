//! Opt-in, against a real cluster: runs only when `KUBECONFIG` is set (and says it skipped
//! otherwise — no cluster can be had on the machines the test suite runs on). A stage of ready
//! images (no build download: that needs the control plane reachable from the pods) is
//! deployed, its job completes and prints, its service runs, it is suspended (no pod left),
//! resumed, deleted and purged (its namespace goes). Needs a cluster where pods may run as
//! user 65534 with a read-only root file system, and about two minutes.
//!
//!   KUBECONFIG=~/.kube/config cargo test -p pergola-kubernetes --features client --test real_cluster

mod common;

use common::until_within;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use pergola_core::testing::{sqlite_env, upload_manifest};
use pergola_domain::runtime::ComponentState;
use pergola_domain::{StageStatus, StageType};
use pergola_kubernetes::render::namespace;
use pergola_kubernetes::{Cluster, KubernetesRuntime};
use std::sync::Arc;
use std::time::Duration;

const MANIFEST: &str = r#"
[[component]]
name = "web"
kind = "service"
image = "registry.k8s.io/e2e-test-images/agnhost:2.53"
args = ["netexec", "--http-port=8080"]
port = 8080

[[component]]
name = "hello"
kind = "job"
image = "busybox:1.36"
command = "sh"
args = ["-c", "echo hello from the cluster"]
"#;

const LONG: Duration = Duration::from_secs(180);

#[tokio::test]
async fn a_stage_runs_suspends_resumes_and_is_purged_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set (this test needs a real cluster)");
        return;
    }
    let runtime = KubernetesRuntime::connect(Cluster::default()).await.expect("the cluster answers");
    let watcher = runtime.watch();
    let env = sqlite_env().await;
    let services = env.services.with_runtime(Arc::new(runtime.clone()), Duration::from_secs(5));
    let admin = env.as_admin(&services);
    let project = format!("e2e-{}", &uuid_like()[..8]);
    admin.create_project("E2E", Some(&project)).await.unwrap();
    admin.create_stage(&project, "QA", StageType::Qa, Some("qa")).await.unwrap();
    let build = upload_manifest(&admin, &project, MANIFEST).await.unwrap();
    admin.deploy(&project, "qa", build.number).await.unwrap();
    let component = |name: &'static str| {
        let (services, project) = (services.clone(), project.clone());
        async move {
            let (_, components) = services.stage_with_components(&project, "qa").await.ok()?;
            components.into_iter().find(|c| c.name == name)
        }
    };
    until_within(LONG, "the service runs", || async {
        component("web").await.filter(|c| c.state == ComponentState::Running)
    })
    .await;
    until_within(LONG, "the job completed", || async {
        component("hello").await.filter(|c| c.state == ComponentState::Completed)
    })
    .await;
    until_within(LONG, "the job's output is read", || async {
        let lines = admin.logs(&project, "qa", "hello").await.ok()?;
        lines.iter().any(|l| l.line == "hello from the cluster").then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(kube::Client::try_default().await.unwrap(), &namespace(&project, "qa"));
    let web_pods = || async {
        let list = pods.list(&ListParams::default().labels("pergola.dev/component=web")).await.ok()?;
        Some(list.items.len())
    };
    admin.suspend_stage(&project, "qa").await.unwrap();
    until_within(LONG, "suspended", || async {
        (admin.get_stage(&project, "qa").await.ok()?.status == StageStatus::Suspended).then_some(())
    })
    .await;
    until_within(LONG, "no service pod left", || async { (web_pods().await? == 0).then_some(()) }).await;
    admin.resume_stage(&project, "qa").await.unwrap();
    until_within(LONG, "the service runs again", || async {
        component("web").await.filter(|c| c.state == ComponentState::Running)
    })
    .await;

    admin.delete_stage(&project, "qa").await.unwrap();
    env.clock.advance(chrono::Duration::days(400));
    assert_eq!(services.purge_due().await.unwrap().len(), 1);
    let namespaces: Api<Namespace> = Api::all(kube::Client::try_default().await.unwrap());
    until_within(LONG, "the namespace is gone", || async {
        namespaces.get_opt(&namespace(&project, "qa")).await.ok()?.is_none().then_some(())
    })
    .await;
    watcher.abort();
    env.cleanup().await;
}

/// Random enough for a project ID of its own on a shared cluster.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:016x}", nanos ^ (u128::from(std::process::id()) << 64))
}
