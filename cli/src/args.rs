//! The command line: commands, arguments and their help.

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use pergola_domain::{Role, StageType, Visibility};

const EXAMPLES: &str = "\
Examples:
  pergola login --server https://pergola.example.com
  pergola whoami
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
  pergola create build --dir ./shop -p my-new-project
  pergola deploy 1 -s test -p my-new-project
  pergola list component -s test -p my-new-project
  pergola config set LOG_LEVEL=debug -s test -p my-new-project
  pergola config set API_TOKEN=s3cr3t --secret -s test -p my-new-project
  pergola list stage -p my-new-project -o json | jq '.[].id'
  TOKEN=$(pergola create token ci --expires-in 90)
  pergola create user alice --password-stdin < passwords.txt
  pergola create member alice --role developer -p my-new-project
  pergola list event -p my-new-project
  pergola update stage test --visibility public -p my-new-project
  pergola create link -s test -p my-new-project --expires-in 7d
  pergola list link -s test -p my-new-project
  pergola completion bash > /etc/bash_completion.d/pergola";

#[derive(Parser)]
#[command(
    name = "pergola",
    version,
    about = "Manage the Stages of your Pergola Projects.",
    long_about = "Manage the Stages of your Pergola Projects.\n\n\
        Sign in first with `pergola login --server URL`: the server and an API token are kept in \
        $XDG_CONFIG_HOME/pergola/config.toml (~/.config/pergola/config.toml), readable by you only. \
        PERGOLA_TOKEN, when set, is sent instead of the stored token (for CI).",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// URL of the Pergola server [default: the one you signed in to, else http://127.0.0.1:3000].
    #[arg(long, global = true, env = "PERGOLA_URL")]
    pub server: Option<String>,
    /// Output format: a table for people, JSON for scripts; `kubernetes` (with `get stage`
    /// only): the Kubernetes objects of the stage's current release, as YAML.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Kubernetes,
}

/// A stage type on the command line: the domain's [`StageType`], as `dev`, `qa` or `prod`.
#[derive(Clone, Copy)]
pub struct TypeArg(pub StageType);

impl ValueEnum for TypeArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[TypeArg(StageType::Dev), TypeArg(StageType::Qa), TypeArg(StageType::Prod)]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Sign in to a server: asks for the username and password (or reads them from --username
    /// and stdin) and stores a new API token, named cli-HOSTNAME, for the next commands.
    Login {
        /// Your username (asked for when missing and stdin is a terminal).
        #[arg(short, long, conflicts_with = "token_stdin")]
        username: Option<String>,
        /// Read the password from stdin (the first line), e.g. from a password manager.
        #[arg(long)]
        password_stdin: bool,
        /// Sign in with an existing API token (pgt_…) read from stdin instead of a password.
        #[arg(long, conflicts_with = "password_stdin")]
        token_stdin: bool,
    },
    /// Revoke the API token you signed in with and forget it.
    Logout,
    /// Show who you are signed in as, and with which token.
    Whoami,
    /// Create a project, a stage, a build, an API token, a user or a project member.
    Create {
        #[command(subcommand)]
        what: CreateWhat,
    },
    /// List projects, stages, builds, releases, components, events, tokens, users or members.
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
    /// Resume a suspended stage. A stage still suspending resumes as soon as its components have
    /// stopped; this waits until then.
    Resume {
        #[command(subcommand)]
        what: OneStage,
        /// Answer at once, while the stage may still be "suspending" (it resumes afterwards).
        #[arg(long, global = true)]
        no_wait: bool,
    },
    /// Delete a stage (archived, restorable until its retention runs out), revoke an API token,
    /// or remove a project member.
    Delete {
        #[command(subcommand)]
        what: DeleteWhat,
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
    /// Promote a stage's current build to another stage (DEV -> QA -> PROD): shows what will
    /// change there, asks to confirm (unless --yes), then deploys it with the target's own
    /// configuration.
    Promote {
        /// Stage ID of the stage whose build is promoted.
        stage: String,
        /// Stage ID of the stage it is deployed to.
        #[arg(long)]
        to: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// Do not ask: promote at once (needed when stdin is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
    /// Compare two stages: type, release and build, components, configuration keys (secret
    /// values never shown), grace period.
    Diff {
        #[command(subcommand)]
        what: DiffWhat,
    },
    /// Print a component's output: its last lines, and with --follow each new line as it is
    /// printed (across restarts and releases) until Ctrl-C. Lines the component wrote to
    /// stderr are marked `!`, what Pergola says about it `*`; control characters are escaped.
    #[command(after_help = "Examples:\n  \
        pergola logs web -s dev -p shop\n  \
        pergola logs web -s dev -p shop -f\n  \
        pergola logs worker -s prod -p shop --since 10m -n 500 --timestamps\n  \
        pergola logs web -s dev -p shop -o json | jq -r .line")]
    Logs {
        /// Component name (see `pergola list component`).
        component: String,
        /// Stage ID.
        #[arg(short, long)]
        stage: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// Go on printing new lines as they come, until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Only lines printed since then: an age (30s, 10m, 2h, 1d) or a time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// How many of the last lines to print first (at most what the component keeps: 500).
        #[arg(short = 'n', long = "lines", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
        lines: u32,
        /// Print each line's full date and time (UTC, milliseconds) instead of the time of day.
        #[arg(long)]
        timestamps: bool,
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
pub enum DiffWhat {
    /// Compare stage A with stage B ("what changes on B if it became like A").
    Stage {
        /// Stage ID of the first stage.
        a: String,
        /// Stage ID of the second stage.
        b: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
}

#[derive(Subcommand)]
pub enum CreateWhat {
    /// Create a project; its ID is derived from the name unless --id is given.
    Project {
        /// Display name.
        name: String,
        /// Project ID (default: derived from the name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Upload a build: packs DIR on this machine and uploads it as the project's next build.
    ///
    /// DIR is packed as a tar archive compressed with gzip and streamed to the server, which
    /// keeps it as an immutable artifact: every release of the build runs these bytes, whatever
    /// happens to DIR afterwards. The archive holds DIR's files with the manifest as
    /// pergola.toml at its root: DIR/pergola.toml, or the --manifest file in its place.
    ///
    /// Left out: any .git, and what .pergolaignore files say (gitignore syntax: `*.log`,
    /// `target/`, `/secret.env`, `!keep.log`, `# comments`; DIR/.pergolaignore applies to the
    /// whole tree, one in a subdirectory to what is below it). Kept: executable bits and
    /// modification times; symbolic links are stored as links (a link pointing outside DIR is
    /// refused before anything is sent); sockets, FIFOs and device files are skipped with a
    /// warning. The same tree, with the same modification times, gives the same archive.
    ///
    /// On a terminal a progress line shows the bytes sent and the rate (none with -o json or
    /// when stderr is not a terminal).
    ///
    /// --server-path registers a directory that is already on the server instead (the old way,
    /// without an upload): for administrators, where the server still allows it.
    #[command(after_help = "Examples:\n  \
        pergola create build --dir ./dist -p shop\n  \
        pergola create build --dir . --manifest deploy/pergola.qa.toml -p shop\n  \
        pergola create build --dir . -p shop -o json | jq .number\n  \
        pergola create build --server-path /srv/builds/shop-1.0 --manifest pergola.toml -p shop")]
    Build {
        /// The directory to pack and upload.
        #[arg(long, value_name = "DIR", required_unless_present = "server_path")]
        dir: Option<std::path::PathBuf>,
        /// The manifest (TOML), uploaded as pergola.toml [default: DIR/pergola.toml].
        #[arg(long, value_name = "FILE")]
        manifest: Option<std::path::PathBuf>,
        /// Register this directory on the server (absolute) instead of uploading; needs
        /// --manifest (administrators, where the server still allows it).
        #[arg(long, value_name = "DIR", conflicts_with = "dir", requires = "manifest")]
        server_path: Option<String>,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// Create a stage; its ID is derived from the name unless --id is given. With --from, a
    /// copy of another stage: its type, configuration and grace period (its storage with
    /// --with-storage).
    Stage {
        /// Display name.
        name: String,
        /// Stage type.
        #[arg(short = 't', long = "type", value_enum, ignore_case = true, required_unless_present = "from")]
        stage_type: Option<TypeArg>,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// Stage ID (default: derived from the name).
        #[arg(long)]
        id: Option<String>,
        /// Copy this stage (its type, configuration and grace period).
        #[arg(long, value_name = "STAGE", conflicts_with = "stage_type")]
        from: Option<String>,
        /// With --from: deploy the copied stage's current build too.
        #[arg(long, requires = "from")]
        deploy: bool,
        /// With --from: copy its persistent storage too (it must be suspended).
        #[arg(long, requires = "from")]
        with_storage: bool,
    },
    /// Create a personal API token; prints the token alone (it is shown this once).
    /// Create an API token. Your password is asked for: the server makes no token for a token
    /// alone (a leaked token cannot leave one behind).
    Token {
        /// Token name: letters, digits, '-', '_' and '.'.
        name: String,
        /// Days until it expires (1-3650; default: never).
        #[arg(long, value_name = "DAYS")]
        expires_in: Option<u32>,
        /// Read your password from stdin (the first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create a user (administrators only). Their password is asked for, then yours: the
    /// server makes no account for a token alone (a leaked token cannot leave a way in behind).
    User {
        /// Username.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the passwords from stdin: the new user's on the first line, yours on the second.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make a user a member of a project, or change their role (project owners). Adding a member
    /// or raising a role asks for your own password (the CLI signs in with a token).
    Member {
        /// Username.
        username: String,
        /// The role in the project.
        #[arg(short, long, value_enum, ignore_case = true)]
        role: RoleArg,
        /// Project ID.
        #[arg(short, long)]
        project: String,
        /// Read your password from stdin (the first line), sent with the request.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create a guest link: anyone with it may open the stage's share links, without signing
    /// in, until it expires or is deleted. Prints the guest URL alone (shown this once).
    Link {
        #[command(flatten)]
        at: StageAt,
        /// How long it works: hours or days, like 24h or 7d (1 hour to 365 days).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        expires_in: String,
    },
}

/// A role on the command line: the domain's [`Role`], as `viewer`, `developer`, `maintainer` or `owner`.
#[derive(Clone, Copy)]
pub struct RoleArg(pub Role);

impl ValueEnum for RoleArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[RoleArg(Role::Viewer), RoleArg(Role::Developer), RoleArg(Role::Maintainer), RoleArg(Role::Owner)]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

#[derive(Subcommand)]
pub enum DeleteWhat {
    /// Delete a stage: it is archived and can be restored until its retention runs out.
    Stage {
        /// Stage ID.
        id: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// Revoke one of your API tokens: it stops working at once.
    Token {
        /// Token name (see `pergola list token`).
        name: String,
    },
    /// Remove a user from a project (project owners).
    Member {
        /// Username.
        username: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// Revoke a guest link: it stops working at once.
    Link {
        /// Guest link ID (see `pergola list link`).
        id: String,
        #[command(flatten)]
        at: StageAt,
    },
}

#[derive(Subcommand)]
pub enum UpdateWhat {
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
        /// Who may open its share links: members (of the project, signed in) or public
        /// (anyone with the link).
        #[arg(long, value_enum, ignore_case = true)]
        visibility: Option<VisibilityArg>,
    },
}

/// A visibility, as typed on the command line.
#[derive(Clone, Copy)]
pub struct VisibilityArg(pub Visibility);

impl ValueEnum for VisibilityArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[VisibilityArg(Visibility::Members), VisibilityArg(Visibility::Public)]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

#[derive(Subcommand)]
pub enum ListWhat {
    /// List a project's activity — who changed what — newest first; with -s, one stage's events
    /// (deployed, suspended, resumed, crashed, restarted, config changed…) with who caused them.
    #[command(visible_alias = "events")]
    Event {
        /// Stage ID: that stage's events timeline.
        #[arg(short, long)]
        stage: Option<String>,
        /// Project ID.
        #[arg(short, long)]
        project: String,
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
        #[arg(long, conflicts_with_all = ["search", "stage_type", "status", "sort", "limit"])]
        archived: bool,
        /// Only stages whose name or ID contains this text (case-insensitive).
        #[arg(short = 'q', long)]
        search: Option<String>,
        /// Only stages of these types, comma-separated: dev, qa, prod.
        #[arg(short = 't', long = "type")]
        stage_type: Option<String>,
        /// Only stages in these statuses, comma-separated: running, suspending, suspended.
        #[arg(long)]
        status: Option<String>,
        /// Order: created (oldest first, the default), name (A to Z) or updated (most recently changed first).
        #[arg(long)]
        sort: Option<String>,
        /// At most this many stages (default: all of them, fetched page by page).
        #[arg(short = 'n', long)]
        limit: Option<u32>,
    },
    /// List your API tokens (never their values).
    #[command(visible_alias = "tokens")]
    Token,
    /// List every user (administrators only).
    #[command(visible_alias = "users")]
    User,
    /// List a project's members and their roles.
    #[command(visible_alias = "members")]
    Member {
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
    /// List a stage's guest links (never their secret), revoked and expired ones included.
    #[command(visible_alias = "links")]
    Link {
        #[command(flatten)]
        at: StageAt,
    },
}

#[derive(Subcommand)]
pub enum ConfigAction {
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
pub struct StageAt {
    /// Stage ID.
    #[arg(short, long)]
    pub stage: String,
    /// Project ID.
    #[arg(short, long)]
    pub project: String,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

#[derive(Subcommand)]
pub enum OneStage {
    /// The stage with this Stage ID.
    Stage {
        /// Stage ID.
        id: String,
        /// Project ID.
        #[arg(short, long)]
        project: String,
    },
}
