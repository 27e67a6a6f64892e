//! Read models: what a page, an API client or the CLI shows of a stage in one answer.

use super::Acting;
use pergola_domain::{Error, StageActivity};

/// How many of a component's last output lines [`Services::stage_activity`] shows.
pub const LOG_LINES_SHOWN: usize = 200;

impl Acting {
    /// What runs on a live stage: the stage as it is now, its timeline, its releases (newest
    /// first), its components with their last [`LOG_LINES_SHOWN`] output lines, and its share
    /// links.
    pub async fn stage_activity(&self, project_id: &str, stage_id: &str) -> Result<StageActivity, Error> {
        let stage = self.get_stage(project_id, stage_id).await?;
        let events = self.events(project_id, stage_id).await?;
        let releases = self.releases(project_id, stage_id).await?;
        let components = self.components(project_id, stage_id).await?;
        let mut logs = Vec::new();
        for c in &components {
            let mut lines = self.logs(project_id, stage_id, &c.name).await?;
            let keep = lines.len().saturating_sub(LOG_LINES_SHOWN);
            logs.push((c.name.clone(), lines.split_off(keep)));
        }
        let links = self.links_of(project_id, stage_id, &components);
        let actor = self.actor(project_id).await?;
        Ok(StageActivity { stage, events, releases, components, logs, links, actor })
    }
}
