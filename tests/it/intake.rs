//! Referral intake through a transaction Bundle: routing to a queue with an SLA clock, the Task and
//! AuditEvent, de-duplication of identical and amended re-sends, also under concurrency.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Reply, TestApp, backend_tests};

backend_tests!(
    referral_is_routed_with_task_and_audit,
    identical_resend_creates_nothing,
    amended_resend_makes_new_versions_and_keeps_the_task,
    concurrent_identical_sends_make_one_referral,
    invalid_referral_writes_nothing,
    queues_are_searchable_by_due_time_language_and_interpreter,
    task_posted_for_a_stored_service_request_is_routed,
);

const SNOMED: &str = "http://snomed.info/sct";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// A referral from a partner, with the reason code, priority and patient language given.
pub fn referral(number: &str, icd10: &str, priority: &str, language: &str, interpreter: bool) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Organization", "name": "Hospital Ángeles Lomas",
                      "identifier": [{"system": "https://rex.example/partners", "value": "hospital-angeles-mx"}]},
         "request": {"method": "POST", "url": "Organization"}},
        {"fullUrl": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Patient", "name": [{"family": "Ramírez", "given": ["Sofía"]}], "gender": "female", "birthDate": "1958-09-12",
                      "identifier": [{"system": "https://hospital-angeles.mx/fhir/mrn", "value": format!("MRN-{number}")}],
                      "address": [{"city": "Ciudad de México", "country": "MX"}],
                      "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired", "valueBoolean": interpreter}],
                      "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": true}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000003",
         "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": priority,
                      "identifier": [{"system": "https://hospital-angeles.mx/fhir/referral", "value": number}],
                      "category": [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}],
                      "reasonCode": [{"coding": [{"system": ICD10, "code": icd10}]}],
                      "subject": {"reference": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000002"},
                      "requester": {"reference": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000001"},
                      "authoredOn": "2026-11-20"},
         "request": {"method": "POST", "url": "ServiceRequest"}}
    ]})
}

fn link<'a>(reply: &'a Reply, relation: &str) -> &'a str {
    reply.body["link"].as_array().unwrap().iter().find(|l| l["relation"] == relation).unwrap()["url"].as_str().unwrap()
}

fn task_path(reply: &Reply) -> String {
    link(reply, "https://rex.example/fhir/referral-task").rsplit_once("/fhir/").unwrap().1.to_string()
}

fn outcome(reply: &Reply) -> &str {
    link(reply, "https://rex.example/fhir/referral-outcome").rsplit_once('#').unwrap().1
}

async fn referral_is_routed_with_task_and_audit(app: &TestApp) {
    let reply = app.post("", &referral("R-1", "I25.10", "urgent", "es-MX", true)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(outcome(&reply), "created");
    assert_eq!(reply.body["entry"].as_array().unwrap().len(), 3, "one response entry per request entry");
    let task = app.get(&task_path(&reply)).await.body;
    let request_id = reply.body["entry"][2]["resource"]["id"].as_str().unwrap();
    let patient_id = reply.body["entry"][1]["resource"]["id"].as_str().unwrap();
    assert_eq!(task["owner"]["reference"], "HealthcareService/cardiology");
    assert_eq!(task["focus"]["reference"], format!("ServiceRequest/{request_id}"));
    assert_eq!(task["for"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(
        (task["status"].as_str(), task["intent"].as_str(), task["priority"].as_str()),
        (Some("requested"), Some("order"), Some("urgent"))
    );
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "2.0");
    let authored = chrono::DateTime::parse_from_rfc3339(task["authoredOn"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(task["restriction"]["period"]["end"].as_str().unwrap()).unwrap();
    assert_eq!(due - authored, chrono::Duration::hours(72), "urgent referrals are due in 72 hours");
    assert!(task["note"][0]["text"].as_str().unwrap().contains("'cardiology'"));
    let audits = app.get(&format!("AuditEvent?entity=ServiceRequest/{request_id}")).await.body;
    assert_eq!(audits["total"], 1);
    assert_eq!(audits["entry"][0]["resource"]["subtype"][0]["code"], "routed");
    assert_eq!(app.get("HealthcareService/cardiology").await.body["identifier"][0]["value"], "cardiology");
    // No rule matches an unspecified reason: triage.
    let unmatched = app.post("", &referral("R-2", "R69", "routine", "en", false)).await;
    assert_eq!(app.get(&task_path(&unmatched)).await.body["owner"]["reference"], "HealthcareService/triage");
    let aneurysm = app.post("", &referral("R-3", "I71.4", "stat", "ar-SA", true)).await;
    let task = app.get(&task_path(&aneurysm)).await.body;
    assert_eq!(task["owner"]["reference"], "HealthcareService/vascular-surgery");
}

async fn identical_resend_creates_nothing(app: &TestApp) {
    let bundle = referral("R-10", "C50.911", "routine", "fr-FR", false);
    let first = app.post("", &bundle).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let rows = app.count_rows("resource_history").await;
    let second = app.post("", &bundle).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(outcome(&second), "unchanged");
    assert_eq!(app.count_rows("resource_history").await, rows, "nothing was written");
    assert_eq!(task_path(&second), task_path(&first));
    for index in 0..3 {
        assert_eq!(second.body["entry"][index]["resource"]["id"], first.body["entry"][index]["resource"]["id"]);
        assert_eq!(second.body["entry"][index]["response"]["status"], "200 OK");
    }
}

async fn amended_resend_makes_new_versions_and_keeps_the_task(app: &TestApp) {
    let mut bundle = referral("R-20", "G40.909", "routine", "zh-CN", true);
    let first = app.post("", &bundle).await;
    let task_before = app.get(&task_path(&first)).await.body;
    bundle["entry"][2]["resource"]["note"] = json!([{"text": "New EEG report attached"}]);
    // A re-send may use fresh urn:uuid fullUrls: entries are matched by type and position.
    let fresh = serde_json::to_string(&bundle).unwrap().replace("5b0c7c1e-0000-4000-8000", "aaaaaaaa-0000-4000-8000");
    let second = app.post("", &serde_json::from_str(&fresh).unwrap()).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(outcome(&second), "amended");
    let request = &second.body["entry"][2]["resource"];
    assert_eq!(request["id"], first.body["entry"][2]["resource"]["id"]);
    assert_eq!(request["meta"]["versionId"], "2");
    assert_eq!(
        second.body["entry"][1]["resource"]["meta"]["versionId"], "1",
        "the unchanged Patient keeps its version"
    );
    assert_eq!(app.get(&task_path(&second)).await.body, task_before, "the queue entry is kept");
    assert_eq!(app.total("ServiceRequest").await, 1);
    assert_eq!(app.total("Task").await, 1);
    let request_id = request["id"].as_str().unwrap();
    let audits = app.get(&format!("AuditEvent?entity=ServiceRequest/{request_id}&_sort=_lastUpdated")).await.body;
    let subtypes: Vec<&str> = audits["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(subtypes, vec!["routed", "amended"]);
}

async fn concurrent_identical_sends_make_one_referral(app: &TestApp) {
    let bundle = referral("R-30", "I48.91", "asap", "ar-AE", true);
    let sends = (0..50).map(|_| app.post("", &bundle));
    let replies = futures::future::join_all(sends).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let created = replies.iter().filter(|r| outcome(r) == "created").count();
    assert_eq!(created, 1);
    assert_eq!(app.total("ServiceRequest").await, 1);
    assert_eq!(app.total("Task").await, 1);
    assert_eq!(app.total("Patient").await, 1);
    assert_eq!(app.count_rows("referrals").await, 1);
}

async fn invalid_referral_writes_nothing(app: &TestApp) {
    let rows = app.count_rows("resource_history").await;
    let mut missing_identifier = referral("R-40", "I25.10", "urgent", "en", false);
    missing_identifier["entry"][2]["resource"].as_object_mut().unwrap().remove("identifier");
    let reply = app.post("", &missing_identifier).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.issue_expression(), "Bundle.entry[2].resource.identifier");
    let mut unknown_partner = referral("R-41", "I25.10", "urgent", "en", false);
    unknown_partner["entry"][0]["resource"]["identifier"][0]["system"] = json!("https://elsewhere.example");
    let reply = app.post("", &unknown_partner).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.issue_expression(), "Bundle.entry[2].resource.requester");
    let mut foreign_system = referral("R-43", "I25.10", "urgent", "en", false);
    foreign_system["entry"][2]["resource"]["identifier"][0]["system"] = json!("https://elsewhere.example/referral");
    let reply = app.post("", &foreign_system).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "the partner's own profile fixes its identifier system");
    let located = reply.body["issue"].as_array().unwrap().iter();
    assert!(
        located.filter_map(|i| i["expression"][0].as_str()).any(|e| e.starts_with("Bundle.entry[2].resource")),
        "{}",
        reply.body
    );
    let mut broken = referral("R-42", "I25.10", "urgent", "en", false);
    broken["entry"][1]["resource"]["birthDate"] = json!(19580912);
    let reply = app.post("", &broken).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.issue_expression(), "Bundle.entry[1].resource.birthDate");
    assert_eq!(app.count_rows("resource_history").await, rows);
    assert_eq!(app.count_rows("referrals").await, 0);
}

async fn queues_are_searchable_by_due_time_language_and_interpreter(app: &TestApp) {
    for (number, priority, language, interpreter) in
        [("Q-1", "routine", "es-MX", false), ("Q-2", "stat", "ar-SA", true), ("Q-3", "urgent", "zh-HK", true)]
    {
        let reply = app.post("", &referral(number, "I21.4", priority, language, interpreter)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let queue = app.get("Task?owner=HealthcareService/cardiology&status=requested&_sort=due").await.body;
    let priorities: Vec<&str> =
        queue["entry"].as_array().unwrap().iter().map(|e| e["resource"]["priority"].as_str().unwrap()).collect();
    assert_eq!(priorities, vec!["stat", "urgent", "routine"]);
    assert_eq!(app.total("Task?owner=HealthcareService/cardiology&interpreter-required=true").await, 2);
    assert_eq!(app.total("Task?patient-language=ar-SA").await, 1);
    // A language finds its regional variants; a variant does not find its siblings.
    assert_eq!(app.total("Task?patient-language=ar").await, 1);
    assert_eq!(app.total("Task?patient-language=es,zh").await, 2);
    assert_eq!(app.total("Task?patient-language=ar-AE").await, 0);
    assert_eq!(app.total("Task?priority=stat,urgent").await, 2);
    assert_eq!(app.total("Task?due=lt2000-01-01").await, 0);
    assert_eq!(app.total("Task?routing-rule=cardiology").await, 3);
}

async fn task_posted_for_a_stored_service_request_is_routed(app: &TestApp) {
    // The third way in: the resources first, one by one, then a Task that focuses on the referral.
    let bundle = referral("T-1", "N18.4", "routine", "hi", false);
    let organization = app.create(&bundle["entry"][0]["resource"]).await;
    let patient = app.create(&bundle["entry"][1]["resource"]).await;
    let mut request = bundle["entry"][2]["resource"].clone();
    request["subject"] = json!({"reference": format!("Patient/{patient}")});
    request["requester"] = json!({"reference": format!("Organization/{organization}")});
    let request = app.create(&request).await;
    let task = json!({"resourceType": "Task", "status": "draft", "intent": "order",
                      "identifier": [{"system": "https://hospitalangeles.mx/fhir/task", "value": "T-1"}],
                      "focus": {"reference": format!("ServiceRequest/{request}")}});
    let reply = app.post("Task", &task).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["owner"]["reference"], "HealthcareService/nephrology");
    assert_eq!(reply.body["status"], "requested");
    assert_eq!(reply.body["for"]["reference"], format!("Patient/{patient}"));
    assert_eq!(reply.body["extension"][1]["valueCode"], "hi");
    assert_eq!(reply.body["identifier"][0]["value"], "T-1", "the partner's own fields stay");
    let again = app.post("Task", &task).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], reply.body["id"]);
    assert_eq!(app.total("Task").await, 1);
    assert_eq!(app.total(&format!("AuditEvent?entity=ServiceRequest/{request}")).await, 1);

    let unknown = json!({"resourceType": "Task", "status": "draft", "intent": "order", "focus": {"reference": "ServiceRequest/nope"}});
    let reply = app.post("Task", &unknown).await;
    assert_eq!(reply.status, StatusCode::CREATED, "a focus rex does not have is stored, not routed");
    assert!(reply.body.get("owner").is_none());
    // A Task about something other than a referral is an ordinary create.
    let plain = json!({"resourceType": "Task", "status": "draft", "intent": "order", "focus": {"reference": format!("Patient/{patient}")}});
    let reply = app.post("Task", &plain).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.body.get("owner").is_none());
}
