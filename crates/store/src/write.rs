//! Writes: every version goes to `resource_history`, the newest to `resources`, and the search index
//! rows of the resource are replaced, all inside the caller's [`Tx`].

use rex_fhir::search::{IndexEntry, IndexValue, SearchRegistry};
use serde_json::{Value, json};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::read::read_current;
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

/// Rows per multi-row INSERT; keeps the bind count far below SQLite's limit of 32,766.
const ROWS_PER_INSERT: usize = 200;

impl Tx {
    /// Creates `resource_type/id` at version 1. Fails with [`StoreError::AlreadyExists`] when the
    /// id is taken (even by a deleted resource).
    pub async fn create(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
    ) -> Result<StoredResource, StoreError> {
        if current_version(&mut self.inner, self.backend, resource_type, id).await?.is_some() {
            return Err(StoreError::AlreadyExists(format!("{resource_type}/{id}")));
        }
        self.write_version(resource_type, id, 1, "POST", resource).await
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
        let current = current_version(&mut self.inner, self.backend, resource_type, id).await?;
        if let Some(expected) = if_match {
            let live = current.filter(|(_, deleted)| !deleted).map(|(version, _)| version);
            if live != Some(expected) {
                return Err(StoreError::VersionConflict { expected, current: live.unwrap_or(0) });
            }
        }
        if let Some((_, false)) = current
            && let Some(stored) = read_current(&mut self.inner, resource_type, id)
                .await
                .map_err(|err| StoreError::from_sqlx(err, self.backend))?
            && same_content(stored.content.as_deref(), &resource)
        {
            // An update that changes nothing makes no new version; re-sent referrals rely on it.
            return Ok((stored, Change::Unchanged));
        }
        let created = current.is_none_or(|(_, deleted)| deleted);
        let version = current.map_or(1, |(version, _)| version + 1);
        let method = if created { "POST" } else { "PUT" };
        let stored = self.write_version(resource_type, id, version, method, resource).await?;
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
        let Some((version, deleted)) = current_version(&mut self.inner, self.backend, resource_type, id).await? else {
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
        let backend = self.backend;
        let conn: &mut AnyConnection = &mut self.inner;
        sqlx::query("UPDATE resources SET version_id = $1, last_updated = $2, deleted = 1, content = NULL WHERE resource_type = $3 AND id = $4")
            .bind(version)
            .bind(now)
            .bind(resource_type)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|err| StoreError::from_sqlx(err, backend))?;
        insert_history(conn, resource_type, id, version, now, "DELETE", None)
            .await
            .map_err(|err| StoreError::from_sqlx(err, backend))?;
        delete_index(conn, resource_type, id).await.map_err(|err| StoreError::from_sqlx(err, backend))?;
        Ok(DeleteOutcome::Deleted(version))
    }

    async fn write_version(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        method: &str,
        mut resource: Value,
    ) -> Result<StoredResource, StoreError> {
        let now = now_micros();
        stamp(&mut resource, id, version, now);
        let content = resource.to_string();
        let entries = SearchRegistry::r4().extract(resource_type, &resource);
        let backend = self.backend;
        let conn: &mut AnyConnection = &mut self.inner;
        let result: Result<(), sqlx::Error> = async {
            if version == 1 {
                sqlx::query("INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content) VALUES ($1, $2, $3, $4, 0, $5)")
                    .bind(resource_type)
                    .bind(id)
                    .bind(version)
                    .bind(now)
                    .bind(&content)
                    .execute(&mut *conn)
                    .await?;
            } else {
                sqlx::query("UPDATE resources SET version_id = $1, last_updated = $2, deleted = 0, content = $3 WHERE resource_type = $4 AND id = $5")
                    .bind(version)
                    .bind(now)
                    .bind(&content)
                    .bind(resource_type)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                delete_index(conn, resource_type, id).await?;
            }
            insert_history(conn, resource_type, id, version, now, method, Some(&content)).await?;
            insert_index(conn, resource_type, id, &entries).await
        }
        .await;
        result.map_err(|err| StoreError::from_sqlx(err, backend))?;
        Ok(StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version_id: version,
            last_updated: now,
            deleted: false,
            content: Some(content),
        })
    }
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
    let row = sqlx::query(sql)
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(|err| StoreError::from_sqlx(err, backend))?;
    Ok(row.map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1) != 0)))
}

async fn insert_history(
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
    version: i64,
    now: i64,
    method: &str,
    content: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .bind(now)
        .bind(i64::from(content.is_none()))
        .bind(method)
        .bind(content.map(str::to_string))
        .execute(conn)
        .await?;
    Ok(())
}

async fn delete_index(conn: &mut AnyConnection, resource_type: &str, id: &str) -> Result<(), sqlx::Error> {
    for table in INDEX_TABLES {
        sqlx::query(&format!("DELETE FROM {table} WHERE resource_type = $1 AND id = $2"))
            .bind(resource_type)
            .bind(id)
            .execute(&mut *conn)
            .await?;
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

/// The rows bound for one index table: (table, value columns, [(param, cells)]).
type TableRows<'a> = (&'static str, &'static str, Vec<(&'a str, Vec<Cell<'a>>)>);

/// Inserts the index entries with one multi-row INSERT per table (and per chunk of rows).
async fn insert_index(
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
    entries: &[IndexEntry],
) -> Result<(), sqlx::Error> {
    let mut by_table: Vec<TableRows> = Vec::new();
    for entry in entries {
        let (table, columns, cells) = index_row(&entry.value);
        match by_table.iter_mut().find(|(t, _, _)| *t == table) {
            Some((_, _, rows)) => rows.push((&entry.param, cells)),
            None => by_table.push((table, columns, vec![(&entry.param, cells)])),
        }
    }
    for (table, columns, rows) in &by_table {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut sql = format!("INSERT INTO {table} (resource_type, id, param, {columns}) VALUES ");
            let mut n = 0;
            for (row_index, (_, cells)) in chunk.iter().enumerate() {
                if row_index > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for column in 0..3 + cells.len() {
                    n += 1;
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${n}"));
                }
                sql.push(')');
            }
            let mut query: Query<'_, Any, AnyArguments> = sqlx::query(&sql);
            for (param, cells) in chunk {
                query = query.bind(resource_type).bind(id).bind(*param);
                for cell in cells {
                    query = match cell {
                        Cell::Text(text) => query.bind(text.map(str::to_string)),
                        Cell::Int(value) => query.bind(*value),
                        Cell::Real(value) => query.bind(*value),
                    };
                }
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}
