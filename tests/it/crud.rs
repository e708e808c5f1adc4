//! create, read, vread, update, delete, patch and history, with versions and preconditions.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, backend_tests};

backend_tests!(
    create_read_update_delete,
    update_as_create_with_client_id,
    if_match_and_conditional_reads,
    conditional_create,
    conditional_update_and_delete,
    prefer_return,
    json_patch,
    history_levels,
    vread_of_deleted_version,
);

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ana"]}], "gender": "female", "birthDate": "1980-05-01"})
}

async fn create_read_update_delete(app: &TestApp) {
    let created = app.post("Patient", &patient("García")).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["meta"]["versionId"], "1");
    assert!(created.body["meta"]["lastUpdated"].is_string());
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    let location = created.header("location").unwrap();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", app.base));
    assert_eq!(created.header("content-type"), Some("application/fhir+json; charset=utf-8"));

    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["name"][0]["family"], "García");
    assert!(read.header("last-modified").is_some());

    let mut changed = read.body.clone();
    changed["gender"] = json!("other");
    let updated = app.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["meta"]["versionId"], "2");
    assert_eq!(app.get(&format!("Patient/{id}/_history/1")).await.body["gender"], "female");
    assert_eq!(app.get(&format!("Patient/{id}/_history/2")).await.body["gender"], "other");
    // An update that changes nothing keeps the version.
    let unchanged = app.put(&format!("Patient/{id}"), &updated.body).await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.body["meta"]["versionId"], "2");

    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, StatusCode::NO_CONTENT);
    let gone = app.get(&format!("Patient/{id}")).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(gone.issue_code(), "deleted");
    // Deleting again changes nothing; an unknown id is 404.
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("Patient/never-was").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("Patient/never-was").await.status, StatusCode::NOT_FOUND);
    assert!(app.search_ids(&format!("Patient?_id={id}")).await.is_empty());
}

async fn update_as_create_with_client_id(app: &TestApp) {
    let mut resource = patient("Nakamura");
    resource["id"] = json!("client-chosen-1");
    let reply = app.put("Patient/client-chosen-1", &resource).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["id"], "client-chosen-1");
    // The body id must match the URL.
    let mismatch = app.put("Patient/other-id", &resource).await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert_eq!(mismatch.issue_expression(), "Patient.id");
    // A create ignores any id in the body and assigns its own.
    let created = app.post("Patient", &resource).await;
    assert_ne!(created.body["id"], "client-chosen-1");
}

async fn if_match_and_conditional_reads(app: &TestApp) {
    let id = app.create(&patient("Okafor")).await;
    let path = format!("Patient/{id}");
    let mut current = app.get(&path).await.body;
    current["active"] = json!(true);
    let stale = app
        .send(
            Method::PUT,
            &path,
            &[("content-type", "application/fhir+json"), ("if-match", "W/\"7\"")],
            Some(current.to_string()),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.issue_code(), "conflict");
    let fresh = app
        .send(
            Method::PUT,
            &path,
            &[("content-type", "application/fhir+json"), ("if-match", "W/\"1\"")],
            Some(current.to_string()),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    let stale_delete = app.send(Method::DELETE, &path, &[("if-match", "W/\"1\"")], None).await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);

    let cached = app.send(Method::GET, &path, &[("if-none-match", "W/\"2\"")], None).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    let outdated = app.send(Method::GET, &path, &[("if-none-match", "W/\"1\"")], None).await;
    assert_eq!(outdated.status, StatusCode::OK);
    let last_modified = outdated.header("last-modified").unwrap().to_string();
    let since = app.send(Method::GET, &path, &[("if-modified-since", &last_modified)], None).await;
    assert_eq!(since.status, StatusCode::NOT_MODIFIED);
    let long_ago = app.send(Method::GET, &path, &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")], None).await;
    assert_eq!(long_ago.status, StatusCode::OK);
}

async fn conditional_create(app: &TestApp) {
    let mut resource = patient("Haddad");
    resource["identifier"] = json!([{"system": "urn:oid:2.16.840.1.113883.2.9", "value": "MRN-1"}]);
    let headers = [
        ("content-type", "application/fhir+json"),
        ("if-none-exist", "identifier=urn:oid:2.16.840.1.113883.2.9|MRN-1"),
    ];
    let first = app.send(Method::POST, "Patient", &headers, Some(resource.to_string())).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.send(Method::POST, "Patient", &headers, Some(resource.to_string())).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(app.total("Patient").await, 1);
    // Two matches: 412.
    app.create(&resource).await;
    let ambiguous = app.send(Method::POST, "Patient", &headers, Some(resource.to_string())).await;
    assert_eq!(ambiguous.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(ambiguous.issue_code(), "multiple-matches");
}

async fn conditional_update_and_delete(app: &TestApp) {
    let mut resource = patient("Silva");
    resource["identifier"] = json!([{"system": "http://partner.example/mrn", "value": "42"}]);
    let created = app.put("Patient?identifier=http://partner.example/mrn|42", &resource).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    resource["gender"] = json!("male");
    let updated = app.put("Patient?identifier=http://partner.example/mrn|42", &resource).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["id"], id.as_str());
    assert_eq!(updated.body["meta"]["versionId"], "2");
    let deleted = app.delete("Patient?identifier=http://partner.example/mrn|42").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("Patient/{id}")).await.status, StatusCode::GONE);
    let unknown_param = app.put("Patient?nonsense=1", &resource).await;
    assert_eq!(unknown_param.status, StatusCode::BAD_REQUEST);
}

async fn prefer_return(app: &TestApp) {
    let body = patient("Wong").to_string();
    let minimal = app
        .send(
            Method::POST,
            "Patient",
            &[("content-type", "application/fhir+json"), ("prefer", "return=minimal")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(minimal.status, StatusCode::CREATED);
    assert!(minimal.body.is_null());
    assert!(minimal.header("location").is_some());
    let outcome = app
        .send(
            Method::POST,
            "Patient",
            &[("content-type", "application/json"), ("prefer", "return=OperationOutcome")],
            Some(body),
        )
        .await;
    assert_eq!(outcome.status, StatusCode::CREATED);
    assert_eq!(outcome.body["resourceType"], "OperationOutcome");
    assert_eq!(outcome.body["issue"][0]["severity"], "information");
}

async fn json_patch(app: &TestApp) {
    let id = app.create(&patient("Dubois")).await;
    let patch =
        json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": true}]);
    let reply = app
        .send(
            Method::PATCH,
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(patch.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["gender"], "male");
    assert_eq!(reply.body["meta"]["versionId"], "2");
    let invalid = json!([{"op": "add", "path": "/bogus", "value": 1}]);
    let refused = app
        .send(
            Method::PATCH,
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(invalid.to_string()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.issue_expression(), "Patient.bogus");
    // The patched resource is validated like a PUT body: a code outside a required binding is 422.
    let unbound = json!([{"op": "replace", "path": "/gender", "value": "robot"}]);
    let refused = app
        .send(
            Method::PATCH,
            &format!("Patient/{id}"),
            &[("content-type", "application/json-patch+json")],
            Some(unbound.to_string()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.issue_expression(), "Patient.gender");
    assert_eq!(app.get(&format!("Patient/{id}")).await.body["meta"]["versionId"], "2");
}

async fn history_levels(app: &TestApp) {
    let before = app.get("_history").await.body["total"].as_i64().unwrap();
    let id = app.create(&patient("Ivanova")).await;
    let mut current = app.get(&format!("Patient/{id}")).await.body;
    current["active"] = json!(true);
    app.put(&format!("Patient/{id}"), &current).await;
    app.delete(&format!("Patient/{id}")).await;
    app.create(&json!({"resourceType": "Organization", "name": "Hospital Ángeles"})).await;

    let instance = app.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(instance.body["type"], "history");
    assert_eq!(instance.body["total"], 3);
    let methods: Vec<&str> =
        instance.body["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "POST"]);
    assert!(instance.body["entry"][0].get("resource").is_none());
    assert_eq!(app.get("Patient/_history").await.body["total"], 3);
    assert_eq!(app.get("_history").await.body["total"], before + 4);
    let page = app.get("_history?_count=2").await;
    assert_eq!(page.body["entry"].as_array().unwrap().len(), 2);
    let next = page.body["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get(&next).await.body["entry"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("_history?_since=2999-01-01").await.body["total"], 0);
    assert_eq!(app.get("Patient/unknown/_history").await.status, StatusCode::NOT_FOUND);
}

async fn vread_of_deleted_version(app: &TestApp) {
    let id = app.create(&patient("Kowalski")).await;
    app.delete(&format!("Patient/{id}")).await;
    assert_eq!(app.get(&format!("Patient/{id}/_history/1")).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("Patient/{id}/_history/2")).await.status, StatusCode::GONE);
    assert_eq!(app.get(&format!("Patient/{id}/_history/3")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("Patient/{id}/_history/x")).await.status, StatusCode::NOT_FOUND);
}
