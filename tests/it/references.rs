//! Cross-partner integrity: a reference in a partner's write may point only at what that partner
//! may see (its own resources, rex's shared ones such as queues). A reference to another partner's
//! resource is answered exactly like a reference to a resource that does not exist, on every
//! write path: REST create, update and patch, transaction entries (conditional references too) and
//! `$process-message`.

use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use serde_json::{Value, json};

use crate::security::{created, referral_of};
use crate::support::{PARTNER_A, PARTNER_B, Reply, TestApp, backend_tests};
use crate::workflow::parameters;

backend_tests!(
    @on sqlite_secured, postgres_secured;
    references_to_another_partners_resources_are_refused_as_missing,
);

const ALL: &str = "system/*.cruds";
/// An id no resource has.
const MISSING: &str = "no-such-resource";

/// Status, issue code, location and wording of a refusal (an OperationOutcome, or the one a
/// response message carries), with the id it names left out.
fn refusal(reply: &Reply, id: &str) -> (StatusCode, String, String, String) {
    let outcome = match reply.body["resourceType"].as_str() {
        Some("Bundle") => &reply.body["entry"][1]["resource"],
        _ => &reply.body,
    };
    assert_eq!(outcome["resourceType"], "OperationOutcome", "a refusal: {}", reply.body);
    let issue = &outcome["issue"][0];
    let text = |value: &Value| value.as_str().unwrap_or_default().replace(id, "<id>");
    (reply.status, text(&issue["code"]), text(&issue["expression"][0]), text(&issue["diagnostics"]))
}

/// Sends `body` (made by `with`, given an id) as B twice: pointing at A's `hidden` id and at an id
/// that does not exist. Both must be refused, and identically.
async fn refused_like_missing(
    app: &TestApp,
    token: &str,
    what: &str,
    method: Method,
    path: &str,
    hidden: &str,
    with: impl Fn(&str) -> Value,
) -> Reply {
    let pointing = app.send_as(token, method.clone(), path, Some(&with(hidden))).await;
    let missing = app.send_as(token, method, path, Some(&with(MISSING))).await;
    let outcome = refusal(&pointing, hidden);
    assert_eq!(outcome.1, "not-found", "{what} pointing at A's resource: {}", pointing.body);
    assert_eq!(refusal(&pointing, hidden), refusal(&missing, MISSING), "{what}: {} / {}", pointing.body, missing.body);
    pointing
}

async fn references_to_another_partners_resources_are_refused_as_missing(app: &TestApp) {
    let a = app.partner_token(PARTNER_A, ALL).await;
    let b = app.partner_token(PARTNER_B, ALL).await;
    let sent = app.send_as(&a, Method::POST, "", Some(&referral_of(PARTNER_A, "REF-A", "I25.10"))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let (a_ids, a_task) = created(&sent.body);
    let a_patient = a_ids["Patient"].as_str().unwrap().to_string();
    let a_request = a_ids["ServiceRequest"].as_str().unwrap().to_string();
    let sent = app.send_as(&b, Method::POST, "", Some(&referral_of(PARTNER_B, "REF-B", "I25.10"))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let (b_ids, _) = created(&sent.body);
    let b_patient = b_ids["Patient"].as_str().unwrap().to_string();

    // A specialist asks A for more information: a Communication in A's compartment.
    let auth = app.auth.as_ref().unwrap();
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    let claim = parameters(&[("owner", "PractitionerRole/dr-lee")]);
    let claimed = app.send_as(&coordinator, Method::POST, &format!("Task/{a_task}/$claim"), Some(&claim)).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let ask = parameters(&[("message", "Latest echo, please")]);
    let asked =
        app.send_as(&coordinator, Method::POST, &format!("Task/{a_task}/$request-information"), Some(&ask)).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    let requests = app.send_as(&a, Method::GET, "Communication?category=information-request", None).await.body;
    let a_question = requests["entry"][0]["resource"]["id"].as_str().unwrap().to_string();

    let information_request = json!({"coding": [{"system": "https://rex.example/fhir/CodeSystem/communication-category",
                                                 "code": "information-request"}]});
    let task = |focus: &str| {
        json!({"resourceType": "Task", "status": "requested", "intent": "order",
               "focus": {"reference": format!("ServiceRequest/{focus}")}})
    };
    let based_on = |request: &str| {
        json!({"resourceType": "Communication", "status": "completed", "category": [information_request],
               "basedOn": [{"reference": format!("ServiceRequest/{request}")}],
               "payload": [{"contentString": "Text from partner B"}]})
    };
    let part_of = |task: &str| {
        json!({"resourceType": "Communication", "status": "completed", "partOf": [{"reference": format!("Task/{task}")}],
               "payload": [{"contentString": "Text from partner B"}]})
    };
    let in_response_to = |question: &str| {
        json!({"resourceType": "Communication", "status": "completed",
               "inResponseTo": [{"reference": format!("Communication/{question}")}],
               "payload": [{"contentString": "Text from partner B"}]})
    };
    let observation = |patient: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
               "subject": {"reference": format!("Patient/{patient}")}})
    };
    let absolute = |patient: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
               "subject": {"reference": format!("https://elsewhere.example/fhir/Patient/{patient}")}})
    };
    let refused = refused_like_missing(app, &b, "Task.focus", Method::POST, "Task", &a_request, task).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.issue_code(), "not-found");
    assert_eq!(refused.issue_expression(), "Task.focus.reference");
    refused_like_missing(app, &b, "Communication.basedOn", Method::POST, "Communication", &a_request, based_on).await;
    refused_like_missing(app, &b, "Communication.partOf", Method::POST, "Communication", &a_task, part_of).await;
    refused_like_missing(
        app,
        &b,
        "Communication.inResponseTo",
        Method::POST,
        "Communication",
        &a_question,
        in_response_to,
    )
    .await;
    refused_like_missing(app, &b, "Observation.subject", Method::POST, "Observation", &a_patient, observation).await;
    refused_like_missing(app, &b, "an absolute reference", Method::POST, "Observation", &a_patient, absolute).await;

    // Updates and patches of B's own resources may not point at A's either.
    let own = app.send_as(&b, Method::POST, "Observation", Some(&observation(&b_patient))).await;
    assert_eq!(own.status, StatusCode::CREATED, "B's own reference: {}", own.body);
    let own_id = own.body["id"].as_str().unwrap().to_string();
    let updated = |patient: &str| {
        let mut update = observation(patient);
        update["id"] = json!(own_id);
        update
    };
    let path = format!("Observation/{own_id}");
    refused_like_missing(app, &b, "an update", Method::PUT, &path, &a_patient, updated).await;
    let patch = |patient: &str| {
        json!([{"op": "replace", "path": "/subject/reference", "value": format!("Patient/{patient}")}]).to_string()
    };
    let patch_as_b = |patient: &str| {
        let body = patch(patient);
        let authorization = format!("Bearer {b}");
        let path = path.clone();
        async move {
            app.send(
                Method::PATCH,
                &path,
                &[("authorization", authorization.as_str()), ("content-type", "application/json-patch+json")],
                Some(body),
            )
            .await
        }
    };
    let (pointing, missing) = (patch_as_b(&a_patient).await, patch_as_b(MISSING).await);
    assert_eq!(pointing.status, StatusCode::UNPROCESSABLE_ENTITY, "a patch: {}", pointing.body);
    assert_eq!(refusal(&pointing, &a_patient), refusal(&missing, MISSING));

    // Transaction entries, with literal and conditional references.
    let in_transaction = |patient: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(patient), "request": {"method": "POST", "url": "Observation"}}]})
    };
    let refused =
        refused_like_missing(app, &b, "a transaction entry", Method::POST, "", &a_patient, in_transaction).await;
    assert_eq!(refused.issue_expression(), "Bundle.entry[0].resource.subject.reference");
    let conditional = |mrn: &str| {
        let mut observation = observation("x");
        observation["subject"]["reference"] =
            json!(format!("Patient?identifier=https://hospital-angeles.mx/fhir/mrn|{mrn}"));
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}}]})
    };
    refused_like_missing(app, &b, "a conditional reference", Method::POST, "", "MRN-REF-A", conditional).await;

    // A message Bundle's entries too.
    let message = |request: &str| {
        let mut communication = based_on(request);
        communication["category"] = json!([{"text": "note"}]);
        json!({"resourceType": "Bundle", "type": "message", "timestamp": "2026-11-29T08:00:00Z", "entry": [
            {"fullUrl": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000b1",
             "resource": {"resourceType": "MessageHeader",
                          "eventCoding": {"system": "https://rex.example/fhir/CodeSystem/message-event", "code": "referral-communication"},
                          "source": {"name": "Partner EHR", "endpoint": "https://ehr.partner.example/fhir"},
                          "focus": [{"reference": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000b2"}]}},
            {"fullUrl": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000b2", "resource": communication}]})
    };
    refused_like_missing(app, &b, "a message entry", Method::POST, "$process-message", &a_request, message).await;

    // B's own references and rex's shared queues still work.
    let queue_task = json!({"resourceType": "Task", "status": "draft", "intent": "order",
                            "for": {"reference": format!("Patient/{b_patient}")},
                            "owner": {"reference": "HealthcareService/cardiology"}});
    let reply = app.send_as(&b, Method::POST, "Task", Some(&queue_task)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "B's Task on a shared queue: {}", reply.body);

    // Nothing of B's is attached to A's referral.
    let count = |query: &str| {
        let query = query.to_string();
        let token = coordinator.clone();
        async move { app.send_as(&token, Method::GET, &format!("{query}&_summary=count"), None).await.body["total"].clone() }
    };
    assert_eq!(count(&format!("Task?focus=ServiceRequest/{a_request}")).await, 1);
    assert_eq!(count(&format!("Communication?based-on=ServiceRequest/{a_request}")).await, 1, "rex's question only");
    assert_eq!(count(&format!("Observation?subject=Patient/{a_patient}")).await, 0);
    assert_eq!(app.send_as(&coordinator, Method::GET, &format!("Task/{a_task}"), None).await.body["status"], "on-hold");
}
