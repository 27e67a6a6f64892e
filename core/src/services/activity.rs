//! Read models: what a page, an API client or the CLI shows of a stage in one answer.

use super::Acting;
use crate::StageKey;
use pergola_domain::logs::{shown, Output};
use pergola_domain::{Error, StageActivity};

impl Acting {
    /// What runs on a live stage: the stage as it is now, its timeline, its releases (newest
    /// first), its components and its share links. Its output is read on its own
    /// ([`Acting::stage_output`]): it changes far more often.
    pub async fn stage_activity(&self, project_id: &str, stage_id: &str) -> Result<StageActivity, Error> {
        let stage = self.get_stage(project_id, stage_id).await?;
        let events = self.events(project_id, stage_id).await?;
        let releases = self.releases(project_id, stage_id).await?;
        let components = self.components(project_id, stage_id).await?;
        let links = self.links_of(project_id, stage_id, &components);
        let actor = self.actor(project_id).await?;
        Ok(StageActivity { stage, events, releases, components, links, actor })
    }

    /// The output a stage page shows: each component's newest lines, within what a page is sent
    /// ([`shown`]). With `after` — the number of the last line the page shows of each component
    /// — only the components that printed since, and only their new lines (within the same
    /// limits); without, every component there is now.
    pub async fn stage_output(
        &self,
        project_id: &str,
        stage_id: &str,
        after: &[(String, u64)],
    ) -> Result<Output, Error> {
        self.get_stage(project_id, stage_id).await?;
        let key = StageKey::new(project_id, stage_id);
        let mut output = Vec::new();
        for c in self.runtime.status(&key) {
            let last = after.iter().find(|(name, _)| *name == c.name).map_or(0, |(_, seq)| *seq);
            if !after.is_empty() && self.runtime.last_line(&key, &c.name).is_none_or(|newest| newest <= last) {
                continue;
            }
            let lines = self.runtime.logs_after(&key, &c.name, last).unwrap_or_default();
            output.push((c.name, shown(lines)));
        }
        Ok(output)
    }
}
