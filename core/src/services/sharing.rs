//! Who may open a running stage's share links (issue 9).
//!
//! - **Visibility** ([`Visibility`]): `members` (the default) lets in signed-in users who may
//!   see the stage; `public` lets in anyone who has the link.
//! - **Guest links**: `pgg_…` secrets (stored as their SHA-256) that open one stage's share
//!   links without signing in, for 1 hour to 365 days, until revoked.
//! - **The hand-off**: a share host cannot read the dashboard's cookie. The dashboard vouches
//!   for a signed-in user with a one-time code ([`Acting::share_code`], 60 s, in the database so
//!   that any server exchanges it, once; bound to the user, their dashboard session, the stage
//!   and the share host) which the share host exchanges
//!   ([`Services::exchange_share_code`]) for a secret of its own (a session of that user, kept
//!   apart from dashboard sessions: its stored hash is domain-separated, so it never signs in
//!   to the dashboard). Disabling the user, resetting their password or signing out of that
//!   dashboard session ends it.
//! - **The proxy's question** ([`Services::share_access`]): may these credentials pass? The
//!   answer is remembered for [`super::PROXY_CACHE_TTL`] and forgotten at once when this
//!   server changes a stage, its sharing, a membership or a user.

use super::{internal, Acting, Services};
use crate::credentials::{self, SecretKind};
use crate::store::{GuestLinkRow, SessionRow, ShareCodeRow};
use chrono::Duration;
use pergola_domain::access::{self, Action};
use pergola_domain::share::{guest_url, validate_guest_expiry, CreatedGuestLink, GuestLink, ShareLink, StageSharing};
use pergola_domain::{parse_manifest, ComponentKind, Error, EventKind, StageEvent, Visibility};

/// How long the dashboard's one-time code to a share host lasts.
pub const SHARE_CODE_TTL: Duration = Duration::seconds(60);
/// More pending codes of one user than this and their oldest are dropped (a browser restoring
/// a window of share-host tabs asks for one per tab at once).
const SHARE_CODES_PER_USER: i64 = 256;

/// What a share host's visitor carries: the values of its `pergola_share` and `pergola_guest`
/// cookies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareCredentials {
    pub share: Option<String>,
    pub guest: Option<String>,
}

/// The proxy's answer for one request to a stage's share link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareAccess {
    /// Forward it.
    Allowed,
    /// Nobody known: send them to sign in (through the dashboard).
    SignIn,
    /// A signed-in user who may not see the stage.
    Refused,
}

/// The stored hash of a share host's secret: never equal to a dashboard session's.
fn share_secret_hash(secret: &str) -> String {
    credentials::secret_hash(&format!("pergola-share:{secret}"))
}

impl Services {
    /// Whether a request with `credentials` may reach a share link of the live stage.
    /// `Err` for a stage that is not there (the proxy answers 404).
    pub async fn share_access(
        &self,
        project_id: &str,
        stage_id: &str,
        credentials: &ShareCredentials,
    ) -> Result<ShareAccess, Error> {
        let hashed = |s: &Option<String>| s.as_deref().map(credentials::secret_hash).unwrap_or_default();
        let key = (
            (project_id.to_owned(), stage_id.to_owned()),
            format!("{}|{}", hashed(&credentials.share), hashed(&credentials.guest)),
        );
        if let Some(access) = self.proxy_cache.decision(&key) {
            return Ok(access);
        }
        let generation = self.proxy_cache.generation();
        let access = self.decide_share_access(project_id, stage_id, credentials).await?;
        self.proxy_cache.decide(key, access, generation);
        Ok(access)
    }

    async fn decide_share_access(
        &self,
        project_id: &str,
        stage_id: &str,
        credentials: &ShareCredentials,
    ) -> Result<ShareAccess, Error> {
        let visibility = self.store.stage_visibility(project_id, stage_id).await;
        let Some(visibility) = visibility.map_err(internal("read a stage's visibility"))? else {
            return Err(Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")));
        };
        if visibility == Visibility::Public {
            return Ok(ShareAccess::Allowed);
        }
        let mut refused = false;
        if let Some(secret) = &credentials.share {
            if let Some((caller, session)) = self.share_caller(secret).await? {
                match self.acting(caller).allow_stage(Action::ReadStage, project_id, stage_id).await {
                    Ok(_) => {
                        self.share_session_used(&session).await?;
                        return Ok(ShareAccess::Allowed);
                    }
                    Err(e) if e.kind == pergola_domain::ErrorKind::Internal => return Err(e),
                    Err(_) => refused = true,
                }
            }
        }
        if let Some(token) = &credentials.guest {
            if self.guest_link_opens(token, project_id, stage_id).await?.is_some() {
                return Ok(ShareAccess::Allowed);
            }
        }
        Ok(if refused { ShareAccess::Refused } else { ShareAccess::SignIn })
    }

    /// The user a share host's secret signs in: `None` for anything but a live one of an
    /// enabled user (an ended one is deleted).
    async fn share_caller(&self, secret: &str) -> Result<Option<(super::Caller, SessionRow)>, Error> {
        if !SecretKind::Session.matches(secret) {
            return Ok(None);
        }
        let id_hash = share_secret_hash(secret);
        let now = self.clock.now();
        let Some((session, user)) = self.live_session(&id_hash, now).await? else { return Ok(None) };
        // It lives as long as the dashboard session of the same user that opened it (which may
        // have idled out or reached its lifetime without being deleted yet).
        if let Some(parent) = &session.parent {
            let opener = self.live_session(parent, now).await?;
            if opener.is_none_or(|(_, opener)| opener.id != user.id) {
                let _ = self.store.delete_session(&id_hash).await;
                return Ok(None);
            }
        }
        let caller = super::Caller {
            user_id: user.id,
            username: user.username,
            is_admin: user.is_admin,
            token: None,
            address: session.address.clone(),
            credential: Some(super::Credential::Session(id_hash)),
        };
        Ok(Some((caller, session)))
    }

    /// Records the use of a share host's session that was let in (at most once a minute), and
    /// of the dashboard session that opened it: a browser working on a stage's share links is
    /// using Pergola, as it would be with the dashboard open. A refused request counts for
    /// neither.
    async fn share_session_used(&self, session: &SessionRow) -> Result<(), Error> {
        let now = self.clock.now();
        if now - session.last_seen_at < super::access::TOUCH_EVERY {
            return Ok(());
        }
        self.store.touch_session(&session.id_hash, now).await.map_err(internal("record a share session's use"))?;
        if let Some(parent) = &session.parent {
            self.store.touch_session(parent, now).await.map_err(internal("record a session's use"))?;
        }
        Ok(())
    }

    /// How long the guest link `token` still works, if it is live and for this stage.
    pub async fn guest_link_opens(
        &self,
        token: &str,
        project_id: &str,
        stage_id: &str,
    ) -> Result<Option<Duration>, Error> {
        if !SecretKind::GuestLink.matches(token) {
            return Ok(None);
        }
        let found = self.store.get_guest_link_by_hash(&credentials::secret_hash(token)).await;
        let Some(link) = found.map_err(internal("read a guest link"))? else { return Ok(None) };
        let now = self.clock.now();
        let ours = link.project_id == project_id && link.stage_id == stage_id;
        Ok((ours && link.revoked_at.is_none() && access::is_unexpired(link.expires_at, now))
            .then(|| link.expires_at.map_or(pergola_domain::share::GUEST_LINK_MAX, |t| t - now)))
    }

    /// Exchanges the dashboard's one-time code, on the share host `host` of the stage, for a
    /// secret of the share host (its cookie's value). `None` for a code that is unknown,
    /// expired, used, or minted for another stage or host, or whose dashboard session has ended
    /// since; the code is spent either way.
    pub async fn exchange_share_code(
        &self,
        code: &str,
        project_id: &str,
        stage_id: &str,
        host: &str,
        address: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let now = self.clock.now();
        if code.is_empty() || code.len() > 128 {
            return Ok(None);
        }
        let taken = self.store.take_share_code(&credentials::secret_hash(code)).await;
        let Some(pending) = taken.map_err(internal("take a share code"))? else { return Ok(None) };
        let bound = pending.project_id == project_id
            && pending.stage_id == stage_id
            && pending.host.eq_ignore_ascii_case(host)
            && now < pending.expires_at;
        if !bound {
            return Ok(None);
        }
        let Some(user) = self.store.get_user(&pending.user_id).await.map_err(internal("read a user"))? else {
            return Ok(None);
        };
        if user.disabled_at.is_some() {
            return Ok(None);
        }
        let caller = super::Caller {
            user_id: user.id.clone(),
            username: user.username.clone(),
            is_admin: user.is_admin,
            token: None,
            address: address.map(str::to_owned),
            credential: None,
        };
        if self.acting(caller).allow_stage(Action::ReadStage, project_id, stage_id).await.is_err() {
            return Ok(None);
        }
        let secret = credentials::new_secret(SecretKind::Session);
        let row = SessionRow {
            id_hash: share_secret_hash(&secret),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            address: address.map(str::to_owned),
            parent: pending.session,
        };
        // Not when the dashboard session signed out in the meantime.
        let begun = self.store.insert_session(&row).await.map_err(internal("begin a share session"))?;
        Ok(begun.then_some(secret))
    }

    /// The guest URL of each service of the stage (what runs, else what its current release
    /// would run).
    async fn guest_urls(&self, project_id: &str, stage_id: &str, token: &str) -> Vec<ShareLink> {
        let running = self.runtime.status(&crate::StageKey::new(project_id, stage_id));
        let mut links = self.links_of(project_id, stage_id, &running);
        if links.is_empty() {
            if let Ok(releases) = self.store.list_releases(project_id, stage_id).await {
                if let Some(manifest) = releases.first().and_then(|r| parse_manifest(&r.build.manifest).ok()) {
                    links = manifest
                        .components
                        .iter()
                        .filter(|c| c.kind == ComponentKind::Service)
                        .map(|c| ShareLink {
                            url: self.share.url(&c.name, stage_id, project_id),
                            component: c.name.clone(),
                        })
                        .collect();
                }
            }
        }
        links.into_iter().map(|l| ShareLink { url: guest_url(&l.url, token), component: l.component }).collect()
    }
}

fn guest_link(row: GuestLinkRow) -> GuestLink {
    GuestLink {
        id: row.id,
        created_by: row.created_by,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

impl Acting {
    /// Sets who may open the live stage's share links.
    pub async fn set_visibility(
        &self,
        project_id: &str,
        stage_id: &str,
        visibility: Visibility,
    ) -> Result<Visibility, Error> {
        let stage = self.allow_stage(Action::ManageSharing, project_id, stage_id).await?;
        self.live(stage)?;
        let before =
            self.store.stage_visibility(project_id, stage_id).await.map_err(internal("read a stage's visibility"))?;
        let done = self.store.set_stage_visibility(project_id, stage_id, visibility).await;
        self.proxy_cache.forget_all();
        if !done.map_err(internal("set a stage's visibility"))? {
            return Err(Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")));
        }
        if before != Some(visibility) {
            let message = match visibility {
                Visibility::Public => "Share links opened to anyone with the link.",
                Visibility::Members => "Share links restricted to members of the project.",
            };
            let event = StageEvent::new(self.clock.now(), EventKind::SharingChanged, message);
            self.record(project_id, stage_id, event).await;
        }
        Ok(visibility)
    }

    /// Who may open the stage's share links.
    pub async fn visibility(&self, project_id: &str, stage_id: &str) -> Result<Visibility, Error> {
        // A deleted stage's sharing is gone with it (its links work only once it is restored).
        self.live(self.allow_stage(Action::ReadStage, project_id, stage_id).await?)?;
        let found = self.store.stage_visibility(project_id, stage_id).await;
        found
            .map_err(internal("read a stage's visibility"))?
            .ok_or_else(|| Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")))
    }

    /// The stage's visibility and guest links (the stage settings' "Sharing" section).
    pub async fn sharing(&self, project_id: &str, stage_id: &str) -> Result<StageSharing, Error> {
        let visibility = self.visibility(project_id, stage_id).await?;
        let guest_links = self.list_guest_links(project_id, stage_id).await?;
        Ok(StageSharing { visibility, guest_links })
    }

    /// A new guest link to the live stage, lasting `expires_in` (1 hour to 365 days); its
    /// secret is shown this once.
    pub async fn create_guest_link(
        &self,
        project_id: &str,
        stage_id: &str,
        expires_in: Duration,
    ) -> Result<CreatedGuestLink, Error> {
        let expires_in = validate_guest_expiry(expires_in)?;
        let stage = self.allow_stage(Action::ManageSharing, project_id, stage_id).await?;
        self.live(stage)?;
        let now = self.clock.now();
        let token = credentials::new_secret(SecretKind::GuestLink);
        let row = GuestLinkRow {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            project_id: project_id.to_owned(),
            stage_id: stage_id.to_owned(),
            token_hash: credentials::secret_hash(&token),
            created_by: self.caller().username.clone(),
            created_at: now,
            expires_at: Some(now + expires_in),
            revoked_at: None,
        };
        let inserted = self.store.insert_guest_link(&row).await.map_err(internal("create a guest link"))?;
        if !inserted {
            return Err(Error::not_found(format!("Project '{project_id}' has no stage '{stage_id}'.")));
        }
        let expires_at = now + expires_in;
        let message =
            format!("Guest link {} created, valid until {}.", row.id, pergola_domain::format_time(expires_at));
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::SharingChanged, message)).await;
        let urls = self.guest_urls(project_id, stage_id, &token).await;
        Ok(CreatedGuestLink { id: row.id, token, expires_at, url: urls.first().map(|l| l.url.clone()), urls })
    }

    /// The stage's guest links, newest first, revoked and expired ones included; never a
    /// secret.
    pub async fn list_guest_links(&self, project_id: &str, stage_id: &str) -> Result<Vec<GuestLink>, Error> {
        self.live(self.allow_stage(Action::ReadStage, project_id, stage_id).await?)?;
        let rows = self.store.list_guest_links(project_id, stage_id).await.map_err(internal("list guest links"))?;
        Ok(rows.into_iter().map(guest_link).collect())
    }

    /// Revokes a guest link of the stage: it stops working at once.
    pub async fn revoke_guest_link(&self, project_id: &str, stage_id: &str, id: &str) -> Result<(), Error> {
        self.allow_stage(Action::ManageSharing, project_id, stage_id).await?;
        let now = self.clock.now();
        let revoked = self.store.revoke_guest_link(project_id, stage_id, id, now).await;
        self.proxy_cache.forget_all();
        if !revoked.map_err(internal("revoke a guest link"))? {
            return Err(Error::not_found(format!("Stage '{stage_id}' has no live guest link '{id}'.")));
        }
        let message = format!("Guest link {id} revoked.");
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::SharingChanged, message)).await;
        Ok(())
    }

    /// A one-time code (valid [`SHARE_CODE_TTL`]) by which the dashboard vouches for the caller
    /// to the share host `host` of the live stage, if they may see it.
    pub async fn share_code(&self, project_id: &str, stage_id: &str, host: &str) -> Result<String, Error> {
        let stage = self.allow_stage(Action::ReadStage, project_id, stage_id).await?;
        // A browser signed in to the dashboard is vouched for; an API token signs no browser in
        // (the share host's session would outlive the token's revocation).
        if self.caller().token.is_some() {
            return Err(Error::forbidden(
                "Open share links from the dashboard, signed in: an API token does not sign a browser in to them.",
            ));
        }
        // Only a dashboard session vouches: the share host's session will end with it.
        let Some(super::Credential::Session(session)) = &self.caller().credential else {
            return Err(Error::forbidden("Open share links from the dashboard, signed in."));
        };
        self.live(stage)?;
        let secret = credentials::new_secret(SecretKind::Session);
        let code = secret.trim_start_matches(SecretKind::Session.prefix()).to_owned();
        let now = self.clock.now();
        let pending = ShareCodeRow {
            code_hash: credentials::secret_hash(&code),
            user_id: self.caller().user_id.clone(),
            session: Some(session.clone()),
            project_id: project_id.to_owned(),
            stage_id: stage_id.to_owned(),
            host: host.to_ascii_lowercase(),
            expires_at: now + SHARE_CODE_TTL,
        };
        let stored = self.store.insert_share_code(&pending, now, SHARE_CODES_PER_USER).await;
        if !stored.map_err(internal("record a share code"))? {
            // The session ended a moment ago (a sign-out in another tab).
            return Err(Error::unauthenticated());
        }
        Ok(code)
    }
}
