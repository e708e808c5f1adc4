//! `GET /fhir/metadata`: a CapabilityStatement that says exactly what rex supports.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use rex_fhir::search::{ParamType, SearchRegistry};
use serde_json::{Value, json};

use crate::AppState;
use crate::http::fhir_json;

pub async fn metadata(State(state): State<AppState>) -> Response {
    fhir_json(StatusCode::OK, &state.capability_statement)
}

/// The specialist workflow operations on referral Tasks (`interactions/workflow.rs`).
fn workflow_operations() -> Value {
    operation_list(
        "Task",
        &[
            ("claim", "Task/{id}: a specialist takes the referral (owner: PractitionerRole)"),
            ("claim-next", "Task: claim the open referral of a queue (queue) that is due first"),
            ("release", "Task/{id}: put a claimed referral back on its queue"),
            ("redirect", "Task/{id}: move the referral to another queue (queue, reason)"),
            ("decline", "Task/{id}: decline the referral (reason)"),
            ("request-information", "Task/{id}: ask the partner for more (message); the Task waits on-hold"),
            ("complete", "Task/{id}: return the opinion (opinion: DiagnosticReport or Communication)"),
            (
                "request-consult",
                "Task/{id}: the owning specialist asks for a telehealth consult (minutesDuration, earliest, latest, interpreter, language); a proposed Appointment is created and the Task waits on-hold (consult-proposed)",
            ),
        ],
    )
}

/// The scheduling operations of telehealth consults (`interactions/consult.rs`), on the IHE ITI
/// Scheduling operations `$find` and `$book`.
fn appointment_operations() -> Value {
    operation_list(
        "Appointment",
        &[
            (
                "find",
                "Appointment/$find (referral: ServiceRequest): proposed Appointments pairing a free specialist slot with, when needed, a free interpreter slot of the patient's language; times carry the partner's offset",
            ),
            (
                "book",
                "Appointment/$book (appointment-resource: a proposal from $find): books both slots atomically (one winner per slot); booking a booked consult reschedules it; the Task resumes",
            ),
            ("cancel", "Appointment/{id}/$cancel (reason): cancels the consult and frees its slots"),
        ],
    )
}

/// Staff availability operations on the actors of schedules (`interactions/availability.rs`).
fn availability_operations(resource_type: &str) -> Value {
    operation_list(
        resource_type,
        &[
            (
                "open-slots",
                "{type}/{id}/$open-slots (timezone, start/end, or weekday+from+until+startTime+endTime, slotMinutes): opens free slots from wall-clock times in the actor's IANA time zone",
            ),
            (
                "block-time",
                "{type}/{id}/$block-time (start, end, timezone, reason): marks the free slots in the period busy-unavailable",
            ),
        ],
    )
}

fn operation_list(resource_type: &str, operations: &[(&str, &str)]) -> Value {
    operations
        .iter()
        .map(|(name, documentation)| {
            json!({"name": name,
                   "definition": format!("https://rex.example/fhir/OperationDefinition/{resource_type}-{name}"),
                   "documentation": documentation})
        })
        .collect()
}

fn type_name(param_type: &ParamType) -> &'static str {
    match param_type {
        ParamType::Number => "number",
        ParamType::Date => "date",
        ParamType::String => "string",
        ParamType::Token => "token",
        ParamType::Reference => "reference",
        ParamType::Composite => "composite",
        ParamType::Quantity => "quantity",
        ParamType::Uri => "uri",
        ParamType::Special => "special",
    }
}

/// Builds the statement from the same registry the search code uses, so it cannot drift.
pub fn capability_statement(base_url: &str) -> Value {
    let registry = SearchRegistry::r4();
    let interactions =
        ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];
    let resources: Vec<Value> = registry
        .resource_types()
        .map(|resource_type| {
            let params: Vec<Value> = registry
                .params(resource_type)
                .iter()
                .filter(|def| def.is_supported())
                .map(|def| json!({"name": def.code, "type": type_name(&def.param_type)}))
                .collect();
            let references: Vec<&str> = registry
                .params(resource_type)
                .iter()
                .filter(|def| def.is_supported() && def.param_type == ParamType::Reference)
                .map(|def| def.code.as_str())
                .collect();
            let includes: Vec<String> = std::iter::once(format!("{resource_type}:*"))
                .chain(references.iter().map(|code| format!("{resource_type}:{code}")))
                .collect();
            let mut entry = json!({
                "type": resource_type,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
                "interaction": interactions.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "local"],
                "searchInclude": includes,
                "searchParam": params,
            });
            match resource_type {
                "Task" => entry["operation"] = workflow_operations(),
                "Appointment" => entry["operation"] = appointment_operations(),
                "PractitionerRole" | "HealthcareService" => entry["operation"] = availability_operations(resource_type),
                _ => {}
            }
            if resource_type == "Subscription" {
                entry["operation"] = json!([{
                    "name": "status",
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
                    "documentation": "Subscription/{id}/$status: status, events so far, last error and delivery counts (pending, delivered, dead)"
                }]);
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-29",
        "publisher": "rex",
        "kind": "instance",
        "software": {"name": "rex", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "rex FHIR referral and second-opinion exchange", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search supports the modifiers :exact, :contains, :missing, :not (tokens), :below/:above (uri) and a target type on references; prefixes eq ne gt lt ge le sa eb ap; _count, _offset, _sort (_lastUpdated, _id, date and string parameters), _include and _revinclude (with :iterate), _summary=count and _total. Chained parameters and _has are not supported. Unknown parameters are refused unless Prefer: handling=lenient.",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": [{
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                "documentation": "At /fhir/$validate, /fhir/{type}/$validate and /fhir/{type}/{id}/$validate; Parameters (resource, profile, mode) or a bare resource, and ?profile="
            }, {
                "name": "process-message",
                "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                "documentation": "Referral Message Bundles (MessageHeader first, events in https://rex.example/fhir/CodeSystem/message-event), answered synchronously with a response message"
            }, {
                "name": "partner-scorecard",
                "definition": "https://rex.example/fhir/OperationDefinition/partner-scorecard",
                "documentation": "GET /fhir/$partner-scorecard?partner=ID&period=DATE[/DATE]: a partner's submissions, acceptance rate, median time to first specialist action, top failing rules and trend by day, as Parameters or CSV (_format=text/csv); partners read their own, coordinators and admins any"
            }, {
                "name": "sandbox-reset",
                "definition": "https://rex.example/fhir/OperationDefinition/sandbox-reset",
                "documentation": "POST /fhir/$sandbox-reset?partner=ID (admins): deletes a sandbox partner's resources and forgets its referral identities"
            }],
        }],
    })
}
