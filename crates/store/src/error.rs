/// Everything that can go wrong in the store. Callers map these to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource exists with another version than the one the client expected.
    #[error("version conflict: expected {expected}, current is {current}")]
    VersionConflict { expected: i64, current: i64 },
    /// A resource with this id already exists (create with a client id).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Two transactions raced; running the whole transaction again is safe and will succeed or
    /// see the other's result.
    #[error("concurrent update, retry")]
    Retryable,
    /// The request would cost more than rex allows: a resource with too many search index values,
    /// or a search that ran out of its time (see `Store::with_search_timeout`). The issue says which
    /// limit, and where.
    #[error("{}", .0.diagnostics)]
    TooCostly(rex_fhir::Issue),
    /// The configuration (URL, folders) is unusable.
    #[error("{0}")]
    Config(String),
    /// Anything else from the database. Never shown to clients.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The SQLite group transaction this write belonged to could not commit; nothing of it is kept.
    #[error("group commit failed: {0}")]
    GroupCommit(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable)
    }
}

impl From<sqlx::Error> for StoreError {
    /// Classifies a driver error: serialization failures, deadlocks, unique violations from a racing
    /// insert and SQLite busy errors become [`StoreError::Retryable`]. On SQLite a racing insert is
    /// one made by an earlier transaction of the same group after this one looked at what was
    /// committed (a referral's identity, see `referrals.rs`). PostgreSQL's SQLSTATEs have five
    /// characters and SQLite's result codes at most four digits, so the code tells the backend.
    fn from(err: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &err {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: serialization failure, deadlock, unique violation. SQLite: busy and
            // locked, and the primary key and unique constraint violations.
            if matches!(code.as_ref(), "40001" | "40P01" | "23505" | "5" | "6" | "517" | "262" | "1555" | "2067") {
                return StoreError::Retryable;
            }
        }
        StoreError::Database(err)
    }
}
