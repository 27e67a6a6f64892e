//! `pergola`: manage Pergola Stages from a shell, over the REST API.
//!
//! Exit codes: 0 success, 1 the request failed (the reason is one line on stderr), 2 usage.

mod client;
mod table;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use client::{Client, Failure};
use pergola_domain::runtime::ComponentStatus;
use pergola_domain::{format_time, Build, ConfigEntry, Project, Release, Stage, StageEvent, StageStatus};
use serde_json::json;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  pergola create project my-new-project
  pergola create stage my-new-stage --type dev -p my-new-project
  pergola create stage \"Integration tests\" --type qa --id test -p my-new-project
  pergola list stage -p my-new-project
  pergola suspend stage test -p my-new-project
  pergola update stage test --grace 30 -p my-new-project
  pergola list event -s test -p my-new-project
  pergola delete stage test -p my-new-project
  pergola list stage --archived -p my-new-project
  pergola restore stage test -p my-new-project
  pergola create build --manifest pergola.toml --dir /srv/builds/shop-1.0 -p my-new-project
  pergola deploy 1 -s test -p my-new-project
  pergola list component -s test -p my-new-project
  pergola config set LOG_LEVEL=debug -s test -p my-new-project
  pergola config set API_TOKEN=s3cr3t --secret -s test -p my-new-project
  pergola list stage -p my-new-project -o json | jq '.[].id'
  pergola completion bash > /etc/bash_completion.d/pergola";

#[derive(Parser)]
#[command(name = "pergola", version, about = "Manage the Stages of your Pergola Projects.", after_help = EXAMPLES)]
struct Cli {
    /// URL of the Pergola server.
    #[arg(long, global = true, env = "PERGOLA_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// Output format: a table for people, JSON for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    Dev,
    Qa,
    Prod,
}

impl TypeArg {
    fn as_str(self) -> &'static str {
        match self {
            TypeArg::Dev => "dev",
            TypeArg::Qa => "qa",
            TypeArg::Prod => "prod",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a project or a stage.
    Create {
        #[command(subcommand)]
        what: CreateWhat,
    },
    /// List projects, or the stages of a project.
    List {
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Show one stage.
    Get {
        #[command(subcommand)]
        what: OneStage,
    },
    /// Suspend a stage: components shut down gracefully, traffic and scheduled jobs stop, storage is kept.
    /// Waits until every component has stopped (at most the stage's grace period).
    Suspend {
        #[command(subcommand)]
        what: OneStage,
        /// Answer at once, while the stage may still be "suspending".
        #[arg(long, global = true)]
        no_wait: bool,
    },
    /// Change a stage's name, type or grace period (its ID never changes).
    Update {
        #[command(subcommand)]
        what: UpdateWhat,
    },
    /// Resume a suspended stage.
    Resume {
        #[command(subcommand)]
        what: OneStage,
    },
    /// Delete a stage: it is archived and can be restored until its retention runs out.
    Delete {
        #[command(subcommand)]
        what: OneStage,
    },
    /// Restore an archived stage, with its configuration and previous status.
    Restore {
        #[command(subcommand)]
        what: OneStage,
    },
    /// Deploy a build to a stage as its new release (it replaces the running one).
    Deploy {
        /// Build number (see `pergola list build`).
        build: i64,
        /// Stage ID.
        #[arg(short, long)]
        stage: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// Manage a stage's configuration (environment settings; they apply with the next release).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum CreateWhat {
    /// Create a project; its ID is derived from the name unless --id is given.
    Project {
        /// Display name.
        name: String,
        /// Project ID (default: derived from the name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Register a build from its manifest; its files are in DIR on the server.
    Build {
        /// The manifest file (TOML).
        #[arg(long)]
        manifest: std::path::PathBuf,
        /// The build's directory on the server (absolute).
        #[arg(long)]
        dir: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// Create a stage; its ID is derived from the name unless --id is given.
    Stage {
        /// Display name.
        name: String,
        /// Stage type.
        #[arg(short = 't', long = "type", value_enum, ignore_case = true)]
        stage_type: TypeArg,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// Stage ID (default: derived from the name).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum UpdateWhat {
    /// The stage with this Stage ID.
    Stage {
        /// Stage ID.
        id: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New stage type.
        #[arg(short = 't', long = "type", value_enum, ignore_case = true)]
        stage_type: Option<TypeArg>,
        /// Seconds components get between SIGTERM and SIGKILL when the stage stops (1-3600).
        #[arg(long)]
        grace: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ListWhat {
    /// List a stage's events (deployed, suspended, resumed, crashed, restarted, config changed…), newest first.
    #[command(visible_alias = "events")]
    Event {
        #[command(flatten)]
        at: StageAt,
    },
    /// List a project's builds.
    #[command(visible_alias = "builds")]
    Build {
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// List a stage's releases, newest (running) first.
    #[command(visible_alias = "releases")]
    Release {
        #[command(flatten)]
        at: StageAt,
    },
    /// List a stage's components with their state, health and restarts.
    #[command(visible_alias = "components")]
    Component {
        #[command(flatten)]
        at: StageAt,
    },
    /// List all projects.
    #[command(visible_alias = "projects")]
    Project,
    /// List the stages of a project.
    #[command(visible_alias = "stages")]
    Stage {
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// List the archived (deleted, still restorable) stages with their deletion dates.
        #[arg(long)]
        archived: bool,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Set one or more settings: KEY=VALUE ...
    Set {
        /// KEY=VALUE pairs.
        #[arg(required = true, value_parser = parse_pair)]
        pairs: Vec<(String, String)>,
        /// Store the values as secrets: never shown again after saving.
        #[arg(long)]
        secret: bool,
        #[command(flatten)]
        at: StageAt,
    },
    /// Print one setting's value.
    Get {
        key: String,
        #[command(flatten)]
        at: StageAt,
    },
    /// List a stage's settings (secret values are masked).
    List {
        #[command(flatten)]
        at: StageAt,
    },
    /// Remove a setting.
    Unset {
        key: String,
        #[command(flatten)]
        at: StageAt,
    },
}

#[derive(clap::Args)]
struct StageAt {
    /// Stage ID.
    #[arg(short, long)]
    stage: String,
    /// Project ID.
    #[arg(short, long)]
    project: String,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

#[derive(Subcommand)]
enum OneStage {
    /// The stage with this Stage ID.
    Stage {
        /// Stage ID.
        id: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let client = Client::new(&cli.server);
    let out = Printer { format: cli.output };
    match cli.command {
        Command::Create { what: CreateWhat::Project { name, id } } => {
            let project: Project = client.post("/api/v1/projects", &json!({ "name": name, "id": id }))?;
            out.one(&project, || format!("Project '{}' created with ID '{}'.", project.name, project.id))
        }
        Command::Create { what: CreateWhat::Stage { name, stage_type, project, id } } => {
            let body = json!({ "name": name, "type": stage_type.as_str(), "id": id });
            let stage: Stage = client.post(&format!("/api/v1/projects/{project}/stages"), &body)?;
            out.one(&stage, || {
                format!(
                    "Stage {} created in project '{}' ({}, {}).",
                    quoted_label(&stage),
                    stage.project_id,
                    stage.stage_type.as_str(),
                    stage.status
                )
            })
        }
        Command::List { what: ListWhat::Project } => {
            let projects: Vec<Project> = client.get("/api/v1/projects")?;
            out.many(&projects, &["project", "name", "created"], |p| {
                vec![p.id.clone(), p.name.clone(), format_time(p.created_at)]
            })
        }
        Command::List { what: ListWhat::Stage { project, archived: false } } => {
            let stages: Vec<Stage> = client.get(&format!("/api/v1/projects/{project}/stages"))?;
            out.many(&stages, &["stage", "type", "status"], |s| {
                vec![s.display_label(), s.stage_type.as_str().to_owned(), s.status.to_string()]
            })
        }
        Command::List { what: ListWhat::Stage { project, archived: true } } => {
            let stages: Vec<Stage> = client.get(&format!("/api/v1/projects/{project}/stages?archived=true"))?;
            out.many(&stages, &["stage", "type", "archived", "deleted for good on"], |s| {
                vec![
                    s.display_label(),
                    s.stage_type.as_str().to_owned(),
                    s.archived_at.map(format_time).unwrap_or_default(),
                    s.purge_due_at.map(format_time).unwrap_or_default(),
                ]
            })
        }
        Command::Get { what: OneStage::Stage { id, project } } => {
            let s: Stage = client.get(&stage_path(&project, &id))?;
            out.one(&s, || {
                format!(
                    "name:     {}\nid:       {}\nproject:  {}\ntype:     {}\nstatus:   {}\ngrace:    {} s\ncreated:  {}\nchanged:  {}",
                    s.name,
                    s.id,
                    s.project_id,
                    s.stage_type.as_str(),
                    s.status,
                    s.grace_secs,
                    format_time(s.created_at),
                    format_time(s.updated_at)
                )
            })
        }
        Command::Suspend { what: OneStage::Stage { id, project }, no_wait } => {
            let path = stage_path(&project, &id);
            let mut s: Stage = client.post_waiting(&format!("{path}/suspend"), &format!("Suspending stage '{id}'"))?;
            if s.status == StageStatus::Suspending && !no_wait {
                let doing = format!("Waiting for the components of '{id}' to stop (SIGKILL after {} s)", s.grace_secs);
                s = client::spin(&doing, || -> Result<Stage, Failure> {
                    loop {
                        std::thread::sleep(std::time::Duration::from_millis(250));
                        let now: Stage = client.get(&path)?;
                        if now.status != StageStatus::Suspending {
                            return Ok(now);
                        }
                    }
                })?;
            }
            out.one(&s, || match s.status {
                StageStatus::Suspending => format!(
                    "Stage {} is suspending: its components have up to {} s to stop. See: pergola list component -s {} -p {}",
                    quoted_label(&s), s.grace_secs, s.id, s.project_id
                ),
                _ => format!("Stage {} suspended.", quoted_label(&s)),
            })
        }
        Command::Update { what: UpdateWhat::Stage { id, project, name, stage_type, grace } } => {
            if name.is_none() && stage_type.is_none() && grace.is_none() {
                return Err(Failure::new("nothing to change: give --name, --type or --grace".into()));
            }
            let body = json!({ "name": name, "type": stage_type.map(TypeArg::as_str), "grace_secs": grace });
            let s: Stage = client.patch(&stage_path(&project, &id), &body)?;
            out.one(&s, || {
                format!(
                    "Stage {} updated ({}, grace period {} s).",
                    quoted_label(&s),
                    s.stage_type.as_str(),
                    s.grace_secs
                )
            })
        }
        Command::List { what: ListWhat::Event { at } } => {
            let events: Vec<StageEvent> = client.get(&format!("{}/events", stage_path(&at.project, &at.stage)))?;
            out.many(&events, &["time", "event", "component", "message"], |e| {
                vec![
                    e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    e.kind.label().to_owned(),
                    e.component.clone().unwrap_or_default(),
                    e.message.clone(),
                ]
            })
        }
        Command::Resume { what: OneStage::Stage { id, project } } => {
            let s: Stage = client
                .post_waiting(&format!("{}/resume", stage_path(&project, &id)), &format!("Resuming stage '{id}'"))?;
            out.one(&s, || format!("Stage {} resumed ({}).", quoted_label(&s), s.status))
        }
        Command::Delete { what: OneStage::Stage { id, project } } => {
            let s: Stage = client.delete(&stage_path(&project, &id))?;
            out.one(&s, || {
                format!(
                    "Stage {} deleted: archived until {}. Restore it with: pergola restore stage {} -p {}",
                    quoted_label(&s),
                    s.purge_due_at.map(format_time).unwrap_or_default(),
                    s.id,
                    s.project_id
                )
            })
        }
        Command::Restore { what: OneStage::Stage { id, project } } => {
            let s: Stage = client
                .post_waiting(&format!("{}/restore", stage_path(&project, &id)), &format!("Restoring stage '{id}'"))?;
            out.one(&s, || format!("Stage {} restored ({}).", quoted_label(&s), s.status))
        }
        Command::Create { what: CreateWhat::Build { manifest, dir, project } } => {
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", manifest.display())))?;
            let build: Build = client
                .post(&format!("/api/v1/projects/{project}/builds"), &json!({ "manifest": text, "workdir": dir }))?;
            out.one(&build, || {
                format!(
                    "Build {} registered{}.",
                    build.number,
                    build.version.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
                )
            })
        }
        Command::List { what: ListWhat::Build { project } } => {
            let builds: Vec<Build> = client.get(&format!("/api/v1/projects/{project}/builds"))?;
            out.many(&builds, &["build", "version", "components", "created"], |b| {
                let components = pergola_domain::parse_manifest(&b.manifest)
                    .map(|m| m.components.into_iter().map(|c| c.name).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                vec![b.number.to_string(), b.version.clone().unwrap_or_default(), components, format_time(b.created_at)]
            })
        }
        Command::List { what: ListWhat::Release { at } } => {
            let releases: Vec<Release> = client.get(&format!("{}/releases", stage_path(&at.project, &at.stage)))?;
            out.many(&releases, &["release", "build", "version", "deployed"], |r| {
                vec![
                    format!("#{}", r.number),
                    r.build_number.to_string(),
                    r.build_version.clone().unwrap_or_default(),
                    format_time(r.created_at),
                ]
            })
        }
        Command::List { what: ListWhat::Component { at } } => {
            let components: Vec<ComponentStatus> =
                client.get(&format!("{}/components", stage_path(&at.project, &at.stage)))?;
            out.many(&components, &["component", "kind", "state", "health", "restarts", "uptime", "port"], |c| {
                let state = match c.kill_in_secs {
                    Some(left) => format!("{} (SIGKILL in {left} s)", c.state.as_str()),
                    None => c.state.as_str().to_owned(),
                };
                vec![
                    c.name.clone(),
                    format!("{:?}", c.kind).to_lowercase(),
                    state,
                    c.health_label().to_owned(),
                    c.restarts.to_string(),
                    c.uptime_secs.map(pergola_domain::runtime::format_duration).unwrap_or_default(),
                    c.port.map(|p| p.to_string()).unwrap_or_default(),
                ]
            })
        }
        Command::Deploy { build, stage, project } => {
            let release: Release = client.post_json_waiting(
                &format!("{}/releases", stage_path(&project, &stage)),
                &json!({ "build": build }),
                &format!("Deploying build {build} to stage '{stage}'"),
            )?;
            out.one(&release, || {
                format!("Release #{} (build {}) deployed to stage '{}'.", release.number, release.build_number, stage)
            })
        }
        Command::Config { action } => config(&client, &out, action),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pergola", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn config(client: &Client, out: &Printer, action: ConfigAction) -> Result<(), Failure> {
    let base = |at: &StageAt| format!("{}/config", stage_path(&at.project, &at.stage));
    match action {
        ConfigAction::Set { pairs, secret, at } => {
            let mut saved = Vec::new();
            for (key, value) in pairs {
                let entry: ConfigEntry =
                    client.put(&format!("{}/{key}", base(&at)), &json!({ "value": value, "secret": secret }))?;
                saved.push(entry);
            }
            let keys: Vec<&str> = saved.iter().map(|e| e.key.as_str()).collect();
            out.one(&saved, || {
                format!("Set {} on stage '{}'. It applies with the stage's next release.", keys.join(", "), at.stage)
            })
        }
        ConfigAction::Get { key, at } => {
            let entries: Vec<ConfigEntry> = client.get(&base(&at))?;
            let entry = entries
                .into_iter()
                .find(|e| e.key == key)
                .ok_or_else(|| Failure::new(format!("Stage '{}' has no setting '{key}'.", at.stage)))?;
            match (&entry.value, out.format) {
                (_, Output::Json) => out.one(&entry, String::new),
                (Some(value), _) => {
                    println!("{value}");
                    Ok(())
                }
                (None, _) => Err(Failure::new(format!("'{key}' is a secret: its value is not shown after saving."))),
            }
        }
        ConfigAction::List { at } => {
            let entries: Vec<ConfigEntry> = client.get(&base(&at))?;
            out.many(&entries, &["key", "value", "updated"], |e| {
                vec![
                    e.key.clone(),
                    e.value.clone().unwrap_or_else(|| "•••••• (secret)".into()),
                    format_time(e.updated_at),
                ]
            })
        }
        ConfigAction::Unset { key, at } => {
            let remaining: Vec<ConfigEntry> = client.delete(&format!("{}/{key}", base(&at)))?;
            out.one(&remaining, || format!("Removed {key} from stage '{}'.", at.stage))
        }
    }
}

fn stage_path(project: &str, id: &str) -> String {
    format!("/api/v1/projects/{project}/stages/{id}")
}

fn quoted_label(s: &Stage) -> String {
    if s.name == s.id {
        format!("'{}'", s.id)
    } else {
        format!("'{}' ({})", s.name, s.id)
    }
}

struct Printer {
    format: Output,
}

impl Printer {
    fn one<T: serde::Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> Result<(), Failure> {
        match self.format {
            Output::Json => println!("{}", serde_json::to_string_pretty(value).expect("serializable")),
            Output::Table => println!("{}", text()),
        }
        Ok(())
    }

    fn many<T: serde::Serialize>(
        &self,
        values: &[T],
        header: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<(), Failure> {
        match self.format {
            Output::Json => println!("{}", serde_json::to_string_pretty(values).expect("serializable")),
            Output::Table => print!("{}", table::render(header, &values.iter().map(row).collect::<Vec<_>>())),
        }
        Ok(())
    }
}
