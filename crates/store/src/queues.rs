//! Queue work that needs row locks: reading a Task to change it, and finding the most urgent open
//! referral of a queue that no one else is claiming at this moment.

use crate::read::resource_from_row;
use crate::{Backend, StoreError, StoredResource, Tx};

const COLUMNS: &str = "r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.content";

impl Tx {
    /// Reads a resource and, on PostgreSQL, locks its row until the transaction ends, so that of
    /// two concurrent changes (two claims of one referral) the second waits and then sees the first.
    /// SQLite write transactions are already exclusive.
    pub async fn read_for_update(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!("SELECT {COLUMNS} FROM resources r WHERE r.resource_type = $1 AND r.id = $2{lock}");
        let row = sqlx::query(&sql)
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut *self.inner)
            .await
            .map_err(|err| StoreError::from_sqlx(err, self.backend))?;
        Ok(row.as_ref().map(resource_from_row))
    }

    /// The open (`requested`) Task owned by `HealthcareService/{queue}` that is due first, locked
    /// for this transaction. On PostgreSQL rows other transactions hold are skipped
    /// (`SKIP LOCKED`), so concurrent "claim next" calls take different referrals.
    pub async fn next_in_queue(&mut self, queue: &str) -> Result<Option<StoredResource>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF r SKIP LOCKED",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM resources r \
             JOIN idx_reference o ON o.resource_type = r.resource_type AND o.id = r.id AND o.param = 'owner' \
                 AND o.target_type = 'HealthcareService' AND o.target_id = $1 \
             JOIN idx_token s ON s.resource_type = r.resource_type AND s.id = r.id AND s.param = 'status' AND s.code = 'requested' \
             WHERE r.resource_type = 'Task' AND r.deleted = 0 \
             ORDER BY (SELECT MIN(d.low) FROM idx_date d WHERE d.resource_type = r.resource_type AND d.id = r.id AND d.param = 'due') ASC, \
                 r.last_updated ASC, r.id ASC \
             LIMIT 1{lock}"
        );
        let row = sqlx::query(&sql)
            .bind(queue)
            .fetch_optional(&mut *self.inner)
            .await
            .map_err(|err| StoreError::from_sqlx(err, self.backend))?;
        Ok(row.as_ref().map(resource_from_row))
    }
}
