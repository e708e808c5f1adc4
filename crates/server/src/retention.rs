//! Retention: scorecard submissions, AuditEvents and dead notifications are kept for a configured
//! number of days (`--retain-*-days`, 0 keeps them forever) and then deleted for good by a
//! background purge on every instance. The purge is itself audited: each purge transaction writes
//! one AuditEvent with what it deleted and the cut-off times, in the same transaction, so a purge
//! that did not commit is not recorded and one that did cannot go unrecorded. The clock is a
//! parameter, so tests drive it.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rex_referral::task::AUDIT_SYSTEM;
use rex_store::{Isolation, Tx};
use serde_json::{Value, json};

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::interactions::in_transaction;
use crate::interactions::write::{WriteOp, execute};

/// Rows deleted per kind in one purge transaction; a run repeats until less is left.
const BATCH: i64 = 1000;

/// How long each kind is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub submissions: Option<chrono::Duration>,
    pub audit_events: Option<chrono::Duration>,
    pub dead_notifications: Option<chrono::Duration>,
}

impl Retention {
    /// From numbers of days, 0 meaning forever.
    pub fn from_days(submissions: u32, audit_events: u32, dead_notifications: u32) -> Retention {
        let days = |n: u32| (n > 0).then(|| chrono::Duration::days(i64::from(n)));
        Retention {
            submissions: days(submissions),
            audit_events: days(audit_events),
            dead_notifications: days(dead_notifications),
        }
    }
}

/// What a purge run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub submissions: u64,
    pub audit_events: u64,
    pub dead_notifications: u64,
}

/// Deletes what is older than its retention at `now`, batch by batch, each batch one transaction
/// with its AuditEvent; returns the totals.
pub async fn purge(state: &AppState, retention: Retention, now: DateTime<Utc>) -> Result<Purged, ApiError> {
    let mut total = Purged::default();
    loop {
        let purged = in_transaction(&state.store, Isolation::RowLocking, &(retention, now), |tx, context| {
            let (retention, now) = *context;
            Box::pin(purge_batch(tx, retention, now))
        })
        .await?;
        total.submissions += purged.submissions;
        total.audit_events += purged.audit_events;
        total.dead_notifications += purged.dead_notifications;
        let full = [purged.submissions, purged.audit_events, purged.dead_notifications].contains(&(BATCH as u64));
        if !full {
            return Ok(total);
        }
    }
}

fn cutoff(now: DateTime<Utc>, keep: Option<chrono::Duration>) -> Option<DateTime<Utc>> {
    keep.map(|keep| now - keep)
}

async fn purge_batch(tx: &mut Tx, retention: Retention, now: DateTime<Utc>) -> Result<Purged, ApiError> {
    let mut purged = Purged::default();
    let submissions = cutoff(now, retention.submissions);
    let audit_events = cutoff(now, retention.audit_events);
    let dead_notifications = cutoff(now, retention.dead_notifications);
    if let Some(before) = submissions {
        purged.submissions = tx.purge_submissions(before.timestamp_micros(), BATCH).await?;
    }
    if let Some(before) = audit_events {
        purged.audit_events = tx.purge_resources("AuditEvent", before.timestamp_micros(), BATCH).await?;
    }
    if let Some(before) = dead_notifications {
        purged.dead_notifications = tx.purge_dead_notifications(before.timestamp_micros(), BATCH).await?;
    }
    let details = [
        ("submissions", purged.submissions, submissions),
        ("AuditEvents", purged.audit_events, audit_events),
        ("dead notifications", purged.dead_notifications, dead_notifications),
    ];
    let audit = WriteOp::Create {
        resource_type: "AuditEvent".into(),
        resource: audit_event(&details, now),
        id: None,
        if_none_exist: None,
    };
    execute(tx, &Caller::Unrestricted, audit).await?;
    Ok(purged)
}

/// The AuditEvent of one purge transaction: how many of each kind, and the cut-off time before
/// which they were deleted (`kept forever` when the kind has no retention).
fn audit_event(details: &[(&str, u64, Option<DateTime<Utc>>)], now: DateTime<Utc>) -> Value {
    let instant = |time: DateTime<Utc>| time.to_rfc3339_opts(SecondsFormat::Secs, true);
    let summary: Vec<String> = details
        .iter()
        .map(|(kind, count, before)| match before {
            Some(before) => format!("{count} {kind} from before {}", instant(*before)),
            None => format!("no {kind} (kept forever)"),
        })
        .collect();
    let detail: Vec<Value> =
        details.iter().map(|(kind, count, _)| json!({"type": kind, "valueString": count.to_string()})).collect();
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_SYSTEM, "code": "retention", "display": "Retention"},
        "subtype": [{"system": AUDIT_SYSTEM, "code": "purge", "display": "Purged past its retention"}],
        "action": "D",
        "recorded": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "outcome": "0",
        "outcomeDesc": format!("Deleted {}", summary.join(", ")),
        "agent": [{"who": {"reference": "Device/rex"}, "requestor": false}],
        "source": {"observer": {"display": "rex"}},
        "entity": [{"what": {"display": "rex database"}, "detail": detail}],
    })
}

/// Runs [`purge`] every `interval` until the process ends.
pub fn spawn_worker(state: AppState, retention: Retention, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match purge(&state, retention, Utc::now()).await {
                Ok(purged) => tracing::info!(
                    submissions = purged.submissions,
                    audit_events = purged.audit_events,
                    dead_notifications = purged.dead_notifications,
                    "retention purge"
                ),
                Err(err) => {
                    tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "retention purge failed")
                }
            }
        }
    })
}
