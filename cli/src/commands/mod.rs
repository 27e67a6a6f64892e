//! What each command does: one module per family, each calling the REST API with the shared
//! request bodies of [`pergola_domain::wire`].

mod access;
mod builds;
mod components;
mod config;
mod events;
mod lifecycle;
mod links;
mod logs;
mod members;
mod projects;
mod promote;
mod releases;
mod stages;
mod users;

use crate::args::{Cli, Command, CreateWhat, DeleteWhat, DiffWhat, ListWhat, OneStage, Output, UpdateWhat};
use crate::client::{self, Client, Failure};
use crate::output::Printer;
use crate::stored::{self, Stored};
use clap::CommandFactory;
use pergola_domain::listing::percent_encode;
use pergola_domain::wire::Duplication;
use pergola_domain::StageQueryParams;

pub fn run(cli: Cli) -> Result<(), Failure> {
    let out = Printer { format: cli.output };
    if cli.output == Output::Kubernetes && !matches!(cli.command, Command::Get { what: OneStage::Stage { .. } }) {
        return Err(Failure::new(
            "-o kubernetes prints a stage's Kubernetes objects: use it with `pergola get stage STAGE -p PROJECT`"
                .into(),
        ));
    }
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "pergola", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Login { username, password_stdin, token_stdin } = cli.command {
        // A sign-in file that cannot be read is replaced by the new one.
        let server = cli.server.or_else(|| stored::load().ok().and_then(|s| s.server));
        let server = server.as_deref().unwrap_or(stored::DEFAULT_SERVER);
        client::check_server(&stored::normalize(server))?;
        return access::login(server, &out, access::LoginArgs { username, password_stdin, token_stdin });
    }
    let stored = stored::load()?;
    let (server, token) = resolve(cli.server, std::env::var("PERGOLA_TOKEN").ok(), &stored);
    client::check_server(&server)?;
    let client = Client::new(&server, token);
    let (client, out) = (&client, &out);
    match cli.command {
        Command::Login { .. } | Command::Completion { .. } => unreachable!("handled above"),
        Command::Logout => access::logout(client, out, &stored),
        Command::Whoami => access::whoami(client, out),
        Command::Create { what: CreateWhat::Token { name, expires_in, password_stdin } } => {
            access::create_token(client, out, name, expires_in, password_stdin)
        }
        Command::List { what: ListWhat::Token } => access::list_tokens(client, out),
        Command::Delete { what: DeleteWhat::Token { name } } => access::delete_token(client, out, &name),
        Command::Create { what: CreateWhat::User { name, admin, password_stdin } } => {
            users::create(client, out, name, admin, password_stdin)
        }
        Command::List { what: ListWhat::User } => users::list(client, out),
        Command::Create { what: CreateWhat::Member { username, role, project, password_stdin } } => {
            members::create(client, out, &project, username, role.0, password_stdin)
        }
        Command::List { what: ListWhat::Member { project } } => members::list(client, out, &project),
        Command::Delete { what: DeleteWhat::Member { username, project } } => {
            members::delete(client, out, &project, &username)
        }
        Command::Create { what: CreateWhat::Project { name, id } } => projects::create(client, out, name, id),
        Command::Create {
            what: CreateWhat::Stage { name, from: Some(from), project, id, deploy, with_storage, .. },
        } => promote::duplicate(client, out, &project, &from, Duplication { name, id, deploy, with_storage }),
        Command::Create { what: CreateWhat::Stage { name, stage_type, project, id, .. } } => {
            let stage_type = stage_type.ok_or_else(|| Failure::new("--type is required (or --from).".into()))?;
            stages::create(client, out, &project, name, stage_type.0, id)
        }
        Command::Promote { stage, to, project, yes } => promote::promote(client, out, &project, &stage, &to, yes),
        Command::Diff { what: DiffWhat::Stage { a, b, project } } => promote::diff(client, out, &project, &a, &b),
        Command::Create { what: CreateWhat::Build { dir, manifest, server_path, project } } => {
            match (server_path, manifest) {
                (Some(path), Some(manifest)) => builds::register(client, out, &project, &manifest, path),
                (_, manifest) => {
                    let dir = dir.expect("clap requires --dir without --server-path");
                    builds::upload(client, out, &project, &dir, manifest.as_deref())
                }
            }
        }
        Command::List { what: ListWhat::Project } => projects::list(client, out),
        Command::List { what: ListWhat::Stage { project, archived: true, .. } } => {
            stages::list_archived(client, out, &project)
        }
        Command::List {
            what: ListWhat::Stage { project, archived: false, search, stage_type, status, sort, limit },
        } => {
            let params = StageQueryParams { q: search, stage_type, status, sort, limit: None, cursor: None };
            stages::list(client, out, &project, params, limit)
        }
        Command::List { what: ListWhat::Event { stage, project } } => {
            events::list(client, out, &project, stage.as_deref())
        }
        Command::List { what: ListWhat::Build { project } } => builds::list(client, out, &project),
        Command::List { what: ListWhat::Release { at } } => releases::list(client, out, &at),
        Command::List { what: ListWhat::Component { at } } => components::list(client, out, &at),
        Command::Get { what: OneStage::Stage { id, project } } => stages::get(client, out, &project, &id),
        Command::Update { what: UpdateWhat::Stage { id, project, name, stage_type, grace, visibility } } => {
            let patch = pergola_domain::wire::StagePatch::new(name, stage_type.map(|t| t.0), grace)
                .with_visibility(visibility.map(|v| v.0));
            stages::update(client, out, &project, &id, patch)
        }
        Command::Create { what: CreateWhat::Link { at, expires_in } } => links::create(client, out, &at, &expires_in),
        Command::List { what: ListWhat::Link { at } } => links::list(client, out, &at),
        Command::Delete { what: DeleteWhat::Link { id, at } } => links::delete(client, out, &at, &id),
        Command::Delete { what: DeleteWhat::Stage { id, project } } => stages::delete(client, out, &project, &id),
        Command::Suspend { what: OneStage::Stage { id, project }, no_wait } => {
            lifecycle::suspend(client, out, &project, &id, no_wait)
        }
        Command::Resume { what: OneStage::Stage { id, project }, no_wait } => {
            lifecycle::resume(client, out, &project, &id, no_wait)
        }
        Command::Restore { what: OneStage::Stage { id, project } } => lifecycle::restore(client, out, &project, &id),
        Command::Deploy { build, stage, project } => releases::deploy(client, out, &project, &stage, build),
        Command::Config { action } => config::run(client, out, action),
        Command::Logs { component, stage, project, follow, since, lines, timestamps } => {
            let ask = logs::Ask { component, stage, project, follow, since, lines, timestamps };
            logs::print(client, out, &ask)
        }
    }
}

/// The server (`--server`/`PERGOLA_URL`, else the one signed in to, else the default) and the
/// token (`PERGOLA_TOKEN`, else the stored one — only for the server it was stored for, so a
/// token never goes to another server).
fn resolve(server: Option<String>, env_token: Option<String>, stored: &Stored) -> (String, Option<String>) {
    let stored_server = stored.server.as_deref().map(stored::normalize);
    let server = server.map(|s| stored::normalize(&s)).or(stored_server.clone());
    let server = server.unwrap_or_else(|| stored::DEFAULT_SERVER.to_owned());
    let env_token = env_token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let token =
        env_token.or_else(|| stored.token.clone().filter(|_| stored_server.as_deref() == Some(server.as_str())));
    (server, token)
}

/// `s` — a name or ID from the command line — as one segment of an API path: percent-encoded
/// ([`percent_encode`] leaves letters, digits and `-._~` as they are), so that a `/`, `#`, `?`
/// or `%` in it stays inside its segment: `config set 'A#B=1'` must not set `A` (the URL's
/// fragment would drop `#B`), nor `delete member 'x/../../stages/prod'` delete a stage once the
/// URL parser has resolved the `..`. A segment that is `.` or `..` itself is refused: the URL
/// parser resolves it however it is written (`%2E%2E` too), and so is an empty one.
fn segment(s: &str) -> Result<String, Failure> {
    match s {
        "" => Err(Failure::new("an empty name or ID was given.".into())),
        "." | ".." => Err(Failure::new(format!("'{s}' is not a valid name or ID."))),
        _ => Ok(percent_encode(s)),
    }
}

/// The API path of a project.
fn project_path(project: &str) -> Result<String, Failure> {
    Ok(format!("/api/v1/projects/{}", segment(project)?))
}

/// The API path of a stage.
fn stage_path(project: &str, id: &str) -> Result<String, Failure> {
    Ok(format!("{}/stages/{}", project_path(project)?, segment(id)?))
}

#[cfg(test)]
mod tests {
    use super::{resolve, segment, stage_path};
    use crate::stored::Stored;

    #[test]
    fn names_from_the_command_line_stay_in_their_path_segment() {
        let ok = |s: &str| segment(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("my-stage_2.0~x"), "my-stage_2.0~x");
        assert_eq!(ok("A#B"), "A%23B");
        assert_eq!(ok("x/../../stages/prod"), "x%2F..%2F..%2Fstages%2Fprod");
        assert_eq!(ok("a?b=c d%2e"), "a%3Fb%3Dc%20d%252e");
        assert_eq!(ok("..."), "...");
        for bad in ["", ".", ".."] {
            assert!(segment(bad).is_err(), "{bad:?}");
        }
        assert_eq!(stage_path("shop", "qa").ok().as_deref(), Some("/api/v1/projects/shop/stages/qa"));
        assert_eq!(stage_path("shop", "q/a").ok().as_deref(), Some("/api/v1/projects/shop/stages/q%2Fa"));
        assert!(stage_path("..", "qa").is_err() && stage_path("shop", ".").is_err());
    }

    #[test]
    fn the_stored_token_goes_only_to_its_server_and_pergola_token_wins() {
        let stored = Stored { server: Some("http://a:3000/".into()), token: Some("pgt_stored".into()) };
        let t = |s: &str| Some(s.to_owned());
        assert_eq!(resolve(None, None, &stored), ("http://a:3000".into(), t("pgt_stored")));
        assert_eq!(resolve(t("http://a:3000"), None, &stored), ("http://a:3000".into(), t("pgt_stored")));
        assert_eq!(resolve(t("http://b:3000"), None, &stored), ("http://b:3000".into(), None));
        assert_eq!(resolve(t("http://b:3000"), t("pgt_env"), &stored), ("http://b:3000".into(), t("pgt_env")));
        assert_eq!(resolve(None, t(" "), &stored), ("http://a:3000".into(), t("pgt_stored")));
        assert_eq!(resolve(None, None, &Stored::default()), ("http://127.0.0.1:3000".into(), None));
    }
}
