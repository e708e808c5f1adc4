//! Writes: every version goes to `resource_history`, the newest to `resources`, and the search index
//! rows of the resource (and a Task's [`worklist`] row) are replaced, all inside the caller's [`Tx`].
//!
//! A transaction Bundle creates dozens of resources, each with a history row and a dozen index rows.
//! Sent one statement per row, that was hundreds of round trips per Bundle while SQLite's single
//! writer waited. So the rows a create adds are kept in [`Pending`] and sent as a few multi-row
//! INSERTs when the transaction next needs the database: before any read or other write through
//! the same [`Tx`] (so it always sees its own writes) and before commit.

use std::collections::HashSet;

use rex_fhir::search::{IndexEntry, IndexValue, SearchRegistry};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use crate::read::read_current;
use crate::referrals::{self, ReferralRecord};
use crate::rows::{AnyQuery, placeholders};
use crate::worklist::{self, WorklistRow};
use crate::{Backend, StoreError, StoredResource, Tx, format_instant, now_micros};

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The resource was deleted; this is the version that records the deletion.
    Deleted(i64),
    /// It was deleted before; nothing changed.
    AlreadyDeleted,
    NotFound,
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The resource did not exist (or was deleted) and now does.
    Created,
    /// A new version was written.
    Updated,
    /// The content equals the current version; nothing was written.
    Unchanged,
}

/// The index tables, and the columns each holds after (resource_type, id, param).
const INDEX_TABLES: &[&str] =
    &["idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri"];

/// Values bound in one multi-row INSERT at most: below SQLite's limit of 32,766 (PostgreSQL's is
/// 65,535). Every statement is a round trip to the writer's thread, so a Bundle's rows of one
/// table go in one statement unless they are thousands.
const MAX_BINDS: usize = 30_000;

/// Values of one `resources` row and of one `resource_history` row.
const RESOURCE_COLUMNS: usize = 6;
const HISTORY_COLUMNS: usize = 7;

/// Rows per multi-row INSERT of rows of `columns` values.
fn rows_per_insert(columns: usize) -> usize {
    MAX_BINDS / columns
}

/// Rows written through a [`Tx`] and not yet sent to the database.
#[derive(Default)]
pub(crate) struct Pending {
    /// New rows of `resources` (version 1), with the error their id being taken means.
    resources: Vec<(NewVersion, Taken)>,
    /// The `(type, id)` of those rows: a Bundle of thousands of entries asks for each new one.
    resource_ids: HashSet<(String, String)>,
    history: Vec<NewVersion>,
    index: Vec<(String, String, IndexEntry)>,
    worklist: Vec<WorklistRow>,
    /// New referral identities and when they were received (see `referrals.rs`).
    pub(crate) referrals: Vec<(ReferralRecord, i64)>,
}

/// One version to insert.
struct NewVersion {
    resource_type: String,
    id: String,
    version: i64,
    last_updated: i64,
    method: &'static str,
    content: Option<String>,
}

/// What it means when the id of a new `resources` row turns out to be taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// A create: the id is someone else's.
    AlreadyExists,
    /// An update that found no resource: a concurrent transaction created it first; running again
    /// makes this an update of it.
    Retry,
}

impl Pending {
    fn has_resource(&self, resource_type: &str, id: &str) -> bool {
        self.resource_ids.contains(&(resource_type.to_string(), id.to_string()))
    }

    /// Whether any queued row is of a resource of this type (a Task's worklist row comes with its
    /// resource and index rows).
    pub(crate) fn holds_type(&self, resource_type: &str) -> bool {
        self.resources.iter().any(|(row, _)| row.resource_type == resource_type)
            || self.history.iter().any(|row| row.resource_type == resource_type)
            || self.index.iter().any(|(t, _, _)| t == resource_type)
    }
}

impl Tx {
    /// Creates `resource_type/id` at version 1. Fails with [`StoreError::AlreadyExists`] when the
    /// id is taken (even by a deleted resource).
    pub async fn create(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
    ) -> Result<StoredResource, StoreError> {
        // Whether the id is taken in the database is checked when the row is inserted (see flush).
        if self.pending.has_resource(resource_type, id) {
            return Err(StoreError::AlreadyExists(format!("{resource_type}/{id}")));
        }
        self.write_version(resource_type, id, 1, "POST", resource, Taken::AlreadyExists).await
    }

    /// Writes a new version of `resource_type/id`, creating it when absent or deleted, and writing
    /// nothing when the content equals the current version. With `if_match`, the current version
    /// must equal it. Returns the current version after the call and what changed.
    pub async fn update(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> Result<(StoredResource, Change), StoreError> {
        self.flush().await?;
        let backend = self.backend;
        let current = current_version(self.conn().await?, backend, resource_type, id).await?;
        if let Some(expected) = if_match {
            let live = current.filter(|(_, deleted)| !deleted).map(|(version, _)| version);
            if live != Some(expected) {
                return Err(StoreError::VersionConflict { expected, current: live.unwrap_or(0) });
            }
        }
        if let Some((_, false)) = current
            && let Some(stored) = read_current(self.conn().await?, resource_type, id).await?
            && same_content(stored.content.as_deref(), &resource)
        {
            // An update that changes nothing makes no new version; re-sent referrals rely on it.
            return Ok((stored, Change::Unchanged));
        }
        let created = current.is_none_or(|(_, deleted)| deleted);
        let version = current.map_or(1, |(version, _)| version + 1);
        let method = if created { "POST" } else { "PUT" };
        let stored = self.write_version(resource_type, id, version, method, resource, Taken::Retry).await?;
        Ok((stored, if created { Change::Created } else { Change::Updated }))
    }

    /// Deletes `resource_type/id`, keeping its history. With `if_match`, the current version must
    /// equal it.
    pub async fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<DeleteOutcome, StoreError> {
        self.flush().await?;
        let backend = self.backend;
        let Some((version, deleted)) = current_version(self.conn().await?, backend, resource_type, id).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if deleted {
            return Ok(DeleteOutcome::AlreadyDeleted);
        }
        if let Some(expected) = if_match.filter(|expected| *expected != version) {
            return Err(StoreError::VersionConflict { expected, current: version });
        }
        let version = version + 1;
        let now = now_micros();
        let conn = self.conn().await?;
        sqlx::query("UPDATE resources SET version_id = $1, last_updated = $2, deleted = 1, content = NULL WHERE resource_type = $3 AND id = $4")
            .bind(version)
            .bind(now)
            .bind(resource_type)
            .bind(id)
            .execute(&mut *conn)
            .await
            ?;
        delete_index(conn, resource_type, id).await?;
        self.pending.history.push(NewVersion {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            method: "DELETE",
            content: None,
        });
        Ok(DeleteOutcome::Deleted(version))
    }

    /// Writes version `version` (1: a new row of `resources`, queued; later: the row is updated
    /// now and its index rows removed) and queues its history and index rows.
    async fn write_version(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        method: &'static str,
        mut resource: Value,
        taken: Taken,
    ) -> Result<StoredResource, StoreError> {
        let now = now_micros();
        stamp(&mut resource, id, version, now);
        let content = resource.to_string();
        let entries = SearchRegistry::r4().extract(resource_type, &resource).map_err(StoreError::TooCostly)?;
        if resource_type == "Task" {
            self.pending.worklist.extend(WorklistRow::of_task(id, &entries));
        }
        let new_version = || NewVersion {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            method,
            content: Some(content.clone()),
        };
        if version == 1 {
            self.pending.resource_ids.insert((resource_type.to_string(), id.to_string()));
            self.pending.resources.push((new_version(), taken));
        } else {
            let conn = self.conn().await?;
            let updated: Result<(), sqlx::Error> = async {
                sqlx::query("UPDATE resources SET version_id = $1, last_updated = $2, deleted = 0, content = $3 WHERE resource_type = $4 AND id = $5")
                    .bind(version)
                    .bind(now)
                    .bind(&content)
                    .bind(resource_type)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                delete_index(conn, resource_type, id).await
            }
            .await;
            updated?;
        }
        self.pending.history.push(new_version());
        self.pending.index.extend(entries.into_iter().map(|entry| (resource_type.to_string(), id.to_string(), entry)));
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id: version,
            last_updated: now,
            deleted: false,
            content: Some(content),
        })
    }

    /// Sends the pending rows: `resources` first (its primary key is what can refuse them), then
    /// history, index, worklist and referral rows together (see [`run_inserts`]).
    pub(crate) async fn flush(&mut self) -> Result<(), StoreError> {
        let pending = &self.pending;
        if pending.resources.is_empty()
            && pending.history.is_empty()
            && pending.index.is_empty()
            && pending.worklist.is_empty()
            && pending.referrals.is_empty()
        {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let backend = self.backend;
        let conn = self.conn().await?;
        for chunk in pending.resources.chunks(rows_per_insert(RESOURCE_COLUMNS)) {
            insert_resources(conn, backend, chunk).await?;
        }
        let by_table = index_rows_by_table(&pending.index);
        let mut inserts: Vec<Insert> = Vec::new();
        inserts.extend(pending.history.chunks(rows_per_insert(HISTORY_COLUMNS)).map(Insert::History));
        for (table, columns, rows) in &by_table {
            let chunks = rows.chunks(rows_per_insert(index_row_width(columns)));
            inserts.extend(chunks.map(|rows| Insert::Index { table, columns, rows }));
        }
        inserts.extend(pending.worklist.chunks(rows_per_insert(worklist::COLUMNS)).map(Insert::Worklist));
        inserts.extend(pending.referrals.chunks(rows_per_insert(referrals::COLUMNS)).map(Insert::Referrals));
        run_inserts(conn, backend, &inserts).await.map_err(StoreError::from)
    }
}

/// Inserts new `resources` rows. Rows whose id is taken are skipped by the database and reported
/// by what [`Taken`] says; the transaction then fails as a whole.
async fn insert_resources(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[(NewVersion, Taken)],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content) VALUES {} \
         ON CONFLICT (resource_type, id) DO NOTHING RETURNING resource_type, id",
        placeholders(backend, rows.len(), RESOURCE_COLUMNS)
    );
    let mut query = sqlx::query(&sql);
    for (row, _) in rows {
        query = query
            .bind(row.resource_type.as_str())
            .bind(row.id.as_str())
            .bind(row.version)
            .bind(row.last_updated)
            .bind(0_i64)
            .bind(row.content.as_deref());
    }
    let inserted = query.fetch_all(&mut *conn).await?;
    if inserted.len() == rows.len() {
        return Ok(());
    }
    let inserted: Vec<(String, String)> = inserted.iter().map(|row| (row.get(0), row.get(1))).collect();
    let (row, taken) = rows
        .iter()
        .find(|(row, _)| !inserted.iter().any(|(t, i)| *t == row.resource_type && *i == row.id))
        .expect("a row was not inserted");
    Err(match taken {
        Taken::AlreadyExists => StoreError::AlreadyExists(format!("{}/{}", row.resource_type, row.id)),
        Taken::Retry => StoreError::Retryable,
    })
}

/// Whether a stored version and a new resource say the same, apart from the version and time
/// the store stamps.
fn same_content(stored: Option<&str>, resource: &Value) -> bool {
    let Some(Ok(stored)) = stored.map(serde_json::from_str::<Value>) else { return false };
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                value.as_object_mut().map(|object| object.remove("meta"));
            }
        }
        value
    };
    strip(&stored) == strip(resource)
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`.
fn stamp(resource: &mut Value, id: &str, version: i64, now: i64) {
    let Some(object) = resource.as_object_mut() else { return };
    object.insert("id".into(), json!(id));
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["versionId"] = json!(version.to_string());
    meta["lastUpdated"] = json!(format_instant(now));
}

/// The current version and deleted flag of a resource, if it was ever written. On PostgreSQL the row
/// stays locked until the transaction ends, so no concurrent writer can slip a version in between.
async fn current_version(
    conn: &mut AnyConnection,
    backend: Backend,
    resource_type: &str,
    id: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => "SELECT version_id, deleted FROM resources WHERE resource_type = $1 AND id = $2",
        Backend::Postgres => {
            "SELECT version_id, deleted FROM resources WHERE resource_type = $1 AND id = $2 FOR UPDATE"
        }
    };
    let row = sqlx::query(sql).bind(resource_type).bind(id).fetch_optional(conn).await?;
    Ok(row.map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1) != 0)))
}

async fn delete_index(conn: &mut AnyConnection, resource_type: &str, id: &str) -> Result<(), sqlx::Error> {
    for table in INDEX_TABLES {
        sqlx::query(&format!("DELETE FROM {table} WHERE resource_type = $1 AND id = $2"))
            .bind(resource_type)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    if resource_type == "Task" {
        sqlx::query("DELETE FROM task_worklist WHERE id = $1").bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A value bound into an index row.
enum Cell<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Real(f64),
}

/// The table and the value columns of an index entry.
fn index_row(value: &IndexValue) -> (&'static str, &'static str, Vec<Cell<'_>>) {
    match value {
        IndexValue::String { normalized, exact } => {
            ("idx_string", "normalized, exact", vec![Cell::Text(Some(normalized)), Cell::Text(Some(exact))])
        }
        IndexValue::Token { system, code } => {
            ("idx_token", "system, code", vec![Cell::Text(system.as_deref()), Cell::Text(code.as_deref())])
        }
        IndexValue::Reference { target_type, target_id, url } => (
            "idx_reference",
            "target_type, target_id, url",
            vec![Cell::Text(target_type.as_deref()), Cell::Text(target_id.as_deref()), Cell::Text(Some(url))],
        ),
        IndexValue::Date { low, high } => ("idx_date", "low, high", vec![Cell::Int(*low), Cell::Int(*high)]),
        IndexValue::Number { value } => ("idx_number", "value", vec![Cell::Real(*value)]),
        IndexValue::Quantity { value, system, code, unit } => (
            "idx_quantity",
            "value, system, code, unit",
            vec![
                Cell::Real(*value),
                Cell::Text(system.as_deref()),
                Cell::Text(code.as_deref()),
                Cell::Text(unit.as_deref()),
            ],
        ),
        IndexValue::Uri { value } => ("idx_uri", "value", vec![Cell::Text(Some(value))]),
    }
}

/// Values of one row of an index table with these value columns (after resource_type, id, param).
fn index_row_width(columns: &str) -> usize {
    3 + columns.split(", ").count()
}

/// One row of an index table: resource_type, id, param and the value cells.
type IndexRow<'a> = (&'a str, &'a str, &'a str, Vec<Cell<'a>>);

/// The rows of each index table: (table, value columns, rows).
type TableRows<'a> = (&'static str, &'static str, Vec<IndexRow<'a>>);

fn index_rows_by_table(entries: &[(String, String, IndexEntry)]) -> Vec<TableRows<'_>> {
    let mut by_table: Vec<TableRows> = Vec::new();
    for (resource_type, id, entry) in entries {
        let (table, columns, cells) = index_row(&entry.value);
        let row = (resource_type.as_str(), id.as_str(), entry.param.as_str(), cells);
        match by_table.iter_mut().find(|(t, _, _)| *t == table) {
            Some((_, _, rows)) => rows.push(row),
            None => by_table.push((table, columns, vec![row])),
        }
    }
    by_table
}

/// One multi-row INSERT of queued rows after those of `resources`. Of these only a referral's
/// identity can be refused (its primary key), which fails the transaction as retryable.
enum Insert<'a> {
    History(&'a [NewVersion]),
    Index { table: &'static str, columns: &'static str, rows: &'a [IndexRow<'a>] },
    Worklist(&'a [WorklistRow]),
    Referrals(&'a [(ReferralRecord, i64)]),
}

impl Insert<'_> {
    fn sql(&self, backend: Backend) -> String {
        match self {
            Insert::History(rows) => format!(
                "INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content) VALUES {}",
                placeholders(backend, rows.len(), HISTORY_COLUMNS)
            ),
            Insert::Index { table, columns, rows } => format!(
                "INSERT INTO {table} (resource_type, id, param, {columns}) VALUES {}",
                placeholders(backend, rows.len(), index_row_width(columns))
            ),
            Insert::Worklist(rows) => worklist::insert_sql(backend, rows.len()),
            Insert::Referrals(rows) => referrals::insert_sql(backend, rows.len()),
        }
    }

    /// Binds the values in the order of [`Insert::sql`]'s placeholders. Text is bound as `&str`,
    /// which the driver borrows; a `&String` would be copied.
    fn bind<'q>(&'q self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        match self {
            Insert::History(rows) => {
                for row in *rows {
                    query = query
                        .bind(row.resource_type.as_str())
                        .bind(row.id.as_str())
                        .bind(row.version)
                        .bind(row.last_updated)
                        .bind(i64::from(row.content.is_none()))
                        .bind(row.method)
                        .bind(row.content.as_deref());
                }
            }
            Insert::Index { rows, .. } => {
                for (resource_type, id, param, cells) in *rows {
                    query = query.bind(*resource_type).bind(*id).bind(*param);
                    for cell in cells {
                        query = match cell {
                            Cell::Text(text) => query.bind(*text),
                            Cell::Int(value) => query.bind(*value),
                            Cell::Real(value) => query.bind(*value),
                        };
                    }
                }
            }
            Insert::Worklist(rows) => query = worklist::bind_rows(query, rows),
            Insert::Referrals(rows) => query = referrals::bind_rows(query, rows),
        }
        query
    }
}

/// Runs the INSERTs. Each statement is a round trip to the writer's thread on SQLite, so there
/// they go as one query of several statements, whose `?` placeholders take the values in order
/// (a Bundle's rows then take two round trips: `resources`, then everything else). PostgreSQL
/// takes one statement per query.
async fn run_inserts(conn: &mut AnyConnection, backend: Backend, inserts: &[Insert<'_>]) -> Result<(), sqlx::Error> {
    if inserts.is_empty() {
        return Ok(());
    }
    match backend {
        Backend::Sqlite => {
            let sql: Vec<String> = inserts.iter().map(|insert| insert.sql(backend)).collect();
            let sql = sql.join(";\n");
            let query = inserts.iter().fold(sqlx::query(&sql), |query, insert| insert.bind(query));
            query.execute(conn).await?;
        }
        Backend::Postgres => {
            for insert in inserts {
                let sql = insert.sql(backend);
                insert.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sqlx::Row;

    use super::*;
    use crate::{Isolation, TempStore};

    /// Index rows beyond one statement's bind limit go in several INSERTs, none lost. One resource
    /// may yield at most `MAX_INDEX_VALUES`, so the rows come from several in one transaction.
    #[tokio::test]
    async fn rows_beyond_one_statements_bind_limit_are_all_written() {
        let temp = TempStore::new().await;
        let per_patient = 1000;
        let patients = rows_per_insert(5) / per_patient + 2;
        let identifier: Vec<_> =
            (0..per_patient).map(|n| json!({"system": "urn:test", "value": format!("v{n}")})).collect();
        let mut tx = temp.store.begin(Isolation::Serializable).await.unwrap();
        for n in 0..patients {
            let patient = json!({"resourceType": "Patient", "identifier": identifier});
            tx.create("Patient", &format!("many{n}"), patient).await.unwrap();
        }
        tx.commit().await.unwrap();
        let written: i64 = sqlx::query("SELECT COUNT(*) FROM idx_token WHERE id LIKE 'many%' AND param = 'identifier'")
            .fetch_one(&temp.store.pool)
            .await
            .unwrap()
            .get(0);
        assert!(written as usize > rows_per_insert(5));
        assert_eq!(written, (patients * per_patient) as i64);
        temp.store.close().await;
    }
}
