//! `pergola config set|get|list|unset`.

use super::{segment, stage_path};
use crate::args::{ConfigAction, Output, StageAt};
use crate::client::{Client, Failure};
use crate::output::{for_stdout, Printer};
use pergola_domain::wire::ConfigInput;
use pergola_domain::{format_time, ConfigEntry};

pub fn run(client: &Client, out: &Printer, action: ConfigAction) -> Result<(), Failure> {
    let base =
        |at: &StageAt| -> Result<String, Failure> { Ok(format!("{}/config", stage_path(&at.project, &at.stage)?)) };
    match action {
        ConfigAction::Set { pairs, secret, at } => {
            let mut saved = Vec::new();
            for (key, value) in pairs {
                let path = format!("{}/{}", base(&at)?, segment(&key)?);
                let entry: ConfigEntry = client.put(&path, &ConfigInput { value, secret })?;
                saved.push(entry);
            }
            let keys: Vec<&str> = saved.iter().map(|e| e.key.as_str()).collect();
            out.one(&saved, || {
                format!("Set {} on stage '{}'. It applies with the stage's next release.", keys.join(", "), at.stage)
            })
        }
        ConfigAction::Get { key, at } => {
            let entries: Vec<ConfigEntry> = client.get(&base(&at)?)?;
            let entry = entries
                .into_iter()
                .find(|e| e.key == key)
                .ok_or_else(|| Failure::new(format!("Stage '{}' has no setting '{key}'.", at.stage)))?;
            match (&entry.value, out.format) {
                (_, Output::Json) => out.one(&entry, String::new),
                (Some(value), _) => {
                    // A value may span lines, and may hold escapes: escaped on a terminal.
                    println!("{}", for_stdout(value));
                    Ok(())
                }
                (None, _) => Err(Failure::new(format!("'{key}' is a secret: its value is not shown after saving."))),
            }
        }
        ConfigAction::List { at } => {
            let entries: Vec<ConfigEntry> = client.get(&base(&at)?)?;
            out.many(&entries, &["key", "value", "updated"], |e| {
                vec![
                    e.key.clone(),
                    e.value.clone().unwrap_or_else(|| "•••••• (secret)".into()),
                    format_time(e.updated_at),
                ]
            })
        }
        ConfigAction::Unset { key, at } => {
            let remaining: Vec<ConfigEntry> = client.delete(&format!("{}/{}", base(&at)?, segment(&key)?))?;
            out.one(&remaining, || format!("Removed {key} from stage '{}'.", at.stage))
        }
    }
}
