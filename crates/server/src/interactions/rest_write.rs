//! The REST routes of create, update, delete and patch (single resources and conditional forms).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rex_i18n::msg;
use serde_json::Value;

use super::write::{
    Target, WriteOp, WriteOutcome, apply_patch, check_resource, execute, known_type, patch_from_binary,
};
use super::{format_param, in_transaction, query_pairs};
use super::{intake, workflow};
use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::{
    BodyKind, Prefer, ReturnPreference, body_kind, check_accept, fhir_json, if_match, off_runtime, parse_json,
    parse_json_patch, read_body, resource_response, stored_json,
};
use crate::validation::require_valid;

/// Runs one REST write and, for an authenticated caller, its AuditEvent in the same transaction.
async fn run(state: &AppState, caller: &Caller, op: WriteOp) -> Result<WriteOutcome, ApiError> {
    crate::notifications::check_endpoint(state, caller, &op).await?;
    in_transaction(&state.store, op.isolation(), &(caller, op), |tx, (caller, op)| {
        Box::pin(async move {
            let outcome = execute(tx, caller, op.clone()).await?;
            if let Some(event) = write_event(caller, op, &outcome) {
                let audit = WriteOp::Create {
                    resource_type: "AuditEvent".into(),
                    resource: event,
                    id: None,
                    if_none_exist: None,
                };
                execute(tx, &Caller::Unrestricted, audit).await?;
            }
            Ok(outcome)
        })
    })
    .await
}

/// The AuditEvent of a write that changed something, when the caller has an identity.
fn write_event(caller: &Caller, op: &WriteOp, outcome: &WriteOutcome) -> Option<serde_json::Value> {
    if *caller == Caller::Unrestricted {
        return None;
    }
    let (interaction, action, entity) = match (op, outcome) {
        (_, WriteOutcome::Created(stored)) => ("create", "C", format!("{}/{}", stored.resource_type, stored.id)),
        (_, WriteOutcome::Updated(stored)) => ("update", "U", format!("{}/{}", stored.resource_type, stored.id)),
        (WriteOp::Delete { resource_type, target: Target::Id(id), .. }, WriteOutcome::Deleted(_)) => {
            ("delete", "D", format!("{resource_type}/{id}"))
        }
        (WriteOp::Delete { resource_type, .. }, WriteOutcome::Deleted(_)) => ("delete", "D", resource_type.clone()),
        _ => return None,
    };
    Some(crate::audit::rest_event(caller, interaction, action, &[entity]))
}

/// Turns a write's outcome into the response the client's `Prefer` header asks for.
pub fn write_response(state: &AppState, outcome: &WriteOutcome, prefer: Prefer) -> Result<Response, ApiError> {
    let status = outcome.status();
    let Some(stored) = outcome.stored() else {
        return Ok(match prefer.return_ {
            ReturnPreference::OperationOutcome => {
                fhir_json(StatusCode::OK, &crate::language::success(msg!("outcome-deleted")))
            }
            _ => StatusCode::NO_CONTENT.into_response(),
        });
    };
    let body = match prefer.return_ {
        ReturnPreference::Minimal => None,
        ReturnPreference::Representation => Some(stored_json(stored)?),
        ReturnPreference::OperationOutcome => Some(crate::language::success(match outcome {
            WriteOutcome::Created(_) => msg!("outcome-created"),
            WriteOutcome::Existing(_) => msg!("outcome-existing"),
            _ => msg!("outcome-updated"),
        })),
    };
    let mut response = resource_response(status, stored, body.as_ref());
    let location =
        format!("{}/{}/{}/_history/{}", state.config.base_url, stored.resource_type, stored.id, stored.version_id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

/// Reads the resource of a create or update: FHIR JSON (415 otherwise), structurally sound (400
/// otherwise, with locations) and valid against its definitions and declared profiles (422).
async fn accepted_resource(
    state: &AppState,
    caller: &Caller,
    resource_type: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    match body_kind(headers)? {
        BodyKind::FhirJson => {}
        _ => {
            return Err(ApiError::unsupported_media(msg!("takes-fhir-resource")));
        }
    }
    let bytes = read_body(body, state.config.limits).await?;
    let resource = parse_json(bytes, state.config.limits).await?;
    let resource_type = resource_type.to_string();
    let resource = off_runtime(move || check_resource(&resource_type, &resource).map(|()| resource)).await?;
    require_valid(&state.checker(caller), resource, Vec::new()).await
}

/// `POST /fhir/{type}`: create, conditional with `If-None-Exist`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    check_accept(format_param(&query_pairs(query.as_deref())))?;
    if resource_type == "Binary"
        && let Some(content_type) = crate::binary::raw_content_type(&headers)
    {
        let outcome = crate::binary::upload(&state, &caller, content_type, body).await?;
        return write_response(&state, &outcome, Prefer::from_headers(&headers));
    }
    let resource = accepted_resource(&state, &caller, &resource_type, &headers, body).await?;
    let if_none_exist = headers
        .get("if-none-exist")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::bad_request(msg!("if-none-exist-not-text")))?;
    if resource_type == "Communication"
        && if_none_exist.is_none()
        && let Some(outcome) = workflow::receive_answer(&state, &caller, &resource).await?
    {
        return write_response(&state, &outcome, Prefer::from_headers(&headers));
    }
    if resource_type == "Task"
        && if_none_exist.is_none()
        && let Some(outcome) = intake::take_in_task(&state, &caller, &resource).await?
    {
        return write_response(&state, &outcome, Prefer::from_headers(&headers));
    }
    let op = WriteOp::Create { resource_type, resource, id: None, if_none_exist };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}

/// `PUT /fhir/{type}/{id}`: update, or create with the client's id.
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let resource = accepted_resource(&state, &caller, &resource_type, &headers, body).await?;
    let op = WriteOp::Update { resource_type, target: Target::Id(id), resource, if_match: if_match(&headers)? };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}

/// `PUT /fhir/{type}?query`: conditional update.
pub async fn conditional_update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let query = query
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::bad_request(msg!("conditional-update-needs-search")))?;
    let resource = accepted_resource(&state, &caller, &resource_type, &headers, body).await?;
    let op = WriteOp::Update { resource_type, target: Target::Search(query), resource, if_match: if_match(&headers)? };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}

/// `DELETE /fhir/{type}/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let op = WriteOp::Delete { resource_type, target: Target::Id(id), if_match: if_match(&headers)? };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}

/// `DELETE /fhir/{type}?query`: conditional delete of a single match.
pub async fn conditional_delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let query = query.filter(|q| !q.is_empty()).ok_or_else(|| {
        ApiError::one(
            StatusCode::METHOD_NOT_ALLOWED,
            rex_fhir::IssueCode::NotSupported,
            msg!("conditional-delete-needs-search"),
        )
    })?;
    let op = WriteOp::Delete { resource_type, target: Target::Search(query), if_match: None };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}

/// `PATCH /fhir/{type}/{id}` with a JSON Patch body. The patched resource is validated like the
/// body of a PUT (profiles, terminology, invariants: 422) and written as an update of the version
/// it was made from, so a concurrent change in between is a 412, never a lost update.
pub async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let kind = body_kind(&headers)?;
    let bytes = read_body(body, state.config.limits).await?;
    let patch = match kind {
        BodyKind::JsonPatch => parse_json_patch(&bytes, state.config.limits)?,
        BodyKind::FhirJson => patch_from_binary(&parse_json(bytes, state.config.limits).await?)?,
        BodyKind::Form => return Err(ApiError::unsupported_media(msg!("patch-content-type"))),
    };
    let current = match state.store.read(&resource_type, &id).await? {
        Some(stored) if !caller.sees(&stored) => return Err(ApiError::hidden(&format!("{resource_type}/{id}"))),
        Some(stored) if stored.deleted => {
            return Err(ApiError::gone(msg!("resource-deleted", reference = format!("{resource_type}/{id}"))));
        }
        Some(stored) => stored,
        None => {
            return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("{resource_type}/{id}"))));
        }
    };
    if let Some(expected) = if_match(&headers)?.filter(|v| *v != current.version_id) {
        return Err(ApiError::precondition_failed(msg!("version-conflict", expected, current = current.version_id)));
    }
    let patched = apply_patch(&resource_type, &current, &patch)?;
    let resource = require_valid(&state.checker(&caller), patched, Vec::new()).await?;
    let op = WriteOp::Update { resource_type, target: Target::Id(id), resource, if_match: Some(current.version_id) };
    let outcome = run(&state, &caller, op).await?;
    write_response(&state, &outcome, Prefer::from_headers(&headers))
}
