//! Telehealth consults on referrals, on the IHE ITI Scheduling operations:
//!
//! - `Task/{id}/$request-consult` (staff): the specialist who owns a referral in progress asks for a
//!   video consult (`minutesDuration`, `earliest`, `latest`, `interpreter`, `language`). rex stores
//!   the consult as a `proposed` Appointment in the partner's compartment and the Task waits
//!   `on-hold` (business status `consult-proposed`).
//! - `Appointment/$find` (`referral`): proposed Appointments pairing a free slot of the specialist
//!   with, when the patient needs one, a free slot of an interpreter of the patient's language;
//!   times carry the partner's offset (its configured `timezone`).
//! - `Appointment/$book` (`appointment-resource`: a proposal): both slots become busy and the
//!   consult `booked` in one transaction, under the slots' row locks, so of two bookings of one
//!   slot exactly one wins. Booking a booked consult again reschedules it (its old slots are freed).
//!   The Task resumes `in-progress`.
//! - `Appointment/{id}/$cancel`: the consult is cancelled and its slots freed; a Task still waiting
//!   for the booking resumes.
//!
//! Every change of the consult Appointment carries the `consult-event` extension (`proposed`,
//! `booked`, `rescheduled`, `cancelled`, `reminder`) and reaches the partner's Subscriptions
//! through the outbox (`write::execute`).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;
use rex_auth::Interaction;
use rex_fhir::IssueCode;
use rex_i18n::{Message, msg};
use rex_referral::scheduling::{
    self, CONSULT_SERVICE, FreeSlot, INTERPRETING_SERVICE, Proposal, Requirement, SERVICE_SYSTEM, Span,
};
use rex_referral::task::extension_url;
use rex_referral::workflow::Action;
use rex_store::{StoredResource, Tx};
use serde_json::{Value, json};

use super::availability::{create, service_type, slot_span};
use super::parameters::{self, Parameters, invalid, location, required};
use super::workflow::{self, Arguments, waits_for};
use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::{Caller, owner, set_owner};
use crate::error::ApiError;
use crate::http::{fhir_json, resource_response, stored_json};

/// The R5 `Appointment.virtualService` as an R4 cross-version extension: the video link.
pub const VIRTUAL_SERVICE_URL: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService";
/// Default `--video-link-template`: `{room}` becomes a fresh unguessable id, `{appointment}` the
/// Appointment's id.
pub const DEFAULT_VIDEO_LINK_TEMPLATE: &str = "https://video.rex.example/consult/{room}";
const PARTICIPATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// The R4 participant types (`translator`), beside the v3 ParticipationType codes.
const PARTICIPANT_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/participant-type";
/// Consult lengths rex accepts, in minutes.
const MINUTES: std::ops::RangeInclusive<i64> = 10..=240;
/// Longest slot (`scheduling::one_off_slots` cuts at most 480 minutes): how far before a consult
/// an interpreter slot covering it may start.
const LONGEST_SLOT_HOURS: i64 = 8;

/// Reads and searches in a transaction or, for `$find`, outside one.
enum Reader<'a> {
    Store(&'a rex_store::Store),
    Tx(&'a mut Tx),
}

impl Reader<'_> {
    async fn fetch(&mut self, reference: &str) -> Result<Option<StoredResource>, ApiError> {
        let Some((resource_type, id)) = reference.split_once('/') else { return Ok(None) };
        let found = match self {
            Reader::Store(store) => store.read(resource_type, id).await?,
            Reader::Tx(tx) => tx.read(resource_type, id).await?,
        };
        Ok(found.filter(|s| !s.deleted))
    }

    /// The current content of `reference` (`Type/id`), read as rex.
    async fn read(&mut self, reference: &str) -> Result<Option<Value>, ApiError> {
        self.fetch(reference).await?.map(|s| stored_json(&s)).transpose()
    }

    /// `reference` if it exists and the caller may see it; 404 (audited) if hidden from the caller.
    async fn read_visible(&mut self, caller: &Caller, reference: &str) -> Result<Option<StoredResource>, ApiError> {
        match self.fetch(reference).await? {
            Some(stored) if caller.sees(&stored) => Ok(Some(stored)),
            Some(_) => Err(ApiError::hidden(reference)),
            None => Ok(None),
        }
    }

    async fn search(&mut self, query: &rex_fhir::query::SearchQuery) -> Result<Vec<StoredResource>, ApiError> {
        Ok(match self {
            Reader::Store(store) => store.search(query).await?.matches,
            Reader::Tx(tx) => tx.search(query).await?.matches,
        })
    }
}

fn instant_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn coded(system: &str, code: &str, display: &str) -> Value {
    json!([{"coding": [{"system": system, "code": code, "display": display}]}])
}

fn has_code(concepts: &Value, system: &str, code: &str) -> bool {
    concepts.as_array().into_iter().flatten().any(|concept| {
        concept["coding"].as_array().into_iter().flatten().any(|c| c["system"] == system && c["code"] == code)
    })
}

fn extension<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    let url = extension_url(name);
    resource["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())
}

/// Sets (or replaces) the extension `url` with `value` (an object of `value[x]` or `extension`).
fn set_extension(resource: &mut Value, url: &str, value: Value) {
    let mut list: Vec<Value> = resource["extension"].as_array_mut().map(std::mem::take).unwrap_or_default();
    list.retain(|e| e["url"] != url);
    let mut extension = json!({"url": url});
    if let (Some(object), Some(value)) = (extension.as_object_mut(), value.as_object()) {
        object.extend(value.clone());
    }
    list.push(extension);
    resource["extension"] = Value::Array(list);
}

/// Records what the last change of a consult was, so a notification says it.
pub(super) fn set_event(appointment: &mut Value, event: &str) {
    set_extension(appointment, &extension_url("consult-event"), json!({"valueCode": event}));
}

/// The partner's time zone (UTC when it has none, or in development mode).
fn partner_zone(state: &AppState, partner: Option<&str>) -> Tz {
    partner.and_then(|id| state.security.as_ref()?.partners().get(id)?.timezone).unwrap_or(chrono_tz::UTC)
}

/// Schedules, Slots and consult Appointments change only through the scheduling operations (rex
/// writes them as itself): a partner that wrote a Slot could offer a specialist's time nobody
/// opened, and one that wrote a consult could book without a specialist asking. Partners may not
/// write Schedules or Slots; nobody but rex writes an Appointment that is, or would become, a
/// consult. `current` is the version a write replaces or deletes.
pub fn check_scheduling_write(
    caller: &Caller,
    resource_type: &str,
    new: Option<&Value>,
    current: Option<&StoredResource>,
) -> Result<(), ApiError> {
    if *caller == Caller::Unrestricted {
        return Ok(());
    }
    let refused = |message: Message| ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, message).denied();
    match resource_type {
        "Schedule" | "Slot" if caller.partner().is_some() => {
            Err(refused(msg!("scheduling-hospital-only", resource_type)))
        }
        "Appointment" => {
            let is_consult =
                |appointment: &Value| has_code(&appointment["serviceType"], SERVICE_SYSTEM, CONSULT_SERVICE);
            let current = current.filter(|c| !c.deleted).map(stored_json).transpose()?;
            if new.is_some_and(is_consult) || current.as_ref().is_some_and(is_consult) {
                return Err(refused(msg!("consult-operations-only")));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What a consult Appointment asks for.
struct Consult {
    referral: String,
    patient: String,
    specialist: String,
    /// The patient's language when an interpreter is needed.
    language: Option<String>,
    requirement: Requirement,
}

fn participant_of(appointment: &Value, kind: Option<(&str, &str)>) -> Option<String> {
    appointment["participant"].as_array()?.iter().find_map(|p| {
        let matches = match kind {
            Some((system, code)) => has_code(&p["type"], system, code),
            None => p.get("type").is_none(),
        };
        matches.then(|| p["actor"]["reference"].as_str().map(str::to_string)).flatten()
    })
}

fn consult_of(appointment: &Value) -> Result<Consult, ApiError> {
    let text = |value: &Value| value.as_str().map(str::to_string).ok_or_else(ApiError::internal);
    let window = &appointment["requestedPeriod"][0];
    let start = window["start"].as_str().and_then(parameters::instant).ok_or_else(ApiError::internal)?;
    let end = window["end"].as_str().and_then(parameters::instant).ok_or_else(ApiError::internal)?;
    Ok(Consult {
        referral: text(&appointment["basedOn"][0]["reference"])?,
        patient: participant_of(appointment, None).ok_or_else(ApiError::internal)?,
        specialist: participant_of(appointment, Some((PARTICIPATION_SYSTEM, "ATND"))).ok_or_else(ApiError::internal)?,
        language: extension(appointment, "consult-interpreter-language")
            .and_then(|e| e["valueCode"].as_str())
            .map(str::to_string),
        requirement: Requirement {
            minutes: appointment["minutesDuration"].as_i64().ok_or_else(ApiError::internal)?,
            window: Span { start, end },
        },
    })
}

fn participants(consult: &Consult, interpreter: Option<&str>, status: &str) -> Value {
    let mut list = vec![
        json!({"actor": {"reference": consult.patient}, "required": "required", "status": status}),
        json!({"type": coded(PARTICIPATION_SYSTEM, "ATND", "attender"), "actor": {"reference": consult.specialist},
               "required": "required", "status": "accepted"}),
    ];
    if let Some(interpreter) = interpreter {
        list.push(json!({"type": coded(PARTICIPANT_TYPE_SYSTEM, "translator", "Translator"),
                         "actor": {"reference": interpreter}, "required": "required", "status": status}));
    }
    Value::Array(list)
}

/// The languages an interpreter offers: its Practitioner's `communication` (R4 PractitionerRole has
/// none of its own) or the HealthcareService's `communication`.
async fn languages_of(reader: &mut Reader<'_>, actor: &str) -> Result<Vec<String>, ApiError> {
    let Some(actor_json) = reader.read(actor).await? else { return Ok(Vec::new()) };
    let holder = match actor_json["practitioner"]["reference"].as_str() {
        Some(practitioner) if actor.starts_with("PractitionerRole/") => reader.read(practitioner).await?,
        _ => Some(actor_json),
    };
    let Some(holder) = holder else { return Ok(Vec::new()) };
    let concepts = holder["communication"].as_array().into_iter().flatten();
    // Practitioner.communication is a CodeableConcept; HealthcareService.communication too.
    Ok(concepts
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter_map(|coding| coding["code"].as_str().map(str::to_string))
        .collect())
}

async fn speaks(reader: &mut Reader<'_>, actor: &str, wanted: &str) -> Result<bool, ApiError> {
    Ok(languages_of(reader, actor).await?.iter().any(|offered| scheduling::language_matches(wanted, offered)))
}

/// The search for the open (proposed or booked) consults of `referral`.
fn open_consults_query(referral: &str) -> Result<rex_fhir::query::SearchQuery, ApiError> {
    parameters::search(
        "Appointment",
        &[
            ("based-on", referral.to_string()),
            ("status", "proposed,booked".to_string()),
            ("service-type", format!("{SERVICE_SYSTEM}|{CONSULT_SERVICE}")),
        ],
    )
}

/// The open (proposed or booked) consult of `referral` the caller may see.
async fn open_consult(reader: &mut Reader<'_>, caller: &Caller, referral: &str) -> Result<StoredResource, ApiError> {
    if !referral.starts_with("ServiceRequest/") {
        return Err(invalid("referral", msg!("find-referral-reference", referral)));
    }
    if reader.read_visible(caller, referral).await.map_err(|e| e.at(&location("referral")))?.is_none() {
        return Err(ApiError::not_found(msg!("resource-not-known", reference = referral)).at(&location("referral")));
    }
    let mut query = open_consults_query(referral)?;
    caller.restrict(&mut query);
    reader.search(&query).await?.into_iter().next().ok_or_else(|| {
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::BusinessRule, msg!("consult-none", referral))
            .at(&location("referral"))
    })
}

/// `Task/{id}/$request-consult`.
pub async fn request(state: &AppState, caller: &Caller, task_id: &str, body: &Value) -> Result<Response, ApiError> {
    caller.require_staff("$request-consult")?;
    let parameters = Parameters::new(body);
    let minutes = parameters.integer("minutesDuration")?.ok_or_else(|| required("minutesDuration"))?;
    if !MINUTES.contains(&minutes) {
        return Err(invalid("minutesDuration", msg!("find-duration")));
    }
    let earliest = parameters.instant("earliest")?.ok_or_else(|| required("earliest"))?;
    let latest = parameters.instant("latest")?.ok_or_else(|| required("latest"))?;
    if latest < earliest + Duration::minutes(minutes) {
        return Err(invalid("latest", msg!("find-window")));
    }
    let interpreter = parameters.boolean("interpreter")?;
    let language = parameters.text("language").map(str::to_string);
    let window = Span { start: earliest, end: latest };
    let context = (state, caller, task_id, minutes, window, interpreter, language);
    let stored = super::in_transaction(&state.store, rex_store::Isolation::RowLocking, &context, |tx, context| {
        let (state, caller, task_id, minutes, window, interpreter, language) = context;
        Box::pin(async move {
            let current = match tx.read_for_update("Task", task_id).await?.filter(|t| !t.deleted) {
                Some(task) if caller.sees(&task) => task,
                Some(_) => return Err(ApiError::hidden(&format!("Task/{task_id}"))),
                None => {
                    return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("Task/{task_id}"))));
                }
            };
            let task = stored_json(&current)?;
            let Some(specialist) = task["owner"]["reference"].as_str().filter(|o| o.starts_with("PractitionerRole/"))
            else {
                return Err(ApiError::one(StatusCode::CONFLICT, IssueCode::BusinessRule, msg!("consult-claim-first"))
                    .at("Task.owner"));
            };
            let referral = task["focus"]["reference"].as_str().ok_or_else(ApiError::internal)?.to_string();
            let existing = parameters::search(
                "Appointment",
                &[("based-on", referral.clone()), ("status", "proposed,booked".to_string())],
            )?;
            if let Some(open) = tx.search(&existing).await?.matches.first() {
                return Err(ApiError::one(
                    StatusCode::CONFLICT,
                    IssueCode::Duplicate,
                    msg!("consult-already-open", appointment = format!("Appointment/{}", open.id)),
                ));
            }
            let needs_interpreter = interpreter.unwrap_or_else(|| {
                extension(&task, "task-interpreter-required").and_then(|e| e["valueBoolean"].as_bool()) == Some(true)
            });
            let language = match (needs_interpreter, language) {
                (false, _) => None,
                (true, Some(language)) => Some(language.clone()),
                (true, None) => match extension(&task, "task-patient-language").and_then(|e| e["valueCode"].as_str()) {
                    Some(language) => Some(language.to_string()),
                    None => {
                        return Err(ApiError::one(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            IssueCode::Required,
                            msg!("consult-interpreter-language"),
                        )
                        .at(&location("language")));
                    }
                },
            };
            let partner = owner(&task).map(str::to_string);
            let zone = partner_zone(state, partner.as_deref());
            let lang = crate::language::of_partner(state, partner.as_deref());
            let consult = Consult {
                referral: referral.clone(),
                patient: task["for"]["reference"].as_str().ok_or_else(ApiError::internal)?.to_string(),
                specialist: specialist.to_string(),
                language,
                requirement: Requirement { minutes: *minutes, window: *window },
            };
            let mut appointment = json!({
                "resourceType": "Appointment",
                "status": "proposed",
                "serviceType": service_type(CONSULT_SERVICE),
                "description": msg!("consult-description").render(lang),
                "basedOn": [{"reference": referral}],
                "minutesDuration": minutes,
                "requestedPeriod": [{"start": scheduling::in_zone(window.start, zone),
                                     "end": scheduling::in_zone(window.end, zone)}],
                "participant": participants(&consult, None, "needs-action"),
            });
            if let Some(language) = &consult.language {
                set_extension(
                    &mut appointment,
                    &extension_url("consult-interpreter-language"),
                    json!({"valueCode": language}),
                );
            }
            set_event(&mut appointment, "proposed");
            if let Some(partner) = &partner {
                set_owner(&mut appointment, partner);
            }
            let created = create(tx, "Appointment", appointment).await?;
            let arguments =
                Arguments { appointment: Some(format!("Appointment/{}", created.id)), ..Arguments::default() };
            workflow::apply(tx, state, caller, current, Action::RequestConsult, &arguments).await?;
            Ok(created)
        })
    })
    .await?;
    Ok(resource_response(StatusCode::CREATED, &stored, Some(&stored_json(&stored)?)))
}

/// Free slots of the schedules `schedules` starting in `from`..`to`, with each slot's schedule.
async fn free_slots(
    reader: &mut Reader<'_>,
    schedules: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(FreeSlot, String)>, ApiError> {
    if schedules.is_empty() {
        return Ok(Vec::new());
    }
    let query = parameters::search(
        "Slot",
        &[
            ("schedule", schedules.iter().map(|s| format!("Schedule/{s}")).collect::<Vec<_>>().join(",")),
            ("status", "free".to_string()),
            ("start", format!("ge{}", instant_text(from))),
            ("start", format!("lt{}", instant_text(to))),
            ("_sort", "start".to_string()),
            ("_count", rex_fhir::query::MAX_COUNT.to_string()),
        ],
    )?;
    let mut slots = Vec::new();
    for stored in reader.search(&query).await? {
        let slot = stored_json(&stored)?;
        let (Some(span), Some(schedule)) = (slot_span(&slot), slot["schedule"]["reference"].as_str()) else { continue };
        slots.push((FreeSlot { id: stored.id, span }, schedule.to_string()));
    }
    Ok(slots)
}

fn schedule_ids(found: &[StoredResource]) -> Vec<String> {
    found.iter().map(|s| s.id.clone()).collect()
}

/// The proposals for a consult from `now` on, with the interpreter (actor) of each interpreter slot.
async fn proposals_for(
    reader: &mut Reader<'_>,
    consult: &Consult,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<(Vec<Proposal>, HashMap<String, String>), ApiError> {
    let window = Span { start: consult.requirement.window.start.max(now), end: consult.requirement.window.end };
    let requirement = Requirement { minutes: consult.requirement.minutes, window };
    let service = |code: &str| format!("{SERVICE_SYSTEM}|{code}");
    let specialist_query = parameters::search(
        "Schedule",
        &[("actor", consult.specialist.clone()), ("service-type", service(CONSULT_SERVICE))],
    )?;
    let specialist_schedules = schedule_ids(&reader.search(&specialist_query).await?);
    let specialist: Vec<FreeSlot> = free_slots(reader, &specialist_schedules, window.start, window.end)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let mut interpreter_of_slot = HashMap::new();
    let Some(language) = &consult.language else {
        return Ok((scheduling::proposals(&requirement, &specialist, None, limit), interpreter_of_slot));
    };
    let interpreting = parameters::search(
        "Schedule",
        &[
            ("service-type", service(INTERPRETING_SERVICE)),
            ("active", "true".to_string()),
            ("_count", rex_fhir::query::MAX_COUNT.to_string()),
        ],
    )?;
    let mut actor_of_schedule = HashMap::new();
    for schedule in reader.search(&interpreting).await? {
        let actors = stored_json(&schedule)?["actor"].clone();
        for actor in actors.as_array().into_iter().flatten().filter_map(|a| a["reference"].as_str()) {
            if speaks(reader, actor, language).await? {
                actor_of_schedule.insert(format!("Schedule/{}", schedule.id), actor.to_string());
                break;
            }
        }
    }
    let schedules: Vec<String> =
        actor_of_schedule.keys().map(|s| s.trim_start_matches("Schedule/").to_string()).collect();
    let earliest_start = window.start - Duration::hours(LONGEST_SLOT_HOURS);
    let mut interpreters = Vec::new();
    for (slot, schedule) in free_slots(reader, &schedules, earliest_start, window.end).await? {
        if let Some(actor) = actor_of_schedule.get(&schedule) {
            interpreter_of_slot.insert(slot.id.clone(), actor.clone());
        }
        interpreters.push(slot);
    }
    Ok((scheduling::proposals(&requirement, &specialist, Some(&interpreters), limit), interpreter_of_slot))
}

/// `Appointment/$find`: proposals for the referral's consult, as a searchset Bundle.
pub async fn find(state: &AppState, caller: &Caller, body: &Value) -> Result<Response, ApiError> {
    caller.require("Appointment", Interaction::Search)?;
    let parameters = Parameters::new(body);
    let referral = parameters.required_text("referral")?;
    let limit = parameters.integer("_count")?.unwrap_or(10).clamp(1, 50) as usize;
    let mut reader = Reader::Store(&state.store);
    let stored = open_consult(&mut reader, caller, referral).await?;
    let appointment = stored_json(&stored)?;
    let consult = consult_of(&appointment)?;
    let zone = partner_zone(state, owner(&appointment));
    let (proposals, interpreter_of_slot) = proposals_for(&mut reader, &consult, Utc::now(), limit).await?;
    let entries: Vec<Value> = proposals
        .iter()
        .map(|proposal| {
            let interpreter = proposal.interpreter_slot.as_ref().and_then(|slot| interpreter_of_slot.get(slot));
            let mut slots = vec![json!({"reference": format!("Slot/{}", proposal.specialist_slot)})];
            slots.extend(proposal.interpreter_slot.iter().map(|slot| json!({"reference": format!("Slot/{slot}")})));
            let mut offer = json!({
                "resourceType": "Appointment",
                "status": "proposed",
                "serviceType": appointment["serviceType"],
                "basedOn": appointment["basedOn"],
                "start": scheduling::in_zone(proposal.consult.start, zone),
                "end": scheduling::in_zone(proposal.consult.end, zone),
                "minutesDuration": consult.requirement.minutes,
                "slot": slots,
                "participant": participants(&consult, interpreter.map(String::as_str), "needs-action"),
            });
            if let Some(language) = extension(&appointment, "consult-interpreter-language") {
                offer["extension"] = json!([language]);
            }
            json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": offer,
                   "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `Appointment/$book`.
pub async fn book(state: &AppState, caller: &Caller, body: &Value) -> Result<Response, ApiError> {
    caller.require("Appointment", Interaction::Update)?;
    let parameters = Parameters::new(body);
    let chosen = parameters.resource("appointment-resource").ok_or_else(|| required("appointment-resource"))?;
    let at = |element: &str| format!("{}.resource.{element}", location("appointment-resource"));
    if chosen["resourceType"] != "Appointment" {
        return Err(ApiError::bad_request(msg!("book-not-appointment")).at(&at("resourceType")));
    }
    let referral = chosen["basedOn"][0]["reference"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request(msg!("book-no-referral")).at(&at("basedOn")))?
        .to_string();
    let mut slots = Vec::new();
    for reference in chosen["slot"].as_array().into_iter().flatten() {
        match reference["reference"].as_str().and_then(|r| r.strip_prefix("Slot/")) {
            Some(id) if !slots.iter().any(|s| s == id) => slots.push(id.to_string()),
            _ => return Err(ApiError::bad_request(msg!("book-slot-reference")).at(&at("slot"))),
        }
    }
    if !(1..=2).contains(&slots.len()) {
        return Err(ApiError::bad_request(msg!("book-slot-count")).at(&at("slot")));
    }
    let context = (state, caller, referral, slots, Utc::now());
    let stored = super::in_transaction(&state.store, rex_store::Isolation::RowLocking, &context, |tx, context| {
        let (state, caller, referral, slots, now) = context;
        Box::pin(book_in(tx, state, caller, referral, slots, *now))
    })
    .await
    .map_err(|err| err.at(&at("slot")))?;
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}

fn not_for_this_consult(message: Message) -> ApiError {
    ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::BusinessRule, message)
}

async fn book_in(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    referral: &str,
    new_slots: &[String],
    now: DateTime<Utc>,
) -> Result<StoredResource, ApiError> {
    let found = open_consult(&mut Reader::Tx(tx), caller, referral).await?;
    let current = tx.read_for_update("Appointment", &found.id).await?.ok_or_else(ApiError::internal)?;
    let mut appointment = stored_json(&current)?;
    let rescheduling = match appointment["status"].as_str() {
        Some("proposed") => false,
        Some("booked") => true,
        _ => {
            return Err(ApiError::one(StatusCode::CONFLICT, IssueCode::Conflict, msg!("consult-cancelled-meanwhile")));
        }
    };
    let consult = consult_of(&appointment)?;
    referral_is_open(tx, &consult.referral).await?;
    let old_slots: Vec<String> = slot_ids(&appointment);
    // Row locks in one order (by id), so two bookings never wait on each other in a cycle.
    let mut locked: BTreeMap<String, (StoredResource, Value)> = BTreeMap::new();
    let mut all: Vec<&String> = old_slots.iter().chain(new_slots).collect();
    all.sort();
    all.dedup();
    for id in all {
        if let Some(stored) = tx.read_for_update("Slot", id).await?.filter(|s| !s.deleted) {
            let slot = stored_json(&stored)?;
            locked.insert(id.clone(), (stored, slot));
        }
    }
    // Which new slot is the specialist's and which the interpreter's.
    let mut specialist_slot = None;
    let mut interpreter = None;
    for id in new_slots {
        let Some((_, slot)) = locked.get(id) else {
            return Err(not_for_this_consult(msg!("resource-not-known", reference = format!("Slot/{id}"))));
        };
        let schedule = match slot["schedule"]["reference"].as_str() {
            Some(schedule) => Reader::Tx(tx).read(schedule).await?.unwrap_or_default(),
            None => Value::Null,
        };
        let actor = schedule["actor"][0]["reference"].as_str().unwrap_or_default().to_string();
        let interpreting = has_code(&schedule["serviceType"], SERVICE_SYSTEM, INTERPRETING_SERVICE);
        match &consult.language {
            _ if !interpreting && actor == consult.specialist && specialist_slot.is_none() => {
                specialist_slot = Some(id.clone());
            }
            Some(language) if interpreting && interpreter.is_none() => {
                if !speaks(&mut Reader::Tx(tx), &actor, language).await? {
                    return Err(not_for_this_consult(msg!(
                        "slot-interpreter-language",
                        slot = format!("Slot/{id}"),
                        language
                    )));
                }
                interpreter = Some((id.clone(), actor));
            }
            _ => {
                let slot = format!("Slot/{id}");
                return Err(not_for_this_consult(match consult.language {
                    Some(_) => msg!("slot-not-for-consult-interpreted", slot),
                    None => msg!("slot-not-for-consult", slot),
                }));
            }
        }
    }
    let specialist_slot = specialist_slot.ok_or_else(|| not_for_this_consult(msg!("book-needs-specialist-slot")))?;
    if let (Some(language), None) = (&consult.language, &interpreter) {
        return Err(not_for_this_consult(msg!("book-needs-interpreter", language)));
    }
    let span = slot_span(&locked[&specialist_slot].1).ok_or_else(ApiError::internal)?;
    let consult_span = consult.requirement.consult_in(&span).ok_or_else(|| {
        not_for_this_consult(msg!(
            "slot-too-short",
            slot = format!("Slot/{specialist_slot}"),
            minutes = consult.requirement.minutes
        ))
    })?;
    if consult_span.start < now {
        return Err(not_for_this_consult(msg!("slot-in-past", slot = format!("Slot/{specialist_slot}"))));
    }
    if let Some((id, _)) = &interpreter
        && !slot_span(&locked[id].1).is_some_and(|s| s.covers(&consult_span))
    {
        return Err(not_for_this_consult(msg!("slot-not-covering", slot = format!("Slot/{id}"))));
    }
    // A reschedule frees the old slots first (the new time may reuse one of them).
    for id in &old_slots {
        set_slot_status(tx, &mut locked, id, "free").await?;
    }
    for id in new_slots {
        if locked[id].1["status"] != "free" {
            return Err(ApiError::one(
                StatusCode::CONFLICT,
                IssueCode::Conflict,
                msg!("slot-taken", slot = format!("Slot/{id}")),
            ));
        }
        set_slot_status(tx, &mut locked, id, "busy").await?;
    }
    let zone = partner_zone(state, owner(&appointment));
    appointment["status"] = json!("booked");
    appointment["start"] = json!(scheduling::in_zone(consult_span.start, zone));
    appointment["end"] = json!(scheduling::in_zone(consult_span.end, zone));
    appointment["slot"] =
        json!(new_slots.iter().map(|id| json!({"reference": format!("Slot/{id}")})).collect::<Vec<_>>());
    appointment["participant"] =
        participants(&consult, interpreter.as_ref().map(|(_, actor)| actor.as_str()), "accepted");
    if appointment["extension"].as_array().is_none_or(|list| !list.iter().any(|e| e["url"] == VIRTUAL_SERVICE_URL)) {
        let link = video_link(&state.config.video_link_template, &current.id);
        set_extension(
            &mut appointment,
            VIRTUAL_SERVICE_URL,
            json!({"extension": [{"url": "addressUrl", "valueUrl": link}]}),
        );
    }
    set_event(&mut appointment, if rescheduling { "rescheduled" } else { "booked" });
    // A new time deserves a new reminder.
    super::reminders::forget_reminder(&mut appointment);
    let op = WriteOp::Update {
        resource_type: "Appointment".into(),
        target: Target::Id(current.id.clone()),
        resource: appointment,
        if_match: Some(current.version_id),
    };
    let stored = execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?;
    resume_task(tx, state, &consult.referral, Action::ConsultBooked, &stored.id).await?;
    Ok(stored)
}

/// A consult is booked only while its referral is worked on: not after the partner revoked it or
/// the specialist finished it.
async fn referral_is_open(tx: &mut Tx, referral: &str) -> Result<(), ApiError> {
    let query =
        parameters::search("Task", &[("focus", referral.to_string()), ("status", "in-progress,on-hold".to_string())])?;
    if tx.search(&query).await?.matches.is_empty() {
        return Err(ApiError::one(
            StatusCode::CONFLICT,
            IssueCode::BusinessRule,
            msg!("consult-referral-closed", referral),
        ));
    }
    Ok(())
}

/// The video link of a consult: the template with `{room}` (a fresh unguessable id) and
/// `{appointment}` filled in.
pub fn video_link(template: &str, appointment: &str) -> String {
    template.replace("{room}", &uuid::Uuid::new_v4().simple().to_string()).replace("{appointment}", appointment)
}

fn slot_ids(appointment: &Value) -> Vec<String> {
    appointment["slot"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["reference"].as_str()?.strip_prefix("Slot/").map(str::to_string))
        .collect()
}

/// Writes a locked slot with a new status (nothing when it has it already or is gone).
async fn set_slot_status(
    tx: &mut Tx,
    locked: &mut BTreeMap<String, (StoredResource, Value)>,
    id: &str,
    status: &str,
) -> Result<(), ApiError> {
    let Some((_, slot)) = locked.get_mut(id) else { return Ok(()) };
    if slot["status"] == status {
        return Ok(());
    }
    slot["status"] = json!(status);
    let op = WriteOp::Update {
        resource_type: "Slot".into(),
        target: Target::Id(id.to_string()),
        resource: slot.clone(),
        if_match: None,
    };
    let stored = execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?;
    if let Some(entry) = locked.get_mut(id) {
        entry.0 = stored;
    }
    Ok(())
}

/// Moves the referral's Tasks that wait for the consult (`on-hold`, `consult-proposed`) on.
async fn resume_task(
    tx: &mut Tx,
    state: &AppState,
    referral: &str,
    action: Action,
    appointment: &str,
) -> Result<(), ApiError> {
    let query = parameters::search("Task", &[("focus", referral.to_string())])?;
    for found in tx.search(&query).await?.matches {
        let Some(task) = tx.read_for_update("Task", &found.id).await? else { continue };
        if waits_for(&stored_json(&task)?, "consult-proposed") {
            let arguments =
                Arguments { appointment: Some(format!("Appointment/{appointment}")), ..Arguments::default() };
            workflow::apply(tx, state, &Caller::Unrestricted, task, action, &arguments).await?;
        }
    }
    Ok(())
}

/// Cancels a consult Appointment read for update: its slots become free again and the reason is
/// recorded. The Task is the caller's business.
async fn cancel_appointment(tx: &mut Tx, current: StoredResource, reason: &str) -> Result<StoredResource, ApiError> {
    let id = current.id.clone();
    let mut appointment = stored_json(&current)?;
    if !has_code(&appointment["serviceType"], SERVICE_SYSTEM, CONSULT_SERVICE) {
        return Err(not_for_this_consult(msg!("not-a-consult", appointment = format!("Appointment/{id}"))));
    }
    if !matches!(appointment["status"].as_str(), Some("proposed" | "booked")) {
        return Err(ApiError::one(
            StatusCode::CONFLICT,
            IssueCode::BusinessRule,
            msg!("consult-not-cancellable", appointment = format!("Appointment/{id}"), status = appointment["status"]),
        ));
    }
    let mut ids = slot_ids(&appointment);
    ids.sort();
    let mut locked = BTreeMap::new();
    for slot_id in &ids {
        if let Some(stored) = tx.read_for_update("Slot", slot_id).await?.filter(|s| !s.deleted) {
            let slot = stored_json(&stored)?;
            locked.insert(slot_id.clone(), (stored, slot));
        }
    }
    for slot_id in &ids {
        set_slot_status(tx, &mut locked, slot_id, "free").await?;
    }
    appointment["status"] = json!("cancelled");
    appointment["cancelationReason"] = json!({"text": reason});
    set_event(&mut appointment, "cancelled");
    let op = WriteOp::Update {
        resource_type: "Appointment".into(),
        target: Target::Id(id.to_string()),
        resource: appointment,
        if_match: Some(current.version_id),
    };
    execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)
}

/// Cancels the open consults of a referral the partner revoked (rex's own work: the revoke was
/// checked), so their slots are free for other referrals.
pub async fn cancel_open_consults(tx: &mut Tx, referral: &str) -> Result<(), ApiError> {
    let query = open_consults_query(referral)?;
    for found in tx.search(&query).await?.matches {
        if let Some(current) = tx.read_for_update("Appointment", &found.id).await?.filter(|a| !a.deleted) {
            cancel_appointment(tx, current, "The referring partner revoked the referral").await?;
        }
    }
    Ok(())
}

/// `Appointment/{id}/$cancel` (`reason`): by the partner or staff.
pub async fn cancel(state: &AppState, caller: &Caller, id: &str, body: &Value) -> Result<Response, ApiError> {
    caller.require("Appointment", Interaction::Update)?;
    let reason = Parameters::new(body).text("reason").unwrap_or("Cancelled").to_string();
    let context = (state, caller, id, reason);
    let stored = super::in_transaction(&state.store, rex_store::Isolation::RowLocking, &context, |tx, context| {
        let (state, caller, id, reason) = context;
        Box::pin(async move {
            let current = match tx.read_for_update("Appointment", id).await?.filter(|a| !a.deleted) {
                Some(found) if caller.sees(&found) => found,
                Some(_) => return Err(ApiError::hidden(&format!("Appointment/{id}"))),
                None => {
                    return Err(ApiError::not_found(msg!(
                        "resource-not-known",
                        reference = format!("Appointment/{id}")
                    )));
                }
            };
            let stored = cancel_appointment(tx, current, reason).await?;
            let referral = stored_json(&stored)?["basedOn"][0]["reference"].as_str().unwrap_or_default().to_string();
            resume_task(tx, state, &referral, Action::ConsultCancelled, id).await?;
            Ok(stored)
        })
    })
    .await?;
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_video_link_fills_the_template() {
        let link = video_link("https://meet.example/{appointment}/{room}", "a1");
        assert!(link.starts_with("https://meet.example/a1/"));
        assert_eq!(link.len(), "https://meet.example/a1/".len() + 32);
        assert_ne!(video_link(DEFAULT_VIDEO_LINK_TEMPLATE, "a1"), video_link(DEFAULT_VIDEO_LINK_TEMPLATE, "a1"));
    }

    #[test]
    fn a_consult_reads_back_from_its_appointment() {
        let consult = Consult {
            referral: "ServiceRequest/1".into(),
            patient: "Patient/1".into(),
            specialist: "PractitionerRole/dr".into(),
            language: None,
            requirement: Requirement {
                minutes: 30,
                window: Span {
                    start: parameters::instant("2027-03-15T00:00:00Z").unwrap(),
                    end: parameters::instant("2027-03-16T00:00:00Z").unwrap(),
                },
            },
        };
        let appointment = json!({"basedOn": [{"reference": consult.referral}], "minutesDuration": 30,
            "requestedPeriod": [{"start": "2027-03-15T04:00:00+04:00", "end": "2027-03-16T04:00:00+04:00"}],
            "participant": participants(&consult, Some("PractitionerRole/i"), "accepted")});
        let read = consult_of(&appointment).unwrap();
        assert_eq!((read.patient.as_str(), read.specialist.as_str()), ("Patient/1", "PractitionerRole/dr"));
        assert_eq!(read.requirement, consult.requirement);
        assert_eq!(
            participant_of(&appointment, Some((PARTICIPANT_TYPE_SYSTEM, "translator"))).as_deref(),
            Some("PractitionerRole/i")
        );
    }
}
