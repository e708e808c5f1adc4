//! Client assertions already used, shared by every instance (SMART `jti` replay protection).

use crate::{Isolation, Store, StoreError};

impl Store {
    /// Records a client assertion key (partner and `jti`) as used until `expires_at` (Unix
    /// seconds): `true` when it was not in use, `false` for a replay. Expired keys are forgotten.
    pub async fn record_assertion(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin(Isolation::RowLocking).await?;
        sqlx::query("DELETE FROM used_assertions WHERE expires_at <= $1").bind(now).execute(tx.conn().await?).await?;
        let inserted = sqlx::query(
            "INSERT INTO used_assertions (assertion_key, expires_at) VALUES ($1, $2) ON CONFLICT (assertion_key) DO NOTHING",
        )
        .bind(key)
        .bind(expires_at)
        .execute(tx.conn().await?)
        .await
        ?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }
}
