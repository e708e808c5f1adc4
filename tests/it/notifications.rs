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
    a_subscription_is_active_once_its_endpoint_takes_the_handshake,
    notifications_carry_what_the_subscription_asks_for,
    partner_endpoints_asking_for_mutual_tls_get_rex_certificate,
    notification_targets_are_checked_at_registration,
    notifications_are_not_delivered_into_the_hospital_network,
);

/// A partner's notification endpoint (or an escalation webhook): records the JSON it receives,
/// failing the first `failures` (handshakes excepted).
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
    failures: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) async fn start(failures: usize) -> (Receiver, String) {
        let receiver = Receiver { failures: Arc::new(AtomicUsize::new(failures)), ..Receiver::default() };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(
                |axum::extract::State(state): axum::extract::State<Receiver>, body: String| async move {
                    let bundle: Value = serde_json::from_str(&body).unwrap();
                    let handshake =
                        bundle["resourceType"] == "Bundle" && status_parameter(&bundle, "type") == "handshake";
                    if !handshake && state.failures.load(Ordering::SeqCst) > 0 {
                        state.failures.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    state.received.lock().unwrap().push(bundle);
                    StatusCode::OK
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await.unwrap() });
        (receiver, url)
    }

    /// Everything received (not refused), in arrival order.
    pub(crate) fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Notifications of events received (not handshakes), in arrival order.
    pub(crate) fn notifications(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received.iter().filter(|bundle| status_parameter(bundle, "type") == "event-notification").cloned().collect()
    }

    /// (event number, Task status) of each event notification received, in arrival order.
    fn events(&self) -> Vec<(String, String)> {
        self.notifications()
            .iter()
            .map(|bundle| {
                let task = &bundle["entry"][1]["resource"];
                (
                    status_parameter(bundle, "events-since-subscription-start"),
                    task["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn handshakes(&self) -> usize {
        self.received.lock().unwrap().iter().filter(|bundle| status_parameter(bundle, "type") == "handshake").count()
    }
}

/// A value of the SubscriptionStatus that opens a notification Bundle (or is the `$status` answer).
fn status_parameter(bundle_or_status: &Value, name: &str) -> String {
    let status = match bundle_or_status["resourceType"].as_str() {
        Some("Bundle") => &bundle_or_status["entry"][0]["resource"],
        _ => bundle_or_status,
    };
    let parameter = status["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name);
    let value = parameter.map(|p| p.as_object().unwrap().iter().find(|(key, _)| key.starts_with("value")).unwrap().1);
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Object(concept)) => concept["text"].as_str().unwrap_or_default().to_string(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Creates a Subscription of `channel` for the caller (`requested`) and completes its handshake.
async fn subscribe_with(app: &TestApp, token: &str, channel: Value, criteria: &str) -> String {
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates",
        "criteria": criteria, "channel": channel});
    let created = app.send_as(token, Method::POST, "Subscription", Some(&subscription)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "requested", "active only once the endpoint took the handshake");
    let id = created.body["id"].as_str().unwrap().to_string();
    let handshake = deliver_due(&app.state, &reqwest::Client::new(), Utc::now()).await.unwrap();
    assert_eq!(handshake.delivered, 1, "{handshake:?}");
    let read = app.send_as(token, Method::GET, &format!("Subscription/{id}"), None).await;
    assert_eq!(read.body["status"], "active");
    id
}

async fn subscribe(app: &TestApp, token: &str, endpoint: &str) -> String {
    let channel = json!({"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"});
    subscribe_with(app, token, channel, "Task").await
}

/// The partner sends a referral and a cardiology specialist claims it: two Task changes. Returns
/// the Task's id.
async fn refer_and_claim(app: &TestApp, partner: &str, mrn: &str) -> String {
    let sent = app.send_as(partner, Method::POST, "", Some(&referral(mrn, "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let task = sent.body["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let specialist =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-n"), &["cardiology"]);
    let claim = json!({"resourceType": "Parameters"});
    let claimed = app.send_as(&specialist, Method::POST, &format!("Task/{task}/$claim"), Some(&claim)).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    task
}

async fn partners_are_notified_of_every_change_in_order(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(0).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    subscribe(app, &partner, &endpoint).await;
    let task = refer_and_claim(app, &partner, "N-1").await;

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
    let first = receiver.notifications()[0].clone();
    assert_eq!(first["type"], "history");
    assert_eq!(first["entry"][1]["resource"]["id"], task.as_str());
}

async fn failed_deliveries_are_retried_then_dead_lettered(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(1).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    subscribe(app, &partner, &endpoint).await;
    refer_and_claim(app, &partner, "N-2").await;
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

    // An endpoint that took the handshake and then fails every notification: every attempt is
    // audited, then the notification is dead.
    let (_broken, broken_endpoint) = Receiver::start(usize::MAX).await;
    subscribe(app, &partner, &broken_endpoint).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-3", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    let mut clock = now + Duration::seconds(20);
    let mut dead = 0;
    for _ in 0..MAX_ATTEMPTS {
        let report = deliver_due(&app.state, &client, clock).await.unwrap();
        dead += report.dead;
        clock += Duration::hours(2);
    }
    assert_eq!(dead, 1, "one dead letter, for the endpoint that always fails");
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

/// Activation as the Backport IG has it: `requested` until the endpoint takes the handshake, then
/// `active`; an endpoint that never answers leaves the Subscription in `error` and what waited for
/// it dead. `$status` tells the partner, and only the partner, where its deliveries stand.
async fn a_subscription_is_active_once_its_endpoint_takes_the_handshake(app: &TestApp) {
    let (receiver, endpoint) = Receiver::start(0).await;
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let id = subscribe(app, &partner, &endpoint).await;
    assert_eq!(receiver.handshakes(), 1);
    let handshake = receiver.received.lock().unwrap()[0].clone();
    assert_eq!(status_parameter(&handshake, "events-since-subscription-start"), "0");
    assert_eq!(status_parameter(&handshake, "status"), "requested");
    // Unchanged channel: still active, no new handshake. A new endpoint: a new handshake.
    let current = app.send_as(&partner, Method::GET, &format!("Subscription/{id}"), None).await.body;
    let mut renamed = current.clone();
    renamed["reason"] = json!("Referral updates for the cardiology team");
    let updated = app.send_as(&partner, Method::PUT, &format!("Subscription/{id}"), Some(&renamed)).await;
    assert_eq!(updated.body["status"], "active", "{}", updated.body);
    let status = app.send_as(&partner, Method::GET, &format!("Subscription/{id}/$status"), None).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status_parameter(&status.body, "type"), "query-status");
    assert_eq!(status_parameter(&status.body, "status"), "active");

    // A Subscription to an endpoint that never answers.
    let dead = json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates",
        "criteria": "Task", "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/notify",
                                        "payload": "application/fhir+json"}});
    let created = app.send_as(&partner, Method::POST, "Subscription", Some(&dead)).await;
    assert_eq!(created.body["status"], "requested");
    let dead_id = created.body["id"].as_str().unwrap().to_string();
    // A referral sent meanwhile: its event waits behind the handshake.
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-H", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    let client = reqwest::Client::new();
    let mut clock = Utc::now();
    let first = deliver_due(&app.state, &client, clock).await.unwrap();
    assert_eq!((first.delivered, first.retried), (1, 1), "the working endpoint gets its event: {first:?}");
    let status = app.send_as(&partner, Method::GET, &format!("Subscription/{dead_id}/$status"), None).await.body;
    assert_eq!(status_parameter(&status, "status"), "requested");
    assert_eq!(status_parameter(&status, "events-since-subscription-start"), "1");
    assert!(status_parameter(&status, "error").contains("could not be reached"), "{status}");
    for _ in 1..rex_server::notifications::MAX_HANDSHAKE_ATTEMPTS {
        clock += Duration::hours(2);
        deliver_due(&app.state, &client, clock).await.unwrap();
    }
    let read = app.send_as(&partner, Method::GET, &format!("Subscription/{dead_id}"), None).await.body;
    assert_eq!(read["status"], "error");
    assert!(read["error"].as_str().unwrap().starts_with("The handshake failed"), "{read}");
    let status = app.send_as(&partner, Method::GET, &format!("Subscription/{dead_id}/$status"), None).await.body;
    let delivery = status["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "delivery").unwrap().clone();
    let part = |name: &str| delivery["part"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
    assert_eq!(part("dead").unwrap()["valueInteger"], 2, "the handshake and the event that waited for it: {status}");
    assert_eq!(part("pending").unwrap()["valueInteger"], 0);
    // Turned off by its owner: stays off, nothing more is queued for it.
    let mut off = read.clone();
    off["status"] = json!("off");
    let off = app.send_as(&partner, Method::PUT, &format!("Subscription/{dead_id}"), Some(&off)).await;
    assert_eq!(off.body["status"], "off", "{}", off.body);

    // Another partner cannot see it exists.
    let other = app.partner_token(crate::support::PARTNER_B, "system/*.cruds").await;
    let hidden = app.send_as(&other, Method::GET, &format!("Subscription/{id}/$status"), None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

/// `id-only` sends the Task's URL without its content, `empty` neither, and `criteria` narrows
/// which Task changes are notified at all.
async fn notifications_carry_what_the_subscription_asks_for(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let content = |code: &str, endpoint: &str| {
        json!({"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
               "_payload": {"extension": [{"url": rex_server::notifications::PAYLOAD_CONTENT_URL, "valueCode": code}]}})
    };
    let (id_only, endpoint) = Receiver::start(0).await;
    subscribe_with(app, &partner, content("id-only", &endpoint), "Task").await;
    let (empty, endpoint) = Receiver::start(0).await;
    subscribe_with(app, &partner, json!({"type": "rest-hook", "endpoint": endpoint}), "Task").await;
    let (claimed_only, endpoint) = Receiver::start(0).await;
    let topic = rex_server::notifications::TASK_TOPIC;
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Claims",
        "criteria": topic, "_criteria": {"extension": [{"url": rex_server::notifications::FILTER_CRITERIA_URL,
                                                        "valueString": "Task?status=in-progress"}]},
        "channel": content("full-resource", &endpoint)});
    assert_eq!(
        app.send_as(&partner, Method::POST, "Subscription", Some(&subscription)).await.status,
        StatusCode::CREATED
    );
    // Criteria that are not a Task search are refused where they are written.
    let mut wrong = subscription.clone();
    wrong["criteria"] = json!("Task?no-such-parameter=1");
    let refused = app.send_as(&partner, Method::POST, "Subscription", Some(&wrong)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["issue"][0]["expression"][0], "Subscription.criteria", "{}", refused.body);

    let task = refer_and_claim(app, &partner, "N-P").await;
    deliver_due(&app.state, &reqwest::Client::new(), Utc::now()).await.unwrap();

    let notified = id_only.notifications();
    assert_eq!(notified.len(), 2);
    let entry = &notified[0]["entry"][1];
    assert_eq!(entry["fullUrl"], format!("{}/Task/{task}", app.base), "R4: an absolute URL");
    assert!(entry.get("resource").is_none(), "id-only carries no content: {entry}");
    let notified = empty.notifications();
    assert_eq!(notified.len(), 2);
    assert_eq!(notified[0]["entry"].as_array().unwrap().len(), 1, "empty: the status alone");
    assert!(!notified[0].to_string().contains(&task), "empty names no Task: {}", notified[0]);
    assert_eq!(claimed_only.events(), vec![("1".to_string(), "in-progress".to_string())], "only the claim matches");
}

/// A partner endpoint that only takes connections with a client certificate from its CA: rex
/// configured with its certificate (`--delivery-client-cert`...) gets through, without it not.
async fn partner_endpoints_asking_for_mutual_tls_get_rex_certificate(app: &TestApp) {
    use rex_auth::testutil::{CertKind, issue};
    let ca = issue("Partner CA", CertKind::Ca, None);
    let server = issue("localhost", CertKind::Server, Some(&ca));
    let rex = issue("rex", CertKind::Client { san_uri: "https://rex.example" }, Some(&ca));
    let acceptor = rex_auth::MtlsAcceptor::from_pem(&server.cert_pem(), &server.key_pem(), &ca.cert_pem()).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://127.0.0.1:{}/notify", tcp.local_addr().unwrap().port());
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let router = axum::Router::new().route(
        "/notify",
        axum::routing::post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }),
    );
    let listener = rex_server::mtls::MtlsListener::new(tcp, acceptor).unwrap();
    tokio::spawn(rex_server::mtls::serve(listener, router, std::future::pending()));

    let dir = std::env::temp_dir().join(format!("rex-delivery-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, pem) in [("rex.pem", rex.cert_pem()), ("rex.key", rex.key_pem()), ("ca.pem", ca.cert_pem())] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let trusting =
        rex_server::notifications::DeliveryTls { client_identity: None, extra_roots: Some(dir.join("ca.pem")) };
    let targets = &app.state.config.delivery_targets;
    let anonymous = rex_server::notifications::delivery_client(&trusting, targets).unwrap();
    let identified = rex_server::notifications::delivery_client(
        &rex_server::notifications::DeliveryTls {
            client_identity: Some((dir.join("rex.pem"), dir.join("rex.key"))),
            ..trusting
        },
        targets,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates",
        "criteria": "Task", "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}});
    let created = app.send_as(&partner, Method::POST, "Subscription", Some(&subscription)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let now = Utc::now();
    let refused = deliver_due(&app.state, &anonymous, now).await.unwrap();
    assert_eq!((refused.delivered, refused.retried), (0, 1), "no client certificate, no connection");
    let later = now + Duration::seconds(11);
    assert_eq!(deliver_due(&app.state, &identified, later).await.unwrap().delivered, 1, "the handshake");
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("N-T", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    assert_eq!(deliver_due(&app.state, &identified, later).await.unwrap().delivered, 1, "the new referral's event");
    assert_eq!(received.load(Ordering::SeqCst), 2);
}

/// No notification goes into the hospital's network: endpoints must be https to public addresses
/// (checked after DNS resolution) unless the operator allows the host (the tests allow 127.0.0.1);
/// headers rex frames the request with are not the partner's to set.
async fn notification_targets_are_checked_at_registration(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let subscription = |endpoint: &str| {
        json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates", "criteria": "Task",
               "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}})
    };
    for endpoint in [
        "http://93.184.215.14/notify",
        "https://localhost:5432/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/notify",
        "https://192.168.0.10/notify",
        "https://[::1]/notify",
        "https://[fd00::1]/notify",
        "https://224.0.0.1/notify",
        "https://0.0.0.0/notify",
    ] {
        let refused = app.send_as(&partner, Method::POST, "Subscription", Some(&subscription(endpoint))).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{endpoint}: {}", refused.body);
        assert_eq!(refused.issue_expression(), "Subscription.channel.endpoint", "{endpoint}");
    }
    let mut with_host = subscription("https://93.184.215.14/notify");
    with_host["channel"]["header"] = json!(["Authorization: Bearer x", "Host: db.internal"]);
    let refused = app.send_as(&partner, Method::POST, "Subscription", Some(&with_host)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.issue_expression(), "Subscription.channel.header[1]");
    // In a transaction too, and an update cannot move an accepted Subscription there.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": subscription("https://169.254.169.254/"), "request": {"method": "POST", "url": "Subscription"}}]});
    let refused = app.send_as(&partner, Method::POST, "", Some(&bundle)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.issue_expression(), "Bundle.entry[0].resource.channel.endpoint");
    let accepted =
        app.send_as(&partner, Method::POST, "Subscription", Some(&subscription("https://93.184.215.14/n"))).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "a public https endpoint: {}", accepted.body);
    let id = accepted.body["id"].as_str().unwrap();
    let mut moved = subscription("https://127.0.0.2/notify");
    moved["id"] = json!(id);
    let refused = app.send_as(&partner, Method::PUT, &format!("Subscription/{id}"), Some(&moved)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    // A sandbox partner's test endpoint may be plain http.
    let sandbox = app.partner_token(crate::support::PARTNER_SANDBOX, "system/*.cruds").await;
    let plain =
        app.send_as(&sandbox, Method::POST, "Subscription", Some(&subscription("http://93.184.215.14/n"))).await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.body);
}

/// Subscriptions stored before these rules (or whose name resolves elsewhere since they were
/// written): the delivery refuses their addresses too, and sends nothing there.
async fn notifications_are_not_delivered_into_the_hospital_network(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let subscription = |endpoint: &str| {
        json!({"resourceType": "Subscription", "status": "requested", "reason": "Referral updates", "criteria": "Task",
               "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}})
    };
    let (receiver, allowed) = Receiver::start(0).await;
    let port = allowed.rsplit(':').next().unwrap().trim_end_matches("/notify").to_string();
    for endpoint in [format!("http://localhost:{port}/notify"), format!("http://[::ffff:127.0.0.1]:{port}/notify")] {
        let mut stored = subscription(&endpoint);
        rex_server::access::set_owner(&mut stored, PARTNER_A);
        let op = rex_server::interactions::write::WriteOp::Create {
            resource_type: "Subscription".into(),
            resource: stored,
            id: None,
            if_none_exist: None,
        };
        rex_server::interactions::in_transaction(&app.store, rex_store::Isolation::RowLocking, &op, |tx, op| {
            Box::pin(rex_server::interactions::write::execute(
                tx,
                &rex_server::access::Caller::Unrestricted,
                op.clone(),
            ))
        })
        .await
        .unwrap();
    }
    let client =
        rex_server::notifications::delivery_client(&Default::default(), &app.state.config.delivery_targets).unwrap();
    let report = deliver_due(&app.state, &client, Utc::now() + Duration::hours(1)).await.unwrap();
    assert_eq!(report.delivered, 0, "{report:?}");
    assert!(report.retried >= 2, "{report:?}");
    assert_eq!(receiver.handshakes(), 0, "nothing reached the loopback receiver");
    let errors = app.send_as(&partner, Method::GET, "Subscription?status=requested", None).await;
    let ids: Vec<String> = errors.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut reasons = Vec::new();
    for id in ids {
        let status = app.send_as(&partner, Method::GET, &format!("Subscription/{id}/$status"), None).await;
        reasons.push(status_parameter(&status.body, "error"));
    }
    assert!(reasons.iter().filter(|r| r.contains("loopback")).count() >= 2, "{reasons:?}");
}
