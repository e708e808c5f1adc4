//! Multi-row INSERTs, shared by the write path (`write.rs`) and the tables it fills beside
//! `resources` (`referrals.rs`, `worklist.rs`), which build their own statements from these.

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::Backend;

/// A query on either backend with its bound values.
pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// The value groups of a multi-row INSERT of `rows` rows of `columns` values: `($1, $2), ($3, $4)`
/// on PostgreSQL, `(?, ?), (?, ?)` on SQLite, where binding a numbered parameter looks its number
/// up by name, which costs time linear in the parameters: quadratic for a statement of 1,000 values,
/// and 8 % of the writer's time in the profile.
pub(crate) fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", row * columns + column + 1)),
            }
        }
        sql.push(')');
    }
    sql
}
