//! Transaction and batch Bundles: reference rewriting, conditional entries, processing order,
//! atomicity and per-entry results.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, backend_tests};

backend_tests!(
    transaction_rewrites_references,
    transaction_is_atomic,
    transaction_conditional_entries,
    transaction_all_methods_in_spec_order,
    patch_entries_are_validated_like_put,
    transaction_errors_name_the_entry,
    batch_entries_are_independent,
    base_url_variants,
    nested_documents_keep_their_own_references,
);

fn referral_bundle(mrn: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "http://hospital.example.mx/mrn", "value": mrn}],
                          "name": [{"family": "Hernández", "given": ["Lucía"]}], "gender": "female", "birthDate": "1961-02-14",
                          "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es-MX"}]}, "preferred": true}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
             "resource": {"resourceType": "Condition", "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                          "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I25.10"}]}},
             "request": {"method": "POST", "url": "Condition"}},
            {"fullUrl": "urn:uuid:0c2d4a8e-6f1b-4c39-9d2e-7a5b8c1d3e4f",
             "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "urgent",
                          "identifier": [{"system": "http://hospital.example.mx/referrals", "value": format!("R-{mrn}")}],
                          "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                          "reasonReference": [{"reference": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"}]},
             "request": {"method": "POST", "url": "ServiceRequest"}}
        ]
    })
}

async fn transaction_rewrites_references(app: &TestApp) {
    let reply = app.post("", &referral_bundle("MX-100")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "transaction-response");
    let entries = reply.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created");
        assert!(entry["response"]["location"].as_str().unwrap().contains("/_history/1"));
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
    }
    let patient_id = entries[0]["resource"]["id"].as_str().unwrap();
    let condition_id = entries[1]["resource"]["id"].as_str().unwrap();
    let request = &entries[2]["resource"];
    assert_eq!(request["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(request["reasonReference"][0]["reference"], format!("Condition/{condition_id}"));
    let stored = app.get(&format!("ServiceRequest/{}", request["id"].as_str().unwrap())).await;
    assert_eq!(stored.body["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(app.search_ids(&format!("ServiceRequest?subject=Patient/{patient_id}")).await.len(), 1);
}

async fn transaction_is_atomic(app: &TestApp) {
    app.post("", &referral_bundle("MX-1")).await;
    let tables = ["resources", "resource_history", "idx_string", "idx_token", "idx_reference", "idx_date"];
    let mut before = Vec::new();
    for table in tables {
        before.push(app.count_rows(table).await);
    }
    let mut bundle = referral_bundle("MX-2");
    // The last entry fails after the first two were processed.
    bundle["entry"][2]["resource"]["status"] = json!(["not", "a", "code"]);
    let reply = app.post("", &bundle).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.issue_expression(), "Bundle.entry[2].resource.status");
    // An entry that fails on a precondition mid-way also writes nothing.
    let mut stale = referral_bundle("MX-3");
    stale["entry"].as_array_mut().unwrap().push(json!({"request": {"method": "DELETE", "url": "Patient/unknown-id"}}));
    let reply = app.post("", &stale).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.issue_expression(), "Bundle.entry[3]");
    for (table, count) in tables.iter().zip(before) {
        assert_eq!(app.count_rows(table).await, count, "{table} changed after failed transactions");
    }
}

async fn transaction_conditional_entries(app: &TestApp) {
    let mut bundle = referral_bundle("MX-7");
    bundle["entry"][0]["request"]["ifNoneExist"] = json!("identifier=http://hospital.example.mx/mrn|MX-7");
    let first = app.post("", &bundle).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let patient_id = first.body["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    // The same Bundle again: the Patient is found, not duplicated, and references point at it.
    let second = app.post("", &bundle).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(second.body["entry"][0]["resource"]["id"], patient_id.as_str());
    assert_eq!(second.body["entry"][2]["resource"]["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(app.search_ids("Patient").await.len(), 1);

    // Conditional update and a conditional reference.
    let update = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "http://hospital.example.mx/mrn", "value": "MX-7"}], "gender": "female", "active": true},
         "request": {"method": "PUT", "url": "Patient?identifier=http://hospital.example.mx/mrn|MX-7"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
                      "subject": {"reference": "Patient?identifier=http://hospital.example.mx/mrn|MX-7"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let reply = app.post("", &update).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(reply.body["entry"][0]["resource"]["id"], patient_id.as_str());
    assert_eq!(reply.body["entry"][1]["resource"]["subject"]["reference"], format!("Patient/{patient_id}"));
    let mut unresolvable = update.clone();
    unresolvable["entry"][1]["resource"]["subject"]["reference"] = json!("Patient?identifier=nobody");
    let reply = app.post("", &unresolvable).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(reply.issue_expression(), "Bundle.entry[1].resource.subject.reference");
}

async fn transaction_all_methods_in_spec_order(app: &TestApp) {
    let doomed = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Doomed"}]})).await;
    let patched = app.create(&json!({"resourceType": "Patient", "gender": "male"})).await;
    let patch = json!([{"op": "replace", "path": "/gender", "value": "female"}]).to_string();
    use base64::Engine;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        // GET is listed first but runs last, so it sees the new Patient.
        {"request": {"method": "GET", "url": "Patient?family=Created"}},
        {"request": {"method": "DELETE", "url": format!("Patient/{doomed}")}},
        {"resource": {"resourceType": "Patient", "id": "put-1", "name": [{"family": "Put"}]}, "request": {"method": "PUT", "url": "Patient/put-1"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                      "data": base64::engine::general_purpose::STANDARD.encode(patch)},
         "request": {"method": "PATCH", "url": format!("Patient/{patched}")}},
        {"fullUrl": "urn:uuid:2b7f6a3e-1111-4a0f-9c1e-000000000001", "resource": {"resourceType": "Patient", "name": [{"family": "Created"}]},
         "request": {"method": "POST", "url": "Patient"}},
    ]});
    let reply = app.post("", &bundle).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let statuses: Vec<&str> =
        reply.body["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["200 OK", "204 No Content", "201 Created", "200 OK", "201 Created"]);
    assert_eq!(reply.body["entry"][0]["resource"]["type"], "searchset");
    assert_eq!(reply.body["entry"][0]["resource"]["total"], 1);
    assert_eq!(app.get(&format!("Patient/{doomed}")).await.status, StatusCode::GONE);
    assert_eq!(app.get(&format!("Patient/{patched}")).await.body["gender"], "female");
    assert_eq!(app.get("Patient/put-1").await.status, StatusCode::OK);
}

/// A PATCH inside a transaction or batch is held to the profiles like a PUT (and a REST PATCH):
/// a patch that puts a code outside a required binding refuses the entry, and a transaction
/// writes nothing of its other entries.
async fn patch_entries_are_validated_like_put(app: &TestApp) {
    use base64::Engine;
    let id = app.create(&json!({"resourceType": "Patient", "gender": "male"})).await;
    let patch_entry = |value: &str| {
        let patch = json!([{"op": "replace", "path": "/gender", "value": value}]).to_string();
        json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                            "data": base64::engine::general_purpose::STANDARD.encode(patch)},
               "request": {"method": "PATCH", "url": format!("Patient/{id}")}})
    };
    let created = json!({"resource": {"resourceType": "Patient", "name": [{"family": "Alongside"}]},
                         "request": {"method": "POST", "url": "Patient"}});
    let before = app.count_rows("resources").await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [created, patch_entry("robot")]});
    let reply = app.post("", &bundle).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(reply.issue_expression(), "Bundle.entry[1]");
    let diagnostics = reply.body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("Patient.gender after the patch") && diagnostics.contains("robot"), "{}", reply.body);
    assert_eq!(app.count_rows("resources").await, before, "nothing of the transaction is written");
    assert_eq!(app.get(&format!("Patient/{id}")).await.body["meta"]["versionId"], "1");

    let batch =
        json!({"resourceType": "Bundle", "type": "batch", "entry": [patch_entry("robot"), patch_entry("female")]});
    let reply = app.post("", &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["entry"][0]["response"]["status"], "422 Unprocessable Entity", "{}", reply.body);
    assert_eq!(reply.body["entry"][1]["response"]["status"], "200 OK", "{}", reply.body);
    let patient = app.get(&format!("Patient/{id}")).await.body;
    assert_eq!((patient["gender"].as_str(), patient["meta"]["versionId"].as_str()), (Some("female"), Some("2")));
}

async fn transaction_errors_name_the_entry(app: &TestApp) {
    let before = app.count_rows("resources").await;
    let cases = [
        (json!({"resourceType": "Bundle", "type": "collection"}), StatusCode::BAD_REQUEST, "Bundle.type"),
        (json!({"resourceType": "Patient"}), StatusCode::BAD_REQUEST, ""),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[0]",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[0].resource",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "FETCH", "url": "Patient"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[0].request.method",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[1].fullUrl",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:missing"}},
             "request": {"method": "POST", "url": "Observation"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[0].resource.subject.reference",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}]}),
            StatusCode::BAD_REQUEST,
            "Bundle.entry[0].resource",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}}]}),
            StatusCode::NOT_FOUND,
            "Bundle.entry[0]",
        ),
    ];
    for (bundle, status, expression) in cases {
        let reply = app.post("", &bundle).await;
        assert_eq!(reply.status, status, "{bundle}: {}", reply.body);
        if !expression.is_empty() {
            assert_eq!(reply.issue_expression(), expression, "{bundle}: {}", reply.body);
        }
    }
    assert_eq!(app.count_rows("resources").await, before);
}

async fn batch_entries_are_independent(app: &TestApp) {
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Kept"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "bogus": 1}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "GET", "url": "Patient?family=kept"}},
    ]});
    let reply = app.post("", &bundle).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "batch-response");
    let entries = reply.body["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[1]["response"]["status"], "400 Bad Request");
    assert_eq!(entries[1]["response"]["outcome"]["issue"][0]["expression"][0], "Bundle.entry[1].resource.bogus");
    assert_eq!(entries[2]["response"]["status"], "404 Not Found");
    assert_eq!(entries[3]["resource"]["total"], 1, "batch entries run in order, so the search sees entry 0");
    assert_eq!(app.total("Patient").await, 1);
}

async fn base_url_variants(app: &TestApp) {
    let with_slash = app.post("", &referral_bundle("MX-20")).await;
    assert_eq!(with_slash.status, StatusCode::OK);
    let base_without_slash = app.base.clone();
    let without_slash = app
        .send(
            Method::POST,
            &base_without_slash,
            &[("content-type", "application/fhir+json")],
            Some(referral_bundle("MX-21").to_string()),
        )
        .await;
    assert_eq!(without_slash.status, StatusCode::OK, "{}", without_slash.body);
}

async fn nested_documents_keep_their_own_references(app: &TestApp) {
    let document = json!({"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d0"},
        "timestamp": "2026-11-20T10:00:00Z", "entry": [
        {"fullUrl": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d1", "resource": {"resourceType": "Composition", "status": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]}, "date": "2026-11-20", "title": "Patient summary",
            "subject": {"reference": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d2"}, "author": [{"reference": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d2"}]}},
        {"fullUrl": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d2", "resource": {"resourceType": "Patient", "name": [{"family": "Summary"}]}}
    ]});
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000e1", "resource": document, "request": {"method": "POST", "url": "Bundle"}}
    ]});
    let reply = app.post("", &transaction).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = &reply.body["entry"][0]["resource"];
    assert_eq!(stored["entry"][0]["resource"]["subject"]["reference"], "urn:uuid:7f3c0e1a-0000-4000-8000-0000000000d2");
}
