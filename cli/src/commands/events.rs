//! `pergola list event`.

use super::stage_path;
use crate::args::StageAt;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::StageEvent;

pub fn list(client: &Client, out: &Printer, at: &StageAt) -> Result<(), Failure> {
    let events: Vec<StageEvent> = client.get(&format!("{}/events", stage_path(&at.project, &at.stage)))?;
    out.many(&events, &["time", "event", "component", "message"], |e| {
        vec![
            e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.kind.label().to_owned(),
            e.component.clone().unwrap_or_default(),
            e.message.clone(),
        ]
    })
}
