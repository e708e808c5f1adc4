//! Specialist queue work on referral Tasks, as FHIR operations: `$claim`, `$release`, `$redirect`,
//! `$decline`, `$request-information` and `$complete` on `Task/{id}`, and `$claim-next` on `Task`.
//! Every change follows the state machine table of `rex_referral::workflow`, takes the Task's row
//! lock, and writes an AuditEvent in the same transaction.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{SecondsFormat, Utc};
use rex_fhir::IssueCode;
use rex_i18n::msg;
use rex_referral::task::{AUDIT_SYSTEM, extension_url};
use rex_referral::workflow::{Action, TransitionError, transition};
use rex_store::{Isolation, StoredResource, Tx};
use serde_json::{Value, json};

use rex_fhir::query::SearchQuery;
use rex_fhir::search::SearchRegistry;

use super::write::{Target, WriteOp, WriteOutcome, execute};
use crate::AppState;
use crate::access::{Caller, owner, set_owner};
use crate::error::ApiError;
use crate::http::{resource_response, stored_json};

/// The parameters of a workflow operation (a Parameters body).
#[derive(Debug, Default)]
pub struct Arguments {
    /// `owner`: the specialist's PractitionerRole reference (claim).
    pub owner: Option<String>,
    /// `queue`: a queue code (redirect, claim-next).
    pub queue: Option<String>,
    /// `reason`: why (redirect, decline).
    pub reason: Option<String>,
    /// `message`: the question to the partner (request-information).
    pub message: Option<String>,
    /// `opinion`: reference to the DiagnosticReport or Communication with the opinion (complete).
    pub opinion: Option<String>,
    /// The consult Appointment a consult action is about (set by `consult.rs`, not a parameter).
    pub appointment: Option<String>,
}

impl Arguments {
    pub fn from_parameters(body: &Value) -> Arguments {
        let mut arguments = Arguments::default();
        for parameter in body["parameter"].as_array().into_iter().flatten() {
            let text = parameter["valueString"]
                .as_str()
                .or(parameter["valueCode"].as_str())
                .or(parameter["valueReference"]["reference"].as_str())
                .map(str::to_string);
            match parameter["name"].as_str() {
                Some("owner") => arguments.owner = text,
                Some("queue") => arguments.queue = text,
                Some("reason") => arguments.reason = text,
                Some("message") => arguments.message = text,
                Some("opinion") => arguments.opinion = text,
                _ => {}
            }
        }
        arguments
    }
}

/// The action an operation name stands for.
pub fn action(operation: &str) -> Option<Action> {
    match operation {
        "$claim" => Some(Action::Claim),
        "$release" => Some(Action::Release),
        "$redirect" => Some(Action::Redirect),
        "$decline" => Some(Action::Decline),
        "$request-information" => Some(Action::RequestInformation),
        "$complete" => Some(Action::Complete),
        _ => None,
    }
}

fn refused(err: TransitionError) -> ApiError {
    ApiError::one(StatusCode::CONFLICT, IssueCode::BusinessRule, err.message()).at("Task.status")
}

fn required(name: &str, action: Action) -> ApiError {
    ApiError::one(
        StatusCode::BAD_REQUEST,
        IssueCode::Required,
        format!("{} needs the parameter '{name}'", action.name()),
    )
    .at(&format!("Parameters.parameter.where(name='{name}')"))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Sets (or replaces) one of rex's extensions on the Task.
fn set_extension(task: &mut Value, name: &str, value: Value) {
    let url = extension_url(name);
    let extensions = task["extension"].as_array_mut();
    let mut list: Vec<Value> = extensions.map(std::mem::take).unwrap_or_default();
    list.retain(|e| e["url"] != url.as_str());
    let mut extension = json!({"url": url});
    if let (Some(object), Some(value)) = (extension.as_object_mut(), value.as_object()) {
        object.extend(value.clone());
    }
    list.push(extension);
    task["extension"] = Value::Array(list);
}

fn extension_value<'a>(task: &'a Value, name: &str) -> Option<&'a Value> {
    let url = extension_url(name);
    task["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())
}

/// Runs a workflow operation on `Task/{id}`.
pub async fn operate(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    arguments: Arguments,
) -> Result<Response, ApiError> {
    caller.require_staff(action.name())?;
    let arguments = owner_for(caller, action, arguments)?;
    let context = (state, caller, id, action, &arguments);
    let stored = super::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
        let (state, caller, id, action, arguments) = *context;
        Box::pin(async move {
            let current = tx.read_for_update("Task", id).await?;
            let current = match current.filter(|t| !t.deleted) {
                Some(task) if caller.sees(&task) => task,
                Some(_) => return Err(ApiError::hidden(&format!("Task/{id}"))),
                None => return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("Task/{id}")))),
            };
            apply(tx, state, caller, current, action, arguments).await
        })
    })
    .await?;
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}

/// `Task/$claim-next`: claims the open referral of a queue that is due first.
pub async fn claim_next(state: &AppState, caller: &Caller, arguments: Arguments) -> Result<Response, ApiError> {
    caller.require_staff("$claim-next")?;
    let arguments = owner_for(caller, Action::Claim, arguments)?;
    let queue = arguments.queue.clone().ok_or_else(|| required("queue", Action::Claim))?;
    if !caller.serves_queue(&queue) {
        return Err(ApiError::one(
            StatusCode::FORBIDDEN,
            IssueCode::Forbidden,
            format!("You do not serve the queue '{queue}'"),
        )
        .at("Parameters.parameter.where(name='queue')")
        .denied());
    }
    let context = (state, caller, queue, &arguments);
    let stored = super::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
        let (state, caller, queue, arguments) = context;
        Box::pin(async move {
            let next = tx.next_in_queue(queue).await?;
            let next = next.ok_or_else(|| ApiError::not_found(format!("The queue '{queue}' has no open referral")))?;
            apply(tx, state, caller, next, Action::Claim, arguments).await
        })
    })
    .await?;
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}

/// A specialist claims for themself: the owner defaults to their PractitionerRole and may not be
/// anyone else's. Coordinators and admins may assign any PractitionerRole.
fn owner_for(caller: &Caller, action: Action, mut arguments: Arguments) -> Result<Arguments, ApiError> {
    let Caller::Authenticated(rex_auth::Principal::Staff {
        role: rex_auth::StaffRole::Specialist,
        practitioner_role,
        ..
    }) = caller
    else {
        return Ok(arguments);
    };
    if action != Action::Claim {
        return Ok(arguments);
    }
    match (&arguments.owner, practitioner_role) {
        (None, Some(own)) => arguments.owner = Some(own.clone()),
        (Some(owner), own) if own.as_ref() != Some(owner) => {
            return Err(ApiError::one(
                StatusCode::FORBIDDEN,
                IssueCode::Forbidden,
                "A specialist claims referrals for their own PractitionerRole only",
            )
            .at("Parameters.parameter.where(name='owner')")
            .denied());
        }
        _ => {}
    }
    Ok(arguments)
}

pub(super) async fn apply(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    current: StoredResource,
    action: Action,
    arguments: &Arguments,
) -> Result<StoredResource, ApiError> {
    let mut task = stored_json(&current)?;
    if extension_value(&task, "task-routing-rule").is_none() {
        return Err(ApiError::one(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueCode::BusinessRule,
            "This Task is not a routed referral Task",
        ));
    }
    let from = task["status"].as_str().unwrap_or_default().to_string();
    let (to, business) = transition(&from, action).map_err(refused)?;
    let mut audit_detail = Vec::new();
    match action {
        Action::Claim => {
            let owner = arguments.owner.clone().ok_or_else(|| required("owner", action))?;
            if !owner.starts_with("PractitionerRole/") {
                return Err(ApiError::bad_request("owner must be a PractitionerRole reference")
                    .at("Parameters.parameter.where(name='owner')"));
            }
            // Remember the queue, so a release can put the referral back.
            let queue = task["owner"].clone();
            set_extension(&mut task, "task-queue", json!({"valueReference": queue}));
            task["owner"] = json!({"reference": owner});
            audit_detail.push(json!({"type": "owner", "valueString": owner}));
        }
        Action::Release => {
            let queue = extension_value(&task, "task-queue")
                .map(|e| e["valueReference"].clone())
                .ok_or_else(ApiError::internal)?;
            task["owner"] = queue;
        }
        Action::Redirect => {
            let code = arguments.queue.clone().ok_or_else(|| required("queue", action))?;
            let reason = arguments.reason.clone().ok_or_else(|| required("reason", action))?;
            let queue = state.routing.queue(&code).ok_or_else(|| {
                ApiError::bad_request(format!("'{code}' is not a queue")).at("Parameters.parameter.where(name='queue')")
            })?;
            let owner = json!({"reference": format!("HealthcareService/{}", queue.code), "display": queue.name});
            set_extension(&mut task, "task-queue", json!({"valueReference": owner}));
            task["owner"] = owner;
            push_note(&mut task, format!("Redirected to {}: {reason}", queue.code));
            audit_detail.push(json!({"type": "queue", "valueString": queue.code}));
            audit_detail.push(json!({"type": "reason", "valueString": reason}));
        }
        Action::Decline => {
            let reason = arguments.reason.clone().ok_or_else(|| required("reason", action))?;
            task["statusReason"] = json!({"text": reason});
            audit_detail.push(json!({"type": "reason", "valueString": reason}));
        }
        Action::RequestInformation => {
            let message = arguments.message.clone().ok_or_else(|| required("message", action))?;
            let communication = information_request(tx, &task, &message).await?;
            push_note(&mut task, format!("Information requested (Communication/{})", communication.id));
            audit_detail
                .push(json!({"type": "communication", "valueString": format!("Communication/{}", communication.id)}));
        }
        Action::Complete => {
            let opinion = arguments.opinion.clone().ok_or_else(|| required("opinion", action))?;
            let (opinion_type, opinion_id) = opinion.split_once('/').unwrap_or_default();
            let stored_opinion = match opinion_type {
                "DiagnosticReport" | "Communication" => {
                    caller.visible(tx.read(opinion_type, opinion_id).await?).filter(|o| !o.deleted)
                }
                _ => None,
            };
            let Some(stored_opinion) = stored_opinion else {
                return Err(ApiError::bad_request(format!(
                    "opinion must name a stored DiagnosticReport or Communication, not '{opinion}'"
                ))
                .at("Parameters.parameter.where(name='opinion')"));
            };
            let performer = performer(caller, &task);
            let finished = finish_opinion(tx, caller, &task, performer.as_deref(), stored_opinion).await?;
            super::opinion::issue(tx, state, &task, finished).await?;
            task["output"] = json!([{"type": {"text": "Second opinion"}, "valueReference": {"reference": opinion}}]);
            audit_detail.push(json!({"type": "opinion", "valueString": opinion}));
        }
        Action::RequestConsult | Action::ConsultBooked | Action::ConsultCancelled => {
            let appointment = arguments.appointment.clone().ok_or_else(ApiError::internal)?;
            if action == Action::RequestConsult {
                set_extension(&mut task, "task-consult", json!({"valueReference": {"reference": appointment}}));
            }
            audit_detail.push(json!({"type": "appointment", "valueString": appointment}));
        }
        Action::ReceiveInformation | Action::Cancel => {}
    }
    task["status"] = json!(to);
    task["businessStatus"] =
        json!({"coding": [{"system": business.system, "code": business.code, "display": business.display}]});
    task["lastModified"] = json!(now());
    let op = WriteOp::Update {
        resource_type: "Task".into(),
        target: Target::Id(current.id.clone()),
        resource: task,
        if_match: Some(current.version_id),
    };
    // The caller's right to act was checked above; the Task change itself is rex's own work.
    let stored = execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?;
    let audit = json!({
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_SYSTEM, "code": "referral", "display": "Referral event"},
        "subtype": [{"system": AUDIT_SYSTEM, "code": action.name()}],
        "action": "U",
        "recorded": now(),
        "outcome": "0",
        "outcomeDesc": format!("{} -> {to}", from),
        "agent": [{"who": agent(caller, arguments), "altId": caller.label(), "requestor": true}],
        "source": {"observer": {"display": "rex"}},
        "entity": [{"what": {"reference": format!("Task/{}", stored.id)}, "detail": audit_detail}],
    });
    let audit = audit_without_empty_detail(audit);
    execute(
        tx,
        &Caller::Unrestricted,
        WriteOp::Create { resource_type: "AuditEvent".into(), resource: audit, id: None, if_none_exist: None },
    )
    .await?;
    Ok(stored)
}

/// Who acted, for the AuditEvent: the owner a claim names, the partner who answered, or rex.
fn agent(caller: &Caller, arguments: &Arguments) -> Value {
    match (&arguments.owner, caller.partner()) {
        (Some(owner), _) => json!({"reference": owner}),
        (None, Some(partner)) => json!({"identifier": {"system": rex_referral::PARTNER_SYSTEM, "value": partner}}),
        (None, None) => json!({"reference": "Device/rex"}),
    }
}

/// The completing specialist's PractitionerRole: the one their staff token names, else the one
/// that claimed the Task.
fn performer(caller: &Caller, task: &Value) -> Option<String> {
    match caller {
        Caller::Authenticated(rex_auth::Principal::Staff { practitioner_role: Some(role), .. }) => Some(role.clone()),
        _ => task["owner"]["reference"].as_str().filter(|r| r.starts_with("PractitionerRole/")).map(str::to_string),
    }
}

/// Completes the opinion the Task's output will name: a DiagnosticReport without `performer`,
/// `resultsInterpreter` or `issued` gets the completing specialist and the time, and that
/// PractitionerRole is made from the staff token's claims when the hospital has not loaded it, so
/// the reference resolves. The opinion goes into the referring partner's compartment (the
/// Task's), so the partner can read what the Task's output names. Returns the opinion's current
/// version, which `opinion::issue` then renders and signs.
async fn finish_opinion(
    tx: &mut Tx,
    caller: &Caller,
    task: &Value,
    performer: Option<&str>,
    opinion: StoredResource,
) -> Result<StoredResource, ApiError> {
    let mut content = stored_json(&opinion)?;
    let before = content.clone();
    if opinion.resource_type == "DiagnosticReport" {
        if let Some(performer) = performer {
            ensure_practitioner_role(tx, caller, performer).await?;
            for field in ["performer", "resultsInterpreter"] {
                if content[field].as_array().is_none_or(Vec::is_empty) {
                    content[field] = json!([{"reference": performer}]);
                }
            }
        }
        if content["issued"].is_null() {
            content["issued"] = json!(now());
        }
    }
    if let Some(partner) = owner(task) {
        set_owner(&mut content, partner);
    }
    if content == before {
        return Ok(opinion);
    }
    let op = WriteOp::Update {
        resource_type: opinion.resource_type.clone(),
        target: Target::Id(opinion.id.clone()),
        resource: content,
        if_match: Some(opinion.version_id),
    };
    execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
}

/// Makes `PractitionerRole/{id}` from the staff token's claims (subject, queues) unless it exists.
async fn ensure_practitioner_role(tx: &mut Tx, caller: &Caller, reference: &str) -> Result<(), ApiError> {
    let Some(id) = reference.strip_prefix("PractitionerRole/") else { return Ok(()) };
    if tx.read("PractitionerRole", id).await?.is_some_and(|role| !role.deleted) {
        return Ok(());
    }
    let mut role = json!({"resourceType": "PractitionerRole", "id": id, "active": true,
        "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": "doctor", "display": "Doctor"}],
                  "text": "Specialist giving second opinions"}]});
    if let Caller::Authenticated(rex_auth::Principal::Staff { subject, queues, .. }) = caller {
        role["identifier"] = json!([{"system": STAFF_SUBJECT_SYSTEM, "value": subject}]);
        let services: Vec<Value> =
            queues.iter().map(|queue| json!({"reference": format!("HealthcareService/{queue}")})).collect();
        if !services.is_empty() {
            role["healthcareService"] = Value::Array(services);
        }
    }
    let op = WriteOp::Update {
        resource_type: "PractitionerRole".into(),
        target: Target::Id(id.to_string()),
        resource: role,
        if_match: None,
    };
    execute(tx, &Caller::Unrestricted, op).await?;
    Ok(())
}

/// Identifier system of the PractitionerRoles rex makes from staff tokens: the token's subject.
const STAFF_SUBJECT_SYSTEM: &str = "https://rex.example/fhir/staff-subject";

fn audit_without_empty_detail(mut audit: Value) -> Value {
    if audit["entity"][0]["detail"].as_array().is_some_and(Vec::is_empty) {
        audit["entity"][0].as_object_mut().map(|entity| entity.remove("detail"));
    }
    audit
}

/// Whether a Task is on hold with rex's business status `code` (`information-requested`,
/// `consult-proposed`).
pub(super) fn waits_for(task: &Value, code: &str) -> bool {
    task["status"] == "on-hold" && task["businessStatus"]["coding"][0]["code"] == code
}

fn push_note(task: &mut Value, text: String) {
    let note = json!({"text": text, "time": now()});
    match task["note"].as_array_mut() {
        Some(notes) => notes.push(note),
        None => task["note"] = json!([note]),
    }
}

/// The Communication asking the referring partner for more information, addressed to the
/// ServiceRequest's requester.
async fn information_request(tx: &mut Tx, task: &Value, message: &str) -> Result<StoredResource, ApiError> {
    let focus = task["focus"]["reference"].as_str().unwrap_or_default();
    let recipient = match focus.split_once('/') {
        Some((rt, id)) => match tx.read(rt, id).await? {
            Some(stored) => stored_json(&stored)?["requester"].clone(),
            None => Value::Null,
        },
        None => Value::Null,
    };
    let mut communication = json!({
        "resourceType": "Communication",
        "status": "in-progress",
        "category": [{"coding": [{"system": "https://rex.example/fhir/CodeSystem/communication-category", "code": "information-request"}]}],
        "basedOn": [{"reference": focus}],
        "subject": task["for"].clone(),
        "sent": now(),
        "payload": [{"contentString": message}],
    });
    if recipient.is_object() {
        communication["recipient"] = json!([recipient]);
    }
    if let Some(partner) = owner(task) {
        set_owner(&mut communication, partner);
    }
    let op = WriteOp::Create {
        resource_type: "Communication".into(),
        resource: communication,
        id: None,
        if_none_exist: None,
    };
    execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
}

/// A partner's answer to a request for information: a Communication whose `inResponseTo` names
/// rex's information request. It is stored and, in the same transaction, the referral's Task
/// resumes (`on-hold` → `in-progress`). Returns `None` for any other Communication.
pub async fn receive_answer(
    state: &AppState,
    caller: &Caller,
    communication: &Value,
) -> Result<Option<WriteOutcome>, ApiError> {
    if communication["inResponseTo"].is_null() {
        return Ok(None);
    }
    let context = (state, caller, communication);
    super::in_transaction(&state.store, Isolation::Serializable, &context, |tx, context| {
        let (state, caller, communication) = *context;
        Box::pin(async move {
            let Some((focus, partner)) = answered_referral(tx, caller, communication).await? else {
                return Ok(None);
            };
            // The answer joins the conversation's compartment.
            let mut communication = communication.clone();
            if let Some(partner) = partner {
                set_owner(&mut communication, &partner);
            }
            let op = WriteOp::Create {
                resource_type: "Communication".into(),
                resource: communication,
                id: None,
                if_none_exist: None,
            };
            let created = execute(tx, caller, op).await?;
            resume(tx, state, caller, &focus).await?;
            Ok(Some(created))
        })
    })
    .await
}

/// The Communications a message stored (event `referral-communication`) resume the referrals
/// whose requests for information they answer, in the message's transaction.
pub async fn resume_for_answers(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    stored: &[StoredResource],
) -> Result<(), ApiError> {
    for communication in stored.iter().filter(|s| s.resource_type == "Communication") {
        if let Some((focus, _)) = answered_referral(tx, caller, &stored_json(communication)?).await? {
            resume(tx, state, caller, &focus).await?;
        }
    }
    Ok(())
}

/// When `communication` answers a request for information the caller may see: the referral
/// (ServiceRequest reference) the request is about, and the request's partner.
async fn answered_referral(
    tx: &mut Tx,
    caller: &Caller,
    communication: &Value,
) -> Result<Option<(String, Option<String>)>, ApiError> {
    let Some(request_id) =
        communication["inResponseTo"][0]["reference"].as_str().and_then(|r| r.strip_prefix("Communication/"))
    else {
        return Ok(None);
    };
    let Some(request) = caller.visible(tx.read("Communication", request_id).await?).filter(|c| !c.deleted) else {
        return Ok(None);
    };
    let request = stored_json(&request)?;
    let asks = request["category"][0]["coding"][0]["code"] == "information-request";
    let Some(focus) = request["basedOn"][0]["reference"].as_str().filter(|_| asks) else { return Ok(None) };
    Ok(Some((focus.to_string(), owner(&request).map(str::to_string))))
}

/// Resumes the referral Tasks about `focus` that wait, on hold, for an answer (not those waiting
/// for a consult to be booked), and marks the open ones updated by the partner for their
/// specialist; the AuditEvent names `caller`, who answered (its right to answer was checked by
/// [`answered_referral`]).
async fn resume(tx: &mut Tx, state: &AppState, caller: &Caller, focus: &str) -> Result<(), ApiError> {
    let pairs = [("focus".to_string(), focus.to_string())];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Task", &pairs, rex_fhir::query::Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))?;
    for task in tx.search(&query).await?.matches {
        let Some(task) = tx.read_for_update("Task", &task.id).await? else { continue };
        let id = task.id.clone();
        let current = stored_json(&task)?;
        let status = current["status"].as_str().unwrap_or_default().to_string();
        if waits_for(&current, "information-requested") {
            apply(tx, state, caller, task, Action::ReceiveInformation, &Arguments::default()).await?;
        }
        // A late answer (the referral was released or redirected meanwhile) is news all the same.
        if matches!(status.as_str(), "on-hold" | "requested" | "in-progress") {
            tx.record_partner_update(&id, super::attention::INFORMATION_RECEIVED, rex_store::now_micros()).await?;
        }
    }
    Ok(())
}
