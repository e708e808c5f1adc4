//! Consent for cross-border sharing: a partner configured with `require_consent` must send an
//! active Consent with every new referral; the Consent is linked to the referral's Task, and a
//! referral whose consent is withdrawn (a new version, a later Consent) or has expired is flagged.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use rex_server::interactions::consent::flag_withdrawn_consents;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, PARTNER_CONSENT, TestApp, backend_tests};

backend_tests!(@on sqlite_secured, postgres_secured;
    a_referral_without_an_active_consent_is_refused,
    a_withdrawn_or_expired_consent_flags_the_referral,
);

const ALL: &str = "system/*.cruds";
const FLAG: &str = "https://rex.example/fhir/CodeSystem/task-flag";

/// An active consent for the Patient entry of [`referral`], permitting sharing from yesterday
/// until `end`.
fn consent(end: &str) -> Value {
    let start = (Utc::now() - Duration::days(1)).format("%Y-%m-%d").to_string();
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}]}],
        "patient": {"reference": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000002"},
        "dateTime": format!("{start}T09:00:00Z"),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "period": {"start": start, "end": end}}})
}

/// A referral of `partner` carrying `consent` (when given) as its fourth entry.
fn referral_of(partner: &str, number: &str, consent: Option<Value>) -> Value {
    let mut bundle = referral(number, "I25.10", "urgent", "fr-FR", false);
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!(partner);
    if partner != PARTNER_A {
        // hospital-angeles-mx's own profile fixes its identifier system; others choose theirs.
        bundle["entry"][2]["resource"]["identifier"][0]["system"] =
            json!(format!("https://{partner}.example/referral"));
    }
    if let Some(consent) = consent {
        bundle["entry"].as_array_mut().unwrap().push(json!({
            "fullUrl": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000004",
            "resource": consent, "request": {"method": "POST", "url": "Consent"}}));
    }
    bundle
}

fn task_id(reply: &crate::support::Reply) -> String {
    let link = reply.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task");
    link.unwrap()["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

fn expressions(reply: &crate::support::Reply) -> Vec<String> {
    reply.body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str().map(String::from))
        .collect()
}

async fn a_referral_without_an_active_consent_is_refused(app: &TestApp) {
    let token = app.partner_token(PARTNER_CONSENT, ALL).await;
    let rows = app.count_rows("resource_history").await;
    let none = app.send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, "C-1", None))).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", none.body);
    assert_eq!(none.issue_code(), "required");
    assert_eq!(none.issue_expression(), "Bundle.entry");
    assert!(none.body["issue"][0]["diagnostics"].as_str().unwrap().contains("Consent"), "{}", none.body);

    let mut revoked = consent("2099-01-01");
    revoked["status"] = json!("inactive");
    let reply = app.send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, "C-1", Some(revoked)))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(expressions(&reply), vec!["Bundle.entry[3].resource.status"]);
    // This partner reads French (its configured language), the reason inside the refusal too.
    let issue = &reply.body["issue"][0];
    assert_eq!(
        issue["diagnostics"],
        "Ce Consent ne peut pas couvrir la demande d'avis : status vaut 'inactive' et non 'active'"
    );
    assert_eq!(issue["details"]["text"], "This Consent cannot carry the referral: status is 'inactive', not 'active'");

    let yesterday = (Utc::now() - Duration::days(1)).format("%Y-%m-%d").to_string();
    let mut expired = consent(&yesterday);
    expired["provision"]["period"]["start"] = json!("2020-01-01");
    let reply = app.send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, "C-1", Some(expired)))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(expressions(&reply), vec!["Bundle.entry[3].resource.provision.period"]);

    let mut elsewhere = consent("2099-01-01");
    elsewhere["patient"] = json!({"reference": "urn:uuid:5b0c7c1e-0000-4000-8000-000000000001"});
    let reply =
        app.send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, "C-1", Some(elsewhere)))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert!(expressions(&reply).contains(&"Bundle.entry[3].resource.patient".to_string()), "{}", reply.body);
    assert_eq!(app.count_rows("resource_history").await, rows, "a refused referral writes nothing");

    // A partner that does not require consent sends without one.
    let a = app.partner_token(PARTNER_A, ALL).await;
    let plain = app.send_as(&a, Method::POST, "", Some(&referral_of(PARTNER_A, "C-2", None))).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);

    let accepted = app
        .send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, "C-1", Some(consent("2099-01-01")))))
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    let consent_id = accepted.body["entry"][3]["resource"]["id"].as_str().unwrap();
    let task = app.send_as(&token, Method::GET, &format!("Task/{}", task_id(&accepted)), None).await.body;
    assert!(task["extension"].to_string().contains(&format!("Consent/{consent_id}")), "{task}");
    assert!(task["meta"]["tag"].to_string().contains("\"consented\""), "{task}");

    // The third way in, a Task about a stored referral, needs a stored Consent for the patient.
    let bundle = referral_of(PARTNER_CONSENT, "C-3", None);
    let create = |resource: Value| {
        let token = token.clone();
        async move {
            let reply =
                app.send_as(&token, Method::POST, resource["resourceType"].as_str().unwrap(), Some(&resource)).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            reply.body["id"].as_str().unwrap().to_string()
        }
    };
    let organization = create(bundle["entry"][0]["resource"].clone()).await;
    let patient = create(bundle["entry"][1]["resource"].clone()).await;
    let mut request = bundle["entry"][2]["resource"].clone();
    request["subject"] = json!({"reference": format!("Patient/{patient}")});
    request["requester"] = json!({"reference": format!("Organization/{organization}")});
    let request = create(request).await;
    let task = json!({"resourceType": "Task", "status": "draft", "intent": "order",
                      "focus": {"reference": format!("ServiceRequest/{request}")}});
    let refused = app.send_as(&token, Method::POST, "Task", Some(&task)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.issue_expression(), "Task.focus");
    let mut stored = consent("2099-01-01");
    stored["patient"] = json!({"reference": format!("Patient/{patient}")});
    let consent_id = create(stored).await;
    let routed = app.send_as(&token, Method::POST, "Task", Some(&task)).await;
    assert_eq!(routed.status, StatusCode::CREATED, "{}", routed.body);
    assert!(routed.body["extension"].to_string().contains(&format!("Consent/{consent_id}")), "{}", routed.body);
}

async fn a_withdrawn_or_expired_consent_flags_the_referral(app: &TestApp) {
    let token = app.partner_token(PARTNER_CONSENT, ALL).await;
    let coordinator = app.auth.as_ref().unwrap().staff_token(rex_auth::StaffRole::Coordinator, None, &[]);
    let send = |number: &'static str, consent: Value| {
        let token = token.clone();
        async move {
            let reply =
                app.send_as(&token, Method::POST, "", Some(&referral_of(PARTNER_CONSENT, number, Some(consent)))).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            (
                task_id(&reply),
                reply.body["entry"][3]["resource"].clone(),
                reply.body["entry"][1]["resource"]["id"].clone(),
            )
        }
    };
    let (updated, updated_consent, _) = send("W-1", consent("2099-01-01")).await;
    let (later, _, later_patient) = send("W-2", consent("2099-01-01")).await;
    let soon = (Utc::now() + Duration::days(30)).format("%Y-%m-%d").to_string();
    let (expiring, _, _) = send("W-3", consent(&soon)).await;
    let now = Utc::now();
    assert!(flag_withdrawn_consents(&app.state, now).await.unwrap().is_empty(), "every consent holds");

    // The partner withdraws the first consent with a new version, and the second by a later
    // Consent for the same patient.
    let mut withdrawn = updated_consent.clone();
    withdrawn["status"] = json!("inactive");
    let id = withdrawn["id"].as_str().unwrap().to_string();
    let reply = app.send_as(&token, Method::PUT, &format!("Consent/{id}"), Some(&withdrawn)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut rejection = consent("2099-01-01");
    rejection["status"] = json!("rejected");
    rejection["patient"] = json!({"reference": format!("Patient/{}", later_patient.as_str().unwrap())});
    let reply = app.send_as(&token, Method::POST, "Consent", Some(&rejection)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    let mut flagged = flag_withdrawn_consents(&app.state, now).await.unwrap();
    flagged.sort();
    let mut expected = vec![updated.clone(), later.clone()];
    expected.sort();
    assert_eq!(flagged, expected);
    assert!(flag_withdrawn_consents(&app.state, now).await.unwrap().is_empty(), "flagged once");
    // Two months on, the third consent's period has ended.
    assert_eq!(flag_withdrawn_consents(&app.state, now + Duration::days(60)).await.unwrap(), vec![expiring.clone()]);

    let search = format!("Task?_tag={FLAG}|consent-withdrawn&_count=10");
    let found = app.send_as(&coordinator, Method::GET, &search, None).await;
    assert_eq!(found.body["total"], 3, "{}", found.body);
    let task = app.send_as(&coordinator, Method::GET, &format!("Task/{updated}"), None).await.body;
    assert_eq!(task["status"], "requested", "the workflow state does not change");
    assert!(task["note"].to_string().contains("is 'inactive'"), "{task}");
    let audit =
        app.send_as(&coordinator, Method::GET, &format!("AuditEvent?entity=Task/{later}&_count=50"), None).await;
    assert!(audit.body.to_string().contains("the later Consent/"), "{}", audit.body);
    // The partner sees the flag on its referral Task too.
    let partner_sees = app.send_as(&token, Method::GET, &format!("Task/{later}"), None).await;
    assert!(partner_sees.body["meta"]["tag"].to_string().contains("consent-withdrawn"));
}
