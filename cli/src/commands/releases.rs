//! `pergola deploy`, `pergola list release`.

use super::stage_path;
use crate::args::StageAt;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::NewRelease;
use pergola_domain::{format_time, Release};

pub fn deploy(client: &Client, out: &Printer, project: &str, stage: &str, build: i64) -> Result<(), Failure> {
    let release: Release = client.post_json_waiting(
        &format!("{}/releases", stage_path(project, stage)?),
        &NewRelease { build },
        &format!("Deploying build {build} to stage '{stage}'"),
    )?;
    out.one(&release, || {
        format!("Release #{} (build {}) deployed to stage '{}'.", release.number, release.build_number, stage)
    })
}

pub fn list(client: &Client, out: &Printer, at: &StageAt) -> Result<(), Failure> {
    let releases: Vec<Release> = client.get(&format!("{}/releases", stage_path(&at.project, &at.stage)?))?;
    out.many(&releases, &["release", "build", "version", "deployed"], |r| {
        vec![
            format!("#{}", r.number),
            r.build_number.to_string(),
            r.build_version.clone().unwrap_or_default(),
            format_time(r.created_at),
        ]
    })
}
