//! `$validate` and profile validation on writes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, backend_tests};

backend_tests!(validate_operation_at_every_level, profile_errors_refuse_writes_with_422);

async fn validate_operation_at_every_level(app: &TestApp) {
    let bad = json!({"resourceType": "Patient", "birthDate": "1970-13-45", "gender": "robot"});
    for path in ["$validate", "Patient/$validate"] {
        let reply = app.post(path, &bad).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        let expressions: Vec<&str> = reply.body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["severity"] == "error")
            .filter_map(|i| i["expression"][0].as_str())
            .collect();
        assert!(expressions.contains(&"Patient.birthDate"), "{expressions:?}");
        assert!(expressions.contains(&"Patient.gender"), "{expressions:?}");
    }
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]}},
        {"name": "profile", "valueUri": "https://rex.example/fhir/StructureDefinition/rex-international-patient"}]});
    let reply = app.post("Patient/$validate", &parameters).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body["issue"].as_array().unwrap().iter().any(|i| i["severity"] == "error"),
        "the profile needs identifier, gender..."
    );
    let good = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Ok"}]})).await;
    let reply = app.send(Method::POST, &format!("Patient/{good}/$validate"), &[], None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["issue"][0]["severity"], "information");
    assert_eq!(
        app.post("Patient/$validate", &json!({"resourceType": "Observation"})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.send(Method::POST, "Patient/unknown/$validate", &[], None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.send(Method::POST, "Patient/$explode", &[], None).await.status, StatusCode::NOT_FOUND);
}

async fn profile_errors_refuse_writes_with_422(app: &TestApp) {
    let reply = app.post("Patient", &json!({"resourceType": "Patient", "birthDate": "1970-13-45"})).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.issue_expression(), "Patient.birthDate");
    let invariant = json!({"resourceType": "Patient", "contact": [{"gender": "male"}]});
    let reply = app.post("Patient", &invariant).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "pat-1: a contact needs details");
    assert_eq!(reply.body["issue"][0]["code"], "invariant");
    assert_eq!(app.total("Patient").await, 0);
}
