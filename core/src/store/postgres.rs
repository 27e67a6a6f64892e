//! Production: PostgreSQL.

use super::{Store, StoreError, StoreResult};
use std::time::Duration;

pub struct PgStore {
    pub(super) pool: sqlx::PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(60))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(sqlx::Error::from)?;
        let store = Self { pool };
        store.fill_name_keys().await?;
        Ok(store)
    }

    pub(super) async fn notify(&self, from: &str) -> StoreResult<()> {
        self.notify_on(super::STAGE_NOTICES, from).await
    }

    pub(super) async fn notify_on(&self, channel: &str, payload: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn listener(&self) -> StoreResult<Option<sqlx::postgres::PgListener>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen_all([super::STAGE_NOTICES, super::CHANGE_NOTICES]).await?;
        Ok(Some(listener))
    }

    /// A transaction holding the stage's advisory lock (waiting for it while another server
    /// holds it); committing or dropping the transaction lets it go.
    pub(super) async fn turn(
        &self,
        project_id: &str,
        stage_id: &str,
        wait: std::time::Duration,
    ) -> StoreResult<super::StageTurn> {
        let mut tx = self.pool.begin().await?;
        // The turn is held while the cluster's API server is asked, which may be slow: not a
        // stale session.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *tx).await?;
        // SET takes no parameters; a whole number of milliseconds (at least 1: 0 would be no
        // limit).
        let wait_ms = wait.as_millis().clamp(1, i32::MAX as u128);
        sqlx::query(&format!("SET LOCAL lock_timeout = {wait_ms}")).execute(&mut *tx).await?;
        let locked = sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("pergola-stage:{project_id}/{stage_id}"))
            .execute(&mut *tx)
            .await;
        match locked {
            Ok(_) => Ok(super::StageTurn(Some(tx))),
            // lock_not_available: the wait ran out.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => Err(StoreError::Busy),
            Err(e) => Err(e.into()),
        }
    }
}
