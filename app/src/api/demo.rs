//! The demo application: whether this server has it, and the first-run "Try the demo".

#[cfg(feature = "ssr")]
use super::{answer, refuse, services};
use crate::error::AppError;
use leptos::prelude::*;

/// Where the demo application's binary is; the server provides it when the binary is present.
#[derive(Clone, Debug)]
pub struct DemoApp {
    pub dir: String,
}

/// The demo's manifest: a web service (the runtime gives it a free port), a worker, a migrate
/// job and a report cron.
pub fn demo_manifest() -> String {
    r#"version = "demo"

[[component]]
name = "web"
kind = "service"
command = "./pergola-demo"
args = ["web"]
storage = ["data"]
health = { path = "/healthz", interval_secs = 5 }

[[component]]
name = "worker"
kind = "worker"
command = "./pergola-demo"
args = ["worker"]
storage = ["data"]

[[component]]
name = "migrate"
kind = "job"
command = "./pergola-demo"
args = ["migrate"]
storage = ["data"]

[[component]]
name = "report"
kind = "cron"
schedule = "*/5 * * * *"
command = "./pergola-demo"
args = ["report"]
storage = ["data"]
"#
    .to_owned()
}

/// Whether this server can deploy the demo application.
#[server]
pub async fn demo_available() -> Result<bool, AppError> {
    Ok(use_context::<DemoApp>().is_some())
}

/// First run: creates a DEV stage "Demo", registers the demo build and deploys it. Returns the
/// stage's URL.
#[server]
pub async fn try_demo(project: String) -> Result<String, AppError> {
    let s = services()?;
    let demo = use_context::<DemoApp>().ok_or_else(|| {
        refuse(pergola_domain::Error::invalid_state(
            "The demo application is not installed on this server (cargo build --release -p pergola-demo-app).",
        ))
    })?;
    let stage = match s.create_stage(&project, "Demo", "dev", None).await {
        Ok(stage) => stage,
        Err(e) if e.kind == pergola_domain::ErrorKind::StageIdTaken => {
            answer(s.create_stage(&project, "Demo", "dev", e.suggestion.as_deref()).await)?
        }
        Err(e) => return Err(refuse(e)),
    };
    let build = answer(s.register_build(&project, &demo_manifest(), &demo.dir).await)?;
    answer(s.deploy(&project, &stage.id, build.number).await)?;
    Ok(crate::paths::stage(&project, &stage.id))
}
