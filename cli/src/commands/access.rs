//! `pergola login|logout|whoami`, `pergola create|list|delete token`.

use super::segment;
use crate::args::Output;
use crate::client::{Client, Failure};
use crate::output::Printer;
use crate::stored::{self, Stored};
use pergola_domain::logs::escape_controls;
use pergola_domain::wire::{Login, NewToken};
use pergola_domain::{format_time, CreatedToken, Me, TokenInfo};
use std::io::{BufRead, IsTerminal};

/// How `pergola login` proves who you are.
pub struct LoginArgs {
    pub username: Option<String>,
    pub password_stdin: bool,
    pub token_stdin: bool,
}

/// Signs in to `server` (with a password for a new token, or with a token), then keeps the
/// server and the token for the next commands.
pub fn login(server: &str, out: &Printer, args: LoginArgs) -> Result<(), Failure> {
    let server = stored::normalize(server);
    let interactive = std::io::stdin().is_terminal();
    let token = if args.token_stdin {
        let token = secret("API token: ", interactive)?.trim().to_owned();
        if token.is_empty() {
            return Err(Failure::new("no API token on stdin.".into()));
        }
        token
    } else {
        let username = match args.username {
            Some(username) => username,
            None if interactive => prompt_line("Username: ")?,
            None => {
                return Err(Failure::new(
                    "give --username when the password comes from stdin (or sign in with --token-stdin).".into(),
                ))
            }
        };
        let password = if args.password_stdin || !interactive {
            secret("Password: ", interactive)?
        } else {
            read_hidden("Password: ")?
        };
        if password.is_empty() {
            return Err(Failure::new("no password given.".into()));
        }
        let body = Login { username, password, token_name: Some(token_name()), expires_in_days: None };
        let created: CreatedToken = Client::new(&server, None).post_credentials("/api/v1/login", &body)?;
        created.token
    };
    let me: Me = Client::new(&server, Some(token.clone())).get_credentials("/api/v1/user")?;
    stored::save(&Stored { server: Some(server.clone()), token: Some(token) })?;
    out.one(&me, || format!("Signed in to {server} as {}.", me.username))
}

/// Revokes the token in use and forgets it (also when the server no longer accepts it).
pub fn logout(client: &Client, out: &Printer, stored: &Stored) -> Result<(), Failure> {
    let server = client.base().to_owned();
    let Some(token) = client.token().map(str::to_owned) else {
        return out.one(&serde_json::json!({ "server": server, "revoked": false }), || {
            format!("Not signed in to {server}: nothing to sign out of.")
        });
    };
    let revoked = client.post_unless_unauthorized("/api/v1/logout")?;
    if stored.token.as_deref() == Some(token.as_str()) {
        stored::save(&Stored { token: None, ..stored.clone() })?;
    }
    out.one(&serde_json::json!({ "server": server, "revoked": revoked }), || {
        if revoked {
            format!("Signed out of {server}: the token is revoked.")
        } else {
            format!("Signed out of {server} (the server no longer accepted the token).")
        }
    })
}

pub fn whoami(client: &Client, out: &Printer) -> Result<(), Failure> {
    let me: Me = client.get("/api/v1/user")?;
    out.one(&me, || {
        format!(
            "user:   {}\nadmin:  {}\ntoken:  {}\nserver: {}",
            me.username,
            if me.is_admin { "yes" } else { "no" },
            me.token.as_deref().unwrap_or("(a dashboard session)"),
            client.base()
        )
    })
}

/// Prints the new token alone on stdout, so that `TOKEN=$(pergola create token ci)` works.
/// The prompt for the caller's own password (the server asks it of a token that makes a way
/// in: a token, a user).
pub const YOUR_PASSWORD: &str = "Your own password, to confirm it is you: ";

/// The caller's own password: asked for on a terminal, else the next line of stdin with
/// `--password-stdin`; `None` when empty.
pub fn your_password(password_stdin: bool) -> Result<Option<String>, Failure> {
    let interactive = std::io::stdin().is_terminal();
    if !interactive && !password_stdin {
        return Err(Failure::new("give --password-stdin to read your password from stdin.".into()));
    }
    Ok(Some(secret(YOUR_PASSWORD, interactive && !password_stdin)?).filter(|p| !p.is_empty()))
}

pub fn create_token(
    client: &Client,
    out: &Printer,
    name: String,
    expires_in: Option<u32>,
    password_stdin: bool,
) -> Result<(), Failure> {
    let your_password = your_password(password_stdin)?;
    let body = NewToken { name, expires_in_days: expires_in, your_password };
    let created: CreatedToken = client.post("/api/v1/tokens", &body)?;
    if out.format == Output::Table && std::io::stderr().is_terminal() {
        let expiry = created.expires_at.map(|t| format!(", valid until {}", format_time(t))).unwrap_or_default();
        let name = escape_controls(&created.name);
        eprintln!("Token '{name}' created{expiry}. It is shown this once: keep it now.");
    }
    out.one(&created, || created.token.clone())
}

pub fn list_tokens(client: &Client, out: &Printer) -> Result<(), Failure> {
    let tokens: Vec<TokenInfo> = client.get("/api/v1/tokens")?;
    out.many(&tokens, &["token", "created", "expires", "last used"], |t| {
        vec![
            t.name.clone(),
            format_time(t.created_at),
            t.expires_at.map_or_else(|| "never".to_owned(), format_time),
            t.last_used_at.map_or_else(|| "not yet".to_owned(), format_time),
        ]
    })
}

pub fn delete_token(client: &Client, out: &Printer, name: &str) -> Result<(), Failure> {
    client.delete::<()>(&format!("/api/v1/tokens/{}", segment(name)?))?;
    out.one(&serde_json::json!({ "revoked": name }), || format!("Token '{name}' revoked: it no longer works."))
}

/// The name of the token `pergola login` creates: `cli-HOSTNAME` (signing in again from the
/// same machine replaces it).
fn token_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(60)
        .collect();
    if host.is_empty() {
        "cli".to_owned()
    } else {
        format!("cli-{host}")
    }
}

/// A secret: asked for without echo on a terminal, else the first line of stdin.
pub fn secret(prompt: &str, interactive: bool) -> Result<String, Failure> {
    if interactive {
        read_hidden(prompt)
    } else {
        first_line_of_stdin()
    }
}

/// Asks for a secret on the terminal without echoing it.
pub fn read_hidden(prompt: &str) -> Result<String, Failure> {
    rpassword::prompt_password(prompt).map_err(|e| Failure::new(format!("cannot read from the terminal: {e}")))
}

fn prompt_line(prompt: &str) -> Result<String, Failure> {
    eprint!("{prompt}");
    let line = first_line_of_stdin()?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(Failure::new("no username given.".into()));
    }
    Ok(line)
}

/// The first line of stdin, without its line ending (the rest of the line is kept as is).
fn first_line_of_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_login_token_is_named_after_the_host_within_the_rules() {
        let name = super::token_name();
        assert!(name == "cli" || name.starts_with("cli-"), "{name}");
        assert!(name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{name}");
    }
}
