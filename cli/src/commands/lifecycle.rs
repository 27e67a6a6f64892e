//! `pergola suspend|resume|restore stage`.

use super::stage_path;
use crate::client::{self, Client, Failure};
use crate::output::{quoted_label, Printer};
use pergola_domain::{Stage, StageStatus};

pub fn suspend(client: &Client, out: &Printer, project: &str, id: &str, no_wait: bool) -> Result<(), Failure> {
    let path = stage_path(project, id);
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
    let path = stage_path(project, id);
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

fn wait_while_suspending(client: &Client, path: &str, doing: &str) -> Result<Stage, Failure> {
    client::spin(doing, || -> Result<Stage, Failure> {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let now: Stage = client.get(path)?;
            if now.status != StageStatus::Suspending {
                return Ok(now);
            }
        }
    })
}

pub fn restore(client: &Client, out: &Printer, project: &str, id: &str) -> Result<(), Failure> {
    let s: Stage =
        client.post_waiting(&format!("{}/restore", stage_path(project, id)), &format!("Restoring stage '{id}'"))?;
    out.one(&s, || format!("Stage {} restored ({}).", quoted_label(&s), s.status))
}
