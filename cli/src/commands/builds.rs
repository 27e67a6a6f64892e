//! `pergola create build`, `pergola list build`.

use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::NewBuild;
use pergola_domain::{format_time, Build};
use std::path::Path;

pub fn create(client: &Client, out: &Printer, project: &str, manifest: &Path, dir: String) -> Result<(), Failure> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", manifest.display())))?;
    let body = NewBuild { manifest: text, workdir: dir };
    let build: Build = client.post(&format!("/api/v1/projects/{project}/builds"), &body)?;
    out.one(&build, || {
        format!(
            "Build {} registered{}.",
            build.number,
            build.version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
        )
    })
}

pub fn list(client: &Client, out: &Printer, project: &str) -> Result<(), Failure> {
    let builds: Vec<Build> = client.get(&format!("/api/v1/projects/{project}/builds"))?;
    out.many(&builds, &["build", "version", "components", "created"], |b| {
        let components = pergola_domain::parse_manifest(&b.manifest)
            .map(|m| m.components.into_iter().map(|c| c.name).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        vec![b.number.to_string(), b.version.clone().unwrap_or_default(), components, format_time(b.created_at)]
    })
}
