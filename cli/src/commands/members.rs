//! `pergola create|list|delete member` (project owners).

use super::{project_path, segment};
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::MemberInput;
use pergola_domain::{format_time, Member, Role};
use std::io::IsTerminal;

fn members_path(project: &str) -> Result<String, Failure> {
    Ok(format!("{}/members", project_path(project)?))
}

/// Adding a member or raising a role needs your own password too (the CLI's token alone may
/// not): with `--password-stdin` it is read first and sent; otherwise it is asked for on the
/// terminal only when the server says so (lowering a role asks nothing).
pub fn create(
    client: &Client,
    out: &Printer,
    project: &str,
    username: String,
    role: Role,
    password_stdin: bool,
) -> Result<(), Failure> {
    let path = members_path(project)?;
    let your_password = if password_stdin { super::access::your_password(true)? } else { None };
    let input = MemberInput { username, role, your_password };
    let member: Member = match client.post(&path, &input) {
        Err(e) if e.is_for("your_password") && input.your_password.is_none() && std::io::stdin().is_terminal() => {
            let your_password = super::access::your_password(false)?;
            client.post(&path, &MemberInput { your_password, ..input })?
        }
        answer => answer?,
    };
    let article = if member.role == Role::Owner { "an" } else { "a" };
    out.one(&member, || {
        format!("User '{}' is now {article} {} in project '{project}'.", member.username, member.role.as_str())
    })
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
