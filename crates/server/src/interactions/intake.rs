//! Referral intake: a transaction Bundle that carries a referral runs the same steps whichever way
//! it came in: identify the partner and the referral's identity, de-duplicate, write the Bundle,
//! route it to a queue with a Task, audit the decision, all in one database transaction.
//!
//! A re-send of a referral rex already has is matched entry by entry to the resources the first
//! send created (by fullUrl, else by position among resources of the same type) and written as
//! updates: identical content writes nothing and answers with the existing ids; changed content
//! makes new versions, keeps the Task on its queue and records the amendment.

use axum::http::StatusCode;
use chrono::Utc;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_i18n::msg;
use rex_referral::referral::category_of;
use rex_referral::routing::Queue;
use rex_referral::task::{ReferralEvent, referral_audit_event, referral_task};
use rex_referral::{Referral, RoutingDecision};
use rex_store::{Isolation, ReferralRecord, StoredResource, Tx};
use serde_json::{Value, json};

use super::transaction::{Entry, EntryResult, Method, response_entry, transaction_body};
use super::write::{WriteOp, WriteOutcome, execute};
use crate::AppState;
use crate::access::{Caller, set_owner};
use crate::bundles::AnswerBundle;
use crate::error::ApiError;
use crate::http::{Prefer, stored_json};

/// `Bundle.link` relation naming the referral's Task in a transaction-response.
pub const TASK_LINK: &str = "https://rex.example/fhir/referral-task";
/// `Bundle.link` relation saying what intake did: `created`, `amended` or `unchanged`.
pub const OUTCOME_LINK: &str = "https://rex.example/fhir/referral-outcome";

/// What intake did with a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntakeKind {
    Created,
    Amended,
    Unchanged,
}

impl IntakeKind {
    fn code(self) -> &'static str {
        match self {
            IntakeKind::Created => "created",
            IntakeKind::Amended => "amended",
            IntakeKind::Unchanged => "unchanged",
        }
    }
}

/// The result of intake: one result per Bundle entry, the referral's Task and what happened.
pub(super) struct Intake {
    results: Vec<EntryResult>,
    pub task: StoredResource,
    pub kind: IntakeKind,
}

/// Takes in a referral transaction Bundle and answers with its transaction-response.
pub(super) async fn take_in(
    state: &AppState,
    caller: &Caller,
    referral: &Referral,
    mut entries: Vec<Entry>,
    prefer: Prefer,
) -> Result<AnswerBundle, ApiError> {
    check_sender(caller, referral)?;
    let sandbox = is_sandbox(state, &referral.partner);
    // Everything a referral Bundle carries is in its partner's compartment (and test data when
    // the partner is a sandbox).
    for resource in entries.iter_mut().filter_map(|entry| entry.resource.as_mut()) {
        set_owner(resource, &referral.partner);
        if sandbox {
            tag_as_test_data(resource);
        }
    }
    let context = (state, caller, referral, entries.as_slice());
    // The referral's identity is guarded by the referrals table's primary key (a concurrent first
    // send fails and is retried as a re-send), so only searches in the Bundle need serializable.
    let isolation =
        if entries.iter().any(Entry::is_conditional) { Isolation::Serializable } else { Isolation::RowLocking };
    let intake = super::in_transaction(&state.store, isolation, &context, |tx, context| {
        let (state, caller, referral, entries) = *context;
        Box::pin(run(tx, state, caller, referral, entries))
    })
    .await?;
    let entries =
        intake.results.iter().map(|result| response_entry(state, result, prefer)).collect::<Result<Vec<_>, _>>()?;
    let links = vec![
        json!({"relation": TASK_LINK, "url": format!("{}/Task/{}", state.config.base_url, intake.task.id)}),
        outcome_link(intake.kind.code()),
    ];
    Ok(AnswerBundle::new("transaction-response", None, links, entries))
}

/// Whether `partner` is configured as a sandbox (`sandbox = true` in the security configuration).
pub(crate) fn is_sandbox(state: &AppState, partner: &str) -> bool {
    state.security.as_ref().and_then(|security| security.partners().get(partner)).is_some_and(|p| p.sandbox)
}

fn tag_as_test_data(resource: &mut Value) {
    let (system, code) = rex_referral::task::TEST_DATA_TAG;
    let tag = json!({"system": system, "code": code, "display": "test health data"});
    let Some(object) = resource.as_object_mut() else { return };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    match meta["tag"].as_array_mut() {
        Some(tags) if tags.iter().any(|t| t["system"] == system && t["code"] == code) => {}
        Some(tags) => tags.push(tag),
        None => meta["tag"] = json!([tag]),
    }
}

/// The queue a referral's Task goes to: the routing decision's, or the sandbox queue for a
/// sandbox partner, whose Task then says where a real referral would have gone.
fn queue_for(state: &AppState, decision: &mut RoutingDecision, sandbox: bool) -> Result<Queue, ApiError> {
    let routed = state.routing.queue(&decision.queue).ok_or_else(ApiError::internal)?;
    if !sandbox {
        return Ok(routed.clone());
    }
    decision.explanation =
        format!("Sandbox referral: a real one would go to {} ({}). {}", routed.code, routed.name, decision.explanation);
    Ok(rex_referral::task::sandbox_queue())
}

/// A partner sends only its own referrals: the partner the referral names (its requester
/// Organization's identifier) must be the one the token was issued to.
pub(super) fn check_sender(caller: &Caller, referral: &Referral) -> Result<(), ApiError> {
    match caller.partner() {
        Some(partner) if partner != referral.partner => Err(ApiError::one(
            StatusCode::FORBIDDEN,
            rex_fhir::IssueCode::Forbidden,
            msg!("referral-other-partner", named = referral.partner, system = rex_referral::PARTNER_SYSTEM, partner),
        )
        .denied()),
        _ => Ok(()),
    }
}

/// The link saying what happened to a referral: `created`, `amended`, `unchanged` (intake) or
/// `revoked` (a `referral-revoke` message).
pub(super) fn outcome_link(outcome: &str) -> Value {
    json!({"relation": OUTCOME_LINK, "url": format!("{OUTCOME_LINK}#{outcome}")})
}

/// What intake did, from a transaction-response built by [`take_in`].
pub(super) fn outcome_of(response: &AnswerBundle) -> Option<String> {
    let link = response.json()["link"].as_array()?.iter().find(|link| link["relation"] == OUTCOME_LINK)?;
    link["url"].as_str()?.rsplit_once('#').map(|(_, outcome)| outcome.to_string())
}

/// The id of the referral Task named in a transaction-response built by [`take_in`].
pub(super) fn task_reference(response: &AnswerBundle) -> Option<String> {
    let link = response.json()["link"].as_array()?.iter().find(|link| link["relation"] == TASK_LINK)?;
    link["url"].as_str()?.rsplit('/').next().map(str::to_string)
}

/// The resources a Bundle created, in entry order, to match a later re-send.
fn entry_map(entries: &[Entry], results: &[EntryResult]) -> String {
    let list: Vec<Value> = entries
        .iter()
        .zip(results)
        .filter_map(|(entry, result)| {
            let stored = result.stored.as_ref()?;
            Some(json!({"fullUrl": entry.full_url, "type": stored.resource_type, "id": stored.id}))
        })
        .collect();
    Value::Array(list).to_string()
}

/// Turns the POST entries of a re-send into updates of the resources the referral already has.
fn as_resend(entries: &[Entry], recorded: &str) -> Vec<Entry> {
    let recorded: Vec<Value> = serde_json::from_str(recorded).unwrap_or_default();
    let mut taken = vec![false; recorded.len()];
    let mut seen_of_type: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    entries
        .iter()
        .map(|entry| {
            let Some(resource_type) = entry.resource.as_ref().and_then(|r| r["resourceType"].as_str()) else {
                return entry.clone();
            };
            if entry.method != Method::Post {
                return entry.clone();
            }
            let position = seen_of_type.entry(resource_type.to_string()).or_default();
            let nth = *position;
            *position += 1;
            let same_type = |index: &usize| recorded[*index]["type"] == resource_type && !taken[*index];
            let by_url = entry
                .full_url
                .as_ref()
                .and_then(|url| (0..recorded.len()).find(|i| same_type(i) && recorded[*i]["fullUrl"] == url.as_str()));
            let by_position = || {
                (0..recorded.len()).filter(|i| recorded[*i]["type"] == resource_type).nth(nth).filter(|i| !taken[*i])
            };
            match by_url.or_else(by_position) {
                Some(index) => {
                    taken[index] = true;
                    let id = recorded[index]["id"].as_str().unwrap_or_default().to_string();
                    let mut resource = entry.resource.clone().unwrap_or_default();
                    resource["id"] = json!(id);
                    Entry {
                        method: Method::Put,
                        url: format!("{resource_type}/{id}"),
                        resource: Some(resource),
                        if_none_exist: None,
                        ..entry.clone()
                    }
                }
                None => entry.clone(),
            }
        })
        .collect()
}

async fn run(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    referral: &Referral,
    entries: &[Entry],
) -> Result<Intake, ApiError> {
    let existing = tx.find_referral(&referral.partner, &referral.identifier_system, &referral.identifier_value).await?;
    let now = Utc::now();
    // A new referral's consent is checked before anything is written; a re-send that withdraws
    // it is stored like any amendment and the consent check flags the referral.
    let consent = match existing {
        None => consent_entry(state, referral, entries, now)?,
        Some(_) => None,
    };
    // A first send runs the entries as they are; only a re-send needs them rewritten (as a copy).
    let resent;
    let entries = match &existing {
        Some(record) => {
            resent = as_resend(entries, &record.entries);
            resent.as_slice()
        }
        None => entries,
    };
    let results = transaction_body(tx, state, caller, entries).await?;
    let service_request = results[referral.service_request_entry].stored.clone().ok_or_else(ApiError::internal)?;
    let service_request_ref = format!("ServiceRequest/{}", service_request.id);
    let entries_json = entry_map(entries, &results);
    let mut referral = referral.clone();
    let service_request_json = stored_json(&service_request)?;
    let patient_ref = service_request_json["subject"]["reference"].as_str().unwrap_or_default().to_string();
    if referral.language.is_none()
        && let Some((resource_type, id)) = patient_ref.split_once('/')
        && let Some(patient) = current_version(tx, &results, resource_type, id).await?.filter(|p| !p.deleted)
    {
        referral.read_patient(&stored_json(&patient)?);
    }
    let mut decision = state.routing.route(&referral, now);
    let Some(record) = existing else {
        let sandbox = is_sandbox(state, &referral.partner);
        let queue = queue_for(state, &mut decision, sandbox)?;
        let requester = service_request_json["requester"]["reference"].as_str().map(str::to_string);
        let mut task =
            referral_task(&referral, &decision, &queue, &service_request_ref, &patient_ref, requester.as_deref(), now);
        if sandbox {
            tag_as_test_data(&mut task);
        }
        if let Some(index) = consent {
            let stored = results[index].stored.as_ref().ok_or_else(ApiError::internal)?;
            super::consent::link(&mut task, &stored.id);
        }
        let task = record_routing(tx, &referral, &decision, &service_request.id, task, entries_json, now).await?;
        return Ok(Intake { results, task, kind: IntakeKind::Created });
    };
    let task = tx.read("Task", &record.task_id).await?.ok_or_else(ApiError::internal)?;
    if !results.iter().any(|result| result.wrote) {
        return Ok(Intake { results, task, kind: IntakeKind::Unchanged });
    }
    let audit = referral_audit_event(
        ReferralEvent::Amended,
        &referral,
        &decision,
        &service_request_ref,
        &format!("Task/{}", task.id),
        now,
    );
    create(tx, "AuditEvent", audit).await?;
    tx.record_amendment(&ReferralRecord { entries: entries_json, ..record }).await?;
    let task = reroute(tx, state, &referral, task, &service_request_ref, now).await?;
    // The specialist sees the amendment marked on the worklist until they open the referral.
    let new_attachment =
        results.iter().filter(|result| result.wrote).filter_map(|result| result.stored.as_ref()).any(is_new_attachment);
    let kind = if new_attachment { super::attention::ATTACHMENT } else { super::attention::AMENDED };
    tx.record_partner_update(&task.id, kind, rex_store::now_micros()).await?;
    Ok(Intake { results, task, kind: IntakeKind::Amended })
}

/// Re-applies routing and the SLA when an amendment changed the referral's priority: the due
/// time is counted again from when the referral was received, with the new priority's SLA, and
/// the Task moves to the queue the rules now choose while it waits on a queue (a claimed referral
/// stays with its specialist). The Task's note and an AuditEvent say why; the Task write notifies
/// the partner like any other. A closed referral, or one whose priority did not change, is left
/// as it is.
async fn reroute(
    tx: &mut Tx,
    state: &AppState,
    referral: &Referral,
    current: StoredResource,
    service_request_ref: &str,
    now: chrono::DateTime<Utc>,
) -> Result<StoredResource, ApiError> {
    let mut task = stored_json(&current)?;
    let before = task["priority"].as_str().unwrap_or("routine").to_string();
    let open = matches!(task["status"].as_str(), Some("requested" | "in-progress" | "on-hold"));
    if !open || before == referral.priority.code() {
        return Ok(current);
    }
    let received = task["authoredOn"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let mut decision = state.routing.route(referral, received);
    let queue = queue_for(state, &mut decision, is_sandbox(state, &referral.partner))?;
    let due_before = task["restriction"]["period"]["end"].as_str().unwrap_or("none").to_string();
    let due = decision.due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    task["priority"] = json!(referral.priority.code());
    task["restriction"]["period"]["end"] = json!(due);
    let waiting = task["owner"]["reference"].as_str().is_some_and(|owner| owner.starts_with("HealthcareService/"));
    if waiting {
        task["owner"] = json!({"reference": format!("HealthcareService/{}", queue.code), "display": queue.name});
        let rule = rex_referral::task::extension_url("task-routing-rule");
        for extension in task["extension"].as_array_mut().into_iter().flatten().filter(|e| e["url"] == rule.as_str()) {
            extension["valueCode"] = json!(decision.rule);
        }
    }
    decision.explanation = format!(
        "The partner's amendment changed the priority from {before} to {}: due {due} instead of {due_before}{}. {}",
        referral.priority.code(),
        if waiting { format!(", queue {}", queue.code) } else { String::new() },
        decision.explanation
    );
    let instant = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let note = json!({"text": decision.explanation, "time": instant});
    match task["note"].as_array_mut() {
        Some(notes) => notes.push(note),
        None => task["note"] = json!([note]),
    }
    task["lastModified"] = json!(instant);
    let op = WriteOp::Update {
        resource_type: "Task".into(),
        target: super::write::Target::Id(current.id.clone()),
        resource: task,
        if_match: Some(current.version_id),
    };
    let stored = execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?;
    let task_ref = format!("Task/{}", stored.id);
    let audit = referral_audit_event(ReferralEvent::Rerouted, referral, &decision, service_request_ref, &task_ref, now);
    create(tx, "AuditEvent", audit).await?;
    Ok(stored)
}

/// The entry of the Consent a new referral Bundle is shared under (see [`choose_consent`]).
fn consent_entry(
    state: &AppState,
    referral: &Referral,
    entries: &[Entry],
    now: chrono::DateTime<Utc>,
) -> Result<Option<usize>, ApiError> {
    let consents: Vec<(usize, &Value)> = entries
        .iter()
        .enumerate()
        .filter_map(|(position, entry)| Some((position, entry.resource.as_ref()?)))
        .filter(|(_, resource)| resource["resourceType"] == "Consent")
        .collect();
    let candidates: Vec<(String, &Value)> = consents
        .iter()
        .map(|(position, resource)| (format!("Bundle.entry[{}].resource", entries[*position].index), *resource))
        .collect();
    let chosen = choose_consent(state, referral, &candidates, "Bundle.entry", now)?;
    Ok(chosen.map(|position| consents[position].0))
}

/// Which of `candidates` (Consents with their locations) a new referral is shared under: one
/// that holds is required (else 422 naming what is missing, at `missing_at` when there is none)
/// when the partner's configuration says `require_consent`, and otherwise linked when there is one.
fn choose_consent(
    state: &AppState,
    referral: &Referral,
    candidates: &[(String, &Value)],
    missing_at: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Option<usize>, ApiError> {
    let found = rex_referral::consent::find(candidates, &referral.subject_reference, now, missing_at);
    let required = state
        .security
        .as_ref()
        .and_then(|security| security.partners().get(&referral.partner))
        .is_some_and(|partner| partner.require_consent);
    match found {
        Ok(position) => Ok(Some(position)),
        Err(issues) if required => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues)),
        Err(_) => Ok(None),
    }
}

/// The partner's stored Consents for the patient of a referral that comes in as a Task, and the
/// one it is shared under (see [`choose_consent`]).
async fn stored_consent(
    tx: &mut Tx,
    state: &AppState,
    referral: &Referral,
    now: chrono::DateTime<Utc>,
) -> Result<Option<String>, ApiError> {
    let pairs = [
        ("patient".to_string(), referral.subject_reference.clone()),
        ("_tag".to_string(), format!("{}|{}", crate::access::PARTNER_TAG_SYSTEM, referral.partner)),
        ("_count".to_string(), "100".to_string()),
    ];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Consent", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    let stored = tx.search(&query).await?.matches;
    let consents = stored.iter().map(stored_json).collect::<Result<Vec<_>, _>>()?;
    let candidates: Vec<(String, &Value)> =
        stored.iter().zip(&consents).map(|(s, consent)| (format!("Consent/{}", s.id), consent)).collect();
    let chosen = choose_consent(state, referral, &candidates, "Task.focus", now)?;
    Ok(chosen.map(|position| stored[position].id.clone()))
}

/// A DocumentReference or Binary in its first version (written by this Bundle: created).
fn is_new_attachment(stored: &StoredResource) -> bool {
    matches!(stored.resource_type.as_str(), "DocumentReference" | "Binary") && stored.version_id == 1
}

/// The current version of `resource_type/id`: the one an entry of this Bundle wrote or read, when
/// exactly one did (entries run deletes first and reads last, so that one is current), else the
/// database's. Reading the database would first send the Bundle's pending rows to it, a batch of
/// INSERTs and a round trip to the SQLite writer of their own.
async fn current_version(
    tx: &mut Tx,
    results: &[EntryResult],
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>, ApiError> {
    let mut matching = results
        .iter()
        .filter_map(|result| result.stored.as_ref())
        .filter(|stored| stored.resource_type == resource_type && stored.id == id);
    match (matching.next(), matching.next()) {
        (Some(stored), None) => Ok(Some(stored.clone())),
        _ => Ok(tx.read(resource_type, id).await?),
    }
}

/// Writes what intake itself makes (the Task, AuditEvents): rex's own work, not the caller's.
async fn create(tx: &mut Tx, resource_type: &str, resource: Value) -> Result<StoredResource, ApiError> {
    let op = WriteOp::Create { resource_type: resource_type.to_string(), resource, id: None, if_none_exist: None };
    execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
}

/// The third way in: a partner POSTs a Task whose `focus` is a referral ServiceRequest it already
/// stored. Returns `None` when the Task is not about a referral (it is then an ordinary create).
/// Otherwise the Task is routed like any referral (its owner, status, business status, due time
/// and routing extensions are rex's to set) or, when the referral already has a Task, that one is
/// returned and nothing is written.
pub(super) async fn take_in_task(
    state: &AppState,
    caller: &Caller,
    task: &Value,
) -> Result<Option<WriteOutcome>, ApiError> {
    let Some((focus_type, focus_id)) = task["focus"]["reference"].as_str().and_then(|r| r.split_once('/')) else {
        return Ok(None);
    };
    if focus_type != "ServiceRequest" {
        return Ok(None);
    }
    // A focus rex does not have is not a referral it can route; the Task is stored as it is.
    let Some(service_request) = caller.visible(state.store.read(focus_type, focus_id).await?).filter(|s| !s.deleted)
    else {
        return Ok(None);
    };
    let service_request = stored_json(&service_request)?;
    if category_of(&service_request).is_none() {
        return Ok(None);
    }
    // The referral's context as a Bundle of stored resources, so recognition works as for Bundles.
    let mut context = vec![service_request.clone()];
    let mut references: Vec<String> = ["subject", "requester"]
        .iter()
        .filter_map(|field| service_request[field]["reference"].as_str().map(str::to_string))
        .collect();
    while let Some(reference) = references.pop() {
        let Some((resource_type, id)) = reference.split_once('/') else { continue };
        if let Some(stored) = state.store.read(resource_type, id).await?.filter(|s| !s.deleted) {
            let resource = stored_json(&stored)?;
            if let Some(organization) = resource["organization"]["reference"].as_str() {
                references.push(organization.to_string());
            }
            context.push(resource);
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": context.into_iter().map(|resource| json!({"resource": resource})).collect::<Vec<_>>()});
    let referral = Referral::recognise(&bundle)
        .map_err(|issues| {
            let issues = issues.into_iter().map(|issue| issue.at(format!("ServiceRequest/{focus_id}"))).collect();
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues)
        })?
        .ok_or_else(ApiError::internal)?;
    check_sender(caller, &referral)?;
    let outcome =
        super::in_transaction(&state.store, Isolation::Serializable, &(state, &referral, task), |tx, context| {
            let (state, referral, task) = *context;
            Box::pin(route_task(tx, state, referral, task))
        })
        .await?;
    Ok(Some(outcome))
}

async fn route_task(
    tx: &mut Tx,
    state: &AppState,
    referral: &Referral,
    posted: &Value,
) -> Result<WriteOutcome, ApiError> {
    if let Some(record) =
        tx.find_referral(&referral.partner, &referral.identifier_system, &referral.identifier_value).await?
    {
        let task = tx.read("Task", &record.task_id).await?.ok_or_else(ApiError::internal)?;
        return Ok(WriteOutcome::Existing(task));
    }
    let now = Utc::now();
    let consent = stored_consent(tx, state, referral, now).await?;
    let mut decision = state.routing.route(referral, now);
    let sandbox = is_sandbox(state, &referral.partner);
    let queue = queue_for(state, &mut decision, sandbox)?;
    let service_request_ref = posted["focus"]["reference"].as_str().unwrap_or_default().to_string();
    let patient = referral.subject_reference.as_str();
    let routed = referral_task(referral, &decision, &queue, &service_request_ref, patient, None, now);
    // The partner's own fields (identifiers, notes, input) stay; routing fields are rex's.
    let mut task = posted.clone();
    for (key, value) in routed.as_object().into_iter().flatten() {
        if key == "note" || key == "requester" {
            if task.get(key).is_none() {
                task[key] = value.clone();
            }
            continue;
        }
        task[key] = value.clone();
    }
    if let Some(object) = task.as_object_mut() {
        object.remove("id");
    }
    if sandbox {
        tag_as_test_data(&mut task);
    }
    if let Some(id) = consent {
        super::consent::link(&mut task, &id);
    }
    let service_request_id = service_request_ref.trim_start_matches("ServiceRequest/");
    let task = record_routing(tx, referral, &decision, service_request_id, task, "[]".into(), now).await?;
    Ok(WriteOutcome::Created(task))
}

/// Writes a new referral's Task, the AuditEvent of its routing and its identity record.
async fn record_routing(
    tx: &mut Tx,
    referral: &Referral,
    decision: &RoutingDecision,
    service_request_id: &str,
    mut task: Value,
    entries: String,
    now: chrono::DateTime<Utc>,
) -> Result<StoredResource, ApiError> {
    set_owner(&mut task, &referral.partner);
    let task = create(tx, "Task", task).await?;
    let service_request_ref = format!("ServiceRequest/{service_request_id}");
    let task_ref = format!("Task/{}", task.id);
    let audit = referral_audit_event(ReferralEvent::Routed, referral, decision, &service_request_ref, &task_ref, now);
    create(tx, "AuditEvent", audit).await?;
    tx.insert_referral(ReferralRecord {
        partner: referral.partner.clone(),
        identifier_system: referral.identifier_system.clone(),
        identifier_value: referral.identifier_value.clone(),
        service_request_id: service_request_id.to_string(),
        task_id: task.id.clone(),
        entries,
    });
    Ok(task)
}
