//! Test support (feature `testing`): a fresh store per test, on SQLite (a temp file) or on
//! PostgreSQL (a temp database created from `PERGOLA_TEST_POSTGRES_URL`), with a manual clock
//! and a fixed key for sealing secrets.

use crate::services::{Acting, Caller};
use crate::{connect, ManualClock, Services, Store};
use chrono::{TimeZone, Utc};
use pergola_domain::wire::NewUser;
use pergola_domain::Role;
use sqlx::{Connection, Executor, PgConnection};
use std::path::PathBuf;
use std::sync::Arc;

/// A store of its own with services on a manual clock (2026-11-28 12:00 UTC at the start),
/// and an administrator to act as.
pub struct Env {
    pub services: Services,
    /// The services as the administrator `admin` (password [`ADMIN_PASSWORD`]).
    pub admin: Acting,
    pub clock: ManualClock,
    /// Where uploaded builds go (`<temp dir>/artifacts`, removed with the environment).
    pub artifacts: PathBuf,
    cleanup: Cleanup,
}

/// The artifact limits of the test environments: the real ones (tests that need smaller ones
/// make their own [`crate::artifacts::Artifacts`]).
pub fn artifact_limits() -> crate::artifacts::ArtifactLimits {
    crate::artifacts::ArtifactLimits::default()
}

/// The password of the test environments' administrator `admin`.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The password of every user [`Env::user`] creates.
pub const USER_PASSWORD: &str = "user-password-1";

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

/// Where the PostgreSQL tests connect to create their own databases.
pub fn postgres_admin_url() -> String {
    std::env::var("PERGOLA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap())
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn env(store: Arc<dyn Store>, cleanup: Cleanup) -> Env {
    let clock = clock();
    // Beside the SQLite file (one temp dir per test), or a temp dir of its own.
    let artifacts = match &cleanup {
        Cleanup::Dir(dir) => dir.join("artifacts"),
        Cleanup::Database { .. } => std::env::temp_dir().join(format!("pergola-test-artifacts-{}", unique())),
    };
    // Secrets are sealed at rest, as on a real server.
    let services = Services::new(store, Arc::new(clock.clone()))
        .with_secrets(crate::SecretBox::new([42; 32]))
        .with_artifacts(crate::artifacts::Artifacts::new(&artifacts, artifact_limits()));
    services.prepare_first_run(Some(("admin", ADMIN_PASSWORD))).await.unwrap();
    let caller = services.sign_in("admin", ADMIN_PASSWORD, "127.0.0.1").await.unwrap();
    let admin = services.acting(caller);
    Env { services, admin, clock, artifacts, cleanup }
}

pub async fn sqlite_env() -> Env {
    let dir = std::env::temp_dir().join(format!("pergola-test-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = connect(&format!("sqlite://{}/pergola.db", dir.display())).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    env(store, Cleanup::Dir(dir)).await
}

pub async fn postgres_env() -> Env {
    let admin_url = postgres_admin_url();
    let name = format!("pergola_test_{}", unique());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be running for the store tests ({admin_url}): {e}"));
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    admin.close().await.ok();
    let (base, _) = admin_url.rsplit_once('/').expect("URL with a database name");
    let store = connect(&format!("{base}/{name}")).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    env(store, Cleanup::Database { admin_url, name }).await
}

/// Uploads a build made of the files in `dir` with `manifest` as its `pergola.toml` (packed
/// with tar + gzip in memory), as `acting`: what the CLI and the dashboard do.
pub async fn upload(
    acting: &Acting,
    project: &str,
    manifest: &str,
    dir: impl AsRef<std::path::Path>,
) -> Result<pergola_domain::Build, pergola_domain::Error> {
    let packed = crate::artifacts::pack_dir(dir.as_ref(), manifest).expect("pack the build's directory");
    acting.upload_build(project, crate::artifacts::Compression::Gzip, None, &packed[..]).await
}

/// A tar + gzip archive of regular files: (path, contents, mode).
pub fn archive(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append_data(&mut header, path, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Uploads a build holding only its `pergola.toml` (`manifest`).
pub async fn upload_manifest(
    acting: &Acting,
    project: &str,
    manifest: &str,
) -> Result<pergola_domain::Build, pergola_domain::Error> {
    let packed = archive(&[(crate::artifacts::MANIFEST_FILE, manifest.as_bytes(), 0o644)]);
    acting.upload_build(project, crate::artifacts::Compression::Gzip, None, &packed[..]).await
}

impl Env {
    /// `services` (the same store, another runtime or clock) as the administrator.
    pub fn as_admin(&self, services: &Services) -> Acting {
        services.acting(self.admin.caller().clone())
    }

    /// A new user `username` (password [`USER_PASSWORD`]), not an administrator.
    pub async fn user(&self, username: &str) -> Caller {
        let input =
            NewUser { username: username.into(), password: USER_PASSWORD.into(), admin: false, your_password: None };
        self.admin.create_user(input).await.unwrap();
        self.services.sign_in(username, USER_PASSWORD, "127.0.0.1").await.unwrap()
    }

    /// `username` (with `password`) signed in to the dashboard: acting through a session of
    /// their own, as a browser does (what only a dashboard session may do needs one).
    pub async fn in_a_session(&self, services: &Services, username: &str, password: &str) -> Acting {
        let session = services.sign_in_session(username, password, "127.0.0.1").await.unwrap();
        services.acting(services.session_caller(&session.secret, Some("127.0.0.1")).await.unwrap().unwrap())
    }

    /// A new user `username` with `role` in `project`, acting.
    pub async fn member(&self, username: &str, project: &str, role: Role) -> Acting {
        let caller = self.user(username).await;
        self.admin.set_member(project, username, role, None).await.unwrap();
        self.services.acting(caller)
    }

    /// The name of the PostgreSQL database of this environment (`None` on SQLite).
    pub fn postgres_database(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Database { name, .. } => Some(name),
            Cleanup::Dir(_) => None,
        }
    }

    /// Removes the temp file or drops the temp database.
    pub async fn cleanup(self) {
        drop(self.admin);
        drop(self.services);
        let _ = crate::artifacts::remove_tree(&self.artifacts);
        match self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            }
        }
    }
}
