//! The official R4 examples (../shared/fhir-r4-examples) each create and read back with the same
//! content apart from `id` and `meta`, except those listed in `REJECTED` with the reason.
//! (`Bundle-ussg-fht` declares US SDC profiles rex does not load: accepted with warnings, as
//! `unknown_profiles` is `warn` by default.)

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestApp, backend_tests};

backend_tests!(official_examples_round_trip);

/// Examples rex rightly refuses, with the reason (checked: each must be refused).
const REJECTED: &[(&str, &str)] = &[
    (
        "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json",
        "entry fullUrl .../Patient/pat12 does not match its resource id pat2 (bdl-8)",
    ),
    (
        "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json",
        "entry fullUrl .../Patient/pat12 does not match its resource id pat2 (bdl-8)",
    ),
    (
        "Bundle-lri-example.json",
        "16 entries whose fullUrl (lri-gramstain1...) does not match the resource id (gramstain1...)",
    ),
    (
        "MedicationRequest-medrx0301.json",
        "dispenseRequest.performer references a Practitioner; R4 allows only Organization",
    ),
    (
        "Observation-clinical-gender.json",
        "performer references an Encounter, which Observation.performer does not allow",
    ),
    (
        "Questionnaire-qs1.json",
        "nested items have no linkId, which Questionnaire.item.linkId requires (1..1); the HL7 validator rejects it too",
    ),
];

fn examples_folder() -> Option<PathBuf> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-r4-examples/package");
    folder.is_dir().then_some(folder)
}

/// The resource without `id` and `meta` versionId/lastUpdated, which the server assigns.
fn comparable(mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        if let Some(meta) = object.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                object.remove("meta");
            }
        }
    }
    resource
}

async fn official_examples_round_trip(app: &TestApp) {
    let Some(folder) = examples_folder() else {
        println!("SKIPPED: ../shared/fhir-r4-examples is absent, so the official examples were not checked");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.file_name().is_some_and(|name| name != "package.json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 413, "the shared folder should hold the 413 official examples");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let original: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let resource_type = original["resourceType"].as_str().unwrap();
        let reply = app.post(resource_type, &original).await;
        let rejected = REJECTED.iter().find(|(file, _)| *file == name);
        match (reply.status, rejected) {
            (StatusCode::CREATED, None) => {
                let read = app.get(&format!("{resource_type}/{}", reply.body["id"].as_str().unwrap())).await;
                if comparable(read.body) != comparable(original) {
                    failures.push(format!("{name}: read back differs"));
                }
            }
            (StatusCode::CREATED, Some((_, reason))) => {
                failures.push(format!("{name}: accepted, but listed as rejected ({reason})"))
            }
            (status, Some(_)) if status.is_client_error() => {}
            (status, _) => failures.push(format!("{name}: {status} {}", reply.body)),
        }
    }
    assert!(failures.is_empty(), "{} examples failed:\n{}", failures.len(), failures.join("\n"));
}
