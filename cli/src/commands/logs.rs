//! `pergola logs COMPONENT -s STAGE -p PROJECT [-f] [--since AGE] [-n LINES] [--timestamps]`.

use super::{segment, stage_path};
use crate::args::Output;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::listing::percent_encode;
use pergola_domain::logs::{escape_json, format_line};
use pergola_domain::runtime::LogLine;
use std::io::Write;

pub struct Ask {
    pub component: String,
    pub stage: String,
    pub project: String,
    pub follow: bool,
    pub since: Option<String>,
    pub lines: u32,
    pub timestamps: bool,
}

pub fn print(client: &Client, out: &Printer, ask: &Ask) -> Result<(), Failure> {
    let base = format!("{}/components/{}/logs", stage_path(&ask.project, &ask.stage)?, segment(&ask.component)?);
    let mut query = format!("tail={}", ask.lines);
    if let Some(since) = &ask.since {
        query += &format!("&since={}", percent_encode(since));
    }
    let show = |line: &LogLine| -> Result<(), Failure> {
        let text = match out.format {
            Output::Json => escape_json(&serde_json::to_string(line).expect("serializable")),
            Output::Table | Output::Kubernetes => format_line(line, ask.timestamps),
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
            std::process::exit(0);
        }
        Ok(())
    };
    if !ask.follow {
        let lines: Vec<LogLine> = client.get(&format!("{base}?{query}"))?;
        return lines.iter().try_for_each(show);
    }
    // A followed stream ends now and then (after 15 minutes, while the component is not
    // running): go on after the last line printed, until interrupted.
    let mut last: Option<u64> = None;
    loop {
        let path = match last {
            None => format!("{base}?{query}&follow=true"),
            Some(after) => format!("{base}?after={after}&follow=true"),
        };
        client.get_lines(&path, |text| {
            let line: LogLine = serde_json::from_str(text)
                .map_err(|e| Failure::new(format!("unexpected line from the server ({e})")))?;
            last = Some(line.seq.max(last.unwrap_or(0)));
            show(&line)
        })?;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
