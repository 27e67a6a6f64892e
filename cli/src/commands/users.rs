//! `pergola create|list user` (administrators).

use super::access::{read_hidden, secret, YOUR_PASSWORD as YOURS};
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::NewUser;
use pergola_domain::{format_time, UserInfo};
use std::io::IsTerminal;

pub fn create(
    client: &Client,
    out: &Printer,
    username: String,
    admin: bool,
    password_stdin: bool,
) -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    let (password, yours) = if password_stdin {
        (secret(&format!("Password for {username}: "), interactive)?, secret(YOURS, interactive)?)
    } else if interactive {
        let first = read_hidden(&format!("Password for {username}: "))?;
        if read_hidden("Repeat it: ")? != first {
            return Err(Failure::new("the two passwords differ; nothing was created.".into()));
        }
        (first, read_hidden(YOURS)?)
    } else {
        return Err(Failure::new(
            "give --password-stdin to read the new user's password (first line) and yours (second line) from stdin."
                .into(),
        ));
    };
    let body = NewUser { username, password, admin, your_password: Some(yours).filter(|p| !p.is_empty()) };
    let user: UserInfo = client.post("/api/v1/users", &body)?;
    out.one(&user, || {
        let what = if user.is_admin { "Administrator" } else { "User" };
        format!(
            "{what} '{0}' created. Give them a project with: pergola create member {0} --role developer -p PROJECT",
            user.username
        )
    })
}

pub fn list(client: &Client, out: &Printer) -> Result<(), Failure> {
    let users: Vec<UserInfo> = client.get("/api/v1/users")?;
    out.many(&users, &["user", "administrator", "status", "created"], |u| {
        vec![
            u.username.clone(),
            if u.is_admin { "yes" } else { "no" }.to_owned(),
            if u.disabled { "disabled" } else { "active" }.to_owned(),
            format_time(u.created_at),
        ]
    })
}
