//! FHIR XML on the REST API and the command line: XML bodies on every route, XML answers when
//! `Accept` or `_format` asks for them (OperationOutcomes too, with FHIRPath locations), and the
//! guards against hostile XML.

use std::process::Command;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rex_fhir::xml::{from_xml, to_xml};
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, TestApp, backend_tests};

backend_tests!(
    create_read_search_in_xml,
    transaction_in_xml,
    validate_and_operations_in_xml,
    errors_in_xml,
    hostile_xml_is_refused,
);

const REX: &str = env!("CARGO_BIN_EXE_rex");
const XML: &str = "application/fhir+xml";

/// Sends a request and reads the answer, which must be FHIR XML, back into JSON.
async fn xml(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Answer {
    let (status, headers, text) = app.send_text(method, path, headers, body).await;
    assert_eq!(headers.get("content-type").unwrap(), "application/fhir+xml; charset=utf-8", "{status}: {text}");
    assert!(text.contains("xmlns=\"http://hl7.org/fhir\""), "{text}");
    let body = from_xml(text.as_bytes(), 64).unwrap_or_else(|issue| panic!("{}: {text}", issue.diagnostics));
    Answer { status, headers, body }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

fn patient_xml(family: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><b>{family}</b>, Lucía</div></text>
  <name><family value="{family}"/><given value="Lucía"/><given><extension url="http://example.org/nick"><valueString value="Lu"/></extension></given></name>
  <gender value="female"/>
  <birthDate value="1961-02-14"/>
</Patient>"#
    )
}

async fn create_read_search_in_xml(app: &TestApp) {
    let created =
        xml(app, Method::POST, "Patient", &[("content-type", XML), ("accept", XML)], Some(patient_xml("Hernández")))
            .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers.get("etag").unwrap(), "W/\"1\"");
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["name"][0]["given"], json!(["Lucía", null]));
    assert_eq!(created.body["name"][0]["_given"][1]["extension"][0]["valueString"], "Lu");

    // Stored as JSON: a JSON read sees what the XML said, narrative as written.
    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.body["birthDate"], "1961-02-14");
    assert_eq!(read.body["text"]["div"], "<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>Hernández</b>, Lucía</div>");
    // Read as XML through Accept, and through _format.
    let by_accept = xml(app, Method::GET, &format!("Patient/{id}"), &[("accept", "application/fhir+xml")], None).await;
    assert_eq!(by_accept.status, StatusCode::OK);
    assert_eq!(by_accept.body, read.body);
    let by_format = xml(app, Method::GET, &format!("Patient/{id}?_format=xml"), &[], None).await;
    assert_eq!(by_format.body, read.body);
    let unencoded = xml(app, Method::GET, &format!("Patient/{id}?_format=application/fhir+xml"), &[], None).await;
    assert_eq!(unencoded.body, read.body);

    // Update in XML, then search in XML.
    let updated = xml(
        app,
        Method::PUT,
        &format!("Patient/{id}"),
        &[("content-type", "application/xml"), ("accept", "application/xml")],
        Some(
            patient_xml("Hernández")
                .replace(
                    "<Patient xmlns=\"http://hl7.org/fhir\">",
                    &format!("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"{id}\"/>"),
                )
                .replace("1961", "1962"),
        ),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["meta"]["versionId"], "2");
    let found = xml(app, Method::GET, "Patient?birthdate=1962-02-14&_format=xml", &[], None).await;
    assert_eq!(found.body["resourceType"], "Bundle");
    assert_eq!(found.body["total"], 1);
    assert_eq!(found.body["entry"][0]["resource"]["id"], id);
    assert_eq!(found.body["entry"][0]["resource"]["text"]["div"], read.body["text"]["div"]);
    // JSON stays the default, and wins a tie.
    let both = app
        .send(Method::GET, &format!("Patient/{id}"), &[("accept", "application/fhir+json, application/fhir+xml")], None)
        .await;
    assert_eq!(both.header("content-type"), Some("application/fhir+json; charset=utf-8"));
}

async fn transaction_in_xml(app: &TestApp) {
    let bundle = referral("XML-1", "I25.10", "urgent", "en", false);
    let body = to_xml(&bundle).unwrap();
    let reply = xml(app, Method::POST, &app.base, &[("content-type", XML), ("accept", XML)], Some(body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "transaction-response");
    assert!(reply.body["link"].to_string().contains("#created"), "{}", reply.body);
    // The same referral in JSON is recognised as the one sent in XML.
    let again = app.post("", &bundle).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body["link"].to_string().contains("#unchanged"), "{}", again.body);
    // A trailing slash on the base, and a JSON answer to an XML body.
    let json_answer = app.send(Method::POST, "", &[("content-type", XML)], Some(body)).await;
    assert_eq!(json_answer.status, StatusCode::OK, "{}", json_answer.body);
}

async fn validate_and_operations_in_xml(app: &TestApp) {
    let bad =
        r#"<Patient xmlns="http://hl7.org/fhir"><gender value="robot"/><birthDate value="1970-13-45"/></Patient>"#;
    let outcome =
        xml(app, Method::POST, "Patient/$validate", &[("content-type", XML), ("accept", XML)], Some(bad.into())).await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(outcome.body["resourceType"], "OperationOutcome");
    let expressions: Vec<&str> =
        outcome.body["issue"].as_array().unwrap().iter().filter_map(|i| i["expression"][0].as_str()).collect();
    // Locations stay FHIRPath, not XPath.
    assert!(expressions.contains(&"Patient.birthDate") && expressions.contains(&"Patient.gender"), "{expressions:?}");

    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]}}]});
    let reply = app.send(Method::POST, "$validate", &[("content-type", XML)], Some(to_xml(&parameters).unwrap())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["issue"][0]["severity"], "information", "{}", reply.body);

    // A write refused by the validator answers its OperationOutcome in XML.
    let refused = xml(
        app,
        Method::POST,
        "Patient?_format=xml",
        &[("content-type", XML)],
        Some(r#"<Patient xmlns="http://hl7.org/fhir"><birthDate value="1970-13-45"/></Patient>"#.into()),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["issue"][0]["expression"][0], "Patient.birthDate");
}

async fn errors_in_xml(app: &TestApp) {
    let missing = xml(app, Method::GET, "Patient/nope", &[("accept", XML)], None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["issue"][0]["code"], "not-found");
    let unknown = xml(
        app,
        Method::POST,
        "Patient",
        &[("content-type", XML), ("accept", XML)],
        Some(r#"<Patient xmlns="http://hl7.org/fhir"><nmae value="x"/></Patient>"#.into()),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["issue"][0]["code"], "structure");
    assert!(unknown.body["issue"][0]["diagnostics"].as_str().unwrap().contains("nmae"), "{}", unknown.body);
    // Neither JSON nor XML: 406.
    let turtle = app.get("Patient?_format=ttl").await;
    assert_eq!(turtle.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(turtle.issue_code(), "not-supported");
    // The CapabilityStatement says XML, and can be read in it.
    let metadata = xml(app, Method::GET, "metadata", &[("accept", XML)], None).await;
    let formats = &metadata.body["format"];
    assert!(formats.as_array().unwrap().contains(&json!("application/fhir+xml")), "{formats}");
}

async fn hostile_xml_is_refused(app: &TestApp) {
    let post =
        |body: String| async move { app.send(Method::POST, "Patient", &[("content-type", XML)], Some(body)).await };
    let attributes: String = (0..50_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let flood = post(format!("<Patient xmlns=\"http://hl7.org/fhir\"{attributes}/>")).await;
    assert_eq!(flood.status, StatusCode::BAD_REQUEST);
    assert_eq!(flood.issue_code(), "too-costly");
    let namespaces: String = (0..200).map(|i| format!(" xmlns:n{i}=\"urn:n{i}\"")).collect();
    let namespace_flood = post(format!("<Patient xmlns=\"http://hl7.org/fhir\"{namespaces}/>")).await;
    assert_eq!(namespace_flood.issue_code(), "too-costly");
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">]><Patient xmlns="http://hl7.org/fhir"><id value="&lol1;"/></Patient>"#;
    let billion = post(laughs.into()).await;
    assert_eq!(billion.status, StatusCode::BAD_REQUEST);
    assert_eq!(billion.issue_code(), "security");
    let deep = post(format!("<Patient xmlns=\"http://hl7.org/fhir\">{}", "<extension>".repeat(10_000))).await;
    assert_eq!(deep.issue_code(), "too-costly");
    let malformed = post("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a\"></Patient>".into()).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.issue_code(), "structure");
    // Over the large-body size (1 MiB by default), XML is refused before it is parsed.
    let narrative = "x".repeat(1_100_000);
    let huge = post(format!(
        "<Patient xmlns=\"http://hl7.org/fhir\"><text><status value=\"generated\"/><div xmlns=\"http://www.w3.org/1999/xhtml\">{narrative}</div></text></Patient>"
    ))
    .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.issue_code(), "too-costly");
    assert_eq!(app.total("Patient").await, 0, "nothing hostile was stored");
}

fn temp_folder() -> std::path::PathBuf {
    let folder = std::env::temp_dir().join(format!("rex-xml-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

#[test]
fn validate_command_reads_xml_files() {
    let folder = temp_folder();
    let good = folder.join("good.xml");
    std::fs::write(&good, patient_xml("Hernández")).unwrap();
    let bad = folder.join("bad.xml");
    std::fs::write(&bad, r#"<Patient xmlns="http://hl7.org/fhir"><birthDate value="1970-13-45"/></Patient>"#).unwrap();
    let valid = Command::new(REX).arg("validate").arg(&good).output().unwrap();
    assert_eq!(valid.status.code(), Some(0), "{}", String::from_utf8_lossy(&valid.stdout));
    let invalid = Command::new(REX).arg("validate").arg(&bad).output().unwrap();
    assert_eq!(invalid.status.code(), Some(1));
    let outcome: Value = serde_json::from_slice(&invalid.stdout).unwrap();
    assert!(outcome.to_string().contains("Patient.birthDate"), "{outcome}");
    let hostile = folder.join("hostile.xml");
    std::fs::write(&hostile, r#"<!DOCTYPE x [<!ENTITY a "a">]><Patient xmlns="http://hl7.org/fhir"/>"#).unwrap();
    let refused = Command::new(REX).arg("validate").arg(&hostile).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("DOCTYPE"));
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn send_command_posts_xml_files_as_xml() {
    let app = TestApp::sqlite_secured().await;
    let folder = temp_folder();
    let key = folder.join("a.pem");
    std::fs::write(&key, app.auth.as_ref().unwrap().partner_key_pem(PARTNER_A)).unwrap();
    let file = folder.join("referral.xml");
    std::fs::write(&file, to_xml(&referral("XML-SEND-1", "I25.10", "urgent", "en", false)).unwrap()).unwrap();
    let base = app.base.clone();
    let sent = tokio::task::spawn_blocking(move || {
        Command::new(REX)
            .args(["send", "--server", &base, "--client-id", PARTNER_A, "--key"])
            .arg(&key)
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&sent.stdout);
    assert_eq!(sent.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&sent.stderr));
    assert!(
        text.contains("accepted") && text.contains("referral.xml") && text.contains("referral created: Task/"),
        "{text}"
    );
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&folder);
}
