//! Workflow and audit correctness on a secured server: an amendment that changes the priority
//! re-applies routing and the SLA (and notifies the partner), the AuditEvent of an answer names
//! the partner who answered, and an opinion's performer resolves.

use chrono::DateTime;
use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, TestApp, backend_tests};

backend_tests!(@on sqlite_secured, postgres_secured;
    an_amendment_raising_the_priority_reroutes_and_notifies,
    an_answer_is_audited_as_the_partner_who_answered,
    an_opinion_names_a_performer_that_resolves,
);

const ALL: &str = "system/*.cruds";

fn task_of(reply: &crate::support::Reply) -> String {
    let link = reply.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task");
    link.unwrap()["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

fn instant(value: &Value) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
}

fn parameters(pairs: &[(&str, &str)]) -> Value {
    let parameter: Vec<Value> =
        pairs.iter().map(|(name, value)| json!({"name": name, "valueReference": {"reference": value}})).collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The subtypes of the AuditEvents about `entity`, oldest first, read by `token`.
async fn audit_trail(app: &TestApp, token: &str, entity: &str) -> Vec<Value> {
    let path = format!("AuditEvent?entity={entity}&_sort=_lastUpdated&_count=50");
    let reply = app.send_as(token, Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
}

async fn an_amendment_raising_the_priority_reroutes_and_notifies(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let coordinator = app.auth.as_ref().unwrap().staff_token(StaffRole::Coordinator, None, &[]);
    // The partner subscribes, so every change of its Tasks is queued for it.
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates",
        "criteria": "Task", "channel": {"type": "rest-hook", "endpoint": "https://127.0.0.1:9/hook", "payload": "application/fhir+json"}});
    let created = app.send_as(&partner, Method::POST, "Subscription", Some(&subscription)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mut bundle = referral("P-1", "I25.10", "routine", "en", false);
    let first = app.send_as(&partner, Method::POST, "", Some(&bundle)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let task_id = task_of(&first);
    let before = app.send_as(&coordinator, Method::GET, &format!("Task/{task_id}"), None).await.body;
    let queued = app.count_rows("outbox").await;

    bundle["entry"][2]["resource"]["priority"] = json!("urgent");
    let amended = app.send_as(&partner, Method::POST, "", Some(&bundle)).await;
    assert_eq!(amended.status, StatusCode::OK, "{}", amended.body);
    assert!(amended.body["link"].to_string().contains("#amended"));
    let after = app.send_as(&coordinator, Method::GET, &format!("Task/{task_id}"), None).await.body;
    assert_eq!(after["priority"], "urgent");
    let due = instant(&after["restriction"]["period"]["end"]);
    assert_eq!(due - instant(&after["authoredOn"]), chrono::Duration::hours(72), "urgent: 72 h from receipt");
    assert!(due < instant(&before["restriction"]["period"]["end"]), "earlier than the routine due time");
    assert_eq!(after["status"], "requested");
    let note = after["note"].as_array().unwrap().last().unwrap()["text"].as_str().unwrap().to_string();
    assert!(note.contains("from routine to urgent"), "{note}");
    let history = app.send_as(&coordinator, Method::GET, &format!("Task/{task_id}/_history"), None).await;
    assert_eq!(history.body["total"], 2, "{}", history.body);
    let trail = audit_trail(app, &coordinator, &format!("Task/{task_id}")).await;
    let rerouted = trail.iter().find(|a| a["subtype"][0]["code"] == "rerouted").expect("a rerouted AuditEvent");
    assert!(rerouted["outcomeDesc"].as_str().unwrap().contains("from routine to urgent"), "{rerouted}");
    assert_eq!(app.count_rows("outbox").await, queued + 1, "the partner is notified of the Task change");

    // An amendment that keeps the priority leaves the Task as it is.
    bundle["entry"][1]["resource"]["name"][0]["given"] = json!(["Sofía", "María"]);
    let same = app.send_as(&partner, Method::POST, "", Some(&bundle)).await;
    assert!(same.body["link"].to_string().contains("#amended"));
    let history = app.send_as(&coordinator, Method::GET, &format!("Task/{task_id}/_history"), None).await;
    assert_eq!(history.body["total"], 2);
}

/// A referral of partner A, claimed by `specialist` (owner `PractitionerRole/{role}`) and put on
/// hold with a request for information; returns the Task id and the request's id.
async fn claimed_and_asked(app: &TestApp, partner: &str, specialist: &str, number: &str) -> (String, String) {
    let sent = app.send_as(partner, Method::POST, "", Some(&referral(number, "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let task = task_of(&sent);
    let claimed = app
        .send_as(specialist, Method::POST, &format!("Task/{task}/$claim"), Some(&json!({"resourceType": "Parameters"})))
        .await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let ask =
        json!({"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": "Latest echo, please"}]});
    let asked = app.send_as(specialist, Method::POST, &format!("Task/{task}/$request-information"), Some(&ask)).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    let requests = app.send_as(partner, Method::GET, "Communication?category=information-request", None).await;
    let request = requests.body["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    (task, request)
}

async fn an_answer_is_audited_as_the_partner_who_answered(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-a"), &["cardiology"]);
    let (task, request) = claimed_and_asked(app, &partner, &specialist, "A-1").await;
    let answer = json!({"resourceType": "Communication", "status": "completed",
        "inResponseTo": [{"reference": format!("Communication/{request}")}],
        "payload": [{"contentString": "Echo attached"}]});
    let answered = app.send_as(&partner, Method::POST, "Communication", Some(&answer)).await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.body);
    let trail = audit_trail(app, &specialist, &format!("Task/{task}")).await;
    let received = trail.iter().find(|a| a["subtype"][0]["code"] == "receive-information").expect("audited");
    let agent = &received["agent"][0];
    assert_eq!(agent["who"]["identifier"]["value"], PARTNER_A, "{received}");
    assert_eq!(agent["altId"], format!("partner:{PARTNER_A}"));
    assert!(!received.to_string().contains("Device/rex") && !received.to_string().contains("development"));
}

async fn an_opinion_names_a_performer_that_resolves(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    // The hospital has not loaded this specialist's PractitionerRole: rex makes it from the token.
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-new"), &["cardiology"]);
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("O-1", "I25.10", "urgent", "en", false))).await;
    let task = task_of(&sent);
    let claim = json!({"resourceType": "Parameters"});
    assert_eq!(
        app.send_as(&specialist, Method::POST, &format!("Task/{task}/$claim"), Some(&claim)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send_as(&specialist, Method::GET, "PractitionerRole/dr-new", None).await.status,
        StatusCode::NOT_FOUND
    );
    // An opinion made through the API, without performer or issued.
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Second opinion"},
        "conclusion": "Medical therapy"});
    let report = app.send_as(&specialist, Method::POST, "DiagnosticReport", Some(&report)).await;
    assert_eq!(report.status, StatusCode::CREATED, "{}", report.body);
    let report_ref = format!("DiagnosticReport/{}", report.body["id"].as_str().unwrap());
    let completed = app
        .send_as(
            &specialist,
            Method::POST,
            &format!("Task/{task}/$complete"),
            Some(&parameters(&[("opinion", &report_ref)])),
        )
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.body);

    let opinion = app.send_as(&partner, Method::GET, &report_ref, None).await;
    assert_eq!(opinion.status, StatusCode::OK, "the partner reads its opinion: {}", opinion.body);
    assert_eq!(opinion.body["performer"][0]["reference"], "PractitionerRole/dr-new", "{}", opinion.body);
    assert_eq!(opinion.body["resultsInterpreter"][0]["reference"], "PractitionerRole/dr-new");
    assert!(
        opinion.body["issued"].as_str().is_some_and(|i| DateTime::parse_from_rfc3339(i).is_ok()),
        "{}",
        opinion.body
    );
    let role = app.send_as(&specialist, Method::GET, "PractitionerRole/dr-new", None).await;
    assert_eq!(role.status, StatusCode::OK, "the performer resolves: {}", role.body);
    assert_eq!(role.body["active"], true);
    assert_eq!(role.body["identifier"][0]["value"], "specialist-1", "made from the token's subject");
    assert_eq!(role.body["healthcareService"][0]["reference"], "HealthcareService/cardiology");
}
