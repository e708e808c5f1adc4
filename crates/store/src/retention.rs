//! Retention: deleting, for good, what rex keeps only for a while (scorecard submissions, dead
//! notifications, AuditEvents). Each call deletes at most `limit` of the oldest rows, so one
//! transaction stays short; the caller repeats while a call deletes a full batch.

use sqlx::Row;

use crate::{StoreError, Tx};

/// The tables holding a resource's versions and search index rows, deleted with it.
const RESOURCE_TABLES: &[&str] = &[
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "resource_history",
    "resources",
];

impl Tx {
    /// Deletes up to `limit` submissions received before `before` (microseconds), with their
    /// issues; returns how many submissions.
    pub async fn purge_submissions(&mut self, before: i64, limit: i64) -> Result<u64, StoreError> {
        self.flush().await?;
        // Both statements pick the same oldest rows: the same condition, order and limit.
        let oldest = "SELECT id FROM submissions WHERE received < $1 ORDER BY id LIMIT $2";
        sqlx::query(&format!("DELETE FROM submission_issues WHERE submission_id IN ({oldest})"))
            .bind(before)
            .bind(limit)
            .execute(self.conn().await?)
            .await?;
        let deleted = sqlx::query(&format!("DELETE FROM submissions WHERE id IN ({oldest})"))
            .bind(before)
            .bind(limit)
            .execute(self.conn().await?)
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Deletes up to `limit` dead notifications queued before `before`; returns how many.
    pub async fn purge_dead_notifications(&mut self, before: i64, limit: i64) -> Result<u64, StoreError> {
        self.flush().await?;
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE status = 'dead' AND created < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(self.conn().await?)
        .await?;
        Ok(deleted.rows_affected())
    }

    /// Deletes up to `limit` resources of `resource_type` last updated before `before`, with
    /// every version and index row, leaving no trace (unlike a FHIR delete, which keeps history);
    /// returns how many resources.
    pub async fn purge_resources(&mut self, resource_type: &str, before: i64, limit: i64) -> Result<u64, StoreError> {
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT id FROM resources WHERE resource_type = $1 AND last_updated < $2 ORDER BY last_updated LIMIT $3",
        )
        .bind(resource_type)
        .bind(before)
        .bind(limit)
        .fetch_all(self.conn().await?)
        .await?;
        let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        for table in RESOURCE_TABLES {
            let sql = format!("DELETE FROM {table} WHERE resource_type = $1 AND id IN ({})", list.join(", "));
            let mut query = sqlx::query(&sql).bind(resource_type);
            for id in &ids {
                query = query.bind(id.as_str());
            }
            query.execute(self.conn().await?).await?;
        }
        Ok(ids.len() as u64)
    }
}
