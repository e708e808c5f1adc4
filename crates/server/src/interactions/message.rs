//! `POST /fhir/$process-message`: Referral Message Bundles (MessageHeader first), answered
//! synchronously with a response message, as the Canadian eReferral "process-request" pattern does.
//!
//! A new referral or an update runs the same intake as a transaction Bundle: every resource of the
//! message (the MessageHeader too, as the record of what was received) is written in one database
//! transaction, de-duplicated by the referral's identity and routed to a queue. The response
//! message's MessageHeader says `ok`, `transient-error` or `fatal-error`, focuses on the Task, and
//! carries the Task (or an OperationOutcome) as an entry.

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use rex_fhir::{Issue, IssueCode};
use rex_i18n::msg;
use rex_referral::Referral;
use rex_referral::workflow::{Action, transition};
use rex_store::{Isolation, StoredResource};
use serde_json::{Value, json};

use super::scorecard::{self, Answer, Endpoint};
use super::transaction::{parse_bundle, transaction_body};
use super::write::{Target, WriteOp, execute};
use super::{format_param, in_transaction, intake, query_pairs};
use crate::AppState;
use crate::access::Caller;
use crate::bundles::bundle;
use crate::error::ApiError;
use crate::http::{BodyKind, Prefer, body_kind, check_accept, fhir_json, parse_json, read_body, stored_json};
use crate::validation::{require_valid_bundle, rex_profile};

/// rex's message events (MessageHeader.eventCoding).
pub const EVENT_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/message-event";

/// The events rex processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A new referral or second-opinion request.
    Request,
    /// An amended referral (same identity, changed content).
    Update,
    /// The partner withdraws the referral.
    Revoke,
    /// A Communication about a referral (answers to requests for information, attachments).
    Communication,
}

impl Event {
    fn parse(header: &Value) -> Result<Event, ApiError> {
        let coding = &header["eventCoding"];
        let unknown = || {
            ApiError::one(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueCode::NotSupported,
                msg!("message-unknown-event", system = EVENT_SYSTEM),
            )
            .at("Bundle.entry[0].resource.eventCoding")
        };
        if coding["system"].as_str() != Some(EVENT_SYSTEM) {
            return Err(unknown());
        }
        match coding["code"].as_str() {
            Some("referral-request") => Ok(Event::Request),
            Some("referral-update") => Ok(Event::Update),
            Some("referral-revoke") => Ok(Event::Revoke),
            Some("referral-communication") => Ok(Event::Communication),
            _ => Err(unknown()),
        }
    }
}

/// `POST /fhir/$process-message`.
pub async fn process(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = rex_store::now_micros();
    let message = match read_message(&state, query.as_deref(), &headers, body).await {
        Ok(message) => message,
        Err(err) => {
            scorecard::record(&state, &caller, Endpoint::ProcessMessage, received, None, Answer::Refused(&err)).await;
            return error_response(&state, &Value::Null, err);
        }
    };
    let header = message["entry"][0]["resource"].clone();
    let result = run(&state, &caller, &message, &header).await;
    // A message's answer carries no issues (its focus is a Task); a refusal carries the error's.
    let answer = match &result {
        Ok(_) => Answer::Accepted(&[]),
        Err(err) => Answer::Refused(err),
    };
    scorecard::record(&state, &caller, Endpoint::ProcessMessage, received, Some(&message), answer).await;
    match result {
        Ok(Processed { focus, outcome }) => {
            let mut response = response_message(&state, &header, "ok", focus, None);
            if let Some(outcome) = outcome {
                response["link"] = json!([intake::outcome_link(outcome)]);
            }
            fhir_json(StatusCode::OK, &response)
        }
        Err(err) => error_response(&state, &header, err),
    }
}

async fn read_message(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    check_accept(format_param(&query_pairs(query)))?;
    if body_kind(headers)? != BodyKind::FhirJson {
        return Err(ApiError::unsupported_media(msg!("message-media")));
    }
    let bytes = read_body(body, state.config.limits).await?;
    let message = parse_json(bytes, state.config.limits).await?;
    message_header(&message)?;
    Ok(message)
}

/// A response message with `fatal-error` (or `transient-error` when retrying may help) and the
/// OperationOutcome, sent with the error's HTTP status.
fn error_response(state: &AppState, header: &Value, err: ApiError) -> Response {
    let code = if err.status.is_server_error() || err.retryable { "transient-error" } else { "fatal-error" };
    let outcome = crate::language::outcome(&err.issues);
    let mut response = fhir_json(err.status, &response_message(state, header, code, None, Some(outcome)));
    if err.denied {
        let reason = err.issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default();
        response.extensions_mut().insert(crate::error::DeniedAccess(reason));
    }
    response
}

/// Checks that a message Bundle opens with its MessageHeader.
fn message_header(message: &Value) -> Result<(), ApiError> {
    if message["resourceType"] != "Bundle" || message["type"] != "message" {
        return Err(ApiError::bad_request(msg!("message-not-message-bundle")).at("Bundle.type"));
    }
    let header = &message["entry"][0]["resource"];
    if header["resourceType"] != "MessageHeader" {
        return Err(ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Structure, msg!("message-header-first"))
            .at("Bundle.entry[0]"));
    }
    Ok(())
}

/// The message as a transaction: every resource POSTed, keeping its fullUrl, so that entry
/// indexes (and the locations in any OperationOutcome) are those of the message.
fn as_transaction(message: &Value) -> Value {
    let entries: Vec<Value> = message["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let resource_type = entry["resource"]["resourceType"].as_str().unwrap_or_default();
            let mut entry = entry.clone();
            entry["request"] = json!({"method": "POST", "url": resource_type});
            entry
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// What processing a message did: the resource the response focuses on (the referral's Task) and
/// what happened to the referral (`created`, `amended`, `unchanged` or `revoked`).
struct Processed {
    focus: Option<Value>,
    outcome: Option<&'static str>,
}

/// Processes the message.
async fn run(state: &AppState, caller: &Caller, message: &Value, header: &Value) -> Result<Processed, ApiError> {
    let event = Event::parse(header)?;
    // A Consent sent with a referral is the one it is shared under: it must meet rex's profile.
    let consents = message["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, entry)| entry["resource"]["resourceType"] == "Consent")
        .map(|(index, _)| (index, rex_profile("rex-referral-consent")))
        .collect();
    require_valid_bundle(
        &state.checker(caller),
        std::sync::Arc::new(message.clone()),
        vec![rex_profile("rex-referral-message-bundle")],
        consents,
    )
    .await?;
    let transaction = as_transaction(message);
    let (_, entries) = parse_bundle(&transaction)?;
    let referral =
        Referral::recognise(&transaction).map_err(|issues| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues))?;
    match (event, referral) {
        (Event::Request | Event::Update, Some(referral)) => {
            let response = intake::take_in(state, caller, &referral, entries, Prefer::default()).await?;
            let task = intake::task_reference(&response).ok_or_else(ApiError::internal)?;
            let stored = state.store.read("Task", &task).await?.ok_or_else(ApiError::internal)?;
            let outcome = match intake::outcome_of(&response).as_deref() {
                Some("created") => "created",
                Some("amended") => "amended",
                _ => "unchanged",
            };
            Ok(Processed { focus: Some(stored_json(&stored)?), outcome: Some(outcome) })
        }
        (Event::Revoke, Some(referral)) => {
            intake::check_sender(caller, &referral)?;
            let task = revoke(state, &referral).await?;
            Ok(Processed { focus: Some(task), outcome: Some("revoked") })
        }
        (Event::Communication, _) => {
            // Stored like a transaction; an answer to a request for information resumes its
            // referral in the same database transaction.
            let context = (state, caller, entries.as_slice());
            in_transaction(&state.store, Isolation::Serializable, &context, |tx, (state, caller, entries)| {
                Box::pin(async move {
                    let results = transaction_body(tx, state, caller, entries).await?;
                    let stored: Vec<StoredResource> = results.into_iter().filter_map(|r| r.stored).collect();
                    super::workflow::resume_for_answers(tx, state, caller, &stored).await
                })
            })
            .await?;
            Ok(Processed { focus: None, outcome: None })
        }
        (_, None) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![Issue::error(IssueCode::BusinessRule, msg!("message-needs-referral")).at("Bundle.entry")],
        )),
    }
}

/// Withdraws a referral rex has: its Task is cancelled along the workflow table (BSeR 6.0). The MessageHeader is kept
/// as the record of the request.
async fn revoke(state: &AppState, referral: &Referral) -> Result<Value, ApiError> {
    let stored = in_transaction(&state.store, Isolation::Serializable, referral, |tx, referral| {
        Box::pin(async move {
            let record = tx
                .find_referral(&referral.partner, &referral.identifier_system, &referral.identifier_value)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(msg!(
                        "message-no-referral-to-revoke",
                        identifier = format!("{}|{}", referral.identifier_system, referral.identifier_value)
                    ))
                })?;
            let task = tx.read("Task", &record.task_id).await?.ok_or_else(ApiError::internal)?;
            let mut task = stored_json(&task)?;
            if let Some(service_request) = task["focus"]["reference"].as_str() {
                super::consult::cancel_open_consults(tx, service_request).await?;
            }
            let from = task["status"].as_str().unwrap_or_default();
            let (to, business) = transition(from, Action::Cancel)
                .map_err(|err| ApiError::one(StatusCode::CONFLICT, IssueCode::BusinessRule, err.message()))?;
            task["status"] = json!(to);
            task["businessStatus"] =
                json!({"coding": [{"system": business.system, "code": business.code, "display": business.display}]});
            task["statusReason"] = json!({"text": "Revoked by the referring partner"});
            task["lastModified"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let op = WriteOp::Update {
                resource_type: "Task".into(),
                target: Target::Id(record.task_id.clone()),
                resource: task,
                if_match: None,
            };
            // The sender was checked; cancelling is rex's own work along the workflow table.
            execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
        })
    })
    .await?;
    stored_json(&stored)
}

/// The response message: a MessageHeader answering the request's, then the focus or the outcome.
fn response_message(
    state: &AppState,
    request: &Value,
    code: &str,
    focus: Option<Value>,
    outcome: Option<Value>,
) -> Value {
    let mut header = json!({
        "resourceType": "MessageHeader",
        "id": uuid::Uuid::new_v4().to_string(),
        "eventCoding": request.get("eventCoding").cloned().unwrap_or_else(|| json!({"system": EVENT_SYSTEM, "code": "unknown"})),
        "source": {"name": "rex", "endpoint": format!("{}/$process-message", state.config.base_url)},
        "response": {"identifier": request["id"].as_str().unwrap_or("unknown"), "code": code},
    });
    if let Some(source) = request["source"]["endpoint"].as_str() {
        header["destination"] = json!([{"endpoint": source}]);
    }
    let mut entries = Vec::new();
    if let Some(focus) = focus {
        let url = format!(
            "{}/{}/{}",
            state.config.base_url,
            focus["resourceType"].as_str().unwrap_or_default(),
            focus["id"].as_str().unwrap_or_default()
        );
        header["focus"] = json!([{"reference": format!("{}/{}", focus["resourceType"].as_str().unwrap_or_default(), focus["id"].as_str().unwrap_or_default())}]);
        entries.push(json!({"fullUrl": url, "resource": focus}));
    }
    if let Some(outcome) = outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let mut outcome = outcome;
        outcome["id"] = json!(id);
        header["response"]["details"] = json!({"reference": format!("urn:uuid:{id}")});
        entries.push(json!({"fullUrl": format!("urn:uuid:{id}"), "resource": outcome}));
    }
    let header_id = header["id"].as_str().unwrap_or_default().to_string();
    entries.insert(0, json!({"fullUrl": format!("urn:uuid:{header_id}"), "resource": header}));
    let mut message = bundle("message", None, Vec::new(), entries);
    message["timestamp"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    message
}
