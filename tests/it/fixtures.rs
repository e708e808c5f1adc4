//! The referral fixtures in `fixtures/valid/`: every one is a transaction Bundle that rex accepts
//! whole (200, a `transaction-response` whose every entry is `201 Created`), after which its
//! ServiceRequest is found by the partner's business identifier. `fixtures/expectations.json` lists
//! each fixture with what it should lead to (partner, queue, priority, language...); see
//! `fixtures/README.md`.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestApp, backend_tests};

backend_tests!(valid_fixtures_are_accepted_and_findable);

fn fixtures_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `fixtures/valid/*.json`, sorted by name.
fn valid_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_folder().join("valid"))
        .expect("fixtures/valid exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Percent-encodes a search parameter value (everything but RFC 3986 unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The index of the single entry holding a resource of `resource_type`.
fn entry_of(bundle: &Value, resource_type: &str) -> usize {
    let indexes: Vec<usize> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry["resource"]["resourceType"] == resource_type)
        .map(|(index, _)| index)
        .collect();
    assert_eq!(indexes.len(), 1, "a fixture holds exactly one {resource_type}");
    indexes[0]
}

/// Everything wrong with how rex answered one fixture (empty when all is well).
async fn check_fixture(app: &TestApp, name: &str, bundle: &Value, expected: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let reply = app.post("", bundle).await;
    if reply.status != StatusCode::OK {
        return vec![format!("{name}: {} {}", reply.status, reply.body)];
    }
    if reply.body["type"] != "transaction-response" {
        problems.push(format!("{name}: the answer is a {} Bundle, not a transaction-response", reply.body["type"]));
    }
    let requested = bundle["entry"].as_array().unwrap();
    let answered = reply.body["entry"].as_array().cloned().unwrap_or_default();
    if answered.len() != requested.len() {
        problems.push(format!("{name}: {} entries sent, {} answered", requested.len(), answered.len()));
    }
    for (index, entry) in answered.iter().enumerate() {
        if entry["response"]["status"] != "201 Created" {
            problems.push(format!("{name}: entry {index} answered {}", entry["response"]["status"]));
        }
    }
    if !problems.is_empty() {
        return problems;
    }

    // The ServiceRequest, found by the partner's business identifier, is the one this transaction made,
    // and its references were rewritten to the ids given to the other entries.
    let request_index = entry_of(bundle, "ServiceRequest");
    let patient_index = entry_of(bundle, "Patient");
    let identifier = &bundle["entry"][request_index]["resource"]["identifier"][0];
    let token = format!("{}|{}", identifier["system"].as_str().unwrap(), identifier["value"].as_str().unwrap());
    let created_id = answered[request_index]["resource"]["id"].as_str().map(str::to_string).or_else(|| {
        let location = answered[request_index]["response"]["location"].as_str()?;
        location.split("/_history/").next()?.rsplit('/').next().map(str::to_string)
    });
    let found = app.search_ids(&format!("ServiceRequest?identifier={}", encode(&token))).await;
    if found.len() != 1 || Some(&found[0]) != created_id.as_ref() {
        problems.push(format!("{name}: ServiceRequest?identifier={token} found {found:?}, created {created_id:?}"));
        return problems;
    }
    let stored = app.get(&format!("ServiceRequest/{}", found[0])).await;
    let patient_id = answered[patient_index]["response"]["location"]
        .as_str()
        .and_then(|location| location.split("/_history/").next())
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    if stored.body["subject"]["reference"] != format!("Patient/{patient_id}") {
        problems
            .push(format!("{name}: ServiceRequest.subject is {}, not Patient/{patient_id}", stored.body["subject"]));
    }

    // Routing: the Task is on the expected queue, due after the SLA of its priority, with the
    // patient's language and interpreter need.
    let task_url = reply.body["link"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "https://rex.example/fhir/referral-task"))
        .and_then(|l| l["url"].as_str())
        .unwrap_or_default()
        .to_string();
    let task = app.get(&task_url).await.body;
    let queue = expected["queue"].as_str().unwrap_or_default();
    if task["owner"]["reference"] != format!("HealthcareService/{queue}") {
        problems.push(format!("{name}: routed to {}, expected queue {queue}", task["owner"]["reference"]));
    }
    let priority = expected["priority"].as_str().unwrap_or_default();
    let sla_hours = match priority {
        "stat" => 4,
        "asap" => 24,
        "urgent" => 72,
        _ => 240,
    };
    let time = |field: &Value| chrono::DateTime::parse_from_rfc3339(field.as_str().unwrap_or_default()).ok();
    match (time(&task["authoredOn"]), time(&task["restriction"]["period"]["end"])) {
        (Some(authored), Some(due))
            if due - authored == chrono::Duration::hours(sla_hours) && task["priority"] == priority => {}
        _ => problems.push(format!(
            "{name}: priority {} due {} is not {priority} + {sla_hours} h",
            task["priority"], task["restriction"]
        )),
    }
    let extension = |suffix: &str| {
        task["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(suffix)))
            .cloned()
    };
    if extension("task-patient-language").map(|e| e["valueCode"].clone()) != Some(expected["language"].clone()) {
        problems.push(format!(
            "{name}: Task language {:?}, expected {}",
            extension("task-patient-language"),
            expected["language"]
        ));
    }
    if extension("task-interpreter-required").map(|e| e["valueBoolean"].clone())
        != Some(expected["interpreterRequired"].clone())
    {
        problems.push(format!("{name}: Task interpreter need differs from {}", expected["interpreterRequired"]));
    }
    problems
}

async fn valid_fixtures_are_accepted_and_findable(app: &TestApp) {
    let files = valid_fixtures();
    assert!(files.len() >= 14, "fixtures/valid holds {} fixtures; the issue asks for at least 14", files.len());
    let expectations = read_json(&fixtures_folder().join("expectations.json"));
    let listed: Vec<&String> = expectations.as_object().expect("expectations.json is an object").keys().collect();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(listed, names.iter().collect::<Vec<_>>(), "expectations.json lists exactly the fixtures, in name order");

    let mut problems = Vec::new();
    for (file, name) in files.iter().zip(&names) {
        let bundle = read_json(file);
        assert_eq!(bundle["type"], "transaction", "{name} is a transaction Bundle");
        let token = &expectations[name]["serviceRequestIdentifier"];
        let identifier = &bundle["entry"][entry_of(&bundle, "ServiceRequest")]["resource"]["identifier"][0];
        assert_eq!(
            token.as_str().unwrap(),
            format!("{}|{}", identifier["system"].as_str().unwrap(), identifier["value"].as_str().unwrap()),
            "{name}: expectations.json names the ServiceRequest identifier"
        );
        problems.extend(check_fixture(app, name, &bundle, &expectations[name]).await);
    }
    assert!(problems.is_empty(), "{} problems with the valid fixtures:\n{}", problems.len(), problems.join("\n"));
}
