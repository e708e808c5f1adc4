//! Reads of single resources, versions and histories, on the pool or inside a [`Tx`].

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Store, StoreError, StoredResource, Tx};

/// Which history to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

/// One version in a history, with the HTTP method that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub resource: StoredResource,
    pub method: String,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub total: i64,
    pub entries: Vec<HistoryEntry>,
}

const RESOURCE_COLUMNS: &str = "resource_type, id, version_id, last_updated, deleted, content";

pub(crate) fn resource_from_row(row: &AnyRow) -> StoredResource {
    StoredResource {
        resource_type: row.get(0),
        id: row.get(1),
        version_id: row.get(2),
        last_updated: row.get(3),
        deleted: row.get::<i64, _>(4) != 0,
        content: row.get(5),
    }
}

pub(crate) async fn read_current(
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE resource_type = $1 AND id = $2"))
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(resource_from_row))
}

async fn read_version(
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
    version: i64,
) -> Result<Option<StoredResource>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resource_history WHERE resource_type = $1 AND id = $2 AND version_id = $3"
    ))
    .bind(resource_type)
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(resource_from_row))
}

async fn history(
    conn: &mut AnyConnection,
    scope: &HistoryScope,
    since: Option<i64>,
    count: usize,
    offset: usize,
) -> Result<HistoryPage, sqlx::Error> {
    let mut filters = vec!["last_updated >= $1".to_string()];
    let mut texts: Vec<&str> = Vec::new();
    match scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => texts.push(resource_type),
        HistoryScope::Instance(resource_type, id) => {
            texts.push(resource_type);
            texts.push(id);
        }
    }
    let columns = ["resource_type", "id"];
    for (index, column) in columns.iter().take(texts.len()).enumerate() {
        filters.push(format!("{column} = ${}", index + 2));
    }
    let filter = filters.join(" AND ");
    let since = since.unwrap_or(i64::MIN);
    let count_sql = format!("SELECT COUNT(*) FROM resource_history WHERE {filter}");
    let mut count_query = sqlx::query(&count_sql).bind(since);
    for text in &texts {
        count_query = count_query.bind(*text);
    }
    let total: i64 = count_query.fetch_one(&mut *conn).await?.get(0);
    let limit_at = texts.len() + 2;
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, method FROM resource_history WHERE {filter} \
         ORDER BY last_updated DESC, resource_type, id, version_id DESC LIMIT ${limit_at} OFFSET ${}",
        limit_at + 1
    );
    let mut page_query = sqlx::query(&sql).bind(since);
    for text in &texts {
        page_query = page_query.bind(*text);
    }
    let rows = page_query.bind(count as i64).bind(offset as i64).fetch_all(&mut *conn).await?;
    let entries =
        rows.iter().map(|row| HistoryEntry { resource: resource_from_row(row), method: row.get(6) }).collect();
    Ok(HistoryPage { total, entries })
}

impl Store {
    /// The current version of a resource, including a deletion marker when it was deleted.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_current(&mut conn, resource_type, id).await?)
    }

    /// One historical version.
    pub async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_version(&mut conn, resource_type, id, version).await?)
    }

    /// A page of history, newest first, optionally only versions at or after `since` (µs).
    pub async fn history(
        &self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        offset: usize,
    ) -> Result<HistoryPage, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(history(&mut conn, scope, since, count, offset).await?)
    }
}

impl Tx {
    /// The current version of a resource as this transaction sees it.
    pub async fn read(&mut self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        self.flush().await?;
        read_current(self.conn().await?, resource_type, id).await.map_err(StoreError::from)
    }

    pub async fn vread(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        self.flush().await?;
        read_version(self.conn().await?, resource_type, id, version).await.map_err(StoreError::from)
    }

    pub async fn history(
        &mut self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        offset: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.flush().await?;
        history(self.conn().await?, scope, since, count, offset).await.map_err(StoreError::from)
    }
}

/// Tables whose rows [`Store::count_rows`] may count.
const COUNTABLE_TABLES: &[&str] = &[
    "resources",
    "referrals",
    "resource_history",
    "idx_string",
    "idx_token",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "task_worklist",
    "outbox",
    "submissions",
    "submission_issues",
];

impl Store {
    /// The number of rows in one of rex's tables; used by checks that a failed request wrote nothing.
    pub async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        if !COUNTABLE_TABLES.contains(&table) {
            return Err(StoreError::Config(format!("unknown table '{table}'")));
        }
        let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await?;
        Ok(row.get(0))
    }
}
