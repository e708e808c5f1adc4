//! The chunks of raw Binary content (see migration 0007): written in the transaction that creates
//! the Binary, read back one chunk at a time.

use sqlx::Row;

use crate::{Store, StoreError, Tx};

impl Tx {
    /// Stores chunk `seq` (0, 1, 2...) of Binary `id`'s content.
    pub async fn put_binary_chunk(&mut self, id: &str, seq: i64, data: &[u8]) -> Result<(), StoreError> {
        self.flush().await?;
        sqlx::query("INSERT INTO binary_content (binary_id, seq, data) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(seq)
            .bind(data.to_vec())
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Chunk `seq` of Binary `id`'s content; `None` past the last one.
    pub async fn binary_chunk(&self, id: &str, seq: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT data FROM binary_content WHERE binary_id = $1 AND seq = $2")
            .bind(id)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}
