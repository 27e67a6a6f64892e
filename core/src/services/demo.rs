//! The first-run "Try the demo": a DEV stage running the demo application.

use super::Acting;
use pergola_domain::{Error, ErrorKind, Stage, StageType};

/// The demo's manifest (`examples/demo-app/pergola.toml`): a web service (the runtime gives
/// it a free port), a worker, a migrate job and a report cron.
pub const DEMO_MANIFEST: &str = include_str!("../../../examples/demo-app/pergola.toml");

impl Acting {
    /// Creates a DEV stage "Demo" (or, when its ID is taken, under the suggested free one),
    /// uploads the demo build found in `demo_dir` (packed here, with [`DEMO_MANIFEST`] as its
    /// `pergola.toml`) and deploys it. Returns the stage.
    pub async fn try_demo(&self, project_id: &str, demo_dir: &str) -> Result<Stage, Error> {
        let stage = match self.create_stage(project_id, "Demo", StageType::Dev, None).await {
            Ok(stage) => stage,
            Err(e) if e.kind == ErrorKind::StageIdTaken => {
                self.create_stage(project_id, "Demo", StageType::Dev, e.suggestion.as_deref()).await?
            }
            Err(e) => return Err(e),
        };
        // The demo goes the way every build goes: packed and uploaded (small: in memory).
        let dir = std::path::PathBuf::from(demo_dir);
        if !dir.is_absolute() || !dir.is_dir() {
            return Err(Error::validation(
                "workdir",
                format!("There is no demo directory '{demo_dir}' on the server."),
            ));
        }
        let packed = tokio::task::spawn_blocking(move || crate::artifacts::pack_dir(&dir, DEMO_MANIFEST))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "packing the demo panicked");
                Error::internal()
            })?
            .map_err(|e| {
                tracing::error!(dir = demo_dir, error = %e, "cannot pack the demo application");
                Error::internal()
            })?;
        let build = self.upload_build(project_id, crate::artifacts::Compression::Gzip, None, &packed[..]).await?;
        self.deploy(project_id, &stage.id, build.number).await?;
        Ok(stage)
    }
}
