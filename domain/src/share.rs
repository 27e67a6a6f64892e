//! Share links: every service component of a stage is reachable at
//! `{component}.{stage}.{project}.{share domain}` (by default `….localhost`, which browsers
//! resolve to this machine). Component names, Stage IDs and Project IDs are DNS labels, so the
//! host name is always valid.

use serde::{Deserialize, Serialize};

/// Where share links point: `http://{component}.{stage}.{project}.{domain}:{port}/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBase {
    pub domain: String,
    pub port: u16,
}

impl ShareBase {
    pub fn url(&self, component: &str, stage: &str, project: &str) -> String {
        let host = share_host(component, stage, project, &self.domain);
        if self.port == 80 {
            format!("http://{host}/")
        } else {
            format!("http://{host}:{}/", self.port)
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
