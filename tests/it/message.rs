//! Referral Message Bundles through `$process-message`: the response message, de-duplication,
//! revocation and errors as `fatal-error` responses.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{TestApp, backend_tests};

backend_tests!(
    new_referral_message_gets_a_response_message_with_the_task,
    revoke_cancels_the_task,
    bad_messages_get_fatal_errors,
    the_message_fixtures_work_in_order
);

fn message_fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/fixtures/messages/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `fixtures/messages/` (the partner guide's examples): a request, an update, an answer to a
/// request for information (its `REQUEST-ID` replaced) and a revoke, each meeting the message
/// profile, do what their events say.
async fn the_message_fixtures_work_in_order(app: &TestApp) {
    let send = |text: String| async move {
        let reply = app
            .send(reqwest::Method::POST, "$process-message", &[("Content-Type", "application/fhir+json")], Some(text))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["entry"][0]["resource"]["response"]["code"], "ok", "{}", reply.body);
        reply.body
    };
    let created = send(message_fixture("1-referral-request.json")).await;
    let task = created["entry"][1]["resource"]["id"].as_str().unwrap().to_string();
    let updated = send(message_fixture("2-referral-update.json")).await;
    assert_eq!(updated["entry"][1]["resource"]["id"], task.as_str(), "the same referral");
    let notes = app.get("ServiceRequest?identifier=HAL-REF-2026-120001").await.body;
    assert!(notes.to_string().contains("hs-TnI now 780 ng/L"), "the update is stored");
    let claim = json!({"resourceType": "Parameters", "parameter": [{"name": "owner", "valueReference": {"reference": "PractitionerRole/dr-lee"}}]});
    assert_eq!(app.post(&format!("Task/{task}/$claim"), &claim).await.status, StatusCode::OK);
    let ask =
        json!({"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": "Latest echo, please"}]});
    assert_eq!(app.post(&format!("Task/{task}/$request-information"), &ask).await.status, StatusCode::OK);
    let request = app.search_ids("Communication?category=information-request").await[0].clone();
    send(message_fixture("3-referral-communication.json").replace("REQUEST-ID", &request)).await;
    assert_eq!(app.get(&format!("Task/{task}")).await.body["status"], "in-progress", "the answer resumes the Task");
    send(message_fixture("4-referral-revoke.json")).await;
    assert_eq!(app.get(&format!("Task/{task}")).await.body["status"], "cancelled");
}

const EVENTS: &str = "https://rex.example/fhir/CodeSystem/message-event";

/// The referral of `intake::referral` as a message with the given event.
pub fn message(event: &str, number: &str) -> Value {
    let bundle = referral(number, "I25.10", "asap", "yue", true);
    let mut entries = vec![json!({
        "fullUrl": "urn:uuid:9d7c2a40-0000-4000-8000-00000000000a",
        "resource": {"resourceType": "MessageHeader", "id": format!("msg-{event}-{number}"),
                     "eventCoding": {"system": EVENTS, "code": event},
                     "source": {"name": "HK Sanatorium EHR", "endpoint": "https://ehr.hksh.example/fhir"},
                     "focus": [{"reference": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000003"}]}
    })];
    for entry in bundle["entry"].as_array().unwrap() {
        entries.push(json!({"fullUrl": entry["fullUrl"], "resource": entry["resource"]}));
    }
    json!({"resourceType": "Bundle", "type": "message", "timestamp": "2026-11-29T08:00:00+08:00", "entry": entries})
}

async fn new_referral_message_gets_a_response_message_with_the_task(app: &TestApp) {
    let reply = app.post("$process-message", &message("referral-request", "M-1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "message");
    let header = &reply.body["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    assert_eq!(header["response"]["identifier"], "msg-referral-request-M-1");
    assert_eq!(header["response"]["code"], "ok");
    assert_eq!(header["destination"][0]["endpoint"], "https://ehr.hksh.example/fhir");
    let task = &reply.body["entry"][1]["resource"];
    assert_eq!(task["resourceType"], "Task");
    assert_eq!(header["focus"][0]["reference"], format!("Task/{}", task["id"].as_str().unwrap()));
    assert_eq!(task["owner"]["reference"], "HealthcareService/cardiology");
    assert_eq!(task["extension"][1]["valueCode"], "yue");
    // The received MessageHeader is kept as the record of the message.
    assert_eq!(app.total("MessageHeader").await, 1);
    // Sending the same referral again creates nothing new.
    let again = app.post("$process-message", &message("referral-request", "M-1")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["entry"][1]["resource"]["id"], task["id"]);
    assert!(reply.body["link"].to_string().contains("referral-outcome#created"), "{}", reply.body);
    assert!(again.body["link"].to_string().contains("referral-outcome#unchanged"), "{}", again.body);
    assert_eq!(app.total("Task").await, 1);
    assert_eq!(app.total("ServiceRequest").await, 1);
}

async fn revoke_cancels_the_task(app: &TestApp) {
    let created = app.post("$process-message", &message("referral-request", "M-2")).await;
    let task_id = created.body["entry"][1]["resource"]["id"].as_str().unwrap().to_string();
    let revoked = app.post("$process-message", &message("referral-revoke", "M-2")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let task = app.get(&format!("Task/{task_id}")).await.body;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "6.0");
    assert!(revoked.body["link"].to_string().contains("referral-outcome#revoked"), "{}", revoked.body);
    let twice = app.post("$process-message", &message("referral-revoke", "M-2")).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["entry"][0]["resource"]["response"]["code"], "fatal-error");
    let unknown = app.post("$process-message", &message("referral-revoke", "M-404")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn bad_messages_get_fatal_errors(app: &TestApp) {
    let unknown_event = app.post("$process-message", &message("referral-teleport", "M-3")).await;
    assert_eq!(unknown_event.status, StatusCode::UNPROCESSABLE_ENTITY);
    let header = &unknown_event.body["entry"][0]["resource"];
    assert_eq!(header["response"]["code"], "fatal-error");
    let outcome = &unknown_event.body["entry"][1]["resource"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[0].resource.eventCoding");
    assert_eq!(header["response"]["details"]["reference"], unknown_event.body["entry"][1]["fullUrl"]);

    let mut headless = message("referral-request", "M-4");
    headless["entry"].as_array_mut().unwrap().remove(0);
    let reply = app.post("$process-message", &headless).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["entry"][1]["resource"]["issue"][0]["expression"][0], "Bundle.entry[0]");

    let mut invalid = message("referral-request", "M-5");
    invalid["entry"][3]["resource"]["priority"] = json!(7);
    let reply = app.post("$process-message", &invalid).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["entry"][1]["resource"]["issue"][0]["expression"][0], "Bundle.entry[3].resource.priority");
    assert_eq!(app.total("ServiceRequest").await, 0);
    assert_eq!(app.total("MessageHeader").await, 0);
}
