//! Consult reminders: a booked telehealth consult starting within the lead time gets, once, the
//! flag [`FLAG_SYSTEM`]`|reminded` and the `consult-event` `reminder`; that write reaches the
//! partner's Subscriptions through the outbox like every consult change.
//!
//! The worker runs on every instance; each candidate is re-checked under its row lock, so a
//! reminder goes out once however many instances find it. The clock is a parameter, so tests
//! drive it. Rescheduling a consult clears the flag: the new time gets its own reminder.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rex_i18n::msg;
use rex_referral::scheduling::{CONSULT_SERVICE, SERVICE_SYSTEM};
use rex_store::Isolation;
use serde_json::{Value, json};

use super::parameters;
use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::{Caller, owner};
use crate::error::ApiError;
use crate::http::stored_json;

/// `meta.tag` system of the flags rex puts on consult Appointments.
pub const FLAG_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/appointment-flag";
/// The flag of a consult whose reminder was sent.
pub const REMINDED: &str = "reminded";
/// Appointments examined per run; the next run takes the rest.
const BATCH: usize = 200;

/// Default lead time of a reminder (`--consult-reminder`): a day before the consult.
pub const DEFAULT_LEAD: Duration = Duration::from_secs(24 * 3600);

/// Sends the reminders of booked consults starting between `now` and `now + lead`; returns the
/// Appointment ids reminded by this call.
pub async fn remind_due(state: &AppState, now: DateTime<Utc>, lead: Duration) -> Result<Vec<String>, ApiError> {
    let until = now + chrono::Duration::from_std(lead).map_err(|_| ApiError::internal())?;
    let instant = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let query = parameters::search(
        "Appointment",
        &[
            ("status", "booked".to_string()),
            ("service-type", format!("{SERVICE_SYSTEM}|{CONSULT_SERVICE}")),
            ("date", format!("ge{}", instant(now))),
            ("date", format!("le{}", instant(until))),
            ("_tag:not", format!("{FLAG_SYSTEM}|{REMINDED}")),
            ("_count", BATCH.to_string()),
            ("_total", "none".to_string()),
        ],
    )?;
    let mut reminded = Vec::new();
    for candidate in state.store.search(&query).await?.matches {
        let id = candidate.id;
        let context = (state, id.as_str(), now, until);
        let done = super::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
            let (state, id, now, until) = *context;
            Box::pin(async move {
                let Some(current) = tx.read_for_update("Appointment", id).await? else { return Ok(false) };
                let mut appointment = stored_json(&current)?;
                if !is_due(&appointment, now, until) {
                    return Ok(false);
                }
                flag(&mut appointment);
                let lang = crate::language::of_partner(state, owner(&appointment));
                let start = appointment["start"].as_str().unwrap_or_default();
                appointment["comment"] = json!(msg!("consult-reminder", start).render(lang));
                super::consult::set_event(&mut appointment, "reminder");
                let update = WriteOp::Update {
                    resource_type: "Appointment".into(),
                    target: Target::Id(id.to_string()),
                    resource: appointment,
                    if_match: Some(current.version_id),
                };
                execute(tx, &Caller::Unrestricted, update).await?;
                Ok(true)
            })
        })
        .await?;
        if done {
            reminded.push(id);
        }
    }
    Ok(reminded)
}

fn is_reminded(appointment: &Value) -> bool {
    appointment["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["system"] == FLAG_SYSTEM && t["code"] == REMINDED)
}

/// Booked, not yet reminded, and starting between `now` and `until`.
fn is_due(appointment: &Value, now: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    let start = appointment["start"].as_str().and_then(parameters::instant);
    appointment["status"] == "booked" && !is_reminded(appointment) && start.is_some_and(|s| now <= s && s <= until)
}

fn flag(appointment: &mut Value) {
    let tag = json!({"system": FLAG_SYSTEM, "code": REMINDED, "display": "Reminder sent"});
    match appointment["meta"]["tag"].as_array_mut() {
        Some(tags) => tags.push(tag),
        None => appointment["meta"]["tag"] = json!([tag]),
    }
}

/// Clears the reminder flag and text (a rescheduled consult is reminded of its new time).
pub fn forget_reminder(appointment: &mut Value) {
    if let Some(tags) = appointment["meta"]["tag"].as_array_mut() {
        tags.retain(|t| !(t["system"] == FLAG_SYSTEM && t["code"] == REMINDED));
    }
    if let Some(fields) = appointment.as_object_mut() {
        fields.remove("comment");
    }
}

/// Runs [`remind_due`] every `interval` until the process ends.
pub fn spawn_worker(state: AppState, interval: Duration, lead: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match remind_due(&state, Utc::now(), lead).await {
                Ok(ids) if !ids.is_empty() => tracing::info!(reminded = ids.len(), "consult reminders sent"),
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "consult reminders failed")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booked_consult_inside_the_lead_is_due_once() {
        let at = |text: &str| parameters::instant(text).unwrap();
        let mut appointment = json!({"status": "booked", "start": "2027-03-15T20:00:00+04:00"});
        let (now, until) = (at("2027-03-14T17:00:00Z"), at("2027-03-15T17:00:00Z"));
        assert!(is_due(&appointment, now, until));
        assert!(!is_due(&appointment, now, at("2027-03-15T15:00:00Z")));
        flag(&mut appointment);
        assert!(!is_due(&appointment, now, until));
        forget_reminder(&mut appointment);
        assert!(is_due(&appointment, now, until));
        appointment["status"] = json!("cancelled");
        assert!(!is_due(&appointment, now, until));
    }
}
