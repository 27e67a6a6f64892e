//! `pergola list event`: a project's activity, or one stage's events timeline.

use super::{project_path, stage_path};
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::{AuditEntry, StageEvent};

const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// Without a stage: who changed what in the project (its audit trail). With one: the stage's
/// timeline, which also has what the runtime observed (crashes, restarts).
pub fn list(client: &Client, out: &Printer, project: &str, stage: Option<&str>) -> Result<(), Failure> {
    let Some(stage) = stage else {
        let entries: Vec<AuditEntry> = client.get(&format!("{}/events", project_path(project)?))?;
        return out.many(&entries, &["time", "actor", "kind", "target", "message"], |e| {
            vec![e.at.format(TIME).to_string(), e.actor.clone(), e.kind.clone(), e.target.clone(), e.message.clone()]
        });
    };
    let events: Vec<StageEvent> = client.get(&format!("{}/events", stage_path(project, stage)?))?;
    out.many(&events, &["time", "actor", "event", "component", "message"], |e| {
        vec![
            e.at.format(TIME).to_string(),
            e.actor.clone().unwrap_or_default(),
            e.kind.label().to_owned(),
            e.component.clone().unwrap_or_default(),
            e.message.clone(),
        ]
    })
}
