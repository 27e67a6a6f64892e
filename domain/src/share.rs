//! Share links: every service component of a stage is reachable at
//! `{component}.{stage}.{project}.{share domain}` (by default `….localhost`, which browsers
//! resolve to this machine). Component names, Stage IDs and Project IDs are DNS labels, so the
//! host name is always valid.

use crate::{Error, Visibility};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The cookie a share host sets once the dashboard vouched for a signed-in user (its own
/// secret, host-only: it never reaches the dashboard nor another component).
pub const SHARE_COOKIE: &str = "pergola_share";
/// The cookie a share host sets for a visitor who opened a guest link.
pub const GUEST_COOKIE: &str = "pergola_guest";
/// The name a share host gives cookie `base` ([`SHARE_COOKIE`], [`GUEST_COOKIE`]): over https
/// `__Host-{base}`, which a browser takes only from that very host — another stage's page on a
/// sibling share host cannot plant one for the whole share domain (to sign a visitor out, or in
/// as someone else); over plain http, `base` itself.
pub fn share_cookie_name(base: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}
/// Where a share host takes the dashboard's one-time code (`?code=…&to=/path`).
pub const AUTH_PATH: &str = "/.pergola/auth";
/// Where a guest link points on a share host (`?token=pgg_…`).
pub const GUEST_PATH: &str = "/.pergola/guest";
/// The dashboard's page that vouches for a signed-in user to a share host (`?to=URL`).
pub const SHARE_AUTH_PATH: &str = "/share-auth";

/// The shortest and the longest life of a guest link.
pub const GUEST_LINK_MIN: Duration = Duration::hours(1);
pub const GUEST_LINK_MAX: Duration = Duration::days(365);
/// The lives the dashboard offers, in hours (1 hour, 1 day, 7 days, 30 days, 365 days).
pub const GUEST_LINK_CHOICES: [i64; 5] = [1, 24, 24 * 7, 24 * 30, 24 * 365];

/// Checks a guest link's life: 1 hour to 365 days (a validation error for `expires_in`).
pub fn validate_guest_expiry(expires_in: Duration) -> Result<Duration, Error> {
    if expires_in < GUEST_LINK_MIN || expires_in > GUEST_LINK_MAX {
        return Err(Error::validation("expires_in", "A guest link lasts from 1 hour to 365 days."));
    }
    Ok(expires_in)
}

/// Parses a life written `24h` or `7d` (hours or days, a whole number), then checks it
/// ([`validate_guest_expiry`]).
pub fn parse_expires_in(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let bad = || Error::validation("expires_in", format!("'{s}' is not a duration: write it like 24h or 7d."));
    let (number, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let hours = match unit {
        "h" | "H" => n,
        "d" | "D" => n.checked_mul(24).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    validate_guest_expiry(Duration::try_hours(hours).ok_or_else(bad)?)
}

/// How long a guest link lasts, for people: `1 hour`, `7 days`.
pub fn describe_hours(hours: i64) -> String {
    match hours {
        1 => "1 hour".into(),
        h if h % 24 == 0 && h / 24 == 1 => "1 day".into(),
        h if h % 24 == 0 => format!("{} days", h / 24),
        h => format!("{h} hours"),
    }
}

/// A guest link as it is listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuestLink {
    pub id: String,
    /// Who created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl GuestLink {
    /// Whether it still opens the stage at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && crate::is_unexpired(self.expires_at, now)
    }
}

/// A guest link just created: its secret is in `token` and in the URLs, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedGuestLink {
    pub id: String,
    /// `pgg_…`; stored only as its SHA-256.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The guest URL of the first service (`None` when the stage has no service yet).
    pub url: Option<String>,
    /// The guest URL of each service of the stage.
    pub urls: Vec<ShareLink>,
}

/// Who may open a stage's share links, and its guest links (newest first, revoked ones too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageSharing {
    pub visibility: Visibility,
    pub guest_links: Vec<GuestLink>,
}

/// The URL of a guest link on the share host of `share_url` (a share link, ending in `/`).
pub fn guest_url(share_url: &str, token: &str) -> String {
    format!("{}{}?token={token}", share_url.trim_end_matches('/'), GUEST_PATH)
}

/// Where share links point: `http://{component}.{stage}.{project}.{domain}:{port}/`, or
/// `https://` when they are served over TLS (`secure`: the dashboard's public URL is https, TLS
/// ending at the reverse proxy or Ingress in front of both). The scheme's own port is left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBase {
    pub domain: String,
    pub port: u16,
    #[serde(default)]
    pub secure: bool,
}

impl ShareBase {
    pub fn url(&self, component: &str, stage: &str, project: &str) -> String {
        let host = share_host(component, stage, project, &self.domain);
        match (self.secure, self.port) {
            (false, 80) => format!("http://{host}/"),
            (false, port) => format!("http://{host}:{port}/"),
            (true, 443) => format!("https://{host}/"),
            (true, port) => format!("https://{host}:{port}/"),
        }
    }
}

/// A service component's share link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLink {
    pub component: String,
    pub url: String,
}

/// The host name of a component's share link.
pub fn share_host(component: &str, stage: &str, project: &str, domain: &str) -> String {
    format!("{component}.{stage}.{project}.{domain}")
}

/// The (component, stage, project) a request's `Host` names, if it is a share-link host of
/// `domain`. The port, if any, is ignored; matching is case-insensitive.
pub fn parse_share_host(host: &str, domain: &str) -> Option<(String, String, String)> {
    let host =
        host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h);
    let host = host.to_ascii_lowercase();
    let prefix = host.strip_suffix(&format!(".{}", domain.to_ascii_lowercase()))?;
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.as_slice() {
        [component, stage, project] if labels.iter().all(|l| !l.is_empty()) => {
            Some((component.to_string(), stage.to_string(), project.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_hosts_round_trip() {
        let host = share_host("web", "qa", "shop", "localhost");
        assert_eq!(host, "web.qa.shop.localhost");
        let parts = Some(("web".to_owned(), "qa".to_owned(), "shop".to_owned()));
        assert_eq!(parse_share_host(&host, "localhost"), parts);
        assert_eq!(parse_share_host("web.qa.shop.localhost:3000", "localhost"), parts);
        assert_eq!(parse_share_host("WEB.QA.Shop.LocalHost", "localhost"), parts);
        assert_eq!(parse_share_host("web.qa.shop.apps.example.com", "apps.example.com"), parts);
    }

    #[test]
    fn guest_link_lives_are_parsed_and_bounded() {
        assert_eq!(parse_expires_in("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_expires_in(" 7d ").unwrap(), Duration::days(7));
        assert_eq!(parse_expires_in("1h").unwrap(), GUEST_LINK_MIN);
        assert_eq!(parse_expires_in("365d").unwrap(), GUEST_LINK_MAX);
        for bad in ["", "h", "0h", "366d", "8761h", "-1d", "1w", "1.5d", "99999999999999999d"] {
            assert_eq!(parse_expires_in(bad).unwrap_err().field.as_deref(), Some("expires_in"), "{bad}");
        }
        assert!(validate_guest_expiry(Duration::minutes(59)).is_err());
        for hours in GUEST_LINK_CHOICES {
            assert!(validate_guest_expiry(Duration::hours(hours)).is_ok(), "{}", describe_hours(hours));
        }
        assert_eq!(describe_hours(24 * 7), "7 days");
        assert_eq!(
            guest_url("http://web.qa.shop.localhost:3000/", "pgg_x"),
            "http://web.qa.shop.localhost:3000/.pergola/guest?token=pgg_x"
        );
    }

    #[test]
    fn share_links_take_the_scheme_and_leave_out_its_port() {
        let base = |port, secure| ShareBase { domain: "stages.example.com".into(), port, secure };
        let url = |port, secure| base(port, secure).url("web", "qa", "shop");
        assert_eq!(url(80, false), "http://web.qa.shop.stages.example.com/");
        assert_eq!(url(3000, false), "http://web.qa.shop.stages.example.com:3000/");
        assert_eq!(url(443, true), "https://web.qa.shop.stages.example.com/");
        assert_eq!(url(8443, true), "https://web.qa.shop.stages.example.com:8443/");
        assert_eq!(url(443, false), "http://web.qa.shop.stages.example.com:443/");
    }

    #[test]
    fn other_hosts_are_not_share_hosts() {
        for host in [
            "localhost:3000",
            "127.0.0.1:3000",
            "qa.shop.localhost",
            "a.web.qa.shop.localhost",
            "web.qa.shop.example.com",
            "..shop.localhost",
            "web.qa.shoplocalhost",
        ] {
            assert_eq!(parse_share_host(host, "localhost"), None, "{host}");
        }
    }
}
