//! Test support (feature `testing`): a fresh store per test, on SQLite (a temp file) or on
//! PostgreSQL (a temp database created from `PERGOLA_TEST_POSTGRES_URL`), with a manual clock
//! and a fixed key for sealing secrets.

use crate::{connect, ManualClock, Services, Store};
use chrono::{TimeZone, Utc};
use sqlx::{Connection, Executor, PgConnection};
use std::path::PathBuf;
use std::sync::Arc;

/// A store of its own with services on a manual clock (2026-11-28 12:00 UTC at the start).
pub struct Env {
    pub services: Services,
    pub clock: ManualClock,
    cleanup: Cleanup,
}

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

fn env(store: Arc<dyn Store>, cleanup: Cleanup) -> Env {
    let clock = clock();
    // Secrets are sealed at rest, as on a real server.
    let services = Services::new(store, Arc::new(clock.clone())).with_secrets(crate::SecretBox::new([42; 32]));
    Env { services, clock, cleanup }
}

pub async fn sqlite_env() -> Env {
    let dir = std::env::temp_dir().join(format!("pergola-test-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = connect(&format!("sqlite://{}/pergola.db", dir.display())).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    env(store, Cleanup::Dir(dir))
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
    env(store, Cleanup::Database { admin_url, name })
}

impl Env {
    /// Removes the temp file or drops the temp database.
    pub async fn cleanup(self) {
        drop(self.services);
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
