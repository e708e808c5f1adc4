//! rex storage: one [`Store`] with two real backends, SQLite (embedded default) and PostgreSQL,
//! behaving the same. It keeps current and historical versions of every resource and fills the
//! search index in the same database transaction as the write.
//!
//! Only this crate knows SQL. Both backends go through sqlx's `Any` driver with plain TEXT, INTEGER
//! and REAL columns, so one code path serves both; the few places where the dialects differ
//! (transaction start, error codes) are matched on [`Backend`].

mod error;
mod migrations;
mod outbox;
mod queues;
mod read;
mod referrals;
mod search;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use error::StoreError;
pub use outbox::{OutboxCounts, OutboxItem};
pub use read::{HistoryEntry, HistoryPage, HistoryScope};
pub use referrals::ReferralRecord;
pub use search::SearchResult;
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

/// The database behind rex.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; rex serialises its write transactions here instead of letting them
    /// fail with SQLITE_BUSY. PostgreSQL needs no such lock.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction. Everything done through it commits together or not at all.
pub struct Tx {
    inner: Transaction<'static, sqlx::Any>,
    backend: Backend,
    _write_guard: Option<OwnedMutexGuard<()>>,
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:` or `postgres://...`), creating a SQLite
    /// file and its folder when missing, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
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
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits; the mode is stored in the file.
            // synchronous stays FULL (the default), so every commit survives an OS crash.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
        }
        migrations::run(&pool, backend).await?;
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Store { pool, backend, write_lock })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction: IMMEDIATE on SQLite (taking the write lock up front); on
    /// PostgreSQL at the given isolation, where conflicts surface as [`StoreError::is_retryable`] errors.
    pub async fn begin(&self, isolation: Isolation) -> Result<Tx, StoreError> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let statement = match (self.backend, isolation) {
            (Backend::Sqlite, _) => "BEGIN IMMEDIATE",
            (Backend::Postgres, Isolation::RowLocking) => "BEGIN ISOLATION LEVEL READ COMMITTED",
            (Backend::Postgres, Isolation::Serializable) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        };
        let inner = self.pool.begin_with(statement).await?;
        Ok(Tx { inner, backend: self.backend, _write_guard: guard })
    }

    /// Closes every connection; used at shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await.map_err(|err| StoreError::from_sqlx(err, self.backend))
    }
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

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Formats microseconds since the epoch as a FHIR instant (`2026-11-29T05:13:09.123456Z`).
pub fn format_instant(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
