//! The consent a referral is shared under, and the check that flags a referral to the coordinator
//! when that consent no longer holds.
//!
//! Intake links the Consent to the referral's Task (extension `task-consent` and the tag
//! [`FLAG_SYSTEM`]`|consented`). The check runs on every instance with the SLA escalation's
//! interval and takes the clock as a parameter: an open consented Task whose Consent was
//! withdrawn (its current version is no longer `active`, denies, or was deleted), whose period has
//! ended, or that a later Consent of the same partner for the same patient withdraws, gets the tag
//! [`FLAG_SYSTEM`]`|consent-withdrawn` (worklist and
//! `Task?_tag=https://rex.example/fhir/CodeSystem/task-flag|consent-withdrawn`), a note saying why
//! and an AuditEvent, once (re-checked under the Task's row lock). Its workflow state does not
//! change: the coordinator decides.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_referral::consent::{CATEGORY_CODE, CATEGORY_SYSTEM, withdrawn_reason};
use rex_referral::task::{AUDIT_SYSTEM, extension_url};
use rex_store::{Isolation, Tx};
use serde_json::{Value, json};

use super::escalation::{FLAG_SYSTEM, add_flag, has_flag, write_flagged};

use crate::AppState;
use crate::access::{PARTNER_TAG_SYSTEM, owner};
use crate::error::ApiError;
use crate::http::stored_json;

/// The flag of a Task whose referral rests on a consent (the ones the check watches).
pub const CONSENTED: &str = "consented";
/// The flag of a Task whose consent no longer holds.
pub const CONSENT_WITHDRAWN: &str = "consent-withdrawn";
/// Task statuses of referrals still waiting for the hospital.
const OPEN_STATUSES: &[&str] = &["requested", "received", "accepted", "ready", "in-progress", "on-hold"];
/// Tasks examined per page.
const BATCH: usize = 200;

/// Links a new referral's Task to the Consent it is shared under.
pub fn link(task: &mut Value, consent_id: &str) {
    let extension =
        json!({"url": extension_url("task-consent"), "valueReference": {"reference": format!("Consent/{consent_id}")}});
    match task["extension"].as_array_mut() {
        Some(extensions) => extensions.push(extension),
        None => task["extension"] = json!([extension]),
    }
    add_flag(task, CONSENTED, "Shared under the patient's consent");
}

/// The Consent a Task is linked to (`Consent/{id}`).
pub fn linked_consent(task: &Value) -> Option<&str> {
    let url = extension_url("task-consent");
    task["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())?["valueReference"]["reference"].as_str()
}

/// Flags the open consented referral Tasks whose consent no longer holds at `now`; returns the
/// ids flagged by this call.
pub async fn flag_withdrawn_consents(state: &AppState, now: DateTime<Utc>) -> Result<Vec<String>, ApiError> {
    let pairs: Vec<(String, String)> = vec![
        ("_tag".into(), format!("{FLAG_SYSTEM}|{CONSENTED}")),
        ("_tag:not".into(), format!("{FLAG_SYSTEM}|{CONSENT_WITHDRAWN}")),
        ("status".into(), OPEN_STATUSES.join(",")),
        ("_sort".into(), "_id".into()),
        ("_count".into(), BATCH.to_string()),
        ("_total".into(), "none".into()),
    ];
    let mut query = SearchQuery::parse(SearchRegistry::r4(), "Task", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    let mut flagged = Vec::new();
    loop {
        let page = state.store.search(&query).await?.matches;
        let mut flagged_here = 0;
        for candidate in &page {
            let id = candidate.id.as_str();
            let done = super::in_transaction(&state.store, Isolation::RowLocking, &(id, now), |tx, context| {
                let (id, now) = *context;
                Box::pin(check_one(tx, id, now))
            })
            .await?;
            if done {
                flagged.push(id.to_string());
                flagged_here += 1;
            }
        }
        if page.len() < BATCH {
            return Ok(flagged);
        }
        // Flagged Tasks leave the result, so the next page starts that much earlier.
        query.offset += BATCH - flagged_here;
    }
}

/// Flags Task `id` when it is open, not yet flagged, and its consent no longer holds.
async fn check_one(tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool, ApiError> {
    let Some(current) = tx.read_for_update("Task", id).await? else { return Ok(false) };
    let mut task = stored_json(&current)?;
    let open = task["status"].as_str().is_some_and(|status| OPEN_STATUSES.contains(&status));
    let Some(consent) = linked_consent(&task).map(str::to_string) else { return Ok(false) };
    if !open || has_flag(&task, CONSENT_WITHDRAWN) {
        return Ok(false);
    }
    let Some(reason) = why_withdrawn(tx, &consent, now).await? else { return Ok(false) };
    add_flag(&mut task, CONSENT_WITHDRAWN, "Consent withdrawn or expired");
    let note = json!({"text": format!("Consent withdrawn: {reason}. Sharing rests on it; decide whether to go on."),
                      "time": now.to_rfc3339_opts(SecondsFormat::Secs, true)});
    match task["note"].as_array_mut() {
        Some(notes) => notes.push(note),
        None => task["note"] = json!([note]),
    }
    write_flagged(tx, id, current.version_id, task, audit_event(id, &consent, &reason, now)).await?;
    Ok(true)
}

/// Why the linked Consent no longer holds at `now`, or `None` while it does: its current version,
/// else a later Consent of the same partner about the same patient that withdraws it.
async fn why_withdrawn(tx: &mut Tx, reference: &str, now: DateTime<Utc>) -> Result<Option<String>, ApiError> {
    let Some((_, consent_id)) = reference.split_once('/') else { return Ok(None) };
    let stored = match tx.read("Consent", consent_id).await?.filter(|c| !c.deleted) {
        Some(stored) => stored,
        None => return Ok(Some(format!("{reference} was deleted"))),
    };
    let consent = stored_json(&stored)?;
    if let Some(reason) = withdrawn_reason(&consent, now) {
        return Ok(Some(format!("{reference}: {reason}")));
    }
    let (Some(patient), Some(partner)) = (consent["patient"]["reference"].as_str(), owner(&consent)) else {
        return Ok(None);
    };
    let since = DateTime::from_timestamp_micros(stored.last_updated).unwrap_or(now);
    let pairs: Vec<(String, String)> = vec![
        ("patient".into(), patient.to_string()),
        ("category".into(), format!("{CATEGORY_SYSTEM}|{CATEGORY_CODE}")),
        ("_tag".into(), format!("{PARTNER_TAG_SYSTEM}|{partner}")),
        ("_lastUpdated".into(), format!("gt{}", since.to_rfc3339_opts(SecondsFormat::Micros, true))),
        ("_count".into(), "50".into()),
    ];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Consent", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    for later in tx.search(&query).await?.matches.iter().filter(|later| later.id != consent_id) {
        if let Some(reason) = withdrawn_reason(&stored_json(later)?, now) {
            return Ok(Some(format!("the later Consent/{}: {reason}", later.id)));
        }
    }
    Ok(None)
}

fn audit_event(task_id: &str, consent: &str, reason: &str, now: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_SYSTEM, "code": "referral", "display": "Referral event"},
        "subtype": [{"system": AUDIT_SYSTEM, "code": CONSENT_WITHDRAWN, "display": "Consent withdrawn or expired"}],
        "action": "U",
        "recorded": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "outcome": "0",
        "outcomeDesc": reason,
        "agent": [{"who": {"reference": "Device/rex"}, "requestor": false}],
        "source": {"observer": {"display": "rex"}},
        "entity": [{"what": {"reference": format!("Task/{task_id}")}}, {"what": {"reference": consent}}],
    })
}

/// Runs [`flag_withdrawn_consents`] every `interval` until the process ends.
pub fn spawn_worker(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match flag_withdrawn_consents(&state, Utc::now()).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(flagged = ids.len(), "referrals with withdrawn consent flagged")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "consent check failed")
                }
            }
        }
    })
}
