//! What a referral's specialist has not seen yet: the partner's last change of each referral Task
//! (`task_updates`) and who opened which Task when (`task_openings`). The worklist marks a Task
//! "updated" while its change is newer than its assigned specialist's last opening.

use sqlx::Row;

use crate::{Store, StoreError, Tx};

/// The partner's last change of a Task and every recorded opening of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAttention {
    pub task_id: String,
    /// Microseconds since the epoch.
    pub updated_at: i64,
    /// `information-received`, `amended` or `attachment`.
    pub kind: String,
    /// (reader, microseconds) of every reader who opened the Task.
    pub openings: Vec<(String, i64)>,
}

impl TaskAttention {
    /// Whether `reader` has opened the Task since its last change.
    pub fn seen_by(&self, reader: &str) -> bool {
        self.openings.iter().any(|(who, at)| who == reader && *at >= self.updated_at)
    }
}

impl Tx {
    /// Records a change by the partner of Task `task_id`, in the transaction that makes it.
    pub async fn record_partner_update(&mut self, task_id: &str, kind: &str, at: i64) -> Result<(), StoreError> {
        self.flush().await?;
        sqlx::query(
            "INSERT INTO task_updates (task_id, updated_at, kind) VALUES ($1, $2, $3) \
             ON CONFLICT (task_id) DO UPDATE SET updated_at = excluded.updated_at, kind = excluded.kind",
        )
        .bind(task_id)
        .bind(at)
        .bind(kind)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Records that `reader` opened Task `task_id` at `at` (the last opening is kept).
    pub async fn record_opening(&self, task_id: &str, reader: &str, at: i64) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Isolation::RowLocking).await?;
        sqlx::query(
            "INSERT INTO task_openings (task_id, reader, opened_at) VALUES ($1, $2, $3) \
             ON CONFLICT (task_id, reader) DO UPDATE SET opened_at = excluded.opened_at",
        )
        .bind(task_id)
        .bind(reader)
        .bind(at)
        .execute(tx.conn().await?)
        .await?;
        tx.commit().await
    }

    /// The partner changes of the given Tasks with their openings; Tasks the partner never
    /// changed are left out.
    pub async fn task_attention(&self, task_ids: &[String]) -> Result<Vec<TaskAttention>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        // `$n` placeholders: both backends take them.
        let list: Vec<String> = (1..=task_ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT u.task_id, u.updated_at, u.kind, o.reader, o.opened_at FROM task_updates u \
             LEFT JOIN task_openings o ON o.task_id = u.task_id WHERE u.task_id IN ({}) ORDER BY u.task_id",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in task_ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut found: Vec<TaskAttention> = Vec::new();
        for row in rows {
            let task_id: String = row.get(0);
            if found.last().is_none_or(|last| last.task_id != task_id) {
                found.push(TaskAttention { task_id, updated_at: row.get(1), kind: row.get(2), openings: Vec::new() });
            }
            let (reader, opened_at): (Option<String>, Option<i64>) = (row.get(3), row.get(4));
            if let (Some(reader), Some(opened_at), Some(last)) = (reader, opened_at, found.last_mut()) {
                last.openings.push((reader, opened_at));
            }
        }
        Ok(found)
    }
}
