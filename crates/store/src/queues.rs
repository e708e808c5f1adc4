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
        self.flush().await?;
        let row = sqlx::query(&sql).bind(resource_type).bind(id).fetch_optional(self.conn().await?).await?;
        Ok(row.as_ref().map(resource_from_row))
    }

    /// The open (`requested`) Task owned by `HealthcareService/{queue}` that is due first (ties by
    /// id; Tasks without a due time last), locked for this transaction. On PostgreSQL rows other
    /// transactions hold are skipped (`SKIP LOCKED`), so concurrent "claim next" calls take
    /// different referrals. Like a queue search, it reads the queue's open Tasks from the worklist
    /// in due order and stops at the first.
    pub async fn next_in_queue(&mut self, queue: &str) -> Result<Option<StoredResource>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF r SKIP LOCKED",
        };
        let open_in_queue = format!(
            "SELECT {COLUMNS} FROM task_worklist q JOIN resources r ON r.resource_type = 'Task' AND r.id = q.id \
             WHERE q.status = 'requested' AND q.owner = $1 AND r.deleted = 0"
        );
        let with_due = format!("{open_in_queue} AND q.due IS NOT NULL ORDER BY q.due ASC, q.id ASC LIMIT 1{lock}");
        let without_due = format!("{open_in_queue} AND q.due IS NULL ORDER BY q.id ASC LIMIT 1{lock}");
        self.flush().await?;
        let owner = format!("HealthcareService/{queue}");
        for sql in [with_due, without_due] {
            let row = sqlx::query(&sql).bind(&owner).fetch_optional(self.conn().await?).await?;
            if let Some(row) = row {
                return Ok(Some(resource_from_row(&row)));
            }
        }
        Ok(None)
    }
}
