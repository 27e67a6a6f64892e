//! The first-run "Try the demo": a DEV stage running the demo application.

use super::Acting;
use pergola_domain::{Error, ErrorKind, Stage, StageType};

/// The demo's manifest (`examples/demo-app/pergola.toml`): a web service (the runtime gives
/// it a free port), a worker, a migrate job and a report cron.
pub const DEMO_MANIFEST: &str = include_str!("../../../examples/demo-app/pergola.toml");

impl Acting {
    /// Creates a DEV stage "Demo" (or, when its ID is taken, under the suggested free one),
    /// registers the demo build found in `demo_dir` and deploys it. Returns the stage.
    pub async fn try_demo(&self, project_id: &str, demo_dir: &str) -> Result<Stage, Error> {
        let stage = match self.create_stage(project_id, "Demo", StageType::Dev, None).await {
            Ok(stage) => stage,
            Err(e) if e.kind == ErrorKind::StageIdTaken => {
                self.create_stage(project_id, "Demo", StageType::Dev, e.suggestion.as_deref()).await?
            }
            Err(e) => return Err(e),
        };
        let build = self.register_build(project_id, DEMO_MANIFEST, demo_dir).await?;
        self.deploy(project_id, &stage.id, build.number).await?;
        Ok(stage)
    }
}
