//! The schema migrations of both backends, embedded in the binary so it runs from any folder.

use std::borrow::Cow;

use sqlx::AnyPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::{Backend, StoreError};

/// (version, description, SQLite SQL, PostgreSQL SQL), in order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "resources",
        include_str!("../../../migrations/sqlite/0001_resources.sql"),
        include_str!("../../../migrations/postgres/0001_resources.sql"),
    ),
    (
        2,
        "referrals",
        include_str!("../../../migrations/sqlite/0002_referrals.sql"),
        include_str!("../../../migrations/postgres/0002_referrals.sql"),
    ),
    (
        3,
        "date order",
        include_str!("../../../migrations/sqlite/0003_date_order.sql"),
        include_str!("../../../migrations/postgres/0003_date_order.sql"),
    ),
    (
        4,
        "outbox",
        include_str!("../../../migrations/sqlite/0004_outbox.sql"),
        include_str!("../../../migrations/postgres/0004_outbox.sql"),
    ),
    (
        5,
        "used assertions",
        include_str!("../../../migrations/sqlite/0005_used_assertions.sql"),
        include_str!("../../../migrations/postgres/0005_used_assertions.sql"),
    ),
    (
        6,
        "submissions",
        include_str!("../../../migrations/sqlite/0006_submissions.sql"),
        include_str!("../../../migrations/postgres/0006_submissions.sql"),
    ),
    (
        7,
        "binary content",
        include_str!("../../../migrations/sqlite/0007_binary_content.sql"),
        include_str!("../../../migrations/postgres/0007_binary_content.sql"),
    ),
    (
        8,
        "task worklist",
        include_str!("../../../migrations/sqlite/0008_task_worklist.sql"),
        include_str!("../../../migrations/postgres/0008_task_worklist.sql"),
    ),
    (
        9,
        "date probe",
        include_str!("../../../migrations/sqlite/0009_date_probe.sql"),
        include_str!("../../../migrations/postgres/0009_date_probe.sql"),
    ),
    (
        12,
        "task attention",
        include_str!("../../../migrations/sqlite/0012_task_attention.sql"),
        include_str!("../../../migrations/postgres/0012_task_attention.sql"),
    ),
];

/// Applies pending migrations. On PostgreSQL sqlx takes an advisory lock, so instances starting
/// together apply them once.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            Migration::new(*version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
        })
        .collect();
    let migrator = Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT };
    migrator.run(pool).await?;
    Ok(())
}
