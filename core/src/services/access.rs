//! Who acts, and what they may do.
//!
//! - **Authentication** (on [`Services`], before anyone is known): the first run (an
//!   administrator from the environment, or the one-time setup code printed in the log),
//!   sign-in with the throttle, sessions (the dashboard's cookie) and API tokens (bearer).
//!   Each answers with a [`Caller`].
//! - **Acting** ([`Acting`]): the services as one signed-in user. Every operation a user can ask
//!   for is a method of `Acting`, and each checks the domain's permission table
//!   ([`pergola_domain::access`]) before it reads or changes anything: outsiders get the same
//!   404 as for a project that does not exist, members without the role a 403 naming it.
//!   What they change is recorded with their name (the stage timelines and the audit trail).
//! - **Accounts**: users (administrators), the caller's own password and API tokens, project
//!   members (owners), and the project's activity.

use super::{internal, Services};
use crate::credentials::{self, SecretKind};
use crate::places::{CountedPlaces, Place};
use crate::store::{AuditEvent, AuditFilter, InvitationRow, SessionRow, TokenRow, UserRow};
use crate::StoreError;
use chrono::Duration;
use pergola_domain::access::{self, Action, Actor, Role};
use pergola_domain::wire::{NewInvitation, NewUser, UserPatch};
use pergola_domain::{
    AuditEntry, CreatedInvitation, CreatedToken, Error, ErrorKind, InvitationInfo, Me, Member, Stage, StageEvent,
    TokenInfo, UserInfo,
};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// A signed-in user making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub is_admin: bool,
    /// The name of the API token the request carried; `None` for a dashboard session.
    pub token: Option<String>,
    /// The client's address, for the audit trail.
    pub address: Option<String>,
    /// What signed them in, for a long request (a live stream) to find out when it stops
    /// working; `None` where nothing stored did (a password checked just now).
    pub credential: Option<Credential>,
}

/// The stored credential a caller came with, by the hash of its secret (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Session(String),
    Token(String),
}

impl Caller {
    fn of(user: &UserRow, token: Option<String>, address: Option<&str>) -> Self {
        Self {
            user_id: user.id.clone(),
            username: user.username.clone(),
            is_admin: user.is_admin,
            token,
            address: address.map(str::to_owned),
            credential: None,
        }
    }

    /// How the audit trail and the timelines name them: `alice`, or `alice (token ci)`.
    pub fn name(&self) -> String {
        match &self.token {
            None => self.username.clone(),
            Some(token) => format!("{} (token {token})", self.username),
        }
    }

    pub fn me(&self) -> Me {
        Me { username: self.username.clone(), is_admin: self.is_admin, token: self.token.clone() }
    }
}

/// Who made a request, as the server's authentication middleware found it (in the request's
/// extensions, for the REST handlers and the dashboard's server functions alike).
#[derive(Clone, Debug)]
pub enum Authenticated {
    /// Nobody signed in.
    Anonymous,
    /// By the dashboard's session cookie (whose value is kept, for signing out).
    Session { caller: Caller, secret: String },
    /// By an API token.
    Token(Caller),
    /// By a build-fetch token: nobody, only allowed to download one release's build (see
    /// [`super::BuildGrant`]).
    BuildFetch(super::BuildGrant),
}

impl Authenticated {
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Authenticated::Anonymous | Authenticated::BuildFetch(_) => None,
            Authenticated::Session { caller, .. } | Authenticated::Token(caller) => Some(caller),
        }
    }
}

/// A session just begun: the cookie's value (shown to no one else) and who it signs in.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub secret: String,
    pub caller: Caller,
}

/// What a fresh instance did at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstRun {
    /// Users exist: nothing to do.
    Ready,
    /// The administrator named in the environment was created.
    AdminCreated(String),
    /// Nobody can sign in yet: the first visitor must type this code (printed in the log).
    SetupCode(String),
}

/// The state behind authentication, shared by every clone of the services.
#[derive(Default)]
pub(super) struct AuthState {
    /// Set once a user exists (it never goes back).
    has_users: std::sync::atomic::AtomicBool,
    /// The password checks waiting for a [`HashingSlot`] on this server, per address.
    waiting: CountedPlaces,
    /// The password hashes this server computes at once.
    hashing: HashingSlots,
}

/// Sessions and tokens record their use at most this often (a write per request would be
/// wasteful); an idle expiry is therefore accurate to this much.
pub(super) const TOUCH_EVERY: Duration = Duration::seconds(60);

/// The lease held while the first administrator is created with a setup code (see
/// `Services::insert_first_admin`).
const FIRST_RUN_LEASE: &str = "first-run";
/// How long that lease lasts at most: it is given back at once, this is for a server that
/// dies holding it.
const FIRST_RUN_HOLD: Duration = Duration::seconds(120);
/// How many times a server started with `PERGOLA_ADMIN_USER` tries to take that lease (every
/// 250 ms) while another server holds it and no user exists yet.
const FIRST_RUN_TRIES: u32 = 40;

/// The one wrong-credentials message: it never says whether the username exists.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

fn wrong_credentials() -> Error {
    Error::new(ErrorKind::Unauthenticated, WRONG_CREDENTIALS)
}

/// A place among the password hashes (Argon2: 19 MiB of memory each) this server computes at
/// once; it is moved into the blocking task, so it is held until the hash is done even when
/// the request is dropped.
type HashingSlot = tokio::sync::OwnedSemaphorePermit;

/// How long a password check waits for a [`HashingSlot`] before the server says it is busy.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// The `Retry-After` of that answer, in seconds.
const HASHING_RETRY_SECS: u64 = 5;

/// The password hashes a server computes at once: as many as it has CPUs (at least one), so
/// that a flood of sign-ins (random usernames need no account) cannot hold memory without
/// bound. (The server's own, not the process's: test servers in one process do not wait on
/// each other.)
struct HashingSlots(Arc<tokio::sync::Semaphore>);

impl Default for HashingSlots {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1);
        HashingSlots(Arc::new(tokio::sync::Semaphore::new(cpus.max(1))))
    }
}

/// How many password checks of one address (an IPv6 /64, as the throttle counts) may wait for
/// a [`HashingSlot`] at once on this server: a flood from one address cannot fill the queue
/// that every other visitor's sign-in waits in.
const WAITING_PER_ADDRESS: usize = 8;

/// One of `address`'s places (at most `limit`) in the queue for a [`HashingSlot`], given back
/// when dropped; 429 when it holds them all.
fn waiting_place(waiting: &CountedPlaces, address: &str, limit: usize) -> Result<Place, Error> {
    waiting.take(address, limit).ok_or_else(|| Error {
        message: "Too many sign-ins from your address at the moment: try again in a few seconds.".into(),
        ..Error::too_many_requests(HASHING_RETRY_SECS)
    })
}

/// A [`HashingSlot`] of `slots`, waited for at most `wait`; after it, 429 (try again shortly).
async fn slot_of(slots: &HashingSlots, wait: std::time::Duration) -> Result<HashingSlot, Error> {
    match tokio::time::timeout(wait, slots.0.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        // The semaphore is never closed.
        Ok(Err(_)) => Err(Error::internal()),
        Err(_) => Err(Error {
            message: "The server is checking too many passwords at the moment: try again in a few seconds.".into(),
            ..Error::too_many_requests(HASHING_RETRY_SECS)
        }),
    }
}

/// Verifies a password off the async threads (Argon2 takes tens of milliseconds of CPU),
/// in `slot`.
async fn verify(slot: HashingSlot, password: &str, hash: Option<String>) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        match hash {
            Some(hash) => credentials::verify_password(&password, &hash),
            None => credentials::verify_password_of_nobody(&password),
        }
    })
    .await
    .unwrap_or(false)
}

async fn hash(slot: HashingSlot, password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        credentials::hash_password(&password)
    })
    .await
    .map_err(|_| Error::internal())?
    .map_err(|e| {
        tracing::error!(error = %e, "could not hash a password");
        Error::internal()
    })
}

/// A setup code: 16 characters of an alphabet without look-alikes (80 random bits), in
/// groups of four.
fn new_setup_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let secret = credentials::new_secret(SecretKind::Invitation);
    let digest = credentials::secret_hash(&secret);
    let chars: Vec<char> = digest
        .as_bytes()
        .chunks(2)
        .take(16)
        .map(|pair| {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16).unwrap_or(0);
            ALPHABET[usize::from(byte) % 32] as char
        })
        .collect();
    chars.chunks(4).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// Compares two strings in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Services {
    /// At start-up: when no user exists, creates the administrator `admin` (username,
    /// password) if given, else makes the one-time setup code the first visitor must type.
    pub async fn prepare_first_run(&self, admin: Option<(&str, &str)>) -> Result<FirstRun, Error> {
        if self.store.count_users().await.map_err(internal("count the users"))? > 0 {
            self.auth.has_users.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(FirstRun::Ready);
        }
        if let Some((username, password)) = admin {
            // Replicas started together with the same environment: one creates the
            // administrator, the others wait for it (a few seconds at most) and find it made.
            let mut tries = 0;
            loop {
                match self.insert_first_admin(username, password).await {
                    Ok(user) => {
                        let _ = self.store.clear_setup_codes().await;
                        let message = "Administrator created from the environment.";
                        self.system_audit(None, "user.created", &user.username, message).await;
                        return Ok(FirstRun::AdminCreated(user.username));
                    }
                    Err(e) if e.kind == ErrorKind::InvalidState => {
                        if self.store.count_users().await.map_err(internal("count the users"))? > 0 {
                            self.auth.has_users.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Ok(FirstRun::Ready);
                        }
                        tries += 1;
                        if tries >= FIRST_RUN_TRIES {
                            return Err(e);
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // In the database: with several servers, the code any one printed works on all.
        let code = new_setup_code();
        let stored = self.store.insert_setup_code(&credentials::secret_hash(&code), self.clock.now()).await;
        stored.map_err(internal("record the setup code"))?;
        Ok(FirstRun::SetupCode(code))
    }

    /// Whether the instance still waits for its first administrator (nothing else is
    /// reachable until then).
    pub async fn needs_setup(&self) -> Result<bool, Error> {
        if self.auth.has_users.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let none = self.store.count_users().await.map_err(internal("count the users"))? == 0;
        if !none {
            self.auth.has_users.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(none)
    }

    /// "Create the administrator account": with the setup code from the log, creates the
    /// first administrator and signs them in. The code works once.
    pub async fn complete_setup(
        &self,
        code: &str,
        username: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<NewSession, Error> {
        let username = access::validate_username(username)?;
        access::validate_password(password)?;
        let code = code.trim().to_ascii_uppercase();
        // Compared by its hash (as secrets are): no timing tells how much of it was right.
        let hash = credentials::secret_hash(&code);
        let taken =
            code.len() <= 64 && self.store.take_setup_code(&hash).await.map_err(internal("take the setup code"))?;
        if !taken {
            return Err(if self.needs_setup().await? {
                Error::validation("code", "That is not the setup code printed in the server's log.")
            } else {
                Error::invalid_state("This instance is already set up: sign in.")
            });
        }
        let user = match self.insert_first_admin(&username, password).await {
            Ok(user) => user,
            Err(e) => {
                // Still usable, unless the instance was set up meanwhile.
                if e.kind != ErrorKind::InvalidState {
                    let _ = self.store.insert_setup_code(&hash, self.clock.now()).await;
                }
                return Err(e);
            }
        };
        let _ = self.store.clear_setup_codes().await;
        let caller = Caller::of(&user, None, address);
        self.acting(caller.clone())
            .audit(None, None, "user.created", &user.username, "Administrator created with the setup code.".into())
            .await;
        let secret = self.start_session(&caller).await?;
        Ok(NewSession { secret, caller })
    }

    /// Adds the first administrator, only while no user exists. Every server on the database
    /// prints a setup code of its own, so "nobody exists yet" and the insert are made one step
    /// by the lease [`FIRST_RUN_LEASE`]: of servers setting up at once, one holds it and the
    /// others are refused; once it is given back, the users it finds refuse the next.
    async fn insert_first_admin(&self, username: &str, password: &str) -> Result<UserRow, Error> {
        let holder = format!("setup {}", uuid::Uuid::new_v4());
        let now = self.clock.now();
        let held = self.store.take_lease(FIRST_RUN_LEASE, &holder, now, now + FIRST_RUN_HOLD).await;
        if !held.map_err(internal("take the first run's lease"))? {
            return Err(Error::invalid_state(
                "Another server is creating the first administrator at this moment: reload the page and sign in.",
            ));
        }
        let created = self.insert_first_admin_held(username, password).await;
        if let Err(e) = self.store.release_lease(FIRST_RUN_LEASE, &holder).await {
            // It ends by itself after `FIRST_RUN_HOLD`.
            tracing::warn!(error = %e, "could not give the first run's lease back");
        }
        created
    }

    /// [`Self::insert_first_admin`] while holding its lease.
    async fn insert_first_admin_held(&self, username: &str, password: &str) -> Result<UserRow, Error> {
        if self.store.count_users().await.map_err(internal("count the users"))? > 0 {
            self.auth.has_users.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(Error::invalid_state("This instance is already set up: sign in."));
        }
        self.insert_user(username, password, true).await
    }

    /// Adds a user (checked username and password); the store's `Conflict` is a taken name.
    async fn insert_user(&self, username: &str, password: &str, is_admin: bool) -> Result<UserRow, Error> {
        let username = access::validate_username(username)?;
        access::validate_password(password)?;
        let password_hash = self.hash(password).await?;
        self.insert_hashed_user(username, password_hash, is_admin).await
    }

    /// Adds a user whose username was checked and whose password is hashed.
    async fn insert_hashed_user(
        &self,
        username: String,
        password_hash: String,
        is_admin: bool,
    ) -> Result<UserRow, Error> {
        let now = self.clock.now();
        let user = UserRow {
            id: uuid::Uuid::new_v4().to_string(),
            username,
            password_hash,
            is_admin,
            disabled_at: None,
            created_at: now,
            password_changed_at: now,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => {
                self.auth.has_users.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(user)
            }
            Err(StoreError::Conflict) => {
                Err(Error::validation("username", format!("Username '{}' is already taken.", user.username)))
            }
            Err(e) => Err(internal("insert a user")(e)),
        }
    }

    /// Checks a username and password, with the throttle: after too many failures for this
    /// username from this address, every attempt is refused (429) until the window passes —
    /// even with the right password. A wrong password, an unknown or disabled user all get
    /// the same 401.
    pub async fn sign_in(&self, username: &str, password: &str, address: &str) -> Result<Caller, Error> {
        let name = access::normalize_username(username);
        // Counted per address, or per IPv6 network (/64).
        let counted = pergola_domain::Throttle::address_key(address);
        let slot = self.password_attempt(&name, &counted).await?;
        let user = self.store.get_user_by_name(&name).await.map_err(internal("read a user to sign in"))?;
        let ok = if password.len() > access::MAX_PASSWORD_BYTES {
            false
        } else {
            let enabled = user.as_ref().filter(|u| u.disabled_at.is_none());
            let hash = user.as_ref().map(|u| u.password_hash.clone());
            verify(slot, password, hash).await && enabled.is_some()
        };
        match user.filter(|_| ok) {
            Some(user) => {
                // The attempt recorded as a failure in advance goes too.
                self.store.clear_sign_in_failures(&name, &counted).await.map_err(internal("clear failed sign-ins"))?;
                let caller = Caller::of(&user, None, Some(address));
                self.acting(caller.clone()).audit(None, None, "user.signed-in", &name, "Signed in.".into()).await;
                Ok(caller)
            }
            None => {
                // Already recorded as a failure (by `password_attempt`).
                let message = format!("Failed sign-in as '{name}'.");
                self.system_audit(Some(address), "user.sign-in-failed", &name, &message).await;
                Err(wrong_credentials())
            }
        }
    }

    /// A [`HashingSlot`] of this server, waited for at most [`HASHING_WAIT`]; after it, 429.
    async fn hashing_slot(&self) -> Result<HashingSlot, Error> {
        slot_of(&self.auth.hashing, HASHING_WAIT).await
    }

    /// `password` hashed (in a slot of this server's).
    async fn hash(&self, password: &str) -> Result<String, Error> {
        hash(self.hashing_slot().await?, password).await
    }

    /// One try at the password of user `name` from `counted` (an address key, see
    /// [`pergola_domain::Throttle::address_key`]), under the sign-in throttle: refused (429)
    /// after too many failures, else the [`HashingSlot`] to check the password in. The try is
    /// recorded as a failure *before* the password is checked (the caller clears the failures
    /// when it is right), and the failures are read again after: of tries made at once, which
    /// would all pass a check that none of them had counted yet, only as many as the throttle
    /// allows go on.
    async fn password_attempt(&self, name: &str, counted: &str) -> Result<HashingSlot, Error> {
        let now = self.clock.now();
        let failures = self
            .store
            .sign_in_failures_since(name, counted, self.throttle.window_start(now))
            .await
            .map_err(internal("read the failed sign-ins"))?;
        self.throttle.check(&failures, now)?;
        // Waited for before the try is recorded: a busy server costs nobody a try. Each
        // address waits in a few places of the queue at most.
        let slot = {
            let _place = waiting_place(&self.auth.waiting, counted, WAITING_PER_ADDRESS)?;
            self.hashing_slot().await?
        };
        let now = self.clock.now();
        self.store.record_sign_in_failure(name, counted, now).await.map_err(internal("record a sign-in attempt"))?;
        let mut failures = self
            .store
            .sign_in_failures_since(name, counted, self.throttle.window_start(now))
            .await
            .map_err(internal("read the failed sign-ins"))?;
        // This try is among them: the others decide whether it may go on.
        failures.pop();
        self.throttle.check(&failures, now)?;
        Ok(slot)
    }

    /// Signs in and begins a dashboard session.
    pub async fn sign_in_session(&self, username: &str, password: &str, address: &str) -> Result<NewSession, Error> {
        let caller = self.sign_in(username, password, address).await?;
        let secret = self.start_session(&caller).await?;
        Ok(NewSession { secret, caller })
    }

    /// Signs in and creates an API token `token_name` (replacing a live one of that name):
    /// what `pergola login` does.
    pub async fn sign_in_token(
        &self,
        username: &str,
        password: &str,
        address: &str,
        token_name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<CreatedToken, Error> {
        let token_name = access::validate_token_name(token_name)?;
        let expires_in_days = access::validate_expiry_days("expires_in_days", expires_in_days)?;
        let caller = self.sign_in(username, password, address).await?;
        let acting = self.acting(caller);
        if let Ok(true) = self.store.revoke_token(&acting.caller().user_id, &token_name, self.clock.now()).await {
            // The streams the replaced token opened end now, not at their next check.
            self.changes.access_changed(&acting.caller().user_id);
        }
        acting.create_token(&token_name, expires_in_days, None).await
    }

    async fn start_session(&self, caller: &Caller) -> Result<String, Error> {
        let secret = credentials::new_secret(SecretKind::Session);
        let now = self.clock.now();
        let row = SessionRow {
            id_hash: credentials::secret_hash(&secret),
            user_id: caller.user_id.clone(),
            created_at: now,
            last_seen_at: now,
            address: caller.address.clone(),
            parent: None,
        };
        self.store.insert_session(&row).await.map_err(internal("begin a session"))?;
        Ok(secret)
    }

    /// Who a session cookie signs in: `None` for anything but a live session of an enabled
    /// user (an ended one is deleted).
    pub async fn session_caller(&self, secret: &str, address: Option<&str>) -> Result<Option<Caller>, Error> {
        if !SecretKind::Session.matches(secret) {
            return Ok(None);
        }
        let id_hash = credentials::secret_hash(secret);
        let now = self.clock.now();
        let Some((session, user)) = self.live_session(&id_hash, now).await? else { return Ok(None) };
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&id_hash, now).await.map_err(internal("record a session's use"))?;
        }
        Ok(Some(Caller { credential: Some(Credential::Session(id_hash)), ..Caller::of(&user, None, address) }))
    }

    /// The session `id_hash` and its user while the session is live and the user enabled (one
    /// that has ended is deleted): the dashboard's sessions and the share hosts' alike.
    pub(super) async fn live_session(
        &self,
        id_hash: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(SessionRow, UserRow)>, Error> {
        let Some((session, user)) = self.store.get_session(id_hash).await.map_err(internal("read a session"))? else {
            return Ok(None);
        };
        if user.disabled_at.is_some() || !self.sessions.is_live(session.created_at, session.last_seen_at, now) {
            let _ = self.store.delete_session(id_hash).await;
            return Ok(None);
        }
        Ok(Some((session, user)))
    }

    /// The token of hash `hash` and its user while the token is unrevoked and unexpired and the
    /// user enabled.
    async fn live_token(
        &self,
        hash: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(TokenRow, UserRow)>, Error> {
        let found = self.store.get_token_by_hash(hash).await.map_err(internal("read a token"))?;
        Ok(found.filter(|(token, user)| user.disabled_at.is_none() && access::is_unexpired(token.expires_at, now)))
    }

    /// Deletes the sessions the session policy has ended (idle, or past their lifetime) that
    /// nobody used since — and with them the share hosts' sessions they opened; how many. The
    /// purge task calls it: an ended session is refused when used anyway, this keeps the table
    /// to the live ones.
    pub async fn end_stale_sessions(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let (idle, absolute) = (self.sessions.idle, self.sessions.absolute);
        self.store.delete_stale_sessions(now - idle, now - absolute).await.map_err(internal("end stale sessions"))
    }

    /// Ends the session of a cookie (signing out); nothing happens for an unknown one. Its
    /// live streams end too, and the share hosts' sessions it opened.
    pub async fn end_session(&self, secret: &str) -> Result<(), Error> {
        if SecretKind::Session.matches(secret) {
            let id_hash = credentials::secret_hash(secret);
            let session = self.store.get_session(&id_hash).await.map_err(internal("read a session to end"))?;
            // The share hosts' sessions it vouched for end with it (the store cascades), at
            // once on every server's proxy too.
            self.store.delete_session(&id_hash).await.map_err(internal("end a session"))?;
            self.proxy_cache.forget_all();
            if let Some((_, user)) = session {
                self.changes.access_changed(&user.id);
            }
        }
        Ok(())
    }

    /// `caller` as they are now — their administrator role read again — if what signed them
    /// in still does: the session not ended nor expired, the token not revoked nor expired,
    /// the user not disabled. `None`: they are signed out.
    pub(super) async fn refreshed(&self, caller: &Caller) -> Result<Option<Caller>, Error> {
        let user = self.signed_in_user(caller).await?;
        Ok(user.map(|user| Caller { is_admin: user.is_admin, ..caller.clone() }))
    }

    /// The user `caller` is, as stored now, if what signed them in still does (see
    /// [`Services::refreshed`]).
    async fn signed_in_user(&self, caller: &Caller) -> Result<Option<UserRow>, Error> {
        let now = self.clock.now();
        let user = match &caller.credential {
            None => self.store.get_user(&caller.user_id).await.map_err(internal("read a user"))?,
            Some(Credential::Session(id_hash)) => self.live_session(id_hash, now).await?.map(|(_, user)| user),
            Some(Credential::Token(hash)) => self.live_token(hash, now).await?.map(|(_, user)| user),
        };
        Ok(user.filter(|user| user.disabled_at.is_none() && user.id == caller.user_id))
    }

    /// Who a bearer token signs in: `None` for anything but an unrevoked, unexpired token of
    /// an enabled user.
    pub async fn token_caller(&self, secret: &str, address: Option<&str>) -> Result<Option<Caller>, Error> {
        if !SecretKind::ApiToken.matches(secret) {
            return Ok(None);
        }
        let hash = credentials::secret_hash(secret);
        let now = self.clock.now();
        let Some((token, user)) = self.live_token(&hash, now).await? else { return Ok(None) };
        if token.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
            self.store.touch_token(&token.id, now).await.map_err(internal("record a token's use"))?;
        }
        Ok(Some(Caller { credential: Some(Credential::Token(hash)), ..Caller::of(&user, Some(token.name), address) }))
    }

    /// Accepts an invitation: creates the account it is for (joining its project, if any) and
    /// signs the new user in. The link works once and until it expires; the username and
    /// password are checked before it is used up.
    pub async fn accept_invitation(
        &self,
        secret: &str,
        username: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<NewSession, Error> {
        let username = access::validate_username(username)?;
        access::validate_password(password)?;
        let gone =
            || Error::expired("This invitation was already used or has expired. Ask an administrator for a new one.");
        if !SecretKind::Invitation.matches(secret) {
            return Err(gone());
        }
        let now = self.clock.now();
        let token_hash = credentials::secret_hash(secret);
        // The invitation first: without one, nobody learns whether a username is taken.
        let open = self.store.list_open_invitations(now).await.map_err(internal("list invitations"))?;
        if !open.iter().any(|i| same(&i.token_hash, &token_hash)) {
            return Err(gone());
        }
        if self.store.get_user_by_name(&username).await.map_err(internal("read a user"))?.is_some() {
            return Err(Error::validation("username", format!("Username '{username}' is already taken.")));
        }
        // Hashed before the invitation is used up: a hash refused while the server checks too
        // many passwords (429) leaves the invitation as it was.
        let password_hash = self.hash(password).await?;
        let taken = self.store.take_invitation(&token_hash, now).await;
        let invitation = taken.map_err(internal("use an invitation"))?.ok_or_else(gone)?;
        let user = match self.insert_hashed_user(username, password_hash, invitation.is_admin).await {
            Ok(user) => user,
            Err(e) => {
                // The username was taken meanwhile (by someone accepting another invitation at
                // the same moment): this invitation stays usable. (After any other failure the
                // account may have been made: the invitation stays used.)
                if e.is_for("username") {
                    if let Err(back) = self.store.give_back_invitation(&token_hash, now).await {
                        tracing::warn!(error = %back, "could not give an invitation back");
                    }
                }
                return Err(e);
            }
        };
        let caller = Caller::of(&user, None, address);
        let acting = self.acting(caller.clone());
        let message =
            format!("Account '{}' created with an invitation from '{}'.", user.username, invitation.created_by);
        acting.audit(None, None, "user.created", &user.username, message).await;
        if let (Some(project), Some(role)) = (&invitation.project_id, invitation.role) {
            let joined = self.store.upsert_membership(project, &user.id, role, now).await;
            if joined.map_err(internal("join the invited project"))? {
                let message = format!("'{}' joined as {role} (invited by '{}').", user.username, invitation.created_by);
                acting.audit(Some(project), None, "member.added", &user.username, message).await;
            }
        }
        let secret = self.start_session(&caller).await?;
        Ok(NewSession { secret, caller })
    }

    /// Records what the system or an unknown visitor did (failed sign-ins, the first run).
    async fn system_audit(&self, address: Option<&str>, kind: &str, target: &str, message: &str) {
        let event = AuditEvent {
            id: 0,
            at: self.clock.now(),
            actor: "system".into(),
            address: address.map(str::to_owned),
            project_id: None,
            stage_id: None,
            kind: kind.into(),
            target: target.into(),
            message: message.into(),
        };
        if let Err(e) = self.store.add_audit_event(&event).await {
            tracing::warn!(error = %e, kind, "could not record an audit event");
        }
    }

    /// The services as `caller`: every user-facing operation is a method of [`Acting`].
    pub fn acting(&self, caller: Caller) -> Acting {
        Acting { services: self.clone(), caller: Arc::new(caller), roles: Arc::default() }
    }
}

/// The services as one signed-in user (see the module's documentation). Cheap to clone; made
/// per request, so the roles it looks up are remembered for that request only.
#[derive(Clone)]
pub struct Acting {
    services: Services,
    caller: Arc<Caller>,
    roles: Arc<Mutex<HashMap<String, Option<Role>>>>,
}

impl Deref for Acting {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl Acting {
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The services themselves, for work that goes on after the request (in the background).
    pub(super) fn services(&self) -> &Services {
        &self.services
    }

    /// Who the caller is in `project_id`: their role there (if any) and whether they are an
    /// administrator.
    pub async fn actor(&self, project_id: &str) -> Result<Actor, Error> {
        let known = self.roles.lock().expect("roles").get(project_id).copied();
        let role = match known {
            Some(role) => role,
            None => {
                let role = self
                    .store
                    .membership(project_id, &self.caller.user_id)
                    .await
                    .map_err(internal("read a membership"))?;
                self.roles.lock().expect("roles").insert(project_id.to_owned(), role);
                role
            }
        };
        Ok(Actor { is_admin: self.caller.is_admin, role })
    }

    /// Forgets the roles looked up (after a membership changed).
    pub(super) fn forget_roles(&self) {
        self.roles.lock().expect("roles").clear();
    }

    /// Whether the caller may do `action` in `project_id` (on a stage of `stage_type`): the
    /// 404 or 403 of [`access::decide`] if not.
    pub(super) async fn allow(
        &self,
        action: Action,
        stage_type: Option<pergola_domain::StageType>,
        project_id: &str,
    ) -> Result<(), Error> {
        let actor = if action.is_instance_wide() {
            Actor { is_admin: self.caller.is_admin, role: None }
        } else {
            self.actor(project_id).await?
        };
        access::authorize(&actor, action, stage_type, project_id)
    }

    /// A stage (live or archived) the caller may do `action` on: a project they cannot see is
    /// a 404, then the stage is read, then the action is judged for the stage's type.
    pub(super) async fn allow_stage(&self, action: Action, project_id: &str, stage_id: &str) -> Result<Stage, Error> {
        self.allow(Action::ReadProject, None, project_id).await?;
        let stage = self.any_stage(project_id, stage_id).await?;
        self.allow(action, Some(stage.stage_type), project_id).await?;
        Ok(stage)
    }

    /// Adds an event to a stage's timeline with the caller's name, and to the audit trail.
    pub(super) async fn record(&self, project_id: &str, stage_id: &str, mut event: StageEvent) {
        event.actor = Some(self.caller.name());
        let kind = format!("stage.{}", event.kind.as_str());
        let message = event.message.clone();
        self.services.record(project_id, stage_id, event).await;
        self.audit(Some(project_id), Some(stage_id), &kind, stage_id, message).await;
    }

    /// Adds an entry to the audit trail: the caller, their address, what they did to what.
    /// Never pass a secret value in `message`.
    pub(super) async fn audit(
        &self,
        project_id: Option<&str>,
        stage_id: Option<&str>,
        kind: &str,
        target: &str,
        message: String,
    ) {
        let event = AuditEvent {
            id: 0,
            at: self.clock.now(),
            actor: self.caller.name(),
            address: self.caller.address.clone(),
            project_id: project_id.map(str::to_owned),
            stage_id: stage_id.map(str::to_owned),
            kind: kind.to_owned(),
            target: target.to_owned(),
            message,
        };
        if let Err(e) = self.store.add_audit_event(&event).await {
            tracing::warn!(error = %e, kind, "could not record an audit event");
        }
        if let Some(project_id) = project_id {
            self.changes.publish(project_id, stage_id);
        }
    }

    pub fn me(&self) -> Me {
        self.caller.me()
    }

    // --- Users (administrators)

    pub async fn create_user(&self, input: NewUser) -> Result<UserInfo, Error> {
        self.allow(Action::AdministerUsers, None, "").await?;
        self.confirm_it_is_you(input.your_password.as_deref(), "creating a user").await?;
        let user = self.insert_user(&input.username, &input.password, input.admin).await?;
        let what = if user.is_admin { "Administrator" } else { "User" };
        self.audit(None, None, "user.created", &user.username, format!("{what} '{}' created.", user.username)).await;
        Ok(user_info(&user))
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>, Error> {
        self.allow(Action::AdministerUsers, None, "").await?;
        let users = self.store.list_users().await.map_err(internal("list the users"))?;
        Ok(users.iter().map(user_info).collect())
    }

    /// Resets a password, disables or enables a user, grants or takes the administrator role.
    /// Disabling ends the user's sessions at once (and their tokens stop working). Nobody
    /// disables themselves or takes their own administrator role, so an instance always keeps
    /// an administrator.
    pub async fn update_user(&self, username: &str, patch: UserPatch) -> Result<UserInfo, Error> {
        self.allow(Action::AdministerUsers, None, "").await?;
        let user = self.user_named(username).await?;
        if let Some(password) = &patch.password {
            access::validate_password(password)?;
        }
        let myself = user.id == self.caller.user_id;
        if myself && patch.disabled == Some(true) {
            return Err(Error::invalid_state("You cannot disable your own account."));
        }
        if myself && patch.admin == Some(false) {
            return Err(Error::invalid_state("You cannot take your own administrator role."));
        }
        let lets_in = patch.password.is_some()
            || (patch.admin == Some(true) && !user.is_admin)
            || (patch.disabled == Some(false) && user.disabled_at.is_some());
        if lets_in {
            self.confirm_it_is_you(patch.your_password.as_deref(), "this change").await?;
        }
        let now = self.clock.now();
        let mut changes = Vec::new();
        if let Some(password) = &patch.password {
            let hashed = self.hash(password).await?;
            self.store.update_user_password(&user.id, &hashed, now).await.map_err(internal("reset a password"))?;
            self.store.delete_user_sessions(&user.id, None).await.map_err(internal("end a user's sessions"))?;
            changes.push("password reset".to_owned());
        }
        if let Some(disabled) = patch.disabled {
            if disabled != user.disabled_at.is_some() {
                let at = disabled.then_some(now);
                self.store.set_user_disabled(&user.id, at).await.map_err(internal("disable a user"))?;
                if disabled {
                    self.store.delete_user_sessions(&user.id, None).await.map_err(internal("end a user's sessions"))?;
                }
                changes.push(if disabled { "disabled" } else { "enabled" }.to_owned());
            }
        }
        if let Some(admin) = patch.admin {
            if admin != user.is_admin {
                self.store.set_user_admin(&user.id, admin).await.map_err(internal("set the administrator role"))?;
                changes.push(if admin { "made an administrator" } else { "no longer an administrator" }.to_owned());
            }
        }
        if !changes.is_empty() {
            self.proxy_cache.forget_all();
            self.changes.access_changed(&user.id);
            let message = format!("User '{}' {}.", user.username, changes.join(", "));
            self.audit(None, None, "user.updated", &user.username, message).await;
        }
        Ok(user_info(&self.user_named(username).await?))
    }

    /// Changes the caller's own password; `current` must be right. Their other sessions end.
    /// Guesses of `current` count with the sign-in throttle's (same username, same address):
    /// after too many, even the right one is refused (429) until the window passes.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), Error> {
        let Some(user) = self.own_password_is(current).await? else {
            let name = access::normalize_username(&self.caller.username);
            let message = format!("Wrong current password given to change the password of '{name}'.");
            self.audit(None, None, "user.password-change-failed", &name, message).await;
            return Err(Error::validation("current", "The current password is not right."));
        };
        access::validate_password(new).map_err(|mut e| {
            e.field = Some("new".into());
            e
        })?;
        let hashed = self.hash(new).await?;
        self.store
            .update_user_password(&user.id, &hashed, self.clock.now())
            .await
            .map_err(internal("change a password"))?;
        let keep = match &self.caller.credential {
            Some(Credential::Session(id_hash)) => Some(id_hash.as_str()),
            _ => None,
        };
        self.store.delete_user_sessions(&user.id, keep).await.map_err(internal("end a user's other sessions"))?;
        // Their share hosts' sessions ended too: every server's proxy decides again.
        self.proxy_cache.forget_all();
        self.changes.access_changed(&user.id);
        self.audit(None, None, "user.password-changed", &user.username, "Password changed.".into()).await;
        Ok(())
    }

    /// Whether `given` is the caller's own password: their row when it is, `None` when not.
    /// Guesses count with the sign-in throttle's (same username, same address): after too
    /// many, even the right one is refused (429) until the window passes.
    async fn own_password_is(&self, given: &str) -> Result<Option<UserRow>, Error> {
        // Still signed in by what signed them in (a token revoked meanwhile confirms nothing).
        let user = self.signed_in_user(&self.caller).await?.ok_or_else(Error::unauthenticated)?;
        let name = access::normalize_username(&user.username);
        let counted = pergola_domain::Throttle::address_key(self.caller.address.as_deref().unwrap_or(""));
        let slot = self.password_attempt(&name, &counted).await?;
        let right =
            given.len() <= access::MAX_PASSWORD_BYTES && verify(slot, given, Some(user.password_hash.clone())).await;
        if !right {
            // Already recorded as a failure (by `password_attempt`).
            return Ok(None);
        }
        self.store.clear_sign_in_failures(&name, &counted).await.map_err(internal("clear failed sign-ins"))?;
        Ok(Some(user))
    }

    /// Through an API token, what lets someone in — a new account, a password, the
    /// administrator role, an account enabled again, an invitation — needs the caller's own
    /// password too (`given`, the request's `your_password`): a leaked token alone leaves no
    /// way in that outlives it. A dashboard session, or a password checked just now, needs
    /// nothing more. `what` names the change for the messages ("creating a user" …).
    async fn confirm_it_is_you(&self, given: Option<&str>, what: &str) -> Result<(), Error> {
        if self.caller.token.is_none() {
            return Ok(());
        }
        let Some(given) = given.filter(|given| !given.is_empty()) else {
            return Err(Error::validation(
                "your_password",
                format!(
                    "With an API token, {what} needs your own password too (your_password): a token alone makes \
                     no way in that outlives it."
                ),
            ));
        };
        if self.own_password_is(given).await?.is_none() {
            let name = access::normalize_username(&self.caller.username);
            let message = format!("Wrong password given by '{name}' to confirm {what}.");
            self.audit(None, None, "user.confirm-failed", &name, message).await;
            return Err(Error::validation("your_password", "Your password is not right."));
        }
        Ok(())
    }

    async fn user_named(&self, username: &str) -> Result<UserRow, Error> {
        let name = access::normalize_username(username);
        self.store
            .get_user_by_name(&name)
            .await
            .map_err(internal("read a user"))?
            .ok_or_else(|| Error::not_found(format!("There is no user '{name}'.")))
    }

    /// An invitation link to create an account (see [`Services::accept_invitation`]).
    pub async fn create_invitation(&self, input: NewInvitation) -> Result<CreatedInvitation, Error> {
        self.allow(Action::AdministerUsers, None, "").await?;
        let project = match input.project.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => Some(self.project(p).await?.id),
            None => None,
        };
        let role = match (&project, input.role) {
            (Some(_), None) => {
                return Err(Error::validation("role", "Choose the role the new user gets in the project."))
            }
            (None, Some(_)) => return Err(Error::validation("project", "A role needs a project.")),
            (_, role) => role,
        };
        self.confirm_it_is_you(input.your_password.as_deref(), "an invitation").await?;
        let secret = credentials::new_secret(SecretKind::Invitation);
        let now = self.clock.now();
        let row = InvitationRow {
            token_hash: credentials::secret_hash(&secret),
            created_by: self.caller.username.clone(),
            is_admin: input.admin,
            project_id: project.clone(),
            role,
            expires_at: access::invitation_expires_at(now),
            used_at: None,
            created_at: now,
        };
        self.store.insert_invitation(&row).await.map_err(internal("create an invitation"))?;
        let what = match (&project, role) {
            (Some(p), Some(r)) => format!(" to project '{p}' as {r}"),
            _ => String::new(),
        };
        let kind = if input.admin { "an administrator's invitation" } else { "an invitation" };
        self.audit(project.as_deref(), None, "user.invited", "invitation", format!("Created {kind}{what}.")).await;
        Ok(CreatedInvitation {
            link: format!("/invite/{secret}"),
            expires_at: row.expires_at,
            is_admin: input.admin,
            project,
            role,
        })
    }

    /// Invitations not used yet and not expired, newest first.
    pub async fn list_invitations(&self) -> Result<Vec<InvitationInfo>, Error> {
        self.allow(Action::AdministerUsers, None, "").await?;
        let rows = self.store.list_open_invitations(self.clock.now()).await.map_err(internal("list invitations"))?;
        Ok(rows
            .into_iter()
            .map(|i| InvitationInfo {
                created_by: i.created_by,
                created_at: i.created_at,
                expires_at: i.expires_at,
                is_admin: i.is_admin,
                project: i.project_id,
                role: i.role,
            })
            .collect())
    }

    // --- The caller's API tokens

    /// A new personal API token, shown this once. Its name must not be taken by a live token.
    /// A request made with a token makes one only with the caller's own password too
    /// (`your_password`, see [`Acting::confirm_it_is_you`]): a leaked token cannot mint one
    /// that outlives it.
    pub async fn create_token(
        &self,
        name: &str,
        expires_in_days: Option<u32>,
        your_password: Option<&str>,
    ) -> Result<CreatedToken, Error> {
        let name = access::validate_token_name(name)?;
        let days = access::validate_expiry_days("expires_in_days", expires_in_days)?;
        self.confirm_it_is_you(your_password, "creating a token").await?;
        let now = self.clock.now();
        let expires_at = days.map(|d| now + Duration::days(i64::from(d)));
        let secret = credentials::new_secret(SecretKind::ApiToken);
        let row = TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: self.caller.user_id.clone(),
            name: name.clone(),
            token_hash: credentials::secret_hash(&secret),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        match self.store.insert_token(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::validation("name", format!("You already have a token named '{name}'.")))
            }
            Err(e) => return Err(internal("create a token")(e)),
        }
        self.audit(None, None, "token.created", &name, format!("API token '{name}' created.")).await;
        Ok(CreatedToken { name, token: secret, expires_at: row.expires_at })
    }

    /// The caller's live tokens (not revoked), newest first; expired ones are listed too.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let rows = self.store.list_tokens(&self.caller.user_id).await.map_err(internal("list the tokens"))?;
        Ok(rows
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .map(|t| TokenInfo {
                name: t.name,
                created_at: t.created_at,
                expires_at: t.expires_at,
                last_used_at: t.last_used_at,
            })
            .collect())
    }

    /// Revokes one of the caller's tokens: it stops working at once.
    pub async fn revoke_token(&self, name: &str) -> Result<(), Error> {
        let name = name.trim();
        let revoked = self.store.revoke_token(&self.caller.user_id, name, self.clock.now()).await;
        if !revoked.map_err(internal("revoke a token"))? {
            return Err(Error::not_found(format!("You have no token named '{name}'.")));
        }
        self.changes.access_changed(&self.caller.user_id);
        self.audit(None, None, "token.revoked", name, format!("API token '{name}' revoked.")).await;
        Ok(())
    }

    // --- Project members (owners)

    pub async fn members(&self, project_id: &str) -> Result<Vec<Member>, Error> {
        self.get_project(project_id).await?;
        let rows = self.store.list_members(project_id).await.map_err(internal("list the members"))?;
        Ok(rows.into_iter().map(|m| Member { username: m.username, role: m.role, since: m.created_at }).collect())
    }

    /// Makes `username` a member of the project with `role`, or changes their role. Through an
    /// API token, adding them or raising their role needs `your_password` too
    /// ([`access::role_change_needs_password`]).
    pub async fn set_member(
        &self,
        project_id: &str,
        username: &str,
        role: Role,
        your_password: Option<&str>,
    ) -> Result<Member, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::ManageMembers, None, project_id).await?;
        // The project exists; a username naming nobody is bad input (422 on `username`).
        let user = self.user_named(username).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => Error::validation("username", e.message),
            _ => e,
        })?;
        let before = self.store.membership(project_id, &user.id).await.map_err(internal("read a membership"))?;
        if access::role_change_needs_password(before, role) {
            self.confirm_it_is_you(your_password, "giving a member a role").await?;
        }
        let now = self.clock.now();
        let done = self.store.upsert_membership(project_id, &user.id, role, now).await;
        if !done.map_err(internal("set a membership"))? {
            return Err(pergola_domain::project_not_found(project_id));
        }
        self.forget_roles();
        // The share-link proxy decides again who may pass.
        self.proxy_cache.forget_all();
        self.changes.access_changed(&user.id);
        let (kind, message) = match before {
            None => ("member.added", format!("'{}' added as {role}.", user.username)),
            Some(old) if old != role => ("member.changed", format!("'{}' is now {role} (was {old}).", user.username)),
            Some(_) => ("member.changed", format!("'{}' stays {role}.", user.username)),
        };
        self.audit(Some(project_id), None, kind, &user.username, message).await;
        let since =
            self.members(project_id).await?.into_iter().find(|m| m.username == user.username).map_or(now, |m| m.since);
        Ok(Member { username: user.username, role, since })
    }

    pub async fn remove_member(&self, project_id: &str, username: &str) -> Result<(), Error> {
        self.get_project(project_id).await?;
        self.allow(Action::ManageMembers, None, project_id).await?;
        let user = self.user_named(username).await?;
        let removed = self.store.delete_membership(project_id, &user.id).await;
        if !removed.map_err(internal("remove a member"))? {
            return Err(Error::not_found(format!("'{}' is not a member of project '{project_id}'.", user.username)));
        }
        self.forget_roles();
        // The share-link proxy decides again who may pass.
        self.proxy_cache.forget_all();
        self.changes.access_changed(&user.id);
        let message = format!("'{}' removed from the project.", user.username);
        self.audit(Some(project_id), None, "member.removed", &user.username, message).await;
        Ok(())
    }

    // --- Activity

    /// A project's changes, newest first (at most `limit`, up to 500), filtered by stage,
    /// actor and kind when given.
    pub async fn project_activity(
        &self,
        project_id: &str,
        filter: AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::ViewActivity, None, project_id).await?;
        let rows = self
            .store
            .list_audit_events(Some(project_id), &filter, limit.clamp(1, 500))
            .await
            .map_err(internal("list a project's activity"))?;
        Ok(rows
            .into_iter()
            .map(|e| AuditEntry {
                id: e.id,
                at: e.at,
                actor: e.actor,
                address: e.address,
                stage_id: e.stage_id,
                kind: e.kind,
                target: e.target,
                message: e.message,
            })
            .collect())
    }
}

fn user_info(user: &UserRow) -> UserInfo {
    UserInfo {
        username: user.username.clone(),
        is_admin: user.is_admin,
        disabled: user.disabled_at.is_some(),
        created_at: user.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_check_waits_a_bounded_time_for_its_slot_then_is_told_to_retry() {
        let slots = HashingSlots(Arc::new(tokio::sync::Semaphore::new(1)));
        let wait = std::time::Duration::from_millis(50);
        let held = slot_of(&slots, wait).await.unwrap();
        let busy = slot_of(&slots, wait).await.unwrap_err();
        assert_eq!((busy.kind, busy.retry_after), (ErrorKind::TooManyRequests, Some(HASHING_RETRY_SECS)));
        drop(held);
        assert!(slot_of(&slots, wait).await.is_ok(), "the slot is free again");
    }

    #[test]
    fn one_address_waits_in_a_few_places_of_the_queue_and_others_still_get_theirs() {
        let waiting = CountedPlaces::default();
        let flood: Vec<Place> = (0..3).map(|_| waiting_place(&waiting, "203.0.113.9", 3).unwrap()).collect();
        let refused = waiting_place(&waiting, "203.0.113.9", 3).expect_err("a fourth place refused");
        assert_eq!((refused.kind, refused.retry_after), (ErrorKind::TooManyRequests, Some(HASHING_RETRY_SECS)));
        assert!(waiting_place(&waiting, "198.51.100.7", 3).is_ok(), "another address has its places");
        drop(flood);
        assert_eq!(waiting.keys(), 0, "given back");
        assert!(waiting_place(&waiting, "203.0.113.9", 3).is_ok(), "the address may wait again");
    }
}
