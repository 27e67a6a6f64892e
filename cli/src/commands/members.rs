//! `pergola create|list|delete member` (project owners).

use super::{project_path, segment};
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::MemberInput;
use pergola_domain::{format_time, Member, Role};

fn members_path(project: &str) -> Result<String, Failure> {
    Ok(format!("{}/members", project_path(project)?))
}

pub fn create(client: &Client, out: &Printer, project: &str, username: String, role: Role) -> Result<(), Failure> {
    let member: Member = client.post(&members_path(project)?, &MemberInput { username, role })?;
    out.one(&member, || format!("User '{}' is now a {} in project '{project}'.", member.username, member.role.as_str()))
}

pub fn list(client: &Client, out: &Printer, project: &str) -> Result<(), Failure> {
    let members: Vec<Member> = client.get(&members_path(project)?)?;
    out.many(&members, &["user", "role", "since"], |m| {
        vec![m.username.clone(), m.role.as_str().to_owned(), format_time(m.since)]
    })
}

pub fn delete(client: &Client, out: &Printer, project: &str, username: &str) -> Result<(), Failure> {
    client.delete::<()>(&format!("{}/{}", members_path(project)?, segment(username)?))?;
    out.one(&serde_json::json!({ "project": project, "removed": username }), || {
        format!("User '{username}' is no longer a member of project '{project}'.")
    })
}
