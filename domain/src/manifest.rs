//! Build manifests: the TOML file that describes a Build's components.
//!
//! ```toml
//! version = "1.4.2"            # optional label of the build
//!
//! [[component]]
//! name = "web"                 # a DNS label: it ends up in share-link host names
//! kind = "service"             # service | worker | job | cron
//! command = "./web"
//! args = ["--verbose"]
//! port = 8080                  # services only, optional: the preferred PORT (another free
//!                              # port is assigned when it is taken)
//! storage = ["uploads"]        # named persistent volumes, kept across suspend and redeploy
//! env = { LOG_LEVEL = "info" }
//! health = { path = "/healthz", interval_secs = 5 }   # services only
//!
//! [[component]]
//! name = "nightly"
//! kind = "cron"
//! schedule = "0 3 * * *"       # minute hour day-of-month month day-of-week
//! command = "./cleanup"
//!
//! [[component]]
//! name = "cache"
//! kind = "worker"
//! image = "redis:7.4"          # a ready image instead of the build's files (a runtime
//!                              # that runs containers only); without a command, the image's
//!                              # own runs
//! ```
//!
//! [`parse_manifest`] rejects a malformed manifest with the line and the reason.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
#[cfg(feature = "manifest")]
use std::collections::HashSet;
use std::fmt;

/// A manifest that passed every check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    pub version: Option<String>,
    pub components: Vec<ComponentSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentSpec {
    pub name: String,
    pub kind: ComponentKind,
    /// What runs, in the build's files (`./web`) or on `PATH`; empty for an image's own
    /// entrypoint.
    pub command: String,
    /// A ready container image run instead of the build's files (a runtime that runs
    /// containers only: the local runtime refuses such a build at deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub args: Vec<String>,
    pub port: Option<u16>,
    pub schedule: Option<String>,
    pub health: Option<HealthCheck>,
    pub storage: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// Runs continuously and listens on `PORT`; restarted when it exits; has a share link.
    Service,
    /// Runs continuously without a port (a queue consumer, say); restarted when it exits.
    Worker,
    /// Runs once per release, to completion.
    Job,
    /// Runs on a schedule, while the stage is running.
    Cron,
}

impl ComponentKind {
    /// As the manifest spells it: `service`, `worker`, `job`, `cron`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Service => "service",
            ComponentKind::Worker => "worker",
            ComponentKind::Job => "job",
            ComponentKind::Cron => "cron",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    /// HTTP path probed on the component's port, e.g. `/healthz`.
    pub path: String,
    /// Seconds between probes.
    pub interval_secs: u32,
}

/// Why a manifest was rejected: the 1-based line (when known) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestError {
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl From<ManifestError> for crate::Error {
    fn from(e: ManifestError) -> Self {
        crate::Error::validation("manifest", format!("Invalid manifest, {e}"))
    }
}

/// Environment variables the platform sets itself; a manifest may not override them.
pub const RESERVED_ENV: &[&str] = &["PORT", "TMPDIR"];
pub const RESERVED_ENV_PREFIX: &str = "PERGOLA_";

/// Environment variables the dynamic loader, the C library, shells or language runtimes read to
/// decide which programs, libraries or code run; neither a stage's configuration nor a manifest
/// may set them. A trailing `*` stands for any name with that prefix.
pub const FORBIDDEN_ENV: &[&str] = &[
    "LD_*",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "MALLOC_*",
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
];

/// The longest environment variable name a manifest or a stage's configuration may use.
pub const MAX_ENV_KEY_LEN: usize = 128;
/// The most components a manifest may have: each is a process tree (or a Deployment, a
/// Service and their pods), a series of metrics and a log; a manifest of thousands would
/// make one deploy take a machine or a namespace.
pub const MAX_COMPONENTS: usize = 64;

/// Whether `key` is one of [`FORBIDDEN_ENV`] (a name, or a name with one of its prefixes).
pub fn is_forbidden_env(key: &str) -> bool {
    FORBIDDEN_ENV.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => key == *entry,
    })
}

#[cfg(feature = "manifest")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<String>,
    #[serde(default)]
    component: Vec<toml::Spanned<RawComponent>>,
}

#[cfg(feature = "manifest")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: String,
    kind: ComponentKind,
    command: Option<String>,
    image: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    port: Option<u16>,
    schedule: Option<String>,
    health: Option<RawHealth>,
    #[serde(default)]
    storage: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[cfg(feature = "manifest")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: String,
    #[serde(default = "default_interval")]
    interval_secs: u32,
}

#[cfg(feature = "manifest")]
fn default_interval() -> u32 {
    10
}

#[cfg(feature = "manifest")]
/// Parses and checks a manifest.
pub fn parse_manifest(text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError {
        line: e.span().map(|span| line_of(text, span.start)),
        reason: e.message().trim().to_owned(),
    })?;
    if raw.component.is_empty() {
        return Err(ManifestError { line: None, reason: "the manifest has no [[component]]".into() });
    }
    if raw.component.len() > MAX_COMPONENTS {
        let line = raw.component.get(MAX_COMPONENTS).map(|c| line_of(text, c.span().start));
        let reason =
            format!("a manifest has at most {MAX_COMPONENTS} components; this one has {}", raw.component.len());
        return Err(ManifestError { line, reason });
    }
    let mut names = HashSet::new();
    let mut components = Vec::with_capacity(raw.component.len());
    for spanned in raw.component {
        let line = line_of(text, spanned.span().start);
        let c = spanned.into_inner();
        let fail = |reason: String| {
            Err(ManifestError { line: Some(line), reason: format!("component '{}': {reason}", c.name) })
        };
        if let Err(e) = crate::validate_id(crate::IdKind::Component, &c.name) {
            return Err(ManifestError { line: Some(line), reason: e.message });
        }
        if !names.insert(c.name.clone()) {
            return fail("the name is used by another component".into());
        }
        match (&c.command, &c.image) {
            (None, None) => return fail("a command is needed (or an image, whose own command then runs)".into()),
            (Some(command), _) if command.trim().is_empty() => return fail("command must not be empty".into()),
            _ => {}
        }
        if let Some(image) = &c.image {
            if let Err(reason) = check_image(image) {
                return fail(reason);
            }
        }
        match c.kind {
            ComponentKind::Service => {
                if c.port == Some(0) {
                    return fail("port must be between 1 and 65535".into());
                }
            }
            ComponentKind::Worker | ComponentKind::Job | ComponentKind::Cron => {
                if c.port.is_some() || c.health.is_some() {
                    return fail("only services have a port and a health check".into());
                }
            }
        }
        match (c.kind, &c.schedule) {
            (ComponentKind::Cron, None) => return fail("a cron component needs a schedule".into()),
            (ComponentKind::Cron, Some(s)) => {
                if let Err(reason) = check_schedule(s) {
                    return fail(reason);
                }
            }
            (_, Some(_)) => return fail("only cron components have a schedule".into()),
            _ => {}
        }
        if let Some(h) = &c.health {
            if !h.path.starts_with('/') {
                return fail("the health check path must start with '/'".into());
            }
            if h.interval_secs == 0 {
                return fail("the health check interval must be at least 1 second".into());
            }
        }
        let mut volumes = HashSet::new();
        for volume in &c.storage {
            if volume.is_empty()
                || !volume.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
            {
                return fail(format!("storage name '{volume}' may only contain a-z, 0-9, '_' and '-'"));
            }
            if !volumes.insert(volume) {
                return fail(format!("storage '{volume}' is listed twice"));
            }
        }
        for key in c.env.keys() {
            if let Err(reason) = check_env_key(key) {
                return fail(reason);
            }
        }
        components.push(ComponentSpec {
            name: c.name,
            kind: c.kind,
            command: c.command.unwrap_or_default(),
            image: c.image,
            args: c.args,
            port: c.port,
            schedule: c.schedule,
            health: c.health.map(|h| HealthCheck { path: h.path, interval_secs: h.interval_secs }),
            storage: c.storage,
            env: c.env,
        });
    }
    Ok(Manifest { version: raw.version, components })
}

/// The longest image reference a manifest may name.
pub const MAX_IMAGE_LEN: usize = 255;

/// An image reference as registries name them — `redis:7.4`, `ghcr.io/acme/web@sha256:…`:
/// letters, digits and `._-/:@`, starting with a letter or digit, at most one `@`, at most
/// [`MAX_IMAGE_LEN`] characters. Nothing that a shell or YAML would read otherwise.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return Err(format!("the image must be 1 to {MAX_IMAGE_LEN} characters"));
    }
    let allowed = image.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if !allowed || !image.starts_with(|c: char| c.is_ascii_alphanumeric()) || image.matches('@').count() > 1 {
        return Err(format!(
            "'{image}' is not an image reference (letters, digits and . _ - / : @, starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// Environment variable names: `[A-Z_][A-Z0-9_]*`, at most [`MAX_ENV_KEY_LEN`] characters, not
/// one the platform sets and not one of [`FORBIDDEN_ENV`]. Shared by a manifest's `env` and a
/// stage's configuration ([`crate::validate_config`]).
pub fn check_env_key(key: &str) -> Result<(), String> {
    let valid = key.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if key.len() > MAX_ENV_KEY_LEN {
        return Err(format!("a variable name must be at most {MAX_ENV_KEY_LEN} characters (it has {})", key.len()));
    }
    if !valid {
        return Err(format!("'{key}' is not a valid variable name (use A-Z, 0-9 and '_', not starting with a digit)"));
    }
    if RESERVED_ENV.contains(&key) || key.starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!("'{key}' is set by Pergola and cannot be overridden"));
    }
    if is_forbidden_env(key) {
        return Err(format!("'{key}' is not allowed: it changes which programs or libraries run"));
    }
    Ok(())
}

/// A parsed five-field cron schedule: minute, hour, day of month, month, day of week; each
/// field `*`, a number, a range `a-b`, a list `a,b`, or a step (`*/n`, `a-b/n`). Day of week
/// 0 and 7 are Sunday. As in cron, when both day fields are restricted, either may match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    fields: [Vec<bool>; 5],
    day_of_month_any: bool,
    day_of_week_any: bool,
}

const CRON_FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];

impl Schedule {
    pub fn parse(schedule: &str) -> Result<Self, String> {
        let parts: Vec<&str> = schedule.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("schedule '{schedule}' needs 5 fields (minute hour day-of-month month day-of-week)"));
        }
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (i, (part, (field, lo, hi))) in parts.iter().zip(CRON_FIELDS).enumerate() {
            let mut allowed = vec![false; hi as usize + 1];
            for item in part.split(',') {
                let bad = || format!("schedule '{schedule}': '{item}' is not a valid {field} ({lo}-{hi})");
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(bad)?),
                    None => (item, 1),
                };
                let number = |s: &str| s.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
                let (from, to) = if range == "*" {
                    (lo, hi)
                } else if let Some((a, b)) = range.split_once('-') {
                    match (number(a), number(b)) {
                        (Some(a), Some(b)) if a <= b => (a, b),
                        _ => return Err(bad()),
                    }
                } else {
                    let n = number(range).ok_or_else(bad)?;
                    (n, if item.contains('/') { hi } else { n })
                };
                for v in (from..=to).step_by(step as usize) {
                    allowed[v as usize] = true;
                }
            }
            if i == 4 && allowed[7] {
                allowed[0] = true; // 7 is Sunday too
            }
            fields[i] = allowed;
        }
        Ok(Schedule { fields, day_of_month_any: parts[2] == "*", day_of_week_any: parts[4] == "*" })
    }

    /// Whether the schedule fires in the minute of `t`.
    pub fn matches(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let [minute, hour, dom, month, dow] = &self.fields;
        let day_of_month = dom[t.day() as usize];
        let day_of_week = dow[t.weekday().num_days_from_sunday() as usize];
        let day = match (self.day_of_month_any, self.day_of_week_any) {
            (true, true) => true,
            (true, false) => day_of_week,
            (false, true) => day_of_month,
            (false, false) => day_of_month || day_of_week,
        };
        minute[t.minute() as usize] && hour[t.hour() as usize] && month[t.month() as usize] && day
    }
}

#[cfg(feature = "manifest")]
fn check_schedule(schedule: &str) -> Result<(), String> {
    Schedule::parse(schedule).map(|_| ())
}

#[cfg(feature = "manifest")]
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"version = "1.0.0"

[[component]]
name = "web"
kind = "service"
command = "./web"
args = ["--verbose"]
port = 8080
storage = ["uploads"]
env = { LOG_LEVEL = "info" }
health = { path = "/healthz", interval_secs = 5 }

[[component]]
name = "worker"
kind = "job"
command = "./migrate"

[[component]]
name = "queue"
kind = "worker"
command = "./consume"

[[component]]
name = "nightly"
kind = "cron"
schedule = "*/15 3-5 * * 1,3"
command = "./cleanup"
"#;

    #[test]
    fn a_full_manifest_parses() {
        let m = parse_manifest(DEMO).unwrap();
        assert_eq!(m.version.as_deref(), Some("1.0.0"));
        let names: Vec<_> = m.components.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(
            names,
            [
                ("web", ComponentKind::Service),
                ("worker", ComponentKind::Job),
                ("queue", ComponentKind::Worker),
                ("nightly", ComponentKind::Cron)
            ]
        );
        let web = &m.components[0];
        assert_eq!(
            (web.port, web.args.as_slice(), web.storage.as_slice()),
            (Some(8080), &["--verbose".to_owned()][..], &["uploads".to_owned()][..])
        );
        assert_eq!(web.health, Some(HealthCheck { path: "/healthz".into(), interval_secs: 5 }));
        assert_eq!(web.env["LOG_LEVEL"], "info");
    }

    #[test]
    fn a_component_may_run_a_ready_image_with_or_without_a_command() {
        let text = "[[component]]\nname = \"cache\"\nkind = \"worker\"\nimage = \"redis:7.4\"\n\n\
                    [[component]]\nname = \"web\"\nkind = \"service\"\nimage = \"ghcr.io/acme/web@sha256:00ff\"\n\
                    command = \"/bin/web\"\nargs = [\"--port\", \"8080\"]\n";
        let m = parse_manifest(text).unwrap();
        assert_eq!((m.components[0].image.as_deref(), m.components[0].command.as_str()), (Some("redis:7.4"), ""));
        assert_eq!(m.components[1].image.as_deref(), Some("ghcr.io/acme/web@sha256:00ff"));
        assert_eq!(m.components[1].command, "/bin/web");
        assert_eq!(parse_manifest(DEMO).unwrap().components[0].image, None);
        assert!(check_image(&"a".repeat(MAX_IMAGE_LEN)).is_ok());
        assert!(check_image(&"a".repeat(MAX_IMAGE_LEN + 1)).is_err());
    }

    #[test]
    fn a_manifest_has_at_most_so_many_components() {
        let component = |n: usize| format!("[[component]]\nname = \"c{n}\"\nkind = \"worker\"\ncommand = \"x\"\n");
        let of = |count: usize| (0..count).map(component).collect::<String>();
        assert_eq!(parse_manifest(&of(MAX_COMPONENTS)).unwrap().components.len(), MAX_COMPONENTS);
        let e = parse_manifest(&of(MAX_COMPONENTS + 1)).unwrap_err();
        assert_eq!(e.reason, format!("a manifest has at most {MAX_COMPONENTS} components; this one has 65"));
        assert_eq!(e.line, Some(4 * MAX_COMPONENTS + 1), "the first one too many");
    }

    #[test]
    fn malformed_manifests_are_rejected_with_line_and_reason() {
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("", None, "no [[component]]"),
            ("[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"x\"\nport = 70000\n", Some(5), "70000"),
            ("[[component]]\nname = \"web\"\nkind = \"daemon\"\ncommand = \"x\"\n", Some(3), "unknown variant `daemon`"),
            ("[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"x\"\nprot = 80\n", Some(5), "unknown field `prot`"),
            ("[[component]]\nname = \"web\"\nkind = \"service\"\n", Some(1), "a command is needed (or an image"),
            ("[[component]]\nname = \"c\"\nkind = \"worker\"\nimage = \"\"\n", Some(1), "1 to 255 characters"),
            ("[[component]]\nname = \"c\"\nkind = \"worker\"\nimage = \"redis 7\"\n", Some(1), "'redis 7' is not an image reference"),
            ("[[component]]\nname = \"c\"\nkind = \"worker\"\nimage = \"-v:/etc\"\n", Some(1), "is not an image reference"),
            ("[[component]]\nname = \"c\"\nkind = \"worker\"\nimage = \"a@b@c\"\n", Some(1), "is not an image reference"),
            ("[[component]]\nname = \"c\"\nkind = \"worker\"\nimage = \"x\\ny\"\n", Some(1), "is not an image reference"),
            ("version = \"1\"\n\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"x\"\nport = 0\n", Some(3), "between 1 and 65535"),
            ("[[component]]\nname = \"w\"\nkind = \"worker\"\ncommand = \"x\"\nport = 80\n", Some(1), "only services have a port"),
            ("[[component]]\nname = \"Web App\"\nkind = \"job\"\ncommand = \"x\"\n", Some(1), "Component name may only contain"),
            ("[[component]]\nname = \"a\"\nkind = \"job\"\ncommand = \"x\"\n[[component]]\nname = \"a\"\nkind = \"job\"\ncommand = \"y\"\n", Some(5), "used by another component"),
            ("[[component]]\nname = \"j\"\nkind = \"job\"\ncommand = \"x\"\nport = 80\n", Some(1), "only services have a port"),
            ("[[component]]\nname = \"c\"\nkind = \"cron\"\ncommand = \"x\"\n", Some(1), "needs a schedule"),
            ("[[component]]\nname = \"c\"\nkind = \"cron\"\ncommand = \"x\"\nschedule = \"61 * * * *\"\n", Some(1), "not a valid minute"),
            ("[[component]]\nname = \"c\"\nkind = \"cron\"\ncommand = \"x\"\nschedule = \"* * *\"\n", Some(1), "needs 5 fields"),
            ("[[component]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nport = 1\nenv = { PORT = \"2\" }\n", Some(1), "'PORT' is set by Pergola"),
            ("[[component]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nport = 1\nenv = { lower = \"2\" }\n", Some(1), "not a valid variable name"),
            ("[[component]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nport = 1\nenv = { LD_PRELOAD = \"/x.so\" }\n", Some(1), "'LD_PRELOAD' is not allowed: it changes which programs or libraries run"),
            ("[[component]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nport = 1\nhealth = { path = \"healthz\" }\n", Some(1), "must start with '/'"),
            ("[[component]]\nname = \"s\"\nkind = \"service\"\ncommand = \"x\"\nport = 1\nstorage = [\"Data\"]\n", Some(1), "storage name 'Data'"),
            ("[[component]]\nname = \"s\"\nkind = \"job\"\ncommand = \"  \"\n", Some(1), "command must not be empty"),
            ("[[component]\nname = 1", Some(1), ""),
        ];
        for (text, line, why) in cases {
            let e = parse_manifest(text).expect_err(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.reason.contains(why), "{text:?}: {e}");
        }
        let e: crate::Error = parse_manifest("").unwrap_err().into();
        assert!(e.is_for("manifest"));
    }

    #[test]
    fn schedules_match_like_cron() {
        use chrono::TimeZone;
        let at = |d, h, m| chrono::Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap(); // 2026-11-01 is a Sunday
        let every = Schedule::parse("* * * * *").unwrap();
        assert!(every.matches(at(28, 12, 34)));
        let quarter = Schedule::parse("*/15 3-5 * * *").unwrap();
        assert!(quarter.matches(at(2, 3, 0)) && quarter.matches(at(2, 5, 45)));
        assert!(!quarter.matches(at(2, 3, 10)) && !quarter.matches(at(2, 6, 0)));
        let weekdays = Schedule::parse("0 9 * * 1-5").unwrap();
        assert!(weekdays.matches(at(2, 9, 0)), "Monday");
        assert!(!weekdays.matches(at(1, 9, 0)), "Sunday");
        let sunday = Schedule::parse("30 8 * * 7").unwrap();
        assert!(sunday.matches(at(1, 8, 30)), "7 is Sunday");
        let either = Schedule::parse("0 0 15 * 1").unwrap();
        assert!(either.matches(at(15, 0, 0)) && either.matches(at(2, 0, 0)), "day of month OR day of week");
        assert!(!either.matches(at(3, 0, 0)));
        let list = Schedule::parse("5,10 * * 11 *").unwrap();
        assert!(list.matches(at(4, 1, 10)) && !list.matches(at(4, 1, 11)));
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
