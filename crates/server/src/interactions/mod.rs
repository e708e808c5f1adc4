//! One module per FHIR interaction; each turns HTTP into calls on the store and back.

pub mod attention;
pub mod availability;
pub mod base;
pub mod capabilities;
pub mod consent;
pub mod consult;
pub mod escalation;
pub mod history;
pub mod intake;
pub mod message;
pub mod opinion;
mod parameters;
pub mod read;
pub mod reminders;
pub mod rest_write;
pub mod sandbox;
pub mod scorecard;
pub mod search;
pub mod transaction;
pub mod validate;
pub mod workflow;
pub mod write;

use std::future::Future;
use std::pin::Pin;

use rex_store::{Isolation, Store, Tx};

use crate::error::ApiError;

/// Attempts of one write before a persistent conflict is reported to the client.
const MAX_ATTEMPTS: u32 = 30;

/// Runs `work(tx, context)` in a write transaction and commits it, running it again from the start
/// when the database reports a conflict with a concurrent transaction (PostgreSQL serializable
/// isolation). Nothing of a failed attempt is kept.
pub async fn in_transaction<C, T, F>(store: &Store, isolation: Isolation, context: &C, work: F) -> Result<T, ApiError>
where
    C: ?Sized + Sync,
    F: for<'a> Fn(&'a mut Tx, &'a C) -> Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>,
{
    let mut attempt = 1;
    loop {
        let mut tx = store.begin(isolation).await?;
        let result = match work(&mut tx, context).await {
            Ok(value) => tx.commit().await.map(|()| value).map_err(ApiError::from),
            Err(err) => {
                // Undone now rather than after the backoff below: on SQLite a transaction holds
                // the one writer, or the open group waits for it, until it is dropped.
                drop(tx);
                Err(err)
            }
        };
        match result {
            Err(err) if err.retryable && attempt < MAX_ATTEMPTS => {
                attempt += 1;
                // Exponential backoff with jitter, so racing writers do not collide again in step.
                let ceiling = 2u64.pow(attempt.min(7));
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % ceiling;
                tokio::time::sleep(std::time::Duration::from_millis(1 + jitter)).await;
            }
            other => return other,
        }
    }
}

/// Splits a raw query string into decoded pairs; both `Patient/1` and `Patient%2F1` decode alike.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The value of `_format`, if given.
pub fn format_param(pairs: &[(String, String)]) -> Option<&str> {
    pairs.iter().find(|(k, _)| k == "_format").map(|(_, v)| v.as_str())
}
