//! The server's configuration: every environment variable it reads, with its default and its
//! meaning, in one table ([`SETTINGS`]). The README's configuration table is checked against
//! it (a test fails when they drift), and [`ServerConfig::from_env`] reads exactly these.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One environment variable the server reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    /// What it means, as the README says it (Markdown).
    pub meaning: &'static str,
    /// The default, as the README says it (Markdown).
    pub default: &'static str,
}

pub const SITE_ADDR: &str = "LEPTOS_SITE_ADDR";
pub const PUBLIC_URL: &str = "PERGOLA_PUBLIC_URL";
pub const TRUSTED_PROXIES: &str = "PERGOLA_TRUSTED_PROXIES";
pub const DATA_DIR: &str = "PERGOLA_DATA_DIR";
pub const DATABASE_URL: &str = "DATABASE_URL";
pub const PURGE_INTERVAL: &str = "PERGOLA_PURGE_INTERVAL_SECS";
pub const GRACE: &str = "PERGOLA_GRACE_SECS";
pub const SANDBOX: &str = "PERGOLA_SANDBOX";
pub const OUTBOUND_PORTS: &str = "PERGOLA_OUTBOUND_PORTS";
pub const SECRET_KEY: &str = "PERGOLA_SECRET_KEY";
pub const SHARE_DOMAIN: &str = "PERGOLA_SHARE_DOMAIN";
pub const SHARE_PORT: &str = "PERGOLA_SHARE_PORT";
pub const DEMO_DIR: &str = "PERGOLA_DEMO_DIR";
pub const MAX_ARTIFACT_MB: &str = "PERGOLA_MAX_ARTIFACT_MB";
pub const ARTIFACT_RETENTION_DAYS: &str = "PERGOLA_ARTIFACT_RETENTION_DAYS";
pub const PATH_BUILDS: &str = "PERGOLA_PATH_BUILDS";
pub const ADMIN_USER: &str = "PERGOLA_ADMIN_USER";
pub const ADMIN_PASSWORD: &str = "PERGOLA_ADMIN_PASSWORD";
pub const LOG: &str = "RUST_LOG";
pub const SITE_ROOT: &str = "LEPTOS_SITE_ROOT";
pub const TEST_POSTGRES_URL: &str = "PERGOLA_TEST_POSTGRES_URL";
pub const RUNTIME: &str = "PERGOLA_RUNTIME";
pub const KUBE_BASE_IMAGE: &str = "PERGOLA_KUBE_BASE_IMAGE";
pub const KUBE_FETCH_IMAGE: &str = "PERGOLA_KUBE_FETCH_IMAGE";
pub const KUBE_CONTROL_PLANE: &str = "PERGOLA_KUBE_CONTROL_PLANE";
pub const KUBE_VOLUME_SIZE: &str = "PERGOLA_KUBE_VOLUME_SIZE";
pub const KUBE_STORAGE_CLASS: &str = "PERGOLA_KUBE_STORAGE_CLASS";
pub const KUBE_INSTALL: &str = "PERGOLA_KUBE_INSTALL";
pub const KUBE_NAMESPACE: &str = "PERGOLA_KUBE_NAMESPACE";

/// Every environment variable, in the order the README lists them.
pub const SETTINGS: &[Setting] = &[
    Setting { name: SITE_ADDR, meaning: "address the server listens on", default: "`127.0.0.1:3000`" },
    Setting {
        name: PUBLIC_URL,
        meaning: "`http(s)://host[:port]`, no path: the address people open the dashboard at (behind a proxy, \
                  under a name). The dashboard answers only requests for its own host names — this one, the \
                  listen address, `localhost`, `127.0.0.1` and `[::1]` on the listen port — and takes state \
                  changes from browsers only from those origins",
        default: "none: only the local names",
    },
    Setting {
        name: TRUSTED_PROXIES,
        meaning: "addresses or networks (`192.168.1.5`, `10.42.0.0/16`, `fd00::/8`), comma-separated, of the \
                  reverse proxies in front of the server — a load balancer, the Ingress controller. A request from \
                  one of them comes from the address its `X-Forwarded-For` names last that is not itself a trusted \
                  proxy: the sign-in throttle, the audit trail and what share links forward see the visitor, not \
                  the proxy. A request from any other address comes from that address, whatever its headers say. \
                  Name the proxies only: whoever can reach the server from a trusted address can name any visitor \
                  (`0.0.0.0/0`, `::/0`, or networks that add up to every address are refused)",
        default: "none",
    },
    Setting {
        name: DATA_DIR,
        meaning: "the embedded SQLite database, the secret key file, and `runtime/` (stages' persistent storage, \
                  temp dirs and release copies); a relative path is taken from the directory the server starts in",
        default: "`./data`",
    },
    Setting {
        name: DATABASE_URL,
        meaning: "`sqlite://path/file.db` or `postgres://user:password@host:5432/db`",
        default: "`sqlite://$PERGOLA_DATA_DIR/pergola.db`",
    },
    Setting {
        name: PURGE_INTERVAL,
        meaning: "how often archived stages are checked for purge (also at start-up) and metric points older than the charts show are deleted",
        default: "`60`",
    },
    Setting {
        name: GRACE,
        meaning: "the grace period (seconds between SIGTERM and SIGKILL) new stages get — each stage's can be \
                  changed in its settings, and is the one its components get when the server shuts down",
        default: "`60`",
    },
    Setting {
        name: SANDBOX,
        meaning: "`on`: every component runs in a bubblewrap sandbox (see **Sandbox**); no stage starts when \
                  `bwrap` is missing or cannot create namespaces. `off`: components run unsandboxed, as the \
                  server's user (a warning is logged at start-up)",
        default: "`on`",
    },
    Setting {
        name: OUTBOUND_PORTS,
        meaning: "the TCP ports components of the local runtime may connect to (besides their own stage's \
                  services): ports and ranges, comma-separated (`53,80,443,5432`, `8000-8099`; at most 1 024 \
                  ports), `none`, or `all` for no limit. On this machine too: a port listed here reaches what \
                  listens on it on the machine, so keep the machine's own databases on other ports. A component \
                  listens only on its own `PORT`. Needs Landlock (Linux 6.7 or newer); see **Sandbox**",
        default: "`53,80,443`",
    },
    Setting {
        name: SECRET_KEY,
        meaning: "64 hex characters: the key that seals secret configuration values at rest (keep it with the \
                  database: sealed values cannot be read without it). Every server of one database needs the \
                  same key: a server started with another is refused",
        default: "`$PERGOLA_DATA_DIR/secret.key`, created on first start (mode 600)",
    },
    Setting {
        name: SHARE_DOMAIN,
        meaning: "share links are `{component}.{stage}.{project}.{domain}`; in production a wildcard DNS domain — \
                  best one that is not under the dashboard's own registrable domain (as GitHub's pages are on \
                  `github.io`): a component's script can set cookies for a parent domain, which then reach \
                  the dashboard too. Over https the dashboard's session cookie is `__Host-pergola_session`, \
                  which no other host can set; over plain http a planted `pergola_session` (sent twice) signs \
                  the visitor out. `deploy/kubernetes/` uses `stages.example.com` beside `pergola.example.com` \
                  for brevity",
        default: "`localhost`",
    },
    Setting {
        name: SHARE_PORT,
        meaning: "the port share links name (left out when it is the scheme's own). Share links are `https://` \
                  when this is 443 and `PERGOLA_PUBLIC_URL` is https (TLS ending at the reverse proxy or Ingress \
                  in front of both): their cookies are then `Secure`, the sign-in hand-off sends its one-time code \
                  to `https://` share hosts only, and components see `X-Forwarded-Proto: https`",
        default: "the listen port",
    },
    Setting {
        name: DEMO_DIR,
        meaning: "the directory holding the demo application's `pergola-demo` binary, offered by **Try the demo \
                  app**",
        default: "the server binary's directory (`cargo build --release -p pergola-demo-app` puts it there)",
    },
    Setting {
        name: MAX_ARTIFACT_MB,
        meaning: "the largest build archive accepted, in MiB as uploaded (compressed); a larger upload is refused \
                  with 413 while it streams. Unpacked, an archive may hold at most 100 000 entries and 1 GiB",
        default: "`512`",
    },
    Setting {
        name: ARTIFACT_RETENTION_DAYS,
        meaning: "days an uploaded artifact is kept after its newest build when no release of a live or archived \
                  stage runs it; the purge then deletes its files (its builds are listed as expired)",
        default: "`7`",
    },
    Setting {
        name: PATH_BUILDS,
        meaning: "`on`: administrators may also register a build by a directory on the server (`{manifest, \
                  workdir}`, for tests and local set-ups); `off`: builds are uploaded archives only",
        default: "`off`",
    },
    Setting {
        name: RUNTIME,
        meaning: "what runs the stages: `local` (sandboxed processes of this server; one server per database) or \
                  `kubernetes` (a cluster, reached in-cluster or through `KUBECONFIG`; several servers may share \
                  the database — needs a server built with `--features kubernetes`, see **Running on Kubernetes**)",
        default: "`local`",
    },
    Setting {
        name: KUBE_BASE_IMAGE,
        meaning: "Kubernetes: the image components run in, their build downloaded into `/app`",
        default: "`debian:12-slim`",
    },
    Setting {
        name: KUBE_FETCH_IMAGE,
        meaning: "Kubernetes: the image of the init container that downloads a release's build (`sh`, `curl`, \
                  `tar`)",
        default: "`curlimages/curl:8.11.1`",
    },
    Setting {
        name: KUBE_CONTROL_PLANE,
        meaning: "Kubernetes: this server's URL as pods reach it (builds are downloaded from it)",
        default: "`http://pergola.pergola.svc.cluster.local:3000`",
    },
    Setting {
        name: KUBE_VOLUME_SIZE,
        meaning: "Kubernetes: the size of each storage volume's claim",
        default: "`1Gi`",
    },
    Setting {
        name: KUBE_STORAGE_CLASS,
        meaning: "Kubernetes: the storage class of the volumes' claims",
        default: "the cluster's default",
    },
    Setting {
        name: KUBE_INSTALL,
        meaning: "Kubernetes: this installation's name, when several Pergola installations (each with its own \
                  database) share one cluster: up to 20 lower-case letters, digits and `-`, starting with a letter. \
                  It goes into the names of the namespaces and priority classes the runtime makes and onto every \
                  object as the label `pergola.dev/install`, and the runtime sees only pods that carry it; label \
                  the control plane's namespace with it too (without `PERGOLA_KUBE_NAMESPACE`, the stages' network \
                  policy admits only that one). \
                  Set it before the first deploy: what runs under another name is not found again",
        default: "none: the one installation on the cluster",
    },
    Setting {
        name: KUBE_NAMESPACE,
        meaning: "Kubernetes: the namespace the servers run in. The stages' network policy then admits the \
                  control plane by that name (`kubernetes.io/metadata.name`, which the API server sets and no one \
                  can change) rather than by labels, which whoever may label a namespace could copy onto their \
                  own. `deploy/kubernetes/deployment.yaml` sets it to the pod's namespace",
        default: "none: any namespace labelled as the control plane's (see `PERGOLA_KUBE_INSTALL`)",
    },
    Setting { name: LOG, meaning: "log filter", default: "`info,sqlx=warn`" },
    Setting { name: SITE_ROOT, meaning: "where the built site (`pkg/`, assets) is", default: "`target/site`" },
    Setting {
        name: ADMIN_USER,
        meaning: "with `PERGOLA_ADMIN_PASSWORD`, and only while the instance has no user: the administrator created \
                  at start-up (for headless set-ups and tests). Without them, the first visitor must type the \
                  one-time setup code the server prints in its log",
        default: "none",
    },
    Setting {
        name: ADMIN_PASSWORD,
        meaning: "the password of `PERGOLA_ADMIN_USER` (at least 10 characters); never logged",
        default: "none",
    },
    Setting {
        name: TEST_POSTGRES_URL,
        meaning: "tests only: a PostgreSQL database to create test databases from",
        default: "`postgres://postgres:postgres@127.0.0.1:5432/postgres`",
    },
];

/// The README's table of [`SETTINGS`], row for row.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | meaning | default |\n| --- | --- | --- |\n");
    for s in SETTINGS {
        table += &format!(
            "| `{}` | {} | {} |\n",
            s.name,
            s.meaning.split_whitespace().collect::<Vec<_>>().join(" "),
            s.default
        );
    }
    table
}

/// What runs the stages (`PERGOLA_RUNTIME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Sandboxed processes of this server.
    Local,
    /// A Kubernetes cluster.
    Kubernetes,
}

/// The cluster's side of the Kubernetes runtime: where builds run and how pods reach the
/// control plane (`PERGOLA_KUBE_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The image components run in (their build is copied into it).
    pub base_image: String,
    /// The image of the init container that downloads the build (`sh`, `curl` and `tar`).
    pub fetch_image: String,
    /// The control plane's URL as pods reach it.
    pub control_plane: String,
    /// Each storage volume's size.
    pub volume_size: String,
    /// The storage class of the volumes; `None`: the cluster's default.
    pub storage_class: Option<String>,
    /// This installation's name on the cluster (`PERGOLA_KUBE_INSTALL`); `None`: the only one.
    pub install: Option<String>,
    /// The namespace the servers run in (`PERGOLA_KUBE_NAMESPACE`); `None`: not known.
    pub namespace: Option<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            base_image: "debian:12-slim".into(),
            fetch_image: "curlimages/curl:8.11.1".into(),
            control_plane: "http://pergola.pergola.svc.cluster.local:3000".into(),
            volume_size: "1Gi".into(),
            storage_class: None,
            install: None,
            namespace: None,
        }
    }
}

/// The settings the server runs with, read from the environment (the listen address and the
/// site root are read by Leptos itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Absolute: components run in their own directories, so every path handed to them must be.
    pub data_dir: PathBuf,
    pub database_url: String,
    pub purge_interval: Duration,
    pub grace: Duration,
    /// Whether components run in the bubblewrap sandbox (`PERGOLA_SANDBOX`, `on` by default).
    pub sandbox: bool,
    /// The TCP ports components may connect to (`PERGOLA_OUTBOUND_PORTS`).
    pub outbound_ports: OutboundPorts,
    /// `None`: the key file in the data dir.
    pub secret_key: Option<String>,
    pub share_domain: String,
    /// `None`: the listen port.
    pub share_port: Option<u16>,
    /// Where `pergola-demo` may be; `None`: next to the server binary.
    pub demo_dir: Option<PathBuf>,
    /// The dashboard's public origin, normalized by [`PublicUrl::parse`] (`https://host[:port]`,
    /// lower case, no trailing slash); `None`: only the local names.
    pub public_url: Option<String>,
    /// The reverse proxies whose `X-Forwarded-For` is believed (`PERGOLA_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The administrator to create when there is no user: (username, password).
    pub admin: Option<(String, String)>,
    /// The largest archive an upload may be, in bytes.
    pub max_artifact_bytes: u64,
    /// How long an unused artifact is kept after its newest build.
    pub artifact_retention: Duration,
    /// Whether administrators may register builds by a server path.
    pub path_builds: bool,
    /// What runs the stages.
    pub runtime: RuntimeKind,
    /// The Kubernetes runtime's settings (read whichever runtime is chosen: the REST API's
    /// rendering of a stage's objects uses them too).
    pub cluster: Cluster,
}

impl ServerConfig {
    /// Whether the dashboard is served over https (its session cookie is then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    /// Whether share links are served over https: on port 443 behind an https dashboard (one
    /// TLS front for both). Another port keeps them `http://`, as an installation whose share
    /// links go straight to the server has them.
    pub fn share_https(&self) -> bool {
        self.https() && self.share_port == Some(443)
    }
}

/// An `http(s)://host[:port]` address: where the dashboard is reached from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lower case; an IPv6 address keeps its brackets (`[::1]`).
    pub host: String,
    /// The port, the scheme's default (80, 443) when the URL names none.
    pub port: u16,
}

impl PublicUrl {
    /// Reads `http(s)://host[:port]` (a trailing `/` is allowed; a path, query, fragment or user
    /// name is not). The message says what is wrong, without the variable's name.
    pub fn parse(url: &str) -> Result<Self, String> {
        let trimmed = url.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (scheme, rest) = if let Some(rest) = lower.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = lower.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err(format!("must start with http:// or https://, not '{trimmed}'"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@', '\\']) {
            return Err(format!("must be http(s)://host[:port] without a path, query or user name, not '{trimmed}'"));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("must be http(s)://host[:port] with a valid host and port, not '{trimmed}'"))?;
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self { scheme, host: host.to_owned(), port })
    }

    /// `scheme://host[:port]`, the port left out when it is the scheme's default — as browsers
    /// write an `Origin`.
    pub fn origin(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// `host[:port]` → (host, port): the host a DNS name (letters, digits, `-`, `.`), an IPv4 address
/// or a bracketed IPv6 address; the port 1–65535. `None` for anything else. Used for `Host`
/// headers too, so nothing is lower-cased here.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        host[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

impl ServerConfig {
    pub fn from_env() -> Result<Self, String> {
        let cwd = std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
        Self::from_lookup(|name| std::env::var(name).ok(), &cwd)
    }

    /// Reads the settings through `var`, resolving a relative data dir against `cwd`. A value
    /// that cannot be read is refused with a message naming the variable (never ignored).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, cwd: &Path) -> Result<Self, String> {
        let data_dir = cwd.join(var(DATA_DIR).unwrap_or_else(|| "data".into()));
        let data_dir = normalized(&data_dir);
        let database_url =
            var(DATABASE_URL).unwrap_or_else(|| format!("sqlite://{}", data_dir.join("pergola.db").display()));
        let purge_interval = Duration::from_secs(number(&var, PURGE_INTERVAL, 60, 1..=86_400)?);
        let grace = Duration::from_secs(number(&var, GRACE, 60, 1..=u64::from(pergola_domain::MAX_GRACE_SECS))?);
        let max_artifact_bytes = count(&var, MAX_ARTIFACT_MB, 512, 1..=1 << 20, "MiB")? << 20;
        let artifact_retention =
            Duration::from_secs(count(&var, ARTIFACT_RETENTION_DAYS, 7, 0..=3650, "days")? * 86_400);
        let path_builds = on_off(&var, PATH_BUILDS, false)?;
        let share_port = match var(SHARE_PORT) {
            None => None,
            Some(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{SHARE_PORT} must be a port number (1–65535), not '{p}'"))?,
            ),
        };
        let sandbox = on_off(&var, SANDBOX, true)?;
        let outbound_ports = match var(OUTBOUND_PORTS) {
            None => OutboundPorts::default(),
            Some(text) => OutboundPorts::parse(&text).map_err(|e| format!("{OUTBOUND_PORTS} {e}"))?,
        };
        let runtime = match var(RUNTIME).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("local") => RuntimeKind::Local,
            Some("kubernetes") => RuntimeKind::Kubernetes,
            Some(_) => {
                return Err(format!(
                    "{RUNTIME} must be local or kubernetes, not '{}'",
                    var(RUNTIME).unwrap_or_default()
                ))
            }
        };
        let cluster = cluster(&var)?;
        let trusted_proxies = networks(var(TRUSTED_PROXIES).as_deref().unwrap_or_default()).map_err(|bad| {
            format!("{TRUSTED_PROXIES} must be addresses or networks such as 10.42.0.0/16, comma-separated, {bad}")
        })?;
        let public_url = match var(PUBLIC_URL) {
            None => None,
            Some(url) if url.trim().is_empty() => None,
            Some(url) => Some(PublicUrl::parse(&url).map_err(|e| format!("{PUBLIC_URL} {e}"))?.origin()),
        };
        Ok(Self {
            data_dir,
            database_url,
            purge_interval,
            grace,
            sandbox,
            outbound_ports,
            secret_key: var(SECRET_KEY),
            share_domain: var(SHARE_DOMAIN).unwrap_or_else(|| "localhost".into()),
            share_port,
            demo_dir: var(DEMO_DIR).map(|d| cwd.join(d)),
            public_url,
            trusted_proxies,
            admin: match (var(ADMIN_USER), var(ADMIN_PASSWORD)) {
                (None, None) => None,
                (Some(user), Some(password)) => Some((user, password)),
                (Some(_), None) => return Err(format!("{ADMIN_USER} is set but {ADMIN_PASSWORD} is not")),
                (None, Some(_)) => return Err(format!("{ADMIN_PASSWORD} is set but {ADMIN_USER} is not")),
            },
            max_artifact_bytes,
            artifact_retention,
            path_builds,
            runtime,
            cluster,
        })
    }
}

/// Comma-separated addresses (`10.0.0.7`, `::1`) and networks (`10.42.0.0/16`); an address is a
/// network of one. `Err` says what is wrong: the first entry that is neither, or that the list
/// trusts every address of IPv4 or IPv6 — `0.0.0.0/0` or halves that add up to it, such as
/// `0.0.0.0/1, 128.0.0.0/1` (trusting everyone would let any visitor name any address).
pub fn networks(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    let nets = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(ipv4_if_mapped)
                .map_err(|_| format!("not '{entry}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(all) = ipnet::IpNet::aggregate(&nets).into_iter().find(|net| net.prefix_len() == 0) {
        return Err(format!("not every address: together the entries trust all of {all}"));
    }
    Ok(nets)
}

/// IPv4 networks written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) as IPv4 (`10.0.0.0/8`):
/// the listener sees a dual-stack peer's IPv4 address as IPv4.
fn ipv4_if_mapped(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, ipnet::IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// The `PERGOLA_KUBE_*` settings: images as given (no spaces or control characters), the
/// control plane an `http(s)://` URL, the volume size a Kubernetes quantity, the storage class
/// a DNS name.
fn cluster(var: &impl Fn(&str) -> Option<String>) -> Result<Cluster, String> {
    let defaults = Cluster::default();
    let text = |name: &str, default: String| -> Result<String, String> {
        match var(name).map(|v| v.trim().to_owned()) {
            None => Ok(default),
            Some(v) if !v.is_empty() && v.len() <= 512 && !v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Ok(v)
            }
            Some(v) => Err(format!("{name} must be a single word without spaces, not '{v}'")),
        }
    };
    let control_plane = text(KUBE_CONTROL_PLANE, defaults.control_plane)?;
    if !(control_plane.starts_with("http://") || control_plane.starts_with("https://")) {
        return Err(format!("{KUBE_CONTROL_PLANE} must start with http:// or https://, not '{control_plane}'"));
    }
    let volume_size = text(KUBE_VOLUME_SIZE, defaults.volume_size)?;
    let digits = volume_size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &volume_size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"].contains(&unit)
    {
        return Err(format!("{KUBE_VOLUME_SIZE} must be a size such as 1Gi or 500Mi, not '{volume_size}'"));
    }
    let storage_class = match var(KUBE_STORAGE_CLASS).map(|v| v.trim().to_owned()) {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v)
            if v.len() <= 253
                && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') =>
        {
            Some(v)
        }
        Some(v) => return Err(format!("{KUBE_STORAGE_CLASS} must be a storage class name, not '{v}'")),
    };
    let install = match var(KUBE_INSTALL).map(|v| v.trim().to_owned()) {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v)
            if v.len() <= 20
                && v.starts_with(|c: char| c.is_ascii_lowercase())
                && !v.ends_with('-')
                && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Some(v)
        }
        Some(v) => {
            return Err(format!(
                "{KUBE_INSTALL} must be up to 20 lower-case letters, digits and '-', starting with a letter, not '{v}'"
            ))
        }
    };
    let namespace = match var(KUBE_NAMESPACE).map(|v| v.trim().to_owned()) {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v)
            if v.len() <= 63
                && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && !v.ends_with('-')
                && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Some(v)
        }
        Some(v) => return Err(format!("{KUBE_NAMESPACE} must be a namespace name (a DNS label), not '{v}'")),
    };
    Ok(Cluster {
        install,
        namespace,
        base_image: text(KUBE_BASE_IMAGE, defaults.base_image)?,
        fetch_image: text(KUBE_FETCH_IMAGE, defaults.fetch_image)?,
        control_plane: control_plane.trim_end_matches('/').to_owned(),
        volume_size,
        storage_class,
    })
}

fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    count(var, name, default, range, "seconds")
}

/// A whole number of `unit` in `range`.
fn count(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, String> {
    match var(name) {
        None => Ok(default),
        Some(s) => s.trim().parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            format!("{name} must be a whole number of {unit} from {} to {}, not '{s}'", range.start(), range.end())
        }),
    }
}

/// The TCP ports components may connect to, besides their own stage's services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundPorts {
    /// No limit.
    All,
    /// These only (sorted, each once; possibly none).
    Only(Vec<u16>),
}

impl Default for OutboundPorts {
    /// DNS over TCP, HTTP and HTTPS.
    fn default() -> Self {
        OutboundPorts::Only(vec![53, 80, 443])
    }
}

impl OutboundPorts {
    /// The most ports a list may name (each is a rule the kernel keeps per component).
    pub const MAX: usize = 1024;

    /// `all`, `none`, or ports and ranges, comma-separated (`53, 80,443, 8000-8099`); the error
    /// says what is wrong (after the variable's name).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "all" => return Ok(OutboundPorts::All),
            "none" => return Ok(OutboundPorts::Only(Vec::new())),
            _ => {}
        }
        let port = |p: &str| -> Result<u16, String> {
            p.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!(
                    "must be ports (1–65535) or ranges such as 8000-8099, comma-separated, `all` or `none`, not '{p}'"
                )
            })
        };
        let mut ports = Vec::new();
        for part in text.split(',') {
            let (low, high) = match part.split_once('-') {
                Some((low, high)) => (port(low)?, port(high)?),
                None => (port(part)?, port(part)?),
            };
            if low > high {
                return Err(format!("has a range that ends before it begins: '{}'", part.trim()));
            }
            ports.extend(low..=high);
            ports.sort_unstable();
            ports.dedup();
            if ports.len() > Self::MAX {
                return Err(format!("names more than {} ports: use `all` for no limit", Self::MAX));
            }
        }
        Ok(OutboundPorts::Only(ports))
    }

    /// Said in a sentence's words: `any port`, `no port`, `ports 53, 80 and 443`.
    pub fn describe(&self) -> String {
        match self {
            OutboundPorts::All => "any port".into(),
            OutboundPorts::Only(ports) if ports.is_empty() => "no port".into(),
            OutboundPorts::Only(ports) if ports.len() == 1 => format!("port {}", ports[0]),
            OutboundPorts::Only(ports) => {
                let shown: Vec<String> = ports.iter().take(12).map(u16::to_string).collect();
                let more = ports.len() - shown.len();
                if more > 0 {
                    format!("ports {} and {more} more", shown.join(", "))
                } else {
                    let (last, first) = shown.split_last().expect("two or more");
                    format!("ports {} and {last}", first.join(", "))
                }
            }
        }
    }
}

/// `on` or `off` (any case, spaces around ignored).
fn on_off(var: &impl Fn(&str) -> Option<String>, name: &str, default: bool) -> Result<bool, String> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "on" => Ok(true),
        Some(v) if v == "off" => Ok(false),
        Some(_) => Err(format!("{name} must be on or off, not '{}'", var(name).unwrap_or_default())),
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the directory may not exist yet).
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ServerConfig::from_lookup(|k| vars.get(k).cloned(), Path::new("/srv/pergola"))
    }

    #[test]
    fn defaults_give_an_absolute_data_dir_next_to_where_the_server_starts() {
        let c = read(&[]).unwrap();
        assert_eq!(c.data_dir, Path::new("/srv/pergola/data"));
        assert_eq!(c.database_url, "sqlite:///srv/pergola/data/pergola.db");
        assert_eq!((c.grace, c.purge_interval), (Duration::from_secs(60), Duration::from_secs(60)));
        assert_eq!((c.share_domain.as_str(), c.share_port, c.secret_key, c.demo_dir), ("localhost", None, None, None));
        let c = read(&[(DATA_DIR, "./var/../state"), (DEMO_DIR, "demo")]).unwrap();
        assert_eq!(c.data_dir, Path::new("/srv/pergola/state"));
        assert_eq!(c.demo_dir.as_deref(), Some(Path::new("/srv/pergola/demo")));
        assert_eq!(read(&[(DATA_DIR, "/abs")]).unwrap().data_dir, Path::new("/abs"));
    }

    #[test]
    fn the_runtime_is_local_unless_kubernetes_is_chosen_and_its_settings_are_checked() {
        let c = read(&[]).unwrap();
        assert_eq!((c.runtime, c.cluster), (RuntimeKind::Local, Cluster::default()));
        let c = read(&[
            (RUNTIME, " Kubernetes "),
            (KUBE_BASE_IMAGE, "registry.example/base:1"),
            (KUBE_CONTROL_PLANE, "https://pergola.example/"),
            (KUBE_VOLUME_SIZE, "20Gi"),
            (KUBE_STORAGE_CLASS, "fast-ssd"),
            (KUBE_INSTALL, " staging-2 "),
            (KUBE_NAMESPACE, "pergola-system"),
        ])
        .unwrap();
        assert_eq!(c.cluster.namespace.as_deref(), Some("pergola-system"));
        assert_eq!(c.runtime, RuntimeKind::Kubernetes);
        assert_eq!(c.cluster.base_image, "registry.example/base:1");
        assert_eq!(c.cluster.control_plane, "https://pergola.example");
        assert_eq!((c.cluster.volume_size.as_str(), c.cluster.storage_class.as_deref()), ("20Gi", Some("fast-ssd")));
        assert_eq!(c.cluster.install.as_deref(), Some("staging-2"));
        for (name, bad) in [
            (RUNTIME, "docker"),
            (KUBE_BASE_IMAGE, "debian 12"),
            (KUBE_FETCH_IMAGE, "curl\nimage"),
            (KUBE_CONTROL_PLANE, "pergola:3000"),
            (KUBE_VOLUME_SIZE, "lots"),
            (KUBE_VOLUME_SIZE, "1Gb"),
            (KUBE_STORAGE_CLASS, "Fast SSD"),
            (KUBE_INSTALL, "Staging"),
            (KUBE_INSTALL, "2nd"),
            (KUBE_INSTALL, "staging-"),
            (KUBE_INSTALL, "a-name-longer-than-twenty"),
            (KUBE_NAMESPACE, "Pergola"),
            (KUBE_NAMESPACE, "pergola/x"),
            (KUBE_NAMESPACE, "-pergola"),
        ] {
            let e = read(&[(name, bad)]).unwrap_err();
            assert!(e.starts_with(name), "{e}");
        }
    }

    #[test]
    fn unreadable_values_are_refused_with_the_variable_named() {
        for (name, bad) in
            [(GRACE, "abc"), (GRACE, "0"), (GRACE, "3601"), (PURGE_INTERVAL, "-1"), (SHARE_PORT, "70000")]
        {
            let e = read(&[(name, bad)]).unwrap_err();
            assert!(e.starts_with(name) && e.contains(bad), "{e}");
        }
        assert_eq!(read(&[(GRACE, " 5 ")]).unwrap().grace, Duration::from_secs(5));
    }

    #[test]
    fn artifacts_have_a_size_limit_a_retention_and_path_builds_are_off() {
        let c = read(&[]).unwrap();
        assert_eq!(
            (c.max_artifact_bytes, c.artifact_retention, c.path_builds),
            (512 << 20, Duration::from_secs(7 * 86_400), false)
        );
        let c = read(&[(MAX_ARTIFACT_MB, "3"), (ARTIFACT_RETENTION_DAYS, "0"), (PATH_BUILDS, " ON ")]).unwrap();
        assert_eq!((c.max_artifact_bytes, c.artifact_retention, c.path_builds), (3 << 20, Duration::ZERO, true));
        for (name, bad) in
            [(MAX_ARTIFACT_MB, "0"), (MAX_ARTIFACT_MB, "1.5"), (ARTIFACT_RETENTION_DAYS, "-1"), (PATH_BUILDS, "yes")]
        {
            let e = read(&[(name, bad)]).unwrap_err();
            assert!(e.starts_with(name) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn outbound_ports_are_dns_and_the_web_unless_told_otherwise() {
        assert_eq!(read(&[]).unwrap().outbound_ports, OutboundPorts::Only(vec![53, 80, 443]));
        let c = read(&[(OUTBOUND_PORTS, " 443, 5432 ,80,8000-8003,443 ")]).unwrap();
        assert_eq!(c.outbound_ports, OutboundPorts::Only(vec![80, 443, 5432, 8000, 8001, 8002, 8003]));
        assert_eq!(read(&[(OUTBOUND_PORTS, "ALL")]).unwrap().outbound_ports, OutboundPorts::All);
        assert_eq!(read(&[(OUTBOUND_PORTS, "none")]).unwrap().outbound_ports, OutboundPorts::Only(vec![]));
        assert_eq!(OutboundPorts::parse("1-1024").unwrap(), OutboundPorts::Only((1..=1024).collect()));
        for bad in ["", "0", "65536", "80,", "http", "9000-8000", "1-1025", "1-512,600-1112", "80;443"] {
            let e = read(&[(OUTBOUND_PORTS, bad)]).unwrap_err();
            assert!(e.starts_with(OUTBOUND_PORTS), "{bad}: {e}");
        }
        assert_eq!(OutboundPorts::default().describe(), "ports 53, 80 and 443");
        assert_eq!(OutboundPorts::Only(vec![5432]).describe(), "port 5432");
        assert_eq!(OutboundPorts::Only(vec![]).describe(), "no port");
        assert_eq!(OutboundPorts::All.describe(), "any port");
        assert_eq!(
            OutboundPorts::Only((1..=20).collect()).describe(),
            "ports 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 8 more"
        );
    }

    #[test]
    fn the_sandbox_is_on_unless_turned_off() {
        assert!(read(&[]).unwrap().sandbox);
        assert!(read(&[(SANDBOX, "on")]).unwrap().sandbox);
        assert!(!read(&[(SANDBOX, " OFF ")]).unwrap().sandbox);
        for bad in ["", "no", "0", "false"] {
            let e = read(&[(SANDBOX, bad)]).unwrap_err();
            assert!(e.starts_with(SANDBOX) && e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn share_links_are_https_on_443_behind_an_https_dashboard() {
        let https = |vars: &[(&str, &str)]| read(vars).unwrap().share_https();
        assert!(https(&[(PUBLIC_URL, "https://pergola.example.com"), (SHARE_PORT, "443")]));
        assert!(!https(&[(PUBLIC_URL, "https://pergola.example.com"), (SHARE_PORT, "3000")]), "straight to the server");
        assert!(!https(&[(PUBLIC_URL, "https://pergola.example.com")]), "the listen port");
        assert!(!https(&[(PUBLIC_URL, "http://pergola.example.com"), (SHARE_PORT, "443")]));
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks_and_none_by_default() {
        assert!(read(&[]).unwrap().trusted_proxies.is_empty());
        assert!(read(&[(TRUSTED_PROXIES, " ")]).unwrap().trusted_proxies.is_empty());
        let c = read(&[(TRUSTED_PROXIES, "10.42.7.1/16, 192.168.1.5 ,fd00::/8,::1,")]).unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.42.0.0/16", "192.168.1.5/32", "fd00::/8", "::1/128"]);
        for bad in ["proxy.example.com", "10.0.0.0/33", "10.0.0.0/8 10.1.0.0/16", "*", "0.0.0.0/0", "::/0"] {
            let e = read(&[(TRUSTED_PROXIES, bad)]).unwrap_err();
            assert!(e.starts_with(TRUSTED_PROXIES), "{e}");
        }
        // Halves (or smaller pieces) that add up to every address are every address.
        for all in ["0.0.0.0/1, 128.0.0.0/1", "10.0.0.1, ::/1, 8000::/1", "0.0.0.0/2,64.0.0.0/2,128.0.0.0/1"] {
            let e = read(&[(TRUSTED_PROXIES, all)]).unwrap_err();
            assert!(e.starts_with(TRUSTED_PROXIES) && e.contains("trust all of"), "{all}: {e}");
        }
        // IPv4-mapped IPv6 is IPv4 (the listener sees such a peer as IPv4).
        let c = read(&[(TRUSTED_PROXIES, "::ffff:10.0.0.0/104, ::ffff:192.168.1.5")]).unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.5/32"]);
        assert!(read(&[(TRUSTED_PROXIES, "::ffff:0:0/96")]).unwrap_err().contains("trust all of 0.0.0.0/0"));
        // Nearly everyone is not everyone (the operator asked for it), and both families may be named.
        assert_eq!(read(&[(TRUSTED_PROXIES, "0.0.0.0/1, 128.0.0.0/2, ::/1")]).unwrap().trusted_proxies.len(), 3);
        let e = read(&[(TRUSTED_PROXIES, "10.0.0.1, nope")]).unwrap_err();
        assert!(e.contains("'nope'"), "{e}");
    }

    #[test]
    fn the_public_url_is_an_origin_and_nothing_more() {
        assert_eq!(read(&[]).unwrap().public_url, None);
        assert_eq!(read(&[(PUBLIC_URL, "")]).unwrap().public_url, None);
        for (given, origin) in [
            ("https://pergola.example.com", "https://pergola.example.com"),
            ("https://Pergola.Example.com/", "https://pergola.example.com"),
            ("https://pergola.example.com:443", "https://pergola.example.com"),
            ("http://pergola.example.com:80", "http://pergola.example.com"),
            ("https://pergola.example.com:8443", "https://pergola.example.com:8443"),
            ("http://10.0.0.5:3000", "http://10.0.0.5:3000"),
            ("http://[2001:db8::1]:3000", "http://[2001:db8::1]:3000"),
            (" http://ci-box ", "http://ci-box"),
        ] {
            assert_eq!(read(&[(PUBLIC_URL, given)]).unwrap().public_url.as_deref(), Some(origin), "{given}");
        }
        let u = PublicUrl::parse("https://pergola.example.com").unwrap();
        assert_eq!((u.scheme, u.host.as_str(), u.port), ("https", "pergola.example.com", 443));
        for bad in [
            "pergola.example.com",
            "ftp://pergola.example.com",
            "https://",
            "https://pergola.example.com/dashboard",
            "https://pergola.example.com?x=1",
            "https://pergola.example.com#top",
            "https://admin@pergola.example.com",
            "https://pergola.example.com:0",
            "https://pergola.example.com:70000",
            "https://pergola.example.com:",
            "https://pergola.example.com:80a",
            "https://perg ola.example.com",
            "https://-pergola.example.com",
            "https://pergola..example.com",
            "http://[::1",
            "http://[not-ipv6]:80",
            "http://[::1]x",
        ] {
            let e = read(&[(PUBLIC_URL, bad)]).unwrap_err();
            assert!(e.starts_with(PUBLIC_URL) && e.contains(bad.trim()), "{bad}: {e}");
        }
    }

    #[test]
    fn host_and_port_are_split_as_a_host_header_writes_them() {
        assert_eq!(split_host_port("localhost:3000"), Some(("localhost", Some(3000))));
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("[::1]:3000"), Some(("[::1]", Some(3000))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        for bad in ["", ":3000", "a b:1", "::1:3000", "x:", "x:99999", "a/b", "a_b.example"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_readme_lists_every_setting_as_the_code_has_it() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
        let expected = markdown_table();
        assert!(
            readme.contains(&expected),
            "README.md's configuration table differs from core/src/config.rs; it should read:\n\n{expected}"
        );
    }
}
