//! What each command does: one module per family, each calling the REST API with the shared
//! request bodies of [`pergola_domain::wire`].

mod builds;
mod components;
mod config;
mod events;
mod lifecycle;
mod projects;
mod releases;
mod stages;

use crate::args::{Cli, Command, CreateWhat, ListWhat, OneStage, UpdateWhat};
use crate::client::{Client, Failure};
use crate::output::Printer;
use clap::CommandFactory;

pub fn run(cli: Cli) -> Result<(), Failure> {
    let client = Client::new(&cli.server);
    let out = Printer { format: cli.output };
    let (client, out) = (&client, &out);
    match cli.command {
        Command::Create { what: CreateWhat::Project { name, id } } => projects::create(client, out, name, id),
        Command::Create { what: CreateWhat::Stage { name, stage_type, project, id } } => {
            stages::create(client, out, &project, name, stage_type.0, id)
        }
        Command::Create { what: CreateWhat::Build { manifest, dir, project } } => {
            builds::create(client, out, &project, &manifest, dir)
        }
        Command::List { what: ListWhat::Project } => projects::list(client, out),
        Command::List { what: ListWhat::Stage { project, archived } } => stages::list(client, out, &project, archived),
        Command::List { what: ListWhat::Event { at } } => events::list(client, out, &at),
        Command::List { what: ListWhat::Build { project } } => builds::list(client, out, &project),
        Command::List { what: ListWhat::Release { at } } => releases::list(client, out, &at),
        Command::List { what: ListWhat::Component { at } } => components::list(client, out, &at),
        Command::Get { what: OneStage::Stage { id, project } } => stages::get(client, out, &project, &id),
        Command::Update { what: UpdateWhat::Stage { id, project, name, stage_type, grace } } => {
            stages::update(client, out, &project, &id, name, stage_type.map(|t| t.0), grace)
        }
        Command::Delete { what: OneStage::Stage { id, project } } => stages::delete(client, out, &project, &id),
        Command::Suspend { what: OneStage::Stage { id, project }, no_wait } => {
            lifecycle::suspend(client, out, &project, &id, no_wait)
        }
        Command::Resume { what: OneStage::Stage { id, project }, no_wait } => {
            lifecycle::resume(client, out, &project, &id, no_wait)
        }
        Command::Restore { what: OneStage::Stage { id, project } } => lifecycle::restore(client, out, &project, &id),
        Command::Deploy { build, stage, project } => releases::deploy(client, out, &project, &stage, build),
        Command::Config { action } => config::run(client, out, action),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pergola", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The API path of a stage.
fn stage_path(project: &str, id: &str) -> String {
    format!("/api/v1/projects/{project}/stages/{id}")
}
