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
    let stage = answer(s.try_demo(&project, &demo.dir).await)?;
    Ok(crate::paths::stage(&project, &stage.id))
}
