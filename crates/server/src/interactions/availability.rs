//! Availability of specialists and interpreters for telehealth consults: `$open-slots` and
//! `$block-time` on `PractitionerRole/{id}` or `HealthcareService/{id}` (staff only).
//!
//! Each actor has one Schedule per service (`consult` for a specialist, `interpreting` for an
//! interpreter: a PractitionerRole or HealthcareService coded `interpreting`), carrying the actor's
//! IANA time zone. Slots are opened from wall-clock times in that zone (one-off or weekly, so 09:00
//! stays 09:00 across a daylight-saving change) and stored with the zone's offset; openings that
//! overlap an existing slot are skipped. Blocking time makes the free slots it overlaps
//! `busy-unavailable` and records the block as a slot of its own.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, Utc};
use chrono_tz::Tz;
use rex_fhir::IssueCode;
use rex_i18n::msg;
use rex_referral::scheduling::{
    self, CONSULT_SERVICE, INTERPRETING_SERVICE, SERVICE_SYSTEM, SchedulingError, Span, TIMEZONE_EXTENSION,
    WeeklyPattern,
};
use rex_store::{Isolation, StoredResource, Tx};
use serde_json::{Value, json};

use super::parameters::{self, Parameters, invalid};
use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::{fhir_json, stored_json};

/// The resource types whose instances have schedules.
pub fn is_schedule_actor(resource_type: &str) -> bool {
    matches!(resource_type, "PractitionerRole" | "HealthcareService")
}

/// The service an actor's schedule offers: interpreters are coded `interpreting`.
pub fn service_of(actor: &Value) -> &'static str {
    if offers_interpreting(actor) { INTERPRETING_SERVICE } else { CONSULT_SERVICE }
}

/// A PractitionerRole (`code`) or HealthcareService (`type`) coded as interpreting.
fn offers_interpreting(actor: &Value) -> bool {
    ["code", "type"].iter().flat_map(|field| actor[*field].as_array().into_iter().flatten()).any(|concept| {
        concept["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == SERVICE_SYSTEM && c["code"] == INTERPRETING_SERVICE)
    })
}

/// The Schedule.serviceType of a service.
pub fn service_type(service: &str) -> Value {
    let display =
        if service == INTERPRETING_SERVICE { "Interpreting for a telehealth consult" } else { "Telehealth consult" };
    json!([{"coding": [{"system": SERVICE_SYSTEM, "code": service, "display": display}]}])
}

fn scheduling_error(err: SchedulingError) -> ApiError {
    invalid(err.parameter, err.message)
}

/// `$open-slots`: opens free slots on the actor's schedule, creating the schedule on first use.
pub async fn open_slots(state: &AppState, caller: &Caller, actor: &str, body: &Value) -> Result<Response, ApiError> {
    let parameters = Parameters::new(body);
    let zone = zone_parameter(&parameters)?;
    let minutes = parameters.integer("slotMinutes")?.unwrap_or(30);
    let context = (caller, actor, &parameters, zone, minutes);
    let (schedule, opened, skipped) =
        super::in_transaction(&state.store, Isolation::Serializable, &context, |tx, context| {
            let (caller, actor, parameters, zone, minutes) = *context;
            Box::pin(async move {
                let (schedule, zone) = schedule_for(tx, caller, actor, zone).await?;
                let spans = requested_spans(parameters, zone, minutes)?;
                let Some(first) = spans.first().copied() else {
                    return Ok((schedule.id, 0usize, 0usize));
                };
                let last = spans.last().copied().unwrap_or(first);
                let existing = slots_overlapping(tx, &schedule.id, Span { start: first.start, end: last.end }).await?;
                let service = stored_json(&schedule)?["serviceType"].clone();
                let (mut opened, mut skipped) = (0, 0);
                for span in spans {
                    if existing.iter().any(|(_, slot)| slot_span(slot).is_some_and(|s| s.overlaps(&span))) {
                        skipped += 1;
                        continue;
                    }
                    let slot = new_slot(&schedule.id, &service, "free", span, zone, None);
                    create(tx, "Slot", slot).await?;
                    opened += 1;
                }
                Ok((schedule.id, opened, skipped))
            })
        })
        .await?;
    let result = json!({"resourceType": "Parameters", "parameter": [
        {"name": "schedule", "valueReference": {"reference": format!("Schedule/{schedule}")}},
        {"name": "opened", "valueInteger": opened},
        {"name": "skipped", "valueInteger": skipped},
    ]});
    Ok(fhir_json(StatusCode::OK, &result))
}

/// `$block-time`: the actor is unavailable from `start` to `end` (wall-clock in its zone).
pub async fn block_time(state: &AppState, caller: &Caller, actor: &str, body: &Value) -> Result<Response, ApiError> {
    let parameters = Parameters::new(body);
    let zone = zone_parameter(&parameters)?;
    let reason = parameters.text("reason").unwrap_or("Unavailable").to_string();
    let context = (caller, actor, &parameters, zone, reason.as_str());
    let (blocked, conflicts) = super::in_transaction(&state.store, Isolation::Serializable, &context, |tx, context| {
        let (caller, actor, parameters, zone, reason) = *context;
        Box::pin(async move {
            let (schedule, zone) = schedule_for(tx, caller, actor, zone).await?;
            let start =
                scheduling::parse_local(parameters.required_text("start")?, "start").map_err(scheduling_error)?;
            let end = scheduling::parse_local(parameters.required_text("end")?, "end").map_err(scheduling_error)?;
            let span = match (scheduling::instant(zone, start), scheduling::instant(zone, end)) {
                (Some(start), Some(end)) if start < end => Span { start, end },
                (Some(_), Some(_)) => return Err(invalid("end", "end must be after start")),
                _ => {
                    return Err(invalid(
                        "start",
                        "start or end does not exist in the time zone (a daylight-saving gap)",
                    ));
                }
            };
            let mut blocked = 0;
            let mut conflicts = Vec::new();
            for (stored, mut slot) in slots_overlapping(tx, &schedule.id, span).await? {
                match slot["status"].as_str() {
                    Some("free") => {
                        slot["status"] = json!("busy-unavailable");
                        slot["comment"] = json!(reason);
                        let op = WriteOp::Update {
                            resource_type: "Slot".into(),
                            target: Target::Id(stored.id.clone()),
                            resource: slot,
                            if_match: Some(stored.version_id),
                        };
                        execute(tx, &Caller::Unrestricted, op).await?;
                        blocked += 1;
                    }
                    Some("busy") => conflicts.push(format!("Slot/{}", stored.id)),
                    _ => {}
                }
            }
            let service = stored_json(&schedule)?["serviceType"].clone();
            create(tx, "Slot", new_slot(&schedule.id, &service, "busy-unavailable", span, zone, Some(reason))).await?;
            Ok((blocked, conflicts))
        })
    })
    .await?;
    let mut parameter = vec![json!({"name": "blocked", "valueInteger": blocked})];
    // Booked consults in the blocked time stay booked: staff reschedule or cancel them.
    parameter.extend(conflicts.iter().map(|slot| json!({"name": "booked", "valueReference": {"reference": slot}})));
    Ok(fhir_json(StatusCode::OK, &json!({"resourceType": "Parameters", "parameter": parameter})))
}

fn zone_parameter(parameters: &Parameters) -> Result<Option<Tz>, ApiError> {
    parameters
        .text("timezone")
        .map(|name| scheduling::parse_zone(name).map_err(|message| invalid("timezone", message)))
        .transpose()
}

/// The actor's schedule (created when it has none) and its time zone: `zone` when given (and
/// recorded on the schedule), else the schedule's.
async fn schedule_for(
    tx: &mut Tx,
    caller: &Caller,
    actor: &str,
    zone: Option<Tz>,
) -> Result<(StoredResource, Tz), ApiError> {
    if !caller.manages_schedule_of(actor) {
        return Err(ApiError::one(
            StatusCode::FORBIDDEN,
            IssueCode::Forbidden,
            format!("You may not open or block time on the schedule of {actor}"),
        )
        .denied());
    }
    let (actor_type, actor_id) = actor.split_once('/').unwrap_or_default();
    let actor_json = match tx.read(actor_type, actor_id).await?.filter(|a| !a.deleted) {
        Some(stored) => stored_json(&stored)?,
        None => return Err(ApiError::not_found(msg!("resource-not-known", reference = actor))),
    };
    let service = service_of(&actor_json);
    let query = parameters::search(
        "Schedule",
        &[("actor", actor.to_string()), ("service-type", format!("{SERVICE_SYSTEM}|{service}"))],
    )?;
    let found = tx.search(&query).await?.matches.into_iter().next();
    let current = match &found {
        Some(stored) => Some(stored_json(stored)?),
        None => None,
    };
    let known_zone = current.as_ref().and_then(schedule_zone);
    let zone = match (zone, known_zone) {
        (Some(zone), _) => zone,
        (None, Some(zone)) => return Ok((found.ok_or_else(ApiError::internal)?, zone)),
        (None, None) => return Err(parameters::required("timezone")),
    };
    let mut schedule = current.unwrap_or_else(|| {
        json!({"resourceType": "Schedule", "active": true, "serviceType": service_type(service),
               "actor": [{"reference": actor, "display": actor_json["name"].as_str().unwrap_or(actor)}]})
    });
    schedule["extension"] = json!([{"url": TIMEZONE_EXTENSION, "valueCode": zone.name()}]);
    let stored = match found {
        Some(existing) if known_zone == Some(zone) => existing,
        Some(existing) => {
            let op = WriteOp::Update {
                resource_type: "Schedule".into(),
                target: Target::Id(existing.id.clone()),
                resource: schedule,
                if_match: Some(existing.version_id),
            };
            execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?
        }
        None => create(tx, "Schedule", schedule).await?,
    };
    Ok((stored, zone))
}

/// The IANA zone a Schedule records.
pub fn schedule_zone(schedule: &Value) -> Option<Tz> {
    let extensions = schedule["extension"].as_array()?;
    let name = extensions.iter().find(|e| e["url"] == TIMEZONE_EXTENSION)?["valueCode"].as_str()?;
    scheduling::parse_zone(name).ok()
}

/// The spans a `$open-slots` request asks for: weekly when it names weekdays, else one-off.
fn requested_spans(parameters: &Parameters, zone: Tz, minutes: i64) -> Result<Vec<Span>, ApiError> {
    let weekdays = parameters.texts("weekday");
    if weekdays.is_empty() {
        let start = scheduling::parse_local(parameters.required_text("start")?, "start").map_err(scheduling_error)?;
        let end = scheduling::parse_local(parameters.required_text("end")?, "end").map_err(scheduling_error)?;
        return scheduling::one_off_slots(zone, start, end, minutes).map_err(scheduling_error);
    }
    let date = |name: &'static str| -> Result<chrono::NaiveDate, ApiError> {
        let text = parameters.required_text(name)?;
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| invalid(name, format!("'{text}' is not a date like 2027-03-08")))
    };
    let time = |name: &'static str| -> Result<chrono::NaiveTime, ApiError> {
        scheduling::parse_time(parameters.required_text(name)?, name).map_err(scheduling_error)
    };
    let pattern = WeeklyPattern {
        weekdays: weekdays
            .iter()
            .map(|d| scheduling::parse_weekday(d))
            .collect::<Result<_, _>>()
            .map_err(scheduling_error)?,
        start_time: time("startTime")?,
        end_time: time("endTime")?,
        from: date("from")?,
        until: date("until")?,
    };
    scheduling::weekly_slots(zone, &pattern, minutes).map_err(scheduling_error)
}

/// The slots of a schedule that overlap `span` (a slot lasts at most a day).
async fn slots_overlapping(tx: &mut Tx, schedule: &str, span: Span) -> Result<Vec<(StoredResource, Value)>, ApiError> {
    let instant = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let query = parameters::search(
        "Slot",
        &[
            ("schedule", format!("Schedule/{schedule}")),
            ("start", format!("ge{}", instant(span.start - Duration::days(1)))),
            ("start", format!("lt{}", instant(span.end))),
            ("_count", rex_fhir::query::MAX_COUNT.to_string()),
        ],
    )?;
    let mut found = Vec::new();
    for stored in tx.search(&query).await?.matches {
        let slot = stored_json(&stored)?;
        if slot_span(&slot).is_some_and(|s| s.overlaps(&span)) {
            found.push((stored, slot));
        }
    }
    Ok(found)
}

/// A Slot's start and end.
pub fn slot_span(slot: &Value) -> Option<Span> {
    let start = parameters::instant(slot["start"].as_str()?)?;
    let end = parameters::instant(slot["end"].as_str()?)?;
    Some(Span { start, end })
}

fn new_slot(schedule: &str, service: &Value, status: &str, span: Span, zone: Tz, comment: Option<&str>) -> Value {
    let mut slot = json!({"resourceType": "Slot", "schedule": {"reference": format!("Schedule/{schedule}")},
                          "serviceType": service, "status": status,
                          "start": scheduling::in_zone(span.start, zone), "end": scheduling::in_zone(span.end, zone)});
    if let Some(comment) = comment {
        slot["comment"] = json!(comment);
    }
    slot
}

pub(super) async fn create(tx: &mut Tx, resource_type: &str, resource: Value) -> Result<StoredResource, ApiError> {
    let op = WriteOp::Create { resource_type: resource_type.into(), resource, id: None, if_none_exist: None };
    execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_are_coded_interpreting() {
        let interpreter = json!({"resourceType": "PractitionerRole",
            "code": [{"coding": [{"system": SERVICE_SYSTEM, "code": INTERPRETING_SERVICE}]}]});
        let service = json!({"resourceType": "HealthcareService",
            "type": [{"coding": [{"system": SERVICE_SYSTEM, "code": INTERPRETING_SERVICE}]}]});
        assert_eq!(service_of(&interpreter), INTERPRETING_SERVICE);
        assert_eq!(service_of(&service), INTERPRETING_SERVICE);
        assert_eq!(service_of(&json!({"resourceType": "PractitionerRole"})), CONSULT_SERVICE);
    }
}
