//! Specialist work on referral Tasks: claims (also 50 at once), release, redirect, decline, requests
//! for information, completion with an opinion, and the state machine on every write path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{TestApp, backend_tests};

backend_tests!(
    claim_request_information_and_complete,
    concurrent_claims_have_one_winner,
    release_redirect_and_decline,
    claim_next_takes_the_most_urgent,
    forbidden_transitions_are_refused_on_every_path,
    overdue_referrals_are_escalated_once,
    an_answer_by_message_resumes_the_referral,
    the_sla_clock_pauses_while_the_partner_is_asked,
    partner_updates_stay_marked_until_the_assigned_specialist_opens_them,
);

pub(crate) fn parameters(pairs: &[(&str, &str)]) -> Value {
    let parameter: Vec<Value> = pairs
        .iter()
        .map(|(name, value)| {
            if value.contains('/') {
                json!({"name": name, "valueReference": {"reference": value}})
            } else {
                json!({"name": name, "valueString": value})
            }
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// Sends a referral and returns its Task id.
async fn routed_task(app: &TestApp, number: &str, priority: &str) -> String {
    let reply = app.post("", &referral(number, "I25.10", priority, "en", false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let link = reply.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task")
        .unwrap();
    link["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

async fn claim_request_information_and_complete(app: &TestApp) {
    let task = routed_task(app, "W-1", "urgent").await;
    let claimed = app.post(&format!("Task/{task}/$claim"), &parameters(&[("owner", "PractitionerRole/dr-lee")])).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    assert_eq!(claimed.body["status"], "in-progress");
    assert_eq!(claimed.body["owner"]["reference"], "PractitionerRole/dr-lee");
    assert_eq!(claimed.body["businessStatus"]["coding"][0]["code"], "3.0");
    let asked = app
        .post(&format!("Task/{task}/$request-information"), &parameters(&[("message", "Please send the latest echo")]))
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert_eq!(asked.body["status"], "on-hold");
    let communications = app.get("Communication?category=information-request").await.body;
    assert_eq!(communications["total"], 1);
    assert_eq!(
        communications["entry"][0]["resource"]["recipient"][0]["reference"].as_str().unwrap().split('/').next(),
        Some("Organization")
    );
    // Completing needs the Task to be in progress again.
    let early = app.post(&format!("Task/{task}/$complete"), &parameters(&[("opinion", "DiagnosticReport/x")])).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    // The partner answers the request: the Task resumes.
    let request = communications["entry"][0]["resource"]["id"].as_str().unwrap();
    let answer = json!({"resourceType": "Communication", "status": "completed",
                        "inResponseTo": [{"reference": format!("Communication/{request}")}],
                        "payload": [{"contentAttachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "Echo report"}}]});
    assert_eq!(app.post("Communication", &answer).await.status, StatusCode::CREATED);
    assert_eq!(app.get(&format!("Task/{task}")).await.body["status"], "in-progress");
    let report = app
        .create(&json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Second opinion"},
                         "conclusion": "Medical therapy; no revascularisation needed now"}))
        .await;
    let completed = app
        .post(&format!("Task/{task}/$complete"), &parameters(&[("opinion", &format!("DiagnosticReport/{report}"))]))
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.body);
    assert_eq!(completed.body["status"], "completed");
    assert_eq!(completed.body["businessStatus"]["coding"][0]["code"], "7.0");
    assert_eq!(completed.body["output"][0]["valueReference"]["reference"], format!("DiagnosticReport/{report}"));
    let trail = app.get(&format!("AuditEvent?entity=Task/{task}&_sort=_lastUpdated&_count=50")).await.body;
    let actions: Vec<&str> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["routed", "claim", "request-information", "receive-information", "complete"]);
}

async fn concurrent_claims_have_one_winner(app: &TestApp) {
    let task = routed_task(app, "W-2", "stat").await;
    let path = format!("Task/{task}/$claim");
    let bodies: Vec<Value> = (0..50).map(|n| parameters(&[("owner", &format!("PractitionerRole/dr-{n}"))])).collect();
    let claims = bodies.iter().map(|body| app.post(&path, body));
    let replies = futures::future::join_all(claims).await;
    let winners = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    let refused = replies.iter().filter(|r| r.status == StatusCode::CONFLICT).count();
    assert_eq!((winners, refused), (1, 49), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    let loser = replies.iter().find(|r| r.status == StatusCode::CONFLICT).unwrap();
    assert!(loser.body["issue"][0]["diagnostics"].as_str().unwrap().contains("allowed here"));
}

async fn release_redirect_and_decline(app: &TestApp) {
    let task = routed_task(app, "W-3", "routine").await;
    app.post(&format!("Task/{task}/$claim"), &parameters(&[("owner", "PractitionerRole/dr-lee")])).await;
    let released = app.post(&format!("Task/{task}/$release"), &parameters(&[])).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["status"], "requested");
    assert_eq!(released.body["owner"]["reference"], "HealthcareService/cardiology");
    let redirected = app
        .post(
            &format!("Task/{task}/$redirect"),
            &parameters(&[("queue", "vascular-surgery"), ("reason", "aortic finding")]),
        )
        .await;
    assert_eq!(redirected.status, StatusCode::OK, "{}", redirected.body);
    assert_eq!(redirected.body["owner"]["reference"], "HealthcareService/vascular-surgery");
    let nowhere =
        app.post(&format!("Task/{task}/$redirect"), &parameters(&[("queue", "astrology"), ("reason", "x")])).await;
    assert_eq!(nowhere.status, StatusCode::BAD_REQUEST);
    let no_reason = app.post(&format!("Task/{task}/$decline"), &parameters(&[])).await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let declined =
        app.post(&format!("Task/{task}/$decline"), &parameters(&[("reason", "outside our programme")])).await;
    assert_eq!(declined.body["status"], "rejected");
    assert_eq!(declined.body["businessStatus"]["coding"][0]["code"], "4.0");
}

async fn claim_next_takes_the_most_urgent(app: &TestApp) {
    routed_task(app, "N-1", "routine").await;
    let stat = routed_task(app, "N-2", "stat").await;
    let urgent = routed_task(app, "N-3", "urgent").await;
    let owner = parameters(&[("queue", "cardiology"), ("owner", "PractitionerRole/dr-lee")]);
    assert_eq!(app.post("Task/$claim-next", &owner).await.body["id"], stat.as_str());
    assert_eq!(app.post("Task/$claim-next", &owner).await.body["id"], urgent.as_str());
    assert_eq!(
        app.post("Task/$claim-next", &parameters(&[("queue", "dermatology"), ("owner", "PractitionerRole/x")]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn forbidden_transitions_are_refused_on_every_path(app: &TestApp) {
    let task = routed_task(app, "F-1", "routine").await;
    let mut body = app.get(&format!("Task/{task}")).await.body;
    body["status"] = json!("completed");
    let put = app.put(&format!("Task/{task}"), &body).await;
    assert_eq!(put.status, StatusCode::CONFLICT);
    assert!(put.body["issue"][0]["diagnostics"].as_str().unwrap().contains("in-progress"));
    let patch = json!([{"op": "replace", "path": "/status", "value": "completed"}]).to_string();
    let patched = app
        .send(
            reqwest::Method::PATCH,
            &format!("Task/{task}"),
            &[("content-type", "application/json-patch+json")],
            Some(patch),
        )
        .await;
    assert_eq!(patched.status, StatusCode::CONFLICT);
    let complete = app.post(&format!("Task/{task}/$complete"), &parameters(&[("opinion", "DiagnosticReport/x")])).await;
    assert_eq!(complete.status, StatusCode::CONFLICT);
    assert_eq!(app.get(&format!("Task/{task}")).await.body["status"], "requested");
    let unknown = app.post(&format!("Task/{task}/$teleport"), &parameters(&[])).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn overdue_referrals_are_escalated_once(app: &TestApp) {
    use rex_server::interactions::escalation::escalate_overdue;
    let stat = routed_task(app, "E-1", "stat").await; // due in 4 hours
    let routine = routed_task(app, "E-2", "routine").await;
    let done = routed_task(app, "E-3", "stat").await;
    let claim = parameters(&[("owner", "PractitionerRole/dr-lee")]);
    assert_eq!(app.post(&format!("Task/{done}/$claim"), &claim).await.status, StatusCode::OK);
    assert_eq!(
        app.post(&format!("Task/{done}/$decline"), &parameters(&[("reason", "Out of scope")])).await.status,
        StatusCode::OK
    );
    let now = chrono::Utc::now();
    // Nothing is due yet.
    assert!(escalate_overdue(&app.state, now).await.unwrap().is_empty());
    // Five hours on, the open stat referral is overdue; the declined one is finished.
    let later = now + chrono::Duration::hours(5);
    assert_eq!(escalate_overdue(&app.state, later).await.unwrap(), vec![stat.clone()]);
    assert!(escalate_overdue(&app.state, later).await.unwrap().is_empty(), "escalated once");
    let task = app.get(&format!("Task/{stat}")).await.body;
    assert!(task["meta"]["tag"].to_string().contains("escalated"), "{task}");
    assert_eq!(task["status"], "requested", "escalation does not change the workflow state");
    let view = "Task?owner=HealthcareService/cardiology&_tag=https://rex.example/fhir/CodeSystem/task-flag|escalated";
    assert_eq!(app.search_ids(view).await, vec![stat.clone()]);
    let audit = app.get(&format!("AuditEvent?entity=Task/{stat}&_count=50")).await.body;
    assert!(audit.to_string().contains("\"escalate\""), "{audit}");
    // A month on, the routine one is overdue too, and only it is escalated now.
    let month = now + chrono::Duration::days(30);
    assert_eq!(escalate_overdue(&app.state, month).await.unwrap(), vec![routine]);
}

async fn an_answer_by_message_resumes_the_referral(app: &TestApp) {
    let task = routed_task(app, "W-9", "urgent").await;
    let claim = parameters(&[("owner", "PractitionerRole/dr-lee")]);
    assert_eq!(app.post(&format!("Task/{task}/$claim"), &claim).await.status, StatusCode::OK);
    let ask = parameters(&[("message", "Latest echo, please")]);
    assert_eq!(app.post(&format!("Task/{task}/$request-information"), &ask).await.status, StatusCode::OK);
    let requests = app.get("Communication?category=information-request").await.body;
    let request = requests["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let message = json!({"resourceType": "Bundle", "type": "message", "timestamp": "2026-11-29T08:00:00Z", "entry": [
        {"fullUrl": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000a1",
         "resource": {"resourceType": "MessageHeader", "id": "answer-w9",
                      "eventCoding": {"system": "https://rex.example/fhir/CodeSystem/message-event", "code": "referral-communication"},
                      "source": {"name": "Partner EHR", "endpoint": "https://ehr.partner.example/fhir"},
                      "focus": [{"reference": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000a2"}]}},
        {"fullUrl": "urn:uuid:4a1b0c3d-0000-4000-8000-0000000000a2",
         "resource": {"resourceType": "Communication", "status": "completed",
                      "inResponseTo": [{"reference": format!("Communication/{request}")}],
                      "payload": [{"contentString": "Echo report attached to the chart"}]}}]});
    let reply = app.post("$process-message", &message).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(app.get(&format!("Task/{task}")).await.body["status"], "in-progress");
}

/// On hold (waiting for the partner) the SLA clock is paused: the Task records when the hold
/// began, the escalation worker passes it over however late it is, and leaving the hold moves the
/// due time on by the time held. Release, redirect and decline stay possible on hold.
async fn the_sla_clock_pauses_while_the_partner_is_asked(app: &TestApp) {
    use rex_server::interactions::escalation::escalate_overdue;
    let since_url = "https://rex.example/fhir/StructureDefinition/task-on-hold-since";
    let due = |task: &Value| {
        chrono::DateTime::parse_from_rfc3339(task["restriction"]["period"]["end"].as_str().unwrap()).unwrap()
    };
    let claim = parameters(&[("owner", "PractitionerRole/dr-lee")]);
    let ask = parameters(&[("message", "Latest troponin, please")]);
    let mut held = Vec::new();
    for number in ["H-1", "H-2", "H-3"] {
        let task = routed_task(app, number, "stat").await; // due in 4 hours
        assert_eq!(app.post(&format!("Task/{task}/$claim"), &claim).await.status, StatusCode::OK);
        let asked = app.post(&format!("Task/{task}/$request-information"), &ask).await;
        assert_eq!(asked.body["status"], "on-hold", "{}", asked.body);
        assert!(asked.body["extension"].to_string().contains(since_url), "{}", asked.body);
        held.push((task, asked.body));
    }
    // A day on, nothing on hold is overdue.
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    assert!(escalate_overdue(&app.state, tomorrow).await.unwrap().is_empty());
    // Release, redirect and decline are allowed on hold; claim and complete are not.
    let (first, before) = &held[0];
    let refused = app.post(&format!("Task/{first}/$complete"), &parameters(&[("opinion", "DiagnosticReport/x")])).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body["issue"][0]["diagnostics"].as_str().unwrap().contains("release, redirect, decline"));
    let released = app.post(&format!("Task/{first}/$release"), &parameters(&[])).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["status"], "requested");
    assert_eq!(released.body["owner"]["reference"], "HealthcareService/cardiology");
    assert!(!released.body.to_string().contains(since_url), "the hold is over: {}", released.body);
    let moved = due(&released.body) - due(before);
    assert!(moved >= chrono::Duration::zero() && moved < chrono::Duration::minutes(1), "{moved}");
    let (second, _) = &held[1];
    let redirect = parameters(&[("queue", "oncology"), ("reason", "Oncology question")]);
    let redirected = app.post(&format!("Task/{second}/$redirect"), &redirect).await;
    assert_eq!((redirected.status, redirected.body["status"].as_str()), (StatusCode::OK, Some("requested")));
    let (third, _) = &held[2];
    let declined = app.post(&format!("Task/{third}/$decline"), &parameters(&[("reason", "Not for us")])).await;
    assert_eq!((declined.status, declined.body["status"].as_str()), (StatusCode::OK, Some("rejected")));
    // The released one runs again: overdue a day on.
    assert!(escalate_overdue(&app.state, tomorrow).await.unwrap().contains(first));
    // The partner's late answer leaves it on its queue, and is marked as news on the worklist.
    let focus = before["focus"]["reference"].as_str().unwrap();
    let request =
        app.search_ids(&format!("Communication?category=information-request&based-on={focus}")).await[0].clone();
    let answer = json!({"resourceType": "Communication", "status": "completed",
                        "inResponseTo": [{"reference": format!("Communication/{request}")}],
                        "payload": [{"contentString": "Troponin 0.4"}]});
    assert_eq!(app.post("Communication", &answer).await.status, StatusCode::CREATED);
    assert_eq!(app.get(&format!("Task/{first}")).await.body["status"], "requested");
    let asked = json!({"resourceType": "Parameters", "parameter": [
        {"name": "task", "valueReference": {"reference": format!("Task/{first}")}}]});
    let updates = app.post("Task/$partner-updates", &asked).await.body;
    assert_eq!(updates["parameter"][0]["part"][1]["valueCode"], "information-received", "{updates}");
}

/// The "updated" marker's state: a partner's answer or amendment is recorded with the Task, and
/// `Task/$partner-updates` says it is unseen until the Task's assigned specialist `$opened` it.
async fn partner_updates_stay_marked_until_the_assigned_specialist_opens_them(app: &TestApp) {
    let task = routed_task(app, "U-1", "urgent").await;
    let quiet = routed_task(app, "U-2", "urgent").await;
    let ask_about = json!({"resourceType": "Parameters", "parameter": [
        {"name": "task", "valueReference": {"reference": format!("Task/{task}")}},
        {"name": "task", "valueReference": {"reference": format!("Task/{quiet}")}}]});
    let updates = |reply: &crate::support::Reply| -> Vec<(String, String, bool)> {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let parameters = reply.body["parameter"].as_array().cloned().unwrap_or_default();
        parameters
            .iter()
            .map(|update| {
                let part =
                    |name: &str| update["part"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
                (
                    part("task")["valueReference"]["reference"].as_str().unwrap().to_string(),
                    part("kind")["valueCode"].as_str().unwrap().to_string(),
                    part("seen")["valueBoolean"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert!(updates(&app.post("Task/$partner-updates", &ask_about).await).is_empty(), "nothing changed yet");
    let claim = parameters(&[("owner", "PractitionerRole/dr-lee")]);
    assert_eq!(app.post(&format!("Task/{task}/$claim"), &claim).await.status, StatusCode::OK);
    let ask = parameters(&[("message", "Latest echo, please")]);
    assert_eq!(app.post(&format!("Task/{task}/$request-information"), &ask).await.status, StatusCode::OK);
    let requests = app.get("Communication?category=information-request").await.body;
    let request = requests["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let answer = json!({"resourceType": "Communication", "status": "completed",
                        "inResponseTo": [{"reference": format!("Communication/{request}")}],
                        "payload": [{"contentString": "LVEF 35%"}]});
    assert_eq!(app.post("Communication", &answer).await.status, StatusCode::CREATED);
    let task_ref = format!("Task/{task}");
    assert_eq!(
        updates(&app.post("Task/$partner-updates", &ask_about).await),
        vec![(task_ref.clone(), "information-received".to_string(), false)]
    );
    // Someone else opening it does not count; the assigned specialist does.
    let opened_by = |who: &str| parameters(&[("reader", who)]);
    let other = app.post(&format!("Task/{task}/$opened"), &opened_by("PractitionerRole/dr-other")).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    assert!(!updates(&app.post("Task/$partner-updates", &ask_about).await)[0].2);
    assert_eq!(
        app.post(&format!("Task/{task}/$opened"), &opened_by("PractitionerRole/dr-lee")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        updates(&app.post("Task/$partner-updates", &ask_about).await),
        vec![(task_ref.clone(), "information-received".to_string(), true)]
    );
    // An amended referral is a new change, unseen again.
    let amended = app.post("", &referral("U-1", "I25.10", "stat", "en", false)).await;
    assert_eq!(amended.status, StatusCode::OK, "{}", amended.body);
    assert_eq!(
        updates(&app.post("Task/$partner-updates", &ask_about).await),
        vec![(task_ref, "amended".to_string(), false)]
    );
    // Who opened what is refused without a PractitionerRole, and on an unknown Task.
    let nobody = app.post(&format!("Task/{task}/$opened"), &parameters(&[])).await;
    assert_eq!(nobody.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", nobody.body);
    let unknown = app.post("Task/no-such-task/$opened", &opened_by("PractitionerRole/dr-lee")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}
