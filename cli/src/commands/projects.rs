//! `pergola create project`, `pergola list project`.

use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::NewProject;
use pergola_domain::{format_time, Project};

pub fn create(client: &Client, out: &Printer, name: String, id: Option<String>) -> Result<(), Failure> {
    let project: Project = client.post("/api/v1/projects", &NewProject { name, id })?;
    out.one(&project, || format!("Project '{}' created with ID '{}'.", project.name, project.id))
}

pub fn list(client: &Client, out: &Printer) -> Result<(), Failure> {
    let projects: Vec<Project> = client.get("/api/v1/projects")?;
    out.many(&projects, &["project", "name", "created"], |p| {
        vec![p.id.clone(), p.name.clone(), format_time(p.created_at)]
    })
}
