//! `pergola create|list|delete link`: a stage's guest links.

use super::{segment, stage_path};
use crate::args::StageAt;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::format_time;
use pergola_domain::share::{parse_expires_in, CreatedGuestLink, GuestLink};
use pergola_domain::wire::NewGuestLink;

fn links_path(at: &StageAt) -> Result<String, Failure> {
    Ok(format!("{}/links", stage_path(&at.project, &at.stage)?))
}

/// Creates a guest link and prints its URL alone (the secret is shown this once).
pub fn create(client: &Client, out: &Printer, at: &StageAt, expires_in: &str) -> Result<(), Failure> {
    let expires_in = parse_expires_in(expires_in).map_err(|e| Failure::new(format!("--expires-in: {}", e.message)))?;
    let body = NewGuestLink { expires_in_hours: expires_in.num_hours() };
    let link: CreatedGuestLink = client.post(&links_path(at)?, &body)?;
    out.one(&link, || match &link.url {
        Some(url) => url.clone(),
        None => {
            eprintln!(
                "Stage '{}' has no service yet: open /.pergola/guest?token=… on one of its share links.",
                at.stage
            );
            link.token.clone()
        }
    })
}

pub fn list(client: &Client, out: &Printer, at: &StageAt) -> Result<(), Failure> {
    let links: Vec<GuestLink> = client.get(&links_path(at)?)?;
    let now = chrono::Utc::now();
    out.many(&links, &["id", "created by", "created", "expires", "state"], |l| {
        let state = if l.revoked_at.is_some() {
            "revoked"
        } else if l.is_live(now) {
            "live"
        } else {
            "expired"
        };
        vec![
            l.id.clone(),
            l.created_by.clone(),
            format_time(l.created_at),
            l.expires_at.map(format_time).unwrap_or_else(|| "never".into()),
            state.into(),
        ]
    })
}

pub fn delete(client: &Client, out: &Printer, at: &StageAt, id: &str) -> Result<(), Failure> {
    client.delete::<()>(&format!("{}/{}", links_path(at)?, segment(id)?))?;
    out.one(&serde_json::json!({ "revoked": id }), || format!("Guest link '{id}' revoked: it no longer works."))
}
