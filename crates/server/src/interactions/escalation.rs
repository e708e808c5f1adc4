//! SLA escalation: referral Tasks still open after their due time (`restriction.period.end`) are
//! marked escalated (the tag [`FLAG_SYSTEM`]`|escalated` and the `task-escalated` extension with
//! the time), which puts them on their queue's escalation view
//! (`Task?owner=HealthcareService/Q&_tag=https://rex.example/fhir/CodeSystem/task-flag|escalated`)
//! and the coordinators' list of escalated referrals, with an AuditEvent in the same transaction,
//! and queues the alerts to the people the routing configuration names for the queue
//! ([`crate::alerts`]) in that transaction too, so they are sent once.
//!
//! The worker runs on every instance. Each candidate is re-checked under its row lock before it is
//! marked, so a Task is escalated once however many instances find it. The clock is a parameter,
//! so tests drive it.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_referral::task::{AUDIT_SYSTEM, extension_url};
use rex_store::{Isolation, Tx};
use serde_json::{Value, json};

use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::stored_json;

/// `meta.tag` system of the flags rex puts on referral Tasks.
pub const FLAG_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/task-flag";
/// The flag of an escalated Task.
pub const ESCALATED: &str = "escalated";
/// Task statuses of referrals waiting for the hospital. Not `on-hold`: a Task on hold waits for the
/// partner, its SLA clock is paused (its due time moves on when it resumes), so it is never overdue.
const OPEN_STATUSES: &[&str] = &["requested", "received", "accepted", "ready", "in-progress"];
/// Tasks examined per run; the next run takes the rest.
const BATCH: usize = 200;

/// Escalates the open referral Tasks due before `now`; returns the ids escalated by this call.
pub async fn escalate_overdue(state: &AppState, now: DateTime<Utc>) -> Result<Vec<String>, ApiError> {
    let instant = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let pairs: Vec<(String, String)> = vec![
        ("due".into(), format!("lt{instant}")),
        ("status".into(), OPEN_STATUSES.join(",")),
        ("_tag:not".into(), format!("{FLAG_SYSTEM}|{ESCALATED}")),
        ("_count".into(), BATCH.to_string()),
        ("_total".into(), "none".into()),
    ];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Task", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    let candidates = state.store.search(&query).await?.matches;
    let mut escalated = Vec::new();
    for candidate in candidates {
        let id = candidate.id;
        let context = (id.as_str(), now, &state.routing);
        let done = super::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
            let (id, now, routing) = *context;
            Box::pin(async move {
                let Some(current) = tx.read_for_update("Task", id).await? else { return Ok(false) };
                let mut task = stored_json(&current)?;
                if !is_overdue(&task, now) {
                    return Ok(false);
                }
                mark(&mut task, now);
                crate::alerts::enqueue(tx, routing, id, &task, now).await?;
                write_flagged(tx, id, current.version_id, task, audit_event(id, now)).await?;
                Ok(true)
            })
        })
        .await?;
        if done {
            escalated.push(id);
        }
    }
    Ok(escalated)
}

/// Writes a Task a worker flagged (`version` is the one it read under its row lock) and the
/// AuditEvent that says why, as rex.
pub(crate) async fn write_flagged(
    tx: &mut Tx,
    id: &str,
    version: i64,
    task: Value,
    audit: Value,
) -> Result<(), ApiError> {
    let update = WriteOp::Update {
        resource_type: "Task".into(),
        target: Target::Id(id.to_string()),
        resource: task,
        if_match: Some(version),
    };
    execute(tx, &Caller::Unrestricted, update).await?;
    let audit = WriteOp::Create { resource_type: "AuditEvent".into(), resource: audit, id: None, if_none_exist: None };
    execute(tx, &Caller::Unrestricted, audit).await?;
    Ok(())
}

/// Open, not yet escalated, and due before `now`.
fn is_overdue(task: &Value, now: DateTime<Utc>) -> bool {
    let open = task["status"].as_str().is_some_and(|status| OPEN_STATUSES.contains(&status));
    let flagged = has_flag(task, ESCALATED);
    let due = task["restriction"]["period"]["end"].as_str().and_then(|end| DateTime::parse_from_rfc3339(end).ok());
    open && !flagged && due.is_some_and(|due| due < now)
}

/// Whether the Task carries the flag `code` of [`FLAG_SYSTEM`].
pub(super) fn has_flag(task: &Value, code: &str) -> bool {
    task["meta"]["tag"].as_array().into_iter().flatten().any(|tag| tag["system"] == FLAG_SYSTEM && tag["code"] == code)
}

/// Puts the flag `code` of [`FLAG_SYSTEM`] on the Task (its `meta.tag`, searchable with `_tag`).
pub(super) fn add_flag(task: &mut Value, code: &str, display: &str) {
    let tag = json!({"system": FLAG_SYSTEM, "code": code, "display": display});
    match task["meta"]["tag"].as_array_mut() {
        Some(tags) => tags.push(tag),
        None => task["meta"]["tag"] = json!([tag]),
    }
}

fn mark(task: &mut Value, now: DateTime<Utc>) {
    let instant = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    add_flag(task, ESCALATED, "Past its due time");
    let extension = json!({"url": extension_url("task-escalated"), "valueDateTime": instant});
    match task["extension"].as_array_mut() {
        Some(extensions) => extensions.push(extension),
        None => task["extension"] = json!([extension]),
    }
}

fn audit_event(task_id: &str, now: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_SYSTEM, "code": "referral", "display": "Referral event"},
        "subtype": [{"system": AUDIT_SYSTEM, "code": "escalate", "display": "Escalated past its due time"}],
        "action": "U",
        "recorded": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "outcome": "0",
        "agent": [{"who": {"reference": "Device/rex"}, "requestor": false}],
        "source": {"observer": {"display": "rex"}},
        "entity": [{"what": {"reference": format!("Task/{task_id}")}}],
    })
}

/// Runs [`escalate_overdue`] every `interval` until the process ends.
pub fn spawn_worker(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match escalate_overdue(&state, Utc::now()).await {
                Ok(ids) if !ids.is_empty() => tracing::info!(escalated = ids.len(), "overdue referrals escalated"),
                Ok(_) => {}
                Err(err) => tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "escalation failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_unflagged_tasks_past_due_are_overdue() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z").unwrap().with_timezone(&Utc);
        let task = |status: &str, end: &str| json!({"resourceType": "Task", "status": status, "restriction": {"period": {"end": end}}});
        assert!(is_overdue(&task("requested", "2026-01-01T00:00:00Z"), now));
        assert!(!is_overdue(&task("requested", "2026-01-03T00:00:00Z"), now));
        assert!(!is_overdue(&task("completed", "2026-01-01T00:00:00Z"), now));
        assert!(!is_overdue(&task("on-hold", "2026-01-01T00:00:00Z"), now));
        let mut flagged = task("in-progress", "2026-01-01T00:00:00Z");
        mark(&mut flagged, now);
        assert!(!is_overdue(&flagged, now));
        assert_eq!(flagged["meta"]["tag"][0]["code"], ESCALATED);
    }
}
