//! Every bad input gets an OperationOutcome with the right status, and never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, backend_tests};

backend_tests!(
    statuses_of_bad_requests,
    structural_errors_have_locations,
    limits_are_enforced,
    large_bodies_take_a_slot_or_are_refused_for_now,
    content_negotiation,
    metadata_tells_the_truth,
    duplicate_keys_and_empty_bundles_are_refused
);

async fn duplicate_keys_and_empty_bundles_are_refused(app: &TestApp) {
    let fhir_json = [("content-type", "application/fhir+json")];
    // Read last-wins, this transaction would run as a batch.
    let two_types = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}],"type":"batch"}"#;
    let refused = app.send(Method::POST, "", &fhir_json, Some(two_types.into())).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.issue_code(), "structure");
    assert_eq!(refused.issue_expression(), "Bundle.type");
    let in_entry = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","gender":"male","gender":"female"},"request":{"method":"POST","url":"Patient"}}]}"#;
    let refused = app.send(Method::POST, "", &fhir_json, Some(in_entry.into())).await;
    assert_eq!(refused.issue_expression(), "Bundle.entry[0].resource.gender");
    let patient = r#"{"resourceType":"Patient","active":true,"active":false}"#;
    let refused = app.send(Method::POST, "Patient", &fhir_json, Some(patient.into())).await;
    assert_eq!(
        (refused.status, refused.issue_code(), refused.issue_expression()),
        (StatusCode::BAD_REQUEST, "structure", "Patient.active")
    );
    let validated = app.send(Method::POST, "Patient/$validate", &fhir_json, Some(patient.into())).await;
    assert_eq!(validated.status, StatusCode::BAD_REQUEST, "{}", validated.body);
    let id = app.create(&json!({"resourceType": "Patient", "active": true})).await;
    let patch = r#"[{"op":"replace","path":"/active","value":false,"path":"/gender"}]"#;
    let refused = app
        .send(
            Method::PATCH,
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(patch.into()),
        )
        .await;
    assert_eq!((refused.status, refused.issue_expression()), (StatusCode::BAD_REQUEST, "$this[0].path"));
    assert_eq!(app.total("Patient").await, 1, "nothing of the refused bodies was stored");

    // A transaction or batch with nothing to run is refused, as $validate says.
    for body in [
        json!({"resourceType": "Bundle", "type": "transaction"}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": []}),
    ] {
        let refused = app.post("", &body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!(refused.issue_expression(), "Bundle.entry");
    }
}

async fn large_bodies_take_a_slot_or_are_refused_for_now(app: &TestApp) {
    // A Patient of about 1.5 MB, over the default large-body threshold of 1 MiB.
    let narrative = format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "history ".repeat(200_000));
    let large = json!({"resourceType": "Patient", "text": {"status": "generated", "div": narrative}}).to_string();
    let fhir_json = [("content-type", "application/fhir+json")];
    // Every slot taken, as by other large requests in progress.
    let mut held = Vec::new();
    while let Ok(Some(slot)) = app.state.config.large_bodies.admit(None) {
        held.push(slot);
    }
    assert!(!held.is_empty(), "large bodies have slots by default");

    let refused = app.send(Method::POST, "Patient", &fhir_json, Some(large.clone())).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.issue_code(), "throttled");
    assert_eq!(refused.headers["retry-after"], "5");
    let small = app.post("Patient", &json!({"resourceType": "Patient", "active": true})).await;
    assert_eq!(small.status, StatusCode::CREATED, "small bodies need no slot");
    let binary =
        app.send(Method::POST, "Binary", &[("content-type", "application/pdf")], Some("%PDF".repeat(400_000))).await;
    assert_eq!(binary.status, StatusCode::CREATED, "raw Binary uploads are streamed and need no slot");
    assert_eq!(app.total("Patient").await, 1, "the refused Patient was not stored");

    drop(held);
    let accepted = app.send(Method::POST, "Patient", &fhir_json, Some(large)).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{:?}", accepted.body);
    assert_eq!(app.total("Patient").await, 2);
}

async fn statuses_of_bad_requests(app: &TestApp) {
    let malformed = app
        .send(Method::POST, "Patient", &[("content-type", "application/fhir+json")], Some("{\"resourceType\":".into()))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.issue_code(), "structure");

    let not_object = app.send(Method::POST, "Patient", &[], Some("[1,2]".into())).await;
    assert_eq!(not_object.status, StatusCode::BAD_REQUEST);

    let unknown_type = app.get("Foo/1").await;
    assert_eq!(unknown_type.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_type.issue_code(), "not-supported");

    let wrong_type =
        app.post("Patient", &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);

    let not_allowed = app.send(Method::DELETE, "metadata", &[], None).await;
    assert_eq!(not_allowed.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(not_allowed.issue_code(), "not-supported");

    let nowhere = app.get(&app.base.replace("/fhir", "/nowhere")).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.body["resourceType"], "OperationOutcome");

    let bad_if_match = app
        .send(
            Method::PUT,
            "Patient/x",
            &[("if-match", "nonsense")],
            Some(json!({"resourceType": "Patient", "id": "x"}).to_string()),
        )
        .await;
    assert_eq!(bad_if_match.status, StatusCode::BAD_REQUEST);

    let bad_id = app.put("Patient/has%20space", &json!({"resourceType": "Patient", "id": "has space"})).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);

    let failing_patch_test = json!([{"op": "test", "path": "/gender", "value": "male"}]);
    let id = app.create(&json!({"resourceType": "Patient", "gender": "female"})).await;
    let unprocessable = app
        .send(
            Method::PATCH,
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(failing_patch_test.to_string()),
        )
        .await;
    assert_eq!(unprocessable.status, StatusCode::UNPROCESSABLE_ENTITY);

    let duplicate_id =
        app.send(Method::POST, "Patient", &[], Some(json!({"resourceType": "Patient"}).to_string())).await;
    assert_eq!(duplicate_id.status, StatusCode::CREATED, "a missing Content-Type is taken as FHIR JSON");
}

async fn structural_errors_have_locations(app: &TestApp) {
    let reply = app
        .post("Patient", &json!({"resourceType": "Patient", "name": [{"family": "x", "famly": "y"}], "birthDate": 1980, "active": null}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let expressions: Vec<&str> =
        reply.body["issue"].as_array().unwrap().iter().map(|i| i["expression"][0].as_str().unwrap()).collect();
    assert_eq!(expressions, vec!["Patient.name[0].famly", "Patient.birthDate", "Patient.active"]);
    assert_eq!(app.total("Patient").await, 0);
}

async fn limits_are_enforced(app: &TestApp) {
    let huge = format!(
        "{{\"resourceType\":\"Patient\",\"text\":{{\"status\":\"generated\",\"div\":\"<div>{}</div>\"}}}}",
        "a".repeat(33 * 1024 * 1024)
    );
    let too_large = app.send(Method::POST, "Patient", &[("content-type", "application/fhir+json")], Some(huge)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.issue_code(), "too-costly");

    let mut deep = json!({"url": "http://x", "valueString": "leaf"});
    for _ in 0..40 {
        deep = json!({"url": "http://x", "extension": [deep]});
    }
    let too_deep = app.post("Patient", &json!({"resourceType": "Patient", "extension": [deep]})).await;
    assert_eq!(too_deep.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_deep.issue_code(), "too-costly");
}

async fn content_negotiation(app: &TestApp) {
    // FHIR XML is accepted and answered (tests/it/xml.rs); other types are not.
    let text = app.send(Method::POST, "Patient", &[("content-type", "text/plain")], Some("hello".into())).await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.get("Patient?_format=text/turtle").await.status, StatusCode::NOT_ACCEPTABLE);
    let json_format = app.get("Patient?_format=json").await;
    assert_eq!(json_format.status, StatusCode::OK);
    assert_eq!(json_format.header("content-type"), Some("application/fhir+json; charset=utf-8"));
    let pdf_only = app.send(Method::GET, "metadata", &[("accept", "application/pdf")], None).await;
    assert_eq!(pdf_only.status, StatusCode::OK, "an Accept rex cannot meet falls back to JSON");
}

async fn metadata_tells_the_truth(app: &TestApp) {
    let reply = app.get("metadata").await;
    assert_eq!(reply.status, StatusCode::OK);
    let statement = reply.body;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for expected in ["name", "identifier", "birthdate", "_id", "_lastUpdated", "_tag", "_profile"] {
        assert!(params.contains(&expected), "Patient should list {expected}");
    }
    // Every advertised search parameter is accepted by the search endpoint.
    for resource in resources {
        let resource_type = resource["type"].as_str().unwrap();
        for param in resource["searchParam"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap();
            let reply = app.get(&format!("{resource_type}?{name}:missing=true&_summary=count")).await;
            assert_eq!(reply.status, StatusCode::OK, "{resource_type}?{name}: {}", reply.body);
        }
    }
}
