//! Authentication and isolation through HTTP: the SMART token endpoint, bearer tokens on every FHIR
//! route, scopes, partner compartments (a table of everything partner B might try on partner A's
//! referral), specialist queues, rate limits and the AuditEvents of refused access.

use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, PARTNER_B, PARTNER_SANDBOX, TestApp, backend_tests};

backend_tests!(
    @on sqlite_secured, postgres_secured;
    token_endpoint_and_bearer_tokens,
    partner_b_cannot_reach_partner_a,
    scopes_limit_each_interaction,
    specialists_see_only_their_queues,
    partners_are_rate_limited,
    sandbox_referrals_reach_no_real_queue,
    reads_are_audited_with_the_reader,
    used_assertions_are_shared_through_the_database,
    an_admin_resets_a_sandbox,
);

const ALL: &str = "system/*.cruds";

/// A referral Bundle of `partner` (the test referral names partner A's Organization).
pub(crate) fn referral_of(partner: &str, number: &str, icd10: &str) -> Value {
    let text = referral(number, icd10, "urgent", "es-MX", false).to_string();
    serde_json::from_str(&text.replace(PARTNER_A, partner)).unwrap()
}

/// Ids of the resources a referral's transaction-response created, by type, and its Task.
pub(crate) fn created(reply: &Value) -> (Value, String) {
    let mut ids = json!({});
    for entry in reply["entry"].as_array().unwrap() {
        let location = entry["response"]["location"].as_str().unwrap();
        let mut parts = location.split('/');
        let (resource_type, id) = (parts.next().unwrap(), parts.next().unwrap());
        ids[resource_type] = json!(id);
    }
    let task = reply["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    (ids, task)
}

fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| entries.iter().map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

async fn token_endpoint_and_bearer_tokens(app: &TestApp) {
    // Public documents need no token.
    let smart = app.send(Method::GET, &app.base.replace("/fhir", "/.well-known/smart-configuration"), &[], None).await;
    assert_eq!(smart.status, StatusCode::OK);
    assert_eq!(smart.body["token_endpoint"], app.auth.as_ref().unwrap().token_url.as_str());
    assert_eq!(
        app.get("metadata").await.body["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );

    // No token, a malformed token, a token from nobody rex knows: 401 with WWW-Authenticate.
    let anonymous = app.get("Patient").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.issue_code(), "login");
    assert!(anonymous.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(app.send_as("not-a-jwt", Method::GET, "Patient", None).await.status, StatusCode::UNAUTHORIZED);

    // A valid assertion gets a token, and the token works.
    let auth = app.auth.as_ref().unwrap();
    let assertion = auth.assertion(PARTNER_A);
    let scope = "system/Patient.rs system/ServiceRequest.c";
    let granted = app.exchange(&assertion, scope).await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert_eq!(granted.header("cache-control"), Some("no-store"));
    assert_eq!(granted.body["token_type"], "bearer");
    assert_eq!(granted.body["expires_in"], 300);
    let token = granted.body["access_token"].as_str().unwrap();
    assert_eq!(app.send_as(token, Method::GET, "Patient", None).await.status, StatusCode::OK);

    // The same assertion again is a replay.
    let replayed = app.exchange(&assertion, scope).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replayed.body["error"], "invalid_client");

    // Assertions that must be refused, each for its own reason.
    let unsigned = {
        let encode = |v: Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": PARTNER_A, "sub": PARTNER_A, "aud": auth.token_url, "exp": now + 60,
                            "jti": uuid::Uuid::new_v4().to_string()});
        format!("{}.{}.", encode(json!({"alg": "none", "typ": "JWT"})), encode(claims))
    };
    let wrong_signature = {
        let other = auth.assertion(PARTNER_B);
        let mine = auth.assertion(PARTNER_A);
        let signature = other.rsplit('.').next().unwrap();
        format!("{}.{signature}", mine.rsplit_once('.').unwrap().0)
    };
    for (why, assertion) in [("alg none", unsigned), ("signature of another key", wrong_signature)] {
        let refused = app.exchange(&assertion, scope).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{why}: {}", refused.body);
        assert_eq!(refused.body["error"], "invalid_client", "{why}");
    }
    let wrong_grant = app.token_request(&[("grant_type", "password")]).await;
    assert_eq!(wrong_grant.body["error"], "unsupported_grant_type");

    // Staff tokens: valid, expired.
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    assert_eq!(app.send_as(&coordinator, Method::GET, "Task", None).await.status, StatusCode::OK);
    let expired = auth.expired_staff_token();
    let refused = app.send_as(&expired, Method::GET, "Task", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body["issue"][0]["diagnostics"].as_str().unwrap().contains("expired"));
}

async fn partner_b_cannot_reach_partner_a(app: &TestApp) {
    let a = app.partner_token(PARTNER_A, ALL).await;
    let b = app.partner_token(PARTNER_B, ALL).await;
    let sent = app.send_as(&a, Method::POST, "", Some(&referral_of(PARTNER_A, "ISO-A", "I25.10"))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let (a_ids, a_task) = created(&sent.body);
    let a_patient = a_ids["Patient"].as_str().unwrap().to_string();
    let a_request = a_ids["ServiceRequest"].as_str().unwrap().to_string();
    let sent_b = app.send_as(&b, Method::POST, "", Some(&referral_of(PARTNER_B, "ISO-B", "I25.10"))).await;
    assert_eq!(sent_b.status, StatusCode::OK, "{}", sent_b.body);
    let (b_ids, _) = created(&sent_b.body);
    let b_patient = b_ids["Patient"].as_str().unwrap().to_string();

    // A sees its own referral whole, and the Task rex made for it.
    for path in [format!("Patient/{a_patient}"), format!("ServiceRequest/{a_request}"), format!("Task/{a_task}")] {
        assert_eq!(app.send_as(&a, Method::GET, &path, None).await.status, StatusCode::OK, "A reads {path}");
    }

    // Everything B tries on A's referral answers as if it did not exist.
    let patient_update = json!({"resourceType": "Patient", "id": a_patient, "gender": "male"});
    let patch = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    let get_in_transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{a_patient}")}}]});
    let put_in_transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient_update, "request": {"method": "PUT", "url": format!("Patient/{a_patient}")}}]});
    let attempts: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("read Patient", Method::GET, format!("Patient/{a_patient}"), None),
        ("read ServiceRequest", Method::GET, format!("ServiceRequest/{a_request}"), None),
        ("read Task", Method::GET, format!("Task/{a_task}"), None),
        ("vread", Method::GET, format!("Patient/{a_patient}/_history/1"), None),
        ("instance history", Method::GET, format!("Patient/{a_patient}/_history"), None),
        ("update", Method::PUT, format!("Patient/{a_patient}"), Some(patient_update.clone())),
        ("delete", Method::DELETE, format!("Patient/{a_patient}"), None),
        ("$validate of a stored id", Method::POST, format!("Patient/{a_patient}/$validate"), None),
        ("GET in a transaction", Method::POST, String::new(), Some(get_in_transaction)),
        ("PUT in a transaction", Method::POST, String::new(), Some(put_in_transaction)),
    ];
    for (what, method, path, body) in attempts {
        let reply = app.send_as(&b, method, &path, body.as_ref()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "B's {what}: {}", reply.body);
        assert_eq!(reply.issue_code(), "not-found", "B's {what}");
    }
    let patched = app
        .send(
            Method::PATCH,
            &format!("Patient/{a_patient}"),
            &[("authorization", &format!("Bearer {b}")), ("content-type", "application/json-patch+json")],
            Some(patch.to_string()),
        )
        .await;
    assert_eq!(patched.status, StatusCode::NOT_FOUND, "B's patch: {}", patched.body);

    // Searches, includes and histories hold only B's own resources.
    let searches = [
        "Patient".to_string(),
        format!("Patient?_id={a_patient}"),
        "ServiceRequest?_include=ServiceRequest:subject".to_string(),
        "Patient?_revinclude=ServiceRequest:subject&_revinclude=Task:patient".to_string(),
        "Task".to_string(),
        "Patient/_history".to_string(),
        "_history".to_string(),
    ];
    for search in &searches {
        let reply = app.send_as(&b, Method::GET, search, None).await;
        assert_eq!(reply.status, StatusCode::OK, "B's {search}: {}", reply.body);
        let ids = match_ids(&reply.body);
        for hidden in [&a_patient, &a_request, &a_task] {
            assert!(!ids.contains(hidden), "B's {search} shows A's {hidden}");
        }
    }
    let b_patients = app.send_as(&b, Method::GET, "Patient", None).await.body;
    assert_eq!(b_patients["total"], 1);
    assert_eq!(match_ids(&b_patients), vec![b_patient.clone()]);
    // A batch reports the hidden read in its entry.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{a_patient}")}},
        {"request": {"method": "GET", "url": format!("Patient/{b_patient}")}}]});
    let reply = app.send_as(&b, Method::POST, "", Some(&batch)).await;
    assert_eq!(reply.body["entry"][0]["response"]["status"], "404 Not Found");
    assert_eq!(reply.body["entry"][1]["response"]["status"], "200 OK");

    // A conditional update by B never matches A's Patient: it creates B's own.
    let conditional = app
        .send_as(
            &b,
            Method::PUT,
            "Patient?identifier=https://hospital-angeles.mx/fhir/mrn|MRN-ISO-A",
            Some(&json!({"resourceType": "Patient", "gender": "male"})),
        )
        .await;
    assert_eq!(conditional.status, StatusCode::CREATED, "{}", conditional.body);
    assert_ne!(conditional.body["id"], a_patient.as_str());

    // B cannot send, amend or revoke a referral on A's behalf, nor forge A's compartment tag.
    let forged = app.send_as(&b, Method::POST, "", Some(&referral_of(PARTNER_A, "ISO-A", "I25.10"))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let tagged = json!({"resourceType": "Patient", "meta": {"tag": [
        {"system": "https://rex.example/fhir/CodeSystem/partner", "code": PARTNER_A}]}});
    let created_by_b = app.send_as(&b, Method::POST, "Patient", Some(&tagged)).await;
    assert_eq!(created_by_b.status, StatusCode::CREATED);
    let id = created_by_b.body["id"].as_str().unwrap();
    assert_eq!(app.send_as(&a, Method::GET, &format!("Patient/{id}"), None).await.status, StatusCode::NOT_FOUND);

    // Nothing of A's changed, and every refusal was audited.
    let a_view = app.send_as(&a, Method::GET, &format!("Patient/{a_patient}"), None).await;
    assert_eq!(a_view.body["gender"], "female");
    assert_eq!(a_view.body["meta"]["versionId"], "1");
    let coordinator = app.auth.as_ref().unwrap().staff_token(StaffRole::Coordinator, None, &[]);
    app.state.audit.flush().await;
    let audit = app.send_as(&coordinator, Method::GET, "AuditEvent?outcome=4&_summary=count", None).await;
    let denied = audit.body["total"].as_i64().unwrap();
    assert!(denied >= 12, "denied accesses audited: {denied}");
}

async fn scopes_limit_each_interaction(app: &TestApp) {
    let read_only = app.partner_token(PARTNER_A, "system/Patient.rs").await;
    assert_eq!(app.send_as(&read_only, Method::GET, "Patient", None).await.status, StatusCode::OK);
    let patient = json!({"resourceType": "Patient", "gender": "female"});
    let refused = app.send_as(&read_only, Method::POST, "Patient", Some(&patient)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.issue_code(), "forbidden");
    assert_eq!(app.send_as(&read_only, Method::GET, "Observation", None).await.status, StatusCode::FORBIDDEN);
    // A transaction checks each entry's scope.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}}]});
    assert_eq!(app.send_as(&read_only, Method::POST, "", Some(&bundle)).await.status, StatusCode::FORBIDDEN);
    // Scopes a partner may not have are not granted.
    let auth = app.auth.as_ref().unwrap();
    let refused = app.exchange(&auth.assertion(PARTNER_A), "patient/Patient.read").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"], "invalid_scope");
    // Workflow operations are staff work.
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral_of(PARTNER_A, "SC-1", "I25.10"))).await;
    let (_, task) = created(&sent.body);
    let claim = app
        .send_as(&partner, Method::POST, &format!("Task/{task}/$claim"), Some(&json!({"resourceType": "Parameters"})))
        .await;
    assert_eq!(claim.status, StatusCode::FORBIDDEN, "{}", claim.body);
}

async fn specialists_see_only_their_queues(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let cardiology = app.send_as(&partner, Method::POST, "", Some(&referral_of(PARTNER_A, "Q-1", "I25.10"))).await;
    let (_, cardiology_task) = created(&cardiology.body);
    let oncology = app.send_as(&partner, Method::POST, "", Some(&referral_of(PARTNER_A, "Q-2", "C34.90"))).await;
    let (_, oncology_task) = created(&oncology.body);
    let auth = app.auth.as_ref().unwrap();
    let specialist = auth.staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-heart"), &["cardiology"]);

    let tasks = app.send_as(&specialist, Method::GET, "Task", None).await;
    assert_eq!(match_ids(&tasks.body), vec![cardiology_task.clone()]);
    assert_eq!(
        app.send_as(&specialist, Method::GET, &format!("Task/{oncology_task}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    let empty = json!({"resourceType": "Parameters"});
    let elsewhere = app.send_as(&specialist, Method::POST, &format!("Task/{oncology_task}/$claim"), Some(&empty)).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let next_elsewhere =
        json!({"resourceType": "Parameters", "parameter": [{"name": "queue", "valueString": "oncology"}]});
    let refused = app.send_as(&specialist, Method::POST, "Task/$claim-next", Some(&next_elsewhere)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A specialist claims for themself only; the claim keeps the Task in the partner's view.
    let someone_else = json!({"resourceType": "Parameters", "parameter": [
        {"name": "owner", "valueReference": {"reference": "PractitionerRole/dr-other"}}]});
    let refused =
        app.send_as(&specialist, Method::POST, &format!("Task/{cardiology_task}/$claim"), Some(&someone_else)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let claimed = app.send_as(&specialist, Method::POST, &format!("Task/{cardiology_task}/$claim"), Some(&empty)).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    assert_eq!(claimed.body["owner"]["reference"], "PractitionerRole/dr-heart");
    let seen = app.send_as(&partner, Method::GET, &format!("Task/{cardiology_task}"), None).await;
    assert_eq!(seen.body["status"], "in-progress");
    // Coordinators see every queue.
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    assert_eq!(match_ids(&app.send_as(&coordinator, Method::GET, "Task", None).await.body).len(), 2);
}

async fn partners_are_rate_limited(app: &TestApp) {
    let token = app.partner_token(PARTNER_B, ALL).await;
    let mut limited = None;
    for _ in 0..700 {
        let reply = app.send_as(&token, Method::GET, "Patient?_summary=count", None).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("a partner limited to 600 requests a minute is refused before 700");
    assert_eq!(limited.issue_code(), "throttled");
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another partner is not affected.
    let other = app.partner_token(PARTNER_A, ALL).await;
    assert_eq!(app.send_as(&other, Method::GET, "Patient", None).await.status, StatusCode::OK);
}

async fn sandbox_referrals_reach_no_real_queue(app: &TestApp) {
    let sandbox = app.partner_token(PARTNER_SANDBOX, ALL).await;
    let sent = app.send_as(&sandbox, Method::POST, "", Some(&referral_of(PARTNER_SANDBOX, "SB-1", "I25.10"))).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let (ids, task) = created(&sent.body);
    // The full intake ran: a Task with the routing decision, on the sandbox queue, labelled.
    let task = app.send_as(&sandbox, Method::GET, &format!("Task/{task}"), None).await.body;
    assert_eq!(task["owner"]["reference"], "HealthcareService/sandbox");
    assert!(task["note"][0]["text"].as_str().unwrap().contains("would go to cardiology"), "{task}");
    let request = ids["ServiceRequest"].as_str().unwrap();
    for resource in [task, app.send_as(&sandbox, Method::GET, &format!("ServiceRequest/{request}"), None).await.body] {
        assert!(resource["meta"]["tag"].to_string().contains("HTEST"), "test data is labelled: {resource}");
    }
    // No real queue shows it, and no specialist can take it.
    let auth = app.auth.as_ref().unwrap();
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    let queue = app.send_as(&coordinator, Method::GET, "Task?owner=HealthcareService/cardiology", None).await;
    assert_eq!(queue.body["total"], 0);
    let specialist = auth.staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-heart"), &["cardiology"]);
    let next = json!({"resourceType": "Parameters", "parameter": [{"name": "queue", "valueString": "cardiology"}]});
    let claim = app.send_as(&specialist, Method::POST, "Task/$claim-next", Some(&next)).await;
    assert_eq!(claim.status, StatusCode::NOT_FOUND);
}

async fn reads_are_audited_with_the_reader(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral_of(PARTNER_A, "AU-1", "I25.10"))).await;
    let (ids, task) = created(&sent.body);
    assert_eq!(app.send_as(&partner, Method::GET, &format!("Task/{task}"), None).await.status, StatusCode::OK);
    assert_eq!(app.send_as(&partner, Method::GET, "Patient", None).await.status, StatusCode::OK);
    app.state.audit.flush().await;
    let coordinator = app.auth.as_ref().unwrap().staff_token(StaffRole::Coordinator, None, &[]);
    let reads =
        app.send_as(&coordinator, Method::GET, &format!("AuditEvent?entity=Task/{task}&subtype=read"), None).await;
    assert_eq!(reads.body["total"], 1, "{}", reads.body);
    let event = &reads.body["entry"][0]["resource"];
    assert_eq!(event["agent"][0]["who"]["display"], format!("partner:{PARTNER_A}"));
    assert_eq!(event["action"], "R");
    // Searchable by who did it (agent altId) and when.
    let by_agent = format!("AuditEvent?altid=partner:{PARTNER_A}&date=ge2026-01-01&_summary=count");
    assert!(app.send_as(&coordinator, Method::GET, &by_agent, None).await.body["total"].as_i64().unwrap() >= 2);
    let patient = ids["Patient"].as_str().unwrap();
    let searches = app
        .send_as(&coordinator, Method::GET, &format!("AuditEvent?entity=Patient/{patient}&subtype=search-type"), None)
        .await;
    assert_eq!(searches.body["total"], 1, "{}", searches.body);
    assert!(!searches.body.to_string().contains("Ramírez"), "audit holds references, not content");
    // A REST write is audited in its own transaction, with the writer.
    let created = app.send_as(&partner, Method::POST, "Patient", Some(&json!({"resourceType": "Patient"}))).await;
    let id = created.body["id"].as_str().unwrap();
    let writes =
        app.send_as(&coordinator, Method::GET, &format!("AuditEvent?entity=Patient/{id}&subtype=create"), None).await;
    assert_eq!(writes.body["total"], 1, "{}", writes.body);
    assert_eq!(writes.body["entry"][0]["resource"]["agent"][0]["who"]["display"], format!("partner:{PARTNER_A}"));
}

async fn an_admin_resets_a_sandbox(app: &TestApp) {
    let sandbox = app.partner_token(PARTNER_SANDBOX, ALL).await;
    let bundle = referral_of(PARTNER_SANDBOX, "SB-R", "I25.10");
    let sent = app.send_as(&sandbox, Method::POST, "", Some(&bundle)).await;
    let (_, task) = created(&sent.body);
    let auth = app.auth.as_ref().unwrap();
    let reset = "$sandbox-reset?partner=sandbox-clinic";
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    assert_eq!(app.send_as(&coordinator, Method::POST, reset, None).await.status, StatusCode::FORBIDDEN);
    let admin = auth.staff_token(StaffRole::Admin, None, &[]);
    let refused = app.send_as(&admin, Method::POST, &format!("$sandbox-reset?partner={PARTNER_A}"), None).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "only sandbox partners are reset");
    let done = app.send_as(&admin, Method::POST, reset, None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body["issue"][0]["diagnostics"].as_str().unwrap().contains("1 referrals forgotten"), "{}", done.body);
    assert_eq!(app.send_as(&sandbox, Method::GET, &format!("Task/{task}"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.send_as(&sandbox, Method::GET, "Patient", None).await.body["total"], 0);
    // The same referral is new again.
    let again = app.send_as(&sandbox, Method::POST, "", Some(&bundle)).await;
    assert!(again.body["link"].to_string().contains("#created"), "{}", again.body);
}

/// The replay cache lives in the database, so every instance on it refuses a used assertion.
async fn used_assertions_are_shared_through_the_database(app: &TestApp) {
    let now = chrono::Utc::now().timestamp();
    assert!(app.store.record_assertion("hospital-a|jti-1", now + 60, now).await.unwrap());
    assert!(!app.store.record_assertion("hospital-a|jti-1", now + 60, now + 30).await.unwrap(), "a replay");
    assert!(app.store.record_assertion("hospital-b|jti-1", now + 60, now).await.unwrap(), "keys are per partner");
    assert!(
        app.store.record_assertion("hospital-a|jti-1", now + 200, now + 61).await.unwrap(),
        "forgotten once expired"
    );
}

/// Status and body of a raw HTTP/1.1 response.
fn parse_raw(response: &str) -> (u16, Value) {
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) => serde_json::from_str(&body[start..=end]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

#[tokio::test]
async fn mtls_binds_partners_to_their_own_certificates() {
    use rex_auth::testutil::{CertKind, Issued, issue, tls_exchange};
    let ca = issue("rex test CA", CertKind::Ca, None);
    let server = issue("localhost", CertKind::Server, Some(&ca));
    let client_a = issue(PARTNER_A, CertKind::Client { san_uri: "urn:rex:partner:a" }, Some(&ca));
    let client_b = issue(PARTNER_B, CertKind::Client { san_uri: "urn:rex:partner:b" }, Some(&ca));
    let certificates = [(PARTNER_A, client_a.sha256_hex()), (PARTNER_B, client_b.sha256_hex())];
    let app = TestApp::sqlite_mtls(&server, &ca, &certificates).await;
    let address = app.mtls.unwrap();
    let auth = app.auth.as_ref().unwrap();

    let over = |client: &'static str, request: String| {
        let (ca, cert): (&Issued, &Issued) = (&ca, if client == "a" { &client_a } else { &client_b });
        async move { parse_raw(&tls_exchange(address, ca, Some(cert), request.as_bytes()).await.unwrap()) }
    };
    let token_request = |partner: &str| {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", auth.assertion(partner).as_str()),
                ("scope", "system/Patient.rs"),
            ])
            .finish();
        format!(
            "POST /auth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
    };
    let search = |token: &str| {
        format!(
            "GET /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };

    // A's token, issued over A's certificate, is bound to it.
    let (status, granted) = over("a", token_request(PARTNER_A)).await;
    assert_eq!(status, 200, "{granted}");
    let bound = granted["access_token"].as_str().unwrap().to_string();
    assert_eq!(over("a", search(&bound)).await.0, 200);
    // On B's connection, or without mTLS, A's bound token is refused.
    assert_eq!(over("b", search(&bound)).await.0, 403);
    assert_eq!(app.send_as(&bound, Method::GET, "Patient", None).await.status, StatusCode::FORBIDDEN);
    // A cannot get a token over B's certificate.
    let (status, refused) = over("b", token_request(PARTNER_A)).await;
    assert_eq!((status, refused["error"].as_str()), (401, Some("invalid_client")));
    // B's token (issued without mTLS) is refused on A's connection.
    let b_token = app.partner_token(PARTNER_B, "system/Patient.rs").await;
    let (status, outcome) = over("a", search(&b_token)).await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(over("b", search(&b_token)).await.0, 200);
    app.cleanup().await;
}
