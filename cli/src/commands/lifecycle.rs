//! `pergola suspend|resume|restore stage`.

use super::stage_path;
use crate::client::{self, Client, Failure};
use crate::output::{quoted_label, Printer};
use pergola_domain::{Stage, StageStatus};

pub fn suspend(client: &Client, out: &Printer, project: &str, id: &str, no_wait: bool) -> Result<(), Failure> {
    let path = stage_path(project, id)?;
    let mut s: Stage = client.post_waiting(&format!("{path}/suspend"), &format!("Suspending stage '{id}'"))?;
    if s.status == StageStatus::Suspending && !no_wait {
        let doing = format!("Waiting for the components of '{id}' to stop (SIGKILL after {} s)", s.grace_secs);
        s = wait_while_suspending(client, &path, &doing)?;
    }
    out.one(&s, || match s.status {
        StageStatus::Suspending => format!(
            "Stage {} is suspending: its components have up to {} s to stop. See: pergola list component -s {} -p {}",
            quoted_label(&s),
            s.grace_secs,
            s.id,
            s.project_id
        ),
        _ => format!("Stage {} suspended.", quoted_label(&s)),
    })
}

pub fn resume(client: &Client, out: &Printer, project: &str, id: &str, no_wait: bool) -> Result<(), Failure> {
    let path = stage_path(project, id)?;
    let mut s: Stage = client.post_waiting(&format!("{path}/resume"), &format!("Resuming stage '{id}'"))?;
    // Still suspending: it resumes as soon as its components have stopped.
    if s.status == StageStatus::Suspending && !no_wait {
        let doing = format!("Waiting for the components of '{id}' to stop before it resumes");
        s = wait_while_suspending(client, &path, &doing)?;
    }
    out.one(&s, || match s.status {
        StageStatus::Suspending => format!(
            "Stage {} resumes as soon as its components have stopped (up to {} s).",
            quoted_label(&s),
            s.grace_secs
        ),
        _ => format!("Stage {} resumed ({}).", quoted_label(&s), s.status),
    })
}

/// Waits until the stage is no longer suspending, following its live stream (`…/changes`):
/// the stage is read again when the stream opens and whenever it says something changed. A
/// stream that ends (the server restarted, its 15 minutes are up) is opened again; one that
/// cannot be had (an older server, too many streams open) is replaced by a look every 250 ms.
fn wait_while_suspending(client: &Client, path: &str, doing: &str) -> Result<Stage, Failure> {
    let settled = |client: &Client| -> Result<Option<Stage>, Failure> {
        let now: Stage = client.get(path)?;
        Ok((now.status != StageStatus::Suspending).then_some(now))
    };
    client::spin(doing, || -> Result<Stage, Failure> {
        loop {
            let mut done = None;
            let followed = client.get_lines(&format!("{path}/changes"), |line| {
                if line.starts_with("event:") {
                    if let Some(stage) = settled(client)? {
                        done = Some(stage);
                        // Ends the stream: what was waited for has happened.
                        return Err(Failure::new(String::new()));
                    }
                }
                Ok(())
            });
            if let Some(stage) = done {
                return Ok(stage);
            }
            if let Some(stage) = settled(client)? {
                return Ok(stage);
            }
            if followed.is_err() {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    })
}

pub fn restore(client: &Client, out: &Printer, project: &str, id: &str) -> Result<(), Failure> {
    let s: Stage =
        client.post_waiting(&format!("{}/restore", stage_path(project, id)?), &format!("Restoring stage '{id}'"))?;
    out.one(&s, || format!("Stage {} restored ({}).", quoted_label(&s), s.status))
}
