//! FHIR operations. `$validate` at `/fhir/$validate`, `/fhir/{type}/$validate` and `/fhir/{type}/{id}/$validate`:
//! the same validator that guards every write, answering 200 with the OperationOutcome unless the
//! request itself is malformed. The Task workflow operations are dispatched from here to `workflow`,
//! the scheduling operations to `availability` and `consult`.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rex_fhir::{Issue, IssueCode};
use rex_i18n::msg;
use serde_json::Value;

use super::write::known_type;
use super::{attention, availability, consult, query_pairs, workflow};
use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::{BodyKind, body_kind, fhir_json, parse_json, read_body, stored_json};
use crate::validation::validate;

/// `POST /fhir/$validate`.
pub async fn system(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, &caller, None, None, query, &headers, body).await
}

/// `POST /fhir/{type}/{operation}`: type-level operations; `$validate` is the one rex has.
pub async fn type_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, operation)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    match operation.as_str() {
        "$validate" => run(&state, &caller, Some(&resource_type), None, query, &headers, body).await,
        "$claim-next" if resource_type == "Task" => {
            workflow::claim_next(&state, &caller, workflow_arguments(&state, &headers, body).await?).await
        }
        "$partner-updates" if resource_type == "Task" => {
            attention::partner_updates(&state, &caller, &parameters_body(&state, &headers, body).await?).await
        }
        "$find" if resource_type == "Appointment" => {
            consult::find(&state, &caller, &parameters_body(&state, &headers, body).await?).await
        }
        "$book" if resource_type == "Appointment" => {
            consult::book(&state, &caller, &parameters_body(&state, &headers, body).await?).await
        }
        other => Err(unknown_operation(other)),
    }
}

/// `POST /fhir/{type}/{id}/{operation}`: instance-level operations.
pub async fn instance_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    match (operation.as_str(), workflow::action(&operation)) {
        ("$validate", _) => run(&state, &caller, Some(&resource_type), Some(&id), query, &headers, body).await,
        ("$opened", _) if resource_type == "Task" => {
            attention::opened(&state, &caller, &id, &parameters_body(&state, &headers, body).await?).await
        }
        (_, Some(action)) if resource_type == "Task" => {
            workflow::operate(&state, &caller, &id, action, workflow_arguments(&state, &headers, body).await?).await
        }
        ("$request-consult", _) if resource_type == "Task" => {
            consult::request(&state, &caller, &id, &parameters_body(&state, &headers, body).await?).await
        }
        ("$cancel", _) if resource_type == "Appointment" => {
            consult::cancel(&state, &caller, &id, &parameters_body(&state, &headers, body).await?).await
        }
        ("$open-slots" | "$block-time", _) if availability::is_schedule_actor(&resource_type) => {
            let parameters = parameters_body(&state, &headers, body).await?;
            let actor = format!("{resource_type}/{id}");
            if operation == "$open-slots" {
                availability::open_slots(&state, &caller, &actor, &parameters).await
            } else {
                availability::block_time(&state, &caller, &actor, &parameters).await
            }
        }
        (other, _) => Err(unknown_operation(other)),
    }
}

/// The Parameters body of an operation (an empty body is a Parameters without parameters).
async fn parameters_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_body(body, state.config.limits).await?;
    if bytes.is_empty() {
        return Ok(serde_json::json!({"resourceType": "Parameters"}));
    }
    if body_kind(headers)? != BodyKind::FhirJson {
        return Err(ApiError::unsupported_media(msg!("operation-media")));
    }
    let parameters = parse_json(bytes, state.config.limits).await?;
    if parameters["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(msg!("operation-not-parameters")));
    }
    Ok(parameters)
}

/// The Parameters body of a workflow operation (an empty body means no parameters).
async fn workflow_arguments(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<workflow::Arguments, ApiError> {
    Ok(workflow::Arguments::from_parameters(&parameters_body(state, headers, body).await?))
}

fn unknown_operation(operation: &str) -> ApiError {
    ApiError::one(StatusCode::NOT_FOUND, IssueCode::NotSupported, msg!("operation-unknown", operation))
}

/// What a `$validate` request asks (Parameters body or bare resource).
#[derive(Default)]
struct ValidateRequest {
    resource: Option<Value>,
    profile: Option<String>,
    mode: Option<String>,
}

fn read_request(body: Value) -> ValidateRequest {
    if body["resourceType"] != "Parameters" {
        return ValidateRequest { resource: Some(body), ..ValidateRequest::default() };
    }
    let mut request = ValidateRequest::default();
    for parameter in body["parameter"].as_array().into_iter().flatten() {
        let text = |keys: &[&str]| keys.iter().find_map(|k| parameter[*k].as_str().map(str::to_string));
        match parameter["name"].as_str() {
            Some("resource") => request.resource = parameter.get("resource").cloned(),
            Some("profile") => request.profile = text(&["valueUri", "valueCanonical", "valueString"]),
            Some("mode") => request.mode = text(&["valueCode", "valueString"]),
            _ => {}
        }
    }
    request
}

async fn run(
    state: &AppState,
    caller: &Caller,
    resource_type: Option<&str>,
    id: Option<&str>,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.config.limits).await?;
    let ValidateRequest { mut resource, mut profile, mode } = if bytes.is_empty() {
        ValidateRequest::default()
    } else {
        if body_kind(headers)? != BodyKind::FhirJson {
            return Err(ApiError::unsupported_media(msg!("validate-media")));
        }
        read_request(parse_json(bytes, state.config.limits).await?)
    };
    if let Some((_, value)) = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "profile") {
        profile = Some(value);
    }
    if mode.as_deref() == Some("delete") {
        return Ok(fhir_json(StatusCode::OK, &crate::language::outcome(&[no_issues()])));
    }
    if resource.is_none()
        && let (Some(resource_type), Some(id)) = (resource_type, id)
    {
        caller.require(resource_type, rex_auth::Interaction::Read)?;
        let stored = match state.store.read(resource_type, id).await?.filter(|s| !s.deleted) {
            Some(stored) if caller.sees(&stored) => stored,
            Some(_) => return Err(ApiError::hidden(&format!("{resource_type}/{id}"))),
            None => {
                return Err(ApiError::not_found(msg!(
                    "resource-not-known",
                    reference = format!("{resource_type}/{id}")
                )));
            }
        };
        resource = Some(stored_json(&stored)?);
    }
    let resource = resource.ok_or_else(|| ApiError::bad_request(msg!("validate-no-resource")))?;
    if let Some(expected) = resource_type
        && resource["resourceType"].as_str() != Some(expected)
    {
        return Err(ApiError::bad_request(msg!("validate-wrong-type", expected, found = resource["resourceType"])));
    }
    let (_, mut issues) = validate(&state.checker(caller), resource, profile.into_iter().collect()).await?;
    if issues.is_empty() {
        issues.push(no_issues());
    }
    Ok(fhir_json(StatusCode::OK, &crate::language::outcome(&issues)))
}

fn no_issues() -> Issue {
    Issue::information(IssueCode::Informational, msg!("validate-no-issues"))
}
