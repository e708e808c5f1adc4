//! The resources rex writes when it takes in a referral: the Task that puts it on a queue (FHIR
//! Workflow with BSeR business statuses) and the AuditEvents that explain routing and amendments.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::referral::Referral;
use crate::routing::{Queue, RoutingDecision};
use crate::{PARTNER_SYSTEM, QUEUE_SYSTEM, REX_CANONICAL};

/// BSeR's Task business status code system.
pub const BUSINESS_STATUS_SYSTEM: &str = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS";
/// rex's AuditEvent types and subtypes.
pub const AUDIT_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/audit-event";

/// Extensions rex puts on referral Tasks (defined in `profiles/`, searchable with the
/// `patient-language`, `interpreter-required` and `routing-rule` Task search parameters).
pub fn extension_url(name: &str) -> String {
    format!("{REX_CANONICAL}/StructureDefinition/{name}")
}

/// The queue a referral Task belongs to: its owner queue, or (claimed) the queue it came from
/// (the `task-queue` extension).
pub fn queue_of(task: &Value) -> Option<&str> {
    let owner = task["owner"]["reference"].as_str()?;
    owner.strip_prefix("HealthcareService/").or_else(|| {
        let url = extension_url("task-queue");
        let extension = task["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())?;
        extension["valueReference"]["reference"].as_str()?.strip_prefix("HealthcareService/")
    })
}

fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The HealthcareService that stands for a queue; its id is the queue code.
/// `meta.tag` marking test data (HL7 v3 ActReason HTEST): every resource of a sandbox partner.
pub const TEST_DATA_TAG: (&str, &str) = ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST");

/// The queue sandbox partners' referrals land on: no specialist works it, so a test referral
/// never reaches a real review queue, while its routing decision stays on the Task.
pub fn sandbox_queue() -> Queue {
    Queue { code: "sandbox".into(), name: "Sandbox: test referrals, reviewed by no one".into() }
}

pub fn queue_service(queue: &Queue) -> Value {
    json!({
        "resourceType": "HealthcareService",
        "id": queue.code,
        "identifier": [{"system": QUEUE_SYSTEM, "value": queue.code}],
        "active": true,
        "name": queue.name,
    })
}

/// The Task that puts a referral on its queue: status `requested`, BSeR 2.0 "Service Request
/// Created", due at the end of `restriction.period`, with the patient's language and the rule.
pub fn referral_task(
    referral: &Referral,
    decision: &RoutingDecision,
    queue: &Queue,
    service_request: &str,
    patient: &str,
    requester: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let mut extensions = vec![json!({"url": extension_url("task-routing-rule"), "valueCode": decision.rule})];
    if let Some(language) = &referral.language {
        extensions.push(json!({"url": extension_url("task-patient-language"), "valueCode": language}));
    }
    extensions.push(
        json!({"url": extension_url("task-interpreter-required"), "valueBoolean": referral.interpreter_required}),
    );
    let mut task = json!({
        "resourceType": "Task",
        "extension": extensions,
        "status": "requested",
        "businessStatus": {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": "2.0", "display": "Service Request Created"}]},
        "intent": "order",
        "priority": referral.priority.code(),
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": service_request},
        "for": {"reference": patient},
        "authoredOn": instant(now),
        "lastModified": instant(now),
        "owner": {"reference": format!("HealthcareService/{}", queue.code), "display": queue.name},
        "restriction": {"period": {"end": instant(decision.due)}},
        "note": [{"text": decision.explanation, "time": instant(now)}],
    });
    if let Some(requester) = requester {
        task["requester"] = json!({"reference": requester});
    }
    task
}

/// What an audited referral event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralEvent {
    Routed,
    Amended,
    /// An amendment changed what routing depends on (the priority): the due time (and the queue,
    /// while no one has claimed it) follow, and the decision says why.
    Rerouted,
}

/// An AuditEvent recording a routing decision or an amendment: who sent it, which resources, and
/// why. It holds references only, never resource content.
pub fn referral_audit_event(
    event: ReferralEvent,
    referral: &Referral,
    decision: &RoutingDecision,
    service_request: &str,
    task: &str,
    now: DateTime<Utc>,
) -> Value {
    let (code, display, action, description) = match event {
        ReferralEvent::Routed => ("routed", "Referral routed to a queue", "C", decision.explanation.clone()),
        ReferralEvent::Amended => (
            "amended",
            "Referral amended by its partner",
            "U",
            format!("Amended re-send of {}", referral.identifier_value),
        ),
        ReferralEvent::Rerouted => {
            ("rerouted", "Referral re-routed after an amendment", "U", decision.explanation.clone())
        }
    };
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_SYSTEM, "code": "referral", "display": "Referral event"},
        "subtype": [{"system": AUDIT_SYSTEM, "code": code, "display": display}],
        "action": action,
        "recorded": instant(now),
        "outcome": "0",
        "outcomeDesc": description,
        "agent": [
            {"who": {"identifier": {"system": PARTNER_SYSTEM, "value": referral.partner}}, "requestor": true},
            {"who": {"display": "rex intake"}, "requestor": false}
        ],
        "source": {"observer": {"display": "rex"}},
        "entity": [
            {"what": {"reference": service_request}},
            {"what": {"reference": task}, "detail": [
                {"type": "queue", "valueString": decision.queue},
                {"type": "rule", "valueString": decision.rule}
            ]}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::referral::{Category, Priority};

    #[test]
    fn task_carries_queue_due_time_language_and_rule() {
        let referral = Referral {
            partner: "p".into(),
            identifier_system: "s".into(),
            identifier_value: "v".into(),
            service_request_entry: 0,
            subject_reference: "urn:uuid:x".into(),
            category: Category::Referral,
            priority: Priority::Stat,
            specialties: vec![],
            codes: vec![],
            language: Some("ar-SA".into()),
            interpreter_required: true,
        };
        let now = DateTime::parse_from_rfc3339("2026-01-01T08:00:00Z").unwrap().with_timezone(&Utc);
        let decision = RoutingDecision {
            queue: "cardiology".into(),
            rule: "cardiology".into(),
            explanation: "x".into(),
            due: now + chrono::Duration::hours(4),
        };
        let queue = Queue { code: "cardiology".into(), name: "Cardiology".into() };
        let task = referral_task(&referral, &decision, &queue, "ServiceRequest/1", "Patient/2", None, now);
        assert_eq!(task["owner"]["reference"], "HealthcareService/cardiology");
        assert_eq!(task["restriction"]["period"]["end"], "2026-01-01T12:00:00Z");
        assert_eq!(task["priority"], "stat");
        assert_eq!(task["businessStatus"]["coding"][0]["code"], "2.0");
        assert_eq!(task["extension"][1]["valueCode"], "ar-SA");
        assert_eq!(task["extension"][2]["valueBoolean"], true);
        let violations = rex_fhir::structure::StructureModel::r4().check(&task);
        assert!(violations.is_empty(), "{violations:?}");
        let audit =
            referral_audit_event(ReferralEvent::Routed, &referral, &decision, "ServiceRequest/1", "Task/3", now);
        assert!(rex_fhir::structure::StructureModel::r4().check(&audit).is_empty());
    }
}
