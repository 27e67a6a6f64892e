//! Production: PostgreSQL.

use super::StoreResult;
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
        Ok(Self { pool })
    }
}
