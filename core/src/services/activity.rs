//! Read models: what a page, an API client or the CLI shows of a stage in one answer.

use super::Acting;
use crate::StageKey;
use pergola_domain::logs::OutputPart;
use pergola_domain::{Error, StageActivity};
use std::collections::HashMap;

/// The most components a page may name in `after` (a manifest has at most 64).
const MAX_COMPONENTS_ASKED: usize = 256;

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
    /// ([`pergola_domain::logs::shown_count`]). With `after` — the number of the last line the
    /// page shows of each component — only the components that printed since, with the lines
    /// after it (and whether they follow on from it); without, every component there is now.
    pub async fn stage_output(
        &self,
        project_id: &str,
        stage_id: &str,
        after: &[(String, u64)],
    ) -> Result<Vec<OutputPart>, Error> {
        if after.len() > MAX_COMPONENTS_ASKED {
            return Err(Error::malformed(format!(
                "after names {} components; a stage has at most {MAX_COMPONENTS_ASKED}.",
                after.len()
            )));
        }
        self.get_stage(project_id, stage_id).await?;
        let key = StageKey::new(project_id, stage_id);
        let after: HashMap<&str, u64> = after.iter().map(|(name, seq)| (name.as_str(), *seq)).collect();
        let mut output = Vec::new();
        for c in self.runtime.status(&key) {
            let shown = |from: u64| self.runtime.shown_after(&key, &c.name, from).unwrap_or_default();
            let part = if after.is_empty() {
                shown(0)
            } else {
                let newest = self.runtime.last_line(&key, &c.name).unwrap_or(0);
                match after.get(c.name.as_str()) {
                    Some(&last) if newest == last => continue,
                    // The numbers began again (a restarted server, a clock set back): what is
                    // kept now is shown instead.
                    Some(&last) if self.runtime.numbers_began_again(newest, last) => (shown(0).0, false),
                    Some(&last) if newest < last => continue,
                    Some(&last) => shown(last),
                    None if newest == 0 => continue,
                    None => (shown(0).0, false),
                }
            };
            let (lines, follows) = part;
            output.push(OutputPart { component: c.name, lines, follows });
        }
        Ok(output)
    }
}
