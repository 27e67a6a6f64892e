//! The embedded default: SQLite, one file, WAL journal.

use super::{Store, StoreResult};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pub(super) pool: sqlx::SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(sqlx::Error::from)?;
        let store = Self { pool };
        store.fill_name_keys().await?;
        Ok(store)
    }

    pub(super) async fn notify(&self, _from: &str) -> StoreResult<()> {
        Ok(())
    }

    pub(super) async fn notify_on(&self, _channel: &str, _payload: &str) -> StoreResult<()> {
        Ok(())
    }

    pub(super) async fn listener(&self) -> StoreResult<Option<sqlx::postgres::PgListener>> {
        Ok(None)
    }

    /// One server per SQLite file: its own per-stage lock is the turn.
    pub(super) async fn turn(
        &self,
        _project_id: &str,
        _stage_id: &str,
        _wait: std::time::Duration,
    ) -> StoreResult<super::StageTurn> {
        Ok(super::StageTurn(None))
    }
}
