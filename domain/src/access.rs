//! Who may do what, and the pure rules around signing in.
//!
//! * [`Role`]: a user's role in one project (`viewer` < `developer` < `maintainer` < `owner`);
//!   administrators ([`Actor::is_admin`]) may do everything everywhere.
//! * [`Action`] and [`requirement`]: the one permission table. [`permits`] answers yes or no,
//!   [`decide`] tells a service which refusal to give (404 for a project the user is not a
//!   member of, so its existence is not revealed; 403 naming the role needed otherwise), and
//!   [`permission_table_markdown`] renders the same table for the README.
//! * [`validate_username`], [`validate_password`]: the rules for credentials.
//! * [`Throttle`]: when failed sign-ins lock a (username, address) pair out for a while.
//! * [`SessionPolicy`], [`invitation_expires_at`], [`is_unexpired`]: when sessions,
//!   invitations, API tokens and guest links stop working.
//! * [`Visibility`]: who may open a stage's share links.
//!
//! Nothing here reads a clock or does I/O: every function takes `now` from its caller, so the
//! same rules run on the server and in the browser (wasm) and are tested with fixed times.

use crate::{Error, StageType};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Roles and actors
// ---------------------------------------------------------------------------------------------

/// A user's role in one project. Each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Reads the project and its stages (never a secret value).
    Viewer,
    /// Creates stages; deploys, suspends, resumes and configures DEV and QA stages.
    Developer,
    /// All a developer does, on PROD stages too; deletes and restores stages; registers builds.
    Maintainer,
    /// All a maintainer does; manages the project's members and the project itself.
    Owner,
}

impl Role {
    /// Every role, from the least to the most allowed.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Developer, Role::Maintainer, Role::Owner];

    /// The stored and wire form: `viewer`, `developer`, `maintainer`, `owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
        }
    }

    /// How the UI shows it: `Viewer`, `Developer`, `Maintainer`, `Owner`.
    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Developer => "Developer",
            Role::Maintainer => "Maintainer",
            Role::Owner => "Owner",
        }
    }

    /// Parses `viewer`/`Developer`/... (case-insensitive, trimmed); the error is for the
    /// `role` field.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        Role::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::validation(
                "role",
                format!("Unknown role '{s}'. Choose one of viewer, developer, maintainer or owner."),
            )
        })
    }

    /// "a viewer", "an owner": for messages.
    fn with_article(self) -> String {
        let article = if self == Role::Owner { "an" } else { "a" };
        format!("{article} {}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking, as far as one project is concerned. Pages receive it with their data and
/// ask [`permits`] which buttons to show (the server decides again on every request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// Administrators may do everything in every project, members or not.
    pub is_admin: bool,
    /// The user's role in the project concerned; `None`: not a member.
    pub role: Option<Role>,
}

impl Actor {
    /// An administrator who is not a member of the project.
    pub fn admin() -> Self {
        Self { is_admin: true, role: None }
    }

    /// A (non-administrator) member with `role`.
    pub fn member(role: Role) -> Self {
        Self { is_admin: false, role: Some(role) }
    }

    /// A signed-in user who is neither an administrator nor a member of the project.
    pub fn non_member() -> Self {
        Self { is_admin: false, role: None }
    }
}

// ---------------------------------------------------------------------------------------------
// Actions and the permission table
// ---------------------------------------------------------------------------------------------

/// Everything a user can ask Pergola to do, as far as permissions go. The doc of each variant
/// names the services it guards (today's in `pergola-core`'s `Services`, and issue 9's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    /// See the project: `get_project`, `project_overview`, `builds`, `check_stage_id`, and
    /// whether it is listed by `list_projects`.
    ReadProject,
    /// See a stage: `get_stage`, `stage_with_components`, `components`, `logs`, `events`,
    /// `releases`, `share_links`, `config` (secret values masked).
    ReadStage,
    /// Read a secret setting's value. Nobody may, administrators included: values go to the
    /// runtime only (`config_values`, called by the services themselves, not for a user).
    ReadSecretValues,
    /// `create_stage`; judged by the type of the new stage.
    CreateStage,
    /// `update_stage` (name, type, grace period). A change of type is judged for the current
    /// type *and* the new one (see [`Decision::and`]), so a developer cannot turn a DEV stage
    /// into a PROD one or the reverse.
    UpdateStage,
    /// `suspend_stage`.
    SuspendStage,
    /// `resume_stage`.
    ResumeStage,
    /// `set_config`, `unset_config`.
    ConfigureStage,
    /// `deploy`, `redeploy`.
    Deploy,
    /// Issue 9: set a stage's [`Visibility`], create and revoke its guest links.
    ManageSharing,
    /// `delete_stage`.
    DeleteStage,
    /// `restore_stage`.
    RestoreStage,
    /// `register_build`.
    RegisterBuild,
    /// Issue 9: the project's activity (audit trail).
    ViewActivity,
    /// Issue 9: invite members, change their roles, remove them.
    ManageMembers,
    /// Issue 9: rename or delete the project.
    ManageProject,
    /// `create_project`. There is no membership before the project exists, so this is for
    /// administrators (who then make someone its owner).
    CreateProject,
    /// Issue 9: create, disable and delete users, make them administrators.
    AdministerUsers,
    /// `set_retention` and, later, other per-stage-type policies. (Reading the policy, as the
    /// delete dialog does, needs only a signed-in user.)
    AdministerPolicies,
    /// `/metrics`: the server's, the proxy's and every stage's series, for Prometheus.
    ReadServerMetrics,
}

impl Action {
    /// Every action, in the order of the README's table.
    pub const ALL: [Action; 20] = [
        Action::ReadProject,
        Action::ReadStage,
        Action::ReadSecretValues,
        Action::CreateStage,
        Action::UpdateStage,
        Action::SuspendStage,
        Action::ResumeStage,
        Action::ConfigureStage,
        Action::Deploy,
        Action::ManageSharing,
        Action::DeleteStage,
        Action::RestoreStage,
        Action::RegisterBuild,
        Action::ViewActivity,
        Action::ManageMembers,
        Action::ManageProject,
        Action::CreateProject,
        Action::AdministerUsers,
        Action::AdministerPolicies,
        Action::ReadServerMetrics,
    ];

    /// The stable form, e.g. for the audit trail: `read-project`, `deploy`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadProject => "read-project",
            Action::ReadStage => "read-stage",
            Action::ReadSecretValues => "read-secret-values",
            Action::CreateStage => "create-stage",
            Action::UpdateStage => "update-stage",
            Action::SuspendStage => "suspend-stage",
            Action::ResumeStage => "resume-stage",
            Action::ConfigureStage => "configure-stage",
            Action::Deploy => "deploy",
            Action::ManageSharing => "manage-sharing",
            Action::DeleteStage => "delete-stage",
            Action::RestoreStage => "restore-stage",
            Action::RegisterBuild => "register-build",
            Action::ViewActivity => "view-activity",
            Action::ManageMembers => "manage-members",
            Action::ManageProject => "manage-project",
            Action::CreateProject => "create-project",
            Action::AdministerUsers => "administer-users",
            Action::AdministerPolicies => "administer-policies",
            Action::ReadServerMetrics => "read-server-metrics",
        }
    }

    /// The row of the README's table.
    pub fn label(self) -> &'static str {
        match self {
            Action::ReadProject => "See the project and its builds",
            Action::ReadStage => "See a stage: status, components, logs, events, settings (secret values masked)",
            Action::ReadSecretValues => "Read a secret setting's value",
            Action::CreateStage => "Create a stage",
            Action::UpdateStage => "Rename a stage, change its type or grace period",
            Action::SuspendStage => "Suspend a stage",
            Action::ResumeStage => "Resume a stage",
            Action::ConfigureStage => "Set or remove a stage's settings",
            Action::Deploy => "Deploy or redeploy a release",
            Action::ManageSharing => "Set a stage's visibility, create or revoke guest links",
            Action::DeleteStage => "Delete a stage",
            Action::RestoreStage => "Restore a deleted stage",
            Action::RegisterBuild => "Register a build",
            Action::ViewActivity => "See the project's activity",
            Action::ManageMembers => "Invite members, change their roles, remove them",
            Action::ManageProject => "Rename or delete the project",
            Action::CreateProject => "Create a project",
            Action::AdministerUsers => "Manage users and administrators",
            Action::AdministerPolicies => "Set the per-stage-type policies (retention)",
            Action::ReadServerMetrics => "Read every stage's metrics at /metrics (Prometheus)",
        }
    }

    /// Whether who may do it depends on the stage's type (PROD protection).
    pub fn depends_on_stage_type(self) -> bool {
        matches!(
            self,
            Action::CreateStage
                | Action::UpdateStage
                | Action::SuspendStage
                | Action::ResumeStage
                | Action::ConfigureStage
                | Action::Deploy
                | Action::ManageSharing
        )
    }

    /// Whether it concerns the whole installation rather than one project (then membership
    /// does not matter and a refusal is a 403, never a 404).
    pub fn is_instance_wide(self) -> bool {
        matches!(
            self,
            Action::CreateProject | Action::AdministerUsers | Action::AdministerPolicies | Action::ReadServerMetrics
        )
    }

    /// The start of a refusal: "Deploying to a PROD stage", "Deleting a stage".
    fn refusal_subject(self, stage_type: Option<StageType>) -> String {
        let t = stage_type.unwrap_or(StageType::Prod).label();
        match self {
            Action::ReadProject => "Seeing the project".to_owned(),
            Action::ReadStage => "Seeing a stage".to_owned(),
            Action::ReadSecretValues => "Reading a secret value".to_owned(),
            Action::CreateStage => format!("Creating a {t} stage"),
            Action::UpdateStage => format!("Changing a {t} stage"),
            Action::SuspendStage => format!("Suspending a {t} stage"),
            Action::ResumeStage => format!("Resuming a {t} stage"),
            Action::ConfigureStage => format!("Changing the settings of a {t} stage"),
            Action::Deploy => format!("Deploying to a {t} stage"),
            Action::ManageSharing => format!("Sharing a {t} stage"),
            Action::DeleteStage => "Deleting a stage".to_owned(),
            Action::RestoreStage => "Restoring a stage".to_owned(),
            Action::RegisterBuild => "Registering a build".to_owned(),
            Action::ViewActivity => "Seeing the project's activity".to_owned(),
            Action::ManageMembers => "Managing members".to_owned(),
            Action::ManageProject => "Renaming or deleting the project".to_owned(),
            Action::CreateProject => "Creating a project".to_owned(),
            Action::AdministerUsers => "Managing users".to_owned(),
            Action::AdministerPolicies => "Changing the stage-type policies".to_owned(),
            Action::ReadServerMetrics => "Reading the server's metrics".to_owned(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may do an action (on a stage of a given type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// Members with at least this role, and administrators.
    Role(Role),
    /// Administrators only.
    Administrator,
    /// Nobody, administrators included.
    Nobody,
}

/// **The permission table**, defined once: who may do `action`, on a stage of `stage_type`
/// where that matters ([`Action::depends_on_stage_type`]; otherwise `stage_type` is ignored).
///
/// For a type-dependent action, `None` is judged as PROD, the strictest: services must pass
/// the stage's type.
pub fn requirement(action: Action, stage_type: Option<StageType>) -> Requirement {
    // PROD protection: what developers do on DEV and QA stages needs a maintainer on PROD.
    let dev_qa_or_maintainer = match stage_type {
        Some(StageType::Dev | StageType::Qa) => Role::Developer,
        Some(StageType::Prod) | None => Role::Maintainer,
    };
    match action {
        Action::ReadProject | Action::ReadStage | Action::ViewActivity => Requirement::Role(Role::Viewer),
        Action::CreateStage
        | Action::UpdateStage
        | Action::SuspendStage
        | Action::ResumeStage
        | Action::ConfigureStage
        | Action::Deploy
        | Action::ManageSharing => Requirement::Role(dev_qa_or_maintainer),
        Action::DeleteStage | Action::RestoreStage | Action::RegisterBuild => Requirement::Role(Role::Maintainer),
        Action::ManageMembers | Action::ManageProject => Requirement::Role(Role::Owner),
        Action::CreateProject | Action::AdministerUsers | Action::AdministerPolicies | Action::ReadServerMetrics => {
            Requirement::Administrator
        }
        Action::ReadSecretValues => Requirement::Nobody,
    }
}

/// Whether `actor` may do `action` (on a stage of `stage_type`): [`requirement`] as a yes/no.
pub fn permits(actor: &Actor, action: Action, stage_type: Option<StageType>) -> bool {
    match requirement(action, stage_type) {
        Requirement::Nobody => false,
        Requirement::Administrator => actor.is_admin,
        Requirement::Role(min) => actor.is_admin || actor.role.is_some_and(|role| role >= min),
    }
}

/// How a service answers a request, by [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// The user is not a member of the project (nor an administrator): answer 404, exactly as
    /// for a project that does not exist ([`project_not_found`]).
    Invisible,
    /// A member (or, for instance-wide actions, any user) without the rights: answer 403 with
    /// this message, which names what is needed.
    Forbidden(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        *self == Decision::Allowed
    }

    /// This decision if it refuses, else `other`: for a request that needs two permissions
    /// (changing a stage's type needs [`Action::UpdateStage`] for both types).
    pub fn and(self, other: Decision) -> Decision {
        match self {
            Decision::Allowed => other,
            refused => refused,
        }
    }

    /// The error to answer with: [`project_not_found`] (404) or [`Error::forbidden`] (403).
    pub fn into_result(self, project_id: &str) -> Result<(), Error> {
        match self {
            Decision::Allowed => Ok(()),
            Decision::Invisible => Err(project_not_found(project_id)),
            Decision::Forbidden(message) => Err(Error::forbidden(message)),
        }
    }
}

/// Whether and how `actor` may do `action` in project `project_id` (on a stage of
/// `stage_type`). `project_id` is only used in messages and is ignored for instance-wide
/// actions.
pub fn decide(actor: &Actor, action: Action, stage_type: Option<StageType>, project_id: &str) -> Decision {
    if permits(actor, action, stage_type) {
        return Decision::Allowed;
    }
    if !action.is_instance_wide() && !actor.is_admin && actor.role.is_none() {
        return Decision::Invisible;
    }
    let subject = action.refusal_subject(stage_type);
    let message = match requirement(action, stage_type) {
        Requirement::Nobody => {
            "Secret values are never shown, not even to administrators. Set a new value to replace one.".to_owned()
        }
        Requirement::Administrator => format!("{subject} needs an administrator; you are not one."),
        Requirement::Role(min) => {
            // Only a member can get here (administrators are always allowed).
            let you = actor.role.map_or_else(|| "not a member".to_owned(), Role::with_article);
            format!("{subject} needs the {min} role in project '{project_id}'; you are {you}.")
        }
    };
    Decision::Forbidden(message)
}

/// [`decide`] as a `Result`, for services: `authorize(&actor, Action::Deploy, Some(t), p)?`.
pub fn authorize(actor: &Actor, action: Action, stage_type: Option<StageType>, project_id: &str) -> Result<(), Error> {
    decide(actor, action, stage_type, project_id).into_result(project_id)
}

/// The 404 for a project that does not exist *or that the user may not see*: the two must be
/// indistinguishable, so services use this one error for both.
/// Whether making someone a member with `after` — they had `before` in the project, `None`: not
/// a member — gives them more than they had. Through an API token that needs the caller's own
/// password too: a leaked owner's token must not leave an account of the project with more
/// than it had once the token is revoked. Lowering a role or keeping it never does.
pub fn role_change_needs_password(before: Option<Role>, after: Role) -> bool {
    before.is_none_or(|before| after > before)
}

pub fn project_not_found(project_id: &str) -> Error {
    Error::not_found(format!("There is no project '{project_id}'."))
}

/// The permission table as Markdown, for the README: one row per [`Action`], one column per
/// role and one for administrators. A cell is `✓` (allowed), `—` (not allowed) or the stage
/// types it is allowed on (`DEV, QA`). Rendered from [`permits`], so it cannot drift from it.
pub fn permission_table_markdown() -> String {
    let mut columns: Vec<(&str, Actor)> = Role::ALL.iter().map(|&r| (r.as_str(), Actor::member(r))).collect();
    columns.push(("administrator", Actor::admin()));
    let mut out = String::from("| Action |");
    for (name, _) in &columns {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n| --- |");
    for _ in &columns {
        out.push_str(" :---: |");
    }
    out.push('\n');
    for action in Action::ALL {
        out.push_str(&format!("| {} |", action.label()));
        for (_, actor) in &columns {
            out.push_str(&format!(" {} |", cell(actor, action)));
        }
        out.push('\n');
    }
    out
}

fn cell(actor: &Actor, action: Action) -> String {
    if !action.depends_on_stage_type() {
        return if permits(actor, action, None) { "✓" } else { "—" }.to_owned();
    }
    let allowed: Vec<&str> =
        StageType::ALL.into_iter().filter(|&t| permits(actor, action, Some(t))).map(StageType::label).collect();
    match allowed.len() {
        0 => "—".to_owned(),
        n if n == StageType::ALL.len() => "✓".to_owned(),
        _ => allowed.join(", "),
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

/// The longest username, in characters (all ASCII, so also bytes).
pub const MAX_USERNAME_CHARS: usize = 64;
/// The shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password, in bytes of UTF-8 (bounds the work of hashing it).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The form a username is stored and looked up in: trimmed, ASCII letters lowercased. Sign-in
/// and the throttle key use it too, so `Alice` and `alice ` are the same user and share one
/// throttle.
pub fn normalize_username(input: &str) -> String {
    input.trim().to_ascii_lowercase()
}

/// Checks a username and returns its stored form ([`normalize_username`]).
///
/// The rule: 1 to [`MAX_USERNAME_CHARS`] characters, lowercase letters `a`–`z`, digits `0`–`9`,
/// `.`, `-` and `_`, starting with a letter. Usernames are case-insensitive (input is
/// lowercased), so `Alice` is accepted as `alice`. The error is for the `username` field.
pub fn validate_username(input: &str) -> Result<String, Error> {
    let name = normalize_username(input);
    let err = |msg: String| Err(Error::validation("username", msg));
    let Some(first) = name.chars().next() else {
        return err("Username is required.".to_owned());
    };
    let count = name.chars().count();
    if count > MAX_USERNAME_CHARS {
        return err(format!("Username must be at most {MAX_USERNAME_CHARS} characters (it has {count})."));
    }
    if let Some(c) =
        name.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return err(format!(
            "Username may only contain letters a-z, digits 0-9, '.', '-' and '_' (found {}).",
            describe_char(c)
        ));
    }
    if !first.is_ascii_lowercase() {
        return err(format!("Username must start with a letter a-z (it starts with '{first}')."));
    }
    Ok(name)
}

/// `'é'`, or `U+0009` for characters that do not show (whitespace, controls, format marks).
fn describe_char(c: char) -> String {
    if c.is_whitespace()
        || c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes, not only whitespace. It is taken as typed (never trimmed),
/// and the messages never repeat it or its length. The error is for the `password` field.
pub fn validate_password(password: &str) -> Result<(), Error> {
    let err = |msg: String| Err(Error::validation("password", msg));
    if password.is_empty() {
        return err("Password is required.".to_owned());
    }
    if password.trim().is_empty() {
        return err("Password must not be only spaces.".to_owned());
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return err(format!("Password must be at least {MIN_PASSWORD_CHARS} characters long."));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return err(format!("Password must be at most {MAX_PASSWORD_BYTES} bytes long."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sign-in throttle
// ---------------------------------------------------------------------------------------------

/// When failed sign-ins lock out one username from one address: after `max_failures` failures
/// within `window`, every further attempt is refused (429 with `Retry-After`), even with the
/// right password, until enough failures have left the window. The service checks the
/// throttle *before* verifying the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Failures within the window that lock out (at least 1; 0 is taken as 1).
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for Throttle {
    /// Issue 9: 5 failures within 15 minutes.
    fn default() -> Self {
        Self { max_failures: 5, window: Duration::minutes(15) }
    }
}

/// How long to wait before trying again, in whole seconds (at least 1): the `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryAfter(pub u64);

impl From<RetryAfter> for Error {
    fn from(r: RetryAfter) -> Self {
        Error::too_many_requests(r.0)
    }
}

impl Throttle {
    /// What failed sign-ins from `address` are counted under: the address, or for an IPv6
    /// address its /64 — a machine usually holds a whole /64, and could take a fresh address
    /// for every try.
    pub fn address_key(address: &str) -> String {
        match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            _ => address.to_owned(),
        }
    }

    /// The oldest failure time that still counts at `now` (exclusive): the store need only
    /// load failures after it.
    pub fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.window
    }

    /// Whether a sign-in attempt may go ahead at `now`, given the failed attempts recorded for
    /// this (username, address), in any order (older ones are ignored). A failure at `t`
    /// counts while `now < t + window`.
    ///
    /// When refused, the wait lasts until so many failures have left the window that fewer
    /// than `max_failures` remain: with exactly `max_failures` failures counted, until the
    /// oldest one leaves it.
    pub fn check(&self, recent_failures: &[DateTime<Utc>], now: DateTime<Utc>) -> Result<(), RetryAfter> {
        let start = self.window_start(now);
        let mut counted: Vec<DateTime<Utc>> = recent_failures.iter().copied().filter(|&t| t > start).collect();
        let max = self.max_failures.max(1) as usize;
        if counted.len() < max {
            return Ok(());
        }
        counted.sort_unstable();
        // Once this one leaves the window, max - 1 failures remain.
        let must_leave = counted[counted.len() - max];
        let wait_ms = (must_leave + self.window - now).num_milliseconds();
        let secs = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1);
        Err(RetryAfter(secs))
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions, invitations, tokens, guest links
// ---------------------------------------------------------------------------------------------

/// When a sign-in session ends: after `idle` without a request, and `absolute` after it began
/// whatever the activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    /// 12 hours idle (a working day), 7 days absolute.
    fn default() -> Self {
        Self { idle: Duration::hours(12), absolute: Duration::days(7) }
    }
}

impl SessionPolicy {
    /// When a session created at `created_at` and last used at `last_seen` ends, unless it is
    /// used again before.
    pub fn expires_at(&self, created_at: DateTime<Utc>, last_seen: DateTime<Utc>) -> DateTime<Utc> {
        (last_seen + self.idle).min(created_at + self.absolute)
    }

    /// Whether the session still signs its user in at `now`.
    pub fn is_live(&self, created_at: DateTime<Utc>, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now < self.expires_at(created_at, last_seen)
    }
}

/// How long an invitation to a project can be accepted.
pub const INVITATION_VALID_DAYS: i64 = 7;

/// When an invitation created at `created_at` stops working.
pub fn invitation_expires_at(created_at: DateTime<Utc>) -> DateTime<Utc> {
    created_at + Duration::days(INVITATION_VALID_DAYS)
}

/// Whether an invitation created at `created_at` can still be accepted at `now`.
pub fn invitation_is_open(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < invitation_expires_at(created_at)
}

/// Whether something with an optional expiry (an API token, a guest link) still works at
/// `now`: `None` never expires; `Some(t)` works until just before `t`.
pub fn is_unexpired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_none_or(|t| now < t)
}

/// Checks the expiry chosen for a new API token or guest link: none, or a time after `now`.
/// The error is for `field` (e.g. `expires_at`).
pub fn validate_expiry(field: &str, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), Error> {
    match expires_at {
        Some(t) if t <= now => Err(Error::validation(field, "The expiry must be in the future.")),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Share-link visibility
// ---------------------------------------------------------------------------------------------

/// Who may open a stage's share links (besides holders of a live guest link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Visibility {
    /// Signed-in users who may see the project (members and administrators).
    #[default]
    Members,
    /// Anyone who has the link.
    Public,
}

impl Visibility {
    pub const ALL: [Visibility; 2] = [Visibility::Members, Visibility::Public];

    /// The stored and wire form: `members`, `public`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Members => "members",
            Visibility::Public => "public",
        }
    }

    /// How the UI shows it.
    pub fn label(self) -> &'static str {
        match self {
            Visibility::Members => "Members only",
            Visibility::Public => "Public",
        }
    }

    /// Parses `members`/`Public` (case-insensitive, trimmed); the error is for the
    /// `visibility` field.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        Visibility::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::validation("visibility", format!("Unknown visibility '{s}'. Choose members or public."))
        })
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// What the dashboard, REST API and CLI show of accounts
// ---------------------------------------------------------------------------------------------

/// The longest API token name.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;
/// The longest expiry of an API token or guest link, in days.
pub const MAX_EXPIRY_DAYS: u32 = 3650;

/// Checks an API token's name: 1 to [`MAX_TOKEN_NAME_CHARS`] characters, ASCII letters,
/// digits, `.`, `-` and `_`. Returns it trimmed; the error is for the `name` field.
pub fn validate_token_name(input: &str) -> Result<String, Error> {
    let name = input.trim();
    if name.is_empty() {
        return Err(Error::validation("name", "Token name is required."));
    }
    if name.len() > MAX_TOKEN_NAME_CHARS
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(Error::validation(
            "name",
            format!("Token name must be 1 to {MAX_TOKEN_NAME_CHARS} letters, digits, '.', '-' or '_'."),
        ));
    }
    Ok(name.to_owned())
}

/// Checks an expiry in days (1 to [`MAX_EXPIRY_DAYS`]); the error is for `field`.
pub fn validate_expiry_days(field: &str, days: Option<u32>) -> Result<Option<u32>, Error> {
    match days {
        Some(d) if d == 0 || d > MAX_EXPIRY_DAYS => {
            Err(Error::validation(field, format!("The expiry must be 1 to {MAX_EXPIRY_DAYS} days.")))
        }
        other => Ok(other),
    }
}

/// The signed-in user, as `whoami` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub username: String,
    pub is_admin: bool,
    /// The API token the request was made with (`None`: a dashboard session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A personal API token as it is listed: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created: its value is shown this once and never again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub name: String,
    /// The bearer token (`pgt_…`).
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A user as administrators see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A member of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub username: String,
    pub role: Role,
    pub since: DateTime<Utc>,
}

/// An invitation just created: the link (a path of the dashboard, `/invite/pgi_…`) is shown
/// this once; it works once, until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedInvitation {
    pub link: String,
    pub expires_at: DateTime<Utc>,
    pub is_admin: bool,
    pub project: Option<String>,
    pub role: Option<Role>,
}

/// An invitation not used yet, as administrators see it (never its link).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationInfo {
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub is_admin: bool,
    pub project: Option<String>,
    pub role: Option<Role>,
}

/// One change in a project's activity (the audit trail): who did what, when, from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// A username, `NAME (token T)` for an API token, or `system`.
    pub actor: String,
    pub address: Option<String>,
    pub stage_id: Option<String>,
    /// e.g. `stage.created`, `release.deployed`, `member.added`.
    pub kind: String,
    pub target: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const DEV: Option<StageType> = Some(StageType::Dev);
    const QA: Option<StageType> = Some(StageType::Qa);
    const PROD: Option<StageType> = Some(StageType::Prod);

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_readme_shows_the_permission_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = permission_table_markdown();
        assert!(readme.contains(&table), "paste this table into the README:\n{table}");
    }

    /// Every actor the table distinguishes.
    fn actors() -> Vec<Actor> {
        let mut all = vec![Actor::non_member(), Actor::admin()];
        for role in Role::ALL {
            all.push(Actor::member(role));
            all.push(Actor { is_admin: true, role: Some(role) });
        }
        all
    }

    /// `None` plus every stage type.
    fn types() -> [Option<StageType>; 4] {
        [None, DEV, QA, PROD]
    }

    // --- roles ---

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Maintainer && Role::Maintainer < Role::Owner);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
            assert_eq!(Role::parse(&format!(" {} ", role.label())).unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            assert_eq!(role.to_string(), role.as_str());
        }
        let e = Role::parse("admin").unwrap_err();
        assert!(e.is_for("role") && e.message.contains("viewer, developer, maintainer or owner"), "{e:?}");
    }

    // --- the table ---

    #[test]
    fn the_table_cell_by_cell() {
        use Action::*;
        let (v, d, m, o) = (Role::Viewer, Role::Developer, Role::Maintainer, Role::Owner);
        // (action, stage type, roles allowed)
        let cases: &[(Action, Option<StageType>, &[Role])] = &[
            (ReadProject, None, &[v, d, m, o]),
            (ReadStage, PROD, &[v, d, m, o]),
            (ViewActivity, None, &[v, d, m, o]),
            (ReadSecretValues, DEV, &[]),
            (ReadSecretValues, None, &[]),
            (CreateStage, DEV, &[d, m, o]),
            (CreateStage, QA, &[d, m, o]),
            (CreateStage, PROD, &[m, o]),
            (UpdateStage, QA, &[d, m, o]),
            (UpdateStage, PROD, &[m, o]),
            (SuspendStage, DEV, &[d, m, o]),
            (SuspendStage, PROD, &[m, o]),
            (ResumeStage, QA, &[d, m, o]),
            (ResumeStage, PROD, &[m, o]),
            (ConfigureStage, DEV, &[d, m, o]),
            (ConfigureStage, PROD, &[m, o]),
            (Deploy, DEV, &[d, m, o]),
            (Deploy, QA, &[d, m, o]),
            (Deploy, PROD, &[m, o]),
            (Deploy, None, &[m, o]),
            (ManageSharing, QA, &[d, m, o]),
            (ManageSharing, PROD, &[m, o]),
            (DeleteStage, DEV, &[m, o]),
            (DeleteStage, PROD, &[m, o]),
            (RestoreStage, QA, &[m, o]),
            (RegisterBuild, None, &[m, o]),
            (ManageMembers, None, &[o]),
            (ManageProject, None, &[o]),
            (CreateProject, None, &[]),
            (AdministerUsers, None, &[]),
            (AdministerPolicies, None, &[]),
            (ReadServerMetrics, None, &[]),
        ];
        for &(action, t, allowed) in cases {
            for role in Role::ALL {
                let want = allowed.contains(&role);
                assert_eq!(permits(&Actor::member(role), action, t), want, "{role} {action} {t:?}");
            }
            assert!(!permits(&Actor::non_member(), action, t), "non-member {action} {t:?}");
            let admin_may = action != ReadSecretValues;
            assert_eq!(permits(&Actor::admin(), action, t), admin_may, "admin {action} {t:?}");
        }
    }

    #[test]
    fn administrators_may_do_everything_but_read_secret_values() {
        for action in Action::ALL {
            for t in types() {
                for admin in actors().into_iter().filter(|a| a.is_admin) {
                    assert_eq!(permits(&admin, action, t), action != Action::ReadSecretValues, "{admin:?} {action}");
                }
            }
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for action in Action::ALL {
            for t in types() {
                // A higher role may do whatever a lower one may.
                for pair in Role::ALL.windows(2) {
                    if permits(&Actor::member(pair[0]), action, t) {
                        assert!(permits(&Actor::member(pair[1]), action, t), "{:?} {action} {t:?}", pair[1]);
                    }
                }
                // Administrators may do whatever any member may; non-members nothing.
                for role in Role::ALL {
                    if permits(&Actor::member(role), action, t) {
                        assert!(permits(&Actor::admin(), action, t));
                    }
                }
                assert!(!permits(&Actor::non_member(), action, t));
            }
            for actor in actors() {
                // PROD is never less protected than DEV or QA, and no type means PROD.
                let prod = permits(&actor, action, PROD);
                if prod {
                    assert!(permits(&actor, action, DEV) && permits(&actor, action, QA), "{actor:?} {action}");
                }
                assert_eq!(permits(&actor, action, None), prod, "{actor:?} {action}");
                // The type matters only where the action says so.
                if !action.depends_on_stage_type() {
                    assert_eq!(permits(&actor, action, DEV), prod, "{actor:?} {action}");
                }
            }
            // Membership never matters for instance-wide actions.
            if action.is_instance_wide() {
                for role in Role::ALL {
                    assert!(!permits(&Actor::member(role), action, None), "{role} {action}");
                }
            }
        }
    }

    #[test]
    fn actions_are_all_listed_once_and_named_once() {
        // A new variant does not compile here until it is given a place in `Action::ALL`.
        fn position(a: Action) -> usize {
            use Action::*;
            match a {
                ReadProject => 0,
                ReadStage => 1,
                ReadSecretValues => 2,
                CreateStage => 3,
                UpdateStage => 4,
                SuspendStage => 5,
                ResumeStage => 6,
                ConfigureStage => 7,
                Deploy => 8,
                ManageSharing => 9,
                DeleteStage => 10,
                RestoreStage => 11,
                RegisterBuild => 12,
                ViewActivity => 13,
                ManageMembers => 14,
                ManageProject => 15,
                CreateProject => 16,
                AdministerUsers => 17,
                AdministerPolicies => 18,
                ReadServerMetrics => 19,
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for (i, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(position(action), i, "{action}");
            assert!(names.insert(action.as_str()) && labels.insert(action.label()), "{action}");
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
            assert!(!action.label().contains('|'), "{action}: breaks the Markdown table");
        }
    }

    // --- decisions ---

    #[test]
    fn non_members_see_nothing_of_a_project() {
        for action in Action::ALL.into_iter().filter(|a| !a.is_instance_wide()) {
            for t in types() {
                assert_eq!(decide(&Actor::non_member(), action, t, "shop"), Decision::Invisible, "{action} {t:?}");
                let e = authorize(&Actor::non_member(), action, t, "shop").unwrap_err();
                assert_eq!(e, project_not_found("shop"));
                assert_eq!((e.kind, e.kind.status()), (ErrorKind::NotFound, 404));
            }
        }
    }

    #[test]
    fn refusals_name_the_role_needed() {
        let cases: &[(Actor, Action, Option<StageType>, &str)] = &[
            (
                Actor::member(Role::Developer),
                Action::Deploy,
                PROD,
                "Deploying to a PROD stage needs the maintainer role in project 'x'; you are a developer.",
            ),
            (
                Actor::member(Role::Viewer),
                Action::Deploy,
                QA,
                "Deploying to a QA stage needs the developer role in project 'x'; you are a viewer.",
            ),
            (
                Actor::member(Role::Developer),
                Action::DeleteStage,
                DEV,
                "Deleting a stage needs the maintainer role in project 'x'; you are a developer.",
            ),
            (
                Actor::member(Role::Maintainer),
                Action::ManageMembers,
                None,
                "Managing members needs the owner role in project 'x'; you are a maintainer.",
            ),
            (
                Actor::member(Role::Developer),
                Action::ConfigureStage,
                None,
                "Changing the settings of a PROD stage needs the maintainer role in project 'x'; you are a developer.",
            ),
            (
                Actor::member(Role::Owner),
                Action::AdministerUsers,
                None,
                "Managing users needs an administrator; you are not one.",
            ),
            (
                Actor::non_member(),
                Action::CreateProject,
                None,
                "Creating a project needs an administrator; you are not one.",
            ),
        ];
        for (actor, action, t, want) in cases {
            assert_eq!(decide(actor, *action, *t, "x"), Decision::Forbidden((*want).to_owned()));
            let e = authorize(actor, *action, *t, "x").unwrap_err();
            assert_eq!((e.kind, e.kind.status(), e.message.as_str()), (ErrorKind::Forbidden, 403, *want));
        }
    }

    #[test]
    fn secret_values_are_refused_to_everyone_who_can_see_the_project() {
        for actor in actors().into_iter().filter(|a| a.is_admin || a.role.is_some()) {
            match decide(&actor, Action::ReadSecretValues, QA, "x") {
                Decision::Forbidden(m) => assert!(m.contains("never shown"), "{m}"),
                other => panic!("{actor:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn decide_agrees_with_permits_everywhere() {
        for actor in actors() {
            for action in Action::ALL {
                for t in types() {
                    let d = decide(&actor, action, t, "p");
                    assert_eq!(d.is_allowed(), permits(&actor, action, t), "{actor:?} {action} {t:?}");
                    assert_eq!(authorize(&actor, action, t, "p").is_ok(), d.is_allowed());
                    if d == Decision::Invisible {
                        assert!(!actor.is_admin && actor.role.is_none() && !action.is_instance_wide());
                    }
                }
            }
        }
    }

    #[test]
    fn changing_a_stage_type_needs_both_types() {
        let dev = Actor::member(Role::Developer);
        let check =
            |from, to| decide(&dev, Action::UpdateStage, from, "x").and(decide(&dev, Action::UpdateStage, to, "x"));
        assert_eq!(check(DEV, QA), Decision::Allowed);
        for (from, to) in [(DEV, PROD), (PROD, QA)] {
            assert!(matches!(check(from, to), Decision::Forbidden(m) if m.contains("Changing a PROD stage")));
        }
    }

    // --- the README table ---

    #[test]
    fn the_markdown_table_shows_the_table() {
        let md = permission_table_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| Action | viewer | developer | maintainer | owner | administrator |");
        assert_eq!(lines[1], "| --- | :---: | :---: | :---: | :---: | :---: |");
        assert_eq!(lines.len(), 2 + Action::ALL.len());
        let row = |action: Action| -> Vec<String> {
            let line = lines.iter().find(|l| l.starts_with(&format!("| {} |", action.label()))).unwrap();
            line.trim_matches('|').split('|').skip(1).map(|c| c.trim().to_owned()).collect()
        };
        assert_eq!(row(Action::Deploy), ["—", "DEV, QA", "✓", "✓", "✓"]);
        assert_eq!(row(Action::ReadStage), ["✓", "✓", "✓", "✓", "✓"]);
        assert_eq!(row(Action::ReadSecretValues), ["—", "—", "—", "—", "—"]);
        assert_eq!(row(Action::DeleteStage), ["—", "—", "✓", "✓", "✓"]);
        assert_eq!(row(Action::ManageMembers), ["—", "—", "—", "✓", "✓"]);
        assert_eq!(row(Action::AdministerPolicies), ["—", "—", "—", "—", "✓"]);
    }

    #[test]
    fn every_action_has_a_row_in_the_markdown_table() {
        let md = permission_table_markdown();
        for action in Action::ALL {
            let rows = md.lines().filter(|l| l.starts_with(&format!("| {} |", action.label()))).count();
            assert_eq!(rows, 1, "{action}");
        }
        for line in md.lines() {
            assert_eq!(line.matches('|').count(), 7, "{line}");
        }
    }

    // --- credentials ---

    #[test]
    fn usernames_follow_the_rule() {
        assert_eq!(validate_username("alice").unwrap(), "alice");
        assert_eq!(validate_username("  Alice.Smith_2-x ").unwrap(), "alice.smith_2-x");
        assert_eq!(validate_username("a").unwrap(), "a");
        let longest = format!("a{}", "0".repeat(63));
        assert_eq!(validate_username(&longest).unwrap(), longest);
        let cases: &[(&str, &str)] = &[
            ("", "Username is required."),
            ("   ", "Username is required."),
            (&format!("a{}", "b".repeat(64)), "at most 64 characters (it has 65)"),
            ("1alice", "must start with a letter a-z (it starts with '1')"),
            ("_alice", "must start with a letter a-z (it starts with '_')"),
            ("alice smith", "may only contain letters a-z, digits 0-9, '.', '-' and '_' (found U+0020)"),
            ("zoë", "(found 'ë')"),
            ("bob@example.com", "(found '@')"),
            ("tab\tbed", "(found U+0009)"),
            ("evil\u{202E}", "(found U+202E)"),
            ("a\u{200B}b", "(found U+200B)"),
        ];
        for (input, want) in cases {
            let e = validate_username(input).unwrap_err();
            assert!(e.is_for("username"), "{input:?}");
            assert!(e.message.contains(want), "{input:?}: {}", e.message);
        }
    }

    #[test]
    fn usernames_normalize_for_lookup_and_throttling() {
        assert_eq!(normalize_username(" ALICE "), "alice");
        assert_eq!(normalize_username("Alice"), normalize_username("alice"));
    }

    #[test]
    fn passwords_follow_the_rule_and_are_never_repeated() {
        assert!(validate_password("correct horse").is_ok());
        assert!(validate_password("0123456789").is_ok());
        assert!(validate_password("  spaced out  ").is_ok(), "passwords are not trimmed");
        assert!(validate_password("ünïcödé€€€").is_ok(), "ten characters, more bytes");
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        let cases: &[(&str, &str)] = &[
            ("", "Password is required."),
            ("            ", "Password must not be only spaces."),
            ("\t\n \t\n \t\n ", "Password must not be only spaces."),
            ("hunter2", "Password must be at least 10 characters long."),
            ("123456789", "Password must be at least 10 characters long."),
            (&"x".repeat(1025), "Password must be at most 1024 bytes long."),
            (&"é".repeat(513), "Password must be at most 1024 bytes long."),
        ];
        for (input, want) in cases {
            let e = validate_password(input).unwrap_err();
            assert!(e.is_for("password"), "{input:?}");
            assert_eq!(e.message, *want);
            if input.trim().len() > 2 {
                assert!(!e.message.contains(input.trim()), "the message repeats the password");
            }
        }
    }

    // --- throttle ---

    fn minutes(m: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(m)
    }

    #[test]
    fn four_failures_allow_a_fifth_attempt() {
        let th = Throttle::default();
        let failures = [minutes(0), minutes(1), minutes(2), minutes(3)];
        assert_eq!(th.check(&failures, minutes(4)), Ok(()));
        assert_eq!(th.check(&[], minutes(4)), Ok(()));
    }

    #[test]
    fn five_failures_lock_out_until_the_oldest_leaves_the_window() {
        let th = Throttle::default();
        let failures = [minutes(0), minutes(1), minutes(2), minutes(3), minutes(4)];
        // The oldest (12:00) leaves the 15-minute window at 12:15.
        assert_eq!(th.check(&failures, minutes(5)), Err(RetryAfter(600)));
        assert_eq!(th.check(&failures, minutes(14)), Err(RetryAfter(60)));
        assert_eq!(th.check(&failures, minutes(15) - Duration::milliseconds(1500)), Err(RetryAfter(2)));
        assert_eq!(th.check(&failures, minutes(15) - Duration::milliseconds(1)), Err(RetryAfter(1)));
        assert_eq!(th.check(&failures, minutes(15)), Ok(()));
        assert_eq!(th.check(&failures, minutes(60)), Ok(()));
        // The order in which the store returns them does not matter.
        let shuffled = [minutes(3), minutes(0), minutes(4), minutes(2), minutes(1)];
        assert_eq!(th.check(&shuffled, minutes(5)), Err(RetryAfter(600)));
    }

    #[test]
    fn old_failures_do_not_count_and_extra_ones_extend_the_wait() {
        let th = Throttle::default();
        // Two failures an hour ago and four recent ones: four count.
        let failures = [minutes(-60), minutes(-59), minutes(10), minutes(11), minutes(12), minutes(13)];
        assert_eq!(th.check(&failures, minutes(14)), Ok(()));
        // Seven failures within the window: locked until the third oldest leaves it, when four
        // remain.
        let failures: Vec<_> = (0..7).map(minutes).collect();
        assert_eq!(th.check(&failures, minutes(7)), Err(RetryAfter(10 * 60)));
        assert_eq!(th.check(&failures, minutes(17)), Ok(()));
    }

    #[test]
    fn failures_from_one_ipv6_network_count_together() {
        let key = Throttle::address_key;
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("unknown"), "unknown");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:2::9"), key("2001:db8:1:3::9"));
        assert_eq!(key("::ffff:203.0.113.9"), "::ffff:203.0.113.9");
    }

    #[test]
    fn a_refusal_converts_to_a_429_with_retry_after() {
        let e: Error = RetryAfter(600).into();
        assert_eq!((e.kind.status(), e.retry_after), (429, Some(600)));
        assert_eq!(Throttle::default().window_start(minutes(15)), minutes(0));
        let strict = Throttle { max_failures: 0, window: Duration::minutes(1) };
        assert_eq!(strict.check(&[minutes(0)], minutes(0)), Err(RetryAfter(60)), "0 is taken as 1");
        assert_eq!(strict.check(&[], minutes(0)), Ok(()));
    }

    proptest! {
        /// Refused exactly when `max_failures` or more failures fall in the window; and once
        /// refused, the wait is exact: allowed at `now + retry_after`, still refused a second
        /// earlier (when that is after `now`).
        #[test]
        fn throttle_waits_exactly_as_long_as_needed(
            offsets in proptest::collection::vec(-1800i64..60, 0..12),
            max in 1u32..7,
            window_secs in 1i64..3600,
        ) {
            let th = Throttle { max_failures: max, window: Duration::seconds(window_secs) };
            let now = t0();
            let failures: Vec<_> = offsets.iter().map(|&s| now + Duration::seconds(s)).collect();
            let counted = failures.iter().filter(|&&t| t > now - th.window).count();
            match th.check(&failures, now) {
                Ok(()) => prop_assert!(counted < max as usize),
                Err(RetryAfter(secs)) => {
                    prop_assert!(counted >= max as usize && secs >= 1);
                    let later = now + Duration::seconds(secs as i64);
                    prop_assert_eq!(th.check(&failures, later), Ok(()));
                    if secs > 1 {
                        let earlier = later - Duration::seconds(1);
                        prop_assert!(th.check(&failures, earlier).is_err());
                    }
                }
            }
        }

        #[test]
        fn valid_usernames_are_accepted_as_they_are(name in "[a-z][a-z0-9._-]{0,63}") {
            prop_assert_eq!(validate_username(&name).unwrap(), name);
        }

        #[test]
        fn accepted_usernames_follow_the_rule(input in "\\PC{0,70}") {
            if let Ok(name) = validate_username(&input) {
                prop_assert!((1..=MAX_USERNAME_CHARS).contains(&name.len()));
                prop_assert!(name.starts_with(|c: char| c.is_ascii_lowercase()));
                prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c)));
                prop_assert_eq!(validate_username(&name).unwrap(), name.clone());
            }
        }
    }

    // --- sessions, invitations, tokens ---

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let p = SessionPolicy { idle: Duration::hours(1), absolute: Duration::hours(8) };
        let created = t0();
        assert!(p.is_live(created, created, created));
        assert!(p.is_live(created, created, created + Duration::minutes(59)));
        assert!(!p.is_live(created, created, created + Duration::hours(1)), "idle for an hour");
        // Used every half hour: live until the absolute limit, not a moment longer.
        let seen = created + Duration::hours(7) + Duration::minutes(30);
        assert!(p.is_live(created, seen, created + Duration::hours(7) + Duration::minutes(59)));
        assert!(!p.is_live(created, seen, created + Duration::hours(8)), "eight hours old");
        assert_eq!(p.expires_at(created, seen), created + Duration::hours(8));
        assert_eq!(p.expires_at(created, created + Duration::hours(2)), created + Duration::hours(3));
        let d = SessionPolicy::default();
        assert_eq!((d.idle, d.absolute), (Duration::hours(12), Duration::days(7)));
    }

    #[test]
    fn invitations_last_seven_days() {
        assert_eq!(invitation_expires_at(t0()), t0() + Duration::days(7));
        assert!(invitation_is_open(t0(), t0() + Duration::days(7) - Duration::seconds(1)));
        assert!(!invitation_is_open(t0(), t0() + Duration::days(7)));
    }

    #[test]
    fn tokens_and_guest_links_expire_when_told() {
        assert!(is_unexpired(None, t0() + Duration::days(10_000)));
        let exp = Some(t0() + Duration::days(30));
        assert!(is_unexpired(exp, t0()));
        assert!(!is_unexpired(exp, t0() + Duration::days(30)));
        assert!(validate_expiry("expires_at", None, t0()).is_ok());
        assert!(validate_expiry("expires_at", exp, t0()).is_ok());
        let e = validate_expiry("expires_at", Some(t0()), t0()).unwrap_err();
        assert!(e.is_for("expires_at") && e.message.contains("in the future"));
    }

    // --- visibility ---

    #[test]
    fn visibility_defaults_to_members_and_round_trips() {
        assert_eq!(Visibility::default(), Visibility::Members);
        for v in Visibility::ALL {
            assert_eq!(Visibility::parse(v.as_str()).unwrap(), v);
            assert_eq!(Visibility::parse(&format!(" {} ", v.as_str().to_uppercase())).unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            assert_eq!(serde_json::from_value::<Visibility>(v.as_str().into()).unwrap(), v);
        }
        let e = Visibility::parse("private").unwrap_err();
        assert!(e.is_for("visibility") && e.message.contains("members or public"));
    }
}
