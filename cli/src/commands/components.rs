//! `pergola list component`.

use super::stage_path;
use crate::args::StageAt;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::runtime::ComponentStatus;

pub fn list(client: &Client, out: &Printer, at: &StageAt) -> Result<(), Failure> {
    let path = format!("{}/components", stage_path(&at.project, &at.stage)?);
    let components: Vec<ComponentStatus> = client.get(&path)?;
    out.many(&components, &["component", "kind", "state", "health", "restarts", "uptime", "port"], |c| {
        let state = match c.kill_in_secs {
            Some(left) => format!("{} (SIGKILL in {left} s)", c.state.as_str()),
            None => c.state.as_str().to_owned(),
        };
        vec![
            c.name.clone(),
            format!("{:?}", c.kind).to_lowercase(),
            state,
            c.health_label().to_owned(),
            c.restarts.to_string(),
            c.uptime_secs.map(pergola_domain::runtime::format_duration).unwrap_or_default(),
            c.port.map(|p| p.to_string()).unwrap_or_default(),
        ]
    })
}
