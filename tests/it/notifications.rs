//! Partner notifications: a Subscription per partner, the outbox written with each Task change,
//! delivery in event order, retries with backoff, an instance dying mid-delivery, dead letters.
//! The delivery clock is driven by the tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use rex_server::notifications::{DeliveryReport, MAX_ATTEMPTS, deliver_due};
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, TestApp, backend_tests};

backend_tests!(
    @on sqlite_secured, postgres_secured;
    partners_are_notified_of_every_change_in_order,
    failed_deliveries_are_retried_then_dead_lettered,
    the_partner_hears_of_every_step_to_the_opinion,
);

/// A partner's notification endpoint: records what it receives, failing the first `failures`.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
    failures: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(failures: usize) -> (Receiver, String) {
        let receiver = Receiver { failures: Arc::new(AtomicUsize::new(failures)), ..Receiver::default() };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(
                |axum::extract::State(state): axum::extract::State<Receiver>, body: String| async move {
                    if state.failures.load(Ordering::SeqCst) > 0 {
                        state.failures.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    state.received.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                    StatusCode::OK
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await.unwrap() });
        (receiver, url)
    }

    /// (event number, Task status) of each notification received, in arrival order.
    fn events(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|bundle| {
                let status = &bundle["entry"][0]["resource"]["parameter"];
                let number = status.as_array().unwrap().iter().find(|p| p["name"] == "events-since-subscription-start");
                let task = &bundle["entry"][1]["resource"];
                (
                    number.unwrap()["valueString"].as_str().unwrap().to_string(),
                    task["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

async fn subscribe(app: &TestApp, token: &str, endpoint: &str) {
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates",
        "criteria": "Task", "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}});
    let created = app.send_as(token, Method::POST, "Subscription", Some(&subscription)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "active");
}

async fn partners_are_notified_of_every_change_in_order(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(0).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    subscribe(app, &partner, &endpoint).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-1", "I25.10", "urgent", "en", false))).await;
    let task = sent.body["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-n"), &["cardiology"]);
    let claim = app
        .send_as(
            &specialist,
            Method::POST,
            &format!("Task/{task}/$claim"),
            Some(&json!({"resourceType": "Parameters"})),
        )
        .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.body);

    let client = reqwest::Client::new();
    let now = Utc::now();
    // An instance leases the notifications and dies before delivering them.
    let leased = app.store.lease_notifications(now.timestamp_micros(), 60_000_000, 50).await.unwrap();
    assert_eq!(leased.len(), 2);
    // Nobody else takes them while the lease holds...
    assert_eq!(deliver_due(&app.state, &client, now).await.unwrap(), DeliveryReport::default());
    assert!(receiver.events().is_empty());
    // ... and once it has expired, another instance delivers each once, in order.
    let later = now + Duration::seconds(61);
    assert_eq!(deliver_due(&app.state, &client, later).await.unwrap().delivered, 2);
    assert_eq!(deliver_due(&app.state, &client, later).await.unwrap(), DeliveryReport::default());
    assert_eq!(
        receiver.events(),
        vec![("1".to_string(), "requested".to_string()), ("2".to_string(), "in-progress".to_string())]
    );
    // The notification names the subscription and carries only the partner's own Task.
    let first = receiver.received.lock().unwrap()[0].clone();
    assert_eq!(first["type"], "history");
    assert_eq!(first["entry"][1]["resource"]["id"], task.as_str());
}

async fn failed_deliveries_are_retried_then_dead_lettered(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(1).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    subscribe(app, &partner, &endpoint).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-2", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    let task = sent.body["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-n"), &["cardiology"]);
    let claim = json!({"resourceType": "Parameters"});
    let claimed = app.send_as(&specialist, Method::POST, &format!("Task/{task}/$claim"), Some(&claim)).await;
    assert_eq!(claimed.status, StatusCode::OK);
    let client = reqwest::Client::new();
    let now = Utc::now();
    // The endpoint fails once: retried after a backoff, not before, and the second event waits
    // for the first (delivery in order).
    let first = deliver_due(&app.state, &client, now).await.unwrap();
    assert_eq!((first.retried, first.delivered), (1, 0));
    assert_eq!(deliver_due(&app.state, &client, now + Duration::seconds(5)).await.unwrap(), DeliveryReport::default());
    assert_eq!(deliver_due(&app.state, &client, now + Duration::seconds(11)).await.unwrap().delivered, 2);
    assert_eq!(
        receiver.events(),
        vec![("1".to_string(), "requested".to_string()), ("2".to_string(), "in-progress".to_string())]
    );

    // An endpoint that never answers: every attempt is audited, then the notification is dead.
    let dead_endpoint = "http://127.0.0.1:9/notify";
    subscribe(app, &partner, dead_endpoint).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-3", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    let mut clock = now + Duration::seconds(20);
    let mut dead = 0;
    for _ in 0..MAX_ATTEMPTS {
        let report = deliver_due(&app.state, &client, clock).await.unwrap();
        dead += report.dead;
        clock += Duration::hours(2);
    }
    assert_eq!(dead, 1, "one dead letter, for the endpoint that never answered");
    assert_eq!(app.store.outbox_counts().await.unwrap().dead, 1);
    app.state.audit.flush().await;
    let admin = app.auth.as_ref().unwrap().staff_token(StaffRole::Admin, None, &[]);
    let attempts = app.send_as(&admin, Method::GET, "AuditEvent?subtype=notify&outcome=4&_summary=count", None).await;
    assert_eq!(attempts.body["total"], MAX_ATTEMPTS + 1, "every failed attempt is audited");
}

/// The whole happy path as the partner lives it: intake, claim, a request for information, its
/// answer, the opinion and completion, each change notified in order, then the opinion read.
async fn the_partner_hears_of_every_step_to_the_opinion(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(0).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    subscribe(app, &partner, &endpoint).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-9", "I25.10", "urgent", "en", false))).await;
    let task = sent.body["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-n"), &["cardiology"]);
    let operate = |operation: &str, parameters: Value| {
        let path = format!("Task/{task}/{operation}");
        let specialist = specialist.clone();
        async move {
            let reply = app.send_as(&specialist, Method::POST, &path, Some(&parameters)).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        }
    };
    operate("$claim", json!({"resourceType": "Parameters"})).await;
    operate(
        "$request-information",
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "message", "valueString": "Latest echo, please"}]}),
    )
    .await;
    let requests = app.send_as(&partner, Method::GET, "Communication?category=information-request", None).await;
    let request = requests.body["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let answer = json!({"resourceType": "Communication", "status": "completed",
        "inResponseTo": [{"reference": format!("Communication/{request}")}],
        "payload": [{"contentString": "Echo attached"}]});
    assert_eq!(app.send_as(&partner, Method::POST, "Communication", Some(&answer)).await.status, StatusCode::CREATED);
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Second opinion"},
                        "conclusion": "Medical therapy"});
    let report = app.send_as(&specialist, Method::POST, "DiagnosticReport", Some(&report)).await;
    let opinion = format!("DiagnosticReport/{}", report.body["id"].as_str().unwrap());
    operate(
        "$complete",
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "opinion", "valueReference": {"reference": opinion}}]}),
    )
    .await;

    let delivered = deliver_due(&app.state, &reqwest::Client::new(), Utc::now()).await.unwrap().delivered;
    assert_eq!(delivered, 5);
    let statuses: Vec<String> = receiver.events().into_iter().map(|(_, status)| status).collect();
    assert_eq!(statuses, ["requested", "in-progress", "on-hold", "in-progress", "completed"]);
    let numbers: Vec<String> = receiver.events().into_iter().map(|(number, _)| number).collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5"]);
    // The partner reads the opinion the completed Task names.
    assert_eq!(app.send_as(&partner, Method::GET, &opinion, None).await.status, StatusCode::OK);
}
