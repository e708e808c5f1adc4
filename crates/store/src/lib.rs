//! rex storage: one [`Store`] with two real backends, SQLite (embedded default) and PostgreSQL,
//! behaving the same. It keeps current and historical versions of every resource and fills the
//! search index in the same database transaction as the write.
//!
//! Only this crate knows SQL. Both backends go through sqlx's `Any` driver with plain TEXT, INTEGER
//! and REAL columns, so one code path serves both; the few places where the dialects differ
//! (transaction start, error codes) are matched on [`Backend`].

mod assertions;
mod attention;
mod binaries;
mod deadline;
mod error;
mod group;
mod migrations;
mod outbox;
mod queues;
mod read;
mod referrals;
mod retention;
mod rows;
mod search;
mod submissions;
mod worklist;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Transaction};

use group::{Coming, GroupMember, Writer};

pub use attention::TaskAttention;
pub use error::StoreError;
pub use outbox::{OutboxCounts, OutboxItem, SubscriptionDelivery};
pub use read::{HistoryEntry, HistoryPage, HistoryScope};
pub use referrals::ReferralRecord;
pub use search::SearchResult;
pub use submissions::{ProfileClaimCount, RuleCount, Submission, SubmissionCount, SubmissionIssue};
pub use write::{Change, DeleteOutcome};

/// How a write transaction guards against concurrent writers (PostgreSQL; SQLite always has one
/// writer at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// For writes addressed by id: READ COMMITTED with the resource row locked before it is read,
    /// so racing updates of one resource queue up instead of failing.
    RowLocking,
    /// For writes that depend on a search (conditional interactions, transaction Bundles):
    /// SERIALIZABLE, so two requests cannot both see "no match" and both create.
    Serializable,
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// Microseconds since the Unix epoch, UTC.
    pub last_updated: i64,
    pub deleted: bool,
    /// The resource JSON with `id` and `meta` set by the store; `None` for a deletion.
    pub content: Option<String>,
}

/// Connections of a [`Store`]'s pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open now, busy or idle.
    pub open: u32,
    /// Open connections no request is using.
    pub idle: usize,
    /// The most connections the pool opens.
    pub max: u32,
}

/// The database behind rex.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer: every write transaction runs on this one dedicated connection, in
    /// turn, with group commit (see [`group`]). `None` on PostgreSQL, whose write transactions each
    /// take a pooled connection.
    writer: Option<Arc<Writer>>,
    /// The longest a search may run, in milliseconds, shared by every clone.
    search_timeout: Arc<AtomicU64>,
}

/// How long a search may run unless set otherwise ([`Store::set_search_timeout`]).
pub const DEFAULT_SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A write transaction. Everything done through it commits together or not at all, and
/// [`Tx::commit`] returns only once it is durable.
pub struct Tx {
    conn: TxConn,
    backend: Backend,
    /// Rows written by creates and not yet sent to the database (see `write.rs`).
    pending: write::Pending,
    /// The store's search timeout when the transaction began, for its searches.
    search_timeout: Duration,
}

enum TxConn {
    /// PostgreSQL: a database transaction of its own on a pooled connection.
    Pooled(Transaction<'static, sqlx::Any>),
    /// SQLite: a savepoint within the group transaction of the writer connection. The transaction
    /// joins the group at its first statement (`member` is `None` until then), so that the work a
    /// caller does before it (ids, JSON, index values of every entry of a Bundle) does not hold up
    /// the one writer. While it has not joined it counts as coming, so the group waits for it.
    /// `readers` is the pool of reader connections, for [`Tx::readers_before_first_statement`].
    Group { writer: Arc<Writer>, member: Option<GroupMember>, coming: Option<Coming>, readers: AnyPool },
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:` or `postgres://...`), creating a SQLite
    /// file and its folder when missing, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        // Before the first SQLite connection opens, so that every one gets the statement deadline.
        deadline::install();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL '{}': use sqlite://PATH or postgres://...",
                redact(url)
            )));
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|err| StoreError::Config(format!("bad database URL '{}': {err}", redact(&url))))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits; the mode is stored in the file.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
        }
        migrations::run(&pool, backend).await?;
        refresh_statistics(&pool, backend).await?;
        let writer = match backend {
            Backend::Sqlite => Some(Arc::new(Writer::open(&options).await?)),
            Backend::Postgres => None,
        };
        let search_timeout = Arc::new(AtomicU64::new(DEFAULT_SEARCH_TIMEOUT.as_millis() as u64));
        Ok(Store { pool, backend, writer, search_timeout })
    }

    /// Gathers the query planner's statistics where they are missing or stale. Search plans do
    /// not depend on them (the indexes leave one good plan), but they help the planner elsewhere.
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        refresh_statistics(&self.pool, self.backend).await
    }

    /// Sets how long a search may run before its database work is cancelled (at least 1 ms), for
    /// this store and all its clones.
    pub fn set_search_timeout(&self, timeout: Duration) {
        self.search_timeout.store((timeout.as_millis() as u64).max(1), Ordering::Relaxed);
    }

    pub fn search_timeout(&self) -> Duration {
        Duration::from_millis(self.search_timeout.load(Ordering::Relaxed))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes its turn on the writer connection at its
    /// first statement and from then on runs exclusively (the isolation does not matter); on
    /// PostgreSQL it runs at the given isolation, where conflicts surface as
    /// [`StoreError::is_retryable`] errors.
    pub async fn begin(&self, isolation: Isolation) -> Result<Tx, StoreError> {
        let conn = match &self.writer {
            Some(writer) => TxConn::Group {
                writer: writer.clone(),
                member: None,
                coming: Some(writer.coming()),
                readers: self.pool.clone(),
            },
            None => {
                let statement = match isolation {
                    Isolation::RowLocking => "BEGIN ISOLATION LEVEL READ COMMITTED",
                    Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
                };
                TxConn::Pooled(self.pool.begin_with(statement).await?)
            }
        };
        Ok(Tx {
            conn,
            backend: self.backend,
            pending: write::Pending::default(),
            search_timeout: self.search_timeout(),
        })
    }

    /// The connection pool's use, for metrics (SQLite's writer connection is not in the pool).
    pub fn pool_use(&self) -> PoolUse {
        PoolUse { open: self.pool.size(), idle: self.pool.num_idle(), max: self.pool.options().get_max_connections() }
    }

    /// Closes every connection; used at shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Tx {
    /// Commits, returning once the writes are durable. On SQLite the transaction's writes commit
    /// with those of the other transactions of its group; if that commit fails, so does this call.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        match self.conn {
            TxConn::Pooled(inner) => inner.commit().await.map_err(StoreError::from),
            TxConn::Group { member: Some(member), .. } => member.commit().await,
            // It never ran a statement: nothing to commit.
            TxConn::Group { member: None, .. } => Ok(()),
        }
    }

    /// On SQLite before the transaction's first statement: the reader connections, which see what
    /// is committed. A transaction that has not run a statement has written nothing to the
    /// database, so what it could read on the writer differs from that only by what the open
    /// group has written and not yet committed.
    fn readers_before_first_statement(&self) -> Option<&AnyPool> {
        match &self.conn {
            TxConn::Group { member: None, readers, .. } => Some(readers),
            _ => None,
        }
    }

    /// The connection the transaction runs on; on SQLite this waits for the writer the first time.
    async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        match &mut self.conn {
            TxConn::Pooled(inner) => Ok(inner),
            TxConn::Group { writer, member, coming, .. } => {
                if member.is_none() {
                    *member = Some(writer.join(coming.take()).await?);
                }
                Ok(member.as_mut().expect("joined above").conn())
            }
        }
    }
}

/// SQLite: `PRAGMA optimize`, which analyses the tables that changed much since their last
/// analysis, each on a sample (`analysis_limit`), so it stays quick on a large database. rex never
/// gathered statistics before: SQLite then guessed, and chose a quadratic plan for date searches.
/// PostgreSQL: its autovacuum daemon analyses changed tables.
async fn refresh_statistics(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Sqlite {
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await?;
        sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await?;
    }
    Ok(())
}

/// Creates a new, empty PostgreSQL database named `name` on the server of `url` (a database URL
/// of that server) and returns its URL. For tools such as `rex bench` that need a fresh database
/// per run.
pub async fn create_postgres_database(url: &str, name: &str) -> Result<String, StoreError> {
    postgres_admin(url, &format!("CREATE DATABASE {name}"), name).await?;
    let (server, _) =
        url.rsplit_once('/').ok_or_else(|| StoreError::Config(format!("'{}' names no database", redact(url))))?;
    Ok(format!("{server}/{name}"))
}

/// Drops the PostgreSQL database `name` on the server of `url`.
pub async fn drop_postgres_database(url: &str, name: &str) -> Result<(), StoreError> {
    postgres_admin(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), name).await
}

async fn postgres_admin(url: &str, statement: &str, name: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(StoreError::Config(format!("'{name}' is not a plain database name")));
    }
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await?;
    sqlx::query(statement).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Adds `mode=rwc` so the file is created, and creates its folder.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    if url.contains(":memory:") {
        return Ok(url.to_string());
    }
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let file = path.split('?').next().unwrap_or(path);
    if let Some(parent) = std::path::Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|err| StoreError::Config(format!("cannot create folder {}: {err}", parent.display())))?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// A database URL with any password removed, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A new resource id: a UUID version 7, whose first 48 bits are the time in milliseconds.
///
/// Every table and index keyed by (resource_type, id) then grows at its end, as the referral index
/// does by time, instead of at a random place: a commit writes a few hot pages rather than one
/// page per resource and index, which with random (version 4) ids was most of what an intake
/// Bundle wrote on SQLite. The time in the id says no more than `meta.lastUpdated` does.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Formats microseconds since the epoch as a FHIR instant (`2026-11-29T05:13:09.123456Z`).
pub fn format_instant(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A store on a SQLite file of its own, removed when dropped, for the unit tests.
#[cfg(test)]
pub(crate) struct TempStore {
    pub store: Store,
    path: std::path::PathBuf,
}

#[cfg(test)]
impl TempStore {
    pub async fn new() -> TempStore {
        let name = format!("rex-store-{}-{}.sqlite", std::process::id(), uuid::Uuid::now_v7());
        let path = std::env::temp_dir().join(name);
        let store = Store::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        TempStore { store, path }
    }
}

#[cfg(test)]
impl Drop for TempStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction takes SQLite's writer at its first statement: one that has only queued rows
    /// does not hold up another's commit, and both land.
    #[tokio::test]
    async fn a_transaction_holds_the_writer_only_from_its_first_statement() {
        use serde_json::json;
        let temp = TempStore::new().await;
        let store = &temp.store;
        let mut first = store.begin(Isolation::Serializable).await.unwrap();
        first.create("Patient", "first", json!({"resourceType": "Patient"})).await.unwrap();
        let second = async {
            let mut second = store.begin(Isolation::Serializable).await.unwrap();
            second.create("Patient", "second", json!({"resourceType": "Patient"})).await.unwrap();
            second.commit().await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(5), second).await.expect("the second commit waited for the first");
        assert!(store.read("Patient", "second").await.unwrap().is_some());
        assert!(store.read("Patient", "first").await.unwrap().is_none(), "not committed yet");
        first.commit().await.unwrap();
        assert!(store.read("Patient", "first").await.unwrap().is_some());
        store.close().await;
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn formats_instants() {
        assert_eq!(format_instant(1_000_000), "1970-01-01T00:00:01.000000Z");
    }
}
