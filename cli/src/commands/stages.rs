//! `pergola create|list|get|update|delete stage`.

use super::{project_path, stage_path};
use crate::args::Output;
use crate::client::{Client, Failure};
use crate::output::{for_stdout, quoted_label, Printer};
use pergola_domain::wire::{NewStage, StagePatch};
use pergola_domain::{format_time, Stage, StageQueryParams, StageType, MAX_PAGE_SIZE};

pub fn create(
    client: &Client,
    out: &Printer,
    project: &str,
    name: String,
    stage_type: StageType,
    id: Option<String>,
) -> Result<(), Failure> {
    let stage: Stage =
        client.post(&format!("{}/stages", project_path(project)?), &NewStage::new(name, stage_type, id))?;
    out.one(&stage, || {
        format!(
            "Stage {} created in project '{}' ({}, {}).",
            quoted_label(&stage),
            stage.project_id,
            stage.stage_type.as_str(),
            stage.status
        )
    })
}

/// The live stages matching `params`, all of them (page by page, following the server's
/// `Link: rel="next"`) or at most `limit`.
pub fn list(
    client: &Client,
    out: &Printer,
    project: &str,
    mut params: StageQueryParams,
    limit: Option<u32>,
) -> Result<(), Failure> {
    let page_size = limit.unwrap_or(MAX_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
    params.limit = Some(page_size.to_string());
    let first = format!("{}/stages?{}", project_path(project)?, params.query_string());
    let mut stages: Vec<Stage> = client.get_all_pages(&first, limit.map(|n| n as usize))?;
    if let Some(n) = limit {
        stages.truncate(n as usize);
    }
    out.many(&stages, &["stage", "type", "status"], |s| {
        vec![s.display_label(), s.stage_type.as_str().to_owned(), s.status.to_string()]
    })
}

/// The archived stages, with when they were deleted and when they go for good.
pub fn list_archived(client: &Client, out: &Printer, project: &str) -> Result<(), Failure> {
    let stages: Vec<Stage> = client.get(&format!("{}/stages?archived=true", project_path(project)?))?;
    out.many(&stages, &["stage", "type", "archived", "deleted for good on"], |s| {
        vec![
            s.display_label(),
            s.stage_type.as_str().to_owned(),
            s.archived_at.map(format_time).unwrap_or_default(),
            s.purge_due_at.map(format_time).unwrap_or_default(),
        ]
    })
}

pub fn get(client: &Client, out: &Printer, project: &str, id: &str) -> Result<(), Failure> {
    if out.format == Output::Kubernetes {
        // YAML: its line breaks are meant, what is on each line (a setting's value, a name) is
        // escaped on a terminal; piped (to kubectl), the objects as they are.
        print!("{}", for_stdout(&client.get_text(&format!("{}/kubernetes", stage_path(project, id)?))?));
        return Ok(());
    }
    let s: Stage = client.get(&stage_path(project, id)?)?;
    out.one(&s, || {
        format!(
            "name:     {}\nid:       {}\nproject:  {}\ntype:     {}\nstatus:   {}\ngrace:    {} s\ncreated:  {}\nchanged:  {}",
            s.name,
            s.id,
            s.project_id,
            s.stage_type.as_str(),
            s.status,
            s.grace_secs,
            format_time(s.created_at),
            format_time(s.updated_at)
        )
    })
}

pub fn update(client: &Client, out: &Printer, project: &str, id: &str, patch: StagePatch) -> Result<(), Failure> {
    if patch.is_empty() {
        return Err(Failure::new("nothing to change: give --name, --type, --grace or --visibility".into()));
    }
    let visibility = patch.visibility.clone();
    let s: Stage = client.patch(&stage_path(project, id)?, &patch)?;
    out.one(&s, || {
        let shared = match visibility.as_deref() {
            Some("public") => ", share links open to anyone with the link",
            Some(_) => ", share links for members only",
            None => "",
        };
        format!(
            "Stage {} updated ({}, grace period {} s{shared}).",
            quoted_label(&s),
            s.stage_type.as_str(),
            s.grace_secs
        )
    })
}

pub fn delete(client: &Client, out: &Printer, project: &str, id: &str) -> Result<(), Failure> {
    let s: Stage = client.delete(&stage_path(project, id)?)?;
    out.one(&s, || {
        format!(
            "Stage {} deleted: archived until {}. Restore it with: pergola restore stage {} -p {}",
            quoted_label(&s),
            s.purge_due_at.map(format_time).unwrap_or_default(),
            s.id,
            s.project_id
        )
    })
}
