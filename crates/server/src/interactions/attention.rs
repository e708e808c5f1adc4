//! The worklist's "updated" marker, as two Task operations. `POST Task/{id}/$opened` records that
//! the calling specialist (their PractitionerRole) opened the referral; `POST Task/$partner-updates`
//! answers, for the Tasks a Parameters body names (`task` references), the partner's last change of
//! each (an answer to a request for information, an amended referral, a new attachment) and
//! whether the Task's assigned specialist has opened it since. The changes are recorded where they
//! are made (`workflow::resume`, `intake`), in the same transaction.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use rex_auth::Principal;
use rex_fhir::IssueCode;
use rex_i18n::msg;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::{fhir_json, stored_json};

/// Largest number of Tasks one `$partner-updates` asks about (a worklist page is 20).
const MAX_TASKS: usize = 200;

/// Kinds of partner change, as recorded.
pub const INFORMATION_RECEIVED: &str = "information-received";
pub const AMENDED: &str = "amended";
pub const ATTACHMENT: &str = "attachment";

/// `POST Task/{id}/$opened`. A staff member is recorded as their PractitionerRole; a development
/// caller (no authentication) names it in the `reader` parameter.
pub async fn opened(state: &AppState, caller: &Caller, id: &str, parameters: &Value) -> Result<Response, ApiError> {
    caller.require_staff("$opened")?;
    let reader = match caller {
        Caller::Authenticated(Principal::Staff { practitioner_role, .. }) => practitioner_role.clone(),
        _ => parameter(parameters, "reader").map(str::to_string),
    };
    let Some(reader) = reader.filter(|r| r.starts_with("PractitionerRole/")) else {
        return Err(ApiError::one(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueCode::Required,
            "$opened records a PractitionerRole: the signed-in staff member has none",
        )
        .at("Parameters.parameter.where(name='reader')"));
    };
    match state.store.read("Task", id).await? {
        Some(task) if !caller.sees(&task) => return Err(ApiError::hidden(&format!("Task/{id}"))),
        Some(task) if !task.deleted => {}
        _ => return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("Task/{id}")))),
    }
    let now = Utc::now();
    state.store.record_opening(id, &reader, now.timestamp_micros()).await?;
    let result = json!({"resourceType": "Parameters", "parameter": [
        {"name": "reader", "valueReference": {"reference": reader}},
        {"name": "opened", "valueInstant": now.to_rfc3339_opts(SecondsFormat::Millis, true)}]});
    Ok(fhir_json(StatusCode::OK, &result))
}

/// `POST Task/$partner-updates`: one `update` parameter per named Task (that the caller sees) the
/// partner changed, with `task`, `kind`, `time` and `seen` (whether the Task's owner, when it is a
/// PractitionerRole, opened it since).
pub async fn partner_updates(state: &AppState, caller: &Caller, parameters: &Value) -> Result<Response, ApiError> {
    caller.require_staff("$partner-updates")?;
    let named: Vec<String> = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "task")
        .filter_map(|p| p["valueReference"]["reference"].as_str()?.strip_prefix("Task/").map(str::to_string))
        .collect();
    if named.len() > MAX_TASKS {
        return Err(ApiError::bad_request(format!("$partner-updates takes at most {MAX_TASKS} Tasks"))
            .at("Parameters.parameter.where(name='task')"));
    }
    let mut owners = Vec::new();
    for id in &named {
        if let Some(task) = state.store.read("Task", id).await?.filter(|t| !t.deleted && caller.sees(t)) {
            owners.push((id.clone(), stored_json(&task)?["owner"]["reference"].as_str().map(str::to_string)));
        }
    }
    let ids: Vec<String> = owners.iter().map(|(id, _)| id.clone()).collect();
    let mut updates = Vec::new();
    for attention in state.store.task_attention(&ids).await? {
        let owner = owners.iter().find(|(id, _)| *id == attention.task_id).and_then(|(_, owner)| owner.as_deref());
        let seen = owner.is_some_and(|owner| owner.starts_with("PractitionerRole/") && attention.seen_by(owner));
        let time = DateTime::from_timestamp_micros(attention.updated_at).unwrap_or_default();
        updates.push(json!({"name": "update", "part": [
            {"name": "task", "valueReference": {"reference": format!("Task/{}", attention.task_id)}},
            {"name": "kind", "valueCode": attention.kind},
            {"name": "time", "valueInstant": time.to_rfc3339_opts(SecondsFormat::Millis, true)},
            {"name": "seen", "valueBoolean": seen}]}));
    }
    let mut result = json!({"resourceType": "Parameters"});
    if !updates.is_empty() {
        result["parameter"] = Value::Array(updates);
    }
    Ok(fhir_json(StatusCode::OK, &result))
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a str> {
    let found = parameters["parameter"].as_array()?.iter().find(|p| p["name"] == name)?;
    found["valueReference"]["reference"].as_str().or(found["valueString"].as_str())
}
